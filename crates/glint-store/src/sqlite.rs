//! The SQLite implementation of the store: one database file (`glint.db`,
//! WAL mode, bundled SQLite) in the data directory.
//!
//! [`SqliteStore`] is `Send + Sync` (a mutex around one connection) and cheap
//! to clone (clones share the connection): the CLI and the conductor open the
//! same file concurrently; SQLite's locking and a busy timeout serialise
//! writers across processes.
//!
//! Every write goes through [`SqliteStore::write`]: one `BEGIN IMMEDIATE`
//! transaction that first checks the handle's fence (see
//! [`crate::leadership`]), then writes, then commits and moves the change
//! feed. So a fenced write is refused atomically with what it would have
//! written, and nothing is ever half-written.

use crate::clock::{Clock, SystemClock};
use crate::{StoreError, file, meta, schema};
use rusqlite::{Connection, Transaction};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;
use tokio::sync::watch;

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "glint.db";

/// The SQLite store. See the module documentation.
#[derive(Clone)]
pub struct SqliteStore {
    pub(crate) inner: Arc<Inner>,
    /// The leadership epoch every write must still hold, if this handle is
    /// a conductor's.
    pub(crate) fence: Option<u64>,
}

pub(crate) struct Inner {
    conn: Mutex<Connection>,
    pub(crate) path: PathBuf,
    pub(crate) dir: PathBuf,
    pub(crate) clock: Arc<dyn Clock>,
    /// The change feed's revision (see [`crate::feed`]).
    pub(crate) feed: Arc<watch::Sender<u64>>,
    /// Started on the first subscription.
    pub(crate) watcher: OnceLock<()>,
    /// How long writes take.
    pub(crate) write_latency: crate::stats::Recorder,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .field("fence", &self.fence)
            .finish()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the store in `dir`, migrating its schema,
    /// with the system clock.
    pub fn open(dir: &Path) -> Result<SqliteStore, StoreError> {
        SqliteStore::open_with_clock(dir, Arc::new(SystemClock))
    }

    /// Opens (creating if needed) the store in `dir` with `clock` as the
    /// source of every time it writes. The directory is prepared and checked
    /// first ([`crate::prepare_data_dir`]); an existing file must be a Glint
    /// store ([`StoreError::NotAStore`]).
    pub fn open_with_clock(dir: &Path, clock: Arc<dyn Clock>) -> Result<SqliteStore, StoreError> {
        crate::datadir::prepare_data_dir(dir)?;
        // The directory may exist and still be unwritable; probe writability
        // so the user gets a message about the directory, not an obscure
        // SQLite error later.
        probe_writable(dir)?;
        let path = dir.join(DB_FILE);
        match path.metadata() {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => file::create(dir, &path)?,
            Err(source) => {
                return Err(StoreError::DataDir {
                    path: path.clone(),
                    source,
                });
            }
        }
        file::check_header(&path)?;
        crate::datadir::tighten(&path, 0o600);
        for c in file::companions(&path) {
            crate::datadir::tighten(&c, 0o600);
        }
        // No CREATE flag: a file that vanished since is an error, not a new store.
        let conn = Connection::open_with_flags(
            &path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|source| StoreError::Sqlite {
            path: path.clone(),
            what: "cannot open",
            source,
        })?;
        let store = SqliteStore::from_connection(conn, path, dir.to_owned(), clock);
        store
            .lock()
            .busy_timeout(Duration::from_secs(10))
            .map_err(|e| store.err("cannot set busy timeout", e))?;
        file::check_contents(&store)?;
        store.configure()?;
        schema::migrate(&store)?;
        meta::ensure_store_id(&store)?;
        Ok(store)
    }

    /// A store over an open connection (no checks: the callers make them).
    pub(crate) fn from_connection(
        conn: Connection,
        path: PathBuf,
        dir: PathBuf,
        clock: Arc<dyn Clock>,
    ) -> SqliteStore {
        let (feed, _) = watch::channel(0);
        SqliteStore {
            inner: Arc::new(Inner {
                conn: Mutex::new(conn),
                path,
                dir,
                clock,
                feed: Arc::new(feed),
                watcher: OnceLock::new(),
                write_latency: crate::stats::Recorder::default(),
            }),
            fence: None,
        }
    }

    /// Opens an existing store for a command that may write: `None` if the
    /// directory or database does not exist (so that nothing is created for
    /// nothing), else as [`SqliteStore::open`].
    pub fn open_existing(dir: &Path) -> Result<Option<SqliteStore>, StoreError> {
        match SqliteStore::exists(dir)? {
            true => SqliteStore::open(dir).map(Some),
            false => Ok(None),
        }
    }

    /// Opens an existing store for reading only: creates, migrates and writes
    /// nothing, so it works on a read-only or full filesystem. `None` when
    /// nothing has been recorded in `dir`. Every write through the returned
    /// store fails.
    pub fn open_read_only(dir: &Path) -> Result<Option<SqliteStore>, StoreError> {
        match SqliteStore::exists(dir)? {
            true => file::open_read_only(dir, &dir.join(DB_FILE)),
            false => Ok(None),
        }
    }

    /// Whether `dir` has a database file, distinguishing "nothing here yet"
    /// from "cannot look".
    fn exists(dir: &Path) -> Result<bool, StoreError> {
        let path = dir.join(DB_FILE);
        match std::fs::metadata(&path) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => match std::fs::read_dir(dir) {
                Ok(_) => Ok(false),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
                Err(source) => Err(StoreError::DataDir {
                    path: dir.to_owned(),
                    source,
                }),
            },
            Err(source) => Err(StoreError::DataDir {
                path: dir.to_owned(),
                source,
            }),
        }
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The clock every written time comes from.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    fn configure(&self) -> Result<(), StoreError> {
        let conn = self.lock();
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
             PRAGMA foreign_keys = ON;",
        )
        .map_err(|e| self.err("cannot configure", e))?;
        // Stores made before Glint set an application id get it now.
        let app: i32 = conn
            .query_row("PRAGMA application_id", [], |r| r.get(0))
            .map_err(|e| self.err("cannot read application id", e))?;
        if app == 0 {
            conn.pragma_update(None, "application_id", file::APPLICATION_ID)
                .map_err(|e| self.err("cannot set application id", e))?;
        }
        Ok(())
    }

    /// Now, by the store's clock.
    pub(crate) fn now(&self) -> i64 {
        self.inner.clock.now_ms()
    }

    /// Locks the connection. A poisoned mutex (a panic while holding it) is
    /// recovered: SQLite transactions make every write atomic, so the
    /// connection is consistent even then.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Connection> {
        self.inner.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn err(&self, what: &'static str, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.inner.path.clone(),
            what,
            source,
        }
    }

    pub(crate) fn corrupt(&self, what: &'static str, detail: impl ToString) -> StoreError {
        StoreError::Corrupt {
            path: self.inner.path.clone(),
            what,
            detail: detail.to_string(),
        }
    }

    /// Runs `f` in one immediate transaction, after checking this handle's
    /// fence, and moves the change feed once it committed.
    pub(crate) fn write<T>(
        &self,
        what: &'static str,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let started = std::time::Instant::now();
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| self.err(what, e))?;
        if let Some(held) = self.fence {
            let current = crate::leadership::current_epoch(self, &tx)?;
            if current != held {
                return Err(StoreError::Fenced { held, current });
            }
        }
        let out = f(&tx)?;
        tx.commit().map_err(|e| self.err(what, e))?;
        drop(conn);
        self.inner.write_latency.record(started.elapsed());
        self.inner.feed.send_modify(|r| *r += 1);
        Ok(out)
    }
}

impl crate::stats::WriteStats for SqliteStore {
    fn write_latency(&self) -> crate::stats::WriteLatency {
        self.inner.write_latency.snapshot()
    }
}

fn probe_writable(dir: &Path) -> Result<(), StoreError> {
    let probe = dir.join(format!(".probe-{}", std::process::id()));
    std::fs::write(&probe, b"")
        .and_then(|()| std::fs::remove_file(&probe))
        .map_err(|source| StoreError::DataDir {
            path: dir.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prelude::*;

    #[test]
    fn open_creates_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let id = {
            let s = SqliteStore::open(dir.path()).unwrap();
            s.store_id().unwrap()
        };
        let s = SqliteStore::open(dir.path()).unwrap();
        assert_eq!(s.store_id().unwrap(), id, "store id is stable across opens");
        assert_eq!(id.len(), 16);
    }

    #[test]
    fn open_existing_does_not_create() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("nothing-here");
        assert!(SqliteStore::open_existing(&sub).unwrap().is_none());
        assert!(!sub.exists());
    }

    #[test]
    fn unwritable_data_dir_is_a_clear_error() {
        // A file where a directory is expected fails for root too.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        let err = SqliteStore::open(&file.join("sub")).unwrap_err();
        assert!(matches!(err, StoreError::DataDir { .. }), "{err:?}");
        assert!(err.to_string().contains("cannot use data directory"));
    }

    #[derive(Debug)]
    struct Fixed(i64);
    impl Clock for Fixed {
        fn now_ms(&self) -> i64 {
            self.0
        }
    }

    #[test]
    fn written_times_come_from_the_clock() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open_with_clock(dir.path(), Arc::new(Fixed(1234))).unwrap();
        s.append_event(crate::NewEvent::info(
            crate::EventKind::ConductorStarted,
            "x",
        ))
        .unwrap();
        let e = s.events(&crate::EventFilter::default()).unwrap();
        assert_eq!(e[0].at, 1234);
    }
}
