//! The broker: the safe Rust API that the C ABI (and every binding above it) calls.

#[cfg(test)]
mod emulation_tests;
mod fork;
mod group;
mod ids;
mod pending;
mod policy;
mod poller;
pub(crate) mod quiesce;
mod ready;
pub(crate) mod reentry;
mod shared;
mod subscription;
mod timer;
mod topics;
mod workers;

use std::sync::{Arc, Weak};
use std::time::Duration;

pub(crate) use fork::note_fork;
pub use ids::GENERATED_ID_LEN;
pub use ready::{Readiness, ReadyWait};
pub use shared::DEFAULT_GROUP;
pub use subscription::panic_text as panic_message;
pub use subscription::MAX_CONCURRENCY;

use crate::cancel::{Cancel, Interrupt};
use crate::config::BrokerConfig;
use crate::error::{Error, Result};
use crate::handler::{Handler, Reason};
use crate::listener::Listener;
use crate::message::{Delivery, Message, Peeked};
use crate::stats::BrokerStats;
use shared::{Outcome, Shared};

/// The most deliveries one `Broker::peek` shows.
pub const MAX_PEEK: usize = 10_000;

/// Options of one publish. `Default` gives a generated id, no metadata and priority 0.
#[derive(Debug, Clone, Copy, Default)]
pub struct PublishOptions<'a> {
    /// The message id; generated when `None`. The broker does not check it for uniqueness.
    pub id: Option<&'a str>,
    /// A JSON object stored with the message; `{}` when `None`.
    pub metadata: Option<&'a [u8]>,
    /// Any `i32`; higher is delivered first, FIFO among equals.
    pub priority: i32,
}

/// One message of a batch publish.
#[derive(Debug, Clone, Copy, Default)]
pub struct BatchMessage<'a> {
    pub payload: &'a [u8],
    pub options: PublishOptions<'a>,
}

/// Options of one subscription. `Default` gives auto-ack, concurrency 1 and no group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscribeOptions<'a> {
    /// When set, a handler's `Verdict::Later` leaves the delivery awaiting `ack`/`nack`.
    pub manual_ack: bool,
    /// Handler invocations that may run at once for this subscription, 1..=1024 (0 means 1).
    /// With 1, deliveries are handled strictly in order.
    pub concurrency: usize,
    /// A consumer group to join: its members (subscriptions and fetchers) compete for its
    /// messages. None: the subscription gets its own copy of every message.
    pub group: Option<&'a str>,
    /// A delivery not acked or nacked this long after it was handed to the handler is taken
    /// back and redelivered (attempt + 1), even while the handler still runs; listeners hear a
    /// failure with the deadline as reason. None: no deadline.
    pub ack_deadline: Option<Duration>,
    /// Attempts before a delivery is given up instead of requeued (0: no limit).
    pub max_attempts: u32,
    /// Where given-up and nacked deliveries are published, with a "dead_letter" object (original
    /// topic, group, message id, attempts, reason) added to their metadata. None: they are
    /// dropped, counted failed.
    pub dead_letter_topic: Option<&'a str>,
}

impl Default for SubscribeOptions<'_> {
    fn default() -> Self {
        SubscribeOptions {
            manual_ack: false,
            concurrency: 1,
            group: None,
            ack_deadline: None,
            max_attempts: 0,
            dead_letter_topic: None,
        }
    }
}

/// Options of one fetch. `Default` gives the default group and no deadline or attempt limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FetchOptions<'a> {
    /// The consumer group to take from; `DEFAULT_GROUP` when None.
    pub group: Option<&'a str>,
    /// As for subscriptions: not settled within this, the delivery is redelivered.
    pub ack_deadline: Option<Duration>,
    /// As for subscriptions.
    pub max_attempts: u32,
    /// As for subscriptions.
    pub dead_letter_topic: Option<&'a str>,
}

/// What `take` found.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Taken {
    /// The next delivery, already acknowledged: it is gone from its group.
    Message(Delivery),
    /// Nothing came in time.
    Empty,
    /// The next delivery's payload has this many bytes, over the caller's limit: it was left
    /// where it is, for a take with room for it (or a fetch).
    TooLarge(usize),
}

/// What a `close` did. The broker is closed whatever the report says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CloseReport {
    /// Deliveries still unfinished when the timeout ran out (0 if everything finished in
    /// time, and for a forced close); they were dropped, or are handlers finishing on their own.
    /// (A SQLite store keeps those of named groups in the file.)
    pub remaining: u64,
    /// Deliveries a forced close dropped: queued ones and those awaiting a manual ack. Handlers
    /// running at that moment are not counted; they finish on their own. (A SQLite store drops
    /// only what this broker's ungrouped subscriptions had waiting; what it held goes back to
    /// the file with attempt + 1.)
    pub dropped: u64,
    /// Messages that topics retained for want of a consumer group, discarded by the close (0
    /// on a SQLite store, which keeps them).
    pub retained_discarded: u64,
}

/// A message broker. Its store is in this process (memory, the default) or a SQLite file that
/// several processes share (see `Broker::open`). Cloning gives another handle to the same
/// broker; when the
/// last handle is dropped the broker is torn down: it is closed with force, its threads are
/// joined, and every handler and listener (with whatever it owns) is dropped, so nothing of it
/// runs afterwards. Dropping it from inside one of its own handlers finishes that teardown on
/// another thread once the handler returns.
///
/// Handlers that need the broker should hold a [`WeakBroker`]: a strong handle inside a handler
/// keeps the broker alive forever.
#[derive(Clone)]
pub struct Broker {
    inner: Arc<Handle>,
}

/// A handle that does not keep the broker alive.
#[derive(Clone)]
pub struct WeakBroker {
    inner: Weak<Handle>,
}

struct Handle {
    shared: Arc<Shared>,
    /// Set by `release`: the last drop tears down on a brokk thread instead of waiting here.
    detached: std::sync::atomic::AtomicBool,
}

impl Drop for Handle {
    fn drop(&mut self) {
        if self.shared.birth().elsewhere() {
            // A forked child's copy of its parent's broker: release nothing (see `fork`). One
            // reference more than there are handles keeps the copy from ever being dropped.
            fork::keep(Arc::clone(&self.shared) as Arc<dyn std::any::Any + Send + Sync>);
            return;
        }
        let shared = Arc::clone(&self.shared);
        if self.detached.load(std::sync::atomic::Ordering::Acquire) {
            shared.teardown_detached();
        } else {
            shared.teardown();
        }
    }
}

impl Broker {
    /// A broker on the memory backend with default settings.
    pub fn new() -> Result<Broker> {
        Broker::with_config(&BrokerConfig::default())
    }

    /// A broker on the backend `url` names: `memory://`, or `sqlite:///path/to/file.db` (also
    /// `sqlite://relative/path.db`) with optional `?synchronous=normal|full&busy_timeout_ms=N
    /// &lease_ms=N` (see `SqliteConfig`).
    ///
    /// On SQLite, several brokers (in one process or many) share the file: members of a named
    /// group compete across them, each group gets every message any of them publishes, and an
    /// ungrouped subscription gets every message published on its topic while it exists. What
    /// a broker claims is leased to it: until its ack deadline, or (none) for `lease_ms`,
    /// renewed every third of that while the broker lives; so only a broker that stopped loses
    /// its deliveries to others, with attempt + 1. A broker sees other processes' work within
    /// a few milliseconds: it watches the file for changes every 5 ms while it has consumers.
    /// Every call that reads or writes the file may fail with `Unavailable` (locked by another
    /// process past the busy timeout) or `StorageFailed`, and then changes nothing.
    pub fn open(url: &str) -> Result<Broker> {
        Broker::with_config(&BrokerConfig::from_url(url)?)
    }

    pub fn with_config(config: &BrokerConfig) -> Result<Broker> {
        Ok(Broker::on(Shared::start(config)?))
    }

    /// A broker on a store the caller opened: for the core's tests of stores that declare less
    /// than everything (`store::Capabilities`).
    #[cfg(test)]
    pub(crate) fn with_store(config: &BrokerConfig, store: Box<dyn crate::store::Store>) -> Result<Broker> {
        Ok(Broker::on(Shared::start_on(config, store, crate::log::Log::default())?))
    }

    fn on(shared: Arc<Shared>) -> Broker {
        Broker { inner: Arc::new(Handle { shared, detached: std::sync::atomic::AtomicBool::new(false) }) }
    }

    /// The broker's state, for a call: refused in a process forked from the one that made it
    /// (see `fork`).
    #[inline]
    fn shared(&self) -> Result<&Shared> {
        self.inner.shared.birth().check()?;
        Ok(&self.inner.shared)
    }

    pub fn downgrade(&self) -> WeakBroker {
        WeakBroker { inner: Arc::downgrade(&self.inner) }
    }

    /// Publishes `payload` (a JSON document) on `topic`. Every group of the topic gets its own
    /// delivery (an ungrouped subscription is a group of one); with none, the topic retains
    /// the message for its first named group, as the retention policy allows. Returns the
    /// published message, whose `id()` is the given or generated id.
    pub fn publish(&self, topic: &str, payload: &[u8], options: &PublishOptions<'_>) -> Result<Message> {
        self.shared()?.publish(topic, payload, options)
    }

    /// Publishes a batch on one topic, all or nothing: every message is checked before any is
    /// published, and each group receives the whole batch at once.
    pub fn publish_batch(&self, topic: &str, batch: &[BatchMessage<'_>]) -> Result<Vec<Message>> {
        self.shared()?.publish_batch(topic, batch)
    }

    /// Subscribes `handler` to `topic` and returns the subscription id. The handler is dropped
    /// once the subscription is gone and its last running invocation has returned.
    pub fn subscribe(&self, topic: &str, handler: impl Handler, options: &SubscribeOptions<'_>) -> Result<u64> {
        self.shared()?.subscribe(topic, handler, options).map_err(|(e, _)| e)
    }

    /// Like `subscribe`, but a failure hands the handler back unused (the FFI layer relies on
    /// this so that a failed subscribe never runs the host's finaliser).
    pub fn try_subscribe<H: Handler>(
        &self,
        topic: &str,
        handler: H,
        options: &SubscribeOptions<'_>,
    ) -> Result<u64, (crate::Error, H)> {
        match self.shared() {
            Ok(shared) => shared.subscribe(topic, handler, options),
            Err(e) => Err((e, handler)),
        }
    }

    /// Stops delivery to a subscription: no new handler invocation starts; invocations already
    /// running finish. An ungrouped subscription's waiting deliveries are dropped; a named
    /// group keeps its messages for its other members, or the next one. Deliveries it left
    /// awaiting an ack can still be acked or nacked (a requeue into a dropped group drops them).
    pub fn unsubscribe(&self, subscription: u64) -> Result<()> {
        self.shared()?.unsubscribe(subscription)
    }

    /// Takes the next delivery of `group` (`DEFAULT_GROUP` when None) on `topic`: highest
    /// priority first, FIFO within one. Waits up to `timeout` (None: no limit; zero: not at
    /// all) and returns None if nothing came. The delivery awaits `ack` or `nack`.
    pub fn fetch(&self, topic: &str, group: Option<&str>, timeout: Option<Duration>) -> Result<Option<Delivery>> {
        self.fetch_with(topic, &FetchOptions { group, ..Default::default() }, timeout)
    }

    /// `fetch` with an ack deadline, attempt limit or dead-letter topic.
    pub fn fetch_with(
        &self,
        topic: &str,
        options: &FetchOptions<'_>,
        timeout: Option<Duration>,
    ) -> Result<Option<Delivery>> {
        let mut out = Vec::with_capacity(1);
        self.shared()?.fetch(topic, options, 1, timeout, Interrupt::default(), &mut out)?;
        Ok(out.pop())
    }

    /// Takes up to `max` deliveries at once: waits up to `timeout` for the first, then takes
    /// what is queued at that moment, in order. Each awaits `ack` or `nack` as with `fetch`.
    /// An empty vector: none came in time.
    pub fn fetch_batch(
        &self,
        topic: &str,
        options: &FetchOptions<'_>,
        max: usize,
        timeout: Option<Duration>,
    ) -> Result<Vec<Delivery>> {
        self.fetch_batch_until(topic, options, max, timeout, None)
    }

    /// `fetch_batch` that `cancel` can interrupt from another thread while it waits: it then
    /// fails with `ErrorKind::Cancelled`, having taken nothing. A token already cancelled makes
    /// it fail at once.
    pub fn fetch_batch_until(
        &self,
        topic: &str,
        options: &FetchOptions<'_>,
        max: usize,
        timeout: Option<Duration>,
        cancel: Option<&Cancel>,
    ) -> Result<Vec<Delivery>> {
        let mut out = Vec::with_capacity(max.min(1024));
        self.shared()?.fetch(topic, options, max, timeout, Interrupt::new(cancel), &mut out)?;
        Ok(out)
    }

    /// Takes the next delivery of `group` (`DEFAULT_GROUP` when None) on `topic` and acks it in
    /// the same step, as `fetch` then `ack` would, but in one store operation (one commit on
    /// SQLite): at most once, for consumers that keep no delivery open (pynenc's retrieve).
    /// Waits up to `timeout` as `fetch` does. Listeners hear it dispatched, then processed.
    /// A payload over `max_payload` bytes is not taken (`Taken::TooLarge`).
    pub fn take(
        &self,
        topic: &str,
        group: Option<&str>,
        timeout: Option<Duration>,
        max_payload: usize,
    ) -> Result<Taken> {
        self.shared()?.take(topic, group, timeout, Interrupt::default(), max_payload)
    }

    /// `take` of a payload of any size, that `cancel` can interrupt from another thread while
    /// it waits (`ErrorKind::Cancelled`, nothing taken). Returns None if nothing came in time.
    pub fn take_until(
        &self,
        topic: &str,
        group: Option<&str>,
        timeout: Option<Duration>,
        cancel: Option<&Cancel>,
    ) -> Result<Option<Delivery>> {
        match self.shared()?.take(topic, group, timeout, Interrupt::new(cancel), usize::MAX)? {
            Taken::Message(delivery) => Ok(Some(delivery)),
            Taken::Empty => Ok(None),
            // No payload is over usize::MAX bytes.
            Taken::TooLarge(size) => unreachable!("a payload of {size} bytes is over usize::MAX"),
        }
    }

    /// The next `max` deliveries (1 to `MAX_PEEK`) that a fetch of `group` (`DEFAULT_GROUP`
    /// when None) on `topic` would get, in the order it would get them (highest priority
    /// first, FIFO within one), without taking them: nothing is claimed or leased, no attempt
    /// is counted, and no counter or listener event changes. Left out: deliveries in flight
    /// (handed out, or claimed by a push worker, and not settled; on SQLite and Redis also those
    /// whose lease ran out, until a fetch in some process takes them back) and requeues whose
    /// delay has not run out. Peek creates no group or topic. A group that does not exist yet
    /// shows what a fetch that made it now would get: while the topic has no named group, the
    /// messages it retains (the first named group takes them over), by priority then publish
    /// order, at attempt 1; otherwise nothing. On SQLite and Redis this reads the store,
    /// whichever process published or consumes; what it shows may be taken by anyone a moment
    /// later.
    pub fn peek(&self, topic: &str, group: Option<&str>, max: usize) -> Result<Vec<Peeked>> {
        self.shared()?.peek(topic, group, max)
    }

    /// Every topic the store holds, with what it retains and, per consumer group, how many
    /// deliveries are ready, delayed and in flight, read from the store without changing
    /// anything (no topic or group is created, nothing is claimed, no counter or event
    /// changes). On SQLite and Redis this is the whole file or prefix, whichever process made
    /// the topics and groups; on memory, this broker's topics. See `StoreView` and
    /// docs/semantics.md ("Store view").
    pub fn store_view(&self) -> Result<crate::StoreView> {
        self.shared()?.store_view()
    }

    /// Asks to be told, through `notify`, when `group` (`DEFAULT_GROUP` when None) on `topic`
    /// may have a delivery to claim: for a consumer that must not block a thread while it waits
    /// (an event loop), which then fetches with a zero timeout, and arms again if that found
    /// nothing (a wake-up may be spurious: another consumer may have been faster). Creates the
    /// topic and the group if new, as a fetch does, and counts as a waiting consumer of it (on
    /// a shared store the poller watches the group for other processes' work).
    ///
    /// `ReadyWait::Now` when the answer is known at once: a delivery is queued (`Ready`) or the
    /// broker is closed (`Closed`); `notify` is then dropped unrun. Otherwise `Armed(id)`:
    /// `notify` runs exactly once, with `Ready` when a delivery may be ready or `Closed` when
    /// the broker closes, unless `forget_ready(.., id)` removes it first. It runs with no brokk
    /// lock held, on the thread that made the delivery available (a publisher, the poller, the
    /// timer, the thread that closes or drops the broker), so it must be quick: hand the fetch
    /// to the consumer, do not fetch there. Like blocked fetchers, waiters are woken one per
    /// delivery, oldest first.
    pub fn when_ready(
        &self,
        topic: &str,
        group: Option<&str>,
        notify: impl FnOnce(Readiness) + Send + 'static,
    ) -> Result<ReadyWait> {
        self.shared()?.when_ready(topic, group, Box::new(notify))
    }

    /// Removes readiness waiter `waiter` of `group` on `topic` (as given to `when_ready`).
    /// Returns false if it was still armed: its closure is dropped unrun. Returns true if it
    /// had fired (or is unknown there): its closure has then returned, unless this is called
    /// from inside that very closure; and, since a waiter that fired may have been the one told
    /// of a delivery, its notification is handed on to the next armed waiter of the group, so
    /// that a consumer that gives up after being told does not leave a delivery unannounced.
    pub fn forget_ready(&self, topic: &str, group: Option<&str>, waiter: u64) -> Result<bool> {
        self.shared()?.forget_ready(topic, group, waiter)
    }

    /// Acks a delivery awaiting a manual ack.
    pub fn ack(&self, delivery: u64) -> Result<()> {
        self.shared()?.settle_by_id(delivery, Outcome::Ack)
    }

    /// Acks every delivery of `ids` that awaits an ack, in order. Returns how many were acked;
    /// if one failed, the first failure and its index (the others were still acked). A closed
    /// broker stops the batch there.
    pub fn ack_batch(&self, ids: &[u64]) -> (usize, Option<(usize, Error)>) {
        match self.shared() {
            Ok(shared) => shared.ack_batch(ids),
            Err(e) => (0, Some((0, e))),
        }
    }

    /// Nacks a delivery awaiting a manual ack: dropped and counted failed (or dead-lettered,
    /// if its policy names a topic), or with `requeue` delivered again with attempt + 1, after
    /// `delay` if given, unless its attempt limit is reached. `reason` goes to listeners.
    pub fn nack(&self, delivery: u64, requeue: bool, delay: Option<Duration>, reason: Option<Reason>) -> Result<()> {
        let outcome = if requeue {
            Outcome::Requeue(reason.unwrap_or(Reason::Borrowed("nacked with requeue")), delay)
        } else {
            Outcome::Nack(reason.unwrap_or(Reason::Borrowed("nacked")))
        };
        self.shared()?.settle_by_id(delivery, outcome)
    }

    /// Messages waiting on `topics` (all when None): retained ones plus deliveries queued in
    /// groups, one per group; deliveries in flight are not counted. Unknown topics count 0.
    /// On SQLite this counts the whole file, whichever process published or consumes.
    pub fn count(&self, topics: Option<&[&str]>) -> Result<u64> {
        self.shared()?.count(topics)
    }

    /// Discards what `count` counts and returns how many; deliveries in flight are untouched.
    /// On SQLite this purges the whole file, other processes' groups included.
    pub fn purge(&self, topics: Option<&[&str]>) -> Result<u64> {
        self.shared()?.purge(topics)
    }

    /// Adds a listener; it sees every event that happens after this returns.
    pub fn add_listener(&self, listener: impl Listener) -> Result<u64> {
        self.shared()?.add_listener(listener).map_err(|(e, _)| e)
    }

    /// Like `add_listener`, but a failure hands the listener back unused.
    pub fn try_add_listener<L: Listener>(&self, listener: L) -> Result<u64, (crate::Error, L)> {
        match self.shared() {
            Ok(shared) => shared.add_listener(listener),
            Err(e) => Err((e, listener)),
        }
    }

    /// Removes a listener: a call of it in progress finishes (this does not wait for it), and
    /// none starts after this returns.
    pub fn remove_listener(&self, listener: u64) -> Result<()> {
        self.shared()?.remove_listener(listener)
    }

    /// Ready deliveries of the named consumer group `group` of `topic`: what a fetch of the
    /// group could take now, its share of what `count` counts (so `count` of a topic is what it
    /// retains plus `count_group` of each of its groups). Like `count`, it leaves out the
    /// group's deliveries in flight and its delayed requeues (until they are due and a claim
    /// promotes them). A group or topic that does not exist counts 0 and is not created (as
    /// `peek`). On SQLite and Redis this reads the store, whichever process published or
    /// consumes. Errors: InvalidTopic, InvalidGroup, Closed, or the store's.
    pub fn count_group(&self, topic: &str, group: &str) -> Result<u64> {
        self.shared()?.count_group(topic, group)
    }

    /// Discards what `count_group` counts, atomically, and returns how many. Deliveries of the
    /// group in flight are untouched (they settle as usual), and so are its delayed requeues,
    /// its other groups, the messages the topic retains and the group itself (it stays, and
    /// receives what is published next). Counted as `purge` counts (`dequeued` and `dropped` of
    /// the topic, on the broker that purges, if it has used the topic), and a join no longer
    /// waits for what was discarded. A group that does not exist purges 0 and is not created.
    /// On SQLite and Redis this purges the group in the store, whichever process published or
    /// consumes.
    pub fn purge_group(&self, topic: &str, group: &str) -> Result<u64> {
        self.shared()?.purge_group(topic, group)
    }

    /// This broker's counters. On SQLite, the `queued` and `retained` gauges are the file's
    /// (every process's groups); the counters and the other gauges are this broker's own.
    pub fn stats(&self) -> Result<BrokerStats> {
        self.shared()?.stats()
    }

    /// Waits until no delivery is queued, running or awaiting an ack and every listener event
    /// has been delivered; `None` waits without limit. Retained messages (a topic with no
    /// group) are not waited for. A timeout error carries the deliveries left. From inside a
    /// handler or listener of this broker it fails with `WouldDeadlock`. On SQLite this is this
    /// broker's work: what it holds, and what waits in the file for the groups it uses
    /// (whoever takes it), not what other processes hold.
    pub fn join(&self, timeout: Option<Duration>) -> Result<()> {
        self.shared()?.join(timeout, Interrupt::default())
    }

    /// `join` that `cancel` can interrupt from another thread (`ErrorKind::Cancelled`).
    pub fn join_until(&self, timeout: Option<Duration>, cancel: Option<&Cancel>) -> Result<()> {
        self.shared()?.join(timeout, Interrupt::new(cancel))
    }

    /// Refuses new publishes and subscriptions at once, waits up to `timeout` for outstanding
    /// deliveries (still delivered, fetchable and ackable meanwhile), then drops whatever is
    /// left, retained messages included, and stops the workers. If time ran out the report's
    /// `remaining` says how many deliveries were unfinished; handlers still running then finish
    /// on their own. `force` drops everything at once, reporting what it dropped; it is the only
    /// close allowed from inside a handler or listener. Later calls, a second close included,
    /// fail with `Closed`.
    ///
    /// On SQLite nothing durable is dropped: what waits in named groups and what topics retain
    /// stay in the file for the next broker, and what this broker holds (awaiting an ack, or
    /// claimed by a worker) goes back to the file at once with attempt + 1, for the other
    /// processes. This broker's ungrouped subscriptions' groups are removed with what they had.
    pub fn close(&self, timeout: Option<Duration>, force: bool) -> Result<CloseReport> {
        self.shared()?.close(timeout, force)
    }

    /// Gives this broker a log sink of its own, taking records up to `max` (see `crate::log`):
    /// its records, its store's included, go there instead of to the process-wide sink. `None`
    /// removes it (back to the process-wide sink). Works on a closed broker too; the sink is
    /// dropped at the latest when the broker is torn down.
    pub fn set_log_sink(
        &self,
        max: crate::log::Level,
        sink: Option<std::sync::Arc<dyn crate::log::LogSink>>,
    ) -> Result<()> {
        self.shared()?.log().set(max, sink);
        Ok(())
    }
}

impl Broker {
    /// Drops this handle without waiting: if it is the last one, the broker is closed with
    /// force at once and the rest of the teardown (waiting for handlers and listeners running
    /// at that moment, then dropping them) finishes on a brokk thread once they return. For a
    /// host whose forced close must not wait for a handler that is stuck.
    pub fn release(self) {
        self.inner.detached.store(true, std::sync::atomic::Ordering::Release);
    }
}

impl WeakBroker {
    pub fn upgrade(&self) -> Option<Broker> {
        self.inner.upgrade().map(|inner| Broker { inner })
    }
}
