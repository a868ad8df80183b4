//! Publishing from C: one message, or a batch on one topic.

use std::ffi::c_char;

use super::boundary::{fail, guard, Failure};
use super::broker::{brokk_broker, BROKK_ID_BUFFER_SIZE};
use super::status::brokk_status;
use super::strings::{bytes, optional_text, reference, text};
use brokk_core::{BatchMessage, PublishOptions, GENERATED_ID_LEN};

/// Options of brokk_broker_publish. Zero-initialise, then set what you need.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct brokk_publish_options {
    /// The message id (`id_len` bytes of printable ASCII, at most BROKK_ID_MAX_LEN); NULL
    /// means generate one. brokk does not check caller ids for uniqueness.
    pub id: *const c_char,
    /// Length of `id` in bytes.
    pub id_len: usize,
    /// A JSON object stored and delivered with the message (`metadata_len` bytes); NULL means
    /// "{}".
    pub metadata: *const c_char,
    /// Length of `metadata` in bytes.
    pub metadata_len: usize,
    /// Higher is delivered (and fetched) first; FIFO among equal priorities. Any int32_t;
    /// 0 by default.
    pub priority: i32,
}

/// One message of brokk_broker_publish_batch.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct brokk_batch_message {
    /// `payload_len` bytes of JSON; must not be NULL.
    pub payload: *const c_char,
    /// Length of `payload` in bytes.
    pub payload_len: usize,
    /// Id, metadata and priority, as for brokk_broker_publish.
    pub options: brokk_publish_options,
}

/// Converts optional C publish options.
///
/// # Safety
/// `o`'s `id` and `metadata` are NULL or valid for their lengths for `'a`.
unsafe fn options<'a>(o: Option<&brokk_publish_options>) -> Result<PublishOptions<'a>, Failure> {
    let Some(o) = o else { return Ok(PublishOptions::default()) };
    Ok(PublishOptions {
        // SAFETY: `id` and `metadata` are NULL or valid for their lengths for `'a` (the contract).
        id: unsafe { optional_text(o.id, o.id_len, "options.id") }?,
        // SAFETY: as for `id`.
        metadata: unsafe { optional_text(o.metadata, o.metadata_len, "options.metadata") }?.map(str::as_bytes),
        priority: o.priority,
    })
}

/// The payload, which must not be NULL.
///
/// # Safety
/// `ptr` is NULL or valid for reads of `len` bytes for `'a`.
unsafe fn payload<'a>(ptr: *const c_char, len: usize) -> Result<&'a [u8], Failure> {
    if ptr.is_null() {
        return Err(fail(brokk_status::NullArgument, "payload is NULL"));
    }
    // SAFETY: this function's contract is the one `bytes` needs.
    unsafe { bytes(ptr, len, "payload") }
}

/// Bytes an id needs in an output buffer, its NUL included.
fn id_size(opts: &PublishOptions<'_>) -> usize {
    opts.id.map_or(GENERATED_ID_LEN, str::len) + 1
}

/// Copies `id` and a NUL to `out`, which the caller sized with `id_size`.
///
/// # Safety
/// `out` is valid for writes of `id.len() + 1` bytes and does not overlap `id`.
unsafe fn write_id(out: *mut c_char, id: &str) {
    // SAFETY: `out` has room for the id and its NUL, apart from `id` (the contract).
    unsafe {
        std::ptr::copy_nonoverlapping(id.as_ptr(), out.cast::<u8>(), id.len());
        *out.add(id.len()) = 0;
    }
}

/// Publishes `payload_len` bytes of JSON on `topic` (`topic_len` bytes of [A-Za-z0-9_.-],
/// created if new). Every consumer group of the topic gets its own delivery (an ungrouped
/// subscription is a group of one); while the topic has no group, it retains the message for
/// the first named group or fetch, as the broker's retention policy allows.
/// Copies: topic, payload, options and what they point to; no pointer is kept after return.
/// Out: if `id_out` is not NULL, on BROKK_STATUS_OK it holds the message id, NUL-terminated;
/// `id_out_cap` is its size in bytes (BROKK_ID_BUFFER_SIZE always suffices). Untouched
/// otherwise. If the buffer is too small, nothing is published.
/// Threads: any thread, concurrently, and from inside a handler.
/// Errors: NULL_ARGUMENT (broker, topic, payload), INVALID_UTF8, INVALID_TOPIC, INVALID_JSON,
/// INVALID_ID, PAYLOAD_TOO_LARGE, BUFFER_TOO_SMALL, FULL (retention limit, policy REJECT),
/// CLOSED (also while a close is waiting); a store's UNAVAILABLE and STORAGE_FAILED (nothing
/// was published) and, on Redis, OUTCOME_UNKNOWN (it may have been published: a retry may
/// publish it twice).
#[no_mangle]
pub unsafe extern "C" fn brokk_broker_publish(
    broker: *const brokk_broker,
    topic: *const c_char,
    topic_len: usize,
    payload_ptr: *const c_char,
    payload_len: usize,
    options_ptr: *const brokk_publish_options,
    id_out: *mut c_char,
    id_out_cap: usize,
) -> brokk_status {
    guard(|| {
        // SAFETY: the arguments are brokk_broker_publish's, under its contract, which publish_one
        // needs.
        unsafe { publish_one(broker, topic, topic_len, payload_ptr, payload_len, options_ptr, id_out, id_out_cap) }
    })
}

/// The body of brokk_broker_publish and brokk_broker_publish_with.
///
/// # Safety
/// The pointers are as brokk_broker_publish documents, for this call.
#[allow(clippy::too_many_arguments)]
unsafe fn publish_one(
    broker: *const brokk_broker,
    topic: *const c_char,
    topic_len: usize,
    payload_ptr: *const c_char,
    payload_len: usize,
    options_ptr: *const brokk_publish_options,
    id_out: *mut c_char,
    id_out_cap: usize,
) -> Result<(), Failure> {
    // SAFETY: `broker` is NULL or a broker not yet freed (brokk_broker's contract).
    let broker = unsafe { reference(broker, "broker") }?;
    // SAFETY: `topic` is NULL or `topic_len` readable bytes for this call.
    let topic = unsafe { text(topic, topic_len, "topic") }?;
    // SAFETY: `payload_ptr` is NULL or `payload_len` readable bytes for this call.
    let payload = unsafe { payload(payload_ptr, payload_len) }?;
    // SAFETY: `options_ptr` is NULL or a readable struct whose strings are NULL or valid for
    // their lengths, for this call.
    let opts = unsafe { options(options_ptr.as_ref()) }?;
    if let Some(id) = opts.id {
        // A bad id is INVALID_ID whatever the buffer: validate before sizing it.
        brokk_core::validate_id(id)?;
    }
    if !id_out.is_null() && id_out_cap < id_size(&opts) {
        return Err(fail(
            brokk_status::BufferTooSmall,
            format!("id_out holds {id_out_cap} bytes; the id needs {} (use BROKK_ID_BUFFER_SIZE)", id_size(&opts)),
        ));
    }
    let message = broker.inner.publish(topic, payload, &opts)?;
    if !id_out.is_null() {
        // SAFETY: `id_out` is not NULL and holds `id_out_cap` bytes, at least id_size (both
        // checked above); the id is ours, apart from the caller's buffer.
        unsafe { write_id(id_out, message.id()) };
    }
    Ok(())
}

/// What brokk_broker_publish_with publishes to: every argument of brokk_broker_publish but the
/// payload, in a struct the caller fills once and reuses for every message to that topic.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct brokk_publish_request {
    /// As brokk_broker_publish's `topic`.
    pub topic: *const c_char,
    /// Length of `topic` in bytes.
    pub topic_len: usize,
    /// As brokk_broker_publish's `options` (NULL: the defaults).
    pub options: *const brokk_publish_options,
    /// As brokk_broker_publish's `id_out` (NULL: no id wanted).
    pub id_out: *mut c_char,
    /// Size of `id_out` in bytes.
    pub id_out_cap: usize,
}

/// brokk_broker_publish with its other arguments in `request`: the same call, for hosts whose
/// foreign calls cost per argument (Python's ctypes spends about as much converting each
/// argument as on the rest of the call, so four arguments instead of eight halve what a publish
/// costs it). Everything brokk_broker_publish says holds.
/// Copies: what `request` points to is read during the call and not kept.
/// Errors: as brokk_broker_publish, and NULL_ARGUMENT for `request`.
#[no_mangle]
pub unsafe extern "C" fn brokk_broker_publish_with(
    broker: *const brokk_broker,
    request: *const brokk_publish_request,
    payload_ptr: *const c_char,
    payload_len: usize,
) -> brokk_status {
    guard(|| {
        // SAFETY: `request` is NULL or a readable brokk_publish_request for this call.
        let r = unsafe { reference(request, "request") }?;
        // SAFETY: `request` holds brokk_broker_publish's arguments, under its contract.
        unsafe {
            publish_one(broker, r.topic, r.topic_len, payload_ptr, payload_len, r.options, r.id_out, r.id_out_cap)
        }
    })
}

/// Publishes `count` messages on `topic` in one call, all or nothing: every message is checked
/// before any is published (a bad one fails the call and names its index in
/// brokk_last_error()), and each consumer group receives the whole batch at once. Cheaper per
/// message than brokk_broker_publish: one topic lookup, one lock per group.
/// Copies: topic, the messages and what they point to; no pointer is kept after return.
/// Out: if `ids_out` is not NULL, on BROKK_STATUS_OK the id of message i is at
/// `ids_out + i * BROKK_ID_BUFFER_SIZE`, NUL-terminated; `ids_out_cap` (bytes) must be at least
/// `count * BROKK_ID_BUFFER_SIZE`, or nothing is published. Untouched otherwise.
/// Threads: any thread, concurrently, and from inside a handler.
/// Errors: as brokk_broker_publish, and NULL_ARGUMENT for `messages` when count > 0.
#[no_mangle]
pub unsafe extern "C" fn brokk_broker_publish_batch(
    broker: *const brokk_broker,
    topic: *const c_char,
    topic_len: usize,
    messages: *const brokk_batch_message,
    count: usize,
    ids_out: *mut c_char,
    ids_out_cap: usize,
) -> brokk_status {
    guard(|| {
        // SAFETY: `broker` is NULL or a broker not yet freed (brokk_broker's contract).
        let broker = unsafe { reference(broker, "broker") }?;
        // SAFETY: `topic` is NULL or `topic_len` readable bytes for this call.
        let topic = unsafe { text(topic, topic_len, "topic") }?;
        if count > 0 && messages.is_null() {
            return Err(fail(brokk_status::NullArgument, "messages is NULL"));
        }
        // SAFETY: non-NULL when `count` > 0 (checked above), and the caller passes `count`
        // readable messages for this call.
        let items = if count == 0 { &[][..] } else { unsafe { std::slice::from_raw_parts(messages, count) } };
        if !ids_out.is_null() && ids_out_cap / BROKK_ID_BUFFER_SIZE < count {
            return Err(fail(
                brokk_status::BufferTooSmall,
                format!("ids_out holds {ids_out_cap} bytes; {count} ids need {}", count * BROKK_ID_BUFFER_SIZE),
            ));
        }
        let mut batch = Vec::with_capacity(count);
        for (i, m) in items.iter().enumerate() {
            // SAFETY: each message's pointers are NULL or valid for their lengths for this call.
            let converted =
                unsafe { payload(m.payload, m.payload_len).and_then(|p| Ok((p, options(Some(&m.options))?))) };
            let (payload, options) = converted.map_err(|f| Failure {
                status: f.status,
                message: format!("message {i} of the batch: {}", f.message).into(),
            })?;
            batch.push(BatchMessage { payload, options });
        }
        let published = broker.inner.publish_batch(topic, &batch)?;
        if !ids_out.is_null() {
            for (i, m) in published.iter().enumerate() {
                // SAFETY: `ids_out` holds `count` slots of BROKK_ID_BUFFER_SIZE bytes (checked
                // above), one per published message, each with room for any id and its NUL.
                unsafe { write_id(ids_out.add(i * BROKK_ID_BUFFER_SIZE), m.id()) };
            }
        }
        Ok(())
    })
}
