//! Listeners from C: a struct of optional callbacks and their user data.

use std::ffi::{c_char, c_void};

use super::boundary::guard;
use super::broker::brokk_broker;
use super::callbacks::{brokk_free_cb, UserData};
use super::message::brokk_message;
use super::status::brokk_status;
use super::strings::{output, reference};
use brokk_core::Delivery;
use brokk_core::Listener;

/// Called with a message or delivery view, valid only during the call.
pub type brokk_message_event_cb = Option<unsafe extern "C" fn(user_data: *mut c_void, message: *const brokk_message)>;

/// Called when a delivery fails: `reason` (`reason_len` bytes of UTF-8, not NUL-terminated,
/// valid during the call) says why; `requeued` says whether it will be delivered again.
pub type brokk_failed_event_cb = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        message: *const brokk_message,
        reason: *const c_char,
        reason_len: usize,
        requeued: bool,
    ),
>;

/// Called when a subscription starts or ends; `topic` (`topic_len` bytes, not NUL-terminated)
/// is valid during the call.
pub type brokk_subscription_event_cb =
    Option<unsafe extern "C" fn(user_data: *mut c_void, topic: *const c_char, topic_len: usize, subscription_id: u64)>;

/// Called when a topic is first named; `topic` is valid during the call.
pub type brokk_topic_event_cb =
    Option<unsafe extern "C" fn(user_data: *mut c_void, topic: *const c_char, topic_len: usize)>;

/// An observer of broker events. Zero-initialise and set the callbacks you want; NULL ones are
/// skipped. All of them run on the broker's single listener thread, one event at a time, in the
/// order the events happened, with no brokk lock held; they may call brokk functions (join and
/// a non-forced close return WOULD_DEADLOCK). Events reach the listener thread through a
/// bounded queue: a slow listener delays other listeners, never deliveries, and when the queue
/// is full further events are dropped and counted (listener_events_dropped).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct brokk_listener {
    /// A message was published (the view's delivery id is 0; its id is the published id).
    pub on_publish: brokk_message_event_cb,
    /// A delivery was handed to a handler.
    pub on_dispatched: brokk_message_event_cb,
    /// A delivery was acked.
    pub on_processed: brokk_message_event_cb,
    /// A delivery was nacked or requeued, or its handler failed.
    pub on_failed: brokk_failed_event_cb,
    /// A subscription was created.
    pub on_subscribe: brokk_subscription_event_cb,
    /// A subscription was removed by brokk_broker_unsubscribe.
    pub on_unsubscribe: brokk_subscription_event_cb,
    /// A topic was named for the first time (by a publish or a subscribe).
    pub on_topic_created: brokk_topic_event_cb,
    /// Passed to every callback above.
    pub user_data: *mut c_void,
    /// Runs exactly once after the last callback, when the listener is removed or the broker
    /// freed; may be NULL.
    pub free_user_data: brokk_free_cb,
}

/// The callbacks of a `brokk_listener`, without its raw user_data pointer (held by `UserData`).
struct CListener {
    on_publish: brokk_message_event_cb,
    on_dispatched: brokk_message_event_cb,
    on_processed: brokk_message_event_cb,
    on_failed: brokk_failed_event_cb,
    on_subscribe: brokk_subscription_event_cb,
    on_unsubscribe: brokk_subscription_event_cb,
    on_topic_created: brokk_topic_event_cb,
    user_data: UserData,
}

impl CListener {
    fn message(&self, cb: brokk_message_event_cb, d: &Delivery) {
        if let Some(cb) = cb {
            let view = brokk_message::new(d);
            // SAFETY: a callback the host registered, given its own user_data and a view that
            // outlives the call; the header asks it not to unwind.
            unsafe { cb(self.user_data.ptr(), &view) };
        }
    }

    fn subscription(&self, cb: brokk_subscription_event_cb, topic: &str, id: u64) {
        if let Some(cb) = cb {
            // SAFETY: a callback the host registered, given its own user_data and `topic`'s bytes,
            // valid during the call.
            unsafe { cb(self.user_data.ptr(), topic.as_ptr().cast(), topic.len(), id) };
        }
    }
}

impl Listener for CListener {
    fn on_publish(&self, d: &Delivery) {
        self.message(self.on_publish, d);
    }
    fn on_dispatched(&self, d: &Delivery) {
        self.message(self.on_dispatched, d);
    }
    fn on_processed(&self, d: &Delivery) {
        self.message(self.on_processed, d);
    }
    fn on_failed(&self, d: &Delivery, reason: &str, requeued: bool) {
        if let Some(cb) = self.on_failed {
            let view = brokk_message::new(d);
            // SAFETY: a callback the host registered, given its own user_data, and a view and
            // `reason`'s bytes that stay valid during the call.
            unsafe { cb(self.user_data.ptr(), &view, reason.as_ptr().cast(), reason.len(), requeued) };
        }
    }
    fn on_subscribe(&self, topic: &str, id: u64) {
        self.subscription(self.on_subscribe, topic, id);
    }
    fn on_unsubscribe(&self, topic: &str, id: u64) {
        self.subscription(self.on_unsubscribe, topic, id);
    }
    fn on_topic_created(&self, topic: &str) {
        if let Some(cb) = self.on_topic_created {
            // SAFETY: a callback the host registered, given its own user_data and `topic`'s bytes,
            // valid during the call.
            unsafe { cb(self.user_data.ptr(), topic.as_ptr().cast(), topic.len()) };
        }
    }
}

/// Adds a listener. It sees every event that happens after this returns.
/// Copies: the `listener` struct; no pointer to it is kept.
/// Takes: on success, `listener->user_data` belongs to the listener: `free_user_data` runs
/// exactly once after its last callback. On failure nothing is taken and it is not called.
/// Out: on BROKK_STATUS_OK, `*listener_id_out` holds the listener id; untouched otherwise.
/// Threads: any thread, including from a handler or listener.
/// Errors: NULL_ARGUMENT, CLOSED.
#[no_mangle]
pub unsafe extern "C" fn brokk_broker_add_listener(
    broker: *const brokk_broker,
    listener: *const brokk_listener,
    listener_id_out: *mut u64,
) -> brokk_status {
    guard(|| {
        // SAFETY: `broker` is NULL or a broker not yet freed (brokk_broker's contract).
        let broker = unsafe { reference(broker, "broker") }?;
        // SAFETY: `listener` is NULL or a readable brokk_listener for this call (copied here).
        let table = *unsafe { reference(listener, "listener") }?;
        // SAFETY: `listener_id_out` is NULL or a writable u64 for this call.
        let out = unsafe { output(listener_id_out, "listener_id_out") }?;
        let listener = CListener {
            on_publish: table.on_publish,
            on_dispatched: table.on_dispatched,
            on_processed: table.on_processed,
            on_failed: table.on_failed,
            on_subscribe: table.on_subscribe,
            on_unsubscribe: table.on_unsubscribe,
            on_topic_created: table.on_topic_created,
            user_data: UserData::new(table.user_data, table.free_user_data),
        };
        match broker.inner.try_add_listener(listener) {
            Ok(id) => {
                *out = id;
                Ok(())
            }
            Err((e, listener)) => {
                listener.user_data.disown();
                Err(e.into())
            }
        }
    })
}

/// Removes a listener. A callback of it that is running finishes (this does not wait for it);
/// no callback of it starts after this returns. Its free_user_data runs after that last
/// callback, on this thread or the listener thread.
/// Threads: any thread, including from a handler or listener.
/// Errors: NULL_ARGUMENT, UNKNOWN_LISTENER, CLOSED.
#[no_mangle]
pub unsafe extern "C" fn brokk_broker_remove_listener(broker: *const brokk_broker, listener_id: u64) -> brokk_status {
    guard(|| {
        // SAFETY: `broker` is NULL or a broker not yet freed (brokk_broker's contract).
        unsafe { reference(broker, "broker") }?.inner.remove_listener(listener_id)?;
        Ok(())
    })
}
