//! One client connection to a data plane: multiplexed requests (each
//! answered by id, in any order), the `hello` exchange, and descriptors
//! received with answers.

use crate::Identity;
use crate::identity::{PROTOCOL, this_build};
use crate::plane::DataPlaneError;
use crate::protocol::{Envelope, Request, Response};
use crate::wire::{self, Writer};
use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::UnixStream;
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;

/// How long connecting and `hello` may take.
pub(crate) const HELLO_TIMEOUT: Duration = Duration::from_secs(3);

type Answer = (Response, Vec<OwnedFd>);

#[derive(Default)]
struct Pending {
    waiting: HashMap<u64, oneshot::Sender<Answer>>,
}

/// A connected, introduced data plane.
pub(crate) struct Link {
    socket: PathBuf,
    writer: tokio::sync::Mutex<Writer>,
    pending: Arc<Mutex<Pending>>,
    next: AtomicU64,
    closed: Arc<AtomicBool>,
    gone: Arc<Notify>,
    reader: JoinHandle<()>,
    /// Who answered `hello`.
    pub(crate) identity: Identity,
}

impl Drop for Link {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Link {
    /// Connects and says hello; the answer may be of any protocol (the
    /// caller decides what to do with a data plane of another one).
    pub(crate) async fn connect(socket: &Path) -> Result<Link, DataPlaneError> {
        let unreachable = |source| DataPlaneError::Unreachable {
            socket: socket.to_owned(),
            source,
        };
        let stream = match tokio::time::timeout(HELLO_TIMEOUT, UnixStream::connect(socket)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(unreachable(e)),
            Err(_) => {
                return Err(unreachable(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "connecting timed out",
                )));
            }
        };
        let (mut reader, writer) = wire::split(stream);
        let pending = Arc::new(Mutex::new(Pending::default()));
        let closed = Arc::new(AtomicBool::new(false));
        let gone = Arc::new(Notify::new());
        let task = {
            let pending = Arc::clone(&pending);
            let closed = Arc::clone(&closed);
            let gone = Arc::clone(&gone);
            tokio::spawn(async move {
                loop {
                    let frame = match reader.frame().await {
                        Ok(Some(f)) => f,
                        Ok(None) => break,
                        Err(e) => {
                            tracing::debug!(error = %e, "data plane connection failed");
                            break;
                        }
                    };
                    let envelope: Envelope<Response> = match serde_json::from_slice(&frame) {
                        Ok(e) => e,
                        Err(e) => {
                            tracing::warn!(error = %e, "unreadable answer from the data plane");
                            break;
                        }
                    };
                    let fds = match reader.take_fds(envelope.fds) {
                        Ok(fds) => fds,
                        Err(e) => {
                            tracing::warn!(error = %e, "data plane answer without its descriptors");
                            break;
                        }
                    };
                    let waiter = lock(&pending).waiting.remove(&envelope.id);
                    if let Some(waiter) = waiter {
                        let _ = waiter.send((envelope.body, fds));
                    }
                }
                closed.store(true, Ordering::SeqCst);
                // Every caller still waiting learns the connection is gone.
                lock(&pending).waiting.clear();
                gone.notify_waiters();
            })
        };
        let mut link = Link {
            socket: socket.to_owned(),
            writer: tokio::sync::Mutex::new(writer),
            pending,
            next: AtomicU64::new(1),
            closed,
            gone,
            reader: task,
            identity: placeholder_identity(),
        };
        let hello = Request::Hello {
            protocol: PROTOCOL,
            build: this_build().to_owned(),
        };
        match link.call(hello, HELLO_TIMEOUT, "hello").await {
            Ok((Response::Hello { identity }, _)) => {
                link.identity = identity;
                Ok(link)
            }
            Ok((other, _)) => Err(DataPlaneError::Protocol(format!(
                "expected an answer to hello, got {other:?}"
            ))),
            Err(DataPlaneError::Lost { source, .. }) => Err(unreachable(source)),
            Err(e) => Err(e),
        }
    }

    /// Whether the connection has ended.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Waits until the connection ends (the data plane process exits), or
    /// `timeout`; true if it ended.
    pub(crate) async fn wait_closed(&self, timeout: Duration) -> bool {
        let notified = self.gone.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if self.is_closed() {
            return true;
        }
        tokio::time::timeout(timeout, notified).await.is_ok() || self.is_closed()
    }

    /// Sends a request and waits for its answer (and the descriptors with it).
    pub(crate) async fn call(
        &self,
        request: Request,
        timeout: Duration,
        operation: &'static str,
    ) -> Result<Answer, DataPlaneError> {
        let lost = |source| DataPlaneError::Lost {
            socket: self.socket.clone(),
            source,
        };
        if self.is_closed() {
            return Err(lost(std::io::Error::new(
                std::io::ErrorKind::NotConnected,
                "the connection has ended",
            )));
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).waiting.insert(id, tx);
        let bytes = serde_json::to_vec(&Envelope {
            id,
            fds: 0,
            body: request,
        })
        .map_err(|e| DataPlaneError::Protocol(e.to_string()))?;
        let written = {
            let writer = self.writer.lock().await;
            writer.frame(&bytes, &[]).await
        };
        if let Err(e) = written {
            lock(&self.pending).waiting.remove(&id);
            return Err(lost(e));
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(_)) => Err(lost(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "the connection ended before the answer",
            ))),
            Err(_) => {
                lock(&self.pending).waiting.remove(&id);
                Err(DataPlaneError::Timeout {
                    operation,
                    waited: timeout,
                })
            }
        }
    }
}

fn lock(p: &Mutex<Pending>) -> std::sync::MutexGuard<'_, Pending> {
    p.lock().unwrap_or_else(|e| e.into_inner())
}

fn placeholder_identity() -> Identity {
    Identity {
        pid: 0,
        protocol: 0,
        build: String::new(),
        version: String::new(),
        store: String::new(),
        started_at_ms: 0,
    }
}
