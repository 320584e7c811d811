//! `GET /v1/status` with 1,000 instances on the simulated provider: the
//! real conductor (harness of `tests/conductor`, real time), the real API
//! on its unix socket, one fresh connection per request as `glint status`
//! makes them. Prints latency percentiles; asserts nothing (the machine is
//! shared: read the figures with that in mind).
//!
//!     cargo bench -p glint-conductor --bench api_status [-- REQUESTS]

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "../tests/conductor/support.rs"]
mod support;

use glint_conductor::http::client::Client;
use std::time::{Duration, Instant};
use support::*;

fn pct(sorted: &[Duration], q: f64) -> Duration {
    let rank = ((sorted.len() as f64 * q / 100.0).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn main() {
    let requests: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(2_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let mut h = Harness::new();
        h.start().await;
        let mut e = web(1_000, &[]);
        svc(&mut e).health = None;
        svc(&mut e).rollout.deadline = glint_model::Millis::from_secs(600);
        let started = Instant::now();
        let v = h.apply(e);
        h.outcome(v, 600).await;
        h.wait("1,000 healthy", 600, |s| Harness::healthy(s).len() == 1_000)
            .await;
        eprintln!("1,000 instances converged in {:.1}s", started.elapsed().as_secs_f64());
        let (app, _, _) = glint_conductor::http::app(glint_conductor::http::ApiSetup {
            client: h.conductor().client(),
            store: h.store.clone(),
            images: h.images.clone(),
            catalog: None,
            data_dir: h.dir.path().to_owned(),
            clock: h.clock.clone(),
        });
        let socket = h.dir.path().join("bench.sock");
        let (_stop, rx) = tokio::sync::watch::channel(false);
        let _server = glint_conductor::http::serve_unix(socket.clone(), app, rx)
            .await
            .unwrap();
        let client = Client::unix(socket);
        let mut size = 0;
        for _ in 0..50 {
            let (status, body) = client
                .request(hyper::Method::GET, "/v1/status", None)
                .await
                .unwrap();
            assert!(status.is_success());
            size = body.len();
        }
        let mut took = Vec::with_capacity(requests);
        let wall = Instant::now();
        for _ in 0..requests {
            let t = Instant::now();
            let (status, body) = client
                .request(hyper::Method::GET, "/v1/status", None)
                .await
                .unwrap();
            took.push(t.elapsed());
            assert!(status.is_success() && body.len() > 100_000);
        }
        let wall = wall.elapsed();
        took.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "GET /v1/status, 1,000 instances, {requests} requests over the unix socket (a new connection each), body {} KiB:",
            size / 1024
        );
        println!(
            "  p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  max {:.2} ms  ({:.0} requests/s)",
            ms(pct(&took, 50.0)),
            ms(pct(&took, 90.0)),
            ms(pct(&took, 99.0)),
            ms(*took.last().unwrap()),
            requests as f64 / wall.as_secs_f64()
        );
        let (_, metrics) = client
            .request(hyper::Method::GET, "/metrics", None)
            .await
            .unwrap();
        let metrics = String::from_utf8_lossy(&metrics);
        let figure = |name: &str| {
            metrics
                .lines()
                .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        let (sum, count) = (
            figure("glint_conductor_pass_seconds_sum"),
            figure("glint_conductor_pass_seconds_count"),
        );
        println!(
            "  meanwhile: {count:.0} conductor passes, {:.1} ms each on average (they share the runtime with the API)",
            if count > 0.0 { sum / count * 1000.0 } else { 0.0 }
        );
        h.stop(false).await;
    });
}
