//! One consumer group of the SQLite store, as this broker sees it: claims lease rows to this
//! broker's owner, settles delete them, requeues hand them back; `len` is the ready count last
//! seen, kept current by this broker's own writes and by the poller's `refresh` (see
//! `store::shared::ReadyCount`).

use std::any::Any;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Local;
use crate::error::Result;
use crate::message::{now_ms, Delivery, Message};
use crate::store::shared::ReadyCount;
use crate::store::sqlite::{GroupId, StoredDelivery, StoredTake};
use crate::store::{GroupQueue, Lease, Requeue, Requeued, Take};

pub(crate) struct SqliteQueue {
    local: Arc<Local>,
    topic: Arc<str>,
    pub(super) id: GroupId,
    name: Option<Arc<str>>,
    ready: ReadyCount,
}

impl SqliteQueue {
    pub(super) fn new(local: Arc<Local>, topic: Arc<str>, id: GroupId, name: Option<Arc<str>>, ready: u64) -> Self {
        SqliteQueue { local, topic, id, name, ready: ReadyCount::new(ready) }
    }

    /// This broker made `n` deliveries of the group ready (after the commit that did).
    pub(super) fn added(&self, n: u64) {
        self.ready.added(n);
    }

    fn reread<R>(&self, read: impl FnOnce() -> Result<(R, u64)>) -> Result<R> {
        self.ready.reread(read)
    }

    /// The delivery of a claimed row. The row key is unique in the file and kept across
    /// redeliveries: it is the id too.
    fn delivery(&self, row: &StoredDelivery, renewed: bool) -> Delivery {
        let m = &row.message;
        let message =
            Message::restore(&self.topic, &m.id, &m.payload, m.metadata.as_deref(), m.priority, m.timestamp_ms);
        let key = row.key as u64;
        Delivery { message, id: key, key, subscription: 0, attempt: row.attempt, renewed, group: self.name.clone() }
    }

    fn requeued(&self, back: bool, then: Requeued) -> Requeued {
        self.local.wrote();
        if !back {
            return Requeued::Gone;
        }
        if then == Requeued::Ready {
            self.added(1);
        }
        then
    }
}

/// Milliseconds since the epoch at `at`, rounded up: never earlier than asked.
fn epoch_ms(at: Instant) -> u64 {
    let wait = at.saturating_duration_since(Instant::now());
    now_ms() + wait.as_millis() as u64 + u64::from(!wait.subsec_nanos().is_multiple_of(1_000_000)) + 1
}

impl GroupQueue for SqliteQueue {
    fn claim(&self, max: usize, lease: Lease, out: &mut Vec<Delivery>) -> Result<usize> {
        let (renewed, length) = match lease {
            Lease::Renewed => (true, self.local.lease),
            Lease::Until(deadline) => (false, deadline),
        };
        let owner = &self.local.owner;
        let spare = [owner.renewed.as_str(), owner.deadline.as_str()];
        let rows = self.reread(|| self.local.file.claim_counted(self.id, max, owner.holder(renewed), length, spare))?;
        if rows.is_empty() {
            return Ok(0);
        }
        self.local.wrote();
        let mut highest = 0;
        for r in &rows {
            highest = highest.max(r.key as u64);
            out.push(self.delivery(r, renewed));
        }
        self.local.max_issued.fetch_max(highest, Ordering::Relaxed);
        Ok(rows.len())
    }

    /// A claim of one and its ack in one transaction: one commit instead of two.
    fn take(&self, max_payload: usize) -> Result<Take> {
        let owner = &self.local.owner;
        let spare = [owner.renewed.as_str(), owner.deadline.as_str()];
        let taken = self.reread(|| self.local.file.take_counted(self.id, spare, max_payload))?;
        Ok(match taken {
            StoredTake::Empty => Take::Empty,
            StoredTake::TooLarge(size) => Take::TooLarge(size),
            StoredTake::Got(row) => {
                self.local.wrote();
                // Issued, if settled already: a later ack of its id is ALREADY_SETTLED.
                self.local.max_issued.fetch_max(row.key as u64, Ordering::Relaxed);
                Take::Got(self.delivery(&row, true))
            }
        })
    }

    fn settle(&self, done: &[Delivery]) -> Result<()> {
        for renewed in [true, false] {
            let keys: Vec<(i64, u32)> =
                done.iter().filter(|d| d.renewed == renewed).map(|d| (d.key as i64, d.attempt)).collect();
            if !keys.is_empty() {
                // A lease that was lost (deadline passed and someone else took it) is theirs
                // now: nothing to delete, and nothing else to do.
                self.local.file.ack(self.local.owner.holder(renewed), &keys)?;
            }
        }
        self.local.wrote();
        Ok(())
    }

    fn requeue(&self, d: &Delivery, how: Requeue) -> Result<Requeued> {
        let (file, holder, key) = (&self.local.file, self.local.owner.holder(d.renewed), d.key as i64);
        Ok(match how {
            Requeue::Now => self.requeued(file.requeue(holder, key, d.attempt, 0)?, Requeued::Ready),
            Requeue::At(at) => self.requeued(file.requeue(holder, key, d.attempt, epoch_ms(at))?, Requeued::Delayed),
            Requeue::Unstarted => self.requeued(file.release(holder, key, d.attempt)?, Requeued::Ready),
        })
    }

    fn len(&self) -> usize {
        self.ready.get() as usize
    }

    fn backlog(&self, max_age: Duration) -> Result<usize> {
        Ok(self.ready.backlog(max_age, || self.local.file.ready_len(self.id))? as usize)
    }

    fn waiting(&self) -> Result<u64> {
        self.local.file.waiting(self.id, now_ms())
    }

    /// A claim promotes due rows itself; what this does is make `len` say there is one, so
    /// that a consumer woken for it claims.
    fn release_due(&self) -> usize {
        match self.local.file.next_available_at(self.id) {
            Ok(Some(due)) if due <= now_ms() => {
                self.added(1);
                1
            }
            _ => 0,
        }
    }

    fn refresh(&self) -> Result<Option<Instant>> {
        self.reread(|| self.local.file.ready_len(self.id).map(|n| ((), n)))?;
        Ok(self.local.file.next_available_at(self.id)?.map(|due| {
            let (now, wall) = (Instant::now(), now_ms());
            now + Duration::from_millis(due.saturating_sub(wall))
        }))
    }

    fn discard(&self) -> u64 {
        0
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
