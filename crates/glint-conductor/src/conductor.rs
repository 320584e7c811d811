//! Starting a conductor and talking to a running one.
//!
//! [`Setup`] gathers what a conductor needs — the store, the leadership it
//! holds, its providers, images, probes, clock and data plane — and
//! [`start`] runs the [`Driver`](crate::driver::Driver) with every
//! reconciler in a task. The [`ConductorHandle`] reads the live status,
//! asks for a pass, and stops it.

use crate::backoff;
use crate::driver::{Command, Driver};
use crate::health::{NetworkProber, Prober};
use crate::images::ImageSource;
use crate::leadership::Lease;
use crate::metrics::Metrics;
use crate::reconciler::{Config, Ctx, Waker};
use crate::sink::EventSink;
use crate::status::Status;
use crate::world::{Providers, World};
use glint_dataplane::DataPlane;
use glint_model::{Name, ProviderKind};
use glint_provider::Provider;
use glint_store::prelude::*;
use glint_store::{Clock, StoreError, SystemClock};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

/// A provider being connected, as [`ProviderFactory::connect`] returns it.
pub type Connecting =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Arc<dyn Provider>, String>> + Send>>;

/// Connects providers the conductor needs but was not started with (Docker,
/// when a version first uses it, or to adopt containers after a restart).
pub trait ProviderFactory: Send + Sync + 'static {
    /// Connects a provider of `kind` for `environment`.
    fn connect(&self, kind: ProviderKind, environment: Name) -> Connecting;
}

/// Everything a conductor is started with.
pub struct Setup {
    /// The store (unfenced: the conductor fences it with its lease).
    pub store: Arc<dyn Store>,
    /// The leadership it holds.
    pub lease: Lease,
    /// Providers available from the start.
    pub providers: Providers,
    /// Connects the others on demand.
    pub factory: Option<Arc<dyn ProviderFactory>>,
    /// Runnable images.
    pub images: Arc<dyn ImageSource>,
    /// Health probes.
    pub prober: Arc<dyn Prober>,
    /// The time.
    pub clock: Arc<dyn Clock>,
    /// Where endpoints run.
    pub dataplane: Arc<dyn DataPlane>,
    /// Settings.
    pub config: Config,
    /// The bound instance API socket ([`crate::instance_api::bind`]),
    /// served with `config.identity` while the conductor runs; `None`: no
    /// instance API.
    pub instance_api: Option<std::os::unix::net::UnixListener>,
}

impl Setup {
    /// A setup with the real clock, network probes, and no providers yet,
    /// programming `dataplane` (a `glint_dataplane::RemoteDataPlane` for the
    /// separate process, a `LocalDataPlane` in this one).
    pub fn new(
        store: Arc<dyn Store>,
        lease: Lease,
        images: Arc<dyn ImageSource>,
        dataplane: Arc<dyn DataPlane>,
    ) -> Setup {
        Setup {
            store,
            lease,
            providers: Providers::new(),
            factory: None,
            images,
            prober: Arc::new(NetworkProber),
            clock: Arc::new(SystemClock),
            dataplane,
            config: Config::default(),
            instance_api: None,
        }
    }
}

/// A running conductor.
pub struct ConductorHandle {
    commands: mpsc::UnboundedSender<Command>,
    waker: Waker,
    metrics: Arc<Metrics>,
    status: watch::Receiver<Arc<Status>>,
    task: JoinHandle<()>,
    instance_api: Option<JoinHandle<()>>,
    _lease: Arc<Lease>,
}

impl Drop for ConductorHandle {
    fn drop(&mut self) {
        if let Some(t) = self.instance_api.take() {
            t.abort();
        }
    }
}

impl ConductorHandle {
    /// The live status; changes after every pass.
    pub fn status(&self) -> watch::Receiver<Arc<Status>> {
        self.status.clone()
    }

    /// Asks for a pass now (after an apply).
    pub fn poke(&self) {
        self.waker.wake();
    }

    /// A cheap, cloneable way to poke and read status from elsewhere (the API).
    pub fn client(&self) -> ConductorClient {
        ConductorClient {
            waker: self.waker.clone(),
            status: self.status.clone(),
            metrics: self.metrics.clone(),
        }
    }

    /// Stops the conductor. With `stop_instances`, every instance is drained
    /// and terminated first (`glint up` on Ctrl-C); without, instances keep
    /// running and the next conductor adopts them (`glint conductor`).
    pub async fn shutdown(mut self, stop_instances: bool) {
        let (done, wait) = oneshot::channel();
        if self
            .commands
            .send(Command::Shutdown {
                stop_instances,
                done,
            })
            .is_ok()
        {
            let _ = wait.await;
        }
        if let Some(t) = self.instance_api.take() {
            t.abort();
        }
        let _ = (&mut self.task).await;
    }
}

/// A handle for the API: poke and read status.
#[derive(Clone)]
pub struct ConductorClient {
    waker: Waker,
    status: watch::Receiver<Arc<Status>>,
    metrics: Arc<Metrics>,
}

impl ConductorClient {
    /// Asks for a pass now.
    pub fn poke(&self) {
        self.waker.wake();
    }

    /// The latest status.
    pub fn status(&self) -> Arc<Status> {
        self.status.borrow().clone()
    }

    /// The status as it changes (for live pages and streams).
    pub fn watch(&self) -> watch::Receiver<Arc<Status>> {
        self.status.clone()
    }

    /// The conductor's metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }
}

/// Starts a conductor. See the module documentation.
pub async fn start(setup: Setup) -> Result<ConductorHandle, StoreError> {
    let Setup {
        store,
        lease,
        providers,
        factory,
        images,
        prober,
        clock,
        dataplane,
        config,
        instance_api,
    } = setup;
    let store_id = store.store_id()?;
    let fenced = store.fenced(lease.epoch);
    let waker = Waker::new();
    let metrics = Arc::new(Metrics::new(clock.clone()));
    let ctx = Ctx {
        store: fenced.clone(),
        store_id,
        clock: clock.clone(),
        events: EventSink::new(fenced.clone(), clock).with_metrics(metrics.clone()),
        waker: waker.clone(),
        images,
        prober,
        config,
        epoch: lease.epoch.0,
        policy: backoff::Policy::DEFAULT,
        metrics: metrics.clone(),
    };
    let instance_api = match (instance_api, ctx.config.identity.clone()) {
        (Some(listener), Some(issuer)) => Some(
            crate::instance_api::serve(
                listener,
                fenced.clone(),
                issuer,
                ctx.events.clone(),
                ctx.clock.clone(),
            )
            .map_err(|e| StoreError::Unavailable(format!("cannot serve the instance API: {e}")))?,
        ),
        _ => None,
    };
    let world = World::new(fenced, providers);
    let (status_tx, status_rx) = watch::channel(Arc::new(Status::default()));
    let (commands, rx) = mpsc::unbounded_channel();
    let reconcilers = crate::reconcilers::all(&waker, factory, dataplane);
    let driver = Driver::new(world, ctx, reconcilers, status_tx, lease.lost.clone());
    let task = tokio::spawn(driver.run(rx));
    Ok(ConductorHandle {
        commands,
        waker,
        metrics,
        status: status_rx,
        task,
        instance_api,
        _lease: Arc::new(lease),
    })
}

/// An error and its causes on one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
