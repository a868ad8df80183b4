//! The Lua scripts: each runs the steps of one store operation on one topic atomically, on the
//! node that holds the topic's hash slot. `lua/lib.lua` (key names, shared steps) is prepended
//! to each. `redis::Script` calls EVALSHA and, on NOSCRIPT (a restarted or failed-over server,
//! a `SCRIPT FLUSH`), loads the script and calls it again.

use ::redis::Script;
use once_cell::sync::Lazy;

macro_rules! script {
    ($name:ident, $file:literal) => {
        pub(super) static $name: Lazy<Script> =
            Lazy::new(|| Script::new(concat!(include_str!("lua/lib.lua"), include_str!(concat!("lua/", $file)))));
    };
}

script!(OPEN_GROUP, "open_group.lua");
script!(REMOVE_GROUP, "remove_group.lua");
script!(PUBLISH, "publish.lua");
script!(CLAIM, "claim.lua");
script!(SETTLE, "settle.lua");
script!(REQUEUE, "requeue.lua");
script!(RENEW, "renew.lua");
script!(GROUP_FIGURES, "group_figures.lua");
// Peek of a group not registered shows what it would take over (`retained_order.lua`).
pub(super) static PEEK: Lazy<Script> = Lazy::new(|| {
    Script::new(concat!(include_str!("lua/lib.lua"), include_str!("lua/retained_order.lua"), include_str!("lua/peek.lua")))
});
script!(TOPIC_FIGURES, "topic_figures.lua");
script!(PURGE, "purge.lua");
script!(PURGE_GROUP, "purge_group.lua");
script!(RELEASE_CONSUMERS, "release_consumers.lua");
script!(VIEW, "view.lua");
