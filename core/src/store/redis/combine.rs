//! Publishes that meet. Each publish is a round trip to the server and a script call, and a
//! thread waits for its answer; several threads publishing on one topic would each pay both.
//! So the publishes of a topic that arrive while one is on its way are sent together, as one
//! call of the publish script (which runs each of them all or nothing, as if alone): the
//! thread that finds nobody sending becomes the *leader*, sends what is queued (its own
//! publish first), hands each publish its own reply, and passes the lead to the first publish
//! queued meanwhile, if any. Followers sleep until their reply (or the lead) comes. A lone
//! publisher is its own leader and never waits for anyone.
//!
//! Each publish keeps to its own deadline: a call is sent to be answered by the earliest
//! deadline of the publishes in it (the first queued), so that a publish that waited for the
//! call before it does not wait a whole timeout more. Every publish of a call gets that call's
//! outcome, whose kind says what happened to it: `Unavailable` if the call never left,
//! `OutcomeUnknown` if it left and its answer was lost.

use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Instant;

use crate::sync::{Condvar, Mutex};
use ::redis::Value;

use crate::error::{Error, ErrorKind, Result};

/// Publishes sent in one call at most, bounding the call's size and the leader's wait.
const MAX_PER_CALL: usize = 64;

#[derive(Default)]
pub(super) struct Combiner {
    queue: Mutex<Queue>,
}

#[derive(Default)]
struct Queue {
    waiting: Vec<Arc<Pending>>,
    /// Someone is sending (or about to, having been handed the lead).
    leading: bool,
}

/// One publish's script arguments, one after the other in one buffer (a batch of 10 000
/// messages is 60 000 arguments: one allocation, not one each).
#[derive(Default)]
pub(super) struct Args {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl Args {
    pub fn with_capacity(args: usize, bytes: usize) -> Self {
        Args { bytes: Vec::with_capacity(bytes), ends: Vec::with_capacity(args) }
    }

    pub fn push(&mut self, arg: impl AsRef<[u8]>) -> &mut Self {
        self.bytes.extend_from_slice(arg.as_ref());
        self.ends.push(self.bytes.len());
        self
    }

    /// A number, as Redis reads it.
    pub fn push_int(&mut self, n: impl std::fmt::Display) -> &mut Self {
        use std::io::Write;
        let _ = write!(self.bytes, "{n}");
        self.ends.push(self.bytes.len());
        self
    }

    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts.zip(self.ends.iter().copied()).map(|(s, e)| &self.bytes[s..e])
    }
}

/// One publish: its script arguments, its deadline, and where its reply goes.
pub(super) struct Pending {
    pub args: Args,
    deadline: Instant,
    slot: Mutex<Slot>,
    changed: Condvar,
}

enum Slot {
    Waiting,
    /// This publish's thread leads now.
    Lead,
    Done(Result<Value>),
}

impl Pending {
    fn set(&self, slot: Slot) {
        *self.slot.lock() = slot;
        self.changed.notify_one();
    }
}

impl Combiner {
    /// Sends the publish with script arguments `args`, to be answered by `deadline`, alone or
    /// with others, through `send` (which gets the publishes of one call and the deadline of the
    /// call, and returns their replies in order); returns this publish's reply.
    pub fn publish(
        &self,
        args: Args,
        deadline: Instant,
        send: impl Fn(&[Arc<Pending>], Instant) -> Result<Vec<Value>>,
    ) -> Result<Value> {
        let me = Arc::new(Pending { args, deadline, slot: Mutex::new(Slot::Waiting), changed: Condvar::new() });
        {
            let mut q = self.queue.lock();
            q.waiting.push(Arc::clone(&me));
            if q.leading {
                drop(q);
                let mut slot = me.slot.lock();
                loop {
                    match std::mem::replace(&mut *slot, Slot::Waiting) {
                        Slot::Done(reply) => return reply,
                        Slot::Lead => break,
                        Slot::Waiting => me.changed.wait(&mut slot),
                    }
                }
            } else {
                q.leading = true;
            }
        }
        self.lead(&me, send)
    }

    /// Sends what is queued (`me` among it), hands out the replies, passes the lead on.
    fn lead(&self, me: &Arc<Pending>, send: impl Fn(&[Arc<Pending>], Instant) -> Result<Vec<Value>>) -> Result<Value> {
        let batch: Vec<Arc<Pending>> = {
            let mut q = self.queue.lock();
            let n = q.waiting.len().min(MAX_PER_CALL);
            q.waiting.drain(..n).collect()
        };
        let deadline = batch.iter().map(|p| p.deadline).min().unwrap_or(me.deadline);
        let sent = panic::catch_unwind(AssertUnwindSafe(|| send(&batch, deadline)));
        let replies: Vec<Result<Value>> = match &sent {
            Ok(Ok(values)) if values.len() == batch.len() => values.iter().cloned().map(Ok).collect(),
            // The script ran: what it did for each publish is not known here.
            Ok(Ok(_)) => {
                let e = Error::new(
                    ErrorKind::OutcomeUnknown,
                    "publish: the script answered for the wrong number of publishes; the message may or may \
                     not have been published",
                );
                vec![Err(e); batch.len()]
            }
            Ok(Err(e)) => vec![Err(e.clone()); batch.len()],
            // The call may have been sent before the panic.
            Err(_) => vec![
                Err(Error::new(
                    ErrorKind::OutcomeUnknown,
                    "publish panicked; the message may or may not have been published"
                ));
                batch.len()
            ],
        };
        let mut mine = None;
        for (p, reply) in batch.iter().zip(replies) {
            if Arc::ptr_eq(p, me) {
                mine = Some(reply);
            } else {
                p.set(Slot::Done(reply));
            }
        }
        {
            let mut q = self.queue.lock();
            match q.waiting.first() {
                Some(next) => next.set(Slot::Lead),
                None => q.leading = false,
            }
        }
        if let Err(p) = sent {
            panic::resume_unwind(p);
        }
        // `me` is in the batch: it was queued before this thread led.
        mine.unwrap_or_else(|| {
            Err(Error::new(
                ErrorKind::OutcomeUnknown,
                "publish: lost its own reply; it may or may not have been published",
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    /// Eight threads publish at once while each call is slow: they meet in calls of several,
    /// each gets the reply to its own arguments, and a failed call fails exactly its own.
    #[test]
    fn publishes_that_meet_share_a_call_and_each_gets_its_own_reply() {
        let combiner = Combiner::default();
        let (calls, most) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let send = |batch: &[Arc<Pending>], _: Instant| {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            most.fetch_max(batch.len(), Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(20));
            if n == 3 {
                return Err(Error::new(ErrorKind::Unavailable, "the fourth call fails"));
            }
            Ok(batch.iter().map(|p| Value::BulkString(p.args.iter().next().unwrap().to_vec())).collect())
        };
        let outcomes: Vec<(String, Result<Value>)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|t| {
                    let (combiner, send) = (&combiner, &send);
                    s.spawn(move || {
                        (0..5)
                            .map(|i| {
                                let mine = format!("{t}-{i}");
                                let mut args = Args::default();
                                args.push(&mine);
                                let reply = combiner.publish(args, Instant::now() + Duration::from_secs(5), send);
                                (mine, reply)
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(outcomes.len(), 40);
        let failed = outcomes.iter().filter(|(_, r)| r.is_err()).count();
        assert!(failed >= 1, "the failing call failed its publishes");
        for (mine, reply) in &outcomes {
            if let Ok(v) = reply {
                assert_eq!(v, &Value::BulkString(mine.clone().into_bytes()), "its own reply");
            }
        }
        assert!(most.load(Ordering::SeqCst) > 1, "publishes met in one call");
        assert!(calls.load(Ordering::SeqCst) < 40, "{} calls for 40 publishes", calls.load(Ordering::SeqCst));
    }
}
