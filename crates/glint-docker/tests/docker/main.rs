//! Tests of the Docker provider against the real Docker Engine.
//!
//! Every test uses its own store id, so tests run in parallel without seeing
//! each other, and a guard removes what a test created even when it fails.
//! Drift is made by hand with the `docker` CLI, as an operator would. The
//! latencies printed (`--nocapture`) are informative; the figures that count
//! come from the benchmark, not from assertions here.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use glint_docker::{DriftKind, image_tag, log_paths};
use glint_model::Resources;
use glint_provider::{Provider, ProviderEvent, RunState};
use std::collections::HashMap;
use std::time::Duration;
use support::*;

macro_rules! require_docker {
    () => {
        if !docker_available() {
            return;
        }
    };
}

fn is_drift(kind: DriftKind, id: &glint_model::InstanceId) -> impl Fn(&ProviderEvent) -> bool {
    let id = id.clone();
    move |ev| matches!(ev, ProviderEvent::Drift { instance, kind: k, .. } if *instance == id && *k == kind)
}

fn is_exit(id: &glint_model::InstanceId) -> impl Fn(&ProviderEvent) -> bool {
    let id = id.clone();
    move |ev| matches!(ev, ProviderEvent::Exited { instance, .. } if *instance == id)
}

fn inspect(name: &str) -> serde_json::Value {
    let out = docker(&["inspect", name]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("inspect json");
    v[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launch_runs_a_locked_down_labelled_container_on_glints_network() {
    require_docker!();
    let mut f = Fixture::new().await;
    let spec = f.limited_spec();
    let id = spec.labels.instance.clone();
    let o = f.provider.launch(spec.clone()).await.expect("launch");
    assert_eq!(o.labels, spec.labels);
    assert_eq!(o.state, RunState::Running);

    let name = f.provider.container_name(&id);
    let c = inspect(&name);
    let labels = &c["Config"]["Labels"];
    for (k, v) in spec.labels.to_map() {
        assert_eq!(labels[&k], v, "label {k}");
    }
    let host = &c["HostConfig"];
    assert_eq!(host["ReadonlyRootfs"], true);
    assert!(host["Tmpfs"]["/tmp"].is_string(), "tmpfs /tmp: {host}");
    assert_eq!(host["Memory"], 64 << 20);
    assert_eq!(host["NanoCpus"], 500_000_000);
    assert_eq!(host["RestartPolicy"]["Name"], "no");
    let env: Vec<&str> = c["Config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(env.contains(&"GREETING=bonjour"), "{env:?}");
    assert!(env.contains(&"PORT=8080"), "{env:?}");
    let networks: Vec<&String> = c["NetworkSettings"]["Networks"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(networks, vec![f.provider.network_name()]);

    // The image was loaded from the archive, verified and tagged.
    let image = test_image();
    assert_eq!(
        docker(&[
            "image",
            "inspect",
            "-f",
            "{{.Id}}",
            &image_tag(&image.digest)
        ]),
        image.config.as_str()
    );
    assert_eq!(c["Image"], image.config.as_str());

    // The root filesystem is read-only, /tmp is writable tmpfs.
    let pid = c["State"]["Pid"].as_i64().unwrap();
    assert!(std::fs::write(format!("/proc/{pid}/root/x"), b"x").is_err());
    assert!(std::fs::write(format!("/proc/{pid}/root/tmp/x"), b"x").is_ok());

    // Reachable at Observed.addr.
    let addr = o.addr.expect("addr");
    let body = get_when_up(addr, "/").await;
    assert!(body.contains(&format!("bonjour from {id}")), "{body}");

    // Nothing is reported about an untouched container, even after resyncs
    // (this also exercises the diff baseline: a tmpfs file is not drift).
    f.provider.resync().await.expect("resync");
    f.provider.resync().await.expect("resync");
    let drift: Vec<_> = f
        .drain()
        .into_iter()
        .filter(|e| !matches!(e, ProviderEvent::Resync))
        .collect();
    assert!(drift.is_empty(), "unexpected events: {drift:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_archive_is_refused_and_leaves_nothing() {
    require_docker!();
    let mut f = Fixture::new().await;
    let mut spec = f.spec(Resources::default());
    let bogus = glint_model::Digest::of(b"not this image");
    spec.image.digest = bogus.clone();
    spec.labels.image = bogus.clone();
    let err = f.provider.launch(spec.clone()).await.expect_err("refused");
    let msg = err.to_string();
    assert!(msg.contains(bogus.as_str()), "{msg}");
    assert!(
        f.provider.observe().await.expect("observe").is_empty(),
        "nothing launched"
    );
    let _ = f.drain();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_kill_is_noticed_at_once() {
    require_docker!();
    let mut f = Fixture::new().await;
    let spec = f.spec(Resources::default());
    let id = spec.labels.instance.clone();
    f.provider.launch(spec).await.expect("launch");
    docker(&["kill", &f.provider.container_name(&id)]);
    let (ev, _) = f.wait_for("exit after docker kill", is_exit(&id)).await;
    assert_eq!(
        ev,
        ProviderEvent::Exited {
            instance: id.clone(),
            state: RunState::Exited {
                code: None,
                signal: Some(9),
                oom: false,
            }
        }
    );
    // Observe still lists it (exited, not yet removed); remove forgets it.
    let seen = f.provider.observe().await.expect("observe");
    assert_eq!(seen.len(), 1);
    assert!(matches!(seen[0].state, RunState::Exited { .. }));
    f.provider.remove(&id).await.expect("remove");
    assert!(f.provider.observe().await.expect("observe").is_empty());
    f.provider.remove(&id).await.expect("remove is idempotent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_stop_and_docker_rm_are_noticed() {
    require_docker!();
    let mut f = Fixture::new().await;
    let a = f.spec(Resources::default());
    let b = f.spec(Resources::default());
    let (a, b) = (a.labels.instance.clone(), {
        f.provider.launch(a).await.expect("launch a");
        let id = b.labels.instance.clone();
        f.provider.launch(b).await.expect("launch b");
        id
    });
    docker(&["stop", "-t", "1", &f.provider.container_name(&a)]);
    f.wait_for("exit after docker stop", is_exit(&a)).await;
    docker(&["rm", "-f", &f.provider.container_name(&b)]);
    f.wait_for("exit after docker rm -f", is_exit(&b)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminate_stops_with_sigterm_and_is_idempotent() {
    require_docker!();
    let mut f = Fixture::new().await;
    let spec = f.spec(Resources::default());
    let id = spec.labels.instance.clone();
    f.provider.launch(spec).await.expect("launch");
    f.provider
        .terminate(&id, Duration::from_secs(5))
        .await
        .expect("terminate");
    let c = inspect(&f.provider.container_name(&id));
    assert_eq!(c["State"]["Running"], false);
    // SIGTERM (15) ended it, not SIGKILL: Docker's init as PID 1 passes it on
    // to the program, which has no handler and so ends at once.
    assert_eq!(c["State"]["ExitCode"], 143);
    f.provider
        .terminate(&id, Duration::from_secs(5))
        .await
        .expect("terminate again");
    f.provider.remove(&id).await.expect("remove");
    f.provider
        .terminate(&id, Duration::from_secs(5))
        .await
        .expect("terminate unknown");
    // Logs were kept before the container went.
    let logs = log_paths(f.state.path(), &id);
    let out = std::fs::read_to_string(&logs.stdout).expect("stdout.log");
    assert!(out.contains(&format!("{id} listening")), "{out}");
    assert!(logs.stderr.is_file());
    let _ = f.drain();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminate_of_a_paused_container_works() {
    require_docker!();
    let mut f = Fixture::new().await;
    let spec = f.spec(Resources::default());
    let id = spec.labels.instance.clone();
    f.provider.launch(spec).await.expect("launch");
    let name = f.provider.container_name(&id);
    docker(&["pause", &name]);
    f.wait_for("paused drift", is_drift(DriftKind::Paused, &id))
        .await;
    f.provider
        .terminate(&id, Duration::from_secs(2))
        .await
        .expect("terminate");
    assert_eq!(inspect(&name)["State"]["Running"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_exec_taints_the_instance() {
    require_docker!();
    let mut f = Fixture::new().await;
    let spec = f.spec(Resources::default());
    let id = spec.labels.instance.clone();
    f.provider.launch(spec).await.expect("launch");
    // The image holds only the app; running it again is a command all the same.
    let _ = docker_ok(&[
        "exec",
        &f.provider.container_name(&id),
        "/bin/hello",
        "--probe",
    ]);
    let (ev, _) = f
        .wait_for("exec drift", is_drift(DriftKind::Exec, &id))
        .await;
    let ProviderEvent::Drift { what, .. } = ev else {
        unreachable!()
    };
    assert!(
        what.contains("docker exec ran `/bin/hello --probe`"),
        "{what}"
    );
    assert!(what.contains("as root"), "{what}");
    // A second exec is reported again (for `on_exec = report` services).
    let _ = docker_ok(&[
        "exec",
        "-u",
        "1000",
        &f.provider.container_name(&id),
        "/bin/hello",
        "--again",
    ]);
    let (ev, _) = f
        .wait_for("second exec drift", is_drift(DriftKind::Exec, &id))
        .await;
    let ProviderEvent::Drift { what, .. } = ev else {
        unreachable!()
    };
    assert!(
        what.contains("--again") && what.contains("as 1000"),
        "{what}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_update_of_limits_is_drift() {
    require_docker!();
    let mut f = Fixture::new().await;
    let spec = f.limited_spec();
    let id = spec.labels.instance.clone();
    f.provider.launch(spec).await.expect("launch");
    docker(&[
        "update",
        "--memory",
        "128m",
        "--memory-swap",
        "256m",
        &f.provider.container_name(&id),
    ]);
    let (ev, _) = f
        .wait_for("limits drift", is_drift(DriftKind::Limits, &id))
        .await;
    let ProviderEvent::Drift { what, .. } = ev else {
        unreachable!()
    };
    assert!(
        what.contains("memory is 134217728 instead of 67108864"),
        "{what}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_filesystem_is_drift() {
    require_docker!();
    let mut f = Fixture::new().await;
    let spec = f.spec(Resources::default());
    let id = spec.labels.instance.clone();
    f.provider.launch(spec).await.expect("launch");
    // The root is read-only inside the container, so the change is made the
    // way an intruder on the host would: in the container's filesystem as
    // the storage driver exposes it.
    let c = inspect(&f.provider.container_name(&id));
    let data = &c["GraphDriver"]["Data"];
    let dir = data["MergedDir"]
        .as_str()
        .or(data["UpperDir"].as_str())
        .expect("storage driver exposes the container's filesystem");
    std::fs::write(format!("{dir}/implant"), b"x").expect("write implant");
    let (ev, _) = f
        .wait_for("filesystem drift", is_drift(DriftKind::Filesystem, &id))
        .await;
    let ProviderEvent::Drift { what, .. } = ev else {
        unreachable!()
    };
    assert!(what.contains("added /implant"), "{what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewiring_networks_is_drift() {
    require_docker!();
    let mut f = Fixture::new().await;
    let a = f.spec(Resources::default());
    let b = f.spec(Resources::default());
    let a_id = a.labels.instance.clone();
    let b_id = b.labels.instance.clone();
    f.provider.launch(a).await.expect("launch");
    f.provider.launch(b).await.expect("launch");
    let net = f.provider.network_name().to_owned();
    docker(&[
        "network",
        "disconnect",
        &net,
        &f.provider.container_name(&a_id),
    ]);
    let (ev, _) = f
        .wait_for("disconnect drift", is_drift(DriftKind::Network, &a_id))
        .await;
    assert!(format!("{ev:?}").contains("disconnected from network"));
    docker(&[
        "network",
        "connect",
        "bridge",
        &f.provider.container_name(&b_id),
    ]);
    let (ev, _) = f
        .wait_for("connect drift", is_drift(DriftKind::Network, &b_id))
        .await;
    assert!(format!("{ev:?}").contains("connected to network bridge"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_container_on_glints_network_is_disconnected() {
    require_docker!();
    let mut f = Fixture::new().await;
    // Glint's own instance makes sure the image is loaded.
    let spec = f.spec(Resources::default());
    f.provider.launch(spec).await.expect("launch");
    let foreign = format!("foreign-{}", f.store);
    f.cleanup().container(&foreign);
    docker(&[
        "run",
        "-d",
        "--name",
        &foreign,
        "-e",
        "PORT=9",
        &image_tag(&test_image().digest),
    ]);
    let net = f.provider.network_name().to_owned();
    docker(&["network", "connect", &net, &foreign]);
    let (ev, _) = f
        .wait_for(
            "incident for a foreign container",
            |e| matches!(e, ProviderEvent::Incident { what, .. } if what.contains(&foreign)),
        )
        .await;
    let ProviderEvent::Incident { action, .. } = ev else {
        unreachable!()
    };
    assert_eq!(action, "disconnected it");
    let networks = inspect(&foreign)["NetworkSettings"]["Networks"].clone();
    assert!(networks.get(&net).is_none(), "{networks}");
    // The foreign container itself is left alone (never touched, only reported).
    assert_eq!(inspect(&foreign)["State"]["Running"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_network_is_recreated() {
    require_docker!();
    let mut f = Fixture::new().await;
    let net = f.provider.network_name().to_owned();
    docker(&["network", "rm", &net]);
    let (ev, _) = f
        .wait_for(
            "incident for the deleted network",
            |e| matches!(e, ProviderEvent::Incident { what, .. } if what.contains("was deleted")),
        )
        .await;
    assert!(format!("{ev:?}").contains("recreated it"));
    let labels = docker(&["network", "inspect", "-f", "{{json .Labels}}", &net]);
    let labels: HashMap<String, String> = serde_json::from_str(&labels).expect("labels");
    assert_eq!(labels.get("dev.glint.store"), Some(&f.store));
    // And instances launch on it again.
    let spec = f.spec(Resources::default());
    let o = f.provider.launch(spec).await.expect("launch");
    get_when_up(o.addr.expect("addr"), "/healthz").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_impostor_network_under_glints_name_is_replaced() {
    require_docker!();
    let store = format!("t{}", std::process::id());
    let env = glint_model::Name::new("t").unwrap();
    let net = glint_docker::naming::network_name(&env, &store);
    let _ = docker_ok(&["network", "rm", &net]);
    docker(&["network", "create", "--internal", &net]);
    // Connecting finds a network under Glint's name that is not Glint's.
    let f = Fixture::with_store(&store).await;
    let labels = docker(&["network", "inspect", "-f", "{{json .Labels}}", &net]);
    let labels: HashMap<String, String> = serde_json::from_str(&labels).expect("labels");
    assert_eq!(labels.get("dev.glint.store"), Some(&f.store));
    assert_eq!(
        docker(&["network", "inspect", "-f", "{{.Internal}}", &net]),
        "false"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_provider_adopts_without_duplicates_and_catches_missed_drift() {
    require_docker!();
    let first = Fixture::new().await;
    let a = first.spec(Resources::default());
    let b = first.spec(Resources::default());
    let a_id = a.labels.instance.clone();
    let b_id = b.labels.instance.clone();
    let oa = first.provider.launch(a).await.expect("launch");
    let ob = first.provider.launch(b).await.expect("launch");
    let store = first.store.clone();

    // While no provider runs (a conductor restart), someone pauses one.
    let _guard = first.into_guard();
    docker(&["pause", &format!("glint-t-{b_id}")]);

    let mut second = Fixture::with_store(&store).await;
    let mut seen = second.provider.observe().await.expect("observe");
    seen.sort_by(|x, y| x.labels.instance.cmp(&y.labels.instance));
    let mut expected = vec![oa.clone(), ob.clone()];
    expected.sort_by(|x, y| x.labels.instance.cmp(&y.labels.instance));
    assert_eq!(seen.len(), 2);
    for (s, e) in seen.iter().zip(&expected) {
        assert_eq!(s.labels, e.labels);
        assert_eq!(s.handle, e.handle);
        assert_eq!(s.addr, e.addr);
    }
    let filter = format!("label=dev.glint.store={store}");
    assert_eq!(
        docker(&["ps", "-aq", "--filter", &filter]).lines().count(),
        2,
        "no duplicates"
    );
    // The resync of the new provider catches what happened while nobody watched.
    second
        .wait_for(
            "paused drift found by resync",
            is_drift(DriftKind::Paused, &b_id),
        )
        .await;
    // The adopted instances are fully managed: terminate and remove work.
    second
        .provider
        .terminate(&a_id, Duration::from_secs(2))
        .await
        .expect("terminate adopted");
    second.provider.remove(&a_id).await.expect("remove adopted");
    assert_eq!(second.provider.observe().await.expect("observe").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_labelled_as_glints_are_observed_and_removable() {
    require_docker!();
    let mut f = Fixture::new().await;
    // Make sure the image is loaded.
    let spec = f.spec(Resources::default());
    f.provider.launch(spec.clone()).await.expect("launch");
    // Someone (or a crashed conductor) left a container with Glint's labels
    // that the store does not know.
    let orphan = f.spec(Resources::default());
    let mut args: Vec<String> = vec!["run".into(), "-d".into()];
    for (k, v) in orphan.labels.to_map() {
        args.push("--label".into());
        args.push(format!("{k}={v}"));
    }
    args.push(image_tag(&test_image().digest));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    docker(&args);
    let seen = f.provider.observe().await.expect("observe");
    assert!(
        seen.iter()
            .any(|o| o.labels.instance == orphan.labels.instance),
        "the orphan is observed"
    );
    f.provider
        .remove(&orphan.labels.instance)
        .await
        .expect("remove orphan");
    let filter = format!("label=dev.glint.instance={}", orphan.labels.instance);
    assert_eq!(docker(&["ps", "-aq", "--filter", &filter]), "");
    let _ = f.drain();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_are_loaded_verified_and_a_moved_tag_is_repaired() {
    require_docker!();
    let mut f = Fixture::new().await;
    // An image no other test uses, so that this test really loads it.
    let salted = write_image(&hello_binary(), &f.store);
    let tag = image_tag(&salted.digest);
    f.cleanup().image(&tag);
    f.cleanup().image(salted.config.as_str());
    let use_salted = |spec: &mut glint_provider::LaunchSpec| {
        spec.image.digest = salted.digest.clone();
        spec.image.archive = Some(salted.archive.clone());
        spec.labels.image = salted.digest.clone();
    };
    let mut spec = f.spec(Resources::default());
    use_salted(&mut spec);
    let o = f
        .provider
        .launch(spec)
        .await
        .expect("launch loads the image");
    assert_eq!(
        docker(&["image", "inspect", "-f", "{{.Id}}", &tag]),
        salted.config.as_str()
    );
    get_when_up(o.addr.expect("addr"), "/healthz").await;

    // Someone points Glint's tag at another image. A provider that has not
    // verified this digest yet (a restart) must not trust the tag.
    docker(&["tag", test_image().config.as_str(), &tag]);
    let mut g = Fixture::with_store(&f.store).await;
    let mut spec = g.spec(Resources::default());
    use_salted(&mut spec);
    let id = spec.labels.instance.clone();
    g.provider.launch(spec).await.expect("launch reloads");
    assert_eq!(
        docker(&["image", "inspect", "-f", "{{.Id}}", &tag]),
        salted.config.as_str()
    );
    let c = inspect(&g.provider.container_name(&id));
    assert_eq!(c["Image"], salted.config.as_str());
    let _ = (f.drain(), g.drain());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_the_program_survives_is_drift() {
    require_docker!();
    let mut f = Fixture::new().await;
    let spec = f.spec(Resources::default());
    let id = spec.labels.instance.clone();
    f.provider.launch(spec).await.expect("launch");
    // Docker's init passes the signal on; the demo app ignores SIGWINCH
    // (its default action), so it keeps running, changed from outside.
    docker(&["kill", "-s", "WINCH", &f.provider.container_name(&id)]);
    let (ev, _) = f
        .wait_for("signal drift", is_drift(DriftKind::Other, &id))
        .await;
    assert!(format!("{ev:?}").contains("kept running"), "{ev:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_launches_during_resyncs_raise_no_false_alarm() {
    require_docker!();
    let mut f = Fixture::new().await;
    let specs: Vec<_> = (0..4).map(|_| f.spec(Resources::default())).collect();
    let launches = futures_util::future::join_all(
        specs
            .into_iter()
            .map(|s| async { f.provider.launch(s).await }),
    );
    let resyncs = async {
        // Resync back to back while the launches run: half-created
        // containers must be neither exits nor foreigners.
        for _ in 0..20 {
            f.provider.resync().await.expect("resync");
        }
    };
    let (launched, ()) = tokio::join!(launches, resyncs);
    for o in launched {
        let o = o.expect("launch");
        get_when_up(o.addr.expect("addr"), "/healthz").await;
    }
    f.provider.resync().await.expect("resync");
    let alarms: Vec<_> = f
        .drain()
        .into_iter()
        .filter(|e| !matches!(e, ProviderEvent::Resync))
        .collect();
    assert!(alarms.is_empty(), "false alarms: {alarms:?}");
    assert_eq!(f.provider.observe().await.expect("observe").len(), 4);
}

fn rw_mount(volume: &str) -> glint_provider::VolumeMount {
    glint_provider::VolumeMount {
        volume: volume.into(),
        declared: glint_model::Name::new("data").unwrap(),
        path: "/data".into(),
        read_only: false,
        exclusive: true,
    }
}

/// Removes a store's named volume when dropped.
struct VolumeGuard(String);

impl Drop for VolumeGuard {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker")
            .args(["volume", "rm", "-f", &self.0])
            .output();
    }
}

// Mutation caught: no mount in the create request, a volume created
// without labels (by the engine, implicitly), the running-writer check
// skipped, or `remove` deleting the volume with the container.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_volume_is_a_labelled_named_volume_with_one_writer_that_outlives_its_containers() {
    require_docker!();
    let f = Fixture::new().await;
    let vname = glint_docker::naming::volume_name(&f.store, "data");
    let _v = VolumeGuard(vname.clone());
    let mut a = f.spec(Resources::default());
    a.mounts = vec![rw_mount("data")];
    let a_id = a.labels.instance.clone();
    f.provider.launch(a).await.expect("launch");
    let v: serde_json::Value =
        serde_json::from_str(&docker(&["volume", "inspect", &vname])).unwrap();
    let labels = &v[0]["Labels"];
    assert_eq!(labels["dev.glint.store"], f.store.as_str());
    assert_eq!(labels["dev.glint.volume"], "data");
    let c = inspect(&f.provider.container_name(&a_id));
    let mounts = c["Mounts"].as_array().unwrap();
    assert!(
        mounts
            .iter()
            .any(|m| m["Name"] == vname.as_str() && m["Destination"] == "/data" && m["RW"] == true),
        "{mounts:?}"
    );
    // A second writer is refused while the first runs.
    let mut b = f.spec(Resources::default());
    b.mounts = vec![rw_mount("data")];
    match f.provider.launch(b.clone()).await {
        Err(e) => assert!(e.to_string().contains("one writer at a time"), "{e}"),
        Ok(_) => panic!("a second writer was started"),
    }
    assert!(f.provider.remove_volume("data").await.is_err(), "in use");
    // Gone: the volume stays, and the next writer gets it.
    f.provider
        .terminate(&a_id, Duration::from_secs(5))
        .await
        .unwrap();
    f.provider.remove(&a_id).await.unwrap();
    assert!(
        docker_ok(&["volume", "inspect", &vname]),
        "outlives its container"
    );
    let b_id = b.labels.instance.clone();
    f.provider.launch(b).await.expect("the next writer");
    let info = f.provider.volume("data").await.unwrap().unwrap();
    assert_eq!(info.location, vname);
    f.provider.remove(&b_id).await.unwrap();
    f.provider.remove_volume("data").await.unwrap();
    assert!(!docker_ok(&["volume", "inspect", &vname]));
}

// Mutation caught: `State.OOMKilled` not read (the exit reads "killed by
// signal 9", like a `docker kill`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_killed_at_its_memory_limit_exits_out_of_memory() {
    require_docker!();
    let mut f = Fixture::new().await;
    let mut spec = f.limited_spec();
    spec.env.insert("ALLOCATE_MB".into(), "512".into());
    let id = spec.labels.instance.clone();
    // It may die before or after `launch` returns.
    let _ = f.provider.launch(spec).await;
    let (ev, _) = f.wait_for("an OOM exit", is_exit(&id)).await;
    match ev {
        ProviderEvent::Exited { state, .. } => {
            assert!(
                matches!(state, RunState::Exited { oom: true, .. }),
                "{state:?}"
            );
            assert!(state.to_string().contains("out of memory"), "{state}");
        }
        other => panic!("{other:?}"),
    }
}
