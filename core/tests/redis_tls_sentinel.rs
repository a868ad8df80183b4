//! Production connections to Redis: TLS (`rediss://`, with certificates the test makes with
//! openssl: `core/src/store/redis/test-certs.sh`) and Sentinel (`redis+sentinel://`: a master,
//! a replica and a sentinel, the master killed mid-run). Every server is a real `redis-server`
//! started by the test (`common::redis_server`), gone when the test process is; every wait is
//! bounded.

#![cfg(feature = "redis")]

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use brokk_core::{Broker, ErrorKind, PublishOptions, SubscribeOptions};
use common::redis_server::{self, RedisServer};
use common::shared_store::{eventually, grouped, payload_of, recorder, Seen, LONG};

/// Publishes, fetches and acks one message through `url`, and hears a second broker's publish
/// through a subscription (the listening thread's own connection).
fn round_trip(url: &str) {
    let b = Broker::open(url).unwrap_or_else(|e| panic!("{url}: {e}"));
    assert!(b.fetch("jobs", Some("w"), Some(Duration::ZERO)).unwrap().is_none());
    b.publish("jobs", b"\"one\"", &PublishOptions::default()).unwrap();
    let d = b.fetch("jobs", Some("w"), Some(LONG)).unwrap().expect("the message");
    assert_eq!(payload_of(&d), "\"one\"");
    b.ack(d.id()).unwrap();
    let seen: Seen = Default::default();
    b.subscribe("news", recorder(&seen), &grouped("readers")).unwrap();
    let other = Broker::open(url).unwrap();
    other.publish("news", b"\"two\"", &PublishOptions::default()).unwrap();
    eventually("the subscriber to get the other broker's message", || seen.lock().unwrap().contains_key("\"two\""));
    other.close(Some(LONG), false).unwrap();
    b.close(Some(LONG), false).unwrap();
}

/// Opening `url` fails with `CannotOpenStore`, the message naming each of `words`.
fn refused(url: &str, words: &[&str]) {
    let e = Broker::open(url).err().unwrap_or_else(|| panic!("{url} opened"));
    assert_eq!(e.kind(), ErrorKind::CannotOpenStore, "{url}: {e}");
    for w in words {
        assert!(e.message().contains(w), "{url}: the message names {w:?}: {e}");
    }
}

// ---- TLS ----------------------------------------------------------------------------------------

/// A round trip over TLS: the server's certificate checked against `ca=`, for the host's IP
/// address or for `server_name=`; and with `insecure=true`, not checked.
#[test]
fn tls_with_the_server_s_ca_works_end_to_end() {
    let (server, port) = RedisServer::start_tls(false);
    let ca = server.file("ca.crt");
    round_trip(&format!("rediss://127.0.0.1:{port}?ca={ca}&prefix=tls1&timeout_ms=2000"));
    round_trip(&format!("rediss://127.0.0.1:{port}/1?ca={ca}&server_name=localhost&timeout_ms=2000"));
    round_trip(&format!("rediss://localhost:{port}?insecure=true&prefix=tls2&timeout_ms=2000"));
}

/// A certificate not signed by `ca=` (or by the platform's authorities, without `ca=`), or not
/// for `server_name=`, is refused at open with a message about TLS; so is a CA file that is
/// not there. Nothing is sent before.
#[test]
fn tls_refuses_a_server_it_cannot_trust() {
    let (server, port) = RedisServer::start_tls(false);
    let base = format!("rediss://127.0.0.1:{port}?timeout_ms=2000");
    refused(&format!("{base}&ca={}", server.file("other-ca.crt")), &["TLS", "certificate", &port.to_string()]);
    refused(&base, &["TLS", "certificate"]);
    refused(&format!("{base}&ca={}&server_name=elsewhere.example", server.file("ca.crt")), &["TLS", "certificate"]);
    refused(&format!("{base}&ca={}", server.file("missing.crt")), &["ca=", "missing.crt"]);
    // A plain connection to a TLS port gets no answer it understands.
    let e = Broker::open(&format!("redis://127.0.0.1:{port}?timeout_ms=500")).err().unwrap();
    assert!(matches!(e.kind(), ErrorKind::Unavailable | ErrorKind::CannotOpenStore), "{e}");
}

/// A server that wants client certificates (`tls-auth-clients yes`) refuses a client with none,
/// with a clear message at open, and takes one with `cert=` and `key=` signed by its CA.
#[test]
fn tls_client_certificates() {
    let (server, port) = RedisServer::start_tls(true);
    let ca = server.file("ca.crt");
    let base = format!("rediss://127.0.0.1:{port}?ca={ca}&timeout_ms=2000");
    refused(&base, &["TLS", "certificate"]);
    let (cert, key) = (server.file("client.crt"), server.file("client.key"));
    round_trip(&format!("{base}&cert={cert}&key={key}&prefix=tlsc"));
    // The server's own key is no client key of the client certificate.
    refused(&format!("{base}&cert={cert}&key={}", server.file("server.key")), &["cert=", "key="]);
}

// ---- Sentinel -----------------------------------------------------------------------------------

const MASTER: &str = "brokkmaster";

/// Whether the replica at `port` is in sync with its master.
fn replica_linked(port: u16) -> bool {
    redis_server::raw(port, "INFO replication").is_some_and(|r| r.contains("master_link_status:up"))
}

/// The port of the master the sentinel at `sentinel` names.
fn named_master(sentinel: u16) -> Option<u16> {
    let r = redis_server::raw(sentinel, &format!("SENTINEL GET-MASTER-ADDR-BY-NAME {MASTER}"))?;
    r.lines().filter_map(|l| l.parse::<u16>().ok()).next()
}

/// Through a sentinel (listed after one that is not there): the round trip, on the master it
/// names; a master name no sentinel knows, or sentinels that are all missing, are refused at
/// open with a message that says so.
#[test]
fn sentinel_names_the_master() {
    let master = RedisServer::start(&[]);
    let sentinel = RedisServer::start_sentinel(MASTER, master.port, 1);
    let dead = redis_server::free_port();
    let sentinels = format!("127.0.0.1:{dead},127.0.0.1:{}", sentinel.port);
    round_trip(&format!("redis+sentinel://{sentinels}/{MASTER}?prefix=s1&timeout_ms=2000"));
    let count = redis_server::raw(master.port, "KEYS {s1:*").unwrap();
    assert!(!count.starts_with("*0"), "the keys are on the master: {count}");
    refused(&format!("redis+sentinel://{sentinels}/nosuchmaster?timeout_ms=2000"), &["nosuchmaster", "sentinel"]);
    refused(&format!("redis+sentinel://127.0.0.1:{dead}/{MASTER}?timeout_ms=500"), &["sentinel", &dead.to_string()]);
}

/// `rediss+sentinel://`: the sentinel asked over TLS, and the master it names reached over TLS
/// (the sentinel itself talks TLS to the master: `tls-replication yes`).
#[test]
fn sentinel_over_tls() {
    let (master, master_tls) = RedisServer::start_tls(false);
    let sentinel_tls = redis_server::free_port();
    let conf = format!(
        "tls-port {sentinel_tls}\ntls-cert-file {}\ntls-key-file {}\ntls-ca-cert-file {}\ntls-auth-clients no\n\
         tls-replication yes\n",
        master.file("server.crt"),
        master.file("server.key"),
        master.file("ca.crt")
    );
    let _sentinel = RedisServer::start_sentinel_with(MASTER, master_tls, 1, &conf);
    let ca = master.file("ca.crt");
    round_trip(&format!("rediss+sentinel://127.0.0.1:{sentinel_tls}/{MASTER}?ca={ca}&prefix=st&timeout_ms=2000"));
    // The sentinel's certificate is checked too.
    let other = master.file("other-ca.crt");
    refused(&format!("rediss+sentinel://127.0.0.1:{sentinel_tls}/{MASTER}?ca={other}&timeout_ms=2000"), &["TLS"]);
}

/// Sentinels that require a password of their own (`requirepass` in sentinel.conf) are asked
/// with `sentinel_password=`; without it, or with a wrong one, opening is refused, saying why.
#[test]
fn sentinels_with_a_password() {
    let master = RedisServer::start(&["--requirepass", "m4ster"]);
    let sentinel = RedisServer::start_sentinel_with(
        MASTER,
        master.port,
        1,
        &format!("sentinel auth-pass {MASTER} m4ster\nrequirepass s3ntinel\n"),
    );
    let base = format!("redis+sentinel://:m4ster@127.0.0.1:{}/{MASTER}?timeout_ms=2000", sentinel.port);
    round_trip(&format!("{base}&sentinel_password=s3ntinel&prefix=sp"));
    refused(&base, &["sentinel", "NOAUTH"]);
    let e = Broker::open(&format!("{base}&sentinel_password=wrong")).err().unwrap();
    assert_eq!(e.kind(), ErrorKind::CannotOpenStore, "{e}");
    assert!(!e.message().contains("wrong") && !e.message().contains("m4ster"), "no password in messages: {e}");
}

/// The master killed (SIGKILL) while a producer publishes and a consumer consumes: the sentinel
/// promotes one of its two replicas (and points the other at it), both brokers reconnect to the
/// new master on their own, and every publish that
/// returned Ok after the kill is delivered; none that said `Unavailable` is. Replication is
/// asynchronous: publishes confirmed by the old master shortly before it died may not have
/// reached the replica, and are lost; the test counts them (docs/redis.md says so).
#[test]
fn a_failover_loses_nothing_confirmed_after_the_master_died() {
    let lost = failover("");
    eprintln!("failover without replicas=: {lost} confirmed publishes lost with the old master");
}

/// The same with `replicas=1`: each change returns Ok only once a replica has it (WAIT), so a
/// failover loses no confirmed publish, even those confirmed just before the kill (the other
/// replica is the new master's, for its WAITs).
#[test]
fn with_replicas_1_a_failover_loses_no_confirmed_publish() {
    assert_eq!(failover("&replicas=1"), 0, "a publish confirmed by the replica was lost");
}

/// Runs the failover scenario with `options` added to the URL; returns how many publishes
/// confirmed before the kill were never delivered.
fn failover(options: &str) -> usize {
    let mut master = RedisServer::start(&[]);
    let of_master = ["--replicaof", "127.0.0.1", &master.port.to_string()];
    let replicas = [RedisServer::start(&of_master), RedisServer::start(&of_master)];
    eventually("the replicas to sync", || replicas.iter().all(|r| replica_linked(r.port)));
    let replica_ports: Vec<u16> = replicas.iter().map(|r| r.port).collect();
    // One sentinel: with several, two may start a failover at once and split the vote, which
    // delays it by the failover timeout.
    let sentinel = RedisServer::start_sentinel(MASTER, master.port, 1);
    // The sentinel must know the replicas before the master dies, or it has none to promote.
    eventually("the sentinel to find the replicas", || {
        redis_server::raw(sentinel.port, &format!("SENTINEL REPLICAS {MASTER}")).is_some_and(|r| r.starts_with("*2"))
    });
    let url = format!(
        "redis+sentinel://127.0.0.1:{}/{MASTER}?prefix=failover&lease_ms=1500&timeout_ms=500{options}",
        sentinel.port
    );
    let consumer = Broker::open(&url).unwrap();
    let producer = Broker::open(&url).unwrap();
    let seen: Seen = Default::default();
    consumer.subscribe("jobs", recorder(&seen), &SubscribeOptions { concurrency: 2, ..grouped("workers") }).unwrap();
    let killed = Arc::new(AtomicBool::new(false));
    let stop = AtomicBool::new(false);
    let confirmed_after = AtomicUsize::new(0);
    // (payload, whether the publish started after the master was dead).
    let (confirmed, unavailable, failed) = std::thread::scope(|s| {
        let publisher = s.spawn(|| {
            let (mut confirmed, mut unavailable, mut failed) = (Vec::<(String, bool)>::new(), Vec::new(), 0);
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let payload = format!("\"m{i}\"");
                let after = killed.load(Ordering::Acquire);
                match producer.publish("jobs", payload.as_bytes(), &PublishOptions::default()) {
                    Ok(_) => {
                        confirmed.push((payload, after));
                        if after {
                            confirmed_after.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(e) => {
                        assert!(matches!(e.kind(), ErrorKind::Unavailable | ErrorKind::OutcomeUnknown), "{e}");
                        failed += 1;
                        if e.kind() == ErrorKind::Unavailable {
                            unavailable.push(payload);
                        }
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
                i += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
            (confirmed, unavailable, failed)
        });
        std::thread::sleep(Duration::from_millis(300));
        master.kill();
        killed.store(true, Ordering::Release);
        eventually("the sentinel to promote a replica", || {
            named_master(sentinel.port).is_some_and(|p| replica_ports.contains(&p))
        });
        eventually("50 publishes confirmed by the new master", || confirmed_after.load(Ordering::Relaxed) >= 50);
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::Relaxed);
        publisher.join().unwrap()
    });
    let after: Vec<&String> = confirmed.iter().filter(|(_, a)| *a).map(|(p, _)| p).collect();
    assert!(after.len() >= 50, "the producer reconnected to the new master: {} confirmed after the kill", after.len());
    assert!(failed > 0, "the producer saw the master gone");
    eventually("every publish confirmed after the kill delivered", || {
        let seen = seen.lock().unwrap();
        after.iter().all(|p| seen.contains_key(*p))
    });
    eventually("nothing left waiting", || consumer.count(None).unwrap() == 0);
    consumer.join(Some(LONG)).unwrap();
    let seen = seen.lock().unwrap();
    let landed: Vec<&String> = unavailable.iter().filter(|p| seen.contains_key(*p)).collect();
    assert!(landed.is_empty(), "publishes that said Unavailable were delivered: {landed:?}");
    let lost: Vec<&String> = confirmed.iter().filter(|(p, _)| !seen.contains_key(p)).map(|(p, _)| p).collect();
    let before = confirmed.len() - after.len();
    eprintln!(
        "failover{options}: {before} publishes confirmed before the kill, {} after; {} of those before lost with \
         the old master: {lost:?}",
        after.len(),
        lost.len()
    );
    consumer.close(Some(LONG), false).unwrap();
    producer.close(Some(LONG), false).unwrap();
    lost.len()
}

/// `replicas=1` on a master with no replica: a publish is done but not confirmed by a replica
/// within the timeout, so it is `OutcomeUnknown`, saying why; the message is there.
#[test]
fn replicas_1_without_a_replica_is_outcome_unknown() {
    let server = RedisServer::start(&[]);
    let b = Broker::open(&format!("{}?replicas=1&timeout_ms=300", server.url())).unwrap();
    let e = b.publish("jobs", b"\"x\"", &PublishOptions::default()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::OutcomeUnknown, "{e}");
    assert!(e.message().contains("replicas"), "{e}");
    let plain = Broker::open(&server.url()).unwrap();
    let d = plain.fetch("jobs", Some("w"), Some(LONG)).unwrap().expect("the publish was done on the master");
    assert_eq!(payload_of(&d), "\"x\"");
}
