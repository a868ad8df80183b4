//! Opening a store file without harming what is there: the path and the file's header are
//! checked with plain file reads before SQLite sees the file, so that a directory, a missing
//! folder, a foreign or damaged file is refused with nothing created and nothing written.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind as IoKind, Read};
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};

use super::checkpoint;
use super::errors::FileCtx;
use super::schema::{self, Step};
use super::SyncLevel;
use crate::error::Result;
use crate::fork_gate::{DropHeld, ForkHold};

/// A connection whose close holds forks off, as every other SQLite call here does (see
/// `crate::fork_gate`: a fork must not split SQLite's process-wide mutexes).
pub(super) type Conn = DropHeld<Connection>;

/// Statements each connection keeps prepared; more than the store uses.
const STATEMENT_CACHE: usize = 64;
/// Page cache of the writer, in KiB (SQLite's negative `cache_size`).
const WRITER_CACHE_KIB: i64 = 64 * 1024;
const READER_CACHE_KIB: i64 = 8 * 1024;
/// The first bytes of every SQLite database file.
const MAGIC: &[u8; 16] = b"SQLite format 3\0";

enum Existing {
    /// No file yet: SQLite will create it.
    Missing,
    /// An empty file, which SQLite treats as an empty database.
    Empty,
    /// A file whose header looks like a whole SQLite database.
    Database,
}

/// The writer connection of a store, with the schema created, validated or migrated.
///
/// Also returns the descriptor it locked the file with, unlocked: the caller keeps it open until
/// its SQLite connections are closed. Closing any descriptor of a file drops every fcntl(2) lock
/// the process holds on it, SQLite's included (SQLite's "posix advisory locks canceled by a
/// separate close()"), and another process could then take the file for its own.
pub(super) fn open_writer(ctx: &FileCtx, steps: &[Step]) -> Result<(Conn, File)> {
    let existing = preflight(ctx)?;
    // Several processes opening a new file at once would race to create the schema and switch
    // it to WAL, and SQLite answers such races with SQLITE_BUSY without waiting. So the whole
    // preparation runs under an exclusive flock(2) on the file, held only while opening. On
    // Linux, flock and SQLite's fcntl locks do not interact, so SQLite's own locking is
    // untouched.
    let (lock, created) = open_lock(ctx, matches!(existing, Existing::Missing))?;
    let conn = connect(ctx, false, WRITER_CACHE_KIB).and_then(|c| {
        let _hold = ForkHold::enter();
        schema::prepare(&c, ctx, steps)?;
        c.pragma_update(None, "wal_autocheckpoint", checkpoint::BACKSTOP_PAGES).map_err(|e| ctx.open_error(e))?;
        // From now on the writer waits for the write lock itself, taking turns with the
        // writers of other processes (`turns.rs`): SQLite's busy handler must not sleep.
        c.busy_timeout(std::time::Duration::ZERO).map_err(|e| ctx.open_error(e))?;
        Ok(c)
    });
    if conn.is_err() && created {
        // Leave no trace of a store that could not be made. Safe under the lock: nobody else
        // can have finished opening a file whose schema was never made.
        for p in [ctx.path.clone(), suffixed(&ctx.path, "-wal"), suffixed(&ctx.path, "-shm")] {
            let _ = fs::remove_file(p);
        }
    }
    // Unlocked, not closed (see above).
    let _ = lock.unlock();
    conn.map(|c| (c, lock))
}

/// Opens (creating it if `missing`) and flock-s the store file, waiting up to the busy
/// timeout. Returns the locked file and whether this call created it.
fn open_lock(ctx: &FileCtx, missing: bool) -> Result<(File, bool)> {
    let (file, created) = if missing {
        match OpenOptions::new().read(true).write(true).create_new(true).open(&ctx.path) {
            Ok(f) => (f, true),
            // Another process created it meanwhile: open theirs.
            Err(e) if e.kind() == IoKind::AlreadyExists => {
                (File::open(&ctx.path).map_err(|e| ctx.cannot_open(e))?, false)
            }
            Err(e) => return Err(ctx.cannot_open(e)),
        }
    } else {
        (File::open(&ctx.path).map_err(|e| ctx.cannot_open(e))?, false)
    };
    let deadline = std::time::Instant::now() + ctx.busy_timeout;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok((file, created)),
            Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(crate::error::Error::new(
                    crate::error::ErrorKind::Unavailable,
                    format!(
                        "store {} is being opened by another process for longer than the busy timeout ({} ms)",
                        ctx.path.display(),
                        ctx.busy_timeout.as_millis()
                    ),
                ))
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(ctx.cannot_open(e)),
        }
    }
}

/// A connection for reads only, to a store `open_writer` prepared.
pub(super) fn connect_reader(ctx: &FileCtx) -> Result<Conn> {
    let conn = connect(ctx, false, READER_CACHE_KIB)?;
    conn.pragma_update(None, "query_only", true).map_err(|e| ctx.open_error(e))?;
    Ok(conn)
}

/// A connection for the checkpoint thread.
pub(super) fn connect_checkpointer(ctx: &FileCtx) -> Result<Conn> {
    connect(ctx, false, READER_CACHE_KIB)
}

fn connect(ctx: &FileCtx, create: bool, cache_kib: i64) -> Result<Conn> {
    let _hold = ForkHold::enter();
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if create {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    let conn = Connection::open_with_flags(&ctx.path, flags).map_err(|e| ctx.open_error(e))?;
    let setup = || -> rusqlite::Result<()> {
        conn.busy_timeout(ctx.busy_timeout)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        let sync = match ctx.sync {
            SyncLevel::Normal => "NORMAL",
            SyncLevel::Full => "FULL",
        };
        conn.pragma_update(None, "synchronous", sync)?;
        conn.pragma_update(None, "cache_size", -cache_kib)?;
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        Ok(())
    };
    setup().map_err(|e| ctx.open_error(e))?;
    Ok(DropHeld::new(conn))
}

/// Checks the path and, for an existing file, its header, with plain file reads.
fn preflight(ctx: &FileCtx) -> Result<Existing> {
    let path = &ctx.path;
    let md = match fs::metadata(path) {
        Ok(md) => md,
        Err(e) if e.kind() == IoKind::NotFound => return check_parent(ctx),
        Err(e) => return Err(ctx.cannot_open(e)),
    };
    if md.is_dir() {
        return Err(ctx.cannot_open("it is a directory, not a file"));
    }
    if !md.is_file() {
        return Err(ctx.cannot_open("it is not a regular file"));
    }
    // Opening for writing changes nothing (no truncate, no create) but proves we may write.
    let mut file = OpenOptions::new().read(true).write(true).open(path).map_err(|e| match e.kind() {
        IoKind::PermissionDenied => ctx.cannot_open("it is read-only or not accessible (permission denied)"),
        _ => ctx.cannot_open(e),
    })?;
    if md.len() == 0 {
        return Ok(Existing::Empty);
    }
    check_header(ctx, &mut file, md.len())?;
    Ok(Existing::Database)
}

fn check_parent(ctx: &FileCtx) -> Result<Existing> {
    let parent = match ctx.path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    match fs::metadata(parent) {
        Ok(md) if md.is_dir() => Ok(Existing::Missing),
        Ok(_) => Err(ctx.cannot_open(format!("{} is not a folder", parent.display()))),
        Err(e) if e.kind() == IoKind::NotFound => {
            Err(ctx.cannot_open(format!("the folder {} does not exist", parent.display())))
        }
        Err(e) => Err(ctx.cannot_open(format!("the folder {} is not accessible: {e}", parent.display()))),
    }
}

/// Refuses files that are not SQLite databases, or visibly truncated ones (the header records
/// the database size). Deeper damage shows at first use as `IncompatibleStore`; a full
/// `quick_check` here would cost a read of the whole file on every open.
fn check_header(ctx: &FileCtx, file: &mut File, len: u64) -> Result<()> {
    let mut header = [0u8; 100];
    if len < header.len() as u64 {
        return Err(ctx.incompatible(format!("it is not a SQLite database (only {len} bytes)")));
    }
    file.read_exact(&mut header).map_err(|e| ctx.cannot_open(e))?;
    if &header[..16] != MAGIC {
        return Err(ctx.incompatible("it is not a SQLite database (no SQLite header)"));
    }
    let be32 = |at: usize| u32::from_be_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]]);
    let page_size = match u16::from_be_bytes([header[16], header[17]]) {
        1 => 65_536,
        n if n >= 512 && n.is_power_of_two() => u64::from(n),
        n => return Err(ctx.incompatible(format!("its header is damaged (page size {n})"))),
    };
    if !len.is_multiple_of(page_size) {
        return Err(ctx.incompatible(format!("it is truncated or damaged ({len} bytes, pages of {page_size})")));
    }
    // The recorded size is only meaningful when the change counter matches, and a write-ahead
    // log may still hold part of the database (a checkpoint in progress): then SQLite recovers.
    let pages = u64::from(be32(28));
    let recorded_valid = pages != 0 && be32(24) == be32(92);
    let wal_len = fs::metadata(suffixed(&ctx.path, "-wal")).map(|m| m.len()).unwrap_or(0);
    if recorded_valid && wal_len == 0 && len < pages * page_size {
        return Err(ctx.incompatible(format!(
            "it is truncated ({len} bytes where its header records {pages} pages of {page_size})"
        )));
    }
    Ok(())
}

/// `path` with `suffix` appended to its file name, as SQLite names its `-wal` and `-shm` files.
fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut s = OsString::from(path.as_os_str());
    s.push(suffix);
    PathBuf::from(s)
}
