//! `glint build FILE [--verify]`: build every image FILE declares and print
//! each image's digest; with `--verify`, start each built image in a sandbox
//! without network and require its health check to pass.
//!
//! The file is compiled (with its policies) exactly as `plan` and `apply`
//! compile it; images are built into `<data-dir>/images`.

use super::images::{open_store, report};
use crate::cli::{BuildArgs, Global, OutputFormat};
use crate::output::{EXIT_FAILED, EXIT_OK, inert, inert_line};
use glint_image::{BuildOptions, HealthProbe, Progress, VerifyRun};
use glint_model::Probe;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Runs `glint build`.
pub fn run(global: &Global, args: BuildArgs) -> i32 {
    let loaded = match crate::compile::load(global, &args.file, &args.policies) {
        Ok(l) => l,
        Err(f) => return f.0,
    };
    let env = loaded.env;
    let root = loaded.root;
    let store = match open_store(global) {
        Ok(s) => s,
        Err(f) => return f.0,
    };
    let opts = BuildOptions {
        tag_prefix: format!("{}/", env.name),
        ..BuildOptions::default()
    };
    let started = Instant::now();
    let mut on_progress = |p: &Progress| match p {
        Progress::Image { name } => eprintln!("building image {name}"),
        Progress::Step {
            step,
            of,
            what,
            cached,
            ..
        } => eprintln!(
            "  [{step}/{of}] {}{}",
            inert(what),
            if *cached { " (cached)" } else { "" }
        ),
        Progress::Test { test, command, .. } => {
            eprintln!("  test {test} passed: {}", inert(command))
        }
        Progress::Done { .. } => {}
    };
    let built = match glint_image::build(&env.images, &root, &store, &opts, &mut on_progress) {
        Ok(b) => b,
        Err(e) => {
            report("build failed", &e);
            return EXIT_FAILED;
        }
    };
    let elapsed = started.elapsed();
    let mut verified = BTreeMap::new();
    if args.verify {
        for (name, b) in &built {
            let image = &env.images[name];
            // The health check of a service that runs this image, else TCP on its port.
            let health = env
                .services
                .values()
                .filter(|s| &s.image == name)
                .find_map(|s| s.health.clone());
            let (probe, timeout) = match (&health, image.port) {
                (Some(h), _) => (
                    match &h.probe {
                        Probe::Http { path } => HealthProbe::Http(path.clone()),
                        Probe::Tcp => HealthProbe::Tcp,
                    },
                    h.start_timeout.as_std(),
                ),
                (None, Some(_)) => (HealthProbe::Tcp, Duration::from_secs(30)),
                (None, None) => {
                    eprintln!("verify {name}: skipped (no health check and no port)");
                    continue;
                }
            };
            eprintln!("verifying image {name} in a sandbox without network");
            let run = VerifyRun {
                probe,
                port: image.port,
                timeout,
                env: BTreeMap::new(),
                args: Vec::new(),
            };
            match store.verify_run(&b.digest, &run) {
                Ok(r) if r.passed => {
                    eprintln!("  healthy after {} ms", r.millis);
                    verified.insert(name.clone(), true);
                }
                Ok(r) => {
                    eprintln!(
                        "error: image {name} failed the immutability test: {}",
                        inert(&r.reason)
                    );
                    if !r.output.trim().is_empty() {
                        eprintln!("  its output:");
                        for line in r.output.trim_end().lines() {
                            eprintln!("{}", inert_line(line));
                        }
                    }
                    return EXIT_FAILED;
                }
                Err(e) => {
                    report(&format!("cannot verify image {name}"), &e);
                    return EXIT_FAILED;
                }
            }
        }
    }
    match args.output.output {
        OutputFormat::Json => {
            let rows: BTreeMap<String, serde_json::Value> = built
                .iter()
                .map(|(n, b)| {
                    (
                        n.to_string(),
                        serde_json::json!({
                            "digest": b.digest,
                            "tag": b.tag,
                            "cached": b.cached,
                            "size": b.size,
                            "verified": verified.get(n).copied().unwrap_or(false),
                        }),
                    )
                })
                .collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&rows).unwrap_or_default()
            );
        }
        OutputFormat::Text => {
            for (name, b) in &built {
                println!(
                    "{name:<16} {}  {}",
                    b.digest,
                    if b.cached { "(cached)" } else { "(built)" }
                );
            }
            eprintln!(
                "built {} image(s) in {} ms",
                built.len(),
                elapsed.as_millis()
            );
        }
    }
    EXIT_OK
}
