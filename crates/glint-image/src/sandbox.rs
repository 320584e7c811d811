//! The build sandbox: where `run` steps, `test` steps and `build --verify` runs execute.
//!
//! A sandboxed program runs as PID 1 of new PID, mount, UTS and IPC namespaces,
//! in a network namespace of its own, with the image as its root (`pivot_root`,
//! the host's root detached), a fixed hostname, a fixed environment (nothing
//! inherited from the caller) and, when the image has the directories, its own
//! `/proc` and a minimal `/dev` (null, zero, full, random, urandom, tty) on tmpfs.
//!
//! **How it starts.** `std::process::Command` forks; in that child (`pre_exec`)
//! we join the prepared network namespace and `clone` once more with the
//! namespace flags. The clone is PID 1 of the new PID namespace: it sets up its
//! mounts and execs the program. The intermediate process closes every
//! descriptor but stdio, waits for it and exits with its status (128+signal if
//! it was killed), so the caller sees one ordinary child. The clone has
//! `PDEATHSIG=SIGKILL`: killing the intermediate ends the whole namespace.
//! A failing setup stage writes its number to a close-on-exec pipe, so the
//! error says which stage failed.
//!
//! **No network, and how an attempt is detected.** The network namespace has
//! only a loopback interface and no route anywhere else. Connecting to or
//! sending to any address outside the sandbox fails at once with
//! `ENETUNREACH`, and the kernel counts each such failure in the namespace's
//! `OutNoRoutes` counters (`/proc/net/snmp`, `/proc/net/snmp6`). The namespace is
//! created by Glint before the step and kept open by a descriptor, so after the
//! step a thread joins it and reads the counters: any non-zero count means the
//! step tried to reach the network, which fails the build with a message saying
//! so, whatever the step's exit code (a step that swallows the error still
//! fails: the build must not depend on the network at all). No seccomp, no
//! ptrace, no parsing of the program's messages.
//!
//! Loopback: with `lo` down, IPv6 attempts fail with `EADDRNOTAVAIL` and are
//! not counted; with `lo` fully up, a DNS query to 127.0.0.1 (where resolvers
//! go without a resolv.conf) is "local" and not counted either. So build and
//! test steps get `lo` up with its IPv4 address removed: every IPv4
//! destination and every IPv6 destination but `::1` fails and counts, and a
//! step may still talk to a server it starts itself on `[::1]`. Verify runs
//! get a complete loopback, since the health probe must reach the program.
//!
//! **Fixed clock.** Linux has no namespace for the wall clock, so "fixed" means
//! `SOURCE_DATE_EPOCH` in the environment (which reproducible tools honour)
//! and every mtime in the layers set to it.
//!
//! Needs root (mount and namespace creation); the error says so otherwise.

use crate::error::{ImageError, Result};
use std::collections::BTreeMap;
use std::ffi::CString;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The hostname inside every sandbox.
pub const HOSTNAME: &str = "glint-sandbox";

/// Setup stages, in the order the child performs them (index = stage byte).
const STAGES: &[&str] = &[
    "join the network namespace",
    "create the namespaces (needs root)",
    "set the parent-death signal",
    "set the hostname",
    "make mounts private",
    "mount the image root (overlayfs)",
    "bind-mount the image root read-only",
    "mount /proc",
    "mount /dev",
    "create device nodes",
    "pivot into the image root",
    "change to the working directory",
];

/// A network namespace held open by a descriptor, with only a loopback interface.
pub(crate) struct NetNs {
    fd: OwnedFd,
}

/// How much loopback a sandbox gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Loopback {
    /// `lo` up with `::1` only: every IPv4 destination, 127.0.0.1 included
    /// (where resolvers send DNS queries when there is no resolv.conf), and
    /// every IPv6 destination but `::1` fail with `ENETUNREACH` and are
    /// counted. Build and test steps.
    Ipv6Only,
    /// `lo` up with 127.0.0.1 and `::1`: the health probe reaches the program.
    /// Verify runs.
    Full,
}

impl NetNs {
    /// Creates a network namespace with only a loopback interface.
    pub(crate) fn new(loopback: Loopback) -> Result<NetNs> {
        let handle = std::thread::spawn(move || -> io::Result<OwnedFd> {
            // SAFETY: plain syscalls on this thread only (network namespaces
            // are per thread, so the rest of the process is unaffected; the
            // thread ends right after).
            unsafe {
                if libc::unshare(libc::CLONE_NEWNET) != 0 {
                    return Err(io::Error::last_os_error());
                }
                loopback_up()?;
                if loopback == Loopback::Ipv6Only {
                    delete_ipv4_loopback()?;
                }
                let fd = libc::open(
                    c"/proc/thread-self/ns/net".as_ptr(),
                    libc::O_RDONLY | libc::O_CLOEXEC,
                );
                if fd < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(OwnedFd::from_raw_fd(fd))
            }
        });
        let fd = join(handle)
            .and_then(|r| r)
            .map_err(|source| ImageError::Sandbox {
                stage: "create a network namespace (needs root)".into(),
                source,
            })?;
        Ok(NetNs { fd })
    }

    /// Runs `f` on a thread inside the namespace.
    pub(crate) fn run_in<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> io::Result<T> {
        let fd = self.fd.try_clone()?;
        let handle = std::thread::spawn(move || -> io::Result<T> {
            // SAFETY: setns on this thread only, with a namespace descriptor we own.
            if unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(f())
        });
        join(handle).and_then(|r| r)
    }

    /// How many times a connection or a send failed for lack of a route
    /// (IPv4 and IPv6): the attempts to reach something outside the sandbox.
    pub(crate) fn blocked_attempts(&self) -> Result<u64> {
        self.run_in(|| -> io::Result<u64> {
            let snmp = std::fs::read_to_string("/proc/thread-self/net/snmp")?;
            let snmp6 = std::fs::read_to_string("/proc/thread-self/net/snmp6").unwrap_or_default();
            Ok(out_no_routes(&snmp, &snmp6))
        })
        .and_then(|r| r)
        .map_err(|source| ImageError::Sandbox {
            stage: "read the sandbox's network counters".into(),
            source,
        })
    }
}

fn join<T>(h: JoinHandle<io::Result<T>>) -> io::Result<io::Result<T>> {
    h.join()
        .map_err(|_| io::Error::other("namespace helper thread panicked"))
}

/// Sum of `Ip: OutNoRoutes` and `Ip6OutNoRoutes`.
fn out_no_routes(snmp: &str, snmp6: &str) -> u64 {
    let mut lines = snmp.lines().filter(|l| l.starts_with("Ip:"));
    let v4 = match (lines.next(), lines.next()) {
        (Some(names), Some(values)) => names
            .split_whitespace()
            .position(|n| n == "OutNoRoutes")
            .and_then(|i| values.split_whitespace().nth(i))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0),
        _ => 0,
    };
    let v6 = snmp6
        .lines()
        .find_map(|l| {
            let mut it = l.split_whitespace();
            (it.next() == Some("Ip6OutNoRoutes"))
                .then(|| it.next().and_then(|v| v.parse::<u64>().ok()))
                .flatten()
        })
        .unwrap_or(0);
    v4 + v6
}

/// Brings `lo` up in the calling thread's network namespace.
///
/// # Safety
/// Plain socket and ioctl syscalls; safe to call on any thread.
unsafe fn loopback_up() -> io::Result<()> {
    // SAFETY: see the function's contract; `ifreq` is plain old data.
    unsafe {
        let sock = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if sock < 0 {
            return Err(io::Error::last_os_error());
        }
        let sock = OwnedFd::from_raw_fd(sock);
        let mut req: libc::ifreq = std::mem::zeroed();
        for (d, s) in req.ifr_name.iter_mut().zip(b"lo\0") {
            *d = *s as libc::c_char;
        }
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) != 0 {
            return Err(io::Error::last_os_error());
        }
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Removes `127.0.0.1/8` from `lo` in the calling thread's network namespace
/// (an rtnetlink `RTM_DELADDR`; the kernel adds that address when `lo` comes up).
///
/// # Safety
/// Plain socket syscalls; safe to call on any thread.
unsafe fn delete_ipv4_loopback() -> io::Result<()> {
    // SAFETY: see the function's contract; buffers are plain bytes of the sizes given.
    unsafe {
        let sock = libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        );
        if sock < 0 {
            return Err(io::Error::last_os_error());
        }
        let sock = OwnedFd::from_raw_fd(sock);
        let index = libc::if_nametoindex(c"lo".as_ptr());
        if index == 0 {
            return Err(io::Error::last_os_error());
        }
        // nlmsghdr (16) + ifaddrmsg (8) + rtattr IFA_LOCAL (4 + 4).
        let mut req = [0u8; 32];
        req[0..4].copy_from_slice(&32u32.to_ne_bytes());
        req[4..6].copy_from_slice(&libc::RTM_DELADDR.to_ne_bytes());
        let flags = (libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16;
        req[6..8].copy_from_slice(&flags.to_ne_bytes());
        req[8..12].copy_from_slice(&1u32.to_ne_bytes());
        req[16] = libc::AF_INET as u8;
        req[17] = 8;
        req[20..24].copy_from_slice(&index.to_ne_bytes());
        req[24..26].copy_from_slice(&8u16.to_ne_bytes());
        req[26..28].copy_from_slice(&libc::IFA_LOCAL.to_ne_bytes());
        req[28..32].copy_from_slice(&[127, 0, 0, 1]);
        if libc::send(sock.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut ack = [0u8; 512];
        let n = libc::recv(sock.as_raw_fd(), ack.as_mut_ptr().cast(), ack.len(), 0);
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        // An NLMSG_ERROR message carries the errno (negative) right after its header.
        let kind = u16::from_ne_bytes([ack[4], ack[5]]);
        if n >= 20 && i32::from(kind) == libc::NLMSG_ERROR {
            let errno = i32::from_ne_bytes([ack[16], ack[17], ack[18], ack[19]]);
            if errno != 0 {
                return Err(io::Error::from_raw_os_error(-errno));
            }
        }
    }
    Ok(())
}

/// What the sandbox's root is.
#[derive(Debug, Clone)]
pub(crate) enum Root {
    /// An overlay: `lower` read-only, writes land in `upper` (the step's diff).
    Overlay {
        lower: PathBuf,
        upper: PathBuf,
        work: PathBuf,
        merged: PathBuf,
    },
    /// The directory itself, bound read-only (an instance's view).
    ReadOnly(PathBuf),
}

/// A program to run in a sandbox.
#[derive(Debug, Clone)]
pub(crate) struct Spec {
    pub argv: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub workdir: String,
    pub root: Root,
}

/// Everything the child needs, prepared before the fork (no allocation after it).
struct Prepared {
    netns: RawFd,
    stage_fd: RawFd,
    hostname: CString,
    overlay: Option<(CString, CString)>,
    readonly: Option<CString>,
    new_root: CString,
    proc_dir: Option<CString>,
    dev_dir: Option<CString>,
    dev_nodes: Vec<(CString, u32, u32)>,
    mkdirs: Vec<CString>,
    workdir: CString,
}

fn c(s: impl AsRef<[u8]>) -> Result<CString> {
    CString::new(s.as_ref().to_vec())
        .map_err(|_| ImageError::invalid("sandbox path", "contains NUL"))
}

fn cpath(p: &Path) -> Result<CString> {
    c(p.as_os_str().as_bytes())
}

impl Prepared {
    fn new(spec: &Spec, netns: RawFd, stage_fd: RawFd) -> Result<Prepared> {
        let (new_root, lower_root) = match &spec.root {
            Root::Overlay { lower, merged, .. } => (merged.clone(), lower.clone()),
            Root::ReadOnly(root) => (root.clone(), root.clone()),
        };
        let overlay = match &spec.root {
            Root::Overlay {
                lower,
                upper,
                work,
                merged,
            } => {
                let opts = format!(
                    "lowerdir={},upperdir={},workdir={},redirect_dir=off,metacopy=off,index=off",
                    lower.display(),
                    upper.display(),
                    work.display()
                );
                Some((cpath(merged)?, c(opts)?))
            }
            Root::ReadOnly(_) => None,
        };
        let readonly = match &spec.root {
            Root::ReadOnly(root) => Some(cpath(root)?),
            Root::Overlay { .. } => None,
        };
        let is_dir = |name: &str| {
            lower_root
                .join(name)
                .symlink_metadata()
                .is_ok_and(|m| m.is_dir())
        };
        // On an overlay, missing /proc and /dev are created (in the upper
        // directory; the builder leaves them out of the layer), so steps
        // always have them. A read-only root goes without.
        let overlay_root = matches!(spec.root, Root::Overlay { .. });
        let mut mkdirs = Vec::new();
        for d in ["proc", "dev"] {
            if overlay_root && !is_dir(d) {
                mkdirs.push(cpath(&new_root.join(d))?);
            }
        }
        let has_dir = |name: &str| overlay_root || is_dir(name);
        let proc_dir = if has_dir("proc") {
            Some(cpath(&new_root.join("proc"))?)
        } else {
            None
        };
        let (dev_dir, dev_nodes) = if has_dir("dev") {
            let nodes = [
                ("null", 1, 3),
                ("zero", 1, 5),
                ("full", 1, 7),
                ("random", 1, 8),
                ("urandom", 1, 9),
                ("tty", 5, 0),
            ]
            .into_iter()
            .map(|(n, a, b)| Ok((cpath(&new_root.join("dev").join(n))?, a, b)))
            .collect::<Result<Vec<_>>>()?;
            (Some(cpath(&new_root.join("dev"))?), nodes)
        } else {
            (None, Vec::new())
        };
        Ok(Prepared {
            netns,
            stage_fd,
            hostname: c(HOSTNAME)?,
            overlay,
            readonly,
            new_root: cpath(&new_root)?,
            proc_dir,
            dev_dir,
            dev_nodes,
            mkdirs,
            workdir: c(if spec.workdir.is_empty() {
                "/"
            } else {
                &spec.workdir
            })?,
        })
    }

    /// Runs in the forked child. Only async-signal-safe calls, no allocation.
    fn child(&self) -> io::Result<()> {
        macro_rules! fail {
            ($stage:expr) => {{
                let err = io::Error::last_os_error();
                let b = [$stage as u8];
                // SAFETY: writing one byte to the stage pipe.
                unsafe { libc::write(self.stage_fd, b.as_ptr().cast(), 1) };
                return Err(err);
            }};
        }
        macro_rules! check {
            ($stage:expr, $call:expr) => {
                // SAFETY: raw syscalls with pointers into `self`, which outlives them.
                if unsafe { $call } < 0 {
                    fail!($stage);
                }
            };
        }
        let null = std::ptr::null::<libc::c_char>();
        check!(0, libc::setns(self.netns, libc::CLONE_NEWNET));
        let flags = libc::CLONE_NEWNS
            | libc::CLONE_NEWPID
            | libc::CLONE_NEWUTS
            | libc::CLONE_NEWIPC
            | libc::SIGCHLD;
        // SAFETY: fork-like clone (no stack, no shared memory): the child
        // continues below on a copy of this single-threaded process.
        let pid = unsafe {
            libc::syscall(
                libc::SYS_clone,
                flags as libc::c_ulong,
                0usize,
                0usize,
                0usize,
                0usize,
            )
        };
        if pid < 0 {
            fail!(1);
        }
        if pid > 0 {
            // The intermediate: wait for PID 1 of the sandbox and pass its status on.
            // SAFETY: closing our own descriptors; waitpid on our child; _exit.
            unsafe {
                libc::syscall(
                    libc::SYS_close_range,
                    3 as libc::c_ulong,
                    libc::c_ulong::from(u32::MAX),
                    0 as libc::c_ulong,
                );
                let mut status = 0;
                loop {
                    let r = libc::waitpid(pid as libc::pid_t, &mut status, 0);
                    if r >= 0 || *libc::__errno_location() != libc::EINTR {
                        break;
                    }
                }
                let code = if libc::WIFEXITED(status) {
                    libc::WEXITSTATUS(status)
                } else if libc::WIFSIGNALED(status) {
                    128 + libc::WTERMSIG(status)
                } else {
                    255
                };
                libc::_exit(code);
            }
        }
        check!(
            2,
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0)
        );
        check!(
            3,
            libc::sethostname(self.hostname.as_ptr(), self.hostname.as_bytes().len())
        );
        check!(
            4,
            libc::mount(
                null,
                c"/".as_ptr(),
                null,
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null()
            )
        );
        if let Some((merged, opts)) = &self.overlay {
            check!(
                5,
                libc::mount(
                    c"overlay".as_ptr(),
                    merged.as_ptr(),
                    c"overlay".as_ptr(),
                    0,
                    opts.as_ptr().cast()
                )
            );
        }
        if let Some(root) = &self.readonly {
            check!(
                6,
                libc::mount(
                    root.as_ptr(),
                    root.as_ptr(),
                    null,
                    libc::MS_BIND | libc::MS_REC,
                    std::ptr::null()
                )
            );
            check!(
                6,
                libc::mount(
                    null,
                    root.as_ptr(),
                    null,
                    libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY,
                    std::ptr::null()
                )
            );
        }
        for d in &self.mkdirs {
            check!(7, libc::mkdir(d.as_ptr(), 0o755));
        }
        if let Some(p) = &self.proc_dir {
            check!(
                7,
                libc::mount(
                    c"proc".as_ptr(),
                    p.as_ptr(),
                    c"proc".as_ptr(),
                    libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                    std::ptr::null()
                )
            );
        }
        if let Some(d) = &self.dev_dir {
            check!(
                8,
                libc::mount(
                    c"tmpfs".as_ptr(),
                    d.as_ptr(),
                    c"tmpfs".as_ptr(),
                    libc::MS_NOSUID | libc::MS_NOEXEC,
                    c"mode=755,size=64k".as_ptr().cast()
                )
            );
            for (node, major, minor) in &self.dev_nodes {
                check!(
                    9,
                    libc::mknod(
                        node.as_ptr(),
                        libc::S_IFCHR | 0o666,
                        libc::makedev(*major, *minor)
                    )
                );
            }
        }
        // pivot_root(".", ".") stacks the old root under the new one; detaching
        // it leaves nothing of the host visible (no put_old directory needed,
        // so the image is not modified).
        check!(10, libc::chdir(self.new_root.as_ptr()));
        check!(
            10,
            libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr())
        );
        check!(10, libc::umount2(c".".as_ptr(), libc::MNT_DETACH));
        check!(10, libc::chdir(c"/".as_ptr()));
        check!(11, libc::chdir(self.workdir.as_ptr()));
        Ok(())
    }
}

/// A running sandboxed program.
pub(crate) struct Running {
    child: Child,
    output: JoinHandle<Vec<u8>>,
}

/// How a sandboxed program ended, with its combined stdout and stderr.
#[derive(Debug)]
pub(crate) struct Finished {
    pub status: ExitStatus,
    pub output: String,
}

impl Finished {
    /// "exit code 3".
    pub(crate) fn describe(&self) -> String {
        match self.status.code() {
            Some(c) if c > 128 => format!("exit code {c}, killed by signal {}", c - 128),
            Some(c) => format!("exit code {c}"),
            None => "killed".to_owned(),
        }
    }
}

/// Keeps at most this much output per program (the end is what matters).
const OUTPUT_LIMIT: usize = 64 * 1024;

/// Starts `spec` in a sandbox joined to `netns`.
pub(crate) fn spawn(spec: &Spec, netns: &NetNs) -> Result<Running> {
    let Some(program) = spec.argv.first() else {
        return Err(ImageError::invalid("command", "empty argv"));
    };
    let (stage_r, stage_w) = pipe_cloexec().map_err(|source| ImageError::Sandbox {
        stage: "create a pipe".into(),
        source,
    })?;
    let prepared = Prepared::new(spec, netns.fd.as_raw_fd(), stage_w.as_raw_fd())?;
    let (out_r, out_w) = io::pipe().map_err(|source| ImageError::Sandbox {
        stage: "create a pipe".into(),
        source,
    })?;
    let out_w2 = out_w.try_clone().map_err(|source| ImageError::Sandbox {
        stage: "create a pipe".into(),
        source,
    })?;
    let mut cmd = Command::new(program);
    cmd.args(&spec.argv[1..])
        .env_clear()
        .envs(&spec.env)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out_w))
        .stderr(Stdio::from(out_w2));
    // SAFETY: the closure only makes async-signal-safe syscalls on prepared data.
    unsafe {
        cmd.pre_exec(move || prepared.child());
    }
    let spawned = cmd.spawn();
    drop(cmd);
    drop(stage_w);
    let mut stage = [0u8; 1];
    let stage_read = (&stage_r).read(&mut stage).unwrap_or(0);
    let child = match spawned {
        Ok(c) => c,
        Err(source) => {
            let stage = if stage_read == 1 {
                STAGES
                    .get(usize::from(stage[0]))
                    .copied()
                    .unwrap_or("set up")
            } else {
                "start the program"
            };
            let stage = if stage == "start the program" {
                format!("start `{program}` inside the image (is it in the image?)")
            } else {
                stage.to_owned()
            };
            return Err(ImageError::Sandbox { stage, source });
        }
    };
    let output = std::thread::spawn(move || {
        let mut out_r = out_r;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            match out_r.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    if buf.len() > 2 * OUTPUT_LIMIT {
                        buf.drain(..buf.len() - OUTPUT_LIMIT);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        if buf.len() > OUTPUT_LIMIT {
            buf.drain(..buf.len() - OUTPUT_LIMIT);
        }
        buf
    });
    Ok(Running { child, output })
}

fn pipe_cloexec() -> io::Result<(std::fs::File, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two descriptors we then own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors are fresh and owned by nobody else.
    unsafe {
        Ok((
            std::fs::File::from_raw_fd(fds[0]),
            OwnedFd::from_raw_fd(fds[1]),
        ))
    }
}

impl Running {
    /// Waits for the program to end.
    pub(crate) fn wait(mut self) -> Result<Finished> {
        let status = self.child.wait().map_err(|source| ImageError::Sandbox {
            stage: "wait for the program".into(),
            source,
        })?;
        self.finish(status)
    }

    /// Whether it has ended already.
    pub(crate) fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Kills the whole sandbox and waits for it.
    pub(crate) fn kill(mut self) -> Result<Finished> {
        let _ = self.child.kill();
        self.wait()
    }

    fn finish(self, status: ExitStatus) -> Result<Finished> {
        let output = self.output.join().unwrap_or_default();
        Ok(Finished {
            status,
            output: String::from_utf8_lossy(&output).into_owned(),
        })
    }
}

/// Runs `spec` to completion in a fresh network namespace; returns how it
/// ended and how many network attempts were blocked.
pub(crate) fn run(spec: &Spec) -> Result<(Finished, u64)> {
    let netns = NetNs::new(Loopback::Ipv6Only)?;
    let finished = spawn(spec, &netns)?.wait()?;
    let attempts = netns.blocked_attempts()?;
    Ok((finished, attempts))
}

/// What `build --verify` probes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthProbe {
    /// An HTTP GET of this path must answer 2xx or 3xx.
    Http(String),
    /// A TCP connection must be accepted.
    Tcp,
}

/// Probes `port` on the sandbox's loopback once.
pub(crate) fn probe_once(netns: &NetNs, port: u16, probe: &HealthProbe, timeout: Duration) -> bool {
    let probe = probe.clone();
    netns
        .run_in(move || {
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let Ok(mut s) = TcpStream::connect_timeout(&addr, timeout) else {
                return false;
            };
            match probe {
                HealthProbe::Tcp => true,
                HealthProbe::Http(path) => {
                    let _ = s.set_read_timeout(Some(timeout));
                    let _ = s.set_write_timeout(Some(timeout));
                    let req = format!(
                        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nUser-Agent: glint-verify\r\n\r\n"
                    );
                    if s.write_all(req.as_bytes()).is_err() {
                        return false;
                    }
                    let _ = s.shutdown(Shutdown::Write);
                    let mut head = [0u8; 16];
                    let mut got = 0;
                    let deadline = Instant::now() + timeout;
                    while got < 12 && Instant::now() < deadline {
                        match s.read(&mut head[got..]) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => got += n,
                        }
                    }
                    let line = String::from_utf8_lossy(&head[..got]);
                    line.starts_with("HTTP/1.")
                        && matches!(line.get(9..10), Some("2") | Some("3"))
                }
            }
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_ipv4_and_ipv6_no_route_failures() {
        let snmp = "Ip: Forwarding DefaultTTL OutRequests OutNoRoutes\nIp: 1 64 0 2\nIcmp: InMsgs\nIcmp: 0\n";
        let snmp6 = "Ip6InReceives 0\nIp6OutNoRoutes                  \t3\n";
        assert_eq!(out_no_routes(snmp, snmp6), 5);
        assert_eq!(out_no_routes("", ""), 0);
    }
}
