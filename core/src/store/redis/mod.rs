//! The Redis store: the storage seam's traits over a Redis server or Redis Cluster that several
//! brokers (processes, machines) share. `docs/redis.md` is the design note; in short:
//!
//! **Keys.** Everything of a topic lives under the hash tag `{<prefix>:<topic>}` (see `keys`
//! and `lua/lib.lua`): its group registry, and per group one stream per priority in use (with
//! the Redis consumer group `brokk`), a zset of lease ends, a hash of holders and attempts, and
//! a zset plus hash of delayed requeues; the topic's retained messages are one more stream.
//! Every operation is one Lua script on the topic's slot, so it is atomic and works on a
//! cluster, where topics spread over the nodes.
//!
//! **Why a stream per group and priority.** Streams have no priorities, and a requeue must put
//! a delivery back behind the others of its priority for one group only. With a stream per
//! topic and a consumer group per brokk group, a requeued delivery could not move to the back
//! (stream ids only grow; re-adding it would give every group a copy). A stream per group lets
//! a requeue XACK + XDEL the entry and XADD it again at the end of its priority's stream, and a
//! claim read the priorities from the highest down. The price: publish writes each message once
//! per group (one XADD per group, in one script), as SQLite writes one row per group.
//!
//! **One broker, one owner.** As in the SQLite store (`sqlite::seam`), each broker is an owner
//! with a random instance id; its claims are leased to `<id>` (renewed by the heartbeat) or to
//! `<id>+d` until an ack deadline, never renewed. These are the Redis consumer names too: a
//! claim is XREADGROUP (or XCLAIM of an entry whose lease ran out, attempt + 1) to that
//! consumer, so XPENDING shows who holds what. Lease ends are a zset per group rather than the
//! pending list's idle time, because leases differ per delivery (ack deadlines) and XAUTOCLAIM
//! takes one idle threshold for all. A broker's own claims never take back its own ack
//! deadlines (its timer requeues those); its renewed leases only run out if its heartbeat
//! failed or a settle failed (Redis was unreachable), and then any claim may take them back,
//! its own included, so that a delivery whose ack was lost is not stuck until close.
//!
//! **Watching.** On a single server a thread hears every write on the prefix's channel and
//! wakes the broker's poller at once (`watch.rs`). On a cluster every write script increments
//! its topic's counter; `changed` reads the counters of the topics where this broker has
//! groups, one GET each in one round trip per node, every `POLL` while local consumers wait.
//!
//! **Close** gives back every delivery this broker holds (in place, attempt + 1) and removes its
//! anonymous groups. **A crashed broker's** leases run out one lease after its last heartbeat;
//! its anonymous groups are collected by any broker's heartbeat once it was silent for three
//! leases (until then they keep receiving a delivery of each message, which count counts).
//! Named groups, their deliveries and retained messages stay in Redis for the next broker.

mod combine;
mod config;
mod conn;
mod dial;
mod keys;
mod owners;
mod queue;
mod reply;
mod scripts;
mod stream;
mod tls;
mod topic;
mod view;
mod watch;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::sync::Mutex;
use ::redis::{Cmd, Value};

use crate::error::{Error, ErrorKind, Result};
use crate::message::Peeked;
use crate::store::shared::{self, Owner};
use crate::store::{Purged, Store, StoreKind, TopicStore, Watch};
use conn::{Effect, Pool};
use queue::RedisQueue;
use topic::RedisTopic;

pub(crate) use config::parse_url;
pub use config::RedisConfig;

/// What `brokk_core` re-exports: the options of this backend.
pub mod exports {
    pub use super::config::{RedisConfig, RedisTls, DEFAULT_REDIS_PORT, DEFAULT_REDIS_PREFIX, DEFAULT_REDIS_TIMEOUT};
}

/// Opens the store the options name (the backend table's `open`).
pub(crate) fn open(config: &RedisConfig, log: &crate::log::Log) -> crate::error::Result<Box<dyn super::Store>> {
    Ok(Box::new(RedisStore::open(config, log)?))
}

/// How often the poller reads the topics' write counters while this broker has consumers or
/// waiters (on a cluster): the latency of a hand-off from another process, for one round trip.
pub(crate) const POLL: Duration = Duration::from_millis(5);
/// On a single server the listener wakes the poller at each write (`watch.rs`), so its looks
/// are only a backstop: for claims that failed and ran out of retries, and due times the
/// server's clock has not reached yet.
const HEARD_POLL: Duration = Duration::from_millis(50);

/// Delivery numbers are per topic in Redis; a delivery's id in this broker puts the topic's
/// local index above them, so ids of different topics never collide.
const SEQ_BITS: u32 = 40;

/// A delivery this broker holds: what settling, renewing or giving it back needs.
#[derive(Clone)]
struct Held {
    pub base: Arc<str>,
    pub group: Arc<str>,
    /// Its entry: `<priority>/<stream id>`.
    pub member: String,
    pub attempt: u32,
    pub renewed: bool,
    /// Not renewed any more: a settle or requeue of it failed (see `RedisQueue::lapse`).
    pub lapsing: bool,
}

/// A topic this broker uses: its local index (for delivery ids) and base key.
struct TopicEntry {
    index: u64,
    base: Arc<str>,
    /// The largest delivery number this broker claimed on it (`Store::issued`).
    max_issued: u64,
    /// This broker opened a group of it: `changed` looks at its counter.
    watched: bool,
}

/// What the topics and queues of one store share.
struct Local {
    pub pool: Pool,
    pub prefix: String,
    pub owner: Owner,
    pub lease: Duration,
    /// On a cluster (no listening thread: the scripts count writes instead of publishing them).
    pub cluster: bool,
    /// Writes this broker made (see `Store::generation`).
    pub generation: AtomicU64,
    /// Deliveries this broker holds, by delivery id.
    pub held: Mutex<HashMap<u64, Held>>,
    /// Groups this broker claimed from: (base, group), for close.
    pub touched: Mutex<HashSet<(Arc<str>, Arc<str>)>>,
    topics: Mutex<HashMap<Arc<str>, TopicEntry>>,
    /// Anonymous groups made by this broker.
    pub next_group: AtomicU64,
    /// A claim under an ack deadline failed after its request was sent (it may have leased
    /// deliveries to this broker's deadline holder that nobody here knows of), or a delivery
    /// under an ack deadline could not be given back: see `spared`.
    pub lost_deadline_claim: AtomicBool,
}

impl Local {
    pub fn wrote(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Runs `script`, which does `effect`, on the topic with base `base` within the timeout:
    /// KEYS[1] is its group registry, ARGV[1] its base, then what `args` adds.
    pub fn script(
        &self,
        what: &str,
        effect: Effect,
        script: &scripts::Scripts,
        base: &str,
        args: impl FnOnce(&mut Cmd),
    ) -> Result<Value> {
        self.script_by(Instant::now() + self.pool.timeout(), what, effect, script, base, args)
    }

    /// `script`, to be answered by `deadline`.
    pub fn script_by(
        &self,
        deadline: Instant,
        what: &str,
        effect: Effect,
        script: &scripts::Scripts,
        base: &str,
        args: impl FnOnce(&mut Cmd),
    ) -> Result<Value> {
        let script = script.on(self.cluster);
        let mut call = ::redis::cmd("EVALSHA");
        call.arg(script.get_hash()).arg(1).arg(keys::groups(base)).arg(base);
        args(&mut call);
        self.pool.call(what, effect, deadline, |c| c.eval(script, &call))
    }

    /// The holder whose expired leases claims leave alone: this broker's ack-deadline holder,
    /// whose deliveries its deadline timer requeues. Once a claim under a deadline lost its
    /// reply, or a requeue of a delivery under a deadline failed (`RedisQueue::requeue`), none: the deliveries it may have leased come back when their deadline passes
    /// (attempt + 1) to this broker's claims too, not only to other brokers'. The timer's later
    /// requeue of a delivery taken back so quotes an old attempt and changes nothing.
    pub fn spared(&self) -> &str {
        if self.lost_deadline_claim.load(Ordering::Acquire) {
            ""
        } else {
            &self.owner.deadline
        }
    }

    /// The delivery id of delivery number `seq` of the topic with local index `index`.
    pub fn delivery_id(&self, index: u64, seq: u64) -> u64 {
        (index << SEQ_BITS) | (seq & ((1 << SEQ_BITS) - 1))
    }

    pub fn issue(&self, topic: &str, seq: u64) {
        if let Some(t) = self.topics.lock().get_mut(topic) {
            t.max_issued = t.max_issued.max(seq);
        }
    }

    /// This broker has a group of `topic`: what others write there may be work for it.
    pub fn watch(&self, topic: &str) {
        if let Some(t) = self.topics.lock().get_mut(topic) {
            t.watched = true;
        }
    }

    fn topic_entry(&self, name: &Arc<str>) -> (u64, Arc<str>, bool) {
        let mut topics = self.topics.lock();
        let next = topics.len() as u64 + 1;
        let mut new = false;
        let t = topics.entry(Arc::clone(name)).or_insert_with(|| {
            new = true;
            TopicEntry { index: next, base: Arc::from(keys::base(&self.prefix, name)), max_issued: 0, watched: false }
        });
        (t.index, Arc::clone(&t.base), new)
    }
}

pub(crate) struct RedisStore {
    local: Arc<Local>,
    /// On a single server: hears of every write (see `watch.rs`).
    listener: Option<watch::Listener>,
    /// Otherwise (a cluster): the topic write counters seen by the last `changed`.
    seen: Mutex<Option<Vec<Option<i64>>>>,
}

impl RedisStore {
    /// Connects, checks the server (version, credentials, database) and the layout of the keys
    /// under the prefix, and registers this broker instance. Nothing is written before the
    /// checks pass. Opening reaches the server once: a wrong address or wrong credentials are
    /// `CannotOpenStore`, a server that is there but does not answer in time or is not ready
    /// `Unavailable`; the message says no broker was made.
    pub(crate) fn open(config: &RedisConfig, log: &crate::log::Log) -> Result<Self> {
        let pool = Pool::new(config)?.with_log(log);
        pool.reach()?;
        owners::check_server(&pool)?;
        owners::check_layout(&pool, &config.prefix)?;
        let cluster = pool.dialer().is_none();
        let local = Local {
            pool,
            prefix: config.prefix.clone(),
            owner: Owner::new(),
            lease: config.lease,
            cluster,
            generation: AtomicU64::new(0),
            held: Mutex::default(),
            touched: Mutex::default(),
            topics: Mutex::default(),
            next_group: AtomicU64::new(1),
            lost_deadline_claim: AtomicBool::new(false),
        };
        owners::register(&local)?;
        let listener = match local.pool.dialer() {
            Some(dialer) => {
                let stop_word = format!("stop {}", local.owner.renewed);
                let channel = watch::channel(&local.prefix);
                Some(watch::Listener::start(dialer, channel, stop_word, local.pool.timeout()).map_err(|e| {
                    Error::new(
                        ErrorKind::StorageFailed,
                        format!("redis: cannot start its listening thread: {e}; no broker was made"),
                    )
                })?)
            }
            None => None,
        };
        local.pool.opened();
        Ok(RedisStore { local: Arc::new(local), listener, seen: Mutex::new(None) })
    }

    /// The named topics (all under the prefix when None) with their bases.
    fn select(&self, topics: Option<&[&str]>) -> Result<Vec<(String, String)>> {
        let prefix = &self.local.prefix;
        let names: Vec<String> = match topics {
            Some(names) => names.iter().map(|s| s.to_string()).collect(),
            None => {
                let key = keys::topics(prefix);
                let mut all: Vec<String> =
                    self.local.pool.run("list topics", |c| ::redis::cmd("SMEMBERS").arg(&key).query(c.as_dyn()))?;
                all.sort();
                all
            }
        };
        Ok(names.into_iter().map(|n| (keys::base(prefix, &n), n)).collect())
    }
}

impl Store for RedisStore {
    fn kind(&self) -> StoreKind {
        StoreKind::Shared
    }

    fn name(&self) -> &'static str {
        "redis"
    }

    fn topic(&self, name: &Arc<str>) -> Result<Arc<dyn TopicStore>> {
        let (index, base, new) = self.local.topic_entry(name);
        if new {
            // Listed for count and purge of every topic; a topic is never unlisted (its keys
            // are few, and other brokers may use it).
            let key = keys::topics(&self.local.prefix);
            let listed = self
                .local
                .pool
                .run("register the topic", |c| ::redis::cmd("SADD").arg(&key).arg(&**name).query::<()>(c.as_dyn()));
            if let Err(e) = listed {
                self.local.topics.lock().remove(name);
                return Err(e);
            }
        }
        Ok(Arc::new(RedisTopic::new(Arc::clone(&self.local), Arc::clone(name), base, index)))
    }

    fn batch_size(&self, contended: bool, deadline: bool) -> usize {
        shared::batch_size(contended, deadline)
    }

    fn issued(&self, id: u64) -> bool {
        let (index, seq) = (id >> SEQ_BITS, id & ((1 << SEQ_BITS) - 1));
        seq != 0 && self.local.topics.lock().values().any(|t| t.index == index && seq <= t.max_issued)
    }

    fn count(&self, topics: Option<&[&str]>) -> Result<u64> {
        let mut n = 0;
        for (base, _) in self.select(topics)? {
            let (queued, retained) = topic::figures(&self.local, &base)?;
            n += queued + retained;
        }
        Ok(n)
    }

    fn peek(&self, topic: &str, group: &str, max: usize) -> Result<Vec<Peeked>> {
        topic::peek(&self.local, topic, group, max)
    }

    fn view(&self) -> Result<Vec<crate::view::TopicView>> {
        view::view(&self.local, self.select(None)?)
    }

    fn purge(&self, topics: Option<&[&str]>) -> Result<Vec<Purged>> {
        let mut purged = Vec::new();
        for (i, (base, name)) in self.select(topics)?.into_iter().enumerate() {
            let effect = Effect::Changes(
                "the purge of this topic may or may not have been done (any topics before it were \
                 purged): purging again is safe",
            );
            let reply = match self.local.script("purge", effect, &scripts::PURGE, &base, |_| {}) {
                Ok(reply) => reply,
                // Topics before this one were purged: not "nothing was done".
                Err(e) if i > 0 => return Err(partly_done(e, "the topics listed before it were purged")),
                Err(e) => return Err(e),
            };
            self.local.wrote();
            let r = reply::array(reply, "purge")?;
            let (deliveries, retained) = match r.as_slice() {
                [d, r] => (reply::int(d, "purge")? as u64, reply::int(r, "purge")? as u64),
                _ => return Err(reply::malformed("purge")),
            };
            if deliveries + retained > 0 {
                purged.push(Purged { topic: name, deliveries, retained });
            }
        }
        Ok(purged)
    }

    fn count_group(&self, topic: &str, group: &str) -> Result<u64> {
        topic::count_group(&self.local, topic, group)
    }

    fn purge_group(&self, topic: &str, group: &str) -> Result<u64> {
        let n = topic::purge_group(&self.local, topic, group)?;
        self.local.wrote();
        Ok(n)
    }

    fn watch(&self) -> Option<Watch> {
        // Every third of the lease, so that two heartbeats may fail before a lease runs out.
        let poll = if self.listener.is_some() { HEARD_POLL } else { POLL };
        Some(Watch { poll, heartbeat: self.local.lease / 3 })
    }

    fn set_waker(&self, waker: crate::store::Waker) {
        if let Some(listener) = &self.listener {
            listener.set_waker(waker);
        }
    }

    fn changed(&self) -> Result<bool> {
        if let Some(listener) = &self.listener {
            return Ok(listener.take_changed());
        }
        let counters: Vec<String> = self.local.topics.lock().values().map(|t| keys::generation(&t.base)).collect();
        if counters.is_empty() {
            return Ok(false);
        }
        let now = self.local.pool.run("look for changes", |c| c.get_many(&counters))?;
        let mut seen = self.seen.lock();
        Ok(seen.replace(now.clone()).as_ref() != Some(&now))
    }

    fn heartbeat(&self) -> Result<()> {
        let renewed = owners::renew_leases(&self.local);
        let registered = owners::register(&self.local);
        let collected = owners::collect_silent(&self.local);
        renewed.and(registered).and(collected)
    }

    fn generation(&self) -> u64 {
        self.local.generation.load(Ordering::Acquire)
    }

    fn close(&self) -> Result<()> {
        if let Some(listener) = &self.listener {
            listener.stop(&self.local.pool);
        }
        let given_back = owners::give_back_all(&self.local);
        let removed = owners::remove_own_groups(&self.local);
        let forgotten = owners::forget(&self.local);
        self.local.wrote();
        given_back.and(removed).and(forgotten)
    }
}

impl RedisQueue {
    /// The queue behind a `dyn GroupQueue` this store made.
    fn of(queue: &dyn crate::store::GroupQueue) -> &RedisQueue {
        queue.as_any().downcast_ref::<RedisQueue>().expect("a Redis store's group")
    }
}

/// A call made of several requests failed after `done` (the earlier ones) had succeeded: an
/// `Unavailable` failure of the rest is `OutcomeUnknown` for the call as a whole.
fn partly_done(e: Error, done: &str) -> Error {
    match e.kind() {
        ErrorKind::Unavailable => {
            Error::new(ErrorKind::OutcomeUnknown, format!("partly done: {done}; the rest failed: {}", e.message()))
        }
        _ => e,
    }
}

/// An error for a store whose keys were left by something this build cannot read.
fn incompatible(message: String) -> Error {
    Error::new(ErrorKind::IncompatibleStore, message)
}

impl Drop for RedisStore {
    /// A store dropped without `close` (a failed open of the broker) stops listening too.
    fn drop(&mut self) {
        if let Some(listener) = &self.listener {
            listener.stop(&self.local.pool);
        }
    }
}
