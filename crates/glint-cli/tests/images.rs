//! Immutable images through the `glint` binary: reproducible builds of the
//! examples, verified launches, hermetic build steps.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Ctx, healthy, pid_of};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A copy of `examples/` in a fresh directory, with the demo binary where the
/// examples expect the release build (`../../target/…/release/glint-hello`).
fn examples_tree() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples"),
        &repo.join("examples"),
    );
    let bin = repo.join("target/x86_64-unknown-linux-gnu/release");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_glint-hello"), bin.join("glint-hello")).unwrap();
    (dir, repo)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

fn build_json(repo: &Path, data: &Path, file: &str) -> serde_json::Value {
    let out = std::process::Command::new(common::glint_bin())
        .args(["build", file, "-o", "json"])
        .current_dir(repo)
        .env("GLINT_DATA_DIR", data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "glint build {file}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn two_clean_builds_of_the_example_images_give_identical_digests() {
    // Two separate checkouts and two empty stores: nothing is shared.
    let (_a, repo_a) = examples_tree();
    let (_b, repo_b) = examples_tree();
    for file in [
        "examples/hello/hello.glint",
        "examples/hello/hello-docker.glint",
    ] {
        let data_a = repo_a.join(format!("data-{}", file.len()));
        let data_b = repo_b.join(format!("data-{}", file.len()));
        let a = build_json(&repo_a, &data_a, file);
        let b = build_json(&repo_b, &data_b, file);
        assert_eq!(a["hello"]["digest"], b["hello"]["digest"], "{file}");
        assert!(
            a["hello"]["digest"]
                .as_str()
                .unwrap()
                .starts_with("sha256:")
        );
        assert_eq!(a["hello"]["cached"], false);
        // A rebuild with nothing changed is a cache hit with the same digest.
        let again = build_json(&repo_a, &data_a, file);
        assert_eq!(again["hello"]["digest"], a["hello"]["digest"]);
        assert_eq!(again["hello"]["cached"], true);
    }
    // The human form prints each image's digest.
    let out = std::process::Command::new(common::glint_bin())
        .args(["build", "examples/hello/hello.glint"])
        .current_dir(&repo_a)
        .env("GLINT_DATA_DIR", repo_a.join("data-human"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("hello") && stdout.contains("sha256:"),
        "{stdout}"
    );
}

#[test]
fn a_tampered_blob_is_refused_at_launch_with_an_incident_naming_the_digest() {
    let mut ctx = Ctx::new();
    let file = ctx.demo("hello.glint", 2, "hello");
    ctx.spawn("up", &["up", file.to_str().unwrap()]);
    let ids = ctx.wait_ready(2);
    let s = ctx.status();
    // Change one byte of the image's largest blob (its layer).
    let blobs = ctx.data().join("images/blobs/sha256");
    let mut largest: Option<(u64, PathBuf)> = None;
    for e in std::fs::read_dir(&blobs).unwrap() {
        let e = e.unwrap();
        let len = e.metadata().unwrap().len();
        if largest.as_ref().is_none_or(|(l, _)| len > *l) {
            largest = Some((len, e.path()));
        }
    }
    let (_, blob) = largest.unwrap();
    let mut bytes = std::fs::read(&blob).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    let mut perms = std::fs::metadata(&blob).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&blob, perms).unwrap();
    std::fs::write(&blob, &bytes).unwrap();

    // A replacement must now be launched from the tampered image.
    let victim = &ids[0];
    // SAFETY: kill(2) of an instance process found in status.
    unsafe {
        libc::kill(pid_of(&s, victim), libc::SIGKILL);
    }
    let blob_digest = format!("sha256:{}", blob.file_name().unwrap().to_string_lossy());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let events = loop {
        let events = ctx.ok(&["events", "-n", "100", "-o", "json"]);
        if events.contains("image.rejected") {
            break events;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no incident:\n{}",
            ctx.ok(&["events"])
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let v: serde_json::Value = serde_json::from_str(&events).unwrap();
    let incident = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "image.rejected")
        .unwrap();
    assert_eq!(incident["severity"], "incident");
    let msg = incident["message"].as_str().unwrap();
    assert!(msg.contains(&blob_digest), "names the blob: {msg}");
    // Nothing else is affected: the other instance still runs and serves.
    let now = ctx.status();
    assert!(healthy(&now).contains(&ids[1]), "{now:#}");
    assert!(common::get(ctx.endpoint(), "/").unwrap().contains(&ids[1]));
}

#[test]
fn a_build_step_that_reaches_for_the_network_fails_the_build() {
    if !Path::new("/bin/busybox").exists() {
        assert!(
            std::env::var_os("GLINT_REQUIRE_DOCKER").is_none(),
            "busybox-static is required in CI (apt-get install busybox-static)"
        );
        eprintln!("SKIPPED: /bin/busybox (busybox-static) is not installed");
        return;
    }
    let ctx = Ctx::new();
    std::fs::copy("/bin/busybox", ctx.dir.path().join("app/busybox")).unwrap();
    let file = ctx.write(
        "net.glint",
        r#"image net {
  from = scratch
  copy "app/busybox" to "/bin/busybox"
  run ["/bin/busybox", "wget", "-q", "-O", "/out", "http://93.184.216.34/"]
  entrypoint = ["/bin/busybox"]
}
"#,
    );
    let out = ctx.run(&["build", file.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("network"), "the message says why: {err}");
    // Nothing was tagged.
    let images = ctx.ok(&["images", "-o", "json"]);
    assert!(!images.contains("net/net"), "{images}");
}
