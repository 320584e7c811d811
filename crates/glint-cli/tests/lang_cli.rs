//! `glint check`, `fmt` and `explain` run as a user would run them.

#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn glint(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_glint"))
        .args(args)
        .current_dir(cwd)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn check_accepts_the_hello_demo() {
    let out = glint(&["check", "examples/hello/hello.glint"], &repo());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("ok: environment `hello`"));
}

#[test]
fn check_emits_identical_ir_wherever_it_runs() {
    let a = glint(
        &["check", "examples/hello/hello.glint", "--emit", "ir"],
        &repo(),
    );
    let b = glint(
        &["check", "hello.glint", "--emit", "ir"],
        &repo().join("examples/hello"),
    );
    assert_eq!(a.status.code(), Some(0));
    assert_eq!(a.stdout, b.stdout);
    let ir: serde_json::Value = serde_json::from_slice(&a.stdout).unwrap();
    assert_eq!(ir["services"]["web"]["instances"], 3);
}

#[test]
fn check_reports_errors_with_exit_code_1() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.glint"),
        "service web {\n  image = image.nope\n  max_age = \"1 hour\"\n}\n",
    )
    .unwrap();
    let out = glint(&["check", "bad.glint"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("error[E0201]: no image named `nope`"), "{err}");
    assert!(err.contains("--> bad.glint:3:13"), "{err}");
    assert!(err.contains("write `1h`"), "{err}");
    assert!(err.contains("2 errors found"), "{err}");
}

#[test]
fn check_of_a_missing_file_is_a_usage_error() {
    let out = glint(&["check", "does/not/exist.glint"], &repo());
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("does/not/exist.glint"), "{err}");
    assert!(err.contains("no such file"), "{err}");
}

#[test]
fn explain_prints_the_long_explanation() {
    let out = glint(&["explain", "E0103"], &repo());
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("E0103: mismatched types"));
    let out = glint(&["explain", "E9999"], &repo());
    assert_eq!(out.status.code(), Some(2));
}
