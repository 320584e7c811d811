//! `glint notifications [--sink S] [--state pending|delivered|failed] [-n N]
//! [-o json]`: the notification outbox of this data directory.
//!
//! Reads the store read-only and writes nothing. Each row is one message
//! for one `notify` sink (see `glint_store::notifications`): what it
//! reports, how many attempts were made, and why the last one did not
//! deliver it. The JSON form adds per-sink counts. Payloads are not shown
//! in the table (they are in the JSON); no payload holds a secret.

use crate::cli::{Global, NotificationsArgs, OutputFormat};
use crate::common::{CmdResult, Paint, Table, age_of, fail_io, open_store_to_read, print_json};
use crate::output::{EXIT_OK, inert};
use glint_store::prelude::*;
use glint_store::{NotificationCounts, NotificationFilter, NotificationRecord, NotificationState};

/// The JSON shape.
#[derive(Debug, serde::Serialize)]
struct Listing {
    counts: Vec<NotificationCounts>,
    notifications: Vec<NotificationRecord>,
}

/// Runs `glint notifications`.
pub fn run(global: &Global, args: NotificationsArgs) -> i32 {
    list(global, &args).unwrap_or_else(|f| f.0)
}

fn list(global: &Global, args: &NotificationsArgs) -> CmdResult {
    let filter = NotificationFilter {
        sink: args.sink.clone(),
        state: match args.state.as_deref() {
            Some("pending") => Some(NotificationState::Pending),
            Some("delivered") => Some(NotificationState::Delivered),
            Some("failed") => Some(NotificationState::Failed),
            _ => None,
        },
        limit: args.limit,
    };
    let (counts, records) = match open_store_to_read(global)? {
        Some(store) => (
            store
                .notification_counts()
                .map_err(|e| fail_io("cannot read notifications", &e))?,
            store
                .notifications(&filter)
                .map_err(|e| fail_io("cannot read notifications", &e))?,
        ),
        None => (Vec::new(), Vec::new()),
    };
    if args.output.output == OutputFormat::Json {
        print_json(&Listing {
            counts,
            notifications: records,
        });
        return Ok(EXIT_OK);
    }
    if records.is_empty() {
        println!("No notifications.");
        return Ok(EXIT_OK);
    }
    let paint = Paint::stdout(global);
    let mut t = Table::new(
        &[
            "ID",
            "SINK",
            "STATE",
            "TOPIC",
            "EVENT",
            "ATTEMPTS",
            "CREATED",
            "LAST ERROR",
        ],
        paint,
    );
    for r in &records {
        let state = match r.state {
            NotificationState::Pending => paint.yellow("pending"),
            NotificationState::Delivered => paint.green("delivered"),
            NotificationState::Failed => paint.red("failed"),
        };
        t.row(vec![
            r.id.to_string(),
            inert(&r.sink).into_owned(),
            state,
            r.topic.clone(),
            r.event_id.to_string(),
            r.attempts.to_string(),
            format!("{} ago", age_of(r.created_at)),
            inert(r.last_error.as_deref().unwrap_or("")).into_owned(),
        ]);
    }
    print!("{}", t.render());
    for c in &counts {
        if c.failed > 0 {
            println!(
                "{} {}: {} failed for good, {} pending, {} delivered",
                paint.red("!"),
                inert(&c.sink),
                c.failed,
                c.pending,
                c.delivered
            );
        }
    }
    Ok(EXIT_OK)
}
