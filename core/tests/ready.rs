//! Readiness waiters (`Broker::when_ready`, `forget_ready`) on every backend: a consumer told
//! when a group may have a delivery, that waits with no thread of its own. Every wait is
//! bounded; nothing asserts on timing.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use brokk_core::{Broker, BrokerConfig, ErrorKind, PublishOptions, Readiness, ReadyWait};
use common::Kit;

const LONG: Duration = Duration::from_secs(30);
/// How long a test waits for something that must not happen.
const QUIET: Duration = Duration::from_millis(100);

fn publish(b: &Broker, topic: &str, payload: &str) {
    b.publish(topic, payload.as_bytes(), &PublishOptions::default()).unwrap();
}

/// Arms a waiter whose firings arrive on the returned channel; panics if the answer was known
/// at once.
fn arm(b: &Broker, topic: &str, group: Option<&str>) -> (u64, mpsc::Receiver<Readiness>) {
    let (tx, rx) = mpsc::channel();
    match b.when_ready(topic, group, move |r| tx.send(r).unwrap()).unwrap() {
        ReadyWait::Armed(id) => (id, rx),
        ReadyWait::Now(r) => panic!("expected to arm a waiter, got {r:?} at once"),
    }
}

fn fires_on_publish_once_and_a_fetch_then_finds_the_delivery(k: &Kit) {
    let b = k.broker(1);
    let (id, rx) = arm(&b, "jobs", Some("g"));
    publish(&b, "jobs", "1");
    assert_eq!(rx.recv_timeout(LONG).unwrap(), Readiness::Ready);
    let d = b.fetch("jobs", Some("g"), Some(Duration::ZERO)).unwrap().expect("the delivery it announced");
    b.ack(d.id()).unwrap();
    // Exactly once: a second publish does not fire it again, and it says it fired.
    publish(&b, "jobs", "2");
    assert!(rx.recv_timeout(QUIET).is_err());
    assert!(b.forget_ready("jobs", Some("g"), id).unwrap());
    // The sender went with the closure: nothing more can come.
    assert!(matches!(rx.recv_timeout(QUIET), Err(mpsc::RecvTimeoutError::Disconnected)));
}

fn a_queued_delivery_is_reported_at_once_and_nothing_is_armed(k: &Kit) {
    let b = k.broker(1);
    // The group exists (created by a fetch), so the publish queues for it.
    assert!(b.fetch("jobs", None, Some(Duration::ZERO)).unwrap().is_none());
    publish(&b, "jobs", "1");
    let ran = Arc::new(AtomicUsize::new(0));
    let r = Arc::clone(&ran);
    assert_eq!(
        b.when_ready("jobs", None, move |_| {
            r.fetch_add(1, SeqCst);
        })
        .unwrap(),
        ReadyWait::Now(Readiness::Ready)
    );
    assert_eq!(ran.load(SeqCst), 0, "a waiter answered at once is never run");
}

fn a_forgotten_waiter_never_fires(k: &Kit) {
    let b = k.broker(1);
    let (id, rx) = arm(&b, "jobs", None);
    assert!(!b.forget_ready("jobs", None, id).unwrap(), "it was still armed");
    publish(&b, "jobs", "1");
    b.close(Some(LONG), true).unwrap();
    assert!(matches!(rx.recv_timeout(QUIET), Err(mpsc::RecvTimeoutError::Disconnected)));
}

fn close_fires_every_waiter_with_closed(k: &Kit) {
    let b = k.broker(1);
    let waiters: Vec<_> = (0..5).map(|_| arm(&b, "jobs", Some("g"))).collect();
    b.close(Some(LONG), false).unwrap();
    for (_, rx) in &waiters {
        assert_eq!(rx.recv_timeout(LONG).unwrap(), Readiness::Closed);
        assert!(rx.recv_timeout(Duration::from_millis(5)).is_err(), "exactly once");
    }
    assert_eq!(b.when_ready("jobs", Some("g"), |_| {}).unwrap(), ReadyWait::Now(Readiness::Closed));
}

fn dropping_the_broker_fires_closed(k: &Kit) {
    let b = k.broker(1);
    let (_, rx) = arm(&b, "jobs", None);
    drop(b);
    assert_eq!(rx.recv_timeout(LONG).unwrap(), Readiness::Closed);
}

fn one_delivery_fires_one_waiter_and_forgetting_a_fired_one_hands_it_on(k: &Kit) {
    let b = k.broker(1);
    let (first, rx1) = arm(&b, "jobs", None);
    let (second, rx2) = arm(&b, "jobs", None);
    publish(&b, "jobs", "1");
    assert_eq!(rx1.recv_timeout(LONG).unwrap(), Readiness::Ready, "oldest first");
    if k.durable() {
        // A shared store's poller wakes watched groups that still have work every few
        // milliseconds (a spurious wake-up for all but one of them), so the second fires too.
        assert_eq!(rx2.recv_timeout(LONG).unwrap(), Readiness::Ready);
        assert!(b.forget_ready("jobs", None, first).unwrap());
    } else {
        assert!(rx2.recv_timeout(QUIET).is_err(), "one delivery, one waiter");
        // The first consumer gives up without fetching: its notification goes to the second.
        assert!(b.forget_ready("jobs", None, first).unwrap());
        assert_eq!(rx2.recv_timeout(LONG).unwrap(), Readiness::Ready);
    }
    assert!(b.fetch("jobs", None, Some(Duration::ZERO)).unwrap().is_some());
    assert!(b.forget_ready("jobs", None, second).unwrap());
}

fn a_waiter_fires_for_a_publish_from_another_broker_on_the_same_store(k: &Kit) {
    if !k.durable() {
        return; // memory: brokers share nothing
    }
    let config = k.config(BrokerConfig { worker_threads: 1, ..Default::default() });
    let consumer = Broker::with_config(&config).unwrap();
    let producer = Broker::with_config(&config).unwrap();
    let (_, rx) = arm(&consumer, "jobs", Some("g"));
    // The producer knows the group from the store.
    publish(&producer, "jobs", "\"from afar\"");
    assert_eq!(rx.recv_timeout(LONG).unwrap(), Readiness::Ready, "the poller saw the other broker's work");
    let d = consumer.fetch("jobs", Some("g"), Some(Duration::ZERO)).unwrap().expect("the delivery");
    assert_eq!(d.payload(), b"\"from afar\"");
    consumer.ack(d.id()).unwrap();
}

fn bad_names_are_refused(k: &Kit) {
    let b = k.broker(1);
    assert_eq!(b.when_ready("", None, |_| {}).unwrap_err().kind(), ErrorKind::InvalidTopic);
    assert_eq!(b.when_ready("t", Some("no spaces"), |_| {}).unwrap_err().kind(), ErrorKind::InvalidGroup);
    assert_eq!(b.forget_ready("t", Some("no spaces"), 1).unwrap_err().kind(), ErrorKind::InvalidGroup);
    // An id never issued there has, as far as anyone can tell, fired.
    assert!(b.forget_ready("t", None, u64::MAX).unwrap());
}

fn many_waiters_and_many_deliveries_each_delivery_is_fetched_once(k: &Kit) {
    let b = k.broker(1);
    let fired = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::channel::<()>();
    for _ in 0..20 {
        let f = Arc::clone(&fired);
        let tx = tx.clone();
        let armed = b
            .when_ready("jobs", Some("g"), move |r| {
                assert_eq!(r, Readiness::Ready);
                f.fetch_add(1, SeqCst);
                tx.send(()).unwrap();
            })
            .unwrap();
        assert!(matches!(armed, ReadyWait::Armed(_)));
    }
    drop(tx);
    for i in 0..20 {
        publish(&b, "jobs", &i.to_string());
    }
    for _ in 0..20 {
        rx.recv_timeout(LONG).unwrap();
    }
    let mut got = 0;
    while let Some(d) = b.fetch("jobs", Some("g"), Some(Duration::ZERO)).unwrap() {
        b.ack(d.id()).unwrap();
        got += 1;
    }
    assert_eq!(got, 20);
    assert_eq!(fired.load(SeqCst), 20, "every waiter fired, once");
}

fn a_delayed_requeue_fires_a_waiter_when_it_comes_due(k: &Kit) {
    let b = k.broker(1);
    publish(&b, "jobs", "1");
    let d = b.fetch("jobs", None, Some(LONG)).unwrap().expect("the delivery");
    b.nack(d.id(), true, Some(Duration::from_millis(50)), None).unwrap();
    // Nothing is ready until the delay runs out (the timer's, or the poller's on a shared store).
    let (_, rx) = arm(&b, "jobs", None);
    assert_eq!(rx.recv_timeout(LONG).unwrap(), Readiness::Ready);
    let again = b.fetch("jobs", None, Some(LONG)).unwrap().expect("the requeued delivery");
    assert_eq!(again.attempt(), 2);
    b.ack(again.id()).unwrap();
}

/// Arming races a publish on another thread, many times: each time the waiter fires, or the
/// delivery is reported at once; never neither (a lost wake-up would hang the recv).
fn arming_racing_a_publish_never_loses_the_wake_up(k: &Kit) {
    let b = k.broker(1);
    for i in 0..200 {
        let publisher = {
            let b = b.clone();
            std::thread::spawn(move || publish(&b, "race", &i.to_string()))
        };
        let (tx, rx) = mpsc::channel();
        match b.when_ready("race", None, move |r| tx.send(r).unwrap()).unwrap() {
            ReadyWait::Now(r) => assert_eq!(r, Readiness::Ready),
            ReadyWait::Armed(_) => assert_eq!(rx.recv_timeout(LONG).unwrap(), Readiness::Ready),
        }
        publisher.join().unwrap();
        let d = b.fetch("race", None, Some(LONG)).unwrap().expect("the delivery");
        b.ack(d.id()).unwrap();
    }
}

on_every_backend!(
    fires_on_publish_once_and_a_fetch_then_finds_the_delivery,
    a_queued_delivery_is_reported_at_once_and_nothing_is_armed,
    a_forgotten_waiter_never_fires,
    close_fires_every_waiter_with_closed,
    dropping_the_broker_fires_closed,
    one_delivery_fires_one_waiter_and_forgetting_a_fired_one_hands_it_on,
    a_waiter_fires_for_a_publish_from_another_broker_on_the_same_store,
    bad_names_are_refused,
    many_waiters_and_many_deliveries_each_delivery_is_fetched_once,
    a_delayed_requeue_fires_a_waiter_when_it_comes_due,
    arming_racing_a_publish_never_loses_the_wake_up,
);
