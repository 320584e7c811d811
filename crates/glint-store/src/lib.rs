//! Glint's embedded, transactional store.
//!
//! One SQLite database (`glint.db`, WAL mode) in the data directory holds:
//! - every **version** of the environment (number, content hash, compiled
//!   environment, image digests, sources, time) — [`versions`];
//! - the **instances** the conductor believes exist, including launches it
//!   intends and retirements it has begun (write-ahead intents, so a crash at
//!   any moment is recoverable) — [`instances`];
//! - the append-only **event log** (every action, detection and incident;
//!   triggers refuse updates and deletes) — [`events`];
//! - small facts about the store itself: its random id (used in ownership
//!   labels), the conductor's heartbeat — [`meta`].
//!
//! The schema is versioned from day one ([`schema`]): each migration runs once,
//! in a transaction, and `PRAGMA user_version` records how far a database has
//! come. A database written by a newer Glint is refused rather than damaged.
//!
//! Opening is careful ([`file`], [`datadir`]): the data directory is created
//! owner-only and refused when others could change it; a file that is not a
//! Glint store is an error, never a fresh start; read commands open the store
//! read-only and never create or migrate anything.
//!
//! [`Store`] is `Send + Sync` (a mutex around one connection): the CLI and the
//! conductor open the same file concurrently; SQLite's locking and a busy
//! timeout serialise writers.

pub mod datadir;
pub mod events;
mod file;
pub mod instances;
pub mod meta;
pub mod schema;
pub mod versions;

pub use datadir::prepare_data_dir;
pub use events::{Event, EventFilter, EventKind, NewEvent, Severity};
pub use instances::{Health, InstanceRecord, InstanceState};
pub use meta::ConductorInfo;
pub use versions::{
    Created, NewVersion, Outcome, SourceFile, VersionKind, VersionRecord, VersionSummary,
};

use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "glint.db";

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The data directory cannot be created or is not usable.
    #[error("cannot use data directory {path}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// SQLite failed.
    #[error("store database {path}: {what}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// What was being done.
        what: &'static str,
        /// Underlying error.
        #[source]
        source: rusqlite::Error,
    },
    /// The data directory could be changed by someone else than its owner.
    #[error("refusing to use data directory {path}: {problem}; {fix}")]
    DataDirUnsafe {
        /// The data directory.
        path: PathBuf,
        /// What is wrong.
        problem: String,
        /// How to fix it.
        fix: String,
    },
    /// The database file is not a Glint store (empty, truncated, not SQLite,
    /// another program's database). Never replaced by a fresh store.
    #[error(
        "{path} is not a Glint store: {problem}. Glint will not start a new environment over it: if it holds nothing you need, move it (and any -wal and -shm files beside it) away and run the command again; otherwise restore it from a backup"
    )]
    NotAStore {
        /// The database file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// A read command found a store an older Glint wrote; reading never migrates.
    #[error(
        "store database {path} has schema version {found}, older than this glint's ({supported}); a command that writes (`glint apply`, `glint conductor`) upgrades it"
    )]
    NeedsUpgrade {
        /// The database file.
        path: PathBuf,
        /// Schema version found.
        found: i64,
        /// Schema version this build uses.
        supported: i64,
    },
    /// The database was written by a newer Glint.
    #[error(
        "store database {path} has schema version {found}, newer than this glint understands ({supported}); upgrade glint"
    )]
    TooNew {
        /// The database file.
        path: PathBuf,
        /// Schema version found.
        found: i64,
        /// Newest schema this build knows.
        supported: i64,
    },
    /// A stored value could not be decoded (corruption or a bug).
    #[error("store database {path}: corrupt {what}: {detail}")]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// Which value.
        what: &'static str,
        /// Details.
        detail: String,
    },
    /// A requested version does not exist.
    #[error("version {0} does not exist")]
    NoSuchVersion(u64),
}

/// The store. See the crate documentation.
pub struct Store {
    conn: Mutex<Connection>,
    path: PathBuf,
    dir: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Opens (creating if needed) the store in `dir`, migrating its schema.
    /// The directory is prepared and checked first ([`prepare_data_dir`]); an
    /// existing file must be a Glint store ([`StoreError::NotAStore`]).
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        prepare_data_dir(dir)?;
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
        datadir::tighten(&path, 0o600);
        for c in file::companions(&path) {
            datadir::tighten(&c, 0o600);
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
        let store = Store {
            conn: Mutex::new(conn),
            path,
            dir: dir.to_owned(),
        };
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

    /// Opens an existing store for a command that may write: `None` if the
    /// directory or database does not exist (so that nothing is created for
    /// nothing), else as [`Store::open`].
    pub fn open_existing(dir: &Path) -> Result<Option<Store>, StoreError> {
        match Store::exists(dir)? {
            true => Store::open(dir).map(Some),
            false => Ok(None),
        }
    }

    /// Opens an existing store for reading only: creates, migrates and writes
    /// nothing, so it works on a read-only or full filesystem. `None` when
    /// nothing has been recorded in `dir`. Every write through the returned
    /// store fails.
    pub fn open_read_only(dir: &Path) -> Result<Option<Store>, StoreError> {
        match Store::exists(dir)? {
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
        &self.dir
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
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

    /// Locks the connection. A poisoned mutex (a panic while holding it) is
    /// recovered: SQLite transactions make every write atomic, so the
    /// connection is consistent even then.
    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn err(&self, what: &'static str, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.clone(),
            what,
            source,
        }
    }

    fn corrupt(&self, what: &'static str, detail: impl ToString) -> StoreError {
        StoreError::Corrupt {
            path: self.path.clone(),
            what,
            detail: detail.to_string(),
        }
    }

    /// A counter that changes whenever another connection commits a change to
    /// the database (SQLite's `data_version`); cheap to poll.
    pub fn data_version(&self) -> Result<i64, StoreError> {
        self.lock()
            .query_row("PRAGMA data_version", [], |r| r.get(0))
            .map_err(|e| self.err("cannot read data_version", e))
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

/// Milliseconds since the Unix epoch, the store's time representation.
pub fn now_ms() -> i64 {
    to_ms(SystemTime::now())
}

/// Converts a time to milliseconds since the Unix epoch.
pub fn to_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Converts milliseconds since the Unix epoch to a time.
pub fn from_ms(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_creates_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let id = {
            let s = Store::open(dir.path()).unwrap();
            s.store_id().unwrap()
        };
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.store_id().unwrap(), id, "store id is stable across opens");
        assert_eq!(id.len(), 16);
    }

    #[test]
    fn open_existing_does_not_create() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("nothing-here");
        assert!(Store::open_existing(&sub).unwrap().is_none());
        assert!(!sub.exists());
    }

    #[test]
    fn unwritable_data_dir_is_a_clear_error() {
        // A file where a directory is expected fails for root too.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        let err = Store::open(&file.join("sub")).unwrap_err();
        assert!(matches!(err, StoreError::DataDir { .. }), "{err:?}");
        assert!(err.to_string().contains("cannot use data directory"));
    }

    #[test]
    fn data_version_changes_when_another_connection_writes() {
        let dir = tempfile::tempdir().unwrap();
        let a = Store::open(dir.path()).unwrap();
        let b = Store::open(dir.path()).unwrap();
        let before = a.data_version().unwrap();
        b.append_event(NewEvent::info(EventKind::ConductorStarted, "x"))
            .unwrap();
        assert_ne!(a.data_version().unwrap(), before);
    }
}
