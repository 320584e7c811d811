//! The volumes reconciler: who holds which volume, and where volumes are.
//!
//! On every pass it deletes the store's claims of instances that are gone
//! (so a volume is released exactly when its holder has ended: the
//! instances reconciler marks an instance gone only once its provider says
//! it has stopped) and loads the claims into [`World::claims`], which
//! `decide` reads to start a writer only when nobody holds its volume.
//!
//! It also asks providers where each volume's data is — once for a volume
//! it has not located yet (emitting `volume.created`), and every
//! [`CHECK_EVERY_MS`] for usage — and reports a volume that uses more than
//! its declared size (`volume.over_size`; sizes are not quotas).
//!
//! It never removes a volume, nor asks a provider to: retirements,
//! rollbacks, `glint up`'s Ctrl-C and orphan sweeps leave volumes alone;
//! only `glint volume rm` deletes one.
//!
//! [`claim`] is the claim a launch makes (called by the instances
//! reconciler between the `launching` intent and the provider's launch).

use crate::events::ConductorEvent;
use crate::reconciler::{Action, Ctx, Inbox, ReconcileError, Reconciler, Waker};
use crate::world::World;
use async_trait::async_trait;
use glint_model::{Environment, InstanceId, ProviderKind};
use glint_provider::{LaunchSpec, VolumeInfo};
use glint_store::{Claimed, NewClaim};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// How often volumes' usage is measured.
pub const CHECK_EVERY_MS: i64 = 60_000;

/// The volumes one instance holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Held {
    /// Its slot (per-instance volumes).
    pub slot: Option<u32>,
    /// The volumes it holds read-write (one writer at a time).
    pub writes: Vec<String>,
    /// Every volume it mounts.
    pub mounts: Vec<String>,
}

/// Why a launch's claim was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimRefused {
    /// Another instance that is not gone holds a volume read-write.
    Held {
        /// The volume.
        volume: String,
        /// The holder.
        holder: InstanceId,
    },
    /// The volume is being removed.
    Removing {
        /// The volume.
        volume: String,
    },
}

impl std::fmt::Display for ClaimRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClaimRefused::Held { volume, holder } => {
                write!(f, "volume {volume} is still held by {holder}")
            }
            ClaimRefused::Removing { volume } => write!(f, "volume {volume} is being removed"),
        }
    }
}

/// Claims the volumes `spec` mounts for instance `id` (in one
/// compare-and-set transaction) and records them in the world. Nothing to
/// claim is a success without a write.
pub fn claim(
    world: &mut World,
    ctx: &Ctx,
    env: &Environment,
    provider: ProviderKind,
    slot: Option<u32>,
    spec: &LaunchSpec,
) -> Result<Result<(), ClaimRefused>, glint_store::StoreError> {
    if spec.mounts.is_empty() {
        return Ok(Ok(()));
    }
    let claims: Vec<NewClaim> = spec
        .mounts
        .iter()
        .map(|m| NewClaim {
            volume: m.volume.clone(),
            declared: m.declared.clone(),
            provider,
            size: env
                .volumes
                .get(&m.declared)
                .and_then(|v| v.size)
                .map(|b| b.0),
            exclusive: m.exclusive && !m.read_only,
        })
        .collect();
    let id = &spec.labels.instance;
    match ctx
        .store
        .claim_volumes(id, &spec.labels.service, slot, &claims)?
    {
        Claimed::Granted => {
            world.claims.insert(
                id.clone(),
                Held {
                    slot,
                    writes: claims
                        .iter()
                        .filter(|c| c.exclusive)
                        .map(|c| c.volume.clone())
                        .collect(),
                    mounts: claims.iter().map(|c| c.volume.clone()).collect(),
                },
            );
            Ok(Ok(()))
        }
        Claimed::HeldBy { volume, holder } => Ok(Err(ClaimRefused::Held { volume, holder })),
        Claimed::Removing { volume } => Ok(Err(ClaimRefused::Removing { volume })),
    }
}

/// What a location lookup reports.
#[derive(Debug)]
pub struct Located {
    volume: String,
    result: Result<Option<VolumeInfo>, String>,
}

/// See the module documentation.
pub struct Volumes {
    inbox: Inbox<Located>,
    /// Lookups under way.
    asking: BTreeSet<String>,
    /// When each volume was last looked at.
    checked: BTreeMap<String, i64>,
    /// Volumes reported over their size (reported again once back under).
    over: BTreeSet<String>,
    notes: Vec<String>,
}

impl Volumes {
    /// A new reconciler.
    pub fn new(waker: &Waker) -> Volumes {
        Volumes {
            inbox: Inbox::new(waker),
            asking: BTreeSet::new(),
            checked: BTreeMap::new(),
            over: BTreeSet::new(),
            notes: Vec::new(),
        }
    }
}

#[async_trait]
impl Reconciler for Volumes {
    fn name(&self) -> &'static str {
        "volumes"
    }

    async fn reconcile(&mut self, world: &mut World, ctx: &Ctx) -> Result<Action, ReconcileError> {
        let now = ctx.now();
        self.notes.clear();
        let records: BTreeMap<String, glint_store::VolumeRecord> = ctx
            .store
            .volumes()?
            .into_iter()
            .map(|v| (v.name.clone(), v))
            .collect();
        for Located { volume, result } in self.inbox.drain() {
            self.asking.remove(&volume);
            let Some(rec) = records.get(&volume) else {
                continue;
            };
            match result {
                Ok(Some(info)) => {
                    let host = info.host_path.as_ref().map(|p| p.display().to_string());
                    if rec.location.as_deref() != Some(info.location.as_str())
                        || rec.host_path != host
                    {
                        ctx.store
                            .set_volume_location(&volume, &info.location, host.as_deref())?;
                        if rec.location.is_none() {
                            ctx.events.emit(ConductorEvent::VolumeCreated {
                                volume: volume.clone(),
                                provider: rec.provider,
                                location: info.location.clone(),
                            });
                        }
                    }
                    match (info.used_bytes, rec.size) {
                        (Some(used), Some(size)) if used > size => {
                            if self.over.insert(volume.clone()) {
                                ctx.events.emit(ConductorEvent::VolumeOverSize {
                                    volume: volume.clone(),
                                    used,
                                    size,
                                });
                            }
                        }
                        _ => {
                            self.over.remove(&volume);
                        }
                    }
                }
                Ok(None) => {}
                Err(e) => self.notes.push(format!("volume {volume}: {e}")),
            }
        }
        ctx.store.release_stale_claims()?;
        let mut claims: BTreeMap<InstanceId, Held> = BTreeMap::new();
        for c in ctx.store.volume_claims()? {
            let h = claims.entry(c.instance.clone()).or_default();
            h.slot = h.slot.or(c.slot);
            if c.exclusive {
                h.writes.push(c.volume.clone());
            }
            h.mounts.push(c.volume);
        }
        world.claims = claims;

        // Where volumes are, and how full.
        let mut next = now + CHECK_EVERY_MS;
        for (name, rec) in &records {
            let due = match (&rec.location, self.checked.get(name)) {
                (None, _) => true,
                (Some(_), Some(at)) => now - at >= CHECK_EVERY_MS,
                (Some(_), None) => true,
            };
            if !due || rec.removing || self.asking.contains(name) {
                if let Some(at) = self.checked.get(name) {
                    next = next.min(at + CHECK_EVERY_MS);
                }
                continue;
            }
            // Only volumes some instance has mounted have been created.
            let Some(provider) = world.providers.get(&rec.provider).cloned() else {
                continue;
            };
            if rec.location.is_none() && !world.claims.values().any(|h| h.mounts.contains(name)) {
                continue;
            }
            self.asking.insert(name.clone());
            self.checked.insert(name.clone(), now);
            let post = self.inbox.post();
            let volume = name.clone();
            tokio::spawn(async move {
                let result =
                    tokio::time::timeout(Duration::from_secs(30), provider.volume(&volume))
                        .await
                        .map_err(|_| "the provider did not answer within 30s".to_owned())
                        .and_then(|r| r.map_err(|e| crate::error_chain(&e)));
                post.send(Located { volume, result });
            });
        }
        // A volume without a location is looked up again once its first
        // instance has launched (the next pass), else on the check interval.
        let unlocated = records.values().any(|r| {
            r.location.is_none()
                && world.providers.contains_key(&r.provider)
                && world.claims.values().any(|h| h.mounts.contains(&r.name))
        });
        Ok(if unlocated {
            Action::requeue(Duration::from_secs(1))
        } else {
            Action::requeue_at(next, now)
        })
    }

    fn notes(&self) -> Vec<String> {
        self.notes.clone()
    }
}
