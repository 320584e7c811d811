//! The event sink: writes conductor events to the store with a rate limit.
//!
//! Events about one repeating cause (the same service crashing the same way,
//! the same provider unreachable, the same launch failing) are not written one
//! by one: each event has a *cause key* ([`ConductorEvent::cause_key`]);
//! within a window of [`WINDOW_MS`] at most [`BURST`] events of one key are
//! written, the rest are counted, and when the window ends one
//! `events.suppressed` event says how many were left out and what the last
//! one said. Events without a repeating cause (a version applied, a rollout
//! completed) are always written.
//!
//! A write that fails (the store refuses it) is logged, counted, and reported
//! with one `store.unavailable` event once writes succeed again.

use crate::events::ConductorEvent;
use glint_store::{Clock, EventKind, NewEvent, Severity, Store};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// How long a rate-limit window lasts.
pub const WINDOW_MS: i64 = 60_000;
/// How many events of one cause key are written per window.
pub const BURST: u32 = 3;

/// One cause key's window.
#[derive(Debug)]
struct Window {
    started: i64,
    written: u32,
    suppressed: u32,
    last: Option<NewEvent>,
}

/// The event of an incident's occurrence carries the incident (kind,
/// subject, what was found and done) in its details, under `incident`: what
/// notification sinks read (`reconcilers/notify.rs`).
fn with_incident(mut e: NewEvent, incident: Option<&glint_store::NewIncident>) -> NewEvent {
    let Some(i) = incident else { return e };
    let record = serde_json::json!({
        "kind": i.kind,
        "subject": i.subject,
        "found": i.found,
        "action": i.action,
        "resolved": i.resolved,
    });
    match &mut e.details {
        Some(serde_json::Value::Object(map)) => {
            map.insert("incident".into(), record);
        }
        _ => e.details = Some(serde_json::json!({ "incident": record })),
    }
    e
}

/// Writes conductor events to the store with the rate limit of the module
/// documentation. Cheap to clone; clones share the limit.
#[derive(Debug, Clone)]
pub struct EventSink {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    state: Arc<Mutex<SinkState>>,
    metrics: Option<Arc<crate::metrics::Metrics>>,
}

#[derive(Debug, Default)]
struct SinkState {
    windows: BTreeMap<String, Window>,
    /// Services in a crash-loop streak.
    streaks: std::collections::BTreeSet<String>,
    /// Writes the store refused since it last accepted one.
    lost: u64,
    /// When the first of those was refused.
    lost_since: Option<i64>,
    /// The last refusal.
    lost_error: Option<String>,
}

impl EventSink {
    /// A sink writing into `store`.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> EventSink {
        EventSink {
            store,
            clock,
            state: Arc::new(Mutex::new(SinkState::default())),
            metrics: None,
        }
    }

    /// The same sink, also counting every event (before the rate limit)
    /// in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::Metrics>) -> EventSink {
        self.metrics = Some(metrics);
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SinkState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks a service as in (or out of) a crash-loop streak: its routine
    /// events are rate-limited while it is.
    pub fn set_streak(&self, service: &str, on: bool) {
        let mut st = self.lock();
        if on {
            st.streaks.insert(service.to_owned());
        } else {
            st.streaks.remove(service);
        }
    }

    /// Records an event (or counts it, within the rate limit).
    pub fn emit(&self, e: ConductorEvent) {
        tracing::debug!(?e, "event");
        if let Some(m) = &self.metrics {
            m.observe(&e);
        }
        let incident = e.incident();
        let new = with_incident(e.to_event(), incident.as_ref());
        let key = {
            let st = self.lock();
            e.cause_key(|s| st.streaks.contains(s))
        };
        let Some(key) = key else {
            let id = self.write(new);
            self.record_incident(incident, id);
            return;
        };
        let now = self.clock.now_ms();
        let write = {
            let mut st = self.lock();
            let w = st.windows.entry(key).or_insert(Window {
                started: now,
                written: 0,
                suppressed: 0,
                last: None,
            });
            if w.written < BURST {
                w.written += 1;
                true
            } else {
                w.suppressed += 1;
                w.last = Some(new.clone());
                false
            }
        };
        let id = if write { self.write(new) } else { None };
        self.record_incident(incident, id);
    }

    /// Records an occurrence of an incident (every occurrence, whether its
    /// event was written or counted by the rate limit), with the event that
    /// recorded it.
    fn record_incident(&self, incident: Option<glint_store::NewIncident>, event: Option<i64>) {
        let Some(mut incident) = incident else {
            return;
        };
        incident.event = event;
        if let Err(err) = self.store.record_incident(incident) {
            tracing::error!("cannot record an incident: {err}");
            let now = self.clock.now_ms();
            let mut st = self.lock();
            st.lost += 1;
            st.lost_since.get_or_insert(now);
            st.lost_error = Some(crate::error_chain(&err));
        }
    }

    /// Ends windows that are over: writes one summary per key with counted
    /// repeats. Called on every pass.
    pub fn flush(&self) {
        let now = self.clock.now_ms();
        let summaries: Vec<(String, Window)> = {
            let mut st = self.lock();
            let over: Vec<String> = st
                .windows
                .iter()
                .filter(|(_, w)| now - w.started >= WINDOW_MS)
                .map(|(k, _)| k.clone())
                .collect();
            over.into_iter()
                .filter_map(|k| st.windows.remove(&k).map(|w| (k, w)))
                .collect()
        };
        for (key, w) in summaries {
            if w.suppressed == 0 {
                continue;
            }
            let Some(last) = w.last else { continue };
            let e = NewEvent {
                kind: EventKind::EventsSuppressed,
                severity: last.severity.max(Severity::Info),
                message: format!(
                    "{} more {} events ({key}) in the last {}s were counted, not written; the last: {}",
                    w.suppressed,
                    last.kind.as_str(),
                    (now - w.started) / 1000,
                    last.message
                ),
                details: Some(serde_json::json!({
                    "kind": last.kind.as_str(),
                    "suppressed": w.suppressed,
                    "key": key,
                })),
                ..last.clone()
            };
            self.write(e);
        }
    }

    /// When the next window ends, for the driver's timer.
    pub fn next_flush(&self) -> Option<i64> {
        self.lock()
            .windows
            .values()
            .filter(|w| w.suppressed > 0)
            .map(|w| w.started + WINDOW_MS)
            .min()
    }

    /// How many writes the store has refused since it last accepted one, and
    /// the last refusal: the store is failing when this is non-zero.
    pub fn lost(&self) -> Option<(u64, i64, String)> {
        let st = self.lock();
        match (st.lost, st.lost_since, &st.lost_error) {
            (n, Some(since), Some(err)) if n > 0 => Some((n, since, err.clone())),
            _ => None,
        }
    }

    /// Writes one event; its id, `None` when the store refused it.
    fn write(&self, e: NewEvent) -> Option<i64> {
        match self.store.append_event(e) {
            Ok(id) => {
                let lost = {
                    let mut st = self.lock();
                    let lost = (st.lost, st.lost_since, st.lost_error.take());
                    st.lost = 0;
                    st.lost_since = None;
                    lost
                };
                if let (n, Some(since), Some(err)) = lost
                    && n > 0
                {
                    let secs = (self.clock.now_ms() - since).max(0) / 1000;
                    let _ = self.store.append_event(NewEvent::incident(
                        EventKind::StoreUnavailable,
                        format!(
                            "the store refused {n} event writes over {secs}s (last error: {err}); they are lost"
                        ),
                    ));
                }
                Some(id)
            }
            Err(err) => {
                tracing::error!("cannot record event: {err}");
                let now = self.clock.now_ms();
                let mut st = self.lock();
                st.lost += 1;
                st.lost_since.get_or_insert(now);
                st.lost_error = Some(crate::error_chain(&err));
                None
            }
        }
    }
}
