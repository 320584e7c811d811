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
use glint_store::{Created, EventKind, NewEvent, Outcome, Store, VersionRecord};
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
    after_record(global, &store, &version, new, args.wait, paint)
}

/// After a version is recorded: pokes the conductor and, with `wait`,
/// follows the rollout until it converges (exit 0) or fails or is rolled
/// back (exit 1).
pub fn after_record(
    global: &Global,
    store: &Store,
    version: &VersionRecord,
    new: bool,
    wait: bool,
    paint: Paint,
) -> CmdResult {
    let dir = crate::common::data_dir(global);
    if !ConductorLock::is_held(&dir) {
        println!(
            "No conductor is running for {}: start `glint conductor` (or use `glint up FILE`) to converge.",
            dir.display()
        );
        return Ok(if wait { EXIT_FAILED } else { EXIT_OK });
    }
    let socket = glint_conductor::api::socket_path(&dir);
    let rt = crate::common::runtime()?;
    if new && let Err(e) = rt.block_on(glint_conductor::api::poke(&socket)) {
        eprintln!(
            "glint: warning: {} (it will notice the new version within a second)",
            glint_conductor::error_chain(&e)
        );
    }
    if wait {
        return wait_for(&rt, &socket, store, version, paint);
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
        if let Err(e) = store.append_event(
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
        ) {
            eprintln!("glint: warning: the version is recorded, but its event is not: {e}");
        }
    }
    Ok(created)
}

/// Follows a version's rollout: a progress bar on a terminal, a line per
/// change otherwise. The outcome comes from the store (the conductor records
/// it), the progress from the conductor's live status.
fn wait_for(
    rt: &tokio::runtime::Runtime,
    socket: &std::path::Path,
    store: &Store,
    version: &VersionRecord,
    paint: Paint,
) -> CmdResult {
    let start = Instant::now();
    let tty = crate::output::stdout_is_terminal();
    let mut last = String::new();
    let n = version.number;
    loop {
        let outcome = store
            .version_outcome(n)
            .map_err(|e| fail_io("cannot read the version", &e))?;
        if let Some((o, detail)) = outcome {
            if tty {
                println!();
            }
            let detail = detail.unwrap_or_default();
            return match o {
                Outcome::Converged => {
                    println!(
                        "{} ({detail}; waited {:.1}s).",
                        paint.green(&format!("Version {n} is live")),
                        start.elapsed().as_secs_f64()
                    );
                    Ok(EXIT_OK)
                }
                Outcome::RolledBack => Err(fail(
                    EXIT_FAILED,
                    format_args!("version {n} was rolled back automatically: {detail}"),
                )),
                Outcome::Failed => Err(fail(
                    EXIT_FAILED,
                    format_args!("the rollout of version {n} failed: {detail}"),
                )),
                Outcome::Superseded => Err(fail(
                    EXIT_FAILED,
                    format_args!(
                        "version {n} was superseded by a newer version before it converged"
                    ),
                )),
            };
        }
        if let Ok(status) = rt.block_on(glint_conductor::api::status(socket)) {
            let ready: u32 = status.services.iter().map(|s| s.ready_current).sum();
            let desired: u32 = status.services.iter().map(|s| s.desired).sum();
            let waiting: Vec<String> = status
                .services
                .iter()
                .filter_map(|s| s.rollout.as_ref().and_then(|r| r.waiting.clone()))
                .collect();
            let line = if tty {
                let width = 30usize;
                let filled = if desired == 0 {
                    width
                } else {
                    (ready.min(desired) as usize * width) / desired as usize
                };
                format!(
                    "\r\x1b[2Kversion {n} [{}{}] {ready}/{desired} ready {}",
                    "#".repeat(filled),
                    "-".repeat(width - filled),
                    waiting.first().cloned().unwrap_or_default()
                )
            } else {
                let mut l = format!("version {n}: {ready}/{desired} instances ready");
                if let Some(w) = waiting.first() {
                    l.push_str(&format!(" ({w})"));
                }
                l
            };
            if line != last {
                if tty {
                    print!("{line}");
                    let _ = std::io::Write::flush(&mut std::io::stdout());
                } else {
                    println!("{line}");
                }
                last = line;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
