//! The runner, tested with real namespaces, mounts and processes. Tests that
//! start sandboxes need root and a static busybox (`/bin/busybox`, from
//! Debian's `busybox-static`); they print SKIPPED without them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use glint_sandbox::{
    Bind, Cgroups, Command, ExitStatus, Mounts, NetNs, Network, Pid1, Plan, Root, SandboxError,
    Stdio, Step, User, read_status_file, spawn,
};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command as Host;

/// A temporary image root holding busybox as `/bin/busybox`, with the
/// directories to mount on.
struct World {
    dir: tempfile::TempDir,
}

impl World {
    fn new() -> Option<World> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("SKIPPED: needs root (namespaces and mounts)");
            return None;
        }
        let bb = Path::new("/bin/busybox");
        if !bb.exists() {
            eprintln!("SKIPPED: needs /bin/busybox (apt-get install busybox-static)");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("image");
        std::fs::create_dir_all(image.join("bin")).unwrap();
        std::fs::copy(bb, image.join("bin/busybox")).unwrap();
        std::fs::write(image.join("marker"), b"from the image").unwrap();
        for d in ["root", "points", "upper", "work"] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
        }
        Some(World { dir })
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// The image read-only, with a mount-point directory (an instance's root).
    fn read_only_root(&self) -> Root {
        Root::Overlay {
            lower: vec![self.path("image")],
            upper: None,
            target: self.path("root"),
            mount_points: Some(self.path("points")),
        }
    }

    /// The image with an upper directory (a build step's root).
    fn writable_root(&self) -> Root {
        Root::Overlay {
            lower: vec![self.path("image")],
            upper: Some(glint_sandbox::Upper {
                upper: self.path("upper"),
                work: self.path("work"),
            }),
            target: self.path("root"),
            mount_points: None,
        }
    }
}

fn sh(script: &str, env: &[(&str, &str)]) -> Command {
    Command::resolved(
        "/bin/busybox",
        vec!["sh".into(), "-c".into(), script.into()],
        env.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<BTreeMap<_, _>>(),
    )
}

/// A plan whose output goes to a pipe, read by [`finish`].
fn plan(root: Root, command: Command) -> (Plan, std::io::PipeReader) {
    let (r, w) = std::io::pipe().unwrap();
    let w2 = w.try_clone().unwrap();
    (Plan::new(root, command, Stdio::new(w, w2)), r)
}

/// Starts `plan`, waits for it, returns how it ended and what it printed.
fn finish(plan: Plan, mut out: std::io::PipeReader) -> (ExitStatus, String) {
    let mut sandbox = spawn(plan).unwrap();
    sandbox.wait_started().unwrap();
    let status = sandbox.wait().unwrap();
    let mut text = String::new();
    out.read_to_string(&mut text).unwrap();
    (status, text)
}

fn lines(text: &str) -> Vec<&str> {
    text.lines().collect()
}

#[test]
fn program_is_pid_1_with_only_its_environment_hostname_and_mounts() {
    let Some(w) = World::new() else { return };
    let (mut p, out) = plan(
        w.writable_root(),
        sh(
            "echo pid=$$; echo host=$(/bin/busybox hostname); /bin/busybox env | /bin/busybox sort; \
             echo > /written; /bin/busybox test -c /dev/null && echo dev_null; \
             /bin/busybox test -d /proc/1 && echo proc; /bin/busybox test -f /etc/hostname || echo no_host_files",
            &[("A", "1"), ("PATH", "/bin")],
        ),
    );
    p.hostname = "box".into();
    let (status, text) = finish(p, out);
    assert_eq!(status, ExitStatus::Code(0), "{text}");
    let l = lines(&text);
    for want in [
        "pid=1",
        "host=box",
        "A=1",
        "PATH=/bin",
        "dev_null",
        "proc",
        "no_host_files",
    ] {
        assert!(l.contains(&want), "missing {want:?} in:\n{text}");
    }
    // The shell's own variables aside, nothing but the plan's environment.
    let env: Vec<&str> = l
        .iter()
        .copied()
        .filter(|x| x.contains('=') && !x.starts_with("pid=") && !x.starts_with("host="))
        .filter(|x| !x.starts_with("PWD=") && !x.starts_with("SHLVL=") && !x.starts_with("_="))
        .collect();
    assert_eq!(env, vec!["A=1", "PATH=/bin"], "{text}");
    // Writes land in the upper directory, never in the image.
    assert!(w.path("upper/written").exists());
    assert!(!w.path("image/written").exists());
}

#[test]
fn an_init_runs_the_program_as_pid_2_with_none_of_the_callers_memory() {
    let Some(w) = World::new() else { return };
    // This test process's own environment is not empty (cargo sets plenty):
    // a forked init would show it at /proc/1/environ.
    let own = std::fs::read("/proc/self/environ").unwrap();
    assert!(!own.is_empty());
    let status_path = w.path("status");
    let status = std::fs::File::create(&status_path).unwrap();
    let (mut p, out) = plan(
        w.read_only_root(),
        sh(
            "echo pid=$$; echo ppid=$PPID; \
             echo init_env_bytes=$(/bin/busybox wc -c < /proc/1/environ); \
             echo init_cmdline=$(/bin/busybox tr '\\0' ' ' < /proc/1/cmdline); \
             echo init_name=$(/bin/busybox cat /proc/1/comm); \
             echo own=$(/bin/busybox tr '\\0' ' ' < /proc/$$/environ); exit 7",
            &[("ONLY", "mine")],
        ),
    );
    p.pid1 = Pid1::Init { status };
    let (exit, text) = finish(p, out);
    // The init exits with its program's code and records its wait status.
    assert_eq!(exit, ExitStatus::Code(7), "{text}");
    assert_eq!(read_status_file(&status_path), Some(ExitStatus::Code(7)));
    let l = lines(&text);
    for want in [
        "pid=2",
        "ppid=1",
        "init_env_bytes=0",
        "init_cmdline=glint-sandbox-init glint-sandbox-init-protocol-1",
        "init_name=glint-init",
        "own=ONLY=mine",
    ] {
        assert!(l.contains(&want), "missing {want:?} in:\n{text}");
    }
}

#[test]
fn the_init_forwards_signals_and_reports_a_killed_program() {
    let Some(w) = World::new() else { return };
    let status_path = w.path("status");
    let (mut p, mut out) = plan(
        w.read_only_root(),
        sh("echo ready; exec /bin/busybox sleep 600", &[]),
    );
    p.pid1 = Pid1::Init {
        status: std::fs::File::create(&status_path).unwrap(),
    };
    let mut sandbox = spawn(p).unwrap();
    sandbox.wait_started().unwrap();
    let mut ready = [0u8; 6];
    out.read_exact(&mut ready).unwrap();
    // SIGTERM to the init reaches the program (which, as PID 2, dies of it).
    // SAFETY: kill on our own child.
    assert_eq!(unsafe { libc::kill(sandbox.pid(), libc::SIGTERM) }, 0);
    assert_eq!(sandbox.wait().unwrap(), ExitStatus::Code(128 + 15));
    assert_eq!(read_status_file(&status_path), Some(ExitStatus::Signal(15)));
}

#[test]
fn binds_are_writable_or_read_only_as_planned() {
    let Some(w) = World::new() else { return };
    let data = tempfile::tempdir().unwrap();
    let config = tempfile::tempdir().unwrap();
    std::fs::write(config.path().join("app.conf"), b"setting=1\n").unwrap();
    let (mut p, out) = plan(
        w.read_only_root(),
        sh(
            "echo hello > /var/lib/data/out && echo wrote_data; \
             /bin/busybox cat /etc/app/app.conf; \
             echo x > /etc/app/new 2>/dev/null && echo wrote_config || echo config_read_only; \
             echo x > /marker2 2>/dev/null && echo wrote_root || echo root_read_only",
            &[],
        ),
    );
    p.binds = vec![
        Bind::read_write(data.path(), "/var/lib/data"),
        Bind::read_only(config.path(), "/etc/app"),
    ];
    let (status, text) = finish(p, out);
    assert_eq!(status, ExitStatus::Code(0), "{text}");
    let l = lines(&text);
    for want in [
        "wrote_data",
        "setting=1",
        "config_read_only",
        "root_read_only",
    ] {
        assert!(l.contains(&want), "missing {want:?} in:\n{text}");
    }
    assert_eq!(
        std::fs::read_to_string(data.path().join("out")).unwrap(),
        "hello\n"
    );
    assert!(!config.path().join("new").exists());
    // The mount points were made beside the image, not in it.
    assert!(w.path("points/var/lib/data").is_dir());
    assert!(!w.path("image/var").exists());
}

/// A network namespace made with `ip netns add`, deleted when dropped.
struct NamedNetns(String);

impl NamedNetns {
    fn new(tag: &str) -> NamedNetns {
        let name = format!("glint-sbx-{tag}-{}", std::process::id());
        let ok = Host::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap();
        assert!(ok.success(), "ip netns add {name}");
        NamedNetns(name)
    }

    fn ip(&self, args: &[&str]) {
        let ok = Host::new("ip")
            .args(["-n", &self.0])
            .args(args)
            .status()
            .unwrap();
        assert!(ok.success(), "ip -n {} {args:?}", self.0);
    }

    fn path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.0)
    }
}

impl Drop for NamedNetns {
    fn drop(&mut self) {
        let _ = Host::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Interface names in `/proc/net/dev` output.
fn interfaces(text: &str) -> Vec<String> {
    let mut v: Vec<String> = text
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(name, _)| name.trim().to_owned())
        .filter(|n| !n.is_empty() && !n.contains(' ') && !n.contains('|'))
        .collect();
    v.sort();
    v
}

#[test]
fn a_sandbox_joins_an_existing_network_namespace_and_sees_only_it() {
    let Some(w) = World::new() else { return };
    if Host::new("ip").arg("-V").output().is_err() {
        eprintln!("SKIPPED: needs iproute2 (`ip`)");
        return;
    }
    let ns = NamedNetns::new("join");
    // A veth pair with one end in the namespace, as a per-instance network
    // has; the host keeps the other end.
    let host_end = format!("gsh{}", std::process::id());
    let made = Host::new("ip")
        .args([
            "link", "add", &host_end, "type", "veth", "peer", "name", "glint-i0", "netns", &ns.0,
        ])
        .status()
        .unwrap();
    assert!(made.success(), "cannot make a veth pair");
    ns.ip(&["link", "set", "glint-i0", "up"]);
    let (mut p, out) = plan(
        w.read_only_root(),
        sh("/bin/busybox cat /proc/net/dev", &[]),
    );
    p.network = Network::Join(NetNs::open(&ns.path()).unwrap());
    let (status, text) = finish(p, out);
    assert_eq!(status, ExitStatus::Code(0), "{text}");
    assert_eq!(interfaces(&text), vec!["glint-i0", "lo"], "{text}");
    // The host has its end, and the sandbox does not see it.
    let host = std::fs::read_to_string("/proc/net/dev").unwrap();
    assert!(interfaces(&host).contains(&host_end), "{host}");
}

#[test]
fn a_new_network_namespace_has_only_a_loopback_that_is_up() {
    let Some(w) = World::new() else { return };
    let (p, out) = plan(
        w.read_only_root(),
        sh(
            "/bin/busybox cat /proc/net/dev; /bin/busybox cat /proc/net/if_inet6",
            &[],
        ),
    );
    // Plan::new's default network is a new one.
    let (status, text) = finish(p, out);
    assert_eq!(status, ExitStatus::Code(0), "{text}");
    assert_eq!(interfaces(&text), vec!["lo"], "{text}");
    // ::1 is on lo only once lo is up.
    assert!(
        text.lines()
            .any(|l| l.starts_with("00000000000000000000000000000001") && l.ends_with("lo")),
        "{text}"
    );
}

/// A cgroup directory made for a test, removed when dropped.
struct TestCgroup(PathBuf);

impl TestCgroup {
    fn new(hierarchy: &str, tag: &str) -> Option<TestCgroup> {
        let base = Path::new("/sys/fs/cgroup").join(hierarchy);
        if !base.join("cgroup.procs").exists() {
            eprintln!("SKIPPED part: no cgroup hierarchy at {}", base.display());
            return None;
        }
        let dir = base.join(format!("glint-sbx-{tag}-{}", std::process::id()));
        std::fs::create_dir(&dir).unwrap();
        Some(TestCgroup(dir))
    }

    fn name(&self) -> String {
        format!("/{}", self.0.file_name().unwrap().to_string_lossy())
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[test]
fn a_sandbox_starts_inside_the_planned_cgroups() {
    let Some(w) = World::new() else { return };
    let v2 = TestCgroup::new("unified", "v2");
    let v1 = TestCgroup::new("pids", "v1");
    if v2.is_none() && v1.is_none() {
        return;
    }
    let mut cgroups = match &v2 {
        Some(c) => Cgroups::clone_into(&c.0).unwrap(),
        None => Cgroups::default(),
    };
    if let Some(c) = &v1 {
        cgroups = cgroups.join(&c.0).unwrap();
    }
    let (mut p, out) = plan(
        w.read_only_root(),
        sh("/bin/busybox cat /proc/self/cgroup", &[]),
    );
    p.cgroups = cgroups;
    let (status, text) = finish(p, out);
    assert_eq!(status, ExitStatus::Code(0), "{text}");
    if let Some(c) = &v2 {
        let want = format!("0::{}", c.name());
        assert!(
            text.lines().any(|l| l == want),
            "missing {want} in:\n{text}"
        );
    }
    if let Some(c) = &v1 {
        assert!(
            text.lines()
                .any(|l| l.ends_with(&format!(":pids:{}", c.name()))),
            "not in {} :\n{text}",
            c.name()
        );
    }
}

#[test]
fn the_program_runs_as_the_planned_user() {
    let Some(w) = World::new() else { return };
    for pid1 in ["program", "init"] {
        let (mut p, out) = plan(
            w.read_only_root(),
            sh(
                "echo uid=$(/bin/busybox id -u) gid=$(/bin/busybox id -g) groups=$(/bin/busybox id -G)",
                &[],
            ),
        );
        p.user = Some(User {
            uid: 65534,
            gid: 65533,
        });
        if pid1 == "init" {
            p.pid1 = Pid1::Init {
                status: std::fs::File::create(w.path("status")).unwrap(),
            };
        }
        let (status, text) = finish(p, out);
        assert_eq!(status, ExitStatus::Code(0), "{pid1}: {text}");
        assert_eq!(text.trim(), "uid=65534 gid=65533 groups=65533", "{pid1}");
    }
}

#[test]
fn a_failed_step_is_named() {
    let Some(w) = World::new() else { return };
    // A working directory the image does not have.
    let (mut p, _out) = plan(w.read_only_root(), sh("true", &[]));
    p.workdir = "/no/such/dir".into();
    let mut sandbox = spawn(p).unwrap();
    match sandbox.wait_started() {
        Err(SandboxError::Step { step, source }) => {
            assert_eq!(step, Step::Workdir);
            assert_eq!(source.raw_os_error(), Some(libc::ENOENT));
        }
        other => panic!("expected a failed step, got {other:?}"),
    }
    assert_eq!(sandbox.wait().unwrap(), ExitStatus::Code(126));
    // A program that is not there, as PID 1 and under an init.
    for pid1 in ["program", "init"] {
        let (mut p, _out) = plan(
            w.read_only_root(),
            Command::resolved("/bin/missing", vec!["missing".into()], BTreeMap::new()),
        );
        if pid1 == "init" {
            p.pid1 = Pid1::Init {
                status: std::fs::File::create(w.path("status")).unwrap(),
            };
        }
        let mut sandbox = spawn(p).unwrap();
        let err = sandbox.wait_started().unwrap_err();
        assert!(
            matches!(&err, SandboxError::Step { step: Step::Exec, source } if source.raw_os_error() == Some(libc::ENOENT)),
            "{pid1}: {err:?}"
        );
        sandbox.wait().unwrap();
    }
}

#[test]
fn bare_names_are_searched_in_the_commands_path_inside_the_root() {
    let Some(w) = World::new() else { return };
    std::os::unix::fs::symlink("busybox", w.path("image/bin/sh")).unwrap();
    let env = BTreeMap::from([("PATH".to_owned(), "/nope:/bin".to_owned())]);
    let command = Command::search(vec!["sh".into(), "-c".into(), "echo found".into()], env);
    let (p, out) = plan(w.writable_root(), command);
    let (status, text) = finish(p, out);
    assert_eq!(status, ExitStatus::Code(0), "{text}");
    assert_eq!(text, "found\n");
}

#[test]
fn plans_that_cannot_work_are_refused_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("image");
    let root = dir.path().join("root");
    std::fs::create_dir_all(&image).unwrap();
    std::fs::create_dir_all(&root).unwrap();
    let vol = tempfile::tempdir().unwrap();
    let ro_root = || Root::Overlay {
        lower: vec![image.clone()],
        upper: None,
        target: root.clone(),
        mount_points: None,
    };
    let refused = |binds: Vec<Bind>, mounts: Mounts, want: &str| {
        let (mut p, _out) = plan(ro_root(), sh("true", &[]));
        p.binds = binds;
        p.mounts = mounts;
        match spawn(p) {
            Err(SandboxError::Invalid { reason }) => {
                assert!(reason.contains(want), "{reason} (wanted {want})")
            }
            other => panic!("expected an invalid plan ({want}), got {other:?}"),
        }
    };
    let all = Mounts::default();
    refused(vec![Bind::read_write(vol.path(), "/tmp/x")], all, "/tmp");
    refused(vec![Bind::read_write(vol.path(), "data")], all, "absolute");
    refused(
        vec![
            Bind::read_write(vol.path(), "/data"),
            Bind::read_only(vol.path(), "/data/sub"),
        ],
        all,
        "overlap",
    );
    // A read-only root without the target and without a mount-point directory.
    refused(
        vec![Bind::read_write(vol.path(), "/data")],
        Mounts {
            proc_: false,
            dev: false,
            shm: false,
            tmp: false,
        },
        "does not exist",
    );
    let (mut p, _out) = plan(ro_root(), sh("true", &[]));
    p.command.env.insert("A=B".into(), "x".into());
    assert!(matches!(spawn(p), Err(SandboxError::Invalid { .. })));
}
