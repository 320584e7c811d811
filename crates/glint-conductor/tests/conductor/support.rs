//! The conductor test harness: the real conductor (driver, every reconciler,
//! the SQLite store, leadership, the in-process data plane) on a temporary
//! data directory, with the simulated provider, an in-memory image source,
//! probes answered by the simulated provider, and a clock that follows
//! tokio's paused time — so tests that span minutes run in milliseconds.
//!
//! Faults on command: launches that fail or take long, instances that die
//! or exit on their own, health that turns bad or slow, terminations that
//! fail, a store that refuses writes, a provider that cannot be connected
//! or becomes unreachable, an image that fails verification.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use async_trait::async_trait;
use glint_conductor::health::Prober;
use glint_conductor::images::{ImageSource, PrepareError};
use glint_conductor::leadership::{Leadership, LocalLeadership};
use glint_conductor::{ConductorHandle, Connecting, ProviderFactory, Setup, Status};
use glint_model::*;
use glint_provider::{LaunchImage, Provider, SimProvider};
use glint_store::prelude::*;
use glint_store::{
    BackoffRecord, ChangeFeed, Claimed, Clock, ConductorInfo, Created, Epoch, Event, EventFilter,
    InstanceRecord, NewClaim, NewEvent, NewVersion, Outcome, RemovalRefused, ScaleRecord,
    SourceFile, SqliteStore, StoreError, VersionKind, VersionRecord, VersionSummary, VolumeClaim,
    VolumeRecord,
};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Wall-clock time that advances with tokio's (paused) clock.
#[derive(Debug)]
pub struct TestClock {
    base: i64,
    start: tokio::time::Instant,
}

impl TestClock {
    fn new() -> TestClock {
        TestClock {
            base: 1_800_000_000_000,
            start: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TestClock {
    fn now_ms(&self) -> i64 {
        self.base + i64::try_from(self.start.elapsed().as_millis()).unwrap_or(i64::MAX)
    }
}

/// Probes answered by the simulated provider, optionally slow.
pub struct SimProber {
    sims: Vec<SimProvider>,
    delay_ms: AtomicU64,
    pub probes: AtomicU64,
}

#[async_trait]
impl Prober for SimProber {
    async fn probe(
        &self,
        instance: &InstanceId,
        _probe: &Probe,
        _addr: SocketAddr,
        timeout: Duration,
    ) -> Result<(), String> {
        self.probes.fetch_add(1, Ordering::Relaxed);
        let delay = Duration::from_millis(self.delay_ms.load(Ordering::Relaxed));
        if delay >= timeout {
            tokio::time::sleep(timeout).await;
            return Err(format!("no answer within {}ms", timeout.as_millis()));
        }
        tokio::time::sleep(delay).await;
        match self.sims.iter().find_map(|s| s.is_healthy(instance)) {
            Some(true) => Ok(()),
            Some(false) => Err("GET /healthz answered 503".into()),
            None => Err("connection refused".into()),
        }
    }
}

/// Images that are always there, unless told to fail verification.
#[derive(Default)]
pub struct MemImages {
    pub tampered: AtomicBool,
}

impl ImageSource for MemImages {
    fn prepare(&self, digest: &Digest, _kind: ProviderKind) -> Result<LaunchImage, PrepareError> {
        if self.tampered.load(Ordering::Relaxed) {
            return Err(PrepareError {
                message: format!("image {digest}: blob does not match its digest"),
                tampered: true,
            });
        }
        Ok(LaunchImage {
            digest: digest.clone(),
            rootfs: "/nonexistent".into(),
            archive: None,
        })
    }

    fn verify(&self, digest: &Digest) -> Result<(), PrepareError> {
        self.prepare(digest, ProviderKind::Simulated).map(|_| ())
    }
}

/// Connects "docker" to a second simulated provider, or fails to.
pub struct Factory {
    pub sim: SimProvider,
    pub fail: AtomicBool,
    pub connects: AtomicU32,
}

impl ProviderFactory for Factory {
    fn connect(&self, _kind: ProviderKind, _environment: Name) -> Connecting {
        self.connects.fetch_add(1, Ordering::Relaxed);
        let r: Result<Arc<dyn Provider>, String> = if self.fail.load(Ordering::Relaxed) {
            Err("cannot reach the engine: connection refused".into())
        } else {
            Ok(Arc::new(self.sim.clone()))
        };
        Box::pin(async move { r })
    }
}

/// Store faults, shared by every handle of a [`FaultyStore`].
#[derive(Debug, Default)]
pub struct Faults {
    pub fail_writes: AtomicBool,
    pub refused: AtomicU64,
}

/// A store that refuses writes on command (as a full disk does).
#[derive(Debug, Clone)]
pub struct FaultyStore {
    inner: Arc<dyn Store>,
    pub faults: Arc<Faults>,
}

impl FaultyStore {
    fn write(&self) -> Result<(), StoreError> {
        if self.faults.fail_writes.load(Ordering::Relaxed) {
            self.faults.refused.fetch_add(1, Ordering::Relaxed);
            Err(StoreError::Unavailable(
                "database or disk is full (injected)".into(),
            ))
        } else {
            Ok(())
        }
    }
}

impl Versions for FaultyStore {
    fn create_version(&self, new: NewVersion) -> Result<Created, StoreError> {
        self.write()?;
        self.inner.create_version(new)
    }
    fn create_rollback_version(
        &self,
        new: NewVersion,
        failed: VersionNumber,
        detail: &str,
    ) -> Result<Created, StoreError> {
        self.write()?;
        self.inner.create_rollback_version(new, failed, detail)
    }
    fn latest_version(&self) -> Result<Option<VersionRecord>, StoreError> {
        self.inner.latest_version()
    }
    fn latest_version_number(&self) -> Result<Option<VersionNumber>, StoreError> {
        self.inner.latest_version_number()
    }
    fn version(&self, n: VersionNumber) -> Result<VersionRecord, StoreError> {
        self.inner.version(n)
    }
    fn list_versions(&self) -> Result<Vec<VersionSummary>, StoreError> {
        self.inner.list_versions()
    }
    fn version_outcome(
        &self,
        n: VersionNumber,
    ) -> Result<Option<(Outcome, Option<String>)>, StoreError> {
        self.inner.version_outcome(n)
    }
    fn set_outcome(&self, n: VersionNumber, o: Outcome, d: &str) -> Result<bool, StoreError> {
        self.write()?;
        self.inner.set_outcome(n, o, d)
    }
    fn mark_rolled_back(&self, n: VersionNumber, d: &str) -> Result<(), StoreError> {
        self.write()?;
        self.inner.mark_rolled_back(n, d)
    }
    fn last_good_version(&self, b: VersionNumber) -> Result<Option<VersionNumber>, StoreError> {
        self.inner.last_good_version(b)
    }
}

impl Instances for FaultyStore {
    fn insert_instance(&self, r: &InstanceRecord) -> Result<(), StoreError> {
        self.write()?;
        self.inner.insert_instance(r)
    }
    fn mark_running(
        &self,
        id: &InstanceId,
        addr: Option<SocketAddr>,
        handle: &str,
    ) -> Result<(), StoreError> {
        self.write()?;
        self.inner.mark_running(id, addr, handle)
    }
    fn set_health(&self, id: &InstanceId, h: glint_store::Health) -> Result<(), StoreError> {
        self.write()?;
        self.inner.set_health(id, h)
    }
    fn mark_failed(&self, id: &InstanceId) -> Result<(), StoreError> {
        self.write()?;
        self.inner.mark_failed(id)
    }
    fn failed_count(&self, v: VersionNumber) -> Result<u32, StoreError> {
        self.inner.failed_count(v)
    }
    fn mark_retiring(&self, id: &InstanceId, r: &str) -> Result<(), StoreError> {
        self.write()?;
        self.inner.mark_retiring(id, r)
    }
    fn mark_gone(&self, id: &InstanceId, r: &str) -> Result<(), StoreError> {
        self.write()?;
        self.inner.mark_gone(id, r)
    }
    fn live_instances(&self) -> Result<Vec<InstanceRecord>, StoreError> {
        self.inner.live_instances()
    }
    fn instance(&self, id: &InstanceId) -> Result<Option<InstanceRecord>, StoreError> {
        self.inner.instance(id)
    }
    fn instances_of(&self, s: &str, l: usize) -> Result<Vec<InstanceRecord>, StoreError> {
        self.inner.instances_of(s, l)
    }
}

impl Backoffs for FaultyStore {
    fn backoffs(&self) -> Result<Vec<BackoffRecord>, StoreError> {
        self.inner.backoffs()
    }
    fn put_backoff(&self, r: &BackoffRecord) -> Result<(), StoreError> {
        self.write()?;
        self.inner.put_backoff(r)
    }
    fn clear_backoff(&self, k: &str) -> Result<(), StoreError> {
        self.write()?;
        self.inner.clear_backoff(k)
    }
}

impl Volumes for FaultyStore {
    fn volumes(&self) -> Result<Vec<VolumeRecord>, StoreError> {
        self.inner.volumes()
    }
    fn volume_claims(&self) -> Result<Vec<VolumeClaim>, StoreError> {
        self.inner.volume_claims()
    }
    fn claim_volumes(
        &self,
        i: &InstanceId,
        s: &Name,
        slot: Option<u32>,
        c: &[NewClaim],
    ) -> Result<Claimed, StoreError> {
        self.write()?;
        self.inner.claim_volumes(i, s, slot, c)
    }
    fn release_stale_claims(&self) -> Result<usize, StoreError> {
        self.write()?;
        self.inner.release_stale_claims()
    }
    fn set_volume_location(&self, n: &str, l: &str, h: Option<&str>) -> Result<(), StoreError> {
        self.write()?;
        self.inner.set_volume_location(n, l, h)
    }
    fn begin_volume_removal(
        &self,
        n: &str,
    ) -> Result<Result<VolumeRecord, RemovalRefused>, StoreError> {
        self.write()?;
        self.inner.begin_volume_removal(n)
    }
    fn finish_volume_removal(&self, n: &str) -> Result<(), StoreError> {
        self.write()?;
        self.inner.finish_volume_removal(n)
    }
    fn abort_volume_removal(&self, n: &str) -> Result<(), StoreError> {
        self.write()?;
        self.inner.abort_volume_removal(n)
    }
}

impl Scaling for FaultyStore {
    fn scale_records(&self) -> Result<Vec<ScaleRecord>, StoreError> {
        self.inner.scale_records()
    }
    fn put_scale(&self, r: &ScaleRecord) -> Result<(), StoreError> {
        self.write()?;
        self.inner.put_scale(r)
    }
    fn clear_scale(&self, s: &Name) -> Result<(), StoreError> {
        self.write()?;
        self.inner.clear_scale(s)
    }
}

impl EventLog for FaultyStore {
    fn append_event(&self, e: NewEvent) -> Result<i64, StoreError> {
        self.write()?;
        self.inner.append_event(e)
    }
    fn events(&self, f: &EventFilter) -> Result<Vec<Event>, StoreError> {
        self.inner.events(f)
    }
}

impl Meta for FaultyStore {
    fn store_id(&self) -> Result<String, StoreError> {
        self.inner.store_id()
    }
    fn write_conductor(&self, i: &ConductorInfo) -> Result<(), StoreError> {
        self.write()?;
        self.inner.write_conductor(i)
    }
    fn conductor(&self) -> Result<Option<ConductorInfo>, StoreError> {
        self.inner.conductor()
    }
    fn location(&self) -> String {
        self.inner.location()
    }
}

impl Fencing for FaultyStore {
    fn claim_epoch(&self, holder: &str) -> Result<Epoch, StoreError> {
        self.inner.claim_epoch(holder)
    }
    fn current_epoch(&self) -> Result<(Epoch, Option<String>), StoreError> {
        self.inner.current_epoch()
    }
    fn fenced(&self, epoch: Epoch) -> Arc<dyn Store> {
        Arc::new(FaultyStore {
            inner: self.inner.fenced(epoch),
            faults: self.faults.clone(),
        })
    }
}

impl Tokens for FaultyStore {
    fn create_token(
        &self,
        t: &glint_store::NewToken,
    ) -> Result<Result<glint_store::TokenRecord, glint_store::TokenConflict>, StoreError> {
        self.write()?;
        self.inner.create_token(t)
    }
    fn tokens(&self) -> Result<Vec<glint_store::TokenRecord>, StoreError> {
        self.inner.tokens()
    }
    fn token_with_hash(
        &self,
        accessor: &str,
    ) -> Result<Option<(glint_store::TokenRecord, String)>, StoreError> {
        self.inner.token_with_hash(accessor)
    }
    fn revoke_token(&self, t: &str) -> Result<Option<glint_store::TokenRecord>, StoreError> {
        self.write()?;
        self.inner.revoke_token(t)
    }
}

impl glint_store::Variables for FaultyStore {
    fn variable(&self, name: &str) -> Result<Option<glint_store::VariableRecord>, StoreError> {
        self.inner.variable(name)
    }
    fn set_variable(
        &self,
        name: &str,
        value: &str,
        cas: u64,
        written_by: &str,
    ) -> Result<Result<glint_store::VariableRecord, glint_store::CasConflict>, StoreError> {
        self.write()?;
        self.inner.set_variable(name, value, cas, written_by)
    }
    fn variable_history(
        &self,
        name: &str,
        limit: u32,
    ) -> Result<Vec<glint_store::VariableRecord>, StoreError> {
        self.inner.variable_history(name, limit)
    }
}

impl Secrets for FaultyStore {
    fn secrets(&self) -> Result<Vec<glint_store::SecretRecord>, StoreError> {
        self.inner.secrets()
    }
    fn secret_key_ids(&self) -> Result<Vec<String>, StoreError> {
        self.inner.secret_key_ids()
    }
    fn set_secret(
        &self,
        key: &glint_store::MasterKey,
        name: &str,
        value: &[u8],
        set_by: &str,
    ) -> Result<glint_store::SecretRecord, glint_store::SecretError> {
        self.write()?;
        self.inner.set_secret(key, name, value, set_by)
    }
    fn open_secret(
        &self,
        key: &glint_store::MasterKey,
        name: &str,
    ) -> Result<
        Option<(glint_store::SecretRecord, zeroize::Zeroizing<Vec<u8>>)>,
        glint_store::SecretError,
    > {
        self.inner.open_secret(key, name)
    }
    fn remove_secret(&self, name: &str) -> Result<Option<glint_store::SecretRecord>, StoreError> {
        self.write()?;
        self.inner.remove_secret(name)
    }
    fn rewrap_secrets(
        &self,
        old: &glint_store::MasterKey,
        new: &glint_store::MasterKey,
    ) -> Result<usize, glint_store::SecretError> {
        self.write()?;
        self.inner.rewrap_secrets(old, new)
    }
}

impl Incidents for FaultyStore {
    fn record_incident(
        &self,
        new: glint_store::NewIncident,
    ) -> Result<(glint_store::IncidentRecord, bool), StoreError> {
        self.write()?;
        self.inner.record_incident(new)
    }
    fn incidents(
        &self,
        filter: glint_store::IncidentFilter,
    ) -> Result<Vec<glint_store::IncidentRecord>, StoreError> {
        self.inner.incidents(filter)
    }
    fn incident(&self, id: i64) -> Result<Option<glint_store::IncidentRecord>, StoreError> {
        self.inner.incident(id)
    }
    fn resolve_incident(
        &self,
        id: i64,
        by: &str,
    ) -> Result<Option<glint_store::IncidentRecord>, StoreError> {
        self.write()?;
        self.inner.resolve_incident(id, by)
    }
}

impl Notifications for FaultyStore {
    fn notify_cursor(&self, sink: &str) -> Result<Option<i64>, StoreError> {
        self.inner.notify_cursor(sink)
    }
    fn enqueue_notifications(
        &self,
        sink: &str,
        from: Option<i64>,
        to: i64,
        messages: &[glint_store::NewNotification],
    ) -> Result<bool, StoreError> {
        self.write()?;
        self.inner.enqueue_notifications(sink, from, to, messages)
    }
    fn pending_heads(&self) -> Result<Vec<glint_store::NotificationRecord>, StoreError> {
        self.inner.pending_heads()
    }
    fn record_attempt(
        &self,
        id: i64,
        outcome: &glint_store::Attempt,
    ) -> Result<Option<glint_store::NotificationRecord>, StoreError> {
        self.write()?;
        self.inner.record_attempt(id, outcome)
    }
    fn notifications(
        &self,
        filter: &glint_store::NotificationFilter,
    ) -> Result<Vec<glint_store::NotificationRecord>, StoreError> {
        self.inner.notifications(filter)
    }
    fn notification_counts(&self) -> Result<Vec<glint_store::NotificationCounts>, StoreError> {
        self.inner.notification_counts()
    }
}

impl WriteStats for FaultyStore {
    fn write_latency(&self) -> glint_store::WriteLatency {
        self.inner.write_latency()
    }
}

impl Changes for FaultyStore {
    fn changes(&self) -> ChangeFeed {
        self.inner.changes()
    }
}

/// One test's world. See the module documentation.
pub struct Harness {
    pub dir: tempfile::TempDir,
    pub store: Arc<FaultyStore>,
    pub sim: SimProvider,
    pub prober: Arc<SimProber>,
    pub images: Arc<MemImages>,
    pub factory: Arc<Factory>,
    pub clock: Arc<TestClock>,
    /// The endpoints, kept across conductor restarts as the data plane
    /// process keeps them.
    pub dataplane: Arc<glint_dataplane::LocalDataPlane>,
    /// What the conductor is given as its data plane instead of
    /// `dataplane`, when set (a wrapper that observes it).
    pub plane: Option<Arc<dyn glint_dataplane::DataPlane>>,
    conductor: Option<ConductorHandle>,
}

/// The test image's name and digest.
pub fn app() -> Name {
    Name::new("app").unwrap()
}

/// A name.
pub fn name(s: &str) -> Name {
    Name::new(s).unwrap()
}

/// An environment with one simulated service `web` of `instances`, its
/// health checked over HTTP, with `env` set.
pub fn web(instances: u32, env: &[(&str, &str)]) -> Environment {
    let mut e = Environment::empty(name("test"));
    e.images.insert(
        app(),
        Image {
            port: Some(8080),
            ..Image::scratch(vec!["/app".into()])
        },
    );
    let mut s = Service::new(app());
    s.provider = ProviderKind::Simulated;
    s.instances = instances;
    s.env = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    s.drain = Millis(200);
    s.stop_grace = Millis(500);
    s.health = Some(HealthCheck {
        interval: Millis(500),
        timeout: Millis(200),
        start_timeout: Millis(5_000),
        ..HealthCheck::new(Probe::Http {
            path: "/healthz".into(),
        })
    });
    e.services.insert(name("web"), s);
    e
}

/// The service `web` of an environment, to change it.
pub fn svc(e: &mut Environment) -> &mut Service {
    e.services.get_mut(&name("web")).unwrap()
}

impl Harness {
    /// A new harness (no conductor yet).
    pub fn new() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(TestClock::new());
        let inner = SqliteStore::open_with_clock(dir.path(), clock.clone()).unwrap();
        let dataplane = Arc::new(glint_dataplane::LocalDataPlane::new(
            &inner.store_id().unwrap(),
        ));
        let sim = SimProvider::new();
        let docker = SimProvider::new();
        Harness {
            store: Arc::new(FaultyStore {
                inner: Arc::new(inner),
                faults: Arc::new(Faults::default()),
            }),
            prober: Arc::new(SimProber {
                sims: vec![sim.clone(), docker.clone()],
                delay_ms: AtomicU64::new(0),
                probes: AtomicU64::new(0),
            }),
            images: Arc::new(MemImages::default()),
            factory: Arc::new(Factory {
                sim: docker,
                fail: AtomicBool::new(false),
                connects: AtomicU32::new(0),
            }),
            sim,
            clock,
            dataplane,
            plane: None,
            dir,
            conductor: None,
        }
    }

    /// Now, by the test clock.
    pub fn clock_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Makes probes take `ms` (a probe slower than its timeout fails).
    pub fn set_probe_delay(&self, ms: u64) {
        self.prober.delay_ms.store(ms, Ordering::Relaxed);
    }

    /// Starts a conductor (the harness's simulated provider is its
    /// `simulated` provider; `docker` comes from the factory).
    pub async fn start(&mut self) {
        let lease = LocalLeadership::new(self.dir.path().to_owned(), self.store.clone())
            .acquire()
            .unwrap();
        let mut setup = Setup::new(
            self.store.clone(),
            lease,
            self.images.clone(),
            self.plane
                .clone()
                .unwrap_or_else(|| self.dataplane.clone() as Arc<dyn glint_dataplane::DataPlane>),
        );
        setup.providers.insert(
            ProviderKind::Simulated,
            Arc::new(self.sim.clone()) as Arc<dyn Provider>,
        );
        setup.factory = Some(self.factory.clone());
        setup.prober = self.prober.clone();
        setup.clock = self.clock.clone();
        setup.config.endpoint_wait = Duration::from_millis(100);
        self.conductor = Some(glint_conductor::start(setup).await.unwrap());
    }

    /// Stops the conductor (instances keep running unless `stop_instances`).
    pub async fn stop(&mut self, stop_instances: bool) {
        if let Some(c) = self.conductor.take() {
            c.shutdown(stop_instances).await;
        }
    }

    /// Stops the conductor, leaving everything running, and starts a new one.
    pub async fn restart(&mut self) {
        self.stop(false).await;
        self.start().await;
    }

    /// The running conductor.
    pub fn conductor(&self) -> &ConductorHandle {
        self.conductor.as_ref().expect("a conductor runs")
    }

    /// Applies `env` as a new version through the operations layer.
    pub fn apply(&self, env: Environment) -> VersionNumber {
        let images = env
            .images
            .keys()
            .map(|n| (n.clone(), Digest::of(n.as_str().as_bytes())))
            .collect::<BTreeMap<_, _>>();
        let applied = glint_conductor::ops::apply(
            self.store.as_ref(),
            NewVersion {
                env,
                images,
                root: "/src".into(),
                sources: vec![SourceFile {
                    path: "main.glint".into(),
                    text: String::new(),
                }],
                kind: VersionKind::Apply,
            },
            glint_conductor::ops::ApplyOptions {
                allow_retire_all: true,
                allow_other_environment: true,
            },
        )
        .unwrap();
        if let Some(c) = &self.conductor {
            c.poke();
        }
        applied.version.number
    }

    /// The latest status.
    pub fn status(&self) -> Arc<Status> {
        self.conductor().status().borrow().clone()
    }

    /// Waits (tokio time) until `pred` holds for the status, at most `secs`.
    pub async fn wait(&self, what: &str, secs: u64, pred: impl Fn(&Status) -> bool) -> Arc<Status> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        let mut rx = self.conductor().status();
        loop {
            let s = rx.borrow_and_update().clone();
            if pred(&s) {
                return s;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!(
                    "timed out after {secs}s waiting for {what}; status: {s:#?}\nevents:\n{}",
                    self.event_lines()
                );
            }
            tokio::select! {
                _ = rx.changed() => {}
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
    }

    /// Waits until version `v` has an outcome.
    pub async fn outcome(&self, v: VersionNumber, secs: u64) -> (Outcome, String) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some((o, d)) = self.store.version_outcome(v).unwrap() {
                return (o, d.unwrap_or_default());
            }
            if tokio::time::Instant::now() >= deadline {
                panic!(
                    "version {v} has no outcome after {secs}s\nevents:\n{}",
                    self.event_lines()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Lets `ms` of tokio time pass.
    pub async fn pass_time(&self, ms: u64) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }

    /// Every event.
    pub fn events(&self) -> Vec<Event> {
        self.store.events(&EventFilter::default()).unwrap()
    }

    /// Events of `kind`.
    pub fn events_of(&self, kind: &str) -> Vec<Event> {
        self.events()
            .into_iter()
            .filter(|e| e.kind == kind)
            .collect()
    }

    /// The event log, one line per event (for failure messages).
    pub fn event_lines(&self) -> String {
        self.events()
            .iter()
            .map(|e| format!("{:>7} {:<24} {}", e.at % 1_000_000, e.kind, e.message))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Healthy instance ids of `web` in the status.
    pub fn healthy(s: &Status) -> Vec<InstanceId> {
        s.services
            .iter()
            .filter(|x| x.name.as_str() == "web")
            .flat_map(|x| x.instances.iter())
            .filter(|i| i.phase == glint_conductor::decide::MemberPhase::Healthy)
            .map(|i| i.id.clone())
            .collect()
    }

    /// Healthy current instances of `web`.
    pub fn healthy_current(s: &Status) -> usize {
        s.services
            .iter()
            .filter(|x| x.name.as_str() == "web")
            .flat_map(|x| x.instances.iter())
            .filter(|i| i.phase == glint_conductor::decide::MemberPhase::Healthy && i.current)
            .count()
    }

    /// The newest version's number.
    pub fn latest(&self) -> VersionNumber {
        self.store.latest_version_number().unwrap().unwrap()
    }
}

/// Counts calls, for assertions on hot loops.
#[derive(Debug, Default)]
pub struct Count(pub Mutex<u64>);
