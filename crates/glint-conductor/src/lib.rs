//! Glint's control process: makes the world match the newest version and keeps
//! it matching.
//!
//! The conductor is level-triggered (architecture invariant 2): every pass
//! re-reads the newest version from the store and the instances it believes
//! in, decides from those alone, and acts. Everything it must not forget is
//! written to the store before it acts, so killing it at any moment and
//! starting it again converges to the same world.
//!
//! Layout:
//! - [`runtime`]: the run loop (passes, launches, retirements, the desired
//!   endpoints handed to the data plane's reconciler, adoption after a
//!   restart, crash-loop backoff);
//! - [`decide`]: the pure decision function (what to launch and retire now);
//! - [`plan`]: launch shapes, fingerprints and the plan shown by `glint plan`;
//! - [`health`]: probes and the per-instance health state machine;
//! - [`images`]: where runnable images come from;
//! - [`api`]: the local HTTP API on a unix socket;
//! - [`lock`]: one conductor per data directory;
//! - [`status`]: the live status snapshot.

pub mod api;
pub mod decide;
pub mod health;
pub mod images;
pub mod lock;
pub mod plan;
pub mod runtime;
pub mod status;

pub use runtime::{
    ConductorClient, ConductorHandle, Config, Connecting, ProviderFactory, Providers, error_chain,
    start,
};
pub use status::Status;
