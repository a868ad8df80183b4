//! The storage seam: where deliveries wait between publish and dispatch. The broker decides
//! what to deliver to whom and when; a store only keeps each group's queue in priority order.
//! Memory is the only store so far; durable stores (SQLite, Redis) plug in here.

mod memory;
// The durable engine, not wired into the broker yet.
#[allow(dead_code)]
pub(crate) mod sqlite;

pub(crate) use memory::MemoryStore;

use crate::message::Delivery;

/// A family of queues, one per consumer group.
pub(crate) trait Store: Send + Sync {
    /// Opens the queue of `group` (None: the anonymous group of one subscription) of `topic`.
    fn open_queue(&self, topic: &str, group: Option<&str>) -> Box<dyn DeliveryQueue>;
}

/// One group's waiting deliveries: highest priority first, first in first out within a
/// priority. Safe to use from any thread.
pub(crate) trait DeliveryQueue: Send + Sync {
    /// Adds deliveries (all at once: a consumer sees all or none of them) and returns how many
    /// now wait.
    fn push(&self, deliveries: &mut dyn Iterator<Item = Delivery>) -> usize;
    /// Moves up to `max` deliveries from the front into `out`, in order.
    fn pop_batch(&self, max: usize, out: &mut Vec<Delivery>);
    /// Deliveries waiting.
    fn len(&self) -> usize;
    /// Removes and returns every waiting delivery.
    fn drain(&self) -> Vec<Delivery>;
}
