//! Soak: minutes of mixed load on one broker, then checks that memory stayed flat and every
//! count reconciles. `make soak` (SOAK_SECONDS, default 120); `make test` runs 3 seconds of it.
//!
//! Load: 4 publishers (single and batch publishes, random priorities), 2 plain subscriptions
//! with random verdicts (ack, nack, requeue with a delay), a group of 2 push members with an ack
//! deadline, an attempt limit and a dead-letter topic, 2 pull consumers on another group acking
//! and nacking at random, the dead-letter topic drained by a subscription, and a thread that
//! keeps subscribing and unsubscribing.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use brokk_core::{
    Backpressure, BatchMessage, Broker, BrokerConfig, Delivery, FetchOptions, PublishOptions, SubscribeOptions, Verdict,
};

/// A small xorshift generator: enough randomness for load, no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn rss_kib() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    pages * 4
}

fn verdict_for(d: &Delivery) -> Verdict {
    match d.id().wrapping_mul(0x9E37_79B9) % 100 {
        0..=3 if d.attempt() == 1 => Verdict::Nack(Some("soak: random nack".into())),
        4..=8 if d.attempt() < 3 => Verdict::RequeueAfter(Duration::from_millis(1), None),
        _ => Verdict::Ack,
    }
}

fn main() {
    let seconds: u64 = std::env::var("SOAK_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(120);
    let config = BrokerConfig {
        worker_threads: 4,
        queue_capacity: 20_000,
        backpressure: Backpressure::Block,
        publish_timeout: Some(Duration::from_secs(30)),
        ..Default::default()
    };
    let broker = Broker::with_config(&config).expect("broker");
    // Publishers stop first; consumers only once every publish has returned (one blocked by
    // backpressure may still go through), so that nothing is left for a consumer that quit.
    let stop = Arc::new(AtomicBool::new(false));
    let stop_consumers = Arc::new(AtomicBool::new(false));
    let published = Arc::new(AtomicU64::new(0));

    for _ in 0..2 {
        broker.subscribe("soak", verdict_for, &SubscribeOptions { concurrency: 2, ..Default::default() }).unwrap();
    }
    let grouped = SubscribeOptions {
        group: Some("push"),
        ack_deadline: Some(Duration::from_millis(200)),
        max_attempts: 3,
        dead_letter_topic: Some("soak.dlq"),
        ..Default::default()
    };
    for _ in 0..2 {
        broker.subscribe("soak", verdict_for, &grouped).unwrap();
    }
    broker.subscribe("soak.dlq", |_: &Delivery| Verdict::Ack, &SubscribeOptions::default()).unwrap();

    let mut publishers = Vec::new();
    let mut threads = Vec::new();
    for t in 0..4u64 {
        let (b, stop, published) = (broker.clone(), stop.clone(), published.clone());
        publishers.push(std::thread::spawn(move || {
            let mut rng = Rng(0x2545_F491_4F6C_DD1D ^ (t + 1));
            let payloads: Vec<String> =
                (0..32).map(|i| format!("{{\"i\":{i},\"s\":\"{}\"}}", "x".repeat(32))).collect();
            while !stop.load(Relaxed) {
                if rng.below(10) == 0 {
                    let batch: Vec<_> = payloads
                        .iter()
                        .map(|p| BatchMessage { payload: p.as_bytes(), options: PublishOptions::default() })
                        .collect();
                    b.publish_batch("soak", &batch).unwrap();
                    published.fetch_add(batch.len() as u64, Relaxed);
                } else {
                    let opts = PublishOptions { priority: rng.below(3) as i32, ..Default::default() };
                    b.publish("soak", payloads[rng.below(32) as usize].as_bytes(), &opts).unwrap();
                    published.fetch_add(1, Relaxed);
                }
            }
        }));
    }
    for t in 0..2u64 {
        let (b, stop) = (broker.clone(), stop_consumers.clone());
        threads.push(std::thread::spawn(move || {
            let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (t + 7));
            let opts = FetchOptions { group: Some("pull"), max_attempts: 3, ..Default::default() };
            while !stop.load(Relaxed) {
                if let Some(d) = b.fetch_with("soak", &opts, Some(Duration::from_millis(10))).unwrap() {
                    match rng.below(20) {
                        0 => b.nack(d.id(), true, None, None).unwrap(),
                        1 => b.nack(d.id(), false, None, None).unwrap(),
                        _ => b.ack(d.id()).unwrap(),
                    }
                }
            }
            // Drain what is left for this group.
            while let Some(d) = b.fetch_with("soak", &opts, Some(Duration::ZERO)).unwrap() {
                b.ack(d.id()).unwrap();
            }
        }));
    }
    {
        let (b, stop) = (broker.clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            // Handlers that requeue, unsubscribed while they run: a requeue that lands after
            // the subscription's group is gone must end its delivery (dropped and lapsed).
            let mut round = 0u64;
            while !stop.load(Relaxed) {
                round += 1;
                let calls = std::sync::atomic::AtomicU64::new(round);
                let handler = move |_: &Delivery| match calls.fetch_add(1, Relaxed) % 3 {
                    0 => Verdict::Ack,
                    _ => Verdict::Requeue(None),
                };
                let opts = SubscribeOptions { concurrency: 2, ..Default::default() };
                let id = b.subscribe("soak", handler, &opts).unwrap();
                std::thread::sleep(Duration::from_millis(1 + round % 10));
                b.unsubscribe(id).unwrap();
            }
        }));
    }

    let start = Instant::now();
    let warm = Duration::from_secs((seconds / 5).max(1));
    let mut warm_rss = None;
    let mut peak_rss = 0;
    while start.elapsed() < Duration::from_secs(seconds) {
        std::thread::sleep(Duration::from_millis(500).min(Duration::from_secs(seconds)));
        let rss = rss_kib();
        peak_rss = peak_rss.max(rss);
        if warm_rss.is_none() && start.elapsed() >= warm {
            warm_rss = Some(rss);
        }
    }
    stop.store(true, Relaxed);
    for p in publishers {
        p.join().unwrap();
    }
    stop_consumers.store(true, Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    if let Err(e) = broker.join(Some(Duration::from_secs(20))) {
        println!("soak: the broker did not drain after the load stopped: {e}");
        println!("soak: stats {}", broker.stats().unwrap().to_json());
        std::process::exit(1);
    }
    let end_rss = rss_kib();
    let s = broker.stats().unwrap();
    let t = &s.totals;
    let elapsed = start.elapsed().as_secs_f64();
    let soak = s.topics.iter().find(|x| x.name == "soak").unwrap();

    println!(
        "soak: {elapsed:.0} s, {} messages published ({:.0}/s)",
        published.load(Relaxed),
        published.load(Relaxed) as f64 / elapsed
    );
    println!(
        "soak: dispatched={} processed={} failed={} requeued={} lapsed={} expired={} dead_lettered={} dropped={} unrouted={}",
        t.dispatched, t.processed, t.failed, t.requeued, t.lapsed, t.expired, t.dead_lettered, t.dropped, t.unrouted
    );
    let warm_rss = warm_rss.unwrap_or(end_rss);
    println!("soak: rss after warm-up {warm_rss} KiB, peak {peak_rss} KiB, after drain {end_rss} KiB");

    let mut ok = true;
    let mut check = |what: &str, good: bool| {
        println!("soak: {what}: {}", if good { "ok" } else { "FAILED" });
        ok &= good;
    };
    check("every publish counted", soak.published == published.load(Relaxed));
    check("nothing left queued, in flight or delayed", t.queued + t.in_flight + t.delayed == 0);
    check(
        "dispatched = processed + failed + requeued + lapsed",
        t.dispatched == t.processed + t.failed + t.requeued + t.lapsed,
    );
    check(
        "dead letters all delivered",
        s.topics.iter().find(|x| x.name == "soak.dlq").is_none_or(|d| d.published == t.dead_lettered),
    );
    // Flat: after warm-up, memory may grow by allocator noise, not with the message count.
    check("memory flat after warm-up (under +32 MiB)", end_rss <= warm_rss + 32 * 1024);
    std::process::exit(if ok { 0 } else { 1 });
}
