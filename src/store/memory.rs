//! The in-process store: per group, one ring buffer per priority level in an ordered map. With
//! the usual handful of levels, a push or pop is a map lookup plus a ring operation, and rings
//! stop allocating once they reach their working size.

use std::cmp::Reverse;
use std::collections::{BTreeMap, VecDeque};

use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;

use super::{DeliveryQueue, Store};
use crate::message::Delivery;

pub(crate) struct MemoryStore;

impl Store for MemoryStore {
    fn open_queue(&self, _topic: &str, _group: Option<&str>) -> Box<dyn DeliveryQueue> {
        Box::new(MemoryQueue { levels: Mutex::new(Levels::default()), len: AtomicUsize::new(0) })
    }
}

#[derive(Default)]
struct Levels {
    /// Highest priority first.
    rings: BTreeMap<Reverse<i32>, VecDeque<Delivery>>,
    len: usize,
}

struct MemoryQueue {
    levels: Mutex<Levels>,
    /// `levels.len`, readable without the lock: publish checks every group's length against
    /// its capacity, and must not take each queue's lock to do it.
    len: AtomicUsize,
}

impl DeliveryQueue for MemoryQueue {
    fn push(&self, deliveries: &mut dyn Iterator<Item = Delivery>) -> usize {
        let mut l = self.levels.lock();
        for d in deliveries {
            l.rings.entry(Reverse(d.priority())).or_default().push_back(d);
            l.len += 1;
        }
        self.len.store(l.len, Ordering::Release);
        l.len
    }

    fn pop_batch(&self, max: usize, out: &mut Vec<Delivery>) {
        let mut l = self.levels.lock();
        let mut taken = 0;
        while taken < max {
            let Some(mut level) = l.rings.first_entry() else { break };
            let ring = level.get_mut();
            let n = (max - taken).min(ring.len());
            out.extend(ring.drain(..n));
            taken += n;
            // Empty levels go, so the first entry is always the highest waiting priority.
            if ring.is_empty() {
                level.remove();
            }
        }
        l.len -= taken;
        self.len.store(l.len, Ordering::Release);
    }

    fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    fn drain(&self) -> Vec<Delivery> {
        let mut l = self.levels.lock();
        l.len = 0;
        self.len.store(0, Ordering::Release);
        std::mem::take(&mut l.rings).into_values().flatten().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Message;

    fn d(priority: i32, n: u64) -> Delivery {
        let m = Message::new("t", "id", b"1", None, priority);
        Delivery { message: m, id: n, subscription: 0, attempt: 1, group: None }
    }

    #[test]
    fn highest_priority_first_fifo_within() {
        let q = MemoryStore.open_queue("t", None);
        let items = [(0, 1), (5, 2), (0, 3), (-3, 4), (5, 5), (9, 6)];
        assert_eq!(q.push(&mut items.iter().map(|&(p, n)| d(p, n))), 6);
        let mut out = Vec::new();
        q.pop_batch(4, &mut out);
        assert_eq!(out.iter().map(|d| d.id).collect::<Vec<_>>(), vec![6, 2, 5, 1]);
        assert_eq!(q.len(), 2);
        out.clear();
        q.pop_batch(10, &mut out);
        assert_eq!(out.iter().map(|d| d.id).collect::<Vec<_>>(), vec![3, 4]);
        assert_eq!(q.len(), 0);
    }
}
