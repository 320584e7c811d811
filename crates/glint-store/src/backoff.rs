//! Retry state that must survive a conductor restart.
//!
//! When something keeps failing — a service's instances crash right after
//! starting, a launch fails because the disk is full, an endpoint cannot
//! bind, a provider cannot be reached — the conductor waits longer and
//! longer before trying again. That waiting is *state*, not memory: a
//! conductor restarted in the middle of a crash loop must not start the
//! loop from zero. Each retried thing has a key (chosen by the conductor,
//! e.g. `launch/web/<shape>`); its record says how many attempts failed in
//! a row, until when to wait, and why.

use crate::StoreError;
use crate::sqlite::SqliteStore;
use rusqlite::params;
use serde::{Deserialize, Serialize};

/// The retry state of one key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackoffRecord {
    /// What is being retried.
    pub key: String,
    /// Failures in a row.
    pub failures: u32,
    /// No attempt before this time (ms since the epoch).
    pub until_ms: i64,
    /// The last failure's cause.
    pub cause: String,
    /// When the first failure of this streak happened.
    pub first_at: i64,
    /// When the last one happened.
    pub last_at: i64,
}

/// Retry state. See the module documentation.
pub trait Backoffs {
    /// Every key being backed off.
    fn backoffs(&self) -> Result<Vec<BackoffRecord>, StoreError>;

    /// Records (replaces) the state of one key.
    fn put_backoff(&self, record: &BackoffRecord) -> Result<(), StoreError>;

    /// Forgets a key (it succeeded).
    fn clear_backoff(&self, key: &str) -> Result<(), StoreError>;
}

impl Backoffs for SqliteStore {
    fn backoffs(&self) -> Result<Vec<BackoffRecord>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare(
                "SELECT key, failures, until_ms, cause, first_at, last_at FROM backoffs ORDER BY key",
            )
            .map_err(|e| self.err("cannot read backoffs", e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(BackoffRecord {
                    key: r.get(0)?,
                    failures: r.get::<_, i64>(1)?.clamp(0, i64::from(u32::MAX)) as u32,
                    until_ms: r.get(2)?,
                    cause: r.get(3)?,
                    first_at: r.get(4)?,
                    last_at: r.get(5)?,
                })
            })
            .map_err(|e| self.err("cannot read backoffs", e))?;
        let mut out = Vec::new();
        for row in rows {
            out.push(row.map_err(|e| self.err("cannot read backoffs", e))?);
        }
        Ok(out)
    }

    fn put_backoff(&self, b: &BackoffRecord) -> Result<(), StoreError> {
        self.write("cannot record a backoff", |tx| {
            tx.execute(
                "INSERT INTO backoffs(key, failures, until_ms, cause, first_at, last_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT(key) DO UPDATE SET failures = excluded.failures,
                   until_ms = excluded.until_ms, cause = excluded.cause,
                   first_at = excluded.first_at, last_at = excluded.last_at",
                params![
                    b.key,
                    i64::from(b.failures),
                    b.until_ms,
                    b.cause,
                    b.first_at,
                    b.last_at
                ],
            )
            .map(|_| ())
            .map_err(|e| self.err("cannot record a backoff", e))
        })
    }

    fn clear_backoff(&self, key: &str) -> Result<(), StoreError> {
        self.write("cannot clear a backoff", |tx| {
            tx.execute("DELETE FROM backoffs WHERE key = ?1", [key])
                .map(|_| ())
                .map_err(|e| self.err("cannot clear a backoff", e))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoffs_survive_a_reopen_and_clear() {
        let dir = tempfile::tempdir().unwrap();
        let b = BackoffRecord {
            key: "launch/web/abc".into(),
            failures: 4,
            until_ms: 9_000,
            cause: "exited with code 1".into(),
            first_at: 1_000,
            last_at: 8_000,
        };
        {
            let s = SqliteStore::open(dir.path()).unwrap();
            s.put_backoff(&b).unwrap();
            let mut b2 = b.clone();
            b2.failures = 5;
            s.put_backoff(&b2).unwrap();
        }
        let s = SqliteStore::open(dir.path()).unwrap();
        let got = s.backoffs().unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].failures, 5);
        s.clear_backoff(&b.key).unwrap();
        assert!(s.backoffs().unwrap().is_empty());
    }
}
