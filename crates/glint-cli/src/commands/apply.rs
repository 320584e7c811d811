//! `glint apply FILE`: records a new version and asks the conductor to
//! converge to it.
//!
//! Everything is checked before anything changes: the file compiles (with its
//! policies), every image builds, and only then is the version recorded, in
//! one transaction. The conductor picks the version up from the store (an
//! apply also pokes it over its socket so that it starts at once).

use crate::cli::{ApplyArgs, Global};
use crate::common::{CmdResult, Failed, Paint, fail, fail_io, open_store};
use crate::output::{EXIT_FAILED, EXIT_OK};
use glint_conductor::lock::ConductorLock;
use glint_store::{Created, EventKind, NewEvent, Store, VersionRecord};
use std::time::{Duration, Instant};

/// Runs `glint apply`.
pub fn run(global: &Global, args: ApplyArgs) -> i32 {
    body(global, args).unwrap_or_else(|f| f.0)
}

fn body(global: &Global, args: ApplyArgs) -> CmdResult {
    let resolved = crate::resolve::resolve(global, &args.file, &args.policies)?;
    let store = open_store(global)?;
    let paint = Paint::stdout(global);
    let plan = crate::commands::plan::compute(Some(&store), &resolved.version)?;
    let v = record(&store, resolved.version)?;
    let (version, new) = match v {
        Created::New(v) => {
            print!("{}", crate::commands::plan::render(&plan, paint));
            println!("\nRecorded version {}.", paint.bold(&v.number.to_string()));
            (v, true)
        }
        Created::Unchanged(v) => {
            println!("No changes: the file matches version {}.", v.number);
            (v, false)
        }
    };
    let dir = crate::common::data_dir(global);
    if !ConductorLock::is_held(&dir) {
        println!(
            "No conductor is running for {}: start `glint conductor` (or use `glint up FILE`) to converge.",
            dir.display()
        );
        return Ok(if args.wait { EXIT_FAILED } else { EXIT_OK });
    }
    let socket = glint_conductor::api::socket_path(&dir);
    let rt = crate::common::runtime()?;
    if new && let Err(e) = rt.block_on(glint_conductor::api::poke(&socket)) {
        eprintln!(
            "glint: warning: {} (it will notice the new version within a second)",
            glint_conductor::error_chain(&e)
        );
    }
    if args.wait {
        return wait(&rt, &socket, &version, paint);
    }
    Ok(EXIT_OK)
}

/// Records the version and its event.
pub fn record(store: &Store, version: glint_store::NewVersion) -> Result<Created, Failed> {
    let created = store
        .create_version(version)
        .map_err(|e| fail_io("cannot record the version", &e))?;
    if let Created::New(v) = &created {
        let services = v.env.services.len();
        let _ = store.append_event(
            NewEvent::info(
                EventKind::VersionApplied,
                format!(
                    "version {} applied ({} services, hash {})",
                    v.number,
                    services,
                    v.hash.short()
                ),
            )
            .version(v.number),
        );
    }
    Ok(created)
}

/// Waits until the conductor reports convergence to `version`.
fn wait(
    rt: &tokio::runtime::Runtime,
    socket: &std::path::Path,
    version: &VersionRecord,
    paint: Paint,
) -> CmdResult {
    let start = Instant::now();
    let mut last = String::new();
    loop {
        let status = rt
            .block_on(glint_conductor::api::status(socket))
            .map_err(|e| fail(EXIT_FAILED, glint_conductor::error_chain(&e)))?;
        let ready: u32 = status.services.iter().map(|s| s.ready_current).sum();
        let desired: u32 = status.services.iter().map(|s| s.desired).sum();
        let line = format!("converging to version {}: {ready}/{desired} instances ready", version.number);
        if line != last {
            println!("{line}");
            last = line;
        }
        if status.version == Some(version.number) && status.converged {
            println!(
                "{} in {:.1}s.",
                paint.green(&format!("Version {} is live", version.number)),
                start.elapsed().as_secs_f64()
            );
            return Ok(EXIT_OK);
        }
        if status.version.is_some_and(|v| v > version.number) {
            return Err(fail(
                EXIT_FAILED,
                format_args!(
                    "version {} was superseded by version {} before it converged",
                    version.number,
                    status.version.map(|v| v.0).unwrap_or(0)
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
