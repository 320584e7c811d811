//! The endpoint proxy, tested with real sockets: real hyper backends started
//! inside each test, real clients, the proxy on port 0.

// Test code: a failed setup step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use bytes::Bytes;
use glint_model::{EndpointProtocol, Name};
use glint_proxy::{Backend, BackendStatus, EndpointConfig, EndpointProxy, ProxyError};
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

fn config(protocol: EndpointProtocol) -> EndpointConfig {
    EndpointConfig::new(
        Name::new("web").unwrap(),
        SocketAddr::from(([127, 0, 0, 1], 0)),
        protocol,
    )
}

async fn http_proxy(backends: &[&TestBackend]) -> EndpointProxy {
    http_proxy_with(config(EndpointProtocol::Http), backends).await
}

async fn http_proxy_with(config: EndpointConfig, backends: &[&TestBackend]) -> EndpointProxy {
    let proxy = EndpointProxy::bind(config).await.unwrap();
    if !backends.is_empty() {
        assert!(proxy.set_backends(1, backends.iter().map(|b| b.backend()).collect()));
    }
    proxy
}

/// An address where nothing listens.
async fn dead_addr() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

fn served_by(reply: &Reply) -> String {
    reply.headers["x-backend"].to_str().unwrap().to_owned()
}

fn backend_stats(proxy: &EndpointProxy, name: &str) -> glint_proxy::BackendStats {
    let id = instance(name);
    proxy
        .stats()
        .backends
        .into_iter()
        .find(|b| b.instance == id)
        .unwrap_or_else(|| panic!("no stats for {name}"))
}

// ---------------------------------------------------------------------------
// Load balancing

#[tokio::test]
async fn requests_spread_across_three_backends() {
    let (a, b, c) = (
        TestBackend::start("a").await,
        TestBackend::start("b").await,
        TestBackend::start("c").await,
    );
    let proxy = http_proxy(&[&a, &b, &c]).await;
    let mut client = Client::new(proxy.local_addr());
    for _ in 0..30 {
        let reply = client.get("/").await.unwrap();
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.text(), served_by(&reply));
    }
    for backend in [&a, &b, &c] {
        assert!(
            backend.requests() >= 5,
            "{} got {} of 30 requests",
            backend.name(),
            backend.requests()
        );
    }
    let stats = proxy.stats();
    assert_eq!(stats.requests, 30);
    assert_eq!(stats.backends.iter().map(|b| b.served).sum::<u64>(), 30);
    assert_eq!(client.connects, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_backend_gets_fewer_requests() {
    let fast1 = TestBackend::start("fast1").await;
    let fast2 = TestBackend::start("fast2").await;
    let slow = TestBackend::start_slow("slow", Duration::from_millis(100)).await;
    let proxy = http_proxy(&[&fast1, &fast2, &slow]).await;
    let addr = proxy.local_addr();
    let mut clients = Vec::new();
    for _ in 0..8 {
        clients.push(tokio::spawn(async move {
            let mut client = Client::new(addr);
            for _ in 0..25 {
                assert_eq!(client.get("/").await.unwrap().status, StatusCode::OK);
            }
        }));
    }
    for c in clients {
        patiently("clients", c).await.unwrap();
    }
    let least_fast = fast1.requests().min(fast2.requests());
    assert!(
        slow.requests() * 2 < least_fast,
        "slow {} vs fast {} / {}",
        slow.requests(),
        fast1.requests(),
        fast2.requests()
    );
}

#[tokio::test]
async fn backend_connections_are_pooled_and_reused() {
    let a = TestBackend::start("a").await;
    let proxy = http_proxy(&[&a]).await;
    let mut client = Client::new(proxy.local_addr());
    for i in 0..10 {
        let reply = client.get("/").await.unwrap();
        assert_eq!(reply.status, StatusCode::OK);
        // HEAD: an empty body hyper never polls; the connection must still
        // go back to the pool.
        let reply = client
            .request(Method::HEAD, "/", Bytes::new())
            .await
            .unwrap();
        assert_eq!(reply.status, StatusCode::OK, "HEAD {i}");
        assert!(reply.body.is_empty());
    }
    assert_eq!(a.requests(), 20);
    assert_eq!(
        a.counts().accepted.load(Ordering::SeqCst),
        1,
        "connections were not reused"
    );
    eventually("the connection back in the pool", || {
        backend_stats(&proxy, "a").idle_connections == 1
    })
    .await;
}

// ---------------------------------------------------------------------------
// Crashes, retries and stale connections

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_backend_costs_no_idempotent_request() {
    let (a, b, c) = (
        TestBackend::start("a").await,
        TestBackend::start("b").await,
        TestBackend::start("c").await,
    );
    let mut cfg = config(EndpointProtocol::Http);
    // Long enough that "stops being chosen" does not depend on timing.
    cfg.eject_for = Duration::from_secs(600);
    let proxy = http_proxy_with(cfg, &[&a, &b, &c]).await;
    let addr = proxy.local_addr();

    let ok = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for i in 0..4 {
        let (ok, failures, stop) = (ok.clone(), failures.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let mut client = Client::new(addr);
            let mut n = 0u32;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                // Some requests are in flight for a while, so the kill hits
                // requests mid-way.
                let path = if (n + i).is_multiple_of(2) {
                    "/sleep/5"
                } else {
                    "/"
                };
                let method = if n.is_multiple_of(3) {
                    Method::DELETE
                } else {
                    Method::GET
                };
                match client.request(method, path, Bytes::new()).await {
                    Ok(reply) if reply.status == StatusCode::OK => {
                        ok.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(reply) => {
                        failures
                            .lock()
                            .unwrap()
                            .push(format!("{}: {}", reply.status, reply.text()))
                    }
                    Err(e) => failures.lock().unwrap().push(e),
                }
            }
        }));
    }
    eventually("100 requests before the kill", || {
        ok.load(Ordering::SeqCst) >= 100
    })
    .await;
    b.kill();
    let at_kill = ok.load(Ordering::SeqCst);
    eventually("100 requests after the kill", || {
        ok.load(Ordering::SeqCst) >= at_kill + 100
    })
    .await;
    let checkpoint = backend_stats(&proxy, "b");
    let mark = ok.load(Ordering::SeqCst);
    eventually("200 more requests", || {
        ok.load(Ordering::SeqCst) >= mark + 200
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        patiently("clients", c).await.unwrap();
    }

    let failures = failures.lock().unwrap();
    assert!(failures.is_empty(), "failed requests: {failures:?}");
    let end = backend_stats(&proxy, "b");
    assert_eq!(end.status, BackendStatus::Ejected);
    assert_eq!(
        (end.served, end.connect_failures, end.request_failures),
        (
            checkpoint.served,
            checkpoint.connect_failures,
            checkpoint.request_failures
        ),
        "the killed backend was still chosen"
    );
    assert!(proxy.stats().retries >= 1);
    let f = proxy.stats().failures;
    assert_eq!((f.exhausted, f.not_retried, f.no_backend), (0, 0, 0));
}

#[tokio::test]
async fn a_stale_pooled_connection_to_a_restarted_backend_is_retried() {
    let mut a = TestBackend::start("a").await;
    let addr = a.addr;
    let proxy = http_proxy(&[&a]).await;
    let mut client = Client::new(proxy.local_addr());
    for round in 0..5 {
        let reply = client.get("/").await.unwrap();
        assert_eq!(reply.status, StatusCode::OK, "round {round}");
        // The proxy now holds a pooled connection to the old process.
        a.kill();
        drop(a);
        a = TestBackend::start_at("a", addr).await;
        let reply = client.get("/").await.unwrap();
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "round {round}: {}",
            reply.text()
        );
    }
}

#[tokio::test]
async fn a_keep_alive_connection_dying_on_reuse_is_retried_for_idempotent_requests() {
    // Every reused connection dies when the next request arrives on it.
    let a = TestBackend::start_one_request_per_connection("a").await;
    let proxy = http_proxy(&[&a]).await;
    let mut client = Client::new(proxy.local_addr());
    for i in 0..10 {
        let reply = client.get("/").await.unwrap();
        assert_eq!(reply.status, StatusCode::OK, "GET {i}: {}", reply.text());
        // PUT is idempotent: its buffered body is replayed.
        let body = Bytes::from(format!("put-{i}"));
        let reply = client
            .request(Method::PUT, "/echo", body.clone())
            .await
            .unwrap();
        assert_eq!(reply.status, StatusCode::OK, "PUT {i}: {}", reply.text());
        assert_eq!(reply.body, body);
    }
    let stats = proxy.stats();
    assert!(stats.retries >= 10, "retries: {}", stats.retries);
    assert!(a.requests() > 20);
}

#[tokio::test]
async fn a_post_is_not_retried_once_sent() {
    let a = TestBackend::start_one_request_per_connection("a").await;
    let proxy = http_proxy(&[&a]).await;
    let mut client = Client::new(proxy.local_addr());
    let reply = client
        .request(Method::POST, "/echo", Bytes::from("one"))
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    // Sent on the pooled connection, which the backend drops unanswered.
    let reply = client
        .request(Method::POST, "/echo", Bytes::from("two"))
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    assert!(reply.text().contains("`web`"), "{}", reply.text());
    assert_eq!(a.posts(), 2, "the POST was sent twice");
    assert_eq!(proxy.stats().failures.not_retried, 1);
    // The next POST goes on a fresh connection.
    let reply = client
        .request(Method::POST, "/echo", Bytes::from("three"))
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.text(), "three");
}

#[tokio::test]
async fn a_connect_failure_is_retried_even_for_a_post() {
    let a = TestBackend::start("a").await;
    let proxy = EndpointProxy::bind(config(EndpointProtocol::Http))
        .await
        .unwrap();
    let dead = Backend {
        instance: instance("dead"),
        addr: dead_addr().await,
    };
    proxy.set_backends(1, vec![dead, a.backend()]);
    let mut client = Client::new(proxy.local_addr());
    for i in 0..6 {
        let body = Bytes::from(format!("post-{i}"));
        let reply = client
            .request(Method::POST, "/echo", body.clone())
            .await
            .unwrap();
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.body, body);
    }
    assert_eq!(a.posts(), 6);
    assert!(proxy.stats().failures.connect >= 1);
}

#[tokio::test]
async fn every_backend_refusing_gives_502_after_trying_each_once() {
    let mut cfg = config(EndpointProtocol::Http);
    cfg.max_attempts = 5;
    let proxy = EndpointProxy::bind(cfg).await.unwrap();
    let mut set = Vec::new();
    for name in ["d1", "d2", "d3"] {
        set.push(Backend {
            instance: instance(name),
            addr: dead_addr().await,
        });
    }
    proxy.set_backends(1, set);
    let reply = get_once(proxy.local_addr(), "/").await.unwrap();
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    assert!(reply.text().contains("`web`"));
    let stats = proxy.stats();
    assert_eq!(stats.failures.connect, 3, "each backend tried once");
    assert_eq!(stats.failures.exhausted, 1);
    assert_eq!(stats.retries, 2);

    let mut cfg = config(EndpointProtocol::Http);
    cfg.max_attempts = 2;
    let proxy = EndpointProxy::bind(cfg).await.unwrap();
    proxy.set_backends(1, stats_backends(&stats));
    let reply = get_once(proxy.local_addr(), "/").await.unwrap();
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    assert_eq!(proxy.stats().failures.connect, 2, "at most max_attempts");
}

fn stats_backends(stats: &glint_proxy::EndpointStats) -> Vec<Backend> {
    stats
        .backends
        .iter()
        .map(|b| Backend {
            instance: b.instance.clone(),
            addr: b.addr,
        })
        .collect()
}

// ---------------------------------------------------------------------------
// No backend

#[tokio::test]
async fn no_backend_gives_503_naming_the_endpoint() {
    let mut cfg = config(EndpointProtocol::Http);
    cfg.wait_for_backend = Duration::ZERO;
    let proxy = EndpointProxy::bind(cfg).await.unwrap();
    let reply = get_once(proxy.local_addr(), "/").await.unwrap();
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(reply.text().contains("endpoint `web`"), "{}", reply.text());
    assert!(
        reply.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    assert!(proxy.set_backends(1, vec![]));
    let reply = get_once(proxy.local_addr(), "/").await.unwrap();
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(proxy.stats().failures.no_backend, 2);
}

#[tokio::test]
async fn a_request_waits_briefly_for_a_backend_to_appear() {
    let a = TestBackend::start("a").await;
    let mut cfg = config(EndpointProtocol::Http);
    cfg.wait_for_backend = PATIENCE;
    let proxy = EndpointProxy::bind(cfg).await.unwrap();
    let addr = proxy.local_addr();
    let waiting = tokio::spawn(async move { get_once(addr, "/").await });
    eventually("the request to arrive", || proxy.stats().requests == 1).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!waiting.is_finished());
    proxy.set_backends(1, vec![a.backend()]);
    let reply = patiently("the waiting request", waiting)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reply.status, StatusCode::OK);

    // The wait is bounded.
    let mut cfg = config(EndpointProtocol::Http);
    cfg.wait_for_backend = Duration::from_millis(300);
    let proxy = EndpointProxy::bind(cfg).await.unwrap();
    let started = Instant::now();
    let reply = get_once(proxy.local_addr(), "/").await.unwrap();
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn a_crash_of_the_only_instance_is_smoothed_by_waiting_for_its_replacement() {
    let a = TestBackend::start("a").await;
    let mut cfg = config(EndpointProtocol::Http);
    cfg.wait_for_backend = PATIENCE;
    let proxy = http_proxy_with(cfg, &[&a]).await;
    let addr = proxy.local_addr();
    // No request before the crash, so no pooled connection: a POST on a
    // stale one would be (rightly) not retried.
    a.kill_and_wait().await;
    // A POST finds the dead instance (connect refused: certainly not sent)
    // and waits for the conductor's replacement.
    let waiting = tokio::spawn(async move {
        let mut client = Client::new(addr);
        client
            .request(Method::POST, "/echo", Bytes::from("hello"))
            .await
    });
    eventually("the attempt on the dead instance", || {
        proxy.stats().failures.connect >= 1
    })
    .await;
    assert!(!waiting.is_finished());
    let b = TestBackend::start("b").await;
    proxy.set_backends(2, vec![b.backend()]);
    let reply = patiently("the waiting request", waiting)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(served_by(&reply), "b");
    assert_eq!(reply.text(), "hello");
}

// ---------------------------------------------------------------------------
// Generations, draining, churn

#[tokio::test]
async fn a_stale_backend_set_is_ignored() {
    let (a, b) = (TestBackend::start("a").await, TestBackend::start("b").await);
    let proxy = http_proxy(&[]).await;
    assert!(proxy.set_backends(5, vec![a.backend()]));
    assert!(!proxy.set_backends(3, vec![b.backend()]));
    assert_eq!(proxy.stats().generation, Some(5));
    let mut client = Client::new(proxy.local_addr());
    for _ in 0..5 {
        assert_eq!(served_by(&client.get("/").await.unwrap()), "a");
    }
    assert!(proxy.set_backends(6, vec![b.backend()]));
    for _ in 0..5 {
        assert_eq!(served_by(&client.get("/").await.unwrap()), "b");
    }
    assert_eq!(b.requests(), 5);
}

#[tokio::test]
async fn draining_lets_in_flight_requests_finish_and_sends_nothing_new() {
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    let proxy = http_proxy(&[&a]).await;
    let addr = proxy.local_addr();
    // Warm a keep-alive connection to `a`, then start a slow request on it.
    let mut client = Client::new(addr);
    assert_eq!(served_by(&client.get("/").await.unwrap()), "a");
    let slow = tokio::spawn(async move { client.get("/sleep/300").await });
    eventually("the slow request to reach a", || a.active() == 1).await;
    proxy.set_backends(2, vec![a.backend(), b.backend()]);

    let drain = tokio::spawn({
        let proxy = proxy.clone();
        let id = a.instance();
        async move { proxy.drain(&id, PATIENCE).await }
    });
    eventually("a to be draining", || {
        backend_stats(&proxy, "a").status == BackendStatus::Draining
    })
    .await;
    let a_requests = a.requests();
    let mut other = Client::new(addr);
    for _ in 0..10 {
        assert_eq!(served_by(&other.get("/").await.unwrap()), "b");
    }
    let outcome = patiently("drain", drain).await.unwrap();
    assert_eq!(
        a.responses(),
        2,
        "drain returned before the slow request ended"
    );
    assert!(outcome.found);
    assert_eq!(outcome.in_flight_at_start, 1);
    assert_eq!(outcome.remaining, 0);
    assert!(!outcome.timed_out);
    let reply = patiently("slow request", slow).await.unwrap().unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(served_by(&reply), "a");
    assert_eq!(
        a.requests(),
        a_requests,
        "a new request went to a draining backend"
    );
    // Its keep-alive connections are closed once their request is done.
    eventually("a's connections to close", || a.open_connections() == 0).await;
    // A later set that still lists it does not bring it back.
    proxy.set_backends(3, vec![a.backend(), b.backend()]);
    for _ in 0..4 {
        assert_eq!(served_by(&other.get("/").await.unwrap()), "b");
    }
}

#[tokio::test]
async fn draining_is_bounded_by_its_timeout_and_cancels_nothing() {
    let a = TestBackend::start("a").await;
    let proxy = http_proxy(&[&a]).await;
    let addr = proxy.local_addr();
    let hung = tokio::spawn(async move { get_once(addr, "/hang").await });
    eventually("the request to reach a", || a.active() == 1).await;
    let outcome = proxy.drain(&a.instance(), Duration::from_millis(200)).await;
    assert!(outcome.timed_out);
    assert_eq!(outcome.in_flight_at_start, 1);
    assert_eq!(outcome.remaining, 1);
    assert!(outcome.waited >= Duration::from_millis(200));
    a.release();
    let reply = patiently("hung request", hung).await.unwrap().unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    // Draining again once it is idle returns at once.
    let again = proxy.drain(&a.instance(), PATIENCE).await;
    assert_eq!((again.remaining, again.timed_out), (0, false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_loses_no_request() {
    let first = TestBackend::start("gen0").await;
    let proxy = http_proxy(&[&first]).await;
    let addr = proxy.local_addr();

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for i in 0..4u32 {
        let (stop, ok) = (stop.clone(), ok.clone());
        clients.push(tokio::spawn(async move {
            let mut client = Client::new(addr);
            let mut failures = Vec::new();
            let mut n = 0u32;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let result = match (n + i) % 3 {
                    0 => client.get("/sleep/20").await,
                    1 => {
                        client
                            .request(Method::PUT, "/echo", Bytes::from(format!("{i}-{n}")))
                            .await
                    }
                    _ => client.get("/").await,
                };
                match result {
                    Ok(r) if r.status == StatusCode::OK => {
                        ok.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(r) => failures.push(format!("{}: {}", r.status, r.text())),
                    Err(e) => failures.push(e),
                }
            }
            (failures, client.connects)
        }));
    }

    let mut generation = 1;
    let mut current = first;
    for round in 1..=8 {
        let next = TestBackend::start(&format!("gen{round}")).await;
        generation += 1;
        assert!(proxy.set_backends(generation, vec![current.backend(), next.backend()]));
        let before = ok.load(Ordering::SeqCst);
        eventually("traffic on both", || {
            ok.load(Ordering::SeqCst) >= before + 20
        })
        .await;
        // Retire `current` the way the conductor does; alternate the order of
        // "new set" and "drain".
        generation += 1;
        if round % 2 == 0 {
            assert!(proxy.set_backends(generation, vec![next.backend()]));
            let outcome = proxy.drain(&current.instance(), PATIENCE).await;
            assert!(!outcome.timed_out);
        } else {
            let outcome = proxy.drain(&current.instance(), PATIENCE).await;
            assert!(!outcome.timed_out);
            assert!(proxy.set_backends(generation, vec![next.backend()]));
        }
        // SIGTERM: the old instance dies.
        current.kill();
        current = next;
    }
    let before = ok.load(Ordering::SeqCst);
    eventually("traffic after the last round", || {
        ok.load(Ordering::SeqCst) >= before + 20
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        let (failures, connects) = patiently("clients", c).await.unwrap();
        assert!(failures.is_empty(), "failed requests: {failures:?}");
        assert_eq!(connects, 1, "a client keep-alive connection was closed");
    }
    let f = proxy.stats().failures;
    assert_eq!((f.exhausted, f.not_retried, f.no_backend), (0, 0, 0));
}

// ---------------------------------------------------------------------------
// HTTP hygiene and streaming

#[tokio::test]
async fn hop_by_hop_headers_are_removed_and_forwarding_headers_added() {
    let a = TestBackend::start("a").await;
    let proxy = http_proxy(&[&a]).await;
    let req = Request::builder()
        .uri("/headers")
        .header("host", "app.test")
        .header("connection", "x-private")
        .header("x-private", "secret")
        .header("x-forwarded-for", "192.0.2.1")
        .header("x-kept", "yes")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let reply = Client::new(proxy.local_addr()).send(req).await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    let seen = reply.text();
    for line in [
        "x-kept: yes",
        "host: app.test",
        "x-forwarded-for: 192.0.2.1, 127.0.0.1",
        "x-forwarded-proto: http",
        "x-forwarded-host: app.test",
        "via: 1.1 web (glint)",
    ] {
        assert!(seen.lines().any(|l| l == line), "no `{line}` in:\n{seen}");
    }
    assert!(!seen.contains("x-private"), "{seen}");
    // The backend's `keep-alive` header is hop-by-hop too.
    assert!(!reply.headers.contains_key("keep-alive"));
    assert_eq!(reply.headers["via"], "1.1 web (glint)");
}

#[tokio::test]
async fn response_bodies_are_streamed_not_buffered() {
    let a = TestBackend::start("a").await;
    let proxy = http_proxy(&[&a]).await;
    let stream = TcpStream::connect(proxy.local_addr()).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::builder()
        .uri("/trickle")
        .header("host", "app.test")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let mut body = sender.send_request(req).await.unwrap().into_body();
    // The first chunk arrives while the backend still holds the second.
    let first = patiently("the first chunk", body.frame())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.into_data().unwrap(), "first");
    a.release_trickle();
    let rest = patiently("the rest", body.collect())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(rest, "second");
}

#[tokio::test]
async fn large_request_bodies_are_streamed_through() {
    let a = TestBackend::start("a").await;
    let proxy = http_proxy(&[&a]).await;
    let big: Bytes = (0..3 * 1024 * 1024)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<_>>()
        .into();
    let mut client = Client::new(proxy.local_addr());
    let reply = client
        .request(Method::PUT, "/echo", big.clone())
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.body == big, "the body changed on the way");
}

#[tokio::test]
async fn upgrades_are_tunnelled_and_counted_in_flight() {
    let a = TestBackend::start("a").await;
    let proxy = http_proxy(&[&a]).await;
    let mut conn = TcpStream::connect(proxy.local_addr()).await.unwrap();
    conn.write_all(
        b"GET /ws HTTP/1.1\r\nHost: app.test\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        let n = patiently("the 101 head", conn.read(&mut byte))
            .await
            .unwrap();
        assert_eq!(n, 1, "closed after {:?}", String::from_utf8_lossy(&head));
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: echo"), "{head}");
    conn.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    patiently("the echo", conn.read_exact(&mut buf))
        .await
        .unwrap();
    assert_eq!(&buf, b"ping");
    assert_eq!(backend_stats(&proxy, "a").in_flight, 1);
    let outcome = proxy.drain(&a.instance(), Duration::from_millis(100)).await;
    assert_eq!(outcome.remaining, 1, "the tunnel is in flight");
    drop(conn);
    let outcome = proxy.drain(&a.instance(), PATIENCE).await;
    assert_eq!(outcome.remaining, 0);
}

// ---------------------------------------------------------------------------
// TCP mode

async fn tcp_exchange(conn: &mut TcpStream, send: &str, expect: &str) {
    conn.write_all(send.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; expect.len()];
    patiently("the echo", conn.read_exact(&mut buf))
        .await
        .unwrap();
    assert_eq!(String::from_utf8(buf).unwrap(), expect);
}

#[tokio::test]
async fn tcp_mode_forwards_both_ways_and_follows_backend_changes() {
    let a = TcpEchoBackend::start("a").await;
    let b = TcpEchoBackend::start("b").await;
    let mut cfg = config(EndpointProtocol::Tcp);
    cfg.wait_for_backend = Duration::ZERO;
    let proxy = EndpointProxy::bind(cfg).await.unwrap();
    proxy.set_backends(1, vec![a.backend()]);
    let addr = proxy.local_addr();

    let mut first = TcpStream::connect(addr).await.unwrap();
    tcp_exchange(&mut first, "hello", "a:hello").await;
    proxy.set_backends(2, vec![b.backend()]);
    // Established connections stay; new ones follow the set.
    tcp_exchange(&mut first, "again", "a:again").await;
    let mut second = TcpStream::connect(addr).await.unwrap();
    tcp_exchange(&mut second, "x", "b:x").await;

    // A dead backend costs a retry, not the connection.
    let dead = Backend {
        instance: instance("dead"),
        addr: dead_addr().await,
    };
    proxy.set_backends(3, vec![dead, b.backend()]);
    for _ in 0..3 {
        let mut conn = TcpStream::connect(addr).await.unwrap();
        tcp_exchange(&mut conn, "y", "b:y").await;
    }
    assert!(proxy.stats().failures.connect >= 1);

    // Draining waits for open connections.
    let outcome = proxy
        .drain(&a.backend().instance, Duration::from_millis(100))
        .await;
    assert_eq!(outcome.remaining, 1);
    drop(first);
    let outcome = proxy.drain(&a.backend().instance, PATIENCE).await;
    assert_eq!(outcome.remaining, 0);

    // No backend: the connection is closed.
    proxy.set_backends(4, vec![]);
    let mut conn = TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 1];
    let n = patiently("close", conn.read(&mut buf)).await.unwrap_or(0);
    assert_eq!(n, 0);
    assert_eq!(proxy.stats().failures.no_backend, 1);
}

// ---------------------------------------------------------------------------
// Response timeout (a hung instance)

fn timeout_config(response_timeout: Duration) -> EndpointConfig {
    let mut cfg = config(EndpointProtocol::Http);
    cfg.response_timeout = response_timeout;
    // Long enough that "ejected" does not depend on timing.
    cfg.eject_for = Duration::from_secs(600);
    cfg.eject_max = Duration::from_secs(600);
    cfg
}

#[tokio::test]
async fn a_hung_backend_costs_an_idempotent_request_one_timeout_and_is_ejected() {
    let hung = TestBackend::start_hung("hung").await;
    let b = TestBackend::start("b").await;
    let proxy = http_proxy_with(timeout_config(Duration::from_millis(300)), &[&hung, &b]).await;
    let mut client = Client::new(proxy.local_addr());
    for _ in 0..10 {
        let reply = patiently("GET", client.get("/")).await.unwrap();
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        assert_eq!(served_by(&reply), "b");
    }
    assert_eq!(
        hung.requests(),
        1,
        "the hung backend was tried once, then ejected"
    );
    let stats = proxy.stats();
    assert_eq!(stats.failures.timeouts, 1);
    assert_eq!(stats.failures.answered(), 0);
    assert_eq!(backend_stats(&proxy, "hung").status, BackendStatus::Ejected);
    hung.release();
}

#[tokio::test]
async fn a_post_to_a_hung_backend_is_answered_504_and_not_sent_again() {
    let hung = TestBackend::start_hung("hung").await;
    let proxy = http_proxy_with(timeout_config(Duration::from_millis(300)), &[&hung]).await;
    let mut client = Client::new(proxy.local_addr());
    let reply = patiently(
        "POST",
        client.request(Method::POST, "/", Bytes::from_static(b"order")),
    )
    .await
    .unwrap();
    assert_eq!(
        reply.status,
        StatusCode::GATEWAY_TIMEOUT,
        "{}",
        reply.text()
    );
    assert!(reply.text().contains("`web`"), "{}", reply.text());
    assert_eq!(hung.posts(), 1, "sent once, never again");
    let stats = proxy.stats();
    assert_eq!(
        (stats.failures.timed_out, stats.failures.not_retried),
        (1, 0)
    );

    // The next POST goes to a working backend: the hung one is ejected.
    let b = TestBackend::start("b").await;
    proxy.set_backends(2, vec![hung.backend(), b.backend()]);
    let reply = patiently(
        "POST",
        client.request(Method::POST, "/", Bytes::from_static(b"order")),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(served_by(&reply), "b");
    assert_eq!(hung.posts(), 1);
    hung.release();
}

#[tokio::test]
async fn every_backend_hung_gives_504_after_trying_each_once() {
    let a = TestBackend::start_hung("a").await;
    let b = TestBackend::start_hung("b").await;
    let proxy = http_proxy_with(timeout_config(Duration::from_millis(200)), &[&a, &b]).await;
    let reply = patiently("GET", get_once(proxy.local_addr(), "/"))
        .await
        .unwrap();
    assert_eq!(
        reply.status,
        StatusCode::GATEWAY_TIMEOUT,
        "{}",
        reply.text()
    );
    assert_eq!((a.requests(), b.requests()), (1, 1));
    let stats = proxy.stats();
    assert_eq!(stats.failures.timeouts, 2);
    assert_eq!((stats.failures.timed_out, stats.failures.exhausted), (1, 0));
    a.release();
    b.release();
}

#[tokio::test]
async fn the_response_timeout_of_a_streamed_body_starts_once_it_is_sent() {
    let a = TestBackend::start("a").await;
    let mut cfg = timeout_config(Duration::from_millis(200));
    cfg.replay_body_limit = 4;
    let proxy = http_proxy_with(cfg, &[&a]).await;
    // A slow upload: 4 chunks 150 ms apart, well over the response timeout
    // in total, while each wait for the head (after the last chunk) is short.
    let mut conn = TcpStream::connect(proxy.local_addr()).await.unwrap();
    conn.write_all(
        b"POST /echo HTTP/1.1\r\nhost: t\r\ncontent-length: 32\r\nconnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    for chunk in ["aaaaaaaa", "bbbbbbbb", "cccccccc", "dddddddd"] {
        tokio::time::sleep(Duration::from_millis(150)).await;
        conn.write_all(chunk.as_bytes()).await.unwrap();
    }
    let mut answer = String::new();
    patiently("the answer", conn.read_to_string(&mut answer))
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.ends_with("aaaaaaaabbbbbbbbccccccccdddddddd"),
        "{answer}"
    );
    assert_eq!(proxy.stats().failures.timeouts, 0);
}

#[tokio::test]
async fn a_dead_backend_of_the_last_set_costs_no_request_however_long_no_new_set_comes() {
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    let mut cfg = config(EndpointProtocol::Http);
    cfg.eject_for = Duration::from_millis(20);
    cfg.eject_max = Duration::from_millis(80);
    let proxy = http_proxy_with(cfg, &[&a, &b]).await;
    a.kill_and_wait().await;
    // No new set (no conductor): requests keep coming, over many ejection
    // periods, for new and kept-alive connections alike.
    let mut client = Client::new(proxy.local_addr());
    let deadline = Instant::now() + Duration::from_millis(600);
    let mut n = 0;
    while Instant::now() < deadline {
        n += 1;
        let reply = if n % 2 == 0 {
            client.get("/").await.unwrap()
        } else {
            get_once(proxy.local_addr(), "/").await.unwrap()
        };
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        assert_eq!(served_by(&reply), "b");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let stats = proxy.stats();
    assert_eq!(stats.failures.answered(), 0);
    assert!(
        backend_stats(&proxy, "a").connect_failures >= 2,
        "the dead backend was probed again after its ejection ended"
    );
}

// ---------------------------------------------------------------------------
// Handing the listener to another process

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_handed_to_another_endpoint_loses_no_request() {
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    let old = http_proxy(&[&a, &b]).await;
    let addr = old.local_addr();

    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for i in 0..6 {
        let stop = stop.clone();
        clients.push(tokio::spawn(async move {
            let mut client = Client::new(addr);
            let (mut ok, mut failures) = (0usize, Vec::new());
            while !stop.load(Ordering::SeqCst) {
                // Half keep-alive clients, half one connection per request.
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
            (i, ok, failures, client.connects)
        }));
    }
    eventually("some traffic", || a.requests() + b.requests() > 50).await;

    // What another process does with the descriptor it receives.
    let fd = old.dup_listener().unwrap().unwrap();
    let new = EndpointProxy::from_listener(
        config(EndpointProtocol::Http),
        std::net::TcpListener::from(fd),
    )
    .unwrap();
    assert_eq!(new.local_addr(), addr);
    assert!(new.set_backends(1, vec![a.backend(), b.backend()]));
    let outcome = patiently(
        "the old endpoint to leave",
        old.clone()
            .leave(Duration::from_secs(5), Duration::from_secs(5)),
    )
    .await;
    assert_eq!(outcome.aborted, 0);
    assert!(
        old.dup_listener().is_none(),
        "the old endpoint stopped accepting"
    );
    let served_by_old = old.stats().requests;
    let before = new.stats().requests;
    eventually("traffic through the new endpoint", || {
        new.stats().requests > before + 50
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    let mut total = 0;
    for c in clients {
        let (i, ok, failures, connects) = patiently("client", c).await.unwrap();
        assert!(failures.is_empty(), "failed: {failures:?}");
        if i % 2 == 0 {
            assert!(
                connects >= 2,
                "keep-alive client {i} moved to the new endpoint"
            );
        }
        total += ok;
    }
    assert_eq!(
        old.stats().requests,
        served_by_old,
        "nothing reached the old one after it left"
    );
    assert!(total > 100, "{total} requests");
    drop(new);
}

#[tokio::test]
async fn a_leaving_endpoint_tells_each_keep_alive_client_to_reconnect() {
    let a = TestBackend::start("a").await;
    let old = http_proxy(&[&a]).await;
    let addr = old.local_addr();
    let mut client = Client::new(addr);
    assert_eq!(client.get("/").await.unwrap().status, StatusCode::OK);
    let fd = old.dup_listener().unwrap().unwrap();
    let new = EndpointProxy::from_listener(
        config(EndpointProtocol::Http),
        std::net::TcpListener::from(fd),
    )
    .unwrap();
    new.set_backends(1, vec![a.backend()]);
    let leaving = tokio::spawn(old.clone().leave(PATIENCE, PATIENCE));
    eventually("the old endpoint to stop accepting", || {
        old.dup_listener().is_none()
    })
    .await;
    // The idle keep-alive connection was not closed under the client: its
    // next request is answered, with `Connection: close`.
    let reply = client.get("/").await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.headers["connection"], "close");
    assert_eq!(client.connects, 1);
    // Then the old endpoint has nothing left and is gone; the client's next
    // request reaches the new one on a new connection.
    let outcome = patiently("leave", leaving).await.unwrap();
    assert_eq!(outcome.aborted, 0);
    let reply = client.get("/").await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(client.connects, 2);
    assert_eq!(new.stats().requests, 1);
}

// ---------------------------------------------------------------------------
// Lifecycle

#[tokio::test]
async fn shutdown_finishes_in_flight_requests_and_stops_accepting() {
    let a = TestBackend::start("a").await;
    let proxy = http_proxy(&[&a]).await;
    let addr = proxy.local_addr();
    let slow = tokio::spawn(async move { get_once(addr, "/sleep/300").await });
    eventually("the slow request to reach a", || a.active() == 1).await;
    let shutdown = tokio::spawn(proxy.shutdown(PATIENCE));
    // The listener closes at once.
    let deadline = Instant::now() + PATIENCE;
    while TcpStream::connect(addr).await.is_ok() {
        assert!(Instant::now() < deadline, "still accepting");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let reply = patiently("slow request", slow).await.unwrap().unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    let outcome = patiently("shutdown", shutdown).await.unwrap();
    assert_eq!(outcome.aborted, 0);
}

#[tokio::test]
async fn shutdown_is_bounded() {
    let a = TestBackend::start("a").await;
    let proxy = http_proxy(&[&a]).await;
    let addr = proxy.local_addr();
    let hung = tokio::spawn(async move { get_once(addr, "/hang").await });
    eventually("the request to reach a", || a.active() == 1).await;
    let outcome = proxy.shutdown(Duration::from_millis(200)).await;
    assert_eq!(outcome.aborted, 1);
    assert!(patiently("hung request", hung).await.unwrap().is_err());
}

#[tokio::test]
async fn bind_errors_name_the_endpoint_and_the_cause() {
    let first = EndpointProxy::bind(config(EndpointProtocol::Http))
        .await
        .unwrap();
    let mut cfg = config(EndpointProtocol::Http);
    cfg.listen = first.local_addr();
    let error = EndpointProxy::bind(cfg).await.unwrap_err();
    let ProxyError::Bind {
        ref source, addr, ..
    } = error
    else {
        panic!("not a bind error: {error:?}");
    };
    assert_eq!(source.kind(), std::io::ErrorKind::AddrInUse);
    assert_eq!(addr, first.local_addr());
    let message = error.to_string();
    assert!(
        message.contains(&first.local_addr().to_string()),
        "{message}"
    );
    assert!(message.contains("`web`"), "{message}");
    assert!(message.contains("another process"), "{message}");
}

#[tokio::test]
async fn dropping_the_last_handle_stops_the_endpoint() {
    let a = TestBackend::start("a").await;
    let proxy = http_proxy(&[&a]).await;
    let addr = proxy.local_addr();
    let clone = proxy.clone();
    drop(proxy);
    assert_eq!(get_once(addr, "/").await.unwrap().status, StatusCode::OK);
    drop(clone);
    let deadline = Instant::now() + PATIENCE;
    while TcpStream::connect(addr).await.is_ok() {
        assert!(Instant::now() < deadline, "still accepting");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
