//! Every `extern "C" fn` in src/ (the C library) must start its body with a panic guard
//! (`guard(` or `guard_value(`), so that no panic can cross into C; and no `extern "C"` or
//! `unsafe` code may live in the core (core/src/, which also forbids `unsafe` to the compiler).

use std::fs;
use std::path::Path;

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The body of each named `extern "C" fn` in `src`: (name, text after the opening brace).
fn exported_bodies(src: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut rest = src;
    while let Some(at) = rest.find("extern \"C\" fn ") {
        let after = &rest[at + "extern \"C\" fn ".len()..];
        let name: String = after.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        // Skip to the end of the parameter list, then to the body's opening brace.
        let open = after.find('(').unwrap();
        let mut depth = 0;
        let mut close = open;
        for (i, c) in after[open..].char_indices() {
            match c {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        close = open + i;
                        break;
                    }
                }
                _ => {}
            }
        }
        let brace = close + after[close..].find('{').unwrap();
        found.push((name, after[brace + 1..].trim_start().to_owned()));
        rest = &after[brace..];
    }
    found
}

#[test]
fn every_exported_function_is_guarded() {
    let mut files = Vec::new();
    rust_files(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut files);
    let mut checked = 0;
    for file in files {
        let src = fs::read_to_string(&file).unwrap();
        for (name, body) in exported_bodies(&src) {
            assert!(
                body.starts_with("guard(")
                    || body.starts_with("guard_value(")
                    || body.starts_with("super::boundary::guard"),
                "{}: extern \"C\" fn {name} does not start with a panic guard",
                file.display()
            );
            checked += 1;
        }
    }
    assert!(checked >= 30, "found only {checked} exported functions; is the scan broken?");
}

#[test]
fn unsafe_and_extern_live_only_in_the_c_library() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("core/src");
    let lib = fs::read_to_string(root.join("lib.rs")).unwrap();
    assert!(lib.contains("\n#![forbid(unsafe_code)]\n"), "core/src/lib.rs must forbid unsafe code");
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    for file in files {
        let src = fs::read_to_string(&file).unwrap();
        for (i, line) in src.lines().enumerate() {
            let code = line.split("//").next().unwrap();
            assert!(
                !code.contains("unsafe ") && !code.contains("extern \"C\""),
                "{}:{}: unsafe or extern \"C\" in the core: {line}",
                file.display(),
                i + 1
            );
        }
    }
}

#[test]
fn scanner_sees_an_unguarded_function() {
    let bad = "pub unsafe extern \"C\" fn brokk_x(a: *const u8) -> u32 {\n    42\n}\n";
    let bodies = exported_bodies(bad);
    assert_eq!(bodies.len(), 1);
    assert!(!bodies[0].1.starts_with("guard("));
}
