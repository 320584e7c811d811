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

fn write(dir: &Path, name: &str, text: &str) {
    let p = dir.join(name);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(p, text).unwrap();
}

const APP: &str =
    "image app {\n  copy \"bin/app\" to \"/bin/app\"\n  entrypoint = [\"/bin/app\"]\n}\n";

/// The mistakes a new user makes, each answered with what, where and how.
#[test]
fn new_user_mistakes_get_actionable_messages() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "typo.glint",
            "service web {\n  image = image.app\n  instnaces = 3\n}\n",
            &[
                "error[E0101]: unknown field `instnaces`",
                "typo.glint:8:3",
                "did you mean `instances`?",
            ],
        ),
        (
            "string.glint",
            "service web {\n  image = image.app\n  max_age = \"1 hour\"\n}\n",
            &[
                "error[E0103]: expected duration, found string",
                "string.glint:8:13",
                "write `1h`",
            ],
        ),
        (
            "space.glint",
            "service web {\n  image = image.app\n  stop_grace = 30 s\n}\n",
            &[
                "error[E0009]",
                "space.glint:8:16",
                "write `30s` without the space",
            ],
        ),
        (
            "cidr.glint",
            "service db {\n  image = image.app\n}\nrule r {\n  from = 10.0.0.300/8\n  to = service.db\n}\n",
            &[
                "error[E0007]",
                "cidr.glint:10:10",
                "`300` is not a number from 0 to 255",
            ],
        ),
        (
            "port.glint",
            "service db {\n  image = image.app\n}\nrule r {\n  from = 10.0.0.0/8\n  to = service.db\n  ports = [70000]\n}\n",
            &[
                "error[E0105]: port 70000 is out of range",
                "port.glint:12:12",
                "pick a port from 1 to 65535",
            ],
        ),
    ];
    for (name, body, expect) in cases {
        write(dir.path(), name, &format!("{APP}\n{body}"));
        let out = glint(&["check", name], dir.path());
        assert_eq!(out.status.code(), Some(1), "{name}");
        let err = text(&out.stderr);
        for e in *expect {
            assert!(err.contains(e), "{name}: missing {e:?} in\n{err}");
        }
    }
}

#[test]
fn import_cycles_and_policy_violations_fail_the_check() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "main.glint", "import \"lib/a.glint\"\n");
    write(dir.path(), "lib/a.glint", "import \"b.glint\"\n");
    write(dir.path(), "lib/b.glint", "import \"a.glint\"\n");
    let out = glint(&["check", "main.glint"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("error[E0301]: import cycle: lib/a.glint -> lib/b.glint -> lib/a.glint"),
        "{err}"
    );

    let out = glint(
        &["check", "examples/policy-failures/public-admin-port.glint"],
        &repo(),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("error[E0400]: rule `ssh_from_anywhere` opens an administrative port"),
        "{err}"
    );
    assert!(
        err.contains("violates policy `no_public_admin_ports`"),
        "{err}"
    );
}

#[test]
fn warnings_alone_exit_zero_and_policy_files_apply() {
    let out = glint(
        &["check", "examples/policy-failures/unpinned-image.glint"],
        &repo(),
    );
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stderr).contains("warning[E0400]: image `app` is not pinned by digest"));

    let plain = glint(
        &["check", "examples/policy-failures/org-max-age.glint"],
        &repo(),
    );
    assert_eq!(plain.status.code(), Some(0), "{}", text(&plain.stderr));
    let org = glint(
        &[
            "check",
            "examples/policy-failures/org-max-age.glint",
            "--policy",
            "examples/policies/org.glint",
        ],
        &repo(),
    );
    assert_eq!(org.status.code(), Some(1));
    let err = text(&org.stderr);
    assert!(
        err.contains("service `api` keeps instances for more than 7d"),
        "{err}"
    );
    assert!(err.contains("::: examples/policies/org.glint:"), "{err}");

    let shop = glint(
        &[
            "check",
            "examples/three-tier/main.glint",
            "--policy",
            "examples/policies/org.glint",
        ],
        &repo(),
    );
    assert_eq!(shop.status.code(), Some(0), "{}", text(&shop.stderr));

    let missing = glint(
        &[
            "check",
            "examples/hello/hello.glint",
            "--policy",
            "nope.glint",
        ],
        &repo(),
    );
    assert_eq!(missing.status.code(), Some(2));
    assert!(text(&missing.stderr).contains("nope.glint"));
}

#[test]
fn json_diagnostics_are_machine_readable() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "bad.glint",
        "service web {\n  image = image.nope\n}\n",
    );
    let out = glint(&["check", "bad.glint", "--format", "json"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["ok"], false);
    assert_eq!(doc["errors"], 1);
    let d = &doc["diagnostics"][0];
    assert_eq!(d["code"], "E0201");
    assert_eq!(d["file"], "bad.glint");
    assert_eq!(d["line"], 2);
    assert_eq!(d["column"], 11);
    assert_eq!(d["labels"][0]["primary"], true);
    assert!(d["help"].as_str().unwrap().contains("image"));

    let ok = glint(
        &[
            "check",
            "examples/hello/hello.glint",
            "--format",
            "json",
            "--emit",
            "ir",
        ],
        &repo(),
    );
    assert_eq!(ok.status.code(), Some(0));
    let doc: serde_json::Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(doc["ok"], true);
    assert_eq!(
        doc["environment"]["endpoints"]["public"]["listen"],
        "127.0.0.1:8080"
    );
    assert_eq!(doc["hash"].as_str().unwrap().len(), 64);
}

#[test]
fn fmt_rewrites_checks_and_refuses_broken_files() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "a.glint",
        "// keep me\nservice web{\nimage=image.app // and me\ninstances=3}\n",
    );
    let check = glint(&["fmt", "--check", "a.glint"], dir.path());
    assert_eq!(check.status.code(), Some(1));
    assert!(text(&check.stdout).contains("would reformat a.glint"));
    let fmt = glint(&["fmt", "a.glint"], dir.path());
    assert_eq!(fmt.status.code(), Some(0));
    let formatted = std::fs::read_to_string(dir.path().join("a.glint")).unwrap();
    assert_eq!(
        formatted,
        "// keep me\nservice web {\n  image     = image.app // and me\n  instances = 3\n}\n"
    );
    let again = glint(&["fmt", "--check", "a.glint"], dir.path());
    assert_eq!(again.status.code(), Some(0));

    write(dir.path(), "broken.glint", "service web {\n");
    let broken = glint(&["fmt", "broken.glint"], dir.path());
    assert_eq!(broken.status.code(), Some(1));
    assert!(text(&broken.stderr).contains("error[E0100]"));
    let missing = glint(&["fmt", "missing.glint"], dir.path());
    assert_eq!(missing.status.code(), Some(2));
}

#[test]
fn every_example_is_formatted() {
    let mut files = vec![];
    let mut stack = vec![repo().join("examples")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "glint") {
                files.push(p.to_string_lossy().into_owned());
            }
        }
    }
    let mut args = vec!["fmt", "--check"];
    args.extend(files.iter().map(String::as_str));
    let out = glint(&args, &repo());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
}

// Mutation caught: a capability left out of (or put into) the set
// `compile.rs::enforced` passes, whatever this machine can do.
#[test]
fn check_warns_exactly_about_what_this_build_does_not_enforce_here() {
    let out = glint(&["check", "examples/three-tier/main.glint"], &repo());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    // Rules are enforced where instances get namespaces, their own networks
    // (`ip`) and Glint's nftables table (`nft`).
    let rules_enforced = glint_sandbox::available()
        && glint_provider::process::net::available()
        && glint_conductor::reconcilers::network::can_enforce();
    for unenforced in [
        "warning[E0600]: firewall rules are declared but not enforced yet",
        "rule `web_to_api`: not enforced",
    ] {
        assert_eq!(
            err.contains(unenforced),
            !rules_enforced,
            "{unenforced:?} in\n{err}"
        );
    }
    // Variables are enforced (readers get them, the instance API checks
    // readers and writers): never warned about, secret or not. (A build
    // without the capability still warns: glint-lang's E0601 snapshot.)
    assert!(!err.contains("E0601"), "{err}");
    assert!(!err.contains("variable `feature_flags`"), "{err}");
    assert!(!err.contains("variable `db_password`"), "{err}");
    assert!(
        text(&out.stdout).contains("3 variables (1 literal, 1 runtime, 1 secret)"),
        "check counts variables and secrets: {}",
        text(&out.stdout)
    );
    // Autoscaling is enforced everywhere; volumes where process instances
    // get namespaces (root); process limits where cgroups are usable too.
    assert!(!err.contains("E0603"), "{err}");
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    assert_eq!(
        err.contains("warning[E0602]: volumes and mounts are declared but not enforced yet"),
        !root,
        "{err}"
    );
    if !root {
        assert!(err.contains("volume `pgdata`: not enforced"), "{err}");
    }
    // One warning per capability, however many declarations ask for it.
    assert!(err.matches("warning[E0600]").count() <= 1, "{err}");
    assert!(text(&out.stdout).contains("ok: environment `shop`"));
    assert!(
        text(&out.stdout).contains("1 volume"),
        "check counts volumes"
    );
}

/// `plan`, `apply` and `up` print the same warnings as `check` (they all
/// compile through `compile.rs`), and with `--allow-unenforced` still go
/// ahead. (Without `nft` and `ip` on the PATH, nothing can enforce rules;
/// `tests/network.rs` checks the refusal without the flag.)
#[test]
fn plan_apply_and_up_warn_about_rules_nothing_enforces() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "r.glint",
        "image app {\n  entrypoint = [\"/app\"]\n}\n\nservice web {\n  image     = image.app\n  instances = 0\n}\n\nrule office {\n  from = 10.0.0.0/8\n  to   = service.web\n}\n",
    );
    let data = dir.path().join("data");
    let empty_path = dir.path().join("empty-path");
    std::fs::create_dir_all(&empty_path).unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_glint"))
            .args(args)
            .current_dir(dir.path())
            .env("NO_COLOR", "1")
            .env("PATH", &empty_path)
            .env("GLINT_DATA_DIR", &data)
            .output()
            .unwrap()
    };
    let warning = "warning[E0600]: firewall rules are declared but not enforced yet";
    for cmd in [&["plan"][..], &["apply", "--allow-unenforced"]] {
        let mut args = cmd.to_vec();
        args.push("r.glint");
        let out = run(&args);
        assert_eq!(out.status.code(), Some(0), "{cmd:?}: {}", text(&out.stderr));
        assert!(
            text(&out.stderr).contains(warning),
            "{cmd:?}: {}",
            text(&out.stderr)
        );
    }
    // `up` compiles before it starts: read its stderr until the warning
    // (bounded), then stop it.
    let mut up = Command::new(env!("CARGO_BIN_EXE_glint"))
        .args(["up", "--allow-unenforced", "r.glint"])
        .current_dir(dir.path())
        .env("NO_COLOR", "1")
        .env("PATH", &empty_path)
        .env("GLINT_DATA_DIR", dir.path().join("data-up"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = up.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut seen = String::new();
    while !seen.contains(warning) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                seen.push_str(&line);
                seen.push('\n');
            }
            Err(_) => break,
        }
    }
    let _ = up.kill();
    let _ = up.wait();
    assert!(seen.contains(warning), "glint up printed:\n{seen}");
}
