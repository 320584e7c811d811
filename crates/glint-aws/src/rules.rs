//! Declared rules as security-group ingress, as pure functions: what a
//! service's Glint-owned group must allow ([`desired`]) and what must change
//! for a group to allow exactly that ([`diff`]). The reconciler
//! (`security.rs`) reads the groups, calls these and applies the result.

use glint_model::{Environment, Name, ProviderKind, RuleSource, Transport};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// Where an ingress permission lets traffic come from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Source {
    /// An IPv4 or IPv6 CIDR block.
    Cidr(String),
    /// The members of a security group (`sg-…`).
    Group(String),
    /// A managed prefix list (never Glint's; only found, then revoked).
    PrefixList(String),
}

/// One ingress permission: one protocol, one port range, one source (AWS
/// groups several sources per range; Glint flattens them).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Permission {
    /// `tcp`, `udp`, or `-1` (all).
    pub protocol: String,
    /// First port (`-1` for all).
    pub from_port: i32,
    /// Last port (`-1` for all).
    pub to_port: i32,
    /// Who may connect.
    pub source: Source,
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ports = if self.from_port == self.to_port {
            self.from_port.to_string()
        } else {
            format!("{}-{}", self.from_port, self.to_port)
        };
        let from = match &self.source {
            Source::Cidr(c) => c.clone(),
            Source::Group(g) => format!("security group {g}"),
            Source::PrefixList(p) => format!("prefix list {p}"),
        };
        write!(f, "{} {ports} from {from}", self.protocol)
    }
}

/// What a service's group must allow, and the declared rules that cannot be
/// expressed as its ingress (said, never silently dropped).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Desired {
    /// Exactly the permissions the group must have.
    pub permissions: BTreeSet<Permission>,
    /// One sentence per rule not enforced, naming the rule and why.
    pub unenforced: Vec<String>,
}

/// The ingress of `service`'s group: one permission per declared rule to it
/// and port (a rule without ports: the service's port). `groups` maps the
/// environment's aws services to their group ids; `endpoint_cidr` is where
/// Glint's endpoints connect from (the data plane's address), if known.
pub fn desired(
    env: &Environment,
    service: &Name,
    groups: &BTreeMap<Name, String>,
    endpoint_cidr: Option<&str>,
) -> Desired {
    let mut out = Desired::default();
    let Some(svc) = env.services.get(service) else {
        return out;
    };
    for (name, rule) in &env.rules {
        if &rule.to != service {
            continue;
        }
        let source = match &rule.from {
            RuleSource::Cidr(c) => Source::Cidr(c.to_string()),
            RuleSource::Service(s) => match groups.get(s) {
                Some(id) => Source::Group(id.clone()),
                None => {
                    let why = match env.services.get(s) {
                        Some(other) if other.provider != ProviderKind::Aws => format!(
                            "service `{s}` runs on the {} provider, outside AWS, so it has no security group to allow",
                            other.provider
                        ),
                        _ => format!("service `{s}` has no security group yet"),
                    };
                    out.unenforced
                        .push(format!("rule `{name}` is not enforced on AWS: {why}"));
                    continue;
                }
            },
            RuleSource::Endpoint(e) => match endpoint_cidr {
                Some(c) => Source::Cidr(c.to_owned()),
                None => {
                    out.unenforced.push(format!(
                        "rule `{name}` is not enforced on AWS: endpoint `{e}` runs in Glint's data plane, whose address is not configured (GLINT_AWS_ENDPOINT_CIDR)"
                    ));
                    continue;
                }
            },
        };
        let protocol = match rule.protocol {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        };
        let ports: Vec<u16> = if rule.ports.is_empty() {
            vec![svc.port]
        } else {
            rule.ports.clone()
        };
        for port in ports {
            out.permissions.insert(Permission {
                protocol: protocol.to_owned(),
                from_port: i32::from(port),
                to_port: i32::from(port),
                source: source.clone(),
            });
        }
    }
    out
}

/// What must change for a group whose ingress is `actual` to have exactly
/// `desired`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diff {
    /// Missing permissions, to authorise.
    pub authorize: Vec<Permission>,
    /// Permissions nothing declares, to revoke.
    pub revoke: Vec<Permission>,
}

impl Diff {
    /// Nothing to change.
    pub fn is_empty(&self) -> bool {
        self.authorize.is_empty() && self.revoke.is_empty()
    }
}

/// The changes from `actual` to `desired` (both sorted, so stable).
pub fn diff(desired: &BTreeSet<Permission>, actual: &BTreeSet<Permission>) -> Diff {
    Diff {
        authorize: desired.difference(actual).cloned().collect(),
        revoke: actual.difference(desired).cloned().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use glint_model::{Cidr, Image, Rule, Service};

    fn name(s: &str) -> Name {
        Name::new(s).unwrap()
    }

    fn env() -> Environment {
        let mut e = Environment::empty(name("shop"));
        e.images
            .insert(name("app"), Image::scratch(vec!["/app".into()]));
        for (s, port) in [("web", 8080), ("api", 9000)] {
            let mut svc = Service::new(name("app"));
            svc.provider = ProviderKind::Aws;
            svc.port = port;
            e.services.insert(name(s), svc);
        }
        e.services.insert(name("local"), Service::new(name("app")));
        e
    }

    fn rule(from: RuleSource, to: &str, ports: Vec<u16>) -> Rule {
        Rule {
            from,
            to: name(to),
            ports,
            protocol: Transport::Tcp,
        }
    }

    fn tcp(port: i32, source: Source) -> Permission {
        Permission {
            protocol: "tcp".into(),
            from_port: port,
            to_port: port,
            source,
        }
    }

    fn groups() -> BTreeMap<Name, String> {
        BTreeMap::from([
            (name("web"), "sg-web".into()),
            (name("api"), "sg-api".into()),
        ])
    }

    #[test]
    fn no_rules_means_no_ingress() {
        let d = desired(&env(), &name("api"), &groups(), None);
        assert!(d.permissions.is_empty());
        assert!(d.unenforced.is_empty());
    }

    #[test]
    fn service_rules_reference_the_source_group_on_the_target_port() {
        let mut e = env();
        e.rules.insert(
            name("web-to-api"),
            rule(RuleSource::Service(name("web")), "api", vec![]),
        );
        let d = desired(&e, &name("api"), &groups(), None);
        assert_eq!(
            d.permissions,
            BTreeSet::from([tcp(9000, Source::Group("sg-web".into()))])
        );
        assert!(
            desired(&e, &name("web"), &groups(), None)
                .permissions
                .is_empty()
        );
    }

    #[test]
    fn cidr_rules_allow_each_declared_port() {
        let mut e = env();
        e.rules.insert(
            name("office"),
            rule(
                RuleSource::Cidr("192.0.2.0/24".parse::<Cidr>().unwrap()),
                "web",
                vec![80, 443],
            ),
        );
        let d = desired(&e, &name("web"), &groups(), None);
        assert_eq!(
            d.permissions,
            BTreeSet::from([
                tcp(80, Source::Cidr("192.0.2.0/24".into())),
                tcp(443, Source::Cidr("192.0.2.0/24".into())),
            ])
        );
    }

    #[test]
    fn what_cannot_be_expressed_is_said() {
        let mut e = env();
        e.rules.insert(
            name("from-local"),
            rule(RuleSource::Service(name("local")), "api", vec![]),
        );
        e.rules.insert(
            name("from-lb"),
            rule(RuleSource::Endpoint(name("front")), "web", vec![]),
        );
        let d = desired(&e, &name("api"), &groups(), None);
        assert!(d.permissions.is_empty());
        assert_eq!(d.unenforced.len(), 1);
        assert!(
            d.unenforced[0].contains("process provider"),
            "{:?}",
            d.unenforced
        );
        let d = desired(&e, &name("web"), &groups(), None);
        assert!(d.unenforced[0].contains("GLINT_AWS_ENDPOINT_CIDR"));
        let d = desired(&e, &name("web"), &groups(), Some("198.51.100.1/32"));
        assert_eq!(
            d.permissions,
            BTreeSet::from([tcp(8080, Source::Cidr("198.51.100.1/32".into()))])
        );
    }

    #[test]
    fn diff_revokes_extras_and_authorises_missing() {
        let declared = tcp(9000, Source::Group("sg-web".into()));
        let bastion = tcp(22, Source::Cidr("203.0.113.7/32".into()));
        let desired = BTreeSet::from([declared.clone()]);
        let d = diff(&desired, &BTreeSet::from([bastion.clone()]));
        assert_eq!(d.authorize, vec![declared.clone()]);
        assert_eq!(d.revoke, vec![bastion.clone()]);
        assert!(diff(&desired, &desired).is_empty());
        assert_eq!(bastion.to_string(), "tcp 22 from 203.0.113.7/32");
    }
}
