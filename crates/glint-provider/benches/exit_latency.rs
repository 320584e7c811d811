//! How fast the process provider notices that an instance died.
//!
//! For each instance: `kill -9` its leader, then measure until the provider's
//! `Exited` event arrives. Measured for instances the provider launched
//! (awaited through `tokio::process`) and for instances it adopted after a
//! simulated conductor restart (watched through a pidfd).
//!
//! Also reports, for namespaced instances, what each instance's init costs
//! in memory (`/proc/<init>/smaps_rollup`: resident, proportional and
//! private-dirty kilobytes), and the launch time (from `launch` called to
//! `launch` returned, i.e. until the program has been executed).
//!
//! Run: `cargo bench -p glint-provider --bench exit_latency` (`BENCH_N`
//! instances per kind, default 50).

// A test or benchmark stops at the first surprise.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use common::*;
use glint_provider::{Isolation, ProcessProvider, Provider, log_paths};
use std::time::{Duration, Instant};

fn main() {
    run_app_if_requested();
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks for a list; there are no tests here
    }
    let n: usize = std::env::var("BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let mut isolations = vec![Isolation::None];
    if Isolation::detect() == Isolation::Namespaces {
        isolations.push(Isolation::Namespaces);
    }
    for iso in isolations {
        runtime().block_on(measure(iso, n));
    }
}

async fn measure(iso: Isolation, n: usize) {
    let state = state_dir();
    let store = unique_store("bench");

    let own = {
        let p = ProcessProvider::open_with(state.path(), &store, iso).unwrap();
        let mut events = p.subscribe();
        let mut times = Vec::with_capacity(n);
        let mut launches = Vec::with_capacity(n);
        for _ in 0..n {
            let s = spec(&store, "web", "sleep");
            let id = s.labels.instance.clone();
            let t = Instant::now();
            let obs = p.launch(s).await.unwrap();
            launches.push(t.elapsed());
            wait_for_text(&log_paths(state.path(), &id).stdout, "ready");
            let t = Instant::now();
            kill9(handle_pid(&obs.handle));
            next_exit(&mut events, &id).await;
            times.push(t.elapsed());
            p.remove(&id).await.unwrap();
        }
        report(&format!("launch, {iso}"), launches);
        times
    };

    let adopted = {
        let first = ProcessProvider::open_with(state.path(), &store, iso).unwrap();
        let mut launched = Vec::with_capacity(n);
        for _ in 0..n {
            let s = spec(&store, "web", "sleep");
            let id = s.labels.instance.clone();
            let obs = first.launch(s).await.unwrap();
            launched.push((id, handle_pid(&obs.handle)));
        }
        for (id, _) in &launched {
            wait_for_text(&log_paths(state.path(), id).stdout, "ready");
        }
        if iso == Isolation::Namespaces {
            let inits: Vec<i32> = launched.iter().map(|(_, pid)| *pid).collect();
            report_memory(&inits);
        }
        drop(first);
        let t = Instant::now();
        let second = ProcessProvider::open_with(state.path(), &store, iso).unwrap();
        assert_eq!(second.observe().await.unwrap().len(), n);
        report(&format!("reopen + adopt {n}, {iso}"), vec![t.elapsed()]);
        let mut events = second.subscribe();
        let mut times = Vec::with_capacity(n);
        for (id, pid) in &launched {
            let t = Instant::now();
            kill9(*pid);
            next_exit(&mut events, id).await;
            times.push(t.elapsed());
            second.remove(id).await.unwrap();
        }
        times
    };

    report(&format!("kill -9 to Exited, own child, {iso}"), own);
    report(
        &format!("kill -9 to Exited, adopted (pidfd), {iso}"),
        adopted,
    );
}

fn report(what: &str, mut times: Vec<Duration>) {
    times.sort();
    let pick = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    println!(
        "{what}: n={} p50={:?} p90={:?} p99={:?} max={:?}",
        times.len(),
        pick(0.5),
        pick(0.9),
        pick(0.99),
        pick(1.0)
    );
}

/// Mean `Rss`, `Pss` and `Private_Dirty` (kB) of the given processes.
fn report_memory(pids: &[i32]) {
    let mut sums = [0u64; 3];
    for pid in pids {
        let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap();
        for (i, key) in ["Rss:", "Pss:", "Private_Dirty:"].iter().enumerate() {
            let kb: u64 = text
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            sums[i] += kb;
        }
    }
    let n = pids.len().max(1) as u64;
    println!(
        "init memory, namespaced: n={} rss={}kB pss={}kB private_dirty={}kB (mean per instance)",
        pids.len(),
        sums[0] / n,
        sums[1] / n,
        sums[2] / n
    );
}
