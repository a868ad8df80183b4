//! One topic of the Redis store: groups registered in the topic's registry, and publish as one
//! script that fans out to every group of the topic in every process, or retains.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use super::combine::{Args, Combiner};
use super::conn::Effect;
use super::{keys, reply, scripts, Local, RedisQueue};
use crate::error::{Error, ErrorKind, Result};
use crate::message::{Message, Peeked};
use crate::store::{Fanout, Gauges, GroupQueue, OpenedGroup, Published, Receipt, Retention, TopicStore};

const OPENED: Effect = Effect::Changes(
    "the group may or may not have been registered in Redis (a new named group takes over the \
     topic's retained messages): doing it again is safe",
);
const REMOVED: Effect = Effect::Changes(
    "the group may or may not have been removed from Redis, with what waits in it: removing it \
     again is safe",
);
pub(super) const PUBLISHED: Effect = Effect::Changes(
    "the message may or may not have been published: publishing it again may publish it twice \
     (check for it first, by its id, if duplicates matter)",
);

pub(super) struct RedisTopic {
    local: Arc<Local>,
    name: Arc<str>,
    base: Arc<str>,
    index: u64,
    /// Publishes of several threads that meet go in one call (see `combine.rs`).
    combiner: Combiner,
}

impl RedisTopic {
    pub fn new(local: Arc<Local>, name: Arc<str>, base: Arc<str>, index: u64) -> Self {
        RedisTopic { local, name, base, index, combiner: Combiner::default() }
    }
}

/// (ready deliveries of the topic's groups, retained messages).
pub(super) fn figures(local: &Local, base: &str) -> Result<(u64, u64)> {
    let r = reply::array(local.script("count", Effect::Reads, &scripts::TOPIC_FIGURES, base, |_| {})?, "count")?;
    match r.as_slice() {
        [q, r] => Ok((reply::int(q, "count")?.max(0) as u64, reply::int(r, "count")?.max(0) as u64)),
        _ => Err(reply::malformed("count")),
    }
}

/// See `Store::count_group`: the group's ready count (`group_figures.lua`, read-only).
pub(super) fn count_group(local: &Local, topic: &str, group: &str) -> Result<u64> {
    let what = "count a group";
    let base = keys::base(&local.prefix, topic);
    let r = local.script(what, Effect::Reads, &scripts::GROUP_FIGURES, &base, |call| {
        call.arg(keys::named_group(group)).arg(local.spared());
    })?;
    match reply::array(r, what)?.first() {
        Some(ready) => Ok(reply::int(ready, what)?.max(0) as u64),
        None => Err(reply::malformed(what)),
    }
}

/// See `Store::purge_group`: one script (`purge_group.lua`).
pub(super) fn purge_group(local: &Local, topic: &str, group: &str) -> Result<u64> {
    let what = "purge a group";
    let base = keys::base(&local.prefix, topic);
    let effect = Effect::Changes("the purge of this group may or may not have been done: purging again is safe");
    let r = local.script(what, effect, &scripts::PURGE_GROUP, &base, |call| {
        call.arg(keys::named_group(group));
    })?;
    Ok(reply::int(&r, what)?.max(0) as u64)
}

/// See `Store::peek`: one read-only script (`peek.lua`).
pub(super) fn peek(local: &Local, topic: &str, group: &str, max: usize) -> Result<Vec<Peeked>> {
    let what = "peek";
    let base = keys::base(&local.prefix, topic);
    let r = local.script(what, Effect::Reads, &scripts::PEEK, &base, |call| {
        call.arg(keys::named_group(group)).arg(max);
    })?;
    let mut values = reply::array(r, what)?.into_iter();
    let mut out = Vec::new();
    while let Some(attempt) = values.next() {
        let mut next = || values.next().ok_or_else(|| reply::malformed(what));
        let attempt = reply::int(&attempt, what)?.clamp(1, i64::from(u32::MAX)) as u32;
        let id = reply::text(next()?, what)?;
        let payload = reply::bytes(next()?, what)?;
        let has_meta = reply::int(&next()?, what)? == 1;
        let meta = reply::bytes(next()?, what)?;
        let priority = i32::try_from(reply::int(&next()?, what)?).map_err(|_| reply::malformed(what))?;
        let timestamp = reply::int(&next()?, what)?.max(0) as u64;
        let message = Message::restore(topic, &id, &payload, has_meta.then_some(meta.as_slice()), priority, timestamp);
        out.push(Peeked::new(message, attempt));
    }
    Ok(out)
}

impl TopicStore for RedisTopic {
    fn open_group(&self, name: Option<&str>) -> Result<OpenedGroup> {
        let local = &self.local;
        let (group, owner) = match name {
            Some(n) => (keys::named_group(n), ""),
            None => {
                let n = local.next_group.fetch_add(1, Ordering::Relaxed);
                let owner = local.owner.renewed.as_str();
                let group = keys::anonymous_group(owner, n);
                // Listed first: a broker that dies right after still has it collected.
                let list = keys::anonymous(&local.prefix, owner);
                let entry = format!("{} {group}", self.name);
                local.pool.run("register an anonymous group", |c| {
                    ::redis::cmd("SADD").arg(&list).arg(&entry).query::<()>(c.as_dyn())
                })?;
                (group, owner)
            }
        };
        let r = local.script("open a group", OPENED, &scripts::OPEN_GROUP, &self.base, |call| {
            call.arg(&group).arg(owner);
        })?;
        local.wrote();
        local.watch(&self.name);
        let r = reply::array(r, "open a group")?;
        let (taken_over, ready) = match r.as_slice() {
            [t, n] => (reply::int(t, "open a group")?.max(0) as u64, reply::int(n, "open a group")?.max(0) as u64),
            _ => return Err(reply::malformed("open a group")),
        };
        let queue = RedisQueue::new(
            Arc::clone(local),
            Arc::clone(&self.name),
            Arc::clone(&self.base),
            self.index,
            Arc::from(group),
            name.map(Arc::from),
            ready,
        );
        Ok(OpenedGroup { queue: Arc::new(queue), taken_over })
    }

    fn remove_group(&self, queue: &dyn GroupQueue) -> Result<u64> {
        let queue = RedisQueue::of(queue);
        let local = &self.local;
        let r = local.script("remove a group", REMOVED, &scripts::REMOVE_GROUP, &self.base, |call| {
            call.arg(&*queue.group);
        })?;
        local.wrote();
        if queue.name.is_none() {
            let list = keys::anonymous(&local.prefix, &local.owner.renewed);
            let entry = format!("{} {}", self.name, queue.group);
            // Only a list entry: a failure leaves a reference that collection skips.
            let _ = local.pool.run("unregister an anonymous group", |c| {
                ::redis::cmd("SREM").arg(&list).arg(&entry).query::<()>(c.as_dyn())
            });
        }
        Ok(reply::int(&r, "remove a group")?.max(0) as u64)
    }

    fn publish(&self, messages: &[Message], groups: &dyn Fanout, retention: Retention) -> Result<Published> {
        let (mode, limit) = match retention {
            Retention::Off => ("off", 0),
            Retention::Reject(n) => ("reject", n),
            Retention::DropOldest(n) => ("oldest", n),
            Retention::DropNewest(n) => ("newest", n),
        };
        let skipped: Vec<&str> = (0..groups.len())
            .filter(|&i| groups.receiving(i).is_none())
            .map(|i| &*RedisQueue::of(groups.queue(i)).group)
            .collect();
        // This publish's part of the script's arguments (see publish.lua).
        let bytes: usize = messages.iter().map(|m| m.id().len() + m.payload().len() + 40).sum();
        let mut args = Args::with_capacity(4 + skipped.len() + 6 * messages.len(), bytes);
        args.push(mode).push_int(limit).push_int(skipped.len()).push_int(messages.len());
        for g in &skipped {
            args.push(g);
        }
        for m in messages {
            let meta = m.given_metadata();
            args.push(m.id()).push(m.payload()).push(if meta.is_some() { "1" } else { "0" });
            args.push(meta.unwrap_or(b"")).push_int(m.priority()).push_int(m.timestamp_ms());
        }
        // Each publish keeps to its own timeout, from now, even when it waits for others' call.
        let deadline = Instant::now() + self.local.pool.timeout();
        let r = self.combiner.publish(args, deadline, |batch, deadline| {
            let r = self.local.script_by(deadline, "publish", PUBLISHED, &scripts::PUBLISH, &self.base, |call| {
                call.arg(batch.len());
                for p in batch {
                    for a in p.args.iter() {
                        call.arg(a);
                    }
                }
            })?;
            reply::array(r, "publish")
        })?;
        self.local.wrote();
        let mut r = reply::array(r, "publish")?.into_iter();
        let (Some(no_group), Some(held), Some(discarded)) = (r.next(), r.next(), r.next()) else {
            return Err(reply::malformed("publish"));
        };
        let (no_group, held, discarded) =
            (reply::int(&no_group, "publish")?, reply::int(&held, "publish")?, reply::int(&discarded, "publish")?);
        if no_group < 0 {
            let Retention::Reject(limit) = retention else { return Err(reply::malformed("publish")) };
            return Err(Error::new(
                ErrorKind::Full,
                format!(
                    "topic {:?} has no consumer group and already retains {held} of at most {limit} messages",
                    self.name
                ),
            ));
        }
        let receivers: Vec<String> = r.map(|g| reply::text(g, "publish")).collect::<Result<_>>()?;
        for i in 0..groups.len() {
            let queue = RedisQueue::of(groups.queue(i));
            if receivers.iter().any(|g| **g == *queue.group) {
                queue.added(messages.len() as u64);
            }
        }
        Ok(Published::Done(Receipt { no_group: no_group == 1, held: held as u64, discarded: discarded as u64 }))
    }

    fn gauges(&self) -> Result<Option<Gauges>> {
        let (queued, retained) = figures(&self.local, &self.base)?;
        Ok(Some(Gauges { queued, retained }))
    }

    fn close(&self) -> u64 {
        0
    }
}
