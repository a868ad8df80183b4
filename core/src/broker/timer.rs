//! The broker's timer thread: ack deadlines that expire and delayed requeues that fall due.
//! One thread per broker, sleeping until the earliest job; jobs run with no timer lock held.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crate::sync::{Condvar, Mutex};

use super::group::Group;
use crate::message::Delivery;
use crate::stats::TopicCounters;

/// The farthest a deadline or delay reaches: a century, as good as never, and far inside what
/// every clock and store represents (a millisecond count fits an `i64` and a double exactly).
const FARTHEST: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// The moment `d` from now, saturating at `FARTHEST`: a caller may pass any duration (up to
/// `Duration::MAX`), and `Instant + Duration` panics past the clock's range.
pub(crate) fn after(d: Duration) -> Instant {
    Instant::now() + d.min(FARTHEST)
}

pub(crate) enum Job {
    /// The ack deadline of delivery `id`, handed out as `attempt`, has passed.
    Deadline { id: u64, attempt: u32 },
    /// A delivery requeued with a delay into `group` (whose counters these are) is due: the
    /// store releases it, and a consumer is woken.
    Wake { group: Weak<Group>, counters: Arc<TopicCounters> },
    /// A delivery requeued with a delay into a store that cannot delay (see
    /// `store::Capabilities`) is due: the core requeues it now. Until then it stays claimed.
    Requeue { delivery: Delivery, group: Weak<Group>, counters: Arc<TopicCounters> },
}

struct Entry {
    due: Instant,
    seq: u64,
    job: Job,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    /// Reversed, so that the max-heap yields the earliest job first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.due, other.seq).cmp(&(self.due, self.seq))
    }
}

#[derive(Default)]
struct State {
    heap: BinaryHeap<Entry>,
    seq: u64,
    stopped: bool,
}

#[derive(Default)]
pub(crate) struct Timer {
    state: Mutex<State>,
    changed: Condvar,
}

impl Timer {
    pub(crate) fn schedule(&self, due: Instant, job: Job) {
        let mut s = self.state.lock();
        if s.stopped {
            return;
        }
        s.seq += 1;
        let seq = s.seq;
        let earliest = s.heap.peek().is_none_or(|e| due < e.due);
        s.heap.push(Entry { due, seq, job });
        if earliest {
            self.changed.notify_one();
        }
    }

    /// Runs on the timer thread: hands each job to `run` when it falls due, until stopped.
    pub(crate) fn run(&self, mut run: impl FnMut(Job)) {
        let mut due = Vec::new();
        loop {
            {
                let mut s = self.state.lock();
                loop {
                    if s.stopped {
                        return;
                    }
                    let now = Instant::now();
                    match s.heap.peek() {
                        Some(e) if e.due <= now => break,
                        Some(e) => {
                            let at = e.due;
                            self.changed.wait_until(&mut s, at);
                        }
                        None => self.changed.wait(&mut s),
                    }
                }
                let now = Instant::now();
                while s.heap.peek().is_some_and(|e| e.due <= now) {
                    due.push(s.heap.pop().expect("peeked").job);
                }
            }
            for job in due.drain(..) {
                run(job);
            }
        }
    }

    /// Stops the thread and returns the jobs not yet due (for close to account for them).
    pub(crate) fn stop(&self) -> Vec<Job> {
        let mut s = self.state.lock();
        s.stopped = true;
        self.changed.notify_all();
        std::mem::take(&mut s.heap).into_iter().map(|e| e.job).collect()
    }
}
