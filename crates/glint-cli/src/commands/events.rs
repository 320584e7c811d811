//! `glint events`: the event log, optionally followed.
//!
//! Only reads (a read-only or full data directory is fine). Event messages
//! quote what instances and files said, so the text form makes them inert
//! ([`crate::output::inert`]); `--service` must name a service the data
//! directory knows.

use crate::cli::{EventsArgs, Global, OutputFormat};
use crate::common::{
    CmdResult, Paint, fail, known_service, open_store_to_read, print_json, time_of,
};
use crate::output::{EXIT_FAILED, EXIT_OK, inert};
use glint_store::prelude::*;
use glint_store::{Event, EventFilter, Severity};
use std::time::Duration;

/// Runs `glint events`.
pub fn run(global: &Global, args: EventsArgs) -> i32 {
    body(global, args).unwrap_or_else(|f| f.0)
}

fn body(global: &Global, args: EventsArgs) -> CmdResult {
    let json = args.output.output == OutputFormat::Json;
    if let Some(client) = crate::remote::client(global) {
        return remote(global, &client?, &args);
    }
    let Some(store) = open_store_to_read(global)? else {
        if let Some(service) = &args.service {
            return Err(fail(
                EXIT_FAILED,
                format_args!(
                    "there is no service `{service}`: nothing has been applied in this data directory yet"
                ),
            ));
        }
        if json {
            print_json(&serde_json::json!({ "events": [] }));
        } else {
            println!("No events yet.");
        }
        return Ok(EXIT_OK);
    };
    if let Some(service) = &args.service {
        known_service(&store, service)?;
    }
    let mut filter = EventFilter {
        service: args.service.clone(),
        limit: Some(args.limit),
        ..Default::default()
    };
    let read = |f: &EventFilter| {
        store
            .events(f)
            .map_err(|e| crate::common::fail_io("cannot read events", &e))
    };
    let events = read(&filter)?;
    let paint = Paint::stdout(global);
    if json && !args.follow {
        print_json(&serde_json::json!({ "events": events }));
        return Ok(EXIT_OK);
    }
    let print = |e: &Event| {
        if json {
            // One JSON object per line when following.
            if let Ok(s) = serde_json::to_string(e) {
                println!("{s}");
            }
        } else {
            println!("{}", line(e, paint));
        }
    };
    for e in &events {
        print(e);
    }
    if !args.follow {
        if events.is_empty() && !json {
            println!("No events yet.");
        }
        return Ok(EXIT_OK);
    }
    filter.after = events.last().map(|e| e.seq).or(Some(0));
    filter.limit = None;
    loop {
        std::thread::sleep(Duration::from_millis(200));
        for e in read(&filter)? {
            print(&e);
            filter.after = Some(e.seq);
        }
    }
}

/// `glint events` against a remote conductor: the same output, the follow
/// mode reading its event stream.
fn remote(
    global: &Global,
    client: &glint_conductor::http::client::Client,
    args: &EventsArgs,
) -> CmdResult {
    use glint_conductor::http::client::encode;
    let json = args.output.output == OutputFormat::Json;
    let service = args
        .service
        .as_deref()
        .map(|s| format!("&service={}", encode(s)))
        .unwrap_or_default();
    let v: serde_json::Value = crate::remote::get(
        client,
        &format!("/v1/events?limit={}{service}", args.limit.clamp(1, 1000)),
    )?;
    let events: Vec<Event> = serde_json::from_value(v["events"].clone())
        .map_err(|e| fail(EXIT_FAILED, format_args!("unexpected answer: {e}")))?;
    let paint = Paint::stdout(global);
    if json && !args.follow {
        print_json(&serde_json::json!({ "events": events }));
        return Ok(EXIT_OK);
    }
    let print = |e: &Event| {
        if json {
            if let Ok(s) = serde_json::to_string(e) {
                println!("{s}");
            }
        } else {
            println!("{}", line(e, paint));
        }
    };
    for e in &events {
        print(e);
    }
    if !args.follow {
        if events.is_empty() && !json {
            println!("No events yet.");
        }
        return Ok(EXIT_OK);
    }
    let after = events.last().map(|e| e.seq).unwrap_or(0);
    let path = format!("/v1/events/stream?after={after}{service}");
    crate::remote::run(client.sse(&path, |_, data| {
        if let Ok(e) = serde_json::from_str::<Event>(data) {
            print(&e);
        }
        true
    }))?;
    Ok(EXIT_OK)
}

/// One event as a line: time, kind, message.
pub fn line(e: &Event, paint: Paint) -> String {
    let kind = format!("{:<24}", e.kind);
    let kind = match e.severity {
        Severity::Info => paint.dim(&kind),
        Severity::Warning => paint.yellow(&kind),
        Severity::Incident => paint.red(&kind),
    };
    format!("{}  {kind}  {}", time_of(e.at), inert(&e.message))
}
