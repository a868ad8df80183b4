//! Cancelling a blocking call from another thread (librdkafka's `rd_kafka_yield`, made precise:
//! a token wakes the calls it was given to, not every call of the broker).
//!
//! A [`Cancel`] is handed to `fetch_batch_until`, `take_until` or `join_until`. While such a
//! call waits, [`Cancel::cancel`] from any thread makes it return `ErrorKind::Cancelled` at once,
//! having done nothing. Each wait site registers how to wake itself (notify its condition
//! variable under its own lock) for as long as it waits; `cancel` sets the flag first and then
//! runs those wake-ups, and a waiter reads the flag under the same lock before it sleeps, so a
//! cancel is never lost between the waiter's look and its sleep.
//!
//! A host that can only notice its own cancellation by asking (CPython runs a Ctrl-C handler
//! only when asked, from the thread that is blocked in the call) gives the token a check: a
//! waiting call then wakes at least every `every` to ask it, on its own thread. That periodic
//! look is the library's, so no binding cuts its waits into slices.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::sync::Mutex;

type Wake = Arc<dyn Fn() + Send + Sync>;
type Ask = Box<dyn Fn() -> bool + Send + Sync>;

/// A cancellation token for blocking calls. Cheap to clone (clones share one token); any
/// thread may cancel it, any number of calls may wait on it at once. A cancelled token stays
/// cancelled until [`Cancel::reset`], so a call started after the cancel returns at once.
#[derive(Clone)]
pub struct Cancel {
    inner: Arc<Inner>,
}

struct Inner {
    cancelled: AtomicBool,
    /// How to wake each call waiting on this token now, by registration number.
    waiting: Mutex<Vec<(u64, Wake)>>,
    next: AtomicU64,
    check: Option<(Duration, Ask)>,
}

impl Default for Cancel {
    fn default() -> Self {
        Cancel::new()
    }
}

impl std::fmt::Debug for Cancel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cancel").field("cancelled", &self.is_cancelled()).finish()
    }
}

/// The shortest period a check may ask for: a waiting call wakes at most this often.
pub const MIN_CHECK_PERIOD: Duration = Duration::from_millis(1);

impl Cancel {
    /// A token that only [`Cancel::cancel`] cancels.
    pub fn new() -> Cancel {
        Cancel::build(None)
    }

    /// A token that is also cancelled when `ask` returns true. A call waiting on it asks at
    /// least every `every` (at least [`MIN_CHECK_PERIOD`]), on the thread that made the call,
    /// and once before it starts to wait.
    pub fn with_check(every: Duration, ask: impl Fn() -> bool + Send + Sync + 'static) -> Cancel {
        Cancel::build(Some((every.max(MIN_CHECK_PERIOD), Box::new(ask))))
    }

    fn build(check: Option<(Duration, Ask)>) -> Cancel {
        Cancel {
            inner: Arc::new(Inner {
                cancelled: AtomicBool::new(false),
                waiting: Mutex::new(Vec::new()),
                next: AtomicU64::new(0),
                check,
            }),
        }
    }

    /// Cancels: every call waiting on this token returns `Cancelled` now, and so does every
    /// call given it later, until `reset`. Idempotent; any thread.
    pub fn cancel(&self) {
        self.inner.cancelled.store(true, Ordering::SeqCst);
        // Cloned out so that no wake-up runs under this token's lock (each takes its waiter's).
        let wakes: Vec<Wake> = self.inner.waiting.lock().iter().map(|(_, w)| Arc::clone(w)).collect();
        for wake in wakes {
            wake();
        }
    }

    /// Whether the token is cancelled (its check is not asked here).
    pub fn is_cancelled(&self) -> bool {
        self.inner.cancelled.load(Ordering::SeqCst)
    }

    /// Makes the token usable again. A call already woken by the cancel still returns
    /// `Cancelled`.
    pub fn reset(&self) {
        self.inner.cancelled.store(false, Ordering::SeqCst);
    }
}

/// The cancellation of one blocking call: its token, if it was given one. `Copy`, so that a
/// call passes it down to each wait it makes.
#[derive(Clone, Copy, Default)]
pub(crate) struct Interrupt<'a>(Option<&'a Cancel>);

impl<'a> Interrupt<'a> {
    pub(crate) fn new(cancel: Option<&'a Cancel>) -> Self {
        Interrupt(cancel)
    }

    /// Whether the call must stop: its token is cancelled, or the token's check says so (then
    /// the token is cancelled, for every call waiting on it). Never under a wait site's lock: a
    /// check that cancels runs every wake-up, and each takes its wait site's lock.
    pub(crate) fn is_set(self) -> bool {
        let Some(cancel) = self.0 else { return false };
        if cancel.is_cancelled() {
            return true;
        }
        match &cancel.inner.check {
            Some((_, ask)) if ask() => {
                cancel.cancel();
                true
            }
            _ => false,
        }
    }

    /// Whether the token is cancelled, without asking its check: for a look under a wait
    /// site's lock, where the check (a host's callback) must not run.
    pub(crate) fn is_cancelled(self) -> bool {
        self.0.is_some_and(Cancel::is_cancelled)
    }

    /// The instant a wait that ends at `deadline` (None: never) must wake by to ask the check.
    pub(crate) fn wake_by(self, deadline: Option<Instant>) -> Option<Instant> {
        match self.0.and_then(|c| c.inner.check.as_ref()) {
            Some((every, _)) => {
                let next = Instant::now() + *every;
                Some(deadline.map_or(next, |d| d.min(next)))
            }
            None => deadline,
        }
    }

    /// Registers the wake-up `make` builds to run on a cancel until the returned guard is
    /// dropped. A wait site registers before its first look at the flag, and the wake-up takes
    /// the lock under which it looks and sleeps. Without a token nothing is built: a fetch or
    /// take without one pays nothing for it.
    pub(crate) fn watch<W: Fn() + Send + Sync + 'static>(self, make: impl FnOnce() -> W) -> Watching<'a> {
        let Some(cancel) = self.0 else { return Watching(None) };
        let id = cancel.inner.next.fetch_add(1, Ordering::Relaxed);
        cancel.inner.waiting.lock().push((id, Arc::new(make())));
        Watching(Some((cancel, id)))
    }
}

/// A registered wake-up; dropping it unregisters it.
pub(crate) struct Watching<'a>(Option<(&'a Cancel, u64)>);

impl Drop for Watching<'_> {
    fn drop(&mut self) {
        if let Some((cancel, id)) = self.0 {
            cancel.inner.waiting.lock().retain(|(i, _)| *i != id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::Condvar;
    use std::sync::atomic::AtomicUsize;

    /// A waiter in the shape of the core's wait sites: register, then look under the lock and
    /// sleep on the condition variable until cancelled.
    fn wait_until_cancelled(cancel: &Cancel) -> Duration {
        let started = Instant::now();
        let pair = Arc::new((Mutex::new(()), Condvar::new()));
        let interrupt = Interrupt::new(Some(cancel));
        let waker = Arc::clone(&pair);
        let _watching = interrupt.watch(|| {
            move || {
                let _g = waker.0.lock();
                waker.1.notify_all();
            }
        });
        // As the core's wait sites do: the check is asked with no lock held (a check that
        // cancels runs the wake-ups, which take the lock), and only the flag is read under it.
        while !interrupt.is_set() {
            let mut guard = pair.0.lock();
            if interrupt.is_cancelled() {
                break;
            }
            match interrupt.wake_by(None) {
                Some(t) => {
                    pair.1.wait_until(&mut guard, t);
                }
                None => pair.1.wait(&mut guard),
            }
        }
        started.elapsed()
    }

    #[test]
    fn a_cancel_from_another_thread_wakes_a_waiter_without_a_check() {
        for _ in 0..200 {
            let cancel = Cancel::new();
            let c = cancel.clone();
            let t = std::thread::spawn(move || wait_until_cancelled(&c));
            std::thread::yield_now();
            cancel.cancel();
            // A lost wake-up would hang here: the waiter has no check and no deadline.
            t.join().unwrap();
        }
    }

    #[test]
    fn a_check_is_asked_while_waiting_and_cancels_the_token() {
        let asked = Arc::new(AtomicUsize::new(0));
        let a = Arc::clone(&asked);
        let cancel = Cancel::with_check(Duration::from_millis(5), move || a.fetch_add(1, Ordering::SeqCst) >= 3);
        let took = wait_until_cancelled(&cancel);
        assert!(asked.load(Ordering::SeqCst) >= 4);
        assert!(cancel.is_cancelled(), "a check that says stop cancels the token");
        assert!(took < Duration::from_secs(5));
    }

    #[test]
    fn a_cancelled_token_stays_cancelled_until_reset_and_unregisters_its_waiters() {
        let cancel = Cancel::new();
        cancel.cancel();
        assert!(Interrupt::new(Some(&cancel)).is_set());
        cancel.reset();
        assert!(!Interrupt::new(Some(&cancel)).is_set());
        {
            let _w = Interrupt::new(Some(&cancel)).watch(|| || {});
            assert_eq!(cancel.inner.waiting.lock().len(), 1);
        }
        assert_eq!(cancel.inner.waiting.lock().len(), 0);
        assert!(!Interrupt::new(None).is_set());
        assert_eq!(Interrupt::new(None).wake_by(None), None);
    }
}
