//! The commands on a SQLite file that a broker of the test process uses at the same time.

#![cfg(unix)]

mod common;

use common::scenarios;

/// A fresh file for one test (removed with its folder when the guard drops).
struct TempDb(std::path::PathBuf);

impl TempDb {
    fn new(name: &str) -> TempDb {
        let dir = std::env::temp_dir().join(format!("brokk-cli-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDb(dir)
    }

    fn url(&self) -> String {
        format!("sqlite://{}/store.db", self.0.display())
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn publish_count_peek_purge() {
    scenarios::publish_count_peek_purge(&TempDb::new("basics").url());
}

#[test]
fn count_and_purge_one_group() {
    scenarios::count_and_purge_one_group(&TempDb::new("group").url());
}

#[test]
fn stats_show_every_topic_and_group_of_the_store() {
    scenarios::stats_show_every_topic_and_group_of_the_store(&TempDb::new("stats").url());
}

#[test]
fn tail_receives_what_is_published_meanwhile() {
    scenarios::tail_receives_what_is_published_meanwhile(&TempDb::new("tail").url());
}

#[test]
fn tail_stops_cleanly_on_signals() {
    scenarios::tail_stops_cleanly_on_signals(&TempDb::new("signals").url());
}

#[test]
fn dead_letters_requeue_end_to_end() {
    scenarios::dead_letters_requeue_end_to_end(&TempDb::new("dlq").url());
}

/// A store that cannot be opened (its folder is missing): the library's message, exit code 3.
#[test]
fn a_store_that_cannot_be_opened_is_an_invalid_argument() {
    let db = TempDb::new("missing");
    let url = format!("sqlite://{}/no/such/folder/store.db", db.0.display());
    let out = common::brokk(Some(&url), &["count"]);
    common::expect_code(&out, 3);
    assert!(common::stderr(&out).starts_with("brokk: "), "{}", common::stderr(&out));
}
