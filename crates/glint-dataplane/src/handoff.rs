//! What one data plane process hands to its successor (a newer build) along
//! with its listening sockets.
//!
//! **This format is frozen**: a successor of any later build must read the
//! handoff of any earlier one. Fields may only be added, with a default
//! (`#[serde(default)]`), never renamed, retyped or removed; the endpoint
//! configuration follows the same rule (`glint_proxy::EndpointConfig`).

use crate::plane::EndpointSpec;
use glint_proxy::Backend;
use serde::{Deserialize, Serialize};

/// The whole state of a data plane, minus its sockets (which travel as file
/// descriptors beside it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handoff {
    /// The generation of the endpoint set in force.
    #[serde(default)]
    pub generation: Option<u64>,
    /// Every endpoint.
    #[serde(default)]
    pub endpoints: Vec<HandedEndpoint>,
}

/// One endpoint being handed over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandedEndpoint {
    /// What it was asked to be.
    pub spec: EndpointSpec,
    /// The generation of its backend set in force.
    #[serde(default)]
    pub generation: Option<u64>,
    /// Its backend set in force.
    #[serde(default)]
    pub backends: Vec<Backend>,
    /// Why it did not listen, if it did not.
    #[serde(default)]
    pub error: Option<String>,
    /// The index of its listening socket among the descriptors sent with
    /// the handoff (`None`: it did not listen).
    #[serde(default)]
    pub fd: Option<usize>,
}
