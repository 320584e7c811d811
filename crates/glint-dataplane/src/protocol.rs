//! The control protocol on the data plane's unix socket.
//!
//! Every frame (see `wire`) is one [`Envelope`]: an id chosen by the client,
//! the number of descriptors that travel with it, and a request or a
//! response. Requests are answered with the same id, in any order (a drain
//! may take seconds while other requests are answered), so one connection
//! carries everything.
//!
//! A connection starts with `hello`: the client says which protocol it
//! speaks, the data plane answers with its [`Identity`]. After that, a data
//! plane takes the programming requests only from a client of its own
//! protocol; it answers any other with an error naming both protocols.
//!
//! # Compatibility
//!
//! A conductor may be a newer (or older) build than the data plane it finds,
//! and must still be able to read who it is and replace it. So some parts
//! are **frozen** — every version reads every other version's form — and
//! the rest is versioned by [`PROTOCOL`](crate::PROTOCOL):
//!
//! - frozen: the framing, the [`Envelope`], the `hello` request and its
//!   answer ([`Identity`]: fields only added, with defaults), the `handoff`
//!   and `handoff_done` requests and their answers (the [`Handoff`] payload:
//!   same rule), and the `error` answer;
//! - versioned: every other request and answer. A change to one of them —
//!   a new field without a default, a changed meaning — bumps the protocol;
//!   a conductor that finds a data plane of another protocol replaces it
//!   through the frozen handoff, with no failed request.

use crate::handoff::Handoff;
use crate::identity::Identity;
use crate::plane::{DataPlaneState, DrainReport, EndpointSpec, EndpointsApplied};
use glint_model::{InstanceId, Name};
use glint_proxy::Backend;
use serde::{Deserialize, Serialize};

/// One frame.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Envelope<T> {
    /// Chosen by the client; the answer carries the same.
    pub(crate) id: u64,
    /// Descriptors that travel with this frame.
    #[serde(default)]
    pub(crate) fds: usize,
    /// The request or the answer.
    pub(crate) body: T,
}

/// What a client asks.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum Request {
    /// Frozen. Who are you? (and: I speak `protocol`).
    Hello {
        /// The client's protocol.
        protocol: u32,
        /// The client's build, for the logs.
        #[serde(default)]
        build: String,
    },
    /// Versioned. [`crate::DataPlane::set_endpoints`].
    SetEndpoints {
        generation: u64,
        endpoints: Vec<EndpointSpec>,
    },
    /// Versioned. [`crate::DataPlane::set_backends`].
    SetBackends {
        endpoint: Name,
        generation: u64,
        backends: Vec<Backend>,
    },
    /// Versioned. [`crate::DataPlane::drain`].
    Drain {
        instance: InstanceId,
        timeout_ms: u64,
    },
    /// Versioned. [`crate::DataPlane::state`].
    State,
    /// Versioned. [`crate::DataPlane::shutdown`]: the process exits after.
    Shutdown { timeout_ms: u64 },
    /// Frozen. A successor asks for the state and the listening sockets;
    /// the data plane takes no change until `handoff_done` (then it leaves)
    /// or until this connection closes (then it carries on).
    Handoff,
    /// Frozen. The successor serves the sockets and the control socket
    /// now: leave.
    HandoffDone,
}

/// What a data plane answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub(crate) enum Response {
    /// Frozen. The answer to `hello`.
    Hello { identity: Identity },
    /// Versioned. The answer to `set_endpoints`.
    Endpoints(EndpointsApplied),
    /// Versioned. The answer to `set_backends`.
    Backends { applied: bool },
    /// Versioned. The answer to `drain`.
    Drained(DrainReport),
    /// Versioned. The answer to `state`.
    State(DataPlaneState),
    /// Versioned. The answer to `shutdown`: the process exits once its
    /// endpoints have shut down.
    ShuttingDown,
    /// Frozen. The answer to `handoff`; the descriptors travel with it.
    Handoff(Handoff),
    /// Frozen. The answer to `handoff_done`.
    HandedOff,
    /// Frozen. A request failed.
    Error { kind: ErrorKind, message: String },
}

/// The kinds of [`Response::Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ErrorKind {
    /// The client's protocol is not this data plane's.
    Incompatible,
    /// The request is not understood (a newer client).
    BadRequest,
    /// No such endpoint.
    UnknownEndpoint,
    /// A handoff is under way.
    HandingOff,
    /// Shutting down.
    ShuttingDown,
    /// Anything else.
    #[serde(other)]
    Failed,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The frozen requests, as every version writes them.
    #[test]
    fn the_frozen_requests_keep_their_form() {
        let hello = Envelope {
            id: 1,
            fds: 0,
            body: Request::Hello {
                protocol: 7,
                build: "b".into(),
            },
        };
        assert_eq!(
            serde_json::to_string(&hello).unwrap(),
            r#"{"id":1,"fds":0,"body":{"op":"hello","protocol":7,"build":"b"}}"#
        );
        for (request, op) in [
            (Request::Handoff, "handoff"),
            (Request::HandoffDone, "handoff_done"),
        ] {
            let json = serde_json::to_string(&request).unwrap();
            assert_eq!(json, format!(r#"{{"op":"{op}"}}"#));
        }
        // An older client's hello (no build) still reads.
        let old: Envelope<Request> =
            serde_json::from_str(r#"{"id":3,"body":{"op":"hello","protocol":1}}"#).unwrap();
        assert!(matches!(old.body, Request::Hello { protocol: 1, .. }));
    }

    #[test]
    fn an_unknown_error_kind_reads_as_failed() {
        let r: Response =
            serde_json::from_str(r#"{"result":"error","kind":"from_the_future","message":"m"}"#)
                .unwrap();
        assert!(matches!(
            r,
            Response::Error {
                kind: ErrorKind::Failed,
                ..
            }
        ));
    }
}
