//! The conductor's decisions, as a pure function.
//!
//! [`decide`] looks at the target (the newest version) and the live instances
//! as the conductor sees them *right now*, and says which instances to launch
//! and which to retire. It is called afresh on every pass and uses nothing
//! else — no memory of earlier passes, no knowledge of what just changed —
//! so that a restarted conductor decides exactly what the old one would have
//! (architecture invariant 2). Launches already decided but not yet running
//! are members in [`MemberPhase::Launching`], so nothing is launched twice.
//!
//! The rolling algorithm, per service with declared count `D`:
//! - members are *current* (their launch shape matches the target) or *stale*;
//!   failed members (unhealthy, never healthy) are retired at once — they
//!   serve nothing, so retiring them never costs capacity;
//! - at most `D + surge` members may exist, and at least `D - unavailable`
//!   must stay ready; with `surge = 0, unavailable = 0` a surge of 1 is used;
//! - current members are launched up to `D`, within the surge budget;
//! - stale members are retired not-ready first, and a ready one only while
//!   the ready count stays at or above `D - unavailable`;
//! - with no stale members left, extra current members are retired, not-ready
//!   and newest first.
//!
//! Healing is the same algorithm: a crashed instance is simply gone, so the
//! service is short of `D` and a launch follows in the same pass.

use crate::plan::{Target, fingerprint};
use glint_model::{ContentHash, InstanceId, Name, Strategy};
use std::collections::BTreeMap;

/// Where a live instance stands, as far as decisions go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberPhase {
    /// Launch decided, provider not done yet.
    Launching,
    /// Running, not yet healthy.
    Starting,
    /// Healthy: receives traffic and counts as available.
    Ready,
    /// Unhealthy or never became healthy: to be replaced.
    Failed,
    /// Being drained and terminated.
    Retiring,
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
    /// When it was launched (ms since the epoch); orders "oldest"/"newest".
    pub created_at: i64,
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
    },
    /// Drain and terminate an instance.
    Retire {
        /// The instance.
        id: InstanceId,
        /// Why, for the event log.
        reason: String,
    },
}

/// Decides what to launch and retire. See the module documentation.
pub fn decide(target: Target<'_>, members: &[Member]) -> Vec<Decision> {
    let mut by_service: BTreeMap<&Name, Vec<&Member>> = BTreeMap::new();
    for m in members {
        if m.phase != MemberPhase::Retiring {
            by_service.entry(&m.service).or_default().push(m);
        }
    }
    let mut out = Vec::new();
    // Services no longer declared: retire everything.
    for (name, ms) in &by_service {
        if !target.env.services.contains_key(*name) {
            for m in ms {
                out.push(Decision::Retire {
                    id: m.id.clone(),
                    reason: format!("service {name} is no longer declared"),
                });
            }
        }
    }
    for (name, svc) in &target.env.services {
        let ms = by_service.get(name).map(Vec::as_slice).unwrap_or(&[]);
        decide_service(name, svc, fingerprint(target, name), ms, &mut out);
    }
    out
}

fn decide_service(
    name: &Name,
    svc: &glint_model::Service,
    want: Option<ContentHash>,
    members: &[&Member],
    out: &mut Vec<Decision>,
) {
    let d = svc.instances;
    let (surge, unavailable) = match &svc.rollout.strategy {
        Strategy::Rolling { surge, unavailable } => (*surge, *unavailable),
        // Until blue/green and canary have their own planners they roll one
        // at a time, which keeps every guarantee of the rolling default.
        Strategy::BlueGreen { .. } | Strategy::Canary { .. } => (1, 0),
    };
    let surge = if surge == 0 && unavailable == 0 {
        1
    } else {
        surge
    };
    let max_total = d + surge;
    let min_ready = d.saturating_sub(unavailable);

    let mut current: Vec<&Member> = Vec::new();
    let mut stale: Vec<&Member> = Vec::new();
    for m in members {
        if m.phase == MemberPhase::Failed {
            out.push(Decision::Retire {
                id: m.id.clone(),
                reason: "failed its health check".into(),
            });
        } else if want.is_some() && m.fingerprint == want {
            current.push(m);
        } else {
            stale.push(m);
        }
    }
    let ready = |v: &[&Member]| v.iter().filter(|m| m.phase == MemberPhase::Ready).count() as u32;
    let mut ready_total = ready(&current) + ready(&stale);
    let mut total = (current.len() + stale.len()) as u32;
    let mut n_current = current.len() as u32;

    // Retire stale members: not-ready ones freely, ready ones while enough
    // stay ready. Oldest first among equals.
    stale.sort_by_key(|m| (m.phase == MemberPhase::Ready, m.created_at));
    let stale_count = stale.len();
    for m in &stale {
        let is_ready = m.phase == MemberPhase::Ready;
        // A ready member may go only while enough others stay ready.
        if is_ready && ready_total <= min_ready {
            break;
        }
        out.push(Decision::Retire {
            id: m.id.clone(),
            reason: format!("replaced by the newer version of {name}"),
        });
        total -= 1;
        if is_ready {
            ready_total -= 1;
        }
    }

    // Launch current members up to D within the surge budget.
    while n_current < d && total < max_total {
        let reason = if stale_count > 0 {
            format!(
                "rolling out {name}: {} of {d} instances on the new version",
                n_current + 1
            )
        } else {
            format!("{name} has {n_current} of {d} instances")
        };
        out.push(Decision::Launch {
            service: name.clone(),
            reason,
        });
        n_current += 1;
        total += 1;
    }

    // Too many current members (scale down), once no stale ones remain.
    if stale_count == 0 && current.len() as u32 > d {
        let mut extra: Vec<&&Member> = current.iter().collect();
        extra.sort_by_key(|m| {
            (
                m.phase == MemberPhase::Ready,
                std::cmp::Reverse(m.created_at),
            )
        });
        for m in extra.into_iter().take(current.len() - d as usize) {
            out.push(Decision::Retire {
                id: m.id.clone(),
                reason: format!("{name} is scaled down to {d}"),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use glint_model::*;

    fn env(
        instances: u32,
        greeting: &str,
        strategy: Strategy,
    ) -> (Environment, BTreeMap<Name, Digest>) {
        let name = |s: &str| Name::new(s).unwrap();
        let mut e = Environment::empty(name("t"));
        e.images.insert(
            name("app"),
            Image {
                from: ImageBase::Scratch,
                steps: vec![],
                tests: vec![],
                entrypoint: vec!["/app".into()],
                env: Default::default(),
                workdir: "/".into(),
                port: Some(8080),
                digest: None,
            },
        );
        e.services.insert(
            name("web"),
            Service {
                image: name("app"),
                provider: ProviderKind::Simulated,
                instances,
                args: vec![],
                env: [("GREETING".to_owned(), greeting.to_owned())].into(),
                port: 8080,
                health: None,
                rollout: Rollout {
                    strategy,
                    min_healthy: Millis(0),
                    deadline: Millis::from_secs(300),
                    auto_rollback: true,
                },
                max_age: None,
                drain: Millis::from_secs(30),
                stop_grace: Millis::from_secs(10),
                resources: Default::default(),
                on_exec: OnExec::Replace,
                autoscale: None,
                mounts: vec![],
            },
        );
        let images = [(name("app"), Digest::of(b"app"))].into();
        (e, images)
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
        }
    }

    fn counts(d: &[Decision]) -> (usize, usize) {
        let l = d
            .iter()
            .filter(|x| matches!(x, Decision::Launch { .. }))
            .count();
        (l, d.len() - l)
    }

    fn fp(e: &(Environment, BTreeMap<Name, Digest>)) -> Option<ContentHash> {
        fingerprint(
            Target {
                env: &e.0,
                images: &e.1,
            },
            &Name::new("web").unwrap(),
        )
    }

    fn run(e: &(Environment, BTreeMap<Name, Digest>), m: &[Member]) -> Vec<Decision> {
        decide(
            Target {
                env: &e.0,
                images: &e.1,
            },
            m,
        )
    }

    #[test]
    fn an_empty_world_launches_the_declared_count() {
        let e = env(3, "hi", rolling());
        assert_eq!(counts(&run(&e, &[])), (3, 0));
    }

    #[test]
    fn a_converged_world_does_nothing() {
        let e = env(3, "hi", rolling());
        let f = fp(&e);
        let m: Vec<_> = (0..3).map(|i| member(i, &f, MemberPhase::Ready)).collect();
        assert!(run(&e, &m).is_empty());
    }

    #[test]
    fn pending_launches_are_not_repeated() {
        let e = env(3, "hi", rolling());
        let f = fp(&e);
        let m = vec![
            member(0, &f, MemberPhase::Ready),
            member(1, &f, MemberPhase::Launching),
            member(2, &f, MemberPhase::Starting),
        ];
        assert!(run(&e, &m).is_empty());
    }

    #[test]
    fn a_dead_instance_is_replaced_in_the_same_pass() {
        let e = env(3, "hi", rolling());
        let f = fp(&e);
        let m: Vec<_> = (0..2).map(|i| member(i, &f, MemberPhase::Ready)).collect();
        assert_eq!(counts(&run(&e, &m)), (1, 0));
    }

    #[test]
    fn a_failed_instance_is_retired_and_replaced() {
        let e = env(3, "hi", rolling());
        let f = fp(&e);
        let mut m: Vec<_> = (0..2).map(|i| member(i, &f, MemberPhase::Ready)).collect();
        m.push(member(2, &f, MemberPhase::Failed));
        let d = run(&e, &m);
        assert_eq!(counts(&d), (1, 1));
        assert!(d.contains(&Decision::Retire {
            id: m[2].id.clone(),
            reason: "failed its health check".into()
        }));
    }

    #[test]
    fn a_rolling_update_surges_one_and_never_drops_below_the_count() {
        let old = env(3, "hi", rolling());
        let new = env(3, "bonjour", rolling());
        let (fo, fnew) = (fp(&old), fp(&new));
        assert_ne!(fo, fnew, "env is part of the launch shape");
        // Step 1: three old ready → launch one new, retire nothing.
        let mut m: Vec<_> = (0..3).map(|i| member(i, &fo, MemberPhase::Ready)).collect();
        assert_eq!(counts(&run(&new, &m)), (1, 0));
        // The new one is starting: nothing more (surge budget used, no
        // ready capacity to spare).
        m.push(member(10, &fnew, MemberPhase::Starting));
        assert!(run(&new, &m).is_empty());
        // It becomes ready: retire one old and launch the next new.
        m[3].phase = MemberPhase::Ready;
        let d = run(&new, &m);
        assert_eq!(counts(&d), (1, 1));
        assert!(
            matches!(&d[0], Decision::Retire { id, .. } if *id == m[0].id),
            "oldest first"
        );
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
        let m: Vec<_> = (0..3).map(|i| member(i, &fo, MemberPhase::Ready)).collect();
        let d = run(&new, &m);
        assert_eq!(counts(&d), (1, 1), "{d:?}");
    }

    #[test]
    fn stale_not_ready_members_go_first_and_freely() {
        let old = env(2, "hi", rolling());
        let new = env(2, "bonjour", rolling());
        let fo = fp(&old);
        let m = vec![
            member(0, &fo, MemberPhase::Ready),
            member(1, &fo, MemberPhase::Starting),
        ];
        let d = run(&new, &m);
        assert!(d.contains(&Decision::Retire {
            id: m[1].id.clone(),
            reason: "replaced by the newer version of web".into()
        }));
        assert!(
            !d.iter()
                .any(|x| matches!(x, Decision::Retire { id, .. } if *id == m[0].id))
        );
    }

    #[test]
    fn scaling_down_retires_not_ready_and_newest_first() {
        let e = env(2, "hi", rolling());
        let f = fp(&e);
        let m = vec![
            member(0, &f, MemberPhase::Ready),
            member(1, &f, MemberPhase::Ready),
            member(2, &f, MemberPhase::Ready),
            member(3, &f, MemberPhase::Starting),
        ];
        let d = run(&e, &m);
        let retired: Vec<_> = d
            .iter()
            .filter_map(|x| match x {
                Decision::Retire { id, .. } => Some(id.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(retired, vec![m[3].id.clone(), m[2].id.clone()]);
    }

    #[test]
    fn undeclared_services_are_retired() {
        let e = env(1, "hi", rolling());
        let other = Name::new("gone").unwrap();
        let m = vec![Member {
            id: InstanceId::from_entropy(&other, 1),
            service: other,
            fingerprint: None,
            phase: MemberPhase::Ready,
            created_at: 0,
        }];
        let d = run(&e, &m);
        assert!(
            matches!(&d[0], Decision::Retire { reason, .. } if reason.contains("no longer declared"))
        );
    }

    #[test]
    fn retiring_members_do_not_count() {
        let e = env(2, "hi", rolling());
        let f = fp(&e);
        let m = vec![
            member(0, &f, MemberPhase::Ready),
            member(1, &f, MemberPhase::Retiring),
        ];
        assert_eq!(counts(&run(&e, &m)), (1, 0));
    }
}
