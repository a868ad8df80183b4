//! The broker handle from C: create, free, publish, ack/nack, join, close.

use std::ffi::c_char;
use std::time::Duration;

use super::boundary::{fail, guard};
use super::status::brokk_status;
use super::strings::{bytes, optional_c_text, optional_text, output, reference, text};
use crate::broker::{Broker, PublishOptions};
use crate::config::{BrokerConfig, DEFAULT_MAX_PAYLOAD};
use crate::handler::Reason;

// Literals, because cbindgen writes only literals into the header; the asserts below keep them
// equal to the core's values.

/// Longest message id, in bytes.
pub const BROKK_ID_MAX_LEN: usize = 128;
/// Size of a buffer that holds any message id and its terminating NUL.
pub const BROKK_ID_BUFFER_SIZE: usize = 129;
/// Longest topic name, in bytes.
pub const BROKK_TOPIC_MAX_LEN: usize = 255;
/// Most handler invocations one subscription may run at once.
pub const BROKK_MAX_CONCURRENCY: u32 = 1024;
/// Default largest payload, in bytes (1 MiB).
pub const BROKK_DEFAULT_MAX_PAYLOAD: u64 = 1048576;
/// A timeout_ms that means "wait without limit".
pub const BROKK_WAIT_FOREVER: u64 = u64::MAX;

const _: () = {
    assert!(BROKK_ID_MAX_LEN == crate::names::MAX_ID_LEN);
    assert!(BROKK_ID_BUFFER_SIZE == BROKK_ID_MAX_LEN + 1);
    assert!(BROKK_TOPIC_MAX_LEN == crate::names::MAX_TOPIC_LEN);
    assert!(BROKK_MAX_CONCURRENCY as usize == crate::broker::MAX_CONCURRENCY);
    assert!(BROKK_DEFAULT_MAX_PAYLOAD as usize == DEFAULT_MAX_PAYLOAD);
};

/// A message broker. Create with brokk_broker_new, release with brokk_broker_free.
/// Threads: every function taking `const brokk_broker *` may be called from any thread,
/// concurrently, until brokk_broker_free.
pub struct brokk_broker {
    pub(crate) inner: Broker,
}

/// Options of brokk_broker_new. Zero-initialise, then set what you need: zero means default.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct brokk_broker_options {
    /// Worker threads that run handlers; 0 means one per CPU, at least 2; at most 1024.
    pub worker_threads: u32,
    /// Largest payload accepted by publish, in bytes; 0 means BROKK_DEFAULT_MAX_PAYLOAD;
    /// at most 4 GiB - 1.
    pub max_payload_bytes: u64,
    /// Listener events that may wait for the listener thread before further events are dropped
    /// (and counted in listener_events_dropped); 0 means 65536.
    pub listener_queue_capacity: u32,
}

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
}

fn timeout(ms: u64) -> Option<Duration> {
    (ms != BROKK_WAIT_FOREVER).then(|| Duration::from_millis(ms))
}

/// Creates a broker on the backend `url` names: "memory://" (the default) keeps queues in this
/// process. Worker threads and the listener thread start now.
/// Copies: url and options; no pointer is kept. `url` is NUL-terminated; NULL means
/// "memory://". `options` may be NULL for defaults.
/// Out: on BROKK_STATUS_OK, `*broker_out` holds a new broker that the caller owns and must
/// release with brokk_broker_free; untouched otherwise.
/// Threads: any.
/// Errors: NULL_ARGUMENT (broker_out), INVALID_UTF8, INVALID_URL, UNSUPPORTED_BACKEND,
/// INVALID_ARGUMENT (options out of range, or threads could not be started).
#[no_mangle]
pub unsafe extern "C" fn brokk_broker_new(
    url: *const c_char,
    options: *const brokk_broker_options,
    broker_out: *mut *mut brokk_broker,
) -> brokk_status {
    guard(|| {
        let out = output(broker_out, "broker_out")?;
        let url = optional_c_text(url, "url")?.unwrap_or("memory://");
        let opts = options.as_ref().copied().unwrap_or_default();
        let config = BrokerConfig {
            worker_threads: opts.worker_threads as usize,
            max_payload_bytes: opts.max_payload_bytes.try_into().unwrap_or(usize::MAX),
            listener_queue_capacity: opts.listener_queue_capacity as usize,
            ..BrokerConfig::from_url(url)?
        };
        let broker = Broker::with_config(&config)?;
        *out = Box::into_raw(Box::new(brokk_broker { inner: broker }));
        Ok(())
    })
}

/// Releases a broker. If it is not closed yet it is closed with force (waiting deliveries are
/// dropped). Then it waits for handler and listener invocations running at that moment to
/// return, and runs every remaining finaliser (free_user_data) on this thread. After it
/// returns, no handler, listener or finaliser of this broker runs again, whatever the order in
/// which the host releases things. To bound the wait, close with a timeout first.
/// Called from inside one of this broker's handlers or listeners, it returns at once and the
/// same teardown completes on a brokk thread when that callback returns.
/// Takes: `broker`, which must not be used afterwards by any thread. NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn brokk_broker_free(broker: *mut brokk_broker) {
    super::boundary::guard_value((), || {
        if !broker.is_null() {
            drop(Box::from_raw(broker));
        }
    })
}

/// Publishes `payload_len` bytes of JSON on `topic` (`topic_len` bytes of [A-Za-z0-9_.-],
/// created if new). Every subscription of the topic gets its own delivery; with none the
/// message is counted unrouted and goes nowhere.
/// Copies: topic, payload, options and what they point to; no pointer is kept after return.
/// Out: if `id_out` is not NULL, on BROKK_STATUS_OK it holds the message id, NUL-terminated;
/// `id_out_cap` is its size in bytes (BROKK_ID_BUFFER_SIZE always suffices). Untouched
/// otherwise. If the buffer is too small, nothing is published.
/// Threads: any thread, concurrently, and from inside a handler.
/// Errors: NULL_ARGUMENT (broker, topic, payload), INVALID_UTF8, INVALID_TOPIC, INVALID_JSON,
/// INVALID_ID, PAYLOAD_TOO_LARGE, BUFFER_TOO_SMALL, CLOSED (also while a close is waiting).
#[no_mangle]
pub unsafe extern "C" fn brokk_broker_publish(
    broker: *const brokk_broker,
    topic: *const c_char,
    topic_len: usize,
    payload: *const c_char,
    payload_len: usize,
    options: *const brokk_publish_options,
    id_out: *mut c_char,
    id_out_cap: usize,
) -> brokk_status {
    guard(|| {
        let broker = reference(broker, "broker")?;
        let topic = text(topic, topic_len, "topic")?;
        if payload.is_null() {
            return Err(fail(brokk_status::NullArgument, "payload is NULL"));
        }
        let payload = bytes(payload, payload_len, "payload")?;
        let mut opts = PublishOptions::default();
        if let Some(o) = options.as_ref() {
            opts.id = optional_text(o.id, o.id_len, "options.id")?;
            opts.metadata =
                optional_text(o.metadata, o.metadata_len, "options.metadata")?.map(str::as_bytes);
        }
        if !id_out.is_null() {
            let needed = opts.id.map_or(crate::broker::GENERATED_ID_LEN, str::len) + 1;
            if id_out_cap < needed {
                return Err(fail(
                    brokk_status::BufferTooSmall,
                    format!("id_out holds {id_out_cap} bytes; the id needs {needed} (use BROKK_ID_BUFFER_SIZE)"),
                ));
            }
        }
        let message = broker.inner.publish(topic, payload, &opts)?;
        if !id_out.is_null() {
            let id = message.id().as_bytes();
            std::ptr::copy_nonoverlapping(id.as_ptr(), id_out.cast::<u8>(), id.len());
            *id_out.add(id.len()) = 0;
        }
        Ok(())
    })
}

/// Acks a delivery awaiting a manual ack (its handler returned BROKK_VERDICT_LATER, or is still
/// running): counted processed.
/// Threads: any thread, including from inside the handler that received the delivery.
/// Errors: NULL_ARGUMENT, UNKNOWN_DELIVERY (never issued), ALREADY_SETTLED (acked or nacked
/// before, or auto-acked), CLOSED.
#[no_mangle]
pub unsafe extern "C" fn brokk_broker_ack(
    broker: *const brokk_broker,
    delivery_id: u64,
) -> brokk_status {
    guard(|| {
        reference(broker, "broker")?.inner.ack(delivery_id)?;
        Ok(())
    })
}

/// Nacks a delivery awaiting a manual ack: with `requeue` it is queued again with attempt + 1
/// (dropped if its subscription is gone), otherwise dropped and counted failed. `reason`
/// (`reason_len` bytes of UTF-8, may be NULL) is passed to listeners' on_failed.
/// Copies: reason.
/// Threads: any thread, including from inside the handler that received the delivery.
/// Errors: NULL_ARGUMENT, INVALID_UTF8, UNKNOWN_DELIVERY, ALREADY_SETTLED, CLOSED.
#[no_mangle]
pub unsafe extern "C" fn brokk_broker_nack(
    broker: *const brokk_broker,
    delivery_id: u64,
    requeue: bool,
    reason: *const c_char,
    reason_len: usize,
) -> brokk_status {
    guard(|| {
        let broker = reference(broker, "broker")?;
        let reason =
            optional_text(reason, reason_len, "reason")?.map(|r| Reason::Owned(r.to_owned()));
        broker.inner.nack(delivery_id, requeue, reason)?;
        Ok(())
    })
}

/// Waits until no delivery is queued, running or awaiting an ack, and every listener event has
/// been delivered, or until `timeout_ms` passes (BROKK_WAIT_FOREVER: no limit).
/// Out: if `remaining_out` is not NULL, on BROKK_STATUS_OK it holds 0 and on
/// BROKK_STATUS_TIMEOUT the deliveries still outstanding; untouched otherwise.
/// Threads: any thread except this broker's own handlers and listeners.
/// Errors: NULL_ARGUMENT, TIMEOUT, WOULD_DEADLOCK (from a handler or listener), CLOSED.
#[no_mangle]
pub unsafe extern "C" fn brokk_broker_join(
    broker: *const brokk_broker,
    timeout_ms: u64,
    remaining_out: *mut u64,
) -> brokk_status {
    guard(|| {
        let broker = reference(broker, "broker")?;
        let result = broker.inner.join(timeout(timeout_ms));
        report_remaining(
            remaining_out,
            result.as_ref().err().map_or(0, |e| e.remaining()),
            &result,
        );
        result.map_err(Into::into)
    })
}

/// Closes the broker. Publish and subscribe fail with CLOSED at once; deliveries already
/// published are still delivered, and acks accepted, for up to `timeout_ms`
/// (BROKK_WAIT_FOREVER: no limit); then whatever is left is dropped, the workers stop, and
/// every later call on this broker fails with CLOSED (a second close included) until
/// brokk_broker_free. Handlers still running when time runs out finish on their own.
/// With `force`, nothing is waited for: everything outstanding is dropped at once.
/// Out: if `remaining_out` is not NULL it holds, on BROKK_STATUS_OK, the deliveries a forced
/// close dropped (queued or awaiting an ack; handlers running at that moment finish and are not
/// counted; 0 for a close that was not forced), and on BROKK_STATUS_TIMEOUT the deliveries left
/// unfinished; untouched on other statuses.
/// Threads: any thread. From inside this broker's own handler or listener only a forced close
/// is allowed; otherwise WOULD_DEADLOCK and nothing changes.
/// Errors: NULL_ARGUMENT, TIMEOUT (the broker is closed all the same), WOULD_DEADLOCK, CLOSED.
#[no_mangle]
pub unsafe extern "C" fn brokk_broker_close(
    broker: *const brokk_broker,
    timeout_ms: u64,
    force: bool,
    remaining_out: *mut u64,
) -> brokk_status {
    guard(|| {
        let broker = reference(broker, "broker")?;
        let result = broker.inner.close(timeout(timeout_ms), force);
        let remaining = match &result {
            Ok(report) => report.dropped,
            Err(e) => e.remaining(),
        };
        report_remaining(remaining_out, remaining, &result);
        result.map(|_| ()).map_err(Into::into)
    })
}

/// Writes `remaining` for OK and TIMEOUT outcomes only.
unsafe fn report_remaining<T>(out: *mut u64, remaining: u64, result: &crate::Result<T>) {
    let reportable = match result {
        Ok(_) => true,
        Err(e) => e.kind() == crate::ErrorKind::Timeout,
    };
    if reportable {
        if let Some(out) = out.as_mut() {
            *out = remaining;
        }
    }
}
