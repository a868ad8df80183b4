//! Claims and their settlement. A claim leases deliveries to an owner until a deadline; an ack
//! deletes them, a requeue gives them back; a lease that runs out gives them back by itself,
//! at the next claim of their group in any process, with attempt + 1. Acks and requeues quote
//! the attempt they were handed, so a consumer that lost its lease can not settle the
//! redelivery someone else holds now.

use std::collections::BTreeMap;
use std::time::Duration;

use rusqlite::{params, OptionalExtension};

use super::errors::TxResult;
use super::tx::Tx;
use super::{GroupId, StoredDelivery, StoredMessage, StoredTake};
use crate::message::now_ms;

/// The next deliveries of a group: walks `deliveries_ready` in order, no sort. After the
/// columns of `stored_delivery`: the body's row and the group's ready count (before the claim),
/// which saves a claim a statement of each.
pub(super) const SELECT_READY: &str = "SELECT d.key, d.attempt, m.msg_id, m.payload, m.metadata, m.priority, \
                                       m.timestamp_ms, d.message, (SELECT ready FROM consumer_groups WHERE id = ?1) \
                                       FROM deliveries AS d JOIN messages AS m ON m.id = d.message \
                                       WHERE d.group_id = ?1 AND d.state = 0 ORDER BY d.priority DESC, d.seq LIMIT ?2";
/// A row of `SELECT_READY` (or of a query with its columns).
pub(super) fn stored_delivery(g: GroupId, r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredDelivery> {
    Ok(StoredDelivery {
        key: r.get(0)?,
        group: g,
        attempt: r.get(1)?,
        message: StoredMessage {
            id: r.get(2)?,
            payload: r.get(3)?,
            metadata: r.get(4)?,
            priority: r.get(5)?,
            timestamp_ms: r.get::<_, i64>(6)? as u64,
        },
    })
}
/// Delays that ran out: ready again, behind what is queued (the group's next number, taken
/// afterwards).
pub(super) const PROMOTE_DELAYED: &str = "UPDATE deliveries SET state = 0, seq = (SELECT cg.seq FROM consumer_groups \
                                          AS cg WHERE cg.id = ?1) WHERE group_id = ?1 AND state = 1 AND due <= ?2";
/// Leases that ran out: ready again with attempt + 1, so a late ack of the old lease fails.
/// Except the claimer's own (`?3`, `?4`): a live holder times its leases itself.
pub(super) const PROMOTE_EXPIRED: &str = "UPDATE deliveries SET state = 0, owner = NULL, attempt = attempt + 1, \
                                          seq = (SELECT cg.seq FROM consumer_groups AS cg WHERE cg.id = ?1) \
                                          WHERE group_id = ?1 AND state = 2 AND due <= ?2 \
                                          AND owner NOT IN (?3, ?4)";
/// Whether `PROMOTE_DELAYED` or `PROMOTE_EXPIRED` would find anything: two probes of their
/// time-ordered indexes.
pub(super) const ANY_DUE: &str = "SELECT EXISTS (SELECT 1 FROM deliveries WHERE group_id = ?1 AND state = 1 AND due <= ?2) \
                                  OR EXISTS (SELECT 1 FROM deliveries WHERE group_id = ?1 AND state = 2 AND due <= ?2 \
                                  AND owner NOT IN (?3, ?4))";
pub(super) const MARK_LEASED: &str = "UPDATE deliveries SET state = 2, owner = ?2, due = ?3 WHERE key = ?1";
/// An ack, without `RETURNING` (see `Tx::take_group_seq`): first the body, if this delivery
/// still holds its lease and is the body's last reference; then the delivery. Where the body
/// has other references, `UNREF_LEASED` counts this one off before the delivery goes.
pub(super) const DELETE_LEASED_BODY: &str =
    "DELETE FROM messages WHERE refs = 1 AND id = (SELECT message FROM deliveries WHERE key = ?1 AND state = 2 \
     AND owner = ?2 AND attempt = ?3)";
pub(super) const UNREF_LEASED: &str =
    "UPDATE messages SET refs = refs - 1 WHERE id = (SELECT message FROM deliveries WHERE key = ?1 AND state = 2 \
     AND owner = ?2 AND attempt = ?3)";
pub(super) const DELETE_LEASED: &str =
    "DELETE FROM deliveries WHERE key = ?1 AND state = 2 AND owner = ?2 AND attempt = ?3";
/// Leases are few (what consumers hold), so owner-wide updates scan their partial index.
pub(super) const EXTEND_LEASES: &str =
    "UPDATE deliveries INDEXED BY deliveries_leased SET due = ?2 WHERE state = 2 AND owner = ?1";
/// Each row goes behind its group's queue (the groups' next numbers are taken afterwards).
pub(super) const RELEASE_OWNER: &str = "UPDATE deliveries INDEXED BY deliveries_leased SET state = 0, owner = NULL, \
                                        attempt = attempt + 1, seq = (SELECT cg.seq FROM consumer_groups AS cg \
                                        WHERE cg.id = deliveries.group_id) WHERE state = 2 AND owner = ?1 \
                                        RETURNING group_id";

/// Milliseconds from now until `lease` ends.
fn deadline(now: i64, lease: Duration) -> i64 {
    now.saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX))
}

impl Tx<'_> {
    /// See `SqliteFile::claim_counted`.
    pub(crate) fn claim_counted(
        &self,
        g: GroupId,
        max: usize,
        owner: &str,
        lease: Duration,
        spare: [&str; 2],
    ) -> TxResult<(Vec<StoredDelivery>, u64)> {
        let now = now_ms() as i64;
        self.promote_due(g, now, spare)?;
        let (claimed, ready) = self.lease_ready(g, max, owner, deadline(now, lease))?;
        let taken = claimed.len() as i64;
        self.add_ready(g, -taken)?;
        let left = match ready {
            Some(ready) => (ready - taken).max(0) as u64,
            None => self.ready_count(g)?,
        };
        Ok((claimed, left))
    }

    /// See `SqliteFile::take_counted`: a claim of one and its ack in one transaction. The
    /// delivery is deleted where it is ready, never leased: a lease that its own transaction
    /// ends would be written and erased for nothing (two index entries and the statements).
    pub(crate) fn take_counted(&self, g: GroupId, spare: [&str; 2], max_payload: usize) -> TxResult<(StoredTake, u64)> {
        self.promote_due(g, now_ms() as i64, spare)?;
        let first = self
            .stmt(SELECT_READY)?
            .query_row(params![g.0, 1], |r| Ok((stored_delivery(g, r)?, r.get::<_, i64>(7)?, r.get::<_, i64>(8)?)))
            .optional()?;
        Ok(match first {
            None => (StoredTake::Empty, self.ready_count(g)?),
            Some((d, _, ready)) if d.message.payload.len() > max_payload => {
                (StoredTake::TooLarge(d.message.payload.len()), ready.max(0) as u64)
            }
            Some((d, body, ready)) => {
                self.stmt("DELETE FROM deliveries WHERE key = ?1")?.execute([d.key])?;
                self.unref(body)?;
                self.add_ready(g, -1)?;
                (StoredTake::Got(d), (ready - 1).max(0) as u64)
            }
        })
    }

    /// See `SqliteFile::claim`.
    #[cfg_attr(not(test), allow(dead_code))] // The engine's tests use it; the broker does not.
    pub(crate) fn claim(&self, g: GroupId, max: usize, owner: &str, lease: Duration) -> TxResult<Vec<StoredDelivery>> {
        self.claim_sparing(g, max, owner, lease, [owner, owner])
    }

    /// `claim`, leaving the expired leases of the holders in `spare` alone.
    fn claim_sparing(
        &self,
        g: GroupId,
        max: usize,
        owner: &str,
        lease: Duration,
        spare: [&str; 2],
    ) -> TxResult<Vec<StoredDelivery>> {
        self.claim_counted(g, max, owner, lease, spare).map(|(claimed, _)| claimed)
    }

    /// Leases up to `max` ready deliveries of `g` to `owner` until `until`, in claim order; the
    /// caller counts them out of `ready`. Also returns the group's ready count before the
    /// claim, read with the first row (None when nothing was ready).
    fn lease_ready(
        &self,
        g: GroupId,
        max: usize,
        owner: &str,
        until: i64,
    ) -> TxResult<(Vec<StoredDelivery>, Option<i64>)> {
        let limit = i64::try_from(max).unwrap_or(i64::MAX);
        let mut ready = None;
        let claimed: Vec<StoredDelivery> = self
            .stmt(SELECT_READY)?
            .query_map(params![g.0, limit], |r| {
                ready.get_or_insert(r.get::<_, i64>(8)?);
                stored_delivery(g, r)
            })?
            .collect::<rusqlite::Result<_>>()?;
        let mut mark = self.stmt(MARK_LEASED)?;
        for d in &claimed {
            mark.execute(params![d.key, owner, until])?;
        }
        Ok((claimed, ready))
    }

    /// Makes `g`'s delayed deliveries that are due, and its expired leases, ready again.
    fn promote_due(&self, g: GroupId, now: i64, spare: [&str; 2]) -> TxResult<()> {
        // Usually nothing is due. An UPDATE that finds nothing still opens a cursor on the table
        // and on each index it could change (callgrind: about 20 k instructions each), two
        // index probes far less: so look first.
        let due = self.stmt(ANY_DUE)?.query_row(params![g.0, now, spare[0], spare[1]], |r| r.get::<_, bool>(0))?;
        if !due {
            return Ok(());
        }
        let n = self.stmt(PROMOTE_DELAYED)?.execute(params![g.0, now])?
            + self.stmt(PROMOTE_EXPIRED)?.execute(params![g.0, now, spare[0], spare[1]])?;
        if n > 0 {
            // The promoted rows took the group's next number; now it is theirs.
            self.take_group_seq(g, 1, n as i64)?;
        }
        Ok(())
    }

    /// See `SqliteFile::ack`.
    pub(crate) fn ack(&self, owner: &str, keys: &[(i64, u32)]) -> TxResult<Vec<bool>> {
        let (mut delete_body, mut delete) = (self.stmt(DELETE_LEASED_BODY)?, self.stmt(DELETE_LEASED)?);
        let mut acked = Vec::with_capacity(keys.len());
        for &(key, attempt) in keys {
            let args = params![key, owner, attempt];
            // The usual case: the body's last reference, deleted by the first statement.
            if delete_body.execute(args)? == 0 {
                // Another reference (or the lease was lost: then nothing matches).
                self.stmt(UNREF_LEASED)?.execute(args)?;
            }
            acked.push(delete.execute(args)? == 1);
        }
        Ok(acked)
    }

    /// See `SqliteFile::requeue`.
    pub(crate) fn requeue(&self, owner: &str, key: i64, attempt: u32, available_at_ms: u64) -> TxResult<bool> {
        let now = now_ms() as i64;
        let at = i64::try_from(available_at_ms).unwrap_or(i64::MAX);
        let state = if at <= now { 0 } else { 1 };
        // Behind its group's queue: the group's next number, taken below.
        let group: Option<i64> = self
            .stmt(
                "UPDATE deliveries SET state = ?5, owner = NULL, attempt = attempt + 1, due = ?4, \
                 seq = (SELECT cg.seq FROM consumer_groups AS cg WHERE cg.id = deliveries.group_id) \
                 WHERE key = ?1 AND state = 2 AND owner = ?2 AND attempt = ?3 RETURNING group_id",
            )?
            .query_row(params![key, owner, attempt, at, state], |r| r.get(0))
            .optional()?;
        if let Some(g) = group {
            self.take_group_seq(GroupId(g), 1, i64::from(state == 0))?;
        }
        Ok(group.is_some())
    }

    /// See `SqliteFile::release`. The row keeps its `seq`: it goes back where it was.
    pub(crate) fn release(&self, owner: &str, key: i64, attempt: u32) -> TxResult<bool> {
        let group: Option<i64> = self
            .stmt(
                "UPDATE deliveries SET state = 0, owner = NULL, due = 0 \
                 WHERE key = ?1 AND state = 2 AND owner = ?2 AND attempt = ?3 RETURNING group_id",
            )?
            .query_row(params![key, owner, attempt], |r| r.get(0))
            .optional()?;
        if let Some(g) = group {
            self.add_ready(GroupId(g), 1)?;
        }
        Ok(group.is_some())
    }

    /// See `SqliteFile::extend_leases`.
    pub(crate) fn extend_leases(&self, owner: &str, lease: Duration) -> TxResult<u64> {
        let until = deadline(now_ms() as i64, lease);
        Ok(self.stmt(EXTEND_LEASES)?.execute(params![owner, until])? as u64)
    }

    /// See `SqliteFile::release_owner`.
    pub(crate) fn release_owner(&self, owner: &str) -> TxResult<u64> {
        let mut per_group = BTreeMap::<i64, i64>::new();
        let mut stmt = self.stmt(RELEASE_OWNER)?;
        let mut rows = stmt.query(params![owner])?;
        while let Some(row) = rows.next()? {
            *per_group.entry(row.get(0)?).or_default() += 1;
        }
        drop(rows);
        for (g, n) in &per_group {
            self.take_group_seq(GroupId(*g), 1, *n)?;
        }
        Ok(per_group.values().sum::<i64>() as u64)
    }
}
