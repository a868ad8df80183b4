//! The store view: every topic a store holds, with what waits in it, read from the store rather
//! than counted by this broker. On SQLite and Redis that is what every process sharing the file
//! or the prefix left there (`Broker::stats` counts only this broker's work); on memory it is
//! this broker's own topics. `docs/semantics.md` ("Store view") says what each figure means on
//! each backend.

use serde_json::{json, Map, Value};

/// Deliveries of one consumer group (or of several: a topic's anonymous groups together), by
/// state. Each delivery is in exactly one state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Depth {
    /// Ready: waiting for a fetch or a push worker, what a claim takes next (delays and, on
    /// SQLite and Redis, leases that ran out count here only once a claim of the group moved
    /// them back).
    pub ready: u64,
    /// Requeued with a delay and not yet back among the ready ones (a delay that ran out is
    /// counted here until the release or the next claim moves it).
    pub delayed: u64,
    /// Handed out (to a handler, a fetch or a push worker's batch) and not settled. On SQLite
    /// and Redis: leased to some process, a lease that ran out included until a claim takes it
    /// back.
    pub in_flight: u64,
}

impl Depth {
    fn add(&mut self, other: Depth) {
        self.ready += other.ready;
        self.delayed += other.delayed;
        self.in_flight += other.in_flight;
    }

    fn json(&self) -> Value {
        json!({"ready": self.ready, "delayed": self.delayed, "in_flight": self.in_flight})
    }
}

/// A named consumer group of a topic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupView {
    pub name: String,
    pub depth: Depth,
}

/// One topic of the store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicView {
    pub name: String,
    /// Messages the topic keeps for want of any group (see "Retention"): the first named
    /// group takes them over. Non-zero only while it has no named group.
    pub retained: u64,
    /// Its named groups, by name.
    pub groups: Vec<GroupView>,
    /// Its anonymous groups (one per ungrouped subscription, in any process).
    pub anonymous_groups: u64,
    /// The deliveries of its anonymous groups, summed.
    pub anonymous: Depth,
}

impl TopicView {
    /// What waits in the topic: retained messages plus the ready deliveries of every group
    /// (what `Broker::count` counts for it).
    pub fn waiting(&self) -> u64 {
        self.retained + self.groups.iter().map(|g| g.depth.ready).sum::<u64>() + self.anonymous.ready
    }

    /// Adds a group as a store reads it: named (`Some`), or one more anonymous one.
    pub(crate) fn add_group(&mut self, name: Option<String>, depth: Depth) {
        match name {
            Some(name) => self.groups.push(GroupView { name, depth }),
            None => {
                self.anonymous_groups += 1;
                self.anonymous.add(depth);
            }
        }
    }

    /// Puts the named groups in order of name, once a store has added them all.
    pub(crate) fn sort_groups(&mut self) {
        self.groups.sort_by(|a, b| a.name.cmp(&b.name));
    }

    /// Its groups' deliveries by state, named and anonymous together.
    pub fn depth(&self) -> Depth {
        let mut d = self.anonymous;
        for g in &self.groups {
            d.add(g.depth);
        }
        d
    }
}

/// Every topic a store holds, by name, read without changing anything: no topic or group is
/// created, nothing is claimed. Each topic is read at one moment (one read transaction on
/// SQLite, one script on Redis); different topics may be read at moments a few milliseconds
/// apart.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreView {
    /// The backend's name: "memory", "sqlite" or "redis".
    pub backend: String,
    pub topics: Vec<TopicView>,
}

impl StoreView {
    /// The topic named `name`, if the store holds it.
    pub fn topic(&self, name: &str) -> Option<&TopicView> {
        self.topics.iter().find(|t| t.name == name)
    }

    /// The JSON document docs/c-api.md ("Store view") documents:
    /// `{"backend", "topics": {NAME: {"retained", "groups": {GROUP: {"ready", "delayed",
    /// "in_flight"}}, "anonymous_groups", "anonymous": {...}}}}`.
    pub fn to_json(&self) -> String {
        let topics: Map<String, Value> = self
            .topics
            .iter()
            .map(|t| {
                let groups: Map<String, Value> = t.groups.iter().map(|g| (g.name.clone(), g.depth.json())).collect();
                let topic = json!({
                    "retained": t.retained,
                    "groups": groups,
                    "anonymous_groups": t.anonymous_groups,
                    "anonymous": t.anonymous.json(),
                });
                (t.name.clone(), topic)
            })
            .collect();
        json!({"backend": self.backend, "topics": topics}).to_string()
    }
}
