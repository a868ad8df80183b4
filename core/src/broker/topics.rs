//! The topic registry. Topics are created by the first publish, subscribe or fetch that names
//! them and live as long as the broker. A topic holds this broker's consumer groups of it, and
//! its side in the store (which keeps what it retains while it has no group).

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

use crate::sync::{Mutex, RwLock};

use super::group::Group;
use crate::error::Result;
use crate::stats::TopicCounters;
use crate::store::TopicStore;

pub(crate) struct Topic {
    pub name: Arc<str>,
    pub counters: Arc<TopicCounters>,
    pub store: Arc<dyn TopicStore>,
    /// Copy-on-write list: publishers read it under a brief read lock; group changes replace
    /// it.
    groups: RwLock<Arc<[Arc<Group>]>>,
    /// Held while groups are added or removed, and by a publish that must see the list as it
    /// is in the store (an in-process store's first named group takes over what the topic
    /// retained: no publish may overtake those).
    pub order: Mutex<()>,
}

impl Topic {
    pub(crate) fn groups(&self) -> Arc<[Arc<Group>]> {
        self.groups.read().clone()
    }

    pub(crate) fn named_group(&self, name: &str) -> Option<Arc<Group>> {
        self.groups.read().iter().find(|g| g.name.as_deref() == Some(name)).cloned()
    }

    /// Adds a group; call with `order` locked.
    pub(crate) fn add_group(&self, group: Arc<Group>) {
        let mut list = self.groups.write();
        let mut next: Vec<_> = list.iter().cloned().collect();
        next.push(group);
        *list = next.into();
    }

    pub(crate) fn remove_group(&self, group: &Arc<Group>) {
        let mut list = self.groups.write();
        let next: Vec<_> = list.iter().filter(|g| !Arc::ptr_eq(g, group)).cloned().collect();
        *list = next.into();
    }

    /// Forgets every group, for teardown.
    pub(crate) fn clear_groups(&self) -> Arc<[Arc<Group>]> {
        std::mem::replace(&mut *self.groups.write(), Arc::from(Vec::new()))
    }
}

#[derive(Default)]
pub(crate) struct Topics {
    map: RwLock<HashMap<Arc<str>, Arc<Topic>, BuildNameHasher>>,
}

/// FNV-1a over the name: every publish looks its topic up, and names are short. SipHash's
/// resistance to chosen collisions buys nothing here: topic names come from the embedding
/// program, and a caller who floods it with colliding names only slows down itself.
#[derive(Default, Clone, Copy)]
struct BuildNameHasher;

struct NameHasher(u64);

impl BuildHasher for BuildNameHasher {
    type Hasher = NameHasher;
    fn build_hasher(&self) -> NameHasher {
        NameHasher(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for NameHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

impl Topics {
    /// The topic named `name` (already validated), and whether this call created it; `store`
    /// makes the store's side of a new one (and may be called by two threads at once).
    pub(crate) fn get_or_create(
        &self,
        name: &str,
        store: impl FnOnce(&Arc<str>) -> Result<Arc<dyn TopicStore>>,
    ) -> Result<(Arc<Topic>, bool)> {
        if let Some(t) = self.map.read().get(name) {
            return Ok((Arc::clone(t), false));
        }
        // The store's side is made with no lock held: on a server it is a round trip, which
        // may wait out a timeout, and every publish on every topic reads this map. Two
        // threads may both make it; the first to insert wins and the other's is dropped
        // (making it twice is harmless in every store).
        let name: Arc<str> = Arc::from(name);
        let store = store(&name)?;
        let mut map = self.map.write();
        if let Some(t) = map.get(&*name) {
            return Ok((Arc::clone(t), false));
        }
        let topic = Arc::new(Topic {
            store,
            name: Arc::clone(&name),
            counters: Arc::default(),
            groups: RwLock::new(Arc::from(Vec::new())),
            order: Mutex::new(()),
        });
        map.insert(name, Arc::clone(&topic));
        Ok((topic, true))
    }

    pub(crate) fn get(&self, name: &str) -> Option<Arc<Topic>> {
        self.map.read().get(name).cloned()
    }

    /// Every topic, sorted by name.
    pub(crate) fn all(&self) -> Vec<Arc<Topic>> {
        let mut v: Vec<_> = self.map.read().values().cloned().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Forgets every topic, for teardown.
    pub(crate) fn clear(&self) -> Vec<Arc<Topic>> {
        self.map.write().drain().map(|(_, t)| t).collect()
    }
}
