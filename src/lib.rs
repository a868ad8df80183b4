//! brokk: an embeddable message broker. A safe Rust core (this crate's public API) with a C ABI
//! in `ffi` that the C, C++, Go and Python bindings build on.
//!
//! ```
//! use brokk::{Broker, PublishOptions, SubscribeOptions, Verdict};
//! let broker = Broker::new().unwrap();
//! broker.subscribe("greetings", |d: &brokk::Delivery| {
//!     assert_eq!(d.payload(), br#"{"hello":"world"}"#);
//!     Verdict::Ack
//! }, &SubscribeOptions::default()).unwrap();
//! broker.publish("greetings", br#"{"hello":"world"}"#, &PublishOptions::default()).unwrap();
//! broker.join(None).unwrap();
//! ```

mod broker;
mod config;
mod error;
pub mod ffi;
mod fork_gate;
mod handler;
mod json;
mod listener;
mod message;
mod names;
mod stats;
mod store;
mod sync;

pub use broker::{
    BatchMessage, Broker, CloseReport, FetchOptions, PublishOptions, SubscribeOptions, Taken, WeakBroker,
    DEFAULT_GROUP, MAX_CONCURRENCY,
};
pub use config::{
    parse_url, Backend, Backpressure, BrokerConfig, RedisConfig, RetentionPolicy, SqliteConfig, Synchronous,
    DEFAULT_LEASE, DEFAULT_LISTENER_QUEUE, DEFAULT_MAX_PAYLOAD, DEFAULT_REDIS_PORT, DEFAULT_REDIS_PREFIX,
    DEFAULT_REDIS_TIMEOUT, DEFAULT_RETENTION_LIMIT, DEFAULT_SQLITE_BUSY_TIMEOUT, MAX_OPTION_MILLIS, MAX_WORKERS,
};
pub use error::{Error, ErrorKind, Result};
pub use handler::{Handler, Reason, Verdict};
pub use listener::Listener;
pub use message::{Delivery, Message};
pub use names::{validate_group, validate_id, validate_topic, MAX_ID_LEN, MAX_TOPIC_LEN};
pub use stats::{BrokerStats, TopicStats};
