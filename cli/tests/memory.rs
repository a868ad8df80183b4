//! What makes sense in one process on memory://: the command line itself (usage, URL, exit
//! codes, --help), and publishing.

mod common;

use common::{brokk, brokk_with_stdin, expect_code, ok, ok_json, stderr, stdout, Running};

const MEM: &str = "memory://";

#[test]
fn help_lists_the_commands_and_exit_codes() {
    let out = brokk(None, &["--help"]);
    expect_code(&out, 0);
    let text = stdout(&out);
    for word in ["stats", "count", "purge", "peek", "publish", "tail", "dead-letters", "Exit codes:", "BROKK_URL"] {
        assert!(text.contains(word), "{word} not in {text}");
    }
}

#[test]
fn no_url_is_a_usage_error_saying_how_to_give_one() {
    let out = brokk(None, &["count"]);
    expect_code(&out, 2);
    assert!(stderr(&out).starts_with("brokk: no backend URL: pass --url or set BROKK_URL"), "{}", stderr(&out));
}

#[test]
fn url_from_the_option_or_the_environment() {
    assert_eq!(ok(MEM, &["count"]).trim(), "0");
    let out = brokk(None, &["--url", MEM, "count"]);
    expect_code(&out, 0);
    // The option wins over the environment.
    let out = brokk(Some("nope://"), &["count", "--url", MEM]);
    expect_code(&out, 0);
}

#[test]
fn a_bad_url_is_an_invalid_argument() {
    for url in ["nope://", "sqlite://", "memory://?no_such_option=1"] {
        let out = brokk(Some(url), &["count"]);
        expect_code(&out, 3);
        assert!(stderr(&out).starts_with("brokk: "), "{url}: {}", stderr(&out));
        assert_eq!(stderr(&out).lines().count(), 1);
    }
}

#[test]
fn usage_errors_exit_2_with_the_brokk_prefix() {
    for args in [
        &["bogus"][..],
        &["publish"],
        &["tail"],
        &["purge"],
        &["stats", "--json", "--prometheus"],
        &["count", "--no-such-flag"],
    ] {
        let out = brokk(Some(MEM), args);
        expect_code(&out, 2);
        assert!(stderr(&out).starts_with("brokk: "), "{args:?}: {}", stderr(&out));
    }
    // --id names one message: not with stdin.
    let out = brokk_with_stdin(Some(MEM), &["publish", "t", "--id", "x"], "1\n2\n");
    expect_code(&out, 2);
}

#[test]
fn library_refusals_exit_3_with_its_message() {
    let cases: [(&[&str], &str); 5] = [
        (&["publish", "bad topic", "1"], "topic"),
        (&["publish", "t", "{not json"], "JSON"),
        (&["publish", "t", "1", "--metadata", "[1]"], "metadata"),
        (&["publish", "t", "1", "--id", "has space"], "id"),
        (&["peek", "t", "-n", "0"], "-n"),
    ];
    for (args, word) in cases {
        let out = brokk(Some(MEM), args);
        expect_code(&out, 3);
        let err = stderr(&out);
        assert!(err.starts_with("brokk: ") && err.to_lowercase().contains(&word.to_lowercase()), "{args:?}: {err}");
    }
}

#[test]
fn publish_prints_the_ids_and_json() {
    let out = ok(MEM, &["publish", "t", r#"{"a":1}"#, "--id", "my-id", "--priority", "-3"]);
    assert_eq!(out, "my-id\n");
    let doc = ok_json(MEM, &["publish", "t", "1"]);
    assert_eq!(doc["topic"], "t");
    assert_eq!(doc["published"], 1);
    assert_eq!(doc["ids"].as_array().unwrap().len(), 1);
}

#[test]
fn publish_from_stdin_names_the_bad_line() {
    let out = brokk_with_stdin(Some(MEM), &["publish", "t", "--batch", "1"], "1\n2\nnope\n4\n");
    expect_code(&out, 3);
    assert_eq!(stdout(&out), "");
    assert!(stderr(&out).contains("stdin line 3 is not a JSON document"), "{}", stderr(&out));
    assert!(stderr(&out).contains("2 messages before it were published"), "{}", stderr(&out));
}

#[test]
fn stats_json_and_prometheus_of_a_fresh_broker() {
    // A fresh memory store holds no topic; topics named are shown empty, and not made.
    let doc = ok_json(MEM, &["stats", "a", "b"]);
    assert_eq!(doc["store"]["backend"], "memory");
    assert_eq!(
        doc["store"]["topics"]["a"],
        serde_json::json!({
            "retained": 0, "groups": {}, "anonymous_groups": 0,
            "anonymous": {"ready": 0, "delayed": 0, "in_flight": 0}
        })
    );
    assert_eq!(doc["broker"]["topics"], 0);
    assert_eq!(doc["totals"]["published"], 0);
    let prom = ok(MEM, &["stats", "--prometheus"]);
    assert!(prom.contains("# TYPE brokk_messages_published_total counter\n"), "{prom}");
    assert!(prom.contains("# TYPE brokk_store_deliveries_ready gauge\n"), "{prom}");
    let table = ok(MEM, &["stats", "a"]);
    assert!(table.starts_with("TOPIC  GROUP  READY") && table.contains("\na      -  "), "{table}");
    assert!(table.ends_with("memory: 1 topics, 0 named groups, 0 anonymous, 0 messages waiting\n"), "{table}");
}

#[test]
fn stats_watch_refreshes_until_sigterm() {
    let watch = Running::start(MEM, &["--json", "stats", "--watch", "0.1", "w"], "");
    for _ in 0..2 {
        let doc: serde_json::Value = serde_json::from_str(&watch.line()).unwrap();
        assert_eq!(doc["store"]["topics"]["w"]["retained"], 0);
    }
    common::kill(watch.child.id(), libc::SIGTERM);
    assert_eq!(watch.exit_code(), Some(0));
}

#[test]
fn requeueing_a_dead_letter_that_is_not_there_is_not_found() {
    let out = brokk(Some(MEM), &["dead-letters", "dlq", "--requeue", "x"]);
    expect_code(&out, 4);
    assert_eq!(stderr(&out), "brokk: not waiting in dlq: x\n");
    assert_eq!(ok_json(MEM, &["dead-letters", "dlq"]), serde_json::json!([]));
    assert_eq!(ok_json(MEM, &["count", "t"]), serde_json::json!({"count": 0, "topics": {"t": 0}}));
    assert_eq!(ok_json(MEM, &["purge", "--all"]), serde_json::json!({"purged": 0}));
}
