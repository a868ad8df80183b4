//! The storage seam: where deliveries wait between publish and dispatch. The broker decides
//! what to deliver to whom and when; a store only keeps each subscription's queue in order.
//! Memory is the only store so far; durable stores (SQLite, Redis) plug in here.

mod memory;

pub(crate) use memory::MemoryStore;

use crate::message::Delivery;

/// A family of queues, one per subscription.
pub(crate) trait Store: Send + Sync {
    /// Opens the queue that feeds subscription `subscription` of `topic`.
    fn open_queue(&self, topic: &str, subscription: u64) -> Box<dyn DeliveryQueue>;
}

/// One subscription's waiting deliveries, first in, first out. Safe to use from any thread.
pub(crate) trait DeliveryQueue: Send + Sync {
    /// Appends one delivery at the back and returns how many now wait.
    fn push_len(&self, delivery: Delivery) -> usize;
    /// Moves up to `max` deliveries from the front into `out`, in order.
    fn pop_batch(&self, max: usize, out: &mut Vec<Delivery>);
    /// Deliveries waiting.
    fn len(&self) -> usize;
    /// Removes and returns every waiting delivery.
    fn drain(&self) -> Vec<Delivery>;
}
