//! The database file: recognising a Glint store, creating one, opening one
//! read-only.
//!
//! **A store never silently starts afresh.** SQLite treats a 0-byte file as
//! an empty database and would happily add Glint's tables to anyone's
//! database, so opening checks first, and refuses with
//! [`StoreError::NotAStore`] anything that is not a Glint store: an empty or
//! truncated file, a file that is not SQLite, an SQLite database of another
//! program (another `application_id`, or tables but no Glint schema version),
//! or one that lacks Glint's tables. A new store is only ever made when no
//! file is there at all, and it is made whole: built under a temp name (mode
//! `0600`, schema, store id) and linked into place, so `glint.db` is either
//! absent or a complete store, even after a crash or a full disk.
//!
//! **Reading changes nothing.** [`open_read_only`] opens the file read-only
//! and never migrates. Where no connection is open (no `-wal` file) on a
//! read-only or full filesystem, and whenever SQLite cannot set up its
//! shared-memory file, it reads the file in SQLite's `immutable` mode (no
//! locks, no `-wal`/`-shm` created): nothing can be writing there. Elsewhere
//! it reads as any SQLite reader does, which may create the `-wal`/`-shm`
//! coordination files, so that a concurrent writer is seen consistently.

use crate::StoreError;
use crate::sqlite::SqliteStore;
use rusqlite::{Connection, OpenFlags};
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Duration;

/// SQLite `application_id` of a Glint store ("Glnt").
pub(crate) const APPLICATION_ID: i32 = 0x476c_6e74;

/// Tables every Glint schema version has.
const GLINT_TABLES: [&str; 4] = ["events", "instances", "meta", "versions"];

fn not_a_store(path: &Path, problem: impl Into<String>) -> StoreError {
    StoreError::NotAStore {
        path: path.to_owned(),
        problem: problem.into(),
    }
}

/// The `-wal` and `-shm` files SQLite keeps beside `path`.
pub(crate) fn companions(path: &Path) -> [std::path::PathBuf; 2] {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    let mut shm = path.as_os_str().to_owned();
    shm.push("-shm");
    [wal.into(), shm.into()]
}

/// Checks what can be judged from the file alone: not empty, an SQLite
/// header, not shorter than the header says.
pub(crate) fn check_header(path: &Path) -> Result<(), StoreError> {
    let io = |source| StoreError::DataDir {
        path: path.to_owned(),
        source,
    };
    let meta = path.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(not_a_store(path, "it is not a regular file"));
    }
    let len = meta.len();
    if len == 0 {
        return Err(not_a_store(
            path,
            "it is empty (0 bytes), as a crash, a full disk or a copy that failed can leave it",
        ));
    }
    let mut header = Vec::with_capacity(100);
    std::fs::File::open(path)
        .map_err(io)?
        .take(100)
        .read_to_end(&mut header)
        .map_err(io)?;
    if !header.starts_with(b"SQLite format 3\0") {
        return Err(not_a_store(path, "it is not an SQLite database"));
    }
    if header.len() < 100 {
        return Err(not_a_store(
            path,
            format!("it is truncated: {len} bytes, shorter than an SQLite header"),
        ));
    }
    let be32 = |at: usize| {
        u32::from_be_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
    };
    let page_size = match u16::from_be_bytes([header[16], header[17]]) {
        1 => 65_536u64,
        n => u64::from(n),
    };
    let pages = u64::from(be32(28));
    let size_is_valid = be32(24) == be32(92) && pages > 0;
    // A non-empty WAL means a connection is or was active: the main file may
    // be mid-checkpoint, and its size is not to be judged.
    let wal_in_use = companions(path)[0].metadata().is_ok_and(|m| m.len() > 0);
    if size_is_valid && !wal_in_use && len < pages * page_size {
        return Err(not_a_store(
            path,
            format!(
                "it is truncated: its header counts {pages} pages of {page_size} bytes ({} bytes), but the file has {len}",
                pages * page_size
            ),
        ));
    }
    Ok(())
}

/// What an SQLite database that passed [`check_contents`] holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Contents {
    /// A valid database with no tables and no schema version (a store whose
    /// creation an older Glint did not finish): nothing was ever recorded.
    Empty,
    /// A Glint store at this schema version.
    Glint(i64),
}

/// Checks that the database is a Glint store (or an empty database).
pub(crate) fn check_contents(store: &SqliteStore) -> Result<Contents, StoreError> {
    let path = store.path();
    let conn = store.lock();
    let damaged = |e: rusqlite::Error| match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt) => {
            not_a_store(path, format!("SQLite cannot read it ({e})"))
        }
        _ => StoreError::Sqlite {
            path: path.to_owned(),
            what: "cannot read",
            source: e,
        },
    };
    let app: i32 = conn
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .map_err(damaged)?;
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(damaged)?;
    let tables: Vec<String> = conn
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
        )
        .and_then(|mut s| {
            s.query_map([], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()
        })
        .map_err(damaged)?;
    if app != 0 && app != APPLICATION_ID {
        return Err(not_a_store(
            path,
            format!("it is an SQLite database of another program (application_id {app:#x})"),
        ));
    }
    let missing = GLINT_TABLES
        .iter()
        .find(|t| !tables.iter().any(|x| x == *t));
    if version == 0 {
        if tables.is_empty() {
            return Ok(Contents::Empty);
        }
        let mut shown: Vec<&str> = tables.iter().take(5).map(String::as_str).collect();
        if tables.len() > 5 {
            shown.push("…");
        }
        return Err(not_a_store(
            path,
            format!(
                "it is an SQLite database of something else (tables {})",
                shown.join(", ")
            ),
        ));
    }
    if let Some(t) = missing {
        return Err(not_a_store(
            path,
            format!("it says Glint schema version {version} but has no `{t}` table"),
        ));
    }
    Ok(Contents::Glint(version))
}

/// Makes a new, complete store at `path`, which must not exist: built under a
/// temp name and linked into place (never over an existing file).
pub(crate) fn create(dir: &Path, path: &Path) -> Result<(), StoreError> {
    for c in companions(path) {
        if c.symlink_metadata().is_ok() {
            return Err(not_a_store(
                path,
                format!(
                    "it is missing but {} is there, left from a store that was moved or deleted; move that file away too (or put the store back)",
                    c.display()
                ),
            ));
        }
    }
    let tmp = dir.join(format!(
        ".{}.new-{}-{}",
        crate::DB_FILE,
        std::process::id(),
        crate::now_ms()
    ));
    let result = build_new(dir, &tmp).and_then(|()| {
        match std::fs::hard_link(&tmp, path) {
            Ok(()) => Ok(()),
            // Another process created the store first: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            Err(source) => Err(StoreError::DataDir {
                path: path.to_owned(),
                source,
            }),
        }
    });
    let _ = std::fs::remove_file(&tmp);
    let mut journal = tmp.into_os_string();
    journal.push("-journal");
    let _ = std::fs::remove_file(journal);
    result
}

fn build_new(dir: &Path, tmp: &Path) -> Result<(), StoreError> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(tmp)
        .map_err(|source| StoreError::DataDir {
            path: dir.to_owned(),
            source,
        })?;
    let conn = Connection::open_with_flags(
        tmp,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|source| StoreError::Sqlite {
        path: tmp.to_owned(),
        what: "cannot create",
        source,
    })?;
    let store = SqliteStore::from_connection(
        conn,
        tmp.to_owned(),
        dir.to_owned(),
        std::sync::Arc::new(crate::SystemClock),
    );
    store
        .lock()
        .pragma_update(None, "application_id", APPLICATION_ID)
        .map_err(|e| store.err("cannot create", e))?;
    crate::schema::migrate(&store)?;
    crate::meta::ensure_store_id(&store)?;
    Ok(())
}

/// Opens an existing store without writing anything; `None` when there is
/// no store (no file, or a database in which nothing was ever recorded).
pub(crate) fn open_read_only(dir: &Path, path: &Path) -> Result<Option<SqliteStore>, StoreError> {
    check_header(path)?;
    let open = |immutable: bool| -> Result<(SqliteStore, Contents), StoreError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI;
        let uri = if immutable {
            format!("file:{}?immutable=1", uri_path(path))
        } else {
            format!("file:{}?mode=ro", uri_path(path))
        };
        let conn =
            Connection::open_with_flags(&uri, flags).map_err(|source| StoreError::Sqlite {
                path: path.to_owned(),
                what: "cannot open",
                source,
            })?;
        let store = SqliteStore::from_connection(
            conn,
            path.to_owned(),
            dir.to_owned(),
            std::sync::Arc::new(crate::SystemClock),
        );
        store
            .lock()
            .busy_timeout(Duration::from_secs(10))
            .map_err(|e| store.err("cannot set busy timeout", e))?;
        let contents = check_contents(&store)?;
        Ok((store, contents))
    };
    // Without a WAL file no connection is open; where SQLite could not make
    // its shared files anyway (read-only or full filesystem), read as is
    // rather than leave half-made ones behind.
    let idle = companions(path)[0].symlink_metadata().is_err();
    let attempt = if idle && !room_to_write(dir) {
        open(true)
    } else {
        open(false)
    };
    let (store, contents) = match attempt {
        Ok(x) => x,
        // SQLite could not create the WAL's shared-memory file (read-only or
        // full filesystem): nothing can be writing here, read the file as is.
        Err(StoreError::Sqlite { source, .. }) if cannot_share(&source) => open(true)?,
        Err(e) => return Err(e),
    };
    match contents {
        Contents::Empty => Ok(None),
        Contents::Glint(found) => {
            let supported = crate::schema::MIGRATIONS.len() as i64;
            if found > supported {
                Err(StoreError::TooNew {
                    path: path.to_owned(),
                    found,
                    supported,
                })
            } else if found < supported {
                Err(StoreError::NeedsUpgrade {
                    path: path.to_owned(),
                    found,
                    supported,
                })
            } else {
                Ok(Some(store))
            }
        }
    }
}

/// Whether `dir` is writable by us and its filesystem has free blocks.
fn room_to_write(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: valid NUL-terminated path.
    if unsafe { libc::access(c.as_ptr(), libc::W_OK) } != 0 {
        return false;
    }
    // SAFETY: valid path and a zeroed statvfs for the kernel to fill.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return true;
    }
    st.f_bavail > 0
}

/// Whether an error means SQLite could not set up its shared files.
fn cannot_share(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(
            rusqlite::ErrorCode::CannotOpen
                | rusqlite::ErrorCode::ReadOnly
                | rusqlite::ErrorCode::SystemIoFailure
                | rusqlite::ErrorCode::DiskFull
        )
    )
}

/// `path` escaped for an SQLite `file:` URI.
fn uri_path(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut out = String::new();
    for &b in path.as_os_str().as_bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prelude::*;
    use crate::{EventKind, NewEvent};
    use std::os::unix::fs::PermissionsExt;

    fn refused(dir: &Path) -> String {
        let err = SqliteStore::open(dir).unwrap_err();
        assert!(matches!(err, StoreError::NotAStore { .. }), "{err:?}");
        let ro = SqliteStore::open_read_only(dir).unwrap_err();
        assert!(matches!(ro, StoreError::NotAStore { .. }), "{ro:?}");
        err.to_string()
    }

    /// A store with enough in it to span many pages, closed (WAL checkpointed).
    fn populated(dir: &Path) {
        let s = SqliteStore::open(dir).unwrap();
        for i in 0..300 {
            s.append_event(NewEvent::info(
                EventKind::ConductorStarted,
                format!("event {i} {}", "x".repeat(200)),
            ))
            .unwrap();
        }
    }

    #[test]
    fn an_empty_file_is_refused_and_left_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join(crate::DB_FILE);
        std::fs::write(&db, b"").unwrap();
        let msg = refused(dir.path());
        assert!(
            msg.contains("is not a Glint store: it is empty (0 bytes)"),
            "{msg}"
        );
        assert!(msg.contains(&db.display().to_string()), "{msg}");
        assert!(
            msg.contains("move it"),
            "the message says what to do: {msg}"
        );
        assert_eq!(
            std::fs::metadata(&db).unwrap().len(),
            0,
            "nothing was written"
        );
    }

    #[test]
    fn garbage_and_short_files_are_refused() {
        for (bytes, says) in [
            (
                b"hello, I am not a database at all".repeat(40),
                "not an SQLite database",
            ),
            (
                b"SQLite format 3\0\x10\0".to_vec(),
                "shorter than an SQLite header",
            ),
        ] {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join(crate::DB_FILE), &bytes).unwrap();
            let msg = refused(dir.path());
            assert!(msg.contains(says), "{msg}");
            assert_eq!(
                std::fs::read(dir.path().join(crate::DB_FILE)).unwrap(),
                bytes
            );
        }
    }

    #[test]
    fn a_truncated_store_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        populated(dir.path());
        let db = dir.path().join(crate::DB_FILE);
        assert!(
            !companions(&db)[0].exists(),
            "closed cleanly, WAL checkpointed"
        );
        let len = std::fs::metadata(&db).unwrap().len();
        assert!(len > 8 * 4096, "{len}");
        let f = std::fs::OpenOptions::new().write(true).open(&db).unwrap();
        f.set_len(len / 2).unwrap();
        drop(f);
        let msg = refused(dir.path());
        assert!(msg.contains("it is truncated"), "{msg}");
    }

    #[test]
    fn another_programs_database_is_refused_and_not_modified() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join(crate::DB_FILE);
        {
            let c = Connection::open(&db).unwrap();
            c.execute_batch("CREATE TABLE users(name TEXT); INSERT INTO users VALUES ('a');")
                .unwrap();
        }
        let before = std::fs::read(&db).unwrap();
        let msg = refused(dir.path());
        assert!(
            msg.contains("SQLite database of something else (tables users)"),
            "{msg}"
        );
        assert_eq!(
            std::fs::read(&db).unwrap(),
            before,
            "no Glint table was added"
        );

        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join(crate::DB_FILE);
        {
            let c = Connection::open(&db).unwrap();
            c.execute_batch("PRAGMA application_id = 1234; CREATE TABLE t(x);")
                .unwrap();
        }
        let msg = refused(dir.path());
        assert!(
            msg.contains("another program (application_id 0x4d2)"),
            "{msg}"
        );

        let dir = tempfile::tempdir().unwrap();
        {
            let c = Connection::open(dir.path().join(crate::DB_FILE)).unwrap();
            c.execute_batch("PRAGMA user_version = 2; CREATE TABLE meta(key, value);")
                .unwrap();
        }
        let msg = refused(dir.path());
        assert!(msg.contains("has no `events` table"), "{msg}");
    }

    #[test]
    fn a_leftover_wal_without_its_database_is_not_replayed_into_a_new_store() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join(crate::DB_FILE);
        std::fs::write(&companions(&db)[0], b"old wal").unwrap();
        let err = SqliteStore::open(dir.path()).unwrap_err();
        assert!(err.to_string().contains("glint.db-wal is there"), "{err}");
        assert!(!db.exists());
    }

    #[test]
    fn an_empty_sqlite_database_with_nothing_recorded_becomes_a_store() {
        // What an older Glint left when it crashed before its first migration.
        let dir = tempfile::tempdir().unwrap();
        {
            let c = Connection::open(dir.path().join(crate::DB_FILE)).unwrap();
            c.execute_batch("PRAGMA journal_mode = WAL;").unwrap();
        }
        assert!(SqliteStore::open_read_only(dir.path()).unwrap().is_none());
        let s = SqliteStore::open(dir.path()).unwrap();
        assert_eq!(s.store_id().unwrap().len(), 16);
    }

    #[test]
    fn a_new_store_is_owner_only_and_complete() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("a/b/data");
        let s = SqliteStore::open(&dir).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&parent.path().join("a")), 0o700);
        assert_eq!(mode(&parent.path().join("a/b")), 0o700);
        assert_eq!(mode(s.path()), 0o600);
        for c in companions(s.path()) {
            if c.exists() {
                assert_eq!(mode(&c), 0o600, "{}", c.display());
            }
        }
        let app: i32 = s
            .lock()
            .query_row("PRAGMA application_id", [], |r| r.get(0))
            .unwrap();
        assert_eq!(app, APPLICATION_ID);
        let leftovers: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn reading_creates_and_migrates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("none");
        assert!(SqliteStore::open_read_only(&sub).unwrap().is_none());
        assert!(!sub.exists());
        std::fs::create_dir(&sub).unwrap();
        assert!(SqliteStore::open_read_only(&sub).unwrap().is_none());
        assert_eq!(std::fs::read_dir(&sub).unwrap().count(), 0);

        populated(dir.path());
        let s = SqliteStore::open_read_only(dir.path()).unwrap().unwrap();
        assert_eq!(s.events(&Default::default()).unwrap().len(), 300);
        assert!(
            s.append_event(NewEvent::info(EventKind::ConductorStarted, "x"))
                .is_err(),
            "a read-only store refuses writes"
        );
        drop(s);
        SqliteStore::open(dir.path())
            .unwrap()
            .lock()
            .pragma_update(None, "user_version", 1)
            .unwrap();
        let err = SqliteStore::open_read_only(dir.path()).unwrap_err();
        assert!(
            matches!(err, StoreError::NeedsUpgrade { found: 1, .. }),
            "{err}"
        );
        let c = Connection::open(dir.path().join(crate::DB_FILE)).unwrap();
        let v: i64 = c
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, 1, "reading did not migrate");
    }
}
