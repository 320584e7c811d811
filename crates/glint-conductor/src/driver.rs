//! The driver: runs every reconciler, in order, on every pass.
//!
//! A pass re-reads the newest version, then runs each reconciler that is not
//! backing off from an error, then publishes the status. Passes run when a
//! reconciler's inbox receives something (an operation finished, a probe
//! changed its mind, a provider pushed an event), when the store changes
//! (an apply by another process), when a reconciler's requested time comes,
//! when time alone changes a decision (`decide`'s and the backoffs' wake-up
//! times), and at least every `resync` interval. Everything already queued
//! is handled by the next pass, so bursts are debounced for free.
//!
//! **Error policy** (one for all): a reconciler that returns an error is
//! shown with it in the status and is not run again before the backoff
//! policy's delay for its count of errors in a row (at least one second).
//! An error saying this conductor has been deposed (a newer leadership epoch
//! was claimed) stops the conductor at once.
//!
//! **Time**: every deadline is a wall-clock time from the [`Clock`]; the
//! driver sleeps with tokio timers, so tests on paused time drive it
//! entirely.

use crate::events::ConductorEvent;
use crate::reconciler::{Ctx, ReconcileError, Reconciler, ReconcilerStatus};
use crate::status::{EndpointStatus, InstanceStatus, RolloutStatus, ServiceStatus, Status};
use crate::world::{World, launch_key};
use glint_model::Name;
use glint_store::Clock;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

/// How long the store may refuse writes before the status says the
/// conductor is stuck.
const STUCK_AFTER_MS: i64 = 10_000;
/// How long a stop that stops instances may take.
const STOP_DEADLINE: Duration = Duration::from_secs(300);

/// A request to the driver.
#[derive(Debug)]
pub enum Command {
    /// Stop; with `stop_instances`, drain and terminate every instance first.
    Shutdown {
        /// Whether to stop the instances.
        stop_instances: bool,
        /// Answered when done.
        done: oneshot::Sender<()>,
    },
}

struct Entry {
    reconciler: Box<dyn Reconciler>,
    status: ReconcilerStatus,
    due: Option<i64>,
    not_before: i64,
}

/// See the module documentation.
pub struct Driver {
    world: World,
    ctx: Ctx,
    entries: Vec<Entry>,
    status: watch::Sender<Arc<Status>>,
    started: i64,
    lost: watch::Receiver<bool>,
    deposed: Option<String>,
}

async fn sleep_until(clock: &dyn Clock, at: Option<i64>) {
    match at {
        Some(at) => {
            let ms = u64::try_from(at - clock.now_ms()).unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(ms)).await
        }
        None => std::future::pending().await,
    }
}

impl Driver {
    /// A driver over `world` running `reconcilers` in order.
    pub fn new(
        world: World,
        ctx: Ctx,
        reconcilers: Vec<Box<dyn Reconciler>>,
        status: watch::Sender<Arc<Status>>,
        lost: watch::Receiver<bool>,
    ) -> Driver {
        let started = ctx.now();
        let entries = reconcilers
            .into_iter()
            .map(|r| Entry {
                status: ReconcilerStatus {
                    name: r.name().to_owned(),
                    ok: true,
                    ..ReconcilerStatus::default()
                },
                reconciler: r,
                due: None,
                not_before: 0,
            })
            .collect();
        Driver {
            world,
            ctx,
            entries,
            status,
            started,
            lost,
            deposed: None,
        }
    }

    /// Runs until told to stop.
    pub async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        self.ctx.events.emit(ConductorEvent::Started {
            pid: std::process::id(),
            mode: self.ctx.config.mode.to_string(),
            epoch: self.ctx.epoch,
        });
        let mut feed = self.ctx.store.changes();
        loop {
            self.pass().await;
            if self.deposed.is_some() {
                self.stop_reconcilers(false).await;
                self.publish();
                // Wait for the owner to ask; act on nothing.
                if let Some(Command::Shutdown { done, .. }) = commands.recv().await {
                    let _ = done.send(());
                }
                return;
            }
            feed.borrow_and_update();
            let wake = self.next_wake();
            let clock = self.ctx.clock.clone();
            let waker = self.ctx.waker.clone();
            tokio::select! {
                _ = waker.woken() => {}
                r = feed.changed() => {
                    if r.is_err() {
                        tracing::warn!("the store's change feed ended");
                    }
                }
                _ = sleep_until(clock.as_ref(), wake) => {}
                _ = self.lost.changed() => {
                    if *self.lost.borrow() {
                        self.deposed = Some("the leadership was lost".into());
                    }
                }
                cmd = commands.recv() => {
                    let (stop_instances, done) = match cmd {
                        Some(Command::Shutdown { stop_instances, done }) => (stop_instances, Some(done)),
                        None => (false, None),
                    };
                    self.finish(stop_instances).await;
                    if let Some(done) = done {
                        let _ = done.send(());
                    }
                    return;
                }
            }
        }
    }

    /// When the next pass is due if nothing wakes the driver.
    fn next_wake(&mut self) -> Option<i64> {
        let now = self.ctx.now();
        let resync = now + i64::try_from(self.ctx.config.resync.as_millis()).unwrap_or(i64::MAX);
        let mut at = Some(resync);
        let mut consider = |t: Option<i64>| {
            if let Some(t) = t {
                at = Some(at.map_or(t, |a| a.min(t)));
            }
        };
        for e in &self.entries {
            consider(e.due);
            if e.not_before > now {
                consider(Some(e.not_before));
            }
        }
        consider(self.world.take_wake());
        consider(self.world.backoff.next_wake(now));
        consider(self.ctx.events.next_flush());
        at
    }

    /// One pass. See the module documentation.
    pub async fn pass(&mut self) {
        let started = tokio::time::Instant::now();
        if let Err(e) = self.world.refresh_target(self.ctx.store.as_ref()) {
            tracing::warn!("cannot read the newest version: {e}");
        }
        let now = self.ctx.now();
        for entry in &mut self.entries {
            if entry.not_before > now {
                // Backing off from an error: its retry time is the wake-up.
                entry.due = None;
                continue;
            }
            let result = entry.reconciler.reconcile(&mut self.world, &self.ctx).await;
            let at = self.ctx.now();
            entry.status.last_run = Some(at);
            match result {
                Ok(action) => {
                    entry.status.ok = true;
                    entry.status.error = None;
                    entry.status.errors = 0;
                    entry.due = action
                        .requeue_after
                        .map(|d| at + i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
                }
                Err(e) if e.is_fenced() => {
                    tracing::error!("{}: {e}; this conductor stops acting", entry.status.name);
                    self.deposed = Some(e.to_string());
                    entry.status.ok = false;
                    entry.status.error = Some(e.to_string());
                    return;
                }
                Err(e) => {
                    entry.due = None;
                    let msg = error_text(&e);
                    tracing::warn!("{}: {msg}", entry.status.name);
                    entry.status.ok = false;
                    entry.status.error = Some(msg);
                    entry.status.errors = entry.status.errors.saturating_add(1);
                    let delay = self
                        .ctx
                        .policy
                        .delay(entry.status.errors + self.ctx.policy.free)
                        .max(Duration::from_secs(1));
                    entry.not_before = at + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
                }
            }
            entry.status.notes = entry.reconciler.notes();
        }
        self.ctx.events.flush();
        self.publish();
        self.ctx.metrics.observe_pass(started.elapsed());
    }

    async fn stop_reconcilers(&mut self, stop_instances: bool) {
        for entry in &mut self.entries {
            entry
                .reconciler
                .stop(&mut self.world, &self.ctx, stop_instances)
                .await;
        }
    }

    /// Stops; with `stop_instances`, first retires every instance, still
    /// running passes for the operations it waits for.
    async fn finish(&mut self, stop_instances: bool) {
        if stop_instances {
            self.world.stopping = true;
            let deadline = tokio::time::Instant::now() + STOP_DEADLINE;
            loop {
                self.pass().await;
                let busy = self.entries.iter().any(|e| e.reconciler.busy());
                if (self.world.live.is_empty() && !busy) || self.deposed.is_some() {
                    break;
                }
                let clock = self.ctx.clock.clone();
                let wake = self.next_wake();
                tokio::select! {
                    _ = self.ctx.waker.woken() => {}
                    _ = sleep_until(clock.as_ref(), wake) => {}
                    _ = tokio::time::sleep_until(deadline) => break,
                }
            }
        }
        self.stop_reconcilers(stop_instances).await;
        if stop_instances && self.world.live.is_empty() {
            for (kind, p) in &self.world.providers {
                if let Err(e) = p.release().await {
                    tracing::warn!("the {kind} provider could not release its resources: {e}");
                }
            }
        }
        self.ctx.events.emit(ConductorEvent::Stopped {
            stopped_instances: stop_instances,
        });
        self.publish();
    }

    fn publish(&self) {
        let status = self.snapshot();
        self.status.send_if_modified(|old| {
            if **old == status {
                false
            } else {
                *old = Arc::new(status);
                true
            }
        });
    }

    /// The status, from the world and the reconcilers.
    fn snapshot(&self) -> Status {
        let now = self.ctx.now();
        let target = self.world.target.as_deref();
        let mut names: Vec<Name> = target
            .map(|t| t.env.services.keys().cloned().collect())
            .unwrap_or_default();
        names.extend(self.world.live.values().map(|l| l.rec.service.clone()));
        names.sort();
        names.dedup();
        let mut converged = target.is_some();
        let mut services = Vec::new();
        for name in names {
            let svc = target.and_then(|t| t.env.services.get(&name));
            let desired = svc
                .map(|s| crate::autoscale::count(s, self.world.scale.get(&name).map(|x| x.desired)))
                .unwrap_or(0);
            let fp = self.world.target_fingerprint(&name);
            let (mut ready, mut ready_current) = (0, 0);
            let mut instances = Vec::new();
            for l in self.world.live.values().filter(|l| l.rec.service == name) {
                let current = fp.is_some() && l.fingerprint == fp;
                if l.phase == crate::decide::MemberPhase::Healthy {
                    ready += 1;
                    if current {
                        ready_current += 1;
                    }
                }
                instances.push(InstanceStatus {
                    id: l.rec.id.clone(),
                    version: l.rec.version,
                    phase: l.phase,
                    current,
                    addr: l.rec.addr,
                    created_at: l.rec.created_at,
                });
            }
            let progress = self.world.outcome.progress.get(&name);
            let settled = progress.map_or(desired == 0 && instances.is_empty(), |p| p.converged);
            if !settled {
                converged = false;
            }
            let key = launch_key(&name, fp.as_ref());
            let streak = self.world.backoff.get(&key);
            let backoff = streak.filter(|b| b.until_ms > now).map(|b| {
                format!(
                    "{} failures in a row, next launch in {}: {}",
                    b.failures,
                    crate::events::human_ms(u64::try_from(b.until_ms - now).unwrap_or(0)),
                    b.cause
                )
            });
            let rollout = progress.and_then(|p| {
                (p.stale > 0 || p.waiting.is_some()).then(|| RolloutStatus {
                    stale: p.stale,
                    aged: p.aged,
                    available: p.available,
                    step: p.step,
                    waiting: p.waiting.clone(),
                })
            });
            let failed_new = target
                .filter(|t| t.outcome.is_none())
                .and_then(|t| self.ctx.store.failed_count(t.number).ok())
                .unwrap_or(0);
            let autoscale = svc.and_then(|s| {
                crate::reconcilers::autoscale::status(s, self.world.scale.get(&name), ready)
            });
            services.push(ServiceStatus {
                name,
                desired,
                ready,
                ready_current,
                available: progress.map(|p| p.available.min(desired)).unwrap_or(0),
                instances,
                backoff,
                rollout,
                failed_new,
                last_failure: streak.map(|b| b.cause.clone()),
                autoscale,
            });
        }
        let declared: std::collections::BTreeMap<&Name, &glint_model::Endpoint> = target
            .map(|t| t.env.endpoints.iter().collect())
            .unwrap_or_default();
        let endpoints: Vec<EndpointStatus> = self
            .world
            .endpoints
            .iter()
            .map(|r| EndpointStatus {
                name: r.name.clone(),
                listen: r.listen,
                listening: r.listening,
                service: r.service.clone(),
                backends: r.backends.clone(),
                error: r.error.clone(),
                requests: r.requests,
                failures: r.failures,
                responses: r.responses,
                latency: r.latency.clone(),
                in_flight: r.in_flight,
            })
            .collect();
        if endpoints.iter().any(|e| !e.listening) || endpoints.len() < declared.len() {
            converged = false;
        }
        let reconcilers: Vec<ReconcilerStatus> =
            self.entries.iter().map(|e| e.status.clone()).collect();
        let mut problems: Vec<String> = Vec::new();
        let mut stuck = None;
        if let Some(why) = &self.deposed {
            problems.push(format!("this conductor no longer acts: {why}"));
            stuck = Some(why.clone());
        }
        if let Some((n, since, err)) = self.ctx.events.lost() {
            let secs = (now - since).max(0) / 1000;
            problems.push(format!(
                "the store has refused writes for {secs}s ({n} events lost): {err}"
            ));
            if now - since >= STUCK_AFTER_MS {
                stuck = Some(format!("the store refuses writes: {err}"));
            }
        }
        for r in &reconcilers {
            if let Some(e) = &r.error {
                problems.push(format!("{}: {e}", r.name));
            }
            problems.extend(r.notes.iter().cloned());
        }
        Status {
            version: target.map(|t| t.number),
            converged,
            services,
            endpoints,
            uptime_s: u64::try_from((now - self.started).max(0) / 1000).unwrap_or(0),
            epoch: self.ctx.epoch,
            reconcilers,
            problems,
            stuck,
        }
    }
}

fn error_text(e: &ReconcileError) -> String {
    crate::error_chain(e)
}
