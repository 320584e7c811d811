//! `glint incidents [--open] [-n N] [-o json]` and `glint incidents resolve
//! ID`: the incident records of this data directory.
//!
//! Listing reads the store read-only and writes nothing. An incident is one
//! record per thing found out of place (an instance that drifted, a
//! container or network changed by hand), with its first and last sighting
//! and how many times it was seen (see `glint_store::incidents`); the
//! events of each occurrence stay in `glint events`. `resolve` marks an
//! open incident (one the conductor only reported) resolved, with who did.

use crate::cli::{Global, IncidentsArgs, IncidentsCommand, OutputFormat};
use crate::common::{
    CmdResult, Paint, Table, age_of, fail, fail_io, open_existing_store, open_store_to_read,
    print_json,
};
use crate::output::{EXIT_FAILED, EXIT_OK, inert};
use glint_store::prelude::*;
use glint_store::{IncidentFilter, IncidentRecord, IncidentState};

/// Runs `glint incidents`.
pub fn run(global: &Global, args: IncidentsArgs) -> i32 {
    let r = match args.command {
        Some(IncidentsCommand::Resolve { id }) => resolve(global, id),
        None => list(global, &args),
    };
    r.unwrap_or_else(|f| f.0)
}

/// The JSON shape: the records, with their dedup keys.
#[derive(Debug, serde::Serialize)]
struct Listing<'a> {
    incidents: Vec<Entry<'a>>,
}

#[derive(Debug, serde::Serialize)]
struct Entry<'a> {
    #[serde(flatten)]
    record: &'a IncidentRecord,
    dedup_key: String,
}

fn list(global: &Global, args: &IncidentsArgs) -> CmdResult {
    let filter = IncidentFilter {
        state: args.open.then_some(IncidentState::Open),
        limit: args.limit,
    };
    let records = match open_store_to_read(global)? {
        Some(store) => store
            .incidents(filter)
            .map_err(|e| fail_io("cannot read incidents", &e))?,
        None => Vec::new(),
    };
    if args.output.output == OutputFormat::Json {
        print_json(&Listing {
            incidents: records
                .iter()
                .map(|r| Entry {
                    record: r,
                    dedup_key: r.dedup_key(),
                })
                .collect(),
        });
        return Ok(EXIT_OK);
    }
    if records.is_empty() {
        println!(
            "{}",
            if args.open {
                "No open incidents."
            } else {
                "No incidents."
            }
        );
        return Ok(EXIT_OK);
    }
    let paint = Paint::stdout(global);
    let mut t = Table::new(
        &[
            "ID", "STATE", "KIND", "SUBJECT", "SEEN", "LAST", "FOUND", "ACTION",
        ],
        paint,
    );
    for r in &records {
        let state = match r.state {
            IncidentState::Open => paint.red("open"),
            IncidentState::Resolved => paint.green("resolved"),
        };
        t.row(vec![
            r.id.to_string(),
            state,
            r.kind.clone(),
            inert(&r.subject).into_owned(),
            format!("{}×", r.count),
            format!("{} ago", age_of(r.last_seen)),
            inert(&r.found).into_owned(),
            inert(&r.action).into_owned(),
        ]);
    }
    print!("{}", t.render());
    Ok(EXIT_OK)
}

fn resolve(global: &Global, id: i64) -> CmdResult {
    let Some(store) = open_existing_store(global)? else {
        return Err(fail(
            EXIT_FAILED,
            format_args!("there is no incident {id}: this data directory has no store yet"),
        ));
    };
    let before = store
        .incident(id)
        .map_err(|e| fail_io("cannot read incidents", &e))?;
    let Some(before) = before else {
        return Err(fail(
            EXIT_FAILED,
            format_args!("there is no incident {id}; `glint incidents` lists them"),
        ));
    };
    if before.state == IncidentState::Resolved {
        println!("Incident {id} is already resolved.");
        return Ok(EXIT_OK);
    }
    store
        .resolve_incident(id, &crate::common::caller())
        .map_err(|e| fail_io("cannot resolve the incident", &e))?;
    println!(
        "Resolved incident {id} ({} of {}).",
        before.kind,
        inert(&before.subject)
    );
    Ok(EXIT_OK)
}
