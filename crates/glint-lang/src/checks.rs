//! Whole-environment checks, run once every declaration is decoded: images
//! built from each other in a cycle, endpoints whose listeners overlap,
//! shared volumes that more than one instance could write, and the
//! capabilities declared but not enforced by this build.

use crate::capability::Capabilities;
use crate::codes::Code;
use crate::diag::Diagnostic;
use crate::eval::DeclTable;
use crate::eval::Eval;
use crate::fxhash::FxMap;
use crate::schema::Uses;
use crate::value::Kind;
use glint_model::{Environment, ImageBase, Name};
use std::net::SocketAddr;

/// Reports images built `from` each other in a cycle.
pub(crate) fn image_cycles(ev: &mut Eval<'_>, env: &Environment, spans: &DeclTable) {
    // Iterative colouring over `from = image.X` edges (each image has at most one).
    let mut state: FxMap<&str, u8> = FxMap::default(); // 1 visiting, 2 done
    for start in env.images.keys() {
        if state.contains_key(start.as_str()) {
            continue;
        }
        let mut path: Vec<&str> = Vec::new();
        let mut cur = start.as_str();
        loop {
            match state.get(cur) {
                Some(2) => break,
                Some(_) => {
                    // Cycle: from `cur` around to `cur`.
                    let pos = path.iter().position(|p| *p == cur).unwrap_or(0);
                    let cycle = &path[pos..];
                    let chain = cycle
                        .iter()
                        .chain(std::iter::once(&cur))
                        .copied()
                        .collect::<Vec<_>>()
                        .join(" -> ");
                    let span_of = |n: &str| spans.span(Kind::Image, n).unwrap_or_default();
                    let mut d = Diagnostic::error(
                        Code::ReferenceCycle,
                        span_of(cur),
                        format!("images are built from each other in a cycle: {chain}"),
                    )
                    .with_primary("this image is part of the cycle");
                    for other in cycle.iter().skip(1) {
                        d = d.with_label(span_of(other), "also in the cycle");
                    }
                    ev.diags.push(d.with_help(
                        "one image in the cycle must start `from = scratch` or an archive",
                    ));
                    break;
                }
                None => {}
            }
            state.insert(cur, 1);
            path.push(cur);
            match env.images.get(cur).map(|i| &i.from) {
                Some(ImageBase::Image { name }) if env.images.contains_key(name) => {
                    cur = name.as_str()
                }
                _ => break,
            }
        }
        for p in path {
            state.insert(p, 2);
        }
    }
}

/// The endpoints already listening on one port, by address family.
#[derive(Default)]
struct OnPort<'a> {
    /// The first endpoint on a specific IPv4 / IPv6 address.
    v4: Option<(&'a Name, SocketAddr)>,
    v6: Option<(&'a Name, SocketAddr)>,
    /// The endpoint on `0.0.0.0` / `[::]` (all addresses; on Linux `[::]`
    /// also takes the IPv4 port).
    any_v4: Option<(&'a Name, SocketAddr)>,
    any_v6: Option<(&'a Name, SocketAddr)>,
}

/// Reports endpoints that cannot both listen: the same address and port, or
/// the same port where one listens on every address (`0.0.0.0:8080` takes
/// `127.0.0.1:8080` too). Linear in the number of endpoints.
pub(crate) fn listen_conflicts(ev: &mut Eval<'_>, env: &Environment, spans: &DeclTable) {
    let mut exact: FxMap<SocketAddr, &Name> = FxMap::default();
    let mut ports: FxMap<u16, OnPort<'_>> = FxMap::default();
    let span_of = |n: &str| spans.span(Kind::Endpoint, n).unwrap_or_default();
    for (name, e) in &env.endpoints {
        let addr = e.listen;
        let clash = if let Some(first) = exact.get(&addr) {
            Some((*first, addr, None))
        } else {
            let on = ports.entry(addr.port()).or_default();
            let ip = addr.ip();
            let found = match (ip.is_ipv4(), ip.is_unspecified()) {
                (true, false) => on.any_v4.or(on.any_v6),
                (true, true) => on.any_v6.or(on.v4).or(on.any_v4),
                (false, false) => on.any_v6,
                (false, true) => on.any_v4.or(on.v4).or(on.v6).or(on.any_v6),
            };
            found.map(|(n, a)| (n, a, Some(a)))
        };
        match clash {
            Some((first, first_addr, overlap)) => {
                let (message, help) = match overlap {
                    None => (
                        format!("endpoints `{first}` and `{name}` both listen on {addr}"),
                        "give each endpoint its own port".to_owned(),
                    ),
                    Some(_) => (
                        format!(
                            "endpoints `{first}` ({first_addr}) and `{name}` ({addr}) overlap on port {}",
                            addr.port()
                        ),
                        "an endpoint on 0.0.0.0 or [::] takes the port on every address; give the endpoints different ports, or listen on specific addresses only".to_owned(),
                    ),
                };
                ev.diags.push(
                    Diagnostic::error(Code::ListenConflict, span_of(name.as_str()), message)
                        .with_primary(format!("listens on {addr}"))
                        .with_label(span_of(first.as_str()), format!("listens on {first_addr}"))
                        .with_help(help),
                );
            }
            None => {
                exact.insert(addr, name);
                let on = ports.entry(addr.port()).or_default();
                let ip = addr.ip();
                let slot = match (ip.is_ipv4(), ip.is_unspecified()) {
                    (true, false) => &mut on.v4,
                    (true, true) => &mut on.any_v4,
                    (false, false) => &mut on.v6,
                    (false, true) => &mut on.any_v6,
                };
                slot.get_or_insert((name, addr));
            }
        }
    }
}

/// Reports shared (not per-instance) volumes that more than one instance
/// could mount read-write at once: mounted read-write by two services, or by
/// one whose count can go above one (`instances`, `autoscale.max`).
pub(crate) fn shared_writable_volumes(ev: &mut Eval<'_>, env: &Environment, spans: &DeclTable) {
    for (vname, vol) in &env.volumes {
        if vol.per_instance {
            continue;
        }
        let writers: Vec<(&Name, u32)> = env
            .services
            .iter()
            .filter(|(_, s)| s.mounts.iter().any(|m| &m.volume == vname && !m.read_only))
            .map(|(n, s)| (n, s.autoscale.as_ref().map_or(s.instances, |a| a.max)))
            .collect();
        let count: u32 = writers.iter().map(|(_, n)| *n).sum();
        if count <= 1 && writers.len() <= 1 {
            continue;
        }
        let Some(((first, n), others)) = writers.split_first() else {
            continue;
        };
        let span_of = |k: Kind, n: &str| spans.span(k, n).unwrap_or_default();
        let message = if others.is_empty() {
            format!(
                "volume `{vname}` is mounted read-write by service `{first}`, which may run {n} instances at once"
            )
        } else {
            let names: Vec<String> = writers.iter().map(|(n, _)| format!("`{n}`")).collect();
            format!(
                "volume `{vname}` is mounted read-write by services {}",
                names.join(" and ")
            )
        };
        let mut d = Diagnostic::error(
            Code::SharedWritableVolume,
            span_of(Kind::Service, first.as_str()),
            message,
        )
        .with_primary("a second writer would corrupt the volume")
        .with_label(span_of(Kind::Volume, vname.as_str()), "declared here");
        for (o, _) in others {
            d = d.with_label(span_of(Kind::Service, o.as_str()), "also writes it");
        }
        ev.diags.push(d.with_help(format!(
            "declare `volume {vname} {{ per_instance = true }}` so that each instance gets its own (`{vname}-0`, `{vname}-1`, ...), or mount it `read_only = true` where it is only read"
        )));
    }
}

/// One warning for the rules that name a Docker service while this build
/// enforces rules (between process instances only), pointing at each.
pub(crate) fn docker_rules(
    ev: &mut Eval<'_>,
    env: &Environment,
    spans: &DeclTable,
    enforced: &Capabilities,
) {
    if !enforced.contains(crate::capability::Capability::FirewallRules) {
        return; // E0600 already says that no rule is enforced
    }
    let docker = |n: &Name| {
        env.services
            .get(n)
            .is_some_and(|s| s.provider == glint_model::ProviderKind::Docker)
    };
    let on_docker: Vec<&Name> = env
        .rules
        .iter()
        .filter(|(_, r)| {
            docker(&r.to) || matches!(&r.from, glint_model::RuleSource::Service(s) if docker(s))
        })
        .map(|(n, _)| n)
        .collect();
    let Some((first, others)) = on_docker.split_first() else {
        return;
    };
    let span_of = |n: &str| spans.span(Kind::Rule, n).unwrap_or_default();
    let mut d = Diagnostic::warning(
        Code::DockerRulesNotEnforced,
        span_of(first.as_str()),
        "rules on Docker services are not enforced yet",
    )
    .with_primary(format!(
        "rule `{first}` names a Docker service: not enforced"
    ));
    for o in others {
        d = d.with_label(
            span_of(o.as_str()),
            format!("rule `{o}`: not enforced either"),
        );
    }
    ev.diags.push(
        d.with_note("Docker containers stay on their per-environment Docker network, where every container can reach every other")
            .with_help("run the service on the process provider to have its rules enforced by the kernel, or do not rely on this rule until Docker services are enforced"),
    );
}

/// One warning per capability that declarations ask for and this build does
/// not enforce, pointing at the first few places.
pub(crate) fn not_enforced(ev: &mut Eval<'_>, uses: &Uses, enforced: &Capabilities) {
    for (c, (count, places)) in &uses.by {
        if enforced.contains(*c) {
            continue;
        }
        let Some(((first, what), others)) = places.split_first() else {
            continue;
        };
        let mut d = Diagnostic::warning(
            c.code(),
            *first,
            format!("{} are declared but not enforced yet", c.declared()),
        )
        .with_primary(format!("{what}: not enforced"));
        for (span, what) in others {
            d = d.with_label(*span, format!("{what}: not enforced either"));
        }
        let more = count - places.len();
        d = d.with_note(match (count, more) {
            (1, _) => c.consequence().to_owned(),
            (_, 0) => format!("{count} places ask for it; {}", c.consequence()),
            _ => format!(
                "{count} places ask for it ({more} not shown); {}",
                c.consequence()
            ),
        });
        d = d.with_help(format!(
            "this build of glint records them in every version but does not act on them (capability `{c}`); do not rely on them until it does"
        ));
        ev.diags.push(d);
    }
}
