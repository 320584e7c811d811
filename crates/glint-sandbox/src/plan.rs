//! What a sandbox is made of: the [`Plan`] a caller fills in and hands to
//! [`spawn`](crate::spawn).
//!
//! A plan is plain data plus the descriptors the sandbox will be given
//! (standard streams, a status file, a network namespace, cgroups). It leaves
//! the runner no choice: every mount, name and descriptor is in it.

use crate::netns::NetNs;
use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

/// The most descriptors a plan may ask PID 1 to hold ([`Plan::held`]).
pub const MAX_HELD: usize = 32;

/// The hostname a plan gets unless the caller sets another.
pub const DEFAULT_HOSTNAME: &str = "glint-sandbox";

/// Everything one sandbox is: its root, what it runs, what it sees.
///
/// Made with [`Plan::new`] (safe defaults: a new, empty network namespace,
/// `/proc`, `/dev`, `/dev/shm` and `/tmp` mounted, the program as PID 1) and
/// adjusted field by field.
#[non_exhaustive]
pub struct Plan {
    /// The root filesystem.
    pub root: Root,
    /// The program, its arguments and its whole environment.
    pub command: Command,
    /// Working directory inside the root (absolute; a missing one fails the
    /// start with [`Step::Workdir`](crate::Step::Workdir)).
    pub workdir: PathBuf,
    /// The hostname (a new UTS namespace always).
    pub hostname: String,
    /// The kernel filesystems mounted inside.
    pub mounts: Mounts,
    /// Host paths bound into the root (volumes).
    pub binds: Vec<Bind>,
    /// Which network namespace the sandbox lives in.
    pub network: Network,
    /// Which cgroups it starts in.
    pub cgroups: Cgroups,
    /// The user the program runs as; `None`: root, as the caller.
    pub user: Option<User>,
    /// What PID 1 of the sandbox is.
    pub pid1: Pid1,
    /// Standard input, output and error.
    pub stdio: Stdio,
    /// Descriptors PID 1 keeps open for its whole life, and with it the
    /// sandbox: the `flock`s of the volumes an instance holds, so that a
    /// lock is released exactly when the last process of the sandbox is
    /// gone, whatever happens to the caller. At most [`MAX_HELD`]. An init
    /// keeps them from the program (they are close-on-exec there).
    pub held: Vec<OwnedFd>,
    /// Kill the sandbox (SIGKILL to its PID 1, hence to all of it) when the
    /// *thread* that called [`spawn`](crate::spawn) ends — the kernel's rule
    /// for `PR_SET_PDEATHSIG`. Only for sandboxes whose spawning thread waits
    /// for them (build steps); never for instances, which outlive their
    /// conductor.
    pub die_with_parent: bool,
}

impl Plan {
    /// A plan running `command` on `root` with `stdio`, and defaults for the
    /// rest (see [`Plan`]).
    pub fn new(root: Root, command: Command, stdio: Stdio) -> Plan {
        Plan {
            root,
            command,
            workdir: PathBuf::from("/"),
            hostname: DEFAULT_HOSTNAME.to_owned(),
            mounts: Mounts::default(),
            binds: Vec::new(),
            network: Network::New,
            cgroups: Cgroups::default(),
            user: None,
            pid1: Pid1::Program,
            stdio,
            held: Vec::new(),
            die_with_parent: false,
        }
    }
}

/// The sandbox's root filesystem. Mounted inside the sandbox's own mount
/// namespace only; the host never sees these mounts.
pub enum Root {
    /// An overlay of `lower` layers (top first). With an `upper`, writes land
    /// there (a build step's diff); without, the root is read-only.
    Overlay {
        /// Read-only layers, topmost first (absolute host paths).
        lower: Vec<PathBuf>,
        /// Where writes go, if anywhere.
        upper: Option<Upper>,
        /// An empty directory to mount the root on.
        target: PathBuf,
        /// An empty directory the runner may fill with the mount points the
        /// layers lack (`/proc`, `/dev`, `/tmp`, bind targets) and lays on
        /// top of them, so that a read-only root from an image that has none
        /// of them (a `scratch` image with one file) still gets every mount.
        /// Without it, missing mount points are created in `upper` when there
        /// is one; otherwise a missing kernel filesystem's mount point is
        /// skipped and a missing bind target is an error.
        mount_points: Option<PathBuf>,
    },
    /// A directory bound onto itself (read-only or not) as the root.
    Bind {
        /// The directory (absolute host path).
        dir: PathBuf,
        /// Whether the root is read-only.
        read_only: bool,
    },
}

/// The writable layer of an overlay root (both on one filesystem).
pub struct Upper {
    /// Where changed and new files land.
    pub upper: PathBuf,
    /// Overlayfs' empty work directory.
    pub work: PathBuf,
}

/// The program to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// Paths tried in order, inside the root (as `execvp` tries `PATH`):
    /// the first that exists and can be executed runs.
    pub candidates: Vec<PathBuf>,
    /// The whole argv, `argv[0]` included.
    pub argv: Vec<String>,
    /// The whole environment: nothing else is inherited.
    pub env: BTreeMap<String, String>,
}

/// The `PATH` searched for a bare program name when `env` has none (glibc's
/// default for `execvp`).
const DEFAULT_SEARCH_PATH: &str = "/bin:/usr/bin";

impl Command {
    /// Runs `program`, an absolute path inside the root found beforehand.
    pub fn resolved(
        program: impl Into<PathBuf>,
        argv: Vec<String>,
        env: BTreeMap<String, String>,
    ) -> Command {
        Command {
            candidates: vec![program.into()],
            argv,
            env,
        }
    }

    /// Runs `argv[0]` as `execvp` would inside the root: a name with a `/`
    /// as it is (relative to the working directory), a bare name searched in
    /// `env`'s `PATH` (never the caller's).
    pub fn search(argv: Vec<String>, env: BTreeMap<String, String>) -> Command {
        let program = argv.first().cloned().unwrap_or_default();
        let candidates = if program.contains('/') || program.is_empty() {
            vec![PathBuf::from(program)]
        } else {
            env.get("PATH")
                .map(String::as_str)
                .unwrap_or(DEFAULT_SEARCH_PATH)
                .split(':')
                .filter(|d| !d.is_empty())
                .map(|d| Path::new(d).join(&program))
                .collect()
        };
        Command {
            candidates,
            argv,
            env,
        }
    }
}

/// The kernel filesystems mounted inside the root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mounts {
    /// A fresh `/proc` of the sandbox's PID namespace.
    pub proc_: bool,
    /// A tmpfs `/dev` with `null`, `zero`, `full`, `random`, `urandom`,
    /// `tty` and the links `fd`, `stdin`, `stdout`, `stderr`.
    pub dev: bool,
    /// A tmpfs `/dev/shm` (needs `dev`).
    pub shm: bool,
    /// A tmpfs `/tmp`.
    pub tmp: bool,
}

impl Default for Mounts {
    fn default() -> Mounts {
        Mounts {
            proc_: true,
            dev: true,
            shm: true,
            tmp: true,
        }
    }
}

/// A host path bound into the sandbox (a volume, issue 12).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    /// The host directory or file (absolute).
    pub source: PathBuf,
    /// Where it appears, an absolute path inside the root. Not inside a
    /// kernel filesystem the plan mounts (`/proc`, `/dev`, `/tmp`) nor inside
    /// another bind's target.
    pub target: PathBuf,
    /// Whether the sandbox may only read it.
    pub read_only: bool,
}

impl Bind {
    /// `source` at `target`, read-only.
    pub fn read_only(source: impl Into<PathBuf>, target: impl Into<PathBuf>) -> Bind {
        Bind {
            source: source.into(),
            target: target.into(),
            read_only: true,
        }
    }

    /// `source` at `target`, writable.
    pub fn read_write(source: impl Into<PathBuf>, target: impl Into<PathBuf>) -> Bind {
        Bind {
            source: source.into(),
            target: target.into(),
            read_only: false,
        }
    }
}

/// Which network namespace the sandbox is in.
pub enum Network {
    /// The caller's (process instances without their own network).
    Host,
    /// A new namespace with only a loopback interface, up. Nothing can be
    /// reached but the sandbox itself.
    New,
    /// An existing namespace (per-instance networks, issue 10; build steps'
    /// prepared namespace whose counters are read afterwards).
    Join(NetNs),
}

/// The cgroups a sandbox starts in (resource limits, issue 12). Empty: the
/// caller's.
#[derive(Default)]
pub struct Cgroups {
    /// A cgroup v2 directory: the sandbox is *created* in it
    /// (`CLONE_INTO_CGROUP`), so not one instruction runs outside it.
    pub clone_into: Option<OwnedFd>,
    /// `cgroup.procs` files (v1 hierarchies, or v2) the sandbox's first
    /// process writes itself into before it does anything else; everything
    /// it starts inherits them.
    pub join: Vec<OwnedFd>,
}

impl Cgroups {
    /// Starts the sandbox inside the cgroup v2 directory `dir`.
    pub fn clone_into(dir: &Path) -> io::Result<Cgroups> {
        let fd = File::open(dir)?;
        Ok(Cgroups {
            clone_into: Some(fd.into()),
            join: Vec::new(),
        })
    }

    /// Also joins the cgroup whose directory is `dir` (its `cgroup.procs`).
    pub fn join(mut self, dir: &Path) -> io::Result<Cgroups> {
        let procs = File::options().write(true).open(dir.join("cgroup.procs"))?;
        self.join.push(procs.into());
        Ok(self)
    }
}

/// A user and group to run the program as (with no supplementary groups).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct User {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

/// What PID 1 of the sandbox's PID namespace is.
pub enum Pid1 {
    /// The program itself. When it ends the kernel kills everything else in
    /// the sandbox. As PID 1 it ignores signals it has no handler for (even
    /// SIGTERM), so stop it with SIGKILL. Build steps and verify runs.
    Program,
    /// A tiny init (see the `init` module) that starts the program as PID 2,
    /// forwards every signal to all processes of the sandbox, reaps orphans,
    /// and when the program ends writes its raw wait status (4 bytes, native
    /// endian) to `status` and exits with its code (or 128 + signal).
    /// Process instances.
    Init {
        /// Where the program's wait status goes (see
        /// [`read_status_file`](crate::read_status_file)).
        status: File,
    },
}

/// The sandbox's standard streams.
pub struct Stdio {
    /// Standard input; `None`: `/dev/null`.
    pub stdin: Option<OwnedFd>,
    /// Standard output.
    pub stdout: OwnedFd,
    /// Standard error.
    pub stderr: OwnedFd,
}

impl Stdio {
    /// Output and error to the given files, input from `/dev/null`.
    pub fn new(stdout: impl Into<OwnedFd>, stderr: impl Into<OwnedFd>) -> Stdio {
        Stdio {
            stdin: None,
            stdout: stdout.into(),
            stderr: stderr.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_uses_the_commands_own_path_like_execvp() {
        let env = BTreeMap::from([("PATH".to_owned(), "/opt/bin::/bin".to_owned())]);
        let c = Command::search(vec!["sh".into(), "-c".into()], env);
        assert_eq!(
            c.candidates,
            vec![PathBuf::from("/opt/bin/sh"), PathBuf::from("/bin/sh")]
        );
        let c = Command::search(vec!["sh".into()], BTreeMap::new());
        assert_eq!(
            c.candidates,
            vec![PathBuf::from("/bin/sh"), PathBuf::from("/usr/bin/sh")]
        );
        let c = Command::search(vec!["./run".into()], BTreeMap::new());
        assert_eq!(c.candidates, vec![PathBuf::from("./run")]);
    }
}
