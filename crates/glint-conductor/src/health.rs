//! Health checking: probes and the per-instance health state machine.
//!
//! A probe is an HTTP GET (2xx/3xx passes) or a TCP connect, bounded by the
//! check's `timeout`. The [`Tracker`] turns probe results into transitions:
//!
//! ```text
//!   Starting ──healthy_threshold passes──▶ Healthy
//!   Starting ──no pass within start_timeout──▶ Failed
//!   Healthy ──unhealthy_threshold failures──▶ Unhealthy (terminal: the instance is replaced)
//! ```
//!
//! While an instance is starting it is probed quickly (10 ms, doubling up to
//! a quarter of a second, never slower than `interval`), so that a replacement
//! serves as soon as it can; once healthy it is probed every `interval`.
//! Unhealthy is terminal on purpose: Glint never nurses an instance back, it
//! replaces it.

use async_trait::async_trait;
use glint_model::{HealthCheck, InstanceId, Probe};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The fastest probe rate while starting.
const FIRST_PROBE: Duration = Duration::from_millis(10);
/// The slowest probe rate while starting.
const STARTING_CAP: Duration = Duration::from_millis(250);

/// Where an instance's health stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Not yet healthy.
    Starting,
    /// Passing.
    Healthy,
    /// Failed its checks or never became healthy; to be replaced.
    Failed,
}

/// A change worth telling the conductor about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// The instance became healthy.
    Healthy,
    /// A healthy instance failed `unhealthy_threshold` probes in a row.
    Unhealthy {
        /// The last failure.
        reason: String,
    },
    /// A starting instance did not pass within `start_timeout`.
    NeverHealthy {
        /// The last failure, if any probe ran.
        reason: String,
    },
}

/// The health state machine of one instance. Pure: the caller supplies probe
/// results and elapsed time.
#[derive(Debug, Clone)]
pub struct Tracker {
    check: HealthCheck,
    phase: Phase,
    passes: u32,
    failures: u32,
    next_delay: Duration,
}

impl Tracker {
    /// A tracker for a new instance, or for an adopted one whose last known
    /// state was `healthy`.
    pub fn new(check: HealthCheck, already_healthy: bool) -> Tracker {
        Tracker {
            phase: if already_healthy {
                Phase::Healthy
            } else {
                Phase::Starting
            },
            passes: 0,
            failures: 0,
            next_delay: FIRST_PROBE,
            check,
        }
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// How long to wait before the next probe.
    pub fn delay(&self) -> Duration {
        match self.phase {
            Phase::Starting => self.next_delay.min(self.check.interval.as_std()),
            Phase::Healthy | Phase::Failed => self.check.interval.as_std(),
        }
    }

    /// The probe timeout.
    pub fn timeout(&self) -> Duration {
        self.check.timeout.as_std()
    }

    /// Feeds one probe result; `elapsed` is the time since the instance was
    /// launched.
    pub fn record(&mut self, result: Result<(), String>, elapsed: Duration) -> Option<Transition> {
        match (self.phase, result) {
            (Phase::Failed, _) => None,
            (Phase::Starting, Ok(())) => {
                self.passes += 1;
                self.failures = 0;
                if self.passes >= self.check.healthy_threshold.max(1) {
                    self.phase = Phase::Healthy;
                    self.passes = 0;
                    Some(Transition::Healthy)
                } else {
                    None
                }
            }
            (Phase::Starting, Err(reason)) => {
                self.passes = 0;
                self.next_delay = (self.next_delay * 2).min(STARTING_CAP);
                if elapsed >= self.check.start_timeout.as_std() {
                    self.phase = Phase::Failed;
                    Some(Transition::NeverHealthy { reason })
                } else {
                    None
                }
            }
            (Phase::Healthy, Ok(())) => {
                self.failures = 0;
                None
            }
            (Phase::Healthy, Err(reason)) => {
                self.failures += 1;
                if self.failures >= self.check.unhealthy_threshold.max(1) {
                    self.phase = Phase::Failed;
                    Some(Transition::Unhealthy { reason })
                } else {
                    None
                }
            }
        }
    }
}

/// Runs one probe against `addr`.
/// Runs one probe against an instance. The conductor's probes go through
/// this trait so that tests on paused time can answer them without a
/// network round trip (tokio's paused clock jumps ahead while a task waits
/// on a socket, which would time real probes out).
#[async_trait]
pub trait Prober: Send + Sync + 'static {
    /// Probes `instance` at `addr`; `Err` says why it failed.
    async fn probe(
        &self,
        instance: &InstanceId,
        probe: &Probe,
        addr: SocketAddr,
        timeout: Duration,
    ) -> Result<(), String>;
}

/// Probes over the network: an HTTP GET or a TCP connect.
#[derive(Debug, Default, Clone, Copy)]
pub struct NetworkProber;

#[async_trait]
impl Prober for NetworkProber {
    async fn probe(
        &self,
        _instance: &InstanceId,
        p: &Probe,
        addr: SocketAddr,
        timeout: Duration,
    ) -> Result<(), String> {
        probe(p, addr, timeout).await
    }
}

/// Runs one probe over the network, bounded by `timeout`.
pub async fn probe(probe: &Probe, addr: SocketAddr, timeout: Duration) -> Result<(), String> {
    match tokio::time::timeout(timeout, probe_inner(probe, addr)).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {}ms", timeout.as_millis())),
    }
}

async fn probe_inner(probe: &Probe, addr: SocketAddr) -> Result<(), String> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let path = match probe {
        Probe::Tcp => return Ok(()),
        Probe::Http { path } => path,
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nhost: {addr}\r\nuser-agent: glint-health\r\nconnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("cannot send request: {e}"))?;
    // Only the status line matters; read until it is complete.
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 256];
    while !buf.contains(&b'\n') && buf.len() < 4096 {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("cannot read response: {e}"))?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let line = String::from_utf8_lossy(&buf);
    let line = line.lines().next().unwrap_or("");
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("not an HTTP response: {:?}", truncate(line, 60)))?;
    if (200..400).contains(&status) {
        Ok(())
    } else {
        Err(format!("GET {path} answered {status}"))
    }
}

fn truncate(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use glint_model::Millis;

    fn check() -> HealthCheck {
        HealthCheck {
            probe: Probe::Tcp,
            interval: Millis(1000),
            timeout: Millis(500),
            healthy_threshold: 2,
            unhealthy_threshold: 3,
            start_timeout: Millis(5000),
        }
    }

    const T0: Duration = Duration::ZERO;

    #[test]
    fn becomes_healthy_after_threshold_passes_in_a_row() {
        let mut t = Tracker::new(check(), false);
        assert_eq!(t.record(Ok(()), T0), None);
        assert_eq!(t.record(Err("x".into()), T0), None, "a failure resets");
        assert_eq!(t.record(Ok(()), T0), None);
        assert_eq!(t.record(Ok(()), T0), Some(Transition::Healthy));
        assert_eq!(t.phase(), Phase::Healthy);
    }

    #[test]
    fn becomes_unhealthy_after_threshold_failures_in_a_row() {
        let mut t = Tracker::new(check(), true);
        assert_eq!(t.record(Err("a".into()), T0), None);
        assert_eq!(t.record(Err("b".into()), T0), None);
        assert_eq!(t.record(Ok(()), T0), None, "a pass resets");
        assert_eq!(t.record(Err("c".into()), T0), None);
        assert_eq!(t.record(Err("d".into()), T0), None);
        assert_eq!(
            t.record(Err("e".into()), T0),
            Some(Transition::Unhealthy { reason: "e".into() })
        );
        assert_eq!(t.record(Ok(()), T0), None, "failed is terminal");
        assert_eq!(t.phase(), Phase::Failed);
    }

    #[test]
    fn a_start_that_never_passes_fails_at_start_timeout() {
        let mut t = Tracker::new(check(), false);
        assert_eq!(
            t.record(Err("refused".into()), Duration::from_secs(4)),
            None
        );
        assert_eq!(
            t.record(Err("refused".into()), Duration::from_secs(5)),
            Some(Transition::NeverHealthy {
                reason: "refused".into()
            })
        );
    }

    #[test]
    fn starting_probes_back_off_quickly_and_healthy_ones_use_the_interval() {
        let mut t = Tracker::new(check(), false);
        assert_eq!(t.delay(), Duration::from_millis(10));
        t.record(Err("x".into()), T0);
        assert_eq!(t.delay(), Duration::from_millis(20));
        for _ in 0..10 {
            t.record(Err("x".into()), T0);
        }
        assert_eq!(t.delay(), STARTING_CAP);
        let t = Tracker::new(check(), true);
        assert_eq!(t.delay(), Duration::from_secs(1));
    }

    async fn serve_once(status: &'static str) -> SocketAddr {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n").as_bytes())
                    .await;
            }
        });
        addr
    }

    #[tokio::test]
    async fn http_probe_passes_on_2xx_and_fails_otherwise() {
        let http = |p: &str| Probe::Http { path: p.into() };
        let t = Duration::from_secs(5);
        let ok = serve_once("200 OK").await;
        assert_eq!(probe(&http("/healthz"), ok, t).await, Ok(()));
        let bad = serve_once("503 Service Unavailable").await;
        let err = probe(&http("/healthz"), bad, t).await.unwrap_err();
        assert!(err.contains("503"), "{err}");
        // Nothing listening: a connect failure.
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let err = probe(&Probe::Tcp, closed, t).await.unwrap_err();
        assert!(err.contains("cannot connect"), "{err}");
    }

    #[tokio::test]
    async fn a_silent_server_times_out() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let _keep = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = l.accept().await {
                held.push(s);
            }
        });
        let err = probe(
            &Probe::Http { path: "/".into() },
            addr,
            Duration::from_millis(200),
        )
        .await
        .unwrap_err();
        assert!(err.contains("no answer"), "{err}");
    }
}
