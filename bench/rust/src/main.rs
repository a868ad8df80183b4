//! The raw-channel peer of the brokk benchmarks: the limit a queue between two threads can reach.
//!
//!   channel_bench 1to1      one sender -> one receiver
//!   channel_bench fanout4   one sender -> 4 receivers, each message on 4 channels (deliveries/s);
//!                           the payload is one Arc<[u8]> shared by the 4 copies, as brokk
//!                           shares one buffer across fan-out
//!   channel_bench latency   one sender -> one receiver at a fixed rate
//!   channel_bench latency-spin   the same, the receiver busy-polling (try_recv) instead of
//!                           parking: the hand-off floor without a thread wake-up
//!
//! Each message is a freshly allocated buffer with the same JSON as the C programs
//! (`{"i": n, "s": "<32 chars>"}`). Channels are bounded at brokk's default queue capacity
//! (100 000), so a fast sender blocks as a brokk publisher does. Output: one JSON line per
//! result on stdout, like bench/c/common.h.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender};

const CAPACITY: usize = 100_000;
const S32: &str = "abcdefghijklmnopqrstuvwxyz012345";

struct Opts {
    scenario: String,
    messages: u64,
    warmup: u64,
    seconds: f64,
    rate: f64,
    spin_us: u64,
}

fn parse() -> Opts {
    let mut args = std::env::args().skip(1);
    let usage = || -> ! {
        eprintln!("usage: channel_bench 1to1|fanout4|latency|latency-spin [--messages N] [--warmup N] [--seconds S] [--rate R]");
        std::process::exit(2)
    };
    let scenario = args.next().unwrap_or_else(|| usage());
    let mut o = Opts { scenario, messages: 2_000_000, warmup: 200_000, seconds: 5.0, rate: 50_000.0, spin_us: 0 };
    while let Some(k) = args.next() {
        let v = args.next().unwrap_or_else(|| usage());
        match k.as_str() {
            "--messages" => o.messages = v.parse().unwrap_or_else(|_| usage()),
            "--warmup" => o.warmup = v.parse().unwrap_or_else(|_| usage()),
            "--seconds" => o.seconds = v.parse().unwrap_or_else(|_| usage()),
            "--rate" => o.rate = v.parse().unwrap_or_else(|_| usage()),
            "--spin-us" => o.spin_us = v.parse().unwrap_or_else(|_| usage()),
            "--batch" => {}
            _ => usage(),
        }
    }
    o.messages = o.messages.max(1);
    o
}

/// A fresh buffer holding the payload of message `n`.
fn payload(n: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(64);
    v.extend_from_slice(b"{\"i\": ");
    write!(v, "{n}").unwrap();
    v.extend_from_slice(b", \"s\": \"");
    v.extend_from_slice(S32.as_bytes());
    v.extend_from_slice(b"\"}");
    v
}

fn index_of(p: &[u8]) -> u64 {
    p[6..].iter().take_while(|c| c.is_ascii_digit()).fold(0, |n, c| n * 10 + u64::from(c - b'0'))
}

/// Mirrors bench_emit in bench/c/common.h; `note` ends the human-readable line on stderr.
fn emit(scenario: &str, unit: &str, messages: u64, deliveries: u64, seconds: f64, extra: &str, note: &str) {
    let rate = deliveries as f64 / seconds;
    println!(
        "{{\"scenario\": \"{scenario}\", \"impl\": \"crossbeam\", \"unit\": \"{unit}\", \"messages\": {messages}, \
         \"deliveries\": {deliveries}, \"seconds\": {seconds:.6}, \"rate\": {rate:.1}{extra}}}"
    );
    eprintln!("  {scenario:<10} {:<16} {rate:>12.0} {unit}/s{note}", "crossbeam");
}

enum Item<T> {
    Msg(T),
    End,
}

/// One sender, `receivers` receivers; each message goes to every receiver.
fn throughput<T: Send + 'static>(o: &Opts, receivers: usize, make: impl Fn(u64) -> T, len: fn(&T) -> usize)
where
    T: Clone,
{
    let counts: Arc<Vec<AtomicU64>> = Arc::new((0..receivers).map(|_| AtomicU64::new(0)).collect());
    let mut txs: Vec<Sender<Item<T>>> = Vec::new();
    let mut handles = Vec::new();
    for r in 0..receivers {
        let (tx, rx): (Sender<Item<T>>, Receiver<Item<T>>) = bounded(CAPACITY);
        txs.push(tx);
        let counts = Arc::clone(&counts);
        handles.push(thread::spawn(move || {
            let mut bytes = 0usize;
            let mut n = 0u64;
            while let Ok(item) = rx.recv() {
                match item {
                    Item::Msg(m) => {
                        bytes += len(&m);
                        n += 1;
                        counts[r].store(n, Ordering::Relaxed);
                    }
                    Item::End => break,
                }
            }
            std::hint::black_box(bytes);
            Instant::now()
        }));
    }
    let send = |n: u64| {
        let m = make(n);
        for tx in &txs[1..] {
            tx.send(Item::Msg(m.clone())).unwrap();
        }
        txs[0].send(Item::Msg(m)).unwrap();
    };
    for n in 0..o.warmup {
        send(n);
    }
    while counts.iter().any(|c| c.load(Ordering::Relaxed) < o.warmup) {
        thread::yield_now();
    }
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs_f64(o.seconds);
    let mut sent = 0u64;
    while sent < o.messages {
        send(o.warmup + sent);
        sent += 1;
        if sent & 1023 == 0 && Instant::now() >= deadline {
            break;
        }
    }
    for tx in &txs {
        tx.send(Item::End).unwrap();
    }
    let end = handles.into_iter().map(|h| h.join().unwrap()).max().unwrap();
    let got: u64 = counts.iter().map(|c| c.load(Ordering::Relaxed) - o.warmup).sum();
    assert_eq!(got, sent * receivers as u64, "every receiver gets every message");
    let (scenario, unit) = if receivers == 1 { ("1to1", "messages") } else { ("fanout4", "deliveries") };
    emit(
        scenario,
        unit,
        sent,
        got,
        (end - t0).as_secs_f64(),
        &format!(", \"capacity\": {CAPACITY}, \"receivers\": {receivers}"),
        "",
    );
}

/// CLOCK_MONOTONIC in nanoseconds, the clock of the C programs.
fn now_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// As pace_until in bench/c/common.h: sleep (absolute) while more than `spin_ns` is left, then
/// spin.
fn pace_until(t_ns: u64, spin_ns: u64) {
    loop {
        let now = now_ns();
        if now >= t_ns {
            return;
        }
        if t_ns - now > spin_ns {
            let wake = t_ns - spin_ns;
            let ts = libc::timespec { tv_sec: (wake / 1_000_000_000) as _, tv_nsec: (wake % 1_000_000_000) as _ };
            // SAFETY: valid pointers; an interrupted sleep just loops.
            unsafe { libc::clock_nanosleep(libc::CLOCK_MONOTONIC, libc::TIMER_ABSTIME, &ts, std::ptr::null_mut()) };
        } else {
            std::hint::spin_loop();
        }
    }
}

fn latency(o: &Opts, spin: bool) {
    // SAFETY: prctl with plain integers. Sleeps end when asked, not 50 µs later.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0) };
    let measured = ((o.rate * o.seconds) as u64).min(o.messages);
    let warm = ((o.rate * 0.5) as u64).min(o.warmup);
    let total = warm + measured;
    let (tx, rx) = bounded::<Item<(Vec<u8>, u64)>>(CAPACITY);
    let receiver = thread::spawn(move || {
        let mut lat = vec![0u64; total as usize];
        loop {
            let item = if spin {
                match rx.try_recv() {
                    Ok(item) => item,
                    Err(crossbeam_channel::TryRecvError::Empty) => {
                        std::hint::spin_loop();
                        continue;
                    }
                    Err(_) => break,
                }
            } else {
                match rx.recv() {
                    Ok(item) => item,
                    Err(_) => break,
                }
            };
            let Item::Msg((m, sent)) = item else { break };
            lat[index_of(&m) as usize] = now_ns().saturating_sub(sent);
        }
        lat
    });
    let period = (1e9 / o.rate) as u64;
    let t0 = now_ns() + 1_000_000;
    let mut late = 0u64;
    for i in 0..total {
        let due = t0 + i * period;
        pace_until(due, o.spin_us * 1000);
        let m = payload(i);
        let now = now_ns();
        if now > due + period {
            late += 1;
        }
        tx.send(Item::Msg((m, now))).unwrap();
    }
    let t_end = now_ns();
    tx.send(Item::End).unwrap();
    let lat = receiver.join().unwrap();
    let mut ns: Vec<u64> = lat[warm as usize..].to_vec();
    ns.sort_unstable();
    let n = ns.len();
    let pct = |q: f64| ns[((n - 1) as f64 * q) as usize] as f64 / 1000.0;
    let mean = ns.iter().sum::<u64>() as f64 / n as f64 / 1000.0;
    let seconds = (t_end - (t0 + warm * period)) as f64 / 1e9;
    let extra = format!(
        ", \"latency_us\": {{\"p50\": {:.3}, \"p90\": {:.3}, \"p99\": {:.3}, \"p999\": {:.3}, \"max\": {:.3}, \"mean\": {:.3}, \"samples\": {n}}}, \
         \"target_rate\": {:.1}, \"achieved_rate\": {:.1}, \"sends_late\": {late}, \"spin_us\": {}",
        pct(0.5),
        pct(0.9),
        pct(0.99),
        pct(0.999),
        pct(1.0),
        mean,
        o.rate,
        measured as f64 / seconds,
        o.spin_us
    );
    let note = format!("  p50 {:.2} us  p99 {:.2} us  p99.9 {:.2} us", pct(0.5), pct(0.99), pct(0.999));
    let scenario = if spin { "latency-spin" } else { "latency" };
    emit(scenario, "messages", measured, n as u64, seconds, &extra, &note);
}

fn main() {
    let o = parse();
    match o.scenario.as_str() {
        "1to1" => throughput(&o, 1, payload, |m: &Vec<u8>| m.len()),
        "fanout4" => throughput(&o, 4, |n| Arc::<[u8]>::from(payload(n)), |m: &Arc<[u8]>| m.len()),
        "latency" => latency(&o, false),
        "latency-spin" => latency(&o, true),
        other => {
            eprintln!("unknown scenario {other}");
            std::process::exit(2)
        }
    }
}
