//! Writers of several processes take turns at the file's write lock.
//!
//! SQLite gives its write lock to whoever asks while it is free, and a connection that found it
//! taken asks again only between the sleeps of its busy handler (1 ms growing to 100 ms). A
//! process whose writer commits back to back (group commit under a few publishing threads) frees
//! the lock for a few microseconds between two transactions, so a writer of another process
//! almost never asks at the right moment: it slept until its busy timeout and failed with
//! `Unavailable` (writer starvation).
//!
//! So a brokk writer says that it waits, and the others let it have its turn. The signal is a
//! flock(2) on the store file, through the descriptor that `open_writer` opened it with (kept
//! open as long as the store: see `SqliteFile::_opened_with`):
//!
//! - `begin` asks for the write lock itself, with no busy handler: while it is taken, it holds a
//!   shared flock (it waits) and asks again every 50 µs to 1 ms, up to the busy timeout;
//! - before asking, at most once every `YIELD_EVERY`, `begin` looks whether a writer elsewhere
//!   waits (an exclusive flock that it can not take right away; it gives it back at once when
//!   it can) and, if one does, leaves the lock free until no writer waits any more or
//!   `MAX_YIELD` passed, long enough for a waiter to ask a few times. Then it asks itself: if a
//!   waiter took the lock, it waits in line, and its own flock tells the others.
//!
//! So a waiter gets its turn within about `YIELD_EVERY` of asking, far below any sensible busy
//! timeout, and a writer that is never waited for pays two flock calls per `YIELD_EVERY`. The
//! yield is rationed on purpose: with several processes writing flat out there is nearly always
//! a waiter, and yielding before every transaction left the lock idle while the waiters slept
//! between asks (measured: four processes doing fetch + ack needed twice the CPU time and up
//! to three times the wall time of the same work without it).
//!
//! Two writers of one process on one file (two brokers) take turns the same way: flock locks
//! belong to the open file, not to the process. On Linux and the BSDs flock and SQLite's fcntl
//! locks do not interact. The only other flock on the file is `open_writer`'s, exclusive while a
//! process opens the file: for that moment it looks like a waiting writer, which costs nothing
//! but a pause.
//!

use std::fs::{File, TryLockError};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::{Connection, ErrorCode};

use super::errors::FileCtx;
use crate::error::Result;

/// First and longest pause of a waiting writer between two asks.
const FIRST_PAUSE: Duration = Duration::from_micros(50);
const MAX_PAUSE: Duration = Duration::from_millis(1);
/// How long a writer leaves the lock to one that waits, at most: three of the waiter's longest
/// pauses.
const MAX_YIELD: Duration = Duration::from_millis(3);
/// How often a writer looks for waiters (and yields to one) at most.
const YIELD_EVERY: Duration = Duration::from_millis(20);
/// How often a yielding writer looks whether the waiter got the lock.
const YIELD_PAUSE: Duration = Duration::from_micros(50);

pub(super) struct Turns {
    /// A descriptor of the store file that holds no lock but these flocks.
    file: Arc<File>,
    /// When the next look for waiters is due, in nanoseconds since `epoch`.
    next_look: AtomicU64,
    epoch: Instant,
}

impl Turns {
    pub fn new(file: Arc<File>) -> Self {
        Turns { file, next_look: AtomicU64::new(0), epoch: Instant::now() }
    }

    /// BEGIN IMMEDIATE on `conn` (whose busy timeout is 0), after letting a writer that waits
    /// elsewhere go first; waits its turn up to the busy timeout when the lock is taken.
    pub fn begin(&self, conn: &Connection, ctx: &FileCtx) -> Result<()> {
        self.let_waiters_go();
        let deadline = Instant::now() + ctx.busy_timeout;
        let mut pause = FIRST_PAUSE;
        let mut waiting = false;
        let outcome = loop {
            match conn.prepare_cached("BEGIN IMMEDIATE").and_then(|mut s| s.execute([])) {
                Err(e) if is_busy(&e) => {
                    if !conn.is_autocommit() {
                        let _ = conn.execute_batch("ROLLBACK");
                    }
                    let now = Instant::now();
                    if now >= deadline {
                        break Err(e);
                    }
                    // Failing to say so (an opener holds its exclusive flock) only costs the
                    // turn; say it at the next ask.
                    waiting = waiting || self.file.try_lock_shared().is_ok();
                    std::thread::sleep(pause.min(deadline - now));
                    pause = (pause * 2).min(MAX_PAUSE);
                }
                other => break other.map(drop),
            }
        };
        if waiting {
            let _ = self.file.unlock();
        }
        outcome.map_err(|e| ctx.sql_error(e))
    }

    /// Leaves the write lock free while a writer elsewhere waits for it, up to `MAX_YIELD`;
    /// looks at most once every `YIELD_EVERY`.
    fn let_waiters_go(&self) {
        let now = self.epoch.elapsed().as_nanos() as u64;
        if now < self.next_look.load(Ordering::Relaxed) {
            return;
        }
        self.next_look.store(now + YIELD_EVERY.as_nanos() as u64, Ordering::Relaxed);
        if !self.someone_waits() {
            return;
        }
        let until = Instant::now() + MAX_YIELD;
        while Instant::now() < until {
            std::thread::sleep(YIELD_PAUSE);
            if !self.someone_waits() {
                return;
            }
        }
    }

    /// Whether another open of the file holds a flock on it: a writer waiting its turn.
    fn someone_waits(&self) -> bool {
        match self.file.try_lock() {
            Ok(()) => {
                let _ = self.file.unlock();
                false
            }
            Err(TryLockError::WouldBlock) => true,
            Err(TryLockError::Error(_)) => false,
        }
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(e.sqlite_error_code(), Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked))
}
