//! Every `extern "C" fn` in src/ (the C library) must start its body with a panic guard
//! (`guard(`, `guard_value(` or `guard_value_or(`), so that no panic can cross into C; every
//! `unsafe {` block in src/ must say why it is sound in a `// SAFETY:` comment; and no
//! `extern "C"` or `unsafe` code may live in the core (core/src/, which also forbids `unsafe` to
//! the compiler).

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
                    || body.starts_with("guard_value_or(")
                    || body.starts_with("super::boundary::guard"),
                "{}: extern \"C\" fn {name} does not start with a panic guard",
                file.display()
            );
            checked += 1;
        }
    }
    assert!(checked >= 30, "found only {checked} exported functions; is the scan broken?");
}

/// How many lines above an `unsafe {` its `// SAFETY:` comment may start (a comment of up to
/// three lines, directly above the block).
const SAFETY_REACH: usize = 3;

/// The 1-based lines of `src` that open an `unsafe {` block with no `// SAFETY:` comment on the
/// same line or on one of the `SAFETY_REACH` lines just above it. Only comments and the start of
/// the block's own statement (`let x =`, as rustfmt splits long lines) may come between: a line
/// that ends a statement, an item or a field stops the search, so that one comment cannot cover
/// a second block below it.
fn unsafe_blocks_without_safety(src: &str) -> Vec<usize> {
    let lines: Vec<&str> = src.lines().collect();
    let mut missing = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let code = line.split("//").next().unwrap();
        if !code.contains("unsafe {") || line.contains("// SAFETY:") {
            continue;
        }
        let mut documented = false;
        for above in lines[i.saturating_sub(SAFETY_REACH)..i].iter().rev().map(|l| l.trim()) {
            if above.starts_with("// SAFETY:") {
                documented = true;
                break;
            }
            if !above.starts_with("//") && above.ends_with([';', '{', '}', ',']) {
                break;
            }
        }
        if !documented {
            missing.push(i + 1);
        }
    }
    missing
}

#[test]
fn every_unsafe_block_says_why_it_is_sound() {
    let mut files = Vec::new();
    rust_files(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut files);
    let mut missing = Vec::new();
    let mut blocks = 0;
    for file in files {
        let src = fs::read_to_string(&file).unwrap();
        blocks += src.lines().filter(|l| l.split("//").next().unwrap().contains("unsafe {")).count();
        missing.extend(unsafe_blocks_without_safety(&src).into_iter().map(|n| format!("{}:{n}", file.display())));
    }
    assert!(missing.is_empty(), "unsafe blocks without a `// SAFETY:` comment just above:\n{}", missing.join("\n"));
    assert!(blocks >= 30, "found only {blocks} unsafe blocks; is the scan broken?");
}

#[test]
fn safety_scanner_sees_an_undocumented_block() {
    let good = "    // SAFETY: checked above.\n    let x = unsafe { *p };\n";
    assert!(unsafe_blocks_without_safety(good).is_empty());
    let long = "// SAFETY: one,\n// two,\n// three.\nunsafe { f() };\n";
    assert!(unsafe_blocks_without_safety(long).is_empty());
    let bare = "    let x = 1;\n    let y = unsafe { *p };\n";
    assert_eq!(unsafe_blocks_without_safety(bare), [2]);
    let shared = "// SAFETY: for the first only.\nunsafe { f() };\nunsafe { g() };\n";
    assert_eq!(unsafe_blocks_without_safety(shared), [3]);
    let split = "// SAFETY: checked above.\nlet x =\n    unsafe { f() };\n";
    assert!(unsafe_blocks_without_safety(split).is_empty());
    let field = "// SAFETY: for a.\na: unsafe { f() },\nb: unsafe { g() },\n";
    assert_eq!(unsafe_blocks_without_safety(field), [3]);
    let far = "// SAFETY: too far.\n// a\n// b\n// c\nunsafe { f() };\n";
    assert_eq!(unsafe_blocks_without_safety(far), [5]);
    let in_comment = "// the old code had unsafe { f() } here\n";
    assert!(unsafe_blocks_without_safety(in_comment).is_empty());
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
