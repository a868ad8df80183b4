//! Listeners observe every broker event. Events are handed to one listener thread per broker
//! through a bounded queue, so a slow or stuck listener can delay other listeners but never a
//! publish or a delivery: when the queue is full, events are dropped and counted
//! (`listener_events_dropped` in stats), messages never are.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::sync::{Mutex, RwLock};
use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::broker::quiesce::Quiesce;
use crate::broker::reentry;
use crate::error::{Error, ErrorKind, Result};
use crate::handler::Reason;
use crate::log::{log, Log};
use crate::message::Delivery;

/// Observer of broker events. Every method has an empty default. Methods run on the broker's
/// listener thread, one event at a time, in the order events happened; a panic in one is caught
/// and ignored.
pub trait Listener: Send + Sync + 'static {
    /// A message was published; `message.id()` is 0 and `message.parent_id()` the published id.
    fn on_publish(&self, _message: &Delivery) {}
    /// A delivery was handed to its subscription's handler.
    fn on_dispatched(&self, _delivery: &Delivery) {}
    /// A delivery was acked.
    fn on_processed(&self, _delivery: &Delivery) {}
    /// A delivery was nacked; `requeued` says whether it will be delivered again.
    fn on_failed(&self, _delivery: &Delivery, _reason: &str, _requeued: bool) {}
    fn on_subscribe(&self, _topic: &str, _subscription: u64) {}
    fn on_unsubscribe(&self, _topic: &str, _subscription: u64) {}
    fn on_topic_created(&self, _topic: &str) {}
}

pub(crate) enum Event {
    Published(Delivery),
    Dispatched(Delivery),
    Processed(Delivery),
    Failed(Delivery, Reason, bool),
    Subscribed(Arc<str>, u64),
    Unsubscribed(Arc<str>, u64),
    TopicCreated(Arc<str>),
}

impl Event {
    fn deliver_to(&self, l: &dyn Listener) {
        match self {
            Event::Published(d) => l.on_publish(d),
            Event::Dispatched(d) => l.on_dispatched(d),
            Event::Processed(d) => l.on_processed(d),
            Event::Failed(d, reason, requeued) => l.on_failed(d, reason, *requeued),
            Event::Subscribed(t, id) => l.on_subscribe(t, *id),
            Event::Unsubscribed(t, id) => l.on_unsubscribe(t, *id),
            Event::TopicCreated(t) => l.on_topic_created(t),
        }
    }
}

/// A registered listener and its call state: IDLE, CALLING, or REMOVED. A call starts only by
/// moving IDLE to CALLING, and `remove` moves any state to REMOVED, so once `remove` returns no
/// call can start, and a call already started simply finishes: `remove` never waits.
struct Entry {
    id: u64,
    listener: Arc<dyn Listener>,
    state: AtomicU8,
}

const IDLE: u8 = 0;
const CALLING: u8 = 1;
const REMOVED: u8 = 2;

type ListenerList = Arc<Vec<Arc<Entry>>>;

/// The registry of listeners and the queue that feeds the listener thread.
pub(crate) struct ListenerHub {
    /// Copy-on-write: the listener thread takes a snapshot per batch, never holding this lock
    /// while calling out.
    listeners: RwLock<ListenerList>,
    /// Fast path for the common case of no listeners: events are not even built.
    any: AtomicBool,
    tx: Sender<Event>,
    rx: Receiver<Event>,
    /// Set by a forced close: queued events are discarded instead of delivered.
    discard: AtomicBool,
    /// One message ends the listener thread once the event queue is empty.
    stop_tx: Sender<()>,
    stop_rx: Receiver<()>,
    dropped: AtomicU64,
    /// The queue is dropping events: set by the first drop, cleared by the next event that fits,
    /// so that an overflow is logged once when it starts and once when it ends.
    overflowing: AtomicBool,
    capacity: usize,
    log: Log,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl ListenerHub {
    pub(crate) fn new(capacity: usize, log: Log) -> Self {
        let (tx, rx) = crossbeam_channel::bounded(capacity);
        let (stop_tx, stop_rx) = crossbeam_channel::bounded(1);
        ListenerHub {
            listeners: RwLock::new(Arc::new(Vec::new())),
            any: AtomicBool::new(false),
            tx,
            rx,
            discard: AtomicBool::new(false),
            stop_tx,
            stop_rx,
            dropped: AtomicU64::new(0),
            overflowing: AtomicBool::new(false),
            capacity,
            log,
            thread: Mutex::new(None),
        }
    }

    /// Starts the listener thread. `owner` identifies the broker for re-entry checks.
    pub(crate) fn start(self: &Arc<Self>, quiesce: Arc<Quiesce>, owner: usize) -> Result<()> {
        let hub = Arc::clone(self);
        let handle = std::thread::Builder::new()
            .name("brokk-listener".into())
            .spawn(move || {
                reentry::enter(owner);
                hub.run(&quiesce);
            })
            .map_err(|e| Error::new(ErrorKind::InvalidArgument, format!("cannot start listener thread: {e}")))?;
        *self.thread.lock() = Some(handle);
        Ok(())
    }

    pub(crate) fn active(&self) -> bool {
        self.any.load(Ordering::Acquire)
    }

    pub(crate) fn add(&self, id: u64, listener: Arc<dyn Listener>) {
        let mut list = self.listeners.write();
        let mut next: Vec<_> = list.iter().cloned().collect();
        next.push(Arc::new(Entry { id, listener, state: AtomicU8::new(IDLE) }));
        *list = Arc::new(next);
        self.any.store(true, Ordering::Release);
    }

    pub(crate) fn remove(&self, id: u64) -> Result<()> {
        let removed = {
            let mut list = self.listeners.write();
            let Some(pos) = list.iter().position(|e| e.id == id) else {
                return Err(Error::new(ErrorKind::UnknownListener, format!("no listener with id {id}")));
            };
            let mut next: Vec<_> = list.iter().cloned().collect();
            let removed = next.remove(pos);
            self.any.store(!next.is_empty(), Ordering::Release);
            *list = Arc::new(next);
            removed
        };
        removed.state.store(REMOVED, Ordering::SeqCst);
        // Dropped outside the lock. The listener thread's snapshot may still hold the entry (a
        // call may be running); the finaliser runs when the last reference goes.
        drop(removed);
        Ok(())
    }

    pub(crate) fn count(&self) -> usize {
        self.listeners.read().len()
    }

    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Queues an event if anyone listens. Never blocks: a full queue drops the event.
    pub(crate) fn emit(&self, quiesce: &Quiesce, make: impl FnOnce() -> Event) {
        if !self.active() || self.discard.load(Ordering::Relaxed) {
            return;
        }
        quiesce.add_events(1);
        match self.tx.try_send(make()) {
            Ok(()) => {
                if self.overflowing.load(Ordering::Relaxed) && self.overflowing.swap(false, Ordering::Relaxed) {
                    log!(
                        self.log,
                        Info,
                        "brokk::listener",
                        "the listener queue takes events again ({} dropped since the broker started)",
                        self.dropped()
                    );
                }
            }
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                quiesce.done_events(1);
                if !self.overflowing.swap(true, Ordering::Relaxed) {
                    log!(self.log, Warn, "brokk::listener", "the listener queue is full ({} events): listener events are being dropped (a listener is too slow; see listener_events_dropped, or raise listener_queue_capacity)", self.capacity);
                }
            }
        }
    }

    fn run(&self, quiesce: &Quiesce) {
        let mut batch = Vec::with_capacity(256);
        let mut stopping = false;
        loop {
            if stopping {
                match self.rx.try_recv() {
                    Ok(ev) => batch.push(ev),
                    Err(_) => return,
                }
            } else {
                crossbeam_channel::select! {
                    recv(self.rx) -> ev => match ev {
                        Ok(ev) => batch.push(ev),
                        Err(_) => return,
                    },
                    recv(self.stop_rx) -> _ => { stopping = true; continue; }
                }
            }
            while batch.len() < batch.capacity() {
                match self.rx.try_recv() {
                    Ok(ev) => batch.push(ev),
                    Err(_) => break,
                }
            }
            let listeners = self.listeners.read().clone();
            let n = batch.len() as u64;
            for ev in batch.drain(..) {
                if self.discard.load(Ordering::Relaxed) {
                    continue;
                }
                for entry in listeners.iter() {
                    if entry.state.compare_exchange(IDLE, CALLING, Ordering::SeqCst, Ordering::SeqCst).is_err() {
                        continue; // removed
                    }
                    // A panicking listener loses its own event, nothing else.
                    let _ = catch_unwind(AssertUnwindSafe(|| ev.deliver_to(entry.listener.as_ref())));
                    let _ = entry.state.compare_exchange(CALLING, IDLE, Ordering::SeqCst, Ordering::SeqCst);
                }
            }
            drop(listeners);
            quiesce.done_events(n);
        }
    }

    /// Tells the listener thread to finish: after the queued events, or at once when `discard`.
    pub(crate) fn stop(&self, discard: bool) {
        if discard {
            self.discard.store(true, Ordering::Relaxed);
        }
        let _ = self.stop_tx.try_send(());
    }

    /// Waits for the listener thread to end (it ends once stopped and drained).
    pub(crate) fn join(&self) {
        if let Some(h) = self.thread.lock().take() {
            let _ = h.join();
        }
    }

    /// Drops every listener and queued event, running listener finalisers on this thread.
    pub(crate) fn clear(&self, quiesce: &Quiesce) {
        let mut n = 0;
        while self.rx.try_recv().is_ok() {
            n += 1;
        }
        quiesce.done_events(n);
        let old = std::mem::replace(&mut *self.listeners.write(), Arc::new(Vec::new()));
        self.any.store(false, Ordering::Release);
        drop(old);
    }
}
