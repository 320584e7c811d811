//! A fault-injecting proxy on loopback, in front of moto: it reads each
//! request's `Action`, and for the first N requests (of one action, or of
//! any) answers with a fault instead of — or after — forwarding it. Also
//! used by `glint-cli/tests/aws.rs` (included by path), which uses only
//! some of it.

#![allow(dead_code)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// What the proxy does to a request it faults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answers 503 without forwarding.
    Unavailable,
    /// Answers EC2's `RequestLimitExceeded` (HTTP 503) without forwarding.
    Throttle,
    /// Answers HTTP 400 with this EC2 error code, without forwarding (a
    /// launch EC2 refuses: a bad AMI, no capacity, a quota).
    Refuse(&'static str),
    /// Forwards the request, then holds the answer this many milliseconds
    /// (a call in flight when its caller is killed).
    Hold(u64),
    /// Forwards the request, then throws moto's answer away and answers
    /// 500: the call took effect but the client never learnt it.
    LoseAnswer,
}

/// The faults to inject and what was seen.
#[derive(Debug, Default)]
pub struct Plan {
    /// `(action or "*", fault, how many more times)`.
    pub faults: Vec<(String, Fault, u32)>,
    /// Requests seen per action.
    pub seen: BTreeMap<String, u32>,
    /// Every action, in the order seen.
    pub order: Vec<String>,
}

/// A running proxy.
pub struct Proxy {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// Its plan, changeable while it runs.
    pub plan: Arc<Mutex<Plan>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    /// Where `action` first appears among the requests seen, if it does.
    pub fn first(&self, action: &str) -> Option<usize> {
        self.plan
            .lock()
            .unwrap()
            .order
            .iter()
            .position(|a| a == action)
    }

    /// Requests of `action` seen so far.
    pub fn seen(&self, action: &str) -> u32 {
        self.plan
            .lock()
            .unwrap()
            .seen
            .get(action)
            .copied()
            .unwrap_or(0)
    }
}

fn action_of(body: &[u8]) -> String {
    String::from_utf8_lossy(body)
        .split('&')
        .find_map(|kv| kv.strip_prefix("Action="))
        .unwrap_or("?")
        .to_owned()
}

async fn forward(
    upstream: SocketAddr,
    parts: http::request::Parts,
    body: Bytes,
) -> Result<(u16, Bytes), String> {
    let stream = tokio::net::TcpStream::connect(upstream)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = http::Request::from_parts(parts, Full::new(body));
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, bytes))
}

fn answer(status: u16, body: impl Into<Bytes>) -> http::Response<Full<Bytes>> {
    let mut r = http::Response::new(Full::new(body.into()));
    *r.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::BAD_GATEWAY);
    r
}

async fn handle(
    upstream: SocketAddr,
    plan: Arc<Mutex<Plan>>,
    req: http::Request<Incoming>,
) -> Result<http::Response<Full<Bytes>>, std::convert::Infallible> {
    let (parts, body) = req.into_parts();
    let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
        return Ok(answer(400, "bad body"));
    };
    let action = action_of(&body);
    let fault = {
        let mut p = plan.lock().unwrap();
        *p.seen.entry(action.clone()).or_default() += 1;
        p.order.push(action.clone());
        let hit = p
            .faults
            .iter_mut()
            .find(|(a, _, n)| *n > 0 && (a == "*" || *a == action));
        hit.map(|(_, f, n)| {
            *n -= 1;
            *f
        })
    };
    Ok(match fault {
        Some(Fault::Unavailable) => answer(503, "Service Unavailable"),
        Some(Fault::Throttle) => answer(
            503,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request limit exceeded.</Message></Error></Errors><RequestID>fault-proxy</RequestID></Response>",
        ),
        Some(Fault::Refuse(code)) => answer(
            400,
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code><Message>refused by the fault proxy</Message></Error></Errors><RequestID>fault-proxy</RequestID></Response>"
            ),
        ),
        Some(Fault::Hold(ms)) => {
            let answer_ = match forward(upstream, parts, body).await {
                Ok((status, bytes)) => answer(status, bytes),
                Err(e) => answer(502, e),
            };
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
            answer_
        }
        Some(Fault::LoseAnswer) => {
            let _ = forward(upstream, parts, body).await;
            answer(
                500,
                "<Response><Errors><Error><Code>InternalError</Code><Message>lost</Message></Error></Errors></Response>",
            )
        }
        None => match forward(upstream, parts, body).await {
            Ok((status, bytes)) => answer(status, bytes),
            Err(e) => answer(502, e),
        },
    })
}

/// Starts a proxy in front of `upstream` (`http://127.0.0.1:PORT`).
pub async fn start(upstream: &str) -> Proxy {
    let upstream: SocketAddr = upstream.trim_start_matches("http://").parse().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let plan = Arc::new(Mutex::new(Plan::default()));
    let p = plan.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let p = p.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| handle(upstream, p.clone(), req));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Proxy { url, plan, task }
}
