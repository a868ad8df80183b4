//! JSON validation in one pass over the bytes: syntax per RFC 8259 and UTF-8 inside strings,
//! without building a value or allocating. Every publish checks its payload, so this is on
//! the hot path: serde_json's `IgnoredAny` needed a separate UTF-8 pass first (it skips the
//! inside of strings) and cost about three times as much on small payloads.
//!
//! It accepts exactly what `serde_json::from_str::<IgnoredAny>` accepts (a property test in
//! this file compares the two on random documents and mutations of them), including nesting
//! of any depth (there is no recursion to overflow) and leniency about lone `\u` surrogates.

/// Nesting depth tracked without allocating; deeper documents spill to the heap.
const INLINE_DEPTH: usize = 128;

/// Why a document is not JSON, and where (byte offset).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JsonError {
    pub offset: usize,
    pub reason: &'static str,
}

impl std::fmt::Display for JsonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at byte {}", self.reason, self.offset)
    }
}

/// Checks that `bytes` is one JSON value, with optional surrounding whitespace.
pub(crate) fn validate(bytes: &[u8]) -> Result<(), JsonError> {
    let mut p = Parser { b: bytes, i: 0 };
    let checked = p.value().and_then(|()| {
        p.skip_ws();
        if p.i == bytes.len() {
            Ok(())
        } else {
            Err(Fail("trailing characters after the value"))
        }
    });
    checked.map_err(|Fail(reason)| JsonError { offset: p.i, reason })
}

/// A failure inside the parser: only the reason, so that results stay one register wide; the
/// offset is the parser's position, read once at the top.
#[derive(Clone, Copy)]
struct Fail(&'static str);

type Step = Result<(), Fail>;

/// Whether `bytes` starts (after whitespace) with `{`: with `validate`, a JSON object.
pub(crate) fn is_object(bytes: &[u8]) -> bool {
    bytes.iter().find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r')) == Some(&b'{')
}

/// `object` (a validated JSON object) with member `key` set to `value` (JSON text), without
/// parsing it into values: every other member stays as it was, byte for byte, however deep
/// or whatever escapes it holds (a parser into values refuses what `validate` takes: lone
/// surrogates, nesting past its recursion limit). The member is appended last; members named
/// `key` already (escaped or not) are removed first, and then the others are joined by plain
/// commas. None if `object` is not a JSON object.
pub(crate) fn set_member(object: &[u8], key: &str, value: &[u8]) -> Option<Vec<u8>> {
    let (open, members) = top_level_members(object)?;
    let is_key = |m: &Member| {
        let raw = &object[m.start + 1..m.key_end - 1];
        raw == key.as_bytes()
            || (raw.contains(&b'\\')
                && serde_json::from_slice::<String>(&object[m.start..m.key_end]).is_ok_and(|k| k == key))
    };
    let push_member = |out: &mut Vec<u8>, first: bool| {
        if !first {
            out.push(b',');
        }
        out.push(b'"');
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(b"\":");
        out.extend_from_slice(value);
    };
    let mut out = Vec::with_capacity(object.len() + key.len() + value.len() + 4);
    if !members.iter().any(is_key) {
        // After the last member (or the brace), keeping everything around it as it was.
        let at = members.last().map_or(open + 1, |m| m.end);
        out.extend_from_slice(&object[..at]);
        push_member(&mut out, members.is_empty());
        out.extend_from_slice(&object[at..]);
        return Some(out);
    }
    out.extend_from_slice(&object[..open + 1]);
    let mut first = true;
    for m in members.iter().filter(|m| !is_key(m)) {
        if !first {
            out.push(b',');
        }
        out.extend_from_slice(&object[m.start..m.end]);
        first = false;
    }
    push_member(&mut out, first);
    out.push(b'}');
    Some(out)
}

/// Where one top-level member of an object stands.
struct Member {
    /// The key's opening quote.
    start: usize,
    /// Just past the key's closing quote.
    key_end: usize,
    /// Just past the value.
    end: usize,
}

/// The position of a JSON object's `{` and its top-level members. None if `bytes` is not one
/// JSON object.
fn top_level_members(bytes: &[u8]) -> Option<(usize, Vec<Member>)> {
    let mut p = Parser { b: bytes, i: 0 };
    p.skip_ws();
    if p.peek() != Some(b'{') {
        return None;
    }
    let open = p.i;
    p.i += 1;
    p.skip_ws();
    let mut members = Vec::new();
    if p.peek() == Some(b'}') {
        return Some((open, members));
    }
    loop {
        let start = p.i;
        if p.peek() != Some(b'"') {
            return None;
        }
        p.string().ok()?;
        let key_end = p.i;
        p.skip_ws();
        if p.peek() != Some(b':') {
            return None;
        }
        p.i += 1;
        p.value().ok()?;
        members.push(Member { start, key_end, end: p.i });
        p.skip_ws();
        match p.peek() {
            Some(b',') => {
                p.i += 1;
                p.skip_ws();
            }
            Some(b'}') => return Some((open, members)),
            _ => return None,
        }
    }
}

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
}

/// What the iterative parser is inside of, as a bit stack (1 = object, 0 = array): two words
/// inline, so that usual documents never allocate; deeper levels spill into a vector.
struct Nesting {
    inline: [u64; INLINE_DEPTH / 64],
    spill: Vec<u64>,
    depth: usize,
}

impl Nesting {
    fn word(&mut self, d: usize) -> &mut u64 {
        if d < INLINE_DEPTH {
            return &mut self.inline[d / 64];
        }
        let w = (d - INLINE_DEPTH) / 64;
        if w == self.spill.len() {
            self.spill.push(0);
        }
        &mut self.spill[w]
    }

    fn push(&mut self, object: bool) {
        let bit = self.depth % 64;
        let word = self.word(self.depth);
        *word = (*word & !(1 << bit)) | (u64::from(object) << bit);
        self.depth += 1;
    }

    /// The innermost container, if any: Some(true) for an object.
    fn top(&mut self) -> Option<bool> {
        let d = self.depth.checked_sub(1)?;
        Some(*self.word(d) >> (d % 64) & 1 == 1)
    }
}

impl Parser<'_> {
    fn err(&self, reason: &'static str) -> Fail {
        Fail(reason)
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    /// One value, containers included, iteratively (no recursion, so no stack to overflow).
    fn value(&mut self) -> Step {
        let mut nest = Nesting { inline: [0; INLINE_DEPTH / 64], spill: Vec::new(), depth: 0 };
        loop {
            // A value is expected here.
            self.skip_ws();
            match self.peek() {
                Some(b'{') => {
                    nest.push(true);
                    self.i += 1;
                    self.skip_ws();
                    if self.peek() == Some(b'}') {
                        self.i += 1;
                        nest.depth -= 1;
                    } else {
                        self.key()?;
                        continue;
                    }
                }
                Some(b'[') => {
                    nest.push(false);
                    self.i += 1;
                    self.skip_ws();
                    if self.peek() == Some(b']') {
                        self.i += 1;
                        nest.depth -= 1;
                    } else {
                        continue;
                    }
                }
                Some(b'"') => self.string()?,
                Some(b'-' | b'0'..=b'9') => self.number()?,
                Some(b't') => self.literal(b"true")?,
                Some(b'f') => self.literal(b"false")?,
                Some(b'n') => self.literal(b"null")?,
                Some(_) => return Err(self.err("expected a value")),
                None => return Err(self.err("unexpected end: expected a value")),
            }
            // A value ended: close containers or move to the next member.
            loop {
                let Some(object) = nest.top() else { return Ok(()) };
                self.skip_ws();
                match (self.peek(), object) {
                    (Some(b','), true) => {
                        self.i += 1;
                        self.skip_ws();
                        self.key()?;
                        break;
                    }
                    (Some(b','), false) => {
                        self.i += 1;
                        break;
                    }
                    (Some(b'}'), true) | (Some(b']'), false) => {
                        self.i += 1;
                        nest.depth -= 1;
                    }
                    (None, _) => return Err(self.err("unexpected end inside a container")),
                    (_, true) => return Err(self.err("expected ',' or '}'")),
                    (_, false) => return Err(self.err("expected ',' or ']'")),
                }
            }
        }
    }

    /// `"key" :`, leaving the position at the member's value.
    fn key(&mut self) -> Step {
        if self.peek() != Some(b'"') {
            return Err(self.err("expected a string key"));
        }
        self.string()?;
        self.skip_ws();
        if self.peek() != Some(b':') {
            return Err(self.err("expected ':'"));
        }
        self.i += 1;
        Ok(())
    }

    fn literal(&mut self, word: &'static [u8]) -> Step {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            Ok(())
        } else {
            Err(self.err("expected a value"))
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while let Some(b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
        self.i - start
    }

    fn number(&mut self) -> Step {
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(self.err("invalid number")),
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return Err(self.err("invalid number: digits expected after '.'"));
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            if self.digits() == 0 {
                return Err(self.err("invalid number: digits expected in the exponent"));
            }
        }
        Ok(())
    }

    /// A string, from its opening quote past its closing one.
    fn string(&mut self) -> Step {
        self.i += 1;
        loop {
            self.skip_plain();
            match self.peek() {
                Some(b'"') => {
                    self.i += 1;
                    return Ok(());
                }
                Some(b'\\') => self.escape()?,
                Some(c) if c < 0x20 => return Err(self.err("control character in a string")),
                Some(_) => self.utf8_char()?,
                None => return Err(self.err("unexpected end inside a string")),
            }
        }
    }

    /// Skips the common case, a run of printable ASCII other than `"` and `\\`: eight bytes
    /// at a time, then byte by byte up to the first that needs a look.
    fn skip_plain(&mut self) {
        const ONES: u64 = 0x0101_0101_0101_0101;
        const HIGH: u64 = 0x8080_8080_8080_8080;
        // The high bit of each zero byte of `w`. Borrows can also mark bytes above a zero
        // byte, but never below one, so the lowest mark is exact: that is all that is used.
        let zeros = |w: u64| w.wrapping_sub(ONES) & !w & HIGH;
        while let Some(chunk) = self.b.get(self.i..self.i + 8) {
            let w = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
            // Non-ASCII; then, for ASCII lanes, below 0x20, a quote, a backslash. (A non-ASCII
            // lane can be marked by the others too; it needs a look anyway.)
            let special = (w & HIGH)
                | zeros(w & 0xe0e0_e0e0_e0e0_e0e0)
                | zeros(w ^ (ONES * u64::from(b'"')))
                | zeros(w ^ (ONES * u64::from(b'\\')));
            if special != 0 {
                // Little-endian: the lowest marked lane is the first byte needing a look.
                self.i += (special.trailing_zeros() / 8) as usize;
                return;
            }
            self.i += 8;
        }
        while let Some(&c) = self.b.get(self.i) {
            if c == b'"' || c == b'\\' || !(0x20..0x80).contains(&c) {
                break;
            }
            self.i += 1;
        }
    }

    fn escape(&mut self) -> Step {
        self.i += 1;
        match self.peek() {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.i += 1,
            Some(b'u') => {
                self.i += 1;
                let hex =
                    self.b.get(self.i..self.i + 4).ok_or_else(|| self.err("unexpected end inside a \\u escape"))?;
                if !hex.iter().all(u8::is_ascii_hexdigit) {
                    return Err(self.err("invalid \\u escape"));
                }
                self.i += 4;
            }
            Some(_) => return Err(self.err("invalid escape")),
            None => return Err(self.err("unexpected end inside a string")),
        }
        Ok(())
    }

    /// One multi-byte UTF-8 character (the lead byte is at the position).
    fn utf8_char(&mut self) -> Step {
        let len = match self.b[self.i] {
            0xc2..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf4 => 4,
            _ => return Err(self.err("invalid UTF-8")),
        };
        // std's checker handles overlongs, surrogates and the upper limit.
        match self.b.get(self.i..self.i + len).map(std::str::from_utf8) {
            Some(Ok(_)) => {
                self.i += len;
                Ok(())
            }
            _ => Err(self.err("invalid UTF-8")),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn set_member_keeps_every_other_member_byte_for_byte() {
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        let cases: Vec<(String, String)> = vec![
            ("{}".into(), r#"{"k":7}"#.into()),
            (" { } ".into(), r#" {"k":7 } "#.into()),
            (r#"{"s":"\ud800"}"#.into(), r#"{"s":"\ud800","k":7}"#.into()),
            (format!(r#"{{ "deep" : {deep} , "n": 1.50 }}"#), format!(r#"{{ "deep" : {deep} , "n": 1.50,"k":7 }}"#)),
            (r#"{"a":1,"k":{"old":true},"b":2}"#.into(), r#"{"a":1,"b":2,"k":7}"#.into()),
            (r#"{"\u006b":1,"k":2}"#.into(), r#"{"k":7}"#.into()),
            (r#"{"a":{"k":1}}"#.into(), r#"{"a":{"k":1},"k":7}"#.into()),
        ];
        for (object, expected) in cases {
            let got = set_member(object.as_bytes(), "k", b"7").unwrap();
            assert_eq!(String::from_utf8(got).unwrap(), expected, "{object}");
            assert!(validate(expected.as_bytes()).is_ok());
        }
        assert_eq!(set_member(b"[1]", "k", b"7"), None);
    }

    proptest! {
        #[test]
        fn set_member_gives_valid_json_with_the_member_last(keys in proptest::collection::vec("[a-c]{1,2}", 0..6)) {
            let members: Vec<String> = keys.iter().enumerate().map(|(i, k)| format!(r#""{k}":{i}"#)).collect();
            let object = format!("{{{}}}", members.join(","));
            let got = set_member(object.as_bytes(), "b", br#"{"x":[1]}"#).unwrap();
            prop_assert!(validate(&got).is_ok());
            let tail: &[u8] = br#""b":{"x":[1]}}"#;
            prop_assert!(got.ends_with(tail), "{}", String::from_utf8_lossy(&got));
            let v: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&got).unwrap();
            let before: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&object).unwrap();
            // Every other member is kept, and "b" is the new one.
            prop_assert_eq!(v.len(), before.keys().filter(|k| *k != "b").count() + 1);
            for (k, value) in before.iter().filter(|(k, _)| *k != "b") {
                prop_assert_eq!(v.get(k), Some(value));
            }
        }
    }

    fn serde_accepts(bytes: &[u8]) -> bool {
        std::str::from_utf8(bytes).is_ok_and(|t| serde_json::from_str::<serde::de::IgnoredAny>(t).is_ok())
    }

    #[test]
    fn known_cases_match_serde_json() {
        let cases: &[&[u8]] = &[
            b"1",
            b" {\"a\": [1, 2.5e-3, -0, true, false, null, \"x\\u00e9\\n\"]} ",
            b"\"\\ud800\"",
            b"1e999",
            b"-",
            b"01",
            b"1.",
            b"1e",
            b"[1,]",
            b"{\"a\":1,}",
            b"{\"a\" 1}",
            b"{1:2}",
            b"[",
            b"",
            b"   ",
            b"\"\x01\"",
            b"\"\xff\"",
            b"\"\xc3\xa9\"",
            b"\"\xed\xa0\x80\"",
            b"\"\xf0\x9f\x98\x80\"",
            b"\"\xf4\x90\x80\x80\"",
            b"tru",
            b"nulls",
            b"[1] [2]",
            b"{\"a\":{\"b\":[{}]}}",
            b"\"\\x\"",
            b"\"\\u12\"",
            b"\"\\u12G4\"",
        ];
        for c in cases {
            assert_eq!(validate(c).is_ok(), serde_accepts(c), "{:?}", String::from_utf8_lossy(c));
        }
    }

    /// The eight-bytes-at-a-time scan finds a byte needing a look at any position of a long
    /// string.
    #[test]
    fn special_bytes_anywhere_in_long_strings_match_serde_json() {
        let specials: &[&[u8]] =
            &[b"\"", b"\\", b"\\n", b"\\u00e9", b"\x1f", b"\x00", b"\x7f", b"\x80", b"\xc3\xa9", b"\xff", b" "];
        for len in [7, 8, 9, 16, 40] {
            for at in 0..=len {
                for s in specials {
                    let mut doc = b"\"".to_vec();
                    doc.extend(std::iter::repeat_n(b'a', at));
                    doc.extend_from_slice(s);
                    doc.extend(std::iter::repeat_n(b'z', len - at));
                    doc.push(b'"');
                    assert_eq!(validate(&doc).is_ok(), serde_accepts(&doc), "{:?}", String::from_utf8_lossy(&doc));
                }
            }
        }
    }

    #[test]
    fn any_nesting_depth_is_accepted_as_by_serde_json() {
        for depth in [63, 64, 65, INLINE_DEPTH - 1, INLINE_DEPTH, INLINE_DEPTH + 1, 200, 100_000] {
            for (open, close) in [("[", "]"), ("{\"k\":", "}"), ("[{\"k\":", "}]")] {
                let doc = format!("{}1{}", open.repeat(depth), close.repeat(depth));
                assert!(serde_accepts(doc.as_bytes()), "{open} x {depth}");
                assert_eq!(validate(doc.as_bytes()), Ok(()), "{open} x {depth}");
                // The wrong closer at the innermost level is caught at any depth.
                let swapped = if close.starts_with(']') { "}" } else { "]" };
                let bad = format!("{}1{swapped}{}", open.repeat(depth), &close.repeat(depth)[1..]);
                assert!(
                    validate(bad.as_bytes()).is_err() && !serde_accepts(bad.as_bytes()),
                    "{open} x {depth}, bad closer"
                );
            }
        }
    }

    /// Random JSON documents, rendered with random whitespace.
    fn document() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            Just("null".to_owned()),
            Just("true".to_owned()),
            Just("false".to_owned()),
            any::<i64>().prop_map(|n| n.to_string()),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| format!("{f:e}")),
            "[a-z0-9 \\\\\"é☃\u{1F600}]{0,8}".prop_map(|s| serde_json::to_string(&s).unwrap()),
            "\\\\u[0-9a-fA-F]{4}".prop_map(|s| format!("\"{s}\"")),
        ];
        leaf.prop_recursive(4, 32, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(|v| format!("[{}]", v.join(" , "))),
                prop::collection::vec(("[a-z]{0,4}", inner), 0..5).prop_map(|v| {
                    let members: Vec<_> = v.into_iter().map(|(k, val)| format!("\"{k}\" :\n{val}")).collect();
                    format!("{{\t{}}}", members.join(","))
                }),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        #[test]
        fn valid_documents_are_accepted(doc in document()) {
            prop_assert!(serde_accepts(doc.as_bytes()));
            prop_assert_eq!(validate(doc.as_bytes()), Ok(()));
        }

        /// Any document with one byte changed, inserted or removed: both agree.
        #[test]
        fn mutations_are_judged_as_serde_json_judges_them(
            doc in document(),
            at in any::<prop::sample::Index>(),
            byte in prop_oneof![any::<u8>(), prop::sample::select(b"{}[]\",:\\0123456789.eE+-tfnu \x80\xc3\xff".to_vec())],
            how in 0..3u8,
        ) {
            let mut b = doc.into_bytes();
            let i = at.index(b.len() + 1);
            match how {
                0 if i < b.len() => b[i] = byte,
                1 if i < b.len() => { b.remove(i); }
                _ => b.insert(i, byte),
            }
            prop_assert_eq!(validate(&b).is_ok(), serde_accepts(&b), "{:?}", String::from_utf8_lossy(&b));
        }
    }
}
