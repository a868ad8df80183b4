//! The state every broker thread shares, and the decisions made on it: publish and fan-out,
//! dispatch, settlement (ack, nack, requeue), subscription life cycle and shutdown.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};

use super::ids::{IdGenerator, GENERATED_ID_LEN};
use super::pending::{PendingAck, PendingAcks};
use super::quiesce::Quiesce;
use super::reentry;
use super::subscription::{Subscription, MAX_CONCURRENCY};
use super::topics::{Topic, Topics};
use super::workers::{Pool, Task};
use super::{CloseReport, PublishOptions, SubscribeOptions};
use crate::config::BrokerConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::handler::{Handler, Reason, Verdict};
use crate::listener::{Event, Listener, ListenerHub};
use crate::message::{Delivery, Message};
use crate::names::{validate_id, validate_topic};
use crate::stats::{BrokerStats, TopicCounters};
use crate::store::{MemoryStore, Store};

const OPEN: u8 = 0;
/// `close` is waiting: publish and subscribe are refused, deliveries and acks go on.
const CLOSING: u8 = 1;
const CLOSED: u8 = 2;

/// How a delivery ends, whoever decides it (handler verdict or a later ack/nack).
pub(crate) enum Outcome {
    Ack,
    Nack(Reason),
    Requeue(Reason),
}

pub(crate) struct Shared {
    max_payload: usize,
    store: Box<dyn Store>,
    topics: Topics,
    subscriptions: RwLock<HashMap<u64, Arc<Subscription>>>,
    pending: PendingAcks,
    listeners: Arc<ListenerHub>,
    quiesce: Arc<Quiesce>,
    pool: Pool,
    ids: IdGenerator,
    next_delivery: AtomicU64,
    next_subscription: AtomicU64,
    next_listener: AtomicU64,
    state: AtomicU8,
    workers_active: AtomicU64,
    started: Instant,
    /// Serialises teardown steps that must not interleave (shutdown, thread joins, clearing).
    teardown: Mutex<()>,
}

impl Shared {
    pub(crate) fn start(config: &BrokerConfig) -> Result<Arc<Shared>> {
        let workers = config.resolved_workers()?;
        let shared = Arc::new(Shared {
            max_payload: config.resolved_max_payload()?,
            store: Box::new(MemoryStore),
            topics: Topics::default(),
            subscriptions: RwLock::new(HashMap::new()),
            pending: PendingAcks::new(),
            listeners: Arc::new(ListenerHub::new(config.resolved_listener_queue())),
            quiesce: Arc::new(Quiesce::default()),
            pool: Pool::new(workers),
            ids: IdGenerator::new(),
            next_delivery: AtomicU64::new(1),
            next_subscription: AtomicU64::new(1),
            next_listener: AtomicU64::new(1),
            state: AtomicU8::new(OPEN),
            workers_active: AtomicU64::new(0),
            started: Instant::now(),
            teardown: Mutex::new(()),
        });
        let owner = shared.owner();
        let spawned = (|| -> std::io::Result<()> {
            for i in 0..workers {
                let s = Arc::clone(&shared);
                let h = std::thread::Builder::new()
                    .name(format!("brokk-worker-{i}"))
                    .spawn(move || s.run_worker())?;
                shared.pool.adopt(h);
            }
            Ok(())
        })();
        let started = spawned
            .map_err(|e| {
                Error::new(
                    ErrorKind::InvalidArgument,
                    format!("cannot start worker threads: {e}"),
                )
            })
            .and_then(|()| shared.listeners.start(Arc::clone(&shared.quiesce), owner));
        if let Err(e) = started {
            shared.shutdown(true);
            shared.join_threads();
            return Err(e);
        }
        Ok(shared)
    }

    /// Identifies this broker's threads for re-entry checks.
    fn owner(&self) -> usize {
        self as *const Shared as usize
    }

    fn state(&self) -> u8 {
        self.state.load(Ordering::SeqCst)
    }

    fn ensure_open(&self) -> Result<()> {
        match self.state() {
            OPEN => Ok(()),
            _ => Err(Error::closed()),
        }
    }

    fn ensure_not_closed(&self) -> Result<()> {
        match self.state() {
            CLOSED => Err(Error::closed()),
            _ => Ok(()),
        }
    }

    fn emit(&self, make: impl FnOnce() -> Event) {
        self.listeners.emit(&self.quiesce, make);
    }

    fn topic(&self, name: &str) -> Arc<Topic> {
        let (topic, created) = self.topics.get_or_create(name);
        if created {
            self.emit(|| Event::TopicCreated(Arc::clone(&topic.name)));
        }
        topic
    }

    // ---- publish ------------------------------------------------------------------------

    pub(crate) fn publish(
        &self,
        topic: &str,
        payload: &[u8],
        opts: &PublishOptions<'_>,
    ) -> Result<Arc<Message>> {
        self.ensure_open()?;
        validate_topic(topic)?;
        if payload.len() > self.max_payload {
            return Err(Error::new(
                ErrorKind::PayloadTooLarge,
                format!(
                    "payload is {} bytes; this broker accepts at most {}",
                    payload.len(),
                    self.max_payload
                ),
            ));
        }
        validate_json(payload, "payload")?;
        if let Some(md) = opts.metadata {
            validate_metadata(md)?;
        }
        let mut id_buf = [0u8; GENERATED_ID_LEN];
        let id = match opts.id {
            Some(id) => {
                validate_id(id)?;
                id
            }
            None => self.ids.next(&mut id_buf),
        };
        let topic = self.topic(topic);
        let message = Arc::new(Message::new(
            Arc::clone(&topic.name),
            id,
            payload,
            opts.metadata,
        ));
        self.emit(|| Event::Published(Delivery::of_published(Arc::clone(&message))));
        self.fan_out(&topic, &message);
        Ok(message)
    }

    fn fan_out(&self, topic: &Topic, message: &Arc<Message>) {
        let c = &topic.counters;
        c.published.fetch_add(1, Ordering::Relaxed);
        let subs = topic.subscriptions.read();
        if subs.is_empty() {
            c.unrouted.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let n = subs.len() as u64;
        self.quiesce.add_deliveries(n);
        c.queued.fetch_add(n, Ordering::Relaxed);
        let first_id = self.next_delivery.fetch_add(n, Ordering::Relaxed);
        for (i, sub) in subs.iter().enumerate() {
            let delivery = Delivery {
                message: Arc::clone(message),
                id: first_id + i as u64,
                subscription: sub.id,
                attempt: 1,
            };
            self.enqueue(sub, delivery);
        }
    }

    fn enqueue(&self, sub: &Arc<Subscription>, delivery: Delivery) {
        let queued = sub.queue.push_len(delivery);
        // Unsubscribe and close deactivate first and drain after; checking after our push
        // means one of the two drains sees this delivery.
        if !sub.is_active() {
            self.discard_queued(sub);
        } else if sub.try_claim(queued) {
            self.pool.submit(Arc::clone(sub));
        }
    }

    /// Drops a subscription's waiting deliveries.
    fn discard_queued(&self, sub: &Subscription) {
        let n = sub.queue.drain().len() as u64;
        self.drop_unstarted(sub, n);
    }

    // ---- dispatch -----------------------------------------------------------------------

    fn run_worker(self: Arc<Self>) {
        reentry::enter(self.owner());
        let mut batch = Vec::with_capacity(64);
        while let Ok(task) = self.pool.rx.recv() {
            match task {
                Task::Stop => break,
                Task::Run(sub) => self.run_batch(&sub, &mut batch),
            }
        }
    }

    fn run_batch(&self, sub: &Arc<Subscription>, batch: &mut Vec<Delivery>) {
        if sub.is_active() && self.state() != CLOSED {
            sub.queue.pop_batch(sub.batch_size(), batch);
        }
        let mut rest = batch.drain(..);
        for delivery in rest.by_ref() {
            if !sub.is_active() || self.state() == CLOSED {
                // Stopped mid-batch: what was taken but not started counts as dropped.
                self.drop_unstarted(sub, 1);
                break;
            }
            self.dispatch(sub, delivery);
        }
        let unstarted = rest.len() as u64;
        drop(rest);
        self.drop_unstarted(sub, unstarted);
        sub.release();
        let queued = sub.queue.len();
        if queued > 0 && sub.is_active() && sub.try_claim(queued) {
            self.pool.submit(Arc::clone(sub));
        }
    }

    fn drop_unstarted(&self, sub: &Subscription, n: u64) {
        if n > 0 {
            sub.counters.queued.fetch_sub(n, Ordering::Relaxed);
            sub.counters.dropped.fetch_add(n, Ordering::Relaxed);
            self.quiesce.done_deliveries(n);
        }
    }

    fn dispatch(&self, sub: &Arc<Subscription>, delivery: Delivery) {
        let c = &sub.counters;
        c.queued.fetch_sub(1, Ordering::Relaxed);
        c.in_flight.fetch_add(1, Ordering::Relaxed);
        c.dispatched.fetch_add(1, Ordering::Relaxed);
        if sub.manual_ack {
            // Registered before the handler runs, so the handler itself may ack.
            self.pending.insert(PendingAck {
                delivery: delivery.clone(),
                subscription: Arc::downgrade(sub),
                counters: Arc::clone(c),
            });
        }
        self.emit(|| Event::Dispatched(delivery.clone()));
        self.workers_active.fetch_add(1, Ordering::Relaxed);
        let verdict = sub.handle(&delivery);
        self.workers_active.fetch_sub(1, Ordering::Relaxed);
        let outcome = match verdict {
            Verdict::Later if sub.manual_ack => return,
            Verdict::Ack | Verdict::Later => Outcome::Ack,
            Verdict::Nack(r) => Outcome::Nack(r.unwrap_or(Reason::Borrowed("nacked by handler"))),
            Verdict::Requeue(r) => {
                Outcome::Requeue(r.unwrap_or(Reason::Borrowed("requeued by handler")))
            }
        };
        if sub.manual_ack {
            // Settled here unless the handler already acked or nacked it by id.
            if let Some(entry) = self.pending.remove(delivery.id) {
                self.settle(entry.delivery, Some(sub), &entry.counters, outcome);
            }
        } else {
            self.settle(delivery, Some(sub), c, outcome);
        }
    }

    fn settle(
        &self,
        mut delivery: Delivery,
        sub: Option<&Arc<Subscription>>,
        c: &Arc<TopicCounters>,
        outcome: Outcome,
    ) {
        c.in_flight.fetch_sub(1, Ordering::Relaxed);
        match outcome {
            Outcome::Ack => {
                c.processed.fetch_add(1, Ordering::Relaxed);
                self.emit(|| Event::Processed(delivery));
            }
            Outcome::Nack(reason) => {
                c.failed.fetch_add(1, Ordering::Relaxed);
                self.emit(|| Event::Failed(delivery, reason, false));
            }
            Outcome::Requeue(reason) => {
                match sub.filter(|s| s.is_active() && self.state() != CLOSED) {
                    Some(sub) => {
                        c.requeued.fetch_add(1, Ordering::Relaxed);
                        self.emit(|| Event::Failed(delivery.clone(), reason, true));
                        delivery.attempt += 1;
                        c.queued.fetch_add(1, Ordering::Relaxed);
                        // Still outstanding: no change to the quiesce count.
                        self.enqueue(sub, delivery);
                        return;
                    }
                    None => {
                        c.dropped.fetch_add(1, Ordering::Relaxed);
                        let reason = format!("{reason}; not requeued: the subscription is gone");
                        self.emit(|| Event::Failed(delivery, reason.into(), false));
                    }
                }
            }
        }
        self.quiesce.done_deliveries(1);
    }

    // ---- ack / nack ---------------------------------------------------------------------

    pub(crate) fn settle_by_id(&self, id: u64, outcome: Outcome) -> Result<()> {
        self.ensure_not_closed()?;
        let Some(entry) = self.pending.remove(id) else {
            return Err(
                if id == 0 || id >= self.next_delivery.load(Ordering::Relaxed) {
                    Error::new(
                        ErrorKind::UnknownDelivery,
                        format!("no delivery with id {id} was ever issued"),
                    )
                } else {
                    Error::new(
                    ErrorKind::AlreadySettled,
                    format!("delivery {id} is not awaiting an ack: already acked or nacked, or auto-acked"),
                )
                },
            );
        };
        let sub = entry.subscription.upgrade();
        self.settle(entry.delivery, sub.as_ref(), &entry.counters, outcome);
        Ok(())
    }

    // ---- subscriptions and listeners ------------------------------------------------------

    /// Subscribes `handler`. Every check runs before the handler is used, and on failure the
    /// handler comes back untouched, so a C host keeps its user_data (no finaliser runs).
    pub(crate) fn subscribe<H: Handler>(
        &self,
        topic: &str,
        handler: H,
        opts: &SubscribeOptions,
    ) -> Result<u64, (Error, H)> {
        let concurrency = match self.check_subscribe(topic, opts) {
            Ok(c) => c,
            Err(e) => return Err((e, handler)),
        };
        let handler: Box<dyn Handler> = Box::new(handler);
        let topic = self.topic(topic);
        let id = self.next_subscription.fetch_add(1, Ordering::Relaxed);
        let sub = Arc::new(Subscription::new(
            id,
            Arc::clone(&topic.name),
            Arc::clone(&topic.counters),
            handler,
            opts.manual_ack,
            concurrency,
            self.store.open_queue(&topic.name, id),
        ));
        self.subscriptions.write().insert(id, Arc::clone(&sub));
        topic.add_subscription(sub);
        topic.counters.subscriptions.fetch_add(1, Ordering::Relaxed);
        self.emit(|| Event::Subscribed(Arc::clone(&topic.name), id));
        Ok(id)
    }

    fn check_subscribe(&self, topic: &str, opts: &SubscribeOptions) -> Result<usize> {
        self.ensure_open()?;
        validate_topic(topic)?;
        match opts.concurrency {
            0 => Ok(1),
            n if n > MAX_CONCURRENCY => Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("concurrency is {n}; the limit is {MAX_CONCURRENCY}"),
            )),
            n => Ok(n),
        }
    }

    pub(crate) fn unsubscribe(&self, id: u64) -> Result<()> {
        self.ensure_not_closed()?;
        let Some(sub) = self.subscriptions.write().remove(&id) else {
            return Err(Error::new(
                ErrorKind::UnknownSubscription,
                format!("no subscription with id {id}"),
            ));
        };
        if let Some(topic) = self.topics.get(&sub.topic) {
            topic.remove_subscription(id);
        }
        sub.deactivate();
        self.discard_queued(&sub);
        sub.counters.subscriptions.fetch_sub(1, Ordering::Relaxed);
        self.emit(|| Event::Unsubscribed(Arc::clone(&sub.topic), id));
        // The handler (and its finaliser) goes when the last running invocation ends.
        drop(sub);
        Ok(())
    }

    /// Adds a listener; on failure it comes back unused (see `subscribe`).
    pub(crate) fn add_listener<L: Listener>(&self, listener: L) -> Result<u64, (Error, L)> {
        if let Err(e) = self.ensure_open() {
            return Err((e, listener));
        }
        let id = self.next_listener.fetch_add(1, Ordering::Relaxed);
        self.listeners.add(id, Arc::new(listener));
        Ok(id)
    }

    pub(crate) fn remove_listener(&self, id: u64) -> Result<()> {
        self.ensure_not_closed()?;
        self.listeners.remove(id)
    }

    // ---- stats --------------------------------------------------------------------------

    pub(crate) fn stats(&self) -> Result<BrokerStats> {
        self.ensure_not_closed()?;
        let mut stats = BrokerStats {
            listeners: self.listeners.count() as u64,
            workers: self.pool.size as u64,
            workers_active: self.workers_active.load(Ordering::Relaxed),
            listener_events_dropped: self.listeners.dropped(),
            uptime_ms: self.started.elapsed().as_millis() as u64,
            ..Default::default()
        };
        for t in self.topics.all() {
            stats.add_topic(t.counters.snapshot(&t.name));
        }
        Ok(stats)
    }

    // ---- join, close, teardown ------------------------------------------------------------

    pub(crate) fn join(&self, timeout: Option<Duration>) -> Result<()> {
        self.ensure_not_closed()?;
        if reentry::is_inside(self.owner()) {
            return Err(Error::new(
                ErrorKind::WouldDeadlock,
                "join called from a handler or listener of this broker would wait for itself",
            ));
        }
        if self.quiesce.wait_idle(timeout.map(|t| Instant::now() + t)) {
            Ok(())
        } else {
            Err(Error::timeout("join", self.quiesce.deliveries()))
        }
    }

    pub(crate) fn close(&self, timeout: Option<Duration>, force: bool) -> Result<CloseReport> {
        let inside = reentry::is_inside(self.owner());
        if inside && !force {
            return Err(Error::new(
                ErrorKind::WouldDeadlock,
                "close called from a handler or listener of this broker would wait for itself; \
                 call it from another thread, or close with force",
            ));
        }
        if self
            .state
            .compare_exchange(OPEN, CLOSING, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            return Err(Error::closed());
        }
        let drained = !force && self.quiesce.wait_idle(timeout.map(|t| Instant::now() + t));
        let remaining = self.quiesce.deliveries();
        // Deliveries a worker has taken in a batch but not started are outstanding without
        // being in a queue; they are dropped when the worker next looks. So what close drops
        // is everything outstanding except the handlers running now.
        let dropped = remaining.saturating_sub(self.workers_active.load(Ordering::SeqCst));
        self.shutdown(!drained);
        if drained && !inside {
            // Every worker is idle: this returns at once.
            self.join_threads();
        }
        match (force, drained) {
            (true, _) => Ok(CloseReport { dropped }),
            (false, true) => Ok(CloseReport { dropped: 0 }),
            (false, false) => Err(Error::timeout("close", remaining)),
        }
    }

    /// Moves to CLOSED, drops everything waiting (queued, or awaiting a manual ack) and asks
    /// every broker thread to exit. Handlers already running finish on their own; nothing new
    /// starts.
    fn shutdown(&self, discard_events: bool) {
        let _guard = self.teardown.lock();
        if self.state.swap(CLOSED, Ordering::SeqCst) == CLOSED {
            return;
        }
        let subs: Vec<_> = self.subscriptions.read().values().cloned().collect();
        for sub in &subs {
            sub.deactivate();
            self.discard_queued(sub);
        }
        for entry in self.pending.drain() {
            entry.counters.in_flight.fetch_sub(1, Ordering::Relaxed);
            entry.counters.dropped.fetch_add(1, Ordering::Relaxed);
            self.quiesce.done_deliveries(1);
        }
        self.listeners.stop(discard_events);
        self.pool.stop();
    }

    fn join_threads(&self) {
        self.pool.join();
        self.listeners.join();
    }

    /// Final teardown when the last handle goes: afterwards no handler, listener or finaliser
    /// of this broker runs again. From one of the broker's own threads it cannot wait for
    /// itself, so a reaper thread finishes the job once that callback returns.
    pub(crate) fn teardown(self: Arc<Self>) {
        self.shutdown(true);
        if reentry::is_inside(self.owner()) {
            let _ = std::thread::Builder::new()
                .name("brokk-reaper".into())
                .spawn(move || self.finish_teardown());
        } else {
            self.finish_teardown();
        }
    }

    fn finish_teardown(&self) {
        self.join_threads();
        let _guard = self.teardown.lock();
        self.pool.clear();
        let subs: Vec<_> = self.subscriptions.write().drain().map(|(_, s)| s).collect();
        let topics = self.topics.clear();
        for t in &topics {
            *t.subscriptions.write() = Arc::from(Vec::new());
        }
        // Finalisers of handlers and listeners run here, on this thread.
        drop(subs);
        drop(topics);
        self.listeners.clear(&self.quiesce);
    }
}

fn validate_json(bytes: &[u8], what: &str) -> Result<()> {
    serde_json::from_slice::<serde::de::IgnoredAny>(bytes)
        .map(|_| ())
        .map_err(|e| {
            Error::new(
                ErrorKind::InvalidJson,
                format!("{what} is not valid JSON: {e}"),
            )
        })
}

fn validate_metadata(bytes: &[u8]) -> Result<()> {
    validate_json(bytes, "metadata")?;
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Err(Error::new(
            ErrorKind::InvalidJson,
            "metadata must be a JSON object",
        ));
    }
    Ok(())
}
