//! What a child process may do with a broker its parent made before `fork`.
//!
//! A fork copies the parent's memory but only the thread that called it: the child's copy of a
//! broker has no workers, no timer, no poller, its locks may be held by threads that do not
//! exist there, and its store connections (a SQLite file handle, a Redis socket) are the
//! parent's. So, as with SQLite connections and librdkafka handles, a child must make brokers of
//! its own. The contract:
//!
//! - Every call on a parent's broker in the child fails with `ErrorKind::Forked` and does
//!   nothing (it touches neither the parent's store nor its locks).
//! - Dropping it (`brokk_broker_free`, `release`) in the child releases nothing and never
//!   crashes: the memory is a copy, reclaimed when the child exits, and closing the store's
//!   handles there could disturb the parent (a SQLite close may checkpoint the parent's WAL).
//!
//! Knowing that a fork happened costs one atomic load per call: the C ABI registers a
//! `pthread_atfork` child handler (the C library's src/fork.rs) that counts forks here. A broker made
//! through the Rust API alone, with no handler registered, is still never torn down in a child
//! (its creating process id is compared at teardown); its other calls are the caller's care.

use std::any::Any;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::error::{Error, ErrorKind, Result};

/// Forks this process has gone through as a child (counted by the atfork handler).
static FORKS: AtomicU64 = AtomicU64::new(0);

/// Called in the child right after a fork (from the atfork handler: async-signal-safe).
pub(crate) fn note_fork() {
    FORKS.fetch_add(1, Ordering::Relaxed);
}

/// Parents' brokers kept alive in a child, reachable from a static, so that leak checkers
/// (valgrind) see them as still in use rather than lost. Only a child ever locks this, so no
/// thread that vanished in a fork can have left it locked (short of a child that forks again
/// while another of its threads drops a broker).
static KEPT: Mutex<Vec<Arc<dyn Any + Send + Sync>>> = Mutex::new(Vec::new());

/// Keeps `broker` (a parent's, in a child) for the rest of the process: it is never dropped.
pub(crate) fn keep(broker: Arc<dyn Any + Send + Sync>) {
    KEPT.lock().unwrap_or_else(|p| p.into_inner()).push(broker);
}

/// Where a broker was made: its process and how many forks had happened there by then.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Birth {
    pid: u32,
    forks: u64,
}

impl Birth {
    pub(crate) fn now() -> Self {
        Birth { pid: std::process::id(), forks: FORKS.load(Ordering::Relaxed) }
    }

    /// For every call: fails in a process forked from the one that made the broker.
    #[inline]
    pub(crate) fn check(&self) -> Result<()> {
        if FORKS.load(Ordering::Relaxed) == self.forks {
            Ok(())
        } else {
            Err(self.forked())
        }
    }

    /// For teardown: whether this is not the process that made the broker (by the fork count,
    /// or by the process id where no atfork handler counts).
    pub(crate) fn elsewhere(&self) -> bool {
        FORKS.load(Ordering::Relaxed) != self.forks || std::process::id() != self.pid
    }

    #[cold]
    fn forked(&self) -> Error {
        Error::new(
            ErrorKind::Forked,
            format!(
                "this broker was made in process {} before a fork; a child process cannot use its \
                 parent's broker: make a new one in the child (freeing the parent's is safe there)",
                self.pid
            ),
        )
    }
}
