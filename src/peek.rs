//! Peek from C: the next deliveries of a consumer group, shown without being taken, in one
//! owned result that the caller reads by index and frees.

use std::ffi::c_char;

use super::boundary::{fail, guard, guard_value};
use super::broker::brokk_broker;
use super::status::brokk_status;
use super::strings::{brokk_str, optional_text, output, reference, text};
use brokk_core::Peeked;

/// The most deliveries one brokk_broker_peek shows.
pub const BROKK_MAX_PEEK: usize = 10000;

const _: () = assert!(BROKK_MAX_PEEK == brokk_core::MAX_PEEK);

/// What brokk_broker_peek showed: owned by the caller until brokk_peek_result_free. Immutable:
/// any thread may read it, concurrently.
pub struct brokk_peek_result {
    items: Vec<Peeked>,
}

/// One peeked delivery, as brokk_peek_result_read fills it. Its views are valid until
/// brokk_peek_result_free of the result they came from.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct brokk_peeked_fields {
    /// The topic the message was published on.
    pub topic: brokk_str,
    /// The message id (the id brokk_broker_publish returned). A peeked delivery has no delivery
    /// id: nothing was handed out.
    pub id: brokk_str,
    /// The JSON payload, byte for byte as published.
    pub payload: brokk_str,
    /// The metadata JSON object as published, or "{}".
    pub metadata: brokk_str,
    /// When the message was published, in milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// The message's priority (higher first).
    pub priority: i32,
    /// The attempt a fetch of it now would be: 1 if it was never handed out, one more for each
    /// requeue or lost lease.
    pub attempt: u32,
}

/// Shows the next `max` deliveries (1 to BROKK_MAX_PEEK) that brokk_broker_fetch on consumer
/// group `group` (`group_len` bytes; NULL: the group "default") of `topic` would get, in the
/// order it would get them (highest priority first, FIFO within a priority), without taking
/// them: nothing is claimed or leased, no attempt is counted, no statistic changes and no
/// listener hears of it. Left out: deliveries in flight (fetched or being handled, and not yet
/// settled; on SQLite and Redis also those whose lease ran out, until a fetch takes them back)
/// and requeues whose delay has not run out. No topic or group is created: a group that does
/// not exist yet shows, while the topic has no named group, the messages the topic retains
/// (which the first named group takes over), by priority then publish order, at attempt 1;
/// otherwise nothing. On SQLite and Redis it reads the store, whichever process published or
/// consumes; anyone may take what it showed a moment later.
/// Copies: topic and group; no pointer is kept after return.
/// Out: on BROKK_STATUS_OK, `*result_out` holds a result the caller owns (possibly of 0
/// deliveries) and must release with brokk_peek_result_free; untouched on failure.
/// Threads: any thread, concurrently, and from inside a handler. Works while the broker is
/// closing; CLOSED once closed.
/// Errors: NULL_ARGUMENT, INVALID_UTF8, INVALID_TOPIC, INVALID_GROUP, INVALID_ARGUMENT (max 0
/// or over BROKK_MAX_PEEK), CLOSED, UNAVAILABLE, STORAGE_FAILED.
#[no_mangle]
pub unsafe extern "C" fn brokk_broker_peek(
    broker: *const brokk_broker,
    topic: *const c_char,
    topic_len: usize,
    group: *const c_char,
    group_len: usize,
    max: usize,
    result_out: *mut *mut brokk_peek_result,
) -> brokk_status {
    guard(|| {
        // SAFETY: `broker` is NULL or a broker not yet freed (brokk_broker's contract).
        let broker = unsafe { reference(broker, "broker") }?;
        // SAFETY: `topic` is NULL or `topic_len` readable bytes for this call.
        let topic = unsafe { text(topic, topic_len, "topic") }?;
        // SAFETY: `group` is NULL or `group_len` readable bytes for this call.
        let group = unsafe { optional_text(group, group_len, "group") }?;
        // SAFETY: `result_out` is NULL or a writable pointer slot for this call.
        let out = unsafe { output(result_out, "result_out") }?;
        let items = broker.inner.peek(topic, group, max)?;
        *out = Box::into_raw(Box::new(brokk_peek_result { items }));
        Ok(())
    })
}

/// How many deliveries `result` holds (0 to the max its peek asked for); 0 for NULL.
#[no_mangle]
pub unsafe extern "C" fn brokk_peek_result_count(result: *const brokk_peek_result) -> usize {
    guard_value(|| {
        // SAFETY: `result` is NULL or a result from brokk_broker_peek not yet freed.
        unsafe { result.as_ref() }.map_or(0, |r| r.items.len())
    })
}

/// Reads delivery number `index` (0 is the one a fetch would get first) of `result`.
/// Out: on BROKK_STATUS_OK, `*fields_out`, whose views are valid until
/// brokk_peek_result_free(result); untouched on failure.
/// Threads: any thread, concurrently.
/// Errors: NULL_ARGUMENT, INVALID_ARGUMENT (`index` not below brokk_peek_result_count).
#[no_mangle]
pub unsafe extern "C" fn brokk_peek_result_read(
    result: *const brokk_peek_result,
    index: usize,
    fields_out: *mut brokk_peeked_fields,
) -> brokk_status {
    guard(|| {
        // SAFETY: `result` is NULL or a result from brokk_broker_peek not yet freed.
        let result = unsafe { reference(result, "result") }?;
        // SAFETY: `fields_out` is NULL or a writable brokk_peeked_fields for this call.
        let out = unsafe { output(fields_out, "fields_out") }?;
        let Some(p) = result.items.get(index) else {
            return Err(fail(
                brokk_status::InvalidArgument,
                format!("index {index} is past the {} deliveries of the result", result.items.len()),
            ));
        };
        let m = p.message();
        *out = brokk_peeked_fields {
            topic: brokk_str::from_str(m.topic()),
            id: brokk_str::from_str(m.id()),
            payload: brokk_str::from_bytes(m.payload()),
            metadata: brokk_str::from_bytes(m.metadata()),
            timestamp_ms: m.timestamp_ms(),
            priority: m.priority(),
            attempt: p.attempt(),
        };
        Ok(())
    })
}

/// Releases a peek result; the views read from it become invalid.
/// Takes: `result`, which must not be used afterwards. NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn brokk_peek_result_free(result: *mut brokk_peek_result) {
    guard_value(|| {
        if !result.is_null() {
            // SAFETY: non-NULL, so it came from brokk_broker_peek's Box, and the caller hands it
            // over.
            drop(unsafe { Box::from_raw(result) });
        }
    })
}
