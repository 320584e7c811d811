//! Isolated instances: their own mount, PID, UTS and IPC namespaces, with the
//! image as a read-only root.
//!
//! # Shape of an isolated instance
//!
//! ```text
//! conductor ──clone3(CLONE_NEWNS|NEWPID|NEWUTS|NEWIPC|PIDFD)──▶ init (pid 1 inside)
//!                                                               └─fork─▶ program (pid 2), execve
//! ```
//!
//! The conductor's direct child is a tiny *init*, pid 1 of the new pid
//! namespace. It builds the instance's filesystem, forks the program and then
//! only forwards signals and reaps zombies:
//!
//! - the root is a read-only overlay of a small skeleton (empty `proc`, `dev`,
//!   `tmp` mount points) over the image root, so even a `scratch` image with a
//!   single file gets them, and the shared image directory is never written;
//! - fresh `/proc` (of the new pid namespace), a tmpfs `/tmp`, a tmpfs `/dev`
//!   with `null`, `zero`, `full`, `random`, `urandom`, `tty`, `fd`, `std*` and
//!   a tmpfs `/dev/shm`; the hostname is the instance id;
//! - `pivot_root` into it and the host's tree is detached;
//! - the network namespace is the host's, so the program's `127.0.0.1:PORT` is
//!   what the endpoint proxy reaches.
//!
//! # Which pid is the instance
//!
//! The recorded and signalled pid is the init's (host view). Being the
//! leader of its own session, it is what a restarted provider finds as the
//! session leader of the labelled program. SIGTERM sent to it is forwarded
//! to every process in the namespace; SIGKILL kills it, and the kernel then
//! kills everything in the namespace, so nothing can outlive the instance.
//! When the program ends, the init writes its raw wait status to
//! `run/<instance>/exit-status` and exits with `code` (or `128 + signal`); the
//! provider reports the program's real status from the file, even for an
//! instance adopted after a restart.
//!
//! # The child side
//!
//! Everything between `clone3` and `execve` runs in a copy of a multi-threaded
//! process, where only async-signal-safe calls are allowed: no allocation, no
//! locks. All paths, the argv and envp arrays are prepared beforehand as C
//! strings; the child code only makes raw system calls. A failed step writes
//! `(step, errno)` to a close-on-exec pipe, which the conductor reads until
//! end-of-file (which means the program has been executed).

use super::resolve::Resolved;
use std::ffi::{CString, c_char, c_int};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::OnceLock;

/// The steps of building an instance, as reported through the error pipe.
const STEPS: [&str; 18] = [
    "unknown step",
    "redirect standard input and output",
    "start a new session",
    "make mounts private",
    "mount the image root (overlay)",
    "mount /proc",
    "mount /dev",
    "create device nodes in /dev",
    "mount /dev/shm",
    "mount /tmp",
    "set the hostname",
    "enter the image root (pivot_root)",
    "detach the host's filesystem",
    "change to the working directory",
    "close inherited file descriptors",
    "fork the program",
    "execute the program",
    "create /dev links",
];
const S_DUP: u32 = 1;
const S_SETSID: u32 = 2;
const S_PRIVATE: u32 = 3;
const S_ROOT: u32 = 4;
const S_PROC: u32 = 5;
const S_DEV: u32 = 6;
const S_MKNOD: u32 = 7;
const S_SHM: u32 = 8;
const S_TMP: u32 = 9;
const S_HOSTNAME: u32 = 10;
const S_PIVOT: u32 = 11;
const S_UMOUNT: u32 = 12;
const S_WORKDIR: u32 = 13;
const S_CLOSE: u32 = 14;
const S_FORK: u32 = 15;
const S_EXEC: u32 = 16;
const S_LINKS: u32 = 17;

/// Whether this process may start namespaced instances: root, and the kernel
/// lets a child create the namespaces and make its mounts private. Probed once.
pub(crate) fn available() -> bool {
    static PROBE: OnceLock<bool> = OnceLock::new();
    *PROBE.get_or_init(|| {
        if !rustix::process::geteuid().is_root() {
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
    let mut args = clone_args(NAMESPACES, None);
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

const NAMESPACES: u64 =
    (libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC) as u64;

fn clone_args(flags: u64, pidfd: Option<&mut c_int>) -> libc::clone_args {
    // SAFETY: clone_args is plain integers; zero is "not used" for each.
    let mut args: libc::clone_args = unsafe { std::mem::zeroed() };
    args.flags = flags;
    if let Some(fd) = pidfd {
        args.flags |= libc::CLONE_PIDFD as u64;
        args.pidfd = fd as *mut c_int as u64;
    }
    args.exit_signal = libc::SIGCHLD as u64;
    args
}

/// Everything the child needs, prepared in advance (the child may not allocate).
struct Plan {
    stdin: OwnedFd,
    stdout: OwnedFd,
    stderr: OwnedFd,
    err_pipe: OwnedFd,
    status: OwnedFd,
    overlay_opts: CString,
    root: CString,
    proc_: CString,
    dev: CString,
    shm: CString,
    tmp: CString,
    devices: Vec<(CString, u32, u32)>,
    links: Vec<(CString, CString)>,
    hostname: CString,
    workdir: CString,
    program: CString,
    // Kept alive for the pointer arrays below.
    _argv: Vec<CString>,
    _envp: Vec<CString>,
    argv_ptrs: Vec<*const c_char>,
    envp_ptrs: Vec<*const c_char>,
    all_signals: libc::sigset_t,
    no_signals: libc::sigset_t,
}

/// What the conductor keeps of a started isolated instance.
pub(crate) struct Started {
    /// Host pid of the init.
    pub pid: i32,
    /// Its pidfd (from `CLONE_PIDFD`: no race with pid reuse).
    pub pidfd: OwnedFd,
    /// Read end of the error pipe: see [`wait_started`].
    pub errors: std::io::PipeReader,
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
    /// Directory holding the empty `proc`, `dev`, `tmp` mount points.
    pub skeleton: &'a Path,
    /// The image root (host path).
    pub rootfs: &'a Path,
    /// Empty directory to mount the instance's root on.
    pub root_mount: &'a Path,
    /// Working directory inside the image.
    pub workdir: &'a str,
    /// Hostname inside the instance.
    pub hostname: &'a str,
}

fn cstr(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("`{}` contains a NUL byte", String::from_utf8_lossy(bytes)),
        )
    })
}

fn path_c(p: &Path) -> io::Result<CString> {
    cstr(p.as_os_str().as_bytes())
}

/// Duplicates `fd` to a number of at least 3 (so that the child's `dup2` onto
/// 0, 1 and 2 cannot overwrite one of its sources), close-on-exec.
fn high_fd(fd: impl Into<OwnedFd>) -> io::Result<OwnedFd> {
    let fd: OwnedFd = fd.into();
    if fd.as_raw_fd() > 2 {
        Ok(fd)
    } else {
        // `try_clone` uses F_DUPFD_CLOEXEC with a minimum of 3.
        fd.try_clone()
    }
}

fn plan(
    layout: &Layout<'_>,
    program: &Resolved,
    argv: &[String],
    env: &std::collections::BTreeMap<String, String>,
    stdio: Stdio,
    err_pipe: OwnedFd,
) -> io::Result<Plan> {
    // The init resolves these paths itself: make them absolute and free of
    // links now.
    let rootfs = std::fs::canonicalize(layout.rootfs)?;
    let skeleton = std::fs::canonicalize(layout.skeleton)?;
    let root = &std::fs::canonicalize(layout.root_mount)?;
    for (what, p) in [("image root", &rootfs), ("skeleton", &skeleton)] {
        let s = p.as_os_str().as_bytes();
        if s.iter().any(|b| matches!(b, b',' | b':' | b'\\')) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "the {what} path {} contains `,`, `:` or `\\`, which overlay mounts cannot take",
                    p.display()
                ),
            ));
        }
    }
    let mut opts = b"lowerdir=".to_vec();
    opts.extend_from_slice(skeleton.as_os_str().as_bytes());
    opts.push(b':');
    opts.extend_from_slice(rootfs.as_os_str().as_bytes());
    let dev = root.join("dev");
    let devices = [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ]
    .into_iter()
    .map(|(name, major, minor)| Ok((path_c(&dev.join(name))?, major, minor)))
    .collect::<io::Result<Vec<_>>>()?;
    let links = [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ]
    .into_iter()
    .map(|(name, target)| Ok((path_c(&dev.join(name))?, cstr(target.as_bytes())?)))
    .collect::<io::Result<Vec<_>>>()?;
    let argv_c = argv
        .iter()
        .map(|a| cstr(a.as_bytes()))
        .collect::<io::Result<Vec<_>>>()?;
    let envp_c = env
        .iter()
        .map(|(k, v)| cstr(format!("{k}={v}").as_bytes()))
        .collect::<io::Result<Vec<_>>>()?;
    let argv_ptrs = argv_c
        .iter()
        .map(|c| c.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let envp_ptrs = envp_c
        .iter()
        .map(|c| c.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    // SAFETY: sigset_t is plain data, initialised by sigfillset/sigemptyset.
    let (all_signals, no_signals) = unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::sigemptyset(&mut none);
        (all, none)
    };
    let devnull = std::fs::File::open("/dev/null")?;
    Ok(Plan {
        stdin: high_fd(devnull)?,
        stdout: high_fd(stdio.stdout)?,
        stderr: high_fd(stdio.stderr)?,
        err_pipe: high_fd(err_pipe)?,
        status: high_fd(stdio.status)?,
        overlay_opts: cstr(&opts)?,
        root: path_c(root)?,
        proc_: path_c(&root.join("proc"))?,
        dev: path_c(&dev)?,
        shm: path_c(&dev.join("shm"))?,
        tmp: path_c(&root.join("tmp"))?,
        devices,
        links,
        hostname: cstr(layout.hostname.as_bytes())?,
        workdir: cstr(Path::new("/").join(layout.workdir).as_os_str().as_bytes())?,
        program: path_c(&program.inside)?,
        _argv: argv_c,
        _envp: envp_c,
        argv_ptrs,
        envp_ptrs,
        all_signals,
        no_signals,
    })
}

/// Starts an isolated instance. Returns once the init exists; call
/// [`wait_started`] on [`Started::errors`] to learn whether the program was
/// executed.
pub(crate) fn spawn(
    layout: &Layout<'_>,
    program: &Resolved,
    argv: &[String],
    env: &std::collections::BTreeMap<String, String>,
    stdio: Stdio,
) -> io::Result<Started> {
    // Both ends close-on-exec.
    let (err_read, err_write) = std::io::pipe()?;
    let plan = plan(layout, program, argv, env, stdio, err_write.into())?;
    let mut pidfd: c_int = -1;
    let mut args = clone_args(NAMESPACES, Some(&mut pidfd));
    let mut saved: libc::sigset_t =
        // SAFETY: plain data, filled in by pthread_sigmask below.
        unsafe { std::mem::zeroed() };
    // Block every signal across clone3 so that the child cannot run one of
    // the conductor's handlers before it takes over its signals.
    // SAFETY: valid sigset pointers.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &plan.all_signals, &mut saved) };
    // SAFETY: clone3 without CLONE_VM is a fork: the child gets a copy of
    // this address space and runs `init`, which never returns and makes only
    // async-signal-safe raw system calls on memory prepared above.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut libc::clone_args,
            std::mem::size_of::<libc::clone_args>(),
        )
    };
    if pid == 0 {
        // SAFETY: see above; we are the child.
        unsafe { init(&plan) }
    }
    let clone_err = io::Error::last_os_error();
    // SAFETY: restoring the mask saved above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &saved, std::ptr::null_mut()) };
    // The child's copies of the plan's descriptors are its own; ours close
    // when `plan` drops.
    drop(plan);
    if pid < 0 {
        return Err(clone_err);
    }
    let pid = i32::try_from(pid).map_err(|_| io::Error::other("clone3 returned a bad pid"))?;
    // SAFETY: CLONE_PIDFD stored a fresh descriptor that we now own.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    Ok(Started {
        pid,
        pidfd,
        errors: err_read,
    })
}

/// Reads the error pipe until end-of-file: `Ok` once the program has been
/// executed, or the step that failed. Blocking.
pub(crate) fn wait_started(mut errors: std::io::PipeReader) -> io::Result<()> {
    let mut buf = [0u8; 8];
    let mut got = 0;
    while got < buf.len() {
        match errors.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    if got < buf.len() {
        return Ok(());
    }
    let step = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]);
    let errno = i32::from_ne_bytes([buf[4], buf[5], buf[6], buf[7]]);
    let what = STEPS.get(step as usize).copied().unwrap_or(STEPS[0]);
    let cause = io::Error::from_raw_os_error(errno);
    Err(io::Error::new(
        cause.kind(),
        format!("cannot {what}: {cause}"),
    ))
}

/// Decodes the raw wait status the init wrote, if it did.
pub(crate) fn read_exit_status(path: &Path) -> Option<crate::RunState> {
    let bytes = std::fs::read(path).ok()?;
    let raw = i32::from_ne_bytes(bytes.get(..4)?.try_into().ok()?);
    if libc::WIFEXITED(raw) {
        Some(crate::RunState::Exited {
            code: Some(libc::WEXITSTATUS(raw)),
            signal: None,
        })
    } else if libc::WIFSIGNALED(raw) {
        Some(crate::RunState::Exited {
            code: None,
            signal: Some(libc::WTERMSIG(raw)),
        })
    } else {
        None
    }
}

// ---------------------------------------------------------------------------
// The child side. Only raw system calls from here on.

/// Reports a failed step and exits.
unsafe fn fail(p: &Plan, step: u32) -> ! {
    // SAFETY: errno location and write/_exit are async-signal-safe.
    unsafe {
        let errno = *libc::__errno_location();
        let mut buf = [0u8; 8];
        buf[..4].copy_from_slice(&step.to_ne_bytes());
        buf[4..].copy_from_slice(&errno.to_ne_bytes());
        libc::write(p.err_pipe.as_raw_fd(), buf.as_ptr().cast(), buf.len());
        libc::_exit(126)
    }
}

unsafe fn mount(
    p: &Plan,
    step: u32,
    source: *const c_char,
    target: *const c_char,
    fstype: *const c_char,
    flags: libc::c_ulong,
    data: *const c_char,
) {
    // SAFETY: all pointers are NUL-terminated strings or null.
    unsafe {
        if libc::mount(source, target, fstype, flags, data.cast()) != 0 {
            fail(p, step)
        }
    }
}

/// The init: pid 1 of the new pid namespace.
unsafe fn init(p: &Plan) -> ! {
    // SAFETY: every call below is a raw system call on prepared memory.
    unsafe {
        let null = std::ptr::null::<c_char>();
        for (from, to) in [(&p.stdin, 0), (&p.stdout, 1), (&p.stderr, 2)] {
            if libc::dup2(from.as_raw_fd(), to) < 0 {
                fail(p, S_DUP)
            }
        }
        if libc::setsid() < 0 {
            fail(p, S_SETSID)
        }
        mount(
            p,
            S_PRIVATE,
            null,
            c"/".as_ptr(),
            null,
            libc::MS_REC | libc::MS_PRIVATE,
            null,
        );
        mount(
            p,
            S_ROOT,
            c"overlay".as_ptr(),
            p.root.as_ptr(),
            c"overlay".as_ptr(),
            libc::MS_RDONLY | libc::MS_NODEV,
            p.overlay_opts.as_ptr(),
        );
        mount(
            p,
            S_PROC,
            c"proc".as_ptr(),
            p.proc_.as_ptr(),
            c"proc".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            null,
        );
        mount(
            p,
            S_DEV,
            c"tmpfs".as_ptr(),
            p.dev.as_ptr(),
            c"tmpfs".as_ptr(),
            libc::MS_NOSUID | libc::MS_NOEXEC,
            c"mode=755,size=64k".as_ptr(),
        );
        libc::umask(0);
        for (path, major, minor) in &p.devices {
            let dev = libc::makedev(*major, *minor);
            if libc::mknod(path.as_ptr(), libc::S_IFCHR | 0o666, dev) != 0 {
                fail(p, S_MKNOD)
            }
        }
        for (path, target) in &p.links {
            if libc::symlink(target.as_ptr(), path.as_ptr()) != 0 {
                fail(p, S_LINKS)
            }
        }
        if libc::mkdir(p.shm.as_ptr(), 0o1777) != 0 {
            fail(p, S_SHM)
        }
        mount(
            p,
            S_SHM,
            c"tmpfs".as_ptr(),
            p.shm.as_ptr(),
            c"tmpfs".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            c"mode=1777".as_ptr(),
        );
        mount(
            p,
            S_TMP,
            c"tmpfs".as_ptr(),
            p.tmp.as_ptr(),
            c"tmpfs".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV,
            c"mode=1777".as_ptr(),
        );
        if libc::sethostname(p.hostname.as_ptr(), p.hostname.as_bytes().len()) != 0 {
            fail(p, S_HOSTNAME)
        }
        // pivot_root(".", "."): the old root ends up stacked on the new one,
        // and detaching "." removes it.
        if libc::chdir(p.root.as_ptr()) != 0
            || libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) != 0
        {
            fail(p, S_PIVOT)
        }
        if libc::umount2(c".".as_ptr(), libc::MNT_DETACH) != 0 || libc::chdir(c"/".as_ptr()) != 0 {
            fail(p, S_UMOUNT)
        }
        if libc::chdir(p.workdir.as_ptr()) != 0 {
            fail(p, S_WORKDIR)
        }
        // Keep 0-2, the error pipe and the status file; close the rest of the
        // conductor's descriptors (sockets, databases) held since clone.
        let keep_a = p.err_pipe.as_raw_fd().min(p.status.as_raw_fd());
        let keep_b = p.err_pipe.as_raw_fd().max(p.status.as_raw_fd());
        let close = |first: c_int, last: c_int| {
            first > last
                || libc::syscall(libc::SYS_close_range, first as u32, last as u32, 0u32) == 0
        };
        if !(close(3, keep_a - 1) && close(keep_a + 1, keep_b - 1) && close(keep_b + 1, c_int::MAX))
        {
            fail(p, S_CLOSE)
        }
        libc::umask(0o022);

        let mut args = clone_args(0, None);
        let app = libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut libc::clone_args,
            std::mem::size_of::<libc::clone_args>(),
        );
        if app == 0 {
            program(p)
        }
        if app < 0 {
            fail(p, S_FORK)
        }
        let app = app as libc::pid_t;
        libc::close(p.err_pipe.as_raw_fd());
        supervise(p, app)
    }
}

/// In the program's process: default signal handling, then execve.
unsafe fn program(p: &Plan) -> ! {
    // SAFETY: raw system calls on prepared memory.
    unsafe {
        for sig in 1..=64 {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
        libc::sigprocmask(libc::SIG_SETMASK, &p.no_signals, std::ptr::null_mut());
        libc::close(p.status.as_raw_fd());
        libc::execve(
            p.program.as_ptr(),
            p.argv_ptrs.as_ptr(),
            p.envp_ptrs.as_ptr(),
        );
        fail(p, S_EXEC)
    }
}

/// The init's loop: forward signals to everything in the namespace, reap
/// zombies, and end with the program.
unsafe fn supervise(p: &Plan, app: libc::pid_t) -> ! {
    // SAFETY: raw system calls on prepared memory.
    unsafe {
        loop {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            let sig = libc::sigwaitinfo(&p.all_signals, &mut info);
            if sig < 0 {
                continue;
            }
            if sig != libc::SIGCHLD {
                // To every process of the namespace but this one.
                libc::kill(-1, sig);
                continue;
            }
            loop {
                let mut status: c_int = 0;
                let reaped = libc::waitpid(-1, &mut status, libc::WNOHANG);
                if reaped <= 0 {
                    break;
                }
                if reaped == app {
                    let bytes = status.to_ne_bytes();
                    libc::write(p.status.as_raw_fd(), bytes.as_ptr().cast(), bytes.len());
                    let code = if libc::WIFEXITED(status) {
                        libc::WEXITSTATUS(status)
                    } else {
                        128 + libc::WTERMSIG(status)
                    };
                    libc::_exit(code)
                }
            }
        }
    }
}
