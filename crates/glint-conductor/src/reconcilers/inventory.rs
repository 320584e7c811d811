//! The inventory reconciler: what the store believes against what the
//! providers observe.
//!
//! - **Adoption**, on the first run after a (re)start: every instance row
//!   that is not gone is compared with what its provider observes. A running
//!   instance is adopted (an interrupted launch is recorded as running, an
//!   interrupted retirement is finished); an ended one is recorded gone; one
//!   its provider does not know is recorded vanished. Instances whose
//!   provider is not connected yet are kept as they are and judged once it
//!   is.
//! - **Provider events** (pushed, so reactions are immediate): an exit
//!   removes the instance and counts as a failure when it was not stable
//!   (crash-loop backoff, rollout failure); drift marks it failed (replaced)
//!   unless it is a `docker exec` into a service declared `on_exec =
//!   report`; provider incidents are recorded.
//! - **Resync**, periodically and when a provider asks: the same
//!   comparison as adoption for instances that are not launching or
//!   retiring, so a lost event only delays a correction.
//! - **Orphans**: labelled instances of this store that no live row owns
//!   are removed; unlabelled ones are never touched.

use crate::decide::MemberPhase;
use crate::events::ConductorEvent;
use crate::reconciler::{Action, Ctx, Inbox, Post, ReconcileError, Reconciler, Waker};
use crate::world::{Failure, World};
use async_trait::async_trait;
use glint_model::{InstanceId, OnExec, ProviderKind};
use glint_provider::{DriftKind, Observed, Provider, ProviderEvent, RunState};
use glint_store::{Health, InstanceState};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

/// See the module documentation.
pub struct Inventory {
    inbox: Inbox<ProviderEvent>,
    subscribed: BTreeSet<ProviderKind>,
    last_resync: Option<i64>,
    resync_requested: bool,
    notes: Vec<String>,
}

impl Inventory {
    /// A new inventory whose provider events wake `waker`.
    pub fn new(waker: &Waker) -> Inventory {
        Inventory {
            inbox: Inbox::new(waker),
            subscribed: BTreeSet::new(),
            last_resync: None,
            resync_requested: false,
            notes: Vec::new(),
        }
    }
}

/// Forwards a provider's events into the inbox.
fn forward(provider: &dyn Provider, post: Post<ProviderEvent>) {
    let mut events = provider.subscribe();
    tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(e) => post.send(e),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    post.send(ProviderEvent::Resync)
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            }
        }
    });
}

/// Forgets an ended instance's provider state, in the background.
pub fn spawn_remove(provider: Option<Arc<dyn Provider>>, id: &InstanceId) {
    if let Some(p) = provider {
        let id = id.clone();
        tokio::spawn(async move {
            if let Err(e) = p.remove(&id).await {
                tracing::warn!("cannot clean up {id}: {e}");
            }
        });
    }
}

#[async_trait]
impl Reconciler for Inventory {
    fn name(&self) -> &'static str {
        "inventory"
    }

    async fn reconcile(&mut self, world: &mut World, ctx: &Ctx) -> Result<Action, ReconcileError> {
        for (kind, p) in &world.providers {
            if self.subscribed.insert(*kind) {
                forward(p.as_ref(), self.inbox.post());
                // A newly connected provider: compare at once.
                self.resync_requested = true;
            }
        }
        if !world.adopted {
            self.adopt(world, ctx).await?;
            world.adopted = true;
            self.last_resync = Some(ctx.now());
        }
        let events = self.inbox.drain();
        let changed = !events.is_empty();
        for e in events {
            match e {
                ProviderEvent::Exited { instance, state } => {
                    exited(world, ctx, &instance, state);
                }
                ProviderEvent::Drift {
                    instance,
                    what,
                    kind,
                } => drifted(world, ctx, &instance, &what, kind),
                ProviderEvent::Incident {
                    subject,
                    what,
                    action,
                } => {
                    ctx.events.emit(ConductorEvent::ProviderIncident {
                        subject,
                        what,
                        action,
                    });
                }
                ProviderEvent::Resync => self.resync_requested = true,
            }
        }
        let now = ctx.now();
        let interval = i64::try_from(ctx.config.resync.as_millis()).unwrap_or(i64::MAX);
        let due = self.last_resync.is_none_or(|t| now - t >= interval);
        if due || self.resync_requested {
            self.resync_requested = false;
            self.last_resync = Some(now);
            self.resync(world, ctx).await;
        }
        Ok(Action::requeue(if changed {
            Duration::ZERO
        } else {
            ctx.config.resync
        }))
    }

    fn notes(&self) -> Vec<String> {
        self.notes.clone()
    }
}

impl Inventory {
    /// Everything every provider observes, by instance id; notes the
    /// providers that cannot observe.
    async fn observe_all(
        &mut self,
        world: &World,
        ctx: &Ctx,
    ) -> BTreeMap<InstanceId, (ProviderKind, Observed)> {
        let mut out = BTreeMap::new();
        self.notes.clear();
        for (kind, p) in &world.providers {
            match p.observe().await {
                Ok(list) => {
                    for o in list {
                        if o.labels.store == ctx.store_id {
                            out.insert(o.labels.instance.clone(), (*kind, o));
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!("{kind} provider cannot observe: {e}");
                    self.notes
                        .push(format!("the {kind} provider cannot observe: {e}"));
                }
            }
        }
        out
    }

    /// Kinds whose observation worked this time (others are not judged).
    fn observed_kinds(&self, world: &World) -> BTreeSet<ProviderKind> {
        world
            .providers
            .keys()
            .filter(|k| {
                !self
                    .notes
                    .iter()
                    .any(|n| n.starts_with(&format!("the {k} provider")))
            })
            .copied()
            .collect()
    }

    async fn adopt(&mut self, world: &mut World, ctx: &Ctx) -> Result<(), ReconcileError> {
        let records = ctx.store.live_instances()?;
        let observed = self.observe_all(world, ctx).await;
        let judged = self.observed_kinds(world);
        let store = ctx.store.as_ref();
        for rec in records {
            let id = rec.id.clone();
            if !judged.contains(&rec.provider) {
                // Its provider is not there yet: keep it, judge it later.
                let phase = if rec.health == Health::Healthy {
                    MemberPhase::Healthy
                } else {
                    MemberPhase::Starting
                };
                world.insert_live(store, rec, phase);
                continue;
            }
            match observed.get(&id).map(|(_, o)| o) {
                Some(o) if o.state == RunState::Running => {
                    if rec.state == InstanceState::Launching {
                        ctx.store.mark_running(&id, o.addr, &o.handle)?;
                    }
                    let retiring = rec.state == InstanceState::Retiring;
                    let healthy = rec.health == Health::Healthy;
                    let mut rec = rec;
                    rec.addr = o.addr.or(rec.addr);
                    rec.handle = Some(o.handle.clone());
                    rec.state = if retiring {
                        InstanceState::Retiring
                    } else {
                        InstanceState::Running
                    };
                    ctx.events.emit(ConductorEvent::Adopted {
                        id: id.clone(),
                        version: rec.version,
                        handle: o.handle.clone(),
                        state: rec.state.to_string(),
                    });
                    let phase = if retiring {
                        // The instances reconciler finishes the retirement.
                        MemberPhase::Retiring
                    } else if healthy {
                        MemberPhase::Healthy
                    } else {
                        MemberPhase::Starting
                    };
                    world.insert_live(store, rec, phase);
                }
                Some(o) => {
                    ctx.events.emit(ConductorEvent::EndedWhileAway {
                        id: id.clone(),
                        version: rec.version,
                        state: o.state,
                    });
                    ctx.store.mark_gone(&id, &o.state.to_string())?;
                    spawn_remove(world.providers.get(&rec.provider).cloned(), &id);
                }
                None => {
                    let what = match rec.state {
                        InstanceState::Launching => "was never launched (interrupted launch)",
                        InstanceState::Retiring => "is gone (interrupted retirement finished)",
                        _ => "has vanished",
                    };
                    ctx.events.emit(ConductorEvent::Vanished {
                        id: id.clone(),
                        version: rec.version,
                        what: what.into(),
                    });
                    ctx.store.mark_gone(&id, what)?;
                }
            }
        }
        self.remove_orphans(world, ctx, &observed);
        Ok(())
    }

    async fn resync(&mut self, world: &mut World, ctx: &Ctx) {
        let observed = self.observe_all(world, ctx).await;
        let judged = self.observed_kinds(world);
        let ids: Vec<InstanceId> = world.live.keys().cloned().collect();
        for id in ids {
            let Some(l) = world.live.get(&id) else {
                continue;
            };
            if matches!(l.phase, MemberPhase::Launching | MemberPhase::Retiring)
                || !judged.contains(&l.rec.provider)
            {
                continue;
            }
            match observed.get(&id) {
                Some((_, o)) if o.state == RunState::Running => {
                    // A connected-late provider: pick up its address.
                    if let Some(l) = world.live.get_mut(&id)
                        && l.rec.addr.is_none()
                    {
                        l.rec.addr = o.addr;
                        l.rec.handle = Some(o.handle.clone());
                    }
                }
                Some((_, o)) => {
                    let state = o.state;
                    exited(world, ctx, &id, state);
                }
                None => {
                    let version = l.rec.version;
                    let (fp, healthy_at) = (l.fingerprint.clone(), l.rec.healthy_at);
                    ctx.events.emit(ConductorEvent::Vanished {
                        id: id.clone(),
                        version,
                        what: "has vanished from its provider".into(),
                    });
                    persist(ctx.store.mark_gone(&id, "vanished"));
                    world.live.remove(&id);
                    world.count_failure(
                        ctx,
                        Failure {
                            id: &id,
                            fingerprint: fp.as_ref(),
                            healthy_at,
                            cause: "vanished",
                        },
                    );
                }
            }
        }
        self.remove_orphans(world, ctx, &observed);
    }

    fn remove_orphans(
        &self,
        world: &World,
        ctx: &Ctx,
        observed: &BTreeMap<InstanceId, (ProviderKind, Observed)>,
    ) {
        for (id, (kind, o)) in observed {
            if world.live.contains_key(id) {
                continue;
            }
            let p = world.providers.get(kind).cloned();
            if o.state == RunState::Running {
                ctx.events.emit(ConductorEvent::OrphanRemoved {
                    id: id.clone(),
                    handle: o.handle.clone(),
                });
                let id = id.clone();
                tokio::spawn(async move {
                    if let Some(p) = p {
                        if let Err(e) = p.terminate(&id, Duration::from_secs(5)).await {
                            tracing::warn!("cannot terminate orphan {id}: {e}");
                        }
                        let _ = p.remove(&id).await;
                    }
                });
            } else {
                spawn_remove(p, id);
            }
        }
    }
}

fn persist<T>(r: Result<T, glint_store::StoreError>) {
    if let Err(e) = r {
        tracing::error!("cannot write to the store: {e}");
    }
}

/// An instance ended without being asked to.
fn exited(world: &mut World, ctx: &Ctx, id: &InstanceId, state: RunState) {
    let Some(l) = world.live.get(id) else { return };
    if l.phase == MemberPhase::Retiring {
        return; // expected: its retirement is terminating it
    }
    let (version, provider) = (l.rec.version, l.rec.provider);
    let (fp, healthy_at) = (l.fingerprint.clone(), l.rec.healthy_at);
    let healthy = l.phase == MemberPhase::Healthy;
    ctx.events.emit(ConductorEvent::Exited {
        id: id.clone(),
        version,
        state,
    });
    persist(ctx.store.mark_gone(id, &state.to_string()));
    world.live.remove(id);
    spawn_remove(world.providers.get(&provider).cloned(), id);
    world.count_failure(
        ctx,
        Failure {
            id,
            fingerprint: fp.as_ref(),
            healthy_at: if healthy { healthy_at } else { None },
            cause: &state.to_string(),
        },
    );
}

/// An instance no longer matches what was launched: an incident, and a
/// replacement — except for an exec into a service declared `on_exec =
/// report`, which is only recorded.
fn drifted(world: &mut World, ctx: &Ctx, id: &InstanceId, what: &str, kind: DriftKind) {
    let spec = world.spec_of(ctx.store.as_ref(), id);
    let Some(l) = world.live.get_mut(id) else {
        return;
    };
    if l.phase == MemberPhase::Retiring {
        return;
    }
    let report_only = kind == DriftKind::Exec && spec.is_some_and(|s| s.on_exec == OnExec::Report);
    if !report_only {
        l.phase = MemberPhase::Failed;
        l.failure = Some(format!("drifted: {what}"));
    }
    ctx.events.emit(ConductorEvent::Drifted {
        id: id.clone(),
        version: l.rec.version,
        kind,
        what: what.to_owned(),
        replaced: !report_only,
    });
}
