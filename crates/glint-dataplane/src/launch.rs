//! Starting, finding and adopting the data plane process, as the conductor
//! does with an instance: it is labelled (the store id in its environment),
//! found again through the control socket of the data directory, adopted
//! when it is of this build and protocol, and replaced otherwise.
//!
//! [`Launcher::ensure`]:
//!
//! - a data plane answers on the socket, of this protocol and build:
//!   **adopted** as it is (its endpoints never stopped);
//! - one answers, of another protocol or build: a data plane of this build
//!   is started and **replaces** it through the handoff (see `process`);
//! - nothing answers: labelled data plane processes of this store that do
//!   not answer (their socket file was removed) are stopped, as orphans are,
//!   and a new one is **started**.
//!
//! The process is started detached — in its own session, stdin from
//! `/dev/null`, output appended to `dataplane.log` in the data directory —
//! so that neither a terminal's Ctrl-C nor the end of the conductor reaches
//! it.

use crate::identity::Identity;
use crate::link::Link;
use crate::plane::DataPlaneError;
use crate::process::{LABEL, LOG, nothing_there, socket_path};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::time::Instant;

/// How long a started data plane may take to answer.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// What [`Launcher::ensure`] found or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Launched {
    /// A data plane of this build was running and is used as it is.
    Adopted(Identity),
    /// None was running; this one was started.
    Started(Identity),
    /// One of another protocol or build was running; `new` took its
    /// endpoints over and `old` is leaving.
    Replaced {
        /// The one that was running.
        old: Identity,
        /// The one of this build.
        new: Identity,
    },
}

impl Launched {
    /// The data plane in use now.
    pub fn identity(&self) -> &Identity {
        match self {
            Launched::Adopted(i) | Launched::Started(i) => i,
            Launched::Replaced { new, .. } => new,
        }
    }
}

/// Why the data plane process could not be started or found.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// The program could not be started.
    #[error("cannot start the data plane ({program})")]
    Spawn {
        /// The program.
        program: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Its log file could not be opened.
    #[error("cannot open the data plane's log {path}")]
    Log {
        /// The log.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// It exited before answering.
    #[error("the data plane exited before answering ({status}); the end of {log}:\n{tail}")]
    Exited {
        /// How it ended.
        status: std::process::ExitStatus,
        /// Its log.
        log: PathBuf,
        /// The last lines of its log.
        tail: String,
    },
    /// It did not answer in time.
    #[error("the data plane (pid {pid}) did not answer within {waited:?}; see {log}")]
    NoAnswer {
        /// Its pid.
        pid: u32,
        /// How long we waited.
        waited: Duration,
        /// Its log.
        log: PathBuf,
    },
    /// The data plane on the socket belongs to another store.
    #[error("the data plane on {socket} serves store {theirs}, not {ours}")]
    ForeignStore {
        /// The socket.
        socket: PathBuf,
        /// Its store.
        theirs: String,
        /// Ours.
        ours: String,
    },
    /// Something holds the socket but does not answer.
    #[error("cannot reach the data plane")]
    Unanswered(#[source] DataPlaneError),
}

/// How to start the data plane process of a data directory.
#[derive(Debug, Clone)]
pub struct Launcher {
    /// The data directory (control socket, log).
    pub data_dir: PathBuf,
    /// The store id it serves (its label).
    pub store: String,
    /// The program (the `glint` binary of this build).
    pub program: PathBuf,
    /// Its arguments (`--data-dir DIR dataplane --store ID`).
    pub args: Vec<OsString>,
}

impl Launcher {
    /// The control socket.
    pub fn socket(&self) -> PathBuf {
        socket_path(&self.data_dir)
    }

    /// Finds, adopts, replaces or starts the data plane (see the module doc).
    pub async fn ensure(&self) -> Result<Launched, LaunchError> {
        let socket = self.socket();
        match Link::connect(&socket).await {
            Ok(link) => {
                let found = link.identity.clone();
                drop(link);
                if found.store != self.store {
                    return Err(LaunchError::ForeignStore {
                        socket,
                        theirs: found.store,
                        ours: self.store.clone(),
                    });
                }
                if found.adoptable() {
                    return Ok(Launched::Adopted(found));
                }
                tracing::info!(
                    pid = found.pid,
                    protocol = found.protocol,
                    build = %found.short_build(),
                    "the running data plane is of another build or protocol: replacing it"
                );
                let new = self.start().await?;
                Ok(Launched::Replaced { old: found, new })
            }
            Err(e) if nothing_there(&e) => {
                stop_orphans(&self.store).await;
                Ok(Launched::Started(self.start().await?))
            }
            Err(e) => Err(LaunchError::Unanswered(e)),
        }
    }

    /// Starts a data plane process and waits until it answers on the socket
    /// (having taken over from the one there, if any).
    async fn start(&self) -> Result<Identity, LaunchError> {
        let log_path = self.data_dir.join(LOG);
        let log_err = |source| LaunchError::Log {
            path: log_path.clone(),
            source,
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(log_err)?;
        let mut cmd = tokio::process::Command::new(&self.program);
        cmd.args(&self.args)
            .env(LABEL, &self.store)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(log_err)?)
            .stderr(log)
            .kill_on_drop(false);
        // SAFETY: the closure runs between fork and exec and only makes one
        // raw system call (setsid), which is async-signal-safe and allocates
        // nothing.
        unsafe {
            cmd.pre_exec(|| {
                rustix::process::setsid()
                    .map(drop)
                    .map_err(std::io::Error::from)
            });
        }
        let mut child = cmd.spawn().map_err(|source| LaunchError::Spawn {
            program: self.program.clone(),
            source,
        })?;
        let pid = child.id().unwrap_or(0);
        tracing::info!(pid, "data plane process started");
        let socket = self.socket();
        let deadline = Instant::now() + START_TIMEOUT;
        let identity = loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(LaunchError::Exited {
                    status,
                    tail: tail(&log_path, 15),
                    log: log_path,
                });
            }
            if let Ok(link) = Link::connect(&socket).await
                && link.identity.pid == pid
            {
                break link.identity.clone();
            }
            if Instant::now() > deadline {
                return Err(LaunchError::NoAnswer {
                    pid,
                    waited: START_TIMEOUT,
                    log: log_path,
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        // Reaped if it ends while this process lives; otherwise it is
        // re-parented when this process ends, and keeps running.
        tokio::spawn(async move {
            let _ = child.wait().await;
        });
        Ok(identity)
    }
}

/// The last `n` lines of a file.
fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The processes labelled as data planes of `store` (not zombies, not this
/// process).
pub fn labelled_processes(store: &str) -> Vec<u32> {
    let needle = format!("{LABEL}={store}");
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let zombie = std::fs::read_to_string(e.path().join("stat"))
            .ok()
            .and_then(|s| {
                s.rsplit_once(')')
                    .map(|(_, rest)| rest.trim_start().starts_with('Z'))
            })
            .unwrap_or(true);
        if zombie {
            continue;
        }
        if let Ok(env) = std::fs::read(e.path().join("environ"))
            && env.split(|b| *b == 0).any(|kv| kv == needle.as_bytes())
        {
            out.push(pid);
        }
    }
    out
}

/// Stops data plane processes of `store` that do not answer on the socket
/// (SIGTERM, then SIGKILL after 5 s): they would hold the endpoints' ports
/// and could never be programmed.
async fn stop_orphans(store: &str) {
    use rustix::process::{Pid, Signal, kill_process};
    let orphans = labelled_processes(store);
    if orphans.is_empty() {
        return;
    }
    for &pid in &orphans {
        tracing::warn!(
            pid,
            "stopping a data plane that does not answer on its socket"
        );
        if let Some(p) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
            let _ = kill_process(p, Signal::TERM);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if labelled_processes(store).is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for pid in labelled_processes(store) {
        if let Some(p) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
            let _ = kill_process(p, Signal::KILL);
        }
    }
}
