//! The firewall, as a pure function: a version's rules and the live instance
//! addresses in, the text of Glint's own nftables table out.
//!
//! One table per store (`inet glint_<hash>`, [`table_name`]), so that two
//! conductors on one host never touch each other's rules. It holds:
//!
//! - `links`: the host-side links of this store's instances (their names
//!   come from the instance ids, see `glint_provider::process::net`), known
//!   from the launch intent on, so an instance is filtered from its first
//!   packet;
//! - `svc_<service>`: the addresses of each service's live instances — the
//!   only thing that changes when instances come and go ([`set_update`]);
//! - chain `forward` (traffic routed to an instance: from another instance
//!   or from outside) and chain `output` (traffic from the host itself: the
//!   data plane and health probes, leaving from `10.88.0.1`): anything not
//!   going to one of `links` is accepted untouched (this table filters only
//!   traffic to Glint's instances); replies (`ct state
//!   established,related`) are accepted; then one `accept` per declared rule;
//!   then `drop`. The base chains' policy is `accept` only so that traffic
//!   that is not Glint's is never affected; traffic to an instance that no
//!   rule accepts is dropped.
//!
//! What each rule kind becomes:
//!
//! - service → service: `ip saddr @svc_FROM ip daddr @svc_TO tcp dport {…}`;
//! - CIDR → service: `ip saddr CIDR ip daddr @svc_TO …` (`ip6` for IPv6);
//! - endpoint → service: the host (where endpoints run) to the service on
//!   the ports, in `output`; every service is also reachable from the host
//!   on its own port (endpoints route there and health probes check it).
//!
//! Ports left empty mean the service's port. Rules that name a service on
//! another provider than the process provider are left out (Docker
//! services are not enforced yet; the language warns, E0605).

use glint_model::{Environment, Name, ProviderKind, RuleSource, Service, Transport};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::net::{IpAddr, Ipv4Addr};

/// The host's address on every instance link.
pub const HOST_ADDR: Ipv4Addr = glint_provider::process::net::HOST_ADDR;

/// Whether `service` of `env` gets its own network (and so is filtered): a
/// process service of an environment that declares rules.
pub fn own_network(env: &Environment, service: &Service) -> bool {
    !env.rules.is_empty() && service.provider == ProviderKind::Process
}

/// The name of the nftables table of store `store_id` (family `inet`).
pub fn table_name(store_id: &str) -> String {
    let h = glint_provider::process::net::link_name(store_id);
    format!("glint_{}", &h[2..10])
}

/// The live members the ruleset is computed from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Members {
    /// The addresses of each service's live instances.
    pub addrs: BTreeMap<Name, BTreeSet<Ipv4Addr>>,
    /// The host-side links of every instance of the store (launching ones
    /// included).
    pub links: BTreeSet<String>,
}

/// One declared flow as the table enforces it (also what `plan` shows).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Flow {
    name: String,
    from: Source,
    to: Name,
    ports: Vec<u16>,
    transport: Transport,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    Service(Name),
    Net(IpAddr, u8),
    Host,
}

fn is_process(env: &Environment, service: &Name) -> bool {
    env.services
        .get(service)
        .is_some_and(|s| s.provider == ProviderKind::Process)
}

/// Every flow the table accepts, in a stable order: the declared rules by
/// name, then the host's access to each service's port.
fn flows(env: &Environment) -> Vec<Flow> {
    let mut out = Vec::new();
    for (name, rule) in &env.rules {
        if !is_process(env, &rule.to) {
            continue;
        }
        let from = match &rule.from {
            RuleSource::Service(s) if is_process(env, s) => Source::Service(s.clone()),
            RuleSource::Service(_) => continue,
            RuleSource::Cidr(c) => Source::Net(c.addr(), c.prefix()),
            RuleSource::Endpoint(_) => Source::Host,
        };
        let ports = if rule.ports.is_empty() {
            env.services
                .get(&rule.to)
                .map(|s| vec![s.port])
                .unwrap_or_default()
        } else {
            let mut p = rule.ports.clone();
            p.sort_unstable();
            p.dedup();
            p
        };
        out.push(Flow {
            name: format!("rule {name}"),
            from,
            to: rule.to.clone(),
            ports,
            transport: rule.protocol,
        });
    }
    for (name, s) in &env.services {
        if s.provider == ProviderKind::Process && s.port != 0 {
            out.push(Flow {
                name: format!("host to {name}"),
                from: Source::Host,
                to: name.clone(),
                ports: vec![s.port],
                transport: Transport::Tcp,
            });
        }
    }
    out
}

fn set_name(service: &Name) -> String {
    format!("svc_{service}")
}

fn ports_text(ports: &[u16]) -> String {
    match ports {
        [one] => one.to_string(),
        many => format!(
            "{{ {} }}",
            many.iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn match_text(flow: &Flow) -> String {
    let proto = match flow.transport {
        Transport::Tcp => "tcp",
        Transport::Udp => "udp",
    };
    let from = match &flow.from {
        Source::Service(s) => format!("ip saddr @{} ", set_name(s)),
        Source::Net(IpAddr::V4(a), p) => format!("ip saddr {a}/{p} "),
        Source::Net(IpAddr::V6(a), p) => format!("ip6 saddr {a}/{p} "),
        Source::Host => String::new(),
    };
    format!(
        "{from}ip daddr @{} {proto} dport {} accept comment \"{}\"",
        set_name(&flow.to),
        ports_text(&flow.ports),
        flow.name
    )
}

fn elements<T: std::fmt::Display>(items: impl Iterator<Item = T>) -> String {
    items.map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
}

/// The whole table for `env` with `members`, as one `nft -f` transaction
/// that replaces any previous content atomically (the table is made if
/// missing, deleted and defined again in the same transaction: the kernel
/// applies all of it or none, with no moment in between).
pub fn ruleset(table: &str, env: &Environment, members: &Members) -> String {
    let mut t = String::new();
    let _ = writeln!(t, "table inet {table} {{}}");
    let _ = writeln!(t, "delete table inet {table}");
    let _ = writeln!(t, "table inet {table} {{");
    let _ = writeln!(t, "  set links {{");
    let _ = writeln!(t, "    type ifname");
    if !members.links.is_empty() {
        let quoted = members.links.iter().map(|l| format!("\"{l}\""));
        let _ = writeln!(t, "    elements = {{ {} }}", elements(quoted));
    }
    let _ = writeln!(t, "  }}");
    for service in filtered_services(env) {
        let _ = writeln!(t, "  set {} {{", set_name(service));
        let _ = writeln!(t, "    type ipv4_addr");
        if let Some(a) = members.addrs.get(service).filter(|a| !a.is_empty()) {
            let _ = writeln!(t, "    elements = {{ {} }}", elements(a.iter()));
        }
        let _ = writeln!(t, "  }}");
    }
    let all = flows(env);
    for (chain, host) in [("forward", false), ("output", true)] {
        let _ = writeln!(t, "  chain {chain} {{");
        let _ = writeln!(
            t,
            "    type filter hook {chain} priority filter; policy accept;"
        );
        let _ = writeln!(t, "    oifname != @links accept");
        let _ = writeln!(t, "    ct state established,related accept");
        for f in all.iter().filter(|f| (f.from == Source::Host) == host) {
            let _ = writeln!(t, "    {}", match_text(f));
        }
        let _ = writeln!(t, "    drop");
        let _ = writeln!(t, "  }}");
    }
    let _ = writeln!(t, "}}");
    t
}

/// The services that have a set: the process services.
fn filtered_services(env: &Environment) -> impl Iterator<Item = &Name> {
    env.services
        .iter()
        .filter(|(_, s)| s.provider == ProviderKind::Process)
        .map(|(n, _)| n)
}

/// The transaction that brings the sets of a table made by [`ruleset`] for
/// `env` from `old` to `new` without touching a rule: each changed set
/// flushed and refilled, all in one transaction. Empty when nothing changed.
pub fn set_update(table: &str, env: &Environment, old: &Members, new: &Members) -> String {
    let mut t = String::new();
    if old.links != new.links {
        let _ = writeln!(t, "flush set inet {table} links");
        if !new.links.is_empty() {
            let quoted = new.links.iter().map(|l| format!("\"{l}\""));
            let _ = writeln!(
                t,
                "add element inet {table} links {{ {} }}",
                elements(quoted)
            );
        }
    }
    let empty = BTreeSet::new();
    for service in filtered_services(env) {
        let before = old.addrs.get(service).unwrap_or(&empty);
        let after = new.addrs.get(service).unwrap_or(&empty);
        if before != after {
            let _ = writeln!(t, "flush set inet {table} {}", set_name(service));
            if !after.is_empty() {
                let _ = writeln!(
                    t,
                    "add element inet {table} {} {{ {} }}",
                    set_name(service),
                    elements(after.iter())
                );
            }
        }
    }
    t
}

/// A declared rule as `plan` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RulePlan {
    /// The rule's name.
    pub name: String,
    /// `create`, `change`, `remove` or `unchanged` (against the current
    /// version).
    #[serde(default)]
    pub action: String,
    /// Who may connect (`service api`, `10.1.0.0/16`, `endpoint web`).
    pub from: String,
    /// The service reached.
    pub to: String,
    /// The ports (the service's port when none were declared).
    pub ports: Vec<u16>,
    /// `tcp` or `udp`.
    pub protocol: String,
    /// Whether this machine's kernel enforces it (a rule on a Docker
    /// service is not enforced yet).
    pub enforced: bool,
}

/// The rules of `env` as `plan` shows them, by name.
pub fn rule_plan(env: &Environment) -> Vec<RulePlan> {
    env.rules
        .iter()
        .map(|(name, r)| {
            let (from, from_process) = match &r.from {
                RuleSource::Service(s) => (format!("service {s}"), is_process(env, s)),
                RuleSource::Cidr(c) => (format!("{}/{}", c.addr(), c.prefix()), true),
                RuleSource::Endpoint(e) => (format!("endpoint {e}"), true),
            };
            let ports = if r.ports.is_empty() {
                env.services
                    .get(&r.to)
                    .map(|s| vec![s.port])
                    .unwrap_or_default()
            } else {
                r.ports.clone()
            };
            RulePlan {
                name: name.to_string(),
                action: "create".into(),
                from,
                to: r.to.to_string(),
                ports,
                protocol: match r.protocol {
                    Transport::Tcp => "tcp".into(),
                    Transport::Udp => "udp".into(),
                },
                enforced: from_process && is_process(env, &r.to),
            }
        })
        .collect()
}

/// The rules of `next` (and those `current` had that `next` lacks), each
/// with what applying `next` does to it.
pub fn rule_changes(current: Option<&Environment>, next: &Environment) -> Vec<RulePlan> {
    let before: BTreeMap<String, RulePlan> = current
        .map(rule_plan)
        .unwrap_or_default()
        .into_iter()
        .map(|r| (r.name.clone(), r))
        .collect();
    let mut out: BTreeMap<String, RulePlan> = BTreeMap::new();
    for mut r in rule_plan(next) {
        r.action = match before.get(&r.name) {
            None => "create",
            Some(b)
                if b.from == r.from
                    && b.to == r.to
                    && b.ports == r.ports
                    && b.protocol == r.protocol =>
            {
                "unchanged"
            }
            Some(_) => "change",
        }
        .into();
        out.insert(r.name.clone(), r);
    }
    for (name, mut r) in before {
        out.entry(name).or_insert_with(|| {
            r.action = "remove".into();
            r
        });
    }
    out.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use glint_model::{Cidr, Image, Rule};

    fn name(s: &str) -> Name {
        Name::new(s).unwrap()
    }

    fn env(rules: &[(&str, RuleSource, &str, &[u16])]) -> Environment {
        let mut e = Environment::empty(name("shop"));
        e.images
            .insert(name("app"), Image::scratch(vec!["/app".into()]));
        for (svc, port) in [("web", 8080), ("api", 9000), ("db", 5432)] {
            let mut s = Service::new(name("app"));
            s.port = port;
            e.services.insert(name(svc), s);
        }
        for (n, from, to, ports) in rules {
            e.rules.insert(
                name(n),
                Rule {
                    from: from.clone(),
                    to: name(to),
                    ports: ports.to_vec(),
                    protocol: Transport::Tcp,
                },
            );
        }
        e
    }

    fn members(list: &[(&str, &[u8])]) -> Members {
        let mut m = Members::default();
        for (svc, last) in list {
            for l in *last {
                m.addrs
                    .entry(name(svc))
                    .or_default()
                    .insert(Ipv4Addr::new(10, 88, 0, *l));
                m.links.insert(format!("gl{svc}{l}"));
            }
        }
        m
    }

    fn chain<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
        let start = format!("chain {name} {{");
        text.lines()
            .skip_while(|l| l.trim() != start)
            .skip(1)
            .take_while(|l| l.trim() != "}")
            .map(str::trim)
            .collect()
    }

    #[test]
    fn without_rules_only_the_host_reaches_instances_and_everything_else_is_dropped() {
        let e = env(&[]);
        let t = ruleset("glint_t", &e, &members(&[("db", &[2])]));
        let fwd = chain(&t, "forward");
        assert_eq!(
            fwd,
            [
                "type filter hook forward priority filter; policy accept;",
                "oifname != @links accept",
                "ct state established,related accept",
                "drop",
            ],
            "{t}"
        );
        let out = chain(&t, "output");
        assert!(out.contains(&"ip daddr @svc_db tcp dport 5432 accept comment \"host to db\""));
        assert_eq!(out.last(), Some(&"drop"));
        assert!(t.contains("elements = { 10.88.0.2 }"), "{t}");
    }

    #[test]
    fn a_service_rule_accepts_from_the_source_set_to_the_target_set_on_its_ports() {
        let e = env(&[(
            "api_to_db",
            RuleSource::Service(name("api")),
            "db",
            &[5432, 5433],
        )]);
        let t = ruleset("glint_t", &e, &members(&[("api", &[2]), ("db", &[3])]));
        let fwd = chain(&t, "forward");
        assert_eq!(
            fwd[3],
            "ip saddr @svc_api ip daddr @svc_db tcp dport { 5432, 5433 } accept comment \"rule api_to_db\""
        );
        assert_eq!(fwd.len(), 5, "one accept per rule, then drop: {fwd:?}");
    }

    #[test]
    fn a_cidr_rule_matches_the_network_and_empty_ports_mean_the_service_port() {
        let cidr = Cidr::new("192.168.7.0".parse().unwrap(), 24).unwrap();
        let e = env(&[("office", RuleSource::Cidr(cidr), "db", &[])]);
        let t = ruleset("glint_t", &e, &Members::default());
        assert!(chain(&t, "forward").contains(
            &"ip saddr 192.168.7.0/24 ip daddr @svc_db tcp dport 5432 accept comment \"rule office\""
        ));
    }

    #[test]
    fn an_endpoint_rule_is_host_traffic() {
        let e = env(&[("ep", RuleSource::Endpoint(name("front")), "web", &[8443])]);
        let t = ruleset("glint_t", &e, &Members::default());
        assert!(
            chain(&t, "output")
                .contains(&"ip daddr @svc_web tcp dport 8443 accept comment \"rule ep\"")
        );
        assert!(!chain(&t, "forward").iter().any(|l| l.contains("rule ep")));
    }

    #[test]
    fn rules_on_docker_services_are_left_out() {
        let mut e = env(&[("api_to_db", RuleSource::Service(name("api")), "db", &[])]);
        e.services.get_mut(&name("db")).unwrap().provider = ProviderKind::Docker;
        let t = ruleset("glint_t", &e, &Members::default());
        assert!(!t.contains("rule api_to_db"), "{t}");
        assert!(!t.contains("svc_db"), "{t}");
        assert!(!rule_plan(&e)[0].enforced);
    }

    #[test]
    fn members_change_only_the_sets() {
        let e = env(&[("api_to_db", RuleSource::Service(name("api")), "db", &[])]);
        let a = members(&[("api", &[2]), ("db", &[3])]);
        let b = members(&[("api", &[2, 4]), ("db", &[3])]);
        let (ta, tb) = (ruleset("glint_t", &e, &a), ruleset("glint_t", &e, &b));
        assert_eq!(chain(&ta, "forward"), chain(&tb, "forward"));
        assert_eq!(chain(&ta, "output"), chain(&tb, "output"));
        let u = set_update("glint_t", &e, &a, &b);
        assert!(u.contains("flush set inet glint_t svc_api\n"), "{u}");
        assert!(
            u.contains("add element inet glint_t svc_api { 10.88.0.2, 10.88.0.4 }"),
            "{u}"
        );
        assert!(!u.contains("svc_db"), "unchanged sets are left alone: {u}");
        assert!(!u.contains("rule"), "{u}");
        assert_eq!(set_update("glint_t", &e, &b, &b), "");
    }

    #[test]
    fn equal_input_gives_equal_output_and_the_transaction_replaces_the_table() {
        let e = env(&[
            ("b", RuleSource::Service(name("web")), "api", &[]),
            ("a", RuleSource::Service(name("api")), "db", &[]),
        ]);
        let m = members(&[("db", &[9, 3, 5])]);
        let t = ruleset("glint_t", &e, &m);
        assert_eq!(t, ruleset("glint_t", &e, &m.clone()));
        assert!(t.starts_with(
            "table inet glint_t {}\ndelete table inet glint_t\ntable inet glint_t {\n"
        ));
        assert!(t.contains("elements = { 10.88.0.3, 10.88.0.5, 10.88.0.9 }"));
        let fwd = chain(&t, "forward");
        let a = fwd.iter().position(|l| l.contains("rule a")).unwrap();
        let b = fwd.iter().position(|l| l.contains("rule b")).unwrap();
        assert!(a < b, "rules in name order");
    }

    #[test]
    fn plan_says_what_a_new_version_does_to_each_rule() {
        let before = env(&[
            ("kept", RuleSource::Service(name("web")), "api", &[]),
            ("moved", RuleSource::Service(name("api")), "db", &[5432]),
            ("gone", RuleSource::Service(name("web")), "db", &[]),
        ]);
        let after = env(&[
            ("kept", RuleSource::Service(name("web")), "api", &[]),
            ("moved", RuleSource::Service(name("api")), "db", &[5433]),
            ("new", RuleSource::Endpoint(name("front")), "web", &[]),
        ]);
        let actions: Vec<(String, String)> = rule_changes(Some(&before), &after)
            .into_iter()
            .map(|r| (r.name, r.action))
            .collect();
        let pair = |a: &str, b: &str| (a.to_owned(), b.to_owned());
        assert_eq!(
            actions,
            [
                pair("gone", "remove"),
                pair("kept", "unchanged"),
                pair("moved", "change"),
                pair("new", "create"),
            ]
        );
        assert!(
            rule_changes(None, &after)
                .iter()
                .all(|r| r.action == "create")
        );
    }

    #[test]
    fn own_network_only_for_process_services_of_environments_with_rules() {
        let mut e = env(&[]);
        let web = e.services[&name("web")].clone();
        assert!(!own_network(&e, &web));
        e = env(&[("x", RuleSource::Service(name("web")), "api", &[])]);
        assert!(own_network(&e, &web));
        let mut docker = web.clone();
        docker.provider = ProviderKind::Docker;
        assert!(!own_network(&e, &docker));
        assert_eq!(table_name("store-1"), table_name("store-1"));
        assert_ne!(table_name("store-1"), table_name("store-2"));
        assert!(table_name("s").len() <= 32);
    }
}
