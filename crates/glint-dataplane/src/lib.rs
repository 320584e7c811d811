//! Glint's data plane: the endpoints, kept apart from the conductor so that
//! they outlive it.
//!
//! The conductor decides; the data plane carries traffic. If the endpoints
//! lived in the conductor's process, every restart or upgrade of the
//! conductor would refuse connections for as long as it was down. So the
//! conductor only *programs* a [`DataPlane`] — with whole desired states and
//! generation numbers, the contract of `glint_proxy::EndpointProxy::set_backends`
//! — and is never in the path of a request.
//!
//! # Two implementations
//!
//! - [`LocalDataPlane`]: the endpoints in this process (one
//!   `glint_proxy::EndpointProxy` each). For tests, and wherever a separate
//!   process is not wanted.
//! - [`RemoteDataPlane`]: a client of the `glint dataplane` process, which
//!   hosts a `LocalDataPlane` behind a unix socket in the data directory
//!   (`dataplane.sock`). That process is started by the conductor like an
//!   instance ([`Launcher`]): detached in its own session, labelled with the
//!   store id (`GLINT_DATAPLANE_STORE` in its environment), found again
//!   through its socket after a conductor restart, and **adopted** when it
//!   is of the conductor's build and protocol. It runs until it is told to
//!   shut down (`glint up` stopping), gets SIGTERM, or hands over.
//!
//! # While no conductor runs
//!
//! Endpoints keep routing to the last backend sets they were given. A
//! backend whose connections fail is ejected passively, for longer each
//! time it fails again (up to `eject_max`), so a crashed instance costs at
//! most one retried attempt per ejection period however long the conductor
//! is away; idempotent requests are retried on another backend invisibly.
//!
//! # Upgrades: a handoff, not a restart
//!
//! A conductor that finds a data plane of another protocol or build starts
//! one of its own build, which **takes over**: it asks the running one for
//! its state and its listening sockets (`SCM_RIGHTS` over the control
//! socket), serves the very same sockets — no connection queued on them is
//! lost, as it would be with `SO_REUSEPORT` — puts its control socket in
//! place, and tells the old one to leave. The old one stops accepting, tells
//! each client connection to reconnect with `Connection: close` on its next
//! response (so no client request races the close of an idle keep-alive
//! connection), finishes what is in flight, and exits. The handoff and the
//! `hello` that tells builds apart are the frozen part of the protocol; the
//! rest is versioned by [`PROTOCOL`] (see `protocol`).
//!
//! # Programming it
//!
//! [`Endpoints`] runs the endpoints reconciler ([`Reconciler`]) in its own
//! task: the conductor hands it the desired [`Desired`] state, reads its
//! [`EndpointsStatus`], and records its [`EndpointEvent`]s. Drains go to the
//! data plane directly ([`DataPlane::drain`]), before an instance is
//! terminated.
//!
//! Layout:
//! - `plane`: the [`DataPlane`] trait and its values;
//! - `local`: [`LocalDataPlane`];
//! - `reconcile`: the endpoints reconciler and its task;
//! - `remote`: [`RemoteDataPlane`];
//! - `launch`: finding, adopting, replacing and starting the process;
//! - `process`: the process itself (`glint dataplane`), and the handoff's
//!   taking side;
//! - `server`: the process's side of the socket, and the handoff's giving
//!   side;
//! - `link`: one client connection (multiplexed requests);
//! - `protocol`: the messages, and what is frozen;
//! - `handoff`: the state handed to a successor;
//! - `wire`: frames with file descriptors;
//! - `identity`: protocol, build and process of a data plane.

mod handoff;
mod identity;
mod launch;
mod link;
mod local;
mod plane;
mod process;
mod protocol;
mod reconcile;
mod remote;
mod server;
mod wire;

pub use glint_proxy::{Backend, EndpointConfig};
pub use handoff::{HandedEndpoint, Handoff};
pub use identity::{Identity, PROTOCOL, VERSION, build_of, gnu_build_id, short, this_build};
pub use launch::{LaunchError, Launched, Launcher, labelled_processes};
pub use local::LocalDataPlane;
pub use plane::{
    DataPlane, DataPlaneError, DataPlaneState, DrainReport, EndpointReport, EndpointSpec,
    EndpointsApplied,
};
pub use process::{LABEL, LOG, ProcessConfig, ProcessError, SOCKET, run, socket_path};
pub use reconcile::{
    BIND_RETRY, Desired, DesiredEndpoint, EndpointEvent, EndpointView, Endpoints, EndpointsStatus,
    RESYNC, Reconciler, view,
};
pub use remote::RemoteDataPlane;

/// An error and its causes on one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
