//! Benchmark: compile a generated environment of N services, N endpoints and
//! N rules, with the standard policies (parse, evaluation, type checking,
//! lowering and policies), for N = 10,000 and 100,000, and a record of
//! 100,000 keys. Each case runs in a fresh process of its own, so that its
//! peak memory (`VmHWM` of `/proc/self/status`) is its own.
//!
//! Run with `cargo bench -p glint-lang --bench compile` (release mode).
//! Arguments:
//! - sizes to run, e.g. `-- 1000 10000` (default `10000 100000`);
//! - `-- --record N`: only the record case;
//! - `-- --write N FILE`: write the generated environment to FILE and exit
//!   (`bench/compile.sh` times `glint check` on it).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use glint_lang::{Capabilities, CompileOptions, MemoryLoader, compile};
use std::fmt::Write;
use std::time::{Duration, Instant};

/// A generated environment with `n` services, endpoints and rules.
fn generate(n: usize) -> String {
    let mut s = String::with_capacity(n * 400);
    s.push_str("import \"std:policies\"\n\n");
    s.push_str("image app {\n  copy \"bin/app\" to \"/bin/app\"\n  entrypoint = [\"/bin/app\"]\n  digest     = sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824\n}\n\n");
    s.push_str("fn backend(index: int) = {\n  image   = image.app\n  max_age = 24h\n  env     = { INDEX = \"${index}\" }\n  health {\n    http    = \"/healthz\"\n    timeout = 500ms\n  }\n}\n\n");
    for i in 0..n {
        let _ = write!(
            s,
            "service s{i} {{\n  ...backend({i})\n  instances = {}\n  port      = {}\n}}\n\n",
            1 + i % 3,
            8000 + i % 1000
        );
        let _ = write!(
            s,
            "endpoint e{i} {{\n  listen  = 10.{}.{}.{}:8080\n  service = service.s{i}\n}}\n\n",
            (i >> 16) & 255,
            (i >> 8) & 255,
            i & 255
        );
        let _ = write!(
            s,
            "rule r{i} {{\n  from  = service.s{}\n  to    = service.s{i}\n  ports = [{}]\n}}\n\n",
            (i + 1) % n,
            8000 + i % 1000
        );
    }
    s
}

/// A service whose `env` is a record of `n` keys (about 15 bytes each).
fn generate_record(n: usize) -> String {
    let mut s = String::with_capacity(n * 16 + 200);
    s.push_str("image app {\n  entrypoint = [\"/app\"]\n}\n\nservice web {\n  image = image.app\n  env = {\n");
    for i in 0..n {
        let _ = writeln!(s, "    K{i} = \"v{i}\"");
    }
    s.push_str("  }\n}\n");
    s
}

/// CPU time (user + system) of this process so far, from `/proc/self/stat`
/// (clock ticks of 10 ms). Less sensitive than wall time to other work on a
/// shared machine.
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

/// A `kB` line of `/proc/self/status` (`VmHWM`: peak resident memory).
fn status_kb(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Runs one case in this process: prints `RESULT wall_ms cpu_ms peak_kb
/// source_bytes` for the parent to read. The first round's peak memory is
/// the figure (later rounds reuse the same memory).
fn one(src: String, rounds: usize, check: impl Fn(&glint_lang::Compilation)) {
    // `GLINT_BENCH_ROUNDS=1` for instruction counts under valgrind.
    let rounds = std::env::var("GLINT_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(rounds);
    let size = src.len();
    let mut loader = MemoryLoader::new();
    loader.add("bench.glint", src);
    let options = CompileOptions {
        enforced: Capabilities::all(),
        ..CompileOptions::default()
    };
    let mut best = Duration::MAX;
    let mut best_cpu = Duration::MAX;
    let mut peak = 0;
    for round in 0..rounds {
        let cpu0 = cpu_time();
        let start = Instant::now();
        let c = compile("bench.glint", &loader, &options);
        let took = start.elapsed();
        if let (Some(a), Some(b)) = (cpu0, cpu_time()) {
            best_cpu = best_cpu.min(b.saturating_sub(a));
        }
        if round == 0 {
            peak = status_kb("VmHWM:");
        }
        check(&c);
        drop(c);
        best = best.min(took);
    }
    println!(
        "RESULT {} {} {peak} {size}",
        best.as_secs_f64() * 1000.0,
        best_cpu.as_millis()
    );
}

fn check_env(n: usize) -> impl Fn(&glint_lang::Compilation) {
    move |c| {
        assert!(!c.has_errors(), "{}", c.diagnostics.render_human(false));
        let env = c.environment.as_ref().unwrap();
        assert_eq!(env.services.len(), n);
        assert_eq!(env.endpoints.len(), n);
        assert_eq!(env.rules.len(), n);
        assert_eq!(env.policies.len(), 5);
    }
}

/// Runs a case in a child process and reads its result.
fn child(args: &[String]) -> (f64, u64, u64, usize) {
    let exe = std::env::current_exe().expect("the benchmark's own path");
    let out = std::process::Command::new(exe)
        .args(args)
        .output()
        .expect("run the benchmark in a child process");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("RESULT "))
        .unwrap_or_else(|| {
            panic!(
                "no result from {args:?}: {stdout}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let f: Vec<&str> = line.split_whitespace().collect();
    (
        f[1].parse().unwrap(),
        f[2].parse().unwrap(),
        f[3].parse().unwrap(),
        f[4].parse().unwrap(),
    )
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--one") => {
            let n: usize = args[1].parse().unwrap();
            let rounds = if n >= 100_000 { 3 } else { 5 };
            return one(generate(n), rounds, check_env(n));
        }
        Some("--one-record") => {
            let n: usize = args[1].parse().unwrap();
            return one(generate_record(n), 3, move |c| {
                assert!(!c.has_errors(), "{}", c.diagnostics.render_human(false));
                let env = c.environment.as_ref().unwrap();
                assert_eq!(env.services.values().next().unwrap().env.len(), n);
            });
        }
        Some("--write") => {
            let n: usize = args[1].parse().unwrap();
            std::fs::write(&args[2], generate(n)).unwrap();
            return;
        }
        _ => {}
    }
    let record_only = args.first().is_some_and(|a| a == "--record");
    let sizes: Vec<usize> = args
        .iter()
        .filter(|a| !a.starts_with("--"))
        .filter_map(|a| a.parse().ok())
        .collect();
    if record_only {
        let n = sizes.first().copied().unwrap_or(100_000);
        record(n);
        return;
    }
    let sizes = if sizes.is_empty() {
        vec![10_000, 100_000]
    } else {
        sizes
    };
    println!(
        "compile (parse + check + lower + 5 standard policies), best of several runs, each size in its own process"
    );
    let mut base: Option<(usize, f64, u64, u64)> = None;
    for n in sizes {
        let (wall, cpu, peak_kb, size) = child(&["--one".into(), n.to_string()]);
        let ratio = base
            .map(|(bn, bw, bc, bp)| {
                format!(
                    "  ({:.1}x the wall time, {:.1}x the CPU time, {:.1}x the peak memory for {:.0}x the size)",
                    wall / bw,
                    cpu as f64 / (bc as f64).max(1e-9),
                    peak_kb as f64 / bp as f64,
                    n as f64 / bn as f64
                )
            })
            .unwrap_or_default();
        println!(
            "N = {n:>7}: {n} services + {n} endpoints + {n} rules, {:.1} MiB of source: {wall:>8.1} ms wall, {cpu:>6} ms CPU, {:>6.1} MiB peak{ratio}",
            size as f64 / (1 << 20) as f64,
            peak_kb as f64 / 1024.0
        );
        if base.is_none() {
            base = Some((n, wall, cpu, peak_kb));
        }
    }
    record(100_000);
}

fn record(n: usize) {
    let (wall, cpu, peak_kb, size) = child(&["--one-record".into(), n.to_string()]);
    println!(
        "a record of {n} keys ({:.1} MiB of source): {wall:.1} ms wall, {cpu} ms CPU, {:.1} MiB peak",
        size as f64 / (1 << 20) as f64,
        peak_kb as f64 / 1024.0
    );
}
