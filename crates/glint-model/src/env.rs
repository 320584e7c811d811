//! The compiled environment: Glint's intermediate representation.
//!
//! The language compiles a set of `.glint` files into one [`Environment`]. It is
//! fully resolved: every default has been applied, every reference checked and
//! every template expanded, so that nothing downstream needs to know the
//! language. It is serialisable, and its canonical JSON is hashed
//! ([`Environment::content_hash`]) to name a version's content.
//!
//! Paths in the IR (image `copy` sources, archive paths) are relative to the
//! environment's root directory (the directory of the main file) and use `/`,
//! so the same sources give byte-identical IR wherever they are checked out.
//!
//! Every declaration kind on the roadmap has a type here now, even where its
//! runtime comes later, so that files written today stay valid.

use crate::{Bytes, ContentHash, Digest, Millis, Name};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

/// Everything declared in one set of source files, applied as a whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Environment {
    /// The environment's name (used in labels). Defaults to the main file's stem.
    pub name: Name,
    /// Images, by name.
    pub images: BTreeMap<Name, Image>,
    /// Services, by name.
    pub services: BTreeMap<Name, Service>,
    /// Endpoints, by name.
    pub endpoints: BTreeMap<Name, Endpoint>,
    /// Firewall rules, by name.
    pub rules: BTreeMap<Name, Rule>,
    /// Shared variables, by name.
    pub variables: BTreeMap<Name, Variable>,
    /// Volumes, by name.
    pub volumes: BTreeMap<Name, Volume>,
    /// Policies that were checked (they are evaluated at compile time; they are
    /// kept in the IR as a record of what the version was checked against).
    pub policies: BTreeMap<Name, Policy>,
    /// The version of every secret a variable names, as it was when the
    /// environment was applied. Never written by the language (the compiler
    /// knows only names; `glint check --emit ir` has none): `apply`, `up`
    /// and `rollback` fill it from the store, so that a new secret version
    /// changes the readers' launch shape and replaces them. Versions, never
    /// values. Left out of the JSON (and the hash) when empty.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secret_versions: BTreeMap<String, u64>,
    /// Notification sinks (`notify`), by name. Left out of the JSON (and
    /// the hash) when empty, so versions stored before it load unchanged.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub notify: BTreeMap<Name, Notify>,
}

impl Environment {
    /// Every secret a `variable` names, with the services that read it
    /// (by secret name; readers sorted, without repeats).
    pub fn secret_readers(&self) -> BTreeMap<&str, Vec<&Name>> {
        let mut out: BTreeMap<&str, Vec<&Name>> = BTreeMap::new();
        for v in self.variables.values() {
            if let VariableValue::Secret(name) = &v.value {
                let readers = out.entry(name.as_str()).or_default();
                readers.extend(v.readers.iter());
                readers.sort();
                readers.dedup();
            }
        }
        out
    }

    /// The secrets `service` reads (by name, sorted, without repeats).
    pub fn secrets_of(&self, service: &Name) -> Vec<&str> {
        let mut out: Vec<&str> = self
            .variables
            .values()
            .filter(|v| v.readers.contains(service))
            .filter_map(|v| match &v.value {
                VariableValue::Secret(name) => Some(name.as_str()),
                _ => None,
            })
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The literal and runtime variables `service` reads or writes, by
    /// name (secret variables are [`Environment::secrets_of`]).
    pub fn variables_of(&self, service: &Name) -> Vec<(&Name, &Variable)> {
        self.variables
            .iter()
            .filter(|(_, v)| !matches!(v.value, VariableValue::Secret(_)))
            .filter(|(_, v)| v.readers.contains(service) || v.writers.contains(service))
            .collect()
    }

    /// An environment with nothing declared.
    pub fn empty(name: Name) -> Environment {
        Environment {
            name,
            images: BTreeMap::new(),
            services: BTreeMap::new(),
            endpoints: BTreeMap::new(),
            rules: BTreeMap::new(),
            variables: BTreeMap::new(),
            volumes: BTreeMap::new(),
            policies: BTreeMap::new(),
            secret_versions: BTreeMap::new(),
            notify: BTreeMap::new(),
        }
    }

    /// The sha256 of the canonical JSON of the whole environment.
    pub fn content_hash(&self) -> ContentHash {
        ContentHash::of(self)
    }

    /// The canonical JSON, pretty-printed (what `glint check --emit ir` prints).
    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

/// Which provider runs a service's instances.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    /// Local child processes (the embedded default).
    #[default]
    Process,
    /// Docker containers through the Docker Engine API.
    Docker,
    /// The in-memory simulated provider (tests and scale benchmarks).
    Simulated,
    /// EC2 instances through the AWS API (`glint-aws`).
    Aws,
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProviderKind::Process => "process",
            ProviderKind::Docker => "docker",
            ProviderKind::Simulated => "simulated",
            ProviderKind::Aws => "aws",
        })
    }
}

// ---------------------------------------------------------------------------
// Images

/// An immutable image: a base, build steps, tests and run-time configuration.
///
/// The simplest image (the spine's "local directory plus an entrypoint") is
/// `from = scratch` with one `copy` of a directory to `/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    /// What the image starts from.
    pub from: ImageBase,
    /// Build steps, in order.
    pub steps: Vec<ImageStep>,
    /// Commands run against the finished image; any failure fails the build.
    pub tests: Vec<Vec<String>>,
    /// The program (argv) an instance runs; absolute paths are inside the image.
    pub entrypoint: Vec<String>,
    /// Environment variables set in the image.
    pub env: BTreeMap<String, String>,
    /// Working directory inside the image. Default `/`.
    pub workdir: String,
    /// The port the program listens on, if it serves one.
    pub port: Option<u16>,
    /// The digest the built image must have, if pinned.
    pub digest: Option<Digest>,
}

/// What an image starts from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum ImageBase {
    /// An empty filesystem.
    Scratch,
    /// Another declared image.
    Image {
        /// Its name.
        name: Name,
    },
    /// A local tarball or OCI archive, pinned by digest.
    Archive {
        /// Path relative to the environment root.
        path: String,
        /// The archive's expected sha256.
        digest: Digest,
    },
}

/// One build step of an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum ImageStep {
    /// Copy a file or directory from the source tree into the image.
    Copy {
        /// Source path, relative to the environment root.
        src: String,
        /// Destination path inside the image (absolute).
        dst: String,
    },
    /// Run a command inside the image being built (no network, fixed clock).
    Run {
        /// The command's argv.
        argv: Vec<String>,
    },
}

// ---------------------------------------------------------------------------
// Services

/// A set of identical instances of one image and one configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    /// The image its instances run.
    pub image: Name,
    /// Who runs its instances. Default: the environment's provider, else `process`.
    pub provider: ProviderKind,
    /// How many healthy instances to keep. Default 1.
    pub instances: u32,
    /// Arguments appended to the image's entrypoint.
    pub args: Vec<String>,
    /// Environment variables (on top of the image's and Glint's own).
    pub env: BTreeMap<String, String>,
    /// The port the program listens on inside its instance. Default: the
    /// image's port, else 8080. The process provider gives each instance its own
    /// host port in `PORT` instead.
    pub port: u16,
    /// How to tell a healthy instance from a sick one. `None`: an instance is
    /// healthy as soon as it runs.
    pub health: Option<HealthCheck>,
    /// How to replace instances.
    pub rollout: Rollout,
    /// Replace every instance older than this (phoenix instances).
    pub max_age: Option<Millis>,
    /// How long a retiring instance may finish in-flight requests. Default 30s.
    pub drain: Millis,
    /// Time between SIGTERM and SIGKILL. Default 10s.
    pub stop_grace: Millis,
    /// Resource limits.
    pub resources: Resources,
    /// What to do when someone runs a command inside an instance. Default `replace`.
    pub on_exec: OnExec,
    /// Autoscaling bounds; `None` means a fixed `instances` count.
    pub autoscale: Option<Autoscale>,
    /// Volumes mounted into every instance.
    pub mounts: Vec<Mount>,
}

/// The documented defaults of every optional setting. The language applies
/// them when a field is left out; they are here so that every part of Glint
/// (and every test) agrees on them.
pub mod defaults {
    use crate::Millis;

    /// `instances`.
    pub const INSTANCES: u32 = 1;
    /// A service's `port` when neither it nor its image declares one.
    pub const PORT: u16 = 8080;
    /// `drain`: how long a retiring instance may finish in-flight requests.
    pub const DRAIN: Millis = Millis::from_secs(30);
    /// `stop_grace`: time between SIGTERM and SIGKILL.
    pub const STOP_GRACE: Millis = Millis::from_secs(10);
    /// `health.interval`.
    pub const HEALTH_INTERVAL: Millis = Millis(2000);
    /// `health.timeout`.
    pub const HEALTH_TIMEOUT: Millis = Millis(1000);
    /// `health.healthy_threshold`.
    pub const HEALTHY_THRESHOLD: u32 = 1;
    /// `health.unhealthy_threshold`.
    pub const UNHEALTHY_THRESHOLD: u32 = 3;
    /// `health.start_timeout`.
    pub const START_TIMEOUT: Millis = Millis::from_secs(30);
    /// `rollout.min_healthy`.
    pub const MIN_HEALTHY: Millis = Millis(0);
    /// `rollout.deadline`.
    pub const DEADLINE: Millis = Millis::from_secs(300);
    /// `rollout.auto_rollback`.
    pub const AUTO_ROLLBACK: bool = true;
    /// `rollout.fail_after`.
    pub const FAIL_AFTER: u32 = 1;
    /// `rolling { surge }`.
    pub const SURGE: u32 = 1;
    /// `rolling { unavailable }`.
    pub const UNAVAILABLE: u32 = 0;
    /// An image's `workdir`.
    pub const WORKDIR: &str = "/";
    /// `autoscale.target_cpu` (and the target of `metric = cpu`).
    pub const TARGET_CPU_PERCENT: u32 = 70;
    /// `autoscale.window`: the scale-down stabilisation window.
    pub const SCALE_DOWN_WINDOW: Millis = Millis::from_secs(300);

    /// [`SCALE_DOWN_WINDOW`] (for serde).
    pub fn scale_down_window() -> Millis {
        SCALE_DOWN_WINDOW
    }
}

impl Service {
    /// A service of `image` with every setting at its default.
    pub fn new(image: Name) -> Service {
        Service {
            image,
            provider: ProviderKind::default(),
            instances: defaults::INSTANCES,
            args: Vec::new(),
            env: BTreeMap::new(),
            port: defaults::PORT,
            health: None,
            rollout: Rollout::default(),
            max_age: None,
            drain: defaults::DRAIN,
            stop_grace: defaults::STOP_GRACE,
            resources: Resources::default(),
            on_exec: OnExec::default(),
            autoscale: None,
            mounts: Vec::new(),
        }
    }
}

impl HealthCheck {
    /// A check of `probe` with every setting at its default.
    pub fn new(probe: Probe) -> HealthCheck {
        HealthCheck {
            probe,
            interval: defaults::HEALTH_INTERVAL,
            timeout: defaults::HEALTH_TIMEOUT,
            healthy_threshold: defaults::HEALTHY_THRESHOLD,
            unhealthy_threshold: defaults::UNHEALTHY_THRESHOLD,
            start_timeout: defaults::START_TIMEOUT,
        }
    }
}

impl Default for Rollout {
    fn default() -> Self {
        Rollout {
            strategy: Strategy::default(),
            min_healthy: defaults::MIN_HEALTHY,
            deadline: defaults::DEADLINE,
            auto_rollback: defaults::AUTO_ROLLBACK,
            fail_after: defaults::FAIL_AFTER,
        }
    }
}

impl Image {
    /// An image from `scratch` running `entrypoint`, with nothing else.
    pub fn scratch(entrypoint: Vec<String>) -> Image {
        Image {
            from: ImageBase::Scratch,
            steps: Vec::new(),
            tests: Vec::new(),
            entrypoint,
            env: BTreeMap::new(),
            workdir: defaults::WORKDIR.to_owned(),
            port: None,
            digest: None,
        }
    }
}

/// A health check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    /// What to probe.
    pub probe: Probe,
    /// Time between probes of a healthy instance. Default 2s.
    pub interval: Millis,
    /// How long one probe may take. Default 1s.
    pub timeout: Millis,
    /// Consecutive passes that make an instance healthy. Default 1.
    pub healthy_threshold: u32,
    /// Consecutive failures that make an instance unhealthy. Default 3.
    pub unhealthy_threshold: u32,
    /// How long a new instance may take to become healthy before it is
    /// declared failed and replaced. Default 30s.
    pub start_timeout: Millis,
}

/// What a health check probes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Probe {
    /// An HTTP GET of `path` that must answer 2xx or 3xx.
    Http {
        /// The request path, starting with `/`.
        path: String,
    },
    /// A TCP connection that must be accepted.
    Tcp,
}

/// How a service's instances are replaced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rollout {
    /// The strategy.
    pub strategy: Strategy,
    /// A new instance counts only after it has been healthy this long. Default 0s.
    pub min_healthy: Millis,
    /// A rollout that makes no progress for this long fails. Default 5m.
    pub deadline: Millis,
    /// Roll back automatically when a rollout fails. Default true.
    pub auto_rollback: bool,
    /// How many new instances may fail (could not launch, crashed, failed
    /// their health check before they were stable) before the rollout fails.
    /// Default 1: the first failure condemns the version.
    #[serde(default = "default_fail_after")]
    pub fail_after: u32,
}

fn default_fail_after() -> u32 {
    defaults::FAIL_AFTER
}

/// A rollout strategy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Strategy {
    /// Replace a few at a time. Defaults `surge = 1`, `unavailable = 0`.
    Rolling {
        /// Extra instances allowed above the declared count.
        surge: u32,
        /// Instances allowed below the declared healthy count.
        unavailable: u32,
    },
    /// Start a complete new set, switch in one step, keep the old set for `keep`.
    BlueGreen {
        /// How long the old set stays ready for an instant switch-back.
        keep: Millis,
    },
    /// Grow the new version in steps, pausing to watch between them.
    Canary {
        /// Instance counts of the new version at each step (the last step,
        /// all instances, is implied).
        steps: Vec<u32>,
        /// How long to watch after each step.
        pause: Millis,
    },
}

impl Default for Strategy {
    fn default() -> Self {
        Strategy::Rolling {
            surge: defaults::SURGE,
            unavailable: defaults::UNAVAILABLE,
        }
    }
}

/// Resource limits of one instance.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Resources {
    /// Memory limit.
    pub memory: Option<Bytes>,
    /// CPU limit in thousandths of a CPU (`500` = half a CPU).
    pub cpu_millis: Option<u32>,
    /// Most processes (and threads) the instance may have at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids: Option<u32>,
}

impl Resources {
    /// Whether any limit is declared.
    pub fn is_limited(&self) -> bool {
        self.memory.is_some() || self.cpu_millis.is_some() || self.pids.is_some()
    }
}

/// What to do when someone runs a command inside an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnExec {
    /// The instance is tainted and replaced.
    #[default]
    Replace,
    /// An incident is recorded; the instance stays.
    Report,
}

/// Autoscaling bounds (an upper bound is mandatory) and the metric the
/// instance count follows.
///
/// The count follows the Kubernetes HPA rule: `desired = ceil(current ×
/// metric / target)`, ignored within a tolerance of 10 %, applied at once
/// upwards (at most [`Autoscale::max_step`] instances per step) and
/// downwards only after every recommendation of the last
/// [`Autoscale::window`] asked for fewer, always within `[min, max]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Autoscale {
    /// Never fewer than this (at least 1).
    pub min: u32,
    /// Never more than this.
    pub max: u32,
    /// What is measured and the value aimed at per instance.
    #[serde(default)]
    pub metric: ScaleMetric,
    /// Scale-down stabilisation window: the count only falls to the highest
    /// recommendation made during this long. Default 5m.
    #[serde(default = "defaults::scale_down_window")]
    pub window: Millis,
    /// The most instances one scale-up step adds. `None`: as many as are
    /// running, at least 4 (the HPA's default policy).
    #[serde(default)]
    pub max_step: Option<u32>,
}

/// What an autoscaled service's instance count follows, with its target
/// value per instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum ScaleMetric {
    /// CPU use of each instance's cgroup, in percent of its `cpu_millis`
    /// (of one CPU when no `cpu_millis` is declared).
    Cpu {
        /// Target percent.
        percent: u32,
    },
    /// Requests in flight through the service's endpoints, on average per
    /// instance over the sampling interval.
    InFlight {
        /// Target requests in flight per instance.
        per_instance: u32,
    },
    /// Requests per second through the service's endpoints, per instance.
    RequestsPerSecond {
        /// Target requests per second per instance.
        per_instance: u32,
    },
    /// Mean time from a request's admission to its response's end through
    /// the service's endpoints.
    Latency {
        /// Target mean latency.
        target: Millis,
    },
}

impl Default for ScaleMetric {
    fn default() -> Self {
        ScaleMetric::Cpu {
            percent: defaults::TARGET_CPU_PERCENT,
        }
    }
}

impl ScaleMetric {
    /// The metric's name as written in the language (`in_flight`).
    pub fn name(&self) -> &'static str {
        match self {
            ScaleMetric::Cpu { .. } => "cpu",
            ScaleMetric::InFlight { .. } => "in_flight",
            ScaleMetric::RequestsPerSecond { .. } => "requests_per_second",
            ScaleMetric::Latency { .. } => "latency",
        }
    }

    /// The target as a number in the metric's unit (percent, requests,
    /// requests per second, milliseconds).
    pub fn target(&self) -> f64 {
        match self {
            ScaleMetric::Cpu { percent } => f64::from(*percent),
            ScaleMetric::InFlight { per_instance } => f64::from(*per_instance),
            ScaleMetric::RequestsPerSecond { per_instance } => f64::from(*per_instance),
            ScaleMetric::Latency { target } => target.0 as f64,
        }
    }

    /// The metric's unit, for people (`%`, ` in flight`, ` req/s`, `ms`).
    pub fn unit(&self) -> &'static str {
        match self {
            ScaleMetric::Cpu { .. } => "%",
            ScaleMetric::InFlight { .. } => " in flight",
            ScaleMetric::RequestsPerSecond { .. } => " req/s",
            ScaleMetric::Latency { .. } => "ms",
        }
    }
}

/// A volume mounted into a service's instances.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// The volume.
    pub volume: Name,
    /// Where it appears inside the instance.
    pub path: String,
    /// Mounted read-only.
    pub read_only: bool,
}

// ---------------------------------------------------------------------------
// Endpoints, rules, variables, volumes, policies

/// A long-lived entry point that routes to a service's healthy instances.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// The address it listens on.
    pub listen: SocketAddr,
    /// The service it routes to.
    pub service: Name,
    /// HTTP (request-level balancing and retries) or TCP (connection-level).
    pub protocol: EndpointProtocol,
}

/// The protocol an endpoint speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndpointProtocol {
    /// HTTP/1.1 reverse proxy.
    #[default]
    Http,
    /// Plain TCP forwarding.
    Tcp,
}

/// A declared network permission: who may reach which ports of a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    /// Who may connect.
    pub from: RuleSource,
    /// The service that may be reached.
    pub to: Name,
    /// The ports that may be reached (empty: the service's port).
    pub ports: Vec<u16>,
    /// Transport protocol.
    pub protocol: Transport,
}

/// The source side of a rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum RuleSource {
    /// Any address in a CIDR block.
    Cidr(Cidr),
    /// The instances of another service.
    Service(Name),
    /// An endpoint (its proxy).
    Endpoint(Name),
}

/// A transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    /// TCP.
    #[default]
    Tcp,
    /// UDP.
    Udp,
}

/// A shared variable and who may read and write it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Variable {
    /// Where the value comes from.
    pub value: VariableValue,
    /// Services that may read it.
    pub readers: Vec<Name>,
    /// Services that may write it at run time.
    pub writers: Vec<Name>,
}

/// Where a variable's value comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum VariableValue {
    /// A value declared in the source.
    Literal(String),
    /// A reference to a secret held outside the source (never its value).
    Secret(String),
    /// Written at run time by a writer; optionally with an initial value.
    Runtime(Option<String>),
}

/// A notification sink: where incidents, failed rollouts and automatic
/// rollbacks are sent (`notify "NAME" { ... }`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notify {
    /// Where messages are posted (`http://` or `https://`).
    pub url: String,
    /// The shape of the messages.
    #[serde(default)]
    pub format: NotifyFormat,
    /// The Glint secret holding the signing key (`webhook`) or the routing
    /// key (`pagerduty`): its name, never its value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// What is sent (sorted, without repeats; every topic by default).
    #[serde(default = "NotifyTopic::all")]
    pub on: Vec<NotifyTopic>,
}

impl Notify {
    /// Whether `url` is one a sink can post to: `http://` or `https://`, a
    /// host (a name, an IPv4 address or a bracketed IPv6 one), an optional
    /// port, then a path; no spaces, no user name or password. `Err` says
    /// what is wrong.
    pub fn check_url(url: &str) -> Result<(), String> {
        let rest = if let Some(r) = url.strip_prefix("https://") {
            r
        } else if let Some(r) = url.strip_prefix("http://") {
            r
        } else {
            return Err(match url.split_once("://") {
                Some((scheme, _)) => format!("the scheme `{scheme}` is not http or https"),
                None => "it does not start with `http://` or `https://`".into(),
            });
        };
        if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("it contains a space or a control character".into());
        }
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        if authority.contains('@') {
            return Err(
                "it carries a user name or password (`user@host`): put credentials in `secret`"
                    .into(),
            );
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            match v6.split_once(']') {
                Some((h, p)) if h.parse::<std::net::Ipv6Addr>().is_ok() => (h, p),
                _ => return Err("its IPv6 host is not a valid address in brackets".into()),
            }
        } else {
            match authority.split_once(':') {
                Some((h, p)) => (h, &authority[h.len()..][..p.len() + 1]),
                None => (authority, ""),
            }
        };
        if host.is_empty() {
            return Err("it has no host".into());
        }
        if !authority.starts_with('[')
            && !host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_')
        {
            return Err(format!("`{host}` is not a host name or address"));
        }
        if let Some(p) = port.strip_prefix(':') {
            if p.parse::<u16>().map_or(true, |n| n == 0) {
                return Err(format!("`{p}` is not a port (1 to 65535)"));
            }
        } else if !port.is_empty() {
            return Err("something follows the host that is not a port".into());
        }
        Ok(())
    }
}

/// The shape of a sink's messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifyFormat {
    /// Generic JSON signed per Standard Webhooks (`webhook-id`,
    /// `webhook-timestamp`, `webhook-signature`).
    #[default]
    Webhook,
    /// A Slack incoming webhook (`{"text": ...}`).
    Slack,
    /// PagerDuty Events API v2 (`trigger` / `resolve` with a dedup key).
    Pagerduty,
}

impl NotifyFormat {
    /// `webhook`, `slack` or `pagerduty`.
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyFormat::Webhook => "webhook",
            NotifyFormat::Slack => "slack",
            NotifyFormat::Pagerduty => "pagerduty",
        }
    }
}

/// What a sink is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifyTopic {
    /// Every incident occurrence (drift found, what was done).
    Incident,
    /// A rollout that failed (deadline, failing instances).
    RolloutFailed,
    /// An automatic rollback to the last good version.
    Rollback,
}

impl NotifyTopic {
    /// Every topic, in order.
    pub fn all() -> Vec<NotifyTopic> {
        vec![
            NotifyTopic::Incident,
            NotifyTopic::RolloutFailed,
            NotifyTopic::Rollback,
        ]
    }

    /// `incident`, `rollout_failed` or `rollback`.
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyTopic::Incident => "incident",
            NotifyTopic::RolloutFailed => "rollout_failed",
            NotifyTopic::Rollback => "rollback",
        }
    }
}

/// Persistent data that outlives instances.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Volume {
    /// Requested capacity (checked against usage; not a hard quota).
    pub size: Option<Bytes>,
    /// Each instance of a service mounting it gets its own volume, named
    /// `NAME-0`, `NAME-1`, ... by the instance's slot, kept across
    /// replacements (a StatefulSet's ordinals).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub per_instance: bool,
}

impl Volume {
    /// The concrete volume an instance in `slot` mounts: the declared name,
    /// or `NAME-SLOT` for a per-instance volume.
    pub fn concrete_name(&self, declared: &Name, slot: Option<u32>) -> String {
        match (self.per_instance, slot) {
            (true, Some(s)) => format!("{declared}-{s}"),
            _ => declared.to_string(),
        }
    }
}

/// A policy checked at compile time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Whether a violation blocks the change or is only shown.
    pub severity: Severity,
    /// The message shown on a violation.
    pub message: String,
}

/// How serious a policy violation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Shown, does not block.
    Warning,
    /// Blocks the change.
    Error,
}

// ---------------------------------------------------------------------------
// CIDR

/// An IP network in CIDR notation (`10.0.0.0/8`, `fd00::/8`).
///
/// Host bits must be zero: `10.0.0.1/8` is refused, as a user almost certainly
/// meant `10.0.0.0/8` or `10.0.0.1/32`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

/// Why a string is not a valid CIDR.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    /// No `/prefix` part.
    #[error("`{0}` has no `/prefix`")]
    NoPrefix(String),
    /// The address part is not an IP address.
    #[error("`{0}` is not an IP address")]
    Address(String),
    /// The prefix is not a number within the address family's range.
    #[error("prefix `/{prefix}` is out of range (0 to {max})")]
    Prefix {
        /// Prefix as written.
        prefix: String,
        /// 32 or 128.
        max: u8,
    },
    /// Bits after the prefix are set.
    #[error("`{given}` has host bits set; the network is `{network}`")]
    HostBits {
        /// What was written.
        given: String,
        /// The network the user probably meant.
        network: String,
    },
}

impl Cidr {
    /// Builds a CIDR, refusing host bits.
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Cidr, CidrError> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(CidrError::Prefix {
                prefix: prefix.to_string(),
                max,
            });
        }
        let network = mask(addr, prefix);
        if network != addr {
            return Err(CidrError::HostBits {
                given: format!("{addr}/{prefix}"),
                network: format!("{network}/{prefix}"),
            });
        }
        Ok(Cidr { addr, prefix })
    }

    /// The network address.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` is inside this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.addr.is_ipv4() && mask(ip, self.prefix) == self.addr
    }

    /// Whether every address of `other` is inside this network.
    pub fn contains_cidr(&self, other: &Cidr) -> bool {
        other.prefix >= self.prefix && self.contains(other.addr)
    }

    /// Whether this is the whole address space (`0.0.0.0/0` or `::/0`).
    pub fn is_any(&self) -> bool {
        self.prefix == 0
    }
}

fn mask(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let bits = u32::from(a);
            let m = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(prefix))
            };
            IpAddr::V4((bits & m).into())
        }
        IpAddr::V6(a) => {
            let bits = u128::from(a);
            let m = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(prefix))
            };
            IpAddr::V6((bits & m).into())
        }
    }
}

impl FromStr for Cidr {
    type Err = CidrError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (a, p) = s
            .split_once('/')
            .ok_or_else(|| CidrError::NoPrefix(s.to_owned()))?;
        let addr: IpAddr = a.parse().map_err(|_| CidrError::Address(a.to_owned()))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix: u8 = p
            .parse()
            .ok()
            .filter(|p| *p <= max)
            .ok_or_else(|| CidrError::Prefix {
                prefix: p.to_owned(),
                max,
            })?;
        Cidr::new(addr, prefix)
    }
}

impl TryFrom<String> for Cidr {
    type Error = CidrError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Cidr> for String {
    fn from(c: Cidr) -> String {
        c.to_string()
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_parses_validates_and_contains() {
        let c: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(c.contains("10.1.2.3".parse().unwrap()));
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        assert!(!c.contains("::1".parse().unwrap()));
        assert!("0.0.0.0/0".parse::<Cidr>().unwrap().is_any());
        assert!(matches!(
            "10.0.0.300/8".parse::<Cidr>(),
            Err(CidrError::Address(_))
        ));
        assert!(matches!(
            "10.0.0.0/33".parse::<Cidr>(),
            Err(CidrError::Prefix { .. })
        ));
        assert_eq!(
            "10.0.0.1/8".parse::<Cidr>(),
            Err(CidrError::HostBits {
                given: "10.0.0.1/8".into(),
                network: "10.0.0.0/8".into()
            })
        );
        let v6: Cidr = "fd00::/8".parse().unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!(c.contains_cidr(&"10.2.0.0/16".parse().unwrap()));
        assert!(!c.contains_cidr(&"0.0.0.0/0".parse().unwrap()));
    }

    #[test]
    fn environment_hash_ignores_map_insertion_order() {
        let name = Name::new("e").unwrap();
        let mut a = Environment::empty(name.clone());
        let mut b = Environment::empty(name);
        let vol = |n: u64| Volume {
            size: Some(Bytes(n)),
            per_instance: false,
        };
        a.volumes.insert(Name::new("x").unwrap(), vol(1));
        a.volumes.insert(Name::new("y").unwrap(), vol(2));
        b.volumes.insert(Name::new("y").unwrap(), vol(2));
        b.volumes.insert(Name::new("x").unwrap(), vol(1));
        assert_eq!(a.content_hash(), b.content_hash());
        b.volumes.insert(Name::new("y").unwrap(), vol(3));
        assert_ne!(a.content_hash(), b.content_hash());
    }
}
