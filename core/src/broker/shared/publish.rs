//! Publish: checks, then one store call that fans the messages out to every group of the topic
//! (or retains them while it has none), under backpressure; then counters, events, and waking
//! the local consumers that got them.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::{PublishInProgress, Shared, CLOSED};
use crate::broker::group::Group;
use crate::broker::ids::GENERATED_ID_LEN;
use crate::broker::timer;
use crate::broker::topics::Topic;
use crate::broker::{BatchMessage, PublishOptions};
use crate::config::Backpressure;
use crate::error::{Error, ErrorKind, Result};

/// How old a shared store's count of a group may be for a publish to take it as it is (see
/// `admit`).
const BACKLOG_MAX_AGE: Duration = Duration::from_millis(50);
use crate::listener::Event;
use crate::message::{Delivery, Message};
use crate::names::{validate_id, validate_topic};
use crate::store::{Fanout, GroupQueue, Published, Receipt, Retention};

/// Groups that backpressure `Drop` leaves out of one publish, by index: a bit each for the
/// first 64 (the usual case: no allocation), a list beyond.
#[derive(Default)]
pub(super) struct Skip {
    bits: u64,
    more: Vec<usize>,
    count: usize,
}

impl Skip {
    fn add(&mut self, i: usize) {
        match i {
            0..=63 => self.bits |= 1 << i,
            _ => self.more.push(i),
        }
        self.count += 1;
    }

    fn is(&self, i: usize) -> bool {
        match i {
            0..=63 => self.bits & (1 << i) != 0,
            _ => self.more.contains(&i),
        }
    }

    fn count(&self) -> usize {
        self.count
    }
}

/// The store's view of the local groups of one publish.
struct Receivers<'a> {
    groups: &'a [Arc<Group>],
    skip: &'a Skip,
}

impl Fanout for Receivers<'_> {
    fn len(&self) -> usize {
        self.groups.len()
    }
    fn receivers(&self) -> usize {
        self.groups.len() - self.skip.count()
    }
    fn queue(&self, i: usize) -> &dyn GroupQueue {
        &*self.groups[i].queue
    }
    fn receiving(&self, i: usize) -> Option<&dyn GroupQueue> {
        (!self.skip.is(i)).then(|| &*self.groups[i].queue)
    }
}

impl Shared {
    /// Counts a publish as in progress while the guard lives, so that a close that starts
    /// meanwhile waits for it instead of dropping what it is about to queue. Counted before the
    /// state is checked: a close that sees no publish in progress sees every later one refused.
    fn publishing(&self) -> Result<PublishInProgress<'_>> {
        self.quiesce.add_publish();
        let guard = PublishInProgress(&self.quiesce);
        self.ensure_open()?;
        Ok(guard)
    }

    fn check_message(&self, payload: &[u8], opts: &PublishOptions<'_>) -> Result<()> {
        self.capabilities.check_priority(opts.priority, self.store.name())?;
        if payload.len() > self.max_payload {
            return Err(Error::new(
                ErrorKind::PayloadTooLarge,
                format!("payload is {} bytes; this broker accepts at most {}", payload.len(), self.max_payload),
            ));
        }
        validate_json(payload, "payload")?;
        if let Some(md) = opts.metadata {
            validate_metadata(md)?;
        }
        if let Some(id) = opts.id {
            validate_id(id)?;
        }
        Ok(())
    }

    pub(super) fn make_message(&self, topic: &Topic, payload: &[u8], opts: &PublishOptions<'_>) -> Message {
        let mut id_buf = [0u8; GENERATED_ID_LEN];
        let id = match opts.id {
            Some(id) => id,
            None => self.ids.next(&mut id_buf),
        };
        Message::new(&topic.name, id, payload, opts.metadata, opts.priority)
    }

    pub(crate) fn publish(&self, topic: &str, payload: &[u8], opts: &PublishOptions<'_>) -> Result<Message> {
        let _in_progress = self.publishing()?;
        validate_topic(topic)?;
        self.check_message(payload, opts)?;
        let topic = self.topic(topic)?;
        let message = self.make_message(&topic, payload, opts);
        self.route(&topic, std::slice::from_ref(&message), true)?;
        Ok(message)
    }

    /// Publishes every message of `batch` on `topic`, or none: all are checked first, and the
    /// store gives each group the whole batch at once, so its consumers see all or nothing.
    pub(crate) fn publish_batch(&self, topic: &str, batch: &[BatchMessage<'_>]) -> Result<Vec<Message>> {
        let _in_progress = self.publishing()?;
        validate_topic(topic)?;
        for (i, m) in batch.iter().enumerate() {
            self.check_message(m.payload, &m.options)
                .map_err(|e| Error::new(e.kind(), format!("message {i} of the batch: {}", e.message())))?;
        }
        let topic = self.topic(topic)?;
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let messages: Vec<_> = batch.iter().map(|m| self.make_message(&topic, m.payload, &m.options)).collect();
        self.route(&topic, &messages, true)?;
        Ok(messages)
    }

    /// Hands messages to every group of the topic, or retains them while it has none. A local
    /// group whose queue is full gets the backpressure policy (blocking only where
    /// `may_block`).
    pub(super) fn route(&self, topic: &Topic, messages: &[Message], may_block: bool) -> Result<()> {
        let mut groups = topic.groups();
        let mut skip = self.admit(topic, &groups, messages.len(), may_block)?;
        let receipt = match self.store_publish(topic, &groups, &skip, messages)? {
            Some(receipt) => receipt,
            // The topic's first group was being created: publish again in order with it (group
            // changes hold this lock), so that nothing overtakes the messages it took over.
            // Admission may wait for room (backpressure Block), which subscribe and
            // unsubscribe on this topic must not wait behind: it happens before the lock is
            // taken, and again if the groups changed meanwhile.
            None => loop {
                groups = topic.groups();
                skip = self.admit(topic, &groups, messages.len(), may_block)?;
                let _order = topic.order.lock();
                if !Arc::ptr_eq(&groups, &topic.groups()) {
                    continue;
                }
                if let Some(receipt) = self.store_publish(topic, &groups, &skip, messages)? {
                    break receipt;
                }
            },
        };
        let n = messages.len() as u64;
        let c = &topic.counters;
        c.published.fetch_add(n, Ordering::Relaxed);
        if receipt.no_group {
            if self.retention == Retention::Off {
                c.unrouted.fetch_add(n, Ordering::Relaxed);
            } else {
                c.retained.store(receipt.held, Ordering::Relaxed);
            }
            c.retained_dropped.fetch_add(receipt.discarded, Ordering::Relaxed);
        }
        for m in messages {
            self.emit(|| Event::Published(Delivery::of_published(m.clone())));
        }
        for (i, group) in groups.iter().enumerate() {
            if skip.is(i) {
                continue;
            }
            // Unsubscribe and close deactivate first and discard after; checking after our
            // publish means one of the two discards sees these deliveries.
            if !group.is_active() {
                self.discard_queued(group);
                continue;
            }
            self.wake(group, group.queue.len(), messages.len());
        }
        Ok(())
    }

    /// One store publish to `groups`, less those backpressure skips. None: the store saw a
    /// group that `groups` lacks (see `Published::GroupsChanged`), and nothing was done.
    #[inline]
    fn store_publish(
        &self,
        topic: &Topic,
        groups: &[Arc<Group>],
        skip: &Skip,
        messages: &[Message],
    ) -> Result<Option<Receipt>> {
        let total = (messages.len() * (groups.len() - skip.count())) as u64;
        // Counted before any consumer can see them.
        self.queued(total);
        let c = &topic.counters;
        if total > 0 {
            c.enqueued.fetch_add(total, Ordering::Relaxed);
        }
        match topic.store.publish(messages, &Receivers { groups, skip }, self.retention) {
            Ok(Published::Done(receipt)) => Ok(Some(receipt)),
            other => {
                self.unqueued(total);
                if total > 0 {
                    c.enqueued.fetch_sub(total, Ordering::Relaxed);
                }
                other.map(|_| None)
            }
        }
    }

    /// Which local groups take `n` more deliveries under the queue capacity. A full group waits
    /// (Block, up to the publish timeout), fails the whole publish (Fail, or Block timed out),
    /// or is left out (Drop). The capacity is a soft bound: publishers admitted at the same
    /// moment may each add their messages.
    ///
    /// A shared store's count comes from the store, because other processes publish into the
    /// group too; a count read less than `BACKLOG_MAX_AGE` ago (by a claim, the poller or an
    /// earlier publish) is taken as it is, plus this broker's own additions since, so that a
    /// publish does not cost a second round trip to a server. What others added within that
    /// window may go over the capacity; a group that looks full is read again before it counts
    /// as full.
    fn admit(&self, topic: &Topic, groups: &[Arc<Group>], n: usize, may_block: bool) -> Result<Skip> {
        let cap = self.queue_capacity;
        let mut full = Skip::default();
        for (i, g) in groups.iter().enumerate() {
            let mut len = if self.in_process { g.queue.len() } else { g.queue.backlog(BACKLOG_MAX_AGE)? };
            if len + n > cap && !self.in_process {
                len = g.queue.backlog(Duration::ZERO)?;
            }
            if len + n > cap {
                full.add(i);
            }
        }
        if full.count() == 0 {
            return Ok(full);
        }
        let first_full = || &groups[(0..groups.len()).find(|&i| full.is(i)).expect("one is full")];
        let refuse = |g: &Group, waited: Option<Duration>| {
            let how = waited.map_or(String::new(), |w| format!(" after waiting {} ms", w.as_millis()));
            Error::new(
                ErrorKind::Full,
                format!(
                    "the queue of group {} on topic {:?} holds {} of at most {cap} deliveries{how}",
                    g.name.as_deref().map_or("(ungrouped)".to_owned(), |n| format!("{n:?}")),
                    topic.name,
                    g.queue.len()
                ),
            )
        };
        match self.backpressure {
            Backpressure::Fail => Err(refuse(first_full(), None)),
            Backpressure::Block if !may_block => Err(refuse(first_full(), None)),
            Backpressure::Block => {
                let deadline = timer::after(self.publish_timeout);
                for g in groups {
                    if !g.wait_for_room(n, cap, deadline, || self.state() != CLOSED, || self.poke_poller()) {
                        return Err(refuse(g, Some(self.publish_timeout)));
                    }
                }
                self.ensure_open()?;
                Ok(Skip::default())
            }
            Backpressure::Drop => {
                topic.counters.full_dropped.fetch_add((full.count() * n) as u64, Ordering::Relaxed);
                Ok(full)
            }
        }
    }
}

fn validate_json(bytes: &[u8], what: &str) -> Result<()> {
    crate::json::validate(bytes)
        .map_err(|e| Error::new(ErrorKind::InvalidJson, format!("{what} is not valid JSON: {e}")))
}

fn validate_metadata(bytes: &[u8]) -> Result<()> {
    validate_json(bytes, "metadata")?;
    if !crate::json::is_object(bytes) {
        return Err(Error::new(ErrorKind::InvalidJson, "metadata must be a JSON object"));
    }
    Ok(())
}
