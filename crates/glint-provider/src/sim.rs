//! The simulated provider: instances are tiny in-process HTTP servers.
//!
//! [`SimProvider`] exists for the conductor's logic tests and scale
//! benchmarks. Each instance is one tokio task serving HTTP/1.1 on its own
//! `127.0.0.1` port and behaving like the demo app `glint-hello`:
//!
//! - `GET /` answers `hello from <instance id>`;
//! - `GET /healthz` answers `200 ok`, or `503` when the launch environment has
//!   `HEALTHY=false` or the test called [`SimProvider::set_healthy`];
//! - `GET /sleep/<ms>` answers after `<ms>` milliseconds (in-flight requests);
//! - `START_DELAY_MS` in the environment delays listening (connections are
//!   refused until then, as with a slow-starting program);
//! - `SIM_IGNORE_SIGTERM=true` makes [`Provider::terminate`] wait the whole
//!   grace period and then "SIGKILL" it (also [`SimProvider::set_ignores_sigterm`]);
//! - `EXIT_AFTER_MS` makes the program exit with code 1 that long after it
//!   started (a crash loop when it is small).
//!
//! A test steers it: [`SimProvider::kill`] (abrupt death: listener and open
//! connections dropped, [`ProviderEvent::Exited`] sent),
//! [`SimProvider::fail_next_launches`], [`SimProvider::set_launch_delay`],
//! [`SimProvider::fail_next_terminations`], [`SimProvider::drift`] (an
//! out-of-band change, as a real provider reports it),
//! [`SimProvider::set_unreachable`] (the backend is gone: every call fails),
//! [`SimProvider::oom_kill`] (the kernel's OOM killer),
//! [`SimProvider::set_cpu`] (CPU load reported by [`Provider::usage`]) and
//! [`SimProvider::counters`].
//!
//! Volumes are in memory: a launch that mounts a volume read-write and
//! exclusively while a running instance holds it fails, as with the real
//! providers, and is counted in [`SimCounters::volume_conflicts`] so that a
//! test sees any attempt at a second writer. [`SimProvider::is_healthy`] answers a
//! health probe without the network, for tests on paused time. Delays use
//! tokio time, so paused-time tests run instantly.
//!
//! Instances belong to the provider, not to the conductor using it: the
//! provider is `Clone` with shared state, so a test can drop a conductor and
//! start a new one over a clone of the same provider to exercise adoption,
//! exactly as a restarted conductor finds the real providers' instances.
//!
//! An instance costs one task and one socket, so thousands are cheap; creating
//! the provider raises the process's open-file limit to its hard limit.

use crate::{
    LaunchSpec, Observed, Provider, ProviderError, ProviderEvent, RunState, Usage, VolumeInfo,
};
use async_trait::async_trait;
use bytes::Bytes;
use glint_model::{InstanceId, ProviderKind};
use http_body_util::Full;
use hyper::{Request, Response, StatusCode, body::Incoming};
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};
use tokio::net::TcpSocket;
use tokio::sync::{broadcast, watch};
use tokio::task::{AbortHandle, JoinSet};

/// The signal number a polite stop ends a program with (like `glint-hello`,
/// which has no SIGTERM handler).
const SIGTERM: i32 = 15;
/// The signal number of a forced stop.
const SIGKILL: i32 = 9;

/// What the simulated provider has done so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SimCounters {
    /// Successful launches.
    pub launches: u64,
    /// Launches that failed (injected failures included).
    pub failed_launches: u64,
    /// `terminate` calls that stopped a running instance.
    pub terminations: u64,
    /// Instances killed abruptly with [`SimProvider::kill`].
    pub kills: u64,
    /// Instances running now.
    pub running: usize,
    /// Launches refused because another running instance held one of
    /// their read-write volumes.
    pub volume_conflicts: u64,
}

/// An in-memory provider for tests and benchmarks. See the module
/// documentation. Cloning shares the instances.
#[derive(Clone)]
pub struct SimProvider {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<SimState>,
    events: broadcast::Sender<ProviderEvent>,
}

#[derive(Default)]
struct SimState {
    instances: HashMap<InstanceId, SimInstance>,
    fail_next: u32,
    fail_next_terminations: u32,
    unreachable: bool,
    launch_delay: Duration,
    counters: SimCounters,
    /// Volumes created by launches: name → the instance holding it
    /// read-write, if one does.
    volumes: HashMap<String, Option<InstanceId>>,
    /// CPU load per service, in thousandths of a CPU, shared by its running
    /// instances.
    cpu_load: HashMap<String, u64>,
    /// CPU time accumulated per instance (µs) and when it was last updated.
    cpu_used: HashMap<InstanceId, (u64, tokio::time::Instant)>,
}

struct SimInstance {
    observed: Observed,
    healthy: Arc<AtomicBool>,
    /// Whether it listens yet (false during its start delay).
    listening: Arc<AtomicBool>,
    ignores_sigterm: bool,
    state: watch::Sender<RunState>,
    server: Option<AbortHandle>,
}

impl Default for SimProvider {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let st = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        for i in st.instances.values() {
            if let Some(s) = &i.server {
                s.abort();
            }
        }
    }
}

impl SimProvider {
    /// A provider with no instances.
    pub fn new() -> SimProvider {
        raise_open_file_limit();
        let (events, _) = broadcast::channel(4096);
        SimProvider {
            shared: Arc::new(Shared {
                state: Mutex::new(SimState::default()),
                events,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, SimState> {
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Kills an instance abruptly, as `kill -9` would: its listener and open
    /// connections are dropped and an `Exited` event (signal 9) is sent.
    /// Returns whether a running instance was killed.
    pub fn kill(&self, instance: &InstanceId) -> bool {
        let killed = self.end(
            instance,
            RunState::Exited {
                code: None,
                signal: Some(SIGKILL),
                oom: false,
            },
        );
        if killed {
            self.lock().counters.kills += 1;
        }
        killed
    }

    /// Kills an instance as the kernel's OOM killer does at its memory
    /// limit: SIGKILL, reported out of memory. Returns whether it ran.
    pub fn oom_kill(&self, instance: &InstanceId) -> bool {
        self.end(
            instance,
            RunState::Exited {
                code: None,
                signal: Some(SIGKILL),
                oom: true,
            },
        )
    }

    /// Makes the running instances of `service` use `millis` thousandths
    /// of a CPU in total, shared equally (what [`Provider::usage`]
    /// reports, accumulated over tokio time).
    pub fn set_cpu(&self, service: &str, millis: u64) {
        let mut st = self.lock();
        Self::account_cpu(&mut st);
        st.cpu_load.insert(service.to_owned(), millis);
    }

    /// Which running instance holds volume `name` read-write, if one does.
    pub fn volume_holder(&self, name: &str) -> Option<InstanceId> {
        self.lock().volumes.get(name).cloned().flatten()
    }

    /// The volumes launches have created, sorted.
    pub fn volumes(&self) -> Vec<String> {
        let mut v: Vec<String> = self.lock().volumes.keys().cloned().collect();
        v.sort();
        v
    }

    /// Brings every running instance's CPU time up to now.
    fn account_cpu(st: &mut SimState) {
        let now = tokio::time::Instant::now();
        let mut per_service: HashMap<String, u64> = HashMap::new();
        for i in st.instances.values() {
            if i.observed.state == RunState::Running {
                *per_service
                    .entry(i.observed.labels.service.to_string())
                    .or_default() += 1;
            }
        }
        let running: Vec<(InstanceId, String)> = st
            .instances
            .iter()
            .filter(|(_, i)| i.observed.state == RunState::Running)
            .map(|(id, i)| (id.clone(), i.observed.labels.service.to_string()))
            .collect();
        for (id, service) in running {
            let load = st.cpu_load.get(&service).copied().unwrap_or(0);
            let n = per_service.get(&service).copied().unwrap_or(1).max(1);
            let entry = st.cpu_used.entry(id).or_insert((0, now));
            let dt = now.saturating_duration_since(entry.1).as_micros() as u64;
            // millis/1000 of a CPU for dt µs, shared by n.
            entry.0 += load * dt / 1000 / n;
            entry.1 = now;
        }
    }

    /// Makes an instance's `/healthz` answer 200 (`true`) or 503. Returns
    /// whether the instance exists.
    pub fn set_healthy(&self, instance: &InstanceId, healthy: bool) -> bool {
        match self.lock().instances.get(instance) {
            Some(i) => {
                i.healthy.store(healthy, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    /// Makes an instance ignore polite stops: `terminate` then waits the whole
    /// grace period and kills it. Returns whether the instance exists.
    pub fn set_ignores_sigterm(&self, instance: &InstanceId, ignores: bool) -> bool {
        match self.lock().instances.get_mut(instance) {
            Some(i) => {
                i.ignores_sigterm = ignores;
                true
            }
            None => false,
        }
    }

    /// Makes the next `n` launches fail (after the launch delay).
    pub fn fail_next_launches(&self, n: u32) {
        self.lock().fail_next = n;
    }

    /// Makes the next `n` terminations fail (the instance keeps running).
    pub fn fail_next_terminations(&self, n: u32) {
        self.lock().fail_next_terminations = n;
    }

    /// Makes the backend unreachable (`true`): every launch, termination,
    /// observation and removal fails, as when a Docker Engine goes away.
    pub fn set_unreachable(&self, unreachable: bool) {
        self.lock().unreachable = unreachable;
    }

    /// Reports an out-of-band change of a running instance, as a real
    /// provider's drift watcher does. Returns whether the instance runs.
    pub fn drift(&self, instance: &InstanceId, kind: crate::DriftKind, what: &str) -> bool {
        let running = self
            .lock()
            .instances
            .get(instance)
            .is_some_and(|i| i.observed.state == RunState::Running);
        if running {
            let _ = self.shared.events.send(ProviderEvent::Drift {
                instance: instance.clone(),
                kind,
                what: what.to_owned(),
            });
        }
        running
    }

    /// What a health probe of `instance` would find: `None` when it is not
    /// running or not listening yet (refused), else whether `/healthz`
    /// answers 200.
    pub fn is_healthy(&self, instance: &InstanceId) -> Option<bool> {
        let st = self.lock();
        let i = st.instances.get(instance)?;
        (i.observed.state == RunState::Running && i.listening.load(Ordering::Relaxed))
            .then(|| i.healthy.load(Ordering::Relaxed))
    }

    /// The ids of the running instances.
    pub fn running(&self) -> Vec<InstanceId> {
        let st = self.lock();
        let mut ids: Vec<InstanceId> = st
            .instances
            .iter()
            .filter(|(_, i)| i.observed.state == RunState::Running)
            .map(|(id, _)| id.clone())
            .collect();
        ids.sort();
        ids
    }

    fn unreachable(&self) -> Result<(), ProviderError> {
        if self.lock().unreachable {
            Err(ProviderError::Backend(
                "the simulated backend is unreachable".into(),
            ))
        } else {
            Ok(())
        }
    }

    /// Makes every launch take `delay` (tokio time) before it succeeds or fails.
    pub fn set_launch_delay(&self, delay: Duration) {
        self.lock().launch_delay = delay;
    }

    /// What the provider has done so far.
    pub fn counters(&self) -> SimCounters {
        let st = self.lock();
        SimCounters {
            running: st
                .instances
                .values()
                .filter(|i| i.observed.state == RunState::Running)
                .count(),
            ..st.counters
        }
    }

    /// Ends a running instance with `state`: stops its server, records the
    /// state and sends the event. Returns whether it was running.
    fn end(&self, instance: &InstanceId, state: RunState) -> bool {
        {
            let mut st = self.lock();
            let Some(i) = st.instances.get_mut(instance) else {
                return false;
            };
            if i.observed.state != RunState::Running {
                return false;
            }
            if let Some(s) = i.server.take() {
                s.abort();
            }
            i.observed.state = state;
            i.state.send_replace(state);
            for holder in st.volumes.values_mut() {
                if holder.as_ref() == Some(instance) {
                    *holder = None;
                }
            }
            st.cpu_used.remove(instance);
        }
        let _ = self.shared.events.send(ProviderEvent::Exited {
            instance: instance.clone(),
            state,
        });
        true
    }
}

#[async_trait]
impl Provider for SimProvider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Simulated
    }

    async fn launch(&self, spec: LaunchSpec) -> Result<Observed, ProviderError> {
        let id = spec.labels.instance.clone();
        let fail = |reason: String, source: Option<std::io::Error>| ProviderError::Launch {
            instance: id.clone(),
            reason,
            source,
        };
        self.unreachable()?;
        let delay = self.lock().launch_delay;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        {
            let mut st = self.lock();
            if st.fail_next > 0 {
                st.fail_next -= 1;
                st.counters.failed_launches += 1;
                return Err(fail("simulated launch failure".into(), None));
            }
            if st.instances.contains_key(&id) {
                st.counters.failed_launches += 1;
                return Err(fail("an instance with this id already exists".into(), None));
            }
        }
        let socket = TcpSocket::new_v4()
            .and_then(|s| {
                s.bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
                    .map(|()| s)
            })
            .map_err(|e| fail("cannot bind a loopback port".into(), Some(e)))?;
        let addr = socket
            .local_addr()
            .map_err(|e| fail("cannot read the bound port".into(), Some(e)))?;
        let env_is = |key: &str, value: &str| spec.env.get(key).is_some_and(|v| v == value);
        let healthy = Arc::new(AtomicBool::new(!env_is("HEALTHY", "false")));
        let start_delay = spec
            .env
            .get("START_DELAY_MS")
            .and_then(|v| v.parse().ok())
            .map(Duration::from_millis)
            .unwrap_or_default();
        let listening = Arc::new(AtomicBool::new(start_delay.is_zero()));
        let app = App {
            instance: id.to_string(),
            healthy: healthy.clone(),
            listening: listening.clone(),
        };
        // Without a start delay the instance listens before launch returns,
        // like a program that binds its port first thing.
        let socket = if start_delay.is_zero() {
            Socket::Listening(
                socket
                    .listen(1024)
                    .map_err(|e| fail("cannot listen on a loopback port".into(), Some(e)))?,
            )
        } else {
            Socket::Bound(socket, start_delay)
        };
        let server = tokio::spawn(serve(socket, Arc::new(app))).abort_handle();
        if let Some(after) = spec
            .env
            .get("EXIT_AFTER_MS")
            .and_then(|v| v.parse::<u64>().ok())
        {
            let me = self.clone();
            let id = id.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(after)).await;
                me.end(
                    &id,
                    RunState::Exited {
                        code: Some(1),
                        signal: None,
                        oom: false,
                    },
                );
            });
        }
        let observed = Observed {
            labels: spec.labels,
            state: RunState::Running,
            addr: Some(addr),
            started_at: SystemTime::now(),
            handle: format!("sim {addr}"),
        };
        let (state, _) = watch::channel(RunState::Running);
        let mut st = self.lock();
        Self::account_cpu(&mut st);
        if st.instances.contains_key(&id) {
            // A concurrent launch of the same id won.
            server.abort();
            st.counters.failed_launches += 1;
            return Err(fail("an instance with this id already exists".into(), None));
        }
        let held = spec.mounts.iter().find_map(|m| {
            let holder = st.volumes.get(&m.volume).cloned().flatten();
            (m.exclusive && !m.read_only)
                .then_some(holder)
                .flatten()
                .map(|h| (m.volume.clone(), h))
        });
        if let Some((volume, holder)) = held {
            server.abort();
            st.counters.failed_launches += 1;
            st.counters.volume_conflicts += 1;
            return Err(fail(
                format!("volume `{volume}` is still held by {holder}"),
                None,
            ));
        }
        for m in &spec.mounts {
            let holder = st.volumes.entry(m.volume.clone()).or_default();
            if m.exclusive && !m.read_only {
                *holder = Some(id.clone());
            }
        }
        st.instances.insert(
            id,
            SimInstance {
                observed: observed.clone(),
                healthy,
                listening,
                ignores_sigterm: env_is("SIM_IGNORE_SIGTERM", "true"),
                state,
                server: Some(server),
            },
        );
        st.counters.launches += 1;
        Ok(observed)
    }

    async fn terminate(&self, instance: &InstanceId, grace: Duration) -> Result<(), ProviderError> {
        self.unreachable()?;
        let (ignores, mut rx) = {
            let mut st = self.lock();
            if st.fail_next_terminations > 0 {
                st.fail_next_terminations -= 1;
                return Err(ProviderError::Terminate {
                    instance: instance.clone(),
                    reason: "simulated termination failure".into(),
                });
            }
            let Some(i) = st.instances.get(instance) else {
                return Ok(());
            };
            if i.observed.state != RunState::Running {
                return Ok(());
            }
            let found = (i.ignores_sigterm, i.state.subscribe());
            st.counters.terminations += 1;
            found
        };
        if !ignores {
            self.end(
                instance,
                RunState::Exited {
                    code: None,
                    signal: Some(SIGTERM),
                    oom: false,
                },
            );
            return Ok(());
        }
        // Ignores SIGTERM: wait out the grace period (or an exit meanwhile),
        // then force it.
        let ended = tokio::time::timeout(grace, rx.wait_for(|s| *s != RunState::Running))
            .await
            .is_ok();
        if !ended {
            self.end(
                instance,
                RunState::Exited {
                    code: None,
                    signal: Some(SIGKILL),
                    oom: false,
                },
            );
        }
        Ok(())
    }

    async fn observe(&self) -> Result<Vec<Observed>, ProviderError> {
        self.unreachable()?;
        let st = self.lock();
        let mut all: Vec<Observed> = st.instances.values().map(|i| i.observed.clone()).collect();
        all.sort_by(|a, b| a.labels.instance.cmp(&b.labels.instance));
        Ok(all)
    }

    async fn remove(&self, instance: &InstanceId) -> Result<(), ProviderError> {
        self.unreachable()?;
        // Like the real providers: removing a running instance stops it first.
        self.end(
            instance,
            RunState::Exited {
                code: None,
                signal: Some(SIGKILL),
                oom: false,
            },
        );
        self.lock().instances.remove(instance);
        Ok(())
    }

    fn subscribe(&self) -> broadcast::Receiver<ProviderEvent> {
        self.shared.events.subscribe()
    }

    async fn usage(&self) -> Result<Vec<(InstanceId, Usage)>, ProviderError> {
        self.unreachable()?;
        let mut st = self.lock();
        Self::account_cpu(&mut st);
        let mut out: Vec<(InstanceId, Usage)> = st
            .cpu_used
            .iter()
            .map(|(id, (used, _))| {
                (
                    id.clone(),
                    Usage {
                        cpu_usec: *used,
                        memory_bytes: None,
                    },
                )
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    async fn volume(&self, name: &str) -> Result<Option<VolumeInfo>, ProviderError> {
        self.unreachable()?;
        Ok(self.lock().volumes.contains_key(name).then(|| VolumeInfo {
            name: name.to_owned(),
            location: format!("sim:{name}"),
            host_path: None,
            used_bytes: Some(0),
        }))
    }

    async fn remove_volume(&self, name: &str) -> Result<(), ProviderError> {
        self.unreachable()?;
        let mut st = self.lock();
        if st.volumes.get(name).is_some_and(Option::is_some) {
            return Err(ProviderError::Backend(format!(
                "volume `{name}` is mounted by a running instance"
            )));
        }
        st.volumes.remove(name);
        Ok(())
    }
}

/// What one simulated program knows.
struct App {
    instance: String,
    healthy: Arc<AtomicBool>,
    listening: Arc<AtomicBool>,
}

/// A simulated program's socket: listening already, or bound and waiting
/// out its start delay.
enum Socket {
    Listening(tokio::net::TcpListener),
    Bound(TcpSocket, Duration),
}

/// Listens (after the start delay) and serves connections until aborted.
/// Aborting drops the listener and, through the `JoinSet`, every connection.
async fn serve(socket: Socket, app: Arc<App>) {
    let listener = match socket {
        Socket::Listening(l) => l,
        Socket::Bound(socket, delay) => {
            tokio::time::sleep(delay).await;
            match socket.listen(1024) {
                Ok(l) => {
                    app.listening.store(true, Ordering::Relaxed);
                    l
                }
                Err(e) => {
                    tracing::warn!(instance = %app.instance, error = %e, "simulated instance cannot listen");
                    return;
                }
            }
        }
    };
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let app = app.clone();
                    connections.spawn(async move {
                        let service = hyper::service::service_fn(move |req| respond(req, app.clone()));
                        // A broken connection only ends that connection.
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                            .await;
                    });
                }
                // Out of file descriptors, say: back off instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn respond(
    req: Request<Incoming>,
    app: Arc<App>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path();
    let (status, body) = match path {
        "/" => (StatusCode::OK, format!("hello from {}\n", app.instance)),
        "/healthz" if app.healthy.load(Ordering::Relaxed) => (StatusCode::OK, "ok\n".into()),
        "/healthz" => (StatusCode::SERVICE_UNAVAILABLE, "unhealthy\n".into()),
        _ => match path
            .strip_prefix("/sleep/")
            .and_then(|ms| ms.parse::<u64>().ok())
        {
            Some(ms) => {
                tokio::time::sleep(Duration::from_millis(ms.min(600_000))).await;
                (
                    StatusCode::OK,
                    format!("slept {ms}ms in {}\n", app.instance),
                )
            }
            None => (StatusCode::NOT_FOUND, "not found\n".into()),
        },
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    if let Ok(v) = http::HeaderValue::from_str(&app.instance) {
        resp.headers_mut().insert("x-glint-instance", v);
    }
    Ok(resp)
}

/// Raises the soft open-file limit to the hard limit (best effort): every
/// simulated instance holds a socket.
fn raise_open_file_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        let raised = rustix::process::Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            tracing::debug!(error = %e, "cannot raise the open-file limit");
        }
    }
}
