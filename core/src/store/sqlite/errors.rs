//! SQLite failures mapped onto the store error kinds, each message naming the file: a broker
//! may have several stores open, and "database is locked" alone does not say which.

use std::path::PathBuf;
use std::time::Duration;

use rusqlite::ErrorCode;

use super::SyncLevel;
use crate::error::{Error, ErrorKind};

/// What every connection of one store shares: where it is and how to reach it.
#[derive(Debug)]
pub(super) struct FileCtx {
    pub path: PathBuf,
    pub busy_timeout: Duration,
    pub sync: SyncLevel,
    /// Where the store's records go (the broker's log).
    pub log: crate::log::Log,
}

/// An error inside a transaction: SQLite's, kept raw until it leaves the transaction (then it
/// gets the path), or a brokk error such as retention's `Full`.
#[derive(Debug)]
pub(crate) enum TxError {
    Sql(rusqlite::Error),
    Brokk(Error),
}

impl From<rusqlite::Error> for TxError {
    fn from(e: rusqlite::Error) -> Self {
        TxError::Sql(e)
    }
}

impl From<Error> for TxError {
    fn from(e: Error) -> Self {
        TxError::Brokk(e)
    }
}

pub(super) type TxResult<T> = std::result::Result<T, TxError>;

impl FileCtx {
    pub fn error(&self, e: TxError) -> Error {
        match e {
            TxError::Sql(e) => self.sql_error(e),
            TxError::Brokk(e) => e,
        }
    }

    /// A failure of a store already open.
    pub fn sql_error(&self, e: rusqlite::Error) -> Error {
        self.map(e, false)
    }

    /// A failure while opening: here "cannot open" and "read-only" mean the file as given can
    /// not be used, not that it broke.
    pub fn open_error(&self, e: rusqlite::Error) -> Error {
        self.map(e, true)
    }

    pub fn incompatible(&self, why: impl std::fmt::Display) -> Error {
        Error::new(
            ErrorKind::IncompatibleStore,
            format!("{} is not a usable brokk store: {why}; it was left untouched", self.path.display()),
        )
    }

    pub fn cannot_open(&self, why: impl std::fmt::Display) -> Error {
        Error::new(ErrorKind::CannotOpenStore, format!("cannot open store {}: {why}", self.path.display()))
    }

    fn map(&self, e: rusqlite::Error, opening: bool) -> Error {
        let path = self.path.display();
        let code = e.sqlite_error_code();
        match code {
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => Error::new(
                ErrorKind::Unavailable,
                format!(
                    "store {path} is locked by another process or connection for longer than the busy timeout \
                     ({} ms); try again later ({e})",
                    self.busy_timeout.as_millis()
                ),
            ),
            Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => Error::new(
                ErrorKind::IncompatibleStore,
                format!("store {path} is corrupt or not a SQLite database ({e})"),
            ),
            Some(ErrorCode::CannotOpen | ErrorCode::PermissionDenied | ErrorCode::ReadOnly) if opening => {
                self.cannot_open(format!("{e} (is the file or its folder read-only?)"))
            }
            Some(ErrorCode::DiskFull) => Error::new(
                ErrorKind::StorageFailed,
                format!("store {path}: the disk is full; nothing was written ({e})"),
            ),
            _ => {
                // The extended code tells which I/O step failed (SQLITE_IOERR_* is 10 + 256 * n).
                let extended = match &e {
                    rusqlite::Error::SqliteFailure(f, _) => format!(" (SQLite code {})", f.extended_code),
                    _ => String::new(),
                };
                Error::new(ErrorKind::StorageFailed, format!("store {path} failed: {e}{extended}"))
            }
        }
    }
}
