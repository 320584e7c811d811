//! The `glint dataplane` process: a [`LocalDataPlane`] behind the control
//! socket of a data directory, for as long as it is wanted — whether or not
//! a conductor runs.
//!
//! Starting, it takes over from the data plane already serving the data
//! directory, if one answers (a handoff: an upgrade, or a replacement of
//! another build): it asks for the state and the listening sockets, serves
//! the sockets (both processes accept from the same queues for a moment),
//! puts its own control socket in place (`rename`, atomic), and tells the
//! old one, which then leaves: it stops accepting, tells each client
//! connection to reconnect (`Connection: close` on its next response),
//! finishes what is in flight, and exits. No connection is refused and none
//! queued is lost. A lock file serialises starts, so two successors never
//! take over from one data plane.
//!
//! It ends on `shutdown` (from a conductor: `glint up` stopping), on SIGTERM
//! or SIGINT (endpoints shut down gracefully), or after a handoff. It runs
//! in its own session (the launcher's doing), so a terminal's Ctrl-C does
//! not reach it; SIGHUP is ignored.

use crate::handoff::Handoff;
use crate::link::Link;
use crate::local::LocalDataPlane;
use crate::protocol::{Request, Response};
use crate::server::{self, Exit};
use rustix::fs::{FlockOperation, flock};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UnixListener;
use tokio::sync::mpsc;

/// File name of the control socket inside the data directory.
pub const SOCKET: &str = "dataplane.sock";
/// File name of the lock that serialises data plane starts.
pub const START_LOCK: &str = "dataplane.lock";
/// File name of the data plane's log (its stdout and stderr).
pub const LOG: &str = "dataplane.log";
/// The environment variable that labels a data plane process with its store
/// id (`/proc/<pid>/environ` shows it), so that it can be found by label.
pub const LABEL: &str = "GLINT_DATAPLANE_STORE";

/// The control socket of a data directory.
pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SOCKET)
}

/// How the process runs.
#[derive(Debug, Clone)]
pub struct ProcessConfig {
    /// The data directory (holds the control socket, the lock, the log).
    pub data_dir: PathBuf,
    /// The store id it serves.
    pub store: String,
    /// After a handoff: how long client connections are given to make one
    /// more request (answered with `Connection: close`) before the rest of
    /// the shutdown.
    pub linger: Duration,
    /// Bound on finishing what is in flight when the process ends.
    pub drain_timeout: Duration,
}

impl ProcessConfig {
    /// The defaults: 5 s of linger, 30 s to finish in-flight work.
    pub fn new(data_dir: PathBuf, store: String) -> ProcessConfig {
        ProcessConfig {
            data_dir,
            store,
            linger: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(30),
        }
    }
}

/// Why the process could not run.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// A file in the data directory could not be used.
    #[error("cannot use {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Another start held the start lock for too long.
    #[error("another data plane has been starting for over {0:?} ({1}); giving up")]
    StartLockHeld(Duration, PathBuf),
    /// The data plane on the socket belongs to another store.
    #[error(
        "the data plane answering on {socket} serves store {theirs}, not {ours}; refusing to take it over"
    )]
    ForeignStore {
        /// The socket.
        socket: PathBuf,
        /// Its store.
        theirs: String,
        /// Ours.
        ours: String,
    },
    /// Something listens on the control socket but does not answer.
    #[error("{0} is in use but does not answer like a data plane")]
    Unanswered(PathBuf, #[source] crate::DataPlaneError),
    /// The running data plane refused or failed the handoff.
    #[error("the running data plane (pid {pid}) did not hand its endpoints over: {why}")]
    Handoff {
        /// Its pid.
        pid: u32,
        /// What it said.
        why: String,
    },
}

/// Runs the data plane until it is shut down or handed off.
pub async fn run(config: ProcessConfig) -> Result<(), ProcessError> {
    let socket = socket_path(&config.data_dir);
    let lock = take_start_lock(&config.data_dir).await?;

    // Take over from the data plane serving this directory, if any.
    let (plane, predecessor) = match Link::connect(&socket).await {
        Ok(link) => {
            let old = link.identity.clone();
            if old.store != config.store {
                return Err(ProcessError::ForeignStore {
                    socket,
                    theirs: old.store,
                    ours: config.store,
                });
            }
            let refused = |why: String| ProcessError::Handoff { pid: old.pid, why };
            let (handoff, fds): (Handoff, _) = match link
                .call(Request::Handoff, Duration::from_secs(30), "handoff")
                .await
            {
                Ok((Response::Handoff(h), fds)) => (h, fds),
                Ok((Response::Error { message, .. }, _)) => return Err(refused(message)),
                Ok((other, _)) => return Err(refused(format!("unexpected answer {other:?}"))),
                Err(e) => return Err(refused(crate::error_chain(&e))),
            };
            let (plane, problems) = LocalDataPlane::from_handoff(&config.store, handoff, fds);
            for (endpoint, why) in problems {
                tracing::warn!(%endpoint, %why, "endpoint not taken over; it will be bound again");
            }
            tracing::info!(
                pid = old.pid,
                protocol = old.protocol,
                build = %old.short_build(),
                "took the endpoints over from the running data plane"
            );
            (plane, Some(link))
        }
        Err(e) if nothing_there(&e) => {
            tracing::debug!(error = %e, "no data plane running; starting empty");
            (LocalDataPlane::new(&config.store), None)
        }
        // Something holds the socket but does not answer: starting beside
        // it would leave it unreachable with the endpoints' ports.
        Err(e) => return Err(ProcessError::Unanswered(socket, e)),
    };
    let plane = Arc::new(plane);

    // Our control socket, put in place atomically.
    let temporary = config
        .data_dir
        .join(format!("{SOCKET}.{}", std::process::id()));
    let _ = std::fs::remove_file(&temporary);
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| ProcessError::Io { path, source }
    };
    let listener = UnixListener::bind(&temporary).map_err(io(&temporary))?;
    std::fs::rename(&temporary, &socket).map_err(io(&socket))?;
    let ours = std::fs::metadata(&socket).map_err(io(&socket))?.ino();
    let (exit_tx, mut exit_rx) = mpsc::unbounded_channel();
    let serving = tokio::spawn(server::serve(listener, Arc::clone(&plane), exit_tx));
    tracing::info!(
        pid = std::process::id(),
        socket = %socket.display(),
        build = %plane.identity().short_build(),
        "data plane running"
    );

    if let Some(old) = predecessor {
        match old
            .call(
                Request::HandoffDone,
                Duration::from_secs(10),
                "handoff_done",
            )
            .await
        {
            Ok((Response::HandedOff, _)) => {}
            Ok((other, _)) => tracing::warn!(?other, "the old data plane did not acknowledge"),
            Err(e) => tracing::warn!(error = %e, "the old data plane did not acknowledge"),
        }
    }
    drop(lock);

    let exit = wait_for_exit(&mut exit_rx).await;
    serving.abort();
    match exit {
        Exit::HandedOff => {
            plane.leave(config.linger, config.drain_timeout).await;
            tracing::info!("handed off; exiting");
        }
        Exit::Shutdown(timeout) => {
            let _ = crate::DataPlane::shutdown(plane.as_ref(), timeout).await;
            // Remove the socket unless a successor has put its own there.
            if std::fs::metadata(&socket).is_ok_and(|m| m.ino() == ours) {
                let _ = std::fs::remove_file(&socket);
            }
            tracing::info!("shut down; exiting");
        }
    }
    Ok(())
}

/// Whether a failed connection means no data plane runs there.
pub(crate) fn nothing_there(e: &crate::DataPlaneError) -> bool {
    e.no_data_plane()
}

/// Waits for one signal; never, if it could not be registered.
async fn recv(s: &mut Option<tokio::signal::unix::Signal>) {
    match s {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending::<()>().await,
    }
}

/// Waits for a request to end, or SIGTERM / SIGINT (a graceful shutdown).
/// SIGHUP is ignored: the data plane outlives terminals.
async fn wait_for_exit(exit: &mut mpsc::UnboundedReceiver<Exit>) -> Exit {
    use tokio::signal::unix::{SignalKind, signal};
    let default = Exit::Shutdown(Duration::from_secs(30));
    let mut term = signal(SignalKind::terminate()).ok();
    let mut int = signal(SignalKind::interrupt()).ok();
    // Registering a handler replaces SIGHUP's default action (terminate).
    let _hup = signal(SignalKind::hangup()).ok();
    tokio::select! {
        e = exit.recv() => e.unwrap_or(default),
        () = recv(&mut term) => {
            tracing::info!("SIGTERM: shutting down");
            default
        }
        () = recv(&mut int) => {
            tracing::info!("SIGINT: shutting down");
            default
        }
    }
}

/// Takes the start lock, waiting up to a minute for another start.
async fn take_start_lock(data_dir: &Path) -> Result<std::fs::File, ProcessError> {
    const PATIENCE: Duration = Duration::from_secs(60);
    let path = data_dir.join(START_LOCK);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|source| ProcessError::Io {
            path: path.clone(),
            source,
        })?;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if flock(&file, FlockOperation::NonBlockingLockExclusive).is_ok() {
            return Ok(file);
        }
        if tokio::time::Instant::now() > deadline {
            return Err(ProcessError::StartLockHeld(PATIENCE, path));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
