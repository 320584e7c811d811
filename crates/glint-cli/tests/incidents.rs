//! `glint incidents`: listing (text and JSON, open only) and resolving,
//! against a store holding incidents as the conductor records them. (That
//! the conductor records them is tested in `glint-conductor`'s tests and,
//! with a real `docker exec`, in `docker.rs`.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Ctx;
use glint_store::prelude::*;
use glint_store::{NewIncident, SqliteStore};
use serde_json::Value;

fn occurrence(subject: &str, resolved: bool) -> NewIncident {
    NewIncident {
        kind: "instance-drift".into(),
        subject: subject.into(),
        found: "docker exec ran `sh`\x1b[2J".into(),
        action: if resolved {
            "replacing the instance".into()
        } else {
            "reported only (on_exec = report)".into()
        },
        resolved,
        event: None,
    }
}

// Mutations caught: `--open` ignored, resolve not recorded or not
// persisted, an unknown id accepted, outside text printed raw.
#[test]
fn incidents_are_listed_and_an_open_one_is_resolved_by_hand() {
    let ctx = Ctx::new();
    assert_eq!(ctx.ok(&["incidents"]).trim(), "No incidents.");
    let empty: Value = serde_json::from_str(&ctx.ok(&["incidents", "-o", "json"])).unwrap();
    assert_eq!(empty["incidents"].as_array().unwrap().len(), 0);

    glint_store::prepare_data_dir(&ctx.data()).unwrap();
    let (open_id, resolved_id) = {
        let store = SqliteStore::open(&ctx.data()).unwrap();
        let (a, _) = store.record_incident(occurrence("api-1", false)).unwrap();
        store.record_incident(occurrence("api-1", false)).unwrap();
        let (b, _) = store.record_incident(occurrence("web-2", true)).unwrap();
        (a.id, b.id)
    };

    let all: Value = serde_json::from_str(&ctx.ok(&["incidents", "-o", "json"])).unwrap();
    let all = all["incidents"].as_array().unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0]["id"], resolved_id, "newest first");
    assert_eq!(all[1]["count"], 2);
    assert_eq!(all[1]["dedup_key"], "instance-drift:api-1");
    let open: Value =
        serde_json::from_str(&ctx.ok(&["incidents", "--open", "-o", "json"])).unwrap();
    let open = open["incidents"].as_array().unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0]["id"], open_id);

    let text = ctx.ok(&["incidents"]);
    assert!(text.contains("api-1") && text.contains("open"), "{text}");
    assert!(
        !text.contains('\x1b'),
        "outside text reaches the terminal inert: {text:?}"
    );

    let out = ctx.ok(&["incidents", "resolve", &open_id.to_string()]);
    assert!(
        out.contains(&format!("Resolved incident {open_id}")),
        "{out}"
    );
    assert_eq!(
        ctx.ok(&["incidents", "--open"]).trim(),
        "No open incidents."
    );
    let store = SqliteStore::open_read_only(&ctx.data()).unwrap().unwrap();
    let r = store.incident(open_id).unwrap().unwrap();
    assert!(r.resolved_by.is_some_and(|by| by.contains("uid")));
    let again = ctx.ok(&["incidents", "resolve", &open_id.to_string()]);
    assert!(again.contains("already resolved"), "{again}");

    let missing = ctx.run(&["incidents", "resolve", "999"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("there is no incident 999"),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );
}
