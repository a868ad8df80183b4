//! The statistics in the Prometheus text exposition format, version 0.0.4: what a `/metrics`
//! endpoint serves (`Content-Type: text/plain; version=0.0.4`).
//!
//! Every per-topic figure is one metric family with a `topic` label; broker-wide totals are not
//! repeated under the same names (that would count every message twice in a `sum()`): the
//! totals are `sum by () (brokk_messages_published_total)` and so on. The figures that exist
//! only broker-wide (topics, listeners, workers, uptime) are metrics of their own, unlabelled.
//! Counters end in `_total`; gauges do not. docs/c-api.md ("Prometheus") lists the names.

use std::fmt::Write;

use crate::stats::{BrokerStats, TopicStats};
use crate::view::{Depth, StoreView};

/// Counter or gauge: the `# TYPE` of a family.
#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// One per-topic family: its name, kind, help text and the field of `TopicStats` it shows.
struct TopicMetric {
    name: &'static str,
    kind: Kind,
    help: &'static str,
    value: fn(&TopicStats) -> u64,
}

/// The per-topic families, in the order of docs/c-api.md's statistics table.
const TOPIC_METRICS: &[TopicMetric] = &[
    TopicMetric {
        name: "brokk_messages_published_total",
        kind: Kind::Counter,
        help: "Messages published on the topic.",
        value: |t| t.published,
    },
    TopicMetric {
        name: "brokk_messages_unrouted_total",
        kind: Kind::Counter,
        help: "Messages published while the topic had no consumer group, with retention off.",
        value: |t| t.unrouted,
    },
    TopicMetric {
        name: "brokk_deliveries_dispatched_total",
        kind: Kind::Counter,
        help: "Deliveries handed out (to a handler, a fetch or a take), redeliveries included.",
        value: |t| t.dispatched,
    },
    TopicMetric {
        name: "brokk_deliveries_processed_total",
        kind: Kind::Counter,
        help: "Deliveries acked.",
        value: |t| t.processed,
    },
    TopicMetric {
        name: "brokk_deliveries_failed_total",
        kind: Kind::Counter,
        help: "Deliveries given up: nacked without requeue, past the attempt limit, or the handler panicked.",
        value: |t| t.failed,
    },
    TopicMetric {
        name: "brokk_deliveries_requeued_total",
        kind: Kind::Counter,
        help: "Deliveries requeued: a requeue verdict, a nack with requeue, or an ack deadline that passed.",
        value: |t| t.requeued,
    },
    TopicMetric {
        name: "brokk_deliveries_lapsed_total",
        kind: Kind::Counter,
        help: "Hand-outs that ended with no verdict taking effect.",
        value: |t| t.lapsed,
    },
    TopicMetric {
        name: "brokk_deliveries_dropped_total",
        kind: Kind::Counter,
        help: "Deliveries discarded unprocessed by unsubscribe, purge or close.",
        value: |t| t.dropped,
    },
    TopicMetric {
        name: "brokk_deliveries_expired_total",
        kind: Kind::Counter,
        help: "Ack deadlines that passed, each redelivering or giving up a delivery.",
        value: |t| t.expired,
    },
    TopicMetric {
        name: "brokk_deliveries_dead_lettered_total",
        kind: Kind::Counter,
        help: "Deliveries given up and published to a dead-letter topic (also counted failed).",
        value: |t| t.dead_lettered,
    },
    TopicMetric {
        name: "brokk_deliveries_full_dropped_total",
        kind: Kind::Counter,
        help: "Deliveries not made because the group's queue was full (backpressure drop).",
        value: |t| t.full_dropped,
    },
    TopicMetric {
        name: "brokk_deliveries_queued",
        kind: Kind::Gauge,
        help: "Deliveries waiting for a worker or a fetch.",
        value: |t| t.queued,
    },
    TopicMetric {
        name: "brokk_deliveries_delayed",
        kind: Kind::Gauge,
        help: "Deliveries waiting out a requeue delay.",
        value: |t| t.delayed,
    },
    TopicMetric {
        name: "brokk_deliveries_in_flight",
        kind: Kind::Gauge,
        help: "Deliveries in a handler or awaiting an ack.",
        value: |t| t.in_flight,
    },
    TopicMetric {
        name: "brokk_subscriptions",
        kind: Kind::Gauge,
        help: "Live subscriptions.",
        value: |t| t.subscriptions,
    },
    TopicMetric {
        name: "brokk_groups",
        kind: Kind::Gauge,
        help: "Consumer groups, each ungrouped subscription's own included.",
        value: |t| t.groups,
    },
    TopicMetric {
        name: "brokk_messages_retained",
        kind: Kind::Gauge,
        help: "Messages kept while the topic has no consumer group.",
        value: |t| t.retained,
    },
    TopicMetric {
        name: "brokk_messages_retained_dropped_total",
        kind: Kind::Counter,
        help: "Retained messages discarded by the retention policy, purge or close.",
        value: |t| t.retained_dropped,
    },
];

/// Writes the `# HELP` and `# TYPE` lines of a family.
fn header(out: &mut String, name: &str, kind: Kind, help: &str) {
    // Writing to a String cannot fail.
    let _ = writeln!(out, "# HELP {name} {}", escape_help(help));
    let _ = writeln!(out, "# TYPE {name} {}", kind.name());
}

/// A HELP text as the format wants it: backslash and newline escaped.
fn escape_help(text: &str) -> String {
    text.replace('\\', r"\\").replace('\n', r"\n")
}

/// A label value as the format wants it: backslash, double quote and newline escaped. (Topic
/// names cannot hold any of them today; the escaping keeps the output valid if that changes.)
pub(crate) fn escape_label_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str(r"\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str(r"\n"),
            c => out.push(c),
        }
    }
    out
}

impl BrokerStats {
    /// The statistics in the Prometheus text exposition format 0.0.4: one family per figure,
    /// per-topic ones labelled `topic`, each with its HELP and TYPE lines; the text ends with a
    /// newline. Broker-wide totals of per-topic figures are their sums (not separate series).
    pub fn to_prometheus(&self) -> String {
        let mut out = String::with_capacity(256 + TOPIC_METRICS.len() * (160 + 48 * self.topics.len()));
        for m in TOPIC_METRICS {
            header(&mut out, m.name, m.kind, m.help);
            for t in &self.topics {
                let _ = writeln!(out, "{}{{topic=\"{}\"}} {}", m.name, escape_label_value(&t.name), (m.value)(t));
            }
        }
        let broker: [(&str, Kind, &str, String); 6] = [
            ("brokk_topics", Kind::Gauge, "Topics known to the broker.", self.topics.len().to_string()),
            ("brokk_listeners", Kind::Gauge, "Live listeners.", self.listeners.to_string()),
            ("brokk_workers", Kind::Gauge, "Worker threads in the pool.", self.workers.to_string()),
            (
                "brokk_workers_active",
                Kind::Gauge,
                "Worker threads running a handler now.",
                self.workers_active.to_string(),
            ),
            (
                "brokk_listener_events_dropped_total",
                Kind::Counter,
                "Listener events lost to a full listener queue.",
                self.listener_events_dropped.to_string(),
            ),
            (
                "brokk_uptime_seconds",
                Kind::Gauge,
                "Seconds since the broker was created.",
                format!("{}.{:03}", self.uptime_ms / 1000, self.uptime_ms % 1000),
            ),
        ];
        for (name, kind, help, value) in broker {
            header(&mut out, name, kind, help);
            let _ = writeln!(out, "{name} {value}");
        }
        out
    }
}

/// One per-group family of the store view: its name, help text and the figure of `Depth`.
struct GroupMetric {
    name: &'static str,
    help: &'static str,
    value: fn(&Depth) -> u64,
}

/// The per-group families of the store view, all gauges.
const GROUP_METRICS: &[GroupMetric] = &[
    GroupMetric {
        name: "brokk_store_deliveries_ready",
        help: "Deliveries ready in the group, in the store (every process's).",
        value: |d| d.ready,
    },
    GroupMetric {
        name: "brokk_store_deliveries_delayed",
        help: "Deliveries of the group waiting out a requeue delay, in the store.",
        value: |d| d.delayed,
    },
    GroupMetric {
        name: "brokk_store_deliveries_in_flight",
        help: "Deliveries of the group handed out and not settled (leased, on a shared store).",
        value: |d| d.in_flight,
    },
];

impl StoreView {
    /// The store view in the Prometheus text exposition format 0.0.4, gauges all, named apart
    /// from the statistics' families (`brokk_store_…`) so that both fit in one exposition:
    /// `brokk_store_messages_retained{topic}` and `brokk_store_anonymous_groups{topic}` per
    /// topic, and per named group `brokk_store_deliveries_ready{topic,group}`, `…_delayed` and
    /// `…_in_flight`; a topic's anonymous groups together are the samples with `group=""`
    /// (present only when it has some). The text ends with a newline.
    pub fn to_prometheus(&self) -> String {
        let mut out = String::with_capacity(512 + 160 * self.topics.len());
        let topic_label = |t: &str| format!("topic=\"{}\"", escape_label_value(t));
        header(
            &mut out,
            "brokk_store_messages_retained",
            Kind::Gauge,
            "Messages the topic keeps in the store for want of a consumer group.",
        );
        for t in &self.topics {
            let _ = writeln!(out, "brokk_store_messages_retained{{{}}} {}", topic_label(&t.name), t.retained);
        }
        header(
            &mut out,
            "brokk_store_anonymous_groups",
            Kind::Gauge,
            "Anonymous consumer groups (ungrouped subscriptions, in any process) of the topic in the store.",
        );
        for t in &self.topics {
            let _ = writeln!(out, "brokk_store_anonymous_groups{{{}}} {}", topic_label(&t.name), t.anonymous_groups);
        }
        for m in GROUP_METRICS {
            header(&mut out, m.name, Kind::Gauge, m.help);
            for t in &self.topics {
                let topic = topic_label(&t.name);
                for g in &t.groups {
                    let group = escape_label_value(&g.name);
                    let _ = writeln!(out, "{}{{{topic},group=\"{group}\"}} {}", m.name, (m.value)(&g.depth));
                }
                if t.anonymous_groups > 0 {
                    let _ = writeln!(out, "{}{{{topic},group=\"\"}} {}", m.name, (m.value)(&t.anonymous));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> BrokerStats {
        let mut s =
            BrokerStats { listeners: 2, workers: 4, workers_active: 1, uptime_ms: 12_345, ..Default::default() };
        s.add_topic(TopicStats { name: "orders".into(), published: 7, queued: 3, in_flight: 1, ..Default::default() });
        s.add_topic(TopicStats { name: "invoices".into(), published: 5, dead_lettered: 2, ..Default::default() });
        s
    }

    /// The lines of one family: its samples, without HELP and TYPE.
    fn samples<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
        text.lines().filter(|l| !l.starts_with('#') && l.split(['{', ' ']).next() == Some(name)).collect()
    }

    #[test]
    fn each_family_has_help_and_type_before_its_samples() {
        let text = sample().to_prometheus();
        assert!(text.ends_with('\n'));
        let mut seen = std::collections::HashSet::new();
        let mut current = "";
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                current = rest.split(' ').next().unwrap();
                assert!(seen.insert(current.to_owned()), "{current} appears twice");
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert_eq!(name, current);
                assert!(kind == "counter" || kind == "gauge");
                assert_eq!(kind == "counter", name.ends_with("_total"), "{name} is a {kind}");
            } else {
                assert_eq!(line.split(['{', ' ']).next(), Some(current), "{line} outside its family");
            }
        }
        assert_eq!(seen.len(), TOPIC_METRICS.len() + 6);
    }

    #[test]
    fn per_topic_samples_carry_the_topic_label_and_no_totals_series() {
        let text = sample().to_prometheus();
        assert_eq!(
            samples(&text, "brokk_messages_published_total"),
            [
                "brokk_messages_published_total{topic=\"orders\"} 7",
                "brokk_messages_published_total{topic=\"invoices\"} 5"
            ]
        );
        assert_eq!(samples(&text, "brokk_deliveries_queued")[0], "brokk_deliveries_queued{topic=\"orders\"} 3");
        assert_eq!(
            samples(&text, "brokk_deliveries_dead_lettered_total")[1],
            "brokk_deliveries_dead_lettered_total{topic=\"invoices\"} 2"
        );
        assert_eq!(samples(&text, "brokk_topics"), ["brokk_topics 2"]);
        assert_eq!(samples(&text, "brokk_listeners"), ["brokk_listeners 2"]);
        assert_eq!(samples(&text, "brokk_workers_active"), ["brokk_workers_active 1"]);
        assert_eq!(samples(&text, "brokk_uptime_seconds"), ["brokk_uptime_seconds 12.345"]);
    }

    #[test]
    fn a_broker_with_no_topic_still_names_every_family() {
        let text = BrokerStats::default().to_prometheus();
        assert!(text.contains("# TYPE brokk_messages_published_total counter\n"));
        assert!(samples(&text, "brokk_messages_published_total").is_empty());
        assert_eq!(samples(&text, "brokk_uptime_seconds"), ["brokk_uptime_seconds 0.000"]);
    }

    #[test]
    fn label_values_escape_backslash_quote_and_newline() {
        assert_eq!(escape_label_value("plain.topic-1"), "plain.topic-1");
        assert_eq!(escape_label_value(r#"a\b"c"#), r#"a\\b\"c"#);
        assert_eq!(escape_label_value("line\nnext"), r"line\nnext");
        let mut s = BrokerStats::default();
        s.add_topic(TopicStats { name: "odd\"\\\nname".into(), published: 1, ..Default::default() });
        let text = s.to_prometheus();
        assert!(text.contains("brokk_messages_published_total{topic=\"odd\\\"\\\\\\nname\"} 1\n"), "{text}");
        // The raw newline stayed out: every line is a comment or one sample.
        assert!(text.lines().all(|l| l.starts_with('#') || l.starts_with("brokk_")));
    }

    #[test]
    fn the_store_view_is_gauges_per_topic_and_group_apart_from_the_statistics() {
        use crate::view::{Depth, GroupView, TopicView};
        let mut jobs = TopicView { name: "jobs".into(), ..Default::default() };
        jobs.groups.push(GroupView { name: "w".into(), depth: Depth { ready: 3, delayed: 1, in_flight: 2 } });
        jobs.anonymous_groups = 2;
        jobs.anonymous = Depth { ready: 4, delayed: 0, in_flight: 1 };
        let dlq = TopicView { name: "dlq".into(), retained: 5, ..Default::default() };
        let view = StoreView { backend: "sqlite".into(), topics: vec![dlq, jobs] };
        let text = view.to_prometheus();
        assert!(text.ends_with('\n'));
        assert_eq!(
            samples(&text, "brokk_store_messages_retained"),
            ["brokk_store_messages_retained{topic=\"dlq\"} 5", "brokk_store_messages_retained{topic=\"jobs\"} 0"]
        );
        assert_eq!(samples(&text, "brokk_store_anonymous_groups")[1], "brokk_store_anonymous_groups{topic=\"jobs\"} 2");
        assert_eq!(
            samples(&text, "brokk_store_deliveries_ready"),
            [
                "brokk_store_deliveries_ready{topic=\"jobs\",group=\"w\"} 3",
                "brokk_store_deliveries_ready{topic=\"jobs\",group=\"\"} 4"
            ]
        );
        assert_eq!(
            samples(&text, "brokk_store_deliveries_in_flight")[0],
            "brokk_store_deliveries_in_flight{topic=\"jobs\",group=\"w\"} 2"
        );
        assert_eq!(
            samples(&text, "brokk_store_deliveries_delayed")[0],
            "brokk_store_deliveries_delayed{topic=\"jobs\",group=\"w\"} 1"
        );
        // Every family is a gauge, and none is a name of the statistics'.
        let stats = sample().to_prometheus();
        for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            assert!(line.ends_with(" gauge"), "{line}");
            let name = line.split(' ').nth(2).unwrap();
            assert!(!stats.contains(&format!("# TYPE {name} ")), "{name} is a statistics family too");
        }
    }

    #[test]
    fn help_text_escapes_backslash_and_newline() {
        assert_eq!(escape_help("a\\b\nc \"q\""), "a\\\\b\\nc \"q\"");
    }
}
