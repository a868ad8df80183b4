//! The core's semantics, through the safe Rust API, on every backend: each test is a function
//! of a `Kit` that makes its brokers, run once on memory and once on SQLite (see the list at the
//! end). Where SQLite's semantics differ on purpose (durable: close keeps what waits in named
//! groups and what topics retain), the test says so where it checks. Every wait is bounded;
//! nothing asserts on timing.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use brokk_core::log::Level;
use brokk_core::{
    Backpressure, BatchMessage, Broker, BrokerConfig, Cancel, Delivery, Depth, ErrorKind, FetchOptions, GroupView,
    Listener, PublishOptions, RetentionPolicy, SubscribeOptions, Taken, Verdict,
};
use common::logs::Logs;
use common::Kit;

const LONG: Duration = Duration::from_secs(30);

fn publish(b: &Broker, topic: &str, payload: &str) -> String {
    b.publish(topic, payload.as_bytes(), &PublishOptions::default()).unwrap().id().to_owned()
}

fn auto() -> SubscribeOptions<'static> {
    SubscribeOptions::default()
}

fn manual() -> SubscribeOptions<'static> {
    SubscribeOptions { manual_ack: true, ..Default::default() }
}

fn eventually(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + LONG;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Counts how often it is dropped: stands in for a host's user_data finaliser.
struct DropCount(Arc<AtomicUsize>);
impl Drop for DropCount {
    fn drop(&mut self) {
        self.0.fetch_add(1, SeqCst);
    }
}

#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<String>>,
}
#[derive(Clone, Default)]
struct Rec(Arc<Recorder>);
impl std::ops::Deref for Rec {
    type Target = Recorder;
    fn deref(&self) -> &Recorder {
        &self.0
    }
}
impl Listener for Rec {
    fn on_publish(&self, m: &brokk_core::Delivery) {
        self.events.lock().unwrap().push(format!("publish {} {}", m.topic(), m.parent_id()));
    }
    fn on_dispatched(&self, d: &Delivery) {
        self.events.lock().unwrap().push(format!("dispatched {} {}", d.id(), d.attempt()));
    }
    fn on_processed(&self, d: &Delivery) {
        self.events.lock().unwrap().push(format!("processed {}", d.id()));
    }
    fn on_failed(&self, d: &Delivery, reason: &str, requeued: bool) {
        self.events.lock().unwrap().push(format!("failed {} {requeued} {reason}", d.id()));
    }
    fn on_subscribe(&self, topic: &str, id: u64) {
        self.events.lock().unwrap().push(format!("subscribe {topic} {id}"));
    }
    fn on_unsubscribe(&self, topic: &str, id: u64) {
        self.events.lock().unwrap().push(format!("unsubscribe {topic} {id}"));
    }
    fn on_topic_created(&self, topic: &str) {
        self.events.lock().unwrap().push(format!("topic {topic}"));
    }
}

fn fan_out_gives_each_subscription_its_own_delivery_of_shared_bytes(k: &Kit) {
    let b = k.broker(2);
    let seen = Arc::new(Mutex::new(Vec::new()));
    for _ in 0..3 {
        let seen = seen.clone();
        b.subscribe(
            "orders",
            move |d: &Delivery| {
                seen.lock().unwrap().push((
                    d.id(),
                    d.subscription(),
                    d.parent_id().to_owned(),
                    d.payload().as_ptr() as usize,
                    d.attempt(),
                ));
                Verdict::Ack
            },
            &auto(),
        )
        .unwrap();
    }
    let md = br#"{"trace":"abc"}"#;
    let id = b
        .publish(
            "orders",
            br#"{"n":1}"#,
            &PublishOptions { id: Some("order-1"), metadata: Some(md), ..Default::default() },
        )
        .unwrap()
        .id()
        .to_owned();
    assert_eq!(id, "order-1");
    b.join(Some(LONG)).unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 3);
    let mut ids: Vec<_> = seen.iter().map(|s| s.0).collect();
    ids.dedup();
    assert_eq!(ids.len(), 3, "each copy has its own delivery id");
    let mut subs: Vec<_> = seen.iter().map(|s| s.1).collect();
    subs.sort();
    subs.dedup();
    assert_eq!(subs.len(), 3);
    assert!(seen.iter().all(|s| s.2 == "order-1" && s.4 == 1));
    // In memory every copy shares one buffer. A SQLite store keeps one body per message too,
    // but each group reads its delivery back from the file into a buffer of its own.
    if !k.durable() {
        assert!(seen.iter().all(|s| s.3 == seen[0].3), "payload bytes are shared, not copied");
    }
}

fn payload_and_metadata_arrive_byte_for_byte(k: &Kit) {
    let b = k.broker(2);
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    b.subscribe(
        "t",
        move |d: &Delivery| {
            tx.lock()
                .unwrap()
                .send((d.payload().to_vec(), d.metadata().to_vec(), d.topic().to_owned(), d.message().timestamp_ms()))
                .unwrap();
            Verdict::Ack
        },
        &auto(),
    )
    .unwrap();
    let payload = "{ \"text\" : \"h\u{e9}llo\\n\", \"list\": [1, 2.5, null] }";
    b.publish("t", payload.as_bytes(), &PublishOptions::default()).unwrap();
    let (p, m, t, ts) = rx.recv_timeout(LONG).unwrap();
    assert_eq!(p, payload.as_bytes());
    assert_eq!(m, b"{}");
    assert_eq!(t, "t");
    assert!(ts > 0);
}

fn concurrency_one_is_strictly_fifo(k: &Kit) {
    let b = k.broker(4);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    b.subscribe(
        "seq",
        move |d: &Delivery| {
            let v: serde_json::Value = serde_json::from_slice(d.payload()).unwrap();
            s.lock().unwrap().push(v["i"].as_u64().unwrap());
            Verdict::Ack
        },
        &auto(),
    )
    .unwrap();
    for i in 0..2000 {
        publish(&b, "seq", &format!("{{\"i\":{i}}}"));
    }
    b.join(Some(LONG)).unwrap();
    assert_eq!(*seen.lock().unwrap(), (0..2000).collect::<Vec<_>>());
}

fn concurrency_limit_is_respected_and_everything_delivered_once(k: &Kit) {
    let b = k.broker(6);
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let counts = Arc::new(Mutex::new(HashMap::new()));
    let (r, p, c) = (running.clone(), peak.clone(), counts.clone());
    b.subscribe(
        "work",
        move |d: &Delivery| {
            let now = r.fetch_add(1, SeqCst) + 1;
            p.fetch_max(now, SeqCst);
            std::thread::sleep(Duration::from_micros(200));
            *c.lock().unwrap().entry(d.parent_id().to_owned()).or_insert(0) += 1;
            r.fetch_sub(1, SeqCst);
            Verdict::Ack
        },
        &SubscribeOptions { concurrency: 3, ..Default::default() },
    )
    .unwrap();
    for i in 0..300 {
        publish(&b, "work", &i.to_string());
    }
    b.join(Some(LONG)).unwrap();
    assert!(peak.load(SeqCst) <= 3, "peak {} above the limit", peak.load(SeqCst));
    let counts = counts.lock().unwrap();
    assert_eq!(counts.len(), 300);
    assert!(counts.values().all(|&n| n == 1));
}

fn requeue_redelivers_with_the_next_attempt_then_acks(k: &Kit) {
    let b = k.broker(2);
    let attempts = Arc::new(Mutex::new(Vec::new()));
    let a = attempts.clone();
    b.subscribe(
        "flaky",
        move |d: &Delivery| {
            a.lock().unwrap().push((d.id(), d.attempt()));
            if d.attempt() < 3 {
                Verdict::Requeue(Some("transient".into()))
            } else {
                Verdict::Ack
            }
        },
        &auto(),
    )
    .unwrap();
    publish(&b, "flaky", "{}");
    b.join(Some(LONG)).unwrap();
    let a = attempts.lock().unwrap();
    assert_eq!(a.iter().map(|x| x.1).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert!(a.iter().all(|x| x.0 == a[0].0), "a redelivery keeps its delivery id");
    let t = b.stats().unwrap().totals;
    assert_eq!((t.dispatched, t.requeued, t.processed, t.failed), (3, 2, 1, 0));
}

fn nack_and_panic_count_as_failed_with_reasons(k: &Kit) {
    let b = k.broker(2);
    let rec = Rec::default();
    b.add_listener(rec.clone()).unwrap();
    b.subscribe("n", |_: &Delivery| Verdict::Nack(Some("bad order".into())), &auto()).unwrap();
    b.subscribe("p", |_: &Delivery| -> Verdict { panic!("boom in handler") }, &auto()).unwrap();
    publish(&b, "n", "1");
    publish(&b, "p", "2");
    b.join(Some(LONG)).unwrap();
    let t = b.stats().unwrap().totals;
    assert_eq!((t.failed, t.processed), (2, 0));
    let events = rec.events.lock().unwrap();
    assert!(events.iter().any(|e| e.starts_with("failed") && e.ends_with("false bad order")));
    assert!(events.iter().any(|e| e.contains("handler panicked: boom in handler")));
}

fn manual_ack_from_another_thread_and_from_inside_the_handler(k: &Kit) {
    let b = k.broker(2);
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    b.subscribe(
        "later",
        move |d: &Delivery| {
            tx.lock().unwrap().send(d.id()).unwrap();
            Verdict::Later
        },
        &manual(),
    )
    .unwrap();
    let weak = b.downgrade();
    b.subscribe(
        "inside",
        move |d: &Delivery| {
            weak.upgrade().unwrap().ack(d.id()).unwrap();
            Verdict::Ack // settled already: must count once
        },
        &manual(),
    )
    .unwrap();
    publish(&b, "later", "1");
    publish(&b, "inside", "2");
    let id = rx.recv_timeout(LONG).unwrap();
    let err = b.join(Some(Duration::from_millis(50))).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert_eq!(err.remaining(), 1, "the delivery awaiting its ack is outstanding");
    std::thread::spawn({
        let b = b.clone();
        move || b.ack(id).unwrap()
    })
    .join()
    .unwrap();
    b.join(Some(LONG)).unwrap();
    assert_eq!(b.ack(id).unwrap_err().kind(), ErrorKind::AlreadySettled);
    assert_eq!(b.ack(0).unwrap_err().kind(), ErrorKind::UnknownDelivery);
    assert_eq!(b.ack(u64::MAX).unwrap_err().kind(), ErrorKind::UnknownDelivery);
    let t = b.stats().unwrap().totals;
    assert_eq!((t.processed, t.failed, t.in_flight), (2, 0, 0));
}

fn nack_with_requeue_redelivers_manual_deliveries(k: &Kit) {
    let b = k.broker(2);
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    b.subscribe(
        "m",
        move |d: &Delivery| {
            tx.lock().unwrap().send((d.id(), d.attempt())).unwrap();
            Verdict::Later
        },
        &manual(),
    )
    .unwrap();
    publish(&b, "m", "1");
    let (id, attempt) = rx.recv_timeout(LONG).unwrap();
    assert_eq!(attempt, 1);
    b.nack(id, true, None, Some("retry".into())).unwrap();
    let (id2, attempt2) = rx.recv_timeout(LONG).unwrap();
    assert_eq!((id2, attempt2), (id, 2));
    b.nack(id, false, None, None).unwrap();
    b.join(Some(LONG)).unwrap();
    let t = b.stats().unwrap().totals;
    assert_eq!((t.requeued, t.failed, t.processed), (1, 1, 0));
}

fn auto_ack_deliveries_cannot_be_acked_again(k: &Kit) {
    let b = k.broker(2);
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    b.subscribe(
        "a",
        move |d: &Delivery| {
            tx.lock().unwrap().send(d.id()).unwrap();
            Verdict::Later // means Ack on an auto-ack subscription
        },
        &auto(),
    )
    .unwrap();
    publish(&b, "a", "1");
    let id = rx.recv_timeout(LONG).unwrap();
    b.join(Some(LONG)).unwrap();
    assert_eq!(b.ack(id).unwrap_err().kind(), ErrorKind::AlreadySettled);
    assert_eq!(b.stats().unwrap().totals.processed, 1);
}

fn messages_without_a_group_are_retained_or_unrouted_and_never_block_join(k: &Kit) {
    let b = k.broker(2);
    publish(&b, "nobody", "1");
    b.join(Some(LONG)).unwrap();
    let s = b.stats().unwrap();
    assert_eq!((s.totals.published, s.totals.retained, s.totals.unrouted, s.totals.dispatched), (1, 1, 0, 0));
    let report = b.close(Some(LONG), false).unwrap();
    // A durable store keeps the retained message in the file for the next broker.
    assert_eq!(report.retained_discarded, if k.durable() { 0 } else { 1 });

    let off = k.with(BrokerConfig { retention_policy: RetentionPolicy::Off, ..Default::default() });
    publish(&off, "nobody", "1");
    off.join(Some(LONG)).unwrap();
    let s = off.stats().unwrap();
    assert_eq!((s.totals.published, s.totals.retained, s.totals.unrouted), (1, 0, 1));
}

fn bad_input_is_refused_and_changes_nothing(k: &Kit) {
    let b = k.with(BrokerConfig { max_payload_bytes: 16, ..Default::default() });
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    b.subscribe(
        "t",
        move |_: &Delivery| {
            r.fetch_add(1, SeqCst);
            Verdict::Ack
        },
        &auto(),
    )
    .unwrap();
    let po = PublishOptions::default();
    let cases: Vec<(&str, &[u8], PublishOptions, ErrorKind)> = vec![
        ("", b"1", po, ErrorKind::InvalidTopic),
        ("a b", b"1", po, ErrorKind::InvalidTopic),
        ("t", b"", po, ErrorKind::InvalidJson),
        ("t", b"{", po, ErrorKind::InvalidJson),
        ("t", b"1 2", po, ErrorKind::InvalidJson),
        ("t", b"[1,2,3,4,5,6,7,8,9]", po, ErrorKind::PayloadTooLarge),
        ("t", b"1", PublishOptions { metadata: Some(b"[1]"), ..po }, ErrorKind::InvalidJson),
        ("t", b"1", PublishOptions { metadata: Some(b"{"), ..po }, ErrorKind::InvalidJson),
        ("t", b"1", PublishOptions { id: Some(""), ..po }, ErrorKind::InvalidId),
        ("t", b"1", PublishOptions { id: Some("has space"), ..po }, ErrorKind::InvalidId),
    ];
    for (topic, payload, opts, kind) in cases {
        let err = b.publish(topic, payload, &opts).unwrap_err();
        assert_eq!(err.kind(), kind, "{topic:?} {:?}", String::from_utf8_lossy(payload));
        assert!(!err.message().is_empty());
    }
    let long = "x".repeat(256);
    assert_eq!(b.publish(&long, b"1", &po).unwrap_err().kind(), ErrorKind::InvalidTopic);
    assert_eq!(b.subscribe(&long, |_: &Delivery| Verdict::Ack, &auto()).unwrap_err().kind(), ErrorKind::InvalidTopic);
    assert_eq!(
        b.subscribe("t", |_: &Delivery| Verdict::Ack, &SubscribeOptions { concurrency: 5000, ..Default::default() })
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidArgument
    );
    assert_eq!(b.unsubscribe(999).unwrap_err().kind(), ErrorKind::UnknownSubscription);
    assert_eq!(b.remove_listener(999).unwrap_err().kind(), ErrorKind::UnknownListener);
    b.publish("t", b"[1,2,3,4,5,6,77]", &po).unwrap(); // exactly 16 bytes
    b.join(Some(LONG)).unwrap();
    assert_eq!(ran.load(SeqCst), 1);
    assert_eq!(b.stats().unwrap().totals.published, 1);
    for url in ["ftp://x", "memory://x", "nonsense"] {
        assert_eq!(Broker::open(url).err().unwrap().kind(), ErrorKind::InvalidUrl, "{url}");
    }
    assert_eq!(Broker::open("rediss+cluster://localhost").err().unwrap().kind(), ErrorKind::UnsupportedBackend);
    assert_eq!(Broker::open("redis://localhost:0").err().unwrap().kind(), ErrorKind::InvalidUrl);
    assert_eq!(
        Broker::with_config(&k.config(BrokerConfig { worker_threads: 100_000, ..Default::default() }))
            .err()
            .unwrap()
            .kind(),
        ErrorKind::InvalidArgument
    );
}

fn handlers_may_call_back_into_the_broker(k: &Kit) {
    let b = k.broker(2);
    let weak = b.downgrade();
    let results = Arc::new(Mutex::new(Vec::new()));
    let r = results.clone();
    let sink_count = Arc::new(AtomicUsize::new(0));
    let sc = sink_count.clone();
    b.subscribe(
        "sink",
        move |_: &Delivery| {
            sc.fetch_add(1, SeqCst);
            Verdict::Ack
        },
        &auto(),
    )
    .unwrap();
    b.subscribe(
        "src",
        move |d: &Delivery| {
            let b = weak.upgrade().unwrap();
            let mut r = r.lock().unwrap();
            r.push(format!("publish {:?}", b.publish("sink", d.payload(), &PublishOptions::default()).map(|_| ())));
            let sub = b.subscribe("other", |_: &Delivery| Verdict::Ack, &SubscribeOptions::default()).unwrap();
            r.push(format!("unsubscribe {:?}", b.unsubscribe(sub)));
            r.push(format!("stats {:?}", b.stats().map(|_| ())));
            r.push(format!("join {:?}", b.join(Some(LONG)).map_err(|e| e.kind())));
            r.push(format!("close {:?}", b.close(Some(LONG), false).map_err(|e| e.kind())));
            r.push(format!("self-unsubscribe {:?}", b.unsubscribe(d.subscription())));
            Verdict::Ack
        },
        &auto(),
    )
    .unwrap();
    publish(&b, "src", "{\"x\":1}");
    b.join(Some(LONG)).unwrap();
    assert_eq!(
        *results.lock().unwrap(),
        vec![
            "publish Ok(())",
            "unsubscribe Ok(())",
            "stats Ok(())",
            "join Err(WouldDeadlock)",
            "close Err(WouldDeadlock)",
            "self-unsubscribe Ok(())",
        ]
    );
    assert_eq!(sink_count.load(SeqCst), 1);
    // The broker is still open after the refused close.
    publish(&b, "sink", "2");
    b.join(Some(LONG)).unwrap();
    assert_eq!(sink_count.load(SeqCst), 2);
}

fn listeners_see_every_event_by_the_time_join_returns(k: &Kit) {
    let b = k.broker(2);
    let rec = Rec::default();
    let lid = b.add_listener(rec.clone()).unwrap();
    let sub = b
        .subscribe(
            "ev",
            |d: &Delivery| {
                if d.attempt() == 1 {
                    Verdict::Requeue(None)
                } else {
                    Verdict::Ack
                }
            },
            &auto(),
        )
        .unwrap();
    let id = publish(&b, "ev", "1");
    b.join(Some(LONG)).unwrap();
    b.unsubscribe(sub).unwrap();
    b.join(Some(LONG)).unwrap();
    let events = rec.events.lock().unwrap().clone();
    assert_eq!(events[0], "topic ev");
    assert_eq!(events[1], format!("subscribe ev {sub}"));
    assert_eq!(events[2], format!("publish ev {id}"));
    assert!(events[3].starts_with("dispatched") && events[3].ends_with(" 1"));
    assert!(events[4].starts_with("failed") && events[4].contains(" true "));
    assert!(events[5].starts_with("dispatched") && events[5].ends_with(" 2"));
    assert!(events[6].starts_with("processed"));
    assert_eq!(events[7], format!("unsubscribe ev {sub}"));
    assert_eq!(events.len(), 8);
    b.remove_listener(lid).unwrap();
    publish(&b, "ev", "2");
    b.join(Some(LONG)).unwrap();
    assert_eq!(rec.events.lock().unwrap().len(), 8, "a removed listener hears nothing more");
}

struct Slow(Arc<AtomicUsize>);
impl Listener for Slow {
    fn on_dispatched(&self, _: &Delivery) {
        std::thread::sleep(Duration::from_millis(20));
        self.0.fetch_add(1, SeqCst);
    }
    fn on_processed(&self, _: &Delivery) {
        panic!("a misbehaving listener");
    }
}

fn a_slow_or_panicking_listener_never_holds_up_delivery(k: &Kit) {
    let b = k.with(BrokerConfig { worker_threads: 2, listener_queue_capacity: 4, ..Default::default() });
    let heard = Arc::new(AtomicUsize::new(0));
    b.add_listener(Slow(heard.clone())).unwrap();
    let done = Arc::new(AtomicUsize::new(0));
    let d2 = done.clone();
    b.subscribe(
        "fast",
        move |_: &Delivery| {
            d2.fetch_add(1, SeqCst);
            Verdict::Ack
        },
        &auto(),
    )
    .unwrap();
    for i in 0..500 {
        publish(&b, "fast", &i.to_string());
    }
    eventually("all deliveries processed", || done.load(SeqCst) == 500);
    b.join(Some(LONG)).unwrap();
    let s = b.stats().unwrap();
    assert_eq!(s.totals.processed, 500);
    assert!(s.listener_events_dropped > 0);
    assert!(heard.load(SeqCst) < 500);
}

fn join_and_close_time_out_on_a_blocked_handler_and_never_hang(k: &Kit) {
    let b = k.broker(2);
    let gate = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
    let g = gate.clone();
    let finalised = Arc::new(AtomicUsize::new(0));
    let guard = DropCount(finalised.clone());
    b.subscribe(
        "block",
        move |_: &Delivery| {
            let _keep = &guard;
            let (m, cv) = &*g;
            let mut open = m.lock().unwrap();
            while !*open {
                open = cv.wait(open).unwrap();
            }
            Verdict::Ack
        },
        &auto(),
    )
    .unwrap();
    /// Opens the gate however the test ends, so a failed assert cannot hang in drop(b).
    struct OpenOnDrop(Arc<(Mutex<bool>, std::sync::Condvar)>);
    impl Drop for OpenOnDrop {
        fn drop(&mut self) {
            *self.0 .0.lock().unwrap_or_else(|e| e.into_inner()) = true;
            self.0 .1.notify_all();
        }
    }
    let opener = OpenOnDrop(gate.clone());
    publish(&b, "block", "1");
    publish(&b, "block", "2");
    let e = b.join(Some(Duration::from_millis(20))).unwrap_err();
    assert_eq!((e.kind(), e.remaining()), (ErrorKind::Timeout, 2));
    let report = b.close(Some(Duration::from_millis(20)), false).unwrap();
    assert_eq!((report.remaining, report.dropped), (2, 0), "time ran out with both unfinished");
    // Closed all the same: later calls fail with Closed.
    assert_eq!(b.publish("block", b"3", &PublishOptions::default()).unwrap_err().kind(), ErrorKind::Closed);
    assert_eq!(b.close(None, false).unwrap_err().kind(), ErrorKind::Closed);
    assert_eq!(b.join(None).unwrap_err().kind(), ErrorKind::Closed);
    assert_eq!(b.stats().unwrap_err().kind(), ErrorKind::Closed);
    assert_eq!(b.ack(1).unwrap_err().kind(), ErrorKind::Closed);
    assert_eq!(b.subscribe("x", |_: &Delivery| Verdict::Ack, &auto()).unwrap_err().kind(), ErrorKind::Closed);
    // Release the handler; dropping the broker then waits for it and runs the finaliser once.
    drop(opener);
    drop(b);
    assert_eq!(finalised.load(SeqCst), 1);
}

/// A listener whose publish events wait until `0` is set: fills the listener queue.
struct Stuck(Arc<AtomicBool>);
impl Listener for Stuck {
    fn on_publish(&self, _: &Delivery) {
        while !self.0.load(SeqCst) {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// The broker's own log sink hears a listener queue overflow (Warn when it starts, Info when it
/// ends) and a close that left work behind (Warn), nothing above its level, and is dropped
/// with the broker.
fn the_log_hears_listener_overflow_and_close_reports_at_their_levels(k: &Kit) {
    let b = k.with(BrokerConfig { worker_threads: 1, listener_queue_capacity: 1, ..Default::default() });
    let logs = Logs::on(&b, Level::Info);
    let gate = Arc::new(AtomicBool::new(false));
    b.add_listener(Stuck(gate.clone())).unwrap();
    for i in 0..20 {
        publish(&b, "overflow", &i.to_string());
    }
    eventually("the overflow warning", || logs.of("brokk::listener").iter().any(|(l, _)| *l == Level::Warn));
    gate.store(true, SeqCst);
    b.join(Some(LONG)).unwrap();
    publish(&b, "overflow", "20");
    // Once when an overflow starts (Warn) and once when it ends (Info), not per event: the
    // listener thread may take an event between two publishes, so there may be several.
    let heard = logs.of("brokk::listener");
    assert!(heard.len().is_multiple_of(2) && heard.len() <= 40, "{heard:?}");
    for (i, (level, message)) in heard.iter().enumerate() {
        let (want, text) = if i % 2 == 0 { (Level::Warn, "is full") } else { (Level::Info, "takes events again") };
        assert_eq!(*level, want, "{heard:?}");
        assert!(message.contains(text), "{heard:?}");
    }

    let release = Arc::new(AtomicBool::new(false));
    let r = release.clone();
    let options = SubscribeOptions { group: Some("workers"), ..auto() };
    b.subscribe(
        "busy",
        move |_: &Delivery| {
            while !r.load(SeqCst) {
                std::thread::sleep(Duration::from_millis(1));
            }
            Verdict::Ack
        },
        &options,
    )
    .unwrap();
    for i in 0..3 {
        publish(&b, "busy", &i.to_string());
    }
    eventually("a handler running", || b.stats().unwrap().workers_active == 1);
    let report = b.close(Some(Duration::from_millis(20)), false);
    release.store(true, SeqCst);
    assert!(report.unwrap().remaining > 0);
    let closed = logs.of("brokk::close");
    assert_eq!(closed.len(), 1, "{closed:?}");
    assert_eq!(closed[0].0, Level::Warn);
    assert!(closed[0].1.contains("unfinished"), "{}", closed[0].1);
    assert!(logs.all().iter().all(|(l, _, _)| *l <= Level::Info), "nothing above the sink's level");
    assert_eq!(logs.sinks(), 1);
    drop(b);
    assert_eq!(logs.sinks(), 0, "the sink goes with the broker");
}

fn force_close_drops_everything_at_once(k: &Kit) {
    let b = k.broker(1);
    let gate = Arc::new(AtomicBool::new(false));
    let g = gate.clone();
    b.subscribe(
        "f",
        move |_: &Delivery| {
            while !g.load(SeqCst) {
                std::thread::sleep(Duration::from_millis(1));
            }
            Verdict::Ack
        },
        &auto(),
    )
    .unwrap();
    for i in 0..10 {
        publish(&b, "f", &i.to_string());
    }
    eventually("first delivery running", || b.stats().unwrap().workers_active == 1);
    let report = b.close(None, true);
    gate.store(true, SeqCst); // before asserting: a failed assert must not hang in drop(b)
    assert_eq!(report.unwrap().dropped, 9, "the nine waiting; the running one finishes on its own");
    drop(b);
}

fn nothing_runs_after_the_last_handle_is_dropped(k: &Kit) {
    let b = k.broker(2);
    let calls = Arc::new(AtomicUsize::new(0));
    let finalised = Arc::new(AtomicUsize::new(0));
    let guard = DropCount(finalised.clone());
    let c = calls.clone();
    b.subscribe(
        "t",
        move |_: &Delivery| {
            let _keep = &guard;
            c.fetch_add(1, SeqCst);
            std::thread::sleep(Duration::from_micros(50));
            Verdict::Ack
        },
        &auto(),
    )
    .unwrap();
    for i in 0..200 {
        publish(&b, "t", &i.to_string());
    }
    drop(b);
    assert_eq!(finalised.load(SeqCst), 1, "the handler was dropped before drop(broker) returned");
    let after = calls.load(SeqCst);
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(calls.load(SeqCst), after);
}

fn dropping_the_last_handle_inside_a_handler_finishes_teardown_later(k: &Kit) {
    let finalised = Arc::new(AtomicUsize::new(0));
    let slot: Arc<Mutex<Option<Broker>>> = Arc::new(Mutex::new(None));
    let b = k.broker(2);
    let guard = DropCount(finalised.clone());
    let s = slot.clone();
    b.subscribe(
        "t",
        move |_: &Delivery| {
            let _keep = &guard;
            // Take and drop the only strong handle from inside the handler. It is put in the
            // slot after the publish returns, which the handler may beat: then it tries again.
            match s.lock().unwrap().take() {
                Some(b) => {
                    drop(b);
                    Verdict::Ack
                }
                None => Verdict::RequeueAfter(Duration::from_millis(1), None),
            }
        },
        &auto(),
    )
    .unwrap();
    publish(&b, "t", "1");
    *slot.lock().unwrap() = Some(b);
    eventually("teardown after the handler returned", || finalised.load(SeqCst) == 1);
}

fn unsubscribe_drops_waiting_deliveries_and_runs_the_finaliser_once(k: &Kit) {
    let b = k.broker(1);
    let finalised = Arc::new(AtomicUsize::new(0));
    let guard = DropCount(finalised.clone());
    let gate = Arc::new(AtomicBool::new(false));
    let g = gate.clone();
    let sub = b
        .subscribe(
            "u",
            move |_: &Delivery| {
                let _keep = &guard;
                while !g.load(SeqCst) {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Verdict::Ack
            },
            &auto(),
        )
        .unwrap();
    for i in 0..5 {
        publish(&b, "u", &i.to_string());
    }
    eventually("first delivery running", || b.stats().unwrap().totals.in_flight == 1);
    b.unsubscribe(sub).unwrap();
    assert_eq!(finalised.load(SeqCst), 0, "still running: not finalised yet");
    gate.store(true, SeqCst);
    b.join(Some(LONG)).unwrap();
    eventually("finaliser after the last invocation", || finalised.load(SeqCst) == 1);
    let t = b.stats().unwrap().totals;
    assert_eq!((t.processed, t.dropped, t.subscriptions), (1, 4, 0));
}

/// Sixteen publishers, subscription churn and random verdicts: every delivery is accounted for
/// exactly once, and the counters reconcile.
fn counts_reconcile_under_concurrent_load_and_churn(k: &Kit) {
    let b = k.broker(4);
    let processed = Arc::new(AtomicU64::new(0));
    let stable = {
        let p = processed.clone();
        b.subscribe(
            "load",
            move |d: &Delivery| match d.id() % 7 {
                0 if d.attempt() == 1 => Verdict::Requeue(None),
                1 if d.attempt() == 1 => Verdict::Nack(None),
                _ => {
                    p.fetch_add(1, SeqCst);
                    Verdict::Ack
                }
            },
            &SubscribeOptions { concurrency: 2, ..Default::default() },
        )
        .unwrap()
    };
    let start = Arc::new(Barrier::new(17));
    let mut threads = Vec::new();
    for t in 0..16 {
        let b = b.clone();
        let start = start.clone();
        threads.push(std::thread::spawn(move || {
            start.wait();
            for i in 0..500 {
                b.publish("load", format!("{{\"t\":{t},\"i\":{i}}}").as_bytes(), &PublishOptions::default()).unwrap();
                if t == 0 && i % 50 == 0 {
                    let s = b.subscribe("load", |_: &Delivery| Verdict::Ack, &SubscribeOptions::default()).unwrap();
                    std::thread::yield_now();
                    b.unsubscribe(s).unwrap();
                }
            }
        }));
    }
    start.wait();
    for t in threads {
        t.join().unwrap();
    }
    b.join(Some(LONG)).unwrap();
    let s = b.stats().unwrap();
    let t = &s.totals;
    assert_eq!(t.published, 8000);
    assert_eq!(t.queued + t.in_flight, 0);
    assert_eq!(t.dispatched, t.processed + t.failed + t.requeued);
    // The stable subscription saw every message: processed or failed once each.
    let _ = stable;
    let stable_failed = t.failed;
    assert_eq!(processed.load(SeqCst) + stable_failed, 8000);
}

fn publishers_racing_close_get_ok_or_closed_and_counts_reconcile(k: &Kit) {
    for _ in 0..5 {
        let b = k.broker(2);
        let delivered = Arc::new(AtomicU64::new(0));
        let d = delivered.clone();
        b.subscribe(
            "race",
            move |_: &Delivery| {
                d.fetch_add(1, SeqCst);
                Verdict::Ack
            },
            &auto(),
        )
        .unwrap();
        let ok = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (b, ok) = (b.clone(), ok.clone());
                std::thread::spawn(move || loop {
                    match b.publish("race", b"1", &PublishOptions::default()) {
                        Ok(_) => {
                            ok.fetch_add(1, SeqCst);
                        }
                        Err(e) => {
                            assert_eq!(e.kind(), ErrorKind::Closed);
                            return;
                        }
                    }
                })
            })
            .collect();
        eventually("a first publish", || ok.load(SeqCst) > 0);
        let report = b.close(Some(LONG), false).unwrap();
        assert_eq!(report.remaining, 0);
        for t in threads {
            t.join().unwrap();
        }
        // Every publish that returned OK, even one racing the close, was delivered before
        // close returned.
        assert_eq!(delivered.load(SeqCst), ok.load(SeqCst));
    }
}

// ---- pull consumers, priorities, groups, retention, batch, count and purge ----------------

fn prio(b: &Broker, topic: &str, payload: &str, priority: i32) {
    b.publish(topic, payload.as_bytes(), &PublishOptions { priority, ..Default::default() }).unwrap();
}

fn fetch_now(b: &Broker, topic: &str, group: Option<&str>) -> Option<Delivery> {
    b.fetch(topic, group, Some(Duration::ZERO)).unwrap()
}

fn payload_of(d: &Delivery) -> String {
    String::from_utf8(d.payload().to_vec()).unwrap()
}

fn fetch_takes_highest_priority_first_and_fifo_within_a_priority(k: &Kit) {
    let b = k.broker(2);
    assert!(fetch_now(&b, "jobs", None).is_none(), "empty queue: nothing, at once");
    for (p, prio_) in [("1", 0), ("2", 5), ("3", 0), ("4", -2), ("5", 5), ("6", 9)] {
        prio(&b, "jobs", p, prio_);
    }
    let mut got = Vec::new();
    while let Some(d) = fetch_now(&b, "jobs", None) {
        assert_eq!(d.group(), Some(brokk_core::DEFAULT_GROUP));
        got.push(payload_of(&d));
        b.ack(d.id()).unwrap();
    }
    assert_eq!(got, ["6", "2", "5", "1", "3", "4"]);
    b.join(Some(LONG)).unwrap();
    let t = b.stats().unwrap().totals;
    assert_eq!((t.published, t.dispatched, t.processed, t.retained), (6, 6, 6, 0));
}

fn taken(b: &Broker, topic: &str, group: Option<&str>, max_payload: usize) -> Taken {
    b.take(topic, group, Some(Duration::ZERO), max_payload).unwrap()
}

fn take_acks_as_it_takes_in_priority_order_and_leaves_nothing_held(k: &Kit) {
    let b = k.broker(2);
    let rec = Rec::default();
    b.add_listener(rec.clone()).unwrap();
    assert!(matches!(taken(&b, "jobs", None, 1024), Taken::Empty), "empty queue: nothing, at once");
    assert!(matches!(taken(&b, "jobs", Some("other"), 1024), Taken::Empty)); // a second group
    for (p, prio_) in [("1", 0), ("22", 5), ("3", 0), ("4", -2), ("5", 5), ("666", 9)] {
        prio(&b, "jobs", p, prio_);
    }
    // Too small for "666" (3 bytes): it stays first, and a take with room gets it.
    assert!(matches!(taken(&b, "jobs", None, 2), Taken::TooLarge(3)));
    assert!(matches!(taken(&b, "jobs", None, 0), Taken::TooLarge(3)));
    assert_eq!(b.count(Some(&["jobs"])).unwrap(), 12, "nothing taken by a take that had no room");
    let mut got = Vec::new();
    let mut ids = Vec::new();
    while let Taken::Message(d) = taken(&b, "jobs", None, 3) {
        assert_eq!((d.group(), d.attempt()), (Some(brokk_core::DEFAULT_GROUP), 1));
        got.push(payload_of(&d));
        ids.push(d.id());
    }
    assert_eq!(got, ["666", "22", "5", "1", "3", "4"]);
    // Acked as they were taken: nothing awaits an ack, nothing is held, the other group still
    // has its own copies.
    for id in &ids {
        let err = b.ack(*id).unwrap_err();
        assert!(matches!(err.kind(), ErrorKind::UnknownDelivery | ErrorKind::AlreadySettled), "{err}");
    }
    assert_eq!(b.count(Some(&["jobs"])).unwrap(), 6);
    while let Taken::Message(_) = taken(&b, "jobs", Some("other"), 64) {}
    b.join(Some(LONG)).expect("nothing held");
    let t = b.stats().unwrap().totals;
    assert_eq!((t.published, t.dispatched, t.processed, t.failed, t.queued), (6, 12, 12, 0, 0));
    let events = rec.events.lock().unwrap().clone();
    for id in &ids {
        let dispatched = events.iter().position(|e| e == &format!("dispatched {id} 1"));
        let processed = events.iter().position(|e| e == &format!("processed {id}"));
        assert!(dispatched.is_some() && dispatched < processed, "{id}: dispatched, then processed: {events:?}");
    }
    // Bad input changes nothing; after close, CLOSED.
    for (topic, group, kind) in [
        ("", None, ErrorKind::InvalidTopic),
        ("bad topic", None, ErrorKind::InvalidTopic),
        ("jobs", Some(""), ErrorKind::InvalidGroup),
        ("jobs", Some("bad group"), ErrorKind::InvalidGroup),
    ] {
        let err = b.take(topic, group, Some(Duration::ZERO), 64).unwrap_err();
        assert_eq!(err.kind(), kind, "{topic:?} {group:?}");
    }
    b.close(Some(LONG), false).unwrap();
    assert_eq!(b.take("jobs", None, Some(Duration::ZERO), 64).unwrap_err().kind(), ErrorKind::Closed);
}

fn concurrent_takers_get_each_message_exactly_once(k: &Kit) {
    let b = k.broker(2);
    assert!(matches!(taken(&b, "jobs", Some("w"), 64), Taken::Empty)); // the group, before publishing
    const N: usize = 400;
    let batch: Vec<String> = (0..N).map(|i| i.to_string()).collect();
    let messages: Vec<BatchMessage> =
        batch.iter().map(|p| BatchMessage { payload: p.as_bytes(), ..Default::default() }).collect();
    b.publish_batch("jobs", &messages).unwrap();
    let takers: Vec<_> = (0..4)
        .map(|_| {
            let b = b.clone();
            std::thread::spawn(move || {
                let mut mine = Vec::new();
                while let Taken::Message(d) = taken(&b, "jobs", Some("w"), 64) {
                    mine.push(payload_of(&d).parse::<usize>().unwrap());
                }
                mine
            })
        })
        .collect();
    let mut all: Vec<usize> = takers.into_iter().flat_map(|t| t.join().unwrap()).collect();
    all.sort_unstable();
    assert_eq!(all, (0..N).collect::<Vec<_>>(), "each message taken once");
    b.join(Some(Duration::ZERO)).expect("nothing held");
}

fn a_take_waits_up_to_its_timeout(k: &Kit) {
    let b = k.broker(2);
    let t0 = Instant::now();
    assert!(matches!(b.take("jobs", None, Some(Duration::from_millis(30)), 64).unwrap(), Taken::Empty));
    assert!(t0.elapsed() >= Duration::from_millis(30), "waited for the timeout");
    let waiter = {
        let b = b.clone();
        std::thread::spawn(move || match b.take("jobs", None, Some(LONG), 64).unwrap() {
            Taken::Message(d) => payload_of(&d),
            other => panic!("{other:?}"),
        })
    };
    eventually("the taker to create the group", || b.stats().unwrap().totals.groups == 1);
    publish(&b, "jobs", "\"wake\"");
    assert_eq!(waiter.join().unwrap(), "\"wake\"");
}

fn fetch_batch_takes_in_order_and_ack_batch_settles_all_but_the_bad_ids(k: &Kit) {
    let b = k.broker(2);
    let opts = FetchOptions::default();
    assert!(matches!(b.fetch_batch("jobs", &opts, 0, None), Err(e) if e.kind() == ErrorKind::InvalidArgument));
    assert!(b.fetch_batch("jobs", &opts, 8, Some(Duration::ZERO)).unwrap().is_empty(), "empty: at once");
    for (p, prio_) in [("1", 0), ("2", 5), ("3", 0), ("4", -2), ("5", 5)] {
        prio(&b, "jobs", p, prio_);
    }
    let first = b.fetch_batch("jobs", &opts, 3, Some(LONG)).unwrap();
    assert_eq!(first.iter().map(payload_of).collect::<Vec<_>>(), ["2", "5", "1"]);
    let rest = b.fetch_batch("jobs", &opts, 100, Some(LONG)).unwrap();
    assert_eq!(rest.iter().map(payload_of).collect::<Vec<_>>(), ["3", "4"]);
    // One bad id in the middle: the others are acked, the failure names its index.
    let mut ids: Vec<u64> = first.iter().map(Delivery::id).collect();
    ids.insert(1, first[0].id());
    let (acked, failure) = b.ack_batch(&ids);
    assert_eq!(acked, 3);
    let (index, err) = failure.expect("the repeated id fails");
    assert_eq!((index, err.kind()), (1, ErrorKind::AlreadySettled));
    assert_eq!(b.ack_batch(&rest.iter().map(Delivery::id).collect::<Vec<_>>()).0, 2);
    b.join(Some(LONG)).unwrap();
    let t = b.stats().unwrap().totals;
    assert_eq!((t.published, t.dispatched, t.processed), (5, 5, 5));
}

fn push_subscriptions_take_priorities_in_order_too(k: &Kit) {
    let b = k.broker(2);
    // A named group created before publishing holds the backlog until its member arrives.
    assert!(fetch_now(&b, "jobs", Some("workers")).is_none());
    for (p, prio_) in [("low", -1), ("mid1", 0), ("high", 3), ("mid2", 0)] {
        prio(&b, "jobs", &format!("\"{p}\""), prio_);
    }
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    b.subscribe(
        "jobs",
        move |d: &Delivery| {
            s.lock().unwrap().push(payload_of(d));
            Verdict::Ack
        },
        &SubscribeOptions { group: Some("workers"), ..Default::default() },
    )
    .unwrap();
    b.join(Some(LONG)).unwrap();
    assert_eq!(*seen.lock().unwrap(), ["\"high\"", "\"mid1\"", "\"mid2\"", "\"low\""]);
}

fn fetch_blocks_until_a_message_or_the_timeout(k: &Kit) {
    let b = k.broker(2);
    let t0 = Instant::now();
    assert!(b.fetch("jobs", None, Some(Duration::from_millis(30))).unwrap().is_none());
    assert!(t0.elapsed() >= Duration::from_millis(30), "waited for the timeout");
    let waiter = {
        let b = b.clone();
        std::thread::spawn(move || b.fetch("jobs", None, Some(LONG)).unwrap().map(|d| (payload_of(&d), d.id())))
    };
    eventually("the fetcher to create the group", || {
        b.count(None).unwrap() == 0 && b.stats().unwrap().totals.groups == 1
    });
    publish(&b, "jobs", "\"wake\"");
    let (payload, id) = waiter.join().unwrap().expect("the blocked fetch got the message");
    assert_eq!(payload, "\"wake\"");
    b.ack(id).unwrap();
}

fn a_blocked_fetch_returns_closed_when_the_broker_closes(k: &Kit) {
    let b = k.broker(2);
    let waiter = {
        let b = b.clone();
        std::thread::spawn(move || b.fetch("jobs", None, None))
    };
    eventually("the fetcher to wait", || b.stats().unwrap().totals.groups == 1);
    std::thread::sleep(Duration::from_millis(5));
    b.close(None, true).unwrap();
    assert_eq!(waiter.join().unwrap().unwrap_err().kind(), ErrorKind::Closed);
}

fn members_of_a_group_compete_and_groups_each_get_a_copy(k: &Kit) {
    let b = k.broker(4);
    let counts: Arc<Mutex<HashMap<String, Vec<String>>>> = Arc::default();
    let subscribe = |group: Option<&'static str>, name: &'static str| {
        let c = counts.clone();
        b.subscribe(
            "orders",
            move |d: &Delivery| {
                c.lock().unwrap().entry(name.to_owned()).or_default().push(payload_of(d));
                Verdict::Ack
            },
            &SubscribeOptions { group, ..Default::default() },
        )
        .unwrap();
    };
    subscribe(Some("billing"), "billing-1");
    subscribe(Some("billing"), "billing-2");
    subscribe(Some("shipping"), "shipping-1");
    subscribe(None, "audit");
    for i in 0..400 {
        publish(&b, "orders", &i.to_string());
    }
    // A pull consumer joins the billing group too, and competes.
    let mut fetched = Vec::new();
    while fetched.len() < 5 {
        match b.fetch("orders", Some("billing"), Some(Duration::from_millis(1))).unwrap() {
            Some(d) => {
                fetched.push(payload_of(&d));
                b.ack(d.id()).unwrap();
            }
            None if b.count(Some(&["orders"])).unwrap() == 0 => break,
            None => {}
        }
    }
    b.join(Some(LONG)).unwrap();
    let c = counts.lock().unwrap();
    let mut billing: Vec<String> = c.get("billing-1").cloned().unwrap_or_default();
    billing.extend(c.get("billing-2").cloned().unwrap_or_default());
    billing.extend(fetched);
    billing.sort_by_key(|p| p.parse::<u32>().unwrap());
    let all: Vec<String> = (0..400).map(|i| i.to_string()).collect();
    assert_eq!(billing, all, "each message to exactly one billing member");
    assert_eq!(c["shipping-1"].len(), 400);
    assert_eq!(c["audit"].len(), 400);
    let t = b.stats().unwrap().totals;
    assert_eq!((t.published, t.processed, t.groups), (400, 1200, 3));
}

fn the_first_named_group_takes_over_retained_messages_in_order(k: &Kit) {
    let b = k.broker(2);
    for i in 0..5 {
        publish(&b, "early", &i.to_string());
    }
    // An ungrouped subscription does not take retained messages; it sees what comes later.
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    b.subscribe(
        "early",
        move |d: &Delivery| {
            s.lock().unwrap().push(payload_of(d));
            Verdict::Ack
        },
        &auto(),
    )
    .unwrap();
    publish(&b, "early", "5");
    b.join(Some(LONG)).unwrap();
    assert_eq!(*seen.lock().unwrap(), ["5"]);
    assert_eq!(b.count(Some(&["early"])).unwrap(), 5);
    let mut got = Vec::new();
    while let Some(d) = fetch_now(&b, "early", Some("late")) {
        got.push(payload_of(&d));
        b.ack(d.id()).unwrap();
    }
    assert_eq!(got, ["0", "1", "2", "3", "4"], "retained, in publish order; 5 was published after a group existed");
    assert_eq!(b.stats().unwrap().totals.retained, 0);
}

fn retention_policies_bound_what_a_topic_keeps(k: &Kit) {
    let cfg = |policy| BrokerConfig { retention_limit: 3, retention_policy: policy, ..Default::default() };
    let reject = k.with(cfg(RetentionPolicy::Reject));
    for i in 0..3 {
        publish(&reject, "t", &i.to_string());
    }
    let e = reject.publish("t", b"3", &PublishOptions::default()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Full);
    let batch = [BatchMessage { payload: b"1", ..Default::default() }];
    assert_eq!(reject.publish_batch("t", &batch).unwrap_err().kind(), ErrorKind::Full);
    assert_eq!(reject.stats().unwrap().totals.published, 3, "a refused publish is not counted");

    let oldest = k.with(cfg(RetentionPolicy::DropOldest));
    for i in 0..5 {
        publish(&oldest, "t", &i.to_string());
    }
    let got: Vec<_> = std::iter::from_fn(|| fetch_now(&oldest, "t", None)).map(|d| payload_of(&d)).collect();
    assert_eq!(got, ["2", "3", "4"]);
    assert_eq!(oldest.stats().unwrap().totals.retained_dropped, 2);

    let newest = k.with(cfg(RetentionPolicy::DropNewest));
    for i in 0..5 {
        publish(&newest, "t", &i.to_string());
    }
    let got: Vec<_> = std::iter::from_fn(|| fetch_now(&newest, "t", None)).map(|d| payload_of(&d)).collect();
    assert_eq!(got, ["0", "1", "2"]);
    assert_eq!(newest.stats().unwrap().totals.retained_dropped, 2);
}

fn fetched_deliveries_are_acked_nacked_and_requeued_like_pushed_ones(k: &Kit) {
    let b = k.broker(2);
    let rec = Rec::default();
    b.add_listener(rec.clone()).unwrap();
    assert!(fetch_now(&b, "q", None).is_none());
    publish(&b, "q", "1");
    let d = fetch_now(&b, "q", None).unwrap();
    assert_eq!((d.attempt(), d.subscription()), (1, 0));
    let e = b.join(Some(Duration::from_millis(20))).unwrap_err();
    assert_eq!(e.remaining(), 1, "a fetched delivery is in flight until settled");
    b.nack(d.id(), true, None, Some("again".into())).unwrap();
    let d2 = fetch_now(&b, "q", None).unwrap();
    assert_eq!((d2.id(), d2.attempt()), (d.id(), 2));
    b.nack(d2.id(), false, None, None).unwrap();
    assert_eq!(b.ack(d2.id()).unwrap_err().kind(), ErrorKind::AlreadySettled);
    b.join(Some(LONG)).unwrap();
    let t = b.stats().unwrap().totals;
    assert_eq!((t.dispatched, t.requeued, t.failed, t.in_flight), (2, 1, 1, 0));
    let events = rec.events.lock().unwrap();
    assert_eq!(events.iter().filter(|e| e.starts_with("dispatched")).count(), 2);
    assert!(events.iter().any(|e| e.ends_with("true again")));
}

fn batch_publish_is_all_or_nothing_and_keeps_order(k: &Kit) {
    let b = k.broker(2);
    assert!(fetch_now(&b, "b", None).is_none());
    let good: Vec<String> = (0..100).map(|i| format!("{{\"i\":{i}}}")).collect();
    let mut batch: Vec<BatchMessage> =
        good.iter().map(|p| BatchMessage { payload: p.as_bytes(), ..Default::default() }).collect();
    batch[50] = BatchMessage { payload: b"{oops", ..Default::default() };
    let e = b.publish_batch("b", &batch).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidJson);
    assert!(e.message().contains("message 50"), "{}", e.message());
    assert_eq!(b.count(None).unwrap(), 0, "nothing of a bad batch is published");
    batch[50] = BatchMessage { payload: good[50].as_bytes(), ..Default::default() };
    batch[7].options.id = Some("seven");
    batch[99].options.priority = 1;
    let published = b.publish_batch("b", &batch).unwrap();
    assert_eq!(published.len(), 100);
    assert_eq!(published[7].id(), "seven");
    assert_eq!(b.count(None).unwrap(), 100);
    let got: Vec<_> = std::iter::from_fn(|| fetch_now(&b, "b", None)).map(|d| payload_of(&d)).collect();
    assert_eq!(got[0], good[99], "priority 1 first");
    assert_eq!(&got[1..], &good[..99]);
    assert!(b.publish_batch("b", &[]).unwrap().is_empty());
}

fn count_and_purge_cover_retained_and_queued_messages(k: &Kit) {
    let b = k.broker(2);
    for i in 0..4 {
        publish(&b, "a", &i.to_string());
    }
    assert!(fetch_now(&b, "c", None).is_none());
    for i in 0..3 {
        publish(&b, "c", &i.to_string());
    }
    let inflight = {
        publish(&b, "c", "\"x\"");
        // Takes the first queued one (0); stays in flight through the purge.
        fetch_now(&b, "c", None).unwrap()
    };
    assert_eq!(b.count(None).unwrap(), 4 + 3);
    assert_eq!(b.count(Some(&["a"])).unwrap(), 4);
    assert_eq!(b.count(Some(&["c", "unknown"])).unwrap(), 3);
    assert_eq!(b.count(Some(&["bad name"])).unwrap_err().kind(), ErrorKind::InvalidTopic);
    assert_eq!(b.purge(Some(&["c"])).unwrap(), 3);
    assert_eq!(b.count(None).unwrap(), 4);
    assert_eq!(b.purge(None).unwrap(), 4);
    assert_eq!(b.count(None).unwrap(), 0);
    b.ack(inflight.id()).unwrap();
    b.join(Some(LONG)).unwrap();
    let t = b.stats().unwrap().totals;
    assert_eq!((t.dropped, t.retained_dropped, t.processed), (3, 4, 1));
}

fn purge_group_discards_one_groups_queue_and_leaves_the_rest(k: &Kit) {
    let b = k.broker(2);
    publish(&b, "held", "\"r1\"");
    publish(&b, "held", "\"r2\"");
    for g in ["a", "b"] {
        assert!(fetch_now(&b, "t", Some(g)).is_none());
    }
    for i in 0..4 {
        publish(&b, "t", &i.to_string());
    }
    // Group a's first delivery is in flight through the purge.
    let inflight = fetch_now(&b, "t", Some("a")).unwrap();
    assert_eq!(payload_of(&inflight), "0");
    assert_eq!(b.count_group("t", "a").unwrap(), 3);
    assert_eq!(b.count_group("t", "b").unwrap(), 4);
    assert_eq!(b.count(Some(&["t"])).unwrap(), 3 + 4, "a topic counts what its groups count");

    // A group or topic that does not exist counts and purges 0, and is not created.
    assert_eq!(b.count_group("t", "nope").unwrap(), 0);
    assert_eq!(b.purge_group("t", "nope").unwrap(), 0);
    assert_eq!(b.count_group("unknown", "a").unwrap(), 0);
    assert_eq!(b.purge_group("unknown", "a").unwrap(), 0);
    assert_eq!(b.count_group("held", "a").unwrap(), 0, "retained messages belong to no group yet");
    assert_eq!(b.purge_group("held", "a").unwrap(), 0);
    let view = b.store_view().unwrap();
    assert!(view.topic("unknown").is_none());
    let names: Vec<_> = view.topic("t").unwrap().groups.iter().map(|g| g.name.clone()).collect();
    assert_eq!(names, ["a", "b"]);
    assert!(view.topic("held").unwrap().groups.is_empty());

    assert_eq!(b.purge_group("t", "a").unwrap(), 3);
    assert_eq!(b.count_group("t", "a").unwrap(), 0);
    assert_eq!(b.count_group("t", "b").unwrap(), 4, "another group keeps its deliveries");
    assert_eq!(b.count(Some(&["held"])).unwrap(), 2, "retained messages stay");
    assert_eq!(b.purge_group("t", "a").unwrap(), 0);
    let a = b.store_view().unwrap().topic("t").unwrap().groups[0].clone();
    assert_eq!((a.name.as_str(), a.depth), ("a", Depth { ready: 0, delayed: 0, in_flight: 1 }));

    // The delivery in flight settles as usual, and the group stays: it gets what comes next.
    b.ack(inflight.id()).unwrap();
    publish(&b, "t", "4");
    assert_eq!(b.count_group("t", "a").unwrap(), 1);
    let next = fetch_now(&b, "t", Some("a")).unwrap();
    assert_eq!(payload_of(&next), "4");
    b.ack(next.id()).unwrap();
    assert_eq!(b.purge_group("t", "b").unwrap(), 5);
    assert_eq!(b.count(Some(&["t"])).unwrap(), 0);

    // Join does not wait for what was purged.
    b.join(Some(LONG)).unwrap();
    let t = b.stats().unwrap().totals;
    assert_eq!((t.dropped, t.processed, t.retained_dropped), (3 + 5, 2, 0));

    for (topic, group, kind) in [("bad name", "a", ErrorKind::InvalidTopic), ("t", "bad name", ErrorKind::InvalidGroup)]
    {
        assert_eq!(b.count_group(topic, group).unwrap_err().kind(), kind);
        assert_eq!(b.purge_group(topic, group).unwrap_err().kind(), kind);
    }
    b.close(Some(LONG), false).unwrap();
    assert_eq!(b.count_group("t", "a").unwrap_err().kind(), ErrorKind::Closed);
    assert_eq!(b.purge_group("t", "a").unwrap_err().kind(), ErrorKind::Closed);
}

fn purge_group_leaves_delayed_requeues_alone(k: &Kit) {
    let b = k.broker(2);
    assert!(fetch_now(&b, "t", Some("g")).is_none());
    publish(&b, "t", "1");
    publish(&b, "t", "2");
    let d = fetch_now(&b, "t", Some("g")).unwrap();
    b.nack(d.id(), true, Some(Duration::from_secs(3600)), None).unwrap();
    assert_eq!(b.count_group("t", "g").unwrap(), 1, "a delayed requeue is not counted");
    assert_eq!(b.purge_group("t", "g").unwrap(), 1);
    // Delayed in the store, or held by the broker until due where the store cannot delay.
    let depth = b.store_view().unwrap().topic("t").unwrap().groups[0].depth;
    assert_eq!((depth.ready, depth.delayed + depth.in_flight), (0, 1));
    b.close(None, true).unwrap();
}

fn group_names_are_validated(k: &Kit) {
    let b = k.broker(2);
    for bad in ["", "has space", "a/b"] {
        assert_eq!(b.fetch("t", Some(bad), Some(Duration::ZERO)).unwrap_err().kind(), ErrorKind::InvalidGroup);
        assert_eq!(
            b.subscribe("t", |_: &Delivery| Verdict::Ack, &SubscribeOptions { group: Some(bad), ..Default::default() })
                .unwrap_err()
                .kind(),
            ErrorKind::InvalidGroup
        );
    }
    assert_eq!(b.fetch("bad topic", None, Some(Duration::ZERO)).unwrap_err().kind(), ErrorKind::InvalidTopic);
}

fn a_named_group_keeps_its_messages_when_its_last_member_leaves(k: &Kit) {
    let b = k.broker(2);
    let sub = b
        .subscribe("t", |_: &Delivery| Verdict::Ack, &SubscribeOptions { group: Some("g"), ..Default::default() })
        .unwrap();
    b.unsubscribe(sub).unwrap();
    publish(&b, "t", "1");
    assert_eq!(b.count(None).unwrap(), 1);
    let d = fetch_now(&b, "t", Some("g")).expect("kept for the group");
    b.ack(d.id()).unwrap();
}

// ---- delivery guarantees: ack deadlines, attempts, dead letters, delays, backpressure -------

fn an_unacked_delivery_is_redelivered_after_its_ack_deadline(k: &Kit) {
    let b = k.broker(2);
    let rec = Rec::default();
    b.add_listener(rec.clone()).unwrap();
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let opts =
        SubscribeOptions { manual_ack: true, ack_deadline: Some(Duration::from_millis(30)), ..Default::default() };
    b.subscribe(
        "t",
        move |d: &Delivery| {
            tx.lock().unwrap().send((d.id(), d.attempt())).unwrap();
            Verdict::Later // and never acks the first attempt
        },
        &opts,
    )
    .unwrap();
    publish(&b, "t", "1");
    let (id, a1) = rx.recv_timeout(LONG).unwrap();
    let (id2, a2) = rx.recv_timeout(LONG).unwrap();
    assert_eq!((id2, a1, a2), (id, 1, 2));
    b.ack(id).unwrap(); // acks the current attempt
    b.join(Some(LONG)).unwrap();
    let t = b.stats().unwrap().totals;
    assert_eq!((t.dispatched, t.expired, t.requeued, t.processed, t.in_flight), (2, 1, 1, 1, 0));
    let events = rec.events.lock().unwrap();
    assert!(events.iter().any(|e| e.contains("true ack deadline of 30 ms passed (attempt 1)")), "{events:?}");
}

fn a_handler_running_past_its_deadline_is_reported_failed_and_its_late_verdict_ignored(k: &Kit) {
    let b = k.broker(2);
    let rec = Rec::default();
    b.add_listener(rec.clone()).unwrap();
    let opts = SubscribeOptions { ack_deadline: Some(Duration::from_millis(20)), concurrency: 2, ..Default::default() };
    b.subscribe(
        "slow",
        |d: &Delivery| {
            if d.attempt() == 1 {
                std::thread::sleep(Duration::from_millis(150));
            }
            Verdict::Ack
        },
        &opts,
    )
    .unwrap();
    publish(&b, "slow", "1");
    b.join(Some(LONG)).unwrap();
    let t = b.stats().unwrap().totals;
    assert_eq!((t.dispatched, t.expired, t.requeued, t.processed, t.failed), (2, 1, 1, 1, 0), "counted once");
    assert!(rec.events.lock().unwrap().iter().any(|e| e.contains("ack deadline of 20 ms passed")));
}

fn past_max_attempts_a_delivery_goes_to_the_dead_letter_topic(k: &Kit) {
    let b = k.broker(2);
    let dead = Arc::new(Mutex::new(Vec::new()));
    let d2 = dead.clone();
    b.subscribe(
        "orders.dlq",
        move |d: &Delivery| {
            d2.lock().unwrap().push((payload_of(d), String::from_utf8(d.metadata().to_vec()).unwrap()));
            Verdict::Ack
        },
        &auto(),
    )
    .unwrap();
    let opts = SubscribeOptions { max_attempts: 3, dead_letter_topic: Some("orders.dlq"), ..Default::default() };
    let attempts = Arc::new(AtomicUsize::new(0));
    let a = attempts.clone();
    b.subscribe(
        "orders",
        move |_: &Delivery| {
            a.fetch_add(1, SeqCst);
            Verdict::Requeue(Some("still broken".into()))
        },
        &opts,
    )
    .unwrap();
    let md = br#"{"trace":"t-1"}"#;
    b.publish("orders", b"{\"n\":7}", &PublishOptions { id: Some("o-7"), metadata: Some(md), ..Default::default() })
        .unwrap();
    b.join(Some(LONG)).unwrap();
    assert_eq!(attempts.load(SeqCst), 3);
    let dead = dead.lock().unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].0, "{\"n\":7}");
    let meta: serde_json::Value = serde_json::from_str(&dead[0].1).unwrap();
    assert_eq!(meta["trace"], "t-1", "original metadata kept");
    assert_eq!(meta["dead_letter"]["topic"], "orders");
    assert_eq!(meta["dead_letter"]["message_id"], "o-7");
    assert_eq!(meta["dead_letter"]["attempts"], 3);
    assert!(meta["dead_letter"]["reason"].as_str().unwrap().contains("still broken"));
    let s = b.stats().unwrap();
    let orders = s.topics.iter().find(|t| t.name == "orders").unwrap();
    assert_eq!((orders.dispatched, orders.requeued, orders.failed, orders.dead_lettered), (3, 2, 1, 1));
}

fn without_a_dead_letter_topic_a_delivery_past_max_attempts_fails(k: &Kit) {
    let b = k.broker(2);
    let opts = SubscribeOptions { max_attempts: 2, ..Default::default() };
    b.subscribe("t", |_: &Delivery| Verdict::Requeue(None), &opts).unwrap();
    publish(&b, "t", "1");
    b.join(Some(LONG)).unwrap();
    let t = b.stats().unwrap().totals;
    assert_eq!((t.dispatched, t.requeued, t.failed, t.dead_lettered), (2, 1, 1, 0));
}

fn a_nack_goes_to_the_dead_letter_topic_when_one_is_set(k: &Kit) {
    let b = k.broker(2);
    assert!(fetch_now(&b, "t.dead", None).is_none());
    let fo = FetchOptions { dead_letter_topic: Some("t.dead"), ..Default::default() };
    publish(&b, "t", "1");
    let d = b.fetch_with("t", &fo, Some(Duration::ZERO)).unwrap().unwrap();
    b.nack(d.id(), false, None, Some("poison".into())).unwrap();
    let dead = fetch_now(&b, "t.dead", None).expect("dead-lettered");
    assert_eq!(payload_of(&dead), "1");
}

fn a_delayed_requeue_comes_back_no_earlier_than_asked(k: &Kit) {
    let b = k.broker(2);
    let times = Arc::new(Mutex::new(Vec::new()));
    let t = times.clone();
    b.subscribe(
        "t",
        move |d: &Delivery| {
            t.lock().unwrap().push(Instant::now());
            if d.attempt() == 1 {
                Verdict::RequeueAfter(Duration::from_millis(60), Some("back off".into()))
            } else {
                Verdict::Ack
            }
        },
        &auto(),
    )
    .unwrap();
    publish(&b, "t", "1");
    eventually("the delay to be counted", || {
        b.stats().unwrap().totals.delayed == 1 || times.lock().unwrap().len() == 2
    });
    b.join(Some(LONG)).unwrap();
    let times = times.lock().unwrap();
    assert_eq!(times.len(), 2);
    assert!(times[1] - times[0] >= Duration::from_millis(60), "came back after {:?}", times[1] - times[0]);
    assert_eq!(b.stats().unwrap().totals.delayed, 0);

    // Through nack too, and close drops what is still delayed.
    publish(&b, "q", "2");
    let d = b.fetch("q", None, Some(Duration::ZERO)).unwrap().unwrap();
    let at = Instant::now();
    b.nack(d.id(), true, Some(Duration::from_millis(40)), None).unwrap();
    let early = fetch_now(&b, "q", None);
    assert!(early.is_none() || at.elapsed() >= Duration::from_millis(40), "not before the delay");
    let again = match early {
        Some(d) => d,
        None => b.fetch("q", None, Some(LONG)).unwrap().unwrap(),
    };
    assert!(at.elapsed() >= Duration::from_millis(40));
    assert_eq!(again.attempt(), 2);
    b.nack(again.id(), true, Some(Duration::from_secs(3600)), None).unwrap();
    let report = b.close(None, true).unwrap();
    if k.is_sqlite() {
        // A named group's delayed delivery stays in the file, for the next broker.
        assert_eq!(report.dropped, 0);
        drop(b);
        #[cfg(feature = "sqlite")]
        {
            let file = rusqlite::Connection::open(k.dir().join("b0.db")).unwrap();
            let delayed: i64 =
                file.query_row("SELECT count(*) FROM deliveries WHERE state = 1", [], |r| r.get(0)).unwrap();
            assert_eq!(delayed, 1);
        }
    } else if let Some(prefix) = k.redis_prefix(0) {
        // The same in Redis: the default group's delayed requeues (see docs/redis.md).
        assert_eq!(report.dropped, 0);
        drop(b);
        let reply = common::redis_server::raw(k.redis_port(), &format!("ZCARD {{{prefix}:q}}:d:n:default"));
        assert_eq!(reply.as_deref(), Some(":1\r\n"));
    } else {
        assert_eq!(report.dropped, 1, "the delayed delivery");
    }
}

fn backpressure_fail_and_drop_bound_a_full_queue(k: &Kit) {
    let cfg = |bp| BrokerConfig { queue_capacity: 3, backpressure: bp, ..Default::default() };
    let fail = k.with(cfg(Backpressure::Fail));
    assert!(fetch_now(&fail, "t", None).is_none());
    for i in 0..3 {
        publish(&fail, "t", &i.to_string());
    }
    let e = fail.publish("t", b"3", &PublishOptions::default()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Full);
    assert_eq!(fail.count(None).unwrap(), 3);

    let drop_ = k.with(cfg(Backpressure::Drop));
    assert!(fetch_now(&drop_, "t", Some("slow")).is_none());
    assert!(fetch_now(&drop_, "t", Some("fast")).is_none());
    for i in 0..3 {
        publish(&drop_, "t", &i.to_string());
    }
    let d = fetch_now(&drop_, "t", Some("fast")).unwrap();
    drop_.ack(d.id()).unwrap();
    publish(&drop_, "t", "3"); // "slow" is full: it misses this one; "fast" gets it
    let t = drop_.stats().unwrap().totals;
    assert_eq!((t.published, t.full_dropped), (4, 1));
    assert_eq!(drop_.count(None).unwrap(), 3 + 3);
}

fn backpressure_block_waits_for_room_up_to_the_timeout(k: &Kit) {
    let cfg = BrokerConfig {
        queue_capacity: 2,
        backpressure: Backpressure::Block,
        publish_timeout: Some(Duration::from_millis(50)),
        ..Default::default()
    };
    let b = k.with(cfg);
    assert!(fetch_now(&b, "t", None).is_none());
    publish(&b, "t", "1");
    publish(&b, "t", "2");
    let t0 = Instant::now();
    assert_eq!(b.publish("t", b"3", &PublishOptions::default()).unwrap_err().kind(), ErrorKind::Full);
    assert!(t0.elapsed() >= Duration::from_millis(50), "waited out the timeout");
    // A publisher blocked on the full queue goes on as soon as a consumer makes room.
    let blocked = {
        let b = b.clone();
        std::thread::spawn(move || {
            let cfg_wait = Instant::now();
            let r = b.publish("t", b"3", &PublishOptions::default()).map(|_| ());
            (r, cfg_wait.elapsed())
        })
    };
    std::thread::sleep(Duration::from_millis(5));
    let d = fetch_now(&b, "t", None).unwrap();
    b.ack(d.id()).unwrap();
    let (r, _) = blocked.join().unwrap();
    // Either it got in after the fetch, or (on a very slow machine) its 50 ms ran out first.
    assert!(r.is_ok() || r.unwrap_err().kind() == ErrorKind::Full);
    assert!(b.count(None).unwrap() <= 2, "the queue never grows past its capacity");
}

fn memory_stays_bounded_under_a_publisher_faster_than_its_consumer(k: &Kit) {
    let cfg = BrokerConfig {
        queue_capacity: 64,
        backpressure: Backpressure::Block,
        publish_timeout: Some(LONG),
        worker_threads: 2,
        ..Default::default()
    };
    let b = k.with(cfg);
    let peak = Arc::new(AtomicU64::new(0));
    let p = peak.clone();
    let weak = b.downgrade();
    b.subscribe(
        "flood",
        move |_: &Delivery| {
            if let Some(b) = weak.upgrade() {
                p.fetch_max(b.count(Some(&["flood"])).unwrap_or(0), SeqCst);
            }
            std::thread::sleep(Duration::from_micros(20));
            Verdict::Ack
        },
        &auto(),
    )
    .unwrap();
    let publishers: Vec<_> = (0..4)
        .map(|_| {
            let b = b.clone();
            std::thread::spawn(move || {
                for i in 0..500 {
                    b.publish("flood", i.to_string().as_bytes(), &PublishOptions::default()).unwrap();
                }
            })
        })
        .collect();
    for p in publishers {
        p.join().unwrap();
    }
    b.join(Some(LONG)).unwrap();
    assert_eq!(b.stats().unwrap().totals.processed, 2000);
    assert!(peak.load(SeqCst) <= 64 + 4, "queue peaked at {}", peak.load(SeqCst));
}

/// A join that times out says what is outstanding: exactly the deliveries handed out and not
/// settled, never a claim a worker has just started (on a shared store a claim counts as
/// outstanding while it runs, but it holds nothing). Repeated: the race is short.
fn a_timed_out_join_reports_what_is_held(k: &Kit) {
    for round in 0..10 {
        let b = k.broker(2);
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&calls);
        let handler = move |_: &Delivery| {
            seen.fetch_add(1, SeqCst);
            Verdict::Later
        };
        b.subscribe("m", handler, &SubscribeOptions { concurrency: 4, ..manual() }).unwrap();
        for _ in 0..4 {
            b.publish("m", b"1", &PublishOptions::default()).unwrap();
        }
        eventually("4 deliveries handed out", || calls.load(SeqCst) == 4);
        let e = b.join(Some(Duration::ZERO)).unwrap_err();
        assert_eq!((e.kind(), e.remaining()), (ErrorKind::Timeout, 4), "round {round}: {e}");
        b.close(Some(LONG), true).unwrap();
    }
}

/// Metadata that publish accepts (a lone surrogate escape, nesting past any parser's recursion
/// limit, number spellings, key order) survives the store and dead-lettering byte for byte:
/// the dead letter's metadata is the original's text with a "dead_letter" member added last.
/// A publish that meets the creation of its topic's first group publishes again under the
/// topic's order lock; if the new group's queue is full (it took over what the topic retained)
/// its backpressure wait must not happen under that lock, or subscribe and unsubscribe on the
/// topic stall for the whole publish timeout. Publishers race the subscribe in every round.
/// A delayed requeue is fetched once due; join returns only after the delayed gauge has
/// caught up. (Shared stores hand a due delivery to a claim before the timer's job, which
/// updates the gauge, may have run: on a loaded machine join returned with `delayed` 1.)
/// Spinning threads load the machine so that the timer thread runs late now and then.
fn join_waits_for_the_delayed_gauge_of_a_requeue_taken_early(k: &Kit) {
    let b = k.broker(1);
    let stop = Arc::new(AtomicBool::new(false));
    let spinners: Vec<_> = (0..3)
        .map(|_| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                while !stop.load(SeqCst) {
                    std::hint::spin_loop();
                }
            })
        })
        .collect();
    let mut failures = Vec::new();
    for round in 0..60 {
        publish(&b, "delay", "1");
        let d = fetch_now(&b, "delay", None).expect("the delivery");
        b.nack(d.id(), true, Some(Duration::from_millis(1)), None).unwrap();
        let again = b.fetch("delay", None, Some(LONG)).unwrap().expect("redelivered after its delay");
        b.ack(again.id()).unwrap();
        b.join(Some(LONG)).unwrap();
        let delayed = b.stats().unwrap().totals.delayed;
        if delayed != 0 {
            failures.push((round, delayed));
        }
    }
    stop.store(true, SeqCst);
    for s in spinners {
        s.join().unwrap();
    }
    assert!(failures.is_empty(), "delayed after join (round, gauge): {failures:?}");
}

/// The counts of every hand-out: after a successful join each has ended exactly once.
fn assert_hand_outs_reconcile(b: &Broker, what: &str) {
    let t = b.stats().unwrap().totals;
    assert_eq!((t.queued, t.in_flight, t.delayed), (0, 0, 0), "{what}: {t:?}");
    assert_eq!(t.dispatched, t.processed + t.failed + t.requeued + t.lapsed, "{what}: {t:?}");
}

/// Ungrouped subscriptions whose handlers requeue, unsubscribed while their handlers run,
/// beside a steady publisher. A requeue that lands after its group was removed must end the
/// delivery (counted dropped and lapsed), not leave it where no consumer and no count finds
/// it: that made every later join time out (about half the rounds, before the fix).
fn requeues_racing_unsubscribe_leave_nothing_behind(k: &Kit) {
    let b = k.broker(4);
    let seconds = std::env::var("BROKK_CHURN_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(2.0);
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = {
        let (b, stop) = (b.clone(), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(SeqCst) {
                b.publish("churn", b"1", &PublishOptions::default()).unwrap();
                n += 1;
            }
            n
        })
    };
    let churners: Vec<_> = (0..2)
        .map(|seed| {
            let b = b.clone();
            std::thread::spawn(move || {
                let mut round = seed;
                while Instant::now() < until {
                    round += 1;
                    let calls = AtomicU64::new(round);
                    let handler = move |_: &Delivery| match calls.fetch_add(1, SeqCst) % 4 {
                        0 => Verdict::Ack,
                        1 => Verdict::Nack(None),
                        _ => Verdict::Requeue(None),
                    };
                    let opts = SubscribeOptions { concurrency: 2, ..Default::default() };
                    let id = b.subscribe("churn", handler, &opts).unwrap();
                    std::thread::sleep(Duration::from_millis(1 + round % 4));
                    b.unsubscribe(id).unwrap();
                }
            })
        })
        .collect();
    for c in churners {
        c.join().unwrap();
    }
    stop.store(true, SeqCst);
    let published = publisher.join().unwrap();
    b.join(Some(Duration::from_secs(20))).unwrap_or_else(|e| panic!("join after {published} publishes: {e}"));
    assert_hand_outs_reconcile(&b, "after churn");
    let report = b.close(Some(LONG), false).unwrap();
    assert_eq!(report.remaining, 0);
}

fn a_publish_waiting_on_backpressure_never_holds_up_subscribe(k: &Kit) {
    let cfg = BrokerConfig {
        queue_capacity: 4,
        backpressure: Backpressure::Block,
        publish_timeout: Some(Duration::from_secs(5)),
        ..Default::default()
    };
    let b = k.with(cfg);
    let mut worst = Duration::ZERO;
    for round in 0..40 {
        let topic = format!("race{round}");
        for _ in 0..4 {
            publish(&b, &topic, "1");
        }
        let stop = Arc::new(AtomicBool::new(false));
        let publishers: Vec<_> = (0..2)
            .map(|_| {
                let (b, topic, stop) = (b.clone(), topic.clone(), Arc::clone(&stop));
                std::thread::spawn(move || {
                    while !stop.load(SeqCst) {
                        if b.publish(&topic, b"2", &PublishOptions::default()).is_err() {
                            break;
                        }
                    }
                })
            })
            .collect();
        // The group takes over the 4 retained messages: full at once. Nobody consumes it.
        let (gate_tx, gate_rx) = mpsc::channel::<()>();
        let gate_rx = Mutex::new(gate_rx);
        let sub = SubscribeOptions { group: Some("g"), ..Default::default() };
        let first = b
            .subscribe(
                &topic,
                move |_: &Delivery| {
                    let _ = gate_rx.lock().unwrap().recv();
                    Verdict::Ack
                },
                &sub,
            )
            .unwrap();
        std::thread::sleep(Duration::from_millis(20));
        // Publishers now wait for room. A second subscribe on the topic must not wait for them.
        let t0 = Instant::now();
        let second = b.subscribe(&topic, |_: &Delivery| Verdict::Ack, &auto()).unwrap();
        b.unsubscribe(second).unwrap();
        worst = worst.max(t0.elapsed());
        // Room for the waiting publishers' last publish each, then they see the stop.
        stop.store(true, SeqCst);
        drop(gate_tx);
        b.purge(Some(&[topic.as_str()])).unwrap();
        for p in publishers {
            p.join().unwrap();
        }
        b.unsubscribe(first).unwrap();
        b.purge(Some(&[topic.as_str()])).unwrap();
    }
    assert!(worst < Duration::from_secs(2), "subscribe waited {worst:?} behind a blocked publish");
}

fn odd_metadata_survives_every_path_byte_for_byte(k: &Kit) {
    let b = k.broker(2);
    let deep = format!("{}1{}", "[".repeat(130), "]".repeat(130));
    let cases = [
        r#"{"s":"\ud800"}"#.to_owned(),
        format!(r#"{{"deep":{deep}}}"#),
        r#"{ "z" : 1.50e+3 , "a":-0 }"#.to_owned(),
        r#"{"dead_letter":"an earlier one","keep":true}"#.to_owned(),
    ];
    for (i, md) in cases.iter().enumerate() {
        let opts = PublishOptions { metadata: Some(md.as_bytes()), ..Default::default() };
        b.publish("odd", b"1", &opts).unwrap();
        let d = fetch_now(&b, "odd", None).expect("the delivery");
        assert_eq!(d.metadata(), md.as_bytes(), "case {i}: stored and read back");
        let fo = FetchOptions { dead_letter_topic: Some("odd.dead"), ..Default::default() };
        b.publish("odd", b"1", &opts).unwrap();
        let d = b.fetch_with("odd", &fo, Some(Duration::ZERO)).unwrap().expect("the delivery");
        b.nack(d.id(), false, None, None).unwrap();
        let dead = fetch_now(&b, "odd.dead", None).expect("the dead letter");
        let text = std::str::from_utf8(dead.metadata()).unwrap();
        let kept = if i == 3 { r#"{"keep":true"# } else { md[..md.rfind('}').unwrap()].trim_end() };
        assert!(text.starts_with(kept), "case {i}: {text}");
        assert!(text.contains(r#""dead_letter":{"#), "case {i}: {text}");
        assert_eq!(text.matches("dead_letter").count(), 1, "case {i}: {text}");
        b.ack(dead.id()).unwrap();
    }
}

fn a_delivery_id_of_another_broker_settles_nothing(k: &Kit) {
    let (a, b) = (k.broker(1), k.broker(1));
    for broker in [&a, &b] {
        publish(broker, "ids", "1");
    }
    let da = fetch_now(&a, "ids", None).expect("a's delivery");
    let db = fetch_now(&b, "ids", None).expect("b's delivery");
    assert_ne!(da.id(), db.id(), "two brokers never hand out the same delivery id");
    for (wrong, id) in [(&b, da.id()), (&a, db.id())] {
        assert_eq!(wrong.ack(id).unwrap_err().kind(), ErrorKind::UnknownDelivery);
        assert_eq!(wrong.nack(id, true, None, None).unwrap_err().kind(), ErrorKind::UnknownDelivery);
        let (acked, failure) = wrong.ack_batch(&[id]);
        assert_eq!((acked, failure.map(|(i, e)| (i, e.kind()))), (0, Some((0, ErrorKind::UnknownDelivery))));
    }
    // Both deliveries still await their own broker's ack.
    a.ack(da.id()).unwrap();
    b.ack(db.id()).unwrap();
    assert_eq!(a.ack(da.id()).unwrap_err().kind(), ErrorKind::AlreadySettled);
    for broker in [&a, &b] {
        broker.join(Some(LONG)).unwrap();
        let s = broker.stats().unwrap().totals;
        assert_eq!((s.processed, s.failed), (1, 0));
    }
}

/// A blocked fetch, take and join each return `Cancelled` as soon as their token is cancelled
/// from another thread, having done nothing: the message published after is still there for
/// the next fetch, and a token already cancelled stops a call before it starts.
fn a_cancelled_token_interrupts_a_blocked_fetch_take_and_join(kit: &Kit) {
    let broker = kit.broker(2);
    let opts = FetchOptions { group: Some("w"), ..Default::default() };
    assert!(broker.fetch_batch("jobs", &opts, 1, Some(Duration::ZERO)).unwrap().is_empty());
    // A delivery held unacked, so that join has a reason to wait.
    let hold = FetchOptions { group: Some("h"), ..Default::default() };
    assert!(broker.fetch_with("held", &hold, Some(Duration::ZERO)).unwrap().is_none());
    publish(&broker, "held", "1");
    let held = broker.fetch_with("held", &hold, Some(LONG)).unwrap().expect("the held delivery");
    for call in ["fetch", "take", "join"] {
        let cancel = Cancel::new();
        let started = Instant::now();
        let result = std::thread::scope(|s| {
            let waiting = s.spawn(|| match call {
                "fetch" => broker.fetch_batch_until("jobs", &opts, 4, None, Some(&cancel)).map(|_| ()),
                "take" => broker.take_until("jobs", Some("w"), None, Some(&cancel)).map(|_| ()),
                _ => broker.join_until(None, Some(&cancel)),
            });
            std::thread::sleep(Duration::from_millis(50));
            cancel.cancel();
            waiting.join().unwrap()
        });
        let err = result.expect_err(call);
        assert_eq!(err.kind(), ErrorKind::Cancelled, "{call}: {err}");
        assert!(started.elapsed() < LONG, "{call}");
        // Already cancelled: fails at once, whatever the timeout.
        assert_eq!(broker.take_until("jobs", Some("w"), None, Some(&cancel)).unwrap_err().kind(), ErrorKind::Cancelled);
        cancel.reset();
        assert!(broker.take_until("jobs", Some("w"), Some(Duration::ZERO), Some(&cancel)).unwrap().is_none());
    }
    publish(&broker, "jobs", "\"after\"");
    let d = broker.fetch_with("jobs", &opts, Some(LONG)).unwrap().expect("nothing was taken by the cancelled calls");
    assert_eq!(d.payload(), b"\"after\"");
    broker.ack(d.id()).unwrap();
    broker.ack(held.id()).unwrap();
    broker.join(Some(LONG)).unwrap();
}

/// A token's check is asked while a call waits, on the waiting thread, and stops the call once
/// it says so (how CPython's Ctrl-C reaches a blocked call).
fn a_token_check_stops_a_waiting_take(kit: &Kit) {
    let broker = kit.broker(1);
    let asked = Arc::new(AtomicUsize::new(0));
    let a = Arc::clone(&asked);
    let caller = std::thread::current().id();
    let cancel = Cancel::with_check(Duration::from_millis(10), move || {
        assert_eq!(std::thread::current().id(), caller, "the check runs on the waiting thread");
        a.fetch_add(1, SeqCst) >= 5
    });
    let err = broker.take_until("jobs", None, None, Some(&cancel)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cancelled);
    assert!(asked.load(SeqCst) >= 6);
    assert!(cancel.is_cancelled());
}

/// `take_until` hands back a payload of any size, past what any caller's buffer would hold.
fn take_until_returns_a_payload_of_any_size(kit: &Kit) {
    let broker = kit.with(BrokerConfig { max_payload_bytes: 8 << 20, ..Default::default() });
    let big = format!("\"{}\"", "x".repeat(3 << 20));
    assert!(broker.take_until("big", None, Some(Duration::ZERO), None).unwrap().is_none());
    publish(&broker, "big", &big);
    let d = broker.take_until("big", None, Some(LONG), None).unwrap().expect("the payload");
    assert_eq!(d.payload(), big.as_bytes());
    assert_eq!(broker.count(None).unwrap(), 0);
}

// ---- peek -----------------------------------------------------------------------------------

/// (payload, attempt) of each peeked delivery.
fn peeked(b: &Broker, topic: &str, group: Option<&str>, max: usize) -> Vec<(String, u32)> {
    let shown = b.peek(topic, group, max).unwrap();
    shown.iter().map(|p| (String::from_utf8(p.message().payload().to_vec()).unwrap(), p.attempt())).collect()
}

/// What stats say, less the uptime.
fn counters(b: &Broker) -> (brokk_core::TopicStats, Vec<brokk_core::TopicStats>) {
    let s = b.stats().unwrap();
    (s.totals, s.topics)
}

fn peek_shows_what_fetches_would_get_in_order_and_takes_nothing(k: &Kit) {
    let b = k.broker(2);
    let owned = |v: &[(&str, u32)]| v.iter().map(|&(p, a)| (p.to_owned(), a)).collect::<Vec<_>>();
    let rec = Rec::default();
    b.add_listener(rec.clone()).unwrap();
    // Nothing to show, and nothing made: no topic, no group, no event.
    assert!(peeked(&b, "jobs", None, 10).is_empty());
    assert!(peeked(&b, "jobs", Some("ghost"), 10).is_empty());
    assert!(b.stats().unwrap().topics.is_empty(), "peek created no topic");
    b.join(Some(LONG)).unwrap(); // every listener event delivered
    assert!(rec.events.lock().unwrap().is_empty(), "{:?}", rec.events.lock().unwrap());
    assert!(fetch_now(&b, "jobs", None).is_none()); // makes the default group
    for (p, prio_) in [("1", 0), ("2", 5), ("3", 0), ("4", -2), ("5", 5), ("6", 9)] {
        prio(&b, "jobs", p, prio_);
    }
    eventually("the publishes heard", || rec.events.lock().unwrap().len() == 7);
    let before = counters(&b);
    let all = owned(&[("6", 1), ("2", 1), ("5", 1), ("1", 1), ("3", 1), ("4", 1)]);
    assert_eq!(peeked(&b, "jobs", None, 10), all);
    assert_eq!(peeked(&b, "jobs", Some(brokk_core::DEFAULT_GROUP), 10), all);
    assert_eq!(peeked(&b, "jobs", None, 2), all[..2]);
    let first = b.peek("jobs", None, 1).unwrap().remove(0);
    assert_eq!((first.message().priority(), first.message().topic()), (9, "jobs"));
    assert_eq!(counters(&b), before, "peek changed no counter");
    // The group peek did not find was not created: it gets no copy of what is published.
    assert!(peeked(&b, "jobs", Some("ghost"), 10).is_empty());
    assert_eq!(b.count(Some(&["jobs"])).unwrap(), 6);

    // Events come in order: one that peek caused would come before this publish's.
    let marker = publish(&b, "marker", "1");
    eventually("the marker heard", || rec.events.lock().unwrap().len() >= 9);
    assert_eq!(rec.events.lock().unwrap()[7..], ["topic marker".to_owned(), format!("publish marker {marker}")]);
    // A fetch after peeks gets the first one, at its first attempt; in flight, it is not shown.
    let d = fetch_now(&b, "jobs", None).unwrap();
    assert_eq!((payload_of(&d), d.attempt()), ("6".to_owned(), 1));
    assert_eq!(peeked(&b, "jobs", None, 10), all[1..]);
    // Requeued with a delay still to run: not shown.
    b.nack(d.id(), true, Some(Duration::from_secs(3600)), None).unwrap();
    assert_eq!(peeked(&b, "jobs", None, 10), all[1..]);
    // Requeued now: at the back of its priority, at its next attempt.
    let d = fetch_now(&b, "jobs", None).unwrap();
    b.nack(d.id(), true, None, None).unwrap();
    assert_eq!(peeked(&b, "jobs", None, 10), owned(&[("5", 1), ("2", 2), ("1", 1), ("3", 1), ("4", 1)]));
    // A delay that ran out: behind those, as a fetch would find it.
    let d = fetch_now(&b, "jobs", None).unwrap();
    b.nack(d.id(), true, Some(Duration::from_millis(1)), None).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let expected = owned(&[("2", 2), ("5", 2), ("1", 1), ("3", 1), ("4", 1)]);
    assert_eq!(peeked(&b, "jobs", None, 10), expected);
    let mut fetched = Vec::new();
    while let Some(d) = fetch_now(&b, "jobs", None) {
        fetched.push((payload_of(&d), d.attempt()));
        b.ack(d.id()).unwrap();
    }
    assert_eq!(fetched, expected, "fetches got what peek showed, in its order");
    assert!(peeked(&b, "jobs", None, 10).is_empty());

    // Bounds and names.
    let refused = |r: brokk_core::Result<Vec<brokk_core::Peeked>>| r.unwrap_err().kind();
    assert_eq!(refused(b.peek("jobs", None, 0)), ErrorKind::InvalidArgument);
    assert_eq!(refused(b.peek("jobs", None, brokk_core::MAX_PEEK + 1)), ErrorKind::InvalidArgument);
    assert!(b.peek("jobs", None, brokk_core::MAX_PEEK).unwrap().is_empty());
    assert_eq!(refused(b.peek("", None, 1)), ErrorKind::InvalidTopic);
    assert_eq!(refused(b.peek("bad topic", None, 1)), ErrorKind::InvalidTopic);
    assert_eq!(refused(b.peek("jobs", Some("bad group"), 1)), ErrorKind::InvalidGroup);
    b.close(None, true).unwrap();
    assert_eq!(refused(b.peek("jobs", None, 1)), ErrorKind::Closed);
}

/// A topic with no group at all retains what is published (see "Retention"), and the first
/// named group takes it over: peek of any group there shows what that group would get, in the
/// order it would get it, without making the group. Once a named group exists, another one
/// would get only later messages: its peek is empty.
fn peek_of_a_topic_without_groups_shows_what_its_first_group_would_take_over(k: &Kit) {
    let b = k.broker(2);
    let owned = |v: &[&str]| v.iter().map(|&p| (p.to_owned(), 1)).collect::<Vec<(String, u32)>>();
    for (p, prio_) in [("1", 0), ("2", 5), ("3", 0), ("4", -2), ("5", 5)] {
        prio(&b, "dlq", p, prio_);
    }
    let order = owned(&["2", "5", "1", "3", "4"]);
    assert_eq!(peeked(&b, "dlq", None, 10), order);
    assert_eq!(peeked(&b, "dlq", Some("auditors"), 10), order);
    assert_eq!(peeked(&b, "dlq", Some("auditors"), 3), order[..3]);
    // Nothing made: still no group, so what comes next is retained too.
    let view = b.store_view().unwrap();
    let dlq = view.topic("dlq").expect("the topic");
    assert_eq!((dlq.retained, dlq.groups.len(), dlq.anonymous_groups), (5, 0, 0), "{view:?}");
    prio(&b, "dlq", "6", 5);
    let order = owned(&["2", "5", "6", "1", "3", "4"]);
    assert_eq!(peeked(&b, "dlq", Some("auditors"), 10), order);
    assert_eq!(b.count(Some(&["dlq"])).unwrap(), 6);
    // An ungrouped subscription does not take them over: they stay retained, and shown.
    let sub = b.subscribe("dlq", |_: &Delivery| Verdict::Ack, &auto()).unwrap();
    prio(&b, "dlq", "7", 9); // the subscription's only
    assert_eq!(peeked(&b, "dlq", Some("auditors"), 10), order);
    b.unsubscribe(sub).unwrap();
    // The first named group gets what peek showed, in its order.
    let mut fetched = Vec::new();
    while let Some(d) = fetch_now(&b, "dlq", Some("auditors")) {
        fetched.push((payload_of(&d), d.attempt()));
        b.ack(d.id()).unwrap();
    }
    assert_eq!(fetched, order, "the first group got what peek showed, in its order");
    // Now a second named group would start empty.
    prio(&b, "dlq", "8", 0);
    assert!(peeked(&b, "dlq", Some("latecomers"), 10).is_empty());
    assert_eq!(peeked(&b, "dlq", Some("auditors"), 10), owned(&["8"]));
    assert_eq!(b.store_view().unwrap().topic("dlq").unwrap().groups.len(), 1, "peek made no group");
    // Many (more than a store reads at once): every priority-1 message first, in publish
    // order, then the priority-0 ones.
    let payloads: Vec<String> = (0..600).map(|i| i.to_string()).collect();
    let batch: Vec<BatchMessage<'_>> = payloads
        .iter()
        .enumerate()
        .map(|(i, p)| BatchMessage {
            payload: p.as_bytes(),
            options: PublishOptions { priority: i32::from(i % 3 == 2), ..Default::default() },
        })
        .collect();
    b.publish_batch("many", &batch).unwrap();
    let high = (0..600).filter(|i| i % 3 == 2);
    let low = (0..600).filter(|i| i % 3 != 2);
    let expected: Vec<(String, u32)> = high.chain(low).take(250).map(|i| (i.to_string(), 1)).collect();
    assert_eq!(peeked(&b, "many", None, 250), expected);
    assert_eq!(peeked(&b, "many", None, 5), expected[..5]);
    b.close(None, true).unwrap();
}

// ---- store view -----------------------------------------------------------------------------

/// The store view lists every topic the store holds, by name, with what it retains and per
/// group its deliveries by state, and changes nothing.
fn the_store_view_shows_every_topic_and_group_by_state_and_changes_nothing(k: &Kit) {
    let b = k.broker(2);
    assert_eq!(b.store_view().unwrap().topics, [], "a new store holds no topic");
    for i in 0..3 {
        publish(&b, "held", &i.to_string());
    }
    assert!(fetch_now(&b, "jobs", Some("w")).is_none()); // makes the group
                                                         // An ungrouped subscription that holds what it gets (manual ack, never acked here).
    let (tx, rx) = std::sync::mpsc::channel();
    let tx = Mutex::new(tx);
    let sub = b
        .subscribe(
            "jobs",
            move |d: &Delivery| {
                let _ = tx.lock().unwrap().send(d.id());
                Verdict::Later
            },
            &SubscribeOptions { concurrency: 4, ..manual() },
        )
        .unwrap();
    for i in 0..4 {
        publish(&b, "jobs", &i.to_string());
    }
    let held = fetch_now(&b, "jobs", Some("w")).unwrap();
    let delayed = fetch_now(&b, "jobs", Some("w")).unwrap();
    b.nack(delayed.id(), true, Some(Duration::from_secs(3600)), None).unwrap();
    let anonymous: Vec<u64> = (0..4).map(|_| rx.recv_timeout(LONG).unwrap()).collect();

    let before = counters(&b);
    let view = b.store_view().unwrap();
    assert_eq!(counters(&b), before, "the view changed no counter");
    assert_eq!(
        view.backend,
        if k.is_sqlite() {
            "sqlite"
        } else if k.durable() {
            "redis"
        } else {
            "memory"
        }
    );
    let names: Vec<&str> = view.topics.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["held", "jobs"]);
    let held_topic = view.topic("held").unwrap();
    assert_eq!((held_topic.retained, held_topic.groups.len(), held_topic.anonymous_groups), (3, 0, 0));
    let jobs = view.topic("jobs").unwrap();
    assert_eq!(jobs.retained, 0);
    assert_eq!(
        jobs.groups,
        [GroupView { name: "w".into(), depth: Depth { ready: 2, delayed: 1, in_flight: 1 } }],
        "{view:?}"
    );
    assert_eq!(jobs.anonymous_groups, 1);
    assert_eq!(jobs.anonymous, Depth { ready: 0, delayed: 0, in_flight: 4 });
    assert_eq!(jobs.waiting(), b.count(Some(&["jobs"])).unwrap());
    assert_eq!(held_topic.waiting(), b.count(Some(&["held"])).unwrap());

    let doc: serde_json::Value = serde_json::from_str(&view.to_json()).unwrap();
    assert_eq!(doc["topics"]["held"]["retained"], 3);
    assert_eq!(doc["topics"]["jobs"]["groups"]["w"], serde_json::json!({"ready": 2, "delayed": 1, "in_flight": 1}));
    assert_eq!(doc["topics"]["jobs"]["anonymous_groups"], 1);
    assert_eq!(doc["topics"]["jobs"]["anonymous"]["in_flight"], 4);
    let prom = view.to_prometheus();
    assert!(prom.contains("\nbrokk_store_deliveries_ready{topic=\"jobs\",group=\"w\"} 2\n"), "{prom}");
    assert!(prom.contains("\nbrokk_store_messages_retained{topic=\"held\"} 3\n"), "{prom}");

    // Settled: the figures follow.
    b.ack(held.id()).unwrap();
    for id in anonymous {
        b.ack(id).unwrap();
    }
    let jobs = b.store_view().unwrap().topic("jobs").unwrap().clone();
    assert_eq!(jobs.groups[0].depth, Depth { ready: 2, delayed: 1, in_flight: 0 });
    assert_eq!(jobs.anonymous, Depth::default());
    b.unsubscribe(sub).unwrap();
    b.close(None, true).unwrap();
    assert_eq!(b.store_view().unwrap_err().kind(), ErrorKind::Closed);
}

on_every_backend!(
    peek_shows_what_fetches_would_get_in_order_and_takes_nothing,
    peek_of_a_topic_without_groups_shows_what_its_first_group_would_take_over,
    the_store_view_shows_every_topic_and_group_by_state_and_changes_nothing,
    a_cancelled_token_interrupts_a_blocked_fetch_take_and_join,
    a_token_check_stops_a_waiting_take,
    take_until_returns_a_payload_of_any_size,
    join_waits_for_the_delayed_gauge_of_a_requeue_taken_early,
    requeues_racing_unsubscribe_leave_nothing_behind,
    a_publish_waiting_on_backpressure_never_holds_up_subscribe,
    odd_metadata_survives_every_path_byte_for_byte,
    a_delivery_id_of_another_broker_settles_nothing,
    a_timed_out_join_reports_what_is_held,
    fan_out_gives_each_subscription_its_own_delivery_of_shared_bytes,
    payload_and_metadata_arrive_byte_for_byte,
    concurrency_one_is_strictly_fifo,
    concurrency_limit_is_respected_and_everything_delivered_once,
    requeue_redelivers_with_the_next_attempt_then_acks,
    nack_and_panic_count_as_failed_with_reasons,
    manual_ack_from_another_thread_and_from_inside_the_handler,
    nack_with_requeue_redelivers_manual_deliveries,
    auto_ack_deliveries_cannot_be_acked_again,
    messages_without_a_group_are_retained_or_unrouted_and_never_block_join,
    bad_input_is_refused_and_changes_nothing,
    handlers_may_call_back_into_the_broker,
    listeners_see_every_event_by_the_time_join_returns,
    a_slow_or_panicking_listener_never_holds_up_delivery,
    join_and_close_time_out_on_a_blocked_handler_and_never_hang,
    force_close_drops_everything_at_once,
    the_log_hears_listener_overflow_and_close_reports_at_their_levels,
    nothing_runs_after_the_last_handle_is_dropped,
    dropping_the_last_handle_inside_a_handler_finishes_teardown_later,
    unsubscribe_drops_waiting_deliveries_and_runs_the_finaliser_once,
    counts_reconcile_under_concurrent_load_and_churn,
    publishers_racing_close_get_ok_or_closed_and_counts_reconcile,
    fetch_takes_highest_priority_first_and_fifo_within_a_priority,
    fetch_batch_takes_in_order_and_ack_batch_settles_all_but_the_bad_ids,
    take_acks_as_it_takes_in_priority_order_and_leaves_nothing_held,
    concurrent_takers_get_each_message_exactly_once,
    a_take_waits_up_to_its_timeout,
    push_subscriptions_take_priorities_in_order_too,
    fetch_blocks_until_a_message_or_the_timeout,
    a_blocked_fetch_returns_closed_when_the_broker_closes,
    members_of_a_group_compete_and_groups_each_get_a_copy,
    the_first_named_group_takes_over_retained_messages_in_order,
    retention_policies_bound_what_a_topic_keeps,
    fetched_deliveries_are_acked_nacked_and_requeued_like_pushed_ones,
    batch_publish_is_all_or_nothing_and_keeps_order,
    count_and_purge_cover_retained_and_queued_messages,
    purge_group_discards_one_groups_queue_and_leaves_the_rest,
    purge_group_leaves_delayed_requeues_alone,
    group_names_are_validated,
    a_named_group_keeps_its_messages_when_its_last_member_leaves,
    an_unacked_delivery_is_redelivered_after_its_ack_deadline,
    a_handler_running_past_its_deadline_is_reported_failed_and_its_late_verdict_ignored,
    past_max_attempts_a_delivery_goes_to_the_dead_letter_topic,
    without_a_dead_letter_topic_a_delivery_past_max_attempts_fails,
    a_nack_goes_to_the_dead_letter_topic_when_one_is_set,
    a_delayed_requeue_comes_back_no_earlier_than_asked,
    backpressure_fail_and_drop_bound_a_full_queue,
    backpressure_block_waits_for_room_up_to_the_timeout,
    memory_stays_bounded_under_a_publisher_faster_than_its_consumer,
);
