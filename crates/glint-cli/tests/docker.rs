//! The same environment as Docker containers, through the `glint` binary.
//! Skipped (with a message) without a Docker daemon, unless
//! `GLINT_REQUIRE_DOCKER=1` (CI) turns the skip into a failure.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Ctx, Load, docker_available, healthy};
use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

/// Names of the running containers of this test's environment.
fn containers(env: &str) -> Vec<String> {
    let out = Command::new("docker")
        .args([
            "ps",
            "--format",
            "{{.Names}}",
            "--filter",
            &format!("label=dev.glint.environment={env}"),
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Removes everything a test's environment left in the engine, even when the
/// test fails.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let filter = format!("label=dev.glint.environment={}", self.0);
        if let Ok(out) = Command::new("docker")
            .args(["ps", "-aq", "--filter", &filter])
            .output()
        {
            for id in String::from_utf8_lossy(&out.stdout).lines() {
                let _ = Command::new("docker").args(["rm", "-f", id]).output();
            }
        }
        if let Ok(out) = Command::new("docker")
            .args(["network", "ls", "-q", "--filter", &filter])
            .output()
        {
            for id in String::from_utf8_lossy(&out.stdout).lines() {
                let _ = Command::new("docker").args(["network", "rm", id]).output();
            }
        }
    }
}

#[test]
fn the_demo_runs_as_containers_and_drift_is_corrected_without_failed_requests() {
    if !docker_available() {
        return;
    }
    let mut ctx = Ctx::new();
    // A unique environment name per run keeps containers and networks apart.
    let env = format!("t{}", std::process::id());
    let _cleanup = Cleanup(env.clone());
    let file = ctx.demo_full(
        "app.glint",
        &format!("environment {env} {{\n  provider = docker\n}}\n"),
        3,
        &[("GREETING", "hello")],
        "",
    );
    let up = ctx.spawn("up", &["up", file.to_str().unwrap()]);
    let first: BTreeSet<String> = ctx.wait_ready(3).into_iter().collect();
    assert_eq!(containers(&env).len(), 3);
    let mut seen = BTreeSet::new();
    for _ in 0..30 {
        let body = common::get(ctx.endpoint(), "/").unwrap();
        seen.insert(body.split_whitespace().nth(2).unwrap().to_owned());
    }
    assert_eq!(seen, first, "the endpoint reaches every container");

    let load = Load::start(ctx.endpoint());
    let names = containers(&env);
    let killed = names[0].clone();
    let entered = names[1].clone();
    assert!(
        Command::new("docker")
            .args(["kill", &killed])
            .status()
            .unwrap()
            .success()
    );
    let _ = Command::new("docker")
        .args(["exec", &entered, "/bin/hello", "--version"])
        .output();
    let start = Instant::now();
    let s = ctx.wait_status("both replaced", |s| {
        let h: BTreeSet<String> = healthy(s).into_iter().collect();
        h.len() == 3 && h.intersection(&first).count() == 1
    });
    let took = start.elapsed();
    std::thread::sleep(Duration::from_millis(300));
    let (ok, failed, _) = load.stop();
    assert!(
        failed.is_empty(),
        "{} of {ok} requests failed: {failed:?}",
        failed.len()
    );
    assert_eq!(healthy(&s).len(), 3);
    let events = ctx.ok(&["events", "-n", "200"]);
    assert!(events.contains("killed by signal 9"), "{events}");
    assert!(
        events.contains("docker exec ran"),
        "the exec is an incident:\n{events}"
    );
    eprintln!("both drifts corrected in {took:?}");
    // The exec is also an incident record: one, about the entered
    // instance, resolved by its replacement.
    let entered_id = entered
        .strip_prefix(&format!("glint-{env}-"))
        .unwrap()
        .to_owned();
    let inc: serde_json::Value =
        serde_json::from_str(&ctx.ok(&["incidents", "-o", "json"])).unwrap();
    let inc = inc["incidents"].as_array().unwrap();
    let mine: Vec<&serde_json::Value> = inc
        .iter()
        .filter(|i| i["subject"] == entered_id.as_str())
        .collect();
    assert_eq!(mine.len(), 1, "{inc:?}");
    assert_eq!(mine[0]["kind"], "instance-drift");
    assert_eq!(mine[0]["state"], "resolved");
    assert!(
        mine[0]["found"]
            .as_str()
            .unwrap()
            .contains("docker exec ran"),
        "{mine:?}"
    );
    assert_eq!(
        mine[0]["dedup_key"],
        format!("instance-drift:{entered_id}").as_str()
    );
    let text = ctx.ok(&["incidents"]);
    assert!(text.contains(&entered_id), "{text}");
    assert_eq!(
        ctx.ok(&["incidents", "--open"]).trim(),
        "No open incidents."
    );
    assert_eq!(
        ctx.run(&["incidents", "resolve", "9999"]).status.code(),
        Some(1)
    );

    // Ctrl-C stops every container it started.
    // SAFETY: signalling the child we spawned.
    unsafe {
        libc::kill(up as i32, libc::SIGINT);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ctx.log("up").contains("Stopped.") {
        assert!(Instant::now() < deadline, "{}", ctx.log("up"));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        containers(&env).is_empty(),
        "left running: {:?}",
        containers(&env)
    );
}

// Mutations caught: `logs -f` skipping running containers (their output is
// with the engine), or not picking up a replacement container.
#[test]
fn logs_follow_a_container_through_the_engine_and_then_its_replacement() {
    if !docker_available() {
        return;
    }
    let mut ctx = Ctx::new();
    let env = format!("l{}", std::process::id());
    let _cleanup = Cleanup(env.clone());
    let file = ctx.demo_full(
        "app.glint",
        &format!("environment {env} {{\n  provider = docker\n}}\n"),
        1,
        &[("GREETING", "hello")],
        "",
    );
    ctx.spawn("up", &["up", file.to_str().unwrap()]);
    let first = ctx.wait_ready(1)[0].clone();
    ctx.spawn("logs", &["logs", "web", "-f"]);
    let wait_log = |what: &str, needle: &str| {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let l = ctx.log("logs");
            if l.contains(needle) {
                return;
            }
            assert!(Instant::now() < deadline, "no {what} in:\n{l}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait_log("running container's output", &format!("[{first}]"));
    assert!(
        Command::new("docker")
            .args(["kill", &format!("glint-{env}-{first}")])
            .status()
            .unwrap()
            .success()
    );
    let s = ctx.wait_status("the replacement", |s| {
        healthy(s).len() == 1 && !healthy(s).contains(&first)
    });
    let second = healthy(&s)[0].clone();
    wait_log("the replacement's output", &format!("[{second}]"));
}
