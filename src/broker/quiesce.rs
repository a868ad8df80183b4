//! Counts the work `join` and `close` wait for: deliveries not yet settled (queued, running or
//! awaiting an ack) and listener events not yet delivered. Counting is lock-free; only the
//! transition to zero takes the mutex, to wake waiters without a lost wake-up.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use parking_lot::{Condvar, Mutex};

#[derive(Default)]
pub(crate) struct Quiesce {
    deliveries: AtomicU64,
    events: AtomicU64,
    lock: Mutex<()>,
    zero: Condvar,
}

impl Quiesce {
    pub(crate) fn add_deliveries(&self, n: u64) {
        self.deliveries.fetch_add(n, Ordering::AcqRel);
    }

    pub(crate) fn done_deliveries(&self, n: u64) {
        if n > 0 && self.deliveries.fetch_sub(n, Ordering::AcqRel) == n {
            self.wake();
        }
    }

    pub(crate) fn add_events(&self, n: u64) {
        self.events.fetch_add(n, Ordering::AcqRel);
    }

    pub(crate) fn done_events(&self, n: u64) {
        if n > 0 && self.events.fetch_sub(n, Ordering::AcqRel) == n {
            self.wake();
        }
    }

    pub(crate) fn deliveries(&self) -> u64 {
        self.deliveries.load(Ordering::Acquire)
    }

    fn idle(&self) -> bool {
        self.deliveries.load(Ordering::Acquire) == 0 && self.events.load(Ordering::Acquire) == 0
    }

    fn wake(&self) {
        // Taking the lock orders this wake after a waiter's check-then-wait.
        let _guard = self.lock.lock();
        self.zero.notify_all();
    }

    /// Waits until no delivery and no listener event is outstanding, or until `deadline`
    /// (`None`: no limit). Returns whether it got there.
    pub(crate) fn wait_idle(&self, deadline: Option<Instant>) -> bool {
        let mut guard = self.lock.lock();
        while !self.idle() {
            match deadline {
                None => self.zero.wait(&mut guard),
                Some(d) => {
                    if self.zero.wait_until(&mut guard, d).timed_out() {
                        return self.idle();
                    }
                }
            }
        }
        true
    }
}
