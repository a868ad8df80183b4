//! Counts the work `join` and `close` wait for: deliveries not yet settled (queued, running or
//! awaiting an ack), handler invocations still running (a handler may ack its own delivery and
//! go on), publishes in progress (accepted, not yet queued) and listener events not yet
//! delivered. Counting is lock-free; only a transition to zero takes the mutex, to wake
//! waiters without a lost wake-up.
//!
//! Built on std's primitives (loom's under `--cfg loom`), so that `make loom` can check every
//! interleaving of counting and waiting; see the tests at the end.

use std::time::Instant;

#[cfg(loom)]
use loom::sync::{
    atomic::{AtomicU64, Ordering},
    Condvar, Mutex,
};
#[cfg(not(loom))]
use std::sync::{
    atomic::{AtomicU64, Ordering},
    Condvar, Mutex,
};

#[derive(Default)]
pub(crate) struct Quiesce {
    deliveries: AtomicU64,
    events: AtomicU64,
    handlers: AtomicU64,
    publishes: AtomicU64,
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

    pub(crate) fn add_handler(&self) {
        self.handlers.fetch_add(1, Ordering::AcqRel);
    }

    pub(crate) fn done_handler(&self) {
        if self.handlers.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.wake();
        }
    }

    pub(crate) fn add_publish(&self) {
        self.publishes.fetch_add(1, Ordering::AcqRel);
    }

    pub(crate) fn done_publish(&self) {
        if self.publishes.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.wake();
        }
    }

    pub(crate) fn deliveries(&self) -> u64 {
        self.deliveries.load(Ordering::Acquire)
    }

    fn idle(&self) -> bool {
        [&self.deliveries, &self.events, &self.handlers, &self.publishes].iter().all(|c| c.load(Ordering::Acquire) == 0)
    }

    fn wake(&self) {
        // Taking the lock orders this wake after a waiter's check-then-wait.
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.zero.notify_all();
    }

    /// Waits until no delivery and no listener event is outstanding, or until `deadline`
    /// (`None`: no limit). Returns whether it got there.
    pub(crate) fn wait_idle(&self, deadline: Option<Instant>) -> bool {
        let mut guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        while !self.idle() {
            match deadline {
                None => guard = self.zero.wait(guard).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return self.idle();
                    }
                    guard = self.zero.wait_timeout(guard, left).unwrap_or_else(|e| e.into_inner()).0;
                }
            }
        }
        true
    }
}

/// `make loom`: every interleaving of settling and waiting, checked by loom. A lost wake-up
/// shows as a deadlock, an early return as a failed assertion.
#[cfg(all(test, loom))]
mod loom_tests {
    use loom::sync::Arc;
    use loom::thread;

    use super::Quiesce;

    /// Two deliveries settled on two threads while a third joins: join returns, and only once
    /// both are settled.
    #[test]
    fn join_waits_for_every_settle_and_always_wakes() {
        loom::model(|| {
            let q = Arc::new(Quiesce::default());
            q.add_deliveries(2);
            let settlers: Vec<_> = (0..2)
                .map(|_| {
                    let q = q.clone();
                    thread::spawn(move || q.done_deliveries(1))
                })
                .collect();
            assert!(q.wait_idle(None));
            assert_eq!(q.deliveries(), 0);
            for s in settlers {
                s.join().unwrap();
            }
        });
    }

    /// A requeue keeps the delivery outstanding while a listener event is queued for it: the
    /// join may not return between the event being counted and the delivery being settled.
    #[test]
    fn events_and_deliveries_are_waited_for_together() {
        loom::model(|| {
            let q = Arc::new(Quiesce::default());
            q.add_deliveries(1);
            let worker = {
                let q = q.clone();
                thread::spawn(move || {
                    // settle: the event is counted before the delivery is done
                    q.add_events(1);
                    q.done_deliveries(1);
                })
            };
            let listener = {
                let q = q.clone();
                thread::spawn(move || {
                    // the listener thread delivers the event once it is counted
                    while q.events.load(loom::sync::atomic::Ordering::Acquire) == 0 {
                        thread::yield_now();
                    }
                    q.done_events(1);
                })
            };
            assert!(q.wait_idle(None));
            assert_eq!(q.deliveries(), 0);
            assert_eq!(q.events.load(loom::sync::atomic::Ordering::Acquire), 0);
            worker.join().unwrap();
            listener.join().unwrap();
        });
    }
}
