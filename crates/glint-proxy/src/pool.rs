//! Keep-alive connections to one backend.
//!
//! A pool is a LIFO stack of idle HTTP/1.1 connections (the most recently used
//! one is reused first, so the others age out). A connection enters the pool
//! only after its response body was relayed completely, and only while the
//! backend is in rotation: closing the pool (drain, removal) drops the idle
//! connections and makes every later `put` drop its connection instead, which
//! is how "keep-alive connections are closed after their current request" is
//! implemented. Dropping a `SendRequest` makes hyper close the connection once
//! it is idle.

use crate::body::RequestBody;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// The sending half of one backend connection.
pub(crate) type Sender = http1::SendRequest<RequestBody>;

/// How long a pooled connection may take to become ready for its next request
/// before it is discarded (it is normally ready within microseconds).
const READY_TIMEOUT: Duration = Duration::from_secs(1);

struct Idle {
    sender: Sender,
    since: Instant,
}

#[derive(Default)]
struct PoolInner {
    idle: Vec<Idle>,
    closed: bool,
}

/// Idle connections to one backend.
pub(crate) struct Pool {
    inner: Mutex<PoolInner>,
    max_idle: usize,
    idle_timeout: Duration,
}

impl Pool {
    pub(crate) fn new(max_idle: usize, idle_timeout: Duration) -> Pool {
        Pool {
            inner: Mutex::new(PoolInner::default()),
            max_idle,
            idle_timeout,
        }
    }

    fn lock(&self) -> MutexGuard<'_, PoolInner> {
        // A panic while holding this lock leaves a plain Vec behind: still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes the most recently returned live connection, ready to send.
    pub(crate) async fn checkout(&self) -> Option<Sender> {
        loop {
            let mut sender = self.take()?;
            if sender.is_ready() {
                return Some(sender);
            }
            // The connection task may not yet have noticed that the previous
            // response ended; wait for it (or for the connection to fail).
            if let Ok(Ok(())) = tokio::time::timeout(READY_TIMEOUT, sender.ready()).await {
                return Some(sender);
            }
        }
    }

    /// Takes the most recent connection that is ready now or, failing that,
    /// the most recent live one. Drops the dead and expired ones met on the
    /// way.
    fn take(&self) -> Option<Sender> {
        let mut dropped = Vec::new();
        let found = {
            let mut inner = self.lock();
            let now = Instant::now();
            let mut ready = None;
            let mut i = inner.idle.len();
            while i > 0 {
                i -= 1;
                let idle = &inner.idle[i];
                if idle.sender.is_closed() || now.duration_since(idle.since) >= self.idle_timeout {
                    dropped.push(inner.idle.remove(i));
                    continue;
                }
                if idle.sender.is_ready() {
                    ready = Some(i);
                    break;
                }
            }
            match ready {
                Some(i) => Some(inner.idle.remove(i).sender),
                None => inner.idle.pop().map(|idle| idle.sender),
            }
        };
        drop(dropped);
        found
    }

    /// Returns a connection whose response has been relayed completely.
    pub(crate) fn put(&self, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        let mut inner = self.lock();
        if inner.closed || inner.idle.len() >= self.max_idle {
            drop(inner);
            drop(sender);
            return;
        }
        inner.idle.push(Idle {
            sender,
            since: Instant::now(),
        });
    }

    /// Drops every idle connection (after one turned out stale: the others
    /// probably are too).
    pub(crate) fn flush(&self) {
        let idle = std::mem::take(&mut self.lock().idle);
        drop(idle);
    }

    /// Drops every idle connection and refuses later returns.
    pub(crate) fn close(&self) {
        let idle = {
            let mut inner = self.lock();
            inner.closed = true;
            std::mem::take(&mut inner.idle)
        };
        drop(idle);
    }

    /// Drops idle connections that expired or were closed by the backend.
    pub(crate) fn reap(&self) {
        let mut expired = Vec::new();
        {
            let mut inner = self.lock();
            let mut i = 0;
            while i < inner.idle.len() {
                let idle = &inner.idle[i];
                if idle.sender.is_closed() || idle.since.elapsed() >= self.idle_timeout {
                    expired.push(inner.idle.remove(i));
                } else {
                    i += 1;
                }
            }
        }
        drop(expired);
    }

    /// How many idle connections the pool holds.
    pub(crate) fn idle_count(&self) -> usize {
        self.lock().idle.len()
    }
}

/// Why a new backend connection could not be made.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    #[error("cannot connect to {addr}")]
    Io {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("timed out connecting to {addr} after {timeout:?}")]
    Timeout { addr: SocketAddr, timeout: Duration },
    #[error("http/1.1 handshake with {addr} failed")]
    Handshake {
        addr: SocketAddr,
        #[source]
        source: hyper::Error,
    },
}

/// Opens a TCP connection with `TCP_NODELAY`, bounded by `timeout`.
pub(crate) async fn connect_tcp(
    addr: SocketAddr,
    timeout: Duration,
) -> Result<TcpStream, ConnectError> {
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(source)) => return Err(ConnectError::Io { addr, source }),
        Err(_) => return Err(ConnectError::Timeout { addr, timeout }),
    };
    // Latency matters more than packet count on a proxy hop.
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// Opens a new HTTP/1.1 connection to a backend; its connection task runs on
/// its own and ends when the connection closes.
pub(crate) async fn connect_http(
    addr: SocketAddr,
    timeout: Duration,
) -> Result<Sender, ConnectError> {
    let stream = connect_tcp(addr, timeout).await?;
    let (sender, conn) = http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|source| ConnectError::Handshake { addr, source })?;
    tokio::spawn(async move {
        // Upgrades are enabled on every connection; only `Upgrade` requests
        // can produce a 101 that uses them.
        if let Err(error) = conn.with_upgrades().await {
            tracing::debug!(%addr, %error, "backend connection ended with an error");
        }
    });
    Ok(sender)
}
