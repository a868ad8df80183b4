//! The write side's building blocks, valid inside a transaction that `Writer` opened. The
//! operations themselves are in `publish.rs`, `groups.rs` and `leases.rs`; here are the
//! bookkeeping pieces they share: topics, queue order, reference counts and counters (delivery
//! keys are in `keys.rs`).

use rusqlite::{CachedStatement, Connection, OptionalExtension};

use super::errors::TxResult;
use super::keys::Keys;
use super::GroupId;

/// A transaction in progress (more exactly: a savepoint of one). Every write of the store is a
/// method of it, so that several can run in one transaction (`SqliteFile::atomically`).
pub(crate) struct Tx<'c> {
    conn: &'c Connection,
    keys: &'c Keys,
}

impl<'c> Tx<'c> {
    pub(super) fn new(conn: &'c Connection, keys: &'c Keys) -> Self {
        Tx { conn, keys }
    }

    pub(super) fn keys(&self) -> &'c Keys {
        self.keys
    }

    pub(super) fn stmt(&self, sql: &str) -> rusqlite::Result<CachedStatement<'c>> {
        self.conn.prepare_cached(sql)
    }

    /// The id of `topic`, which is created if new.
    pub(super) fn topic_id(&self, topic: &str) -> TxResult<i64> {
        let found = self.stmt("SELECT id FROM topics WHERE name = ?1")?.query_row([topic], |r| r.get(0)).optional()?;
        match found {
            Some(id) => Ok(id),
            None => Ok(self.stmt("INSERT INTO topics (name) VALUES (?1)")?.insert([topic])?),
        }
    }

    /// The id of `topic` (created if new) and its groups, oldest first, each with the next
    /// number of its queue order: one statement for a topic that exists, as on every publish
    /// but the first. (Inside the transaction, which holds the write lock, the numbers stay
    /// valid until the caller takes them with `advance_group`.)
    pub(super) fn topic_and_groups(&self, topic: &str) -> TxResult<(i64, Vec<(GroupId, i64)>)> {
        let sql = "SELECT t.id, g.id, g.seq FROM topics AS t LEFT JOIN consumer_groups AS g ON g.topic_id = t.id \
                   WHERE t.name = ?1 ORDER BY g.id";
        let mut stmt = self.stmt(sql)?;
        let mut rows = stmt.query([topic])?;
        let (mut topic_id, mut groups) = (None, Vec::new());
        while let Some(row) = rows.next()? {
            topic_id = Some(row.get::<_, i64>(0)?);
            if let Some(g) = row.get::<_, Option<i64>>(1)? {
                groups.push((GroupId(g), row.get::<_, i64>(2)?));
            }
        }
        match topic_id {
            Some(id) => Ok((id, groups)),
            None => Ok((self.stmt("INSERT INTO topics (name) VALUES (?1)")?.insert([topic])?, groups)),
        }
    }

    /// The count of ready deliveries of `g` (0 for an unknown group).
    pub(super) fn ready_count(&self, g: GroupId) -> TxResult<u64> {
        let n: Option<i64> =
            self.stmt("SELECT ready FROM consumer_groups WHERE id = ?1")?.query_row([g.0], |r| r.get(0)).optional()?;
        Ok(n.unwrap_or(0).max(0) as u64)
    }

    /// The groups of a topic, oldest first.
    pub(super) fn group_ids(&self, topic_id: i64) -> TxResult<Vec<GroupId>> {
        let mut stmt = self.stmt("SELECT id FROM consumer_groups WHERE topic_id = ?1 ORDER BY id")?;
        let ids = stmt.query_map([topic_id], |r| r.get(0).map(GroupId))?.collect::<rusqlite::Result<_>>()?;
        Ok(ids)
    }

    /// Takes `n` numbers of `g`'s queue order and adds `ready` to its count of ready
    /// deliveries, in one write of its row; returns the first number. The order only grows, so
    /// a fresh number goes after every row of the group already queued.
    ///
    /// A read and a write rather than one `UPDATE … RETURNING`: SQLite runs a RETURNING
    /// statement through an ephemeral table of its own, opened and closed on every call, which
    /// cost more than the write itself (callgrind: 23 k instructions a call, the most expensive
    /// statement of a publish).
    pub(super) fn take_group_seq(&self, g: GroupId, n: i64, ready: i64) -> TxResult<i64> {
        let first: i64 =
            self.stmt("SELECT seq FROM consumer_groups WHERE id = ?1")?.query_row([g.0], |r| r.get(0))?;
        self.advance_group(g, n, ready)?;
        Ok(first)
    }

    /// Moves `g`'s next queue number on by `n` and adds `ready` to its ready count.
    pub(super) fn advance_group(&self, g: GroupId, n: i64, ready: i64) -> TxResult<()> {
        let sql = "UPDATE consumer_groups SET seq = seq + ?2, ready = ready + ?3 WHERE id = ?1";
        self.stmt(sql)?.execute([g.0, n, ready])?;
        Ok(())
    }

    /// Drops one reference to a message body, deleting it with its last one.
    pub(super) fn unref(&self, message: i64) -> TxResult<()> {
        // The usual case first: the body has no other reference.
        if self.stmt("DELETE FROM messages WHERE id = ?1 AND refs = 1")?.execute([message])? == 0 {
            self.stmt("UPDATE messages SET refs = refs - 1 WHERE id = ?1")?.execute([message])?;
        }
        Ok(())
    }

    /// Adds `delta` to the count of ready deliveries of `g`.
    pub(super) fn add_ready(&self, g: GroupId, delta: i64) -> TxResult<()> {
        if delta != 0 {
            self.stmt("UPDATE consumer_groups SET ready = ready + ?2 WHERE id = ?1")?.execute([g.0, delta])?;
        }
        Ok(())
    }
}
