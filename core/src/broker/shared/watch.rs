//! What the poller does with a shared store (see `store::Store::watch`): renew this broker's
//! leases, and find work that other processes made for this broker's consumers.
//!
//! Every `watch.poll` (5 ms for SQLite) while some local group has a push member, a blocked
//! fetcher or a blocked publisher, it asks the store whether anything changed (`changed`, a
//! cheap version read). On a change, and when poked (someone started waiting: their group may
//! hold a delay that ran out while nobody watched it), it re-reads each such group (`refresh`:
//! its ready count and when its next delayed delivery or lease comes due) and wakes those with
//! work; it also wakes a group when a due time it learnt passes. With no consumer waiting it sleeps until the
//! next heartbeat, or until a subscribe or a waiting fetch pokes it. The queue itself is never
//! polled: a claim runs only when a count or a due time says it will find something.

use std::time::{Duration, Instant};

use super::Shared;
use crate::broker::poller::Woken;
use crate::log::log;

impl Shared {
    pub(super) fn run_poller(&self) {
        let Some(poller) = &self.poller else { return };
        let watch = poller.watch;
        let mut heartbeat_at = Instant::now() + watch.heartbeat;
        let mut next_due: Option<Instant> = None;
        loop {
            let interested = self.anyone_waits();
            let mut until = if interested { Instant::now() + watch.poll } else { heartbeat_at };
            until = until.min(heartbeat_at);
            if let Some(due) = next_due {
                until = until.min(due);
            }
            let woken = poller.sleep_until(until);
            if woken == Woken::Stopped {
                return;
            }
            let now = Instant::now();
            if now >= heartbeat_at {
                // A failure shows at the next one; leases outlast two missed heartbeats.
                if let Err(e) = self.store.heartbeat() {
                    log!(
                        self.log,
                        Warn,
                        "brokk::lease",
                        "heartbeat failed; this broker's leases run out if it keeps failing: {}",
                        e.message()
                    );
                }
                heartbeat_at = now + watch.heartbeat;
            }
            // A failing look counts as a change: look at the groups themselves.
            let changed = self.store.changed().unwrap_or(true);
            if changed || woken == Woken::Poked || next_due.is_some_and(|d| d <= now) {
                next_due = self.look_again(watch.poll);
            } else if interested {
                self.rewake();
            }
        }
    }

    /// Whether some local group has someone waiting for its deliveries.
    fn anyone_waits(&self) -> bool {
        self.topics.all().iter().any(|t| t.groups().iter().any(|g| g.is_active() && g.is_watched()))
    }

    /// Re-reads every watched group from the store and wakes those with work; returns the
    /// earliest due time still ahead (at most `poll` away for one the store does not count
    /// due yet).
    fn look_again(&self, poll: Duration) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        for t in self.topics.all() {
            for g in t.groups().iter().filter(|g| g.is_active() && g.is_watched()) {
                let Ok(due) = g.queue.refresh() else { continue };
                let now = Instant::now();
                let released = match due {
                    Some(d) if d <= now => match g.queue.release_due() {
                        // Due by this clock, not yet by the store's (Redis judges by the
                        // server's): look again at the next poll.
                        0 => {
                            let soon = now + poll;
                            next = Some(next.map_or(soon, |n| n.min(soon)));
                            0
                        }
                        released => released,
                    },
                    Some(d) => {
                        next = Some(next.map_or(d, |n| n.min(d)));
                        0
                    }
                    None => 0,
                };
                g.made_room();
                let queued = g.queue.len().max(released);
                if queued > 0 {
                    self.wake(g, queued, queued);
                }
            }
        }
        next
    }

    /// Wakes watched groups that still have ready deliveries (a claim that failed, say).
    fn rewake(&self) {
        for t in self.topics.all() {
            for g in t.groups().iter().filter(|g| g.is_active() && g.is_watched()) {
                let queued = g.queue.len();
                if queued > 0 {
                    self.wake(g, queued, queued);
                }
            }
        }
    }
}
