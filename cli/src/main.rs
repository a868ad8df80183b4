//! `brokk`: the command-line tool over brokk-core's public Rust API (docs/cli.md).
//!
//! Each run opens a broker on the URL given (`--url` or `BROKK_URL`), does one command, closes
//! the broker and exits with a code of the failure's status class (`exit.rs`). On a shared
//! store (SQLite, Redis) the commands see and change what every process sees; on memory:// only
//! this process's own broker, which ends with it.

#![forbid(unsafe_code)]

mod args;
mod commands;
mod exit;
mod output;
mod signals;

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use brokk_core::Broker;
use clap::Parser;

use args::{Cli, Command};
use exit::{Code, Failure, Outcome};

/// How long closing the broker waits for outstanding deliveries: not at all. Every command has
/// finished its own work by then; what still waits in the groups it touched (a peeked or
/// given-back message) is the store's, and a graceful close on SQLite or Redis leaves it there
/// (a wait would only last until the timeout, since no consumer of this run takes it).
const CLOSE_TIMEOUT: Duration = Duration::ZERO;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version print to stdout and succeed; usage errors read like the
            // others: "brokk: ..." and exit code 2.
            if !e.use_stderr() {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            let text = e.render().to_string();
            let text = text.strip_prefix("error: ").unwrap_or(&text);
            eprint!("brokk: {text}");
            return ExitCode::from(Code::Usage as u8);
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        // A reader that went away (`brokk tail t | head -1`): the end of the run, not a failure.
        Err(f) if f.code == Code::Ok => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("brokk: {}", f.message);
            ExitCode::from(f.code as u8)
        }
    }
}

fn run(cli: Cli) -> Outcome {
    let url = cli.url.as_deref().filter(|u| !u.is_empty()).ok_or_else(|| {
        Failure::usage(
            "no backend URL: pass --url or set BROKK_URL (memory://, sqlite:///path/to/file.db, \
             redis://host:port/0?prefix=NAME)",
        )
    })?;
    let broker = Broker::open(url)?;
    let result = dispatch(&broker, cli.command, cli.json);
    // Closed in every case, so that a SQLite or Redis store gets back at once what this run
    // held (a tail's subscription, a fetch interrupted by an error).
    let closed = broker.close(Some(CLOSE_TIMEOUT), false);
    let _ = std::io::stdout().flush();
    result?;
    closed.map(|_| ()).map_err(Failure::from)
}

fn dispatch(broker: &Broker, command: Command, json: bool) -> Outcome {
    match command {
        Command::Stats(a) => commands::stats::run(broker, &a, json),
        Command::Count(a) => commands::count::count(broker, &a, json),
        Command::Purge(a) => commands::count::purge(broker, &a, json),
        Command::Peek(a) => commands::peek::run(broker, &a, json),
        Command::Publish(a) => commands::publish::run(broker, &a, json),
        Command::Tail(a) => commands::tail::run(broker, &a, json),
        Command::DeadLetters(a) => commands::dead_letters::run(broker, &a, json),
    }
}

/// Writes `text` and a newline to stdout (a failed write is a failure, see `main`).
pub fn say(text: impl AsRef<str>) -> Outcome {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_ref().as_bytes())?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(())
}

/// Topic names as the core takes them.
pub fn topic_refs(topics: &[String]) -> Vec<&str> {
    topics.iter().map(String::as_str).collect()
}
