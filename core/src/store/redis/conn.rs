//! Connections to the Redis server (or cluster): a small pool, so that a thread waiting for an
//! answer never holds up another's call; one deadline per call; reconnection with backoff; and
//! what every failure means to brokk, which depends on where it happened.
//!
//! **One deadline per call.** A call (`Pool::run`, `Pool::change`) has `timeout` from its start
//! to connect if it must, send its request and read the answer: each step waits only for what is
//! left of it. (redis-rs's own `Connection` reads each reply of its connection handshake with the
//! whole timeout, which made a call to a paused server take twice its timeout; so a connection
//! to a single server is made and driven here, by `Link`.)
//!
//! **Where a call failed says what it did.** A request that never left (no connection could be
//! made, the backoff, the deadline passed before sending, a send that failed part-way, which the
//! server drops with the connection) did nothing: `Unavailable`. A request that left whole and
//! whose answer did not come (a timeout, a connection cut while waiting) may have run, or may
//! run later (a paused server runs what it received when it resumes): for a call that changes
//! the store that is `OutcomeUnknown`; for a read it changes nothing and stays `Unavailable`.
//! Before reusing an idle connection, a call looks whether the server closed it meanwhile (a
//! restarted server), so that a request is not sent into a connection known to be dead.
//!
//! A connection that failed is dropped, with the idle ones (most likely cut by the same fault);
//! the next call makes a new one, unless the last attempt failed less than the backoff ago, in
//! which case it fails at once with `Unavailable` (so a poller or a publisher retrying in a loop
//! does not hammer a server that is down). The backoff doubles from `FIRST_BACKOFF` to
//! `MAX_BACKOFF` while attempts keep failing, and resets at the first success.
//!
//! **Which server.** The connections to a single server (the pool's and the listening
//! thread's) are made by `dial.rs`: to the URL's server, or to the master the sentinels name at
//! that moment, so that a new connection follows a failover; over TLS if the URL says so
//! (`stream.rs`, `tls.rs`). With `replicas=N`, a change that succeeded is followed by `WAIT N`
//! on the same connection, and is `OutcomeUnknown` if fewer replicas confirm it in time.
//!
//! On a cluster, redis-rs's `ClusterConnection` routes each call by its key; it is told not to
//! retry anything itself (a retry after a timeout would send a write twice), its read and write
//! timeouts are set to what is left of each call, and a failure after it was handed the request
//! counts as sent (it cannot tell).

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::sync::Mutex;
use ::redis::cluster::{ClusterClient, ClusterConnection};
use ::redis::{Cmd, ConnectionAddr, ConnectionLike, Parser, RedisError, RedisResult, ServerErrorKind, Value};

use super::dial::Dialer;
use super::stream::Stream;
use super::RedisConfig;
use crate::log::{log, Log};
use crate::error::{Error, ErrorKind, Result};

const FIRST_BACKOFF: Duration = Duration::from_millis(20);
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// Idle connections kept: enough for the workers, the poller and a few publishers at once.
const MAX_IDLE: usize = 16;

/// What a call does to the store, which decides what its failure means.
#[derive(Clone, Copy, Debug)]
pub(super) enum Effect {
    /// Reads, or bookkeeping that a repeat or a loss leaves the same for every caller (listing a
    /// topic, registering this broker): a failure is `Unavailable`, wherever it happened.
    Reads,
    /// Changes the store: a failure after the request left is `OutcomeUnknown`, with this
    /// sentence saying what may have happened and what to do.
    Changes(&'static str),
}

/// A connection to one server, made and driven here (see the module note): the socket (plain or
/// TLS), the reply parser, the current call's deadline, and whether a request is out unanswered.
pub(super) struct Link {
    stream: Stream,
    parser: Parser,
    db: i64,
    deadline: Instant,
    /// A request went out whole and its answer has not come: what it did is unknown.
    unanswered: bool,
    /// Requests sent meanwhile change nothing (the handshake, a SCRIPT LOAD): they never count
    /// as unanswered.
    harmless: bool,
    open: bool,
    /// The socket's read and write timeouts as last set (see `Bounded`).
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
}

/// The socket of a call, read and written within the call's deadline. Setting a socket's
/// timeout is a system call; setting both before each request and reply made four of a call's
/// seven. So a timeout stays as it is while it ends no later than the deadline (`arm`); a read
/// or write that times out before the deadline (the timeout was set for an earlier, shorter
/// call) sets it to what is left and goes on, so no call ends before its deadline nor waits
/// past it.
struct Bounded<'a> {
    stream: &'a mut Stream,
    deadline: Instant,
    read_timeout: &'a mut Option<Duration>,
    write_timeout: &'a mut Option<Duration>,
}

/// Makes `timeout` (the socket's, as last set by `set`) end no later than `left` from now: as
/// it is if it already does, else a little earlier than `left`, so that the next calls of the
/// same timeout, which start with a little less left, keep it too.
fn arm(
    timeout: &mut Option<Duration>,
    left: Duration,
    set: impl FnOnce(Option<Duration>) -> std::io::Result<()>,
) -> std::io::Result<()> {
    if timeout.is_some_and(|t| t <= left) {
        return Ok(());
    }
    let t = (left - left / 8).max(Duration::from_micros(1)).min(left);
    set(Some(t))?;
    *timeout = Some(t);
    Ok(())
}

/// Whether `e` is a socket timeout (std reports SO_RCVTIMEO/SO_SNDTIMEO as either kind).
fn is_timeout(e: &std::io::Error) -> bool {
    matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)
}

impl Bounded<'_> {
    /// After a timeout: the call's time is not over yet, so wait on, for what is left of it.
    fn extend(&mut self, e: std::io::Error, read: bool) -> std::io::Result<()> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(e);
        }
        if read {
            self.stream.set_read_timeout(Some(left))?;
            *self.read_timeout = Some(left);
        } else {
            self.stream.set_write_timeout(Some(left))?;
            *self.write_timeout = Some(left);
        }
        Ok(())
    }
}

impl Read for Bounded<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            match self.stream.read(buf) {
                Err(e) if is_timeout(&e) => self.extend(e, true)?,
                r => return r,
            }
        }
    }
}

impl Write for Bounded<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        loop {
            match self.stream.write(buf) {
                Err(e) if is_timeout(&e) => self.extend(e, false)?,
                r => return r,
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        loop {
            match self.stream.flush() {
                Err(e) if is_timeout(&e) => self.extend(e, false)?,
                r => return r,
            }
        }
    }
}

fn timed_out() -> RedisError {
    RedisError::from(std::io::Error::new(std::io::ErrorKind::TimedOut, "the call's time ran out"))
}

impl Link {
    /// A new connection, its first call ending at `deadline`; harmless until `ready` (the
    /// handshake's requests change nothing).
    pub fn new(stream: Stream, db: i64, deadline: Instant) -> Link {
        Link {
            stream,
            parser: Parser::new(),
            db,
            deadline,
            unanswered: false,
            harmless: true,
            open: true,
            read_timeout: None,
            write_timeout: None,
        }
    }

    /// The handshake is over: from now on a request that leaves may change the store.
    pub fn ready(&mut self) {
        self.harmless = false;
    }

    /// Why the server refused the TLS session, if that is why the connection failed.
    pub fn tls_refusal(&self) -> Option<NoConnection> {
        self.stream.tls_refusal()
    }

    /// Waits up to `wait` for what the server sends unasked (a subscription's messages): None
    /// when nothing came, and the connection stays usable.
    pub fn listen(&mut self, wait: Duration) -> RedisResult<Option<Value>> {
        self.deadline = Instant::now() + wait;
        // The same wait each time (the listening thread's): set once.
        if self.read_timeout != Some(wait) {
            self.stream.set_read_timeout(Some(wait))?;
            self.read_timeout = Some(wait);
        }
        match self.parser.parse_value(&mut self.stream) {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_timeout() => Ok(None),
            Err(e) => {
                self.open = false;
                Err(e)
            }
        }
    }

    /// Sends `cmd` without waiting for an answer (SUBSCRIBE: what comes back is read by `listen`).
    pub fn send_only(&mut self, cmd: &Cmd, deadline: Instant) -> RedisResult<()> {
        self.deadline = deadline;
        self.send(&cmd.get_packed_command())
    }

    /// What is left of the call's time; an error once it is over.
    fn left(&self) -> RedisResult<Duration> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(timed_out());
        }
        Ok(left)
    }

    fn send(&mut self, bytes: &[u8]) -> RedisResult<()> {
        let left = self.left()?;
        let stream = &mut self.stream;
        arm(&mut self.write_timeout, left, |t| stream.set_write_timeout(t))?;
        // A TLS stream sends what it holds on flush (a plain one has nothing held).
        let mut out = self.bounded();
        if let Err(e) = out.write_all(bytes).and_then(|()| out.flush()) {
            // Part of it may be out: the server drops a request it did not get whole when the
            // connection closes, which it does now.
            self.open = false;
            return Err(e.into());
        }
        if !self.harmless {
            self.unanswered = true;
        }
        Ok(())
    }

    fn receive(&mut self) -> RedisResult<Value> {
        // Out of time with a reply to come: the connection cannot serve another call.
        let left = self.left().inspect_err(|_| self.open = false)?;
        let stream = &mut self.stream;
        arm(&mut self.read_timeout, left, |t| stream.set_read_timeout(t))?;
        let Link { stream, parser, deadline, read_timeout, write_timeout, .. } = self;
        let mut input = Bounded { stream, deadline: *deadline, read_timeout, write_timeout };
        let reply = parser.parse_value(&mut input);
        reply.inspect_err(|_| self.open = false)
    }

    /// The socket, for the current call (see `Bounded`).
    fn bounded(&mut self) -> Bounded<'_> {
        Bounded {
            stream: &mut self.stream,
            deadline: self.deadline,
            read_timeout: &mut self.read_timeout,
            write_timeout: &mut self.write_timeout,
        }
    }

    /// Whether the connection still looks usable: the server has not closed it (EOF or a reset
    /// waiting to be read) and sent nothing unasked. Non-blocking, no round trip.
    fn alive(&mut self) -> bool {
        self.stream.alive()
    }
}

impl ConnectionLike for Link {
    fn req_packed_command(&mut self, cmd: &[u8]) -> RedisResult<Value> {
        self.send(cmd)?;
        let reply = self.receive()?;
        self.unanswered = false;
        Ok(reply)
    }

    fn req_packed_commands(&mut self, cmd: &[u8], offset: usize, count: usize) -> RedisResult<Vec<Value>> {
        self.send(cmd)?;
        let mut replies = Vec::with_capacity(count);
        for i in 0..offset + count {
            let reply = self.receive()?;
            if i >= offset {
                replies.push(reply);
            }
        }
        self.unanswered = false;
        Ok(replies)
    }

    fn get_db(&self) -> i64 {
        self.db
    }

    fn check_connection(&mut self) -> bool {
        ::redis::cmd("PING").query::<String>(self).is_ok()
    }

    fn is_open(&self) -> bool {
        self.open
    }
}

/// One connection: to a server, or to a whole cluster (which routes each call by its key).
pub(super) enum Conn {
    Single(Link),
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

    /// Runs `cmd`, an EVALSHA of `script`; on NOSCRIPT (a restarted or failed-over server, a
    /// SCRIPT FLUSH) loads the script and runs it again. The load changes nothing: if it fails,
    /// the script did not run.
    pub fn eval(&mut self, script: &::redis::Script, cmd: &Cmd) -> RedisResult<Value> {
        match cmd.query::<Value>(self.as_dyn()) {
            Err(e) if e.kind() == ::redis::ErrorKind::Server(ServerErrorKind::NoScript) => {
                self.harmless(|c| script.load(c.as_dyn()))?;
                cmd.query(self.as_dyn())
            }
            other => other,
        }
    }

    /// Runs `f`, whose requests change nothing: a failure of them leaves nothing unknown.
    fn harmless<R>(&mut self, f: impl FnOnce(&mut Conn) -> R) -> R {
        let Conn::Single(link) = self else { return f(self) };
        let (before, was) = (link.harmless, link.unanswered);
        link.harmless = true;
        let r = f(self);
        if let Conn::Single(link) = self {
            link.harmless = before;
            link.unanswered = was;
        }
        r
    }

    /// Gives the call that starts `deadline` as its end.
    fn start(&mut self, deadline: Instant) -> RedisResult<()> {
        match self {
            Conn::Single(link) => {
                link.deadline = deadline;
                link.unanswered = false;
                Ok(())
            }
            Conn::Cluster(c) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(timed_out());
                }
                c.set_read_timeout(Some(left))?;
                c.set_write_timeout(Some(left))
            }
        }
    }

    /// Whether the failed call's request may have reached the server (and so may have run, or
    /// may yet run).
    fn may_have_run(&self, e: &RedisError) -> bool {
        match self {
            Conn::Single(link) => link.unanswered,
            // The cluster connection cannot say whether it sent the request: only a refused
            // connection, a missing one, or a server's refusal (MOVED, TRYAGAIN, ...) before
            // running anything are sure.
            Conn::Cluster(_) => {
                !(e.is_connection_refusal() || e.kind() == ::redis::ErrorKind::ClusterConnectionNotFound)
                    && connection_level(e)
            }
        }
    }

    fn reusable(&mut self) -> bool {
        match self {
            Conn::Single(link) => link.open && link.alive(),
            Conn::Cluster(_) => true,
        }
    }
}

enum Target {
    /// One server, or the master its sentinels name (see `dial.rs`).
    Single(Arc<Dialer>),
    Cluster(Box<ClusterClient>),
}

/// Why no connection could be made.
#[derive(Debug)]
pub(super) enum NoConnection {
    /// The host name does not resolve.
    Unresolved(String),
    /// Nothing listens at the address (connection refused).
    Refused,
    /// No answer within the call's time (connecting, or to the handshake).
    Silent,
    /// The server answered the handshake with an error: credentials, database, loading...
    Answered(RedisError),
    /// Any other failure (a cluster's discovery, a network error).
    Other(RedisError),
    /// The server refused the TLS session, or its certificate was not trusted.
    Tls(String),
    /// No sentinel named the master: each one's reason. When each sentinel either is not there
    /// or knows no master of that name (`url_to_fix`), the URL is wrong (or the sentinels are
    /// not set up).
    NoMaster { url_to_fix: bool, why: String },
}

impl NoConnection {
    pub(super) fn of(e: RedisError) -> NoConnection {
        if e.is_connection_refusal() {
            NoConnection::Refused
        } else if e.is_timeout() {
            NoConnection::Silent
        } else if e.is_io_error() || e.is_connection_dropped() {
            NoConnection::Other(e)
        } else {
            NoConnection::Answered(e)
        }
    }

    /// What a failed open is, and what to do about it.
    fn at_open(&self) -> (ErrorKind, &'static str) {
        let later = (ErrorKind::Unavailable, "retrying later may succeed");
        match self {
            NoConnection::Unresolved(_) | NoConnection::Refused => {
                (ErrorKind::CannotOpenStore, "check the address, or start the server first")
            }
            NoConnection::Silent | NoConnection::Other(_) => later,
            NoConnection::Tls(_) => (
                ErrorKind::CannotOpenStore,
                "check the TLS options (ca=, cert=, key=, server_name=) against the server's certificates",
            ),
            NoConnection::NoMaster { url_to_fix: true, .. } => {
                (ErrorKind::CannotOpenStore, "check the sentinels' addresses and the master's name in the URL")
            }
            NoConnection::NoMaster { .. } => later,
            NoConnection::Answered(e) => match classify(e) {
                ErrorKind::CannotOpenStore => {
                    (ErrorKind::CannotOpenStore, "check the user name and password in the URL")
                }
                ErrorKind::Unavailable => later,
                _ => (ErrorKind::CannotOpenStore, "check the URL (database, user)"),
            },
        }
    }

    /// Why, in words (never the password).
    fn reason(&self, address: &str, timeout: Duration) -> String {
        match self {
            NoConnection::Unresolved(e) => format!("the host name does not resolve ({e})"),
            NoConnection::Refused => format!("nothing answers at {address} (connection refused)"),
            NoConnection::Silent => format!("the server did not answer within {} ms", timeout.as_millis()),
            NoConnection::Answered(e) => match classify(e) {
                ErrorKind::CannotOpenStore => format!("authentication failed ({e})"),
                ErrorKind::Unavailable => format!("the server is not ready ({e})"),
                _ => format!("the server refused the connection ({e})"),
            },
            NoConnection::Other(e) => format!("cannot connect ({e})"),
            NoConnection::Tls(e) => format!("TLS failed ({e})"),
            NoConnection::NoMaster { why, .. } => format!("no sentinel named the master ({why})"),
        }
    }
}

struct Backoff {
    /// No new connection is tried before this.
    not_before: Option<Instant>,
    delay: Duration,
    /// Why the last attempt failed, for the errors of calls made meanwhile.
    last: String,
    /// Since when the server cannot be reached (a connection broke or could not be made), and
    /// how many connection attempts failed since: for the log's outage and reconnection records.
    down_since: Option<Instant>,
    attempts: u32,
}

pub(super) struct Pool {
    target: Target,
    timeout: Duration,
    /// `host:port[,host:port...]` (with the master's name for Sentinel), for messages.
    pub address: String,
    /// Replicas that must confirm each change before it counts as done (`replicas=`), 0: none.
    replicas: u32,
    idle: Mutex<Vec<Conn>>,
    backoff: Mutex<Backoff>,
    /// The store is being opened: a failure means no broker was made (see `fail`).
    opening: AtomicBool,
    /// Where outages and reconnections are logged (the broker's log; the store's other
    /// records too).
    pub log: Log,
}

impl Pool {
    pub fn new(config: &RedisConfig) -> Result<Pool> {
        let address = config.address();
        let bad = |e: RedisError| {
            Error::new(ErrorKind::CannotOpenStore, format!("redis {address}: cannot use this configuration: {e}"))
        };
        let target = if config.cluster {
            let nodes: Vec<_> = config.nodes.iter().map(|(h, p)| ConnectionAddr::Tcp(h.clone(), *p)).collect();
            // No retries: after a timeout or a broken connection, redis-rs would send the request
            // again, and a write could run twice. A redirection (MOVED, ASK) fails the call
            // instead, with nothing done, and the next connection learns the new slot map.
            let mut builder = ClusterClient::builder(nodes)
                .connection_timeout(config.timeout)
                .response_timeout(config.timeout)
                .retries(0);
            if let Some(u) = &config.username {
                builder = builder.username(u);
            }
            if let Some(p) = &config.password {
                builder = builder.password(p);
            }
            Target::Cluster(Box::new(builder.build().map_err(bad)?))
        } else {
            Target::Single(Arc::new(Dialer::new(config)?))
        };
        Ok(Pool {
            target,
            timeout: config.timeout,
            replicas: config.replicas,
            address,
            idle: Mutex::new(Vec::new()),
            backoff: Mutex::new(Backoff {
                not_before: None,
                delay: FIRST_BACKOFF,
                last: String::new(),
                down_since: None,
                attempts: 0,
            }),
            opening: AtomicBool::new(true),
            log: Log::default(),
        })
    }

    /// This pool, logging to `log`.
    pub fn with_log(mut self, log: &Log) -> Pool {
        self.log = log.clone();
        self
    }

    /// The server cannot be reached (`why`): logged at Warn when an outage starts, at Debug for
    /// each further failed attempt.
    fn went_down(&self, why: &str, attempt: bool) {
        let (first, attempts) = {
            let mut b = self.backoff.lock();
            let first = b.down_since.is_none();
            b.down_since.get_or_insert_with(Instant::now);
            b.attempts += u32::from(attempt);
            (first, b.attempts)
        };
        let address = &self.address;
        if first {
            log!(self.log, Warn, "brokk::redis", "redis {address}: connection lost: {why}; calls fail with Unavailable until it comes back");
        } else if attempt {
            log!(self.log, Debug, "brokk::redis", "redis {address}: still cannot connect (attempt {attempts}): {why}");
        }
    }

    /// A connection was made: logs the end of an outage, if one was going on.
    fn came_back(&self) {
        let outage = {
            let mut b = self.backoff.lock();
            b.down_since.take().map(|since| (since.elapsed(), std::mem::take(&mut b.attempts)))
        };
        if let Some((lasted, attempts)) = outage {
            let address = &self.address;
            log!(self.log, Info, "brokk::redis", "redis {address}: connected again after {} ms ({attempts} failed connection attempts)", lasted.as_millis());
        }
    }

    /// What makes the connections to a single server (None on a cluster), for a connection of
    /// one's own.
    pub fn dialer(&self) -> Option<Arc<Dialer>> {
        match &self.target {
            Target::Single(dialer) => Some(Arc::clone(dialer)),
            Target::Cluster(_) => None,
        }
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Makes a connection by `deadline`, or says why not.
    fn connect(&self, deadline: Instant) -> std::result::Result<Conn, NoConnection> {
        match &self.target {
            Target::Single(dialer) => dialer.dial(deadline).map(Conn::Single),
            Target::Cluster(client) => {
                client.get_connection().map(|c| Conn::Cluster(Box::new(c))).map_err(NoConnection::of)
            }
        }
    }

    /// Makes a connection at once, whatever the backoff says, and keeps it for the next call:
    /// opening a store reaches the server once. A wrong address or wrong credentials are the
    /// caller's to fix (`CannotOpenStore`); a server that is there but silent or not ready is
    /// passing (`Unavailable`). Either way the message says that no broker was made.
    pub fn reach(&self) -> Result<()> {
        match self.connect(Instant::now() + self.timeout) {
            Ok(conn) => {
                self.put_back(conn);
                Ok(())
            }
            Err(no) => {
                let (kind, advice) = no.at_open();
                let reason = no.reason(&self.address, self.timeout);
                Err(Error::new(
                    kind,
                    format!("redis {}: cannot open the store: {reason}; no broker was made: {advice}", self.address),
                ))
            }
        }
    }

    /// The store is open: failures from now on are those of calls on a broker.
    pub fn opened(&self) {
        self.opening.store(false, Ordering::Release);
    }

    /// The error of `what` failing for `reason`, with what to do: `advice` for a call on a
    /// broker; while the store is being opened, that no broker was made (and whether to retry).
    fn fail(&self, kind: ErrorKind, what: &str, reason: &str, advice: &str) -> Error {
        let address = &self.address;
        if self.opening.load(Ordering::Acquire) {
            let advice = match kind {
                ErrorKind::Unavailable | ErrorKind::OutcomeUnknown => "retrying later may succeed",
                ErrorKind::CannotOpenStore => "check the user name and password in the URL",
                _ => "see above",
            };
            let kind = if kind == ErrorKind::OutcomeUnknown { ErrorKind::Unavailable } else { kind };
            return Error::new(
                kind,
                format!("redis {address}: cannot open the store: {what}: {reason}; no broker was made: {advice}"),
            );
        }
        Error::new(kind, format!("redis {address}: {what}: {reason}; {advice}"))
    }

    /// A connection for a call ending at `deadline`: an idle one still open, or a new one.
    fn take(&self, what: &str, deadline: Instant) -> Result<Conn> {
        loop {
            let Some(mut c) = self.idle.lock().pop() else { break };
            if c.reusable() {
                return Ok(c);
            }
        }
        {
            let b = self.backoff.lock();
            if let Some(at) = b.not_before.filter(|&at| Instant::now() < at) {
                let wait = at.saturating_duration_since(Instant::now()).as_millis().max(1);
                let advice = format!("nothing was done; the next attempt is in {wait} ms: retry after that");
                let reason = format!("the last attempt to connect failed: {}", b.last);
                return Err(self.fail(ErrorKind::Unavailable, what, &reason, &advice));
            }
        }
        match self.connect(deadline) {
            Ok(c) => {
                let mut b = self.backoff.lock();
                b.not_before = None;
                b.delay = FIRST_BACKOFF;
                drop(b);
                self.came_back();
                Ok(c)
            }
            Err(no) => {
                let reason = no.reason(&self.address, self.timeout);
                let err = match &no {
                    NoConnection::Answered(e) if classify(e) == ErrorKind::CannotOpenStore => self.fail(
                        ErrorKind::CannotOpenStore,
                        what,
                        &reason,
                        "nothing was done: the credentials no longer work (changed on the server?)",
                    ),
                    _ => {
                        let advice = format!(
                            "nothing was done: retry later (each call tries to connect again, at most once per \
                             {} ms while it keeps failing)",
                            MAX_BACKOFF.as_millis()
                        );
                        self.fail(ErrorKind::Unavailable, what, &reason, &advice)
                    }
                };
                let mut b = self.backoff.lock();
                b.not_before = Some(Instant::now() + b.delay);
                b.delay = (b.delay * 2).min(MAX_BACKOFF);
                b.last = reason;
                drop(b);
                self.went_down(&no.reason(&self.address, self.timeout), true);
                Err(err)
            }
        }
    }

    /// Runs `f` on a connection of the pool within the timeout; for reads and for bookkeeping
    /// that a repeat or a loss leaves the same (see `Effect::Reads`).
    pub fn run<R>(&self, what: &str, f: impl FnOnce(&mut Conn) -> RedisResult<R>) -> Result<R> {
        self.call(what, Effect::Reads, Instant::now() + self.timeout, f)
    }

    /// Runs `f`, which does `effect`, on a connection of the pool, by `deadline`. A
    /// connection-level failure drops the connection; it is `Unavailable` if the request never
    /// left, `OutcomeUnknown` (for a change) if it may have. Any other error (the server's
    /// answer) leaves the connection in the pool.
    pub fn call<R>(
        &self,
        what: &str,
        effect: Effect,
        deadline: Instant,
        f: impl FnOnce(&mut Conn) -> RedisResult<R>,
    ) -> Result<R> {
        if Instant::now() >= deadline {
            // Its time went waiting for others' calls (publishes that travel together).
            let reason = format!(
                "the call's time (timeout_ms={}) ran out before its request could be sent, waiting for calls \
                 before it that got no answer",
                self.timeout.as_millis()
            );
            return Err(self.fail(ErrorKind::Unavailable, what, &reason, "nothing was done: retry later"));
        }
        let mut conn = self.take(what, deadline)?;
        let result = conn.start(deadline).and_then(|()| f(&mut conn));
        let result = match (result, effect) {
            (Ok(r), Effect::Changes(consequence)) if self.replicas > 0 => {
                match self.replicated(&mut conn, deadline) {
                    Ok(acked) if acked >= i64::from(self.replicas) => Ok(r),
                    Ok(acked) => {
                        self.put_back(conn);
                        let reason = format!(
                            "it was done on the master, but only {acked} of the {} replicas asked for (replicas=) \
                             confirmed it within timeout_ms={}: a failover now could lose it",
                            self.replicas,
                            self.timeout.as_millis()
                        );
                        return Err(self.fail(ErrorKind::OutcomeUnknown, what, &reason, consequence));
                    }
                    Err(e) => Err(e),
                }
            }
            (result, _) => result,
        };
        match result {
            Ok(r) => {
                self.put_back(conn);
                Ok(r)
            }
            Err(e) => {
                let may_have_run = conn.may_have_run(&e);
                if broken(&e) || !conn.reusable() {
                    // The others were most likely cut by the same fault (a restarted server):
                    // drop them too, rather than fail one call on each of them later.
                    self.idle.lock().clear();
                    if connection_level(&e) {
                        self.went_down(&format!("{what}: {e}"), false);
                    }
                } else {
                    self.put_back(conn);
                }
                Err(self.error(&e, what, if may_have_run { effect } else { Effect::Reads }))
            }
        }
    }

    /// How many replicas have what this connection wrote (WAIT, until `deadline` at most).
    fn replicated(&self, conn: &mut Conn, deadline: Instant) -> RedisResult<i64> {
        // A quarter of what is left for the answer to come back in (or the call times out,
        // OutcomeUnknown for the wrong reason); WAIT 0 would wait for
        // ever: at least 1 ms.
        let left = deadline.saturating_duration_since(Instant::now()) * 3 / 4;
        ::redis::cmd("WAIT").arg(self.replicas).arg(left.as_millis().max(1) as u64).query(conn.as_dyn())
    }

    fn put_back(&self, conn: Conn) {
        let mut idle = self.idle.lock();
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
    }

    /// What a Redis error of a call doing `effect` means to brokk.
    fn error(&self, e: &RedisError, what: &str, effect: Effect) -> Error {
        let lost = if e.is_timeout() {
            format!("the server did not answer in time (timeout_ms={})", self.timeout.as_millis())
        } else {
            format!("the connection failed ({e})")
        };
        match (classify(e), effect) {
            (ErrorKind::Unavailable, Effect::Changes(consequence)) if connection_level(e) => {
                self.fail(ErrorKind::OutcomeUnknown, what, &format!("{lost}, after the request was sent"), consequence)
            }
            (ErrorKind::Unavailable, _) if connection_level(e) => self.fail(
                ErrorKind::Unavailable,
                what,
                &lost,
                "nothing was done: retry later (the next call connects again)",
            ),
            (ErrorKind::Unavailable, _) => self.fail(
                ErrorKind::Unavailable,
                what,
                &format!("the server is not ready ({e})"),
                "nothing was done: retry later",
            ),
            (ErrorKind::CannotOpenStore, _) => self.fail(
                ErrorKind::CannotOpenStore,
                what,
                &format!("authentication failed, the server refused the credentials ({e})"),
                "nothing was done: check the user name and password (the URL's, and the server's ACL)",
            ),
            (kind, _) => Error::new(kind, format!("redis {}: {what} failed: {e}", self.address)),
        }
    }
}

/// Whether `e` is about the connection (it broke, timed out, or was never made) rather than an
/// answer of the server.
fn connection_level(e: &RedisError) -> bool {
    e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_connection_refusal()
}

/// Whether the connection that returned `e` must be replaced.
fn broken(e: &RedisError) -> bool {
    classify(e) == ErrorKind::Unavailable || e.is_unrecoverable_error()
}

fn classify(e: &RedisError) -> ErrorKind {
    use ::redis::ErrorKind as K;
    if connection_level(e) {
        return ErrorKind::Unavailable;
    }
    match e.kind() {
        K::AuthenticationFailed | K::Server(ServerErrorKind::NoPerm) => ErrorKind::CannotOpenStore,
        K::ClusterConnectionNotFound
        | K::Server(ServerErrorKind::BusyLoading)
        | K::Server(ServerErrorKind::TryAgain)
        | K::Server(ServerErrorKind::ClusterDown)
        | K::Server(ServerErrorKind::MasterDown)
        | K::Server(ServerErrorKind::ReadOnly)
        | K::Server(ServerErrorKind::Moved)
        | K::Server(ServerErrorKind::Ask) => ErrorKind::Unavailable,
        _ if matches!(e.code(), Some("NOAUTH" | "WRONGPASS")) => ErrorKind::CannotOpenStore,
        // A script running too long on the server: it runs nothing else meanwhile.
        _ if e.code() == Some("BUSY") => ErrorKind::Unavailable,
        _ => ErrorKind::StorageFailed,
    }
}

#[cfg(test)]
mod tests {
    use super::{classify, NoConnection};
    use crate::error::ErrorKind;
    use ::redis::{ErrorKind as K, RedisError, ServerErrorKind};
    use std::time::Duration;

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
        assert_eq!(classify(&::redis::make_extension_error("BUSY".into(), None)), ErrorKind::Unavailable);
        assert_eq!(classify(&::redis::make_extension_error("OOM".into(), None)), ErrorKind::StorageFailed);
    }

    /// At open, a wrong address or wrong credentials are the caller's to fix; a server that is
    /// there but silent or not ready is passing.
    #[test]
    fn failed_opens_are_the_caller_s_unless_the_server_is_there() {
        let kind = |no: NoConnection| no.at_open().0;
        assert_eq!(kind(NoConnection::Refused), ErrorKind::CannotOpenStore);
        assert_eq!(kind(NoConnection::Unresolved("x".into())), ErrorKind::CannotOpenStore);
        assert_eq!(kind(NoConnection::Silent), ErrorKind::Unavailable);
        let loading = RedisError::from((K::Server(ServerErrorKind::BusyLoading), "x"));
        assert_eq!(kind(NoConnection::Answered(loading)), ErrorKind::Unavailable);
        let auth = RedisError::from((K::AuthenticationFailed, "x"));
        assert_eq!(kind(NoConnection::Answered(auth)), ErrorKind::CannotOpenStore);
        assert_eq!(kind(NoConnection::Tls("invalid peer certificate: UnknownIssuer".into())), ErrorKind::CannotOpenStore);
        assert_eq!(kind(NoConnection::NoMaster { url_to_fix: true, why: "x".into() }), ErrorKind::CannotOpenStore);
        assert_eq!(kind(NoConnection::NoMaster { url_to_fix: false, why: "x".into() }), ErrorKind::Unavailable);
        let refused = NoConnection::Refused.reason("h:1", Duration::from_millis(100));
        assert_eq!(refused, "nothing answers at h:1 (connection refused)");
    }
}
