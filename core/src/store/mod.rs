//! The storage seam. The broker core decides who gets what and when: members and fetchers,
//! delivery policies, events, counters, join and close. A store keeps what waits: per topic the
//! messages retained while the topic has no consumer group, per group its deliveries in
//! priority order (FIFO within a priority), the deliveries a consumer holds until it settles
//! them, and requeued ones waiting out a delay. Both backends implement the same three traits
//! and the core has one code path over them:
//!
//! - [`Store`]: the whole store: topics, count and purge, and for a store shared by processes
//!   the signals the core polls (changes by others, heartbeats) and what close gives back.
//! - [`TopicStore`]: one topic: registering groups (the first named group takes over what the
//!   topic retained) and publishing (fan-out to every group, or retention).
//! - [`GroupQueue`]: one consumer group's queue: claim, settle, requeue, lengths.
//!
//! **In process or shared** ([`StoreKind`]). Memory keeps each queue in this process, so the
//! core counts a delivery as outstanding (for join and close) from publish to settle, and wakes
//! consumers itself. SQLite and Redis keep queues in a place several processes share:
//! another process may publish into a group this one consumes, or take what this one published.
//! So the core counts only what this process holds (claimed, not settled), asks the store what
//! waits in its groups ([`GroupQueue::waiting`]), and a poller thread watches for changes by
//! others ([`Store::changed`]) to wake local consumers.
//!
//! **Deliveries and leases.** A claim hands deliveries to this broker. A shared store leases
//! them to this broker instance: until the lease ends no other process gets them, and a crashed
//! process's deliveries come back (attempt + 1) once its leases run out. A settle quotes the
//! delivery's `key` and `attempt`, so a late settle after a lost lease changes nothing.
//!
//! Redis has the same shape (`redis`, and `docs/redis.md`): a stream per group and priority with
//! a Redis consumer group (publish is XADD to every group's stream in one script, claim is
//! XREADGROUP, settle is XACK + XDEL, a lease that ran out is XCLAIMed from the pending entries
//! list), sorted sets for lease due times and delayed requeues, and a per-topic counter that
//! every write script increments for `changed`.
//!
//! **Backends.** Each backend lives in a folder (a file for memory) of its own, with its URL
//! options, their defaults and their parser (`sqlite/config.rs`, `redis/config.rs`), its docs
//! page and its test server, behind a cargo feature of its name. What the rest of the core
//! knows of them is its line of the backend table below (`backends!`), which makes its
//! [`Backend`] variant, opens it and maps its URL schemes to its parser.

pub(crate) mod memory;
// What the stores shared by processes have in common (unused in a memory-only build, which
// lib.rs allows).
mod shared;
// The same trait-level tests on every backend (issue 18).
#[cfg(test)]
mod conformance;
// A throwaway redis-server for the unit tests (`redis/watch.rs`, `conformance.rs`).
#[cfg(all(test, feature = "redis"))]
mod test_server;

use std::any::Any;
use std::sync::Arc;
use std::time::{Duration, Instant};

use memory::MemoryStore;

use crate::config::{ParseUrl, Scheme};
use crate::error::Result;
use crate::message::{Delivery, Message, Peeked};
use crate::view::TopicView;

/// The backend table: one line per backend. A line gives the [`Backend`] variant and the
/// options it carries, the backend's folder (module), its cargo feature, and its URL schemes.
/// The folder provides `parse_url(scheme, rest)`, its options' `check()`, `open(&options)` and
/// a `pub mod exports` of what `brokk_core` re-exports. Nothing else in the core names a
/// backend.
macro_rules! backends {
    ($($(#[$doc:meta])* $variant:ident($module:ident::$config:ident), feature = $feature:literal,
        schemes = [$($scheme:literal),+];)*) => {
        $(#[cfg(feature = $feature)] pub(crate) mod $module;)*

        /// Which store holds the queues. A backend's variant exists when the cargo feature of
        /// its name is on (every backend's, by default); a URL naming one that is not is
        /// `ErrorKind::UnsupportedBackend`.
        #[derive(Debug, Clone, PartialEq, Eq)]
        #[non_exhaustive]
        // Made once per broker: the size of the largest options (Redis's, with TLS) costs nothing.
        #[allow(clippy::large_enum_variant)]
        pub enum Backend {
            /// In this process's memory; the default.
            Memory,
            $($(#[$doc])* #[cfg(feature = $feature)] $variant($module::$config),)*
        }

        impl Backend {
            /// Checks the options a caller may have set in code (the URL parser checks its
            /// own): each within the range an engine takes, so that none fails deep inside a
            /// store.
            pub(crate) fn check(&self) -> Result<()> {
                match self {
                    Backend::Memory => Ok(()),
                    $(#[cfg(feature = $feature)] Backend::$variant(c) => c.check(),)*
                }
            }

            /// Opens (for a shared store: reaches, checks, creates if missing) the store.
            #[cfg(test)]
            pub(crate) fn open(&self) -> Result<Box<dyn Store>> {
                self.open_logged(&crate::log::Log::default())
            }

            /// `open`, the store logging to `log` (the broker's; unused by memory alone).
            #[cfg_attr(not(any(feature = "sqlite", feature = "redis")), allow(unused_variables))]
            pub(crate) fn open_logged(&self, log: &crate::log::Log) -> Result<Box<dyn Store>> {
                match self {
                    Backend::Memory => Ok(Box::new(MemoryStore::new())),
                    $(#[cfg(feature = $feature)] Backend::$variant(c) => $module::open(c, log),)*
                }
            }
        }

        /// Every URL scheme, and the backend that parses it (the parser is not named when the
        /// backend's feature is off: such a URL is `UnsupportedBackend`, naming the feature).
        pub(crate) static SCHEMES: &[Scheme] = &[
            Scheme { names: &["memory"], feature: None, parse: Some(memory::parse_url) },
            $(Scheme {
                names: &[$($scheme),+],
                feature: Some($feature),
                parse: {
                    #[cfg(feature = $feature)]
                    let parse: Option<ParseUrl> = Some($module::parse_url);
                    #[cfg(not(feature = $feature))]
                    let parse: Option<ParseUrl> = None;
                    parse
                },
            },)*
        ];

        /// What `brokk_core` re-exports of each backend this build has (its options).
        pub mod exports {
            $(#[cfg(feature = $feature)] pub use super::$module::exports::*;)*
        }
    };
}

backends! {
    /// A SQLite file that several processes (several brokers) may share.
    Sqlite(sqlite::SqliteConfig), feature = "sqlite", schemes = ["sqlite"];
    /// A Redis server or Redis Cluster that several processes (on several machines) share.
    Redis(redis::RedisConfig), feature = "redis",
        schemes = ["redis", "redis+cluster", "redis+sentinel", "rediss", "rediss+cluster", "rediss+sentinel"];
}

/// Where a store keeps its queues; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StoreKind {
    /// In this process: the core counts deliveries from publish to settle.
    InProcess,
    /// Shared by processes: the core counts what it holds, asks the store for the rest, and
    /// polls it for changes made by others.
    Shared,
}

/// How a shared store wants to be watched.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Watch {
    /// How often to call [`Store::changed`] while local consumers wait.
    pub poll: Duration,
    /// How often to call [`Store::heartbeat`]: a third of the lease, so that two heartbeats may
    /// fail before a lease runs out.
    pub heartbeat: Duration,
}

/// What publish does on a topic with no group (see `config::RetentionPolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retention {
    /// Keep up to this many; a publish that does not fit fails with `Full`, keeping nothing.
    Reject(usize),
    /// Keep up to this many, discarding the oldest.
    DropOldest(usize),
    /// Keep up to this many, discarding what does not fit of the new ones.
    DropNewest(usize),
    /// Keep nothing (the broker counts them unrouted).
    Off,
}

/// How long a claim holds its deliveries (a shared store's lease; memory ignores it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lease {
    /// The store's lease (`config::DEFAULT_LEASE` unless configured), renewed by
    /// [`Store::heartbeat`] while this broker holds them.
    Renewed,
    /// Until the ack deadline: not renewed, so that once it passes the delivery is another
    /// consumer's even if this process is gone.
    Until(Duration),
}

/// How a delivery goes back to its group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Requeue {
    /// Behind the others of its priority, with attempt + 1.
    Now,
    /// Like `Now`, but not before this moment.
    At(Instant),
    /// Claimed but never handed out (its member stopped mid-batch): back as it was, in its place
    /// (before what was queued after it), with the same attempt.
    Unstarted,
}

/// Where a requeued delivery went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Requeued {
    /// Ready in the queue now: wake a consumer.
    Ready,
    /// Waiting out its delay: wake a consumer then.
    Delayed,
    /// The store no longer had it: its group was removed, or (shared) the lease was lost and
    /// someone else has it now.
    Gone,
}

/// What [`GroupQueue::take`] found.
#[derive(Debug)]
pub(crate) enum Take {
    /// Taken and settled.
    Got(Delivery),
    /// Nothing ready.
    Empty,
    /// The next delivery's payload has this many bytes, over the limit: left in the queue.
    TooLarge(usize),
}

/// What a publish did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Receipt {
    /// The topic had no group at all (in any process): the messages were retained as the
    /// retention allows, or, with retention off, went nowhere.
    pub no_group: bool,
    /// With `no_group`: messages the topic retains now.
    pub held: u64,
    /// Messages (new or formerly retained) that retention discarded.
    pub discarded: u64,
}

/// The outcome of [`TopicStore::publish`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Published {
    Done(Receipt),
    /// An in-process store found a group registered that the caller's list did not have (a
    /// race with the first group's creation): nothing was done; publish again with the
    /// current list, under the topic's ordering lock.
    GroupsChanged,
}

/// The local groups a publish goes to, as the core sees them at that moment.
pub(crate) trait Fanout {
    /// Local groups of the topic (the skipped ones included).
    fn len(&self) -> usize;
    /// Those that get the messages: `len` less the skipped ones.
    fn receivers(&self) -> usize;
    /// The queue of group `i`.
    fn queue(&self, i: usize) -> &dyn GroupQueue;
    /// The queue of group `i` if it gets the messages; None if backpressure `Drop` leaves it
    /// out (its queue is full).
    fn receiving(&self, i: usize) -> Option<&dyn GroupQueue>;
}

/// A group just registered.
pub(crate) struct OpenedGroup {
    pub queue: Arc<dyn GroupQueue>,
    /// Retained messages this (first named) group took over.
    pub taken_over: u64,
}

/// What purge discarded on one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Purged {
    pub topic: String,
    /// Ready deliveries discarded from the topic's groups.
    pub deliveries: u64,
    /// Retained messages discarded.
    pub retained: u64,
}

/// The store's own figures for a topic, where they differ from what this process counted (a
/// shared store: other processes publish and consume too).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Gauges {
    /// Ready deliveries in the topic's groups, in every process.
    pub queued: u64,
    /// Messages the topic retains.
    pub retained: u64,
}

/// What a store does by itself. The core reads it once, when the store opens; what a store
/// lacks the core emulates (a delayed requeue: the core keeps the delivery claimed and requeues
/// it when it is due) or refuses with a message that names the limit (a priority outside the
/// range the store orders by: `InvalidArgument` at publish, before anything is stored). A
/// store declares less than everything only when its engine cannot do it (RabbitMQ orders
/// priorities 0 to 255 and has no delayed requeue of its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Capabilities {
    /// The lowest and highest priority the store keeps in order.
    pub priorities: (i32, i32),
    /// Whether `GroupQueue::requeue` takes `Requeue::At`. Without, the core holds the
    /// delivery (claimed: a shared store keeps its lease renewed, and a crash gives it back
    /// after the lease, as for any claimed delivery) until it is due, then requeues it `Now`.
    pub delayed_requeue: bool,
}

impl Default for Capabilities {
    /// Everything: the memory, SQLite and Redis stores.
    fn default() -> Self {
        Capabilities { priorities: (i32::MIN, i32::MAX), delayed_requeue: true }
    }
}

impl Capabilities {
    /// Refuses a priority the store cannot keep in order.
    pub(crate) fn check_priority(&self, priority: i32, backend: &str) -> Result<()> {
        let (lo, hi) = self.priorities;
        if (lo..=hi).contains(&priority) {
            return Ok(());
        }
        Err(crate::error::Error::new(
            crate::error::ErrorKind::InvalidArgument,
            format!("priority {priority} is outside {lo}..={hi}, the priorities the {backend} backend keeps in order"),
        ))
    }
}

/// What [`Store::peek`] reads in two parts, ready deliveries (in claim order) and delayed ones
/// that are due (in the order a claim promotes them), merged as a claim would hand them out:
/// the due ones join the back of their priority. The first `max`.
pub(crate) fn ready_then_due(ready: Vec<Peeked>, due: Vec<Peeked>, max: usize) -> Vec<Peeked> {
    let mut all = ready;
    let ready_len = all.len();
    all.extend(due);
    // Stable: each part keeps its own order within a priority.
    let mut order: Vec<usize> = (0..all.len()).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(all[i].message.priority()), i >= ready_len));
    let mut slots: Vec<Option<Peeked>> = all.into_iter().map(Some).collect();
    order.into_iter().take(max).filter_map(|i| slots[i].take()).collect()
}

/// A whole store. Safe to use from any thread.
pub(crate) trait Store: Send + Sync {
    fn kind(&self) -> StoreKind;

    /// The backend's name, for messages ("memory", "sqlite", "redis").
    fn name(&self) -> &'static str;

    /// What the store does by itself; see [`Capabilities`].
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }

    /// The store's side of topic `name`, which the core keeps for the topic's life.
    fn topic(&self, name: &Arc<str>) -> Result<Arc<dyn TopicStore>>;

    /// How many deliveries a push worker claims at once: as many as it will run soon. Fewer when
    /// consumers of this process compete for the group (so that none withholds deliveries from
    /// the others), and one when each has its own ack deadline (a lease runs from the claim).
    fn batch_size(&self, contended: bool, deadline: bool) -> usize;

    /// Whether this broker ever handed out delivery `id` (tells `UnknownDelivery` from
    /// `AlreadySettled`).
    fn issued(&self, id: u64) -> bool;

    /// Messages waiting on `topics` (all when None): retained ones plus ready deliveries, one
    /// per group. A shared store counts what the whole store holds.
    fn count(&self, topics: Option<&[&str]>) -> Result<u64>;

    /// Discards what `count` counts; returns what it discarded, per topic that had any.
    fn purge(&self, topics: Option<&[&str]>) -> Result<Vec<Purged>>;

    /// Ready deliveries of the named group `group` of `topic`: its share of what `count`
    /// counts. 0 when there is no such group or topic (none is created).
    fn count_group(&self, topic: &str, group: &str) -> Result<u64>;

    /// Discards what `count_group` counts, in one atomic step; returns how many. Delayed and
    /// in-flight deliveries of the group, its other groups and what the topic retains stay;
    /// the group stays registered. 0 when there is no such group (none is created).
    fn purge_group(&self, topic: &str, group: &str) -> Result<u64>;

    /// The next `max` deliveries that a claim of the named group `group` of `topic` would hand
    /// out, in that order, read without changing anything: ready ones, then (at the back of
    /// their priority, as a claim promotes them) delayed requeues that are due. Leased ones are
    /// left out, including leases that ran out but no claim took back yet. A group that does
    /// not exist in the store is not created; it shows what it would take over if a fetch made
    /// it now: the messages the topic retains (none once the topic has a named group), by
    /// priority, highest first, in publish order within one, at attempt 1. A topic that does
    /// not exist has none. The caller checked the names and `1 <= max <= MAX_PEEK`.
    fn peek(&self, topic: &str, group: &str, max: usize) -> Result<Vec<Peeked>>;

    /// Every topic the store holds (for memory: this broker's), by name, with what it retains
    /// and, per group, its deliveries by state (see `crate::view`), read without changing
    /// anything: no topic or group is created. Each topic is read at one moment.
    fn view(&self) -> Result<Vec<TopicView>>;

    /// For a shared store: how to watch it. None: nothing outside this process changes it.
    fn watch(&self) -> Option<Watch> {
        None
    }

    /// For a store with a `watch`: how to wake the poller when the store hears of work by
    /// itself (called once, before any consumer waits). A store that only answers `changed`
    /// ignores it, and the poller looks every `watch.poll`.
    fn set_waker(&self, _waker: Waker) {}

    /// Whether anyone (another process, or this one) changed the store since the last call.
    fn changed(&self) -> Result<bool> {
        Ok(false)
    }

    /// Renews this broker's renewed leases, says it is alive, and collects what brokers that
    /// went silent left behind (their anonymous groups).
    fn heartbeat(&self) -> Result<()> {
        Ok(())
    }

    /// Counts this broker's writes to a shared store: a reader that saw the same number before
    /// and after looking at several things saw them at one moment (see `Shared::wait_idle`).
    fn generation(&self) -> u64 {
        0
    }

    /// The broker is closing: give back what it holds (redelivered elsewhere with attempt + 1)
    /// and remove what only it used (its anonymous groups).
    fn close(&self) -> Result<()> {
        Ok(())
    }
}

/// How a store tells the core that work may have arrived, at once instead of at the poller's
/// next look: a store that hears of writes by itself (Redis's subscription to its change
/// channel; a server that pushes deliveries) calls [`Waker::wake`] from any thread, and the
/// poller then asks [`Store::changed`] and wakes the local consumers with work. It holds nothing
/// of the broker, so a store thread may keep it as long as it likes.
#[derive(Clone)]
pub(crate) struct Waker(Arc<dyn Fn() + Send + Sync>);

impl Waker {
    pub(crate) fn new(wake: impl Fn() + Send + Sync + 'static) -> Self {
        Waker(Arc::new(wake))
    }

    pub(crate) fn wake(&self) {
        (self.0)()
    }
}

/// One topic of a store.
pub(crate) trait TopicStore: Send + Sync {
    /// Registers a group: named (`Some`: shared with every process that opens the store under
    /// that name; the first one takes over what the topic retained, in publish order), or
    /// anonymous (`None`: one subscription's own, owned by this broker).
    fn open_group(&self, name: Option<&str>) -> Result<OpenedGroup>;

    /// Removes an anonymous group and every delivery of it; returns how many it had waiting.
    fn remove_group(&self, queue: &dyn GroupQueue) -> Result<u64>;

    /// Gives every group of the topic except the skipped ones its own delivery of each message,
    /// all at once, or, while the topic has no group, retains them under `retention`. All or
    /// nothing.
    fn publish(&self, messages: &[Message], groups: &dyn Fanout, retention: Retention) -> Result<Published>;

    /// The store's figures for this topic, or None where this process's counters are exact.
    fn gauges(&self) -> Result<Option<Gauges>> {
        Ok(None)
    }

    /// The broker is closing: discards what the topic retains if it lives only in this process
    /// (a durable store keeps it); returns how many.
    fn close(&self) -> u64;
}

/// One consumer group's queue. Safe to use from any thread.
pub(crate) trait GroupQueue: Send + Sync + Any {
    /// Takes up to `max` ready deliveries into `out` (highest priority first, FIFO within one),
    /// held under `lease`; returns how many.
    fn claim(&self, max: usize, lease: Lease, out: &mut Vec<Delivery>) -> Result<usize>;

    /// The deliveries are done (acked, failed or dropped): gone from the store.
    fn settle(&self, done: &[Delivery]) -> Result<()>;

    /// Takes the next ready delivery (as a claim of one would) and settles it in the same
    /// step, one transaction or script: it is gone from the store when this returns (at most
    /// once). One whose payload is over `max_payload` bytes is left where it is, ready.
    fn take(&self, max_payload: usize) -> Result<Take>;

    /// Gives a claimed delivery back to the group.
    fn requeue(&self, delivery: &Delivery, how: Requeue) -> Result<Requeued>;

    /// Ready deliveries, read without I/O: exact in process; for a shared store the last
    /// figure seen (refreshed by claims, local publishes and the poller).
    fn len(&self) -> usize;

    /// Ready deliveries, as backpressure holds them against the queue capacity. A shared store
    /// reads them from the store (other processes publish into the same group), unless it read
    /// them less than `max_age` ago (`Duration::ZERO`: read now); its own additions since are
    /// counted either way.
    fn backlog(&self, max_age: Duration) -> Result<usize> {
        let _ = max_age;
        Ok(self.len())
    }

    /// For join and close: deliveries of this group that wait in a shared store for a consumer
    /// (ready, delayed, or leased to someone whose lease ran out). An in-process store says 0:
    /// the core counts its deliveries itself.
    fn waiting(&self) -> Result<u64>;

    /// Moves delayed deliveries that are due to the ready queue; returns how many. (A shared
    /// store does that inside its claims.)
    fn release_due(&self) -> usize;

    /// For the poller: re-reads `len` from a shared store, and returns when a delayed delivery
    /// or a lease of the group comes due next (None: none).
    fn refresh(&self) -> Result<Option<Instant>> {
        Ok(None)
    }

    /// The group or the broker is done: discards what waits if it lives only in this process
    /// (a durable store keeps it); returns how many.
    fn discard(&self) -> u64;

    fn as_any(&self) -> &dyn Any;
}
