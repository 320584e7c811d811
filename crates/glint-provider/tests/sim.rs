//! The simulated provider: real sockets, real HTTP, tokio time.

// Helpers stop at the first surprise, like the tests they serve.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use glint_model::{Digest, InstanceId, Labels, Name, Resources, VersionNumber};
use glint_provider::sim::SimCounters;
use glint_provider::{
    LaunchImage, LaunchSpec, Provider, ProviderError, ProviderEvent, RunState, SimProvider,
};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PATIENCE: Duration = Duration::from_secs(60);

fn spec(env: &[(&str, &str)]) -> LaunchSpec {
    static N: AtomicU64 = AtomicU64::new(1);
    let service = Name::new("web").unwrap();
    LaunchSpec {
        mounts: Vec::new(),
        secrets: Vec::new(),
        own_network: false,
        glint: None,
        labels: Labels {
            store: "sim".into(),
            environment: Name::new("test").unwrap(),
            instance: InstanceId::from_entropy(&service, N.fetch_add(7919, Ordering::Relaxed)),
            service,
            version: VersionNumber(1),
            image: Digest::of(b"img"),
        },
        image: LaunchImage {
            digest: Digest::of(b"img"),
            rootfs: "/nonexistent".into(),
            archive: None,
        },
        argv: vec!["/bin/app".into()],
        env: env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<BTreeMap<_, _>>(),
        workdir: "/".into(),
        port: 8080,
        resources: Resources::default(),
    }
}

/// One HTTP/1.1 request on `stream` (kept alive); returns (status, body).
async fn request(stream: &mut TcpStream, path: &str) -> std::io::Result<(u16, String)> {
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
        .await?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().to_owned())
                })
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            if body.len() >= len {
                let status = head
                    .split_whitespace()
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                return Ok((status, body.to_owned()));
            }
        }
    }
}

async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    request(&mut s, path).await.unwrap()
}

async fn next_exit(
    rx: &mut tokio::sync::broadcast::Receiver<ProviderEvent>,
    id: &InstanceId,
) -> RunState {
    tokio::time::timeout(PATIENCE, async {
        loop {
            if let ProviderEvent::Exited { instance, state } = rx.recv().await.unwrap()
                && &instance == id
            {
                return state;
            }
        }
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn instances_answer_like_the_demo_app() {
    let sim = SimProvider::new();
    let s = spec(&[]);
    let id = s.labels.instance.clone();
    let obs = sim.launch(s).await.unwrap();
    assert_eq!(obs.state, RunState::Running);
    let addr = obs.addr.unwrap();
    assert_eq!(get(addr, "/").await, (200, format!("hello from {id}\n")));
    assert_eq!(get(addr, "/healthz").await.0, 200);
    assert_eq!(get(addr, "/nope").await.0, 404);
    assert_eq!(get(addr, "/sleep/1").await.0, 200);
    assert!(sim.set_healthy(&id, false));
    assert_eq!(get(addr, "/healthz").await.0, 503);
    assert!(sim.set_healthy(&id, true));
    assert_eq!(get(addr, "/healthz").await.0, 200);

    let sick = sim.launch(spec(&[("HEALTHY", "false")])).await.unwrap();
    let sick_addr = sick.addr.unwrap();
    assert_eq!(get(sick_addr, "/healthz").await.0, 503);
    assert_eq!(get(sick_addr, "/").await.0, 200);
    assert_ne!(addr, sick_addr);
}

#[tokio::test]
async fn kill_drops_listener_and_connections_and_reports_the_exit() {
    let sim = SimProvider::new();
    let mut events = sim.subscribe();
    let s = spec(&[]);
    let id = s.labels.instance.clone();
    let addr = sim.launch(s).await.unwrap().addr.unwrap();
    let mut open = TcpStream::connect(addr).await.unwrap();
    assert_eq!(request(&mut open, "/").await.unwrap().0, 200);

    assert!(sim.kill(&id));
    let killed = RunState::Exited {
        code: None,
        signal: Some(9),
        oom: false,
    };
    assert_eq!(next_exit(&mut events, &id).await, killed);
    // The kept-alive connection is gone, and so is the listener.
    assert!(request(&mut open, "/").await.is_err());
    assert!(TcpStream::connect(addr).await.is_err());
    assert_eq!(sim.observe().await.unwrap()[0].state, killed);
    assert!(!sim.kill(&id), "a dead instance cannot be killed again");
    assert_eq!(
        sim.counters(),
        SimCounters {
            launches: 1,
            kills: 1,
            ..SimCounters::default()
        }
    );
}

#[tokio::test(start_paused = true)]
async fn start_delay_holds_back_listening() {
    let sim = SimProvider::new();
    let obs = sim
        .launch(spec(&[("START_DELAY_MS", "60000")]))
        .await
        .unwrap();
    let addr = obs.addr.unwrap();
    // Time is paused: no time passes during this blocking connect.
    assert!(std::net::TcpStream::connect(addr).is_err());
    tokio::time::sleep(Duration::from_secs(61)).await;
    let mut connected = false;
    for _ in 0..1000 {
        if std::net::TcpStream::connect(addr).is_ok() {
            connected = true;
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(connected, "never listened after the start delay");
}

#[tokio::test(start_paused = true)]
async fn terminate_is_polite_unless_sigterm_is_ignored() {
    let sim = SimProvider::new();
    let mut events = sim.subscribe();
    let polite = spec(&[]);
    let polite_id = polite.labels.instance.clone();
    sim.launch(polite).await.unwrap();
    let start = tokio::time::Instant::now();
    sim.terminate(&polite_id, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(
        next_exit(&mut events, &polite_id).await,
        RunState::Exited {
            code: None,
            signal: Some(15),
            oom: false,
        }
    );

    let stubborn = spec(&[]);
    let stubborn_id = stubborn.labels.instance.clone();
    sim.launch(stubborn).await.unwrap();
    assert!(sim.set_ignores_sigterm(&stubborn_id, true));
    let start = tokio::time::Instant::now();
    sim.terminate(&stubborn_id, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(30),
        "waited the grace period"
    );
    assert_eq!(
        next_exit(&mut events, &stubborn_id).await,
        RunState::Exited {
            code: None,
            signal: Some(9),
            oom: false,
        }
    );

    // The switch can also come from the launch environment.
    let from_env = spec(&[("SIM_IGNORE_SIGTERM", "true")]);
    let from_env_id = from_env.labels.instance.clone();
    sim.launch(from_env).await.unwrap();
    let start = tokio::time::Instant::now();
    sim.terminate(&from_env_id, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(5));

    // Terminating again, or something unknown, is fine.
    sim.terminate(&polite_id, Duration::from_secs(1))
        .await
        .unwrap();
    sim.terminate(&InstanceId::parse("web-zzzzzzzz").unwrap(), Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(sim.counters().terminations, 3);
    assert_eq!(sim.counters().running, 0);
}

#[tokio::test(start_paused = true)]
async fn launches_fail_and_delay_on_command() {
    let sim = SimProvider::new();
    sim.fail_next_launches(2);
    for _ in 0..2 {
        assert!(matches!(
            sim.launch(spec(&[])).await,
            Err(ProviderError::Launch { .. })
        ));
    }
    sim.launch(spec(&[])).await.unwrap();

    sim.set_launch_delay(Duration::from_secs(5));
    let start = tokio::time::Instant::now();
    let s = spec(&[]);
    sim.launch(s.clone()).await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(5));
    // The same id twice is refused.
    assert!(sim.launch(s).await.is_err());
    let c = sim.counters();
    assert_eq!((c.launches, c.failed_launches, c.running), (2, 3, 2));
}

#[tokio::test]
async fn a_clone_keeps_instances_across_a_conductor_restart() {
    let first = SimProvider::new();
    let mut ids = Vec::new();
    for _ in 0..3 {
        let s = spec(&[]);
        ids.push(s.labels.instance.clone());
        first.launch(s).await.unwrap();
    }
    let second = first.clone();
    drop(first);
    let seen = second.observe().await.unwrap();
    let mut seen_ids: Vec<InstanceId> = seen.iter().map(|o| o.labels.instance.clone()).collect();
    seen_ids.sort();
    ids.sort();
    assert_eq!(seen_ids, ids);
    assert!(seen.iter().all(|o| o.state == RunState::Running));
    // Still serving, and still reporting to the new subscriber.
    assert_eq!(get(seen[0].addr.unwrap(), "/").await.0, 200);
    let mut events = second.subscribe();
    second.kill(&ids[0]);
    next_exit(&mut events, &ids[0]).await;
    // Remove forgets (and stops) instances.
    for id in &ids {
        second.remove(id).await.unwrap();
    }
    assert!(second.observe().await.unwrap().is_empty());
    assert!(TcpStream::connect(seen[1].addr.unwrap()).await.is_err());
}
