//! The contract every reconciler follows, and what they are given.
//!
//! A reconciler looks at desired and observed state afresh on every pass and
//! acts to bring them together (level-triggered, idempotent: "even when we
//! think we know what changed, we do not use that information"). It is a
//! struct in its own file implementing [`Reconciler`]; the driver
//! (`driver.rs`) runs every reconciler in a fixed order on every pass — on a
//! timer, on a change in the store, and whenever one of them is woken — so a
//! new capability (a firewall, variables, volumes, an autoscaler) arrives as
//! a new file and one line in the driver's list, without editing the others.
//!
//! - [`Reconciler::reconcile`] gets the shared [`World`] (exclusively, for
//!   the duration of the call) and the [`Ctx`] of services; it returns an
//!   [`Action`]: when it wants to run again even if nothing happens.
//! - Work that takes time (a launch, a drain, a bind) runs in a task that
//!   reports back through the reconciler's own [`Inbox`]; posting to it wakes
//!   the driver. The reconciler reads its inbox at the start of its next run.
//! - An `Err` is handled by one error policy in the driver: it is shown in
//!   the reconciler's status and the reconciler is retried after the
//!   [`backoff`](crate::backoff) policy's delay — never a tight loop.
//! - [`Reconciler::status`] is a value `glint status` and the API show.

use crate::backoff;
use crate::health::Prober;
use crate::images::ImageSource;
use crate::sink::EventSink;
use crate::world::World;
use async_trait::async_trait;
use glint_store::prelude::*;
use glint_store::{Clock, StoreError};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, mpsc};

/// When a reconciler wants to run again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Action {
    /// Run again after this long even if nothing happens; `None`: only on a
    /// change (the driver's periodic pass still runs it).
    pub requeue_after: Option<Duration>,
}

impl Action {
    /// Run again after `d`.
    pub fn requeue(d: Duration) -> Action {
        Action {
            requeue_after: Some(d),
        }
    }

    /// Run again at `at` (ms since the epoch), or at once if that is past.
    pub fn requeue_at(at: i64, now: i64) -> Action {
        Action::requeue(Duration::from_millis(u64::try_from(at - now).unwrap_or(0)))
    }

    /// Run again on the next change.
    pub fn await_change() -> Action {
        Action {
            requeue_after: None,
        }
    }
}

/// Why a reconciler could not do its job this time.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Anything else, described.
    #[error("{0}")]
    Other(String),
}

impl ReconcileError {
    /// Whether this conductor has been deposed (another holds a newer
    /// leadership epoch): it must stop acting at once.
    pub fn is_fenced(&self) -> bool {
        matches!(self, ReconcileError::Store(StoreError::Fenced { .. }))
    }
}

/// What `glint status` shows of one reconciler.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconcilerStatus {
    /// Its name.
    pub name: String,
    /// Whether its last run succeeded.
    pub ok: bool,
    /// The last error, while it lasts.
    pub error: Option<String>,
    /// Errors in a row.
    pub errors: u32,
    /// When it last ran (ms since the epoch).
    pub last_run: Option<i64>,
    /// What it wants people to know (held launches, pending retries…).
    pub notes: Vec<String>,
}

/// Wakes the driver for a pass.
#[derive(Debug, Clone, Default)]
pub struct Waker(Arc<Notify>);

impl Waker {
    /// A new waker.
    pub fn new() -> Waker {
        Waker::default()
    }

    /// Asks for a pass now.
    pub fn wake(&self) {
        self.0.notify_one();
    }

    /// Resolves at the next [`wake`](Waker::wake) (or at once if one is pending).
    pub async fn woken(&self) {
        self.0.notified().await;
    }
}

/// A reconciler's inbox: operations post their results here; posting wakes
/// the driver.
#[derive(Debug)]
pub struct Inbox<T> {
    tx: mpsc::UnboundedSender<T>,
    rx: mpsc::UnboundedReceiver<T>,
    waker: Waker,
}

/// The sending side of an [`Inbox`].
#[derive(Debug)]
pub struct Post<T> {
    tx: mpsc::UnboundedSender<T>,
    waker: Waker,
}

impl<T> Clone for Post<T> {
    fn clone(&self) -> Self {
        Post {
            tx: self.tx.clone(),
            waker: self.waker.clone(),
        }
    }
}

impl<T> Post<T> {
    /// Delivers `msg` and wakes the driver. A message to a reconciler that
    /// is gone (the conductor stopped) is dropped.
    pub fn send(&self, msg: T) {
        if self.tx.send(msg).is_ok() {
            self.waker.wake();
        }
    }
}

impl<T> Inbox<T> {
    /// An inbox whose posts wake `waker`.
    pub fn new(waker: &Waker) -> Inbox<T> {
        let (tx, rx) = mpsc::unbounded_channel();
        Inbox {
            tx,
            rx,
            waker: waker.clone(),
        }
    }

    /// A sender for tasks.
    pub fn post(&self) -> Post<T> {
        Post {
            tx: self.tx.clone(),
            waker: self.waker.clone(),
        }
    }

    /// Everything delivered so far.
    pub fn drain(&mut self) -> Vec<T> {
        let mut out = Vec::new();
        while let Ok(m) = self.rx.try_recv() {
            out.push(m);
        }
        out
    }
}

/// Configuration of a conductor.
#[derive(Debug, Clone)]
pub struct Config {
    /// How it runs, recorded in the heartbeat.
    pub mode: glint_store::ConductorMode,
    /// Where its local API listens, recorded in the heartbeat.
    pub api: Option<String>,
    /// How long an endpoint waits for a backend before answering 503.
    pub endpoint_wait: Duration,
    /// How often the world is re-read even when nothing happens.
    pub resync: Duration,
    /// How often the heartbeat is written.
    pub heartbeat: Duration,
    /// The data directory whose master key opens the store's secrets
    /// (`secrets.key`, unless `GLINT_MASTER_KEY` is set); `None`: readers
    /// of secrets cannot be launched.
    pub secrets_dir: Option<std::path::PathBuf>,
    /// Issues instances' identities (`/run/glint/identity`) and names the
    /// instance API socket they get; `None`: instances get no `/run/glint`
    /// (and variables are not delivered).
    pub identity: Option<Arc<crate::identity::Issuer>>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            mode: glint_store::ConductorMode::Daemon,
            api: None,
            endpoint_wait: Duration::from_secs(2),
            resync: Duration::from_secs(2),
            heartbeat: Duration::from_secs(2),
            secrets_dir: None,
            identity: None,
        }
    }
}

/// The services every reconciler may use.
#[derive(Clone)]
pub struct Ctx {
    /// The store, fenced by this conductor's leadership epoch.
    pub store: Arc<dyn Store>,
    /// The store's id, in every label.
    pub store_id: String,
    /// The time.
    pub clock: Arc<dyn Clock>,
    /// Where events go.
    pub events: EventSink,
    /// Wakes the driver.
    pub waker: Waker,
    /// Runnable images.
    pub images: Arc<dyn ImageSource>,
    /// Health probes.
    pub prober: Arc<dyn Prober>,
    /// The configuration.
    pub config: Config,
    /// This conductor's leadership epoch.
    pub epoch: u64,
    /// The backoff policy every retry follows.
    pub policy: backoff::Policy,
    /// The conductor's metrics.
    pub metrics: Arc<crate::metrics::Metrics>,
}

impl Ctx {
    /// Now, by the clock.
    pub fn now(&self) -> i64 {
        self.clock.now_ms()
    }
}

/// A reconciler. See the module documentation.
#[async_trait]
pub trait Reconciler: Send {
    /// Its name (`instances`, `endpoints`…).
    fn name(&self) -> &'static str;

    /// One run. See the module documentation.
    async fn reconcile(&mut self, world: &mut World, ctx: &Ctx) -> Result<Action, ReconcileError>;

    /// What it wants people to know now.
    fn notes(&self) -> Vec<String> {
        Vec::new()
    }

    /// Whether work it started is still under way (the driver waits for it
    /// when stopping).
    fn busy(&self) -> bool {
        false
    }

    /// Called once when the conductor stops, after the last pass: release
    /// what this reconciler holds (close endpoints…).
    async fn stop(&mut self, _world: &mut World, _ctx: &Ctx, _stop_instances: bool) {}
}
