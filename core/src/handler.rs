//! What a subscription runs for each delivery, and what it answers.

use std::borrow::Cow;

use crate::message::Delivery;

/// Why a delivery failed, as reported to listeners and stats.
pub type Reason = Cow<'static, str>;

/// A handler's answer for one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verdict {
    /// Processed: the delivery is settled and counted processed.
    Ack,
    /// Failed: the delivery is dropped and counted failed.
    Nack(Option<Reason>),
    /// Failed for now: the delivery goes back to its group's queue (behind others of its
    /// priority) with attempt + 1, unless its subscription's attempt limit is reached.
    Requeue(Option<Reason>),
    /// Like `Requeue`, but delivered again no earlier than the given delay (backoff).
    RequeueAfter(std::time::Duration, Option<Reason>),
    /// The handler (or anyone holding the id) will call `ack` or `nack` later. On an auto-ack
    /// subscription this means `Ack`.
    Later,
}

/// A subscription's callback. It runs on a broker worker thread with no broker lock held, so it
/// may publish, subscribe, unsubscribe, ack and nack. It should return quickly: a worker is
/// busy until it does.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, delivery: &Delivery) -> Verdict;
}

impl<F> Handler for F
where
    F: Fn(&Delivery) -> Verdict + Send + Sync + 'static,
{
    fn handle(&self, delivery: &Delivery) -> Verdict {
        self(delivery)
    }
}
