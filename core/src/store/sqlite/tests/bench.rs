//! Throughput, printed, never asserted:
//! `cargo test --release --lib store::sqlite::tests::bench -- --ignored --nocapture`.
//! The first line calibrates: what a bare one-row SQLite commit costs on this machine.

use std::time::Instant;

use super::*;

fn payload(i: usize) -> StoredMessage {
    let mut m = msg(&format!("{i:016x}-{i:016x}"), 0);
    m.payload =
        format!("{{\"order\":{i},\"item\":\"anvil\",\"qty\":2,\"note\":\"a payload of about a hundred bytes\"}}")
            .into_bytes();
    m
}

fn fill(f: &SqliteFile, topic: &str, n: usize) {
    let msgs: Vec<_> = (0..10_000.min(n)).map(payload).collect();
    let mut left = n;
    while left > 0 {
        let k = left.min(msgs.len());
        publish(f, topic, &msgs[..k], Retention::Off).unwrap();
        left -= k;
    }
}

/// This thread's CPU time so far (ns), which load from other processes does not inflate.
fn cpu_ns() -> u64 {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    stat.split_whitespace().next().and_then(|n| n.parse().ok()).unwrap_or(0)
}

fn per_second(n: usize, secs: f64) -> String {
    format!("{:>9.0}/s", n as f64 / secs)
}

fn bare_commits(dir: &TempDir) -> String {
    let c = rusqlite::Connection::open(dir.file("bare.db")).unwrap();
    c.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER); \
         INSERT INTO t VALUES (1, 0);",
    )
    .unwrap();
    let t = Instant::now();
    for _ in 0..10_000 {
        c.execute_batch("BEGIN IMMEDIATE").unwrap();
        c.prepare_cached("UPDATE t SET v = v + 1 WHERE id = 1").unwrap().execute([]).unwrap();
        c.execute_batch("COMMIT").unwrap();
    }
    per_second(10_000, t.elapsed().as_secs_f64())
}

/// Claims and acks `n` deliveries one at a time, topping the backlog up (untimed) every 500 so
/// that it stays near its size; returns the seconds spent claiming and acking, and the CPU
/// time of this thread per claim+ack in µs.
fn claim_ack_one_at_a_time(
    f: &SqliteFile,
    topic: &str,
    g: super::super::GroupId,
    n: usize,
    top_up: bool,
) -> (f64, f64) {
    let (mut timed, mut cpu) = (0.0, 0);
    for _ in 0..n / 500 {
        let (t, c) = (Instant::now(), cpu_ns());
        for _ in 0..500 {
            let d = f.claim(g, 1, "bench", LEASE).unwrap();
            assert_eq!(f.ack("bench", &[(d[0].key, d[0].attempt)]).unwrap(), [true]);
        }
        timed += t.elapsed().as_secs_f64();
        cpu += cpu_ns() - c;
        if top_up {
            fill(f, topic, 500);
        }
    }
    (timed, cpu as f64 / n as f64 / 1000.0)
}

#[test]
#[ignore]
fn throughput() {
    let dir = TempDir::new("bench");
    println!("reference, a bare one-row SQLite commit:          {}", bare_commits(&dir));
    let f = open(&dir.file("bench.db"));
    let g = f.named_group("batch", "w").unwrap();

    let msgs: Vec<_> = (0..10_000).map(payload).collect();
    for round in 0..3 {
        let t = Instant::now();
        publish(&f, "batch", &msgs, Retention::Off).unwrap();
        println!(
            "batch publish of 10,000 (round {round}):              {}",
            per_second(10_000, t.elapsed().as_secs_f64())
        );
    }
    assert_eq!(f.ready_len(g).unwrap(), 30_000);

    let g4 = f.named_group("single", "w").unwrap();
    let (threads, each) = (4, 10_000);
    let commits = f.writer.commits();
    let t = Instant::now();
    let cpu: u64 = std::thread::scope(|s| {
        let spawned: Vec<_> = (0..threads)
            .map(|k| {
                let f = &f;
                s.spawn(move || {
                    let c = cpu_ns();
                    for i in 0..each {
                        let m = payload(k * each + i);
                        f.publish("single", &[m.as_new()], Retention::Off).unwrap();
                    }
                    cpu_ns() - c
                })
            })
            .collect();
        spawned.into_iter().map(|h| h.join().unwrap()).sum()
    });
    let total = threads * each;
    let secs = t.elapsed().as_secs_f64();
    let commits = f.writer.commits() - commits;
    println!(
        "{threads} threads publishing single messages:          {} ({:.1} publishes per commit, {:.0} µs of CPU each)",
        per_second(total, secs),
        total as f64 / commits as f64,
        cpu as f64 / total as f64 / 1000.0
    );
    assert_eq!(f.ready_len(g4).unwrap(), total as u64);

    for backlog in [1_000, 1_000_000] {
        let topic = format!("claim-{backlog}");
        let g = f.named_group(&topic, "w").unwrap();
        let t = Instant::now();
        fill(&f, &topic, backlog);
        println!("  (queued {backlog} in {:.1} s)", t.elapsed().as_secs_f64());
        let n = 10_000;
        let (secs, cpu_us) = claim_ack_one_at_a_time(&f, &topic, g, n, backlog < n);
        println!(
            "claim+ack one at a time, {backlog:>9} queued:      {} ({cpu_us:.0} µs of CPU each)",
            per_second(n, secs)
        );
        if backlog < n {
            continue;
        }
        let t = Instant::now();
        for _ in 0..n {
            f.atomically(|tx| {
                let d = tx.claim(g, 1, "bench", LEASE)?;
                tx.ack("bench", &[(d[0].key, d[0].attempt)])
            })
            .unwrap();
        }
        println!("  claim+ack in one transaction, {backlog} queued: {}", per_second(n, t.elapsed().as_secs_f64()));
        let t = Instant::now();
        for _ in 0..n / 64 {
            let ds = f.claim(g, 64, "bench", LEASE).unwrap();
            assert!(settle_all(&f, "bench", &ds).iter().all(|&b| b));
        }
        println!(
            "  claim 64 + ack 64, per message, {backlog} queued: {}",
            per_second(n / 64 * 64, t.elapsed().as_secs_f64())
        );
    }
}
