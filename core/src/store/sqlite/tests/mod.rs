//! Tests of the SQLite store. Two `SqliteFile`s on one path stand in for two processes: each has
//! its own connections, and SQLite locks between connections as between processes.

mod bench;
mod concurrency;
mod files;
mod leases;
mod plans;
mod publish;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::{NewMessage, PublishReceipt, Retention, SqliteFile, SqliteOptions, StoredDelivery, StoredMessage};
use crate::error::Result;

/// A folder of its own under the system temp dir, removed on drop.
pub(super) struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("brokk-sqlite-{}-{n}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(super) fn options(path: &Path) -> SqliteOptions {
    SqliteOptions { busy_timeout: Duration::from_secs(5), ..SqliteOptions::new(path) }
}

pub(super) fn open(path: &Path) -> SqliteFile {
    SqliteFile::open(&options(path)).unwrap()
}

pub(super) fn msg(id: &str, priority: i32) -> StoredMessage {
    StoredMessage {
        id: id.to_owned(),
        payload: format!("{{\"id\":\"{id}\"}}").into_bytes(),
        metadata: None,
        priority,
        timestamp_ms: crate::message::now_ms(),
    }
}

pub(super) fn publish(f: &SqliteFile, topic: &str, msgs: &[StoredMessage], r: Retention) -> Result<PublishReceipt> {
    let batch: Vec<NewMessage<'_>> = msgs.iter().map(StoredMessage::as_new).collect();
    f.publish(topic, &batch, r)
}

/// Publishes one message per id, each of priority 0, in one call.
pub(super) fn publish_ids(f: &SqliteFile, topic: &str, ids: &[&str]) {
    let msgs: Vec<_> = ids.iter().map(|id| msg(id, 0)).collect();
    publish(f, topic, &msgs, Retention::Reject(1000)).unwrap();
}

pub(super) fn ids(ds: &[StoredDelivery]) -> Vec<&str> {
    ds.iter().map(|d| d.message.id.as_str()).collect()
}

pub(super) fn settle_all(f: &SqliteFile, owner: &str, ds: &[StoredDelivery]) -> Vec<bool> {
    let keys: Vec<_> = ds.iter().map(|d| (d.key, d.attempt)).collect();
    f.ack(owner, &keys).unwrap()
}

/// Rows of `table` (the message bodies, say), read behind the API's back.
pub(super) fn rows(f: &SqliteFile, table: &str) -> u64 {
    f.readers.with(|c| c.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get::<_, i64>(0))).unwrap()
        as u64
}

pub(super) const LEASE: Duration = Duration::from_secs(30);
