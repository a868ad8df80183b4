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

/// Which store holds the queues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// In this process's memory; the default.
    Memory,
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
    /// A default configuration for the backend named by `url` (`memory://`; empty means memory).
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

/// Parses a backend URL. Known schemes of later backends get `UnsupportedBackend`, anything
/// else `InvalidUrl`.
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
        "sqlite" | "redis" | "rediss" | "redis+cluster" => Err(Error::new(
            ErrorKind::UnsupportedBackend,
            format!("the {scheme} backend is not available in this build of brokk"),
        )),
        _ => Err(Error::new(ErrorKind::InvalidUrl, format!("unknown backend scheme {scheme:?}"))),
    }
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
        assert_eq!(parse_url("sqlite:///tmp/x.db").unwrap_err().kind(), ErrorKind::UnsupportedBackend);
        assert_eq!(parse_url("redis://localhost").unwrap_err().kind(), ErrorKind::UnsupportedBackend);
    }
}
