//! What runs Glint's instances.
//!
//! A [`Provider`] knows three verbs: *launch* an instance, *terminate* one, and
//! *observe* all of Glint's instances it can see. There is deliberately no verb
//! that changes a running instance (architecture invariant 1). Everything a
//! provider creates carries [`Labels`]; after a conductor restart a provider
//! finds its instances again by those labels, and [`Provider::observe`] reports
//! them so that the conductor can adopt what the store knows and remove orphans.
//!
//! Providers push what they notice (an exit, a drift) as [`ProviderEvent`]s, so
//! the conductor reacts at once; the conductor also resyncs on a timer, so a
//! lost event only delays a correction, never prevents it.
//!
//! Layout:
//! - this file: the trait and the types that cross it;
//! - `process`: local child processes (the embedded default);
//! - `sim`: an in-memory provider whose instances are tiny in-process HTTP
//!   servers, which can be told to delay, fail and die (conductor tests and
//!   scale benchmarks).

pub mod process;
pub mod sim;

pub use process::{Isolation, LogPaths, ProcessProvider, log_paths};
pub use sim::SimProvider;

use async_trait::async_trait;
use glint_model::{Digest, InstanceId, Labels, Name, ProviderKind, Resources};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};
use tokio::sync::broadcast;

/// Everything a provider needs to launch one instance. The conductor resolves
/// every choice before handing it over; the provider decides nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchSpec {
    /// Ownership labels; `labels.instance` is the new instance's id.
    pub labels: Labels,
    /// The image to run.
    pub image: LaunchImage,
    /// The full argv: the image's entrypoint followed by the service's args.
    pub argv: Vec<String>,
    /// Environment variables: the image's, then the service's, then Glint's own
    /// (`GLINT_INSTANCE_ID`, `GLINT_SERVICE`, `GLINT_VERSION`,
    /// `GLINT_ENVIRONMENT`). The provider adds `PORT`.
    pub env: BTreeMap<String, String>,
    /// Working directory inside the image.
    pub workdir: String,
    /// The port the program listens on inside its instance. The process
    /// provider uses it for an instance with its own network; otherwise it
    /// allocates a free host port. Either way it is passed in `PORT`.
    pub port: u16,
    /// Whether the instance gets its own network namespace and address
    /// (process instances of environments that declare rules; see
    /// `process::net`). Docker instances have their network either way.
    pub own_network: bool,
    /// Resource limits.
    pub resources: Resources,
    /// Volumes to mount, resolved by the conductor (a per-instance volume
    /// already carries the instance's slot in its name). A provider that
    /// cannot mount one fails the launch: an instance never runs without
    /// the data it declared.
    pub mounts: Vec<VolumeMount>,
    /// Secrets delivered as files under `/run/secrets` (mode 0400, on a
    /// tmpfs, never in the environment). Their values live only as long as
    /// the spec: `LaunchSpec` is never serialised, and a value's `Debug`
    /// shows its length only.
    pub secrets: Vec<SecretFile>,
    /// What Glint gives the instance under `/run/glint`: its identity, the
    /// variables it reads and the way to the instance API (see
    /// [`process::glint_dir`]). `None`: nothing (a conductor without an
    /// instance API, the simulated provider's tests).
    pub glint: Option<GlintFiles>,
}

/// The files an instance gets under `/run/glint`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlintFiles {
    /// Its signed identity token (`/run/glint/identity`), renewed by the
    /// conductor; never in the environment.
    pub identity: SecretValue,
    /// The variables it reads, by name, with their values at launch
    /// (`/run/glint/vars/NAME`).
    pub variables: Vec<(String, String)>,
    /// The conductor's instance API socket on the host; its directory is
    /// bound at `/run/glint-api` and `/run/glint/glint.sock` points to it.
    pub api_socket: Option<PathBuf>,
}

/// A secret an instance gets as the file `/run/secrets/NAME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretFile {
    /// Its name, a relative path (`db/password`; checked by
    /// `glint_model::secret::check_secret_name`).
    pub name: String,
    /// Its version (for people; the value is what is written).
    pub version: u64,
    /// Its value.
    pub value: SecretValue,
}

/// A secret's value: zeroed when dropped, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(zeroize::Zeroizing<Vec<u8>>);

impl SecretValue {
    /// Wraps a value.
    pub fn new(value: zeroize::Zeroizing<Vec<u8>>) -> SecretValue {
        SecretValue(value)
    }

    /// Takes `value` (zeroed when dropped from now on).
    pub fn from_vec(value: Vec<u8>) -> SecretValue {
        SecretValue(zeroize::Zeroizing::new(value))
    }

    /// The bytes.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<secret, {} bytes>", self.0.len())
    }
}

/// One volume an instance mounts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeMount {
    /// The concrete volume: the declared name, or `NAME-SLOT` for a
    /// per-instance volume.
    pub volume: String,
    /// The declaration it comes from.
    pub declared: Name,
    /// Where it appears inside the instance (absolute).
    pub path: String,
    /// Mounted read-only.
    pub read_only: bool,
    /// One writer at a time: while another instance holds the volume, the
    /// provider refuses to start this one (the process provider holds a
    /// `flock` for the instance's whole life; Docker checks the engine's
    /// running containers).
    pub exclusive: bool,
}

/// A volume as its provider sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeInfo {
    /// The concrete volume name (`pgdata`, `pgdata-0`).
    pub name: String,
    /// Where its data is on the host (a directory), or the engine's name
    /// for it, for people and for measuring usage.
    pub location: String,
    /// The host directory holding the data, when the provider knows it.
    pub host_path: Option<PathBuf>,
    /// Bytes used, if measured.
    pub used_bytes: Option<u64>,
}

/// Cumulative resource use of one running instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// CPU time used since the instance started, in microseconds.
    pub cpu_usec: u64,
    /// Memory in use now, in bytes.
    pub memory_bytes: Option<u64>,
}

/// The image an instance runs, as a provider consumes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchImage {
    /// The image digest (verified by the caller before launch).
    pub digest: Digest,
    /// The unpacked root filesystem, shared read-only by all instances of this
    /// digest. The process provider resolves absolute entrypoint paths in it.
    pub rootfs: PathBuf,
    /// The image as an archive that `docker load` accepts (OCI layout plus the
    /// legacy `manifest.json`), for providers that load images into an engine.
    /// `None` when the image store has not exported one.
    pub archive: Option<PathBuf>,
}

/// Whether an instance's program is still running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum RunState {
    /// The program is running.
    Running,
    /// The program has ended.
    Exited {
        /// Exit code, if it exited normally.
        code: Option<i32>,
        /// The signal that ended it, if any.
        signal: Option<i32>,
        /// The kernel killed it because its instance reached its memory
        /// limit (the cgroup's OOM kill counter moved; Docker's
        /// `State.OOMKilled`).
        #[serde(default)]
        oom: bool,
    },
}

impl std::fmt::Display for RunState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunState::Running => f.write_str("running"),
            RunState::Exited { oom: true, .. } => {
                f.write_str("out of memory (killed by the kernel at its memory limit)")
            }
            RunState::Exited {
                signal: Some(sig), ..
            } => write!(f, "killed by signal {sig}"),
            RunState::Exited { code: Some(c), .. } => write!(f, "exited with code {c}"),
            RunState::Exited { .. } => f.write_str("exited"),
        }
    }
}

/// One instance as a provider sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// Its labels.
    pub labels: Labels,
    /// Running or exited.
    pub state: RunState,
    /// Where its port can be reached from the conductor and the endpoint proxy.
    pub addr: Option<SocketAddr>,
    /// When it was launched.
    pub started_at: SystemTime,
    /// The provider's own handle, for people: a pid, a container id.
    pub handle: String,
}

/// Something a provider noticed and pushes to the conductor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderEvent {
    /// An instance's program ended (noticed at once: pidfd, Docker event).
    Exited {
        /// The instance.
        instance: InstanceId,
        /// How it ended.
        state: RunState,
    },
    /// An instance no longer matches what was launched (someone changed it).
    Drift {
        /// The instance.
        instance: InstanceId,
        /// Which kind of drift, so that the conductor can apply per-service
        /// choices (`on_exec = replace | report`).
        kind: DriftKind,
        /// What was found, for the incident: a human sentence such as
        /// "docker exec ran `sh` as root".
        what: String,
    },
    /// The provider found and corrected something that is not an instance
    /// (a foreign container on Glint's network, Glint's network deleted or
    /// altered). The conductor records it as an incident.
    Incident {
        /// What it concerns, for grouping repeats into one incident
        /// (`network glint-test`, `container f00ba4`).
        subject: String,
        /// What was found.
        what: String,
        /// What the provider did about it.
        action: String,
    },
    /// Something that needs a full resync (a reconnect, a lagging stream).
    Resync,
}

/// Which kind of drift an instance shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftKind {
    /// Someone ran a command inside the instance (`docker exec`).
    Exec,
    /// The instance was paused (frozen) by someone else.
    Paused,
    /// Its resource limits were changed (`docker update`).
    Limits,
    /// Its filesystem shows changes outside volumes and tmpfs.
    Filesystem,
    /// It was disconnected from Glint's network or connected to another one.
    Network,
    /// Any other difference from what was launched.
    Other,
}

impl std::fmt::Display for DriftKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DriftKind::Exec => "exec",
            DriftKind::Paused => "paused",
            DriftKind::Limits => "limits",
            DriftKind::Filesystem => "filesystem",
            DriftKind::Network => "network",
            DriftKind::Other => "other",
        })
    }
}

/// A provider failure.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The program or image could not be started.
    #[error("cannot launch {instance}: {reason}")]
    Launch {
        /// The instance.
        instance: InstanceId,
        /// Why.
        reason: String,
        /// Underlying error.
        #[source]
        source: Option<std::io::Error>,
    },
    /// An instance could not be stopped.
    #[error("cannot terminate {instance}: {reason}")]
    Terminate {
        /// The instance.
        instance: InstanceId,
        /// Why.
        reason: String,
    },
    /// The provider's own state could not be read or written.
    #[error("{what}: {path}")]
    Io {
        /// What was being done.
        what: String,
        /// The file involved.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The provider's backend (e.g. the Docker Engine) is unreachable or failed.
    #[error("{0}")]
    Backend(String),
}

/// What runs instances. See the crate documentation.
#[async_trait]
pub trait Provider: Send + Sync + 'static {
    /// Which kind of provider this is.
    fn kind(&self) -> ProviderKind;

    /// Starts one instance and returns as soon as it runs (not when it is
    /// healthy: health is the conductor's business). On error nothing is left
    /// behind.
    async fn launch(&self, spec: LaunchSpec) -> Result<Observed, ProviderError>;

    /// Stops an instance: a polite stop (SIGTERM), then after `grace` a forced
    /// one (SIGKILL); returns once it has ended. Idempotent: terminating an
    /// instance that has already ended, or is unknown, succeeds.
    async fn terminate(&self, instance: &InstanceId, grace: Duration) -> Result<(), ProviderError>;

    /// Every instance carrying this store's labels that the provider can see,
    /// running or ended but not yet [`removed`](Provider::remove). Instances
    /// found for the first time (after a restart) are watched from now on.
    async fn observe(&self) -> Result<Vec<Observed>, ProviderError>;

    /// Forgets an ended instance's run-time state (its record, its container).
    /// Logs are kept. Idempotent.
    async fn remove(&self, instance: &InstanceId) -> Result<(), ProviderError>;

    /// A stream of what the provider notices.
    fn subscribe(&self) -> broadcast::Receiver<ProviderEvent>;

    /// Cumulative resource use of this provider's running instances, where
    /// it can be measured (cgroups, the engine's statistics). Default: none.
    async fn usage(&self) -> Result<Vec<(InstanceId, Usage)>, ProviderError> {
        Ok(Vec::new())
    }

    /// What the provider knows of volume `name` (this store's, labelled),
    /// `None` if it has none by that name. Default: none.
    async fn volume(&self, _name: &str) -> Result<Option<VolumeInfo>, ProviderError> {
        Ok(None)
    }

    /// Deletes volume `name` and its data. Never called by the conductor
    /// on its own: only `glint volume rm`, once no version in use declares
    /// it. Idempotent. Default: nothing to delete.
    async fn remove_volume(&self, _name: &str) -> Result<(), ProviderError> {
        Ok(())
    }

    /// Called when the conductor has stopped every instance and is exiting
    /// (`glint up` on Ctrl-C): releases what the provider shares between
    /// instances (a Docker network). Instances and volumes are never
    /// touched here.
    /// Default: nothing to release.
    async fn release(&self) -> Result<(), ProviderError> {
        Ok(())
    }
}

/// Bytes allocated to the files under `dir` (what `du -s` counts), without
/// following symbolic links or leaving `dir`'s filesystem. Blocking.
pub fn disk_usage(dir: &std::path::Path) -> std::io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let top = std::fs::symlink_metadata(dir)?;
    let dev = top.dev();
    let mut total = top.blocks() * 512;
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(m) = e.path().symlink_metadata() else {
                continue;
            };
            if m.dev() != dev {
                continue;
            }
            total += m.blocks() * 512;
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    Ok(total)
}
