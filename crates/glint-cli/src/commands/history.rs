//! `glint history`: the versions of the environment, oldest first.

use crate::cli::{Global, HistoryArgs, OutputFormat};
use crate::common::{CmdResult, Paint, Table, age_of, open_store_to_read, print_json, time_of};
use crate::output::EXIT_OK;
use glint_store::prelude::*;

/// Runs `glint history`.
pub fn run(global: &Global, args: HistoryArgs) -> i32 {
    body(global, args).unwrap_or_else(|f| f.0)
}

fn body(global: &Global, args: HistoryArgs) -> CmdResult {
    let versions: Vec<glint_store::VersionSummary> =
        if let Some(client) = crate::remote::client(global) {
            let v: serde_json::Value = crate::remote::get(&client?, "/v1/history")?;
            serde_json::from_value(v["versions"].clone()).map_err(|e| {
                crate::common::fail(
                    crate::output::EXIT_FAILED,
                    format_args!("unexpected answer: {e}"),
                )
            })?
        } else {
            let Some(store) = open_store_to_read(global)? else {
                return nothing(args.output.output);
            };
            store
                .list_versions()
                .map_err(|e| crate::common::fail_io("cannot read versions", &e))?
        };
    if args.output.output == OutputFormat::Json {
        print_json(&serde_json::json!({ "versions": versions }));
        return Ok(EXIT_OK);
    }
    if versions.is_empty() {
        return nothing(args.output.output);
    }
    let paint = Paint::stdout(global);
    let latest = versions.last().map(|v| v.number);
    let mut t = Table::new(
        &["VERSION", "CREATED", "AGE", "KIND", "HASH", "ROLLOUT"],
        paint,
    );
    for v in &versions {
        let mut number = v.number.to_string();
        if Some(v.number) == latest {
            number = paint.bold(&format!("{number} (current)"));
        }
        t.row(vec![
            number,
            time_of(v.created_at),
            age_of(v.created_at),
            v.kind.to_string(),
            v.hash.short().to_owned(),
            match v.outcome {
                Some(glint_store::Outcome::Converged) => paint.green(&format!(
                    "converged in {}",
                    v.outcome_detail.as_deref().unwrap_or("?")
                )),
                Some(o @ (glint_store::Outcome::Failed | glint_store::Outcome::RolledBack)) => {
                    paint.red(&format!(
                        "{o}: {}",
                        v.outcome_detail.as_deref().unwrap_or("")
                    ))
                }
                Some(o) => o.to_string(),
                None => paint.yellow("in progress"),
            },
        ]);
    }
    print!("{}", t.render());
    Ok(EXIT_OK)
}

fn nothing(format: OutputFormat) -> CmdResult {
    if format == OutputFormat::Json {
        print_json(&serde_json::json!({ "versions": [] }));
    } else {
        println!("No versions yet: `glint apply FILE` or `glint up FILE` records the first one.");
    }
    Ok(EXIT_OK)
}
