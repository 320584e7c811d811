//! Secrets through the real `glint` binary: set from standard input,
//! sealed in the store, refused to an apply whose reader's secret is not
//! set, delivered to the reader's process instance as `/run/secrets/NAME`
//! (and to nobody else), nowhere in clear — not in the data directory, not
//! in `status`, `events`, `plan`, `check --emit ir`, not in the conductor's
//! output — rolled to the readers when it changes, kept across a conductor
//! SIGKILL, and still readable after `glint secret rotate-key` while the
//! old key opens nothing.
//!
//! The delivery test needs root (process instances in namespaces); the
//! others run as any user.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

fn root() -> bool {
    rustix::process::geteuid().is_root()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// An environment: `api` reads secret `db/password` (behind the
/// endpoint), `web` reads nothing.
fn shop(ctx: &Ctx, greeting: &str) -> std::path::PathBuf {
    shop_on(ctx, greeting, "")
}

/// [`shop`] with a preamble (an `environment` block choosing a provider).
fn shop_on(ctx: &Ctx, greeting: &str, preamble: &str) -> std::path::PathBuf {
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
  env   = {{ GREETING = "{greeting}" }}
  health {{
    http = "/healthz"
    interval = 1s
    timeout = 500ms
    start_timeout = 3s
  }}
  stop_grace = 1s
  drain      = 1s
}}

service web {{
  image = image.hello
  health {{
    http = "/healthz"
    interval = 1s
    timeout = 500ms
    start_timeout = 3s
  }}
  stop_grace = 1s
  drain      = 1s
}}

variable db_password {{
  secret  = "db/password"
  readers = [service.api]
}}

endpoint public {{
  listen  = 127.0.0.1:{{port}}
  service = service.api
}}
"#
        ),
    )
}

/// Every file under `dir` (recursively) that contains `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            let Ok(meta) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            if meta.is_dir() {
                stack.push(p);
            } else if meta.is_file()
                && let Ok(bytes) = std::fs::read(&p)
                && bytes.windows(needle.len()).any(|w| w == needle)
            {
                hits.push(p.display().to_string());
            }
        }
    }
    hits
}

/// Waits until process `pid` is gone or a zombie (its locks released).
fn wait_dead(pid: i32) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| s.rsplit(')').next().map(|r| r.trim().chars().next()))
            .flatten();
        // The leader turns zombie first; its files (and so the lock) go
        // with its last thread.
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

fn instances_of(s: &Value, service: &str) -> Vec<Value> {
    s["services"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|svc| svc["name"] == service)
        .flat_map(|svc| svc["instances"].as_array().cloned().unwrap_or_default())
        .collect()
}

fn healthy_of(s: &Value, service: &str) -> Vec<String> {
    instances_of(s, service)
        .into_iter()
        .filter(|i| i["health"] == "healthy" && i["state"] == "running" && i["current"] == true)
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Waits until `get(path)` on the endpoint answers `want`.
fn wait_answer(ctx: &Ctx, path: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match get(ctx.endpoint(), path) {
            Ok(b) if b == want => return,
            other if Instant::now() > deadline => {
                panic!(
                    "timed out waiting for {path} to answer {want:?}; last: {other:?}\nevents:\n{}",
                    ctx.ok(&["events", "-n", "40"])
                )
            }
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

// Mutation caught: apply not checking that readers' secrets are set, or
// the refusal recording the version anyway.
#[test]
fn apply_is_refused_until_a_readers_secret_is_set() {
    let ctx = Ctx::new();
    let file = shop(&ctx, "hi");
    let out = ctx.run(&["apply", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("secret db/password (read by api) is not set")
            && err.contains("`glint secret set db/password`")
            && err.contains("nothing was changed"),
        "{err}"
    );
    let history = ctx.ok(&["history", "-o", "json"]);
    assert_eq!(
        serde_json::from_str::<Value>(&history)
            .unwrap()
            .as_array()
            .map(Vec::len)
            .unwrap_or(0),
        0,
        "no version was recorded: {history}"
    );
    // The plan says so too.
    let plan = ctx.ok(&["plan", file.to_str().unwrap()]);
    assert!(plan.contains("secret db/password: not set"), "{plan}");

    let set = ctx.set_secret("db/password", "first-value", &[]);
    assert!(set.status.success(), "{}", text(&set.stderr));
    assert!(
        text(&set.stdout).contains("version 1"),
        "{}",
        text(&set.stdout)
    );
    ctx.ok(&["apply", file.to_str().unwrap()]);
}

// Mutation caught: an empty value accepted, a value taken from an
// argument, removal not checking readers, a wrong key writing anyway.
#[test]
fn the_secret_commands_refuse_what_they_must_and_never_print_values() {
    let ctx = Ctx::new();
    let file = shop(&ctx, "hi");
    // Empty: refused.
    let out = ctx.set_secret("db/password", "", &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("is empty"),
        "{}",
        text(&out.stderr)
    );
    // No value argument exists.
    let out = ctx.run(&["secret", "set", "db/password", "the-value"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a value argument is a usage error"
    );
    // A bad name.
    let out = ctx.set_secret("../etc/passwd", "x", &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    // From a file, exact bytes.
    let path = ctx.write("pw.txt", "file-value\n");
    ctx.ok(&[
        "secret",
        "set",
        "db/password",
        "--from-file",
        path.to_str().unwrap(),
    ]);
    // Too large.
    let big = ctx.write("big.txt", &"x".repeat(64 * 1024 + 1));
    let out = ctx.run(&["secret", "set", "big", "--from-file", big.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    // The key file is private.
    let key = ctx.data().join("secrets.key");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    ctx.ok(&["apply", file.to_str().unwrap()]);
    let list: Value = serde_json::from_str(&ctx.ok(&["secret", "list", "-o", "json"])).unwrap();
    assert_eq!(list[0]["name"], "db/password");
    assert_eq!(list[0]["version"], 1);
    assert_eq!(list[0]["readers"], serde_json::json!(["api"]));
    assert!(!list.to_string().contains("file-value"));
    // Read by api: removal refused.
    let out = ctx.run(&["secret", "rm", "db/password"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("read by api"),
        "{}",
        text(&out.stderr)
    );
    // A wrong master key: refused, nothing written.
    let wrong = "11".repeat(32);
    let out = ctx.set_secret("other", "v", &[("GLINT_MASTER_KEY", &wrong)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr)
            .contains("the master key does not open secret db/password; check GLINT_MASTER_KEY"),
        "{}",
        text(&out.stderr)
    );
    let list: Value = serde_json::from_str(&ctx.ok(&["secret", "list", "-o", "json"])).unwrap();
    assert_eq!(
        list.as_array().unwrap().len(),
        1,
        "nothing was written: {list}"
    );
    // A key file others may read: refused.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = ctx.set_secret("other", "v", &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("chmod 600"),
        "{}",
        text(&out.stderr)
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    // --force removes, and the event names the readers, not the value.
    ctx.ok(&["secret", "rm", "db/password", "--force"]);
    let events = ctx.ok(&["events", "-o", "json"]);
    assert!(events.contains("secret.removed") && events.contains("secret.set"));
    assert!(!events.contains("file-value"));
}

// Mutation caught: secrets bound into every instance (or none), a value in
// the environment, the store, the events or the conductor's output, a new
// version not rolling its readers, a rotation losing values or leaving the
// old key able to open them.
#[test]
fn a_secret_reaches_its_readers_only_and_nothing_else_keeps_it_in_clear() {
    if !root() {
        eprintln!("skipped: delivering secrets into process instances needs root (namespaces)");
        return;
    }
    let mut ctx = Ctx::new();
    let file = shop(&ctx, "hi");
    let f = file.to_str().unwrap();
    let value = format!("pw-{}-Zx9", std::process::id());
    let set = ctx.set_secret("db/password", &value, &[]);
    assert!(set.status.success(), "{}", text(&set.stderr));
    ctx.ok(&["apply", f]);
    let conductor = ctx.spawn("conductor-1", &["conductor"]);
    let s = ctx.wait_status("api and web healthy", |s| {
        healthy_of(s, "api").len() == 1 && healthy_of(s, "web").len() == 1
    });
    // The reader reads it.
    wait_answer(&ctx, "/secret/db/password", &value);
    let api = healthy_of(&s, "api")[0].clone();
    let web = healthy_of(&s, "web")[0].clone();
    let api_pid = pid_of(&s, &api);
    let web_pid = pid_of(&s, &web);
    let in_api = format!("/proc/{api_pid}/root/run/secrets/db/password");
    assert_eq!(std::fs::read_to_string(&in_api).unwrap(), value);
    let mode = std::fs::metadata(&in_api).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o400, "the file is 0400");
    // On a tmpfs, mounted read-only.
    let mounts = std::fs::read_to_string(format!("/proc/{api_pid}/mounts")).unwrap();
    let line = mounts
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("/run/secrets"))
        .unwrap_or_else(|| panic!("no /run/secrets mount:\n{mounts}"));
    assert!(line.contains(" tmpfs ") && line.contains(" ro"), "{line}");
    // Not in its environment.
    let environ = std::fs::read(format!("/proc/{api_pid}/environ")).unwrap();
    assert!(!environ.windows(value.len()).any(|w| w == value.as_bytes()));
    // The non-reader has no secrets at all.
    assert!(
        !Path::new(&format!("/proc/{web_pid}/root/run/secrets"))
            .join("db")
            .exists(),
        "a non-reader got the secret"
    );

    // Nowhere in clear: the data directory (store, WAL, key file, logs,
    // event log, images), the command outputs, the conductor's output.
    let needle = value.as_bytes();
    assert_eq!(files_containing(&ctx.data(), needle), Vec::<String>::new());
    for args in [
        vec!["status", "-o", "json"],
        vec!["events", "-n", "1000", "-o", "json"],
        vec!["plan", f, "-o", "json"],
        vec!["plan", f],
        vec!["check", f, "--emit", "ir"],
        vec!["secret", "list", "-o", "json"],
        vec!["history", "-o", "json"],
    ] {
        let out = ctx.run(&args);
        assert!(
            !out.stdout.windows(needle.len()).any(|w| w == needle)
                && !out.stderr.windows(needle.len()).any(|w| w == needle),
            "glint {args:?} shows the value"
        );
    }
    let ir = ctx.ok(&["check", f, "--emit", "ir"]);
    assert!(ir.contains("\"db/password\""), "the IR names the secret");

    // A new value: the plan names the change, the apply replaces the
    // reader only, the new reader reads the new value.
    let value2 = format!("pw2-{}-Qy7", std::process::id());
    assert!(ctx.set_secret("db/password", &value2, &[]).status.success());
    let plan = ctx.ok(&["plan", f]);
    assert!(
        plan.contains("secret db/password changed (v1 → v2)"),
        "{plan}"
    );
    ctx.ok(&["apply", f]);
    wait_answer(&ctx, "/secret/db/password", &value2);
    let s = ctx.wait_status("a new api, the same web", |s| {
        let a = healthy_of(s, "api");
        a.len() == 1 && a[0] != api && instances_of(s, "api").len() == 1
    });
    assert_eq!(
        healthy_of(&s, "web"),
        std::slice::from_ref(&web),
        "the non-reader was not replaced"
    );
    assert!(
        !Path::new(&format!("/dev/shm/glint-secrets-{}/{api}", ctx.store_id())).exists(),
        "the retired reader's secrets are gone"
    );

    // A conductor SIGKILL loses nothing: a new conductor replaces a killed
    // reader, which reads the secret again.
    // SAFETY: kill(2) on the conductor this test started.
    unsafe {
        libc::kill(conductor as i32, libc::SIGKILL);
    }
    wait_dead(conductor as i32);
    let _ = ctx.spawn("conductor-2", &["conductor"]);
    ctx.wait_status("the second conductor", |s| {
        s["conductor"]["running"] == true && s["conductor"]["pid"] != conductor
    });
    let api2 = healthy_of(&s, "api")[0].clone();
    // SAFETY: kill(2) on an instance of this test.
    unsafe {
        libc::kill(pid_of(&s, &api2), libc::SIGKILL);
    }
    ctx.wait_status("a replaced api", |s| {
        let a = healthy_of(s, "api");
        a.len() == 1 && a[0] != api2
    });
    wait_answer(&ctx, "/secret/db/password", &value2);

    // Rotation: values stay readable (a new instance gets the value), the
    // old key opens nothing.
    let old_key = std::fs::read_to_string(ctx.data().join("secrets.key")).unwrap();
    let out = ctx.ok(&["secret", "rotate-key"]);
    assert!(out.contains("Re-wrapped 1 secret"), "{out}");
    let new_key = std::fs::read_to_string(ctx.data().join("secrets.key")).unwrap();
    assert_ne!(old_key, new_key);
    let s = ctx.status();
    let api3 = healthy_of(&s, "api")[0].clone();
    // SAFETY: kill(2) on an instance of this test.
    unsafe {
        libc::kill(pid_of(&s, &api3), libc::SIGKILL);
    }
    ctx.wait_status("a replaced api after the rotation", |s| {
        let a = healthy_of(s, "api");
        a.len() == 1 && a[0] != api3
    });
    wait_answer(&ctx, "/secret/db/password", &value2);
    let out = ctx.set_secret("other", "x", &[("GLINT_MASTER_KEY", old_key.trim())]);
    assert_eq!(out.status.code(), Some(1), "the old key is refused");
    assert!(
        text(&out.stderr).contains("does not open secret db/password"),
        "{}",
        text(&out.stderr)
    );

    // Still nowhere in clear, the conductors' output included.
    assert_eq!(files_containing(&ctx.data(), needle), Vec::<String>::new());
    assert_eq!(
        files_containing(&ctx.data(), value2.as_bytes()),
        Vec::<String>::new()
    );
    for log in ["conductor-1", "conductor-2"] {
        let l = ctx.log(log);
        assert!(
            !l.contains(&value) && !l.contains(&value2),
            "{log} shows a value"
        );
    }
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

// Mutation caught: the Docker provider ignoring a spec's secrets (a reader
// running without its file), binding them into every container, or
// putting a value into the container's configuration.
#[test]
fn a_secret_reaches_a_docker_reader_only() {
    if !root() || !docker_available() {
        eprintln!("skipped: needs root and a Docker Engine");
        return;
    }
    let mut ctx = Ctx::new();
    let file = shop_on(&ctx, "hi", "environment shop {\n  provider = docker\n}\n");
    let f = file.to_str().unwrap();
    let value = format!("docker-pw-{}-Kq3", std::process::id());
    assert!(ctx.set_secret("db/password", &value, &[]).status.success());
    ctx.ok(&["apply", f]);
    let _ = ctx.spawn("conductor", &["conductor"]);
    let _guard = DockerGuard(ctx.store_id());
    ctx.wait_status("api and web healthy", |s| {
        healthy_of(s, "api").len() == 1 && healthy_of(s, "web").len() == 1
    });
    wait_answer(&ctx, "/secret/db/password", &value);
    let store = ctx.store_id();
    let container = |service: &str| {
        docker(&[
            "ps",
            "-q",
            "--filter",
            &format!("label=dev.glint.store={store}"),
            "--filter",
            &format!("label=dev.glint.service={service}"),
        ])
        .trim()
        .to_owned()
    };
    let (api, web) = (container("api"), container("web"));
    assert!(!api.is_empty() && !web.is_empty());
    let api_mounts = docker(&["inspect", "-f", "{{json .Mounts}}", &api]);
    assert!(
        api_mounts.contains("\"Destination\":\"/run/secrets\"")
            && api_mounts.contains("\"RW\":false"),
        "{api_mounts}"
    );
    let web_mounts = docker(&["inspect", "-f", "{{json .Mounts}}", &web]);
    assert!(!web_mounts.contains("/run/secrets"), "{web_mounts}");
    let config = docker(&["inspect", &api]);
    assert!(
        !config.contains(&value),
        "the container's configuration holds the value"
    );
    assert_eq!(
        files_containing(&ctx.data(), value.as_bytes()),
        Vec::<String>::new()
    );
}
