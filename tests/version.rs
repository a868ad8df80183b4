//! The version numbers in the C API agree with Cargo.toml, the packed number included.

use std::ffi::CStr;

use brokk::version::*;

fn cargo_version() -> (u32, u32, u32) {
    let parts: Vec<u32> = env!("CARGO_PKG_VERSION").split('.').map(|p| p.parse().unwrap()).collect();
    (parts[0], parts[1], parts[2])
}

#[test]
fn constants_match_cargo_toml() {
    let (major, minor, patch) = cargo_version();
    assert_eq!((BROKK_VERSION_MAJOR, BROKK_VERSION_MINOR, BROKK_VERSION_PATCH), (major, minor, patch));
    assert_eq!(BROKK_VERSION_NUMBER, major * 1_000_000 + minor * 1_000 + patch);
    assert_eq!(brokk_version_number(), BROKK_VERSION_NUMBER);
    assert_eq!(brokk_abi_version(), BROKK_ABI_VERSION);
    let text = unsafe { CStr::from_ptr(brokk_version()) }.to_str().unwrap();
    assert_eq!(text, env!("CARGO_PKG_VERSION"));
}

#[test]
fn header_macros_match() {
    let header = include_str!("../include/brokk.h");
    let define = |name: &str| -> u32 {
        let line = header
            .lines()
            .find(|l| l.starts_with(&format!("#define {name} ")))
            .unwrap_or_else(|| panic!("{name} missing from brokk.h"));
        line.split_whitespace().nth(2).unwrap().parse().unwrap()
    };
    assert_eq!(define("BROKK_VERSION_MAJOR"), BROKK_VERSION_MAJOR);
    assert_eq!(define("BROKK_VERSION_MINOR"), BROKK_VERSION_MINOR);
    assert_eq!(define("BROKK_VERSION_PATCH"), BROKK_VERSION_PATCH);
    assert_eq!(define("BROKK_VERSION_NUMBER"), BROKK_VERSION_NUMBER);
    assert_eq!(define("BROKK_ABI_VERSION"), BROKK_ABI_VERSION);
}
