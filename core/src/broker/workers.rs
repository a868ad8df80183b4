//! The worker pool: threads that take runnable subscriptions from one channel and run a batch
//! of their deliveries. A subscription is sent to the channel only when it becomes runnable,
//! not once per message, so under load a hand-off carries a whole batch.

use std::sync::Arc;
use std::thread::JoinHandle;

use crate::sync::Mutex;
use crossbeam_channel::{Receiver, Sender};

use super::subscription::Subscription;

pub(crate) enum Task {
    Run(Arc<Subscription>),
    Stop,
}

pub(crate) struct Pool {
    pub tx: Sender<Task>,
    pub rx: Receiver<Task>,
    pub size: usize,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Pool {
    pub(crate) fn new(size: usize) -> Self {
        let (tx, rx) = crossbeam_channel::unbounded();
        Pool { tx, rx, size, threads: Mutex::new(Vec::with_capacity(size)) }
    }

    pub(crate) fn adopt(&self, handle: JoinHandle<()>) {
        self.threads.lock().push(handle);
    }

    pub(crate) fn submit(&self, sub: Arc<Subscription>) {
        // The receiver lives as long as the pool, so sending cannot fail.
        let _ = self.tx.send(Task::Run(sub));
    }

    /// Asks every worker to exit once it finishes what it is running.
    pub(crate) fn stop(&self) {
        for _ in 0..self.size {
            let _ = self.tx.send(Task::Stop);
        }
    }

    /// Waits for every worker thread to exit.
    pub(crate) fn join(&self) {
        let threads = std::mem::take(&mut *self.threads.lock());
        for t in threads {
            let _ = t.join();
        }
    }

    /// Drops runnable subscriptions still queued, for teardown.
    pub(crate) fn clear(&self) {
        while self.rx.try_recv().is_ok() {}
    }
}
