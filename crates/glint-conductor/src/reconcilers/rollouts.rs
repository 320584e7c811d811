//! The rollouts reconciler: follows the target version's rollout.
//!
//! It announces a rollout when it begins, records progress as new instances
//! become available, and asks the pure [`verdict`] whether the version has
//! converged or failed. A convergence or failure is recorded as the
//! version's outcome (only the first outcome sticks); a failed version is
//! rolled back through the operations layer ([`crate::ops`]) unless its
//! services say `auto_rollback = false`. Everything the verdict needs is in
//! the store or derived from it, so a restarted conductor continues where
//! this one stopped.

use crate::events::ConductorEvent;
use crate::reconciler::{Action, Ctx, ReconcileError, Reconciler};
use crate::rollout::{Rollout, Verdict, failures_allowed, verdict};
use crate::world::World;
use async_trait::async_trait;
use glint_model::{Name, Strategy, VersionNumber};
use std::collections::{BTreeMap, HashMap};

/// See the module documentation.
#[derive(Default)]
pub struct Rollouts {
    /// The version whose start was announced by this process.
    announced: Option<VersionNumber>,
    /// Per service, the available count last reported.
    seen_available: HashMap<Name, u32>,
    notes: Vec<String>,
}

fn strategy_name(s: &Strategy) -> String {
    match s {
        Strategy::Rolling { surge, unavailable } => {
            format!("rolling, surge {surge}, unavailable {unavailable}")
        }
        Strategy::BlueGreen { keep } => format!("blue/green, keep {keep}"),
        Strategy::Canary { steps, pause } => format!("canary, steps {steps:?}, pause {pause}"),
    }
}

/// How soon a rollout whose instances are done is looked at again while
/// the endpoints catch up.
const SETTLE_RECHECK: std::time::Duration = std::time::Duration::from_millis(50);

#[async_trait]
impl Reconciler for Rollouts {
    fn name(&self) -> &'static str {
        "rollouts"
    }

    async fn reconcile(&mut self, world: &mut World, ctx: &Ctx) -> Result<Action, ReconcileError> {
        self.notes.clear();
        if world.stopping || !world.adopted {
            return Ok(Action::await_change());
        }
        let Some(target) = world.target.clone() else {
            return Ok(Action::await_change());
        };
        let number = target.number;
        if ctx.store.version_outcome(number)?.is_some() {
            return Ok(Action::await_change());
        }
        let progress = world.outcome.progress.clone();
        if self.announced != Some(number) {
            self.announced = Some(number);
            self.seen_available.clear();
            let what: Vec<String> = progress
                .iter()
                .filter(|(_, p)| p.stale > p.aged || !p.converged)
                .filter_map(|(name, p)| {
                    let svc = target.env.services.get(name)?;
                    Some(format!(
                        "{name} ({}, {} to replace, {} to create)",
                        strategy_name(&svc.rollout.strategy),
                        p.stale - p.aged,
                        p.desired.saturating_sub(p.current + p.stale - p.aged)
                    ))
                })
                .collect();
            if !what.is_empty() {
                ctx.events.emit(ConductorEvent::RolloutStarted {
                    version: number,
                    what: what.join(", "),
                });
            }
        }
        for (name, p) in &progress {
            let last = *self
                .seen_available
                .entry(name.clone())
                .or_insert(p.available);
            if p.available > last && p.available <= p.desired {
                ctx.events.emit(ConductorEvent::RolloutProgress {
                    service: name.clone(),
                    version: number,
                    available: p.available,
                    desired: p.desired,
                    waiting: p.waiting.clone(),
                });
            }
            self.seen_available.insert(name.clone(), p.available);
        }
        let mut last_healthy: BTreeMap<Name, i64> = BTreeMap::new();
        for l in world.live.values() {
            let current = l.fingerprint.is_some()
                && l.fingerprint == world.target_fingerprint(&l.rec.service);
            if let (true, Some(h)) = (current, l.rec.healthy_at) {
                let e = last_healthy.entry(l.rec.service.clone()).or_insert(h);
                *e = (*e).max(h);
            }
        }
        let failed = ctx.store.failed_count(number)?;
        let now = ctx.now();
        let created = glint_store::to_ms(target.created_at);
        let input = Rollout {
            created_at: created,
            now,
            services: &target.env.services,
            progress: &progress,
            last_healthy: &last_healthy,
            failed,
            endpoints_settled: world.endpoints_settled && world.backends_settled(),
        };
        let allowed = failures_allowed(&input);
        let v = verdict(input);
        match v {
            Verdict::Converged { took_ms } => {
                let took = format!("{:.1}s", took_ms as f64 / 1000.0);
                if ctx
                    .store
                    .set_outcome(number, glint_store::Outcome::Converged, &took)?
                {
                    ctx.events.emit(ConductorEvent::RolloutCompleted {
                        version: number,
                        took,
                    });
                }
            }
            Verdict::Failed { reason, roll_back } => {
                // A rollback records the failure and the new version in one
                // transaction; otherwise the failure alone is recorded.
                let rolled = if roll_back {
                    crate::ops::roll_back_automatically(ctx.store.as_ref(), &target, &reason)
                        .map_err(|e| ReconcileError::Other(crate::error_chain(&e)))?
                } else {
                    None
                };
                if rolled.is_none()
                    && !ctx
                        .store
                        .set_outcome(number, glint_store::Outcome::Failed, &reason)?
                {
                    return Ok(Action::await_change());
                }
                ctx.events.emit(ConductorEvent::RolloutFailed {
                    version: number,
                    reason: reason.clone(),
                    rolling_back: rolled.is_some(),
                });
                if let Some(rb) = rolled {
                    ctx.events.emit(ConductorEvent::RolledBack {
                        failed: number,
                        to: rb.restores,
                        new: rb.version,
                        reason,
                    });
                } else if roll_back {
                    self.notes.push(format!(
                        "version {number} failed and cannot be rolled back: no earlier version with other content converged"
                    ));
                }
            }
            Verdict::InProgress { deadline_at } => {
                if let Some(at) = deadline_at {
                    world.wake_at(at);
                }
                if failed > 0 {
                    self.notes.push(format!(
                        "version {number}: {failed} new instances failed; the rollout fails at {allowed}"
                    ));
                }
                for (name, p) in &progress {
                    if let Some(w) = &p.waiting {
                        self.notes.push(format!("{name}: {w}"));
                    }
                }
                if progress.values().all(|p| p.converged) {
                    // Only the data plane is behind: the endpoints
                    // reconciler programs it later in this pass; look again
                    // right after.
                    self.notes.push(format!(
                        "version {number}: waiting for the endpoints to route to the new instances only"
                    ));
                    return Ok(Action::requeue(SETTLE_RECHECK));
                }
            }
        }
        Ok(Action::await_change())
    }

    fn notes(&self) -> Vec<String> {
        self.notes.clone()
    }
}
