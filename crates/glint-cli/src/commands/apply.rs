//! `glint apply FILE`: records a new version and asks the conductor to
//! converge to it.
//!
//! Everything is checked before anything changes: the file compiles (with its
//! policies), every image builds, the operations layer refuses an apply that
//! would silently make the environment vanish, and only then is the version
//! recorded, in one transaction. The conductor picks the version up from the
//! store's change feed (an apply also pokes it over its socket).

use crate::cli::{ApplyArgs, Global};
use crate::common::{CmdResult, Paint, fail, fail_io, fail_op, open_store, print_json};
use crate::output::{EXIT_FAILED, EXIT_OK};
use glint_conductor::Status;
use glint_conductor::lock::ConductorLock;
use glint_store::{Outcome, Store, VersionRecord};
use std::time::{Duration, Instant};

/// Runs `glint apply`.
pub fn run(global: &Global, args: ApplyArgs) -> i32 {
    body(global, args).unwrap_or_else(|f| f.0)
}

fn body(global: &Global, args: ApplyArgs) -> CmdResult {
    let json = args.output.output == crate::cli::OutputFormat::Json;
    let paint = Paint::stdout(global);
    if let Some(client) = crate::remote::client(global) {
        return remote(global, &client?, args, paint);
    }
    let resolved = crate::resolve::resolve(global, &args.file, &args.policies)?;
    crate::compile::refuse_unenforced(&resolved.version.env, args.guards.allow_unenforced)?;
    let store = open_store(global)?;
    let plan = crate::commands::plan::compute(Some(&store), &resolved.version)?;
    let applied = glint_conductor::ops::apply(&store, resolved.version, args.guards.options())
        .map_err(|e| fail_op(&e))?;
    if json {
        print_json(&serde_json::json!({
            "version": applied.version.number,
            "new": applied.new,
            "superseded": applied.superseded,
            "plan": plan,
        }));
    } else if applied.new {
        print!("{}", crate::commands::plan::render(&plan, paint));
        println!(
            "\nRecorded version {}.",
            paint.bold(&applied.version.number.to_string())
        );
    } else {
        println!(
            "No changes: the file matches version {}.",
            applied.version.number
        );
    }
    after_record(
        global,
        &store,
        &applied.version,
        applied.new,
        args.wait,
        paint,
        json,
    )
}

/// `glint apply` against a remote conductor: compiled and built here, the
/// version recorded there (its images must be in its image store).
fn remote(
    global: &Global,
    client: &glint_conductor::http::client::Client,
    args: ApplyArgs,
    paint: Paint,
) -> CmdResult {
    use glint_conductor::http::routes::{AppliedReport, ApplyRequest, Candidate};
    let json = args.output.output == crate::cli::OutputFormat::Json;
    let resolved = crate::resolve::resolve(global, &args.file, &args.policies)?;
    let v = resolved.version;
    let candidate = Candidate {
        env: v.env,
        images: v.images,
        root: v.root.display().to_string(),
        sources: v.sources,
    };
    let plan: glint_conductor::plan::Plan = crate::remote::post(client, "/v1/plan", &candidate)?;
    let options = args.guards.options();
    let r: AppliedReport = crate::remote::post(
        client,
        "/v1/apply",
        &ApplyRequest {
            version: candidate,
            allow_retire_all: options.allow_retire_all,
            replace_environment: options.allow_other_environment,
        },
    )?;
    if json {
        print_json(&serde_json::json!({
            "version": r.version,
            "new": r.new,
            "superseded": r.superseded,
            "plan": plan,
        }));
    } else if r.new {
        print!("{}", crate::commands::plan::render(&plan, paint));
        println!("\nRecorded version {}.", paint.bold(&r.version.to_string()));
    } else {
        println!("No changes: the file matches version {}.", r.version);
    }
    if args.wait {
        return wait_remote(client, glint_model::VersionNumber(r.version), paint);
    }
    Ok(EXIT_OK)
}

/// Follows a version's rollout on a remote conductor until it has an
/// outcome: exit 0 when it converged, 1 otherwise.
pub fn wait_remote(
    client: &glint_conductor::http::client::Client,
    n: glint_model::VersionNumber,
    paint: Paint,
) -> CmdResult {
    let start = Instant::now();
    let mut last = String::new();
    loop {
        let h: serde_json::Value = crate::remote::get(client, "/v1/history")?;
        let versions: Vec<glint_store::VersionSummary> =
            serde_json::from_value(h["versions"].clone()).unwrap_or_default();
        if let Some(v) = versions.iter().find(|v| v.number == n)
            && let Some(o) = v.outcome
        {
            let detail = v.outcome_detail.clone().unwrap_or_default();
            return match o {
                Outcome::Converged => {
                    println!(
                        "{} ({detail}; waited {:.1}s).",
                        paint.green(&format!("Version {n} is live")),
                        start.elapsed().as_secs_f64()
                    );
                    Ok(EXIT_OK)
                }
                other => Err(fail(
                    EXIT_FAILED,
                    format_args!("version {n} did not converge: {other}: {detail}"),
                )),
            };
        }
        let status: Status = crate::remote::get(client, "/v1/status")?;
        let line = progress_line(n, &status);
        if line != last {
            println!("{line}");
            last = line;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// After a version is recorded: pokes the conductor and, with `wait`,
/// follows the rollout until it converges (exit 0) or fails or is rolled
/// back (exit 1).
pub fn after_record(
    global: &Global,
    store: &dyn Store,
    version: &VersionRecord,
    new: bool,
    wait: bool,
    paint: Paint,
    json: bool,
) -> CmdResult {
    let dir = crate::common::data_dir(global);
    if !ConductorLock::is_held(&dir) {
        let msg = format!(
            "No conductor is running for {}: start `glint conductor` (or use `glint up FILE`) to converge.",
            dir.display()
        );
        if json {
            eprintln!("{msg}");
        } else {
            println!("{msg}");
        }
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

/// One line of progress: per service, available new instances of the
/// declared count, with what the rollout waits for and what failed.
fn progress_line(n: glint_model::VersionNumber, status: &Status) -> String {
    let mut parts = Vec::new();
    for s in &status.services {
        if s.desired == 0 && s.instances.is_empty() {
            continue;
        }
        let mut p = format!("{} {}/{}", s.name, s.available.min(s.desired), s.desired);
        if let Some(w) = s.rollout.as_ref().and_then(|r| r.waiting.clone()) {
            p.push_str(&format!(" ({w})"));
        }
        if s.failed_new > 0 {
            p.push_str(&format!(
                "; {} new instance{} failed",
                s.failed_new,
                if s.failed_new == 1 { "" } else { "s" }
            ));
            if let Some(f) = &s.last_failure {
                p.push_str(&format!(", last: {f}"));
            }
        } else if let Some(b) = &s.backoff {
            p.push_str(&format!("; launches held back: {b}"));
        }
        parts.push(p);
    }
    format!("version {n}: {} available", parts.join(", "))
}

/// How long a stuck conductor is waited for before giving up.
const STUCK_GRACE: Duration = Duration::from_secs(5);

/// Follows a version's rollout: a progress line that is rewritten on a
/// terminal, a line per change otherwise. The outcome comes from the store
/// (the conductor records it), the progress from the conductor's live status.
fn wait_for(
    rt: &tokio::runtime::Runtime,
    socket: &std::path::Path,
    store: &dyn Store,
    version: &VersionRecord,
    paint: Paint,
) -> CmdResult {
    let start = Instant::now();
    let tty = crate::output::stdout_is_terminal();
    let mut last = String::new();
    let mut stuck_since: Option<Instant> = None;
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
        match rt.block_on(glint_conductor::api::status(socket)) {
            Ok(status) => {
                if let Some(why) = &status.stuck {
                    let since = *stuck_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= STUCK_GRACE {
                        if tty {
                            println!();
                        }
                        return Err(fail(
                            EXIT_FAILED,
                            format_args!(
                                "the conductor cannot make progress on version {n}: {why}; see `glint status`"
                            ),
                        ));
                    }
                } else {
                    stuck_since = None;
                }
                let line = progress_line(n, &status);
                if line != last {
                    if tty {
                        print!("\r\x1b[2K{line}");
                        let _ = std::io::Write::flush(&mut std::io::stdout());
                    } else {
                        println!("{line}");
                    }
                    last = line;
                }
            }
            Err(_) if !ConductorLock::is_held(&crate::common::data_dir_of_socket(socket)) => {
                if tty {
                    println!();
                }
                return Err(fail(
                    EXIT_FAILED,
                    format_args!(
                        "the conductor stopped before version {n} converged; start `glint conductor` to continue"
                    ),
                ));
            }
            Err(_) => {}
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
