//! What the integration tests share: a kit that makes brokers on one backend, so that the same
//! test runs on memory, on SQLite (a temporary folder per test, removed afterwards) and on Redis
//! (a server per test binary, each test under key prefixes of its own).
#![allow(dead_code)]

pub mod logs;
pub mod redis_server;
pub mod shared_store;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

#[cfg(any(feature = "sqlite", feature = "redis"))]
use brokk_core::Backend;
#[cfg(feature = "redis")]
use brokk_core::RedisConfig;
#[cfg(feature = "sqlite")]
use brokk_core::SqliteConfig;
use brokk_core::{Broker, BrokerConfig};

pub struct Kit {
    /// None: memory or Redis. Some: the folder that holds this test's SQLite files.
    dir: Option<PathBuf>,
    /// Some: Redis, with this test's prefix (each broker adds its number to it).
    redis: Option<String>,
    next: AtomicU32,
}

impl Kit {
    pub fn memory() -> Kit {
        Kit { dir: None, redis: None, next: AtomicU32::new(0) }
    }

    /// A kit whose brokers each get a namespace (key prefix) of their own on the test binary's
    /// Redis server; `name` makes it recognisable.
    pub fn redis(name: &str) -> Kit {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let short: String = name.chars().take(32).collect();
        let prefix = format!("t{}.{n}.{short}", std::process::id());
        Kit { dir: None, redis: Some(prefix), next: AtomicU32::new(0) }
    }

    /// The Redis key prefix of this kit's broker number `n` (the first one is 0).
    pub fn redis_prefix(&self, n: u32) -> Option<String> {
        self.redis.as_ref().map(|p| format!("{p}.b{n}"))
    }

    /// The port of the Redis server of this kit.
    pub fn redis_port(&self) -> u16 {
        redis_server::shared().port
    }

    /// A kit whose brokers each get a new SQLite file in a folder of their own, under the
    /// system temp dir; `name` makes it recognisable.
    pub fn sqlite(name: &str) -> Kit {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("brokk-test-{}-{n}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Kit { dir: Some(dir), redis: None, next: AtomicU32::new(0) }
    }

    /// Whether what waits survives the broker (SQLite, Redis): close keeps named groups'
    /// deliveries and retained messages in the store instead of dropping them.
    pub fn durable(&self) -> bool {
        self.dir.is_some() || self.redis.is_some()
    }

    pub fn is_sqlite(&self) -> bool {
        self.dir.is_some()
    }

    pub fn dir(&self) -> &Path {
        self.dir.as_deref().expect("a SQLite kit")
    }

    /// `config` on this kit's backend: for SQLite, a new file. (A kit of a backend this build
    /// leaves out, by its cargo feature, cannot make brokers.)
    pub fn config(&self, config: BrokerConfig) -> BrokerConfig {
        if self.redis.is_some() {
            #[cfg(feature = "redis")]
            {
                let n = self.next.fetch_add(1, Ordering::Relaxed);
                let mut redis = RedisConfig::new("127.0.0.1", self.redis_port());
                redis.prefix = self.redis_prefix(n).unwrap();
                return BrokerConfig { backend: Backend::Redis(redis), ..config };
            }
            #[cfg(not(feature = "redis"))]
            panic!("a Redis kit in a build without the redis feature");
        }
        match &self.dir {
            None => config,
            #[cfg(feature = "sqlite")]
            Some(dir) => {
                let n = self.next.fetch_add(1, Ordering::Relaxed);
                BrokerConfig { backend: Backend::Sqlite(SqliteConfig::new(dir.join(format!("b{n}.db")))), ..config }
            }
            #[cfg(not(feature = "sqlite"))]
            Some(_) => panic!("a SQLite kit in a build without the sqlite feature"),
        }
    }

    pub fn with(&self, config: BrokerConfig) -> Broker {
        Broker::with_config(&self.config(config)).unwrap()
    }

    pub fn broker(&self, workers: usize) -> Broker {
        self.with(BrokerConfig { worker_threads: workers, ..Default::default() })
    }
}

impl Drop for Kit {
    fn drop(&mut self) {
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Generates, for each test function `name(&Kit)`, a `memory::name`, a `sqlite::name` and a
/// `redis::name` test (those of the backends this build has, by their cargo features).
#[macro_export]
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(#[test] fn $name() { super::$name(&super::common::Kit::memory()) })*
        }
        #[cfg(feature = "sqlite")]
        mod sqlite {
            $(#[test] fn $name() { super::$name(&super::common::Kit::sqlite(stringify!($name))) })*
        }
        #[cfg(feature = "redis")]
        mod redis {
            $(#[test] fn $name() { super::$name(&super::common::Kit::redis(stringify!($name))) })*
        }
    };
}

/// For shared stores: `a` and `b` are two brokers on one store (opened with a lease long enough
/// that no heartbeat comes during the test). A delivery that `a` requeued with a delay comes
/// due while nobody in `b` watches its group (though `b`'s poller runs, for a subscription of
/// its own, and sees `a`'s writes go by); `b` then subscribes to that group and must get it
/// from its poller's next look, not from whatever change or heartbeat comes next.
pub fn a_delay_that_ran_out_unwatched_reaches_a_new_subscriber(a: &Broker, b: &Broker) {
    use brokk_core::{Delivery, PublishOptions, SubscribeOptions, Verdict};
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    b.subscribe("elsewhere", |_: &Delivery| Verdict::Ack, &SubscribeOptions::default()).unwrap();
    assert!(a.fetch("late", Some("w"), Some(Duration::ZERO)).unwrap().is_none()); // makes the group
    a.publish("late", b"\"again\"", &PublishOptions::default()).unwrap();
    let d = a.fetch("late", Some("w"), Some(Duration::ZERO)).unwrap().expect("the delivery");
    a.nack(d.id(), true, Some(Duration::from_millis(200)), None).unwrap();
    std::thread::sleep(Duration::from_millis(600));
    let (tx, rx) = mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let started = Instant::now();
    let handler = move |d: &Delivery| {
        let _ = tx.lock().unwrap().send(d.attempt());
        Verdict::Ack
    };
    b.subscribe("late", handler, &SubscribeOptions { group: Some("w"), ..Default::default() }).unwrap();
    // The poller looks every few milliseconds; the next heartbeat is 20 s away.
    let attempt = rx.recv_timeout(Duration::from_secs(10)).expect("the delayed delivery reached the new subscriber");
    assert_eq!(attempt, 2);
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// For shared stores: `a` and `b` are two brokers on one store, taking from one group at once.
/// Each message published is taken by exactly one of them, and neither holds anything after.
pub fn two_brokers_taking_from_one_group_get_each_message_once(a: &Broker, b: &Broker) {
    use brokk_core::{BatchMessage, Taken};
    use std::time::Duration;

    const N: usize = 300;
    assert!(matches!(a.take("jobs", Some("w"), Some(Duration::ZERO), 64).unwrap(), Taken::Empty));
    let payloads: Vec<String> = (0..N).map(|i| i.to_string()).collect();
    let batch: Vec<BatchMessage> =
        payloads.iter().map(|p| BatchMessage { payload: p.as_bytes(), ..Default::default() }).collect();
    b.publish_batch("jobs", &batch).unwrap();
    let takers: Vec<_> = [a.clone(), b.clone(), a.clone(), b.clone()]
        .into_iter()
        .map(|broker| {
            std::thread::spawn(move || {
                let mut mine = Vec::new();
                while let Taken::Message(d) = broker.take("jobs", Some("w"), Some(Duration::ZERO), 64).unwrap() {
                    mine.push(std::str::from_utf8(d.payload()).unwrap().parse::<usize>().unwrap());
                }
                mine
            })
        })
        .collect();
    let mut all: Vec<usize> = takers.into_iter().flat_map(|t| t.join().unwrap()).collect();
    all.sort_unstable();
    assert_eq!(all, (0..N).collect::<Vec<_>>(), "each message taken once, by one broker");
    assert_eq!(a.count(Some(&["jobs"])).unwrap(), 0);
    a.join(Some(Duration::ZERO)).expect("nothing held in a");
    b.join(Some(Duration::ZERO)).expect("nothing held in b");
}

/// For shared stores: `b`, which never used the topic, counts and purges one group of what
/// `a` published, in several priorities; `a`'s delivery in flight settles, its other group and
/// the retained messages of another topic stay, and the group gets (by priority) what `a`
/// publishes next; a join in `a` completes once `b` purged the other group too.
pub fn another_broker_purges_one_group(a: &Broker, b: &Broker) {
    use brokk_core::PublishOptions;
    use std::time::Duration;

    let at = |priority| PublishOptions { priority, ..Default::default() };
    a.publish("kept", b"\"r\"", &PublishOptions::default()).unwrap();
    for g in ["w", "v"] {
        assert!(a.fetch("pg", Some(g), Some(Duration::ZERO)).unwrap().is_none());
        // makes the group
    }
    for (payload, priority) in [("\"p0\"", 0), ("\"p5\"", 5), ("\"p9\"", 9), ("\"q0\"", 0)] {
        a.publish("pg", payload.as_bytes(), &at(priority)).unwrap();
    }
    let held = a.fetch("pg", Some("w"), Some(Duration::ZERO)).unwrap().expect("a delivery");
    assert_eq!(held.payload(), b"\"p9\"");
    assert_eq!(b.count_group("pg", "w").unwrap(), 3);
    assert_eq!(b.purge_group("pg", "w").unwrap(), 3);
    assert_eq!(a.count_group("pg", "w").unwrap(), 0);
    assert_eq!(a.count_group("pg", "v").unwrap(), 4);
    assert_eq!(a.count(Some(&["kept"])).unwrap(), 1);
    a.ack(held.id()).unwrap();
    for (payload, priority) in [("\"n0\"", 0), ("\"n5\"", 5)] {
        a.publish("pg", payload.as_bytes(), &at(priority)).unwrap();
    }
    assert_eq!(b.count_group("pg", "w").unwrap(), 2);
    for want in ["\"n5\"", "\"n0\""] {
        let d = a.fetch("pg", Some("w"), Some(Duration::ZERO)).unwrap().expect("a delivery");
        assert_eq!(d.payload(), want.as_bytes());
        a.ack(d.id()).unwrap();
    }
    assert!(a.fetch("pg", Some("w"), Some(Duration::ZERO)).unwrap().is_none());
    // Join in `a` waits for what waits in the store; purged in `b`, it no longer does.
    assert_eq!(a.count_group("pg", "v").unwrap(), 6);
    assert_eq!(b.purge_group("pg", "v").unwrap(), 6);
    a.join(Some(Duration::from_secs(30))).unwrap();
}

/// For shared stores: `a` and `b` are two brokers on one store. `b` peeks at a named group that
/// only `a` uses (`b` never named the topic): it sees what waits there, in fetch order, without
/// what `a` holds, and creates nothing, in the store (a group peek did not find gets no
/// delivery of later messages) or in `b` (no topic).
pub fn peek_sees_a_group_another_broker_uses(a: &Broker, b: &Broker) {
    use brokk_core::PublishOptions;
    use std::time::Duration;

    assert!(a.fetch("seen", Some("w"), Some(Duration::ZERO)).unwrap().is_none()); // makes the group
    for (id, priority) in [("low", 0), ("high", 7), ("mid", 0)] {
        a.publish("seen", b"1", &PublishOptions { id: Some(id), priority, ..Default::default() }).unwrap();
    }
    let held = a.fetch("seen", Some("w"), Some(Duration::ZERO)).unwrap().expect("a delivery");
    assert_eq!(held.parent_id(), "high");
    let shown: Vec<(String, u32)> =
        b.peek("seen", Some("w"), 10).unwrap().iter().map(|p| (p.message().id().to_owned(), p.attempt())).collect();
    assert_eq!(shown, [("low".to_owned(), 1), ("mid".to_owned(), 1)], "what waits, without what a holds");
    assert!(b.peek("seen", Some("nobody"), 10).unwrap().is_empty());
    assert!(b.stats().unwrap().topics.is_empty(), "b made no topic");
    a.publish("seen", b"2", &PublishOptions::default()).unwrap();
    assert_eq!(a.count(Some(&["seen"])).unwrap(), 3, "one group only: peek made none");
    assert!(b.peek("seen", Some("nobody"), 10).unwrap().is_empty());
    a.ack(held.id()).unwrap();
    a.purge(None).unwrap();
}

/// `b` (another process, in effect) sees in its store view the topics and groups `a` made and
/// holds: a named group with a delivery `a` holds, `a`'s ungrouped subscription (an anonymous
/// group), and a topic that retains; and looking creates nothing in either broker.
pub fn the_store_view_shows_what_another_broker_made(a: &Broker, b: &Broker) {
    use brokk_core::{Delivery, Depth, PublishOptions, SubscribeOptions, Verdict};
    use std::time::Duration;

    assert!(a.fetch("made", Some("w"), Some(Duration::ZERO)).unwrap().is_none()); // makes the group
    let sub = a.subscribe("made", |_: &Delivery| Verdict::Ack, &SubscribeOptions::default()).unwrap();
    for _ in 0..3 {
        a.publish("made", b"1", &PublishOptions::default()).unwrap();
    }
    a.publish("parked", b"1", &PublishOptions::default()).unwrap();
    let held = a.fetch("made", Some("w"), Some(Duration::from_secs(30))).unwrap().expect("a delivery");
    // Until the subscription has handled its three copies (bounded; not a speed assertion).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let view = loop {
        let view = b.store_view().unwrap();
        let t = view.topic("made").expect("a's topic");
        if t.anonymous == Depth::default() || std::time::Instant::now() > deadline {
            break view;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let made = view.topic("made").expect("a's topic");
    assert_eq!(made.groups.len(), 1, "{view:?}");
    assert_eq!(
        (made.groups[0].name.as_str(), made.groups[0].depth),
        ("w", Depth { ready: 2, delayed: 0, in_flight: 1 })
    );
    assert_eq!((made.anonymous_groups, made.anonymous), (1, Depth::default()), "{view:?}");
    assert_eq!(view.topic("parked").map(|t| (t.retained, t.groups.len())), Some((1, 0)));
    assert!(b.stats().unwrap().topics.is_empty(), "b made no topic of its own");
    assert_eq!(a.count(Some(&["parked"])).unwrap(), 1, "still retained: no group was made");
    a.ack(held.id()).unwrap();
    a.unsubscribe(sub).unwrap();
    a.purge(None).unwrap();
}
