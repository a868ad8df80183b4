//! Reads, on connections of their own so that they never wait for the writer (WAL readers see
//! the last commit). Connections are pooled: one is opened when every pooled one is busy, and
//! kept, so the pool grows to the number of threads that read at once and then stays.

use std::sync::Arc;

use crate::sync::Mutex;
use rusqlite::{params, Connection, OptionalExtension};

use super::errors::FileCtx;
use super::open::{self, Conn};
use super::leases::{stored_delivery, SELECT_READY};
use super::{GroupId, StoredDelivery};
use crate::error::Result;
use crate::fork_gate::ForkHold;

/// A counter read plus, when it is 0, two probes of the time-ordered indexes.
pub(super) const MAY_CLAIM: &str = "SELECT g.ready > 0 \
    OR EXISTS (SELECT 1 FROM deliveries WHERE group_id = ?1 AND state = 1 AND due <= ?2) \
    OR EXISTS (SELECT 1 FROM deliveries WHERE group_id = ?1 AND state = 2 AND due <= ?2) \
    FROM consumer_groups AS g WHERE g.id = ?1";
/// The ready counter plus two walks of the time-ordered indexes (delayed: all; leased: those
/// that ran out).
pub(super) const WAITING: &str = "SELECT g.ready \
    + (SELECT count(*) FROM deliveries WHERE group_id = ?1 AND state = 1) \
    + (SELECT count(*) FROM deliveries WHERE group_id = ?1 AND state = 2 AND due <= ?2) \
    FROM consumer_groups AS g WHERE g.id = ?1";
/// The first entry of each time-ordered index for the group.
pub(super) const NEXT_DUE: &str = "SELECT \
    (SELECT due FROM deliveries WHERE group_id = ?1 AND state = 1 ORDER BY due LIMIT 1), \
    (SELECT due FROM deliveries WHERE group_id = ?1 AND state = 2 ORDER BY due LIMIT 1)";

/// Delays that ran out, as a claim would promote them: to the back of their priority, in key
/// order (they all take the group's next number). Walks `deliveries_delayed`; those due are few.
pub(super) const PEEK_DUE: &str = "SELECT d.key, d.attempt, m.msg_id, m.payload, m.metadata, m.priority, \
    m.timestamp_ms FROM deliveries AS d JOIN messages AS m ON m.id = d.message \
    WHERE d.group_id = ?1 AND d.state = 1 AND d.due <= ?2 ORDER BY d.priority DESC, d.key LIMIT ?3";

pub(super) struct Readers {
    pool: Mutex<Vec<Conn>>,
    ctx: Arc<FileCtx>,
}

impl Readers {
    pub fn new(ctx: Arc<FileCtx>) -> Self {
        Readers { pool: Mutex::new(Vec::new()), ctx }
    }

    pub(super) fn with<R>(&self, read: impl FnOnce(&Connection) -> rusqlite::Result<R>) -> Result<R> {
        let pooled = self.pool.lock().pop();
        let hold = ForkHold::enter();
        let conn = match pooled {
            Some(c) => c,
            None => open::connect_reader(&self.ctx)?,
        };
        let result = read(&conn).map_err(|e| self.ctx.sql_error(e));
        drop(hold);
        self.pool.lock().push(conn);
        result
    }

    fn count(&self, sql: &str, args: impl rusqlite::Params) -> Result<u64> {
        self.with(|c| c.prepare_cached(sql)?.query_row(args, |r| r.get::<_, i64>(0)).optional())
            .map(|n| n.unwrap_or(0).max(0) as u64)
    }

    pub fn named_group(&self, topic: &str, name: &str) -> Result<Option<GroupId>> {
        let sql = "SELECT g.id FROM consumer_groups AS g JOIN topics AS t ON t.id = g.topic_id \
                   WHERE t.name = ?1 AND g.name = ?2";
        self.with(|c| c.prepare_cached(sql)?.query_row([topic, name], |r| r.get(0).map(GroupId)).optional())
    }

    #[cfg_attr(not(test), allow(dead_code))] // The engine's tests use it; the broker does not.
    pub fn groups_of(&self, topic: &str) -> Result<Vec<(GroupId, Option<String>)>> {
        let sql = "SELECT g.id, g.name FROM consumer_groups AS g JOIN topics AS t ON t.id = g.topic_id \
                   WHERE t.name = ?1 ORDER BY g.id";
        self.with(|c| c.prepare_cached(sql)?.query_map([topic], |r| Ok((GroupId(r.get(0)?), r.get(1)?)))?.collect())
    }

    pub fn ready_len(&self, g: GroupId) -> Result<u64> {
        self.count("SELECT ready FROM consumer_groups WHERE id = ?1", [g.0])
    }

    pub fn count_topic(&self, topic: &str) -> Result<u64> {
        let sql = "SELECT t.retained + (SELECT coalesce(sum(ready), 0) FROM consumer_groups WHERE topic_id = t.id) \
                   FROM topics AS t WHERE t.name = ?1";
        self.count(sql, [topic])
    }

    pub fn count_group(&self, topic: &str, group: &str) -> Result<u64> {
        let sql = "SELECT g.ready FROM consumer_groups AS g JOIN topics AS t ON t.id = g.topic_id \
                   WHERE t.name = ?1 AND g.name = ?2";
        self.count(sql, [topic, group])
    }

    pub fn count_all(&self) -> Result<u64> {
        let sql = "SELECT (SELECT coalesce(sum(retained), 0) FROM topics) \
                   + (SELECT coalesce(sum(ready), 0) FROM consumer_groups)";
        self.count(sql, [])
    }

    pub fn topic_figures(&self, topic: &str) -> Result<(u64, u64)> {
        let sql = "SELECT (SELECT coalesce(sum(ready), 0) FROM consumer_groups WHERE topic_id = t.id), t.retained \
                   FROM topics AS t WHERE t.name = ?1";
        let found = self.with(|c| {
            c.prepare_cached(sql)?.query_row([topic], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))).optional()
        })?;
        Ok(found.map_or((0, 0), |(q, r)| (q.max(0) as u64, r.max(0) as u64)))
    }

    #[cfg_attr(not(test), allow(dead_code))] // The engine's tests use it; the broker does not.
    pub fn retained_len(&self, topic: &str) -> Result<u64> {
        self.count("SELECT retained FROM topics WHERE name = ?1", [topic])
    }

    /// Whether a claim of `g` at `now` could find anything: ready rows, or due ones to promote.
    pub fn may_claim(&self, g: GroupId, now: u64) -> Result<bool> {
        self.count(MAY_CLAIM, params![g.0, now as i64]).map(|n| n > 0)
    }

    pub fn waiting(&self, g: GroupId, now: u64) -> Result<u64> {
        self.count(WAITING, params![g.0, now as i64])
    }

    /// See `SqliteFile::peek`: one read transaction, so both parts are of one moment.
    pub fn peek(&self, g: GroupId, max: usize, now: u64) -> Result<(Vec<StoredDelivery>, Vec<StoredDelivery>)> {
        let limit = i64::try_from(max).unwrap_or(i64::MAX);
        self.with(|c| {
            let tx = c.unchecked_transaction()?;
            let ready = tx
                .prepare_cached(SELECT_READY)?
                .query_map(params![g.0, limit], |r| stored_delivery(g, r))?
                .collect::<rusqlite::Result<_>>()?;
            let due = tx
                .prepare_cached(PEEK_DUE)?
                .query_map(params![g.0, now as i64, limit], |r| stored_delivery(g, r))?
                .collect::<rusqlite::Result<_>>()?;
            tx.finish()?;
            Ok((ready, due))
        })
    }

    pub fn next_available_at(&self, g: GroupId) -> Result<Option<u64>> {
        let (delayed, leased): (Option<i64>, Option<i64>) =
            self.with(|c| c.prepare_cached(NEXT_DUE)?.query_row([g.0], |r| Ok((r.get(0)?, r.get(1)?))))?;
        Ok(delayed.into_iter().chain(leased).min().map(|d| d.max(0) as u64))
    }
}
