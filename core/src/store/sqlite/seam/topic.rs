//! One topic of the SQLite store: groups registered in the file, and publish as one
//! transaction that fans out to every group of the topic in every process.

use std::sync::Arc;

use super::{Local, SqliteQueue};
use crate::error::Result;
use crate::message::Message;
use crate::store::sqlite::{GroupId, NewMessage};
use crate::store::{Fanout, Gauges, GroupQueue, OpenedGroup, Published, Receipt, Retention, TopicStore};

pub(super) struct SqliteTopic {
    local: Arc<Local>,
    name: Arc<str>,
}

impl SqliteTopic {
    pub fn new(local: Arc<Local>, name: Arc<str>) -> Self {
        SqliteTopic { local, name }
    }
}

impl TopicStore for SqliteTopic {
    fn open_group(&self, name: Option<&str>) -> Result<OpenedGroup> {
        let file = &self.local.file;
        let (id, taken_over) = match name {
            Some(n) => file.open_named_group(&self.name, n)?,
            None => (file.anonymous_group(&self.name, &self.local.owner.renewed)?, 0),
        };
        self.local.wrote();
        let ready = file.ready_len(id)?;
        let queue = SqliteQueue::new(Arc::clone(&self.local), Arc::clone(&self.name), id, name.map(Arc::from), ready);
        Ok(OpenedGroup { queue: Arc::new(queue), taken_over })
    }

    fn remove_group(&self, queue: &dyn GroupQueue) -> Result<u64> {
        // What this broker held of it is counted where it is held.
        let (waiting, _held) = self.local.file.remove_group_counted(SqliteQueue::of(queue).id)?;
        self.local.wrote();
        Ok(waiting)
    }

    fn publish(&self, messages: &[Message], groups: &dyn Fanout, retention: Retention) -> Result<Published> {
        let skip: Vec<GroupId> = (0..groups.len())
            .filter(|&i| groups.receiving(i).is_none())
            .map(|i| SqliteQueue::of(groups.queue(i)).id)
            .collect();
        let batch: Vec<NewMessage<'_>> = messages
            .iter()
            .map(|m| NewMessage {
                id: m.id(),
                payload: m.payload(),
                metadata: m.given_metadata(),
                priority: m.priority(),
                timestamp_ms: m.timestamp_ms(),
            })
            .collect();
        let receipt = self.local.file.publish_except(&self.name, &batch, retention, &skip)?;
        self.local.wrote();
        for i in 0..groups.len() {
            let queue = SqliteQueue::of(groups.queue(i));
            if receipt.groups.contains(&queue.id) {
                queue.added(messages.len() as u64);
            }
        }
        Ok(Published::Done(Receipt { no_group: receipt.no_group, held: receipt.held, discarded: receipt.discarded }))
    }

    fn gauges(&self) -> Result<Option<Gauges>> {
        let (queued, retained) = self.local.file.topic_figures(&self.name)?;
        Ok(Some(Gauges { queued, retained }))
    }

    fn close(&self) -> u64 {
        0
    }
}
