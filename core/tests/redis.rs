//! The Redis backend where it differs from memory: brokers in several processes on one server,
//! processes killed while they hold deliveries, a server restarted mid-run, a three-node Redis
//! Cluster, servers paused (SIGSTOP) or killed under a call, and servers or URLs that cannot be
//! used. Every server is a real `redis-server` started by the test (see `common::redis_server`);
//! every wait is bounded. The only timing asserted is the upper bound of a call to a server
//! that does not answer, with a generous margin (see `answer_bound`).

// Needs the Redis backend: built with its cargo feature only.
#![cfg(feature = "redis")]

mod common;

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use brokk_core::log::Level;
use brokk_core::{
    BatchMessage, Broker, BrokerConfig, Delivery, ErrorKind, FetchOptions, PublishOptions, SubscribeOptions, Taken,
    Verdict,
};
use common::logs::Logs;
use common::redis_server::{self, RedisServer};
use common::shared_store::{eventually, grouped, payload_of, recorder, Seen, LONG};

/// A prefix no other test uses.
fn prefix(name: &str) -> String {
    format!("r{}.{name}", std::process::id())
}

/// The shared server's URL with `prefix` and `options` (`&key=value...`).
fn url(prefix: &str, options: &str) -> String {
    format!("{}?prefix={prefix}{options}", redis_server::shared().url())
}

// ---- child processes ----------------------------------------------------------------------------

/// Set in a child process: its role and its store URL.
const ROLE: &str = "BROKK_REDIS_ROLE";
const URL: &str = "BROKK_REDIS_URL";
/// Lines a child writes for the parent start with this (the test harness writes too).
const SAYS: &str = "child:";

/// Not a test of its own: the body of a child process that the tests below start from this
/// same test binary (with `ROLE` set); without `ROLE` it does nothing.
#[test]
fn child() {
    let Ok(role) = std::env::var(ROLE) else { return };
    let b = Broker::open(&std::env::var(URL).unwrap()).unwrap();
    match role.as_str() {
        // A member of group "workers" on every topic it is given: processes and says so.
        "worker" => {
            let topics = std::env::var("BROKK_REDIS_TOPICS").unwrap();
            for topic in topics.split(',') {
                let handler = |d: &Delivery| {
                    println!("{SAYS}done {} {}", payload_of(d), d.attempt());
                    Verdict::Ack
                };
                b.subscribe(topic, handler, &SubscribeOptions { concurrency: 2, ..grouped("workers") }).unwrap();
            }
            println!("{SAYS}ready");
        }
        // Claims deliveries and never settles them: "jobs" under a 1 s ack deadline, "tasks"
        // under the renewed lease; holds each until it is killed.
        "holder" => {
            let hold = |d: &Delivery| {
                println!("{SAYS}held {} {} {}", d.topic(), payload_of(d), d.attempt());
                Verdict::Later
            };
            let deadline =
                SubscribeOptions { manual_ack: true, ack_deadline: Some(Duration::from_secs(1)), ..grouped("workers") };
            b.subscribe("jobs", hold, &deadline).unwrap();
            b.subscribe("tasks", hold, &SubscribeOptions { manual_ack: true, ..grouped("workers") }).unwrap();
        }
        // An ungrouped subscription, until it is killed.
        "watcher" => {
            b.subscribe("news", |_: &Delivery| Verdict::Ack, &SubscribeOptions::default()).unwrap();
            println!("{SAYS}watching");
        }
        other => panic!("unknown role {other}"),
    }
    std::thread::sleep(LONG * 2);
    panic!("the parent should have killed this child");
}

/// A child process running `child` as `role`; killed (SIGKILL) when dropped.
struct Proc {
    child: Child,
    said: mpsc::Receiver<String>,
}

impl Proc {
    fn spawn(role: &str, url: &str, env: &[(&str, &str)]) -> Proc {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args(["--exact", "child", "--nocapture", "--test-threads=1"])
            .env(ROLE, role)
            .env(URL, url)
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, said) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Some(at) = line.find(SAYS) {
                    if tx.send(line[at + SAYS.len()..].to_owned()).is_err() {
                        return;
                    }
                }
            }
        });
        Proc { child, said }
    }

    fn next(&self) -> String {
        self.said.recv_timeout(LONG).expect("the child says something")
    }

    /// SIGKILL: no destructor, no close, no release of anything the child holds.
    fn kill(&mut self) {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: kill(2) takes plain integers; `pid` is our own child, not yet waited for.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Collects "done <payload> <attempt>" lines of several children into `seen` until `until`.
fn collect_done(
    children: &[Proc],
    seen: &mut HashMap<String, Vec<u32>>,
    until: impl Fn(&HashMap<String, Vec<u32>>) -> bool,
) {
    let deadline = Instant::now() + LONG;
    while !until(seen) {
        assert!(Instant::now() < deadline, "timed out; {} processed", seen.len());
        for c in children {
            while let Ok(line) = c.said.try_recv() {
                let mut w = line.split(' ');
                if w.next() == Some("done") {
                    let (payload, attempt) = (w.next().unwrap().to_owned(), w.next().unwrap().parse().unwrap());
                    seen.entry(payload).or_default().push(attempt);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

// ---- several processes on one server ----------------------------------------------------------

/// See `common::a_delay_that_ran_out_unwatched_reaches_a_new_subscriber`.
#[test]
fn a_delay_that_ran_out_unwatched_reaches_a_new_subscriber() {
    let url = url(&prefix("unwatched-delay"), "&lease_ms=60000");
    let (a, b) = (Broker::open(&url).unwrap(), Broker::open(&url).unwrap());
    common::a_delay_that_ran_out_unwatched_reaches_a_new_subscriber(&a, &b);
}

/// See `common::two_brokers_taking_from_one_group_get_each_message_once`.
#[test]
fn two_brokers_taking_from_one_group_get_each_message_once() {
    let url = url(&prefix("two-takers"), "");
    let (a, b) = (Broker::open(&url).unwrap(), Broker::open(&url).unwrap());
    common::two_brokers_taking_from_one_group_get_each_message_once(&a, &b);
}

/// See `common::the_store_view_shows_what_another_broker_made`.
#[test]
fn the_store_view_shows_what_another_broker_made() {
    let url = url(&prefix("view-across"), "");
    let (a, b) = (Broker::open(&url).unwrap(), Broker::open(&url).unwrap());
    common::the_store_view_shows_what_another_broker_made(&a, &b);
}

/// See `common::another_broker_purges_one_group`.
#[test]
fn another_broker_purges_one_group() {
    let url = url(&prefix("purge-group-across"), "");
    let (a, b) = (Broker::open(&url).unwrap(), Broker::open(&url).unwrap());
    common::another_broker_purges_one_group(&a, &b);
}

/// See `common::peek_sees_a_group_another_broker_uses`.
#[test]
fn peek_sees_a_group_another_broker_uses() {
    let url = url(&prefix("peek-across"), "");
    let (a, b) = (Broker::open(&url).unwrap(), Broker::open(&url).unwrap());
    common::peek_sees_a_group_another_broker_uses(&a, &b);
}

/// A consumer waiting for work costs the server nothing while nothing happens (the broker hears
/// of writes on the prefix's channel instead of polling), and hears at once of what another
/// broker publishes.
#[test]
fn a_waiting_consumer_listens_instead_of_polling() {
    let server = RedisServer::start(&[]); // its own: the command count below is the server's
    let url = format!("{}?prefix=quiet", server.url());
    let (consumer, producer) = (Broker::open(&url).unwrap(), Broker::open(&url).unwrap());
    let waiter = {
        let consumer = consumer.clone();
        std::thread::spawn(move || consumer.fetch("quiet", Some("w"), Some(LONG)).unwrap().map(|d| payload_of(&d)))
    };
    let commands = || {
        let info = redis_server::raw(server.port, "INFO stats").unwrap();
        let line = info.lines().find(|l| l.starts_with("total_commands_processed:")).unwrap().to_owned();
        line.split(':').nth(1).unwrap().trim().parse::<u64>().unwrap()
    };
    std::thread::sleep(Duration::from_millis(200)); // the fetch is waiting by now
    let before = commands();
    std::thread::sleep(Duration::from_millis(500));
    let idle = commands() - before;
    // A poll every 5 ms would be about a hundred; the INFO commands themselves are two.
    assert!(idle <= 5, "{idle} commands in 500 ms of waiting");
    producer.publish("quiet", b"\"heard\"", &PublishOptions::default()).unwrap();
    assert_eq!(waiter.join().unwrap().as_deref(), Some("\"heard\""));
}

/// Publishes of several threads on one topic travel together in one script call, and each is
/// still all or nothing on its own: with room for 10 retained messages, batches of 3 from 8
/// threads at once retain exactly three whole batches, and the others fail with Full.
#[test]
fn publishes_that_travel_together_are_each_all_or_nothing() {
    let url = url(&prefix("together"), "");
    let b =
        Broker::with_config(&BrokerConfig { retention_limit: 10, ..BrokerConfig::from_url(&url).unwrap() }).unwrap();
    let results: Vec<(usize, bool)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let b = &b;
                s.spawn(move || {
                    (0..4)
                        .map(|i| {
                            let payloads: Vec<String> = (0..3).map(|j| format!("\"{t}-{i}-{j}\"")).collect();
                            let batch: Vec<BatchMessage> = payloads
                                .iter()
                                .map(|p| BatchMessage { payload: p.as_bytes(), options: Default::default() })
                                .collect();
                            match b.publish_batch("kept", &batch) {
                                Ok(_) => (t * 4 + i, true),
                                Err(e) => {
                                    assert_eq!(e.kind(), ErrorKind::Full, "{e}");
                                    (t * 4 + i, false)
                                }
                            }
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let kept = results.iter().filter(|(_, ok)| *ok).count();
    assert_eq!(kept, 3, "three whole batches fit in 10");
    assert_eq!(b.count(Some(&["kept"])).unwrap(), 9);
    // The first group takes them over: each kept batch whole.
    let mut got = Vec::new();
    while let Some(d) = b.fetch("kept", Some("w"), Some(Duration::ZERO)).unwrap() {
        got.push(payload_of(&d));
        b.ack(d.id()).unwrap();
    }
    assert_eq!(got.len(), 9);
    for (n, _) in results.iter().filter(|(_, ok)| *ok) {
        let (t, i) = (n / 4, n % 4);
        for j in 0..3 {
            assert!(got.contains(&format!("\"{t}-{i}-{j}\"")), "batch {t}-{i} whole");
        }
    }
}

/// A group's stream of a priority goes once its last entry is settled, requeued with a delay or
/// purged: claims walk the priorities in use, and priorities used once (pynenc's are floats)
/// must not pile up. The next delivery of that priority makes the stream again.
#[test]
fn drained_priority_streams_are_removed() {
    let prefix = prefix("drained");
    let b = Broker::open(&url(&prefix, "")).unwrap();
    let port = redis_server::shared().port;
    let streams = || {
        let reply = redis_server::raw(port, &format!("KEYS {{{prefix}:t}}:s:*")).unwrap();
        reply.lines().filter(|l| l.contains(":s:")).count()
    };
    assert!(b.fetch("t", Some("w"), Some(Duration::ZERO)).unwrap().is_none()); // makes the group
    for p in 0..50 {
        let opts = PublishOptions { priority: p, ..Default::default() };
        b.publish("t", format!("{p}").as_bytes(), &opts).unwrap();
    }
    assert_eq!(streams(), 50);
    // Acked: gone, stream by stream.
    for expected in (25..50).rev() {
        let d = b.fetch("t", Some("w"), Some(Duration::ZERO)).unwrap().unwrap();
        assert_eq!(payload_of(&d), expected.to_string());
        b.ack(d.id()).unwrap();
    }
    assert_eq!(streams(), 25);
    // Requeued with a delay: out of its stream until due; back in one when claimed again.
    let d = b.fetch("t", Some("w"), Some(Duration::ZERO)).unwrap().unwrap();
    b.nack(d.id(), true, Some(Duration::from_millis(50)), None).unwrap();
    assert_eq!(streams(), 24);
    // Purged: every stream goes; a new message of an old priority works as before.
    assert_eq!(b.purge(None).unwrap(), 24);
    assert_eq!(streams(), 0);
    b.publish("t", b"\"again\"", &PublishOptions { priority: 7, ..Default::default() }).unwrap();
    let mut got = Vec::new();
    while got.len() < 2 {
        let d = b.fetch("t", Some("w"), Some(LONG)).unwrap().unwrap();
        got.push((payload_of(&d), d.attempt()));
        b.ack(d.id()).unwrap();
    }
    got.sort();
    assert_eq!(got, [("\"again\"".to_string(), 1), ("24".to_string(), 2)]);
    assert_eq!(streams(), 0);
}

/// Two worker processes form one named group: every message is processed once, by one of them,
/// at its first attempt; a second group in this process gets its own copy of each; the counts
/// reconcile and nothing is left in Redis.
#[test]
fn two_processes_share_one_named_group_and_every_message_is_processed_once() {
    let prefix = prefix("two-procs");
    let url = url(&prefix, "");
    let parent = Broker::open(&url).unwrap();
    let audit: Seen = Default::default();
    parent.subscribe("jobs", recorder(&audit), &grouped("audit")).unwrap();
    let workers: Vec<Proc> = (0..2).map(|_| Proc::spawn("worker", &url, &[("BROKK_REDIS_TOPICS", "jobs")])).collect();
    for w in &workers {
        assert_eq!(w.next(), "ready");
    }
    const N: usize = 400;
    for i in 0..N {
        parent.publish("jobs", format!("\"m{i}\"").as_bytes(), &PublishOptions::default()).unwrap();
    }
    let mut done = HashMap::new();
    collect_done(&workers, &mut done, |seen| seen.values().map(Vec::len).sum::<usize>() >= N);
    eventually("the audit group's copy of each", || audit.lock().unwrap().len() == N);
    std::thread::sleep(Duration::from_millis(50)); // a duplicate would show by now
    collect_done(&workers, &mut done, |_| true);
    assert_eq!(done.len(), N, "every message");
    assert!(done.values().all(|a| a == &[1]), "each once, at its first attempt");
    assert!(audit.lock().unwrap().values().all(|a| a == &[1]));
    parent.join(Some(LONG)).unwrap();
    let t = parent.stats().unwrap().totals;
    assert_eq!((t.published, t.processed, t.failed, t.in_flight), (N as u64, N as u64, 0, 0));
    eventually("nothing waits anywhere", || parent.count(None).unwrap() == 0);
    drop(workers);
    assert_eq!(parent.close(Some(LONG), false).unwrap().remaining, 0);
}

/// A process killed while it holds deliveries: those under an ack deadline come back to the
/// other member once the deadline passed, those under the renewed lease once it ran out; each
/// with attempt 2.
#[test]
fn a_killed_consumer_s_deliveries_come_back_to_another_member_with_the_next_attempt() {
    let prefix = prefix("killed");
    let url = url(&prefix, "&lease_ms=600");
    let parent = Broker::open(&url).unwrap();
    for topic in ["jobs", "tasks"] {
        assert!(parent.fetch(topic, Some("workers"), Some(Duration::ZERO)).unwrap().is_none());
        for i in 0..5 {
            parent.publish(topic, format!("\"{topic}{i}\"").as_bytes(), &PublishOptions::default()).unwrap();
        }
    }
    let mut holder = Proc::spawn("holder", &url, &[]);
    let mut held = BTreeSet::new();
    while held.len() < 10 {
        let line = holder.next();
        let w: Vec<&str> = line.split(' ').collect();
        assert_eq!((w[0], w[3]), ("held", "1"), "{line}");
        held.insert(w[2].to_owned());
    }
    holder.kill();
    let mut back = HashMap::new();
    let deadline = Instant::now() + LONG;
    while back.len() < 10 {
        assert!(Instant::now() < deadline, "only {back:?} came back");
        // "tasks" by fetch and ack; "jobs" by take, first with no room, which leaves the
        // reclaimed delivery ready where it was, at its new attempt, for a take with room.
        let opts = FetchOptions { group: Some("workers"), ..Default::default() };
        if let Some(d) = parent.fetch_with("tasks", &opts, Some(Duration::from_millis(50))).unwrap() {
            back.insert(payload_of(&d), d.attempt());
            parent.ack(d.id()).unwrap();
        }
        match parent.take("jobs", Some("workers"), Some(Duration::from_millis(50)), 1).unwrap() {
            Taken::Empty => {}
            Taken::TooLarge(size) => {
                assert!(parent.count(Some(&["jobs"])).unwrap() >= 1, "left in place, it counts as ready");
                match parent.take("jobs", Some("workers"), Some(Duration::ZERO), size).unwrap() {
                    Taken::Message(d) => {
                        back.insert(payload_of(&d), d.attempt());
                    }
                    other => panic!("the delivery left in place: {other:?}"),
                }
            }
            Taken::Message(d) => panic!("a take with room for 1 byte took {}", payload_of(&d)),
            other => panic!("take found {other:?}"),
        }
    }
    assert_eq!(back.keys().cloned().collect::<BTreeSet<_>>(), held);
    assert!(back.values().all(|&a| a == 2), "{back:?}");
    parent.join(Some(LONG)).unwrap();
    assert_eq!(parent.count(None).unwrap(), 0);
}

/// A killed broker's ungrouped subscription keeps receiving deliveries until a live broker's
/// heartbeat finds its owner silent for three leases and removes its group.
#[test]
fn a_killed_brokers_ungrouped_subscription_is_collected() {
    let prefix = prefix("collect");
    let url = url(&prefix, "&lease_ms=300");
    let alive = Broker::open(&url).unwrap();
    let logs = Logs::on(&alive, Level::Info);
    let mut watcher = Proc::spawn("watcher", &url, &[]);
    assert_eq!(watcher.next(), "watching");
    watcher.kill();
    for i in 0..5 {
        alive.publish("news", i.to_string().as_bytes(), &PublishOptions::default()).unwrap();
    }
    assert!(alive.count(Some(&["news"])).unwrap() <= 5, "the dead subscription's group is fed for now");
    eventually("the silent owner's group to be removed", || alive.count(Some(&["news"])).unwrap() == 0);
    alive.publish("news", b"5", &PublishOptions::default()).unwrap();
    assert_eq!(alive.stats().unwrap().totals.retained, 1, "no group left: retained");
    eventually("the collection logged", || logs.of("brokk::redis").iter().any(|(_, m)| m.contains("silent")));
}

/// What waits in a named group and what a topic retains outlive the broker; a delivery held at
/// close comes back at once with attempt + 1; an ungrouped subscription's group goes with it.
#[test]
fn what_waits_survives_the_broker_and_held_deliveries_come_back_at_close() {
    let prefix = prefix("restart-broker");
    let url = url(&prefix, "");
    {
        let b = Broker::open(&url).unwrap();
        assert!(b.fetch("jobs", Some("w"), Some(Duration::ZERO)).unwrap().is_none());
        b.subscribe("jobs", |_: &Delivery| Verdict::Ack, &SubscribeOptions::default()).unwrap();
        for p in ["1", "2", "3"] {
            b.publish("jobs", p.as_bytes(), &PublishOptions::default()).unwrap();
        }
        b.publish("early", b"\"kept\"", &PublishOptions::default()).unwrap();
        let held = b.fetch("jobs", Some("w"), Some(Duration::ZERO)).unwrap().unwrap();
        assert_eq!((payload_of(&held), held.attempt()), ("1".to_owned(), 1));
        let report = b.close(Some(Duration::ZERO), false).unwrap();
        assert_eq!(report.retained_discarded, 0, "kept in Redis");
    }
    let b = Broker::open(&url).unwrap();
    let mut got = Vec::new();
    while got.len() < 3 {
        let d = b.fetch("jobs", Some("w"), Some(LONG)).unwrap().expect("kept for the group");
        got.push((payload_of(&d), d.attempt()));
        b.ack(d.id()).unwrap();
    }
    got.sort();
    assert_eq!(got, [("1".to_owned(), 2), ("2".to_owned(), 1), ("3".to_owned(), 1)]);
    let early = b.fetch("early", Some("late"), Some(Duration::ZERO)).unwrap().expect("retained across brokers");
    assert_eq!(payload_of(&early), "\"kept\"");
    b.ack(early.id()).unwrap();
    b.join(Some(LONG)).unwrap();
    assert_eq!(b.count(None).unwrap(), 0, "the closed broker's ungrouped subscription left nothing behind");
    let anon = redis_server::raw(redis_server::shared().port, &format!("KEYS {{{prefix}:jobs}}:s:a:*"));
    assert_eq!(anon.as_deref(), Some("*0\r\n"), "its streams are gone");
}

// ---- faults ---------------------------------------------------------------------------------------

/// Redis killed and restarted in the middle of a run (append-only file, fsync always): calls
/// made meanwhile fail with `Unavailable` (nothing was done) or `OutcomeUnknown` (the request
/// was sent when the server died), the brokers connect again on their next calls, every
/// publish that returned Ok is delivered, none that said `Unavailable` is; what was processed
/// but not acked comes back.
#[test]
fn a_restarted_server_loses_nothing_acknowledged() {
    let mut server = RedisServer::start(&["--appendonly", "yes", "--appendfsync", "always"]);
    let url = format!("{}?prefix=restart&lease_ms=600&timeout_ms=500", server.url());
    let consumer = Broker::open(&url).unwrap();
    let producer = Broker::open(&url).unwrap();
    let seen: Seen = Default::default();
    consumer.subscribe("jobs", recorder(&seen), &SubscribeOptions { concurrency: 2, ..grouped("workers") }).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (acked, unavailable) = std::thread::scope(|s| {
        let publisher = s.spawn(|| {
            let (mut acked, mut unavailable) = (Vec::new(), Vec::new());
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) || acked.len() < 50 {
                let payload = format!("\"m{i}\"");
                match producer.publish("jobs", payload.as_bytes(), &PublishOptions::default()) {
                    Ok(_) => acked.push(payload),
                    Err(e) => {
                        assert!(matches!(e.kind(), ErrorKind::Unavailable | ErrorKind::OutcomeUnknown), "{e}");
                        assert!(e.message().contains("redis"), "a clear message: {e}");
                        if e.kind() == ErrorKind::Unavailable {
                            unavailable.push(payload);
                        }
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
                i += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
            (acked, unavailable)
        });
        std::thread::sleep(Duration::from_millis(300));
        server.kill();
        std::thread::sleep(Duration::from_millis(500));
        server.restart();
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::Relaxed);
        publisher.join().unwrap()
    });
    assert!(!unavailable.is_empty(), "the publisher saw the server gone");
    eventually("every acknowledged publish delivered", || {
        let seen = seen.lock().unwrap();
        acked.iter().all(|p| seen.contains_key(p))
    });
    eventually("nothing left waiting", || consumer.count(None).unwrap() == 0);
    consumer.join(Some(LONG)).unwrap();
    let seen = seen.lock().unwrap();
    let landed: Vec<&String> = unavailable.iter().filter(|p| seen.contains_key(*p)).collect();
    assert!(landed.is_empty(), "publishes that said Unavailable were delivered: {landed:?}");
}

/// An ack made while the server is down fails with `Unavailable` and changes nothing: retried
/// once it is back, it settles the delivery; a delivery whose failed ack is never retried comes
/// back to its group after the lease, with the next attempt.
#[test]
fn a_failed_ack_can_be_retried_and_an_abandoned_one_comes_back() {
    let mut server = RedisServer::start(&["--appendonly", "yes", "--appendfsync", "always"]);
    let b = Broker::open(&format!("{}?lease_ms=600&timeout_ms=300", server.url())).unwrap();
    let logs = Logs::on(&b, Level::Info);
    assert!(b.fetch("jobs", Some("w"), Some(Duration::ZERO)).unwrap().is_none());
    for p in ["1", "2"] {
        b.publish("jobs", p.as_bytes(), &PublishOptions::default()).unwrap();
    }
    let first = b.fetch("jobs", Some("w"), Some(LONG)).unwrap().unwrap();
    let second = b.fetch("jobs", Some("w"), Some(LONG)).unwrap().unwrap();
    server.kill();
    for d in [&first, &second] {
        let e = b.ack(d.id()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    }
    server.restart();
    eventually("the retried ack to go through", || b.ack(first.id()).is_ok());
    // The outage and its end: Warn when the connection was lost, Info once it is back (the
    // failed attempts in between are Debug, below this sink's level).
    let heard = logs.of("brokk::redis");
    assert!(heard.len() >= 2, "{heard:?}");
    assert!(heard[0].0 == Level::Warn && heard[0].1.contains("connection lost"), "{heard:?}");
    assert!(heard.iter().any(|(l, m)| *l == Level::Info && m.contains("connected again")), "{heard:?}");
    let again = b.fetch("jobs", Some("w"), Some(LONG)).unwrap().expect("the abandoned delivery comes back");
    assert_eq!((payload_of(&again), again.attempt()), (payload_of(&second), 2));
    b.ack(again.id()).unwrap();
    assert!(b.fetch("jobs", Some("w"), Some(Duration::from_millis(800))).unwrap().is_none(), "the first is gone");
    b.join(Some(LONG)).unwrap();
    assert_eq!(b.count(None).unwrap(), 0);
}

/// Bad URLs, an unreachable server, refused credentials and keys that are not a brokk store
/// each get their own error kind, with a message that says what to do.
#[test]
fn unusable_urls_servers_and_stores_get_the_right_error() {
    for bad in ["redis://", "redis://h:0", "redis://h?colour=blue", "redis://a:1,b:2", "redis://h/x"] {
        assert_eq!(Broker::open(bad).err().unwrap().kind(), ErrorKind::InvalidUrl, "{bad}");
    }
    assert_eq!(Broker::open("rediss+cluster://h:1").err().unwrap().kind(), ErrorKind::UnsupportedBackend);

    let port = redis_server::free_port();
    let e = Broker::open(&format!("redis://127.0.0.1:{port}?timeout_ms=500")).err().unwrap();
    assert_eq!(e.kind(), ErrorKind::CannotOpenStore, "nothing listens there: {e}");
    assert!(e.message().contains(&port.to_string()), "says which server: {e}");

    let locked = RedisServer::start(&["--requirepass", "s3cret"]);
    let base = format!("127.0.0.1:{}", locked.port);
    for creds in ["", "default:wrong@", ":wrong@"] {
        let e = Broker::open(&format!("redis://{creds}{base}")).err().unwrap();
        assert_eq!(e.kind(), ErrorKind::CannotOpenStore, "{creds}: {e}");
        assert!(!e.message().contains("wrong"), "no password in messages: {e}");
    }
    Broker::open(&format!("redis://:s3cret@{base}")).unwrap().close(Some(LONG), false).unwrap();
    Broker::open(&format!("redis://default:s3cret@{base}/2")).unwrap().close(Some(LONG), false).unwrap();
    let e = Broker::open(&format!("redis://:s3cret@{base}/999")).err().unwrap();
    assert_eq!(e.kind(), ErrorKind::CannotOpenStore, "a database the server does not have: {e}");

    let shared = redis_server::shared();
    let other = prefix("not-brokk");
    assert!(redis_server::raw(shared.port, &format!("SET {{{other}}}:version 99")).unwrap().starts_with("+OK"));
    let e = Broker::open(&url(&other, "")).err().unwrap();
    assert_eq!(e.kind(), ErrorKind::IncompatibleStore, "{e}");
    let list = prefix("a-list");
    redis_server::raw(shared.port, &format!("RPUSH {{{list}}}:version x")).unwrap();
    assert_eq!(Broker::open(&url(&list, "")).err().unwrap().kind(), ErrorKind::IncompatibleStore);

    // A server that goes away under an open broker: Unavailable, then back on a later call.
    let mut server = RedisServer::start(&[]);
    let b = Broker::open(&format!("{}?timeout_ms=500", server.url())).unwrap();
    assert!(b.fetch("t", Some("g"), Some(Duration::ZERO)).unwrap().is_none());
    server.kill();
    let e = b.publish("t", b"1", &PublishOptions::default()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert_eq!(b.count(None).unwrap_err().kind(), ErrorKind::Unavailable);
    server.restart();
    eventually("the broker to reconnect", || b.publish("t", b"2", &PublishOptions::default()).is_ok());
    let d = b.fetch("t", Some("g"), Some(LONG)).unwrap().expect("published after the restart");
    assert_eq!(payload_of(&d), "2");
}

/// The longest a call may take when the server does not answer, for a `timeout_ms` of `t`: the
/// documented bound is `t` + 100 ms; this leaves room for a loaded test machine, and is still
/// well under the `2 t` a call used to take.
fn answer_bound(t: Duration) -> Duration {
    t * 3 / 2
}

/// Runs `f`, returning its result and how long it took.
fn timed<R>(f: impl FnOnce() -> R) -> (R, Duration) {
    let start = Instant::now();
    let r = f();
    (r, start.elapsed())
}

/// Makes group "g" of topic "t" and runs each script once (publish, claim, settle), so that
/// the server has them: a request that reaches a paused server then runs when it resumes
/// (otherwise it would meet NOSCRIPT, and do nothing).
fn warm_up(b: &Broker) {
    assert!(b.fetch("t", Some("g"), Some(Duration::ZERO)).unwrap().is_none());
    b.publish("t", b"0", &PublishOptions::default()).unwrap();
    let d = b.fetch("t", Some("g"), Some(LONG)).unwrap().unwrap();
    b.ack(d.id()).unwrap();
}

/// A paused server (SIGSTOP) answers nothing: each call gives up within its `timeout_ms`
/// (publish, fetch without waiting, ack, count), with a transient status, and the broker works
/// again once the server resumes.
#[test]
fn calls_to_a_paused_server_give_up_within_their_timeout() {
    let server = RedisServer::start(&[]);
    let timeout = Duration::from_millis(1000);
    let b = Broker::open(&format!("{}?timeout_ms={}", server.url(), timeout.as_millis())).unwrap();
    assert!(b.fetch("t", Some("g"), Some(Duration::ZERO)).unwrap().is_none());
    b.publish("t", b"1", &PublishOptions::default()).unwrap();
    let held = b.fetch("t", Some("g"), Some(Duration::ZERO)).unwrap().unwrap();
    {
        let _paused = server.pause();
        let calls: [(&str, &dyn Fn() -> Option<brokk_core::Error>); 4] = [
            ("publish", &|| b.publish("t", b"2", &PublishOptions::default()).err()),
            ("fetch", &|| b.fetch("t", Some("g"), Some(Duration::ZERO)).err()),
            ("ack", &|| b.ack(held.id()).err()),
            ("count", &|| b.count(None).err()),
        ];
        for (what, call) in calls {
            let (e, took) = timed(call);
            let e = e.unwrap_or_else(|| panic!("{what} succeeded on a paused server"));
            eprintln!("{what} on a paused server, timeout_ms = 1000: {took:?}, {:?}", e.kind());
            assert!(matches!(e.kind(), ErrorKind::Unavailable | ErrorKind::OutcomeUnknown), "{what}: {e}");
            assert!(took < answer_bound(timeout), "{what} took {took:?} with timeout_ms = 1000: {e}");
        }
    }
    eventually("the broker to work again", || b.publish("t", b"3", &PublishOptions::default()).is_ok());
}

/// A publish whose request reached a paused server is `OutcomeUnknown`, not `Unavailable`: the
/// server runs the script when it resumes, so the message is there after all.
#[test]
fn a_publish_sent_to_a_paused_server_is_outcome_unknown_and_lands_when_it_resumes() {
    let server = RedisServer::start(&[]);
    let b = Broker::open(&format!("{}?timeout_ms=500", server.url())).unwrap();
    warm_up(&b);
    let paused = server.pause();
    let e = b.publish("t", b"\"sent\"", &PublishOptions::default()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::OutcomeUnknown, "{e}");
    assert!(e.message().contains("may or may not have been published"), "says what happened: {e}");
    assert!(e.message().contains("twice"), "says what a retry risks: {e}");
    paused.resume();
    let d = b.fetch("t", Some("g"), Some(LONG)).unwrap().expect("the script ran when the server resumed");
    assert_eq!(payload_of(&d), "\"sent\"");
    b.ack(d.id()).unwrap();
}

/// A publish made while nothing listens (the server is down) never reaches it: `Unavailable`,
/// saying nothing was done, and the message is not there once the server is back.
#[test]
fn a_publish_to_a_server_that_is_down_is_unavailable_and_never_lands() {
    let mut server = RedisServer::start(&["--appendonly", "yes", "--appendfsync", "always"]);
    let b = Broker::open(&format!("{}?timeout_ms=500", server.url())).unwrap();
    assert!(b.fetch("t", Some("g"), Some(Duration::ZERO)).unwrap().is_none());
    server.kill();
    let e = b.publish("t", b"\"lost\"", &PublishOptions::default()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(e.message().contains("nothing was done"), "says what happened: {e}");
    assert!(!e.message().contains("reconnects by itself"), "{e}");
    server.restart();
    eventually("the broker to reconnect", || b.count(None).is_ok());
    assert_eq!(b.count(None).unwrap(), 0);
    assert!(b.fetch("t", Some("g"), Some(Duration::from_millis(300))).unwrap().is_none(), "never published");
}

/// An ack whose request reached a paused server is `OutcomeUnknown`: it is applied when the
/// server resumes, and the delivery never comes back.
#[test]
fn an_ack_sent_to_a_paused_server_is_outcome_unknown_and_applies_when_it_resumes() {
    let server = RedisServer::start(&[]);
    let b = Broker::open(&format!("{}?timeout_ms=500&lease_ms=600", server.url())).unwrap();
    warm_up(&b);
    b.publish("t", b"1", &PublishOptions::default()).unwrap();
    let d = b.fetch("t", Some("g"), Some(LONG)).unwrap().unwrap();
    let paused = server.pause();
    let e = b.ack(d.id()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::OutcomeUnknown, "{e}");
    assert!(e.message().contains("may or may not have been applied"), "says what happened: {e}");
    paused.resume();
    // Had it not been applied, the delivery would come back once its lease (600 ms) ran out.
    assert!(b.fetch("t", Some("g"), Some(Duration::from_millis(1500))).unwrap().is_none(), "the ack was applied");
    assert_eq!(b.count(None).unwrap(), 0);
}

/// An ack made while the server is down never reaches it: `Unavailable`, saying nothing was
/// done; the delivery comes back with the next attempt once the server is back and the lease ran
/// out.
#[test]
fn an_ack_to_a_server_that_is_down_is_unavailable_and_the_delivery_comes_back() {
    let mut server = RedisServer::start(&["--appendonly", "yes", "--appendfsync", "always"]);
    let b = Broker::open(&format!("{}?timeout_ms=500&lease_ms=600", server.url())).unwrap();
    assert!(b.fetch("t", Some("g"), Some(Duration::ZERO)).unwrap().is_none());
    b.publish("t", b"1", &PublishOptions::default()).unwrap();
    let d = b.fetch("t", Some("g"), Some(LONG)).unwrap().unwrap();
    server.kill();
    let e = b.ack(d.id()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(e.message().contains("nothing was done"), "says what happened: {e}");
    server.restart();
    // The first calls after the restart may still meet the reconnect backoff (Unavailable).
    let deadline = std::time::Instant::now() + LONG;
    let again = loop {
        match b.fetch("t", Some("g"), Some(LONG)) {
            Ok(got) => break got.expect("not acked: it comes back"),
            Err(e) if e.kind() == ErrorKind::Unavailable && std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => panic!("fetch after the restart: {e}"),
        }
    };
    assert_eq!((payload_of(&again), again.attempt()), ("1".to_owned(), 2));
    b.ack(again.id()).unwrap();
}

/// A fetch under an ack deadline whose claim reached a paused server is `OutcomeUnknown`: the
/// claim runs when the server resumes and leases the delivery to this broker, which never got
/// it. It comes back with the next attempt once the deadline passes, to this same broker (the
/// only one), although a broker's claims otherwise leave its own ack deadlines to its timer.
#[test]
fn a_delivery_claimed_for_a_fetch_that_lost_its_reply_comes_back_after_its_deadline() {
    let server = RedisServer::start(&[]);
    let b = Broker::open(&format!("{}?timeout_ms=500", server.url())).unwrap();
    warm_up(&b);
    b.publish("t", b"1", &PublishOptions::default()).unwrap();
    let opts = FetchOptions { group: Some("g"), ack_deadline: Some(Duration::from_millis(300)), ..Default::default() };
    let paused = server.pause();
    let e = b.fetch_with("t", &opts, Some(Duration::ZERO)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::OutcomeUnknown, "{e}");
    assert!(e.message().contains("come back"), "says what becomes of them: {e}");
    paused.resume();
    let d = b.fetch_with("t", &opts, Some(LONG)).unwrap().expect("the lost claim's delivery comes back");
    assert_eq!((payload_of(&d), d.attempt()), ("1".to_owned(), 2));
    b.ack(d.id()).unwrap();
}

/// Publishes of several threads that meet at a paused server travel in one call (see
/// `combine.rs`): each still returns within its own timeout (one that waited for the call
/// before it does not wait a whole timeout more), with the status of the call that carried it.
/// Those that say `Unavailable` never land; those that land said `OutcomeUnknown`.
#[test]
fn publishes_that_meet_at_a_paused_server_each_get_the_status_of_their_own_request() {
    let server = RedisServer::start(&[]);
    let timeout = Duration::from_millis(800);
    let url = format!("{}?timeout_ms={}", server.url(), timeout.as_millis());
    let b =
        Broker::with_config(&BrokerConfig { retention_limit: 100, ..BrokerConfig::from_url(&url).unwrap() }).unwrap();
    warm_up(&b);
    // A topic with no group: a publish is one script call, with no count to read before it.
    b.publish("kept", b"\"known\"", &PublishOptions::default()).unwrap();
    let paused = server.pause();
    let start = std::sync::Barrier::new(8);
    let results: Vec<(String, ErrorKind, Duration)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8u32)
            .map(|t| {
                let (b, start) = (&b, &start);
                s.spawn(move || {
                    let payload = format!("\"p{t}\"");
                    start.wait();
                    // The first alone; the others queue while its call is on its way, and
                    // travel together after it.
                    std::thread::sleep(Duration::from_millis(u64::from(t) * 60));
                    let (r, took) = timed(|| b.publish("kept", payload.as_bytes(), &PublishOptions::default()));
                    let e = r.expect_err("a paused server publishes nothing in time");
                    (payload, e.kind(), took)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    paused.resume();
    for (p, kind, took) in &results {
        assert!(matches!(kind, ErrorKind::Unavailable | ErrorKind::OutcomeUnknown), "{p}: {kind:?}");
        assert!(*took < answer_bound(timeout), "{p} took {took:?} ({kind:?}): {results:?}");
    }
    eventually("the broker to work again", || b.count(Some(&["kept"])).is_ok());
    let mut landed = BTreeSet::new();
    while let Some(d) = b.fetch("kept", Some("late"), Some(Duration::ZERO)).unwrap() {
        landed.insert(payload_of(&d));
        b.ack(d.id()).unwrap();
    }
    assert!(landed.remove("\"known\""), "retained before the pause");
    for (p, kind, _) in &results {
        if landed.contains(p) {
            assert_eq!(*kind, ErrorKind::OutcomeUnknown, "{p} landed, though its publish said {kind:?}");
        }
    }
    assert!(!landed.is_empty(), "the requests that reached the server ran when it resumed: {results:?}");
}

/// Opening a broker reaches the server once. Nothing listening there is the caller's to fix
/// (`CannotOpenStore`): a retry loop on transient statuses must not spin on a mistyped port.
#[test]
fn opening_where_nothing_listens_is_cannot_open_store() {
    let port = redis_server::free_port();
    let e = Broker::open(&format!("redis://127.0.0.1:{port}/0")).err().unwrap();
    assert_eq!(e.kind(), ErrorKind::CannotOpenStore, "{e}");
    let m = e.message();
    assert!(m.contains(&format!("nothing answers at 127.0.0.1:{port}")), "says where: {e}");
    assert!(m.contains("no broker was made"), "{e}");
    assert!(m.contains("check the address"), "says what to do: {e}");
    assert!(!m.contains("reconnects"), "{e}");
}

/// A server that is there but does not answer (paused) at open is `Unavailable` within the
/// timeout, saying that no broker was made and that retrying later may succeed.
#[test]
fn opening_on_a_paused_server_is_unavailable_within_the_timeout() {
    let server = RedisServer::start(&[]);
    let timeout = Duration::from_millis(1000);
    let _paused = server.pause();
    let url = format!("{}?timeout_ms={}", server.url(), timeout.as_millis());
    let (r, took) = timed(|| Broker::open(&url));
    let e = r.err().unwrap();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(took < answer_bound(timeout), "open took {took:?} with timeout_ms = 1000: {e}");
    assert!(e.message().contains("no broker was made"), "{e}");
    assert!(e.message().contains("retrying later may succeed"), "{e}");
    assert!(!e.message().contains("reconnects"), "{e}");
}

/// Wrong or missing credentials at open: `CannotOpenStore`, naming authentication, never
/// showing the password.
#[test]
fn opening_with_wrong_credentials_is_cannot_open_store_naming_authentication() {
    let locked = RedisServer::start(&["--requirepass", "s3cret"]);
    let base = format!("127.0.0.1:{}", locked.port);
    for creds in ["", "default:wrong@", ":wrong@", "nobody:wrong@"] {
        let e = Broker::open(&format!("redis://{creds}{base}")).err().unwrap();
        assert_eq!(e.kind(), ErrorKind::CannotOpenStore, "{creds}: {e}");
        assert!(e.message().contains("authentication"), "{creds}: names authentication: {e}");
        assert!(e.message().contains("no broker was made"), "{creds}: {e}");
        assert!(!e.message().contains("wrong"), "no password in messages: {e}");
    }
    Broker::open(&format!("redis://:s3cret@{base}")).unwrap().close(Some(LONG), false).unwrap();
}

// ---- Redis Cluster ----------------------------------------------------------------------------------

/// Three masters on loopback ports, slots spread by `redis-cli --cluster create`.
struct Cluster {
    nodes: Vec<RedisServer>,
}

impl Cluster {
    fn start() -> Cluster {
        let nodes: Vec<RedisServer> = (0..3)
            .map(|_| {
                RedisServer::start(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "2000",
                ])
            })
            .collect();
        let addresses: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        let status = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli");
        assert!(status.success(), "redis-cli --cluster create failed");
        let deadline = Instant::now() + LONG;
        for n in &nodes {
            while !redis_server::raw(n.port, "CLUSTER INFO").is_some_and(|r| r.contains("cluster_state:ok")) {
                assert!(Instant::now() < deadline, "the cluster did not come up");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Cluster { nodes }
    }

    fn url(&self, options: &str) -> String {
        let nodes: Vec<String> = self.nodes.iter().take(2).map(|n| format!("127.0.0.1:{}", n.port)).collect();
        format!("redis+cluster://{}{options}", nodes.join(","))
    }

    /// The port of the node that holds `key`.
    fn node_of(&self, key: &str) -> u16 {
        let reply = redis_server::raw(self.nodes[0].port, &format!("CLUSTER KEYSLOT {key}")).unwrap();
        let slot: u16 = reply.trim().trim_start_matches(':').parse().unwrap();
        for n in &self.nodes {
            let info = redis_server::raw(n.port, "CLUSTER NODES").unwrap();
            let me = info.lines().find(|l| l.contains("myself")).unwrap();
            for range in me.split(' ').skip(8) {
                let (lo, hi) = range.split_once('-').unwrap_or((range, range));
                if (lo.parse::<u16>().unwrap()..=hi.parse::<u16>().unwrap()).contains(&slot) {
                    return n.port;
                }
            }
        }
        panic!("no node holds slot {slot}");
    }
}

/// On a three-node cluster, topics land on different nodes; two worker processes form one
/// group across them and process every message of every topic once; count and purge see all
/// topics.
#[test]
fn a_group_across_two_processes_on_a_three_node_cluster() {
    let cluster = Cluster::start();
    let url = cluster.url("?prefix=c");
    let parent = Broker::open(&url).unwrap();
    let topics: Vec<String> = (0..6).map(|i| format!("topic{i}")).collect();
    let nodes: BTreeSet<u16> = topics.iter().map(|t| cluster.node_of(&format!("{{c:{t}}}"))).collect();
    assert!(nodes.len() >= 2, "the topics spread over the nodes: {nodes:?}");
    let workers: Vec<Proc> =
        (0..2).map(|_| Proc::spawn("worker", &url, &[("BROKK_REDIS_TOPICS", &topics.join(","))])).collect();
    for w in &workers {
        assert_eq!(w.next(), "ready");
    }
    const EACH: usize = 50;
    for (t, topic) in topics.iter().enumerate() {
        for i in 0..EACH {
            parent.publish(topic, format!("\"{t}-{i}\"").as_bytes(), &PublishOptions::default()).unwrap();
        }
    }
    let all = topics.len() * EACH;
    let mut done = HashMap::new();
    collect_done(&workers, &mut done, |seen| seen.values().map(Vec::len).sum::<usize>() >= all);
    assert_eq!(done.len(), all);
    assert!(done.values().all(|a| a == &[1]), "each once");
    eventually("nothing waits on any node", || parent.count(None).unwrap() == 0);
    drop(workers);
    // With no member left, what a group gets waits on its node; count and purge see every node.
    for topic in &topics {
        parent.publish(topic, b"1", &PublishOptions::default()).unwrap();
    }
    assert_eq!(parent.count(None).unwrap(), topics.len() as u64);
    assert_eq!(parent.purge(None).unwrap(), topics.len() as u64);
    assert_eq!(parent.count(None).unwrap(), 0);
}

/// Publishes on new topics against a paused server wait out their timeouts side by side: the
/// store's side of a new topic (a round trip) is made with no broker lock held. (Before, each
/// waited behind the one before it under the topic map's lock: 4 topics took 4 timeouts, and
/// every publish on any topic waited behind them.)
#[test]
fn new_topics_on_a_paused_server_do_not_wait_for_each_other() {
    let server = RedisServer::start(&[]);
    let timeout = Duration::from_millis(1000);
    let b = Broker::open(&format!("{}?timeout_ms={}", server.url(), timeout.as_millis())).unwrap();
    b.publish("warm", b"1", &PublishOptions::default()).unwrap();
    let _paused = server.pause();
    let started = std::time::Instant::now();
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let b = b.clone();
            std::thread::spawn(move || b.publish(&format!("fresh{i}"), b"1", &PublishOptions::default()).err())
        })
        .collect();
    for t in threads {
        let e = t.join().unwrap().expect("a publish on a paused server fails");
        assert!(matches!(e.kind(), ErrorKind::Unavailable | ErrorKind::OutcomeUnknown), "{e}");
    }
    let took = started.elapsed();
    assert!(took < 2 * answer_bound(timeout), "4 publishes on new topics took {took:?} with timeout_ms = 1000");
}

/// A delivery under an ack deadline whose requeue failed (the deadline timer's, while the
/// server refused scripts) is not left leased to this broker for good: its own claims take it
/// back once the deadline passed, at the next attempt. (Its claims spare this broker's own
/// expired deadlines, which its timer requeues; that timer had failed.)
#[test]
fn a_deadline_whose_requeue_failed_still_comes_back_to_the_same_broker() {
    let server = RedisServer::start(&[]);
    let b = Broker::open(&format!("{}?prefix=lost-requeue&timeout_ms=500", server.url())).unwrap();
    assert!(b.fetch("jobs", Some("w"), Some(Duration::ZERO)).unwrap().is_none()); // makes the group
    b.publish("jobs", b"\"only\"", &PublishOptions::default()).unwrap();
    let opts = FetchOptions { group: Some("w"), ack_deadline: Some(Duration::from_millis(300)), ..Default::default() };
    let first = b.fetch_with("jobs", &opts, Some(LONG)).unwrap().expect("published");
    assert_eq!(first.attempt(), 1);
    // Scripts refused while the deadline passes: the timer's requeue fails.
    assert!(redis_server::raw(server.port, "ACL SETUSER default -evalsha").unwrap().starts_with("+OK"));
    std::thread::sleep(Duration::from_millis(900));
    assert!(redis_server::raw(server.port, "ACL SETUSER default +evalsha").unwrap().starts_with("+OK"));
    let again =
        b.fetch_with("jobs", &FetchOptions { group: Some("w"), ..Default::default() }, Some(Duration::from_secs(5)));
    let again = again.unwrap().expect("the delivery whose requeue failed comes back");
    assert_eq!((payload_of(&again), again.attempt()), ("\"only\"".to_string(), 2));
    b.ack(again.id()).unwrap();
    b.close(Some(LONG), false).unwrap();
}
