//! Runtime variables: the values `runtime = true` variables are written at
//! run time, with their history, so that they survive conductor restarts.
//!
//! Every write appends a row `(name, idx, value, written_at, written_by)`;
//! `idx` is the variable's version index, 1 for its first write and one more
//! for each next one. The current value is the row with the highest index.
//! A variable never written has index 0 (its declared initial value, if any,
//! comes from the version's IR, not from here).
//!
//! Writes are compare-and-set ([`Variables::set_variable`]): a write names
//! the index it read and is refused ([`CasConflict`]) when another write came
//! first, in the same transaction as the check. History is kept to the
//! newest [`HISTORY`] writes per variable. Literal values are never stored
//! here: they are part of the version that declares them.

use crate::StoreError;
use crate::sqlite::SqliteStore;
use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

/// How many writes of one variable the store keeps (older ones are pruned
/// by the write that makes one too many).
pub const HISTORY: i64 = 100;

/// The largest value a runtime variable may hold, in bytes (as Nomad's
/// variables).
pub const MAX_VALUE: usize = 64 * 1024;

/// One write of a runtime variable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VariableRecord {
    /// The variable's name.
    pub name: String,
    /// Its version index after this write (1, 2, ...).
    pub index: u64,
    /// The value written.
    pub value: String,
    /// When (ms since the epoch, the store's clock).
    pub written_at: i64,
    /// Who wrote it: the writer instance (`worker-…`).
    pub written_by: String,
}

/// A compare-and-set write refused: the variable is at `current`, not at
/// the index the writer read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the variable is at index {current}, not {expected}: read it again and retry")]
pub struct CasConflict {
    /// The index the write expected.
    pub expected: u64,
    /// The variable's index.
    pub current: u64,
}

/// Runtime variables. See the module documentation.
pub trait Variables {
    /// The current value of runtime variable `name`, `None` if it was never
    /// written.
    fn variable(&self, name: &str) -> Result<Option<VariableRecord>, StoreError>;

    /// Writes `value` as the next version of `name` if its index is `cas`
    /// (0: never written); returns the new record, or the conflict (nothing
    /// written). The size limit is the caller's to check ([`MAX_VALUE`]).
    fn set_variable(
        &self,
        name: &str,
        value: &str,
        cas: u64,
        written_by: &str,
    ) -> Result<Result<VariableRecord, CasConflict>, StoreError>;

    /// The kept writes of `name`, newest first, at most `limit`.
    fn variable_history(&self, name: &str, limit: u32) -> Result<Vec<VariableRecord>, StoreError>;
}

const SELECT: &str = "SELECT name, idx, value, written_at, written_by FROM variable_values";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<VariableRecord> {
    let idx: i64 = r.get(1)?;
    Ok(VariableRecord {
        name: r.get(0)?,
        index: u64::try_from(idx).unwrap_or(0),
        value: r.get(2)?,
        written_at: r.get(3)?,
        written_by: r.get(4)?,
    })
}

impl Variables for SqliteStore {
    fn variable(&self, name: &str) -> Result<Option<VariableRecord>, StoreError> {
        let conn = self.lock();
        conn.query_row(
            &format!("{SELECT} WHERE name = ?1 ORDER BY idx DESC LIMIT 1"),
            [name],
            row,
        )
        .optional()
        .map_err(|e| self.err("cannot read a variable", e))
    }

    fn set_variable(
        &self,
        name: &str,
        value: &str,
        cas: u64,
        written_by: &str,
    ) -> Result<Result<VariableRecord, CasConflict>, StoreError> {
        let now = self.now();
        let what = "cannot write a variable";
        self.write(what, |tx| {
            let current: i64 = tx
                .query_row(
                    "SELECT COALESCE(MAX(idx), 0) FROM variable_values WHERE name = ?1",
                    [name],
                    |r| r.get(0),
                )
                .map_err(|e| self.err(what, e))?;
            let current = u64::try_from(current).unwrap_or(0);
            if current != cas {
                return Ok(Err(CasConflict {
                    expected: cas,
                    current,
                }));
            }
            let index = current + 1;
            let idx = i64::try_from(index).map_err(|e| self.corrupt("variable index", e))?;
            tx.execute(
                "INSERT INTO variable_values(name, idx, value, written_at, written_by)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![name, idx, value, now, written_by],
            )
            .map_err(|e| self.err(what, e))?;
            tx.execute(
                "DELETE FROM variable_values WHERE name = ?1 AND idx <= ?2",
                params![name, idx - HISTORY],
            )
            .map_err(|e| self.err(what, e))?;
            Ok(Ok(VariableRecord {
                name: name.to_owned(),
                index,
                value: value.to_owned(),
                written_at: now,
                written_by: written_by.to_owned(),
            }))
        })
    }

    fn variable_history(&self, name: &str, limit: u32) -> Result<Vec<VariableRecord>, StoreError> {
        let what = "cannot read a variable's history";
        let conn = self.lock();
        let mut stmt = conn
            .prepare(&format!(
                "{SELECT} WHERE name = ?1 ORDER BY idx DESC LIMIT ?2"
            ))
            .map_err(|e| self.err(what, e))?;
        let rows = stmt
            .query_map(params![name, i64::from(limit)], row)
            .map_err(|e| self.err(what, e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.err(what, e))?;
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    // Mutation caught: a stale index accepted, the index not moving, or a
    // refused write changing something.
    #[test]
    fn writes_are_compare_and_set_on_the_index() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path()).unwrap();
        assert!(s.variable("depth").unwrap().is_none());
        let r = s.set_variable("depth", "1", 0, "w-1").unwrap().unwrap();
        assert_eq!((r.index, r.value.as_str()), (1, "1"));
        let c = s.set_variable("depth", "x", 0, "w-2").unwrap().unwrap_err();
        assert_eq!((c.expected, c.current), (0, 1));
        let r = s.set_variable("depth", "2", 1, "w-2").unwrap().unwrap();
        assert_eq!(r.index, 2);
        let now = s.variable("depth").unwrap().unwrap();
        assert_eq!(
            (now.index, now.value.as_str(), now.written_by.as_str()),
            (2, "2", "w-2")
        );
        assert!(s.variable("other").unwrap().is_none(), "names are apart");
    }

    #[test]
    fn history_is_kept_newest_first_bounded_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = SqliteStore::open(dir.path()).unwrap();
            for i in 0..(HISTORY as u64 + 5) {
                s.set_variable("v", &i.to_string(), i, "w")
                    .unwrap()
                    .unwrap();
            }
        }
        let s = SqliteStore::open(dir.path()).unwrap();
        let h = s.variable_history("v", 1000).unwrap();
        assert_eq!(h.len(), HISTORY as usize);
        assert_eq!(h[0].index, HISTORY as u64 + 5);
        assert_eq!(h[0].value, (HISTORY + 4).to_string());
        assert_eq!(s.variable("v").unwrap().unwrap().index, HISTORY as u64 + 5);
    }
}
