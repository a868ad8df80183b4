//! The topic registry. Topics are created by the first publish or subscribe that names them and
//! live as long as the broker.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;

use super::subscription::Subscription;
use crate::stats::TopicCounters;

pub(crate) struct Topic {
    pub name: Arc<str>,
    pub counters: Arc<TopicCounters>,
    /// Copy-on-write list: publishers read it under a brief read lock; subscribe and
    /// unsubscribe replace it.
    pub subscriptions: RwLock<Arc<[Arc<Subscription>]>>,
}

#[derive(Default)]
pub(crate) struct Topics {
    map: RwLock<HashMap<Arc<str>, Arc<Topic>>>,
}

impl Topics {
    /// The topic named `name` (already validated), and whether this call created it.
    pub(crate) fn get_or_create(&self, name: &str) -> (Arc<Topic>, bool) {
        if let Some(t) = self.map.read().get(name) {
            return (Arc::clone(t), false);
        }
        let mut map = self.map.write();
        if let Some(t) = map.get(name) {
            return (Arc::clone(t), false);
        }
        let name: Arc<str> = Arc::from(name);
        let topic = Arc::new(Topic {
            name: Arc::clone(&name),
            counters: Arc::default(),
            subscriptions: RwLock::new(Arc::from(Vec::new())),
        });
        map.insert(name, Arc::clone(&topic));
        (topic, true)
    }

    pub(crate) fn get(&self, name: &str) -> Option<Arc<Topic>> {
        self.map.read().get(name).cloned()
    }

    pub(crate) fn all(&self) -> Vec<Arc<Topic>> {
        let mut v: Vec<_> = self.map.read().values().cloned().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Forgets every topic (and so every subscription the topics hold), for teardown.
    pub(crate) fn clear(&self) -> Vec<Arc<Topic>> {
        self.map.write().drain().map(|(_, t)| t).collect()
    }
}

impl Topic {
    pub(crate) fn add_subscription(&self, sub: Arc<Subscription>) {
        let mut list = self.subscriptions.write();
        let mut next: Vec<_> = list.iter().cloned().collect();
        next.push(sub);
        *list = next.into();
    }

    pub(crate) fn remove_subscription(&self, id: u64) {
        let mut list = self.subscriptions.write();
        let next: Vec<_> = list.iter().filter(|s| s.id != id).cloned().collect();
        *list = next.into();
    }
}
