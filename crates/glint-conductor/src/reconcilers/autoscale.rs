//! The autoscale reconciler: measures every autoscaled service every
//! [`SAMPLE_EVERY_MS`] and sets its instance count by the rule in
//! [`crate::autoscale`].
//!
//! Per pass that is due:
//!
//! 1. read the endpoints' counters ([`LoadStats`]) and, for services scaled
//!    on CPU, the providers' usage ([`Provider::usage`]);
//! 2. make one [`Observation`] per service from its healthy instances (for
//!    endpoint metrics, the backends of the endpoints that route to it);
//! 3. [`measure`] against the previous observation, [`step`], and store the
//!    count, its reason and the window (`Scaling`), so that a restarted
//!    conductor resumes with them;
//! 4. a changed count is an event (`autoscale.scaled`); `decide` picks it
//!    up in the same pass (this reconciler runs before the instances one):
//!    new instances pass the health gate before they get traffic, and
//!    scale-down retires the newest (not-ready first), drained.
//!
//! Observations live in memory only: after a restart the first interval
//! starts afresh, while the count and the window come back from the store.

use crate::autoscale::{Counters, Observation, SAMPLE_EVERY_MS, Window, measure, step};
use crate::decide::MemberPhase;
use crate::events::ConductorEvent;
use crate::load::LoadStats;
use crate::reconciler::{Action, Ctx, ReconcileError, Reconciler};
use crate::world::World;
use async_trait::async_trait;
use glint_model::{InstanceId, Name, ProviderKind, ScaleMetric};
use glint_provider::Usage;
use glint_store::ScaleRecord;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

/// How long one reading of counters may take.
const READ_TIMEOUT: Duration = Duration::from_secs(3);

/// A service's autoscaling state as the world holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scaled {
    /// The count in force.
    pub desired: u32,
    /// Why.
    pub reason: String,
    /// The recommendations of the window and the last measurement.
    pub window: Window,
    /// When it was last decided (ms since the epoch).
    pub updated_at: i64,
}

/// See the module documentation.
pub struct Autoscale {
    load: Arc<dyn LoadStats>,
    loaded: bool,
    next_at: i64,
    previous: BTreeMap<Name, Observation>,
    notes: Vec<String>,
}

impl Autoscale {
    /// A reconciler reading endpoint counters from `load`.
    pub fn new(load: Arc<dyn LoadStats>) -> Autoscale {
        Autoscale {
            load,
            loaded: false,
            next_at: 0,
            previous: BTreeMap::new(),
            notes: Vec::new(),
        }
    }

    fn restore(&mut self, world: &mut World, ctx: &Ctx) -> Result<(), ReconcileError> {
        for r in ctx.store.scale_records()? {
            let window = serde_json::from_str(&r.state).unwrap_or_default();
            world.scale.insert(
                r.service,
                Scaled {
                    desired: r.desired,
                    reason: r.reason,
                    window,
                    updated_at: r.updated_at,
                },
            );
        }
        self.loaded = true;
        Ok(())
    }
}

/// Adds one endpoint's counters of a backend to an instance's.
fn add(into: &mut Counters, served: u64, in_flight: u64, busy: Option<u64>) {
    into.served += served;
    into.in_flight += in_flight;
    into.busy_us = busy.map(|b| into.busy_us.unwrap_or(0) + b);
}

#[async_trait]
impl Reconciler for Autoscale {
    fn name(&self) -> &'static str {
        "autoscale"
    }

    async fn reconcile(&mut self, world: &mut World, ctx: &Ctx) -> Result<Action, ReconcileError> {
        if !self.loaded {
            self.restore(world, ctx)?;
        }
        let now = ctx.now();
        let Some(target) = world.target.clone() else {
            return Ok(Action::await_change());
        };
        let scaled: BTreeMap<&Name, &glint_model::Service> = target
            .env
            .services
            .iter()
            .filter(|(_, s)| s.autoscale.is_some())
            .collect();
        // Services no longer autoscaled: forget them.
        let gone: Vec<Name> = world
            .scale
            .keys()
            .filter(|n| !scaled.contains_key(n))
            .cloned()
            .collect();
        for n in gone {
            ctx.store.clear_scale(&n)?;
            world.scale.remove(&n);
            self.previous.remove(&n);
        }
        if scaled.is_empty() {
            return Ok(Action::await_change());
        }
        if now < self.next_at {
            return Ok(Action::requeue_at(self.next_at, now));
        }
        self.next_at = now + SAMPLE_EVERY_MS;
        self.notes.clear();

        // 1. Counters.
        let wants_load = scaled.values().any(|s| {
            s.autoscale
                .as_ref()
                .is_some_and(|a| !matches!(a.metric, ScaleMetric::Cpu { .. }))
        });
        let mut per_endpoint = Vec::new();
        if wants_load {
            match tokio::time::timeout(READ_TIMEOUT, self.load.load()).await {
                Ok(Ok(l)) => per_endpoint = l,
                Ok(Err(e)) => self
                    .notes
                    .push(format!("autoscale: endpoint counters: {e}")),
                Err(_) => self
                    .notes
                    .push("autoscale: the data plane did not report its counters in time".into()),
            }
        }
        let cpu_kinds: BTreeSet<ProviderKind> = scaled
            .values()
            .filter(|s| {
                s.autoscale
                    .as_ref()
                    .is_some_and(|a| matches!(a.metric, ScaleMetric::Cpu { .. }))
            })
            .map(|s| s.provider)
            .collect();
        let mut usage: BTreeMap<InstanceId, Usage> = BTreeMap::new();
        for kind in cpu_kinds {
            let Some(p) = world.providers.get(&kind).cloned() else {
                continue;
            };
            match tokio::time::timeout(READ_TIMEOUT, p.usage()).await {
                Ok(Ok(u)) => usage.extend(u),
                Ok(Err(e)) => self.notes.push(format!(
                    "autoscale: {kind} usage: {}",
                    crate::error_chain(&e)
                )),
                Err(_) => self.notes.push(format!(
                    "autoscale: the {kind} provider did not report usage in time"
                )),
            }
        }

        // 2.–4. Per service.
        for (name, svc) in scaled {
            let Some(a) = &svc.autoscale else { continue };
            let healthy: BTreeSet<&InstanceId> = world
                .live
                .values()
                .filter(|l| &l.rec.service == name && l.phase == MemberPhase::Healthy)
                .map(|l| &l.rec.id)
                .collect();
            let mut obs = Observation {
                at: now,
                instances: BTreeMap::new(),
            };
            match a.metric {
                ScaleMetric::Cpu { .. } => {
                    for id in &healthy {
                        if let Some(u) = usage.get(*id) {
                            obs.instances.insert(
                                (*id).clone(),
                                Counters {
                                    cpu_usec: Some(u.cpu_usec),
                                    ..Counters::default()
                                },
                            );
                        }
                    }
                }
                _ => {
                    for e in &per_endpoint {
                        let routes_here = target
                            .env
                            .endpoints
                            .get(&e.endpoint)
                            .is_some_and(|d| &d.service == name);
                        if !routes_here {
                            continue;
                        }
                        for b in &e.backends {
                            if healthy.contains(&b.instance) {
                                let c = obs.instances.entry(b.instance.clone()).or_default();
                                add(c, b.served, b.in_flight, b.busy_us);
                            }
                        }
                    }
                }
            }
            // The first observation (after a start) only starts an
            // interval: the count and window in force stay as they are.
            let Some(prev) = self.previous.insert(name.clone(), obs.clone()) else {
                world.scale.entry(name.clone()).or_insert_with(|| Scaled {
                    desired: crate::autoscale::count(svc, None),
                    reason: format!("starts at {}", crate::autoscale::count(svc, None)),
                    window: Window::default(),
                    updated_at: now,
                });
                continue;
            };
            let measured = measure(&a.metric, svc.resources.cpu_millis, &prev, &obs);
            let entry = world.scale.entry(name.clone()).or_insert_with(|| Scaled {
                desired: crate::autoscale::count(svc, None),
                reason: format!("starts at {}", crate::autoscale::count(svc, None)),
                window: Window::default(),
                updated_at: now,
            });
            let from = entry.desired;
            let s = step(a, from, measured, &mut entry.window, now);
            entry.desired = s.desired;
            entry.reason = s.reason.clone();
            entry.updated_at = now;
            let state = serde_json::to_string(&entry.window).unwrap_or_else(|_| "{}".into());
            ctx.store.put_scale(&ScaleRecord {
                service: name.clone(),
                desired: s.desired,
                reason: s.reason.clone(),
                state,
                updated_at: now,
            })?;
            if s.desired != from {
                ctx.events.emit(ConductorEvent::Scaled {
                    service: name.clone(),
                    from,
                    to: s.desired,
                    reason: s.reason,
                });
            }
        }
        Ok(Action::requeue_at(self.next_at, now))
    }

    fn notes(&self) -> Vec<String> {
        self.notes.clone()
    }
}

/// What `glint status` shows of an autoscaled service (`None` when it does
/// not autoscale).
pub fn status(
    svc: &glint_model::Service,
    scaled: Option<&Scaled>,
    ready: u32,
) -> Option<crate::status::AutoscaleStatus> {
    let a = svc.autoscale.as_ref()?;
    Some(crate::status::AutoscaleStatus {
        min: a.min,
        max: a.max,
        current: ready,
        desired: crate::autoscale::count(svc, scaled.map(|s| s.desired)),
        metric: a.metric.name().to_owned(),
        value: scaled.and_then(|s| s.window.value),
        target: a.metric.target(),
        unit: a.metric.unit().to_owned(),
        reason: scaled
            .map(|s| s.reason.clone())
            .unwrap_or_else(|| "not measured yet".into()),
    })
}
