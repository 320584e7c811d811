//! The probes reconciler: one health-probe task per running instance, and
//! the transitions they report.
//!
//! Every instance that runs and is starting or healthy has a probe task
//! driven by a [`Tracker`] (see [`crate::health`]) using the newest
//! declaration of its service's health check; tasks of instances that are
//! gone, failed or retiring are stopped. A service without a health check
//! counts an instance as healthy once it has kept running for
//! [`NO_CHECK_SETTLE_MS`] — not the moment it starts, so a program that
//! exits at once is a crash loop, not a converged version.
//!
//! Transitions are applied to the world and the store: healthy (its time
//! recorded: rollouts and `min_healthy` count from it), unhealthy or never
//! healthy (the instance is failed, so `decide` replaces it, and the failure
//! counts towards its service's backoff and its version's rollout).

use crate::decide::MemberPhase;
use crate::events::ConductorEvent;
use crate::health::{Phase, Tracker, Transition};
use crate::reconciler::{Action, Ctx, Inbox, ReconcileError, Reconciler, Waker};
use crate::world::{Failure, World};
use async_trait::async_trait;
use glint_model::InstanceId;
use glint_store::Health;
use glint_store::InstanceState;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::task::JoinHandle;

/// How long an instance of a service without a health check must keep
/// running before it counts as healthy.
pub const NO_CHECK_SETTLE_MS: u64 = 1_000;

/// See the module documentation.
pub struct Probes {
    inbox: Inbox<(InstanceId, Transition)>,
    tasks: BTreeMap<InstanceId, JoinHandle<()>>,
}

impl Probes {
    /// A new probes reconciler whose transitions wake `waker`.
    pub fn new(waker: &Waker) -> Probes {
        Probes {
            inbox: Inbox::new(waker),
            tasks: BTreeMap::new(),
        }
    }
}

impl Drop for Probes {
    fn drop(&mut self) {
        for t in self.tasks.values() {
            t.abort();
        }
    }
}

#[async_trait]
impl Reconciler for Probes {
    fn name(&self) -> &'static str {
        "probes"
    }

    async fn reconcile(&mut self, world: &mut World, ctx: &Ctx) -> Result<Action, ReconcileError> {
        let transitions = self.inbox.drain();
        let changed = !transitions.is_empty();
        for (id, t) in transitions {
            apply(world, ctx, &id, t);
        }
        // Stop probes nobody needs.
        self.tasks.retain(|id, task| {
            let keep = world.live.get(id).is_some_and(|l| {
                matches!(l.phase, MemberPhase::Starting | MemberPhase::Healthy)
                    && l.rec.state == InstanceState::Running
            });
            if !keep {
                task.abort();
            }
            keep && !task.is_finished()
        });
        // Start the ones missing.
        let ids: Vec<InstanceId> = world
            .live
            .iter()
            .filter(|(id, l)| {
                matches!(l.phase, MemberPhase::Starting | MemberPhase::Healthy)
                    && l.rec.state == InstanceState::Running
                    && !self.tasks.contains_key(*id)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            let check = world
                .service_for(ctx.store.as_ref(), &id)
                .and_then(|s| s.health);
            let Some(l) = world.live.get(&id) else {
                continue;
            };
            let healthy = l.phase == MemberPhase::Healthy;
            let post = self.inbox.post();
            let task = match (check, l.rec.addr) {
                (Some(check), Some(addr)) => {
                    let prober = ctx.prober.clone();
                    let id2 = id.clone();
                    tokio::spawn(async move {
                        let started = tokio::time::Instant::now();
                        let mut tracker = Tracker::new(check.clone(), healthy);
                        loop {
                            tokio::time::sleep(tracker.delay()).await;
                            let r = prober
                                .probe(&id2, &check.probe, addr, tracker.timeout())
                                .await;
                            if let Some(t) = tracker.record(r, started.elapsed()) {
                                post.send((id2.clone(), t));
                            }
                            if tracker.phase() == Phase::Failed {
                                return;
                            }
                        }
                    })
                }
                (Some(_), None) => {
                    // No address to probe (yet): nothing to do until the
                    // provider reports one.
                    continue;
                }
                (None, _) if healthy => {
                    // Nothing to watch: the provider reports exits.
                    tokio::spawn(std::future::pending::<()>())
                }
                (None, _) => {
                    let id2 = id.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(NO_CHECK_SETTLE_MS)).await;
                        post.send((id2, Transition::Healthy));
                        std::future::pending::<()>().await
                    })
                }
            };
            self.tasks.insert(id, task);
        }
        // A transition changes what the reconcilers after this one, and
        // `decide` on the next pass, conclude: run again at once.
        Ok(if changed {
            Action::requeue(std::time::Duration::ZERO)
        } else {
            Action::await_change()
        })
    }

    async fn stop(&mut self, _world: &mut World, _ctx: &Ctx, _stop_instances: bool) {
        for (_, t) in std::mem::take(&mut self.tasks) {
            t.abort();
        }
    }
}

fn persist<T>(r: Result<T, glint_store::StoreError>) {
    if let Err(e) = r {
        tracing::error!("cannot write to the store: {e}");
    }
}

/// Applies one transition.
fn apply(world: &mut World, ctx: &Ctx, id: &InstanceId, t: Transition) {
    let now = ctx.now();
    let Some(l) = world.live.get_mut(id) else {
        return;
    };
    if matches!(l.phase, MemberPhase::Retiring | MemberPhase::Failed) {
        return;
    }
    let version = l.rec.version;
    match t {
        Transition::Healthy => {
            if l.phase == MemberPhase::Healthy {
                return;
            }
            l.phase = MemberPhase::Healthy;
            l.rec.health = Health::Healthy;
            l.rec.healthy_at = Some(now);
            let after_ms = now - l.rec.created_at;
            persist(ctx.store.set_health(id, Health::Healthy));
            ctx.events.emit(ConductorEvent::Healthy {
                id: id.clone(),
                version,
                after_ms,
            });
        }
        Transition::Unhealthy { reason } => {
            l.phase = MemberPhase::Failed;
            l.failure = Some(format!("unhealthy: {reason}"));
            l.rec.health = Health::Unhealthy;
            let (fp, healthy_at) = (l.fingerprint.clone(), l.rec.healthy_at);
            persist(ctx.store.set_health(id, Health::Unhealthy));
            ctx.events.emit(ConductorEvent::Unhealthy {
                id: id.clone(),
                version,
                reason: reason.clone(),
            });
            world.count_failure(
                ctx,
                Failure {
                    id,
                    fingerprint: fp.as_ref(),
                    healthy_at,
                    cause: &format!("unhealthy: {reason}"),
                },
            );
        }
        Transition::NeverHealthy { reason } => {
            l.phase = MemberPhase::Failed;
            l.failure = Some(format!("never became healthy: {reason}"));
            l.rec.health = Health::Unhealthy;
            let fp = l.fingerprint.clone();
            persist(ctx.store.set_health(id, Health::Unhealthy));
            ctx.events.emit(ConductorEvent::NeverHealthy {
                id: id.clone(),
                version,
                reason: reason.clone(),
            });
            world.count_failure(
                ctx,
                Failure {
                    id,
                    fingerprint: fp.as_ref(),
                    healthy_at: None,
                    cause: &format!("never became healthy: {reason}"),
                },
            );
        }
    }
}
