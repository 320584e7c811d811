//! The provider's shared state and its two watchers.
//!
//! One task follows the Docker event stream (filtered to containers and
//! networks; ownership is decided here from the labels the engine copies into
//! every container event) and reacts at once. Another re-reads the world on a
//! timer ([`Inner::resync`]), so a missed event (the stream dropped, the
//! provider was not running) delays a correction by at most one period. Both
//! funnel every finding through the same de-duplicating reporters, so each
//! drift is reported once per instance and kind (each `docker exec` once), and
//! each exit once.
//!
//! Architecture invariant: the provider only *reports* instance drift (as
//! [`ProviderEvent::Drift`] / [`ProviderEvent::Exited`]); the conductor
//! decides and replaces. What is not an instance (a foreign container on
//! Glint's network, the network itself) the provider corrects here and
//! reports as [`ProviderEvent::Incident`].

use crate::DockerOptions;
use crate::image::ImageCache;
use crate::naming::keys;
use crate::spec::{self, Limits};
use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::models::{
    ContainerInspectResponse, ContainerStateStatusEnum, EventMessage, EventMessageTypeEnum,
    NetworkCreateRequest, NetworkDisconnectRequest, NetworkInspect,
};
use bollard::query_parameters::{EventsOptions, InspectNetworkOptions, ListContainersOptions};
use futures_util::StreamExt;
use glint_model::{InstanceId, Name, keys as label_keys};
use glint_provider::{DriftKind, ProviderError, ProviderEvent, RunState};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::broadcast;

/// How long after a `kill` event a still-running container counts as having
/// survived the signal (a graceful stop may take longer: it is then reported
/// both as this drift and, when it ends, as an exit).
const SURVIVED_SIGNAL: Duration = Duration::from_secs(1);

/// What the provider remembers about one instance it has seen.
#[derive(Debug, Default)]
struct Watched {
    /// The container id.
    container: String,
    /// Drift kinds already reported (exec is tracked per exec id instead).
    reported: HashSet<DriftKind>,
    /// Exec ids already reported.
    execs: HashSet<String>,
    /// Whether its exit has been reported.
    exited: bool,
    /// Whether Glint itself is stopping it (its exit and disconnects are
    /// expected, not drift).
    terminating: bool,
}

#[derive(Debug, Default)]
struct State {
    /// The id of Glint's network as last seen; `None` before it first existed.
    network_id: Option<String>,
    watched: HashMap<InstanceId, Watched>,
    /// `docker exec` descriptions noted at `exec_create`, by exec id, for the
    /// report at `exec_start` (a short command may be gone by then).
    exec_notes: HashMap<String, String>,
}

/// Everything the provider and its watchers share.
pub(crate) struct Inner {
    pub(crate) docker: Docker,
    pub(crate) store: String,
    pub(crate) environment: Name,
    pub(crate) network: String,
    pub(crate) options: DockerOptions,
    pub(crate) events: broadcast::Sender<ProviderEvent>,
    pub(crate) images: ImageCache,
    state: Mutex<State>,
    pub(crate) network_lock: tokio::sync::Mutex<()>,
    /// Set by [`crate::DockerProvider::purge`] (the conductor is exiting
    /// and has stopped everything): the network is gone on purpose and must
    /// not be "repaired". A launch clears it.
    pub(crate) released: std::sync::atomic::AtomicBool,
}

/// A Docker API error as a provider error, with what was being done.
pub(crate) fn backend(what: impl std::fmt::Display, e: DockerError) -> ProviderError {
    ProviderError::Backend(format!("docker: {what}: {e}"))
}

/// Whether an engine error means "no such object".
pub(crate) fn is_not_found(e: &DockerError) -> bool {
    matches!(
        e,
        DockerError::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// How a container's state reads as a [`RunState`].
pub(crate) fn run_state(c: &ContainerInspectResponse) -> RunState {
    let state = c.state.as_ref();
    let running = state.and_then(|s| s.running).unwrap_or(false);
    if running {
        return RunState::Running;
    }
    let never_started = state.and_then(|s| s.status) == Some(ContainerStateStatusEnum::CREATED);
    let code = state.and_then(|s| s.exit_code).filter(|_| !never_started);
    if state.and_then(|s| s.oom_killed) == Some(true) {
        return RunState::Exited {
            code: None,
            signal: Some(9),
            oom: true,
        };
    }
    match code {
        Some(c) if (129..=192).contains(&c) => RunState::Exited {
            code: None,
            signal: i32::try_from(c - 128).ok(),
            oom: false,
        },
        Some(c) => RunState::Exited {
            code: i32::try_from(c).ok(),
            signal: None,
            oom: false,
        },
        None => RunState::Exited {
            code: None,
            signal: None,
            oom: false,
        },
    }
}

fn labels_of(c: &ContainerInspectResponse) -> HashMap<String, String> {
    c.config
        .as_ref()
        .and_then(|c| c.labels.clone())
        .unwrap_or_default()
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

impl Inner {
    pub(crate) fn new(
        docker: Docker,
        store: String,
        environment: Name,
        network: String,
        options: DockerOptions,
    ) -> Inner {
        Inner {
            docker,
            store,
            environment,
            network,
            options,
            events: broadcast::channel(1024).0,
            images: ImageCache::default(),
            state: Mutex::new(State::default()),
            network_lock: tokio::sync::Mutex::new(()),
            released: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The label filters that select this store's and environment's objects.
    pub(crate) fn label_filters(&self) -> HashMap<String, Vec<String>> {
        HashMap::from([(
            "label".to_owned(),
            vec![
                format!("{}={}", label_keys::STORE, self.store),
                format!("{}={}", label_keys::ENVIRONMENT, self.environment),
            ],
        )])
    }

    /// Whether a label map marks something as this provider's.
    pub(crate) fn is_ours(&self, labels: &HashMap<String, String>) -> bool {
        labels.get(label_keys::STORE) == Some(&self.store)
            && labels.get(label_keys::ENVIRONMENT).map(String::as_str)
                == Some(self.environment.as_str())
    }

    fn instance_of(&self, labels: &HashMap<String, String>) -> Option<InstanceId> {
        if !self.is_ours(labels) {
            return None;
        }
        labels
            .get(label_keys::INSTANCE)
            .and_then(|v| InstanceId::parse(v.as_str()).ok())
    }

    fn with_state<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut guard = match self.state.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }

    /// Starts watching an instance (idempotent).
    pub(crate) fn watch(&self, instance: &InstanceId, container: &str) {
        self.with_state(|s| {
            let w = s.watched.entry(instance.clone()).or_default();
            w.container = container.to_owned();
        });
    }

    /// Stops watching an instance.
    pub(crate) fn unwatch(&self, instance: &InstanceId) {
        self.with_state(|s| s.watched.remove(instance));
    }

    /// Marks an instance as being stopped by Glint.
    pub(crate) fn set_terminating(&self, instance: &InstanceId) {
        self.with_state(|s| {
            s.watched.entry(instance.clone()).or_default().terminating = true;
        });
    }

    fn emit(&self, event: ProviderEvent) {
        tracing::info!(?event, "docker provider event");
        // No subscriber is not an error: the conductor resyncs anyway.
        let _ = self.events.send(event);
    }

    fn report_drift(&self, instance: &InstanceId, kind: DriftKind, what: String) {
        let fresh = self.with_state(|s| {
            let w = s.watched.entry(instance.clone()).or_default();
            !w.terminating && !w.exited && w.reported.insert(kind)
        });
        if fresh {
            self.emit(ProviderEvent::Drift {
                instance: instance.clone(),
                kind,
                what,
            });
        }
    }

    fn report_exec(&self, instance: &InstanceId, exec_id: &str, what: String) {
        let fresh = self.with_state(|s| {
            let w = s.watched.entry(instance.clone()).or_default();
            !w.terminating && !w.exited && w.execs.insert(exec_id.to_owned())
        });
        if fresh {
            self.emit(ProviderEvent::Drift {
                instance: instance.clone(),
                kind: DriftKind::Exec,
                what,
            });
        }
    }

    fn report_exit(&self, instance: &InstanceId, state: RunState) {
        let fresh = self.with_state(|s| {
            let w = s.watched.entry(instance.clone()).or_default();
            !std::mem::replace(&mut w.exited, true)
        });
        if fresh {
            self.emit(ProviderEvent::Exited {
                instance: instance.clone(),
                state,
            });
        }
    }

    fn incident(&self, subject: String, what: String, action: String) {
        self.emit(ProviderEvent::Incident {
            subject,
            what,
            action,
        });
    }

    // -----------------------------------------------------------------
    // The network

    /// Makes sure Glint's network exists, is Glint's, and is a plain bridge;
    /// recreates it (and reports an incident) when it was deleted or
    /// replaced. Returns its id.
    pub(crate) async fn ensure_network(&self) -> Result<String, ProviderError> {
        let _guard = self.network_lock.lock().await;
        if self.released.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(ProviderError::Backend(format!(
                "network {} was released: the conductor is stopping",
                self.network
            )));
        }
        let known = self.with_state(|s| s.network_id.clone());
        match self
            .docker
            .inspect_network(&self.network, None::<InspectNetworkOptions>)
            .await
        {
            Ok(net) => {
                if let Some(problem) = self.network_problem(&net) {
                    self.replace_impostor(&net, &problem).await?;
                    let id = self.create_network().await?;
                    self.incident(
                        format!("network {}", self.network),
                        format!("network {} was altered: {problem}", self.network),
                        "removed it and recreated Glint's network".into(),
                    );
                    Ok(id)
                } else {
                    let id = net.id.unwrap_or_default();
                    self.with_state(|s| s.network_id = Some(id.clone()));
                    Ok(id)
                }
            }
            Err(e) if is_not_found(&e) => {
                let id = self.create_network().await?;
                if let Some(old) = known {
                    self.incident(
                        format!("network {}", self.network),
                        format!("network {} ({}) was deleted", self.network, short(&old)),
                        format!("recreated it ({})", short(&id)),
                    );
                }
                Ok(id)
            }
            Err(e) => Err(backend(format!("inspect network {}", self.network), e)),
        }
    }

    /// Why a network found under Glint's name is not Glint's network.
    fn network_problem(&self, net: &NetworkInspect) -> Option<String> {
        let labels = net.labels.clone().unwrap_or_default();
        if !self.is_ours(&labels) || labels.get(keys::ROLE).map(String::as_str) != Some("network") {
            return Some("it does not carry Glint's labels".into());
        }
        if net.driver.as_deref() != Some("bridge") {
            return Some(format!(
                "its driver is {} instead of bridge",
                net.driver.as_deref().unwrap_or("(none)")
            ));
        }
        if net.internal == Some(true) {
            return Some("it was made internal".into());
        }
        None
    }

    /// Removes a network that has taken Glint's network's name.
    async fn replace_impostor(
        &self,
        net: &NetworkInspect,
        problem: &str,
    ) -> Result<(), ProviderError> {
        tracing::warn!(network = %self.network, problem, "replacing an altered network");
        let id = net.id.clone().unwrap_or_else(|| self.network.clone());
        for container in net.containers.clone().unwrap_or_default().keys() {
            let _ = self
                .docker
                .disconnect_network(
                    &id,
                    NetworkDisconnectRequest {
                        container: container.clone(),
                        force: Some(true),
                    },
                )
                .await;
        }
        match self.docker.remove_network(&id).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(backend(
                format!("remove altered network {}", self.network),
                e,
            )),
        }
    }

    async fn create_network(&self) -> Result<String, ProviderError> {
        let mut labels: HashMap<String, String> = HashMap::from([
            (label_keys::STORE.to_owned(), self.store.clone()),
            (
                label_keys::ENVIRONMENT.to_owned(),
                self.environment.to_string(),
            ),
            (keys::ROLE.to_owned(), "network".to_owned()),
        ]);
        labels.shrink_to_fit();
        let request = NetworkCreateRequest {
            name: self.network.clone(),
            driver: Some("bridge".into()),
            labels: Some(labels),
            ..Default::default()
        };
        let id = match self.docker.create_network(request).await {
            Ok(r) => r.id,
            Err(DockerError::DockerResponseServerError {
                status_code: 409, ..
            }) => {
                // Created meanwhile (another provider over the same store).
                self.docker
                    .inspect_network(&self.network, None::<InspectNetworkOptions>)
                    .await
                    .map_err(|e| backend(format!("inspect network {}", self.network), e))?
                    .id
                    .unwrap_or_default()
            }
            Err(e) => return Err(backend(format!("create network {}", self.network), e)),
        };
        self.with_state(|s| s.network_id = Some(id.clone()));
        Ok(id)
    }

    /// Disconnects a container that is not Glint's from Glint's network.
    async fn evict_foreign(&self, container: &str, name: &str) {
        let result = self
            .docker
            .disconnect_network(
                &self.network,
                NetworkDisconnectRequest {
                    container: container.to_owned(),
                    force: Some(true),
                },
            )
            .await;
        match result {
            Ok(()) => self.incident(
                format!("container {}", short(container)),
                format!(
                    "container {name} ({}), not created by Glint, was attached to network {}",
                    short(container),
                    self.network
                ),
                "disconnected it".into(),
            ),
            Err(e) if is_not_found(&e) => {}
            Err(e) => tracing::warn!("cannot disconnect foreign container {container}: {e}"),
        }
    }

    // -----------------------------------------------------------------
    // Checks of one container

    /// Every check of a live container; used by the resync and after events.
    async fn check_container(&self, instance: &InstanceId, c: &ContainerInspectResponse) {
        let id = c.id.clone().unwrap_or_default();
        let status = c.state.as_ref().and_then(|s| s.status);
        if status == Some(ContainerStateStatusEnum::CREATED) {
            // Created and not yet started: a launch is in progress (a launch
            // that fails removes its container).
            return;
        }
        if status == Some(ContainerStateStatusEnum::PAUSED)
            || c.state.as_ref().and_then(|s| s.paused) == Some(true)
        {
            self.report_drift(
                instance,
                DriftKind::Paused,
                "the container was paused (docker pause)".into(),
            );
            return;
        }
        if !matches!(run_state(c), RunState::Running) {
            self.report_exit(instance, run_state(c));
            return;
        }
        for exec in c.exec_ids.clone().unwrap_or_default() {
            let seen = self.with_state(|s| {
                s.watched
                    .get(instance)
                    .is_some_and(|w| w.execs.contains(&exec))
            });
            if !seen {
                let what = self.describe_exec(&exec, None).await;
                self.report_exec(instance, &exec, what);
            }
        }
        self.check_limits(instance, c);
        self.check_networks(instance, c);
        self.check_filesystem(instance, &id, c).await;
    }

    fn check_limits(&self, instance: &InstanceId, c: &ContainerInspectResponse) {
        let expected = Limits::from_labels(&labels_of(c));
        let host = c.host_config.clone().unwrap_or_default();
        if let Some(found) = spec::limits_drift(expected, &host) {
            self.report_drift(
                instance,
                DriftKind::Limits,
                format!("its resource settings were changed (docker update): {found}"),
            );
        }
    }

    fn check_networks(&self, instance: &InstanceId, c: &ContainerInspectResponse) {
        let networks: Vec<String> = c
            .network_settings
            .as_ref()
            .and_then(|n| n.networks.as_ref())
            .map(|n| n.keys().cloned().collect())
            .unwrap_or_default();
        let others: Vec<&String> = networks.iter().filter(|n| **n != self.network).collect();
        if !others.is_empty() {
            let names: Vec<&str> = others.iter().map(|s| s.as_str()).collect();
            self.report_drift(
                instance,
                DriftKind::Network,
                format!("it was connected to network {}", names.join(", ")),
            );
        } else if !networks.contains(&self.network) {
            self.report_drift(
                instance,
                DriftKind::Network,
                format!("it was disconnected from network {}", self.network),
            );
        }
    }

    async fn check_filesystem(
        &self,
        instance: &InstanceId,
        id: &str,
        c: &ContainerInspectResponse,
    ) {
        let changes = match self.docker.container_changes(id).await {
            Ok(c) => c.unwrap_or_default(),
            Err(e) => {
                tracing::debug!("docker diff of {id} failed: {e}");
                return;
            }
        };
        let mounts: Vec<String> = c
            .mounts
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter_map(|m| m.destination)
            .collect();
        let drift = spec::filesystem_drift(&changes, &mounts);
        if !drift.is_empty() {
            let shown: Vec<&str> = drift.iter().take(5).map(String::as_str).collect();
            let more = if drift.len() > 5 {
                format!(" and {} more", drift.len() - 5)
            } else {
                String::new()
            };
            self.report_drift(
                instance,
                DriftKind::Filesystem,
                format!("its filesystem was changed: {}{more}", shown.join(", ")),
            );
        }
    }

    /// A sentence for a `docker exec`: the command and the user.
    async fn describe_exec(&self, exec: &str, fallback_cmd: Option<&str>) -> String {
        if let Some(note) = self.with_state(|s| s.exec_notes.get(exec).cloned()) {
            return note;
        }
        match self.docker.inspect_exec(exec).await {
            Ok(e) => {
                let pc = e.process_config.unwrap_or_default();
                let mut cmd = vec![pc.entrypoint.unwrap_or_default()];
                cmd.extend(pc.arguments.unwrap_or_default());
                // No user given: the image's user, which is root for every
                // image Glint builds.
                let user = match pc.user.as_deref() {
                    None | Some("") => "root",
                    Some(u) => u,
                };
                let privileged = if pc.privileged == Some(true) {
                    ", privileged"
                } else {
                    ""
                };
                format!("docker exec ran `{}` as {user}{privileged}", cmd.join(" "))
            }
            Err(_) => match fallback_cmd {
                Some(cmd) => format!("docker exec ran `{cmd}`"),
                None => format!("docker exec ran a command (exec {})", short(exec)),
            },
        }
    }

    // -----------------------------------------------------------------
    // Events

    /// Reacts to one engine event.
    pub(crate) async fn handle_event(self: &Arc<Self>, ev: EventMessage) {
        let actor = ev.actor.unwrap_or_default();
        let attrs = actor.attributes.unwrap_or_default();
        let id = actor.id.unwrap_or_default();
        let action = ev.action.unwrap_or_default();
        let (verb, detail) = match action.split_once(':') {
            Some((v, d)) => (v.trim(), Some(d.trim())),
            None => (action.as_str(), None),
        };
        match ev.typ {
            Some(EventMessageTypeEnum::CONTAINER) => {
                let Some(instance) = self.instance_of(&attrs) else {
                    return;
                };
                self.container_event(&instance, &id, verb, detail, &attrs)
                    .await;
            }
            Some(EventMessageTypeEnum::NETWORK) => {
                let network = attrs.get("name").cloned().unwrap_or_default();
                let container = attrs.get("container").cloned();
                self.network_event(&network, container.as_deref(), verb)
                    .await;
            }
            _ => {}
        }
    }

    async fn container_event(
        self: &Arc<Self>,
        instance: &InstanceId,
        id: &str,
        verb: &str,
        detail: Option<&str>,
        attrs: &HashMap<String, String>,
    ) {
        match verb {
            "create" | "start" => self.watch(instance, id),
            "die" => {
                let state = match self.inspect(id).await {
                    Some(c) => run_state(&c),
                    None => {
                        let code = attrs.get("exitCode").and_then(|c| c.parse().ok());
                        RunState::Exited {
                            code,
                            signal: None,
                            oom: false,
                        }
                    }
                };
                if !matches!(state, RunState::Running) {
                    self.report_exit(instance, state);
                }
            }
            "destroy" => {
                self.report_exit(
                    instance,
                    RunState::Exited {
                        code: None,
                        signal: None,
                        oom: false,
                    },
                );
                self.unwatch(instance);
            }
            "pause" => self.report_drift(
                instance,
                DriftKind::Paused,
                "the container was paused (docker pause)".into(),
            ),
            "exec_create" => {
                if let Some(exec) = attrs.get("execID") {
                    let what = self.describe_exec(exec, detail).await;
                    self.with_state(|s| {
                        if s.exec_notes.len() > 1000 {
                            s.exec_notes.clear();
                        }
                        s.exec_notes.insert(exec.clone(), what);
                    });
                }
            }
            "exec_start" => {
                let exec = attrs.get("execID").cloned().unwrap_or_default();
                let what = self.describe_exec(&exec, detail).await;
                self.report_exec(instance, &exec, what);
            }
            "kill" => {
                // `docker stop` and `docker kill` end in `die`, reported as an
                // exit. A signal the program survives (`docker kill -s HUP`)
                // changed a running instance from outside: drift.
                let signal = attrs.get("signal").cloned().unwrap_or_default();
                let (inner, instance, id) = (self.clone(), instance.clone(), id.to_owned());
                tokio::spawn(async move {
                    tokio::time::sleep(SURVIVED_SIGNAL).await;
                    let Some(c) = inner.inspect(&id).await else {
                        return;
                    };
                    if matches!(run_state(&c), RunState::Running) {
                        inner.report_drift(
                            &instance,
                            DriftKind::Other,
                            format!("it was sent signal {signal} (docker kill) and kept running"),
                        );
                    }
                });
            }
            "update" => {
                if let Some(c) = self.inspect(id).await {
                    self.check_limits(instance, &c);
                }
            }
            _ => {}
        }
    }

    async fn network_event(&self, network: &str, container: Option<&str>, verb: &str) {
        match (verb, container) {
            ("destroy", _)
                if network == self.network
                    && !self.released.load(std::sync::atomic::Ordering::SeqCst) =>
            {
                if let Err(e) = self.ensure_network().await {
                    tracing::warn!("cannot recreate network {}: {e}", self.network);
                }
            }
            ("connect" | "disconnect", Some(container)) => {
                let Some(c) = self.inspect(container).await else {
                    return;
                };
                let labels = labels_of(&c);
                match self.instance_of(&labels) {
                    Some(instance) => {
                        // A stopping container leaves its networks: not drift.
                        if matches!(run_state(&c), RunState::Running) {
                            self.check_networks(&instance, &c);
                        }
                    }
                    None if verb == "connect" && network == self.network => {
                        let name = c.name.clone().unwrap_or_default();
                        self.evict_foreign(container, name.trim_start_matches('/'))
                            .await;
                    }
                    None => {}
                }
            }
            _ => {}
        }
    }

    async fn inspect(&self, id: &str) -> Option<ContainerInspectResponse> {
        self.docker.inspect_container(id, None).await.ok()
    }

    /// Follows the event stream for ever, reconnecting (and asking for a
    /// resync) when it breaks.
    pub(crate) async fn follow_events(self: &Arc<Self>) {
        let mut since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        loop {
            let options = EventsOptions {
                since: Some(since.to_string()),
                until: None,
                filters: Some(HashMap::from([(
                    "type".to_owned(),
                    vec!["container".to_owned(), "network".to_owned()],
                )])),
            };
            let mut stream = self.docker.events(Some(options));
            while let Some(item) = stream.next().await {
                match item {
                    Ok(ev) => {
                        if let Some(t) = ev.time.and_then(|t| u64::try_from(t).ok()) {
                            since = since.max(t);
                        }
                        self.handle_event(ev).await;
                    }
                    Err(e) => {
                        tracing::warn!("docker event stream failed: {e}");
                        break;
                    }
                }
            }
            self.emit(ProviderEvent::Resync);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Re-reads the world: the network, every container of this store and
    /// environment, and who else is on the network.
    pub(crate) async fn resync(&self) -> Result<(), ProviderError> {
        if self.released.load(std::sync::atomic::Ordering::SeqCst) {
            return Ok(());
        }
        self.ensure_network().await?;
        // Only instances watched before listing can have vanished: one
        // launched meanwhile may be missing from the list.
        let before: HashSet<InstanceId> = self.with_state(|s| s.watched.keys().cloned().collect());
        let list = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(self.label_filters()),
                ..Default::default()
            }))
            .await
            .map_err(|e| backend("list containers", e))?;
        let mut seen = HashSet::new();
        let mut ours = HashSet::new();
        for summary in list {
            let Some(id) = summary.id else { continue };
            ours.insert(id.clone());
            let Some(c) = self.inspect(&id).await else {
                continue;
            };
            let Some(instance) = self.instance_of(&labels_of(&c)) else {
                continue;
            };
            seen.insert(instance.clone());
            self.watch(&instance, &id);
            self.check_container(&instance, &c).await;
        }
        for instance in before.difference(&seen) {
            self.report_exit(
                instance,
                RunState::Exited {
                    code: None,
                    signal: None,
                    oom: false,
                },
            );
            self.unwatch(instance);
        }
        if let Ok(net) = self
            .docker
            .inspect_network(&self.network, None::<InspectNetworkOptions>)
            .await
        {
            for (id, endpoint) in net.containers.unwrap_or_default() {
                if ours.contains(&id) {
                    continue;
                }
                // Launched since the listing above? Then it is ours.
                if let Some(c) = self.inspect(&id).await
                    && self.is_ours(&labels_of(&c))
                {
                    continue;
                }
                let name = endpoint.name.unwrap_or_default();
                self.evict_foreign(&id, &name).await;
            }
        }
        Ok(())
    }

    /// Resyncs for ever on the configured period.
    pub(crate) async fn resync_forever(&self) {
        let mut tick = tokio::time::interval(self.options.resync);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = self.resync().await {
                tracing::warn!("docker resync failed: {e}");
            }
        }
    }
}
