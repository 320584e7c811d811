//! [`EndpointProxy`]: the handle the conductor holds, and the endpoint's
//! lifecycle (accept loop, connection tracking, shutdown, leaving a listener
//! to another process).
//!
//! Lifecycle follows mini-redis: one `watch` channel announces the phase
//! (running → [leaving →] graceful → stopped) to the accept loop and to every
//! connection task; every connection task holds a [`TaskGuard`], and
//! shutdown waits for the guard count to reach zero.

use crate::backends::{Backend, BackendSettings, Backends};
use crate::config::EndpointConfig;
use crate::stats::{Counters, EndpointStats, bump, read};
use crate::{http, tcp};
use glint_model::{EndpointProtocol, InstanceId, Name};
use hyper::header::HeaderValue;
use hyper_util::rt::TokioTimer;
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// An endpoint that could not start.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// A listening socket handed over by another process cannot be used.
    #[error("endpoint `{endpoint}` cannot use the listening socket it was handed for {addr}")]
    Inherit {
        /// The endpoint.
        endpoint: Name,
        /// The address it was to listen on.
        addr: SocketAddr,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The listen address could not be bound.
    #[error("endpoint `{endpoint}` cannot listen on {addr}{hint}")]
    Bind {
        /// The endpoint.
        endpoint: Name,
        /// The address it was to listen on.
        addr: SocketAddr,
        /// Advice for the common causes (empty otherwise).
        hint: &'static str,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
}

impl ProxyError {
    fn bind(endpoint: &Name, addr: SocketAddr, source: std::io::Error) -> ProxyError {
        use std::io::ErrorKind;
        let hint = match source.kind() {
            ErrorKind::AddrInUse => " (another process or endpoint is using that address)",
            ErrorKind::PermissionDenied if addr.port() < 1024 => {
                " (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
            }
            ErrorKind::AddrNotAvailable => " (that address does not belong to this machine)",
            _ => "",
        };
        ProxyError::Bind {
            endpoint: endpoint.clone(),
            addr,
            hint,
            source,
        }
    }
}

/// What [`EndpointProxy::drain`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainOutcome {
    /// Whether the endpoint knew the instance (in rotation, or removed with
    /// requests still in flight). Draining an unknown instance is harmless.
    pub found: bool,
    /// Requests (TCP: connections) in flight to it when draining started.
    pub in_flight_at_start: usize,
    /// Requests still in flight when `drain` returned: 0 unless the timeout
    /// hit. They are not cancelled.
    pub remaining: usize,
    /// Whether the timeout expired with requests still in flight.
    pub timed_out: bool,
    /// How long `drain` waited.
    pub waited: Duration,
}

/// What [`EndpointProxy::shutdown`] (or [`EndpointProxy::leave`]) saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownOutcome {
    /// Client connections (and tunnels) still open at the timeout, which
    /// were then aborted.
    pub aborted: usize,
}

/// The phase of an endpoint's life, announced to every task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Accepting and serving.
    Running,
    /// Not accepting (another process serves the listening socket now);
    /// serving every client connection's next request with `Connection:
    /// close`, so that clients reconnect to the new owner without a race.
    Leaving,
    /// Not accepting; finishing what is in flight.
    Graceful,
    /// Everything stops now.
    Stopped,
}

/// Counts live connection tasks.
#[derive(Default)]
pub(crate) struct TaskCount {
    live: AtomicUsize,
    zero: Notify,
}

/// Held by a connection (or tunnel) task while it runs.
pub(crate) struct TaskGuard(Arc<TaskCount>);

impl TaskCount {
    pub(crate) fn enter(self: &Arc<Self>) -> TaskGuard {
        self.live.fetch_add(1, Ordering::SeqCst);
        TaskGuard(Arc::clone(self))
    }

    fn live(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }

    /// Waits until no task is live, or `deadline`; true if none is.
    async fn wait_zero(&self, deadline: Instant) -> bool {
        loop {
            let notified = self.zero.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.live() == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.live() == 0;
            }
        }
    }
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        if self.0.live.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.zero.notify_waiters();
        }
    }
}

/// Everything the endpoint's tasks share.
pub(crate) struct Shared {
    pub(crate) config: EndpointConfig,
    pub(crate) local_addr: SocketAddr,
    /// The listening socket while the accept loop runs (shared with it so
    /// that it can be duplicated for another process); the loop clears it
    /// when it stops, which closes the socket unless a duplicate lives on.
    pub(crate) listener: Mutex<Option<Arc<TcpListener>>>,
    pub(crate) backends: Backends,
    pub(crate) counters: Arc<Counters>,
    pub(crate) phase: watch::Sender<Phase>,
    pub(crate) tasks: Arc<TaskCount>,
    pub(crate) server: hyper::server::conn::http1::Builder,
    /// `Via` for HTTP/1.1 and HTTP/1.0 messages.
    pub(crate) via_11: HeaderValue,
    pub(crate) via_10: HeaderValue,
}

impl Shared {
    /// Resolves when the endpoint is stopped (abruptly).
    pub(crate) async fn stopped(phase: &mut watch::Receiver<Phase>) {
        // An error means the sender is gone, which only happens when the
        // endpoint itself is gone: stop too.
        let _ = phase.wait_for(|p| *p == Phase::Stopped).await;
    }
}

struct Handle {
    shared: Arc<Shared>,
    background: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.phase.send_replace(Phase::Stopped);
    }
}

/// A running endpoint. Cheap to clone; the endpoint stops when
/// [`EndpointProxy::shutdown`] is called or the last clone is dropped.
///
/// Must be created inside a Tokio runtime.
#[derive(Clone)]
pub struct EndpointProxy {
    handle: Arc<Handle>,
}

impl std::fmt::Debug for EndpointProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointProxy")
            .field("name", &self.handle.shared.config.name)
            .field("local_addr", &self.handle.shared.local_addr)
            .field("protocol", &self.handle.shared.config.protocol)
            .finish()
    }
}

impl EndpointProxy {
    /// Binds the listen address and starts serving. Until the first
    /// [`EndpointProxy::set_backends`], requests wait for a backend and then
    /// get `503`.
    pub async fn bind(config: EndpointConfig) -> Result<EndpointProxy, ProxyError> {
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|e| ProxyError::bind(&config.name, config.listen, e))?;
        let local_addr = listener
            .local_addr()
            .map_err(|e| ProxyError::bind(&config.name, config.listen, e))?;
        Ok(Self::start(config, listener, local_addr))
    }

    /// Serves on a listening socket that already exists: one handed over by
    /// another process (see [`EndpointProxy::dup_listener`]), or kept from an
    /// endpoint whose configuration changed but not its address. Connections
    /// already queued on the socket are served; none is lost.
    pub fn from_listener(
        config: EndpointConfig,
        listener: std::net::TcpListener,
    ) -> Result<EndpointProxy, ProxyError> {
        let inherit = |source| ProxyError::Inherit {
            endpoint: config.name.clone(),
            addr: config.listen,
            source,
        };
        listener.set_nonblocking(true).map_err(inherit)?;
        let local_addr = listener.local_addr().map_err(inherit)?;
        let listener = TcpListener::from_std(listener).map_err(inherit)?;
        Ok(Self::start(config, listener, local_addr))
    }

    fn start(
        config: EndpointConfig,
        listener: TcpListener,
        local_addr: SocketAddr,
    ) -> EndpointProxy {
        let mut server = hyper::server::conn::http1::Builder::new();
        server
            .timer(TokioTimer::new())
            .header_read_timeout(config.header_read_timeout)
            .keep_alive(true);
        let via = |version: &str| {
            HeaderValue::from_str(&format!("{version} {} (glint)", config.name))
                .unwrap_or_else(|_| HeaderValue::from_static("1.1 glint"))
        };
        let settings = BackendSettings {
            pool_max_idle: config.pool_max_idle_per_backend,
            pool_idle_timeout: config.pool_idle_timeout,
            eject_for: config.eject_for,
            eject_max: config.eject_max,
        };
        let listener = Arc::new(listener);
        let shared = Arc::new(Shared {
            via_11: via("1.1"),
            via_10: via("1.0"),
            local_addr,
            listener: Mutex::new(Some(Arc::clone(&listener))),
            backends: Backends::new(settings),
            counters: Arc::new(Counters::default()),
            phase: watch::Sender::new(Phase::Running),
            tasks: Arc::new(TaskCount::default()),
            server,
            config,
        });
        tracing::info!(
            endpoint = %shared.config.name,
            addr = %local_addr,
            protocol = ?shared.config.protocol,
            "endpoint listening"
        );
        let accept = tokio::spawn(accept_loop(Arc::clone(&shared), listener));
        let reaper = tokio::spawn(reap_loop(Arc::clone(&shared)));
        EndpointProxy {
            handle: Arc::new(Handle {
                shared,
                background: Mutex::new(vec![accept, reaper]),
            }),
        }
    }

    fn shared(&self) -> &Shared {
        &self.handle.shared
    }

    /// The address the endpoint listens on (with the real port when the
    /// configuration said port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.shared().local_addr
    }

    /// The endpoint's name.
    pub fn name(&self) -> &Name {
        &self.shared().config.name
    }

    /// The configuration it was bound with (a changed `listen` or
    /// `protocol` needs a new endpoint).
    pub fn config(&self) -> &EndpointConfig {
        &self.shared().config
    }

    /// Replaces the whole set of healthy backends. Returns `false`, and
    /// changes nothing, if `generation` is lower than the last applied one.
    ///
    /// A backend missing from the new set leaves rotation at once; requests
    /// in flight to it finish undisturbed. A drained instance never comes
    /// back, even if listed.
    pub fn set_backends(&self, generation: u64, backends: Vec<Backend>) -> bool {
        self.shared().backends.set(generation, backends)
    }

    /// Takes `instance` out of rotation for good, closes its idle keep-alive
    /// connections, and waits until nothing is in flight to it or `timeout`
    /// expires. Call it before terminating the instance; see the crate doc.
    pub async fn drain(&self, instance: &InstanceId, timeout: Duration) -> DrainOutcome {
        let started = Instant::now();
        let result = self.shared().backends.drain(instance, timeout).await;
        let outcome = DrainOutcome {
            found: result.found,
            in_flight_at_start: result.in_flight_at_start,
            remaining: result.remaining,
            timed_out: result.remaining > 0,
            waited: started.elapsed(),
        };
        tracing::info!(
            endpoint = %self.shared().config.name,
            %instance,
            in_flight_at_start = outcome.in_flight_at_start,
            remaining = outcome.remaining,
            waited = ?outcome.waited,
            "instance drained"
        );
        outcome
    }

    /// A duplicate of the listening socket (close-on-exec), for another
    /// process to serve it too ([`EndpointProxy::from_listener`]); `None` once
    /// the endpoint has stopped accepting. The socket stays open as long as
    /// any duplicate does, so handing it over loses no queued connection
    /// (unlike a second socket bound with `SO_REUSEPORT`, whose queue dies
    /// with it).
    pub fn dup_listener(&self) -> Option<std::io::Result<OwnedFd>> {
        let slot = self
            .shared()
            .listener
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        slot.as_ref().map(|l| l.as_fd().try_clone_to_owned())
    }

    /// Ends this endpoint after another process took over its listening
    /// socket: stops accepting at once (the socket stays open for the other
    /// process), answers the next request of every client connection with
    /// `Connection: close` so that the client reconnects — to the new owner —
    /// without the race of a keep-alive connection closed while idle, waits
    /// up to `linger` for connections to end that way, then shuts down as
    /// [`EndpointProxy::shutdown`] does with `timeout`.
    pub async fn leave(self, linger: Duration, timeout: Duration) -> ShutdownOutcome {
        let shared = Arc::clone(&self.handle.shared);
        shared.phase.send_if_modified(|p| {
            let running = *p == Phase::Running;
            if running {
                *p = Phase::Leaving;
            }
            running
        });
        self.stop_background().await;
        shared.tasks.wait_zero(Instant::now() + linger).await;
        self.shutdown(timeout).await
    }

    async fn stop_background(&self) {
        let background = std::mem::take(
            &mut *self
                .handle
                .background
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        for task in background {
            // The accept loop drops the listener as soon as it sees the phase.
            let _ = task.await;
        }
    }

    /// A snapshot of the endpoint's counters.
    pub fn stats(&self) -> EndpointStats {
        let shared = self.shared();
        let c = &shared.counters;
        let (responses, latency) = c.timing.snapshot();
        EndpointStats {
            endpoint: shared.config.name.clone(),
            protocol: shared.config.protocol,
            local_addr: shared.local_addr,
            generation: shared.backends.generation(),
            connections: read(&c.connections),
            requests: read(&c.requests),
            retries: read(&c.retries),
            failures: c.failures(),
            backends: shared.backends.stats(),
            responses,
            latency,
            in_flight: read(&c.timing.in_flight),
        }
    }

    /// Stops accepting at once, lets in-flight requests finish (HTTP
    /// keep-alive connections close after their current request), waits up
    /// to `timeout` for every connection to end, then aborts the rest.
    pub async fn shutdown(self, timeout: Duration) -> ShutdownOutcome {
        let deadline = Instant::now() + timeout;
        let shared = Arc::clone(&self.handle.shared);
        shared.phase.send_if_modified(|p| {
            let before = matches!(*p, Phase::Running | Phase::Leaving);
            if before {
                *p = Phase::Graceful;
            }
            before
        });
        self.stop_background().await;
        let aborted = if shared.tasks.wait_zero(deadline).await {
            0
        } else {
            shared.tasks.live()
        };
        shared.phase.send_replace(Phase::Stopped);
        // Stopped tasks return at their next poll; wait briefly for them.
        let _ = shared
            .tasks
            .wait_zero(Instant::now() + Duration::from_secs(1))
            .await;
        shared.backends.close_pools();
        tracing::info!(endpoint = %shared.config.name, aborted, "endpoint shut down");
        ShutdownOutcome { aborted }
    }
}

async fn accept_loop(shared: Arc<Shared>, listener: Arc<TcpListener>) {
    let mut phase = shared.phase.subscribe();
    loop {
        if *phase.borrow_and_update() != Phase::Running {
            break;
        }
        tokio::select! {
            changed = phase.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    bump(&shared.counters.connections);
                    let guard = shared.tasks.enter();
                    let task_shared = Arc::clone(&shared);
                    match shared.config.protocol {
                        EndpointProtocol::Http => {
                            tokio::spawn(http::serve(task_shared, stream, peer, guard));
                        }
                        EndpointProtocol::Tcp => {
                            tokio::spawn(tcp::forward(task_shared, stream, peer, guard));
                        }
                    }
                }
                Err(error) => {
                    // Per-connection errors (ECONNABORTED) and resource
                    // exhaustion (EMFILE): back off briefly, keep serving.
                    tracing::warn!(endpoint = %shared.config.name, %error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }
    shared
        .listener
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    drop(listener);
    tracing::debug!(endpoint = %shared.config.name, "listener closed");
}

async fn reap_loop(shared: Arc<Shared>) {
    let mut phase = shared.phase.subscribe();
    let period = (shared.config.pool_idle_timeout / 2).max(Duration::from_millis(100));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // Also ends when leaving: `leave` awaits it, and pooled backend
        // connections are few and short-lived by then.
        if *phase.borrow_and_update() != Phase::Running {
            break;
        }
        tokio::select! {
            changed = phase.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            _ = tick.tick() => shared.backends.reap(),
        }
    }
}
