//! The sandbox's init ([`Pid1::Init`](crate::Pid1::Init)): a fresh process,
//! PID 1 of the sandbox, that starts the program, forwards signals, reaps
//! orphans and records how the program ended.
//!
//! # Why the init is executed, not forked
//!
//! The child of `clone3` is a copy of the caller: its memory is the
//! conductor's at that instant — its heap (secrets read from the store,
//! tokens, other instances' environments), and the environment it was
//! started with, which the kernel shows at `/proc/1/environ` inside the
//! sandbox's PID namespace. An init that merely stayed that copy would hand
//! all of it to every instance, whose processes run as root there and may
//! read `/proc/1/environ` and `/proc/1/mem`. (It would also pin a snapshot of
//! the conductor's memory per instance, copied page by page as the conductor
//! changes its own.)
//!
//! Rewriting the environment area (`prctl(PR_SET_MM_ENV_*)`) would hide
//! `/proc/1/environ` but leave the rest of the memory; only `execve` gives a
//! process a new address space. So the child, once the sandbox is built,
//! executes an init with an **empty environment**, and the init keeps
//! nothing but the few bytes it is told: the program, its argv and its
//! environment, read from a memfd. Every process of the instance then holds
//! only the instance's own data.
//!
//! # Which executable
//!
//! The running executable itself (`/proc/self/exe`, opened before the clone,
//! so it works even after the file was replaced by an upgrade): the same
//! trusted bits as the conductor, always present and of the same version, with
//! nothing to install. It is entered through an `.init_array` entry of this
//! crate (run by the C runtime before `main`, in every executable that links
//! this crate and starts sandboxes with an init), which takes over only when
//! `argv` is exactly `[INIT_ARGV0, INIT_MAGIC]` and otherwise returns at
//! once. Starting an init-mode sandbox references the entry, so the linker
//! cannot drop it; if it were missing anyway, the init never says hello and
//! the start fails with [`SandboxError::InitMissing`](crate::SandboxError::InitMissing)
//! instead of running the executable's `main` as PID 1.
//!
//! Inside the sandbox `/proc/1/exe` leads to that executable: it can be read
//! (it is the public program), not written (the kernel refuses writes to a
//! running executable with `ETXTBSY`).
//!
//! # Protocol
//!
//! Descriptors at the init's start: 0–2 the standard streams, 3 the error
//! pipe, 4 the status file, 5 the instructions (memfd), 6 the executable
//! (close-on-exec), 7 and on the descriptors it holds for its whole life
//! ([`Plan::held`](crate::Plan::held): volume locks), which the program does
//! not inherit. The instructions are `SPEC_MAGIC`, six native-endian
//! `u32` (number of candidates, of arguments, of environment entries, whether
//! a user is given, its uid, its gid), then that many NUL-terminated strings.
//! The init writes a hello record to the error pipe, forks the program (which
//! reports an `execve` failure through the same pipe, close-on-exec), closes
//! its own copy and supervises: the caller reads hello and then end-of-file.
//!
//! The init is a fresh single-threaded process, so it may allocate; it runs
//! before `main`, so it uses nothing `main` would set up (arguments, the
//! environment, stdout, panics) and ends with `_exit`.

use crate::child::{self, HELLO};
use crate::error::Step;
use crate::plan::User;
use crate::prepare::RawExec;
use std::ffi::{CStr, CString, c_char, c_int};

/// `argv[0]` of the init.
pub(crate) const INIT_ARGV0: &CStr = c"glint-sandbox-init";
/// `argv[1]` of the init: the protocol's version.
pub(crate) const INIT_MAGIC: &CStr = c"glint-sandbox-init-protocol-1";
/// The first bytes of the instructions.
pub(crate) const SPEC_MAGIC: &[u8; 4] = b"GSI1";

/// The status file's descriptor in the init.
pub(crate) const FD_STATUS: c_int = 4;
/// The instructions' descriptor in the init.
pub(crate) const FD_SPEC: c_int = 5;
/// The executable's descriptor in the child (not inherited by the init).
pub(crate) const FD_EXE: c_int = 6;
/// The first descriptor the init holds for its whole life (volume locks).
pub(crate) const FD_HELD: c_int = FD_EXE + 1;

type InitArrayEntry = extern "C" fn(c_int, *const *const c_char, *const *const c_char);

/// Run by the C runtime before `main` (glibc passes argc, argv and envp to
/// `.init_array` entries).
#[used]
#[unsafe(link_section = ".init_array")]
static INIT_ENTRY: InitArrayEntry = entry;

/// Makes sure the `.init_array` entry is linked into the executable.
pub(crate) fn keep_linked() {
    std::hint::black_box(&INIT_ENTRY);
}

extern "C" fn entry(argc: c_int, argv: *const *const c_char, _envp: *const *const c_char) {
    if argc != 2 || argv.is_null() {
        return;
    }
    // SAFETY: the kernel gives `argc` valid NUL-terminated strings in `argv`.
    let (a0, a1) = unsafe { (*argv, *argv.add(1)) };
    if a0.is_null() || a1.is_null() {
        return;
    }
    // SAFETY: as above.
    let (a0, a1) = unsafe { (CStr::from_ptr(a0), CStr::from_ptr(a1)) };
    if a0 != INIT_ARGV0 || a1 != INIT_MAGIC {
        return;
    }
    // SAFETY: we are the init the protocol describes (descriptors in place).
    unsafe { run() }
}

/// What the instructions say.
struct Spec {
    exec: RawExec,
}

fn read_all(fd: c_int) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let mut offset: libc::off_t = 0;
    loop {
        // SAFETY: reading into a stack buffer.
        let n = unsafe { libc::pread(fd, chunk.as_mut_ptr().cast(), chunk.len(), offset) };
        if n < 0 {
            if child::errno() == libc::EINTR {
                continue;
            }
            return None;
        }
        if n == 0 {
            return Some(buf);
        }
        let n = usize::try_from(n).ok()?;
        buf.extend_from_slice(chunk.get(..n)?);
        offset += libc::off_t::try_from(n).ok()?;
    }
}

fn parse(bytes: &[u8]) -> Option<Spec> {
    let rest = bytes.strip_prefix(SPEC_MAGIC)?;
    let mut words = [0u32; 6];
    for (i, w) in words.iter_mut().enumerate() {
        let b = rest.get(i * 4..i * 4 + 4)?;
        *w = u32::from_ne_bytes(b.try_into().ok()?);
    }
    let [ncand, argc, envc, has_user, uid, gid] = words;
    let mut strings = rest.get(24..)?.split_inclusive(|&b| b == 0);
    let mut take = |n: u32| -> Option<Vec<CString>> {
        (0..n)
            .map(|_| {
                CStr::from_bytes_with_nul(strings.next()?)
                    .ok()
                    .map(CStr::to_owned)
            })
            .collect()
    };
    let candidates = take(ncand)?;
    let argv = take(argc)?;
    let envp = take(envc)?;
    let user = (has_user == 1).then_some(User { uid, gid });
    Some(Spec {
        exec: RawExec::new(candidates, argv, envp, user),
    })
}

/// The init's life. Never returns.
///
/// # Safety
/// Only in a process started by [`crate::child`] with the protocol's
/// descriptors, every signal blocked.
unsafe fn run() -> ! {
    // SAFETY: raw system calls; memory is this fresh process's own.
    unsafe {
        libc::prctl(libc::PR_SET_NAME, c"glint-init".as_ptr(), 0, 0, 0);
        // Every signal to its default (all are blocked and waited for below;
        // one the caller ignored would otherwise never be forwarded, and an
        // ignored SIGCHLD would reap the program behind our back).
        for sig in 1..=64 {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
        let Some(spec) = read_all(FD_SPEC).and_then(|b| parse(&b)) else {
            child::fail_with(child::FD_ERRORS, Step::InitSpec, libc::EINVAL)
        };
        libc::close(FD_SPEC);
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::sigemptyset(&mut none);
        child::report(child::FD_ERRORS, HELLO, 0);
        let app = libc::fork();
        if app == 0 {
            libc::close(FD_STATUS);
            libc::fcntl(child::FD_ERRORS, libc::F_SETFD, libc::FD_CLOEXEC);
            // The held descriptors (volume locks) stay the init's own.
            libc::syscall(
                libc::SYS_close_range,
                FD_HELD as libc::c_uint,
                libc::c_uint::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            );
            child::exec_program(&spec.exec, &none, child::FD_ERRORS)
        }
        if app < 0 {
            child::fail_with(child::FD_ERRORS, Step::Fork, child::errno())
        }
        libc::close(child::FD_ERRORS);
        supervise(app, &all)
    }
}

/// The init's loop: forward signals to everything in the namespace, reap
/// orphans, and end with the program.
unsafe fn supervise(app: libc::pid_t, all: &libc::sigset_t) -> ! {
    // SAFETY: raw system calls on this process's own memory.
    unsafe {
        loop {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            let sig = libc::sigwaitinfo(all, &mut info);
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
                    libc::write(FD_STATUS, bytes.as_ptr().cast(), bytes.len());
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

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_bytes(words: [u32; 6], strings: &[&str]) -> Vec<u8> {
        let mut b = SPEC_MAGIC.to_vec();
        for w in words {
            b.extend_from_slice(&w.to_ne_bytes());
        }
        for s in strings {
            b.extend_from_slice(s.as_bytes());
            b.push(0);
        }
        b
    }

    #[test]
    fn instructions_parse_and_truncated_ones_are_refused() {
        let good = spec_bytes(
            [1, 2, 1, 1, 65534, 65533],
            &["/bin/app", "app", "-x", "A=1"],
        );
        let s = parse(&good).unwrap();
        assert_eq!(s.exec.candidates, vec![c"/bin/app".to_owned()]);
        assert_eq!(s.exec.argv.len(), 3, "two arguments and the null");
        assert_eq!(s.exec.envp.len(), 2);
        assert_eq!(
            s.exec.user,
            Some(User {
                uid: 65534,
                gid: 65533
            })
        );
        // One string short, a missing NUL, a wrong magic.
        assert!(parse(&spec_bytes([1, 2, 1, 0, 0, 0], &["/bin/app", "app"])).is_none());
        assert!(parse(&good[..good.len() - 1]).is_none());
        assert!(parse(&good[1..]).is_none());
    }
}
