//! Readiness waiters: a consumer that must not block a thread while it waits (an asyncio event
//! loop, any callback-driven host) asks to be told when a group may have a delivery to claim,
//! then fetches without waiting. A waiter costs a closure in its group's list, not a thread.
//!
//! A waiter fires exactly once: `Ready` when the group may have a delivery (publish, a requeue
//! coming due, the poller finding another process's work; spurious wake-ups are allowed, so the
//! consumer fetches without waiting and arms again if it found nothing), or `Closed` when the
//! broker closes; unless it is forgotten first. Like a blocked fetcher, a published delivery
//! fires one waiter, a batch as many as it holds; so a waiter that fired and whose consumer
//! gave up without fetching must be forgotten, which hands its notification on to another
//! waiter of the group (see `forget`).
//!
//! The notify closure runs with no brokk lock held, on the thread that made the delivery
//! available (a publisher, the poller, the timer, a closer), so it must be quick: schedule the
//! fetch elsewhere, do not fetch there.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::thread::ThreadId;

use crate::sync::{Condvar, Mutex};

/// Why a readiness waiter fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// The group may have a delivery to claim: fetch without waiting (and arm again if that
    /// found nothing).
    Ready,
    /// The broker closed: no delivery will come.
    Closed,
}

/// What `Broker::when_ready` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadyWait {
    /// Nothing was registered (the closure was dropped unrun): this is already the case.
    Now(Readiness),
    /// The closure will run once, unless `Broker::forget_ready` with this id comes first.
    Armed(u64),
}

pub(crate) type Notify = Box<dyn FnOnce(Readiness) + Send>;

/// Waiter ids: unique in the process, so a forget with a stale id never hits another waiter.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// The readiness waiters of one group.
#[derive(Default)]
pub(crate) struct ReadyWaiters {
    /// How many are armed: read without the lock on every wake-up of the group.
    armed: AtomicUsize,
    state: Mutex<State>,
    /// Signalled when notifications that were running have returned (for `forget`).
    finished: Condvar,
}

#[derive(Default)]
struct State {
    armed: VecDeque<(u64, Notify)>,
    /// Waiters whose notify runs now, and on which thread.
    running: Vec<(u64, ThreadId)>,
}

impl ReadyWaiters {
    pub(crate) fn armed(&self) -> usize {
        self.armed.load(Ordering::SeqCst)
    }

    /// Arms `notify` unless `now()`, asked under the lock after the waiter counts as armed,
    /// says the answer is known already; then hands the closure back with that answer. A
    /// wake-up that made `now()` false afterwards sees the waiter armed (its count is raised
    /// before the look), so none is lost between the look and the arming.
    pub(crate) fn arm(&self, notify: Notify, now: impl FnOnce() -> Option<Readiness>) -> Result<u64, Readiness> {
        let mut s = self.state.lock();
        self.armed.fetch_add(1, Ordering::SeqCst);
        if let Some(r) = now() {
            self.armed.fetch_sub(1, Ordering::SeqCst);
            drop(s);
            drop(notify);
            return Err(r);
        }
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        s.armed.push_back((id, notify));
        Ok(id)
    }

    /// Fires up to `n` armed waiters, oldest first, with `r`; their closures run here, with no
    /// lock held.
    pub(crate) fn fire(&self, n: usize, r: Readiness) {
        if n == 0 || self.armed() == 0 {
            return;
        }
        let me = std::thread::current().id();
        let due: Vec<(u64, Notify)> = {
            let mut s = self.state.lock();
            let k = n.min(s.armed.len());
            let due: Vec<_> = s.armed.drain(..k).collect();
            self.armed.fetch_sub(due.len(), Ordering::SeqCst);
            s.running.extend(due.iter().map(|(id, _)| (*id, me)));
            due
        };
        for (id, notify) in due {
            // A panicking closure still counts as run: the waiter is not left "running" for a
            // forget to wait on for ever.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| notify(r)));
            let mut s = self.state.lock();
            s.running.retain(|(i, _)| *i != id);
            self.finished.notify_all();
        }
    }

    pub(crate) fn fire_all(&self, r: Readiness) {
        self.fire(usize::MAX, r);
    }

    /// Removes waiter `id` if it is still armed (false: it will never run). Otherwise (true) it
    /// fired: if its closure is running on another thread, this returns once it has returned;
    /// called from inside that closure, it returns at once.
    pub(crate) fn forget(&self, id: u64) -> bool {
        let me = std::thread::current().id();
        let mut s = self.state.lock();
        if let Some(at) = s.armed.iter().position(|(i, _)| *i == id) {
            let removed = s.armed.remove(at);
            self.armed.fetch_sub(1, Ordering::SeqCst);
            drop(s);
            drop(removed); // the closure is dropped unrun, with no lock held
            return false;
        }
        while let Some(&(_, thread)) = s.running.iter().find(|(i, _)| *i == id) {
            if thread == me {
                break;
            }
            self.finished.wait(&mut s);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    use std::time::Duration;

    fn counter() -> (Arc<AtomicUsize>, Notify) {
        let n = Arc::new(AtomicUsize::new(0));
        let m = Arc::clone(&n);
        (
            n,
            Box::new(move |_| {
                m.fetch_add(1, Ordering::SeqCst);
            }),
        )
    }

    #[test]
    fn fires_oldest_first_once_each_and_forget_says_whether_it_fired() {
        let w = ReadyWaiters::default();
        let (a, fa) = counter();
        let (b, fb) = counter();
        let ida = w.arm(fa, || None).unwrap();
        let idb = w.arm(fb, || None).unwrap();
        w.fire(1, Readiness::Ready);
        assert_eq!((a.load(Ordering::SeqCst), b.load(Ordering::SeqCst)), (1, 0));
        assert!(w.forget(ida), "a fired waiter reports it fired");
        assert!(!w.forget(idb), "an armed waiter is removed unfired");
        w.fire_all(Readiness::Closed);
        assert_eq!(b.load(Ordering::SeqCst), 0);
        assert_eq!(w.armed(), 0);
    }

    #[test]
    fn a_known_answer_is_handed_back_and_nothing_is_armed() {
        let w = ReadyWaiters::default();
        let (a, fa) = counter();
        assert_eq!(w.arm(fa, || Some(Readiness::Ready)), Err(Readiness::Ready));
        assert_eq!((a.load(Ordering::SeqCst), w.armed()), (0, 0));
    }

    #[test]
    fn forget_waits_for_a_notification_running_on_another_thread() {
        let w = Arc::new(ReadyWaiters::default());
        let done = Arc::new(AtomicBool::new(false));
        let d = Arc::clone(&done);
        let started = Arc::new(std::sync::Barrier::new(2));
        let s = Arc::clone(&started);
        let id = w
            .arm(
                Box::new(move |_| {
                    s.wait();
                    std::thread::sleep(Duration::from_millis(50));
                    d.store(true, Ordering::SeqCst);
                }),
                || None,
            )
            .unwrap();
        let firer = Arc::clone(&w);
        let t = std::thread::spawn(move || firer.fire(1, Readiness::Ready));
        started.wait();
        assert!(w.forget(id));
        assert!(done.load(Ordering::SeqCst), "forget returned before the notification finished");
        t.join().unwrap();
    }
}
