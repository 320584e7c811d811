//! Glint's built-in endpoint: an HTTP/1.1 reverse proxy and a TCP forwarder
//! that routes a long-lived listen address to the healthy instances of one
//! service, and follows them as they are replaced.
//!
//! Replacement is Glint's only way to change anything, so an endpoint must make
//! it invisible to clients: **no dropped requests** while instances crash, are
//! replaced by a rollout, or are retired by `max_age`. The conductor needs no
//! `preStop`-style sleep: it removes an instance from rotation and awaits
//! [`EndpointProxy::drain`] *before* it sends SIGTERM.
//!
//! # Using it
//!
//! ```no_run
//! # async fn demo(web: glint_model::Name, a: glint_model::InstanceId, addr: std::net::SocketAddr)
//! # -> Result<(), glint_proxy::ProxyError> {
//! use glint_proxy::{Backend, EndpointConfig, EndpointProxy};
//! use glint_model::EndpointProtocol;
//! use std::time::Duration;
//!
//! let config = EndpointConfig::new(web, "127.0.0.1:8080".parse().unwrap(), EndpointProtocol::Http);
//! let proxy = EndpointProxy::bind(config).await?;           // bind errors surface here
//! proxy.set_backends(1, vec![Backend { instance: a.clone(), addr }]); // generation 1
//! // ... a rollout: hand over the new set (generation 2) without `a`, then:
//! let outcome = proxy.drain(&a, Duration::from_secs(30)).await; // now SIGTERM `a`
//! println!("{} requests were still in flight", outcome.remaining);
//! proxy.shutdown(Duration::from_secs(10)).await;
//! # Ok(()) }
//! ```
//!
//! # Backend sets and generations
//!
//! [`EndpointProxy::set_backends`] hands over the *whole* set of healthy
//! backends with a generation number. A generation lower than the last applied
//! one is stale and ignored (`false` is returned); an equal one is applied
//! again (idempotent re-send by a level-triggered reconciler). An instance that
//! is missing from a new set is out of rotation at once: no new request or
//! connection goes to it, its idle pooled connections are closed, and the
//! connections still carrying a request are closed when that request ends.
//! Requests already in flight to it are **not** interrupted.
//!
//! # Load balancing
//!
//! *Least in flight, ties broken round-robin*: every choice scans the
//! (small) rotation from a rotating start index and takes the backend with the
//! fewest requests (HTTP) or connections (TCP) in flight. Idle, it is exact
//! round-robin; loaded, a slow instance receives less. Backends can be
//! *ejected* passively: a connect failure (refused, timed out), a failure on a
//! fresh connection, or a response timeout keeps the backend out of choice
//! for [`EndpointConfig::eject_for`], unless nothing else is left to try.
//! Each further ejection without a success in between doubles that span, up
//! to [`EndpointConfig::eject_max`]; a relayed response head (TCP: a
//! connection made) resets it. The conductor's health checks stay the
//! authority: ejection is a cushion between a crash and the next
//! [`EndpointProxy::set_backends`] — and, while no conductor runs (a restart,
//! an upgrade), what keeps a dead instance of the last set from being tried
//! by more than one request per `eject_max`.
//!
//! # Retry rules (HTTP)
//!
//! A request makes at most [`EndpointConfig::max_attempts`] attempts. Each
//! attempt goes to a backend in rotation that has not yet been tried, preferring
//! non-ejected ones. One exception: a backend whose *reused* (pooled keep-alive)
//! connection failed may be tried once more on a *fresh* connection when no
//! untried backend is left; this is what makes a single restarted instance
//! transparent. An attempt fails in one of four ways:
//!
//! 1. **Connect failure** (refused, unreachable, timeout): the request was
//!    certainly not sent. Retried, whatever the method. The backend is ejected.
//! 2. **Handed back**: hyper's `SendRequest::try_send_request` returned the
//!    request because the connection closed before a byte of it was written
//!    (a stale pooled connection). Certainly not sent; retried whatever the
//!    method, even with a streamed body (the body was not touched).
//! 3. **Failed after sending started, before a complete response head** (reset,
//!    EOF, stale keep-alive connection that accepted the bytes): retried only if
//!    the method is idempotent — GET, HEAD, OPTIONS, TRACE, PUT, DELETE (RFC 9110,
//!    nginx `proxy_next_upstream error`) — **and** the request body was buffered
//!    (see below). A malformed response head is not retried (the backend did
//!    answer). POST and PATCH are never retried once sent.
//! 4. **No response head in time**: the request was sent and no complete
//!    response head arrived within [`EndpointConfig::response_timeout`]
//!    (10 s by default), counted from the moment the request was handed to
//!    the connection — for a streamed body, from the moment its last byte
//!    was. The backend connection is closed and the backend ejected (a hung
//!    instance is not tried again by the following requests), and the
//!    request is retried under the same condition as 3: idempotent method
//!    and buffered body. Otherwise it is answered `504 Gateway Timeout`. The
//!    timeout bounds the head only: a response body may stream for as long
//!    as it needs, and TCP mode has no such timeout.
//!
//! Once a response head has arrived it is relayed, whatever its status (a 500
//! from the application is the application's answer, not a proxy failure), and
//! its body is streamed, never buffered; a failure while streaming the body
//! aborts the client connection (counted as `response_aborted`).
//!
//! Request bodies up to [`EndpointConfig::replay_body_limit`] (1 MiB by
//! default; with or without `Content-Length`) are read fully before the first
//! attempt so that they can be replayed; larger ones are streamed to the first
//! backend and cannot be retried after sending started.
//!
//! When no backend that may still be tried is in rotation (none at all, or
//! all already tried), the request waits for one to appear, until
//! [`EndpointConfig::wait_for_backend`] after its arrival (this smooths the
//! moment a crash empties a one-instance service: the request that found the
//! dead instance is served by its replacement). If none appears: `503 Service
//! Unavailable` with a plain-text body naming the endpoint when no attempt was
//! made, `502 Bad Gateway` when attempts were made and failed (`504 Gateway
//! Timeout` when the last one timed out). A request that used up
//! [`EndpointConfig::max_attempts`] gets `502` (or `504`) at once.
//!
//! # Headers
//!
//! Hop-by-hop headers (`Connection` and the headers it names, `Keep-Alive`,
//! `Proxy-Connection`, `Proxy-Authenticate`, `Proxy-Authorization`, `TE`,
//! `Trailer`, `Transfer-Encoding`, `Upgrade` unless upgrading) are removed in
//! both directions; `Expect` is answered by the endpoint and not forwarded.
//! Requests get `X-Forwarded-For` (client address appended to any earlier
//! list), `X-Forwarded-Proto: http` and `X-Forwarded-Host` (set to what the
//! endpoint saw, overriding client-supplied values: the endpoint is the edge)
//! and a `Via: 1.1 <endpoint> (glint)` entry, which responses get too.
//! Requests go to backends as HTTP/1.1 in origin form with the client's `Host`.
//!
//! # Draining
//!
//! [`EndpointProxy::drain`]`(instance, timeout)` is the step between "new
//! instances are healthy" and "SIGTERM the old one":
//!
//! 1. the instance leaves rotation at once and for good (a drained instance id
//!    is remembered and ignored if a later backend set still lists it; ids are
//!    never reused), so no new request or TCP connection goes to it;
//! 2. its idle keep-alive connections are closed; connections carrying a
//!    request are closed when that request's response has been relayed;
//! 3. `drain` returns when the instance has nothing in flight — an HTTP request
//!    counts until its response body has been fully relayed (or the client went
//!    away); a TCP connection or an upgraded (WebSocket) connection counts until
//!    it closes — or when `timeout` expires, whichever comes first.
//!
//! The [`DrainOutcome`] says how many were in flight when draining started, how
//! many remained, and whether the timeout hit. Draining never cancels anything:
//! what remains at the timeout is ended by the SIGTERM that follows. Draining is
//! idempotent (draining twice, or draining an instance the endpoint does not
//! know, is harmless). The conductor may hand the new set before or after
//! calling `drain`; both orders are correct.
//!
//! Client connections to the endpoint are independent of backend connections:
//! backend churn never closes a client's keep-alive connection.
//!
//! # TCP mode
//!
//! With [`glint_model::EndpointProtocol::Tcp`] each accepted connection is
//! forwarded to one backend (same choice rule and connect-failure retries as
//! HTTP) with `tokio::io::copy_bidirectional`. Backend changes apply to new
//! connections; established ones stay on their backend until they close.
//!
//! # Upgrades
//!
//! HTTP/1.1 `Upgrade` requests (WebSocket and others) are forwarded on a fresh
//! backend connection; on `101 Switching Protocols` both sides are joined into a
//! byte tunnel, counted in flight (and so awaited by `drain`) until it closes.
//! `CONNECT` is refused with `405`.
//!
//! # Shutdown
//!
//! [`EndpointProxy::shutdown`] stops accepting at once (the listener is
//! closed), lets every HTTP connection finish its current request and closes
//! idle ones, waits up to its timeout for all connections (HTTP, TCP, tunnels)
//! to end, then aborts the rest. Dropping the last [`EndpointProxy`] handle
//! stops the endpoint abruptly.
//!
//! # Handing the listener to another process
//!
//! An endpoint can be moved to another process (a newer build of the data
//! plane) without refusing or losing a connection:
//!
//! 1. [`EndpointProxy::dup_listener`] duplicates the listening socket; the
//!    other process receives it (`SCM_RIGHTS`) and serves it with
//!    [`EndpointProxy::from_listener`]. It is the *same* socket — both
//!    processes accept from one queue — so nothing queued is lost, as it
//!    would be with a second socket bound with `SO_REUSEPORT`;
//! 2. [`EndpointProxy::leave`] then stops this process accepting (the
//!    socket stays open in the other), answers the next request on every
//!    client connection with `Connection: close` — the only race-free way to
//!    move a keep-alive client, whose request could otherwise cross the close
//!    of an idle connection — lets requests in flight finish, and shuts down.
//!
//! The same socket also survives a configuration change that keeps the
//! address and protocol: a new [`EndpointProxy`] is started on a duplicate
//! and the old one leaves.
//!
//! Layout:
//! - `config`: [`EndpointConfig`] and its defaults (serialisable: it crosses
//!   the data plane's socket);
//! - `endpoint`: [`EndpointProxy`], its lifecycle and accept loop;
//! - `backends`: the backend table, generations, choice, draining, in-flight
//!   accounting;
//! - `pool`: per-backend keep-alive connection pools;
//! - `http`: the reverse proxy (request handling and the retry loop);
//! - `body`: replayable request bodies and tracked response bodies;
//! - `headers`: hop-by-hop stripping and forwarding headers;
//! - `retry`: the retry rules above, as pure functions;
//! - `tcp`: connection-level forwarding;
//! - `stats`: counters and their snapshot types.

mod backends;
mod body;
mod config;
mod endpoint;
mod headers;
mod http;
mod pool;
mod retry;
mod stats;
mod tcp;

pub use backends::Backend;
pub use config::EndpointConfig;
pub use endpoint::{DrainOutcome, EndpointProxy, ProxyError, ShutdownOutcome};
pub use stats::{
    BackendStats, BackendStatus, EndpointStats, FailureStats, LATENCY_BUCKETS, LatencyStats,
    ResponseClasses,
};
