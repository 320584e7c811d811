//! The autoscaler's rule, as pure functions.
//!
//! [`measure`] turns two observations of a service's instances (cumulative
//! counters: requests served, time spent by requests in flight, CPU time)
//! into the value of its metric per instance; [`step`] turns that value,
//! the count in force and the recent recommendations into the next count.
//! Neither reads a clock or the world: the autoscale reconciler
//! (`reconcilers/autoscale.rs`) gathers the counters, calls them every
//! [`SAMPLE_EVERY_MS`], and persists what they return, so a restarted
//! conductor resumes with the same count and window.
//!
//! ## The rule (Kubernetes' HPA)
//!
//! With `n` instances measured and the metric at `v` per instance against a
//! target `t`:
//!
//! - **recommendation**: `ceil(n × v / t)`, or the count in force when
//!   `|v / t − 1| ≤` [`TOLERANCE`] (10 %: no flapping around the target);
//! - **scale up at once**: a recommendation above the count in force is
//!   applied in the same step, at most `max_step` more instances per step
//!   (default: as many as run, at least 4 — the HPA's "double or +4");
//! - **scale down after the window**: the count falls only to the *highest*
//!   recommendation made during the last `window` (default 5 minutes), and
//!   only once recommendations cover a whole window — a restarted
//!   autoscaler that lost nothing (the window is persisted) continues, one
//!   that has no history waits a full window;
//! - **bounds**: the count is always within `[min, max]`, whatever was
//!   measured or persisted (bounds lowered by an apply take effect at once).
//!
//! ## Metrics, per instance
//!
//! - `cpu`: CPU time of the instance's cgroup over the interval, in percent
//!   of its `cpu_millis` (of one CPU when it declares none): 100 % means the
//!   instance uses all the CPU it is allowed;
//! - `in_flight`: the average number of requests in flight through the
//!   service's endpoints, from the time requests spent in flight
//!   (Little's law: busy time ÷ interval), or, where the data plane does
//!   not count busy time, the number in flight at the sample;
//! - `requests_per_second`: responses relayed per second;
//! - `latency`: mean time from a request's admission to its response's end
//!   (busy time ÷ requests), in milliseconds.
//!
//! Instances count only when they appear in both observations (an instance
//! started or gone during the interval has no complete interval), and only
//! healthy instances receive traffic, so a scaled-up instance counts once it
//! has passed its health gate.

use glint_model::{Autoscale, InstanceId, ScaleMetric};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The tolerance around the target within which nothing changes.
pub const TOLERANCE: f64 = 0.1;
/// How often a service is measured and its count reconsidered.
pub const SAMPLE_EVERY_MS: i64 = 5_000;
/// The smallest scale-up step bound when `max_step` is not declared.
pub const DEFAULT_MIN_STEP: u32 = 4;

/// Cumulative counters of one instance at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Responses relayed to clients so far.
    pub served: u64,
    /// Requests in flight now.
    pub in_flight: u64,
    /// Time requests have spent in flight so far (µs), if counted.
    pub busy_us: Option<u64>,
    /// CPU time used so far (µs), if measured.
    pub cpu_usec: Option<u64>,
}

/// One observation of a service's instances.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observation {
    /// When (ms since the epoch).
    pub at: i64,
    /// The counters of each instance that serves.
    pub instances: BTreeMap<InstanceId, Counters>,
}

/// The metric between two observations.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measured {
    /// The value per instance, in the metric's unit.
    pub value: f64,
    /// How many instances it was measured over.
    pub instances: u32,
}

/// The value of `metric` per instance between `prev` and `now` (see the
/// module documentation); `None` when nothing can be said (no instance in
/// both, no time between them, no request for the latency).
pub fn measure(
    metric: &ScaleMetric,
    cpu_millis: Option<u32>,
    prev: &Observation,
    now: &Observation,
) -> Option<Measured> {
    let dt_us = u64::try_from(now.at - prev.at).ok()?.checked_mul(1000)?;
    if dt_us == 0 {
        return None;
    }
    let both: Vec<(&Counters, &Counters)> = now
        .instances
        .iter()
        .filter_map(|(id, c)| prev.instances.get(id).map(|p| (p, c)))
        .collect();
    let n = u32::try_from(both.len()).ok().filter(|n| *n > 0)?;
    let nf = f64::from(n);
    let dt = dt_us as f64;
    let delta = |f: fn(&Counters) -> Option<u64>| -> Option<f64> {
        both.iter()
            .map(|(p, c)| Some(f(c)?.saturating_sub(f(p)?) as f64))
            .sum::<Option<f64>>()
    };
    let value = match metric {
        ScaleMetric::Cpu { .. } => {
            let used = delta(|c| c.cpu_usec)?;
            let allowed = f64::from(cpu_millis.unwrap_or(1000)) / 1000.0;
            used / dt / nf / allowed * 100.0
        }
        ScaleMetric::InFlight { .. } => match delta(|c| c.busy_us) {
            Some(busy) => busy / dt / nf,
            None => both.iter().map(|(_, c)| c.in_flight as f64).sum::<f64>() / nf,
        },
        ScaleMetric::RequestsPerSecond { .. } => {
            delta(|c| Some(c.served))? / (dt / 1_000_000.0) / nf
        }
        ScaleMetric::Latency { .. } => {
            let served = delta(|c| Some(c.served))?;
            if served <= 0.0 {
                return None;
            }
            delta(|c| c.busy_us)? / served / 1000.0
        }
    };
    value.is_finite().then_some(Measured {
        value,
        instances: n,
    })
}

/// The autoscaler's memory of one service: what [`step`] needs besides the
/// count in force. Persisted (as JSON) with the count.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Window {
    /// Recommendations of the last window: (ms since the epoch, count).
    pub recommendations: Vec<(i64, u32)>,
    /// Since when recommendations have been recorded without a gap (a
    /// scale-down needs a whole window of them).
    pub since: Option<i64>,
    /// The last value measured, for status.
    pub value: Option<f64>,
    /// Instances it was measured over.
    pub measured: u32,
}

/// What [`step`] decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// The count from now on.
    pub desired: u32,
    /// The recommendation of this step, if there was a measurement.
    pub recommendation: Option<u32>,
    /// Why the count is what it is, in words.
    pub reason: String,
}

/// The most instances one scale-up step may add to `current`.
pub fn step_bound(a: &Autoscale, current: u32) -> u32 {
    a.max_step.unwrap_or(current.max(DEFAULT_MIN_STEP)).max(1)
}

fn fmt_value(metric: &ScaleMetric, v: f64) -> String {
    if v >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}{}", metric.unit())
    } else {
        format!("{v:.1}{}", metric.unit())
    }
}

/// The recommendation for `m` against the target, given the count in
/// force: `ceil(n × v / t)`, or `current` within the tolerance.
pub fn recommend(metric: &ScaleMetric, m: Measured, current: u32) -> u32 {
    let t = metric.target();
    if t <= 0.0 {
        return current;
    }
    let ratio = m.value / t;
    if (ratio - 1.0).abs() <= TOLERANCE {
        return current;
    }
    // A hair below the next integer is that integer: 6 × (4/6 ÷ 4) is 1,
    // not the 2 that rounding error would make of it.
    let raw = (f64::from(m.instances) * ratio - 1e-9).ceil();
    if raw >= f64::from(u32::MAX) {
        u32::MAX
    } else {
        raw.max(0.0) as u32
    }
}

/// One step of the rule (see the module documentation): the next count
/// from the count in force, this step's measurement (if any) and the
/// window, which is updated.
pub fn step(
    a: &Autoscale,
    current: u32,
    measured: Option<Measured>,
    window: &mut Window,
    now: i64,
) -> Step {
    let bounded = current.clamp(a.min, a.max);
    let metric = &a.metric;
    let target = fmt_value(metric, metric.target());
    let Some(m) = measured else {
        window.since = None;
        window.recommendations.clear();
        window.value = None;
        window.measured = 0;
        let reason = if bounded != current {
            format!("bounds {}–{}: {current} → {bounded}", a.min, a.max)
        } else {
            format!("no {} measured yet; keeping {bounded}", metric.name())
        };
        return Step {
            desired: bounded,
            recommendation: None,
            reason,
        };
    };
    window.value = Some(m.value);
    window.measured = m.instances;
    let rec = recommend(metric, m, bounded);
    let since = *window.since.get_or_insert(now);
    let window_ms = i64::try_from(a.window.0).unwrap_or(i64::MAX);
    window.recommendations.push((now, rec));
    window
        .recommendations
        .retain(|(at, _)| *at > now.saturating_sub(window_ms) || *at == now);
    let said = format!(
        "{} at {} per instance over {} (target {target})",
        metric.name(),
        fmt_value(metric, m.value),
        m.instances
    );
    let (desired, why) = if rec > bounded {
        let up = rec.min(bounded.saturating_add(step_bound(a, bounded)));
        let to = up.min(a.max);
        let capped = if to < rec {
            format!(
                "; {rec} recommended, {}",
                if to == a.max {
                    format!("capped at max {}", a.max)
                } else {
                    format!("at most {} more per step", step_bound(a, bounded))
                }
            )
        } else {
            String::new()
        };
        (to, format!("{said}: {bounded} → {to}{capped}"))
    } else if rec < bounded {
        let highest = window
            .recommendations
            .iter()
            .map(|(_, r)| *r)
            .max()
            .unwrap_or(bounded);
        let covered = now.saturating_sub(since) >= window_ms;
        if highest < bounded && covered {
            let to = highest.max(a.min);
            (
                to,
                format!(
                    "{said}: {bounded} → {to} (the highest recommendation of the last {})",
                    a.window
                ),
            )
        } else {
            (
                bounded,
                format!(
                    "{said}: {rec} recommended; keeping {bounded} until the {} window has passed",
                    a.window
                ),
            )
        }
    } else {
        (bounded, format!("{said}: keeping {bounded}"))
    };
    Step {
        desired,
        recommendation: Some(rec),
        reason: why,
    }
}

/// The instance count of a service `decide` works with: the autoscaler's
/// (within the bounds) when the service autoscales and the autoscaler has
/// chosen one, else the declared `instances` (for an autoscaled service,
/// the count it starts with).
pub fn count(svc: &glint_model::Service, scaled: Option<u32>) -> u32 {
    match (&svc.autoscale, scaled) {
        (Some(a), Some(n)) => n.clamp(a.min, a.max),
        (Some(a), None) => svc.instances.clamp(a.min, a.max),
        (None, _) => svc.instances,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use glint_model::{Millis, Name};

    fn id(n: u64) -> InstanceId {
        InstanceId::from_entropy(&Name::new("web").unwrap(), n)
    }

    fn scale(min: u32, max: u32, metric: ScaleMetric) -> Autoscale {
        Autoscale {
            min,
            max,
            metric,
            window: Millis::from_secs(300),
            max_step: None,
        }
    }

    fn in_flight(t: u32) -> ScaleMetric {
        ScaleMetric::InFlight { per_instance: t }
    }

    #[test]
    fn in_flight_is_busy_time_over_the_interval_and_latency_busy_time_per_request() {
        let zero = Counters {
            busy_us: Some(0),
            cpu_usec: Some(0),
            ..Counters::default()
        };
        let prev = Observation {
            at: 0,
            instances: [(id(0), zero), (id(1), zero)].into(),
        };
        let c = |served, busy| Counters {
            served,
            in_flight: 0,
            busy_us: Some(busy),
            cpu_usec: Some(busy / 2),
        };
        // Over 5 s: 100 requests of 50 ms each per instance = 5 s busy each.
        let now = Observation {
            at: 5_000,
            instances: [
                (id(0), c(100, 5_000_000)),
                (id(1), c(100, 5_000_000)),
                (id(9), c(1_000, 99_000_000)), // started meanwhile: ignored
            ]
            .into(),
        };
        let m = measure(&in_flight(1), None, &prev, &now).unwrap();
        assert_eq!(m.instances, 2);
        assert!((m.value - 1.0).abs() < 1e-9, "{m:?}");
        let rps = measure(
            &ScaleMetric::RequestsPerSecond { per_instance: 1 },
            None,
            &prev,
            &now,
        )
        .unwrap();
        assert!((rps.value - 20.0).abs() < 1e-9, "{rps:?}");
        let lat = measure(
            &ScaleMetric::Latency { target: Millis(10) },
            None,
            &prev,
            &now,
        )
        .unwrap();
        assert!((lat.value - 50.0).abs() < 1e-9, "{lat:?}");
        // CPU: 2.5 s of CPU in 5 s is half a CPU: 250 % of cpu_millis 200.
        let cpu = measure(&ScaleMetric::Cpu { percent: 50 }, Some(200), &prev, &now).unwrap();
        assert!((cpu.value - 250.0).abs() < 1e-9, "{cpu:?}");
        assert_eq!(measure(&in_flight(1), None, &now, &now), None, "no time");
    }

    #[test]
    fn within_the_tolerance_nothing_changes() {
        let m = |v| Measured {
            value: v,
            instances: 4,
        };
        assert_eq!(recommend(&in_flight(10), m(10.9), 4), 4);
        assert_eq!(recommend(&in_flight(10), m(9.1), 4), 4);
        assert_eq!(recommend(&in_flight(10), m(11.5), 4), 5);
        assert_eq!(recommend(&in_flight(10), m(5.0), 4), 2);
    }

    /// A load step 1× → 10× → 1×, sampled every 5 s, with instances
    /// becoming ready one sample after they are asked for: the count never
    /// leaves [min, max], rises at once within the step bound, and falls
    /// only after a whole window of low recommendations.
    #[test]
    fn a_load_step_scales_up_at_once_and_down_after_the_window() {
        let a = scale(1, 6, in_flight(4));
        let mut w = Window::default();
        let mut desired = 1u32;
        let mut ready = 1u32;
        let mut history = Vec::new();
        let total_at = |t: i64| -> f64 {
            if (60_000..180_000).contains(&t) {
                40.0
            } else {
                4.0
            }
        };
        let mut went_down_at = None;
        let mut t = 0;
        while t <= 900_000 {
            let m = Measured {
                value: total_at(t) / f64::from(ready),
                instances: ready,
            };
            let before = desired;
            let s = step(&a, desired, Some(m), &mut w, t);
            desired = s.desired;
            assert!((a.min..=a.max).contains(&desired), "t={t}: {desired}");
            if desired > before {
                assert!(desired - before <= step_bound(&a, before), "t={t}");
            }
            if desired < before && went_down_at.is_none() {
                went_down_at = Some(t);
            }
            history.push((t, desired));
            ready = desired; // ready by the next sample
            t += SAMPLE_EVERY_MS;
        }
        let at = |t: i64| history.iter().find(|(x, _)| *x == t).map(|(_, d)| *d);
        assert_eq!(at(55_000), Some(1), "quiet before the step");
        assert_eq!(at(60_000), Some(5), "1 → 5 in one step (bound 4)");
        assert_eq!(at(65_000), Some(6), "then capped at max 6");
        let down = went_down_at.unwrap();
        assert!(
            down >= 180_000 + 300_000 - SAMPLE_EVERY_MS,
            "scaled down at {down}, before the window after the load fell at 180 s"
        );
        assert_eq!(history.last().map(|(_, d)| *d), Some(1));
    }

    #[test]
    fn bounds_hold_whatever_is_persisted_or_measured_and_no_history_waits_a_window() {
        let a = scale(2, 5, in_flight(4));
        let mut w = Window::default();
        // Persisted 9 with max lowered to 5: clamped at once.
        let s = step(&a, 9, None, &mut w, 0);
        assert_eq!(s.desired, 5);
        assert!(s.reason.contains("bounds"), "{}", s.reason);
        // Idle from the start: no scale-down before a whole window.
        let idle = Measured {
            value: 0.0,
            instances: 5,
        };
        for t in (0..300_000).step_by(5_000) {
            assert_eq!(step(&a, 5, Some(idle), &mut w, t).desired, 5, "t={t}");
        }
        assert_eq!(
            step(&a, 5, Some(idle), &mut w, 300_000).desired,
            2,
            "to min"
        );
        // A huge load never goes above max.
        let huge = Measured {
            value: 1e9,
            instances: 2,
        };
        assert_eq!(step(&a, 2, Some(huge), &mut w, 305_000).desired, 5);
    }

    #[test]
    fn the_count_decide_uses_follows_the_autoscaler_within_bounds() {
        let mut svc = glint_model::Service::new(Name::new("app").unwrap());
        svc.instances = 3;
        assert_eq!(count(&svc, Some(7)), 3, "not autoscaled: declared");
        svc.autoscale = Some(scale(2, 6, in_flight(4)));
        assert_eq!(count(&svc, None), 3, "starts at `instances`");
        assert_eq!(count(&svc, Some(5)), 5);
        assert_eq!(count(&svc, Some(9)), 6, "never above max");
        assert_eq!(count(&svc, Some(0)), 2, "never below min");
    }

    #[test]
    fn a_window_survives_serialisation() {
        let mut w = Window::default();
        let a = scale(1, 6, in_flight(4));
        let m = Measured {
            value: 8.0,
            instances: 1,
        };
        step(&a, 1, Some(m), &mut w, 1_000);
        let json = serde_json::to_string(&w).unwrap();
        let back: Window = serde_json::from_str(&json).unwrap();
        assert_eq!(back, w);
    }
}
