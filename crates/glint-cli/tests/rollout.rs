//! Zero-downtime replacement, tried for real: rollouts under load, automatic
//! rollback, scheduled replacement, and a conductor killed with SIGKILL at
//! several moments of a rollout.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Ctx, Load, healthy, instances, labelled};
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// The invariants that must hold at any moment, even with no conductor:
/// every labelled process is an instance the store knows (no orphan), no
/// instance runs twice (no duplicate), and at least `d` instances that the
/// store records as healthy are alive.
fn check_invariants(ctx: &Ctx, store: &str, d: usize, when: &str) {
    let procs = labelled(store);
    let ids: Vec<&String> = procs.iter().map(|(_, id)| id).collect();
    let unique: BTreeSet<&String> = ids.iter().copied().collect();
    assert_eq!(
        unique.len(),
        ids.len(),
        "{when}: an instance runs twice: {procs:?}"
    );
    let s = ctx.status();
    let live: BTreeSet<String> = instances(&s)
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect();
    for id in &unique {
        assert!(
            live.contains(*id),
            "{when}: process of {id} is unknown to the store (orphan); live: {live:?}"
        );
    }
    let alive_healthy = instances(&s)
        .iter()
        .filter(|i| i["health"] == "healthy" && i["state"] == "running")
        .filter(|i| unique.contains(&i["id"].as_str().unwrap().to_owned()))
        .count();
    assert!(
        alive_healthy >= d,
        "{when}: only {alive_healthy} healthy instances alive:\n{s:#}"
    );
}

fn on_version(s: &Value, v: u64, n: usize) -> bool {
    let i = instances(s);
    healthy(s).len() == n && i.len() == n && i.iter().all(|x| x["version"] == v)
}

#[test]
fn a_rollout_survives_the_conductor_being_killed_at_several_points() {
    let mut ctx = Ctx::new();
    // min_healthy stretches every step so the kills land mid-rollout.
    let extra = "rollout {\n    min_healthy = 1s\n  }";
    let file = ctx.demo_with("app.glint", 4, &[("GREETING", "one")], extra);
    let mut conductor = ctx.spawn("conductor-0", &["conductor"]);
    ctx.ok(&["apply", file.to_str().unwrap(), "--wait"]);
    let v1: BTreeSet<String> = ctx.wait_ready(4).into_iter().collect();
    let store = ctx.store_id();

    ctx.demo_with("app.glint", 4, &[("GREETING", "two")], extra);
    ctx.ok(&["apply", file.to_str().unwrap()]);
    let start = Instant::now();
    for (k, at) in [300u64, 1500, 2700].into_iter().enumerate() {
        let due = Duration::from_millis(at);
        if let Some(rest) = due.checked_sub(start.elapsed()) {
            std::thread::sleep(rest);
        }
        // SAFETY: signalling the conductor we spawned.
        unsafe {
            libc::kill(conductor as i32, libc::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(200));
        check_invariants(&ctx, &store, 4, &format!("after kill {k}"));
        conductor = ctx.spawn(&format!("conductor-{}", k + 1), &["conductor"]);
    }
    let s = ctx.wait_status("all 4 on version 2", |s| on_version(s, 2, 4));
    let v2: BTreeSet<String> = healthy(&s).into_iter().collect();
    assert!(v1.is_disjoint(&v2), "every instance was replaced");
    // Nothing extra is left running once the retirements have finished.
    let deadline = Instant::now() + Duration::from_secs(20);
    while labelled(&store).len() != 4 {
        assert!(
            Instant::now() < deadline,
            "left running: {:?}",
            labelled(&store)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let procs: BTreeSet<String> = labelled(&store).into_iter().map(|(_, id)| id).collect();
    assert_eq!(procs, v2, "exactly the store's instances run");
    let history: Value = serde_json::from_str(&ctx.ok(&["history", "-o", "json"])).unwrap();
    assert_eq!(history["versions"][1]["outcome"], "converged");
}

#[test]
fn blue_green_switches_with_no_failed_request_and_keeps_the_old_set_for_a_while() {
    let mut ctx = Ctx::new();
    let extra = "rollout = blue_green { keep = 2s }";
    let file = ctx.demo_with("app.glint", 3, &[("GREETING", "blue")], extra);
    ctx.spawn("conductor", &["conductor"]);
    ctx.ok(&["apply", file.to_str().unwrap(), "--wait"]);
    let blue: BTreeSet<String> = ctx.wait_ready(3).into_iter().collect();

    let load = Load::start(ctx.endpoint());
    std::thread::sleep(Duration::from_millis(300));
    ctx.demo_with("app.glint", 3, &[("GREETING", "green")], extra);
    ctx.ok(&["apply", file.to_str().unwrap(), "--wait"]);
    // Just switched: the old set still runs (kept), out of rotation.
    let s = ctx.status();
    assert_eq!(instances(&s).len(), 6, "old set kept:\n{s:#}");
    assert_eq!(s["endpoints"][0]["backends"], 3);
    for _ in 0..10 {
        assert!(
            common::get(ctx.endpoint(), "/")
                .unwrap()
                .starts_with("green from")
        );
    }
    // After `keep`, the old set is retired.
    let s = ctx.wait_status("the blue set retired", |s| instances(s).len() == 3);
    let (ok, failed, _) = load.stop();
    let green: BTreeSet<String> = healthy(&s).into_iter().collect();
    assert!(blue.is_disjoint(&green));
    assert!(
        failed.is_empty(),
        "{} of {ok} requests failed: {failed:?}",
        failed.len()
    );
    let events = ctx.ok(&["events", "-n", "200"]);
    assert!(
        events.contains("blue/green: the old set of web is no longer kept"),
        "{events}"
    );
}

#[test]
fn a_version_that_never_becomes_healthy_is_rolled_back_automatically() {
    let mut ctx = Ctx::new();
    let file = ctx.demo_with("app.glint", 3, &[("GREETING", "good")], "");
    ctx.spawn("conductor", &["conductor"]);
    ctx.ok(&["apply", file.to_str().unwrap(), "--wait"]);
    let good: BTreeSet<String> = ctx.wait_ready(3).into_iter().collect();

    let load = Load::start(ctx.endpoint());
    ctx.demo_with(
        "app.glint",
        3,
        &[("GREETING", "bad"), ("HEALTHY", "false")],
        "",
    );
    let out = ctx.run(&["apply", file.to_str().unwrap(), "--wait"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "apply --wait fails: {err}");
    assert!(
        err.contains("version 2 was rolled back automatically"),
        "{err}"
    );
    std::thread::sleep(Duration::from_millis(500));
    let (ok, failed, seen) = load.stop();
    assert!(
        failed.is_empty(),
        "{} of {ok} requests failed: {failed:?}",
        failed.len()
    );
    assert!(
        seen.is_subset(&good),
        "only good instances ever served: {seen:?}"
    );

    let history: Value = serde_json::from_str(&ctx.ok(&["history", "-o", "json"])).unwrap();
    let v = history["versions"].as_array().unwrap();
    assert_eq!(v.len(), 3);
    assert_eq!(v[1]["outcome"], "rolled_back");
    assert_eq!(v[2]["kind"]["kind"], "auto_rollback");
    assert_eq!(
        v[2]["hash"], v[0]["hash"],
        "the rollback restores version 1's content"
    );
    let s = ctx.wait_status("version 1 content everywhere", |s| {
        instances(s).len() == 3 && healthy(s).len() == 3
    });
    let now: BTreeSet<String> = healthy(&s).into_iter().collect();
    assert_eq!(now, good, "the good instances were never touched");
}

#[test]
fn instances_past_max_age_are_replaced_under_load_without_failures() {
    let mut ctx = Ctx::new();
    let file = ctx.demo_with("app.glint", 2, &[("GREETING", "hi")], "max_age = 3s");
    ctx.spawn("conductor", &["conductor"]);
    ctx.ok(&["apply", file.to_str().unwrap(), "--wait"]);
    let first: BTreeSet<String> = ctx.wait_ready(2).into_iter().collect();
    let load = Load::start(ctx.endpoint());
    let mut seen_ids: BTreeSet<String> = first.clone();
    let deadline = Instant::now() + Duration::from_secs(9);
    while Instant::now() < deadline {
        let s = ctx.status();
        assert!(
            healthy(&s).len() >= 2,
            "never below the declared count:\n{s:#}"
        );
        seen_ids.extend(
            instances(&s)
                .iter()
                .map(|i| i["id"].as_str().unwrap().to_owned()),
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (ok, failed, _) = load.stop();
    assert!(
        failed.is_empty(),
        "{} of {ok} requests failed: {failed:?}",
        failed.len()
    );
    assert!(
        seen_ids.len() >= first.len() + 4,
        "several generations of instances in 9s with max_age = 3s: {seen_ids:?}"
    );
    let events = ctx.ok(&["events", "-n", "300"]);
    assert!(events.contains("reached max_age (3s)"), "{events}");
}

#[test]
fn rollback_returns_to_an_earlier_version_as_a_new_version() {
    let mut ctx = Ctx::new();
    let file = ctx.demo("app.glint", 2, "one");
    ctx.spawn("conductor", &["conductor"]);
    ctx.ok(&["apply", file.to_str().unwrap(), "--wait"]);
    ctx.demo("app.glint", 2, "two");
    ctx.ok(&["apply", file.to_str().unwrap(), "--wait"]);
    assert!(
        common::get(ctx.endpoint(), "/")
            .unwrap()
            .starts_with("two from")
    );

    let load = Load::start(ctx.endpoint());
    let out = ctx.ok(&["rollback", "--wait"]);
    assert!(
        out.contains("Recorded version 3 with the content of version 1"),
        "{out}"
    );
    let (ok, failed, _) = load.stop();
    assert!(
        failed.is_empty(),
        "{} of {ok} requests failed: {failed:?}",
        failed.len()
    );
    assert!(
        common::get(ctx.endpoint(), "/")
            .unwrap()
            .starts_with("one from")
    );
    let history: Value = serde_json::from_str(&ctx.ok(&["history", "-o", "json"])).unwrap();
    let v = history["versions"].as_array().unwrap();
    assert_eq!(v.len(), 3);
    assert_eq!(v[2]["kind"]["kind"], "rollback");
    assert_eq!(v[2]["kind"]["restores"], 1);
    assert_eq!(v[2]["hash"], v[0]["hash"]);
    assert_eq!(v[2]["outcome"], "converged");

    // Bad requests change nothing.
    for (args, code) in [
        (&["rollback", "3"][..], 2),
        (&["rollback", "x"][..], 2),
        (&["rollback", "9"][..], 2),
    ] {
        let out = ctx.run(args);
        assert_eq!(
            out.status.code(),
            Some(code),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let after: Value = serde_json::from_str(&ctx.ok(&["history", "-o", "json"])).unwrap();
    assert_eq!(after["versions"].as_array().unwrap().len(), 3);
}

/// The events of `kind` in the log, as JSON.
fn events_of(ctx: &Ctx, kind: &str) -> Vec<Value> {
    let v: Value = serde_json::from_str(&ctx.ok(&["events", "-n", "10000", "-o", "json"])).unwrap();
    v["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == kind)
        .cloned()
        .collect()
}

#[test]
fn a_version_whose_instances_crash_at_once_ends_apply_wait_with_a_clear_error() {
    let mut ctx = Ctx::new();
    // A first version that crashes: nothing to roll back to. An instance
    // may pass a probe in its 30 ms of life; `min_healthy` is what keeps
    // such a version from converging (without it the outcome is a race).
    let file = ctx.demo_with(
        "app.glint",
        2,
        &[("EXIT_AFTER_MS", "30")],
        "rollout { min_healthy = 2s }",
    );
    ctx.spawn("conductor", &["conductor"]);
    let out = ctx.run(&["apply", file.to_str().unwrap(), "--wait"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "apply --wait fails: {err}");
    assert!(
        err.contains("the rollout of version 1 failed") && err.contains("new instance failed"),
        "{err}"
    );
    // The crash loop goes on, held back: launches and events stay few.
    std::thread::sleep(Duration::from_secs(10));
    let launches = events_of(&ctx, "instance.launching").len();
    let exits = events_of(&ctx, "instance.exited").len();
    assert!(
        launches <= 12,
        "{launches} launches recorded in about 12 s of a crash loop"
    );
    assert!(exits <= 6, "{exits} exits written one by one");
    assert!(
        !events_of(&ctx, "instance.backoff").is_empty(),
        "the backoff is one incident"
    );
    let status: Value = serde_json::from_str(&ctx.ok(&["status", "-o", "json"])).unwrap();
    assert!(
        status["services"][0]["backoff"].is_string(),
        "status says launches are held back: {status:#}"
    );

    // A good version heals at once, whatever the old one's backoff.
    ctx.demo_with("app.glint", 2, &[("GREETING", "good")], "");
    ctx.ok(&["apply", file.to_str().unwrap(), "--wait"]);
    ctx.wait_ready(2);
}
