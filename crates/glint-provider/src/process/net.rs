//! An instance's own network: a network namespace with one address, joined
//! to the host by a routed (not bridged) veth pair.
//!
//! ```text
//! host                                      instance netns (/run/netns/glXXXX)
//!   glXXXX  10.88.0.1/32  ◀── veth ──▶  eth0  10.88.a.b/32, lo up
//!   route 10.88.a.b/32 dev glXXXX src 10.88.0.1
//!                                         default via 10.88.0.1 dev eth0 onlink
//! ```
//!
//! Routed, so that every packet between two instances crosses the host's IP
//! `forward` hook, where Glint's nftables table filters it (a bridge would
//! skip that hook unless `br_netfilter` is loaded). The host side of every
//! link carries the host address [`HOST_ADDR`]; traffic from the host (the
//! data plane, health probes) to an instance leaves from it.
//!
//! Names are `gl` + 12 hex digits of a hash of the instance id ([`link_name`]),
//! the same for the host-side link and the namespace (`ip netns` name), so
//! that the conductor knows an instance's link from its id alone.
//!
//! Addresses come from [`SUBNET`], the lowest one not given to an instance this
//! provider tracks; the host route of the address is what reserves it on this
//! machine (a second provider trying the same address gets `EEXIST` and moves
//! on), so two stores on one host never share an address. The address is in
//! the instance's `HOST` variable and its record, so an adopted instance keeps
//! it.
//!
//! Everything is done with the `ip` command (iproute2) and needs root.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;

/// The subnet instances' addresses come from: `10.88.0.0/16`.
pub const SUBNET: (Ipv4Addr, u8) = (Ipv4Addr::new(10, 88, 0, 0), 16);

/// The host's address on every instance link.
pub const HOST_ADDR: Ipv4Addr = Ipv4Addr::new(10, 88, 0, 1);

/// Whether `addr` is in [`SUBNET`].
pub fn in_subnet(addr: Ipv4Addr) -> bool {
    let mask = u32::MAX << (32 - u32::from(SUBNET.1));
    u32::from(addr) & mask == u32::from(SUBNET.0)
}

/// The name of `instance`'s host-side link and of its network namespace:
/// `gl` + 12 hex digits (FNV-1a of the id), within the kernel's 15 bytes.
pub fn link_name(instance: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in instance.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("gl{:012x}", h & 0xffff_ffff_ffff)
}

/// Where `ip netns` keeps the namespace named `name`.
pub fn netns_path(name: &str) -> PathBuf {
    PathBuf::from("/run/netns").join(name)
}

/// Whether instances can get their own network here: root and the `ip`
/// command.
pub fn available() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    root && Command::new("ip")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The candidate addresses, in order: `10.88.0.2` up to `10.88.255.254`.
pub fn candidates() -> impl Iterator<Item = Ipv4Addr> {
    let base = u32::from(SUBNET.0);
    let size = 1u32 << (32 - u32::from(SUBNET.1));
    (2..size - 1).map(move |i| Ipv4Addr::from(base + i))
}

/// Why a network could not be made.
#[derive(Debug)]
pub enum NetError {
    /// The address is already routed on this machine (another store's
    /// instance): try the next one.
    Taken,
    /// Anything else: the command and what it said.
    Failed(String),
}

impl std::fmt::Display for NetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NetError::Taken => f.write_str("the address is already in use on this host"),
            NetError::Failed(s) => f.write_str(s),
        }
    }
}

fn ip(args: &[&str]) -> Result<(), NetError> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| NetError::Failed(format!("cannot run `ip {}`: {e}", args.join(" "))))?;
    if out.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    if err.contains("File exists") {
        return Err(NetError::Taken);
    }
    Err(NetError::Failed(format!(
        "`ip {}` failed: {err}",
        args.join(" ")
    )))
}

/// Makes `instance`'s namespace and link with address `addr`. On any error
/// whatever was made is removed. Blocking.
pub fn create(instance: &str, addr: Ipv4Addr) -> Result<(), NetError> {
    let name = link_name(instance);
    let result = create_steps(&name, addr);
    if result.is_err() {
        remove(instance);
    }
    result
}

fn create_steps(name: &str, addr: Ipv4Addr) -> Result<(), NetError> {
    let host = HOST_ADDR.to_string();
    let own = format!("{addr}/32");
    let dest = format!("{addr}/32");
    // A namespace left by a crash between these steps is replaced.
    if netns_path(name).exists() {
        remove_named(name);
    }
    ip(&["netns", "add", name]).map_err(taken_is_failure)?;
    ip(&[
        "link", "add", name, "type", "veth", "peer", "name", "eth0", "netns", name,
    ])
    .map_err(taken_is_failure)?;
    ip(&["addr", "add", &format!("{host}/32"), "dev", name]).map_err(taken_is_failure)?;
    ip(&["link", "set", name, "up"]).map_err(taken_is_failure)?;
    // The route reserves the address on this host.
    ip(&["route", "add", &dest, "dev", name, "src", &host])?;
    let inside = |args: &[&str]| {
        let mut all = vec!["-n", name];
        all.extend_from_slice(args);
        ip(&all).map_err(taken_is_failure)
    };
    inside(&["link", "set", "lo", "up"])?;
    inside(&["addr", "add", &own, "dev", "eth0"])?;
    inside(&["link", "set", "eth0", "up"])?;
    inside(&[
        "route", "add", "default", "via", &host, "dev", "eth0", "onlink",
    ])?;
    Ok(())
}

fn taken_is_failure(e: NetError) -> NetError {
    match e {
        NetError::Taken => NetError::Failed("a leftover of the same name exists".into()),
        other => other,
    }
}

/// Removes `instance`'s link (its route and its peer go with it) and
/// namespace; missing ones are fine. Blocking.
pub fn remove(instance: &str) {
    remove_named(&link_name(instance));
}

fn remove_named(name: &str) {
    let _ = Command::new("ip").args(["link", "del", name]).output();
    if netns_path(name).exists()
        && let Err(e) = ip(&["netns", "del", name])
    {
        tracing::warn!(netns = name, error = %e, "cannot remove an instance's network namespace");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_the_kernel_and_differ_by_instance() {
        let a = link_name("web-0123456789abcdef");
        let b = link_name("web-0123456789abcdeg");
        assert_eq!(a.len(), 14);
        assert!(a.starts_with("gl"));
        assert_ne!(a, b);
        assert_eq!(a, link_name("web-0123456789abcdef"));
    }

    #[test]
    fn candidates_stay_in_the_subnet_and_skip_the_host() {
        let mut c = candidates();
        assert_eq!(c.next(), Some(Ipv4Addr::new(10, 88, 0, 2)));
        assert_eq!(candidates().last(), Some(Ipv4Addr::new(10, 88, 255, 254)));
        assert!(candidates().all(in_subnet));
        assert!(!candidates().any(|a| a == HOST_ADDR));
        assert!(!in_subnet(Ipv4Addr::new(10, 89, 0, 1)));
    }
}
