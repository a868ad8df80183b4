//! Helpers of the tests of stores shared by processes (tests/sqlite.rs, tests/redis.rs).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use brokk_core::{Delivery, SubscribeOptions, Verdict};

/// Longest wait for something that must happen (a redelivery after a lease, a poll, ...).
pub const LONG: Duration = Duration::from_secs(30);

/// Waits until `cond` holds, failing the test after `LONG`.
pub fn eventually(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + LONG;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

pub fn payload_of(d: &Delivery) -> String {
    String::from_utf8(d.payload().to_vec()).unwrap()
}

pub fn grouped(group: &str) -> SubscribeOptions<'_> {
    SubscribeOptions { group: Some(group), ..Default::default() }
}

/// What handlers saw: payload -> attempts, in order of processing.
pub type Seen = Arc<Mutex<HashMap<String, Vec<u32>>>>;

/// A handler that records into `seen` and acks.
pub fn recorder(seen: &Seen) -> impl Fn(&Delivery) -> Verdict {
    let seen = Arc::clone(seen);
    move |d: &Delivery| {
        seen.lock().unwrap().entry(payload_of(d)).or_default().push(d.attempt());
        Verdict::Ack
    }
}
