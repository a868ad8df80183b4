//! `brokk publish`: one message from the command line, or one JSON payload per line of stdin,
//! published in batches (each batch all or nothing; the batches before a failure stay
//! published, and the error says how many lines were).

use std::io::BufRead;

use brokk_core::{BatchMessage, Broker, Message, PublishOptions};

use crate::args::PublishArgs;
use crate::exit::{Failure, Outcome};
use crate::output::{array, Object};
use crate::say;

pub fn run(broker: &Broker, args: &PublishArgs, json: bool) -> Outcome {
    let options = PublishOptions {
        id: args.id.as_deref(),
        metadata: args.metadata.as_deref().map(str::as_bytes),
        priority: args.priority,
    };
    let ids: Vec<String> = match &args.payload {
        Some(payload) => vec![broker.publish(&args.topic, payload.as_bytes(), &options)?.id().to_owned()],
        None => {
            if args.id.is_some() {
                return Err(Failure::usage("--id names one message: give its PAYLOAD as an argument"));
            }
            from_stdin(broker, args, &options)?
        }
    };
    if json {
        let list = array(ids.iter().map(|id| serde_json::Value::from(id.as_str()).to_string()));
        return say(Object::default()
            .value("topic", args.topic.as_str())
            .value("published", ids.len())
            .raw("ids", list)
            .finish());
    }
    say(ids.join("\n"))
}

/// Publishes stdin, one payload per non-blank line, `args.batch` lines at a time.
fn from_stdin(broker: &Broker, args: &PublishArgs, options: &PublishOptions<'_>) -> Outcome<Vec<String>> {
    let mut ids = Vec::new();
    let mut batch: Vec<String> = Vec::new();
    let mut first_line = 1; // the line number of batch[0]
    let flush = |batch: &mut Vec<String>, first_line: usize, ids: &mut Vec<String>| -> Outcome {
        if batch.is_empty() {
            return Ok(());
        }
        let messages: Vec<BatchMessage<'_>> =
            batch.iter().map(|p| BatchMessage { payload: p.as_bytes(), options: *options }).collect();
        let published: Vec<Message> = broker.publish_batch(&args.topic, &messages).map_err(|e| {
            Failure::from(e).prefixed(&format!(
                "the batch from line {first_line} was not published ({} messages before it were)",
                ids.len()
            ))
        })?;
        ids.extend(published.iter().map(|m| m.id().to_owned()));
        batch.clear();
        Ok(())
    };
    let mut line_no = 0;
    for line in std::io::stdin().lock().lines() {
        line_no += 1;
        let line = line.map_err(|e| Failure::invalid(format!("cannot read stdin line {line_no}: {e}")))?;
        let payload = line.trim();
        if payload.is_empty() {
            continue;
        }
        // Checked here too, so that the error names the line rather than a batch index.
        if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(payload) {
            flush(&mut batch, first_line, &mut ids)?;
            return Err(Failure::new(
                crate::exit::Code::InvalidArgument,
                format!(
                    "stdin line {line_no} is not a JSON document ({e}); {} messages before it were published",
                    ids.len()
                ),
            ));
        }
        if batch.is_empty() {
            first_line = line_no;
        }
        batch.push(payload.to_owned());
        if batch.len() >= args.batch as usize {
            flush(&mut batch, first_line, &mut ids)?;
        }
    }
    flush(&mut batch, first_line, &mut ids)?;
    Ok(ids)
}
