//! The conductor, tested whole: the real driver and reconcilers on a real
//! store, with the simulated provider and paused time (see `support.rs`).
//! Each test names a behaviour; the comment above it says which mutation of
//! the conductor it was seen to catch.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod api;
mod autoscale;
mod support;
mod volumes;

use glint_model::*;
use glint_provider::DriftKind;
use glint_store::Outcome;
use glint_store::VersionKind;
use glint_store::prelude::*;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use support::*;

fn no_health(e: &mut Environment) {
    svc(e).health = None;
}

// Mutation caught: an `Exited` event not removing the instance (no
// replacement), or no launch decided for a short service.
#[tokio::test(start_paused = true)]
async fn converges_and_replaces_a_killed_instance() {
    let mut h = Harness::new();
    h.start().await;
    let v = h.apply(web(3, &[]));
    assert_eq!(h.outcome(v, 30).await.0, Outcome::Converged);
    let before = Harness::healthy(&h.status());
    assert_eq!(before.len(), 3);
    let at = h.clock_ms();
    assert!(h.sim.kill(&before[0]));
    let s = h
        .wait("a replacement", 10, |s| {
            let now = Harness::healthy(s);
            now.len() == 3 && !now.contains(&before[0])
        })
        .await;
    assert_eq!(Harness::healthy(&s).len(), 3);
    // From the provider's exit event, not from failing health checks.
    let took = h.clock_ms() - at;
    assert!(took < 500, "replaced {took} ms after the kill");
    assert!(
        h.events_of("instance.exited")
            .iter()
            .any(|e| e.message.contains(before[0].as_str()))
    );
}

// Mutation caught: adoption skipped (new instances launched, old ones
// removed as orphans).
#[tokio::test(start_paused = true)]
async fn a_restarted_conductor_adopts_every_instance() {
    let mut h = Harness::new();
    h.start().await;
    let v = h.apply(web(3, &[]));
    h.outcome(v, 30).await;
    let before = Harness::healthy(&h.status());
    h.restart().await;
    let s = h
        .wait("the same instances healthy", 10, |s| {
            Harness::healthy(s).len() == 3
        })
        .await;
    let mut after = Harness::healthy(&s);
    after.sort();
    let mut before = before;
    before.sort();
    assert_eq!(after, before, "the same instances, adopted");
    assert_eq!(h.events_of("instance.adopted").len(), 3);
    assert_eq!(h.sim.counters().launches, 3, "nothing relaunched");
}

// Mutation caught: `verdict` ignoring the deadline (the test times out).
#[tokio::test(start_paused = true)]
async fn a_rollout_that_makes_no_progress_fails_at_its_deadline_and_rolls_back() {
    let mut h = Harness::new();
    h.start().await;
    let v1 = h.apply(web(2, &[]));
    h.outcome(v1, 30).await;
    h.sim.set_launch_delay(std::time::Duration::from_secs(600));
    let mut e = web(2, &[("GREETING", "v2")]);
    svc(&mut e).rollout.deadline = Millis::from_secs(30);
    let v2 = h.apply(e);
    let started = h.clock_ms();
    let (o, detail) = h.outcome(v2, 120).await;
    assert_eq!(o, Outcome::RolledBack, "{detail}");
    assert!(detail.contains("deadline"), "{detail}");
    let waited = h.clock_ms() - started;
    assert!(
        (30_000..40_000).contains(&waited),
        "failed {waited} ms after the apply, not at its 30 s deadline"
    );
    let v3 = h.store.version(h.latest()).unwrap();
    assert_eq!(v3.kind, VersionKind::AutoRollback(v1));
    assert_eq!(Harness::healthy(&h.status()).len(), 2, "v1 kept serving");
}

// Mutation caught: the rollback ignoring `auto_rollback` (a version 3
// appears).
#[tokio::test(start_paused = true)]
async fn auto_rollback_off_leaves_the_failed_version_the_target() {
    let mut h = Harness::new();
    h.start().await;
    let v1 = h.apply(web(2, &[]));
    h.outcome(v1, 30).await;
    let mut e = web(2, &[("HEALTHY", "false")]);
    svc(&mut e).rollout.auto_rollback = false;
    let v2 = h.apply(e);
    let (o, detail) = h.outcome(v2, 120).await;
    assert_eq!(o, Outcome::Failed, "{detail}");
    h.pass_time(5_000).await;
    assert_eq!(h.latest(), v2, "no rollback version was recorded");
    let failed = h.events_of("rollout.failed");
    assert!(
        failed
            .iter()
            .any(|e| e.message.contains("no automatic rollback")),
        "{failed:?}"
    );
    assert_eq!(
        Harness::healthy(&h.status()).len(),
        2,
        "the old instances keep serving: a failing new version never takes capacity"
    );
}

// Mutation caught: `create_version` not marking unfinished versions
// superseded (version 2 stays without an outcome, "in progress" for ever).
#[tokio::test(start_paused = true)]
async fn a_version_superseded_mid_rollout_is_recorded_superseded() {
    let mut h = Harness::new();
    h.start().await;
    let v1 = h.apply(web(2, &[]));
    h.outcome(v1, 30).await;
    h.sim.set_launch_delay(std::time::Duration::from_secs(10));
    let v2 = h.apply(web(2, &[("GREETING", "two")]));
    h.pass_time(1_000).await;
    let v3 = h.apply(web(2, &[("GREETING", "three")]));
    assert_eq!(
        h.store.version_outcome(v2).unwrap().unwrap().0,
        Outcome::Superseded
    );
    assert!(
        h.events_of("version.superseded")
            .iter()
            .any(|e| e.version == Some(v2.0))
    );
    h.sim.set_launch_delay(std::time::Duration::ZERO);
    assert_eq!(h.outcome(v3, 60).await.0, Outcome::Converged);
}

/// Runs a crash loop of instances that exit `exit_ms` after starting, for
/// 62 s, and checks that launches and events stay bounded (and, with
/// `never_converges`, that the version is not recorded converged).
async fn crash_loop_is_bounded(exit_ms: u64, health: bool, never_converges: bool) {
    let mut h = Harness::new();
    h.start().await;
    let mut e = web(1, &[("EXIT_AFTER_MS", &exit_ms.to_string())]);
    if !health {
        no_health(&mut e);
    }
    let v = h.apply(e);
    h.pass_time(62_000).await;
    let launches = h.sim.counters().launches;
    // 2 free, then 0.2, 0.4, … 25.6 s: about 11 in 62 s. Unbounded, it
    // would be thousands.
    assert!(
        (5..=14).contains(&launches),
        "{launches} launches in 62 s (exit after {exit_ms} ms, health check {health})"
    );
    let events = h.events();
    assert!(
        events.len() < 80,
        "{} events for one repeating cause:\n{}",
        events.len(),
        h.event_lines()
    );
    assert!(
        !h.events_of("instance.backoff").is_empty(),
        "the backoff is one incident:\n{}",
        h.event_lines()
    );
    if never_converges {
        assert_ne!(
            h.store.version_outcome(v).unwrap().map(|o| o.0),
            Some(Outcome::Converged),
            "a version whose instances never stay up never converged"
        );
    }
}

// Mutation caught: running-as-healthy without a settle time (converged, no
// backoff: the backoff was reset by every "healthy").
#[tokio::test(start_paused = true)]
async fn an_app_that_exits_at_once_without_a_health_check_backs_off_and_never_converges() {
    crash_loop_is_bounded(5, false, true).await;
}

// Mutation caught: a death after "healthy" not counting as a crash loop
// (`count_failure` ignoring instances that became healthy at all).
#[tokio::test(start_paused = true)]
async fn an_app_that_exits_a_moment_after_becoming_healthy_backs_off() {
    crash_loop_is_bounded(1_500, false, false).await;
    crash_loop_is_bounded(300, true, false).await;
}

// Mutation caught: the rate limit off (every exit written).
#[tokio::test(start_paused = true)]
async fn events_of_one_repeating_cause_are_counted_not_written() {
    let mut h = Harness::new();
    h.start().await;
    // No backoff can slow this one: every instance is stable for longer
    // than the backoff window… but dies the same way, many times.
    h.apply(web(8, &[("EXIT_AFTER_MS", "20")]));
    h.pass_time(130_000).await;
    let exited = h.events_of("instance.exited").len();
    let suppressed = h.events_of("events.suppressed");
    assert!(exited <= 3 * 3, "{exited} exits written one by one");
    assert!(
        suppressed
            .iter()
            .any(|e| e.message.contains("instance.exited")),
        "the repeats are counted: {suppressed:?}"
    );
}

// Mutation caught: backoffs kept in memory only (a restarted conductor
// launches at once and starts the streak from one).
#[tokio::test(start_paused = true)]
async fn crash_loop_backoff_survives_a_conductor_restart() {
    let mut h = Harness::new();
    h.start().await;
    h.apply(web(1, &[("EXIT_AFTER_MS", "5")]));
    h.pass_time(8_000).await;
    let b = h.store.backoffs().unwrap();
    let before = b.iter().find(|b| b.key.starts_with("launch/web/")).cloned();
    let before = before.expect("a streak is recorded");
    assert!(before.failures >= 5, "{before:?}");
    h.stop(false).await;
    let launches = h.sim.counters().launches;
    // Restart right away: the stored wait still holds.
    h.start().await;
    let until = before.until_ms;
    let now = h.clock_ms();
    if until - now > 100 {
        h.pass_time(u64::try_from(until - now - 50).unwrap()).await;
        assert_eq!(
            h.sim.counters().launches,
            launches,
            "no launch before the stored backoff ends"
        );
    }
    h.pass_time(2_000).await;
    let after = h
        .store
        .backoffs()
        .unwrap()
        .into_iter()
        .find(|b| b.key == before.key)
        .expect("the streak goes on");
    assert!(after.failures > before.failures, "{after:?} vs {before:?}");
}

// Mutation caught: backoff keyed per service only (the healthy new version
// waits out the old one's backoff).
#[tokio::test(start_paused = true)]
async fn a_backoff_earned_by_one_version_does_not_delay_the_next() {
    let mut h = Harness::new();
    h.start().await;
    h.apply(web(1, &[("EXIT_AFTER_MS", "5")]));
    h.pass_time(20_000).await;
    assert!(
        h.status().services[0].backoff.is_some(),
        "version 1 is backing off"
    );
    let at = h.clock_ms();
    let v2 = h.apply(web(1, &[]));
    h.wait("version 2 serving", 30, |s| {
        Harness::healthy_current(s) == 1
    })
    .await;
    let took = h.clock_ms() - at;
    assert!(
        took < 1_000,
        "version 2 served {took} ms after its apply:\n{}",
        h.event_lines()
    );
    assert_eq!(h.outcome(v2, 10).await.0, Outcome::Converged);
}

// Mutation caught: exits of new instances not counted towards the rollout
// (it waits for the 300 s deadline).
#[tokio::test(start_paused = true)]
async fn crashing_new_instances_roll_the_version_back_without_waiting_for_the_deadline() {
    let mut h = Harness::new();
    h.start().await;
    let v1 = h.apply(web(2, &[]));
    h.outcome(v1, 30).await;
    let at = h.clock_ms();
    // It dies while starting, before it ever answers its health check.
    let v2 = h.apply(web(
        2,
        &[("START_DELAY_MS", "500"), ("EXIT_AFTER_MS", "100")],
    ));
    let (o, detail) = h.outcome(v2, 60).await;
    assert_eq!(o, Outcome::RolledBack, "{detail}");
    assert!(detail.contains("new instance failed"), "{detail}");
    assert!(h.clock_ms() - at < 20_000, "rolled back quickly");
    h.wait("version 1's content serving", 10, |s| {
        Harness::healthy_current(s) == 2
    })
    .await;
}

// Mutation caught: a failed termination not retried (the old instance
// stays running for ever, retiring).
#[tokio::test(start_paused = true)]
async fn a_retire_that_fails_is_retried_with_backoff() {
    let mut h = Harness::new();
    h.start().await;
    let v1 = h.apply(web(1, &[]));
    h.outcome(v1, 30).await;
    let old = Harness::healthy(&h.status())[0].clone();
    h.sim.fail_next_terminations(2);
    let v2 = h.apply(web(1, &[("GREETING", "v2")]));
    assert_eq!(h.outcome(v2, 60).await.0, Outcome::Converged);
    h.wait("the old instance gone", 30, |s| {
        !s.services[0].instances.iter().any(|i| i.id == old)
    })
    .await;
    assert!(!h.sim.running().contains(&old));
    let failed = h.events_of("instance.terminate_failed");
    assert!(!failed.is_empty() && failed.len() <= 2, "{failed:?}");
    assert!(
        h.events_of("instance.terminated")
            .iter()
            .any(|e| e.message.contains(old.as_str()))
    );
}

/// A data plane that notes, at every backend change, whether the version
/// it watches was already recorded converged.
struct Watching {
    inner: Arc<glint_dataplane::LocalDataPlane>,
    store: Arc<dyn Store>,
    version: std::sync::Mutex<Option<VersionNumber>>,
    log: std::sync::Mutex<Vec<(Vec<InstanceId>, Option<Outcome>)>>,
}

#[async_trait::async_trait]
impl glint_dataplane::DataPlane for Watching {
    async fn set_endpoints(
        &self,
        generation: u64,
        endpoints: Vec<glint_dataplane::EndpointSpec>,
    ) -> Result<glint_dataplane::EndpointsApplied, glint_dataplane::DataPlaneError> {
        self.inner.set_endpoints(generation, endpoints).await
    }
    async fn set_backends(
        &self,
        endpoint: &Name,
        generation: u64,
        backends: Vec<glint_dataplane::Backend>,
    ) -> Result<bool, glint_dataplane::DataPlaneError> {
        let v = *self.version.lock().unwrap();
        if let Some(v) = v {
            let outcome = self.store.version_outcome(v).unwrap().map(|(o, _)| o);
            let ids = backends.iter().map(|b| b.instance.clone()).collect();
            self.log.lock().unwrap().push((ids, outcome));
        }
        self.inner
            .set_backends(endpoint, generation, backends)
            .await
    }
    async fn drain(
        &self,
        instance: &InstanceId,
        timeout: std::time::Duration,
    ) -> Result<glint_dataplane::DrainReport, glint_dataplane::DataPlaneError> {
        self.inner.drain(instance, timeout).await
    }
    async fn state(
        &self,
    ) -> Result<glint_dataplane::DataPlaneState, glint_dataplane::DataPlaneError> {
        self.inner.state().await
    }
    async fn shutdown(
        &self,
        timeout: std::time::Duration,
    ) -> Result<(), glint_dataplane::DataPlaneError> {
        self.inner.shutdown(timeout).await
    }
}

// Mutation caught: the rollout verdict taking "endpoints settled" from a
// pass whose routes were the old set (blue/green switches routes in the
// pass that converges: version 2 was recorded converged, and `apply
// --wait` returned, while the endpoint still routed to version 1).
#[tokio::test(start_paused = true)]
async fn a_version_is_converged_only_once_its_endpoints_route_to_it() {
    let mut h = Harness::new();
    let watching = Arc::new(Watching {
        inner: h.dataplane.clone(),
        store: h.store.clone(),
        version: std::sync::Mutex::new(None),
        log: std::sync::Mutex::new(Vec::new()),
    });
    h.plane = Some(watching.clone());
    h.start().await;
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let env = |greeting: &str| {
        let mut e = web(2, &[("GREETING", greeting)]);
        svc(&mut e).rollout.strategy = Strategy::BlueGreen {
            keep: Millis::from_secs(30),
        };
        e.endpoints.insert(
            name("public"),
            Endpoint {
                listen: addr,
                service: name("web"),
                protocol: EndpointProtocol::Http,
            },
        );
        e
    };
    let v1 = h.apply(env("one"));
    assert_eq!(h.outcome(v1, 30).await.0, Outcome::Converged);
    let old = Harness::healthy(&h.status());
    assert_eq!(old.len(), 2);
    let v2 = h.apply(env("two"));
    *watching.version.lock().unwrap() = Some(v2);
    assert_eq!(h.outcome(v2, 60).await.0, Outcome::Converged);
    let log = watching.log.lock().unwrap().clone();
    let switch = log
        .iter()
        .find(|(ids, _)| !ids.is_empty() && ids.iter().all(|i| !old.contains(i)))
        .expect("the endpoint was switched to the new instances");
    assert_eq!(
        switch.1, None,
        "version 2 was recorded converged before its endpoint routed to it: {log:?}"
    );
}

// Mutation caught: a failed bind never retried, or retried (and written)
// on every pass.
#[tokio::test(start_paused = true)]
async fn an_endpoint_that_cannot_bind_is_retried_with_backoff() {
    let mut h = Harness::new();
    h.start().await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let mut e = web(1, &[]);
    e.endpoints.insert(
        name("public"),
        Endpoint {
            listen: addr,
            service: name("web"),
            protocol: EndpointProtocol::Http,
        },
    );
    h.apply(e);
    let s = h
        .wait("the endpoint failing", 10, |s| {
            s.endpoints.iter().any(|e| e.error.is_some())
        })
        .await;
    assert!(
        s.problems.iter().any(|p| p.contains("cannot listen")),
        "{:?}",
        s.problems
    );
    assert!(!s.converged);
    h.pass_time(30_000).await;
    let failed = h.events_of("endpoint.failed").len();
    assert!((1..=2).contains(&failed), "{failed} endpoint.failed events");
    drop(taken);
    h.wait("the endpoint listening", 120, |s| {
        s.endpoints.iter().any(|e| e.listening)
    })
    .await;
    assert_eq!(h.events_of("endpoint.listening").len(), 1);
}

// Mutation caught: `on_exec` ignored (the reported instance is replaced).
#[tokio::test(start_paused = true)]
async fn on_exec_report_records_an_exec_without_replacing() {
    let mut h = Harness::new();
    h.start().await;
    let mut e = web(2, &[]);
    svc(&mut e).on_exec = OnExec::Report;
    let v = h.apply(e);
    h.outcome(v, 30).await;
    let ids = Harness::healthy(&h.status());
    assert!(
        h.sim
            .drift(&ids[0], DriftKind::Exec, "exec ran `sh` as root")
    );
    h.pass_time(5_000).await;
    let mut now = Harness::healthy(&h.status());
    now.sort();
    let mut ids2 = ids.clone();
    ids2.sort();
    assert_eq!(now, ids2, "nothing replaced");
    let drift = h.events_of("drift");
    assert_eq!(drift.len(), 1);
    assert!(drift[0].message.contains("reported only"), "{drift:?}");
    // Other drift replaces, whatever on_exec says.
    assert!(
        h.sim
            .drift(&ids[0], DriftKind::Filesystem, "/etc/passwd changed")
    );
    h.wait("the drifted instance replaced", 10, |s| {
        let now = Harness::healthy(s);
        now.len() == 2 && !now.contains(&ids[0])
    })
    .await;
    // Both occurrences concern one instance: one incident, seen twice,
    // left resolved by the replacement (the last occurrence decides).
    let incidents = h
        .store
        .incidents(glint_store::IncidentFilter::default())
        .unwrap();
    assert_eq!(incidents.len(), 1, "{incidents:?}");
    let i = &incidents[0];
    assert_eq!(i.kind, "instance-drift");
    assert_eq!(i.subject, ids[0].to_string());
    assert_eq!(i.count, 2);
    assert!(i.found.contains("/etc/passwd changed"), "{i:?}");
    assert_eq!(i.state, glint_store::IncidentState::Resolved);
    assert!(i.last_event.is_some(), "the occurrence's event is linked");
}

// Mutation caught: an exec only reported not leaving an open incident.
#[tokio::test(start_paused = true)]
async fn a_reported_exec_is_an_open_incident_until_resolved() {
    let mut h = Harness::new();
    h.start().await;
    let mut e = web(1, &[]);
    svc(&mut e).on_exec = OnExec::Report;
    let v = h.apply(e);
    h.outcome(v, 30).await;
    let ids = Harness::healthy(&h.status());
    assert!(h.sim.drift(&ids[0], DriftKind::Exec, "exec ran `sh`"));
    h.pass_time(2_000).await;
    let open = h
        .store
        .incidents(glint_store::IncidentFilter {
            state: Some(glint_store::IncidentState::Open),
            limit: 0,
        })
        .unwrap();
    assert_eq!(open.len(), 1, "{open:?}");
    assert!(open[0].action.contains("reported only"), "{:?}", open[0]);
    let done = h
        .store
        .resolve_incident(open[0].id, "ops")
        .unwrap()
        .unwrap();
    assert_eq!(done.state, glint_store::IncidentState::Resolved);
}

// Mutation caught: a canary's pause ignored (the new version jumps to its
// full count at once).
#[tokio::test(start_paused = true)]
async fn a_canary_grows_through_its_steps_after_each_pause() {
    let mut h = Harness::new();
    h.start().await;
    let v1 = h.apply(web(4, &[]));
    h.outcome(v1, 30).await;
    let mut e = web(4, &[("GREETING", "canary")]);
    svc(&mut e).rollout.strategy = Strategy::Canary {
        steps: vec![1, 2],
        pause: Millis::from_secs(30),
    };
    let v2 = h.apply(e);
    h.wait("step 1: one new instance", 10, |s| {
        Harness::healthy_current(s) == 1
    })
    .await;
    let mut max_seen = 0;
    for _ in 0..25 {
        h.pass_time(1_000).await;
        max_seen = max_seen.max(Harness::healthy_current(&h.status()));
    }
    assert_eq!(max_seen, 1, "step 1 holds for its pause");
    h.wait("step 2: two new instances", 20, |s| {
        Harness::healthy_current(s) == 2
    })
    .await;
    h.pass_time(20_000).await;
    assert_eq!(Harness::healthy_current(&h.status()), 2, "step 2 holds");
    assert_eq!(h.outcome(v2, 60).await.0, Outcome::Converged);
    assert_eq!(Harness::healthy_current(&h.status()), 4);
}

// Mutation caught: a failed launch intent returning without backoff (a hot
// loop: the test never ends), or no recovery once writes work again.
#[tokio::test(start_paused = true)]
async fn a_store_that_refuses_writes_is_a_problem_not_a_hot_loop() {
    let mut h = Harness::new();
    h.start().await;
    let v = h.apply(web(2, &[]));
    h.outcome(v, 30).await;
    let victim = Harness::healthy(&h.status())[0].clone();
    h.store.faults.fail_writes.store(true, Ordering::Relaxed);
    assert!(h.sim.kill(&victim));
    h.pass_time(30_000).await;
    let s = h.status();
    assert!(
        s.problems.iter().any(|p| p.contains("refused writes")),
        "{:?}",
        s.problems
    );
    assert!(s.stuck.is_some(), "waiting for it is pointless: {s:?}");
    let refused = h.store.faults.refused.load(Ordering::Relaxed);
    assert!(
        refused < 400,
        "{refused} refused writes in 30 s: a hot loop"
    );
    h.store.faults.fail_writes.store(false, Ordering::Relaxed);
    h.wait("healed once writes work", 120, |s| {
        Harness::healthy(s).len() == 2 && s.stuck.is_none()
    })
    .await;
    assert_eq!(h.events_of("store.unavailable").len(), 1);
}

// Mutation caught: a provider failure written on every attempt (the
// "warning every second, for ever"), or launches tried on it.
#[tokio::test(start_paused = true)]
async fn a_provider_that_cannot_be_connected_holds_launches_with_one_event() {
    let mut h = Harness::new();
    h.factory.fail.store(true, Ordering::Relaxed);
    h.start().await;
    let mut e = web(2, &[]);
    svc(&mut e).provider = ProviderKind::Docker;
    let v = h.apply(e);
    h.pass_time(60_000).await;
    let unavailable = h.events_of("provider.unavailable").len();
    assert!((1..=2).contains(&unavailable), "{unavailable} events");
    let connects = h.factory.connects.load(Ordering::Relaxed);
    assert!(connects <= 12, "{connects} connection attempts in 60 s");
    assert!(h.events_of("instance.launching").is_empty());
    let s = h.status();
    assert!(
        s.problems
            .iter()
            .any(|p| p.contains("docker provider is not available")),
        "{:?}",
        s.problems
    );
    h.factory.fail.store(false, Ordering::Relaxed);
    let (o, detail) = h.outcome(v, 120).await;
    assert_eq!(o, Outcome::Converged, "{detail}\n{}", h.event_lines());
    assert_eq!(h.events_of("provider.connected").len(), 1);
}

// Mutation caught: instances of an unreachable provider recorded as
// vanished (and replaced twice over).
#[tokio::test(start_paused = true)]
async fn an_unreachable_provider_is_not_mistaken_for_vanished_instances() {
    let mut h = Harness::new();
    h.start().await;
    let v = h.apply(web(2, &[]));
    h.outcome(v, 30).await;
    let ids = Harness::healthy(&h.status());
    h.sim.set_unreachable(true);
    h.pass_time(10_000).await;
    assert!(h.events_of("instance.vanished").is_empty());
    assert!(
        h.status()
            .problems
            .iter()
            .any(|p| p.contains("cannot observe"))
    );
    h.sim.set_unreachable(false);
    h.pass_time(5_000).await;
    let mut now = Harness::healthy(&h.status());
    now.sort();
    let mut ids = ids;
    ids.sort();
    assert_eq!(now, ids);
}

// Mutation caught: writes not fenced (the deposed conductor replaces the
// killed instance).
#[tokio::test(start_paused = true)]
async fn a_deposed_conductor_stops_acting() {
    let mut h = Harness::new();
    h.start().await;
    let v = h.apply(web(2, &[]));
    h.outcome(v, 30).await;
    h.store.claim_epoch("another conductor").unwrap();
    let victim = Harness::healthy(&h.status())[0].clone();
    h.sim.kill(&victim);
    let s = h
        .wait("the conductor deposed", 10, |s| s.stuck.is_some())
        .await;
    assert!(
        s.problems
            .iter()
            .any(|p| p.contains("no longer acts") && p.contains("deposed")),
        "{:?}",
        s.problems
    );
    h.pass_time(10_000).await;
    assert_eq!(h.sim.counters().launches, 2, "nothing launched after");
}

// Mutation caught: an image that fails verification launched anyway, or
// retried in a tight loop.
#[tokio::test(start_paused = true)]
async fn a_tampered_image_is_an_incident_and_backs_off() {
    let mut h = Harness::new();
    h.images.tampered.store(true, Ordering::Relaxed);
    h.start().await;
    h.apply(web(1, &[]));
    h.pass_time(30_000).await;
    let rejected = h.events_of("image.rejected");
    assert!(!rejected.is_empty());
    assert_eq!(rejected[0].severity, glint_store::Severity::Incident);
    assert_eq!(h.sim.counters().launches, 0);
    assert!(rejected.len() <= 3, "{} rejections written", rejected.len());
    assert!(
        h.events_of("instance.launching").len() < 15,
        "launch attempts are backed off"
    );
}

// Mutation caught: a probe slower than its timeout counted as a pass.
#[tokio::test(start_paused = true)]
async fn slow_health_checks_fail_new_instances() {
    let mut h = Harness::new();
    h.start().await;
    let v1 = h.apply(web(1, &[]));
    h.outcome(v1, 30).await;
    h.set_probe_delay(300);
    let v2 = h.apply(web(1, &[("GREETING", "slow")]));
    let (o, detail) = h.outcome(v2, 120).await;
    assert_eq!(o, Outcome::RolledBack, "{detail}");
    assert!(
        h.events_of("instance.unhealthy")
            .iter()
            .any(|e| e.message.contains("no answer within")),
        "{}",
        h.event_lines()
    );
}

// Mutation caught: `glint up`'s stop leaving instances behind.
#[tokio::test(start_paused = true)]
async fn stopping_with_instances_drains_and_terminates_everything() {
    let mut h = Harness::new();
    h.start().await;
    let v = h.apply(web(3, &[]));
    h.outcome(v, 30).await;
    h.stop(true).await;
    assert!(h.sim.running().is_empty());
    assert!(h.store.live_instances().unwrap().is_empty());
    let stopped = h.events_of("conductor.stopped");
    assert!(stopped[0].message.contains("were stopped"));
}

// Mutation caught: endpoints handed over before the target is read (the
// conductor empties the data plane that kept serving while none ran).
#[tokio::test(start_paused = true)]
async fn a_conductor_that_has_no_target_yet_leaves_the_data_plane_alone() {
    use glint_dataplane::{DataPlane, EndpointConfig, EndpointSpec};
    let mut h = Harness::new();
    let spec = EndpointSpec {
        config: EndpointConfig::new(
            name("public"),
            "127.0.0.1:0".parse().unwrap(),
            EndpointProtocol::Http,
        ),
        service: name("web"),
    };
    h.dataplane.set_endpoints(1, vec![spec]).await.unwrap();
    h.start().await;
    h.pass_time(5_000).await;
    let state = h.dataplane.state().await.unwrap();
    assert_eq!(state.endpoints.len(), 1, "the endpoint is still there");
    assert!(state.endpoints[0].listening.is_some());
}
