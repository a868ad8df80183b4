//! Hearing about work instead of polling for it. Every write script publishes the topic on the
//! prefix's channel (`{prefix}:changes`, see `lib.lua`); on a single server, a thread of the
//! store subscribes to it on a connection of its own and marks the store changed when anything
//! arrives. The broker's poller then finds the mark with an atomic read (`Store::changed`): no
//! round trip to the server while consumers wait and nothing happens. The thread reconnects
//! with backoff when the connection breaks, and counts the gap as a change (a write may have
//! gone unheard). On a cluster, where a plain PUBLISH goes to every node and a subscription to
//! one, the store reads the topics' write counters instead (`RedisStore::changed`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::sync::Mutex;
use ::redis::Client;

use super::conn::Pool;

const FIRST_BACKOFF: Duration = Duration::from_millis(20);
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// How long a read waits before the thread looks whether it should stop (a stop is normally
/// heard at once: `stop` publishes it).
const READ_TIMEOUT: Duration = Duration::from_secs(1);

/// The channel of a prefix (as `lib.lua` names it).
pub(super) fn channel(prefix: &str) -> String {
    format!("{{{prefix}}}:changes")
}

struct Shared {
    changed: AtomicBool,
    stop: AtomicBool,
}

pub(super) struct Listener {
    shared: Arc<Shared>,
    channel: String,
    /// What `stop` publishes for this listener to hear: unique to it.
    stop_word: String,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Listener {
    /// Starts listening on `channel` through a connection of its own made by `client`.
    pub fn start(client: Client, channel: String, stop_word: String, timeout: Duration) -> std::io::Result<Self> {
        let shared = Arc::new(Shared { changed: AtomicBool::new(true), stop: AtomicBool::new(false) });
        let thread = {
            let (shared, channel, stop_word) = (Arc::clone(&shared), channel.clone(), stop_word.clone());
            std::thread::Builder::new()
                .name("brokk-redis-listen".into())
                .spawn(move || listen(&client, &channel, &stop_word, timeout, &shared))?
        };
        Ok(Listener { shared, channel, stop_word, thread: Mutex::new(Some(thread)) })
    }

    /// Whether anything was written (or may have been, unheard) since the last call.
    pub fn take_changed(&self) -> bool {
        self.shared.changed.swap(false, Ordering::AcqRel)
    }

    /// Stops the thread and waits for it: at once when the server can tell it, within a read
    /// timeout otherwise.
    pub fn stop(&self, pool: &Pool) {
        let Some(thread) = self.thread.lock().take() else { return };
        self.shared.stop.store(true, Ordering::Release);
        let _ = pool.run("stop listening", |c| {
            ::redis::cmd("PUBLISH").arg(&self.channel).arg(&self.stop_word).query::<()>(c.as_dyn())
        });
        let _ = thread.join();
    }
}

fn listen(client: &Client, channel: &str, stop_word: &str, timeout: Duration, shared: &Shared) {
    let mut backoff = FIRST_BACKOFF;
    while !shared.stop.load(Ordering::Acquire) {
        if hear(client, channel, stop_word, timeout, shared) {
            return;
        }
        // The connection broke or could not be made: what was written meanwhile is unheard.
        shared.changed.store(true, Ordering::Release);
        let until = Instant::now() + backoff;
        while Instant::now() < until && !shared.stop.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(10).min(backoff));
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Subscribes and marks every message as a change; returns true when told to stop, false when
/// the connection fails.
fn hear(client: &Client, channel: &str, stop_word: &str, timeout: Duration, shared: &Shared) -> bool {
    let Ok(mut conn) = client.get_connection_with_timeout(timeout) else { return false };
    let mut sub = conn.as_pubsub();
    if sub.subscribe(channel).is_err() || sub.set_read_timeout(Some(READ_TIMEOUT)).is_err() {
        return false;
    }
    // Subscribed: from here on every write is heard; before, some may have been missed.
    shared.changed.store(true, Ordering::Release);
    loop {
        if shared.stop.load(Ordering::Acquire) {
            return true;
        }
        match sub.get_message() {
            Ok(msg) => {
                if msg.get_payload_bytes() == stop_word.as_bytes() {
                    return true;
                }
                shared.changed.store(true, Ordering::Release);
            }
            Err(e) if e.is_timeout() => {}
            Err(_) => return false,
        }
    }
}
