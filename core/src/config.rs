//! Broker configuration and backend URL parsing.

use crate::error::{Error, ErrorKind, Result};

/// Default largest payload: 1 MiB.
pub const DEFAULT_MAX_PAYLOAD: usize = 1 << 20;
/// Hard ceiling on `max_payload_bytes`: payload offsets are kept in 32 bits.
pub const MAX_PAYLOAD_LIMIT: usize = u32::MAX as usize;
/// Default capacity of the listener event queue.
pub const DEFAULT_LISTENER_QUEUE: usize = 65_536;
/// Largest listener event queue: its slots are allocated up front.
pub const MAX_LISTENER_QUEUE: usize = 1 << 20;
/// Most worker threads a broker may have.
pub const MAX_WORKERS: usize = 1024;
/// Default number of messages a topic keeps while it has no consumer group.
pub const DEFAULT_RETENTION_LIMIT: usize = 100_000;
/// Default number of deliveries one consumer group's queue holds before backpressure applies.
pub const DEFAULT_QUEUE_CAPACITY: usize = 100_000;
/// Default longest wait of a publish blocked by a full queue (`Backpressure::Block`).
pub const DEFAULT_PUBLISH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// What publish does when a consumer group's queue already holds `queue_capacity` deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backpressure {
    /// Wait for room up to `publish_timeout`, then fail with `ErrorKind::Full`.
    #[default]
    Block,
    /// Fail at once with `ErrorKind::Full`; nothing is published.
    Fail,
    /// Publish anyway, but the full group does not get this message (counted `full_dropped`).
    Drop,
}

/// What a topic does with messages published while it has no consumer group, once it already
/// retains `retention_limit` of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RetentionPolicy {
    /// Publish fails with `ErrorKind::Full` and nothing is kept: no message is lost silently.
    #[default]
    Reject,
    /// The oldest retained message is discarded (counted `retained_dropped`).
    DropOldest,
    /// The new message is discarded (counted `retained_dropped`).
    DropNewest,
    /// Nothing is ever retained: a message with no group is counted `unrouted` and goes
    /// nowhere (plain publish/subscribe, as in Tadween's broker).
    Off,
}

/// Default wait for a SQLite file another process holds locked (`busy_timeout_ms`).
pub const DEFAULT_SQLITE_BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// Default lease of a delivery claimed from a shared store without an ack deadline
/// (`lease_ms`): renewed every third of it while the broker lives, so only the deliveries of
/// a broker that stopped (crashed, or hung that long) come back to other consumers.
pub const DEFAULT_LEASE: std::time::Duration = std::time::Duration::from_secs(30);

/// Which store holds the queues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// In this process's memory; the default.
    Memory,
    /// A SQLite file that several processes (several brokers) may share.
    Sqlite(SqliteConfig),
    /// A Redis server or Redis Cluster that several processes (on several machines) share.
    Redis(RedisConfig),
}

/// Where and how to open a SQLite store: `sqlite:///abs/path.db` or `sqlite://relative/path.db`,
/// with optional `?synchronous=normal|full&busy_timeout_ms=N&lease_ms=N`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteConfig {
    pub path: std::path::PathBuf,
    pub synchronous: Synchronous,
    /// How long a write waits for a lock another process holds before failing with
    /// `ErrorKind::Unavailable`.
    pub busy_timeout: std::time::Duration,
    /// How long a delivery claimed without an ack deadline stays this broker's if it stops
    /// renewing it (see `DEFAULT_LEASE`).
    pub lease: std::time::Duration,
}

impl SqliteConfig {
    /// `path` with `Synchronous::Normal`, the default busy timeout and the default lease.
    pub fn new(path: impl Into<std::path::PathBuf>) -> Self {
        SqliteConfig {
            path: path.into(),
            synchronous: Synchronous::Normal,
            busy_timeout: DEFAULT_SQLITE_BUSY_TIMEOUT,
            lease: DEFAULT_LEASE,
        }
    }
}

/// How hard a SQLite commit tries to survive failures; both use a write-ahead log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Synchronous {
    /// A commit survives this process crashing; a power loss may lose the last commits (the
    /// file stays consistent).
    #[default]
    Normal,
    /// Every commit is synced to disk and survives a power loss.
    Full,
}

/// Default namespace of a Redis store's keys (`prefix`): every key brokk writes starts with
/// `{brokk:` or `{brokk}`.
pub const DEFAULT_REDIS_PREFIX: &str = "brokk";
/// Default longest wait for a Redis server to accept a connection or answer a call
/// (`timeout_ms`) before the call fails with `ErrorKind::Unavailable`.
pub const DEFAULT_REDIS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// Port of a Redis node whose URL names none.
pub const DEFAULT_REDIS_PORT: u16 = 6379;
/// The longest time any store option takes, in milliseconds (`busy_timeout_ms`, `lease_ms`,
/// `timeout_ms`): 2^31 - 1, about 24.8 days, the largest that every engine takes as it is
/// (SQLite's busy timeout is a C `int` of milliseconds).
pub const MAX_OPTION_MILLIS: u64 = i32::MAX as u64;

/// Where and how to reach a Redis store: `redis://[user:password@]host[:port][/db]` or
/// `redis+cluster://[user:password@]host:port,host:port,...`, with optional
/// `?prefix=NAME&lease_ms=N&timeout_ms=N`. See `docs/redis.md`.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// The server, or for a cluster the nodes to learn the cluster from: (host, port).
    pub nodes: Vec<(String, u16)>,
    /// A Redis Cluster: keys spread over its nodes by hash slot.
    pub cluster: bool,
    /// The logical database (`SELECT`); always 0 on a cluster.
    pub db: i64,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Namespace of every key: brokers share topics and groups only under the same prefix.
    /// Letters, digits and `_.-`, as topic names.
    pub prefix: String,
    /// How long a delivery claimed without an ack deadline stays this broker's if it stops
    /// renewing it (see `DEFAULT_LEASE`).
    pub lease: std::time::Duration,
    /// Connect and answer timeout of every call.
    pub timeout: std::time::Duration,
}

impl RedisConfig {
    /// One server at `host:port`, database 0, no credentials, the default prefix, lease and
    /// timeout.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        RedisConfig {
            nodes: vec![(host.into(), port)],
            cluster: false,
            db: 0,
            username: None,
            password: None,
            prefix: DEFAULT_REDIS_PREFIX.to_owned(),
            lease: DEFAULT_LEASE,
            timeout: DEFAULT_REDIS_TIMEOUT,
        }
    }

    /// `host:port` of the first node, for messages.
    pub(crate) fn address(&self) -> String {
        let nodes: Vec<String> = self.nodes.iter().map(|(h, p)| format!("{h}:{p}")).collect();
        nodes.join(",")
    }
}

/// The password stays out of logs and panic messages.
impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("nodes", &self.nodes)
            .field("cluster", &self.cluster)
            .field("db", &self.db)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("prefix", &self.prefix)
            .field("lease", &self.lease)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// How to build a broker. `Default` gives the memory backend with default limits.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub backend: Backend,
    /// Worker threads running handlers; 0 means one per CPU, at least 2.
    pub worker_threads: usize,
    /// Largest accepted payload in bytes; 0 means `DEFAULT_MAX_PAYLOAD`.
    pub max_payload_bytes: usize,
    /// Listener events that may wait before further ones are dropped; 0 means the default.
    pub listener_queue_capacity: usize,
    /// Messages a topic keeps while it has no consumer group; 0 means the default.
    pub retention_limit: usize,
    pub retention_policy: RetentionPolicy,
    /// Deliveries one consumer group's queue may hold; 0 means the default.
    pub queue_capacity: usize,
    pub backpressure: Backpressure,
    /// Longest wait of a publish blocked by a full queue; None means the default.
    pub publish_timeout: Option<std::time::Duration>,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            backend: Backend::Memory,
            worker_threads: 0,
            max_payload_bytes: 0,
            listener_queue_capacity: 0,
            retention_limit: 0,
            retention_policy: RetentionPolicy::Reject,
            queue_capacity: 0,
            backpressure: Backpressure::Block,
            publish_timeout: None,
        }
    }
}

impl BrokerConfig {
    /// A default configuration for the backend named by `url` (`memory://`, `sqlite://...`;
    /// empty means memory).
    pub fn from_url(url: &str) -> Result<Self> {
        Ok(BrokerConfig { backend: parse_url(url)?, ..Default::default() })
    }

    pub(crate) fn resolved_workers(&self) -> Result<usize> {
        match self.worker_threads {
            0 => Ok(std::thread::available_parallelism().map_or(2, |n| n.get()).max(2)),
            n if n > MAX_WORKERS => Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("worker_threads is {n}; the limit is {MAX_WORKERS}"),
            )),
            n => Ok(n),
        }
    }

    pub(crate) fn resolved_max_payload(&self) -> Result<usize> {
        match self.max_payload_bytes {
            0 => Ok(DEFAULT_MAX_PAYLOAD),
            n if n > MAX_PAYLOAD_LIMIT => Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("max_payload_bytes is {n}; the limit is {MAX_PAYLOAD_LIMIT}"),
            )),
            n => Ok(n),
        }
    }

    pub(crate) fn resolved_retention_limit(&self) -> usize {
        match self.retention_limit {
            0 => DEFAULT_RETENTION_LIMIT,
            n => n,
        }
    }

    pub(crate) fn resolved_queue_capacity(&self) -> usize {
        match self.queue_capacity {
            0 => DEFAULT_QUEUE_CAPACITY,
            n => n,
        }
    }

    pub(crate) fn resolved_listener_queue(&self) -> Result<usize> {
        match self.listener_queue_capacity {
            0 => Ok(DEFAULT_LISTENER_QUEUE),
            n if n > MAX_LISTENER_QUEUE => Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("listener_queue_capacity is {n}; the limit is {MAX_LISTENER_QUEUE}"),
            )),
            n => Ok(n),
        }
    }
}

/// Parses a backend URL: `memory://`, or `sqlite:///absolute/path.db` (also
/// `sqlite://relative/path.db`) with optional `?synchronous=normal|full&busy_timeout_ms=N&lease_ms=N`,
/// or `redis://[user:password@]host[:port][/db]` and `redis+cluster://host:port,host:port` with
/// optional `?prefix=NAME&lease_ms=N&timeout_ms=N`.
/// Known schemes of later backends get `UnsupportedBackend`, anything else `InvalidUrl`.
pub fn parse_url(url: &str) -> Result<Backend> {
    let url = url.trim();
    if url.is_empty() {
        return Ok(Backend::Memory);
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(Error::new(
            ErrorKind::InvalidUrl,
            format!("{url:?} is not a backend URL; expected scheme://..., for example memory://"),
        ));
    };
    match scheme.to_ascii_lowercase().as_str() {
        "memory" if rest.is_empty() => Ok(Backend::Memory),
        "memory" => {
            Err(Error::new(ErrorKind::InvalidUrl, format!("memory:// takes nothing after the scheme; got {rest:?}")))
        }
        "sqlite" => parse_sqlite(rest).map(Backend::Sqlite),
        "redis" => parse_redis(rest, false).map(Backend::Redis),
        "redis+cluster" => parse_redis(rest, true).map(Backend::Redis),
        "rediss" | "rediss+cluster" => Err(Error::new(
            ErrorKind::UnsupportedBackend,
            format!("{scheme}:// (Redis over TLS) is not available in this build of brokk; use redis://"),
        )),
        _ => Err(Error::new(ErrorKind::InvalidUrl, format!("unknown backend scheme {scheme:?}"))),
    }
}

fn invalid(why: String) -> Error {
    Error::new(ErrorKind::InvalidUrl, why)
}

/// What follows `sqlite://`: the path (percent-escapes decoded), then the query options.
fn parse_sqlite(rest: &str) -> Result<SqliteConfig> {
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    let path = percent_decode(path)?;
    if path.is_empty() || path == "/" {
        return Err(invalid(format!(
            "sqlite:// needs a file path, as in sqlite:///var/lib/app/brokk.db; got {rest:?}"
        )));
    }
    let mut config = SqliteConfig::new(path);
    for pair in query.into_iter().flat_map(|q| q.split('&')).filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "synchronous" => {
                config.synchronous = match value.to_ascii_lowercase().as_str() {
                    "normal" => Synchronous::Normal,
                    "full" => Synchronous::Full,
                    _ => return Err(invalid(format!("synchronous must be normal or full; got {value:?}"))),
                }
            }
            "busy_timeout_ms" => config.busy_timeout = millis(key, value, 0)?,
            "lease_ms" => config.lease = millis(key, value, 3)?,
            _ => {
                return Err(invalid(format!(
                    "unknown sqlite:// option {key:?}; the options are synchronous, busy_timeout_ms and lease_ms"
                )))
            }
        }
    }
    Ok(config)
}

/// What follows `redis://` or `redis+cluster://`: credentials, nodes, database, options.
fn parse_redis(rest: &str, cluster: bool) -> Result<RedisConfig> {
    let scheme = if cluster { "redis+cluster://" } else { "redis://" };
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, Some(q)),
        None => (rest, None),
    };
    // Credentials end at the last '@': a password may contain '@' if escaped, or not.
    let (auth, rest) = match rest.rsplit_once('@') {
        Some((a, r)) => (Some(a), r),
        None => (None, rest),
    };
    let (hosts, db) = match rest.split_once('/') {
        Some((h, d)) => (h, Some(d)),
        None => (rest, None),
    };
    if hosts.is_empty() {
        return Err(invalid(format!("{scheme} needs a server, as in {scheme}localhost:6379; got {rest:?}")));
    }
    let mut nodes = Vec::new();
    for node in hosts.split(',') {
        nodes.push(parse_node(node, scheme)?);
    }
    if nodes.len() > 1 && !cluster {
        return Err(invalid(format!("redis:// takes one server; for a cluster use redis+cluster://{hosts}")));
    }
    let mut config = RedisConfig::new(String::new(), 0);
    config.nodes = nodes;
    config.cluster = cluster;
    match db.filter(|d| !d.is_empty()) {
        None => {}
        Some(d) => match d.parse::<i64>() {
            Ok(n) if n >= 0 && (n == 0 || !cluster) => config.db = n,
            Ok(_) if cluster => return Err(invalid(format!("a Redis Cluster has only database 0; got /{d}"))),
            _ => return Err(invalid(format!("the database after the server must be a number, as in /0; got {d:?}"))),
        },
    }
    if let Some(auth) = auth {
        let (user, password) = match auth.split_once(':') {
            Some((u, p)) => (u, Some(p)),
            None => (auth, None),
        };
        let user = percent_decode(user)?;
        config.username = (!user.is_empty()).then_some(user);
        config.password = password.map(percent_decode).transpose()?;
        if config.password.as_deref() == Some("") {
            config.password = None;
        }
    }
    for pair in query.into_iter().flat_map(|q| q.split('&')).filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "prefix" => {
                let ok = !value.is_empty()
                    && value.len() <= 64
                    && value.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
                if !ok {
                    return Err(invalid(format!("prefix must be 1 to 64 letters, digits or _.- ; got {value:?}")));
                }
                config.prefix = value.to_owned();
            }
            "lease_ms" => config.lease = millis(key, value, 3)?,
            "timeout_ms" => config.timeout = millis(key, value, 1)?,
            _ => {
                return Err(invalid(format!(
                    "unknown {scheme} option {key:?}; the options are prefix, lease_ms and timeout_ms"
                )))
            }
        }
    }
    Ok(config)
}

/// `host`, `host:port` or `[v6]:port`.
fn parse_node(node: &str, scheme: &str) -> Result<(String, u16)> {
    let (host, port) = if let Some(v6) = node.strip_prefix('[') {
        match v6.split_once(']') {
            Some((h, rest)) => (h, rest.strip_prefix(':')),
            None => return Err(invalid(format!("unclosed '[' in the {scheme} server {node:?}"))),
        }
    } else {
        match node.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (node, None),
        }
    };
    if host.is_empty() || host.contains(['/', '@', ' ', '[', ']']) {
        return Err(invalid(format!("{node:?} is not a server address of {scheme}; expected host:port")));
    }
    let port = match port {
        None => DEFAULT_REDIS_PORT,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => n,
            _ => return Err(invalid(format!("the port of {scheme}{node} must be 1 to 65535; got {p:?}"))),
        },
    };
    Ok((host.to_owned(), port))
}

/// A URL option in milliseconds, from `min` to `MAX_OPTION_MILLIS`.
fn millis(key: &str, value: &str, min: u64) -> Result<std::time::Duration> {
    // Digits only: `parse` would also take a leading '+'.
    match value.parse::<u64>().ok().filter(|_| value.bytes().all(|b| b.is_ascii_digit())) {
        Some(ms) if (min..=MAX_OPTION_MILLIS).contains(&ms) => Ok(std::time::Duration::from_millis(ms)),
        _ => Err(invalid(format!(
            "{key} must be a whole number of milliseconds from {min} to {MAX_OPTION_MILLIS}; got {value:?}"
        ))),
    }
}

/// A time option set in code rather than in a URL: the same range as `millis`.
fn check_millis(key: &str, value: std::time::Duration, min: u64) -> Result<()> {
    let ms = value.as_millis();
    if ms < u128::from(min) || ms > u128::from(MAX_OPTION_MILLIS) {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            format!("{key} must be from {min} to {MAX_OPTION_MILLIS} milliseconds; got {ms}"),
        ));
    }
    Ok(())
}

impl Backend {
    /// Checks the options a caller may have set in code (the URL parser checks its own): each
    /// within the range an engine takes, so that none fails deep inside a store.
    pub(crate) fn check(&self) -> Result<()> {
        match self {
            Backend::Memory => Ok(()),
            Backend::Sqlite(c) => {
                check_millis("busy_timeout_ms", c.busy_timeout, 0)?;
                check_millis("lease_ms", c.lease, 3)
            }
            Backend::Redis(c) => {
                check_millis("lease_ms", c.lease, 3)?;
                check_millis("timeout_ms", c.timeout, 1)
            }
        }
    }
}

/// Decodes `%XX` escapes (a path with spaces or `?` in it), refusing broken ones and non-UTF-8.
fn percent_decode(s: &str) -> Result<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
            match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                Some(b) => out.push(b),
                None => return Err(invalid(format!("bad percent-escape in {s:?}"))),
            }
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| invalid(format!("{s:?} decodes to a path that is not UTF-8")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(parse_url("").unwrap(), Backend::Memory);
        assert_eq!(parse_url("memory://").unwrap(), Backend::Memory);
        assert_eq!(parse_url("MEMORY://").unwrap(), Backend::Memory);
        assert_eq!(parse_url("memory://x").unwrap_err().kind(), ErrorKind::InvalidUrl);
        assert_eq!(parse_url("memory").unwrap_err().kind(), ErrorKind::InvalidUrl);
        assert_eq!(parse_url("ftp://x").unwrap_err().kind(), ErrorKind::InvalidUrl);
        assert_eq!(parse_url("rediss://localhost").unwrap_err().kind(), ErrorKind::UnsupportedBackend);
    }

    #[test]
    fn redis_urls() {
        let redis = |url: &str| match parse_url(url) {
            Ok(Backend::Redis(c)) => c,
            other => panic!("{url}: {other:?}"),
        };
        assert_eq!(redis("redis://localhost"), RedisConfig::new("localhost", 6379));
        assert_eq!(redis("REDIS://127.0.0.1:7000/"), RedisConfig::new("127.0.0.1", 7000));
        let c = redis("redis://app:s%40cret:x@cache.internal:6380/3?prefix=jobs.v1&lease_ms=900&timeout_ms=250");
        assert_eq!((c.username.as_deref(), c.password.as_deref()), (Some("app"), Some("s@cret:x")));
        assert_eq!((c.nodes[0].0.as_str(), c.nodes[0].1, c.db, c.cluster), ("cache.internal", 6380, 3, false));
        assert_eq!((c.prefix.as_str(), c.lease.as_millis(), c.timeout.as_millis()), ("jobs.v1", 900, 250));
        assert!(!format!("{c:?}").contains("cret"), "the password is redacted");
        let c = redis("redis://:only-password@h");
        assert_eq!((c.username, c.password.as_deref()), (None, Some("only-password")));
        let c = redis("redis://[::1]:6390");
        assert_eq!(c.nodes, [("::1".to_owned(), 6390)]);
        let c = redis("redis+cluster://a:7000,b:7001,[::1]:7002");
        assert!(c.cluster);
        assert_eq!(c.nodes.len(), 3);
        assert_eq!(c.address(), "a:7000,b:7001,::1:7002");
        for bad in [
            "redis://",
            "redis:///0",
            "redis://h:0",
            "redis://h:99999",
            "redis://h:port",
            "redis://h/x",
            "redis://h/-1",
            "redis://a:1,b:2",
            "redis+cluster://a:1,b:2/1",
            "redis://h?prefix=",
            "redis://h?prefix=a{b}",
            "redis://h?prefix=a:b",
            "redis://h?lease_ms=2",
            "redis://h?timeout_ms=0",
            "redis://h?db=1",
            "redis://[::1:6379",
            "redis://us%zz:p@h",
        ] {
            let e = parse_url(bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidUrl, "{bad}");
            assert!(!e.message().is_empty());
        }
    }

    #[test]
    fn sqlite_urls() {
        let sqlite = |url: &str| match parse_url(url) {
            Ok(Backend::Sqlite(c)) => c,
            other => panic!("{url}: {other:?}"),
        };
        let c = sqlite("sqlite:///var/lib/app/brokk.db");
        assert_eq!(c, SqliteConfig::new("/var/lib/app/brokk.db"));
        assert_eq!(sqlite("SQLITE://data/q.db").path, std::path::Path::new("data/q.db"));
        assert_eq!(sqlite("sqlite:///tmp/with%20space.db").path, std::path::Path::new("/tmp/with space.db"));
        let c = sqlite("sqlite:///x.db?synchronous=FULL&busy_timeout_ms=250&lease_ms=900");
        assert_eq!((c.synchronous, c.busy_timeout.as_millis(), c.lease.as_millis()), (Synchronous::Full, 250, 900));
        assert_eq!(sqlite("sqlite:///x.db?synchronous=normal&").synchronous, Synchronous::Normal);
        for bad in [
            "sqlite://",
            "sqlite:///",
            "sqlite://?synchronous=full",
            "sqlite:///x.db?synchronous=off",
            "sqlite:///x.db?busy_timeout_ms=-1",
            "sqlite:///x.db?lease_ms=0",
            "sqlite:///x.db?journal=wal",
            "sqlite:///x%zz.db",
            "sqlite:///x%ff.db",
        ] {
            assert_eq!(parse_url(bad).unwrap_err().kind(), ErrorKind::InvalidUrl, "{bad}");
        }
    }
}
