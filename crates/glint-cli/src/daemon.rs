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
    /// Where the API listens on TCP, if it does, and whether over TLS.
    pub listening: Option<(std::net::SocketAddr, bool)>,
    /// Stops the API server.
    api_stop: watch::Sender<bool>,
    api_tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Stops the conductor (see [`ConductorHandle::shutdown`]) and the API.
    pub async fn stop(self, stop_instances: bool) {
        self.handle.shutdown(stop_instances).await;
        let _ = self.api_stop.send(true);
        for t in self.api_tasks {
            let _ = t.await;
        }
    }
}

/// The image listing for `GET /v1/images`: the same rows as `glint images
/// -o json`.
struct Catalog {
    data_dir: std::path::PathBuf,
    images: glint_image::ImageStore,
}

impl glint_conductor::http::ImageCatalog for Catalog {
    fn list(&self) -> Result<serde_json::Value, String> {
        crate::commands::images::rows(&self.data_dir, &self.images)
            .map(serde_json::Value::Array)
            .map_err(|e| glint_conductor::error_chain(&e))
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

/// Connects the providers that are not started up front (Docker, AWS),
/// when a version first needs them or instances of theirs are to be adopted.
struct Factory {
    store_id: String,
    state_dir: std::path::PathBuf,
    store: Arc<dyn Store>,
}

/// The environment the aws provider's security groups follow: the newest
/// version's.
struct StoreTarget(Arc<dyn Store>);

impl glint_aws::Target for StoreTarget {
    fn environment(&self) -> Option<glint_model::Environment> {
        match self.0.latest_version() {
            Ok(v) => v.map(|v| v.env),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the newest version for the aws provider");
                None
            }
        }
    }
}

impl glint_conductor::ProviderFactory for Factory {
    fn connect(
        &self,
        kind: ProviderKind,
        environment: glint_model::Name,
    ) -> glint_conductor::Connecting {
        let store_id = self.store_id.clone();
        let state_dir = self.state_dir.clone();
        let store = self.store.clone();
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
                ProviderKind::Aws => {
                    let options = glint_aws::AwsOptions::from_env()
                        .map_err(|e| glint_conductor::error_chain(&e))?;
                    let target = Arc::new(StoreTarget(store));
                    glint_aws::AwsProvider::connect(&store_id, &environment, options, target)
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
    listen: &crate::cli::ListenArgs,
) -> Result<Running, Failed> {
    let tls = match (&listen.tls_cert, &listen.tls_key) {
        (Some(cert), Some(key)) => Some(
            glint_conductor::http::tls::acceptor(cert, key)
                .map_err(|e| fail(EXIT_USAGE, glint_conductor::error_chain(&e)))?,
        ),
        _ => None,
    };
    let listen = listen.listen;
    if let Some(addr) = listen
        && !addr.ip().is_loopback()
        && tls.is_none()
    {
        return Err(fail(
            EXIT_USAGE,
            format_args!(
                "--listen {addr} is not a loopback address: tokens would cross the network in clear. Give --tls-cert and --tls-key, or listen on 127.0.0.1"
            ),
        ));
    }
    // Bind first, so that a taken port changes nothing.
    let tcp = match listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| fail_io(format_args!("cannot listen on {addr}"), &e))?,
        ),
        None => None,
    };
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
    let catalog = Arc::new(Catalog {
        data_dir: dir.clone(),
        images: crate::commands::images::open_store(global)?,
    });
    let factory = Arc::new(Factory {
        store_id,
        state_dir: dir.join("docker"),
        store: store.clone(),
    });
    // The instance API (variables, identities): its own socket, bound
    // into instances; tokens signed with the data directory's key.
    let instance_socket = glint_conductor::instance_api::socket_path(&dir);
    let ttl = match std::env::var("GLINT_IDENTITY_TTL") {
        Err(_) => glint_conductor::identity::DEFAULT_TTL,
        Ok(text) => match humantime::parse_duration(&text) {
            Ok(d) if d >= std::time::Duration::from_secs(2) => d,
            _ => {
                return Err(fail(
                    EXIT_USAGE,
                    format_args!(
                        "GLINT_IDENTITY_TTL={text} is not a duration of at least 2s: write it as `10m`, `90s` (the default is 10m)"
                    ),
                ));
            }
        },
    };
    let issuer = glint_conductor::identity::Issuer::load(&dir, ttl, Some(instance_socket.clone()))
        .map_err(|e| fail_io("cannot load the instance identity key", &e))?;
    let instance_api = glint_conductor::instance_api::bind(&dir).map_err(|e| {
        fail_io(
            format_args!(
                "cannot listen on the instance API socket {}",
                instance_socket.display()
            ),
            &e,
        )
    })?;
    let mut setup = Setup::new(store.clone(), lease, images.clone(), plane);
    setup.instance_api = Some(instance_api);
    setup.providers = providers;
    setup.factory = Some(factory);
    setup.config = Config {
        mode,
        api: Some(socket.display().to_string()),
        secrets_dir: Some(dir.clone()),
        identity: Some(Arc::new(issuer)),
        ..Config::default()
    };
    let handle = glint_conductor::start(setup)
        .await
        .map_err(|e| fail_io("cannot start the conductor", &e))?;
    let (app, _, _) = glint_conductor::http::app(glint_conductor::http::ApiSetup {
        client: handle.client(),
        store,
        images,
        catalog: Some(catalog),
        data_dir: dir.clone(),
        clock: Arc::new(glint_store::SystemClock),
    });
    let (api_stop, stop_rx) = watch::channel(false);
    let mut api_tasks = vec![
        glint_conductor::http::serve_unix(socket, app.clone(), stop_rx.clone())
            .await
            .map_err(|e| fail_io("cannot start the conductor API", &e))?,
    ];
    let listening = tcp
        .as_ref()
        .and_then(|l| l.local_addr().ok())
        .map(|a| (a, tls.is_some()));
    if let Some(l) = tcp {
        api_tasks.push(glint_conductor::http::serve_tcp(l, app, tls, stop_rx));
    }
    Ok(Running {
        handle,
        data_plane,
        listening,
        api_stop,
        api_tasks,
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
