//! One writer at a time: how `decide` replaces the instances of a service
//! whose volumes only one instance may write.
//!
//! A service is *guarded* when it mounts a shared volume read-write, or any
//! per-instance volume. Whatever its rollout strategy says, and for every
//! kind of replacement:
//!
//! 1. **Keys.** Each volume a member mounts read-write is a key: the shared
//!    volume's name, or `NAME-SLOT` for a per-instance volume. A member
//!    holds its keys from its claim (written before it is launched) until
//!    it is gone; retiring members still hold theirs.
//! 2. **Slots.** With per-instance volumes, every member has a slot
//!    `0..D`; a current member without one (launched before the volume was
//!    declared per instance) is stale.
//! 3. **Stop.** Stale members (another shape, or past `max_age`) are
//!    retired — not-available ones freely, oldest first; available ones
//!    while at least `D − max(unavailable, 1)` others stay available — so
//!    one slot at a time goes down. Members beyond `D` are retired, the
//!    highest slot (else the newest) first.
//! 4. **Then start.** A free slot (or, without slots, a missing member) is
//!    launched only when none of its keys is held by anyone; otherwise the
//!    pass waits for the holder to be gone and says so. Without slots at
//!    most one launch is decided per pass, since every launch takes the same
//!    keys.
//!
//! So at no instant do two members hold one key: the claim is taken before
//! the launch, released only after the holder has ended, and `decide` never
//! asks for a launch whose keys are taken. The store's claim
//! (compare-and-set) and the providers' locks check it again.

use super::{Member, Progress, ServicePass};
use glint_model::{Environment, InstanceId, Name, Service, Strategy};
use std::collections::BTreeMap;

/// The volumes of a guarded service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Guard {
    /// Shared volumes it mounts read-write.
    shared: Vec<String>,
    /// Per-instance volumes it mounts (read-write or not: each is the
    /// slot's own), and whether read-write.
    per_instance: Vec<(Name, bool)>,
}

impl Guard {
    /// The guard of `svc` in `env`, if it needs one.
    pub(crate) fn of(env: &Environment, svc: &Service) -> Option<Guard> {
        let mut g = Guard {
            shared: Vec::new(),
            per_instance: Vec::new(),
        };
        for m in &svc.mounts {
            match env.volumes.get(&m.volume) {
                Some(v) if v.per_instance => g.per_instance.push((m.volume.clone(), !m.read_only)),
                Some(_) if !m.read_only => g.shared.push(m.volume.to_string()),
                _ => {}
            }
        }
        (!g.shared.is_empty() || !g.per_instance.is_empty()).then_some(g)
    }

    fn slotted(&self) -> bool {
        !self.per_instance.is_empty()
    }

    /// The keys a member in `slot` holds.
    fn keys(&self, slot: Option<u32>) -> Vec<String> {
        let mut k = self.shared.clone();
        if let Some(s) = slot {
            k.extend(
                self.per_instance
                    .iter()
                    .filter(|(_, rw)| *rw)
                    .map(|(v, _)| format!("{v}-{s}")),
            );
        }
        k
    }
}

impl<'a> ServicePass<'a> {
    /// The writers rule (see the module documentation); `held` is every
    /// key some member holds.
    pub(super) fn run_writers(mut self, guard: &Guard, held: &BTreeMap<&str, &InstanceId>) {
        let d = self.d;
        // A current member without a slot cannot keep a per-instance volume.
        if guard.slotted() {
            let (slotted, unslotted): (Vec<&Member>, Vec<&Member>) =
                self.current.iter().partition(|m| m.slot.is_some());
            self.current = slotted;
            self.outdated.extend(unslotted);
        }
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
        let unavailable = match &self.svc.rollout.strategy {
            Strategy::Rolling { unavailable, .. } => (*unavailable).max(1),
            _ => 1,
        };
        let min_available = d.saturating_sub(unavailable);

        // Stop: stale members, one slot at a time.
        let stale: Vec<&Member> = self.outdated.iter().chain(&self.aged).copied().collect();
        let stale_avail: Vec<bool> = stale.iter().map(|m| self.available(m)).collect();
        let mut available = available_current + stale_avail.iter().filter(|a| **a).count() as u32;
        let mut order: Vec<(bool, &Member)> = stale_avail.into_iter().zip(stale).collect();
        order.sort_by_key(|(avail, m)| (*avail, m.created_at));
        for (avail, m) in order {
            if avail {
                if available <= min_available {
                    progress.waiting = Some(format!(
                        "one writer at a time: {} of {d} available; the next replacement waits",
                        available
                    ));
                    break;
                }
                available -= 1;
            }
            let why = if self.aged.iter().any(|a| a.id == m.id) {
                format!(
                    "reached max_age ({}); stopped before its replacement starts (one writer at a time)",
                    self.svc.max_age.unwrap_or_default()
                )
            } else {
                format!(
                    "replaced by the newer version of {}; stopped before its replacement starts (one writer at a time)",
                    self.name
                )
            };
            self.retire(m, why);
        }

        // Beyond D: the highest slot, else the newest, first.
        let mut extra: Vec<&Member> = current.clone();
        if guard.slotted() {
            extra.retain(|m| m.slot.is_some_and(|s| s >= d));
            extra.sort_by_key(|m| std::cmp::Reverse(m.slot));
        } else if extra.len() as u32 > d {
            extra.sort_by_key(|m| (Self::healthy(m), std::cmp::Reverse(m.created_at)));
            extra.truncate(extra.len() - d as usize);
        } else {
            extra.clear();
        }
        for m in &extra {
            self.retire(m, format!("{} is scaled down to {d}", self.name));
        }

        // Then start: free slots whose keys nobody holds.
        let blocked = |keys: &[String]| -> Option<String> {
            keys.iter()
                .find_map(|k| held.get(k.as_str()).map(|h| format!("{k} (held by {h})")))
        };
        if guard.slotted() {
            for slot in 0..d {
                if current.iter().any(|m| m.slot == Some(slot)) {
                    continue;
                }
                match blocked(&guard.keys(Some(slot))) {
                    Some(what) => {
                        progress.waiting = Some(format!(
                            "one writer at a time: slot {slot} of {} starts once volume {what} is released",
                            self.name
                        ));
                    }
                    None => self.launch_in(
                        format!("{} has no instance in slot {slot} of {d}", self.name),
                        Some(slot),
                    ),
                }
            }
        } else if (current.len() as u32) < d {
            match blocked(&guard.keys(None)) {
                Some(what) => {
                    progress.waiting = Some(format!(
                        "one writer at a time: {} starts once volume {what} is released",
                        self.name
                    ));
                }
                None => self.launch(format!(
                    "{} has {} of {d} instances (one writer at a time)",
                    self.name,
                    current.len()
                )),
            }
        }

        progress.converged =
            progress.stale == 0 && progress.available == d && progress.current == d;
        let routes = self.all_healthy();
        self.out.routes.insert(self.name.clone(), routes);
        self.out.progress.insert(self.name.clone(), progress);
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Decision, MemberPhase, decide_scaled};
    use super::*;
    use crate::plan::{Target, fingerprint};
    use glint_model::*;
    use std::collections::{BTreeMap, BTreeSet};

    type Env = (Environment, BTreeMap<Name, Digest>);

    fn name(s: &str) -> Name {
        Name::new(s).unwrap()
    }

    /// A service `db` of `instances` mounting volume `data` (per instance
    /// or shared) read-write, with `strategy`.
    fn env(instances: u32, per_instance: bool, greeting: &str, strategy: Strategy) -> Env {
        let mut e = Environment::empty(name("t"));
        e.images
            .insert(name("app"), Image::scratch(vec!["/app".into()]));
        e.volumes.insert(
            name("data"),
            Volume {
                size: None,
                per_instance,
            },
        );
        let mut s = Service::new(name("app"));
        s.instances = instances;
        s.env.insert("GREETING".into(), greeting.into());
        s.rollout.strategy = strategy;
        s.mounts = vec![Mount {
            volume: name("data"),
            path: "/data".into(),
            read_only: false,
        }];
        e.services.insert(name("db"), s);
        (e, [(name("app"), Digest::of(b"app"))].into())
    }

    fn target(e: &Env) -> Target<'_> {
        Target {
            env: &e.0,
            images: &e.1,
        }
    }

    fn fp(e: &Env) -> Option<ContentHash> {
        fingerprint(target(e), &name("db"))
    }

    /// The world of a simulation: members, the keys each holds, and time.
    struct Sim {
        members: Vec<Member>,
        next: u64,
        now: i64,
    }

    impl Sim {
        fn member(&mut self, fp: &Option<ContentHash>, slot: Option<u32>, keys: Vec<String>) {
            let db = name("db");
            self.next += 1;
            self.members.push(Member {
                id: InstanceId::from_entropy(&db, self.next),
                service: db,
                fingerprint: fp.clone(),
                phase: MemberPhase::Healthy,
                created_at: self.now + self.next as i64,
                healthy_at: Some(self.now),
                slot,
                holds: keys,
            });
        }

        /// Every key held by two members at once (the invariant's breach).
        fn doubly_held(&self) -> Vec<String> {
            let mut seen = BTreeSet::new();
            let mut twice = Vec::new();
            for m in &self.members {
                for k in &m.holds {
                    if !seen.insert(k.clone()) {
                        twice.push(k.clone());
                    }
                }
            }
            twice
        }

        /// One pass: decisions applied the way the conductor applies them
        /// (a retirement first becomes `Retiring` — still holding its keys —
        /// and is gone a pass later; a launch holds its keys at once).
        fn pass(&mut self, e: &Env, scaled: &BTreeMap<Name, u32>) -> usize {
            self.members.retain(|m| m.phase != MemberPhase::Retiring);
            let o = decide_scaled(target(e), scaled, &self.members, self.now);
            let n = o.decisions.len();
            let guard = Guard::of(&e.0, &e.0.services[&name("db")]).unwrap();
            let f = fp(e);
            for d in o.decisions {
                match d {
                    Decision::Launch { slot, .. } => self.member(&f, slot, guard.keys(slot)),
                    Decision::Retire { id, .. } => {
                        if let Some(m) = self.members.iter_mut().find(|m| m.id == id) {
                            m.phase = MemberPhase::Retiring;
                        }
                    }
                }
            }
            self.now += 1_000;
            n
        }
    }

    /// Every strategy, shared and per-instance volumes, a new version then
    /// scheduled replacement: at every step no key is held twice, and the
    /// service ends with D current members, each slot's volume kept.
    #[test]
    fn no_volume_ever_has_two_writers_whatever_the_strategy() {
        let strategies = [
            Strategy::Rolling {
                surge: 1,
                unavailable: 0,
            },
            Strategy::Rolling {
                surge: 0,
                unavailable: 1,
            },
            Strategy::BlueGreen {
                keep: Millis::from_secs(60),
            },
            Strategy::Canary {
                steps: vec![1],
                pause: Millis::from_secs(30),
            },
        ];
        for strategy in strategies {
            for (d, per_instance) in [(1, false), (1, true), (3, true)] {
                let old = env(d, per_instance, "a", strategy.clone());
                let mut new = env(d, per_instance, "b", strategy.clone());
                let none = BTreeMap::new();
                let mut sim = Sim {
                    members: Vec::new(),
                    next: 0,
                    now: 1_000_000,
                };
                for _ in 0..20 {
                    sim.pass(&old, &none);
                }
                assert_eq!(sim.members.len(), d as usize, "{strategy:?} d={d}");
                let slots_before: BTreeSet<Option<u32>> =
                    sim.members.iter().map(|m| m.slot).collect();
                // A new version, then everything past max_age.
                for round in 0..2 {
                    if round == 1 {
                        new.0.services.get_mut(&name("db")).unwrap().max_age =
                            Some(Millis::from_secs(10));
                    }
                    for _ in 0..200 {
                        sim.pass(&new, &none);
                        assert!(
                            sim.doubly_held().is_empty(),
                            "{strategy:?} d={d}: {:?} held twice",
                            sim.doubly_held()
                        );
                    }
                    new.0.services.get_mut(&name("db")).unwrap().max_age = None;
                }
                for _ in 0..5 {
                    sim.pass(&new, &none);
                }
                let f = fp(&new);
                assert_eq!(sim.members.len(), d as usize, "{strategy:?} d={d}");
                assert!(sim.members.iter().all(|m| m.fingerprint == f));
                let slots_after: BTreeSet<Option<u32>> =
                    sim.members.iter().map(|m| m.slot).collect();
                assert_eq!(slots_before, slots_after, "slots (and their volumes) kept");
            }
        }
    }

    #[test]
    fn the_new_instance_waits_until_the_old_one_is_gone_not_just_retiring() {
        let old = env(1, false, "a", Strategy::default());
        let new = env(1, false, "b", Strategy::default());
        let mut sim = Sim {
            members: Vec::new(),
            next: 0,
            now: 0,
        };
        sim.member(&fp(&old), None, vec!["data".into()]);
        let o = decide_scaled(target(&new), &BTreeMap::new(), &sim.members, 0);
        assert!(
            matches!(o.decisions.as_slice(), [Decision::Retire { .. }]),
            "stop first, even with surge = 1: {:?}",
            o.decisions
        );
        sim.members[0].phase = MemberPhase::Retiring;
        let o = decide_scaled(target(&new), &BTreeMap::new(), &sim.members, 0);
        assert!(o.decisions.is_empty(), "{:?}", o.decisions);
        let waiting = o.progress[&name("db")].waiting.clone().unwrap();
        assert!(waiting.contains("held by"), "{waiting}");
        sim.members.clear();
        let o = decide_scaled(target(&new), &BTreeMap::new(), &sim.members, 0);
        assert!(matches!(
            o.decisions.as_slice(),
            [Decision::Launch { slot: None, .. }]
        ));
    }

    #[test]
    fn per_instance_slots_fill_from_zero_and_scale_down_from_the_top() {
        let e = env(3, true, "a", Strategy::default());
        let o = decide_scaled(target(&e), &BTreeMap::new(), &[], 0);
        let slots: Vec<Option<u32>> = o
            .decisions
            .iter()
            .map(|d| match d {
                Decision::Launch { slot, .. } => *slot,
                Decision::Retire { .. } => None,
            })
            .collect();
        assert_eq!(slots, vec![Some(0), Some(1), Some(2)]);
        let mut sim = Sim {
            members: Vec::new(),
            next: 0,
            now: 0,
        };
        let g = Guard::of(&e.0, &e.0.services[&name("db")]).unwrap();
        for s in 0..3 {
            sim.member(&fp(&e), Some(s), g.keys(Some(s)));
        }
        let mut small = e.clone();
        small.0.services.get_mut(&name("db")).unwrap().instances = 2;
        let o = decide_scaled(target(&small), &BTreeMap::new(), &sim.members, 0);
        let retired: Vec<Option<u32>> = o
            .decisions
            .iter()
            .filter_map(|d| match d {
                Decision::Retire { id, .. } => {
                    sim.members.iter().find(|m| &m.id == id).map(|m| m.slot)
                }
                _ => None,
            })
            .collect();
        assert_eq!(retired, vec![Some(2)], "the highest slot goes");
    }
}
