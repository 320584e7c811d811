//! End to end: the conductor drives the Docker provider behind an endpoint,
//! while a load loop runs through the endpoint and every drift case is done
//! by hand with the `docker` CLI.
//!
//! For each case it measures, from the CLI command: *detected* (the incident
//! or exit recorded in the store), *replaced* (three ready instances in the
//! endpoint again, the drifted one out of rotation) and *victim gone* (the
//! drifted one drained and terminated), and it counts the requests through
//! the endpoint that failed. At the end it prints the incidents the conductor
//! recorded (what `glint events` shows).
//!
//! Run: `cargo bench -p glint-docker --bench drift_e2e` (needs Docker).
//! `GLINT_BENCH_KILLS` (default 10) sets how many `docker kill` rounds give
//! the kill → serving median.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/docker/support.rs"]
#[allow(dead_code)]
mod support;

use glint_conductor::images::{ImageSource, PrepareError};

use glint_conductor::Providers;
use glint_conductor::decide::MemberPhase;
use glint_conductor::leadership::{Leadership, LocalLeadership};
use glint_docker::{DockerOptions, DockerProvider};
use glint_model::{
    Digest, Endpoint, EndpointProtocol, Environment, HealthCheck, Image, ImageBase, Millis, Name,
    OnExec, Probe, ProviderKind, Resources, Rollout, Service, Strategy,
};
use glint_provider::{LaunchImage, Provider};
use glint_store::prelude::*;
use glint_store::versions::{NewVersion, VersionKind};
use glint_store::{EventFilter, SqliteStore};
use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use support::*;

/// The test image, handed over as the image store will hand it.
struct ArchiveImages {
    archive: PathBuf,
}

impl ImageSource for ArchiveImages {
    fn prepare(&self, digest: &Digest, _kind: ProviderKind) -> Result<LaunchImage, PrepareError> {
        Ok(LaunchImage {
            digest: digest.clone(),
            rootfs: PathBuf::from("/nonexistent"),
            archive: Some(self.archive.clone()),
        })
    }

    fn verify(&self, _digest: &Digest) -> Result<(), PrepareError> {
        Ok(())
    }
}

fn environment(listen: SocketAddr) -> Environment {
    let hello = Name::new("hello").unwrap();
    let web = Name::new("web").unwrap();
    let mut env = Environment::empty(Name::new("hello").unwrap());
    env.images.insert(
        hello.clone(),
        Image {
            from: ImageBase::Scratch,
            steps: Vec::new(),
            tests: Vec::new(),
            entrypoint: vec!["/bin/hello".into()],
            env: BTreeMap::new(),
            workdir: "/".into(),
            port: Some(8080),
            digest: None,
        },
    );
    env.services.insert(
        web.clone(),
        Service {
            image: hello,
            provider: ProviderKind::Docker,
            instances: 3,
            args: Vec::new(),
            env: BTreeMap::from([("GREETING".into(), "hello".into())]),
            port: 8080,
            health: Some(HealthCheck {
                probe: Probe::Http {
                    path: "/healthz".into(),
                },
                interval: Millis(1000),
                timeout: Millis(500),
                healthy_threshold: 1,
                unhealthy_threshold: 3,
                start_timeout: Millis::from_secs(30),
            }),
            rollout: Rollout {
                strategy: Strategy::default(),
                min_healthy: Millis::ZERO,
                deadline: Millis::from_secs(300),
                auto_rollback: true,
                fail_after: 1,
            },
            max_age: None,
            drain: Millis::from_secs(5),
            stop_grace: Millis::from_secs(5),
            resources: Resources::default(),
            on_exec: OnExec::Replace,
            autoscale: None,
            mounts: Vec::new(),
        },
    );
    env.endpoints.insert(
        Name::new("public").unwrap(),
        Endpoint {
            listen,
            service: web,
            protocol: EndpointProtocol::Http,
        },
    );
    env
}

/// The instance that answered a response of the demo app.
fn answered_by(body: &str) -> Option<String> {
    let text = body.split("\r\n\r\n").nth(1)?;
    let after = text.split(" from ").nth(1)?;
    Some(after.split_whitespace().next()?.to_owned())
}

fn ready_ids(status: &glint_conductor::Status) -> Vec<String> {
    status
        .services
        .iter()
        .flat_map(|s| s.instances.iter())
        .filter(|i| i.phase == MemberPhase::Healthy)
        .map(|i| i.id.to_string())
        .collect()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if !docker_available() {
        return;
    }
    let kills: usize = std::env::var("GLINT_BENCH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).unwrap());
    let lease = LocalLeadership::new(dir.path().to_owned(), store.clone())
        .acquire()
        .unwrap();
    let store_id = store.store_id().unwrap();
    let env_name = Name::new("hello").unwrap();
    let network = glint_docker::naming::network_name(&env_name, &store_id);
    let _guard = Cleanup::new(&store_id, &network);
    let provider = DockerProvider::connect_with(
        &store_id,
        &env_name,
        DockerOptions {
            state_dir: Some(dir.path().join("docker")),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let listen = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let image = test_image();
    store
        .create_version(NewVersion {
            env: environment(listen),
            images: BTreeMap::from([(Name::new("hello").unwrap(), image.digest.clone())]),
            root: dir.path().to_owned(),
            sources: Vec::new(),
            kind: VersionKind::Apply,
        })
        .unwrap();
    let mut providers: Providers = Providers::new();
    providers.insert(
        ProviderKind::Docker,
        Arc::new(provider) as Arc<dyn Provider>,
    );
    let mut setup = glint_conductor::Setup::new(
        store.clone(),
        lease,
        Arc::new(ArchiveImages {
            archive: image.archive.clone(),
        }),
        Arc::new(glint_dataplane::LocalDataPlane::new(&store_id)),
    );
    setup.providers = providers;
    let conductor = glint_conductor::start(setup).await.unwrap();
    let status = conductor.status();
    // Three ready instances without `exclude` among them; with `gone`,
    // `exclude` must also have left the service (drained and terminated).
    let wait_ready = |exclude: Option<String>, gone: bool| {
        let mut status = status.clone();
        async move {
            let start = Instant::now();
            loop {
                let ids = ready_ids(&status.borrow());
                let present = exclude.as_ref().is_some_and(|x| {
                    status
                        .borrow()
                        .services
                        .iter()
                        .flat_map(|s| s.instances.iter())
                        .any(|i| i.id.as_str() == x && (gone || i.phase == MemberPhase::Healthy))
                });
                if ids.len() == 3 && !present {
                    return ids;
                }
                assert!(
                    start.elapsed() < Duration::from_secs(60),
                    "not converged: {:?}",
                    status.borrow()
                );
                let _ = tokio::time::timeout(Duration::from_millis(200), status.changed()).await;
            }
        }
    };
    let t0 = Instant::now();
    let first = wait_ready(None, false).await;
    println!(
        "3 containers ready behind {listen} after {:.1} s",
        t0.elapsed().as_secs_f64()
    );

    // Every instance is reachable through the endpoint.
    let mut answered = HashSet::new();
    for _ in 0..60 {
        if let Ok(body) = http_get(listen, "/").await
            && let Some(id) = answered_by(&body)
        {
            answered.insert(id);
        }
        if answered.len() == 3 {
            break;
        }
    }
    let mut expected: Vec<String> = first.clone();
    expected.sort();
    let mut got: Vec<String> = answered.iter().cloned().collect();
    got.sort();
    println!("instances answering through the endpoint: {got:?} (ready: {expected:?})");

    // The load loop: one request after another through the endpoint.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let load = {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        tokio::spawn(async move {
            let end = Instant::now() + Duration::from_secs(600);
            while !stop.load(Ordering::Relaxed) && Instant::now() < end {
                match http_get(listen, "/").await {
                    Ok(r) if r.starts_with("HTTP/1.1 200") => ok.fetch_add(1, Ordering::Relaxed),
                    Ok(r) => {
                        eprintln!("load: {}", r.lines().next().unwrap_or(""));
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                    Err(e) => {
                        eprintln!("load: {e}");
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        })
    };

    let name = |id: &str| format!("glint-hello-{id}");
    type Action = Box<dyn Fn(&str)>;
    let cases: Vec<(&str, Action)> = vec![
        ("docker stop", Box::new(|c| drop(docker(&["stop", c])))),
        ("docker rm -f", Box::new(|c| drop(docker(&["rm", "-f", c])))),
        ("docker pause", Box::new(|c| drop(docker(&["pause", c])))),
        (
            "docker exec",
            Box::new(|c| {
                let _ = docker_ok(&["exec", c, "/bin/hello", "--x"]);
            }),
        ),
        (
            "docker update",
            Box::new(|c| drop(docker(&["update", "--cpus", "0.2", c]))),
        ),
        (
            "filesystem change",
            Box::new(|c| {
                let dir = docker(&["inspect", "-f", "{{.GraphDriver.Data.MergedDir}}", c]);
                std::fs::write(format!("{dir}/implant"), b"x").unwrap();
            }),
        ),
        (
            "network disconnect",
            Box::new(move |c| {
                let net = docker(&[
                    "inspect",
                    "-f",
                    "{{range $k, $v := .NetworkSettings.Networks}}{{$k}}{{end}}",
                    c,
                ]);
                drop(docker(&["network", "disconnect", &net, c]));
            }),
        ),
        (
            "network connect",
            Box::new(|c| drop(docker(&["network", "connect", "bridge", c]))),
        ),
    ];
    println!("\ndrift case             detected   replaced   victim gone   failed requests so far");
    let mut ready = first;
    for (what, action) in &cases {
        let victim = ready[0].clone();
        let wall = glint_store::now_ms();
        let t = Instant::now();
        action(&name(&victim));
        ready = wait_ready(Some(victim.clone()), false).await;
        let replaced = t.elapsed();
        wait_ready(Some(victim.clone()), true).await;
        let gone = t.elapsed();
        let detected = store
            .events(&EventFilter {
                instance: Some(victim.clone()),
                ..Default::default()
            })
            .unwrap()
            .into_iter()
            .find(|e| {
                e.at >= wall
                    && matches!(
                        e.kind.as_str(),
                        "drift" | "instance.exited" | "instance.vanished"
                    )
            })
            .map(|e| format!("{:>5} ms", e.at - wall))
            .unwrap_or_else(|| "    none".into());
        println!(
            "{what:<20} {detected}   {:>5.0} ms   {:>8.0} ms   {}",
            replaced.as_secs_f64() * 1e3,
            gone.as_secs_f64() * 1e3,
            failed.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Not an instance: a foreign container attached to Glint's network.
    let foreign = format!("foreign-{}", &store_id[..8.min(store_id.len())]);
    let mut foreign_guard = Cleanup::new(&format!("none-{store_id}"), &network);
    foreign_guard.container(&foreign);
    docker(&[
        "run",
        "-d",
        "--name",
        &foreign,
        &glint_docker::image_tag(&image.digest),
    ]);
    let t = Instant::now();
    docker(&["network", "connect", &network, &foreign]);
    loop {
        let nets = docker(&[
            "inspect",
            "-f",
            "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}",
            &foreign,
        ]);
        if !nets.contains(&network) {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "foreign container stays"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!(
        "foreign container attached to {network}: disconnected after {:.0} ms",
        t.elapsed().as_secs_f64() * 1e3
    );

    // docker kill → a replacement serving through the endpoint.
    let mut times = Vec::new();
    for _ in 0..kills {
        let victim = ready[0].clone();
        let known: HashSet<String> = ready.iter().cloned().collect();
        let t = Instant::now();
        docker(&["kill", &name(&victim)]);
        // Serving = the endpoint answers from an instance that did not exist.
        let fresh = loop {
            if let Ok(body) = http_get(listen, "/").await
                && let Some(id) = answered_by(&body)
                && !known.contains(&id)
            {
                break id;
            }
            assert!(t.elapsed() < Duration::from_secs(60), "no replacement");
        };
        times.push(t.elapsed());
        let _ = fresh;
        ready = wait_ready(Some(victim), false).await;
    }
    times.sort();
    println!(
        "\ndocker kill → replacement serving through the endpoint, {kills} rounds: median {:.0} ms, min {:.0} ms, max {:.0} ms",
        times[times.len() / 2].as_secs_f64() * 1e3,
        times[0].as_secs_f64() * 1e3,
        times[times.len() - 1].as_secs_f64() * 1e3
    );
    // A rolling update (surge 1) of the 3 containers to a new setting, the
    // Glint side of bench/swarm.sh's start-first rollout.
    let failed_before = failed.load(Ordering::Relaxed);
    let ok_before = ok.load(Ordering::Relaxed);
    let mut v2 = environment(listen);
    for svc in v2.services.values_mut() {
        svc.env.insert("GREETING".into(), "v2".into());
    }
    let t = Instant::now();
    store
        .create_version(NewVersion {
            env: v2,
            images: BTreeMap::from([(Name::new("hello").unwrap(), image.digest.clone())]),
            root: dir.path().to_owned(),
            sources: Vec::new(),
            kind: VersionKind::Apply,
        })
        .unwrap();
    conductor.poke();
    let mut watch = conductor.status();
    loop {
        let done = {
            let st = watch.borrow();
            st.version.map(|v| v.0) == Some(2)
                && st
                    .services
                    .iter()
                    .all(|s| s.ready_current == 3 && s.instances.iter().all(|i| i.current))
        };
        if done {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(120), "rollout stuck");
        let _ = tokio::time::timeout(Duration::from_millis(200), watch.changed()).await;
    }
    println!(
        "glint rolling update of 3 containers: converged in {:.1} s; requests ok={} failed={}",
        t.elapsed().as_secs_f64(),
        ok.load(Ordering::Relaxed) - ok_before,
        failed.load(Ordering::Relaxed) - failed_before
    );

    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    println!(
        "load through the endpoint during all of the above: {} ok, {} failed",
        ok.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed)
    );
    println!("\nincidents and exits recorded (glint events):");
    for e in store.events(&EventFilter::default()).unwrap() {
        if e.kind == "drift" || e.kind == "instance.exited" {
            println!("  [{}] {}", e.kind, e.message);
        }
    }
    conductor.shutdown(true).await;
}
