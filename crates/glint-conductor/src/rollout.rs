//! The rollout verdict, as a pure function.
//!
//! [`verdict`] looks at the target version's rollout — what `decide` said
//! about each service's progress, how many of its new instances failed,
//! when each service last made progress, and the time — and says whether the
//! version has converged, has failed, or is still in progress (and when its
//! deadline would pass). Like [`decide`](crate::decide::decide) it takes
//! nothing else, so a restarted conductor reaches the same verdict.
//!
//! The rules:
//! - **converged**: every declared service runs its declared count of
//!   available current instances (blue/green: traffic has switched) and every
//!   endpoint is listening or has failed to;
//! - **failed** when as many new instances of the version as the smallest
//!   `fail_after` of the services still rolling out (default 1) have
//!   failed (could not launch, crashed or failed their health check before
//!   they were stable), or when a service that has not converged made no
//!   progress — no instance of it became healthy — for its rollout
//!   `deadline`, counted from the version's creation or the last progress;
//! - a failed version is rolled back automatically unless one of the
//!   services it replaces says `auto_rollback = false`.

use crate::decide::Progress;
use glint_model::{Name, Service};
use std::collections::BTreeMap;

/// What [`verdict`] looks at.
#[derive(Debug, Clone, Copy)]
pub struct Rollout<'a> {
    /// When the version was created (ms since the epoch).
    pub created_at: i64,
    /// Now.
    pub now: i64,
    /// The target's services.
    pub services: &'a BTreeMap<Name, Service>,
    /// `decide`'s progress per service.
    pub progress: &'a BTreeMap<Name, Progress>,
    /// Per service, the latest time one of its live instances became
    /// healthy.
    pub last_healthy: &'a BTreeMap<Name, i64>,
    /// New instances of the version that failed.
    pub failed: u32,
    /// Whether every endpoint is listening or failed to.
    pub endpoints_settled: bool,
}

/// Where a version's rollout stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// It converged, `took_ms` after the version was created.
    Converged {
        /// How long it took.
        took_ms: i64,
    },
    /// It failed.
    Failed {
        /// Why.
        reason: String,
        /// Whether to roll back automatically.
        roll_back: bool,
    },
    /// Still rolling out.
    InProgress {
        /// When a deadline passes if nothing progresses (ms since the epoch).
        deadline_at: Option<i64>,
    },
}

/// How many failed new instances fail the version: the smallest
/// `fail_after` of the services that have not converged.
pub fn failures_allowed(r: &Rollout<'_>) -> u32 {
    r.services
        .iter()
        .filter(|(n, _)| !r.progress.get(*n).is_some_and(|p| p.converged))
        .map(|(_, s)| s.rollout.fail_after)
        .min()
        .unwrap_or(1)
        .max(1)
}

/// See the module documentation.
pub fn verdict(r: Rollout<'_>) -> Verdict {
    let converged = r
        .services
        .keys()
        .all(|n| r.progress.get(n).is_some_and(|p| p.converged));
    if converged && r.endpoints_settled {
        return Verdict::Converged {
            took_ms: (r.now - r.created_at).max(0),
        };
    }
    let roll_back = r
        .services
        .iter()
        .filter(|(n, _)| {
            r.progress
                .get(*n)
                .is_none_or(|p| p.stale > p.aged || !p.converged)
        })
        .all(|(_, s)| s.rollout.auto_rollback);
    if r.failed >= failures_allowed(&r) {
        return Verdict::Failed {
            reason: format!(
                "{} new instance{} failed (could not launch, crashed or failed the health check)",
                r.failed,
                if r.failed == 1 { "" } else { "s" }
            ),
            roll_back,
        };
    }
    let mut deadline_at: Option<i64> = None;
    for (name, svc) in r.services {
        if r.progress.get(name).is_some_and(|p| p.converged) {
            continue;
        }
        let last = r
            .last_healthy
            .get(name)
            .copied()
            .unwrap_or(r.created_at)
            .max(r.created_at);
        let at = last.saturating_add(i64::try_from(svc.rollout.deadline.0).unwrap_or(i64::MAX));
        if r.now >= at {
            return Verdict::Failed {
                reason: format!(
                    "{name} made no progress for {} (its deadline)",
                    svc.rollout.deadline
                ),
                roll_back,
            };
        }
        deadline_at = Some(deadline_at.map_or(at, |d| d.min(at)));
    }
    Verdict::InProgress { deadline_at }
}

#[cfg(test)]
mod tests {
    use super::*;
    use glint_model::{Millis, Service};

    fn services(deadline_s: u64, auto: bool) -> BTreeMap<Name, Service> {
        let mut s = Service::new(Name::new("app").unwrap());
        s.rollout.fail_after = 3;
        s.rollout.deadline = Millis::from_secs(deadline_s);
        s.rollout.auto_rollback = auto;
        [(Name::new("web").unwrap(), s)].into()
    }

    fn progress(converged: bool) -> BTreeMap<Name, Progress> {
        [(
            Name::new("web").unwrap(),
            Progress {
                desired: 3,
                converged,
                stale: if converged { 0 } else { 2 },
                ..Progress::default()
            },
        )]
        .into()
    }

    fn rollout<'a>(
        services: &'a BTreeMap<Name, Service>,
        progress: &'a BTreeMap<Name, Progress>,
        last: &'a BTreeMap<Name, i64>,
        now: i64,
        failed: u32,
    ) -> Rollout<'a> {
        Rollout {
            created_at: 1_000,
            now,
            services,
            progress,
            last_healthy: last,
            failed,
            endpoints_settled: true,
        }
    }

    #[test]
    fn converged_when_every_service_is_and_endpoints_are_settled() {
        let (s, p, l) = (services(60, true), progress(true), BTreeMap::new());
        assert_eq!(
            verdict(rollout(&s, &p, &l, 3_500, 0)),
            Verdict::Converged { took_ms: 2_500 }
        );
        let mut r = rollout(&s, &p, &l, 3_500, 0);
        r.endpoints_settled = false;
        assert!(matches!(verdict(r), Verdict::InProgress { .. }));
    }

    #[test]
    fn enough_failed_new_instances_fail_it() {
        let (s, p, l) = (services(60, true), progress(false), BTreeMap::new());
        assert!(matches!(
            verdict(rollout(&s, &p, &l, 2_000, 2)),
            Verdict::InProgress { .. }
        ));
        assert_eq!(
            verdict(rollout(&s, &p, &l, 2_000, 3)),
            Verdict::Failed {
                reason:
                    "3 new instances failed (could not launch, crashed or failed the health check)"
                        .into(),
                roll_back: true
            }
        );
    }

    #[test]
    fn by_default_the_first_failed_new_instance_fails_it() {
        let mut s = services(60, true);
        s.values_mut().for_each(|s| s.rollout.fail_after = 1);
        let (p, l) = (progress(false), BTreeMap::new());
        assert!(matches!(
            verdict(rollout(&s, &p, &l, 2_000, 1)),
            Verdict::Failed { .. }
        ));
        assert!(matches!(
            verdict(rollout(&s, &p, &l, 2_000, 0)),
            Verdict::InProgress { .. }
        ));
    }

    #[test]
    fn the_deadline_counts_from_the_last_progress() {
        let (s, p) = (services(60, true), progress(false));
        let none = BTreeMap::new();
        // No progress: the deadline is 60 s after creation.
        assert_eq!(
            verdict(rollout(&s, &p, &none, 30_000, 0)),
            Verdict::InProgress {
                deadline_at: Some(61_000)
            }
        );
        assert!(matches!(
            verdict(rollout(&s, &p, &none, 61_000, 0)),
            Verdict::Failed { .. }
        ));
        // An instance became healthy at 50 s: the deadline moves.
        let last: BTreeMap<Name, i64> = [(Name::new("web").unwrap(), 50_000)].into();
        assert_eq!(
            verdict(rollout(&s, &p, &last, 61_000, 0)),
            Verdict::InProgress {
                deadline_at: Some(110_000)
            }
        );
    }

    #[test]
    fn auto_rollback_off_fails_without_rolling_back() {
        let (s, p, l) = (services(60, false), progress(false), BTreeMap::new());
        assert!(matches!(
            verdict(rollout(&s, &p, &l, 2_000, 3)),
            Verdict::Failed {
                roll_back: false,
                ..
            }
        ));
    }
}
