//! The hand-written SQLite peer of the brokk benchmarks: a queue table in a SQLite file, used
//! through rusqlite the way a user would write it by hand.
//!
//!   sqlite_bench publish-threads --threads T   T threads, each with its own connection, each
//!                        INSERT its own transaction (autocommit), returning after the commit
//!   sqlite_bench pull    the naive pop, one message per transaction: BEGIN IMMEDIATE;
//!                        SELECT id, payload ... ORDER BY priority DESC, id LIMIT 1;
//!                        DELETE ... WHERE id = ?; COMMIT. The queue is filled beforehand.
//!   sqlite_bench pull-backlog --backlog N      the same pop while N rows stay queued: timed
//!                        rounds of 100 pops, each followed by an untimed INSERT of 100 rows
//!
//! The file: journal_mode WAL, synchronous NORMAL (as brokk's default, and pynenc's), a busy
//! timeout of 5 s on every connection, prepared statements cached. The table has an
//! `INTEGER PRIMARY KEY` and an index on (priority DESC, id), so that the pop is an index seek,
//! not a scan. Each run uses a fresh file in a new directory under $BENCH_TMPDIR, $TMPDIR or
//! /tmp, removed at the end (with its -wal and -shm). Output: one JSON line per result on stdout,
//! like bench/c/common.h.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

const S32: &str = "abcdefghijklmnopqrstuvwxyz012345";

struct Opts {
    scenario: String,
    messages: u64,
    warmup: u64,
    seconds: f64,
    threads: usize,
    backlog: u64,
}

fn parse() -> Opts {
    let mut args = std::env::args().skip(1);
    let usage = || -> ! {
        eprintln!(
            "usage: sqlite_bench publish-threads|pull|pull-backlog [--messages N] [--warmup N] [--seconds S] \
             [--threads T] [--backlog N]"
        );
        std::process::exit(2)
    };
    let scenario = args.next().unwrap_or_else(|| usage());
    let mut o = Opts { scenario, messages: 100_000, warmup: 1_000, seconds: 5.0, threads: 4, backlog: 1_000 };
    while let Some(k) = args.next() {
        let v = args.next().unwrap_or_else(|| usage());
        match k.as_str() {
            "--messages" => o.messages = v.parse().unwrap_or_else(|_| usage()),
            "--warmup" => o.warmup = v.parse().unwrap_or_else(|_| usage()),
            "--seconds" => o.seconds = v.parse().unwrap_or_else(|_| usage()),
            "--threads" => o.threads = v.parse().unwrap_or_else(|_| usage()),
            "--backlog" => o.backlog = v.parse().unwrap_or_else(|_| usage()),
            "--batch" | "--rate" => {}
            _ => usage(),
        }
    }
    o.messages = o.messages.max(1);
    o.threads = o.threads.clamp(1, 64);
    o
}

/// The payload of message `n`, the same bytes as bench_payload in bench/c/common.h.
fn payload(n: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(64);
    v.extend_from_slice(b"{\"i\": ");
    write!(v, "{n}").unwrap();
    v.extend_from_slice(b", \"s\": \"");
    v.extend_from_slice(S32.as_bytes());
    v.extend_from_slice(b"\"}");
    v
}

/// A fresh directory for the file, removed with everything in it when dropped.
struct TempStore {
    dir: PathBuf,
    db: PathBuf,
}

impl TempStore {
    fn new() -> TempStore {
        let base = ["BENCH_TMPDIR", "TMPDIR"]
            .iter()
            .filter_map(|k| std::env::var_os(k).filter(|v| !v.is_empty()))
            .map(PathBuf::from)
            .next()
            .unwrap_or_else(|| PathBuf::from("/tmp"));
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
        let dir = base.join(format!("brokk-bench-rusqlite-{}-{nanos}", std::process::id()));
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let db = dir.join("queue.db");
        TempStore { dir, db }
    }
}

impl Drop for TempStore {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A connection as a user would open one for a shared queue file.
fn connect(path: &Path) -> Connection {
    let conn = Connection::open(path).expect("open");
    conn.busy_timeout(Duration::from_secs(5)).expect("busy_timeout");
    conn.pragma_update(None, "journal_mode", "WAL").expect("journal_mode");
    conn.pragma_update(None, "synchronous", "NORMAL").expect("synchronous");
    conn
}

fn create_schema(conn: &Connection) {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS queue (
             id INTEGER PRIMARY KEY,
             priority INTEGER NOT NULL DEFAULT 0,
             payload BLOB NOT NULL
         );
         CREATE INDEX IF NOT EXISTS queue_order ON queue (priority DESC, id);",
    )
    .expect("schema");
}

const INSERT: &str = "INSERT INTO queue (priority, payload) VALUES (?1, ?2)";

/// One INSERT, its own transaction (autocommit): returns after the commit.
fn insert_one(conn: &Connection, n: u64) {
    conn.prepare_cached(INSERT).expect("prepare").execute(params![0, payload(n)]).expect("insert");
}

/// Rows [first, first + count) in one transaction (the untimed fills).
fn insert_many(conn: &mut Connection, first: u64, count: u64) {
    let tx = conn.transaction().expect("begin");
    {
        let mut st = tx.prepare_cached(INSERT).expect("prepare");
        for n in first..first + count {
            st.execute(params![0, payload(n)]).expect("insert");
        }
    }
    tx.commit().expect("commit");
}

/// The naive pop: the first row by priority then age, deleted in the same transaction.
/// Returns the payload's length, or None if the queue is empty.
fn pop(conn: &mut Connection) -> Option<usize> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).expect("begin immediate");
    let row: Option<(i64, Vec<u8>)> = tx
        .prepare_cached("SELECT id, payload FROM queue ORDER BY priority DESC, id LIMIT 1")
        .expect("prepare")
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
        .expect("select");
    if let Some((id, _)) = &row {
        tx.prepare_cached("DELETE FROM queue WHERE id = ?1").expect("prepare").execute([id]).expect("delete");
    }
    tx.commit().expect("commit");
    row.map(|(_, p)| p.len())
}

fn count(conn: &Connection) -> u64 {
    conn.query_row("SELECT count(*) FROM queue", [], |r| r.get::<_, i64>(0)).expect("count") as u64
}

/// Mirrors bench_emit in bench/c/common.h.
fn emit(scenario: &str, messages: u64, deliveries: u64, seconds: f64, extra: &str) {
    let rate = messages as f64 / seconds;
    let version = rusqlite::version();
    println!(
        "{{\"scenario\": \"{scenario}\", \"impl\": \"rusqlite\", \"unit\": \"messages\", \"messages\": {messages}, \
         \"deliveries\": {deliveries}, \"seconds\": {seconds:.6}, \"rate\": {rate:.1}, \"store\": \"sqlite\", \
         \"synchronous\": \"normal\", \"sqlite_version\": \"{version}\"{extra}}}"
    );
    eprintln!("  {scenario:<10} {:<16} {rate:>12.0} messages/s", "rusqlite");
}

fn publish_threads(o: &Opts, store: &TempStore) {
    let conn = connect(&store.db);
    create_schema(&conn);
    for n in 0..o.warmup {
        insert_one(&conn, n);
    }
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs_f64(o.seconds);
    let handles: Vec<_> = (0..o.threads)
        .map(|i| {
            let share = o.messages / o.threads as u64 + u64::from((i as u64) < o.messages % o.threads as u64);
            let first = o.warmup + i as u64 * o.messages;
            let path = store.db.clone();
            thread::spawn(move || {
                let conn = connect(&path);
                let mut sent = 0u64;
                while sent < share {
                    insert_one(&conn, first + sent);
                    sent += 1;
                    if sent & 63 == 0 && Instant::now() >= deadline {
                        break;
                    }
                }
                sent
            })
        })
        .collect();
    let sent: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    let seconds = t0.elapsed().as_secs_f64();
    let queued = count(&conn);
    assert_eq!(queued, o.warmup + sent, "every INSERT is in the table");
    let t = o.threads;
    emit(
        &format!("sqlite-publish-threads{t}"),
        sent,
        0,
        seconds,
        &format!(
            ", \"threads\": {t}, \"queued\": {queued}, \"note\": \"{t} threads, one connection each, \
             one INSERT per transaction (autocommit), busy_timeout 5 s\""
        ),
    );
}

/// Pops up to `limit` rows; the time spent popping is added to `busy`.
fn pop_many(conn: &mut Connection, limit: u64, busy: &mut Duration, bytes: &mut usize) -> u64 {
    let t = Instant::now();
    for n in 0..limit {
        match pop(conn) {
            Some(len) => *bytes += len,
            None => panic!("queue empty after {n} pops"),
        }
    }
    *busy += t.elapsed();
    limit
}

fn pull(o: &Opts, store: &TempStore) {
    let mut conn = connect(&store.db);
    create_schema(&conn);
    insert_many(&mut conn, 0, o.warmup + o.messages);
    let mut bytes = 0usize;
    let mut busy = Duration::ZERO;
    pop_many(&mut conn, o.warmup, &mut busy, &mut bytes);
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs_f64(o.seconds);
    let mut got = 0u64;
    while got < o.messages {
        got += pop_many(&mut conn, (o.messages - got).min(64), &mut busy, &mut bytes);
        if Instant::now() >= deadline {
            break;
        }
    }
    let seconds = t0.elapsed().as_secs_f64();
    std::hint::black_box(bytes);
    emit(
        "sqlite-pull",
        got,
        got,
        seconds,
        &format!(
            ", \"prepublished\": {}, \"note\": \"naive pop: BEGIN IMMEDIATE, SELECT ... ORDER BY priority DESC, id \
             LIMIT 1, DELETE, COMMIT\"",
            o.warmup + o.messages
        ),
    );
}

fn size_label(n: u64) -> String {
    if n >= 1_000_000 && n % 1_000_000 == 0 {
        format!("{}m", n / 1_000_000)
    } else if n >= 1000 && n % 1000 == 0 {
        format!("{}k", n / 1000)
    } else {
        n.to_string()
    }
}

fn pull_backlog(o: &Opts, store: &TempStore) {
    let n_backlog = o.backlog.max(1);
    let refill = (n_backlog / 10).clamp(1, 100);
    let mut conn = connect(&store.db);
    create_schema(&conn);
    let tf = Instant::now();
    for first in (0..n_backlog).step_by(10_000) {
        insert_many(&mut conn, first, (n_backlog - first).min(10_000));
    }
    let fill = tf.elapsed().as_secs_f64();
    let mut next = n_backlog;
    let mut bytes = 0usize;
    let mut got = 0u64;
    let mut busy = Duration::ZERO;
    for phase in 0..2 {
        let limit = if phase == 0 { o.warmup } else { o.messages };
        busy = Duration::ZERO;
        let mut n = 0u64;
        while n < limit {
            let k = (limit - n).min(refill);
            pop_many(&mut conn, k, &mut busy, &mut bytes);
            insert_many(&mut conn, next, k);
            next += k;
            n += k;
            if phase == 1 && busy.as_secs_f64() >= o.seconds {
                break;
            }
        }
        got = n;
    }
    assert_eq!(count(&conn), n_backlog, "the backlog is back to N");
    std::hint::black_box(bytes);
    emit(
        &format!("sqlite-pull-backlog-{}", size_label(n_backlog)),
        got,
        got,
        busy.as_secs_f64(),
        &format!(
            ", \"backlog\": {n_backlog}, \"refill\": {refill}, \"fill_seconds\": {fill:.3}, \"note\": \"naive pop one \
             at a time, backlog held between {} and {n_backlog}\"",
            n_backlog - refill
        ),
    );
}

fn main() {
    let o = parse();
    let store = TempStore::new();
    match o.scenario.as_str() {
        "publish-threads" => publish_threads(&o, &store),
        "pull" => pull(&o, &store),
        "pull-backlog" => pull_backlog(&o, &store),
        other => {
            drop(store);
            eprintln!("unknown scenario {other}");
            std::process::exit(2)
        }
    }
}
