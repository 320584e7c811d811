//! Counters (plain atomics, bumped on the request path) and the snapshot
//! types that the conductor and the CLI show.

use glint_model::{EndpointProtocol, InstanceId, Name};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

/// Endpoint-wide counters. Relaxed atomics: they are statistics, not
/// synchronisation.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) requests: AtomicU64,
    pub(crate) retries: AtomicU64,
    pub(crate) connections: AtomicU64,
    pub(crate) no_backend: AtomicU64,
    pub(crate) exhausted: AtomicU64,
    pub(crate) not_retried: AtomicU64,
    pub(crate) connect: AtomicU64,
    pub(crate) backend: AtomicU64,
    pub(crate) response_aborted: AtomicU64,
    pub(crate) bad_request: AtomicU64,
    pub(crate) timed_out: AtomicU64,
    pub(crate) timeouts: AtomicU64,
}

/// Adds one to a counter.
pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Reads a counter.
pub(crate) fn read(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

impl Counters {
    pub(crate) fn failures(&self) -> FailureStats {
        FailureStats {
            no_backend: read(&self.no_backend),
            exhausted: read(&self.exhausted),
            not_retried: read(&self.not_retried),
            connect: read(&self.connect),
            backend: read(&self.backend),
            response_aborted: read(&self.response_aborted),
            bad_request: read(&self.bad_request),
            timed_out: read(&self.timed_out),
            timeouts: read(&self.timeouts),
        }
    }
}

/// A snapshot of an endpoint's counters, from [`crate::EndpointProxy::stats`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointStats {
    /// The endpoint's name.
    pub endpoint: Name,
    /// HTTP or TCP.
    pub protocol: EndpointProtocol,
    /// The address it listens on.
    pub local_addr: SocketAddr,
    /// The generation of the backend set in force (`None` before the first).
    pub generation: Option<u64>,
    /// Client connections accepted.
    pub connections: u64,
    /// HTTP requests received (TCP mode: connections to forward).
    pub requests: u64,
    /// Attempts beyond the first one of a request or connection.
    pub retries: u64,
    /// Failures, by kind.
    pub failures: FailureStats,
    /// Every backend in rotation, plus those out of rotation that still have
    /// something in flight, in the order of the applied set.
    pub backends: Vec<BackendStats>,
}

/// Failures by kind. `no_backend`, `exhausted`, `not_retried`, `bad_request`
/// and `timed_out` are client-visible outcomes (summed by
/// [`FailureStats::answered`]); `connect`, `backend` and `timeouts` count
/// failed *attempts*, most of which were retried invisibly. Kinds added by
/// newer builds read as zero from older ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FailureStats {
    /// Answered `503`: no backend in rotation (TCP: connection closed).
    pub no_backend: u64,
    /// Answered `502`: every allowed attempt failed (TCP: connection closed).
    pub exhausted: u64,
    /// Answered `502` without retry: the request had been sent and was not
    /// safe to send again (non-idempotent method or streamed body), or the
    /// backend sent a malformed response.
    pub not_retried: u64,
    /// Answered `400`: the client's request body could not be read.
    pub bad_request: u64,
    /// Attempts that could not connect to a backend.
    pub connect: u64,
    /// Attempts whose backend connection failed before a response head.
    pub backend: u64,
    /// Responses whose body failed mid-stream (the client connection was
    /// aborted; nothing else can be done once the head is relayed).
    pub response_aborted: u64,
    /// Answered `504`: the last attempt got no response head within the
    /// response timeout, and the request could not be sent elsewhere.
    #[serde(default)]
    pub timed_out: u64,
    /// Attempts that got no response head within the response timeout.
    #[serde(default)]
    pub timeouts: u64,
}

impl FailureStats {
    /// Requests the endpoint itself answered with an error (503, 502, 504,
    /// 400): what a client saw fail.
    pub fn answered(&self) -> u64 {
        self.no_backend + self.exhausted + self.not_retried + self.bad_request + self.timed_out
    }
}

/// Where a backend stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendStatus {
    /// In rotation.
    Active,
    /// In rotation but recently failed to connect; chosen only when nothing
    /// else is left.
    Ejected,
    /// Being drained (or drained): out of rotation for good.
    Draining,
    /// No longer in the backend set; finishing what it had in flight.
    Removed,
}

/// One backend's counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendStats {
    /// The instance.
    pub instance: InstanceId,
    /// Its address.
    pub addr: SocketAddr,
    /// Where it stands.
    pub status: BackendStatus,
    /// Requests (TCP: connections) in flight to it now.
    pub in_flight: u64,
    /// Responses relayed from it (TCP: connections forwarded to it).
    pub served: u64,
    /// Connect attempts to it that failed.
    pub connect_failures: u64,
    /// Requests whose connection to it failed before a response head.
    pub request_failures: u64,
    /// Idle keep-alive connections to it in the pool.
    pub idle_connections: u64,
}
