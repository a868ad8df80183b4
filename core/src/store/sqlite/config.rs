//! The SQLite store's URL options and their defaults: `sqlite:///abs/path.db` or
//! `sqlite://relative/path.db`, with optional `?synchronous=normal|full&busy_timeout_ms=N&lease_ms=N`.
//! `config.rs` at the crate root maps the `sqlite` scheme to [`parse_url`].

use crate::config::{check_millis, invalid, millis, percent_decode, DEFAULT_LEASE};
use crate::error::Result;
use crate::store::Backend;

/// Default wait for a SQLite file another process holds locked (`busy_timeout_ms`).
pub const DEFAULT_SQLITE_BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Where and how to open a SQLite store: `sqlite:///abs/path.db` or `sqlite://relative/path.db`,
/// with optional `?synchronous=normal|full&busy_timeout_ms=N&lease_ms=N`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteConfig {
    pub path: std::path::PathBuf,
    pub synchronous: Synchronous,
    /// How long a write waits for a lock another process holds before failing with
    /// `ErrorKind::Unavailable`.
    pub busy_timeout: std::time::Duration,
    /// How long a delivery claimed without an ack deadline stays this broker's if it stops
    /// renewing it (see `DEFAULT_LEASE`).
    pub lease: std::time::Duration,
}

impl SqliteConfig {
    /// `path` with `Synchronous::Normal`, the default busy timeout and the default lease.
    pub fn new(path: impl Into<std::path::PathBuf>) -> Self {
        SqliteConfig {
            path: path.into(),
            synchronous: Synchronous::Normal,
            busy_timeout: DEFAULT_SQLITE_BUSY_TIMEOUT,
            lease: DEFAULT_LEASE,
        }
    }

    /// Checks the options a caller may have set in code (the URL parser checks its own).
    pub(crate) fn check(&self) -> Result<()> {
        check_millis("busy_timeout_ms", self.busy_timeout, 0)?;
        check_millis("lease_ms", self.lease, 3)
    }
}

/// How hard a SQLite commit tries to survive failures; both use a write-ahead log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Synchronous {
    /// A commit survives this process crashing; a power loss may lose the last commits (the
    /// file stays consistent).
    #[default]
    Normal,
    /// Every commit is synced to disk and survives a power loss.
    Full,
}

/// What follows `sqlite://`: the path (percent-escapes decoded), then the query options.
pub(crate) fn parse_url(_scheme: &str, rest: &str) -> Result<Backend> {
    parse(rest).map(Backend::Sqlite)
}

fn parse(rest: &str) -> Result<SqliteConfig> {
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    let path = percent_decode(path)?;
    if path.is_empty() || path == "/" {
        return Err(invalid(format!(
            "sqlite:// needs a file path, as in sqlite:///var/lib/app/brokk.db; got {rest:?}"
        )));
    }
    let mut config = SqliteConfig::new(path);
    for pair in query.into_iter().flat_map(|q| q.split('&')).filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "synchronous" => {
                config.synchronous = match value.to_ascii_lowercase().as_str() {
                    "normal" => Synchronous::Normal,
                    "full" => Synchronous::Full,
                    _ => return Err(invalid(format!("synchronous must be normal or full; got {value:?}"))),
                }
            }
            "busy_timeout_ms" => config.busy_timeout = millis(key, value, 0)?,
            "lease_ms" => config.lease = millis(key, value, 3)?,
            _ => {
                return Err(invalid(format!(
                    "unknown sqlite:// option {key:?}; the options are synchronous, busy_timeout_ms and lease_ms"
                )))
            }
        }
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_url;
    use crate::error::ErrorKind;

    #[test]
    fn sqlite_urls() {
        let sqlite = |url: &str| match parse_url(url) {
            Ok(Backend::Sqlite(c)) => c,
            other => panic!("{url}: {other:?}"),
        };
        let c = sqlite("sqlite:///var/lib/app/brokk.db");
        assert_eq!(c, SqliteConfig::new("/var/lib/app/brokk.db"));
        assert_eq!(sqlite("SQLITE://data/q.db").path, std::path::Path::new("data/q.db"));
        assert_eq!(sqlite("sqlite:///tmp/with%20space.db").path, std::path::Path::new("/tmp/with space.db"));
        let c = sqlite("sqlite:///x.db?synchronous=FULL&busy_timeout_ms=250&lease_ms=900");
        assert_eq!((c.synchronous, c.busy_timeout.as_millis(), c.lease.as_millis()), (Synchronous::Full, 250, 900));
        assert_eq!(sqlite("sqlite:///x.db?synchronous=normal&").synchronous, Synchronous::Normal);
        for bad in [
            "sqlite://",
            "sqlite:///",
            "sqlite://?synchronous=full",
            "sqlite:///x.db?synchronous=off",
            "sqlite:///x.db?busy_timeout_ms=-1",
            "sqlite:///x.db?lease_ms=0",
            "sqlite:///x.db?journal=wal",
            "sqlite:///x%zz.db",
            "sqlite:///x%ff.db",
        ] {
            assert_eq!(parse_url(bad).unwrap_err().kind(), ErrorKind::InvalidUrl, "{bad}");
        }
    }
}
