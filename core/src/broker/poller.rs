//! The poller thread of a broker on a shared store: it sleeps between looks at the store, and
//! wakes early when poked (a consumer or a blocked publisher started waiting; or the store, which
//! heard of work, through the [`Waker`] it was given) or stopped. What it does on each look is
//! `Shared::run_poller`.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use crate::sync::{Condvar, Mutex};

use crate::store::{Waker, Watch};

/// Why `Poller::sleep_until` returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Woken {
    Time,
    /// Someone started waiting: their group may have work the poller never looked for (a
    /// delay that ran out while nobody watched it).
    Poked,
    Stopped,
}

#[derive(Default)]
struct State {
    stopped: bool,
    poked: bool,
}

/// What wakes the poller, shared with the store's [`Waker`]: it holds nothing of the broker, so
/// a store thread that wakes it never keeps the broker alive (nor runs its teardown).
#[derive(Default)]
struct Signal {
    state: Mutex<State>,
    changed: Condvar,
}

impl Signal {
    fn poke(&self) {
        let mut s = self.state.lock();
        if !s.poked {
            s.poked = true;
            self.changed.notify_one();
        }
    }
}

pub(crate) struct Poller {
    pub watch: Watch,
    signal: Arc<Signal>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Poller {
    pub(crate) fn new(watch: Watch) -> Self {
        Poller { watch, signal: Arc::default(), thread: Mutex::new(None) }
    }

    /// For the store: wakes the poller as a poke does, from any thread.
    pub(crate) fn waker(&self) -> Waker {
        let signal = Arc::clone(&self.signal);
        Waker::new(move || signal.poke())
    }

    pub(crate) fn start(&self, run: impl FnOnce() + Send + 'static) -> std::io::Result<()> {
        let thread = std::thread::Builder::new().name("brokk-poller".into()).spawn(run)?;
        *self.thread.lock() = Some(thread);
        Ok(())
    }

    /// Sleeps until `until`, a poke, or stop; says which.
    pub(crate) fn sleep_until(&self, until: Instant) -> Woken {
        let Signal { state, changed } = &*self.signal;
        let mut s = state.lock();
        while !s.stopped && !s.poked && Instant::now() < until {
            changed.wait_until(&mut s, until);
        }
        let poked = std::mem::take(&mut s.poked);
        match (s.stopped, poked) {
            (true, _) => Woken::Stopped,
            (false, true) => Woken::Poked,
            (false, false) => Woken::Time,
        }
    }

    pub(crate) fn poke(&self) {
        self.signal.poke();
    }

    pub(crate) fn stop(&self) {
        self.signal.state.lock().stopped = true;
        self.signal.changed.notify_all();
    }

    pub(crate) fn join(&self) {
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_store_s_waker_wakes_the_sleeping_poller_from_another_thread() {
        let poller = Poller::new(Watch { poll: Duration::from_secs(60), heartbeat: Duration::from_secs(60) });
        let waker = poller.waker();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            waker.wake();
        });
        // Without the wake this sleeps the whole minute.
        assert_eq!(poller.sleep_until(Instant::now() + Duration::from_secs(60)), Woken::Poked);
        t.join().unwrap();
        // A wake before the poller sleeps is not lost.
        poller.waker().wake();
        assert_eq!(poller.sleep_until(Instant::now() + Duration::from_secs(60)), Woken::Poked);
    }
}
