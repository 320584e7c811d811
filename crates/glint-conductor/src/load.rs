//! What the autoscaler reads of the data plane: per endpoint, per backend,
//! a few counters.
//!
//! [`LoadStats`] is the whole interface. The data plane (in this process or
//! the long-lived data-plane process; [`DataPlaneLoad`] over any
//! [`DataPlane`]'s state) provides, for every endpoint, each backend's
//! instance id and:
//!
//! - `in_flight`: requests (TCP: connections) in flight now;
//! - `served`: responses relayed so far (cumulative, never reset while the
//!   endpoint lives);
//! - `busy_us`: microseconds requests spent in flight so far, summed over
//!   those that ended (cumulative), or `None` if it does not count them
//!   (then `in_flight` is sampled and `latency` cannot be measured).
//!
//! Cumulative counters make the reading order-free and loss-tolerant: the
//! autoscaler differentiates two readings itself, so a missed reading only
//! lengthens an interval. A counter that goes backwards (an endpoint
//! restarted) is read as zero progress for that interval.

use async_trait::async_trait;
use glint_dataplane::DataPlane;
use glint_model::{InstanceId, Name};
use std::sync::Arc;

/// One backend's counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendLoad {
    /// The instance.
    pub instance: InstanceId,
    /// Requests in flight now.
    pub in_flight: u64,
    /// Responses relayed so far.
    pub served: u64,
    /// Time requests spent in flight so far (µs), if counted.
    pub busy_us: Option<u64>,
}

/// One endpoint's backends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointLoad {
    /// The endpoint.
    pub endpoint: Name,
    /// Its backends (in rotation, or finishing what they had).
    pub backends: Vec<BackendLoad>,
}

/// Where the autoscaler reads endpoint counters. See the module
/// documentation.
#[async_trait]
pub trait LoadStats: Send + Sync + 'static {
    /// Every endpoint's counters now.
    async fn load(&self) -> Result<Vec<EndpointLoad>, String>;
}

/// [`LoadStats`] from a [`DataPlane`]'s reports.
pub struct DataPlaneLoad(pub Arc<dyn DataPlane>);

#[async_trait]
impl LoadStats for DataPlaneLoad {
    async fn load(&self) -> Result<Vec<EndpointLoad>, String> {
        Ok(self
            .0
            .state()
            .await
            .map_err(|e| glint_dataplane::error_chain(&e))?
            .endpoints
            .into_iter()
            .filter_map(|r| {
                let endpoint = r.spec.name().clone();
                let stats = r.stats?;
                Some(EndpointLoad {
                    endpoint,
                    backends: stats
                        .backends
                        .into_iter()
                        .map(|b| BackendLoad {
                            instance: b.instance,
                            in_flight: b.in_flight,
                            served: b.served,
                            busy_us: Some(b.busy_us),
                        })
                        .collect(),
                })
            })
            .collect())
    }
}
