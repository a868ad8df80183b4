//! The detailed message of the last failing call, kept per thread.

use std::cell::RefCell;
use std::ffi::{c_char, CString};

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

pub(crate) fn set(message: &str) {
    // Interior NULs cannot be represented; they never occur in our messages, but be safe.
    let c = CString::new(message.replace('\0', " ")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
}

#[cfg(test)]
pub(crate) fn get() -> String {
    LAST_ERROR.with(|e| e.borrow().to_string_lossy().into_owned())
}

/// The detailed message of the last brokk call that failed on this thread ("" if none has).
/// Returns: a NUL-terminated string owned by brokk, valid until the next failing brokk call on
/// this thread; copy it if you need it longer. Never NULL; do not free.
/// Threads: per thread; read it on the thread that made the failing call, right after it.
#[no_mangle]
// guard_value_or, not guard_value: a panic must give a string too (never NULL, as promised).
pub extern "C" fn brokk_last_error() -> *const c_char {
    super::boundary::guard_value_or(c"".as_ptr(), || LAST_ERROR.with(|e| e.borrow().as_ptr()))
}
