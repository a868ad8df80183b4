//! The Redis store's URL options and their defaults: `redis://[user:password@]host[:port][/db]`
//! or `redis+cluster://[user:password@]host:port,host:port,...`, with optional
//! `?prefix=NAME&lease_ms=N&timeout_ms=N`. The backend table (`store/mod.rs`) maps the `redis`,
//! `redis+cluster`, `rediss` and `rediss+cluster` schemes to [`parse_url`].

use crate::config::{check_millis, invalid, millis, percent_decode, DEFAULT_LEASE};
use crate::error::{Error, ErrorKind, Result};
use crate::store::Backend;

/// Default namespace of a Redis store's keys (`prefix`): every key brokk writes starts with
/// `{brokk:` or `{brokk}`.
pub const DEFAULT_REDIS_PREFIX: &str = "brokk";
/// Default longest wait for a Redis server to accept a connection or answer a call
/// (`timeout_ms`) before the call fails with `ErrorKind::Unavailable`.
pub const DEFAULT_REDIS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// Port of a Redis node whose URL names none.
pub const DEFAULT_REDIS_PORT: u16 = 6379;

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

    /// Checks the options a caller may have set in code (the URL parser checks its own).
    pub(crate) fn check(&self) -> Result<()> {
        check_millis("lease_ms", self.lease, 3)?;
        check_millis("timeout_ms", self.timeout, 1)
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

/// What follows `redis://` or `redis+cluster://` (`scheme`, lower case); `rediss://` and
/// `rediss+cluster://` (TLS) are not available.
pub(crate) fn parse_url(scheme: &str, rest: &str) -> Result<Backend> {
    match scheme {
        "redis" => parse(rest, false).map(Backend::Redis),
        "redis+cluster" => parse(rest, true).map(Backend::Redis),
        _ => Err(Error::new(
            ErrorKind::UnsupportedBackend,
            format!("{scheme}:// (Redis over TLS) is not available in this build of brokk; use redis://"),
        )),
    }
}

/// What follows `redis://` or `redis+cluster://`: credentials, nodes, database, options.
fn parse(rest: &str, cluster: bool) -> Result<RedisConfig> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_url;

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
        assert_eq!(parse_url("rediss://localhost").unwrap_err().kind(), ErrorKind::UnsupportedBackend);
        assert_eq!(parse_url("Rediss+Cluster://a:1").unwrap_err().kind(), ErrorKind::UnsupportedBackend);
    }
}
