//! `glint rollback [VERSION]`: records a new version whose content equals an
//! earlier one — the last good version unless a number is given; the
//! conductor replaces instances with the same health gating as any apply.
//! (A blue/green service whose old set is still kept switches back at once.)
//!
//! It shows the plan first and, on a terminal, asks before recording
//! (`--yes` skips the question; without a terminal nobody is asked).

use crate::cli::{Global, OutputFormat, RollbackArgs};
use crate::common::{CmdResult, Paint, fail, fail_op, open_existing_store, print_json};
use crate::output::{EXIT_FAILED, EXIT_OK, EXIT_USAGE};
use glint_conductor::plan::Plan;
use glint_model::VersionNumber;
use std::io::{BufRead, IsTerminal, Write};

/// Runs `glint rollback`.
pub fn run(global: &Global, args: RollbackArgs) -> i32 {
    body(global, args).unwrap_or_else(|f| f.0)
}

/// Asks on the terminal; `true` to go ahead.
fn confirm(to: Option<u64>) -> bool {
    let target = to
        .map(|n| format!("the content of version {n}"))
        .unwrap_or_else(|| "the last good version".into());
    print!("Roll the environment back to {target}? Type `yes` to go ahead: ");
    let _ = std::io::stdout().flush();
    let mut answer = String::new();
    if std::io::stdin().lock().read_line(&mut answer).is_err() {
        return false;
    }
    matches!(answer.trim(), "yes" | "y")
}

fn skip_question(args: &RollbackArgs) -> bool {
    args.yes
        || args.output.output == OutputFormat::Json
        || !(std::io::stdin().is_terminal() && std::io::stdout().is_terminal())
}

fn cancelled() -> CmdResult {
    Err(fail(EXIT_FAILED, "rollback cancelled: nothing was changed"))
}

fn show_plan(plan: &Plan, to: Option<u64>, paint: Paint) {
    if let Some(n) = to {
        println!("Rolling back to the content of version {n}.");
    }
    print!("{}", crate::commands::plan::render(plan, paint));
}

fn body(global: &Global, args: RollbackArgs) -> CmdResult {
    let json = args.output.output == OutputFormat::Json;
    let paint = Paint::stdout(global);
    let to = match &args.to {
        Some(v) => Some(v.parse::<VersionNumber>().map_err(|_| {
            fail(
                EXIT_USAGE,
                format_args!("`{v}` is not a version number (see `glint history`)"),
            )
        })?),
        None => None,
    };
    let request = glint_conductor::http::routes::RollbackRequest {
        to: to.map(|v| v.0),
    };
    if let Some(client) = crate::remote::client(global) {
        let client = client?;
        let preview: serde_json::Value =
            crate::remote::post(&client, "/v1/rollback/plan", &request)?;
        let restores = preview["restores"].as_u64();
        let plan: Option<Plan> = serde_json::from_value(preview["plan"].clone()).ok();
        if !json && let Some(p) = &plan {
            show_plan(p, restores, paint);
        }
        if !skip_question(&args) && !confirm(restores) {
            return cancelled();
        }
        let r: glint_conductor::http::routes::AppliedReport =
            crate::remote::post(&client, "/v1/rollback", &request)?;
        if json {
            print_json(
                &serde_json::json!({ "version": r.version, "restores": restores, "plan": plan }),
            );
        } else {
            println!(
                "Recorded version {} with the content of version {}.",
                paint.bold(&r.version.to_string()),
                restores.map(|n| n.to_string()).unwrap_or_default()
            );
        }
        if args.wait {
            return crate::commands::apply::wait_remote(&client, VersionNumber(r.version), paint);
        }
        return Ok(EXIT_OK);
    }
    let Some(store) = open_existing_store(global)? else {
        return Err(fail(
            EXIT_FAILED,
            "nothing has been applied yet: there is nothing to roll back",
        ));
    };
    let images = crate::commands::images::open_store(global)?;
    let candidate =
        glint_conductor::ops::rollback_candidate(&store, &images, to).map_err(|e| fail_op(&e))?;
    let restores = match candidate.kind {
        glint_store::VersionKind::Rollback(n) => Some(n.0),
        _ => None,
    };
    let plan = glint_conductor::ops::plan(&store, &candidate).map_err(|e| fail_op(&e))?;
    if !json {
        show_plan(&plan, restores, paint);
    }
    if !skip_question(&args) && !confirm(restores) {
        return cancelled();
    }
    let applied = glint_conductor::ops::record(&store, candidate).map_err(|e| fail_op(&e))?;
    if json {
        print_json(&serde_json::json!({
            "version": applied.version.number,
            "restores": restores,
            "plan": plan,
        }));
    } else {
        println!(
            "Recorded version {} with the content of version {}.",
            paint.bold(&applied.version.number.to_string()),
            restores.map(|n| n.to_string()).unwrap_or_default()
        );
    }
    crate::commands::apply::after_record(
        global,
        &store,
        &applied.version,
        true,
        args.wait,
        paint,
        json,
    )
    .map(|_| EXIT_OK)
}
