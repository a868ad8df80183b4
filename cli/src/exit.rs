//! Exit codes, from the status classes of docs/c-api.md, and the one error type of the tool.
//! Every failure prints one line `brokk: <message>` on stderr (the library's message as it is)
//! and exits with the code of its class, so that a script can tell "fix the command" from
//! "try again later".

use std::fmt;

use brokk_core::{Error, ErrorKind};

/// Exit codes (`brokk --help` and docs/cli.md list them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// Done.
    Ok = 0,
    /// Terminal or a bug: the broker is closed or unusable, brokk panicked, output could not be
    /// written. Retrying the same command will not help.
    Fatal = 1,
    /// The command line is wrong: an unknown option, a missing argument, no backend URL.
    Usage = 2,
    /// The library refused an argument (status class "caller"): a bad URL, topic, group, id or
    /// JSON, a store that cannot be opened or is not a brokk store. Fix the command.
    InvalidArgument = 3,
    /// Something named on the command line is not there (a dead letter to requeue).
    NotFound = 4,
    /// Status class "transient": timed out, full, unavailable, storage failed, outcome unknown,
    /// cancelled. The same command may succeed later (see docs/c-api.md for each).
    Transient = 5,
}

/// A failure: the exit code and the message for stderr.
#[derive(Debug)]
pub struct Failure {
    pub code: Code,
    pub message: String,
}

impl Failure {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Failure { code, message: message.into() }
    }

    pub fn usage(message: impl Into<String>) -> Self {
        Failure::new(Code::Usage, message)
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Failure::new(Code::InvalidArgument, message)
    }

    /// The same failure, its message after `context: `.
    pub fn prefixed(self, context: &str) -> Self {
        Failure { code: self.code, message: format!("{context}: {}", self.message) }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// The exit code of a library error, by its status class.
pub fn code_of(kind: ErrorKind) -> Code {
    use ErrorKind::*;
    match kind {
        Timeout | Full | Unavailable | StorageFailed | OutcomeUnknown | Cancelled => Code::Transient,
        Closed | Forked => Code::Fatal,
        UnknownSubscription | UnknownDelivery | UnknownListener => Code::NotFound,
        // Every other kind is of the caller class; a kind added later is one too until it is
        // placed here (ErrorKind is non_exhaustive).
        _ => Code::InvalidArgument,
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::new(code_of(e.kind()), e.message())
    }
}

/// Writing to stdout failed. A closed pipe (the reader is done) ends the run with `Code::Ok`.
impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            return Failure::new(Code::Ok, "");
        }
        Failure::new(Code::Fatal, format!("cannot write the output: {e}"))
    }
}

pub type Outcome<T = ()> = std::result::Result<T, Failure>;

/// The exit codes as `--help` shows them.
pub const HELP: &str = "\
Exit codes:
  0  done
  1  fatal: the broker is closed or unusable, a bug, output that cannot be written
  2  usage: a wrong command line, or no backend URL (--url or BROKK_URL)
  3  invalid argument: the library refused a URL, topic, group, id, JSON or store (fix the command)
  4  not found: a dead letter named by --requeue is not there
  5  transient: timed out, full, unavailable, storage failed, outcome unknown (may succeed later)";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_status_class_has_its_code() {
        assert_eq!(code_of(ErrorKind::InvalidTopic), Code::InvalidArgument);
        assert_eq!(code_of(ErrorKind::InvalidUrl), Code::InvalidArgument);
        assert_eq!(code_of(ErrorKind::CannotOpenStore), Code::InvalidArgument);
        assert_eq!(code_of(ErrorKind::UnknownDelivery), Code::NotFound);
        assert_eq!(code_of(ErrorKind::Unavailable), Code::Transient);
        assert_eq!(code_of(ErrorKind::OutcomeUnknown), Code::Transient);
        assert_eq!(code_of(ErrorKind::Closed), Code::Fatal);
    }
}
