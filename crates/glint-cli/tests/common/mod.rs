//! A test context that runs the real `glint` binary against real processes:
//! a fresh data directory, a free port, an environment file written from a
//! template, helpers to run commands and wait for conditions, and a guard
//! that stops every process the test started — conductors, the data plane
//! process (which outlives conductors by design) and instances — even when
//! the test fails.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The `glint` binary under test.
pub fn glint_bin() -> &'static str {
    env!("CARGO_BIN_EXE_glint")
}

/// A free loopback port (released before returning; good enough for tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One test's world.
pub struct Ctx {
    pub dir: tempfile::TempDir,
    pub port: u16,
    children: Vec<Child>,
}

impl Ctx {
    /// A fresh context with the demo app copied in as `app/hello`.
    pub fn new() -> Ctx {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("app")).unwrap();
        std::fs::copy(
            env!("CARGO_BIN_EXE_glint-hello"),
            dir.path().join("app/hello"),
        )
        .unwrap();
        Ctx {
            dir,
            port: free_port(),
            children: Vec::new(),
        }
    }

    /// The data directory.
    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Writes `name` with `{port}` replaced; returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text.replace("{port}", &self.port.to_string())).unwrap();
        path
    }

    /// The demo environment: `instances` copies of the demo app with a
    /// greeting, behind an endpoint on this context's port.
    pub fn demo(&self, name: &str, instances: u32, greeting: &str) -> PathBuf {
        self.demo_with(name, instances, &[("GREETING", greeting)], "")
    }

    /// The demo environment with these env values and extra service settings
    /// (`extra` is pasted into the service block).
    pub fn demo_with(
        &self,
        name: &str,
        instances: u32,
        env: &[(&str, &str)],
        extra: &str,
    ) -> PathBuf {
        self.demo_full(name, "", instances, env, extra)
    }

    /// The demo environment with a top-level preamble (e.g. an `environment`
    /// block choosing the provider).
    pub fn demo_full(
        &self,
        name: &str,
        preamble: &str,
        instances: u32,
        env: &[(&str, &str)],
        extra: &str,
    ) -> PathBuf {
        let env: String = env
            .iter()
            .map(|(k, v)| format!("    {k} = \"{v}\"\n"))
            .collect();
        self.write(
            name,
            &format!(
                r#"{preamble}
image hello {{
  from = scratch
  copy "app/hello" to "/bin/hello"
  entrypoint = ["/bin/hello"]
  port = 8080
}}

service web {{
  image     = image.hello
  instances = {instances}
  env = {{
{env}  }}
  health {{
    http     = "/healthz"
    interval = 1s
    timeout  = 500ms
    start_timeout = 3s
  }}
  stop_grace = 2s
  drain      = 2s
  {extra}
}}

endpoint public {{
  listen  = 127.0.0.1:{{port}}
  service = service.web
}}
"#
            ),
        )
    }

    /// A `glint` command with this context's data directory.
    pub fn cmd(&self, args: &[&str]) -> Command {
        self.cmd_of(Path::new(glint_bin()), args)
    }

    /// A command of another `glint` binary (a copy, another build) with this
    /// context's data directory.
    pub fn cmd_of(&self, program: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(program);
        c.args(args)
            .env("GLINT_DATA_DIR", self.data())
            .env("NO_COLOR", "1")
            .current_dir(self.dir.path());
        c
    }

    /// Runs a command to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// Runs a command that must succeed; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "glint {args:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Starts a long-running command (`up`, `conductor`) in the background,
    /// its output going to `<name>.log` in the test directory.
    pub fn spawn(&mut self, name: &str, args: &[&str]) -> u32 {
        self.spawn_of(Path::new(glint_bin()), name, args)
    }

    /// [`Ctx::spawn`] with another `glint` binary.
    pub fn spawn_of(&mut self, program: &Path, name: &str, args: &[&str]) -> u32 {
        self.spawn_env(program, name, args, &[])
    }

    /// [`Ctx::spawn_of`] with more environment variables.
    pub fn spawn_env(
        &mut self,
        program: &Path,
        name: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> u32 {
        let log = std::fs::File::create(self.dir.path().join(format!("{name}.log"))).unwrap();
        let mut cmd = self.cmd_of(program, args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let pid = child.id();
        self.children.push(child);
        pid
    }

    /// The log of a spawned command.
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{name}.log"))).unwrap_or_default()
    }

    /// `glint status -o json`.
    pub fn status(&self) -> Value {
        serde_json::from_str(&self.ok(&["status", "-o", "json"])).unwrap()
    }

    /// Waits (up to 60 s) until `cond` holds for the status.
    pub fn wait_status(&self, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let s = self.status();
            if cond(&s) {
                return s;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out waiting for {what}; last status:\n{s:#}\nevents:\n{}",
                    self.ok(&["events", "-n", "40"])
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until `service` has `n` healthy running instances of the
    /// newest version and the endpoint routes to them all; returns their ids.
    pub fn wait_ready(&self, n: usize) -> Vec<String> {
        let s = self.wait_status(&format!("{n} healthy instances"), |s| {
            healthy(s).len() == n
                && instances(s).len() == n
                && s["endpoints"][0]["backends"].as_u64() == Some(n as u64)
        });
        healthy(&s)
    }

    /// The endpoint's address.
    pub fn endpoint(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `glint secret set NAME` with `value` on standard input (plus a
    /// newline, as `echo` would); returns the output.
    pub fn set_secret(&self, name: &str, value: &str, extra_env: &[(&str, &str)]) -> Output {
        let mut c = self.cmd(&["secret", "set", name]);
        for (k, v) in extra_env {
            c.env(k, v);
        }
        let mut child = c
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // A refusal may come before the value is read: a closed pipe is fine.
        let _ = child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{value}\n").as_bytes());
        child.wait_with_output().unwrap()
    }

    /// The store id (the label on every instance).
    pub fn store_id(&self) -> String {
        self.status()["store_id"].as_str().unwrap().to_owned()
    }
}

impl Drop for Ctx {
    fn drop(&mut self) {
        // Conductors first (SIGKILL: they must not start replacements),
        // then every process carrying this store's label: instances, and
        // data plane processes (those of other builds a test started too).
        let store = Command::new(glint_bin())
            .args(["status", "-o", "json"])
            .env("GLINT_DATA_DIR", self.data())
            .output()
            .ok()
            .and_then(|o| serde_json::from_slice::<Value>(&o.stdout).ok())
            .and_then(|v| v["store_id"].as_str().map(str::to_owned));
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(id) = store {
            for pid in labelled_pids(&id).into_iter().chain(dataplane_pids(&id)) {
                // SAFETY: plain kill(2) on a pid we found carrying our label.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
            remove_networks(&self.data(), &id);
            remove_cgroups(&id);
            // Instances' secrets (a tmpfs directory the provider removes
            // with each instance; the test killed them instead).
            let _ = std::fs::remove_dir_all(format!("/dev/shm/glint-secrets-{id}"));
            let _ = std::fs::remove_dir_all(format!("/dev/shm/glint-run-{id}"));
        }
    }
}

/// What killed instances of an environment with rules leave on the host:
/// their own networks (namespace, link; every instance ever launched has a
/// log directory) and the store's nftables table.
fn remove_networks(data: &Path, store: &str) {
    use glint_provider::process::net;
    let logs = std::fs::read_dir(data.join("process/logs"));
    for e in logs.into_iter().flatten().flatten() {
        let id = e.file_name().to_string_lossy().into_owned();
        if net::netns_path(&net::link_name(&id)).exists() {
            net::remove(&id);
        }
    }
    let table = glint_conductor::firewall::table_name(store);
    let listed = Command::new("nft")
        .args(["list", "table", "inet", &table])
        .output()
        .is_ok_and(|o| o.status.success());
    if listed {
        let _ = Command::new("nft")
            .args(["delete", "table", "inet", &table])
            .output();
    }
}

/// Data plane processes of `store` (labelled `GLINT_DATAPLANE_STORE=<store>`),
/// not zombies.
pub fn dataplane_pids(store: &str) -> Vec<i32> {
    with_env(&format!("GLINT_DATAPLANE_STORE={store}"))
        .into_iter()
        .map(|(pid, _)| pid)
        .collect()
}

/// The data plane's pid as `glint status -o json` reports it.
pub fn dataplane_pid(s: &Value) -> Option<i32> {
    s["data_plane"]["pid"].as_i64().map(|p| p as i32)
}

/// Processes whose environment carries `GLINT_STORE=<store>`.
pub fn labelled_pids(store: &str) -> Vec<i32> {
    labelled(store).into_iter().map(|(pid, _)| pid).collect()
}

/// Processes carrying `GLINT_STORE=<store>`, with their `GLINT_INSTANCE_ID`.
/// Zombies (exited, not yet reaped) are not counted.
pub fn labelled(store: &str) -> Vec<(i32, String)> {
    with_env(&format!("GLINT_STORE={store}"))
}

/// Processes whose environment holds `needle` (`KEY=value`), with their
/// `GLINT_INSTANCE_ID`. Zombies are not counted.
fn with_env(needle: &str) -> Vec<(i32, String)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in entries.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let zombie = std::fs::read_to_string(e.path().join("stat"))
            .ok()
            .and_then(|s| {
                s.rsplit_once(')')
                    .map(|(_, rest)| rest.trim_start().starts_with('Z'))
            })
            .unwrap_or(true);
        if zombie {
            continue;
        }
        if let Ok(env) = std::fs::read(e.path().join("environ"))
            && env.split(|b| *b == 0).any(|kv| kv == needle.as_bytes())
        {
            let id = env
                .split(|b| *b == 0)
                .find_map(|kv| kv.strip_prefix(b"GLINT_INSTANCE_ID="))
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default();
            out.push((pid, id));
        }
    }
    out
}

/// The live instances in a status document.
pub fn instances(s: &Value) -> Vec<Value> {
    s["services"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|svc| svc["instances"].as_array().cloned().unwrap_or_default())
        .collect()
}

/// Ids of the healthy, running, current instances.
pub fn healthy(s: &Value) -> Vec<String> {
    instances(s)
        .into_iter()
        .filter(|i| i["health"] == "healthy" && i["state"] == "running" && i["current"] == true)
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect()
}

/// The pid of an instance, from its `handle` (`pid N`).
pub fn pid_of(s: &Value, id: &str) -> i32 {
    let i = instances(s).into_iter().find(|i| i["id"] == id).unwrap();
    i["handle"]
        .as_str()
        .unwrap()
        .trim_start_matches("pid ")
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// One HTTP/1.1 GET on a fresh connection; `Ok(body)` for a 2xx answer.
pub fn get(addr: SocketAddr, path: &str) -> Result<String, String> {
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).map_err(|e| e.to_string())?;
    let status = buf.split_whitespace().nth(1).unwrap_or("");
    let body = buf.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    if status.starts_with('2') {
        Ok(body)
    } else {
        Err(format!("status {status}: {body}"))
    }
}

/// A copy of the `glint` binary under test whose build id differs (one
/// byte of its GNU build-id note flipped): to Glint, another build — what a
/// rebuilt binary is — with the same code.
pub fn rebuilt_copy(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let original = Path::new(glint_bin());
    let id = glint_dataplane::gnu_build_id(original).expect("the binary has a build id");
    let mut bytes = std::fs::read(original).unwrap();
    let at = bytes
        .windows(id.len())
        .position(|w| w == id.as_slice())
        .unwrap();
    bytes[at] ^= 0x5a;
    let copy = dir.join("glint-rebuilt");
    std::fs::write(&copy, &bytes).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_ne!(
        glint_dataplane::build_of(&copy),
        glint_dataplane::build_of(original)
    );
    copy
}

/// What a [`Load`] saw: answered requests, failures, instance ids seen.
pub type LoadResult = (u64, Vec<String>, std::collections::BTreeSet<String>);

/// A client that GETs `/` in a loop on its own thread until stopped, and
/// counts answers and failures.
pub struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: Option<std::thread::JoinHandle<LoadResult>>,
}

impl Load {
    /// Starts a loop of GETs on one keep-alive connection, reconnecting only
    /// when the server closed it after a response (`Connection: close`): it
    /// never resends, so a request that meets a connection closed under it
    /// is a failure.
    pub fn start_keepalive(addr: SocketAddr) -> Load {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s = stop.clone();
        let handle = std::thread::spawn(move || {
            let (mut ok, mut failed, mut seen) =
                (0u64, Vec::new(), std::collections::BTreeSet::new());
            let mut conn: Option<KeepAlive> = None;
            while !s.load(std::sync::atomic::Ordering::SeqCst) {
                let c = match conn.take() {
                    Some(c) => c,
                    None => match KeepAlive::connect(addr) {
                        Ok(c) => c,
                        Err(e) => {
                            failed.push(e);
                            continue;
                        }
                    },
                };
                match c.get("/") {
                    Ok((body, again)) => {
                        ok += 1;
                        if let Some(id) = body.split_whitespace().nth(2) {
                            seen.insert(id.to_owned());
                        }
                        conn = again;
                    }
                    Err(e) => failed.push(e),
                }
            }
            (ok, failed, seen)
        });
        Load {
            stop,
            handle: Some(handle),
        }
    }

    /// Starts the loop.
    pub fn start(addr: SocketAddr) -> Load {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s = stop.clone();
        let handle = std::thread::spawn(move || {
            let (mut ok, mut failed, mut seen) =
                (0u64, Vec::new(), std::collections::BTreeSet::new());
            while !s.load(std::sync::atomic::Ordering::SeqCst) {
                match get(addr, "/") {
                    Ok(body) => {
                        ok += 1;
                        if let Some(id) = body.split_whitespace().nth(2) {
                            seen.insert(id.to_owned());
                        }
                    }
                    Err(e) => failed.push(e),
                }
            }
            (ok, failed, seen)
        });
        Load {
            stop,
            handle: Some(handle),
        }
    }

    /// Stops the loop: (answered, failures, instance ids seen).
    pub fn stop(mut self) -> LoadResult {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.handle.take().unwrap().join().unwrap()
    }
}

/// Whether `path` exists (for readability in tests).
pub fn exists(path: &Path) -> bool {
    path.exists()
}

/// One keep-alive HTTP/1.1 client connection (see [`Load::start_keepalive`]).
struct KeepAlive {
    stream: std::io::BufReader<TcpStream>,
}

impl KeepAlive {
    fn connect(addr: SocketAddr) -> Result<KeepAlive, String> {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
            .map_err(|e| format!("connect: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok();
        Ok(KeepAlive {
            stream: std::io::BufReader::new(s),
        })
    }

    /// One GET: the body, and the connection if it may be used again.
    fn get(mut self, path: &str) -> Result<(String, Option<KeepAlive>), String> {
        use std::io::BufRead;
        write!(
            self.stream.get_mut(),
            "GET {path} HTTP/1.1\r\nhost: test\r\n\r\n"
        )
        .map_err(|e| format!("write: {e}"))?;
        let mut status = String::new();
        self.stream
            .read_line(&mut status)
            .map_err(|e| format!("read: {e}"))?;
        if status.is_empty() {
            return Err("the connection closed without an answer".into());
        }
        let (mut length, mut close) = (0usize, false);
        loop {
            let mut line = String::new();
            self.stream
                .read_line(&mut line)
                .map_err(|e| format!("read: {e}"))?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let lower = line.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                length = v.trim().parse().map_err(|_| format!("bad header {line}"))?;
            }
            if lower.starts_with("connection:") && lower.contains("close") {
                close = true;
            }
        }
        let mut body = vec![0u8; length];
        self.stream
            .read_exact(&mut body)
            .map_err(|e| format!("body: {e}"))?;
        let body = String::from_utf8_lossy(&body).into_owned();
        if status
            .split_whitespace()
            .nth(1)
            .is_none_or(|c| !c.starts_with('2'))
        {
            return Err(format!("{}: {body}", status.trim_end()));
        }
        Ok((body, (!close).then_some(self)))
    }
}

/// Removes the cgroups the process provider made for `store`'s instances
/// (best effort: their processes were just killed and may take a moment to
/// go), so that killed tests leave nothing under `/sys/fs/cgroup/*/glint`.
pub fn remove_cgroups(store: &str) {
    let Ok(roots) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    let dirs: Vec<PathBuf> = roots
        .flatten()
        .map(|r| r.path().join("glint").join(store))
        .chain(std::iter::once(
            PathBuf::from("/sys/fs/cgroup/glint").join(store),
        ))
        .filter(|d| d.is_dir())
        .collect();
    for _ in 0..50 {
        let mut left = false;
        for d in &dirs {
            if let Ok(children) = std::fs::read_dir(d) {
                for c in children.flatten() {
                    if c.file_type().is_ok_and(|t| t.is_dir()) {
                        left |= std::fs::remove_dir(c.path()).is_err();
                    }
                }
            }
            left |= d.exists() && std::fs::remove_dir(d).is_err();
        }
        if !left {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether a Docker Engine answers. Without one a test skips (printing
/// why), unless `GLINT_REQUIRE_DOCKER=1` (CI) makes that a failure.
pub fn docker_available() -> bool {
    let ok = Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var("GLINT_REQUIRE_DOCKER").as_deref() != Ok("1"),
            "GLINT_REQUIRE_DOCKER=1 but no Docker daemon answers"
        );
        eprintln!("SKIPPED: no Docker daemon answers (set GLINT_REQUIRE_DOCKER=1 to fail instead)");
    }
    ok
}

/// Whether declared rules can be enforced here: root, namespaces, the `ip`
/// and `nft` commands. Without them a test skips (printing why), unless
/// `GLINT_REQUIRE_NFT=1` (CI) makes that a failure.
pub fn nft_available() -> bool {
    let ok = rustix::process::geteuid().is_root()
        && glint_sandbox::available()
        && glint_provider::process::net::available()
        && Command::new("nft")
            .args(["list", "tables"])
            .output()
            .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var("GLINT_REQUIRE_NFT").as_deref() != Ok("1"),
            "GLINT_REQUIRE_NFT=1 but this is not root with namespaces, `ip` and `nft`"
        );
        eprintln!(
            "SKIPPED: rules need root, namespaces, `ip` and `nft` (set GLINT_REQUIRE_NFT=1 to fail instead)"
        );
    }
    ok
}
