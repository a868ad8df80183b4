//! Topic names from arbitrary text: the core's `names::topic_name_part`, for producers in any
//! language that must compute the topic a binding (the pynenc plugin) derives from an app id or
//! queue name.

use std::ffi::c_char;

use super::boundary::{fail, guard};
use super::status::brokk_status;
use super::strings::{output, text};

/// Maps `s` (`s_len` bytes of UTF-8) onto a fragment of a topic name of at most `max_len` bytes:
/// bytes of [A-Za-z0-9.-] are kept, every other byte (`_` included) becomes `_` and two
/// lowercase hex digits ("my app" -> "my_20app"); if that is longer than `max_len`, it is cut
/// (never inside an escape) to leave room for `_x` and the 16 hex digits of the input's 64-bit
/// FNV-1a hash. Different inputs give different fragments, except two truncated ones whose
/// hashes collide. A fragment never contains "__". The empty string gives the empty fragment.
/// Copies: s; no pointer is kept after return.
/// Out: on BROKK_STATUS_OK, `out[0..*len_out]` holds the fragment, followed by a NUL;
/// `out_cap` is the size of `out` in bytes (`max_len` + 1 always suffices). On
/// BROKK_STATUS_BUFFER_TOO_SMALL, `*len_out` is the fragment's length and `out` is untouched
/// (a buffer of `*len_out` + 1 bytes holds it). Untouched on other failures.
/// Threads: any thread, concurrently.
/// Errors: NULL_ARGUMENT (s, len_out; out unless out_cap is 0), INVALID_UTF8, INVALID_ARGUMENT
/// (the fragment must be truncated and `max_len` is below 18), BUFFER_TOO_SMALL.
#[no_mangle]
pub unsafe extern "C" fn brokk_topic_name_part(
    s: *const c_char,
    s_len: usize,
    max_len: usize,
    out: *mut c_char,
    out_cap: usize,
    len_out: *mut usize,
) -> brokk_status {
    guard(|| {
        // SAFETY: `len_out` is NULL or a writable usize for this call.
        let len_out = unsafe { output(len_out, "len_out") }?;
        // SAFETY: `s` is NULL or `s_len` readable bytes for this call.
        let s = unsafe { text(s, s_len, "s") }?;
        let part = brokk_core::topic_name_part(s, max_len)?;
        if out_cap < part.len() + 1 {
            *len_out = part.len();
            return Err(fail(
                brokk_status::BufferTooSmall,
                format!("out holds {out_cap} bytes; the name needs {} and a NUL", part.len()),
            ));
        }
        if out.is_null() {
            return Err(fail(brokk_status::NullArgument, "out is NULL"));
        }
        // SAFETY: `out` is not NULL (checked above) and holds `out_cap` bytes, at least the name's
        // length + 1 (checked above); our String cannot overlap the caller's buffer.
        unsafe {
            std::ptr::copy_nonoverlapping(part.as_ptr(), out.cast::<u8>(), part.len());
            *out.add(part.len()) = 0;
        }
        *len_out = part.len();
        Ok(())
    })
}
