//! The in-process store: a mutex-guarded ring buffer per subscription. Pushes and batched pops
//! take the lock briefly and never allocate once the ring has grown to the working size.

use std::collections::VecDeque;

use parking_lot::Mutex;

use super::{DeliveryQueue, Store};
use crate::message::Delivery;

pub(crate) struct MemoryStore;

impl Store for MemoryStore {
    fn open_queue(&self, _topic: &str, _subscription: u64) -> Box<dyn DeliveryQueue> {
        Box::new(MemoryQueue {
            ring: Mutex::new(VecDeque::new()),
        })
    }
}

struct MemoryQueue {
    ring: Mutex<VecDeque<Delivery>>,
}

impl DeliveryQueue for MemoryQueue {
    fn push_len(&self, delivery: Delivery) -> usize {
        let mut ring = self.ring.lock();
        ring.push_back(delivery);
        ring.len()
    }

    fn pop_batch(&self, max: usize, out: &mut Vec<Delivery>) {
        let mut ring = self.ring.lock();
        let n = max.min(ring.len());
        out.extend(ring.drain(..n));
    }

    fn len(&self) -> usize {
        self.ring.lock().len()
    }

    fn drain(&self) -> Vec<Delivery> {
        std::mem::take(&mut *self.ring.lock()).into()
    }
}
