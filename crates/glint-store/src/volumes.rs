//! Volumes and who holds them.
//!
//! A volume row is written the first time an instance claims the volume
//! and is never removed by the conductor: only `glint volume rm` removes
//! one, in two steps ([`Volumes::begin_volume_removal`], then
//! [`Volumes::finish_volume_removal`] once the provider has deleted the
//! data), and the first step is refused while a version in use declares it
//! or an instance holds it.
//!
//! A *claim* says that an instance mounts a volume. It is written after the
//! instance's `launching` intent and before the provider is asked to launch
//! (compare-and-set, in one transaction): a claim to write a volume
//! exclusively is refused while another instance that is not gone holds an
//! exclusive claim on it, and any claim is refused while the volume is being
//! removed. Claims of instances that are gone are stale: they never block a
//! claim, and [`Volumes::release_stale_claims`] deletes them. So "who may
//! write this volume" survives a conductor restart, and two conductors
//! racing (one of them deposed and about to be fenced) cannot both win.

use crate::StoreError;
use crate::sqlite::SqliteStore;
use glint_model::{InstanceId, Name, ProviderKind};
use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

/// One volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeRecord {
    /// The concrete volume (`pgdata`, or `pgdata-0` for slot 0 of a
    /// per-instance volume).
    pub name: String,
    /// The declaration it comes from.
    pub declared: Name,
    /// The slot of a per-instance volume.
    pub slot: Option<u32>,
    /// Which provider holds its data.
    pub provider: ProviderKind,
    /// Where its data is, as the provider reported it (a host directory, a
    /// Docker volume name), once known.
    pub location: Option<String>,
    /// The host directory of its data, when known (for measuring usage).
    pub host_path: Option<String>,
    /// The declared size in bytes when it was created.
    pub size: Option<u64>,
    /// When it was first claimed (ms since the epoch).
    pub created_at: i64,
    /// `glint volume rm` has begun.
    pub removing: bool,
}

/// One instance's claim on a volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeClaim {
    /// The concrete volume.
    pub volume: String,
    /// The instance.
    pub instance: InstanceId,
    /// Its service.
    pub service: Name,
    /// The instance's slot (per-instance volumes).
    pub slot: Option<u32>,
    /// A read-write claim: one writer at a time.
    pub exclusive: bool,
    /// When it was claimed.
    pub claimed_at: i64,
}

/// A claim to be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewClaim {
    /// The concrete volume.
    pub volume: String,
    /// Its declaration.
    pub declared: Name,
    /// Its provider (for a volume seen for the first time).
    pub provider: ProviderKind,
    /// The declared size.
    pub size: Option<u64>,
    /// Read-write: one writer at a time.
    pub exclusive: bool,
}

/// How a claim ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claimed {
    /// Every volume was claimed.
    Granted,
    /// `volume` is held read-write by `holder`, which is not gone.
    HeldBy {
        /// The volume.
        volume: String,
        /// Who holds it.
        holder: InstanceId,
    },
    /// `volume` is being removed (`glint volume rm`).
    Removing {
        /// The volume.
        volume: String,
    },
}

/// Why a volume cannot be removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemovalRefused {
    /// There is no such volume.
    NoSuchVolume,
    /// The newest version, or a version an instance runs, declares it.
    Declared {
        /// The versions.
        versions: Vec<u64>,
    },
    /// Instances that are not gone hold it.
    Held {
        /// The instances.
        instances: Vec<InstanceId>,
    },
}

/// Volumes and claims. See the module documentation.
pub trait Volumes {
    /// Every volume, by name.
    fn volumes(&self) -> Result<Vec<VolumeRecord>, StoreError>;

    /// Every claim, by volume then instance.
    fn volume_claims(&self) -> Result<Vec<VolumeClaim>, StoreError>;

    /// Claims every volume in `claims` for `instance` (all or none), creating
    /// the volume rows seen for the first time. See the module
    /// documentation for when a claim is refused.
    fn claim_volumes(
        &self,
        instance: &InstanceId,
        service: &Name,
        slot: Option<u32>,
        claims: &[NewClaim],
    ) -> Result<Claimed, StoreError>;

    /// Deletes the claims of instances that are gone (or unknown); returns
    /// how many.
    fn release_stale_claims(&self) -> Result<usize, StoreError>;

    /// Records where a volume's data is.
    fn set_volume_location(
        &self,
        name: &str,
        location: &str,
        host_path: Option<&str>,
    ) -> Result<(), StoreError>;

    /// Marks volume `name` as being removed, unless a version in use
    /// declares it or an instance holds it. From then on, every claim on it
    /// is refused.
    fn begin_volume_removal(
        &self,
        name: &str,
    ) -> Result<Result<VolumeRecord, RemovalRefused>, StoreError>;

    /// Forgets a volume whose removal has begun and whose data is gone.
    fn finish_volume_removal(&self, name: &str) -> Result<(), StoreError>;

    /// Undoes [`Volumes::begin_volume_removal`] (the provider refused).
    fn abort_volume_removal(&self, name: &str) -> Result<(), StoreError>;
}

fn provider_of(s: &str) -> Option<ProviderKind> {
    serde_json::from_value(serde_json::Value::String(s.to_owned())).ok()
}

fn provider_str(p: ProviderKind) -> String {
    p.to_string()
}

fn slot_of(v: Option<i64>) -> Option<u32> {
    v.and_then(|s| u32::try_from(s).ok())
}

/// A claim held by an instance that is not gone (an exclusive one on
/// `volume` by anyone but `except`).
const LIVE_HOLDER: &str = "SELECT c.instance FROM volume_claims c
     JOIN instances i ON i.id = c.instance
     WHERE c.volume = ?1 AND c.instance != ?2 AND c.exclusive = 1 AND i.state != 'gone'
     LIMIT 1";

impl Volumes for SqliteStore {
    fn volumes(&self) -> Result<Vec<VolumeRecord>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare(
                "SELECT name, declared, slot, provider, location, host_path, size, created_at, removing
                 FROM volumes ORDER BY name",
            )
            .map_err(|e| self.err("cannot read volumes", e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<i64>>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, Option<String>>(4)?,
                    r.get::<_, Option<String>>(5)?,
                    r.get::<_, Option<i64>>(6)?,
                    r.get::<_, i64>(7)?,
                    r.get::<_, i64>(8)?,
                ))
            })
            .map_err(|e| self.err("cannot read volumes", e))?;
        let mut out = Vec::new();
        for row in rows {
            let (name, declared, slot, provider, location, host_path, size, created_at, removing) =
                row.map_err(|e| self.err("cannot read volumes", e))?;
            out.push(VolumeRecord {
                declared: Name::new(&declared)
                    .map_err(|e| self.corrupt("volume declaration name", e))?,
                provider: provider_of(&provider)
                    .ok_or_else(|| self.corrupt("volume provider", &provider))?,
                name,
                slot: slot_of(slot),
                location,
                host_path,
                size: size.and_then(|s| u64::try_from(s).ok()),
                created_at,
                removing: removing != 0,
            });
        }
        Ok(out)
    }

    fn volume_claims(&self) -> Result<Vec<VolumeClaim>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare(
                "SELECT volume, instance, service, slot, exclusive, claimed_at
                 FROM volume_claims ORDER BY volume, instance",
            )
            .map_err(|e| self.err("cannot read volume claims", e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Option<i64>>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, i64>(5)?,
                ))
            })
            .map_err(|e| self.err("cannot read volume claims", e))?;
        let mut out = Vec::new();
        for row in rows {
            let (volume, instance, service, slot, exclusive, claimed_at) =
                row.map_err(|e| self.err("cannot read volume claims", e))?;
            out.push(VolumeClaim {
                volume,
                instance: InstanceId::parse(&instance)
                    .map_err(|e| self.corrupt("claiming instance id", e))?,
                service: Name::new(&service).map_err(|e| self.corrupt("claiming service", e))?,
                slot: slot_of(slot),
                exclusive: exclusive != 0,
                claimed_at,
            });
        }
        Ok(out)
    }

    fn claim_volumes(
        &self,
        instance: &InstanceId,
        service: &Name,
        slot: Option<u32>,
        claims: &[NewClaim],
    ) -> Result<Claimed, StoreError> {
        let now = self.now();
        self.write("cannot claim volumes", |tx| {
            let e = |err| self.err("cannot claim volumes", err);
            for c in claims {
                let removing: Option<i64> = tx
                    .query_row(
                        "SELECT removing FROM volumes WHERE name = ?1",
                        [&c.volume],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(e)?;
                if removing.is_some_and(|r| r != 0) {
                    return Ok(Claimed::Removing {
                        volume: c.volume.clone(),
                    });
                }
                if c.exclusive {
                    let holder: Option<String> = tx
                        .query_row(LIVE_HOLDER, params![c.volume, instance.as_str()], |r| {
                            r.get(0)
                        })
                        .optional()
                        .map_err(e)?;
                    if let Some(h) = holder {
                        return Ok(Claimed::HeldBy {
                            volume: c.volume.clone(),
                            holder: InstanceId::parse(&h)
                                .map_err(|err| self.corrupt("claiming instance id", err))?,
                        });
                    }
                }
            }
            let slot = slot.map(i64::from);
            for c in claims {
                tx.execute(
                    "INSERT INTO volumes(name, declared, slot, provider, size, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(name) DO NOTHING",
                    params![
                        c.volume,
                        c.declared.as_str(),
                        slot,
                        provider_str(c.provider),
                        c.size.and_then(|s| i64::try_from(s).ok()),
                        now
                    ],
                )
                .map_err(e)?;
                tx.execute(
                    "INSERT INTO volume_claims(volume, instance, service, slot, exclusive, claimed_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT(volume, instance) DO UPDATE SET exclusive = excluded.exclusive",
                    params![
                        c.volume,
                        instance.as_str(),
                        service.as_str(),
                        slot,
                        i64::from(c.exclusive),
                        now
                    ],
                )
                .map_err(e)?;
            }
            Ok(Claimed::Granted)
        })
    }

    fn release_stale_claims(&self) -> Result<usize, StoreError> {
        // Nothing to write: no transaction (and no change-feed bump).
        let stale: i64 = self
            .lock()
            .query_row(
                "SELECT count(*) FROM volume_claims c LEFT JOIN instances i ON i.id = c.instance
                 WHERE i.id IS NULL OR i.state = 'gone'",
                [],
                |r| r.get(0),
            )
            .map_err(|e| self.err("cannot read volume claims", e))?;
        if stale == 0 {
            return Ok(0);
        }
        self.write("cannot release volume claims", |tx| {
            tx.execute(
                "DELETE FROM volume_claims WHERE instance NOT IN
                   (SELECT id FROM instances WHERE state != 'gone')",
                [],
            )
            .map_err(|e| self.err("cannot release volume claims", e))
        })
    }

    fn set_volume_location(
        &self,
        name: &str,
        location: &str,
        host_path: Option<&str>,
    ) -> Result<(), StoreError> {
        self.write("cannot record a volume's location", |tx| {
            tx.execute(
                "UPDATE volumes SET location = ?2, host_path = ?3 WHERE name = ?1",
                params![name, location, host_path],
            )
            .map(|_| ())
            .map_err(|e| self.err("cannot record a volume's location", e))
        })
    }

    fn begin_volume_removal(
        &self,
        name: &str,
    ) -> Result<Result<VolumeRecord, RemovalRefused>, StoreError> {
        let Some(rec) = self.volumes()?.into_iter().find(|v| v.name == name) else {
            return Ok(Err(RemovalRefused::NoSuchVolume));
        };
        self.write("cannot begin removing a volume", |tx| {
            let e = |err| self.err("cannot begin removing a volume", err);
            // The newest version and every version an instance runs.
            let mut stmt = tx
                .prepare(
                    "SELECT number, env_json FROM versions
                     WHERE number = (SELECT max(number) FROM versions)
                        OR number IN (SELECT version FROM instances WHERE state != 'gone')
                     ORDER BY number",
                )
                .map_err(e)?;
            let rows = stmt
                .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
                .map_err(e)?;
            let mut declared = Vec::new();
            for row in rows {
                let (number, json) = row.map_err(e)?;
                let env: glint_model::Environment = serde_json::from_str(&json)
                    .map_err(|err| self.corrupt("version environment", err))?;
                if env.volumes.contains_key(&rec.declared) {
                    declared.push(u64::try_from(number).unwrap_or(0));
                }
            }
            if !declared.is_empty() {
                return Ok(Err(RemovalRefused::Declared { versions: declared }));
            }
            let mut stmt = tx
                .prepare(
                    "SELECT c.instance FROM volume_claims c JOIN instances i ON i.id = c.instance
                     WHERE c.volume = ?1 AND i.state != 'gone' ORDER BY c.instance",
                )
                .map_err(e)?;
            let holders = stmt
                .query_map([name], |r| r.get::<_, String>(0))
                .map_err(e)?
                .collect::<Result<Vec<String>, _>>()
                .map_err(e)?;
            if !holders.is_empty() {
                let instances = holders
                    .iter()
                    .filter_map(|h| InstanceId::parse(h).ok())
                    .collect();
                return Ok(Err(RemovalRefused::Held { instances }));
            }
            tx.execute("UPDATE volumes SET removing = 1 WHERE name = ?1", [name])
                .map_err(e)?;
            Ok(Ok(VolumeRecord {
                removing: true,
                ..rec.clone()
            }))
        })
    }

    fn finish_volume_removal(&self, name: &str) -> Result<(), StoreError> {
        self.write("cannot forget a removed volume", |tx| {
            let e = |err| self.err("cannot forget a removed volume", err);
            tx.execute("DELETE FROM volume_claims WHERE volume = ?1", [name])
                .map_err(e)?;
            tx.execute(
                "DELETE FROM volumes WHERE name = ?1 AND removing = 1",
                [name],
            )
            .map(|_| ())
            .map_err(e)
        })
    }

    fn abort_volume_removal(&self, name: &str) -> Result<(), StoreError> {
        self.write("cannot abort removing a volume", |tx| {
            tx.execute("UPDATE volumes SET removing = 0 WHERE name = ?1", [name])
                .map(|_| ())
                .map_err(|e| self.err("cannot abort removing a volume", e))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{InstanceRecord, Instances};
    use glint_model::{Digest, VersionNumber};

    fn name(s: &str) -> Name {
        Name::new(s).unwrap()
    }

    fn instance(s: &SqliteStore, n: u64) -> InstanceId {
        let id = InstanceId::from_entropy(&name("db"), n);
        s.insert_instance(&InstanceRecord::launching(
            id.clone(),
            name("db"),
            VersionNumber(1),
            Digest::of(b"x"),
            ProviderKind::Process,
            0,
        ))
        .unwrap();
        id
    }

    fn writer(volume: &str) -> NewClaim {
        NewClaim {
            volume: volume.into(),
            declared: name("pgdata"),
            provider: ProviderKind::Process,
            size: Some(1 << 30),
            exclusive: true,
        }
    }

    // Mutation caught: the holder check ignoring `exclusive`, or not joining
    // on the holder's state (a gone holder blocking for ever).
    #[test]
    fn one_writer_at_a_time_until_the_holder_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path()).unwrap();
        let a = instance(&s, 1);
        let b = instance(&s, 2);
        let svc = name("db");
        assert_eq!(
            s.claim_volumes(&a, &svc, None, &[writer("pgdata")])
                .unwrap(),
            Claimed::Granted
        );
        assert_eq!(
            s.claim_volumes(&b, &svc, None, &[writer("pgdata")])
                .unwrap(),
            Claimed::HeldBy {
                volume: "pgdata".into(),
                holder: a.clone()
            }
        );
        // A reader may mount it meanwhile.
        let reader = NewClaim {
            exclusive: false,
            ..writer("pgdata")
        };
        assert_eq!(
            s.claim_volumes(&b, &svc, None, &[reader]).unwrap(),
            Claimed::Granted
        );
        s.mark_gone(&a, "terminated").unwrap();
        let c = instance(&s, 3);
        assert_eq!(
            s.claim_volumes(&c, &svc, None, &[writer("pgdata")])
                .unwrap(),
            Claimed::Granted,
            "a gone holder's claim is stale"
        );
        assert_eq!(s.release_stale_claims().unwrap(), 1);
        let claims = s.volume_claims().unwrap();
        assert_eq!(claims.len(), 2);
        assert!(claims.iter().all(|c| c.instance != a));
        let vols = s.volumes().unwrap();
        assert_eq!(vols.len(), 1, "one row per volume, written once");
        assert_eq!(vols[0].size, Some(1 << 30));
    }

    // Mutation caught: removal not checking the in-use versions, or claims
    // not refused while a removal is under way.
    #[test]
    fn removal_is_refused_while_declared_or_held_and_blocks_claims() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path()).unwrap();
        let a = instance(&s, 1);
        let svc = name("db");
        s.claim_volumes(&a, &svc, None, &[writer("pgdata")])
            .unwrap();
        assert_eq!(
            s.begin_volume_removal("nope").unwrap(),
            Err(RemovalRefused::NoSuchVolume)
        );
        assert_eq!(
            s.begin_volume_removal("pgdata").unwrap(),
            Err(RemovalRefused::Held {
                instances: vec![a.clone()]
            })
        );
        s.mark_gone(&a, "terminated").unwrap();
        // The newest version declares it: refused.
        let mut env = glint_model::Environment::empty(name("e"));
        env.volumes
            .insert(name("pgdata"), glint_model::Volume::default());
        let new = |env: glint_model::Environment| crate::NewVersion {
            env,
            images: Default::default(),
            root: "/".into(),
            sources: Vec::new(),
            kind: crate::VersionKind::Apply,
        };
        crate::Versions::create_version(&s, new(env)).unwrap();
        assert_eq!(
            s.begin_volume_removal("pgdata").unwrap(),
            Err(RemovalRefused::Declared { versions: vec![1] })
        );
        crate::Versions::create_version(&s, new(glint_model::Environment::empty(name("e"))))
            .unwrap();
        let started = s.begin_volume_removal("pgdata").unwrap().unwrap();
        assert!(started.removing);
        let b = instance(&s, 2);
        assert_eq!(
            s.claim_volumes(&b, &svc, None, &[writer("pgdata")])
                .unwrap(),
            Claimed::Removing {
                volume: "pgdata".into()
            }
        );
        s.finish_volume_removal("pgdata").unwrap();
        assert!(s.volumes().unwrap().is_empty());
        assert_eq!(
            s.claim_volumes(&b, &svc, None, &[writer("pgdata")])
                .unwrap(),
            Claimed::Granted,
            "a new volume once the old one is gone"
        );
    }
}
