//! Every option of every backend, and every duration a call takes, over its whole range: a value
//! is accepted and works, or is refused with a clear error naming the range; nothing panics.
//! (A SQLite `busy_timeout_ms` of 2^31 or more once reached a panic inside the store.)

// Needs every backend: built with their cargo features only.
#![cfg(all(feature = "sqlite", feature = "redis"))]

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use brokk_core::{
    parse_url, Backend, Broker, BrokerConfig, ErrorKind, FetchOptions, PublishOptions, SqliteConfig, SubscribeOptions,
    Verdict, MAX_OPTION_MILLIS,
};
use common::Kit;
use proptest::prelude::*;

/// Values around every edge an option's number crosses: its minimum, the C `int` and `u32`
/// limits, float precision, the `u64` limit and past it, and text that is not a number.
fn option_value() -> impl Strategy<Value = String> {
    let edges = [
        0u128,
        1,
        2,
        3,
        4,
        1000,
        MAX_OPTION_MILLIS as u128,
        MAX_OPTION_MILLIS as u128 + 1,
        u32::MAX as u128,
        1 << 32,
        1 << 53,
        i64::MAX as u128,
        1 << 63,
        u64::MAX as u128,
        u64::MAX as u128 + 1,
    ];
    prop_oneof![
        proptest::sample::select(edges.to_vec()).prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        proptest::sample::select(vec!["", "-1", "abc", "1e3", " 1", "1 ", "+5", "0x10", "１"]).prop_map(str::to_owned),
    ]
}

/// Whether a text is a number of milliseconds in `min..=MAX_OPTION_MILLIS`.
fn in_range(value: &str, min: u64) -> bool {
    value.bytes().all(|b| b.is_ascii_digit())
        && value.parse::<u64>().is_ok_and(|n| (min..=MAX_OPTION_MILLIS).contains(&n))
}

fn no_panic<T>(what: &str, f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| panic!("{what} panicked"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn url_options_are_accepted_in_range_and_refused_outside_it(
        value in option_value(),
        which in 0usize..5,
    ) {
        let (url, min) = match which {
            // Another option follows, so that the value is not at the end (where a URL's
            // surrounding white space is trimmed).
            0 => (format!("sqlite:///tmp/brokk-options.db?busy_timeout_ms={value}&synchronous=full"), 0),
            1 => (format!("sqlite:///tmp/brokk-options.db?lease_ms={value}&synchronous=full"), 3),
            2 => (format!("redis://127.0.0.1:6379/0?lease_ms={value}&prefix=p"), 3),
            3 => (format!("redis://127.0.0.1:6379/0?timeout_ms={value}&prefix=p"), 1),
            _ => (format!("redis+cluster://127.0.0.1:7000?timeout_ms={value}&prefix=p"), 1),
        };
        match no_panic(&url, || parse_url(&url)) {
            Ok(_) => prop_assert!(in_range(&value, min), "{url} was accepted"),
            Err(e) => {
                prop_assert!(!in_range(&value, min), "{url} was refused: {e}");
                prop_assert_eq!(e.kind(), ErrorKind::InvalidUrl);
                prop_assert!(e.message().contains(&MAX_OPTION_MILLIS.to_string()), "{}", e.message());
            }
        }
    }
}

/// Every accepted SQLite option value opens a working broker, the extremes included.
#[test]
fn sqlite_opens_at_the_edges_of_every_option() {
    let kit = Kit::sqlite("options");
    for (key, value) in [
        ("busy_timeout_ms", 0),
        ("busy_timeout_ms", MAX_OPTION_MILLIS),
        ("lease_ms", 3),
        ("lease_ms", MAX_OPTION_MILLIS),
    ] {
        let url = format!("sqlite://{}?{key}={value}", kit.dir().join(format!("{key}-{value}.db")).display());
        let b = no_panic(&url, || Broker::open(&url)).unwrap_or_else(|e| panic!("{url}: {e}"));
        b.publish("t", b"1", &PublishOptions::default()).unwrap();
        assert_eq!(b.count(None).unwrap(), 1, "{url}");
        b.close(Some(Duration::from_secs(30)), false).unwrap();
    }
    for (key, value) in [("busy_timeout_ms", MAX_OPTION_MILLIS + 1), ("busy_timeout_ms", 1 << 31), ("lease_ms", 2)] {
        let url = format!("sqlite://{}?{key}={value}", kit.dir().join("never.db").display());
        let e = no_panic(&url, || Broker::open(&url)).err().unwrap_or_else(|| panic!("{url} opened"));
        assert_eq!(e.kind(), ErrorKind::InvalidUrl, "{url}: {e}");
    }
    assert!(!kit.dir().join("never.db").exists(), "a refused URL created its file");
}

/// Options set in code rather than in a URL get the same ranges, refused as InvalidArgument
/// before any file is made.
#[test]
fn store_options_set_in_code_are_checked_too() {
    let kit = Kit::sqlite("options-code");
    let path = kit.dir().join("code.db");
    let cases: [fn(&mut SqliteConfig); 3] = [
        |c| c.busy_timeout = Duration::from_millis(MAX_OPTION_MILLIS + 1),
        |c| c.busy_timeout = Duration::MAX,
        |c| c.lease = Duration::from_millis(1),
    ];
    for set in cases {
        let mut sqlite = SqliteConfig::new(path.to_str().unwrap());
        set(&mut sqlite);
        let config = BrokerConfig { backend: Backend::Sqlite(sqlite.clone()), ..Default::default() };
        let e = no_panic("open", || Broker::with_config(&config)).err().expect("refused");
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{sqlite:?}: {e}");
    }
    assert!(!path.exists());
    let mut redis = brokk_core::RedisConfig::new("127.0.0.1", 1);
    redis.timeout = Duration::from_secs(u64::MAX / 2);
    let config = BrokerConfig { backend: Backend::Redis(redis), ..Default::default() };
    let e = no_panic("open", || Broker::with_config(&config)).err().expect("refused");
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
}

/// Durations a call takes, up to the largest: each waits at most as long as it must and
/// never panics (a deadline past the clock's range means "no deadline").
#[test]
fn huge_durations_in_calls_never_panic() {
    for kit in [Kit::memory(), Kit::sqlite("durations")] {
        let config = BrokerConfig { publish_timeout: Some(Duration::MAX), ..Default::default() };
        let b = no_panic("with_config", || kit.with(config));
        let huge = [Duration::from_millis(u64::MAX - 1), Duration::from_secs(u64::MAX), Duration::MAX];
        for (i, &t) in huge.iter().enumerate() {
            let topic = format!("d{i}");
            b.publish(&topic, b"1", &PublishOptions::default()).unwrap();
            let opts = FetchOptions { ack_deadline: Some(t), ..Default::default() };
            let d = no_panic("fetch", || b.fetch_with(&topic, &opts, Some(t))).unwrap().expect("a delivery");
            no_panic("nack", || b.nack(d.id(), true, Some(t), None)).unwrap();
            assert_eq!(b.stats().unwrap().totals.delayed, i as u64 + 1);
            assert_eq!(no_panic("purge", || b.purge(Some(&[topic.as_str()]))).unwrap(), 0, "delayed is not waiting");
            let sub = SubscribeOptions { ack_deadline: Some(t), manual_ack: false, ..Default::default() };
            let id =
                no_panic("subscribe", || b.subscribe(&topic, |_: &brokk_core::Delivery| Verdict::Ack, &sub)).unwrap();
            b.unsubscribe(id).unwrap();
            assert!(no_panic("take", || b.take(&format!("{topic}.none"), None, Some(Duration::ZERO), 1 << 20)).is_ok());
        }
        // What is delayed for ever is dropped by a forced close; join has nothing else to wait for.
        no_panic("close", || b.close(Some(Duration::MAX), true)).unwrap();
    }
}
