//! `brokk dead-letters`: what a dead-letter topic holds, and requeueing it.
//!
//! A dead-lettered message carries a "dead_letter" object in its metadata (the core's
//! `settle.rs`): the original topic, group and message id, the attempts made and the reason.
//! Listing peeks at the dead-letter topic's group without taking anything; a dead-letter topic
//! that no one consumes yet has no group, and then its peek shows what it retains, which the
//! first group (a requeue's fetch makes it) takes over. Requeueing takes the
//! messages from that group and, for each one chosen, publishes its payload (with its priority,
//! its original id and its metadata minus "dead_letter") to its original topic, and only then
//! acks it: if the process dies between the two, the dead letter is not acked, comes back to
//! the group (with attempt + 1) once its lease ends, and a second requeue publishes it again,
//! under the same original id, so that consumers that drop duplicates by id see it once.
//! Messages taken but not chosen are nacked with requeue: they stay, at the back of their
//! priority, with attempt + 1.

use std::collections::BTreeSet;
use std::time::Duration;

use brokk_core::{Broker, Delivery, FetchOptions, Message, PublishOptions, MAX_PEEK};
use serde_json::Value;

use crate::args::DeadLettersArgs;
use crate::exit::{Code, Failure, Outcome};
use crate::output::{array, message_json, message_line, Object, MESSAGE_HEADER};
use crate::say;

/// Where a dead letter came from: its "dead_letter" metadata object.
struct Origin {
    topic: String,
    message_id: String,
    group: Option<String>,
    attempts: u64,
    reason: String,
    /// The metadata without "dead_letter": what the message had when first published.
    metadata: String,
}

fn origin(m: &Message) -> Option<Origin> {
    let Ok(Value::Object(mut meta)) = serde_json::from_slice::<Value>(m.metadata()) else { return None };
    let record = meta.remove("dead_letter")?;
    Some(Origin {
        topic: record.get("topic")?.as_str()?.to_owned(),
        message_id: record.get("message_id")?.as_str()?.to_owned(),
        group: record.get("group").and_then(Value::as_str).map(str::to_owned),
        attempts: record.get("attempts").and_then(Value::as_u64).unwrap_or(0),
        reason: record.get("reason").and_then(Value::as_str).unwrap_or("").to_owned(),
        metadata: Value::Object(meta).to_string(),
    })
}

pub fn run(broker: &Broker, args: &DeadLettersArgs, json: bool) -> Outcome {
    if !args.requeue.is_empty() || args.requeue_all {
        return requeue(broker, args, json);
    }
    if !(1..=MAX_PEEK).contains(&args.count) {
        return Err(Failure::invalid(format!("-n takes 1 to {MAX_PEEK}, not {}", args.count)));
    }
    let peeked = broker.peek(&args.topic, args.group.as_deref(), args.count)?;
    if peeked.is_empty() {
        super::peek::elsewhere_hint(broker, &args.topic, args.group.as_deref())?;
    }
    if json {
        return say(array(peeked.iter().map(|p| {
            let m = p.message();
            let o = origin(m);
            Object::default()
                .raw("message", message_json(m, Some(p.attempt())))
                .value("original_topic", o.as_ref().map(|o| o.topic.clone()))
                .value("original_id", o.as_ref().map(|o| o.message_id.clone()))
                .value("original_group", o.as_ref().and_then(|o| o.group.clone()))
                .value("attempts", o.as_ref().map(|o| o.attempts))
                .value("reason", o.as_ref().map(|o| o.reason.clone()))
                .finish()
        })));
    }
    let mut lines = vec![format!("{MESSAGE_HEADER}\tORIGINAL_TOPIC\tORIGINAL_ID\tATTEMPTS\tREASON")];
    for p in &peeked {
        let m = p.message();
        let o = origin(m);
        lines.push(format!(
            "{}\t{}\t{}\t{}\t{}",
            message_line(m, Some(p.attempt())),
            o.as_ref().map_or("-", |o| o.topic.as_str()),
            o.as_ref().map_or("-", |o| o.message_id.as_str()),
            o.as_ref().map_or_else(|| "-".to_owned(), |o| o.attempts.to_string()),
            o.as_ref().map_or("-", |o| o.reason.as_str()),
        ));
    }
    say(lines.join("\n"))
}

/// What one requeue run did, per dead letter.
#[derive(Default)]
struct Report {
    requeued: Vec<(String, String, String)>, // dead-letter id, original topic, original id
    skipped: Vec<String>,                    // chosen, but with no "dead_letter" record
}

fn requeue(broker: &Broker, args: &DeadLettersArgs, json: bool) -> Outcome {
    let mut wanted: BTreeSet<&str> = args.requeue.iter().map(String::as_str).collect();
    let options = FetchOptions { group: args.group.as_deref(), ..Default::default() };
    // What waits now, in one take (no wait); the rest is given back below.
    let waiting = broker.count(Some(&[args.topic.as_str()]))?.clamp(1, MAX_PEEK as u64) as usize;
    let taken = broker.fetch_batch(&args.topic, &options, waiting, Some(Duration::ZERO))?;
    let mut report = Report::default();
    let mut failure: Option<Failure> = None;
    for d in &taken {
        let m = d.message();
        let chosen = args.requeue_all
            || wanted.contains(m.id())
            || origin(m).is_some_and(|o| wanted.contains(o.message_id.as_str()));
        if !chosen || failure.is_some() {
            give_back(broker, d);
            continue;
        }
        wanted.remove(m.id());
        let Some(o) = origin(m) else {
            report.skipped.push(m.id().to_owned());
            give_back(broker, d);
            continue;
        };
        wanted.remove(o.message_id.as_str());
        let republish =
            PublishOptions { id: Some(&o.message_id), metadata: Some(o.metadata.as_bytes()), priority: m.priority() };
        // Publish first, then ack: a crash in between leaves the dead letter to requeue again,
        // never a message lost (see the module's comment).
        if let Err(e) = broker.publish(&o.topic, m.payload(), &republish) {
            failure = Some(Failure::from(e).prefixed(&format!("cannot requeue {} to {}", m.id(), o.topic)));
            give_back(broker, d);
            continue;
        }
        if let Err(e) = broker.ack(d.id()) {
            failure = Some(Failure::from(e).prefixed(&format!(
                "requeued {} to {} but could not remove it from {}",
                m.id(),
                o.topic,
                args.topic
            )));
            continue;
        }
        report.requeued.push((m.id().to_owned(), o.topic, o.message_id));
    }
    if json {
        say(Object::default()
            .raw(
                "requeued",
                array(report.requeued.iter().map(|(id, topic, original)| {
                    Object::default()
                        .value("id", id.as_str())
                        .value("topic", topic.as_str())
                        .value("original_id", original.as_str())
                        .finish()
                })),
            )
            .value("skipped", report.skipped.clone())
            .value("not_found", wanted.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .finish())?;
    } else {
        for (id, topic, original) in &report.requeued {
            say(format!("requeued {id} to {topic} as {original}"))?;
        }
    }
    if let Some(f) = failure {
        return Err(f);
    }
    if !report.skipped.is_empty() {
        return Err(Failure::invalid(format!(
            "not dead letters (no \"dead_letter\" metadata), left in {}: {}",
            args.topic,
            report.skipped.join(", ")
        )));
    }
    if !wanted.is_empty() {
        let names: Vec<&str> = wanted.into_iter().collect();
        return Err(Failure::new(Code::NotFound, format!("not waiting in {}: {}", args.topic, names.join(", "))));
    }
    Ok(())
}

/// Puts a taken dead letter back (nack with requeue; best effort: if even that fails, its lease
/// ends and the store gives it back by itself).
fn give_back(broker: &Broker, d: &Delivery) {
    let _ = broker.nack(d.id(), true, None, None);
}
