//! Programming a [`DataPlane`] from what the conductor wants: the endpoints
//! reconciler.
//!
//! [`Reconciler::reconcile`] is one level-triggered pass, omicron-style: it
//! takes no hint of what changed, reads the data plane's whole state, and
//! sends only what differs — the endpoint set (with the next generation
//! after the data plane's own, so a restarted conductor never sends a stale
//! one), then each endpoint's backend set (likewise). Endpoints that cannot
//! bind are retried every [`BIND_RETRY`]. It returns the status to show and
//! the events to record.
//!
//! [`Endpoints`] runs it in a task of its own — on every change of the
//! desired state and every [`RESYNC`] — so that the conductor's loop never
//! waits on the data plane: the loop hands over the desired state (a cheap,
//! synchronous [`Endpoints::set`]), reads the last status
//! ([`Endpoints::status`]), and receives events on a channel. Until the
//! first `set`, the data plane is left exactly as it is: a conductor that
//! has not yet read its target version must not empty the endpoints that
//! kept serving while no conductor ran.

use crate::identity::Identity;
use crate::plane::{DataPlane, DataPlaneError, EndpointReport, EndpointSpec};
use glint_model::{InstanceId, Name};
use glint_proxy::Backend;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// How often the data plane is read even when nothing changed (also how
/// fresh the counters in the status are).
pub const RESYNC: Duration = Duration::from_secs(1);
/// How often an endpoint that cannot bind is tried again.
pub const BIND_RETRY: Duration = Duration::from_secs(2);

/// What the conductor wants: every endpoint, with the backends it routes to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Desired {
    /// By name.
    pub endpoints: BTreeMap<Name, DesiredEndpoint>,
}

/// One endpoint the conductor wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredEndpoint {
    /// How it listens and behaves.
    pub spec: EndpointSpec,
    /// The healthy instances it routes to.
    pub backends: Vec<Backend>,
}

/// Something worth recording, from a pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointEvent {
    /// An endpoint listens: bound by this pass, or found listening (`kept`:
    /// it kept serving while no conductor ran, or was handed over).
    Listening {
        /// The endpoint.
        endpoint: Name,
        /// Where.
        addr: SocketAddr,
        /// Found listening rather than bound now.
        kept: bool,
    },
    /// An endpoint cannot listen (told once per streak of failures).
    CannotListen {
        /// The endpoint.
        endpoint: Name,
        /// Why.
        error: String,
    },
    /// An endpoint was closed (no longer wanted, or moved).
    Stopped {
        /// The endpoint.
        endpoint: Name,
        /// Where it listened.
        listen: SocketAddr,
    },
    /// The data plane answers (again), or another process answers now.
    DataPlane {
        /// Who answers.
        identity: Identity,
        /// First contact of this reconciler.
        first: bool,
    },
    /// The data plane does not answer (told once until it answers again).
    Unreachable {
        /// Why.
        error: String,
    },
    /// Routing changed (listening, backends, errors): the status is worth
    /// publishing now. No event to record.
    Changed,
}

/// One endpoint as the conductor shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointView {
    /// Its name.
    pub name: Name,
    /// The declared listen address.
    pub listen: SocketAddr,
    /// The service it routes to.
    pub service: Name,
    /// Whether it listens.
    pub listening: bool,
    /// The instances it routes to.
    pub backends: Vec<InstanceId>,
    /// Why it does not listen.
    pub error: Option<String>,
    /// Requests received (since the data plane process started).
    pub requests: u64,
    /// Requests the endpoint answered with an error.
    pub failures: u64,
    /// Responses by status class.
    pub responses: glint_proxy::ResponseClasses,
    /// Request latency (arrival to response head).
    pub latency: glint_proxy::LatencyStats,
    /// Requests in flight now.
    pub in_flight: u64,
}

/// What the reconciler last saw.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EndpointsStatus {
    /// Every endpoint the data plane has.
    pub endpoints: Vec<EndpointView>,
    /// Who serves them.
    pub data_plane: Option<Identity>,
    /// Why the data plane could not be read, if it could not.
    pub error: Option<String>,
    /// When an endpoint that cannot bind is tried again, if one cannot.
    pub retry_bind_at: Option<Instant>,
    /// Whether every wanted endpoint listens or has failed to (or the data
    /// plane cannot be reached): a rollout may be recorded as converged.
    pub settled: bool,
}

/// What an endpoint looked like at the last pass.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    listen: SocketAddr,
    listening: Option<SocketAddr>,
    error: Option<String>,
    backends: Vec<Backend>,
}

/// The endpoints reconciler's memory between passes (nothing it needs to be
/// correct: a fresh one converges the same way; it only avoids repeating
/// events and generations).
#[derive(Debug, Default)]
pub struct Reconciler {
    generation: u64,
    backend_generations: BTreeMap<Name, u64>,
    seen: BTreeMap<Name, Seen>,
    pid: Option<u32>,
    retry_bind_at: Option<Instant>,
    /// Bind attempts in a row that left an endpoint not listening.
    bind_failures: u32,
    /// How long to wait after the n-th failed bind attempt in a row
    /// (default: [`BIND_RETRY`] every time).
    bind_retry: Option<fn(u32) -> Duration>,
}

impl Reconciler {
    /// A reconciler with no memory.
    pub fn new() -> Reconciler {
        Reconciler::default()
    }

    /// A reconciler that waits `retry(n)` after the n-th bind attempt in a
    /// row that left an endpoint not listening (the conductor's one backoff
    /// policy).
    pub fn with_bind_retry(retry: fn(u32) -> Duration) -> Reconciler {
        Reconciler {
            bind_retry: Some(retry),
            ..Reconciler::default()
        }
    }

    /// One pass: reads the data plane, sends what differs from `desired`,
    /// returns the status and the events.
    pub async fn reconcile(
        &mut self,
        plane: &dyn DataPlane,
        desired: &Desired,
    ) -> Result<(EndpointsStatus, Vec<EndpointEvent>), DataPlaneError> {
        let mut events = Vec::new();
        let state = plane.state().await?;
        if self.pid != Some(state.identity.pid) {
            events.push(EndpointEvent::DataPlane {
                identity: state.identity.clone(),
                first: self.pid.is_none(),
            });
            self.pid = Some(state.identity.pid);
        }
        let was_listening: BTreeSet<Name> = state
            .endpoints
            .iter()
            .filter(|e| e.listening.is_some())
            .map(|e| e.spec.name().clone())
            .collect();

        // The endpoint set.
        let want: Vec<&EndpointSpec> = desired.endpoints.values().map(|d| &d.spec).collect();
        let have: BTreeMap<&Name, &EndpointSpec> = state
            .endpoints
            .iter()
            .map(|e| (e.spec.name(), &e.spec))
            .collect();
        let differs =
            want.len() != have.len() || want.iter().any(|w| have.get(w.name()) != Some(w));
        let failing = state.endpoints.iter().any(|e| e.listening.is_none());
        let now = Instant::now();
        let retry_due = self.retry_bind_at.is_none_or(|t| now >= t);
        let mut reports: Vec<EndpointReport> = state.endpoints;
        if differs || (failing && retry_due) {
            self.generation = self.generation.max(state.generation.unwrap_or(0)) + 1;
            let applied = plane
                .set_endpoints(self.generation, want.into_iter().cloned().collect())
                .await?;
            if !applied.applied {
                // Someone else programs it with newer generations: leave
                // it (and pick a higher generation next time).
                tracing::warn!("the data plane refused an endpoint set as stale");
            }
            reports = applied.endpoints;
            let still_failing = reports.iter().any(|e| e.listening.is_none());
            if still_failing {
                self.bind_failures = self.bind_failures.saturating_add(1);
                let wait = self
                    .bind_retry
                    .map_or(BIND_RETRY, |f| f(self.bind_failures));
                self.retry_bind_at = Some(now + wait);
            } else {
                self.bind_failures = 0;
                self.retry_bind_at = None;
            }
        }

        // Each endpoint's backend set.
        for d in desired.endpoints.values() {
            let name = d.spec.name();
            let Some(report) = reports.iter_mut().find(|r| r.spec.name() == name) else {
                continue;
            };
            let mut backends = d.backends.clone();
            backends.sort();
            backends.dedup();
            if report.backends == backends {
                continue;
            }
            let last = self.backend_generations.get(name).copied().unwrap_or(0);
            let generation = last.max(report.generation.unwrap_or(0)) + 1;
            if plane
                .set_backends(name, generation, backends.clone())
                .await?
            {
                report.backends = backends;
                report.generation = Some(generation);
            }
            self.backend_generations.insert(name.clone(), generation);
        }
        self.backend_generations
            .retain(|name, _| desired.endpoints.contains_key(name));

        // Events, against the last pass.
        let mut seen = BTreeMap::new();
        for r in &reports {
            let name = r.spec.name();
            let now_seen = Seen {
                listen: r.spec.config.listen,
                listening: r.listening,
                error: r.error.clone(),
                backends: r.backends.clone(),
            };
            let before = self.seen.get(name);
            if let Some(addr) = r.listening
                && before.is_none_or(|b| b.listening != Some(addr))
            {
                events.push(EndpointEvent::Listening {
                    endpoint: name.clone(),
                    addr,
                    kept: was_listening.contains(name),
                });
            }
            if let Some(error) = &r.error
                && r.listening.is_none()
                && before.is_none_or(|b| b.error.is_none())
            {
                events.push(EndpointEvent::CannotListen {
                    endpoint: name.clone(),
                    error: error.clone(),
                });
            }
            seen.insert(name.clone(), now_seen);
        }
        for (name, old) in &self.seen {
            if !seen.contains_key(name) {
                events.push(EndpointEvent::Stopped {
                    endpoint: name.clone(),
                    listen: old.listen,
                });
            }
        }
        if seen != self.seen {
            events.push(EndpointEvent::Changed);
        }
        self.seen = seen;

        let settled = desired.endpoints.keys().all(|name| {
            reports
                .iter()
                .any(|r| r.spec.name() == name && (r.listening.is_some() || r.error.is_some()))
        });
        let status = EndpointsStatus {
            endpoints: reports.iter().map(view).collect(),
            data_plane: Some(state.identity),
            error: None,
            retry_bind_at: self.retry_bind_at,
            settled,
        };
        Ok((status, events))
    }
}

/// An endpoint report as the conductor shows it.
pub fn view(r: &EndpointReport) -> EndpointView {
    EndpointView {
        name: r.spec.name().clone(),
        listen: r.spec.config.listen,
        service: r.spec.service.clone(),
        listening: r.listening.is_some(),
        backends: r.backends.iter().map(|b| b.instance.clone()).collect(),
        error: r.error.clone(),
        requests: r.stats.as_ref().map_or(0, |s| s.requests),
        failures: r.stats.as_ref().map_or(0, |s| s.failures.answered()),
        responses: r.stats.as_ref().map(|s| s.responses).unwrap_or_default(),
        latency: r
            .stats
            .as_ref()
            .map(|s| s.latency.clone())
            .unwrap_or_default(),
        in_flight: r.stats.as_ref().map_or(0, |s| s.in_flight),
    }
}

/// The endpoints reconciler running in its own task (see the module doc).
pub struct Endpoints {
    plane: Arc<dyn DataPlane>,
    desired: watch::Sender<Option<Desired>>,
    status: watch::Receiver<EndpointsStatus>,
    task: JoinHandle<()>,
}

impl Drop for Endpoints {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Endpoints {
    /// Starts reconciling `plane`; events go to `events`.
    pub fn start(
        plane: Arc<dyn DataPlane>,
        events: mpsc::UnboundedSender<EndpointEvent>,
    ) -> Endpoints {
        let (desired, desired_rx) = watch::channel(None);
        let (status_tx, status) = watch::channel(EndpointsStatus::default());
        let task = tokio::spawn(run(Arc::clone(&plane), desired_rx, status_tx, events));
        Endpoints {
            plane,
            desired,
            status,
            task,
        }
    }

    /// Hands over the desired state; a pass follows at once if it changed.
    pub fn set(&self, desired: Desired) {
        self.desired.send_if_modified(|d| {
            if d.as_ref() == Some(&desired) {
                false
            } else {
                *d = Some(desired);
                true
            }
        });
    }

    /// The desired state handed over last.
    pub fn desired(&self) -> Option<Desired> {
        self.desired.borrow().clone()
    }

    /// The status of the last pass.
    pub fn status(&self) -> EndpointsStatus {
        self.status.borrow().clone()
    }

    /// Whether every endpoint of the desired state handed over last listens
    /// or has failed to (or the data plane cannot be reached): what a
    /// rollout waits for before it is recorded as converged. `false` before
    /// the first pass of that state.
    pub fn settled(&self) -> bool {
        let desired = self.desired.borrow();
        let Some(desired) = desired.as_ref() else {
            return false;
        };
        let status = self.status.borrow();
        status.error.is_some()
            || desired.endpoints.keys().all(|name| {
                status
                    .endpoints
                    .iter()
                    .any(|v| &v.name == name && (v.listening || v.error.is_some()))
            })
    }

    /// The data plane (for drains, and the shutdown of `glint up`).
    pub fn plane(&self) -> Arc<dyn DataPlane> {
        Arc::clone(&self.plane)
    }

    /// Stops reconciling; the data plane is left as it is.
    pub fn stop(&self) {
        self.task.abort();
    }
}

async fn run(
    plane: Arc<dyn DataPlane>,
    mut desired: watch::Receiver<Option<Desired>>,
    status: watch::Sender<EndpointsStatus>,
    events: mpsc::UnboundedSender<EndpointEvent>,
) {
    let mut reconciler = Reconciler::new();
    let mut tick = tokio::time::interval(RESYNC);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut unreachable = false;
    loop {
        tokio::select! {
            changed = desired.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = tick.tick() => {}
        }
        let Some(wanted) = desired.borrow_and_update().clone() else {
            continue;
        };
        match reconciler.reconcile(plane.as_ref(), &wanted).await {
            Ok((now, evs)) => {
                unreachable = false;
                for e in evs {
                    let _ = events.send(e);
                }
                status.send_if_modified(|s| {
                    let changed = *s != now;
                    *s = now;
                    changed
                });
            }
            Err(e) => {
                let error = crate::error_chain(&e);
                if !unreachable {
                    unreachable = true;
                    let _ = events.send(EndpointEvent::Unreachable {
                        error: error.clone(),
                    });
                }
                status.send_modify(|s| {
                    s.error = Some(error);
                    s.settled = true;
                });
            }
        }
    }
}
