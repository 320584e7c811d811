//! `glint up FILE`: apply the file and run the conductor in the foreground,
//! showing live status; Ctrl-C drains and stops every instance, then exits.
//! A second Ctrl-C exits at once, leaving instances for the next conductor
//! to adopt.
//!
//! On a terminal the status is redrawn in place; otherwise (a pipe, a CI
//! log) events are printed one per line as they happen.

use crate::cli::{Global, UpArgs};
use crate::commands::conductor::{print_new_events, tail_events};
use crate::common::{CmdResult, Paint, age_of, open_store};
use crate::output::{EXIT_OK, stdout_is_terminal};
use glint_conductor::Status;
use glint_conductor::decide::MemberPhase;
use glint_store::{EventFilter, Store};
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::AtomicI64;
use std::time::Duration;

/// Runs `glint up`.
pub fn run(global: &Global, args: UpArgs) -> i32 {
    body(global, args).unwrap_or_else(|f| f.0)
}

fn body(global: &Global, args: UpArgs) -> CmdResult {
    // Everything is checked before anything starts.
    let resolved = crate::resolve::resolve(global, &args.file, &args.policies)?;
    crate::compile::refuse_unenforced(&resolved.version.env, args.guards.allow_unenforced)?;
    let store: Arc<dyn Store> = Arc::new(open_store(global)?);
    let paint = Paint::stdout(global);
    let cursor = Arc::new(AtomicI64::new(
        store
            .events(&EventFilter {
                limit: Some(1),
                ..Default::default()
            })
            .ok()
            .and_then(|e| e.last().map(|e| e.seq))
            .unwrap_or(0),
    ));
    let rt = crate::common::runtime()?;
    rt.block_on(async {
        // Take the lock before recording, so that a refused `up` changes nothing.
        let plan = crate::commands::plan::compute(Some(store.as_ref()), &resolved.version)?;
        let running = crate::daemon::start(
            global,
            store.clone(),
            glint_store::ConductorMode::Up,
            &args.listen,
        )
        .await?;
        if let Some((addr, tls)) = running.listening {
            let scheme = if tls { "https" } else { "http" };
            println!("API and dashboard on {scheme}://{addr}/");
        }
        let applied = match glint_conductor::ops::apply(
            store.as_ref(),
            resolved.version,
            args.guards.options(),
        ) {
            Ok(a) => a,
            Err(e) => {
                running.stop(false).await;
                return Err(crate::common::fail_op(&e));
            }
        };
        if applied.new {
            print!("{}", crate::commands::plan::render(&plan, paint));
            println!("Recorded version {}.", applied.version.number);
        } else {
            println!(
                "Running version {} (no changes).",
                applied.version.number
            );
        }
        running.handle.poke();
        let interactive = stdout_is_terminal();
        let mut status = running.handle.status();
        let display = {
            let store = store.clone();
            let cursor = cursor.clone();
            tokio::spawn(async move {
                if interactive {
                    loop {
                        let s = status.borrow_and_update().clone();
                        draw(store.as_ref(), &s, paint);
                        tokio::select! {
                            _ = status.changed() => {}
                            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                        }
                    }
                } else {
                    tail_events(store, cursor, paint).await;
                }
            })
        };
        crate::daemon::stop_requested().await;
        display.abort();
        if interactive {
            println!();
        }
        println!(
            "Stopping: draining and terminating every instance (Ctrl-C again to exit now and leave them running)…"
        );
        let stop = running.stop(true);
        tokio::select! {
            _ = stop => {}
            _ = tokio::signal::ctrl_c() => {
                println!("Exiting now; the next conductor will adopt the instances still running.");
                return Ok(EXIT_OK);
            }
        }
        if !interactive {
            print_new_events(store.as_ref(), &cursor, paint);
        }
        println!("Stopped.");
        Ok(EXIT_OK)
    })
}

/// Redraws the live status in place.
fn draw(store: &dyn Store, s: &Status, paint: Paint) {
    let mut out = String::from("\x1b[H\x1b[2J");
    let state = if s.converged {
        paint.green("converged")
    } else {
        paint.yellow("converging")
    };
    out.push_str(&format!(
        "{} version {} · {state} · up {}s\n\n",
        paint.bold("glint up"),
        s.version
            .map(|v| v.to_string())
            .unwrap_or_else(|| "-".into()),
        s.uptime_s
    ));
    for e in &s.endpoints {
        let state = if e.listening {
            paint.green(&format!("listening, {} backends", e.backends.len()))
        } else {
            paint.red(e.error.as_deref().unwrap_or("starting"))
        };
        out.push_str(&format!(
            "endpoint {} http://{} → service {} ({state}; {} requests, {} failed)\n",
            paint.bold(e.name.as_str()),
            e.listen,
            e.service,
            e.requests,
            e.failures
        ));
    }
    out.push('\n');
    for svc in &s.services {
        out.push_str(&format!(
            "service {} {}/{} ready\n",
            paint.bold(svc.name.as_str()),
            svc.ready_current,
            svc.desired
        ));
        if let Some(b) = &svc.backoff {
            out.push_str(&format!(
                "  {}\n",
                paint.red(&format!("launches held back: {b}"))
            ));
        }
        for i in &svc.instances {
            let phase = match i.phase {
                MemberPhase::Healthy => paint.green("healthy"),
                MemberPhase::Failed => paint.red("failed"),
                other => paint.yellow(&other.to_string()),
            };
            out.push_str(&format!(
                "  {:<16} v{:<3} {:<20} {:>6}  {}\n",
                i.id,
                i.version,
                phase,
                age_of(i.created_at),
                i.addr.map(|a| a.to_string()).unwrap_or_default()
            ));
        }
    }
    out.push_str("\nRecent events:\n");
    if let Ok(events) = store.events(&EventFilter {
        limit: Some(8),
        ..Default::default()
    }) {
        for e in events {
            out.push_str(&format!("  {}\n", crate::commands::events::line(&e, paint)));
        }
    }
    out.push_str(&format!("\n{}\n", paint.dim("Ctrl-C stops everything.")));
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(out.as_bytes());
    let _ = stdout.flush();
}
