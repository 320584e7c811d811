//! Glint's store: the single source of truth for versions, instances and the
//! event log.
//!
//! What the store holds is defined by traits, one per domain, gathered in
//! [`Store`]:
//! - [`Versions`]: every version of the environment (number, content hash,
//!   compiled environment, image digests, sources, time, rollout outcome);
//! - [`Instances`]: the instances the conductor believes exist, including
//!   launches it intends and retirements it has begun (write-ahead intents, so
//!   a crash at any moment is recoverable);
//! - [`Backoffs`]: retry state (crash loops, failing launches, binds,
//!   provider connections) that must survive a conductor restart;
//! - [`Volumes`]: volumes (never removed but by `glint volume rm`) and the
//!   instances' claims on them (one writer at a time, compare-and-set);
//! - [`Scaling`]: the autoscaler's chosen counts and their reasons;
//! - [`EventLog`]: the append-only log of every action, detection and
//!   incident;
//! - [`Meta`]: the store's random id (used in ownership labels) and the
//!   conductor's heartbeat;
//! - [`Fencing`]: the leadership epoch; a conductor writes through a handle
//!   fenced by the epoch it was elected with, and once a newer epoch has been
//!   claimed every write through the old handle is refused
//!   ([`StoreError::Fenced`]), so a deposed conductor's late writes are lost
//!   rather than applied;
//! - [`Tokens`]: API tokens (accessor, role, environment, expiry; only a
//!   hash of each secret);
//! - [`Secrets`]: secrets sealed at rest with envelope encryption
//!   ([`seal`]: a data key per value under a master key), current version
//!   only;
//! - [`Incidents`]: what was found out of place and what was done, one
//!   record per incident with repeats grouped by a dedup key;
//! - [`Variables`]: the values runtime variables are written at run time,
//!   with their history (compare-and-set on a version index);
//! - [`Notifications`]: the outbox of messages for `notify` sinks and each
//!   sink's cursor in the event log;
//! - [`WriteStats`]: how long writes take (for metrics);
//! - [`Changes`]: a change feed — a revision that moves whenever anything is
//!   committed, by this process or another — instead of polling.
//!
//! [`SqliteStore`] implements them on one SQLite database (`glint.db`, WAL
//! mode) in the data directory; an etcd implementation is planned. The
//! schema is versioned from day one ([`schema`]): each migration runs once,
//! in a transaction, and a database written by a newer Glint is refused
//! rather than damaged.
//!
//! Opening is careful (`file`, [`datadir`]): the data directory is created
//! owner-only and refused when others could change it; a file that is not a
//! Glint store is an error, never a fresh start; read commands open the
//! store read-only and never create or migrate anything.
//!
//! Times are milliseconds since the Unix epoch, taken from the store's
//! [`Clock`], never from the system clock directly, so that the conductor
//! can be tested on paused time.
//!
//! Layout: `sqlite` (the SQLite store: opening, transactions, fencing),
//! `file` (what a store file must look like), `datadir`, one
//! file per domain (`versions`, `instances`, `backoff`, `events`, `meta`,
//! `leadership`, `volumes`, `scaling`, `secrets`, `incidents`, `variables`,
//! `notifications`), `seal` (envelope
//! encryption), `feed` (the change feed), `clock`, `schema`.

pub mod backoff;
pub mod clock;
pub mod datadir;
pub mod events;
pub mod feed;
mod file;
pub mod incidents;
pub mod instances;
pub mod leadership;
pub mod meta;
pub mod notifications;
pub mod scaling;
pub mod schema;
pub mod seal;
pub mod secrets;
pub mod sqlite;
pub mod stats;
pub mod tokens;
pub mod variables;
pub mod versions;
pub mod volumes;

pub use backoff::{BackoffRecord, Backoffs};
pub use clock::{Clock, SystemClock};
pub use datadir::prepare_data_dir;
pub use events::{Event, EventFilter, EventKind, EventLog, NewEvent, Severity};
pub use feed::{ChangeFeed, Changes};
pub use incidents::{IncidentFilter, IncidentRecord, IncidentState, Incidents, NewIncident};
pub use instances::{Health, InstanceRecord, InstanceState, Instances};
pub use leadership::{Epoch, Fencing};
pub use meta::{ConductorInfo, ConductorMode, Meta};
pub use notifications::{
    Attempt, NewNotification, NotificationCounts, NotificationFilter, NotificationRecord,
    NotificationState, Notifications,
};
pub use scaling::{ScaleRecord, Scaling};
pub use seal::{KeyOrigin, MasterKey, SealError};
pub use secrets::{SecretError, SecretRecord, Secrets};
pub use sqlite::{DB_FILE, SqliteStore};
pub use stats::{WriteLatency, WriteStats};
pub use tokens::{NewToken, Role, TokenConflict, TokenRecord, Tokens};
pub use variables::{CasConflict, VariableRecord, Variables};
pub use versions::{
    Created, NewVersion, Outcome, SourceFile, VersionKind, VersionRecord, VersionSummary, Versions,
};
pub use volumes::{Claimed, NewClaim, RemovalRefused, VolumeClaim, VolumeRecord, Volumes};

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Everything a store does. Implemented for every type that implements the
/// domain traits; use `&dyn Store` / `Arc<dyn Store>` and bring the domain
/// traits into scope with `use glint_store::prelude::*`.
pub trait Store:
    Versions
    + Instances
    + Backoffs
    + Volumes
    + Scaling
    + EventLog
    + Meta
    + Fencing
    + Changes
    + Tokens
    + Secrets
    + Incidents
    + Variables
    + Notifications
    + WriteStats
    + std::fmt::Debug
    + Send
    + Sync
{
}

impl<T> Store for T where
    T: Versions
        + Instances
        + Backoffs
        + Volumes
        + Scaling
        + EventLog
        + Meta
        + Fencing
        + Changes
        + Tokens
        + Secrets
        + Incidents
        + Variables
        + Notifications
        + WriteStats
        + std::fmt::Debug
        + Send
        + Sync
{
}

/// The domain traits, to call store methods on `dyn Store`.
pub mod prelude {
    pub use crate::{
        Backoffs, Changes, EventLog, Fencing, Incidents, Instances, Meta, Notifications, Scaling,
        Secrets, Store, Tokens, Variables, Versions, Volumes, WriteStats,
    };
}

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
    /// A write through a handle fenced by an old leadership epoch: another
    /// conductor has been elected since.
    #[error(
        "refused a write by a deposed conductor (epoch {held}; the current leader holds epoch {current})"
    )]
    Fenced {
        /// The epoch the writer was elected with.
        held: u64,
        /// The epoch claimed since.
        current: u64,
    },
    /// The store refused a write for another reason (injected by tests, or
    /// a backend that is read-only).
    #[error("the store refused the write: {0}")]
    Unavailable(String),
}

impl StoreError {
    /// Whether retrying the same call later may succeed by itself (a busy or
    /// full database, an unreachable backend) — as opposed to a refusal that
    /// will not change (fenced, corrupt, too new, no such version).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            StoreError::Sqlite { .. } | StoreError::Unavailable(_) | StoreError::DataDir { .. }
        )
    }
}

/// Milliseconds since the Unix epoch by the system clock. For people-facing
/// displays (ages in the CLI); the store and the conductor use a [`Clock`].
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
