//! How the simulated provider scales: launch thousands of instances, observe
//! them, talk to a sample, kill them all.
//!
//! Run: `cargo bench -p glint-provider --bench sim_scale` (`BENCH_N`
//! instances, default 5000).

// A test or benchmark stops at the first surprise.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use glint_model::{Digest, InstanceId, Labels, Name, Resources, VersionNumber};
use glint_provider::{LaunchImage, LaunchSpec, Provider, ProviderEvent, SimProvider};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::time::Instant;

fn spec(i: u64) -> LaunchSpec {
    let service = Name::new("web").unwrap();
    LaunchSpec {
        mounts: Vec::new(),
        secrets: Vec::new(),
        own_network: false,
        glint: None,
        labels: Labels {
            store: "bench".into(),
            environment: Name::new("bench").unwrap(),
            instance: InstanceId::from_entropy(&service, i.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
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
        env: BTreeMap::new(),
        workdir: "/".into(),
        port: 8080,
        resources: Resources::default(),
    }
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let n: u64 = std::env::var("BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let sim = SimProvider::new();
        let rss_before = rss_kib();
        let t = Instant::now();
        let mut addrs = Vec::with_capacity(n as usize);
        for i in 0..n {
            let obs = sim.launch(spec(i)).await.unwrap();
            addrs.push((obs.labels.instance, obs.addr.unwrap()));
        }
        let launch = t.elapsed();
        let rss_after = rss_kib();

        let t = Instant::now();
        let seen = sim.observe().await.unwrap();
        let observe = t.elapsed();
        assert_eq!(seen.len() as u64, n);

        let sample = 200.min(addrs.len());
        let step = (addrs.len() / sample).max(1);
        let t = Instant::now();
        for (id, addr) in addrs.iter().step_by(step).take(sample) {
            let addr = *addr;
            let body = tokio::task::spawn_blocking(move || {
                let mut s = std::net::TcpStream::connect(addr).unwrap();
                s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                    .unwrap();
                let mut r = String::new();
                s.read_to_string(&mut r).unwrap();
                r
            })
            .await
            .unwrap();
            assert!(body.contains(id.as_str()));
        }
        let requests = t.elapsed();

        let mut events = sim.subscribe();
        let t = Instant::now();
        for (id, _) in &addrs {
            sim.kill(id);
        }
        let mut exits = 0;
        // The channel holds 4096 events: a slower reader is told how many it
        // missed (a conductor would resync), which still counts them here.
        while exits < n {
            match events.recv().await {
                Ok(ProviderEvent::Exited { .. }) => exits += 1,
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(k)) => exits += k,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            }
        }
        let kill = t.elapsed();

        println!("sim scale: n={n}");
        println!(
            "  launch all:   {launch:?} ({:?} per instance)",
            launch / n as u32
        );
        println!(
            "  memory:       {} KiB RSS for {n} instances ({} bytes each)",
            rss_after - rss_before,
            (rss_after - rss_before) * 1024 / n
        );
        println!("  observe:      {observe:?}");
        println!("  {sample} GETs:    {requests:?} (sequential, new connection each)");
        println!("  kill all + {n} exit events: {kill:?}");
    });
}
