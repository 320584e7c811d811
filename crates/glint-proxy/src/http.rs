//! The HTTP/1.1 reverse proxy: one task per client connection (hyper's
//! server), and per request the attempt loop that implements the retry rules
//! of the crate documentation.

use crate::backends::{InFlight, Pick, Tried, TriedSet};
use crate::body::{self, Finish, Prepared, Replayable, RequestBody, ResponseBody};
use crate::endpoint::{Phase, Shared, TaskGuard};
use crate::pool::{self, Sender};
use crate::retry::{self, AttemptFailure};
use crate::stats::bump;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Serves one client connection until it closes or the endpoint stops.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    _guard: TaskGuard,
) {
    let mut phase = shared.phase.subscribe();
    let service_shared = Arc::clone(&shared);
    let service = service_fn(move |req| {
        let shared = Arc::clone(&service_shared);
        async move {
            let mut response = handle(&shared, peer, req).await;
            // Leaving (another process took the listener over) or stopping:
            // this client must reconnect, and `Connection: close` on a
            // response is the only race-free way to tell it so.
            if *shared.phase.borrow() != Phase::Running
                && response.status() != StatusCode::SWITCHING_PROTOCOLS
            {
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            Ok::<_, Infallible>(response)
        }
    });
    let conn = shared
        .server
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(conn);
    let mut graceful = false;
    loop {
        match *phase.borrow_and_update() {
            Phase::Stopped => return,
            Phase::Graceful if !graceful => {
                conn.as_mut().graceful_shutdown();
                graceful = true;
            }
            _ => {}
        }
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%peer, %error, "client connection ended with an error");
                }
                return;
            }
            changed = phase.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}

/// The parts of a client request that every attempt sends again.
struct Outgoing {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
}

impl Outgoing {
    fn request(&self, body: RequestBody) -> Request<RequestBody> {
        let mut req = Request::new(body);
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.uri.clone();
        *req.headers_mut() = self.headers.clone();
        req
    }
}

/// The request body as it stands between attempts.
enum Source {
    /// Buffered: every attempt gets a copy.
    Replay(Replayable),
    /// Streamed and not yet sent.
    Stream(RequestBody),
    /// Streamed and consumed by an attempt: no further attempt possible.
    Spent,
}

/// One request, counted by status class and timed to its response head.
async fn handle(
    shared: &Arc<Shared>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Response<ResponseBody> {
    let started = std::time::Instant::now();
    let counters = Arc::clone(&shared.counters);
    let _in_flight = InFlightGuard::enter(&counters);
    let response = forward(shared, peer, req).await;
    counters
        .timing
        .record(response.status().as_u16(), started.elapsed());
    response
}

/// Counts a request in flight until it is answered or abandoned.
struct InFlightGuard<'a>(&'a crate::stats::Counters);

impl<'a> InFlightGuard<'a> {
    fn enter(c: &'a crate::stats::Counters) -> InFlightGuard<'a> {
        c.timing
            .in_flight
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        InFlightGuard(c)
    }
}

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        self.0
            .timing
            .in_flight
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

async fn forward(
    shared: &Arc<Shared>,
    peer: SocketAddr,
    mut req: Request<Incoming>,
) -> Response<ResponseBody> {
    bump(&shared.counters.requests);
    if req.method() == Method::CONNECT {
        return local(
            shared,
            StatusCode::METHOD_NOT_ALLOWED,
            "does not proxy CONNECT",
        );
    }
    let upgrade = req.version() == Version::HTTP_11 && crate::headers::is_upgrade(req.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (parts, incoming) = req.into_parts();
    let idempotent = retry::is_idempotent(&parts.method);

    let mut headers = parts.headers;
    if !headers.contains_key(header::HOST) {
        let host = parts
            .uri
            .authority()
            .map(|a| a.as_str().to_owned())
            .unwrap_or_else(|| shared.local_addr.to_string());
        if let Ok(value) = HeaderValue::from_str(&host) {
            headers.insert(header::HOST, value);
        }
    }
    let via = if parts.version == Version::HTTP_10 {
        &shared.via_10
    } else {
        &shared.via_11
    };
    crate::headers::prepare_request(&mut headers, peer, via, upgrade);
    let uri = parts
        .uri
        .path_and_query()
        .map(|pq| Uri::from(pq.clone()))
        .unwrap_or_else(|| Uri::from_static("/"));
    let outgoing = Outgoing {
        method: parts.method,
        uri,
        headers,
    };

    let mut source = match body::prepare(incoming, shared.config.replay_body_limit).await {
        Ok(Prepared::Replayable(r)) => Source::Replay(r),
        Ok(Prepared::Streaming(s)) => Source::Stream(s),
        Err(error) => {
            tracing::debug!(%peer, %error, "cannot read the request body");
            bump(&shared.counters.bad_request);
            return local(
                shared,
                StatusCode::BAD_REQUEST,
                "could not read the request body",
            );
        }
    };

    let mut tried = TriedSet::default();
    let mut attempts = 0usize;
    let max_attempts = shared.config.max_attempts.max(1);
    let wait_deadline = Instant::now() + shared.config.wait_for_backend;
    // A request hyper handed back unsent, to be sent as is.
    let mut handed_back: Option<Request<RequestBody>> = None;
    // Whether the last failed attempt was a response timeout (the answer is
    // then 504, not 502).
    let mut last_timed_out = false;

    loop {
        if attempts >= max_attempts {
            return exhausted(shared, last_timed_out);
        }
        let (backend, fresh_only) = match shared.backends.pick(&tried) {
            Pick::One {
                backend,
                fresh_only,
            } => (backend, fresh_only),
            Pick::Nothing => {
                // Wait (briefly) for a backend to appear: a replacement for a
                // crashed instance, or the first set.
                if shared
                    .backends
                    .wait_for_candidate(&tried, wait_deadline)
                    .await
                {
                    continue;
                }
                if !tried.is_empty() {
                    return exhausted(shared, last_timed_out);
                }
                bump(&shared.counters.no_backend);
                return local(
                    shared,
                    StatusCode::SERVICE_UNAVAILABLE,
                    "has no healthy instance to serve this request",
                );
            }
        };
        let Some(in_flight) = backend.admit() else {
            // It left rotation between the choice and now: choose again.
            continue;
        };
        attempts += 1;
        if attempts > 1 {
            bump(&shared.counters.retries);
        }

        // A connection: pooled if allowed, else new.
        let pooled = if fresh_only || upgrade {
            None
        } else {
            backend.pool.checkout().await
        };
        let reused = pooled.is_some();
        let mut sender = match pooled {
            Some(sender) => sender,
            None => match pool::connect_http(backend.addr, shared.config.connect_timeout).await {
                Ok(sender) => sender,
                Err(error) => {
                    tracing::debug!(instance = %backend.instance, %error, "connect failed");
                    bump(&shared.counters.connect);
                    bump(&backend.connect_failures);
                    shared.backends.eject(&backend);
                    backend.pool.flush();
                    tried.mark(&backend, Tried::Excluded);
                    last_timed_out = false;
                    let replayable = !matches!(source, Source::Spent);
                    if !retry::may_retry(AttemptFailure::Connect, idempotent, replayable) {
                        return not_retried(shared, false);
                    }
                    continue;
                }
            },
        };

        // A streamed body is being sent while the head is awaited: the
        // response timeout starts when it has been sent completely.
        let mut body_sent = None;
        let mut request = match handed_back.take() {
            Some(request) => request,
            None => match std::mem::replace(&mut source, Source::Spent) {
                Source::Replay(r) => {
                    let request = outgoing.request(RequestBody::from(&r));
                    source = Source::Replay(r);
                    request
                }
                Source::Stream(body) => outgoing.request(body),
                // Unreachable: a spent stream is never retried (below).
                Source::Spent => return not_retried(shared, false),
            },
        };
        if let Some(sent) = request.body_mut().watch_end() {
            body_sent = Some(sent);
        }

        let response_timeout = shared.config.response_timeout;
        let head_deadline = async move {
            if let Some(sent) = body_sent {
                // Resolves when the body ended, or was dropped unsent.
                let _ = sent.await;
            }
            tokio::time::sleep(response_timeout).await;
        };
        let attempt = tokio::select! {
            result = sender.try_send_request(request) => Some(result),
            () = head_deadline => None,
        };
        let Some(result) = attempt else {
            // No response head in time: the instance is hung or overloaded.
            // Dropping the pending response makes hyper close the connection.
            tracing::debug!(
                instance = %backend.instance,
                timeout = ?response_timeout,
                "no response head in time"
            );
            bump(&shared.counters.timeouts);
            bump(&backend.request_failures);
            drop(sender);
            shared.backends.eject(&backend);
            tried.mark(&backend, Tried::Excluded);
            last_timed_out = true;
            let replayable = matches!(source, Source::Replay(_));
            if !retry::may_retry(AttemptFailure::Timeout, idempotent, replayable) {
                return not_retried(shared, true);
            }
            continue;
        };
        match result {
            Ok(response) => {
                return relay(shared, response, in_flight, sender, client_upgrade, upgrade);
            }
            Err(mut error) => {
                let failure = match error.take_message() {
                    Some(request) => {
                        handed_back = Some(request);
                        AttemptFailure::HandedBack
                    }
                    None => AttemptFailure::of_sent(error.error()),
                };
                tracing::debug!(
                    instance = %backend.instance,
                    reused,
                    ?failure,
                    error = %error.error(),
                    "attempt failed"
                );
                last_timed_out = false;
                if failure != AttemptFailure::HandedBack {
                    bump(&shared.counters.backend);
                    bump(&backend.request_failures);
                }
                if reused {
                    // One stale pooled connection: the others probably are too.
                    backend.pool.flush();
                    tried.mark(&backend, Tried::FreshOnly);
                } else {
                    if failure == AttemptFailure::BeforeResponse {
                        shared.backends.eject(&backend);
                    }
                    tried.mark(&backend, Tried::Excluded);
                }
                let replayable = matches!(source, Source::Replay(_));
                if !retry::may_retry(failure, idempotent, replayable) {
                    return not_retried(shared, false);
                }
            }
        }
    }
}

/// Relays a backend response (or completes an upgrade).
fn relay(
    shared: &Arc<Shared>,
    mut response: Response<Incoming>,
    in_flight: InFlight,
    sender: Sender,
    client_upgrade: Option<OnUpgrade>,
    upgrade: bool,
) -> Response<ResponseBody> {
    bump(&in_flight.backend().served);
    in_flight.backend().succeeded();
    let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS;
    if switching && let Some(client_upgrade) = client_upgrade {
        let backend_upgrade = hyper::upgrade::on(&mut response);
        let (mut parts, _) = response.into_parts();
        crate::headers::prepare_response(&mut parts.headers, &shared.via_11, true);
        tokio::spawn(tunnel(
            Arc::clone(shared),
            client_upgrade,
            backend_upgrade,
            in_flight,
            sender,
        ));
        return Response::from_parts(parts, ResponseBody::empty());
    }
    let (mut parts, incoming) = response.into_parts();
    crate::headers::prepare_response(&mut parts.headers, &shared.via_11, false);
    let finish = Finish {
        in_flight,
        // An upgrade request's connection is not reused, whatever the answer.
        sender: (!upgrade).then_some(sender),
        counters: Arc::clone(&shared.counters),
    };
    Response::from_parts(parts, ResponseBody::relayed(incoming, finish))
}

/// Joins an upgraded client connection to its upgraded backend connection.
async fn tunnel(
    shared: Arc<Shared>,
    client: OnUpgrade,
    backend: OnUpgrade,
    in_flight: InFlight,
    sender: Sender,
) {
    let _guard = shared.tasks.enter();
    let mut phase = shared.phase.subscribe();
    let instance = in_flight.backend().instance.clone();
    let pipe = async {
        let (client, backend) = match tokio::try_join!(client, backend) {
            Ok(pair) => pair,
            Err(error) => {
                tracing::debug!(%instance, %error, "upgrade failed");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut backend = TokioIo::new(backend);
        match tokio::io::copy_bidirectional(&mut client, &mut backend).await {
            Ok((up, down)) => tracing::debug!(%instance, up, down, "tunnel closed"),
            Err(error) => tracing::debug!(%instance, %error, "tunnel failed"),
        }
    };
    tokio::select! {
        _ = pipe => {}
        _ = Shared::stopped(&mut phase) => {}
    }
    drop(sender);
    drop(in_flight);
}

/// Every allowed attempt failed; `timed_out` when the last one got no
/// response head in time.
fn exhausted(shared: &Shared, timed_out: bool) -> Response<ResponseBody> {
    if timed_out {
        bump(&shared.counters.timed_out);
        return local(
            shared,
            StatusCode::GATEWAY_TIMEOUT,
            "got no response in time from any healthy instance",
        );
    }
    bump(&shared.counters.exhausted);
    local(
        shared,
        StatusCode::BAD_GATEWAY,
        "could not get a response from any healthy instance",
    )
}

/// The request was sent and may not be sent again; `timed_out` when its
/// attempt got no response head in time.
fn not_retried(shared: &Shared, timed_out: bool) -> Response<ResponseBody> {
    if timed_out {
        bump(&shared.counters.timed_out);
        return local(
            shared,
            StatusCode::GATEWAY_TIMEOUT,
            "got no response in time from the instance serving this request, which is not safe to retry",
        );
    }
    bump(&shared.counters.not_retried);
    local(
        shared,
        StatusCode::BAD_GATEWAY,
        "lost the connection to the instance serving this request, which is not safe to retry",
    )
}

/// A response written by the endpoint itself.
fn local(shared: &Shared, status: StatusCode, what: &str) -> Response<ResponseBody> {
    let text = format!("glint: endpoint `{}` {what}\n", shared.config.name);
    let mut response = Response::new(ResponseBody::local(text));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if status == StatusCode::SERVICE_UNAVAILABLE {
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}
