//! [`EndpointConfig`]: how one endpoint behaves, with its defaults.
//!
//! The configuration crosses a wire (the data-plane process is programmed
//! over a socket, and hands its endpoints to a newer process on upgrade), so
//! it is serialisable, durations are whole milliseconds, and every field but
//! the first three has a default: a configuration written by an older build
//! that lacks a newer field still reads, with that field's default.

use glint_model::{Endpoint, EndpointProtocol, Name};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::time::Duration;

/// How an endpoint behaves. [`EndpointConfig::new`] gives the defaults below;
/// every field is public so the conductor can override any of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointConfig {
    /// The endpoint's name (in 503 bodies, `Via`, logs and stats).
    pub name: Name,
    /// The address to listen on; port 0 picks a free port
    /// (see [`crate::EndpointProxy::local_addr`]).
    pub listen: SocketAddr,
    /// HTTP (request-level balancing and retries) or TCP (connection-level).
    pub protocol: EndpointProtocol,
    /// How long a request (or TCP connection) waits for a backend to appear
    /// when none is in rotation, before `503` (TCP: close). Zero answers at
    /// once. Default 1 s.
    #[serde(default = "d::wait_for_backend", with = "millis")]
    pub wait_for_backend: Duration,
    /// Attempts per request or TCP connection, the first included; each
    /// backend is tried at most once (see the crate doc for the one
    /// exception). Default 3; at least 1 is used.
    #[serde(default = "d::max_attempts")]
    pub max_attempts: usize,
    /// Bound on connecting to a backend. Default 2 s.
    #[serde(default = "d::connect_timeout", with = "millis")]
    pub connect_timeout: Duration,
    /// Bound on waiting for a backend's response head, per attempt, counted
    /// from the moment the request (with its body) has been handed to the
    /// backend connection. An attempt that hits it is retried on another
    /// backend when the request may be retried (see the crate doc), and
    /// answered `504 Gateway Timeout` otherwise; the backend is ejected.
    /// Only the head is bounded: a response body may stream for as long as
    /// it needs. Default 10 s.
    #[serde(default = "d::response_timeout", with = "millis")]
    pub response_timeout: Duration,
    /// Request bodies up to this size are buffered so that they can be
    /// replayed on another backend; larger ones are streamed. Default 1 MiB.
    #[serde(default = "d::replay_body_limit")]
    pub replay_body_limit: usize,
    /// An idle pooled connection older than this is closed rather than
    /// reused. Keep it below the backends' own keep-alive timeout (Node.js
    /// and uvicorn use 5 s). Default 4 s.
    #[serde(default = "d::pool_idle_timeout", with = "millis")]
    pub pool_idle_timeout: Duration,
    /// Idle connections kept per backend. Default 32.
    #[serde(default = "d::pool_max_idle")]
    pub pool_max_idle_per_backend: usize,
    /// How long a backend that failed is first avoided (still used when
    /// nothing else is left). Each further failure in a row doubles it, up
    /// to [`EndpointConfig::eject_max`]; a success resets it. Default 2 s.
    #[serde(default = "d::eject_for", with = "millis")]
    pub eject_for: Duration,
    /// The longest ejection (see [`EndpointConfig::eject_for`]): how often,
    /// at worst, one request probes a backend that keeps failing while no
    /// conductor is there to take it out of the set. Default 30 s.
    #[serde(default = "d::eject_max", with = "millis")]
    pub eject_max: Duration,
    /// Bound on reading a client's request head. hyper also applies it to
    /// the wait for the next request on a keep-alive connection, so it is
    /// the idle timeout of client connections too. Default 30 s.
    #[serde(default = "d::header_read_timeout", with = "millis")]
    pub header_read_timeout: Duration,
}

impl EndpointConfig {
    /// Default for [`EndpointConfig::wait_for_backend`].
    pub const DEFAULT_WAIT_FOR_BACKEND: Duration = Duration::from_secs(1);
    /// Default for [`EndpointConfig::max_attempts`].
    pub const DEFAULT_MAX_ATTEMPTS: usize = 3;
    /// Default for [`EndpointConfig::connect_timeout`].
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
    /// Default for [`EndpointConfig::response_timeout`].
    pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
    /// Default for [`EndpointConfig::replay_body_limit`].
    pub const DEFAULT_REPLAY_BODY_LIMIT: usize = 1 << 20;
    /// Default for [`EndpointConfig::pool_idle_timeout`].
    pub const DEFAULT_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(4);
    /// Default for [`EndpointConfig::pool_max_idle_per_backend`].
    pub const DEFAULT_POOL_MAX_IDLE: usize = 32;
    /// Default for [`EndpointConfig::eject_for`].
    pub const DEFAULT_EJECT_FOR: Duration = Duration::from_secs(2);
    /// Default for [`EndpointConfig::eject_max`].
    pub const DEFAULT_EJECT_MAX: Duration = Duration::from_secs(30);
    /// Default for [`EndpointConfig::header_read_timeout`].
    pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

    /// A configuration with the defaults.
    pub fn new(name: Name, listen: SocketAddr, protocol: EndpointProtocol) -> EndpointConfig {
        EndpointConfig {
            name,
            listen,
            protocol,
            wait_for_backend: Self::DEFAULT_WAIT_FOR_BACKEND,
            max_attempts: Self::DEFAULT_MAX_ATTEMPTS,
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
            response_timeout: Self::DEFAULT_RESPONSE_TIMEOUT,
            replay_body_limit: Self::DEFAULT_REPLAY_BODY_LIMIT,
            pool_idle_timeout: Self::DEFAULT_POOL_IDLE_TIMEOUT,
            pool_max_idle_per_backend: Self::DEFAULT_POOL_MAX_IDLE,
            eject_for: Self::DEFAULT_EJECT_FOR,
            eject_max: Self::DEFAULT_EJECT_MAX,
            header_read_timeout: Self::DEFAULT_HEADER_READ_TIMEOUT,
        }
    }

    /// The configuration of a declared endpoint, with the defaults.
    pub fn from_endpoint(name: Name, endpoint: &Endpoint) -> EndpointConfig {
        EndpointConfig::new(name, endpoint.listen, endpoint.protocol)
    }
}

/// The serde defaults (functions, as serde wants them).
mod d {
    use super::EndpointConfig as C;
    use std::time::Duration;

    pub(super) fn wait_for_backend() -> Duration {
        C::DEFAULT_WAIT_FOR_BACKEND
    }
    pub(super) fn max_attempts() -> usize {
        C::DEFAULT_MAX_ATTEMPTS
    }
    pub(super) fn connect_timeout() -> Duration {
        C::DEFAULT_CONNECT_TIMEOUT
    }
    pub(super) fn response_timeout() -> Duration {
        C::DEFAULT_RESPONSE_TIMEOUT
    }
    pub(super) fn replay_body_limit() -> usize {
        C::DEFAULT_REPLAY_BODY_LIMIT
    }
    pub(super) fn pool_idle_timeout() -> Duration {
        C::DEFAULT_POOL_IDLE_TIMEOUT
    }
    pub(super) fn pool_max_idle() -> usize {
        C::DEFAULT_POOL_MAX_IDLE
    }
    pub(super) fn eject_for() -> Duration {
        C::DEFAULT_EJECT_FOR
    }
    pub(super) fn eject_max() -> Duration {
        C::DEFAULT_EJECT_MAX
    }
    pub(super) fn header_read_timeout() -> Duration {
        C::DEFAULT_HEADER_READ_TIMEOUT
    }
}

/// Durations as whole milliseconds on the wire.
mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configuration_without_the_newer_fields_reads_with_their_defaults() {
        let json =
            r#"{"name":"web","listen":"127.0.0.1:8080","protocol":"http","connect_timeout":500}"#;
        let c: EndpointConfig = serde_json::from_str(json).unwrap();
        let mut want = EndpointConfig::new(
            Name::new("web").unwrap(),
            "127.0.0.1:8080".parse().unwrap(),
            EndpointProtocol::Http,
        );
        want.connect_timeout = Duration::from_millis(500);
        assert_eq!(c, want);
    }

    #[test]
    fn a_configuration_survives_the_wire() {
        let mut c = EndpointConfig::new(
            Name::new("api").unwrap(),
            "127.0.0.1:0".parse().unwrap(),
            EndpointProtocol::Tcp,
        );
        c.response_timeout = Duration::from_millis(1500);
        c.eject_max = Duration::from_secs(7);
        let back: EndpointConfig =
            serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
    }
}
