//! Benchmark: `docker kill` of an instance → its replacement running.
//!
//! At the provider level, as the conductor will drive it: kill the container
//! through the engine API (what `docker kill` does), wait for the provider's
//! `Exited` event, launch a replacement at once, and time
//!
//! - *noticed*: kill → `Exited` event;
//! - *running*: kill → the replacement's `launch` returned (container running);
//! - *serving*: kill → the replacement answers `GET /healthz` directly.
//!
//! The end-to-end figure through the endpoint proxy comes with the conductor.
//!
//! Run: `cargo bench -p glint-docker --bench kill_replace` (needs Docker;
//! `GLINT_BENCH_ROUNDS` sets the number of rounds, default 20).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/docker/support.rs"]
#[allow(dead_code)]
mod support;

use bollard::query_parameters::KillContainerOptions;
use glint_model::Resources;
use glint_provider::{Provider, ProviderEvent};
use std::time::{Duration, Instant};
use support::*;

fn stats(name: &str, mut xs: Vec<Duration>) {
    xs.sort();
    let pct = |p: usize| xs[(xs.len() * p / 100).min(xs.len() - 1)];
    println!(
        "{name:<9} median {:>7.1} ms   p90 {:>7.1} ms   min {:>7.1} ms   max {:>7.1} ms",
        pct(50).as_secs_f64() * 1e3,
        pct(90).as_secs_f64() * 1e3,
        xs[0].as_secs_f64() * 1e3,
        xs[xs.len() - 1].as_secs_f64() * 1e3,
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    if !docker_available() {
        return;
    }
    let rounds: usize = std::env::var("GLINT_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let mut f = Fixture::new().await;
    let mut current = {
        let spec = f.spec(Resources::default());
        let o = f.provider.launch(spec).await.expect("launch");
        get_when_up(o.addr.expect("addr"), "/healthz").await;
        o.labels.instance
    };
    let (mut noticed, mut running, mut serving) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let _ = f.drain();
        let name = f.provider.container_name(&current);
        let t0 = Instant::now();
        f.provider
            .docker()
            .kill_container(
                &name,
                Some(KillContainerOptions {
                    signal: "SIGKILL".into(),
                }),
            )
            .await
            .expect("kill");
        let id = current.clone();
        f.wait_for(
            "exit",
            move |e| matches!(e, ProviderEvent::Exited { instance, .. } if *instance == id),
        )
        .await;
        noticed.push(t0.elapsed());
        let spec = f.spec(Resources::default());
        let o = f.provider.launch(spec).await.expect("launch");
        running.push(t0.elapsed());
        get_when_up(o.addr.expect("addr"), "/healthz").await;
        serving.push(t0.elapsed());
        f.provider.remove(&current).await.expect("remove");
        current = o.labels.instance;
    }
    println!("docker kill → replacement, {rounds} rounds (provider level):");
    stats("noticed", noticed);
    stats("running", running);
    stats("serving", serving);
}
