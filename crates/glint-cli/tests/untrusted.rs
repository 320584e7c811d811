//! Untrusted input stays in its box, through the real `glint` binary: images
//! grant no privileges, exports never clobber, text output is inert, a store
//! file that is not a store is never replaced, operational messages say what
//! is true, and read commands work on a read-only or full data directory.
//! Tests that need root (setuid files, device nodes, mount namespaces) say
//! SKIPPED without it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Ctx;
use glint_model::{Digest, InstanceId, Name, ProviderKind, VersionNumber};
use glint_store::prelude::*;
use glint_store::{EventKind, InstanceRecord, NewEvent, SqliteStore};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("SKIPPED: needs root");
    }
    root
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Appends one raw ustar entry (owner root).
fn entry(out: &mut Vec<u8>, path: &[u8], kind: u8, mode: u32, data: &[u8], dev: (u32, u32)) {
    let mut h = [0u8; 512];
    h[..path.len()].copy_from_slice(path);
    h[100..107].copy_from_slice(format!("{mode:07o}").as_bytes());
    h[108..115].copy_from_slice(b"0000000");
    h[116..123].copy_from_slice(b"0000000");
    h[124..135].copy_from_slice(format!("{:011o}", data.len()).as_bytes());
    h[136..147].copy_from_slice(b"00000000000");
    h[156] = kind;
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[329..336].copy_from_slice(format!("{:07o}", dev.0).as_bytes());
    h[337..344].copy_from_slice(format!("{:07o}", dev.1).as_bytes());
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
}

fn finish(mut tar: Vec<u8>) -> Vec<u8> {
    tar.extend_from_slice(&[0u8; 1024]);
    tar
}

fn sha256_of(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    text(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

/// Runs `program -u` as uid/gid 65534 with no groups, from a shell that
/// already is that user (setpriv itself keeps root's capabilities until its
/// own exec, which would let it reach what the user cannot).
fn as_nobody(program: &Path) -> Output {
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .args(["/bin/sh", "-c", "exec \"$0\" -u"])
        .arg(program)
        .output()
        .unwrap()
}

fn walk(p: &Path, out: &mut Vec<PathBuf>) {
    out.push(p.to_owned());
    if p.symlink_metadata().unwrap().is_dir() {
        for e in std::fs::read_dir(p).unwrap() {
            walk(&e.unwrap().path(), out);
        }
    }
}

#[test]
fn an_unpacked_setuid_binary_gives_an_unprivileged_user_nothing() {
    if !is_root() || !Path::new("/usr/bin/setpriv").exists() {
        return;
    }
    let ctx = Ctx::new();
    // The finding: `--data-dir /var/lib/glint`, a world-traversable parent.
    chmod(ctx.dir.path(), 0o755);
    let data = ctx.dir.path().join("var/lib/glint");
    // A base image with a setuid-root `id` (the host's: it runs from the host).
    let mut tar = Vec::new();
    entry(&mut tar, b"usr/", b'5', 0o755, b"", (0, 0));
    entry(&mut tar, b"usr/bin/", b'5', 0o6755, b"", (0, 0));
    entry(
        &mut tar,
        b"usr/bin/id",
        b'0',
        0o4755,
        &std::fs::read("/usr/bin/id").unwrap(),
        (0, 0),
    );
    entry(
        &mut tar,
        b"usr/bin/sgid",
        b'0',
        0o2755,
        b"#!/bin/sh\n",
        (0, 0),
    );
    let base = ctx.dir.path().join("evil.tar");
    std::fs::write(&base, finish(tar)).unwrap();
    let file = ctx.write(
        "evil.glint",
        &format!(
            r#"
image hello {{
  from = archive("evil.tar", sha256:{})
  copy "app/hello" to "/bin/hello"
  entrypoint = ["/bin/hello"]
  port = 8080
}}

service web {{
  image     = image.hello
  instances = 1
  health {{
    http     = "/healthz"
    interval = 1s
    timeout  = 500ms
    start_timeout = 5s
  }}
}}
"#,
            sha256_of(&base)
        ),
    );
    // `build --verify` unpacks the image into the data directory and runs it.
    let out = ctx
        .cmd(&["build", "--verify", file.to_str().unwrap()])
        .env("GLINT_DATA_DIR", &data)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rootfs = data.join("images/rootfs");
    let tree = std::fs::read_dir(&rootfs)
        .unwrap()
        .map(|e| e.unwrap().path().join("root"))
        .find(|r| r.join("usr/bin/id").exists())
        .expect("the image was unpacked");
    let id = tree.join("usr/bin/id");

    // What Glint created is owner-only: nobody else can even reach the tree.
    for p in ["var", "var/lib", "var/lib/glint"] {
        let m = std::fs::metadata(ctx.dir.path().join(p)).unwrap();
        assert_eq!(m.permissions().mode() & 0o777, 0o700, "{p}");
    }
    let reach = as_nobody(&id);
    assert!(
        !reach.status.success(),
        "nobody reached {}: {}",
        id.display(),
        text(&reach.stdout)
    );
    assert!(
        text(&reach.stderr).contains("Permission denied"),
        "{}",
        text(&reach.stderr)
    );

    // And no privilege survived unpacking: with every directory on the way
    // opened up as the old layout had it, the binary runs as its caller.
    let mut tree_paths = Vec::new();
    walk(&tree, &mut tree_paths);
    for p in &tree_paths {
        let m = p.symlink_metadata().unwrap();
        assert_eq!(
            m.mode() & 0o6000,
            0,
            "{} keeps a setuid/setgid bit",
            p.display()
        );
    }
    let mut p = tree.clone();
    while p != ctx.dir.path() {
        chmod(&p, 0o755);
        p = p.parent().unwrap().to_owned();
    }
    let ran = as_nobody(&id);
    assert!(ran.status.success(), "{}", text(&ran.stderr));
    assert_eq!(
        text(&ran.stdout).trim(),
        "65534",
        "effective uid of the unpacked binary"
    );
}

#[test]
fn import_refuses_device_nodes_and_shows_hostile_names_inert() {
    let ctx = Ctx::new();
    let mut tar = Vec::new();
    entry(&mut tar, b"dev/", b'5', 0o755, b"", (0, 0));
    entry(
        &mut tar,
        b"dev/\x1b[2J\x1b[32mok\x1b[0m",
        b'3',
        0o666,
        b"",
        (1, 7),
    );
    let archive = ctx.dir.path().join("dev.tar");
    std::fs::write(&archive, finish(tar)).unwrap();
    let out = ctx.run(&[
        "image",
        "import",
        archive.to_str().unwrap(),
        "--color",
        "never",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("it is a device node"), "{err}");
    assert!(err.contains("dev/\\x1b[2J\\x1b[32mok\\x1b[0m"), "{err}");
    assert!(
        !err.contains('\x1b'),
        "a raw escape reached the terminal: {err:?}"
    );
    assert!(
        ctx.ok(&["images"]).contains("No images yet") || !ctx.ok(&["images"]).contains("sha256")
    );

    // A path that leaves the root, with a newline to fake a line of output.
    let mut tar = Vec::new();
    entry(&mut tar, b"../x\nok: imported", b'0', 0o644, b"x", (0, 0));
    std::fs::write(&archive, finish(tar)).unwrap();
    let out = ctx.run(&["image", "import", archive.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("`../x\\nok: imported`"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

/// A data directory holding one imported image; returns its digest.
fn with_an_image(ctx: &Ctx) -> String {
    let mut tar = Vec::new();
    entry(&mut tar, b"etc/", b'5', 0o755, b"", (0, 0));
    entry(&mut tar, b"etc/motd", b'0', 0o644, b"hello\n", (0, 0));
    let archive = ctx.dir.path().join("small.tar");
    std::fs::write(&archive, finish(tar)).unwrap();
    let out = ctx.ok(&["image", "import", archive.to_str().unwrap()]);
    out.trim().strip_prefix("imported ").unwrap().to_owned()
}

#[test]
fn export_never_clobbers_what_is_not_a_regular_file() {
    let ctx = Ctx::new();
    let digest = with_an_image(&ctx);
    let d = ctx.dir.path().join("out");
    std::fs::create_dir(&d).unwrap();
    let export =
        |target: &Path| ctx.run(&["image", "export", &digest, "-o", target.to_str().unwrap()]);

    let fifo = d.join("fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: valid path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    let victim = d.join("victim");
    std::fs::write(&victim, b"precious").unwrap();
    let link = d.join("link");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    let dir = d.join("dir");
    std::fs::create_dir(&dir).unwrap();
    let mut cases: Vec<(PathBuf, &str)> = vec![
        (fifo.clone(), "it is a FIFO"),
        (link.clone(), "it is a symlink"),
        (dir.clone(), "it is a directory"),
    ];
    if is_root() {
        // The finding turned /dev/full into a file; this one is a copy of it.
        let full = d.join("full");
        let c = std::ffi::CString::new(full.to_str().unwrap()).unwrap();
        // SAFETY: valid path; plain integers.
        assert_eq!(
            unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 7)) },
            0
        );
        cases.push((full, "it is a character device"));
    }
    for (target, says) in &cases {
        let before = target.symlink_metadata().unwrap();
        let out = export(target);
        assert_eq!(out.status.code(), Some(1), "{}", target.display());
        assert!(text(&out.stderr).contains(says), "{}", text(&out.stderr));
        let after = target.symlink_metadata().unwrap();
        assert_eq!(
            (before.ino(), before.file_type()),
            (after.ino(), after.file_type()),
            "{} was replaced",
            target.display()
        );
    }
    assert!(fifo.symlink_metadata().unwrap().file_type().is_fifo());
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");

    // A new file, then a regular file replaced whole; stdout gives the same bytes.
    let file = d.join("image.tar");
    assert!(export(&file).status.success());
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, b"old").unwrap();
    assert!(export(&file).status.success());
    assert_eq!(std::fs::read(&file).unwrap(), bytes);
    let out = ctx.run(&["image", "export", &digest, "-o", "-"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(out.stdout, bytes, "`-o -` writes the archive to stdout");
    let left: Vec<String> = std::fs::read_dir(&d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".glint-export"))
        .collect();
    assert!(left.is_empty(), "temp files left: {left:?}");
}

/// Records an instance of `web` with `log` as its output, and an event with
/// `message`, the way a conductor and the process provider would.
fn plant(ctx: &Ctx, log: &[u8], message: &str) -> String {
    let store = SqliteStore::open(&ctx.data()).unwrap();
    let id = InstanceId::new(&Name::new("web").unwrap(), "abcd1234").unwrap();
    store
        .insert_instance(&InstanceRecord::launching(
            id.clone(),
            Name::new("web").unwrap(),
            VersionNumber(1),
            Digest::of(b"image"),
            ProviderKind::Process,
            glint_store::now_ms(),
        ))
        .unwrap();
    store
        .append_event(
            NewEvent::warning(EventKind::ConductorStarted, message)
                .service(&Name::new("web").unwrap()),
        )
        .unwrap();
    let paths = glint_provider::process::log_paths(&ctx.data().join("process"), &id);
    std::fs::create_dir_all(paths.stdout.parent().unwrap()).unwrap();
    std::fs::write(&paths.stdout, log).unwrap();
    id.to_string()
}

#[test]
fn logs_and_events_reach_the_terminal_inert() {
    let ctx = Ctx::new();
    let id = plant(
        &ctx,
        b"\x1b]0;pwned\x07\x1b[2J\x1b[32mok:\x1b[0m all good\r\n\tindented\n\xff\xfe not utf-8\nlast line\n",
        "exited\x1b[1A\x1b[2K\rok: healthy \u{202e}txt.exe",
    );
    for color in ["never", "always"] {
        let logs = ctx.ok(&["logs", "web", "--color", color]);
        assert!(!logs.contains('\x1b') && !logs.contains('\x07'), "{logs:?}");
        assert!(
            logs.contains("\\x1b]0;pwned\\x07\\x1b[2J\\x1b[32mok:\\x1b[0m all good\n"),
            "{logs:?}"
        );
        assert!(logs.contains("\n\tindented\n"), "tabs are kept: {logs:?}");
        assert!(
            logs.contains("\u{fffd}\u{fffd} not utf-8\nlast line\n"),
            "{logs:?}"
        );
        let events = ctx.ok(&["events", "--color", color]);
        assert!(
            events.contains("exited\\x1b[1A\\x1b[2K\\rok: healthy \\u{202e}txt.exe"),
            "{events:?}"
        );
        let raw: Vec<char> = events
            .chars()
            .filter(|c| c.is_control() && *c != '\n')
            .collect();
        if color == "never" {
            assert!(raw.is_empty(), "{events:?}");
        } else {
            // Only the paint's own colour codes.
            let stripped = events.replace("\x1b[33m", "").replace("\x1b[0m", "");
            assert!(!stripped.contains('\x1b'), "{events:?}");
        }
    }
    // JSON keeps the text exact (serde escapes it).
    let json: serde_json::Value = serde_json::from_str(&ctx.ok(&["events", "-o", "json"])).unwrap();
    assert_eq!(
        json["events"][0]["message"],
        "exited\x1b[1A\x1b[2K\rok: healthy \u{202e}txt.exe"
    );
    let one = ctx.ok(&["logs", "web", "--instance", &id, "-n", "1"]);
    assert_eq!(one, "last line\n");
}

#[test]
fn logs_and_events_of_a_service_that_does_not_exist_say_so() {
    let ctx = Ctx::new();
    let file = ctx.demo("hello.glint", 1, "hello");
    ctx.ok(&["apply", file.to_str().unwrap()]);
    for args in [
        vec!["logs", "nosuch"],
        vec!["events", "--service", "nosuch"],
        vec!["events", "--service", "nosuch", "--follow"],
    ] {
        let out = ctx.run(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = text(&out.stderr);
        assert!(
            err.contains("there is no service `nosuch`: version 1 has `web`"),
            "{args:?}: {err}"
        );
    }
    let out = ctx.run(&["logs", "wbe"]);
    assert!(
        text(&out.stderr).contains("did you mean `web`?"),
        "{}",
        text(&out.stderr)
    );
    // A service that exists but has not run yet is not "no such service".
    let out = ctx.run(&["logs", "web"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("service web has no instances yet"),
        "{}",
        text(&out.stderr)
    );
    assert!(ctx.run(&["events", "--service", "web"]).status.success());
    let out = ctx.run(&["logs", "web", "--instance", "web-zzzz9999"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("has no instance web-zzzz9999"),
        "{}",
        text(&out.stderr)
    );
    // Before anything is applied.
    let fresh = Ctx::new();
    let out = fresh.run(&["logs", "web"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("there is no service `web`: nothing has been applied"));
}

/// The read commands, each of which must succeed.
const READS: [&[&str]; 8] = [
    &["status"],
    &["status", "-o", "json"],
    &["history"],
    &["history", "-o", "json"],
    &["events"],
    &["logs", "web"],
    &["images"],
    &["images", "-o", "json"],
];

/// Runs a shell script in a private mount namespace (as root).
fn in_mount_ns(script: &str, env: &[(&str, &Path)]) -> Output {
    let mut c = Command::new("unshare");
    c.args(["--mount", "--propagation", "private", "sh", "-euc", script])
        .env("GLINT", common::glint_bin())
        .env("NO_COLOR", "1");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

/// A shell loop running every read command, failing on the first that fails.
fn reads_script() -> String {
    READS
        .iter()
        .map(|args| format!("echo '== {0}'; \"$GLINT\" {0}", args.join(" ")))
        .collect::<Vec<_>>()
        .join("\n")
}

/// An applied environment with an image, an instance, its log and an event.
fn applied(ctx: &Ctx) {
    let file = ctx.demo("hello.glint", 1, "hello");
    ctx.ok(&["apply", file.to_str().unwrap()]);
    plant(ctx, b"glint-hello: listening\n", "planted");
}

fn listing(dir: &Path) -> Vec<(PathBuf, u64, i64)> {
    let mut all = Vec::new();
    walk(dir, &mut all);
    all.sort();
    all.into_iter()
        .map(|p| {
            let m = p.symlink_metadata().unwrap();
            (p, m.size(), m.mtime())
        })
        .collect()
}

#[test]
fn read_commands_work_on_a_read_only_data_directory() {
    if !is_root() {
        return;
    }
    let ctx = Ctx::new();
    applied(&ctx);
    let before = listing(&ctx.data());
    let out = in_mount_ns(
        &format!(
            "mount --bind \"$DATA\" \"$DATA\"\nmount -o remount,ro,bind \"$DATA\"\n! touch \"$DATA/probe\" 2>/dev/null\n{}",
            reads_script()
        ),
        &[("GLINT_DATA_DIR", &ctx.data()), ("DATA", &ctx.data())],
    );
    assert!(
        out.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let stdout = text(&out.stdout);
    assert!(stdout.contains("glint-hello: listening"), "{stdout}");
    assert!(stdout.contains("planted"), "{stdout}");
    assert!(
        stdout.contains("test/hello") || stdout.contains("hello/hello"),
        "{stdout}"
    );
    assert_eq!(listing(&ctx.data()), before, "reading changed nothing");
}

#[test]
fn read_commands_work_on_a_full_disk() {
    if !is_root() {
        return;
    }
    let ctx = Ctx::new();
    applied(&ctx);
    let used: u64 = listing(&ctx.data()).iter().map(|(_, s, _)| s).sum();
    let mnt = ctx.dir.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    let size_kib = used / 1024 + 2048;
    let out = in_mount_ns(
        &format!(
            "mount -t tmpfs -o size={size_kib}k tmpfs \"$MNT\"\ncp -a \"$DATA\" \"$MNT/data\"\n! dd if=/dev/zero of=\"$MNT/fill\" bs=64k 2>/dev/null\n! sh -c 'echo x > \"$MNT/probe\"' 2>/dev/null\ndf -k \"$MNT\" | tail -1\nbefore=$(ls -lAR --time-style=+%s \"$MNT/data\")\n{}\n[ \"$before\" = \"$(ls -lAR --time-style=+%s \"$MNT/data\")\" ] || {{ echo 'the data directory changed'; exit 1; }}",
            reads_script()
        ),
        &[
            ("GLINT_DATA_DIR", &mnt.join("data")),
            ("DATA", &ctx.data()),
            ("MNT", &mnt),
        ],
    );
    assert!(
        out.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let stdout = text(&out.stdout);
    assert!(stdout.contains("glint-hello: listening"), "{stdout}");
    assert!(stdout.contains("planted"), "{stdout}");
}

#[test]
fn a_store_file_that_is_not_a_store_is_an_error_not_a_fresh_start() {
    let ctx = Ctx::new();
    let file = ctx.demo("hello.glint", 1, "hello");
    std::fs::create_dir_all(ctx.data()).unwrap();
    chmod(&ctx.data(), 0o700);
    let db = ctx.data().join("glint.db");
    for (bytes, says) in [
        (Vec::new(), "it is empty (0 bytes)"),
        (
            b"{\"not\": \"sqlite\"}\n".repeat(20),
            "it is not an SQLite database",
        ),
    ] {
        std::fs::write(&db, &bytes).unwrap();
        for args in [
            vec!["status"],
            vec!["history"],
            vec!["apply", file.to_str().unwrap()],
        ] {
            let out = ctx.run(&args);
            assert_eq!(out.status.code(), Some(2), "{args:?}");
            let err = text(&out.stderr);
            assert!(
                err.contains(&format!("{} is not a Glint store: {says}", db.display())),
                "{err}"
            );
            assert!(err.contains("move it"), "{err}");
        }
        assert_eq!(
            std::fs::read(&db).unwrap(),
            bytes,
            "the file was left alone"
        );
    }
    // A store truncated mid-way (a copy that failed, a full disk).
    std::fs::remove_file(&db).unwrap();
    ctx.ok(&["apply", file.to_str().unwrap()]);
    let len = std::fs::metadata(&db).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&db).unwrap();
    f.set_len(len / 2).unwrap();
    let out = ctx.run(&["history"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("it is truncated"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_data_directory_others_can_write_is_refused() {
    let ctx = Ctx::new();
    let file = ctx.demo("hello.glint", 1, "hello");
    std::fs::create_dir_all(ctx.data()).unwrap();
    chmod(&ctx.data(), 0o777);
    for args in [
        vec!["apply", file.to_str().unwrap()],
        vec!["build", file.to_str().unwrap()],
    ] {
        let out = ctx.run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = text(&out.stderr);
        assert!(err.contains("refusing to use data directory"), "{err}");
        assert!(
            err.contains("everyone can write to it (mode 0777)"),
            "{err}"
        );
        assert!(
            err.contains(&format!("chmod go-w {}", ctx.data().display())),
            "{err}"
        );
    }
    assert!(!ctx.data().join("glint.db").exists());
    assert!(!ctx.data().join("images").exists());
}
