//! The autoscaler's decisions, which must survive a conductor restart.
//!
//! One row per autoscaled service: the instance count the autoscaler chose,
//! why (in words), when, and its own working state (the recommendations of
//! the stabilisation window), which the store keeps as an opaque JSON
//! document it never interprets. A restarted conductor resumes with the
//! same count instead of falling back to the declared `instances`.

use crate::StoreError;
use crate::sqlite::SqliteStore;
use glint_model::Name;
use rusqlite::params;
use serde::{Deserialize, Serialize};

/// One service's autoscaling decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScaleRecord {
    /// The service.
    pub service: Name,
    /// The instance count chosen.
    pub desired: u32,
    /// Why, in words (`in_flight 31.2 per instance above target 10: 2 → 4`).
    pub reason: String,
    /// The autoscaler's own state (JSON), opaque to the store.
    pub state: String,
    /// When it was last written (ms since the epoch).
    pub updated_at: i64,
}

/// Autoscaling decisions. See the module documentation.
pub trait Scaling {
    /// Every service's decision, by service.
    fn scale_records(&self) -> Result<Vec<ScaleRecord>, StoreError>;

    /// Records (replaces) a service's decision; `updated_at` is the store's
    /// clock.
    fn put_scale(&self, record: &ScaleRecord) -> Result<(), StoreError>;

    /// Forgets a service's decision (it is no longer autoscaled).
    fn clear_scale(&self, service: &Name) -> Result<(), StoreError>;
}

impl Scaling for SqliteStore {
    fn scale_records(&self) -> Result<Vec<ScaleRecord>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare(
                "SELECT service, desired, reason, state, updated_at FROM scale ORDER BY service",
            )
            .map_err(|e| self.err("cannot read autoscaling decisions", e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, i64>(4)?,
                ))
            })
            .map_err(|e| self.err("cannot read autoscaling decisions", e))?;
        let mut out = Vec::new();
        for row in rows {
            let (service, desired, reason, state, updated_at) =
                row.map_err(|e| self.err("cannot read autoscaling decisions", e))?;
            out.push(ScaleRecord {
                service: Name::new(&service).map_err(|e| self.corrupt("autoscaled service", e))?,
                desired: u32::try_from(desired).map_err(|e| self.corrupt("autoscaled count", e))?,
                reason,
                state,
                updated_at,
            });
        }
        Ok(out)
    }

    fn put_scale(&self, r: &ScaleRecord) -> Result<(), StoreError> {
        let now = self.now();
        self.write("cannot record an autoscaling decision", |tx| {
            tx.execute(
                "INSERT INTO scale(service, desired, reason, state, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(service) DO UPDATE SET desired = excluded.desired,
                   reason = excluded.reason, state = excluded.state,
                   updated_at = excluded.updated_at",
                params![
                    r.service.as_str(),
                    i64::from(r.desired),
                    r.reason,
                    r.state,
                    now
                ],
            )
            .map(|_| ())
            .map_err(|e| self.err("cannot record an autoscaling decision", e))
        })
    }

    fn clear_scale(&self, service: &Name) -> Result<(), StoreError> {
        self.write("cannot clear an autoscaling decision", |tx| {
            tx.execute("DELETE FROM scale WHERE service = ?1", [service.as_str()])
                .map(|_| ())
                .map_err(|e| self.err("cannot clear an autoscaling decision", e))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_survive_a_reopen_and_clear() {
        let dir = tempfile::tempdir().unwrap();
        let web = Name::new("web").unwrap();
        let r = ScaleRecord {
            service: web.clone(),
            desired: 4,
            reason: "in_flight above target".into(),
            state: "{}".into(),
            updated_at: 0,
        };
        {
            let s = SqliteStore::open(dir.path()).unwrap();
            s.put_scale(&r).unwrap();
            s.put_scale(&ScaleRecord {
                desired: 5,
                ..r.clone()
            })
            .unwrap();
        }
        let s = SqliteStore::open(dir.path()).unwrap();
        let got = s.scale_records().unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].desired, 5);
        s.clear_scale(&web).unwrap();
        assert!(s.scale_records().unwrap().is_empty());
    }
}
