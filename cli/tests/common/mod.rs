//! Running the `brokk` binary in the tests, and the scenarios that the SQLite and Redis tests
//! both run: each against a store that a broker of the test process uses at the same time.

#![allow(dead_code)] // each test binary uses some of these

pub mod scenarios;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Bound on every wait for the tool (never a timing assertion: only "did not hang").
pub const PATIENCE: Duration = Duration::from_secs(30);

/// `brokk ARGS` with BROKK_URL set to `url` (None: unset), stdin empty.
pub fn brokk(url: Option<&str>, args: &[&str]) -> Output {
    brokk_with_stdin(url, args, "")
}

/// `brokk ARGS` with `stdin` as its input.
pub fn brokk_with_stdin(url: Option<&str>, args: &[&str], stdin: &str) -> Output {
    let mut child =
        command(url, args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    let text = stdin.to_owned();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        let _ = input.write_all(text.as_bytes());
    });
    let out = wait_output(child);
    writer.join().unwrap();
    out
}

pub fn command(url: Option<&str>, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_brokk"));
    c.args(args);
    match url {
        Some(u) => c.env("BROKK_URL", u),
        None => c.env_remove("BROKK_URL"),
    };
    c
}

/// The child's output, or a panic (and the child killed) if it runs past PATIENCE.
pub fn wait_output(child: Child) -> Output {
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(PATIENCE) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            kill(pid, libc::SIGKILL);
            panic!("brokk (pid {pid}) did not finish in {PATIENCE:?}");
        }
    }
}

pub fn kill(pid: u32, signal: i32) {
    // SAFETY: signals a child this test started and has not reaped.
    unsafe { libc::kill(pid as i32, signal) };
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts the exit code, showing what the tool said otherwise.
pub fn expect_code(out: &Output, code: i32) {
    assert_eq!(out.status.code(), Some(code), "stdout: {}\nstderr: {}", stdout(out), stderr(out));
}

/// The output of a successful run.
pub fn ok(url: &str, args: &[&str]) -> String {
    let out = brokk(Some(url), args);
    expect_code(&out, 0);
    stdout(&out)
}

/// The JSON document of a successful `--json` run.
pub fn ok_json(url: &str, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let text = ok(url, &all);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// A running `brokk tail` (or other long-running command): its stdout lines arrive on a channel.
pub struct Running {
    pub child: Child,
    pub lines: mpsc::Receiver<String>,
}

impl Running {
    /// Starts `brokk ARGS` and waits until it has written a stderr line containing `ready`
    /// (`tail` says "following TOPIC" once subscribed); an empty `ready` waits for nothing.
    pub fn start(url: &str, args: &[&str], ready: &str) -> Running {
        let mut child = command(Some(url), args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        let out = BufReader::new(child.stdout.take().unwrap());
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let (ready_tx, ready_rx) = mpsc::channel();
        let err = BufReader::new(child.stderr.take().unwrap());
        let wanted = ready.to_owned();
        std::thread::spawn(move || {
            let mut said = String::new();
            for line in err.lines().map_while(Result::ok) {
                if line.contains(&wanted) {
                    let _ = ready_tx.send(Ok(()));
                }
                said.push_str(&line);
                said.push('\n');
            }
            let _ = ready_tx.send(Err(said));
        });
        if ready.is_empty() {
            return Running { child, lines };
        }
        match ready_rx.recv_timeout(PATIENCE) {
            Ok(Ok(())) => Running { child, lines },
            Ok(Err(said)) => panic!("brokk {args:?} ended before it was ready: {said}"),
            Err(_) => {
                kill(child.id(), libc::SIGKILL);
                panic!("brokk {args:?} was not ready in {PATIENCE:?}")
            }
        }
    }

    /// The next stdout line (panics after PATIENCE).
    pub fn line(&self) -> String {
        self.lines.recv_timeout(PATIENCE).expect("a line from brokk in time")
    }

    /// Waits for the exit and returns its code (kills it and panics after PATIENCE).
    pub fn exit_code(mut self) -> Option<i32> {
        let deadline = std::time::Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("brokk did not exit in {PATIENCE:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
