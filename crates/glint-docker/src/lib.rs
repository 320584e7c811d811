//! Glint's Docker provider: instances as Docker containers, watched strictly.
//!
//! [`DockerProvider`] implements [`glint_provider::Provider`] over the Docker
//! Engine API (through `bollard`; `DOCKER_HOST` is honoured, the API version
//! is negotiated, and every call used exists in API 1.41 / Engine 20.10).
//!
//! What a container gets (see [`spec::create_body`]): the ownership labels
//! plus the launch facts drift checks need (port, limits), a read-only root
//! filesystem, a tmpfs `/tmp`, its volumes as labelled named volumes (see
//! [`volumes`]), the declared memory, CPU and pids limits, the
//! declared env plus `PORT`, no restart policy, no image health check, and
//! exactly one network: the per-environment bridge network
//! (`glint-<env>-<store id prefix>`) that the provider creates, labels and
//! owns. [`Observed::addr`] is the container's address on that network plus
//! the service port; the endpoint proxy on the host connects there.
//!
//! Images come from Glint's store as archives and are verified against their
//! digest on the way in (see [`image`]).
//!
//! Drift (see `watch`): the provider follows the engine's event stream and
//! resyncs on a timer. A stopped, killed or removed container is reported as
//! [`ProviderEvent::Exited`]; a paused, entered (`docker exec`), updated
//! (`docker update`), rewired (network connect/disconnect) or modified
//! (`docker diff` outside tmpfs and volumes) one as [`ProviderEvent::Drift`]
//! with a [`DriftKind`]; the conductor replaces. A foreign container on
//! Glint's network is disconnected, and a deleted or altered network is
//! recreated, here, and reported as [`ProviderEvent::Incident`].
//!
//! Restart: a new provider over the same engine finds the same containers by
//! their labels ([`Provider::observe`]); nothing is duplicated.
//!
//! Layout:
//! - this file: the provider and the trait implementation;
//! - [`spec`]: the create request and the pure drift rules;
//! - [`image`]: archive verification and `docker load`;
//! - [`logs`]: log files kept after a container is removed;
//! - [`naming`]: container, network, volume and image names, extra label
//!   keys;
//! - [`volumes`]: volumes as labelled named volumes, one writer at a time;
//! - `watch`: shared state, the event follower and the resync.

pub mod image;
pub mod logs;
pub mod naming;
pub mod spec;
pub mod volumes;
mod watch;

pub use image::{ImageError, check_archive, image_tag};
pub use logs::{LogPaths, log_paths};

use async_trait::async_trait;
use bollard::Docker;
use bollard::models::ContainerInspectResponse;
use bollard::query_parameters::{
    CreateContainerOptions, ListContainersOptions, RemoveContainerOptions, StopContainerOptions,
};
use glint_model::{InstanceId, Labels, Name, ProviderKind};
pub use glint_provider::DriftKind;
use glint_provider::process::{glint_dir, secrets};
use glint_provider::{
    LaunchSpec, Observed, Provider, ProviderError, ProviderEvent, RunState, Usage, VolumeInfo,
};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use watch::{Inner, backend, is_not_found, run_state};

/// How a [`DockerProvider`] runs.
#[derive(Debug, Clone)]
pub struct DockerOptions {
    /// Where removed containers' logs are kept (see [`log_paths`]); `None`:
    /// logs go with the container.
    pub state_dir: Option<PathBuf>,
    /// How often the world is re-read even without events. Default 1 s, so
    /// that a missed event is corrected within 2 s.
    pub resync: Duration,
}

impl Default for DockerOptions {
    fn default() -> Self {
        DockerOptions {
            state_dir: None,
            resync: Duration::from_secs(1),
        }
    }
}

/// Instances as Docker containers. See the crate documentation.
///
/// Dropping it stops its watchers; containers keep running (a new provider
/// adopts them).
pub struct DockerProvider {
    inner: Arc<Inner>,
    tasks: Vec<JoinHandle<()>>,
    /// Held from the check that a read-write volume is free to the start of
    /// the container that takes it.
    volume_launches: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for DockerProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerProvider")
            .field("store", &self.inner.store)
            .field("environment", &self.inner.environment)
            .field("network", &self.inner.network)
            .finish_non_exhaustive()
    }
}

impl Drop for DockerProvider {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl DockerProvider {
    /// Connects to the engine named by `DOCKER_HOST` (default: the local
    /// socket) with default options. See [`DockerProvider::connect_with`].
    pub async fn connect(
        store_id: &str,
        environment: &Name,
    ) -> Result<DockerProvider, ProviderError> {
        Self::connect_with(store_id, environment, DockerOptions::default()).await
    }

    /// Connects to the engine, negotiates the API version, makes sure Glint's
    /// network for `environment` exists, and starts watching. Must be called
    /// inside a Tokio runtime.
    pub async fn connect_with(
        store_id: &str,
        environment: &Name,
        options: DockerOptions,
    ) -> Result<DockerProvider, ProviderError> {
        let docker = Docker::connect_with_defaults()
            .map_err(|e| backend("cannot connect to the engine (DOCKER_HOST)", e))?
            .negotiate_version()
            .await
            .map_err(|e| backend("cannot reach the engine", e))?;
        docker
            .ping()
            .await
            .map_err(|e| backend("the engine does not answer", e))?;
        let network = naming::network_name(environment, store_id);
        let inner = Arc::new(Inner::new(
            docker,
            store_id.to_owned(),
            environment.clone(),
            network,
            options,
        ));
        inner.ensure_network().await?;
        let events = {
            let inner = inner.clone();
            tokio::spawn(async move { inner.follow_events().await })
        };
        let resync = {
            let inner = inner.clone();
            tokio::spawn(async move { inner.resync_forever().await })
        };
        Ok(DockerProvider {
            inner,
            tasks: vec![events, resync],
            volume_launches: tokio::sync::Mutex::new(()),
        })
    }

    /// The name of Glint's network for this environment.
    pub fn network_name(&self) -> &str {
        &self.inner.network
    }

    /// The engine client (for tools and tests that need more than the trait).
    pub fn docker(&self) -> &Docker {
        &self.inner.docker
    }

    /// The container name of an instance.
    pub fn container_name(&self, instance: &InstanceId) -> String {
        naming::container_name(&self.inner.environment, instance)
    }

    /// Re-reads the world now, as the resync timer does.
    pub async fn resync(&self) -> Result<(), ProviderError> {
        self.inner.resync().await
    }

    /// Removes every container of this store and environment and Glint's
    /// network (`glint down`, tests). Logs are kept as by
    /// [`Provider::remove`].
    pub async fn purge(&self) -> Result<(), ProviderError> {
        self.inner
            .released
            .store(true, std::sync::atomic::Ordering::SeqCst);
        for (instance, _) in self.list().await? {
            self.inner.set_terminating(&instance);
            self.remove(&instance).await?;
        }
        // Any repair already in flight finishes first; none starts after.
        let _guard = self.inner.network_lock.lock().await;
        match self.inner.docker.remove_network(&self.inner.network).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(backend(format!("remove network {}", self.inner.network), e)),
        }
    }

    /// Every container of this store and environment, inspected.
    async fn list(&self) -> Result<Vec<(InstanceId, ContainerInspectResponse)>, ProviderError> {
        let list = self
            .inner
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(self.inner.label_filters()),
                ..Default::default()
            }))
            .await
            .map_err(|e| backend("list containers", e))?;
        let mut out = Vec::new();
        for summary in list {
            let Some(id) = summary.id else { continue };
            match self.inner.docker.inspect_container(&id, None).await {
                Ok(c) => {
                    let labels = labels_btree(&c);
                    match Labels::from_map(&labels) {
                        Ok(l) => out.push((l.instance, c)),
                        Err(e) => tracing::warn!("container {id} has bad Glint labels: {e}"),
                    }
                }
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(backend(format!("inspect container {id}"), e)),
            }
        }
        Ok(out)
    }

    /// The container of an instance, if it exists. Found by its labels, not
    /// its name: a container can be renamed, and orphans may have any name.
    async fn find(
        &self,
        instance: &InstanceId,
    ) -> Result<Option<ContainerInspectResponse>, ProviderError> {
        let mut filters = self.inner.label_filters();
        if let Some(labels) = filters.get_mut("label") {
            labels.push(format!("{}={instance}", glint_model::keys::INSTANCE));
        }
        let list = self
            .inner
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(filters),
                ..Default::default()
            }))
            .await
            .map_err(|e| backend(format!("find the container of {instance}"), e))?;
        let Some(id) = list.into_iter().find_map(|c| c.id) else {
            return Ok(None);
        };
        match self.inner.docker.inspect_container(&id, None).await {
            Ok(c) => Ok(Some(c)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(backend(format!("inspect container {id}"), e)),
        }
    }

    fn observed(&self, c: &ContainerInspectResponse) -> Result<Observed, ProviderError> {
        let id = c.id.clone().unwrap_or_default();
        let labels = Labels::from_map(&labels_btree(c))
            .map_err(|e| ProviderError::Backend(format!("container {id}: {e}")))?;
        let port: Option<u16> = c
            .config
            .as_ref()
            .and_then(|c| c.labels.as_ref())
            .and_then(|l| l.get(naming::keys::PORT))
            .and_then(|p| p.parse().ok());
        let ip: Option<IpAddr> = c
            .network_settings
            .as_ref()
            .and_then(|n| n.networks.as_ref())
            .and_then(|n| n.get(&self.inner.network))
            .and_then(|e| e.ip_address.as_deref())
            .and_then(|ip| ip.parse().ok());
        let started_at = c
            .state
            .as_ref()
            .and_then(|s| s.started_at.as_deref())
            .and_then(spec::parse_time)
            .filter(|t| *t > SystemTime::UNIX_EPOCH)
            .or_else(|| c.created.as_deref().and_then(spec::parse_time))
            .unwrap_or_else(SystemTime::now);
        Ok(Observed {
            labels,
            state: run_state(c),
            addr: ip.zip(port).map(|(ip, port)| SocketAddr::new(ip, port)),
            started_at,
            handle: id[..id.len().min(12)].to_owned(),
        })
    }

    async fn discard(&self, container: &str) {
        let _ = self
            .inner
            .docker
            .remove_container(
                container,
                Some(RemoveContainerOptions {
                    force: true,
                    v: true,
                    ..Default::default()
                }),
            )
            .await;
    }
}

fn labels_btree(c: &ContainerInspectResponse) -> BTreeMap<String, String> {
    c.config
        .as_ref()
        .and_then(|c| c.labels.clone())
        .unwrap_or_default()
        .into_iter()
        .collect()
}

#[async_trait]
impl Provider for DockerProvider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Docker
    }

    async fn launch(&self, spec: LaunchSpec) -> Result<Observed, ProviderError> {
        let instance = spec.labels.instance.clone();
        let fail = |reason: String| ProviderError::Launch {
            instance: instance.clone(),
            reason,
            source: None,
        };
        if spec.argv.is_empty() {
            return Err(fail(
                "the image has no entrypoint and the service no args".into(),
            ));
        }
        self.inner
            .released
            .store(false, std::sync::atomic::Ordering::SeqCst);
        self.inner.ensure_network().await?;
        let image = self
            .inner
            .images
            .ensure(
                &self.inner.docker,
                &spec.image.digest,
                spec.image.archive.as_deref(),
            )
            .await
            .map_err(|e| fail(e.to_string()))?;
        // Volumes exist (labelled) before the container; a read-write one
        // in use by a running container refuses the launch.
        let exclusive = spec.mounts.iter().any(|m| m.exclusive && !m.read_only);
        let _serial = if exclusive {
            Some(self.volume_launches.lock().await)
        } else {
            None
        };
        for m in &spec.mounts {
            volumes::ensure(
                &self.inner.docker,
                &self.inner.store,
                self.inner.environment.as_str(),
                &m.volume,
            )
            .await?;
            if m.exclusive && !m.read_only {
                let vname = naming::volume_name(&self.inner.store, &m.volume);
                let users = volumes::users(&self.inner.docker, &vname, false).await?;
                if let Some(other) = users.first() {
                    return Err(fail(format!(
                        "volume `{}` is still used by running container {} (one writer at a time: it must end first)",
                        m.volume,
                        &other[..other.len().min(12)]
                    )));
                }
            }
        }
        // Secrets: files on the host's tmpfs, bound read-only at
        // /run/secrets (the engine is local; see `spec::create_body`).
        let store = spec.labels.store.clone();
        if !spec.secrets.is_empty() {
            secrets::write(&store, &instance, &spec.secrets)?;
        }
        if let Some(files) = &spec.glint
            && let Err(e) = glint_dir::write(&store, &instance, files)
        {
            secrets::remove(&store, &instance);
            return Err(e);
        }
        let name = self.container_name(&instance);
        let body = spec::create_body(&spec, &image, &self.inner.network);
        drop(spec);
        let created = match self
            .inner
            .docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(name.clone()),
                    ..Default::default()
                }),
                body,
            )
            .await
        {
            Ok(c) => c,
            Err(e) => {
                secrets::remove(&store, &instance);
                glint_dir::remove(&store, &instance);
                return Err(fail(format!("docker create {name}: {e}")));
            }
        };
        self.inner.watch(&instance, &created.id);
        let started = async {
            self.inner
                .docker
                .start_container(&created.id, None)
                .await
                .map_err(|e| fail(format!("docker start {name}: {e}")))?;
            let c = self
                .inner
                .docker
                .inspect_container(&created.id, None)
                .await
                .map_err(|e| fail(format!("docker inspect {name}: {e}")))?;
            self.observed(&c)
        }
        .await;
        match started {
            Ok(o) => Ok(o),
            Err(e) => {
                // Nothing is left behind.
                self.inner.unwatch(&instance);
                self.discard(&created.id).await;
                secrets::remove(&store, &instance);
                glint_dir::remove(&store, &instance);
                Err(e)
            }
        }
    }

    async fn terminate(&self, instance: &InstanceId, grace: Duration) -> Result<(), ProviderError> {
        let Some(c) = self.find(instance).await? else {
            return Ok(());
        };
        self.inner.set_terminating(instance);
        let id = c.id.clone().unwrap_or_default();
        let terminate_err = |reason: String| ProviderError::Terminate {
            instance: instance.clone(),
            reason,
        };
        if c.state.as_ref().and_then(|s| s.paused) == Some(true) {
            // A frozen process cannot handle SIGTERM; thaw it to stop it.
            let _ = self.inner.docker.unpause_container(&id).await;
        }
        if !matches!(run_state(&c), RunState::Running) {
            return Ok(());
        }
        let secs = grace.as_millis().div_ceil(1000);
        let t = i32::try_from(secs).unwrap_or(i32::MAX);
        // The stop request lasts as long as the grace period.
        let docker = self.inner.docker.clone().with_timeout(Duration::from_secs(
            u64::try_from(secs).unwrap_or(u64::MAX).saturating_add(60),
        ));
        match docker
            .stop_container(
                &id,
                Some(StopContainerOptions {
                    t: Some(t),
                    signal: None,
                }),
            )
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(terminate_err(format!("docker stop: {e}"))),
        }
    }

    async fn observe(&self) -> Result<Vec<Observed>, ProviderError> {
        let mut out = Vec::new();
        for (instance, c) in self.list().await? {
            if let Some(id) = c.id.as_deref() {
                self.inner.watch(&instance, id);
            }
            out.push(self.observed(&c)?);
        }
        Ok(out)
    }

    async fn remove(&self, instance: &InstanceId) -> Result<(), ProviderError> {
        secrets::remove(&self.inner.store, instance);
        glint_dir::remove(&self.inner.store, instance);
        let Some(c) = self.find(instance).await? else {
            self.inner.unwatch(instance);
            return Ok(());
        };
        self.inner.set_terminating(instance);
        let id = c.id.clone().unwrap_or_default();
        if let Some(dir) = &self.inner.options.state_dir {
            logs::copy_logs(&self.inner.docker, &id, &log_paths(dir, instance)).await?;
        }
        let result = self
            .inner
            .docker
            .remove_container(
                &id,
                Some(RemoveContainerOptions {
                    force: true,
                    v: true,
                    ..Default::default()
                }),
            )
            .await;
        self.inner.unwatch(instance);
        match result {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(backend(format!("remove container {id}"), e)),
        }
    }

    fn subscribe(&self) -> broadcast::Receiver<ProviderEvent> {
        self.inner.events.subscribe()
    }

    async fn usage(&self) -> Result<Vec<(InstanceId, Usage)>, ProviderError> {
        use futures_util::StreamExt;
        let mut out = Vec::new();
        for (instance, c) in self.list().await? {
            if !matches!(run_state(&c), RunState::Running) {
                continue;
            }
            let Some(id) = c.id.as_deref() else { continue };
            let mut stats = self.inner.docker.stats(
                id,
                Some(bollard::query_parameters::StatsOptions {
                    stream: false,
                    one_shot: true,
                }),
            );
            let Some(Ok(s)) = stats.next().await else {
                continue;
            };
            let cpu_ns = s
                .cpu_stats
                .as_ref()
                .and_then(|c| c.cpu_usage.as_ref())
                .and_then(|u| u.total_usage);
            if let Some(ns) = cpu_ns {
                out.push((
                    instance,
                    Usage {
                        cpu_usec: ns / 1000,
                        memory_bytes: s.memory_stats.as_ref().and_then(|m| m.usage),
                    },
                ));
            }
        }
        Ok(out)
    }

    async fn volume(&self, name: &str) -> Result<Option<VolumeInfo>, ProviderError> {
        volumes::info(&self.inner.docker, &self.inner.store, name).await
    }

    async fn remove_volume(&self, name: &str) -> Result<(), ProviderError> {
        volumes::remove(&self.inner.docker, &self.inner.store, name).await
    }

    /// Removes Glint's network once nothing of this environment runs on it.
    async fn release(&self) -> Result<(), ProviderError> {
        if self.list().await?.is_empty() {
            self.purge().await
        } else {
            Ok(())
        }
    }
}
