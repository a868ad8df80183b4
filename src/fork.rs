//! Tells the core when this process forks: the child handler counts the fork, so that a broker
//! its parent made refuses every call there (see the core's `broker::fork` for the contract);
//! the prepare and parent handlers hold the fork off while brokk's threads are inside SQLite,
//! whose process-wide mutexes a fork would otherwise copy held into the child
//! (see the core's `fork_gate`).

use std::sync::Once;

/// Runs in the forking thread before `fork`: waits (at most a second) until no other thread is
/// inside a store call that a fork must not split, and keeps new ones out until the fork is done.
extern "C" fn before_fork() {
    super::boundary::guard_value(brokk_core::fork::before_fork)
}

/// Runs in the parent right after `fork`: lets store calls in again.
extern "C" fn after_fork_in_parent() {
    super::boundary::guard_value(brokk_core::fork::after_fork_in_parent)
}

/// Runs in the child right after `fork`, on the forking thread: only atomic stores and an
/// increment, which are async-signal-safe as a fork child handler must be.
extern "C" fn after_fork_in_child() {
    super::boundary::guard_value(brokk_core::fork::after_fork_in_child)
}

/// Registers the handlers once per process (brokk_broker_new calls it).
pub(crate) fn watch_forks() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: registers handlers that touch only atomics (and sleep, before the fork) and
        // never unwind out. A failure (ENOMEM) leaves forks uncounted and unguarded: a parent's
        // broker is then still never torn down in a child (the process id is checked there).
        unsafe {
            libc::pthread_atfork(Some(before_fork), Some(after_fork_in_parent), Some(after_fork_in_child));
        }
    });
}
