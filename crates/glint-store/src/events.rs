//! The append-only event log.
//!
//! Every action the conductor takes, everything it detects and every incident
//! is an event (architecture invariant 5). Events are only inserted: triggers
//! in the schema refuse updates and deletes. `seq` is a gap-free-in-practice,
//! strictly increasing cursor that `glint events --follow` tails.

use crate::sqlite::SqliteStore;
use crate::{StoreError, from_ms};
use glint_model::{InstanceId, Name, VersionNumber};
use rusqlite::params;
use serde::Serialize;
use std::time::SystemTime;

/// How much an event matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Routine: a launch, a health transition, a version.
    Info,
    /// Something failed and was handled (a crash replaced, a launch retried).
    Warning,
    /// Drift or a security-relevant failure: recorded and notified.
    Incident,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Incident => "incident",
        }
    }

    fn parse(s: &str) -> Severity {
        match s {
            "warning" => Severity::Warning,
            "incident" => Severity::Incident,
            _ => Severity::Info,
        }
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happened. The string form (`instance.exited`) is stable: scripts
/// filter on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EventKind {
    /// A version was recorded by `apply`/`up`.
    VersionApplied,
    /// A version was recorded by `rollback` (manual or automatic).
    VersionRolledBack,
    /// A conductor started.
    ConductorStarted,
    /// A conductor stopped.
    ConductorStopped,
    /// A provider was connected (Docker, when a version first needs it).
    ProviderConnected,
    /// A provider cannot be reached; launches on it are held back.
    ProviderUnavailable,
    /// A newer version arrived before this one's rollout ended.
    VersionSuperseded,
    /// A launch was decided (the intent is recorded) and handed to a provider.
    InstanceLaunching,
    /// A provider runs the new instance.
    InstanceLaunched,
    /// A provider could not launch an instance.
    InstanceLaunchFailed,
    /// Launches of a service are held back after repeated failures.
    InstanceBackoff,
    /// An instance passed its health check.
    InstanceHealthy,
    /// An instance failed its health check.
    InstanceUnhealthy,
    /// An instance's program ended without being asked to.
    InstanceExited,
    /// An instance is being drained and terminated.
    InstanceRetiring,
    /// An instance has been terminated and cleaned up.
    InstanceTerminated,
    /// An instance could not be terminated (it is retried).
    InstanceTerminateFailed,
    /// A restarted conductor found a live instance the store knows.
    InstanceAdopted,
    /// An instance the store believed in is not there any more.
    InstanceVanished,
    /// A labelled instance the store does not know was removed.
    OrphanRemoved,
    /// An endpoint started listening.
    EndpointListening,
    /// An endpoint could not listen, or stopped.
    EndpointFailed,
    /// An endpoint was shut down.
    EndpointStopped,
    /// The data plane process (which hosts the endpoints) was started,
    /// adopted, replaced by a newer build, or lost.
    DataPlane,
    /// A rollout of a service to a new version began.
    RolloutStarted,
    /// A rollout step (one instance replaced, a canary step) completed.
    RolloutProgress,
    /// A rollout finished.
    RolloutCompleted,
    /// A rollout failed (deadline, failing instances).
    RolloutFailed,
    /// Out-of-band change detected and corrected.
    Drift,
    /// An image failed verification.
    ImageRejected,
    /// Repeats of one event that were counted instead of written one by one.
    EventsSuppressed,
    /// The store refused writes for a while (recorded once it accepts them).
    StoreUnavailable,
    /// A mutating API call, naming the token's accessor that made it.
    Audit,
    /// A request to the API without a valid token, or with too small a role.
    AuthFailed,
    /// An API token was created.
    TokenCreated,
    /// An API token was revoked.
    TokenRevoked,
    /// The autoscaler changed a service's instance count.
    AutoscaleScaled,
    /// A volume was created (first mounted).
    VolumeCreated,
    /// A launch was refused because another instance still holds a volume.
    VolumeHeld,
    /// A volume uses more than its declared size.
    VolumeOverSize,
    /// A volume was removed (`glint volume rm`).
    VolumeRemoved,
    /// A secret's new version was set (`glint secret set`; never its value).
    SecretSet,
    /// A secret was removed (`glint secret rm`).
    SecretRemoved,
    /// Every secret's data key was re-wrapped under a new master key.
    SecretKeyRotated,
    /// A runtime variable was written through the instance API.
    VariableWritten,
    /// An access through the instance API was refused (an incident).
    VariableRefused,
    /// A notification to a `notify` sink failed for good.
    NotificationFailed,
}

impl EventKind {
    /// The stable string form.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::VersionApplied => "version.applied",
            EventKind::VersionRolledBack => "version.rolled_back",
            EventKind::ConductorStarted => "conductor.started",
            EventKind::ConductorStopped => "conductor.stopped",
            EventKind::ProviderConnected => "provider.connected",
            EventKind::ProviderUnavailable => "provider.unavailable",
            EventKind::VersionSuperseded => "version.superseded",
            EventKind::InstanceLaunching => "instance.launching",
            EventKind::InstanceLaunched => "instance.launched",
            EventKind::InstanceLaunchFailed => "instance.launch_failed",
            EventKind::InstanceBackoff => "instance.backoff",
            EventKind::InstanceHealthy => "instance.healthy",
            EventKind::InstanceUnhealthy => "instance.unhealthy",
            EventKind::InstanceExited => "instance.exited",
            EventKind::InstanceRetiring => "instance.retiring",
            EventKind::InstanceTerminated => "instance.terminated",
            EventKind::InstanceTerminateFailed => "instance.terminate_failed",
            EventKind::InstanceAdopted => "instance.adopted",
            EventKind::InstanceVanished => "instance.vanished",
            EventKind::OrphanRemoved => "instance.orphan_removed",
            EventKind::EndpointListening => "endpoint.listening",
            EventKind::EndpointFailed => "endpoint.failed",
            EventKind::EndpointStopped => "endpoint.stopped",
            EventKind::DataPlane => "dataplane",
            EventKind::RolloutStarted => "rollout.started",
            EventKind::RolloutProgress => "rollout.progress",
            EventKind::RolloutCompleted => "rollout.completed",
            EventKind::RolloutFailed => "rollout.failed",
            EventKind::Drift => "drift",
            EventKind::ImageRejected => "image.rejected",
            EventKind::EventsSuppressed => "events.suppressed",
            EventKind::StoreUnavailable => "store.unavailable",
            EventKind::Audit => "audit",
            EventKind::AuthFailed => "auth.failed",
            EventKind::TokenCreated => "token.created",
            EventKind::TokenRevoked => "token.revoked",
            EventKind::AutoscaleScaled => "autoscale.scaled",
            EventKind::VolumeCreated => "volume.created",
            EventKind::VolumeHeld => "volume.held",
            EventKind::VolumeOverSize => "volume.over_size",
            EventKind::VolumeRemoved => "volume.removed",
            EventKind::SecretSet => "secret.set",
            EventKind::SecretRemoved => "secret.removed",
            EventKind::SecretKeyRotated => "secret.key_rotated",
            EventKind::VariableWritten => "variable.written",
            EventKind::VariableRefused => "variable.refused",
            EventKind::NotificationFailed => "notification.failed",
        }
    }
}

/// An event to append.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// What happened.
    pub kind: EventKind,
    /// How much it matters.
    pub severity: Severity,
    /// The version concerned.
    pub version: Option<VersionNumber>,
    /// The service concerned.
    pub service: Option<Name>,
    /// The instance concerned.
    pub instance: Option<InstanceId>,
    /// One line for people.
    pub message: String,
    /// Structured details for programs.
    pub details: Option<serde_json::Value>,
}

impl NewEvent {
    /// A routine event.
    pub fn info(kind: EventKind, message: impl Into<String>) -> NewEvent {
        NewEvent {
            kind,
            severity: Severity::Info,
            version: None,
            service: None,
            instance: None,
            message: message.into(),
            details: None,
        }
    }

    /// A handled failure.
    pub fn warning(kind: EventKind, message: impl Into<String>) -> NewEvent {
        NewEvent {
            severity: Severity::Warning,
            ..NewEvent::info(kind, message)
        }
    }

    /// An incident.
    pub fn incident(kind: EventKind, message: impl Into<String>) -> NewEvent {
        NewEvent {
            severity: Severity::Incident,
            ..NewEvent::info(kind, message)
        }
    }

    /// Sets the version.
    pub fn version(mut self, v: VersionNumber) -> NewEvent {
        self.version = Some(v);
        self
    }

    /// Sets the service.
    pub fn service(mut self, s: &Name) -> NewEvent {
        self.service = Some(s.clone());
        self
    }

    /// Sets the instance (and its service).
    pub fn instance(mut self, i: &InstanceId) -> NewEvent {
        if self.service.is_none() {
            self.service = Name::new(i.service()).ok();
        }
        self.instance = Some(i.clone());
        self
    }

    /// Sets structured details.
    pub fn details(mut self, d: serde_json::Value) -> NewEvent {
        self.details = Some(d);
        self
    }
}

/// A stored event.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Event {
    /// Position in the log.
    pub seq: i64,
    /// When it was recorded (ms since the epoch).
    pub at: i64,
    /// What happened (`instance.exited`, …).
    pub kind: String,
    /// How much it matters.
    pub severity: Severity,
    /// The version concerned.
    pub version: Option<u64>,
    /// The service concerned.
    pub service: Option<String>,
    /// The instance concerned.
    pub instance: Option<String>,
    /// One line for people.
    pub message: String,
    /// Structured details.
    pub details: Option<serde_json::Value>,
}

impl Event {
    /// When it was recorded.
    pub fn time(&self) -> SystemTime {
        from_ms(self.at)
    }
}

/// Which events to read.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Only events after this sequence number.
    pub after: Option<i64>,
    /// Only this service's events.
    pub service: Option<String>,
    /// Only this instance's events.
    pub instance: Option<String>,
    /// Only events of this kind.
    pub kind: Option<String>,
    /// At most this many (the newest ones), returned oldest first.
    pub limit: Option<usize>,
}

/// The append-only event log. See the module documentation.
pub trait EventLog {
    /// Appends an event (timed by the store's clock) and returns its
    /// sequence number.
    fn append_event(&self, e: NewEvent) -> Result<i64, StoreError>;

    /// Reads events, oldest first.
    fn events(&self, f: &EventFilter) -> Result<Vec<Event>, StoreError>;
}

impl EventLog for SqliteStore {
    fn append_event(&self, e: NewEvent) -> Result<i64, StoreError> {
        let details = e
            .details
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(|x| self.corrupt("event details", x))?;
        let at = self.now();
        self.write("cannot append event", |tx| {
            tx.execute(
                "INSERT INTO events(at, kind, severity, version, service, instance, message, details)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    at,
                    e.kind.as_str(),
                    e.severity.as_str(),
                    e.version.map(|v| v.0 as i64),
                    e.service.as_ref().map(Name::as_str),
                    e.instance.as_ref().map(InstanceId::as_str),
                    e.message,
                    details,
                ],
            )
            .map_err(|x| self.err("cannot append event", x))?;
            Ok(tx.last_insert_rowid())
        })
    }

    fn events(&self, f: &EventFilter) -> Result<Vec<Event>, StoreError> {
        let conn = self.lock();
        let limit = f.limit.map(|l| l as i64).unwrap_or(-1);
        let mut stmt = conn
            .prepare(
                "SELECT * FROM (
                   SELECT seq, at, kind, severity, version, service, instance, message, details
                   FROM events
                   WHERE seq > ?1
                     AND (?2 IS NULL OR service = ?2)
                     AND (?3 IS NULL OR instance = ?3)
                     AND (?4 IS NULL OR kind = ?4)
                   ORDER BY seq DESC LIMIT ?5
                 ) ORDER BY seq",
            )
            .map_err(|x| self.err("cannot read events", x))?;
        let rows = stmt
            .query_map(
                params![f.after.unwrap_or(0), f.service, f.instance, f.kind, limit],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, Option<i64>>(4)?,
                        r.get::<_, Option<String>>(5)?,
                        r.get::<_, Option<String>>(6)?,
                        r.get::<_, String>(7)?,
                        r.get::<_, Option<String>>(8)?,
                    ))
                },
            )
            .map_err(|x| self.err("cannot read events", x))?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, at, kind, severity, version, service, instance, message, details) =
                row.map_err(|x| self.err("cannot read events", x))?;
            out.push(Event {
                seq,
                at,
                kind,
                severity: Severity::parse(&severity),
                version: version.map(|v| v as u64),
                service,
                instance,
                message,
                details: details.and_then(|d| serde_json::from_str(&d).ok()),
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_append_and_filter() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path()).unwrap();
        let web = Name::new("web").unwrap();
        let id = InstanceId::from_entropy(&web, 5);
        let a = s
            .append_event(NewEvent::info(EventKind::ConductorStarted, "started"))
            .unwrap();
        let b = s
            .append_event(
                NewEvent::warning(EventKind::InstanceExited, "web-x was killed")
                    .instance(&id)
                    .version(VersionNumber(2))
                    .details(serde_json::json!({"signal": 9})),
            )
            .unwrap();
        assert!(b > a);
        let all = s.events(&EventFilter::default()).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[1].kind, "instance.exited");
        assert_eq!(
            all[1].service.as_deref(),
            Some("web"),
            "service from the id"
        );
        assert_eq!(all[1].details, Some(serde_json::json!({"signal": 9})));
        let web_only = s
            .events(&EventFilter {
                service: Some("web".into()),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(web_only.len(), 1);
        let after = s
            .events(&EventFilter {
                after: Some(a),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(after.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![b]);
        let last = s
            .events(&EventFilter {
                limit: Some(1),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(last[0].seq, b, "limit keeps the newest");
    }
}
