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
use ::redis::Client;

use super::conn::Pool;
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
    /// Starts listening on `channel` through a connection of its own made by `client`.
    pub fn start(client: Client, channel: String, stop_word: String, timeout: Duration) -> std::io::Result<Self> {
        let shared =
            Arc::new(Shared { changed: AtomicBool::new(true), stop: AtomicBool::new(false), waker: OnceLock::new() });
        let thread = {
            let (shared, channel, stop_word) = (Arc::clone(&shared), channel.clone(), stop_word.clone());
            std::thread::Builder::new()
                .name("brokk-redis-listen".into())
                .spawn(move || listen(&client, &channel, &stop_word, timeout, &shared))?
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

fn listen(client: &Client, channel: &str, stop_word: &str, timeout: Duration, shared: &Shared) {
    let mut backoff = FIRST_BACKOFF;
    while !shared.stop.load(Ordering::Acquire) {
        if hear(client, channel, stop_word, timeout, shared) {
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
fn hear(client: &Client, channel: &str, stop_word: &str, timeout: Duration, shared: &Shared) -> bool {
    let Ok(mut conn) = client.get_connection_with_timeout(timeout) else { return false };
    let mut sub = conn.as_pubsub();
    if sub.subscribe(channel).is_err() || sub.set_read_timeout(Some(READ_TIMEOUT)).is_err() {
        return false;
    }
    // Subscribed: from here on every write is heard; before, some may have been missed.
    shared.change();
    loop {
        if shared.stop.load(Ordering::Acquire) {
            return true;
        }
        match sub.get_message() {
            Ok(msg) => {
                if msg.get_payload_bytes() == stop_word.as_bytes() {
                    return true;
                }
                shared.change();
            }
            Err(e) if e.is_timeout() => {}
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
        let client = Client::open(server.url()).unwrap();
        let listener =
            Listener::start(client.clone(), "{t}:changes".into(), "stop-t".into(), Duration::from_secs(5)).unwrap();
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
