//! Pull consumption from C: fetch, the owned delivery it returns, count and purge.

use std::ffi::{c_char, CString};
use std::time::Duration;

use super::boundary::{fail, guard, guard_value, Failure};
use super::broker::{brokk_broker, timeout};
use super::cancel::{brokk_cancel, optional_cancel};
use super::message::brokk_message;
use super::status::brokk_status;
use super::strings::{brokk_str, optional_text, output, reference, text};
use brokk_core::Delivery;
use brokk_core::{FetchOptions, Taken};

/// A delivery taken with brokk_broker_fetch, owned by the caller until brokk_delivery_free.
/// Freeing it does not settle it: ack or nack it by brokk_message_delivery_id.
pub struct brokk_delivery {
    /// Boxed so that `view`, which points at it, stays valid when the handle moves; read only
    /// through `view`.
    #[allow(dead_code)]
    delivery: Box<Delivery>,
    view: brokk_message,
}

/// Options of brokk_broker_fetch. Zero-initialise, then set what you need; NULL options mean
/// all zero: the "default" group, no ack deadline, no attempt limit, no dead-letter topic.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct brokk_fetch_options {
    /// The consumer group to take from (`group_len` bytes of [A-Za-z0-9_.-]); NULL means the
    /// group named "default", which every fetch without a group shares.
    pub group: *const c_char,
    /// Length of `group` in bytes.
    pub group_len: usize,
    /// Milliseconds the fetched delivery may stay unsettled; past it, it is taken back and
    /// redelivered (attempt + 1) to the group. 0: no deadline.
    pub ack_deadline_ms: u64,
    /// Attempts before the delivery is given up instead of requeued; 0: no limit.
    pub max_attempts: u32,
    /// Topic (`dead_letter_topic_len` bytes) where it is published if given up or nacked;
    /// NULL: dropped, counted failed.
    pub dead_letter_topic: *const c_char,
    /// Length of `dead_letter_topic` in bytes.
    pub dead_letter_topic_len: usize,
}

/// Takes the next delivery of a consumer group (see brokk_fetch_options) on `topic`: highest
/// priority first, FIFO within a priority. Creates the topic and the group if new; a topic's first named
/// group takes over the messages it retained. Members of a group (fetchers and subscriptions
/// alike) compete: each delivery goes to one of them. Waits up to `timeout_ms` for one (0: not
/// at all; BROKK_WAIT_FOREVER: no limit).
/// Copies: topic and options; no pointer is kept after return.
/// Out: on BROKK_STATUS_OK, `*delivery_out` holds a delivery the caller owns and must release
/// with brokk_delivery_free, or NULL if none came in time; untouched on failure. The delivery
/// awaits brokk_broker_ack or brokk_broker_nack, like a manual-ack handler's.
/// Threads: any thread, concurrently. While the broker is closing it still serves what is
/// queued; once closed, a blocked fetch returns CLOSED.
/// Errors: NULL_ARGUMENT, INVALID_UTF8, INVALID_TOPIC (also for the dead-letter topic),
/// INVALID_GROUP, CLOSED.
#[no_mangle]
pub unsafe extern "C" fn brokk_broker_fetch(
    broker: *const brokk_broker,
    topic: *const c_char,
    topic_len: usize,
    options: *const brokk_fetch_options,
    timeout_ms: u64,
    delivery_out: *mut *mut brokk_delivery,
) -> brokk_status {
    guard(|| {
        // SAFETY: `broker` is NULL or a broker not yet freed (brokk_broker's contract).
        let broker = unsafe { reference(broker, "broker") }?;
        // SAFETY: `topic` is NULL or `topic_len` readable bytes for this call.
        let topic = unsafe { text(topic, topic_len, "topic") }?;
        // SAFETY: `options` is NULL or a readable brokk_fetch_options for this call.
        let opts = unsafe { fetch_options(options) }?;
        // SAFETY: `delivery_out` is NULL or a writable slot for this call.
        let out = unsafe { output(delivery_out, "delivery_out") }?;
        *out = match broker.inner.fetch_with(topic, &opts, timeout(timeout_ms))? {
            None => std::ptr::null_mut(),
            Some(d) => into_handle(d),
        };
        Ok(())
    })
}

/// Takes up to `max` deliveries of a consumer group on `topic` in one call: as
/// brokk_broker_fetch, waiting up to `timeout_ms` for the first, then taking what is queued at
/// that moment, in order (highest priority first, FIFO within a priority). One call instead of
/// one per delivery, for consumers that work through a backlog.
/// Copies: topic and options; no pointer is kept after return.
/// Out: on BROKK_STATUS_OK, `deliveries_out[0..*count_out]` hold deliveries the caller owns
/// (each released with brokk_delivery_free, each awaiting ack or nack); `*count_out` is 0 if
/// none came in time. `deliveries_out` must have room for `max` pointers; entries past
/// `*count_out` are untouched, as are both outputs on failure.
/// Threads: any thread, concurrently.
/// Errors: NULL_ARGUMENT, INVALID_UTF8, INVALID_TOPIC, INVALID_GROUP, INVALID_ARGUMENT (max 0),
/// CLOSED.
#[no_mangle]
pub unsafe extern "C" fn brokk_broker_fetch_batch(
    broker: *const brokk_broker,
    topic: *const c_char,
    topic_len: usize,
    options: *const brokk_fetch_options,
    max: usize,
    timeout_ms: u64,
    deliveries_out: *mut *mut brokk_delivery,
    count_out: *mut usize,
) -> brokk_status {
    guard(|| {
        // SAFETY: brokk_broker_fetch_batch's arguments, under its contract; no token.
        unsafe {
            fetch_batch(broker, topic, topic_len, options, max, timeout_ms, std::ptr::null(), deliveries_out, count_out)
        }
    })
}

/// brokk_broker_fetch_batch that `cancel` can interrupt: brokk_cancel_trigger on it, from any
/// thread, makes this call return BROKK_STATUS_CANCELLED at once, having taken nothing (and so
/// does a token already cancelled). With `cancel` NULL it is brokk_broker_fetch_batch.
/// Everything brokk_broker_fetch_batch says holds.
/// Copies: topic and options; `cancel` is used during the call only.
/// Errors: as brokk_broker_fetch_batch, and CANCELLED.
#[no_mangle]
pub unsafe extern "C" fn brokk_broker_fetch_batch_until(
    broker: *const brokk_broker,
    topic: *const c_char,
    topic_len: usize,
    options: *const brokk_fetch_options,
    max: usize,
    timeout_ms: u64,
    cancel: *const brokk_cancel,
    deliveries_out: *mut *mut brokk_delivery,
    count_out: *mut usize,
) -> brokk_status {
    guard(|| {
        // SAFETY: brokk_broker_fetch_batch_until's arguments, under its contract.
        unsafe { fetch_batch(broker, topic, topic_len, options, max, timeout_ms, cancel, deliveries_out, count_out) }
    })
}

/// The body of brokk_broker_fetch_batch and brokk_broker_fetch_batch_until.
///
/// # Safety
/// The arguments are as brokk_broker_fetch_batch_until documents, for this call.
#[allow(clippy::too_many_arguments)]
unsafe fn fetch_batch(
    broker: *const brokk_broker,
    topic: *const c_char,
    topic_len: usize,
    options: *const brokk_fetch_options,
    max: usize,
    timeout_ms: u64,
    cancel: *const brokk_cancel,
    deliveries_out: *mut *mut brokk_delivery,
    count_out: *mut usize,
) -> Result<(), Failure> {
    // SAFETY: `broker` is NULL or a broker not yet freed (brokk_broker's contract).
    let broker = unsafe { reference(broker, "broker") }?;
    // SAFETY: `topic` is NULL or `topic_len` readable bytes for this call.
    let topic = unsafe { text(topic, topic_len, "topic") }?;
    // SAFETY: `options` is NULL or a readable brokk_fetch_options for this call.
    let opts = unsafe { fetch_options(options) }?;
    if deliveries_out.is_null() {
        return Err(fail(brokk_status::NullArgument, "deliveries_out is NULL"));
    }
    // SAFETY: `count_out` is NULL or a writable usize for this call.
    let count = unsafe { output(count_out, "count_out") }?;
    // SAFETY: `cancel` is NULL or a token not yet freed, for this call.
    let cancel = unsafe { optional_cancel(cancel) };
    let taken = broker.inner.fetch_batch_until(topic, &opts, max, timeout(timeout_ms), cancel)?;
    // SAFETY: non-NULL (checked above), and the caller gives room for `max` pointers, at least
    // the number fetch_batch_until took.
    let slots = unsafe { std::slice::from_raw_parts_mut(deliveries_out, taken.len()) };
    for (slot, d) in slots.iter_mut().zip(taken) {
        *slot = into_handle(d);
    }
    *count = slots.len();
    Ok(())
}

/// Takes and acks the next delivery of `group` on `topic` as brokk_broker_take does, handing
/// back its payload whatever its size, in a buffer brokk allocates; and `cancel` (may be NULL)
/// can interrupt it while it waits: brokk_cancel_trigger from any thread makes it return
/// BROKK_STATUS_CANCELLED at once, having taken nothing. For hosts that cannot guess a
/// payload's size, and for waits that must end when the host says so.
/// Copies: topic and group; `cancel` is used during the call only.
/// Out: on BROKK_STATUS_OK, either `*payload_out` holds the payload followed by a NUL (JSON has
/// no NUL byte of its own), which the caller owns and must release with brokk_string_free,
/// and `*payload_len_out` its length without the NUL; or, when nothing came in time,
/// `*payload_out` is NULL and `*payload_len_out` is 0. Both untouched on failure.
/// Threads: any thread, concurrently.
/// Errors: NULL_ARGUMENT (broker, topic, payload_out, payload_len_out), INVALID_UTF8,
/// INVALID_TOPIC, INVALID_GROUP, CANCELLED, CLOSED, UNAVAILABLE and STORAGE_FAILED (nothing was
/// taken).
#[no_mangle]
pub unsafe extern "C" fn brokk_broker_take_until(
    broker: *const brokk_broker,
    topic: *const c_char,
    topic_len: usize,
    group: *const c_char,
    group_len: usize,
    timeout_ms: u64,
    cancel: *const brokk_cancel,
    payload_out: *mut *mut c_char,
    payload_len_out: *mut usize,
) -> brokk_status {
    guard(|| {
        // SAFETY: `broker` is NULL or a broker not yet freed (brokk_broker's contract).
        let broker = unsafe { reference(broker, "broker") }?;
        // SAFETY: `topic` is NULL or `topic_len` readable bytes for this call.
        let topic = unsafe { text(topic, topic_len, "topic") }?;
        // SAFETY: `group` is NULL or `group_len` readable bytes for this call.
        let group = unsafe { optional_text(group, group_len, "group") }?;
        // SAFETY: `payload_out` is NULL or a writable pointer slot for this call.
        let out = unsafe { output(payload_out, "payload_out") }?;
        // SAFETY: `payload_len_out` is NULL or a writable usize for this call.
        let len_out = unsafe { output(payload_len_out, "payload_len_out") }?;
        // SAFETY: `cancel` is NULL or a token not yet freed, for this call.
        let cancel = unsafe { optional_cancel(cancel) };
        match broker.inner.take_until(topic, group, timeout(timeout_ms), cancel)? {
            Some(delivery) => {
                let payload = delivery.payload();
                *len_out = payload.len();
                // A payload is valid JSON, which has no NUL byte, so this cannot fail; if it
                // ever did, the caller hears of a bug rather than of an empty queue.
                let owned = CString::new(payload)
                    .map_err(|_| fail(brokk_status::Panic, "a payload held a NUL byte, which JSON cannot"))?;
                *out = owned.into_raw();
            }
            None => {
                *out = std::ptr::null_mut();
                *len_out = 0;
            }
        }
        Ok(())
    })
}

/// Takes the next delivery of consumer group `group` (`group_len` bytes; NULL: the group
/// "default") on `topic` and acknowledges it in the same step, copying its payload (JSON) into
/// `payload_out`: brokk_broker_fetch, a copy of the payload and brokk_broker_ack, in one call
/// and, on SQLite and Redis, one store operation (on SQLite, one commit instead of two). At
/// most once: once it returns, the message is gone from the group, whatever the caller then
/// does with it. For consumers that keep no delivery open; listeners hear it dispatched, then
/// processed. Waits up to `timeout_ms` as brokk_broker_fetch does.
/// Copies: topic and group; no pointer is kept after return.
/// Out: on BROKK_STATUS_OK, `*payload_len_out` is the payload's length and `payload_out[0..len]`
/// holds it, followed by a NUL if `payload_cap` leaves room for one; or `*payload_len_out` is
/// 0: nothing came in time (a payload is never empty). On BROKK_STATUS_BUFFER_TOO_SMALL the
/// next payload has `*payload_len_out` bytes, more than `payload_cap`: nothing was taken, and
/// a call with room for it takes it. Untouched on other failures.
/// Threads: any thread, concurrently.
/// Errors: NULL_ARGUMENT (broker, topic, payload_len_out; payload_out unless payload_cap is 0),
/// INVALID_UTF8, INVALID_TOPIC, INVALID_GROUP, BUFFER_TOO_SMALL, CLOSED, UNAVAILABLE and
/// STORAGE_FAILED (nothing was taken).
#[no_mangle]
pub unsafe extern "C" fn brokk_broker_take(
    broker: *const brokk_broker,
    topic: *const c_char,
    topic_len: usize,
    group: *const c_char,
    group_len: usize,
    timeout_ms: u64,
    payload_out: *mut c_char,
    payload_cap: usize,
    payload_len_out: *mut usize,
) -> brokk_status {
    guard(|| {
        // SAFETY: `payload_len_out` is NULL or a writable usize for this call.
        let len_out = unsafe { output(payload_len_out, "payload_len_out") }?;
        let request = brokk_take_request {
            topic,
            topic_len,
            group,
            group_len,
            timeout_ms,
            payload_out,
            payload_cap,
            payload_len: 0,
        };
        // SAFETY: the arguments are brokk_broker_take's, under its contract, which take_one needs.
        unsafe { take_one(broker, &request, len_out) }
    })
}

/// The arguments of brokk_broker_take in a struct that the caller fills once (per topic and
/// group, say) and reuses, for brokk_broker_take_with.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct brokk_take_request {
    /// As brokk_broker_take's `topic`.
    pub topic: *const c_char,
    /// Length of `topic` in bytes.
    pub topic_len: usize,
    /// As brokk_broker_take's `group` (NULL: the group "default").
    pub group: *const c_char,
    /// Length of `group` in bytes.
    pub group_len: usize,
    /// As brokk_broker_take's `timeout_ms`.
    pub timeout_ms: u64,
    /// As brokk_broker_take's `payload_out`.
    pub payload_out: *mut c_char,
    /// Size of `payload_out` in bytes.
    pub payload_cap: usize,
    /// Out: what brokk_broker_take writes to `*payload_len_out`.
    pub payload_len: usize,
}

/// brokk_broker_take with its arguments in `request`, the payload's length written to
/// `request->payload_len`: the same call, for hosts whose foreign calls cost per argument
/// (Python's ctypes spends about as much converting each argument as on the rest of the call,
/// so two arguments instead of nine cost it about a third). Everything brokk_broker_take says
/// holds.
/// Copies: what `request` points to is read during the call and not kept.
/// Errors: as brokk_broker_take, and NULL_ARGUMENT for `request`.
#[no_mangle]
pub unsafe extern "C" fn brokk_broker_take_with(
    broker: *const brokk_broker,
    request: *mut brokk_take_request,
) -> brokk_status {
    guard(|| {
        // SAFETY: `request` is NULL or a brokk_take_request the caller lets us read and write.
        let request = unsafe { output(request, "request") }?;
        let mut len = request.payload_len;
        // SAFETY: `request` holds brokk_broker_take's arguments, under its contract.
        let result = unsafe { take_one(broker, request, &mut len) };
        request.payload_len = len;
        result
    })
}

/// The body of brokk_broker_take and brokk_broker_take_with (`request.payload_len` unused).
///
/// # Safety
/// `broker` and the pointers in `r` are as brokk_broker_take documents, for this call.
unsafe fn take_one(broker: *const brokk_broker, r: &brokk_take_request, len_out: &mut usize) -> Result<(), Failure> {
    // SAFETY: `broker` is NULL or a broker not yet freed (brokk_broker's contract).
    let broker = unsafe { reference(broker, "broker") }?;
    // SAFETY: `r.topic` is NULL or `r.topic_len` readable bytes for this call.
    let topic = unsafe { text(r.topic, r.topic_len, "topic") }?;
    // SAFETY: `r.group` is NULL or `r.group_len` readable bytes for this call.
    let group = unsafe { optional_text(r.group, r.group_len, "group") }?;
    let (payload_out, payload_cap) = (r.payload_out, r.payload_cap);
    if payload_out.is_null() && payload_cap > 0 {
        return Err(fail(brokk_status::NullArgument, "payload_out is NULL (and payload_cap is not 0)"));
    }
    match broker.inner.take(topic, group, timeout(r.timeout_ms), payload_cap)? {
        Taken::Message(delivery) => {
            let payload = delivery.payload();
            // SAFETY: take hands out only a payload of at most `payload_cap` bytes, never an
            // empty one, so `payload_out` is not NULL (checked above) and has room for it.
            unsafe { std::ptr::copy_nonoverlapping(payload.as_ptr(), payload_out.cast::<u8>(), payload.len()) };
            if payload.len() < payload_cap {
                // SAFETY: the offset is below `payload_cap`, inside the caller's buffer.
                unsafe { *payload_out.add(payload.len()) = 0 };
            }
            *len_out = payload.len();
        }
        Taken::Empty => *len_out = 0,
        Taken::TooLarge(size) => {
            *len_out = size;
            return Err(fail(
                brokk_status::BufferTooSmall,
                format!("the next payload has {size} bytes; payload_out holds {payload_cap}"),
            ));
        }
        // An outcome newer than this layer (Taken is non-exhaustive): a bug in brokk, reported
        // as one rather than read as "nothing came".
        other => {
            return Err(fail(brokk_status::Panic, format!("take found {other:?}, which the C library does not know")))
        }
    }
    Ok(())
}

/// Converts C fetch options (NULL: all defaults), borrowing their strings.
///
/// # Safety
/// `options` is NULL or a readable struct whose strings are NULL or valid for their lengths, for
/// `'a`.
unsafe fn fetch_options<'a>(options: *const brokk_fetch_options) -> Result<FetchOptions<'a>, Failure> {
    let mut opts = FetchOptions::default();
    // SAFETY: `options` is NULL or readable for `'a` (this function's contract).
    if let Some(o) = unsafe { options.as_ref() } {
        // SAFETY: the struct's strings are NULL or valid for their lengths for `'a`.
        opts.group = unsafe { optional_text(o.group, o.group_len, "options.group") }?;
        opts.ack_deadline = (o.ack_deadline_ms > 0).then(|| Duration::from_millis(o.ack_deadline_ms));
        opts.max_attempts = o.max_attempts;
        // SAFETY: as for `group`.
        opts.dead_letter_topic =
            unsafe { optional_text(o.dead_letter_topic, o.dead_letter_topic_len, "options.dead_letter_topic") }?;
    }
    Ok(opts)
}

fn into_handle(d: Delivery) -> *mut brokk_delivery {
    let delivery = Box::new(d);
    let view = brokk_message::new(&delivery);
    Box::into_raw(Box::new(brokk_delivery { delivery, view }))
}

/// The message view of a fetched delivery, for the brokk_message_* accessors.
/// Returns: a view valid until brokk_delivery_free(delivery); NULL for NULL.
#[no_mangle]
pub unsafe extern "C" fn brokk_delivery_message(delivery: *const brokk_delivery) -> *const brokk_message {
    guard_value(|| {
        // SAFETY: `delivery` is NULL or a delivery from brokk_broker_fetch not yet freed.
        unsafe { delivery.as_ref() }.map_or(std::ptr::null(), |d| &d.view as *const brokk_message)
    })
}

/// Releases a fetched delivery handle. It does not ack or nack: a delivery freed unsettled
/// stays in flight until acked or nacked by id, or the broker closes.
/// Takes: `delivery`, which must not be used afterwards. NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn brokk_delivery_free(delivery: *mut brokk_delivery) {
    guard_value(|| {
        if !delivery.is_null() {
            // SAFETY: non-NULL, so it came from into_handle's Box, and the caller hands it over.
            drop(unsafe { Box::from_raw(delivery) });
        }
    })
}

/// The topic names in `topics[0..count]`, or None (all topics) when `topics` is NULL.
///
/// # Safety
/// `topics` is NULL or `count` readable views, each NULL or valid for its length, for `'a`.
unsafe fn topic_list<'a>(topics: *const brokk_str, count: usize) -> Result<Option<Vec<&'a str>>, Failure> {
    if topics.is_null() {
        return if count == 0 { Ok(None) } else { Err(fail(brokk_status::NullArgument, "topics is NULL")) };
    }
    // SAFETY: non-NULL (checked above) and `count` readable views for `'a` (the contract).
    let items = unsafe { std::slice::from_raw_parts(topics, count) };
    items
        .iter()
        .enumerate()
        // SAFETY: each view is NULL or valid for its length for `'a` (the contract).
        .map(|(i, t)| unsafe { text(t.ptr, t.len, &format!("topics[{i}]")) })
        .collect::<Result<_, _>>()
        .map(Some)
}

/// Counts messages waiting on the `topic_count` topics in `topics` (each a name view), or on
/// every topic when `topics` is NULL: retained ones plus deliveries queued in consumer groups
/// (one per group); deliveries in flight are not counted. Unknown topics count 0.
/// Copies: nothing is kept after return.
/// Out: on BROKK_STATUS_OK, `*count_out`; untouched otherwise.
/// Threads: any thread.
/// Errors: NULL_ARGUMENT, INVALID_UTF8, INVALID_TOPIC, CLOSED.
#[no_mangle]
pub unsafe extern "C" fn brokk_broker_count(
    broker: *const brokk_broker,
    topics: *const brokk_str,
    topic_count: usize,
    count_out: *mut u64,
) -> brokk_status {
    guard(|| {
        // SAFETY: `broker` is NULL or a broker not yet freed (brokk_broker's contract).
        let broker = unsafe { reference(broker, "broker") }?;
        // SAFETY: `count_out` is NULL or a writable u64 for this call.
        let out = unsafe { output(count_out, "count_out") }?;
        // SAFETY: `topics` is NULL or `topic_count` readable views for this call.
        let names = unsafe { topic_list(topics, topic_count) }?;
        *out = broker.inner.count(names.as_deref())?;
        Ok(())
    })
}

/// Discards what brokk_broker_count counts on the same topics (all when `topics` is NULL):
/// retained messages and queued deliveries. Deliveries in flight are untouched.
/// Copies: nothing is kept after return.
/// Out: if `purged_out` is not NULL, on BROKK_STATUS_OK it holds how many were discarded.
/// Threads: any thread.
/// Errors: NULL_ARGUMENT, INVALID_UTF8, INVALID_TOPIC, CLOSED.
#[no_mangle]
pub unsafe extern "C" fn brokk_broker_purge(
    broker: *const brokk_broker,
    topics: *const brokk_str,
    topic_count: usize,
    purged_out: *mut u64,
) -> brokk_status {
    guard(|| {
        // SAFETY: `broker` is NULL or a broker not yet freed (brokk_broker's contract).
        let broker = unsafe { reference(broker, "broker") }?;
        // SAFETY: `topics` is NULL or `topic_count` readable views for this call.
        let names = unsafe { topic_list(topics, topic_count) }?;
        let n = broker.inner.purge(names.as_deref())?;
        // SAFETY: `purged_out` is NULL or a writable u64 for this call.
        if let Some(out) = unsafe { purged_out.as_mut() } {
            *out = n;
        }
        Ok(())
    })
}

/// Counts the ready deliveries of the named consumer group `group` (`group_len` bytes) of
/// `topic` (`topic_len` bytes): what brokk_broker_fetch on that group could take now, the
/// group's share of what brokk_broker_count counts on the topic. Like brokk_broker_count it
/// leaves out deliveries in flight and requeues whose delay has not run out. A group or topic
/// that does not exist counts 0 and is not created. On SQLite and Redis it reads the store,
/// whichever process published or consumes.
/// Copies: topic and group; no pointer is kept after return.
/// Out: on BROKK_STATUS_OK, `*count_out`; untouched otherwise.
/// Threads: any thread, concurrently, and from inside a handler.
/// Errors: NULL_ARGUMENT, INVALID_UTF8, INVALID_TOPIC, INVALID_GROUP, CLOSED, UNAVAILABLE,
/// STORAGE_FAILED.
#[no_mangle]
pub unsafe extern "C" fn brokk_broker_count_group(
    broker: *const brokk_broker,
    topic: *const c_char,
    topic_len: usize,
    group: *const c_char,
    group_len: usize,
    count_out: *mut u64,
) -> brokk_status {
    guard(|| {
        // SAFETY: `broker` is NULL or a broker not yet freed (brokk_broker's contract).
        let broker = unsafe { reference(broker, "broker") }?;
        // SAFETY: `count_out` is NULL or a writable u64 for this call.
        let out = unsafe { output(count_out, "count_out") }?;
        // SAFETY: `topic` is NULL or `topic_len` readable bytes for this call.
        let topic = unsafe { text(topic, topic_len, "topic") }?;
        // SAFETY: `group` is NULL or `group_len` readable bytes for this call.
        let group = unsafe { text(group, group_len, "group") }?;
        *out = broker.inner.count_group(topic, group)?;
        Ok(())
    })
}

/// Discards, in one atomic step, what brokk_broker_count_group counts: the ready deliveries of
/// the named consumer group `group` of `topic`. Its deliveries in flight are untouched (they
/// are acked or nacked as usual), and so are its delayed requeues, the topic's other groups,
/// the messages the topic retains and the group itself (it receives what is published next).
/// Counted as brokk_broker_purge counts (dropped, on this broker's statistics of the topic),
/// and brokk_broker_join no longer waits for what was discarded. A group or topic that does
/// not exist purges 0 and is not created. On SQLite and Redis it purges the group in the
/// store, whichever process published or consumes.
/// Copies: topic and group; no pointer is kept after return.
/// Out: if `purged_out` is not NULL, on BROKK_STATUS_OK it holds how many were discarded.
/// Threads: any thread, concurrently, and from inside a handler.
/// Errors: NULL_ARGUMENT, INVALID_UTF8, INVALID_TOPIC, INVALID_GROUP, CLOSED, UNAVAILABLE,
/// STORAGE_FAILED (on Redis, a purge whose reply was lost may or may not have been done:
/// purging again is safe).
#[no_mangle]
pub unsafe extern "C" fn brokk_broker_purge_group(
    broker: *const brokk_broker,
    topic: *const c_char,
    topic_len: usize,
    group: *const c_char,
    group_len: usize,
    purged_out: *mut u64,
) -> brokk_status {
    guard(|| {
        // SAFETY: `broker` is NULL or a broker not yet freed (brokk_broker's contract).
        let broker = unsafe { reference(broker, "broker") }?;
        // SAFETY: `topic` is NULL or `topic_len` readable bytes for this call.
        let topic = unsafe { text(topic, topic_len, "topic") }?;
        // SAFETY: `group` is NULL or `group_len` readable bytes for this call.
        let group = unsafe { text(group, group_len, "group") }?;
        let n = broker.inner.purge_group(topic, group)?;
        // SAFETY: `purged_out` is NULL or a writable u64 for this call.
        if let Some(out) = unsafe { purged_out.as_mut() } {
            *out = n;
        }
        Ok(())
    })
}
