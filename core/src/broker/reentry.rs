//! Knows whether the current thread is one of a broker's own threads (a worker or its listener
//! thread), so that calls that wait for those threads can refuse instead of deadlocking.

use std::cell::Cell;

thread_local! {
    static OWNER: Cell<usize> = const { Cell::new(0) };
}

/// Marks the current thread as belonging to the broker identified by `owner`.
pub(crate) fn enter(owner: usize) {
    OWNER.with(|o| o.set(owner));
}

/// Whether the current thread belongs to the broker identified by `owner`.
pub(crate) fn is_inside(owner: usize) -> bool {
    OWNER.with(|o| o.get() == owner)
}
