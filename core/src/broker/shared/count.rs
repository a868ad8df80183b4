//! How each step of a delivery's life is counted: the counters it moves and the listener event
//! it emits, in one place for every path that takes the step (a handler's verdict, an ack or
//! nack by id, a batch of acks, a take, an ack deadline, a lease that ran out), so that the
//! identity `dispatched = processed + failed + requeued + lapsed` (plus what is in flight)
//! holds by construction. The store is told before any of these run (see `settle`).

use std::sync::atomic::Ordering;

use super::Shared;
use crate::handler::Reason;
use crate::listener::Event;
use crate::message::Delivery;
use crate::stats::TopicCounters;

impl Shared {
    /// Handed out: to a handler, a fetch or a take. (Consumer-side counters only: their cache
    /// line is not one publishers write.)
    pub(super) fn count_handed_out(&self, c: &TopicCounters) {
        c.dequeued.fetch_add(1, Ordering::Relaxed);
        c.dispatched.fetch_add(1, Ordering::Relaxed);
        c.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    /// Acked, and the store has recorded it.
    pub(super) fn count_processed(&self, c: &TopicCounters, delivery: Delivery) {
        c.in_flight.fetch_sub(1, Ordering::Relaxed);
        c.processed.fetch_add(1, Ordering::Relaxed);
        self.emit(|| Event::Processed(delivery));
    }

    /// Given up (nacked, past its attempt limit, or acked where the store could not record
    /// it), and dead-lettered if `dead_lettered`.
    pub(super) fn count_failed(&self, c: &TopicCounters, delivery: Delivery, reason: Reason, dead_lettered: bool) {
        c.in_flight.fetch_sub(1, Ordering::Relaxed);
        c.failed.fetch_add(1, Ordering::Relaxed);
        if dead_lettered {
            c.dead_lettered.fetch_add(1, Ordering::Relaxed);
        }
        self.emit(|| Event::Failed(delivery, reason, false));
    }

    /// Back in its queue, now or (`delayed`) when its delay ends.
    pub(super) fn count_requeued(&self, c: &TopicCounters, delayed: bool) {
        c.in_flight.fetch_sub(1, Ordering::Relaxed);
        c.requeued.fetch_add(1, Ordering::Relaxed);
        if delayed {
            c.delayed.fetch_add(1, Ordering::Relaxed);
        } else {
            c.enqueued.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// No longer this broker's to settle, without an outcome: its lease ran out in a shared
    /// store (which hands it out again), or a settle of it failed there.
    pub(super) fn count_lapsed(&self, c: &TopicCounters) {
        c.in_flight.fetch_sub(1, Ordering::Relaxed);
        c.lapsed.fetch_add(1, Ordering::Relaxed);
    }

    /// To be requeued where nothing can take it again (its group is gone, or the broker is
    /// closing): dropped, and counted lapsed.
    pub(super) fn count_dropped_in_flight(&self, c: &TopicCounters) {
        self.count_lapsed(c);
        c.dropped.fetch_add(1, Ordering::Relaxed);
    }
}
