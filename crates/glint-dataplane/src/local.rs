//! [`LocalDataPlane`]: the endpoints in this process, one
//! [`EndpointProxy`] each. The `glint dataplane` process hosts one; the
//! conductor's tests use one directly.
//!
//! One writer lock serialises the programming calls; requests never take it
//! (they run in the proxies' own tasks), and drains wait outside it.

use crate::handoff::{HandedEndpoint, Handoff};
use crate::identity::Identity;
use crate::plane::{
    DataPlane, DataPlaneError, DataPlaneState, DrainReport, EndpointReport, EndpointSpec,
    EndpointsApplied,
};
use async_trait::async_trait;
use glint_model::{InstanceId, Name};
use glint_proxy::{Backend, EndpointProxy};
use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// How long an endpoint that is closed or reconfigured may take to finish
/// what it has in flight.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a reconfigured endpoint's old proxy keeps its client
/// connections to tell them to reconnect (see `EndpointProxy::leave`).
const RECONFIGURE_LINGER: Duration = Duration::from_secs(5);

/// One endpoint.
struct Slot {
    spec: EndpointSpec,
    proxy: Option<EndpointProxy>,
    error: Option<String>,
    /// The backend set given last, and its generation: applied to the
    /// proxy when there is one, kept for when it binds otherwise.
    generation: Option<u64>,
    backends: Vec<Backend>,
}

impl Slot {
    fn new(spec: EndpointSpec) -> Slot {
        Slot {
            spec,
            proxy: None,
            error: None,
            generation: None,
            backends: Vec::new(),
        }
    }

    /// Binds if it does not listen; records the error if it cannot.
    async fn bind(&mut self) {
        if self.proxy.is_some() {
            return;
        }
        match EndpointProxy::bind(self.spec.config.clone()).await {
            Ok(proxy) => self.serve(proxy),
            Err(e) => self.error = Some(crate::error_chain(&e)),
        }
    }

    /// Starts routing with `proxy`, with the backend set given so far.
    fn serve(&mut self, proxy: EndpointProxy) {
        if let Some(generation) = self.generation {
            proxy.set_backends(generation, self.backends.clone());
        }
        self.error = None;
        self.proxy = Some(proxy);
    }

    fn report(&self) -> EndpointReport {
        let stats = self.proxy.as_ref().map(|p| p.stats());
        EndpointReport {
            spec: self.spec.clone(),
            listening: self.proxy.as_ref().map(|p| p.local_addr()),
            error: self.error.clone(),
            generation: self.generation,
            backends: self.backends.clone(),
            stats,
        }
    }
}

struct Inner {
    generation: Option<u64>,
    slots: BTreeMap<Name, Slot>,
    /// Set once shut down or handed off: no more changes.
    closed: Option<Closed>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closed {
    ShutDown,
    HandedOff,
}

impl Closed {
    fn error(self) -> DataPlaneError {
        match self {
            Closed::ShutDown => DataPlaneError::ShuttingDown,
            Closed::HandedOff => DataPlaneError::HandingOff,
        }
    }
}

/// The endpoints of this process. Must be used inside a Tokio runtime.
pub struct LocalDataPlane {
    identity: Identity,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for LocalDataPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalDataPlane")
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

impl LocalDataPlane {
    /// An empty data plane serving `store`.
    pub fn new(store: &str) -> LocalDataPlane {
        LocalDataPlane {
            identity: Identity::of_this_process(store),
            inner: Mutex::new(Inner {
                generation: None,
                slots: BTreeMap::new(),
                closed: None,
            }),
        }
    }

    /// Who it is.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// A data plane made of what another process handed over: each endpoint
    /// serves the listening socket it came with (`fds[i]` for the endpoint
    /// whose `fd` is `i`), or binds anew if it came without one; backend
    /// sets and generations are those of the other process. Returns the
    /// endpoints that could not be restored, with why (they are kept, and
    /// retried by the next [`DataPlane::set_endpoints`]).
    pub fn from_handoff(
        store: &str,
        handoff: Handoff,
        fds: Vec<OwnedFd>,
    ) -> (LocalDataPlane, Vec<(Name, String)>) {
        let mut fds: Vec<Option<OwnedFd>> = fds.into_iter().map(Some).collect();
        let mut slots = BTreeMap::new();
        let mut problems = Vec::new();
        for e in handoff.endpoints {
            let name = e.spec.name().clone();
            let mut slot = Slot::new(e.spec);
            slot.generation = e.generation;
            slot.backends = e.backends;
            match e.fd.and_then(|i| fds.get_mut(i).and_then(Option::take)) {
                Some(fd) => {
                    let listener = std::net::TcpListener::from(fd);
                    match EndpointProxy::from_listener(slot.spec.config.clone(), listener) {
                        Ok(proxy) => slot.serve(proxy),
                        Err(err) => {
                            let why = crate::error_chain(&err);
                            problems.push((name.clone(), why.clone()));
                            slot.error = Some(why);
                        }
                    }
                }
                None => {
                    let why = e
                        .error
                        .unwrap_or_else(|| "no listening socket was handed over".into());
                    slot.error = Some(why.clone());
                    problems.push((name.clone(), why));
                }
            }
            slots.insert(name, slot);
        }
        let plane = LocalDataPlane {
            identity: Identity::of_this_process(store),
            inner: Mutex::new(Inner {
                generation: handoff.generation,
                slots,
                closed: None,
            }),
        };
        (plane, problems)
    }

    /// What to hand to another process: the whole state, and a duplicate of
    /// every listening socket (the `fd` of an endpoint indexes the returned
    /// descriptors). This data plane keeps serving until
    /// [`LocalDataPlane::leave`].
    pub async fn export(&self) -> std::io::Result<(Handoff, Vec<OwnedFd>)> {
        let inner = self.inner.lock().await;
        let mut fds = Vec::new();
        let mut endpoints = Vec::new();
        for slot in inner.slots.values() {
            let fd = match slot.proxy.as_ref().and_then(|p| p.dup_listener()) {
                Some(Ok(fd)) => {
                    fds.push(fd);
                    Some(fds.len() - 1)
                }
                Some(Err(e)) => return Err(e),
                None => None,
            };
            endpoints.push(HandedEndpoint {
                spec: slot.spec.clone(),
                generation: slot.generation,
                backends: slot.backends.clone(),
                error: slot.error.clone(),
                fd,
            });
        }
        Ok((
            Handoff {
                generation: inner.generation,
                endpoints,
            },
            fds,
        ))
    }

    /// Refuses changes from now on (a handoff is under way); `false` if it
    /// already was closed.
    pub async fn freeze(&self) -> bool {
        let mut inner = self.inner.lock().await;
        if inner.closed.is_some() {
            return false;
        }
        inner.closed = Some(Closed::HandedOff);
        true
    }

    /// Takes changes again (the handoff did not complete).
    pub async fn thaw(&self) {
        let mut inner = self.inner.lock().await;
        if inner.closed == Some(Closed::HandedOff) {
            inner.closed = None;
        }
    }

    /// Ends every endpoint after another process took their sockets over
    /// (see `EndpointProxy::leave`): no more accepting here, each client
    /// connection told to reconnect, what is in flight finished.
    pub async fn leave(&self, linger: Duration, timeout: Duration) {
        let proxies = {
            let mut inner = self.inner.lock().await;
            inner.closed = Some(Closed::HandedOff);
            std::mem::take(&mut inner.slots)
                .into_values()
                .filter_map(|s| s.proxy)
                .collect::<Vec<_>>()
        };
        let mut tasks = tokio::task::JoinSet::new();
        for p in proxies {
            tasks.spawn(p.leave(linger, timeout));
        }
        while tasks.join_next().await.is_some() {}
    }

    fn report(inner: &Inner) -> Vec<EndpointReport> {
        inner.slots.values().map(Slot::report).collect()
    }
}

/// Closes a proxy: its listener at once (awaited, briefly, so that the
/// address is free for what is bound next), what it has in flight in the
/// background.
async fn close(proxy: EndpointProxy) {
    let watch = proxy.clone();
    tokio::spawn(async move {
        proxy.shutdown(CLOSE_TIMEOUT).await;
    });
    let deadline = Instant::now() + Duration::from_secs(1);
    while watch.dup_listener().is_some() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[async_trait]
impl DataPlane for LocalDataPlane {
    async fn set_endpoints(
        &self,
        generation: u64,
        endpoints: Vec<EndpointSpec>,
    ) -> Result<EndpointsApplied, DataPlaneError> {
        let mut inner = self.inner.lock().await;
        if let Some(closed) = inner.closed {
            return Err(closed.error());
        }
        if inner.generation.is_some_and(|g| generation < g) {
            tracing::debug!(generation, applied = ?inner.generation, "ignoring a stale endpoint set");
            return Ok(EndpointsApplied {
                applied: false,
                endpoints: Self::report(&inner),
            });
        }
        inner.generation = Some(generation);
        let mut wanted: BTreeMap<Name, EndpointSpec> = endpoints
            .into_iter()
            .map(|s| (s.name().clone(), s))
            .collect();
        // Close what is gone or moved first, so that its address is free;
        // a moved endpoint keeps its backend set.
        let names: Vec<Name> = inner.slots.keys().cloned().collect();
        let mut moved: BTreeMap<Name, (Option<u64>, Vec<Backend>)> = BTreeMap::new();
        for name in names {
            // None: no longer wanted; Some(false): wanted elsewhere.
            let same_socket = wanted
                .get(&name)
                .map(|w| inner.slots[&name].spec.same_socket(w));
            if same_socket == Some(true) {
                continue;
            }
            if let Some(slot) = inner.slots.remove(&name) {
                tracing::info!(endpoint = %name, listen = %slot.spec.config.listen, "endpoint closed");
                if same_socket == Some(false) {
                    moved.insert(name, (slot.generation, slot.backends));
                }
                if let Some(p) = slot.proxy {
                    close(p).await;
                }
            }
        }
        for (name, spec) in std::mem::take(&mut wanted) {
            let slot = inner.slots.entry(name.clone()).or_insert_with(|| {
                let mut slot = Slot::new(spec.clone());
                if let Some((generation, backends)) = moved.remove(&name) {
                    slot.generation = generation;
                    slot.backends = backends;
                }
                slot
            });
            if slot.spec != spec {
                // Same socket, other settings: a new proxy on a duplicate
                // of the socket, the old one leaves.
                slot.spec = spec;
                if let Some(old) = slot.proxy.take() {
                    match old.dup_listener() {
                        Some(Ok(fd)) => {
                            let listener = std::net::TcpListener::from(fd);
                            match EndpointProxy::from_listener(slot.spec.config.clone(), listener) {
                                Ok(new) => {
                                    slot.serve(new);
                                    tokio::spawn(old.leave(RECONFIGURE_LINGER, CLOSE_TIMEOUT));
                                }
                                Err(e) => {
                                    slot.error = Some(crate::error_chain(&e));
                                    slot.proxy = Some(old);
                                }
                            }
                        }
                        Some(Err(e)) => {
                            slot.error =
                                Some(format!("cannot duplicate the listening socket: {e}"));
                            slot.proxy = Some(old);
                        }
                        None => close(old).await,
                    }
                }
            }
            slot.bind().await;
        }
        Ok(EndpointsApplied {
            applied: true,
            endpoints: Self::report(&inner),
        })
    }

    async fn set_backends(
        &self,
        endpoint: &Name,
        generation: u64,
        mut backends: Vec<Backend>,
    ) -> Result<bool, DataPlaneError> {
        let mut inner = self.inner.lock().await;
        if let Some(closed) = inner.closed {
            return Err(closed.error());
        }
        let Some(slot) = inner.slots.get_mut(endpoint) else {
            return Err(DataPlaneError::UnknownEndpoint(endpoint.clone()));
        };
        if slot.generation.is_some_and(|g| generation < g) {
            return Ok(false);
        }
        backends.sort();
        backends.dedup();
        if let Some(p) = &slot.proxy {
            p.set_backends(generation, backends.clone());
        }
        slot.generation = Some(generation);
        slot.backends = backends;
        Ok(true)
    }

    async fn drain(
        &self,
        instance: &InstanceId,
        timeout: Duration,
    ) -> Result<DrainReport, DataPlaneError> {
        let started = Instant::now();
        let proxies: Vec<EndpointProxy> = {
            let inner = self.inner.lock().await;
            inner
                .slots
                .values()
                .filter_map(|s| s.proxy.clone())
                .collect()
        };
        let mut tasks = tokio::task::JoinSet::new();
        for p in proxies {
            let id = instance.clone();
            tasks.spawn(async move { p.drain(&id, timeout).await });
        }
        let mut report = DrainReport::default();
        while let Some(done) = tasks.join_next().await {
            let Ok(outcome) = done else { continue };
            report.found |= outcome.found;
            report.in_flight_at_start += outcome.in_flight_at_start;
            report.remaining += outcome.remaining;
            report.timed_out |= outcome.timed_out;
        }
        report.waited_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        Ok(report)
    }

    async fn state(&self) -> Result<DataPlaneState, DataPlaneError> {
        let inner = self.inner.lock().await;
        Ok(DataPlaneState {
            identity: self.identity.clone(),
            generation: inner.generation,
            endpoints: Self::report(&inner),
        })
    }

    async fn shutdown(&self, timeout: Duration) -> Result<(), DataPlaneError> {
        let proxies = {
            let mut inner = self.inner.lock().await;
            inner.closed = Some(Closed::ShutDown);
            std::mem::take(&mut inner.slots)
                .into_values()
                .filter_map(|s| s.proxy)
                .collect::<Vec<_>>()
        };
        let mut tasks = tokio::task::JoinSet::new();
        for p in proxies {
            tasks.spawn(p.shutdown(timeout));
        }
        while tasks.join_next().await.is_some() {}
        Ok(())
    }
}
