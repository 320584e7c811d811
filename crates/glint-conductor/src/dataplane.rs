//! The data plane as the conductor programs it: endpoints that route to
//! healthy instances.
//!
//! The conductor never carries a request. It hands the data plane whole
//! desired states with generation numbers — the whole set of endpoints, and
//! per endpoint the whole set of backends — and the data plane ignores stale
//! generations and re-applies equal ones (the contract of
//! [`EndpointProxy::set_backends`]). Draining an instance (out of rotation,
//! in-flight work finished) is the step before it is terminated.
//!
//! [`LocalDataPlane`] runs the endpoints inside this process.

use async_trait::async_trait;
use glint_model::{InstanceId, Name};
use glint_proxy::{Backend, EndpointConfig, EndpointProxy, EndpointStats};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::Mutex;

/// One endpoint as the data plane reports it.
#[derive(Debug, Clone)]
pub struct EndpointReport {
    /// Its name.
    pub name: Name,
    /// The declared listen address.
    pub listen: SocketAddr,
    /// Where it listens, if it does.
    pub listening: Option<SocketAddr>,
    /// Why it does not, if it does not.
    pub error: Option<String>,
    /// The backends it routes to.
    pub backends: Vec<InstanceId>,
    /// Its counters.
    pub stats: Option<EndpointStats>,
}

/// The data plane. See the module documentation.
#[async_trait]
pub trait DataPlane: Send + Sync + 'static {
    /// Makes the endpoints exactly `endpoints` (binding new ones, closing
    /// those no longer wanted or declared differently) unless `generation`
    /// is older than the last one applied; reports every endpoint.
    async fn set_endpoints(
        &self,
        generation: u64,
        endpoints: Vec<EndpointConfig>,
    ) -> Result<Vec<EndpointReport>, String>;

    /// Hands one endpoint its whole set of backends; `false` if the
    /// generation was stale.
    async fn set_backends(
        &self,
        endpoint: &Name,
        generation: u64,
        backends: Vec<Backend>,
    ) -> Result<bool, String>;

    /// Takes `instance` out of every endpoint's rotation and waits (up to
    /// `timeout`) for its in-flight work; returns what was still in flight.
    async fn drain(&self, instance: &InstanceId, timeout: Duration) -> Result<u64, String>;

    /// Every endpoint.
    async fn report(&self) -> Result<Vec<EndpointReport>, String>;

    /// Closes every endpoint, letting in-flight requests finish.
    async fn shutdown(&self, timeout: Duration) -> Result<(), String>;

    /// Whether the endpoints keep running when the conductor stops (a
    /// separate process) — then a conductor that stops without stopping its
    /// instances leaves them serving.
    fn outlives_conductor(&self) -> bool;
}

struct Hosted {
    config: EndpointConfig,
    proxy: Option<EndpointProxy>,
    error: Option<String>,
    backends: Vec<InstanceId>,
}

/// Endpoints inside this process.
#[derive(Default)]
pub struct LocalDataPlane {
    state: Mutex<(u64, BTreeMap<Name, Hosted>)>,
}

impl LocalDataPlane {
    /// A data plane with no endpoints.
    pub fn new() -> LocalDataPlane {
        LocalDataPlane::default()
    }
}

fn same_listener(a: &EndpointConfig, b: &EndpointConfig) -> bool {
    a.listen == b.listen && a.protocol == b.protocol
}

fn report_of(hosted: &BTreeMap<Name, Hosted>) -> Vec<EndpointReport> {
    hosted
        .iter()
        .map(|(name, h)| EndpointReport {
            name: name.clone(),
            listen: h.config.listen,
            listening: h.proxy.as_ref().map(EndpointProxy::local_addr),
            error: h.error.clone(),
            backends: h.backends.clone(),
            stats: h.proxy.as_ref().map(EndpointProxy::stats),
        })
        .collect()
}

#[async_trait]
impl DataPlane for LocalDataPlane {
    async fn set_endpoints(
        &self,
        generation: u64,
        endpoints: Vec<EndpointConfig>,
    ) -> Result<Vec<EndpointReport>, String> {
        let mut st = self.state.lock().await;
        if generation < st.0 {
            return Ok(report_of(&st.1));
        }
        st.0 = generation;
        let wanted: BTreeMap<Name, EndpointConfig> =
            endpoints.into_iter().map(|c| (c.name.clone(), c)).collect();
        let names: Vec<Name> = st.1.keys().cloned().collect();
        for name in names {
            let keep = wanted
                .get(&name)
                .is_some_and(|w| st.1.get(&name).is_some_and(|h| same_listener(&h.config, w)));
            if !keep
                && let Some(h) = st.1.remove(&name)
                && let Some(p) = h.proxy
            {
                tokio::spawn(async move { p.shutdown(Duration::from_secs(10)).await });
            }
        }
        for (name, config) in wanted {
            let h = st.1.entry(name).or_insert_with(|| Hosted {
                config: config.clone(),
                proxy: None,
                error: None,
                backends: Vec::new(),
            });
            h.config = config.clone();
            if h.proxy.is_none() {
                match EndpointProxy::bind(config).await {
                    Ok(p) => {
                        h.proxy = Some(p);
                        h.error = None;
                    }
                    Err(e) => h.error = Some(crate::error_chain(&e)),
                }
            }
        }
        Ok(report_of(&st.1))
    }

    async fn set_backends(
        &self,
        endpoint: &Name,
        generation: u64,
        backends: Vec<Backend>,
    ) -> Result<bool, String> {
        let mut st = self.state.lock().await;
        let Some(h) = st.1.get_mut(endpoint) else {
            return Err(format!("no endpoint {endpoint}"));
        };
        let Some(p) = &h.proxy else {
            return Err(format!("endpoint {endpoint} is not listening"));
        };
        let ids: Vec<InstanceId> = backends.iter().map(|b| b.instance.clone()).collect();
        let applied = p.set_backends(generation, backends);
        if applied {
            h.backends = ids;
        }
        Ok(applied)
    }

    async fn drain(&self, instance: &InstanceId, timeout: Duration) -> Result<u64, String> {
        let proxies: Vec<EndpointProxy> = {
            let st = self.state.lock().await;
            st.1.values().filter_map(|h| h.proxy.clone()).collect()
        };
        let mut remaining = 0u64;
        for p in proxies {
            remaining += p.drain(instance, timeout).await.remaining as u64;
        }
        Ok(remaining)
    }

    async fn report(&self) -> Result<Vec<EndpointReport>, String> {
        Ok(report_of(&self.state.lock().await.1))
    }

    fn outlives_conductor(&self) -> bool {
        false
    }

    async fn shutdown(&self, timeout: Duration) -> Result<(), String> {
        let hosted = std::mem::take(&mut self.state.lock().await.1);
        for (_, h) in hosted {
            if let Some(p) = h.proxy {
                p.shutdown(timeout).await;
            }
        }
        Ok(())
    }
}
