//! The providers reconciler: connects the providers that are needed.
//!
//! A provider is needed when the target declares a service on it or a live
//! instance (in the store, before adoption; in the world after) runs on it.
//! Needed providers that are missing are connected through the
//! [`ProviderFactory`]; a failure is one event and a backoff (key
//! `provider/<kind>`), and launches on that provider are held back with the
//! reason — never a launch attempt, an event or a warning per pass.

use crate::conductor::ProviderFactory;
use crate::events::ConductorEvent;
use crate::reconciler::{Action, Ctx, ReconcileError, Reconciler};
use crate::world::World;
use async_trait::async_trait;
use glint_model::{Name, ProviderKind};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// See the module documentation.
pub struct Providers {
    factory: Option<Arc<dyn ProviderFactory>>,
    notes: Vec<String>,
}

impl Providers {
    /// A reconciler connecting through `factory` (none: only the providers
    /// the conductor was started with).
    pub fn new(factory: Option<Arc<dyn ProviderFactory>>) -> Providers {
        Providers {
            factory,
            notes: Vec::new(),
        }
    }
}

fn key(kind: ProviderKind) -> String {
    format!("provider/{kind}")
}

#[async_trait]
impl Reconciler for Providers {
    fn name(&self) -> &'static str {
        "providers"
    }

    async fn reconcile(&mut self, world: &mut World, ctx: &Ctx) -> Result<Action, ReconcileError> {
        let mut needed: BTreeSet<ProviderKind> = world
            .target
            .as_ref()
            .map(|t| t.env.services.values().map(|s| s.provider).collect())
            .unwrap_or_default();
        needed.extend(world.live.values().map(|l| l.rec.provider));
        if !world.adopted {
            needed.extend(ctx.store.live_instances()?.iter().map(|r| r.provider));
        }
        let env = world
            .target
            .as_ref()
            .map(|t| t.env.name.clone())
            .or_else(|| Name::new("default").ok());
        let now = ctx.now();
        self.notes.clear();
        for kind in needed {
            if world.providers.contains_key(&kind) {
                continue;
            }
            let Some(factory) = &self.factory else {
                world
                    .provider_errors
                    .insert(kind, format!("no {kind} provider in this conductor"));
                continue;
            };
            if let Some(at) = world.backoff.blocked(&key(kind), now) {
                world.wake_at(at);
                continue;
            }
            let Some(env) = env.clone() else { continue };
            let result = tokio::time::timeout(CONNECT_TIMEOUT, factory.connect(kind, env))
                .await
                .unwrap_or_else(|_| {
                    Err(format!("no answer within {}s", CONNECT_TIMEOUT.as_secs()))
                });
            match result {
                Ok(p) => {
                    world.providers.insert(kind, p);
                    world.provider_errors.remove(&kind);
                    world.backoff.succeeded(&key(kind));
                    ctx.events.emit(ConductorEvent::ProviderConnected { kind });
                }
                Err(e) => {
                    // At least a second: a provider is not hammered even
                    // on its free retries.
                    let f =
                        world
                            .backoff
                            .failed_at_least(&key(kind), &e, now, Duration::from_secs(1));
                    let delay = f.delay;
                    world.wake_at(now + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX));
                    if f.failures == 1 || f.started_waiting {
                        ctx.events.emit(ConductorEvent::ProviderUnavailable {
                            kind,
                            error: e.clone(),
                            retry_in_s: delay.as_secs(),
                        });
                    }
                    world.provider_errors.insert(kind, e);
                }
            }
        }
        for (kind, e) in &world.provider_errors {
            self.notes
                .push(format!("the {kind} provider is not available: {e}"));
        }
        Ok(Action::await_change())
    }

    fn notes(&self) -> Vec<String> {
        self.notes.clone()
    }
}
