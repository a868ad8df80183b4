//! Broker configuration, the options every backend shares, and the table of URL schemes.
//! Each backend parses its own URL options (`store/<backend>/config.rs`); this file maps a
//! scheme to that parser (the backend table, `store::SCHEMES`) and holds what the parsers share (the millisecond
//! options, percent-decoding).

use crate::error::{Error, ErrorKind, Result};
use crate::store::{self, Backend};

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
#[non_exhaustive]
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
#[non_exhaustive]
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

/// Default lease of a delivery claimed from a shared store without an ack deadline
/// (`lease_ms`): renewed every third of it while the broker lives, so only the deliveries of
/// a broker that stopped (crashed, or hung that long) come back to other consumers.
pub const DEFAULT_LEASE: std::time::Duration = std::time::Duration::from_secs(30);

/// The longest time any store option takes, in milliseconds (`busy_timeout_ms`, `lease_ms`,
/// `timeout_ms`): 2^31 - 1, about 24.8 days, the largest that every engine takes as it is
/// (SQLite's busy timeout is a C `int` of milliseconds).
pub const MAX_OPTION_MILLIS: u64 = i32::MAX as u64;

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

/// How a backend reads its URL: the scheme (in lower case) and what follows `://`.
pub(crate) type ParseUrl = fn(&str, &str) -> Result<Backend>;

/// The URL schemes of one backend: a line of the backend table (`store::SCHEMES`, made by
/// `backends!` in `store/mod.rs`).
pub(crate) struct Scheme {
    pub names: &'static [&'static str],
    /// The cargo feature the backend needs (None: always built).
    pub feature: Option<&'static str>,
    /// The backend's parser; None when this build leaves the backend out.
    pub parse: Option<ParseUrl>,
}

/// Parses a backend URL: `memory://`, or `sqlite:///absolute/path.db` (also
/// `sqlite://relative/path.db`) with optional `?synchronous=normal|full&busy_timeout_ms=N&lease_ms=N`,
/// or `redis://[user:password@]host[:port][/db]`, `redis+cluster://host:port,host:port` and
/// `redis+sentinel://host:port,host:port/MASTER` with optional `?prefix=NAME&lease_ms=N&timeout_ms=N`
/// (`rediss://` and `rediss+sentinel://` for TLS, with its options: `docs/redis.md`).
/// A known scheme whose backend this build leaves out (its cargo feature is off), or that names
/// something no build provides yet (`rediss+cluster://`), gets `UnsupportedBackend`; anything else that
/// is not one of the above `InvalidUrl`.
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
    let lower = scheme.to_ascii_lowercase();
    let Some(entry) = store::SCHEMES.iter().find(|s| s.names.contains(&lower.as_str())) else {
        return Err(invalid(format!("unknown backend scheme {scheme:?}")));
    };
    match (entry.parse, entry.feature) {
        (Some(parse), _) => parse(&lower, rest),
        (None, feature) => {
            let feature = feature.unwrap_or(lower.as_str());
            Err(Error::new(
                ErrorKind::UnsupportedBackend,
                format!(
                    "{scheme}:// is not available in this build of brokk: it needs the cargo feature \"{feature}\" \
                     (of brokk-core), which this build leaves out"
                ),
            ))
        }
    }
}

/// A malformed URL, with why.
pub(crate) fn invalid(why: String) -> Error {
    Error::new(ErrorKind::InvalidUrl, why)
}

// The helpers below are the backends' (their URL parsers and checks).

/// A URL option in milliseconds, from `min` to `MAX_OPTION_MILLIS`.
pub(crate) fn millis(key: &str, value: &str, min: u64) -> Result<std::time::Duration> {
    // Digits only: `parse` would also take a leading '+'.
    match value.parse::<u64>().ok().filter(|_| value.bytes().all(|b| b.is_ascii_digit())) {
        Some(ms) if (min..=MAX_OPTION_MILLIS).contains(&ms) => Ok(std::time::Duration::from_millis(ms)),
        _ => Err(invalid(format!(
            "{key} must be a whole number of milliseconds from {min} to {MAX_OPTION_MILLIS}; got {value:?}"
        ))),
    }
}

/// A time option set in code rather than in a URL: the same range as `millis`.
pub(crate) fn check_millis(key: &str, value: std::time::Duration, min: u64) -> Result<()> {
    let ms = value.as_millis();
    if ms < u128::from(min) || ms > u128::from(MAX_OPTION_MILLIS) {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            format!("{key} must be from {min} to {MAX_OPTION_MILLIS} milliseconds; got {ms}"),
        ));
    }
    Ok(())
}

/// Decodes `%XX` escapes (a path with spaces or `?` in it, a password with `@`), refusing broken
/// ones and non-UTF-8.
pub(crate) fn percent_decode(s: &str) -> Result<String> {
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
        #[cfg(feature = "redis")]
        assert_eq!(parse_url("rediss+cluster://localhost").unwrap_err().kind(), ErrorKind::UnsupportedBackend);
    }

    #[test]
    fn every_scheme_is_lower_case_and_in_one_line() {
        let mut seen = std::collections::HashSet::new();
        for scheme in store::SCHEMES.iter().flat_map(|s| s.names) {
            assert_eq!(*scheme, scheme.to_ascii_lowercase());
            assert!(seen.insert(*scheme), "{scheme} is in two lines");
        }
    }

    /// A URL of a backend this build leaves out names the cargo feature that brings it back.
    #[cfg(not(feature = "redis"))]
    #[test]
    fn redis_left_out() {
        for url in ["redis://localhost:6379", "REDIS+CLUSTER://a:1,b:2", "rediss://h"] {
            let e = parse_url(url).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::UnsupportedBackend, "{url}");
            assert!(e.message().contains("cargo feature \"redis\""), "{url}: {}", e.message());
        }
    }

    /// As `redis_left_out`, for SQLite.
    #[cfg(not(feature = "sqlite"))]
    #[test]
    fn sqlite_left_out() {
        let e = parse_url("sqlite:///tmp/x.db").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::UnsupportedBackend);
        assert!(e.message().contains("cargo feature \"sqlite\""), "{}", e.message());
    }
}
