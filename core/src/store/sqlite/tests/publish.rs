//! Publish, fan-out, retention and takeover, purge and counts.

use std::sync::atomic::{AtomicBool, Ordering};

use super::*;
use crate::error::ErrorKind;

#[test]
fn highest_priority_first_fifo_within() {
    let dir = TempDir::new("priority");
    let f = open(&dir.file("s.db"));
    let g = f.named_group("t", "w").unwrap();
    for (id, p) in [("a", 0), ("b", 5), ("c", 0), ("d", -3), ("e", 5), ("f", 9)] {
        publish(&f, "t", &[msg(id, p)], Retention::Off).unwrap();
    }
    assert_eq!(f.ready_len(g).unwrap(), 6);
    let first = f.claim(g, 4, "me", LEASE).unwrap();
    assert_eq!(ids(&first), ["f", "b", "e", "a"]);
    assert!(first.iter().all(|d| d.attempt == 1 && d.group == g));
    assert_eq!(f.ready_len(g).unwrap(), 2);
    assert_eq!(ids(&f.claim(g, 10, "me", LEASE).unwrap()), ["c", "d"]);
    assert_eq!(f.ready_len(g).unwrap(), 0);
    assert!(f.claim(g, 10, "me", LEASE).unwrap().is_empty());
}

#[test]
fn a_message_comes_back_as_published() {
    let dir = TempDir::new("roundtrip");
    let f = open(&dir.file("s.db"));
    let g = f.named_group("t", "w").unwrap();
    let mut m = msg("x-1", -7);
    m.metadata = Some(b"{\"k\":1}".to_vec());
    m.payload = vec![0, 1, 2, 255];
    publish(&f, "t", &[m.clone(), msg("x-2", -7)], Retention::Off).unwrap();
    let got = f.claim(g, 1, "me", LEASE).unwrap();
    assert_eq!(got[0].message, m);
    assert_eq!(f.claim(g, 1, "me", LEASE).unwrap()[0].message.metadata, None);
}

#[test]
fn a_failing_call_leaves_the_others_of_its_commit_committed() {
    let dir = TempDir::new("group-commit");
    let f = open(&dir.file("s.db"));
    let g = f.named_group("t", "w").unwrap();
    let before = f.writer.commits();
    let inside = AtomicBool::new(false);
    std::thread::scope(|s| {
        // The first call holds the transaction until both others queue behind it, so that all
        // three share one commit.
        let first = s.spawn(|| {
            f.atomically(|tx| {
                tx.publish("t", &[msg("one", 0).as_new()], Retention::Off)?;
                inside.store(true, Ordering::SeqCst);
                while f.writer.queued() < 2 {
                    std::thread::yield_now();
                }
                Ok(())
            })
        });
        while !inside.load(Ordering::SeqCst) {
            std::thread::yield_now();
        }
        let failing = s.spawn(|| {
            f.atomically(|tx| {
                tx.publish("t", &[msg("half", 0).as_new()], Retention::Off)?;
                // No group on "lonely" and no room: Full, after "half" went in.
                tx.publish("lonely", &[msg("never", 0).as_new()], Retention::Reject(0))
            })
        });
        let other = s.spawn(|| publish(&f, "t", &[msg("two", 0)], Retention::Off));
        first.join().unwrap().unwrap();
        assert_eq!(failing.join().unwrap().unwrap_err().kind(), ErrorKind::Full);
        other.join().unwrap().unwrap();
    });
    assert_eq!(f.writer.commits() - before, 1, "the three calls shared one commit");
    let mut got = ids(&f.claim(g, 10, "me", LEASE).unwrap()).into_iter().map(str::to_owned).collect::<Vec<_>>();
    got.sort();
    assert_eq!(got, ["one", "two"]);
    assert_eq!(f.retained_len("lonely").unwrap(), 0);
    assert_eq!(rows(&f, "messages"), 2);
}

#[test]
fn a_batch_is_all_or_nothing() {
    let dir = TempDir::new("batch");
    let f = open(&dir.file("s.db"));
    publish_ids(&f, "t", &["a", "b"]);
    let batch = [msg("c", 0), msg("d", 0)];
    let e = publish(&f, "t", &batch, Retention::Reject(3)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Full);
    assert!(e.message().contains("\"t\""), "{}", e.message());
    assert_eq!(f.retained_len("t").unwrap(), 2);
    assert_eq!(rows(&f, "messages"), 2);
}

#[test]
fn every_group_gets_a_copy_and_bodies_are_shared() {
    let dir = TempDir::new("fan-out");
    let f = open(&dir.file("s.db"));
    let g1 = f.named_group("t", "billing").unwrap();
    let g2 = f.named_group("t", "audit").unwrap();
    assert_eq!(f.named_group("t", "billing").unwrap(), g1);
    let r = publish(&f, "t", &[msg("a", 0), msg("b", 0), msg("c", 0)], Retention::Off).unwrap();
    assert_eq!(r, PublishReceipt { groups: vec![g1, g2], ..Default::default() });
    assert_eq!(rows(&f, "messages"), 3, "one body per message, not per group");
    let d1 = f.claim(g1, 10, "me", LEASE).unwrap();
    let d2 = f.claim(g2, 10, "me", LEASE).unwrap();
    assert_eq!(ids(&d1), ["a", "b", "c"]);
    assert_eq!(ids(&d2), ["a", "b", "c"]);
    assert!(settle_all(&f, "me", &d1).iter().all(|&b| b));
    assert_eq!(rows(&f, "messages"), 3, "the other group still holds them");
    assert!(settle_all(&f, "me", &d2).iter().all(|&b| b));
    assert_eq!(rows(&f, "messages"), 0);
    assert_eq!(rows(&f, "deliveries"), 0);
}

#[test]
fn an_anonymous_group_gets_what_other_processes_publish() {
    let dir = TempDir::new("anonymous");
    let path = dir.file("s.db");
    let (p1, p2) = (open(&path), open(&path));
    let mine = p1.anonymous_group("t", "instance-1").unwrap();
    let theirs = p2.anonymous_group("t", "instance-2").unwrap();
    assert_ne!(mine, theirs);
    assert_eq!(p2.named_group("t", "w").unwrap(), p1.named_group("t", "w").unwrap(), "a name means one group");
    publish_ids(&p2, "t", &["from-2"]);
    publish_ids(&p1, "t", &["from-1"]);
    assert_eq!(ids(&p1.claim(mine, 10, "instance-1", LEASE).unwrap()), ["from-2", "from-1"]);
    assert_eq!(ids(&p2.claim(theirs, 10, "instance-2", LEASE).unwrap()), ["from-2", "from-1"]);
    let groups = p1.groups_of("t").unwrap();
    assert_eq!(groups.len(), 3);
    assert_eq!(groups[2].1.as_deref(), Some("w"));
    p1.remove_owner_groups("instance-1").unwrap();
    assert_eq!(p2.groups_of("t").unwrap().len(), 2);
    assert!(p2.groups_of("t").unwrap().iter().all(|(g, _)| *g != mine));
}

#[test]
fn reject_keeps_up_to_the_limit_then_refuses() {
    let dir = TempDir::new("reject");
    let f = open(&dir.file("s.db"));
    for id in ["a", "b"] {
        let r = publish(&f, "t", &[msg(id, 0)], Retention::Reject(2)).unwrap();
        assert!(r.retained && r.no_group && r.groups.is_empty() && r.discarded == 0, "{r:?}");
    }
    assert_eq!(publish(&f, "t", &[], Retention::Reject(2)).unwrap(), PublishReceipt::default());
    let e = publish(&f, "t", &[msg("c", 0)], Retention::Reject(2)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Full);
    assert!(e.message().contains("retains 2 of at most 2"), "{}", e.message());
    assert_eq!(f.retained_len("t").unwrap(), 2);
}

#[test]
fn drop_oldest_and_drop_newest_discard_and_count() {
    let dir = TempDir::new("drop");
    let f = open(&dir.file("s.db"));
    let mut discarded = 0;
    for id in ["a", "b", "c", "d", "e"] {
        discarded += publish(&f, "old", &[msg(id, 0)], Retention::DropOldest(3)).unwrap().discarded;
    }
    assert_eq!((discarded, f.retained_len("old").unwrap()), (2, 3));
    // A batch larger than the limit keeps its own newest.
    let r =
        publish(&f, "old", &[msg("f", 0), msg("g", 0), msg("h", 0), msg("i", 0)], Retention::DropOldest(3)).unwrap();
    assert_eq!((r.discarded, r.retained), (4, true));
    let g = f.named_group("old", "w").unwrap();
    assert_eq!(ids(&f.claim(g, 10, "me", LEASE).unwrap()), ["g", "h", "i"]);

    let r = publish(&f, "new", &[msg("a", 0), msg("b", 0), msg("c", 0)], Retention::DropNewest(2)).unwrap();
    assert_eq!((r.discarded, r.retained), (1, true));
    let r = publish(&f, "new", &[msg("d", 0)], Retention::DropNewest(2)).unwrap();
    assert_eq!((r.discarded, r.retained), (1, false));
    let g = f.named_group("new", "w").unwrap();
    assert_eq!(ids(&f.claim(g, 10, "me", LEASE).unwrap()), ["a", "b"]);
    assert_eq!(rows(&f, "messages"), 5, "discarded bodies are gone: only the 5 claimed remain");
}

#[test]
fn off_keeps_nothing() {
    let dir = TempDir::new("off");
    let f = open(&dir.file("s.db"));
    let r = publish(&f, "t", &[msg("a", 0)], Retention::Off).unwrap();
    assert_eq!(r, PublishReceipt { no_group: true, ..Default::default() });
    assert_eq!(f.retained_len("t").unwrap(), 0);
    assert_eq!(rows(&f, "messages"), 0);
}

#[test]
fn the_first_named_group_takes_over_the_retained_messages() {
    let dir = TempDir::new("takeover");
    let path = dir.file("s.db");
    let (p1, p2) = (open(&path), open(&path));
    publish(&p1, "t", &[msg("low", 0), msg("high", 5), msg("low-2", 0)], Retention::Reject(10)).unwrap();
    // An anonymous group does not take them; it only gets what is published from now on.
    let anon = p2.anonymous_group("t", "instance-2").unwrap();
    publish_ids(&p1, "t", &["later"]);
    assert_eq!(p1.retained_len("t").unwrap(), 3);
    assert_eq!(ids(&p2.claim(anon, 10, "instance-2", LEASE).unwrap()), ["later"]);
    // The named group is created in the other process and takes them, ahead of later ones.
    let g = p2.named_group("t", "w").unwrap();
    assert_eq!(p1.retained_len("t").unwrap(), 0);
    assert_eq!(p1.ready_len(g).unwrap(), 3);
    publish_ids(&p1, "t", &["after"]);
    assert_eq!(ids(&p1.claim(g, 10, "me", LEASE).unwrap()), ["high", "low", "low-2", "after"]);
    assert_eq!(p1.named_group("t", "second").and_then(|g| p1.ready_len(g)).unwrap(), 0);
}

#[test]
fn counts_and_purge() {
    let dir = TempDir::new("purge");
    let f = open(&dir.file("s.db"));
    publish_ids(&f, "lonely", &["r1", "r2"]);
    let g = f.named_group("t", "w").unwrap();
    let a = f.anonymous_group("t", "me").unwrap();
    publish_ids(&f, "t", &["a", "b", "c"]);
    let held = f.claim(g, 1, "me", LEASE).unwrap();
    assert_eq!(f.count_group("t", "w").unwrap(), 2);
    assert_eq!(f.count_group("t", "nope").unwrap(), 0);
    assert_eq!(f.count_topic("t").unwrap(), 5);
    assert_eq!(f.count_topic("lonely").unwrap(), 2);
    assert_eq!(f.count_topic("unknown").unwrap(), 0);
    assert_eq!(f.count_all().unwrap(), 7);
    assert_eq!(f.purge(Some("t")).unwrap(), 5);
    assert_eq!((f.ready_len(g).unwrap(), f.ready_len(a).unwrap()), (0, 0));
    assert_eq!(f.count_all().unwrap(), 2);
    assert_eq!(settle_all(&f, "me", &held), [true], "a leased delivery survives purge");
    assert_eq!(f.purge(None).unwrap(), 2);
    assert_eq!(f.count_all().unwrap(), 0);
    assert_eq!(rows(&f, "messages"), 0);
    assert_eq!(f.purge(Some("unknown")).unwrap(), 0);
}

#[test]
fn removing_a_group_drops_its_deliveries() {
    let dir = TempDir::new("remove");
    let f = open(&dir.file("s.db"));
    let g = f.named_group("t", "w").unwrap();
    let other = f.named_group("t", "x").unwrap();
    publish_ids(&f, "t", &["a", "b", "c"]);
    let held = f.claim(g, 1, "me", LEASE).unwrap();
    let later = f.claim(g, 1, "me", LEASE).unwrap();
    assert!(f.requeue("me", later[0].key, 1, crate::message::now_ms() + 60_000).unwrap());
    assert_eq!(f.remove_group(g).unwrap(), 3, "ready, delayed and leased alike");
    assert_eq!(settle_all(&f, "me", &held), [false]);
    assert_eq!(f.ready_len(g).unwrap(), 0);
    assert_eq!(rows(&f, "messages"), 3, "the other group still holds the bodies");
    assert_eq!(f.remove_group(other).unwrap(), 3);
    assert_eq!(rows(&f, "messages"), 0);
    // With no group left, the topic retains again.
    assert!(publish(&f, "t", &[msg("d", 0)], Retention::Reject(5)).unwrap().retained);
}

#[test]
fn a_dead_letter_and_its_ack_commit_together_or_not_at_all() {
    let dir = TempDir::new("atomically");
    let f = open(&dir.file("s.db"));
    let g = f.named_group("jobs", "w").unwrap();
    publish_ids(&f, "jobs", &["poison", "bad"]);
    let ds = f.claim(g, 2, "me", LEASE).unwrap();
    let dead_letter = |d: &StoredDelivery, room: usize| {
        f.atomically(|tx| {
            tx.publish("jobs.dlq", &[d.message.as_new()], Retention::Reject(room))?;
            Ok(tx.ack("me", &[(d.key, d.attempt)])?[0])
        })
    };
    assert!(dead_letter(&ds[0], 10).unwrap());
    assert_eq!(f.retained_len("jobs.dlq").unwrap(), 1);
    // The dead-letter topic is full: the ack is rolled back with it.
    assert_eq!(dead_letter(&ds[1], 1).unwrap_err().kind(), ErrorKind::Full);
    assert_eq!(settle_all(&f, "me", &ds[1..]), [true], "still leased, not acked");
}

#[test]
fn skipped_groups_get_nothing_and_a_topic_with_groups_retains_nothing() {
    let dir = TempDir::new("skip");
    let f = open(&dir.file("s.db"));
    let (full, other) = (f.named_group("t", "full").unwrap(), f.named_group("t", "other").unwrap());
    let msgs = [msg("a", 0), msg("b", 0)];
    let batch: Vec<_> = msgs.iter().map(StoredMessage::as_new).collect();
    let r = f.publish_except("t", &batch, Retention::Reject(10), &[full]).unwrap();
    assert_eq!(r, PublishReceipt { groups: vec![other], ..Default::default() });
    assert_eq!((f.ready_len(full).unwrap(), f.ready_len(other).unwrap()), (0, 2));
    let r = f.publish_except("t", &batch, Retention::Reject(10), &[full, other]).unwrap();
    assert_eq!((r, f.retained_len("t").unwrap()), (PublishReceipt::default(), 0));
}

#[test]
fn purge_says_what_it_discarded_per_topic_and_waiting_counts_what_comes_back() {
    let dir = TempDir::new("purge-topics");
    let f = open(&dir.file("s.db"));
    publish_ids(&f, "kept", &["r1", "r2"]);
    let g = f.named_group("t", "w").unwrap();
    publish_ids(&f, "t", &["a", "b", "c"]);
    let held = f.claim(g, 1, "me", LEASE).unwrap();
    assert_eq!(f.waiting(g, crate::message::now_ms()).unwrap(), 2);
    assert!(f.requeue("me", held[0].key, 1, crate::message::now_ms() + 3_600_000).unwrap());
    assert_eq!(f.waiting(g, crate::message::now_ms()).unwrap(), 3, "the delayed one waits too");
    let purged = f.purge_topics(None).unwrap();
    let got: Vec<_> = purged.iter().map(|p| (p.topic.as_str(), p.deliveries, p.retained)).collect();
    assert_eq!(got, [("kept", 0, 2), ("t", 2, 0)]);
    assert_eq!(f.waiting(g, crate::message::now_ms()).unwrap(), 1);
}

#[test]
fn keys_reserved_by_a_rolled_back_call_are_nobodys() {
    let dir = TempDir::new("keys");
    let path = dir.file("s.db");
    let (f, other) = (open(&path), open(&path));
    let g = f.named_group("t", "w").unwrap();
    // The call reserves a block of keys and takes some, then fails: the reservation is rolled
    // back with it.
    let many: Vec<_> = (0..10).map(|i| msg(&format!("gone-{i}"), 0)).collect();
    let failed = f.atomically(|tx| {
        tx.publish("t", &many.iter().map(StoredMessage::as_new).collect::<Vec<_>>(), Retention::Off)?;
        tx.publish("lonely", &[msg("never", 0).as_new()], Retention::Reject(0))
    });
    assert_eq!(failed.unwrap_err().kind(), ErrorKind::Full);
    // The other writer now reserves the keys the failed call had taken; this one must not
    // use them again (the key is the table's primary key: a reuse fails the insert).
    let theirs: Vec<String> = (0..20).map(|i| format!("other-{i}")).collect();
    publish_ids(&other, "t", &theirs.iter().map(String::as_str).collect::<Vec<_>>());
    publish_ids(&f, "t", &["from-f"]);
    let got = f.claim(g, 100, "me", LEASE).unwrap();
    assert_eq!(got.len(), 21);
    assert_eq!(ids(&got)[20], "from-f");
}
