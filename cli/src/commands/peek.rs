//! `brokk peek`: the next messages a fetch of a group would get, without taking them
//! (`Broker::peek`).

use brokk_core::{Broker, DEFAULT_GROUP, MAX_PEEK};

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
        elsewhere_hint(broker, &args.topic, args.group.as_deref())?;
    }
    if json {
        return say(array(peeked.iter().map(|p| message_json(p.message(), Some(p.attempt())))));
    }
    let mut lines = vec![MESSAGE_HEADER.to_owned()];
    lines.extend(peeked.iter().map(|p| message_line(p.message(), Some(p.attempt()))));
    say(lines.join("\n"))
}

/// When a peek showed nothing but the topic holds messages: they wait in its other groups (a
/// group that does not exist yet would get only what is published after it is made; what a
/// topic retains before its first group is shown by peek), so say where on stderr.
pub fn elsewhere_hint(broker: &Broker, topic: &str, group: Option<&str>) -> Outcome {
    let view = broker.store_view()?;
    let Some(t) = view.topic(topic) else { return Ok(()) };
    let mut holders: Vec<String> =
        t.groups.iter().filter(|g| g.depth.ready > 0).map(|g| format!("{} ({})", g.name, g.depth.ready)).collect();
    if t.anonymous.ready > 0 {
        holders.push(format!("{} anonymous groups ({})", t.anonymous_groups, t.anonymous.ready));
    }
    if !holders.is_empty() {
        let group = group.unwrap_or(DEFAULT_GROUP);
        let known = t.groups.iter().any(|g| g.name == group);
        let note = if known { "" } else { "; a new group gets only what is published after it is made" };
        eprintln!("brokk: nothing for group {group} of {topic}; ready in: {}{note}", holders.join(", "));
    }
    Ok(())
}
