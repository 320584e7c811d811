//! Proxy overhead on loopback: requests/s and latency percentiles through an
//! HTTP endpoint versus straight to its backend, at several concurrencies.
//!
//! ```sh
//! cargo bench -p glint-proxy --bench overhead
//! GLINT_BENCH_SECONDS=10 GLINT_BENCH_CONCURRENCY=1,16,64 cargo bench -p glint-proxy --bench overhead
//! ```
//!
//! Everything (load generator, proxy, backend) runs in one process on a
//! two-worker Tokio runtime, each client on its own keep-alive connection
//! sending requests back to back. The figures are for comparing the two
//! paths on the same machine, not absolute capacity: on a 2-core machine the
//! load generator competes with the proxy for the same cores.

// A benchmark harness: failing to set up is a panic with a message.
#![allow(clippy::expect_used)]

use bytes::Bytes;
use glint_model::{EndpointProtocol, InstanceId, Name};
use glint_proxy::{Backend, EndpointConfig, EndpointProxy};
use http_body_util::{BodyExt, Empty, Full};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A minimal backend: `hello` with a Content-Length, keep-alive.
async fn start_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind backend");
    let addr = listener.local_addr().expect("backend address");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_req| async {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"hello"))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// One client: sequential requests on one keep-alive connection until
/// `until`; returns the latency of each, in microseconds.
async fn client(addr: SocketAddr, warmup_until: Instant, until: Instant) -> Vec<u32> {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let mut latencies = Vec::with_capacity(100_000);
    loop {
        let now = Instant::now();
        if now >= until {
            break;
        }
        let req = Request::builder()
            .uri("/")
            .header("host", "bench.test")
            .body(Empty::<Bytes>::new())
            .expect("request");
        sender.ready().await.expect("connection ready");
        let response = sender.send_request(req).await.expect("response");
        assert!(response.status().is_success(), "{}", response.status());
        response.into_body().collect().await.expect("body");
        if now >= warmup_until {
            let micros = now.elapsed().as_micros();
            latencies.push(u32::try_from(micros).unwrap_or(u32::MAX));
        }
    }
    latencies
}

struct Run {
    requests: usize,
    rps: f64,
    p50: u32,
    p90: u32,
    p99: u32,
    max: u32,
}

async fn run(addr: SocketAddr, concurrency: usize, seconds: f64) -> Run {
    let warmup = Duration::from_millis(500);
    let start = Instant::now();
    let warmup_until = start + warmup;
    let until = warmup_until + Duration::from_secs_f64(seconds);
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| tokio::spawn(client(addr, warmup_until, until)))
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("client task"));
    }
    all.sort_unstable();
    let pct = |p: f64| -> u32 {
        if all.is_empty() {
            return 0;
        }
        let i = ((all.len() as f64 - 1.0) * p).round() as usize;
        all[i]
    };
    Run {
        requests: all.len(),
        rps: all.len() as f64 / seconds,
        p50: pct(0.50),
        p90: pct(0.90),
        p99: pct(0.99),
        max: all.last().copied().unwrap_or(0),
    }
}

fn main() {
    let seconds: f64 = env_or("GLINT_BENCH_SECONDS", 4.0);
    let concurrency: String = env_or("GLINT_BENCH_CONCURRENCY", "1,32".to_owned());
    let levels: Vec<usize> = concurrency
        .split(',')
        .filter_map(|c| c.trim().parse().ok())
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let backend = start_backend().await;
        let web = Name::new("bench").expect("name");
        let config = EndpointConfig::new(
            web.clone(),
            SocketAddr::from(([127, 0, 0, 1], 0)),
            EndpointProtocol::Http,
        );
        let proxy = EndpointProxy::bind(config).await.expect("bind proxy");
        proxy.set_backends(
            1,
            vec![Backend {
                instance: InstanceId::new(&web, "00000001").expect("id"),
                addr: backend,
            }],
        );

        println!(
            "glint-proxy overhead: {seconds} s per run after 0.5 s warm-up, keep-alive clients, \
             one backend, loopback, 2 worker threads"
        );
        println!(
            "{:<8} {:>5} {:>9} {:>10} {:>8} {:>8} {:>8} {:>8}",
            "path", "conc", "requests", "req/s", "p50 µs", "p90 µs", "p99 µs", "max µs"
        );
        for &c in &levels {
            let mut rows = Vec::new();
            for (label, addr) in [("direct", backend), ("proxy", proxy.local_addr())] {
                let r = run(addr, c, seconds).await;
                println!(
                    "{label:<8} {c:>5} {:>9} {:>10.0} {:>8} {:>8} {:>8} {:>8}",
                    r.requests, r.rps, r.p50, r.p90, r.p99, r.max
                );
                rows.push(r);
            }
            if let [direct, proxied] = &rows[..] {
                println!(
                    "{:<8} {c:>5} {:>9} {:>9.0}% {:>+8} {:>+8} {:>+8}",
                    "overhead",
                    "",
                    (proxied.rps / direct.rps - 1.0) * 100.0,
                    i64::from(proxied.p50) - i64::from(direct.p50),
                    i64::from(proxied.p90) - i64::from(direct.p90),
                    i64::from(proxied.p99) - i64::from(direct.p99),
                );
            }
        }
        let stats = proxy.stats();
        println!(
            "proxy: {} requests, {} retries, failures {:?}",
            stats.requests, stats.retries, stats.failures
        );
        proxy.shutdown(Duration::from_secs(2)).await;
    });
}
