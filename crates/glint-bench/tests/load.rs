//! The load generator against real HTTP servers started inside each test
//! (hyper 1 on 127.0.0.1:0): what it counts, how it classifies failures, how
//! it splits phases, and the `glint-load` binary's JSON report.

// Test code: a failed setup step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use glint_bench::control::follow_phase_file;
use glint_bench::load::{Config, Control, Progress, Target, run};
use glint_bench::report::{FailureKind, Report};
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

/// Generous bound for anything a test waits for.
const PATIENCE: Duration = Duration::from_secs(60);

/// What a test server answers to its `n`th request (from 0), given its label.
#[derive(Clone)]
struct Answer {
    status: u16,
    /// Sent as `x-glint-instance`.
    header: Option<String>,
    body: String,
}

type Handler = Arc<dyn Fn(u64, &str) -> Answer + Send + Sync>;

/// A real HTTP/1.1 server with counters and a gate that can hold requests.
struct Server {
    addr: SocketAddr,
    served: Arc<AtomicU64>,
    by_instance: Arc<Mutex<BTreeMap<String, u64>>>,
    by_status: Arc<Mutex<BTreeMap<u16, u64>>>,
    label: Arc<Mutex<String>>,
    hold: Arc<AtomicBool>,
    held: Arc<AtomicU64>,
    release: Arc<Notify>,
    task: JoinHandle<()>,
}

impl Server {
    async fn start(handler: Handler) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let served = Arc::new(AtomicU64::new(0));
        let by_instance = Arc::new(Mutex::new(BTreeMap::new()));
        let by_status = Arc::new(Mutex::new(BTreeMap::new()));
        let label = Arc::new(Mutex::new(String::from("A")));
        let hold = Arc::new(AtomicBool::new(false));
        let held = Arc::new(AtomicU64::new(0));
        let release = Arc::new(Notify::new());
        let next = Arc::new(AtomicU64::new(0));
        let task = {
            let (served, by_instance, by_status, label, hold, held, release) = (
                served.clone(),
                by_instance.clone(),
                by_status.clone(),
                label.clone(),
                hold.clone(),
                held.clone(),
                release.clone(),
            );
            tokio::spawn(async move {
                loop {
                    let (stream, _) = listener.accept().await.unwrap();
                    let (handler, served, by_instance, by_status, label, hold, held, release, next) = (
                        handler.clone(),
                        served.clone(),
                        by_instance.clone(),
                        by_status.clone(),
                        label.clone(),
                        hold.clone(),
                        held.clone(),
                        release.clone(),
                        next.clone(),
                    );
                    let service =
                        hyper::service::service_fn(move |_req: Request<hyper::body::Incoming>| {
                            let (
                                handler,
                                served,
                                by_instance,
                                by_status,
                                label,
                                hold,
                                held,
                                release,
                                next,
                            ) = (
                                handler.clone(),
                                served.clone(),
                                by_instance.clone(),
                                by_status.clone(),
                                label.clone(),
                                hold.clone(),
                                held.clone(),
                                release.clone(),
                                next.clone(),
                            );
                            async move {
                                // The label is the one current when the request arrived.
                                let label = label.lock().unwrap().clone();
                                if hold.load(Ordering::SeqCst) {
                                    let released = release.notified();
                                    held.fetch_add(1, Ordering::SeqCst);
                                    if hold.load(Ordering::SeqCst) {
                                        released.await;
                                    }
                                    held.fetch_sub(1, Ordering::SeqCst);
                                }
                                let n = next.fetch_add(1, Ordering::SeqCst);
                                let a = handler(n, &label);
                                let mut r = Response::builder().status(a.status);
                                if let Some(h) = &a.header {
                                    r = r.header("x-glint-instance", h.as_str());
                                }
                                let named = a.header.clone().or_else(|| {
                                    glint_bench::load::instance_in_body(a.body.as_bytes())
                                });
                                if let Some(i) = named {
                                    *by_instance.lock().unwrap().entry(i).or_default() += 1;
                                }
                                *by_status.lock().unwrap().entry(a.status).or_default() += 1;
                                served.fetch_add(1, Ordering::SeqCst);
                                Ok::<_, std::convert::Infallible>(
                                    r.body(Full::new(Bytes::from(a.body))).unwrap(),
                                )
                            }
                        });
                    tokio::spawn(async move {
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            })
        };
        Server {
            addr,
            served,
            by_instance,
            by_status,
            label,
            hold,
            held,
            release,
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    fn served(&self) -> u64 {
        self.served.load(Ordering::SeqCst)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Waits (at most [`PATIENCE`]) until `f` holds.
async fn until(what: &str, f: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A run in the background, stopped by [`Running::stop`].
struct Running {
    stop: watch::Sender<bool>,
    progress: Arc<Progress>,
    task: JoinHandle<Report>,
    _phase: Option<watch::Sender<Arc<str>>>,
}

impl Running {
    fn start(config: Config) -> Running {
        let (phase_tx, phase_rx) = watch::channel(Arc::from("main"));
        let mut r = Running::with_phase(config, phase_rx);
        r._phase = Some(phase_tx);
        r
    }

    fn with_phase(config: Config, phase: watch::Receiver<Arc<str>>) -> Running {
        let (stop, stop_rx) = watch::channel(false);
        let control = Control::new(phase, stop_rx);
        let progress = control.progress.clone();
        let task = tokio::spawn(async move { run(config, control).await.unwrap() });
        Running {
            stop,
            progress,
            task,
            _phase: None,
        }
    }

    fn failed(&self) -> u64 {
        self.progress.failed.load(Ordering::SeqCst)
    }

    async fn stop(self) -> Report {
        self.stop.send(true).unwrap();
        tokio::time::timeout(PATIENCE, self.task)
            .await
            .unwrap()
            .unwrap()
    }
}

fn config(url: &str, concurrency: usize) -> Config {
    Config::new(Target::parse(url).unwrap(), concurrency)
}

/// Checks what every report must satisfy, whatever happened.
fn consistent(r: &Report) {
    assert_eq!(r.total.requests, r.total.ok + r.total.failed);
    assert_eq!(
        r.total.latency.count, r.total.ok,
        "latency counts successes only"
    );
    let phases: u64 = r.phases.iter().map(|p| p.requests).sum();
    assert_eq!(
        phases, r.total.requests,
        "every request is in exactly one phase"
    );
    let ok: u64 = r.series.iter().map(|s| s.ok).sum();
    let failed: u64 = r.series.iter().map(|s| s.failed).sum();
    assert_eq!(
        (ok, failed),
        (r.total.ok, r.total.failed),
        "the series covers every request"
    );
    assert_eq!(
        r.failures.len() as u64 + r.failures_dropped,
        r.total.failed,
        "every failure is logged or counted as dropped"
    );
    let by_kind: u64 = r.total.failure_kinds.values().sum();
    assert_eq!(by_kind, r.total.failed);
}

#[tokio::test]
async fn counts_every_request_and_the_instance_that_answered_it() {
    // Three instances; the third names itself only in the body, like the demo app.
    let server = Server::start(Arc::new(|n, _| {
        let id = format!("web-{}", ["a", "b", "c"][(n % 3) as usize]);
        Answer {
            status: 200,
            header: (n % 3 != 2).then(|| id.clone()),
            body: format!("hello from {id} (service web, version 1)\n"),
        }
    }))
    .await;
    let running = Running::start(config(&server.url(), 4));
    until("300 requests were served", || server.served() >= 300).await;
    let r = running.stop().await;
    consistent(&r);
    assert_eq!(
        r.total.ok,
        server.served(),
        "every served request is counted once"
    );
    assert_eq!(r.total.failed, 0);
    assert_eq!(
        r.total.statuses,
        BTreeMap::from([("200".to_owned(), r.total.ok)])
    );
    assert_eq!(r.total.distinct_instances, 3);
    let seen: Vec<&String> = r.seen.keys().collect();
    assert_eq!(seen, r.total.instances.keys().collect::<Vec<_>>());
    assert_eq!(r.total.instances, *server.by_instance.lock().unwrap());
    assert_eq!(r.phases.len(), 1);
    assert_eq!(r.phases[0].name, "main");
    assert!(r.total.latency.p50_ms > 0.0 && r.total.latency.p50_ms <= r.total.latency.p99_ms);
    assert!(r.total.latency.p99_ms <= r.total.latency.max_ms);
}

#[tokio::test]
async fn non_2xx_answers_are_failures_with_their_status() {
    let server = Server::start(Arc::new(|n, _| Answer {
        status: if n % 4 == 0 { 500 } else { 200 },
        header: Some("web-a".into()),
        body: "x".into(),
    }))
    .await;
    let running = Running::start(config(&server.url(), 3));
    until("200 requests were served", || server.served() >= 200).await;
    let r = running.stop().await;
    consistent(&r);
    let statuses = server.by_status.lock().unwrap().clone();
    assert_eq!(r.total.failed, statuses[&500]);
    assert_eq!(r.total.ok, statuses[&200]);
    assert_eq!(r.total.statuses["500"], statuses[&500]);
    assert_eq!(
        r.total.failure_reasons,
        BTreeMap::from([(
            "status: 500 Internal Server Error".to_owned(),
            statuses[&500]
        )])
    );
    assert!(r.failures.iter().all(|f| f.kind == FailureKind::Status
        && f.status == Some(500)
        && f.instance.as_deref() == Some("web-a")
        && f.phase == "main"));
    assert!(
        r.failures.windows(2).all(|w| w[0].t_ms <= w[1].t_ms),
        "failure log in time order"
    );
    // A failure's wall-clock time lies within the run.
    let end = r.started_at_ms + (r.duration_s * 1000.0) as u64 + 1;
    assert!(
        r.failures
            .iter()
            .all(|f| f.at_ms >= r.started_at_ms && f.at_ms <= end)
    );
}

#[tokio::test]
async fn a_closed_port_is_a_connect_failure() {
    let addr = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let running = Running::start(config(&format!("http://{addr}/"), 2));
    until("20 requests failed", || running.failed() >= 20).await;
    let r = running.stop().await;
    consistent(&r);
    assert_eq!(r.total.ok, 0);
    assert!(r.total.failed >= 20);
    assert_eq!(
        r.total.failure_kinds.keys().collect::<Vec<_>>(),
        ["connect"]
    );
    assert!(
        r.failures
            .iter()
            .all(|f| f.reason.to_lowercase().contains("refused")),
        "{:?}",
        r.failures.first()
    );
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    // Accepts connections and reads nothing.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let keep = tokio::spawn(async move {
        let mut open = Vec::new();
        loop {
            let (s, _) = listener.accept().await.unwrap();
            open.push(s);
        }
    });
    let mut c = config(&format!("http://{addr}/"), 2);
    c.timeout = Duration::from_millis(200);
    let running = Running::start(c);
    until("4 requests failed", || running.failed() >= 4).await;
    let r = running.stop().await;
    keep.abort();
    consistent(&r);
    assert_eq!(r.total.ok, 0);
    assert_eq!(
        r.total.failure_kinds.keys().collect::<Vec<_>>(),
        ["timeout"]
    );
    assert!(r.failures.iter().all(|f| f.latency_ms >= 200.0));
}

#[tokio::test]
async fn a_connection_closed_before_the_answer_is_a_request_failure() {
    // Reads the request, then closes without answering: the request was sent,
    // so it is a failure, never silently sent again.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
            });
        }
    });
    let running = Running::start(config(&format!("http://{addr}/"), 2));
    until("10 requests failed", || running.failed() >= 10).await;
    let r = running.stop().await;
    server.abort();
    consistent(&r);
    assert_eq!(r.total.ok, 0);
    assert_eq!(
        r.total.failure_kinds.keys().collect::<Vec<_>>(),
        ["request"]
    );
    assert_eq!(r.resent_unsent, 0);
}

/// Moves the run to `phase` at a clean boundary: holds the server so that
/// every worker waits inside a request, switches the server's label and the
/// phase file, waits until the generator sees the new phase, and releases.
async fn switch(
    server: &Server,
    workers: u64,
    file: &Path,
    seen: &mut watch::Receiver<Arc<str>>,
    phase: &str,
    label: &str,
) {
    server.hold.store(true, Ordering::SeqCst);
    until("every worker waits in a request", || {
        server.held.load(Ordering::SeqCst) == workers
    })
    .await;
    *server.label.lock().unwrap() = label.to_owned();
    std::fs::write(file, format!("{phase}\n")).unwrap();
    tokio::time::timeout(PATIENCE, seen.wait_for(|p| &**p == phase))
        .await
        .unwrap()
        .unwrap();
    server.hold.store(false, Ordering::SeqCst);
    server.release.notify_waiters();
}

#[tokio::test]
async fn phases_split_requests_by_when_they_were_sent() {
    let server = Server::start(Arc::new(|_, label| Answer {
        status: 200,
        header: Some(label.to_owned()),
        body: "x".into(),
    }))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("phase");
    std::fs::write(&file, "before").unwrap();
    let (tx, rx) = watch::channel(Arc::from("before"));
    let mut seen = rx.clone();
    tokio::spawn(follow_phase_file(file.clone(), tx));
    let workers = 2;
    let running = Running::with_phase(config(&server.url(), workers as usize), rx);

    let mut mark = 0;
    for (phase, label) in [("during", "B"), ("after", "C"), ("before", "D")] {
        until("50 more requests were served", || {
            server.served() >= mark + 50
        })
        .await;
        switch(&server, workers, &file, &mut seen, phase, label).await;
        mark = server.served();
    }
    until("50 more requests were served", || {
        server.served() >= mark + 50
    })
    .await;
    let r = running.stop().await;
    consistent(&r);
    assert_eq!(r.total.ok, server.served());
    let names: Vec<&str> = r.phases.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        ["before", "during", "after"],
        "in the order first entered"
    );
    let instances =
        |name: &str| -> Vec<String> { r.phase(name).unwrap().instances.keys().cloned().collect() };
    // Requests sent before a switch were answered by the old label (they
    // arrived before it changed), those sent after by the new one.
    assert_eq!(instances("before"), ["A", "D"]);
    assert_eq!(instances("during"), ["B"]);
    assert_eq!(instances("after"), ["C"]);
    for p in &r.phases {
        assert!(p.ok >= 50, "{} has {} requests", p.name, p.ok);
        assert_eq!(p.failed, 0);
    }
    let time: f64 = r.phases.iter().map(|p| p.time_s).sum();
    assert!(
        (time - r.duration_s).abs() < 1e-6,
        "phase times add up: {time} vs {}",
        r.duration_s
    );
    let during = r.phase("during").unwrap();
    let after = r.phase("after").unwrap();
    assert!(during.started_s < after.started_s);
    assert!(r.phase("before").unwrap().started_s == 0.0);
}

#[tokio::test]
async fn a_rate_limit_spaces_requests_out() {
    let server = Server::start(Arc::new(|_, _| Answer {
        status: 200,
        header: None,
        body: "x".into(),
    }))
    .await;
    let mut c = config(&server.url(), 4);
    c.rate = Some(50.0);
    let start = tokio::time::Instant::now();
    let running = Running::start(c);
    until("26 requests were served", || server.served() >= 26).await;
    // The 26th request cannot be sent before 25/50 s: a lower bound, which a
    // loaded machine only makes easier to meet.
    assert!(
        start.elapsed() >= Duration::from_millis(500),
        "{:?}",
        start.elapsed()
    );
    let r = running.stop().await;
    consistent(&r);
    assert_eq!(r.total.ok, server.served());
}

#[tokio::test]
async fn without_keepalive_every_request_has_its_own_connection() {
    let server = Server::start(Arc::new(|_, _| Answer {
        status: 200,
        header: None,
        body: "x".into(),
    }))
    .await;
    let connections = Arc::new(AtomicU64::new(0));
    // A forwarder in front of the server counts connections.
    let front = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let front_addr = front.local_addr().unwrap();
    let back = server.addr;
    let counted = connections.clone();
    let forward = tokio::spawn(async move {
        loop {
            let (mut inbound, _) = front.accept().await.unwrap();
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut outbound = tokio::net::TcpStream::connect(back).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            });
        }
    });
    let mut c = config(&format!("http://{front_addr}/"), 2);
    c.keepalive = false;
    let running = Running::start(c);
    until("40 requests were served", || server.served() >= 40).await;
    let r = running.stop().await;
    forward.abort();
    consistent(&r);
    assert_eq!(r.total.failed, 0);
    assert_eq!(connections.load(Ordering::SeqCst), r.total.requests);
}

#[tokio::test]
async fn the_binary_prints_a_json_report_and_stops_when_the_until_file_appears() {
    let server = Server::start(Arc::new(|n, label| Answer {
        status: if n == 5 { 503 } else { 200 },
        header: Some(format!("web-{label}")),
        body: "x".into(),
    }))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let phase = dir.path().join("phase");
    let stop = dir.path().join("stop");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_glint-load"))
        .args([
            "--url",
            &server.url(),
            "--concurrency",
            "2",
            "--json",
            "--phase",
            "warmup",
        ])
        .arg("--phase-file")
        .arg(&phase)
        .arg("--until-file")
        .arg(&stop)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Stderr, line by line, as the binary writes it.
    let (line_tx, mut lines) = tokio::sync::mpsc::unbounded_channel::<String>();
    let stderr = child.stderr.take().unwrap();
    let reader = tokio::spawn(async move {
        use tokio::io::AsyncBufReadExt;
        let mut all = String::new();
        let mut stderr = tokio::io::BufReader::new(stderr).lines();
        while let Ok(Some(line)) = stderr.next_line().await {
            all.push_str(&line);
            all.push('\n');
            let _ = line_tx.send(line);
        }
        all
    });
    until("30 requests were served", || server.served() >= 30).await;
    std::fs::write(&phase, "load").unwrap();
    tokio::time::timeout(PATIENCE, async {
        while let Some(line) = lines.recv().await {
            if line.starts_with("glint-load: phase load at ") {
                return;
            }
        }
        panic!("stderr ended before the phase change was reported");
    })
    .await
    .unwrap();
    // At most 2 requests sent before the change are still in flight.
    let mark = server.served();
    until("32 more requests were served", || {
        server.served() >= mark + 32
    })
    .await;
    std::fs::write(&stop, "").unwrap();
    let out = tokio::time::timeout(PATIENCE, child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stderr = reader.await.unwrap();
    assert!(out.status.success(), "{stderr}");
    let r: Report = serde_json::from_slice(&out.stdout).unwrap();
    consistent(&r);
    assert_eq!(r.total.requests, server.served());
    assert_eq!(r.total.failed, 1);
    assert_eq!(r.failures[0].status, Some(503));
    let names: Vec<&str> = r.phases.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["warmup", "load"]);
    assert!(r.phase("warmup").unwrap().requests >= 30);
    assert!(r.phase("load").unwrap().requests >= 30);
    assert!(
        stderr.contains("status: 503 Service Unavailable"),
        "{stderr}"
    );
}

#[test]
fn targets_parse_from_urls() {
    let t = Target::parse("http://127.0.0.1:8080/healthz?x=1").unwrap();
    assert_eq!(
        (
            t.host.as_str(),
            t.port,
            t.authority.as_str(),
            t.path.as_str()
        ),
        ("127.0.0.1", 8080, "127.0.0.1:8080", "/healthz?x=1")
    );
    let t = Target::parse("http://localhost").unwrap();
    assert_eq!((t.port, t.path.as_str()), (80, "/"));
    let t = Target::parse("http://[::1]:9000/").unwrap();
    assert_eq!((t.host.as_str(), t.port), ("::1", 9000));
    for bad in ["https://x/", "127.0.0.1:8080", "/path", "http://"] {
        assert!(Target::parse(bad).is_err(), "{bad} should be refused");
    }
}

#[test]
fn the_demo_body_names_its_instance() {
    use glint_bench::load::instance_in_body;
    assert_eq!(
        instance_in_body(b"hello from web-3f2a (service web, version 2)\n").as_deref(),
        Some("web-3f2a")
    );
    assert_eq!(instance_in_body(b"ok\n"), None);
}

#[tokio::test]
async fn phases_named_group_slash_part_are_also_summed_by_group() {
    let server = Server::start(Arc::new(|_, label| Answer {
        status: 200,
        header: Some(label.to_owned()),
        body: "x".into(),
    }))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("phase");
    std::fs::write(&file, "before/1").unwrap();
    let (tx, rx) = watch::channel(Arc::from("before/1"));
    let mut seen = rx.clone();
    tokio::spawn(follow_phase_file(file.clone(), tx));
    let workers = 3;
    let running = Running::with_phase(config(&server.url(), workers as usize), rx);
    let mut mark = 0;
    for (phase, label) in [("during/1", "B"), ("before/2", "C"), ("during/2", "D")] {
        until("30 more requests were served", || {
            server.served() >= mark + 30
        })
        .await;
        switch(&server, workers, &file, &mut seen, phase, label).await;
        mark = server.served();
    }
    until("30 more requests were served", || {
        server.served() >= mark + 30
    })
    .await;
    let r = running.stop().await;
    consistent(&r);
    let names: Vec<&str> = r.groups.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(names, ["before", "during"]);
    for group in &r.groups {
        let parts: Vec<_> = r
            .phases
            .iter()
            .filter(|p| p.name.starts_with(&format!("{}/", group.name)))
            .collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(
            group.requests,
            parts.iter().map(|p| p.requests).sum::<u64>()
        );
        assert_eq!(
            group.latency.count,
            parts.iter().map(|p| p.latency.count).sum::<u64>()
        );
        assert_eq!(group.started_s, parts[0].started_s);
    }
    let keys = |g: &str| -> Vec<&str> {
        let g = r.groups.iter().find(|x| x.name == g).unwrap();
        g.instances.keys().map(String::as_str).collect()
    };
    assert_eq!(keys("before"), ["A", "C"]);
    assert_eq!(keys("during"), ["B", "D"]);
    // Each label first answered once its phase had begun (a label's first
    // request is sent only after the previous label served 30).
    let s = |i: &str| r.seen[i].clone();
    assert_eq!(r.seen.len(), 4);
    assert!(s("A").first_t_ms < s("B").first_t_ms);
    assert!(s("B").first_t_ms < s("C").first_t_ms);
    assert!(s("C").first_t_ms < s("D").first_t_ms);
    assert!(r.seen.values().all(|x| x.first_t_ms <= x.last_t_ms));
    assert!(s("A").first_at_ms >= r.started_at_ms);
    assert!(s("D").first_at_ms <= s("D").last_at_ms);
}
