//! The store view on Redis: the prefix's topic registry (`{prefix}:topics`, one SMEMBERS), then
//! one read-only script per topic (`view.lua`) on the topic's node, which reads its group
//! registry and each group's counters at one moment. The keyspace is never scanned.

use super::conn::Effect;
use super::{keys, reply, scripts, Local};
use crate::error::Result;
use crate::view::{Depth, TopicView};

/// See `Store::view`: `topics` are (base, name), by name.
pub(super) fn view(local: &Local, topics: Vec<(String, String)>) -> Result<Vec<TopicView>> {
    topics.into_iter().map(|(base, name)| topic_view(local, &base, name)).collect()
}

fn topic_view(local: &Local, base: &str, name: String) -> Result<TopicView> {
    let what = "read the store view";
    let r = reply::array(local.script(what, Effect::Reads, &scripts::VIEW, base, |_| {})?, what)?;
    let mut values = r.into_iter();
    let retained = reply::int(&values.next().ok_or_else(|| reply::malformed(what))?, what)?.max(0) as u64;
    let mut view = TopicView { name, retained, ..Default::default() };
    let rest: Vec<_> = values.collect();
    if rest.len() % 5 != 0 {
        return Err(reply::malformed(what));
    }
    for group in rest.chunks(5) {
        let count = |i: usize| reply::int(&group[i], what).map(|n| n.max(0) as u64);
        let depth = Depth { ready: count(2)?, delayed: count(3)?, in_flight: count(4)? };
        let id = reply::text(group[0].clone(), what)?;
        let owner = reply::text(group[1].clone(), what)?;
        let name = if owner.is_empty() {
            // A named group's id is `keys::named_group(name)`.
            let name = id.strip_prefix(keys::named_group("").as_str()).ok_or_else(|| reply::malformed(what))?;
            Some(name.to_owned())
        } else {
            None
        };
        view.add_group(name, depth);
    }
    view.sort_groups();
    Ok(view)
}
