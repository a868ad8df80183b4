//! The life cycle around the messages: subscriptions and listeners, count and purge, stats,
//! join, close and teardown.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Shared, CLOSED, CLOSING, OPEN};
use crate::broker::policy::DeliveryPolicy;
use crate::broker::reentry;
use crate::broker::subscription::{Subscription, MAX_CONCURRENCY};
use crate::broker::timer::{self, Job};
use crate::broker::{CloseReport, SubscribeOptions};
use crate::cancel::Interrupt;
use crate::error::{Error, ErrorKind, Result};
use crate::handler::Handler;
use crate::listener::{Event, Listener};
use crate::log::log;
use crate::names::{validate_group, validate_topic};
use crate::stats::BrokerStats;

/// How often join and close look at a shared store again while deliveries wait there.
const IDLE_LOOK: Duration = Duration::from_millis(5);

impl Shared {
    // ---- subscriptions and listeners --------------------------------------------------------

    /// Subscribes `handler`. Every check runs before the handler is used, and on failure the
    /// handler comes back untouched, so a C host keeps its user_data (no finaliser runs).
    pub(crate) fn subscribe<H: Handler>(
        &self,
        topic: &str,
        handler: H,
        opts: &SubscribeOptions<'_>,
    ) -> Result<u64, (Error, H)> {
        let (concurrency, policy) = match self.check_subscribe(topic, opts) {
            Ok(checked) => checked,
            Err(e) => return Err((e, handler)),
        };
        let registered = self.topic(topic).and_then(|topic| {
            let group = match opts.group {
                Some(name) => self.named_group(&topic, name)?,
                None => self.anonymous_group(&topic)?,
            };
            Ok((topic, group))
        });
        let (topic, group) = match registered {
            Ok(r) => r,
            Err(e) => return Err((e, handler)),
        };
        let id = self.next_subscription.fetch_add(1, Ordering::Relaxed);
        let sub = Arc::new(Subscription::new(
            id,
            Arc::clone(&group),
            Box::new(handler),
            opts.manual_ack,
            concurrency,
            policy,
        ));
        self.subscriptions.write().insert(id, Arc::clone(&sub));
        group.add_member(sub);
        topic.counters.subscriptions.fetch_add(1, Ordering::Relaxed);
        self.emit(|| Event::Subscribed(Arc::clone(&topic.name), id));
        self.poke_poller();
        // A named group may already hold a backlog.
        let queued = group.queue.len();
        if queued > 0 {
            self.wake(&group, queued, 0);
        }
        Ok(id)
    }

    fn check_subscribe(&self, topic: &str, opts: &SubscribeOptions<'_>) -> Result<(usize, DeliveryPolicy)> {
        self.ensure_open()?;
        validate_topic(topic)?;
        if let Some(g) = opts.group {
            validate_group(g)?;
        }
        let policy = DeliveryPolicy::new(opts.ack_deadline, opts.max_attempts, opts.dead_letter_topic)?;
        let concurrency = match opts.concurrency {
            0 => 1,
            n if n > MAX_CONCURRENCY => {
                return Err(Error::new(
                    ErrorKind::InvalidArgument,
                    format!("concurrency is {n}; the limit is {MAX_CONCURRENCY}"),
                ))
            }
            n => n,
        };
        Ok((concurrency, policy))
    }

    pub(crate) fn unsubscribe(&self, id: u64) -> Result<()> {
        self.ensure_not_closed()?;
        let Some(sub) = self.subscriptions.write().remove(&id) else {
            return Err(Error::new(ErrorKind::UnknownSubscription, format!("no subscription with id {id}")));
        };
        let group = Arc::clone(&sub.group);
        if group.name.is_none() {
            // An ungrouped subscription's own group goes with it; a named group stays, and its
            // messages wait for the next member or fetch.
            let topic = self.topics.get(&group.topic).expect("topics live as long as the broker");
            let _order = topic.order.lock();
            topic.remove_group(&group);
            // Deactivated before the store discards, so that a publish racing this one sees
            // the group inactive after its own enqueue and discards what it added.
            group.deactivate();
            match topic.store.remove_group(&*group.queue) {
                Ok(n) => {
                    group.made_room();
                    self.drop_unstarted(&group.counters, n);
                    self.unqueued(n);
                    group.counters.groups.fetch_sub(1, Ordering::Relaxed);
                }
                Err(e) => {
                    // Nothing changed in the store: put everything back.
                    group.reactivate();
                    topic.add_group(Arc::clone(&group));
                    self.subscriptions.write().insert(id, sub);
                    return Err(e);
                }
            }
        }
        group.remove_member(id);
        sub.deactivate();
        group.counters.subscriptions.fetch_sub(1, Ordering::Relaxed);
        self.emit(|| Event::Unsubscribed(Arc::clone(&group.topic), id));
        // The handler (and its finaliser) goes when the last running invocation ends.
        drop(sub);
        Ok(())
    }

    pub(crate) fn add_listener<L: Listener>(&self, listener: L) -> Result<u64, (Error, L)> {
        if let Err(e) = self.ensure_open() {
            return Err((e, listener));
        }
        let id = self.next_listener.fetch_add(1, Ordering::Relaxed);
        self.listeners.add(id, Arc::new(listener));
        Ok(id)
    }

    pub(crate) fn remove_listener(&self, id: u64) -> Result<()> {
        self.ensure_not_closed()?;
        self.listeners.remove(id)
    }

    // ---- count and purge ------------------------------------------------------------------

    fn validate_topics(names: Option<&[&str]>) -> Result<()> {
        names.unwrap_or_default().iter().try_for_each(|n| validate_topic(n))
    }

    /// Messages waiting on the topics (all when None): retained ones plus deliveries queued in
    /// their groups (one per group), not those in flight. A shared store counts the whole store.
    pub(crate) fn count(&self, topics: Option<&[&str]>) -> Result<u64> {
        self.ensure_not_closed()?;
        Self::validate_topics(topics)?;
        self.store.count(topics)
    }

    /// Discards what `count` counts; returns how many. Deliveries in flight are untouched.
    pub(crate) fn purge(&self, topics: Option<&[&str]>) -> Result<u64> {
        self.ensure_not_closed()?;
        Self::validate_topics(topics)?;
        let mut n = 0;
        for p in self.store.purge(topics)? {
            n += p.deliveries + p.retained;
            // A topic of a shared store that this broker never used has no counters here.
            let Some(t) = self.topics.get(&p.topic) else { continue };
            let c = &t.counters;
            if p.retained > 0 {
                c.retained.store(0, Ordering::Relaxed);
                c.retained_dropped.fetch_add(p.retained, Ordering::Relaxed);
            }
            self.drop_unstarted(c, p.deliveries);
            self.unqueued(p.deliveries);
            for g in t.groups().iter() {
                let _ = g.queue.refresh();
                g.made_room();
            }
        }
        Ok(n)
    }

    /// See `Broker::count_group`.
    pub(crate) fn count_group(&self, topic: &str, group: &str) -> Result<u64> {
        self.ensure_not_closed()?;
        validate_topic(topic)?;
        validate_group(group)?;
        self.store.count_group(topic, group)
    }

    /// See `Broker::purge_group`: counted as `purge` counts a topic's discarded deliveries
    /// (dequeued and dropped, on this broker's topic if it has one; join no longer waits for
    /// them).
    pub(crate) fn purge_group(&self, topic: &str, group: &str) -> Result<u64> {
        self.ensure_not_closed()?;
        validate_topic(topic)?;
        validate_group(group)?;
        let n = self.store.purge_group(topic, group)?;
        // A topic or group of a shared store that this broker never used has no counters here.
        if let Some(t) = self.topics.get(topic) {
            self.drop_unstarted(&t.counters, n);
            self.unqueued(n);
            if let Some(g) = t.named_group(group) {
                let _ = g.queue.refresh();
                g.made_room();
            }
        }
        Ok(n)
    }

    // ---- stats --------------------------------------------------------------------------

    pub(crate) fn stats(&self) -> Result<BrokerStats> {
        self.ensure_not_closed()?;
        let mut stats = BrokerStats {
            listeners: self.listeners.count() as u64,
            workers: self.pool.size as u64,
            workers_active: self.workers_active.load(Ordering::Relaxed),
            listener_events_dropped: self.listeners.dropped(),
            uptime_ms: self.started.elapsed().as_millis() as u64,
            ..Default::default()
        };
        for t in self.topics.all() {
            let mut s = t.counters.snapshot(&t.name);
            // A shared store's own figures: what waits there for every process.
            if let Some(g) = t.store.gauges()? {
                s.queued = g.queued;
                s.retained = g.retained;
            }
            stats.add_topic(s);
        }
        Ok(stats)
    }

    // ---- join, close, teardown ------------------------------------------------------------

    /// Deliveries waiting in a shared store for this broker's groups (0 in process: `quiesce`
    /// counts those).
    fn waiting_in_store(&self) -> Result<u64> {
        if self.in_process {
            return Ok(0);
        }
        let mut n = 0;
        for t in self.topics.all() {
            for g in t.groups().iter() {
                n += g.queue.waiting()?;
            }
        }
        Ok(n)
    }

    /// Deliveries outstanding for this broker: held, or waiting in its groups.
    fn outstanding(&self) -> u64 {
        self.quiesce.deliveries() + self.waiting_in_store().unwrap_or(0)
    }

    /// Waits until this broker has nothing outstanding (see `join`), or until `deadline`;
    /// returns whether it got there. With a shared store, "nothing waits in my groups" and
    /// "nothing is held" are read at one moment only if no write of this broker came between
    /// the two reads (its claims count as held before they commit), which the store's
    /// generation tells.
    fn wait_idle(&self, deadline: Option<Instant>, interrupt: Interrupt<'_>) -> Result<bool> {
        let _watching = interrupt.watch(|| {
            let quiesce = Arc::downgrade(&self.quiesce);
            move || {
                if let Some(q) = quiesce.upgrade() {
                    q.wake_waiters();
                }
            }
        });
        loop {
            if interrupt.is_set() {
                return Err(Error::cancelled("the join"));
            }
            let generation = self.store.generation();
            if self.waiting_in_store()? == 0 {
                if !self.quiesce.wait_idle_or(interrupt.wake_by(deadline), || interrupt.is_cancelled()) {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return Ok(false);
                    }
                    // Woken to ask the token's check, or by its cancel: look again.
                    continue;
                }
                if self.store.generation() == generation {
                    return Ok(true);
                }
                continue;
            }
            let now = Instant::now();
            let left = match deadline {
                Some(d) if d <= now => return Ok(false),
                Some(d) => d - now,
                None => IDLE_LOOK,
            };
            std::thread::sleep(left.min(IDLE_LOOK));
        }
    }

    pub(crate) fn join(&self, timeout: Option<Duration>, interrupt: Interrupt<'_>) -> Result<()> {
        self.ensure_not_closed()?;
        if reentry::is_inside(self.owner()) {
            return Err(Error::new(
                ErrorKind::WouldDeadlock,
                "join called from a handler or listener of this broker would wait for itself",
            ));
        }
        if self.wait_idle(timeout.map(timer::after), interrupt)? {
            Ok(())
        } else {
            Err(Error::timeout("join", self.outstanding()))
        }
    }

    pub(crate) fn close(&self, timeout: Option<Duration>, force: bool) -> Result<CloseReport> {
        let inside = reentry::is_inside(self.owner());
        if inside && !force {
            return Err(Error::new(
                ErrorKind::WouldDeadlock,
                "close called from a handler or listener of this broker would wait for itself; \
                 call it from another thread, or close with force",
            ));
        }
        if self.state.compare_exchange(OPEN, CLOSING, Ordering::SeqCst, Ordering::SeqCst).is_err() {
            return Err(Error::closed());
        }
        let drained = !force && self.wait_idle(timeout.map(timer::after), Interrupt::default()).unwrap_or(false);
        let held = self.quiesce.deliveries();
        let waiting = if drained { 0 } else { self.waiting_in_store().unwrap_or(0) };
        // Deliveries a worker has taken in a batch but not started are outstanding without
        // being in a queue; they are dropped when the worker next looks. So what close drops
        // is everything outstanding except the handlers running now, and what waited in the
        // store where only this broker could take it (a shared store's anonymous groups).
        let dropped = held.saturating_sub(self.workers_active.load(Ordering::SeqCst));
        let (retained_discarded, discarded) = self.shutdown(!drained);
        if drained && !inside {
            // Every worker is idle: this returns at once.
            self.join_threads();
        }
        let report = match (force, drained) {
            (true, _) => CloseReport { remaining: 0, dropped: dropped + discarded, retained_discarded },
            (false, true) => CloseReport { remaining: 0, dropped: 0, retained_discarded },
            (false, false) => CloseReport { remaining: held + waiting, dropped: 0, retained_discarded },
        };
        self.log_close(&report, timeout, force);
        Ok(report)
    }

    /// The close report, for the operator: Info when nothing was left behind, Warn otherwise.
    fn log_close(&self, r: &CloseReport, timeout: Option<Duration>, force: bool) {
        let how = match (force, timeout) {
            (true, _) => "forced close".to_owned(),
            (false, Some(t)) => format!("close (timeout {} ms)", t.as_millis()),
            (false, None) => "close".to_owned(),
        };
        let store = self.store.name();
        if *r == CloseReport::default() {
            log!(self.log, Info, "brokk::close", "broker on {store} closed ({how}): nothing left behind");
        } else {
            log!(
                self.log,
                Warn,
                "brokk::close",
                "broker on {store} closed ({how}): {} deliveries unfinished when time ran out, {} dropped, {} retained \
                 messages discarded",
                r.remaining,
                r.dropped,
                r.retained_discarded
            );
        }
    }

    /// Moves to CLOSED, drops everything waiting in this process (retained, queued, or awaiting
    /// a manual ack), gives a shared store back what this broker holds, wakes blocked fetchers
    /// tells readiness waiters, and asks every broker thread to exit. Returns how many retained messages it discarded,
    /// and how many waiting deliveries it discarded that `quiesce` did not count (a shared
    /// store's anonymous groups). Handlers already running finish on their own; nothing new
    /// starts.
    pub(super) fn shutdown(&self, discard_events: bool) -> (u64, u64) {
        let guard = self.teardown.lock();
        if self.state.swap(CLOSED, Ordering::SeqCst) == CLOSED {
            return (0, 0);
        }
        let (mut retained, mut discarded) = (0, 0);
        for t in self.topics.all() {
            let r = t.store.close();
            if r > 0 {
                t.counters.retained.store(0, Ordering::Relaxed);
                t.counters.retained_dropped.fetch_add(r, Ordering::Relaxed);
                retained += r;
            }
            for g in t.groups().iter() {
                g.deactivate();
                let n = match g.name {
                    None => t.store.remove_group(&*g.queue).unwrap_or(0),
                    Some(_) => g.queue.discard(),
                };
                g.made_room();
                self.drop_unstarted(&g.counters, n);
                self.unqueued(n);
                if !self.in_process {
                    discarded += n;
                }
            }
        }
        for entry in self.pending.drain() {
            self.count_dropped_in_flight(&entry.counters);
            self.quiesce.done_deliveries(1);
        }
        for job in self.timer.stop() {
            // The delayed delivery itself was discarded with its group, or stays in the store.
            match job {
                Job::Wake { counters, .. } => {
                    counters.delayed.fetch_sub(1, Ordering::Relaxed);
                    self.quiesce.done_wake();
                }
                // A delayed requeue the core held for a store that cannot delay: in process
                // it is dropped with the rest; a shared store gets it back with what this
                // broker holds (below).
                Job::Requeue { counters, .. } => {
                    counters.delayed.fetch_sub(1, Ordering::Relaxed);
                    if self.in_process {
                        counters.dropped.fetch_add(1, Ordering::Relaxed);
                        // Counted in `held` (close's report) like any delivery in process.
                        self.quiesce.done_deliveries(1);
                    }
                    self.quiesce.done_wake();
                }
                Job::Deadline { .. } => {}
            }
        }
        // If this fails, the leases run out by themselves (this broker no longer renews them).
        let _ = self.store.close();
        if let Some(p) = &self.poller {
            p.stop();
        }
        self.listeners.stop(discard_events);
        self.pool.stop();
        drop(guard);
        // Readiness waiters hear of the close with no lock held (their closures are the host's).
        self.close_ready();
        (retained, discarded)
    }

    pub(super) fn join_threads(&self) {
        self.pool.join();
        if let Some(t) = self.timer_thread.lock().take() {
            let _ = t.join();
        }
        if let Some(p) = &self.poller {
            p.join();
        }
        self.listeners.join();
    }

    /// Final teardown when the last handle goes: afterwards no handler, listener or finaliser
    /// of this broker runs again. From one of the broker's own threads it cannot wait for
    /// itself, so a reaper thread finishes the job once that callback returns.
    pub(crate) fn teardown(self: Arc<Self>) {
        self.shutdown(true);
        if reentry::is_inside(self.owner()) {
            let _ = std::thread::Builder::new().name("brokk-reaper".into()).spawn(move || self.finish_teardown());
        } else {
            self.finish_teardown();
        }
    }

    /// Like `teardown`, but never waits on the calling thread: a reaper thread finishes it.
    pub(crate) fn teardown_detached(self: Arc<Self>) {
        self.shutdown(true);
        let reaper = Arc::clone(&self);
        if std::thread::Builder::new().name("brokk-reaper".into()).spawn(move || reaper.finish_teardown()).is_err() {
            // No thread to be had: finishing here is slower but still correct.
            self.finish_teardown();
        }
    }

    fn finish_teardown(&self) {
        self.join_threads();
        let _guard = self.teardown.lock();
        self.pool.clear();
        let subs: Vec<_> = self.subscriptions.write().drain().map(|(_, s)| s).collect();
        let topics = self.topics.clear();
        // Groups and their members refer to each other; break that here.
        let groups: Vec<_> = topics.iter().flat_map(|t| t.clear_groups().to_vec()).collect();
        let members: Vec<_> = groups.iter().flat_map(|g| g.clear_members().to_vec()).collect();
        // Finalisers of handlers and listeners run here, on this thread.
        drop(members);
        drop(subs);
        drop(groups);
        drop(topics);
        self.listeners.clear(&self.quiesce);
        // Nothing of this broker logs any more: its sink's finaliser runs now, like the others.
        self.log.set(crate::log::Level::Error, None);
    }
}
