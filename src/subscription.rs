//! Subscriptions from C: the handler callback, its verdicts, and subscribe/unsubscribe.

use std::ffi::{c_char, c_void};
use std::time::Duration;

use super::boundary::{fail, guard};
use super::broker::brokk_broker;
use super::callbacks::{brokk_free_cb, UserData};
use super::message::brokk_message;
use super::status::brokk_status;
use super::strings::{optional_text, output, reference, text};
use brokk_core::Delivery;
use brokk_core::SubscribeOptions;
use brokk_core::{Handler, Reason, Verdict};

/// A handler's answer for one delivery. A plain integer so that any value a C handler returns
/// is defined behaviour; values other than the BROKK_VERDICT_* constants count as a nack.
#[repr(transparent)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct brokk_verdict(pub u32);

/// Processed: the delivery is settled and counted processed.
pub const BROKK_VERDICT_ACK: brokk_verdict = brokk_verdict(0);
/// Failed: the delivery is dropped and counted failed.
pub const BROKK_VERDICT_NACK: brokk_verdict = brokk_verdict(1);
/// Failed for now: the delivery is queued again behind others of its priority, with its
/// attempt count one higher (after brokk_message_set_requeue_delay's delay, if set), unless the
/// subscription's max_attempts is reached: then it is given up (dead-lettered, if a topic is
/// set).
pub const BROKK_VERDICT_REQUEUE: brokk_verdict = brokk_verdict(2);
/// Not decided yet: on a manual-ack subscription the delivery awaits brokk_broker_ack or
/// brokk_broker_nack (from any thread, at any later time); on an auto-ack subscription this
/// means ACK.
pub const BROKK_VERDICT_LATER: brokk_verdict = brokk_verdict(3);

/// A subscription's handler. Runs on a broker worker thread with no brokk lock held, so it may
/// call any brokk function on its broker (publish, subscribe, unsubscribe, ack, nack, stats),
/// except that join and a non-forced close return BROKK_STATUS_WOULD_DEADLOCK there.
/// `message` is valid only until the handler returns. With concurrency 1 a subscription's
/// handler runs on one thread at a time, in delivery order; above 1, concurrently.
/// It must not unwind (C++ exceptions, longjmp) into brokk. Return quickly: a worker is busy
/// until it does.
pub type brokk_handler_cb =
    Option<unsafe extern "C" fn(user_data: *mut c_void, message: *const brokk_message) -> brokk_verdict>;

/// Options of brokk_broker_subscribe. Zero-initialise, then set what you need: all zero means
/// auto-ack, concurrency 1 and no group.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct brokk_subscription_options {
    /// false: the verdict settles the delivery. true: BROKK_VERDICT_LATER leaves it awaiting
    /// brokk_broker_ack / brokk_broker_nack.
    pub manual_ack: bool,
    /// Handler invocations that may run at once, 1..=BROKK_MAX_CONCURRENCY; 0 means 1.
    /// 1 keeps delivery strictly in order.
    pub concurrency: u32,
    /// A consumer group to join (`group_len` bytes of [A-Za-z0-9_.-]): its members,
    /// subscriptions and fetchers alike, compete for its messages, each message going to one
    /// of them. NULL: no group; the subscription gets its own copy of every message.
    pub group: *const c_char,
    /// Length of `group` in bytes.
    pub group_len: usize,
    /// Milliseconds a delivery may stay unsettled after it is handed to the handler; past it,
    /// it is taken back and redelivered (attempt + 1) even if the handler still runs, and
    /// listeners hear a failure with the deadline as reason. 0: no deadline.
    pub ack_deadline_ms: u64,
    /// Attempts before a delivery is given up instead of requeued; 0: no limit.
    pub max_attempts: u32,
    /// Topic (`dead_letter_topic_len` bytes) where given-up and nacked deliveries are published,
    /// with a "dead_letter" object (topic, group, message_id, attempts, reason) added to their
    /// metadata. NULL: they are dropped, counted failed.
    pub dead_letter_topic: *const c_char,
    /// Length of `dead_letter_topic` in bytes.
    pub dead_letter_topic_len: usize,
}

impl Default for brokk_subscription_options {
    fn default() -> Self {
        brokk_subscription_options {
            manual_ack: false,
            concurrency: 0,
            group: std::ptr::null(),
            group_len: 0,
            ack_deadline_ms: 0,
            max_attempts: 0,
            dead_letter_topic: std::ptr::null(),
            dead_letter_topic_len: 0,
        }
    }
}

/// The trampoline from the core's `Handler` to a C callback.
struct CHandler {
    callback: unsafe extern "C" fn(*mut c_void, *const brokk_message) -> brokk_verdict,
    user_data: UserData,
}

impl Handler for CHandler {
    fn handle(&self, delivery: &Delivery) -> Verdict {
        let view = brokk_message::new(delivery);
        // SAFETY: the host's handler, given its own user_data and a view that outlives the call;
        // brokk_handler_cb asks it not to unwind.
        let verdict = unsafe { (self.callback)(self.user_data.ptr(), &view) };
        match verdict {
            BROKK_VERDICT_ACK => Verdict::Ack,
            BROKK_VERDICT_NACK => Verdict::Nack(view.take_reason()),
            BROKK_VERDICT_REQUEUE => match view.requeue_delay() {
                Some(delay) => Verdict::RequeueAfter(delay, view.take_reason()),
                None => Verdict::Requeue(view.take_reason()),
            },
            BROKK_VERDICT_LATER => Verdict::Later,
            brokk_verdict(other) => {
                Verdict::Nack(Some(Reason::Owned(format!("handler returned unknown verdict {other}"))))
            }
        }
    }
}

/// Subscribes `handler` to `topic` (`topic_len` bytes of [A-Za-z0-9_.-], created if new).
/// Every message published on the topic afterwards is delivered to it as its own copy.
/// Copies: topic and options; no pointer is kept after return.
/// Takes: on success, `user_data` belongs to the subscription: `free_user_data` (may be NULL)
/// runs exactly once, after the last handler invocation, once the subscription is
/// unsubscribed or the broker freed. On failure nothing is taken and `free_user_data` is not
/// called.
/// Out: on BROKK_STATUS_OK, `*subscription_id_out` holds the subscription id; untouched
/// otherwise.
/// Threads: any thread, including from a handler.
/// Errors: NULL_ARGUMENT (broker, topic, handler, subscription_id_out), INVALID_UTF8,
/// INVALID_TOPIC (topic, dead_letter_topic), INVALID_GROUP, INVALID_ARGUMENT (concurrency),
/// CLOSED.
#[no_mangle]
pub unsafe extern "C" fn brokk_broker_subscribe(
    broker: *const brokk_broker,
    topic: *const c_char,
    topic_len: usize,
    handler: brokk_handler_cb,
    user_data: *mut c_void,
    free_user_data: brokk_free_cb,
    options: *const brokk_subscription_options,
    subscription_id_out: *mut u64,
) -> brokk_status {
    guard(|| {
        // SAFETY: `broker` is NULL or a broker not yet freed (brokk_broker's contract).
        let broker = unsafe { reference(broker, "broker") }?;
        // SAFETY: `topic` is NULL or `topic_len` readable bytes for this call.
        let topic = unsafe { text(topic, topic_len, "topic") }?;
        let callback = handler.ok_or_else(|| fail(brokk_status::NullArgument, "handler is NULL"))?;
        // SAFETY: `subscription_id_out` is NULL or a writable u64 for this call.
        let out = unsafe { output(subscription_id_out, "subscription_id_out") }?;
        // SAFETY: `options` is NULL or a readable struct for this call (copied here).
        let opts = unsafe { options.as_ref() }.copied().unwrap_or_default();
        let opts = SubscribeOptions {
            manual_ack: opts.manual_ack,
            concurrency: opts.concurrency as usize,
            // SAFETY: the options' strings are NULL or valid for their lengths for this call.
            group: unsafe { optional_text(opts.group, opts.group_len, "options.group") }?,
            ack_deadline: (opts.ack_deadline_ms > 0).then(|| Duration::from_millis(opts.ack_deadline_ms)),
            max_attempts: opts.max_attempts,
            // SAFETY: as for `group`.
            dead_letter_topic: unsafe {
                optional_text(opts.dead_letter_topic, opts.dead_letter_topic_len, "options.dead_letter_topic")
            }?,
        };
        // Built last: on any earlier failure the host keeps its user_data.
        let handler = CHandler { callback, user_data: UserData::new(user_data, free_user_data) };
        match broker.inner.try_subscribe(topic, handler, &opts) {
            Ok(id) => {
                *out = id;
                Ok(())
            }
            Err((e, handler)) => {
                // The host keeps its user_data: no finaliser for a failed subscribe.
                handler.user_data.disown();
                Err(e.into())
            }
        }
    })
}

/// Stops delivery to a subscription. Deliveries waiting for it are dropped (counted dropped);
/// handler invocations already running finish; none starts after this returns. Deliveries it
/// left awaiting a manual ack can still be acked or nacked.
/// Threads: any thread, including from that subscription's own handler.
/// Errors: NULL_ARGUMENT, UNKNOWN_SUBSCRIPTION, CLOSED.
#[no_mangle]
pub unsafe extern "C" fn brokk_broker_unsubscribe(broker: *const brokk_broker, subscription_id: u64) -> brokk_status {
    guard(|| {
        // SAFETY: `broker` is NULL or a broker not yet freed (brokk_broker's contract).
        let broker = unsafe { reference(broker, "broker") }?;
        broker.inner.unsubscribe(subscription_id)?;
        Ok(())
    })
}
