//! The broker instance's life in the store: the checks at open, registration and heartbeats,
//! collecting what silent instances left behind, and what close gives back.

use std::collections::HashMap;
use std::sync::Arc;

use ::redis::Value;

use crate::log::log;
use super::conn::{Effect, Pool};
use super::{incompatible, keys, scripts, Held, Local};
use crate::error::{Error, ErrorKind, Result};

const RENEWED: Effect =
    Effect::Changes("the leases may or may not have been renewed: the next heartbeat renews them again");
const REMOVED: Effect =
    Effect::Changes("the group may or may not have been removed: the next heartbeat removes it again if it is left");
const GIVEN_BACK: Effect = Effect::Changes(
    "the delivery may or may not have been given back: if not, it comes back to its group when its \
     lease runs out, with attempt + 1",
);

/// The layout of the keys this build writes; a prefix holding another is refused.
const LAYOUT: i64 = 1;
/// The oldest server this store runs on: exclusive XRANGE bounds (`(id`) and XCLAIM of deleted
/// entries as the scripts expect them came in Redis 6.2.
pub(crate) const MIN_VERSION: (u32, u32) = (6, 2);

/// The server (every node of a cluster) is recent enough. Connecting also checks the
/// credentials and the database.
pub(super) fn check_server(pool: &Pool) -> Result<()> {
    let info = pool.run("read the server's version", |c| ::redis::cmd("INFO").arg("server").query::<Value>(c.as_dyn()));
    let info = info.map_err(|e| {
        // Refused as configured (a command the user may not run, say): not a passing fault.
        match e.kind() {
            ErrorKind::StorageFailed => {
                Error::new(ErrorKind::CannotOpenStore, format!("{}; no broker was made: check the URL", e.message()))
            }
            _ => e,
        }
    })?;
    let mut texts = Vec::new();
    collect_text(info, &mut texts);
    let versions: Vec<&str> =
        texts.iter().flat_map(|t| t.lines()).filter_map(|l| l.trim().strip_prefix("redis_version:")).collect();
    if versions.is_empty() {
        return Err(incompatible(format!("redis {}: the server did not say its version (INFO server)", pool.address)));
    }
    for v in versions {
        if !version_at_least(v, MIN_VERSION) {
            let (major, minor) = MIN_VERSION;
            return Err(incompatible(format!(
                "redis {}: the server runs Redis {v}; brokk needs Redis {major}.{minor} or later",
                pool.address
            )));
        }
    }
    Ok(())
}

/// Every string in a reply (a cluster answers INFO with one per node).
fn collect_text(v: Value, out: &mut Vec<String>) {
    match v {
        Value::BulkString(b) => out.push(String::from_utf8_lossy(&b).into_owned()),
        Value::SimpleString(s) | Value::VerbatimString { text: s, .. } => out.push(s),
        Value::Array(items) | Value::Set(items) => items.into_iter().for_each(|i| collect_text(i, out)),
        Value::Map(pairs) => pairs.into_iter().for_each(|(_, v)| collect_text(v, out)),
        _ => {}
    }
}

fn version_at_least(v: &str, (major, minor): (u32, u32)) -> bool {
    let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (a, b) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (a, b) >= (major, minor)
}

/// The keys under `prefix` are brokk's, in this layout (or there are none yet: mark them).
pub(super) fn check_layout(pool: &Pool, prefix: &str) -> Result<()> {
    let key = keys::version(prefix);
    let found = pool.run("check the key layout", |c| {
        ::redis::cmd("SET").arg(&key).arg(LAYOUT).arg("NX").query::<()>(c.as_dyn())?;
        ::redis::cmd("GET").arg(&key).query::<Option<String>>(c.as_dyn())
    });
    match found {
        Ok(Some(v)) if v.parse::<i64>() == Ok(LAYOUT) => Ok(()),
        Ok(v) => Err(incompatible(format!(
            "redis {}: the keys under prefix {prefix:?} are not a brokk store this build can use ({key} is {v:?}, \
             expected {LAYOUT}); nothing was changed",
            pool.address
        ))),
        Err(e) if e.message().contains("WRONGTYPE") => Err(incompatible(format!(
            "redis {}: {key} is not brokk's (wrong type); use another prefix; nothing was changed",
            pool.address
        ))),
        Err(e) => Err(e),
    }
}

/// The server's clock, in ms since the epoch: brokers on several machines judge each other's
/// silence by it, whatever their own clocks say.
fn server_ms(local: &Local) -> Result<u64> {
    let (secs, micros): (u64, u64) =
        local.pool.run("read the server's clock", |c| ::redis::cmd("TIME").query(c.as_dyn()))?;
    Ok(secs * 1000 + micros / 1000)
}

/// Says this broker instance is alive until three of its leases from now.
pub(super) fn register(local: &Local) -> Result<()> {
    let key = keys::owners(&local.prefix);
    let until = server_ms(local)? + 3 * local.lease.as_millis() as u64;
    local.pool.run("register the broker", |c| {
        ::redis::cmd("ZADD").arg(&key).arg(until).arg(&local.owner.renewed).query::<()>(c.as_dyn())
    })
}

/// What this broker holds (with `renewed_only`, what the heartbeat renews), grouped by (base,
/// group, holder).
fn held_by_group(local: &Local, renewed_only: bool) -> HashMap<(Arc<str>, Arc<str>, bool), Vec<Held>> {
    let mut groups: HashMap<_, Vec<Held>> = HashMap::new();
    for h in local.held.lock().values().filter(|h| !renewed_only || (h.renewed && !h.lapsing)) {
        groups.entry((Arc::clone(&h.base), Arc::clone(&h.group), h.renewed)).or_default().push(h.clone());
    }
    groups
}

/// Renews this broker's renewed leases to one lease from now (one script call per group).
pub(super) fn renew_leases(local: &Local) -> Result<()> {
    let lease = local.lease.as_millis() as u64;
    let mut result = Ok(());
    for ((base, group, _), held) in held_by_group(local, true) {
        let renewed = local.script("renew leases", RENEWED, &scripts::RENEW, &base, |call| {
            call.arg(&*group).arg(&local.owner.renewed).arg(lease);
            for h in &held {
                call.arg(&h.member);
            }
        });
        result = result.and(renewed.map(drop));
    }
    result
}

/// Removes the anonymous groups of broker instances silent for three of their leases.
pub(super) fn collect_silent(local: &Local) -> Result<()> {
    let key = keys::owners(&local.prefix);
    let now = server_ms(local)?;
    let silent: Vec<String> = local.pool.run("find silent brokers", |c| {
        ::redis::cmd("ZRANGEBYSCORE").arg(&key).arg("-inf").arg(now).query(c.as_dyn())
    })?;
    for owner in silent.iter().filter(|o| **o != local.owner.renewed) {
        remove_groups_of(local, owner)?;
        local
            .pool
            .run("forget a silent broker", |c| ::redis::cmd("ZREM").arg(&key).arg(owner).query::<()>(c.as_dyn()))?;
        log!(local.pool.log, Info, "brokk::redis", "redis {}: removed the ungrouped subscriptions' groups of broker {owner}, silent for 3 leases (stopped or crashed)", local.pool.address);
    }
    Ok(())
}

/// Removes every anonymous group of broker instance `owner`, then its list of them.
fn remove_groups_of(local: &Local, owner: &str) -> Result<()> {
    let list = keys::anonymous(&local.prefix, owner);
    let groups: Vec<String> =
        local.pool.run("list anonymous groups", |c| ::redis::cmd("SMEMBERS").arg(&list).query(c.as_dyn()))?;
    for entry in &groups {
        let Some((topic, group)) = entry.split_once(' ') else { continue };
        let base = keys::base(&local.prefix, topic);
        local.script("remove an anonymous group", REMOVED, &scripts::REMOVE_GROUP, &base, |call| {
            call.arg(group);
        })?;
    }
    local.pool.run("forget anonymous groups", |c| ::redis::cmd("DEL").arg(&list).query::<()>(c.as_dyn()))
}

/// Gives back every delivery this broker holds, in place with attempt + 1, so that other
/// brokers get them at once rather than after the lease; then removes this broker's Redis
/// consumers from the streams it read, where they hold nothing any more.
pub(super) fn give_back_all(local: &Local) -> Result<()> {
    let mut result = Ok(());
    let all: Vec<(u64, Held)> = local.held.lock().iter().map(|(id, h)| (*id, h.clone())).collect();
    for (id, h) in all {
        let back = local.script("give back a delivery", GIVEN_BACK, &scripts::REQUEUE, &h.base, |call| {
            call.arg(&*h.group).arg(local.owner.holder(h.renewed)).arg(&h.member).arg(h.attempt).arg("close");
        });
        match back {
            Ok(_) => {
                local.held.lock().remove(&id);
            }
            Err(e) => result = result.and(Err(e)),
        }
    }
    let touched: Vec<_> = local.touched.lock().iter().cloned().collect();
    for (base, group) in touched {
        let released = local.script("release consumers", Effect::Reads, &scripts::RELEASE_CONSUMERS, &base, |call| {
            call.arg(&*group).arg(&local.owner.renewed).arg(&local.owner.deadline);
        });
        result = result.and(released.map(drop));
    }
    result
}

pub(super) fn remove_own_groups(local: &Local) -> Result<()> {
    remove_groups_of(local, &local.owner.renewed)
}

/// Unregisters this broker instance (it is closing).
pub(super) fn forget(local: &Local) -> Result<()> {
    let key = keys::owners(&local.prefix);
    local.pool.run("unregister the broker", |c| {
        ::redis::cmd("ZREM").arg(&key).arg(&local.owner.renewed).query::<()>(c.as_dyn())
    })
}

#[cfg(test)]
mod tests {
    use super::version_at_least;

    #[test]
    fn versions_compare_by_major_then_minor() {
        assert!(version_at_least("7.0.15", (6, 2)));
        assert!(version_at_least("6.2.0", (6, 2)));
        assert!(version_at_least("10.0.1", (6, 2)));
        assert!(!version_at_least("6.0.16", (6, 2)));
        assert!(!version_at_least("5.0.7", (6, 2)));
        assert!(!version_at_least("garbage", (6, 2)));
    }
}
