//! The spine, tried as a user would: the real `glint` binary, real instance
//! processes, a real endpoint on a real port.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Ctx, Load, dataplane_pids, get, healthy, instances, labelled_pids, pid_of};
use std::collections::BTreeSet;
use std::time::Duration;

#[test]
fn up_serves_every_instance_through_the_endpoint_and_ctrl_c_stops_them() {
    let mut ctx = Ctx::new();
    let file = ctx.demo("hello.glint", 3, "hello");
    let up = ctx.spawn("up", &["up", file.to_str().unwrap()]);
    let ids = ctx.wait_ready(3);

    let mut seen = BTreeSet::new();
    for _ in 0..30 {
        let body = get(ctx.endpoint(), "/").unwrap();
        assert!(body.starts_with("hello from web-"), "{body}");
        seen.insert(body.split_whitespace().nth(2).unwrap().to_owned());
    }
    let ids: BTreeSet<String> = ids.into_iter().collect();
    assert_eq!(seen, ids, "repeated requests reach all 3 instances");

    // Each instance's output is kept and shown by `glint logs`.
    let logs = ctx.ok(&["logs", "web"]);
    for id in &ids {
        assert!(
            logs.contains(&format!("[{id}] glint-hello: {id} listening")),
            "{logs}"
        );
    }
    let one = ids.iter().next().unwrap();
    let logs = ctx.ok(&["logs", "web", "--instance", one]);
    assert_eq!(logs.lines().count(), 1, "{logs}");

    // Ctrl-C: every instance is drained and terminated, then the data plane
    // (the endpoints) is stopped, then `up` exits.
    let store = ctx.store_id();
    assert_eq!(labelled_pids(&store).len(), 3);
    assert_eq!(dataplane_pids(&store).len(), 1, "one data plane process");
    // SAFETY: signalling the child we spawned.
    unsafe {
        libc::kill(up as i32, libc::SIGINT);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !ctx.log("up").contains("Stopped.") {
        assert!(std::time::Instant::now() < deadline, "{}", ctx.log("up"));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(labelled_pids(&store).is_empty(), "no instance left behind");
    assert!(
        dataplane_pids(&store).is_empty(),
        "no data plane left behind"
    );
    assert!(
        std::net::TcpStream::connect(ctx.endpoint()).is_err(),
        "the endpoint is closed"
    );
    let s = ctx.status();
    assert!(instances(&s).is_empty(), "{s:#}");
    assert_eq!(s["data_plane"]["running"], false, "{s:#}");
}

#[test]
fn a_killed_instance_is_replaced_by_a_new_one_and_no_request_fails() {
    let mut ctx = Ctx::new();
    let file = ctx.demo("hello.glint", 3, "hello");
    ctx.spawn("up", &["up", file.to_str().unwrap()]);
    let before = ctx.wait_ready(3);
    let victim = before[0].clone();
    let pid = pid_of(&ctx.status(), &victim);

    let load = Load::start(ctx.endpoint());
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: kill(2) of the instance process found in status.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
    let s = ctx.wait_status("a replacement", |s| {
        let h = healthy(s);
        h.len() == 3 && !h.contains(&victim)
    });
    std::thread::sleep(Duration::from_millis(300));
    let (ok, failed, seen) = load.stop();

    let after: BTreeSet<String> = healthy(&s).into_iter().collect();
    let new: Vec<&String> = after.iter().filter(|i| !before.contains(i)).collect();
    assert_eq!(new.len(), 1, "exactly one new instance, with a new id");
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {failed:?}",
        failed.len(),
        ok
    );
    assert!(
        seen.contains(new[0]),
        "the replacement serves through the endpoint"
    );

    let events = ctx.ok(&["events", "-n", "100"]);
    assert!(
        events.contains(&format!("{victim} killed by signal 9")),
        "the detection is an event:\n{events}"
    );
    assert!(
        events.contains(&format!("{} is healthy", new[0])),
        "the replacement is an event:\n{events}"
    );
}

#[test]
fn a_conductor_killed_with_sigkill_is_restarted_and_adopts_its_instances() {
    let mut ctx = Ctx::new();
    let file = ctx.demo("hello.glint", 3, "hello");
    let conductor = ctx.spawn("conductor-1", &["conductor"]);
    ctx.ok(&["apply", file.to_str().unwrap()]);
    let before: BTreeSet<String> = ctx.wait_ready(3).into_iter().collect();
    let store = ctx.store_id();

    // SAFETY: signalling the child we spawned.
    unsafe {
        libc::kill(conductor as i32, libc::SIGKILL);
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        labelled_pids(&store).len(),
        3,
        "instances survive the conductor"
    );

    ctx.spawn("conductor-2", &["conductor"]);
    let after: BTreeSet<String> = ctx.wait_ready(3).into_iter().collect();
    assert_eq!(after, before, "the survivors were adopted, none replaced");
    // Give a duplicating conductor every chance to show itself.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(labelled_pids(&store).len(), 3, "exactly 3 instances run");
    let s = ctx.status();
    assert_eq!(healthy(&s).into_iter().collect::<BTreeSet<_>>(), before);
    assert_eq!(s["conductor"]["running"], true);
    let events = ctx.ok(&["events", "-n", "100"]);
    assert_eq!(events.matches("instance.adopted").count(), 3, "{events}");
}

#[test]
fn an_env_change_is_planned_as_replacement_and_applied_as_a_new_version() {
    let mut ctx = Ctx::new();
    let file = ctx.demo("hello.glint", 3, "hello");
    ctx.spawn("conductor", &["conductor"]);
    ctx.ok(&["apply", file.to_str().unwrap()]);
    let v1: BTreeSet<String> = ctx.wait_ready(3).into_iter().collect();

    ctx.demo("hello.glint", 3, "bonjour");
    let plan = ctx.ok(&["plan", file.to_str().unwrap()]);
    assert!(plan.contains("service web: replace 3 instances"), "{plan}");
    assert!(plan.contains("because env GREETING changed"), "{plan}");
    for id in &v1 {
        assert!(
            plan.contains(&format!("replace {id} (version 1)")),
            "{plan}"
        );
    }
    let json: serde_json::Value =
        serde_json::from_str(&ctx.ok(&["plan", file.to_str().unwrap(), "-o", "json"])).unwrap();
    assert_eq!(json["services"][0]["replace"], 3);

    ctx.ok(&["apply", file.to_str().unwrap(), "--wait"]);
    let s = ctx.wait_status("version 2 everywhere", |s| {
        let h = healthy(s);
        h.len() == 3 && instances(s).len() == 3 && instances(s).iter().all(|i| i["version"] == 2)
    });
    let v2: BTreeSet<String> = healthy(&s).into_iter().collect();
    assert!(
        v1.is_disjoint(&v2),
        "every instance was replaced, none modified"
    );
    assert!(
        get(ctx.endpoint(), "/")
            .unwrap()
            .starts_with("bonjour from")
    );

    let history: serde_json::Value =
        serde_json::from_str(&ctx.ok(&["history", "-o", "json"])).unwrap();
    let versions = history["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2);
    assert_ne!(versions[0]["hash"], versions[1]["hash"]);
    // Applying the same file again records nothing new.
    let again = ctx.ok(&["apply", file.to_str().unwrap()]);
    assert!(again.contains("No changes"), "{again}");
}

/// Each bad input: a clear message, a non-zero exit, and nothing changed.
#[test]
fn bad_input_is_refused_clearly_and_changes_nothing() {
    let ctx = Ctx::new();
    let good = ctx.demo("hello.glint", 1, "hello");
    ctx.ok(&["apply", good.to_str().unwrap()]);
    let history = || ctx.ok(&["history", "-o", "json"]);
    let before = history();

    let cases: &[(&str, &str, &[&str])] = &[
        (
            "type.glint",
            "service web {\n  image = image.x\n  instances = \"three\"\n}\nimage x {\n  from = scratch\n  entrypoint = [\"/x\"]\n}\n",
            &["type.glint:3:", "expected", "int", "string"],
        ),
        (
            "field.glint",
            "service web {\n  image = image.x\n  instancez = 3\n}\nimage x {\n  from = scratch\n  entrypoint = [\"/x\"]\n}\n",
            &["field.glint:3:", "instancez", "instances"],
        ),
        (
            "missing.glint",
            "endpoint public {\n  listen = 127.0.0.1:9\n  service = service.nope\n}\n",
            &["missing.glint:3:", "nope"],
        ),
    ];
    for (name, text, expect) in cases {
        let path = ctx.write(name, text);
        for cmd in ["check", "plan", "apply"] {
            let out = ctx.run(&[cmd, path.to_str().unwrap()]);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "glint {cmd} {name}: {err}");
            for e in *expect {
                assert!(
                    err.contains(e),
                    "glint {cmd} {name}: `{e}` missing from:\n{err}"
                );
            }
        }
    }
    // A missing file: usage/IO error.
    let out = ctx.run(&["apply", "no-such-file.glint"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-file.glint"));
    assert_eq!(history(), before, "nothing was recorded");

    // An unreadable data directory (a file where a directory should be).
    let blocker = ctx.dir.path().join("blocker");
    std::fs::write(&blocker, b"x").unwrap();
    for cmd in ["apply", "status"] {
        let mut c = ctx.cmd(&[cmd]);
        if cmd == "apply" {
            c.arg(good.to_str().unwrap());
        }
        let out = c
            .env("GLINT_DATA_DIR", blocker.join("data"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "glint {cmd}: {err}");
        assert!(
            err.contains("blocker/data"),
            "glint {cmd} names the directory: {err}"
        );
    }
}
