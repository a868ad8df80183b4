//! What the integration tests share: a kit that makes brokers on one backend, so that the same
//! test runs on memory and on SQLite (a temporary folder per test, removed afterwards).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use brokk::{Backend, Broker, BrokerConfig, SqliteConfig};

pub struct Kit {
    /// None: memory. Some: the folder that holds this test's SQLite files.
    dir: Option<PathBuf>,
    next: AtomicU32,
}

impl Kit {
    pub fn memory() -> Kit {
        Kit { dir: None, next: AtomicU32::new(0) }
    }

    /// A kit whose brokers each get a new SQLite file in a folder of their own, under the
    /// system temp dir; `name` makes it recognisable.
    pub fn sqlite(name: &str) -> Kit {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("brokk-test-{}-{n}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Kit { dir: Some(dir), next: AtomicU32::new(0) }
    }

    /// Whether what waits survives the broker (SQLite): close keeps named groups' deliveries
    /// and retained messages in the file instead of dropping them.
    pub fn durable(&self) -> bool {
        self.dir.is_some()
    }

    pub fn dir(&self) -> &Path {
        self.dir.as_deref().expect("a SQLite kit")
    }

    /// `config` on this kit's backend: for SQLite, a new file.
    pub fn config(&self, config: BrokerConfig) -> BrokerConfig {
        match &self.dir {
            None => config,
            Some(dir) => {
                let n = self.next.fetch_add(1, Ordering::Relaxed);
                BrokerConfig { backend: Backend::Sqlite(SqliteConfig::new(dir.join(format!("b{n}.db")))), ..config }
            }
        }
    }

    pub fn with(&self, config: BrokerConfig) -> Broker {
        Broker::with_config(&self.config(config)).unwrap()
    }

    pub fn broker(&self, workers: usize) -> Broker {
        self.with(BrokerConfig { worker_threads: workers, ..Default::default() })
    }
}

impl Drop for Kit {
    fn drop(&mut self) {
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Generates, for each test function `name(&Kit)`, a `memory::name` and a `sqlite::name` test.
#[macro_export]
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(#[test] fn $name() { super::$name(&super::common::Kit::memory()) })*
        }
        mod sqlite {
            $(#[test] fn $name() { super::$name(&super::common::Kit::sqlite(stringify!($name))) })*
        }
    };
}
