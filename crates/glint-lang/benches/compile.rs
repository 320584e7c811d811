//! Benchmark: compile a generated environment of N services, N endpoints and
//! N rules, with the standard policies (parse, evaluation, type checking,
//! lowering and policies), for N = 10,000 and 100,000.
//!
//! Run with `cargo bench -p glint-lang --bench compile` (release mode).
//! Optional argument: the sizes to run, e.g. `-- 1000 10000`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use glint_lang::{CompileOptions, MemoryLoader, compile};
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

fn run(n: usize, rounds: usize) -> (Duration, Duration, usize) {
    let src = generate(n);
    let size = src.len();
    let mut loader = MemoryLoader::new();
    loader.add("bench.glint", src);
    let mut best = Duration::MAX;
    let mut best_cpu = Duration::MAX;
    for _ in 0..rounds {
        let cpu0 = cpu_time();
        let start = Instant::now();
        let c = compile("bench.glint", &loader, &CompileOptions::default());
        let took = start.elapsed();
        if let (Some(a), Some(b)) = (cpu0, cpu_time()) {
            best_cpu = best_cpu.min(b.saturating_sub(a));
        }
        assert!(!c.has_errors(), "{}", c.diagnostics.render_human(false));
        let env = c.environment.unwrap();
        assert_eq!(env.services.len(), n);
        assert_eq!(env.endpoints.len(), n);
        assert_eq!(env.rules.len(), n);
        assert_eq!(env.policies.len(), 5);
        best = best.min(took);
    }
    (best, best_cpu, size)
}

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![10_000, 100_000]
    } else {
        sizes
    };
    println!("compile (parse + check + lower + 5 standard policies), best of several runs");
    let mut base: Option<(usize, Duration, Duration)> = None;
    for n in sizes {
        let rounds = if n >= 100_000 { 3 } else { 5 };
        let (t, cpu, size) = run(n, rounds);
        let ratio = base
            .map(|(bn, bt, bc)| {
                format!(
                    "  ({:.1}x the wall time, {:.1}x the CPU time for {:.0}x the size)",
                    t.as_secs_f64() / bt.as_secs_f64(),
                    cpu.as_secs_f64() / bc.as_secs_f64().max(1e-9),
                    n as f64 / bn as f64
                )
            })
            .unwrap_or_default();
        println!(
            "N = {n:>7}: {n} services + {n} endpoints + {n} rules, {:.1} MiB of source: {:>8.1} ms wall, {:>6} ms CPU{ratio}",
            size as f64 / (1 << 20) as f64,
            t.as_secs_f64() * 1000.0,
            cpu.as_millis()
        );
        if base.is_none() {
            base = Some((n, t, cpu));
        }
    }
}
