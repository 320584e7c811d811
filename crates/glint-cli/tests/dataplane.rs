//! The data plane outlives the control plane, tried for real: the real
//! `glint` binary, its real `glint dataplane` process (detached, labelled,
//! adopted), real instances, load through a real endpoint while conductors
//! are killed, stopped, and replaced by another build.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Ctx, Load, dataplane_pid, dataplane_pids, healthy, pid_of, rebuilt_copy};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

fn assert_no_failure(what: &str, result: &common::LoadResult) {
    let (ok, failed, _) = result;
    assert!(
        failed.is_empty(),
        "{what}: {} of {} requests failed: {:?}",
        failed.len(),
        ok + failed.len() as u64,
        &failed[..failed.len().min(10)]
    );
    assert!(*ok > 0, "{what}: no request was answered");
}

fn sigkill(pid: u32) {
    // SAFETY: kill(2) of a process this test started.
    unsafe {
        libc::kill(pid as i32, libc::SIGKILL);
    }
}

fn sigterm(pid: u32) {
    // SAFETY: kill(2) of a process this test started.
    unsafe {
        libc::kill(pid as i32, libc::SIGTERM);
    }
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, r)| !r.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn an_endpoint_keeps_serving_while_the_conductor_is_killed_and_restarted() {
    let mut ctx = Ctx::new();
    let file = ctx.demo("hello.glint", 3, "hello");
    let conductor = ctx.spawn("conductor-1", &["conductor"]);
    ctx.ok(&["apply", file.to_str().unwrap(), "--wait"]);
    let before: BTreeSet<String> = ctx.wait_ready(3).into_iter().collect();
    let s = ctx.status();
    let store = ctx.store_id();
    let plane = dataplane_pid(&s).expect("a data plane runs");
    assert_eq!(
        dataplane_pids(&store),
        vec![plane],
        "one, labelled with the store"
    );
    assert_eq!(s["data_plane"]["current"], true, "{s:#}");

    let fresh = Load::start(ctx.endpoint());
    let kept = Load::start_keepalive(ctx.endpoint());
    std::thread::sleep(Duration::from_millis(300));
    sigkill(conductor);
    std::thread::sleep(Duration::from_millis(500));

    // No conductor: the endpoint serves the last healthy set, and stops
    // sending to an instance that dies meanwhile (its connections fail).
    let s = ctx.status();
    assert_eq!(s["conductor"]["running"], false, "{s:#}");
    assert_eq!(s["endpoints"][0]["listening"], true, "{s:#}");
    let victim = before.iter().next().unwrap().clone();
    // SAFETY: kill(2) of an instance process found in status.
    unsafe {
        libc::kill(pid_of(&s, &victim), libc::SIGKILL);
    }
    std::thread::sleep(Duration::from_secs(2));

    ctx.spawn("conductor-2", &["conductor"]);
    ctx.wait_status("the dead instance replaced", |s| {
        let h = healthy(s);
        h.len() == 3 && !h.contains(&victim) && s["endpoints"][0]["backends"] == 3
    });
    let after: BTreeSet<String> = ctx.wait_ready(3).into_iter().collect();
    std::thread::sleep(Duration::from_millis(500));
    let fresh = fresh.stop();
    let kept = kept.stop();
    assert_no_failure("new connections", &fresh);
    assert_no_failure("keep-alive connections", &kept);

    assert!(!after.contains(&victim), "the dead instance was replaced");
    let s = ctx.status();
    assert_eq!(dataplane_pid(&s), Some(plane), "the data plane was adopted");
    assert_eq!(dataplane_pids(&store), vec![plane]);
    let events = ctx.ok(&["events", "-n", "200"]);
    assert!(events.contains("data plane started"), "{events}");
    assert!(
        events.contains(&format!("data plane adopted (pid {plane}")),
        "{events}"
    );
    assert!(
        events.contains("is listening on") && events.contains("(kept by the data plane)"),
        "{events}"
    );
}

#[test]
fn a_new_build_takes_the_sockets_over_without_a_failed_request() {
    let mut ctx = Ctx::new();
    let file = ctx.demo("hello.glint", 2, "hello");
    let conductor = ctx.spawn("conductor-old", &["conductor"]);
    ctx.ok(&["apply", file.to_str().unwrap(), "--wait"]);
    let instances: BTreeSet<String> = ctx.wait_ready(2).into_iter().collect();
    let old = dataplane_pid(&ctx.status()).unwrap();
    let old_build = ctx.status()["data_plane"]["build"].clone();
    let store = ctx.store_id();

    let fresh = Load::start(ctx.endpoint());
    let kept = Load::start_keepalive(ctx.endpoint());
    std::thread::sleep(Duration::from_millis(300));
    // `glint conductor` stopped: the data plane is left running.
    sigterm(conductor);
    wait_until("the conductor to stop", Duration::from_secs(30), || {
        ctx.log("conductor-old").contains("endpoints keep serving")
            && !ctx.status()["conductor"]["running"].as_bool().unwrap()
    });
    std::thread::sleep(Duration::from_millis(500));
    assert!(alive(old), "the data plane outlives a stopped conductor");

    // A conductor of another build replaces the data plane: the new one
    // takes the listening sockets over, the old one leaves and exits.
    let rebuilt = rebuilt_copy(ctx.dir.path());
    ctx.spawn_of(&rebuilt, "conductor-new", &["conductor"]);
    wait_until("the new data plane", Duration::from_secs(60), || {
        let s = ctx.status();
        dataplane_pid(&s).is_some_and(|p| p != old) && s["conductor"]["running"] == true
    });
    wait_until(
        "the old data plane to exit",
        Duration::from_secs(60),
        || !alive(old),
    );
    let now: BTreeSet<String> = ctx.wait_ready(2).into_iter().collect();
    std::thread::sleep(Duration::from_millis(500));
    let fresh = fresh.stop();
    let kept = kept.stop();
    assert_no_failure("new connections", &fresh);
    assert_no_failure("keep-alive connections", &kept);

    assert_eq!(now, instances, "instances were adopted, not replaced");
    let s = ctx.status();
    let new = dataplane_pid(&s).unwrap();
    assert_eq!(dataplane_pids(&store), vec![new], "only the new one runs");
    assert_ne!(s["data_plane"]["build"], old_build, "{s:#}");
    let events = ctx.ok(&["events", "-n", "200"]);
    assert!(
        events.contains(&format!(
            "data plane replaced: pid {old}, protocol {p}",
            p = glint_dataplane::PROTOCOL
        )) && events.contains(&format!("handed its listening sockets to pid {new}")),
        "{events}"
    );
}

#[test]
fn a_data_plane_that_dies_is_started_again_and_programmed_from_scratch() {
    let mut ctx = Ctx::new();
    let file = ctx.demo("hello.glint", 2, "hello");
    ctx.spawn("conductor", &["conductor"]);
    ctx.ok(&["apply", file.to_str().unwrap(), "--wait"]);
    ctx.wait_ready(2);
    let old = dataplane_pid(&ctx.status()).unwrap();
    sigkill(old as u32);
    wait_until("a new data plane", Duration::from_secs(60), || {
        dataplane_pid(&ctx.status()).is_some_and(|p| p != old)
    });
    ctx.wait_ready(2);
    let body = common::get(ctx.endpoint(), "/").unwrap();
    assert!(body.starts_with("hello from web-"), "{body}");
    let events = ctx.ok(&["events", "-n", "200"]);
    assert!(events.contains("the data plane is now pid"), "{events}");
    assert_eq!(dataplane_pids(&ctx.store_id()).len(), 1);
}

#[test]
fn status_shows_the_data_plane_and_its_endpoints_without_a_conductor() {
    let mut ctx = Ctx::new();
    let file = ctx.demo("hello.glint", 2, "hello");
    let conductor = ctx.spawn("conductor", &["conductor"]);
    ctx.ok(&["apply", file.to_str().unwrap(), "--wait"]);
    ctx.wait_ready(2);
    for _ in 0..5 {
        common::get(ctx.endpoint(), "/").unwrap();
    }
    sigkill(conductor);
    let s = ctx.wait_status("no conductor", |s| s["conductor"]["running"] == false);
    let pid = dataplane_pid(&s).unwrap();
    assert_eq!(s["data_plane"]["protocol"], glint_dataplane::PROTOCOL);
    assert_eq!(s["endpoints"][0]["listening"], true, "{s:#}");
    assert_eq!(s["endpoints"][0]["backends"], 2, "{s:#}");
    assert!(
        s["endpoints"][0]["requests"].as_u64().unwrap() >= 5,
        "{s:#}"
    );
    let text = ctx.ok(&["status"]);
    assert!(
        text.contains(&format!("data plane running (pid {pid}, protocol")),
        "{text}"
    );
    assert!(text.contains("listening"), "{text}");
    assert!(healthy(&s).len() == 2);
}
