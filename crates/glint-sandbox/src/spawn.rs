//! Starting a sandbox, and the handle the caller keeps: its PID 1's pid and
//! pidfd, and the report of its setup.

use crate::child::{self, HELLO};
use crate::error::{SandboxError, Step};
use crate::plan::{Pid1, Plan};
use crate::prepare;
use std::ffi::c_int;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;

/// `CLONE_INTO_CGROUP` (Linux 5.7).
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// The namespaces every sandbox gets.
const NAMESPACES: u64 =
    (libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC) as u64;

/// A started sandbox: its PID 1, as the caller sees it.
///
/// Dropping it neither kills nor reaps the sandbox (instances outlive their
/// conductor); call [`Sandbox::kill`] and [`Sandbox::wait`] for that.
#[derive(Debug)]
pub struct Sandbox {
    pid: i32,
    pidfd: OwnedFd,
    report: Option<StartReport>,
    /// How PID 1 ended, once reaped.
    ended: Option<ExitStatus>,
}

/// How a sandbox's setup went, read from its error pipe.
#[derive(Debug)]
pub struct StartReport {
    pipe: io::PipeReader,
    init: bool,
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// It exited with this code.
    Code(i32),
    /// A signal killed it.
    Signal(i32),
}

impl ExitStatus {
    /// Decodes a raw wait status (as `waitpid` gives it); `None` for a
    /// stopped or continued process.
    pub fn from_wait_status(raw: i32) -> Option<ExitStatus> {
        if libc::WIFEXITED(raw) {
            Some(ExitStatus::Code(libc::WEXITSTATUS(raw)))
        } else if libc::WIFSIGNALED(raw) {
            Some(ExitStatus::Signal(libc::WTERMSIG(raw)))
        } else {
            None
        }
    }
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitStatus::Code(c) => write!(f, "exit code {c}"),
            ExitStatus::Signal(s) => write!(f, "killed by signal {s}"),
        }
    }
}

/// The program's status as an init ([`Pid1::Init`]) wrote it, if it did.
pub fn read_status_file(path: &Path) -> Option<ExitStatus> {
    let bytes = std::fs::read(path).ok()?;
    let raw = i32::from_ne_bytes(bytes.get(..4)?.try_into().ok()?);
    ExitStatus::from_wait_status(raw)
}

/// Starts `plan`. Returns once PID 1 of the sandbox exists; its setup goes on
/// and is reported by [`Sandbox::wait_started`] (or the [`StartReport`]).
pub fn spawn(plan: Plan) -> Result<Sandbox, SandboxError> {
    let init = matches!(plan.pid1, Pid1::Init { .. });
    if init {
        crate::init::keep_linked();
    }
    // Both ends close-on-exec.
    let (reader, writer) = io::pipe().map_err(|source| SandboxError::Prepare {
        what: "cannot create a pipe".into(),
        path: Default::default(),
        source,
    })?;
    let prepared = prepare::prepare(plan, writer.into())?;
    let mut pidfd: c_int = -1;
    // SAFETY: clone_args is plain integers; zero is "not used" for each.
    let mut args: libc::clone_args = unsafe { std::mem::zeroed() };
    args.flags = NAMESPACES | libc::CLONE_PIDFD as u64;
    if prepared.new_network {
        args.flags |= libc::CLONE_NEWNET as u64;
    }
    if let Some(cg) = &prepared.cgroup_into {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = cg.as_raw_fd() as u64;
    }
    args.pidfd = &mut pidfd as *mut c_int as u64;
    args.exit_signal = libc::SIGCHLD as u64;
    // Block every signal across clone3 so that the child cannot run one of
    // the caller's handlers before it resets them.
    let mut saved: libc::sigset_t =
        // SAFETY: plain data, filled in by pthread_sigmask below.
        unsafe { std::mem::zeroed() };
    // SAFETY: valid sigset pointers.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &prepared.all_signals, &mut saved) };
    // SAFETY: clone3 without CLONE_VM is a fork: the child gets a copy of
    // this address space and runs `child::run`, which never returns and
    // follows its rulebook.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut libc::clone_args,
            std::mem::size_of::<libc::clone_args>(),
        )
    };
    if pid == 0 {
        // SAFETY: we are the child, signals blocked, `prepared` made before.
        unsafe { child::run(&prepared) }
    }
    let clone_err = io::Error::last_os_error();
    // SAFETY: restoring the mask saved above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &saved, std::ptr::null_mut()) };
    // The child's copies of the descriptors are its own; ours close here.
    drop(prepared);
    if pid < 0 {
        return Err(SandboxError::Clone { source: clone_err });
    }
    let pid = i32::try_from(pid).map_err(|_| SandboxError::Clone {
        source: io::Error::other("clone3 returned a bad pid"),
    })?;
    // SAFETY: CLONE_PIDFD stored a fresh descriptor that we now own.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    Ok(Sandbox {
        pid,
        pidfd,
        report: Some(StartReport { pipe: reader, init }),
        ended: None,
    })
}

impl StartReport {
    /// Reads the error pipe until end-of-file: `Ok` once the program has been
    /// executed (by PID 1 itself, or by the init), else the step that failed.
    /// Blocking.
    pub fn wait(mut self) -> Result<(), SandboxError> {
        let mut hello = false;
        loop {
            let mut buf = [0u8; 8];
            let mut got = 0;
            while got < buf.len() {
                match self.pipe.read(&mut buf[got..]) {
                    Ok(0) => break,
                    Ok(n) => got += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(source) => return Err(SandboxError::Report { source }),
                }
            }
            if got < buf.len() {
                break;
            }
            let code = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]);
            let errno = i32::from_ne_bytes([buf[4], buf[5], buf[6], buf[7]]);
            if code == HELLO {
                hello = true;
                continue;
            }
            let step = Step::from_code(code).unwrap_or(Step::Exec);
            return Err(SandboxError::Step {
                step,
                source: io::Error::from_raw_os_error(errno),
            });
        }
        if self.init && !hello {
            return Err(SandboxError::InitMissing);
        }
        Ok(())
    }
}

impl Sandbox {
    /// The host pid of the sandbox's PID 1 (the init or the program).
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Its pidfd (from `CLONE_PIDFD`: it names this process for good, never
    /// a recycled pid).
    pub fn pidfd(&self) -> BorrowedFd<'_> {
        self.pidfd.as_fd()
    }

    /// The setup report, to read elsewhere (it blocks); `None` once taken.
    pub fn take_report(&mut self) -> Option<StartReport> {
        self.report.take()
    }

    /// Waits until the program has been executed or the setup has failed
    /// (see [`StartReport::wait`]). Blocking; `Ok` if the report was taken.
    pub fn wait_started(&mut self) -> Result<(), SandboxError> {
        match self.report.take() {
            Some(r) => r.wait(),
            None => Ok(()),
        }
    }

    /// Gives up the handle, keeping the pidfd.
    pub fn into_pidfd(self) -> OwnedFd {
        self.pidfd
    }

    /// Sends SIGKILL to PID 1, which ends everything in the sandbox. Does
    /// nothing once it has been reaped.
    pub fn kill(&self) -> io::Result<()> {
        if self.ended.is_some() {
            return Ok(());
        }
        // SAFETY: pidfd_send_signal on a pidfd we own, no siginfo.
        let r = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.pidfd.as_raw_fd(),
                libc::SIGKILL,
                std::ptr::null::<libc::siginfo_t>(),
                0u32,
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::ESRCH) {
                return Err(e);
            }
        }
        Ok(())
    }

    /// Waits for PID 1 to end and reaps it (or returns how it ended, if it
    /// was reaped already). Blocking.
    pub fn wait(&mut self) -> io::Result<ExitStatus> {
        loop {
            if let Some(s) = self.ended {
                return Ok(s);
            }
            match self.wait_flags(libc::WEXITED) {
                Ok(Some(_)) => {}
                Ok(None) => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Reaps PID 1 if it has ended.
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        if self.ended.is_some() {
            return Ok(self.ended);
        }
        self.wait_flags(libc::WEXITED | libc::WNOHANG)
    }

    /// One `waitid`; remembers a status it reaps.
    fn wait_flags(&mut self, flags: c_int) -> io::Result<Option<ExitStatus>> {
        // SAFETY: siginfo_t is plain data, filled in by waitid.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waitid on our own child's pidfd.
        let r = unsafe {
            libc::waitid(
                libc::P_PIDFD,
                self.pidfd.as_raw_fd() as libc::id_t,
                &mut info,
                flags,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: waitid filled in a SIGCHLD siginfo (or left zeros: no child
        // changed state, under WNOHANG).
        let (pid, code, status) = unsafe { (info.si_pid(), info.si_code, info.si_status()) };
        if pid == 0 {
            return Ok(None);
        }
        self.ended = match code {
            libc::CLD_EXITED => Some(ExitStatus::Code(status)),
            libc::CLD_KILLED | libc::CLD_DUMPED => Some(ExitStatus::Signal(status)),
            _ => None,
        };
        Ok(self.ended)
    }
}
