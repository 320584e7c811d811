//! Starting a conductor inside this process (for `glint conductor` and
//! `glint up`): the lock, the providers, the image source, the data plane
//! process (found and adopted, replaced when of another build, or started),
//! the API socket.

use crate::cli::Global;
use crate::common::{Failed, fail, fail_io};
use crate::output::EXIT_USAGE;
use glint_conductor::leadership::{Leadership, LeadershipError, LocalLeadership};
use glint_conductor::{ConductorHandle, Config, Providers, Setup};
use glint_model::ProviderKind;
use glint_provider::Provider;
use glint_store::{ConductorMode, Store};
use std::sync::Arc;
use tokio::sync::watch;

/// A conductor running in this process.
pub struct Running {
    /// The conductor.
    pub handle: ConductorHandle,
    /// The data plane process it programs.
    pub data_plane: glint_dataplane::Identity,
    /// Stops the API server.
    api_stop: watch::Sender<bool>,
    api_task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stops the conductor (see [`ConductorHandle::shutdown`]) and the API.
    pub async fn stop(self, stop_instances: bool) {
        self.handle.shutdown(stop_instances).await;
        let _ = self.api_stop.send(true);
        let _ = self.api_task.await;
    }
}

/// The providers available in this build and on this machine.
pub fn providers(global: &Global, store: &dyn Store) -> Result<Providers, Failed> {
    let dir = crate::common::data_dir(global);
    let store_id = store
        .store_id()
        .map_err(|e| fail_io("cannot read the store id", &e))?;
    let process = glint_provider::process::ProcessProvider::open(&dir.join("process"), &store_id)
        .map_err(|e| fail_io("cannot start the process provider", &e))?;
    let mut map: Providers = Providers::new();
    map.insert(
        ProviderKind::Process,
        Arc::new(process) as Arc<dyn Provider>,
    );
    Ok(map)
}

/// Connects the providers that are not started up front (Docker), when a
/// version first needs them or instances of theirs are to be adopted.
struct Factory {
    store_id: String,
    state_dir: std::path::PathBuf,
}

impl glint_conductor::ProviderFactory for Factory {
    fn connect(
        &self,
        kind: ProviderKind,
        environment: glint_model::Name,
    ) -> glint_conductor::Connecting {
        let store_id = self.store_id.clone();
        let state_dir = self.state_dir.clone();
        Box::pin(async move {
            match kind {
                ProviderKind::Docker => {
                    let options = glint_docker::DockerOptions {
                        state_dir: Some(state_dir),
                        ..glint_docker::DockerOptions::default()
                    };
                    glint_docker::DockerProvider::connect_with(&store_id, &environment, options)
                        .await
                        .map(|p| Arc::new(p) as Arc<dyn Provider>)
                        .map_err(|e| glint_conductor::error_chain(&e))
                }
                other => Err(format!("no {other} provider in this build")),
            }
        })
    }
}

/// Takes leadership of the data directory and starts a conductor and its API.
pub async fn start(
    global: &Global,
    store: Arc<dyn Store>,
    mode: ConductorMode,
) -> Result<Running, Failed> {
    let dir = crate::common::data_dir(global);
    let lease = LocalLeadership::new(dir.clone(), store.clone())
        .acquire()
        .map_err(|e| match e {
            LeadershipError::Held(held) => fail(
                EXIT_USAGE,
                format_args!(
                    "{held}; stop it first, or use `glint apply FILE` to hand it a new version"
                ),
            ),
            other => fail_io("cannot take the leadership of the data directory", &other),
        })?;
    let providers = providers(global, store.as_ref())?;
    let socket = glint_conductor::api::socket_path(&dir);
    let images = Arc::new(crate::commands::images::open_store(global)?);
    let store_id = store
        .store_id()
        .map_err(|e| fail_io("cannot read the store id", &e))?;
    let (plane, data_plane) = data_plane(&dir, &store_id, store.as_ref()).await?;
    let factory = Arc::new(Factory {
        store_id,
        state_dir: dir.join("docker"),
    });
    let mut setup = Setup::new(store.clone(), lease, images, plane);
    setup.providers = providers;
    setup.factory = Some(factory);
    setup.config = Config {
        mode,
        api: Some(socket.display().to_string()),
        ..Config::default()
    };
    let handle = glint_conductor::start(setup)
        .await
        .map_err(|e| fail_io("cannot start the conductor", &e))?;
    let (api_stop, stop_rx) = watch::channel(false);
    let api_task = glint_conductor::api::serve(socket, handle.client(), store, stop_rx)
        .await
        .map_err(|e| fail_io("cannot start the conductor API", &e))?;
    Ok(Running {
        handle,
        data_plane,
        api_stop,
        api_task,
    })
}

/// Finds the data directory's data plane process and adopts it, replaces it
/// (one of another build or protocol hands its sockets to one of this
/// build), or starts one; records which in the event log.
async fn data_plane(
    dir: &std::path::Path,
    store_id: &str,
    store: &dyn Store,
) -> Result<
    (
        Arc<dyn glint_dataplane::DataPlane>,
        glint_dataplane::Identity,
    ),
    Failed,
> {
    use glint_dataplane::{Launched, Launcher, RemoteDataPlane};
    let program = std::env::current_exe()
        .map_err(|e| fail_io("cannot find this program to start the data plane", &e))?;
    let launcher = Launcher {
        data_dir: dir.to_owned(),
        store: store_id.to_owned(),
        program,
        args: vec![
            "--data-dir".into(),
            dir.as_os_str().to_owned(),
            "dataplane".into(),
            "--store".into(),
            store_id.into(),
        ],
    };
    let (plane, launched) = RemoteDataPlane::launch(launcher)
        .await
        .map_err(|e| fail_io("cannot start the data plane", &e))?;
    use glint_conductor::events::{ConductorEvent, DataPlaneLaunch};
    let d = |i: &glint_dataplane::Identity| (i.pid, i.protocol, i.short_build());
    let event = match &launched {
        Launched::Adopted(i) => ConductorEvent::DataPlaneLaunched {
            how: DataPlaneLaunch::Adopted,
            now: d(i),
            old: None,
        },
        Launched::Started(i) => ConductorEvent::DataPlaneLaunched {
            how: DataPlaneLaunch::Started,
            now: d(i),
            old: None,
        },
        Launched::Replaced { old, new } => ConductorEvent::DataPlaneLaunched {
            how: DataPlaneLaunch::Replaced,
            now: d(new),
            old: Some(d(old)),
        },
    };
    if let Err(e) = store.append_event(event.to_event()) {
        tracing::warn!("cannot record the data plane event: {e}");
    }
    Ok((Arc::new(plane), launched.identity().clone()))
}

/// Resolves when the user asks to stop: Ctrl-C, SIGTERM, or SIGHUP (the
/// terminal went away).
pub async fn stop_requested() {
    use tokio::signal::unix::{SignalKind, signal};
    let wait = |kind: SignalKind| async move {
        match signal(kind) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = wait(SignalKind::terminate()) => {}
        _ = wait(SignalKind::hangup()) => {}
    }
}
