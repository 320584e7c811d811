//! The conductor's run loop.
//!
//! One task owns all mutable state and runs *passes*. A pass reads the newest
//! version from the store, builds the list of members from what it believes
//! is live, asks [`decide`](crate::decide::decide) what to do, starts those
//! operations, and hands the endpoints reconciler (`glint_dataplane::Endpoints`,
//! which programs the data plane in its own task) the endpoints and the ready
//! instances each routes to. Passes run
//! whenever something happens (a provider event, a health transition, an
//! operation finishing, an apply poking the API) and on a timer, so a missed
//! event only delays a correction.
//!
//! Operations that take time (launch, drain-and-terminate; binding endpoints
//! is the reconciler's) run in their own tasks and report back with a
//! message; the loop never waits on them, nor on the data plane. Each writes its intent to the store first:
//!
//! - launch: row `launching` → provider launch → row `running`;
//! - retire: row `retiring` → out of every endpoint's rotation → drain →
//!   terminate (SIGTERM, grace, SIGKILL) → provider cleanup → row `gone`.
//!
//! so that after a crash at any point the next conductor's first resync
//! ([`Runtime::resync`]) can tell what to adopt, finish or remove.

use crate::decide::{Decision, Member, MemberPhase, Outcome, decide};
use crate::health::{self, Phase, Tracker, Transition};
use crate::images::ImageSource;
use crate::plan::{Target, fingerprint};
use crate::status::{EndpointStatus, InstanceStatus, RolloutStatus, ServiceStatus, Status};
use glint_dataplane::{
    Backend, DataPlane, Desired, DesiredEndpoint, EndpointConfig, EndpointEvent, EndpointSpec,
    Endpoints,
};
use glint_model::{ContentHash, InstanceId, Labels, Name, ProviderKind, Service, VersionNumber};
use glint_provider::{LaunchSpec, Observed, Provider, ProviderEvent, RunState};
use glint_store::{
    ConductorInfo, Created, EventKind, Health, InstanceRecord, InstanceState, NewEvent, NewVersion,
    Store, VersionKind, VersionRecord, now_ms,
};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

/// How often the conductor re-reads the world even when nothing happens.
const RESYNC: Duration = Duration::from_secs(2);
/// How often the heartbeat is written.
const HEARTBEAT: Duration = Duration::from_secs(2);
/// How often the store is polled for a new version (an apply also pokes).
const STORE_POLL: Duration = Duration::from_millis(250);
/// First crash-loop backoff; doubles up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest crash-loop backoff.
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Failures in a row before launches of a service are held back.
const BACKOFF_AFTER: u32 = 3;
/// Failed new instances that fail a version's rollout.
pub const ROLLOUT_FAILURES: u32 = 3;

/// Messages into the loop.
#[derive(Debug)]
pub(crate) enum Msg {
    Provider(ProviderEvent),
    Health(InstanceId, Transition),
    Launched(InstanceId, Result<Observed, LaunchError>),
    Retired(InstanceId, Result<String, String>),
    Endpoint(EndpointEvent),
    Poke,
    Shutdown {
        stop_instances: bool,
        done: oneshot::Sender<()>,
    },
}

/// Why a launch failed.
#[derive(Debug)]
pub(crate) struct LaunchError {
    message: String,
    /// The image failed verification: an incident, not just a failure.
    tampered: bool,
}

impl LaunchError {
    fn plain(message: String) -> LaunchError {
        LaunchError {
            message,
            tampered: false,
        }
    }
}

/// The providers the conductor may use, by kind.
pub type Providers = BTreeMap<ProviderKind, Arc<dyn Provider>>;

/// A provider being connected, as [`ProviderFactory::connect`] returns it.
pub type Connecting =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Arc<dyn Provider>, String>> + Send>>;

/// Connects providers the conductor needs but was not started with (Docker,
/// when a version first uses it, or to adopt containers after a restart).
pub trait ProviderFactory: Send + Sync + 'static {
    /// Connects a provider of `kind` for `environment`.
    fn connect(&self, kind: ProviderKind, environment: Name) -> Connecting;
}

/// How long a failed provider connection is left before it is tried again.
const PROVIDER_RETRY: Duration = Duration::from_secs(10);

/// How the conductor runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// `daemon` or `up`, recorded in the heartbeat.
    pub mode: String,
    /// Where the local API listens, recorded in the heartbeat.
    pub api: Option<String>,
    /// How long an endpoint waits for a backend before answering 503.
    pub endpoint_wait: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            mode: "daemon".into(),
            api: None,
            endpoint_wait: Duration::from_secs(2),
        }
    }
}

/// A running conductor.
pub struct ConductorHandle {
    tx: mpsc::UnboundedSender<Msg>,
    status: watch::Receiver<Arc<Status>>,
    task: JoinHandle<()>,
}

impl ConductorHandle {
    /// The live status; changes after every pass.
    pub fn status(&self) -> watch::Receiver<Arc<Status>> {
        self.status.clone()
    }

    /// Asks for a pass now (after an apply).
    pub fn poke(&self) {
        let _ = self.tx.send(Msg::Poke);
    }

    /// A cheap, cloneable way to poke and read status from elsewhere (the API).
    pub fn client(&self) -> ConductorClient {
        ConductorClient {
            tx: self.tx.clone(),
            status: self.status.clone(),
        }
    }

    /// Stops the conductor. With `stop_instances`, every instance is drained
    /// and terminated first (`glint up` on Ctrl-C); without, instances keep
    /// running and the next conductor adopts them (`glint conductor`).
    pub async fn shutdown(self, stop_instances: bool) {
        let (done, wait) = oneshot::channel();
        if self
            .tx
            .send(Msg::Shutdown {
                stop_instances,
                done,
            })
            .is_ok()
        {
            let _ = wait.await;
        }
        let _ = self.task.await;
    }
}

/// A handle for the API: poke and read status.
#[derive(Clone)]
pub struct ConductorClient {
    tx: mpsc::UnboundedSender<Msg>,
    status: watch::Receiver<Arc<Status>>,
}

impl ConductorClient {
    /// Asks for a pass now.
    pub fn poke(&self) {
        let _ = self.tx.send(Msg::Poke);
    }

    /// The latest status.
    pub fn status(&self) -> Arc<Status> {
        self.status.borrow().clone()
    }
}

/// Starts a conductor over `store` with the given providers, image source
/// and data plane (the endpoints it programs). The caller must hold the data
/// directory's conductor lock.
pub async fn start(
    store: Arc<Store>,
    providers: Providers,
    factory: Option<Arc<dyn ProviderFactory>>,
    images: Arc<dyn ImageSource>,
    data_plane: Arc<dyn DataPlane>,
    config: Config,
) -> Result<ConductorHandle, glint_store::StoreError> {
    let store_id = store.store_id()?;
    let (tx, rx) = mpsc::unbounded_channel();
    let (status_tx, status_rx) = watch::channel(Arc::new(Status::default()));
    for provider in providers.values() {
        forward_events(provider.as_ref(), tx.clone());
    }
    let (endpoint_tx, mut endpoint_rx) = mpsc::unbounded_channel();
    let endpoints = Endpoints::start(data_plane, endpoint_tx);
    {
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Some(e) = endpoint_rx.recv().await {
                if tx.send(Msg::Endpoint(e)).is_err() {
                    break;
                }
            }
        });
    }
    let started = Instant::now();
    let info = ConductorInfo {
        pid: std::process::id(),
        mode: config.mode.clone(),
        api: config.api.clone(),
        started_at: now_ms(),
        heartbeat_at: now_ms(),
        stopped: false,
    };
    store.write_conductor(&info)?;
    store.append_event(NewEvent::info(
        EventKind::ConductorStarted,
        format!("conductor started (pid {}, {})", info.pid, info.mode),
    ))?;
    let rt = Runtime {
        store,
        store_id,
        providers,
        factory,
        provider_errors: HashMap::new(),
        images,
        config,
        tx: tx.clone(),
        status: status_tx,
        started,
        info,
        target: None,
        versions: HashMap::new(),
        live: BTreeMap::new(),
        endpoints,
        backoff: HashMap::new(),
        stopping: false,
        outcome: Outcome::default(),
        wake_at: None,
        announced: None,
        seen_available: HashMap::new(),
    };
    let task = tokio::spawn(rt.run(rx));
    Ok(ConductorHandle {
        tx,
        status: status_rx,
        task,
    })
}

/// Forwards a provider's events into the loop.
fn forward_events(provider: &dyn Provider, tx: mpsc::UnboundedSender<Msg>) {
    let mut events = provider.subscribe();
    tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(e) => {
                    if tx.send(Msg::Provider(e)).is_err() {
                        break;
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    if tx.send(Msg::Provider(ProviderEvent::Resync)).is_err() {
                        break;
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            }
        }
    });
}

/// One live instance as the loop tracks it.
struct Live {
    rec: InstanceRecord,
    phase: MemberPhase,
    /// Why it failed, when it did (shown when it is retired).
    failure: Option<String>,
    fingerprint: Option<ContentHash>,
    probe: Option<JoinHandle<()>>,
}

impl Drop for Live {
    fn drop(&mut self) {
        if let Some(p) = self.probe.take() {
            p.abort();
        }
    }
}

/// Crash-loop backoff of a service.
struct Backoff {
    failures: u32,
    until: Option<Instant>,
    last_reason: String,
}

struct Runtime {
    store: Arc<Store>,
    store_id: String,
    providers: Providers,
    factory: Option<Arc<dyn ProviderFactory>>,
    /// Why a provider could not be connected, and when to try again.
    provider_errors: HashMap<ProviderKind, (String, Instant)>,
    images: Arc<dyn ImageSource>,
    config: Config,
    tx: mpsc::UnboundedSender<Msg>,
    status: watch::Sender<Arc<Status>>,
    started: Instant,
    info: ConductorInfo,
    target: Option<Arc<VersionRecord>>,
    versions: HashMap<VersionNumber, Arc<VersionRecord>>,
    live: BTreeMap<InstanceId, Live>,
    /// The endpoints reconciler, programming the data plane.
    endpoints: Endpoints,
    backoff: HashMap<Name, Backoff>,
    stopping: bool,
    /// What the last pass's `decide` concluded (routes, progress).
    outcome: Outcome,
    /// When time alone changes a decision.
    wake_at: Option<Instant>,
    /// The version whose rollout start was announced by this process.
    announced: Option<VersionNumber>,
    /// Per service, the available count last reported in a progress event.
    seen_available: HashMap<Name, u32>,
}

impl Runtime {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Msg>) {
        // Every provider that runs, or is to run, an instance must be there
        // before adoption, or its instances would look vanished.
        self.refresh_target();
        let mut kinds: BTreeSet<ProviderKind> = self
            .store
            .live_instances()
            .unwrap_or_default()
            .iter()
            .map(|r| r.provider)
            .collect();
        kinds.extend(self.target_provider_kinds());
        self.ensure_providers(kinds).await;
        self.adopt().await;
        self.pass().await;
        let mut resync = tokio::time::interval(RESYNC);
        resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        let mut poll = tokio::time::interval(STORE_POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut data_version = self.store.data_version().unwrap_or(0);
        loop {
            let wake = self.next_wakeup();
            tokio::select! {
                msg = rx.recv() => {
                    let Some(msg) = msg else { break };
                    let mut shutdown = self.handle(msg).await;
                    // Debounce: take everything already queued before a pass.
                    while shutdown.is_none() {
                        let Ok(msg) = rx.try_recv() else { break };
                        shutdown = self.handle(msg).await;
                    }
                    if let Some((stop_instances, done)) = shutdown {
                        self.finish(stop_instances, &mut rx).await;
                        let _ = done.send(());
                        return;
                    }
                }
                _ = resync.tick() => self.resync().await,
                _ = heartbeat.tick() => self.heartbeat(),
                _ = poll.tick() => {
                    // A commit by another process (an apply) changes this.
                    let v = self.store.data_version().unwrap_or(data_version);
                    if v == data_version { continue; }
                    data_version = v;
                }
                _ = sleep_until(wake) => {}
            }
            self.pass().await;
        }
    }

    fn next_wakeup(&self) -> Option<Instant> {
        let backoffs = self.backoff.values().filter_map(|b| b.until);
        backoffs.chain(self.wake_at).min()
    }

    /// Applies one message; returns the shutdown request if it is one.
    async fn handle(&mut self, msg: Msg) -> Option<(bool, oneshot::Sender<()>)> {
        match msg {
            Msg::Provider(ProviderEvent::Exited { instance, state }) => {
                self.exited(&instance, state).await;
            }
            Msg::Provider(ProviderEvent::Drift {
                instance,
                what,
                kind,
            }) => {
                self.drifted(&instance, &what, kind);
            }
            Msg::Provider(ProviderEvent::Incident { what, action }) => {
                self.event(NewEvent::incident(
                    EventKind::Drift,
                    format!("{what}; {action}"),
                ));
            }
            Msg::Provider(ProviderEvent::Resync) => self.resync().await,
            Msg::Health(id, t) => self.health(&id, t),
            Msg::Launched(id, r) => self.launched(&id, r).await,
            Msg::Retired(id, r) => self.retired(&id, r),
            Msg::Endpoint(e) => self.endpoint_event(e),
            Msg::Poke => {}
            Msg::Shutdown {
                stop_instances,
                done,
            } => return Some((stop_instances, done)),
        }
        None
    }

    /// Logs a failed store write. The conductor goes on: every write it
    /// makes is also derivable on the next pass or after a restart (intents
    /// are re-checked against what providers observe), so a transient store
    /// error delays a record rather than corrupting the world.
    fn persist<T>(&self, r: Result<T, glint_store::StoreError>) {
        if let Err(e) = r {
            tracing::error!("cannot write to the store: {e}");
        }
    }

    fn event(&self, e: NewEvent) {
        if let Err(err) = self.store.append_event(e) {
            tracing::error!("cannot record event: {err}");
        }
    }

    fn heartbeat(&mut self) {
        self.info.heartbeat_at = now_ms();
        if let Err(e) = self.store.write_conductor(&self.info) {
            tracing::warn!("cannot write heartbeat: {e}");
        }
    }

    // -----------------------------------------------------------------------
    // Reading the world

    /// Loads a version, cached.
    fn version(&mut self, n: VersionNumber) -> Option<Arc<VersionRecord>> {
        if let Some(v) = self.versions.get(&n) {
            return Some(v.clone());
        }
        match self.store.version(n) {
            Ok(v) => {
                let v = Arc::new(v);
                self.versions.insert(n, v.clone());
                Some(v)
            }
            Err(e) => {
                tracing::warn!("cannot load version {n}: {e}");
                None
            }
        }
    }

    /// Re-reads the newest version.
    fn refresh_target(&mut self) {
        let latest = match self.store.latest_version_number() {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!("cannot read the newest version: {e}");
                return;
            }
        };
        if latest == self.target.as_ref().map(|t| t.number) {
            return;
        }
        if let Some(old) = &self.target
            && self
                .store
                .set_outcome(
                    old.number,
                    glint_store::Outcome::Superseded,
                    "a newer version arrived before it converged",
                )
                .unwrap_or(false)
        {
            self.event(
                NewEvent::info(
                    EventKind::RolloutFailed,
                    format!("version {} was superseded before it converged", old.number),
                )
                .version(old.number),
            );
        }
        self.target = latest.and_then(|n| self.version(n));
        // Fingerprints are relative to the target: recompute them.
        let keys: Vec<InstanceId> = self.live.keys().cloned().collect();
        for id in keys {
            let fp = self.fingerprint_of(&id);
            if let Some(l) = self.live.get_mut(&id) {
                l.fingerprint = fp;
            }
        }
    }

    /// The launch-shape fingerprint an instance was launched with.
    fn fingerprint_of(&mut self, id: &InstanceId) -> Option<ContentHash> {
        let (version, service) = {
            let l = self.live.get(id)?;
            (l.rec.version, l.rec.service.clone())
        };
        let v = self.version(version)?;
        fingerprint(Target::of(&v), &service)
    }

    /// First look at the world after a (re)start: compare what the store
    /// believes with what the providers observe, adopt what matches, finish
    /// what was interrupted and remove what nobody owns.
    async fn adopt(&mut self) {
        let records = match self.store.live_instances() {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("cannot read instances: {e}");
                Vec::new()
            }
        };
        self.refresh_target();
        let observed = self.observe_all().await;
        for rec in records {
            let id = rec.id.clone();
            match observed.get(&id).map(|(_, o)| o) {
                Some(o) if o.state == RunState::Running => {
                    if rec.state == InstanceState::Launching {
                        self.persist(self.store.mark_running(&id, o.addr, &o.handle));
                    }
                    let retiring = rec.state == InstanceState::Retiring;
                    let healthy = rec.health == Health::Healthy;
                    let mut rec = rec;
                    rec.addr = o.addr.or(rec.addr);
                    rec.handle = Some(o.handle.clone());
                    rec.state = if retiring {
                        InstanceState::Retiring
                    } else {
                        InstanceState::Running
                    };
                    self.event(
                        NewEvent::info(
                            EventKind::InstanceAdopted,
                            format!("adopted {id} ({}, {})", o.handle, rec.state),
                        )
                        .instance(&id)
                        .version(rec.version),
                    );
                    self.insert_live(rec, MemberPhase::Starting);
                    if retiring {
                        // Finish the interrupted retirement.
                        if let Some(l) = self.live.get_mut(&id) {
                            l.phase = MemberPhase::Retiring;
                        }
                        self.spawn_retire(&id);
                    } else {
                        self.start_health(&id, healthy);
                    }
                }
                Some(o) => {
                    // Ended while no conductor watched.
                    self.event(
                        NewEvent::warning(
                            EventKind::InstanceExited,
                            format!("{id} {} while the conductor was away", o.state),
                        )
                        .instance(&id)
                        .version(rec.version),
                    );
                    self.persist(self.store.mark_gone(&id, &format!("{}", o.state)));
                    self.spawn_remove(rec.provider, &id);
                }
                None => {
                    let what = match rec.state {
                        InstanceState::Launching => "was never launched (interrupted launch)",
                        InstanceState::Retiring => "is gone (interrupted retirement finished)",
                        _ => "has vanished",
                    };
                    self.event(
                        NewEvent::warning(EventKind::InstanceVanished, format!("{id} {what}"))
                            .instance(&id)
                            .version(rec.version),
                    );
                    self.persist(self.store.mark_gone(&id, what));
                }
            }
        }
        self.remove_orphans(&observed);
    }

    /// Everything every provider observes, by instance id.
    async fn observe_all(&self) -> BTreeMap<InstanceId, (ProviderKind, Observed)> {
        let mut out = BTreeMap::new();
        for (kind, p) in &self.providers {
            match p.observe().await {
                Ok(list) => {
                    for o in list {
                        if o.labels.store == self.store_id {
                            out.insert(o.labels.instance.clone(), (*kind, o));
                        }
                    }
                }
                Err(e) => tracing::warn!("{kind} provider cannot observe: {e}"),
            }
        }
        out
    }

    /// Removes labelled instances that no live record owns.
    fn remove_orphans(&mut self, observed: &BTreeMap<InstanceId, (ProviderKind, Observed)>) {
        for (id, (kind, o)) in observed {
            if self.live.contains_key(id) {
                continue;
            }
            if o.state == RunState::Running {
                self.event(
                    NewEvent::warning(
                        EventKind::OrphanRemoved,
                        format!(
                            "removing {id} ({}): labelled as ours but unknown to the store",
                            o.handle
                        ),
                    )
                    .instance(id),
                );
                let p = self.providers.get(kind).cloned();
                let id = id.clone();
                tokio::spawn(async move {
                    if let Some(p) = p {
                        if let Err(e) = p.terminate(&id, Duration::from_secs(5)).await {
                            tracing::warn!("cannot terminate orphan {id}: {e}");
                        }
                        let _ = p.remove(&id).await;
                    }
                });
            } else {
                self.spawn_remove(*kind, id);
            }
        }
    }

    /// The provider kinds the target's services use.
    fn target_provider_kinds(&self) -> BTreeSet<ProviderKind> {
        self.target
            .as_ref()
            .map(|t| t.env.services.values().map(|s| s.provider).collect())
            .unwrap_or_default()
    }

    /// Connects the providers of `kinds` that are missing, through the
    /// factory; a failure is recorded (and retried later), so that launches
    /// on that provider fail with the reason.
    async fn ensure_providers(&mut self, kinds: BTreeSet<ProviderKind>) {
        let Some(factory) = self.factory.clone() else {
            return;
        };
        let env = self
            .target
            .as_ref()
            .map(|t| t.env.name.clone())
            .or_else(|| Name::new("default").ok());
        let Some(env) = env else { return };
        for kind in kinds {
            if self.providers.contains_key(&kind) {
                continue;
            }
            if let Some((_, retry)) = self.provider_errors.get(&kind)
                && *retry > Instant::now()
            {
                continue;
            }
            match factory.connect(kind, env.clone()).await {
                Ok(p) => {
                    forward_events(p.as_ref(), self.tx.clone());
                    self.providers.insert(kind, p);
                    self.provider_errors.remove(&kind);
                    self.event(NewEvent::info(
                        EventKind::ConductorStarted,
                        format!("connected the {kind} provider"),
                    ));
                }
                Err(e) => {
                    if !self.provider_errors.contains_key(&kind) {
                        self.event(NewEvent::warning(
                            EventKind::InstanceLaunchFailed,
                            format!("the {kind} provider is not available: {e}"),
                        ));
                    }
                    self.provider_errors
                        .insert(kind, (e, Instant::now() + PROVIDER_RETRY));
                }
            }
        }
    }

    /// Periodic and on-demand comparison with what providers observe.
    async fn resync(&mut self) {
        let observed = self.observe_all().await;
        let ids: Vec<InstanceId> = self.live.keys().cloned().collect();
        for id in ids {
            let Some(l) = self.live.get(&id) else {
                continue;
            };
            if l.phase == MemberPhase::Launching || l.phase == MemberPhase::Retiring {
                continue;
            }
            match observed.get(&id) {
                Some((_, o)) if o.state == RunState::Running => {}
                Some((_, o)) => {
                    let state = o.state;
                    self.exited(&id, state).await;
                }
                None => {
                    let rec = &l.rec;
                    self.event(
                        NewEvent::warning(
                            EventKind::InstanceVanished,
                            format!("{id} has vanished from its provider"),
                        )
                        .instance(&id)
                        .version(rec.version),
                    );
                    self.persist(self.store.mark_gone(&id, "vanished"));
                    self.live.remove(&id);
                    self.fail(id.service(), "an instance vanished");
                }
            }
        }
        self.remove_orphans(&observed);
    }

    // -----------------------------------------------------------------------
    // Reacting

    async fn exited(&mut self, id: &InstanceId, state: RunState) {
        let Some(l) = self.live.get(id) else { return };
        if l.phase == MemberPhase::Retiring {
            return; // expected: the retire task is terminating it
        }
        let was_ready = l.phase == MemberPhase::Healthy;
        let version = l.rec.version;
        let provider = l.rec.provider;
        self.event(
            NewEvent::warning(
                EventKind::InstanceExited,
                format!("{id} {state}; replacing it"),
            )
            .instance(id)
            .version(version)
            .details(serde_json::json!({ "state": state })),
        );
        self.persist(self.store.mark_gone(id, &state.to_string()));
        self.live.remove(id);
        self.spawn_remove(provider, id);
        if !was_ready {
            self.fail(
                id.service(),
                &format!("{id} {state} before becoming healthy"),
            );
        }
    }

    /// An instance no longer matches what was launched: an incident, and a
    /// replacement — except for a `docker exec` into a service declared with
    /// `on_exec = report`, which is only recorded.
    fn drifted(&mut self, id: &InstanceId, what: &str, kind: glint_provider::DriftKind) {
        let spec = self.spec_of(id);
        let Some(l) = self.live.get_mut(id) else {
            return;
        };
        if l.phase == MemberPhase::Retiring {
            return;
        }
        let version = l.rec.version;
        let report_only = kind == glint_provider::DriftKind::Exec
            && spec.is_some_and(|s| s.on_exec == glint_model::OnExec::Report);
        let action = if report_only {
            "reported only (on_exec = report)"
        } else {
            l.phase = MemberPhase::Failed;
            l.failure = Some(format!("drifted: {what}"));
            "replacing it"
        };
        self.event(
            NewEvent::incident(EventKind::Drift, format!("{id} drifted: {what}; {action}"))
                .instance(id)
                .version(version)
                .details(serde_json::json!({ "kind": format!("{kind:?}").to_lowercase() })),
        );
    }

    fn health(&mut self, id: &InstanceId, t: Transition) {
        let Some(l) = self.live.get_mut(id) else {
            return;
        };
        if l.phase == MemberPhase::Retiring {
            return;
        }
        let version = l.rec.version;
        let age = now_ms() - l.rec.created_at;
        match t {
            Transition::Healthy => {
                l.phase = MemberPhase::Healthy;
                l.rec.health = Health::Healthy;
                l.rec.healthy_at = Some(now_ms());
                self.persist(self.store.set_health(id, Health::Healthy));
                if let Ok(name) = Name::new(id.service()) {
                    self.backoff.remove(&name);
                }
                self.event(
                    NewEvent::info(
                        EventKind::InstanceHealthy,
                        format!("{id} is healthy ({age} ms after launch)"),
                    )
                    .instance(id)
                    .version(version),
                );
            }
            Transition::Unhealthy { reason } => {
                l.phase = MemberPhase::Failed;
                l.failure = Some(format!("unhealthy: {reason}"));
                self.persist(self.store.set_health(id, Health::Unhealthy));
                self.persist(self.store.mark_failed(id));
                self.event(
                    NewEvent::warning(
                        EventKind::InstanceUnhealthy,
                        format!("{id} is unhealthy ({reason}); replacing it"),
                    )
                    .instance(id)
                    .version(version),
                );
            }
            Transition::NeverHealthy { reason } => {
                l.phase = MemberPhase::Failed;
                l.failure = Some(format!("never became healthy: {reason}"));
                self.persist(self.store.set_health(id, Health::Unhealthy));
                self.persist(self.store.mark_failed(id));
                self.event(
                    NewEvent::warning(
                        EventKind::InstanceUnhealthy,
                        format!("{id} did not become healthy in time ({reason}); replacing it"),
                    )
                    .instance(id)
                    .version(version),
                );
                self.fail(
                    id.service(),
                    &format!("{id} never became healthy: {reason}"),
                );
            }
        }
    }

    /// Counts a failure towards a service's crash-loop backoff.
    fn fail(&mut self, service: &str, reason: &str) {
        let Ok(name) = Name::new(service) else { return };
        let b = self.backoff.entry(name).or_insert(Backoff {
            failures: 0,
            until: None,
            last_reason: String::new(),
        });
        b.failures += 1;
        b.last_reason = reason.to_owned();
        if b.failures >= BACKOFF_AFTER {
            let exp = (b.failures - BACKOFF_AFTER).min(16);
            let delay = (BACKOFF_MIN * 2u32.pow(exp)).min(BACKOFF_MAX);
            b.until = Some(Instant::now() + delay);
        }
    }

    async fn launched(&mut self, id: &InstanceId, r: Result<Observed, LaunchError>) {
        let Some(l) = self.live.get_mut(id) else {
            return;
        };
        match r {
            Ok(o) => {
                if let Err(e) = self.store.mark_running(id, o.addr, &o.handle) {
                    tracing::error!("cannot record launch of {id}: {e}");
                }
                l.rec.state = InstanceState::Running;
                l.rec.addr = o.addr;
                l.rec.handle = Some(o.handle.clone());
                if l.phase == MemberPhase::Launching {
                    l.phase = MemberPhase::Starting;
                }
                let version = l.rec.version;
                self.event(
                    NewEvent::info(
                        EventKind::InstanceLaunched,
                        format!(
                            "{id} is running ({}{})",
                            o.handle,
                            o.addr.map(|a| format!(", {a}")).unwrap_or_default()
                        ),
                    )
                    .instance(id)
                    .version(version),
                );
                if self
                    .live
                    .get(id)
                    .is_some_and(|l| l.phase == MemberPhase::Retiring)
                {
                    // Retired while launching (e.g. shutdown): finish that.
                    self.spawn_retire(id);
                } else {
                    self.start_health(id, false);
                }
            }
            Err(LaunchError { message, tampered }) => {
                let version = l.rec.version;
                let event = if tampered {
                    NewEvent::incident(
                        EventKind::ImageRejected,
                        format!("{id} was not launched: {message}"),
                    )
                } else {
                    NewEvent::warning(
                        EventKind::InstanceLaunchFailed,
                        format!("{id} could not be launched: {message}"),
                    )
                };
                self.event(event.instance(id).version(version));
                self.persist(
                    self.store
                        .mark_gone(id, &format!("launch failed: {message}")),
                );
                self.live.remove(id);
                self.fail(id.service(), &message);
            }
        }
    }

    fn retired(&mut self, id: &InstanceId, r: Result<String, String>) {
        let version = self.live.get(id).map(|l| l.rec.version);
        match r {
            Ok(how) => {
                let mut e = NewEvent::info(
                    EventKind::InstanceTerminated,
                    format!("{id} terminated ({how})"),
                )
                .instance(id);
                if let Some(v) = version {
                    e = e.version(v);
                }
                self.event(e);
                self.persist(self.store.mark_gone(id, "terminated"));
                self.live.remove(id);
            }
            Err(reason) => {
                // Keep it as retiring; the next resync retries.
                self.event(
                    NewEvent::warning(
                        EventKind::InstanceRetiring,
                        format!("{id} could not be terminated yet: {reason}"),
                    )
                    .instance(id),
                );
                if let Some(l) = self.live.get(id) {
                    let id = id.clone();
                    let tx = self.tx.clone();
                    let provider = self.providers.get(&l.rec.provider).cloned();
                    let grace = self.stop_grace(&l.rec.service);
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        let r = match provider {
                            Some(p) => terminate(&p, &id, grace).await,
                            None => Err("its provider is not available".into()),
                        };
                        let _ = tx.send(Msg::Retired(id, r.map(|()| "after a retry".into())));
                    });
                }
            }
        }
    }

    /// Records what the endpoints reconciler reports.
    fn endpoint_event(&mut self, e: EndpointEvent) {
        let event = match e {
            EndpointEvent::Listening {
                endpoint,
                addr,
                kept,
            } => NewEvent::info(
                EventKind::EndpointListening,
                if kept {
                    format!("endpoint {endpoint} is listening on {addr} (kept by the data plane)")
                } else {
                    format!("endpoint {endpoint} is listening on {addr}")
                },
            ),
            EndpointEvent::CannotListen { endpoint, error } => NewEvent::warning(
                EventKind::EndpointFailed,
                format!("endpoint {endpoint} cannot listen: {error}; retrying"),
            ),
            EndpointEvent::Stopped { endpoint, listen } => NewEvent::info(
                EventKind::EndpointStopped,
                format!("endpoint {endpoint} on {listen} stopped"),
            ),
            // First contact is recorded by whoever started or adopted it.
            EndpointEvent::DataPlane { first: true, .. } | EndpointEvent::Changed => return,
            EndpointEvent::DataPlane {
                identity,
                first: false,
            } => NewEvent::warning(
                EventKind::DataPlane,
                format!(
                    "the data plane is now pid {} (build {}); endpoints are programmed again",
                    identity.pid,
                    identity.short_build()
                ),
            ),
            EndpointEvent::Unreachable { error } => NewEvent::warning(
                EventKind::DataPlane,
                format!("the data plane does not answer ({error}); retrying"),
            ),
        };
        self.event(event);
    }

    // -----------------------------------------------------------------------
    // Acting

    fn insert_live(&mut self, rec: InstanceRecord, phase: MemberPhase) {
        let id = rec.id.clone();
        self.live.insert(
            id.clone(),
            Live {
                rec,
                phase,
                failure: None,
                fingerprint: None,
                probe: None,
            },
        );
        let fp = self.fingerprint_of(&id);
        if let Some(l) = self.live.get_mut(&id) {
            l.fingerprint = fp;
        }
    }

    /// The service spec an instance was launched with.
    fn spec_of(&mut self, id: &InstanceId) -> Option<Service> {
        let (version, service) = {
            let l = self.live.get(id)?;
            (l.rec.version, l.rec.service.clone())
        };
        let v = self.version(version)?;
        v.env.services.get(&service).cloned()
    }

    fn stop_grace(&self, service: &Name) -> Duration {
        self.target
            .as_ref()
            .and_then(|t| t.env.services.get(service))
            .map(|s| s.stop_grace.as_std())
            .unwrap_or(Duration::from_secs(10))
    }

    fn start_health(&mut self, id: &InstanceId, already_healthy: bool) {
        let spec = self.spec_of(id);
        let Some(l) = self.live.get_mut(id) else {
            return;
        };
        // The newest version's check applies, if the service is still declared.
        let check = self
            .target
            .as_ref()
            .and_then(|t| t.env.services.get(&l.rec.service))
            .map(|s| s.health.clone())
            .or(spec.map(|s| s.health));
        let (Some(Some(check)), Some(addr)) = (check, l.rec.addr) else {
            // No health check: running is healthy.
            if l.phase == MemberPhase::Starting {
                let _ = self.tx.send(Msg::Health(id.clone(), Transition::Healthy));
            }
            return;
        };
        if already_healthy {
            l.phase = MemberPhase::Healthy;
        }
        let tx = self.tx.clone();
        let id2 = id.clone();
        let launched = Instant::now();
        l.probe = Some(tokio::spawn(async move {
            let mut tracker = Tracker::new(check.clone(), already_healthy);
            loop {
                tokio::time::sleep(tracker.delay()).await;
                let r = health::probe(&check.probe, addr, tracker.timeout()).await;
                if let Some(t) = tracker.record(r, launched.elapsed())
                    && tx.send(Msg::Health(id2.clone(), t)).is_err()
                {
                    return;
                }
                if tracker.phase() == Phase::Failed {
                    return;
                }
            }
        }));
    }

    fn spawn_remove(&self, kind: ProviderKind, id: &InstanceId) {
        if let Some(p) = self.providers.get(&kind).cloned() {
            let id = id.clone();
            tokio::spawn(async move {
                if let Err(e) = p.remove(&id).await {
                    tracing::warn!("cannot clean up {id}: {e}");
                }
            });
        }
    }

    /// Decides and starts a launch of `service` for the target version.
    fn launch(&mut self, service: &Name, reason: &str) {
        let Some(target) = self.target.clone() else {
            return;
        };
        let Some(svc) = target.env.services.get(service) else {
            return;
        };
        let Some(image) = target.env.images.get(&svc.image) else {
            return;
        };
        let Some(digest) = target.images.get(&svc.image) else {
            self.event(
                NewEvent::warning(
                    EventKind::InstanceLaunchFailed,
                    format!(
                        "{service}: version {} has no digest for image {}",
                        target.number, svc.image
                    ),
                )
                .service(service),
            );
            return;
        };
        let id = new_instance_id(service);
        let rec = InstanceRecord::launching(
            id.clone(),
            service.clone(),
            target.number,
            digest.clone(),
            svc.provider,
        );
        // Intent first: a crash from here on leaves a row to reconcile.
        if let Err(e) = self.store.insert_instance(&rec) {
            tracing::error!("cannot record launch intent: {e}");
            return;
        }
        self.event(
            NewEvent::info(
                EventKind::InstanceLaunching,
                format!("launching {id}: {reason}"),
            )
            .instance(&id)
            .version(target.number),
        );
        self.insert_live(rec, MemberPhase::Launching);

        let labels = Labels {
            store: self.store_id.clone(),
            environment: target.env.name.clone(),
            service: service.clone(),
            version: target.number,
            instance: id.clone(),
            image: digest.clone(),
        };
        let mut env = image.env.clone();
        env.extend(svc.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        env.insert("GLINT_INSTANCE_ID".into(), id.to_string());
        env.insert("GLINT_SERVICE".into(), service.to_string());
        env.insert("GLINT_VERSION".into(), target.number.to_string());
        env.insert("GLINT_ENVIRONMENT".into(), target.env.name.to_string());
        let mut argv = image.entrypoint.clone();
        argv.extend(svc.args.iter().cloned());
        let provider = self.providers.get(&svc.provider).cloned();
        let unavailable = self
            .provider_errors
            .get(&svc.provider)
            .map(|(e, _)| format!("the {} provider is not available: {e}", svc.provider))
            .unwrap_or_else(|| format!("the {} provider is not available here", svc.provider));
        let images = self.images.clone();
        let digest = digest.clone();
        let workdir = image.workdir.clone();
        let port = svc.port;
        let resources = svc.resources.clone();
        let kind = svc.provider;
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let r = async {
                let provider = provider.ok_or_else(|| LaunchError::plain(unavailable))?;
                let image = tokio::task::spawn_blocking(move || images.prepare(&digest, kind))
                    .await
                    .map_err(|e| LaunchError::plain(format!("image preparation failed: {e}")))?
                    .map_err(|e| LaunchError {
                        message: e.message,
                        tampered: e.tampered,
                    })?;
                let spec = LaunchSpec {
                    labels,
                    image,
                    argv,
                    env,
                    workdir,
                    port,
                    resources,
                };
                provider
                    .launch(spec)
                    .await
                    .map_err(|e| LaunchError::plain(error_chain(&e)))
            }
            .await;
            let _ = tx.send(Msg::Launched(id, r));
        });
    }

    /// Starts retiring an instance: intent, out of rotation, then drain and
    /// terminate in a task.
    fn retire(&mut self, id: &InstanceId, reason: String) {
        let Some(l) = self.live.get_mut(id) else {
            return;
        };
        if l.phase == MemberPhase::Retiring {
            return;
        }
        let reason = match (&l.failure, l.phase) {
            (Some(f), MemberPhase::Failed) => f.clone(),
            _ => reason,
        };
        let was_launching = l.phase == MemberPhase::Launching;
        l.phase = MemberPhase::Retiring;
        l.rec.state = InstanceState::Retiring;
        if let Some(p) = l.probe.take() {
            p.abort();
        }
        let version = l.rec.version;
        if let Err(e) = self.store.mark_retiring(id, &reason) {
            tracing::error!("cannot record retirement of {id}: {e}");
        }
        self.event(
            NewEvent::info(
                EventKind::InstanceRetiring,
                format!("retiring {id}: {reason}"),
            )
            .instance(id)
            .version(version),
        );
        if was_launching {
            // The launch task will report; `launched` finishes the retirement.
            return;
        }
        self.update_endpoints();
        self.spawn_retire(id);
    }

    fn spawn_retire(&mut self, id: &InstanceId) {
        let Some(l) = self.live.get(id) else { return };
        let service = l.rec.service.clone();
        let provider = self.providers.get(&l.rec.provider).cloned();
        let spec = self.spec_of(id);
        let drain = spec
            .as_ref()
            .map(|s| s.drain.as_std())
            .unwrap_or(Duration::from_secs(30));
        let grace = self.stop_grace(&service);
        let plane = self.endpoints.plane();
        let id = id.clone();
        let tx = self.tx.clone();
        tokio::spawn(async move {
            // Out of every endpoint's rotation, and nothing in flight, before
            // the SIGTERM. A data plane that does not answer routes nothing
            // to it either way.
            let drained = plane.drain(&id, drain).await;
            let r = match provider {
                Some(p) => terminate(&p, &id, grace).await,
                None => Err("its provider is not available".into()),
            };
            let r = r.map(|()| match drained {
                Ok(d) if d.remaining > 0 => {
                    format!("drain timed out with {} requests in flight", d.remaining)
                }
                Ok(_) => "drained".to_owned(),
                Err(e) => format!("not drained: {}", error_chain(&e)),
            });
            let _ = tx.send(Msg::Retired(id, r));
        });
    }

    /// One pass: decide and act, follow the rollout, then route.
    async fn pass(&mut self) {
        self.refresh_target();
        if !self.stopping {
            let kinds = self.target_provider_kinds();
            self.ensure_providers(kinds).await;
        }
        let now = now_ms();
        let members: Vec<Member> = self
            .live
            .values()
            .map(|l| Member {
                id: l.rec.id.clone(),
                service: l.rec.service.clone(),
                fingerprint: l.fingerprint.clone(),
                phase: l.phase,
                created_at: l.rec.created_at,
                healthy_at: l.rec.healthy_at,
            })
            .collect();
        let outcome = match &self.target {
            Some(t) => decide(Target::of(t), &members, now),
            // Nothing applied yet: nothing should run.
            None => Outcome {
                decisions: members
                    .iter()
                    .filter(|m| m.phase != MemberPhase::Retiring)
                    .map(|m| Decision::Retire {
                        id: m.id.clone(),
                        reason: "no version has been applied".into(),
                    })
                    .collect(),
                ..Outcome::default()
            },
        };
        self.wake_at = outcome
            .wake_at
            .map(|at| Instant::now() + Duration::from_millis(u64::try_from(at - now).unwrap_or(0)));
        let decisions = outcome.decisions.clone();
        self.outcome = outcome;
        if !self.stopping {
            // Announce (or fail) the rollout before acting on it.
            self.follow_rollout(now);
            let instant = Instant::now();
            for d in &decisions {
                match d {
                    Decision::Launch { service, reason } => {
                        if let Some(b) = self.backoff.get(service)
                            && b.until.is_some_and(|u| u > instant)
                        {
                            continue;
                        }
                        self.launch(service, reason);
                    }
                    Decision::Retire { id, reason } => self.retire(id, reason.clone()),
                }
            }
        }
        self.update_endpoints();
        self.publish();
    }

    /// Follows the target version's rollout: announces it, reports progress,
    /// records convergence, and fails it — rolling back automatically to the
    /// last version that converged — when its new instances keep failing or
    /// it makes no progress before its deadline. Everything it decides from
    /// is in the store (version outcomes, failed instances, health times), so
    /// a restarted conductor continues exactly where this one stopped.
    fn follow_rollout(&mut self, now: i64) {
        let Some(target) = self.target.clone() else {
            return;
        };
        let number = target.number;
        match self.store.version_outcome(number) {
            Ok(None) => {}
            Ok(Some(_)) => return,
            Err(e) => {
                tracing::warn!("cannot read version {number}: {e}");
                return;
            }
        }
        let progress = self.outcome.progress.clone();
        let replacing: Vec<(&Name, &crate::decide::Progress)> = progress
            .iter()
            .filter(|(_, p)| p.stale > p.aged || !p.converged)
            .collect();
        if self.announced != Some(number) {
            self.announced = Some(number);
            self.seen_available.clear();
            let what: Vec<String> = replacing
                .iter()
                .filter_map(|(name, p)| {
                    let svc = target.env.services.get(*name)?;
                    Some(format!(
                        "{name} ({}, {} to replace, {} to create)",
                        strategy_name(&svc.rollout.strategy),
                        p.stale - p.aged,
                        p.desired.saturating_sub(p.current + p.stale - p.aged)
                    ))
                })
                .collect();
            if !what.is_empty() {
                self.event(
                    NewEvent::info(
                        EventKind::RolloutStarted,
                        format!("rolling out version {number}: {}", what.join(", ")),
                    )
                    .version(number),
                );
            }
        }
        for (name, p) in &progress {
            let last = *self
                .seen_available
                .entry(name.clone())
                .or_insert(p.available);
            if p.available > last && p.available <= p.desired {
                let mut msg = format!(
                    "{name}: {} of {} instances available on version {number}",
                    p.available, p.desired
                );
                if let Some(w) = &p.waiting {
                    msg.push_str(&format!(" ({w})"));
                }
                self.event(
                    NewEvent::info(EventKind::RolloutProgress, msg)
                        .service(name)
                        .version(number),
                );
            }
            self.seen_available.insert(name.clone(), p.available);
        }
        let created = glint_store::to_ms(target.created_at);
        if progress.values().all(|p| p.converged) && self.endpoints.settled() {
            let took = format!("{:.1}s", (now - created).max(0) as f64 / 1000.0);
            if self
                .store
                .set_outcome(number, glint_store::Outcome::Converged, &took)
                .unwrap_or(false)
            {
                self.event(
                    NewEvent::info(
                        EventKind::RolloutCompleted,
                        format!("version {number} is live (converged in {took})"),
                    )
                    .version(number),
                );
            }
            return;
        }
        // Failure: too many failed new instances, or no progress in time.
        let failed = self.store.failed_count(number).unwrap_or(0);
        let mut reason = None;
        if failed >= ROLLOUT_FAILURES {
            reason = Some(format!(
                "{failed} new instances failed (launch, crash or health check)"
            ));
        } else {
            for (name, p) in &progress {
                if p.converged {
                    continue;
                }
                let Some(svc) = target.env.services.get(name) else {
                    continue;
                };
                let last_progress = self
                    .live
                    .values()
                    .filter(|l| &l.rec.service == name)
                    .filter_map(|l| l.rec.healthy_at)
                    .fold(created, i64::max);
                if now - last_progress > svc.rollout.deadline.0 as i64 {
                    reason = Some(format!(
                        "{name} made no progress for {} (its deadline)",
                        svc.rollout.deadline
                    ));
                    break;
                }
            }
            if reason.is_none() {
                // Wake up in time to notice a missed deadline.
                let next = progress
                    .iter()
                    .filter(|(_, p)| !p.converged)
                    .filter_map(|(n, _)| target.env.services.get(n))
                    .map(|svc| now + svc.rollout.deadline.0 as i64)
                    .min();
                if let Some(at) = next {
                    let at = Instant::now()
                        + Duration::from_millis(u64::try_from(at - now).unwrap_or(0));
                    self.wake_at = Some(self.wake_at.map_or(at, |w| w.min(at)));
                }
            }
        }
        let Some(reason) = reason else { return };
        if !self
            .store
            .set_outcome(number, glint_store::Outcome::Failed, &reason)
            .unwrap_or(false)
        {
            return;
        }
        self.event(
            NewEvent::warning(
                EventKind::RolloutFailed,
                format!("rollout of version {number} failed: {reason}"),
            )
            .version(number),
        );
        let auto = replacing
            .iter()
            .filter_map(|(n, _)| target.env.services.get(*n))
            .all(|s| s.rollout.auto_rollback);
        if !auto {
            self.event(
                NewEvent::warning(
                    EventKind::RolloutFailed,
                    format!("version {number} stays the target: auto_rollback is off"),
                )
                .version(number),
            );
            return;
        }
        self.roll_back(&target, &reason);
    }

    /// Records a new version with the content of the last version that
    /// converged before `failed`.
    fn roll_back(&mut self, failed: &VersionRecord, reason: &str) {
        let good = match self.store.last_good_version(failed.number) {
            Ok(Some(g)) => g,
            Ok(None) => {
                self.event(
                    NewEvent::warning(
                        EventKind::RolloutFailed,
                        format!(
                            "version {} cannot be rolled back: no earlier version converged",
                            failed.number
                        ),
                    )
                    .version(failed.number),
                );
                return;
            }
            Err(e) => {
                tracing::error!("cannot find the last good version: {e}");
                return;
            }
        };
        let Ok(old) = self.store.version(good) else {
            return;
        };
        let new = NewVersion {
            env: old.env,
            images: old.images,
            root: old.root,
            sources: old.sources,
            kind: VersionKind::AutoRollback(good),
        };
        match self.store.create_version(new) {
            Ok(Created::New(v)) => {
                let detail = format!("rolled back to version {good} as version {}", v.number);
                self.persist(
                    self.store
                        .mark_rolled_back(failed.number, &format!("{reason}; {detail}")),
                );
                self.event(
                    NewEvent::warning(
                        EventKind::VersionRolledBack,
                        format!("version {} failed ({reason}); {detail}", failed.number),
                    )
                    .version(v.number),
                );
            }
            Ok(Created::Unchanged(_)) => {}
            Err(e) => tracing::error!("cannot record the rollback version: {e}"),
        }
    }

    /// Hands the endpoints reconciler what the target declares, each with
    /// the ready instances `decide` routes to. While stopping, the endpoints
    /// stay as they are (only their backends change). Without a target (not
    /// yet read), nothing is handed over: the data plane keeps serving what
    /// it was given.
    fn update_endpoints(&mut self) {
        let specs: BTreeMap<Name, EndpointSpec> = if self.stopping {
            match self.endpoints.desired() {
                Some(d) => d.endpoints.into_iter().map(|(n, e)| (n, e.spec)).collect(),
                None => return,
            }
        } else {
            let Some(target) = &self.target else { return };
            target
                .env
                .endpoints
                .iter()
                .map(|(name, e)| {
                    let mut config = EndpointConfig::from_endpoint(name.clone(), e);
                    config.wait_for_backend = self.config.endpoint_wait;
                    let spec = EndpointSpec {
                        config,
                        service: e.service.clone(),
                    };
                    (name.clone(), spec)
                })
                .collect()
        };
        let mut desired = Desired::default();
        for (name, spec) in specs {
            let routed = self.outcome.routes.get(&spec.service);
            let mut backends: Vec<Backend> = self
                .live
                .values()
                .filter(|l| {
                    l.rec.service == spec.service
                        && l.phase == MemberPhase::Healthy
                        && l.rec.state == InstanceState::Running
                        && routed.is_some_and(|r| r.contains(&l.rec.id))
                })
                .filter_map(|l| {
                    l.rec.addr.map(|addr| Backend {
                        instance: l.rec.id.clone(),
                        addr,
                    })
                })
                .collect();
            backends.sort();
            desired
                .endpoints
                .insert(name, DesiredEndpoint { spec, backends });
        }
        self.endpoints.set(desired);
    }

    fn publish(&self) {
        let target = self.target.as_deref();
        let mut services = Vec::new();
        let mut converged = target.is_some();
        let names: Vec<Name> = {
            let mut n: Vec<Name> = target
                .map(|t| t.env.services.keys().cloned().collect())
                .unwrap_or_default();
            n.extend(self.live.values().map(|l| l.rec.service.clone()));
            n.sort();
            n.dedup();
            n
        };
        let want_fp = |s: &Name| target.and_then(|t| fingerprint(Target::of(t), s));
        for name in names {
            let desired = target
                .and_then(|t| t.env.services.get(&name))
                .map(|s| s.instances)
                .unwrap_or(0);
            let fp = want_fp(&name);
            let mut instances = Vec::new();
            let (mut ready, mut ready_current) = (0, 0);
            let mut others = 0;
            for l in self.live.values().filter(|l| l.rec.service == name) {
                let current = fp.is_some() && l.fingerprint == fp;
                if l.phase == MemberPhase::Healthy {
                    ready += 1;
                    if current {
                        ready_current += 1;
                    }
                }
                if l.phase != MemberPhase::Healthy || !current {
                    others += 1;
                }
                instances.push(InstanceStatus {
                    id: l.rec.id.clone(),
                    version: l.rec.version,
                    phase: phase_name(l.phase).into(),
                    current,
                    addr: l.rec.addr,
                    created_at: l.rec.created_at,
                });
            }
            let settled = self
                .outcome
                .progress
                .get(&name)
                .map_or(desired == 0 && others == 0, |p| p.converged);
            if !settled || ready_current < desired {
                converged = false;
            }
            let backoff = self.backoff.get(&name).and_then(|b| {
                b.until
                    .filter(|u| *u > Instant::now())
                    .map(|_| format!("{} failures in a row: {}", b.failures, b.last_reason))
            });
            let rollout = self.outcome.progress.get(&name).and_then(|p| {
                (p.stale > 0 || p.waiting.is_some()).then(|| RolloutStatus {
                    stale: p.stale,
                    aged: p.aged,
                    available: p.available,
                    step: p.step,
                    waiting: p.waiting.clone(),
                })
            });
            services.push(ServiceStatus {
                name,
                desired,
                ready,
                ready_current,
                instances,
                backoff,
                rollout,
            });
        }
        let endpoints = self
            .endpoints
            .status()
            .endpoints
            .into_iter()
            .map(|v| EndpointStatus {
                name: v.name,
                listen: v.listen,
                listening: v.listening,
                service: v.service,
                backends: v.backends,
                error: v.error,
                requests: v.requests,
                failures: v.failures,
            })
            .collect::<Vec<_>>();
        if endpoints.iter().any(|e| !e.listening) {
            converged = false;
        }
        let status = Status {
            version: target.map(|t| t.number),
            converged,
            services,
            endpoints,
            uptime_s: self.started.elapsed().as_secs(),
        };
        self.status.send_if_modified(|old| {
            if **old == status {
                false
            } else {
                *old = Arc::new(status);
                true
            }
        });
    }

    /// Shuts down; with `stop_instances`, drains and terminates every
    /// instance first, still serving messages from the operations it waits for.
    async fn finish(&mut self, stop_instances: bool, rx: &mut mpsc::UnboundedReceiver<Msg>) {
        self.stopping = true;
        if stop_instances {
            let ids: Vec<InstanceId> = self.live.keys().cloned().collect();
            for id in &ids {
                self.retire(id, "the conductor is stopping".into());
            }
            self.update_endpoints();
            self.publish();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
            while !self.live.is_empty() {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(Msg::Shutdown { done, .. })) => {
                        let _ = done.send(());
                    }
                    Ok(Some(msg)) => {
                        let _ = self.handle(msg).await;
                        self.update_endpoints();
                        self.publish();
                    }
                    Ok(None) | Err(_) => break,
                }
            }
        }
        // The endpoints live in the data plane, which outlives a conductor
        // that only stops; stopping everything (`glint up`) stops it too.
        self.endpoints.stop();
        if stop_instances
            && let Err(e) = self
                .endpoints
                .plane()
                .shutdown(Duration::from_secs(5))
                .await
        {
            tracing::warn!(
                "the data plane did not shut down cleanly: {}",
                error_chain(&e)
            );
        } else if stop_instances {
            self.event(NewEvent::info(
                EventKind::DataPlane,
                "data plane stopped; its endpoints are closed".to_owned(),
            ));
        }
        if stop_instances && self.live.is_empty() {
            for (kind, p) in &self.providers {
                if let Err(e) = p.release().await {
                    tracing::warn!("the {kind} provider could not release its resources: {e}");
                }
            }
        }
        self.info.stopped = true;
        self.info.heartbeat_at = now_ms();
        self.persist(self.store.write_conductor(&self.info));
        self.event(NewEvent::info(
            EventKind::ConductorStopped,
            if stop_instances {
                "conductor stopped; its instances were stopped".to_owned()
            } else {
                "conductor stopped; instances keep running and will be adopted".to_owned()
            },
        ));
        self.publish();
        // Dropping live entries aborts their probes; instances keep running
        // unless they were stopped above.
        self.live.clear();
    }
}

fn phase_name(p: MemberPhase) -> &'static str {
    match p {
        MemberPhase::Launching => "launching",
        MemberPhase::Starting => "starting",
        MemberPhase::Healthy => "healthy",
        MemberPhase::Failed => "failed",
        MemberPhase::Retiring => "retiring",
    }
}

async fn terminate(p: &Arc<dyn Provider>, id: &InstanceId, grace: Duration) -> Result<(), String> {
    p.terminate(id, grace).await.map_err(|e| error_chain(&e))?;
    p.remove(id).await.map_err(|e| error_chain(&e))
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

fn strategy_name(s: &glint_model::Strategy) -> String {
    match s {
        glint_model::Strategy::Rolling { surge, unavailable } => {
            format!("rolling, surge {surge}, unavailable {unavailable}")
        }
        glint_model::Strategy::BlueGreen { keep } => format!("blue/green, keep {keep}"),
        glint_model::Strategy::Canary { steps, pause } => {
            format!("canary, steps {:?}, pause {pause}", steps)
        }
    }
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

/// A fresh instance id for `service`.
fn new_instance_id(service: &Name) -> InstanceId {
    // RandomState is seeded from the OS once per thread and advanced per
    // instance, so every call yields a fresh unpredictable value.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    InstanceId::from_entropy(service, h.finish())
}
