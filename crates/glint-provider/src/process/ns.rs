//! Isolated instances: their own mount, PID, UTS and IPC namespaces, with the
//! image as a read-only root, started through Glint's namespace runner
//! (`glint-sandbox`).
//!
//! # Shape of an isolated instance
//!
//! ```text
//! conductor ──clone3(NEWNS|NEWPID|NEWUTS|NEWIPC|PIDFD)──▶ child: mounts, pivot_root
//!                      └─execveat(the conductor's executable)─▶ init (pid 1 inside)
//!                                                                 └─fork─▶ program (pid 2), execve
//! ```
//!
//! - the root is a read-only overlay of a per-instance mount-point layer
//!   (`run/<instance>/mounts/`: empty `proc`, `dev`, `tmp` and the targets of
//!   binds, made only where the image lacks them) over the image root, so
//!   even a `scratch` image with a single file gets them, and the shared image
//!   directory is never written;
//! - fresh `/proc` (of the new pid namespace), a tmpfs `/tmp`, a tmpfs `/dev`
//!   with `null`, `zero`, `full`, `random`, `urandom`, `tty`, `fd`, `std*` and
//!   a tmpfs `/dev/shm`; the hostname is the instance id;
//! - `pivot_root` into it and the host's tree is detached;
//! - the network namespace is the host's unless [`Attachments::network`]
//!   names one, so the program's `127.0.0.1:PORT` is what the endpoint proxy
//!   reaches;
//! - [`Attachments`] add bind mounts (volumes) and cgroups.
//!
//! # Which pid is the instance
//!
//! The recorded and signalled pid is the init's (host view). Being the
//! leader of its own session, it is what a restarted provider finds as the
//! session leader of the labelled program (the init itself carries no labels:
//! its environment is empty). SIGTERM sent to it is forwarded to every
//! process in the namespace; SIGKILL kills it, and the kernel then kills
//! everything in the namespace, so nothing can outlive the instance. When the
//! program ends, the init writes its raw wait status to
//! `run/<instance>/exit-status` and exits with `code` (or `128 + signal`); the
//! provider reports the program's real status from the file, even for an
//! instance adopted after a restart.
//!
//! # Nothing of the conductor inside
//!
//! The init is *executed*, not a copy of the conductor: no process of the
//! instance holds the conductor's memory or environment (see the runner's
//! `init` module for why a forked init would leak both through
//! `/proc/1/environ` and `/proc/1/mem`). The program's environment is exactly
//! the instance's (see [`instance_env`](super::instance_env)).

use super::resolve::Resolved;
use glint_sandbox::{self as runner, Mounts, Network, Pid1, Plan, Root, Sandbox, StartReport};
use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

/// What an isolated instance is given besides its image: volumes, a network
/// namespace, cgroups. Empty by default (no binds, the host's network, the
/// conductor's cgroups). Only [`Isolation::Namespaces`](super::Isolation)
/// can honour them.
#[derive(Default)]
#[non_exhaustive]
pub struct Attachments {
    /// Host paths bound into the instance (volumes). Targets the image lacks
    /// are created in the instance's mount-point layer, never in the image.
    pub binds: Vec<runner::Bind>,
    /// A network namespace to run in instead of the host's. The instance's
    /// `HOST`/`PORT` and observed address stay the host loopback port the
    /// provider chose; an instance whose spec asks for `own_network` gets
    /// a namespace with an address of its own from the provider instead
    /// (see the `net` module).
    pub network: Option<runner::NetNs>,
    /// Cgroups to start in (resource limits).
    pub cgroups: runner::Cgroups,
    /// Descriptors the instance's init holds for its whole life (the
    /// `flock`s of the volumes it holds read-write).
    pub held: Vec<std::os::fd::OwnedFd>,
}

impl Attachments {
    /// Whether nothing is attached.
    pub fn is_empty(&self) -> bool {
        self.binds.is_empty()
            && self.network.is_none()
            && self.cgroups.clone_into.is_none()
            && self.cgroups.join.is_empty()
            && self.held.is_empty()
    }
}

/// Whether this process may start namespaced instances: root, and the kernel
/// lets a child create the namespaces and make its mounts private. Probed once.
pub(crate) fn available() -> bool {
    runner::available()
}

/// The files an isolated instance is given.
pub(crate) struct Stdio {
    pub stdout: File,
    pub stderr: File,
    /// `run/<instance>/exit-status`, written by the init.
    pub status: File,
}

/// Inputs that describe the instance's world.
pub(crate) struct Layout<'a> {
    /// The image root (host path).
    pub rootfs: &'a Path,
    /// Empty directory to mount the instance's root on.
    pub root_mount: &'a Path,
    /// Empty directory for the mount points the image lacks.
    pub mount_points: &'a Path,
    /// Working directory inside the image.
    pub workdir: &'a str,
    /// Hostname inside the instance.
    pub hostname: &'a str,
}

/// Starts an isolated instance. Returns once the init's process exists; wait
/// on [`Sandbox::take_report`] (with [`wait_started`]) to learn whether the
/// program was executed.
pub(crate) fn spawn(
    layout: &Layout<'_>,
    program: &Resolved,
    argv: &[String],
    env: &BTreeMap<String, String>,
    stdio: Stdio,
    attach: Attachments,
) -> io::Result<Sandbox> {
    let root = Root::Overlay {
        lower: vec![layout.rootfs.to_owned()],
        upper: None,
        target: layout.root_mount.to_owned(),
        mount_points: Some(layout.mount_points.to_owned()),
    };
    let command = runner::Command::resolved(program.inside.clone(), argv.to_vec(), env.clone());
    let mut plan = Plan::new(
        root,
        command,
        runner::Stdio::new(stdio.stdout, stdio.stderr),
    );
    plan.workdir = Path::new("/").join(layout.workdir);
    plan.hostname = layout.hostname.to_owned();
    plan.mounts = Mounts::default();
    plan.binds = attach.binds;
    plan.network = match attach.network {
        Some(ns) => Network::Join(ns),
        None => Network::Host,
    };
    plan.cgroups = attach.cgroups;
    plan.held = attach.held;
    plan.pid1 = Pid1::Init {
        status: stdio.status,
    };
    runner::spawn(plan).map_err(to_io)
}

/// Reads the start report until end-of-file: `Ok` once the program has been
/// executed, or the step that failed. Blocking.
pub(crate) fn wait_started(report: StartReport) -> io::Result<()> {
    report.wait().map_err(to_io)
}

/// One sentence with its cause, as an `io::Error` of the cause's kind.
fn to_io(e: runner::SandboxError) -> io::Error {
    let kind = match std::error::Error::source(&e).and_then(|s| s.downcast_ref::<io::Error>()) {
        Some(cause) => cause.kind(),
        None => io::ErrorKind::Other,
    };
    let mut text = e.to_string();
    if let Some(cause) = std::error::Error::source(&e) {
        text.push_str(&format!(": {cause}"));
    }
    io::Error::new(kind, text)
}

/// Decodes the raw wait status the init wrote, if it did.
pub(crate) fn read_exit_status(path: &Path) -> Option<crate::RunState> {
    Some(match runner::read_status_file(path)? {
        runner::ExitStatus::Code(code) => crate::RunState::Exited {
            code: Some(code),
            signal: None,
            oom: false,
        },
        runner::ExitStatus::Signal(signal) => crate::RunState::Exited {
            code: None,
            signal: Some(signal),
            oom: false,
        },
    })
}

/// The per-instance mount-point layer under an instance directory.
pub(crate) fn mount_points_dir(instance_dir: &Path) -> PathBuf {
    instance_dir.join("mounts")
}
