//! `glint check` on untrusted input, as CI runs it on a pull request: what
//! a file may make it read, print or accept. Each test is one finding of
//! the hostile-input review, run through the real binary.

#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const SECRET: &str = "TOPSECRET-7f3a9c";

fn glint(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_glint"))
        .args(args)
        .current_dir(cwd)
        .env("NO_COLOR", "1")
        .env("GLINT_TEST_SECRET", SECRET)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn all_output(o: &Output) -> String {
    format!("{}{}", text(&o.stdout), text(&o.stderr))
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(&p, text).unwrap();
    p
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A root `env/` next to a directory `outside/` holding secrets.
fn tree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "outside/secret.glint",
        &format!("let leaked = \"{SECRET}\"\n"),
    );
    write(dir.path(), "outside/hostname", &format!("{SECRET}\n"));
    std::fs::create_dir_all(dir.path().join("env/lib")).unwrap();
    dir
}

#[test]
fn imports_outside_the_root_are_refused_without_reading_them() {
    let dir = tree();
    let env = dir.path().join("env");
    std::os::unix::fs::symlink("../../outside/secret.glint", env.join("lib/link.glint")).unwrap();
    std::os::unix::fs::symlink("../outside", env.join("dirlink")).unwrap();
    let cases = [
        // The process environment (CI secrets) and a system file.
        ("/proc/self/environ", "E0303"),
        ("../../etc/passwd", "E0303"),
        ("../outside/secret.glint", "E0303"),
        ("lib/../../outside/secret.glint", "E0303"),
        // Symlinks inside the root that lead out of it.
        ("lib/link.glint", "E0303"),
        ("dirlink/secret.glint", "E0303"),
        // Only Glint sources.
        ("../outside/hostname", "E0303"),
        ("lib/notes.txt", "E0304"),
    ];
    write(&env, "lib/notes.txt", "not glint\n");
    for (path, code) in cases {
        write(&env, "main.glint", &format!("import \"{path}\"\n"));
        let out = glint(&["check", "main.glint"], &env);
        let all = all_output(&out);
        assert_eq!(out.status.code(), Some(1), "{path}: {all}");
        assert!(all.contains(&format!("error[{code}]")), "{path}: {all}");
        assert!(!all.contains(SECRET), "{path} leaked: {all}");
        assert!(
            !all.contains("root:x:0"),
            "{path} leaked /etc/passwd: {all}"
        );
        // Located at the import.
        assert!(all.contains("--> main.glint:1:8"), "{path}: {all}");
    }
    // The same file through a path inside the root is fine.
    write(&env, "lib/ok.glint", "let fine = 1\n");
    write(&env, "main.glint", "import \"lib/ok.glint\"\n");
    let out = glint(&["check", "main.glint"], &env);
    assert_eq!(out.status.code(), Some(0), "{}", all_output(&out));
}

#[test]
fn a_main_or_policy_file_that_is_a_symlink_out_of_its_directory_is_refused() {
    let dir = tree();
    let env = dir.path().join("env");
    std::os::unix::fs::symlink("../outside/secret.glint", env.join("main.glint")).unwrap();
    let out = glint(&["check", "main.glint"], &env);
    let all = all_output(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("error[E0303]"), "{all}");
    assert!(!all.contains(SECRET), "{all}");

    write(&env, "app.glint", "let x = 1\n");
    std::os::unix::fs::symlink("../outside/secret.glint", env.join("org.glint")).unwrap();
    let out = glint(&["check", "app.glint", "--policy", "org.glint"], &env);
    let all = all_output(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(!all.contains(SECRET), "{all}");
}

#[test]
fn a_fifo_import_does_not_hang_the_check() {
    let dir = tree();
    let env = dir.path().join("env");
    let fifo = env.join("lib/pipe.glint");
    let c = std::ffi::CString::new(fifo.to_string_lossy().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path; mkfifo has no other preconditions.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    write(&env, "main.glint", "import \"lib/pipe.glint\"\n");
    let out = glint(&["check", "main.glint"], &env);
    let all = all_output(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("not a regular file"), "{all}");
}

#[test]
fn image_sources_stay_inside_the_build_context() {
    let dir = tree();
    let env = dir.path().join("env");
    std::os::unix::fs::symlink("../outside", env.join("vendor")).unwrap();
    write(&env, "app/bin", "binary\n");
    let image = |body: &str| format!("image app {{\n{body}  entrypoint = [\"/bin/app\"]\n}}\n");
    let refused = [
        "  copy \"../../../../etc/hostname\" to \"/etc/hostname\"\n",
        "  copy \"/etc/hostname\" to \"/etc/hostname\"\n",
        // Through a symlink inside the root.
        "  copy \"vendor/hostname\" to \"/etc/hostname\"\n",
        "  from = archive(\"../outside/base.tar\", sha256:9f2d0b1c4e5a6b7c8d9e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e)\n",
        // A context does not widen beyond what it names.
        "  context = \"app\"\n  copy \"../outside/hostname\" to \"/x\"\n",
    ];
    for body in refused {
        write(&env, "main.glint", &image(body));
        let out = glint(&["check", "main.glint"], &env);
        let all = all_output(&out);
        assert_eq!(out.status.code(), Some(1), "{body}: {all}");
        assert!(all.contains("error[E0108]"), "{body}: {all}");
    }
    let accepted = [
        "  copy \"app/bin\" to \"/bin/app\"\n",
        "  context = \"..\"\n  copy \"../outside/hostname\" to \"/etc/hostname\"\n",
    ];
    for body in accepted {
        write(&env, "main.glint", &image(body));
        let out = glint(&["check", "main.glint"], &env);
        assert_eq!(out.status.code(), Some(0), "{body}: {}", all_output(&out));
    }
    // An absolute context is refused: the IR must mean the same files everywhere.
    write(&env, "main.glint", &image("  context = \"/\"\n"));
    let out = glint(&["check", "main.glint"], &env);
    assert!(
        all_output(&out).contains("error[E0105]"),
        "{}",
        all_output(&out)
    );
}

#[test]
fn the_hello_demo_declares_the_context_it_needs() {
    for file in [
        "examples/hello/hello.glint",
        "examples/hello/hello-docker.glint",
    ] {
        let out = glint(&["check", file], &repo());
        assert_eq!(out.status.code(), Some(0), "{file}: {}", all_output(&out));
        // Without its `context` line, the copy from target/ is refused.
        let src = std::fs::read_to_string(repo().join(file)).unwrap();
        let without: String = src
            .lines()
            .filter(|l| !l.trim_start().starts_with("context"))
            .map(|l| format!("{l}\n"))
            .collect();
        let dir = repo().join("examples/hello");
        let tmp = dir.join(".no-context.glint");
        std::fs::write(&tmp, without).unwrap();
        let out = glint(&["check", tmp.to_str().unwrap()], &repo());
        std::fs::remove_file(&tmp).unwrap();
        assert!(
            all_output(&out).contains("error[E0108]"),
            "{}",
            all_output(&out)
        );
    }
}

#[test]
fn a_policy_file_cannot_add_to_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "app.glint",
        "image app {\n  entrypoint = [\"/app\"]\n}\n\nservice web {\n  image = image.app\n}\n",
    );
    write(
        dir.path(),
        "org/policies.glint",
        "import \"helpers.glint\"\n\npolicy two {\n  message = \"need two\"\n  check   = all s in services: s.instances >= 1\n}\n",
    );
    write(
        dir.path(),
        "org/helpers.glint",
        "let limit = 2\n\nservice miner {\n  image = image.app\n}\n\nendpoint backdoor {\n  listen  = 0.0.0.0:2222\n  service = service.web\n}\n",
    );
    let out = glint(
        &[
            "check",
            "app.glint",
            "--policy",
            "org/policies.glint",
            "--emit",
            "ir",
        ],
        dir.path(),
    );
    let all = all_output(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert_eq!(all.matches("error[E0402]").count(), 2, "{all}");
    assert!(
        all.contains("a policy file cannot declare a service"),
        "{all}"
    );
    assert!(
        all.contains("a policy file cannot declare an endpoint"),
        "{all}"
    );
    // A policy file with policies, lets and functions only is fine.
    write(
        dir.path(),
        "org/helpers.glint",
        "let limit = 2\n\nfn big(n: int) = n > limit\n",
    );
    let out = glint(
        &["check", "app.glint", "--policy", "org/policies.glint"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", all_output(&out));
}

#[test]
fn an_unknown_name_in_an_interpolation_is_an_error_with_a_suggestion() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "main.glint",
        "let region = \"eu-west-1\"\n\nimage app {\n  entrypoint = [\"/app\"]\n  env        = { GREETING = \"hello from ${regoin}\" }\n}\n",
    );
    let out = glint(&["check", "main.glint"], dir.path());
    let all = all_output(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("error[E0200]: unknown name `regoin`"), "{all}");
    assert!(all.contains("did you mean `region`?"), "{all}");
    assert!(all.contains("--> main.glint:5:43"), "{all}");
}

/// Settings that cannot work are refused, each with its code, where it is
/// written.
#[test]
fn settings_that_cannot_work_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let app = "image app {\n  entrypoint = [\"/app\"]\n}\n\n";
    let cases: &[(&str, &str, &str)] = &[
        (
            "service web {\n  image = image.app\n  health {\n    http     = \"/h\"\n    interval = 0s\n  }\n}\n",
            "error[E0105]: a health check interval of `0s`",
            "main.glint:9:16",
        ),
        (
            "service web {\n  image = image.app\n  health {\n    tcp     = true\n    timeout = 0s\n  }\n}\n",
            "error[E0105]: a health check timeout of `0s`",
            "main.glint:9:15",
        ),
        (
            "service web {\n  image   = image.app\n  max_age = 0s\n}\n",
            "error[E0105]: a `max_age` of `0s`",
            "main.glint:7:13",
        ),
        (
            "service web {\n  image   = image.app\n  max_age = 1s\n  health {\n    tcp      = true\n    interval = 5s\n    timeout  = 1s\n  }\n}\n",
            "error[E0105]: `max_age = 1s` is not longer than the health check interval 5s",
            "main.glint:7:13",
        ),
        (
            "service web {\n  image = image.app\n  rollout {\n    min_healthy = 10m\n    deadline    = 5m\n  }\n}\n",
            "error[E0105]: `min_healthy = 10m` is not shorter than the rollout deadline 5m",
            "main.glint:8:19",
        ),
        (
            "service web {\n  image = image.app\n  env   = { \"A=B\" = \"x\" }\n}\n",
            "error[E0105]: invalid environment variable name `A=B`",
            "main.glint:7:13",
        ),
        (
            "service web {\n  image = image.app\n  env   = { \"\" = \"x\" }\n}\n",
            "error[E0105]: invalid environment variable name ``",
            "main.glint:7:13",
        ),
        (
            "service web {\n  image = image.app\n}\n\nendpoint public {\n  listen  = 0.0.0.0:8080\n  service = service.web\n}\n\nendpoint local {\n  listen  = 127.0.0.1:8080\n  service = service.web\n}\n",
            "error[E0501]: endpoints `local` (127.0.0.1:8080) and `public` (0.0.0.0:8080) overlap on port 8080",
            "main.glint:9:10",
        ),
        (
            "service web {\n  image    = image.app\n  provider = simulated\n}\n",
            "error[E0109]: this build of glint has no `simulated` provider",
            "main.glint:7:14",
        ),
        (
            "environment shop {\n  provider = simulated\n}\n",
            "error[E0109]: this build of glint has no `simulated` provider",
            "main.glint:6:14",
        ),
    ];
    for (body, message, at) in cases {
        write(dir.path(), "main.glint", &format!("{app}{body}"));
        let out = glint(&["check", "main.glint"], dir.path());
        let all = all_output(&out);
        assert_eq!(out.status.code(), Some(1), "{message}: {all}");
        assert!(all.contains(message), "missing {message:?} in\n{all}");
        assert!(
            all.contains(&format!("--> {at}")),
            "{message}: not at {at}:\n{all}"
        );
    }
}

#[test]
fn a_string_error_is_reported_once_and_located() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "main.glint",
        "image app {\n  entrypoint = [\"/app\"]\n  env        = { A = \"C:\\data\", B = \"ok\" }\n}\n\nlet paths = { a = \"\\q\" }\nlet first = paths.a\n",
    );
    let out = glint(&["check", "main.glint", "--format", "json"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let diags = doc["diagnostics"].as_array().unwrap();
    let codes: Vec<&str> = diags.iter().map(|d| d["code"].as_str().unwrap()).collect();
    assert_eq!(codes, vec!["E0004", "E0004"], "{doc:#}");
    for d in diags {
        assert_eq!(d["file"], "main.glint", "{d:#}");
        assert!(d["line"].as_u64().unwrap() > 0, "{d:#}");
    }
}

#[test]
fn a_block_comment_at_the_start_of_a_line_before_a_field_parses() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "main.glint",
        "image app {\n  entrypoint = [\"/app\"]\n}\n\nservice web {\n  image = image.app\n  /* three of them */ instances = 3\n  /* a longer\n     note */ drain = 5s\n}\n",
    );
    let out = glint(&["check", "main.glint", "--emit", "ir"], dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", all_output(&out));
    let ir: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ir["services"]["web"]["instances"], 3);
    assert_eq!(ir["services"]["web"]["drain"], 5000);
    // And `glint fmt` keeps the comments, idempotently.
    let fmt = glint(&["fmt", "main.glint"], dir.path());
    assert_eq!(fmt.status.code(), Some(0));
    let once = std::fs::read_to_string(dir.path().join("main.glint")).unwrap();
    assert!(once.contains("/* three of them */"), "{once}");
    let again = glint(&["fmt", "--check", "main.glint"], dir.path());
    assert_eq!(again.status.code(), Some(0), "{once}");
}

/// A hostile file cannot colour the terminal, move the cursor or print a
/// line of its own (a fake green `ok:`), even with colour off.
#[test]
fn control_characters_in_a_file_never_reach_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let fake = "ok: environment `prod`: 0 images (hash 000000000000)";
    let src = format!(
        "// \x1b[2J\x1b[H a comment that clears the screen\nimage app {{\n  entrypoint = [\"/app\"]\n  workdir    = \"x\\n\\u{{1b}}[32m{fake}\\u{{1b}}[0m\\r\"\n  \"\x1b[31mkey\" = 1\n}}\n"
    );
    write(dir.path(), "\x1b[1mmain.glint", &src);
    let out = glint(
        &["check", "\x1b[1mmain.glint", "--color", "never"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    let all = all_output(&out);
    assert!(all.contains("error[E0105]"), "{all}");
    assert!(all.contains("error[E0101]"), "{all}");
    for (i, c) in all.char_indices() {
        assert!(
            !c.is_control() || c == '\n',
            "control character {c:?} at {i} in:\n{}",
            all.escape_debug()
        );
    }
    assert!(
        !all.lines().any(|l| l.starts_with("ok:")),
        "a line of its own:\n{all}"
    );
    assert!(all.contains("\\u{1b}[32m"), "{all}");
    // `glint fmt` prints file names escaped too.
    let fmt = glint(&["fmt", "--check", "\x1b[1mmain.glint"], dir.path());
    assert!(!all_output(&fmt).contains('\x1b'), "{}", all_output(&fmt));
}
