//! `brokk peek`: the next messages a fetch of a group would get, without taking them
//! (`Broker::peek`).

use brokk_core::{Broker, MAX_PEEK};

use crate::args::PeekArgs;
use crate::exit::{Failure, Outcome};
use crate::output::{array, message_json, message_line, MESSAGE_HEADER};
use crate::say;

pub fn run(broker: &Broker, args: &PeekArgs, json: bool) -> Outcome {
    if !(1..=MAX_PEEK).contains(&args.count) {
        return Err(Failure::invalid(format!("-n takes 1 to {MAX_PEEK}, not {}", args.count)));
    }
    let peeked = broker.peek(&args.topic, args.group.as_deref(), args.count)?;
    if peeked.is_empty() {
        retained_hint(broker, &args.topic)?;
    }
    if json {
        return say(array(peeked.iter().map(|p| message_json(p.message(), Some(p.attempt())))));
    }
    let mut lines = vec![MESSAGE_HEADER.to_owned()];
    lines.extend(peeked.iter().map(|p| message_line(p.message(), Some(p.attempt()))));
    say(lines.join("\n"))
}

/// When a peek showed nothing but the topic holds messages: they are retained (the topic has no
/// consumer group yet; peek shows a group's queue only), so say so on stderr.
pub fn retained_hint(broker: &Broker, topic: &str) -> Outcome {
    let waiting = broker.count(Some(&[topic]))?;
    if waiting > 0 {
        eprintln!(
            "brokk: {topic} holds {waiting} messages, none in this group: a topic keeps what is published to it \
             until its first consumer group appears (a fetch, or dead-letters --requeue, creates one)"
        );
    }
    Ok(())
}
