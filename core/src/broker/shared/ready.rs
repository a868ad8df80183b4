//! Readiness waiters (see `broker::ready`): arming one on a group, and forgetting it.

use super::{Shared, CLOSED};
use crate::broker::ready::{Notify, Readiness, ReadyWait};
use crate::broker::DEFAULT_GROUP;
use crate::error::Result;
use crate::names::{validate_group, validate_topic};

impl Shared {
    pub(crate) fn when_ready(&self, topic: &str, group: Option<&str>, notify: Notify) -> Result<ReadyWait> {
        if self.state() == CLOSED {
            return Ok(ReadyWait::Now(Readiness::Closed));
        }
        validate_topic(topic)?;
        let group_name = group.unwrap_or(DEFAULT_GROUP);
        validate_group(group_name)?;
        let topic = self.topic(topic)?;
        let group = self.named_group(&topic, group_name)?;
        // Asked under the waiters' lock: `shutdown` fires every waiter after it deactivates
        // the groups, and a publish fires after it queued; either this sees it, or it sees
        // the waiter.
        let armed = group.ready.arm(notify, || {
            if !group.is_active() || self.state() == CLOSED {
                Some(Readiness::Closed)
            } else if group.queue.len() > 0 {
                Some(Readiness::Ready)
            } else {
                None
            }
        });
        match armed {
            Ok(id) => {
                // The poller looks at the group now: it may hold work that no one watched for
                // (another process's, or a delay that ran out).
                self.poke_poller();
                Ok(ReadyWait::Armed(id))
            }
            Err(now) => Ok(ReadyWait::Now(now)),
        }
    }

    pub(crate) fn forget_ready(&self, topic: &str, group: Option<&str>, waiter: u64) -> Result<bool> {
        validate_topic(topic)?;
        let group_name = group.unwrap_or(DEFAULT_GROUP);
        validate_group(group_name)?;
        let Some(group) = self.topics.get(topic).and_then(|t| t.named_group(group_name)) else {
            return Ok(true);
        };
        let fired = group.ready.forget(waiter);
        if fired && group.is_active() {
            // It may have been told of a delivery that its consumer will not fetch now.
            group.notify_ready(1);
        }
        Ok(fired)
    }

    /// Tells every readiness waiter that the broker closed (after `shutdown`, with no lock
    /// held).
    pub(super) fn close_ready(&self) {
        for t in self.topics.all() {
            for g in t.groups().iter() {
                g.ready.fire_all(Readiness::Closed);
            }
        }
    }
}
