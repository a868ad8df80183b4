//! A log sink that records what it hears, for the tests of the operator log.

use std::sync::{Arc, Mutex};

use brokk_core::log::{Level, LogSink};
use brokk_core::Broker;

#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<(Level, String, String)>>>);

impl Logs {
    /// A recorder installed as `broker`'s own sink, taking records up to `max`.
    pub fn on(broker: &Broker, max: Level) -> Logs {
        let logs = Logs::default();
        broker.set_log_sink(max, Some(logs.sink())).unwrap();
        logs
    }

    pub fn sink(&self) -> Arc<dyn LogSink> {
        let seen = Arc::clone(&self.0);
        Arc::new(move |l: Level, t: &str, m: &str| seen.lock().unwrap().push((l, t.to_owned(), m.to_owned())))
    }

    /// The records of `target` so far, as (level, message).
    pub fn of(&self, target: &str) -> Vec<(Level, String)> {
        self.0.lock().unwrap().iter().filter(|r| r.1 == target).map(|r| (r.0, r.2.clone())).collect()
    }

    /// How many sinks made by `sink` are still alive.
    pub fn sinks(&self) -> usize {
        Arc::strong_count(&self.0) - 1
    }

    pub fn all(&self) -> Vec<(Level, String, String)> {
        self.0.lock().unwrap().clone()
    }
}
