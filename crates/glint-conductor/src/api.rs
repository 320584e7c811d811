//! The conductor's local API: HTTP/1.1 over a unix socket in the data
//! directory (`conductor.sock`), reachable only by users who can reach the
//! data directory.
//!
//! - `GET /v1/status`: the live [`Status`] as JSON;
//! - `GET /v1/history`: the versions (through the operations layer);
//! - `POST /v1/reconcile`: asks for a pass now (sent by `glint apply`);
//! - `GET /v1/ping`: liveness.
//!
//! An operation's [`OpError`] becomes an HTTP status here and only here
//! ([`http_status`]), with a JSON body `{"error": kind, "message": …}`.
//!
//! The CLI reads most things from the store directly (it works without a
//! conductor); the API carries what only a running conductor knows.

use crate::conductor::ConductorClient;
use crate::ops::{ErrorKind, OpError};
use crate::status::Status;
use bytes::Bytes;
use glint_store::Store;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;

/// File name of the socket inside the data directory.
pub const SOCKET: &str = "conductor.sock";

/// The socket path for a data directory.
pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SOCKET)
}

/// An API failure (server or client side).
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The socket could not be created.
    #[error("cannot listen on {path}")]
    Listen {
        /// The socket path.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// No conductor answers on the socket.
    #[error("no conductor is answering on {path}")]
    Unreachable {
        /// The socket path.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The conductor answered something unexpected.
    #[error("unexpected answer from the conductor: {0}")]
    Protocol(String),
}

/// Serves the API until `shutdown` turns true. The caller holds the
/// conductor lock, so a leftover socket file is stale and is replaced.
pub async fn serve(
    path: PathBuf,
    client: ConductorClient,
    store: Arc<dyn Store>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, ApiError> {
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).map_err(|source| ApiError::Listen {
        path: path.clone(),
        source,
    })?;
    Ok(tokio::spawn(async move {
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    let client = client.clone();
                    let store = store.clone();
                    tokio::spawn(async move {
                        let svc = service_fn(move |req| handle(req, client.clone(), store.clone()));
                        let _ = http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), svc)
                            .await;
                    });
                }
                _ = shutdown.changed() => break,
            }
        }
        let _ = std::fs::remove_file(&path);
    }))
}

/// The HTTP status of an operation's failure: the one place it is decided.
pub fn http_status(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::Invalid => StatusCode::BAD_REQUEST,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::Failed => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
    }
}

fn op_error(e: &OpError) -> (StatusCode, String) {
    (
        http_status(e.kind),
        serde_json::json!({ "error": e.kind, "message": crate::error_chain(e) }).to_string(),
    )
}

async fn handle(
    req: Request<Incoming>,
    client: ConductorClient,
    store: Arc<dyn Store>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let (status, body) = match (req.method(), req.uri().path()) {
        (&Method::GET, "/v1/ping") => (StatusCode::OK, "ok".to_owned()),
        (&Method::GET, "/v1/history") => match crate::ops::history(store.as_ref()) {
            Ok(v) => (
                StatusCode::OK,
                serde_json::to_string(&v).unwrap_or_default(),
            ),
            Err(e) => op_error(&e),
        },
        (&Method::GET, "/v1/status") => (
            StatusCode::OK,
            serde_json::to_string(&*client.status()).unwrap_or_default(),
        ),
        (&Method::POST, "/v1/reconcile") => {
            client.poke();
            (StatusCode::ACCEPTED, "{}".to_owned())
        }
        _ => (StatusCode::NOT_FOUND, "not found".to_owned()),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    Ok(resp)
}

async fn request(path: &Path, method: Method, uri: &str) -> Result<(StatusCode, Bytes), ApiError> {
    let unreachable = |source| ApiError::Unreachable {
        path: path.to_owned(),
        source,
    };
    let stream = tokio::time::timeout(Duration::from_secs(2), UnixStream::connect(path))
        .await
        .map_err(|_| unreachable(std::io::ErrorKind::TimedOut.into()))?
        .map_err(unreachable)?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| ApiError::Protocol(e.to_string()))?;
    tokio::spawn(conn);
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "conductor")
        .body(Full::new(Bytes::new()))
        .map_err(|e| ApiError::Protocol(e.to_string()))?;
    let resp = tokio::time::timeout(Duration::from_secs(5), sender.send_request(req))
        .await
        .map_err(|_| ApiError::Protocol("no answer within 5s".into()))?
        .map_err(|e| ApiError::Protocol(e.to_string()))?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| ApiError::Protocol(e.to_string()))?
        .to_bytes();
    Ok((status, body))
}

/// Asks the conductor behind `socket` for a pass now.
pub async fn poke(socket: &Path) -> Result<(), ApiError> {
    let (status, _) = request(socket, Method::POST, "/v1/reconcile").await?;
    if status == StatusCode::ACCEPTED {
        Ok(())
    } else {
        Err(ApiError::Protocol(format!("reconcile answered {status}")))
    }
}

/// Reads the live status from the conductor behind `socket`.
pub async fn status(socket: &Path) -> Result<Status, ApiError> {
    let (status, body) = request(socket, Method::GET, "/v1/status").await?;
    if status != StatusCode::OK {
        return Err(ApiError::Protocol(format!("status answered {status}")));
    }
    serde_json::from_slice(&body).map_err(|e| ApiError::Protocol(e.to_string()))
}
