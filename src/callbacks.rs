//! Callback glue: the user data that travels with every registered callback, and its finaliser.

use std::ffi::c_void;

/// Releases the user_data given with a callback. brokk calls it exactly once, after the last
/// invocation of the callback it belongs to, on whichever thread drops the registration (a
/// broker worker, the listener thread, or the thread calling unsubscribe, remove_listener or
/// brokk_broker_free). NULL means nothing to release.
pub type brokk_free_cb = Option<unsafe extern "C" fn(user_data: *mut c_void)>;

/// A host's user_data and its finaliser, run exactly once on drop.
pub(crate) struct UserData {
    ptr: *mut c_void,
    free: brokk_free_cb,
}

// SAFETY: the header tells hosts that user_data is used from broker threads, concurrently when
// a subscription's concurrency is above 1; making it safe to share is the host's contract.
unsafe impl Send for UserData {}
// SAFETY: as for Send.
unsafe impl Sync for UserData {}

impl UserData {
    pub(crate) fn new(ptr: *mut c_void, free: brokk_free_cb) -> Self {
        UserData { ptr, free }
    }

    pub(crate) fn ptr(&self) -> *mut c_void {
        self.ptr
    }

    /// Gives the user data back to the host: the finaliser will not run.
    pub(crate) fn disown(mut self) {
        self.free = None;
    }
}

impl Drop for UserData {
    fn drop(&mut self) {
        if let Some(free) = self.free {
            // SAFETY: the host's finaliser for its own pointer, run once: drop runs once, and
            // `disown` clears `free`. It must not unwind (C++ throwing here is the host's bug).
            unsafe { free(self.ptr) };
        }
    }
}
