//! What `glint plan` says about the AWS resources a version needs: one
//! Glint-owned security group per aws service with exactly its declared
//! ingress, its EC2 instances (type, AMI), and a target group per endpoint
//! of an aws service. Pure: nothing is called.

use crate::naming;
use crate::rules;
use glint_model::{Digest, Environment, Name, ProviderKind};
use std::collections::BTreeMap;

/// One line per AWS resource the environment needs, in order; empty when
/// no service is on the aws provider. `images` are the version's digests;
/// `amis` the configured mapping (`GLINT_AWS_AMIS`, else
/// `GLINT_AWS_DEFAULT_AMI`).
pub fn lines(
    env: &Environment,
    store_id: &str,
    images: &BTreeMap<Name, Digest>,
    amis: &BTreeMap<Digest, String>,
    default_ami: Option<&str>,
) -> Vec<String> {
    let aws: Vec<&Name> = env
        .services
        .iter()
        .filter(|(_, s)| s.provider == ProviderKind::Aws)
        .map(|(n, _)| n)
        .collect();
    let groups: BTreeMap<Name, String> = aws
        .iter()
        .map(|s| ((*s).clone(), naming::group_name(store_id, &env.name, s)))
        .collect();
    let mut out = Vec::new();
    for service in aws {
        let Some(svc) = env.services.get(service) else {
            continue;
        };
        let desired = rules::desired(env, service, &groups, None);
        let ingress: Vec<String> = desired.permissions.iter().map(|p| p.to_string()).collect();
        out.push(format!(
            "security group {} (tagged dev.glint.*), ingress exactly: {}",
            groups.get(service).map_or("?", String::as_str),
            if ingress.is_empty() {
                "none".to_owned()
            } else {
                ingress.join(", ")
            }
        ));
        for note in desired.unenforced {
            out.push(format!("  ! {note}"));
        }
        let ty = naming::instance_type(&svc.resources).unwrap_or_else(|e| {
            out.push(format!("  ! {e}"));
            "?"
        });
        let ami = images
            .get(&svc.image)
            .and_then(|d| amis.get(d))
            .map(String::as_str)
            .or(default_ami)
            .unwrap_or("no AMI mapped (GLINT_AWS_AMIS): launches will fail");
        out.push(format!(
            "EC2 instances of service {service}: {} × {ty}, AMI {ami}, tagged with their labels",
            svc.instances
        ));
    }
    for (endpoint, service) in crate::targets::aws_endpoints(env) {
        out.push(format!(
            "target group {} of endpoint {endpoint}: the running instances of service {service}",
            naming::target_group_name(store_id, &env.name, endpoint)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use glint_model::{Image, Service};

    #[test]
    fn aws_services_get_a_group_and_instances() {
        let name = |s: &str| Name::new(s).unwrap();
        let mut e = Environment::empty(name("shop"));
        e.images
            .insert(name("app"), Image::scratch(vec!["/app".into()]));
        let mut web = Service::new(name("app"));
        web.provider = ProviderKind::Aws;
        web.instances = 2;
        e.services.insert(name("web"), web);
        e.services.insert(name("local"), Service::new(name("app")));
        let d = Digest::of(b"app");
        let images = BTreeMap::from([(name("app"), d.clone())]);
        let amis = BTreeMap::from([(d, "ami-1".to_owned())]);
        let l = lines(&e, "s1", &images, &amis, None);
        assert_eq!(
            l,
            vec![
                "security group glint-shop-s1-web (tagged dev.glint.*), ingress exactly: none"
                    .to_owned(),
                "EC2 instances of service web: 2 × t3.micro, AMI ami-1, tagged with their labels"
                    .to_owned(),
            ]
        );
        assert!(lines(&e, "s1", &images, &BTreeMap::new(), None)[1].contains("no AMI mapped"));
    }
}
