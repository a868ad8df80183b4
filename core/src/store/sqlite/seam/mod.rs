//! The SQLite store behind the broker: the storage seam's traits over one `SqliteFile`.
//!
//! **One broker, one owner.** Each broker opens the file as an owner with a random instance
//! id. Its anonymous groups (ungrouped subscriptions) belong to that owner, and what it claims
//! is leased to that owner: under `<id>` with the configured lease (`lease_ms`, 30 s by
//! default) that a heartbeat renews every third of it while the broker lives, or, for a
//! delivery with an ack deadline, under `<id>+d` until that deadline, never renewed. So a
//! delivery comes back to the other consumers of its group (attempt + 1) when its deadline
//! passes, or one lease after its broker stopped renewing (crashed or hung); never while a
//! live broker holds it. A broker's own claims never take back its own expired leases: its
//! deadline timer requeues those.
//!
//! **Watching.** Other processes change the file without telling us. The broker's poller
//! thread calls `changed` (`PRAGMA data_version`, a read of a shared-memory counter) every
//! `POLL` (5 ms) while this broker has consumers or waiters, and on a change re-reads its
//! groups' ready counts and when their next delayed delivery or lease comes due
//! (`GroupQueue::refresh`), then wakes those that have work. The queue itself is never polled:
//! a claim happens only when a count or a due time says it will find something.
//!
//! **Close** gives back every delivery this owner holds (attempt + 1: its consumer may have
//! started it), so other processes get them at once rather than after the lease, and removes
//! this owner's anonymous groups with their deliveries. Named groups, their deliveries and
//! what topics retain stay in the file for the next broker.
//!
//! **A crashed process's anonymous groups** are collected. Each broker registers as an owner
//! when it opens the file, says it is alive at every heartbeat, and unregisters at close. Every
//! heartbeat also removes the anonymous groups (with their deliveries) of owners silent for
//! three of their leases (90 s by default): until then they keep receiving a delivery of each
//! message published on their topic, which `count` counts. Named groups are never collected:
//! their deliveries wait for the next consumer, whoever it is.

mod queue;
mod topic;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::sync::Mutex;

use super::{SqliteConfig, SqliteFile, SqliteOptions, StoredDelivery, StoredMessage, SyncLevel, Synchronous};
use crate::message::{now_ms, Message, Peeked};
use crate::error::Result;
use crate::store::shared::{self, Owner};
use crate::store::{ready_then_due, Purged, Store, StoreKind, TopicStore, Watch};
use crate::view::TopicView;
use queue::SqliteQueue;
use topic::SqliteTopic;

/// How often the poller looks for changes made by other processes while this broker has
/// consumers or waiters: the latency of a cross-process hand-off, for a shared-memory read.
pub(crate) const POLL: Duration = Duration::from_millis(5);

/// What the topics and queues of one store share.
pub(super) struct Local {
    pub file: SqliteFile,
    pub owner: Owner,
    /// The lease of a claim without an ack deadline.
    pub lease: Duration,
    /// Writes this broker made (see `Store::generation`).
    pub generation: AtomicU64,
    /// The largest delivery key this broker claimed: ids it may have handed out.
    pub max_issued: AtomicU64,
}

impl Local {
    pub fn wrote(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}

pub(crate) struct SqliteStore {
    local: Arc<Local>,
    /// The data version seen by the last `changed`.
    version: Mutex<Option<u64>>,
}

impl SqliteStore {
    /// Opens (or creates) the file; every refusal leaves it untouched (see `SqliteFile::open`).
    pub(crate) fn open(config: &SqliteConfig, log: &crate::log::Log) -> Result<Self> {
        let sync = match config.synchronous {
            Synchronous::Normal => SyncLevel::Normal,
            Synchronous::Full => SyncLevel::Full,
        };
        let file =
            SqliteFile::open(&SqliteOptions {
            path: config.path.clone(),
            sync,
            busy_timeout: config.busy_timeout,
            log: log.clone(),
        })?;
        let owner = Owner::new();
        file.register_owner(&owner.renewed, config.lease)?;
        let local =
            Local { file, owner, lease: config.lease, generation: AtomicU64::new(0), max_issued: AtomicU64::new(0) };
        Ok(SqliteStore { local: Arc::new(local), version: Mutex::new(None) })
    }
}

impl Store for SqliteStore {
    fn kind(&self) -> StoreKind {
        StoreKind::Shared
    }

    fn name(&self) -> &'static str {
        "sqlite"
    }

    fn topic(&self, name: &Arc<str>) -> Result<Arc<dyn TopicStore>> {
        Ok(Arc::new(SqliteTopic::new(Arc::clone(&self.local), Arc::clone(name))))
    }

    fn peek(&self, topic: &str, group: &str, max: usize) -> Result<Vec<Peeked>> {
        let restore =
            |m: StoredMessage| Message::restore(topic, &m.id, &m.payload, m.metadata.as_deref(), m.priority, m.timestamp_ms);
        let Some((ready, due)) = self.local.file.peek(topic, group, max, now_ms())? else {
            // No such group: what a fetch that made it now would take over.
            let retained = self.local.file.peek_retained(topic, max)?;
            return Ok(retained.into_iter().map(|m| Peeked::new(restore(m), 1)).collect());
        };
        let peeked = |row: StoredDelivery| Peeked::new(restore(row.message), row.attempt);
        Ok(ready_then_due(ready.into_iter().map(peeked).collect(), due.into_iter().map(peeked).collect(), max))
    }

    fn view(&self) -> Result<Vec<TopicView>> {
        self.local.file.view()
    }

    fn batch_size(&self, contended: bool, deadline: bool) -> usize {
        shared::batch_size(contended, deadline)
    }

    fn issued(&self, id: u64) -> bool {
        id != 0 && id <= self.local.max_issued.load(Ordering::Relaxed)
    }

    fn count(&self, topics: Option<&[&str]>) -> Result<u64> {
        match topics {
            None => self.local.file.count_all(),
            Some(names) => names.iter().map(|t| self.local.file.count_topic(t)).sum(),
        }
    }

    fn purge(&self, topics: Option<&[&str]>) -> Result<Vec<Purged>> {
        let purged = match topics {
            None => self.local.file.purge_topics(None)?,
            Some(names) => self.local.file.atomically(|tx| {
                let mut all = Vec::new();
                for t in names {
                    all.extend(tx.purge_topics(Some(t))?);
                }
                Ok(all)
            })?,
        };
        self.local.wrote();
        Ok(purged
            .into_iter()
            .map(|p| Purged { topic: p.topic, deliveries: p.deliveries, retained: p.retained })
            .collect())
    }

    fn count_group(&self, topic: &str, group: &str) -> Result<u64> {
        self.local.file.count_group(topic, group)
    }

    fn purge_group(&self, topic: &str, group: &str) -> Result<u64> {
        let n = self.local.file.purge_group(topic, group)?;
        self.local.wrote();
        Ok(n)
    }

    fn watch(&self) -> Option<Watch> {
        // Every third of the lease, so that two heartbeats may fail before a lease runs out.
        Some(Watch { poll: POLL, heartbeat: self.local.lease / 3 })
    }

    fn changed(&self) -> Result<bool> {
        let now = self.local.file.data_version()?;
        let mut seen = self.version.lock();
        Ok(seen.replace(now) != Some(now))
    }

    fn heartbeat(&self) -> Result<()> {
        let (file, owner) = (&self.local.file, &self.local.owner.renewed);
        file.extend_leases(owner, self.local.lease)?;
        file.register_owner(owner, self.local.lease)?;
        file.collect_silent_owners().map(drop)
    }

    fn generation(&self) -> u64 {
        self.local.generation.load(Ordering::Acquire)
    }

    fn close(&self) -> Result<()> {
        let owner = &self.local.owner;
        let released = self.local.file.release_owner(&owner.renewed);
        let released_deadline = self.local.file.release_owner(&owner.deadline);
        let removed = self.local.file.remove_owner_groups(&owner.renewed);
        let forgotten = self.local.file.forget_owner(&owner.renewed);
        self.local.wrote();
        released.and(released_deadline).and(removed).and(forgotten).map(drop)
    }
}

impl SqliteQueue {
    /// The queue behind a `dyn GroupQueue` this store made.
    fn of(queue: &dyn crate::store::GroupQueue) -> &SqliteQueue {
        queue.as_any().downcast_ref::<SqliteQueue>().expect("a SQLite store's group")
    }
}
