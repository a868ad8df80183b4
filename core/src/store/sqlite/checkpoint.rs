//! Checkpoints off the commit path. A checkpoint copies the write-ahead log back into the
//! database file and, under `SyncLevel::Normal`, fsyncs both: milliseconds that SQLite would
//! otherwise spend inside whichever commit crosses its threshold, holding up every caller of
//! that group commit. A thread of each `SqliteFile` runs passive checkpoints (they never block
//! readers or writers) shortly after commits; the writer's own automatic checkpoint stays as a
//! backstop, at a much larger log, for when the thread falls behind a sustained load.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::sync::{Condvar, Mutex};

use super::open::Conn;
use crate::fork_gate::ForkHold;

/// How often the thread looks for new commits to checkpoint.
const INTERVAL: Duration = Duration::from_millis(20);
/// Log pages past which the writer checkpoints by itself (64 MiB of 4 KiB pages).
pub(super) const BACKSTOP_PAGES: i64 = 16_384;

pub(super) struct Checkpointer {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts the thread with its own connection; `commits` counts the writer's commits.
    pub fn start(conn: Conn, commits: Arc<AtomicU64>) -> std::io::Result<Self> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let signal = Arc::clone(&stop);
        let thread = std::thread::Builder::new().name("brokk-sqlite-checkpoint".into()).spawn(move || {
            let mut seen = commits.load(Ordering::Relaxed);
            loop {
                {
                    let (stopped, cv) = &*signal;
                    let mut stopped = stopped.lock();
                    if !*stopped {
                        cv.wait_for(&mut stopped, INTERVAL);
                    }
                    if *stopped {
                        return;
                    }
                }
                let now = commits.load(Ordering::Relaxed);
                if now != seen {
                    seen = now;
                    // Busy (another process checkpoints) or failing: the backstop still
                    // bounds the log, and a real storage failure shows at the next commit.
                    let _hold = ForkHold::enter();
                    let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
                }
            }
        })?;
        Ok(Checkpointer { stop, thread: Some(thread) })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        let (stopped, cv) = &*self.stop;
        *stopped.lock() = true;
        cv.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
