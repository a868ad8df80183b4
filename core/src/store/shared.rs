//! Pieces that every store shared by processes (SQLite, Redis) needs the same way: who a
//! broker instance is to the store (`Owner`), the ready count of a group as this broker knows
//! it (`ReadyCount`), and how much a push worker claims at once (`batch_size`).

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::sync::Mutex;

use crate::error::Result;

/// Claims of a push worker: what it runs next. A claim is a commit (SQLite) or a round trip and
/// a script (Redis), and the SQLite engine measured claim 64 + ack 64 at ten times one at a
/// time; with several local consumers competing a smaller batch keeps them fair.
const BATCH: usize = 64;
const CONTENDED_BATCH: usize = 8;

/// See `Store::batch_size`.
pub(crate) fn batch_size(contended: bool, deadline: bool) -> usize {
    match (deadline, contended) {
        // Its lease runs from the claim: claim only what is handed out at once.
        (true, _) => 1,
        (false, true) => CONTENDED_BATCH,
        (false, false) => BATCH,
    }
}

/// Who holds a lease: this broker instance, with or without renewal.
pub(crate) struct Owner {
    /// Leases renewed by the heartbeat; also the owner of this broker's anonymous groups.
    pub renewed: String,
    /// Leases that end at an ack deadline, never renewed.
    pub deadline: String,
}

impl Owner {
    /// A new instance id: random, with the process id for people reading the store.
    pub fn new() -> Self {
        let mut h = RandomState::new().build_hasher();
        h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
        h.write_u32(std::process::id());
        let id = format!("{:016x}-{}", h.finish(), std::process::id());
        Owner { deadline: format!("{id}+d"), renewed: id }
    }

    pub fn holder(&self, renewed: bool) -> &str {
        if renewed {
            &self.renewed
        } else {
            &self.deadline
        }
    }
}

/// A group's ready deliveries as this broker knows them: kept current by its own writes and by
/// what it reads from the store.
///
/// That count must never miss a delivery this broker added: a worker that finds it at 0 stops,
/// trusting the publisher that made it non-zero to wake someone. But a count read from the
/// store (a claim's, a refresh's) is only true at the moment of its read, and a local publish
/// may land after that moment yet add its `+1` before the read is stored. So additions are also
/// counted on their own (`adds`), and a read stores what it read plus the additions made since
/// it started. One that landed before the read and added after its start is counted twice: the
/// count is then too high, which costs a claim that finds nothing and corrects it.
pub(crate) struct ReadyCount {
    counts: Mutex<Counts>,
    /// `counts.ready`, readable without the lock.
    ready: AtomicU64,
}

struct Counts {
    /// Ready deliveries, as last seen.
    ready: u64,
    /// Deliveries this broker made ready (published, requeued, released), ever.
    adds: u64,
    /// When the last read from the store started.
    read_at: Option<Instant>,
}

impl ReadyCount {
    pub fn new(ready: u64) -> Self {
        let counts = Counts { ready, adds: 0, read_at: Some(Instant::now()) };
        ReadyCount { counts: Mutex::new(counts), ready: AtomicU64::new(ready) }
    }

    pub fn get(&self) -> u64 {
        self.ready.load(Ordering::Acquire)
    }

    /// This broker made `n` deliveries ready (after the write that did).
    pub fn added(&self, n: u64) {
        let mut c = self.counts.lock();
        c.ready += n;
        c.adds += n;
        self.ready.store(c.ready, Ordering::Release);
    }

    /// Reads the count from the store with `read` (which returns a value and the count), and
    /// stores it with the additions made since the read started.
    pub fn reread<R>(&self, read: impl FnOnce() -> Result<(R, u64)>) -> Result<R> {
        let (adds, started) = (self.counts.lock().adds, Instant::now());
        let (value, ready) = read()?;
        let mut c = self.counts.lock();
        c.ready = ready + (c.adds - adds);
        c.read_at = Some(started);
        self.ready.store(c.ready, Ordering::Release);
        Ok(value)
    }

    /// The count, if it was read from the store less than `max_age` ago.
    pub fn fresh(&self, max_age: Duration) -> Option<u64> {
        let c = self.counts.lock();
        c.read_at.filter(|at| at.elapsed() < max_age).map(|_| c.ready)
    }

    /// `fresh(max_age)`, or else the count read now with `read` (see `reread`).
    pub fn backlog(&self, max_age: Duration, read: impl FnOnce() -> Result<u64>) -> Result<u64> {
        match self.fresh(max_age) {
            Some(n) => Ok(n),
            None => self.reread(|| read().map(|n| (n, n))),
        }
    }
}
