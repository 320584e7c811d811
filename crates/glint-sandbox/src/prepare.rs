//! The caller's side: a [`Plan`] turned into [`Prepared`], everything the
//! child will need as C strings, pointer arrays and descriptors, made before
//! the clone (the child may not allocate).
//!
//! Every check that can be made here is made here, so that a bad plan fails
//! before anything is started: absolute, link-free paths; paths overlayfs
//! can take; bind targets that do not overlap; mount points that exist or can
//! be made (see [`crate::mount_points`]).

use crate::error::SandboxError;
use crate::init;
use crate::mount_points::{self, Kind, Lookup};
use crate::plan::{Bind, Command, Network, Pid1, Plan, Root, User};
use std::ffi::{CString, c_char, c_int};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Descriptors the child uses are duplicated to at least this number, so
/// that placing them at 0–6 and the held ones from 7 (at most
/// [`crate::MAX_HELD`]) cannot overwrite one another.
const FD_FLOOR: c_int = 64;

/// How the root is mounted.
pub(crate) enum RootMount {
    /// `mount("overlay", target, "overlay", flags, opts)`.
    Overlay {
        target: CString,
        opts: CString,
        flags: libc::c_ulong,
    },
    /// `source` bound onto `target` (often itself), then made read-only if
    /// asked.
    Bind {
        source: CString,
        target: CString,
        read_only: bool,
    },
}

/// A mount point the child creates in a writable root.
pub(crate) struct MakePoint {
    pub path: CString,
    pub kind: Kind,
}

/// `/dev` and what goes in it.
pub(crate) struct DevMount {
    pub dir: CString,
    pub nodes: Vec<(CString, u32, u32)>,
    pub links: Vec<(CString, CString)>,
    pub shm: Option<CString>,
}

/// A bind the child makes.
pub(crate) struct BindMount {
    pub source: CString,
    pub target: CString,
    pub read_only: bool,
}

/// What `execve` is given, as raw arrays (held alive by `_strings`).
pub(crate) struct RawExec {
    pub candidates: Vec<CString>,
    pub argv: Vec<*const c_char>,
    pub envp: Vec<*const c_char>,
    pub user: Option<User>,
    _strings: Vec<CString>,
}

impl RawExec {
    /// Arrays over `argv` and `envp` (each ending with a null pointer), which
    /// it keeps alive.
    pub(crate) fn new(
        candidates: Vec<CString>,
        argv: Vec<CString>,
        envp: Vec<CString>,
        user: Option<User>,
    ) -> RawExec {
        let ptrs = |v: &[CString]| -> Vec<*const c_char> {
            v.iter()
                .map(|c| c.as_ptr())
                .chain(std::iter::once(std::ptr::null()))
                .collect()
        };
        let (argv_ptrs, envp_ptrs) = (ptrs(&argv), ptrs(&envp));
        let mut strings = argv;
        strings.extend(envp);
        RawExec {
            candidates,
            argv: argv_ptrs,
            envp: envp_ptrs,
            user,
            _strings: strings,
        }
    }
}

/// The descriptors of an init-mode sandbox.
pub(crate) struct InitFds {
    /// The status file (placed at [`init::FD_STATUS`]).
    pub status: OwnedFd,
    /// The memfd holding what the init runs ([`init::FD_SPEC`]).
    pub spec: OwnedFd,
    /// This executable ([`init::FD_EXE`]).
    pub exe: OwnedFd,
    /// `argv` of the init.
    pub argv: [*const c_char; 3],
    /// Its (empty) environment.
    pub envp: [*const c_char; 1],
}

/// Everything the child reads. Built by [`prepare`].
pub(crate) struct Prepared {
    pub new_network: bool,
    pub cgroup_into: Option<OwnedFd>,
    pub die_with_parent: bool,
    pub netns: Option<OwnedFd>,
    pub cgroup_join: Vec<OwnedFd>,
    /// Descriptors placed after the protocol's, kept by PID 1.
    pub held: Vec<OwnedFd>,
    pub stdin: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
    pub errors: OwnedFd,
    pub root: RootMount,
    pub make_points: Vec<MakePoint>,
    pub proc_: Option<CString>,
    pub dev: Option<DevMount>,
    pub tmp: Option<CString>,
    pub binds: Vec<BindMount>,
    pub hostname: CString,
    pub new_root: CString,
    pub workdir: CString,
    /// Program mode: what the child executes.
    pub exec: Option<RawExec>,
    /// Init mode: the init's descriptors and arguments.
    pub init: Option<InitFds>,
    pub all_signals: libc::sigset_t,
    pub no_signals: libc::sigset_t,
}

pub(crate) fn cstr(bytes: &[u8], what: &str) -> Result<CString, SandboxError> {
    CString::new(bytes).map_err(|_| SandboxError::Invalid {
        reason: format!(
            "{what} `{}` contains a NUL byte",
            String::from_utf8_lossy(bytes)
        ),
    })
}

fn path_c(p: &Path, what: &str) -> Result<CString, SandboxError> {
    cstr(p.as_os_str().as_bytes(), what)
}

fn canonical(p: &Path, what: &str) -> Result<PathBuf, SandboxError> {
    std::fs::canonicalize(p).map_err(|source| SandboxError::Prepare {
        what: format!("cannot find the {what}"),
        path: p.to_owned(),
        source,
    })
}

/// Overlayfs splits its options on `,` and `:` and unescapes `\`.
fn overlay_safe(p: &Path, what: &str) -> Result<(), SandboxError> {
    if p.as_os_str()
        .as_bytes()
        .iter()
        .any(|b| matches!(b, b',' | b':' | b'\\'))
    {
        return Err(SandboxError::Invalid {
            reason: format!(
                "the {what} path {} contains `,`, `:` or `\\`, which overlay mounts cannot take",
                p.display()
            ),
        });
    }
    Ok(())
}

/// Duplicates `fd` to a number of at least [`FD_FLOOR`], close-on-exec.
fn high(fd: OwnedFd) -> Result<OwnedFd, SandboxError> {
    if fd.as_raw_fd() >= FD_FLOOR {
        return Ok(fd);
    }
    // SAFETY: F_DUPFD_CLOEXEC returns a fresh descriptor that we then own.
    let n = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, FD_FLOOR) };
    if n < 0 {
        return Err(SandboxError::Prepare {
            what: "cannot duplicate a descriptor".into(),
            path: PathBuf::new(),
            source: io::Error::last_os_error(),
        });
    }
    // SAFETY: `n` is a new descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(n) })
}

fn join_inside(root: &Path, parts: &[PathBuf]) -> PathBuf {
    parts.iter().fold(root.to_owned(), |p, c| p.join(c))
}

/// The kernel filesystems in `/dev`.
const DEVICES: [(&str, u32, u32); 6] = [
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];
const DEV_LINKS: [(&str, &str); 4] = [
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
];

/// The layers a root shows, topmost first, and where it is mounted.
struct RootView {
    layers: Vec<PathBuf>,
    new_root: PathBuf,
    writable: bool,
    mount_points: Option<PathBuf>,
}

/// Decides, for one mount target, how its mount point comes to exist.
/// `Ok(false)`: it cannot, and the mount is to be skipped.
fn ensure_point(
    view: &RootView,
    target: &Path,
    kind: Kind,
    required: bool,
    make_points: &mut Vec<MakePoint>,
) -> Result<bool, SandboxError> {
    let parts = mount_points::components(target, "mount target")?;
    let from = match mount_points::lookup(&view.layers, &parts, kind, target)? {
        Lookup::Present => return Ok(true),
        Lookup::Missing { from } => from,
    };
    if let Some(dir) = &view.mount_points {
        mount_points::make_in(dir, &parts, kind)?;
        return Ok(true);
    }
    if view.writable {
        for i in from..parts.len() {
            let last = i + 1 == parts.len();
            make_points.push(MakePoint {
                path: path_c(&join_inside(&view.new_root, &parts[..=i]), "mount point")?,
                kind: if last { kind } else { Kind::Dir },
            });
        }
        return Ok(true);
    }
    if required {
        return Err(SandboxError::Invalid {
            reason: format!(
                "mount target `{}` does not exist in the root, which is read-only (give the plan a mount-point directory)",
                target.display()
            ),
        });
    }
    Ok(false)
}

fn raw_exec(command: &Command, user: Option<User>) -> Result<RawExec, SandboxError> {
    let candidates = command
        .candidates
        .iter()
        .map(|c| path_c(c, "program"))
        .collect::<Result<Vec<_>, _>>()?;
    let argv_c = command
        .argv
        .iter()
        .map(|a| cstr(a.as_bytes(), "argument"))
        .collect::<Result<Vec<_>, _>>()?;
    let envp_c = command
        .env
        .iter()
        .map(|(k, v)| env_entry(k, v))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RawExec::new(candidates, argv_c, envp_c, user))
}

fn env_entry(k: &str, v: &str) -> Result<CString, SandboxError> {
    if k.is_empty() || k.contains('=') {
        return Err(SandboxError::Invalid {
            reason: format!("environment variable name `{k}` is empty or contains `=`"),
        });
    }
    cstr(format!("{k}={v}").as_bytes(), "environment variable")
}

/// Writes what the init runs into a memfd (format: see [`init`]).
fn init_spec(command: &Command, user: Option<User>) -> Result<OwnedFd, SandboxError> {
    let mut buf = Vec::new();
    buf.extend_from_slice(init::SPEC_MAGIC);
    let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    for n in [
        count(command.candidates.len()),
        count(command.argv.len()),
        count(command.env.len()),
        u32::from(user.is_some()),
        user.map(|u| u.uid).unwrap_or(0),
        user.map(|u| u.gid).unwrap_or(0),
    ] {
        buf.extend_from_slice(&n.to_ne_bytes());
    }
    for c in &command.candidates {
        buf.extend_from_slice(path_c(c, "program")?.as_bytes_with_nul());
    }
    for a in &command.argv {
        buf.extend_from_slice(cstr(a.as_bytes(), "argument")?.as_bytes_with_nul());
    }
    for (k, v) in &command.env {
        buf.extend_from_slice(env_entry(k, v)?.as_bytes_with_nul());
    }
    let io = |what: &str, source| SandboxError::Prepare {
        what: what.to_owned(),
        path: PathBuf::from("memfd:glint-sandbox-init"),
        source,
    };
    // SAFETY: memfd_create returns a fresh descriptor that we then own.
    let fd = unsafe { libc::memfd_create(c"glint-sandbox-init".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(io("cannot create", io::Error::last_os_error()));
    }
    // SAFETY: as above.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut file = std::fs::File::from(fd);
    file.write_all(&buf).map_err(|e| io("cannot write", e))?;
    Ok(file.into())
}

fn open_exe() -> Result<OwnedFd, SandboxError> {
    // The running executable, even if its file was replaced since it started.
    let exe = Path::new("/proc/self/exe");
    std::fs::File::open(exe)
        .map(OwnedFd::from)
        .map_err(|source| SandboxError::Prepare {
            what: "cannot open the running executable".into(),
            path: exe.to_owned(),
            source,
        })
}

fn check_binds(binds: &[Bind], plan: &Plan) -> Result<(), SandboxError> {
    let mut own: Vec<&str> = Vec::new();
    if plan.mounts.proc_ {
        own.push("/proc");
    }
    if plan.mounts.dev {
        own.push("/dev");
    }
    if plan.mounts.tmp {
        own.push("/tmp");
    }
    for (i, b) in binds.iter().enumerate() {
        mount_points::components(&b.target, "bind target")?;
        if b.target == Path::new("/") {
            return Err(SandboxError::Invalid {
                reason: "a bind cannot replace the root `/`".into(),
            });
        }
        if let Some(m) = own.iter().find(|m| b.target.starts_with(m)) {
            return Err(SandboxError::Invalid {
                reason: format!(
                    "bind target `{}` is inside the sandbox's own {m}",
                    b.target.display()
                ),
            });
        }
        for other in &binds[i + 1..] {
            if b.target.starts_with(&other.target) || other.target.starts_with(&b.target) {
                return Err(SandboxError::Invalid {
                    reason: format!(
                        "bind targets `{}` and `{}` overlap",
                        b.target.display(),
                        other.target.display()
                    ),
                });
            }
        }
    }
    Ok(())
}

/// Builds everything the child needs from `plan`; `errors` is the write end
/// of the error pipe.
pub(crate) fn prepare(plan: Plan, errors: OwnedFd) -> Result<Prepared, SandboxError> {
    if plan.command.argv.is_empty() {
        return Err(SandboxError::Invalid {
            reason: "the command line (argv) is empty".into(),
        });
    }
    if plan.command.candidates.is_empty() {
        return Err(SandboxError::Invalid {
            reason: "no program to execute".into(),
        });
    }
    check_binds(&plan.binds, &plan)?;
    if plan.held.len() > crate::MAX_HELD {
        return Err(SandboxError::Invalid {
            reason: format!(
                "{} descriptors to hold; at most {} can be",
                plan.held.len(),
                crate::MAX_HELD
            ),
        });
    }
    let (root, view) = match &plan.root {
        Root::Overlay {
            lower,
            upper,
            target,
            mount_points,
        } => {
            let target = canonical(target, "root mount point")?;
            let mut layers = Vec::new();
            let points = match mount_points {
                Some(d) => {
                    let d = canonical(d, "mount-point directory")?;
                    overlay_safe(&d, "mount-point directory")?;
                    layers.push(d.clone());
                    Some(d)
                }
                None => None,
            };
            for l in lower {
                let l = canonical(l, "root layer")?;
                overlay_safe(&l, "root layer")?;
                layers.push(l);
            }
            let view = RootView {
                layers: layers.clone(),
                new_root: target.clone(),
                writable: upper.is_some(),
                mount_points: points,
            };
            (
                RootPlan::Overlay {
                    target,
                    upper: match upper {
                        Some(u) => {
                            let (up, work) = (
                                canonical(&u.upper, "upper directory")?,
                                canonical(&u.work, "work directory")?,
                            );
                            overlay_safe(&up, "upper directory")?;
                            overlay_safe(&work, "work directory")?;
                            Some((up, work))
                        }
                        None => None,
                    },
                },
                view,
            )
        }
        Root::Bind { dir, read_only } => {
            let dir = canonical(dir, "root directory")?;
            let view = RootView {
                layers: vec![dir.clone()],
                new_root: dir.clone(),
                writable: !read_only,
                mount_points: None,
            };
            (
                RootPlan::Bind {
                    dir,
                    read_only: *read_only,
                },
                view,
            )
        }
    };
    let mut make_points = Vec::new();
    let new_root = view.new_root.clone();
    let inside = |rel: &str| new_root.join(rel);
    let mounts = plan.mounts;
    let proc_ = if mounts.proc_
        && ensure_point(
            &view,
            Path::new("/proc"),
            Kind::Dir,
            false,
            &mut make_points,
        )? {
        Some(path_c(&inside("proc"), "mount point")?)
    } else {
        None
    };
    let dev = if mounts.dev
        && ensure_point(&view, Path::new("/dev"), Kind::Dir, false, &mut make_points)?
    {
        let dev = inside("dev");
        Some(DevMount {
            dir: path_c(&dev, "mount point")?,
            nodes: DEVICES
                .iter()
                .map(|(n, a, b)| Ok((path_c(&dev.join(n), "device")?, *a, *b)))
                .collect::<Result<_, SandboxError>>()?,
            links: DEV_LINKS
                .iter()
                .map(|(n, t)| Ok((path_c(&dev.join(n), "link")?, cstr(t.as_bytes(), "link")?)))
                .collect::<Result<_, SandboxError>>()?,
            shm: if mounts.shm {
                Some(path_c(&dev.join("shm"), "mount point")?)
            } else {
                None
            },
        })
    } else {
        None
    };
    let tmp = if mounts.tmp
        && ensure_point(&view, Path::new("/tmp"), Kind::Dir, false, &mut make_points)?
    {
        Some(path_c(&inside("tmp"), "mount point")?)
    } else {
        None
    };
    let mut binds = Vec::new();
    for b in &plan.binds {
        let source = canonical(&b.source, "bind source")?;
        let kind = if source.is_dir() {
            Kind::Dir
        } else {
            Kind::File
        };
        ensure_point(&view, &b.target, kind, true, &mut make_points)?;
        let parts = mount_points::components(&b.target, "bind target")?;
        binds.push(BindMount {
            source: path_c(&source, "bind source")?,
            target: path_c(&join_inside(&view.new_root, &parts), "bind target")?,
            read_only: b.read_only,
        });
    }

    let root = match root {
        RootPlan::Overlay { target, upper } => {
            let mut opts = b"lowerdir=".to_vec();
            for (i, l) in view.layers.iter().enumerate() {
                if i > 0 {
                    opts.push(b':');
                }
                opts.extend_from_slice(l.as_os_str().as_bytes());
            }
            match (&upper, view.layers.as_slice()) {
                (Some((up, work)), _) => {
                    opts.extend_from_slice(b",upperdir=");
                    opts.extend_from_slice(up.as_os_str().as_bytes());
                    opts.extend_from_slice(b",workdir=");
                    opts.extend_from_slice(work.as_os_str().as_bytes());
                    // Plain copies in the upper directory, so that it is a
                    // readable diff of what the program changed.
                    opts.extend_from_slice(b",redirect_dir=off,metacopy=off,index=off");
                    RootMount::Overlay {
                        target: path_c(&target, "root")?,
                        opts: cstr(&opts, "overlay options")?,
                        flags: libc::MS_NODEV,
                    }
                }
                // Overlayfs wants two layers when there is no upper: one
                // read-only layer is the same as binding it read-only.
                (None, [only]) => RootMount::Bind {
                    source: path_c(only, "root")?,
                    target: path_c(&target, "root")?,
                    read_only: true,
                },
                (None, _) => RootMount::Overlay {
                    target: path_c(&target, "root")?,
                    opts: cstr(&opts, "overlay options")?,
                    flags: libc::MS_RDONLY | libc::MS_NODEV,
                },
            }
        }
        RootPlan::Bind { dir, read_only } => RootMount::Bind {
            source: path_c(&dir, "root")?,
            target: path_c(&dir, "root")?,
            read_only,
        },
    };

    let workdir = if plan.workdir.as_os_str().is_empty() {
        PathBuf::from("/")
    } else {
        Path::new("/").join(&plan.workdir)
    };
    let stdin = match plan.stdio.stdin {
        Some(fd) => fd,
        None => std::fs::File::open("/dev/null")
            .map_err(|source| SandboxError::Prepare {
                what: "cannot open".into(),
                path: PathBuf::from("/dev/null"),
                source,
            })?
            .into(),
    };
    let (exec, init) = match plan.pid1 {
        Pid1::Program => (Some(raw_exec(&plan.command, plan.user)?), None),
        Pid1::Init { status } => (
            None,
            Some(InitFds {
                status: high(status.into())?,
                spec: high(init_spec(&plan.command, plan.user)?)?,
                exe: high(open_exe()?)?,
                argv: [
                    init::INIT_ARGV0.as_ptr(),
                    init::INIT_MAGIC.as_ptr(),
                    std::ptr::null(),
                ],
                envp: [std::ptr::null()],
            }),
        ),
    };
    let (netns, new_network) = match plan.network {
        Network::Host => (None, false),
        Network::New => (None, true),
        Network::Join(ns) => (Some(high(ns.into())?), false),
    };
    let cgroup_join = plan
        .cgroups
        .join
        .into_iter()
        .map(high)
        .collect::<Result<Vec<_>, _>>()?;
    let held = plan
        .held
        .into_iter()
        .map(high)
        .collect::<Result<Vec<_>, _>>()?;
    // SAFETY: sigset_t is plain data, initialised by sigfillset/sigemptyset.
    let (all_signals, no_signals) = unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::sigemptyset(&mut none);
        (all, none)
    };
    Ok(Prepared {
        new_network,
        cgroup_into: plan.cgroups.clone_into,
        die_with_parent: plan.die_with_parent,
        netns,
        cgroup_join,
        held,
        stdin: high(stdin)?,
        stdout: high(plan.stdio.stdout)?,
        stderr: high(plan.stdio.stderr)?,
        errors: high(errors)?,
        root,
        make_points,
        proc_,
        dev,
        tmp,
        binds,
        hostname: cstr(plan.hostname.as_bytes(), "hostname")?,
        new_root: path_c(&view.new_root, "root")?,
        workdir: path_c(&workdir, "working directory")?,
        exec,
        init,
        all_signals,
        no_signals,
    })
}

enum RootPlan {
    Overlay {
        target: PathBuf,
        upper: Option<(PathBuf, PathBuf)>,
    },
    Bind {
        dir: PathBuf,
        read_only: bool,
    },
}
