//! Cancellation tokens: a host wakes one of its own blocking calls (fetch, take, join) from
//! another thread, instead of cutting every wait into slices.

use std::ffi::c_void;
use std::time::Duration;

use super::boundary::{fail, guard, guard_value};
use super::status::brokk_status;
use super::strings::{output, reference};
use brokk_core::Cancel;

/// A cancellation token for brokk's blocking calls (brokk_broker_fetch_batch_until,
/// brokk_broker_take_until, brokk_broker_join_until). Made by brokk_cancel_new, released by
/// brokk_cancel_free.
pub struct brokk_cancel {
    pub(crate) inner: Cancel,
}

/// Asked by a call waiting on a token made with brokk_cancel_new_checked: return true to cancel
/// the token (the call then returns BROKK_STATUS_CANCELLED). Runs on the thread that made the
/// waiting call, while it waits, with no brokk lock held; it must not call into brokk.
pub type brokk_cancel_check_cb = Option<unsafe extern "C" fn(user_data: *mut c_void) -> bool>;

/// The host's check and its user_data.
struct Check {
    cb: unsafe extern "C" fn(*mut c_void) -> bool,
    user_data: *mut c_void,
}

impl Check {
    fn ask(&self) -> bool {
        // SAFETY: the host's check with its own user_data, valid until brokk_cancel_free (its
        // contract), which cannot run while a call that asks it is still running.
        unsafe { (self.cb)(self.user_data) }
    }
}

// SAFETY: the check runs only on threads that made a call with the token, and the header makes
// user_data's use from those threads the host's contract, as for every callback's user_data.
unsafe impl Send for Check {}
// SAFETY: as for Send.
unsafe impl Sync for Check {}

/// Makes a cancellation token. Give it to brokk_broker_fetch_batch_until,
/// brokk_broker_take_until or brokk_broker_join_until; brokk_cancel_trigger from any thread then
/// makes each of them that waits on it return BROKK_STATUS_CANCELLED at once, having done
/// nothing. A token serves any number of calls, one after another or at once.
/// Out: on BROKK_STATUS_OK, `*cancel_out` holds a token the caller owns and must release with
/// brokk_cancel_free; untouched otherwise.
/// Threads: any.
/// Errors: NULL_ARGUMENT.
#[no_mangle]
pub unsafe extern "C" fn brokk_cancel_new(cancel_out: *mut *mut brokk_cancel) -> brokk_status {
    guard(|| {
        // SAFETY: `cancel_out` is NULL or a writable pointer slot for this call.
        let out = unsafe { output(cancel_out, "cancel_out") }?;
        *out = Box::into_raw(Box::new(brokk_cancel { inner: Cancel::new() }));
        Ok(())
    })
}

/// Makes a cancellation token that a call waiting on it also asks, through `check`, at least
/// every `every_ms` milliseconds (1 to 60000) and once before it waits: for a host that notices
/// its own cancellation only when it looks (CPython runs a Ctrl-C handler only when asked, on
/// the main thread, which is the one blocked in the call). A check that returns true cancels
/// the token, as brokk_cancel_trigger would.
/// Copies: nothing; `user_data` is passed to `check` as is, and must stay valid until
/// brokk_cancel_free returns.
/// Out: on BROKK_STATUS_OK, `*cancel_out` holds a token the caller owns and must release with
/// brokk_cancel_free; untouched otherwise.
/// Threads: any; `check` runs on the threads that make calls with the token.
/// Errors: NULL_ARGUMENT (`check`, `cancel_out`), INVALID_ARGUMENT (`every_ms` out of range).
#[no_mangle]
pub unsafe extern "C" fn brokk_cancel_new_checked(
    check: brokk_cancel_check_cb,
    user_data: *mut c_void,
    every_ms: u64,
    cancel_out: *mut *mut brokk_cancel,
) -> brokk_status {
    guard(|| {
        let Some(cb) = check else {
            return Err(fail(brokk_status::NullArgument, "check is NULL"));
        };
        if !(1..=60_000).contains(&every_ms) {
            return Err(fail(brokk_status::InvalidArgument, format!("every_ms is {every_ms}; it must be 1 to 60000")));
        }
        // SAFETY: `cancel_out` is NULL or a writable pointer slot for this call.
        let out = unsafe { output(cancel_out, "cancel_out") }?;
        let check = Check { cb, user_data };
        let inner = Cancel::with_check(Duration::from_millis(every_ms), move || check.ask());
        *out = Box::into_raw(Box::new(brokk_cancel { inner }));
        Ok(())
    })
}

/// Cancels the token: every call waiting on it returns BROKK_STATUS_CANCELLED now, and every
/// call given it later does so at once, until brokk_cancel_reset. Idempotent.
/// Threads: any thread, concurrently with the calls waiting on the token and with other
/// triggers; safe from a signal handler's thread but not from a signal handler itself (it takes
/// a lock).
/// Errors: NULL_ARGUMENT.
#[no_mangle]
pub unsafe extern "C" fn brokk_cancel_trigger(cancel: *const brokk_cancel) -> brokk_status {
    guard(|| {
        // SAFETY: `cancel` is NULL or a token not yet freed (brokk_cancel's contract).
        let cancel = unsafe { reference(cancel, "cancel") }?;
        cancel.inner.cancel();
        Ok(())
    })
}

/// Makes a cancelled token usable again, for a host that keeps one per thread rather than one
/// per call. A call that the cancel already woke still returns CANCELLED.
/// Threads: any.
/// Errors: NULL_ARGUMENT.
#[no_mangle]
pub unsafe extern "C" fn brokk_cancel_reset(cancel: *const brokk_cancel) -> brokk_status {
    guard(|| {
        // SAFETY: `cancel` is NULL or a token not yet freed (brokk_cancel's contract).
        let cancel = unsafe { reference(cancel, "cancel") }?;
        cancel.inner.reset();
        Ok(())
    })
}

/// Whether the token is cancelled (by brokk_cancel_trigger, or by its check). False for NULL.
/// Threads: any.
#[no_mangle]
pub unsafe extern "C" fn brokk_cancel_is_cancelled(cancel: *const brokk_cancel) -> bool {
    guard_value(|| {
        // SAFETY: `cancel` is NULL or a token not yet freed (brokk_cancel's contract).
        unsafe { cancel.as_ref() }.is_some_and(|c| c.inner.is_cancelled())
    })
}

/// Releases a token. No call may still be using it (each call that was given it has returned).
/// Takes: `cancel`, which must not be used afterwards. NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn brokk_cancel_free(cancel: *mut brokk_cancel) {
    guard_value(|| {
        if !cancel.is_null() {
            // SAFETY: non-NULL, so it came from Box::into_raw in brokk_cancel_new(_checked), and
            // the caller hands it over.
            drop(unsafe { Box::from_raw(cancel) });
        }
    })
}

/// The core's token of an optional C token.
///
/// # Safety
/// `cancel` is NULL or a token not yet freed, for `'a`.
pub(crate) unsafe fn optional_cancel<'a>(cancel: *const brokk_cancel) -> Option<&'a Cancel> {
    // SAFETY: this function's contract.
    unsafe { cancel.as_ref() }.map(|c| &c.inner)
}
