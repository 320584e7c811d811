//! Versions: immutable, numbered snapshots of the whole environment.
//!
//! A version holds the compiled [`Environment`], the digest of every image it
//! uses, the sources it was compiled from and the root directory they came
//! from. Its hash covers the environment and the image digests: two versions
//! with the same hash would launch identical instances. Versions are only ever
//! inserted; the newest one is what the conductor converges to.

use crate::{Store, StoreError, from_ms, now_ms};
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
}

impl VersionKind {
    fn tag(self) -> &'static str {
        match self {
            VersionKind::Apply => "apply",
            VersionKind::Rollback(_) => "rollback",
            VersionKind::AutoRollback(_) => "auto_rollback",
        }
    }

    fn restores(self) -> Option<i64> {
        match self {
            VersionKind::Apply => None,
            VersionKind::Rollback(n) | VersionKind::AutoRollback(n) => Some(n.0 as i64),
        }
    }

    fn from_columns(tag: &str, restores: Option<i64>) -> Option<VersionKind> {
        let n = || restores.map(|n| VersionNumber(n as u64));
        match tag {
            "apply" => Some(VersionKind::Apply),
            "rollback" => n().map(VersionKind::Rollback),
            "auto_rollback" => n().map(VersionKind::AutoRollback),
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
        }
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
}

/// A version without its content, for listings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VersionSummary {
    /// Its number.
    pub number: VersionNumber,
    /// Hash of its content.
    pub hash: ContentHash,
    /// How it came to be.
    pub kind: VersionKind,
    /// When it was created (ms since the epoch).
    pub created_at: i64,
}

/// The result of [`Store::create_version`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    /// A new version was recorded.
    New(VersionRecord),
    /// The newest version already has this content; nothing was recorded.
    Unchanged(VersionRecord),
}

impl Store {
    /// Records a new version with the next number, unless the newest version
    /// has the same content (then nothing is written). Atomic.
    pub fn create_version(&self, new: NewVersion) -> Result<Created, StoreError> {
        let hash = new.hash();
        let env_json =
            serde_json::to_string(&new.env).map_err(|e| self.corrupt("environment", e))?;
        let images_json =
            serde_json::to_string(&new.images).map_err(|e| self.corrupt("images", e))?;
        let sources_json =
            serde_json::to_string(&new.sources).map_err(|e| self.corrupt("sources", e))?;
        let root = new.root.to_string_lossy().into_owned();
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| self.err("cannot begin transaction", e))?;
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
            let n = *n as u64;
            drop(tx);
            drop(conn);
            return self.version(VersionNumber(n)).map(Created::Unchanged);
        }
        let number = latest.map(|(n, _)| n + 1).unwrap_or(1);
        let created_at = now_ms();
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
        tx.commit()
            .map_err(|e| self.err("cannot commit version", e))?;
        Ok(Created::New(VersionRecord {
            number: VersionNumber(number as u64),
            hash,
            env: new.env,
            images: new.images,
            root: new.root,
            sources: new.sources,
            kind: new.kind,
            created_at: from_ms(created_at),
        }))
    }

    /// The newest version (what the conductor converges to), if any.
    pub fn latest_version(&self) -> Result<Option<VersionRecord>, StoreError> {
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

    /// The number of the newest version, cheaply.
    pub fn latest_version_number(&self) -> Result<Option<VersionNumber>, StoreError> {
        self.lock()
            .query_row("SELECT max(number) FROM versions", [], |r| {
                r.get::<_, Option<i64>>(0)
            })
            .map(|n| n.map(|n| VersionNumber(n as u64)))
            .map_err(|e| self.err("cannot read versions", e))
    }

    /// One version.
    pub fn version(&self, number: VersionNumber) -> Result<VersionRecord, StoreError> {
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

    /// All versions, oldest first, without their content.
    pub fn list_versions(&self) -> Result<Vec<VersionSummary>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare(
                "SELECT number, hash, kind, restores, created_at FROM versions ORDER BY number",
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
                ))
            })
            .map_err(|e| self.err("cannot read versions", e))?;
        let mut out = Vec::new();
        for row in rows {
            let (number, hash, kind, restores, created_at) =
                row.map_err(|e| self.err("cannot read versions", e))?;
            let kind = VersionKind::from_columns(&kind, restores)
                .ok_or_else(|| self.corrupt("version kind", &kind))?;
            out.push(VersionSummary {
                number: VersionNumber(number as u64),
                hash: ContentHash::from_hex(hash),
                kind,
                created_at,
            });
        }
        Ok(out)
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
        Ok(VersionRecord {
            number: VersionNumber(number as u64),
            hash: ContentHash::from_hex(get(1)?),
            env,
            images,
            root: PathBuf::from(get(4)?),
            sources,
            kind,
            created_at: from_ms(created_at),
        })
    }
}

const SELECT_VERSION: &str = "SELECT number, hash, env_json, images_json, root, sources, kind, restores, created_at FROM versions";

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
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.latest_version().unwrap(), None);
        let Created::New(v1) = s
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
        let Created::New(v2) = s
            .create_version(new_version(env("b"), VersionKind::Apply))
            .unwrap()
        else {
            panic!("changed content must be new")
        };
        assert_eq!(v2.number, VersionNumber(2));
        assert_eq!(s.latest_version().unwrap(), Some(v2.clone()));
        assert_eq!(s.version(VersionNumber(1)).unwrap(), v1);
        // A rollback restores old content but is still a new version.
        let Created::New(v3) = s
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
    fn image_digests_are_part_of_the_hash() {
        let a = new_version(env("a"), VersionKind::Apply);
        let mut b = a.clone();
        b.images
            .insert(Name::new("app").unwrap(), Digest::of(b"v2"));
        assert_ne!(a.hash(), b.hash());
    }
}
