//! The operations layer: plan, apply and rollback (requested or automatic),
//! for the CLI today and the HTTP API later.
//!
//! Every version is created here ([`record`]), so every creation is checked
//! the same way and leaves the same events; "last good version" has one
//! meaning ([`glint_store::Versions::last_good_version`]); and every failure
//! is an [`OpError`] whose [`ErrorKind`] becomes an exit code in the CLI and
//! an HTTP status in the API — each in exactly one place
//! (`glint-cli/src/common.rs`, [`crate::api`]).
//!
//! Nothing here compiles or builds: callers hand over a [`NewVersion`]
//! whose environment is checked and whose images are built.

use crate::events::ConductorEvent;
use crate::images::ImageSource;
use crate::plan::{Plan, Target};
use glint_model::{Name, VersionNumber};
use glint_store::prelude::*;
use glint_store::{Created, NewVersion, StoreError, VersionKind, VersionRecord};
use std::collections::BTreeMap;

/// What kind of failure an operation had; transports map it once each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The request cannot be carried out as asked (bad argument).
    Invalid,
    /// What it names does not exist.
    NotFound,
    /// It would do something drastic that needs an explicit flag, or it
    /// conflicts with the current state.
    Conflict,
    /// The operation ran and failed (nothing to roll back to, missing images).
    Failed,
    /// The store or another resource could not be used.
    Unavailable,
}

/// A failed operation.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct OpError {
    /// What kind of failure.
    pub kind: ErrorKind,
    /// For people: what happened and how to fix it.
    pub message: String,
    /// The cause.
    #[source]
    pub source: Option<Box<StoreError>>,
}

impl OpError {
    fn new(kind: ErrorKind, message: impl Into<String>) -> OpError {
        OpError {
            kind,
            message: message.into(),
            source: None,
        }
    }

    fn store(what: &str, e: StoreError) -> OpError {
        OpError {
            kind: ErrorKind::Unavailable,
            message: what.to_owned(),
            source: Some(Box::new(e)),
        }
    }
}

/// A recorded (or unchanged) version.
#[derive(Debug, Clone)]
pub struct Applied {
    /// The version.
    pub version: VersionRecord,
    /// Whether it is new (false: the content matched the newest version).
    pub new: bool,
    /// Earlier versions this one superseded.
    pub superseded: Vec<VersionNumber>,
}

/// Flags that allow drastic applies.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApplyOptions {
    /// Allow a version that retires every running service.
    pub allow_retire_all: bool,
    /// Allow a version of another environment than the current one.
    pub allow_other_environment: bool,
}

/// Records in `env` the current version of every secret its variables
/// name (0 for one that is not set), so that a new secret version changes
/// its readers' launch shape. Returns the secrets that are read by a
/// service but not set, with their readers.
pub fn pin_secrets(
    store: &dyn Store,
    env: &mut glint_model::Environment,
) -> Result<Vec<(String, Vec<Name>)>, OpError> {
    let set: BTreeMap<String, u64> = store
        .secrets()
        .map_err(|e| OpError::store("cannot read secrets", e))?
        .into_iter()
        .map(|r| (r.name, r.version))
        .collect();
    let readers: Vec<(String, Vec<Name>)> = env
        .secret_readers()
        .into_iter()
        .map(|(n, r)| (n.to_owned(), r.into_iter().cloned().collect()))
        .collect();
    env.secret_versions = readers
        .iter()
        .map(|(n, _)| (n.clone(), set.get(n).copied().unwrap_or(0)))
        .collect();
    Ok(readers
        .into_iter()
        .filter(|(n, r)| !set.contains_key(n) && !r.is_empty())
        .collect())
}

/// [`pin_secrets`], refusing (nothing recorded) when a service reads a
/// secret that is not set, with the command that sets it.
fn require_secrets(store: &dyn Store, env: &mut glint_model::Environment) -> Result<(), OpError> {
    let missing = pin_secrets(store, env)?;
    if missing.is_empty() {
        return Ok(());
    }
    let what: Vec<String> = missing
        .iter()
        .map(|(n, r)| format!("secret {n} (read by {})", list(r)))
        .collect();
    let commands: Vec<String> = missing
        .iter()
        .map(|(n, _)| format!("`glint secret set {n}`"))
        .collect();
    Err(OpError::new(
        ErrorKind::Failed,
        format!(
            "{} {} not set; nothing was changed. Set {} with {} (the value is read from standard input) and apply again",
            what.join(", "),
            if missing.len() == 1 { "is" } else { "are" },
            if missing.len() == 1 { "it" } else { "them" },
            commands.join(", ")
        ),
    ))
}

/// Refuses (nothing recorded) a candidate whose `notify` sink names a
/// secret that is not set: its messages could never be signed or keyed.
fn require_notify_secrets(
    store: &dyn Store,
    env: &glint_model::Environment,
) -> Result<(), OpError> {
    let set: std::collections::BTreeSet<String> = store
        .secrets()
        .map_err(|e| OpError::store("cannot read secrets", e))?
        .into_iter()
        .map(|r| r.name)
        .collect();
    let missing: Vec<(String, &Name)> = env
        .notify
        .iter()
        .filter_map(|(sink, n)| n.secret.clone().map(|s| (s, sink)))
        .filter(|(s, _)| !set.contains(s))
        .collect();
    let Some((secret, sink)) = missing.first() else {
        return Ok(());
    };
    Err(OpError::new(
        ErrorKind::Failed,
        format!(
            "secret {secret} (the key of notify {sink}) is not set; nothing was changed. Set it with `glint secret set {secret}` (the value is read from standard input) and apply again"
        ),
    ))
}

/// The plan that takes the current version and the live instances to
/// `candidate` (with its secrets' current versions, see [`pin_secrets`]).
pub fn plan(store: &dyn Store, candidate: &NewVersion) -> Result<Plan, OpError> {
    let mut pinned = candidate.clone();
    pin_secrets(store, &mut pinned.env)?;
    let candidate = &pinned;
    let io = |e| OpError::store("cannot read the store", e);
    let current = store.latest_version().map_err(io)?;
    let live = store.live_instances().map_err(io)?;
    let mut versions: BTreeMap<VersionNumber, VersionRecord> = BTreeMap::new();
    for rec in &live {
        if let std::collections::btree_map::Entry::Vacant(e) = versions.entry(rec.version) {
            e.insert(store.version(rec.version).map_err(io)?);
        }
    }
    let targets: BTreeMap<VersionNumber, Target<'_>> =
        versions.iter().map(|(n, v)| (*n, Target::of(v))).collect();
    let next = Target {
        env: &candidate.env,
        images: &candidate.images,
    };
    let scaled: BTreeMap<Name, u32> = store
        .scale_records()
        .map_err(io)?
        .into_iter()
        .map(|r| (r.service, r.desired))
        .collect();
    Ok(crate::plan::plan_scaled(
        current.as_ref().map(|c| (c.number, Target::of(c))),
        &targets,
        &live,
        next,
        &scaled,
    ))
}

/// Records `candidate` as a new version (unless it equals the newest), after
/// refusing what would silently make an environment vanish: a version of
/// another environment, or one that retires every running service, unless
/// `options` allow it.
pub fn apply(
    store: &dyn Store,
    mut candidate: NewVersion,
    options: ApplyOptions,
) -> Result<Applied, OpError> {
    require_secrets(store, &mut candidate.env)?;
    require_notify_secrets(store, &candidate.env)?;
    let io = |e| OpError::store("cannot read the store", e);
    if let Some(current) = store.latest_version().map_err(io)? {
        let running: Vec<Name> = current.env.services.keys().cloned().collect();
        if current.env.name != candidate.env.name
            && !running.is_empty()
            && !options.allow_other_environment
        {
            return Err(OpError::new(
                ErrorKind::Conflict,
                format!(
                    "this data directory runs environment `{}`, and the file declares environment `{}`: applying it would retire everything `{}` runs ({}); nothing was changed. Use another --data-dir for `{}`, or pass --replace-environment to replace it",
                    current.env.name,
                    candidate.env.name,
                    current.env.name,
                    list(&running),
                    candidate.env.name
                ),
            ));
        }
        if candidate.env.services.is_empty() && !running.is_empty() && !options.allow_retire_all {
            return Err(OpError::new(
                ErrorKind::Conflict,
                format!(
                    "the file declares no services: applying it would retire every running service ({}); nothing was changed. Pass --allow-retire-all if that is what you want",
                    list(&running)
                ),
            ));
        }
    }
    record(store, candidate)
}

fn list(names: &[Name]) -> String {
    names
        .iter()
        .map(Name::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Records a new version whose content is version `to`'s — the last good
/// version when `to` is `None` — after checking that `to` exists, is
/// earlier than the current version, and that its images are intact.
pub fn rollback(
    store: &dyn Store,
    images: &dyn ImageSource,
    to: Option<VersionNumber>,
) -> Result<Applied, OpError> {
    record(store, rollback_candidate(store, images, to)?)
}

/// The version [`rollback`] would record, checked the same way, without
/// recording it (to show its plan first).
pub fn rollback_candidate(
    store: &dyn Store,
    images: &dyn ImageSource,
    to: Option<VersionNumber>,
) -> Result<NewVersion, OpError> {
    let io = |e| OpError::store("cannot read versions", e);
    let Some(current) = store.latest_version().map_err(io)? else {
        return Err(OpError::new(
            ErrorKind::Failed,
            "nothing has been applied yet: there is nothing to roll back",
        ));
    };
    let to = match to {
        Some(n) => {
            match store.version_outcome(n) {
                Err(StoreError::NoSuchVersion(_)) => {
                    return Err(OpError::new(
                        ErrorKind::NotFound,
                        format!(
                            "version {n} does not exist: versions go from 1 to {} (see `glint history`)",
                            current.number
                        ),
                    ));
                }
                Err(e) => return Err(io(e)),
                Ok(_) => {}
            }
            if n >= current.number {
                return Err(OpError::new(
                    ErrorKind::Invalid,
                    format!(
                        "version {n} is not earlier than the current version {}: roll back to an earlier one (see `glint history`)",
                        current.number
                    ),
                ));
            }
            n
        }
        None => store.last_good_version(current.number).map_err(io)?.ok_or_else(|| {
            OpError::new(
                ErrorKind::Failed,
                "no earlier version with different content ever converged; name one: `glint rollback VERSION`",
            )
        })?,
    };
    let old = store.version(to).map_err(io)?;
    for (name, digest) in &old.images {
        if let Err(e) = images.verify(digest) {
            return Err(OpError::new(
                ErrorKind::Failed,
                format!(
                    "version {to} needs image {name} ({digest}), which is missing or damaged in the image store ({}); nothing was changed",
                    e.message
                ),
            ));
        }
    }
    let mut env = old.env;
    // The store holds each secret's current value only: the rollback
    // delivers it, and records its current version.
    require_secrets(store, &mut env)?;
    Ok(NewVersion {
        env,
        images: old.images,
        root: old.root,
        sources: old.sources,
        kind: VersionKind::Rollback(to),
    })
}

/// What an automatic rollback recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RolledBack {
    /// The new version.
    pub version: VersionNumber,
    /// The version whose content it restores.
    pub restores: VersionNumber,
}

/// Rolls a failed version back to the last good version: records a new
/// version with its content and, in the same transaction, marks the failed
/// one rolled back (so it is never seen failed-but-not-rolled-back). `None`
/// when there is no good version to return to: the caller records the
/// failure.
pub fn roll_back_automatically(
    store: &dyn Store,
    failed: &VersionRecord,
    reason: &str,
) -> Result<Option<RolledBack>, OpError> {
    let io = |e| OpError::store("cannot roll back", e);
    let Some(good) = store.last_good_version(failed.number).map_err(io)? else {
        return Ok(None);
    };
    let old = store.version(good).map_err(io)?;
    let detail = format!("{reason}; rolled back to version {good}");
    let mut env = old.env;
    pin_secrets(store, &mut env)?;
    let applied = record_with(
        store,
        NewVersion {
            env,
            images: old.images,
            root: old.root,
            sources: old.sources,
            kind: VersionKind::AutoRollback(good),
        },
        Some((failed.number, &detail)),
    )?;
    Ok(Some(RolledBack {
        version: applied.version.number,
        restores: good,
    }))
}

/// Creates a version — the one place versions are created — and records
/// its events.
pub fn record(store: &dyn Store, new: NewVersion) -> Result<Applied, OpError> {
    record_with(store, new, None)
}

fn record_with(
    store: &dyn Store,
    new: NewVersion,
    rolls_back: Option<(VersionNumber, &str)>,
) -> Result<Applied, OpError> {
    let kind = new.kind;
    let created = match rolls_back {
        None => store.create_version(new),
        Some((failed, detail)) => store.create_rollback_version(new, failed, detail),
    }
    .map_err(|e| OpError::store("cannot record the version", e))?;
    let (version, superseded) = match created {
        Created::Unchanged(v) => {
            return Ok(Applied {
                version: v,
                new: false,
                superseded: Vec::new(),
            });
        }
        Created::New {
            version,
            superseded,
        } => (version, superseded),
    };
    let mut events = Vec::new();
    for s in &superseded {
        events.push(ConductorEvent::Superseded {
            version: *s,
            by: version.number,
        });
    }
    match kind {
        VersionKind::Apply => events.push(ConductorEvent::Applied {
            version: version.number,
            services: version.env.services.len(),
            hash: version.hash.short().to_owned(),
        }),
        VersionKind::Rollback(to) => events.push(ConductorEvent::RollbackRecorded {
            version: version.number,
            to,
        }),
        // The conductor records the automatic rollback's own event.
        VersionKind::AutoRollback(_) => {}
        VersionKind::Down => events.push(ConductorEvent::DownRecorded {
            version: version.number,
        }),
    }
    for e in events {
        if let Err(err) = store.append_event(e.to_event()) {
            tracing::warn!("the version is recorded, but its event is not: {err}");
        }
    }
    Ok(Applied {
        version,
        new: true,
        superseded,
    })
}

/// The versions, oldest first.
pub fn history(store: &dyn Store) -> Result<Vec<glint_store::VersionSummary>, OpError> {
    store
        .list_versions()
        .map_err(|e| OpError::store("cannot read versions", e))
}
