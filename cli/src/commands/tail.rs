//! `brokk tail`: follows a topic as a subscriber of its own (no group: it gets a copy of every
//! message published while it runs, taking nothing from anyone else) and prints each message,
//! until SIGINT or SIGTERM, or `-n` messages. Then the subscription ends and the broker closes
//! as after any run.

use std::sync::mpsc;

use brokk_core::{Broker, Delivery, SubscribeOptions, Verdict};

use crate::args::TailArgs;
use crate::exit::Outcome;
use crate::output::{message_json, message_line};
use crate::{say, signals};

enum Event {
    /// A message, already formatted.
    Line(String),
    Stop,
}

pub fn run(broker: &Broker, args: &TailArgs, json: bool) -> Outcome {
    if args.count == Some(0) {
        return Ok(());
    }
    let (tx, events) = mpsc::channel();
    let stop_tx = tx.clone();
    signals::on_stop(move || {
        let _ = stop_tx.send(Event::Stop);
    })?;
    // Concurrency 1: handled, hence printed, in the order delivered. Auto-acked: the copies
    // are this subscription's own.
    let handler = move |d: &Delivery| {
        let line = if json {
            message_json(d.message(), Some(d.attempt()))
        } else {
            message_line(d.message(), Some(d.attempt()))
        };
        let _ = tx.send(Event::Line(line));
        Verdict::Ack
    };
    let subscription = broker.subscribe(&args.topic, handler, &SubscribeOptions::default())?;
    // Scripts and tests wait for this line before publishing.
    eprintln!("brokk: following {} (SIGINT or SIGTERM to stop)", args.topic);
    let mut printed = 0u64;
    let result = loop {
        match events.recv() {
            Ok(Event::Line(line)) => {
                if let Err(e) = say(line) {
                    break Err(e);
                }
                printed += 1;
                if args.count.is_some_and(|n| printed >= n) {
                    break Ok(());
                }
            }
            Ok(Event::Stop) | Err(_) => break Ok(()),
        }
    };
    let unsubscribed = broker.unsubscribe(subscription);
    result?;
    unsubscribed.map_err(Into::into)
}
