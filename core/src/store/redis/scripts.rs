//! The Lua scripts: each runs the steps of one store operation on one topic atomically, on the
//! node that holds the topic's hash slot. `lua/lib.lua` (key names, shared steps) is prepended
//! to each, cut down to the definitions the script uses (`with_lib`). `redis::Script` calls
//! EVALSHA and, on NOSCRIPT (a restarted or failed-over server, a `SCRIPT FLUSH`), loads the
//! script and calls it again.
//!
//! **Why cut the library down.** Redis runs a script's whole text at each call, so every local
//! function of the library is made again at every call whether the script uses it or not: on
//! Redis 7.0 the whole library cost about 4 µs a call, a fifth of a publish's server time
//! (docs/bench/analysis.md, "Redis").
//!
//! **Two builds of each script.** A write tells the other brokers in one way: on a single server
//! a PUBLISH that their listening threads hear, on a cluster a write counter that they read
//! (`lib.lua`'s `touched`). Each script is built for both (`CLUSTER` false or true), and the
//! store runs the one of its deployment: a write never pays for the way it is not heard.

use ::redis::Script;
use once_cell::sync::Lazy;

/// One script, built for a single server and for a cluster.
pub(super) struct Scripts {
    single: Script,
    cluster: Script,
}

impl Scripts {
    fn new(body: &str) -> Scripts {
        let source = with_lib(include_str!("lua/lib.lua"), body);
        Scripts {
            single: Script::new(&format!("local CLUSTER = false\n{source}")),
            cluster: Script::new(&format!("local CLUSTER = true\n{source}")),
        }
    }

    /// The build for a cluster (`cluster`) or a single server.
    pub fn on(&self, cluster: bool) -> &Script {
        if cluster {
            &self.cluster
        } else {
            &self.single
        }
    }
}

macro_rules! script {
    ($name:ident, $file:literal) => {
        pub(super) static $name: Lazy<Scripts> = Lazy::new(|| Scripts::new(include_str!(concat!("lua/", $file))));
    };
}

script!(OPEN_GROUP, "open_group.lua");
script!(REMOVE_GROUP, "remove_group.lua");
script!(PUBLISH, "publish.lua");
script!(CLAIM, "claim.lua");
script!(SETTLE, "settle.lua");
script!(REQUEUE, "requeue.lua");
script!(RENEW, "renew.lua");
script!(GROUP_FIGURES, "group_figures.lua");
// Peek of a group not registered shows what it would take over (`retained_order.lua`).
pub(super) static PEEK: Lazy<Scripts> =
    Lazy::new(|| Scripts::new(concat!(include_str!("lua/retained_order.lua"), include_str!("lua/peek.lua"))));
script!(TOPIC_FIGURES, "topic_figures.lua");
script!(PURGE, "purge.lua");
script!(PURGE_GROUP, "purge_group.lua");
script!(RELEASE_CONSUMERS, "release_consumers.lua");
script!(VIEW, "view.lua");

/// One top-level definition of the library: `local function NAME` or `local NAME =` with the
/// comment lines just above it, up to the next one. What comes before the first is `name` None.
struct Part<'a> {
    name: Option<&'a str>,
    text: String,
}

/// The name a line of the library defines at the top level, if it does.
fn defines(line: &str) -> Option<&str> {
    let rest = line.strip_prefix("local function ").or_else(|| line.strip_prefix("local "))?;
    let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
    let after = rest[end..].trim_start();
    let is_definition = after.starts_with('(') || (after.starts_with('=') && !after.starts_with("=="));
    (end > 0 && is_definition).then(|| &rest[..end])
}

fn parts(lib: &str) -> Vec<Part<'_>> {
    let mut parts = vec![Part { name: None, text: String::new() }];
    let mut comments: Vec<&str> = Vec::new();
    for line in lib.lines() {
        if line.starts_with("--") {
            comments.push(line);
            continue;
        }
        let part = match defines(line) {
            Some(name) => {
                parts.push(Part { name: Some(name), text: String::new() });
                parts.last_mut().expect("just pushed")
            }
            None => parts.last_mut().expect("never empty"),
        };
        for l in comments.drain(..).chain(std::iter::once(line)) {
            part.text.push_str(l);
            part.text.push('\n');
        }
    }
    if let Some(last) = parts.last_mut() {
        for l in comments.drain(..) {
            last.text.push_str(l);
            last.text.push('\n');
        }
    }
    parts
}

/// Whether `name` occurs in `text` as a whole word (a Lua name).
fn mentions(text: &str, name: &str) -> bool {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    text.match_indices(name).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + name.len()..].chars().next();
        !before.is_some_and(word) && !after.is_some_and(word)
    })
}

/// `body` after the parts of `lib` it uses, directly or through other parts (in the library's
/// order, so that each is defined before what uses it).
fn with_lib(lib: &str, body: &str) -> String {
    let parts = parts(lib);
    let mut used = vec![false; parts.len()];
    let mut seen = body.to_string();
    loop {
        let mut more = false;
        for (i, p) in parts.iter().enumerate() {
            if !used[i] && p.name.is_none_or(|n| mentions(&seen, n)) {
                used[i] = true;
                seen.push_str(&p.text);
                more = true;
            }
        }
        if !more {
            break;
        }
    }
    let mut out: String = parts.iter().zip(&used).filter(|(_, &u)| u).map(|(p, _)| p.text.as_str()).collect();
    out.push_str(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIB: &str = "-- head\nlocal B = ARGV[1]\nlocal X = B .. ':x'\n-- f: uses X\nlocal function f()\n  return X\nend\n\nlocal function g() return 1 end\nlocal gg = 2\n";

    #[test]
    fn a_script_gets_the_library_parts_it_uses_and_what_they_use() {
        let s = with_lib(LIB, "return f()\n");
        assert!(s.contains("local B = ARGV[1]") && s.contains("local X =") && s.contains("-- f: uses X\nlocal function f()"));
        assert!(!s.contains("function g") && !s.contains("local gg"), "{s}");
        assert!(s.ends_with("return f()\n"));
        // `g` is not `gg`: whole words only.
        let s = with_lib(LIB, "return gg\n");
        assert!(s.contains("local gg") && !s.contains("function g()") && !s.contains("local X"), "{s}");
    }

    #[test]
    fn every_script_keeps_the_library_head_and_defines_what_it_calls() {
        for s in [&*PUBLISH, &*CLAIM, &*SETTLE, &*REQUEUE, &*PEEK, &*PURGE, &*VIEW] {
            let text = s.on(false).get_hash();
            assert_eq!(text.len(), 40);
        }
        let claim = with_lib(include_str!("lua/lib.lua"), include_str!("lua/claim.lua"));
        assert!(claim.contains("replicate_commands") && claim.contains("local function promote_due"));
        let publish = with_lib(include_str!("lua/lib.lua"), include_str!("lua/publish.lua"));
        assert!(publish.contains("local function enqueue") && !publish.contains("local function promote_due"));
    }
}
