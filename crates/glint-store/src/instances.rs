//! Instances the conductor believes exist.
//!
//! The conductor writes an intent *before* acting: a row in state
//! [`InstanceState::Launching`] before it asks a provider to launch, and
//! [`InstanceState::Retiring`] before it drains and terminates. After a crash
//! at any moment, comparing these rows with what the providers observe tells
//! the next conductor exactly what to adopt, finish or clean up. Rows are kept
//! after an instance is gone, as history for `glint status` and audits.

use crate::StoreError;
use crate::from_ms;
use crate::sqlite::SqliteStore;
use glint_model::{Digest, InstanceId, Name, ProviderKind, VersionNumber};
use rusqlite::{OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::time::SystemTime;

/// Where an instance is in its life, as the conductor believes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstanceState {
    /// The conductor decided to launch it; the provider may or may not have it yet.
    Launching,
    /// The provider runs it.
    Running,
    /// The conductor is draining and terminating it.
    Retiring,
    /// It has ended and been cleaned up.
    Gone,
}

/// What the health checks say about an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// Not yet healthy (starting up).
    Starting,
    /// Passing its health check; receives traffic.
    Healthy,
    /// Failing its health check; will be replaced.
    Unhealthy,
}

macro_rules! text_enum {
    ($t:ty { $($v:ident => $s:literal),* $(,)? }) => {
        impl $t {
            /// The name stored in the database and shown to users.
            pub fn as_str(self) -> &'static str {
                match self { $(<$t>::$v => $s),* }
            }
            fn parse(s: &str) -> Option<Self> {
                match s { $($s => Some(<$t>::$v),)* _ => None }
            }
        }
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

text_enum!(InstanceState { Launching => "launching", Running => "running", Retiring => "retiring", Gone => "gone" });
text_enum!(Health { Starting => "starting", Healthy => "healthy", Unhealthy => "unhealthy" });

fn provider_str(p: ProviderKind) -> &'static str {
    match p {
        ProviderKind::Process => "process",
        ProviderKind::Docker => "docker",
        ProviderKind::Simulated => "simulated",
        ProviderKind::Aws => "aws",
    }
}

fn parse_provider(s: &str) -> Option<ProviderKind> {
    match s {
        "process" => Some(ProviderKind::Process),
        "docker" => Some(ProviderKind::Docker),
        "simulated" => Some(ProviderKind::Simulated),
        "aws" => Some(ProviderKind::Aws),
        _ => None,
    }
}

/// One instance row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InstanceRecord {
    /// Its id.
    pub id: InstanceId,
    /// Its service.
    pub service: Name,
    /// The version it was launched for.
    pub version: VersionNumber,
    /// The image it runs.
    pub image: Digest,
    /// Who runs it.
    pub provider: ProviderKind,
    /// Where it is in its life.
    pub state: InstanceState,
    /// What its health checks say.
    pub health: Health,
    /// Where it can be reached.
    pub addr: Option<SocketAddr>,
    /// The provider's handle (pid, container id).
    pub handle: Option<String>,
    /// When the launch was decided (ms since the epoch).
    pub created_at: i64,
    /// When it last became healthy.
    pub healthy_at: Option<i64>,
    /// When it ended.
    pub ended_at: Option<i64>,
    /// Why it ended or is being retired.
    pub end_reason: Option<String>,
}

impl InstanceRecord {
    /// A new instance the conductor is about to launch.
    pub fn launching(
        id: InstanceId,
        service: Name,
        version: VersionNumber,
        image: Digest,
        provider: ProviderKind,
        created_at: i64,
    ) -> InstanceRecord {
        InstanceRecord {
            id,
            service,
            version,
            image,
            provider,
            state: InstanceState::Launching,
            health: Health::Starting,
            addr: None,
            handle: None,
            created_at,
            healthy_at: None,
            ended_at: None,
            end_reason: None,
        }
    }

    /// When the launch was decided.
    pub fn created(&self) -> SystemTime {
        from_ms(self.created_at)
    }

    /// Whether it is not gone.
    pub fn is_live(&self) -> bool {
        self.state != InstanceState::Gone
    }
}

const SELECT: &str = "SELECT id, service, version, image, provider, state, health, addr, handle, created_at, healthy_at, ended_at, end_reason FROM instances";

/// The instances the conductor believes exist. See the module documentation.
pub trait Instances {
    /// Records the intent to launch an instance.
    fn insert_instance(&self, r: &InstanceRecord) -> Result<(), StoreError>;

    /// Records that the provider runs the instance.
    fn mark_running(
        &self,
        id: &InstanceId,
        addr: Option<SocketAddr>,
        handle: &str,
    ) -> Result<(), StoreError>;

    /// Records a health transition (becoming healthy records the time).
    fn set_health(&self, id: &InstanceId, health: Health) -> Result<(), StoreError>;

    /// Records that an instance failed (could not launch, crashed or failed
    /// its health check before serving, or turned unhealthy): failures of a
    /// version's new instances fail its rollout.
    fn mark_failed(&self, id: &InstanceId) -> Result<(), StoreError>;

    /// How many instances launched for `version` failed.
    fn failed_count(&self, version: VersionNumber) -> Result<u32, StoreError>;

    /// Records the intent to retire an instance (drain, then terminate).
    fn mark_retiring(&self, id: &InstanceId, reason: &str) -> Result<(), StoreError>;

    /// Records that an instance has ended and been cleaned up.
    fn mark_gone(&self, id: &InstanceId, reason: &str) -> Result<(), StoreError>;

    /// Every instance that is not gone, oldest first.
    fn live_instances(&self) -> Result<Vec<InstanceRecord>, StoreError>;

    /// One instance, live or gone.
    fn instance(&self, id: &InstanceId) -> Result<Option<InstanceRecord>, StoreError>;

    /// The instances of a service, newest first, at most `limit` (live and gone).
    fn instances_of(&self, service: &str, limit: usize) -> Result<Vec<InstanceRecord>, StoreError>;
}

impl Instances for SqliteStore {
    fn insert_instance(&self, r: &InstanceRecord) -> Result<(), StoreError> {
        self.write("cannot record instance", |tx| {
            tx.execute(
                "INSERT INTO instances(id, service, version, image, provider, state, health, addr, handle, created_at, healthy_at, ended_at, end_reason)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                params![
                    r.id.as_str(),
                    r.service.as_str(),
                    r.version.0 as i64,
                    r.image.as_str(),
                    provider_str(r.provider),
                    r.state.as_str(),
                    r.health.as_str(),
                    r.addr.map(|a| a.to_string()),
                    r.handle,
                    r.created_at,
                    r.healthy_at,
                    r.ended_at,
                    r.end_reason,
                ],
            )
            .map(|_| ())
            .map_err(|e| self.err("cannot record instance", e))
        })
    }

    fn mark_running(
        &self,
        id: &InstanceId,
        addr: Option<SocketAddr>,
        handle: &str,
    ) -> Result<(), StoreError> {
        self.update(
            "UPDATE instances SET state = 'running', addr = ?2, handle = ?3 WHERE id = ?1 AND state = 'launching'",
            params![id.as_str(), addr.map(|a| a.to_string()), handle],
        )
    }

    fn set_health(&self, id: &InstanceId, health: Health) -> Result<(), StoreError> {
        if health == Health::Healthy {
            self.update(
                "UPDATE instances SET health = ?2, healthy_at = ?3 WHERE id = ?1",
                params![id.as_str(), health.as_str(), self.now()],
            )
        } else {
            self.update(
                "UPDATE instances SET health = ?2 WHERE id = ?1",
                params![id.as_str(), health.as_str()],
            )
        }
    }

    fn mark_failed(&self, id: &InstanceId) -> Result<(), StoreError> {
        self.update(
            "UPDATE instances SET failed = 1 WHERE id = ?1",
            params![id.as_str()],
        )
    }

    fn failed_count(&self, version: VersionNumber) -> Result<u32, StoreError> {
        self.lock()
            .query_row(
                "SELECT count(*) FROM instances WHERE version = ?1 AND failed = 1",
                [version.0 as i64],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u32)
            .map_err(|e| self.err("cannot read instances", e))
    }

    fn mark_retiring(&self, id: &InstanceId, reason: &str) -> Result<(), StoreError> {
        self.update(
            "UPDATE instances SET state = 'retiring', end_reason = coalesce(end_reason, ?2) WHERE id = ?1 AND state != 'gone'",
            params![id.as_str(), reason],
        )
    }

    fn mark_gone(&self, id: &InstanceId, reason: &str) -> Result<(), StoreError> {
        self.update(
            "UPDATE instances SET state = 'gone', ended_at = ?3, end_reason = coalesce(end_reason, ?2) WHERE id = ?1 AND state != 'gone'",
            params![id.as_str(), reason, self.now()],
        )
    }

    fn live_instances(&self) -> Result<Vec<InstanceRecord>, StoreError> {
        self.query_instances(
            &format!("{SELECT} WHERE state != 'gone' ORDER BY created_at, id"),
            [],
        )
    }

    fn instance(&self, id: &InstanceId) -> Result<Option<InstanceRecord>, StoreError> {
        let conn = self.lock();
        conn.query_row(&format!("{SELECT} WHERE id = ?1"), [id.as_str()], |r| {
            Ok(self.instance_from_row(r))
        })
        .optional()
        .map_err(|e| self.err("cannot read instances", e))?
        .transpose()
    }

    fn instances_of(&self, service: &str, limit: usize) -> Result<Vec<InstanceRecord>, StoreError> {
        self.query_instances(
            &format!("{SELECT} WHERE service = ?1 ORDER BY created_at DESC, id LIMIT ?2"),
            params![service, limit as i64],
        )
    }
}

impl SqliteStore {
    fn update(&self, sql: &str, p: impl rusqlite::Params) -> Result<(), StoreError> {
        self.write("cannot update instance", |tx| {
            tx.execute(sql, p)
                .map(|_| ())
                .map_err(|e| self.err("cannot update instance", e))
        })
    }

    fn query_instances(
        &self,
        sql: &str,
        p: impl rusqlite::Params,
    ) -> Result<Vec<InstanceRecord>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare(sql)
            .map_err(|e| self.err("cannot read instances", e))?;
        let rows = stmt
            .query_map(p, |r| Ok(self.instance_from_row(r)))
            .map_err(|e| self.err("cannot read instances", e))?;
        let mut out = Vec::new();
        for row in rows {
            out.push(row.map_err(|e| self.err("cannot read instances", e))??);
        }
        Ok(out)
    }

    fn instance_from_row(&self, r: &Row<'_>) -> Result<InstanceRecord, StoreError> {
        let e = |e| self.err("cannot read instance", e);
        let text = |i: usize| r.get::<_, String>(i).map_err(e);
        let id = text(0)?;
        Ok(InstanceRecord {
            id: InstanceId::parse(&id).map_err(|x| self.corrupt("instance id", x))?,
            service: Name::new(text(1)?).map_err(|x| self.corrupt("service", x))?,
            version: VersionNumber(r.get::<_, i64>(2).map_err(e)? as u64),
            image: Digest::parse(text(3)?).map_err(|x| self.corrupt("image", x))?,
            provider: parse_provider(&text(4)?).ok_or_else(|| self.corrupt("provider", &id))?,
            state: InstanceState::parse(&text(5)?).ok_or_else(|| self.corrupt("state", &id))?,
            health: Health::parse(&text(6)?).ok_or_else(|| self.corrupt("health", &id))?,
            addr: r
                .get::<_, Option<String>>(7)
                .map_err(e)?
                .and_then(|a| a.parse().ok()),
            handle: r.get(8).map_err(e)?,
            created_at: r.get(9).map_err(e)?,
            healthy_at: r.get(10).map_err(e)?,
            ended_at: r.get(11).map_err(e)?,
            end_reason: r.get(12).map_err(e)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(n: u64) -> InstanceRecord {
        let web = Name::new("web").unwrap();
        InstanceRecord::launching(
            InstanceId::from_entropy(&web, n),
            web,
            VersionNumber(1),
            Digest::of(b"img"),
            ProviderKind::Process,
            1_000,
        )
    }

    #[test]
    fn an_instance_goes_through_its_life() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path()).unwrap();
        let r = rec(1);
        s.insert_instance(&r).unwrap();
        assert_eq!(s.live_instances().unwrap(), vec![r.clone()]);
        let addr: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        s.mark_running(&r.id, Some(addr), "pid 42").unwrap();
        s.set_health(&r.id, Health::Healthy).unwrap();
        let got = s.instance(&r.id).unwrap().unwrap();
        assert_eq!(got.state, InstanceState::Running);
        assert_eq!(got.health, Health::Healthy);
        assert_eq!(got.addr, Some(addr));
        assert!(got.healthy_at.is_some());
        s.mark_retiring(&r.id, "replaced by web-x").unwrap();
        s.mark_gone(&r.id, "terminated").unwrap();
        let got = s.instance(&r.id).unwrap().unwrap();
        assert_eq!(got.state, InstanceState::Gone);
        assert_eq!(
            got.end_reason.as_deref(),
            Some("replaced by web-x"),
            "the first reason is kept"
        );
        assert!(s.live_instances().unwrap().is_empty());
        assert_eq!(s.instances_of("web", 10).unwrap().len(), 1);
        // A gone instance never comes back to life.
        s.mark_retiring(&r.id, "again").unwrap();
        assert_eq!(
            s.instance(&r.id).unwrap().unwrap().state,
            InstanceState::Gone
        );
    }

    #[test]
    fn ids_are_unique() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path()).unwrap();
        s.insert_instance(&rec(1)).unwrap();
        assert!(s.insert_instance(&rec(1)).is_err());
    }
}
