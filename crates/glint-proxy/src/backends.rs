//! The backend table: which instances are in rotation, choosing one, and the
//! in-flight accounting that draining waits on.
//!
//! One writer (the conductor calling `set_backends` / `drain`, serialised by a
//! mutex) and many readers (requests, which take a cheap snapshot of the
//! rotation). Every backend has an `admitting` flag; a request counts itself in
//! flight *first* and then checks the flag, while the writer clears the flag
//! *first* and then reads the in-flight count (both sequentially consistent).
//! So either the request sees that the backend left rotation and goes
//! elsewhere, or `drain` sees the request and waits for it: a request can never
//! slip past a drain.

use crate::pool::Pool;
use crate::stats::{BackendStats, BackendStatus, read};
use glint_model::InstanceId;
use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

/// One healthy instance the endpoint may route to.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct Backend {
    /// The instance.
    pub instance: InstanceId,
    /// Where its port can be reached from the endpoint.
    pub addr: SocketAddr,
}

/// How many drained instance ids are remembered (so that a set computed
/// before the drain cannot put one back in rotation).
const DRAINED_MEMORY: usize = 4096;

/// Settings every backend of an endpoint shares.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BackendSettings {
    pub(crate) pool_max_idle: usize,
    pub(crate) pool_idle_timeout: Duration,
    pub(crate) eject_for: Duration,
    pub(crate) eject_max: Duration,
}

/// The live state of one backend.
pub(crate) struct BackendState {
    pub(crate) instance: InstanceId,
    pub(crate) addr: SocketAddr,
    admitting: AtomicBool,
    draining: AtomicBool,
    in_flight: AtomicUsize,
    pub(crate) served: AtomicU64,
    /// Microseconds requests have spent in flight to it, summed over every
    /// request that ended (admission to the end of its response).
    busy_us: AtomicU64,
    pub(crate) connect_failures: AtomicU64,
    pub(crate) request_failures: AtomicU64,
    /// Nanoseconds since the table's epoch until which the backend is
    /// ejected; 0 when it is not.
    ejected_until: AtomicU64,
    /// Ejections since the last success (each doubles the next one).
    failures_in_a_row: AtomicU32,
    idle: Notify,
    pub(crate) pool: Pool,
}

impl BackendState {
    fn new(backend: Backend, settings: &BackendSettings) -> BackendState {
        BackendState {
            instance: backend.instance,
            addr: backend.addr,
            admitting: AtomicBool::new(true),
            draining: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            served: AtomicU64::new(0),
            busy_us: AtomicU64::new(0),
            connect_failures: AtomicU64::new(0),
            request_failures: AtomicU64::new(0),
            ejected_until: AtomicU64::new(0),
            failures_in_a_row: AtomicU32::new(0),
            idle: Notify::new(),
            pool: Pool::new(settings.pool_max_idle, settings.pool_idle_timeout),
        }
    }

    /// Records a success (a response head relayed, a TCP connection made):
    /// the next ejection, if any, starts again from `eject_for`.
    pub(crate) fn succeeded(&self) {
        if self.failures_in_a_row.load(Ordering::Relaxed) != 0 {
            self.failures_in_a_row.store(0, Ordering::Relaxed);
        }
    }

    /// Whether new requests may go to this backend.
    pub(crate) fn is_admitting(&self) -> bool {
        self.admitting.load(Ordering::SeqCst)
    }

    /// Requests (or connections) in flight to this backend.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Counts one request in flight, unless the backend has left rotation.
    pub(crate) fn admit(self: &Arc<Self>) -> Option<InFlight> {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let guard = InFlight {
            backend: Arc::clone(self),
            since: Instant::now(),
        };
        if self.admitting.load(Ordering::SeqCst) {
            Some(guard)
        } else {
            None
        }
    }

    /// Takes the backend out of rotation (removed from the set).
    fn retire(&self) {
        self.admitting.store(false, Ordering::SeqCst);
        self.pool.close();
    }

    /// Takes the backend out of rotation for good and wakes drain waiters
    /// when its in-flight count reaches zero.
    fn begin_drain(&self) {
        self.admitting.store(false, Ordering::SeqCst);
        self.draining.store(true, Ordering::SeqCst);
        self.pool.close();
    }

    /// Waits until nothing is in flight, or until `deadline`.
    async fn wait_idle(&self, deadline: Instant) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.in_flight() == 0 {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return;
            }
        }
    }

    fn status(&self, now: u64) -> BackendStatus {
        if self.draining.load(Ordering::SeqCst) {
            BackendStatus::Draining
        } else if !self.is_admitting() {
            BackendStatus::Removed
        } else if self.is_ejected(now) {
            BackendStatus::Ejected
        } else {
            BackendStatus::Active
        }
    }

    fn is_ejected(&self, now: u64) -> bool {
        now < self.ejected_until.load(Ordering::Relaxed)
    }

    fn stats(&self, now: u64) -> BackendStats {
        BackendStats {
            instance: self.instance.clone(),
            addr: self.addr,
            status: self.status(now),
            in_flight: self.in_flight() as u64,
            served: read(&self.served),
            busy_us: read(&self.busy_us),
            connect_failures: read(&self.connect_failures),
            request_failures: read(&self.request_failures),
            idle_connections: self.pool.idle_count() as u64,
        }
    }
}

/// One request (or TCP connection) in flight to a backend; dropping it ends
/// the count.
pub(crate) struct InFlight {
    backend: Arc<BackendState>,
    since: Instant,
}

impl InFlight {
    pub(crate) fn backend(&self) -> &Arc<BackendState> {
        &self.backend
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let us = u64::try_from(self.since.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.backend.busy_us.fetch_add(us, Ordering::Relaxed);
        let before = self.backend.in_flight.fetch_sub(1, Ordering::SeqCst);
        if before == 1 && self.backend.draining.load(Ordering::SeqCst) {
            self.backend.idle.notify_waiters();
        }
    }
}

/// How a backend already tried for this request may be used again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tried {
    /// Not again.
    Excluded,
    /// Its reused connection failed: once more, on a fresh connection.
    FreshOnly,
}

/// The backends a request has tried.
#[derive(Default)]
pub(crate) struct TriedSet {
    entries: Vec<(Arc<BackendState>, Tried)>,
}

impl TriedSet {
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn get(&self, backend: &Arc<BackendState>) -> Option<Tried> {
        self.entries
            .iter()
            .find(|(b, _)| Arc::ptr_eq(b, backend))
            .map(|(_, t)| *t)
    }

    /// Records an attempt's failure.
    pub(crate) fn mark(&mut self, backend: &Arc<BackendState>, how: Tried) {
        match self
            .entries
            .iter_mut()
            .find(|(b, _)| Arc::ptr_eq(b, backend))
        {
            // A fresh-only retry that fails too excludes the backend.
            Some(entry) => entry.1 = Tried::Excluded,
            None => self.entries.push((Arc::clone(backend), how)),
        }
    }
}

/// The outcome of a choice.
pub(crate) enum Pick {
    /// This backend; `fresh_only` when its pooled connections must not be
    /// used (one of them already failed this request).
    One {
        backend: Arc<BackendState>,
        fresh_only: bool,
    },
    /// No admitting backend that may still be tried.
    Nothing,
}

struct Table {
    generation: Option<u64>,
    members: Vec<Arc<BackendState>>,
    retired: Vec<Arc<BackendState>>,
    drained: VecDeque<InstanceId>,
    drained_set: HashSet<InstanceId>,
}

impl Table {
    fn remember_drained(&mut self, instance: &InstanceId) {
        if self.drained_set.insert(instance.clone()) {
            self.drained.push_back(instance.clone());
            while self.drained.len() > DRAINED_MEMORY {
                if let Some(old) = self.drained.pop_front() {
                    self.drained_set.remove(&old);
                }
            }
        }
    }

    fn prune_retired(&mut self) {
        self.retired.retain(|b| b.in_flight() > 0);
    }
}

/// What `drain` found and waited for.
pub(crate) struct DrainResult {
    pub(crate) found: bool,
    pub(crate) in_flight_at_start: usize,
    pub(crate) remaining: usize,
}

/// The backend table of one endpoint.
pub(crate) struct Backends {
    settings: BackendSettings,
    epoch: Instant,
    cursor: AtomicUsize,
    rotation: RwLock<Arc<Vec<Arc<BackendState>>>>,
    table: Mutex<Table>,
    changed: watch::Sender<()>,
}

impl Backends {
    pub(crate) fn new(settings: BackendSettings) -> Backends {
        Backends {
            settings,
            epoch: Instant::now(),
            cursor: AtomicUsize::new(0),
            rotation: RwLock::new(Arc::new(Vec::new())),
            table: Mutex::new(Table {
                generation: None,
                members: Vec::new(),
                retired: Vec::new(),
                drained: VecDeque::new(),
                drained_set: HashSet::new(),
            }),
            changed: watch::Sender::new(()),
        }
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn rotation(&self) -> Arc<Vec<Arc<BackendState>>> {
        Arc::clone(&self.rotation.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Publishes the table's members as the rotation and wakes requests
    /// waiting for a backend. Called with the table locked.
    fn publish(&self, table: &Table) {
        let members = Arc::new(table.members.clone());
        *self.rotation.write().unwrap_or_else(|e| e.into_inner()) = members;
        self.changed.send_replace(());
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// The generation in force.
    pub(crate) fn generation(&self) -> Option<u64> {
        self.table().generation
    }

    /// Applies a whole backend set; `false` if `generation` is stale.
    pub(crate) fn set(&self, generation: u64, backends: Vec<Backend>) -> bool {
        let mut table = self.table();
        if table.generation.is_some_and(|applied| generation < applied) {
            tracing::debug!(
                generation,
                applied = table.generation,
                "ignoring a stale backend set"
            );
            return false;
        }
        table.generation = Some(generation);
        let mut next: Vec<Arc<BackendState>> = Vec::with_capacity(backends.len());
        for backend in backends {
            if table.drained_set.contains(&backend.instance)
                || next.iter().any(|b| b.instance == backend.instance)
            {
                continue;
            }
            let kept = table
                .members
                .iter()
                .find(|m| m.instance == backend.instance && m.addr == backend.addr)
                .cloned();
            next.push(kept.unwrap_or_else(|| Arc::new(BackendState::new(backend, &self.settings))));
        }
        let previous = std::mem::take(&mut table.members);
        for old in previous {
            if !next.iter().any(|b| Arc::ptr_eq(b, &old)) {
                old.retire();
                table.retired.push(old);
            }
        }
        table.members = next;
        table.prune_retired();
        self.publish(&table);
        tracing::debug!(
            generation,
            backends = table.members.len(),
            "backend set applied"
        );
        true
    }

    /// Takes `instance` out of rotation for good and waits up to `timeout`
    /// for what it has in flight.
    pub(crate) async fn drain(&self, instance: &InstanceId, timeout: Duration) -> DrainResult {
        let deadline = Instant::now() + timeout;
        let targets: Vec<Arc<BackendState>> = {
            let mut table = self.table();
            table.remember_drained(instance);
            let before = table.members.len();
            let (gone, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut table.members)
                .into_iter()
                .partition(|b| &b.instance == instance);
            table.members = kept;
            table.retired.extend(gone);
            if table.members.len() != before {
                self.publish(&table);
            }
            let targets: Vec<_> = table
                .retired
                .iter()
                .filter(|b| &b.instance == instance)
                .cloned()
                .collect();
            for target in &targets {
                target.begin_drain();
            }
            targets
        };
        let in_flight_at_start = targets.iter().map(|b| b.in_flight()).sum();
        for target in &targets {
            target.wait_idle(deadline).await;
        }
        let remaining = targets.iter().map(|b| b.in_flight()).sum();
        self.table().prune_retired();
        DrainResult {
            found: !targets.is_empty(),
            in_flight_at_start,
            remaining,
        }
    }

    /// Chooses a backend: least in flight among those not yet tried (ties
    /// broken round-robin), non-ejected first, then backends that may be
    /// retried on a fresh connection.
    pub(crate) fn pick(&self, tried: &TriedSet) -> Pick {
        let rotation = self.rotation();
        let n = rotation.len();
        if n == 0 {
            return Pick::Nothing;
        }
        let now = self.now();
        let start = self.cursor.fetch_add(1, Ordering::Relaxed) % n;
        let mut best: Option<(u8, usize, &Arc<BackendState>)> = None;
        for i in 0..n {
            let backend = &rotation[(start + i) % n];
            if !backend.is_admitting() {
                continue;
            }
            let mut rank = match tried.get(backend) {
                Some(Tried::Excluded) => continue,
                Some(Tried::FreshOnly) => 1,
                None => 0,
            };
            if backend.is_ejected(now) {
                rank += 2;
            }
            let load = backend.in_flight();
            if best.is_none_or(|(r, l, _)| (rank, load) < (r, l)) {
                best = Some((rank, load, backend));
            }
        }
        match best {
            Some((_, _, backend)) => Pick::One {
                fresh_only: tried.get(backend) == Some(Tried::FreshOnly),
                backend: Arc::clone(backend),
            },
            None => Pick::Nothing,
        }
    }

    /// Waits until the rotation holds a backend that admits requests and
    /// that `tried` does not exclude, or until `deadline`; true if it does.
    pub(crate) async fn wait_for_candidate(&self, tried: &TriedSet, deadline: Instant) -> bool {
        let mut changed = self.changed.subscribe();
        let candidate = || {
            self.rotation()
                .iter()
                .any(|b| b.is_admitting() && tried.get(b) != Some(Tried::Excluded))
        };
        loop {
            if candidate() {
                return true;
            }
            match tokio::time::timeout_at(deadline, changed.changed()).await {
                Ok(Ok(())) => continue,
                Ok(Err(_)) | Err(_) => return candidate(),
            }
        }
    }

    /// Keeps `backend` out of choice for a while (it just failed): for
    /// `eject_for`, doubled for each ejection since its last success, at most
    /// `eject_max`. A backend that keeps failing while no conductor removes
    /// it is thus probed by ever fewer requests (each retried elsewhere when
    /// the retry rules allow).
    pub(crate) fn eject(&self, backend: &BackendState) {
        let now = self.now();
        let was = backend.ejected_until.load(Ordering::Relaxed);
        if was > now {
            // Already ejected (several requests failed on it at once): one
            // ejection, not several doublings.
            return;
        }
        let n = backend.failures_in_a_row.fetch_add(1, Ordering::Relaxed);
        let span = ejection(self.settings.eject_for, self.settings.eject_max, n);
        let nanos = u64::try_from(span.as_nanos()).unwrap_or(u64::MAX);
        backend
            .ejected_until
            .store(now.saturating_add(nanos), Ordering::Relaxed);
        tracing::info!(
            instance = %backend.instance,
            addr = %backend.addr,
            for_ = ?span,
            in_a_row = n + 1,
            "backend ejected after a failure"
        );
    }

    /// Drops expired idle connections and forgets idle retired backends.
    pub(crate) fn reap(&self) {
        let all: Vec<Arc<BackendState>> = {
            let mut table = self.table();
            table.prune_retired();
            table
                .members
                .iter()
                .chain(&table.retired)
                .cloned()
                .collect()
        };
        for backend in all {
            backend.pool.reap();
        }
    }

    /// Closes every pool (endpoint shutdown).
    pub(crate) fn close_pools(&self) {
        let table = self.table();
        for backend in table.members.iter().chain(&table.retired) {
            backend.pool.close();
        }
    }

    /// A snapshot of every backend's counters.
    pub(crate) fn stats(&self) -> Vec<BackendStats> {
        let now = self.now();
        let table = self.table();
        table
            .members
            .iter()
            .chain(table.retired.iter().filter(|b| b.in_flight() > 0))
            .map(|b| b.stats(now))
            .collect()
    }
}

/// The length of the ejection that follows `previous` ejections without a
/// success in between: `base` doubled `previous` times, at most `max` (and
/// never below `base`).
fn ejection(base: Duration, max: Duration, previous: u32) -> Duration {
    let factor = 1u32.checked_shl(previous.min(20)).unwrap_or(u32::MAX);
    base.saturating_mul(factor).min(max.max(base))
}

#[cfg(test)]
mod tests {
    use super::*;
    use glint_model::Name;

    fn settings() -> BackendSettings {
        BackendSettings {
            pool_max_idle: 4,
            pool_idle_timeout: Duration::from_secs(5),
            eject_for: Duration::from_secs(5),
            eject_max: Duration::from_secs(30),
        }
    }

    #[test]
    fn ejections_double_up_to_the_maximum() {
        let s = |n| ejection(Duration::from_secs(2), Duration::from_secs(30), n);
        assert_eq!(s(0), Duration::from_secs(2));
        assert_eq!(s(1), Duration::from_secs(4));
        assert_eq!(s(3), Duration::from_secs(16));
        assert_eq!(s(4), Duration::from_secs(30));
        assert_eq!(s(u32::MAX), Duration::from_secs(30));
        // A maximum below the base never shortens the base.
        assert_eq!(
            ejection(Duration::from_secs(2), Duration::from_secs(1), 3),
            Duration::from_secs(2)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_backend_that_keeps_failing_stays_ejected_longer_each_time_until_it_succeeds() {
        let b = Backends::new(settings());
        b.set(1, vec![backend("aaaaaaaa", 1), backend("bbbbbbbb", 2)]);
        let Pick::One { backend: a, .. } = b.pick(&TriedSet::default()) else {
            panic!()
        };
        let ejected_for = |b: &Backends| {
            let until = a.ejected_until.load(Ordering::Relaxed);
            Duration::from_nanos(until.saturating_sub(b.now()))
        };
        b.eject(&a);
        assert_eq!(ejected_for(&b), Duration::from_secs(5));
        // A second failure while still ejected is the same ejection.
        b.eject(&a);
        assert_eq!(ejected_for(&b), Duration::from_secs(5));
        tokio::time::advance(Duration::from_secs(6)).await;
        b.eject(&a);
        assert_eq!(ejected_for(&b), Duration::from_secs(10));
        tokio::time::advance(Duration::from_secs(11)).await;
        b.eject(&a);
        assert_eq!(ejected_for(&b), Duration::from_secs(20));
        tokio::time::advance(Duration::from_secs(21)).await;
        b.eject(&a);
        assert_eq!(ejected_for(&b), Duration::from_secs(30), "capped");
        tokio::time::advance(Duration::from_secs(31)).await;
        a.succeeded();
        b.eject(&a);
        assert_eq!(
            ejected_for(&b),
            Duration::from_secs(5),
            "reset by a success"
        );
    }

    fn backend(suffix: &str, port: u16) -> Backend {
        let web = Name::new("web").unwrap();
        Backend {
            instance: InstanceId::new(&web, suffix).unwrap(),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }

    fn picked(backends: &Backends, tried: &TriedSet) -> Option<String> {
        match backends.pick(tried) {
            Pick::One { backend, .. } => Some(backend.instance.to_string()),
            Pick::Nothing => None,
        }
    }

    #[test]
    fn idle_choice_is_round_robin() {
        let b = Backends::new(settings());
        b.set(
            1,
            vec![
                backend("aaaaaaaa", 1),
                backend("bbbbbbbb", 2),
                backend("cccccccc", 3),
            ],
        );
        let mut seen = Vec::new();
        for _ in 0..6 {
            seen.push(picked(&b, &TriedSet::default()).unwrap());
        }
        for name in ["web-aaaaaaaa", "web-bbbbbbbb", "web-cccccccc"] {
            assert_eq!(seen.iter().filter(|s| *s == name).count(), 2, "{seen:?}");
        }
    }

    #[test]
    fn choice_prefers_least_in_flight() {
        let b = Backends::new(settings());
        b.set(1, vec![backend("aaaaaaaa", 1), backend("bbbbbbbb", 2)]);
        let Pick::One { backend: first, .. } = b.pick(&TriedSet::default()) else {
            panic!("no backend")
        };
        let _guard = first.admit().unwrap();
        for _ in 0..4 {
            let other = picked(&b, &TriedSet::default()).unwrap();
            assert_ne!(other, first.instance.to_string());
        }
    }

    #[test]
    fn tried_backends_are_skipped_and_fresh_only_comes_last() {
        let b = Backends::new(settings());
        b.set(1, vec![backend("aaaaaaaa", 1), backend("bbbbbbbb", 2)]);
        let Pick::One { backend: a, .. } = b.pick(&TriedSet::default()) else {
            panic!()
        };
        let mut tried = TriedSet::default();
        tried.mark(&a, Tried::FreshOnly);
        let Pick::One {
            backend: other,
            fresh_only,
        } = b.pick(&tried)
        else {
            panic!()
        };
        assert!(!Arc::ptr_eq(&a, &other));
        assert!(!fresh_only);
        tried.mark(&other, Tried::Excluded);
        let Pick::One {
            backend: again,
            fresh_only,
        } = b.pick(&tried)
        else {
            panic!()
        };
        assert!(Arc::ptr_eq(&a, &again));
        assert!(fresh_only);
        tried.mark(&a, Tried::FreshOnly);
        assert!(matches!(b.pick(&tried), Pick::Nothing));
    }

    #[test]
    fn ejected_backends_are_chosen_only_as_a_last_resort() {
        let b = Backends::new(settings());
        b.set(1, vec![backend("aaaaaaaa", 1), backend("bbbbbbbb", 2)]);
        let Pick::One { backend: a, .. } = b.pick(&TriedSet::default()) else {
            panic!()
        };
        b.eject(&a);
        for _ in 0..4 {
            assert_ne!(
                picked(&b, &TriedSet::default()).unwrap(),
                a.instance.to_string()
            );
        }
        let mut tried = TriedSet::default();
        let Pick::One { backend: other, .. } = b.pick(&tried) else {
            panic!()
        };
        tried.mark(&other, Tried::Excluded);
        assert_eq!(picked(&b, &tried).unwrap(), a.instance.to_string());
    }

    #[test]
    fn stale_generations_are_ignored_and_equal_ones_reapplied() {
        let b = Backends::new(settings());
        assert!(b.set(5, vec![backend("aaaaaaaa", 1)]));
        assert!(!b.set(4, vec![backend("bbbbbbbb", 2)]));
        assert_eq!(b.generation(), Some(5));
        assert_eq!(picked(&b, &TriedSet::default()).unwrap(), "web-aaaaaaaa");
        assert!(b.set(5, vec![backend("bbbbbbbb", 2)]));
        assert_eq!(picked(&b, &TriedSet::default()).unwrap(), "web-bbbbbbbb");
    }

    #[test]
    fn removal_stops_admission_but_keeps_requests_in_flight_counted() {
        let b = Backends::new(settings());
        b.set(1, vec![backend("aaaaaaaa", 1)]);
        let Pick::One { backend: a, .. } = b.pick(&TriedSet::default()) else {
            panic!()
        };
        let guard = a.admit().unwrap();
        b.set(2, vec![backend("bbbbbbbb", 2)]);
        assert!(a.admit().is_none());
        let stats = b.stats();
        assert_eq!(stats.len(), 2);
        assert_eq!(stats[1].status, BackendStatus::Removed);
        assert_eq!(stats[1].in_flight, 1);
        drop(guard);
        assert_eq!(b.stats().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn drain_waits_for_in_flight_and_is_bounded() {
        let b = Arc::new(Backends::new(settings()));
        b.set(1, vec![backend("aaaaaaaa", 1), backend("bbbbbbbb", 2)]);
        let a = match b.pick(&TriedSet::default()) {
            Pick::One { backend, .. } => backend,
            Pick::Nothing => panic!(),
        };
        let guard = a.admit().unwrap();
        let held = a.admit().unwrap();

        // Bounded: one request never finishes.
        let b2 = Arc::clone(&b);
        let id = a.instance.clone();
        let release = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            drop(guard);
        });
        let outcome = b2.drain(&id, Duration::from_secs(1)).await;
        assert!(outcome.found);
        assert_eq!(outcome.in_flight_at_start, 2);
        assert_eq!(outcome.remaining, 1);
        release.await.unwrap();

        // Out of rotation for good, even if a later set lists it.
        assert!(b.set(2, vec![backend("aaaaaaaa", 1), backend("bbbbbbbb", 2)]));
        for _ in 0..4 {
            assert_eq!(picked(&b, &TriedSet::default()).unwrap(), "web-bbbbbbbb");
        }

        // Returns as soon as the last request ends.
        let start = Instant::now();
        let id = a.instance.clone();
        let waiter = tokio::spawn({
            let b = Arc::clone(&b);
            async move { b.drain(&id, Duration::from_secs(60)).await }
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        drop(held);
        let outcome = waiter.await.unwrap();
        assert_eq!(outcome.remaining, 0);
        assert_eq!(outcome.in_flight_at_start, 1);
        assert!(start.elapsed() < Duration::from_secs(60));

        let unknown = InstanceId::new(&Name::new("web").unwrap(), "zzzzzzzz").unwrap();
        assert!(!b.drain(&unknown, Duration::from_secs(1)).await.found);
    }
}
