//! The checked-in header must equal what cbindgen generates from the current sources.

#[test]
fn checked_in_header_is_fresh() {
    let generated = include_str!(concat!(env!("OUT_DIR"), "/brokk.h"));
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/include/brokk.h");
    let checked_in = std::fs::read_to_string(path).unwrap_or_default();
    assert!(generated == checked_in, "include/brokk.h is stale: run `make header` and commit include/brokk.h");
}
