//! The durable store: one SQLite file that several processes share. This module is the engine,
//! a Rust API over the file; `seam` implements the broker's storage seam (`store::Store`) on it
//! and says what the broker does with it (leases, watching, close).
//!
//! **Model.** A topic's consumer groups each get their own *delivery* (a row) of every message
//! published while they exist. A named group ("workers" on "jobs") is the same group in every
//! process that opens the file, so its members compete across processes; an anonymous group
//! belongs to one broker instance (its `owner`) but still gets what any process publishes.
//! While a topic has no group at all its messages are *retained* (bounded by a `Retention`), and
//! the first named group created on it takes them over in order.
//!
//! **Message bodies** live once in `messages`, with a reference count: fan-out to several groups
//! writes one body and one small delivery row per group, and the body goes when its last
//! delivery (or its retained entry) does. An ack therefore costs a second statement (the
//! unref), a price worth paying since payloads dwarf delivery rows.
//!
//! **Delivery states.** A delivery is *ready* (state 0), *delayed* until `due` (state 1, a
//! requeue with a delay), or *leased* to an owner until `due` (state 2). Each state has its own
//! partial index, so a claim walks `(group, priority DESC, seq)` of ready rows only: O(log n)
//! however large the backlog, with no sort. A claim first promotes its group's due rows (delays
//! that ran out, leases that expired: attempt + 1) through the two time-ordered indexes, so a
//! crashed process's deliveries come back to any member of the group in any process. `seq`
//! orders rows within a priority: each group numbers its rows in its own row (written anyway
//! for its ready count), and a requeued or reclaimed row takes a fresh number, so it goes to
//! the back of its priority as in the memory store. `key` never changes and is never reused
//! (`keys.rs`): a late ack of a lost lease can not hit another delivery.
//!
//! **Writes** go through one connection per `SqliteFile` with group commit (see `commit.rs`):
//! concurrent callers share one `BEGIN IMMEDIATE … COMMIT`, each in its own savepoint, and each
//! returns only once the commit holding its work is done. The writers of several processes take
//! turns at the file's write lock (`turns.rs`), so that one committing back to back does not
//! starve another. Reads use a small pool of their own
//! connections; `ready_len` reads a counter kept in `consumer_groups` in the same transactions.
//! A thread per `SqliteFile` checkpoints the write-ahead log off the commit path
//! (`checkpoint.rs`).
//!
//! **Owners** (`owners.rs`) are the broker instances that use the file: each registers, says it
//! is alive at its heartbeats and unregisters at close; the anonymous groups of one gone silent
//! are collected.
//!
//! **Opening** (`open.rs`, `schema.rs`) checks the path and the file header before SQLite touches
//! the file, and refuses, untouched, anything that is not a brokk store of a known version;
//! older versions are migrated in one transaction.

mod checkpoint;
mod commit;
mod config;
mod errors;
mod groups;
mod keys;
mod leases;
mod open;
mod owners;
mod publish;
mod reads;
mod schema;
mod seam;
mod turns;
mod tx;
mod view;

#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::sync::Mutex;

use crate::error::{Error, ErrorKind, Result};
use crate::fork_gate::ForkHold;
use crate::log::{log, Log};
use crate::message::now_ms;
use checkpoint::Checkpointer;
use commit::Writer;
use errors::FileCtx;
use reads::Readers;
use turns::Turns;

pub(crate) use super::Retention;
pub(crate) use config::parse_url;
pub use config::{SqliteConfig, Synchronous};

/// What `brokk_core` re-exports: the options of this backend.
pub mod exports {
    pub use super::config::{SqliteConfig, Synchronous, DEFAULT_SQLITE_BUSY_TIMEOUT};
}

/// Opens the store the options name (the backend table's `open`).
pub(crate) fn open(config: &SqliteConfig, log: &Log) -> crate::error::Result<Box<dyn super::Store>> {
    Ok(Box::new(SqliteStore::open(config, log)?))
}
pub(crate) use errors::TxError;
pub(crate) use seam::SqliteStore;
pub(crate) use tx::Tx;

/// How hard a commit tries to survive failures. Both use a write-ahead log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum SyncLevel {
    /// `synchronous=NORMAL`: a commit survives the process crashing; a power loss may lose the
    /// last commits (never corrupts the file).
    #[default]
    Normal,
    /// `synchronous=FULL`: every commit is fsynced and survives a power loss.
    Full,
}

/// Where and how to open a store.
#[derive(Debug, Clone)]
pub(crate) struct SqliteOptions {
    pub path: PathBuf,
    pub sync: SyncLevel,
    /// Longest wait for a lock another process holds before giving up with `Unavailable`.
    pub busy_timeout: Duration,
    /// Where the store's records go (the broker's log).
    pub log: Log,
}

impl SqliteOptions {
    /// `path` with `SyncLevel::Normal` and a 5 s busy timeout.
    #[cfg_attr(not(test), allow(dead_code))] // The engine's tests use it; the broker does not.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        SqliteOptions {
            path: path.into(),
            sync: SyncLevel::Normal,
            busy_timeout: Duration::from_secs(5),
            log: Log::default(),
        }
    }
}

/// A message as a claim returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredMessage {
    pub id: String,
    pub payload: Vec<u8>,
    pub metadata: Option<Vec<u8>>,
    pub priority: i32,
    pub timestamp_ms: u64,
}

impl StoredMessage {
    #[cfg_attr(not(test), allow(dead_code))] // The engine's tests use it; the broker does not.
    pub fn as_new(&self) -> NewMessage<'_> {
        NewMessage {
            id: &self.id,
            payload: &self.payload,
            metadata: self.metadata.as_deref(),
            priority: self.priority,
            timestamp_ms: self.timestamp_ms,
        }
    }
}

/// A message to publish, borrowed: the caller's thread runs its own insert (group commit never
/// hands it to another thread), so nothing is copied before SQLite copies it into the file.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NewMessage<'a> {
    pub id: &'a str,
    pub payload: &'a [u8],
    pub metadata: Option<&'a [u8]>,
    pub priority: i32,
    pub timestamp_ms: u64,
}

/// A consumer group, unique in the file and never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct GroupId(pub i64);

/// What `SqliteFile::take_counted` found.
#[derive(Debug)]
pub(crate) enum StoredTake {
    /// Claimed and deleted.
    Got(StoredDelivery),
    /// Nothing ready.
    Empty,
    /// The next ready delivery's payload has this many bytes, over the limit: left ready.
    TooLarge(usize),
}

/// A delivery handed out by `claim`: settle it with `ack` or `requeue` quoting `key` and
/// `attempt`, before its lease runs out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredDelivery {
    /// The row id: unique in the file, the same across redeliveries, never reused.
    pub key: i64,
    pub group: GroupId,
    pub message: StoredMessage,
    /// 1 on first delivery, one more after each requeue or lost lease.
    pub attempt: u32,
}

/// What became of a publish.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PublishReceipt {
    /// Groups that got a delivery of every message; empty when the topic had none (or every
    /// one was skipped).
    pub groups: Vec<GroupId>,
    /// Some of the messages were retained for a future group.
    pub retained: bool,
    /// Messages (new or formerly retained) that retention discarded.
    pub discarded: u64,
    /// The topic had no group at all, so retention applied.
    pub no_group: bool,
    /// Messages the topic retains after this publish.
    pub held: u64,
}

/// What `purge_topics` discarded on one topic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PurgedTopic {
    pub topic: String,
    /// Ready deliveries of its groups.
    pub deliveries: u64,
    /// Retained messages.
    pub retained: u64,
}

/// One open store file. Send + Sync: share it in an `Arc`.
pub(crate) struct SqliteFile {
    /// First field: stopped first when the file is dropped.
    _checkpointer: Checkpointer,
    ctx: Arc<FileCtx>,
    writer: Writer,
    readers: Readers,
    /// Groups whose last claim here found nothing.
    idle: Mutex<HashSet<GroupId>>,
    /// Used for nothing but `PRAGMA data_version`, which only changes for a connection when
    /// another one commits: the writer of this very handle counts as another.
    version: Mutex<open::Conn>,
    /// The descriptor `open_writer` locked the file with, which the writer's `Turns` flock.
    /// Last field: closed only after every connection above, since closing it would drop
    /// SQLite's fcntl locks on the file.
    _opened_with: Arc<std::fs::File>,
}

impl SqliteFile {
    /// Opens the store at `opts.path`, creating it if the file does not exist (or is empty),
    /// migrating an older brokk schema forward. Anything that is not a brokk store of a version
    /// this build knows is refused and left untouched.
    pub fn open(opts: &SqliteOptions) -> Result<SqliteFile> {
        Self::open_with(opts, schema::STEPS)
    }

    /// `open` with an explicit list of schema steps (tests use it to stage migrations).
    fn open_with(opts: &SqliteOptions, steps: &[schema::Step]) -> Result<SqliteFile> {
        let ctx = Arc::new(FileCtx {
            path: opts.path.clone(),
            busy_timeout: opts.busy_timeout,
            sync: opts.sync,
            log: opts.log.clone(),
        });
        let (conn, opened_with) = open::open_writer(&ctx, steps)?;
        let opened_with = Arc::new(opened_with);
        let readers = Readers::new(Arc::clone(&ctx));
        let version = Mutex::new(open::connect_reader(&ctx)?);
        let writer = Writer::new(conn, Arc::clone(&ctx), Turns::new(Arc::clone(&opened_with)));
        let checkpointer =
            Checkpointer::start(open::connect_checkpointer(&ctx)?, writer.commit_counter()).map_err(|e| {
                Error::new(
                    ErrorKind::StorageFailed,
                    format!("store {}: cannot start its checkpoint thread: {e}", ctx.path.display()),
                )
            })?;
        Ok(SqliteFile {
            _checkpointer: checkpointer,
            writer,
            readers,
            idle: Mutex::default(),
            version,
            ctx,
            _opened_with: opened_with,
        })
    }

    /// Runs `f` in one transaction with the other writes of this moment (all of it or none of
    /// it commits): for example a dead-letter publish together with the ack of the original.
    /// `f` must not call methods of this `SqliteFile`: it runs holding the write connection.
    pub fn atomically<R>(&self, f: impl FnOnce(&Tx<'_>) -> Result<R, TxError>) -> Result<R> {
        self.writer.run(f)
    }

    /// The named group `name` of `topic`, created if new; a new one takes over the messages
    /// the topic retained.
    #[cfg_attr(not(test), allow(dead_code))] // The engine's tests use it; the broker does not.
    pub fn named_group(&self, topic: &str, name: &str) -> Result<GroupId> {
        self.open_named_group(topic, name).map(|(g, _)| g)
    }

    /// `named_group`, also saying how many retained messages the group took over (0 unless
    /// this call created it).
    pub fn open_named_group(&self, topic: &str, name: &str) -> Result<(GroupId, u64)> {
        if let Some(g) = self.readers.named_group(topic, name)? {
            return Ok((g, 0));
        }
        self.writer.run(|tx| tx.named_group(topic, name))
    }

    /// A new anonymous group of `topic`, belonging to the broker instance `owner`.
    pub fn anonymous_group(&self, topic: &str, owner: &str) -> Result<GroupId> {
        self.writer.run(|tx| tx.anonymous_group(topic, owner))
    }

    /// Deletes the group and every delivery of it (claimed ones too); returns how many.
    #[cfg_attr(not(test), allow(dead_code))] // The engine's tests use it; the broker does not.
    pub fn remove_group(&self, g: GroupId) -> Result<u64> {
        self.writer.run(|tx| tx.remove_group(g))
    }

    /// `remove_group`, saying how many of the deliveries were waiting (ready or delayed) and how
    /// many were leased.
    pub fn remove_group_counted(&self, g: GroupId) -> Result<(u64, u64)> {
        self.writer.run(|tx| tx.remove_group_counted(g))
    }

    /// Removes the anonymous groups of broker instance `owner` (it is closing).
    pub fn remove_owner_groups(&self, owner: &str) -> Result<()> {
        self.writer.run(|tx| tx.remove_owner_groups(owner))
    }

    /// The groups of `topic`, oldest first, with their names (None: anonymous).
    #[cfg_attr(not(test), allow(dead_code))] // The engine's tests use it; the broker does not.
    pub fn groups_of(&self, topic: &str) -> Result<Vec<(GroupId, Option<String>)>> {
        self.readers.groups_of(topic)
    }

    /// Gives every group of `topic` a delivery of each message, or retains them while it has
    /// none. All or nothing, and durable (per `SyncLevel`) when it returns.
    #[cfg_attr(not(test), allow(dead_code))] // The engine's tests use it; the broker does not.
    pub fn publish(&self, topic: &str, msgs: &[NewMessage<'_>], retention: Retention) -> Result<PublishReceipt> {
        self.publish_except(topic, msgs, retention, &[])
    }

    /// `publish`, leaving the groups in `skip` out (backpressure `Drop`: they are full). A topic
    /// whose groups are all skipped still has groups: nothing is retained.
    pub fn publish_except(
        &self,
        topic: &str,
        msgs: &[NewMessage<'_>],
        retention: Retention,
        skip: &[GroupId],
    ) -> Result<PublishReceipt> {
        self.writer.run(|tx| tx.publish_except(topic, msgs, retention, skip))
    }

    /// Leases up to `max` deliveries of group `g` to `owner` for `lease`: highest priority
    /// first, oldest first within a priority. Delays that ran out and leases that expired count
    /// as available (the latter with attempt + 1).
    #[cfg_attr(not(test), allow(dead_code))] // The engine's tests use it; the broker does not.
    pub fn claim(&self, g: GroupId, max: usize, owner: &str, lease: Duration) -> Result<Vec<StoredDelivery>> {
        self.claim_counted(g, max, owner, lease, ["", ""]).map(|(claimed, _)| claimed)
    }

    /// `claim`, also returning how many deliveries of `g` are ready after it. Expired leases of
    /// the holders in `spare` are not reclaimed: a live broker times its own leases (its ack
    /// deadlines), and reclaiming them too would race with it.
    pub fn claim_counted(
        &self,
        g: GroupId,
        max: usize,
        owner: &str,
        lease: Duration,
        spare: [&str; 2],
    ) -> Result<(Vec<StoredDelivery>, u64)> {
        if max == 0 {
            return Ok((Vec::new(), self.ready_len(g)?));
        }
        // Idle polling must not take the write lock that the writers of every process need:
        // after a claim of `g` found nothing, the next one first asks a reader whether it could
        // find anything. (A busy consumer skips that read.)
        if self.idle.lock().contains(&g) && !self.readers.may_claim(g, now_ms())? {
            return Ok((Vec::new(), 0));
        }
        let (claimed, left) = self.writer.run(|tx| tx.claim_counted(g, max, owner, lease, spare))?;
        let mut idle = self.idle.lock();
        if claimed.is_empty() {
            idle.insert(g);
        } else {
            idle.remove(&g);
        }
        Ok((claimed, left))
    }

    /// `claim_counted` of one and, in the same transaction, its ack: one commit that leaves the
    /// delivery gone from the file (or, if its payload is over `max_payload` bytes, ready as it
    /// was). With the ready count left. Expired leases of the holders in `spare` stay, as in
    /// `claim_counted`.
    pub fn take_counted(&self, g: GroupId, spare: [&str; 2], max_payload: usize) -> Result<(StoredTake, u64)> {
        if self.idle.lock().contains(&g) && !self.readers.may_claim(g, now_ms())? {
            return Ok((StoredTake::Empty, 0));
        }
        let (taken, left) = self.writer.run(|tx| tx.take_counted(g, spare, max_payload))?;
        let mut idle = self.idle.lock();
        if matches!(taken, StoredTake::Empty) {
            idle.insert(g);
        } else {
            idle.remove(&g);
        }
        Ok((taken, left))
    }

    /// Deletes each `(key, attempt)` still leased to `owner` at that attempt; false where the
    /// lease was lost (reclaimed by then, or the group removed).
    pub fn ack(&self, owner: &str, keys: &[(i64, u32)]) -> Result<Vec<bool>> {
        self.writer.run(|tx| tx.ack(owner, keys))
    }

    /// Gives a delivery leased to `owner` back with attempt + 1, available from
    /// `available_at_ms` (now or earlier: at once). False if the lease was lost.
    pub fn requeue(&self, owner: &str, key: i64, attempt: u32, available_at_ms: u64) -> Result<bool> {
        self.writer.run(|tx| tx.requeue(owner, key, attempt, available_at_ms))
    }

    /// Gives a delivery leased to `owner` back as it was (same attempt, same place in the queue):
    /// it was claimed but never handed to a consumer. False if the lease was lost.
    pub fn release(&self, owner: &str, key: i64, attempt: u32) -> Result<bool> {
        self.writer.run(|tx| tx.release(owner, key, attempt))
    }

    /// Registers broker instance `owner`, which holds deliveries under `lease`, as alive now.
    /// Registering again (a heartbeat) says it is still alive.
    pub fn register_owner(&self, owner: &str, lease: Duration) -> Result<()> {
        self.writer.run(|tx| tx.register_owner(owner, lease.as_millis() as u64, now_ms()))
    }

    /// Unregisters broker instance `owner` (it is closing).
    pub fn forget_owner(&self, owner: &str) -> Result<()> {
        self.writer.run(|tx| tx.forget_owner(owner))
    }

    /// Removes the anonymous groups of owners silent for three of their leases (see
    /// `owners.rs`), with their deliveries; returns how many groups.
    pub fn collect_silent_owners(&self) -> Result<u64> {
        let groups = self.writer.run(|tx| tx.collect_silent_owners(now_ms()))?;
        if groups > 0 {
            log!(self.ctx.log, Info, "brokk::sqlite", "store {}: removed {groups} ungrouped subscriptions' groups of brokers silent for {} leases (stopped or crashed), with their deliveries", self.ctx.path.display(), owners::SILENT_LEASES);
        }
        Ok(groups)
    }

    /// Renews every lease of `owner` to `lease` from now (a heartbeat for long handlers); returns
    /// how many. Leases that ran out but were not reclaimed yet are renewed too.
    pub fn extend_leases(&self, owner: &str, lease: Duration) -> Result<u64> {
        self.writer.run(|tx| tx.extend_leases(owner, lease))
    }

    /// Gives back every delivery leased to `owner` (a clean close), with attempt + 1.
    pub fn release_owner(&self, owner: &str) -> Result<u64> {
        self.writer.run(|tx| tx.release_owner(owner))
    }

    /// The next `max` deliveries a claim of the named group `group` of `topic` would take at
    /// `now_ms`, read without writing: ready ones in claim order, and delayed ones that are due
    /// (which a claim would promote to the back of their priority), as two lists. None if there
    /// is no such group (none is created).
    pub fn peek(
        &self,
        topic: &str,
        group: &str,
        max: usize,
        now_ms: u64,
    ) -> Result<Option<(Vec<StoredDelivery>, Vec<StoredDelivery>)>> {
        let Some(g) = self.readers.named_group(topic, group)? else { return Ok(None) };
        self.readers.peek(g, max, now_ms).map(Some)
    }

    /// Deliveries of `g` ready to claim (0 for an unknown group); a counter read, O(1). Delays
    /// and leases that ran out count once a claim of the group promoted them.
    pub fn ready_len(&self, g: GroupId) -> Result<u64> {
        self.readers.ready_len(g)
    }

    /// Messages waiting on `topic`: retained ones plus ready deliveries of its groups.
    pub fn count_topic(&self, topic: &str) -> Result<u64> {
        self.readers.count_topic(topic)
    }

    /// Ready deliveries of the named group `group` of `topic` (0 if there is no such group).
    pub fn count_group(&self, topic: &str, group: &str) -> Result<u64> {
        self.readers.count_group(topic, group)
    }

    /// What `count_topic` counts, over every topic.
    pub fn count_all(&self) -> Result<u64> {
        self.readers.count_all()
    }

    /// Discards the ready deliveries and retained messages of `topic` (all topics when None);
    /// returns how many. Delayed and leased deliveries stay.
    #[cfg_attr(not(test), allow(dead_code))] // The engine's tests use it; the broker does not.
    pub fn purge(&self, topic: Option<&str>) -> Result<u64> {
        self.writer.run(|tx| tx.purge(topic))
    }

    /// `purge`, saying what it discarded per topic (topics with nothing discarded left out).
    pub fn purge_topics(&self, topic: Option<&str>) -> Result<Vec<PurgedTopic>> {
        self.writer.run(|tx| tx.purge_topics(topic))
    }

    /// Discards the ready deliveries of the named group `group` of `topic` in one write
    /// transaction; returns how many (0 if there is no such group: none is created). Delayed
    /// and leased deliveries, other groups and retained messages stay.
    pub fn purge_group(&self, topic: &str, group: &str) -> Result<u64> {
        self.writer.run(|tx| tx.purge_group(topic, group))
    }

    /// Deliveries of `g` that wait for a consumer at `now_ms`: ready, delayed, and leased ones
    /// whose lease ran out (they come back at the next claim).
    pub fn waiting(&self, g: GroupId, now_ms: u64) -> Result<u64> {
        self.readers.waiting(g, now_ms)
    }

    /// Ready deliveries of every group of `topic`, and the messages it retains.
    pub fn topic_figures(&self, topic: &str) -> Result<(u64, u64)> {
        self.readers.topic_figures(topic)
    }

    /// Messages `topic` retains for want of a group.
    #[cfg_attr(not(test), allow(dead_code))] // The engine's tests use it; the broker does not.
    pub fn retained_len(&self, topic: &str) -> Result<u64> {
        self.readers.retained_len(topic)
    }

    /// Changes whenever another connection (another process, or this handle's own writer)
    /// committed since the last call: cheap enough to poll every few milliseconds.
    pub fn data_version(&self) -> Result<u64> {
        let conn = self.version.lock();
        let _hold = ForkHold::enter();
        conn.query_row("PRAGMA data_version", [], |r| r.get::<_, i64>(0))
            .map(|v| v as u64)
            .map_err(|e| self.ctx.sql_error(e))
    }

    /// The earliest `due` of `g`'s delayed and leased deliveries (ms since the epoch), so that a
    /// poller knows when to look again; it may be in the past (claim now). None if there are
    /// none.
    pub fn next_available_at(&self, g: GroupId) -> Result<Option<u64>> {
        self.readers.next_available_at(g)
    }
}
