//! The process provider, tested with real processes.
//!
//! This binary is its own instance program: started with `GLINT_TESTAPP` set
//! it runs in "app mode" (see `common`), otherwise it runs the tests through
//! `libtest-mimic`, which gives the usual `cargo test` interface.

// A test or benchmark stops at the first surprise.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use glint_model::InstanceId;
use glint_provider::process::{LogLimits, Options, rotated_path};
use glint_provider::{
    Isolation, LaunchSpec, ProcessProvider, Provider, ProviderError, RunState, log_paths,
};
use libtest_mimic::{Arguments, Trial};
use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

/// A named test, run once per isolation.
type Test = (&'static str, fn(Isolation));

fn main() -> std::process::ExitCode {
    run_app_if_requested();
    plant_conductor_secret();
    let args = Arguments::from_args();
    let tests: Vec<Test> = vec![
        (
            "launch_sets_env_labels_cwd_and_logs",
            launch_sets_env_labels_cwd_and_logs,
        ),
        (
            "secrets_are_files_of_their_instance_only_on_a_tmpfs",
            secrets_are_files_of_their_instance_only_on_a_tmpfs,
        ),
        (
            "glint_files_are_the_instance_s_own_on_a_tmpfs",
            glint_files_are_the_instance_s_own_on_a_tmpfs,
        ),
        (
            "exit_is_reported_with_code_or_signal_until_removed",
            exit_is_reported_with_code_or_signal_until_removed,
        ),
        (
            "terminate_sends_sigterm_first",
            terminate_sends_sigterm_first,
        ),
        (
            "terminate_escalates_to_sigkill_when_sigterm_is_ignored",
            terminate_escalates_to_sigkill_when_sigterm_is_ignored,
        ),
        (
            "terminate_stops_the_process_group_and_escaped_descendants",
            terminate_stops_the_process_group_and_escaped_descendants,
        ),
        (
            "terminate_and_remove_are_idempotent",
            terminate_and_remove_are_idempotent,
        ),
        (
            "restarted_provider_adopts_exactly_its_instances",
            restarted_provider_adopts_exactly_its_instances,
        ),
        (
            "instance_without_a_record_is_found_by_its_labels",
            instance_without_a_record_is_found_by_its_labels,
        ),
        (
            "recycled_pid_is_never_taken_for_an_instance",
            recycled_pid_is_never_taken_for_an_instance,
        ),
        ("stores_do_not_see_each_other", stores_do_not_see_each_other),
        (
            "missing_program_fails_cleanly",
            missing_program_fails_cleanly,
        ),
        (
            "duplicate_instance_id_is_refused",
            duplicate_instance_id_is_refused,
        ),
        (
            "instances_cannot_read_the_conductors_environment",
            instances_cannot_read_the_conductors_environment,
        ),
        (
            "logs_rotate_while_the_instance_keeps_writing",
            logs_rotate_while_the_instance_keeps_writing,
        ),
        (
            "the_provider_rotates_logs_by_itself",
            the_provider_rotates_logs_by_itself,
        ),
        (
            "logs_of_gone_instances_are_pruned_to_the_newest_per_service",
            logs_of_gone_instances_are_pruned_to_the_newest_per_service,
        ),
    ];
    let namespaces_only: Vec<Test> = vec![
        ("instance_sees_only_its_image", instance_sees_only_its_image),
        (
            "broken_setup_fails_the_launch_cleanly",
            broken_setup_fails_the_launch_cleanly,
        ),
        (
            "volumes_are_bound_read_write_or_read_only",
            volumes_are_bound_read_write_or_read_only,
        ),
        (
            "a_joined_network_namespace_is_all_the_instance_sees",
            a_joined_network_namespace_is_all_the_instance_sees,
        ),
        (
            "a_volume_has_one_writer_even_across_a_provider_restart",
            a_volume_has_one_writer_even_across_a_provider_restart,
        ),
        (
            "an_instance_at_its_memory_limit_is_killed_out_of_memory",
            an_instance_at_its_memory_limit_is_killed_out_of_memory,
        ),
        (
            "a_cpu_quota_holds_a_busy_instance_to_its_share",
            a_cpu_quota_holds_a_busy_instance_to_its_share,
        ),
        (
            "a_pids_limit_caps_the_tasks_of_an_instance",
            a_pids_limit_caps_the_tasks_of_an_instance,
        ),
    ];
    // Every behaviour is checked for plain processes and, where this machine
    // allows it (root), for namespaced ones; the latter are listed as
    // ignored elsewhere so that a skipped run is visible.
    let namespaces = Isolation::detect() == Isolation::Namespaces;
    let mut trials = Vec::new();
    for (name, f) in tests.iter().copied() {
        trials.push(Trial::test(format!("plain::{name}"), move || {
            f(Isolation::None);
            Ok(())
        }));
    }
    for (name, f) in tests.into_iter().chain(namespaces_only) {
        trials.push(
            Trial::test(format!("namespaced::{name}"), move || {
                f(Isolation::Namespaces);
                Ok(())
            })
            .with_ignored_flag(!namespaces),
        );
    }
    trials.push(Trial::test(
        "plain::attachments_need_namespaces",
        attachments_need_namespaces,
    ));
    libtest_mimic::run(&args, trials).exit_code()
}

fn id_of(spec: &LaunchSpec) -> InstanceId {
    spec.labels.instance.clone()
}

// Mutation caught: secrets passed in the environment, written to the
// state directory (a disk), left behind after removal, or given to an
// instance that has none.
fn secrets_are_files_of_their_instance_only_on_a_tmpfs(iso: Isolation) {
    use std::os::unix::fs::PermissionsExt;
    runtime().block_on(async {
        let state = state_dir();
        let store = unique_store("secrets");
        let p = ProcessProvider::open_with(state.path(), &store, iso).unwrap();
        let value = b"provider-secret-Vx81";
        let mut spec = spec(&store, "api", "serve");
        spec.secrets = vec![glint_provider::SecretFile {
            name: "db/password".into(),
            version: 3,
            value: glint_provider::SecretValue::new(zeroize::Zeroizing::new(value.to_vec())),
        }];
        assert!(
            !format!("{spec:?}").contains("provider-secret"),
            "Debug shows no value"
        );
        let id = id_of(&spec);
        let obs = p.launch(spec).await.unwrap();
        let pid = handle_pid(&obs.handle);
        let other = common::spec(&store, "web", "serve");
        let other_id = id_of(&other);
        p.launch(other).await.unwrap();

        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
        assert!(
            !environ.windows(value.len()).any(|w| w == value),
            "not in the environment"
        );
        let dir = glint_provider::process::secrets::instance_dir(&store, &id);
        let file = match iso {
            Isolation::None => {
                let env = String::from_utf8_lossy(&environ).into_owned();
                assert!(
                    env.split('\0')
                        .any(|kv| kv == format!("GLINT_SECRETS_DIR={}", dir.display())),
                    "a plain instance is told where its secrets are"
                );
                dir.join("db/password")
            }
            Isolation::Namespaces => {
                std::path::PathBuf::from(format!("/proc/{pid}/root/run/secrets/db/password"))
            }
        };
        assert_eq!(std::fs::read(&file).unwrap(), value);
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o400
        );
        assert!(!glint_provider::process::secrets::instance_dir(&store, &other_id).exists());
        // Nothing on the state directory's disk.
        let mut stack = vec![state.path().to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let path = e.path();
                let meta = std::fs::symlink_metadata(&path).unwrap();
                if meta.is_dir() {
                    stack.push(path);
                } else if meta.is_file() {
                    let bytes = std::fs::read(&path).unwrap_or_default();
                    assert!(
                        !bytes.windows(value.len()).any(|w| w == value),
                        "the value is in {}",
                        path.display()
                    );
                }
            }
        }
        p.terminate(&id, Duration::from_secs(10)).await.unwrap();
        p.remove(&id).await.unwrap();
        assert!(!dir.exists(), "removed with the instance");
        p.terminate(&other_id, Duration::from_secs(10))
            .await
            .unwrap();
        p.remove(&other_id).await.unwrap();
        let _ = std::fs::remove_dir(glint_provider::process::secrets::root(&store));
    });
}

// Mutation caught: the identity put in the environment, `/run/glint` not
// bound (namespaced) or its host paths not given (plain), the socket's
// directory not bound, another instance given the files, the directory
// left behind after removal.
fn glint_files_are_the_instance_s_own_on_a_tmpfs(iso: Isolation) {
    use glint_provider::process::glint_dir;
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    runtime().block_on(async {
        let state = state_dir();
        let store = unique_store("glintdir");
        let api_dir = tempfile::tempdir().unwrap();
        let socket = api_dir.path().join("instance.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let p = ProcessProvider::open_with(state.path(), &store, iso).unwrap();
        let token = b"glint-id.v1.test-token-Qz41";
        let mut spec = spec(&store, "api", "serve");
        spec.glint = Some(glint_provider::GlintFiles {
            identity: glint_provider::SecretValue::from_vec(token.to_vec()),
            variables: vec![("flags".into(), "new-checkout=on".into())],
            api_socket: Some(socket.clone()),
        });
        let id = id_of(&spec);
        let obs = p.launch(spec).await.unwrap();
        let pid = handle_pid(&obs.handle);
        let other = common::spec(&store, "web", "serve");
        let other_id = id_of(&other);
        p.launch(other).await.unwrap();

        // A namespaced instance's PID 1 is an init with an empty environment:
        // the program is its child.
        let program = match iso {
            Isolation::None => pid,
            Isolation::Namespaces => {
                let deadline = std::time::Instant::now() + Duration::from_secs(10);
                loop {
                    let children =
                        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
                            .unwrap_or_default();
                    if let Some(c) = children.split_whitespace().next() {
                        break c.parse::<i32>().unwrap();
                    }
                    assert!(
                        std::time::Instant::now() < deadline,
                        "the init started no program"
                    );
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        };
        let environ = std::fs::read(format!("/proc/{program}/environ")).unwrap();
        assert!(
            !environ.windows(token.len()).any(|w| w == token),
            "the identity is not in the environment"
        );
        let env = String::from_utf8_lossy(&environ).into_owned();
        let has = |kv: String| env.split('\0').any(|e| e == kv);
        let dir = glint_dir::instance_dir(&store, &id);
        let (identity, var) = match iso {
            Isolation::None => {
                assert!(has(format!(
                    "GLINT_IDENTITY_FILE={}",
                    dir.join("identity").display()
                )));
                assert!(has(format!(
                    "GLINT_VARS_DIR={}",
                    dir.join("vars").display()
                )));
                assert!(has(format!("GLINT_API_SOCKET={}", socket.display())));
                (dir.join("identity"), dir.join("vars/flags"))
            }
            Isolation::Namespaces => {
                assert!(
                    has("GLINT_IDENTITY_FILE=/run/glint/identity".into()),
                    "{env}"
                );
                assert!(
                    has("GLINT_API_SOCKET=/run/glint/glint.sock".into()),
                    "{env}"
                );
                let inside = format!("/proc/{pid}/root");
                let link = std::fs::read_link(format!("{inside}/run/glint/glint.sock")).unwrap();
                assert_eq!(link, Path::new("/run/glint-api/instance.sock"));
                let sock =
                    std::fs::metadata(format!("{inside}/run/glint-api/instance.sock")).unwrap();
                assert!(
                    sock.file_type().is_socket(),
                    "the socket's directory is bound"
                );
                let mounts = std::fs::read_to_string(format!("/proc/{pid}/mounts")).unwrap();
                let line = mounts
                    .lines()
                    .find(|l| l.split_whitespace().nth(1) == Some("/run/glint"))
                    .unwrap_or_else(|| panic!("no /run/glint mount:\n{mounts}"));
                assert!(line.contains(" tmpfs ") && line.contains(" ro"), "{line}");
                (
                    Path::new(&inside).join("run/glint/identity"),
                    Path::new(&inside).join("run/glint/vars/flags"),
                )
            }
        };
        assert_eq!(std::fs::read(&identity).unwrap(), token);
        assert_eq!(
            std::fs::metadata(&identity).unwrap().permissions().mode() & 0o777,
            0o400
        );
        assert_eq!(std::fs::read_to_string(&var).unwrap(), "new-checkout=on");
        assert!(
            !glint_dir::instance_dir(&store, &other_id).exists(),
            "nothing for the other instance"
        );
        // Renewal replaces the file the instance sees.
        assert!(glint_dir::renew(&store, &id, b"glint-id.v1.renewed").unwrap());
        assert_eq!(std::fs::read(&identity).unwrap(), b"glint-id.v1.renewed");
        assert!(!glint_dir::renew(&store, &other_id, b"x").unwrap());
        p.terminate(&id, Duration::from_secs(10)).await.unwrap();
        p.remove(&id).await.unwrap();
        assert!(!dir.exists(), "removed with the instance");
        p.terminate(&other_id, Duration::from_secs(10))
            .await
            .unwrap();
        p.remove(&other_id).await.unwrap();
        let _ = std::fs::remove_dir(glint_dir::root(&store));
    });
}

fn launch_sets_env_labels_cwd_and_logs(iso: Isolation) {
    runtime().block_on(async {
        let state = state_dir();
        let store = unique_store("env");
        let p = ProcessProvider::open_with(state.path(), &store, iso).unwrap();
        let mut spec = spec(&store, "web", "serve");
        spec.env.insert("GREETING".into(), "hi".into());
        let id = id_of(&spec);
        let obs = p.launch(spec.clone()).await.unwrap();
        assert_eq!(obs.state, RunState::Running);
        assert_eq!(obs.labels, spec.labels);
        let addr = obs.addr.unwrap();
        assert!(addr.ip().is_loopback());

        let logs = log_paths(state.path(), &id);
        let out = wait_for_text(&logs.stdout, "ready");
        let expect = [
            format!("env PORT={}", addr.port()),
            "env HOST=127.0.0.1".to_owned(),
            format!("env GLINT_STORE={store}"),
            format!("env GLINT_INSTANCE_ID={id}"),
            "env GLINT_SERVICE=web".to_owned(),
            "env GLINT_ENVIRONMENT=test".to_owned(),
            "env GLINT_VERSION=1".to_owned(),
            format!("env GLINT_IMAGE={}", spec.labels.image),
            "env GREETING=hi".to_owned(),
        ];
        for line in &expect {
            assert!(
                out.lines().any(|l| l == line),
                "missing {line:?} in:\n{out}"
            );
        }
        // Nothing of the conductor's own environment leaks in.
        assert!(std::env::var("PATH").is_ok());
        assert!(!out.contains("env PATH="), "{out}");
        // Plain: its own directory on the host; namespaced: the image's
        // working directory inside its own root.
        let cwd = match iso {
            Isolation::None => instance_dir(state.path(), &id)
                .join("work")
                .canonicalize()
                .unwrap(),
            Isolation::Namespaces => "/".into(),
        };
        assert!(out.contains(&format!("cwd={}\n", cwd.display())), "{out}");
        wait_for_text(&logs.stderr, "to stderr");

        let body = http_get(addr, "/").unwrap();
        assert_eq!(body, format!("hello from {id}\n"));

        // The program leads its own session (and so its own process group).
        let pid = handle_pid(&obs.handle);
        let (_, sid, _) = proc_stat(pid).unwrap();
        assert_eq!(sid, pid);

        p.terminate(&id, Duration::from_secs(10)).await.unwrap();
        p.remove(&id).await.unwrap();
        // Logs outlive the instance.
        assert!(logs.stdout.exists() && logs.stderr.exists());
        assert!(!instance_dir(state.path(), &id).exists());
    });
}

fn exit_is_reported_with_code_or_signal_until_removed(iso: Isolation) {
    runtime().block_on(async {
        let state = state_dir();
        let store = unique_store("exit");
        let p = ProcessProvider::open_with(state.path(), &store, iso).unwrap();
        let mut events = p.subscribe();

        let mut exits = spec(&store, "job", "exit");
        exits.env.insert("EXIT_CODE".into(), "3".into());
        let exits_id = id_of(&exits);
        p.launch(exits).await.unwrap();
        let code3 = RunState::Exited {
            code: Some(3),
            signal: None,
            oom: false,
        };
        assert_eq!(next_exit(&mut events, &exits_id).await, code3);

        let sleeper = spec(&store, "web", "sleep");
        let sleeper_id = id_of(&sleeper);
        let obs = p.launch(sleeper).await.unwrap();
        wait_for_text(&log_paths(state.path(), &sleeper_id).stdout, "ready");
        kill9(handle_pid(&obs.handle));
        let killed = RunState::Exited {
            code: None,
            signal: Some(9),
            oom: false,
        };
        assert_eq!(next_exit(&mut events, &sleeper_id).await, killed);

        // Ended instances stay visible, with how they ended, until removed.
        let seen = p.observe().await.unwrap();
        let state_of = |id: &InstanceId| {
            seen.iter()
                .find(|o| &o.labels.instance == id)
                .map(|o| o.state)
        };
        assert_eq!(state_of(&exits_id), Some(code3));
        assert_eq!(state_of(&sleeper_id), Some(killed));
        p.remove(&exits_id).await.unwrap();
        p.remove(&sleeper_id).await.unwrap();
        assert!(p.observe().await.unwrap().is_empty());
        assert!(log_paths(state.path(), &exits_id).stdout.exists());
    });
}

fn terminate_sends_sigterm_first(iso: Isolation) {
    runtime().block_on(async {
        let state = state_dir();
        let store = unique_store("term");
        let p = ProcessProvider::open_with(state.path(), &store, iso).unwrap();
        let mut events = p.subscribe();
        let s = spec(&store, "web", "sleep");
        let id = id_of(&s);
        p.launch(s).await.unwrap();
        wait_for_text(&log_paths(state.path(), &id).stdout, "ready");
        p.terminate(&id, Duration::from_secs(30)).await.unwrap();
        let sigterm = RunState::Exited {
            code: None,
            signal: Some(15),
            oom: false,
        };
        assert_eq!(next_exit(&mut events, &id).await, sigterm);
        assert_eq!(p.observe().await.unwrap()[0].state, sigterm);
    });
}

fn terminate_escalates_to_sigkill_when_sigterm_is_ignored(iso: Isolation) {
    runtime().block_on(async {
        let state = state_dir();
        let store = unique_store("kill");
        let p = ProcessProvider::open_with(state.path(), &store, iso).unwrap();
        let s = spec(&store, "web", "ignore-term");
        let id = id_of(&s);
        p.launch(s).await.unwrap();
        // Only once the program has set SIG_IGN does the test mean anything.
        wait_for_text(&log_paths(state.path(), &id).stdout, "ready");
        p.terminate(&id, Duration::from_millis(300)).await.unwrap();
        let seen = p.observe().await.unwrap();
        assert_eq!(
            seen[0].state,
            RunState::Exited {
                code: None,
                signal: Some(9),
                oom: false,
            }
        );
    });
}

fn terminate_stops_the_process_group_and_escaped_descendants(iso: Isolation) {
    runtime().block_on(async {
        let state = state_dir();
        let store = unique_store("group");
        let p = ProcessProvider::open_with(state.path(), &store, iso).unwrap();
        // One child stays in the group and ignores SIGTERM; another leaves the
        // group (its own session) and ignores SIGTERM too.
        for child_mode in ["ignore-term", "daemon"] {
            let mut s = spec(&store, "web", "spawn-child");
            s.env.insert("CHILD_MODE".into(), child_mode.into());
            let id = id_of(&s);
            let obs = p.launch(s).await.unwrap();
            let logs = log_paths(state.path(), &id);
            if child_mode == "daemon" {
                wait_for_text(&logs.stdout, "daemon ready");
            } else {
                // The program's and the child's.
                wait_for_lines(&logs.stdout, "ready", 2);
            }
            wait_for_text(&logs.stdout, "child=");
            // The program and its child carry the labels (host pids).
            let members = labelled_pids(&store, &id);
            assert_eq!(members.len(), 2, "{members:?}");
            if child_mode == "daemon" {
                assert!(
                    members
                        .iter()
                        .any(|&m| proc_stat(m).map(|s| s.1) == Some(m)),
                    "the daemon leads its own session"
                );
            }
            p.terminate(&id, Duration::from_millis(500)).await.unwrap();
            assert!(
                is_dead(handle_pid(&obs.handle)),
                "leader of {child_mode} alive"
            );
            for m in members {
                assert!(is_dead(m), "{child_mode}: labelled pid {m} still running");
            }
            p.remove(&id).await.unwrap();
        }
    });
}

fn terminate_and_remove_are_idempotent(iso: Isolation) {
    runtime().block_on(async {
        let state = state_dir();
        let store = unique_store("idem");
        let p = ProcessProvider::open_with(state.path(), &store, iso).unwrap();
        let s = spec(&store, "web", "sleep");
        let id = id_of(&s);
        let obs = p.launch(s).await.unwrap();
        p.terminate(&id, Duration::from_secs(10)).await.unwrap();
        p.terminate(&id, Duration::from_secs(10)).await.unwrap();
        assert!(is_dead(handle_pid(&obs.handle)));
        p.remove(&id).await.unwrap();
        p.remove(&id).await.unwrap();
        p.terminate(&id, Duration::from_secs(10)).await.unwrap();
        let unknown = InstanceId::parse("web-zzzzzzzz").unwrap();
        p.terminate(&unknown, Duration::from_secs(1)).await.unwrap();
        p.remove(&unknown).await.unwrap();
        // Removing a running instance stops it rather than leaking it.
        let s = spec(&store, "web", "sleep");
        let id = id_of(&s);
        let obs = p.launch(s).await.unwrap();
        p.remove(&id).await.unwrap();
        assert!(is_dead(handle_pid(&obs.handle)));
        assert!(p.observe().await.unwrap().is_empty());
    });
}

fn ids(seen: &[glint_provider::Observed]) -> BTreeSet<InstanceId> {
    seen.iter().map(|o| o.labels.instance.clone()).collect()
}

fn restarted_provider_adopts_exactly_its_instances(iso: Isolation) {
    runtime().block_on(async {
        let state = state_dir();
        let store = unique_store("adopt");
        let first = ProcessProvider::open_with(state.path(), &store, iso).unwrap();
        let mut events = first.subscribe();
        let a = spec(&store, "web", "serve");
        let b = spec(&store, "web", "sleep");
        let mut c = spec(&store, "job", "exit");
        c.env.insert("EXIT_CODE".into(), "0".into());
        let (a_id, b_id, c_id) = (id_of(&a), id_of(&b), id_of(&c));
        let a_obs = first.launch(a).await.unwrap();
        let b_obs = first.launch(b).await.unwrap();
        first.launch(c).await.unwrap();
        next_exit(&mut events, &c_id).await;
        wait_for_text(&log_paths(state.path(), &a_id).stdout, "ready");

        // The conductor "crashes": the provider goes away, instances stay.
        drop(first);
        let second = ProcessProvider::open_with(state.path(), &store, iso).unwrap();
        let mut events = second.subscribe();
        let seen = second.observe().await.unwrap();
        assert_eq!(
            ids(&seen),
            BTreeSet::from([a_id.clone(), b_id.clone(), c_id.clone()])
        );
        let get = |id: &InstanceId| seen.iter().find(|o| &o.labels.instance == id).unwrap();
        assert_eq!(get(&a_id).state, RunState::Running);
        assert_eq!(get(&a_id).handle, a_obs.handle);
        assert_eq!(get(&a_id).addr, a_obs.addr);
        assert_eq!(get(&a_id).labels, a_obs.labels);
        assert_eq!(get(&b_id).state, RunState::Running);
        // The exit seen before the crash was recorded.
        assert_eq!(
            get(&c_id).state,
            RunState::Exited {
                code: Some(0),
                signal: None,
                oom: false,
            }
        );
        // Observing again adopts nothing twice.
        assert_eq!(second.observe().await.unwrap().len(), 3);
        // The adopted instance still serves at the same address.
        assert_eq!(
            http_get(a_obs.addr.unwrap(), "/").unwrap(),
            format!("hello from {a_id}\n")
        );

        // An adopted process's exit is noticed through its pidfd.
        kill9(handle_pid(&a_obs.handle));
        let unknown = RunState::Exited {
            code: None,
            signal: None,
            oom: false,
        };
        assert_eq!(next_exit(&mut events, &a_id).await, unknown);
        if iso == Isolation::Namespaces {
            // The init is still this process's child (the "restart" happened
            // in place): it was reaped, not left a zombie.
            let init = handle_pid(&a_obs.handle);
            assert!(
                proc_stat(init).is_none(),
                "adopted init {init} left a zombie"
            );
        }
        // And an adopted process can be terminated.
        second
            .terminate(&b_id, Duration::from_secs(10))
            .await
            .unwrap();
        assert!(is_dead(handle_pid(&b_obs.handle)));
        for id in [&a_id, &b_id, &c_id] {
            second.remove(id).await.unwrap();
        }

        // A third start finds nothing left.
        drop(second);
        let third = ProcessProvider::open_with(state.path(), &store, iso).unwrap();
        assert!(third.observe().await.unwrap().is_empty());
        assert_eq!(
            std::fs::read_dir(state.path().join("run")).unwrap().count(),
            0
        );
    });
}

fn instance_without_a_record_is_found_by_its_labels(iso: Isolation) {
    runtime().block_on(async {
        let state = state_dir();
        let store = unique_store("norecord");
        let first = ProcessProvider::open_with(state.path(), &store, iso).unwrap();
        let s = spec(&store, "web", "sleep");
        let id = id_of(&s);
        let obs = first.launch(s).await.unwrap();
        drop(first);
        // As if the conductor had crashed between spawning and recording.
        std::fs::remove_dir_all(instance_dir(state.path(), &id)).unwrap();

        let second = ProcessProvider::open_with(state.path(), &store, iso).unwrap();
        let seen = second.observe().await.unwrap();
        assert_eq!(ids(&seen), BTreeSet::from([id.clone()]));
        assert_eq!(seen[0].state, RunState::Running);
        assert_eq!(
            seen[0].addr, obs.addr,
            "port read back from the environment"
        );
        assert_eq!(seen[0].labels, obs.labels);
        second
            .terminate(&id, Duration::from_secs(10))
            .await
            .unwrap();
        assert!(is_dead(handle_pid(&obs.handle)));
        second.remove(&id).await.unwrap();
    });
}

fn recycled_pid_is_never_taken_for_an_instance(iso: Isolation) {
    runtime().block_on(async {
        let state = state_dir();
        let store = unique_store("reuse");
        let first = ProcessProvider::open_with(state.path(), &store, iso).unwrap();
        let mut events = first.subscribe();
        let s = spec(&store, "web", "sleep");
        let id = id_of(&s);
        let obs = first.launch(s).await.unwrap();
        kill9(handle_pid(&obs.handle));
        next_exit(&mut events, &id).await;
        drop(first);

        // An unrelated process now "has the pid": rewrite the record as if the
        // exit had not been recorded and the pid had been recycled.
        let bystander = KillOnDrop(
            std::process::Command::new(std::env::current_exe().unwrap())
                .env(APP_MODE, "sleep")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        );
        let bystander_pid = bystander.0.id() as i32;
        let (_, _, bystander_ticks) = proc_stat(bystander_pid).unwrap();
        let record = instance_dir(state.path(), &id).join("record.json");
        let mut json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&record).unwrap()).unwrap();
        json["pid"] = bystander_pid.into();
        // The recorded process started earlier than the one now at that pid.
        json["start_ticks"] = (bystander_ticks - 1).into();
        json["exit"] = serde_json::Value::Null;
        std::fs::write(&record, serde_json::to_vec(&json).unwrap()).unwrap();

        let second = ProcessProvider::open_with(state.path(), &store, iso).unwrap();
        let seen = second.observe().await.unwrap();
        assert_eq!(seen.len(), 1);
        assert_ne!(seen[0].state, RunState::Running);
        second.terminate(&id, Duration::ZERO).await.unwrap();
        second.remove(&id).await.unwrap();
        assert!(
            !is_dead(bystander_pid),
            "an unrelated process was signalled"
        );
    });
}

/// A child process killed and reaped when the test ends, even by a panic.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn stores_do_not_see_each_other(iso: Isolation) {
    runtime().block_on(async {
        let (dir_a, dir_b) = (state_dir(), state_dir());
        let (store_a, store_b) = (unique_store("a"), unique_store("b"));
        let a = ProcessProvider::open_with(dir_a.path(), &store_a, iso).unwrap();
        let b = ProcessProvider::open_with(dir_b.path(), &store_b, iso).unwrap();
        let sa = spec(&store_a, "web", "sleep");
        let sb = spec(&store_b, "web", "sleep");
        let (ia, ib) = (id_of(&sa), id_of(&sb));
        a.launch(sa).await.unwrap();
        b.launch(sb.clone()).await.unwrap();
        assert_eq!(
            ids(&a.observe().await.unwrap()),
            BTreeSet::from([ia.clone()])
        );
        assert_eq!(
            ids(&b.observe().await.unwrap()),
            BTreeSet::from([ib.clone()])
        );
        // Terminating another store's instance through `a` touches nothing.
        a.terminate(&ib, Duration::ZERO).await.unwrap();
        assert_eq!(b.observe().await.unwrap()[0].state, RunState::Running);
        // A spec labelled for another store is refused.
        let mut foreign = spec(&store_b, "web", "sleep");
        foreign.labels.store = store_b.to_string();
        assert!(matches!(
            a.launch(foreign).await,
            Err(ProviderError::Launch { .. })
        ));
        a.remove(&ia).await.unwrap();
        b.remove(&ib).await.unwrap();
    });
}

fn missing_program_fails_cleanly(iso: Isolation) {
    runtime().block_on(async {
        let state = state_dir();
        let store = unique_store("missing");
        let p = ProcessProvider::open_with(state.path(), &store, iso).unwrap();
        for (program, expect) in [
            ("/bin/missing", "/bin/missing"),
            ("/not-a-program", "not executable"),
            ("missing", "`missing`"),
        ] {
            let mut s = spec(&store, "web", "sleep");
            s.argv = vec![program.into()];
            let id = id_of(&s);
            match p.launch(s).await {
                Err(e @ ProviderError::Launch { .. }) => {
                    let msg = e.to_string();
                    assert!(msg.contains(expect), "{msg}");
                    assert!(msg.contains(id.as_str()), "{msg}");
                }
                other => panic!("expected a launch error, got {other:?}"),
            }
            assert!(!instance_dir(state.path(), &id).exists());
            assert!(
                !log_paths(state.path(), &id)
                    .stdout
                    .parent()
                    .unwrap()
                    .exists()
            );
        }
        assert!(p.observe().await.unwrap().is_empty());
        assert_eq!(count_entries(&state.path().join("run")), 0);
        assert_eq!(count_entries(&state.path().join("logs")), 0);
    });
}

fn duplicate_instance_id_is_refused(iso: Isolation) {
    runtime().block_on(async {
        let state = state_dir();
        let store = unique_store("dup");
        let p = ProcessProvider::open_with(state.path(), &store, iso).unwrap();
        let s = spec(&store, "web", "sleep");
        let id = id_of(&s);
        p.launch(s.clone()).await.unwrap();
        assert!(matches!(
            p.launch(s).await,
            Err(ProviderError::Launch { .. })
        ));
        assert_eq!(p.observe().await.unwrap().len(), 1);
        p.remove(&id).await.unwrap();
    });
}

fn count_entries(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

fn instance_sees_only_its_image(iso: Isolation) {
    runtime().block_on(async {
        assert!(
            Path::new("/etc/hostname").exists() || Path::new("/etc/passwd").exists(),
            "the host has none of the files this test hides"
        );
        let state = state_dir();
        let store = unique_store("probe");
        let p = ProcessProvider::open_with(state.path(), &store, iso).unwrap();
        let mut s = spec(&store, "web", "probe");
        s.workdir = "/bin".into();
        let id = id_of(&s);
        let obs = p.launch(s).await.unwrap();
        assert!(obs.handle.contains("namespaced"), "{}", obs.handle);
        let out = wait_for_text(&log_paths(state.path(), &id).stdout, "ready");
        for line in [
            "pid=2",                       // pid 1 is the instance's init
            "host_hostname_visible=false", // the host's files are not there
            "image_marker_visible=true",   // the image's are
            "root_writable=false",         // and read-only
            "tmp_writable=true",
            "dev_null=true",
            "visible_processes=2", // init and the program
            "cwd=/bin",
        ] {
            assert!(
                out.lines().any(|l| l == line),
                "missing {line:?} in:\n{out}"
            );
        }
        assert!(out.contains(&format!("hostname={id}\n")), "{out}");
        // The image directory itself was not written to.
        assert!(!image_root().join("probe-write").exists());
        assert!(!image_root().join("proc").exists());
        p.remove(&id).await.unwrap();
    });
}

fn broken_setup_fails_the_launch_cleanly(iso: Isolation) {
    runtime().block_on(async {
        let state = state_dir();
        let store = unique_store("broken");
        let p = ProcessProvider::open_with(state.path(), &store, iso).unwrap();
        // The working directory does not exist in the image: the init fails
        // after the namespaces were made, before the program runs.
        let mut s = spec(&store, "web", "sleep");
        s.workdir = "/no/such/dir".into();
        let id = id_of(&s);
        match p.launch(s).await {
            Err(e @ ProviderError::Launch { .. }) => {
                let chain = format!(
                    "{e}: {}",
                    std::error::Error::source(&e)
                        .map(|s| s.to_string())
                        .unwrap_or_default()
                );
                assert!(chain.contains("working directory"), "{chain}");
            }
            other => panic!("expected a launch error, got {other:?}"),
        }
        assert!(!instance_dir(state.path(), &id).exists());
        assert!(labelled_pids(&store, &id).is_empty());
        assert!(p.observe().await.unwrap().is_empty());
    });
}

/// Host pids of live processes carrying `id`'s labels.
fn labelled_pids(store: &str, id: &InstanceId) -> Vec<i32> {
    let want_store = format!("GLINT_STORE={store}");
    let want_id = format!("GLINT_INSTANCE_ID={id}");
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(env) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        let vars: Vec<&[u8]> = env.split(|&b| b == 0).collect();
        if vars.contains(&want_store.as_bytes())
            && vars.contains(&want_id.as_bytes())
            && !is_dead(pid)
        {
            pids.push(pid);
        }
    }
    pids
}

fn instances_cannot_read_the_conductors_environment(iso: Isolation) {
    let secret = conductor_secret();
    // The secret is where a leak would find it: in this process's
    // environment as the kernel shows it.
    let own = std::fs::read("/proc/self/environ").unwrap();
    assert!(
        String::from_utf8_lossy(&own).contains(&secret),
        "the secret was not planted"
    );
    runtime().block_on(async {
        let state = state_dir();
        let store = unique_store("environ");
        let p = ProcessProvider::open_with(state.path(), &store, iso).unwrap();
        let s = spec(&store, "web", "environ");
        let id = id_of(&s);
        p.launch(s).await.unwrap();
        let out = wait_for_text(&log_paths(state.path(), &id).stdout, "ready");
        assert!(
            !out.contains(&secret),
            "the conductor's secret leaked:\n{out}"
        );
        // The instance's own environment is exactly the declared one.
        let own = out
            .lines()
            .find_map(|l| l.strip_prefix("own_environ="))
            .unwrap();
        let mut keys: Vec<&str> = own
            .split_whitespace()
            .filter_map(|kv| kv.split_once('=').map(|(k, _)| k))
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "GLINT_ENVIRONMENT",
                "GLINT_IMAGE",
                "GLINT_INSTANCE_ID",
                "GLINT_SERVICE",
                "GLINT_STORE",
                "GLINT_TESTAPP",
                "GLINT_VERSION",
                "HOST",
                "PORT"
            ],
            "{out}"
        );
        if iso == Isolation::Namespaces {
            // PID 1 of the instance is its init, readable from inside (the
            // program is root there), and it holds no environment at all.
            let lines: Vec<&str> = out.lines().collect();
            assert!(lines.contains(&"init_environ_readable=true"), "{out}");
            assert!(lines.contains(&"init_environ="), "{out}");
        }
        p.remove(&id).await.unwrap();
    });
}

fn volumes_are_bound_read_write_or_read_only(iso: Isolation) {
    runtime().block_on(async {
        let state = state_dir();
        let store = unique_store("volumes");
        let p = ProcessProvider::open_with(state.path(), &store, iso).unwrap();
        let rw = tempfile::tempdir().unwrap();
        let ro = tempfile::tempdir().unwrap();
        std::fs::write(ro.path().join("conf"), b"setting=1\n").unwrap();
        let s = spec(&store, "db", "volumes");
        let id = id_of(&s);
        let mut attach = glint_provider::process::Attachments::default();
        attach.binds = vec![
            glint_provider::process::Bind::read_write(rw.path(), "/data/rw"),
            glint_provider::process::Bind::read_only(ro.path(), "/data/ro"),
        ];
        p.launch_with(s, attach).await.unwrap();
        let out = wait_for_text(&log_paths(state.path(), &id).stdout, "ready");
        for line in ["rw_written=true", "ro_read=setting=1", "ro_written=false"] {
            assert!(
                out.lines().any(|l| l == line),
                "missing {line:?} in:\n{out}"
            );
        }
        assert_eq!(
            std::fs::read_to_string(rw.path().join("out")).unwrap(),
            "from the instance"
        );
        assert!(!ro.path().join("new").exists());
        // The image has no /data: its mount points were made beside it.
        assert!(!image_root().join("data").exists());
        p.remove(&id).await.unwrap();
        // The volume outlives the instance.
        assert!(rw.path().join("out").exists());
    });
}

/// A network namespace made with `ip netns add`, with one end of a veth pair
/// in it; deleted (with both ends) when dropped.
struct TestNetns(String);

impl TestNetns {
    fn new() -> TestNetns {
        let name = format!("glint-prov-{}", std::process::id());
        let run = |args: &[&str]| {
            let ok = std::process::Command::new("ip")
                .args(args)
                .status()
                .unwrap();
            assert!(ok.success(), "ip {args:?}");
        };
        run(&["netns", "add", &name]);
        let ns = TestNetns(name);
        let host_end = format!("gph{}", std::process::id());
        run(&[
            "link", "add", &host_end, "type", "veth", "peer", "name", "eth0", "netns", &ns.0,
        ]);
        ns
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.0])
            .status();
    }
}

fn a_joined_network_namespace_is_all_the_instance_sees(iso: Isolation) {
    runtime().block_on(async {
        let netns = TestNetns::new();
        let state = state_dir();
        let store = unique_store("netns");
        let p = ProcessProvider::open_with(state.path(), &store, iso).unwrap();
        let s = spec(&store, "web", "interfaces");
        let id = id_of(&s);
        let mut attach = glint_provider::process::Attachments::default();
        attach.network = Some(
            glint_provider::process::NetNs::open(&Path::new("/run/netns").join(&netns.0)).unwrap(),
        );
        p.launch_with(s, attach).await.unwrap();
        let out = wait_for_text(&log_paths(state.path(), &id).stdout, "ready");
        assert!(out.lines().any(|l| l == "interfaces=eth0,lo"), "{out}");
        p.remove(&id).await.unwrap();
    });
}

fn attachments_need_namespaces() -> Result<(), libtest_mimic::Failed> {
    runtime().block_on(async {
        let state = state_dir();
        let store = unique_store("attach");
        let p = ProcessProvider::open_with(state.path(), &store, Isolation::None).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut attach = glint_provider::process::Attachments::default();
        attach.binds = vec![glint_provider::process::Bind::read_write(
            dir.path(),
            "/data",
        )];
        let s = spec(&store, "web", "sleep");
        let id = id_of(&s);
        match p.launch_with(s, attach).await {
            Err(e @ ProviderError::Launch { .. }) => {
                assert!(e.to_string().contains("namespace isolation"), "{e}")
            }
            other => panic!("expected a launch error, got {other:?}"),
        }
        assert!(!instance_dir(state.path(), &id).exists());
        assert!(p.observe().await.unwrap().is_empty());
    });
    Ok(())
}

/// Small log limits; with `check_every` long, only explicit passes rotate.
fn small_logs(iso: Isolation, check_every: Duration) -> Options {
    let mut o = Options::new(iso);
    o.logs = LogLimits {
        max_file_bytes: 64 * 1024,
        rotated_files: 2,
        gone_per_service: 2,
        check_every,
    };
    o
}

/// Everything kept of a stream, oldest first.
fn kept_output(path: &Path) -> String {
    let mut all = String::new();
    for i in (1..=2).rev() {
        all.push_str(&std::fs::read_to_string(rotated_path(path, i)).unwrap_or_default());
    }
    all + &std::fs::read_to_string(path).unwrap_or_default()
}

/// Checks that the numbered lines in `text` follow each other with no gap,
/// and returns the last number.
fn contiguous_lines(text: &str) -> u64 {
    let numbers: Vec<u64> = text
        .lines()
        .filter_map(|l| l.strip_prefix("line "))
        .map(|l| l[..7].parse().unwrap())
        .collect();
    assert!(!numbers.is_empty());
    for w in numbers.windows(2) {
        assert_eq!(w[1], w[0] + 1, "a gap in the kept output");
    }
    *numbers.last().unwrap()
}

fn logs_rotate_while_the_instance_keeps_writing(iso: Isolation) {
    runtime().block_on(async {
        let state = state_dir();
        let store = unique_store("rotate");
        let options = small_logs(iso, Duration::from_secs(3600));
        let p = ProcessProvider::open_with_options(state.path(), &store, options).unwrap();
        let s = spec(&store, "web", "chatty");
        let id = id_of(&s);
        let obs = p.launch(s).await.unwrap();
        let out = log_paths(state.path(), &id).stdout;
        wait_for_text(&out, "burst 1 done");
        assert_eq!(
            p.maintain_logs().rotated,
            1,
            "stdout rotated, stderr is empty"
        );
        for burst in 2..=3 {
            // The program writes on into the same descriptor.
            kill_with(handle_pid(&obs.handle), libc::SIGUSR1);
            wait_for_text(&out, &format!("burst {burst} done"));
            p.maintain_logs();
            for i in 1..=2 {
                let len = std::fs::metadata(rotated_path(&out, i)).unwrap().len();
                assert!(len <= 64 * 1024 + 4096, "{i}: {len} bytes");
            }
            assert!(!rotated_path(&out, 3).exists());
            assert!(std::fs::metadata(&out).unwrap().len() <= 64 * 1024);
            let kept = kept_output(&out);
            assert_eq!(contiguous_lines(&kept), burst * CHATTY_BURST - 1);
            assert!(
                kept.ends_with(&format!("burst {burst} done\n")),
                "{}",
                &kept[kept.len() - 200..]
            );
        }
        p.remove(&id).await.unwrap();
    });
}

fn the_provider_rotates_logs_by_itself(iso: Isolation) {
    runtime().block_on(async {
        let state = state_dir();
        let store = unique_store("keeper");
        let options = small_logs(iso, Duration::from_millis(50));
        let p = ProcessProvider::open_with_options(state.path(), &store, options).unwrap();
        let s = spec(&store, "web", "chatty");
        let id = id_of(&s);
        p.launch(s).await.unwrap();
        let out = log_paths(state.path(), &id).stdout;
        let rotated = rotated_path(&out, 1);
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while !rotated.exists() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the log was never rotated"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        p.remove(&id).await.unwrap();
    });
}

fn logs_of_gone_instances_are_pruned_to_the_newest_per_service(iso: Isolation) {
    runtime().block_on(async {
        let state = state_dir();
        let store = unique_store("prune");
        let options = small_logs(iso, Duration::from_secs(3600));
        let p = ProcessProvider::open_with_options(state.path(), &store, options).unwrap();
        let mut events = p.subscribe();
        let logs_dir = state.path().join("logs");
        // Another store's directory, and one from before log records existed
        // (older than everything).
        let foreign = logs_dir.join("web-foreign1");
        std::fs::create_dir_all(&foreign).unwrap();
        std::fs::write(
            foreign.join("instance.json"),
            br#"{"store":"another","service":"web","launched_at_ns":1}"#,
        )
        .unwrap();
        let legacy = logs_dir.join("web-legacy01");
        std::fs::create_dir_all(&legacy).unwrap();
        std::fs::write(legacy.join("stdout.log"), b"old\n").unwrap();
        std::fs::File::open(&legacy)
            .unwrap()
            .set_modified(std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1000))
            .unwrap();

        // The oldest web instance stays running.
        let live = spec(&store, "web", "sleep");
        let live_id = id_of(&live);
        p.launch(live).await.unwrap();
        let mut gone = Vec::new();
        for service in ["web", "web", "web", "web", "db"] {
            let mut s = spec(&store, service, "exit");
            s.env.insert("EXIT_CODE".into(), "0".into());
            let id = id_of(&s);
            p.launch(s).await.unwrap();
            next_exit(&mut events, &id).await;
            gone.push(id);
        }
        for id in &gone {
            p.remove(id).await.unwrap();
        }
        let mut left: Vec<String> = std::fs::read_dir(&logs_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        let mut want = vec![
            live_id.to_string(),
            gone[2].to_string(),
            gone[3].to_string(),
            gone[4].to_string(),
            "web-foreign1".to_owned(),
        ];
        want.sort();
        assert_eq!(left, want);
        // The latest instance's output is still there for `glint logs`.
        assert!(log_paths(state.path(), &gone[3]).stdout.exists());
        // Once removed, the live instance is the oldest of three gone web
        // instances: pruned.
        p.remove(&live_id).await.unwrap();
        assert!(!logs_dir.join(live_id.as_str()).exists());
    });
}

/// Sends `sig` to `pid`.
fn kill_with(pid: i32, sig: i32) {
    // SAFETY: kill has no memory preconditions.
    assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
}

fn exclusive(volume: &str, path: &str) -> glint_provider::VolumeMount {
    glint_provider::VolumeMount {
        volume: volume.into(),
        declared: glint_model::Name::new("pgdata").unwrap(),
        path: path.into(),
        read_only: false,
        exclusive: true,
    }
}

// Mutation caught: the lock not handed to the init (released when the
// launch returns: the second writer starts), or taken by the provider
// instead of the instance (released when the provider is dropped).
fn a_volume_has_one_writer_even_across_a_provider_restart(iso: Isolation) {
    runtime().block_on(async {
        let state = state_dir();
        let store = unique_store("writer");
        let p = ProcessProvider::open_with(state.path(), &store, iso).unwrap();
        let mut a = spec(&store, "db", "volume-mark");
        a.mounts = vec![exclusive("pgdata", "/data")];
        let a_id = id_of(&a);
        p.launch(a).await.unwrap();
        let out = wait_for_text(&log_paths(state.path(), &a_id).stdout, "ready");
        assert!(
            out.contains("before=\n") && out.contains("written=true"),
            "{out}"
        );
        let labels = std::fs::read_to_string(
            glint_provider::process::volume_dir(state.path(), "pgdata").join("volume.json"),
        )
        .unwrap();
        assert!(
            labels.contains(&*store),
            "labelled with its store: {labels}"
        );
        assert!(p.volume_is_locked("pgdata"));
        // The conductor dies: a new provider adopts A, the lock is still A's.
        drop(p);
        let p = ProcessProvider::open_with(state.path(), &store, iso).unwrap();
        let mut b = spec(&store, "db", "volume-mark");
        b.mounts = vec![exclusive("pgdata", "/data")];
        let b_id = id_of(&b);
        match p.launch(b.clone()).await {
            Err(e) => assert!(e.to_string().contains("still held"), "{e}"),
            Ok(_) => panic!("a second writer was started"),
        }
        assert!(
            p.remove_volume("pgdata").await.is_err(),
            "refused while held"
        );
        // A ends; B starts and finds A's mark.
        p.terminate(&a_id, Duration::from_secs(5)).await.unwrap();
        p.remove(&a_id).await.unwrap();
        p.launch(b).await.unwrap();
        let out = wait_for_text(&log_paths(state.path(), &b_id).stdout, "ready");
        assert!(out.contains(&format!("before={a_id}")), "{out}");
        p.remove(&b_id).await.unwrap();
        // Removing instances never removed the volume; `remove_volume` does.
        let data = glint_provider::process::volume_data_dir(state.path(), "pgdata");
        assert!(data.join("mark").exists());
        p.remove_volume("pgdata").await.unwrap();
        assert!(!data.exists());
    });
}

fn limited(store: &str, mode: &str, resources: glint_model::Resources) -> LaunchSpec {
    let mut s = spec(store, "limited", mode);
    s.resources = resources;
    s
}

/// The provider, or `None` (with a note) where this machine has no usable
/// cgroups.
fn with_cgroups(state: &Path, store: &str, iso: Isolation) -> Option<ProcessProvider> {
    let p = ProcessProvider::open_with(state, store, iso).unwrap();
    if p.cgroups().is_none() {
        eprintln!("skipped: no usable cgroup memory, cpu and pids controllers here");
        return None;
    }
    Some(p)
}

// Mutation caught: no memory limit written (the hog fills the machine's
// memory and is not killed within the wait), or the OOM counter not read
// (the exit says "killed by signal 9").
fn an_instance_at_its_memory_limit_is_killed_out_of_memory(iso: Isolation) {
    runtime().block_on(async {
        let state = state_dir();
        let store = unique_store("oom");
        let Some(p) = with_cgroups(state.path(), &store, iso) else {
            return;
        };
        let mut events = p.subscribe();
        let s = limited(
            &store,
            "hog",
            glint_model::Resources {
                memory: Some(glint_model::Bytes(64 << 20)),
                ..Default::default()
            },
        );
        let id = id_of(&s);
        p.launch(s).await.unwrap();
        let state_seen = tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                if let Ok(glint_provider::ProviderEvent::Exited { instance, state }) =
                    events.recv().await
                    && instance == id
                {
                    return state;
                }
            }
        })
        .await
        .expect("the hog was not stopped at 64 MiB within 60 s");
        assert!(
            matches!(
                state_seen,
                RunState::Exited {
                    oom: true,
                    signal: Some(9),
                    ..
                }
            ),
            "{state_seen:?}"
        );
        assert!(state_seen.to_string().contains("out of memory"));
        let out = std::fs::read_to_string(log_paths(state.path(), &id).stdout).unwrap();
        let held: Vec<u64> = out
            .lines()
            .filter_map(|l| {
                l.strip_prefix("holding ")?
                    .strip_suffix(" MiB")?
                    .parse()
                    .ok()
            })
            .collect();
        assert!(
            held.iter().all(|m| *m <= 64),
            "held more than its limit: {held:?}"
        );
        p.remove(&id).await.unwrap();
        assert!(
            !p.instance_cgroup(&id).unwrap().exists(),
            "its cgroup goes with it"
        );
    });
}

// Mutation caught: the quota not written (the instance uses a whole CPU
// and is never throttled), or written in the wrong unit.
fn a_cpu_quota_holds_a_busy_instance_to_its_share(iso: Isolation) {
    runtime().block_on(async {
        let state = state_dir();
        let store = unique_store("cpu");
        let Some(p) = with_cgroups(state.path(), &store, iso) else {
            return;
        };
        let s = limited(
            &store,
            "spin",
            glint_model::Resources {
                cpu_millis: Some(200),
                ..Default::default()
            },
        );
        let id = id_of(&s);
        p.launch(s).await.unwrap();
        wait_for_text(&log_paths(state.path(), &id).stdout, "ready");
        let cg = p.instance_cgroup(&id).unwrap();
        let before = cg.cpu_usec().unwrap();
        let t0 = std::time::Instant::now();
        tokio::time::sleep(Duration::from_secs(3)).await;
        let used = cg.cpu_usec().unwrap() - before;
        let share = used as f64 / t0.elapsed().as_micros() as f64;
        eprintln!("cpu_millis = 200: the busy instance used {share:.3} of a CPU");
        assert!(share < 0.3, "used {share:.3} of a CPU under a 0.2 quota");
        assert!(
            cg.throttled().unwrap_or(0) > 0,
            "the kernel never throttled it"
        );
        let usage = p.usage().await.unwrap();
        assert!(usage.iter().any(|(i, u)| i == &id && u.cpu_usec > 0));
        p.remove(&id).await.unwrap();
    });
}

// Mutation caught: `pids` not written.
fn a_pids_limit_caps_the_tasks_of_an_instance(iso: Isolation) {
    runtime().block_on(async {
        let state = state_dir();
        let store = unique_store("pids");
        let Some(p) = with_cgroups(state.path(), &store, iso) else {
            return;
        };
        let s = limited(
            &store,
            "threads",
            glint_model::Resources {
                pids: Some(16),
                ..Default::default()
            },
        );
        let id = id_of(&s);
        p.launch(s).await.unwrap();
        let out = wait_for_text(&log_paths(state.path(), &id).stdout, "ready");
        let n: u32 = out
            .lines()
            .find_map(|l| l.strip_prefix("threads=")?.parse().ok())
            .unwrap();
        assert!(n < 16, "{n} threads under pids = 16");
        p.remove(&id).await.unwrap();
    });
}
