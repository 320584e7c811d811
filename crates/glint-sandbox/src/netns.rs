//! Network namespaces held open by a descriptor: made here (with only a
//! loopback interface), or opened from a path (`ip netns add NAME` makes
//! `/run/netns/NAME`), and joined by sandboxes ([`Network::Join`]) or by a
//! thread of the caller ([`NetNs::run_in`]) to look inside.
//!
//! Network namespaces belong to threads: a helper thread enters one, does its
//! work and ends, so the rest of the process never changes namespace.
//!
//! [`Network::Join`]: crate::Network::Join

use std::ffi::c_int;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::thread::JoinHandle;

/// How much loopback a namespace made by [`NetNs::new`] gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loopback {
    /// `lo` up with 127.0.0.1 and `::1`.
    Full,
    /// `lo` up with `::1` only: every IPv4 destination, 127.0.0.1 included,
    /// fails with `ENETUNREACH` (and the kernel counts it in `OutNoRoutes`),
    /// while a server on `[::1]` can still be reached.
    Ipv6Only,
}

/// A network namespace, held open by a descriptor.
#[derive(Debug)]
pub struct NetNs {
    fd: OwnedFd,
}

impl NetNs {
    /// Creates a network namespace with only a loopback interface. Needs
    /// root (`CAP_SYS_ADMIN`).
    pub fn new(loopback: Loopback) -> io::Result<NetNs> {
        let handle = std::thread::spawn(move || -> io::Result<OwnedFd> {
            // SAFETY: plain system calls on this thread only (network
            // namespaces are per thread, so the rest of the process is
            // unaffected; the thread ends right after).
            unsafe {
                if libc::unshare(libc::CLONE_NEWNET) != 0 {
                    return Err(io::Error::last_os_error());
                }
                loopback_up().map_err(io::Error::from_raw_os_error)?;
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
        join(handle).and_then(|r| r).map(|fd| NetNs { fd })
    }

    /// Opens the namespace at `path` (`/run/netns/NAME`, `/proc/PID/ns/net`).
    /// Refuses a file that is not a network namespace.
    pub fn open(path: &Path) -> io::Result<NetNs> {
        let file = std::fs::File::open(path)?;
        NetNs::from_fd(file.into())
    }

    /// Takes a descriptor of a network namespace. Refuses one that is not.
    pub fn from_fd(fd: OwnedFd) -> io::Result<NetNs> {
        // NS_GET_NSTYPE (_IO(0xb7, 0x3)) says which kind of namespace a
        // descriptor refers to.
        const NS_GET_NSTYPE: libc::c_ulong = 0xb703;
        // SAFETY: an ioctl without arguments on a descriptor we own.
        let kind = unsafe { libc::ioctl(fd.as_raw_fd(), NS_GET_NSTYPE) };
        if kind < 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("not a namespace: {}", io::Error::last_os_error()),
            ));
        }
        if kind != libc::CLONE_NEWNET {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the namespace is not a network namespace",
            ));
        }
        Ok(NetNs { fd })
    }

    /// Another handle on the same namespace.
    pub fn try_clone(&self) -> io::Result<NetNs> {
        Ok(NetNs {
            fd: self.fd.try_clone()?,
        })
    }

    /// Runs `f` on a thread inside the namespace and returns its result.
    pub fn run_in<T: Send + 'static>(
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
}

impl AsFd for NetNs {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl From<NetNs> for OwnedFd {
    fn from(n: NetNs) -> OwnedFd {
        n.fd
    }
}

fn join<T>(h: JoinHandle<io::Result<T>>) -> io::Result<io::Result<T>> {
    h.join()
        .map_err(|_| io::Error::other("namespace helper thread panicked"))
}

/// Brings `lo` up in the calling thread's network namespace; the error is an
/// errno.
///
/// # Safety
/// Async-signal-safe (socket, ioctl, close; no allocation): callable in a
/// sandbox's child side as on any thread.
pub(crate) unsafe fn loopback_up() -> Result<(), c_int> {
    // SAFETY: see the function's contract; `ifreq` is plain old data.
    unsafe {
        let sock = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if sock < 0 {
            return Err(*libc::__errno_location());
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        for (d, s) in req.ifr_name.iter_mut().zip(b"lo\0") {
            *d = *s as libc::c_char;
        }
        let mut result = Ok(());
        if libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut req) != 0 {
            result = Err(*libc::__errno_location());
        } else {
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            if libc::ioctl(sock, libc::SIOCSIFFLAGS, &req) != 0 {
                result = Err(*libc::__errno_location());
            }
        }
        libc::close(sock);
        result
    }
}

/// Removes `127.0.0.1/8` from `lo` in the calling thread's network namespace
/// (an rtnetlink `RTM_DELADDR`; the kernel adds that address when `lo` comes up).
///
/// # Safety
/// Plain socket system calls; safe to call on any thread.
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
