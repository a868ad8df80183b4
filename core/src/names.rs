//! Validation of the names and ids that callers hand to the broker. Names follow pynenc's queue
//! pattern so that every backend (file paths, SQL, Redis keys) can use them verbatim.

use crate::error::{Error, ErrorKind, Result};

/// Longest topic name, in bytes.
pub const MAX_TOPIC_LEN: usize = 255;
/// Longest message id, in bytes.
pub const MAX_ID_LEN: usize = 128;

/// A topic is 1..=255 bytes of `[A-Za-z0-9_.-]`.
pub fn validate_topic(topic: &str) -> Result<()> {
    validate_name(topic, "topic", ErrorKind::InvalidTopic)
}

/// A consumer group name follows the topic rules: 1..=255 bytes of `[A-Za-z0-9_.-]`.
pub fn validate_group(group: &str) -> Result<()> {
    validate_name(group, "group", ErrorKind::InvalidGroup)
}

fn validate_name(name: &str, what: &str, kind: ErrorKind) -> Result<()> {
    if name.is_empty() {
        return Err(Error::new(kind, format!("{what} is empty")));
    }
    if name.len() > MAX_TOPIC_LEN {
        return Err(Error::new(kind, format!("{what} is {} bytes long; the limit is {MAX_TOPIC_LEN}", name.len())));
    }
    if let Some(bad) = name.bytes().find(|b| !is_name_byte(*b)) {
        return Err(Error::new(
            kind,
            format!("{what} {:?} contains {:?}; allowed are A-Z a-z 0-9 _ . -", name, char::from(bad)),
        ));
    }
    Ok(())
}

/// A message id is 1..=128 bytes of printable ASCII without spaces (0x21..=0x7e), which covers
/// UUIDs and every id scheme pynenc and Tadween generate.
pub fn validate_id(id: &str) -> Result<()> {
    if id.is_empty() {
        return Err(Error::new(ErrorKind::InvalidId, "message id is empty"));
    }
    if id.len() > MAX_ID_LEN {
        return Err(Error::new(
            ErrorKind::InvalidId,
            format!("message id is {} bytes long; the limit is {MAX_ID_LEN}", id.len()),
        ));
    }
    if id.bytes().any(|b| !(0x21..=0x7e).contains(&b)) {
        return Err(Error::new(ErrorKind::InvalidId, "message id must be printable ASCII without spaces"));
    }
    Ok(())
}

/// Maps any UTF-8 string onto a fragment of a topic name, the same way in every language (the C
/// ABI's brokk_topic_name_part, which every binding wraps):
///
/// - each byte of `[A-Za-z0-9.-]` is kept as it is;
/// - every other byte of the UTF-8 encoding, `_` included, becomes `_` and two lowercase hex
///   digits (`"my app"` -> `"my_20app"`, `"a_b"` -> `"a_5fb"`, `"ü"` -> `"_c3_bc"`).
///
/// Up to here the mapping is a bijection between strings and the fragments it produces: in a
/// fragment `_` is always followed by two hex digits, so it decodes back, and two different
/// inputs never share a fragment. A fragment never contains `__`, so `__` can separate two
/// fragments in one topic name unambiguously (the pynenc plugin's `pynenc.APP__QUEUE`).
///
/// If that encoding is longer than `max_len` bytes, the fragment is its longest prefix of at most
/// `max_len - 18` bytes that does not cut an escape, then `_x` and the 64-bit FNV-1a hash of
/// the whole input (its UTF-8 bytes) as 16 lowercase hex digits. `_x` never occurs in an
/// untruncated fragment, so a truncated one never equals an untruncated one; two truncated ones
/// are equal only if their inputs share the prefix and the 64-bit hash (a collision: about one
/// chance in 2^64 for two given inputs, not a guarantee).
///
/// The empty string maps onto the empty fragment. Fails with InvalidArgument if the encoding is
/// longer than `max_len` and `max_len` is below 18.
pub fn topic_name_part(s: &str, max_len: usize) -> Result<String> {
    // The hashed tail of a truncated name: `_x` and 16 hex digits. (Local: cbindgen would put a
    // module constant into the C header.)
    const TOPIC_PART_HASH_LEN: usize = 18;
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        push_escaped(&mut out, b);
    }
    if out.len() <= max_len {
        return Ok(out);
    }
    if max_len < TOPIC_PART_HASH_LEN {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            format!("max_len {max_len} cannot hold a truncated name ({TOPIC_PART_HASH_LEN} bytes at least)"),
        ));
    }
    let mut cut = max_len - TOPIC_PART_HASH_LEN;
    // Never cut an escape: back up to the `_` that starts it.
    let bytes = out.as_bytes();
    if cut >= 1 && bytes[cut - 1] == b'_' {
        cut -= 1;
    } else if cut >= 2 && bytes[cut - 2] == b'_' {
        cut -= 2;
    }
    out.truncate(cut);
    out.push_str("_x");
    out.push_str(&format!("{:016x}", fnv1a64(s.as_bytes())));
    Ok(out)
}

fn push_escaped(out: &mut String, b: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    if b.is_ascii_alphanumeric() || b == b'.' || b == b'-' {
        out.push(char::from(b));
    } else {
        out.push('_');
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 15)]));
    }
}

/// 64-bit FNV-1a (offset basis 0xcbf29ce484222325, prime 0x100000001b3).
pub fn fnv1a64(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn is_name_byte(b: u8) -> bool {
    NAME_BYTES[usize::from(b)]
}

/// `[A-Za-z0-9_.-]` as a table: every publish checks its topic byte by byte.
static NAME_BYTES: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric() || c == b'_' || c == b'.' || c == b'-';
        b += 1;
    }
    t
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics() {
        assert!(validate_topic("orders.eu-west_1").is_ok());
        assert!(validate_topic(&"a".repeat(MAX_TOPIC_LEN)).is_ok());
        for bad in ["", "a b", "a/b", "ü", "a\0b"] {
            assert_eq!(validate_topic(bad).unwrap_err().kind(), ErrorKind::InvalidTopic, "{bad:?}");
        }
        assert!(validate_topic(&"a".repeat(MAX_TOPIC_LEN + 1)).is_err());
    }

    #[test]
    fn ids() {
        assert!(validate_id("550e8400-e29b-41d4-a716-446655440000").is_ok());
        for bad in ["", "a b", "é", "\n"] {
            assert_eq!(validate_id(bad).unwrap_err().kind(), ErrorKind::InvalidId, "{bad:?}");
        }
        assert!(validate_id(&"x".repeat(MAX_ID_LEN + 1)).is_err());
    }
    /// The vectors every binding's test checks too.
    pub(crate) const VECTORS: &[(&str, usize, &str)] = &[
        ("default", 255, "default"),
        ("orders.eu-west1", 255, "orders.eu-west1"),
        ("my app", 255, "my_20app"),
        ("billing(v2)", 255, "billing_28v2_29"),
        ("team/app", 255, "team_2fapp"),
        ("a_b", 255, "a_5fb"),
        ("\u{fc}", 255, "_c3_bc"),
        ("", 255, ""),
        ("abcdefghijklmnopqrstuvwxyz", 20, "ab_x8450deb1cdc382a2"),
    ];

    #[test]
    fn topic_name_part_vectors() {
        for (input, max, want) in VECTORS {
            assert_eq!(topic_name_part(input, *max).unwrap(), *want, "{input:?}");
        }
    }

    #[test]
    fn topic_name_part_truncates_without_cutting_an_escape() {
        let long = "é".repeat(200); // 400 bytes of UTF-8, 1200 escaped
        let got = topic_name_part(&long, MAX_TOPIC_LEN).unwrap();
        assert!(got.len() <= MAX_TOPIC_LEN);
        assert!(validate_topic(&got).is_ok());
        let body = &got[..got.len() - 18];
        assert_eq!(body.len() % 3, 0);
        assert_ne!(got, topic_name_part(&format!("{long}x"), MAX_TOPIC_LEN).unwrap());
        assert_eq!(topic_name_part(&"a".repeat(300), 17).unwrap_err().kind(), ErrorKind::InvalidArgument);
        assert_eq!(topic_name_part("abc", 3).unwrap(), "abc");
    }

    #[test]
    fn fnv1a64_reference() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    proptest::proptest! {
        #[test]
        fn topic_name_part_is_injective_and_valid(a in "\\PC{0,6}", b in "[a-z_ /.\u{e9}]{0,6}") {
            let fa = topic_name_part(&a, MAX_TOPIC_LEN).unwrap();
            let fb = topic_name_part(&b, MAX_TOPIC_LEN).unwrap();
            proptest::prop_assert_eq!(a == b, fa == fb);
            for f in [&fa, &fb] {
                proptest::prop_assert!(f.is_empty() || validate_topic(f).is_ok());
                proptest::prop_assert!(!f.contains("__"));
            }
        }

        #[test]
        fn topic_name_part_fits(s in "\\PC{0,120}", max in 18usize..=MAX_TOPIC_LEN) {
            let f = topic_name_part(&s, max).unwrap();
            proptest::prop_assert!(f.len() <= max);
            proptest::prop_assert!(f.is_empty() || validate_topic(&f).is_ok());
        }
    }
}
