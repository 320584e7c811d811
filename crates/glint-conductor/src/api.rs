//! What the CLI and the HTTP API share: the socket's place in the data
//! directory (`conductor.sock`, owner-only), the API's error type, the
//! local calls `glint apply` and `glint status` make, and — here and only
//! here — the HTTP status of an operation's [`OpError`](crate::ops::OpError) ([`http_status`]),
//! answered with a JSON body `{"error": kind, "message": …}`.
//!
//! The routes, their roles and the server are in [`crate::http`]. The CLI
//! reads most things from the store directly (it works without a
//! conductor); with `--addr` it calls a remote conductor's API instead.

use crate::ops::ErrorKind;
use crate::status::Status;
use hyper::{Method, StatusCode};
use std::path::{Path, PathBuf};

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
    /// The conductor refused the request.
    #[error("the conductor answered {status}: {message}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// Its error kind (`forbidden`, `not_found`, `conflict`…).
        kind: String,
        /// What it said.
        message: String,
    },
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

/// The conductor behind `socket`, as the local admin.
fn local(socket: &Path) -> crate::http::client::Client {
    crate::http::client::Client::unix(socket.to_owned())
}

/// Asks the conductor behind `socket` for a pass now.
pub async fn poke(socket: &Path) -> Result<(), ApiError> {
    let (status, _) = local(socket)
        .request(Method::POST, "/v1/reconcile", None)
        .await?;
    if status == StatusCode::ACCEPTED {
        Ok(())
    } else {
        Err(ApiError::Protocol(format!("reconcile answered {status}")))
    }
}

/// Reads the live status from the conductor behind `socket`.
pub async fn status(socket: &Path) -> Result<Status, ApiError> {
    local(socket).get("/v1/status").await
}
