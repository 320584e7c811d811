//! Volumes through the whole conductor: one writer at a time across every
//! kind of replacement, per-instance slots kept, volumes never removed, and
//! out-of-memory exits reported.

use crate::support::*;
use glint_model::*;
use glint_store::Outcome;
use glint_store::prelude::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

/// `web` as a database: volume `data` mounted read-write at `/data`,
/// declared per instance or shared, with the default rollout (rolling,
/// surge 1 — which one writer at a time must override).
fn db(instances: u32, per_instance: bool, env: &[(&str, &str)]) -> Environment {
    let mut e = web(instances, env);
    e.volumes.insert(
        name("data"),
        Volume {
            size: Some(Bytes(1 << 30)),
            per_instance,
        },
    );
    svc(&mut e).mounts = vec![Mount {
        volume: name("data"),
        path: "/data".into(),
        read_only: false,
    }];
    e
}

/// Watches, every 5 ms of (paused) time, how many instances of `web` run
/// at once; returns the highest count seen and a stop switch.
fn watch_running(h: &Harness) -> (Arc<AtomicUsize>, Arc<AtomicBool>) {
    let most = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let sim = h.sim.clone();
    let (m, s) = (most.clone(), stop.clone());
    tokio::spawn(async move {
        while !s.load(Ordering::Relaxed) {
            let n = sim
                .running()
                .iter()
                .filter(|id| id.service() == "web")
                .count();
            m.fetch_max(n, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    (most, stop)
}

async fn one_healthy(h: &Harness, what: &str, not: &[InstanceId]) -> InstanceId {
    let s = h
        .wait(what, 120, |s| {
            let ids = Harness::healthy(s);
            ids.len() == 1 && !not.contains(&ids[0])
        })
        .await;
    Harness::healthy(&s)[0].clone()
}

// Mutation caught: `decide` ignoring the writers rule (the default surge of
// 1 starts the new instance first: the sim refuses it, `volume_conflicts`
// moves and two instances are seen), claims released before the holder is
// gone, or the store's claim not checked.
#[tokio::test(start_paused = true)]
async fn a_read_write_volume_never_has_two_writers_whatever_replaces_the_instance() {
    let mut h = Harness::new();
    h.start().await;
    let (most, stop) = watch_running(&h);
    let v1 = h.apply(db(1, false, &[]));
    assert_eq!(h.outcome(v1, 30).await.0, Outcome::Converged);
    let mut seen = vec![one_healthy(&h, "the first writer", &[]).await];

    // Killed.
    assert!(h.sim.kill(seen.last().unwrap()));
    seen.push(one_healthy(&h, "a replacement after a kill", &seen).await);
    // A new version.
    let v2 = h.apply(db(1, false, &[("GREETING", "two")]));
    assert_eq!(h.outcome(v2, 60).await.0, Outcome::Converged);
    seen.push(one_healthy(&h, "the new version", &seen).await);
    // Out of memory.
    assert!(h.sim.oom_kill(seen.last().unwrap()));
    seen.push(one_healthy(&h, "a replacement after an OOM kill", &seen).await);
    // Phoenix replacement.
    let mut aged = db(1, false, &[("GREETING", "two")]);
    svc(&mut aged).max_age = Some(Millis::from_secs(30));
    h.apply(aged);
    h.pass_time(40_000).await;
    seen.push(one_healthy(&h, "a replacement past max_age", &seen).await);
    // A rollback.
    let back =
        glint_conductor::ops::rollback(h.store.as_ref(), h.images.as_ref(), Some(v1)).unwrap();
    h.conductor().poke();
    assert_eq!(
        h.outcome(back.version.number, 60).await.0,
        Outcome::Converged
    );
    seen.push(one_healthy(&h, "the rolled-back version", &seen).await);
    // A conductor restart adopts the writer; nothing is started beside it.
    h.restart().await;
    let adopted = one_healthy(&h, "the adopted writer", &[]).await;
    assert_eq!(&adopted, seen.last().unwrap());
    h.pass_time(5_000).await;

    stop.store(true, Ordering::Relaxed);
    assert_eq!(
        h.sim.counters().volume_conflicts,
        0,
        "a second writer was attempted:\n{}",
        h.event_lines()
    );
    assert_eq!(most.load(Ordering::Relaxed), 1, "two instances ran at once");
    let oom = h.events_of("instance.exited");
    assert!(
        oom.iter().any(|e| e.message.contains("out of memory")),
        "{oom:?}"
    );
    assert!(
        h.events()
            .iter()
            .any(|e| e.message.contains("one writer at a time")),
        "the stop-before-start retirements say why:\n{}",
        h.event_lines()
    );
    // Every instance held the one volume, and only while it lived.
    let claims = h.store.volume_claims().unwrap();
    assert!(claims.iter().all(|c| c.volume == "data"));
    assert!(
        claims.len() <= 1,
        "claims of gone instances released: {claims:?}"
    );
    assert_eq!(h.store.volumes().unwrap().len(), 1, "one volume, kept");
}

// Mutation caught: slots chosen afresh (not from the free ones), or a
// per-instance volume named without its slot.
#[tokio::test(start_paused = true)]
async fn per_instance_volumes_keep_their_slots_across_a_rollout() {
    let mut h = Harness::new();
    h.start().await;
    let v1 = h.apply(db(3, true, &[]));
    assert_eq!(h.outcome(v1, 30).await.0, Outcome::Converged);
    let volumes = h.sim.volumes();
    assert_eq!(volumes, vec!["data-0", "data-1", "data-2"]);
    let v2 = h.apply(db(3, true, &[("GREETING", "two")]));
    assert_eq!(h.outcome(v2, 120).await.0, Outcome::Converged);
    assert_eq!(h.sim.volumes(), volumes, "the same three volumes");
    assert_eq!(h.sim.counters().volume_conflicts, 0);
    let mut slots: Vec<Option<u32>> = h
        .store
        .volume_claims()
        .unwrap()
        .iter()
        .filter(|c| h.sim.running().contains(&c.instance))
        .map(|c| c.slot)
        .collect();
    slots.sort();
    assert_eq!(slots, vec![Some(0), Some(1), Some(2)]);
}

// Mutation caught: a retirement, a stop with instances or a retired
// service removing the volume.
#[tokio::test(start_paused = true)]
async fn volumes_outlive_retirement_and_a_stop_with_instances() {
    let mut h = Harness::new();
    h.start().await;
    let v1 = h.apply(db(1, false, &[]));
    h.outcome(v1, 30).await;
    // The service goes away: its instance is retired, its volume stays.
    let mut none = db(1, false, &[]);
    none.services.clear();
    let v2 = h.apply(none);
    h.outcome(v2, 30).await;
    assert!(h.sim.running().is_empty());
    assert_eq!(h.sim.volumes(), vec!["data"]);
    // Back, then the conductor stops with its instances (`glint up` Ctrl-C).
    let v3 = h.apply(db(1, false, &[]));
    h.outcome(v3, 30).await;
    h.stop(true).await;
    assert!(h.sim.running().is_empty());
    assert_eq!(h.sim.volumes(), vec!["data"]);
    let vols = h.store.volumes().unwrap();
    assert_eq!(vols.len(), 1);
    assert!(!vols[0].removing);
}
