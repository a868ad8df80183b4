//! `brokk count` and `brokk purge`: messages waiting on topics (retained ones plus queued ones,
//! one per group), counted or discarded. The core counts and purges whole topics; per-group
//! figures are `peek`'s.

use brokk_core::Broker;

use crate::args::PurgeArgs;
use crate::exit::{Failure, Outcome};
use crate::output::Object;
use crate::{say, topic_refs};

pub fn count(broker: &Broker, topics: &[String], json: bool) -> Outcome {
    report(broker, topics, json, "count", |b, t| b.count(t))
}

pub fn purge(broker: &Broker, args: &PurgeArgs, json: bool) -> Outcome {
    if args.topics.is_empty() && !args.all {
        return Err(Failure::usage("purge needs the topics to purge, or --all for every topic of the store"));
    }
    report(broker, &args.topics, json, "purged", |b, t| b.purge(t))
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
