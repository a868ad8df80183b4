//! Readiness notification from C: be told when a consumer group may have a delivery, instead of
//! blocking a thread in a fetch (for event loops: asyncio, libuv, epoll-driven hosts).

use std::ffi::{c_char, c_void};

use super::boundary::{fail, guard};
use super::broker::brokk_broker;
use super::status::brokk_status;
use super::strings::{optional_text, output, reference, text};
use brokk_core::{Readiness, ReadyWait};

/// What brokk_broker_notify_ready found, or why a readiness callback runs. A plain integer.
#[repr(transparent)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct brokk_readiness(pub u32);

/// (Only from brokk_broker_notify_ready.) Nothing is known yet: the callback was registered and
/// will run exactly once.
pub const BROKK_READINESS_PENDING: brokk_readiness = brokk_readiness(0);
/// The group may have a delivery to claim: fetch with a timeout of 0, and if that finds nothing
/// (another consumer was faster: a wake-up may be spurious), call brokk_broker_notify_ready
/// again.
pub const BROKK_READINESS_READY: brokk_readiness = brokk_readiness(1);
/// The broker closed (or was freed): no delivery will come.
pub const BROKK_READINESS_CLOSED: brokk_readiness = brokk_readiness(2);

impl From<Readiness> for brokk_readiness {
    fn from(r: Readiness) -> Self {
        match r {
            Readiness::Ready => BROKK_READINESS_READY,
            Readiness::Closed => BROKK_READINESS_CLOSED,
        }
    }
}

/// A readiness callback: `readiness` is BROKK_READINESS_READY or BROKK_READINESS_CLOSED.
/// Runs exactly once per registration that brokk_broker_forget_ready did not remove first,
/// with no brokk lock held, on the thread that made the delivery available or closed the
/// broker: a thread calling brokk_broker_publish (possibly the very thread that registered),
/// nack or close or free, or one of the broker's own threads (its poller, which finds other
/// processes' work on SQLite and Redis; its timer, for delayed requeues). So it must be quick
/// and must not block: wake the consumer (write to an eventfd or a pipe, post to an event
/// loop) and fetch there, not in the callback. It may call brokk_broker_forget_ready; it must
/// not unwind (C++ exceptions, longjmp) into brokk.
pub type brokk_ready_cb = Option<unsafe extern "C" fn(user_data: *mut c_void, readiness: brokk_readiness)>;

/// The host's callback and its user_data, run once.
struct Notify {
    cb: unsafe extern "C" fn(*mut c_void, brokk_readiness),
    user_data: *mut c_void,
}

// SAFETY: the header tells hosts that the callback runs on another thread with its user_data;
// making that safe is the host's contract, as for every callback's user_data.
unsafe impl Send for Notify {}

impl Notify {
    fn run(self, r: Readiness) {
        // SAFETY: the host's callback with its own user_data, which it keeps valid until the
        // callback has run or brokk_broker_forget_ready removed it (the header's contract).
        unsafe { (self.cb)(self.user_data, r.into()) }
    }
}

/// Registers `cb` to run once when the consumer group `group` (`group_len` bytes; NULL: the
/// group "default", which fetches without a group share) on `topic` may have a delivery to
/// claim, or when the broker closes: a wait that costs no thread. Creates the topic and the
/// group if new, as a fetch does; while registered, the callback counts as a waiting consumer
/// of the group (on SQLite and Redis the broker watches the store for other processes' work
/// for it). Like blocked fetchers, registrations are woken one per delivery, oldest first, so
/// a consumer that gives up after its callback ran must still call brokk_broker_forget_ready,
/// which hands the notification on.
/// Out: on BROKK_STATUS_OK, `*now_out` is BROKK_READINESS_PENDING and `*waiter_out` the
/// registration's id (non-zero, unique in the process): `cb` will run exactly once, unless
/// brokk_broker_forget_ready removes it first. Or, when the answer is known at once,
/// `*now_out` is BROKK_READINESS_READY (a delivery is queued: fetch now) or
/// BROKK_READINESS_CLOSED (the broker is closed), `*waiter_out` is 0, and `cb` never runs.
/// Both untouched on failure (and `cb` never runs).
/// Copies: topic and group; `user_data` is passed to `cb` as is, and must stay valid until `cb`
/// has run or brokk_broker_forget_ready has returned false for it.
/// Threads: any thread, concurrently; see brokk_ready_cb for where `cb` runs. Freeing the
/// broker runs every pending callback (BROKK_READINESS_CLOSED) before it returns.
/// Errors: NULL_ARGUMENT (broker, topic, cb, waiter_out, now_out), INVALID_UTF8, INVALID_TOPIC,
/// INVALID_GROUP.
#[no_mangle]
pub unsafe extern "C" fn brokk_broker_notify_ready(
    broker: *const brokk_broker,
    topic: *const c_char,
    topic_len: usize,
    group: *const c_char,
    group_len: usize,
    cb: brokk_ready_cb,
    user_data: *mut c_void,
    waiter_out: *mut u64,
    now_out: *mut brokk_readiness,
) -> brokk_status {
    guard(|| {
        // SAFETY: `broker` is NULL or a broker not yet freed (brokk_broker's contract).
        let broker = unsafe { reference(broker, "broker") }?;
        // SAFETY: `topic` is NULL or `topic_len` readable bytes for this call.
        let topic = unsafe { text(topic, topic_len, "topic") }?;
        // SAFETY: `group` is NULL or `group_len` readable bytes for this call.
        let group = unsafe { optional_text(group, group_len, "group") }?;
        let Some(cb) = cb else {
            return Err(fail(brokk_status::NullArgument, "cb is NULL"));
        };
        // SAFETY: `waiter_out` is NULL or a writable slot for this call.
        let waiter_out = unsafe { output(waiter_out, "waiter_out") }?;
        // SAFETY: `now_out` is NULL or a writable slot for this call.
        let now_out = unsafe { output(now_out, "now_out") }?;
        let notify = Notify { cb, user_data };
        match broker.inner.when_ready(topic, group, move |r| notify.run(r))? {
            ReadyWait::Armed(id) => {
                *waiter_out = id;
                *now_out = BROKK_READINESS_PENDING;
            }
            ReadyWait::Now(r) => {
                *waiter_out = 0;
                *now_out = r.into();
            }
        }
        Ok(())
    })
}

/// Removes registration `waiter` of `group` on `topic` (as given to brokk_broker_notify_ready;
/// `group` NULL: "default"). `*fired_out` false: it was still pending, and its callback will
/// never run (its user_data is the caller's again). `*fired_out` true: its callback ran (or the
/// id is unknown there); if the callback is running on another thread at this moment, this
/// returns only once it has returned, so the caller may release user_data afterwards (called
/// from inside that callback, it returns at once). Because a callback that ran may have been
/// the one told of a delivery, a true result also hands the notification on to the next
/// pending registration of the group: call this when a consumer gives up, whether or not its
/// callback ran.
/// Out: `*fired_out` on BROKK_STATUS_OK; untouched on failure.
/// Copies: topic and group. Threads: any.
/// Errors: NULL_ARGUMENT (broker, topic, fired_out), INVALID_UTF8, INVALID_TOPIC,
/// INVALID_GROUP.
#[no_mangle]
pub unsafe extern "C" fn brokk_broker_forget_ready(
    broker: *const brokk_broker,
    topic: *const c_char,
    topic_len: usize,
    group: *const c_char,
    group_len: usize,
    waiter: u64,
    fired_out: *mut bool,
) -> brokk_status {
    guard(|| {
        // SAFETY: `broker` is NULL or a broker not yet freed (brokk_broker's contract).
        let broker = unsafe { reference(broker, "broker") }?;
        // SAFETY: `topic` is NULL or `topic_len` readable bytes for this call.
        let topic = unsafe { text(topic, topic_len, "topic") }?;
        // SAFETY: `group` is NULL or `group_len` readable bytes for this call.
        let group = unsafe { optional_text(group, group_len, "group") }?;
        // SAFETY: `fired_out` is NULL or a writable slot for this call.
        let fired_out = unsafe { output(fired_out, "fired_out") }?;
        *fired_out = broker.inner.forget_ready(topic, group, waiter)?;
        Ok(())
    })
}
