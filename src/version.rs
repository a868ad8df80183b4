//! Version numbers. The literals are checked against Cargo.toml by tests/version.rs (cbindgen
//! needs literals to write them into the header).

use std::ffi::c_char;

/// Major version of this header; must match brokk_version_number() / 1000000 at run time.
pub const BROKK_VERSION_MAJOR: u32 = 0;
/// Minor version of this header.
pub const BROKK_VERSION_MINOR: u32 = 1;
/// Patch version of this header.
pub const BROKK_VERSION_PATCH: u32 = 0;
/// MAJOR * 1000000 + MINOR * 1000 + PATCH.
pub const BROKK_VERSION_NUMBER: u32 = 1000;
/// Bumped whenever a change breaks binary compatibility (a struct layout, a signature, a
/// status or verdict number). Compare with brokk_abi_version() at run time.
pub const BROKK_ABI_VERSION: u32 = 1;

/// The library's version as "MAJOR.MINOR.PATCH".
/// Returns: a NUL-terminated string with static lifetime; never NULL; do not free.
#[no_mangle]
// guard_value_or, not guard_value: a panic must give a string too (never NULL, as promised).
pub extern "C" fn brokk_version() -> *const c_char {
    super::boundary::guard_value_or(c"".as_ptr(), || concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast())
}

/// The library's BROKK_VERSION_NUMBER, to compare with the header the program was built with.
#[no_mangle]
pub extern "C" fn brokk_version_number() -> u32 {
    super::boundary::guard_value(|| BROKK_VERSION_NUMBER)
}

/// The library's BROKK_ABI_VERSION; a program built against another ABI version must not use it.
#[no_mangle]
pub extern "C" fn brokk_abi_version() -> u32 {
    super::boundary::guard_value(|| BROKK_ABI_VERSION)
}
