//! Publish: one body per message, one delivery per group of the topic; or, while the topic has
//! no group, retention under its limit and policy.

use rusqlite::params;

use super::errors::TxResult;
use super::tx::Tx;
use super::{GroupId, NewMessage, PublishReceipt, Retention};
use crate::error::{Error, ErrorKind};

const INSERT_MESSAGE: &str = "INSERT INTO messages (refs, priority, timestamp_ms, msg_id, payload, metadata) \
                              VALUES (?1, ?2, ?3, ?4, ?5, ?6)";
/// A new delivery is ready, at attempt 1, queued at `?5` of its group's order.
pub(super) const INSERT_DELIVERY: &str = "INSERT INTO deliveries (key, group_id, message, priority, seq, state, \
                                          attempt, due, owner) VALUES (?1, ?2, ?3, ?4, ?5, 0, 1, 0, NULL)";

impl Tx<'_> {
    /// See `SqliteFile::publish`.
    #[cfg_attr(not(test), allow(dead_code))] // The engine's tests use it; the broker does not.
    pub(crate) fn publish(
        &self,
        topic: &str,
        msgs: &[NewMessage<'_>],
        retention: Retention,
    ) -> TxResult<PublishReceipt> {
        self.publish_except(topic, msgs, retention, &[])
    }

    /// See `SqliteFile::publish_except`.
    pub(crate) fn publish_except(
        &self,
        topic: &str,
        msgs: &[NewMessage<'_>],
        retention: Retention,
        skip: &[GroupId],
    ) -> TxResult<PublishReceipt> {
        if msgs.is_empty() {
            return Ok(PublishReceipt::default());
        }
        let (topic_id, mut groups) = self.topic_and_groups(topic)?;
        if groups.is_empty() {
            return self.retain(topic, topic_id, msgs, retention);
        }
        groups.retain(|(g, _)| !skip.contains(g));
        if groups.is_empty() {
            return Ok(PublishReceipt::default());
        }
        let fan_out = groups.len() as i64;
        let n = msgs.len() as i64;
        // Keys in insertion order, so that every insert appends to the table's b-tree.
        let mut key = self.take_keys(n * fan_out)?;
        for (g, _) in &groups {
            self.advance_group(*g, n, n)?;
        }
        let (groups, firsts): (Vec<GroupId>, Vec<i64>) = groups.into_iter().unzip();
        let mut insert_message = self.stmt(INSERT_MESSAGE)?;
        let mut insert_delivery = self.stmt(INSERT_DELIVERY)?;
        for (i, m) in (0..).zip(msgs) {
            let body = insert_message.insert(params![
                fan_out,
                m.priority,
                m.timestamp_ms as i64,
                m.id,
                m.payload,
                m.metadata
            ])?;
            for (g, first) in groups.iter().zip(&firsts) {
                insert_delivery.execute(params![key, g.0, body, m.priority, first + i])?;
                key += 1;
            }
        }
        Ok(PublishReceipt { groups, ..Default::default() })
    }

    fn retain(
        &self,
        topic: &str,
        topic_id: i64,
        msgs: &[NewMessage<'_>],
        retention: Retention,
    ) -> TxResult<PublishReceipt> {
        let held = self
            .stmt("SELECT retained FROM topics WHERE id = ?1")?
            .query_row([topic_id], |r| r.get::<_, i64>(0))? as usize;
        let n = msgs.len();
        let nothing = PublishReceipt { no_group: true, held: held as u64, ..Default::default() };
        // Which of the new messages to keep, and how many of the oldest retained ones to drop.
        let (keep, drop_oldest) = match retention {
            Retention::Off => return Ok(nothing),
            Retention::Reject(limit) if held + n > limit => {
                return Err(Error::new(
                    ErrorKind::Full,
                    format!(
                        "topic {topic:?} has no consumer group and already retains {held} of at most {limit} messages"
                    ),
                )
                .into())
            }
            Retention::Reject(_) => (msgs, 0),
            Retention::DropOldest(limit) if n >= limit => (&msgs[n - limit..], held),
            Retention::DropOldest(limit) => (msgs, (held + n).saturating_sub(limit)),
            Retention::DropNewest(limit) => (&msgs[..limit.saturating_sub(held).min(n)], 0),
        };
        if drop_oldest > 0 {
            self.drop_oldest_retained(topic_id, drop_oldest)?;
        }
        let mut insert_message = self.stmt(INSERT_MESSAGE)?;
        let mut insert_retained = self.stmt("INSERT INTO retained (topic_id, message) VALUES (?1, ?2)")?;
        for m in keep {
            let body =
                insert_message.insert(params![1, m.priority, m.timestamp_ms as i64, m.id, m.payload, m.metadata])?;
            insert_retained.execute([topic_id, body])?;
        }
        let now_held = held - drop_oldest + keep.len();
        self.stmt("UPDATE topics SET retained = ?2 WHERE id = ?1")?.execute([topic_id, now_held as i64])?;
        let discarded = (drop_oldest + n - keep.len()) as u64;
        Ok(PublishReceipt {
            groups: Vec::new(),
            retained: !keep.is_empty(),
            discarded,
            no_group: true,
            held: now_held as u64,
        })
    }

    /// Discards the `n` oldest messages `topic_id` retains. A retained body has no other
    /// reference (deliveries are only made of it when a group takes it over).
    fn drop_oldest_retained(&self, topic_id: i64, n: usize) -> TxResult<()> {
        let oldest = "SELECT message FROM retained WHERE topic_id = ?1 ORDER BY message LIMIT ?2";
        self.stmt(&format!("DELETE FROM messages WHERE id IN ({oldest})"))?.execute([topic_id, n as i64])?;
        self.stmt(&format!("DELETE FROM retained WHERE topic_id = ?1 AND message IN ({oldest})"))?
            .execute([topic_id, n as i64])?;
        Ok(())
    }

    /// Hands what `topic_id` retains to the new group `g`, oldest first; returns how many.
    pub(super) fn take_over_retained(&self, topic_id: i64, g: super::GroupId) -> TxResult<u64> {
        let held: Vec<(i64, i32)> = self
            .stmt(
                "SELECT r.message, m.priority FROM retained AS r JOIN messages AS m ON m.id = r.message \
                 WHERE r.topic_id = ?1 ORDER BY r.message",
            )?
            .query_map([topic_id], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        if held.is_empty() {
            return Ok(0);
        }
        let n = held.len() as i64;
        let (first_key, first_seq) = (self.take_keys(n)?, self.take_group_seq(g, n, n)?);
        let mut insert_delivery = self.stmt(INSERT_DELIVERY)?;
        for ((key, seq), (body, priority)) in (first_key..).zip(first_seq..).zip(&held) {
            insert_delivery.execute(params![key, g.0, body, priority, seq])?;
        }
        self.stmt("DELETE FROM retained WHERE topic_id = ?1")?.execute([topic_id])?;
        self.stmt("UPDATE topics SET retained = 0 WHERE id = ?1")?.execute([topic_id])?;
        Ok(held.len() as u64)
    }
}
