//! The instances reconciler: asks [`decide`] what to launch and retire, and
//! does it.
//!
//! Each operation writes its intent to the store before it acts, and runs in
//! a task that reports back through the inbox:
//!
//! - launch: row `launching` → image verified → provider launch → row
//!   `running` (a failure: row `gone`, and the failure counts towards the
//!   service's backoff and the version's rollout);
//! - retire: row `retiring` → drained out of every endpoint → terminated
//!   (SIGTERM, grace, SIGKILL) → provider cleanup → row `gone` (a failed
//!   termination stays `retiring` and is retried with backoff).
//!
//! Launches of a service wait while its crash-loop backoff (key
//! `launch/<service>/<shape>`, see [`crate::backoff`]) runs, and while its
//! provider is not available; the streak ends once an instance of that
//! shape has stayed healthy for [`STABLE_MS`]. While the conductor stops
//! with its instances, nothing is launched and everything is retired.

use crate::decide::{Decision, MemberPhase, Outcome, decide_scaled};
use crate::events::ConductorEvent;
use crate::launch;
use crate::plan::Target;
use crate::reconciler::{Action, Ctx, Inbox, ReconcileError, Reconciler, Waker};
use crate::reconcilers::volumes::ClaimRefused;
use crate::world::{Failure, STABLE_MS, World, launch_key};
use async_trait::async_trait;
use glint_dataplane::DataPlane;
use glint_model::{InstanceId, Name};
use glint_provider::{Observed, Provider};
use glint_store::{InstanceRecord, InstanceState};
use std::collections::BTreeSet;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::Duration;

/// Why a launch failed.
#[derive(Debug)]
pub struct LaunchError {
    message: String,
    /// The image failed verification: an incident, not just a failure.
    tampered: bool,
}

/// What an operation reports.
#[derive(Debug)]
pub enum Done {
    /// A launch ended.
    Launched(InstanceId, Result<Observed, LaunchError>),
    /// A retirement ended: how, or why it failed.
    Retired(InstanceId, Result<String, String>),
}

/// See the module documentation.
pub struct Instances {
    inbox: Inbox<Done>,
    dataplane: Arc<dyn DataPlane>,
    launching: BTreeSet<InstanceId>,
    retiring: BTreeSet<InstanceId>,
    notes: Vec<String>,
}

impl Instances {
    /// A new reconciler draining through `dataplane`.
    pub fn new(waker: &Waker, dataplane: Arc<dyn DataPlane>) -> Instances {
        Instances {
            inbox: Inbox::new(waker),
            dataplane,
            launching: BTreeSet::new(),
            retiring: BTreeSet::new(),
            notes: Vec::new(),
        }
    }
}

fn persist<T>(r: Result<T, glint_store::StoreError>) {
    if let Err(e) = r {
        tracing::error!("cannot write to the store: {e}");
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[async_trait]
impl Reconciler for Instances {
    fn name(&self) -> &'static str {
        "instances"
    }

    async fn reconcile(&mut self, world: &mut World, ctx: &Ctx) -> Result<Action, ReconcileError> {
        let done = self.inbox.drain();
        let changed = !done.is_empty();
        for done in done {
            match done {
                Done::Launched(id, r) => self.launched(world, ctx, &id, r),
                Done::Retired(id, r) => self.retired(world, ctx, &id, r),
            }
        }
        self.notes.clear();
        let now = ctx.now();
        let members = world.members();
        let mut outcome = match &world.target {
            Some(t) => decide_scaled(Target::of(t), &world.scaled(), &members, now),
            None => Outcome {
                decisions: members
                    .iter()
                    .filter(|m| m.phase != MemberPhase::Retiring)
                    .map(|m| Decision::Retire {
                        id: m.id.clone(),
                        reason: "no version has been applied".into(),
                    })
                    .collect(),
                ..Outcome::default()
            },
        };
        if world.stopping {
            outcome.decisions = members
                .iter()
                .filter(|m| m.phase != MemberPhase::Retiring)
                .map(|m| Decision::Retire {
                    id: m.id.clone(),
                    reason: "the conductor is stopping".into(),
                })
                .collect();
        }
        if let Some(at) = outcome.wake_at {
            world.wake_at(at);
        }
        let decisions = std::mem::take(&mut outcome.decisions);
        world.outcome = outcome;
        let mut held: BTreeSet<String> = BTreeSet::new();
        for d in decisions {
            match d {
                Decision::Launch {
                    service,
                    reason,
                    slot,
                } => {
                    if let Some(why) = self.held(world, &service, now) {
                        held.insert(why);
                        continue;
                    }
                    self.launch(world, ctx, &service, &reason, slot);
                }
                Decision::Retire { id, reason } => self.retire(world, ctx, &id, reason),
            }
        }
        // Retirements to (re)start: failed terminations whose retry is due,
        // and retirements an earlier conductor began.
        let pending: Vec<InstanceId> = world
            .live
            .iter()
            .filter(|(id, l)| {
                l.phase == MemberPhase::Retiring
                    && l.rec.state == InstanceState::Retiring
                    && !self.retiring.contains(*id)
                    && l.retry_retire_at.is_none_or(|t| t <= now)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in pending {
            self.spawn_retire(world, ctx, &id);
        }
        self.end_streaks(world, ctx, now);
        self.notes.extend(held);
        // A finished operation changes what the reconcilers before this one
        // (probes of a new instance) act on: run again at once.
        Ok(if changed {
            Action::requeue(Duration::ZERO)
        } else {
            Action::await_change()
        })
    }

    fn notes(&self) -> Vec<String> {
        self.notes.clone()
    }

    fn busy(&self) -> bool {
        !self.launching.is_empty() || !self.retiring.is_empty()
    }
}

impl Instances {
    /// Why launches of `service` wait, if they do.
    fn held(&self, world: &mut World, service: &Name, now: i64) -> Option<String> {
        let svc = world.target.as_ref()?.env.services.get(service)?;
        let kind = svc.provider;
        if !world.providers.contains_key(&kind) {
            let why = world
                .provider_errors
                .get(&kind)
                .cloned()
                .unwrap_or_else(|| "not connected yet".into());
            return Some(format!(
                "launches of {service} are held back: the {kind} provider is not available ({why})"
            ));
        }
        let key = launch_key(service, world.target_fingerprint(service).as_ref());
        let until = world.backoff.blocked(&key, now)?;
        world.wake_at(until);
        let b = world.backoff.get(&key)?;
        Some(format!(
            "launches of {service} are held back for {}: {} failures in a row, last: {}",
            crate::events::human_ms(u64::try_from(until - now).unwrap_or(0)),
            b.failures,
            b.cause
        ))
    }

    fn launch(
        &mut self,
        world: &mut World,
        ctx: &Ctx,
        service: &Name,
        reason: &str,
        slot: Option<u32>,
    ) {
        let Some(target) = world.target.clone() else {
            return;
        };
        let Some(svc) = target.env.services.get(service) else {
            return;
        };
        let now = ctx.now();
        let id = new_instance_id(service, now);
        let Some(spec) = launch::spec(
            Target::of(&target),
            target.number,
            service,
            &id,
            &ctx.store_id,
            slot,
        ) else {
            self.notes.push(format!(
                "{service}: version {} has no digest for image {}",
                target.number, svc.image
            ));
            return;
        };
        let digest = spec.labels.image.clone();
        let rec = InstanceRecord::launching(
            id.clone(),
            service.clone(),
            target.number,
            digest.clone(),
            svc.provider,
            now,
        );
        // Intent first: a crash from here on leaves a row to reconcile.
        if let Err(e) = ctx.store.insert_instance(&rec) {
            let cause = format!("cannot record the launch: {}", crate::error_chain(&e));
            let fp = world.target_fingerprint(service);
            world.count_failure(
                ctx,
                Failure {
                    id: &id,
                    fingerprint: fp.as_ref(),
                    healthy_at: None,
                    cause: &cause,
                },
            );
            self.notes.push(format!("{service}: {cause}"));
            return;
        }
        // Its volumes, claimed after the intent and before the launch (one
        // writer at a time; see `reconcilers/volumes.rs`).
        match crate::reconcilers::volumes::claim(world, ctx, &target.env, svc.provider, slot, &spec)
        {
            Ok(Ok(())) => {}
            Ok(Err(refused)) => {
                let (volume, holder) = match &refused {
                    ClaimRefused::Held { volume, holder } => (volume.clone(), Some(holder.clone())),
                    ClaimRefused::Removing { volume } => (volume.clone(), None),
                };
                ctx.events.emit(ConductorEvent::VolumeHeld {
                    id: id.clone(),
                    volume,
                    holder,
                });
                persist(
                    ctx.store
                        .mark_gone(&id, &format!("not launched: {refused}")),
                );
                self.notes.push(format!("{service}: {refused}"));
                return;
            }
            Err(e) => {
                persist(
                    ctx.store
                        .mark_gone(&id, "not launched: cannot claim its volumes"),
                );
                self.notes.push(format!(
                    "{service}: cannot claim its volumes: {}",
                    crate::error_chain(&e)
                ));
                return;
            }
        }
        ctx.events.emit(ConductorEvent::Launching {
            id: id.clone(),
            version: target.number,
            reason: reason.to_owned(),
        });
        world.insert_live(ctx.store.as_ref(), rec, MemberPhase::Launching);
        self.launching.insert(id.clone());
        let provider: Option<Arc<dyn Provider>> = world.providers.get(&svc.provider).cloned();
        let kind = svc.provider;
        let images = ctx.images.clone();
        let post = self.inbox.post();
        let store = ctx.store.clone();
        let secrets_dir = ctx.config.secrets_dir.clone();
        let identity = ctx.config.identity.clone();
        let now = ctx.now();
        let service = service.clone();
        tokio::spawn(async move {
            let r = async {
                let provider = provider.ok_or_else(|| LaunchError {
                    message: format!("the {kind} provider is not available"),
                    tampered: false,
                })?;
                // Opened only now, and held only by the spec until the
                // provider has written the files.
                let mut spec = spec;
                spec.secrets = launch::secret_files(
                    store.as_ref(),
                    secrets_dir.as_deref(),
                    &target.env,
                    &service,
                )
                .map_err(|message| LaunchError {
                    message,
                    tampered: false,
                })?;
                if let Some(issuer) = &identity {
                    spec.glint = Some(
                        launch::glint_files(issuer, store.as_ref(), &target.env, &spec.labels, now)
                            .map_err(|message| LaunchError {
                                message,
                                tampered: false,
                            })?,
                    );
                }
                let image = tokio::task::spawn_blocking(move || images.prepare(&digest, kind))
                    .await
                    .map_err(|e| LaunchError {
                        message: format!("image preparation failed: {e}"),
                        tampered: false,
                    })?
                    .map_err(|e| LaunchError {
                        message: e.message,
                        tampered: e.tampered,
                    })?;
                provider
                    .launch(launch::with_image(spec, image))
                    .await
                    .map_err(|e| LaunchError {
                        message: crate::error_chain(&e),
                        tampered: false,
                    })
            }
            .await;
            post.send(Done::Launched(id, r));
        });
    }

    fn launched(
        &mut self,
        world: &mut World,
        ctx: &Ctx,
        id: &InstanceId,
        r: Result<Observed, LaunchError>,
    ) {
        self.launching.remove(id);
        let Some(l) = world.live.get_mut(id) else {
            return;
        };
        let version = l.rec.version;
        match r {
            Ok(o) => {
                persist(ctx.store.mark_running(id, o.addr, &o.handle));
                l.rec.state = if l.phase == MemberPhase::Retiring {
                    InstanceState::Retiring
                } else {
                    InstanceState::Running
                };
                l.rec.addr = o.addr;
                l.rec.handle = Some(o.handle.clone());
                let retiring = l.phase == MemberPhase::Retiring;
                if l.phase == MemberPhase::Launching {
                    l.phase = MemberPhase::Starting;
                }
                ctx.events.emit(ConductorEvent::Launched {
                    id: id.clone(),
                    version,
                    handle: o.handle,
                    addr: o.addr,
                });
                if retiring {
                    // Retired while launching (a stop, a newer version).
                    self.spawn_retire(world, ctx, id);
                }
            }
            Err(LaunchError { message, tampered }) => {
                let fp = l.fingerprint.clone();
                ctx.events.emit(if tampered {
                    ConductorEvent::ImageRejected {
                        id: id.clone(),
                        version,
                        error: message.clone(),
                    }
                } else {
                    ConductorEvent::LaunchFailed {
                        id: id.clone(),
                        version,
                        error: message.clone(),
                    }
                });
                persist(
                    ctx.store
                        .mark_gone(id, &format!("launch failed: {message}")),
                );
                world.live.remove(id);
                world.count_failure(
                    ctx,
                    Failure {
                        id,
                        fingerprint: fp.as_ref(),
                        healthy_at: None,
                        cause: &message,
                    },
                );
            }
        }
    }

    /// Starts retiring an instance: intent, then drain and terminate in a
    /// task.
    fn retire(&mut self, world: &mut World, ctx: &Ctx, id: &InstanceId, reason: String) {
        let Some(l) = world.live.get_mut(id) else {
            return;
        };
        if l.phase == MemberPhase::Retiring {
            return;
        }
        let reason = match (&l.failure, l.phase) {
            (Some(f), MemberPhase::Failed) => f.clone(),
            _ => reason,
        };
        let was_launching = l.phase == MemberPhase::Launching;
        l.phase = MemberPhase::Retiring;
        if !was_launching {
            l.rec.state = InstanceState::Retiring;
        }
        let version = l.rec.version;
        persist(ctx.store.mark_retiring(id, &reason));
        ctx.events.emit(ConductorEvent::Retiring {
            id: id.clone(),
            version,
            reason,
        });
        if !was_launching {
            // (A launching one is retired when its launch reports.)
            self.spawn_retire(world, ctx, id);
        }
    }

    fn spawn_retire(&mut self, world: &mut World, ctx: &Ctx, id: &InstanceId) {
        if !self.retiring.insert(id.clone()) {
            return;
        }
        let spec = world.service_for(ctx.store.as_ref(), id);
        let Some(l) = world.live.get(id) else {
            self.retiring.remove(id);
            return;
        };
        let provider = world.providers.get(&l.rec.provider).cloned();
        let drain = spec
            .as_ref()
            .map(|s| s.drain.as_std())
            .unwrap_or(Duration::from_secs(30));
        let grace = spec
            .as_ref()
            .map(|s| s.stop_grace.as_std())
            .unwrap_or(Duration::from_secs(10));
        let dataplane = self.dataplane.clone();
        let post = self.inbox.post();
        let id = id.clone();
        tokio::spawn(async move {
            // Out of every endpoint's rotation, and nothing in flight,
            // before the SIGTERM. A data plane that does not answer routes
            // nothing to it either way.
            let drained = dataplane.drain(&id, drain).await;
            let r = match provider {
                Some(p) => terminate(&p, &id, grace).await,
                None => Err("its provider is not available".into()),
            };
            let r = r.map(|()| match drained {
                Ok(d) if d.remaining > 0 => {
                    format!("drain timed out with {} requests in flight", d.remaining)
                }
                Ok(_) => "drained".to_owned(),
                Err(e) => format!("not drained: {}", crate::error_chain(&e)),
            });
            post.send(Done::Retired(id, r));
        });
    }

    fn retired(
        &mut self,
        world: &mut World,
        ctx: &Ctx,
        id: &InstanceId,
        r: Result<String, String>,
    ) {
        self.retiring.remove(id);
        let key = format!("retire/{id}");
        let version = world.live.get(id).map(|l| l.rec.version);
        match r {
            Ok(how) => {
                ctx.events.emit(ConductorEvent::Terminated {
                    id: id.clone(),
                    version,
                    how,
                });
                persist(ctx.store.mark_gone(id, "terminated"));
                world.live.remove(id);
                world.backoff.succeeded(&key);
            }
            Err(error) => {
                let now = ctx.now();
                let f = world
                    .backoff
                    .failed_at_least(&key, &error, now, Duration::from_secs(1));
                let at = now + ms(f.delay);
                if let Some(l) = world.live.get_mut(id) {
                    l.retry_retire_at = Some(at);
                }
                world.wake_at(at);
                if f.failures == 1 || f.started_waiting {
                    ctx.events.emit(ConductorEvent::TerminateFailed {
                        id: id.clone(),
                        error,
                        retry_in_ms: u64::try_from(f.delay.as_millis()).unwrap_or(u64::MAX),
                    });
                }
            }
        }
    }

    /// Ends the crash-loop streaks of shapes whose instance has stayed
    /// healthy for [`STABLE_MS`]; forgets streaks of shapes nobody runs.
    fn end_streaks(&mut self, world: &mut World, ctx: &Ctx, now: i64) {
        let keys: Vec<(String, u32)> = world
            .backoff
            .with_prefix("launch/")
            .map(|b| (b.key.clone(), b.failures))
            .collect();
        for (key, failures) in keys {
            let mut stable = false;
            let mut wanted = false;
            for l in world.live.values() {
                if launch_key(&l.rec.service, l.fingerprint.as_ref()) != key {
                    continue;
                }
                wanted = true;
                if l.phase == MemberPhase::Healthy
                    && let Some(h) = l.rec.healthy_at
                {
                    if now - h >= STABLE_MS {
                        stable = true;
                    } else {
                        world_wake(&mut world.outcome, h + STABLE_MS);
                    }
                }
            }
            if let Some(t) = &world.target {
                for name in t.env.services.keys() {
                    if launch_key(name, world.target_fingerprint(name).as_ref()) == key {
                        wanted = true;
                    }
                }
            }
            if stable || !wanted {
                world.backoff.succeeded(&key);
                if let Some(service) = key.split('/').nth(1) {
                    ctx.events.set_streak(service, false);
                }
                if stable
                    && failures > ctx.policy.free
                    && let Some(service) = key.split('/').nth(1).and_then(|s| Name::new(s).ok())
                {
                    ctx.events
                        .emit(ConductorEvent::Recovered { service, failures });
                }
            }
        }
        if let Some(at) = world.outcome.wake_at {
            world.wake_at(at);
        }
    }
}

fn world_wake(outcome: &mut Outcome, at: i64) {
    outcome.wake_at = Some(outcome.wake_at.map_or(at, |w| w.min(at)));
}

async fn terminate(p: &Arc<dyn Provider>, id: &InstanceId, grace: Duration) -> Result<(), String> {
    p.terminate(id, grace)
        .await
        .map_err(|e| crate::error_chain(&e))?;
    p.remove(id).await.map_err(|e| crate::error_chain(&e))
}

/// A fresh instance id for `service`.
fn new_instance_id(service: &Name, now: i64) -> InstanceId {
    // RandomState is seeded from the OS once per thread and advanced per
    // instance, so every call yields a fresh unpredictable value.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_i64(now);
    InstanceId::from_entropy(service, h.finish())
}
