//! Dispatch: push workers claim batches for their subscription and run its handler on each
//! delivery; pull consumers claim with fetch. Acks of one worker batch are settled in the store
//! together (one commit for a shared store, where a claim of 64 and an ack of 64 run ten times
//! faster than one at a time), before they are counted and reported. The price: a handler that
//! never returns holds back the acks of the deliveries before it in its batch, which a shared
//! store then redelivers once this broker closes or stops (at least once, still). A
//! subscription with an ack deadline claims one delivery at a time, so it never pays it.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::{spin_until, Outcome, Shared, CLOSED};
use crate::broker::group::Group;
use crate::broker::pending::PendingAck;
use crate::broker::policy::DeliveryPolicy;
use crate::broker::reentry;
use crate::broker::subscription::{Subscription, MAX_BATCH};
use crate::broker::timer::{self, Job};
use crate::broker::workers::Task;
use crate::broker::{FetchOptions, Taken, DEFAULT_GROUP};
use crate::cancel::Interrupt;
use crate::error::{Error, ErrorKind, Result};
use crate::handler::{Reason, Verdict};
use crate::listener::Event;
use crate::log::log;
use crate::message::Delivery;
use crate::names::{validate_group, validate_topic};
use crate::stats::TopicCounters;
use crate::store::{Lease, Requeue, Requeued, Take};

/// Batches a worker runs for one subscription before it lets others have the pool.
const MAX_TURNS: usize = 64;
/// How long a worker whose queue ran dry looks for more before it goes back to the pool.
const IDLE_SPIN: Duration = Duration::from_micros(50);

/// A worker's buffers, reused from batch to batch.
struct Buffers {
    batch: Vec<Delivery>,
    /// Acked in the batch, settled in the store at its end.
    acks: Vec<Delivery>,
}

impl Shared {
    pub(super) fn run_worker(self: Arc<Self>) {
        reentry::enter(self.owner());
        let mut buffers = Buffers { batch: Vec::with_capacity(MAX_BATCH), acks: Vec::with_capacity(MAX_BATCH) };
        while let Ok(task) = self.pool.rx.recv() {
            match task {
                Task::Stop => break,
                Task::Run(member) => self.serve(&member, &mut buffers),
            }
        }
    }

    /// Claims up to `max` deliveries of `group` into `out`; returns how many. Each gets this
    /// broker's delivery id here, the one place deliveries leave a store for a consumer.
    fn claim(&self, group: &Group, max: usize, lease: Lease, out: &mut Vec<Delivery>) -> Result<usize> {
        self.claiming(max);
        let start = out.len();
        let got = group.queue.claim(max, lease, out);
        for d in &mut out[start..] {
            d.id = self.delivery_ids.of_key(d.key);
        }
        self.claimed(max, *got.as_ref().unwrap_or(&0));
        got
    }

    /// Serves a claimed member batch after batch while its queue has work, instead of going
    /// back to the pool after each batch: under load a worker stays on its subscription, and
    /// publishers find its slot taken and do not wake anyone. When the queue runs dry the
    /// worker spins briefly for more (a wake-up through the pool costs a futex round trip, far
    /// more than a message), then releases the slot. After `MAX_TURNS` batches it goes back to
    /// the pool anyway, so that other subscriptions get their turn.
    fn serve(&self, member: &Arc<Subscription>, buffers: &mut Buffers) {
        let group = &member.group;
        let mut failed = false;
        for _ in 0..MAX_TURNS {
            if !member.is_active() || !group.is_active() || self.state() == CLOSED {
                break;
            }
            if group.queue.len() == 0 && !spin_until(IDLE_SPIN, || group.queue.len() > 0) {
                break;
            }
            // A batch when this member alone consumes the group with one worker: order is kept
            // and the store is visited once per batch; the price is that a higher priority
            // arriving meanwhile waits for the rest of the batch, so batches stay small.
            // A member running several handlers at once takes one delivery per worker: a batch
            // would run in sequence what its other workers could run beside it.
            let max = if member.concurrency > 1 {
                1
            } else {
                self.store.batch_size(group.contended(), member.policy.ack_deadline.is_some())
            };
            match self.claim(group, max, member.policy.lease(), &mut buffers.batch) {
                Ok(0) => continue,
                Ok(_) => {
                    group.made_room();
                    self.run_batch(member, buffers);
                }
                // The store failed (a shared store locked too long, say): the poller wakes the
                // group again later rather than this worker retrying at once.
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        member.release();
        let queued = group.queue.len();
        if queued > 0 && group.is_active() && !failed {
            self.wake(group, queued, 0);
        }
    }

    /// Runs the handler on each delivery of the batch (taken from the member's group), with the
    /// counters that publishers share (join's) updated once per batch rather than per delivery.
    fn run_batch(&self, member: &Arc<Subscription>, buffers: &mut Buffers) {
        let group = &member.group;
        // join waits for a running handler even once its delivery is settled (it may ack its
        // own delivery and go on).
        self.quiesce.add_handler();
        self.workers_active.fetch_add(1, Ordering::Relaxed);
        let mut finished = 0;
        let mut rest = buffers.batch.drain(..);
        while let Some(delivery) = rest.next() {
            if !member.is_active() || self.state() == CLOSED {
                // Stopped mid-batch: give back what was taken but not started.
                let unstarted: Vec<_> = std::iter::once(delivery).chain(rest.by_ref()).collect();
                finished += self.give_back(group, unstarted);
                break;
            }
            finished += u64::from(self.run_handler(member, delivery, &mut buffers.acks));
        }
        drop(rest);
        finished += self.flush_acks(group, &mut buffers.acks);
        self.workers_active.fetch_sub(1, Ordering::Relaxed);
        self.quiesce.done_deliveries(finished);
        self.quiesce.done_handler();
    }

    /// Settles the acks of a batch in the store, then counts and reports them; returns how
    /// many. If the store fails, they are reported failed with the reason, and stay the store's
    /// (a shared store redelivers them once this broker's lease on them ends).
    fn flush_acks(&self, group: &Group, acks: &mut Vec<Delivery>) -> u64 {
        if acks.is_empty() {
            return 0;
        }
        let c = &group.counters;
        let stored = group.queue.settle(acks);
        let n = acks.len() as u64;
        for d in acks.drain(..) {
            match &stored {
                Ok(()) => self.count_processed(c, d),
                Err(e) => {
                    let reason = format!("acked, but the store could not record it: {}", e.message());
                    self.count_failed(c, d, reason.into(), false);
                }
            }
        }
        n
    }

    /// Returns deliveries a member claimed but did not start to its group, where other members
    /// (in any process, for a shared store) can take them; dropped if the group or the broker
    /// is done. Returns how many are finished for this broker.
    fn give_back(&self, group: &Arc<Group>, unstarted: Vec<Delivery>) -> u64 {
        let n = unstarted.len() as u64;
        if !group.is_active() || self.state() == CLOSED {
            self.drop_unstarted(&group.counters, n);
            return n;
        }
        let mut finished = 0;
        // Last first: a store that puts each back at the front of its priority (memory) then
        // restores the batch's order; the shared stores put each back in its own place.
        for d in unstarted.into_iter().rev() {
            match group.queue.requeue(&d, Requeue::Unstarted) {
                Ok(Requeued::Ready) | Ok(Requeued::Delayed) => finished += u64::from(self.returned()),
                Ok(Requeued::Gone) | Err(_) => {
                    self.drop_unstarted(&group.counters, 1);
                    finished += 1;
                }
            }
        }
        let queued = group.queue.len();
        if queued > 0 {
            self.wake(group, queued, 0);
        }
        finished
    }

    /// Counts a delivery as handed out and, when it must be tracked (manual ack, or an ack
    /// deadline), registers it first so that it can be settled before the hand-over finishes.
    fn hand_out(&self, group: &Arc<Group>, delivery: &Delivery, tracked: bool, policy: &Arc<DeliveryPolicy>) {
        let c = &group.counters;
        self.count_handed_out(c);
        if tracked {
            let replaced = self.pending.insert(PendingAck {
                delivery: delivery.clone(),
                group: Arc::downgrade(group),
                counters: Arc::clone(c),
                policy: Arc::clone(policy),
            });
            if replaced {
                // A shared store gave this broker the same delivery again (its lease ran out
                // before it was settled): the old hand-out can no longer settle anything.
                log!(self.log, Warn, "brokk::lease", "delivery {} of topic {} (group {}) came back after its lease ran out: handed out again (attempt {}); the earlier hand-out can no longer settle it", delivery.id, group.topic, group.name.as_deref().unwrap_or("(ungrouped)"), delivery.attempt);
                self.count_lapsed(c);
                self.quiesce.done_deliveries(1);
            }
            if let Some(d) = policy.ack_deadline {
                self.timer.schedule(timer::after(d), Job::Deadline { id: delivery.id, attempt: delivery.attempt });
            }
        }
        self.emit(|| Event::Dispatched(delivery.clone()));
    }

    /// A delivery that comes back past its attempt limit without anyone requeueing it (in a
    /// shared store: the lease of a consumer that stopped ran out) is given up instead of
    /// handed out. Returns whether it was.
    #[inline]
    fn past_limit(&self, group: &Arc<Group>, delivery: &Delivery, policy: &DeliveryPolicy) -> bool {
        policy.max_attempts != 0
            && delivery.attempt > policy.max_attempts
            && self.give_up_unstarted(group, delivery, policy)
    }

    #[cold]
    fn give_up_unstarted(&self, group: &Arc<Group>, delivery: &Delivery, policy: &DeliveryPolicy) -> bool {
        let c = &group.counters;
        self.count_handed_out(c);
        let reason = format!(
            "came back after its lease ran out; attempt {} of at most {}",
            delivery.attempt, policy.max_attempts
        );
        let outcome = Outcome::Nack(reason.into());
        if let Err((_, d)) = self.settle(delivery.clone(), Some(group), c, policy, outcome) {
            // Still leased to this broker: it comes back once more after the lease.
            self.count_lapsed(c);
            drop(d);
        }
        true
    }

    /// Runs the member's handler on one delivery and settles it by the verdict unless it
    /// awaits a manual ack; an ack goes to `acks`, settled at the end of the batch. Returns
    /// whether the delivery is finished now (see `settle`).
    fn run_handler(&self, member: &Arc<Subscription>, mut delivery: Delivery, acks: &mut Vec<Delivery>) -> bool {
        delivery.subscription = member.id;
        let group = &member.group;
        if self.past_limit(group, &delivery, &member.policy) {
            return true;
        }
        let tracked = member.manual_ack || member.policy.tracked();
        self.hand_out(group, &delivery, tracked, &member.policy);
        let verdict = member.handle(&delivery);
        let outcome = match verdict {
            Verdict::Later if member.manual_ack => return false,
            Verdict::Ack | Verdict::Later => Outcome::Ack,
            Verdict::Nack(r) => Outcome::Nack(r.unwrap_or(Reason::Borrowed("nacked by handler"))),
            Verdict::Requeue(r) => Outcome::Requeue(r.unwrap_or(Reason::Borrowed("requeued by handler")), None),
            Verdict::RequeueAfter(delay, r) => {
                Outcome::Requeue(r.unwrap_or(Reason::Borrowed("requeued by handler")), Some(delay))
            }
        };
        if !tracked {
            return self.conclude(delivery, group, &group.counters, &member.policy, outcome, acks);
        }
        // Settled here unless the handler already acked or nacked it by id, or its ack deadline
        // passed meanwhile (then it was redelivered, and this verdict is late).
        match self.pending.remove_attempt(delivery.id, delivery.attempt) {
            Some(entry) => self.conclude(entry.delivery, group, &entry.counters, &entry.policy, outcome, acks),
            None => false,
        }
    }

    /// Settles a handled delivery by its verdict: an ack goes to `acks`, settled at the end of
    /// the batch; the rest now. Returns whether it is finished now.
    fn conclude(
        &self,
        delivery: Delivery,
        group: &Arc<Group>,
        counters: &Arc<TopicCounters>,
        policy: &DeliveryPolicy,
        outcome: Outcome,
        acks: &mut Vec<Delivery>,
    ) -> bool {
        if let Outcome::Ack = outcome {
            acks.push(delivery);
            return false;
        }
        match self.settle(delivery, Some(group), counters, policy, outcome) {
            Ok(finished) => finished,
            // Nobody to tell: the delivery stays the store's, and comes back after its lease.
            Err(_) => {
                self.count_lapsed(counters);
                true
            }
        }
    }

    /// Takes up to `max` deliveries of a group on `topic` into `out`, waiting up to `timeout`
    /// for the first; the rest are what is queued at that moment. Each awaits `ack` or `nack`,
    /// under the options' ack deadline and attempt limit.
    pub(crate) fn fetch(
        &self,
        topic: &str,
        opts: &FetchOptions<'_>,
        max: usize,
        timeout: Option<Duration>,
        interrupt: Interrupt<'_>,
        out: &mut Vec<Delivery>,
    ) -> Result<()> {
        self.ensure_not_closed()?;
        if max == 0 {
            return Err(Error::new(ErrorKind::InvalidArgument, "a fetch must take at least 1 delivery (max is 0)"));
        }
        validate_topic(topic)?;
        let group_name = opts.group.unwrap_or(DEFAULT_GROUP);
        validate_group(group_name)?;
        let policy = match (opts.ack_deadline, opts.max_attempts, opts.dead_letter_topic) {
            // The usual fetch: one shared policy rather than an allocation per call.
            (None, 0, None) => Arc::clone(&self.plain_policy),
            (deadline, attempts, dlq) => Arc::new(DeliveryPolicy::new(deadline, attempts, dlq)?),
        };
        let topic = self.topic(topic)?;
        let group = self.named_group(&topic, group_name)?;
        let deadline = timeout.map(timer::after);
        let first = out.len();
        let got = group.take(
            out,
            deadline,
            interrupt,
            || self.state() != CLOSED,
            |out| self.claim(&group, max, policy.lease(), out),
            || self.poke_poller(),
        )?;
        if got == 0 && self.state() == CLOSED {
            return Err(Error::closed());
        }
        let mut i = first;
        while i < out.len() {
            if self.past_limit(&group, &out[i], &policy) {
                out.remove(i);
                self.quiesce.done_deliveries(1);
                continue;
            }
            self.hand_out(&group, &out[i], true, &policy);
            i += 1;
        }
        Ok(())
    }

    /// See `Broker::take`: a fetch whose delivery the store settles as it hands it out.
    pub(crate) fn take(
        &self,
        topic: &str,
        group: Option<&str>,
        timeout: Option<Duration>,
        interrupt: Interrupt<'_>,
        max_payload: usize,
    ) -> Result<Taken> {
        self.ensure_not_closed()?;
        validate_topic(topic)?;
        let group_name = group.unwrap_or(DEFAULT_GROUP);
        validate_group(group_name)?;
        let topic = self.topic(topic)?;
        let group = self.named_group(&topic, group_name)?;
        let deadline = timeout.map(timer::after);
        let mut found = Take::Empty;
        // `group.take` waits as a fetch does; the claim it calls is the store's take, which
        // leaves what it found in `found` (no Vec: nothing is held once it returns).
        group.take(
            &mut Vec::new(),
            deadline,
            interrupt,
            || self.state() != CLOSED,
            |_| {
                // Counted as a claim in progress while the store works, as a fetch's claim is.
                self.claiming(1);
                let taken = group.queue.take(max_payload);
                if !matches!(taken, Ok(Take::Got(_))) {
                    self.took(false);
                }
                found = taken?;
                Ok(usize::from(!matches!(found, Take::Empty)))
            },
            || self.poke_poller(),
        )?;
        let delivery = match found {
            Take::Got(mut delivery) => {
                delivery.id = self.delivery_ids.of_key(delivery.key);
                delivery
            }
            Take::TooLarge(size) => return Ok(Taken::TooLarge(size)),
            Take::Empty if self.state() == CLOSED => return Err(Error::closed()),
            Take::Empty => return Ok(Taken::Empty),
        };
        // Handed out and settled at once: the counts and events of a fetch and its ack.
        let c = &group.counters;
        self.count_handed_out(c);
        self.emit(|| Event::Dispatched(delivery.clone()));
        self.count_processed(c, delivery.clone());
        self.took(true);
        Ok(Taken::Message(delivery))
    }
}
