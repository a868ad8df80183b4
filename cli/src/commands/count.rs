//! `brokk count` and `brokk purge`: messages waiting on topics (retained ones plus queued ones,
//! one per group), counted or discarded; with --group, the ready deliveries of one consumer
//! group of one topic (`Broker::count_group` / `purge_group`).

use brokk_core::Broker;

use crate::args::{CountArgs, PurgeArgs};
use crate::exit::{Failure, Outcome};
use crate::output::Object;
use crate::{say, topic_refs};

pub fn count(broker: &Broker, args: &CountArgs, json: bool) -> Outcome {
    if let Some(group) = &args.group {
        return report_group(broker, &args.topics, group, json, "count", |b, t, g| b.count_group(t, g));
    }
    report(broker, &args.topics, json, "count", |b, t| b.count(t))
}

pub fn purge(broker: &Broker, args: &PurgeArgs, json: bool) -> Outcome {
    if let Some(group) = &args.group {
        return report_group(broker, &args.topics, group, json, "purged", |b, t, g| b.purge_group(t, g));
    }
    if args.topics.is_empty() && !args.all {
        return Err(Failure::usage("purge needs the topics to purge, or --all for every topic of the store"));
    }
    report(broker, &args.topics, json, "purged", |b, t| b.purge(t))
}

/// Runs `op` on one group of the one topic named: the number, or with --json
/// `{"<what>": n, "topic": ..., "group": ...}`.
fn report_group(
    broker: &Broker,
    topics: &[String],
    group: &str,
    json: bool,
    what: &str,
    op: impl Fn(&Broker, &str, &str) -> brokk_core::Result<u64>,
) -> Outcome {
    let [topic] = topics else {
        return Err(Failure::usage(format!("--group takes exactly one topic ({} named)", topics.len())));
    };
    let n = op(broker, topic, group)?;
    if json {
        return say(Object::default().value(what, n).value("topic", topic.as_str()).value("group", group).finish());
    }
    say(n.to_string())
}

/// Runs `op` on each topic named (one line or JSON member each, then the total), or on every
/// topic at once when none is named.
fn report(
    broker: &Broker,
    topics: &[String],
    json: bool,
    what: &str,
    op: impl Fn(&Broker, Option<&[&str]>) -> brokk_core::Result<u64>,
) -> Outcome {
    if topics.is_empty() {
        let n = op(broker, None)?;
        return say(if json { Object::default().value(what, n).finish() } else { n.to_string() });
    }
    // All names checked before anything is purged: a bad one changes nothing.
    for t in topics {
        brokk_core::validate_topic(t)?;
    }
    let mut per_topic = Object::default();
    let mut lines = Vec::new();
    let mut total = 0;
    for t in topic_refs(topics) {
        let n = op(broker, Some(&[t]))?;
        total += n;
        per_topic = per_topic.value(t, n);
        lines.push(format!("{t}\t{n}"));
    }
    if json {
        return say(Object::default().value(what, total).raw("topics", per_topic.finish()).finish());
    }
    if topics.len() == 1 {
        return say(total.to_string());
    }
    lines.push(format!("(total)\t{total}"));
    say(lines.join("\n"))
}
