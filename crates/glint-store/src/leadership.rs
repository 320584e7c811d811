//! Leadership epochs and fenced writes.
//!
//! Only one conductor may act on an environment at a time. Whoever decides
//! who that is (a `flock` on one machine, an etcd election in a cluster)
//! *claims an epoch* here when it wins: a number that only grows. The winner
//! then writes through a handle [`fenced`](Fencing::fenced) by that epoch:
//! every write through it checks, in the same transaction, that its epoch is
//! still the current one, and is refused with
//! [`StoreError::Fenced`](crate::StoreError::Fenced) otherwise. A conductor
//! that lost its leadership without noticing (paused, partitioned) can thus
//! never apply a late write over its successor's.

use crate::sqlite::SqliteStore;
use crate::{Store, StoreError};
use rusqlite::{OptionalExtension, Transaction, params};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// A leadership epoch: `0` means nobody ever claimed one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Epoch(pub u64);

impl std::fmt::Display for Epoch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Leadership epochs. See the module documentation.
pub trait Fencing {
    /// Claims the next epoch for `holder` (a description for people, such as
    /// `pid 4242 on host`); every handle fenced by an older epoch is refused
    /// from now on.
    fn claim_epoch(&self, holder: &str) -> Result<Epoch, StoreError>;

    /// The current epoch and its holder.
    fn current_epoch(&self) -> Result<(Epoch, Option<String>), StoreError>;

    /// A handle to the same store whose writes are refused once an epoch
    /// other than `epoch` is current.
    fn fenced(&self, epoch: Epoch) -> Arc<dyn Store>;
}

/// The current epoch inside a write transaction.
pub(crate) fn current_epoch(store: &SqliteStore, tx: &Transaction<'_>) -> Result<u64, StoreError> {
    tx.query_row("SELECT epoch FROM leadership WHERE id = 1", [], |r| {
        r.get::<_, i64>(0)
    })
    .optional()
    .map(|e| e.unwrap_or(0) as u64)
    .map_err(|e| store.err("cannot read the leadership epoch", e))
}

impl Fencing for SqliteStore {
    fn claim_epoch(&self, holder: &str) -> Result<Epoch, StoreError> {
        let unfenced = SqliteStore {
            inner: self.inner.clone(),
            fence: None,
        };
        let now = self.now();
        unfenced.write("cannot claim leadership", |tx| {
            let next = current_epoch(self, tx)? + 1;
            tx.execute(
                "INSERT INTO leadership(id, epoch, holder, claimed_at) VALUES (1, ?1, ?2, ?3)
                 ON CONFLICT(id) DO UPDATE SET epoch = excluded.epoch, holder = excluded.holder, claimed_at = excluded.claimed_at",
                params![next as i64, holder, now],
            )
            .map_err(|e| self.err("cannot claim leadership", e))?;
            Ok(Epoch(next))
        })
    }

    fn current_epoch(&self) -> Result<(Epoch, Option<String>), StoreError> {
        self.lock()
            .query_row(
                "SELECT epoch, holder FROM leadership WHERE id = 1",
                [],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Option<String>>(1)?)),
            )
            .optional()
            .map(|row| {
                row.map(|(e, h)| (Epoch(e as u64), h))
                    .unwrap_or((Epoch(0), None))
            })
            .map_err(|e| self.err("cannot read the leadership epoch", e))
    }

    fn fenced(&self, epoch: Epoch) -> Arc<dyn Store> {
        Arc::new(SqliteStore {
            inner: self.inner.clone(),
            fence: Some(epoch.0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prelude::*;
    use crate::{EventKind, NewEvent};

    #[test]
    fn a_deposed_leader_cannot_write() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path()).unwrap();
        assert_eq!(s.current_epoch().unwrap().0, Epoch(0));
        let first = s.claim_epoch("first").unwrap();
        let old = s.fenced(first);
        old.append_event(NewEvent::info(EventKind::ConductorStarted, "mine"))
            .unwrap();
        let second = s.claim_epoch("second").unwrap();
        assert!(second > first);
        let err = old
            .append_event(NewEvent::info(EventKind::ConductorStarted, "late"))
            .unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::Fenced {
                    held: 1,
                    current: 2
                }
            ),
            "{err}"
        );
        // The refused write left nothing behind; the new leader writes.
        let new = s.fenced(second);
        new.append_event(NewEvent::info(EventKind::ConductorStarted, "new"))
            .unwrap();
        let msgs: Vec<String> = s
            .events(&crate::EventFilter::default())
            .unwrap()
            .into_iter()
            .map(|e| e.message)
            .collect();
        assert_eq!(msgs, ["mine", "new"]);
        assert_eq!(
            s.current_epoch().unwrap(),
            (Epoch(2), Some("second".into()))
        );
    }
}
