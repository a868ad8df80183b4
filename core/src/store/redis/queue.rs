//! One consumer group of the Redis store, as this broker sees it: claims hand entries of the
//! group's streams to this broker's holder, settles delete them, requeues put them back; `len`
//! is the ready count last seen, kept current by this broker's own writes and by the poller's
//! `refresh`, with the same rule as the SQLite queue (`sqlite::seam::queue`): a count read from
//! Redis is stored plus the additions this broker made since the read started, so that it
//! never misses one of them.

use std::any::Any;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ::redis::Value;

use super::conn::Effect;
use super::{partly_done, reply, scripts, Held, Local};
use crate::error::{ErrorKind, Result};
use crate::message::{Delivery, Message};
use crate::store::shared::ReadyCount;
use crate::store::{GroupQueue, Lease, Requeue, Requeued, Take};

pub(crate) struct RedisQueue {
    local: Arc<Local>,
    topic: Arc<str>,
    base: Arc<str>,
    index: u64,
    /// The group's id in the topic's registry: `n:<name>` or `a:<owner>:<n>`.
    pub(super) group: Arc<str>,
    pub(super) name: Option<Arc<str>>,
    ready: ReadyCount,
}

/// What a claim whose answer was lost did. Not `Unavailable`, which promises that nothing was
/// done: the deliveries it leased are invisible until the lease runs out and then come back
/// with attempt + 1, which counts towards `max_attempts`. Nothing is lost or handed out twice.
const CLAIMED: Effect = Effect::Changes(
    "deliveries may have been leased to this broker without being handed out: they come back to \
     the group when the lease (or the ack deadline) runs out, with attempt + 1; fetching again is \
     safe",
);
const TAKEN: Effect = Effect::Changes(
    "a delivery may have been taken (and so settled) without being handed out: then it is gone, \
     as at-most-once allows; taking again is safe",
);
const SETTLED: Effect = Effect::Changes(
    "the ack may or may not have been applied: acking again is safe (it is applied at most \
     once); if it was not applied, the delivery comes back when its lease runs out, with attempt + 1",
);
const REQUEUED: Effect = Effect::Changes(
    "the nack may or may not have been applied: nacking again is safe (it is applied at most \
     once); if it was not applied, the delivery comes back when its lease runs out, with attempt + 1",
);

/// What `group_figures.lua` says about a group.
struct Figures {
    ready: u64,
    delayed: u64,
    expired: u64,
    /// In how many ms the next delayed delivery or lease comes due (by the server's clock).
    next_due: Option<u64>,
}

/// Milliseconds from now to `at`, rounded up: never earlier than asked. (The script adds them to
/// the server's clock.)
fn delay_ms(at: Instant) -> u64 {
    let wait = at.saturating_duration_since(Instant::now());
    wait.as_millis() as u64 + u64::from(!wait.subsec_nanos().is_multiple_of(1_000_000)) + 1
}

impl RedisQueue {
    pub(super) fn new(
        local: Arc<Local>,
        topic: Arc<str>,
        base: Arc<str>,
        index: u64,
        group: Arc<str>,
        name: Option<Arc<str>>,
        ready: u64,
    ) -> Self {
        RedisQueue { local, topic, base, index, group, name, ready: ReadyCount::new(ready) }
    }

    /// This broker made `n` deliveries of the group ready (after the script that did).
    pub(super) fn added(&self, n: u64) {
        self.ready.added(n);
    }

    fn reread<R>(&self, read: impl FnOnce() -> Result<(R, u64)>) -> Result<R> {
        self.ready.reread(read)
    }

    fn figures(&self) -> Result<Figures> {
        let r = self.local.script(
            "read a group's figures",
            Effect::Reads,
            &scripts::GROUP_FIGURES,
            &self.base,
            |call| {
                call.arg(&*self.group).arg(self.local.spared());
            },
        )?;
        let what = "read a group's figures";
        let r = reply::array(r, what)?;
        let [ready, delayed, expired, next] = r.as_slice() else { return Err(reply::malformed(what)) };
        let next = reply::int(next, what)?;
        Ok(Figures {
            ready: reply::int(ready, what)?.max(0) as u64,
            delayed: reply::int(delayed, what)?.max(0) as u64,
            expired: reply::int(expired, what)?.max(0) as u64,
            next_due: (next >= 0).then_some(next as u64),
        })
    }

    /// Reads one claimed delivery (nine values) from a claim's reply.
    fn delivery(&self, v: &mut impl Iterator<Item = Value>, renewed: bool) -> Result<(Delivery, Held, u64)> {
        let what = "claim";
        let mut next = || v.next().ok_or_else(|| reply::malformed(what));
        let member = reply::text(next()?, what)?;
        let seq = reply::int(&next()?, what)?.max(0) as u64;
        let attempt = reply::int(&next()?, what)?.clamp(1, i64::from(u32::MAX)) as u32;
        let id = reply::text(next()?, what)?;
        let payload = reply::bytes(next()?, what)?;
        let has_meta = reply::int(&next()?, what)? == 1;
        let meta = reply::bytes(next()?, what)?;
        let priority = i32::try_from(reply::int(&next()?, what)?).map_err(|_| reply::malformed(what))?;
        let timestamp = reply::int(&next()?, what)?.max(0) as u64;
        let message =
            Message::restore(&self.topic, &id, &payload, has_meta.then_some(meta.as_slice()), priority, timestamp);
        let key = self.local.delivery_id(self.index, seq);
        let held = Held {
            base: Arc::clone(&self.base),
            group: Arc::clone(&self.group),
            member,
            attempt,
            renewed,
            lapsing: false,
        };
        let d = Delivery { message, id: key, key, subscription: 0, attempt, renewed, group: self.name.clone() };
        Ok((d, held, seq))
    }

    /// The store could not settle or requeue these deliveries (it was unreachable, say): stop
    /// renewing their leases, so that if nobody settles them again they come back to the group
    /// (attempt + 1) one lease from their last renewal, as a crashed broker's would. A settle
    /// retried meanwhile (an ack by id) still finds them.
    fn lapse(&self, ids: impl IntoIterator<Item = u64>) {
        let mut held = self.local.held.lock();
        for id in ids {
            if let Some(h) = held.get_mut(&id) {
                h.lapsing = true;
            }
        }
    }

    /// The entry of `d` if this broker holds that very attempt of it: an earlier attempt's late
    /// settle or requeue (its lease ran out, and this broker claimed it again) is not its own.
    fn member_of(&self, d: &Delivery) -> Option<String> {
        self.local.held.lock().get(&d.key).filter(|h| h.attempt == d.attempt).map(|h| h.member.clone())
    }

    fn requeued(&self, r: Value, id: u64) -> Result<Requeued> {
        self.local.wrote();
        self.local.held.lock().remove(&id);
        Ok(match reply::int(&r, "requeue")? {
            1 => {
                self.added(1);
                Requeued::Ready
            }
            2 => Requeued::Delayed,
            _ => Requeued::Gone,
        })
    }
}

impl GroupQueue for RedisQueue {
    fn claim(&self, max: usize, lease: Lease, out: &mut Vec<Delivery>) -> Result<usize> {
        if max == 0 {
            return Ok(0);
        }
        let (renewed, length) = match lease {
            Lease::Renewed => (true, self.local.lease),
            Lease::Until(deadline) => (false, deadline),
        };
        let owner = &self.local.owner;
        let spared = self.local.spared();
        let items = self.reread(|| {
            let claimed = self.local.script("claim", CLAIMED, &scripts::CLAIM, &self.base, |call| {
                call.arg(&*self.group).arg(owner.holder(renewed)).arg(length.as_millis().max(1) as u64).arg(max);
                call.arg(spared);
            });
            let r = claimed.inspect_err(|e| {
                if !renewed && e.kind() == ErrorKind::OutcomeUnknown {
                    // It may have leased deliveries under this broker's ack-deadline holder,
                    // which its own claims spare and its timer does not know of.
                    self.local.lost_deadline_claim.store(true, Ordering::Release);
                }
            })?;
            let mut items = reply::array(r, "claim")?.into_iter();
            let ready = reply::int(&items.next().ok_or_else(|| reply::malformed("claim"))?, "claim")?;
            Ok((items, ready.max(0) as u64))
        })?;
        let mut items = items.peekable();
        let mut got = 0;
        let mut highest = 0;
        while items.peek().is_some() {
            let (d, held, seq) = self.delivery(&mut items, renewed)?;
            highest = highest.max(seq);
            self.local.held.lock().insert(d.key, held);
            out.push(d);
            got += 1;
        }
        if got > 0 {
            self.local.wrote();
            self.local.issue(&self.topic, highest);
            self.local.touched.lock().insert((Arc::clone(&self.base), Arc::clone(&self.group)));
        }
        Ok(got)
    }

    /// The claim script in its take mode: claimed and settled in one script, one round trip.
    fn take(&self, max_payload: usize) -> Result<Take> {
        let owner = &self.local.owner;
        let (mut items, too_large) = self.reread(|| {
            let r = self.local.script("take", TAKEN, &scripts::CLAIM, &self.base, |call| {
                call.arg(&*self.group).arg(owner.holder(true)).arg(self.local.lease.as_millis().max(1) as u64).arg(1);
                call.arg(self.local.spared()).arg(max_payload as u64);
            })?;
            let mut items = reply::array(r, "take")?.into_iter();
            let mut next = || items.next().ok_or_else(|| reply::malformed("take"));
            let ready = reply::int(&next()?, "take")?;
            let too_large = reply::int(&next()?, "take")?;
            Ok(((items, too_large), ready.max(0) as u64))
        })?;
        if too_large > 0 {
            self.local.touched.lock().insert((Arc::clone(&self.base), Arc::clone(&self.group)));
            return Ok(Take::TooLarge(too_large as usize));
        }
        let mut items = items.by_ref().peekable();
        if items.peek().is_none() {
            return Ok(Take::Empty);
        }
        let (d, _, seq) = self.delivery(&mut items, true)?;
        self.local.wrote();
        self.local.issue(&self.topic, seq);
        self.local.touched.lock().insert((Arc::clone(&self.base), Arc::clone(&self.group)));
        Ok(Take::Got(d))
    }

    fn settle(&self, done: &[Delivery]) -> Result<()> {
        let mut settled_some = false;
        for renewed in [true, false] {
            let mine: Vec<(u64, String, u32)> = {
                let held = self.local.held.lock();
                done.iter()
                    .filter(|d| d.renewed == renewed)
                    // Only the attempts this broker holds: settling an earlier one (a late ack of
                    // a delivery this broker claimed again) must not forget the one it holds.
                    .filter_map(|d| {
                        held.get(&d.key)
                            .filter(|h| h.attempt == d.attempt)
                            .map(|h| (d.key, h.member.clone(), d.attempt))
                    })
                    .collect()
            };
            if mine.is_empty() {
                continue;
            }
            // A lease that was lost (deadline passed and someone else took it) is theirs now:
            // the script leaves it.
            let settled = self.local.script("settle", SETTLED, &scripts::SETTLE, &self.base, |call| {
                call.arg(&*self.group).arg(self.local.owner.holder(renewed));
                for (_, member, attempt) in &mine {
                    call.arg(member).arg(*attempt);
                }
            });
            if let Err(e) = settled {
                self.lapse(mine.iter().map(|m| m.0));
                // The deliveries under the renewed lease were settled first.
                return Err(if settled_some { partly_done(e, "some of the deliveries were acked") } else { e });
            }
            settled_some = true;
            let mut held = self.local.held.lock();
            for (key, _, _) in &mine {
                held.remove(key);
            }
        }
        self.local.wrote();
        Ok(())
    }

    fn requeue(&self, d: &Delivery, how: Requeue) -> Result<Requeued> {
        let Some(member) = self.member_of(d) else { return Ok(Requeued::Gone) };
        let (mode, due) = match how {
            Requeue::Now => ("now", 0),
            Requeue::At(at) => ("at", delay_ms(at)),
            Requeue::Unstarted => ("unstarted", 0),
        };
        let r = self.local.script("requeue", REQUEUED, &scripts::REQUEUE, &self.base, |call| {
            call.arg(&*self.group).arg(self.local.owner.holder(d.renewed)).arg(&member).arg(d.attempt);
            call.arg(mode).arg(due);
        });
        match r {
            Ok(r) => self.requeued(r, d.key),
            Err(e) => {
                self.lapse([d.key]);
                if !d.renewed {
                    // A delivery under an ack deadline that this broker could not give back (its
                    // timer's requeue, or a nack) stays leased to this broker's deadline holder,
                    // whose expired leases its own claims spare and its poller does not watch:
                    // nobody here would look at it again. From now on they take it back once its
                    // deadline passed (attempt + 1), as after a claim whose answer was lost.
                    self.local.lost_deadline_claim.store(true, Ordering::Release);
                }
                Err(e)
            }
        }
    }

    fn len(&self) -> usize {
        self.ready.get() as usize
    }

    fn backlog(&self, max_age: Duration) -> Result<usize> {
        Ok(self.ready.backlog(max_age, || self.figures().map(|f| f.ready))? as usize)
    }

    fn waiting(&self) -> Result<u64> {
        let f = self.figures()?;
        Ok(f.ready + f.delayed + f.expired)
    }

    /// A claim promotes due deliveries itself; what this does is make `len` say there is one,
    /// so that a consumer woken for it claims.
    ///
    /// The core's timer calls this at the moment it asked a delay to end, but Redis set the
    /// due time by its own clock when the requeue script ran, a round trip later: it may not be
    /// due there yet. Then this says 0, and the core has its poller look again until it is.
    fn release_due(&self) -> usize {
        match self.figures() {
            Ok(Figures { next_due: Some(0), .. }) => {
                self.added(1);
                1
            }
            _ => 0,
        }
    }

    fn refresh(&self) -> Result<Option<Instant>> {
        let next = self.reread(|| self.figures().map(|f| (f.next_due, f.ready)))?;
        Ok(next.map(|wait| Instant::now() + Duration::from_millis(wait)))
    }

    fn discard(&self) -> u64 {
        0
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
