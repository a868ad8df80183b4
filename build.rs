//! Generates the C header with cbindgen. The result always goes to `$OUT_DIR/brokk.h`, which the
//! header test compares with the checked-in `include/brokk.h`; it is written to
//! `include/brokk.h` only when BROKK_WRITE_HEADER is set (`make header`), so that a stale
//! checked-in header fails the test instead of being silently refreshed by a build.

use std::path::PathBuf;

fn main() {
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-env-changed=BROKK_WRITE_HEADER");
    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).expect("cbindgen.toml");
    let bindings = cbindgen::Builder::new()
        .with_crate(&dir)
        .with_config(config)
        .generate()
        .expect("cbindgen could not generate include/brokk.h");
    bindings.write_to_file(out.join("brokk.h"));
    if std::env::var_os("BROKK_WRITE_HEADER").is_some() {
        bindings.write_to_file(dir.join("include/brokk.h"));
    }
}
