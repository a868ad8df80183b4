//! What the core emulates or refuses for a store that declares less than everything
//! (`store::Capabilities`), on a memory store that declares, and keeps to, less: it refuses a
//! delayed requeue, so a core that forgot to emulate one fails here.

use std::time::{Duration, Instant};

use crate::config::BrokerConfig;
use crate::error::ErrorKind;
use crate::store::memory::MemoryStore;
use crate::store::Capabilities;
use crate::{Broker, FetchOptions, PublishOptions};

const LONG: Duration = Duration::from_secs(30);

fn broker(capabilities: Capabilities) -> Broker {
    let config = BrokerConfig { worker_threads: 1, ..Default::default() };
    Broker::with_store(&config, Box::new(MemoryStore::declaring(capabilities))).unwrap()
}

fn publish(b: &Broker, topic: &str, priority: i32) -> crate::Result<crate::Message> {
    b.publish(topic, b"1", &PublishOptions { priority, ..Default::default() })
}

#[test]
fn a_priority_outside_the_store_range_is_refused_naming_it_and_nothing_is_stored() {
    let b = broker(Capabilities { priorities: (0, 255), ..Default::default() });
    assert!(b.fetch("jobs", None, Some(Duration::ZERO)).unwrap().is_none());
    for p in [-1, 256, i32::MIN, i32::MAX] {
        let e = publish(&b, "jobs", p).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{p}");
        assert!(e.message().contains("0..=255") && e.message().contains("memory"), "{}", e.message());
    }
    // A batch with one bad priority publishes none of it.
    let batch = [
        crate::BatchMessage { payload: b"1", ..Default::default() },
        crate::BatchMessage { payload: b"2", options: PublishOptions { priority: 300, ..Default::default() } },
    ];
    assert_eq!(b.publish_batch("jobs", &batch).unwrap_err().kind(), ErrorKind::InvalidArgument);
    assert_eq!(b.count(None).unwrap(), 0);
    publish(&b, "jobs", 0).unwrap();
    publish(&b, "jobs", 255).unwrap();
    assert_eq!(b.fetch("jobs", None, Some(LONG)).unwrap().unwrap().priority(), 255);
    // The default store keeps every priority.
    let full = broker(Capabilities::default());
    publish(&full, "jobs", i32::MIN).unwrap();
}

#[test]
fn a_delayed_requeue_is_held_by_the_core_when_the_store_cannot_delay_and_join_waits_for_it() {
    let b = broker(Capabilities { delayed_requeue: false, ..Default::default() });
    let opts = FetchOptions { group: Some("w"), ..Default::default() };
    assert!(b.fetch_with("jobs", &opts, Some(Duration::ZERO)).unwrap().is_none());
    publish(&b, "jobs", 0).unwrap();
    let d = b.fetch_with("jobs", &opts, Some(LONG)).unwrap().unwrap();
    let delay = Duration::from_millis(300);
    let requeued = Instant::now();
    b.nack(d.id(), true, Some(delay), None).unwrap();
    let s = b.stats().unwrap().totals;
    assert_eq!((s.requeued, s.delayed, s.queued), (1, 1, 0));
    // Not before its delay, then with attempt + 1.
    assert!(b.fetch_with("jobs", &opts, Some(Duration::from_millis(100))).unwrap().is_none());
    let again = b.fetch_with("jobs", &opts, Some(LONG)).unwrap().expect("redelivered once due");
    assert!(requeued.elapsed() >= delay);
    assert_eq!(again.attempt(), 2);
    assert_eq!(b.stats().unwrap().totals.delayed, 0);
    b.ack(again.id()).unwrap();
    b.join(Some(LONG)).unwrap();

    // join waits for a held requeue; close drops it and counts it.
    publish(&b, "jobs", 0).unwrap();
    let d = b.fetch_with("jobs", &opts, Some(LONG)).unwrap().unwrap();
    b.nack(d.id(), true, Some(Duration::from_secs(3600)), None).unwrap();
    assert_eq!(b.join(Some(Duration::from_millis(50))).unwrap_err().kind(), ErrorKind::Timeout);
    let report = b.close(None, true).unwrap();
    assert_eq!(report.dropped, 1);
    let s = b.stats().unwrap_err(); // closed
    assert_eq!(s.kind(), ErrorKind::Closed);
}
