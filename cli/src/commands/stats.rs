//! `brokk stats`: what the store holds, topic by topic and group by group (`Broker::store_view`:
//! on SQLite and Redis every process's topics and groups, on memory this run's), as a table,
//! JSON or Prometheus text, once or every few seconds. The JSON and Prometheus text also carry
//! this run's broker statistics (docs/c-api.md, "Statistics"): its counters are this process's
//! own, so on a shared store they say what this run did, nothing more.

use std::sync::mpsc;
use std::time::Duration;

use brokk_core::{Broker, Depth, StoreView, TopicView};
use serde_json::Value;

use crate::args::StatsArgs;
use crate::exit::{Code, Failure, Outcome};
use crate::{say, signals};

pub fn run(broker: &Broker, args: &StatsArgs, json: bool) -> Outcome {
    let Some(seconds) = args.watch else {
        return show(broker, args, json, false);
    };
    if !(seconds.is_finite() && (0.1..=86_400.0).contains(&seconds)) {
        return Err(Failure::invalid(format!("--watch takes 0.1 to 86400 seconds, not {seconds}")));
    }
    let (stop_tx, stop) = mpsc::channel();
    signals::on_stop(move || {
        let _ = stop_tx.send(());
    })?;
    loop {
        show(broker, args, json, true)?;
        match stop.recv_timeout(Duration::from_secs_f64(seconds)) {
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            _ => return Ok(()),
        }
    }
}

/// The store view, less the topics not named when some are (a topic named that the store does
/// not hold is shown empty: looking creates nothing).
fn view(broker: &Broker, topics: &[String]) -> Result<StoreView, Failure> {
    let mut view = broker.store_view()?;
    if !topics.is_empty() {
        view.topics = topics
            .iter()
            .map(|name| {
                view.topic(name).cloned().unwrap_or_else(|| TopicView { name: name.clone(), ..Default::default() })
            })
            .collect();
        view.topics.sort_by(|a, b| a.name.cmp(&b.name));
        view.topics.dedup_by(|a, b| a.name == b.name);
    }
    Ok(view)
}

fn show(broker: &Broker, args: &StatsArgs, json: bool, watching: bool) -> Outcome {
    let view = view(broker, &args.topics)?;
    let stats = broker.stats()?;
    if args.prometheus {
        // Each text ends with a newline of its own; a blank line separates refreshes.
        return say(format!("{}{}", view.to_prometheus(), stats.to_prometheus()).trim_end());
    }
    if json {
        // The stats JSON with the store view added as "store".
        let parse = |text: String| {
            serde_json::from_str::<Value>(&text)
                .map_err(|e| Failure::new(Code::Fatal, format!("brokk wrote JSON it cannot read back: {e}")))
        };
        let mut doc = parse(stats.to_json())?;
        if let Value::Object(members) = &mut doc {
            members.insert("store".to_owned(), parse(view.to_json())?);
        }
        return say(doc.to_string());
    }
    if watching {
        // Clear the screen and go home (ANSI), as `watch` does.
        print!("\x1b[H\x1b[2J");
    }
    say(table(&view))
}

/// One row per topic's named group (a topic with none: one row for the topic), one for its
/// anonymous groups together, then a summary line.
pub fn table(view: &StoreView) -> String {
    let header = ["TOPIC", "GROUP", "READY", "DELAYED", "IN_FLIGHT", "RETAINED"];
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|h| (*h).to_owned()).collect()];
    let row = |topic: &str, group: String, d: Depth, retained: u64| {
        vec![
            topic.to_owned(),
            group,
            d.ready.to_string(),
            d.delayed.to_string(),
            d.in_flight.to_string(),
            retained.to_string(),
        ]
    };
    for t in &view.topics {
        // The retained figure is the topic's: on its first row only.
        let mut retained = Some(t.retained);
        for g in &t.groups {
            rows.push(row(&t.name, g.name.clone(), g.depth, retained.take().unwrap_or(0)));
        }
        if t.anonymous_groups > 0 {
            let name = format!("({} anonymous)", t.anonymous_groups);
            rows.push(row(&t.name, name, t.anonymous, retained.take().unwrap_or(0)));
        }
        if let Some(retained) = retained {
            rows.push(row(&t.name, "-".to_owned(), Depth::default(), retained));
        }
    }
    let widths: Vec<usize> = (0..header.len()).map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in &rows {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, c)| if i < 2 { format!("{c:<w$}", w = widths[i]) } else { format!("{c:>w$}", w = widths[i]) })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    let named: usize = view.topics.iter().map(|t| t.groups.len()).sum();
    let anonymous: u64 = view.topics.iter().map(|t| t.anonymous_groups).sum();
    let waiting: u64 = view.topics.iter().map(TopicView::waiting).sum();
    out.push_str(&format!(
        "{}: {} topics, {named} named groups, {anonymous} anonymous, {waiting} messages waiting",
        view.backend,
        view.topics.len()
    ));
    out
}
