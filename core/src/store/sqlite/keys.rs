//! Delivery keys: unique in the file and never reused, so that a late settle of a lost lease
//! can not hit another delivery, and the broker's table of deliveries in flight never sees one
//! key twice. They come from the file-wide counter (`counters.seq`), in blocks: a writer
//! reserves `BLOCK` keys at once and hands them out in order, so the counter's page is written
//! once per block instead of in every commit.
//!
//! A reservation is a write like any other: undone with the call or the transaction that made
//! it. So the writer keeps its block beside its connection and puts back the block it had
//! whenever a call's savepoint or the whole transaction is rolled back (see `commit.rs`): a
//! block is only ever used by the writer whose reservation committed. Keys that a rolled-back
//! call took are simply taken again. What a writer leaves of its block when it closes (or its
//! process dies) is never used: the counter only grows.

use std::cell::Cell;

use super::errors::TxResult;
use super::tx::Tx;

/// Keys reserved at once (more when one call needs more).
const BLOCK: i64 = 4096;

/// The keys `next..end` are this writer's to hand out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct KeyBlock {
    next: i64,
    end: i64,
}

/// The writer's block, as its calls see it: read and replaced under the writer's lock.
pub(super) type Keys = Cell<KeyBlock>;

impl Tx<'_> {
    /// Takes `n` consecutive keys and returns the first.
    pub(super) fn take_keys(&self, n: i64) -> TxResult<i64> {
        let mut block = self.keys().get();
        if block.end - block.next < n {
            let size = n.max(BLOCK);
            let sql = "UPDATE counters SET value = value + ?1 WHERE name = 'seq' RETURNING value - ?1";
            let first: i64 = self.stmt(sql)?.query_row([size], |r| r.get(0))?;
            block = KeyBlock { next: first, end: first + size };
        }
        let first = block.next;
        block.next += n;
        self.keys().set(block);
        Ok(first)
    }
}
