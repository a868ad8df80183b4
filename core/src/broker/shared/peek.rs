//! Peek: what a fetch of a group would get next, read from the store without taking it. It
//! reaches the store directly, not this broker's topics and groups: a group that another
//! process (or an earlier broker) uses is seen in a shared store, and looking creates nothing
//! (a new named group would start receiving, and in a durable store keeping, a delivery of
//! every message). Nothing is claimed, counted or reported to listeners.

use super::Shared;
use crate::broker::{DEFAULT_GROUP, MAX_PEEK};
use crate::error::{Error, ErrorKind, Result};
use crate::message::Peeked;
use crate::names::{validate_group, validate_topic};

impl Shared {
    /// See `Broker::peek`.
    pub(crate) fn peek(&self, topic: &str, group: Option<&str>, max: usize) -> Result<Vec<Peeked>> {
        self.ensure_not_closed()?;
        if max == 0 || max > MAX_PEEK {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("a peek shows 1 to {MAX_PEEK} deliveries (max is {max})"),
            ));
        }
        validate_topic(topic)?;
        let group = group.unwrap_or(DEFAULT_GROUP);
        validate_group(group)?;
        self.store.peek(topic, group, max)
    }
}
