//! TCP mode: each accepted connection is forwarded to one backend with
//! `tokio::io::copy_bidirectional`. The choice and the connect-failure
//! retries follow the HTTP rules; once connected, the connection stays on its
//! backend until either side closes it (or the endpoint stops).

use crate::backends::{Pick, Tried, TriedSet};
use crate::endpoint::{Shared, TaskGuard};
use crate::pool;
use crate::stats::bump;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Forwards one client connection.
pub(crate) async fn forward(
    shared: Arc<Shared>,
    client: TcpStream,
    peer: SocketAddr,
    _guard: TaskGuard,
) {
    let mut phase = shared.phase.subscribe();
    tokio::select! {
        _ = forward_inner(&shared, client, peer) => {}
        _ = Shared::stopped(&mut phase) => {}
    }
}

async fn forward_inner(shared: &Shared, mut client: TcpStream, peer: SocketAddr) {
    bump(&shared.counters.requests);
    let mut tried = TriedSet::default();
    let mut attempts = 0usize;
    let max_attempts = shared.config.max_attempts.max(1);
    let wait_deadline = Instant::now() + shared.config.wait_for_backend;
    loop {
        if attempts >= max_attempts {
            bump(&shared.counters.exhausted);
            tracing::debug!(%peer, "no backend accepted the connection");
            return;
        }
        let backend = match shared.backends.pick(&tried) {
            Pick::One { backend, .. } => backend,
            Pick::Nothing => {
                if shared
                    .backends
                    .wait_for_candidate(&tried, wait_deadline)
                    .await
                {
                    continue;
                }
                if tried.is_empty() {
                    bump(&shared.counters.no_backend);
                    tracing::debug!(%peer, "no backend in rotation");
                } else {
                    bump(&shared.counters.exhausted);
                    tracing::debug!(%peer, "no backend accepted the connection");
                }
                return;
            }
        };
        let Some(in_flight) = backend.admit() else {
            continue;
        };
        attempts += 1;
        if attempts > 1 {
            bump(&shared.counters.retries);
        }
        match pool::connect_tcp(backend.addr, shared.config.connect_timeout).await {
            Ok(mut upstream) => {
                bump(&backend.served);
                backend.succeeded();
                match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
                    Ok((up, down)) => {
                        tracing::trace!(%peer, instance = %backend.instance, up, down, "connection closed");
                    }
                    Err(error) => {
                        tracing::debug!(%peer, instance = %backend.instance, %error, "connection failed");
                    }
                }
                drop(in_flight);
                return;
            }
            Err(error) => {
                tracing::debug!(instance = %backend.instance, %error, "connect failed");
                bump(&shared.counters.connect);
                bump(&backend.connect_failures);
                shared.backends.eject(&backend);
                tried.mark(&backend, Tried::Excluded);
            }
        }
    }
}
