//! `glint build --verify`: the immutability test.
//!
//! The built image's entrypoint is started in the same sandbox as build steps
//! (own PID, mount, UTS, IPC and network namespaces), with the unpacked image
//! bound read-only as its root — exactly what an instance sees, minus the
//! outside world: the network namespace has only loopback. A thread joins that
//! namespace and probes the health check (HTTP path or TCP connect on the
//! image's port) until it passes or the time runs out. An artefact that needs
//! anything from outside (a download at start, a DNS name, a file on the host)
//! fails here, not in production; so does one that even tries to reach the
//! network (counted as for build steps).

use crate::error::Result;
use crate::sandbox::{self, HealthProbe, Loopback, NetNs, Root, Spec};
use crate::store::ImageStore;
use glint_model::Digest;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// What to run and probe.
#[derive(Debug, Clone)]
pub struct VerifyRun {
    /// The health check.
    pub probe: HealthProbe,
    /// The port to probe; default the image's exposed port, else 8080. It is
    /// also passed to the program as `PORT`.
    pub port: Option<u16>,
    /// How long the program may take to become healthy.
    pub timeout: Duration,
    /// Extra environment (on top of the image's).
    pub env: BTreeMap<String, String>,
    /// Extra arguments appended to the entrypoint.
    pub args: Vec<String>,
}

/// The outcome of a verify run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Whether the health check passed (and nothing tried to reach the network).
    pub passed: bool,
    /// Why it failed (empty when it passed).
    pub reason: String,
    /// How long until it passed or failed, in milliseconds.
    pub millis: u64,
    /// The program's output (kept on failure, for the message).
    pub output: String,
}

impl ImageStore {
    /// Starts image `digest` in a sandbox without network and requires its
    /// health check to pass within `run.timeout`; stops it afterwards.
    pub fn verify_run(&self, digest: &Digest, run: &VerifyRun) -> Result<VerifyReport> {
        let rootfs = self.rootfs(digest)?;
        let config = self.config(digest)?;
        let mut argv = config.config.entrypoint.clone().unwrap_or_default();
        argv.extend(config.config.cmd.clone().unwrap_or_default());
        argv.extend(run.args.iter().cloned());
        let port = run.port.or(config.config.port()).unwrap_or(8080);
        let mut env = BTreeMap::from([
            ("PATH".to_owned(), crate::build::STEP_PATH.to_owned()),
            ("HOME".to_owned(), "/".to_owned()),
        ]);
        env.extend(config.config.env_map());
        env.insert("PORT".to_owned(), port.to_string());
        env.extend(run.env.clone());
        let wd = config.config.working_dir.trim_start_matches('/');
        let workdir = if !wd.is_empty() && rootfs.join(wd).is_dir() {
            format!("/{wd}")
        } else {
            "/".to_owned()
        };
        let started = Instant::now();
        if argv.is_empty() {
            return Ok(VerifyReport {
                passed: false,
                reason: "the image has no entrypoint".into(),
                millis: 0,
                output: String::new(),
            });
        }
        let spec = Spec {
            argv,
            env,
            workdir,
            root: Root::ReadOnly(rootfs),
        };
        let netns = NetNs::new(Loopback::Full)?;
        let mut running = sandbox::spawn(&spec, &netns)?;
        let deadline = started + run.timeout;
        let mut reason = String::new();
        loop {
            if let Some(status) = running.try_wait() {
                reason = format!("the program ended ({status}) before its health check passed");
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                reason = format!(
                    "the health check did not pass within {}s",
                    run.timeout.as_secs()
                );
                break;
            }
            if sandbox::probe_once(&netns, port, &run.probe, left.min(Duration::from_secs(2))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100).min(left));
        }
        let finished = running.kill()?;
        let attempts = netns.blocked_attempts()?;
        if reason.is_empty() && attempts > 0 {
            reason = format!(
                "the program tried to reach the network ({attempts} attempt(s) blocked): an immutable artefact must not need anything from outside"
            );
        }
        Ok(VerifyReport {
            passed: reason.is_empty(),
            millis: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            output: if reason.is_empty() {
                String::new()
            } else {
                finished.output
            },
            reason,
        })
    }
}
