//! The state every broker thread shares, and the decisions made on it: publish, retention and
//! fan-out to groups, dispatch to push members and fetch by pull consumers, settlement (ack,
//! nack, requeue), the life cycle of subscriptions and groups, and shutdown.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};

use super::group::Group;
use super::ids::{IdGenerator, GENERATED_ID_LEN};
use super::pending::{PendingAck, PendingAcks};
use super::policy::DeliveryPolicy;
use super::quiesce::Quiesce;
use super::reentry;
use super::subscription::{Subscription, MAX_BATCH, MAX_CONCURRENCY};
use super::timer::{Job, Timer};
use super::topics::{Topic, Topics};
use super::workers::{Pool, Task};
use super::{BatchMessage, CloseReport, FetchOptions, PublishOptions, SubscribeOptions};
use crate::config::{Backpressure, BrokerConfig, RetentionPolicy, DEFAULT_PUBLISH_TIMEOUT};
use crate::error::{Error, ErrorKind, Result};
use crate::handler::{Handler, Reason, Verdict};
use crate::listener::{Event, Listener, ListenerHub};
use crate::message::{Delivery, Message};
use crate::names::{validate_group, validate_id, validate_topic};
use crate::stats::{BrokerStats, TopicCounters};
use crate::store::{MemoryStore, Store};

const OPEN: u8 = 0;
/// `close` is waiting: publish and subscribe are refused; deliveries, fetches and acks go on.
const CLOSING: u8 = 1;
const CLOSED: u8 = 2;

/// Batches a worker runs for one subscription before it lets others have the pool.
const MAX_TURNS: usize = 64;
/// How long a worker whose queue ran dry looks for more before it goes back to the pool.
const IDLE_SPIN: Duration = Duration::from_micros(50);

/// The group a fetch without a group name uses: pull consumers of a topic compete by default,
/// as pynenc's workers do on a queue.
pub const DEFAULT_GROUP: &str = "default";

/// How a delivery ends, whoever decides it (handler verdict or a later ack/nack).
pub(crate) enum Outcome {
    Ack,
    Nack(Reason),
    /// Requeue, after the delay if one is given.
    Requeue(Reason, Option<Duration>),
}

pub(crate) struct Shared {
    max_payload: usize,
    retention_limit: usize,
    retention_policy: RetentionPolicy,
    queue_capacity: usize,
    backpressure: Backpressure,
    publish_timeout: Duration,
    timer: Arc<Timer>,
    timer_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
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
            retention_limit: config.resolved_retention_limit(),
            retention_policy: config.retention_policy,
            queue_capacity: config.resolved_queue_capacity(),
            backpressure: config.backpressure,
            publish_timeout: config.publish_timeout.unwrap_or(DEFAULT_PUBLISH_TIMEOUT),
            timer: Arc::new(Timer::default()),
            timer_thread: Mutex::new(None),
            store: Box::new(MemoryStore),
            topics: Topics::default(),
            subscriptions: RwLock::new(HashMap::new()),
            pending: PendingAcks::new(),
            listeners: Arc::new(ListenerHub::new(config.resolved_listener_queue()?)),
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
                let h = std::thread::Builder::new().name(format!("brokk-worker-{i}")).spawn(move || s.run_worker())?;
                shared.pool.adopt(h);
            }
            let s = Arc::clone(&shared);
            let timer = std::thread::Builder::new().name("brokk-timer".into()).spawn(move || {
                reentry::enter(s.owner());
                let timer = Arc::clone(&s.timer);
                timer.run(|job| s.run_job(job));
            })?;
            *shared.timer_thread.lock() = Some(timer);
            Ok(())
        })();
        let started = spawned
            .map_err(|e| Error::new(ErrorKind::InvalidArgument, format!("cannot start worker threads: {e}")))
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

    /// The named group `name` of `topic`, created if new. The first named group of a topic
    /// takes over the messages the topic retained while it had no group.
    fn named_group(&self, topic: &Topic, name: &str) -> Arc<Group> {
        if let Some(g) = topic.named_group(name) {
            return g;
        }
        let mut retained = topic.retained.lock();
        if let Some(g) = topic.named_group(name) {
            return g;
        }
        let group = self.new_group(topic, Some(Arc::from(name)));
        let taken = std::mem::take(&mut *retained);
        if !taken.is_empty() {
            topic.counters.retained.fetch_sub(taken.len() as u64, Ordering::Relaxed);
            // Queued before the group is visible, so no later publish overtakes them.
            let taken: Vec<_> = taken.into_iter().collect();
            self.fan_out(topic, std::slice::from_ref(&group), &taken);
        }
        topic.add_group(Arc::clone(&group));
        group
    }

    fn new_group(&self, topic: &Topic, name: Option<Arc<str>>) -> Arc<Group> {
        topic.counters.groups.fetch_add(1, Ordering::Relaxed);
        let queue = self.store.open_queue(&topic.name, name.as_deref());
        Arc::new(Group::new(name, Arc::clone(&topic.name), Arc::clone(&topic.counters), queue))
    }

    // ---- publish ------------------------------------------------------------------------

    /// Counts a publish as in progress while the guard lives, so that a close that starts
    /// meanwhile waits for it instead of dropping what it is about to queue. Counted before the
    /// state is checked: a close that sees no publish in progress sees every later one refused.
    fn publishing(&self) -> Result<PublishInProgress<'_>> {
        self.quiesce.add_publish();
        let guard = PublishInProgress(&self.quiesce);
        self.ensure_open()?;
        Ok(guard)
    }

    fn check_message(&self, payload: &[u8], opts: &PublishOptions<'_>) -> Result<()> {
        if payload.len() > self.max_payload {
            return Err(Error::new(
                ErrorKind::PayloadTooLarge,
                format!("payload is {} bytes; this broker accepts at most {}", payload.len(), self.max_payload),
            ));
        }
        validate_json(payload, "payload")?;
        if let Some(md) = opts.metadata {
            validate_metadata(md)?;
        }
        if let Some(id) = opts.id {
            validate_id(id)?;
        }
        Ok(())
    }

    fn make_message(&self, topic: &Topic, payload: &[u8], opts: &PublishOptions<'_>) -> Message {
        let mut id_buf = [0u8; GENERATED_ID_LEN];
        let id = match opts.id {
            Some(id) => id,
            None => self.ids.next(&mut id_buf),
        };
        Message::new(&topic.name, id, payload, opts.metadata, opts.priority)
    }

    pub(crate) fn publish(&self, topic: &str, payload: &[u8], opts: &PublishOptions<'_>) -> Result<Message> {
        let _in_progress = self.publishing()?;
        validate_topic(topic)?;
        self.check_message(payload, opts)?;
        let topic = self.topic(topic);
        let message = self.make_message(&topic, payload, opts);
        self.route(&topic, std::slice::from_ref(&message), true)?;
        Ok(message)
    }

    /// Publishes every message of `batch` on `topic`, or none: all are checked first, and each
    /// group receives the whole batch under one lock, so its consumers see all or nothing.
    pub(crate) fn publish_batch(&self, topic: &str, batch: &[BatchMessage<'_>]) -> Result<Vec<Message>> {
        let _in_progress = self.publishing()?;
        validate_topic(topic)?;
        for (i, m) in batch.iter().enumerate() {
            self.check_message(m.payload, &m.options)
                .map_err(|e| Error::new(e.kind(), format!("message {i} of the batch: {}", e.message())))?;
        }
        let topic = self.topic(topic);
        let messages: Vec<_> = batch.iter().map(|m| self.make_message(&topic, m.payload, &m.options)).collect();
        self.route(&topic, &messages, true)?;
        Ok(messages)
    }

    /// Hands messages to every group of the topic, or retains them while it has none. A group
    /// whose queue is full gets the backpressure policy (blocking only where `may_block`).
    fn route(&self, topic: &Topic, messages: &[Message], may_block: bool) -> Result<()> {
        let mut groups = topic.groups();
        if groups.is_empty() {
            let mut retained = topic.retained.lock();
            // Decided under the lock that the first named group takes the retained ones with.
            groups = topic.groups();
            if groups.is_empty() {
                self.retain(topic, &mut retained, messages)?;
            }
        }
        let groups = self.admit(topic, &groups, messages.len(), may_block)?;
        topic.counters.published.fetch_add(messages.len() as u64, Ordering::Relaxed);
        for m in messages {
            self.emit(|| Event::Published(Delivery::of_published(m.clone())));
        }
        if !groups.is_empty() {
            self.fan_out(topic, &groups, messages);
        }
        Ok(())
    }

    /// The groups that take `n` more deliveries under the queue capacity. A full group waits
    /// (Block, up to the publish timeout), fails the whole publish (Fail, or Block timed out),
    /// or is left out (Drop). The capacity is a soft bound: publishers admitted at the same
    /// moment may each add their messages.
    fn admit(&self, topic: &Topic, groups: &[Arc<Group>], n: usize, may_block: bool) -> Result<Vec<Arc<Group>>> {
        let cap = self.queue_capacity;
        let full = |g: &Group| g.queue.len() + n > cap;
        if !groups.iter().any(|g| full(g)) {
            return Ok(groups.to_vec());
        }
        let refuse = |g: &Group, waited: Option<Duration>| {
            let how = waited.map_or(String::new(), |w| format!(" after waiting {} ms", w.as_millis()));
            Error::new(
                ErrorKind::Full,
                format!(
                    "the queue of group {} on topic {:?} holds {} of at most {cap} deliveries{how}",
                    g.name.as_deref().map_or("(ungrouped)".to_owned(), |n| format!("{n:?}")),
                    topic.name,
                    g.queue.len()
                ),
            )
        };
        match self.backpressure {
            Backpressure::Fail => Err(refuse(groups.iter().find(|g| full(g)).expect("one is full"), None)),
            Backpressure::Block if !may_block => {
                Err(refuse(groups.iter().find(|g| full(g)).expect("one is full"), None))
            }
            Backpressure::Block => {
                let deadline = Instant::now() + self.publish_timeout;
                for g in groups {
                    if !g.wait_for_room(n, cap, deadline, || self.state() != CLOSED) {
                        return Err(refuse(g, Some(self.publish_timeout)));
                    }
                }
                self.ensure_open()?;
                Ok(groups.to_vec())
            }
            Backpressure::Drop => Ok(groups
                .iter()
                .filter(|g| {
                    let keep = !full(g);
                    if !keep {
                        topic.counters.full_dropped.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    keep
                })
                .cloned()
                .collect()),
        }
    }

    fn retain(&self, topic: &Topic, retained: &mut VecDeque<Message>, messages: &[Message]) -> Result<()> {
        let c = &topic.counters;
        let n = messages.len();
        let limit = self.retention_limit;
        let mut discarded = 0;
        match self.retention_policy {
            RetentionPolicy::Off => {
                c.unrouted.fetch_add(n as u64, Ordering::Relaxed);
                return Ok(());
            }
            RetentionPolicy::Reject if retained.len() + n > limit => {
                return Err(Error::new(
                    ErrorKind::Full,
                    format!(
                        "topic {:?} has no consumer group and already retains {} of at most {limit} messages",
                        topic.name,
                        retained.len()
                    ),
                ));
            }
            RetentionPolicy::Reject => retained.extend(messages.iter().cloned()),
            RetentionPolicy::DropOldest => {
                retained.extend(messages.iter().cloned());
                while retained.len() > limit {
                    retained.pop_front();
                    discarded += 1;
                }
            }
            RetentionPolicy::DropNewest => {
                let room = limit.saturating_sub(retained.len()).min(n);
                retained.extend(messages[..room].iter().cloned());
                discarded = n - room;
            }
        }
        c.retained.store(retained.len() as u64, Ordering::Relaxed);
        c.retained_dropped.fetch_add(discarded as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Gives every group its own delivery of each message.
    fn fan_out(&self, topic: &Topic, groups: &[Arc<Group>], messages: &[Message]) {
        let per_group = messages.len() as u64;
        let total = per_group * groups.len() as u64;
        self.quiesce.add_deliveries(total);
        topic.counters.enqueued.fetch_add(total, Ordering::Relaxed);
        let mut next_id = self.next_delivery.fetch_add(total, Ordering::Relaxed);
        for group in groups {
            let first = next_id;
            next_id += per_group;
            let mut deliveries = messages.iter().zip(first..).map(|(m, id)| Delivery {
                message: m.clone(),
                id,
                subscription: 0,
                attempt: 1,
                group: group.name.clone(),
            });
            self.enqueue(group, &mut deliveries, messages.len());
        }
    }

    fn enqueue(&self, group: &Arc<Group>, deliveries: &mut dyn Iterator<Item = Delivery>, n: usize) {
        let queued = group.queue.push(deliveries);
        // Unsubscribe, purge and close deactivate first and drain after; checking after our
        // push means one of the two drains sees these deliveries.
        if !group.is_active() {
            self.discard_queued(group);
            return;
        }
        self.wake(group, queued, n);
    }

    /// Puts push members to work on `queued` waiting deliveries, `pushed` of them new, and
    /// wakes blocked fetchers.
    fn wake(&self, group: &Group, queued: usize, pushed: usize) {
        for _ in 0..queued.min(self.pool.size) {
            match group.claim_member() {
                Some(member) => self.pool.submit(member),
                None => break,
            }
        }
        if pushed > 1 {
            group.wake_all_fetchers();
        } else {
            group.wake_fetcher();
        }
    }

    /// Drops a group's waiting deliveries; returns how many.
    fn discard_queued(&self, group: &Group) -> u64 {
        let n = group.queue.drain().len() as u64;
        group.made_room();
        self.drop_unstarted(&group.counters, n);
        n
    }

    fn drop_unstarted(&self, c: &TopicCounters, n: u64) {
        if n > 0 {
            c.dequeued.fetch_add(n, Ordering::Relaxed);
            c.dropped.fetch_add(n, Ordering::Relaxed);
            self.quiesce.done_deliveries(n);
        }
    }

    // ---- dispatch and fetch ---------------------------------------------------------------

    fn run_worker(self: Arc<Self>) {
        reentry::enter(self.owner());
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while let Ok(task) = self.pool.rx.recv() {
            match task {
                Task::Stop => break,
                Task::Run(member) => self.serve(&member, &mut batch),
            }
        }
    }

    /// Serves a claimed member batch after batch while its queue has work, instead of going
    /// back to the pool after each batch: under load a worker stays on its subscription, and
    /// publishers find its slot taken and do not wake anyone. When the queue runs dry the
    /// worker spins briefly for more (a wake-up through the pool costs a futex round trip, far
    /// more than a message), then releases the slot. After `MAX_TURNS` batches it goes back to
    /// the pool anyway, so that other subscriptions get their turn.
    fn serve(&self, member: &Arc<Subscription>, batch: &mut Vec<Delivery>) {
        let group = &member.group;
        for _ in 0..MAX_TURNS {
            if !member.is_active() || !group.is_active() || self.state() == CLOSED {
                break;
            }
            if group.queue.len() == 0 && !spin_until(IDLE_SPIN, || group.queue.len() > 0) {
                break;
            }
            group.queue.pop_batch(member.batch_size(), batch);
            if batch.is_empty() {
                continue;
            }
            group.made_room();
            self.run_batch(member, batch);
        }
        member.release();
        let queued = group.queue.len();
        if queued > 0 && group.is_active() {
            self.wake(group, queued, 0);
        }
    }

    /// Runs the handler on each delivery of `batch` (taken from the member's group), with the
    /// counters that publishers share (join's) updated once per batch rather than per delivery.
    fn run_batch(&self, member: &Arc<Subscription>, batch: &mut Vec<Delivery>) {
        let group = &member.group;
        // join waits for a running handler even once its delivery is settled (it may ack its
        // own delivery and go on).
        self.quiesce.add_handler();
        self.workers_active.fetch_add(1, Ordering::Relaxed);
        let mut finished = 0;
        let mut rest = batch.drain(..);
        while let Some(delivery) = rest.next() {
            if !member.is_active() || self.state() == CLOSED {
                // Stopped mid-batch: give back what was taken but not started.
                let unstarted: Vec<_> = std::iter::once(delivery).chain(rest.by_ref()).collect();
                self.give_back(group, unstarted);
                break;
            }
            finished += u64::from(self.run_handler(member, delivery));
        }
        drop(rest);
        self.workers_active.fetch_sub(1, Ordering::Relaxed);
        self.quiesce.done_deliveries(finished);
        self.quiesce.done_handler();
    }

    /// Returns deliveries a member took but did not start to its group, where other members
    /// can still take them; dropped if the group or the broker is done.
    fn give_back(&self, group: &Arc<Group>, unstarted: Vec<Delivery>) {
        if group.is_active() && self.state() != CLOSED {
            let n = unstarted.len();
            self.enqueue(group, &mut unstarted.into_iter(), n);
        } else {
            self.drop_unstarted(&group.counters, unstarted.len() as u64);
        }
    }

    /// Counts a delivery as handed out and, when it must be tracked (manual ack, or an ack
    /// deadline), registers it first so that it can be settled before the hand-over finishes.
    /// (Consumer-side counters only: their cache line is not one publishers write.)
    fn hand_out(&self, group: &Arc<Group>, delivery: &Delivery, tracked: bool, policy: &Arc<DeliveryPolicy>) {
        let c = &group.counters;
        c.dequeued.fetch_add(1, Ordering::Relaxed);
        c.in_flight.fetch_add(1, Ordering::Relaxed);
        c.dispatched.fetch_add(1, Ordering::Relaxed);
        if tracked {
            self.pending.insert(PendingAck {
                delivery: delivery.clone(),
                group: Arc::downgrade(group),
                counters: Arc::clone(c),
                policy: Arc::clone(policy),
            });
            if let Some(d) = policy.ack_deadline {
                self.timer.schedule(Instant::now() + d, Job::Deadline { id: delivery.id, attempt: delivery.attempt });
            }
        }
        self.emit(|| Event::Dispatched(delivery.clone()));
    }

    /// Runs the member's handler on one delivery and settles it by the verdict unless it
    /// awaits a manual ack. Returns whether the delivery is finished (see `settle`); the
    /// caller reports finished ones to `quiesce`.
    fn run_handler(&self, member: &Arc<Subscription>, mut delivery: Delivery) -> bool {
        delivery.subscription = member.id;
        let group = &member.group;
        let tracked = member.manual_ack || member.policy.tracked();
        self.hand_out(group, &delivery, tracked, &member.policy);
        let verdict = member.handle(&delivery);
        let outcome = match verdict {
            Verdict::Later if member.manual_ack => return false,
            Verdict::Ack | Verdict::Later => Outcome::Ack,
            Verdict::Nack(r) => Outcome::Nack(r.unwrap_or(Reason::Borrowed("nacked by handler"))),
            Verdict::Requeue(r) => Outcome::Requeue(r.unwrap_or(Reason::Borrowed("requeued by handler")), None),
            Verdict::RequeueAfter(delay, r) => {
                Outcome::Requeue(r.unwrap_or(Reason::Borrowed("requeued by handler")), Some(delay))
            }
        };
        if tracked {
            // Settled here unless the handler already acked or nacked it by id, or its ack
            // deadline passed meanwhile (then it was redelivered, and this verdict is late).
            match self.pending.remove_attempt(delivery.id, delivery.attempt) {
                Some(entry) => self.settle(entry.delivery, Some(group), &entry.counters, &entry.policy, outcome),
                None => false,
            }
        } else {
            self.settle(delivery, Some(group), &group.counters, &member.policy, outcome)
        }
    }

    /// Takes up to `max` deliveries of a group on `topic` into `out`, waiting up to `timeout`
    /// for the first; the rest are what is queued at that moment. Each awaits `ack` or `nack`,
    /// under the options' ack deadline and attempt limit.
    pub(crate) fn fetch(
        &self,
        topic: &str,
        opts: &FetchOptions<'_>,
        max: usize,
        timeout: Option<Duration>,
        out: &mut Vec<Delivery>,
    ) -> Result<()> {
        self.ensure_not_closed()?;
        if max == 0 {
            return Err(Error::new(ErrorKind::InvalidArgument, "a fetch must take at least 1 delivery (max is 0)"));
        }
        validate_topic(topic)?;
        let group_name = opts.group.unwrap_or(DEFAULT_GROUP);
        validate_group(group_name)?;
        let policy = Arc::new(DeliveryPolicy::new(opts.ack_deadline, opts.max_attempts, opts.dead_letter_topic)?);
        let topic = self.topic(topic);
        let group = self.named_group(&topic, group_name);
        let deadline = timeout.map(|t| Instant::now() + t);
        let first = out.len();
        match group.take(max, out, deadline, || self.state() != CLOSED) {
            0 if self.state() == CLOSED => Err(Error::closed()),
            _ => {
                for delivery in &out[first..] {
                    self.hand_out(&group, delivery, true, &policy);
                }
                Ok(())
            }
        }
    }

    /// Settles a delivery taken out of its queue (in flight) by `outcome`. Returns whether it
    /// is finished (acked, failed, dead-lettered or dropped; not requeued): the caller then
    /// reports it to `quiesce`, so that a worker can report a whole batch at once.
    #[must_use]
    fn settle(
        &self,
        mut delivery: Delivery,
        group: Option<&Arc<Group>>,
        c: &Arc<TopicCounters>,
        policy: &DeliveryPolicy,
        outcome: Outcome,
    ) -> bool {
        c.in_flight.fetch_sub(1, Ordering::Relaxed);
        match outcome {
            Outcome::Ack => {
                c.processed.fetch_add(1, Ordering::Relaxed);
                self.emit(|| Event::Processed(delivery));
            }
            Outcome::Nack(reason) if policy.dead_letter.is_some() => self.give_up(delivery, c, policy, reason),
            Outcome::Nack(reason) => {
                c.failed.fetch_add(1, Ordering::Relaxed);
                self.emit(|| Event::Failed(delivery, reason, false));
            }
            Outcome::Requeue(reason, _) if !policy.may_retry(delivery.attempt) => {
                let reason = format!("{reason}; attempt {} of at most {}", delivery.attempt, policy.max_attempts);
                self.give_up(delivery, c, policy, reason.into())
            }
            Outcome::Requeue(reason, delay) => match group.filter(|g| g.is_active() && self.state() != CLOSED) {
                Some(group) => {
                    c.requeued.fetch_add(1, Ordering::Relaxed);
                    self.emit(|| Event::Failed(delivery.clone(), reason, true));
                    delivery.attempt += 1;
                    delivery.subscription = 0;
                    // Still outstanding: no change to the quiesce count.
                    match delay.filter(|d| !d.is_zero()) {
                        Some(d) => {
                            c.delayed.fetch_add(1, Ordering::Relaxed);
                            let job = Job::Release { group: Arc::downgrade(group), counters: Arc::clone(c), delivery };
                            self.timer.schedule(Instant::now() + d, job);
                        }
                        None => {
                            c.enqueued.fetch_add(1, Ordering::Relaxed);
                            self.enqueue(group, &mut std::iter::once(delivery), 1);
                        }
                    }
                    return false;
                }
                None => {
                    c.dropped.fetch_add(1, Ordering::Relaxed);
                    let reason = format!("{reason}; not requeued: its group is gone");
                    self.emit(|| Event::Failed(delivery, reason.into(), false));
                }
            },
        }
        true
    }

    /// `settle`, reporting a finished delivery to `quiesce` at once.
    fn settle_one(
        &self,
        delivery: Delivery,
        group: Option<&Arc<Group>>,
        c: &Arc<TopicCounters>,
        policy: &DeliveryPolicy,
        outcome: Outcome,
    ) {
        if self.settle(delivery, group, c, policy, outcome) {
            self.quiesce.done_deliveries(1);
        }
    }

    /// Gives a delivery up: counted failed, and published to the policy's dead-letter topic if
    /// it has one, with where it came from in its metadata.
    fn give_up(&self, delivery: Delivery, c: &TopicCounters, policy: &DeliveryPolicy, reason: Reason) {
        c.failed.fetch_add(1, Ordering::Relaxed);
        let reason = match &policy.dead_letter {
            None => reason,
            Some(dlq) => match self.dead_letter(dlq, &delivery, &reason) {
                Ok(()) => {
                    c.dead_lettered.fetch_add(1, Ordering::Relaxed);
                    format!("{reason}; dead-lettered to {dlq:?}").into()
                }
                Err(e) => format!("{reason}; could not dead-letter to {dlq:?}: {}", e.message()).into(),
            },
        };
        self.emit(|| Event::Failed(delivery, reason, false));
    }

    /// Publishes a given-up delivery on `topic`: the same payload and priority, and metadata
    /// that adds a "dead_letter" object (original topic, group, message id, attempts, reason).
    fn dead_letter(&self, topic: &str, d: &Delivery, reason: &str) -> Result<()> {
        self.ensure_not_closed()?;
        let mut meta: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(d.metadata()).unwrap_or_default();
        meta.insert(
            "dead_letter".into(),
            serde_json::json!({
                "topic": d.topic(),
                "group": d.group(),
                "message_id": d.parent_id(),
                "attempts": d.attempt(),
                "reason": reason,
            }),
        );
        let meta = serde_json::to_vec(&meta).expect("a JSON map serialises");
        let topic = self.topic(topic);
        let opts = PublishOptions { id: None, metadata: Some(&meta), priority: d.priority() };
        let message = self.make_message(&topic, d.payload(), &opts);
        // Never blocks: this runs on a worker or the timer thread.
        self.route(&topic, std::slice::from_ref(&message), false)
    }

    /// A timer job fell due.
    fn run_job(&self, job: Job) {
        match job {
            Job::Deadline { id, attempt } => {
                let Some(entry) = self.pending.remove_attempt(id, attempt) else { return };
                entry.counters.expired.fetch_add(1, Ordering::Relaxed);
                let ms = entry.policy.ack_deadline.map_or(0, |d| d.as_millis());
                let reason = format!("ack deadline of {ms} ms passed (attempt {attempt})");
                let group = entry.group.upgrade();
                self.settle_one(
                    entry.delivery,
                    group.as_ref(),
                    &entry.counters,
                    &entry.policy,
                    Outcome::Requeue(reason.into(), None),
                );
            }
            Job::Release { group, counters, delivery } => {
                counters.delayed.fetch_sub(1, Ordering::Relaxed);
                counters.enqueued.fetch_add(1, Ordering::Relaxed);
                match group.upgrade() {
                    Some(group) => self.enqueue(&group, &mut std::iter::once(delivery), 1),
                    None => self.drop_unstarted(&counters, 1),
                }
            }
        }
    }

    // ---- ack / nack ---------------------------------------------------------------------

    pub(crate) fn settle_by_id(&self, id: u64, outcome: Outcome) -> Result<()> {
        self.ensure_not_closed()?;
        let Some(entry) = self.pending.remove(id) else {
            return Err(if id == 0 || id >= self.next_delivery.load(Ordering::Relaxed) {
                Error::new(ErrorKind::UnknownDelivery, format!("no delivery with id {id} was ever issued"))
            } else {
                Error::new(
                    ErrorKind::AlreadySettled,
                    format!("delivery {id} is not awaiting an ack: already acked or nacked, or auto-acked"),
                )
            });
        };
        let group = entry.group.upgrade();
        self.settle_one(entry.delivery, group.as_ref(), &entry.counters, &entry.policy, outcome);
        Ok(())
    }

    /// Acks every delivery in `ids` that awaits an ack. Returns how many were acked and the
    /// first failure with its index: one bad id does not leave the others unacked.
    pub(crate) fn ack_batch(&self, ids: &[u64]) -> (usize, Option<(usize, Error)>) {
        if let Err(e) = self.ensure_not_closed() {
            return (0, Some((0, e)));
        }
        let mut acked = 0;
        let mut first_failure = None;
        for (i, &id) in ids.iter().enumerate() {
            match self.settle_by_id(id, Outcome::Ack) {
                Ok(()) => acked += 1,
                Err(e) if e.kind() == ErrorKind::Closed => return (acked, Some((i, e))),
                Err(e) => {
                    first_failure.get_or_insert((i, e));
                }
            }
        }
        (acked, first_failure)
    }

    // ---- subscriptions, groups and listeners ------------------------------------------------

    /// Subscribes `handler`. Every check runs before the handler is used, and on failure the
    /// handler comes back untouched, so a C host keeps its user_data (no finaliser runs).
    pub(crate) fn subscribe<H: Handler>(
        &self,
        topic: &str,
        handler: H,
        opts: &SubscribeOptions<'_>,
    ) -> Result<u64, (Error, H)> {
        let (concurrency, policy) = match self.check_subscribe(topic, opts) {
            Ok(checked) => checked,
            Err(e) => return Err((e, handler)),
        };
        let topic = self.topic(topic);
        let group = match opts.group {
            Some(name) => self.named_group(&topic, name),
            None => {
                let g = self.new_group(&topic, None);
                topic.add_group(Arc::clone(&g));
                g
            }
        };
        let id = self.next_subscription.fetch_add(1, Ordering::Relaxed);
        let sub = Arc::new(Subscription::new(
            id,
            Arc::clone(&group),
            Box::new(handler),
            opts.manual_ack,
            concurrency,
            policy,
        ));
        self.subscriptions.write().insert(id, Arc::clone(&sub));
        group.add_member(sub);
        topic.counters.subscriptions.fetch_add(1, Ordering::Relaxed);
        self.emit(|| Event::Subscribed(Arc::clone(&topic.name), id));
        // A named group may already hold a backlog.
        let queued = group.queue.len();
        if queued > 0 {
            self.wake(&group, queued, 0);
        }
        Ok(id)
    }

    fn check_subscribe(&self, topic: &str, opts: &SubscribeOptions<'_>) -> Result<(usize, DeliveryPolicy)> {
        self.ensure_open()?;
        validate_topic(topic)?;
        if let Some(g) = opts.group {
            validate_group(g)?;
        }
        let policy = DeliveryPolicy::new(opts.ack_deadline, opts.max_attempts, opts.dead_letter_topic)?;
        let concurrency = match opts.concurrency {
            0 => 1,
            n if n > MAX_CONCURRENCY => {
                return Err(Error::new(
                    ErrorKind::InvalidArgument,
                    format!("concurrency is {n}; the limit is {MAX_CONCURRENCY}"),
                ))
            }
            n => n,
        };
        Ok((concurrency, policy))
    }

    pub(crate) fn unsubscribe(&self, id: u64) -> Result<()> {
        self.ensure_not_closed()?;
        let Some(sub) = self.subscriptions.write().remove(&id) else {
            return Err(Error::new(ErrorKind::UnknownSubscription, format!("no subscription with id {id}")));
        };
        let group = Arc::clone(&sub.group);
        group.remove_member(id);
        sub.deactivate();
        if group.name.is_none() {
            // An ungrouped subscription's own group goes with it; a named group stays, and its
            // messages wait for the next member or fetch.
            if let Some(topic) = self.topics.get(&group.topic) {
                topic.remove_group(&group);
            }
            group.deactivate();
            self.discard_queued(&group);
            group.counters.groups.fetch_sub(1, Ordering::Relaxed);
        }
        group.counters.subscriptions.fetch_sub(1, Ordering::Relaxed);
        self.emit(|| Event::Unsubscribed(Arc::clone(&group.topic), id));
        // The handler (and its finaliser) goes when the last running invocation ends.
        drop(sub);
        Ok(())
    }

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

    // ---- count and purge ------------------------------------------------------------------

    /// The topics named (all when None) that exist; names are validated either way.
    fn select_topics(&self, names: Option<&[&str]>) -> Result<Vec<Arc<Topic>>> {
        match names {
            None => Ok(self.topics.all()),
            Some(names) => {
                for n in names {
                    validate_topic(n)?;
                }
                Ok(names.iter().filter_map(|n| self.topics.get(n)).collect())
            }
        }
    }

    /// Messages waiting on the topics (all when None): retained ones plus deliveries queued in
    /// their groups (one per group), not those in flight.
    pub(crate) fn count(&self, topics: Option<&[&str]>) -> Result<u64> {
        self.ensure_not_closed()?;
        let mut n = 0;
        for t in self.select_topics(topics)? {
            n += t.retained.lock().len() as u64;
            n += t.groups().iter().map(|g| g.queue.len() as u64).sum::<u64>();
        }
        Ok(n)
    }

    /// Discards what `count` counts; returns how many. Deliveries in flight are untouched.
    pub(crate) fn purge(&self, topics: Option<&[&str]>) -> Result<u64> {
        self.ensure_not_closed()?;
        let mut n = 0;
        for t in self.select_topics(topics)? {
            n += self.discard_retained(&t);
            for g in t.groups().iter() {
                n += self.discard_queued(g);
            }
        }
        Ok(n)
    }

    fn discard_retained(&self, t: &Topic) -> u64 {
        let mut retained = t.retained.lock();
        let n = retained.len() as u64;
        retained.clear();
        t.counters.retained.store(0, Ordering::Relaxed);
        t.counters.retained_dropped.fetch_add(n, Ordering::Relaxed);
        n
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
        if self.state.compare_exchange(OPEN, CLOSING, Ordering::SeqCst, Ordering::SeqCst).is_err() {
            return Err(Error::closed());
        }
        let drained = !force && self.quiesce.wait_idle(timeout.map(|t| Instant::now() + t));
        let remaining = self.quiesce.deliveries();
        // Deliveries a worker has taken in a batch but not started are outstanding without
        // being in a queue; they are dropped when the worker next looks. So what close drops
        // is everything outstanding except the handlers running now.
        let dropped = remaining.saturating_sub(self.workers_active.load(Ordering::SeqCst));
        let retained_discarded = self.shutdown(!drained);
        if drained && !inside {
            // Every worker is idle: this returns at once.
            self.join_threads();
        }
        Ok(match (force, drained) {
            (true, _) => CloseReport { remaining: 0, dropped, retained_discarded },
            (false, true) => CloseReport { remaining: 0, dropped: 0, retained_discarded },
            (false, false) => CloseReport { remaining, dropped: 0, retained_discarded },
        })
    }

    /// Moves to CLOSED, drops everything waiting (retained, queued, or awaiting a manual ack),
    /// wakes blocked fetchers and asks every broker thread to exit; returns how many retained
    /// messages it discarded. Handlers already running finish on their own; nothing new starts.
    fn shutdown(&self, discard_events: bool) -> u64 {
        let _guard = self.teardown.lock();
        if self.state.swap(CLOSED, Ordering::SeqCst) == CLOSED {
            return 0;
        }
        let mut retained = 0;
        for t in self.topics.all() {
            retained += self.discard_retained(&t);
            for g in t.groups().iter() {
                g.deactivate();
                self.discard_queued(g);
            }
        }
        for entry in self.pending.drain() {
            entry.counters.in_flight.fetch_sub(1, Ordering::Relaxed);
            entry.counters.dropped.fetch_add(1, Ordering::Relaxed);
            self.quiesce.done_deliveries(1);
        }
        for job in self.timer.stop() {
            if let Job::Release { counters, .. } = job {
                counters.delayed.fetch_sub(1, Ordering::Relaxed);
                counters.dropped.fetch_add(1, Ordering::Relaxed);
                self.quiesce.done_deliveries(1);
            }
        }
        self.listeners.stop(discard_events);
        self.pool.stop();
        retained
    }

    fn join_threads(&self) {
        self.pool.join();
        if let Some(t) = self.timer_thread.lock().take() {
            let _ = t.join();
        }
        self.listeners.join();
    }

    /// Final teardown when the last handle goes: afterwards no handler, listener or finaliser
    /// of this broker runs again. From one of the broker's own threads it cannot wait for
    /// itself, so a reaper thread finishes the job once that callback returns.
    pub(crate) fn teardown(self: Arc<Self>) {
        self.shutdown(true);
        if reentry::is_inside(self.owner()) {
            let _ = std::thread::Builder::new().name("brokk-reaper".into()).spawn(move || self.finish_teardown());
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
        // Groups and their members refer to each other; break that here.
        let groups: Vec<_> = topics.iter().flat_map(|t| t.clear_groups().to_vec()).collect();
        let members: Vec<_> = groups.iter().flat_map(|g| g.clear_members().to_vec()).collect();
        // Finalisers of handlers and listeners run here, on this thread.
        drop(members);
        drop(subs);
        drop(groups);
        drop(topics);
        self.listeners.clear(&self.quiesce);
    }
}

/// A publish in progress (see `Shared::publishing`).
struct PublishInProgress<'a>(&'a Quiesce);

impl Drop for PublishInProgress<'_> {
    fn drop(&mut self) {
        self.0.done_publish();
    }
}

fn validate_json(bytes: &[u8], what: &str) -> Result<()> {
    crate::json::validate(bytes)
        .map_err(|e| Error::new(ErrorKind::InvalidJson, format!("{what} is not valid JSON: {e}")))
}

fn validate_metadata(bytes: &[u8]) -> Result<()> {
    validate_json(bytes, "metadata")?;
    if !crate::json::is_object(bytes) {
        return Err(Error::new(ErrorKind::InvalidJson, "metadata must be a JSON object"));
    }
    Ok(())
}

/// Spins (yielding the CPU now and then) until `ready()` or for about `budget`; returns whether
/// it became ready. Time is read only every few rounds: the clock costs more than a check.
fn spin_until(budget: Duration, ready: impl Fn() -> bool) -> bool {
    let start = Instant::now();
    loop {
        for round in 0..64 {
            if ready() {
                return true;
            }
            if round % 16 == 15 {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
        if start.elapsed() >= budget {
            return ready();
        }
    }
}
