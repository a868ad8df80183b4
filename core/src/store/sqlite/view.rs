//! Read-only looks at the whole file for the operator: the store view (every topic, with what
//! it retains and each group's deliveries by state) and the messages a topic retains, in the
//! order a new group would hand them out. Both run on a reader connection in one read
//! transaction, so each answer is of one moment, and never wait for the writer.

use std::collections::HashMap;

use rusqlite::params;

use super::{SqliteFile, StoredMessage};
use crate::error::Result;
use crate::view::{Depth, TopicView};

/// Every topic, by name (`topics.name` is unique: its index walks them in order).
pub(super) const VIEW_TOPICS: &str = "SELECT id, name, retained FROM topics ORDER BY name";
/// Every group with its ready counter and a count of each of the two other states, each by its
/// partial index (delayed: `deliveries_delayed`; in flight: `deliveries_leased`). The backlog
/// of ready rows is never walked.
pub(super) const VIEW_GROUPS: &str = "SELECT g.topic_id, g.name, g.ready, \
    (SELECT count(*) FROM deliveries WHERE group_id = g.id AND state = 1), \
    (SELECT count(*) FROM deliveries WHERE group_id = g.id AND state = 2) \
    FROM consumer_groups AS g";
/// The first `?2` messages `?1` retains as a new named group would hand them out: the takeover
/// (`publish.rs`) queues them in publish order (`retained.message`) with their priority, and a
/// claim takes the highest priority first. The topic's retained entries are found by the
/// primary key; ordering them by priority is a sort of the top `?2` over them (the retained
/// messages of one topic are bounded by its retention limit).
pub(super) const PEEK_RETAINED: &str = "SELECT m.msg_id, m.payload, m.metadata, m.priority, m.timestamp_ms \
    FROM topics AS t JOIN retained AS r ON r.topic_id = t.id JOIN messages AS m ON m.id = r.message \
    WHERE t.name = ?1 ORDER BY m.priority DESC, r.message LIMIT ?2";

impl SqliteFile {
    /// See `Store::view`.
    pub fn view(&self) -> Result<Vec<TopicView>> {
        self.readers.with(|c| {
            let tx = c.unchecked_transaction()?;
            let mut topics: Vec<(i64, TopicView)> = tx
                .prepare_cached(VIEW_TOPICS)?
                .query_map([], |r| {
                    let view = TopicView {
                        name: r.get(1)?,
                        retained: r.get::<_, i64>(2)?.max(0) as u64,
                        ..Default::default()
                    };
                    Ok((r.get(0)?, view))
                })?
                .collect::<rusqlite::Result<_>>()?;
            let index: HashMap<i64, usize> = topics.iter().enumerate().map(|(i, (id, _))| (*id, i)).collect();
            let mut stmt = tx.prepare_cached(VIEW_GROUPS)?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                let Some(&i) = index.get(&r.get::<_, i64>(0)?) else { continue };
                let count = |col: usize| r.get::<_, i64>(col).map(|n| n.max(0) as u64);
                let depth = Depth { ready: count(2)?, delayed: count(3)?, in_flight: count(4)? };
                topics[i].1.add_group(r.get(1)?, depth);
            }
            drop(rows);
            drop(stmt);
            tx.finish()?;
            Ok(topics
                .into_iter()
                .map(|(_, mut t)| {
                    t.sort_groups();
                    t
                })
                .collect())
        })
    }

    /// The first `max` messages `topic` retains, in the order a named group created now would
    /// hand them out (see `PEEK_RETAINED`); none for a topic that has a named group (it took
    /// them over) or does not exist.
    pub fn peek_retained(&self, topic: &str, max: usize) -> Result<Vec<StoredMessage>> {
        let limit = i64::try_from(max).unwrap_or(i64::MAX);
        self.readers.with(|c| {
            c.prepare_cached(PEEK_RETAINED)?
                .query_map(params![topic, limit], |r| {
                    Ok(StoredMessage {
                        id: r.get(0)?,
                        payload: r.get(1)?,
                        metadata: r.get(2)?,
                        priority: r.get(3)?,
                        timestamp_ms: r.get::<_, i64>(4)?.max(0) as u64,
                    })
                })?
                .collect()
        })
    }
}
