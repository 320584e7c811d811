//! [`RemoteDataPlane`]: the [`DataPlane`] of the `glint dataplane` process,
//! reached through the control socket of the data directory.
//!
//! Every operation is idempotent (whole states, generations, idempotent
//! drains), so a call that finds the connection gone connects again and is
//! sent once more. With a [`Launcher`], a data plane that is not there at
//! all — it crashed, or was killed — is started again (at most once every
//! few seconds), and the next reconcile programs it from scratch.

use crate::identity::{Identity, PROTOCOL};
use crate::launch::{Launched, Launcher};
use crate::link::Link;
use crate::plane::{
    DataPlane, DataPlaneError, DataPlaneState, DrainReport, EndpointSpec, EndpointsApplied,
};
use crate::process::{nothing_there, socket_path};
use crate::protocol::{ErrorKind, Request, Response};
use async_trait::async_trait;
use glint_model::{InstanceId, Name};
use glint_proxy::Backend;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// Bound on the quick operations (everything but drain and shutdown).
const CALL_TIMEOUT: Duration = Duration::from_secs(15);
/// Extra time given to drain and shutdown beyond their own timeout.
const SLACK: Duration = Duration::from_secs(10);
/// Restarts of a vanished data plane are at least this far apart.
const RESTART_EVERY: Duration = Duration::from_secs(2);

/// A client of the data plane process.
pub struct RemoteDataPlane {
    socket: PathBuf,
    link: Mutex<Option<Arc<Link>>>,
    launcher: Option<Launcher>,
    last_start: Mutex<Option<Instant>>,
    /// Set by [`DataPlane::shutdown`]: never start it again.
    shut_down: AtomicBool,
}

impl std::fmt::Debug for RemoteDataPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteDataPlane")
            .field("socket", &self.socket)
            .finish_non_exhaustive()
    }
}

impl RemoteDataPlane {
    /// A client of the data plane of `data_dir` that never starts one (for
    /// reading: `glint status`).
    pub fn of(data_dir: &Path) -> RemoteDataPlane {
        RemoteDataPlane {
            socket: socket_path(data_dir),
            link: Mutex::new(None),
            launcher: None,
            last_start: Mutex::new(None),
            shut_down: AtomicBool::new(false),
        }
    }

    /// Finds, adopts, replaces or starts the data plane of the launcher's
    /// data directory (see [`Launcher::ensure`]) and returns a client that
    /// starts it again should it vanish.
    pub async fn launch(
        launcher: Launcher,
    ) -> Result<(RemoteDataPlane, Launched), crate::LaunchError> {
        let launched = launcher.ensure().await?;
        let plane = RemoteDataPlane {
            socket: launcher.socket(),
            link: Mutex::new(None),
            launcher: Some(launcher),
            last_start: Mutex::new(Some(Instant::now())),
            shut_down: AtomicBool::new(false),
        };
        Ok((plane, launched))
    }

    /// Who answers on the socket (any protocol), without programming it.
    pub async fn hello(data_dir: &Path) -> Result<Identity, DataPlaneError> {
        Link::connect(&socket_path(data_dir))
            .await
            .map(|l| l.identity.clone())
    }

    /// The identity of the data plane this client talks to now.
    pub async fn identity(&self) -> Result<Identity, DataPlaneError> {
        Ok(self.link().await?.identity.clone())
    }

    /// A live connection to a data plane of our protocol.
    async fn link(&self) -> Result<Arc<Link>, DataPlaneError> {
        let mut slot = self.link.lock().await;
        if let Some(link) = slot.as_ref()
            && !link.is_closed()
        {
            return Ok(Arc::clone(link));
        }
        *slot = None;
        let link = match Link::connect(&self.socket).await {
            Ok(link) => link,
            Err(e) if nothing_there(&e) && self.may_restart().await => {
                if let Some(launcher) = &self.launcher {
                    match launcher.ensure().await {
                        Ok(launched) => {
                            tracing::warn!(
                                pid = launched.identity().pid,
                                "the data plane was gone: started a new one"
                            );
                        }
                        Err(err) => {
                            tracing::warn!(error = %crate::error_chain(&err), "cannot start the data plane");
                        }
                    }
                }
                Link::connect(&self.socket).await?
            }
            Err(e) => return Err(e),
        };
        if link.identity.protocol != PROTOCOL {
            return Err(DataPlaneError::Incompatible {
                pid: link.identity.pid,
                theirs: link.identity.protocol,
                ours: PROTOCOL,
            });
        }
        let link = Arc::new(link);
        *slot = Some(Arc::clone(&link));
        Ok(link)
    }

    async fn may_restart(&self) -> bool {
        if self.launcher.is_none() || self.shut_down.load(Ordering::SeqCst) {
            return false;
        }
        let mut last = self.last_start.lock().await;
        let now = Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < RESTART_EVERY) {
            return false;
        }
        *last = Some(now);
        true
    }

    /// Sends `request`, connecting (once more) if the connection is gone.
    /// An error the data plane answers is returned as `Ok(Response::Error)`.
    async fn call(
        &self,
        request: Request,
        timeout: Duration,
        operation: &'static str,
    ) -> Result<Response, DataPlaneError> {
        let mut tried_again = false;
        loop {
            let link = self.link().await?;
            match link.call(request.clone(), timeout, operation).await {
                Ok((response, _)) => return Ok(response),
                Err(DataPlaneError::Lost { .. }) if !tried_again => {
                    tried_again = true;
                    continue;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// The error for an answer that is not the one expected.
fn unexpected(operation: &str, response: Response, endpoint: Option<&Name>) -> DataPlaneError {
    match response {
        Response::Error { kind, message } => match kind {
            ErrorKind::HandingOff => DataPlaneError::HandingOff,
            ErrorKind::ShuttingDown => DataPlaneError::ShuttingDown,
            ErrorKind::UnknownEndpoint => match endpoint {
                Some(name) => DataPlaneError::UnknownEndpoint(name.clone()),
                None => DataPlaneError::Remote(message),
            },
            ErrorKind::Incompatible | ErrorKind::BadRequest | ErrorKind::Failed => {
                DataPlaneError::Remote(message)
            }
        },
        other => DataPlaneError::Protocol(format!("unexpected answer to {operation}: {other:?}")),
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[async_trait]
impl DataPlane for RemoteDataPlane {
    async fn set_endpoints(
        &self,
        generation: u64,
        endpoints: Vec<EndpointSpec>,
    ) -> Result<EndpointsApplied, DataPlaneError> {
        let request = Request::SetEndpoints {
            generation,
            endpoints,
        };
        match self.call(request, CALL_TIMEOUT, "set_endpoints").await? {
            Response::Endpoints(applied) => Ok(applied),
            other => Err(unexpected("set_endpoints", other, None)),
        }
    }

    async fn set_backends(
        &self,
        endpoint: &Name,
        generation: u64,
        backends: Vec<Backend>,
    ) -> Result<bool, DataPlaneError> {
        let request = Request::SetBackends {
            endpoint: endpoint.clone(),
            generation,
            backends,
        };
        match self.call(request, CALL_TIMEOUT, "set_backends").await? {
            Response::Backends { applied } => Ok(applied),
            other => Err(unexpected("set_backends", other, Some(endpoint))),
        }
    }

    async fn drain(
        &self,
        instance: &InstanceId,
        timeout: Duration,
    ) -> Result<DrainReport, DataPlaneError> {
        let request = Request::Drain {
            instance: instance.clone(),
            timeout_ms: millis(timeout),
        };
        match self.call(request, timeout + SLACK, "drain").await? {
            Response::Drained(report) => Ok(report),
            other => Err(unexpected("drain", other, None)),
        }
    }

    async fn state(&self) -> Result<DataPlaneState, DataPlaneError> {
        match self.call(Request::State, CALL_TIMEOUT, "state").await? {
            Response::State(state) => Ok(state),
            other => Err(unexpected("state", other, None)),
        }
    }

    async fn shutdown(&self, timeout: Duration) -> Result<(), DataPlaneError> {
        self.shut_down.store(true, Ordering::SeqCst);
        let link = match self.link().await {
            Ok(link) => link,
            // Nothing there: nothing to shut down.
            Err(e) if nothing_there(&e) => return Ok(()),
            Err(e) => return Err(e),
        };
        let request = Request::Shutdown {
            timeout_ms: millis(timeout),
        };
        match link.call(request, CALL_TIMEOUT, "shutdown").await? {
            (Response::ShuttingDown, _) => {}
            (other, _) => return Err(unexpected("shutdown", other, None)),
        }
        // The connection ends when the process does.
        let waited = timeout + SLACK;
        if !link.wait_closed(waited).await {
            return Err(DataPlaneError::Timeout {
                operation: "shutdown",
                waited,
            });
        }
        // (A data plane in this very process — tests — is not waited for.)
        if link.identity.pid != std::process::id() {
            wait_gone(link.identity.pid, Duration::from_secs(5)).await;
        }
        Ok(())
    }
}

/// Waits until process `pid` is gone (or a zombie), up to `timeout`.
async fn wait_gone(pid: u32, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let alive = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                s.rsplit_once(')')
                    .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
            })
            .unwrap_or(false);
        if !alive {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
