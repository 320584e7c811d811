//! Who may act: leadership, and the epoch every conductor write carries.
//!
//! A conductor acts only while it holds a [`Lease`]: it gets one from a
//! [`Leadership`] when it wins, with a fresh epoch claimed in the store
//! ([`glint_store::Fencing`]); it writes through a store handle fenced by
//! that epoch, so once someone else has claimed a newer one its late writes
//! are refused. [`Lease::lost`] turns true if the leadership is lost while
//! the conductor runs (an etcd lease that expired); the driver then stops
//! acting at once.
//!
//! [`LocalLeadership`] is leadership on one machine: an exclusive `flock` on
//! `<data>/conductor.lock` ([`crate::lock`]), held for the conductor's life
//! and released by the kernel however the process dies.

use crate::lock::{ConductorLock, LockError};
use glint_store::prelude::*;
use glint_store::{Epoch, StoreError};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::watch;

/// Why leadership could not be had.
#[derive(Debug, thiserror::Error)]
pub enum LeadershipError {
    /// Someone else leads.
    #[error(transparent)]
    Held(LockError),
    /// The lock could not be used.
    #[error("cannot take the conductor lock")]
    Lock(#[source] LockError),
    /// The epoch could not be claimed.
    #[error("cannot claim a leadership epoch")]
    Store(#[source] StoreError),
}

/// Held leadership.
pub struct Lease {
    /// The epoch this leadership claimed.
    pub epoch: Epoch,
    /// Turns true when the leadership is lost.
    pub lost: watch::Receiver<bool>,
    _guard: Box<dyn Send + Sync>,
    _lost_tx: Option<watch::Sender<bool>>,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease").field("epoch", &self.epoch).finish()
    }
}

impl Lease {
    /// A lease that is never lost, held as long as `guard` lives.
    pub fn held(epoch: Epoch, guard: Box<dyn Send + Sync>) -> Lease {
        let (tx, lost) = watch::channel(false);
        Lease {
            epoch,
            lost,
            _guard: guard,
            _lost_tx: Some(tx),
        }
    }
}

/// A way to become the one conductor that acts.
pub trait Leadership: Send + Sync {
    /// Takes leadership without waiting, or says who holds it.
    fn acquire(&self) -> Result<Lease, LeadershipError>;
}

/// Leadership on one machine. See the module documentation.
pub struct LocalLeadership {
    dir: PathBuf,
    store: Arc<dyn Store>,
}

impl LocalLeadership {
    /// Leadership over the data directory `dir`, recording epochs in `store`.
    pub fn new(dir: PathBuf, store: Arc<dyn Store>) -> LocalLeadership {
        LocalLeadership { dir, store }
    }
}

impl Leadership for LocalLeadership {
    fn acquire(&self) -> Result<Lease, LeadershipError> {
        let lock = ConductorLock::acquire(&self.dir).map_err(|e| match e {
            held @ LockError::Held { .. } => LeadershipError::Held(held),
            other => LeadershipError::Lock(other),
        })?;
        let holder = format!("pid {}", std::process::id());
        let epoch = self
            .store
            .claim_epoch(&holder)
            .map_err(LeadershipError::Store)?;
        Ok(Lease::held(epoch, Box::new(lock)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_leadership_claims_a_newer_epoch_and_only_one_is_held() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(glint_store::SqliteStore::open(dir.path()).unwrap());
        let l = LocalLeadership::new(dir.path().to_owned(), store.clone());
        let first = l.acquire().unwrap();
        assert!(matches!(l.acquire(), Err(LeadershipError::Held(_))));
        let e1 = first.epoch;
        drop(first);
        let second = l.acquire().unwrap();
        assert!(second.epoch > e1);
        assert_eq!(store.current_epoch().unwrap().0, second.epoch);
    }
}
