//! Shared by the real-process tests and benchmarks: the instance program (this
//! very binary, re-executed in "app mode") and helpers to drive a provider.
//!
//! The binary is statically linked (see `.cargo/config.toml`), so a copy of it
//! runs inside an image root with nothing else in it.
#![allow(dead_code)]

use glint_model::{Digest, InstanceId, Labels, Name, Resources, VersionNumber};
use glint_provider::{LaunchImage, LaunchSpec, ProviderEvent, RunState};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// The variable that selects app mode, and the mode.
pub const APP_MODE: &str = "GLINT_TESTAPP";

/// Generous bound for anything a test waits for on a loaded machine.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// Lines per burst of the "chatty" app (100 bytes each).
pub const CHATTY_BURST: u64 = 1000;

/// The variable that carries a secret planted in the test process's own
/// environment (as a conductor's might hold a token), which no instance may
/// see.
pub const CONDUCTOR_SECRET: &str = "GLINT_TEST_CONDUCTOR_SECRET";

/// Makes sure this process was started with [`CONDUCTOR_SECRET`] in its
/// environment: if not, executes itself again with it. (`setenv` would not
/// do: the kernel shows a process's environment as it was at `execve`, and
/// that is what a leak would expose.) Call first thing in `main`, before any
/// thread starts.
pub fn plant_conductor_secret() {
    use std::os::unix::process::CommandExt;
    if std::env::var_os(CONDUCTOR_SECRET).is_some() {
        return;
    }
    let secret = format!("secret-{}-{}", std::process::id(), next_entropy());
    let exe = std::env::current_exe().expect("own executable");
    let err = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env(CONDUCTOR_SECRET, secret)
        .exec();
    panic!("cannot re-execute the test binary: {err}");
}

/// The planted secret (see [`plant_conductor_secret`]).
pub fn conductor_secret() -> String {
    std::env::var(CONDUCTOR_SECRET).expect("the secret was planted in main")
}

/// If this process was started as an instance program, runs it and never
/// returns.
pub fn run_app_if_requested() {
    let Ok(mode) = std::env::var(APP_MODE) else {
        return;
    };
    let code = app(&mode);
    std::process::exit(code);
}

fn ready() {
    println!("ready");
    let _ = std::io::stdout().flush();
}

fn sleep_forever() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn ignore_sigterm() {
    // SAFETY: installing SIG_IGN has no preconditions.
    unsafe {
        libc::signal(libc::SIGTERM, libc::SIG_IGN);
    }
}

fn app(mode: &str) -> i32 {
    match mode {
        // Report the environment and working directory, then serve HTTP.
        "serve" => {
            let cwd = std::env::current_dir().unwrap_or_default();
            println!("cwd={}", cwd.display());
            for (k, v) in std::env::vars() {
                println!("env {k}={v}");
            }
            eprintln!("to stderr");
            let host = std::env::var("HOST").unwrap_or_default();
            let port = std::env::var("PORT").unwrap_or_default();
            let id = std::env::var("GLINT_INSTANCE_ID").unwrap_or_default();
            let listener = match TcpListener::bind(format!("{host}:{port}")) {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("cannot listen: {e}");
                    return 1;
                }
            };
            ready();
            for stream in listener.incoming().flatten() {
                let _ = answer(stream, &format!("hello from {id}\n"));
            }
            0
        }
        "sleep" => {
            ready();
            sleep_forever()
        }
        "ignore-term" => {
            ignore_sigterm();
            ready();
            sleep_forever()
        }
        "exit" => std::env::var("EXIT_CODE")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(0),
        // Start a child in CHILD_MODE (inheriting the environment, hence the
        // labels), report its pid, then sleep.
        "spawn-child" => {
            let child_mode = std::env::var("CHILD_MODE").unwrap_or_else(|_| "sleep".into());
            let exe = std::env::current_exe().unwrap_or_default();
            match std::process::Command::new(exe)
                .env(APP_MODE, child_mode)
                .spawn()
            {
                Ok(child) => println!("child={}", child.id()),
                Err(e) => {
                    eprintln!("cannot spawn child: {e}");
                    return 1;
                }
            }
            // Wait until the child is ready (it prints to the same log).
            std::thread::sleep(Duration::from_millis(50));
            ready();
            sleep_forever()
        }
        // A child that leaves the process group and ignores SIGTERM.
        "daemon" => {
            let _ = rustix::process::setsid();
            ignore_sigterm();
            println!("daemon ready");
            let _ = std::io::stdout().flush();
            sleep_forever()
        }
        // What the instance can see of its world (namespaced instances).
        "probe" => {
            println!("pid={}", std::process::id());
            println!(
                "host_hostname_visible={}",
                Path::new("/etc/hostname").exists()
            );
            println!(
                "image_marker_visible={}",
                Path::new("/image-marker").exists()
            );
            println!(
                "root_writable={}",
                std::fs::write("/probe-write", b"x").is_ok()
            );
            println!("tmp_writable={}", std::fs::write("/tmp/x", b"x").is_ok());
            println!("dev_null={}", std::fs::write("/dev/null", b"x").is_ok());
            let procs = std::fs::read_dir("/proc")
                .map(|d| {
                    d.flatten()
                        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
                        .count()
                })
                .unwrap_or(0);
            println!("visible_processes={procs}");
            let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
            println!("hostname={}", hostname.trim());
            let cwd = std::env::current_dir().unwrap_or_default();
            println!("cwd={}", cwd.display());
            ready();
            sleep_forever()
        }
        // What the instance can read of others' environments.
        "environ" => {
            match std::fs::read("/proc/1/environ") {
                Ok(b) => {
                    println!("init_environ_readable=true");
                    println!(
                        "init_environ={}",
                        String::from_utf8_lossy(&b).replace('\0', " ")
                    );
                }
                Err(e) => println!("init_environ_readable=false ({e})"),
            }
            let own = std::fs::read("/proc/self/environ").unwrap_or_default();
            println!(
                "own_environ={}",
                String::from_utf8_lossy(&own).replace('\0', " ")
            );
            ready();
            sleep_forever()
        }
        // Bound volumes: /data/rw must take a write, /data/ro must not.
        "volumes" => {
            println!(
                "rw_written={}",
                std::fs::write("/data/rw/out", b"from the instance").is_ok()
            );
            println!(
                "ro_read={}",
                std::fs::read_to_string("/data/ro/conf")
                    .unwrap_or_default()
                    .trim()
            );
            println!(
                "ro_written={}",
                std::fs::write("/data/ro/new", b"x").is_ok()
            );
            ready();
            sleep_forever()
        }
        // Leave a mark in the volume at /data (with what was there before).
        "volume-mark" => {
            let before = std::fs::read_to_string("/data/mark").unwrap_or_default();
            println!("before={}", before.trim());
            let id = std::env::var("GLINT_INSTANCE_ID").unwrap_or_default();
            println!("written={}", std::fs::write("/data/mark", id).is_ok());
            ready();
            sleep_forever()
        }
        // Take memory, touching every page, until the kernel says no.
        "hog" => {
            ready();
            let mut kept: Vec<Vec<u8>> = Vec::new();
            loop {
                kept.push(vec![1u8; 1 << 20]);
                if kept.len().is_multiple_of(16) {
                    println!("holding {} MiB", kept.len());
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
        // Burn one CPU for ever.
        "spin" => {
            ready();
            let mut x: u64 = 0;
            loop {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
        }
        // Start up to 64 threads (each a task the pids limit counts).
        "threads" => {
            let mut n = 0;
            for _ in 0..64 {
                match std::thread::Builder::new().spawn(sleep_forever) {
                    Ok(_) => n += 1,
                    Err(_) => break,
                }
            }
            println!("threads={n}");
            ready();
            sleep_forever()
        }
        // The network interfaces the instance sees.
        "interfaces" => {
            let dev = std::fs::read_to_string("/proc/net/dev").unwrap_or_default();
            let mut names: Vec<&str> = dev
                .lines()
                .skip(2)
                .filter_map(|l| l.split_once(':'))
                .map(|(n, _)| n.trim())
                .collect();
            names.sort_unstable();
            println!("interfaces={}", names.join(","));
            ready();
            sleep_forever()
        }
        // Bursts of numbered 100-byte lines: one at start, one more at each
        // SIGUSR1, each followed by "burst N done".
        "chatty" => {
            // SAFETY: blocking SIGUSR1 in this (only) thread, then waiting for it.
            unsafe {
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::sigaddset(&mut set, libc::SIGUSR1);
                libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
                let mut line = 0u64;
                for burst in 1.. {
                    let mut out = std::io::stdout().lock();
                    for _ in 0..CHATTY_BURST {
                        let _ = writeln!(out, "line {line:07} {}", "x".repeat(86));
                        line += 1;
                    }
                    let _ = writeln!(out, "burst {burst} done");
                    let _ = out.flush();
                    drop(out);
                    let mut sig = 0;
                    libc::sigwait(&set, &mut sig);
                }
            }
            0
        }
        other => {
            eprintln!("unknown app mode {other}");
            2
        }
    }
}

/// Answers one HTTP request with `body` and closes.
fn answer(mut stream: TcpStream, body: &str) -> std::io::Result<()> {
    let mut buf = [0u8; 4096];
    let mut seen = Vec::new();
    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        seen.extend_from_slice(&buf[..n]);
    }
    write!(
        stream,
        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// `GET path` over a fresh connection; returns the body.
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
    )?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    Ok(resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default())
}

/// An image root holding this binary as `/bin/testapp`, a marker file, and a
/// non-executable file; shared by all tests of the process (read-only).
pub fn image_root() -> &'static Path {
    static ROOT: OnceLock<tempfile::TempDir> = OnceLock::new();
    ROOT.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::copy(std::env::current_exe().unwrap(), bin.join("testapp")).unwrap();
        std::fs::write(dir.path().join("image-marker"), b"from the image").unwrap();
        std::fs::write(dir.path().join("not-a-program"), b"data").unwrap();
        dir
    })
    .path()
}

/// A unique store id, so that tests running side by side never adopt each
/// other's instances. When dropped (a test's end, even by a panic) it kills
/// every process still carrying the id, so a failing test leaks nothing.
pub struct TestStore(String);

pub fn unique_store(name: &str) -> TestStore {
    TestStore(format!(
        "test-{}-{name}-{}",
        std::process::id(),
        next_entropy() % 100_000
    ))
}

impl std::ops::Deref for TestStore {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for TestStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Drop for TestStore {
    fn drop(&mut self) {
        let needle = format!("GLINT_STORE={}", self.0);
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return;
        };
        for entry in dir.flatten() {
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
            if env.split(|&b| b == 0).any(|v| v == needle.as_bytes())
                && let Some(pid) = rustix::process::Pid::from_raw(pid)
            {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
        // The cgroups of instances killed without being removed.
        for root in ["memory", "cpu", "cpuacct", "pids", "unified", ""] {
            let dir = Path::new("/sys/fs/cgroup")
                .join(root)
                .join("glint")
                .join(&self.0);
            for _ in 0..50 {
                if let Ok(children) = std::fs::read_dir(&dir) {
                    for c in children.flatten() {
                        let _ = std::fs::remove_dir(c.path());
                    }
                }
                if !dir.exists() || std::fs::remove_dir(&dir).is_ok() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

fn next_entropy() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    (t ^ (n.wrapping_mul(0x9E37_79B9_7F4A_7C15))).wrapping_add(u64::from(std::process::id()))
}

/// A launch spec running `/bin/testapp` in `mode`.
pub fn spec(store: &str, service: &str, mode: &str) -> LaunchSpec {
    let service = Name::new(service).unwrap();
    let instance = InstanceId::from_entropy(&service, next_entropy());
    LaunchSpec {
        mounts: Vec::new(),
        secrets: Vec::new(),
        own_network: false,
        glint: None,
        labels: Labels {
            store: store.to_owned(),
            environment: Name::new("test").unwrap(),
            service,
            version: VersionNumber(1),
            instance,
            image: Digest::of(b"test image"),
        },
        image: LaunchImage {
            digest: Digest::of(b"test image"),
            rootfs: image_root().to_owned(),
            archive: None,
        },
        argv: vec!["/bin/testapp".into()],
        env: BTreeMap::from([(APP_MODE.to_owned(), mode.to_owned())]),
        workdir: "/".into(),
        port: 8080,
        resources: Resources::default(),
    }
}

/// Waits until the file contains `needle`; returns its contents.
pub fn wait_for_text(path: &Path, needle: &str) -> String {
    wait_for_lines(path, needle, 0)
}

/// Waits until the file contains `needle`, and `needle` as a whole line at
/// least `count` times; returns its contents.
pub fn wait_for_lines(path: &Path, needle: &str, count: usize) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) && text.lines().filter(|l| *l == needle).count() >= count {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{} never had {needle:?} ({count} times as a line); it has:\n{text}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The next `Exited` event for `id`.
pub async fn next_exit(
    rx: &mut tokio::sync::broadcast::Receiver<ProviderEvent>,
    id: &InstanceId,
) -> RunState {
    let wait = async {
        loop {
            match rx.recv().await {
                Ok(ProviderEvent::Exited { instance, state }) if &instance == id => return state,
                Ok(_) => {}
                Err(e) => panic!("event stream failed: {e}"),
            }
        }
    };
    tokio::time::timeout(PATIENCE, wait)
        .await
        .unwrap_or_else(|_| panic!("no exit event for {id}"))
}

/// The pid in an `Observed::handle` (`pid 1234`, `pid 1234 (namespaced)`).
pub fn handle_pid(handle: &str) -> i32 {
    handle
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid in handle {handle:?}"))
}

/// `(state, session id, start ticks)` from `/proc/<pid>/stat`, if the pid exists.
pub fn proc_stat(pid: i32) -> Option<(char, i32, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some((
        f[0].chars().next()?,
        f[3].parse().ok()?,
        f[19].parse().ok()?,
    ))
}

/// Whether `pid` is gone or only a zombie is left.
pub fn is_dead(pid: i32) -> bool {
    !matches!(proc_stat(pid), Some((s, _, _)) if s != 'Z' && s != 'X')
}

/// Waits until `pid` is dead.
pub fn wait_dead(pid: i32) {
    let deadline = Instant::now() + PATIENCE;
    while !is_dead(pid) {
        assert!(Instant::now() < deadline, "pid {pid} never died");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Sends SIGKILL to a pid.
pub fn kill9(pid: i32) {
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
}

/// A fresh state directory.
pub fn state_dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// The instance directory of `id` under `state`.
pub fn instance_dir(state: &Path, id: &InstanceId) -> PathBuf {
    state.join("run").join(id.as_str())
}

/// A multi-threaded runtime like the conductor's.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}
