//! `notify` sinks, tried for real: the real conductor (`glint conductor`)
//! sends a failed rollout and its automatic rollback to an HTTP receiver
//! on loopback in this test, signed per Standard Webhooks (verified here
//! with Python's `hmac`, an implementation independent of Glint's);
//! a 503 with `Retry-After` is retried and the message delivered once; a
//! conductor killed with a message pending delivers it after a restart,
//! without enqueueing anything twice; a 400 fails for good, is counted and
//! shown.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Ctx;
use serde_json::Value;
use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request the receiver got, and what it answered.
#[derive(Debug, Clone)]
struct Got {
    path: String,
    headers: BTreeMap<String, String>,
    body: String,
    answered: u16,
}

/// A plain HTTP/1.1 receiver: answers from a script (status, extra
/// headers), then with `then` once the script is used up.
#[derive(Clone)]
struct Receiver {
    addr: SocketAddr,
    got: Arc<Mutex<Vec<Got>>>,
    script: Arc<Mutex<VecDeque<(u16, &'static str)>>>,
    then: Arc<Mutex<u16>>,
}

impl Receiver {
    fn start(script: &[(u16, &'static str)], then: u16) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let r = Receiver {
            addr: listener.local_addr().unwrap(),
            got: Arc::default(),
            script: Arc::new(Mutex::new(script.iter().copied().collect())),
            then: Arc::new(Mutex::new(then)),
        };
        let me = r.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() || line.is_empty() {
                    continue;
                }
                let path = line.split(' ').nth(1).unwrap_or("").to_owned();
                let mut headers = BTreeMap::new();
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
                        break;
                    }
                    if let Some((k, v)) = h.split_once(':') {
                        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
                    }
                }
                let len: usize = headers
                    .get("content-length")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                let mut body = vec![0; len];
                if reader.read_exact(&mut body).is_err() {
                    continue;
                }
                let (status, extra) = me
                    .script
                    .lock()
                    .unwrap()
                    .pop_front()
                    .unwrap_or((*me.then.lock().unwrap(), ""));
                let _ = write!(
                    conn,
                    "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n{extra}\r\n"
                );
                me.got.lock().unwrap().push(Got {
                    path,
                    headers,
                    body: String::from_utf8_lossy(&body).into_owned(),
                    answered: status,
                });
            }
        });
        r
    }

    fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }

    /// Waits (up to 60 s) until `cond` holds for what was received.
    fn wait(&self, what: &str, cond: impl Fn(&[Got]) -> bool) -> Vec<Got> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let got = self.got();
            if cond(&got) {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; received: {got:#?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn accepted_types(got: &[Got]) -> Vec<String> {
    got.iter()
        .filter(|g| g.answered == 200)
        .map(|g| {
            serde_json::from_str::<Value>(&g.body).unwrap()["type"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        })
        .collect()
}

/// The Standard Webhooks signature of a request, computed by Python's
/// `hmac` (not by Glint's code).
fn python_signature(key: &str, id: &str, timestamp: &str, body: &str) -> String {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import base64,hashlib,hmac,sys; k,i,t=sys.argv[1:4]; b=sys.stdin.buffer.read(); \
             print('v1,'+base64.b64encode(hmac.new(k.encode(),f'{i}.{t}.'.encode()+b,hashlib.sha256).digest()).decode())",
            key,
            id,
            timestamp,
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(body.as_bytes())?;
            c.wait_with_output()
        })
        .expect("python3 runs");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn notify_block(name: &str, receiver: &Receiver, extra: &str) -> String {
    format!(
        "notify \"{name}\" {{\n  url = \"http://{}/hooks/{name}\"\n{extra}\n}}\n",
        receiver.addr
    )
}

/// A good version, then one that is never healthy: its rollout fails and
/// is rolled back automatically. Returns the path of the file.
fn fail_a_rollout(ctx: &Ctx, preamble: &str) {
    let file = ctx.demo_full("app.glint", preamble, 1, &[("GREETING", "good")], "");
    ctx.ok(&["apply", file.to_str().unwrap(), "--wait"]);
    ctx.demo_full(
        "app.glint",
        preamble,
        1,
        &[("GREETING", "bad"), ("HEALTHY", "false")],
        "",
    );
    let out = ctx.run(&["apply", file.to_str().unwrap(), "--wait"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "the rollout fails: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn notifications(ctx: &Ctx) -> Value {
    serde_json::from_str(&ctx.ok(&["notifications", "-o", "json"])).unwrap()
}

// Mutations caught: a sink's unset key accepted, no signature or a wrong one (key, id, timestamp or
// body), a webhook-id that changes between attempts, a 503 not retried or
// retried before its Retry-After, a message delivered twice, a manual
// or a routine event reported, the secret's value in a payload.
#[test]
fn a_failed_rollout_and_its_rollback_are_delivered_signed_once_after_a_503() {
    let mut ctx = Ctx::new();
    let key = "glint-test-signing-key";
    let receiver = Receiver::start(&[(503, "retry-after: 2\r\n")], 200);
    let preamble = notify_block("ops", &receiver, "  secret = \"ops/hook\"");
    // A sink whose key is not set is refused before anything is recorded.
    let file = ctx.demo_full("app.glint", &preamble, 1, &[], "");
    let out = ctx.run(&["apply", file.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("`glint secret set ops/hook`"), "{err}");
    let set = ctx.set_secret("ops/hook", key, &[]);
    assert!(set.status.success(), "{set:?}");
    ctx.spawn("conductor", &["conductor"]);
    fail_a_rollout(&ctx, &preamble);

    let got = receiver.wait("the failed rollout and the rollback accepted", |g| {
        accepted_types(g).len() >= 2
    });
    assert_eq!(
        accepted_types(&got),
        vec!["glint.rollout_failed", "glint.rollback"],
        "in order, each once: {got:#?}"
    );
    assert_eq!(got[0].answered, 503);
    assert_eq!(got[1].answered, 200);
    assert_eq!(
        got[0].headers["webhook-id"], got[1].headers["webhook-id"],
        "the retry carries the same message id"
    );
    let t0: i64 = got[0].headers["webhook-timestamp"].parse().unwrap();
    let t1: i64 = got[1].headers["webhook-timestamp"].parse().unwrap();
    assert!(t1 - t0 >= 2, "Retry-After: 2 honoured ({t0} → {t1})");
    assert_ne!(got[1].headers["webhook-id"], got[2].headers["webhook-id"]);
    for g in &got {
        assert_eq!(g.path, "/hooks/ops");
        assert_eq!(g.headers["content-type"], "application/json");
        let expected = python_signature(
            key,
            &g.headers["webhook-id"],
            &g.headers["webhook-timestamp"],
            &g.body,
        );
        assert_eq!(g.headers["webhook-signature"], expected, "{g:#?}");
        assert_ne!(
            python_signature(
                "another-key",
                &g.headers["webhook-id"],
                &g.headers["webhook-timestamp"],
                &g.body
            ),
            expected
        );
        assert!(!g.body.contains(key), "no secret in a payload");
    }
    let failed: Value = serde_json::from_str(&got[1].body).unwrap();
    assert_eq!(failed["data"]["event"]["kind"], "rollout.failed");
    assert_eq!(failed["data"]["event"]["version"], 2);
    assert_eq!(failed["data"]["environment"], "app");
    let rollback: Value = serde_json::from_str(&got[2].body).unwrap();
    assert_eq!(rollback["data"]["event"]["kind"], "version.rolled_back");
    assert_eq!(rollback["data"]["event"]["version"], 3);

    // The outbox shows what was sent.
    let n = notifications(&ctx);
    let list = n["notifications"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{n:#}");
    assert!(list.iter().all(|m| m["state"] == "delivered"), "{n:#}");
    let attempts: Vec<u64> = list
        .iter()
        .map(|m| m["attempts"].as_u64().unwrap())
        .collect();
    assert_eq!(attempts, vec![1, 2], "newest first: {n:#}");
}

// Mutations caught: the outbox or the cursor kept in memory only (a
// restarted conductor loses or re-enqueues messages), a 400 retried or not
// counted, a permanent failure that is not shown.
#[test]
fn a_pending_message_survives_a_conductor_kill_and_a_400_fails_for_good() {
    let mut ctx = Ctx::new();
    let ops = Receiver::start(&[], 503);
    let refusing = Receiver::start(&[], 400);
    let preamble = format!(
        "{}{}",
        notify_block("ops", &ops, "  on = [rollback]"),
        notify_block(
            "refusing",
            &refusing,
            "  format = slack\n  on = [rollout_failed]"
        )
    );
    let first = ctx.spawn("conductor", &["conductor"]);
    fail_a_rollout(&ctx, &preamble);
    ops.wait("a refused attempt at the rollback", |g| !g.is_empty());
    let failed = refusing.wait("the rollout failure refused", |g| !g.is_empty());
    let text = serde_json::from_str::<Value>(&failed[0].body).unwrap()["text"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    assert!(
        text.starts_with("[app] rollout of version 2 failed"),
        "a Slack text: {failed:#?}"
    );
    // SAFETY: kill(2) of the conductor this test started.
    unsafe {
        libc::kill(first as i32, libc::SIGKILL);
    }
    std::thread::sleep(Duration::from_millis(500));
    let n = notifications(&ctx);
    let pending: Vec<&Value> = n["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["sink"] == "ops")
        .collect();
    assert_eq!(pending.len(), 1, "{n:#}");
    assert_eq!(pending[0]["state"], "pending", "{n:#}");

    *ops.then.lock().unwrap() = 200;
    ctx.spawn("conductor-2", &["conductor"]);
    let got = ops.wait("the rollback delivered after the restart", |g| {
        g.iter().any(|x| x.answered == 200)
    });
    let ids: Vec<&String> = got.iter().map(|g| &g.headers["webhook-id"]).collect();
    assert!(ids.iter().all(|i| *i == ids[0]), "one message: {got:#?}");
    assert_eq!(accepted_types(&got), vec!["glint.rollback"]);

    let n = notifications(&ctx);
    let list = n["notifications"].as_array().unwrap();
    assert_eq!(list.len(), 2, "nothing enqueued twice: {n:#}");
    let by_sink: BTreeMap<&str, &Value> = list
        .iter()
        .map(|m| (m["sink"].as_str().unwrap(), m))
        .collect();
    assert_eq!(by_sink["ops"]["state"], "delivered");
    assert_eq!(by_sink["refusing"]["state"], "failed");
    assert_eq!(by_sink["refusing"]["attempts"], 1, "a 400 is not retried");
    assert!(
        by_sink["refusing"]["last_error"]
            .as_str()
            .unwrap()
            .contains("status 400"),
        "{n:#}"
    );
    assert_eq!(refusing.got().len(), 1, "{:#?}", refusing.got());
    let counts = &n["counts"];
    assert!(
        counts
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["sink"] == "refusing" && c["failed"] == 1),
        "{counts:#}"
    );
    let s = ctx.wait_status("the failure shown", |s| {
        s["conductor"]["problems"].as_array().is_some_and(|p| {
            p.iter().any(|x| {
                x.as_str()
                    .unwrap_or("")
                    .contains("notify refusing: 1 notification(s) failed for good")
            })
        })
    });
    assert!(s["conductor"]["problems"].is_array());
    let events: Value =
        serde_json::from_str(&ctx.ok(&["events", "-n", "1000", "-o", "json"])).unwrap();
    assert!(
        events["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "notification.failed"),
        "a notification.failed event"
    );
}
