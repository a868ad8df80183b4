//! How messages are shown: a line of text per message, or a JSON object with the payload and
//! metadata embedded as published.

use std::time::{SystemTime, UNIX_EPOCH};

use brokk_core::Message;
use serde_json::Value;

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// A JSON text the broker accepted, as it was published (or as a JSON string, should it not
/// be UTF-8 JSON): Value would re-spell numbers and reorder keys.
pub fn raw_json(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) if serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok() => text.trim().to_owned(),
        _ => Value::String(String::from_utf8_lossy(bytes).into_owned()).to_string(),
    }
}

/// A JSON object written member by member, whose values are JSON texts already.
#[derive(Default)]
pub struct Object(Vec<(String, String)>);

impl Object {
    pub fn raw(mut self, key: &str, json_text: String) -> Self {
        self.0.push((key.to_owned(), json_text));
        self
    }

    pub fn value(self, key: &str, value: impl Into<Value>) -> Self {
        self.raw(key, value.into().to_string())
    }

    pub fn finish(self) -> String {
        let members: Vec<String> = self.0.into_iter().map(|(k, v)| format!("{}:{v}", Value::String(k))).collect();
        format!("{{{}}}", members.join(","))
    }
}

/// A JSON array of JSON texts.
pub fn array(items: impl IntoIterator<Item = String>) -> String {
    format!("[{}]", items.into_iter().collect::<Vec<_>>().join(","))
}

/// The JSON object of a message: topic, id, priority, attempt (when known), timestamp, age,
/// payload and metadata (these two as published).
pub fn message_json(m: &Message, attempt: Option<u32>) -> String {
    let mut o = Object::default().value("topic", m.topic()).value("id", m.id()).value("priority", m.priority());
    if let Some(a) = attempt {
        o = o.value("attempt", a);
    }
    o.value("timestamp_ms", m.timestamp_ms())
        .value("age_ms", now_ms().saturating_sub(m.timestamp_ms()))
        .raw("payload", raw_json(m.payload()))
        .raw("metadata", raw_json(m.metadata()))
        .finish()
}

/// An age for people: 850ms, 12.3s, 4m05s, 3h20m, 2d04h.
pub fn age(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        _ if ms < 1000 => format!("{ms}ms"),
        0..60 => format!("{}.{}s", s, (ms % 1000) / 100),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{:02}h", s / 86400, (s % 86400) / 3600),
    }
}

/// The header of the text table of messages (peek, dead-letters).
pub const MESSAGE_HEADER: &str = "ID\tPRIORITY\tATTEMPT\tAGE\tPAYLOAD";

/// One text line of a message: id, priority, attempt, age, payload.
pub fn message_line(m: &Message, attempt: Option<u32>) -> String {
    format!(
        "{}\t{}\t{}\t{}\t{}",
        m.id(),
        m.priority(),
        attempt.map_or_else(|| "-".to_owned(), |a| a.to_string()),
        age(now_ms().saturating_sub(m.timestamp_ms())),
        String::from_utf8_lossy(m.payload())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_well() {
        assert_eq!(age(850), "850ms");
        assert_eq!(age(12_345), "12.3s");
        assert_eq!(age(245_000), "4m05s");
        assert_eq!(age(12_000_000), "3h20m");
        assert_eq!(age(187_200_000), "2d04h");
    }

    #[test]
    fn payloads_are_embedded_as_published() {
        assert_eq!(raw_json(br#"{"b": 1.50, "a": 2}"#), r#"{"b": 1.50, "a": 2}"#);
        assert_eq!(raw_json(b"not json"), r#""not json""#);
        let o = Object::default().value("k\"", 1).raw("p", raw_json(b"[1.0]")).finish();
        assert_eq!(o, r#"{"k\"":1,"p":[1.0]}"#);
    }
}
