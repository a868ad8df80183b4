//! What happens to a delivery its consumer does not settle in time, or keeps failing: the ack
//! deadline, the attempt limit and the dead-letter topic. Set per subscription, or per fetch.

use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, ErrorKind, Result};
use crate::names::validate_topic;
use crate::store::Lease;

#[derive(Debug, Default)]
pub(crate) struct DeliveryPolicy {
    /// Redeliver (attempt + 1) what is not acked or nacked this long after it was handed out.
    pub ack_deadline: Option<Duration>,
    /// Give up after this many attempts (0: never): dead-letter, or drop as failed.
    pub max_attempts: u32,
    /// Where given-up deliveries are published, with the story in their metadata.
    pub dead_letter: Option<Arc<str>>,
}

impl DeliveryPolicy {
    pub(crate) fn new(ack_deadline: Option<Duration>, max_attempts: u32, dead_letter: Option<&str>) -> Result<Self> {
        if ack_deadline.is_some_and(|d| d.is_zero()) {
            return Err(Error::new(ErrorKind::InvalidArgument, "an ack deadline must be longer than zero"));
        }
        if let Some(t) = dead_letter {
            validate_topic(t).map_err(|e| Error::new(e.kind(), format!("dead-letter {}", e.message())))?;
        }
        Ok(DeliveryPolicy { ack_deadline, max_attempts, dead_letter: dead_letter.map(Arc::from) })
    }

    /// Whether a delivery on its `attempt` may be tried again.
    pub(crate) fn may_retry(&self, attempt: u32) -> bool {
        self.max_attempts == 0 || attempt < self.max_attempts
    }

    /// How long a claim holds deliveries under this policy: until the ack deadline, or (none)
    /// for as long as this broker lives.
    pub(crate) fn lease(&self) -> Lease {
        self.ack_deadline.map_or(Lease::Renewed, Lease::Until)
    }

    /// Whether deliveries under this policy must be tracked until settled.
    pub(crate) fn tracked(&self) -> bool {
        self.ack_deadline.is_some()
    }
}
