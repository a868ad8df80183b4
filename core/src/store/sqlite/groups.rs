//! Consumer groups: named ones shared by every process, anonymous ones owned by one broker
//! instance; removing them with their deliveries; and purging what waits in them.

use rusqlite::OptionalExtension;

use super::errors::TxResult;
use super::tx::Tx;
use super::{GroupId, PurgedTopic};

/// The id of the named group ?2 of topic ?1 (the unique indexes on names, no scan).
pub(super) const GROUP_BY_NAME: &str = "SELECT g.id FROM consumer_groups AS g JOIN topics AS t ON t.id = g.topic_id \
    WHERE t.name = ?1 AND g.name = ?2";

/// A purge of a group's ready deliveries: its partial index of ready rows, never the rest.
pub(super) const DELETE_READY: &str = "DELETE FROM deliveries WHERE group_id = ?1 AND state = 0 RETURNING message";

impl Tx<'_> {
    /// See `SqliteFile::open_named_group`.
    pub(crate) fn named_group(&self, topic: &str, name: &str) -> TxResult<(GroupId, u64)> {
        let topic_id = self.topic_id(topic)?;
        let found = self
            .stmt("SELECT id FROM consumer_groups WHERE topic_id = ?1 AND name = ?2")?
            .query_row((topic_id, name), |r| r.get(0))
            .optional()?;
        if let Some(id) = found {
            return Ok((GroupId(id), 0));
        }
        let id = self.stmt("INSERT INTO consumer_groups (topic_id, name) VALUES (?1, ?2)")?.insert((topic_id, name))?;
        // A topic retains only while it has no group at all; what it holds now was published
        // before any group (or while only anonymous ones came and went) and belongs to this
        // first named one.
        let taken = self.take_over_retained(topic_id, GroupId(id))?;
        Ok((GroupId(id), taken))
    }

    /// See `SqliteFile::anonymous_group`.
    pub(crate) fn anonymous_group(&self, topic: &str, owner: &str) -> TxResult<GroupId> {
        let topic_id = self.topic_id(topic)?;
        let id =
            self.stmt("INSERT INTO consumer_groups (topic_id, owner) VALUES (?1, ?2)")?.insert((topic_id, owner))?;
        Ok(GroupId(id))
    }

    /// See `SqliteFile::remove_group`.
    pub(crate) fn remove_group(&self, g: GroupId) -> TxResult<u64> {
        self.remove_group_counted(g).map(|(waiting, leased)| waiting + leased)
    }

    /// See `SqliteFile::remove_group_counted`.
    pub(crate) fn remove_group_counted(&self, g: GroupId) -> TxResult<(u64, u64)> {
        // One statement per state, each walking that state's partial index.
        let mut dropped = [0; 3];
        for (state, sql) in [
            "DELETE FROM deliveries WHERE group_id = ?1 AND state = 0 RETURNING message",
            "DELETE FROM deliveries WHERE group_id = ?1 AND state = 1 RETURNING message",
            "DELETE FROM deliveries WHERE group_id = ?1 AND state = 2 RETURNING message",
        ]
        .into_iter()
        .enumerate()
        {
            let bodies: Vec<i64> = self.stmt(sql)?.query_map([g.0], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
            for body in &bodies {
                self.unref(*body)?;
            }
            dropped[state] = bodies.len() as u64;
        }
        self.stmt("DELETE FROM consumer_groups WHERE id = ?1")?.execute([g.0])?;
        Ok((dropped[0] + dropped[1], dropped[2]))
    }

    /// See `SqliteFile::remove_owner_groups`.
    pub(crate) fn remove_owner_groups(&self, owner: &str) -> TxResult<()> {
        let groups: Vec<i64> = self
            .stmt("SELECT id FROM consumer_groups WHERE owner = ?1")?
            .query_map([owner], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        for g in groups {
            self.remove_group(GroupId(g))?;
        }
        Ok(())
    }

    /// See `SqliteFile::purge`.
    #[cfg_attr(not(test), allow(dead_code))] // The engine's tests use it; the broker does not.
    pub(crate) fn purge(&self, topic: Option<&str>) -> TxResult<u64> {
        Ok(self.purge_topics(topic)?.iter().map(|p| p.deliveries + p.retained).sum())
    }

    /// See `SqliteFile::purge_group`.
    pub(crate) fn purge_group(&self, topic: &str, group: &str) -> TxResult<u64> {
        let found = self.stmt(GROUP_BY_NAME)?.query_row([topic, group], |r| r.get(0).map(GroupId)).optional()?;
        match found {
            Some(g) => self.purge_ready(g),
            None => Ok(0),
        }
    }

    /// Deletes the ready deliveries of `g` (their bodies when no longer referenced) and zeroes
    /// its ready counter; returns how many. Delayed and leased rows stay.
    fn purge_ready(&self, g: GroupId) -> TxResult<u64> {
        let bodies: Vec<i64> = self
            .stmt(DELETE_READY)?
            .query_map([g.0], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        for body in &bodies {
            self.unref(*body)?;
        }
        self.stmt("UPDATE consumer_groups SET ready = 0 WHERE id = ?1")?.execute([g.0])?;
        Ok(bodies.len() as u64)
    }

    /// See `SqliteFile::purge_topics`.
    pub(crate) fn purge_topics(&self, topic: Option<&str>) -> TxResult<Vec<PurgedTopic>> {
        let topics: Vec<(i64, String)> = match topic {
            Some(name) => self
                .stmt("SELECT id, name FROM topics WHERE name = ?1")?
                .query_row([name], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?
                .into_iter()
                .collect(),
            None => self
                .stmt("SELECT id, name FROM topics ORDER BY name")?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?,
        };
        let mut purged = Vec::new();
        for (topic_id, name) in topics {
            let mut this = PurgedTopic { topic: name, ..Default::default() };
            for g in self.group_ids(topic_id)? {
                this.deliveries += self.purge_ready(g)?;
            }
            let retained = "SELECT message FROM retained WHERE topic_id = ?1";
            self.stmt(&format!("DELETE FROM messages WHERE id IN ({retained})"))?.execute([topic_id])?;
            this.retained = self.stmt("DELETE FROM retained WHERE topic_id = ?1")?.execute([topic_id])? as u64;
            self.stmt("UPDATE topics SET retained = 0 WHERE id = ?1")?.execute([topic_id])?;
            if this.deliveries + this.retained > 0 {
                purged.push(this);
            }
        }
        Ok(purged)
    }
}
