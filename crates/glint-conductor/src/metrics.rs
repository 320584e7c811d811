//! The conductor's Prometheus metrics (`GET /metrics`, text format).
//!
//! Two kinds of figures, both with bounded labels (a service, an endpoint, a
//! reason or an outcome from a fixed set — never an instance id):
//!
//! - **What happened** (counters and histograms), observed from the typed
//!   events as the [`EventSink`](crate::events::EventSink) receives them
//!   ([`Metrics::observe`]), before its rate limit: launches and
//!   retirements by reason, drift and incidents by kind, rollouts by
//!   outcome and their duration, and the time from an instance's death to
//!   its replacement serving. Plus the conductor's pass duration (timed by
//!   the driver) and the store's write latency (timed by the store,
//!   [`glint_store::WriteStats`]).
//! - **What is** (gauges), computed at scrape time from the published
//!   [`Status`] — the same value `glint status` and `GET /v1/status` show,
//!   so the figures agree: instances by service, state and health, desired
//!   and healthy per service, and per endpoint its requests by status
//!   class, latency histogram and requests in flight (from `glint-proxy`'s
//!   counters).
//!
//! Notifications do not exist yet; their families arrive with them.

use crate::decide::MemberPhase;
use crate::events::ConductorEvent;
use crate::status::Status;
use glint_store::{Clock, Store};
use prometheus_client::encoding::{EncodeLabelSet, text};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

/// Buckets for durations of seconds to minutes (replacement, rollout).
const SLOW_BUCKETS: [f64; 12] = [
    0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];
/// Buckets for a conductor pass.
const PASS_BUCKETS: [f64; 10] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];
/// Deaths remembered per service while waiting for their replacement.
const MAX_PENDING_DEATHS: usize = 1024;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceReason {
    service: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceLabel {
    service: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: String,
}

#[derive(Default)]
struct Pending {
    /// Per service, when instances died that are not replaced yet.
    deaths: BTreeMap<String, VecDeque<i64>>,
    /// When each version's rollout started.
    rollouts: BTreeMap<u64, i64>,
}

/// See the module documentation. Cheap to share (`Arc`).
pub struct Metrics {
    registry: Registry,
    clock: Arc<dyn Clock>,
    launches: Family<ServiceReason, Counter>,
    retirements: Family<ServiceReason, Counter>,
    drift: Family<KindLabel, Counter>,
    incidents: Family<KindLabel, Counter>,
    rollouts: Family<OutcomeLabel, Counter>,
    rollout_duration: Family<OutcomeLabel, Histogram>,
    replacement: Family<ServiceLabel, Histogram>,
    pass: Histogram,
    pending: Mutex<Pending>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn slow_histogram() -> Histogram {
    Histogram::new(SLOW_BUCKETS)
}

impl Metrics {
    /// Empty metrics timed by `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Metrics {
        let mut registry = Registry::default();
        let launches = Family::<ServiceReason, Counter>::default();
        registry.register(
            "glint_launches",
            "Instances launched, by service and reason (missing, rollout)",
            launches.clone(),
        );
        let retirements = Family::<ServiceReason, Counter>::default();
        registry.register(
            "glint_retirements",
            "Instances retired, by service and reason (rollout, max_age, failed, scale_down, undeclared, stopping, other)",
            retirements.clone(),
        );
        let drift = Family::<KindLabel, Counter>::default();
        registry.register(
            "glint_drift_detections",
            "Out-of-band changes detected, by kind",
            drift.clone(),
        );
        let incidents = Family::<KindLabel, Counter>::default();
        registry.register(
            "glint_incidents",
            "Events of severity incident, by event kind",
            incidents.clone(),
        );
        let rollouts = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "glint_rollouts",
            "Rollouts ended, by outcome (converged, failed, rolled_back)",
            rollouts.clone(),
        );
        let rollout_duration =
            Family::<OutcomeLabel, Histogram>::new_with_constructor(slow_histogram as fn() -> _);
        registry.register(
            "glint_rollout_duration_seconds",
            "From a rollout's start to its end, by outcome",
            rollout_duration.clone(),
        );
        let replacement =
            Family::<ServiceLabel, Histogram>::new_with_constructor(slow_histogram as fn() -> _);
        registry.register(
            "glint_replacement_seconds",
            "From an instance's death (exit, drift, failed health) to a replacement of its service serving (healthy)",
            replacement.clone(),
        );
        for outcome in ["converged", "failed", "rolled_back"] {
            // Every outcome from the start, so that rates work before the first.
            let _ = rollouts.get_or_create(&OutcomeLabel {
                outcome: outcome.to_owned(),
            });
        }
        let pass = Histogram::new(PASS_BUCKETS);
        registry.register(
            "glint_conductor_pass_seconds",
            "How long one conductor pass (every reconciler once) takes",
            pass.clone(),
        );
        Metrics {
            registry,
            clock,
            launches,
            retirements,
            drift,
            incidents,
            rollouts,
            rollout_duration,
            replacement,
            pass,
            pending: Mutex::new(Pending::default()),
        }
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records one pass's duration.
    pub fn observe_pass(&self, d: std::time::Duration) {
        self.pass.observe(d.as_secs_f64());
    }

    /// Counts what an event says happened. Called for every event, before
    /// the rate limit.
    pub fn observe(&self, e: &ConductorEvent) {
        use ConductorEvent as E;
        let now = self.clock.now_ms();
        let svc = |id: &glint_model::InstanceId| id.service().to_owned();
        match e {
            E::Launching { id, reason, .. } => {
                self.launches
                    .get_or_create(&ServiceReason {
                        service: svc(id),
                        reason: launch_reason(reason).to_owned(),
                    })
                    .inc();
            }
            E::Retiring { id, reason, .. } => {
                self.retirements
                    .get_or_create(&ServiceReason {
                        service: svc(id),
                        reason: retire_reason(reason).to_owned(),
                    })
                    .inc();
            }
            E::Exited { id, .. }
            | E::Unhealthy { id, .. }
            | E::NeverHealthy { id, .. }
            | E::Vanished { id, .. } => self.died(&svc(id), now),
            E::Drifted {
                id, kind, replaced, ..
            } => {
                self.drift
                    .get_or_create(&KindLabel {
                        kind: kind.to_string(),
                    })
                    .inc();
                if *replaced {
                    self.died(&svc(id), now);
                }
            }
            E::ProviderIncident { .. } => {
                self.drift
                    .get_or_create(&KindLabel {
                        kind: "provider".into(),
                    })
                    .inc();
            }
            E::FirewallDrift { .. } => {
                self.drift
                    .get_or_create(&KindLabel {
                        kind: "firewall".into(),
                    })
                    .inc();
            }
            E::Healthy { id, .. } => {
                let died = self
                    .pending()
                    .deaths
                    .get_mut(id.service())
                    .and_then(VecDeque::pop_front);
                if let Some(at) = died {
                    self.replacement
                        .get_or_create(&ServiceLabel { service: svc(id) })
                        .observe(seconds(now - at));
                }
            }
            E::RolloutStarted { version, .. } => {
                self.pending().rollouts.insert(version.0, now);
            }
            E::RolloutCompleted { version, .. } => self.rollout_ended(version.0, "converged", now),
            E::RolloutFailed {
                version,
                rolling_back,
                ..
            } => self.rollout_ended(
                version.0,
                if *rolling_back {
                    "rolled_back"
                } else {
                    "failed"
                },
                now,
            ),
            _ => {}
        }
        let stored = e.to_event();
        if stored.severity == glint_store::Severity::Incident {
            self.incidents
                .get_or_create(&KindLabel {
                    kind: stored.kind.as_str().to_owned(),
                })
                .inc();
        }
    }

    fn died(&self, service: &str, now: i64) {
        let mut p = self.pending();
        let q = p.deaths.entry(service.to_owned()).or_default();
        if q.len() >= MAX_PENDING_DEATHS {
            q.pop_front();
        }
        q.push_back(now);
    }

    fn rollout_ended(&self, version: u64, outcome: &str, now: i64) {
        let label = OutcomeLabel {
            outcome: outcome.to_owned(),
        };
        self.rollouts.get_or_create(&label).inc();
        let started = self.pending().rollouts.remove(&version);
        if let Some(at) = started {
            self.rollout_duration
                .get_or_create(&label)
                .observe(seconds(now - at));
        }
    }

    /// The text exposition: what happened, plus what is now (from
    /// `status`) and the store's write latency.
    pub fn render(&self, status: &Status, store: &dyn Store) -> String {
        let mut out = String::new();
        let live = live_registry(status);
        // Writing into a String cannot fail.
        let _ = text::encode_registry(&mut out, &self.registry);
        let _ = text::encode_registry(&mut out, &live);
        write_endpoint_latency(&mut out, status);
        write_store_latency(&mut out, &store.write_latency());
        let _ = text::encode_eof(&mut out);
        out
    }
}

fn seconds(ms: i64) -> f64 {
    ms.max(0) as f64 / 1000.0
}

/// A launch's reason, as one of a fixed set of words.
pub fn launch_reason(reason: &str) -> &'static str {
    if reason.contains("replacing") || reason.contains("blue/green") || reason.contains("canary") {
        "rollout"
    } else {
        "missing"
    }
}

/// A retirement's reason, as one of a fixed set of words.
pub fn retire_reason(reason: &str) -> &'static str {
    if reason.contains("max_age") {
        "max_age"
    } else if reason.contains("newer version")
        || reason.contains("blue/green")
        || reason.contains("canary")
    {
        "rollout"
    } else if reason.contains("scaled down") {
        "scale_down"
    } else if reason.contains("no longer declared") {
        "undeclared"
    } else if reason.contains("stopping") {
        "stopping"
    } else if reason.contains("health")
        || reason.contains("failed")
        || reason.contains("exited")
        || reason.contains("drift")
    {
        "failed"
    } else {
        "other"
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InstanceLabels {
    service: String,
    state: String,
    health: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: String,
    service: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointStatusLabels {
    endpoint: String,
    service: String,
    status: String,
}

/// An instance's phase as (state, health).
pub fn state_and_health(phase: MemberPhase) -> (&'static str, &'static str) {
    match phase {
        MemberPhase::Launching => ("launching", "starting"),
        MemberPhase::Starting => ("running", "starting"),
        MemberPhase::Healthy => ("running", "healthy"),
        MemberPhase::Failed => ("running", "unhealthy"),
        MemberPhase::Retiring => ("retiring", "none"),
    }
}

fn live_registry(status: &Status) -> Registry {
    let mut r = Registry::default();
    let instances = Family::<InstanceLabels, Gauge>::default();
    let desired = Family::<ServiceLabel, Gauge>::default();
    let healthy = Family::<ServiceLabel, Gauge>::default();
    for s in &status.services {
        let service = s.name.to_string();
        let label = ServiceLabel {
            service: service.clone(),
        };
        desired.get_or_create(&label).set(i64::from(s.desired));
        healthy.get_or_create(&label).set(i64::from(s.ready));
        for i in &s.instances {
            let (state, health) = state_and_health(i.phase);
            instances
                .get_or_create(&InstanceLabels {
                    service: service.clone(),
                    state: state.to_owned(),
                    health: health.to_owned(),
                })
                .inc();
        }
    }
    r.register(
        "glint_instances",
        "Live instances, by service, state (launching, running, retiring) and health",
        instances,
    );
    r.register(
        "glint_service_desired_instances",
        "Declared instance count per service",
        desired,
    );
    r.register(
        "glint_service_healthy_instances",
        "Healthy instances per service (any version)",
        healthy,
    );
    let requests = Family::<EndpointStatusLabels, Counter>::default();
    let in_flight = Family::<EndpointLabels, Gauge>::default();
    for e in &status.endpoints {
        let labels = EndpointLabels {
            endpoint: e.name.to_string(),
            service: e.service.to_string(),
        };
        in_flight.get_or_create(&labels).set(e.in_flight as i64);
        for (class, n) in e.responses.classes() {
            requests
                .get_or_create(&EndpointStatusLabels {
                    endpoint: labels.endpoint.clone(),
                    service: labels.service.clone(),
                    status: class.to_owned(),
                })
                .inc_by(n);
        }
    }
    r.register(
        "glint_endpoint_requests",
        "Requests answered by an endpoint, by status class (1xx..5xx)",
        requests,
    );
    r.register(
        "glint_endpoint_in_flight_requests",
        "Requests an endpoint is carrying now",
        in_flight,
    );
    r
}

/// The proxy's latency buckets, written as a Prometheus histogram per
/// endpoint (prometheus-client only encodes histograms it observed itself).
fn write_endpoint_latency(out: &mut String, status: &Status) {
    use std::fmt::Write as _;
    let name = "glint_endpoint_request_duration_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Time from a request's arrival at the endpoint to its response head"
    );
    let _ = writeln!(out, "# TYPE {name} histogram");
    for e in &status.endpoints {
        let labels = format!("endpoint=\"{}\",service=\"{}\"", e.name, e.service);
        let mut cumulative = 0u64;
        for (i, le) in glint_proxy::LATENCY_BUCKETS.iter().enumerate() {
            cumulative += e.latency.buckets.get(i).copied().unwrap_or(0);
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}");
        }
        let count = e.latency.count();
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "{name}_sum{{{labels}}} {}",
            e.latency.sum_us as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
    }
}

fn write_store_latency(out: &mut String, l: &glint_store::WriteLatency) {
    use std::fmt::Write as _;
    let name = "glint_store_write_duration_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} How long one store write transaction takes, from lock to commit"
    );
    let _ = writeln!(out, "# TYPE {name} histogram");
    let mut cumulative = 0u64;
    for (i, le) in glint_store::stats::BUCKETS.iter().enumerate() {
        cumulative += l.buckets.get(i).copied().unwrap_or(0);
        let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
    }
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", l.count);
    let _ = writeln!(out, "{name}_sum {}", l.sum_s);
    let _ = writeln!(out, "{name}_count {}", l.count);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_fall_into_a_fixed_set() {
        assert_eq!(
            launch_reason("replacing web: 1 of 3 instances on the current version"),
            "rollout"
        );
        assert_eq!(launch_reason("web has 2 of 3 instances"), "missing");
        assert_eq!(retire_reason("reached max_age (1h)"), "max_age");
        assert_eq!(
            retire_reason("replaced by the newer version of web"),
            "rollout"
        );
        assert_eq!(retire_reason("web is scaled down to 1"), "scale_down");
        assert_eq!(
            retire_reason("service web is no longer declared"),
            "undeclared"
        );
        assert_eq!(retire_reason("failed its health check"), "failed");
        assert_eq!(retire_reason("the conductor is stopping"), "stopping");
    }
}
