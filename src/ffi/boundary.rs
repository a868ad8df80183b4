//! The C boundary: every exported function's body runs inside `guard` (status-returning) or
//! `guard_value` (accessors with a documented default), which catch panics so that none crosses
//! into C, and record failures for brokk_last_error().
//!
//! STYLE.md asks for one macro that both declares the function and wraps its body. cbindgen does
//! not expand macros on stable Rust, so a macro-declared function would vanish from the header;
//! instead each function is written out and its body starts with a guard call, and
//! tests/ffi_guard.rs fails on any `extern "C" fn` in src/ffi/ whose body does not.

use std::borrow::Cow;
use std::panic::{catch_unwind, AssertUnwindSafe};

use super::last_error;
use super::status::brokk_status;
use crate::error::Error;

/// A failing call: its status and the message for brokk_last_error().
#[derive(Debug)]
pub(crate) struct Failure {
    pub status: brokk_status,
    pub message: Cow<'static, str>,
}

pub(crate) fn fail(status: brokk_status, message: impl Into<Cow<'static, str>>) -> Failure {
    Failure { status, message: message.into() }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure { status: e.kind().into(), message: e.message().to_owned().into() }
    }
}

/// Runs a status-returning body: Ok → BROKK_STATUS_OK; Err → its status, message recorded;
/// panic → BROKK_STATUS_PANIC, panic message recorded.
pub(crate) fn guard(body: impl FnOnce() -> Result<(), Failure>) -> brokk_status {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => brokk_status::Ok,
        Ok(Err(f)) => {
            last_error::set(&f.message);
            f.status
        }
        Err(panic) => {
            let text = crate::broker::panic_message(&*panic);
            last_error::set(&format!("brokk panicked (a bug; please report it): {text}"));
            brokk_status::Panic
        }
    }
}

/// Runs a body that returns a value rather than a status; a panic gives `default`.
pub(crate) fn guard_value<T>(default: T, body: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or(default)
}
