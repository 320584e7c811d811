//! The child side: everything between `clone3` and `execve`, written once.
//!
//! # The rulebook
//!
//! The child is a copy of a multi-threaded process (the conductor, a build):
//! another thread may have held the allocator's lock, a `Mutex`, stdout's
//! lock at the instant of the clone, and nothing will ever release them here.
//! So, until `execve`:
//!
//! 1. **Only async-signal-safe calls**: raw system calls through `libc`
//!    (`mount`, `mknod`, `dup3`, `write`, …). No allocation, no `std::fs`, no
//!    formatting, no `println!`, no locks, no `Drop` that does any of these.
//! 2. **Only memory prepared before the clone** ([`Prepared`]): C strings,
//!    pointer arrays, descriptors. Nothing is computed here that could have
//!    been computed there.
//! 3. **Report, then exit**: a failed step writes `(step, errno)` (8 bytes)
//!    to the error pipe and calls `_exit(126)`; never `exit`, never a panic,
//!    never a return into the caller's code.
//! 4. **Signals stay blocked** (the caller blocked them all across the
//!    clone) until every disposition has been reset to the default, so that
//!    none of the caller's handlers ever runs in the child.
//! 5. **Descriptors are placed, then everything else is closed**: the
//!    standard streams at 0–2, the error pipe at 3 (close-on-exec unless an
//!    init is executed, which reports through it too), the init's status,
//!    instructions and executable at 4–6, the descriptors PID 1 holds (volume
//!    locks) from there on. All sources were duplicated to 64 or above
//!    beforehand, so placing one never overwrites another; the
//!    caller's other descriptors (sockets, databases) are closed before
//!    anything of the sandbox runs.
//!
//! # Order
//!
//! Parent-death signal, descriptors placed, cgroups joined, network joined
//! (or a new one's loopback up), new session, mounts private, root, missing
//! mount points, `/proc`, `/dev` (+ nodes, links, `/dev/shm`), `/tmp`, binds,
//! hostname, `pivot_root(".", ".")` and the old root detached, working
//! directory, other descriptors closed, then `execve` of the program
//! ([`Pid1::Program`](crate::Pid1::Program)) or of the init
//! ([`Pid1::Init`](crate::Pid1::Init), see [`crate::init`]).

use crate::error::Step;
use crate::init;
use crate::mount_points::Kind;
use crate::prepare::{Prepared, RawExec, RootMount};
use std::ffi::{c_char, c_int};
use std::os::fd::AsRawFd;

/// Where the error pipe sits in the child.
pub(crate) const FD_ERRORS: c_int = 3;

/// Wire code of "the init runs" (not a [`Step`]).
pub(crate) const HELLO: u32 = u32::MAX;

/// Writes one record `(code, errno)` to the error pipe at `fd`.
///
/// # Safety
/// Async-signal-safe.
pub(crate) unsafe fn report(fd: c_int, code: u32, errno: c_int) {
    let mut buf = [0u8; 8];
    buf[..4].copy_from_slice(&code.to_ne_bytes());
    buf[4..].copy_from_slice(&errno.to_ne_bytes());
    // SAFETY: writing a stack buffer to a descriptor.
    unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
}

/// The calling thread's errno.
pub(crate) fn errno() -> c_int {
    // SAFETY: the errno location is always valid for the calling thread.
    unsafe { *libc::__errno_location() }
}

/// Reports `step` with `errno` and exits.
///
/// # Safety
/// Async-signal-safe.
pub(crate) unsafe fn fail_with(fd: c_int, step: Step, errno: c_int) -> ! {
    // SAFETY: async-signal-safe calls only.
    unsafe {
        report(fd, step as u32, errno);
        libc::_exit(126)
    }
}

/// Reports `step` with the current errno and exits.
unsafe fn fail(step: Step) -> ! {
    // SAFETY: async-signal-safe calls only.
    unsafe { fail_with(FD_ERRORS, step, errno()) }
}

unsafe fn check(step: Step, result: c_int) {
    if result < 0 {
        // SAFETY: async-signal-safe.
        unsafe { fail(step) }
    }
}

unsafe fn mount(
    step: Step,
    source: *const c_char,
    target: *const c_char,
    fstype: *const c_char,
    flags: libc::c_ulong,
    data: *const c_char,
) {
    // SAFETY: NUL-terminated strings or null.
    unsafe {
        check(
            step,
            libc::mount(source, target, fstype, flags, data.cast()),
        )
    }
}

/// Binds `source` onto `target`; then, with `read_only`, makes that mount
/// read-only.
unsafe fn bind(
    step: Step,
    source: *const c_char,
    target: *const c_char,
    flags: libc::c_ulong,
    read_only: bool,
) {
    let null = std::ptr::null::<c_char>();
    // SAFETY: prepared C strings.
    unsafe {
        mount(step, source, target, null, libc::MS_BIND | flags, null);
        if read_only {
            mount(
                step,
                null,
                target,
                null,
                libc::MS_BIND
                    | libc::MS_REMOUNT
                    | libc::MS_RDONLY
                    | libc::MS_NOSUID
                    | libc::MS_NODEV,
                null,
            );
        }
    }
}

/// Runs in the child of `clone3`; never returns.
///
/// # Safety
/// Must be called only in a freshly cloned child, with every signal blocked,
/// on a `p` prepared before the clone. Follows the module's rulebook.
pub(crate) unsafe fn run(p: &Prepared) -> ! {
    let null = std::ptr::null::<c_char>();
    // SAFETY: the whole body makes raw system calls on prepared memory.
    unsafe {
        // Descriptors first, so that every later failure can be reported
        // through FD_ERRORS.
        let err_flags = if p.init.is_some() { 0 } else { libc::O_CLOEXEC };
        if libc::dup3(p.errors.as_raw_fd(), FD_ERRORS, err_flags) < 0 {
            // No error pipe at its place: report through the original.
            fail_with(p.errors.as_raw_fd(), Step::Descriptors, errno());
        }
        if p.die_with_parent {
            check(
                Step::ParentDeathSignal,
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0),
            );
        }
        for (from, to) in [(&p.stdin, 0), (&p.stdout, 1), (&p.stderr, 2)] {
            check(Step::Descriptors, libc::dup3(from.as_raw_fd(), to, 0));
        }
        if let Some(i) = &p.init {
            for (from, to, flags) in [
                (&i.status, init::FD_STATUS, 0),
                (&i.spec, init::FD_SPEC, 0),
                (&i.exe, init::FD_EXE, libc::O_CLOEXEC),
            ] {
                check(Step::Descriptors, libc::dup3(from.as_raw_fd(), to, flags));
            }
        }
        for fd in &p.cgroup_join {
            let zero = b"0";
            if libc::write(fd.as_raw_fd(), zero.as_ptr().cast(), zero.len()) < 0 {
                fail(Step::JoinCgroup)
            }
        }
        if let Some(ns) = &p.netns {
            check(
                Step::JoinNetwork,
                libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET),
            );
        }
        if p.new_network
            && let Err(e) = crate::netns::loopback_up()
        {
            fail_with(FD_ERRORS, Step::Loopback, e)
        }
        check(Step::Session, libc::setsid());
        // Explicit modes everywhere below.
        libc::umask(0);
        mount(
            Step::PrivateMounts,
            null,
            c"/".as_ptr(),
            null,
            libc::MS_REC | libc::MS_PRIVATE,
            null,
        );
        match &p.root {
            RootMount::Overlay {
                target,
                opts,
                flags,
            } => mount(
                Step::Root,
                c"overlay".as_ptr(),
                target.as_ptr(),
                c"overlay".as_ptr(),
                *flags,
                opts.as_ptr(),
            ),
            RootMount::Bind {
                source,
                target,
                read_only,
            } => bind(
                Step::Root,
                source.as_ptr(),
                target.as_ptr(),
                libc::MS_REC,
                *read_only,
            ),
        }
        for m in &p.make_points {
            let made = match m.kind {
                Kind::Dir => libc::mkdir(m.path.as_ptr(), 0o755),
                Kind::File => {
                    let fd = libc::open(
                        m.path.as_ptr(),
                        libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC,
                        0o644,
                    );
                    if fd >= 0 {
                        libc::close(fd);
                    }
                    fd
                }
            };
            if made < 0 && errno() != libc::EEXIST {
                fail(Step::MountPoint)
            }
        }
        if let Some(proc_) = &p.proc_ {
            mount(
                Step::Proc,
                c"proc".as_ptr(),
                proc_.as_ptr(),
                c"proc".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                null,
            );
        }
        if let Some(dev) = &p.dev {
            mount(
                Step::Dev,
                c"tmpfs".as_ptr(),
                dev.dir.as_ptr(),
                c"tmpfs".as_ptr(),
                libc::MS_NOSUID | libc::MS_NOEXEC,
                c"mode=755,size=64k".as_ptr(),
            );
            for (path, major, minor) in &dev.nodes {
                let node = libc::makedev(*major, *minor);
                check(
                    Step::DevNodes,
                    libc::mknod(path.as_ptr(), libc::S_IFCHR | 0o666, node),
                );
            }
            for (path, target) in &dev.links {
                check(
                    Step::DevLinks,
                    libc::symlink(target.as_ptr(), path.as_ptr()),
                );
            }
            if let Some(shm) = &dev.shm {
                check(Step::Shm, libc::mkdir(shm.as_ptr(), 0o1777));
                mount(
                    Step::Shm,
                    c"tmpfs".as_ptr(),
                    shm.as_ptr(),
                    c"tmpfs".as_ptr(),
                    libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                    c"mode=1777".as_ptr(),
                );
            }
        }
        if let Some(tmp) = &p.tmp {
            mount(
                Step::Tmp,
                c"tmpfs".as_ptr(),
                tmp.as_ptr(),
                c"tmpfs".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV,
                c"mode=1777".as_ptr(),
            );
        }
        for b in &p.binds {
            bind(
                Step::Bind,
                b.source.as_ptr(),
                b.target.as_ptr(),
                0,
                b.read_only,
            );
            if !b.read_only {
                // Writable, but never a way to a device or a setuid program.
                mount(
                    Step::Bind,
                    null,
                    b.target.as_ptr(),
                    null,
                    libc::MS_BIND | libc::MS_REMOUNT | libc::MS_NOSUID | libc::MS_NODEV,
                    null,
                );
            }
        }
        check(
            Step::Hostname,
            libc::sethostname(p.hostname.as_ptr(), p.hostname.as_bytes().len()),
        );
        // pivot_root(".", "."): the old root ends up stacked on the new one,
        // and detaching "." removes it (no directory for it is needed, so
        // the image is not written to).
        check(Step::Pivot, libc::chdir(p.new_root.as_ptr()));
        check(
            Step::Pivot,
            libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) as c_int,
        );
        check(Step::Detach, libc::umount2(c".".as_ptr(), libc::MNT_DETACH));
        check(Step::Detach, libc::chdir(c"/".as_ptr()));
        check(Step::Workdir, libc::chdir(p.workdir.as_ptr()));
        // The held descriptors right after the protocol's; everything
        // above them is the caller's.
        let mut first_free = if p.init.is_some() {
            init::FD_EXE + 1
        } else {
            FD_ERRORS + 1
        };
        for fd in &p.held {
            check(Step::Descriptors, libc::dup3(fd.as_raw_fd(), first_free, 0));
            first_free += 1;
        }
        check(
            Step::Descriptors,
            libc::syscall(
                libc::SYS_close_range,
                first_free as libc::c_uint,
                libc::c_uint::MAX,
                0 as libc::c_uint,
            ) as c_int,
        );
        libc::umask(0o022);
        match (&p.exec, &p.init) {
            (Some(exec), _) => exec_program(exec, &p.no_signals, FD_ERRORS),
            (None, Some(i)) => {
                libc::syscall(
                    libc::SYS_execveat,
                    init::FD_EXE,
                    c"".as_ptr(),
                    i.argv.as_ptr(),
                    i.envp.as_ptr(),
                    libc::AT_EMPTY_PATH,
                );
                fail(Step::ExecInit)
            }
            (None, None) => fail_with(FD_ERRORS, Step::Exec, libc::EINVAL),
        }
    }
}

/// Resets every signal to its default, drops to the plan's user, unblocks
/// signals and executes the first candidate that can be executed (as
/// `execvp` does: a missing one is skipped; a permission error is kept, in
/// case no later one works). Never returns.
///
/// # Safety
/// Async-signal-safe; for a child or the init's program process, with every
/// signal still blocked.
pub(crate) unsafe fn exec_program(exec: &RawExec, no_signals: &libc::sigset_t, errors: c_int) -> ! {
    // SAFETY: raw system calls on prepared memory.
    unsafe {
        for sig in 1..=64 {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
        if let Some(u) = exec.user
            && (libc::setgroups(0, std::ptr::null()) != 0
                || libc::setresgid(u.gid, u.gid, u.gid) != 0
                || libc::setresuid(u.uid, u.uid, u.uid) != 0)
        {
            fail_with(errors, Step::User, errno())
        }
        libc::sigprocmask(libc::SIG_SETMASK, no_signals, std::ptr::null_mut());
        let mut kept = libc::ENOENT;
        for c in &exec.candidates {
            libc::execve(c.as_ptr(), exec.argv.as_ptr(), exec.envp.as_ptr());
            match errno() {
                libc::ENOENT | libc::ENOTDIR => {}
                libc::EACCES => kept = libc::EACCES,
                other => {
                    kept = other;
                    break;
                }
            }
        }
        fail_with(errors, Step::Exec, kept)
    }
}
