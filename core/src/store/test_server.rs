//! A redis-server of a test's own, for the unit tests of the store (`redis/watch.rs`,
//! `conformance.rs`): Debian's `redis-server` on a free loopback port, with no snapshots and no
//! append-only file, killed and reaped when dropped (a panicking test drops it too). The
//! integration tests (`core/tests/common/redis_server.rs`) have a fuller one that also survives
//! the test process being killed.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How many times `start` tries another port when the one it found free was taken meanwhile.
const ATTEMPTS: usize = 5;
/// How long a started server may take to accept connections.
const READY_WITHIN: Duration = Duration::from_secs(10);

pub(crate) struct Server {
    child: Child,
    port: u16,
}

impl Server {
    /// Starts one and waits until it accepts connections; None if redis-server is missing or
    /// does not come up.
    pub(crate) fn start() -> Option<Server> {
        (0..ATTEMPTS).find_map(|_| Self::try_start())
    }

    fn try_start() -> Option<Server> {
        // A port the kernel just found free: another process may take it before the server
        // does, and then the server exits and `start` tries again.
        let port = std::net::TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let mut server = Server { child, port };
        let deadline = Instant::now() + READY_WITHIN;
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(server);
            }
            if !matches!(server.child.try_wait(), Ok(None)) {
                return None; // It exited (the port was taken, say); dropping reaps it.
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>/`.
    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
