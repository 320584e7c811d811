//! Starting an instance's leader process.

use super::record::Mode;
use super::resolve::Resolved;
use super::{Spawned, Waiter, procfs};
use rustix::process::{Pid, PidfdFlags};
use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::path::Path;
use std::process::Stdio;

/// Starts the program as a plain child process in a new session (so it leads
/// its own session and process group), with exactly `env`, in `cwd`, stdin
/// from `/dev/null` and output to the given log files.
pub(crate) fn spawn_plain(
    program: &Resolved,
    argv: &[String],
    env: &BTreeMap<String, String>,
    cwd: &Path,
    stdout: File,
    stderr: File,
) -> io::Result<Spawned> {
    let mut cmd = tokio::process::Command::new(&program.host);
    if let Some((argv0, args)) = argv.split_first() {
        cmd.arg0(argv0).args(args);
    }
    cmd.env_clear()
        .envs(env)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .kill_on_drop(false);
    // SAFETY: the closure runs between fork and exec and only makes one raw
    // system call (setsid), which is async-signal-safe and allocates nothing.
    unsafe {
        cmd.pre_exec(|| rustix::process::setsid().map(drop).map_err(io::Error::from));
    }
    let mut child = cmd.spawn()?;
    // The child is not reaped before we wait for it, so its pid cannot be
    // reused while we open a pidfd and read its start time.
    let identify = |child: &tokio::process::Child| -> io::Result<(i32, u64, rustix::fd::OwnedFd)> {
        let pid = child
            .id()
            .and_then(|p| i32::try_from(p).ok())
            .ok_or_else(|| io::Error::other("the child has no pid"))?;
        let raw = Pid::from_raw(pid).ok_or_else(|| io::Error::other("the child has pid 0"))?;
        let pidfd = rustix::process::pidfd_open(raw, PidfdFlags::NONBLOCK)?;
        let start_ticks = procfs::stat(pid)?.start_ticks;
        Ok((pid, start_ticks, pidfd))
    };
    match identify(&child) {
        Ok((pid, start_ticks, pidfd)) => Ok(Spawned {
            pid,
            start_ticks,
            pidfd,
            waiter: Waiter::Child(child),
            mode: Mode::Plain,
        }),
        Err(e) => {
            let _ = child.start_kill();
            Err(e)
        }
    }
}
