//! Data and capacity through the real `glint` binary: the three-tier
//! example's PostgreSQL keeps its rows across ten replacements of every
//! kind with never two servers on its data directory (process and Docker
//! providers), a memory hog is replaced with the reason in its event, and
//! `glint volume` lists, refuses and removes.
//!
//! The PostgreSQL image is made by `examples/three-tier/postgres/make-rootfs.sh`
//! from this machine's Debian packages (`postgresql-15`, `busybox-static`,
//! `util-linux`); the tests that need it skip with a message when they are
//! missing, unless `GLINT_REQUIRE_POSTGRES=1` (CI sets it), and need root
//! (volumes of process instances are bound into their namespaces).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

const PSQL: &str = "/usr/lib/postgresql/15/bin/psql";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Whether the PostgreSQL tests can run; says why not (or fails, when they
/// are required).
fn postgres_available() -> bool {
    let required = std::env::var("GLINT_REQUIRE_POSTGRES").is_ok_and(|v| v == "1");
    let missing = if !root() {
        Some("not root".to_owned())
    } else if !Path::new(PSQL).exists()
        || !Path::new("/usr/lib/postgresql/15/bin/postgres").exists()
    {
        Some("PostgreSQL 15 is not installed (apt-get install postgresql-15)".to_owned())
    } else {
        None
    };
    match missing {
        Some(why) if required => panic!("GLINT_REQUIRE_POSTGRES=1 but {why}"),
        Some(why) => {
            eprintln!("skipped: {why}");
            false
        }
        None => true,
    }
}

/// The PostgreSQL root filesystem made by the example's script.
struct Archive {
    path: PathBuf,
    digest: String,
    _dir: tempfile::TempDir,
}

fn make_rootfs(out: &Path) -> String {
    let o = Command::new(repo().join("examples/three-tier/postgres/make-rootfs.sh"))
        .arg(out)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "make-rootfs.sh failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let digest = String::from_utf8_lossy(&o.stdout).trim().to_owned();
    assert!(digest.starts_with("sha256:"), "{digest}");
    digest
}

/// The archive, made once per test run (twice, to check it is
/// reproducible: the same packages give the same bytes).
fn archive() -> &'static Archive {
    static ARCHIVE: OnceLock<Archive> = OnceLock::new();
    ARCHIVE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("postgres-15.tar");
        let digest = make_rootfs(&path);
        let again = dir.path().join("again.tar");
        assert_eq!(
            make_rootfs(&again),
            digest,
            "the root filesystem is not reproducible"
        );
        let _ = std::fs::remove_file(&again);
        Archive {
            path,
            digest,
            _dir: dir,
        }
    })
}

/// The three-tier example copied into the test directory: the demo app
/// where the example expects the release build, the archive where it
/// expects it, its endpoint on the test's port, `db` on `provider` with
/// `TUNING = tuning`, health every second and `max_age = max_age`.
struct Shop {
    main: PathBuf,
    provider: &'static str,
}

impl Shop {
    fn new(ctx: &Ctx, provider: &'static str) -> Shop {
        let base = ctx.dir.path().join("examples/three-tier");
        std::fs::create_dir_all(base.join("lib")).unwrap();
        std::fs::create_dir_all(base.join("vendor")).unwrap();
        let release = ctx
            .dir
            .path()
            .join("target/x86_64-unknown-linux-gnu/release");
        std::fs::create_dir_all(&release).unwrap();
        std::fs::copy(
            env!("CARGO_BIN_EXE_glint-hello"),
            release.join("glint-hello"),
        )
        .unwrap();
        std::fs::copy(
            repo().join("examples/three-tier/lib/templates.glint"),
            base.join("lib/templates.glint"),
        )
        .unwrap();
        let tar = &archive().path;
        std::fs::hard_link(tar, base.join("vendor/postgres-15.tar"))
            .or_else(|_| std::fs::copy(tar, base.join("vendor/postgres-15.tar")).map(|_| ()))
            .unwrap();
        let shop = Shop {
            main: base.join("main.glint"),
            provider,
        };
        shop.write(ctx, "a", "7d");
        // The example's `db_password` is read by `api` and `db`: apply is
        // refused until it is set.
        let set = ctx.set_secret("shop/db/password", "not-a-real-password", &[]);
        assert!(
            set.status.success(),
            "{}",
            String::from_utf8_lossy(&set.stderr)
        );
        shop
    }

    /// Writes main.glint with `db`'s `TUNING` and `max_age`.
    fn write(&self, ctx: &Ctx, tuning: &str, max_age: &str) {
        let text = std::fs::read_to_string(repo().join("examples/three-tier/main.glint")).unwrap();
        let digest = &archive().digest;
        let pinned = text
            .lines()
            .find(|l| l.contains("archive(\"vendor/postgres-15.tar\""))
            .unwrap()
            .to_owned();
        let text = text
            .replace(
                &pinned,
                &format!("  from       = archive(\"vendor/postgres-15.tar\", {digest})"),
            )
            .replace("127.0.0.1:8080", &format!("127.0.0.1:{}", ctx.port))
            .replace("  max_age    = 7d", &format!("  max_age    = {max_age}"))
            .replace("    interval      = 5s", "    interval      = 1s")
            .replace("    timeout       = 2s", "    timeout       = 1s")
            .replace(
                "service db {\n",
                &format!(
                    "service db {{\n  provider   = {}\n  env        = {{ TUNING = \"{tuning}\" }}\n",
                    self.provider
                ),
            );
        assert!(
            text.contains(&format!("TUNING = \"{tuning}\"")),
            "the db block moved"
        );
        std::fs::write(&self.main, text).unwrap();
    }

    fn file(&self) -> &str {
        self.main.to_str().unwrap()
    }
}

/// The healthy `db` instance: (id, address).
fn db(s: &Value) -> Option<(String, String)> {
    s["services"]
        .as_array()?
        .iter()
        .find(|x| x["name"] == "db")?["instances"]
        .as_array()?
        .iter()
        .find(|i| i["health"] == "healthy" && i["state"] == "running")
        .map(|i| {
            (
                i["id"].as_str().unwrap_or("").to_owned(),
                i["address"].as_str().unwrap_or("").to_owned(),
            )
        })
}

fn wait(ctx: &Ctx, what: &str, secs: u64, cond: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let out = ctx.run(&["status", "-o", "json"]);
        if let Ok(s) = serde_json::from_slice::<Value>(&out.stdout)
            && cond(&s)
        {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {secs}s waiting for {what}\nevents:\n{}\nup:\n{}",
            ctx.ok(&["events", "-n", "60"]),
            ["up-1", "up-2", "up-3"].map(|n| ctx.log(n)).join("\n")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits for a healthy `db` that is none of `seen`; returns its address.
fn new_db(ctx: &Ctx, what: &str, seen: &mut Vec<String>) -> String {
    let s = wait(ctx, what, 240, |s| {
        db(s).is_some_and(|(id, _)| !seen.contains(&id))
    });
    let (id, addr) = db(&s).unwrap();
    seen.push(id);
    addr
}

/// Runs SQL through psql, retrying while the server starts (recovery).
fn sql(addr: &str, query: &str) -> String {
    let (host, port) = addr.rsplit_once(':').unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let o = Command::new(PSQL)
            .args([
                "-h", host, "-p", port, "-U", "postgres", "-tAq", "-c", query,
            ])
            .env("PGCONNECT_TIMEOUT", "3")
            .output()
            .unwrap();
        if o.status.success() {
            return String::from_utf8_lossy(&o.stdout).trim().to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "psql {query:?} on {addr}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Inserts row `n` and checks that rows 1..=n are all there.
fn insert_and_count(addr: &str, n: u32) {
    sql(
        addr,
        "CREATE TABLE IF NOT EXISTS orders (n int primary key, at timestamptz default now())",
    );
    sql(addr, &format!("INSERT INTO orders(n) VALUES ({n})"));
    let rows = sql(
        addr,
        "SELECT string_agg(n::text, ',' ORDER BY n) FROM orders",
    );
    let want: Vec<String> = (1..=n).map(|i| i.to_string()).collect();
    assert_eq!(rows, want.join(","), "rows lost");
}

/// Processes whose working directory is `data` (PostgreSQL's servers and
/// backends chdir to their data directory), by PID namespace.
fn users_of(data: &Path) -> Vec<(i32, String, i32)> {
    let Ok(target) = std::fs::metadata(data) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in entries.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cwd) = std::fs::metadata(e.path().join("cwd")) else {
            continue;
        };
        if cwd.dev() != target.dev() || cwd.ino() != target.ino() {
            continue;
        }
        let ns = std::fs::read_link(e.path().join("ns/pid"))
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let ppid = std::fs::read_to_string(e.path().join("stat"))
            .ok()
            .and_then(|s| {
                let rest = s.rsplit_once(')')?.1.to_owned();
                rest.split_whitespace().nth(1)?.parse().ok()
            })
            .unwrap_or(0);
        out.push((pid, ns, ppid));
    }
    out
}

/// Watches, every 10 ms, how many PID namespaces (instances) have a process
/// in the data directory at once.
struct Watch {
    stop: Arc<AtomicBool>,
    most: Arc<AtomicUsize>,
    servers: Arc<Mutex<BTreeSet<String>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watch {
    fn start(data: PathBuf) -> Watch {
        let stop = Arc::new(AtomicBool::new(false));
        let most = Arc::new(AtomicUsize::new(0));
        let servers = Arc::new(Mutex::new(BTreeSet::new()));
        let (s, m, v) = (stop.clone(), most.clone(), servers.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let users = users_of(&data);
                let namespaces: BTreeSet<&String> = users.iter().map(|(_, ns, _)| ns).collect();
                m.fetch_max(namespaces.len(), Ordering::Relaxed);
                // A server: its namespace and its oldest process (namespace
                // numbers are reused once a namespace is gone; pids differ).
                let mut servers = v.lock().unwrap();
                for ns in namespaces {
                    if let Some(first) = users
                        .iter()
                        .filter(|(_, n, _)| n == ns)
                        .map(|(p, _, _)| *p)
                        .min()
                    {
                        servers.insert(format!("{ns}/{first}"));
                    }
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        Watch {
            stop,
            most,
            servers,
            thread: Some(thread),
        }
    }

    /// (most instances at once, instances seen in all).
    fn finish(mut self) -> (usize, usize) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        (
            self.most.load(Ordering::Relaxed),
            self.servers.lock().unwrap().len(),
        )
    }
}

/// `kill -9` of the PostgreSQL server (the postmaster: the process in the
/// data directory whose parent is not).
fn kill_postmaster(data: &Path) {
    let users = users_of(data);
    let pids: BTreeSet<i32> = users.iter().map(|(p, _, _)| *p).collect();
    let postmaster = users
        .iter()
        .find(|(_, _, ppid)| !pids.contains(ppid))
        .map(|(p, _, _)| *p)
        .expect("a postmaster in the data directory");
    // SAFETY: kill(2) of a process found above.
    unsafe {
        libc::kill(postmaster, libc::SIGKILL);
    }
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: signalling a child we spawned.
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

fn wait_log(ctx: &Ctx, name: &str, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !ctx.log(name).contains(needle) {
        assert!(Instant::now() < deadline, "{}", ctx.log(name));
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits for the next db and checks the rows through it.
fn step(ctx: &Ctx, what: &str, seen: &mut Vec<String>, n: &mut u32) {
    let addr = new_db(ctx, what, seen);
    *n += 1;
    insert_and_count(&addr, *n);
}

/// The ten replacements, on whichever provider runs `db`; `data` finds the
/// cluster's host directory once the volume exists.
fn rows_survive_ten_replacements(
    provider: &'static str,
    mut data_dir: impl FnMut(&Ctx) -> PathBuf,
) {
    let mut ctx = Ctx::new();
    let shop = Shop::new(&ctx, provider);
    let up = ctx.spawn("up-1", &["up", shop.file()]);
    let mut seen = Vec::new();
    let mut n: u32 = 0;
    let addr = new_db(&ctx, "the first db", &mut seen);
    n += 1;
    insert_and_count(&addr, n);
    let data = data_dir(&ctx).join("pgdata");
    assert!(data.join("PG_VERSION").exists(), "{}", data.display());
    let watch = Watch::start(data.clone());
    // 1. kill -9.
    kill_postmaster(&data);
    step(&ctx, "a replacement after kill -9", &mut seen, &mut n);
    // 2. An env change applied.
    shop.write(&ctx, "b", "7d");
    ctx.ok(&["apply", shop.file()]);
    step(&ctx, "the new version's db", &mut seen, &mut n);
    // 3–4. max_age: every instance older than 20 s is replaced.
    shop.write(&ctx, "b", "20s");
    ctx.ok(&["apply", shop.file()]);
    step(&ctx, "a db replaced past max_age", &mut seen, &mut n);
    step(&ctx, "another db replaced past max_age", &mut seen, &mut n);
    shop.write(&ctx, "b", "7d");
    ctx.ok(&["apply", shop.file()]);
    // 5. glint rollback to version 1.
    ctx.ok(&["rollback", "1"]);
    step(&ctx, "the rolled-back db", &mut seen, &mut n);
    // A conductor SIGKILL and restart: the db survives and is adopted.
    signal(up, libc::SIGKILL);
    std::thread::sleep(Duration::from_secs(1));
    shop.write(&ctx, "a", "7d");
    let up = ctx.spawn("up-2", &["up", shop.file()]);
    let s = wait(&ctx, "the db adopted", 120, |s| {
        db(s).is_some_and(|(id, _)| seen.last() == Some(&id)) && s["conductor"]["running"] == true
    });
    let (_, a) = db(&s).unwrap();
    n += 1;
    insert_and_count(&a, n);
    // 6. `glint up` stopped (Ctrl-C stops every instance) and started.
    signal(up, libc::SIGINT);
    wait_log(&ctx, "up-2", "Stopped.");
    assert!(users_of(&data).is_empty(), "the db stopped with `up`");
    let up = ctx.spawn("up-3", &["up", shop.file()]);
    step(&ctx, "the db after `glint up` again", &mut seen, &mut n);
    // 7–10. More of the same.
    kill_postmaster(&data);
    step(
        &ctx,
        "a replacement after another kill -9",
        &mut seen,
        &mut n,
    );
    shop.write(&ctx, "c", "7d");
    ctx.ok(&["apply", shop.file()]);
    step(&ctx, "another new version's db", &mut seen, &mut n);
    kill_postmaster(&data);
    step(
        &ctx,
        "a replacement after a third kill -9",
        &mut seen,
        &mut n,
    );
    shop.write(&ctx, "d", "7d");
    ctx.ok(&["apply", shop.file()]);
    step(&ctx, "a fourth version's db", &mut seen, &mut n);

    let (most, servers) = watch.finish();
    assert!(seen.len() >= 11, "{} db instances: {seen:?}", seen.len());
    assert_eq!(
        most, 1,
        "two PostgreSQL instances used the data directory at once"
    );
    assert!(servers >= 10, "the watch saw only {servers} servers");
    eprintln!(
        "{provider}: {} rows kept across {} db instances ({} seen in the data directory), never two at once",
        n,
        seen.len(),
        servers
    );
    let events = ctx.ok(&["events", "-n", "400"]);
    assert!(
        events.contains("one writer at a time"),
        "stop-before-start is recorded:\n{events}"
    );
    let vols = ctx.ok(&["volume", "ls", "-o", "json"]);
    let vols: Value = serde_json::from_str(&vols).unwrap();
    assert_eq!(vols.as_array().unwrap().len(), 1, "{vols:#}");
    signal(up, libc::SIGINT);
    wait_log(&ctx, "up-3", "Stopped.");
}

// Mutation caught: the writers rule off in `decide` (the default surge
// starts the new db first: two servers seen, or the second refused by the
// volume lock and the version never converging), volumes removed with their
// instances or on Ctrl-C (rows lost), the lock not held by the instance.
#[test]
fn postgres_rows_survive_ten_replacements_with_one_server_at_a_time() {
    if !postgres_available() {
        return;
    }
    rows_survive_ten_replacements("process", |ctx| {
        ctx.data().join("process/volumes/pgdata/data")
    });
}

/// Removes the containers, networks and volumes of a store when dropped.
struct DockerGuard(String);

impl Drop for DockerGuard {
    fn drop(&mut self) {
        let store = &self.0;
        let filter = format!("label=dev.glint.store={store}");
        for (list, rm) in [
            (
                vec!["ps", "-aq", "--filter", &filter],
                vec!["rm", "-f", "-v"],
            ),
            (
                vec!["network", "ls", "-q", "--filter", &filter],
                vec!["network", "rm"],
            ),
            (
                vec!["volume", "ls", "-q", "--filter", &filter],
                vec!["volume", "rm", "-f"],
            ),
        ] {
            let ids = Command::new("docker")
                .args(&list)
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
                .unwrap_or_default();
            for id in ids.split_whitespace() {
                let mut args = rm.clone();
                args.push(id);
                let _ = Command::new("docker").args(&args).output();
            }
        }
    }
}

// Mutation caught: as above, for containers (named volume not mounted, or
// a running container's volume not checked before the next starts).
#[test]
fn postgres_rows_survive_ten_replacements_in_docker_with_one_server_at_a_time() {
    if !postgres_available() || !docker_available() {
        return;
    }
    let mut guard = None;
    rows_survive_ten_replacements("docker", |ctx| {
        guard.get_or_insert_with(|| DockerGuard(ctx.store_id()));
        // The conductor records where the engine keeps it once it exists.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let v = ctx.ok(&["volume", "inspect", "pgdata", "-o", "json"]);
            let v: Value = serde_json::from_str(&v).unwrap();
            if let Some(p) = v["host_path"].as_str() {
                return PathBuf::from(p);
            }
            assert!(Instant::now() < deadline, "no host path: {v:#}");
            std::thread::sleep(Duration::from_millis(200));
        }
    });
}

fn cgroups_available() -> bool {
    let ok = root()
        && std::fs::read_to_string("/proc/self/mountinfo")
            .is_ok_and(|m| m.contains(" - cgroup") || m.contains(" - cgroup2"));
    if !ok {
        eprintln!("skipped: needs root and cgroups");
    }
    ok
}

// Mutation caught: the OOM counter not read (the event says "killed by
// signal 9"), or no memory limit (the hog runs and never exits).
#[test]
fn a_memory_hog_under_64mib_is_replaced_and_the_event_says_out_of_memory() {
    if !cgroups_available() {
        return;
    }
    let mut ctx = Ctx::new();
    let file = ctx.demo_with(
        "hog.glint",
        1,
        &[("ALLOCATE_MB", "256")],
        "resources {\n    memory = 64MiB\n  }",
    );
    let check = ctx.run(&["check", file.to_str().unwrap()]);
    assert!(
        !String::from_utf8_lossy(&check.stderr).contains("E0604"),
        "limits are enforced here, so no warning"
    );
    ctx.spawn("up", &["up", file.to_str().unwrap()]);
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let events = ctx.ok(&["events", "-n", "100"]);
        let oom = events
            .lines()
            .filter(|l| l.contains("instance.exited") && l.contains("out of memory"))
            .count();
        let launched = events.matches("instance.launching").count();
        if oom >= 2 && launched >= 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no OOM kill and replacement:\n{events}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

// Mutation caught: `volume rm` not checking the declaring versions, a
// retirement removing the volume, `plan` not listing volumes.
#[test]
fn volumes_are_listed_kept_when_undeclared_and_removed_only_by_volume_rm() {
    if !root() {
        eprintln!("skipped: needs root");
        return;
    }
    let mut ctx = Ctx::new();
    let with = ctx.demo_full(
        "vol.glint",
        "volume data {\n  size = 1GiB\n}\n",
        1,
        &[],
        "mounts = [{ volume = volume.data, path = \"/data\" }]",
    );
    let plan = ctx.ok(&["plan", with.to_str().unwrap()]);
    assert!(
        plan.contains("+ volume data: created when first mounted"),
        "{plan}"
    );
    assert!(plan.contains("web at /data"), "{plan}");
    ctx.spawn("up", &["up", with.to_str().unwrap()]);
    ctx.wait_ready(1);
    let ls: Value = serde_json::from_str(&ctx.ok(&["volume", "ls", "-o", "json"])).unwrap();
    let v = &ls[0];
    assert_eq!(v["name"], "data");
    assert_eq!(v["state"], "created");
    assert_eq!(v["size_bytes"], 1u64 << 30);
    assert_eq!(v["mounted_by"].as_array().unwrap().len(), 1, "{ls:#}");
    let host = ctx.data().join("process/volumes/data/data");
    std::fs::write(host.join("kept"), b"yes").unwrap();
    let refused = ctx.run(&["volume", "rm", "data"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("declared by version 1"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    // No longer declared: the instance is replaced, the volume kept.
    let without = ctx.demo("vol.glint", 1, "hello");
    let plan = ctx.ok(&["plan", without.to_str().unwrap()]);
    assert!(plan.contains("volume data: no longer declared"), "{plan}");
    ctx.ok(&["apply", without.to_str().unwrap()]);
    ctx.wait_status("the instance without the volume", |s| {
        healthy(s).len() == 1
            && instances(s).len() == 1
            && s["services"][0]["instances"][0]["version"] == 2
    });
    assert!(
        host.join("kept").exists(),
        "an undeclared volume keeps its data"
    );
    let text = ctx.ok(&["volume", "ls"]);
    assert!(text.contains("no longer declared (kept)"), "{text}");
    ctx.ok(&["volume", "rm", "data"]);
    assert!(!host.exists(), "removed with its data");
    let ls: Value = serde_json::from_str(&ctx.ok(&["volume", "ls", "-o", "json"])).unwrap();
    assert_eq!(ls.as_array().unwrap().len(), 0);
    let events = ctx.ok(&["events", "-n", "100"]);
    assert!(
        events.contains("volume.created") && events.contains("volume.removed"),
        "{events}"
    );
}
