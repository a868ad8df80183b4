//! The state every broker thread shares, and the decisions made on it. The decisions live in
//! the child modules, one job each: `publish` (checks, retention and fan-out through the
//! store, backpressure, waking consumers), `dispatch` (push workers and pull fetches),
//! `settle` (ack, nack, requeue, dead letters, timer jobs) and `lifecycle` (subscriptions,
//! count and purge, stats, join, close and teardown).
//!
//! **Accounting for join and close.** `quiesce` counts the deliveries this broker must see
//! finished. With an in-process store (memory) that is every delivery from the moment it is
//! queued until it is settled: nothing else can take it. With a shared store (SQLite) another
//! process may take what this one published, or publish into a group this one consumes, so
//! `quiesce` counts only the deliveries this broker holds (claimed, not settled), and join and
//! close also ask the store what waits in this broker's groups (`wait_idle`). The helpers
//! `queued`, `unqueued`, `claiming`, `claimed`, `took` and `returned` apply that rule; they are
//! the only place where it differs. The counters and events of each step are `count`'s.

mod count;
mod dispatch;
mod lifecycle;
mod peek;
mod publish;
mod ready;
mod settle;
mod view;
mod watch;

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::sync::{Mutex, RwLock};

use super::fork::Birth;
use super::group::Group;
use super::ids::{DeliveryIds, IdGenerator};
use super::pending::PendingAcks;
use super::policy::DeliveryPolicy;
use super::poller::Poller;
use super::quiesce::Quiesce;
use super::reentry;
use super::subscription::Subscription;
use super::timer::Timer;
use super::topics::{Topic, Topics};
use super::workers::Pool;
use crate::config::{Backpressure, BrokerConfig, RetentionPolicy, DEFAULT_PUBLISH_TIMEOUT};
use crate::error::{Error, ErrorKind, Result};
use crate::listener::{Event, ListenerHub};
use crate::log::Log;
use crate::stats::TopicCounters;
use crate::store::{Capabilities, GroupQueue, Retention, Store, StoreKind};

pub(crate) use settle::Outcome;

const OPEN: u8 = 0;
/// `close` is waiting: publish and subscribe are refused; deliveries, fetches and acks go on.
const CLOSING: u8 = 1;
const CLOSED: u8 = 2;

/// The group a fetch without a group name uses: pull consumers of a topic compete by default,
/// as pynenc's workers do on a queue.
pub const DEFAULT_GROUP: &str = "default";

pub(crate) struct Shared {
    max_payload: usize,
    retention: Retention,
    queue_capacity: usize,
    backpressure: Backpressure,
    publish_timeout: Duration,
    timer: Arc<Timer>,
    timer_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    store: Box<dyn Store>,
    /// `store.kind() == InProcess`, read on every publish and claim.
    in_process: bool,
    /// What the store does by itself; the core emulates or refuses the rest.
    capabilities: Capabilities,
    /// Watches a shared store for changes by other processes (None for memory).
    poller: Option<Poller>,
    topics: Topics,
    subscriptions: RwLock<std::collections::HashMap<u64, Arc<Subscription>>>,
    pending: PendingAcks,
    /// The policy of a fetch with no deadline, attempt limit or dead-letter topic.
    plain_policy: Arc<DeliveryPolicy>,
    listeners: Arc<ListenerHub>,
    quiesce: Arc<Quiesce>,
    pool: Pool,
    ids: IdGenerator,
    /// The process (and fork count) that made this broker.
    birth: Birth,
    /// Turns store keys into this broker's delivery ids (see `ids`).
    delivery_ids: DeliveryIds,
    next_subscription: AtomicU64,
    next_listener: AtomicU64,
    state: AtomicU8,
    workers_active: AtomicU64,
    started: Instant,
    /// Serialises teardown steps that must not interleave (shutdown, thread joins, clearing).
    teardown: Mutex<()>,
    /// Where this broker's records go (its own sink, else the process-wide one); its store and
    /// listener hub hold clones.
    log: Log,
}

fn retention(config: &BrokerConfig) -> Retention {
    let limit = config.resolved_retention_limit();
    match config.retention_policy {
        RetentionPolicy::Reject => Retention::Reject(limit),
        RetentionPolicy::DropOldest => Retention::DropOldest(limit),
        RetentionPolicy::DropNewest => Retention::DropNewest(limit),
        RetentionPolicy::Off => Retention::Off,
    }
}

impl Shared {
    pub(crate) fn start(config: &BrokerConfig) -> Result<Arc<Shared>> {
        config.resolved_workers()?;
        config.resolved_max_payload()?;
        config.resolved_listener_queue()?;
        config.backend.check()?;
        // Last of the checks: opening a store may create its file.
        let log = Log::default();
        let store = config.backend.open_logged(&log)?;
        Shared::start_on(config, store, log)
    }

    /// `start` on a store already open (the core's tests give it stores that declare less).
    pub(crate) fn start_on(config: &BrokerConfig, store: Box<dyn Store>, log: Log) -> Result<Arc<Shared>> {
        let workers = config.resolved_workers()?;
        let max_payload = config.resolved_max_payload()?;
        let listener_queue = config.resolved_listener_queue()?;
        let watch = store.watch();
        let shared = Arc::new(Shared {
            max_payload,
            retention: retention(config),
            queue_capacity: config.resolved_queue_capacity(),
            backpressure: config.backpressure,
            publish_timeout: config.publish_timeout.unwrap_or(DEFAULT_PUBLISH_TIMEOUT),
            timer: Arc::new(Timer::default()),
            timer_thread: Mutex::new(None),
            in_process: store.kind() == StoreKind::InProcess,
            capabilities: store.capabilities(),
            store,
            poller: watch.map(Poller::new),
            topics: Topics::default(),
            subscriptions: RwLock::default(),
            pending: PendingAcks::new(),
            plain_policy: Arc::default(),
            listeners: Arc::new(ListenerHub::new(listener_queue, log.clone())),
            quiesce: Arc::new(Quiesce::default()),
            pool: Pool::new(workers),
            ids: IdGenerator::new(),
            birth: Birth::now(),
            delivery_ids: DeliveryIds::new(),
            next_subscription: AtomicU64::new(1),
            next_listener: AtomicU64::new(1),
            state: AtomicU8::new(OPEN),
            workers_active: AtomicU64::new(0),
            started: Instant::now(),
            teardown: Mutex::new(()),
            log,
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
            if let Some(poller) = &shared.poller {
                shared.store.set_waker(poller.waker());
                let s = Arc::clone(&shared);
                poller.start(move || s.run_poller())?;
            }
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

    pub(crate) fn log(&self) -> &Log {
        &self.log
    }

    pub(crate) fn birth(&self) -> &Birth {
        &self.birth
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

    // ---- accounting (see the module doc) -------------------------------------------------------

    /// `n` deliveries are about to be queued in this broker's groups.
    fn queued(&self, n: u64) {
        if self.in_process && n > 0 {
            self.quiesce.add_deliveries(n);
        }
    }

    /// `n` queued deliveries left the queues without being claimed (discarded, or a publish
    /// that failed after `queued`).
    fn unqueued(&self, n: u64) {
        if self.in_process {
            self.quiesce.done_deliveries(n);
        }
    }

    /// A claim of up to `max` is about to run. Counted before the claim, so that a join never
    /// sees a delivery neither waiting in the store nor held.
    fn claiming(&self, max: usize) {
        if !self.in_process && max > 0 {
            self.quiesce.add_claims(max as u64);
        }
    }

    /// The claim that `claiming(max)` announced took `got`: held now. (Counted held before the
    /// claim stops counting, so that join never sees both at zero while they exist.)
    fn claimed(&self, max: usize, got: usize) {
        if !self.in_process && max > 0 {
            self.quiesce.add_deliveries(got as u64);
            self.quiesce.done_claims(max as u64);
        }
    }

    /// The take (a claim and its settle in one store call) that `claiming(1)` announced is
    /// done; `got` says whether it took a delivery. In a shared store the claim is over (what
    /// it took is settled, held by nobody); in process a delivery taken is finished.
    fn took(&self, got: bool) {
        if !self.in_process {
            self.quiesce.done_claims(1);
        } else if got {
            self.quiesce.done_deliveries(1);
        }
    }

    /// Whether a requeued delivery is finished for this broker: in a shared store it is back
    /// with everyone's, no longer held here; in process it is still this broker's to finish.
    fn returned(&self) -> bool {
        !self.in_process
    }

    // ---- topics and groups ------------------------------------------------------------------

    #[inline]
    fn topic(&self, name: &str) -> Result<Arc<Topic>> {
        match self.topics.get(name) {
            Some(topic) => Ok(topic),
            None => self.new_topic(name),
        }
    }

    #[cold]
    fn new_topic(&self, name: &str) -> Result<Arc<Topic>> {
        let (topic, created) = self.topics.get_or_create(name, |name| self.store.topic(name))?;
        if created {
            self.emit(|| Event::TopicCreated(Arc::clone(&topic.name)));
        }
        Ok(topic)
    }

    /// The named group `name` of `topic`, registered in the store if new. The first named
    /// group of a topic takes over the messages the topic retained while it had no group.
    fn named_group(&self, topic: &Topic, name: &str) -> Result<Arc<Group>> {
        if let Some(g) = topic.named_group(name) {
            return Ok(g);
        }
        // Group changes are ordered with publishes that find no group (see `route`).
        let _order = topic.order.lock();
        if let Some(g) = topic.named_group(name) {
            return Ok(g);
        }
        let opened = topic.store.open_group(Some(name))?;
        let group = self.new_group(topic, Some(name), opened.queue);
        if opened.taken_over > 0 {
            // Queued by the store before the group is visible: no consumer has them yet.
            let c = &topic.counters;
            c.retained.store(0, Ordering::Relaxed);
            c.enqueued.fetch_add(opened.taken_over, Ordering::Relaxed);
            self.queued(opened.taken_over);
        }
        topic.add_group(Arc::clone(&group));
        Ok(group)
    }

    /// A new anonymous group of `topic`, for one ungrouped subscription.
    fn anonymous_group(&self, topic: &Topic) -> Result<Arc<Group>> {
        let _order = topic.order.lock();
        let opened = topic.store.open_group(None)?;
        let group = self.new_group(topic, None, opened.queue);
        topic.add_group(Arc::clone(&group));
        Ok(group)
    }

    fn new_group(&self, topic: &Topic, name: Option<&str>, queue: Arc<dyn GroupQueue>) -> Arc<Group> {
        topic.counters.groups.fetch_add(1, Ordering::Relaxed);
        Arc::new(Group::new(name.map(Arc::from), Arc::clone(&topic.name), Arc::clone(&topic.counters), queue))
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
        group.notify_ready(pushed.max(1));
    }

    /// Drops deliveries taken out of a group's queue (or discarded from it) unstarted.
    fn drop_unstarted(&self, c: &TopicCounters, n: u64) {
        if n > 0 {
            c.dequeued.fetch_add(n, Ordering::Relaxed);
            c.dropped.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Discards what waits in a group that is done (unsubscribed, or the broker closing), when
    /// it lives only in this process; returns how many.
    fn discard_queued(&self, group: &Group) -> u64 {
        let n = group.queue.discard();
        group.made_room();
        self.drop_unstarted(&group.counters, n);
        self.unqueued(n);
        n
    }

    /// Pokes the poller (if any): a consumer or a blocked publisher started waiting.
    fn poke_poller(&self) {
        if let Some(p) = &self.poller {
            p.poke();
        }
    }
}

/// A publish in progress (see `Shared::publishing`).
struct PublishInProgress<'a>(&'a Quiesce);

impl Drop for PublishInProgress<'_> {
    fn drop(&mut self) {
        self.0.done_publish();
    }
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
