//! Hearing about work instead of polling for it. Every write script publishes the topic on the
//! prefix's channel (`{prefix}:changes`, see `lib.lua`); on a single server, a thread of the
//! store subscribes to it on a connection of its own, marks the store changed when anything
//! arrives and wakes the broker's poller (the `Waker` the core gave the store), which then finds
//! the mark with an atomic read (`Store::changed`): work from another process is seen at once,
//! with no round trip to the server while consumers wait and nothing happens. The thread reconnects
//! with backoff when the connection breaks, and counts the gap as a change (a write may have
//! gone unheard). On a cluster, where a plain PUBLISH goes to every node and a subscription to
//! one, the store reads the topics' write counters instead (`RedisStore::changed`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::sync::Mutex;
use ::redis::Value;

use super::conn::Pool;
use super::dial::Dialer;
use crate::store::Waker;

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
    /// The poller's, once the broker gave it (`set_waker`).
    waker: OnceLock<Waker>,
}

impl Shared {
    /// Something was (or may have been) written: mark it, and wake the poller to look.
    fn change(&self) {
        self.changed.store(true, Ordering::Release);
        if let Some(w) = self.waker.get() {
            w.wake();
        }
    }
}

pub(super) struct Listener {
    shared: Arc<Shared>,
    channel: String,
    /// What `stop` publishes for this listener to hear: unique to it.
    stop_word: String,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Listener {
    /// Starts listening on `channel` through a connection of its own made by `dialer` (again
    /// after each failure: to the master the sentinels name then, with Sentinel).
    pub fn start(dialer: Arc<Dialer>, channel: String, stop_word: String, timeout: Duration) -> std::io::Result<Self> {
        let shared =
            Arc::new(Shared { changed: AtomicBool::new(true), stop: AtomicBool::new(false), waker: OnceLock::new() });
        let thread = {
            let (shared, channel, stop_word) = (Arc::clone(&shared), channel.clone(), stop_word.clone());
            std::thread::Builder::new()
                .name("brokk-redis-listen".into())
                .spawn(move || listen(&dialer, &channel, &stop_word, timeout, &shared))?
        };
        Ok(Listener { shared, channel, stop_word, thread: Mutex::new(Some(thread)) })
    }

    /// Wakes `waker` at every change from now on (the first one given stays).
    pub fn set_waker(&self, waker: Waker) {
        let _ = self.shared.waker.set(waker);
        // A change heard before the poller's waker was known is still marked: look now.
        if self.shared.changed.load(Ordering::Acquire) {
            self.shared.change();
        }
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

fn listen(dialer: &Dialer, channel: &str, stop_word: &str, timeout: Duration, shared: &Shared) {
    let mut backoff = FIRST_BACKOFF;
    while !shared.stop.load(Ordering::Acquire) {
        if hear(dialer, channel, stop_word, timeout, shared) {
            return;
        }
        // The connection broke or could not be made: what was written meanwhile is unheard.
        shared.change();
        let until = Instant::now() + backoff;
        while Instant::now() < until && !shared.stop.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(10).min(backoff));
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Subscribes and marks every message as a change; returns true when told to stop, false when
/// the connection fails.
fn hear(dialer: &Dialer, channel: &str, stop_word: &str, timeout: Duration, shared: &Shared) -> bool {
    let Ok(mut link) = dialer.dial(Instant::now() + timeout) else { return false };
    let subscribe = ::redis::cmd("SUBSCRIBE").arg(channel).clone();
    if link.send_only(&subscribe, Instant::now() + timeout).is_err() {
        return false;
    }
    let mut subscribed = false;
    loop {
        if shared.stop.load(Ordering::Acquire) {
            return true;
        }
        // The confirmation may take the call timeout; then a read timeout between looks at `stop`.
        match link.listen(if subscribed { READ_TIMEOUT } else { timeout }) {
            // ["subscribe", channel, count] once, then ["message", channel, payload] each.
            Ok(Some(Value::Array(items))) | Ok(Some(Value::Push { data: items, .. })) => {
                match (items.first(), items.get(2)) {
                    (Some(Value::BulkString(kind)), _) if kind == b"subscribe" => {
                        // Subscribed: from here on every write is heard; before, some may have
                        // been missed.
                        subscribed = true;
                        shared.change();
                    }
                    (Some(Value::BulkString(kind)), Some(Value::BulkString(payload))) if kind == b"message" => {
                        if payload == stop_word.as_bytes() {
                            return true;
                        }
                        shared.change();
                    }
                    _ => {}
                }
            }
            Ok(Some(_)) => return false, // An error reply (NOPERM...): the subscription is not up.
            Ok(None) if subscribed => {}
            Ok(None) => return false, // No confirmation within a read timeout.
            Err(_) => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_server::Server;
    use std::sync::mpsc;

    #[test]
    fn a_write_heard_on_the_channel_wakes_the_poller() {
        let server = Server::start().expect("redis-server (Debian's package) must be installed");
        let dialer = Arc::new(Dialer::new(&super::super::RedisConfig::new("127.0.0.1", server.port())).unwrap());
        let client = ::redis::Client::open(server.url()).unwrap();
        let listener =
            Listener::start(dialer, "{t}:changes".into(), "stop-t".into(), Duration::from_secs(5)).unwrap();
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        listener.set_waker(Waker::new(move || {
            let _ = tx.lock().send(());
        }));
        let mut conn = client.get_connection().unwrap();
        // Until the subscription is up a write may go unheard (and counts as a change then):
        // publish until the listener hears one after draining what came before.
        let deadline = Instant::now() + Duration::from_secs(30);
        let heard = loop {
            while rx.try_recv().is_ok() {}
            listener.take_changed();
            let receivers: i64 = ::redis::cmd("PUBLISH").arg("{t}:changes").arg("topic").query(&mut conn).unwrap();
            if receivers > 0 {
                break rx.recv_timeout(Duration::from_secs(10)).is_ok();
            }
            assert!(Instant::now() < deadline, "the listener never subscribed");
            std::thread::sleep(Duration::from_millis(10));
        };
        assert!(heard, "a write on the channel did not wake the poller");
        assert!(listener.take_changed());
        let _ = ::redis::cmd("PUBLISH").arg("{t}:changes").arg("stop-t").query::<i64>(&mut conn);
        listener.shared.stop.store(true, Ordering::Release);
        let thread = listener.thread.lock().take();
        if let Some(t) = thread {
            t.join().unwrap();
        }
    }
}
