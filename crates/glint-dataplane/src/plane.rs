//! The [`DataPlane`] trait — what the conductor programs — and the values
//! that cross it.

use crate::identity::Identity;
use async_trait::async_trait;
use glint_model::{InstanceId, Name};
use glint_proxy::{Backend, EndpointConfig, EndpointStats};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// One endpoint as the conductor wants it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointSpec {
    /// How it listens and behaves (name, address, protocol, timeouts).
    pub config: EndpointConfig,
    /// The service it routes to (shown in status; the data plane routes
    /// only to the backends it is given).
    pub service: Name,
}

impl EndpointSpec {
    /// The endpoint's name.
    pub fn name(&self) -> &Name {
        &self.config.name
    }

    /// Whether `other` can be served on this one's listening socket: the
    /// same address and protocol (other settings may differ).
    pub fn same_socket(&self, other: &EndpointSpec) -> bool {
        self.config.listen == other.config.listen && self.config.protocol == other.config.protocol
    }
}

/// One endpoint as a data plane has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointReport {
    /// What it was asked to be.
    pub spec: EndpointSpec,
    /// Where it listens (`None` while it cannot).
    pub listening: Option<SocketAddr>,
    /// Why it does not listen, if it does not.
    pub error: Option<String>,
    /// The generation of its backend set in force (`None` before the first).
    pub generation: Option<u64>,
    /// Its backend set in force, sorted.
    pub backends: Vec<Backend>,
    /// Its counters (`None` while it does not listen). Counters start again
    /// from zero in a new data plane process.
    pub stats: Option<EndpointStats>,
}

/// What [`DataPlane::set_endpoints`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointsApplied {
    /// `false` when the generation was stale and nothing changed.
    pub applied: bool,
    /// Every endpoint as it is now (listening, or why not).
    pub endpoints: Vec<EndpointReport>,
}

/// Everything a data plane has, as [`DataPlane::state`] reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataPlaneState {
    /// Who it is.
    pub identity: Identity,
    /// The generation of its endpoint set in force (`None` before the first).
    pub generation: Option<u64>,
    /// Its endpoints, by name.
    pub endpoints: Vec<EndpointReport>,
}

impl DataPlaneState {
    /// The endpoint named `name`.
    pub fn endpoint(&self, name: &Name) -> Option<&EndpointReport> {
        self.endpoints.iter().find(|e| e.spec.name() == name)
    }
}

/// What [`DataPlane::drain`] saw, over every endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DrainReport {
    /// Whether any endpoint knew the instance.
    pub found: bool,
    /// Requests (TCP: connections) in flight to it when draining started.
    pub in_flight_at_start: usize,
    /// Requests still in flight when the drain returned (0 unless it timed
    /// out; they are not cancelled).
    pub remaining: usize,
    /// Whether the timeout expired with requests still in flight.
    pub timed_out: bool,
    /// How long it waited, in milliseconds.
    pub waited_ms: u64,
}

/// Why a data-plane operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DataPlaneError {
    /// Nothing answers on the data plane's socket.
    #[error("no data plane is answering on {socket}")]
    Unreachable {
        /// The socket.
        socket: PathBuf,
        /// Why the connection failed.
        #[source]
        source: std::io::Error,
    },
    /// The connection was lost before the answer came.
    #[error("lost the connection to the data plane on {socket}")]
    Lost {
        /// The socket.
        socket: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The data plane speaks another protocol.
    #[error(
        "the data plane (pid {pid}) speaks protocol {theirs} and this glint speaks {ours}; it must be replaced"
    )]
    Incompatible {
        /// Its pid.
        pid: u32,
        /// Its protocol.
        theirs: u32,
        /// Ours.
        ours: u32,
    },
    /// No answer in time.
    #[error("the data plane did not answer `{operation}` within {waited:?}")]
    Timeout {
        /// What was asked.
        operation: &'static str,
        /// How long we waited.
        waited: Duration,
    },
    /// The endpoint named is not in the data plane's set.
    #[error("the data plane has no endpoint `{0}`")]
    UnknownEndpoint(Name),
    /// The data plane is handing its endpoints to a newer process and takes
    /// no changes meanwhile.
    #[error("the data plane is handing its endpoints over to another process")]
    HandingOff,
    /// The data plane is shutting down.
    #[error("the data plane is shutting down")]
    ShuttingDown,
    /// The data plane answered something this build does not understand.
    #[error("unexpected answer from the data plane: {0}")]
    Protocol(String),
    /// The data plane reported a failure.
    #[error("the data plane failed: {0}")]
    Remote(String),
}

impl DataPlaneError {
    /// Whether this says that no data plane runs there at all (no socket
    /// file, or nobody listening on it), rather than one that fails.
    pub fn no_data_plane(&self) -> bool {
        matches!(self, DataPlaneError::Unreachable { source, .. }
            if matches!(source.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused))
    }
}

/// What the conductor programs: the endpoints, with whole desired states and
/// generation numbers (the contract of
/// [`glint_proxy::EndpointProxy::set_backends`], extended to the set of
/// endpoints).
///
/// - **Generations.** [`DataPlane::set_endpoints`] and
///   [`DataPlane::set_backends`] each carry a generation. A generation lower
///   than the last one applied (to the endpoint set, or to that endpoint's
///   backend set) is stale and ignored (`applied: false` / `false`); an
///   equal one is applied again, so a level-triggered caller may re-send.
///   A new data plane process knows no generation yet and takes any; a
///   caller that does not know the data plane's generations reads them with
///   [`DataPlane::state`] first.
/// - **Whole states.** Each call carries everything: the endpoint set, an
///   endpoint's backend set. What is missing is gone.
/// - **Never in the path of a request.** Nothing here is awaited by a
///   request; endpoints keep serving the last backend sets they were given
///   for as long as nobody calls (no conductor), ejecting backends whose
///   connections fail (see `glint_proxy`).
///
/// Implementations: [`crate::LocalDataPlane`] (endpoints in this process)
/// and [`crate::RemoteDataPlane`] (a client of the `glint dataplane`
/// process, which hosts a `LocalDataPlane`).
#[async_trait]
pub trait DataPlane: Send + Sync + 'static {
    /// Sets the whole set of endpoints: binds the new ones, closes those
    /// missing from `endpoints`, and those whose address or protocol changed
    /// (then binds them anew); an endpoint whose other settings changed is
    /// restarted on the same listening socket without refusing a
    /// connection. An endpoint that cannot bind is reported with its error
    /// and tried again by the next call (equal generations included).
    /// Backend sets of kept endpoints are kept.
    async fn set_endpoints(
        &self,
        generation: u64,
        endpoints: Vec<EndpointSpec>,
    ) -> Result<EndpointsApplied, DataPlaneError>;

    /// Sets the whole backend set of one endpoint; `Ok(false)` if
    /// `generation` is stale for that endpoint. An endpoint that does not
    /// listen yet (a bind error) keeps the set for when it does.
    async fn set_backends(
        &self,
        endpoint: &Name,
        generation: u64,
        backends: Vec<Backend>,
    ) -> Result<bool, DataPlaneError>;

    /// Takes `instance` out of rotation in every endpoint, for good, and
    /// waits until nothing is in flight to it or `timeout` expires (see
    /// [`glint_proxy::EndpointProxy::drain`]). Idempotent; draining an
    /// instance no endpoint knows is harmless.
    async fn drain(
        &self,
        instance: &InstanceId,
        timeout: Duration,
    ) -> Result<DrainReport, DataPlaneError>;

    /// Reads everything: identity, generations, endpoints, backends, stats.
    async fn state(&self) -> Result<DataPlaneState, DataPlaneError>;

    /// Shuts every endpoint down (stops accepting, lets what is in flight
    /// finish up to `timeout`, then aborts the rest). A data plane process
    /// then exits; [`crate::RemoteDataPlane`] returns once it has.
    async fn shutdown(&self, timeout: Duration) -> Result<(), DataPlaneError>;
}
