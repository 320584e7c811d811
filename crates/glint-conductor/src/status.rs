//! The conductor's live status: what `glint up` draws, `glint status` shows
//! and the API serves. Published by the driver after every pass.

use crate::decide::MemberPhase;
use crate::reconciler::ReconcilerStatus;
use glint_model::{InstanceId, Name, VersionNumber};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// A snapshot of the conductor's view.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// The version being converged to.
    pub version: Option<VersionNumber>,
    /// Whether every service has its declared count of ready instances of the
    /// newest version and nothing is being launched or retired.
    pub converged: bool,
    /// Per service.
    pub services: Vec<ServiceStatus>,
    /// Per endpoint.
    pub endpoints: Vec<EndpointStatus>,
    /// Seconds since the conductor started.
    pub uptime_s: u64,
    /// Its leadership epoch.
    #[serde(default)]
    pub epoch: u64,
    /// Each reconciler's state, in the order they run.
    #[serde(default)]
    pub reconcilers: Vec<ReconcilerStatus>,
    /// What keeps the conductor from converging right now, in words.
    #[serde(default)]
    pub problems: Vec<String>,
    /// A cause that will not go away by itself (the store has refused
    /// writes for a while): waiting for convergence is pointless until
    /// someone acts.
    #[serde(default)]
    pub stuck: Option<String>,
}

/// One service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceStatus {
    /// Its name.
    pub name: Name,
    /// Declared count.
    pub desired: u32,
    /// Healthy instances (any version).
    pub ready: u32,
    /// Healthy instances of the newest version's launch shape.
    pub ready_current: u32,
    /// Available instances of the newest version's launch shape (healthy
    /// for `min_healthy`), never more than `desired`.
    #[serde(default)]
    pub available: u32,
    /// Live instances.
    pub instances: Vec<InstanceStatus>,
    /// Why launches are held back, if they are (crash-loop backoff, a
    /// provider that is not available).
    pub backoff: Option<String>,
    /// A replacement in progress (a rollout, or scheduled replacement).
    pub rollout: Option<RolloutStatus>,
    /// New instances of the target that failed (towards failing its rollout).
    #[serde(default)]
    pub failed_new: u32,
    /// The last failure of one of its instances, while it is in a streak.
    #[serde(default)]
    pub last_failure: Option<String>,
    /// Its autoscaling, when it autoscales.
    #[serde(default)]
    pub autoscale: Option<AutoscaleStatus>,
}

/// Where an autoscaled service stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AutoscaleStatus {
    /// Bounds.
    pub min: u32,
    /// Bounds.
    pub max: u32,
    /// Instances serving now (healthy).
    pub current: u32,
    /// The count the autoscaler chose.
    pub desired: u32,
    /// The metric (`cpu`, `in_flight`, `requests_per_second`, `latency`).
    pub metric: String,
    /// Its last value per instance, in its unit, if measured.
    pub value: Option<f64>,
    /// The target per instance, in the same unit.
    pub target: f64,
    /// The unit (`%`, ` in flight`, ` req/s`, `ms`).
    pub unit: String,
    /// Why the count is what it is.
    pub reason: String,
}

impl Eq for AutoscaleStatus {}

/// A replacement in progress for one service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutStatus {
    /// Stale instances left to replace.
    pub stale: u32,
    /// Of which only because of `max_age`.
    pub aged: u32,
    /// Available instances of the current version.
    pub available: u32,
    /// `[step, steps]` of a canary.
    pub step: Option<(usize, usize)>,
    /// What it waits for.
    pub waiting: Option<String>,
}

/// One instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceStatus {
    /// Its id.
    pub id: InstanceId,
    /// The version it was launched for.
    pub version: VersionNumber,
    /// Where it stands.
    pub phase: MemberPhase,
    /// Whether it has the newest version's launch shape.
    pub current: bool,
    /// Where it listens.
    pub addr: Option<SocketAddr>,
    /// When it was launched (ms since the epoch).
    pub created_at: i64,
}

/// One endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointStatus {
    /// Its name.
    pub name: Name,
    /// Declared listen address.
    pub listen: SocketAddr,
    /// Whether it is listening.
    pub listening: bool,
    /// The service it routes to.
    pub service: Name,
    /// Backends it currently routes to.
    pub backends: Vec<InstanceId>,
    /// Why it is not listening, if it is not.
    pub error: Option<String>,
    /// Requests served so far.
    pub requests: u64,
    /// Requests that failed (no backend, every attempt failed).
    pub failures: u64,
    /// HTTP responses by status class.
    #[serde(default)]
    pub responses: glint_proxy::ResponseClasses,
    /// HTTP request latency to the response head.
    #[serde(default)]
    pub latency: glint_proxy::LatencyStats,
    /// HTTP requests in flight now.
    #[serde(default)]
    pub in_flight: u64,
}
