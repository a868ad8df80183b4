//! The C boundary: every exported function's body runs inside `guard` (status-returning) or
//! `guard_value` (everything else: a panic gives the return type's `PanicDefault`), which catch
//! panics so that none crosses into C, and record failures for brokk_last_error().
//!
//! One macro that both declares each function and wraps its body would be ideal, but cbindgen does
//! not expand macros on stable Rust, so a macro-declared function would vanish from the header;
//! instead each function is written out and its body starts with a guard call, and
//! tests/ffi_guard.rs fails on any `extern "C" fn` in src/ whose body does not.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::ffi::c_char;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Once;

use super::last_error;
use super::status::{brokk_status, brokk_status_class};
use super::strings::brokk_str;
use brokk_core::Error;

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

thread_local! {
    /// How many guarded calls this thread is inside (a handler may call back into brokk).
    static DEPTH: Cell<u32> = const { Cell::new(0) };
    /// Where the last quiet panic on this thread happened, for the message of its status.
    static PANIC_AT: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Rust's default panic hook prints the message and a backtrace note on stderr, which is the
/// host's: a library must not write there. Once the C ABI is used, panics inside a guarded
/// call or on one of brokk's own threads print nothing (the status and brokk_last_error() tell
/// the caller, a failure reason tells a handler's listeners); any other panic of the program
/// goes to the hook that was installed before, so a Rust program that links brokk keeps its own.
fn quiet_panics() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let ours =
                DEPTH.with(Cell::get) > 0 || std::thread::current().name().is_some_and(|n| n.starts_with("brokk-"));
            if ours {
                let at = info.location().map(|l| format!("{}:{}", l.file(), l.line()));
                PANIC_AT.with(|p| *p.borrow_mut() = at);
            } else {
                previous(info);
            }
        }));
    });
}

/// Runs `body` counted as inside a guarded call, so that a panic in it prints nothing.
fn guarded<T>(body: impl FnOnce() -> T) -> std::thread::Result<T> {
    quiet_panics();
    DEPTH.with(|d| d.set(d.get() + 1));
    let result = catch_unwind(AssertUnwindSafe(body));
    DEPTH.with(|d| d.set(d.get() - 1));
    result
}

/// Runs a status-returning body: Ok → BROKK_STATUS_OK; Err → its status, message recorded;
/// panic → BROKK_STATUS_PANIC, panic message recorded.
pub(crate) fn guard(body: impl FnOnce() -> Result<(), Failure>) -> brokk_status {
    match guarded(body) {
        Ok(Ok(())) => brokk_status::Ok,
        Ok(Err(f)) => {
            last_error::set(&f.message);
            f.status
        }
        Err(panic) => {
            let text = brokk_core::panic_message(&*panic);
            let at = PANIC_AT.with(|p| p.borrow_mut().take()).map_or(String::new(), |at| format!(" at {at}"));
            last_error::set(&format!("brokk panicked (a bug; please report it){at}: {text}"));
            brokk_status::Panic
        }
    }
}

/// What an exported function that returns no status gives C when its body panics: the type's
/// documented "nothing" (after rustls-ffi's `PanicOrDefault`). Each return type used by such a
/// function has its own impl, so a new one cannot be guarded without deciding this.
pub(crate) trait PanicDefault {
    fn panic_default() -> Self;
}

/// C sees the function return normally (a free or a fork handler may have done only part of its
/// work).
impl PanicDefault for () {
    fn panic_default() -> Self {}
}

/// C sees 0: what the message accessors return for NULL, and no valid version number.
impl PanicDefault for u32 {
    fn panic_default() -> Self {
        0
    }
}

/// C sees 0: what the message accessors return for NULL (no delivery id is 0).
impl PanicDefault for u64 {
    fn panic_default() -> Self {
        0
    }
}

/// C sees 0: what brokk_peek_result_count returns for NULL (an empty result).
impl PanicDefault for usize {
    fn panic_default() -> Self {
        0
    }
}

/// C sees 0: what brokk_message_priority returns for NULL.
impl PanicDefault for i32 {
    fn panic_default() -> Self {
        0
    }
}

/// C sees an empty view (`ptr` at a static empty string, never NULL; `len` 0), as for NULL.
impl PanicDefault for brokk_str {
    fn panic_default() -> Self {
        brokk_str::empty()
    }
}

/// C sees NULL (brokk_delivery_message: as for a NULL delivery).
impl<T> PanicDefault for *const T {
    fn panic_default() -> Self {
        std::ptr::null()
    }
}

/// C sees false.
impl PanicDefault for bool {
    fn panic_default() -> Self {
        false
    }
}

/// C sees NULL.
impl<T> PanicDefault for *mut T {
    fn panic_default() -> Self {
        std::ptr::null_mut()
    }
}

/// C sees BROKK_STATUS_CLASS_BUG: a panic is a bug in brokk.
impl PanicDefault for brokk_status_class {
    fn panic_default() -> Self {
        brokk_status_class::Bug
    }
}

/// Runs a body that returns a value rather than a status; a panic gives `T::panic_default()`.
pub(crate) fn guard_value<T: PanicDefault>(body: impl FnOnce() -> T) -> T {
    guarded(body).unwrap_or_else(|_| T::panic_default())
}

/// As `guard_value`, with the value a panic gives chosen by the caller: for the functions
/// returning `const char *` that promise never to return NULL, where the type's default (NULL)
/// would break that promise.
pub(crate) fn guard_value_or(default: *const c_char, body: impl FnOnce() -> *const c_char) -> *const c_char {
    guarded(body).unwrap_or(default)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The child half of `a_panic_prints_nothing_on_stderr`: panics inside a guard, on a
    /// brokk thread, and (last) outside brokk, whose message must still reach stderr.
    #[test]
    fn panicking_child() {
        if std::env::var_os("BROKK_PANIC_CHILD").is_none() {
            return;
        }
        assert_eq!(guard(|| panic!("secret-in-call")), brokk_status::Panic);
        let message = super::last_error::get();
        assert!(message.contains("secret-in-call") && message.contains("boundary.rs:"), "{message}");
        assert_eq!(guard_value(|| -> u64 { panic!("secret-in-accessor") }), 0);
        assert_eq!(guard_value_or(c"x".as_ptr(), || panic!("secret-in-c-string")), c"x".as_ptr());
        std::thread::Builder::new()
            .name("brokk-test".into())
            .spawn(|| catch_unwind(|| panic!("secret-on-thread")))
            .unwrap()
            .join()
            .unwrap()
            .unwrap_err();
        let _ = catch_unwind(|| panic!("the host's own panic"));
    }

    #[test]
    fn panic_defaults_are_what_the_header_promises() {
        assert_eq!(guard_value(|| 7u32), 7);
        assert_eq!(u32::panic_default(), 0);
        assert_eq!(u64::panic_default(), 0);
        assert_eq!(i32::panic_default(), 0);
        let s = brokk_str::panic_default();
        assert!(!s.ptr.is_null() && s.len == 0);
        assert!(<*const u8>::panic_default().is_null());
        assert!(<*mut u8>::panic_default().is_null());
        assert_eq!(brokk_status_class::panic_default(), brokk_status_class::Bug);
    }

    #[test]
    fn a_panic_prints_nothing_on_stderr() {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "boundary::tests::panicking_child", "--nocapture", "--test-threads=1"])
            .env("BROKK_PANIC_CHILD", "1")
            .output()
            .unwrap();
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "child failed:\n{stdout}\n{stderr}");
        assert!(stdout.contains("1 passed"), "the child test did not run:\n{stdout}");
        assert!(!stderr.contains("secret"), "a panic inside brokk reached stderr:\n{stderr}");
        assert!(stderr.contains("the host's own panic"), "the host's hook was lost:\n{stderr}");
    }
}
