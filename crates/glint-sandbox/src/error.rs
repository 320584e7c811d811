//! Why a sandbox could not be started, and which step of its setup failed.

use std::io;
use std::path::PathBuf;

/// A failure to start a sandbox.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The plan cannot be carried out as written (nothing was started).
    #[error("invalid sandbox plan: {reason}")]
    Invalid {
        /// What is wrong, naming the path or value.
        reason: String,
    },
    /// Preparing the plan on the caller's side failed (nothing was started).
    #[error("cannot prepare the sandbox: {what} {}", path.display())]
    Prepare {
        /// What was being done.
        what: String,
        /// The path it was done to.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// `clone3` failed: the namespaces could not be created.
    #[error("cannot create the sandbox's namespaces (needs root)")]
    Clone {
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A setup step inside the new sandbox failed; it has exited.
    #[error("cannot {step}")]
    Step {
        /// The step.
        step: Step,
        /// The error the kernel returned.
        #[source]
        source: io::Error,
    },
    /// The sandbox's init never reported that it runs: the executable does
    /// not carry this crate's init entry (see the `init` module).
    #[error(
        "the sandbox's init did not start: the running executable does not contain glint-sandbox's init entry"
    )]
    InitMissing,
    /// Reading the sandbox's start report failed.
    #[error("cannot read the sandbox's start report")]
    Report {
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// The steps of setting up a sandbox, as reported through its error pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Step {
    /// `PR_SET_PDEATHSIG`.
    ParentDeathSignal = 1,
    /// `setns` into the network namespace.
    JoinNetwork,
    /// Bringing the new namespace's loopback up.
    Loopback,
    /// Writing itself into a `cgroup.procs` file.
    JoinCgroup,
    /// `setsid`.
    Session,
    /// Making every mount private.
    PrivateMounts,
    /// Mounting the root.
    Root,
    /// Creating a missing mount point.
    MountPoint,
    /// Mounting `/proc`.
    Proc,
    /// Mounting `/dev`.
    Dev,
    /// Creating device nodes.
    DevNodes,
    /// Creating the `/dev` links.
    DevLinks,
    /// Mounting `/dev/shm`.
    Shm,
    /// Mounting `/tmp`.
    Tmp,
    /// Binding a host path in.
    Bind,
    /// `sethostname`.
    Hostname,
    /// `pivot_root`.
    Pivot,
    /// Detaching the host's tree.
    Detach,
    /// Changing to the working directory.
    Workdir,
    /// Arranging and closing descriptors.
    Descriptors,
    /// Dropping to the plan's user.
    User,
    /// Executing the program.
    Exec,
    /// Executing the init.
    ExecInit,
    /// The init reading what to run.
    InitSpec,
    /// The init starting the program.
    Fork,
}

const ALL: [Step; 25] = [
    Step::ParentDeathSignal,
    Step::JoinNetwork,
    Step::Loopback,
    Step::JoinCgroup,
    Step::Session,
    Step::PrivateMounts,
    Step::Root,
    Step::MountPoint,
    Step::Proc,
    Step::Dev,
    Step::DevNodes,
    Step::DevLinks,
    Step::Shm,
    Step::Tmp,
    Step::Bind,
    Step::Hostname,
    Step::Pivot,
    Step::Detach,
    Step::Workdir,
    Step::Descriptors,
    Step::User,
    Step::Exec,
    Step::ExecInit,
    Step::InitSpec,
    Step::Fork,
];

impl Step {
    /// The step with wire code `code`.
    pub(crate) fn from_code(code: u32) -> Option<Step> {
        ALL.iter().copied().find(|s| *s as u32 == code)
    }

    /// What the step does, as the end of "cannot …".
    pub fn describe(self) -> &'static str {
        match self {
            Step::ParentDeathSignal => "set the parent-death signal",
            Step::JoinNetwork => "join the network namespace",
            Step::Loopback => "bring up the loopback interface",
            Step::JoinCgroup => "join the cgroup",
            Step::Session => "start a new session",
            Step::PrivateMounts => "make mounts private",
            Step::Root => "mount the root",
            Step::MountPoint => "create a mount point",
            Step::Proc => "mount /proc",
            Step::Dev => "mount /dev",
            Step::DevNodes => "create device nodes in /dev",
            Step::DevLinks => "create /dev links",
            Step::Shm => "mount /dev/shm",
            Step::Tmp => "mount /tmp",
            Step::Bind => "bind-mount a host path",
            Step::Hostname => "set the hostname",
            Step::Pivot => "enter the root (pivot_root)",
            Step::Detach => "detach the host's filesystem",
            Step::Workdir => "change to the working directory",
            Step::Descriptors => "arrange file descriptors",
            Step::User => "switch to the plan's user",
            Step::Exec => "execute the program",
            Step::ExecInit => "execute the sandbox's init",
            Step::InitSpec => "read the init's instructions",
            Step::Fork => "fork the program",
        }
    }
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.describe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_step_round_trips_through_its_code() {
        for s in ALL {
            assert_eq!(Step::from_code(s as u32), Some(s));
        }
        assert_eq!(Step::from_code(0), None);
        assert_eq!(Step::from_code(ALL.len() as u32 + 1), None);
    }
}
