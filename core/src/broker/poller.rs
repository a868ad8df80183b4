//! The poller thread of a broker on a shared store: it sleeps between looks at the store, and
//! wakes early when poked (a consumer or a blocked publisher started waiting) or stopped. What
//! it does on each look is `Shared::run_poller`.

use std::thread::JoinHandle;
use std::time::Instant;

use crate::sync::{Condvar, Mutex};

use crate::store::Watch;

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

pub(crate) struct Poller {
    pub watch: Watch,
    state: Mutex<State>,
    changed: Condvar,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Poller {
    pub(crate) fn new(watch: Watch) -> Self {
        Poller { watch, state: Mutex::default(), changed: Condvar::new(), thread: Mutex::new(None) }
    }

    pub(crate) fn start(&self, run: impl FnOnce() + Send + 'static) -> std::io::Result<()> {
        let thread = std::thread::Builder::new().name("brokk-poller".into()).spawn(run)?;
        *self.thread.lock() = Some(thread);
        Ok(())
    }

    /// Sleeps until `until`, a poke, or stop; says which.
    pub(crate) fn sleep_until(&self, until: Instant) -> Woken {
        let mut s = self.state.lock();
        while !s.stopped && !s.poked && Instant::now() < until {
            self.changed.wait_until(&mut s, until);
        }
        let poked = std::mem::take(&mut s.poked);
        match (s.stopped, poked) {
            (true, _) => Woken::Stopped,
            (false, true) => Woken::Poked,
            (false, false) => Woken::Time,
        }
    }

    pub(crate) fn poke(&self) {
        let mut s = self.state.lock();
        if !s.poked {
            s.poked = true;
            self.changed.notify_one();
        }
    }

    pub(crate) fn stop(&self) {
        self.state.lock().stopped = true;
        self.changed.notify_all();
    }

    pub(crate) fn join(&self) {
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
    }
}
