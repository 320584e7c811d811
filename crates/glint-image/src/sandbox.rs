//! The build sandbox: where `run` steps, `test` steps and `build --verify` runs execute.
//!
//! A sandboxed program runs as PID 1 of new PID, mount, UTS and IPC namespaces,
//! in a network namespace of its own, with the image as its root (`pivot_root`,
//! the host's root detached), a fixed hostname, a fixed environment (nothing
//! inherited from the caller) and, when the image has the directories, its own
//! `/proc` and a minimal `/dev` (null, zero, full, random, urandom, tty) on tmpfs.
//!
//! **How it starts.** Through Glint's namespace runner (`glint-sandbox`): one
//! `clone3` into the new namespaces, joined to the prepared network namespace,
//! the program executed as PID 1 (so when it ends, everything it started
//! ends). A failing setup step is named in the error. The sandbox is killed
//! if the thread that started it ends (build steps wait on the thread that
//! started them).
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
use glint_sandbox as runner;
use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The hostname inside every sandbox.
pub const HOSTNAME: &str = "glint-sandbox";

pub(crate) use runner::Loopback;

/// A network namespace held open by a descriptor, with only a loopback interface.
pub(crate) struct NetNs {
    ns: runner::NetNs,
}

impl NetNs {
    /// Creates a network namespace with only a loopback interface.
    pub(crate) fn new(loopback: Loopback) -> Result<NetNs> {
        let ns = runner::NetNs::new(loopback).map_err(|source| ImageError::Sandbox {
            stage: "create a network namespace (needs root)".into(),
            source,
        })?;
        Ok(NetNs { ns })
    }

    /// Runs `f` on a thread inside the namespace.
    pub(crate) fn run_in<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> io::Result<T> {
        self.ns.run_in(f)
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

/// A running sandboxed program.
pub(crate) struct Running {
    sandbox: runner::Sandbox,
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

/// A program killed by a signal is reported as exit code 128 + signal, as a
/// shell does.
fn exit_status(s: runner::ExitStatus) -> ExitStatus {
    match s {
        runner::ExitStatus::Code(c) => ExitStatus::from_raw((c & 0xff) << 8),
        runner::ExitStatus::Signal(sig) => ExitStatus::from_raw(((128 + sig) & 0xff) << 8),
    }
}

fn pipe_error(source: io::Error) -> ImageError {
    ImageError::Sandbox {
        stage: "create a pipe".into(),
        source,
    }
}

/// Turns the runner's error into the builder's, naming the program when it
/// is what could not be started.
fn start_error(program: &str, e: runner::SandboxError) -> ImageError {
    use runner::SandboxError as E;
    let (stage, source) = match e {
        E::Step {
            step: runner::Step::Exec,
            source,
        } => (
            format!("start `{program}` inside the image (is it in the image?)"),
            source,
        ),
        E::Step { step, source } => (step.describe().to_owned(), source),
        E::Clone { source } => ("create the namespaces (needs root)".to_owned(), source),
        E::Invalid { reason } => return ImageError::invalid("sandbox", reason),
        E::Prepare { what, path, source } => (format!("{what} {}", path.display()), source),
        other => (other.to_string(), io::Error::other("sandbox start failed")),
    };
    ImageError::Sandbox { stage, source }
}

/// Starts `spec` in a sandbox joined to `netns`. Returns once the program
/// runs (or fails with the setup step that failed).
pub(crate) fn spawn(spec: &Spec, netns: &NetNs) -> Result<Running> {
    let Some(program) = spec.argv.first() else {
        return Err(ImageError::invalid("command", "empty argv"));
    };
    let (out_r, out_w) = io::pipe().map_err(pipe_error)?;
    let out_w2 = out_w.try_clone().map_err(pipe_error)?;
    let root = match &spec.root {
        Root::Overlay {
            lower,
            upper,
            work,
            merged,
        } => runner::Root::Overlay {
            lower: vec![lower.clone()],
            upper: Some(runner::Upper {
                upper: upper.clone(),
                work: work.clone(),
            }),
            target: merged.clone(),
            // Missing /proc and /dev are made in the upper directory; the
            // builder leaves them out of the layer.
            mount_points: None,
        },
        Root::ReadOnly(dir) => runner::Root::Bind {
            dir: dir.clone(),
            read_only: true,
        },
    };
    let command = runner::Command::search(spec.argv.clone(), spec.env.clone());
    let mut plan = runner::Plan::new(root, command, runner::Stdio::new(out_w, out_w2));
    plan.workdir = PathBuf::from(if spec.workdir.is_empty() {
        "/"
    } else {
        &spec.workdir
    });
    plan.hostname = HOSTNAME.to_owned();
    plan.mounts = runner::Mounts {
        proc_: true,
        dev: true,
        shm: false,
        tmp: false,
    };
    plan.network =
        runner::Network::Join(netns.ns.try_clone().map_err(|source| ImageError::Sandbox {
            stage: "join the network namespace".into(),
            source,
        })?);
    plan.die_with_parent = true;
    let mut sandbox = runner::spawn(plan).map_err(|e| start_error(program, e))?;
    if let Err(e) = sandbox.wait_started() {
        // It has exited (or is about to): reap it.
        let _ = sandbox.wait();
        return Err(start_error(program, e));
    }
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
    Ok(Running { sandbox, output })
}

impl Running {
    /// Waits for the program to end.
    pub(crate) fn wait(mut self) -> Result<Finished> {
        let status = self.sandbox.wait().map_err(|source| ImageError::Sandbox {
            stage: "wait for the program".into(),
            source,
        })?;
        self.finish(exit_status(status))
    }

    /// Whether it has ended already.
    pub(crate) fn try_wait(&mut self) -> Option<ExitStatus> {
        self.sandbox.try_wait().ok().flatten().map(exit_status)
    }

    /// Kills the whole sandbox and waits for it.
    pub(crate) fn kill(self) -> Result<Finished> {
        let _ = self.sandbox.kill();
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

/// Keeps at most this much output per program (the end is what matters).
const OUTPUT_LIMIT: usize = 64 * 1024;

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
