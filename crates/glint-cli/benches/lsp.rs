//! Benchmark: latency of `glint lsp` as an editor sees it, over stdio to
//! the real binary (release build), on the three-tier example and on a
//! generated file of 10,000 services.
//!
//! For each workload it measures, over N edits (each changes one
//! service's `instances`, alternating values):
//! - **diagnostics after an edit**: from sending `didChange` to receiving
//!   the `publishDiagnostics` of that version, with the debounce set to 0
//!   (so the figure is the server's own work: apply the edit, compile,
//!   convert, write); an editor adds the debounce delay (150 ms by default)
//!   on top;
//! - **completion after an edit**: with the default debounce, an edit then
//!   at once a completion request for a field inside a service, from
//!   sending the request to its response (the block at the cursor is found
//!   from tokens; no index is needed);
//! - **`image.` completion after an edit**: the same for a reference,
//!   which reads the index of the environment's files (the changed file is
//!   parsed and indexed again).
//!
//! Run: `cargo bench -p glint-cli --bench lsp` (optional arguments: the
//! number of edits for the example and for the large file, e.g.
//! `-- 200 40`). Figures are wall-clock times on whatever else the machine
//! is doing: run it on a quiet machine, or read them as upper bounds.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/lsp/client.rs"]
mod client;

use client::{Client, uri};
use serde_json::json;
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

/// A generated environment: one image, a template, `n` services.
fn generate(n: usize) -> String {
    let mut s = String::with_capacity(n * 120);
    s.push_str("import \"std:policies\"\n\n");
    s.push_str("image app {\n  entrypoint = [\"/bin/app\"]\n  digest     = sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824\n}\n\n");
    s.push_str("fn backend(index: int) = {\n  image   = image.app\n  max_age = 24h\n  env     = { INDEX = \"${index}\" }\n  health {\n    http    = \"/healthz\"\n    timeout = 500ms\n  }\n}\n\n");
    for i in 0..n {
        let _ = write!(
            s,
            "service s{i} {{\n  ...backend({i})\n  instances = {}\n  port      = {}\n}}\n\n",
            2 + i % 3,
            8000 + i % 1000
        );
    }
    s
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn report(what: &str, mut d: Vec<Duration>) {
    d.sort();
    let ms = |x: Duration| x.as_secs_f64() * 1000.0;
    println!(
        "  {what:<40} n={:<4} median {:>8.2} ms   p99 {:>8.2} ms   max {:>8.2} ms",
        d.len(),
        ms(percentile(&d, 0.5)),
        ms(percentile(&d, 0.99)),
        ms(d.last().copied().unwrap_or_default()),
    );
}

/// Runs one workload: `main` in `dir`, edits of the `instances = ` line of
/// service `service` (whose body holds `anchor`, where completion is asked).
fn workload(title: &str, dir: &Path, main: &Path, service: &str, edits: usize) {
    let text = std::fs::read_to_string(main).unwrap();
    let bin = env!("CARGO_BIN_EXE_glint");
    println!(
        "{title} ({} bytes, {} lines)",
        text.len(),
        text.lines().count()
    );
    let header = format!("service {service} {{");
    let body = text.find(&header).unwrap();
    // The value of `instances` (`instances = 2`, aligned or not).
    let key = body + text[body..].find("instances").unwrap();
    let inst = key + text[key..].find(|c: char| c.is_ascii_digit()).unwrap();
    let line_of = |off: usize| text[..off].matches('\n').count();
    let col_of = |off: usize| off - text[..off].rfind('\n').map(|i| i + 1).unwrap_or(0);
    let value_pos = json!({ "line": line_of(inst), "character": col_of(inst) });
    let value_end = json!({ "line": line_of(inst), "character": col_of(inst) + 1 });
    // Completion at the start of the line after the header (a key position).
    let key_pos = json!({ "line": line_of(body) + 1, "character": 0 });

    // Diagnostics, no debounce.
    let mut c = Client::start(bin, dir, &[], json!({ "debounceMs": 0 }));
    let started = Instant::now();
    c.open(main, &text);
    c.diagnostics(&uri(main), Some(1));
    println!(
        "  first diagnostics after open          {:>8.2} ms",
        started.elapsed().as_secs_f64() * 1000.0
    );
    let mut diag = Vec::new();
    for i in 0..edits {
        let v = 2 + i as i64;
        let value = if i % 2 == 0 { "7" } else { "8" };
        let t = Instant::now();
        c.edit(main, v, value_pos.clone(), value_end.clone(), value);
        c.diagnostics(&uri(main), Some(v));
        diag.push(t.elapsed());
    }
    c.shutdown();
    report("diagnostics after an edit", diag);

    // Completion right after an edit, default debounce.
    let mut c = Client::start(bin, dir, &[], json!({}));
    c.open(main, &text);
    c.diagnostics(&uri(main), Some(1));
    let mut comp = Vec::new();
    let mut count = 0;
    for i in 0..edits {
        let v = 2 + i as i64;
        let value = if i % 2 == 0 { "7" } else { "8" };
        c.edit(main, v, value_pos.clone(), value_end.clone(), value);
        let t = Instant::now();
        let items = c.request(
            "textDocument/completion",
            json!({ "textDocument": { "uri": uri(main) }, "position": key_pos }),
        );
        comp.push(t.elapsed());
        count = items.as_array().map(Vec::len).unwrap_or(0);
        c.diagnostics(&uri(main), Some(v));
    }
    report(&format!("completion after an edit ({count} items)"), comp);

    // Completion of a reference (`image.`), which reads the index of every
    // file: rebuilt for the changed one.
    let dot = text.find("image.app").unwrap() + "image.".len();
    let dot_pos = json!({ "line": line_of(dot), "character": col_of(dot) });
    let mut refs = Vec::new();
    for i in 0..edits {
        let v = 2 + edits as i64 + i as i64;
        let value = if i % 2 == 0 { "7" } else { "8" };
        c.edit(main, v, value_pos.clone(), value_end.clone(), value);
        let t = Instant::now();
        let items = c.request(
            "textDocument/completion",
            json!({ "textDocument": { "uri": uri(main) }, "position": dot_pos }),
        );
        refs.push(t.elapsed());
        count = items.as_array().map(Vec::len).unwrap_or(0);
        c.diagnostics(&uri(main), Some(v));
    }
    c.shutdown();
    report(
        &format!("`image.` completion after an edit ({count})"),
        refs,
    );
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let small = args.first().copied().unwrap_or(200);
    let large = args.get(1).copied().unwrap_or(40);
    println!("glint lsp latency (wall clock; the machine may be shared: read as upper bounds)\n");

    let dir = tempfile::tempdir().unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/three-tier");
    std::fs::create_dir_all(dir.path().join("lib")).unwrap();
    for f in ["main.glint", "lib/templates.glint"] {
        std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
    }
    workload(
        "examples/three-tier",
        dir.path(),
        &dir.path().join("main.glint"),
        "db",
        small,
    );

    let big = tempfile::tempdir().unwrap();
    let main = big.path().join("main.glint");
    std::fs::write(&main, generate(10_000)).unwrap();
    println!();
    workload("10,000 services", big.path(), &main, "s5000", large);
}
