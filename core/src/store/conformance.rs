//! The storage seam's conformance suite (issue 18): the same checks, through the traits only
//! (`Store`, `TopicStore`, `GroupQueue`, `Fanout`), on every backend, beside the Broker-level
//! behaviour tests (`core/tests/broker.rs`). Each check is one function taking a [`Fixture`];
//! [`on_every_store!`] makes one `#[test]` per (check, backend), named
//! `store::conformance::<check>::<backend>`, so a failure names both.
//!
//! Backends: memory; SQLite on a file in a temporary folder of the test's own (removed after);
//! Redis on a redis-server the test starts (`test_server.rs`, killed after), under a key prefix
//! of the test's own.
//!
//! Where the backends legitimately differ ([`StoreKind`]), a check asserts each kind's documented
//! behaviour and says so, and calls `refresh` where the core would (after a purge, in the
//! poller). A check that one backend fails for what looks like a bug is `#[ignore]`d for that
//! backend only, with the reason.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{
    Backend, Fanout, GroupQueue, Lease, Published, Purged, Receipt, Requeue, Requeued, Retention, Store, StoreKind,
    Take, TopicStore,
};
use crate::error::{ErrorKind, Result};
use crate::message::{Delivery, Message};

// ---- fixtures ------------------------------------------------------------------------------

/// Where a store's data lives, kept as long as the test runs and removed after it.
enum Place {
    Memory,
    #[cfg(feature = "sqlite")]
    Folder {
        _dir: TempDir,
    },
    #[cfg(feature = "redis")]
    Redis {
        _server: super::test_server::Server,
    },
}

/// A store under test. `store` is declared (so dropped) before `_place`: the store lets go of
/// its file or server before the folder is removed or the server killed.
struct Fixture {
    store: Box<dyn Store>,
    backend: Backend,
    _place: Place,
}

/// A number unique in this test process, for folder names and key prefixes.
fn unique() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

impl Fixture {
    fn memory(_check: &str) -> Fixture {
        let backend = Backend::Memory;
        Fixture { store: backend.open().unwrap(), backend, _place: Place::Memory }
    }

    #[cfg(feature = "sqlite")]
    fn sqlite(check: &str) -> Fixture {
        let dir = TempDir::new(check);
        let backend = Backend::Sqlite(super::sqlite::SqliteConfig::new(dir.0.join("store.db")));
        Fixture { store: backend.open().unwrap(), backend, _place: Place::Folder { _dir: dir } }
    }

    #[cfg(feature = "redis")]
    fn redis(check: &str) -> Fixture {
        let server = super::test_server::Server::start().expect("redis-server (Debian's package) must be installed");
        let mut config = super::redis::RedisConfig::new("127.0.0.1", server.port());
        // A server per test already; a prefix of its own too, so that checks could share one.
        config.prefix = format!("conformance-{}-{}", unique(), check);
        let backend = Backend::Redis(config);
        Fixture { store: backend.open().unwrap(), backend, _place: Place::Redis { _server: server } }
    }

    fn shared(&self) -> bool {
        self.store.kind() == StoreKind::Shared
    }

    /// Another store on the same file or server: another process, to a shared store. None in
    /// process, where nothing outside this store sees its queues.
    fn another(&self) -> Option<Box<dyn Store>> {
        self.shared().then(|| self.backend.open().unwrap())
    }

    /// What `GroupQueue::waiting` documents: a shared store counts what waits in the group
    /// (`n`); an in-process store says 0 (the core counts its deliveries itself).
    fn waiting(&self, n: u64) -> u64 {
        if self.shared() {
            n
        } else {
            0
        }
    }

    /// For a shared store: closes this store (which gives back what it holds, attempt + 1) and
    /// claims, in another one, everything group `group` of `topic` then has, as (id, attempt).
    /// None in process: nothing outlives the store there.
    fn left_after_close(&self, topic: &str, group: &str) -> Option<Vec<(String, u32)>> {
        let other = self.another()?;
        self.store.close().unwrap();
        let q = other.topic(&name(topic)).unwrap().open_group(Some(group)).unwrap().queue;
        let got = claim_all(&*q).iter().map(|d| (d.parent_id().to_owned(), d.attempt())).collect();
        other.close().unwrap();
        Some(got)
    }
}

/// A folder of its own under the system temp dir, removed on drop.
#[cfg(feature = "sqlite")]
struct TempDir(std::path::PathBuf);

#[cfg(feature = "sqlite")]
impl TempDir {
    fn new(check: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("brokk-conformance-{}-{}-{check}", std::process::id(), unique()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

#[cfg(feature = "sqlite")]
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One `#[test]` per backend for each check: `on_every_store!(check)`, or with attributes for
/// some backends (an `#[ignore = "why"]`): `on_every_store!(check, memory: [#[ignore = "why"]])`.
macro_rules! on_every_store {
    ($check:ident) => {
        on_every_store!($check, memory: [], sqlite: [], redis: []);
    };
    ($check:ident, memory: [$(#[$m:meta])*]) => {
        on_every_store!($check, memory: [$(#[$m])*], sqlite: [], redis: []);
    };
    ($check:ident, memory: [$(#[$m:meta])*], sqlite: [$(#[$s:meta])*], redis: [$(#[$r:meta])*]) => {
        mod $check {
            #[test]
            $(#[$m])*
            fn memory() {
                super::$check(&super::Fixture::memory(stringify!($check)));
            }

            #[cfg(feature = "sqlite")]
            #[test]
            $(#[$s])*
            fn sqlite() {
                super::$check(&super::Fixture::sqlite(stringify!($check)));
            }

            #[cfg(feature = "redis")]
            #[test]
            $(#[$r])*
            fn redis() {
                super::$check(&super::Fixture::redis(stringify!($check)));
            }
        }
    };
}

// ---- helpers -------------------------------------------------------------------------------

fn name(s: &str) -> Arc<str> {
    Arc::from(s)
}

/// A message whose payload is its id as a JSON string.
fn msg(topic: &str, id: &str, priority: i32) -> Message {
    Message::new(topic, id, format!("{id:?}").as_bytes(), None, priority)
}

fn msgs(topic: &str, ids: &[&str]) -> Vec<Message> {
    ids.iter().map(|id| msg(topic, id, 0)).collect()
}

/// The local groups of a publish, as the core's `Receivers`: some of them skipped (backpressure
/// `Drop`).
struct Groups<'a> {
    queues: Vec<&'a dyn GroupQueue>,
    skipped: Vec<usize>,
}

impl Fanout for Groups<'_> {
    fn len(&self) -> usize {
        self.queues.len()
    }
    fn receivers(&self) -> usize {
        self.queues.len() - self.skipped.len()
    }
    fn queue(&self, i: usize) -> &dyn GroupQueue {
        self.queues[i]
    }
    fn receiving(&self, i: usize) -> Option<&dyn GroupQueue> {
        (!self.skipped.contains(&i)).then_some(self.queues[i])
    }
}

/// Every group in `queues` gets the messages.
fn to<'a>(queues: &[&'a Arc<dyn GroupQueue>]) -> Groups<'a> {
    Groups { queues: queues.iter().map(|q| &***q).collect(), skipped: Vec::new() }
}

/// The topic has no local group.
fn nobody() -> Groups<'static> {
    Groups { queues: Vec::new(), skipped: Vec::new() }
}

/// A publish that the core made with the current list of groups (so never `GroupsChanged`).
fn publish(topic: &dyn TopicStore, messages: &[Message], groups: &Groups<'_>, retention: Retention) -> Result<Receipt> {
    match topic.publish(messages, groups, retention)? {
        Published::Done(receipt) => Ok(receipt),
        Published::GroupsChanged => panic!("GroupsChanged, though the caller's list of groups is current"),
    }
}

fn retained(held: u64, discarded: u64) -> Receipt {
    Receipt { no_group: true, held, discarded }
}

fn claim(q: &dyn GroupQueue, max: usize) -> Vec<Delivery> {
    let mut out = Vec::new();
    let n = q.claim(max, Lease::Renewed, &mut out).unwrap();
    assert_eq!(n, out.len(), "claim returned {n} but gave {} deliveries", out.len());
    out
}

fn claim_all(q: &dyn GroupQueue) -> Vec<Delivery> {
    claim(q, 1000)
}

fn ids(ds: &[Delivery]) -> Vec<&str> {
    ds.iter().map(|d| d.parent_id()).collect()
}

fn attempts(ds: &[Delivery]) -> Vec<u32> {
    ds.iter().map(|d| d.attempt()).collect()
}

fn count(store: &dyn Store, topics: &[&str]) -> u64 {
    store.count(Some(topics)).unwrap()
}

/// A due time for `Requeue::At` far enough ahead that no claim reaches it by accident.
const DELAY: Duration = Duration::from_millis(300);

// ---- checks --------------------------------------------------------------------------------

on_every_store!(claims_highest_priority_first_fifo_within_and_settle_removes);
on_every_store!(a_topic_without_a_group_retains_until_the_first_named_group_takes_over);
on_every_store!(requeue_now_goes_behind_its_priority_and_requeue_at_waits_until_due);
// Memory failed this before it put an unstarted delivery back at the front of its priority (it
// went to the back, behind newer ones).
on_every_store!(requeue_unstarted_gives_it_back_as_it_was);
on_every_store!(take_gets_then_finds_nothing_and_leaves_one_too_large);
on_every_store!(count_and_purge_over_topics);
on_every_store!(purge_group_discards_one_groups_ready_deliveries_only);
on_every_store!(remove_group_discards_what_waits_in_it);
on_every_store!(settling_twice_changes_nothing);
// Redis failed this before RedisQueue::settle settled only the attempt this broker holds: a
// late settle of attempt 1 made it forget attempt 2 (no longer renewed, its settle skipped, its
// requeue Gone), which then came back once its lease ran out although it was acked.
on_every_store!(a_settle_of_an_earlier_attempt_changes_nothing);
on_every_store!(
    a_requeue_of_a_settled_or_requeued_delivery_is_gone,
    memory: [#[ignore = "memory does not know which deliveries are claimed (MemoryQueue::requeue): a requeue \
                         of a settled or already requeued delivery puts it back Ready (attempt + 1), a duplicate, \
                         where SQLite and Redis say Gone"]]
);
on_every_store!(changes_by_another_store_show_after_refresh);
on_every_store!(peek_shows_what_claims_would_take_and_changes_nothing);

/// Publish to a topic with one group, then claim: highest priority first, FIFO within a
/// priority, each delivery once, with its own id. Settling removes them: a claim finds nothing,
/// `len` and `waiting` are 0, and (shared) a store opened after this one closed gets only the
/// one delivery left unsettled, which close gave back with attempt + 1. In process, settling is
/// free (a claim already took them out) and nothing outlives the store.
fn claims_highest_priority_first_fifo_within_and_settle_removes(f: &Fixture) {
    let s = &*f.store;
    let topic = s.topic(&name("orders")).unwrap();
    let opened = topic.open_group(Some("g")).unwrap();
    assert_eq!(opened.taken_over, 0);
    let q = &*opened.queue;
    let items = [("1", 0), ("2", 5), ("3", 0), ("4", -3), ("5", 5), ("6", 9)];
    let messages: Vec<_> = items.iter().map(|&(id, p)| msg("orders", id, p)).collect();
    let receipt = publish(&*topic, &messages, &to(&[&opened.queue]), Retention::Off).unwrap();
    assert_eq!(receipt, Receipt::default(), "a topic with a group retains nothing");
    assert_eq!(q.len(), 6);
    assert_eq!(q.waiting().unwrap(), f.waiting(6));
    assert_eq!(count(s, &["orders"]), 6);

    let first = claim(q, 4);
    assert_eq!(ids(&first), ["6", "2", "5", "1"]);
    assert_eq!(q.len(), 2);
    let rest = claim_all(q);
    assert_eq!(ids(&rest), ["3", "4"]);
    let all: Vec<Delivery> = first.into_iter().chain(rest).collect();
    assert_eq!(attempts(&all), [1; 6]);
    for d in &all {
        assert_eq!(
            (d.topic(), d.group(), d.payload()),
            ("orders", Some("g"), format!("{:?}", d.parent_id()).as_bytes())
        );
    }
    let mut delivery_ids: Vec<u64> = all.iter().map(|d| d.id()).collect();
    delivery_ids.sort_unstable();
    delivery_ids.dedup();
    assert_eq!(delivery_ids.len(), 6, "every delivery has an id of its own");
    assert_eq!((q.len(), q.waiting().unwrap(), count(s, &["orders"])), (0, 0, 0), "claimed ones are not waiting");

    // All settled but "4".
    let (settled, kept): (Vec<_>, Vec<_>) = all.into_iter().partition(|d| d.parent_id() != "4");
    q.settle(&settled).unwrap();
    assert!(claim_all(q).is_empty());
    assert_eq!((q.len(), q.waiting().unwrap(), count(s, &["orders"])), (0, 0, 0));
    assert_eq!(kept.len(), 1);
    if let Some(left) = f.left_after_close("orders", "g") {
        assert_eq!(left, [("4".to_owned(), 2)], "only the unsettled one comes back, attempt + 1");
    }
}

/// A topic with no group retains what is published as the retention says (a `Reject` that does
/// not fit fails with `Full` and keeps nothing); an anonymous group takes nothing over; the
/// first named group takes over what was retained, claimed in publish order; from then on
/// publishes go to the groups.
fn a_topic_without_a_group_retains_until_the_first_named_group_takes_over(f: &Fixture) {
    let s = &*f.store;
    let orders = s.topic(&name("orders")).unwrap();
    let r = publish(&*orders, &msgs("orders", &["a", "b"]), &nobody(), Retention::Reject(3)).unwrap();
    assert_eq!(r, retained(2, 0));
    let refused = publish(&*orders, &msgs("orders", &["c", "d"]), &nobody(), Retention::Reject(3)).unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::Full, "{refused:?}");
    assert_eq!(count(s, &["orders"]), 2, "a refused publish keeps nothing");
    let r = publish(&*orders, &msgs("orders", &["c"]), &nobody(), Retention::Reject(3)).unwrap();
    assert_eq!(r, retained(3, 0));

    let events = s.topic(&name("events")).unwrap();
    let r = publish(&*events, &msgs("events", &["e1", "e2", "e3"]), &nobody(), Retention::DropOldest(2)).unwrap();
    assert_eq!(r, retained(2, 1));
    let r = publish(&*events, &msgs("events", &["e4"]), &nobody(), Retention::DropOldest(2)).unwrap();
    assert_eq!(r, retained(2, 1));

    let audit = s.topic(&name("audit")).unwrap();
    let r = publish(&*audit, &msgs("audit", &["n1", "n2", "n3"]), &nobody(), Retention::DropNewest(2)).unwrap();
    assert_eq!(r, retained(2, 1));

    let void = s.topic(&name("void")).unwrap();
    let r = publish(&*void, &msgs("void", &["x"]), &nobody(), Retention::Off).unwrap();
    assert_eq!(r, retained(0, 0), "retention off: no group, nothing kept");
    assert_eq!(count(s, &["void"]), 0);
    assert_eq!(s.count(None).unwrap(), 3 + 2 + 2);

    let anonymous = orders.open_group(None).unwrap();
    assert_eq!((anonymous.taken_over, anonymous.queue.len()), (0, 0), "an anonymous group takes nothing over");
    let g = orders.open_group(Some("g")).unwrap();
    assert_eq!((g.taken_over, g.queue.len()), (3, 3));
    let h = orders.open_group(Some("h")).unwrap();
    assert_eq!((h.taken_over, h.queue.len()), (0, 0), "only the first named group takes over");
    let taken = claim_all(&*g.queue);
    assert_eq!((ids(&taken), attempts(&taken)), (vec!["a", "b", "c"], vec![1, 1, 1]));
    assert!(taken.iter().all(|d| d.group() == Some("g")));
    g.queue.settle(&taken).unwrap();

    let r =
        publish(&*orders, &msgs("orders", &["d"]), &to(&[&anonymous.queue, &g.queue, &h.queue]), Retention::Reject(3))
            .unwrap();
    assert_eq!(r, Receipt::default(), "a topic with groups retains nothing");
    for q in [&anonymous.queue, &g.queue, &h.queue] {
        assert_eq!(ids(&claim_all(&**q)), ["d"]);
    }

    let e = events.open_group(Some("g")).unwrap();
    assert_eq!(e.taken_over, 2);
    assert_eq!(ids(&claim_all(&*e.queue)), ["e3", "e4"]);
    let a = audit.open_group(Some("g")).unwrap();
    assert_eq!(a.taken_over, 2);
    assert_eq!(ids(&claim_all(&*a.queue)), ["n1", "n2"]);
    assert_eq!(s.count(None).unwrap(), 0);
}

/// `Requeue::Now` gives a delivery back at once, attempt + 1, behind the others of its
/// priority. `Requeue::At` keeps it aside (`Delayed`): no claim gets it before it is due; once
/// due, `release_due` (after `refresh` for a shared store, as the poller does) counts it ready
/// and a claim gets it, attempt + 1.
fn requeue_now_goes_behind_its_priority_and_requeue_at_waits_until_due(f: &Fixture) {
    let s = &*f.store;
    let topic = s.topic(&name("orders")).unwrap();
    let g = topic.open_group(Some("g")).unwrap();
    let q = &*g.queue;
    let messages = [msg("orders", "x", 5), msg("orders", "y", 5), msg("orders", "a", 0)];
    publish(&*topic, &messages, &to(&[&g.queue]), Retention::Off).unwrap();
    let x = claim(q, 1);
    assert_eq!(ids(&x), ["x"]);
    assert_eq!(q.requeue(&x[0], Requeue::Now).unwrap(), Requeued::Ready);
    assert_eq!(q.len(), 3);
    let all = claim_all(q);
    assert_eq!((ids(&all), attempts(&all)), (vec!["y", "x", "a"], vec![1, 2, 1]));

    let a = &all[2];
    let asked = Instant::now();
    let due = asked + DELAY;
    assert_eq!(q.requeue(a, Requeue::At(due)).unwrap(), Requeued::Delayed);
    q.settle(&all[..2]).unwrap();
    assert_eq!(q.len(), 0, "a delayed delivery is not ready");
    assert!(claim_all(q).is_empty(), "claimed before it was due");
    assert_eq!(q.release_due(), 0, "released before it was due");
    assert_eq!(q.waiting().unwrap(), f.waiting(1), "a delayed delivery waits (shared)");
    if f.shared() {
        let next = q.refresh().unwrap().expect("a shared store says when its delayed delivery comes due");
        assert!(next > asked && next <= due + Duration::from_secs(1), "due in {:?}", next - asked);
    }

    std::thread::sleep(due.saturating_duration_since(Instant::now()) + Duration::from_millis(100));
    if f.shared() {
        let next = q.refresh().unwrap().expect("still delayed until released or claimed");
        assert!(next <= Instant::now(), "not due yet by the store: {:?} ahead", next - Instant::now());
    }
    assert_eq!(q.release_due(), 1);
    assert_eq!(q.len(), 1);
    let back = claim_all(q);
    assert_eq!((ids(&back), attempts(&back)), (vec!["a"], vec![2]));
    q.settle(&back).unwrap();
    assert_eq!((q.len(), q.waiting().unwrap()), (0, 0));
    if f.shared() {
        assert_eq!(q.refresh().unwrap(), None, "nothing delayed or leased any more");
    }
}

/// `Requeue::Unstarted` (claimed, never handed out): back as it was, with the same attempt and
/// in its place, ahead of the ones published after it.
fn requeue_unstarted_gives_it_back_as_it_was(f: &Fixture) {
    let s = &*f.store;
    let topic = s.topic(&name("orders")).unwrap();
    let g = topic.open_group(Some("g")).unwrap();
    let q = &*g.queue;
    publish(&*topic, &msgs("orders", &["a", "b", "c"]), &to(&[&g.queue]), Retention::Off).unwrap();
    let a = claim(q, 1);
    assert_eq!(ids(&a), ["a"]);
    assert_eq!(q.requeue(&a[0], Requeue::Unstarted).unwrap(), Requeued::Ready);
    assert_eq!(q.len(), 3);
    let all = claim_all(q);
    assert_eq!((ids(&all), attempts(&all)), (vec!["a", "b", "c"], vec![1, 1, 1]));
    q.settle(&all).unwrap();
}

/// `take` gets the next ready delivery (highest priority first) and settles it; `Empty` when
/// none is ready. One over `max_payload` is `TooLarge(size)` and stays, ready, where it is.
fn take_gets_then_finds_nothing_and_leaves_one_too_large(f: &Fixture) {
    let s = &*f.store;
    let topic = s.topic(&name("orders")).unwrap();
    let g = topic.open_group(Some("g")).unwrap();
    let q = &*g.queue;
    let big = Message::new("orders", "big", format!("{:?}", "x".repeat(62)).as_bytes(), None, 9);
    assert_eq!(big.payload().len(), 64);
    publish(&*topic, &[msg("orders", "small", 0), big], &to(&[&g.queue]), Retention::Off).unwrap();

    assert!(matches!(q.take(10).unwrap(), Take::TooLarge(64)));
    assert_eq!((q.len(), count(s, &["orders"])), (2, 2), "a delivery too large stays");
    let Take::Got(d) = q.take(64).unwrap() else { panic!("take found nothing") };
    assert_eq!((d.parent_id(), d.attempt(), d.group()), ("big", 1, Some("g")));
    assert_eq!(q.len(), 1);
    let Take::Got(d) = q.take(64).unwrap() else { panic!("take found nothing") };
    assert_eq!(d.parent_id(), "small");
    assert!(matches!(q.take(64).unwrap(), Take::Empty));
    assert!(claim_all(q).is_empty());
    assert_eq!((q.len(), q.waiting().unwrap(), count(s, &["orders"])), (0, 0, 0));
    if let Some(left) = f.left_after_close("orders", "g") {
        assert_eq!(left, [], "a take settles what it takes: nothing comes back");
    }
}

/// `count` counts retained messages plus ready deliveries (one per group), not those claimed;
/// `purge` discards what `count` counts and says so per topic that had any; after it (and a
/// `refresh`, which the core calls after a purge) the groups are empty.
fn count_and_purge_over_topics(f: &Fixture) {
    let s = &*f.store;
    let orders = s.topic(&name("orders")).unwrap();
    let g = orders.open_group(Some("g")).unwrap();
    let anonymous = orders.open_group(None).unwrap();
    publish(&*orders, &msgs("orders", &["1", "2", "3"]), &to(&[&g.queue, &anonymous.queue]), Retention::Off).unwrap();
    let held = claim(&*g.queue, 1);
    let audit = s.topic(&name("audit")).unwrap();
    publish(&*audit, &msgs("audit", &["a", "b"]), &nobody(), Retention::DropOldest(10)).unwrap();

    assert_eq!(count(s, &["orders"]), 2 + 3);
    assert_eq!(count(s, &["audit"]), 2);
    assert_eq!(count(s, &["orders", "audit"]), 7);
    assert_eq!(s.count(None).unwrap(), 7);
    assert_eq!(count(s, &["nothing"]), 0, "a topic nobody used");

    assert_eq!(s.purge(Some(&["audit"])).unwrap(), [Purged { topic: "audit".into(), deliveries: 0, retained: 2 }]);
    assert_eq!(count(s, &["audit"]), 0);
    assert_eq!(s.purge(Some(&["nothing"])).unwrap(), [], "only topics that had any");
    assert_eq!(s.purge(None).unwrap(), [Purged { topic: "orders".into(), deliveries: 5, retained: 0 }]);
    for q in [&g.queue, &anonymous.queue] {
        if f.shared() {
            q.refresh().unwrap();
        }
        assert_eq!((q.len(), q.waiting().unwrap()), (0, 0));
        assert!(claim_all(&**q).is_empty());
    }
    assert_eq!(s.count(None).unwrap(), 0);
    assert_eq!(s.purge(None).unwrap(), []);

    // The claimed one was left alone.
    assert_eq!(ids(&held), ["1"]);
    assert_eq!(g.queue.requeue(&held[0], Requeue::Now).unwrap(), Requeued::Ready);
    assert_eq!(count(s, &["orders"]), 1);
    let back = claim_all(&*g.queue);
    assert_eq!((ids(&back), attempts(&back)), (vec!["1"], vec![2]));
    g.queue.settle(&back).unwrap();
}

/// `purge_group` discards the ready deliveries of one named group, in every priority and the
/// ones given back (unstarted, and requeued now), and counts them as `count_group` did; the
/// claimed one, a delayed requeue (where the store delays), the other group and the topic's
/// registration stay, and the group gets what is published next. A group or topic that does
/// not exist counts and purges 0.
fn purge_group_discards_one_groups_ready_deliveries_only(f: &Fixture) {
    let s = &*f.store;
    let jobs = s.topic(&name("jobs")).unwrap();
    let g = jobs.open_group(Some("g")).unwrap();
    let h = jobs.open_group(Some("h")).unwrap();
    let mut batch = msgs("jobs", &["1", "2", "3", "4"]);
    batch.push(msg("jobs", "hi", 5));
    publish(&*jobs, &batch, &to(&[&g.queue, &h.queue]), Retention::Off).unwrap();
    let taken = claim(&*g.queue, 4); // hi, 1, 2, 3
    assert_eq!(ids(&taken), ["hi", "1", "2", "3"]);
    assert_eq!(g.queue.requeue(&taken[1], Requeue::Unstarted).unwrap(), Requeued::Ready);
    assert_eq!(g.queue.requeue(&taken[2], Requeue::Now).unwrap(), Requeued::Ready);
    let delays = s.capabilities().delayed_requeue;
    if delays {
        let later = Instant::now() + Duration::from_secs(3600);
        assert_eq!(g.queue.requeue(&taken[3], Requeue::At(later)).unwrap(), Requeued::Delayed);
    }
    // Ready in g: 1 (unstarted), 2 (requeued), 4; "hi" is claimed, 3 delayed (or still claimed).
    assert_eq!(s.count_group("jobs", "g").unwrap(), 3);
    assert_eq!(s.count_group("jobs", "h").unwrap(), 5);
    assert_eq!(s.count_group("jobs", "nobody").unwrap(), 0);
    assert_eq!(s.count_group("nothing", "g").unwrap(), 0);
    assert_eq!(s.purge_group("jobs", "nobody").unwrap(), 0);
    assert_eq!(s.purge_group("nothing", "g").unwrap(), 0);

    assert_eq!(s.purge_group("jobs", "g").unwrap(), 3);
    if f.shared() {
        g.queue.refresh().unwrap();
    }
    assert_eq!((s.count_group("jobs", "g").unwrap(), g.queue.len()), (0, 0));
    assert!(claim_all(&*g.queue).is_empty());
    assert_eq!(s.count_group("jobs", "h").unwrap(), 5, "the other group keeps its own");
    assert_eq!(s.purge_group("jobs", "g").unwrap(), 0);
    let depth = s.view().unwrap().into_iter().find(|t| t.name == "jobs").unwrap();
    assert_eq!(depth.groups.len(), 2, "no group made or removed");

    // The claimed one settles; the group stays and gets what comes next.
    g.queue.settle(&taken[..1]).unwrap();
    publish(&*jobs, &msgs("jobs", &["5"]), &to(&[&g.queue, &h.queue]), Retention::Off).unwrap();
    assert_eq!(s.count_group("jobs", "g").unwrap(), 1);
    let next = claim_all(&*g.queue);
    assert_eq!(ids(&next), ["5"]);
    g.queue.settle(&next).unwrap();
    if !delays {
        g.queue.settle(&taken[3..]).unwrap();
    }
}

/// `remove_group` removes an anonymous group with every delivery of it and returns how many
/// waited (ready or delayed; not the one claimed); the other groups keep theirs; a requeue of
/// a delivery claimed from it finds it `Gone`, a settle changes nothing.
fn remove_group_discards_what_waits_in_it(f: &Fixture) {
    let s = &*f.store;
    let topic = s.topic(&name("orders")).unwrap();
    let g = topic.open_group(Some("g")).unwrap();
    let a = topic.open_group(None).unwrap();
    let b = topic.open_group(None).unwrap();
    let all = to(&[&g.queue, &a.queue, &b.queue]);
    publish(&*topic, &msgs("orders", &["1", "2", "3"]), &all, Retention::Off).unwrap();
    let claimed = claim(&*a.queue, 2);
    assert_eq!(ids(&claimed), ["1", "2"]);
    let far = Instant::now() + Duration::from_secs(3600);
    assert_eq!(a.queue.requeue(&claimed[1], Requeue::At(far)).unwrap(), Requeued::Delayed);

    assert_eq!(topic.remove_group(&*a.queue).unwrap(), 2, "one ready, one delayed");
    assert_eq!(count(s, &["orders"]), 3 + 3);
    assert_eq!(a.queue.requeue(&claimed[0], Requeue::Now).unwrap(), Requeued::Gone);
    a.queue.settle(&claimed[..1]).unwrap();
    assert_eq!(count(s, &["orders"]), 6);

    let r = publish(&*topic, &msgs("orders", &["4"]), &to(&[&g.queue, &b.queue]), Retention::Off).unwrap();
    assert_eq!(r, Receipt::default());
    assert_eq!(topic.remove_group(&*b.queue).unwrap(), 4);
    assert_eq!(count(s, &["orders"]), 4);
    let rest = claim_all(&*g.queue);
    assert_eq!(ids(&rest), ["1", "2", "3", "4"]);
    g.queue.settle(&rest).unwrap();
}

/// Settling a delivery again changes nothing and is no error. Memory documents settling as
/// free (a claim took the delivery out already); a shared store deletes only what this broker
/// holds at the attempt quoted (`GroupQueue::settle` quotes key and attempt): both return
/// `Ok(())`, and (shared) nothing settled comes back after close.
fn settling_twice_changes_nothing(f: &Fixture) {
    let s = &*f.store;
    let topic = s.topic(&name("orders")).unwrap();
    let g = topic.open_group(Some("g")).unwrap();
    let q = &*g.queue;
    publish(&*topic, &msgs("orders", &["a", "b"]), &to(&[&g.queue]), Retention::Off).unwrap();
    let first = claim_all(q);
    assert_eq!(ids(&first), ["a", "b"]);
    q.settle(&first[..1]).unwrap();
    q.settle(&first[..1]).unwrap();
    assert!(claim_all(q).is_empty());
    q.settle(&first).unwrap();
    q.settle(&first).unwrap();
    assert!(claim_all(q).is_empty());
    assert_eq!((q.len(), q.waiting().unwrap(), count(s, &["orders"])), (0, 0, 0));
    if let Some(left) = f.left_after_close("orders", "g") {
        assert_eq!(left, [], "nothing settled comes back");
    }
}

/// A late settle of an earlier attempt (its copy quotes the old attempt: "a late settle after a
/// lost lease changes nothing", store/mod.rs) leaves the current attempt, which this broker
/// holds again, as it is: still held (a requeue of it is `Ready`), and settled by its own
/// settle. In process, settling is free and this holds trivially.
fn a_settle_of_an_earlier_attempt_changes_nothing(f: &Fixture) {
    let s = &*f.store;
    let topic = s.topic(&name("orders")).unwrap();
    let g = topic.open_group(Some("g")).unwrap();
    let q = &*g.queue;
    publish(&*topic, &msgs("orders", &["b"]), &to(&[&g.queue]), Retention::Off).unwrap();
    let first = claim_all(q);
    assert_eq!(q.requeue(&first[0], Requeue::Now).unwrap(), Requeued::Ready);
    let again = claim_all(q);
    assert_eq!((ids(&again), attempts(&again)), (vec!["b"], vec![2]));
    // The first attempt's copy: it must not settle the second attempt, which is held.
    q.settle(&first).unwrap();
    assert_eq!(q.requeue(&again[0], Requeue::Now).unwrap(), Requeued::Ready, "the stale settle took it");
    let third = claim_all(q);
    assert_eq!((ids(&third), attempts(&third)), (vec!["b"], vec![3]));
    q.settle(&again).unwrap();
    q.settle(&third).unwrap();
    assert!(claim_all(q).is_empty());
    assert_eq!((q.len(), q.waiting().unwrap(), count(s, &["orders"])), (0, 0, 0));
    if let Some(left) = f.left_after_close("orders", "g") {
        assert_eq!(left, [], "nothing settled comes back");
    }
}

/// A requeue of a delivery this group no longer has given out (settled, or already requeued)
/// is `Gone` and changes nothing: no duplicate.
fn a_requeue_of_a_settled_or_requeued_delivery_is_gone(f: &Fixture) {
    let s = &*f.store;
    let topic = s.topic(&name("orders")).unwrap();
    let g = topic.open_group(Some("g")).unwrap();
    let q = &*g.queue;
    publish(&*topic, &msgs("orders", &["a", "b"]), &to(&[&g.queue]), Retention::Off).unwrap();
    let first = claim_all(q);
    let (a, b) = (&first[0], &first[1]);
    q.settle(std::slice::from_ref(a)).unwrap();
    let soon = Instant::now() + Duration::from_millis(1);
    for how in [Requeue::Now, Requeue::At(soon), Requeue::Unstarted] {
        assert_eq!(q.requeue(a, how).unwrap(), Requeued::Gone, "{how:?} of a settled delivery");
    }
    assert_eq!(q.requeue(b, Requeue::Now).unwrap(), Requeued::Ready);
    assert_eq!(q.requeue(b, Requeue::Now).unwrap(), Requeued::Gone, "a second requeue of one attempt");
    std::thread::sleep(Duration::from_millis(20));
    if f.shared() {
        q.refresh().unwrap();
    }
    q.release_due();
    let back = claim_all(q);
    assert_eq!((ids(&back), attempts(&back)), (vec!["b"], vec![2]), "one delivery of b, nothing of a");
    q.settle(&back).unwrap();
}

/// What another process does to a shared store shows here once the core looks: `changed` says
/// so, and `refresh` re-reads `len` (which reads no I/O: until then it is the last figure seen);
/// `waiting` and `backlog(ZERO)` read the store. In process, nothing outside the store changes
/// it: no `watch`, `changed` is false, `refresh` is `None` and `len` is exact.
fn changes_by_another_store_show_after_refresh(f: &Fixture) {
    let s = &*f.store;
    let topic = s.topic(&name("orders")).unwrap();
    let g = topic.open_group(Some("g")).unwrap();
    let q = &*g.queue;
    let Some(other) = f.another() else {
        assert!(s.watch().is_none());
        assert!(!s.changed().unwrap());
        publish(&*topic, &msgs("orders", &["1", "2"]), &to(&[&g.queue]), Retention::Off).unwrap();
        assert_eq!((q.len(), q.backlog(Duration::ZERO).unwrap(), q.refresh().unwrap()), (2, 2, None));
        assert!(!s.changed().unwrap());
        assert_eq!(ids(&claim_all(q)), ["1", "2"]);
        return;
    };
    assert!(s.watch().is_some(), "a shared store is watched");
    let there = other.topic(&name("orders")).unwrap();
    let g2 = there.open_group(Some("g")).unwrap();
    assert_eq!(g2.taken_over, 0);
    // What was changed before this point (this store's own writes, the other's open) is seen.
    let deadline = Instant::now() + Duration::from_secs(5);
    while s.changed().unwrap() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(q.len(), 0);
    publish(&*there, &msgs("orders", &["1", "2"]), &to(&[&g2.queue]), Retention::Off).unwrap();
    assert_eq!(q.len(), 0, "len reads no I/O: the last figure seen");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !s.changed().unwrap() {
        assert!(Instant::now() < deadline, "the other store's publish never showed as a change");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(q.refresh().unwrap(), None, "nothing delayed or leased");
    assert_eq!((q.len(), q.waiting().unwrap(), q.backlog(Duration::ZERO).unwrap()), (2, 2, 2));
    assert_eq!(count(s, &["orders"]), 2);
    let got = claim_all(q);
    assert_eq!(ids(&got), ["1", "2"]);
    q.settle(&got).unwrap();
    g2.queue.refresh().unwrap();
    assert_eq!((g2.queue.len(), g2.queue.waiting().unwrap()), (0, 0));
    other.close().unwrap();
}

/// `Store::peek`: the deliveries a claim would take, in its order (a requeue behind its
/// priority, a due delay at the back of its priority), without leased ones or delays not yet
/// due, changing nothing; a group or topic that does not exist shows nothing and is not made.
fn peek_shows_what_claims_would_take_and_changes_nothing(f: &Fixture) {
    let s = &*f.store;
    let peeked = |group: &str| -> Vec<(String, u32)> {
        s.peek("orders", group, 10).unwrap().iter().map(|p| (p.message().id().to_owned(), p.attempt())).collect()
    };
    let owned = |v: &[(&str, u32)]| v.iter().map(|&(id, a)| (id.to_owned(), a)).collect::<Vec<_>>();
    assert!(peeked("g").is_empty(), "no topic");
    let topic = s.topic(&name("orders")).unwrap();
    let g = topic.open_group(Some("g")).unwrap();
    let q = &*g.queue;
    let messages = [msg("orders", "x", 5), msg("orders", "y", 5), msg("orders", "a", 0), msg("orders", "b", 0)];
    publish(&*topic, &messages, &to(&[&g.queue]), Retention::Off).unwrap();
    assert_eq!(peeked("g"), owned(&[("x", 1), ("y", 1), ("a", 1), ("b", 1)]));
    assert_eq!(s.peek("orders", "g", 1).unwrap().len(), 1);
    assert!(peeked("missing").is_empty());
    assert_eq!((q.len(), count(s, &["orders"])), (4, 4), "peek changed nothing");

    let x = claim(q, 1);
    assert_eq!(peeked("g"), owned(&[("y", 1), ("a", 1), ("b", 1)]), "a leased one is not shown");
    assert_eq!(q.requeue(&x[0], Requeue::Now).unwrap(), Requeued::Ready);
    assert_eq!(peeked("g"), owned(&[("y", 1), ("x", 2), ("a", 1), ("b", 1)]));

    let all = claim_all(q);
    assert_eq!(ids(&all), ["y", "x", "a", "b"], "claims take what peek showed");
    assert_eq!(q.requeue(&all[2], Requeue::At(Instant::now() + DELAY)).unwrap(), Requeued::Delayed);
    q.settle(&[all[0].clone(), all[1].clone(), all[3].clone()]).unwrap();
    assert!(peeked("g").is_empty(), "a delay not yet due is not shown");
    std::thread::sleep(DELAY + Duration::from_millis(100));
    assert_eq!(peeked("g"), owned(&[("a", 2)]), "a delay that ran out is");
    q.release_due();
    let back = claim_all(q);
    assert_eq!((ids(&back), attempts(&back)), (vec!["a"], vec![2]));
    q.settle(&back).unwrap();

    // The group peek did not find was not made: a publish to every group reaches only "g".
    publish(&*topic, &msgs("orders", &["z"]), &to(&[&g.queue]), Retention::Off).unwrap();
    assert_eq!(count(s, &["orders"]), 1);
    assert!(peeked("missing").is_empty());
    assert_eq!(peeked("g"), owned(&[("z", 1)]));
}
