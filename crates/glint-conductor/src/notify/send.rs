//! One delivery attempt over HTTP(S), and what its answer means.
//!
//! [`post`] sends one `POST` with hyper's HTTP/1.1 client connection, the
//! whole attempt (connect, TLS, request, response head) bounded by a
//! timeout; `https` URLs are verified against the system's certificate
//! bundle (`/etc/ssl/certs/ca-certificates.crt`, or the PEM file named by
//! `GLINT_NOTIFY_CA`). [`outcome`] turns the answer into an [`Attempt`]:
//!
//! | answer | outcome |
//! |---|---|
//! | 2xx | delivered |
//! | 408, 429, 5xx, no answer (refused, reset, timed out) | retried after the backoff, or after `Retry-After` when longer (429 and 503) |
//! | any other status (other 4xx, 1xx, 3xx: redirects are not followed) | failed for good |
//! | the [`MAX_ATTEMPTS`]-th failure | failed for good |
//!
//! The backoff is the conductor's one [`Policy`] shape (doubling to a cap)
//! with [`RETRY`]'s figures and jitter ([`backoff::jittered`]) seeded by
//! the message id and attempt.

use crate::backoff::{self, Policy};
use glint_store::Attempt;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::time::Duration;

/// The retry figures of deliveries: the first retry after 1 s, doubling
/// to 10 minutes.
pub const RETRY: Policy = Policy {
    free: 0,
    first: Duration::from_secs(1),
    max: Duration::from_secs(600),
};

/// Attempts before a message fails for good (about 2 h 30 of retries).
pub const MAX_ATTEMPTS: u32 = 20;

/// The longest `Retry-After` honoured (longer ones wait this long).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// How long one attempt may take.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// What the receiver answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// Its `Retry-After`, in seconds, when it sent one.
    pub retry_after: Option<Duration>,
}

/// A request to make.
#[derive(Debug, Clone)]
pub struct Request {
    /// The sink's URL.
    pub url: String,
    /// Headers besides `host`, `content-type` and `content-length`.
    pub headers: Vec<(&'static str, String)>,
    /// The JSON body.
    pub body: Vec<u8>,
}

/// Sends `req` once. `tls` is used for `https` URLs.
pub async fn post(
    req: Request,
    tls: Option<Arc<tokio_rustls::TlsConnector>>,
    timeout: Duration,
) -> Result<Reply, String> {
    match tokio::time::timeout(timeout, post_inner(req, tls)).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {}s", timeout.as_secs())),
    }
}

async fn post_inner(
    req: Request,
    tls: Option<Arc<tokio_rustls::TlsConnector>>,
) -> Result<Reply, String> {
    let uri: hyper::Uri = req
        .url
        .parse()
        .map_err(|e| format!("`{}` is not a URL: {e}", req.url))?;
    let https = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => return Err(format!("`{}` is not an http or https URL", req.url)),
    };
    let host = uri
        .host()
        .ok_or_else(|| format!("`{}` has no host", req.url))?
        .to_owned();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let authority = uri
        .authority()
        .map(|a| a.as_str().to_owned())
        .unwrap_or_else(|| host.clone());
    let path = uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/".into());
    let tcp =
        tokio::net::TcpStream::connect((host.trim_start_matches('[').trim_end_matches(']'), port))
            .await
            .map_err(|e| format!("cannot connect to {authority}: {e}"))?;
    let mut builder = hyper::Request::post(path)
        .header(hyper::header::HOST, authority.as_str())
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(hyper::header::USER_AGENT, "glint-notify");
    for (k, v) in &req.headers {
        builder = builder.header(*k, v.as_str());
    }
    let request = builder
        .body(Full::new(bytes::Bytes::from(req.body)))
        .map_err(|e| format!("cannot build the request: {e}"))?;
    if https {
        let tls = tls.ok_or_else(|| "no TLS configuration for an https URL".to_owned())?;
        let name = crate::http::tls::server_name(&host).map_err(|e| e.to_string())?;
        let stream = tls
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS with {authority} failed: {e}"))?;
        exchange(TokioIo::new(stream), request).await
    } else {
        exchange(TokioIo::new(tcp), request).await
    }
}

async fn exchange<T>(io: T, request: hyper::Request<Full<bytes::Bytes>>) -> Result<Reply, String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut send, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("HTTP handshake failed: {e}"))?;
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let out = async {
        let resp = send
            .send_request(request)
            .await
            .map_err(|e| format!("the request failed: {e}"))?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(hyper::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        // Read (and drop) a bounded body so the exchange ends cleanly.
        let _ = http_body_util::Limited::new(resp.into_body(), 64 * 1024)
            .collect()
            .await;
        Ok(Reply {
            status,
            retry_after,
        })
    }
    .await;
    driver.abort();
    out
}

/// What an attempt's answer means for the message, which had `attempts`
/// attempts before this one; `now` in ms since the epoch; `seed` spreads
/// the jitter (the message id).
pub fn outcome(answer: &Result<Reply, String>, attempts: u32, now: i64, seed: i64) -> Attempt {
    let this = attempts.saturating_add(1);
    let (error, retry_after) = match answer {
        Ok(r) if (200..300).contains(&r.status) => return Attempt::Delivered,
        Ok(r) if r.status == 408 || r.status == 429 || (500..600).contains(&r.status) => (
            format!("the receiver answered {}", r.status),
            if r.status == 429 || r.status == 503 {
                r.retry_after
            } else {
                None
            },
        ),
        Ok(r) => {
            return Attempt::Failed {
                error: format!(
                    "the receiver refused the message with status {} (not retried: only 408, 429 and 5xx are)",
                    r.status
                ),
            };
        }
        Err(e) => (e.clone(), None),
    };
    if this >= MAX_ATTEMPTS {
        return Attempt::Failed {
            error: format!("gave up after {this} attempts; the last: {error}"),
        };
    }
    let seed = (seed as u64).wrapping_mul(31).wrapping_add(u64::from(this));
    let mut wait = backoff::jittered(RETRY.delay(this), seed);
    if let Some(after) = retry_after {
        wait = wait.max(after.min(MAX_RETRY_AFTER));
    }
    Attempt::Retry {
        next_at: now.saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX)),
        error,
    }
}

/// The TLS connector for `https` sinks: the system's certificate bundle, or
/// `GLINT_NOTIFY_CA`.
pub fn tls_connector() -> Result<tokio_rustls::TlsConnector, String> {
    let path = std::env::var_os("GLINT_NOTIFY_CA")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "/etc/ssl/certs/ca-certificates.crt".into());
    crate::http::tls::connector_from_bundle(&path).map_err(|e| crate::error_chain(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16, retry_after: Option<u64>) -> Result<Reply, String> {
        Ok(Reply {
            status,
            retry_after: retry_after.map(Duration::from_secs),
        })
    }

    fn wait(a: &Attempt, now: i64) -> Option<i64> {
        match a {
            Attempt::Retry { next_at, .. } => Some(next_at - now),
            _ => None,
        }
    }

    #[test]
    fn statuses_decide_delivered_retried_or_failed() {
        assert_eq!(outcome(&reply(204, None), 0, 0, 1), Attempt::Delivered);
        for s in [408, 429, 500, 502, 503] {
            assert!(
                wait(&outcome(&reply(s, None), 0, 0, 1), 0).is_some(),
                "{s} is retried"
            );
        }
        for s in [301, 400, 401, 403, 404, 410, 422] {
            assert!(
                matches!(outcome(&reply(s, None), 0, 0, 1), Attempt::Failed { .. }),
                "{s} fails for good"
            );
        }
        assert!(wait(&outcome(&Err("refused".into()), 0, 0, 1), 0).is_some());
        assert!(matches!(
            outcome(&reply(503, None), MAX_ATTEMPTS - 1, 0, 1),
            Attempt::Failed { .. }
        ));
    }

    #[test]
    fn the_backoff_doubles_with_jitter_to_its_cap_and_retry_after_is_honoured() {
        for attempts in 0..MAX_ATTEMPTS - 1 {
            let full = RETRY.delay(attempts + 1).as_millis() as i64;
            let w = wait(&outcome(&reply(500, None), attempts, 1_000, 7), 1_000).unwrap_or(-1);
            assert!(
                w >= full / 2 && w <= full,
                "attempt {attempts}: {w} in [{}, {full}]",
                full / 2
            );
            assert!(w <= 600_000);
        }
        // Seeds spread messages that failed together.
        let spread: std::collections::BTreeSet<i64> = (0..20)
            .filter_map(|seed| wait(&outcome(&reply(500, None), 5, 0, seed), 0))
            .collect();
        assert!(spread.len() > 10, "{spread:?}");
        // Retry-After on 429 and 503 when longer than the backoff, capped.
        assert_eq!(
            wait(&outcome(&reply(503, Some(30)), 0, 0, 1), 0),
            Some(30_000)
        );
        assert_eq!(
            wait(&outcome(&reply(429, Some(30)), 0, 0, 1), 0),
            Some(30_000)
        );
        assert_eq!(
            wait(&outcome(&reply(429, Some(86_400)), 0, 0, 1), 0),
            Some(3_600_000)
        );
        // Not on a 500, and never shorter than the backoff.
        assert!(wait(&outcome(&reply(500, Some(30)), 0, 0, 1), 0).unwrap_or(0) <= 1_000);
        let long = wait(&outcome(&reply(503, Some(1)), 12, 0, 1), 0).unwrap_or(0);
        assert!(long >= 300_000, "{long}");
    }
}
