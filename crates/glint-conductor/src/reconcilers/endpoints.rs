//! The endpoints reconciler: programs the data plane.
//!
//! It hands the [`DataPlane`] what the target declares — every endpoint,
//! each with the healthy, running instances `decide` routes to — through
//! `glint_dataplane`'s level-triggered [`Reconciler`]: it reads the data
//! plane's whole state on every pass and sends only what differs, with
//! generations after the data plane's own (so a restarted conductor never
//! sends a stale one). An endpoint that cannot bind is tried again after the
//! conductor's one backoff policy's delay. Until the target version has been
//! read, nothing is handed over: endpoints that kept serving while no
//! conductor ran are never emptied by a conductor that has not yet looked.
//! While stopping, the endpoints stay as they were; only their backends
//! change.
//!
//! The data plane is usually a separate long-lived process
//! (`glint_dataplane::RemoteDataPlane`): it is shut down only when the
//! conductor stops its instances too (`glint up`'s Ctrl-C).

use crate::backoff::Policy;
use crate::events::ConductorEvent;
use crate::reconciler::{Action, Ctx, ReconcileError, Reconciler as ReconcilerTrait};
use crate::world::World;
use async_trait::async_trait;
use glint_dataplane::{
    DataPlane, Desired, DesiredEndpoint, EndpointConfig, EndpointEvent, EndpointSpec, Reconciler,
};
use glint_model::Name;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// How often the data plane is read when nothing else wakes the conductor
/// (also how fresh the counters in the status are).
const RESYNC: Duration = Duration::from_secs(1);

/// The wait after the n-th failed bind attempt in a row: the one policy,
/// never less than a second.
fn bind_retry(failures: u32) -> Duration {
    Policy::DEFAULT
        .delay(failures + Policy::DEFAULT.free)
        .max(Duration::from_secs(1))
}

/// See the module documentation.
pub struct Endpoints {
    plane: Arc<dyn DataPlane>,
    inner: Reconciler,
    last: Option<BTreeMap<Name, EndpointSpec>>,
    unreachable: bool,
    notes: Vec<String>,
}

impl Endpoints {
    /// A reconciler programming `plane`.
    pub fn new(plane: Arc<dyn DataPlane>) -> Endpoints {
        Endpoints {
            plane,
            inner: Reconciler::with_bind_retry(bind_retry),
            last: None,
            unreachable: false,
            notes: Vec::new(),
        }
    }

    /// The endpoints to hand over: the target's, or while stopping the
    /// ones handed over last. `None`: nothing to hand over yet.
    fn specs(&self, world: &World, ctx: &Ctx) -> Option<BTreeMap<Name, EndpointSpec>> {
        if world.stopping {
            return self.last.clone();
        }
        let target = world.target.as_ref()?;
        Some(
            target
                .env
                .endpoints
                .iter()
                .map(|(name, e)| {
                    let mut config = EndpointConfig::from_endpoint(name.clone(), e);
                    config.wait_for_backend = ctx.config.endpoint_wait;
                    (
                        name.clone(),
                        EndpointSpec {
                            config,
                            service: e.service.clone(),
                        },
                    )
                })
                .collect(),
        )
    }
}

/// The backends of `service`: its healthy, running instances that `decide`
/// routes to.
#[async_trait]
impl ReconcilerTrait for Endpoints {
    fn name(&self) -> &'static str {
        "endpoints"
    }

    async fn reconcile(&mut self, world: &mut World, ctx: &Ctx) -> Result<Action, ReconcileError> {
        let Some(specs) = self.specs(world, ctx) else {
            return Ok(Action::requeue(RESYNC));
        };
        let desired = Desired {
            endpoints: specs
                .iter()
                .map(|(name, spec)| {
                    (
                        name.clone(),
                        DesiredEndpoint {
                            spec: spec.clone(),
                            backends: world.backends(&spec.service),
                        },
                    )
                })
                .collect(),
        };
        self.last = Some(specs);
        let (status, events) = match self.inner.reconcile(self.plane.as_ref(), &desired).await {
            Ok(r) => r,
            Err(e) => {
                let error = crate::error_chain(&e);
                if !self.unreachable {
                    self.unreachable = true;
                    ctx.events.emit(ConductorEvent::DataPlaneUnreachable {
                        error: error.clone(),
                    });
                }
                // Nothing to wait for: a rollout is not held by it.
                world.endpoints_settled = true;
                world.backends_in_force = None;
                self.notes = vec![format!("the data plane does not answer: {error}")];
                return Err(ReconcileError::Other(format!(
                    "the data plane does not answer: {error}"
                )));
            }
        };
        self.unreachable = false;
        for e in events {
            let event = match e {
                EndpointEvent::Listening {
                    endpoint,
                    addr,
                    kept,
                } => ConductorEvent::EndpointListening {
                    name: endpoint,
                    addr,
                    kept,
                },
                EndpointEvent::CannotListen { endpoint, error } => ConductorEvent::EndpointFailed {
                    name: endpoint,
                    error,
                    retry_in_ms: u64::try_from(
                        status
                            .retry_bind_at
                            .map(|t| t.saturating_duration_since(tokio::time::Instant::now()))
                            .unwrap_or_default()
                            .as_millis(),
                    )
                    .unwrap_or(0),
                },
                EndpointEvent::Stopped { endpoint, listen } => ConductorEvent::EndpointStopped {
                    name: endpoint,
                    listen,
                },
                EndpointEvent::DataPlane {
                    identity,
                    first: false,
                } => ConductorEvent::DataPlaneChanged {
                    pid: identity.pid,
                    build: identity.short_build(),
                },
                // First contact is recorded by whoever started or adopted
                // it; a change of routing has no event of its own.
                EndpointEvent::DataPlane { first: true, .. }
                | EndpointEvent::Changed
                | EndpointEvent::Unreachable { .. } => continue,
            };
            ctx.events.emit(event);
        }
        if let Some(at) = status.retry_bind_at {
            let wait = at.saturating_duration_since(tokio::time::Instant::now());
            world.wake_at(ctx.now() + i64::try_from(wait.as_millis()).unwrap_or(0));
        }
        world.endpoints_settled = status.settled;
        world.backends_in_force = Some(
            status
                .endpoints
                .iter()
                .filter(|e| e.listening)
                .map(|e| (e.name.clone(), e.backends.clone()))
                .collect(),
        );
        self.notes = status
            .endpoints
            .iter()
            .filter_map(|e| {
                e.error
                    .as_ref()
                    .filter(|_| !e.listening)
                    .map(|err| format!("endpoint {} cannot listen: {err}", e.name))
            })
            .collect();
        world.endpoints = status.endpoints;
        Ok(Action::requeue(RESYNC))
    }

    fn notes(&self) -> Vec<String> {
        self.notes.clone()
    }

    async fn stop(&mut self, _world: &mut World, _ctx: &Ctx, stop_instances: bool) {
        if stop_instances && let Err(e) = self.plane.shutdown(Duration::from_secs(5)).await {
            tracing::warn!("cannot stop the data plane: {e}");
        }
    }
}
