//! The data plane process's side of the socket: answers requests with its
//! [`LocalDataPlane`], each in its own task (a long drain never holds up a
//! backend set), and gives its state and sockets to a successor.

use crate::identity::PROTOCOL;
use crate::local::LocalDataPlane;
use crate::plane::{DataPlane, DataPlaneError};
use crate::protocol::{Envelope, ErrorKind, Request, Response};
use crate::wire::{self, Writer};
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;

/// Why the server wants the process to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
    /// A client asked for a shutdown.
    Shutdown(Duration),
    /// A successor took the endpoints over.
    HandedOff,
}

/// Serves `listener` until the task is dropped (which ends every control
/// connection too); tells `exit` when a client asks the process to end.
pub(crate) async fn serve(
    listener: UnixListener,
    plane: Arc<LocalDataPlane>,
    exit: mpsc::UnboundedSender<Exit>,
) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        // Reap the connections that ended.
        while connections.try_join_next().is_some() {}
        match listener.accept().await {
            Ok((stream, _)) => {
                connections.spawn(connection(stream, Arc::clone(&plane), exit.clone()));
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot accept a control connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// What one connection has said about itself.
struct Peer {
    /// The protocol its `hello` announced (0 before it).
    protocol: AtomicU32,
    /// It asked for a handoff and has not completed it.
    handing_off: AtomicBool,
}

async fn connection(
    stream: UnixStream,
    plane: Arc<LocalDataPlane>,
    exit: mpsc::UnboundedSender<Exit>,
) {
    let (mut reader, writer) = wire::split(stream);
    let writer = Arc::new(tokio::sync::Mutex::new(writer));
    let peer = Arc::new(Peer {
        protocol: AtomicU32::new(0),
        handing_off: AtomicBool::new(false),
    });
    let mut requests = tokio::task::JoinSet::new();
    loop {
        while requests.try_join_next().is_some() {}
        let frame = match reader.frame().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(error = %e, "control connection failed");
                break;
            }
        };
        let envelope: Envelope<serde_json::Value> = match serde_json::from_slice(&frame) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "unreadable control frame; closing the connection");
                break;
            }
        };
        let id = envelope.id;
        let request = serde_json::from_value::<Request>(envelope.body);
        let (plane, writer, peer, exit) = (
            Arc::clone(&plane),
            Arc::clone(&writer),
            Arc::clone(&peer),
            exit.clone(),
        );
        requests.spawn(async move {
            let (response, fds, then) = match request {
                Ok(request) => answer(&plane, &peer, request).await,
                Err(e) => (
                    error(
                        ErrorKind::BadRequest,
                        format!("request not understood: {e}"),
                    ),
                    Vec::new(),
                    None,
                ),
            };
            let sent = send(&writer, id, response, fds).await;
            if let Err(e) = &sent {
                tracing::debug!(error = %e, "cannot answer on a control connection");
            }
            // What ends the process is acted on once the answer is out.
            if let Some(then) = then
                && sent.is_ok()
            {
                let _ = exit.send(then);
            }
        });
    }
    // Answers still being worked out (a drain) are finished: the client
    // may have closed only its writing half.
    while requests.join_next().await.is_some() {}
    if peer.handing_off.load(Ordering::SeqCst) {
        tracing::warn!("the successor went away before completing the handoff; carrying on");
        plane.thaw().await;
    }
}

async fn send(
    writer: &tokio::sync::Mutex<Writer>,
    id: u64,
    body: Response,
    fds: Vec<OwnedFd>,
) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(&Envelope {
        id,
        fds: fds.len(),
        body,
    })
    .map_err(std::io::Error::other)?;
    writer.lock().await.frame(&bytes, &fds).await
}

fn error(kind: ErrorKind, message: String) -> Response {
    Response::Error { kind, message }
}

fn from_error(e: DataPlaneError) -> Response {
    let kind = match &e {
        DataPlaneError::UnknownEndpoint(_) => ErrorKind::UnknownEndpoint,
        DataPlaneError::HandingOff => ErrorKind::HandingOff,
        DataPlaneError::ShuttingDown => ErrorKind::ShuttingDown,
        _ => ErrorKind::Failed,
    };
    error(kind, crate::error_chain(&e))
}

/// Answers one request: the answer, the descriptors to send with it, and
/// what the process must do once it is sent.
async fn answer(
    plane: &LocalDataPlane,
    peer: &Peer,
    request: Request,
) -> (Response, Vec<OwnedFd>, Option<Exit>) {
    let plain = |r: Response| (r, Vec::new(), None);
    // The frozen requests, from a client of any protocol.
    match request {
        Request::Hello { protocol, build } => {
            peer.protocol.store(protocol, Ordering::SeqCst);
            tracing::debug!(protocol, %build, "a client said hello");
            return plain(Response::Hello {
                identity: plane.identity().clone(),
            });
        }
        Request::Handoff => {
            if !plane.freeze().await {
                return plain(error(
                    ErrorKind::HandingOff,
                    "already handing off, or shutting down".into(),
                ));
            }
            peer.handing_off.store(true, Ordering::SeqCst);
            return match plane.export().await {
                Ok((handoff, fds)) => {
                    tracing::info!(
                        endpoints = handoff.endpoints.len(),
                        sockets = fds.len(),
                        "handing the endpoints over to a successor"
                    );
                    (Response::Handoff(handoff), fds, None)
                }
                Err(e) => {
                    plane.thaw().await;
                    peer.handing_off.store(false, Ordering::SeqCst);
                    plain(error(
                        ErrorKind::Failed,
                        format!("cannot duplicate the listening sockets: {e}"),
                    ))
                }
            };
        }
        Request::HandoffDone => {
            if !peer.handing_off.swap(false, Ordering::SeqCst) {
                return plain(error(
                    ErrorKind::BadRequest,
                    "handoff_done without a handoff on this connection".into(),
                ));
            }
            tracing::info!("the successor serves the endpoints now; leaving");
            return (Response::HandedOff, Vec::new(), Some(Exit::HandedOff));
        }
        _ => {}
    }
    let theirs = peer.protocol.load(Ordering::SeqCst);
    if theirs != PROTOCOL {
        return plain(error(
            ErrorKind::Incompatible,
            format!("this data plane speaks protocol {PROTOCOL}, the client {theirs}"),
        ));
    }
    let result = match request {
        Request::SetEndpoints {
            generation,
            endpoints,
        } => plane
            .set_endpoints(generation, endpoints)
            .await
            .map(Response::Endpoints),
        Request::SetBackends {
            endpoint,
            generation,
            backends,
        } => plane
            .set_backends(&endpoint, generation, backends)
            .await
            .map(|applied| Response::Backends { applied }),
        Request::Drain {
            instance,
            timeout_ms,
        } => plane
            .drain(&instance, Duration::from_millis(timeout_ms))
            .await
            .map(Response::Drained),
        Request::State => plane.state().await.map(Response::State),
        Request::Shutdown { timeout_ms } => {
            return (
                Response::ShuttingDown,
                Vec::new(),
                Some(Exit::Shutdown(Duration::from_millis(timeout_ms))),
            );
        }
        Request::Hello { .. } | Request::Handoff | Request::HandoffDone => {
            // Answered above.
            Err(DataPlaneError::Protocol("unreachable".into()))
        }
    };
    plain(result.unwrap_or_else(from_error))
}
