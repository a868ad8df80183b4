//! Settlement: how a delivery ends (ack, nack, requeue), whoever decides it (a handler's
//! verdict, an ack or nack by id, an ack deadline), the attempt limit and dead letters, and the
//! timer's jobs. The store is told first; counters and events follow only once it agreed, so a
//! store failure changes nothing (an ack or nack by id then returns the error, and the delivery
//! still awaits it). One exception: a requeue's failure event goes out just before the store
//! call, so that listeners always hear of the failure before the redelivery.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Shared;
use super::CLOSED;
use crate::broker::group::Group;
use crate::broker::pending::PendingAck;
use crate::broker::policy::DeliveryPolicy;
use crate::broker::timer::{self, Job};
use crate::broker::PublishOptions;
use crate::error::{Error, ErrorKind, Result};
use crate::handler::Reason;
use crate::listener::Event;
use crate::log::log;
use crate::message::Delivery;
use crate::stats::TopicCounters;
use crate::store::{Requeue, Requeued};

/// How a delivery ends, whoever decides it (handler verdict or a later ack/nack).
pub(crate) enum Outcome {
    Ack,
    Nack(Reason),
    /// Requeue, after the delay if one is given.
    Requeue(Reason, Option<Duration>),
}

/// A settle the store refused: its error, and the delivery, unchanged.
pub(super) type Refused = (Error, Delivery);

impl Shared {
    /// Settles a delivery that is in flight by `outcome`: in the store first, then counters and
    /// events. Returns whether it is finished for this broker (acked, failed, dead-lettered or
    /// dropped; or requeued into a shared store, where it is everyone's again): the caller
    /// then reports it to `quiesce`, so that a worker can report a whole batch at once.
    pub(super) fn settle(
        &self,
        delivery: Delivery,
        group: Option<&Arc<Group>>,
        c: &Arc<TopicCounters>,
        policy: &DeliveryPolicy,
        outcome: Outcome,
    ) -> Result<bool, Refused> {
        match outcome {
            Outcome::Ack => {
                if let Some(g) = group {
                    if let Err(e) = g.queue.settle(std::slice::from_ref(&delivery)) {
                        return Err((e, delivery));
                    }
                }
                self.count_processed(c, delivery);
                Ok(true)
            }
            Outcome::Nack(reason) => self.give_up(delivery, group, c, policy, reason),
            Outcome::Requeue(reason, _) if !policy.may_retry(delivery.attempt) => {
                let reason = format!("{reason}; attempt {} of at most {}", delivery.attempt, policy.max_attempts);
                self.give_up(delivery, group, c, policy, reason.into())
            }
            Outcome::Requeue(reason, delay) => match group.filter(|g| g.is_active() && self.state() != CLOSED) {
                Some(group) => self.requeue(delivery, group, c, reason, delay),
                None => {
                    self.count_dropped_in_flight(c);
                    let reason = format!("{reason}; not requeued: its group is gone");
                    self.emit(|| Event::Failed(delivery, reason.into(), false));
                    Ok(true)
                }
            },
        }
    }

    fn requeue(
        &self,
        delivery: Delivery,
        group: &Arc<Group>,
        c: &Arc<TopicCounters>,
        reason: Reason,
        delay: Option<Duration>,
    ) -> Result<bool, Refused> {
        let due = delay.filter(|d| !d.is_zero()).map(timer::after);
        // Reported before the delivery is back in its queue, so that listeners hear of the
        // failure before its redelivery.
        self.emit(|| Event::Failed(delivery.clone(), reason, true));
        if let (Some(at), false) = (due, self.capabilities.delayed_requeue) {
            // The store cannot delay: the delivery stays claimed until it is due, and then the
            // timer requeues it (as the store's own delayed requeue would release it).
            self.count_requeued(c, true);
            self.quiesce.add_wake();
            let counters = Arc::clone(c);
            self.timer.schedule(at, Job::Requeue { delivery, group: Arc::downgrade(group), counters });
            return Ok(self.returned());
        }
        let how = due.map_or(Requeue::Now, Requeue::At);
        let back = match group.queue.requeue(&delivery, how) {
            Ok(back) => back,
            Err(e) => return Err((e, delivery)),
        };
        match back {
            Requeued::Ready => {
                self.count_requeued(c, false);
                self.wake(group, group.queue.len(), 1);
                Ok(self.returned())
            }
            Requeued::Delayed => {
                self.count_requeued(c, true);
                let at = due.unwrap_or_else(Instant::now);
                // Counted until the job runs (or close takes it back), for join.
                self.quiesce.add_wake();
                self.timer.schedule(at, Job::Wake { group: Arc::downgrade(group), counters: Arc::clone(c) });
                Ok(self.returned())
            }
            // Its group was removed meanwhile, or (shared store) its lease ran out and another
            // consumer has it now.
            Requeued::Gone => {
                self.count_dropped_in_flight(c);
                Ok(true)
            }
        }
    }

    /// Gives a delivery up: published to the policy's dead-letter topic if it has one (before
    /// it is removed from its group: a crash in between dead-letters it twice rather than
    /// never), then removed and counted failed.
    fn give_up(
        &self,
        delivery: Delivery,
        group: Option<&Arc<Group>>,
        c: &TopicCounters,
        policy: &DeliveryPolicy,
        reason: Reason,
    ) -> Result<bool, Refused> {
        let (reason, dead_lettered) = match &policy.dead_letter {
            None => (reason, false),
            Some(dlq) => match self.dead_letter(dlq, &delivery, &reason) {
                Ok(()) => (format!("{reason}; dead-lettered to {dlq:?}").into(), true),
                Err(e) => (format!("{reason}; could not dead-letter to {dlq:?}: {}", e.message()).into(), false),
            },
        };
        if let Some(g) = group {
            if let Err(e) = g.queue.settle(std::slice::from_ref(&delivery)) {
                return Err((e, delivery));
            }
        }
        self.count_failed(c, delivery, reason, dead_lettered);
        Ok(true)
    }

    /// Publishes a given-up delivery on `topic`: the same payload and priority, and its metadata
    /// with a "dead_letter" object added (original topic, group, message id, attempts, reason).
    fn dead_letter(&self, topic: &str, d: &Delivery, reason: &str) -> Result<()> {
        self.ensure_not_closed()?;
        let record = serde_json::json!({
            "topic": d.topic(),
            "group": d.group(),
            "message_id": d.parent_id(),
            "attempts": d.attempt(),
            "reason": reason,
        });
        let record = serde_json::to_vec(&record).expect("a JSON object serialises");
        // Spliced into the metadata's text rather than parsed and written again: what publish
        // accepted (any nesting, lone surrogate escapes, number spellings, key order) stays as
        // it was. A "dead_letter" member from an earlier dead-lettering is replaced.
        let meta = crate::json::set_member(d.metadata(), "dead_letter", &record)
            .ok_or_else(|| Error::new(ErrorKind::InvalidJson, "the delivery's metadata is not a JSON object"))?;
        let topic = self.topic(topic)?;
        let opts = PublishOptions { id: None, metadata: Some(&meta), priority: d.priority() };
        let message = self.make_message(&topic, d.payload(), &opts);
        // Never blocks: this runs on a worker or the timer thread.
        self.route(&topic, std::slice::from_ref(&message), false)
    }

    /// The error for an id that does not await an ack.
    fn not_pending(&self, id: u64) -> Error {
        if self.store.issued(self.delivery_ids.key_of(id)) {
            Error::new(
                ErrorKind::AlreadySettled,
                format!("delivery {id} is not awaiting an ack: already acked or nacked, or auto-acked"),
            )
        } else {
            Error::new(ErrorKind::UnknownDelivery, format!("no delivery with id {id} was ever issued"))
        }
    }

    pub(crate) fn settle_by_id(&self, id: u64, outcome: Outcome) -> Result<()> {
        self.ensure_not_closed()?;
        let Some(entry) = self.pending.remove(id) else {
            return Err(self.not_pending(id));
        };
        let group = entry.group.upgrade();
        match self.settle(entry.delivery, group.as_ref(), &entry.counters, &entry.policy, outcome) {
            Ok(finished) => {
                if finished {
                    self.quiesce.done_deliveries(1);
                }
                Ok(())
            }
            Err((e, delivery)) => {
                let back = PendingAck { delivery, group: entry.group, counters: entry.counters, policy: entry.policy };
                let _ = self.pending.insert(back);
                Err(e)
            }
        }
    }

    /// Acks every delivery in `ids` that awaits an ack, with one store call per group (one
    /// commit for a shared store). Returns how many were acked and the first failure with its
    /// index: one bad id does not leave the others unacked. A closed broker stops the batch.
    pub(crate) fn ack_batch(&self, ids: &[u64]) -> (usize, Option<(usize, Error)>) {
        let mut failure: Option<(usize, Error)> = None;
        let mut fail = |i: usize, e: Error| {
            if failure.as_ref().is_none_or(|(j, _)| i < *j) {
                failure = Some((i, e));
            }
        };
        let mut by_group: HashMap<*const Group, Vec<(usize, PendingAck)>> = HashMap::new();
        for (i, &id) in ids.iter().enumerate() {
            if let Err(e) = self.ensure_not_closed() {
                fail(i, e);
                break;
            }
            match self.pending.remove(id) {
                Some(entry) => by_group.entry(entry.group.as_ptr()).or_default().push((i, entry)),
                None => fail(i, self.not_pending(id)),
            }
        }
        let mut acked = 0;
        for (_, entries) in by_group {
            let deliveries: Vec<Delivery> = entries.iter().map(|(_, e)| e.delivery.clone()).collect();
            let stored = match entries[0].1.group.upgrade() {
                Some(g) => g.queue.settle(&deliveries),
                None => Ok(()),
            };
            match stored {
                Ok(()) => {
                    for (_, entry) in entries {
                        self.count_processed(&entry.counters, entry.delivery);
                        acked += 1;
                    }
                    self.quiesce.done_deliveries(deliveries.len() as u64);
                }
                Err(e) => {
                    fail(entries[0].0, e);
                    for (_, entry) in entries {
                        let _ = self.pending.insert(entry);
                    }
                }
            }
        }
        (acked, failure)
    }

    /// A timer job fell due.
    pub(super) fn run_job(&self, job: Job) {
        match job {
            Job::Deadline { id, attempt } => {
                let Some(entry) = self.pending.remove_attempt(id, attempt) else { return };
                entry.counters.expired.fetch_add(1, Ordering::Relaxed);
                let ms = entry.policy.ack_deadline.map_or(0, |d| d.as_millis());
                let reason = format!("ack deadline of {ms} ms passed (attempt {attempt})");
                log!(
                    self.log,
                    Warn,
                    "brokk::lease",
                    "delivery {id} of topic {} reclaimed: {reason}",
                    entry.delivery.topic()
                );
                let group = entry.group.upgrade();
                let outcome = Outcome::Requeue(reason.into(), None);
                match self.settle(entry.delivery, group.as_ref(), &entry.counters, &entry.policy, outcome) {
                    Ok(false) => {}
                    Ok(true) => self.quiesce.done_deliveries(1),
                    // The store failed; its lease (the deadline) has run out there, so the store
                    // redelivers it by itself.
                    Err(_) => {
                        self.count_lapsed(&entry.counters);
                        self.quiesce.done_deliveries(1);
                    }
                }
            }
            Job::Wake { group, counters } => {
                counters.delayed.fetch_sub(1, Ordering::Relaxed);
                counters.enqueued.fetch_add(1, Ordering::Relaxed);
                if let Some(group) = group.upgrade() {
                    let released = group.queue.release_due();
                    if released == 0 {
                        // A shared store that does not count it due yet (its clock): the
                        // poller looks again until it does.
                        self.poke_poller();
                    }
                    self.wake(&group, group.queue.len().max(released), 1);
                }
                self.quiesce.done_wake();
            }
            Job::Requeue { delivery, group, counters } => {
                counters.delayed.fetch_sub(1, Ordering::Relaxed);
                let back = group.upgrade().map(|g| (g.queue.requeue(&delivery, Requeue::Now), g));
                match back {
                    Some((Ok(Requeued::Ready | Requeued::Delayed), group)) => {
                        counters.enqueued.fetch_add(1, Ordering::Relaxed);
                        self.wake(&group, group.queue.len(), 1);
                    }
                    // Its group is gone (or, shared, its lease ran out and someone else has it,
                    // or the store failed and the lease will give it back): in process it is
                    // dropped here; a shared store's is no longer this broker's.
                    _ => {
                        if self.in_process {
                            counters.dropped.fetch_add(1, Ordering::Relaxed);
                            self.quiesce.done_deliveries(1);
                        }
                    }
                }
                self.quiesce.done_wake();
            }
        }
    }
}
