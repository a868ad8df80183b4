//! The SQLite backend where it differs from memory: several brokers (standing in for several
//! processes) on one file, real processes killed while they hold deliveries or publish,
//! durability across brokers, files that are not usable stores, and store failures on calls.
//! Every wait is bounded; nothing asserts on timing.

// Needs the SQLite backend: built with its cargo feature only.
#![cfg(feature = "sqlite")]

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Barrier};
use std::time::Duration;

use brokk_core::log::Level;
use brokk_core::{BatchMessage, Broker, Delivery, ErrorKind, FetchOptions, PublishOptions, SubscribeOptions, Verdict};
use common::logs::Logs;
use common::shared_store::{eventually, grouped, payload_of, recorder, Seen, LONG};
use common::Kit;

fn url(path: &Path, options: &str) -> String {
    format!("sqlite://{}{options}", path.display())
}

fn open(path: &Path, options: &str) -> Broker {
    Broker::open(&url(path, options)).unwrap()
}

fn total(seen: &Seen) -> usize {
    seen.lock().unwrap().values().map(Vec::len).sum()
}

// ---- several brokers on one file ------------------------------------------------------------

/// Four brokers publish and consume in one named group: every message is processed exactly
/// once. A second named group gets its own copy of each, and an ungrouped subscription on one
/// broker gets every message any broker publishes while it exists.
#[test]
fn four_brokers_share_one_named_group_and_every_message_is_processed_once() {
    let kit = Kit::sqlite("four-brokers");
    let path = kit.dir().join("shared.db");
    let brokers: Vec<Broker> = (0..4).map(|_| open(&path, "")).collect();
    let (workers, audit, watcher): (Seen, Seen, Seen) = Default::default();
    for (i, b) in brokers.iter().enumerate() {
        b.subscribe("jobs", recorder(&workers), &SubscribeOptions { concurrency: 2, ..grouped("workers") }).unwrap();
        if i % 2 == 0 {
            b.subscribe("jobs", recorder(&audit), &grouped("audit")).unwrap();
        }
    }
    brokers[3].subscribe("jobs", recorder(&watcher), &SubscribeOptions::default()).unwrap();
    const EACH: usize = 300;
    let start = Arc::new(Barrier::new(4));
    std::thread::scope(|s| {
        for (i, b) in brokers.iter().enumerate() {
            let start = Arc::clone(&start);
            s.spawn(move || {
                start.wait();
                for j in 0..EACH {
                    let payload = format!("\"{i}-{j}\"");
                    if j % 10 == 9 {
                        // Now and then a batch of one, to mix both kinds of publish.
                        b.publish_batch("jobs", &[BatchMessage { payload: payload.as_bytes(), ..Default::default() }])
                            .unwrap();
                    } else {
                        b.publish("jobs", payload.as_bytes(), &PublishOptions::default()).unwrap();
                    }
                }
            });
        }
    });
    let all = 4 * EACH;
    eventually("every message processed by the workers", || total(&workers) == all);
    eventually("every message processed by the audit group", || total(&audit) == all);
    eventually("every message seen by the ungrouped subscription", || total(&watcher) == all);
    for b in &brokers {
        b.join(Some(LONG)).unwrap();
    }
    for seen in [&workers, &audit, &watcher] {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), all, "every message");
        assert!(seen.values().all(|attempts| attempts == &[1]), "each exactly once, at its first attempt");
    }
    let stats: Vec<_> = brokers.iter().map(|b| b.stats().unwrap().totals).collect();
    assert!(stats.iter().all(|t| t.published == EACH as u64), "each broker counts its own publishes");
    let processed: u64 = stats.iter().map(|t| t.processed).sum();
    assert_eq!(processed, 3 * all as u64, "workers + audit + the ungrouped subscription");
    assert!(stats.iter().all(|t| t.dispatched == t.processed && t.in_flight == 0 && t.failed == 0));
    assert_eq!(brokers[0].count(None).unwrap(), 0, "nothing waits anywhere in the file");
    for b in &brokers {
        assert_eq!(b.close(Some(LONG), false).unwrap().remaining, 0);
    }
}

/// A fetcher in one broker gets what another broker publishes, without a local wake-up: the
/// poller sees the file change.
#[test]
fn a_fetch_waiting_in_one_broker_gets_what_another_publishes() {
    let kit = Kit::sqlite("cross-fetch");
    let path = kit.dir().join("shared.db");
    let (consumer, producer) = (open(&path, ""), open(&path, ""));
    assert!(consumer.fetch("jobs", Some("w"), Some(Duration::ZERO)).unwrap().is_none());
    let waiter = {
        let consumer = consumer.clone();
        std::thread::spawn(move || consumer.fetch("jobs", Some("w"), Some(LONG)).unwrap().map(|d| payload_of(&d)))
    };
    std::thread::sleep(Duration::from_millis(20));
    producer.publish("jobs", b"\"across\"", &PublishOptions::default()).unwrap();
    assert_eq!(waiter.join().unwrap().as_deref(), Some("\"across\""));
}

/// See `common::a_delay_that_ran_out_unwatched_reaches_a_new_subscriber`.
#[test]
fn a_delay_that_ran_out_unwatched_reaches_a_new_subscriber() {
    let kit = Kit::sqlite("unwatched-delay");
    let path = kit.dir().join("shared.db");
    let (a, b) = (open(&path, "?lease_ms=60000"), open(&path, "?lease_ms=60000"));
    common::a_delay_that_ran_out_unwatched_reaches_a_new_subscriber(&a, &b);
}

/// See `common::two_brokers_taking_from_one_group_get_each_message_once`.
#[test]
fn two_brokers_taking_from_one_group_get_each_message_once() {
    let kit = Kit::sqlite("two-takers");
    let path = kit.dir().join("shared.db");
    common::two_brokers_taking_from_one_group_get_each_message_once(&open(&path, ""), &open(&path, ""));
}

/// See `common::the_store_view_shows_what_another_broker_made`.
#[test]
fn the_store_view_shows_what_another_broker_made() {
    let kit = Kit::sqlite("view-across");
    let path = kit.dir().join("shared.db");
    common::the_store_view_shows_what_another_broker_made(&open(&path, ""), &open(&path, ""));
}

/// See `common::another_broker_purges_one_group`.
#[test]
fn another_broker_purges_one_group() {
    let kit = Kit::sqlite("purge-group-across");
    let path = kit.dir().join("shared.db");
    common::another_broker_purges_one_group(&open(&path, ""), &open(&path, ""));
}

/// See `common::peek_sees_a_group_another_broker_uses`.
#[test]
fn peek_sees_a_group_another_broker_uses() {
    let kit = Kit::sqlite("peek-across");
    let path = kit.dir().join("shared.db");
    common::peek_sees_a_group_another_broker_uses(&open(&path, ""), &open(&path, ""));
}

// ---- durability across brokers -----------------------------------------------------------------

/// What waits in a named group, what a topic retains and what a delayed requeue holds back
/// outlive the broker; a delivery held at close comes back at once with attempt + 1; an
/// ungrouped subscription's group goes with its broker.
#[test]
fn what_waits_survives_the_broker_and_held_deliveries_come_back_at_close() {
    let kit = Kit::sqlite("restart");
    let path = kit.dir().join("s.db");
    {
        let b = open(&path, "");
        assert!(b.fetch("jobs", Some("w"), Some(Duration::ZERO)).unwrap().is_none());
        b.subscribe("jobs", |_: &Delivery| Verdict::Ack, &SubscribeOptions::default()).unwrap();
        b.unsubscribe(b.subscribe("jobs", |_: &Delivery| Verdict::Later, &SubscribeOptions::default()).unwrap())
            .unwrap();
        for p in ["1", "2", "3"] {
            b.publish("jobs", p.as_bytes(), &PublishOptions::default()).unwrap();
        }
        b.publish("early", b"\"kept\"", &PublishOptions::default()).unwrap();
        let held = b.fetch("jobs", Some("w"), Some(Duration::ZERO)).unwrap().unwrap();
        assert_eq!((payload_of(&held), held.attempt()), ("1".to_owned(), 1));
        let delayed = b.fetch("jobs", Some("w"), Some(Duration::ZERO)).unwrap().unwrap();
        b.nack(delayed.id(), true, Some(Duration::from_millis(300)), None).unwrap();
        b.join(Some(Duration::from_millis(1))).unwrap_err();
        let report = b.close(Some(Duration::ZERO), false).unwrap();
        assert_eq!(report.retained_discarded, 0, "kept in the file");
        assert!(report.remaining >= 1, "{report:?}");
    }
    let b = open(&path, "");
    let mut got = Vec::new();
    while got.len() < 3 {
        let d = b.fetch("jobs", Some("w"), Some(LONG)).unwrap().expect("kept for the group");
        got.push((payload_of(&d), d.attempt()));
        b.ack(d.id()).unwrap();
    }
    got.sort();
    assert_eq!(got, [("1".to_owned(), 2), ("2".to_owned(), 2), ("3".to_owned(), 1)]);
    let early = b.fetch("early", Some("late"), Some(Duration::ZERO)).unwrap().expect("retained across brokers");
    assert_eq!(payload_of(&early), "\"kept\"");
    b.ack(early.id()).unwrap();
    b.join(Some(LONG)).unwrap();
    assert_eq!(b.count(None).unwrap(), 0, "the closed broker's ungrouped subscriptions left nothing behind");
    let file = rusqlite::Connection::open(&path).unwrap();
    let groups: i64 =
        file.query_row("SELECT count(*) FROM consumer_groups WHERE owner IS NOT NULL", [], |r| r.get(0)).unwrap();
    assert_eq!(groups, 0, "anonymous groups are removed at close");
}

/// Over its attempt limit, a delivery that comes back by itself (released by its holder's close,
/// or its holder's lease ran out) is given up, dead-lettered, rather than handed out again.
#[test]
fn a_delivery_back_from_another_holder_past_its_attempt_limit_is_dead_lettered() {
    let kit = Kit::sqlite("limit");
    let path = kit.dir().join("s.db");
    let first = open(&path, "");
    assert!(first.fetch("jobs", Some("w"), Some(Duration::ZERO)).unwrap().is_none());
    assert!(first.fetch("dead", Some("d"), Some(Duration::ZERO)).unwrap().is_none());
    first.publish("jobs", b"1", &PublishOptions::default()).unwrap();
    let held = first.fetch("jobs", Some("w"), Some(Duration::ZERO)).unwrap().unwrap();
    assert_eq!(held.attempt(), 1);
    first.close(Some(Duration::ZERO), false).unwrap();
    let second = open(&path, "");
    let opts =
        FetchOptions { group: Some("w"), max_attempts: 1, dead_letter_topic: Some("dead"), ..Default::default() };
    assert!(second.fetch_with("jobs", &opts, Some(Duration::ZERO)).unwrap().is_none(), "given up, not handed out");
    let dead = second.fetch("dead", Some("d"), Some(Duration::ZERO)).unwrap().expect("dead-lettered");
    let meta: serde_json::Value = serde_json::from_slice(dead.metadata()).unwrap();
    assert_eq!((meta["dead_letter"]["attempts"].as_u64(), meta["dead_letter"]["group"].as_str()), (Some(2), Some("w")));
    second.ack(dead.id()).unwrap();
    second.join(Some(LONG)).unwrap();
    let t = second.stats().unwrap().totals;
    assert_eq!((t.failed, t.dead_lettered, t.in_flight), (1, 1, 0));
}

// ---- store failures on calls ------------------------------------------------------------------

/// Another process holding the file's write lock past the busy timeout makes a call fail with
/// `Unavailable` and change nothing; once the lock is gone the same calls succeed.
#[test]
fn a_locked_file_fails_calls_with_unavailable_and_nothing_half_done() {
    let kit = Kit::sqlite("locked-calls");
    let path = kit.dir().join("s.db");
    let b = open(&path, "?busy_timeout_ms=100");
    assert!(b.fetch("jobs", Some("w"), Some(Duration::ZERO)).unwrap().is_none());
    b.publish("jobs", b"1", &PublishOptions::default()).unwrap();
    let d = b.fetch("jobs", Some("w"), Some(Duration::ZERO)).unwrap().unwrap();
    let locker = rusqlite::Connection::open(&path).unwrap();
    locker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let e = b.publish("jobs", b"2", &PublishOptions::default()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{}", e.message());
    let batch = [BatchMessage { payload: b"3", ..Default::default() }];
    assert_eq!(b.publish_batch("jobs", &batch).unwrap_err().kind(), ErrorKind::Unavailable);
    assert_eq!(b.ack(d.id()).unwrap_err().kind(), ErrorKind::Unavailable);
    assert_eq!(b.nack(d.id(), true, None, None).unwrap_err().kind(), ErrorKind::Unavailable);
    assert_eq!(b.purge(None).unwrap_err().kind(), ErrorKind::Unavailable);
    let sub = b.subscribe("other", |_: &Delivery| Verdict::Ack, &SubscribeOptions::default());
    assert_eq!(sub.unwrap_err().kind(), ErrorKind::Unavailable);
    let t = b.stats().unwrap().totals;
    assert_eq!((t.published, t.processed, t.subscriptions, t.in_flight), (1, 0, 0, 1), "nothing changed");
    locker.execute_batch("ROLLBACK").unwrap();
    assert_eq!(b.count(None).unwrap(), 0);
    b.ack(d.id()).unwrap();
    b.publish("jobs", b"2", &PublishOptions::default()).unwrap();
    assert_eq!(b.count(None).unwrap(), 1);
    b.join(Some(Duration::ZERO)).unwrap_err();
    assert_eq!(b.purge(None).unwrap(), 1);
    b.join(Some(LONG)).unwrap();
}

// ---- files that are not usable stores -----------------------------------------------------------

/// Opening `path` as a broker fails with `kind`, names the file, and changes none of its bytes.
fn refused(path: &Path, options: &str, kind: ErrorKind) {
    let before = std::fs::read(path).ok();
    let e = Broker::open(&url(path, options)).err().expect("the open should fail");
    assert_eq!(e.kind(), kind, "{}", e.message());
    assert!(e.message().contains(&path.display().to_string()), "does not name the file: {}", e.message());
    assert_eq!(std::fs::read(path).ok(), before, "the file was changed");
}

#[test]
fn files_that_are_not_usable_stores_are_refused_through_broker_creation() {
    let kit = Kit::sqlite("bad-files");
    let dir = kit.dir();
    // A brokk store with something in it, closed.
    let good = dir.join("good.db");
    {
        let b = open(&good, "");
        assert!(b.fetch("t", Some("w"), Some(Duration::ZERO)).unwrap().is_none());
        for i in 0..300 {
            b.publish(
                "t",
                format!("{{\"i\":{i},\"pad\":\"{}\"}}", "x".repeat(100)).as_bytes(),
                &PublishOptions::default(),
            )
            .unwrap();
        }
    }
    let foreign = dir.join("foreign.db");
    rusqlite::Connection::open(&foreign).unwrap().execute_batch("CREATE TABLE users (name TEXT)").unwrap();
    refused(&foreign, "", ErrorKind::IncompatibleStore);

    let newer = dir.join("newer.db");
    std::fs::copy(&good, &newer).unwrap();
    rusqlite::Connection::open(&newer).unwrap().execute_batch("PRAGMA user_version = 99").unwrap();
    refused(&newer, "", ErrorKind::IncompatibleStore);

    let noise = dir.join("noise.db");
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let bytes: Vec<u8> = (0..8192)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(&noise, bytes).unwrap();
    refused(&noise, "", ErrorKind::IncompatibleStore);

    let truncated = dir.join("truncated.db");
    let whole = std::fs::read(&good).unwrap();
    assert!(whole.len() >= 4 * 4096, "the store spans several pages");
    std::fs::write(&truncated, &whole[..whole.len() / 2 + 100]).unwrap();
    refused(&truncated, "", ErrorKind::IncompatibleStore);

    refused(dir, "", ErrorKind::CannotOpenStore);
    let missing = dir.join("no-such-folder").join("s.db");
    refused(&missing, "", ErrorKind::CannotOpenStore);
    assert!(!missing.parent().unwrap().exists(), "nothing created");

    let locker = rusqlite::Connection::open(&good).unwrap();
    locker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    refused(&good, "?busy_timeout_ms=100", ErrorKind::Unavailable);
    locker.execute_batch("ROLLBACK").unwrap();
    drop(locker);
    let b = open(&good, "");
    assert_eq!(b.count(None).unwrap(), 300, "the good store still opens, with what it had");

    for bad in ["sqlite://", "sqlite:///x.db?synchronous=sometimes", "sqlite:///x.db?colour=blue"] {
        assert_eq!(Broker::open(bad).err().unwrap().kind(), ErrorKind::InvalidUrl, "{bad}");
    }
}

// ---- processes that crash ---------------------------------------------------------------------

/// Set in a child process: its role and its store.
const ROLE: &str = "BROKK_CRASH_ROLE";
const FILE: &str = "BROKK_CRASH_FILE";
/// Lines a child writes for the parent start with this (the test harness writes too).
const SAYS: &str = "child:";
/// The lease children hold deliveries under, so that a killed child's come back soon.
const LEASE_OPTION: &str = "?lease_ms=300";

/// Not a test of its own: the body of a child process that `crash_and_recovery` starts from
/// this same test binary (with `ROLE` set); without `ROLE` it does nothing.
#[test]
fn crash_child() {
    let Ok(role) = std::env::var(ROLE) else { return };
    let path = PathBuf::from(std::env::var(FILE).unwrap());
    let b = open(&path, LEASE_OPTION);
    match role.as_str() {
        // Claims deliveries and never settles them: it holds each until it is killed.
        "holder" => {
            let opts = SubscribeOptions { manual_ack: true, ..grouped("workers") };
            b.subscribe(
                "jobs",
                |d: &Delivery| {
                    println!("{SAYS}held {} {}", payload_of(d), d.attempt());
                    Verdict::Later
                },
                &opts,
            )
            .unwrap();
        }
        // An ungrouped subscription, until it is killed.
        "watcher" => {
            b.subscribe("news", |_: &Delivery| Verdict::Ack, &SubscribeOptions::default()).unwrap();
            println!("{SAYS}watching");
        }
        // Publishes batches of ten, saying which batch just committed, until it is killed.
        "producer" => {
            for k in 0.. {
                let payloads: Vec<String> = (0..10).map(|i| format!("\"p{k}-{i}\"")).collect();
                let batch: Vec<_> =
                    payloads.iter().map(|p| BatchMessage { payload: p.as_bytes(), ..Default::default() }).collect();
                b.publish_batch("jobs", &batch).unwrap();
                println!("{SAYS}committed {k}");
            }
        }
        // Three threads publish one message a call, flat out, until it is killed.
        "flooder" => {
            assert!(b.fetch("flood", Some("w"), Some(Duration::ZERO)).unwrap().is_none());
            let b = Arc::new(b);
            for _ in 0..3 {
                let b = Arc::clone(&b);
                std::thread::spawn(move || loop {
                    b.publish("flood", b"1", &PublishOptions::default()).unwrap();
                });
            }
            println!("{SAYS}flooding");
            std::thread::sleep(LONG * 4);
            panic!("the parent should have killed this child");
        }
        other => panic!("unknown role {other}"),
    }
    std::thread::sleep(LONG * 4);
    panic!("the parent should have killed this child");
}

/// A child process of this test binary running `crash_child` as `role`, and its lines.
fn spawn_child(role: &str, path: &Path) -> (Child, mpsc::Receiver<String>) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env(ROLE, role)
        .env(FILE, path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            // The harness may have written "test crash_child ... " on the same line first.
            if let Some(at) = line.find(SAYS) {
                if tx.send(line[at + SAYS.len()..].to_owned()).is_err() {
                    return;
                }
            }
        }
    });
    (child, rx)
}

/// SIGKILL: no destructor, no close, no release of anything the child holds.
fn kill(child: &mut Child) {
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: kill(2) takes plain integers; `pid` is our own child, not yet waited for.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    child.wait().unwrap();
}

/// One child claims deliveries and is killed holding them unsettled; another is killed while
/// it publishes batches. A new broker on the file then processes every committed message, none
/// twice; those the first child held come back with attempt 2; and each batch is all there or
/// not at all.
#[test]
fn crash_and_recovery() {
    let kit = Kit::sqlite("crash");
    let path = kit.dir().join("s.db");
    let parent = open(&path, LEASE_OPTION);
    assert!(parent.fetch("jobs", Some("workers"), Some(Duration::ZERO)).unwrap().is_none());
    for i in 0..200 {
        parent.publish("jobs", format!("\"m{i}\"").as_bytes(), &PublishOptions::default()).unwrap();
    }

    let (mut holder, said) = spawn_child("holder", &path);
    let mut held = BTreeSet::new();
    while held.len() < 20 {
        let line = said.recv_timeout(LONG).expect("the holder claims");
        let mut words = line.split(' ').skip(1);
        held.insert(words.next().unwrap().to_owned());
    }
    kill(&mut holder);
    // What it claimed but had not yet handed to its handler is held all the same; read it all.
    while let Ok(line) = said.try_recv() {
        held.insert(line.split(' ').nth(1).unwrap().to_owned());
    }

    let (mut producer, said) = spawn_child("producer", &path);
    let mut committed = 0;
    while committed < 5 {
        let line = said.recv_timeout(LONG).expect("the producer commits");
        assert_eq!(line, format!("committed {committed}"));
        committed += 1;
    }
    kill(&mut producer);
    while said.try_recv().is_ok() {
        committed += 1;
    }

    drop(parent);
    let b = open(&path, LEASE_OPTION);
    let seen: Seen = Default::default();
    b.subscribe("jobs", recorder(&seen), &SubscribeOptions { concurrency: 4, ..grouped("workers") }).unwrap();
    let expected: BTreeSet<String> = (0..200)
        .map(|i| format!("\"m{i}\""))
        .chain((0..committed).flat_map(|k| (0..10).map(move |i| format!("\"p{k}-{i}\""))))
        .collect();
    eventually("every committed message processed", || {
        let seen = seen.lock().unwrap();
        expected.iter().all(|m| seen.contains_key(m))
    });
    eventually("nothing left in the file", || b.count(None).unwrap() == 0);
    b.join(Some(LONG)).unwrap();
    let seen = seen.lock().unwrap();
    for (payload, attempts) in seen.iter() {
        assert_eq!(attempts.len(), 1, "{payload} processed {attempts:?}");
        // Redelivered (attempt 2) only what the killed child may have claimed: everything it
        // handed to its handler, and what else it had claimed in a batch; never the producer's,
        // which came after it died.
        if held.contains(payload) {
            assert_eq!(attempts[0], 2, "{payload}: held by the killed child");
        } else if payload.starts_with("\"p") {
            assert_eq!(attempts[0], 1, "{payload}: published after the holder died");
        } else {
            assert!(attempts[0] <= 2, "{payload}: attempt {}", attempts[0]);
        }
    }
    // The batch in progress when the producer died: all ten, or none.
    let in_progress: Vec<_> =
        (0..10).map(|i| format!("\"p{committed}-{i}\"")).filter(|p| seen.contains_key(p)).collect();
    assert!(in_progress.is_empty() || in_progress.len() == 10, "a torn batch: {in_progress:?}");
    let extra = seen.len() - expected.len() - in_progress.len();
    assert_eq!(extra, 0, "only published messages");
    assert!(held.iter().all(|h| seen.contains_key(h)));
}

/// A killed broker's ungrouped subscription keeps receiving deliveries until the brokers still
/// alive notice that its owner went silent (three of its leases) and remove its group.
#[test]
fn a_killed_brokers_ungrouped_subscription_is_collected() {
    let kit = Kit::sqlite("collect");
    let path = kit.dir().join("s.db");
    let alive = open(&path, LEASE_OPTION);
    let logs = Logs::on(&alive, Level::Info);
    let (mut watcher, said) = spawn_child("watcher", &path);
    assert_eq!(said.recv_timeout(LONG).expect("the watcher subscribes"), "watching");
    kill(&mut watcher);
    for i in 0..5 {
        alive.publish("news", i.to_string().as_bytes(), &PublishOptions::default()).unwrap();
    }
    assert!(alive.count(Some(&["news"])).unwrap() <= 5, "the dead subscription's group is fed for now");
    eventually("the silent owner's group to be removed", || alive.count(Some(&["news"])).unwrap() == 0);
    // The topic has no group any more: what comes now is retained for the first named one.
    alive.publish("news", b"5", &PublishOptions::default()).unwrap();
    assert_eq!(alive.stats().unwrap().totals.retained, 1);
    let collected = logs.of("brokk::sqlite");
    assert!(collected.iter().any(|(l, m)| *l == Level::Info && m.contains("silent")), "{collected:?}");
}

/// Waiting for the write lock another connection holds is logged once the wait is over (Info
/// from 100 ms), naming the file; giving up after the busy timeout is a warning.
#[test]
fn waits_for_the_write_lock_are_logged() {
    let kit = Kit::sqlite("lock-waits");
    let path = kit.dir().join("s.db");
    let impatient = open(&path, "?busy_timeout_ms=150");
    let patient = open(&path, "?busy_timeout_ms=10000");
    let (gave_up, waited) = (Logs::on(&impatient, Level::Debug), Logs::on(&patient, Level::Debug));
    assert!(patient.fetch("jobs", Some("w"), Some(Duration::ZERO)).unwrap().is_none());
    let locker = rusqlite::Connection::open(&path).unwrap();
    locker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let e = impatient.publish("jobs", b"1", &PublishOptions::default()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable);
    let gave_up = gave_up.of("brokk::sqlite");
    assert!(matches!(&gave_up[..], [(Level::Warn, m)] if m.contains("gave up") && m.contains("s.db")), "{gave_up:?}");

    std::thread::scope(|s| {
        s.spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            locker.execute_batch("COMMIT").unwrap();
        });
        patient.publish("jobs", b"2", &PublishOptions::default()).unwrap();
    });
    let waited = waited.of("brokk::sqlite");
    assert!(
        matches!(&waited[..], [(Level::Info | Level::Warn, m)] if m.contains("waited") && m.contains("s.db")),
        "{waited:?}"
    );
    assert_eq!(patient.purge(None).unwrap(), 1);
}

/// Writer starvation: while another process's three threads publish flat out (its group
/// commit keeps the file's write lock almost always taken), each publish of this process still
/// gets its turn, well within its busy timeout (2 s here; each must finish within a quarter of
/// it, a bound, not a speed: before writers took turns, one in a few waited the whole timeout
/// and failed with `Unavailable`).
#[test]
fn a_publish_gets_its_turn_while_another_process_publishes_flat_out() {
    let kit = Kit::sqlite("starvation");
    let path = kit.dir().join("s.db");
    let b = open(&path, "?busy_timeout_ms=2000");
    assert!(b.fetch("jobs", Some("w"), Some(Duration::ZERO)).unwrap().is_none());
    let (mut flooder, said) = spawn_child("flooder", &path);
    assert_eq!(said.recv_timeout(LONG).expect("the flooder starts"), "flooding");
    std::thread::sleep(Duration::from_millis(100));
    let mut slowest = Duration::ZERO;
    let mut failed = None;
    for i in 0..30 {
        let started = std::time::Instant::now();
        let r = b.publish("jobs", format!("{i}").as_bytes(), &PublishOptions::default());
        slowest = slowest.max(started.elapsed());
        if let Err(e) = r {
            failed = Some(format!("publish {i}: {}", e.message()));
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    kill(&mut flooder);
    assert_eq!(failed, None);
    assert!(slowest < Duration::from_millis(500), "a publish waited {slowest:?} for its turn");
    assert_eq!(b.count(Some(&["jobs"])).unwrap(), 30);
}
