//! The conductor's picture of the world, shared by its reconcilers.
//!
//! [`World`] holds what the reconcilers read and update on every pass: the
//! target version, the live instances as the conductor believes them
//! ([`Live`]), the providers that are connected, what `decide` concluded on
//! the last pass, and every retry's backoff. It is owned by the driver and
//! handed to one reconciler at a time, so nothing in it is ever touched
//! concurrently. Everything essential in it is derived from the store (the
//! target, the instance rows, the backoffs) or from the providers (what
//! runs), so a restarted conductor rebuilds it exactly
//! (architecture invariant 2).

use crate::backoff;
use crate::decide::{Member, MemberPhase, Outcome};
use crate::events::ConductorEvent;
use crate::plan::{Target, fingerprint};
use crate::reconciler::Ctx;
use glint_model::{ContentHash, InstanceId, Name, ProviderKind, Service, VersionNumber};
use glint_provider::Provider;
use glint_store::prelude::*;
use glint_store::{InstanceRecord, VersionRecord};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// The providers the conductor may use, by kind.
pub type Providers = BTreeMap<ProviderKind, Arc<dyn Provider>>;

/// How long an instance must stay healthy before its crash no longer counts
/// as a crash loop (and before a service's backoff streak ends).
pub const STABLE_MS: i64 = 10_000;

/// One live instance as the conductor tracks it.
#[derive(Debug, Clone)]
pub struct Live {
    /// Its row, as last written.
    pub rec: InstanceRecord,
    /// Where it stands.
    pub phase: MemberPhase,
    /// Why it failed, when it did (shown when it is retired).
    pub failure: Option<String>,
    /// The launch-shape fingerprint it was launched with.
    pub fingerprint: Option<ContentHash>,
    /// The next time a failed termination is retried.
    pub retry_retire_at: Option<i64>,
}

/// The key under which a service's launches back off: per service *and*
/// launch shape, so that a new version never inherits an old one's crash
/// loop.
pub fn launch_key(service: &Name, fingerprint: Option<&ContentHash>) -> String {
    format!(
        "launch/{service}/{}",
        fingerprint.map(ContentHash::short).unwrap_or("none")
    )
}

/// See the module documentation.
pub struct World {
    /// The newest version: what the conductor converges to.
    pub target: Option<Arc<VersionRecord>>,
    versions: HashMap<VersionNumber, Arc<VersionRecord>>,
    /// Live instances.
    pub live: BTreeMap<InstanceId, Live>,
    /// Connected providers.
    pub providers: Providers,
    /// Why providers that are needed cannot be used.
    pub provider_errors: BTreeMap<ProviderKind, String>,
    /// What `decide` concluded on the last pass.
    pub outcome: Outcome,
    /// Every retry's backoff.
    pub backoff: backoff::Tracker,
    /// The conductor is stopping: nothing new is launched.
    pub stopping: bool,
    /// Whether the first look at the world (adoption) is done.
    pub adopted: bool,
    /// Whether every declared endpoint is listening or has failed to: a
    /// rollout is not complete before.
    pub endpoints_settled: bool,
    /// The data plane's endpoints as last reported.
    pub endpoints: Vec<glint_dataplane::EndpointView>,
    /// Each endpoint's backend set in force in the data plane, as it
    /// confirmed it on the last endpoints pass; `None` when there is
    /// nothing to wait for (no pass yet, or the data plane does not
    /// answer). A rollout is recorded as converged only once every set in
    /// force is the one [`World::backends`] gives now, so `apply --wait`
    /// never returns while an endpoint still routes to retired instances.
    pub backends_in_force: Option<BTreeMap<Name, Vec<InstanceId>>>,
    /// The volumes each instance holds, from the store's claims
    /// (`reconcilers/volumes.rs`).
    pub claims: BTreeMap<InstanceId, crate::reconcilers::volumes::Held>,
    /// The autoscaler's count and reason per autoscaled service
    /// (`reconcilers/autoscale.rs`).
    pub scale: BTreeMap<Name, crate::reconcilers::autoscale::Scaled>,
    /// When time alone changes something (ms since the epoch).
    wake_at: Option<i64>,
}

impl World {
    /// The backends an endpoint in front of `service` routes to now: its
    /// healthy, running instances that `decide` routes to, sorted.
    pub fn backends(&self, service: &Name) -> Vec<glint_dataplane::Backend> {
        let routed = self.outcome.routes.get(service);
        let mut out: Vec<glint_dataplane::Backend> = self
            .live
            .values()
            .filter(|l| {
                &l.rec.service == service
                    && l.phase == MemberPhase::Healthy
                    && l.rec.state == glint_store::InstanceState::Running
                    && routed.is_some_and(|r| r.contains(&l.rec.id))
            })
            .filter_map(|l| {
                l.rec.addr.map(|addr| glint_dataplane::Backend {
                    instance: l.rec.id.clone(),
                    addr,
                })
            })
            .collect();
        out.sort();
        out
    }

    /// Whether every listening endpoint of the target has in force, in the
    /// data plane, the backend set [`World::backends`] gives now (or there
    /// is nothing to wait for: see [`World::backends_in_force`]; an
    /// endpoint that cannot listen holds nothing up, as
    /// [`World::endpoints_settled`] says).
    pub fn backends_settled(&self) -> bool {
        let (Some(target), Some(in_force)) = (&self.target, &self.backends_in_force) else {
            return true;
        };
        target.env.endpoints.iter().all(|(name, e)| {
            in_force.get(name).is_none_or(|b| {
                let mut now: Vec<InstanceId> = self
                    .backends(&e.service)
                    .into_iter()
                    .map(|b| b.instance)
                    .collect();
                now.sort();
                let mut b = b.clone();
                b.sort();
                b == now
            })
        })
    }

    /// An empty world over the backoffs the store holds.
    pub fn new(store: Arc<dyn Store>, providers: Providers) -> World {
        World {
            target: None,
            versions: HashMap::new(),
            live: BTreeMap::new(),
            providers,
            provider_errors: BTreeMap::new(),
            outcome: Outcome::default(),
            backoff: backoff::Tracker::load(store, backoff::Policy::DEFAULT),
            stopping: false,
            adopted: false,
            endpoints_settled: true,
            endpoints: Vec::new(),
            backends_in_force: None,
            claims: BTreeMap::new(),
            scale: BTreeMap::new(),
            wake_at: None,
        }
    }

    /// Asks for a pass at `at` (ms since the epoch) at the latest.
    pub fn wake_at(&mut self, at: i64) {
        self.wake_at = Some(self.wake_at.map_or(at, |w| w.min(at)));
    }

    /// Takes the earliest requested wake-up.
    pub fn take_wake(&mut self) -> Option<i64> {
        self.wake_at.take()
    }

    /// Loads a version, cached (versions never change).
    pub fn version(&mut self, store: &dyn Store, n: VersionNumber) -> Option<Arc<VersionRecord>> {
        if let Some(v) = self.versions.get(&n) {
            return Some(v.clone());
        }
        match store.version(n) {
            Ok(v) => {
                let v = Arc::new(v);
                self.versions.insert(n, v.clone());
                Some(v)
            }
            Err(e) => {
                tracing::warn!("cannot load version {n}: {e}");
                None
            }
        }
    }

    /// Re-reads the newest version; returns whether it changed.
    pub fn refresh_target(&mut self, store: &dyn Store) -> Result<bool, glint_store::StoreError> {
        let latest = store.latest_version_number()?;
        if latest == self.target.as_ref().map(|t| t.number) {
            return Ok(false);
        }
        self.target = latest.and_then(|n| self.version(store, n));
        // Fingerprints are relative to the target: recompute them.
        let ids: Vec<InstanceId> = self.live.keys().cloned().collect();
        for id in ids {
            let fp = self.fingerprint_of(store, &id);
            if let Some(l) = self.live.get_mut(&id) {
                l.fingerprint = fp;
            }
        }
        Ok(true)
    }

    /// The launch-shape fingerprint an instance was launched with.
    pub fn fingerprint_of(&mut self, store: &dyn Store, id: &InstanceId) -> Option<ContentHash> {
        let (version, service) = {
            let l = self.live.get(id)?;
            (l.rec.version, l.rec.service.clone())
        };
        let v = self.version(store, version)?;
        fingerprint(Target::of(&v), &service)
    }

    /// The target's fingerprint for `service`.
    pub fn target_fingerprint(&self, service: &Name) -> Option<ContentHash> {
        self.target
            .as_deref()
            .and_then(|t| fingerprint(Target::of(t), service))
    }

    /// The service spec an instance was launched with.
    pub fn spec_of(&mut self, store: &dyn Store, id: &InstanceId) -> Option<Service> {
        let (version, service) = {
            let l = self.live.get(id)?;
            (l.rec.version, l.rec.service.clone())
        };
        let v = self.version(store, version)?;
        v.env.services.get(&service).cloned()
    }

    /// The newest declaration of `service`: the target's, else the one its
    /// instance was launched with.
    pub fn service_for(&mut self, store: &dyn Store, id: &InstanceId) -> Option<Service> {
        let service = self.live.get(id)?.rec.service.clone();
        self.target
            .as_ref()
            .and_then(|t| t.env.services.get(&service).cloned())
            .or_else(|| self.spec_of(store, id))
    }

    /// Starts tracking an instance.
    pub fn insert_live(&mut self, store: &dyn Store, rec: InstanceRecord, phase: MemberPhase) {
        let id = rec.id.clone();
        self.live.insert(
            id.clone(),
            Live {
                rec,
                phase,
                failure: None,
                fingerprint: None,
                retry_retire_at: None,
            },
        );
        let fp = self.fingerprint_of(store, &id);
        if let Some(l) = self.live.get_mut(&id) {
            l.fingerprint = fp;
        }
    }

    /// The live instances as `decide` sees them.
    pub fn members(&self) -> Vec<Member> {
        self.live
            .values()
            .map(|l| Member {
                id: l.rec.id.clone(),
                service: l.rec.service.clone(),
                fingerprint: l.fingerprint.clone(),
                phase: l.phase,
                created_at: l.rec.created_at,
                healthy_at: l.rec.healthy_at,
                slot: self.claims.get(&l.rec.id).and_then(|h| h.slot),
                holds: self
                    .claims
                    .get(&l.rec.id)
                    .map(|h| h.writes.clone())
                    .unwrap_or_default(),
            })
            .collect()
    }

    /// The autoscaler's chosen count per service, for `decide`.
    pub fn scaled(&self) -> BTreeMap<Name, u32> {
        self.scale
            .iter()
            .map(|(n, s)| (n.clone(), s.desired))
            .collect()
    }

    /// Counts a failure of an instance — it could not be launched, it ended
    /// or failed its health check before it was stable — towards its
    /// service's crash-loop backoff and, when it is an instance of the
    /// target, towards the target's rollout failing.
    pub fn count_failure(&mut self, ctx: &Ctx, f: Failure<'_>) {
        let now = ctx.now();
        let Ok(service) = Name::new(f.id.service()) else {
            return;
        };
        if f.healthy_at.is_some_and(|h| now - h >= STABLE_MS) {
            // It served for a while: an ordinary death, healed at once.
            return;
        }
        let key = launch_key(&service, f.fingerprint);
        let b = self.backoff.failed(&key, f.cause, now);
        if b.failures > ctx.policy.free {
            ctx.events.set_streak(service.as_str(), true);
        }
        if b.started_waiting {
            ctx.events.emit(ConductorEvent::BackingOff {
                service: service.clone(),
                failures: b.failures,
                delay_ms: u64::try_from(b.delay.as_millis()).unwrap_or(u64::MAX),
                cause: f.cause.to_owned(),
            });
        }
        if b.delay > std::time::Duration::ZERO {
            self.wake_at(now + i64::try_from(b.delay.as_millis()).unwrap_or(i64::MAX));
        }
        // A new instance of the target that failed before it was stable
        // counts towards failing the rollout.
        let of_target = self.target.as_ref().is_some_and(|t| {
            f.fingerprint.is_some()
                && f.fingerprint == fingerprint_for(t, &service).as_ref()
                && t.env.services.contains_key(&service)
        });
        if of_target && let Err(e) = ctx.store.mark_failed(f.id) {
            tracing::warn!("cannot record that {} failed: {e}", f.id);
        }
    }
}

/// One failure of an instance, for [`World::count_failure`].
#[derive(Debug, Clone, Copy)]
pub struct Failure<'a> {
    /// The instance.
    pub id: &'a InstanceId,
    /// Its launch shape.
    pub fingerprint: Option<&'a ContentHash>,
    /// When it became healthy, if it did.
    pub healthy_at: Option<i64>,
    /// Why it failed.
    pub cause: &'a str,
}

fn fingerprint_for(t: &VersionRecord, service: &Name) -> Option<ContentHash> {
    fingerprint(Target::of(t), service)
}
