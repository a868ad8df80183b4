//! The commands against a shared store (SQLite file, Redis prefix) that a broker of the test
//! process uses at the same time. Each scenario takes a URL no other test uses.

use std::time::Duration;

use brokk_core::{Broker, FetchOptions, PublishOptions};
use serde_json::Value;

use super::{brokk, brokk_with_stdin, expect_code, ok, ok_json, stderr, stdout, Running, PATIENCE};

/// Makes the default group of `topic` exist, as a consumer's first fetch does, so that what is
/// published waits in it (a topic with no group retains its messages instead).
fn make_default_group(b: &Broker, topic: &str) {
    assert!(b.fetch(topic, None, Some(Duration::ZERO)).unwrap().is_none());
}

/// publish (argument, stdin, options), count, peek (order, fields, text and JSON), purge, with
/// the test's broker fetching in between.
pub fn publish_count_peek_purge(url: &str) {
    let b = Broker::open(url).unwrap();
    make_default_group(&b, "jobs");
    assert_eq!(ok(url, &["publish", "jobs", r#"{"n":0}"#]).lines().count(), 1);
    let doc = ok_json(
        url,
        &["publish", "jobs", r#"{"n": 1.50}"#, "--priority", "5", "--id", "urgent", "--metadata", r#"{"k":"v"}"#],
    );
    assert_eq!(doc["published"], 1);
    assert_eq!(doc["ids"][0], "urgent");
    let out = brokk_with_stdin(Some(url), &["publish", "jobs", "--batch", "2"], "{\"n\":2}\n\n[3]\n\"four\"\n");
    expect_code(&out, 0);
    assert_eq!(stdout(&out).lines().count(), 3);
    assert_eq!(ok(url, &["count", "jobs"]).trim(), "5");
    assert_eq!(
        ok_json(url, &["count", "jobs", "other"]),
        serde_json::json!({"count": 5, "topics": {"jobs": 5, "other": 0}})
    );

    let peeked = ok_json(url, &["peek", "jobs", "-n", "3"]);
    let peeked = peeked.as_array().unwrap();
    assert_eq!(peeked.len(), 3);
    assert_eq!(peeked[0]["id"], "urgent");
    assert_eq!(peeked[0]["priority"], 5);
    assert_eq!(peeked[0]["attempt"], 1);
    assert_eq!(peeked[0]["metadata"], serde_json::json!({"k": "v"}));
    assert_eq!(peeked[1]["payload"], serde_json::json!({"n": 0}));
    assert_eq!(peeked[2]["payload"], serde_json::json!({"n": 2}));
    assert!(peeked[0]["age_ms"].is_u64() && peeked[0]["timestamp_ms"].is_u64());
    let text = ok(url, &["peek", "jobs", "-n", "1"]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "ID\tPRIORITY\tATTEMPT\tAGE\tPAYLOAD");
    assert!(lines[1].starts_with("urgent\t5\t1\t") && lines[1].ends_with(r#"{"n": 1.50}"#), "{text}");

    // Another group would get only later messages: nothing shown, and stderr says where they are.
    let out = brokk(Some(url), &["peek", "jobs", "--group", "latecomers"]);
    expect_code(&out, 0);
    assert_eq!(stdout(&out).lines().count(), 1, "the header only");
    assert!(stderr(&out).contains("nothing for group latecomers of jobs; ready in: default (5)"), "{}", stderr(&out));
    assert!(b.store_view().unwrap().topic("jobs").unwrap().groups.len() == 1, "peek made no group");

    // Peek took nothing: the test's broker fetches the first, and the CLI sees the rest.
    let d = b.fetch("jobs", None, Some(PATIENCE)).unwrap().unwrap();
    assert_eq!(d.message().id(), "urgent");
    assert_eq!(ok(url, &["count", "jobs"]).trim(), "4");
    assert_eq!(ok_json(url, &["peek", "jobs"]).as_array().unwrap().len(), 4);
    assert_eq!(ok_json(url, &["purge", "jobs"]), serde_json::json!({"purged": 4, "topics": {"jobs": 4}}));
    assert_eq!(ok(url, &["count", "jobs"]).trim(), "0");
    // The fetched one was in flight: untouched by the purge.
    b.ack(d.id()).unwrap();
    b.close(Some(PATIENCE), false).unwrap();
}

/// count and purge with --group: one group of one topic, while the test's broker holds a
/// delivery of it; the other group and the retained messages of another topic stay.
pub fn count_and_purge_one_group(url: &str) {
    let b = Broker::open(url).unwrap();
    for g in ["a", "b"] {
        assert!(b.fetch("work", Some(g), Some(Duration::ZERO)).unwrap().is_none());
    }
    b.publish("held", b"0", &PublishOptions::default()).unwrap();
    for i in 0..3 {
        b.publish("work", i.to_string().as_bytes(), &PublishOptions::default()).unwrap();
    }
    let d = b.fetch("work", Some("a"), Some(PATIENCE)).unwrap().unwrap();
    assert_eq!(ok(url, &["count", "work", "--group", "a"]).trim(), "2");
    assert_eq!(
        ok_json(url, &["count", "work", "-g", "b"]),
        serde_json::json!({"count": 3, "topic": "work", "group": "b"})
    );
    assert_eq!(ok(url, &["count", "work", "--group", "nobody"]).trim(), "0");
    assert_eq!(
        ok_json(url, &["purge", "work", "--group", "a"]),
        serde_json::json!({"purged": 2, "topic": "work", "group": "a"})
    );
    assert_eq!(ok(url, &["count", "work", "--group", "a"]).trim(), "0");
    assert_eq!(ok(url, &["count", "work", "held"]).lines().last().unwrap(), "(total)\t4", "b's 3 and held's 1");
    assert_eq!(ok(url, &["purge", "work", "--group", "nobody"]).trim(), "0");
    assert!(b.store_view().unwrap().topic("work").unwrap().groups.len() == 2, "no group was made");

    // --group takes one topic, and not --all; bad names are refused.
    for args in [&["count", "--group", "a"][..], &["purge", "work", "held", "--group", "a"]] {
        expect_code(&brokk(Some(url), args), 2);
    }
    expect_code(&brokk(Some(url), &["purge", "--all", "--group", "a"]), 2);
    let out = brokk(Some(url), &["purge", "work", "--group", "bad group"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr(&out).contains("group"), "{}", stderr(&out));

    // The delivery held through the purge settles as usual.
    b.ack(d.id()).unwrap();
    assert_eq!(ok(url, &["count", "work", "--group", "b"]).trim(), "3");
    b.close(Some(Duration::ZERO), true).unwrap();
}

/// stats: every topic and group of the store, with its depth (what another process made), as a
/// table, JSON and Prometheus text; topics named narrow it down; nothing is made.
pub fn stats_show_every_topic_and_group_of_the_store(url: &str) {
    let b = Broker::open(url).unwrap();
    make_default_group(&b, "metered");
    for i in 0..3 {
        b.publish("metered", format!("{i}").as_bytes(), &PublishOptions::default()).unwrap();
    }
    let held = b.fetch("metered", None, Some(PATIENCE)).unwrap().unwrap();
    for i in 0..2 {
        b.publish("parked", format!("{i}").as_bytes(), &PublishOptions::default()).unwrap();
    }
    let doc = ok_json(url, &["stats"]);
    let store = &doc["store"];
    assert!(store["backend"] == "sqlite" || store["backend"] == "redis", "{doc}");
    assert_eq!(
        store["topics"]["metered"]["groups"]["default"],
        serde_json::json!({"ready": 2, "delayed": 0, "in_flight": 1}),
        "{doc}"
    );
    assert_eq!(store["topics"]["parked"]["retained"], 2, "{doc}");
    assert_eq!(store["topics"]["parked"]["groups"], serde_json::json!({}), "{doc}");
    let table = ok(url, &["stats"]);
    let row = |name: &str| -> Vec<String> {
        let line = table.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name}: {table}"));
        line.split_whitespace().map(str::to_owned).collect()
    };
    assert_eq!(row("metered"), ["metered", "default", "2", "0", "1", "0"], "{table}");
    assert_eq!(row("parked"), ["parked", "-", "0", "0", "0", "2"], "{table}");
    assert!(
        table.lines().last().unwrap().contains("2 topics, 1 named groups, 0 anonymous, 4 messages waiting"),
        "{table}"
    );
    let prom = ok(url, &["stats", "--prometheus", "metered"]);
    assert!(prom.contains("# TYPE brokk_store_deliveries_ready gauge\n"), "{prom}");
    assert!(prom.contains("\nbrokk_store_deliveries_ready{topic=\"metered\",group=\"default\"} 2\n"), "{prom}");
    assert!(prom.contains("\nbrokk_store_deliveries_in_flight{topic=\"metered\",group=\"default\"} 1\n"), "{prom}");
    assert!(!prom.contains("parked"), "only the topic named: {prom}");
    // The broker's own statistics still follow (this run's: it published nothing).
    assert!(prom.contains("# TYPE brokk_messages_published_total counter\n"), "{prom}");
    // A topic named that the store does not hold is shown empty, and not made.
    let doc = ok_json(url, &["stats", "nosuch"]);
    assert_eq!(doc["store"]["topics"]["nosuch"]["retained"], 0, "{doc}");
    let view = b.store_view().unwrap();
    assert!(view.topic("nosuch").is_none(), "{view:?}");
    assert_eq!(view.topics.len(), 2);
    b.ack(held.id()).unwrap();
    // Not a graceful close: that would wait for the two messages in its group.
    drop(b);
}

/// tail: started, then messages published by the test's broker arrive in order as JSON lines;
/// `-n` ends it with 0.
pub fn tail_receives_what_is_published_meanwhile(url: &str) {
    let b = Broker::open(url).unwrap();
    let tail = Running::start(url, &["--json", "tail", "news", "-n", "3"], "following news");
    for i in 0..3 {
        b.publish("news", format!(r#"{{"i":{i}}}"#).as_bytes(), &PublishOptions { priority: 0, ..Default::default() })
            .unwrap();
    }
    for i in 0..3 {
        let line = tail.line();
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert_eq!(v["payload"], serde_json::json!({"i": i}));
        assert_eq!(v["topic"], "news");
        assert_eq!(v["attempt"], 1);
    }
    assert_eq!(tail.exit_code(), Some(0));
    b.close(Some(PATIENCE), false).unwrap();
}

/// tail ends cleanly on SIGTERM and on SIGINT: exit code 0.
pub fn tail_stops_cleanly_on_signals(url: &str) {
    let b = Broker::open(url).unwrap();
    for signal in [libc::SIGTERM, libc::SIGINT] {
        let tail = Running::start(url, &["tail", "bulletins"], "following bulletins");
        b.publish("bulletins", b"\"hello\"", &PublishOptions::default()).unwrap();
        let line = tail.line();
        assert!(line.ends_with("\t\"hello\""), "{line}");
        super::kill(tail.child.id(), signal);
        assert_eq!(tail.exit_code(), Some(0), "after signal {signal}");
    }
    b.close(Some(PATIENCE), false).unwrap();
}

/// A message nacked without requeue into a dead-letter topic is listed, requeued by its id, and
/// fetched again from its original topic; an id not there is exit code 4.
pub fn dead_letters_requeue_end_to_end(url: &str) {
    let b = Broker::open(url).unwrap();
    // The dead-letter topic has no group: it retains what is dead-lettered, and the listing
    // shows that (what its first group would take over) without making one.
    let work = FetchOptions { group: Some("workers"), dead_letter_topic: Some("dlq"), ..Default::default() };
    assert!(b.fetch_with("work", &work, Some(Duration::ZERO)).unwrap().is_none());
    for (id, n) in [("w1", 1), ("w2", 2)] {
        let meta = format!(r#"{{"n":{n}}}"#);
        b.publish(
            "work",
            br#"{"job":true}"#,
            &PublishOptions { id: Some(id), metadata: Some(meta.as_bytes()), priority: n },
        )
        .unwrap();
    }
    for _ in 0..2 {
        let d = b.fetch_with("work", &work, Some(PATIENCE)).unwrap().unwrap();
        b.nack(d.id(), false, None, None).unwrap();
    }
    assert_eq!(b.count(Some(&["work"])).unwrap(), 0);

    let listed = ok_json(url, &["dead-letters", "dlq"]);
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(listed[0]["original_topic"], "work");
    assert_eq!(listed[0]["original_id"], "w2"); // priority 2 first
    assert_eq!(listed[0]["original_group"], "workers");
    assert_eq!(listed[0]["attempts"], 1);
    assert!(listed[0]["reason"].as_str().unwrap().contains("nacked"));
    let text = ok(url, &["dead-letters", "dlq"]);
    assert!(text.lines().next().unwrap().ends_with("ORIGINAL_TOPIC\tORIGINAL_ID\tATTEMPTS\tREASON"), "{text}");
    assert_eq!(text.lines().count(), 3);
    let view = b.store_view().unwrap();
    let dlq = view.topic("dlq").unwrap();
    assert_eq!((dlq.retained, dlq.groups.len()), (2, 0), "listing made no group: {view:?}");

    // By original id; the other stays.
    let out = ok(url, &["dead-letters", "dlq", "--requeue", "w1"]);
    assert!(out.starts_with("requeued ") && out.contains(" to work as w1"), "{out}");
    let d = b.fetch_with("work", &work, Some(PATIENCE)).unwrap().unwrap();
    assert_eq!(d.message().id(), "w1");
    assert_eq!(d.payload(), br#"{"job":true}"#);
    assert_eq!(d.priority(), 1);
    assert_eq!(serde_json::from_slice::<Value>(d.metadata()).unwrap(), serde_json::json!({"n": 1}));
    b.ack(d.id()).unwrap();
    let left = ok_json(url, &["dead-letters", "dlq"]);
    assert_eq!(left.as_array().unwrap().len(), 1);
    assert_eq!(left[0]["original_id"], "w2");

    // A name not there: exit 4, nothing changed.
    let out = brokk(Some(url), &["dead-letters", "dlq", "--requeue", "nosuch"]);
    expect_code(&out, 4);
    assert!(stderr(&out).starts_with("brokk: not waiting in dlq: nosuch"), "{}", stderr(&out));
    assert_eq!(ok_json(url, &["dead-letters", "dlq"]).as_array().unwrap().len(), 1);

    // --requeue-all, by dead-letter id in the JSON report.
    let doc = ok_json(url, &["dead-letters", "dlq", "--requeue-all"]);
    assert_eq!(doc["requeued"][0]["original_id"], "w2");
    assert_eq!(doc["requeued"][0]["topic"], "work");
    assert_eq!(doc["not_found"], serde_json::json!([]));
    assert_eq!(b.count(Some(&["dlq"])).unwrap(), 0);
    let d = b.fetch_with("work", &work, Some(PATIENCE)).unwrap().unwrap();
    assert_eq!(d.message().id(), "w2");
    b.ack(d.id()).unwrap();
    b.close(Some(PATIENCE), false).unwrap();
}
