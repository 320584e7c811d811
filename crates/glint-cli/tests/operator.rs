//! The operator's surface through the real `glint` binary with real
//! instances: the API on TCP with tokens, the CLI against a remote
//! conductor, `/metrics` parsed by Prometheus' own text parser and compared
//! with `glint status`, `glint down`, `glint logs -f`, and the dashboard in
//! a real browser (Debian's chromium through chromedriver).
//!
//! The parser and the browser are Debian packages (`python3-prometheus-
//! client`, `python3-selenium`, `chromium`, `chromium-driver`); tests that
//! need them skip with a message unless `GLINT_REQUIRE_BROWSER=1` (CI sets
//! it and installs them), when they fail instead.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

const PYTHON: &str = "/usr/bin/python3";

/// Whether the Debian tools are here; panics when CI requires them.
fn tools(what: &[&str]) -> bool {
    let missing: Vec<&&str> = what.iter().filter(|p| !Path::new(p).exists()).collect();
    let module_ok = std::process::Command::new(PYTHON)
        .args(["-c", "import selenium, prometheus_client"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if missing.is_empty() && module_ok {
        return true;
    }
    let msg =
        format!("missing {missing:?} or the python3-selenium / python3-prometheus-client packages");
    if std::env::var_os("GLINT_REQUIRE_BROWSER").is_some_and(|v| v == "1") {
        panic!("{msg} (GLINT_REQUIRE_BROWSER=1)");
    }
    eprintln!("skipping: {msg}");
    false
}

/// A running conductor with its API on a loopback port.
struct Operator {
    ctx: Ctx,
    api: SocketAddr,
}

impl Operator {
    fn start(instances: u32) -> Operator {
        Operator::start_with(Ctx::new(), instances, &[])
    }

    fn start_with(mut ctx: Ctx, instances: u32, extra: &[&str]) -> Operator {
        let file = ctx.demo("env.glint", instances, "v1");
        let api = SocketAddr::from(([127, 0, 0, 1], free_port()));
        ctx.ok(&["apply", file.to_str().unwrap()]);
        let listen = api.to_string();
        let mut args = vec!["conductor", "--listen", &listen];
        args.extend_from_slice(extra);
        ctx.spawn("conductor", &args);
        ctx.wait_ready(instances as usize);
        Operator { ctx, api }
    }

    fn url(&self) -> String {
        format!("http://{}", self.api)
    }

    fn token(&self, name: &str, role: &str) -> String {
        let out = self
            .ctx
            .ok(&["token", "create", name, "--role", role, "-o", "json"]);
        let v: Value = serde_json::from_str(&out).unwrap();
        v["token"].as_str().unwrap().to_owned()
    }

    /// `glint` against the remote conductor with `token`, from another
    /// (empty) data directory.
    fn remote(&self, token: Option<&str>, args: &[&str]) -> Output {
        let mut c = self.ctx.cmd(args);
        c.env("GLINT_ADDR", self.url())
            .env("GLINT_DATA_DIR", self.ctx.dir.path().join("elsewhere"));
        match token {
            Some(t) => c.env("GLINT_TOKEN", t),
            None => c.env_remove("GLINT_TOKEN"),
        };
        c.output().unwrap()
    }

    fn remote_ok(&self, token: &str, args: &[&str]) -> String {
        let out = self.remote(Some(token), args);
        assert!(
            out.status.success(),
            "remote glint {args:?} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// One GET with a bearer token: (status, body).
fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = token
        .map(|t| format!("authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: test\r\n{auth}connection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    (status, body)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
    out
}

fn kill(pid: i32) {
    // SAFETY: kill(2) of an instance process found in status.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
}

// Mutations caught: gauges taken from somewhere else than the status,
// launches or replacements not counted, a family missing, a document the
// Prometheus parser refuses (e.g. a histogram without its +Inf bucket).
#[test]
fn metrics_parse_and_match_glint_status_after_a_kill_and_a_rollout() {
    if !tools(&[PYTHON]) {
        return;
    }
    let op = Operator::start(3);
    let viewer = op.token("scraper", "viewer");
    // Some traffic through the endpoint.
    for _ in 0..20 {
        common::get(op.ctx.endpoint(), "/").unwrap();
    }
    let s = op.ctx.status();
    let victim = healthy(&s)[0].clone();
    kill(pid_of(&s, &victim));
    op.ctx.wait_status("the replacement", |s| {
        healthy(s).len() == 3 && !healthy(s).contains(&victim)
    });
    let v2 = op.ctx.demo("env.glint", 3, "v2");
    op.ctx.ok(&["apply", v2.to_str().unwrap(), "--wait"]);
    op.ctx.wait_ready(3);
    let (code, _) = get(op.api, "/metrics", None);
    assert_eq!(code, 401, "/metrics needs a token");
    // glint status first: /metrics is read after, from the same live status.
    let status = op.ctx.ok(&["status", "-o", "json"]);
    let (code, metrics) = get(op.api, "/metrics", Some(&viewer));
    assert_eq!(code, 200, "{metrics}");
    let dir = op.ctx.dir.path();
    std::fs::write(dir.join("metrics.txt"), &metrics).unwrap();
    std::fs::write(dir.join("status.json"), &status).unwrap();
    let out = std::process::Command::new(PYTHON)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/operator/check_metrics.py"
        ))
        .arg(dir.join("metrics.txt"))
        .arg(dir.join("status.json"))
        // 3 + 1 replacement + 3 for the rollout; 2 rollouts converged.
        .args(["7", "2"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}\n{metrics}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{}", String::from_utf8_lossy(&out.stdout));
}

// Mutations caught: a remote command reading the local data directory, the
// token not sent, a refusal printed without the server's reason or with
// exit 0, rollback over the API not recording a version.
#[test]
fn the_cli_talks_to_a_remote_conductor_with_a_token_and_behaves_the_same() {
    let op = Operator::start(2);
    let viewer = op.token("laptop", "viewer");
    let deployer = op.token("ci", "deployer");
    // Without a token: 401, with the hint, exit 2.
    let out = op.remote(None, &["status"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("GLINT_TOKEN"), "{err}");

    let local: Value = op.ctx.status();
    let remote: Value =
        serde_json::from_str(&op.remote_ok(&viewer, &["status", "-o", "json"])).unwrap();
    assert_eq!(remote["version"], local["version"]);
    assert_eq!(remote["environment"], local["environment"]);
    assert_eq!(remote["services"][0]["healthy"], 2);
    let mut a: Vec<String> = instances(&remote)
        .iter()
        .map(|i| i["id"].to_string())
        .collect();
    let mut b: Vec<String> = instances(&local)
        .iter()
        .map(|i| i["id"].to_string())
        .collect();
    a.sort();
    b.sort();
    assert_eq!(a, b, "the same instances");
    let text = op.remote_ok(&viewer, &["status"]);
    assert!(text.contains("web") && text.contains("2/2"), "{text}");

    let history: Value =
        serde_json::from_str(&op.remote_ok(&viewer, &["history", "-o", "json"])).unwrap();
    assert_eq!(history["versions"].as_array().unwrap().len(), 1);
    let events = op.remote_ok(&viewer, &["events", "-n", "5"]);
    assert!(!events.trim().is_empty());
    let logs: Value =
        serde_json::from_str(&op.remote_ok(&viewer, &["logs", "web", "-o", "json"])).unwrap();
    assert_eq!(logs["instances"].as_array().unwrap().len(), 2);

    // A viewer may not roll back or list tokens: the server's reason, exit 2.
    let out = op.remote(Some(&viewer), &["token", "list"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs the admin role"));

    // Apply over the API (compiled here, images in the shared image store).
    let v2 = op.ctx.demo("env.glint", 2, "v2");
    let mut c = op.ctx.cmd(&["apply", v2.to_str().unwrap(), "--wait"]);
    c.env("GLINT_ADDR", op.url()).env("GLINT_TOKEN", &deployer);
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = op.remote_ok(&deployer, &["rollback", "1", "--yes", "--wait"]);
    assert!(out.contains("Recorded version 3"), "{out}");
    let v3: Value = serde_json::from_str(&op.ctx.ok(&["history", "-o", "json"])).unwrap();
    assert_eq!(v3["versions"][2]["kind"]["kind"], "rollback");
    let audit = op.ctx.ok(&["events", "-n", "100", "-o", "json"]);
    assert!(
        audit.contains("POST /v1/rollback") && audit.contains("POST /v1/apply"),
        "{audit}"
    );

    // Down over the API, then the environment is empty.
    let out = op.remote_ok(&deployer, &["down", "-o", "json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["stopped"], true, "{out}");
    let s = op.ctx.status();
    assert!(instances(&s).is_empty(), "{s:#}");
}

// Mutations caught: down recording nothing (or retiring nothing), volumes'
// declarations or history dropped, a later apply not bringing it back.
#[test]
fn down_stops_everything_keeps_history_and_apply_brings_it_back() {
    let mut ctx = Ctx::new();
    let file = ctx.demo("env.glint", 2, "v1");
    ctx.ok(&["apply", file.to_str().unwrap()]);
    ctx.spawn("conductor", &["conductor"]);
    ctx.wait_ready(2);
    let out = ctx.ok(&["down"]);
    assert!(out.contains("Down:"), "{out}");
    let s = ctx.status();
    assert!(instances(&s).is_empty(), "{s:#}");
    assert!(
        common::get(ctx.endpoint(), "/").is_err(),
        "the endpoint is closed"
    );
    let h: Value = serde_json::from_str(&ctx.ok(&["history", "-o", "json"])).unwrap();
    let versions = h["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[1]["kind"]["kind"], "down");
    ctx.ok(&["apply", file.to_str().unwrap()]);
    ctx.wait_ready(2);
}

// Mutations caught: a followed log not printing new instances' lines, or
// stopping when the followed instance is gone.
#[test]
fn logs_follow_new_instances_after_a_kill() {
    let mut ctx = Ctx::new();
    let file = ctx.demo("env.glint", 1, "v1");
    ctx.ok(&["apply", file.to_str().unwrap()]);
    ctx.spawn("conductor", &["conductor"]);
    let first = ctx.wait_ready(1)[0].clone();
    ctx.spawn("logs", &["logs", "web", "-f"]);
    let wait_log = |what: &str, pred: &dyn Fn(&str) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let l = ctx.log("logs");
            if pred(&l) {
                return l;
            }
            assert!(Instant::now() < deadline, "no {what} in:\n{l}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait_log("first instance's output", &|l| {
        l.contains(&format!("[{first}]"))
    });
    let s = ctx.status();
    kill(pid_of(&s, &first));
    let s = ctx.wait_status("the replacement", |s| {
        healthy(s).len() == 1 && !healthy(s).contains(&first)
    });
    let second = healthy(&s)[0].clone();
    wait_log("the replacement's output", &|l| {
        l.contains(&format!("[{second}]"))
    });
}

// Mutations caught: the bearer token accepted on TCP without checking it,
// the API listening on a non-loopback address in clear.
#[test]
fn the_tcp_api_refuses_requests_without_a_valid_token_and_never_listens_in_clear_elsewhere() {
    let op = Operator::start(1);
    assert_eq!(get(op.api, "/v1/status", None).0, 401);
    assert_eq!(get(op.api, "/v1/status", Some("glint_bogus")).0, 401);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(op.ctx.data().join("conductor.sock"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the socket is owner-only");
    let viewer = op.token("v", "viewer");
    let (code, body) = get(op.api, "/v1/openapi.json", Some(&viewer));
    assert_eq!(code, 200);
    let doc: Value = serde_json::from_str(&body).unwrap();
    assert!(doc["paths"]["/v1/status"]["get"]["security"].is_array());
    let out = op.ctx.run(&["conductor", "--listen", "0.0.0.0:0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a loopback address"));
}

// Mutations caught: the TLS acceptor not used (plain HTTP answered on the
// TLS port), the client trusting certificates it was not given.
#[test]
fn the_api_over_tls_trusts_exactly_the_given_certificate() {
    if !Path::new("/usr/bin/openssl").exists() {
        eprintln!("skipping: no /usr/bin/openssl to make a certificate");
        return;
    }
    let ctx = Ctx::new();
    let dir = ctx.dir.path().to_owned();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let out = std::process::Command::new("/usr/bin/openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        // A leaf, not a CA: webpki refuses a CA certificate as the server's.
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let op = Operator::start_with(
        ctx,
        1,
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    let viewer = op.token("tls", "viewer");
    let https = format!("https://{}", op.api);
    let run = |ca: Option<&Path>| {
        let mut c = op.ctx.cmd(&["status", "-o", "json"]);
        c.env("GLINT_ADDR", &https).env("GLINT_TOKEN", &viewer);
        match ca {
            Some(ca) => c.env("GLINT_CA", ca),
            None => c.env_remove("GLINT_CA"),
        };
        c.output().unwrap()
    };
    let out = run(Some(&cert));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["services"][0]["healthy"], 1);
    // Without the certificate to trust: refused before anything is sent.
    let out = run(None);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("GLINT_CA"));
    // Trusting another certificate: the handshake fails.
    let other = dir.join("other.pem");
    let out = std::process::Command::new("/usr/bin/openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=localhost"])
        .arg("-keyout")
        .arg(dir.join("other-key.pem"))
        .arg("-out")
        .arg(&other)
        .output()
        .unwrap();
    assert!(out.status.success());
    let out = run(Some(&other));
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("TLS"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Plain HTTP on the TLS port gets no HTTP answer.
    let mut s = TcpStream::connect(op.api).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET /v1/status HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    assert!(!String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 200"));
}

// What the issue asks of the dashboard, in a real browser (see
// tests/operator/dashboard.py). Mutations caught: the live stream not
// pushed on a status change (the kill check times out), the rollback form
// without its anti-forgery value or the confirmation, buttons shown to
// viewers, a forged POST accepted.
#[test]
fn the_dashboard_in_a_real_browser() {
    if !tools(&["/usr/bin/chromium", "/usr/bin/chromedriver", PYTHON]) {
        return;
    }
    let op = Operator::start(3);
    let deployer = op.token("oncall", "deployer");
    let viewer = op.token("phone", "viewer");
    let v2 = op.ctx.demo("env.glint", 3, "v2");
    op.ctx.ok(&["apply", v2.to_str().unwrap(), "--wait"]);
    op.ctx.wait_ready(3);
    let shots = std::env::var_os("GLINT_SCREENSHOTS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| op.ctx.dir.path().to_owned());
    std::fs::create_dir_all(&shots).unwrap();
    let out = std::process::Command::new(PYTHON)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/operator/dashboard.py"
        ))
        .arg(op.url())
        .arg(glint_bin())
        .arg(op.ctx.data())
        .arg(&deployer)
        .arg(&viewer)
        .arg(&shots)
        .env("HOME", op.ctx.dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}\nconductor:\n{}",
        String::from_utf8_lossy(&out.stderr),
        op.ctx.log("conductor")
    );
    eprintln!("{stdout}");
}

// Mutations caught: the question not asked on a terminal (or asked
// without one), an answer other than yes recording the rollback anyway.
#[test]
fn rollback_shows_its_plan_and_asks_on_a_terminal() {
    if !Path::new("/usr/bin/script").exists() {
        eprintln!("skipping: no /usr/bin/script to give the command a terminal");
        return;
    }
    let ctx = Ctx::new();
    let v1 = ctx.demo("env.glint", 1, "v1");
    ctx.ok(&["apply", v1.to_str().unwrap()]);
    let v2 = ctx.demo("env.glint", 1, "v2");
    ctx.ok(&["apply", v2.to_str().unwrap()]);
    let on_a_terminal = |answer: &str| {
        let mut c = std::process::Command::new("/usr/bin/script");
        c.args(["-qec", &format!("{} rollback 1", glint_bin()), "/dev/null"])
            .env("GLINT_DATA_DIR", ctx.data())
            .env("NO_COLOR", "1")
            .current_dir(ctx.dir.path())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped());
        let mut child = c.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(answer.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let versions = || {
        let h: Value = serde_json::from_str(&ctx.ok(&["history", "-o", "json"])).unwrap();
        h["versions"].as_array().unwrap().len()
    };
    let out = on_a_terminal("no\n");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Plan:") && text.contains("Type `yes`"),
        "{text}"
    );
    assert!(text.contains("rollback cancelled"), "{text}");
    assert_eq!(versions(), 2, "nothing recorded");
    let out = on_a_terminal("yes\n");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Recorded version 3"), "{text}");
    // Without a terminal nobody is asked; --yes skips the question.
    let out = ctx.ok(&["rollback", "2"]);
    assert!(
        out.contains("Recorded version 4") && !out.contains("Type `yes`"),
        "{out}"
    );
}

// Mutation caught: completions generated for another command name.
#[test]
fn completions_are_generated_for_every_shell() {
    let ctx = Ctx::new();
    for shell in ["bash", "zsh", "fish"] {
        let out = ctx.ok(&["completions", shell]);
        assert!(
            out.contains("glint") && out.contains("rollback") && out.contains("token"),
            "{shell}"
        );
    }
}
