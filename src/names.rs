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
}
