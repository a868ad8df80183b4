//! The in-process store. Per group, one ring buffer per priority level in an ordered map: with
//! the usual handful of levels, a push or claim is a map lookup plus a ring operation, and rings
//! stop allocating once they reach their working size. Per topic, the messages retained while it
//! has no group. Nothing outlives the process, so settling is free and leases mean nothing.

use std::any::Any;
use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::sync::{Mutex, RwLock};

use super::{
    ready_then_due, Capabilities, Fanout, GroupQueue, Lease, OpenedGroup, Published, Purged, Receipt, Requeue,
    Requeued, Retention, Store, StoreKind, Take, TopicStore,
};
use crate::error::{Error, ErrorKind, Result};
use crate::message::{Delivery, Message, Peeked};
use crate::view::{Depth, TopicView};

/// Most deliveries a push worker takes at once when it alone consumes its group.
const BATCH: usize = 16;

/// What follows `memory://`: nothing (memory has no options).
pub(crate) fn parse_url(_scheme: &str, rest: &str) -> Result<super::Backend> {
    if !rest.is_empty() {
        return Err(crate::config::invalid(format!("memory:// takes nothing after the scheme; got {rest:?}")));
    }
    Ok(super::Backend::Memory)
}

pub(crate) struct MemoryStore {
    topics: RwLock<HashMap<Arc<str>, Arc<MemoryTopic>>>,
    /// Delivery ids: the next one to hand out. Shared by every topic of the store.
    ids: Arc<AtomicU64>,
    /// Everything, except in the core's tests of what it emulates for stores that lack it.
    capabilities: Capabilities,
}

impl MemoryStore {
    /// The queue of the named group `group` of `topic`, if both exist.
    fn named_queue(&self, topic: &str, group: &str) -> Option<Arc<MemoryQueue>> {
        let topic = self.topics.read().get(topic).cloned()?;
        let st = topic.state.lock();
        st.queues.iter().find(|q| q.name.as_deref() == Some(group)).cloned()
    }

    pub(crate) fn new() -> Self {
        MemoryStore::declaring(Capabilities::default())
    }

    /// A memory store that declares (and keeps to) less than it can: stands in for a store whose
    /// engine lacks something, in the core's tests of what it emulates or refuses.
    pub(crate) fn declaring(capabilities: Capabilities) -> Self {
        MemoryStore { topics: RwLock::default(), ids: Arc::new(AtomicU64::new(1)), capabilities }
    }

    /// The topics named (all when None) that exist.
    fn select(&self, names: Option<&[&str]>) -> Vec<Arc<MemoryTopic>> {
        let topics = self.topics.read();
        match names {
            None => topics.values().cloned().collect(),
            Some(names) => names.iter().filter_map(|n| topics.get(*n).cloned()).collect(),
        }
    }
}

impl Store for MemoryStore {
    fn kind(&self) -> StoreKind {
        StoreKind::InProcess
    }

    fn name(&self) -> &'static str {
        "memory"
    }

    fn capabilities(&self) -> Capabilities {
        self.capabilities
    }

    fn topic(&self, name: &Arc<str>) -> Result<Arc<dyn TopicStore>> {
        let topic = Arc::clone(self.topics.write().entry(Arc::clone(name)).or_insert_with(|| {
            Arc::new(MemoryTopic {
                name: Arc::clone(name),
                ids: Arc::clone(&self.ids),
                state: Mutex::new(TopicState::default()),
                delays: self.capabilities.delayed_requeue,
            })
        }));
        Ok(topic)
    }

    fn batch_size(&self, contended: bool, _deadline: bool) -> usize {
        if contended {
            1
        } else {
            BATCH
        }
    }

    fn issued(&self, id: u64) -> bool {
        id != 0 && id < self.ids.load(Ordering::Relaxed)
    }

    fn count(&self, topics: Option<&[&str]>) -> Result<u64> {
        Ok(self.select(topics).iter().map(|t| t.waiting()).sum())
    }

    fn purge(&self, topics: Option<&[&str]>) -> Result<Vec<Purged>> {
        Ok(self.select(topics).iter().map(|t| t.purge()).filter(|p| p.deliveries + p.retained > 0).collect())
    }

    fn count_group(&self, topic: &str, group: &str) -> Result<u64> {
        Ok(self.named_queue(topic, group).map_or(0, |q| q.len() as u64))
    }

    fn purge_group(&self, topic: &str, group: &str) -> Result<u64> {
        Ok(self.named_queue(topic, group).map_or(0, |q| q.drain_ready()))
    }

    fn peek(&self, topic: &str, group: &str, max: usize) -> Result<Vec<Peeked>> {
        let Some(topic) = self.topics.read().get(topic).cloned() else { return Ok(Vec::new()) };
        let st = topic.state.lock();
        let queue = st.queues.iter().find(|q| q.name.as_deref() == Some(group)).cloned();
        match queue {
            Some(q) => {
                drop(st);
                Ok(q.peek(max))
            }
            // No such group: the group a fetch would make takes over what the topic retains
            // (none once a named group exists), into its queue by priority, in publish order.
            None => Ok(retained_in_claim_order(&st.retained, max)),
        }
    }

    fn view(&self) -> Result<Vec<TopicView>> {
        let topics: Vec<Arc<MemoryTopic>> = self.topics.read().values().cloned().collect();
        let mut view: Vec<TopicView> = topics.iter().map(|t| t.view()).collect();
        view.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(view)
    }
}

/// What a new named group would hand out first of `retained` (publish order): the first `max`
/// by priority, highest first, in publish order within one (a stable sort).
fn retained_in_claim_order(retained: &VecDeque<Message>, max: usize) -> Vec<Peeked> {
    let mut order: Vec<&Message> = retained.iter().collect();
    order.sort_by_key(|m| Reverse(m.priority()));
    order.into_iter().take(max).map(|m| Peeked::new(m.clone(), 1)).collect()
}

#[derive(Default)]
struct TopicState {
    retained: VecDeque<Message>,
    /// Every group registered, for count and purge, and to tell whether the topic has any.
    queues: Vec<Arc<MemoryQueue>>,
}

struct MemoryTopic {
    name: Arc<str>,
    ids: Arc<AtomicU64>,
    /// Also orders "no group: retain" against "first named group: take them over".
    state: Mutex<TopicState>,
    /// Whether its queues take `Requeue::At` (see `MemoryStore::declaring`).
    delays: bool,
}

impl MemoryTopic {
    fn waiting(&self) -> u64 {
        let st = self.state.lock();
        st.retained.len() as u64 + st.queues.iter().map(|q| q.len() as u64).sum::<u64>()
    }

    /// See `Store::view`: one look under the topic's lock.
    fn view(&self) -> TopicView {
        let st = self.state.lock();
        let mut view =
            TopicView { name: self.name.to_string(), retained: st.retained.len() as u64, ..Default::default() };
        for q in &st.queues {
            view.add_group(q.name.as_deref().map(str::to_owned), q.depth());
        }
        view.sort_groups();
        view
    }

    fn purge(&self) -> Purged {
        let mut st = self.state.lock();
        let retained = std::mem::take(&mut st.retained).len() as u64;
        let deliveries = st.queues.iter().map(|q| q.drain_ready()).sum();
        Purged { topic: self.name.to_string(), deliveries, retained }
    }

    fn deliveries<'a>(
        &'a self,
        messages: &'a [Message],
        group: &'a Option<Arc<str>>,
        first: u64,
    ) -> impl Iterator<Item = Delivery> + 'a {
        messages.iter().zip(first..).map(move |(m, id)| Delivery {
            message: m.clone(),
            id,
            key: id,
            subscription: 0,
            attempt: 1,
            renewed: false,
            group: group.clone(),
        })
    }

    fn retain(&self, messages: &[Message], retention: Retention) -> Result<Published> {
        let mut st = self.state.lock();
        if !st.queues.is_empty() {
            return Ok(Published::GroupsChanged);
        }
        let retained = &mut st.retained;
        let n = messages.len();
        let mut discarded = 0;
        match retention {
            Retention::Off => {}
            Retention::Reject(limit) if retained.len() + n > limit => {
                return Err(Error::new(
                    ErrorKind::Full,
                    format!(
                        "topic {:?} has no consumer group and already retains {} of at most {limit} messages",
                        self.name,
                        retained.len()
                    ),
                ));
            }
            Retention::Reject(_) => retained.extend(messages.iter().cloned()),
            Retention::DropOldest(limit) => {
                retained.extend(messages.iter().cloned());
                while retained.len() > limit {
                    retained.pop_front();
                    discarded += 1;
                }
            }
            Retention::DropNewest(limit) => {
                let room = limit.saturating_sub(retained.len()).min(n);
                retained.extend(messages[..room].iter().cloned());
                discarded = (n - room) as u64;
            }
        }
        Ok(Published::Done(Receipt { no_group: true, held: retained.len() as u64, discarded }))
    }
}

impl TopicStore for MemoryTopic {
    fn open_group(&self, name: Option<&str>) -> Result<OpenedGroup> {
        let queue = Arc::new(MemoryQueue::new(name.map(Arc::from), self.delays));
        let mut st = self.state.lock();
        let mut taken_over = 0;
        if name.is_some() {
            // Queued before the group is registered, so no later publish overtakes them.
            let taken: Vec<_> = std::mem::take(&mut st.retained).into_iter().collect();
            taken_over = taken.len() as u64;
            if !taken.is_empty() {
                let first = self.ids.fetch_add(taken_over, Ordering::Relaxed);
                queue.push(&mut self.deliveries(&taken, &queue.name, first));
            }
        }
        st.queues.push(Arc::clone(&queue));
        Ok(OpenedGroup { queue, taken_over })
    }

    fn remove_group(&self, queue: &dyn GroupQueue) -> Result<u64> {
        let mut st = self.state.lock();
        let target = queue as *const dyn GroupQueue as *const u8;
        st.queues.retain(|q| !std::ptr::eq(Arc::as_ptr(q) as *const u8, target));
        Ok(queue.discard())
    }

    fn publish(&self, messages: &[Message], groups: &dyn Fanout, retention: Retention) -> Result<Published> {
        let n = groups.len();
        if n == 0 {
            return self.retain(messages, retention);
        }
        let per_group = messages.len() as u64;
        let mut next = self.ids.fetch_add(per_group * groups.receivers() as u64, Ordering::Relaxed);
        for i in 0..n {
            let Some(queue) = groups.receiving(i) else { continue };
            let queue = queue.as_any().downcast_ref::<MemoryQueue>().expect("a memory store's group");
            queue.push(&mut self.deliveries(messages, &queue.name, next));
            next += per_group;
        }
        Ok(Published::Done(Receipt::default()))
    }

    fn close(&self) -> u64 {
        std::mem::take(&mut self.state.lock().retained).len() as u64
    }
}

/// Priority levels kept while empty; past this, empty ones are dropped.
const KEPT_EMPTY_LEVELS: usize = 8;

#[derive(Default)]
struct Levels {
    /// Highest priority first.
    rings: BTreeMap<Reverse<i32>, VecDeque<Delivery>>,
    len: usize,
    /// Requeued with a delay: (due, delivery), released by `release_due`.
    delayed: Vec<(Instant, Delivery)>,
    /// Discarded: the group was removed or the broker closed. A requeue that comes after (its
    /// handler was still running) finds the queue gone instead of leaving a delivery where no
    /// consumer and no count would ever find it again.
    gone: bool,
}

pub(crate) struct MemoryQueue {
    name: Option<Arc<str>>,
    levels: Mutex<Levels>,
    /// `levels.len`, readable without the lock: publish checks every group's length against
    /// its capacity, and must not take each queue's lock to do it.
    len: AtomicUsize,
    /// Whether it takes `Requeue::At`: a store declared without delayed requeue refuses it, so
    /// that a core that forgot to emulate it fails its tests.
    delays: bool,
    /// Deliveries claimed and not yet settled or requeued, for the store view only (the core
    /// counts its own in flight per topic). Never read on a hot path.
    claimed: AtomicUsize,
}

impl MemoryQueue {
    fn new(name: Option<Arc<str>>, delays: bool) -> Self {
        MemoryQueue {
            name,
            levels: Mutex::new(Levels::default()),
            len: AtomicUsize::new(0),
            delays,
            claimed: AtomicUsize::new(0),
        }
    }

    /// Adds deliveries all at once (a consumer sees all or none of them).
    fn push(&self, deliveries: &mut dyn Iterator<Item = Delivery>) {
        let mut l = self.levels.lock();
        for d in deliveries {
            l.rings.entry(Reverse(d.priority())).or_default().push_back(d);
            l.len += 1;
        }
        self.len.store(l.len, Ordering::Release);
    }

    /// See `Store::peek`. The core's timer releases a due delay (`release_due`) a moment after
    /// it is due; until then it is shown where the release will put it.
    fn peek(&self, max: usize) -> Vec<Peeked> {
        let l = self.levels.lock();
        let peeked = |d: &Delivery| Peeked::new(d.message.clone(), d.attempt);
        let ready = l.rings.values().flatten().take(max).map(peeked).collect();
        let now = Instant::now();
        let due = l.delayed.iter().filter(|(at, _)| *at <= now).take(max).map(|(_, d)| peeked(d)).collect();
        ready_then_due(ready, due, max)
    }

    /// See `Store::view`.
    fn depth(&self) -> Depth {
        let l = self.levels.lock();
        Depth {
            ready: l.len as u64,
            delayed: l.delayed.len() as u64,
            in_flight: self.claimed.load(Ordering::Relaxed) as u64,
        }
    }

    /// A claimed delivery is settled or back in the queue (saturating: a late settle after the
    /// queue was discarded finds it zero).
    fn unclaimed(&self, n: usize) {
        let _ = self.claimed.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| Some(c.saturating_sub(n)));
    }

    /// Removes every ready delivery; returns how many.
    fn drain_ready(&self) -> u64 {
        let mut l = self.levels.lock();
        let n = l.len;
        l.rings.clear();
        l.len = 0;
        self.len.store(0, Ordering::Release);
        n as u64
    }
}

impl GroupQueue for MemoryQueue {
    fn claim(&self, max: usize, _lease: Lease, out: &mut Vec<Delivery>) -> Result<usize> {
        let mut l = self.levels.lock();
        let mut taken = 0;
        // Emptied levels stay (up to a few), with their ring's memory: a consumer that keeps
        // up empties the queue after nearly every push, and removing the level each time would
        // free and reallocate its ring and map node each time.
        for ring in l.rings.values_mut() {
            if taken == max {
                break;
            }
            let n = (max - taken).min(ring.len());
            out.extend(ring.drain(..n));
            taken += n;
        }
        if l.rings.len() > KEPT_EMPTY_LEVELS {
            l.rings.retain(|_, ring| !ring.is_empty());
        }
        l.len -= taken;
        self.len.store(l.len, Ordering::Release);
        if taken > 0 {
            self.claimed.fetch_add(taken, Ordering::Relaxed);
        }
        Ok(taken)
    }

    fn settle(&self, done: &[Delivery]) -> Result<()> {
        self.unclaimed(done.len());
        Ok(())
    }

    /// A claim of one that looks at the payload before it pops: one lock, nothing to put back.
    fn take(&self, max_payload: usize) -> Result<Take> {
        let mut l = self.levels.lock();
        let Some(ring) = l.rings.values_mut().find(|ring| !ring.is_empty()) else {
            return Ok(Take::Empty);
        };
        let size = ring.front().map_or(0, |d| d.message.payload().len());
        if size > max_payload {
            return Ok(Take::TooLarge(size));
        }
        let delivery = ring.pop_front().expect("a ring found not empty");
        if l.rings.len() > KEPT_EMPTY_LEVELS {
            l.rings.retain(|_, ring| !ring.is_empty());
        }
        l.len -= 1;
        self.len.store(l.len, Ordering::Release);
        Ok(Take::Got(delivery))
    }

    fn requeue(&self, delivery: &Delivery, how: Requeue) -> Result<Requeued> {
        self.unclaimed(1);
        let mut delivery = delivery.clone();
        delivery.subscription = 0;
        // Checked and put back under one lock, so that a discard is either before (Gone) or
        // after (it counts this delivery).
        let mut l = self.levels.lock();
        if l.gone {
            return Ok(Requeued::Gone);
        }
        match how {
            Requeue::Unstarted => {
                // Back where it was: at the front of its priority (the core gives a batch back
                // last first, so the batch keeps its order).
                l.rings.entry(Reverse(delivery.priority())).or_default().push_front(delivery);
                l.len += 1;
                self.len.store(l.len, Ordering::Release);
                return Ok(Requeued::Ready);
            }
            Requeue::Now => delivery.attempt += 1,
            Requeue::At(_) if !self.delays => {
                return Err(Error::new(ErrorKind::InvalidArgument, "this store declared no delayed requeue"));
            }
            Requeue::At(due) => {
                delivery.attempt += 1;
                l.delayed.push((due, delivery));
                return Ok(Requeued::Delayed);
            }
        }
        l.rings.entry(Reverse(delivery.priority())).or_default().push_back(delivery);
        l.len += 1;
        self.len.store(l.len, Ordering::Release);
        Ok(Requeued::Ready)
    }

    fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    fn waiting(&self) -> Result<u64> {
        Ok(0)
    }

    fn release_due(&self) -> usize {
        let mut l = self.levels.lock();
        let now = Instant::now();
        let mut released = 0;
        let mut i = 0;
        while i < l.delayed.len() {
            if l.delayed[i].0 <= now {
                let (_, d) = l.delayed.remove(i);
                l.rings.entry(Reverse(d.priority())).or_default().push_back(d);
                l.len += 1;
                released += 1;
            } else {
                i += 1;
            }
        }
        self.len.store(l.len, Ordering::Release);
        released
    }

    fn discard(&self) -> u64 {
        let mut l = self.levels.lock();
        let n = l.len + l.delayed.len();
        l.gone = true;
        self.claimed.store(0, Ordering::Relaxed);
        l.rings.clear();
        l.delayed.clear();
        l.len = 0;
        self.len.store(0, Ordering::Release);
        n as u64
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct All<'a>(&'a [Arc<dyn GroupQueue>]);
    impl Fanout for All<'_> {
        fn len(&self) -> usize {
            self.0.len()
        }
        fn receivers(&self) -> usize {
            self.0.len()
        }
        fn queue(&self, i: usize) -> &dyn GroupQueue {
            &*self.0[i]
        }
        fn receiving(&self, i: usize) -> Option<&dyn GroupQueue> {
            Some(&*self.0[i])
        }
    }

    fn ids(out: &[Delivery]) -> Vec<String> {
        out.iter().map(|d| d.parent_id().to_owned()).collect()
    }

    #[test]
    fn highest_priority_first_fifo_within() {
        let store = MemoryStore::new();
        let topic = store.topic(&Arc::from("t")).unwrap();
        let q = topic.open_group(Some("g")).unwrap().queue;
        let items = [("1", 0), ("2", 5), ("3", 0), ("4", -3), ("5", 5), ("6", 9)];
        let messages: Vec<_> = items.iter().map(|&(id, p)| Message::new("t", id, b"1", None, p)).collect();
        topic.publish(&messages, &All(&[Arc::clone(&q)]), Retention::Off).unwrap();
        assert_eq!(q.len(), 6);
        let mut out = Vec::new();
        assert_eq!(q.claim(4, Lease::Renewed, &mut out).unwrap(), 4);
        assert_eq!(ids(&out), ["6", "2", "5", "1"]);
        assert_eq!(q.len(), 2);
        out.clear();
        q.claim(10, Lease::Renewed, &mut out).unwrap();
        assert_eq!(ids(&out), ["3", "4"]);
        assert_eq!((q.len(), store.count(None).unwrap()), (0, 0));
    }

    #[test]
    fn the_first_named_group_takes_over_what_the_topic_retained() {
        let store = MemoryStore::new();
        let topic = store.topic(&Arc::from("t")).unwrap();
        let m = |id| Message::new("t", id, b"1", None, 0);
        let receipt = topic.publish(&[m("a"), m("b")], &All(&[]), Retention::DropOldest(1)).unwrap();
        assert_eq!(receipt, Published::Done(Receipt { no_group: true, held: 1, discarded: 1 }));
        let anonymous = topic.open_group(None).unwrap();
        assert_eq!((anonymous.taken_over, anonymous.queue.len()), (0, 0));
        // The caller's list is stale (no group): told so, nothing done.
        assert_eq!(topic.publish(&[m("c")], &All(&[]), Retention::Off).unwrap(), Published::GroupsChanged);
        let named = topic.open_group(Some("g")).unwrap();
        assert_eq!((named.taken_over, named.queue.len()), (1, 1));
        assert_eq!(topic.remove_group(&*anonymous.queue).unwrap(), 0);
        assert_eq!(store.purge(None).unwrap(), [Purged { topic: "t".into(), deliveries: 1, retained: 0 }]);
    }

    #[test]
    fn delayed_deliveries_wait_for_release() {
        let store = MemoryStore::new();
        let topic = store.topic(&Arc::from("t")).unwrap();
        let q = topic.open_group(Some("g")).unwrap().queue;
        topic.publish(&[Message::new("t", "a", b"1", None, 0)], &All(&[Arc::clone(&q)]), Retention::Off).unwrap();
        let mut out = Vec::new();
        q.claim(1, Lease::Renewed, &mut out).unwrap();
        let d = out.pop().unwrap();
        assert_eq!(
            q.requeue(&d, Requeue::At(Instant::now() + std::time::Duration::from_secs(3600))).unwrap(),
            Requeued::Delayed
        );
        assert_eq!((q.len(), q.release_due()), (0, 0));
        assert_eq!(q.discard(), 1);
    }

    #[test]
    fn a_requeue_after_the_queue_was_discarded_finds_it_gone() {
        let q = MemoryQueue::new(None, true);
        q.push(&mut std::iter::once(Delivery::of_published(Message::new("t", "a", b"1", None, 0))));
        let mut out = Vec::new();
        q.claim(1, Lease::Renewed, &mut out).unwrap();
        assert_eq!(q.discard(), 0);
        for how in [Requeue::Now, Requeue::Unstarted, Requeue::At(Instant::now())] {
            assert_eq!(q.requeue(&out[0], how).unwrap(), Requeued::Gone);
        }
        assert_eq!((q.len(), q.release_due(), q.discard()), (0, 0, 0));
    }
}
