//! The file's schema and its versions. A brokk file carries brokk's `application_id` and its
//! schema version in `user_version` (also in `meta`, for people reading the file with the
//! sqlite3 shell). Opening a file of an older version runs the missing steps in one
//! transaction; a newer version, or a file of another application, is refused untouched.

use rusqlite::{Connection, OptionalExtension};

use super::errors::FileCtx;
use crate::error::Result;

/// "BRKK": marks the file as brokk's for `file(1)` and for `open`.
pub(super) const APPLICATION_ID: i32 = 0x4252_4B4B;

/// One step of the schema's history: run on a file at the version before, it leaves the file
/// at `to`. Steps run inside the opening transaction; they must not commit.
pub(super) struct Step {
    pub to: u32,
    pub run: fn(&Connection) -> rusqlite::Result<()>,
}

/// Every version so far, oldest first. Version 1 is the base, made from an empty file.
pub(super) const STEPS: &[Step] =
    &[Step { to: 1, run: create_v1 }, Step { to: 2, run: create_v2 }, Step { to: 3, run: create_v3 }];

/// The tables and indexes of version 1 (see the module doc of `sqlite` for the states).
const V1: &str = "
CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE counters (name TEXT PRIMARY KEY NOT NULL, value INTEGER NOT NULL) WITHOUT ROWID;
INSERT INTO counters (name, value) VALUES ('seq', 1);
CREATE TABLE topics (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    retained INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE consumer_groups (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic_id INTEGER NOT NULL,
    name TEXT,
    owner TEXT,
    ready INTEGER NOT NULL DEFAULT 0,
    CHECK ((name IS NULL) <> (owner IS NULL))
);
CREATE UNIQUE INDEX consumer_groups_by_name ON consumer_groups (topic_id, name) WHERE name IS NOT NULL;
CREATE INDEX consumer_groups_by_topic ON consumer_groups (topic_id);
CREATE INDEX consumer_groups_by_owner ON consumer_groups (owner) WHERE owner IS NOT NULL;
CREATE TABLE messages (
    id INTEGER PRIMARY KEY,
    refs INTEGER NOT NULL,
    priority INTEGER NOT NULL,
    timestamp_ms INTEGER NOT NULL,
    msg_id TEXT NOT NULL,
    payload BLOB NOT NULL,
    metadata BLOB
);
CREATE TABLE retained (
    topic_id INTEGER NOT NULL,
    message INTEGER NOT NULL,
    PRIMARY KEY (topic_id, message)
) WITHOUT ROWID;
CREATE TABLE deliveries (
    key INTEGER PRIMARY KEY,
    group_id INTEGER NOT NULL,
    message INTEGER NOT NULL,
    priority INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    state INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    due INTEGER NOT NULL,
    owner TEXT
);
CREATE INDEX deliveries_ready ON deliveries (group_id, priority DESC, seq) WHERE state = 0;
CREATE INDEX deliveries_delayed ON deliveries (group_id, due) WHERE state = 1;
CREATE INDEX deliveries_leased ON deliveries (group_id, due) WHERE state = 2;
";

fn create_v1(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(V1)?;
    conn.pragma_update(None, "application_id", APPLICATION_ID)?;
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('schema_version', '0'), ('created_ms', ?1), ('created_by', ?2)",
        (crate::message::now_ms().to_string(), concat!("brokk ", env!("CARGO_PKG_VERSION"))),
    )?;
    Ok(())
}

/// Version 2: the broker instances that use the file (`owners`), each with the lease it holds
/// deliveries under and when it last said it was alive, so that the anonymous groups of one
/// that stopped can be collected (see `owners.rs`).
const V2: &str = "
CREATE TABLE owners (
    owner TEXT PRIMARY KEY NOT NULL,
    lease_ms INTEGER NOT NULL,
    seen_ms INTEGER NOT NULL
) WITHOUT ROWID;
";

fn create_v2(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(V2)
}

/// Version 3: each group orders its own deliveries (`consumer_groups.seq`), and the file-wide
/// counter (`counters.seq`) only hands out delivery keys, in blocks reserved by each writer (see
/// `keys.rs`). A publish then writes the group row it already wrote (for `ready`) instead of
/// one more page, the counter's, in every commit. Existing groups continue from the file-wide
/// value, so what they hold stays in front of what comes next.
const V3: &str = "
ALTER TABLE consumer_groups ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
UPDATE consumer_groups SET seq = (SELECT value FROM counters WHERE name = 'seq');
";

fn create_v3(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(V3)
}

/// What `open` found in the file.
#[derive(Debug, PartialEq, Eq)]
enum Found {
    /// An empty database: make it a brokk store.
    New,
    /// A brokk store at this version, which is older than the newest step.
    Older(u32),
    Current,
}

fn latest(steps: &[Step]) -> u32 {
    steps.last().map_or(0, |s| s.to)
}

fn inspect(conn: &Connection, ctx: &FileCtx, steps: &[Step]) -> Result<Found> {
    let read = |sql: &str| conn.query_row(sql, [], |r| r.get::<_, i64>(0)).map_err(|e| ctx.open_error(e));
    let app = read("PRAGMA application_id")? as i32;
    let version = read("PRAGMA user_version")?;
    let objects = read("SELECT count(*) FROM sqlite_schema")?;
    let newest = latest(steps);
    if app != APPLICATION_ID {
        return match (app, objects) {
            (0, 0) if version == 0 => Ok(Found::New),
            (0, _) => Err(ctx.incompatible(format!(
                "it is a SQLite database of another application ({objects} tables and indexes, no brokk application id)"
            ))),
            _ => Err(ctx.incompatible(format!(
                "it is a SQLite database of another application (application id {app:#010x}, brokk's is \
                 {APPLICATION_ID:#010x})"
            ))),
        };
    }
    if version > i64::from(newest) {
        return Err(ctx.incompatible(format!(
            "it was written by a newer brokk (schema version {version}; this build knows versions up to {newest})"
        )));
    }
    if version <= 0 {
        return Err(ctx.incompatible(format!("it has brokk's application id but schema version {version}")));
    }
    let version = version as u32;
    let meta: Option<String> = conn
        .query_row("SELECT value FROM meta WHERE key = 'schema_version'", [], |r| r.get(0))
        .optional()
        .map_err(|_| ctx.incompatible("its meta table is missing"))?;
    if meta.as_deref() != Some(version.to_string().as_str()) {
        return Err(ctx.incompatible(format!(
            "it says schema version {version} in its header but {meta:?} in its meta table; it is corrupt"
        )));
    }
    Ok(if version == newest { Found::Current } else { Found::Older(version) })
}

/// Makes the file behind `conn` a brokk store at the newest version of `steps`, or proves it
/// is one. Ends with the write lock taken and released once, so a file another process keeps
/// locked is reported (`Unavailable`) now rather than at the first publish.
pub(super) fn prepare(conn: &Connection, ctx: &FileCtx, steps: &[Step]) -> Result<()> {
    let found = inspect(conn, ctx, steps)?;
    // Only now that the file is known to be (or become) ours may anything be changed in it.
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)).map_err(|e| ctx.open_error(e))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(ctx.cannot_open(format!("it can not use a write-ahead log (journal mode stays {mode})")));
    }
    conn.execute_batch("BEGIN IMMEDIATE").map_err(|e| ctx.open_error(e))?;
    let done = match found {
        Found::Current => Ok(()),
        // Another process may have created or migrated it since: look again under the lock.
        _ => inspect(conn, ctx, steps).and_then(|found| upgrade(conn, ctx, steps, found)),
    };
    let end = if done.is_ok() { "COMMIT" } else { "ROLLBACK" };
    let ended = conn.execute_batch(end).map_err(|e| ctx.open_error(e));
    done.and(ended)
}

fn upgrade(conn: &Connection, ctx: &FileCtx, steps: &[Step], found: Found) -> Result<()> {
    let from = match found {
        Found::Current => return Ok(()),
        Found::New => 0,
        Found::Older(v) => v,
    };
    for step in steps.iter().filter(|s| s.to > from) {
        let run = || -> rusqlite::Result<()> {
            (step.run)(conn)?;
            conn.pragma_update(None, "user_version", step.to)?;
            conn.execute("UPDATE meta SET value = ?1 WHERE key = 'schema_version'", [step.to.to_string()])?;
            Ok(())
        };
        run().map_err(|e| {
            let e = ctx.open_error(e);
            crate::error::Error::new(
                e.kind(),
                format!("migrating to schema version {} failed, the file is unchanged: {}", step.to, e.message()),
            )
        })?;
    }
    Ok(())
}
