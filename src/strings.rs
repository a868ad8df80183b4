//! Conversions of what C passes in (pointers, lengths, NUL-terminated strings) into checked Rust
//! values, and the borrowed string view handed back out.

use std::ffi::{c_char, CStr};

use super::boundary::{fail, Failure};
use super::status::brokk_status;

/// A borrowed view of UTF-8 text (or JSON) owned by brokk; not NUL-terminated. Each function that
/// returns one says how long it stays valid.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct brokk_str {
    /// The first byte; never NULL (an empty view points at a static empty string).
    pub ptr: *const c_char,
    /// Length in bytes.
    pub len: usize,
}

impl brokk_str {
    pub(crate) fn from_str(s: &str) -> Self {
        brokk_str { ptr: s.as_ptr().cast(), len: s.len() }
    }

    pub(crate) fn from_bytes(b: &[u8]) -> Self {
        brokk_str { ptr: b.as_ptr().cast(), len: b.len() }
    }

    pub(crate) fn empty() -> Self {
        brokk_str::from_str("")
    }
}

/// A required reference from a pointer.
///
/// # Safety
/// `ptr` is NULL or points to a valid `T` that nothing mutates for `'a`.
pub(crate) unsafe fn reference<'a, T>(ptr: *const T, what: &str) -> Result<&'a T, Failure> {
    // SAFETY: NULL becomes None; otherwise the caller guarantees a valid `T` for `'a`.
    unsafe { ptr.as_ref() }.ok_or_else(|| fail(brokk_status::NullArgument, format!("{what} is NULL")))
}

/// A required output slot.
///
/// # Safety
/// `ptr` is NULL or points to a valid `T` that nothing else reads or writes for `'a`.
pub(crate) unsafe fn output<'a, T>(ptr: *mut T, what: &str) -> Result<&'a mut T, Failure> {
    // SAFETY: NULL becomes None; otherwise the caller guarantees an unaliased `T` for `'a`.
    unsafe { ptr.as_mut() }.ok_or_else(|| fail(brokk_status::NullArgument, format!("{what} is NULL")))
}

/// `len` bytes at `ptr`. NULL is refused unless `len` is 0.
///
/// # Safety
/// `ptr` is NULL or valid for reads of `len` bytes that nothing mutates for `'a`.
pub(crate) unsafe fn bytes<'a>(ptr: *const c_char, len: usize, what: &str) -> Result<&'a [u8], Failure> {
    if len > isize::MAX as usize {
        return Err(fail(brokk_status::InvalidArgument, format!("{what} length {len} is impossibly large")));
    }
    if ptr.is_null() {
        return if len == 0 { Ok(&[]) } else { Err(fail(brokk_status::NullArgument, format!("{what} is NULL"))) };
    }
    // SAFETY: non-NULL (checked above), `len` fits in an isize (checked above), and the caller
    // guarantees `len` readable bytes that stay unchanged for `'a`; u8 has no alignment.
    Ok(unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) })
}

/// `len` bytes of UTF-8 at `ptr`.
///
/// # Safety
/// As for `bytes`.
pub(crate) unsafe fn text<'a>(ptr: *const c_char, len: usize, what: &str) -> Result<&'a str, Failure> {
    if ptr.is_null() {
        return Err(fail(brokk_status::NullArgument, format!("{what} is NULL")));
    }
    // SAFETY: the caller's guarantee for `ptr` and `len` is the one `bytes` needs.
    utf8(unsafe { bytes(ptr, len, what) }?, what)
}

/// Optional text: NULL means absent.
///
/// # Safety
/// As for `bytes`.
pub(crate) unsafe fn optional_text<'a>(ptr: *const c_char, len: usize, what: &str) -> Result<Option<&'a str>, Failure> {
    if ptr.is_null() {
        Ok(None)
    } else {
        // SAFETY: the caller's guarantee for `ptr` and `len` is the one `text` needs.
        unsafe { text(ptr, len, what) }.map(Some)
    }
}

/// A NUL-terminated UTF-8 string; NULL means absent.
///
/// # Safety
/// `ptr` is NULL or points to a NUL-terminated string that nothing mutates for `'a`.
pub(crate) unsafe fn optional_c_text<'a>(ptr: *const c_char, what: &str) -> Result<Option<&'a str>, Failure> {
    if ptr.is_null() {
        return Ok(None);
    }
    // SAFETY: non-NULL (checked above); the caller guarantees a NUL-terminated string for `'a`.
    let s = unsafe { CStr::from_ptr(ptr) };
    utf8(s.to_bytes(), what).map(Some)
}

pub(crate) fn utf8<'a>(b: &'a [u8], what: &str) -> Result<&'a str, Failure> {
    std::str::from_utf8(b).map_err(|e| fail(brokk_status::InvalidUtf8, format!("{what} is not valid UTF-8: {e}")))
}

/// Hands `text` to the caller as an owned C string (released with brokk_string_free) in `*out`,
/// and its length without the NUL in `*len_out` if given. The texts handed out this way (JSON,
/// which escapes control characters; Prometheus text, which escapes label values; names, which
/// hold none) have no interior NUL.
pub(crate) fn give_text(text: String, out: &mut *mut c_char, len_out: Option<&mut usize>) {
    let len = text.len();
    *out = std::ffi::CString::new(text).unwrap_or_default().into_raw();
    if let Some(l) = len_out {
        *l = len;
    }
}
