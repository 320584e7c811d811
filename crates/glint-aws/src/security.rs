//! Rules as security groups: one Glint-owned group per aws service, whose
//! ingress is reconciled whole to exactly what the rules declare
//! (`rules::desired`, `rules::diff`). A permission found that nothing
//! declares — the bastion rule authorised by hand — is revoked and reported
//! as an incident naming it; a declared one removed by hand is authorised
//! again and reported. Changes that follow a new version are not incidents.

use crate::error::AwsError;
use crate::naming;
use crate::provider::Inner;
use crate::rules::{self, Permission};
use glint_model::{Name, ProviderKind, keys};
use glint_provider::ProviderEvent;
use std::collections::{BTreeMap, BTreeSet};

/// What the provider remembers of its groups between passes.
#[derive(Debug, Default)]
pub struct Groups {
    /// Each service's group id.
    ids: BTreeMap<Name, String>,
    /// The ingress each group was last brought to (by group id).
    applied: BTreeMap<String, BTreeSet<Permission>>,
    /// Sentences already said about rules not enforced.
    said: BTreeSet<String>,
}

/// What one reconciliation did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Permissions revoked, by group id.
    pub revoked: Vec<(String, Permission)>,
    /// Permissions authorised, by group id.
    pub authorized: Vec<(String, Permission)>,
    /// Incidents raised (also sent as [`ProviderEvent::Incident`]).
    pub incidents: Vec<String>,
    /// Rules that cannot be enforced on AWS, one sentence each.
    pub unenforced: Vec<String>,
}

/// The id of `service`'s group, made (tagged) if it does not exist.
pub(crate) async fn ensure_group(inner: &Inner, service: &Name) -> Result<String, AwsError> {
    let mut groups = inner.groups.lock().await;
    if let Some(id) = groups.ids.get(service) {
        return Ok(id.clone());
    }
    let mut filters = inner.owner_filters();
    filters.push(("tag:dev.glint.service", vec![service.to_string()]));
    let found = inner.ec2.describe_security_groups(&filters).await?;
    let id = match found.into_iter().next() {
        Some(g) => g.id,
        None => {
            let name = naming::group_name(&inner.store_id, &inner.environment, service);
            let tags = naming::group_tags(&inner.store_id, &inner.environment, service);
            let description = format!(
                "Glint: ingress of service {service} in environment {}, exactly as declared",
                inner.environment
            );
            match inner
                .ec2
                .create_security_group(&name, &description, inner.options.vpc.as_deref(), &tags)
                .await
            {
                Ok(id) => id,
                // A retried CreateSecurityGroup whose first answer was lost.
                Err(e) if e.code() == Some("InvalidGroup.Duplicate") => inner
                    .ec2
                    .describe_security_groups(&[("group-name", vec![name.clone()])])
                    .await?
                    .into_iter()
                    .next()
                    .map(|g| g.id)
                    .ok_or(e)?,
                Err(e) => return Err(e),
            }
        }
    };
    groups.ids.insert(service.clone(), id.clone());
    Ok(id)
}

/// One reconciliation of every Glint-owned group of the environment.
pub(crate) async fn reconcile(inner: &Inner) -> Result<Report, AwsError> {
    let mut report = Report::default();
    let Some(env) = inner.target.environment() else {
        return Ok(report);
    };
    let aws: Vec<&Name> = env
        .services
        .iter()
        .filter(|(_, s)| s.provider == ProviderKind::Aws)
        .map(|(n, _)| n)
        .collect();
    let mut ids = BTreeMap::new();
    for service in &aws {
        ids.insert((*service).clone(), ensure_group(inner, service).await?);
    }
    let mut filters = inner.owner_filters();
    filters.push(("tag:dev.glint.role", vec!["security-group".to_owned()]));
    let found = inner.ec2.describe_security_groups(&filters).await?;
    let mut groups = inner.groups.lock().await;
    for group in &found {
        let Some(service) = group
            .tags
            .get(keys::SERVICE)
            .and_then(|s| Name::new(s).ok())
        else {
            continue;
        };
        if ids.get(&service) != Some(&group.id) {
            // A group of a service no longer on AWS: gone once no instance
            // is in it (EC2 refuses while one is: DependencyViolation).
            match inner.ec2.delete_security_group(&group.id).await {
                Ok(()) => {
                    groups.ids.remove(&service);
                    groups.applied.remove(&group.id);
                }
                Err(e) => tracing::debug!(group = %group.id, error = %e, "group kept"),
            }
            continue;
        }
        let desired = rules::desired(&env, &service, &ids, inner.options.endpoint_cidr.as_deref());
        for note in desired.unenforced {
            if groups.said.insert(note.clone()) {
                tracing::warn!("{note}");
            }
            report.unenforced.push(note);
        }
        let actual: BTreeSet<Permission> = group.ingress.iter().cloned().collect();
        let diff = rules::diff(&desired.permissions, &actual);
        let previous = groups.applied.get(&group.id).cloned();
        if !diff.revoke.is_empty() {
            match inner.ec2.revoke_ingress(&group.id, &diff.revoke).await {
                Ok(()) => {}
                Err(e) if e.code() == Some("InvalidPermission.NotFound") => {}
                Err(e) => return Err(e),
            }
        }
        for p in &diff.revoke {
            report.revoked.push((group.id.clone(), p.clone()));
            // Extra ingress Glint never applied: a change made outside Glint.
            let declared_before = previous.as_ref().is_some_and(|prev| prev.contains(p));
            if !declared_before {
                let what = format!(
                    "security group {} ({}) of service `{service}` allowed {p}, which no rule declares (changed outside Glint)",
                    group.name, group.id
                );
                let _ = inner.events.send(ProviderEvent::Incident {
                    subject: format!("security group {}", group.id),
                    what: what.clone(),
                    action: "revoked it".to_owned(),
                });
                report.incidents.push(what);
            }
        }
        if !diff.authorize.is_empty() {
            match inner
                .ec2
                .authorize_ingress(&group.id, &diff.authorize)
                .await
            {
                Ok(()) => {}
                Err(e) if e.code() == Some("InvalidPermission.Duplicate") => {}
                Err(e) => return Err(e),
            }
        }
        for p in &diff.authorize {
            report.authorized.push((group.id.clone(), p.clone()));
            if previous.as_ref().is_some_and(|prev| prev.contains(p)) {
                let what = format!(
                    "security group {} ({}) of service `{service}` lacked the declared {p} (removed outside Glint)",
                    group.name, group.id
                );
                let _ = inner.events.send(ProviderEvent::Incident {
                    subject: format!("security group {}", group.id),
                    what: what.clone(),
                    action: "authorised it again".to_owned(),
                });
                report.incidents.push(what);
            }
        }
        groups.applied.insert(group.id.clone(), desired.permissions);
    }
    Ok(report)
}
