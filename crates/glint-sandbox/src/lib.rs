//! Glint's namespace runner: one program in its own mount, PID, UTS and IPC
//! namespaces (and a network namespace of its choosing), on a root made of
//! image layers, with nothing of the caller's world but what its [`Plan`]
//! names. Image builds (`run` and `test` steps, verify runs) and process
//! instances both start through [`spawn`].
//!
//! ```text
//! caller ──clone3(NEWNS|NEWPID|NEWUTS|NEWIPC[|NEWNET][|INTO_CGROUP]|PIDFD)──▶ child
//!   child: descriptors, cgroups, network, mounts, pivot_root, workdir
//!     ├─ Pid1::Program: execve(program)                 → PID 1 is the program
//!     └─ Pid1::Init:    execveat(this executable, init) → PID 1 is the init
//!                         init ──fork──▶ program (PID 2), execve
//! ```
//!
//! Pure Linux and synchronous: no async runtime, no threads but the short
//! helpers of [`NetNs`]. Needs root (mounts and namespaces); [`available`]
//! says whether this process may.
//!
//! Layout:
//! - [`plan`](crate::Plan): what a sandbox is — [`Root`] (overlay layers with
//!   an optional upper, or a bound directory), [`Command`], [`Mounts`],
//!   [`Bind`]s (volumes), [`Network`] (host, new, or join a [`NetNs`]),
//!   [`Cgroups`], [`User`], [`Pid1`], [`Stdio`];
//! - `prepare`: the caller's side — the plan checked and turned into C
//!   strings and descriptors, mount points resolved (`mount_points`);
//! - `child`: the async-signal-safe child side, with its rulebook;
//! - `init`: the init executed as PID 1 of an instance, and why it is
//!   executed rather than forked (no instance can read the conductor's
//!   memory or environment);
//! - [`spawn()`] and [`Sandbox`]: starting, the setup report, waiting,
//!   killing; [`read_status_file`] for an init's record of its program;
//! - [`NetNs`]: network namespaces made, opened or looked into.
//!
//! A failed setup step is reported through a close-on-exec pipe as
//! `(step, errno)`: [`SandboxError::Step`] names the [`Step`], so a message
//! says "cannot change to the working directory: No such file or directory"
//! rather than "exit 126".

mod child;
mod error;
mod init;
mod mount_points;
mod netns;
mod plan;
mod prepare;
mod spawn;

pub use error::{SandboxError, Step};
pub use netns::{Loopback, NetNs};
pub use plan::{
    Bind, Cgroups, Command, DEFAULT_HOSTNAME, MAX_HELD, Mounts, Network, Pid1, Plan, Root, Stdio,
    Upper, User,
};
pub use spawn::{ExitStatus, Sandbox, StartReport, read_status_file, spawn};

use std::sync::OnceLock;

/// Whether this process may start sandboxes: root, overlayfs in the kernel,
/// and a child in new namespaces may make its mounts private. Probed once.
pub fn available() -> bool {
    static PROBE: OnceLock<bool> = OnceLock::new();
    *PROBE.get_or_init(|| {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return false;
        }
        let overlay = std::fs::read_to_string("/proc/filesystems")
            .map(|f| f.lines().any(|l| l.trim_end().ends_with("overlay")))
            .unwrap_or(false);
        overlay && probe_clone()
    })
}

/// Starts a child in new namespaces that makes its mounts private and exits.
fn probe_clone() -> bool {
    const FLAGS: u64 =
        (libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC) as u64;
    // SAFETY: clone_args is plain integers; zero is "not used" for each.
    let mut args: libc::clone_args = unsafe { std::mem::zeroed() };
    args.flags = FLAGS;
    args.exit_signal = libc::SIGCHLD as u64;
    // SAFETY: plain data initialised by sigfillset / pthread_sigmask.
    let (all, mut saved) = unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        (all, std::mem::zeroed::<libc::sigset_t>())
    };
    // SAFETY: as in `spawn`: signals blocked across the clone, the child
    // only makes raw system calls and exits.
    let pid = unsafe {
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut saved);
        let pid = libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut libc::clone_args,
            std::mem::size_of::<libc::clone_args>(),
        );
        if pid != 0 {
            libc::pthread_sigmask(libc::SIG_SETMASK, &saved, std::ptr::null_mut());
        }
        pid
    };
    if pid == 0 {
        // SAFETY: raw system calls with static C strings.
        unsafe {
            let ok = libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ) == 0;
            libc::_exit(if ok { 0 } else { 1 });
        }
    }
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    if pid < 0 {
        return false;
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
    waited == pid && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0
}
