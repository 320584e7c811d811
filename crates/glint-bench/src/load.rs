//! The load generator: `concurrency` workers, each with its own HTTP/1.1
//! connection (hyper 1's low-level client), send `GET` requests in a loop
//! until told to stop, and record every one of them.
//!
//! What counts as what:
//! - **ok**: a 2xx response whose body was read to the end;
//! - **failed**: any other status, a connection that could not be made, a
//!   connection that failed after the request was sent, a body cut short, or
//!   no complete answer within the timeout (connect included).
//!
//! One case is not a failure, exactly as in any pooled HTTP client (hyper's,
//! curl's): a kept-alive connection that turns out to be closed *before a byte
//! of the request was written* hands the request back, and the worker sends it
//! again on a new connection. The server never saw it. Such requests are
//! counted in [`Report::resent_unsent`] so that nothing is hidden.
//!
//! A request belongs to the phase that was current when it was *sent*; stopping
//! lets the requests in flight finish (up to the timeout) so that the end of a
//! run does not count as failures.

use crate::report::{FailureKind, Outcome, Recorder, Report, RunInfo};
use bytes::Bytes;
use http::{Request, Uri, header};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

/// The header the demo app (and any Glint-aware app) names itself in.
pub const INSTANCE_HEADER: &str = "x-glint-instance";

/// Why a load run cannot start.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The URL does not parse.
    #[error("invalid url `{url}`")]
    Url {
        /// The URL given.
        url: String,
        /// Why.
        #[source]
        source: http::uri::InvalidUri,
    },
    /// The URL is not a plain `http://host[:port]/path` URL.
    #[error("unsupported url `{url}`: {why}")]
    Unsupported {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// Zero workers were asked for.
    #[error("concurrency must be at least 1")]
    Concurrency,
    /// A rate that is not a positive number.
    #[error("rate must be a positive number of requests per second, not {0}")]
    Rate(f64),
}

/// Where requests go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The URL as given.
    pub url: String,
    /// Host to connect to.
    pub host: String,
    /// Port to connect to.
    pub port: u16,
    /// `Host` header value.
    pub authority: String,
    /// Path and query sent in the request line.
    pub path: String,
}

impl Target {
    /// Parses an `http://host[:port][/path][?query]` URL.
    pub fn parse(url: &str) -> Result<Target, LoadError> {
        let unsupported = |why| LoadError::Unsupported {
            url: url.to_owned(),
            why,
        };
        let uri: Uri = url.parse().map_err(|source| LoadError::Url {
            url: url.to_owned(),
            source,
        })?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(_) => return Err(unsupported("only http:// is supported")),
            None => return Err(unsupported("the url needs a scheme (http://)")),
        }
        let authority = uri
            .authority()
            .ok_or_else(|| unsupported("the url needs a host"))?;
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        Ok(Target {
            url: url.to_owned(),
            host: host.to_owned(),
            port: authority.port_u16().unwrap_or(80),
            authority: authority.as_str().to_owned(),
            path: uri
                .path_and_query()
                .map(|p| p.as_str().to_owned())
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| "/".into()),
        })
    }
}

/// How to generate load.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where requests go.
    pub target: Target,
    /// Workers, each with at most one request in flight.
    pub concurrency: usize,
    /// Requests per second, all workers together; `None` sends as fast as
    /// responses come back.
    pub rate: Option<f64>,
    /// Keep connections open between requests (otherwise every request asks
    /// for `connection: close` and opens a new one).
    pub keepalive: bool,
    /// Longest time a request may take, connect included.
    pub timeout: Duration,
    /// At most this many failures are listed individually in the report.
    pub failure_log_limit: usize,
}

impl Config {
    /// A configuration with the defaults: keep-alive, no rate limit, 5 s timeout,
    /// a failure log of 10 000 entries.
    pub fn new(target: Target, concurrency: usize) -> Config {
        Config {
            target,
            concurrency,
            rate: None,
            keepalive: true,
            timeout: Duration::from_secs(5),
            failure_log_limit: 10_000,
        }
    }
}

/// What steers a run from outside, and what it shows while running.
#[derive(Debug, Clone)]
pub struct Control {
    /// The current phase; a request is counted in the phase current when it is sent.
    pub phase: watch::Receiver<Arc<str>>,
    /// Becomes `true` to stop (requests in flight finish first).
    pub stop: watch::Receiver<bool>,
    /// Live counters, updated as requests end.
    pub progress: Arc<Progress>,
}

impl Control {
    /// A control with fresh progress counters.
    pub fn new(phase: watch::Receiver<Arc<str>>, stop: watch::Receiver<bool>) -> Control {
        Control {
            phase,
            stop,
            progress: Arc::default(),
        }
    }
}

/// Requests ended so far, for live display (the report has the real figures).
#[derive(Debug, Default)]
pub struct Progress {
    /// Successful requests.
    pub ok: AtomicU64,
    /// Failed requests.
    pub failed: AtomicU64,
}

/// Runs until `control.stop` becomes `true` (or its sender is dropped), then
/// waits for the requests in flight and reports.
pub async fn run(config: Config, control: Control) -> Result<Report, LoadError> {
    if config.concurrency == 0 {
        return Err(LoadError::Concurrency);
    }
    if let Some(r) = config.rate
        && !(r.is_finite() && r > 0.0)
    {
        return Err(LoadError::Rate(r));
    }
    let start = Instant::now();
    let epoch_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let shared = Arc::new(Shared {
        config: config.clone(),
        start,
        epoch_ms,
        next_slot: AtomicU64::new(0),
        resent: AtomicU64::new(0),
    });

    // The phase timeline, recorded as the phase changes.
    let mut phase_rx = control.phase.clone();
    let initial = phase_rx.borrow_and_update().clone();
    let timeline_task = {
        let mut stop = control.stop.clone();
        tokio::spawn(async move {
            let mut timeline = vec![(Duration::ZERO, initial)];
            loop {
                tokio::select! {
                    changed = phase_rx.changed() => {
                        if changed.is_err() {
                            break;
                        }
                        let name = phase_rx.borrow_and_update().clone();
                        if timeline.last().is_none_or(|(_, last)| *last != name) {
                            timeline.push((start.elapsed(), name));
                        }
                    }
                    _ = stopped(&mut stop) => break,
                }
            }
            timeline
        })
    };

    let workers: Vec<_> = (0..config.concurrency)
        .map(|_| tokio::spawn(worker(shared.clone(), control.clone())))
        .collect();
    let mut merged = Recorder::new(config.failure_log_limit);
    for w in workers {
        // A worker that panicked loses its counts; the others still report.
        if let Ok(rec) = w.await {
            merged.merge(&rec);
        }
    }
    let duration = start.elapsed();
    let timeline = timeline_task.await.unwrap_or_default();
    let run = RunInfo {
        url: config.target.url.clone(),
        concurrency: config.concurrency,
        rate: config.rate,
        keepalive: config.keepalive,
        timeout_ms: config.timeout.as_millis() as u64,
    };
    Ok(Report::build(
        run,
        epoch_ms,
        duration,
        shared.resent.load(Ordering::Relaxed),
        merged,
        &timeline,
    ))
}

/// State shared by the workers of a run.
struct Shared {
    config: Config,
    start: Instant,
    epoch_ms: u64,
    /// The next send slot, with a rate limit.
    next_slot: AtomicU64,
    /// Requests handed back unsent and sent again.
    resent: AtomicU64,
}

/// Resolves when `stop` is true or its sender is gone.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// One worker: one connection, one request at a time.
async fn worker(shared: Arc<Shared>, control: Control) -> Recorder {
    let config = &shared.config;
    let mut rec = Recorder::new(config.failure_log_limit);
    let mut stop = control.stop.clone();
    let mut conn: Option<SendRequest<Empty<Bytes>>> = None;
    loop {
        if *stop.borrow() || stop.has_changed().is_err() {
            break;
        }
        if let Some(rate) = config.rate {
            let slot = shared.next_slot.fetch_add(1, Ordering::Relaxed);
            let due = shared.start + Duration::from_secs_f64(slot as f64 / rate);
            tokio::select! {
                _ = tokio::time::sleep_until(due) => {}
                _ = stopped(&mut stop) => break,
            }
        }
        let phase = control.phase.borrow().clone();
        let sent = shared.start.elapsed();
        let t0 = Instant::now();
        let outcome = match tokio::time::timeout(config.timeout, request(&shared, &mut conn)).await
        {
            Ok(outcome) => outcome,
            Err(_) => {
                conn = None;
                Outcome {
                    status: None,
                    instance: None,
                    failure: Some((
                        FailureKind::Timeout,
                        format!("no complete response within {:?}", config.timeout),
                    )),
                }
            }
        };
        let counter = if outcome.failure.is_none() {
            &control.progress.ok
        } else {
            &control.progress.failed
        };
        rec.record(&phase, sent, shared.epoch_ms, t0.elapsed(), outcome);
        counter.fetch_add(1, Ordering::Relaxed);
    }
    rec
}

fn failed(kind: FailureKind, reason: String) -> Outcome {
    Outcome {
        status: None,
        instance: None,
        failure: Some((kind, reason)),
    }
}

/// An error and its causes on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cause = c.source();
    }
    s
}

/// Opens a connection and starts its driver task.
async fn connect(target: &Target) -> Result<SendRequest<Empty<Bytes>>, Outcome> {
    let stream = TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(|e| failed(FailureKind::Connect, e.to_string()))?;
    let _ = stream.set_nodelay(true);
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| failed(FailureKind::Connect, chain(&e)))?;
    tokio::spawn(async move {
        // Errors surface on the request side.
        let _ = connection.await;
    });
    Ok(sender)
}

/// Sends one request, reusing `conn` when it is open; leaves in `conn` the
/// connection to use next (none after an error or `connection: close`).
async fn request(shared: &Shared, conn: &mut Option<SendRequest<Empty<Bytes>>>) -> Outcome {
    let config = &shared.config;
    let target = &config.target;
    let mut req = {
        let mut b = Request::get(target.path.as_str())
            .header(header::HOST, target.authority.as_str())
            .header(header::USER_AGENT, "glint-load");
        if !config.keepalive {
            b = b.header(header::CONNECTION, "close");
        }
        match b.body(Empty::<Bytes>::new()) {
            Ok(r) => r,
            Err(e) => return failed(FailureKind::Request, e.to_string()),
        }
    };
    // At most one resend: on a reused connection that handed the request back.
    let (sender, response) = loop {
        let (mut sender, reused) = match conn.take().filter(|c| !c.is_closed()) {
            Some(c) => (c, true),
            None => match connect(target).await {
                Ok(c) => (c, false),
                Err(outcome) => return outcome,
            },
        };
        if let Err(e) = sender.ready().await {
            if reused {
                shared.resent.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            return failed(FailureKind::Request, chain(&e));
        }
        match sender.try_send_request(req).await {
            Ok(response) => break (sender, response),
            Err(mut e) => match e.take_message() {
                Some(back) if reused => {
                    shared.resent.fetch_add(1, Ordering::Relaxed);
                    req = back;
                }
                _ => return failed(FailureKind::Request, chain(e.error())),
            },
        }
    };
    let status = response.status();
    let closes = response
        .headers()
        .get(header::CONNECTION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("close"));
    let mut instance = response
        .headers()
        .get(INSTANCE_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = match response.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return Outcome {
                status: Some(status.as_u16()),
                instance,
                failure: Some((FailureKind::Body, chain(&e))),
            };
        }
    };
    if instance.is_none() {
        instance = instance_in_body(&body);
    }
    if config.keepalive && !closes {
        *conn = Some(sender);
    }
    Outcome {
        status: Some(status.as_u16()),
        instance,
        failure: (!status.is_success()).then(|| {
            (
                FailureKind::Status,
                format!(
                    "{} {}",
                    status.as_u16(),
                    status.canonical_reason().unwrap_or("")
                )
                .trim_end()
                .to_owned(),
            )
        }),
    }
}

/// The instance named in a demo-app body: `<greeting> from <instance> (service …)`.
pub fn instance_in_body(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body.get(..body.len().min(4096))?).ok()?;
    let rest = &text[text.find(" from ")? + 6..];
    let id = rest.split_whitespace().next()?;
    (!id.is_empty()).then(|| id.to_owned())
}
