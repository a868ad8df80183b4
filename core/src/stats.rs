//! Statistics: per-topic atomic counters on the hot path, and snapshots built on demand.
//! Counters only grow; gauges go up and down. After quiescence (`join` returned OK) every
//! counter is exact and these identities hold per topic:
//!   dispatched = processed + failed + requeued + lapsed
//!   queued = in_flight = 0

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde_json::json;

/// Starts a new cache line inside a `#[repr(C)]` struct: the fields after it never share a
/// line with those before (128 bytes covers adjacent-line prefetching).
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct CacheLineBreak;

/// Live counters of one topic, shared by the topic and its subscriptions. Publishers write the
/// first block, consumers the second: on separate cache lines, so that the two sides do not
/// take the lines from each other on every message. `queued` is their difference for the same
/// reason.
#[derive(Debug, Default)]
#[repr(C)]
pub(crate) struct TopicCounters {
    // ---- written by publishers (and requeues) ----
    pub published: AtomicU64,
    pub unrouted: AtomicU64,
    /// Deliveries put in a group's queue (first time, requeued, released after a delay).
    pub enqueued: AtomicU64,
    pub subscriptions: AtomicU64,
    pub groups: AtomicU64,
    pub retained: AtomicU64,
    pub retained_dropped: AtomicU64,
    pub full_dropped: AtomicU64,
    _consumers: CacheLineBreak,
    // ---- written by consumers ----
    /// Deliveries taken out of a group's queue (handed out, or dropped unstarted).
    pub dequeued: AtomicU64,
    pub dispatched: AtomicU64,
    pub processed: AtomicU64,
    pub failed: AtomicU64,
    pub requeued: AtomicU64,
    pub dropped: AtomicU64,
    pub in_flight: AtomicU64,
    pub delayed: AtomicU64,
    pub expired: AtomicU64,
    pub dead_lettered: AtomicU64,
    /// Hand-outs that ended with no verdict taking effect (see `TopicStats::lapsed`).
    pub lapsed: AtomicU64,
}

impl TopicCounters {
    pub(crate) fn snapshot(&self, name: &str) -> TopicStats {
        TopicStats {
            name: name.to_owned(),
            published: self.published.load(Relaxed),
            unrouted: self.unrouted.load(Relaxed),
            dispatched: self.dispatched.load(Relaxed),
            processed: self.processed.load(Relaxed),
            failed: self.failed.load(Relaxed),
            requeued: self.requeued.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            // Dequeued first: a delivery taken between the two loads is not counted twice.
            queued: {
                let out = self.dequeued.load(Relaxed);
                self.enqueued.load(Relaxed).saturating_sub(out)
            },
            in_flight: self.in_flight.load(Relaxed),
            subscriptions: self.subscriptions.load(Relaxed),
            groups: self.groups.load(Relaxed),
            retained: self.retained.load(Relaxed),
            retained_dropped: self.retained_dropped.load(Relaxed),
            delayed: self.delayed.load(Relaxed),
            expired: self.expired.load(Relaxed),
            dead_lettered: self.dead_lettered.load(Relaxed),
            full_dropped: self.full_dropped.load(Relaxed),
            lapsed: self.lapsed.load(Relaxed),
        }
    }
}

/// One topic's numbers at one moment. Counters: published, unrouted, dispatched, processed,
/// failed, requeued, dropped, retained_dropped. Gauges: queued, in_flight, subscriptions,
/// groups, retained.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicStats {
    pub name: String,
    /// Messages published on the topic (counter).
    pub published: u64,
    /// Messages published while the topic had no group, with retention off (counter).
    pub unrouted: u64,
    /// Deliveries handed to a handler, redeliveries included (counter).
    pub dispatched: u64,
    /// Deliveries acked (counter).
    pub processed: u64,
    /// Deliveries nacked without requeue (counter).
    pub failed: u64,
    /// Deliveries nacked with requeue (counter).
    pub requeued: u64,
    /// Deliveries discarded unprocessed by unsubscribe, purge or close (counter).
    pub dropped: u64,
    /// Deliveries waiting for a worker (gauge).
    pub queued: u64,
    /// Deliveries in a handler or awaiting a manual ack (gauge).
    pub in_flight: u64,
    /// Live subscriptions (gauge).
    pub subscriptions: u64,
    /// Consumer groups, an ungrouped subscription's own included (gauge).
    pub groups: u64,
    /// Messages kept while the topic has no group (gauge).
    pub retained: u64,
    /// Retained messages discarded: by the retention policy, purge or close (counter).
    pub retained_dropped: u64,
    /// Deliveries waiting out a requeue delay (gauge).
    pub delayed: u64,
    /// Ack deadlines that passed, each redelivering or dead-lettering a delivery (counter).
    pub expired: u64,
    /// Deliveries given up and published to a dead-letter topic (counter; also in `failed`).
    pub dead_lettered: u64,
    /// Deliveries not made because their group's queue was full, backpressure Drop (counter).
    pub full_dropped: u64,
    /// Hand-outs (dispatched deliveries) that ended with no verdict taking effect: dropped while
    /// in a handler or awaiting an ack (their group was removed, or a forced close), or, on a
    /// shared store, given back to it (a lease that ran out, a settle the store refused) to
    /// come back by itself (counter). With it every hand-out has exactly one end:
    /// dispatched = processed + failed + requeued + lapsed + in_flight.
    pub lapsed: u64,
}

/// The whole broker at one moment: totals over all topics plus broker-wide figures.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BrokerStats {
    /// Sums over every topic (`name` is empty).
    pub totals: TopicStats,
    pub topics: Vec<TopicStats>,
    /// Live listeners (gauge).
    pub listeners: u64,
    /// Worker threads in the pool (gauge).
    pub workers: u64,
    /// Worker threads running a handler right now (gauge).
    pub workers_active: u64,
    /// Listener events dropped because the listener queue was full (counter).
    pub listener_events_dropped: u64,
    /// Milliseconds since the broker was created.
    pub uptime_ms: u64,
}

impl BrokerStats {
    pub(crate) fn add_topic(&mut self, t: TopicStats) {
        let s = &mut self.totals;
        s.published += t.published;
        s.unrouted += t.unrouted;
        s.dispatched += t.dispatched;
        s.processed += t.processed;
        s.failed += t.failed;
        s.requeued += t.requeued;
        s.dropped += t.dropped;
        s.queued += t.queued;
        s.in_flight += t.in_flight;
        s.subscriptions += t.subscriptions;
        s.groups += t.groups;
        s.retained += t.retained;
        s.retained_dropped += t.retained_dropped;
        s.delayed += t.delayed;
        s.expired += t.expired;
        s.dead_lettered += t.dead_lettered;
        s.full_dropped += t.full_dropped;
        s.lapsed += t.lapsed;
        self.topics.push(t);
    }

    /// The JSON snapshot whose schema docs/c-api.md ("Statistics") documents field by field.
    pub fn to_json(&self) -> String {
        let topic = |t: &TopicStats| {
            json!({
                "published": t.published,
                "unrouted": t.unrouted,
                "dispatched": t.dispatched,
                "processed": t.processed,
                "failed": t.failed,
                "requeued": t.requeued,
                "dropped": t.dropped,
                "queued": t.queued,
                "in_flight": t.in_flight,
                "subscriptions": t.subscriptions,
                "groups": t.groups,
                "retained": t.retained,
                "retained_dropped": t.retained_dropped,
                "delayed": t.delayed,
                "expired": t.expired,
                "dead_lettered": t.dead_lettered,
                "full_dropped": t.full_dropped,
                "lapsed": t.lapsed,
            })
        };
        let topics: serde_json::Map<String, serde_json::Value> =
            self.topics.iter().map(|t| (t.name.clone(), topic(t))).collect();
        json!({
            "broker": {
                "topics": self.topics.len(),
                "subscriptions": self.totals.subscriptions,
                "listeners": self.listeners,
                "workers": self.workers,
                "workers_active": self.workers_active,
                "listener_events_dropped": self.listener_events_dropped,
                "uptime_ms": self.uptime_ms,
            },
            "totals": topic(&self.totals),
            "topics": topics,
        })
        .to_string()
    }
}
