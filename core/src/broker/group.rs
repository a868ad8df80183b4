//! A consumer group: one queue and the members that compete for it. Push members are
//! subscriptions (run by the worker pool); pull consumers take from the same queue with fetch.
//! An ungrouped subscription has an anonymous group of its own, which is how fan-out and
//! competition are one mechanism: each group gets its own copy of every message.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::sync::{Condvar, Mutex, RwLock};

use super::ready::ReadyWaiters;
use super::subscription::Subscription;
use crate::cancel::Interrupt;
use crate::error::{Error, Result};
use crate::message::Delivery;
use crate::stats::TopicCounters;
use crate::store::GroupQueue;

pub(crate) struct Group {
    /// None for the anonymous group of one ungrouped subscription.
    pub name: Option<Arc<str>>,
    pub topic: Arc<str>,
    pub counters: Arc<TopicCounters>,
    /// The store's queue of this group.
    pub queue: Arc<dyn GroupQueue>,
    /// Copy-on-write list of push members.
    members: RwLock<Arc<[Arc<Subscription>]>>,
    /// Where the next search for a member with spare capacity starts (round robin).
    next_member: AtomicUsize,
    /// Pull consumers blocked in fetch, and where they wait.
    waiters: AtomicUsize,
    wait_lock: Mutex<()>,
    wait_cv: Condvar,
    /// Publishers blocked on a full queue (backpressure Block), waiting on `wait_lock` too.
    space_waiters: AtomicUsize,
    space_cv: Condvar,
    /// Consumers told (by a closure, not a thread) when a delivery may be ready: see `ready`.
    pub ready: ReadyWaiters,
    active: AtomicBool,
}

impl Group {
    pub(crate) fn new(
        name: Option<Arc<str>>,
        topic: Arc<str>,
        counters: Arc<TopicCounters>,
        queue: Arc<dyn GroupQueue>,
    ) -> Self {
        Group {
            name,
            topic,
            counters,
            queue,
            members: RwLock::new(Arc::from(Vec::new())),
            next_member: AtomicUsize::new(0),
            waiters: AtomicUsize::new(0),
            space_waiters: AtomicUsize::new(0),
            space_cv: Condvar::new(),
            wait_lock: Mutex::new(()),
            wait_cv: Condvar::new(),
            ready: ReadyWaiters::default(),
            active: AtomicBool::new(true),
        }
    }

    pub(crate) fn is_active(&self) -> bool {
        self.active.load(Ordering::SeqCst)
    }

    /// Stops the group: no more deliveries; fetchers blocked on it wake up.
    pub(crate) fn deactivate(&self) {
        self.active.store(false, Ordering::SeqCst);
        self.wake_all_fetchers();
    }

    /// Undoes `deactivate` (an unsubscribe whose store removal failed).
    pub(crate) fn reactivate(&self) {
        self.active.store(true, Ordering::SeqCst);
    }

    /// Whether someone waits for this group's deliveries: a push member, a blocked fetcher, a
    /// readiness waiter, or a publisher blocked on its full queue.
    pub(crate) fn is_watched(&self) -> bool {
        !self.members.read().is_empty()
            || self.waiters.load(Ordering::SeqCst) > 0
            || self.ready.armed() > 0
            || self.space_waiters.load(Ordering::SeqCst) > 0
    }

    pub(crate) fn add_member(&self, sub: Arc<Subscription>) {
        let mut list = self.members.write();
        let mut next: Vec<_> = list.iter().cloned().collect();
        next.push(sub);
        *list = next.into();
    }

    /// Removes a member; returns how many remain.
    pub(crate) fn remove_member(&self, id: u64) -> usize {
        let mut list = self.members.write();
        let next: Vec<_> = list.iter().filter(|s| s.id != id).cloned().collect();
        let remaining = next.len();
        *list = next.into();
        remaining
    }

    /// Forgets every member, for teardown (members refer back to their group).
    pub(crate) fn clear_members(&self) -> Arc<[Arc<Subscription>]> {
        std::mem::replace(&mut *self.members.write(), Arc::from(Vec::new()))
    }

    /// Whether deliveries should be taken one at a time: when several consumers compete, a
    /// batch taken by one would be withheld from the others.
    pub(crate) fn contended(&self) -> bool {
        self.members.read().len() > 1 || self.waiters.load(Ordering::SeqCst) > 0 || self.ready.armed() > 0
    }

    /// Finds a push member with a free worker slot and claims it; the caller submits it to the
    /// pool.
    pub(crate) fn claim_member(&self) -> Option<Arc<Subscription>> {
        let members = self.members.read();
        let n = members.len();
        if n == 0 {
            return None;
        }
        let start = self.next_member.fetch_add(1, Ordering::Relaxed);
        (0..n).map(|i| &members[(start + i) % n]).find(|m| m.try_claim()).cloned()
    }

    /// Wakes one blocked fetcher, if any.
    pub(crate) fn wake_fetcher(&self) {
        if self.waiters.load(Ordering::SeqCst) > 0 {
            let _g = self.wait_lock.lock();
            self.wait_cv.notify_one();
        }
    }

    /// Tells up to `n` readiness waiters that a delivery may be ready (their closures run here).
    pub(crate) fn notify_ready(&self, n: usize) {
        self.ready.fire(n, super::ready::Readiness::Ready);
    }

    pub(crate) fn wake_all_fetchers(&self) {
        let _g = self.wait_lock.lock();
        self.wait_cv.notify_all();
        self.space_cv.notify_all();
    }

    /// Tells publishers blocked on a full queue that deliveries were taken off it.
    pub(crate) fn made_room(&self) {
        if self.space_waiters.load(Ordering::SeqCst) > 0 {
            let _g = self.wait_lock.lock();
            self.space_cv.notify_all();
        }
    }

    /// Waits until the queue has room for `n` more deliveries under `capacity`, or until
    /// `deadline`; returns whether there is room. Also returns true once the group or the
    /// broker (`open`) is done, so that the publish goes on and meets that instead. `waiting`
    /// runs each time it starts to wait.
    pub(crate) fn wait_for_room(
        &self,
        n: usize,
        capacity: usize,
        deadline: Instant,
        open: impl Fn() -> bool,
        waiting: impl Fn(),
    ) -> bool {
        // A failing store read counts as room: the publish goes on and meets the failure.
        let full = || self.queue.backlog(Duration::ZERO).is_ok_and(|len| len + n > capacity);
        loop {
            if !full() || !self.is_active() || !open() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            let mut guard = self.wait_lock.lock();
            self.space_waiters.fetch_add(1, Ordering::SeqCst);
            waiting();
            if full() && self.is_active() && open() {
                self.space_cv.wait_until(&mut guard, deadline);
            }
            self.space_waiters.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Claims deliveries into `out` with `claim`, waiting until `deadline` (None: no limit)
    /// while there are none, the group is active and `open()` is true; `waiting` runs each time
    /// it starts to wait. Returns how many it took (0: none came in time, or the group or
    /// broker is done); `Cancelled` if `interrupt` is set before anything was claimed.
    pub(crate) fn take(
        self: &Arc<Self>,
        out: &mut Vec<Delivery>,
        deadline: Option<Instant>,
        interrupt: Interrupt<'_>,
        open: impl Fn() -> bool,
        mut claim: impl FnMut(&mut Vec<Delivery>) -> Result<usize>,
        waiting: impl Fn(),
    ) -> Result<usize> {
        let _watching = interrupt.watch(|| {
            let group = Arc::downgrade(self);
            move || {
                if let Some(group) = group.upgrade() {
                    group.wake_all_fetchers();
                }
            }
        });
        loop {
            if !self.is_active() || !open() {
                return Ok(0);
            }
            if interrupt.is_set() {
                return Err(Error::cancelled("the fetch"));
            }
            let got = claim(out)?;
            if got > 0 {
                self.made_room();
                return Ok(got);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(0);
            }
            let mut guard = self.wait_lock.lock();
            self.waiters.fetch_add(1, Ordering::SeqCst);
            waiting();
            // Re-check under the lock: a push after our claim and before this point has either
            // seen waiters > 0 (and will notify after we wait) or is visible here; so has a
            // cancel (its wake-up takes this lock).
            if self.queue.len() == 0 && self.is_active() && open() && !interrupt.is_cancelled() {
                match interrupt.wake_by(deadline) {
                    Some(d) => {
                        self.wait_cv.wait_until(&mut guard, d);
                    }
                    None => self.wait_cv.wait(&mut guard),
                }
            }
            self.waiters.fetch_sub(1, Ordering::SeqCst);
        }
    }
}
