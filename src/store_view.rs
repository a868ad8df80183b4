//! The store view from C: every topic the store holds, with what it retains and per consumer
//! group its deliveries by state, as JSON or as Prometheus text (docs/c-api.md, "Store view").

use std::ffi::c_char;

use super::boundary::guard;
use super::broker::brokk_broker;
use super::status::brokk_status;
use super::strings::{give_text, output, reference};

/// A JSON document of every topic the store holds, read from the store without changing
/// anything (no topic or group is created, no statistic changes): on SQLite and Redis every
/// process's topics and groups, on memory this broker's. Schema in docs/c-api.md ("Store
/// view"): `{"backend", "topics": {NAME: {"retained", "groups": {GROUP: {"ready", "delayed",
/// "in_flight"}}, "anonymous_groups", "anonymous": {...}}}}`.
/// Out: on BROKK_STATUS_OK, `*json_out` holds a NUL-terminated string that the caller owns and
/// must release with brokk_string_free, and `*json_len_out` (if not NULL) its length without
/// the NUL; both untouched otherwise.
/// Threads: any thread, including from handlers and listeners. Works while the broker is
/// closing; CLOSED once closed.
/// Errors: NULL_ARGUMENT, CLOSED, UNAVAILABLE, STORAGE_FAILED.
#[no_mangle]
pub unsafe extern "C" fn brokk_broker_store_view_json(
    broker: *const brokk_broker,
    json_out: *mut *mut c_char,
    json_len_out: *mut usize,
) -> brokk_status {
    guard(|| {
        // SAFETY: `broker` is NULL or a broker not yet freed (brokk_broker's contract).
        let broker = unsafe { reference(broker, "broker") }?;
        // SAFETY: `json_out` is NULL or a writable pointer slot for this call.
        let out = unsafe { output(json_out, "json_out") }?;
        let text = broker.inner.store_view()?.to_json();
        // SAFETY: `json_len_out` is NULL or a writable usize for this call.
        give_text(text, out, unsafe { json_len_out.as_mut() });
        Ok(())
    })
}

/// The store view in the Prometheus text exposition format 0.0.4, gauges named apart from the
/// statistics' (so both texts can be served together): `brokk_store_messages_retained{topic}`,
/// `brokk_store_anonymous_groups{topic}`, and per named group
/// `brokk_store_deliveries_ready{topic,group}`, `brokk_store_deliveries_delayed{...}` and
/// `brokk_store_deliveries_in_flight{...}` (a topic's anonymous groups together: `group=""`).
/// Out: on BROKK_STATUS_OK, `*text_out` holds a NUL-terminated string that the caller owns and
/// must release with brokk_string_free, and `*text_len_out` (if not NULL) its length without
/// the NUL; both untouched otherwise.
/// Threads: any thread, including from handlers and listeners. Works while the broker is
/// closing; CLOSED once closed.
/// Errors: NULL_ARGUMENT, CLOSED, UNAVAILABLE, STORAGE_FAILED.
#[no_mangle]
pub unsafe extern "C" fn brokk_broker_store_view_prometheus(
    broker: *const brokk_broker,
    text_out: *mut *mut c_char,
    text_len_out: *mut usize,
) -> brokk_status {
    guard(|| {
        // SAFETY: `broker` is NULL or a broker not yet freed (brokk_broker's contract).
        let broker = unsafe { reference(broker, "broker") }?;
        // SAFETY: `text_out` is NULL or a writable pointer slot for this call.
        let out = unsafe { output(text_out, "text_out") }?;
        let text = broker.inner.store_view()?.to_prometheus();
        // SAFETY: `text_len_out` is NULL or a writable usize for this call.
        give_text(text, out, unsafe { text_len_out.as_mut() });
        Ok(())
    })
}
