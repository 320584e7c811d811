//! One `moto_server` per test binary, on a free loopback port, killed with
//! the test process (it is spawned by a thread that lives as long as the
//! process, with `PR_SET_PDEATHSIG`). Shared by `glint-aws`'s moto tests and
//! `glint-cli`'s aws tests (included there by path).

use std::io::BufRead;
use std::sync::OnceLock;
use std::time::Duration;

/// The shared moto server's `http://127.0.0.1:PORT`, or `None` (the test
/// then skips) when moto is not installed — a failure instead when
/// `GLINT_REQUIRE_MOTO=1` (CI).
pub fn moto() -> Option<String> {
    static URL: OnceLock<Option<String>> = OnceLock::new();
    let url = URL.get_or_init(start_moto).clone();
    if url.is_none() {
        assert!(
            std::env::var("GLINT_REQUIRE_MOTO").as_deref() != Ok("1"),
            "GLINT_REQUIRE_MOTO=1 but moto_server could not be started (pip install 'moto[server]')"
        );
        eprintln!(
            "SKIPPED: moto_server is not installed (pip install 'moto[server]'; set GLINT_REQUIRE_MOTO=1 to fail instead)"
        );
    }
    url
}

fn start_moto() -> Option<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::os::unix::process::CommandExt;
        let mut cmd = std::process::Command::new("moto_server");
        cmd.args(["-H", "127.0.0.1", "-p", "0"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        // SAFETY: prctl is async-signal-safe; it only asks the kernel to
        // kill the server when this (never-ending) thread's process dies.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let Ok(mut child) = cmd.spawn() else {
            let _ = tx.send(None);
            return;
        };
        let Some(stderr) = child.stderr.take() else {
            let _ = tx.send(None);
            return;
        };
        let mut lines = std::io::BufReader::new(stderr).lines();
        let mut sent = false;
        for line in lines.by_ref() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.split("Running on ").nth(1) {
                let _ = tx.send(Some(rest.trim().trim_end_matches('/').to_owned()));
                sent = true;
                break;
            }
        }
        if !sent {
            let _ = tx.send(None);
            return;
        }
        // Keep draining its log, and keep this thread (the parent of the
        // death signal) alive for the whole process.
        for _ in lines {}
        loop {
            std::thread::park();
        }
    });
    rx.recv_timeout(Duration::from_secs(60)).ok().flatten()
}
