//! `brokk stats`: the statistics of this run's broker as a table, the stats JSON
//! (docs/c-api.md, "Statistics") or the Prometheus text, once or every few seconds.
//!
//! On a shared store the counters are this process's own (a fresh broker's: zero) and the
//! `queued` and `retained` gauges are the store's, for the topics this broker knows: those named
//! on the command line.

use std::sync::mpsc;
use std::time::Duration;

use brokk_core::{BatchMessage, Broker, BrokerStats, TopicStats};

use crate::args::StatsArgs;
use crate::exit::{Failure, Outcome};
use crate::{say, signals};

pub fn run(broker: &Broker, args: &StatsArgs, json: bool) -> Outcome {
    for topic in &args.topics {
        // An empty batch publishes nothing; it makes the topic known to this broker, so that
        // the snapshot shows it (with the store's gauges on SQLite and Redis).
        broker.publish_batch(topic, &[] as &[BatchMessage<'_>])?;
    }
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

fn show(broker: &Broker, args: &StatsArgs, json: bool, watching: bool) -> Outcome {
    let stats = broker.stats()?;
    if args.prometheus {
        // The text ends with a newline of its own; a blank line separates refreshes.
        return say(stats.to_prometheus().trim_end());
    }
    if json {
        return say(stats.to_json());
    }
    if watching {
        // Clear the screen and go home (ANSI), as `watch` does.
        print!("\x1b[H\x1b[2J");
    }
    say(table(&stats))
}

/// A column of the table: its header and the figure it shows.
type Column = (&'static str, fn(&TopicStats) -> u64);

const COLUMNS: &[Column] = &[
    ("PUBLISHED", |t| t.published),
    ("QUEUED", |t| t.queued),
    ("IN_FLIGHT", |t| t.in_flight),
    ("DELAYED", |t| t.delayed),
    ("RETAINED", |t| t.retained),
    ("PROCESSED", |t| t.processed),
    ("FAILED", |t| t.failed),
    ("REQUEUED", |t| t.requeued),
    ("DEAD_LETTERED", |t| t.dead_lettered),
    ("SUBS", |t| t.subscriptions),
    ("GROUPS", |t| t.groups),
];

/// The table: one row per topic, then the totals, then the broker-wide figures.
pub fn table(stats: &BrokerStats) -> String {
    let mut rows: Vec<Vec<String>> = Vec::new();
    rows.push(std::iter::once("TOPIC".to_owned()).chain(COLUMNS.iter().map(|(h, _)| (*h).to_owned())).collect());
    let mut topics: Vec<&TopicStats> = stats.topics.iter().collect();
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    for t in topics.into_iter().chain(std::iter::once(&stats.totals)) {
        let name = if t.name.is_empty() { "(total)".to_owned() } else { t.name.clone() };
        rows.push(std::iter::once(name).chain(COLUMNS.iter().map(|(_, f)| f(t).to_string())).collect());
    }
    let widths: Vec<usize> = (0..rows[0].len()).map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in &rows {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, c)| if i == 0 { format!("{c:<w$}", w = widths[i]) } else { format!("{c:>w$}", w = widths[i]) })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out.push_str(&format!(
        "topics {}  listeners {}  workers {} ({} active)  uptime {}",
        stats.topics.len(),
        stats.listeners,
        stats.workers,
        stats.workers_active,
        crate::output::age(stats.uptime_ms)
    ));
    out
}
