//! Operator logs: what someone running brokk needs to hear about (a store connection lost and
//! regained, a lease that ran out, a dead process's groups collected, listener events dropped, a
//! long wait for SQLite's write lock, what a close left behind), handed to a sink the host
//! installs. Nothing is logged per message at Info or above.
//!
//! **Where a record goes.** A broker with a sink of its own (`Broker::set_log_sink`) sends its
//! records there and nowhere else; any other broker, and anything that happens before a broker
//! exists (opening its store), uses the process-wide sink (`set_process_sink`). Each sink has a
//! most verbose level; records above it are not even formatted.
//!
//! **Silent by default, and cheap when silent.** With no sink, an emit site costs one or two
//! relaxed atomic loads and no allocation; the message is formatted only for a sink that takes
//! it.
//!
//! **Threads.** A sink runs on the thread that saw the event (a broker worker, the timer, the
//! poller, the listener thread, or the host's thread inside a brokk call), possibly on several
//! at once, and never with a brokk lock held: a site under a lock collects its record in a
//! `Deferred` that emits once the lock is released. A sink may call brokk (replacing a sink
//! included). A panic in a sink is caught and the record is lost; it never unwinds into brokk.
//!
//! **Replacing a sink.** The swap happens under a short lock that no call of a sink holds: each
//! call clones the sink's `Arc` and runs after the lock is released. So a record emitted during
//! a swap goes to the old sink or to the new one, and the old sink is dropped (its finaliser
//! runs) when the last call still running in it returns, or at once if none is.

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use crate::sync::Mutex;

/// How much a record matters, most severe first. A sink set to a level takes that level and
/// every more severe one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Level {
    /// brokk lost something or cannot go on as asked (a store that cannot be reached).
    Error = 1,
    /// Something an operator should look at: an outage, a lease that ran out, dropped events,
    /// a close that left work behind.
    Warn = 2,
    /// Normal but notable: a connection regained, a close report with nothing left behind,
    /// a dead process's groups collected.
    Info = 3,
    /// Detail for diagnosing: each failed reconnection attempt, short lock waits.
    Debug = 4,
    /// Everything else.
    Trace = 5,
}

impl Level {
    /// The level numbered `n` (1 = Error ... 5 = Trace), as the C ABI numbers them.
    pub fn from_number(n: u32) -> Option<Level> {
        Some(match n {
            1 => Level::Error,
            2 => Level::Warn,
            3 => Level::Info,
            4 => Level::Debug,
            5 => Level::Trace,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
            Level::Trace => "trace",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where records go. `target` names the part of brokk that speaks (`brokk::redis`,
/// `brokk::sqlite`, `brokk::broker`, `brokk::lease`, `brokk::listener`, `brokk::close`);
/// `message` is one line of text for a person. Both are borrowed for the call.
pub trait LogSink: Send + Sync + 'static {
    fn log(&self, level: Level, target: &str, message: &str);
}

impl<F: Fn(Level, &str, &str) + Send + Sync + 'static> LogSink for F {
    fn log(&self, level: Level, target: &str, message: &str) {
        self(level, target, message)
    }
}

/// No sink (per broker: none of its own, so the process-wide one applies).
const NONE: u8 = 0;

/// A sink and its most verbose level. `max` is read on every emit without the lock: `NONE`, or
/// the level's number while `sink` is set.
struct Slot {
    max: AtomicU8,
    sink: Mutex<Option<Arc<dyn LogSink>>>,
}

impl Slot {
    const fn new() -> Self {
        Slot { max: AtomicU8::new(NONE), sink: Mutex::new(None) }
    }

    fn set(&self, max: Level, sink: Option<Arc<dyn LogSink>>) {
        let old = {
            let mut slot = self.sink.lock();
            self.max.store(if sink.is_some() { max as u8 } else { NONE }, Ordering::Release);
            std::mem::replace(&mut *slot, sink)
        };
        // Outside the lock: dropping the last reference runs the sink's finaliser, which may
        // call brokk.
        drop(old);
    }

    fn call(&self, level: Level, target: &str, message: &str) {
        let Some(sink) = self.sink.lock().clone() else { return };
        // A panicking sink loses its record; it must not unwind into a brokk thread.
        let _ = catch_unwind(AssertUnwindSafe(|| sink.log(level, target, message)));
    }
}

static PROCESS: Slot = Slot::new();

/// Sets the process-wide sink, for every broker without a sink of its own and for what happens
/// while a store is being opened; `None` makes them silent again (the default). The previous
/// sink is dropped once no call of it is running (see the module note).
pub fn set_process_sink(max: Level, sink: Option<Arc<dyn LogSink>>) {
    PROCESS.set(max, sink);
}

/// One broker's log: its own sink if it has one, else the process-wide one. Cloned into the
/// broker's store, so that the store's records go where the broker's do.
#[derive(Clone)]
pub(crate) struct Log(Arc<Slot>);

impl Default for Log {
    fn default() -> Self {
        Log(Arc::new(Slot::new()))
    }
}

impl fmt::Debug for Log {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Log")
    }
}

impl Log {
    /// Sets (or with `None` removes) this broker's own sink; see `Broker::set_log_sink`.
    pub(crate) fn set(&self, max: Level, sink: Option<Arc<dyn LogSink>>) {
        self.0.set(max, sink);
    }

    /// The slot a record of `level` goes to, if any takes it: lock-free.
    #[inline]
    fn route(&self, level: Level) -> Option<&Slot> {
        let own = self.0.max.load(Ordering::Relaxed);
        let slot = if own != NONE { &*self.0 } else { &PROCESS };
        let max = if own != NONE { own } else { PROCESS.max.load(Ordering::Relaxed) };
        (level as u8 <= max).then_some(slot)
    }

    /// Whether a record of `level` would go anywhere.
    #[inline]
    pub(crate) fn enabled(&self, level: Level) -> bool {
        self.route(level).is_some()
    }

    /// Formats and hands over a record, if a sink takes `level`. Use `log!`, which checks first.
    #[cold]
    pub(crate) fn emit(&self, level: Level, target: &str, args: fmt::Arguments<'_>) {
        if let Some(slot) = self.route(level) {
            let message = match args.as_str() {
                Some(s) => std::borrow::Cow::Borrowed(s),
                None => std::borrow::Cow::Owned(args.to_string()),
            };
            slot.call(level, target, &message);
        }
    }
}

/// Records collected under a lock, emitted when this is dropped: declare it before the lock's
/// guard, so that it drops after the guard is released.
pub(crate) struct Deferred<'a> {
    log: &'a Log,
    records: Vec<(Level, &'static str, String)>,
}

impl<'a> Deferred<'a> {
    pub(crate) fn new(log: &'a Log) -> Self {
        Deferred { log, records: Vec::new() }
    }

    pub(crate) fn push(&mut self, level: Level, target: &'static str, args: fmt::Arguments<'_>) {
        if self.log.enabled(level) {
            self.records.push((level, target, args.to_string()));
        }
    }
}

impl Drop for Deferred<'_> {
    fn drop(&mut self) {
        for (level, target, message) in self.records.drain(..) {
            self.log.emit(level, target, format_args!("{message}"));
        }
    }
}

/// `log!(log, Warn, "brokk::redis", "format {}", args)`: formats only if a sink takes the level.
macro_rules! log {
    ($log:expr, $level:ident, $target:expr, $($fmt:tt)+) => {{
        let log: &$crate::log::Log = &$log;
        if log.enabled($crate::log::Level::$level) {
            log.emit($crate::log::Level::$level, $target, format_args!($($fmt)+));
        }
    }};
}
pub(crate) use log;

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex as StdMutex;

    type Seen = Arc<StdMutex<Vec<(Level, String, String)>>>;

    fn recorder() -> (Seen, Arc<dyn LogSink>) {
        let seen: Seen = Arc::default();
        let s = Arc::clone(&seen);
        let sink = move |l: Level, t: &str, m: &str| s.lock().unwrap().push((l, t.to_owned(), m.to_owned()));
        (seen, Arc::new(sink))
    }

    #[test]
    fn a_broker_sink_takes_its_levels_and_only_those() {
        let log = Log::default();
        assert!(!log.enabled(Level::Error), "silent by default");
        let (seen, sink) = recorder();
        log.set(Level::Info, Some(sink));
        log!(log, Warn, "brokk::test", "lost {}", 3);
        log!(log, Debug, "brokk::test", "not this");
        assert_eq!(*seen.lock().unwrap(), vec![(Level::Warn, "brokk::test".to_owned(), "lost 3".to_owned())]);
        log.set(Level::Trace, None);
        assert!(!log.enabled(Level::Error), "removed: back to the (silent) process-wide sink");
    }

    #[test]
    fn a_panicking_sink_loses_the_record_only() {
        let log = Log::default();
        log.set(Level::Trace, Some(Arc::new(|_: Level, _: &str, _: &str| panic!("sink bug"))));
        log!(log, Error, "brokk::test", "boom");
    }

    #[test]
    fn deferred_records_wait_for_the_drop() {
        let log = Log::default();
        let (seen, sink) = recorder();
        log.set(Level::Debug, Some(sink));
        {
            let mut later = Deferred::new(&log);
            later.push(Level::Debug, "brokk::test", format_args!("waited {} ms", 7));
            later.push(Level::Trace, "brokk::test", format_args!("filtered"));
            assert!(seen.lock().unwrap().is_empty());
        }
        assert_eq!(seen.lock().unwrap().len(), 1);
        assert_eq!(seen.lock().unwrap()[0].2, "waited 7 ms");
    }
}
