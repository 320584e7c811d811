//! Incidents: first-class records of what was found out of place (drift
//! of an instance, a hand-made change to something Glint owns, a foreign
//! container), what the conductor did about it, and whether it is over.
//!
//! The event log says *that* something happened, once per occurrence (and
//! rate-limited); an incident is the thing an operator follows up: one row
//! per incident, with its first and last sighting and how many times it was
//! seen. Repeats are grouped by a *dedup key* — the incident's kind and
//! subject (`instance-drift` of `web-abc`): an occurrence whose key matches
//! an incident last seen less than [`DEDUP_WINDOW_MS`] ago updates that
//! incident (count, last seen, what was found and done, state) instead of
//! opening a new one, so a hand-made change reverted every second is one
//! incident, not thousands.
//!
//! An occurrence that was put right (`resolved`: the drifted instance
//! replaced, the rule removed) leaves its incident `resolved`; one that was
//! only reported (`on_exec = report`) leaves it `open` until an operator
//! resolves it (`glint incidents resolve ID`) or a later occurrence is put
//! right.

use crate::StoreError;
use crate::sqlite::SqliteStore;
use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

/// Occurrences of one dedup key within this long of the last are one
/// incident (ten minutes).
pub const DEDUP_WINDOW_MS: i64 = 10 * 60 * 1000;

/// Whether an incident needs someone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentState {
    /// Found and not put right (reported only), or not yet acknowledged.
    Open,
    /// Put right by the conductor, or resolved by an operator.
    Resolved,
}

impl IncidentState {
    /// `open` or `resolved`.
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentState::Open => "open",
            IncidentState::Resolved => "resolved",
        }
    }

    fn parse(s: &str) -> Option<IncidentState> {
        match s {
            "open" => Some(IncidentState::Open),
            "resolved" => Some(IncidentState::Resolved),
            _ => None,
        }
    }
}

impl std::fmt::Display for IncidentState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One occurrence, as the conductor reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewIncident {
    /// What kind of incident (`instance-drift`, `provider-drift`,
    /// `firewall-drift`): a stable word.
    pub kind: String,
    /// What it concerns (an instance id, a container, a table).
    pub subject: String,
    /// What was found, as it was found (the change as the kernel or the
    /// provider reported it).
    pub found: String,
    /// What the conductor did.
    pub action: String,
    /// Whether that put things right.
    pub resolved: bool,
    /// The event that recorded this occurrence, when one was written.
    pub event: Option<i64>,
}

/// An incident as `glint incidents` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentRecord {
    /// Its number (1, 2, ...).
    pub id: i64,
    /// Its kind (see [`NewIncident::kind`]).
    pub kind: String,
    /// What it concerns.
    pub subject: String,
    /// What was found at the last occurrence.
    pub found: String,
    /// What was done at the last occurrence.
    pub action: String,
    /// Open or resolved.
    pub state: IncidentState,
    /// First occurrence (ms since the epoch).
    pub first_seen: i64,
    /// Last occurrence (ms since the epoch).
    pub last_seen: i64,
    /// How many occurrences.
    pub count: u64,
    /// When it was resolved (ms since the epoch), if it is.
    pub resolved_at: Option<i64>,
    /// Who resolved it by hand, if someone did.
    pub resolved_by: Option<String>,
    /// The event of the last occurrence, if one was written.
    pub last_event: Option<i64>,
}

impl IncidentRecord {
    /// The key repeats are grouped by (and that notification sinks
    /// deduplicate on): `kind:subject`.
    pub fn dedup_key(&self) -> String {
        format!("{}:{}", self.kind, self.subject)
    }
}

/// Which incidents to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IncidentFilter {
    /// Only those in this state.
    pub state: Option<IncidentState>,
    /// At most this many, newest first (0: all).
    pub limit: usize,
}

/// Incidents. See the module documentation.
pub trait Incidents {
    /// Records an occurrence: updates the incident of its dedup key last
    /// seen within [`DEDUP_WINDOW_MS`], or opens a new one. Returns the
    /// incident as it is now and whether it is new.
    fn record_incident(&self, new: NewIncident) -> Result<(IncidentRecord, bool), StoreError>;

    /// Incidents, newest (by last occurrence) first.
    fn incidents(&self, filter: IncidentFilter) -> Result<Vec<IncidentRecord>, StoreError>;

    /// One incident.
    fn incident(&self, id: i64) -> Result<Option<IncidentRecord>, StoreError>;

    /// Marks an incident resolved by `by`; `None` when there is no such
    /// incident. Resolving a resolved incident changes nothing.
    fn resolve_incident(&self, id: i64, by: &str) -> Result<Option<IncidentRecord>, StoreError>;
}

const COLUMNS: &str = "id, kind, subject, found, action, state, first_seen, last_seen, count, resolved_at, resolved_by, last_event";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(IncidentRecord, String)> {
    let state: String = r.get(5)?;
    Ok((
        IncidentRecord {
            id: r.get(0)?,
            kind: r.get(1)?,
            subject: r.get(2)?,
            found: r.get(3)?,
            action: r.get(4)?,
            state: IncidentState::Open,
            first_seen: r.get(6)?,
            last_seen: r.get(7)?,
            count: u64::try_from(r.get::<_, i64>(8)?).unwrap_or(0),
            resolved_at: r.get(9)?,
            resolved_by: r.get(10)?,
            last_event: r.get(11)?,
        },
        state,
    ))
}

impl SqliteStore {
    fn finish_incident(
        &self,
        what: &'static str,
        (mut rec, state): (IncidentRecord, String),
    ) -> Result<IncidentRecord, StoreError> {
        rec.state = IncidentState::parse(&state)
            .ok_or_else(|| self.corrupt(what, format!("incident state {state:?}")))?;
        Ok(rec)
    }

    fn incident_in(
        &self,
        conn: &rusqlite::Connection,
        what: &'static str,
        id: i64,
    ) -> Result<Option<IncidentRecord>, StoreError> {
        let found = conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM incidents WHERE id = ?1"),
                [id],
                row,
            )
            .optional()
            .map_err(|e| self.err(what, e))?;
        found.map(|r| self.finish_incident(what, r)).transpose()
    }
}

impl Incidents for SqliteStore {
    fn record_incident(&self, new: NewIncident) -> Result<(IncidentRecord, bool), StoreError> {
        let what = "cannot record an incident";
        let now = self.now();
        let state = if new.resolved {
            IncidentState::Resolved
        } else {
            IncidentState::Open
        };
        self.write(what, |tx| {
            let recent: Option<i64> = tx
                .query_row(
                    "SELECT id FROM incidents WHERE kind = ?1 AND subject = ?2 AND last_seen >= ?3
                     ORDER BY last_seen DESC, id DESC LIMIT 1",
                    params![new.kind, new.subject, now - DEDUP_WINDOW_MS],
                    |r| r.get(0),
                )
                .optional()
                .map_err(|e| self.err(what, e))?;
            let resolved_at = new.resolved.then_some(now);
            let (id, fresh) = match recent {
                Some(id) => {
                    tx.execute(
                        "UPDATE incidents SET found = ?2, action = ?3, state = ?4, last_seen = ?5,
                           count = count + 1,
                           resolved_at = CASE WHEN ?4 = 'resolved' THEN ?6 ELSE NULL END,
                           resolved_by = NULL,
                           last_event = COALESCE(?7, last_event)
                         WHERE id = ?1",
                        params![
                            id,
                            new.found,
                            new.action,
                            state.as_str(),
                            now,
                            resolved_at,
                            new.event
                        ],
                    )
                    .map_err(|e| self.err(what, e))?;
                    (id, false)
                }
                None => {
                    tx.execute(
                        "INSERT INTO incidents(kind, subject, found, action, state, first_seen, last_seen, count, resolved_at, resolved_by, last_event)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, 1, ?7, NULL, ?8)",
                        params![
                            new.kind,
                            new.subject,
                            new.found,
                            new.action,
                            state.as_str(),
                            now,
                            resolved_at,
                            new.event
                        ],
                    )
                    .map_err(|e| self.err(what, e))?;
                    (tx.last_insert_rowid(), true)
                }
            };
            let rec = self
                .incident_in(tx, what, id)?
                .ok_or_else(|| self.corrupt(what, "the incident just written is missing"))?;
            Ok((rec, fresh))
        })
    }

    fn incidents(&self, filter: IncidentFilter) -> Result<Vec<IncidentRecord>, StoreError> {
        let what = "cannot read incidents";
        let conn = self.lock();
        let limit = if filter.limit == 0 {
            -1
        } else {
            i64::try_from(filter.limit).unwrap_or(i64::MAX)
        };
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {COLUMNS} FROM incidents WHERE (?1 IS NULL OR state = ?1)
                 ORDER BY last_seen DESC, id DESC LIMIT ?2"
            ))
            .map_err(|e| self.err(what, e))?;
        let rows = stmt
            .query_map(params![filter.state.map(|s| s.as_str()), limit], row)
            .map_err(|e| self.err(what, e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.err(what, e))?;
        rows.into_iter()
            .map(|r| self.finish_incident(what, r))
            .collect()
    }

    fn incident(&self, id: i64) -> Result<Option<IncidentRecord>, StoreError> {
        let conn = self.lock();
        self.incident_in(&conn, "cannot read an incident", id)
    }

    fn resolve_incident(&self, id: i64, by: &str) -> Result<Option<IncidentRecord>, StoreError> {
        let what = "cannot resolve an incident";
        let now = self.now();
        self.write(what, |tx| {
            tx.execute(
                "UPDATE incidents SET state = 'resolved', resolved_at = ?2, resolved_by = ?3
                 WHERE id = ?1 AND state = 'open'",
                params![id, now, by],
            )
            .map_err(|e| self.err(what, e))?;
            self.incident_in(tx, what, id)
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicI64, Ordering};

    /// A clock the test moves.
    #[derive(Debug)]
    struct ManualClock(AtomicI64);

    impl ManualClock {
        fn new(ms: i64) -> ManualClock {
            ManualClock(AtomicI64::new(ms))
        }
        fn advance(&self, ms: i64) {
            self.0.fetch_add(ms, Ordering::SeqCst);
        }
    }

    impl crate::Clock for ManualClock {
        fn now_ms(&self) -> i64 {
            self.0.load(Ordering::SeqCst)
        }
    }

    fn occurrence(subject: &str, resolved: bool) -> NewIncident {
        NewIncident {
            kind: "instance-drift".into(),
            subject: subject.into(),
            found: "a process entered web-1 (pid 42)".into(),
            action: "replacing it".into(),
            resolved,
            event: None,
        }
    }

    #[test]
    fn repeats_within_the_window_are_one_incident_and_later_ones_a_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(1_000_000));
        let s = SqliteStore::open_with_clock(dir.path(), clock.clone()).unwrap();
        let (a, fresh) = s.record_incident(occurrence("web-1", true)).unwrap();
        assert!(fresh);
        assert_eq!(a.state, IncidentState::Resolved);
        clock.advance(60_000);
        let (b, fresh) = s.record_incident(occurrence("web-1", false)).unwrap();
        assert!(!fresh, "a repeat within the window is the same incident");
        assert_eq!(b.id, a.id);
        assert_eq!(b.count, 2);
        assert_eq!(b.first_seen, 1_000_000);
        assert_eq!(b.last_seen, 1_060_000);
        assert_eq!(b.state, IncidentState::Open, "the last occurrence decides");
        assert_eq!(b.resolved_at, None);
        // Another subject is another incident.
        let (c, fresh) = s.record_incident(occurrence("web-2", true)).unwrap();
        assert!(fresh);
        assert_ne!(c.id, a.id);
        // Past the window, the same key opens a new one.
        clock.advance(DEDUP_WINDOW_MS + 1);
        let (d, fresh) = s.record_incident(occurrence("web-1", true)).unwrap();
        assert!(fresh);
        assert_ne!(d.id, a.id);
        let all = s.incidents(IncidentFilter::default()).unwrap();
        assert_eq!(
            all.iter().map(|i| i.id).collect::<Vec<_>>(),
            vec![d.id, c.id, a.id],
            "newest first"
        );
        let open = s
            .incidents(IncidentFilter {
                state: Some(IncidentState::Open),
                limit: 0,
            })
            .unwrap();
        assert_eq!(open.iter().map(|i| i.id).collect::<Vec<_>>(), vec![a.id]);
    }

    #[test]
    fn an_operator_resolves_an_open_incident_and_it_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let id = {
            let s = SqliteStore::open(dir.path()).unwrap();
            let (a, _) = s.record_incident(occurrence("web-1", false)).unwrap();
            let r = s.resolve_incident(a.id, "alice").unwrap().unwrap();
            assert_eq!(r.state, IncidentState::Resolved);
            assert_eq!(r.resolved_by.as_deref(), Some("alice"));
            assert!(s.resolve_incident(999, "alice").unwrap().is_none());
            a.id
        };
        let s = SqliteStore::open(dir.path()).unwrap();
        let r = s.incident(id).unwrap().unwrap();
        assert_eq!(r.state, IncidentState::Resolved);
        assert_eq!(r.dedup_key(), "instance-drift:web-1");
    }
}
