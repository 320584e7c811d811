//! What a run measured: the per-worker [`Recorder`] that counts every
//! request, and the merged [`Report`] that `glint-load` prints (a summary for
//! people on stderr, one JSON document with `--json`).

use crate::histogram::Histogram;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

/// Why a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// A response arrived with a status outside 200..=299.
    Status,
    /// No connection could be made (refused, unreachable, handshake failed).
    Connect,
    /// No complete response within the timeout (connect included).
    Timeout,
    /// The connection failed after the request was sent, before a response head.
    Request,
    /// The response head arrived but its body could not be read to the end.
    Body,
}

impl FailureKind {
    /// The stable string form used in the JSON report.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Status => "status",
            FailureKind::Connect => "connect",
            FailureKind::Timeout => "timeout",
            FailureKind::Request => "request",
            FailureKind::Body => "body",
        }
    }
}

/// How one request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The status, when a response head arrived.
    pub status: Option<u16>,
    /// The instance that answered (header `x-glint-instance`, else the body).
    pub instance: Option<String>,
    /// Why it failed; `None` for a 2xx response read to the end.
    pub failure: Option<(FailureKind, String)>,
}

/// One failed request, for the failure log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailureRecord {
    /// When the request was sent, in milliseconds since the run started.
    pub t_ms: f64,
    /// When the request was sent, in milliseconds since the Unix epoch (to
    /// line up with `glint events -o json`, whose `at` is the same unit).
    pub at_ms: u64,
    /// The phase the request was sent in.
    pub phase: String,
    /// What kind of failure.
    pub kind: FailureKind,
    /// The status, when a response arrived.
    pub status: Option<u16>,
    /// The reason in words (status line, or the error chain).
    pub reason: String,
    /// The instance that answered, when known.
    pub instance: Option<String>,
    /// How long the request took until it failed.
    pub latency_ms: f64,
}

/// Counts of one phase (or of the whole run), while running.
#[derive(Debug, Clone, Default)]
struct Tally {
    ok: u64,
    failed: u64,
    latency: Histogram,
    statuses: BTreeMap<u16, u64>,
    kinds: BTreeMap<FailureKind, u64>,
    reasons: BTreeMap<String, u64>,
    instances: BTreeMap<String, u64>,
}

impl Tally {
    fn add(&mut self, outcome: &Outcome, latency: Duration) {
        if let Some(s) = outcome.status {
            *self.statuses.entry(s).or_default() += 1;
        }
        if let Some(i) = &outcome.instance {
            *self.instances.entry(i.clone()).or_default() += 1;
        }
        match &outcome.failure {
            None => {
                self.ok += 1;
                self.latency.record(micros(latency));
            }
            Some((kind, reason)) => {
                self.failed += 1;
                *self.kinds.entry(*kind).or_default() += 1;
                *self
                    .reasons
                    .entry(format!("{}: {reason}", kind.as_str()))
                    .or_default() += 1;
            }
        }
    }

    fn merge(&mut self, other: &Tally) {
        self.ok += other.ok;
        self.failed += other.failed;
        self.latency.merge(&other.latency);
        for (k, v) in &other.statuses {
            *self.statuses.entry(*k).or_default() += v;
        }
        for (k, v) in &other.kinds {
            *self.kinds.entry(*k).or_default() += v;
        }
        for (k, v) in &other.reasons {
            *self.reasons.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &other.instances {
            *self.instances.entry(k.clone()).or_default() += v;
        }
    }
}

/// One second of the run, while running.
#[derive(Debug, Clone, Copy, Default)]
struct Second {
    ok: u64,
    failed: u64,
    latency_sum: u64,
    latency_max: u64,
}

/// Records the requests of one worker; workers' recorders are merged at the end.
#[derive(Debug, Clone, Default)]
pub struct Recorder {
    total: Tally,
    phases: HashMap<Arc<str>, Tally>,
    series: Vec<Second>,
    failures: Vec<FailureRecord>,
    failures_dropped: u64,
    failure_limit: usize,
    /// Per instance: the first and last time (since the start) a response from it ended.
    seen: HashMap<String, (Duration, Duration)>,
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl Recorder {
    /// A recorder that keeps at most `failure_limit` entries in its failure log
    /// (the others are only counted).
    pub fn new(failure_limit: usize) -> Recorder {
        Recorder {
            failure_limit,
            ..Recorder::default()
        }
    }

    /// Records one request: sent `sent` after the run started (`epoch_ms`
    /// since the Unix epoch) in `phase`, it took `latency` and ended in `outcome`.
    pub fn record(
        &mut self,
        phase: &Arc<str>,
        sent: Duration,
        epoch_ms: u64,
        latency: Duration,
        outcome: Outcome,
    ) {
        self.total.add(&outcome, latency);
        match self.phases.get_mut(phase) {
            Some(t) => t.add(&outcome, latency),
            None => {
                let mut t = Tally::default();
                t.add(&outcome, latency);
                self.phases.insert(phase.clone(), t);
            }
        }
        let ended = sent + latency;
        if let Some(i) = &outcome.instance {
            match self.seen.get_mut(i) {
                Some((first, last)) => {
                    *first = (*first).min(ended);
                    *last = (*last).max(ended);
                }
                None => {
                    self.seen.insert(i.clone(), (ended, ended));
                }
            }
        }
        let second = ended.as_secs() as usize;
        if second >= self.series.len() {
            self.series.resize(second + 1, Second::default());
        }
        let s = &mut self.series[second];
        let lat = micros(latency);
        if outcome.failure.is_none() {
            s.ok += 1;
        } else {
            s.failed += 1;
        }
        s.latency_sum = s.latency_sum.saturating_add(lat);
        s.latency_max = s.latency_max.max(lat);
        if let Some((kind, reason)) = outcome.failure {
            if self.failures.len() < self.failure_limit {
                self.failures.push(FailureRecord {
                    t_ms: ms(sent),
                    at_ms: epoch_ms + sent.as_millis() as u64,
                    phase: phase.to_string(),
                    kind,
                    status: outcome.status,
                    reason,
                    instance: outcome.instance,
                    latency_ms: ms(latency),
                });
            } else {
                self.failures_dropped += 1;
            }
        }
    }

    /// Adds everything `other` recorded.
    pub fn merge(&mut self, other: &Recorder) {
        self.total.merge(&other.total);
        for (name, t) in &other.phases {
            self.phases.entry(name.clone()).or_default().merge(t);
        }
        if other.series.len() > self.series.len() {
            self.series.resize(other.series.len(), Second::default());
        }
        for (mine, theirs) in self.series.iter_mut().zip(&other.series) {
            mine.ok += theirs.ok;
            mine.failed += theirs.failed;
            mine.latency_sum = mine.latency_sum.saturating_add(theirs.latency_sum);
            mine.latency_max = mine.latency_max.max(theirs.latency_max);
        }
        self.failures.extend(other.failures.iter().cloned());
        self.failures_dropped += other.failures_dropped;
        for (i, (first, last)) in &other.seen {
            let e = self.seen.entry(i.clone()).or_insert((*first, *last));
            e.0 = e.0.min(*first);
            e.1 = e.1.max(*last);
        }
    }

    /// How many requests were recorded.
    pub fn requests(&self) -> u64 {
        self.total.ok + self.total.failed
    }
}

/// How the run was configured, as reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    /// The URL requested.
    pub url: String,
    /// Requests in flight at most.
    pub concurrency: usize,
    /// Requests per second asked for (all workers together), if limited.
    pub rate: Option<f64>,
    /// Whether connections were kept alive between requests.
    pub keepalive: bool,
    /// Per-request timeout.
    pub timeout_ms: u64,
}

/// Latency figures of successful (2xx) requests, in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Requests measured.
    pub count: u64,
    /// Fastest.
    pub min_ms: f64,
    /// Mean.
    pub mean_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Slowest.
    pub max_ms: f64,
}

impl Latency {
    fn of(h: &Histogram) -> Latency {
        let m = |us: u64| us as f64 / 1000.0;
        Latency {
            count: h.count(),
            min_ms: m(h.min()),
            mean_ms: h.mean() / 1000.0,
            p50_ms: m(h.quantile(0.50)),
            p90_ms: m(h.quantile(0.90)),
            p99_ms: m(h.quantile(0.99)),
            max_ms: m(h.max()),
        }
    }
}

/// The figures of one phase, or of the whole run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhaseReport {
    /// The phase's name (`total` for the whole run).
    pub name: String,
    /// When the phase was first entered, in seconds since the start.
    pub started_s: f64,
    /// How long the run spent in this phase, in seconds (all its stretches).
    pub time_s: f64,
    /// Requests sent in this phase (ok + failed).
    pub requests: u64,
    /// 2xx responses read to the end.
    pub ok: u64,
    /// Everything else.
    pub failed: u64,
    /// Requests per second over `time_s`.
    pub rps: f64,
    /// Latency of the successful requests.
    pub latency: Latency,
    /// Responses by status code.
    pub statuses: BTreeMap<String, u64>,
    /// Failures by kind (`status`, `connect`, `timeout`, `request`, `body`).
    pub failure_kinds: BTreeMap<String, u64>,
    /// Failures by kind and reason (`status: 503 Service Unavailable`).
    pub failure_reasons: BTreeMap<String, u64>,
    /// Responses by answering instance.
    pub instances: BTreeMap<String, u64>,
    /// How many distinct instances answered.
    pub distinct_instances: usize,
}

impl PhaseReport {
    fn of(name: &str, started_s: f64, time_s: f64, t: &Tally) -> PhaseReport {
        let requests = t.ok + t.failed;
        PhaseReport {
            name: name.to_owned(),
            started_s,
            time_s,
            requests,
            ok: t.ok,
            failed: t.failed,
            rps: if time_s > 0.0 {
                requests as f64 / time_s
            } else {
                0.0
            },
            latency: Latency::of(&t.latency),
            statuses: t
                .statuses
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            failure_kinds: t
                .kinds
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), *v))
                .collect(),
            failure_reasons: t.reasons.clone(),
            instances: t.instances.clone(),
            distinct_instances: t.instances.len(),
        }
    }
}

/// One second of the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecondReport {
    /// Seconds since the start (requests are counted in the second they ended).
    pub t: u64,
    /// Successful requests.
    pub ok: u64,
    /// Failed requests.
    pub failed: u64,
    /// Mean latency of every request that ended in this second.
    pub mean_ms: f64,
    /// Slowest request that ended in this second.
    pub max_ms: f64,
}

/// When responses from one instance were seen (times are when a response ended).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Seen {
    /// The first response, in milliseconds since the start.
    pub first_t_ms: f64,
    /// The last response, in milliseconds since the start.
    pub last_t_ms: f64,
    /// The first response, in milliseconds since the Unix epoch.
    pub first_at_ms: u64,
    /// The last response, in milliseconds since the Unix epoch.
    pub last_at_ms: u64,
}

/// Everything a run measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// How the run was configured.
    pub run: RunInfo,
    /// When the run started, in milliseconds since the Unix epoch.
    pub started_at_ms: u64,
    /// How long the run lasted (until the last request ended), in seconds.
    pub duration_s: f64,
    /// Requests that a stale keep-alive connection handed back unsent and that
    /// were sent again on a new connection (as any pooled HTTP client does).
    /// They are not failures: the server never saw them.
    pub resent_unsent: u64,
    /// The whole run.
    pub total: PhaseReport,
    /// Each phase, in the order first entered.
    pub phases: Vec<PhaseReport>,
    /// Phases named `group/part` summed by `group` (e.g. `during/1` and
    /// `during/2` into `during`), in the order first entered; empty when no
    /// phase name has a `/`.
    pub groups: Vec<PhaseReport>,
    /// For each instance that answered, when it was first and last seen: the
    /// endpoint's view of when an instance started and stopped serving.
    pub seen: BTreeMap<String, Seen>,
    /// Per-second time series.
    pub series: Vec<SecondReport>,
    /// Failed requests, oldest first (at most the failure-log limit).
    pub failures: Vec<FailureRecord>,
    /// Failed requests left out of `failures` because of the limit.
    pub failures_dropped: u64,
}

impl Report {
    /// Builds the report from the merged recorder and the phase timeline
    /// (`(entered, name)` pairs in order, the first at zero).
    pub(crate) fn build(
        run: RunInfo,
        started_at_ms: u64,
        duration: Duration,
        resent_unsent: u64,
        mut rec: Recorder,
        timeline: &[(Duration, Arc<str>)],
    ) -> Report {
        let mut order: Vec<(Arc<str>, f64, f64)> = Vec::new();
        for (i, (at, name)) in timeline.iter().enumerate() {
            let end = timeline.get(i + 1).map(|(t, _)| *t).unwrap_or(duration);
            let spent = end.min(duration).saturating_sub(*at).as_secs_f64();
            match order.iter_mut().find(|(n, _, _)| n == name) {
                Some(entry) => entry.2 += spent,
                None => order.push((name.clone(), at.as_secs_f64(), spent)),
            }
        }
        // A phase with requests but no timeline entry cannot happen, but keep
        // its requests visible if it does.
        let mut extra: Vec<&Arc<str>> = rec
            .phases
            .keys()
            .filter(|k| !order.iter().any(|(n, _, _)| n == *k))
            .collect();
        extra.sort();
        for name in extra {
            order.push((name.clone(), 0.0, 0.0));
        }
        let empty = Tally::default();
        let phases = order
            .iter()
            .map(|(name, started, spent)| {
                PhaseReport::of(
                    name,
                    *started,
                    *spent,
                    rec.phases.get(name).unwrap_or(&empty),
                )
            })
            .collect();
        let mut grouped: Vec<(&str, f64, f64, Tally)> = Vec::new();
        if order.iter().any(|(n, _, _)| n.contains('/')) {
            for (name, started, spent) in &order {
                let group = name.split('/').next().unwrap_or(name);
                let tally = rec.phases.get(name).unwrap_or(&empty);
                match grouped.iter_mut().find(|(g, _, _, _)| *g == group) {
                    Some(g) => {
                        g.2 += spent;
                        g.3.merge(tally);
                    }
                    None => grouped.push((group, *started, *spent, tally.clone())),
                }
            }
        }
        let groups = grouped
            .iter()
            .map(|(name, started, spent, t)| PhaseReport::of(name, *started, *spent, t))
            .collect();
        let seen = rec
            .seen
            .iter()
            .map(|(i, (first, last))| {
                (
                    i.clone(),
                    Seen {
                        first_t_ms: ms(*first),
                        last_t_ms: ms(*last),
                        first_at_ms: started_at_ms + first.as_millis() as u64,
                        last_at_ms: started_at_ms + last.as_millis() as u64,
                    },
                )
            })
            .collect();
        let series = rec
            .series
            .iter()
            .enumerate()
            .map(|(t, s)| {
                let n = s.ok + s.failed;
                SecondReport {
                    t: t as u64,
                    ok: s.ok,
                    failed: s.failed,
                    mean_ms: if n == 0 {
                        0.0
                    } else {
                        s.latency_sum as f64 / n as f64 / 1000.0
                    },
                    max_ms: s.latency_max as f64 / 1000.0,
                }
            })
            .collect();
        rec.failures.sort_by(|a, b| a.t_ms.total_cmp(&b.t_ms));
        let limit = rec.failure_limit;
        let mut dropped = rec.failures_dropped;
        if rec.failures.len() > limit {
            dropped += (rec.failures.len() - limit) as u64;
            rec.failures.truncate(limit);
        }
        Report {
            run,
            started_at_ms,
            duration_s: duration.as_secs_f64(),
            resent_unsent,
            total: PhaseReport::of("total", 0.0, duration.as_secs_f64(), &rec.total),
            phases,
            groups,
            seen,
            series,
            failures: rec.failures,
            failures_dropped: dropped,
        }
    }

    /// The phase named `name`, if it was entered.
    pub fn phase(&self, name: &str) -> Option<&PhaseReport> {
        self.phases.iter().find(|p| p.name == name)
    }

    /// A summary for people (several lines, ends with a newline).
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let r = &self.run;
        let _ = writeln!(
            s,
            "glint-load {} · concurrency {}{} · {} · {:.1}s",
            r.url,
            r.concurrency,
            r.rate.map(|x| format!(" · rate {x}/s")).unwrap_or_default(),
            if r.keepalive {
                "keep-alive"
            } else {
                "new connection per request"
            },
            self.duration_s
        );
        let _ = writeln!(
            s,
            "{:<12} {:>9} {:>9} {:>7} {:>9} {:>8} {:>8} {:>8} {:>8} {:>5}",
            "PHASE",
            "REQUESTS",
            "FAILED",
            "TIME_S",
            "RPS",
            "P50_MS",
            "P90_MS",
            "P99_MS",
            "MAX_MS",
            "INST"
        );
        // Groups that are not also a phase of their own, then the total.
        let groups = self.groups.iter().filter(|g| self.phase(&g.name).is_none());
        for p in self
            .phases
            .iter()
            .chain(groups)
            .chain(std::iter::once(&self.total))
        {
            let _ = writeln!(
                s,
                "{:<12} {:>9} {:>9} {:>7.1} {:>9.0} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>5}",
                p.name,
                p.requests,
                p.failed,
                p.time_s,
                p.rps,
                p.latency.p50_ms,
                p.latency.p90_ms,
                p.latency.p99_ms,
                p.latency.max_ms,
                p.distinct_instances
            );
        }
        if self.resent_unsent > 0 {
            let _ = writeln!(
                s,
                "{} requests handed back unsent by a closed keep-alive connection were sent again",
                self.resent_unsent
            );
        }
        if self.total.failed > 0 {
            let _ = writeln!(s, "failures by reason:");
            for (reason, n) in &self.total.failure_reasons {
                let _ = writeln!(s, "  {n:>8}  {reason}");
            }
            let _ = writeln!(s, "first failures:");
            for f in self.failures.iter().take(10) {
                let _ = writeln!(
                    s,
                    "  t={:>9.1}ms  phase={:<8} {}: {}{}",
                    f.t_ms,
                    f.phase,
                    f.kind.as_str(),
                    f.reason,
                    f.instance
                        .as_deref()
                        .map(|i| format!(" (instance {i})"))
                        .unwrap_or_default()
                );
            }
        }
        s
    }
}
