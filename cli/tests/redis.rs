//! The commands on a Redis prefix that a broker of the test process uses at the same time, on a
//! redis-server of this test binary (core/tests/common/redis_server.rs, shared with the core's
//! tests: started on first use, killed when the process exits).

mod common;

#[allow(dead_code)] // the core's tests use more of it
#[path = "../../core/tests/common/redis_server.rs"]
mod redis_server;

use common::scenarios;

/// The shared server under a prefix no other test uses.
fn url(name: &str) -> String {
    format!("{}?prefix=cli{}.{name}", redis_server::shared().url(), std::process::id())
}

#[test]
fn publish_count_peek_purge() {
    scenarios::publish_count_peek_purge(&url("basics"));
}

#[test]
fn count_and_purge_one_group() {
    scenarios::count_and_purge_one_group(&url("group"));
}

#[test]
fn stats_show_every_topic_and_group_of_the_store() {
    scenarios::stats_show_every_topic_and_group_of_the_store(&url("stats"));
}

#[test]
fn tail_receives_what_is_published_meanwhile() {
    scenarios::tail_receives_what_is_published_meanwhile(&url("tail"));
}

#[test]
fn tail_stops_cleanly_on_signals() {
    scenarios::tail_stops_cleanly_on_signals(&url("signals"));
}

#[test]
fn dead_letters_requeue_end_to_end() {
    scenarios::dead_letters_requeue_end_to_end(&url("dlq"));
}
