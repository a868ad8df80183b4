//! Reading the scripts' replies: arrays of integers and byte strings.

use ::redis::Value;

use crate::error::{Error, ErrorKind, Result};

/// A reply that is not what the script returns: a bug, or keys changed by something else.
pub(super) fn malformed(what: &str) -> Error {
    Error::new(
        ErrorKind::StorageFailed,
        format!("redis: unexpected reply to {what}; are brokk's keys written by something else?"),
    )
}

pub(super) fn array(v: Value, what: &str) -> Result<Vec<Value>> {
    match v {
        Value::Array(items) => Ok(items),
        Value::Nil => Ok(Vec::new()),
        _ => Err(malformed(what)),
    }
}

pub(super) fn int(v: &Value, what: &str) -> Result<i64> {
    match v {
        Value::Int(n) => Ok(*n),
        Value::BulkString(b) => std::str::from_utf8(b).ok().and_then(|s| s.parse().ok()).ok_or_else(|| malformed(what)),
        Value::SimpleString(s) => s.parse().map_err(|_| malformed(what)),
        Value::Nil => Ok(0),
        _ => Err(malformed(what)),
    }
}

pub(super) fn bytes(v: Value, what: &str) -> Result<Vec<u8>> {
    match v {
        Value::BulkString(b) => Ok(b),
        Value::SimpleString(s) => Ok(s.into_bytes()),
        Value::Int(n) => Ok(n.to_string().into_bytes()),
        _ => Err(malformed(what)),
    }
}

pub(super) fn text(v: Value, what: &str) -> Result<String> {
    String::from_utf8(bytes(v, what)?).map_err(|_| malformed(what))
}
