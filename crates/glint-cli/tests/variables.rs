//! Variables through the real `glint` binary and real instances (the demo
//! app `glint-hello`, whose `/var/NAME` and `/setvar/NAME` routes call the
//! instance API over `$GLINT_API_SOCKET` with the token in
//! `$GLINT_IDENTITY_FILE`): a reader reads, a non-reader is refused (403,
//! an incident event), a writer writes with compare-and-set and a reader's
//! blocking query sees it, a non-writer's write is refused, a process that
//! is not the instance is refused even with its token, a retired
//! instance's identity opens nothing, a changed literal replaces its
//! readers only, and runtime values survive a conductor SIGKILL (the
//! adopted reader reaches the new conductor's socket).
//!
//! As root, instances run in namespaces (`/run/glint` bound read-only);
//! otherwise they are plain processes told the host paths. Both work.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// `api` reads `flags` (literal) and `depth` (runtime), `worker` writes
/// `depth`, `web` reads nothing.
fn shop(ctx: &Ctx, flags: &str) -> std::path::PathBuf {
    shop_on(ctx, flags, "")
}

/// [`shop`] with a preamble (an `environment` block choosing a provider).
fn shop_on(ctx: &Ctx, flags: &str, preamble: &str) -> std::path::PathBuf {
    let health = "health {\n    http = \"/healthz\"\n    interval = 1s\n    timeout = 500ms\n    start_timeout = 3s\n  }\n  stop_grace = 1s\n  drain      = 1s";
    ctx.write(
        "main.glint",
        &format!(
            r#"{preamble}
image hello {{
  from = scratch
  copy "app/hello" to "/bin/hello"
  entrypoint = ["/bin/hello"]
  port = 8080
}}

service api {{
  image = image.hello
  {health}
}}

service web {{
  image = image.hello
  {health}
}}

service worker {{
  image = image.hello
  {health}
}}

variable flags {{
  value   = "{flags}"
  readers = [service.api]
}}

variable depth {{
  runtime = true
  value   = "0"
  readers = [service.api]
  writers = [service.worker]
}}

endpoint public {{
  listen  = 127.0.0.1:{{port}}
  service = service.api
}}
"#
        ),
    )
}

/// One GET on an instance's own address, waiting up to `secs` for the
/// answer: (status, body).
fn call(addr: &str, path: &str, secs: u64) -> (u16, String) {
    let addr: SocketAddr = addr.parse().unwrap();
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(secs))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).unwrap();
    let status = buf.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = buf.split_once("\r\n\r\n").unwrap().1.to_owned();
    (status, body)
}

/// What the instance API answered a `glint-hello` route: (status, JSON).
fn api(addr: &str, path: &str) -> (u16, Value) {
    let (status, body) = call(addr, path, 60);
    assert_eq!(status, 200, "{path}: {body}");
    let (code, json) = body.split_once('\n').unwrap();
    (
        code.parse().unwrap(),
        serde_json::from_str(json).unwrap_or(Value::String(json.to_owned())),
    )
}

/// Every instance of `service`.
fn instances_of(s: &Value, service: &str) -> Vec<Value> {
    s["services"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|svc| svc["name"] == service)
        .flat_map(|svc| svc["instances"].as_array().cloned().unwrap_or_default())
        .collect()
}

/// The healthy, current instance of `service`: (id, address).
fn one(s: &Value, service: &str) -> Option<(String, String)> {
    instances_of(s, service)
        .into_iter()
        .filter(|i| i["health"] == "healthy" && i["state"] == "running" && i["current"] == true)
        .map(|i| {
            (
                i["id"].as_str().unwrap().to_owned(),
                i["address"].as_str().unwrap().to_owned(),
            )
        })
        .next()
}

fn all_up(ctx: &Ctx) -> Value {
    ctx.wait_status("api, web and worker healthy", |s| {
        ["api", "web", "worker"]
            .iter()
            .all(|svc| one(s, svc).is_some())
    })
}

/// A request to the instance API socket from this test process (not an
/// instance): (status, body).
fn from_outside(ctx: &Ctx, path: &str, token: Option<&str>) -> (u16, String) {
    let sock = ctx.data().join("instance-api/instance.sock");
    let mut s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = token
        .map(|t| format!("authorization: Bearer {}\r\n", t.trim()))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: glint\r\n{auth}connection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).unwrap();
    let status = buf.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, buf.split_once("\r\n\r\n").unwrap().1.to_owned())
}

/// Waits until process `pid` is gone or a zombie whose last thread ended
/// (its lock on the data directory released).
fn wait_dead(pid: i32) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| s.rsplit(')').next().and_then(|r| r.trim().chars().next()));
        let threads = std::fs::read_dir(format!("/proc/{pid}/task"))
            .map(|d| d.count())
            .unwrap_or(0);
        if state.is_none() || (state == Some('Z') && threads <= 1) {
            return;
        }
        assert!(Instant::now() < deadline, "process {pid} does not end");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// An instance's identity token, read from its directory on the host.
fn token_of(ctx: &Ctx, id: &str) -> String {
    std::fs::read_to_string(format!(
        "/dev/shm/glint-run-{}/{id}/identity",
        ctx.store_id()
    ))
    .unwrap()
}

fn events(ctx: &Ctx) -> Vec<Value> {
    serde_json::from_str::<Value>(&ctx.ok(&["events", "-n", "1000", "-o", "json"])).unwrap()
        ["events"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

// Mutation caught: a non-reader allowed (or a reader refused), a write by a
// non-writer or at a stale index accepted, a blocking query returning
// before the write or missing it, the size limit not applied, a refusal
// without its incident, the token accepted from a process that is not the
// instance.
#[test]
fn readers_read_writers_write_and_everyone_else_is_refused_and_recorded() {
    let mut ctx = Ctx::new();
    let file = shop(&ctx, "new-checkout=on");
    ctx.ok(&["apply", file.to_str().unwrap()]);
    ctx.spawn("conductor", &["conductor"]);
    let s = all_up(&ctx);
    let (api_id, api_at) = one(&s, "api").unwrap();
    let (web_id, web_at) = one(&s, "web").unwrap();
    let (worker_id, worker_at) = one(&s, "worker").unwrap();

    // The reader reads the literal, through the API and as a file.
    let (code, v) = api(&api_at, "/var/flags");
    assert_eq!(code, 200, "{v}");
    assert_eq!(
        (v["value"].as_str(), v["index"].as_u64()),
        (Some("new-checkout=on"), Some(0))
    );
    assert_eq!(
        call(&api_at, "/varfile/flags", 5),
        (200, "new-checkout=on".into())
    );
    // And the runtime variable's initial value at index 0.
    let (code, v) = api(&api_at, "/var/depth");
    assert_eq!(
        (code, v["value"].as_str(), v["index"].as_u64()),
        (200, Some("0"), Some(0))
    );

    // The non-reader: refused, told who may, no file.
    let (code, v) = api(&web_at, "/var/flags");
    assert_eq!(code, 403, "{v}");
    assert_eq!(v["readers"], serde_json::json!(["api"]));
    assert!(v["error"].as_str().unwrap().contains("not a reader"), "{v}");
    assert_eq!(
        call(&web_at, "/varfile/flags", 5).0,
        404,
        "a non-reader has no file"
    );

    // The writer writes with compare-and-set; a stale index is refused.
    let (code, v) = api(&worker_at, "/setvar/depth?value=5&cas=0");
    assert_eq!((code, v["index"].as_u64()), (200, Some(1)), "{v}");
    let (code, v) = api(&worker_at, "/setvar/depth?value=6&cas=0");
    assert_eq!(code, 409, "{v}");
    // Non-writers: the reader and the bystander.
    let (code, v) = api(&api_at, "/setvar/depth?value=9");
    assert_eq!(code, 403, "{v}");
    assert_eq!(v["writers"], serde_json::json!(["worker"]));
    assert_eq!(api(&web_at, "/setvar/depth?value=9").0, 403);
    // Over 64 KiB.
    assert_eq!(api(&worker_at, "/setvar/depth?size=65537").0, 413);
    let (_, v) = api(&api_at, "/var/depth");
    assert_eq!(
        (v["value"].as_str(), v["index"].as_u64()),
        (Some("5"), Some(1)),
        "nothing refused was written"
    );

    // A blocking query returns when the writer writes, with the new value.
    let at = api_at.clone();
    let waiter = std::thread::spawn(move || {
        let started = Instant::now();
        let r = api(&at, "/var/depth?index=1&wait=30s");
        (r, started.elapsed())
    });
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !waiter.is_finished(),
        "the blocking query waits for a change"
    );
    let (code, _) = api(&worker_at, "/setvar/depth?value=7&cas=1");
    assert_eq!(code, 200);
    let ((code, v), took) = waiter.join().unwrap();
    assert_eq!(
        (code, v["value"].as_str(), v["index"].as_u64()),
        (200, Some("7"), Some(2)),
        "{v}"
    );
    assert!(
        took < Duration::from_secs(30),
        "it returned on the write, not at the end of its wait"
    );
    // A blocking query with nothing new ends with its wait.
    let (code, v) = api(&api_at, "/var/depth?index=2&wait=300ms");
    assert_eq!((code, v["index"].as_u64()), (200, Some(2)));

    // The reader's token from a process that is not the instance: refused.
    let token = token_of(&ctx, &api_id);
    assert!(!token.is_empty());
    let (code, body) = from_outside(&ctx, "/v1/variables/flags", Some(&token));
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("not started by Glint"), "{body}");
    // No identity, or a forged one: 401.
    assert_eq!(from_outside(&ctx, "/v1/variables/flags", None).0, 401);
    let forged = format!("{}00", token.trim().trim_end_matches(char::is_alphanumeric));
    assert_eq!(
        from_outside(&ctx, "/v1/variables/flags", Some(&forged)).0,
        401
    );
    // Not in the environment (of the init, nor of the program, its child
    // when namespaced): the token is a file only.
    let init = pid_of(&s, &api_id);
    let mut pids = vec![init];
    pids.extend(
        std::fs::read_to_string(format!("/proc/{init}/task/{init}/children"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok()),
    );
    for pid in pids {
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        let t = token.trim().as_bytes();
        assert!(
            !environ.windows(t.len()).any(|w| w == t),
            "the token is in the environment of {pid}"
        );
    }

    // Writes and refusals are events; refusals are incidents naming the
    // instance refused.
    let ev = events(&ctx);
    let written: Vec<&Value> = ev
        .iter()
        .filter(|e| e["kind"] == "variable.written")
        .collect();
    assert_eq!(written.len(), 2, "{ev:#?}");
    assert!(written.iter().all(|e| e["instance"] == worker_id.as_str()));
    let refused: Vec<&Value> = ev
        .iter()
        .filter(|e| e["kind"] == "variable.refused")
        .collect();
    assert!(
        refused.iter().all(|e| e["severity"] == "incident"),
        "{refused:#?}"
    );
    for who in [&web_id, &api_id] {
        assert!(
            refused.iter().any(|e| e["instance"] == who.as_str()),
            "no refusal recorded for {who}: {refused:#?}"
        );
    }
    // And incident records (`glint incidents`), one per refused instance.
    let inc: Value = serde_json::from_str(&ctx.ok(&["incidents", "-o", "json"])).unwrap();
    let inc = inc["incidents"].as_array().unwrap();
    assert!(
        inc.iter()
            .any(|i| i["kind"] == "variable-access-refused" && i["subject"] == web_id.as_str()),
        "{inc:#?}"
    );
    assert!(
        !ev.iter().any(|e| e.to_string().contains("new-checkout=on")),
        "values are not in events"
    );
}

// Mutation caught: the literal's value left out of the launch shape (its
// readers keep the old value), non-readers replaced too, a retired
// instance's token still accepted, runtime values lost with the conductor
// or the adopted reader cut off from the new conductor's socket.
#[test]
fn a_changed_literal_rolls_its_readers_retired_identities_open_nothing_and_values_survive_restarts()
{
    let mut ctx = Ctx::new();
    let file = shop(&ctx, "on");
    let f = file.to_str().unwrap();
    ctx.ok(&["apply", f]);
    let conductor = ctx.spawn("conductor-1", &["conductor"]);
    let s = all_up(&ctx);
    let (api_id, api_at) = one(&s, "api").unwrap();
    let (web_id, _) = one(&s, "web").unwrap();
    let (_, worker_at) = one(&s, "worker").unwrap();
    assert_eq!(api(&worker_at, "/setvar/depth?value=42&cas=0").0, 200);
    let old_token = token_of(&ctx, &api_id);

    // A runtime value survives a conductor SIGKILL, and the adopted reader
    // reaches the next conductor (its socket directory is bound, not the
    // socket).
    // SAFETY: kill(2) on the conductor this test started.
    unsafe {
        libc::kill(conductor as i32, libc::SIGKILL);
    }
    wait_dead(conductor as i32);
    ctx.spawn("conductor-2", &["conductor"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = ctx.status();
        if s["conductor"]["running"] == true && s["conductor"]["pid"] != conductor {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no second conductor; its output:\n{}",
            ctx.log("conductor-2")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, v) = api(&api_at, "/var/depth");
        if code == 200 {
            assert_eq!(
                (v["value"].as_str(), v["index"].as_u64()),
                (Some("42"), Some(1)),
                "{v}"
            );
            break;
        }
        if Instant::now() > deadline {
            let pid = pid_of(&ctx.status(), &api_id);
            let ls = |p: String| {
                std::process::Command::new("ls")
                    .args(["-lia", &p])
                    .output()
                    .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                    .unwrap_or_default()
            };
            panic!(
                "the adopted reader cannot reach the new conductor: {code} {v}\nhost:\n{}\ninside:\n{}\n{}\nconductor-2:\n{}",
                ls(ctx.data().join("instance-api").display().to_string()),
                ls(format!("/proc/{pid}/root/run/glint-api")),
                ls(format!("/proc/{pid}/root/run/glint")),
                ctx.log("conductor-2")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    // A changed literal: the plan says why, the reader alone is replaced,
    // the new reader gets the new value.
    let file = shop(&ctx, "off");
    let plan = ctx.ok(&["plan", f]);
    assert!(plan.contains("because variable flags changed"), "{plan}");
    assert!(plan.contains("variable flags (literal): changed"), "{plan}");
    assert!(
        !plan.contains("\"off\"") && !plan.contains(" off "),
        "the plan shows hashes, not values: {plan}"
    );
    ctx.ok(&["apply", file.to_str().unwrap()]);
    let s = ctx.wait_status("a new api", |s| {
        one(s, "api").is_some_and(|(id, _)| id != api_id) && instances_of(s, "api").len() == 1
    });
    let (_, new_at) = one(&s, "api").unwrap();
    assert_eq!(call(&new_at, "/varfile/flags", 5), (200, "off".into()));
    assert_eq!(api(&new_at, "/var/flags").1["value"], "off");
    assert_eq!(api(&new_at, "/var/depth").1["value"], "42");
    assert_eq!(
        one(&s, "web").unwrap().0,
        web_id,
        "the non-reader was not replaced"
    );

    // The retired reader's token, unexpired, opens nothing.
    let (code, body) = from_outside(&ctx, "/v1/variables/flags", Some(&old_token));
    assert_eq!(code, 403, "{body}");
    assert!(
        body.contains(&api_id) && (body.contains("is gone") || body.contains("is retiring")),
        "{body}"
    );
}

fn docker(args: &[&str]) -> String {
    let o = std::process::Command::new("docker")
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Removes a store's containers and networks when dropped.
struct DockerGuard(String);

impl Drop for DockerGuard {
    fn drop(&mut self) {
        let filter = format!("label=dev.glint.store={}", self.0);
        for id in docker(&["ps", "-aq", "--filter", &filter]).split_whitespace() {
            docker(&["rm", "-f", "-v", id]);
        }
        for id in docker(&["network", "ls", "-q", "--filter", &filter]).split_whitespace() {
            docker(&["network", "rm", id]);
        }
    }
}

// Mutation caught: the Docker provider ignoring a spec's `/run/glint`
// (no identity, no socket in containers), or the peer check refusing
// containers' own processes.
#[test]
fn docker_readers_and_writers_use_the_instance_api_too() {
    if !rustix::process::geteuid().is_root() || !docker_available() {
        eprintln!("skipped: needs root and a Docker Engine");
        return;
    }
    let mut ctx = Ctx::new();
    let file = shop_on(&ctx, "on", "environment shop {\n  provider = docker\n}\n");
    ctx.ok(&["apply", file.to_str().unwrap()]);
    ctx.spawn("conductor", &["conductor"]);
    let _guard = DockerGuard(ctx.store_id());
    let s = all_up(&ctx);
    let (_, api_at) = one(&s, "api").unwrap();
    let (web_id, web_at) = one(&s, "web").unwrap();
    let (_, worker_at) = one(&s, "worker").unwrap();
    let (code, v) = api(&api_at, "/var/flags");
    assert_eq!((code, v["value"].as_str()), (200, Some("on")), "{v}");
    assert_eq!(call(&api_at, "/varfile/flags", 5), (200, "on".into()));
    assert_eq!(api(&web_at, "/var/flags").0, 403);
    assert_eq!(api(&worker_at, "/setvar/depth?value=3&cas=0").0, 200);
    assert_eq!(api(&api_at, "/var/depth").1["value"], "3");
    let refused = events(&ctx)
        .into_iter()
        .filter(|e| e["kind"] == "variable.refused")
        .any(|e| e["instance"] == web_id.as_str() && e["severity"] == "incident");
    assert!(refused, "the refusal is an incident");
    // The identity is a read-only bind, not part of the configuration.
    let store = ctx.store_id();
    let api_container = docker(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=dev.glint.store={store}"),
        "--filter",
        "label=dev.glint.service=api",
    ]);
    let mounts = docker(&["inspect", "-f", "{{json .Mounts}}", api_container.trim()]);
    assert!(
        mounts.contains("\"Destination\":\"/run/glint\""),
        "{mounts}"
    );
    let config = docker(&["inspect", api_container.trim()]);
    assert!(
        !config.contains("glint-id.v1."),
        "the token is not in the container's configuration"
    );
}

// Mutation caught: identities never renewed (an instance locked out once
// its first token expires), or an expired token still accepted.
#[test]
fn identities_are_renewed_before_they_expire_and_expired_ones_are_refused() {
    let mut ctx = Ctx::new();
    let file = shop(&ctx, "on");
    ctx.ok(&["apply", file.to_str().unwrap()]);
    ctx.spawn_env(
        std::path::Path::new(glint_bin()),
        "conductor",
        &["conductor"],
        &[("GLINT_IDENTITY_TTL", "4s")],
    );
    let s = all_up(&ctx);
    let (api_id, api_at) = one(&s, "api").unwrap();
    let first = token_of(&ctx, &api_id);
    // Renewed (at half its life): a new token in the same file.
    let deadline = Instant::now() + Duration::from_secs(30);
    let second = loop {
        let t = token_of(&ctx, &api_id);
        if t != first && !t.is_empty() {
            break t;
        }
        assert!(Instant::now() < deadline, "the identity was not renewed");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(second.starts_with("glint-id.v1."));
    // Once the first has expired, it is refused as expired; the instance,
    // reading its file again, still gets through.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, body) = from_outside(&ctx, "/v1/variables/flags", Some(&first));
        if code == 401 {
            assert!(body.contains("expired"), "{body}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the first token never expired: {code} {body}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(api(&api_at, "/var/flags").0, 200);
}
