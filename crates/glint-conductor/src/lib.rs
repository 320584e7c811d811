//! Glint's control process: makes the world match the newest version and
//! keeps it matching.
//!
//! The conductor is level-triggered (architecture invariant 2): every pass
//! re-reads the newest version and the world, decides from those alone, and
//! acts. Everything it must not forget is written to the store before it
//! acts, so killing it at any moment and starting it again converges to the
//! same world.
//!
//! Layout:
//! - [`conductor`]: [`Setup`] and [`start`], the handle of a running one;
//! - [`driver`]: runs the reconcilers on every pass, one error policy,
//!   publishes the status;
//! - [`reconciler`]: the contract of a reconciler and what it is given;
//! - [`reconcilers`]: one file per reconciler (providers, inventory, probes,
//!   volumes, autoscale, instances, rollouts, endpoints, heartbeat);
//! - [`world`]: the picture of the world the reconcilers share;
//! - [`decide`]: the pure decision function (what to launch and retire now),
//!   with its one-writer-at-a-time rule for volumes;
//! - [`autoscale`]: the pure autoscaling rule and the one count rule;
//! - [`load`]: the endpoint counters the autoscaler reads;
//! - [`rollout`]: the pure rollout verdict (converged, failed, in progress);
//! - [`plan`]: launch shapes, fingerprints and the plan shown by `glint plan`;
//! - [`launch`]: the one place a launch spec is built, from the shape;
//! - [`ops`]: the operations layer — plan, apply, rollback — and its error;
//!   [`down`]: the down operation;
//! - [`events`]: every event the conductor records and its wording;
//! - [`sink`]: writes them with a rate limit;
//! - [`backoff`]: the one retry policy;
//! - [`health`]: probes and the per-instance health state machine;
//! - [`leadership`] and [`lock`]: who may act, and the epoch that fences
//!   writes;
//! - [`images`]: where runnable images come from;
//! - [`logs`]: where instances' output is kept, and reading it;
//! - [`api`]: the local HTTP API on a unix socket;
//! - [`status`]: the live status snapshot;
//! - [`metrics`]: the Prometheus figures (`/metrics`);
//! - [`http`]: the HTTP API (`/v1/…`), its tokens and roles, audit, the
//!   OpenAPI document and the dashboard;
//! - [`identity`]: instances' signed identity tokens;
//!   [`instance_api`]: the API instances call with them (variables).

pub mod api;
pub mod autoscale;
pub mod backoff;
pub mod conductor;
pub mod decide;
pub mod down;
pub mod driver;
pub mod events;
pub mod firewall;
pub mod health;
pub mod http;
pub mod identity;
pub mod images;
pub mod instance_api;
pub mod launch;
pub mod leadership;
pub mod load;
pub mod lock;
pub mod logs;
pub mod metrics;
pub mod notify;
pub mod ops;
pub mod plan;
pub mod reconciler;
pub mod reconcilers;
pub mod rollout;
pub mod sink;
pub mod status;
pub mod world;

pub use conductor::{
    ConductorClient, ConductorHandle, Connecting, ProviderFactory, Setup, error_chain, start,
};
pub use reconciler::Config;
pub use status::Status;
pub use world::Providers;
