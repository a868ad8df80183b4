//! Tells the core when this process is a child of a fork, so that a broker its parent made
//! refuses every call there (see the core's `broker::fork` for the contract).

use std::sync::Once;

/// Runs in the child right after `fork`, on the forking thread: only an atomic increment,
/// which is async-signal-safe as a fork child handler must be.
extern "C" fn after_fork_in_child() {
    super::boundary::guard_value((), crate::broker::note_fork)
}

/// Registers the child handler once per process (brokk_broker_new calls it).
pub(crate) fn watch_forks() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: registers a handler that does one atomic add and never unwinds out; no
        // prepare or parent handler. A failure (ENOMEM) leaves forks uncounted: a parent's
        // broker is then still never torn down in a child (the process id is checked there).
        unsafe {
            libc::pthread_atfork(None, None, Some(after_fork_in_child));
        }
    });
}
