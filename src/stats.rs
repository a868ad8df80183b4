//! Statistics from C: a plain struct of totals, a JSON snapshot and the Prometheus text.

use std::ffi::{c_char, CString};

use super::boundary::guard;
use super::broker::brokk_broker;
use super::status::brokk_status;
use super::strings::{give_text, output, reference};

/// Broker-wide statistics at one moment. Counters only grow; gauges go up and down. After
/// brokk_broker_join returns OK every counter is exact, and
/// dispatched = processed + failed + requeued + lapsed.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct brokk_stats {
    /// Messages published (counter).
    pub published: u64,
    /// Messages published while their topic had no consumer group, with retention OFF: they
    /// went nowhere (counter). Under the other retention policies such messages are retained.
    pub unrouted: u64,
    /// Deliveries handed to a handler, redeliveries included (counter).
    pub dispatched: u64,
    /// Deliveries acked (counter).
    pub processed: u64,
    /// Deliveries given up: nacked without requeue, past their attempt limit, or whose handler
    /// panicked (counter).
    pub failed: u64,
    /// Deliveries nacked with requeue (counter).
    pub requeued: u64,
    /// Deliveries discarded unprocessed by unsubscribe, purge or close (counter).
    pub dropped: u64,
    /// Deliveries waiting for a worker (gauge). On SQLite, read from the file: what waits
    /// in its groups, whichever process opened them.
    pub queued: u64,
    /// Deliveries in a handler or awaiting a manual ack (gauge).
    pub in_flight: u64,
    /// Messages kept by topics that have no consumer group (gauge). On SQLite, read from the
    /// file.
    pub retained: u64,
    /// Retained messages discarded by the retention policy, purge or close (counter).
    pub retained_dropped: u64,
    /// Deliveries waiting out a requeue delay (gauge).
    pub delayed: u64,
    /// Ack deadlines that passed, each redelivering or giving up a delivery (counter).
    pub expired: u64,
    /// Deliveries given up and published to a dead-letter topic (counter; also in failed).
    pub dead_lettered: u64,
    /// Deliveries not made because their group's queue was full (BROKK_BACKPRESSURE_DROP;
    /// counter).
    pub full_dropped: u64,
    /// Consumer groups, each ungrouped subscription's own included (gauge).
    pub groups: u64,
    /// Topics known to the broker (gauge).
    pub topics: u64,
    /// Live subscriptions (gauge).
    pub subscriptions: u64,
    /// Live listeners (gauge).
    pub listeners: u64,
    /// Worker threads in the pool (gauge).
    pub workers: u64,
    /// Worker threads running a handler at this moment (gauge).
    pub workers_active: u64,
    /// Listener events dropped because the listener queue was full (counter).
    pub listener_events_dropped: u64,
    /// Milliseconds since brokk_broker_new (gauge).
    pub uptime_ms: u64,
    /// Hand-outs that ended with no verdict taking effect: dropped while in a handler or
    /// awaiting an ack (the subscription's group was removed, or a forced close), or on a shared
    /// store given back to it (a lease that ran out, a settle the store refused), to come back
    /// by itself (counter). After a successful join, dispatched = processed + failed +
    /// requeued + lapsed exactly.
    pub lapsed: u64,
}

/// Fills `*stats_out` with the broker's totals.
/// Out: on BROKK_STATUS_OK, `*stats_out`; untouched otherwise.
/// Threads: any thread, including from handlers and listeners.
/// Errors: NULL_ARGUMENT, CLOSED.
#[no_mangle]
pub unsafe extern "C" fn brokk_broker_stats(broker: *const brokk_broker, stats_out: *mut brokk_stats) -> brokk_status {
    guard(|| {
        // SAFETY: `broker` is NULL or a broker not yet freed (brokk_broker's contract).
        let broker = unsafe { reference(broker, "broker") }?;
        // SAFETY: `stats_out` is NULL or a writable brokk_stats for this call.
        let out = unsafe { output(stats_out, "stats_out") }?;
        let s = broker.inner.stats()?;
        let t = &s.totals;
        *out = brokk_stats {
            published: t.published,
            unrouted: t.unrouted,
            dispatched: t.dispatched,
            processed: t.processed,
            failed: t.failed,
            requeued: t.requeued,
            dropped: t.dropped,
            queued: t.queued,
            in_flight: t.in_flight,
            retained: t.retained,
            retained_dropped: t.retained_dropped,
            delayed: t.delayed,
            expired: t.expired,
            dead_lettered: t.dead_lettered,
            full_dropped: t.full_dropped,
            groups: t.groups,
            topics: s.topics.len() as u64,
            subscriptions: t.subscriptions,
            listeners: s.listeners,
            workers: s.workers,
            workers_active: s.workers_active,
            listener_events_dropped: s.listener_events_dropped,
            uptime_ms: s.uptime_ms,
            lapsed: t.lapsed,
        };
        Ok(())
    })
}

/// A JSON snapshot of the statistics, per topic and broker-wide (schema in
/// docs/c-api.md, "Statistics").
/// Out: on BROKK_STATUS_OK, `*json_out` holds a NUL-terminated string that the caller owns and
/// must release with brokk_string_free, and `*json_len_out` (if not NULL) its length without
/// the NUL; both untouched otherwise.
/// Threads: any thread, including from handlers and listeners.
/// Errors: NULL_ARGUMENT, CLOSED.
#[no_mangle]
pub unsafe extern "C" fn brokk_broker_stats_json(
    broker: *const brokk_broker,
    json_out: *mut *mut c_char,
    json_len_out: *mut usize,
) -> brokk_status {
    guard(|| {
        // SAFETY: `broker` is NULL or a broker not yet freed (brokk_broker's contract).
        let broker = unsafe { reference(broker, "broker") }?;
        // SAFETY: `json_out` is NULL or a writable pointer slot for this call.
        let out = unsafe { output(json_out, "json_out") }?;
        let text = broker.inner.stats()?.to_json();
        // SAFETY: `json_len_out` is NULL or a writable usize for this call.
        give_text(text, out, unsafe { json_len_out.as_mut() });
        Ok(())
    })
}

/// The statistics in the Prometheus text exposition format 0.0.4, ready to serve from a
/// `/metrics` endpoint (`Content-Type: text/plain; version=0.0.4`): per-topic families labelled
/// `topic` (counters end in `_total`), broker-wide gauges unlabelled; broker totals are the sums
/// of the per-topic series (names in docs/c-api.md, "Prometheus").
/// Out: on BROKK_STATUS_OK, `*text_out` holds a NUL-terminated string that the caller owns and
/// must release with brokk_string_free, and `*text_len_out` (if not NULL) its length without
/// the NUL; both untouched otherwise.
/// Threads: any thread, including from handlers and listeners.
/// Errors: NULL_ARGUMENT, CLOSED.
#[no_mangle]
pub unsafe extern "C" fn brokk_broker_stats_prometheus(
    broker: *const brokk_broker,
    text_out: *mut *mut c_char,
    text_len_out: *mut usize,
) -> brokk_status {
    guard(|| {
        // SAFETY: `broker` is NULL or a broker not yet freed (brokk_broker's contract).
        let broker = unsafe { reference(broker, "broker") }?;
        // SAFETY: `text_out` is NULL or a writable pointer slot for this call.
        let out = unsafe { output(text_out, "text_out") }?;
        let text = broker.inner.stats()?.to_prometheus();
        // SAFETY: `text_len_out` is NULL or a writable usize for this call.
        give_text(text, out, unsafe { text_len_out.as_mut() });
        Ok(())
    })
}

/// Releases a string that brokk returned as owned by the caller (brokk_broker_stats_json,
/// brokk_broker_stats_prometheus, brokk_broker_store_view_json,
/// brokk_broker_store_view_prometheus, brokk_broker_take_until).
/// Takes: `s`, which must not be used afterwards. NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn brokk_string_free(s: *mut c_char) {
    super::boundary::guard_value(|| {
        if !s.is_null() {
            // SAFETY: non-NULL, so it came from CString::into_raw in one of the functions
            // listed above, and the caller hands it over.
            drop(unsafe { CString::from_raw(s) });
        }
    })
}
