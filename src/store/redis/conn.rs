//! Connections to the Redis server (or cluster): a small pool, so that a thread waiting for an
//! answer never holds up another's call, reconnection with backoff, and what every Redis
//! error means to brokk.
//!
//! A call takes an idle connection (or makes one), runs, and puts it back if it is still good.
//! A connection that failed is dropped; the next call makes a new one, unless the last attempt
//! failed less than the backoff ago, in which case it fails at once with `Unavailable` (so a
//! poller or a publisher retrying in a loop does not hammer a server that is down). The backoff
//! doubles from `FIRST_BACKOFF` to `MAX_BACKOFF` while attempts keep failing, and resets at the
//! first success.

use std::time::{Duration, Instant};

use ::redis::cluster::{ClusterClient, ClusterConnection};
use ::redis::{ConnectionAddr, ConnectionLike, IntoConnectionInfo, RedisError, RedisResult, ServerErrorKind};
use parking_lot::Mutex;

use crate::config::RedisConfig;
use crate::error::{Error, ErrorKind, Result};

const FIRST_BACKOFF: Duration = Duration::from_millis(20);
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// Idle connections kept: enough for the workers, the poller and a few publishers at once.
const MAX_IDLE: usize = 16;

/// One connection: to a server, or to a whole cluster (which routes each call by its key).
pub(super) enum Conn {
    Single(::redis::Connection),
    Cluster(Box<ClusterConnection>),
}

impl Conn {
    pub fn as_dyn(&mut self) -> &mut dyn ConnectionLike {
        match self {
            Conn::Single(c) => c,
            Conn::Cluster(c) => &mut **c,
        }
    }

    /// GET of each key, in one round trip per node.
    pub fn get_many(&mut self, keys: &[String]) -> RedisResult<Vec<Option<i64>>> {
        match self {
            Conn::Single(c) => {
                let mut pipe = ::redis::pipe();
                for k in keys {
                    pipe.get(k);
                }
                pipe.query(c)
            }
            Conn::Cluster(c) => {
                let mut pipe = ::redis::cluster::cluster_pipe();
                for k in keys {
                    pipe.get(k);
                }
                pipe.query(c)
            }
        }
    }
}

enum Target {
    Single(::redis::Client),
    Cluster(ClusterClient),
}

struct Backoff {
    /// No new connection is tried before this.
    not_before: Option<Instant>,
    delay: Duration,
    /// Why the last attempt failed, for the errors of calls made meanwhile.
    last: String,
}

pub(super) struct Pool {
    target: Target,
    timeout: Duration,
    /// `host:port[,host:port...]`, for messages.
    pub address: String,
    idle: Mutex<Vec<Conn>>,
    backoff: Mutex<Backoff>,
}

impl Pool {
    pub fn new(config: &RedisConfig) -> Result<Pool> {
        let address = config.address();
        let bad = |e: RedisError| {
            Error::new(ErrorKind::CannotOpenStore, format!("redis {address}: cannot use this configuration: {e}"))
        };
        let target = if config.cluster {
            let nodes: Vec<_> = config.nodes.iter().map(|(h, p)| ConnectionAddr::Tcp(h.clone(), *p)).collect();
            let mut builder = ClusterClient::builder(nodes)
                .connection_timeout(config.timeout)
                .response_timeout(config.timeout)
                .retries(2)
                .min_retry_wait(10)
                .max_retry_wait(200);
            if let Some(u) = &config.username {
                builder = builder.username(u);
            }
            if let Some(p) = &config.password {
                builder = builder.password(p);
            }
            Target::Cluster(builder.build().map_err(bad)?)
        } else {
            let (host, port) = config.nodes.first().cloned().unwrap_or_default();
            let mut settings = ::redis::RedisConnectionInfo::default().set_db(config.db);
            if let Some(u) = &config.username {
                settings = settings.set_username(u);
            }
            if let Some(p) = &config.password {
                settings = settings.set_password(p);
            }
            let info =
                ConnectionAddr::Tcp(host, port).into_connection_info().map_err(bad)?.set_redis_settings(settings);
            Target::Single(::redis::Client::open(info).map_err(bad)?)
        };
        Ok(Pool {
            target,
            timeout: config.timeout,
            address,
            idle: Mutex::new(Vec::new()),
            backoff: Mutex::new(Backoff { not_before: None, delay: FIRST_BACKOFF, last: String::new() }),
        })
    }

    /// The client of a single server (None on a cluster), for a connection of one's own.
    pub fn single_client(&self) -> Option<::redis::Client> {
        match &self.target {
            Target::Single(client) => Some(client.clone()),
            Target::Cluster(_) => None,
        }
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Makes a connection, or says why not (the backoff, or the server's answer).
    fn connect(&self) -> std::result::Result<Conn, RedisError> {
        let conn = match &self.target {
            Target::Single(client) => {
                let c = client.get_connection_with_timeout(self.timeout)?;
                c.set_read_timeout(Some(self.timeout))?;
                c.set_write_timeout(Some(self.timeout))?;
                Conn::Single(c)
            }
            Target::Cluster(client) => Conn::Cluster(Box::new(client.get_connection()?)),
        };
        Ok(conn)
    }

    fn take(&self, what: &str) -> Result<Conn> {
        if let Some(c) = self.idle.lock().pop() {
            return Ok(c);
        }
        {
            let b = self.backoff.lock();
            if let Some(at) = b.not_before.filter(|&at| Instant::now() < at) {
                let wait = at.saturating_duration_since(Instant::now());
                return Err(Error::new(
                    ErrorKind::Unavailable,
                    format!(
                        "redis {}: {what}: the server is unreachable ({}); reconnecting in {} ms",
                        self.address,
                        b.last,
                        wait.as_millis()
                    ),
                ));
            }
        }
        match self.connect() {
            Ok(c) => {
                let mut b = self.backoff.lock();
                b.not_before = None;
                b.delay = FIRST_BACKOFF;
                Ok(c)
            }
            Err(e) => {
                let err = self.error(&e, what);
                let mut b = self.backoff.lock();
                b.not_before = Some(Instant::now() + b.delay);
                b.delay = (b.delay * 2).min(MAX_BACKOFF);
                b.last = e.to_string();
                Err(err)
            }
        }
    }

    /// Runs `f` on a connection of the pool. A connection-level failure drops the connection
    /// and is `Unavailable`; any other error leaves the connection in the pool.
    pub fn run<R>(&self, what: &str, f: impl FnOnce(&mut Conn) -> RedisResult<R>) -> Result<R> {
        let mut conn = self.take(what)?;
        match f(&mut conn) {
            Ok(r) => {
                self.put_back(conn);
                Ok(r)
            }
            Err(e) => {
                if broken(&e) {
                    // The others were most likely cut by the same fault (a restarted server):
                    // drop them too, rather than fail one call on each of them later.
                    self.idle.lock().clear();
                } else {
                    self.put_back(conn);
                }
                Err(self.error(&e, what))
            }
        }
    }

    fn put_back(&self, conn: Conn) {
        let mut idle = self.idle.lock();
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
    }

    /// What a Redis error means to brokk.
    pub fn error(&self, e: &RedisError, what: &str) -> Error {
        let address = &self.address;
        match classify(e) {
            ErrorKind::Unavailable => Error::new(
                ErrorKind::Unavailable,
                format!("redis {address}: {what}: the server is unreachable or not ready ({e}); the broker reconnects by itself"),
            ),
            ErrorKind::CannotOpenStore => Error::new(
                ErrorKind::CannotOpenStore,
                format!("redis {address}: {what}: the server refused the credentials ({e})"),
            ),
            kind => Error::new(kind, format!("redis {address}: {what} failed: {e}")),
        }
    }
}

/// Whether the connection that returned `e` must be replaced.
fn broken(e: &RedisError) -> bool {
    classify(e) == ErrorKind::Unavailable || e.is_unrecoverable_error()
}

fn classify(e: &RedisError) -> ErrorKind {
    use ::redis::ErrorKind as K;
    if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_connection_refusal() {
        return ErrorKind::Unavailable;
    }
    match e.kind() {
        K::AuthenticationFailed | K::Server(ServerErrorKind::NoPerm) => ErrorKind::CannotOpenStore,
        K::ClusterConnectionNotFound
        | K::Server(ServerErrorKind::BusyLoading)
        | K::Server(ServerErrorKind::TryAgain)
        | K::Server(ServerErrorKind::ClusterDown)
        | K::Server(ServerErrorKind::MasterDown)
        | K::Server(ServerErrorKind::ReadOnly) => ErrorKind::Unavailable,
        _ if e.code() == Some("NOAUTH") || e.code() == Some("WRONGPASS") => ErrorKind::CannotOpenStore,
        _ => ErrorKind::StorageFailed,
    }
}

#[cfg(test)]
mod tests {
    use super::classify;
    use crate::error::ErrorKind;
    use ::redis::{ErrorKind as K, RedisError, ServerErrorKind};

    #[test]
    fn redis_errors_map_to_what_a_caller_can_act_on() {
        let io = |kind| RedisError::from(std::io::Error::new(kind, "x"));
        assert_eq!(classify(&io(std::io::ErrorKind::ConnectionRefused)), ErrorKind::Unavailable);
        assert_eq!(classify(&io(std::io::ErrorKind::ConnectionReset)), ErrorKind::Unavailable);
        assert_eq!(classify(&io(std::io::ErrorKind::TimedOut)), ErrorKind::Unavailable);
        assert_eq!(classify(&io(std::io::ErrorKind::UnexpectedEof)), ErrorKind::Unavailable);
        let server = |kind| RedisError::from((K::Server(kind), "x"));
        assert_eq!(classify(&server(ServerErrorKind::BusyLoading)), ErrorKind::Unavailable);
        assert_eq!(classify(&server(ServerErrorKind::ClusterDown)), ErrorKind::Unavailable);
        assert_eq!(classify(&server(ServerErrorKind::TryAgain)), ErrorKind::Unavailable);
        assert_eq!(classify(&server(ServerErrorKind::ReadOnly)), ErrorKind::Unavailable);
        assert_eq!(classify(&server(ServerErrorKind::ResponseError)), ErrorKind::StorageFailed);
        assert_eq!(classify(&server(ServerErrorKind::NoPerm)), ErrorKind::CannotOpenStore);
        assert_eq!(classify(&RedisError::from((K::AuthenticationFailed, "x"))), ErrorKind::CannotOpenStore);
        assert_eq!(classify(&::redis::make_extension_error("WRONGPASS".into(), None)), ErrorKind::CannotOpenStore);
        assert_eq!(classify(&::redis::make_extension_error("OOM".into(), None)), ErrorKind::StorageFailed);
    }
}
