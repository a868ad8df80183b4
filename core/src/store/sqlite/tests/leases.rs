//! Leases: expiry and reclaim across processes, requeue (with and without delay), release,
//! heartbeats, and the data_version signal.

use std::thread::sleep;
use std::time::Instant;

use super::*;
use crate::message::now_ms;
use crate::store::sqlite::StoredTake;

/// A lease or delay that runs out during the test. Checks that it has not run out yet are
/// skipped when the machine was too slow to make them before it did.
const SHORT: Duration = Duration::from_millis(100);

#[test]
fn an_expired_lease_goes_to_another_process_and_the_late_ack_fails() {
    let dir = TempDir::new("expiry");
    let path = dir.file("s.db");
    let (p1, p2) = (open(&path), open(&path));
    let g = p1.named_group("jobs", "workers").unwrap();
    publish_ids(&p1, "jobs", &["job"]);
    let claimed_at = Instant::now();
    let first = p1.claim(g, 10, "crashed", SHORT).unwrap();
    assert_eq!((first.len(), first[0].attempt), (1, 1));
    let early = p2.claim(g, 10, "survivor", LEASE).unwrap();
    if claimed_at.elapsed() < SHORT {
        assert!(early.is_empty(), "leased: not available yet");
    }
    let again = if early.is_empty() {
        assert!(p2.next_available_at(g).unwrap().unwrap() <= now_ms() + SHORT.as_millis() as u64);
        sleep(SHORT + Duration::from_millis(30));
        p2.claim(g, 10, "survivor", LEASE).unwrap()
    } else {
        early
    };
    assert_eq!(ids(&again), ["job"]);
    assert_eq!((again[0].key, again[0].attempt), (first[0].key, 2));
    assert_eq!(settle_all(&p1, "crashed", &first), [false], "the lease was lost");
    assert_eq!(settle_all(&p2, "survivor", &again), [true]);
    assert_eq!(p1.ready_len(g).unwrap(), 0);
    assert_eq!(rows(&p1, "messages"), 0);
}

#[test]
fn an_ack_needs_the_owner_and_the_attempt() {
    let dir = TempDir::new("ack");
    let f = open(&dir.file("s.db"));
    let g = f.named_group("t", "w").unwrap();
    publish_ids(&f, "t", &["a"]);
    let d = f.claim(g, 1, "me", LEASE).unwrap().remove(0);
    assert_eq!(f.ack("someone-else", &[(d.key, 1)]).unwrap(), [false]);
    assert_eq!(f.ack("me", &[(d.key, 2), (d.key + 1000, 1)]).unwrap(), [false, false]);
    assert_eq!(f.ack("me", &[(d.key, 1), (d.key, 1)]).unwrap(), [true, false]);
}

#[test]
fn an_expired_lease_not_yet_reclaimed_can_still_be_acked() {
    let dir = TempDir::new("late-ack");
    let f = open(&dir.file("s.db"));
    let g = f.named_group("t", "w").unwrap();
    publish_ids(&f, "t", &["a"]);
    let d = f.claim(g, 1, "me", Duration::ZERO).unwrap();
    assert_eq!(settle_all(&f, "me", &d), [true]);
    assert!(f.claim(g, 1, "me", LEASE).unwrap().is_empty());
}

#[test]
fn requeue_goes_to_the_back_of_its_priority() {
    let dir = TempDir::new("requeue");
    let f = open(&dir.file("s.db"));
    let g = f.named_group("t", "w").unwrap();
    publish_ids(&f, "t", &["a", "b"]);
    publish(&f, "t", &[msg("urgent", 1)], Retention::Off).unwrap();
    let urgent = f.claim(g, 1, "me", LEASE).unwrap().remove(0);
    let a = f.claim(g, 1, "me", LEASE).unwrap().remove(0);
    assert!(f.requeue("me", a.key, a.attempt, 0).unwrap());
    assert!(!f.requeue("me", a.key, a.attempt, 0).unwrap(), "no longer leased at that attempt");
    assert!(f.requeue("me", urgent.key, 1, now_ms()).unwrap());
    assert_eq!(f.ready_len(g).unwrap(), 3);
    let all = f.claim(g, 10, "me", LEASE).unwrap();
    assert_eq!(ids(&all), ["urgent", "b", "a"]);
    assert_eq!(all.iter().map(|d| d.attempt).collect::<Vec<_>>(), [2, 1, 2]);
}

#[test]
fn a_delayed_requeue_waits_until_due() {
    let dir = TempDir::new("delay");
    let f = open(&dir.file("s.db"));
    let g = f.named_group("t", "w").unwrap();
    publish_ids(&f, "t", &["a"]);
    let a = f.claim(g, 1, "me", LEASE).unwrap().remove(0);
    let (requeued_at, due) = (Instant::now(), now_ms() + SHORT.as_millis() as u64);
    assert!(f.requeue("me", a.key, 1, due).unwrap());
    assert_eq!(f.ready_len(g).unwrap(), 0, "delayed is not ready");
    assert_eq!(f.next_available_at(g).unwrap(), Some(due));
    let early = f.claim(g, 1, "other", LEASE).unwrap();
    if requeued_at.elapsed() < SHORT {
        assert!(early.is_empty(), "not due yet");
    }
    let again = if early.is_empty() {
        sleep(SHORT + Duration::from_millis(20));
        f.claim(g, 1, "other", LEASE).unwrap()
    } else {
        early
    };
    assert_eq!((again[0].key, again[0].attempt), (a.key, 2));
    assert_eq!(f.ready_len(g).unwrap(), 0);
    assert_eq!(settle_all(&f, "other", &again), [true]);
    assert_eq!(f.next_available_at(g).unwrap(), None);
}

#[test]
fn release_owner_gives_everything_back_with_attempt_plus_one() {
    let dir = TempDir::new("release");
    let f = open(&dir.file("s.db"));
    let g1 = f.named_group("t", "w").unwrap();
    let g2 = f.named_group("u", "w").unwrap();
    publish_ids(&f, "t", &["a", "b", "c"]);
    publish_ids(&f, "u", &["x"]);
    let held = f.claim(g1, 2, "closing", LEASE).unwrap();
    f.claim(g2, 1, "closing", LEASE).unwrap();
    f.claim(g1, 1, "staying", LEASE).unwrap();
    assert_eq!(f.release_owner("closing").unwrap(), 3);
    assert_eq!((f.ready_len(g1).unwrap(), f.ready_len(g2).unwrap()), (2, 1));
    assert_eq!(settle_all(&f, "closing", &held), [false, false]);
    let back = f.claim(g1, 10, "next", LEASE).unwrap();
    assert_eq!(ids(&back), ["a", "b"]);
    assert!(back.iter().all(|d| d.attempt == 2));
    assert_eq!(f.release_owner("closing").unwrap(), 0);
}

#[test]
fn a_heartbeat_keeps_the_lease() {
    let dir = TempDir::new("heartbeat");
    let path = dir.file("s.db");
    let (p1, p2) = (open(&path), open(&path));
    let g = p1.named_group("t", "w").unwrap();
    publish_ids(&p1, "t", &["slow"]);
    let held = p1.claim(g, 1, "busy", SHORT).unwrap();
    assert_eq!(p1.extend_leases("busy", LEASE).unwrap(), 1);
    sleep(SHORT + Duration::from_millis(30));
    assert!(p2.claim(g, 1, "thief", LEASE).unwrap().is_empty());
    assert_eq!(settle_all(&p1, "busy", &held), [true]);
    assert_eq!(p1.extend_leases("busy", LEASE).unwrap(), 0);
}

#[test]
fn data_version_moves_when_another_process_commits() {
    let dir = TempDir::new("data-version");
    let path = dir.file("s.db");
    let (p1, p2) = (open(&path), open(&path));
    let v0 = p1.data_version().unwrap();
    assert_eq!(p1.data_version().unwrap(), v0, "nothing happened");
    publish_ids(&p2, "t", &["a"]);
    let v1 = p1.data_version().unwrap();
    assert_ne!(v1, v0);
    assert_eq!(p1.data_version().unwrap(), v1);
}

#[test]
fn what_is_committed_survives_reopening() {
    let dir = TempDir::new("reopen");
    let path = dir.file("s.db");
    {
        let f = open(&path);
        let g = f.named_group("t", "w").unwrap();
        publish_ids(&f, "t", &["a", "b"]);
        f.claim(g, 1, "gone", LEASE).unwrap();
    }
    let f = open(&path);
    let g = f.named_group("t", "w").unwrap();
    assert_eq!(f.ready_len(g).unwrap(), 1);
    assert_eq!(f.release_owner("gone").unwrap(), 1);
    assert_eq!(ids(&f.claim(g, 10, "me", LEASE).unwrap()), ["b", "a"]);
}

#[test]
fn a_released_delivery_goes_back_where_it_was_with_the_same_attempt() {
    let dir = TempDir::new("release");
    let f = open(&dir.file("s.db"));
    let g = f.named_group("t", "w").unwrap();
    publish_ids(&f, "t", &["a", "b", "c"]);
    let (two, left) = f.claim_counted(g, 2, "me", LEASE, ["", ""]).unwrap();
    assert_eq!((ids(&two), left), (vec!["a", "b"], 1));
    assert!(f.release("me", two[1].key, 1).unwrap());
    assert!(!f.release("me", two[1].key, 1).unwrap(), "not leased any more");
    assert!(f.release("me", two[0].key, 1).unwrap());
    let again = f.claim(g, 10, "me", LEASE).unwrap();
    assert_eq!(ids(&again), ["a", "b", "c"]);
    assert!(again.iter().all(|d| d.attempt == 1));
}

#[test]
fn a_claim_leaves_the_claimers_own_expired_leases_to_it() {
    let dir = TempDir::new("spare");
    let f = open(&dir.file("s.db"));
    let g = f.named_group("t", "w").unwrap();
    publish_ids(&f, "t", &["a"]);
    let first = f.claim(g, 1, "me+d", Duration::from_millis(1)).unwrap();
    sleep(Duration::from_millis(5));
    let (mine, _) = f.claim_counted(g, 1, "me", LEASE, ["me", "me+d"]).unwrap();
    assert!(mine.is_empty(), "its own lease: its deadline timer requeues it");
    assert_eq!(settle_all(&f, "me+d", &first), [true], "still its own");
    publish_ids(&f, "t", &["b"]);
    f.claim(g, 1, "crashed", Duration::from_millis(1)).unwrap();
    sleep(Duration::from_millis(5));
    let (theirs, _) = f.claim_counted(g, 1, "me", LEASE, ["me", "me+d"]).unwrap();
    assert_eq!((ids(&theirs), theirs[0].attempt), (vec!["b"], 2), "someone else's: taken back");
}

#[test]
fn silent_owners_lose_their_anonymous_groups_and_live_ones_keep_theirs() {
    let dir = TempDir::new("owners");
    let f = open(&dir.file("s.db"));
    let now = now_ms();
    // "gone" last said it was alive four of its 100 ms leases ago; "alive" just now.
    f.atomically(|tx| {
        tx.register_owner("gone", 100, now - 400)?;
        tx.register_owner("alive", 100, now)
    })
    .unwrap();
    let (gone, alive) = (f.anonymous_group("t", "gone").unwrap(), f.anonymous_group("t", "alive").unwrap());
    let named = f.named_group("t", "w").unwrap();
    publish_ids(&f, "t", &["a", "b"]);
    assert_eq!(f.ready_len(gone).unwrap(), 2);
    assert_eq!(f.collect_silent_owners().unwrap(), 1);
    assert_eq!(f.groups_of("t").unwrap().iter().map(|(g, _)| *g).collect::<Vec<_>>(), [alive, named]);
    assert_eq!(rows(&f, "owners"), 1, "the silent owner is forgotten too");
    publish_ids(&f, "t", &["c"]);
    assert_eq!((f.ready_len(alive).unwrap(), f.ready_len(named).unwrap()), (3, 3));
    f.forget_owner("alive").unwrap();
    assert_eq!(f.collect_silent_owners().unwrap(), 1, "an unregistered owner's groups go too");
    assert_eq!(f.count_topic("t").unwrap(), 3, "named groups are never collected");
}

#[test]
fn a_take_claims_and_deletes_in_one_commit_and_leaves_a_payload_too_large_ready() {
    let dir = TempDir::new("take");
    let f = open(&dir.file("s.db"));
    let g = f.named_group("jobs", "workers").unwrap();
    publish_ids(&f, "jobs", &["first", "second"]);
    let spare = ["me", "me"];
    let before = f.writer.commits();
    let (taken, left) = f.take_counted(g, spare, 1 << 20).unwrap();
    assert_eq!(f.writer.commits() - before, 1, "claim and ack in one commit");
    let StoredTake::Got(d) = taken else { panic!("{taken:?}") };
    assert_eq!((d.message.id.as_str(), d.attempt, left), ("first", 1, 1));
    // Gone from the file: no lease left behind for anyone to reclaim.
    assert_eq!(f.next_available_at(g).unwrap(), None);
    assert_eq!(rows(&f, "messages"), 1, "the first message's body is gone");
    // Too large: left ready, in its place, at its attempt.
    let size = r#"{"id":"second"}"#.len();
    let (taken, left) = f.take_counted(g, spare, size - 1).unwrap();
    assert!(matches!(taken, StoredTake::TooLarge(n) if n == size), "{taken:?}");
    assert_eq!((left, f.ready_len(g).unwrap()), (1, 1));
    let rest = f.claim(g, 10, "me", LEASE).unwrap();
    assert_eq!((ids(&rest), rest[0].attempt), (vec!["second"], 1));
}
