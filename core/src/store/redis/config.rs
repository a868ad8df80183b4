//! The Redis store's URL options and their defaults: `redis://[user:password@]host[:port][/db]`,
//! `redis+cluster://[user:password@]host:port,host:port,...` or
//! `redis+sentinel://[user:password@]host:port,host:port,.../MASTER[/db]`, with optional
//! `?prefix=NAME&lease_ms=N&timeout_ms=N`; `rediss://` and `rediss+sentinel://` are the same over
//! TLS, with `ca=`, `cert=`, `key=`, `server_name=` and `insecure=true`. The backend table
//! (`store/mod.rs`) maps these schemes (and `rediss+cluster`, refused) to [`parse_url`].

use std::path::PathBuf;

use crate::config::{check_millis, invalid, millis, percent_decode, DEFAULT_LEASE};
use crate::error::{Error, ErrorKind, Result};
use crate::store::Backend;

/// Default namespace of a Redis store's keys (`prefix`): every key brokk writes starts with
/// `{brokk:` or `{brokk}`.
pub const DEFAULT_REDIS_PREFIX: &str = "brokk";
/// Default longest wait for a Redis server to accept a connection or answer a call
/// (`timeout_ms`) before the call fails with `ErrorKind::Unavailable`.
pub const DEFAULT_REDIS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// Most replicas `replicas=` may ask for.
pub const MAX_REPLICAS: u32 = 64;
/// Port of a Redis node whose URL names none.
pub const DEFAULT_REDIS_PORT: u16 = 6379;

/// Where and how to reach a Redis store: `redis://[user:password@]host[:port][/db]`,
/// `redis+cluster://[user:password@]host:port,host:port,...` or
/// `redis+sentinel://[user:password@]host:port,.../MASTER[/db]` (`rediss` for TLS), with optional
/// `?prefix=NAME&lease_ms=N&timeout_ms=N` and the TLS options. See `docs/redis.md`.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// The server; for a cluster the nodes to learn the cluster from; with `sentinel_master`
    /// the sentinels to ask for the master: (host, port).
    pub nodes: Vec<(String, u16)>,
    /// A Redis Cluster: keys spread over its nodes by hash slot.
    pub cluster: bool,
    /// Redis Sentinel: the name of the master the sentinels (`nodes`) watch. Every new
    /// connection asks them where the master is now, and checks that it is one (ROLE), so that
    /// brokk follows a failover.
    pub sentinel_master: Option<String>,
    /// The sentinels' own password (`sentinel_password=`), if they require one (`requirepass`
    /// in sentinel.conf); the URL's user and password are the master's.
    pub sentinel_password: Option<String>,
    /// TLS (`rediss://`): None for plain TCP.
    pub tls: Option<RedisTls>,
    /// How many replicas must confirm each change (WAIT) before it returns Ok (`replicas=N`);
    /// 0, the default: none, as Redis (replication is asynchronous). Not on a cluster.
    pub replicas: u32,
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
            sentinel_master: None,
            sentinel_password: None,
            tls: None,
            replicas: 0,
            db: 0,
            username: None,
            password: None,
            prefix: DEFAULT_REDIS_PREFIX.to_owned(),
            lease: DEFAULT_LEASE,
            timeout: DEFAULT_REDIS_TIMEOUT,
        }
    }

    /// `host:port[,host:port...]`, with the master's name for Sentinel, for messages.
    pub(crate) fn address(&self) -> String {
        let nodes: Vec<String> = self.nodes.iter().map(|(h, p)| format!("{h}:{p}")).collect();
        match &self.sentinel_master {
            Some(master) => format!("master {master} of the sentinels {}", nodes.join(",")),
            None => nodes.join(","),
        }
    }

    /// Checks the options a caller may have set in code (the URL parser checks its own).
    pub(crate) fn check(&self) -> Result<()> {
        check_millis("lease_ms", self.lease, 3)?;
        check_millis("timeout_ms", self.timeout, 1)?;
        if self.cluster && (self.tls.is_some() || self.sentinel_master.is_some()) {
            return Err(Error::new(
                ErrorKind::UnsupportedBackend,
                "a Redis Cluster over TLS or behind Sentinel is not available in this build of brokk",
            ));
        }
        if let Some(tls) = &self.tls {
            tls.check().map_err(|e| Error::new(ErrorKind::InvalidArgument, e.message().to_owned()))?;
        }
        let argument = |why: String| Err(Error::new(ErrorKind::InvalidArgument, why));
        if self.nodes.is_empty() {
            return argument("a Redis store needs at least one node (server, cluster node or sentinel)".to_owned());
        }
        if self.cluster && self.replicas > 0 {
            return argument("replicas is for one server or a Sentinel master, not a cluster".to_owned());
        }
        if self.replicas > MAX_REPLICAS {
            return argument(format!("replicas must be 0 to {MAX_REPLICAS}; got {}", self.replicas));
        }
        Ok(())
    }
}

/// TLS to Redis (`rediss://`), with rustls. The server's certificate is checked against `ca`
/// (PEM, one or more certificates), or the platform's trusted roots when `ca` is None (the
/// system's store: `/etc/ssl/certs` on Debian, `SSL_CERT_FILE`/`SSL_CERT_DIR` if set), for the
/// name `server_name`, or else the host the connection goes to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RedisTls {
    /// PEM file of the certificate authorities to trust instead of the platform's.
    pub ca: Option<PathBuf>,
    /// PEM file of this client's certificate (chain), for servers that ask for one
    /// (`tls-auth-clients yes`); with `key`.
    pub cert: Option<PathBuf>,
    /// PEM file of the private key of `cert`.
    pub key: Option<PathBuf>,
    /// The name (or IP address) the server's certificate must be for, when it is not the host
    /// connected to (an address given by Sentinel, a tunnel).
    pub server_name: Option<String>,
    /// Accept any server certificate: encryption without authentication, for tests only.
    pub insecure: bool,
}

impl RedisTls {
    fn check(&self) -> Result<()> {
        if self.cert.is_some() != self.key.is_some() {
            return Err(invalid("a client certificate needs both cert= and key= (PEM files)".to_owned()));
        }
        if self.insecure && (self.ca.is_some() || self.server_name.is_some()) {
            return Err(invalid(
                "insecure=true checks no certificate: it cannot go with ca= or server_name=".to_owned(),
            ));
        }
        Ok(())
    }
}

/// The password stays out of logs and panic messages.
impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("nodes", &self.nodes)
            .field("cluster", &self.cluster)
            .field("sentinel_master", &self.sentinel_master)
            .field("sentinel_password", &self.sentinel_password.as_ref().map(|_| "<redacted>"))
            .field("tls", &self.tls)
            .field("replicas", &self.replicas)
            .field("db", &self.db)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("prefix", &self.prefix)
            .field("lease", &self.lease)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// What follows `redis://`, `redis+cluster://`, `redis+sentinel://` or their `rediss` (TLS)
/// forms (`scheme`, lower case). A cluster over TLS is refused: `UnsupportedBackend`.
pub(crate) fn parse_url(scheme: &str, rest: &str) -> Result<Backend> {
    let (tls, kind) = match scheme.split_once('+') {
        Some((base, kind)) => (base == "rediss", kind),
        None => (scheme == "rediss", ""),
    };
    match kind {
        "" | "sentinel" => parse(scheme, rest, false, kind == "sentinel", tls).map(Backend::Redis),
        "cluster" if !tls => parse(scheme, rest, true, false, false).map(Backend::Redis),
        _ => Err(Error::new(
            ErrorKind::UnsupportedBackend,
            format!(
                "{scheme}:// (a Redis Cluster over TLS) is not available in this build of brokk; use \
                 redis+cluster:// on a trusted network, or rediss:// to one server"
            ),
        )),
    }
}

/// What follows the scheme: credentials, nodes, database (after the master's name for Sentinel),
/// options.
fn parse(scheme: &str, rest: &str, cluster: bool, sentinel: bool, tls: bool) -> Result<RedisConfig> {
    let scheme = format!("{scheme}://");
    let scheme = scheme.as_str();
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, Some(q)),
        None => (rest, None),
    };
    // Credentials end at the last '@': a password may contain '@' if escaped, or not.
    let (auth, rest) = match rest.rsplit_once('@') {
        Some((a, r)) => (Some(a), r),
        None => (None, rest),
    };
    let (hosts, mut path) = match rest.split_once('/') {
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
    if nodes.len() > 1 && !cluster && !sentinel {
        return Err(invalid(format!(
            "{scheme} takes one server; for a cluster use redis+cluster://{hosts}, for Sentinel \
             redis+sentinel://{hosts}/MASTER"
        )));
    }
    let mut config = RedisConfig::new(String::new(), 0);
    config.nodes = nodes;
    config.cluster = cluster;
    if sentinel {
        let (master, db) = match path {
            Some(p) => match p.split_once('/') {
                Some((m, d)) => (m, Some(d)),
                None => (p, None),
            },
            None => ("", None),
        };
        let master = percent_decode(master)?;
        if master.is_empty() || master.contains([' ', '/', '?']) {
            return Err(invalid(format!(
                "{scheme} needs the master's name after the sentinels, as in \
                 {scheme}s1:26379,s2:26379/mymaster; got {:?}",
                path.unwrap_or("")
            )));
        }
        config.sentinel_master = Some(master);
        path = db;
    }
    match path.filter(|d| !d.is_empty()) {
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
    let mut options = RedisTls::default();
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
            "replicas" => match value.parse::<u32>() {
                Ok(n) if n <= MAX_REPLICAS && value.bytes().all(|b| b.is_ascii_digit()) && !cluster => {
                    config.replicas = n
                }
                _ if cluster => {
                    return Err(invalid("replicas= is for one server or a Sentinel master, not a cluster".to_owned()))
                }
                _ => return Err(invalid(format!("replicas must be 0 to {MAX_REPLICAS}; got {value:?}"))),
            },
            "sentinel_password" if sentinel => {
                let password = percent_decode(value)?;
                if password.is_empty() {
                    return Err(invalid("sentinel_password= needs the sentinels' password".to_owned()));
                }
                config.sentinel_password = Some(password);
            }
            "ca" | "cert" | "key" | "server_name" | "insecure" if !tls => {
                let tls_scheme = scheme.replacen("redis", "rediss", 1);
                return Err(invalid(format!("{key}= is a TLS option: use {tls_scheme} for TLS")));
            }
            "ca" => options.ca = Some(path_option(key, value)?),
            "cert" => options.cert = Some(path_option(key, value)?),
            "key" => options.key = Some(path_option(key, value)?),
            "server_name" => {
                let name = percent_decode(value)?;
                if name.is_empty() || rustls::pki_types::ServerName::try_from(name.as_str()).is_err() {
                    return Err(invalid(format!("server_name must be a DNS name or an IP address; got {value:?}")));
                }
                options.server_name = Some(name);
            }
            "insecure" => match value {
                "true" => options.insecure = true,
                "false" => options.insecure = false,
                _ => return Err(invalid(format!("insecure must be true or false; got {value:?}"))),
            },
            _ => {
                let sentinel_options = if sentinel { ", sentinel_password" } else { "" };
                let tls_options = if tls { ", ca, cert, key, server_name, insecure" } else { "" };
                return Err(invalid(format!(
                    "unknown {scheme} option {key:?}; the options are prefix, lease_ms, timeout_ms, \
                     replicas{sentinel_options}{tls_options}"
                )));
            }
        }
    }
    if tls {
        options.check()?;
        config.tls = Some(options);
    }
    Ok(config)
}

/// A file named by a TLS option: percent-decoded, not empty. Whether it can be read is checked
/// when the store is opened.
fn path_option(key: &str, value: &str) -> Result<PathBuf> {
    let path = percent_decode(value)?;
    if path.is_empty() {
        return Err(invalid(format!("{key}= needs the path of a PEM file")));
    }
    Ok(PathBuf::from(path))
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
        assert_eq!(parse_url("Rediss+Cluster://a:1").unwrap_err().kind(), ErrorKind::UnsupportedBackend);
    }

    #[test]
    fn tls_and_sentinel_urls() {
        let redis = |url: &str| match parse_url(url) {
            Ok(Backend::Redis(c)) => c,
            other => panic!("{url}: {other:?}"),
        };
        let c = redis("rediss://localhost");
        assert_eq!((c.tls, c.nodes[0].1), (Some(RedisTls::default()), 6379));
        let c = redis(
            "rediss://u:p@cache:6380/2?ca=/etc/ca.pem&cert=/c%20d/client.pem&key=/k.pem&server_name=redis.internal&prefix=x",
        );
        let tls = c.tls.unwrap();
        assert_eq!(tls.ca.as_deref(), Some(std::path::Path::new("/etc/ca.pem")));
        assert_eq!(tls.cert.as_deref(), Some(std::path::Path::new("/c d/client.pem")));
        assert_eq!((tls.server_name.as_deref(), tls.insecure, c.db, c.prefix.as_str()), (Some("redis.internal"), false, 2, "x"));
        assert!(redis("rediss://h?insecure=true").tls.unwrap().insecure);
        assert_eq!(redis("rediss://h?server_name=10.0.0.1").tls.unwrap().server_name.as_deref(), Some("10.0.0.1"));
        assert_eq!(redis("redis://h?replicas=2").replicas, 2);
        let c = redis("redis+sentinel://:pw@s1:26379,s2:26380/mymaster?timeout_ms=500&sentinel_password=s%40nt");
        assert_eq!(c.sentinel_password.as_deref(), Some("s@nt"));
        assert!(!format!("{c:?}").contains("s@nt"), "the sentinels' password is redacted");
        assert_eq!(c.sentinel_master.as_deref(), Some("mymaster"));
        assert_eq!((c.nodes.len(), c.cluster, c.db, c.tls.is_some()), (2, false, 0, false));
        assert_eq!(c.password.as_deref(), Some("pw"));
        assert_eq!(c.address(), "master mymaster of the sentinels s1:26379,s2:26380");
        let c = redis("rediss+sentinel://s1:26379/mymaster/3?ca=/ca.pem");
        assert_eq!((c.sentinel_master.as_deref(), c.db, c.tls.is_some()), (Some("mymaster"), 3, true));
        for bad in [
            "redis://h?ca=/ca.pem",
            "redis+sentinel://s:1/m?insecure=true",
            "rediss://h?cert=/c.pem",
            "rediss://h?key=/k.pem",
            "rediss://h?ca=",
            "rediss://h?insecure=yes",
            "rediss://h?insecure=true&ca=/ca.pem",
            "rediss://h?server_name=",
            "rediss://h?server_name=a%20b",
            "rediss://h?tls=1",
            "rediss://a:1,b:2",
            "redis+sentinel://s1:26379",
            "redis+sentinel://s1:26379/",
            "redis+sentinel://s1:26379/m/x",
            "redis+sentinel://s1:26379/m?sentinel_password=",
            "redis://h?sentinel_password=x",
            "redis://h?replicas=-1",
            "redis://h?replicas=65",
            "redis://h?replicas=+1",
            "redis+cluster://a:1?replicas=1",
        ] {
            let e = parse_url(bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidUrl, "{bad}");
            assert!(!e.message().is_empty());
        }
        let e = parse_url("rediss+cluster://a:1").unwrap_err();
        assert!(e.message().contains("not available"), "{}", e.message());
    }
}
