//! Group commit. A commit costs far more than a small write (WAL frames, and an fsync under
//! `SyncLevel::Full`), so concurrent writers of one process share it.
//!
//! Each caller runs its own work, on its own thread (so it may borrow what it writes), inside a
//! savepoint of the transaction that is open on the one write connection (the first call of a
//! transaction needs none: its failure rolls back the transaction, which holds nothing else).
//! A failed call rolls back its savepoint only, so the other calls of the batch still commit; a
//! failure that ends the whole transaction (SQLite rolls back by itself on a full disk or an
//! I/O error) fails every call of the batch. Nobody returns before the commit that holds its
//! work.
//!
//! **Who commits, and when.** Callers queued for the connection when a call is done will join
//! its transaction, so nobody commits while any are queued. That alone shares little: the
//! callers of the last batch are still waking up when its committer comes back with its next
//! call, finds nobody queued, and commits alone (measured: 1.3 calls per commit with four
//! publishing threads). So a batch also waits for as many callers as the last one had (its
//! *expected* size): the caller that opened the transaction lingers, releasing the connection,
//! until the batch has that many calls (the one that completes it commits) or a short while
//! passes (twice what a commit costs lately: waiting for a caller is worth it when it saves a
//! commit). It lingers only while other callers are inside `run` (the last batch's, still
//! waking up): nobody else in sight, nobody to wait for. A lone caller expects 1 and never
//! lingers; when concurrency drops, one linger shrinks the expectation.

use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::sync::{Condvar, Mutex};
use rusqlite::Connection;

use super::errors::{FileCtx, TxError};
use super::keys::{KeyBlock, Keys};
use super::open::Conn;
use super::turns::Turns;
use super::tx::Tx;
use crate::error::{Error, ErrorKind, Result};
use crate::fork_gate::SharedForkHold;
use crate::log::{Deferred, Level};

/// Calls one transaction may hold before it commits even though more are queued, bounding
/// the wait of the first.
const MAX_CALLS_PER_COMMIT: usize = 256;

/// Bounds of the linger (see the module doc): it is twice the recent commit time, within these.
const MIN_LINGER: Duration = Duration::from_micros(20);
const MAX_LINGER: Duration = Duration::from_millis(5);

pub(super) struct Writer {
    state: Mutex<State>,
    /// Callers that want `state` but do not hold it yet. While there are any, the holder leaves
    /// the transaction open for them instead of committing.
    arriving: AtomicUsize,
    /// Signalled when a call joins the open transaction, for its lingering opener.
    joined: Condvar,
    /// Callers inside `run`, wherever they are in it.
    inside: AtomicUsize,
    /// Transactions committed: tells the checkpointer there is work, and tests how well
    /// commits are shared.
    commits: Arc<AtomicU64>,
    /// Takes turns at the file's write lock with the writers of other processes.
    turns: Turns,
    ctx: Arc<FileCtx>,
}

struct State {
    conn: Conn,
    /// The open transaction's batch, if a transaction is open.
    batch: Option<Arc<Batch>>,
    /// Held while a transaction is open: a fork then would copy the file's lock into the child
    /// as held by this process, and the child's own connections would find the file locked for
    /// ever. The calls inside take no hold of their own (whichever thread makes them).
    fork_hold: Option<SharedForkHold>,
    calls: usize,
    /// Openers waiting on `joined` for callers to join (a count: one whose batch was just
    /// committed may not have left yet when the next one lingers). Only then is `joined`
    /// notified: std's condition variable makes a system call for every notification, waiter
    /// or not.
    lingering: usize,
    /// Calls the open transaction waits for: as many as the last committed one had.
    expected: usize,
    /// What a commit costs lately (a moving average).
    commit_cost: Duration,
    /// The delivery keys this writer holds (see `keys.rs`), and what it held when the open
    /// transaction began: put back if the transaction is lost.
    keys: Keys,
    keys_at_begin: KeyBlock,
}

/// The calls sharing one transaction, waiting for its outcome.
struct Batch {
    outcome: Mutex<Option<Result<()>>>,
    settled: Condvar,
}

impl Batch {
    /// Records the outcome; wakes the other calls of the batch, if it had any (`shared`).
    fn settle(&self, outcome: Result<()>, shared: bool) {
        *self.outcome.lock() = Some(outcome);
        if shared {
            self.settled.notify_all();
        }
    }

    fn wait(&self) -> Result<()> {
        let mut outcome = self.outcome.lock();
        loop {
            if let Some(o) = outcome.as_ref() {
                return o.clone();
            }
            self.settled.wait(&mut outcome);
        }
    }
}

impl Writer {
    pub fn new(conn: Conn, ctx: Arc<FileCtx>, turns: Turns) -> Self {
        Writer {
            state: Mutex::new(State {
                conn,
                batch: None,
                fork_hold: None,
                calls: 0,
                lingering: 0,
                expected: 1,
                commit_cost: MIN_LINGER,
                keys: Keys::default(),
                keys_at_begin: KeyBlock::default(),
            }),
            arriving: AtomicUsize::new(0),
            joined: Condvar::new(),
            inside: AtomicUsize::new(0),
            commits: Arc::default(),
            turns,
            ctx,
        }
    }

    #[cfg_attr(not(test), allow(dead_code))] // The engine's tests use it; the broker does not.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    pub fn commit_counter(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.commits)
    }

    /// Callers queued for the connection right now.
    #[cfg_attr(not(test), allow(dead_code))] // The engine's tests use it; the broker does not.
    pub fn queued(&self) -> usize {
        self.arriving.load(Ordering::SeqCst)
    }

    /// Runs `job` in the transaction shared with the callers of this moment, isolated from
    /// their failures; returns once that transaction committed (or failed).
    pub fn run<R>(&self, job: impl FnOnce(&Tx<'_>) -> Result<R, TxError>) -> Result<R> {
        let _inside = Inside::enter(&self.inside);
        // Before the state's guard, so that it drops after: a lock wait is logged unlocked.
        let mut later = Deferred::new(&self.ctx.log);
        self.arriving.fetch_add(1, Ordering::SeqCst);
        let mut st = self.state.lock();
        self.arriving.fetch_sub(1, Ordering::SeqCst);
        let (batch, opener) = match &st.batch {
            Some(b) => (Arc::clone(b), false),
            None => {
                // BEGIN IMMEDIATE takes the file's write lock now (waiting its turn up to the
                // busy timeout), so that the work below never meets a lock it can not wait for.
                let hold = SharedForkHold::enter();
                let asked = Instant::now();
                let begun = self.turns.begin(&st.conn, &self.ctx);
                lock_wait(&self.ctx, &mut later, asked.elapsed(), begun.is_ok());
                begun?;
                st.fork_hold = Some(hold);
                let b = Arc::new(Batch { outcome: Mutex::new(None), settled: Condvar::new() });
                st.batch = Some(Arc::clone(&b));
                st.calls = 0;
                st.keys_at_begin = st.keys.get();
                (b, true)
            }
        };
        // The first call of a transaction needs no savepoint: if it fails, rolling back the
        // whole transaction loses nothing else (and saves copying every page it touches).
        let first = st.calls == 0;
        st.calls += 1;

        let (result, panicked) = self.isolated(&st.conn, &st.keys, job, first);
        if st.conn.is_autocommit() {
            // The transaction ended: rolled back above (a first call failed) or by SQLite
            // itself (a full disk, an I/O error), when every call of the batch is lost.
            let e = match &result {
                Err(e) => e.clone(),
                Ok(_) => {
                    Error::new(ErrorKind::StorageFailed, format!("store {}: transaction lost", self.ctx.path.display()))
                }
            };
            st.batch = None;
            st.fork_hold = None;
            st.keys.set(st.keys_at_begin);
            batch.settle(Err(e.clone()), st.calls > 1);
            self.joined.notify_all();
            drop(st);
            resume(panicked);
            return result.and(Err(e));
        }

        if !self.complete(&st) {
            if opener && self.inside.load(Ordering::SeqCst) > st.calls {
                // Linger for the callers expected; one of them may complete the batch and commit.
                let until = Instant::now() + (st.commit_cost * 2).clamp(MIN_LINGER, MAX_LINGER);
                st.lingering += 1;
                while self.is_open(&st, &batch) && !self.complete(&st) {
                    if Instant::now() < until {
                        self.joined.wait_until(&mut st, until);
                    } else if self.arriving.load(Ordering::SeqCst) > 0 {
                        // Never commit while someone is queued: it joins in a moment, and
                        // says so when its call is done.
                        self.joined.wait(&mut st);
                    } else {
                        break;
                    }
                }
                st.lingering -= 1;
            }
            if !opener || !self.is_open(&st, &batch) {
                // The opener (or whoever completes the batch) commits: wait for the outcome.
                drop(st);
                resume(panicked);
                let value = result?;
                batch.wait()?;
                return Ok(value);
            }
        }

        let started = Instant::now();
        let committed = exec(&st.conn, "COMMIT").map_err(|e| self.ctx.sql_error(e));
        if committed.is_err() {
            if !st.conn.is_autocommit() {
                let _ = exec(&st.conn, "ROLLBACK");
            }
            st.keys.set(st.keys_at_begin);
        }
        if committed.is_ok() {
            self.commits.fetch_add(1, Ordering::Relaxed);
            st.commit_cost = (st.commit_cost * 3 + started.elapsed()) / 4;
        }
        st.expected = st.calls;
        st.batch = None;
        st.fork_hold = None;
        batch.settle(committed.clone(), st.calls > 1);
        drop(st);
        resume(panicked);
        let value = result?;
        committed.map(|()| value)
    }

    /// Whether the open transaction has the calls it waits for (or as many as it may hold), and
    /// nobody is queued to join it: then the caller that sees it commits. Wakes the opener if
    /// it lingers, to look again.
    fn complete(&self, st: &State) -> bool {
        let queued = self.arriving.load(Ordering::SeqCst) > 0;
        if st.lingering > 0 {
            self.joined.notify_one();
        }
        st.calls >= MAX_CALLS_PER_COMMIT || (st.calls >= st.expected && !queued)
    }

    /// Whether `batch` is still the open transaction (not committed or lost by another caller).
    fn is_open(&self, st: &State, batch: &Arc<Batch>) -> bool {
        st.batch.as_ref().is_some_and(|b| Arc::ptr_eq(b, batch))
    }

    /// Runs `job` so that a failure or a panic undoes its writes and nothing else: between
    /// SAVEPOINT and RELEASE, or for the `first` call of a transaction, alone in it (then a
    /// failure rolls the transaction back). A panic is handed back to be resumed once the batch
    /// is taken care of.
    fn isolated<R>(
        &self,
        conn: &Connection,
        keys: &Keys,
        job: impl FnOnce(&Tx<'_>) -> Result<R, TxError>,
        first: bool,
    ) -> (Result<R>, Option<Box<dyn std::any::Any + Send>>) {
        if !first {
            if let Err(e) = exec(conn, "SAVEPOINT call") {
                return (Err(self.ctx.sql_error(e)), None);
            }
        }
        // Keys reserved by a call that is rolled back were reserved by nobody.
        let keys_before = keys.get();
        let tx = Tx::new(conn, keys);
        let (result, panicked) = match panic::catch_unwind(AssertUnwindSafe(|| job(&tx))) {
            Ok(r) => (r.map_err(|e| self.ctx.error(e)), None),
            Err(p) => {
                let e = Error::new(ErrorKind::StorageFailed, "a store call panicked; its writes were rolled back");
                (Err(e), Some(p))
            }
        };
        if result.is_err() {
            keys.set(keys_before);
        }
        if conn.is_autocommit() {
            return (result, panicked);
        }
        let ended = match (&result, first) {
            (Ok(_), true) => Ok(()),
            (Ok(_), false) => exec(conn, "RELEASE call"),
            (Err(_), true) => exec(conn, "ROLLBACK"),
            (Err(_), false) => exec(conn, "ROLLBACK TO call").and_then(|()| exec(conn, "RELEASE call")),
        };
        match ended {
            Ok(()) => (result, panicked),
            Err(e) => {
                keys.set(keys_before);
                (Err(self.ctx.sql_error(e)), panicked)
            }
        }
    }
}

/// Counts a caller inside `run` until it returns, however it returns.
struct Inside<'a>(&'a AtomicUsize);

impl<'a> Inside<'a> {
    fn enter(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Inside(count)
    }
}

impl Drop for Inside<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Logs a wait of `waited` for the file's write lock (another process, or another broker on
/// the same file, held it): Warn from a second, Info from 100 ms, Debug from 10 ms; Warn if
/// the wait ended in failure after 10 ms or more (the busy timeout ran out).
fn lock_wait(ctx: &FileCtx, later: &mut Deferred<'_>, waited: Duration, got: bool) {
    let ms = waited.as_millis();
    if ms < 10 {
        return;
    }
    let path = ctx.path.display();
    if !got {
        let timeout = ctx.busy_timeout.as_millis();
        later.push(
            Level::Warn,
            "brokk::sqlite",
            format_args!("store {path}: gave up waiting for the write lock after {ms} ms (busy_timeout {timeout} ms)"),
        );
        return;
    }
    let level = match ms {
        1000.. => Level::Warn,
        100.. => Level::Info,
        _ => Level::Debug,
    };
    later.push(level, "brokk::sqlite", format_args!("store {path}: waited {ms} ms for the write lock (held by another connection)"));
}

fn exec(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

fn resume(panicked: Option<Box<dyn std::any::Any + Send>>) {
    if let Some(p) = panicked {
        panic::resume_unwind(p);
    }
}
