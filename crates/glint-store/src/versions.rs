//! Versions: immutable, numbered snapshots of the whole environment.
//!
//! A version holds the compiled [`Environment`], the digest of every image it
//! uses, the sources it was compiled from and the root directory they came
//! from. Its hash covers the environment and the image digests: two versions
//! with the same hash would launch identical instances. Versions are only ever
//! inserted; the newest one is what the conductor converges to.

use crate::sqlite::SqliteStore;
use crate::{StoreError, from_ms};
use glint_model::{ContentHash, Digest, Environment, Name, VersionNumber};
use rusqlite::{OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::SystemTime;

/// One source file a version was compiled from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceFile {
    /// Path relative to the environment root (or as given, for policy files).
    pub path: String,
    /// Its text.
    pub text: String,
}

/// How a version came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "restores")]
pub enum VersionKind {
    /// `glint apply` / `glint up`.
    Apply,
    /// `glint rollback`: the content of an earlier version.
    Rollback(VersionNumber),
    /// The conductor rolled a failed rollout back to an earlier version.
    AutoRollback(VersionNumber),
    /// `glint down`: the environment without its services and endpoints.
    Down,
}

impl VersionKind {
    fn tag(self) -> &'static str {
        match self {
            VersionKind::Apply => "apply",
            VersionKind::Rollback(_) => "rollback",
            VersionKind::AutoRollback(_) => "auto_rollback",
            VersionKind::Down => "down",
        }
    }

    fn restores(self) -> Option<i64> {
        match self {
            VersionKind::Apply | VersionKind::Down => None,
            VersionKind::Rollback(n) | VersionKind::AutoRollback(n) => Some(n.0 as i64),
        }
    }

    fn from_columns(tag: &str, restores: Option<i64>) -> Option<VersionKind> {
        let n = || restores.map(|n| VersionNumber(n as u64));
        match tag {
            "apply" => Some(VersionKind::Apply),
            "rollback" => n().map(VersionKind::Rollback),
            "auto_rollback" => n().map(VersionKind::AutoRollback),
            "down" => Some(VersionKind::Down),
            _ => None,
        }
    }
}

impl std::fmt::Display for VersionKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VersionKind::Apply => f.write_str("apply"),
            VersionKind::Rollback(n) => write!(f, "rollback to {n}"),
            VersionKind::AutoRollback(n) => write!(f, "automatic rollback to {n}"),
            VersionKind::Down => f.write_str("down"),
        }
    }
}

/// How a version's rollout ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Every service ran its declared count of healthy instances of it.
    Converged,
    /// Its rollout failed (failing new instances, or no progress before the
    /// deadline) and was not rolled back.
    Failed,
    /// Its rollout failed and a rollback version replaced it.
    RolledBack,
    /// A newer version arrived before it converged.
    Superseded,
}

impl Outcome {
    /// The stored and displayed name.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Converged => "converged",
            Outcome::Failed => "failed",
            Outcome::RolledBack => "rolled_back",
            Outcome::Superseded => "superseded",
        }
    }

    fn parse(s: &str) -> Option<Outcome> {
        match s {
            "converged" => Some(Outcome::Converged),
            "failed" => Some(Outcome::Failed),
            "rolled_back" => Some(Outcome::RolledBack),
            "superseded" => Some(Outcome::Superseded),
            _ => None,
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Outcome::Converged => "converged",
            Outcome::Failed => "failed",
            Outcome::RolledBack => "rolled back",
            Outcome::Superseded => "superseded",
        })
    }
}

/// What `create_version` needs.
#[derive(Debug, Clone)]
pub struct NewVersion {
    /// The compiled environment.
    pub env: Environment,
    /// The digest of every image, by image name.
    pub images: BTreeMap<Name, Digest>,
    /// The directory the sources' relative paths start from.
    pub root: PathBuf,
    /// The sources.
    pub sources: Vec<SourceFile>,
    /// How it came to be.
    pub kind: VersionKind,
}

impl NewVersion {
    /// The hash the version will have.
    pub fn hash(&self) -> ContentHash {
        content_hash(&self.env, &self.images)
    }
}

/// The hash of a version's content: the environment and its image digests.
pub fn content_hash(env: &Environment, images: &BTreeMap<Name, Digest>) -> ContentHash {
    ContentHash::of(&(env, images))
}

/// A stored version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VersionRecord {
    /// Its number.
    pub number: VersionNumber,
    /// Hash of its content.
    pub hash: ContentHash,
    /// The compiled environment.
    pub env: Environment,
    /// Image digests by image name.
    pub images: BTreeMap<Name, Digest>,
    /// Root directory of the sources.
    pub root: PathBuf,
    /// The sources.
    pub sources: Vec<SourceFile>,
    /// How it came to be.
    pub kind: VersionKind,
    /// When it was created.
    pub created_at: SystemTime,
    /// How its rollout ended, once it has.
    pub outcome: Option<Outcome>,
    /// Why (for failures), or how long it took (for convergence).
    pub outcome_detail: Option<String>,
}

/// A version without its content, for listings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionSummary {
    /// Its number.
    pub number: VersionNumber,
    /// Hash of its content.
    pub hash: ContentHash,
    /// How it came to be.
    pub kind: VersionKind,
    /// When it was created (ms since the epoch).
    pub created_at: i64,
    /// How its rollout ended, once it has.
    pub outcome: Option<Outcome>,
    /// Why (for failures), or how long it took (for convergence).
    pub outcome_detail: Option<String>,
}

/// The result of [`Versions::create_version`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    /// A new version was recorded.
    New {
        /// The new version.
        version: VersionRecord,
        /// Earlier versions whose rollout had not ended: they are recorded as
        /// superseded in the same transaction.
        superseded: Vec<VersionNumber>,
    },
    /// The newest version already has this content; nothing was recorded.
    Unchanged(VersionRecord),
}

/// Versions: immutable, numbered snapshots of the environment.
pub trait Versions {
    /// Records a new version with the next number, unless the newest version
    /// has the same content and `new` is an apply (then nothing is written).
    /// Earlier versions whose rollout has not ended are marked superseded in
    /// the same transaction. Atomic.
    fn create_version(&self, new: NewVersion) -> Result<Created, StoreError>;

    /// Records `new` — the content of an earlier version — because version
    /// `failed` failed, and, in the same transaction, records `failed` as
    /// rolled back with `detail` (if its rollout has not ended otherwise), so
    /// that nobody ever sees the failed version as failed and not yet rolled
    /// back, or as superseded.
    fn create_rollback_version(
        &self,
        new: NewVersion,
        failed: VersionNumber,
        detail: &str,
    ) -> Result<Created, StoreError>;

    /// The newest version (what the conductor converges to), if any.
    fn latest_version(&self) -> Result<Option<VersionRecord>, StoreError>;

    /// The number of the newest version, cheaply.
    fn latest_version_number(&self) -> Result<Option<VersionNumber>, StoreError>;

    /// One version ([`StoreError::NoSuchVersion`] if there is none).
    fn version(&self, number: VersionNumber) -> Result<VersionRecord, StoreError>;

    /// All versions, oldest first, without their content.
    fn list_versions(&self) -> Result<Vec<VersionSummary>, StoreError>;

    /// How a version's rollout ended, if it has, with its detail — without
    /// loading the version's content.
    fn version_outcome(
        &self,
        number: VersionNumber,
    ) -> Result<Option<(Outcome, Option<String>)>, StoreError>;

    /// Records how a version's rollout ended. Only the first outcome sticks
    /// (returns whether this call set it).
    fn set_outcome(
        &self,
        number: VersionNumber,
        outcome: Outcome,
        detail: &str,
    ) -> Result<bool, StoreError>;

    /// Changes a failed version's outcome to rolled back (after the rollback
    /// version was recorded).
    fn mark_rolled_back(&self, number: VersionNumber, detail: &str) -> Result<(), StoreError>;

    /// The *last good version* before `before`: the newest earlier version
    /// whose rollout converged and whose content differs from `before`'s.
    /// This is the one meaning of "last good" — what an automatic rollback
    /// returns to, and what `glint rollback` without a number picks.
    fn last_good_version(&self, before: VersionNumber)
    -> Result<Option<VersionNumber>, StoreError>;
}

impl Versions for SqliteStore {
    fn create_version(&self, new: NewVersion) -> Result<Created, StoreError> {
        self.insert_version(new, None)
    }

    fn create_rollback_version(
        &self,
        new: NewVersion,
        failed: VersionNumber,
        detail: &str,
    ) -> Result<Created, StoreError> {
        self.insert_version(new, Some((failed, detail)))
    }

    fn latest_version(&self) -> Result<Option<VersionRecord>, StoreError> {
        let conn = self.lock();
        conn.query_row(
            &format!("{SELECT_VERSION} ORDER BY number DESC LIMIT 1"),
            [],
            |r| Ok(self.version_from_row(r)),
        )
        .optional()
        .map_err(|e| self.err("cannot read versions", e))?
        .transpose()
    }

    fn latest_version_number(&self) -> Result<Option<VersionNumber>, StoreError> {
        self.lock()
            .query_row("SELECT max(number) FROM versions", [], |r| {
                r.get::<_, Option<i64>>(0)
            })
            .map(|n| n.map(|n| VersionNumber(n as u64)))
            .map_err(|e| self.err("cannot read versions", e))
    }

    fn version(&self, number: VersionNumber) -> Result<VersionRecord, StoreError> {
        let conn = self.lock();
        conn.query_row(
            &format!("{SELECT_VERSION} WHERE number = ?1"),
            [number.0 as i64],
            |r| Ok(self.version_from_row(r)),
        )
        .optional()
        .map_err(|e| self.err("cannot read versions", e))?
        .ok_or(StoreError::NoSuchVersion(number.0))?
    }

    fn list_versions(&self) -> Result<Vec<VersionSummary>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare(
                "SELECT number, hash, kind, restores, created_at, outcome, outcome_detail FROM versions ORDER BY number",
            )
            .map_err(|e| self.err("cannot read versions", e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Option<i64>>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, Option<String>>(5)?,
                    r.get::<_, Option<String>>(6)?,
                ))
            })
            .map_err(|e| self.err("cannot read versions", e))?;
        let mut out = Vec::new();
        for row in rows {
            let (number, hash, kind, restores, created_at, outcome, outcome_detail) =
                row.map_err(|e| self.err("cannot read versions", e))?;
            let kind = VersionKind::from_columns(&kind, restores)
                .ok_or_else(|| self.corrupt("version kind", &kind))?;
            out.push(VersionSummary {
                number: VersionNumber(number as u64),
                hash: ContentHash::from_hex(hash),
                kind,
                created_at,
                outcome: outcome.as_deref().and_then(Outcome::parse),
                outcome_detail,
            });
        }
        Ok(out)
    }

    fn version_outcome(
        &self,
        number: VersionNumber,
    ) -> Result<Option<(Outcome, Option<String>)>, StoreError> {
        let row: Option<(Option<String>, Option<String>)> = self
            .lock()
            .query_row(
                "SELECT outcome, outcome_detail FROM versions WHERE number = ?1",
                [number.0 as i64],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.err("cannot read versions", e))?;
        let (outcome, detail) = row.ok_or(StoreError::NoSuchVersion(number.0))?;
        Ok(outcome
            .as_deref()
            .and_then(Outcome::parse)
            .map(|o| (o, detail)))
    }

    fn set_outcome(
        &self,
        number: VersionNumber,
        outcome: Outcome,
        detail: &str,
    ) -> Result<bool, StoreError> {
        let now = self.now();
        self.write("cannot record a version's outcome", |tx| {
            tx.execute(
                "UPDATE versions SET outcome = ?2, outcome_detail = ?3, outcome_at = ?4
                 WHERE number = ?1 AND outcome IS NULL",
                params![number.0 as i64, outcome.as_str(), detail, now],
            )
            .map(|n| n > 0)
            .map_err(|e| self.err("cannot record a version's outcome", e))
        })
    }

    fn mark_rolled_back(&self, number: VersionNumber, detail: &str) -> Result<(), StoreError> {
        let now = self.now();
        self.write("cannot record a version's outcome", |tx| {
            tx.execute(
                "UPDATE versions SET outcome = 'rolled_back', outcome_detail = ?2, outcome_at = ?3
                 WHERE number = ?1",
                params![number.0 as i64, detail, now],
            )
            .map(|_| ())
            .map_err(|e| self.err("cannot record a version's outcome", e))
        })
    }

    fn last_good_version(
        &self,
        before: VersionNumber,
    ) -> Result<Option<VersionNumber>, StoreError> {
        self.lock()
            .query_row(
                "SELECT max(v.number) FROM versions v
                 WHERE v.number < ?1 AND v.outcome = 'converged'
                   AND v.hash IS NOT (SELECT hash FROM versions WHERE number = ?1)",
                [before.0 as i64],
                |r| r.get::<_, Option<i64>>(0),
            )
            .map(|n| n.map(|n| VersionNumber(n as u64)))
            .map_err(|e| self.err("cannot read versions", e))
    }
}

impl SqliteStore {
    fn insert_version(
        &self,
        new: NewVersion,
        rolled_back: Option<(VersionNumber, &str)>,
    ) -> Result<Created, StoreError> {
        let hash = new.hash();
        let env_json =
            serde_json::to_string(&new.env).map_err(|e| self.corrupt("environment", e))?;
        let images_json =
            serde_json::to_string(&new.images).map_err(|e| self.corrupt("images", e))?;
        let sources_json =
            serde_json::to_string(&new.sources).map_err(|e| self.corrupt("sources", e))?;
        let root = new.root.to_string_lossy().into_owned();
        let created_at = self.now();
        let written = self.write("cannot record the version", |tx| {
            if let Some((failed, detail)) = &rolled_back {
                tx.execute(
                    "UPDATE versions SET outcome = 'rolled_back', outcome_detail = ?2, outcome_at = ?3
                     WHERE number = ?1 AND outcome IS NULL",
                    params![failed.0 as i64, detail, created_at],
                )
                .map_err(|e| self.err("cannot record the rollback", e))?;
            }
            let latest: Option<(i64, String)> = tx
                .query_row(
                    "SELECT number, hash FROM versions ORDER BY number DESC LIMIT 1",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(|e| self.err("cannot read versions", e))?;
            if let Some((n, h)) = &latest
                && *h == hash.as_str()
                && new.kind == VersionKind::Apply
            {
                return Ok(Err(VersionNumber(*n as u64)));
            }
            let number = latest.map(|(n, _)| n + 1).unwrap_or(1);
            let superseded: Vec<VersionNumber> = {
                let mut stmt = tx
                    .prepare("SELECT number FROM versions WHERE outcome IS NULL ORDER BY number")
                    .map_err(|e| self.err("cannot read versions", e))?;
                let rows = stmt
                    .query_map([], |r| r.get::<_, i64>(0))
                    .map_err(|e| self.err("cannot read versions", e))?;
                let mut out = Vec::new();
                for r in rows {
                    out.push(VersionNumber(
                        r.map_err(|e| self.err("cannot read versions", e))? as u64,
                    ));
                }
                out
            };
            tx.execute(
                "UPDATE versions SET outcome = 'superseded', outcome_at = ?2,
                   outcome_detail = 'version ' || ?1 || ' arrived before it converged'
                 WHERE outcome IS NULL",
                params![number, created_at],
            )
            .map_err(|e| self.err("cannot record superseded versions", e))?;
            tx.execute(
                "INSERT INTO versions(number, hash, env_json, images_json, root, sources, kind, restores, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    number,
                    hash.as_str(),
                    env_json,
                    images_json,
                    root,
                    sources_json,
                    new.kind.tag(),
                    new.kind.restores(),
                    created_at
                ],
            )
            .map_err(|e| self.err("cannot insert version", e))?;
            Ok(Ok((VersionNumber(number as u64), superseded)))
        })?;
        match written {
            Err(unchanged) => self.version(unchanged).map(Created::Unchanged),
            Ok((number, superseded)) => Ok(Created::New {
                version: VersionRecord {
                    number,
                    hash,
                    env: new.env,
                    images: new.images,
                    root: new.root,
                    sources: new.sources,
                    kind: new.kind,
                    created_at: from_ms(created_at),
                    outcome: None,
                    outcome_detail: None,
                },
                superseded,
            }),
        }
    }

    fn version_from_row(&self, r: &Row<'_>) -> Result<VersionRecord, StoreError> {
        let get = |i: usize| -> Result<String, StoreError> {
            r.get::<_, String>(i)
                .map_err(|e| self.err("cannot read version", e))
        };
        let number: i64 = r.get(0).map_err(|e| self.err("cannot read version", e))?;
        let env: Environment =
            serde_json::from_str(&get(2)?).map_err(|e| self.corrupt("environment", e))?;
        let images: BTreeMap<Name, Digest> =
            serde_json::from_str(&get(3)?).map_err(|e| self.corrupt("images", e))?;
        let sources: Vec<SourceFile> =
            serde_json::from_str(&get(5)?).map_err(|e| self.corrupt("sources", e))?;
        let kind_tag = get(6)?;
        let restores: Option<i64> = r.get(7).map_err(|e| self.err("cannot read version", e))?;
        let kind = VersionKind::from_columns(&kind_tag, restores)
            .ok_or_else(|| self.corrupt("version kind", &kind_tag))?;
        let created_at: i64 = r.get(8).map_err(|e| self.err("cannot read version", e))?;
        let outcome: Option<String> = r.get(9).map_err(|e| self.err("cannot read version", e))?;
        let outcome_detail: Option<String> =
            r.get(10).map_err(|e| self.err("cannot read version", e))?;
        Ok(VersionRecord {
            number: VersionNumber(number as u64),
            hash: ContentHash::from_hex(get(1)?),
            env,
            images,
            root: PathBuf::from(get(4)?),
            sources,
            kind,
            created_at: from_ms(created_at),
            outcome: outcome.as_deref().and_then(Outcome::parse),
            outcome_detail,
        })
    }
}

const SELECT_VERSION: &str = "SELECT number, hash, env_json, images_json, root, sources, kind, restores, created_at, outcome, outcome_detail FROM versions";

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Environment {
        Environment::empty(Name::new(name).unwrap())
    }

    fn new_version(e: Environment, kind: VersionKind) -> NewVersion {
        NewVersion {
            env: e,
            images: BTreeMap::new(),
            root: "/src".into(),
            sources: vec![SourceFile {
                path: "main.glint".into(),
                text: "// hi".into(),
            }],
            kind,
        }
    }

    #[test]
    fn versions_are_numbered_and_unchanged_content_is_not_recorded_twice() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path()).unwrap();
        assert_eq!(s.latest_version().unwrap(), None);
        let Created::New { version: v1, .. } = s
            .create_version(new_version(env("a"), VersionKind::Apply))
            .unwrap()
        else {
            panic!("first version must be new")
        };
        assert_eq!(v1.number, VersionNumber(1));
        let again = s
            .create_version(new_version(env("a"), VersionKind::Apply))
            .unwrap();
        assert_eq!(again, Created::Unchanged(v1.clone()));
        let Created::New {
            version: v2,
            superseded,
        } = s
            .create_version(new_version(env("b"), VersionKind::Apply))
            .unwrap()
        else {
            panic!("changed content must be new")
        };
        assert_eq!(v2.number, VersionNumber(2));
        assert_eq!(superseded, [VersionNumber(1)], "v1 never converged");
        assert_eq!(
            s.version(VersionNumber(1)).unwrap().outcome,
            Some(Outcome::Superseded)
        );
        assert_eq!(s.latest_version().unwrap(), Some(v2.clone()));
        assert_eq!(s.version(VersionNumber(1)).unwrap().hash, v1.hash);
        // A rollback restores old content but is still a new version.
        let Created::New { version: v3, .. } = s
            .create_version(new_version(
                env("a"),
                VersionKind::Rollback(VersionNumber(1)),
            ))
            .unwrap()
        else {
            panic!("rollback must be new")
        };
        assert_eq!(v3.hash, v1.hash);
        let list = s.list_versions().unwrap();
        assert_eq!(list.len(), 3);
        assert_eq!(list[2].kind, VersionKind::Rollback(VersionNumber(1)));
        assert!(matches!(
            s.version(VersionNumber(9)),
            Err(StoreError::NoSuchVersion(9))
        ));
    }

    #[test]
    fn outcomes_are_recorded_once_and_find_the_last_good_version() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path()).unwrap();
        s.create_version(new_version(env("a"), VersionKind::Apply))
            .unwrap();
        assert_eq!(s.last_good_version(VersionNumber(1)).unwrap(), None);
        assert!(
            s.set_outcome(VersionNumber(1), Outcome::Converged, "2s")
                .unwrap()
        );
        assert!(
            !s.set_outcome(VersionNumber(1), Outcome::Failed, "x")
                .unwrap(),
            "first wins"
        );
        s.create_version(new_version(env("b"), VersionKind::Apply))
            .unwrap();
        assert!(
            s.set_outcome(VersionNumber(2), Outcome::Failed, "deadline")
                .unwrap()
        );
        s.create_version(new_version(env("c"), VersionKind::Apply))
            .unwrap();
        assert_eq!(
            s.last_good_version(VersionNumber(3)).unwrap(),
            Some(VersionNumber(1))
        );
        s.mark_rolled_back(VersionNumber(2), "rolled back to 1")
            .unwrap();
        let v2 = s.version(VersionNumber(2)).unwrap();
        assert_eq!(v2.outcome, Some(Outcome::RolledBack));
        assert_eq!(
            s.list_versions().unwrap()[0].outcome,
            Some(Outcome::Converged)
        );
        // Last good means different content: a version with a's content
        // skips version 1 and finds the newest other converged one.
        assert!(
            s.set_outcome(VersionNumber(3), Outcome::Converged, "1s")
                .unwrap()
        );
        s.create_version(new_version(
            env("a"),
            VersionKind::Rollback(VersionNumber(1)),
        ))
        .unwrap();
        assert_eq!(
            s.last_good_version(VersionNumber(4)).unwrap(),
            Some(VersionNumber(3))
        );
    }

    #[test]
    fn a_rollback_version_records_the_failed_one_rolled_back_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path()).unwrap();
        s.create_version(new_version(env("a"), VersionKind::Apply))
            .unwrap();
        s.set_outcome(VersionNumber(1), Outcome::Converged, "1s")
            .unwrap();
        s.create_version(new_version(env("b"), VersionKind::Apply))
            .unwrap();
        let Created::New { superseded, .. } = s
            .create_rollback_version(
                new_version(env("a"), VersionKind::AutoRollback(VersionNumber(1))),
                VersionNumber(2),
                "3 new instances failed; rolled back to version 1",
            )
            .unwrap()
        else {
            panic!("a rollback is a new version")
        };
        assert!(superseded.is_empty(), "not superseded: {superseded:?}");
        let v2 = s.version(VersionNumber(2)).unwrap();
        assert_eq!(v2.outcome, Some(Outcome::RolledBack));
        assert_eq!(
            v2.outcome_detail.as_deref(),
            Some("3 new instances failed; rolled back to version 1")
        );
    }

    #[test]
    fn image_digests_are_part_of_the_hash() {
        let a = new_version(env("a"), VersionKind::Apply);
        let mut b = a.clone();
        b.images
            .insert(Name::new("app").unwrap(), Digest::of(b"v2"));
        assert_ne!(a.hash(), b.hash());
    }
}
