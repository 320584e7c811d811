//! Declared rules enforced by the kernel, through the real `glint` binary:
//! process instances of an environment with rules get their own network
//! namespaces and addresses, Glint's nftables table lets through only the
//! declared flows (service → service, CIDR → service, the host to each
//! service's port: the endpoint keeps serving), a change made to the table
//! by hand is reverted and recorded as an incident, a new version's rules
//! replace the old ones in one transaction, and a restarted conductor finds
//! the addresses again.
//!
//! Connections are made from inside the instances' own network namespaces
//! (and from client namespaces the tests make, holding an address of a
//! declared CIDR or not), so what is checked is what the kernel does to the
//! instances' traffic. Needs root, `ip` and `nft`: skipped otherwise, unless
//! `GLINT_REQUIRE_NFT=1` (CI). The refusal to apply unenforceable rules is
//! checked as any user.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use glint_provider::process::net::link_name;
use glint_sandbox::NetNs;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One network test at a time: they make namespaces and links on the host.
static SERIAL: Mutex<()> = Mutex::new(());

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn sh(program: &str, args: &[&str]) -> std::process::Output {
    Command::new(program).args(args).output().unwrap()
}

fn must(program: &str, args: &[&str]) {
    let out = sh(program, args);
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        text(&out.stderr)
    );
}

/// The environment: `web` behind an endpoint, `api`, `web` may reach `api`,
/// and `rules` (more `rule` blocks).
fn environment(rules: &str) -> String {
    let service = |name: &str| {
        format!(
            r#"
service {name} {{
  image     = image.hello
  instances = 1
  health {{
    http     = "/healthz"
    interval = 1s
    timeout  = 500ms
    start_timeout = 5s
  }}
  stop_grace = 2s
  drain      = 1s
}}
"#
        )
    };
    format!(
        r#"
image hello {{
  from = scratch
  copy "app/hello" to "/bin/hello"
  entrypoint = ["/bin/hello"]
  port = 8080
}}
{}{}
endpoint public {{
  listen  = 127.0.0.1:{{port}}
  service = service.web
}}

rule web_to_api {{
  from = service.web
  to   = service.api
}}
{rules}"#,
        service("web"),
        service("api")
    )
}

/// A running environment with rules, and everything the test made on the
/// host, removed when dropped.
struct Net {
    ctx: Ctx,
    clients: Vec<String>,
    conductor: u32,
}

impl Net {
    fn start(rules: &str) -> Net {
        let mut ctx = Ctx::new();
        ctx.write("n.glint", &environment(rules));
        let conductor = ctx.spawn("up", &["up", "n.glint"]);
        let net = Net {
            ctx,
            clients: Vec::new(),
            conductor,
        };
        net.wait_ready();
        net
    }

    fn wait_ready(&self) -> Value {
        self.ctx.wait_status("web and api healthy, routed", |s| {
            healthy(s).len() == 2
                && instances(s).len() == 2
                && s["endpoints"][0]["backends"].as_u64() == Some(1)
        })
    }

    /// The instance of `service`: (id, address).
    fn instance(&self, service: &str) -> (String, SocketAddr) {
        let s = self.ctx.status();
        let svc = s["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == service)
            .unwrap()
            .clone();
        let i = svc["instances"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["state"] == "running")
            .unwrap()
            .clone();
        (
            i["id"].as_str().unwrap().to_owned(),
            i["address"].as_str().unwrap().parse().unwrap(),
        )
    }

    /// The network namespace of `service`'s instance.
    fn netns(&self, service: &str) -> NetNs {
        let (id, _) = self.instance(service);
        NetNs::open(&glint_provider::process::net::netns_path(&link_name(&id))).unwrap()
    }

    fn table(&self) -> String {
        glint_conductor::firewall::table_name(&self.ctx.store_id())
    }

    fn listing(&self) -> Option<String> {
        let out = sh("nft", &["list", "table", "inet", &self.table()]);
        out.status.success().then(|| text(&out.stdout))
    }

    /// Waits (up to 20 s) until the table's listing satisfies `cond`.
    fn wait_table(&self, what: &str, cond: impl Fn(Option<&str>) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let l = self.listing();
            if cond(l.as_deref()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; table:\n{l:?}\nevents:\n{}",
                self.ctx.ok(&["events", "-n", "30"])
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A client network namespace holding `addr`, routed from the host like
    /// a machine of that network would be.
    fn client(&mut self, addr: Ipv4Addr) -> NetNs {
        let name = format!("gt{}{}", std::process::id() % 100_000, self.clients.len());
        let _ = sh("ip", &["netns", "del", &name]);
        let _ = sh("ip", &["link", "del", &name]);
        must("ip", &["netns", "add", &name]);
        self.clients.push(name.clone());
        must(
            "ip",
            &[
                "link", "add", &name, "type", "veth", "peer", "name", "eth0", "netns", &name,
            ],
        );
        let gw = Ipv4Addr::from(u32::from(addr) & 0xffff_ff00 | 1).to_string();
        must("ip", &["addr", "add", &format!("{gw}/32"), "dev", &name]);
        must("ip", &["link", "set", &name, "up"]);
        must("ip", &["route", "add", &format!("{addr}/32"), "dev", &name]);
        let inside = |args: &[&str]| {
            let mut all = vec!["-n", name.as_str()];
            all.extend_from_slice(args);
            must("ip", &all);
        };
        inside(&["link", "set", "lo", "up"]);
        inside(&["addr", "add", &format!("{addr}/32"), "dev", "eth0"]);
        inside(&["link", "set", "eth0", "up"]);
        inside(&[
            "route", "add", "default", "via", &gw, "dev", "eth0", "onlink",
        ]);
        NetNs::open(&glint_provider::process::net::netns_path(&name)).unwrap()
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for c in &self.clients {
            let _ = sh("ip", &["link", "del", c]);
            let _ = sh("ip", &["netns", "del", c]);
        }
        // The instances, their networks and the table: the context's guard.
    }
}

/// Whether an HTTP GET of `/` to `to` from inside `from` is answered.
fn reaches(from: &NetNs, to: SocketAddr) -> bool {
    from.run_in(move || {
        let Ok(mut s) = TcpStream::connect_timeout(&to, Duration::from_secs(1)) else {
            return false;
        };
        s.set_read_timeout(Some(Duration::from_secs(2))).ok();
        if s.write_all(b"GET / HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n")
            .is_err()
        {
            return false;
        }
        let mut buf = String::new();
        s.read_to_string(&mut buf).is_ok() && buf.starts_with("HTTP/1.1 200")
    })
    .unwrap()
}

fn events(ctx: &Ctx) -> String {
    ctx.ok(&["events", "-n", "200"])
}

// Mutations caught: instances left on the host network (no netns: the
// address is 127.0.0.1), a rule not compiled (web → api dropped), the
// default drop missing (api → web reaches), the CIDR not matched or matched
// too widely, the host's access to the service port missing (the endpoint
// fails, health checks never pass).
#[test]
fn declared_flows_connect_and_nothing_else_does() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !nft_available() {
        return;
    }
    let mut net = Net::start(
        "rule office {\n  from  = 192.168.77.0/24\n  to    = service.api\n  ports = [8080]\n}\n",
    );
    let (_, web) = net.instance("web");
    let (_, api) = net.instance("api");
    for a in [web, api] {
        assert!(
            matches!(a.ip(), std::net::IpAddr::V4(v) if glint_provider::process::net::in_subnet(v)),
            "an instance of an environment with rules has its own address: {a}"
        );
        assert_eq!(a.port(), 8080, "it listens on the image's declared port");
    }
    let (web_ns, api_ns) = (net.netns("web"), net.netns("api"));
    assert!(reaches(&web_ns, api), "declared: web → api");
    assert!(!reaches(&api_ns, web), "not declared: api → web");
    // The endpoint (on the host) still serves through the data plane.
    let body = get(net.ctx.endpoint(), "/").unwrap();
    assert!(body.contains("service web"), "{body}");
    // The office network reaches api, and only api; another network nothing.
    let office = net.client(Ipv4Addr::new(192, 168, 77, 2));
    assert!(reaches(&office, api), "declared: 192.168.77.0/24 → api");
    assert!(
        !reaches(&office, web),
        "not declared: 192.168.77.0/24 → web"
    );
    let outside = net.client(Ipv4Addr::new(192, 168, 78, 2));
    assert!(
        !reaches(&outside, api),
        "not declared: 192.168.78.0/24 → api"
    );
    let status = net.ctx.ok(&["status"]);
    assert!(
        status.contains(&format!(
            "2 rules enforced in nftables table inet {}",
            net.table()
        )),
        "{status}"
    );
    // Down: the instances' namespaces and links go with them, and the table.
    let ids = [net.instance("web").0, net.instance("api").0];
    net.ctx.ok(&["down"]);
    net.wait_table("the table to be removed", |l| l.is_none());
    for id in ids {
        let name = link_name(&id);
        assert!(
            !glint_provider::process::net::netns_path(&name).exists(),
            "{id}'s namespace is removed with it"
        );
        assert!(
            !text(&sh("ip", &["-o", "link"]).stdout).contains(&name),
            "{id}'s link is removed with it"
        );
    }
}

// Mutations caught: no re-read of the table (the rule stays, the bastion
// reaches web), a drift without an incident, an incident that does not name
// the rule, a deleted table not put back (everything open: api → web
// reaches).
#[test]
fn a_rule_added_by_hand_or_a_deleted_table_is_reverted_and_an_incident() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !nft_available() {
        return;
    }
    let net = Net::start("");
    let (_, web) = net.instance("web");
    let (_, api) = net.instance("api");
    let api_ns = net.netns("api");
    let table = net.table();
    // The bastion case: api opened to web by hand.
    let opened = format!("ip saddr {} accept", api.ip());
    must(
        "nft",
        &[
            "insert",
            "rule",
            "inet",
            &table,
            "forward",
            "ip",
            "saddr",
            &api.ip().to_string(),
            "accept",
        ],
    );
    net.wait_table("the hand-made rule to be removed", |l| {
        l.is_some_and(|l| !l.contains(&opened) && l.contains("rule web_to_api"))
    });
    assert!(
        !reaches(&api_ns, web),
        "the hand-made opening is closed again"
    );
    let ev = events(&net.ctx);
    assert!(
        ev.contains(&format!(
            "firewall drift in table inet {table}: found `{opened}`; the declared ruleset was applied again"
        )),
        "{ev}"
    );
    // The whole table deleted: put back.
    must("nft", &["delete", "table", "inet", &table]);
    net.wait_table("the table to be back", |l| {
        l.is_some_and(|l| l.contains("rule web_to_api"))
    });
    assert!(!reaches(&api_ns, web), "default drop again");
    assert!(
        reaches(&net.netns("web"), api),
        "and the declared flow open"
    );
    let ev = events(&net.ctx);
    assert!(
        ev.contains(&format!("table inet {table} was deleted")),
        "{ev}"
    );
    // One event per change, recorded as one incident on the table.
    assert_eq!(ev.matches("firewall drift").count(), 2, "{ev}");
    let inc: Value = serde_json::from_str(&net.ctx.ok(&["incidents", "-o", "json"])).unwrap();
    let inc: Vec<&Value> = inc["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["kind"] == "firewall-drift")
        .collect();
    assert_eq!(inc.len(), 1, "{inc:?}");
    assert_eq!(inc[0]["subject"], format!("table inet {table}"));
    assert_eq!(inc[0]["count"], 2, "{inc:?}");
}

// Mutations caught: rules of the old version kept (api → web still
// dropped), instances replaced for a rule change, a window during the
// change where a flow both versions allow fails or one neither allows opens.
#[test]
fn a_new_version_s_rules_replace_the_old_ones_in_one_transaction() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !nft_available() {
        return;
    }
    let mut net = Net::start("");
    let (web_id, web) = net.instance("web");
    let (api_id, api) = net.instance("api");
    let (web_ns, api_ns) = (net.netns("web"), net.netns("api"));
    let stranger = net.client(Ipv4Addr::new(192, 168, 79, 2));
    assert!(!reaches(&api_ns, web));
    // Probe while the new version is applied: web → api (allowed by both)
    // must always connect, the stranger (allowed by neither) never.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let prober = {
        let stop = stop.clone();
        let web_ns = web_ns.try_clone().unwrap();
        let stranger = stranger.try_clone().unwrap();
        std::thread::spawn(move || {
            let (mut ok, mut failed, mut opened) = (0u32, 0u32, 0u32);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if reaches(&web_ns, api) {
                    ok += 1;
                } else {
                    failed += 1;
                }
                if reaches(&stranger, api) || reaches(&stranger, web) {
                    opened += 1;
                }
            }
            (ok, failed, opened)
        })
    };
    net.ctx.write(
        "n.glint",
        &environment("rule api_to_web {\n  from  = service.api\n  to    = service.web\n  ports = [8080]\n}\n"),
    );
    let plan = net.ctx.ok(&["plan", "n.glint"]);
    assert!(
        plan.contains("+ rule api_to_web: create (service api → service web on tcp 8080)"),
        "{plan}"
    );
    assert!(plan.contains("  rule web_to_api: unchanged"), "{plan}");
    net.ctx.ok(&["apply", "n.glint"]);
    net.wait_table("the new rule", |l| {
        l.is_some_and(|l| l.contains("rule api_to_web") && l.contains("rule web_to_api"))
    });
    assert!(reaches(&api_ns, web), "the new version's rule is enforced");
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed, opened) = prober.join().unwrap();
    assert!(ok > 0);
    assert_eq!(failed, 0, "a flow both versions allow never failed");
    assert_eq!(opened, 0, "a flow neither version allows never opened");
    // Rules are not part of an instance's shape: nothing was replaced.
    assert_eq!(net.instance("web").0, web_id);
    assert_eq!(net.instance("api").0, api_id);
    assert!(
        !events(&net.ctx).contains("firewall drift"),
        "applying a version is not drift"
    );
}

// Mutations caught: the address not recovered on adoption (the new
// conductor reports 127.0.0.1 or empties the sets: web → api dropped),
// the table not watched by the new conductor.
#[test]
fn a_restarted_conductor_finds_the_addresses_and_keeps_the_table() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !nft_available() {
        return;
    }
    let mut net = Net::start("");
    let (_, web) = net.instance("web");
    let (_, api) = net.instance("api");
    // SAFETY: kill(2) of the conductor this test started.
    unsafe {
        libc::kill(net.conductor as i32, libc::SIGKILL);
    }
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        net.listing().is_some(),
        "a dead conductor leaves the rules in place (fails closed)"
    );
    net.conductor = net.ctx.spawn("conductor", &["conductor"]);
    net.ctx.wait_status("a new conductor", |s| {
        s["conductor"]["pid"].as_u64() == Some(u64::from(net.conductor))
    });
    net.wait_ready();
    assert_eq!(net.instance("web").1, web, "same address after adoption");
    assert_eq!(net.instance("api").1, api);
    assert!(reaches(&net.netns("web"), api));
    let table = net.table();
    must(
        "nft",
        &[
            "add", "rule", "inet", &table, "output", "tcp", "dport", "9", "accept",
        ],
    );
    net.wait_table("the new conductor to revert", |l| {
        l.is_some_and(|l| !l.contains("dport 9 accept"))
    });
}

// Mutations caught: apply going ahead silently where nothing can enforce
// the rules, `--allow-unenforced` ignored, no E0600 warning then.
#[test]
fn apply_refuses_rules_this_machine_cannot_enforce_unless_allowed() {
    let ctx = Ctx::new();
    ctx.write(
        "r.glint",
        "image app {\n  entrypoint = [\"/app\"]\n}\n\nservice web {\n  image     = image.app\n  instances = 0\n}\n\nrule office {\n  from = 10.0.0.0/8\n  to   = service.web\n}\n",
    );
    // Without `nft` and `ip` on the PATH nothing can enforce a rule.
    let empty = ctx.dir.path().join("empty-path");
    std::fs::create_dir_all(&empty).unwrap();
    let out = ctx
        .cmd(&["apply", "r.glint"])
        .env("PATH", &empty)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("warning[E0600]"), "{err}");
    assert!(
        err.contains("refusing to apply: the environment declares 1 rule but this machine cannot enforce them"),
        "{err}"
    );
    assert!(err.contains("--allow-unenforced"), "{err}");
    let out = ctx
        .cmd(&["apply", "--allow-unenforced", "r.glint"])
        .env("PATH", &empty)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("warning[E0600]"));
}

// Mutations caught: E0605 missing where rules are enforced (a rule on a
// Docker service would look enforced), or given for process services.
#[test]
fn rules_on_docker_services_are_warned_about_where_rules_are_enforced() {
    if !nft_available() {
        return;
    }
    let ctx = Ctx::new();
    ctx.write(
        "d.glint",
        "image app {\n  entrypoint = [\"/app\"]\n}\n\nservice web {\n  image     = image.app\n  instances = 0\n}\n\nservice db {\n  image     = image.app\n  provider  = docker\n  instances = 0\n}\n\nrule web_to_db {\n  from = service.web\n  to   = service.db\n}\n\nrule office {\n  from = 10.0.0.0/8\n  to   = service.web\n}\n",
    );
    let out = ctx.run(&["check", "d.glint"]);
    let err = text(&out.stderr);
    assert!(
        err.contains("warning[E0605]: rules on Docker services are not enforced yet"),
        "{err}"
    );
    assert!(
        err.contains("rule `web_to_db` names a Docker service"),
        "{err}"
    );
    assert!(!err.contains("rule `office`"), "{err}");
    assert!(!err.contains("E0600"), "{err}");
}
