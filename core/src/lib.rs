//! brokk's core: an embeddable message broker in safe Rust. The C library (the `brokk` crate at
//! the workspace root, which the C, C++, Go and Python bindings build on) is one user of this
//! public API; a Rust program links it directly.
//!
//! ```
//! use brokk_core::{Broker, PublishOptions, SubscribeOptions, Verdict};
//! let broker = Broker::new().unwrap();
//! broker.subscribe("greetings", |d: &brokk_core::Delivery| {
//!     assert_eq!(d.payload(), br#"{"hello":"world"}"#);
//!     Verdict::Ack
//! }, &SubscribeOptions::default()).unwrap();
//! broker.publish("greetings", br#"{"hello":"world"}"#, &PublishOptions::default()).unwrap();
//! broker.join(None).unwrap();
//! ```

// No `unsafe` in the core: the C library (the root crate) alone holds it.
#![forbid(unsafe_code)]
// What only some backends call (the fork holds are SQLite's; the URL option helpers, parts of
// `Message` and of the store seam serve the stores shared by processes) is unused in a build
// that leaves them out: the default build, with every backend, is the one checked for dead code.
#![cfg_attr(not(all(feature = "sqlite", feature = "redis")), allow(dead_code))]

mod broker;
mod cancel;
mod config;
mod error;
mod fork_gate;
mod handler;
mod json;
mod listener;
pub mod log;
mod message;
mod names;
mod prometheus;
mod stats;
mod store;
mod sync;
mod view;

pub use broker::{
    panic_message, BatchMessage, Broker, CloseReport, FetchOptions, PublishOptions, Readiness, ReadyWait,
    SubscribeOptions, Taken, WeakBroker, DEFAULT_GROUP, GENERATED_ID_LEN, MAX_CONCURRENCY, MAX_PEEK,
};
pub use cancel::{Cancel, MIN_CHECK_PERIOD};
pub use config::{
    parse_url, Backpressure, BrokerConfig, RetentionPolicy, DEFAULT_LEASE, DEFAULT_LISTENER_QUEUE, DEFAULT_MAX_PAYLOAD,
    DEFAULT_QUEUE_CAPACITY, DEFAULT_RETENTION_LIMIT, MAX_LISTENER_QUEUE, MAX_OPTION_MILLIS, MAX_WORKERS,
};
pub use error::{Error, ErrorKind, Result};
pub use handler::{Handler, Reason, Verdict};
pub use listener::Listener;
pub use message::{Delivery, Message, Peeked};
pub use names::{topic_name_part, validate_group, validate_id, validate_topic, MAX_ID_LEN, MAX_TOPIC_LEN};
pub use stats::{BrokerStats, TopicStats};
pub use store::Backend;
pub use view::{Depth, GroupView, StoreView, TopicView};

// Each backend's options (those of the backends this build has, by cargo feature; none in a
// memory-only build, hence the allow).
#[allow(unused_imports)]
pub use store::exports::*;

/// What a process that forks must tell the core, from `pthread_atfork` handlers (the C library
/// registers them when it makes its first broker; a Rust program that forks while brokers run
/// registers its own). See `broker::fork` for what a child may do with its parent's brokers,
/// and `fork_gate` for why a fork waits.
pub mod fork {
    /// In the forking thread, before the fork: waits (at most a second) until no thread is
    /// inside a store call that a fork must not split, and keeps new ones out.
    pub fn before_fork() {
        crate::fork_gate::before_fork()
    }

    /// In the parent, after the fork: lets store calls in again.
    pub fn after_fork_in_parent() {
        crate::fork_gate::after_fork_in_parent()
    }

    /// In the child, after the fork: its parent's brokers refuse every call from now on.
    /// Atomic stores only (async-signal-safe).
    pub fn after_fork_in_child() {
        crate::fork_gate::after_fork_in_child();
        crate::broker::note_fork();
    }
}
