//! Secrets: named values sealed at rest (see [`crate::seal`]), set by
//! `glint secret set`, delivered to the services that declare them.
//!
//! One row per secret name holds its current version only: setting a
//! secret seals the new value as version `n + 1` and overwrites the old
//! sealed value in the same transaction, so no old value is kept. Removing
//! a secret drops its sealed value and data key but keeps the row (with
//! `removed_at`), so that a secret set again later continues its version
//! numbers and a reader launched with `v1` is never confused with a new
//! `v1`.
//!
//! Every write checks the master key first: a value is sealed only under
//! the key that wraps every other secret (a wrong `GLINT_MASTER_KEY` is
//! refused, and nothing is written), and a rotation re-wraps every data key
//! in one transaction or none.

use crate::StoreError;
use crate::seal::{MasterKey, SealError, Sealed};
use crate::sqlite::SqliteStore;
use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// A secret as listings show it: never its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretRecord {
    /// Its name (`db/password`).
    pub name: String,
    /// Its current version (1, 2, ...).
    pub version: u64,
    /// When this version was set (ms since the epoch).
    pub set_at: i64,
    /// Who set it (the user name of the command's caller).
    pub set_by: String,
}

/// Why a secret could not be set, opened or re-wrapped.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The key or the value was refused.
    #[error(transparent)]
    Seal(#[from] SealError),
}

/// Secrets. See the module documentation.
pub trait Secrets {
    /// Every secret that is set, by name.
    fn secrets(&self) -> Result<Vec<SecretRecord>, StoreError>;

    /// The ids of the master keys the set secrets are wrapped under (one,
    /// or none when no secret is set).
    fn secret_key_ids(&self) -> Result<Vec<String>, StoreError>;

    /// Seals `value` under `key` as the next version of `name`. Refused
    /// (nothing written) when `key` is not the key of the other secrets.
    fn set_secret(
        &self,
        key: &MasterKey,
        name: &str,
        value: &[u8],
        set_by: &str,
    ) -> Result<SecretRecord, SecretError>;

    /// The current version of `name` and its value, opened with `key`;
    /// `None` when it is not set.
    #[allow(clippy::type_complexity)]
    fn open_secret(
        &self,
        key: &MasterKey,
        name: &str,
    ) -> Result<Option<(SecretRecord, Zeroizing<Vec<u8>>)>, SecretError>;

    /// Removes `name`'s value; returns what was removed, `None` when it was
    /// not set.
    fn remove_secret(&self, name: &str) -> Result<Option<SecretRecord>, StoreError>;

    /// Re-wraps every data key from `old` to `new`, in one transaction;
    /// returns how many. Refused (nothing written) if `old` does not open
    /// one of them.
    fn rewrap_secrets(&self, old: &MasterKey, new: &MasterKey) -> Result<usize, SecretError>;
}

/// The master key of the store in data directory `dir` (see
/// [`MasterKey::load`]), told which key the stored secrets are wrapped
/// under. With `create`, a missing key file is created — but only while no
/// secret is set: a key file lost with secrets still sealed is an error,
/// never silently replaced by a key that opens none of them.
pub fn master_key(
    store: &dyn Secrets,
    dir: &std::path::Path,
    create: bool,
) -> Result<MasterKey, SecretError> {
    let ids = store.secret_key_ids()?;
    Ok(MasterKey::load(
        dir,
        ids.first().map(String::as_str),
        create && ids.is_empty(),
    )?)
}

const LIVE: &str =
    "SELECT name, version, created_at, set_by, value, nonce, wrapped_key, key_nonce, key_id
     FROM secrets WHERE removed_at IS NULL";

type Row = (SecretRecord, Sealed);

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    let version: i64 = r.get(1)?;
    Ok((
        SecretRecord {
            name: r.get(0)?,
            version: u64::try_from(version).unwrap_or(0),
            set_at: r.get(2)?,
            set_by: r.get(3)?,
        },
        Sealed {
            value: r.get(4)?,
            nonce: r.get(5)?,
            wrapped_key: r.get(6)?,
            key_nonce: r.get(7)?,
            key_id: r.get(8)?,
        },
    ))
}

impl SqliteStore {
    fn live_secrets(
        &self,
        conn: &rusqlite::Connection,
        what: &'static str,
    ) -> Result<Vec<Row>, StoreError> {
        let mut stmt = conn
            .prepare(&format!("{LIVE} ORDER BY name"))
            .map_err(|e| self.err(what, e))?;
        let rows = stmt
            .query_map([], row)
            .map_err(|e| self.err(what, e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.err(what, e))?;
        Ok(rows)
    }
}

impl Secrets for SqliteStore {
    fn secrets(&self) -> Result<Vec<SecretRecord>, StoreError> {
        let conn = self.lock();
        Ok(self
            .live_secrets(&conn, "cannot read secrets")?
            .into_iter()
            .map(|(r, _)| r)
            .collect())
    }

    fn secret_key_ids(&self) -> Result<Vec<String>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare("SELECT DISTINCT key_id FROM secrets WHERE removed_at IS NULL ORDER BY key_id")
            .map_err(|e| self.err("cannot read secrets", e))?;
        let ids = stmt
            .query_map([], |r| r.get(0))
            .map_err(|e| self.err("cannot read secrets", e))?
            .collect::<Result<Vec<String>, _>>()
            .map_err(|e| self.err("cannot read secrets", e))?;
        Ok(ids)
    }

    fn set_secret(
        &self,
        key: &MasterKey,
        name: &str,
        value: &[u8],
        set_by: &str,
    ) -> Result<SecretRecord, SecretError> {
        let now = self.now();
        let what = "cannot set a secret";
        let out = self.write(what, |tx| {
            // The key must be the one every other secret is wrapped under.
            let others = self.live_secrets(tx, what)?;
            if let Some((other, _)) = others.iter().find(|(_, s)| s.key_id != key.id()) {
                return Ok(Err(SealError::WrongKey {
                    name: other.name.clone(),
                    origin: key.origin().clone(),
                }));
            }
            let before: Option<i64> = tx
                .query_row(
                    "SELECT version FROM secrets WHERE name = ?1",
                    [name],
                    |r| r.get(0),
                )
                .optional()
                .map_err(|e| self.err(what, e))?;
            let version = u64::try_from(before.unwrap_or(0)).unwrap_or(0) + 1;
            let sealed = match key.seal(name, version, value) {
                Ok(s) => s,
                Err(e) => return Ok(Err(e)),
            };
            tx.execute(
                "INSERT INTO secrets(name, version, value, nonce, wrapped_key, key_nonce, key_id, created_at, set_by, removed_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, NULL)
                 ON CONFLICT(name) DO UPDATE SET
                   version = excluded.version, value = excluded.value, nonce = excluded.nonce,
                   wrapped_key = excluded.wrapped_key, key_nonce = excluded.key_nonce,
                   key_id = excluded.key_id, created_at = excluded.created_at,
                   set_by = excluded.set_by, removed_at = NULL",
                params![
                    name,
                    version as i64,
                    sealed.value,
                    sealed.nonce,
                    sealed.wrapped_key,
                    sealed.key_nonce,
                    sealed.key_id,
                    now,
                    set_by
                ],
            )
            .map_err(|e| self.err(what, e))?;
            Ok(Ok(SecretRecord {
                name: name.to_owned(),
                version,
                set_at: now,
                set_by: set_by.to_owned(),
            }))
        })?;
        Ok(out?)
    }

    fn open_secret(
        &self,
        key: &MasterKey,
        name: &str,
    ) -> Result<Option<(SecretRecord, Zeroizing<Vec<u8>>)>, SecretError> {
        let found = {
            let conn = self.lock();
            conn.query_row(&format!("{LIVE} AND name = ?1"), [name], row)
                .optional()
                .map_err(|e| self.err("cannot read a secret", e))?
        };
        let Some((rec, sealed)) = found else {
            return Ok(None);
        };
        let value = key.open(&rec.name, rec.version, &sealed)?;
        Ok(Some((rec, value)))
    }

    fn remove_secret(&self, name: &str) -> Result<Option<SecretRecord>, StoreError> {
        let now = self.now();
        let what = "cannot remove a secret";
        self.write(what, |tx| {
            let found = tx
                .query_row(&format!("{LIVE} AND name = ?1"), [name], row)
                .optional()
                .map_err(|e| self.err(what, e))?;
            let Some((rec, _)) = found else {
                return Ok(None);
            };
            tx.execute(
                "UPDATE secrets SET value = NULL, nonce = NULL, wrapped_key = NULL,
                   key_nonce = NULL, key_id = NULL, removed_at = ?2 WHERE name = ?1",
                params![name, now],
            )
            .map_err(|e| self.err(what, e))?;
            Ok(Some(rec))
        })
    }

    fn rewrap_secrets(&self, old: &MasterKey, new: &MasterKey) -> Result<usize, SecretError> {
        let what = "cannot re-wrap secrets";
        let out = self.write(what, |tx| {
            let rows = self.live_secrets(tx, what)?;
            let mut rewrapped = Vec::with_capacity(rows.len());
            for (rec, sealed) in &rows {
                match old.rewrap(new, &rec.name, rec.version, sealed) {
                    Ok(s) => rewrapped.push((rec, s)),
                    Err(e) => return Ok(Err(e)),
                }
            }
            for (rec, s) in &rewrapped {
                tx.execute(
                    "UPDATE secrets SET wrapped_key = ?2, key_nonce = ?3, key_id = ?4 WHERE name = ?1",
                    params![rec.name, s.wrapped_key, s.key_nonce, s.key_id],
                )
                .map_err(|e| self.err(what, e))?;
            }
            Ok(Ok(rewrapped.len()))
        })?;
        Ok(out?)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::seal::KeyOrigin;

    fn key() -> MasterKey {
        MasterKey::generate(KeyOrigin::Env(crate::seal::MASTER_KEY_ENV)).unwrap()
    }

    fn file_contains(dir: &std::path::Path, needle: &[u8]) -> Vec<String> {
        let mut hits = Vec::new();
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_file() {
                let bytes = std::fs::read(&p).unwrap();
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    hits.push(p.display().to_string());
                }
            }
        }
        hits
    }

    #[test]
    fn a_secret_round_trips_sealed_and_its_versions_count_up() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path()).unwrap();
        let k = key();
        let r = s
            .set_secret(&k, "db/password", b"correct horse battery", "alice")
            .unwrap();
        assert_eq!(r.version, 1);
        let (rec, v) = s.open_secret(&k, "db/password").unwrap().unwrap();
        assert_eq!((rec.version, &v[..]), (1, &b"correct horse battery"[..]));
        let r = s.set_secret(&k, "db/password", b"staple", "alice").unwrap();
        assert_eq!(r.version, 2);
        assert_eq!(
            &s.open_secret(&k, "db/password").unwrap().unwrap().1[..],
            b"staple"
        );
        // Neither value is anywhere in the database, its WAL or its index.
        drop(s);
        assert!(file_contains(dir.path(), b"correct horse battery").is_empty());
        assert!(file_contains(dir.path(), b"staple").is_empty());
    }

    // Mutation caught: set_secret not checking the key of the other secrets.
    #[test]
    fn a_wrong_key_is_refused_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path()).unwrap();
        let (k, wrong) = (key(), key());
        s.set_secret(&k, "a", b"1", "u").unwrap();
        let err = s.open_secret(&wrong, "a").unwrap_err();
        assert!(
            err.to_string()
                .contains("the master key does not open secret a"),
            "{err}"
        );
        let err = s.set_secret(&wrong, "b", b"2", "u").unwrap_err();
        assert!(
            matches!(err, SecretError::Seal(SealError::WrongKey { .. })),
            "{err}"
        );
        let err = s.set_secret(&wrong, "a", b"2", "u").unwrap_err();
        assert!(matches!(err, SecretError::Seal(SealError::WrongKey { .. })));
        let names: Vec<_> = s
            .secrets()
            .unwrap()
            .into_iter()
            .map(|r| (r.name, r.version))
            .collect();
        assert_eq!(names, [("a".to_owned(), 1)], "nothing was written");
        assert!(s.rewrap_secrets(&wrong, &key()).is_err());
        assert_eq!(&s.open_secret(&k, "a").unwrap().unwrap().1[..], b"1");
    }

    #[test]
    fn rewrapping_moves_every_secret_to_the_new_key_in_one_go() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path()).unwrap();
        let (old, new) = (key(), key());
        s.set_secret(&old, "a", b"1", "u").unwrap();
        s.set_secret(&old, "b", b"2", "u").unwrap();
        assert_eq!(s.rewrap_secrets(&old, &new).unwrap(), 2);
        assert_eq!(s.secret_key_ids().unwrap(), [new.id()]);
        assert_eq!(&s.open_secret(&new, "a").unwrap().unwrap().1[..], b"1");
        assert_eq!(&s.open_secret(&new, "b").unwrap().unwrap().1[..], b"2");
        assert!(
            s.open_secret(&old, "a").is_err(),
            "the old key opens nothing"
        );
    }

    // Mutation caught: removal deleting the row (versions restarting at 1).
    #[test]
    fn a_removed_secret_set_again_continues_its_versions() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path()).unwrap();
        let k = key();
        s.set_secret(&k, "a", b"1", "u").unwrap();
        assert_eq!(s.remove_secret("a").unwrap().unwrap().version, 1);
        assert!(s.remove_secret("a").unwrap().is_none());
        assert!(s.open_secret(&k, "a").unwrap().is_none());
        assert!(s.secrets().unwrap().is_empty());
        assert!(s.secret_key_ids().unwrap().is_empty());
        // Any key may start again once nothing is set.
        let other = key();
        assert_eq!(s.set_secret(&other, "a", b"2", "u").unwrap().version, 2);
    }

    // Mutation caught: a lost key file replaced by a fresh key while
    // secrets are sealed under the old one.
    #[test]
    fn a_lost_key_file_is_not_replaced_while_secrets_are_set() {
        if std::env::var_os(crate::seal::MASTER_KEY_ENV).is_some() {
            eprintln!("skipped: GLINT_MASTER_KEY is set in this environment");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path()).unwrap();
        let k = master_key(&s, dir.path(), true).unwrap();
        s.set_secret(&k, "a", b"1", "u").unwrap();
        assert_eq!(master_key(&s, dir.path(), true).unwrap().id(), k.id());
        std::fs::remove_file(dir.path().join(crate::seal::KEY_FILE)).unwrap();
        let err = master_key(&s, dir.path(), true).unwrap_err();
        assert!(
            matches!(err, SecretError::Seal(SealError::NoKey { .. })),
            "{err}"
        );
        assert!(!dir.path().join(crate::seal::KEY_FILE).exists());
    }

    // Mutation caught: an interrupted rotation keeping the key that no
    // longer opens the store, or taking a new key the store never used.
    #[test]
    fn an_interrupted_rotation_is_finished_by_the_store_s_key_id() {
        if std::env::var_os(crate::seal::MASTER_KEY_ENV).is_some() {
            eprintln!("skipped: GLINT_MASTER_KEY is set in this environment");
            return;
        }
        use crate::seal::{KEY_FILE, NEW_KEY_FILE, write_key_file};
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path()).unwrap();
        let old = master_key(&s, dir.path(), true).unwrap();
        s.set_secret(&old, "a", b"1", "u").unwrap();
        // Not committed: the new file is dropped, the old key stays.
        let new = MasterKey::generate(KeyOrigin::File(dir.path().join(KEY_FILE))).unwrap();
        write_key_file(&dir.path().join(NEW_KEY_FILE), &new).unwrap();
        assert_eq!(master_key(&s, dir.path(), false).unwrap().id(), old.id());
        assert!(!dir.path().join(NEW_KEY_FILE).exists());
        // Committed, then interrupted before the rename: the new key wins.
        write_key_file(&dir.path().join(NEW_KEY_FILE), &new).unwrap();
        s.rewrap_secrets(&old, &new).unwrap();
        let k = master_key(&s, dir.path(), false).unwrap();
        assert_eq!(k.id(), new.id());
        assert!(!dir.path().join(NEW_KEY_FILE).exists());
        assert_eq!(&s.open_secret(&k, "a").unwrap().unwrap().1[..], b"1");
    }

    #[test]
    fn secrets_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let k = key();
        {
            let s = SqliteStore::open(dir.path()).unwrap();
            s.set_secret(&k, "a", b"kept", "u").unwrap();
        }
        let s = SqliteStore::open(dir.path()).unwrap();
        assert_eq!(&s.open_secret(&k, "a").unwrap().unwrap().1[..], b"kept");
    }
}
