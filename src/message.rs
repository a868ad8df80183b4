//! Message views: what handlers and listeners get for one delivery, valid for that call only.

use std::cell::{Cell, OnceCell, RefCell};
use std::ffi::c_char;
use std::time::Duration;

use super::boundary::{guard, guard_value};
use super::status::brokk_status;
use super::strings::{brokk_str, reference, text};
use brokk_core::Delivery;
use brokk_core::Reason;

/// Longest decimal form of a u64.
const ID_TEXT_LEN: usize = 20;

/// A read-only view of one delivery (or, in on_publish, of the published message). One handed to
/// a handler or listener is valid only during that callback: copy what you need before
/// returning. One from brokk_delivery_message is valid until brokk_delivery_free.
pub struct brokk_message {
    delivery: *const Delivery,
    /// The delivery id as decimal text, formatted inside the view (no allocation) on the
    /// first brokk_message_id: most handlers never ask for it.
    id_text: OnceCell<([u8; ID_TEXT_LEN], usize)>,
    /// Set by brokk_message_set_failure_reason from the handler, read after it returns.
    reason: RefCell<Option<String>>,
    /// Set by brokk_message_set_requeue_delay, in milliseconds.
    requeue_delay_ms: Cell<u64>,
}

impl brokk_message {
    /// A view of `delivery` that must not outlive it.
    pub(crate) fn new(delivery: &Delivery) -> Self {
        brokk_message { delivery, id_text: OnceCell::new(), reason: RefCell::new(None), requeue_delay_ms: Cell::new(0) }
    }

    /// What brokk_message_id returns: the delivery id as text, or in on_publish (delivery id 0)
    /// the published id.
    fn id_view(&self) -> brokk_str {
        match self.delivery().id() {
            0 => brokk_str::from_str(self.delivery().parent_id()),
            _ => brokk_str::from_bytes(self.id_text()),
        }
    }

    /// What brokk_message_parent_id returns: empty in on_publish, where the view is the
    /// published message itself.
    fn parent_id_view(&self) -> brokk_str {
        match self.delivery().id() {
            0 => brokk_str::empty(),
            _ => brokk_str::from_str(self.delivery().parent_id()),
        }
    }

    /// The delivery id as decimal text; empty for id 0 (the published message itself).
    fn id_text(&self) -> &[u8] {
        let (digits, len) = self.id_text.get_or_init(|| {
            let mut out = [0u8; ID_TEXT_LEN];
            let mut n = self.delivery().id();
            let mut len = 0;
            while n > 0 {
                out[len] = b'0' + (n % 10) as u8;
                n /= 10;
                len += 1;
            }
            out[..len].reverse();
            (out, len)
        });
        &digits[..*len]
    }

    fn delivery(&self) -> &Delivery {
        // SAFETY: a view never outlives its delivery: it lives on the stack of the trampoline that
        // borrows it, or beside it in a brokk_delivery, whose Box keeps the delivery in place.
        unsafe { &*self.delivery }
    }

    pub(crate) fn take_reason(&self) -> Option<Reason> {
        self.reason.borrow_mut().take().map(Reason::Owned)
    }

    pub(crate) fn requeue_delay(&self) -> Option<Duration> {
        Some(self.requeue_delay_ms.get()).filter(|ms| *ms > 0).map(Duration::from_millis)
    }
}

/// The topic the message was published on.
/// Returns: a view valid as long as `msg` (see brokk_message); empty for NULL.
#[no_mangle]
pub unsafe extern "C" fn brokk_message_topic(msg: *const brokk_message) -> brokk_str {
    guard_value(|| {
        // SAFETY: `msg` is NULL or a view still valid (see brokk_message).
        unsafe { msg.as_ref() }.map_or(brokk_str::empty(), |m| brokk_str::from_str(m.delivery().topic()))
    })
}

/// The JSON payload, byte for byte as published; shared by every delivery of the message.
/// Returns: a view valid as long as `msg` (see brokk_message); empty for NULL.
#[no_mangle]
pub unsafe extern "C" fn brokk_message_payload(msg: *const brokk_message) -> brokk_str {
    guard_value(|| {
        // SAFETY: `msg` is NULL or a view still valid (see brokk_message).
        unsafe { msg.as_ref() }.map_or(brokk_str::empty(), |m| brokk_str::from_bytes(m.delivery().payload()))
    })
}

/// The metadata JSON object as published, or "{}".
/// Returns: a view valid as long as `msg` (see brokk_message); empty for NULL.
#[no_mangle]
pub unsafe extern "C" fn brokk_message_metadata(msg: *const brokk_message) -> brokk_str {
    guard_value(|| {
        // SAFETY: `msg` is NULL or a view still valid (see brokk_message).
        unsafe { msg.as_ref() }.map_or(brokk_str::empty(), |m| brokk_str::from_bytes(m.delivery().metadata()))
    })
}

/// This delivery's own id as decimal text: each subscription's copy of a message has its own
/// (the number is brokk_message_delivery_id). In on_publish, where there is no delivery yet, the published id.
/// Returns: a view valid as long as `msg` (see brokk_message); empty for NULL.
#[no_mangle]
pub unsafe extern "C" fn brokk_message_id(msg: *const brokk_message) -> brokk_str {
    guard_value(|| {
        // SAFETY: `msg` is NULL or a view still valid (see brokk_message).
        unsafe { msg.as_ref() }.map_or(brokk_str::empty(), brokk_message::id_view)
    })
}

/// The id of the published message this delivery copies: the id brokk_broker_publish returned
/// (the parent of every copy made by fan-out). Empty in on_publish, where the view is the published message.
/// Returns: a view valid as long as `msg` (see brokk_message); empty for NULL.
#[no_mangle]
pub unsafe extern "C" fn brokk_message_parent_id(msg: *const brokk_message) -> brokk_str {
    guard_value(|| {
        // SAFETY: `msg` is NULL or a view still valid (see brokk_message).
        unsafe { msg.as_ref() }.map_or(brokk_str::empty(), brokk_message::parent_id_view)
    })
}

/// The delivery id that brokk_broker_ack and brokk_broker_nack take, kept across redeliveries.
/// Not the message id (brokk_message_parent_id, the id publish returned). No other live broker
/// of the process issues the same number: an id given to another broker's ack or nack is
/// UNKNOWN_DELIVERY there and changes nothing. 0 in on_publish and for NULL.
#[no_mangle]
pub unsafe extern "C" fn brokk_message_delivery_id(msg: *const brokk_message) -> u64 {
    guard_value(|| {
        // SAFETY: `msg` is NULL or a view still valid (see brokk_message).
        unsafe { msg.as_ref() }.map_or(0, |m| m.delivery().id())
    })
}

/// The subscription whose handler received this delivery. 0 for a fetched delivery, in
/// on_publish, and for NULL.
#[no_mangle]
pub unsafe extern "C" fn brokk_message_subscription_id(msg: *const brokk_message) -> u64 {
    guard_value(|| {
        // SAFETY: `msg` is NULL or a view still valid (see brokk_message).
        unsafe { msg.as_ref() }.map_or(0, |m| m.delivery().subscription())
    })
}

/// The message's priority (higher first). 0 for NULL.
#[no_mangle]
pub unsafe extern "C" fn brokk_message_priority(msg: *const brokk_message) -> i32 {
    guard_value(|| {
        // SAFETY: `msg` is NULL or a view still valid (see brokk_message).
        unsafe { msg.as_ref() }.map_or(0, |m| m.delivery().priority())
    })
}

/// The consumer group this delivery was made for ("default" for a fetch that named none);
/// empty for an ungrouped subscription's delivery, in on_publish, and for NULL.
/// Returns: a view valid as long as `msg` (see brokk_message).
#[no_mangle]
pub unsafe extern "C" fn brokk_message_group(msg: *const brokk_message) -> brokk_str {
    guard_value(|| {
        // SAFETY: `msg` is NULL or a view still valid (see brokk_message).
        unsafe { msg.as_ref() }
            .map_or(brokk_str::empty(), |m| m.delivery().group().map_or(brokk_str::empty(), brokk_str::from_str))
    })
}

/// 1 on first delivery, one more for each redelivery. 0 in on_publish and for NULL.
#[no_mangle]
pub unsafe extern "C" fn brokk_message_attempt(msg: *const brokk_message) -> u32 {
    guard_value(|| {
        // SAFETY: `msg` is NULL or a view still valid (see brokk_message).
        unsafe { msg.as_ref() }.map_or(0, |m| m.delivery().attempt())
    })
}

/// When the message was published, in milliseconds since the Unix epoch. 0 for NULL.
#[no_mangle]
pub unsafe extern "C" fn brokk_message_timestamp_ms(msg: *const brokk_message) -> u64 {
    guard_value(|| {
        // SAFETY: `msg` is NULL or a view still valid (see brokk_message).
        unsafe { msg.as_ref() }.map_or(0, |m| m.delivery().message().timestamp_ms())
    })
}

/// Records why the handler is failing this delivery, for listeners' on_failed; used when the
/// handler then returns BROKK_VERDICT_NACK or BROKK_VERDICT_REQUEUE. Call it only from the
/// handler that received `msg`, on its thread, during the call (it is not synchronised); on a
/// fetched delivery's view it has no effect on anything.
/// Copies: `reason`; no pointer is kept.
/// Errors: NULL_ARGUMENT, INVALID_UTF8.
#[no_mangle]
pub unsafe extern "C" fn brokk_message_set_failure_reason(
    msg: *const brokk_message,
    reason: *const c_char,
    reason_len: usize,
) -> brokk_status {
    guard(|| {
        // SAFETY: `msg` is NULL or a view still valid (see brokk_message).
        let m = unsafe { reference(msg, "msg") }?;
        // SAFETY: `reason` is NULL or `reason_len` readable bytes for this call.
        let reason = unsafe { text(reason, reason_len, "reason") }?;
        *m.reason.borrow_mut() = Some(reason.to_owned());
        Ok(())
    })
}

/// Delays the requeue that the handler is about to ask for: when it then returns
/// BROKK_VERDICT_REQUEUE, the delivery is delivered again no earlier than `delay_ms` from now
/// (backoff). Call it only from the handler that received `msg`.
/// Errors: NULL_ARGUMENT.
#[no_mangle]
pub unsafe extern "C" fn brokk_message_set_requeue_delay(msg: *const brokk_message, delay_ms: u64) -> brokk_status {
    guard(|| {
        // SAFETY: `msg` is NULL or a view still valid (see brokk_message).
        unsafe { reference(msg, "msg") }?.requeue_delay_ms.set(delay_ms);
        Ok(())
    })
}

/// Every field of a message view at once (what the brokk_message_* accessors return one by
/// one), for bindings that copy a whole message per delivery: one call instead of eleven.
/// Filled by brokk_message_read; the views in it are valid as long as the message view.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct brokk_message_fields {
    /// As brokk_message_topic.
    pub topic: brokk_str,
    /// As brokk_message_id.
    pub id: brokk_str,
    /// As brokk_message_parent_id.
    pub parent_id: brokk_str,
    /// As brokk_message_payload.
    pub payload: brokk_str,
    /// As brokk_message_metadata.
    pub metadata: brokk_str,
    /// As brokk_message_group.
    pub group: brokk_str,
    /// As brokk_message_delivery_id.
    pub delivery_id: u64,
    /// As brokk_message_subscription_id.
    pub subscription_id: u64,
    /// As brokk_message_timestamp_ms.
    pub timestamp_ms: u64,
    /// As brokk_message_priority.
    pub priority: i32,
    /// As brokk_message_attempt.
    pub attempt: u32,
}

/// Reads every field of `msg` into `*fields_out`.
/// Out: on BROKK_STATUS_OK, `*fields_out`, whose views are valid as long as `msg` (see
/// brokk_message); untouched on failure.
/// Errors: NULL_ARGUMENT.
#[no_mangle]
pub unsafe extern "C" fn brokk_message_read(
    msg: *const brokk_message,
    fields_out: *mut brokk_message_fields,
) -> brokk_status {
    guard(|| {
        // SAFETY: `msg` is NULL or a view still valid (see brokk_message).
        let m = unsafe { reference(msg, "msg") }?;
        // SAFETY: `fields_out` is NULL or a writable brokk_message_fields for this call.
        let out = unsafe { super::strings::output(fields_out, "fields_out") }?;
        let d = m.delivery();
        *out = brokk_message_fields {
            topic: brokk_str::from_str(d.topic()),
            id: m.id_view(),
            parent_id: m.parent_id_view(),
            payload: brokk_str::from_bytes(d.payload()),
            metadata: brokk_str::from_bytes(d.metadata()),
            group: d.group().map_or(brokk_str::empty(), brokk_str::from_str),
            delivery_id: d.id(),
            subscription_id: d.subscription(),
            timestamp_ms: d.message().timestamp_ms(),
            priority: d.priority(),
            attempt: d.attempt(),
        };
        Ok(())
    })
}
