//! Real `redis-server` processes for the tests (Debian's, found on PATH), on free loopback
//! ports, each in a temporary folder of its own.
//!
//! Nothing a test starts may outlive the test run. Servers are spawned by one dedicated thread
//! that never exits, with `PR_SET_PDEATHSIG = SIGKILL`: the kernel kills them when that thread
//! dies, which is when the test process dies, however it dies (a panic, SIGKILL, a timeout).
//! An `atexit` handler also kills every server still running when the process exits normally,
//! and each `RedisServer` kills its own when dropped.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Servers still running (pid, folder), for the `atexit` handler.
static RUNNING: Mutex<Vec<(i32, PathBuf)>> = Mutex::new(Vec::new());

type Spawn = (Vec<String>, PathBuf, mpsc::Sender<std::io::Result<i32>>);

/// The spawning thread's inbox: a server's parent is that thread, which lives as long as the
/// process.
fn spawner() -> &'static Mutex<mpsc::Sender<Spawn>> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Spawn>>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Spawn>();
        std::thread::Builder::new()
            .name("redis-server spawner".into())
            .spawn(move || {
                while let Ok((args, dir, reply)) = rx.recv() {
                    let mut cmd = Command::new("redis-server");
                    cmd.args(&args).current_dir(&dir).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
                    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
                    unsafe {
                        cmd.pre_exec(|| {
                            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                                return Err(std::io::Error::last_os_error());
                            }
                            Ok(())
                        });
                    }
                    let _ = reply.send(cmd.spawn().map(|c| c.id() as i32));
                }
                // Never reached while the process lives: the sender is a static. Parking
                // keeps this thread (the servers' parent) alive in any case.
                loop {
                    std::thread::park();
                }
            })
            .expect("spawn the redis-server thread");
        // SAFETY: registers a plain extern "C" function with no captured state.
        unsafe { libc::atexit(kill_all) };
        remove_stale_folders();
        Mutex::new(tx)
    })
}

extern "C" fn kill_all() {
    if let Ok(running) = RUNNING.lock() {
        for (pid, dir) in running.iter() {
            // SAFETY: signals and reaps a child this process started.
            unsafe {
                libc::kill(*pid, libc::SIGKILL);
                libc::waitpid(*pid, std::ptr::null_mut(), 0);
            }
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Removes the folders of servers whose test process was killed (no `atexit` ran): their
/// servers died with it, their folders did not.
fn remove_stale_folders() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix("brokk-redis-").and_then(|r| r.split('-').next()) else { continue };
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// A free TCP port on the loopback interface (and, for cluster nodes, its bus port + 10000).
pub fn free_port() -> u16 {
    loop {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        if port < 50000 && TcpListener::bind(("127.0.0.1", port + 10000)).is_ok() {
            return port;
        }
    }
}

/// Sends one command (inline form) and returns the raw reply, or None if the server does not
/// answer.
pub fn raw(port: u16, command: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(300)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(format!("{command}\r\n").as_bytes()).ok()?;
    let mut buf = vec![0u8; 64 * 1024];
    let n = s.read(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

pub struct RedisServer {
    pub port: u16,
    pid: Option<i32>,
    pub dir: PathBuf,
    args: Vec<String>,
}

/// A new empty folder for a server (removed with it).
fn new_dir() -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("brokk-redis-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

impl RedisServer {
    /// A server with no persistence on a free port, with `extra` arguments.
    pub fn start(extra: &[&str]) -> RedisServer {
        Self::start_in(new_dir(), extra)
    }

    fn start_in(dir: PathBuf, extra: &[&str]) -> RedisServer {
        let port = free_port();
        let mut args: Vec<String> =
            ["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--dir", dir.to_str().unwrap()]
                .iter()
                .map(|s| s.to_string())
                .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut server = RedisServer { port, pid: None, dir, args };
        server.restart();
        server
    }

    /// A server that also takes TLS connections, on the port returned, with the certificates of
    /// `core/src/store/redis/test-certs.sh` made in its folder (`ca.crt`, `client.crt`, ...: see
    /// `file`); `client_certs`: a TLS client must show a certificate signed by `ca.crt`. The
    /// plain port stays open for the test's own checks (`raw`, readiness).
    pub fn start_tls(client_certs: bool) -> (RedisServer, u16) {
        let dir = new_dir();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/store/redis/test-certs.sh");
        let made = Command::new("sh").arg(&script).arg(&dir).status().expect("run test-certs.sh");
        assert!(made.success(), "test-certs.sh failed (is openssl installed?)");
        let tls_port = free_port().to_string();
        let file = |name: &str| dir.join(name).to_str().unwrap().to_owned();
        let (cert, key, ca) = (file("server.crt"), file("server.key"), file("ca.crt"));
        let auth = if client_certs { "yes" } else { "no" };
        let server = Self::start_in(
            dir.clone(),
            &[
                "--tls-port",
                &tls_port,
                "--tls-cert-file",
                &cert,
                "--tls-key-file",
                &key,
                "--tls-ca-cert-file",
                &ca,
                "--tls-auth-clients",
                auth,
            ],
        );
        (server, tls_port.parse().unwrap())
    }

    /// A Redis Sentinel (`redis-server CONF --sentinel`: Debian's redis-server runs as one, the
    /// redis-sentinel package is not needed) watching the master `name` at
    /// `127.0.0.1:master_port`, with `quorum`, that judges a master down after a second.
    pub fn start_sentinel(name: &str, master_port: u16, quorum: u32) -> RedisServer {
        Self::start_sentinel_with(name, master_port, quorum, "")
    }

    /// As `start_sentinel`, with `conf` (lines) added to its sentinel.conf.
    pub fn start_sentinel_with(name: &str, master_port: u16, quorum: u32, conf_lines: &str) -> RedisServer {
        let dir = new_dir();
        let port = free_port();
        let conf = dir.join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {}\nsentinel monitor {name} 127.0.0.1 {master_port} {quorum}\n\
                 sentinel down-after-milliseconds {name} 1000\nsentinel failover-timeout {name} 10000\n\
                 sentinel parallel-syncs {name} 1\n{conf_lines}",
                dir.display()
            ),
        )
        .unwrap();
        let args = vec![conf.to_str().unwrap().to_owned(), "--sentinel".to_owned()];
        let mut server = RedisServer { port, pid: None, dir, args };
        server.restart();
        server
    }

    /// The path of file `name` in the server's folder (a certificate of `start_tls`).
    pub fn file(&self, name: &str) -> String {
        self.dir.join(name).to_str().unwrap().to_owned()
    }

    /// Starts the server (again, after `kill`) on its port, folder and arguments; waits until it
    /// answers PING (or asks for a password first).
    pub fn restart(&mut self) {
        assert!(self.pid.is_none(), "already running");
        let (tx, rx) = mpsc::channel();
        spawner().lock().unwrap().send((self.args.clone(), self.dir.clone(), tx)).unwrap();
        let pid = rx.recv().unwrap().expect("start redis-server (is it installed? apt-get install redis-server)");
        RUNNING.lock().unwrap().push((pid, self.dir.clone()));
        self.pid = Some(pid);
        let deadline = Instant::now() + Duration::from_secs(10);
        while raw(self.port, "PING").is_none_or(|r| !r.starts_with("+PONG") && !r.starts_with("-NOAUTH")) {
            assert!(Instant::now() < deadline, "redis-server on port {} did not answer PING", self.port);
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Kills the server at once (SIGKILL), as a crash would, and reaps it.
    pub fn kill(&mut self) {
        if let Some(pid) = self.pid.take() {
            // SAFETY: signals and reaps a child this process started.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, std::ptr::null_mut(), 0);
            }
            RUNNING.lock().unwrap().retain(|(p, _)| *p != pid);
        }
    }

    /// Pauses the server (SIGSTOP) until the guard is dropped (SIGCONT): it keeps its port, and
    /// the kernel still accepts connections and takes in what clients send, but the server
    /// reads and answers nothing meanwhile. A failing test resumes it as it unwinds.
    pub fn pause(&self) -> Paused<'_> {
        self.signal(libc::SIGSTOP);
        Paused { server: self }
    }

    fn signal(&self, signal: i32) {
        if let Some(pid) = self.pid {
            // SAFETY: signals a child this process started and has not reaped.
            unsafe { libc::kill(pid, signal) };
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A paused server (see `RedisServer::pause`); resumes it when dropped.
pub struct Paused<'a> {
    server: &'a RedisServer,
}

impl Paused<'_> {
    /// Resumes the server now.
    pub fn resume(self) {}
}

impl Drop for Paused<'_> {
    fn drop(&mut self) {
        self.server.signal(libc::SIGCONT);
    }
}

/// The server the tests of this binary share (each test under prefixes of its own); killed when
/// the process exits.
pub fn shared() -> &'static RedisServer {
    static SHARED: OnceLock<RedisServer> = OnceLock::new();
    SHARED.get_or_init(|| RedisServer::start(&[]))
}
