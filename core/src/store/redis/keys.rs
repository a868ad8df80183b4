//! Key names. A topic's keys share the hash tag `{<prefix>:<topic>}` (its "base"), so that one
//! script can touch all of them on a Redis Cluster and different topics spread over the nodes.
//! Neither prefixes nor topic names can contain `{` or `}` (both are validated to letters,
//! digits and `_.-`), so the tag is always the whole base. Keys that belong to no topic (the
//! layout version, the topic list, the broker instances) share the tag `{<prefix>}`; no script
//! touches them, so they may live on any node. The key of each part of a topic is documented
//! in `lua/lib.lua`, where the scripts name them.

/// `{prefix:topic}`: the hash tag and start of every key of `topic`.
pub(super) fn base(prefix: &str, topic: &str) -> String {
    format!("{{{prefix}:{topic}}}")
}

/// The topic's group registry (hash: group -> owning broker instance, or "" for a named group):
/// the key every script of the topic is routed by.
pub(super) fn groups(base: &str) -> String {
    format!("{base}:groups")
}

/// The topic's write counter, which `Store::changed` polls.
pub(super) fn generation(base: &str) -> String {
    format!("{base}:gen")
}

/// The layout version of the keys under `prefix` (string).
pub(super) fn version(prefix: &str) -> String {
    format!("{{{prefix}}}:version")
}

/// Every topic ever opened under `prefix` (set), for count and purge of all topics.
pub(super) fn topics(prefix: &str) -> String {
    format!("{{{prefix}}}:topics")
}

/// Broker instances (zset: instance -> when it counts as gone, ms since the epoch).
pub(super) fn owners(prefix: &str) -> String {
    format!("{{{prefix}}}:owners")
}

/// The anonymous groups of broker instance `owner` (set of "<topic> <group>").
pub(super) fn anonymous(prefix: &str, owner: &str) -> String {
    format!("{{{prefix}}}:anon:{owner}")
}

/// The group id of a named group, or of an anonymous one of `owner`.
pub(super) fn named_group(name: &str) -> String {
    format!("n:{name}")
}

pub(super) fn anonymous_group(owner: &str, n: u64) -> String {
    format!("a:{owner}:{n}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_topic_s_keys_share_one_hash_tag() {
        let base = super::base("brokk", "orders.eu-1");
        assert_eq!(base, "{brokk:orders.eu-1}");
        assert_eq!(super::groups(&base), "{brokk:orders.eu-1}:groups");
        assert_eq!(super::generation(&base), "{brokk:orders.eu-1}:gen");
        assert_eq!(super::owners("p"), "{p}:owners");
    }
}
