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
    /// Responses by status class (1xx..5xx) and how long they took.
    pub(crate) timing: Timing,
}

/// Upper bounds (seconds) of the request-latency buckets.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// HTTP responses by status class and their latency, plus what is in
/// flight: bumped once per request on the request path.
#[derive(Debug, Default)]
pub(crate) struct Timing {
    classes: [AtomicU64; 5],
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    over: AtomicU64,
    sum_us: AtomicU64,
    pub(crate) in_flight: AtomicU64,
}

impl Timing {
    /// Records one answered request: its status and the time from its
    /// arrival to its response head.
    pub(crate) fn record(&self, status: u16, took: std::time::Duration) {
        if let Some(c) = self
            .classes
            .get(usize::from(status / 100).saturating_sub(1))
        {
            bump(c);
        }
        let s = took.as_secs_f64();
        match LATENCY_BUCKETS.iter().position(|b| s <= *b) {
            Some(i) => bump(&self.buckets[i]),
            None => bump(&self.over),
        }
        self.sum_us.fetch_add(
            u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    pub(crate) fn snapshot(&self) -> (ResponseClasses, LatencyStats) {
        let c = |i: usize| read(&self.classes[i]);
        (
            ResponseClasses {
                informational: c(0),
                success: c(1),
                redirect: c(2),
                client_error: c(3),
                server_error: c(4),
            },
            LatencyStats {
                buckets: self.buckets.iter().map(read).collect(),
                over: read(&self.over),
                sum_us: read(&self.sum_us),
            },
        )
    }
}

/// HTTP responses by status class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ResponseClasses {
    /// 1xx.
    pub informational: u64,
    /// 2xx.
    pub success: u64,
    /// 3xx.
    pub redirect: u64,
    /// 4xx.
    pub client_error: u64,
    /// 5xx (the proxy's own 502/503 included).
    pub server_error: u64,
}

impl ResponseClasses {
    /// `("2xx", n)` per class.
    pub fn classes(&self) -> [(&'static str, u64); 5] {
        [
            ("1xx", self.informational),
            ("2xx", self.success),
            ("3xx", self.redirect),
            ("4xx", self.client_error),
            ("5xx", self.server_error),
        ]
    }
}

/// Request latency (arrival to response head) in [`LATENCY_BUCKETS`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct LatencyStats {
    /// Per bucket, the requests that took at most that long (not cumulative).
    pub buckets: Vec<u64>,
    /// Requests slower than the last bucket.
    pub over: u64,
    /// Their total duration in microseconds.
    pub sum_us: u64,
}

impl LatencyStats {
    /// Every request counted.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum::<u64>() + self.over
    }
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
    /// HTTP responses by status class (TCP: none).
    pub responses: ResponseClasses,
    /// HTTP request latency (TCP: none).
    pub latency: LatencyStats,
    /// HTTP requests in flight now.
    pub in_flight: u64,
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
    /// Microseconds requests (TCP: connections) spent in flight to it,
    /// summed over those that ended: busy time over an interval is the
    /// average number in flight (the autoscaler's `in_flight`), busy time
    /// per response the mean latency.
    pub busy_us: u64,
    /// Connect attempts to it that failed.
    pub connect_failures: u64,
    /// Requests whose connection to it failed before a response head.
    pub request_failures: u64,
    /// Idle keep-alive connections to it in the pool.
    pub idle_connections: u64,
}
