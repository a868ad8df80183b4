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

    /// The groups of a topic, oldest first.
    pub(super) fn group_ids(&self, topic_id: i64) -> TxResult<Vec<GroupId>> {
        let mut stmt = self.stmt("SELECT id FROM consumer_groups WHERE topic_id = ?1 ORDER BY id")?;
        let ids = stmt.query_map([topic_id], |r| r.get(0).map(GroupId))?.collect::<rusqlite::Result<_>>()?;
        Ok(ids)
    }

    /// Takes `n` numbers of `g`'s queue order and adds `ready` to its count of ready
    /// deliveries, in one write of its row; returns the first number. The order only grows, so
    /// a fresh number goes after every row of the group already queued.
    pub(super) fn take_group_seq(&self, g: GroupId, n: i64, ready: i64) -> TxResult<i64> {
        let sql = "UPDATE consumer_groups SET seq = seq + ?2, ready = ready + ?3 WHERE id = ?1 RETURNING seq - ?2";
        Ok(self.stmt(sql)?.query_row([g.0, n, ready], |r| r.get(0))?)
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
