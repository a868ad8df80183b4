//! Counts the work `join` and `close` wait for: deliveries not yet settled (queued, running or
//! awaiting an ack), claims in progress against a shared store (they may bring deliveries),
//! handler invocations still running (a handler may ack its own delivery and go on), publishes
//! in progress (accepted, not yet queued) and listener events not yet delivered.
//!
//! Counting is lock-free, and a transition to zero costs nothing unless someone waits: each
//! counter carries a WAITING bit beside its count, in the same atomic word. A waiter sets the
//! bit on every counter (under the mutex) and reads the counts from those same read-modify-
//! writes; a settler's decrement returns the word as it was. Two read-modify-writes of one
//! word are totally ordered, so either the waiter's saw the count already at zero, or the
//! decrement that reaches zero comes after it and sees the bit, and then takes the mutex to
//! wake the waiter (who holds it until it sleeps): no lost wake-up, and no fence subtleties
//! across different words.
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

/// Set on every counter while a `wait_idle` is waiting.
const WAITING: u64 = 1 << 63;
const COUNT: u64 = WAITING - 1;

#[derive(Default)]
pub(crate) struct Quiesce {
    deliveries: AtomicU64,
    /// Deliveries that claims in progress may bring (their `max`): kept apart from
    /// `deliveries`, which says what is held.
    claims: AtomicU64,
    events: AtomicU64,
    handlers: AtomicU64,
    publishes: AtomicU64,
    /// Delayed requeues whose timer job (which moves the delivery back and updates the
    /// `delayed` gauge) has not run yet: a consumer may take the delivery first, and join must
    /// not return before the gauge says it is no longer delayed.
    wakes: AtomicU64,
    /// Waiters in `wait_idle`; guarded by this mutex, which also orders wake-ups.
    waiters: Mutex<usize>,
    zero: Condvar,
}

impl Quiesce {
    pub(crate) fn add_deliveries(&self, n: u64) {
        self.deliveries.fetch_add(n, Ordering::AcqRel);
    }

    pub(crate) fn done_deliveries(&self, n: u64) {
        self.done(&self.deliveries, n);
    }

    pub(crate) fn add_claims(&self, n: u64) {
        self.claims.fetch_add(n, Ordering::AcqRel);
    }

    pub(crate) fn done_claims(&self, n: u64) {
        self.done(&self.claims, n);
    }

    pub(crate) fn add_events(&self, n: u64) {
        self.events.fetch_add(n, Ordering::AcqRel);
    }

    pub(crate) fn done_events(&self, n: u64) {
        self.done(&self.events, n);
    }

    pub(crate) fn add_handler(&self) {
        self.handlers.fetch_add(1, Ordering::AcqRel);
    }

    pub(crate) fn done_handler(&self) {
        self.done(&self.handlers, 1);
    }

    pub(crate) fn add_wake(&self) {
        self.wakes.fetch_add(1, Ordering::AcqRel);
    }

    pub(crate) fn done_wake(&self) {
        self.done(&self.wakes, 1);
    }

    pub(crate) fn add_publish(&self) {
        self.publishes.fetch_add(1, Ordering::AcqRel);
    }

    pub(crate) fn done_publish(&self) {
        self.done(&self.publishes, 1);
    }

    pub(crate) fn deliveries(&self) -> u64 {
        self.deliveries.load(Ordering::Acquire) & COUNT
    }

    fn done(&self, counter: &AtomicU64, n: u64) {
        if n == 0 {
            return;
        }
        let before = counter.fetch_sub(n, Ordering::AcqRel);
        if before & COUNT == n && before & WAITING != 0 {
            // Taking the mutex orders this wake after the waiter's check-then-sleep.
            let _waiters = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
            self.zero.notify_all();
        }
    }

    fn counters(&self) -> [&AtomicU64; 6] {
        [&self.deliveries, &self.claims, &self.events, &self.handlers, &self.publishes, &self.wakes]
    }

    /// Sets WAITING on every counter and says whether all counts were zero at that moment.
    /// A fold, not `all`: every counter must get the bit, whatever the ones before held.
    #[allow(clippy::unnecessary_fold)]
    fn mark_and_check_idle(&self) -> bool {
        self.counters().iter().fold(true, |idle, c| c.fetch_or(WAITING, Ordering::AcqRel) & COUNT == 0 && idle)
    }

    /// Waits until no delivery and no listener event is outstanding, or until `deadline`
    /// (`None`: no limit). Returns whether it got there.
    #[cfg(loom)]
    pub(crate) fn wait_idle(&self, deadline: Option<Instant>) -> bool {
        self.wait_idle_or(deadline, || false)
    }

    /// Wakes every `wait_idle` now, to look at `stop` (a cancelled join).
    pub(crate) fn wake_waiters(&self) {
        let _waiters = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
        self.zero.notify_all();
    }

    /// `wait_idle` that also returns (false) once `stop()` is true: it is read under the
    /// waiters' lock, which `wake_waiters` takes, so a stop followed by `wake_waiters` is seen.
    pub(crate) fn wait_idle_or(&self, deadline: Option<Instant>, stop: impl Fn() -> bool) -> bool {
        let mut waiters = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
        *waiters += 1;
        let idle = loop {
            if self.mark_and_check_idle() {
                break true;
            }
            if stop() {
                break false;
            }
            match deadline {
                None => waiters = self.zero.wait(waiters).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break self.mark_and_check_idle();
                    }
                    waiters = self.zero.wait_timeout(waiters, left).unwrap_or_else(|e| e.into_inner()).0;
                }
            }
        };
        *waiters -= 1;
        if *waiters == 0 {
            // The last waiter out: settlers stop taking the mutex. (A settler that read the bit
            // just before only makes a spurious wake.)
            for c in self.counters() {
                c.fetch_and(COUNT, Ordering::AcqRel);
            }
        }
        idle
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

    /// Two joins at once and a settle: both return, and the waiting bits are cleared when the
    /// last one leaves, so that a later join still waits for a later delivery.
    #[test]
    fn two_waiters_both_wake_and_the_bits_are_cleared() {
        loom::model(|| {
            let q = Arc::new(Quiesce::default());
            q.add_deliveries(1);
            let other = {
                let q = q.clone();
                thread::spawn(move || assert!(q.wait_idle(None)))
            };
            let settler = {
                let q = q.clone();
                thread::spawn(move || q.done_deliveries(1))
            };
            assert!(q.wait_idle(None));
            other.join().unwrap();
            settler.join().unwrap();
            for c in q.counters() {
                assert_eq!(c.load(loom::sync::atomic::Ordering::Acquire), 0, "no count, no waiting bit");
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
            // The listener queue: the event is handed over after it is counted, as in
            // ListenerHub::emit. (A channel, not a spin on the counter: spinning multiplies
            // the interleavings loom has to explore.)
            let (events, queued) = loom::sync::mpsc::channel::<()>();
            let worker = {
                let q = q.clone();
                thread::spawn(move || {
                    // settle: the event is counted before the delivery is done
                    q.add_events(1);
                    events.send(()).unwrap();
                    q.done_deliveries(1);
                })
            };
            let listener = {
                let q = q.clone();
                thread::spawn(move || {
                    // the listener thread delivers the event once it is queued
                    queued.recv().unwrap();
                    q.done_events(1);
                })
            };
            assert!(q.wait_idle(None));
            assert_eq!(q.deliveries(), 0);
            assert_eq!(q.events.load(loom::sync::atomic::Ordering::Acquire) & super::COUNT, 0);
            worker.join().unwrap();
            listener.join().unwrap();
        });
    }
}
