//! Property test: whatever path an `import` names (absolute, `..`, `.`,
//! symlinks to files and directories inside and outside the root, a FIFO),
//! `glint check` never shows or opens anything outside the environment
//! root, and accepts exactly the `.glint` files that really are inside it.
//!
//! Run longer with `PROPTEST_CASES=2000 cargo test -p glint-cli --test
//! lang_imports_prop`.

#![allow(clippy::unwrap_used, clippy::expect_used)]
use proptest::prelude::*;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const SECRET: &str = "SECRET-0b5e1d";

struct Tree {
    _dir: tempfile::TempDir,
    top: PathBuf,
    env: PathBuf,
}

/// One tree for every case:
///
/// ```text
/// top/outside/{secret.glint, sub/s.glint, pipe.glint (a FIFO), data.txt}
/// top/env/{a.glint, lib/b.glint, notes.txt}            <- the root
/// top/env/lib/in_link.glint -> ../a.glint              (inside)
/// top/env/lib/out_link.glint -> ../../outside/secret.glint
/// top/env/lib/pipe_link.glint -> ../../outside/pipe.glint
/// top/env/dir_in -> lib,  top/env/dir_out -> ../outside
/// top/env/abs_out -> /abs/path/of/top/outside
/// ```
fn tree() -> &'static Tree {
    static TREE: OnceLock<Tree> = OnceLock::new();
    TREE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let top = std::fs::canonicalize(dir.path()).unwrap();
        let out = top.join("outside");
        let env = top.join("env");
        std::fs::create_dir_all(out.join("sub")).unwrap();
        std::fs::create_dir_all(env.join("lib")).unwrap();
        std::fs::write(out.join("secret.glint"), format!("let s = \"{SECRET}\"\n")).unwrap();
        std::fs::write(out.join("sub/s.glint"), format!("let s = \"{SECRET}\"\n")).unwrap();
        std::fs::write(out.join("data.txt"), SECRET).unwrap();
        let pipe =
            std::ffi::CString::new(out.join("pipe.glint").to_string_lossy().as_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(pipe.as_ptr(), 0o644) }, 0);
        std::fs::write(env.join("a.glint"), "let a = 1\n").unwrap();
        std::fs::write(env.join("lib/b.glint"), "let b = 2\n").unwrap();
        std::fs::write(env.join("notes.txt"), "notes\n").unwrap();
        symlink("../a.glint", env.join("lib/in_link.glint")).unwrap();
        symlink("../../outside/secret.glint", env.join("lib/out_link.glint")).unwrap();
        symlink("../../outside/pipe.glint", env.join("lib/pipe_link.glint")).unwrap();
        symlink("lib", env.join("dir_in")).unwrap();
        symlink("../outside", env.join("dir_out")).unwrap();
        symlink(&out, env.join("abs_out")).unwrap();
        Tree {
            _dir: dir,
            top,
            env,
        }
    })
}

fn component() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "..",
        ".",
        "lib",
        "a.glint",
        "b.glint",
        "in_link.glint",
        "out_link.glint",
        "pipe_link.glint",
        "pipe.glint",
        "dir_in",
        "dir_out",
        "abs_out",
        "outside",
        "env",
        "secret.glint",
        "sub",
        "s.glint",
        "notes.txt",
        "data.txt",
    ])
}

/// An import path: relative, absolute from `/`, or absolute into the tree.
fn import_path() -> impl Strategy<Value = String> {
    (0..3u8, prop::collection::vec(component(), 1..6)).prop_map(|(start, parts)| {
        let rel = parts.join("/");
        match start {
            0 => rel,
            1 => format!("/{rel}"),
            _ => format!("{}/{rel}", tree().top.display()),
        }
    })
}

/// What a careful loader must do (docs/language.md, "Imports and
/// modules"): accept the path only when, as written, it is relative and
/// ends in a `.glint` name, its lexical normal form stays inside the root,
/// and that normal form names a regular file whose real path (symlinks
/// followed) is inside the root.
fn allowed(env: &Path, path: &str) -> bool {
    if path.starts_with('/') || !path.ends_with(".glint") {
        return false;
    }
    let normal = glint_lang::source::normalize(path);
    let lexically_inside = glint_lang::source::within(&normal, ".");
    let real = std::fs::canonicalize(env.join(&normal));
    let real_root = std::fs::canonicalize(env).unwrap();
    lexically_inside && real.is_ok_and(|r| r.starts_with(&real_root) && r.is_file())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(96),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn nothing_outside_the_root_is_shown_or_opened(path in import_path()) {
        let t = tree();
        let main = t.env.join("main.glint");
        std::fs::write(&main, format!("import \"{path}\" as m\n")).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_glint"))
            .args(["check", "main.glint", "--format", "json"])
            .current_dir(&t.env)
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        prop_assert!(!all.contains(SECRET), "{path}: leaked\n{all}");
        let expect_ok = allowed(&t.env, &path);
        prop_assert_eq!(out.status.code(), Some(if expect_ok { 0 } else { 1 }), "{}: {}", path, all);
        if !expect_ok {
            let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            let d = &doc["diagnostics"][0];
            let code = d["code"].as_str().unwrap_or("");
            prop_assert!(matches!(code, "E0300" | "E0303" | "E0304"), "{}: {}", path, all);
            // Located at the import.
            prop_assert_eq!(d["line"].as_u64(), Some(1), "{}: {}", path, all);
            // A FIFO outside the root was never opened (opening it would
            // have found "not a regular file").
            let real = std::fs::canonicalize(t.env.join(glint_lang::source::normalize(&path))).ok();
            if real.is_some_and(|r| !r.starts_with(&t.env)) {
                prop_assert!(!all.contains("not a regular file"), "{}: opened\n{}", path, all);
            }
        }
    }
}
