//! The reconcilers, in the order the driver runs them on every pass:
//!
//! 0. [`notify`]: enqueues what the `notify` sinks are sent from the event
//!    log and delivers the outbox in tasks (first, so a sink's cursor
//!    starts before anything this pass records);
//! 1. [`providers`]: connects the providers that the target and the live
//!    instances need (Docker on demand), with backoff;
//! 2. [`inventory`]: compares what the store believes with what providers
//!    observe — adoption after a restart, exits and drift pushed by
//!    providers, periodic resync, orphans;
//! 3. [`probes`]: health probes of every running instance and the
//!    transitions they cause;
//! 4. [`volumes`]: who holds which volume (claims of gone instances
//!    released), where volumes are and how full;
//! 5. [`autoscale`]: autoscaled services measured and their counts set;
//! 6. [`instances`]: `decide` and its launches and retirements, with
//!    crash-loop backoff;
//! 7. [`rollouts`]: the target version's rollout — announcements, progress,
//!    convergence, failure and automatic rollback;
//! 8. [`network`]: Glint's nftables table (the declared rules, the live
//!    instances' addresses), re-applied when changed by hand;
//! 9. [`endpoints`]: the data plane's endpoints and their backends;
//! 10. [`identities`]: running instances' identity tokens renewed before
//!     they expire;
//! 11. [`heartbeat`]: the conductor's heartbeat in the store.
//!
//! Each is one file with its own status. A new capability is a new file
//! here and one line in [`all`].

pub mod autoscale;
pub mod endpoints;
pub mod heartbeat;
pub mod identities;
pub mod instances;
pub mod inventory;
pub mod network;
pub mod notify;
pub mod probes;
pub mod providers;
pub mod rollouts;
pub mod volumes;

use crate::conductor::ProviderFactory;
use crate::reconciler::{Reconciler, Waker};
use glint_dataplane::DataPlane;
use std::sync::Arc;

/// Every reconciler, in the order they run.
pub fn all(
    waker: &Waker,
    factory: Option<Arc<dyn ProviderFactory>>,
    dataplane: Arc<dyn DataPlane>,
) -> Vec<Box<dyn Reconciler>> {
    vec![
        Box::new(notify::Notify::new(waker)),
        Box::new(providers::Providers::new(factory)),
        Box::new(inventory::Inventory::new(waker)),
        Box::new(probes::Probes::new(waker)),
        Box::new(volumes::Volumes::new(waker)),
        Box::new(autoscale::Autoscale::new(Arc::new(
            crate::load::DataPlaneLoad(dataplane.clone()),
        ))),
        Box::new(instances::Instances::new(waker, dataplane.clone())),
        Box::new(rollouts::Rollouts::default()),
        Box::new(network::Network::new(waker)),
        Box::new(endpoints::Endpoints::new(dataplane)),
        Box::new(identities::Identities::default()),
        Box::new(heartbeat::Heartbeat::default()),
    ]
}
