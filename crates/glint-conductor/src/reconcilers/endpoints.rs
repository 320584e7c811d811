//! The endpoints reconciler: programs the data plane.
//!
//! The whole set of declared endpoints is handed to the [`DataPlane`] with a
//! generation number whenever it changes (and again after an endpoint that
//! could not bind has waited out its backoff, key `bind/<endpoint>`); then
//! each listening endpoint gets the whole set of backends it may route to —
//! the healthy, running instances `decide` routes to — whenever that set
//! changes. Endpoint transitions (listening, failing, stopped) are events.

use crate::dataplane::{DataPlane, EndpointReport};
use crate::decide::MemberPhase;
use crate::events::ConductorEvent;
use crate::reconciler::{Action, Ctx, ReconcileError, Reconciler};
use crate::world::World;
use async_trait::async_trait;
use glint_model::Name;
use glint_proxy::{Backend, EndpointConfig};
use glint_store::InstanceState;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

/// How often the data plane's counters are read.
const REPORT_EVERY_MS: i64 = 1_000;

/// See the module documentation.
pub struct Endpoints {
    dataplane: Arc<dyn DataPlane>,
    generation: u64,
    sent: Option<Vec<EndpointConfig>>,
    backends: BTreeMap<Name, Vec<Backend>>,
    listening: BTreeSet<Name>,
    failing: BTreeMap<Name, String>,
    reported_at: Option<i64>,
    notes: Vec<String>,
}

impl Endpoints {
    /// A reconciler programming `dataplane`.
    pub fn new(dataplane: Arc<dyn DataPlane>) -> Endpoints {
        Endpoints {
            dataplane,
            generation: 0,
            sent: None,
            backends: BTreeMap::new(),
            listening: BTreeSet::new(),
            failing: BTreeMap::new(),
            reported_at: None,
            notes: Vec::new(),
        }
    }

    fn key(name: &Name) -> String {
        format!("bind/{name}")
    }

    fn take_reports(
        &mut self,
        world: &mut World,
        ctx: &Ctx,
        reports: Vec<EndpointReport>,
        after_send: bool,
    ) {
        let now = ctx.now();
        let seen: BTreeSet<Name> = reports.iter().map(|r| r.name.clone()).collect();
        for gone in self
            .listening
            .difference(&seen)
            .cloned()
            .collect::<Vec<_>>()
        {
            self.listening.remove(&gone);
            let listen = world
                .endpoints
                .iter()
                .find(|r| r.name == gone)
                .map(|r| r.listen);
            if let Some(listen) = listen {
                ctx.events.emit(ConductorEvent::EndpointStopped {
                    name: gone.clone(),
                    listen,
                });
            }
            self.backends.remove(&gone);
        }
        self.failing.retain(|n, _| seen.contains(n));
        for r in &reports {
            match (&r.listening, &r.error) {
                (Some(addr), _) => {
                    if self.listening.insert(r.name.clone()) {
                        self.backends.remove(&r.name);
                        ctx.events.emit(ConductorEvent::EndpointListening {
                            name: r.name.clone(),
                            addr: *addr,
                        });
                    }
                    if self.failing.remove(&r.name).is_some() {
                        world.backoff.succeeded(&Self::key(&r.name));
                    }
                }
                (None, Some(e)) => {
                    self.listening.remove(&r.name);
                    // Only a bind attempt counts as a failure, not a report.
                    if after_send {
                        let f = world.backoff.failed_at_least(
                            &Self::key(&r.name),
                            e,
                            now,
                            Duration::from_secs(1),
                        );
                        world.wake_at(now + i64::try_from(f.delay.as_millis()).unwrap_or(0));
                        if f.failures == 1 || f.started_waiting {
                            ctx.events.emit(ConductorEvent::EndpointFailed {
                                name: r.name.clone(),
                                error: e.clone(),
                                retry_in_ms: u64::try_from(f.delay.as_millis()).unwrap_or(0),
                            });
                        }
                    }
                    self.failing.insert(r.name.clone(), e.clone());
                }
                (None, None) => {}
            }
        }
        world.endpoints = reports;
    }
}

#[async_trait]
impl Reconciler for Endpoints {
    fn name(&self) -> &'static str {
        "endpoints"
    }

    async fn reconcile(&mut self, world: &mut World, ctx: &Ctx) -> Result<Action, ReconcileError> {
        let now = ctx.now();
        let wanted: Vec<EndpointConfig> = if world.stopping {
            self.sent.clone().unwrap_or_default()
        } else {
            world
                .target
                .as_ref()
                .map(|t| {
                    t.env
                        .endpoints
                        .iter()
                        .map(|(name, e)| {
                            let mut c = EndpointConfig::from_endpoint(name.clone(), e);
                            c.wait_for_backend = ctx.config.endpoint_wait;
                            c
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        // Re-send after a failed bind once its backoff is over.
        let retry = self
            .failing
            .keys()
            .any(|n| world.backoff.blocked(&Self::key(n), now).is_none());
        if self.sent.as_ref() != Some(&wanted) || retry {
            self.generation += 1;
            let reports = self
                .dataplane
                .set_endpoints(self.generation, wanted.clone())
                .await
                .map_err(ReconcileError::Other)?;
            self.sent = Some(wanted.clone());
            self.take_reports(world, ctx, reports, true);
            self.reported_at = Some(now);
        } else if self.reported_at.is_none_or(|t| now - t >= REPORT_EVERY_MS) {
            let reports = self
                .dataplane
                .report()
                .await
                .map_err(ReconcileError::Other)?;
            self.take_reports(world, ctx, reports, false);
            self.reported_at = Some(now);
        }
        world.endpoints_settled = wanted
            .iter()
            .all(|c| self.listening.contains(&c.name) || self.failing.contains_key(&c.name));
        // Backends.
        let services: BTreeMap<Name, Name> = world
            .target
            .as_ref()
            .map(|t| {
                t.env
                    .endpoints
                    .iter()
                    .map(|(n, e)| (n.clone(), e.service.clone()))
                    .collect()
            })
            .unwrap_or_default();
        for name in self.listening.clone() {
            let Some(service) = services.get(&name) else {
                continue;
            };
            let routed = world.outcome.routes.get(service);
            let mut backends: Vec<Backend> = world
                .live
                .values()
                .filter(|l| {
                    &l.rec.service == service
                        && l.phase == MemberPhase::Healthy
                        && l.rec.state == InstanceState::Running
                        && routed.is_some_and(|r| r.contains(&l.rec.id))
                })
                .filter_map(|l| {
                    l.rec.addr.map(|addr| Backend {
                        instance: l.rec.id.clone(),
                        addr,
                    })
                })
                .collect();
            backends.sort_by(|a, b| a.instance.cmp(&b.instance));
            if self.backends.get(&name) != Some(&backends) {
                self.generation += 1;
                self.dataplane
                    .set_backends(&name, self.generation, backends.clone())
                    .await
                    .map_err(ReconcileError::Other)?;
                self.backends.insert(name, backends);
            }
        }
        self.notes = self
            .failing
            .iter()
            .map(|(n, e)| format!("endpoint {n} cannot listen: {e}"))
            .collect();
        Ok(Action::requeue(Duration::from_millis(
            REPORT_EVERY_MS as u64,
        )))
    }

    fn notes(&self) -> Vec<String> {
        self.notes.clone()
    }

    async fn stop(&mut self, _world: &mut World, _ctx: &Ctx, stop_instances: bool) {
        if (stop_instances || !self.dataplane.outlives_conductor())
            && let Err(e) = self.dataplane.shutdown(Duration::from_secs(5)).await
        {
            tracing::warn!("cannot stop the endpoints: {e}");
        }
    }
}
