//! The conductor's decisions, as a pure function.
//!
//! [`decide`] looks at the target (the newest version), the live instances as
//! the conductor sees them *right now* and the current time, and says which
//! instances to launch, which to retire, which may receive traffic, and when
//! to look again. It is called afresh on every pass and uses nothing else —
//! no memory of earlier passes — so a restarted conductor decides exactly
//! what the old one would have (architecture invariant 2). Everything a
//! rollout needs to remember is derived from facts the store keeps about each
//! instance: its launch shape (fingerprint), when it was launched, and when
//! it became healthy. Launches already decided but not yet running are
//! members in [`MemberPhase::Launching`], so nothing is launched twice.
//!
//! ## Vocabulary
//! - *current*: a member whose launch shape matches the target's;
//!   *stale*: launched with another shape (an older version), or older than
//!   the service's `max_age` (minus a per-instance jitter);
//! - *healthy*: passing its health check; healthy members receive traffic;
//! - *available*: healthy for at least `min_healthy`; only available members
//!   count when deciding whether a stale one may be retired.
//!
//! ## Strategies, per service with declared count `D`
//! - **rolling `{ surge, unavailable }`**: at most `D + surge` members, at
//!   least `D - unavailable` available; current members are launched up to
//!   `D` within the surge budget; stale ones are retired not-ready first, and
//!   an available one only while enough others stay available. With
//!   `surge = 0, unavailable = 0` a surge of 1 is used.
//! - **blue_green `{ keep }`**: a complete new set of `D` is launched at once;
//!   traffic stays on the old set until all `D` new members are available,
//!   then moves to the new set in one step; the old set stays running (out of
//!   rotation) for `keep`, so that a rollback switches back instantly, and is
//!   then retired.
//! - **canary `{ steps, pause }`**: the new version grows through the counts
//!   in `steps` and then `D`; after each step has been available for `pause`,
//!   the next begins. Within a step, replacement works like rolling with a
//!   surge of 1.
//!
//! Scheduled replacement (`max_age`) uses the rolling rule with a surge of
//! 1 whatever the strategy, so phoenix replacement never lowers available
//! capacity. Failed members (unhealthy, never healthy) are retired at once —
//! they serve nothing, so retiring them never costs capacity — and a crashed
//! one is simply gone; either way the service is short and a launch follows.
//!
//! ## One writer at a time (volumes)
//!
//! A service that mounts a shared volume read-write, or per-instance
//! volumes, follows the writers rule (`decide/writers.rs`) instead of its
//! strategy, for every replacement (a new version, `max_age`, healing,
//! scaling): **stop before start**. A launch that would mount a volume some
//! member still holds — in any phase, retiring included, of any service —
//! waits until that member is gone; stale members are retired one slot at a
//! time (`unavailable` of a rolling strategy, at least 1). This is the one
//! exception to "planned replacement never lowers capacity": two writers
//! on one volume would destroy it. Per-instance volumes give each member a
//! *slot* (`0..D`) whose volume (`NAME-SLOT`) it keeps across replacements.
//!
//! ## The count
//!
//! `D` is the declared `instances`, or for an autoscaled service the count
//! the autoscaler chose and persisted (within `[min, max]`, see
//! [`crate::autoscale::count`]), given to [`decide_scaled`].

mod writers;

use crate::plan::{Target, fingerprint};
use glint_model::{ContentHash, InstanceId, Name, Service, Strategy};
use std::collections::BTreeMap;

/// Where a live instance stands, as far as decisions go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberPhase {
    /// Launch decided, provider not done yet.
    Launching,
    /// Running, not yet healthy.
    Starting,
    /// Passing its health check (see [`Member::healthy_at`]).
    Healthy,
    /// Unhealthy or never became healthy: to be replaced.
    Failed,
    /// Being drained and terminated.
    Retiring,
}

impl std::fmt::Display for MemberPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MemberPhase::Launching => "launching",
            MemberPhase::Starting => "starting",
            MemberPhase::Healthy => "healthy",
            MemberPhase::Failed => "failed",
            MemberPhase::Retiring => "retiring",
        })
    }
}

/// One live instance as [`decide`] sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Its id.
    pub id: InstanceId,
    /// Its service.
    pub service: Name,
    /// Hash of the launch shape it was launched with.
    pub fingerprint: Option<ContentHash>,
    /// Where it stands.
    pub phase: MemberPhase,
    /// When it was launched (ms since the epoch).
    pub created_at: i64,
    /// When it last became healthy (ms since the epoch), if it is healthy.
    pub healthy_at: Option<i64>,
    /// Its slot, when its service has per-instance volumes.
    pub slot: Option<u32>,
    /// The volumes it holds read-write (claimed before it was launched,
    /// released once it is gone).
    pub holds: Vec<String>,
}

/// One thing to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Launch a new instance of `service`.
    Launch {
        /// The service.
        service: Name,
        /// Why, for the event log.
        reason: String,
        /// The slot it takes (services with per-instance volumes).
        slot: Option<u32>,
    },
    /// Drain and terminate an instance.
    Retire {
        /// The instance.
        id: InstanceId,
        /// Why, for the event log.
        reason: String,
    },
}

/// Where a service's replacement stands, for status and events.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Progress {
    /// Declared count.
    pub desired: u32,
    /// Available current members.
    pub available: u32,
    /// Current members (any phase but failed/retiring).
    pub current: u32,
    /// Stale members left.
    pub stale: u32,
    /// Members stale only because of `max_age`.
    pub aged: u32,
    /// `(step, steps)` of a canary rollout, 1-based.
    pub step: Option<(usize, usize)>,
    /// What the rollout is waiting for, if anything specific.
    pub waiting: Option<String>,
    /// Whether the service runs exactly its declared count of available
    /// current members (blue/green: traffic has switched to the new set).
    pub converged: bool,
}

/// Everything [`decide`] concludes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Outcome {
    /// What to do now.
    pub decisions: Vec<Decision>,
    /// Per service, the members that may receive traffic.
    pub routes: BTreeMap<Name, Vec<InstanceId>>,
    /// Per service, where replacement stands.
    pub progress: BTreeMap<Name, Progress>,
    /// When time alone will change a decision (a `min_healthy` elapsing, a
    /// canary pause ending, an instance reaching its `max_age`), in ms since
    /// the epoch.
    pub wake_at: Option<i64>,
}

impl Outcome {
    fn wake(&mut self, at: i64) {
        self.wake_at = Some(self.wake_at.map_or(at, |w| w.min(at)));
    }
}

/// The share of `max_age` by which an instance may be replaced early, so that
/// instances launched together are not all replaced at once.
pub const MAX_AGE_JITTER: f64 = 0.2;

/// When an instance launched at `created_at` reaches its `max_age`: between
/// `(1 - MAX_AGE_JITTER) * max_age` and `max_age` after launch, fixed per
/// instance id (a restarted conductor computes the same moment).
pub fn expires_at(id: &InstanceId, created_at: i64, max_age_ms: u64) -> i64 {
    // FNV-1a of the id: stable across runs and builds.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.as_str().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let frac = (h % 10_000) as f64 / 10_000.0;
    let early = (max_age_ms as f64 * MAX_AGE_JITTER * frac) as i64;
    created_at
        .saturating_add(i64::try_from(max_age_ms).unwrap_or(i64::MAX))
        .saturating_sub(early)
}

/// Decides what to launch, retire and route, with every service at its
/// declared count. See the module documentation.
pub fn decide(target: Target<'_>, members: &[Member], now: i64) -> Outcome {
    decide_scaled(target, &BTreeMap::new(), members, now)
}

/// Decides what to launch, retire and route, with autoscaled services at
/// the counts in `scaled` (the autoscaler's persisted choices). See the
/// module documentation.
pub fn decide_scaled(
    target: Target<'_>,
    scaled: &BTreeMap<Name, u32>,
    members: &[Member],
    now: i64,
) -> Outcome {
    let mut by_service: BTreeMap<&Name, Vec<&Member>> = BTreeMap::new();
    // Volumes held by any member, retiring ones included.
    let mut held: BTreeMap<&str, &InstanceId> = BTreeMap::new();
    for m in members {
        for v in &m.holds {
            held.insert(v.as_str(), &m.id);
        }
        if m.phase != MemberPhase::Retiring {
            by_service.entry(&m.service).or_default().push(m);
        }
    }
    let mut out = Outcome::default();
    // Services no longer declared: retire everything.
    for (name, ms) in &by_service {
        if !target.env.services.contains_key(*name) {
            for m in ms {
                out.decisions.push(Decision::Retire {
                    id: m.id.clone(),
                    reason: format!("service {name} is no longer declared"),
                });
            }
        }
    }
    for (name, svc) in &target.env.services {
        let ms = by_service.get(name).map(Vec::as_slice).unwrap_or(&[]);
        let d = crate::autoscale::count(svc, scaled.get(name).copied());
        let guard = writers::Guard::of(target.env, svc);
        let mut pass = ServicePass::new(name, svc, fingerprint(target, name), ms, now, &mut out);
        pass.d = d;
        match guard {
            Some(g) => pass.run_writers(&g, &held),
            None => pass.run(),
        }
    }
    out
}

/// One service's share of a pass.
struct ServicePass<'a> {
    name: &'a Name,
    svc: &'a Service,
    /// The count to keep.
    d: u32,
    now: i64,
    current: Vec<&'a Member>,
    /// Launched with another shape.
    outdated: Vec<&'a Member>,
    /// Current shape, but past `max_age`.
    aged: Vec<&'a Member>,
    out: &'a mut Outcome,
}

impl<'a> ServicePass<'a> {
    fn new(
        name: &'a Name,
        svc: &'a Service,
        want: Option<ContentHash>,
        members: &[&'a Member],
        now: i64,
        out: &'a mut Outcome,
    ) -> ServicePass<'a> {
        let mut p = ServicePass {
            name,
            svc,
            d: svc.instances,
            now,
            current: Vec::new(),
            outdated: Vec::new(),
            aged: Vec::new(),
            out,
        };
        for m in members {
            if m.phase == MemberPhase::Failed {
                p.out.decisions.push(Decision::Retire {
                    id: m.id.clone(),
                    reason: "failed its health check".into(),
                });
            } else if want.is_none() || m.fingerprint != want {
                p.outdated.push(m);
            } else if let Some(max_age) = svc.max_age {
                let at = expires_at(&m.id, m.created_at, max_age.0);
                if now >= at {
                    p.aged.push(m);
                } else {
                    p.out.wake(at);
                    p.current.push(m);
                }
            } else {
                p.current.push(m);
            }
        }
        // Oldest first everywhere, so that choices are stable.
        for v in [&mut p.current, &mut p.outdated, &mut p.aged] {
            v.sort_by_key(|m| (m.created_at, m.id.clone()));
        }
        p
    }

    fn healthy(m: &Member) -> bool {
        m.phase == MemberPhase::Healthy
    }

    /// Healthy for at least `min_healthy` (and, if not yet, when it will be).
    fn available(&mut self, m: &Member) -> bool {
        match (m.phase, m.healthy_at) {
            (MemberPhase::Healthy, Some(at)) => {
                let ready_at = at.saturating_add(self.svc.rollout.min_healthy.0 as i64);
                if self.now >= ready_at {
                    true
                } else {
                    self.out.wake(ready_at);
                    false
                }
            }
            (MemberPhase::Healthy, None) => self.svc.rollout.min_healthy.0 == 0,
            _ => false,
        }
    }

    fn launch(&mut self, reason: String) {
        self.launch_in(reason, None);
    }

    fn launch_in(&mut self, reason: String, slot: Option<u32>) {
        self.out.decisions.push(Decision::Launch {
            service: self.name.clone(),
            reason,
            slot,
        });
    }

    fn retire(&mut self, m: &Member, reason: String) {
        self.out.decisions.push(Decision::Retire {
            id: m.id.clone(),
            reason,
        });
    }

    fn run(mut self) {
        let d = self.d;
        let current: Vec<&Member> = self.current.clone();
        let available_current = current.iter().filter(|m| self.available(m)).count() as u32;
        let mut progress = Progress {
            desired: d,
            available: available_current,
            current: current.len() as u32,
            stale: (self.outdated.len() + self.aged.len()) as u32,
            aged: self.aged.len() as u32,
            ..Progress::default()
        };

        let routes: Vec<InstanceId> = if !self.outdated.is_empty() {
            match &self.svc.rollout.strategy {
                Strategy::Rolling { surge, unavailable } => {
                    let (s, u) = (*surge, *unavailable);
                    self.rolling(s, u, d, &mut progress);
                    self.all_healthy()
                }
                Strategy::Canary { steps, pause } => {
                    let (steps, pause) = (steps.clone(), pause.0 as i64);
                    self.canary(&steps, pause, d, &mut progress);
                    self.all_healthy()
                }
                Strategy::BlueGreen { keep } => {
                    let keep = keep.0 as i64;
                    self.blue_green(keep, d, &mut progress)
                }
            }
        } else {
            // Healing, scaling and scheduled replacement.
            self.rolling(1, 0, d, &mut progress);
            self.all_healthy()
        };
        if !matches!(self.svc.rollout.strategy, Strategy::BlueGreen { .. })
            || self.outdated.is_empty()
        {
            progress.converged =
                progress.stale == 0 && progress.available == d && progress.current == d;
        }
        self.out.routes.insert(self.name.clone(), routes);
        self.out.progress.insert(self.name.clone(), progress);
    }

    /// Every healthy member, current or stale.
    fn all_healthy(&self) -> Vec<InstanceId> {
        self.current
            .iter()
            .chain(&self.outdated)
            .chain(&self.aged)
            .filter(|m| Self::healthy(m))
            .map(|m| m.id.clone())
            .collect()
    }

    /// The rolling rule, with the number of current members capped at `cap`
    /// (`D` for plain rolling, the step's count for a canary).
    fn rolling_capped(
        &mut self,
        surge: u32,
        unavailable: u32,
        d: u32,
        cap: u32,
        progress: &Progress,
    ) {
        let surge = if surge == 0 && unavailable == 0 {
            1
        } else {
            surge
        };
        let max_total = d + surge;
        let min_available = d.saturating_sub(unavailable);
        let mut stale: Vec<&Member> = self.outdated.iter().chain(&self.aged).copied().collect();
        let mut n_current = self.current.len() as u32;
        let mut total = n_current + stale.len() as u32;
        let stale_avail: Vec<bool> = stale.iter().map(|m| self.available(m)).collect();
        let mut available = progress.available + stale_avail.iter().filter(|a| **a).count() as u32;

        // Retire stale members: not-available ones freely (oldest first),
        // available ones while enough others stay available — but only as
        // many as current members can take the place of (a stale member is
        // capacity until a current one exists to replace it).
        let mut order: Vec<(bool, &Member)> =
            stale_avail.into_iter().zip(stale.drain(..)).collect();
        order.sort_by_key(|(avail, m)| (*avail, m.created_at));
        let aged_reason = |m: &Member| {
            if self.aged.iter().any(|a| a.id == m.id) {
                format!("reached max_age ({})", self.svc.max_age.unwrap_or_default())
            } else {
                format!("replaced by the newer version of {}", self.name)
            }
        };
        let mut retire = Vec::new();
        for (avail, m) in order.iter() {
            if *avail {
                if available <= min_available {
                    break;
                }
                available -= 1;
            }
            retire.push((*m, aged_reason(m)));
            total -= 1;
        }
        for (m, why) in retire {
            self.retire(m, why);
        }

        // Launch current members up to the cap within the surge budget.
        let stale_left = total - n_current;
        while n_current < cap && total < max_total {
            let reason = if stale_left > 0 {
                format!(
                    "replacing {}: {} of {d} instances on the current version",
                    self.name,
                    n_current + 1
                )
            } else {
                format!("{} has {n_current} of {d} instances", self.name)
            };
            self.launch(reason);
            n_current += 1;
            total += 1;
        }

        // Too many current members (scale down), once no stale ones remain.
        if stale_left == 0 && self.current.len() as u32 > d {
            let mut extra: Vec<&Member> = self.current.clone();
            extra.sort_by_key(|m| (Self::healthy(m), std::cmp::Reverse(m.created_at)));
            let n = self.current.len() - d as usize;
            for m in extra.into_iter().take(n) {
                self.retire(m, format!("{} is scaled down to {d}", self.name));
            }
        }
    }

    fn rolling(&mut self, surge: u32, unavailable: u32, d: u32, progress: &mut Progress) {
        let snapshot = progress.clone();
        self.rolling_capped(surge, unavailable, d, d, &snapshot);
    }

    fn canary(&mut self, steps: &[u32], pause: i64, d: u32, progress: &mut Progress) {
        // The counts the new version grows through, ending with D.
        let mut caps: Vec<u32> = steps
            .iter()
            .map(|s| (*s).min(d))
            .filter(|s| *s > 0)
            .collect();
        caps.push(d);
        caps.dedup();
        caps.sort_unstable();
        caps.dedup();
        // When each current member became available, in order.
        let min_healthy = self.svc.rollout.min_healthy.0 as i64;
        let mut avail_times: Vec<i64> = self
            .current
            .iter()
            .filter(|m| Self::healthy(m))
            .filter_map(|m| m.healthy_at.map(|h| h + min_healthy))
            .filter(|t| *t <= self.now)
            .collect();
        avail_times.sort_unstable();
        let mut step = 0;
        while step + 1 < caps.len() {
            let cap = caps[step] as usize;
            let Some(reached) = avail_times.get(cap.saturating_sub(1)) else {
                break;
            };
            let next = reached + pause;
            if self.now < next {
                self.out.wake(next);
                progress.waiting = Some(format!(
                    "canary step {} of {}: watching {} new instance{} until the pause ends",
                    step + 1,
                    caps.len(),
                    cap,
                    if cap == 1 { "" } else { "s" }
                ));
                break;
            }
            step += 1;
        }
        progress.step = Some((step + 1, caps.len()));
        let snapshot = progress.clone();
        self.rolling_capped(1, 0, d, caps[step], &snapshot);
    }

    /// Returns the routes: the old set until the new one is complete and
    /// available, then the new set only.
    fn blue_green(&mut self, keep: i64, d: u32, progress: &mut Progress) -> Vec<InstanceId> {
        // Launch the whole new set at once.
        let mut n = self.current.len() as u32;
        while n < d {
            self.launch(format!(
                "blue/green: starting the new set of {} ({} of {d})",
                self.name,
                n + 1
            ));
            n += 1;
        }
        let current = self.current.clone();
        let mut avail_times: Vec<i64> = Vec::new();
        for m in &current {
            if self.available(m) {
                avail_times.push(m.healthy_at.unwrap_or(self.now));
            }
        }
        avail_times.sort_unstable();
        let switched = avail_times.len() as u32 >= d;
        if !switched {
            progress.waiting = Some(format!(
                "blue/green: {} of {d} new instances available; traffic stays on the old set",
                avail_times.len()
            ));
            let old: Vec<InstanceId> = self
                .outdated
                .iter()
                .filter(|m| Self::healthy(m))
                .map(|m| m.id.clone())
                .collect();
            // With no healthy old member left, serve whatever is healthy.
            return if old.is_empty() {
                self.all_healthy()
            } else {
                old
            };
        }
        progress.converged = current.len() as u32 == d;
        // Switched when the d-th new member became available.
        let min_healthy = self.svc.rollout.min_healthy.0 as i64;
        let switched_at = avail_times[d as usize - 1] + min_healthy;
        let retire_at = switched_at.saturating_add(keep);
        if self.now >= retire_at {
            for m in self.outdated.clone() {
                self.retire(
                    m,
                    format!("blue/green: the old set of {} is no longer kept", self.name),
                );
            }
        } else {
            self.out.wake(retire_at);
            progress.waiting = Some(format!(
                "blue/green: switched; the old set is kept ready for {}s",
                (retire_at - self.now + 999) / 1000
            ));
        }
        // Extra current members beyond D (e.g. after a failure was replaced).
        current
            .iter()
            .filter(|m| Self::healthy(m))
            .map(|m| m.id.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use glint_model::*;

    type Env = (Environment, BTreeMap<Name, Digest>);

    fn env(instances: u32, greeting: &str, strategy: Strategy) -> Env {
        let name = |s: &str| Name::new(s).unwrap();
        let mut e = Environment::empty(name("t"));
        e.images.insert(
            name("app"),
            Image {
                port: Some(8080),
                ..Image::scratch(vec!["/app".into()])
            },
        );
        e.services.insert(
            name("web"),
            Service {
                provider: ProviderKind::Simulated,
                instances,
                env: [("GREETING".to_owned(), greeting.to_owned())].into(),
                rollout: Rollout {
                    strategy,
                    ..Rollout::default()
                },
                ..Service::new(name("app"))
            },
        );
        let images = [(name("app"), Digest::of(b"app"))].into();
        (e, images)
    }

    fn svc(e: &mut Env) -> &mut Service {
        e.0.services.get_mut(&Name::new("web").unwrap()).unwrap()
    }

    fn rolling() -> Strategy {
        Strategy::Rolling {
            surge: 1,
            unavailable: 0,
        }
    }

    fn member(n: u64, fp: &Option<ContentHash>, phase: MemberPhase) -> Member {
        let web = Name::new("web").unwrap();
        Member {
            id: InstanceId::from_entropy(&web, n),
            service: web,
            fingerprint: fp.clone(),
            phase,
            created_at: n as i64,
            healthy_at: (phase == MemberPhase::Healthy).then_some(n as i64),
            slot: None,
            holds: Vec::new(),
        }
    }

    fn counts(o: &Outcome) -> (usize, usize) {
        let l = o
            .decisions
            .iter()
            .filter(|x| matches!(x, Decision::Launch { .. }))
            .count();
        (l, o.decisions.len() - l)
    }

    fn retired(o: &Outcome) -> Vec<InstanceId> {
        o.decisions
            .iter()
            .filter_map(|x| match x {
                Decision::Retire { id, .. } => Some(id.clone()),
                _ => None,
            })
            .collect()
    }

    fn fp(e: &Env) -> Option<ContentHash> {
        fingerprint(
            Target {
                env: &e.0,
                images: &e.1,
            },
            &Name::new("web").unwrap(),
        )
    }

    fn run(e: &Env, m: &[Member], now: i64) -> Outcome {
        decide(
            Target {
                env: &e.0,
                images: &e.1,
            },
            m,
            now,
        )
    }

    fn routes(o: &Outcome) -> Vec<InstanceId> {
        o.routes[&Name::new("web").unwrap()].clone()
    }

    const NOW: i64 = 1_000_000;

    #[test]
    fn an_empty_world_launches_the_declared_count() {
        let e = env(3, "hi", rolling());
        assert_eq!(counts(&run(&e, &[], NOW)), (3, 0));
    }

    #[test]
    fn a_converged_world_does_nothing_and_routes_to_everyone() {
        let e = env(3, "hi", rolling());
        let f = fp(&e);
        let m: Vec<_> = (0..3)
            .map(|i| member(i, &f, MemberPhase::Healthy))
            .collect();
        let o = run(&e, &m, NOW);
        assert!(o.decisions.is_empty());
        assert_eq!(routes(&o).len(), 3);
        assert!(o.progress[&Name::new("web").unwrap()].converged);
    }

    #[test]
    fn pending_launches_are_not_repeated() {
        let e = env(3, "hi", rolling());
        let f = fp(&e);
        let m = vec![
            member(0, &f, MemberPhase::Healthy),
            member(1, &f, MemberPhase::Launching),
            member(2, &f, MemberPhase::Starting),
        ];
        let o = run(&e, &m, NOW);
        assert!(o.decisions.is_empty());
        assert_eq!(
            routes(&o),
            vec![m[0].id.clone()],
            "only healthy members get traffic"
        );
    }

    #[test]
    fn a_dead_instance_is_replaced_in_the_same_pass() {
        let e = env(3, "hi", rolling());
        let f = fp(&e);
        let m: Vec<_> = (0..2)
            .map(|i| member(i, &f, MemberPhase::Healthy))
            .collect();
        assert_eq!(counts(&run(&e, &m, NOW)), (1, 0));
    }

    #[test]
    fn a_failed_instance_is_retired_and_replaced() {
        let e = env(3, "hi", rolling());
        let f = fp(&e);
        let mut m: Vec<_> = (0..2)
            .map(|i| member(i, &f, MemberPhase::Healthy))
            .collect();
        m.push(member(2, &f, MemberPhase::Failed));
        let o = run(&e, &m, NOW);
        assert_eq!(counts(&o), (1, 1));
        assert_eq!(retired(&o), vec![m[2].id.clone()]);
    }

    #[test]
    fn a_rolling_update_surges_one_and_never_drops_below_the_count() {
        let old = env(3, "hi", rolling());
        let new = env(3, "bonjour", rolling());
        let (fo, fnew) = (fp(&old), fp(&new));
        assert_ne!(fo, fnew, "env is part of the launch shape");
        let mut m: Vec<_> = (0..3)
            .map(|i| member(i, &fo, MemberPhase::Healthy))
            .collect();
        assert_eq!(counts(&run(&new, &m, NOW)), (1, 0));
        m.push(member(10, &fnew, MemberPhase::Starting));
        assert!(
            run(&new, &m, NOW).decisions.is_empty(),
            "surge used, nothing to spare"
        );
        m[3].phase = MemberPhase::Healthy;
        m[3].healthy_at = Some(NOW);
        let o = run(&new, &m, NOW);
        assert_eq!(counts(&o), (1, 1));
        assert_eq!(retired(&o), vec![m[0].id.clone()], "oldest first");
        assert_eq!(
            routes(&o).len(),
            4,
            "old and new share traffic while rolling"
        );
    }

    /// Simulates a whole rollout pass by pass, making every launch healthy at
    /// once, and checks the invariant at every step: never fewer than D
    /// available, never more than D + surge members.
    #[test]
    fn a_whole_rolling_update_keeps_capacity_at_every_step() {
        for (d, surge, unavailable) in [(3, 1, 0), (10, 1, 0), (10, 3, 0), (5, 0, 2), (4, 2, 1)] {
            let strategy = Strategy::Rolling { surge, unavailable };
            let old = env(d, "a", strategy.clone());
            let new = env(d, "b", strategy);
            let (fo, fnew) = (fp(&old), fp(&new));
            let mut m: Vec<Member> = (0..d as u64)
                .map(|i| member(i, &fo, MemberPhase::Healthy))
                .collect();
            let mut next = 100;
            for _pass in 0..100 {
                let o = run(&new, &m, NOW);
                if o.decisions.is_empty() {
                    break;
                }
                for dec in o.decisions {
                    match dec {
                        Decision::Launch { .. } => {
                            let mut x = member(next, &fnew, MemberPhase::Healthy);
                            x.healthy_at = Some(NOW);
                            m.push(x);
                            next += 1;
                        }
                        Decision::Retire { id, .. } => m.retain(|x| x.id != id),
                    }
                }
                let available = m.iter().filter(|x| x.phase == MemberPhase::Healthy).count() as u32;
                assert!(
                    available >= d - unavailable,
                    "d={d} surge={surge}: {available} available"
                );
                assert!(
                    m.len() as u32 <= d + surge.max(1),
                    "d={d} surge={surge}: {} members",
                    m.len()
                );
            }
            assert_eq!(m.len() as u32, d);
            assert!(
                m.iter().all(|x| x.fingerprint == fnew),
                "d={d}: all replaced"
            );
        }
    }

    #[test]
    fn min_healthy_gates_retirement_and_asks_to_be_woken() {
        let old = env(2, "a", rolling());
        let mut new = env(2, "b", rolling());
        svc(&mut new).rollout.min_healthy = Millis::from_secs(10);
        let (fo, fnew) = (fp(&old), fp(&new));
        let mut m: Vec<_> = (0..2)
            .map(|i| member(i, &fo, MemberPhase::Healthy))
            .collect();
        let mut fresh = member(10, &fnew, MemberPhase::Healthy);
        fresh.healthy_at = Some(NOW);
        m.push(fresh);
        let o = run(&new, &m, NOW + 5_000);
        assert!(
            o.decisions.is_empty(),
            "not available yet: {:?}",
            o.decisions
        );
        assert_eq!(o.wake_at, Some(NOW + 10_000));
        assert!(
            routes(&o).contains(&m[2].id),
            "healthy members serve before they count"
        );
        let o = run(&new, &m, NOW + 10_000);
        assert_eq!(counts(&o), (1, 1));
    }

    #[test]
    fn max_age_replaces_one_at_a_time_with_jitter() {
        let mut e = env(3, "a", rolling());
        svc(&mut e).max_age = Some(Millis::from_secs(20));
        let f = fp(&e);
        let m: Vec<_> = (0..3)
            .map(|i| {
                let mut x = member(i, &f, MemberPhase::Healthy);
                x.created_at = 0;
                x.healthy_at = Some(0);
                x
            })
            .collect();
        let expiries: Vec<i64> = m.iter().map(|x| expires_at(&x.id, 0, 20_000)).collect();
        assert!(
            expiries.iter().all(|t| (16_000..=20_000).contains(t)),
            "{expiries:?}"
        );
        let mut sorted = expiries.clone();
        sorted.dedup();
        assert_eq!(sorted.len(), 3, "instances launched together expire apart");
        // Before any expiry: nothing, but a wake-up at the first one.
        let o = run(&e, &m, 1_000);
        assert!(o.decisions.is_empty());
        assert_eq!(o.wake_at, expiries.iter().min().copied());
        // All expired: one surge launch, nothing retired yet (capacity).
        let o = run(&e, &m, 30_000);
        assert_eq!(counts(&o), (1, 0));
        assert_eq!(o.progress[&Name::new("web").unwrap()].aged, 3);
    }

    #[test]
    fn blue_green_switches_in_one_step_and_keeps_the_old_set() {
        let strategy = Strategy::BlueGreen {
            keep: Millis::from_secs(60),
        };
        let old = env(3, "a", strategy.clone());
        let new = env(3, "b", strategy);
        let (fo, fnew) = (fp(&old), fp(&new));
        let mut m: Vec<_> = (0..3)
            .map(|i| member(i, &fo, MemberPhase::Healthy))
            .collect();
        let o = run(&new, &m, NOW);
        assert_eq!(counts(&o), (3, 0), "the whole new set at once");
        // Two of three new ones healthy: traffic stays on the old set.
        for i in 0..3 {
            let mut x = member(10 + i, &fnew, MemberPhase::Starting);
            if i < 2 {
                x.phase = MemberPhase::Healthy;
                x.healthy_at = Some(NOW);
            }
            m.push(x);
        }
        let o = run(&new, &m, NOW);
        assert!(o.decisions.is_empty());
        assert_eq!(
            routes(&o),
            m[..3].iter().map(|x| x.id.clone()).collect::<Vec<_>>()
        );
        // The third becomes healthy: switch, keep the old set.
        m[5].phase = MemberPhase::Healthy;
        m[5].healthy_at = Some(NOW + 1000);
        let o = run(&new, &m, NOW + 1000);
        assert!(o.decisions.is_empty(), "old set kept: {:?}", o.decisions);
        assert_eq!(
            routes(&o),
            m[3..].iter().map(|x| x.id.clone()).collect::<Vec<_>>()
        );
        assert_eq!(o.wake_at, Some(NOW + 61_000));
        assert!(o.progress[&Name::new("web").unwrap()].converged);
        // After `keep`, the old set is retired.
        let o = run(&new, &m, NOW + 61_000);
        assert_eq!(
            retired(&o),
            m[..3].iter().map(|x| x.id.clone()).collect::<Vec<_>>()
        );
        // A rollback during `keep` is instant: the old set is current again.
        let o = run(&old, &m, NOW + 2000);
        assert_eq!(
            routes(&o),
            m[..3].iter().map(|x| x.id.clone()).collect::<Vec<_>>()
        );
    }

    #[test]
    fn canary_grows_in_steps_with_pauses() {
        let strategy = Strategy::Canary {
            steps: vec![1],
            pause: Millis::from_secs(30),
        };
        let old = env(3, "a", strategy.clone());
        let new = env(3, "b", strategy);
        let (fo, fnew) = (fp(&old), fp(&new));
        let mut m: Vec<_> = (0..3)
            .map(|i| member(i, &fo, MemberPhase::Healthy))
            .collect();
        let o = run(&new, &m, NOW);
        assert_eq!(counts(&o), (1, 0), "one canary");
        let mut canary = member(10, &fnew, MemberPhase::Healthy);
        canary.healthy_at = Some(NOW);
        m.push(canary);
        // The canary is available: one old instance goes, no second new one
        // until the pause ends.
        let o = run(&new, &m, NOW + 1000);
        assert_eq!(counts(&o), (0, 1), "{:?}", o.decisions);
        m.retain(|x| !retired(&o).contains(&x.id));
        let o = run(&new, &m, NOW + 2000);
        assert!(o.decisions.is_empty());
        assert_eq!(o.wake_at, Some(NOW + 30_000));
        assert_eq!(o.progress[&Name::new("web").unwrap()].step, Some((1, 2)));
        // After the pause: the rest rolls.
        let o = run(&new, &m, NOW + 30_000);
        assert_eq!(counts(&o), (1, 0));
        assert_eq!(o.progress[&Name::new("web").unwrap()].step, Some((2, 2)));
    }

    #[test]
    fn unavailable_allows_retiring_before_launching() {
        let strategy = Strategy::Rolling {
            surge: 0,
            unavailable: 1,
        };
        let old = env(3, "hi", strategy.clone());
        let new = env(3, "bonjour", strategy);
        let fo = fp(&old);
        let m: Vec<_> = (0..3)
            .map(|i| member(i, &fo, MemberPhase::Healthy))
            .collect();
        let o = run(&new, &m, NOW);
        assert_eq!(counts(&o), (1, 1), "{:?}", o.decisions);
    }

    #[test]
    fn stale_not_ready_members_go_first_and_freely() {
        let old = env(2, "hi", rolling());
        let new = env(2, "bonjour", rolling());
        let fo = fp(&old);
        let m = vec![
            member(0, &fo, MemberPhase::Healthy),
            member(1, &fo, MemberPhase::Starting),
        ];
        let o = run(&new, &m, NOW);
        assert!(retired(&o).contains(&m[1].id));
        assert!(!retired(&o).contains(&m[0].id));
    }

    #[test]
    fn scaling_down_retires_not_ready_and_newest_first() {
        let e = env(2, "hi", rolling());
        let f = fp(&e);
        let m = vec![
            member(0, &f, MemberPhase::Healthy),
            member(1, &f, MemberPhase::Healthy),
            member(2, &f, MemberPhase::Healthy),
            member(3, &f, MemberPhase::Starting),
        ];
        let o = run(&e, &m, NOW);
        assert_eq!(retired(&o), vec![m[3].id.clone(), m[2].id.clone()]);
    }

    #[test]
    fn undeclared_services_are_retired() {
        let e = env(1, "hi", rolling());
        let other = Name::new("gone").unwrap();
        let m = vec![Member {
            id: InstanceId::from_entropy(&other, 1),
            service: other,
            fingerprint: None,
            phase: MemberPhase::Healthy,
            created_at: 0,
            healthy_at: Some(0),
            slot: None,
            holds: Vec::new(),
        }];
        let o = run(&e, &m, NOW);
        assert!(
            matches!(&o.decisions[0], Decision::Retire { reason, .. } if reason.contains("no longer declared"))
        );
    }

    #[test]
    fn retiring_members_do_not_count() {
        let e = env(2, "hi", rolling());
        let f = fp(&e);
        let m = vec![
            member(0, &f, MemberPhase::Healthy),
            member(1, &f, MemberPhase::Retiring),
        ];
        assert_eq!(counts(&run(&e, &m, NOW)), (1, 0));
    }
}
