//! The operator log from C: a callback per process and per broker (see core/src/log.rs for
//! what is logged and when).

use std::ffi::{c_char, c_void, CString};
use std::sync::Arc;

use super::boundary::{fail, guard, Failure};
use super::broker::brokk_broker;
use super::callbacks::{brokk_free_cb, UserData};
use super::status::brokk_status;
use super::strings::reference;
use brokk_core::log::{set_process_sink, Level, LogSink};

/// How much a log record matters, most severe first. A plain integer, checked: unknown values
/// get BROKK_STATUS_INVALID_ARGUMENT. A callback set to a level gets that level and every more
/// severe one.
#[repr(transparent)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct brokk_log_level(pub u32);

/// brokk lost something or cannot go on as asked.
pub const BROKK_LOG_ERROR: brokk_log_level = brokk_log_level(1);
/// Something an operator should look at: a store outage, a lease that ran out, listener events
/// dropped, a close that left work behind, a long wait for SQLite's write lock.
pub const BROKK_LOG_WARN: brokk_log_level = brokk_log_level(2);
/// Normal but notable: a store connection regained, a close that left nothing behind, a dead
/// process's groups collected.
pub const BROKK_LOG_INFO: brokk_log_level = brokk_log_level(3);
/// Detail for diagnosing: each failed reconnection attempt, short lock waits.
pub const BROKK_LOG_DEBUG: brokk_log_level = brokk_log_level(4);
/// Everything else.
pub const BROKK_LOG_TRACE: brokk_log_level = brokk_log_level(5);

impl brokk_log_level {
    fn to_core(self) -> Result<Level, Failure> {
        Level::from_number(self.0)
            .ok_or_else(|| fail(brokk_status::InvalidArgument, format!("unknown log level {}", self.0)))
    }

    fn of(level: Level) -> Self {
        brokk_log_level(level as u32)
    }
}

/// Receives one log record. `target` names the part of brokk that speaks ("brokk::redis",
/// "brokk::sqlite", "brokk::lease", "brokk::listener", "brokk::close", ...); `message` is one
/// line of text for a person. Both are NUL-terminated UTF-8, valid only during the call.
/// Runs on the brokk thread that saw the event (a worker, the timer, the poller, the listener
/// thread) or on the host's thread inside a brokk call, possibly on several threads at once,
/// never with a brokk lock held. It may call brokk functions (setting a log callback included),
/// must return promptly (the thread that logs waits for it) and must not unwind into brokk.
pub type brokk_log_cb = Option<
    unsafe extern "C" fn(user_data: *mut c_void, level: brokk_log_level, target: *const c_char, message: *const c_char),
>;

/// A C callback as a core log sink; its user data is released when the last reference goes.
struct CSink {
    cb: unsafe extern "C" fn(*mut c_void, brokk_log_level, *const c_char, *const c_char),
    user_data: UserData,
}

/// Text as a C string: an interior NUL (none of brokk's own text has one; a server's error
/// text might) becomes a space rather than cutting the line short.
fn c_string(text: &str) -> CString {
    CString::new(text.replace('\0', " ")).unwrap_or_default()
}

impl LogSink for CSink {
    fn log(&self, level: Level, target: &str, message: &str) {
        let (target, message) = (c_string(target), c_string(message));
        // SAFETY: a callback the host registered, given its own user_data and two NUL-terminated
        // strings that outlive the call; the header asks it not to unwind.
        unsafe { (self.cb)(self.user_data.ptr(), brokk_log_level::of(level), target.as_ptr(), message.as_ptr()) };
    }
}

/// The sink `cb` makes (None for NULL), after checking `max_level`. On failure, nothing is
/// taken: `free_user_data` is not called.
fn sink(
    max_level: brokk_log_level,
    cb: brokk_log_cb,
    user_data: *mut c_void,
    free_user_data: brokk_free_cb,
) -> Result<(Level, Option<Arc<CSink>>), Failure> {
    let level = max_level.to_core()?;
    Ok((level, cb.map(|cb| Arc::new(CSink { cb, user_data: UserData::new(user_data, free_user_data) }))))
}

fn as_dyn(sink: &Option<Arc<CSink>>) -> Option<Arc<dyn LogSink>> {
    sink.clone().map(|s| s as Arc<dyn LogSink>)
}

/// Sets the process-wide log callback: it receives the records of every broker that has no
/// callback of its own (brokk_broker_set_log_callback), and those of opening a store (before a
/// broker exists), up to `max_level`. A NULL `cb` makes them silent again, which is the
/// default; nothing is logged, or even formatted, while no callback listens.
/// Takes: with a non-NULL `cb`, on success, `user_data` belongs to brokk: `free_user_data`
/// (may be NULL) runs exactly once, when the callback is replaced (by another call of this
/// function) and every call of it still running on other threads has returned; on whichever
/// thread returns last, possibly this one. A callback never replaced is never released. With a
/// NULL `cb`, or on failure, nothing is taken and `free_user_data` is not called.
/// Threads: any thread, at any time, from inside a callback included. A record being emitted
/// while the callback is replaced reaches the old or the new one (none if it was removed).
/// Errors: INVALID_ARGUMENT (unknown `max_level`).
#[no_mangle]
pub unsafe extern "C" fn brokk_log_set_callback(
    max_level: brokk_log_level,
    cb: brokk_log_cb,
    user_data: *mut c_void,
    free_user_data: brokk_free_cb,
) -> brokk_status {
    guard(|| {
        let (level, sink) = sink(max_level, cb, user_data, free_user_data)?;
        set_process_sink(level, as_dyn(&sink));
        Ok(())
    })
}

/// Gives `broker` a log callback of its own, taking its records (its store's included) up to
/// `max_level` instead of the process-wide callback. A NULL `cb` removes it: the broker's
/// records go to the process-wide callback again. Works on a closed broker too.
/// Takes: with a non-NULL `cb`, on success, `user_data` belongs to the broker: `free_user_data`
/// (may be NULL) runs exactly once, after the last call of the callback has returned: when it
/// is replaced or removed (on this thread, or on a thread whose call of it was still running),
/// or at the latest during brokk_broker_free (after brokk_broker_release: when its teardown
/// completes, on a brokk thread). With a NULL `cb`, or on failure, nothing is taken and
/// `free_user_data` is not called.
/// Threads: any thread, including from inside a callback of this broker.
/// Errors: NULL_ARGUMENT, INVALID_ARGUMENT (unknown `max_level`).
#[no_mangle]
pub unsafe extern "C" fn brokk_broker_set_log_callback(
    broker: *const brokk_broker,
    max_level: brokk_log_level,
    cb: brokk_log_cb,
    user_data: *mut c_void,
    free_user_data: brokk_free_cb,
) -> brokk_status {
    guard(|| {
        // SAFETY: `broker` is NULL or a broker not yet freed (brokk_broker's contract).
        let broker = unsafe { reference(broker, "broker") }?;
        let (level, sink) = sink(max_level, cb, user_data, free_user_data)?;
        broker.inner.set_log_sink(level, as_dyn(&sink)).map_err(|e| {
            // Refused (a forked child's copy of the broker), and the core dropped its reference:
            // the user data is not taken, so its finaliser must not run.
            if let Some(Ok(sink)) = sink.map(Arc::try_unwrap) {
                sink.user_data.disown();
            }
            e.into()
        })
    })
}
