//! The core's locks: std's, with parking_lot's calling convention (no poisoning, a condition
//! variable waits on `&mut guard`).
//!
//! Why not parking_lot itself: it parks threads in one process-wide table whose buckets have
//! locks of their own. A fork copies that table with whatever bucket locks other threads held
//! at that instant, held for ever in the child, and the child's next contended lock or new
//! thread (its first broker's workers) waits on one of them for good: seen in about 1 fork in
//! 20 from a busy process (parking_lot#515). The table also still lists the parent's parked
//! threads, and growing it in the child follows pointers into their data: pynenc's forked
//! workers segfaulted there in about 1 run in 5. std's locks keep their whole state in the lock
//! itself (a futex word on Linux), so a child that never touches its parent's locks (see
//! `broker::fork`) is not held up by them.
//!
//! A panic while a lock is held does not poison it here, as with parking_lot: every lock in the
//! core guards state that each holder leaves consistent before anything that can panic.

use std::ops::{Deref, DerefMut};
use std::sync::PoisonError;
use std::time::{Duration, Instant};

pub(crate) use std::sync::{RwLockReadGuard, RwLockWriteGuard};

#[derive(Debug, Default)]
pub(crate) struct Mutex<T: ?Sized>(std::sync::Mutex<T>);

/// Holds the lock; `None` only for the instant a [`Condvar`] wait hands it to std's wait.
pub(crate) struct MutexGuard<'a, T: ?Sized>(Option<std::sync::MutexGuard<'a, T>>);

impl<T> Mutex<T> {
    pub(crate) const fn new(value: T) -> Self {
        Mutex(std::sync::Mutex::new(value))
    }
}

impl<T: ?Sized> Mutex<T> {
    pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
        MutexGuard(Some(self.0.lock().unwrap_or_else(PoisonError::into_inner)))
    }
}

impl<T: ?Sized> Deref for MutexGuard<'_, T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        self.0.as_deref().expect("a guard is only empty inside Condvar::wait")
    }
}

impl<T: ?Sized> DerefMut for MutexGuard<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        self.0.as_deref_mut().expect("a guard is only empty inside Condvar::wait")
    }
}

#[derive(Debug, Default)]
pub(crate) struct RwLock<T: ?Sized>(std::sync::RwLock<T>);

impl<T> RwLock<T> {
    pub(crate) const fn new(value: T) -> Self {
        RwLock(std::sync::RwLock::new(value))
    }
}

impl<T: ?Sized> RwLock<T> {
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, T> {
        self.0.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, T> {
        self.0.write().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Debug, Default)]
pub(crate) struct Condvar(std::sync::Condvar);

impl Condvar {
    pub(crate) const fn new() -> Self {
        Condvar(std::sync::Condvar::new())
    }

    pub(crate) fn notify_one(&self) {
        self.0.notify_one()
    }

    pub(crate) fn notify_all(&self) {
        self.0.notify_all()
    }

    /// Releases the lock, waits to be notified (or a spurious wake-up), and takes it again.
    pub(crate) fn wait<T>(&self, guard: &mut MutexGuard<'_, T>) {
        let held = guard.0.take().expect("a guard is only empty inside Condvar::wait");
        guard.0 = Some(self.0.wait(held).unwrap_or_else(PoisonError::into_inner));
    }

    /// `wait`, for at most `timeout`.
    pub(crate) fn wait_for<T>(&self, guard: &mut MutexGuard<'_, T>, timeout: Duration) {
        let held = guard.0.take().expect("a guard is only empty inside Condvar::wait");
        let (held, _) = self.0.wait_timeout(held, timeout).unwrap_or_else(PoisonError::into_inner);
        guard.0 = Some(held);
    }

    /// `wait`, until `deadline` at the latest.
    pub(crate) fn wait_until<T>(&self, guard: &mut MutexGuard<'_, T>, deadline: Instant) {
        self.wait_for(guard, deadline.saturating_duration_since(Instant::now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_panic_while_holding_a_lock_does_not_poison_it() {
        let m = Arc::new(Mutex::new(1));
        let l = Arc::new(RwLock::new(1));
        let (m2, l2) = (Arc::clone(&m), Arc::clone(&l));
        let _ = std::thread::spawn(move || {
            let _a = m2.lock();
            let _b = l2.write();
            panic!("while holding");
        })
        .join();
        *m.lock() += 1;
        *l.write() += 1;
        assert_eq!((*m.lock(), *l.read()), (2, 2));
    }

    #[test]
    fn a_condvar_wait_releases_the_lock_and_takes_it_back() {
        let pair = Arc::new((Mutex::new(false), Condvar::new()));
        let other = Arc::clone(&pair);
        let t = std::thread::spawn(move || {
            *other.0.lock() = true;
            other.1.notify_all();
        });
        let mut ready = pair.0.lock();
        while !*ready {
            pair.1.wait_for(&mut ready, Duration::from_secs(5));
        }
        drop(ready);
        t.join().unwrap();
        let mut g = pair.0.lock();
        let started = Instant::now();
        pair.1.wait_until(&mut g, started + Duration::from_millis(20));
        assert!(*g);
    }
}
