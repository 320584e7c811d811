//! The autoscaler through the whole conductor, on the simulated provider's
//! CPU load and paused time.

use crate::support::*;
use glint_model::*;
use glint_store::prelude::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

/// `web` autoscaled on CPU: 1–5 instances, target 50 % of `cpu_millis`
/// 1000 (half a CPU each).
fn scaled() -> Environment {
    let mut e = web(1, &[]);
    let s = svc(&mut e);
    s.resources.cpu_millis = Some(1000);
    s.autoscale = Some(Autoscale {
        min: 1,
        max: 5,
        metric: ScaleMetric::Cpu { percent: 50 },
        window: Millis::from_secs(300),
        max_step: None,
    });
    e
}

/// The largest number of `web` instances running at once, watched every
/// 10 ms.
fn watch(h: &Harness) -> (Arc<AtomicUsize>, Arc<AtomicBool>) {
    let most = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let sim = h.sim.clone();
    let (m, s) = (most.clone(), stop.clone());
    tokio::spawn(async move {
        while !s.load(Ordering::Relaxed) {
            m.fetch_max(sim.running().len(), Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    (most, stop)
}

fn desired(h: &Harness) -> u32 {
    h.status()
        .services
        .iter()
        .find(|s| s.name.as_str() == "web")
        .map(|s| s.desired)
        .unwrap_or(0)
}

// Mutation caught: no bound on a step (1 → 6 at once, above max), the
// stabilisation window ignored (scaled down 5 s after the load fell), the
// count not persisted (a restarted conductor falls back to `instances`).
#[tokio::test(start_paused = true)]
async fn cpu_load_scales_up_at_once_down_after_the_window_and_survives_a_restart() {
    let mut h = Harness::new();
    h.start().await;
    let (most, stop) = watch(&h);
    let v = h.apply(scaled());
    h.outcome(v, 30).await;
    // Three CPUs of work: 6 instances at the target, capped at max 5.
    h.sim.set_cpu("web", 3_000);
    let s = h
        .wait("scaled up to max", 60, |s| Harness::healthy(s).len() == 5)
        .await;
    let a = s.services[0].autoscale.clone().unwrap();
    assert_eq!((a.desired, a.min, a.max), (5, 1, 5));
    assert_eq!(a.metric, "cpu");
    assert!(a.value.is_some_and(|v| v > 50.0), "{a:?}");
    let ups = h.events_of("autoscale.scaled");
    assert_eq!(ups.len(), 1, "1 → 5 in one step (at most 4 more): {ups:?}");
    assert!(
        ups[0].message.contains("from 1 to 5") && ups[0].message.contains("capped at max 5"),
        "{}",
        ups[0].message
    );

    // The restart keeps the count: nothing is retired meanwhile.
    let terminated = h.sim.counters().terminations;
    h.restart().await;
    h.pass_time(20_000).await;
    assert_eq!(desired(&h), 5, "the persisted count");
    assert_eq!(Harness::healthy(&h.status()).len(), 5);
    assert_eq!(h.sim.counters().terminations, terminated, "nothing retired");

    // The load falls: nothing for a window, then down to the recommendation.
    h.sim.set_cpu("web", 400);
    let fell = h.clock_ms();
    h.wait("a scale-down", 400, |s| {
        s.services.first().is_some_and(|x| x.desired < 5)
    })
    .await;
    let waited = h.clock_ms() - fell;
    assert!(
        waited >= 290_000,
        "scaled down {waited} ms after the load fell, inside the 300 s window"
    );
    h.wait("one instance", 120, |s| Harness::healthy(s).len() == 1)
        .await;
    stop.store(true, Ordering::Relaxed);
    assert!(most.load(Ordering::Relaxed) <= 5 + 1, "above max + surge");
    let recs = h.store.scale_records().unwrap();
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].desired, 1);
}

// Mutation caught: bounds not applied to a persisted count when an apply
// lowers `max`.
#[tokio::test(start_paused = true)]
async fn a_lower_max_takes_effect_at_once() {
    let mut h = Harness::new();
    h.start().await;
    let v = h.apply(scaled());
    h.outcome(v, 30).await;
    h.sim.set_cpu("web", 3_000);
    h.wait("five", 60, |s| Harness::healthy(s).len() == 5).await;
    let mut e = scaled();
    svc(&mut e).autoscale.as_mut().unwrap().max = 2;
    h.apply(e);
    h.wait("two", 60, |s| Harness::healthy(s).len() == 2 && s.converged)
        .await;
    assert_eq!(desired(&h), 2);
}
