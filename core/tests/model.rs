//! Property test: random sequences of publish, fetch, peek, ack, nack, requeue, purge and count on
//! a broker, checked step by step against a simple model of what the broker must do (pull
//! consumers only, so that everything is deterministic). The same property runs on memory, on
//! SQLite (a new file per case) and on Redis (a new key prefix per case).

mod common;

use std::collections::HashMap;
use std::time::Duration;

use brokk_core::{BrokerConfig, Delivery, PublishOptions};
use common::Kit;
use proptest::prelude::*;

const TOPICS: [&str; 2] = ["a", "b"];
const GROUPS: [&str; 2] = ["g1", "g2"];

#[derive(Debug, Clone)]
enum Op {
    Publish { topic: usize, priority: i32 },
    Fetch { topic: usize, group: usize },
    Peek { topic: usize, group: usize, max: usize },
    Ack(usize),
    Nack { which: usize, requeue: bool },
    Purge(usize),
    Count(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..2usize, -2..3i32).prop_map(|(topic, priority)| Op::Publish { topic, priority }),
        4 => (0..2usize, 0..2usize).prop_map(|(topic, group)| Op::Fetch { topic, group }),
        2 => (0..2usize, 0..2usize, 1..6usize).prop_map(|(topic, group, max)| Op::Peek { topic, group, max }),
        2 => any::<usize>().prop_map(Op::Ack),
        2 => (any::<usize>(), any::<bool>()).prop_map(|(which, requeue)| Op::Nack { which, requeue }),
        1 => (0..2usize).prop_map(Op::Purge),
        1 => (0..2usize).prop_map(Op::Count),
    ]
}

/// One waiting delivery in the model: (priority, order of entry, message number, attempt).
type Entry = (i32, u64, u64, u32);

#[derive(Default)]
struct Model {
    retained: HashMap<usize, Vec<(i32, u64)>>,
    /// (topic, group) -> queue
    groups: HashMap<(usize, usize), Vec<Entry>>,
    /// in flight: (topic, group, priority, message number, attempt, delivery id)
    in_flight: Vec<(usize, usize, i32, u64, u32, u64)>,
    order: u64,
    published: u64,
    processed: u64,
    failed: u64,
    requeued: u64,
}

impl Model {
    fn next_order(&mut self) -> u64 {
        self.order += 1;
        self.order
    }

    fn publish(&mut self, topic: usize, priority: i32, n: u64) {
        self.published += 1;
        let groups: Vec<_> = self.groups.keys().filter(|(t, _)| *t == topic).cloned().collect();
        if groups.is_empty() {
            self.retained.entry(topic).or_default().push((priority, n));
        }
        for g in groups {
            let o = self.next_order();
            self.groups.get_mut(&g).unwrap().push((priority, o, n, 1));
        }
    }

    fn group(&mut self, topic: usize, group: usize) -> &mut Vec<Entry> {
        if !self.groups.contains_key(&(topic, group)) {
            let retained = self.retained.remove(&topic).unwrap_or_default();
            let mut q = Vec::new();
            for (p, n) in retained {
                let o = self.next_order();
                q.push((p, o, n, 1));
            }
            self.groups.insert((topic, group), q);
        }
        self.groups.get_mut(&(topic, group)).unwrap()
    }

    /// Highest priority first, then earliest entry.
    fn fetch(&mut self, topic: usize, group: usize) -> Option<Entry> {
        let q = self.group(topic, group);
        let best = (0..q.len()).max_by(|&i, &j| q[i].0.cmp(&q[j].0).then(q[j].1.cmp(&q[i].1)))?;
        Some(q.remove(best))
    }

    /// The next `max` that `fetch` would take, as (message number, attempt), without making the
    /// group: a group not yet made shows what it would take over, the topic's retained messages
    /// (none once the topic has another group).
    fn peek(&self, topic: usize, group: usize, max: usize) -> Vec<(u64, u32)> {
        let retained = || {
            let r = self.retained.get(&topic).map_or(&[][..], |r| r.as_slice());
            r.iter().zip(0u64..).map(|(&(p, n), o)| (p, o, n, 1)).collect()
        };
        let mut q: Vec<Entry> = self.groups.get(&(topic, group)).cloned().unwrap_or_else(retained);
        q.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        q.iter().take(max).map(|&(_, _, n, attempt)| (n, attempt)).collect()
    }

    fn count(&self, topic: usize) -> u64 {
        let retained = self.retained.get(&topic).map_or(0, |r| r.len());
        let queued: usize = self.groups.iter().filter(|((t, _), _)| *t == topic).map(|(_, q)| q.len()).sum();
        (retained + queued) as u64
    }
}

fn number(d: &Delivery) -> u64 {
    std::str::from_utf8(d.payload()).unwrap().parse().unwrap()
}

fn run(kit: &Kit, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let broker = kit.with(BrokerConfig { worker_threads: 2, ..Default::default() });
    let mut model = Model::default();
    let mut next = 0u64;
    for op in ops {
        match op {
            Op::Publish { topic, priority } => {
                next += 1;
                let opts = PublishOptions { priority, ..Default::default() };
                broker.publish(TOPICS[topic], next.to_string().as_bytes(), &opts).unwrap();
                model.publish(topic, priority, next);
            }
            Op::Fetch { topic, group } => {
                let got = broker.fetch(TOPICS[topic], Some(GROUPS[group]), Some(Duration::ZERO)).unwrap();
                let want = model.fetch(topic, group);
                match (got, want) {
                    (None, None) => {}
                    (Some(d), Some((p, _, n, attempt))) => {
                        prop_assert_eq!((number(&d), d.attempt(), d.priority()), (n, attempt, p));
                        model.in_flight.push((topic, group, p, n, attempt, d.id()));
                    }
                    (got, want) => {
                        return Err(TestCaseError::fail(format!(
                            "fetch got {:?}, model wants {want:?}",
                            got.map(|d| number(&d))
                        )))
                    }
                }
            }
            Op::Peek { topic, group, max } => {
                let shown = broker.peek(TOPICS[topic], Some(GROUPS[group]), max).unwrap();
                let got: Vec<(u64, u32)> = shown
                    .iter()
                    .map(|p| (std::str::from_utf8(p.message().payload()).unwrap().parse().unwrap(), p.attempt()))
                    .collect();
                prop_assert_eq!(got, model.peek(topic, group, max));
            }
            Op::Ack(i) if !model.in_flight.is_empty() => {
                let (.., id) = model.in_flight.remove(i % model.in_flight.len());
                broker.ack(id).unwrap();
                model.processed += 1;
                prop_assert!(broker.ack(id).is_err(), "a second ack must fail");
            }
            Op::Nack { which, requeue } if !model.in_flight.is_empty() => {
                let (t, g, p, n, attempt, id) = model.in_flight.remove(which % model.in_flight.len());
                broker.nack(id, requeue, None, None).unwrap();
                if requeue {
                    model.requeued += 1;
                    let o = model.next_order();
                    model.groups.get_mut(&(t, g)).unwrap().push((p, o, n, attempt + 1));
                } else {
                    model.failed += 1;
                }
            }
            Op::Ack(_) | Op::Nack { .. } => {}
            Op::Purge(topic) => {
                let n = broker.purge(Some(&[TOPICS[topic]])).unwrap();
                prop_assert_eq!(n, model.count(topic));
                model.retained.remove(&topic);
                for ((t, _), q) in model.groups.iter_mut() {
                    if *t == topic {
                        q.clear();
                    }
                }
            }
            Op::Count(topic) => {
                prop_assert_eq!(broker.count(Some(&[TOPICS[topic]])).unwrap(), model.count(topic));
            }
        }
    }
    let t = broker.stats().unwrap().totals;
    prop_assert_eq!(t.published, model.published);
    prop_assert_eq!(t.processed, model.processed);
    prop_assert_eq!(t.failed, model.failed);
    prop_assert_eq!(t.requeued, model.requeued);
    prop_assert_eq!(t.in_flight, model.in_flight.len() as u64);
    prop_assert_eq!(t.queued + t.retained, model.count(0) + model.count(1));
    prop_assert_eq!(t.dispatched, t.processed + t.failed + t.requeued + t.in_flight);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]
    #[test]
    fn the_broker_behaves_like_its_model(ops in proptest::collection::vec(op(), 1..80)) {
        run(&Kit::memory(), ops)?;
    }
}

#[cfg(feature = "sqlite")]
proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]
    #[test]
    fn the_sqlite_broker_behaves_like_its_model(ops in proptest::collection::vec(op(), 1..80)) {
        // One folder per case (removed with the kit), so that no case sees another's file.
        run(&Kit::sqlite("model"), ops)?;
    }
}

#[cfg(feature = "redis")]
proptest! {
    #![proptest_config(ProptestConfig { cases: 100, ..ProptestConfig::default() })]
    #[test]
    fn the_redis_broker_behaves_like_its_model(ops in proptest::collection::vec(op(), 1..80)) {
        // One key prefix per case, so that no case sees another's keys.
        run(&Kit::redis("model"), ops)?;
    }
}
