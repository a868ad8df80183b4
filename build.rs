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
    soname(&out);
}

/// The ABI version, from src/version.rs: the SONAME's number.
fn abi_version(dir: &std::path::Path) -> String {
    let src = std::fs::read_to_string(dir.join("src/version.rs")).expect("src/version.rs");
    let line = src.lines().find(|l| l.starts_with("pub const BROKK_ABI_VERSION: u32 = ")).expect("BROKK_ABI_VERSION");
    line.trim_end_matches(';').rsplit(' ').next().unwrap().to_owned()
}

/// On Linux the shared library is `libbrokk.so.<ABI version>` to the dynamic linker (its
/// SONAME), as a system library is: a program records that name, and an ABI break (a new
/// number) cannot load under the old one. A program linked against this build tree finds the
/// library by that name beside `libbrokk.so` (in the rpath the tests and examples use), so the
/// link `libbrokk.so.<ABI>` -> `libbrokk.so` is made here in the profile's directory; installed
/// copies get theirs from `bindings/c/install.sh`.
fn soname(out: &std::path::Path) {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") {
        return;
    }
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    println!("cargo:rerun-if-changed=src/version.rs");
    let name = format!("libbrokk.so.{}", abi_version(&dir));
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,{name}");
    // OUT_DIR is <target>/<profile>/build/brokk-<hash>/out.
    if let Some(profile_dir) = out.ancestors().nth(3) {
        let link = profile_dir.join(&name);
        if std::fs::read_link(&link).ok().as_deref() != Some(std::path::Path::new("libbrokk.so")) {
            let _ = std::fs::remove_file(&link);
            let _ = std::os::unix::fs::symlink("libbrokk.so", &link);
        }
    }
}
