//! API tokens: who may use the conductor's HTTP API, and how much.
//!
//! A token is an *accessor* (a public id, shown in listings and in every
//! audit event) and a *secret* (shown once, when the token is created). The
//! store keeps only a hash of the secret, so a copy of the database grants
//! nothing. Generating secrets and checking them is the conductor's job
//! (`glint_conductor::http::auth`); the store records, lists and revokes.
//!
//! Names are unique among tokens that are not revoked; a revoked token is
//! kept (with the time it was revoked) so audit events keep naming something
//! that `glint token list --all` can show.

use crate::StoreError;
use crate::sqlite::SqliteStore;
use rusqlite::{OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};

/// What a token may do. Ordered: each role may do everything the ones
/// before it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Read everything except secrets: status, history, events, logs,
    /// metrics, the dashboard.
    Viewer,
    /// A viewer that may also plan, apply, roll back and bring an
    /// environment down.
    Deployer,
    /// A deployer that may also manage tokens.
    Admin,
}

impl Role {
    /// Every role, smallest first.
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Deployer, Role::Admin];

    /// The stable name (`viewer`, `deployer`, `admin`).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Deployer => "deployer",
            Role::Admin => "admin",
        }
    }

    /// Parses a stable name.
    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// The next smaller role, if there is one.
    pub fn below(self) -> Option<Role> {
        match self {
            Role::Viewer => None,
            Role::Deployer => Some(Role::Viewer),
            Role::Admin => Some(Role::Deployer),
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A token to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewToken {
    /// Its public id.
    pub accessor: String,
    /// A name for people (`ci`, `alice-laptop`).
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// Only valid for this environment, if set.
    pub environment: Option<String>,
    /// The hash of its secret (never the secret).
    pub secret_hash: String,
    /// When it stops being valid (ms since the epoch), if ever.
    pub expires_at: Option<i64>,
}

/// A recorded token (without its hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Its public id.
    pub accessor: String,
    /// Its name.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// Only valid for this environment, if set.
    pub environment: Option<String>,
    /// When it was created (ms since the epoch).
    pub created_at: i64,
    /// When it stops being valid, if ever.
    pub expires_at: Option<i64>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<i64>,
}

/// Why a token could not be recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenConflict {
    /// A token that is not revoked already has this name.
    NameTaken(String),
}

/// API tokens. See the module documentation.
pub trait Tokens {
    /// Records a token; `Ok(Err(_))` when its name is taken.
    fn create_token(&self, t: &NewToken) -> Result<Result<TokenRecord, TokenConflict>, StoreError>;

    /// Every token, oldest first (revoked ones too).
    fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError>;

    /// A token and the hash of its secret, by accessor.
    fn token_with_hash(&self, accessor: &str) -> Result<Option<(TokenRecord, String)>, StoreError>;

    /// Revokes the token with this accessor, or the live token with this
    /// name; returns it, or `None` when there is no such live token.
    fn revoke_token(&self, accessor_or_name: &str) -> Result<Option<TokenRecord>, StoreError>;
}

const COLUMNS: &str = "accessor, name, role, environment, created_at, expires_at, revoked_at";

impl SqliteStore {
    fn token_from_row(&self, r: &Row<'_>) -> Result<TokenRecord, StoreError> {
        let get = |e| self.err("cannot read tokens", e);
        let role: String = r.get(2).map_err(get)?;
        Ok(TokenRecord {
            accessor: r.get(0).map_err(get)?,
            name: r.get(1).map_err(get)?,
            role: Role::parse(&role).ok_or_else(|| self.corrupt("token role", &role))?,
            environment: r.get(3).map_err(get)?,
            created_at: r.get(4).map_err(get)?,
            expires_at: r.get(5).map_err(get)?,
            revoked_at: r.get(6).map_err(get)?,
        })
    }
}

impl Tokens for SqliteStore {
    fn create_token(&self, t: &NewToken) -> Result<Result<TokenRecord, TokenConflict>, StoreError> {
        let now = self.now();
        self.write("cannot record a token", |tx| {
            let taken: Option<String> = tx
                .query_row(
                    "SELECT accessor FROM tokens WHERE name = ?1 AND revoked_at IS NULL",
                    [&t.name],
                    |r| r.get(0),
                )
                .optional()
                .map_err(|e| self.err("cannot read tokens", e))?;
            if taken.is_some() {
                return Ok(Err(TokenConflict::NameTaken(t.name.clone())));
            }
            tx.execute(
                "INSERT INTO tokens(accessor, name, role, environment, secret_hash, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    t.accessor,
                    t.name,
                    t.role.as_str(),
                    t.environment,
                    t.secret_hash,
                    now,
                    t.expires_at
                ],
            )
            .map_err(|e| self.err("cannot record a token", e))?;
            Ok(Ok(TokenRecord {
                accessor: t.accessor.clone(),
                name: t.name.clone(),
                role: t.role,
                environment: t.environment.clone(),
                created_at: now,
                expires_at: t.expires_at,
                revoked_at: None,
            }))
        })
    }

    fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {COLUMNS} FROM tokens ORDER BY created_at, accessor"
            ))
            .map_err(|e| self.err("cannot read tokens", e))?;
        let mut rows = stmt
            .query([])
            .map_err(|e| self.err("cannot read tokens", e))?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(|e| self.err("cannot read tokens", e))? {
            out.push(self.token_from_row(r)?);
        }
        Ok(out)
    }

    fn token_with_hash(&self, accessor: &str) -> Result<Option<(TokenRecord, String)>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS}, secret_hash FROM tokens WHERE accessor = ?1"
            ))
            .map_err(|e| self.err("cannot read tokens", e))?;
        let mut rows = stmt
            .query([accessor])
            .map_err(|e| self.err("cannot read tokens", e))?;
        match rows.next().map_err(|e| self.err("cannot read tokens", e))? {
            None => Ok(None),
            Some(r) => {
                let rec = self.token_from_row(r)?;
                let hash: String = r.get(7).map_err(|e| self.err("cannot read tokens", e))?;
                Ok(Some((rec, hash)))
            }
        }
    }

    fn revoke_token(&self, accessor_or_name: &str) -> Result<Option<TokenRecord>, StoreError> {
        let now = self.now();
        self.write("cannot revoke a token", |tx| {
            let accessor: Option<String> = tx
                .query_row(
                    "SELECT accessor FROM tokens
                     WHERE (accessor = ?1 OR name = ?1) AND revoked_at IS NULL",
                    [accessor_or_name],
                    |r| r.get(0),
                )
                .optional()
                .map_err(|e| self.err("cannot read tokens", e))?;
            let Some(accessor) = accessor else {
                return Ok(None);
            };
            tx.execute(
                "UPDATE tokens SET revoked_at = ?2 WHERE accessor = ?1",
                params![accessor, now],
            )
            .map_err(|e| self.err("cannot revoke a token", e))?;
            let mut stmt = tx
                .prepare(&format!("SELECT {COLUMNS} FROM tokens WHERE accessor = ?1"))
                .map_err(|e| self.err("cannot read tokens", e))?;
            let mut rows = stmt
                .query([&accessor])
                .map_err(|e| self.err("cannot read tokens", e))?;
            match rows.next().map_err(|e| self.err("cannot read tokens", e))? {
                Some(r) => self.token_from_row(r).map(Some),
                None => Ok(None),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(accessor: &str, name: &str) -> NewToken {
        NewToken {
            accessor: accessor.into(),
            name: name.into(),
            role: Role::Deployer,
            environment: Some("prod".into()),
            secret_hash: format!("hash-of-{accessor}"),
            expires_at: Some(5_000),
        }
    }

    #[test]
    fn tokens_are_recorded_listed_and_revoked_by_accessor_or_name() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path()).unwrap();
        let a = s.create_token(&new("acc1", "ci")).unwrap().unwrap();
        assert_eq!(a.role, Role::Deployer);
        assert_eq!(
            s.create_token(&new("acc2", "ci")).unwrap(),
            Err(TokenConflict::NameTaken("ci".into())),
            "a live name is unique"
        );
        let (rec, hash) = s.token_with_hash("acc1").unwrap().unwrap();
        assert_eq!(rec, a);
        assert_eq!(hash, "hash-of-acc1");
        let revoked = s.revoke_token("ci").unwrap().unwrap();
        assert_eq!(revoked.accessor, "acc1");
        assert!(revoked.revoked_at.is_some());
        assert_eq!(s.revoke_token("acc1").unwrap(), None, "already revoked");
        // The name is free again; the revoked token is still listed.
        s.create_token(&new("acc2", "ci")).unwrap().unwrap();
        let all = s.tokens().unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(
            s.token_with_hash("acc1").unwrap().unwrap().0.revoked_at,
            revoked.revoked_at
        );
    }

    #[test]
    fn roles_are_ordered_and_named() {
        assert!(Role::Viewer < Role::Deployer && Role::Deployer < Role::Admin);
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
        assert_eq!(Role::Admin.below(), Some(Role::Deployer));
        assert_eq!(Role::Viewer.below(), None);
    }
}
