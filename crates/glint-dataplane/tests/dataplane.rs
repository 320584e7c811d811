//! The data plane, tested with real sockets: the `LocalDataPlane` contract,
//! the reconciler against it, and the process side (`run`) reached through
//! its unix socket with `RemoteDataPlane` — including a handoff between two
//! data planes under load. (The real `glint dataplane` process, detached and
//! adopted by a real conductor, is tested in `glint-cli/tests/dataplane.rs`.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../glint-proxy/tests/support/mod.rs"]
mod support;

use glint_dataplane::{
    DataPlane, DataPlaneError, Desired, DesiredEndpoint, EndpointConfig, EndpointEvent,
    EndpointSpec, LocalDataPlane, ProcessConfig, Reconciler, RemoteDataPlane,
};
use glint_model::{EndpointProtocol, Name};
use hyper::StatusCode;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use support::*;

fn name(s: &str) -> Name {
    Name::new(s).unwrap()
}

fn spec(endpoint: &str, listen: SocketAddr) -> EndpointSpec {
    EndpointSpec {
        config: EndpointConfig::new(name(endpoint), listen, EndpointProtocol::Http),
        service: name("web"),
    }
}

fn any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// A free port on loopback (released before returning).
fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

async fn listening(plane: &dyn DataPlane, endpoint: &str) -> SocketAddr {
    let state = plane.state().await.unwrap();
    state
        .endpoint(&name(endpoint))
        .and_then(|e| e.listening)
        .unwrap_or_else(|| panic!("{endpoint} does not listen: {state:#?}"))
}

// ---------------------------------------------------------------------------
// The LocalDataPlane contract

#[tokio::test]
async fn endpoints_are_bound_closed_and_rebound_as_the_whole_set_says() {
    let plane = LocalDataPlane::new("store");
    let a = TestBackend::start("a").await;
    let applied = plane
        .set_endpoints(
            1,
            vec![spec("public", any_port()), spec("admin", any_port())],
        )
        .await
        .unwrap();
    assert!(applied.applied);
    assert!(applied.endpoints.iter().all(|e| e.listening.is_some()));
    assert!(
        plane
            .set_backends(&name("public"), 1, vec![a.backend()])
            .await
            .unwrap()
    );
    let public = listening(&plane, "public").await;
    let admin = listening(&plane, "admin").await;
    assert_eq!(get_once(public, "/").await.unwrap().status, StatusCode::OK);

    // A stale set changes nothing.
    let stale = plane.set_endpoints(0, vec![]).await.unwrap();
    assert!(!stale.applied);
    assert_eq!(stale.endpoints.len(), 2);
    assert_eq!(get_once(public, "/").await.unwrap().status, StatusCode::OK);

    // `admin` is gone from the set: closed. `public` is kept, with its backends.
    let applied = plane
        .set_endpoints(2, vec![spec("public", any_port())])
        .await
        .unwrap();
    assert_eq!(applied.endpoints.len(), 1);
    eventually("admin to stop listening", || {
        std::net::TcpStream::connect(admin).is_err()
    })
    .await;
    assert_eq!(
        listening(&plane, "public").await,
        public,
        "kept, not rebound"
    );
    assert_eq!(get_once(public, "/").await.unwrap().status, StatusCode::OK);

    // A moved endpoint listens on its new address only.
    let moved = free_port();
    plane
        .set_endpoints(3, vec![spec("public", moved)])
        .await
        .unwrap();
    assert_eq!(listening(&plane, "public").await, moved);
    assert_eq!(
        get_once(moved, "/").await.unwrap().status,
        StatusCode::OK,
        "backends kept"
    );
    eventually("the old address to be closed", || {
        std::net::TcpStream::connect(public).is_err()
    })
    .await;
    let state = plane.state().await.unwrap();
    assert_eq!(state.generation, Some(3));
}

#[tokio::test]
async fn an_endpoint_that_cannot_bind_is_reported_and_retried_by_an_equal_generation() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let plane = LocalDataPlane::new("store");
    let a = TestBackend::start("a").await;
    let applied = plane
        .set_endpoints(1, vec![spec("public", addr)])
        .await
        .unwrap();
    let report = &applied.endpoints[0];
    assert!(report.listening.is_none());
    let error = report.error.as_deref().unwrap();
    assert!(
        error.contains("`public`") && error.contains("another process"),
        "{error}"
    );
    // Backends given meanwhile are kept for when it binds.
    assert!(
        plane
            .set_backends(&name("public"), 4, vec![a.backend()])
            .await
            .unwrap()
    );
    drop(taken);
    let applied = plane
        .set_endpoints(1, vec![spec("public", addr)])
        .await
        .unwrap();
    assert!(applied.applied, "an equal generation is applied again");
    assert_eq!(applied.endpoints[0].listening, Some(addr));
    assert_eq!(applied.endpoints[0].error, None);
    let reply = get_once(addr, "/").await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(applied.endpoints[0].generation, Some(4));
}

#[tokio::test]
async fn backend_sets_follow_their_generations_per_endpoint() {
    let plane = LocalDataPlane::new("store");
    let (a, b) = (TestBackend::start("a").await, TestBackend::start("b").await);
    plane
        .set_endpoints(1, vec![spec("public", any_port())])
        .await
        .unwrap();
    let addr = listening(&plane, "public").await;
    assert!(
        plane
            .set_backends(&name("public"), 5, vec![a.backend()])
            .await
            .unwrap()
    );
    assert!(
        !plane
            .set_backends(&name("public"), 4, vec![b.backend()])
            .await
            .unwrap()
    );
    assert_eq!(get_once(addr, "/").await.unwrap().text(), "a");
    assert!(
        plane
            .set_backends(&name("public"), 5, vec![b.backend()])
            .await
            .unwrap()
    );
    assert_eq!(get_once(addr, "/").await.unwrap().text(), "b");
    let unknown = plane.set_backends(&name("nope"), 1, vec![]).await;
    assert!(matches!(unknown, Err(DataPlaneError::UnknownEndpoint(n)) if n.as_str() == "nope"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_setting_restarts_an_endpoint_on_its_socket_without_a_failed_request() {
    let plane = Arc::new(LocalDataPlane::new("store"));
    let (a, b) = (TestBackend::start("a").await, TestBackend::start("b").await);
    let before = spec("public", free_port());
    plane.set_endpoints(1, vec![before.clone()]).await.unwrap();
    plane
        .set_backends(&name("public"), 1, vec![a.backend(), b.backend()])
        .await
        .unwrap();
    let addr = listening(plane.as_ref(), "public").await;
    let (stop, load) = load(addr, 4);
    eventually("traffic", || a.requests() + b.requests() > 50).await;
    let mut after = before.clone();
    after.config.response_timeout = Duration::from_secs(3);
    plane.set_endpoints(2, vec![after.clone()]).await.unwrap();
    let served = a.requests() + b.requests();
    eventually("traffic after the change", || {
        a.requests() + b.requests() > served + 50
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    let (ok, failures) = patiently("load", load).await.unwrap();
    assert!(failures.is_empty(), "{failures:?}");
    assert!(ok > 100);
    let state = plane.state().await.unwrap();
    assert_eq!(state.endpoints[0].spec, after);
    assert_eq!(state.endpoints[0].listening, Some(addr));
    assert_eq!(state.endpoints[0].backends.len(), 2, "backends kept");
}

#[tokio::test]
async fn a_drain_covers_every_endpoint_and_awaits_what_is_in_flight() {
    let plane = Arc::new(LocalDataPlane::new("store"));
    let a = TestBackend::start("a").await;
    plane
        .set_endpoints(1, vec![spec("one", any_port()), spec("two", any_port())])
        .await
        .unwrap();
    for e in ["one", "two"] {
        plane
            .set_backends(&name(e), 1, vec![a.backend()])
            .await
            .unwrap();
    }
    let (one, two) = (
        listening(plane.as_ref(), "one").await,
        listening(plane.as_ref(), "two").await,
    );
    let slow1 = tokio::spawn(get_once(one, "/sleep/300"));
    let slow2 = tokio::spawn(get_once(two, "/sleep/300"));
    eventually("both requests at a", || a.active() == 2).await;
    let report = plane.drain(&a.instance(), PATIENCE).await.unwrap();
    assert!(report.found);
    assert_eq!((report.in_flight_at_start, report.remaining), (2, 0));
    assert!(!report.timed_out);
    assert_eq!(a.responses(), 2, "the drain waited for both");
    for r in [slow1, slow2] {
        assert_eq!(r.await.unwrap().unwrap().status, StatusCode::OK);
    }
    // Out of rotation in both, for good.
    for addr in [one, two] {
        let reply = get_once(addr, "/").await.unwrap();
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    }
}

// ---------------------------------------------------------------------------
// The reconciler

fn desired(endpoints: &[(&str, SocketAddr, &[&TestBackend])]) -> Desired {
    Desired {
        endpoints: endpoints
            .iter()
            .map(|(e, addr, backends)| {
                (
                    name(e),
                    DesiredEndpoint {
                        spec: spec(e, *addr),
                        backends: backends.iter().map(|b| b.backend()).collect(),
                    },
                )
            })
            .collect(),
    }
}

#[tokio::test]
async fn the_reconciler_sends_only_what_differs_and_a_fresh_one_continues_the_generations() {
    let plane = LocalDataPlane::new("store");
    let (a, b) = (TestBackend::start("a").await, TestBackend::start("b").await);
    let addr = free_port();
    let mut r = Reconciler::new();
    let (status, events) = r
        .reconcile(&plane, &desired(&[("public", addr, &[&a])]))
        .await
        .unwrap();
    assert!(status.settled);
    assert!(events.contains(&EndpointEvent::Listening {
        endpoint: name("public"),
        addr,
        kept: false
    }));
    assert_eq!(get_once(addr, "/").await.unwrap().text(), "a");
    // Another endpoint, added and removed: the endpoint set's generation
    // moves on.
    let admin = free_port();
    r.reconcile(
        &plane,
        &desired(&[("public", addr, &[&a]), ("admin", admin, &[])]),
    )
    .await
    .unwrap();
    r.reconcile(&plane, &desired(&[("public", addr, &[&a])]))
        .await
        .unwrap();
    let first = plane.state().await.unwrap();
    assert!(first.generation >= Some(3), "{first:?}");

    // Nothing changed: nothing sent (generations unchanged), no event.
    let (_, events) = r
        .reconcile(&plane, &desired(&[("public", addr, &[&a])]))
        .await
        .unwrap();
    assert!(events.is_empty(), "{events:?}");
    let again = plane.state().await.unwrap();
    assert_eq!(again.generation, first.generation);
    assert_eq!(again.endpoints[0].generation, first.endpoints[0].generation);

    // A restarted conductor: a reconciler with no memory. It finds the
    // endpoint listening (kept), and its backend change is not stale.
    let mut fresh = Reconciler::new();
    let (status, events) = fresh
        .reconcile(&plane, &desired(&[("public", addr, &[&b])]))
        .await
        .unwrap();
    assert!(events.contains(&EndpointEvent::Listening {
        endpoint: name("public"),
        addr,
        kept: true
    }));
    assert_eq!(status.endpoints[0].backends, vec![b.instance()]);
    assert_eq!(get_once(addr, "/").await.unwrap().text(), "b");
    let state = plane.state().await.unwrap();
    assert_eq!(
        state.generation, first.generation,
        "the endpoint set was not re-sent"
    );
    assert!(state.endpoints[0].generation > first.endpoints[0].generation);

    // Gone from the desired state: stopped.
    let (_, events) = fresh.reconcile(&plane, &Desired::default()).await.unwrap();
    assert!(events.contains(&EndpointEvent::Stopped {
        endpoint: name("public"),
        listen: addr
    }));
    assert!(plane.state().await.unwrap().endpoints.is_empty());
}

#[tokio::test]
async fn a_bind_failure_is_told_once_and_retried_until_it_listens() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let plane = LocalDataPlane::new("store");
    let a = TestBackend::start("a").await;
    let want = desired(&[("public", addr, &[&a])]);
    let mut r = Reconciler::new();
    let (status, events) = r.reconcile(&plane, &want).await.unwrap();
    assert!(status.settled, "an endpoint that failed to bind is settled");
    let told = |events: &[EndpointEvent]| {
        events
            .iter()
            .filter(|e| matches!(e, EndpointEvent::CannotListen { .. }))
            .count()
    };
    assert_eq!(told(&events), 1);
    let (_, events) = r.reconcile(&plane, &want).await.unwrap();
    assert_eq!(told(&events), 0, "told once per streak");
    drop(taken);
    let mut listening_event = false;
    for _ in 0..200 {
        let (_, events) = r.reconcile(&plane, &want).await.unwrap();
        if events
            .iter()
            .any(|e| matches!(e, EndpointEvent::Listening { .. }))
        {
            listening_event = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(listening_event, "retried until it listens");
    assert_eq!(get_once(addr, "/").await.unwrap().text(), "a");
}

// ---------------------------------------------------------------------------
// The process side, through its socket

/// A data plane "process" (the `run` of `glint dataplane`) in a task of
/// this test, on a data directory.
fn start_process(dir: &std::path::Path) -> tokio::task::JoinHandle<()> {
    let config = ProcessConfig {
        linger: Duration::from_secs(2),
        drain_timeout: Duration::from_secs(5),
        ..ProcessConfig::new(dir.to_owned(), "store".into())
    };
    tokio::spawn(async move { glint_dataplane::run(config).await.unwrap() })
}

async fn wait_answering(dir: &std::path::Path) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while RemoteDataPlane::hello(dir).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no data plane answers"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_data_plane_is_programmed_through_its_socket_and_shut_down() {
    let dir = tempfile::tempdir().unwrap();
    let process = start_process(dir.path());
    wait_answering(dir.path()).await;
    let plane = RemoteDataPlane::of(dir.path());
    let identity = plane.identity().await.unwrap();
    assert_eq!(identity.store, "store");
    assert_eq!(identity.protocol, glint_dataplane::PROTOCOL);
    let a = TestBackend::start("a").await;
    let applied = plane
        .set_endpoints(1, vec![spec("public", any_port())])
        .await
        .unwrap();
    let addr = applied.endpoints[0].listening.unwrap();
    assert!(
        plane
            .set_backends(&name("public"), 1, vec![a.backend()])
            .await
            .unwrap()
    );
    assert_eq!(get_once(addr, "/").await.unwrap().text(), "a");
    let state = plane.state().await.unwrap();
    assert_eq!(state.endpoints[0].stats.as_ref().unwrap().requests, 1);
    let unknown = plane.set_backends(&name("nope"), 1, vec![]).await;
    assert!(
        matches!(unknown, Err(DataPlaneError::UnknownEndpoint(_))),
        "{unknown:?}"
    );
    let report = plane.drain(&a.instance(), PATIENCE).await.unwrap();
    assert!(report.found);

    plane.shutdown(Duration::from_secs(5)).await.unwrap();
    patiently("the process to end", process).await.unwrap();
    assert!(
        !dir.path().join(glint_dataplane::SOCKET).exists(),
        "its socket is removed"
    );
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "its endpoint is closed"
    );
}

/// `n` clients looping GET on `addr` (half on keep-alive connections, half
/// on a connection per request) until told to stop: (ok, failures).
fn load(
    addr: SocketAddr,
    n: usize,
) -> (
    Arc<AtomicBool>,
    tokio::task::JoinHandle<(usize, Vec<String>)>,
) {
    let stop = Arc::new(AtomicBool::new(false));
    let task = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut clients = Vec::new();
            for i in 0..n {
                let stop = stop.clone();
                clients.push(tokio::spawn(async move {
                    let mut client = Client::new(addr);
                    let (mut ok, mut failures) = (0usize, Vec::new());
                    while !stop.load(Ordering::SeqCst) {
                        let reply = if i % 2 == 0 {
                            client.get("/").await
                        } else {
                            get_once(addr, "/").await
                        };
                        match reply {
                            Ok(r) if r.status == StatusCode::OK => ok += 1,
                            Ok(r) => failures.push(format!("{}: {}", r.status, r.text())),
                            Err(e) => failures.push(e),
                        }
                    }
                    (ok, failures)
                }));
            }
            let mut total = (0, Vec::new());
            for c in clients {
                let (ok, failures) = c.await.unwrap();
                total.0 += ok;
                total.1.extend(failures);
            }
            total
        })
    };
    (stop, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_successor_takes_the_sockets_and_the_state_over_without_a_failed_request() {
    let dir = tempfile::tempdir().unwrap();
    let old = start_process(dir.path());
    wait_answering(dir.path()).await;
    let (a, b) = (TestBackend::start("a").await, TestBackend::start("b").await);
    let plane = RemoteDataPlane::of(dir.path());
    let mut endpoint = spec("public", any_port());
    endpoint.config.response_timeout = Duration::from_secs(4);
    plane
        .set_endpoints(7, vec![endpoint.clone()])
        .await
        .unwrap();
    plane
        .set_backends(&name("public"), 9, vec![a.backend(), b.backend()])
        .await
        .unwrap();
    let addr = listening(&plane, "public").await;
    let (stop, traffic) = load(addr, 6);
    eventually("traffic", || a.requests() + b.requests() > 100).await;

    // The successor takes over; the old one leaves and ends.
    let new = start_process(dir.path());
    patiently("the old data plane to end", old).await.unwrap();
    let served = a.requests() + b.requests();
    eventually("traffic through the successor", || {
        a.requests() + b.requests() > served + 100
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    let (ok, failures) = patiently("load", traffic).await.unwrap();
    assert!(
        failures.is_empty(),
        "{} failed: {failures:?}",
        failures.len()
    );
    assert!(ok > 200, "{ok}");

    // Same socket, same state, same generations.
    let state = plane.state().await.unwrap();
    assert_eq!(state.generation, Some(7));
    let e = state.endpoint(&name("public")).unwrap();
    assert_eq!(e.listening, Some(addr));
    assert_eq!(e.spec, endpoint);
    assert_eq!(e.generation, Some(9));
    assert_eq!(e.backends.len(), 2);
    assert!(
        plane
            .set_backends(&name("public"), 10, vec![b.backend()])
            .await
            .unwrap()
    );
    assert_eq!(get_once(addr, "/").await.unwrap().text(), "b");
    plane.shutdown(Duration::from_secs(5)).await.unwrap();
    patiently("the successor to end", new).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_plane_refuses_changes_from_a_client_of_another_protocol() {
    // What a conductor of another protocol sees: `hello` answers (so it can
    // tell who runs and replace it), programming is refused.
    let dir = tempfile::tempdir().unwrap();
    let process = start_process(dir.path());
    wait_answering(dir.path()).await;
    let identity = RemoteDataPlane::hello(dir.path()).await.unwrap();
    assert!(identity.adoptable());
    let answer = raw_exchange(
        &dir.path().join(glint_dataplane::SOCKET),
        &[
            r#"{"id":1,"body":{"op":"hello","protocol":999}}"#,
            r#"{"id":2,"body":{"op":"state"}}"#,
            r#"{"id":3,"body":{"op":"from_the_future"}}"#,
        ],
    )
    .await;
    assert!(answer[0].contains(r#""result":"hello""#), "{}", answer[0]);
    assert!(
        answer[1].contains(r#""kind":"incompatible""#),
        "{}",
        answer[1]
    );
    assert!(
        answer[2].contains(r#""kind":"bad_request""#),
        "{}",
        answer[2]
    );
    RemoteDataPlane::of(dir.path())
        .shutdown(Duration::from_secs(5))
        .await
        .unwrap();
    patiently("the process to end", process).await.unwrap();
}

/// Sends frames as a foreign client would (plain bytes) and reads as many
/// answers, ordered by id.
async fn raw_exchange(socket: &std::path::Path, frames: &[&str]) -> Vec<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::UnixStream::connect(socket).await.unwrap();
    let mut answers = Vec::new();
    for f in frames {
        s.write_all(&(f.len() as u32).to_be_bytes()).await.unwrap();
        s.write_all(f.as_bytes()).await.unwrap();
        // One at a time: the hello is answered before the next is sent.
        let mut len = [0u8; 4];
        s.read_exact(&mut len).await.unwrap();
        let mut buf = vec![0u8; u32::from_be_bytes(len) as usize];
        s.read_exact(&mut buf).await.unwrap();
        answers.push(String::from_utf8(buf).unwrap());
    }
    answers
}
