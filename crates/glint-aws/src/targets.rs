//! Endpoints as ELBv2 target groups: one Glint-owned target group per
//! endpoint whose service is on aws, holding exactly that service's running
//! instances. An instance is registered once EC2 says it runs (ELB's own
//! health check, from the service's, decides when it gets traffic) and
//! deregistered — then drained for the deregistration delay, set to the
//! service's `drain` — before it is terminated, so a rollout that launches
//! before it retires never leaves the target group empty. The background
//! re-read makes every target group exact (adopted instances registered,
//! ended ones removed).

use crate::elbv2::NewTargetGroup;
use crate::error::AwsError;
use crate::naming;
use crate::provider::Inner;
use glint_model::{EndpointProtocol, Environment, Name, Probe, ProviderKind};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// The endpoints of `env` that route to an aws service, with the service.
pub fn aws_endpoints(env: &Environment) -> Vec<(&Name, &Name)> {
    env.endpoints
        .iter()
        .filter(|(_, e)| {
            env.services
                .get(&e.service)
                .is_some_and(|s| s.provider == ProviderKind::Aws)
        })
        .map(|(n, e)| (n, &e.service))
        .collect()
}

/// The ARN of `endpoint`'s target group, made (tagged, with the service's
/// health check and drain) if it does not exist.
pub(crate) async fn ensure(
    inner: &Inner,
    env: &Environment,
    endpoint: &Name,
) -> Result<String, AwsError> {
    let mut cache = inner.target_groups.lock().await;
    if let Some(arn) = cache.get(endpoint) {
        return Ok(arn.clone());
    }
    let name = naming::target_group_name(&inner.store_id, &inner.environment, endpoint);
    let arn = match inner.elb.target_group(&name).await? {
        Some(g) => g.arn,
        None => {
            let (Some(e), Some(svc)) = (
                env.endpoints.get(endpoint),
                env.endpoints
                    .get(endpoint)
                    .and_then(|e| env.services.get(&e.service)),
            ) else {
                return Err(AwsError::Config(format!(
                    "endpoint `{endpoint}` is not in the environment"
                )));
            };
            let group = crate::security::ensure_group(inner, &e.service).await?;
            let vpc = match &inner.options.vpc {
                Some(v) => v.clone(),
                None => inner
                    .ec2
                    .describe_security_groups(&[("group-id", vec![group.clone()])])
                    .await?
                    .into_iter()
                    .find_map(|g| g.vpc)
                    .ok_or_else(|| {
                        AwsError::Config(format!(
                            "security group {group} has no VPC: set GLINT_AWS_VPC"
                        ))
                    })?,
            };
            let health_path = match svc.health.as_ref().map(|h| &h.probe) {
                Some(Probe::Http { path }) => Some(path.clone()),
                _ => None,
            };
            let protocol = match e.protocol {
                EndpointProtocol::Http => "HTTP",
                EndpointProtocol::Tcp => "TCP",
            };
            let g = inner
                .elb
                .create_target_group(&NewTargetGroup {
                    name,
                    protocol: protocol.to_owned(),
                    port: svc.port,
                    vpc,
                    health_path,
                    tags: naming::target_group_tags(&inner.store_id, &inner.environment, endpoint),
                })
                .await?;
            inner
                .elb
                .set_deregistration_delay(&g.arn, svc.drain.0.div_ceil(1000))
                .await?;
            g.arn
        }
    };
    cache.insert(endpoint.clone(), arn.clone());
    Ok(arn)
}

/// Registers EC2 instance `id` (port `port`) in the target group of every
/// endpoint of `service`.
pub(crate) async fn register(
    inner: &Inner,
    service: &Name,
    id: &str,
    port: u16,
) -> Result<(), AwsError> {
    let Some(env) = inner.target.environment() else {
        return Ok(());
    };
    for (endpoint, svc) in aws_endpoints(&env) {
        if svc == service {
            let arn = ensure(inner, &env, endpoint).await?;
            inner.elb.register(&arn, &[(id.to_owned(), port)]).await?;
        }
    }
    Ok(())
}

/// Deregisters EC2 instance `id` from every Glint target group that holds
/// it, then waits (at most `drain`, plus a little) until ELB has drained it.
pub(crate) async fn deregister(inner: &Inner, id: &str, drain: Duration) -> Result<(), AwsError> {
    let _ops = inner.target_ops.lock().await;
    if let Some(env) = inner.target.environment() {
        for (endpoint, _) in aws_endpoints(&env) {
            ensure(inner, &env, endpoint).await?;
        }
    }
    let arns: Vec<String> = inner.target_groups.lock().await.values().cloned().collect();
    let mut draining = Vec::new();
    for arn in arns {
        let held: Vec<(String, u16)> = inner
            .elb
            .health(&arn)
            .await?
            .into_iter()
            .filter(|t| t.id == id)
            .map(|t| (t.id, t.port.unwrap_or(0)))
            .collect();
        if !held.is_empty() {
            inner.elb.deregister(&arn, &held).await?;
            draining.push(arn);
        }
    }
    let deadline = tokio::time::Instant::now() + drain + Duration::from_secs(5);
    for arn in draining {
        loop {
            let left = inner
                .elb
                .health(&arn)
                .await?
                .into_iter()
                .any(|t| t.id == id && t.state != "unused");
            if !left || tokio::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    Ok(())
}

/// Makes every target group hold exactly its service's running instances
/// (EC2 id → port) that are not being retired.
pub(crate) async fn reconcile(
    inner: &Inner,
    running: &BTreeMap<Name, BTreeMap<String, u16>>,
) -> Result<(), AwsError> {
    let Some(env) = inner.target.environment() else {
        return Ok(());
    };
    let _ops = inner.target_ops.lock().await;
    // Read under the lock: an instance a termination took out stays out.
    let retiring: BTreeSet<String> = inner.retiring.lock().map(|r| r.clone()).unwrap_or_default();
    for (endpoint, service) in aws_endpoints(&env) {
        let arn = ensure(inner, &env, endpoint).await?;
        let want: BTreeSet<(String, u16)> = running
            .get(service)
            .into_iter()
            .flatten()
            .filter(|(id, _)| !retiring.contains(*id))
            .map(|(id, port)| (id.clone(), *port))
            .collect();
        let have: BTreeSet<(String, u16)> = inner
            .elb
            .health(&arn)
            .await?
            .into_iter()
            .filter(|t| t.state != "draining")
            .map(|t| (t.id, t.port.unwrap_or(0)))
            .collect();
        let add: Vec<_> = want.difference(&have).cloned().collect();
        let remove: Vec<_> = have.difference(&want).cloned().collect();
        inner.elb.register(&arn, &add).await?;
        inner.elb.deregister(&arn, &remove).await?;
    }
    Ok(())
}
