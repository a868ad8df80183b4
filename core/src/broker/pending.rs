//! Deliveries of manual-ack subscriptions that were handed to a handler and await `ack` or
//! `nack`. Sharded by id so that acks from many threads rarely meet on one lock.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Weak};

use crate::sync::Mutex;

use super::group::Group;
use super::policy::DeliveryPolicy;
use crate::message::Delivery;
use crate::stats::TopicCounters;

const SHARDS: usize = 64;

pub(crate) struct PendingAck {
    pub delivery: Delivery,
    /// Where a requeue sends it. Weak: a delivery awaiting an ack must not keep a group (and
    /// through it the handlers of its members) alive.
    pub group: Weak<Group>,
    pub counters: Arc<TopicCounters>,
    pub policy: Arc<DeliveryPolicy>,
}

/// Ids are sequential, so a multiplicative hash spreads them well and costs one instruction.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, _: &[u8]) {
        unreachable!("only u64 keys are hashed")
    }
    fn write_u64(&mut self, id: u64) {
        self.0 = id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type Shard = Mutex<HashMap<u64, PendingAck, BuildHasherDefault<IdHasher>>>;

pub(crate) struct PendingAcks {
    shards: Box<[Shard]>,
}

impl PendingAcks {
    pub(crate) fn new() -> Self {
        PendingAcks { shards: (0..SHARDS).map(|_| Shard::default()).collect() }
    }

    fn shard(&self, id: u64) -> &Shard {
        &self.shards[(id as usize) % SHARDS]
    }

    /// Registers a delivery; returns whether it replaced an entry (a shared store may hand the
    /// same delivery out again once an old lease on it ran out).
    pub(crate) fn insert(&self, entry: PendingAck) -> bool {
        self.shard(entry.delivery.id).lock().insert(entry.delivery.id, entry).is_some()
    }

    pub(crate) fn remove(&self, id: u64) -> Option<PendingAck> {
        self.shard(id).lock().remove(&id)
    }

    /// Removes the entry of delivery `id` only if it is still the hand-out of `attempt`: a late
    /// verdict or an old deadline must not settle a later redelivery of the same delivery.
    pub(crate) fn remove_attempt(&self, id: u64, attempt: u32) -> Option<PendingAck> {
        let mut shard = self.shard(id).lock();
        match shard.get(&id) {
            Some(e) if e.delivery.attempt == attempt => shard.remove(&id),
            _ => None,
        }
    }

    /// Removes every entry, for close.
    pub(crate) fn drain(&self) -> Vec<PendingAck> {
        self.shards.iter().flat_map(|s| std::mem::take(&mut *s.lock()).into_values()).collect()
    }
}
