//! The network reconciler: keeps Glint's nftables table equal to the
//! declared ruleset ([`crate::firewall`]) of the target version and the live
//! instances, and puts it back when anyone changes it.
//!
//! - A new ruleset (other rules, other services) is applied as one `nft -f -`
//!   transaction that defines the whole table again: the kernel applies all
//!   of it or none, so there is never a moment with more open than either
//!   version allows. Instances coming and going only change the sets
//!   ([`crate::firewall::set_update`], also one transaction).
//! - After every change the table is listed (`nft list table inet …`, Glint's
//!   own table only); that listing is what the table must stay. It is listed
//!   again whenever `nft monitor` reports a change that names the table, and
//!   every second as a safety net. Any difference — a rule added, removed or
//!   changed by hand, the table deleted — is undone by applying the declared
//!   ruleset again and becomes one [`ConductorEvent::FirewallDrift`] incident
//!   naming what was found, as the kernel listed it.
//! - Docker's iptables `FORWARD` policy is drop; when its `DOCKER-USER` chain
//!   exists, accepts for Glint's links (`gl+`) are added to it once, so that
//!   traffic between the host and instances reaches Glint's table at all.
//! - With no rule declared (or no process service left) the table is
//!   removed; so it is when the conductor stops its instances (`glint
//!   down`, Ctrl-C on `glint up`).
//!
//! Enforcement needs root and the `nft` command; without them this
//! reconciler does nothing but say so (the CLI warns with E0600 and refuses
//! `apply` without `--allow-unenforced`).

use crate::events::ConductorEvent;
use crate::firewall::{Members, ruleset, set_update, table_name};
use crate::reconciler::{Action, Ctx, Inbox, ReconcileError, Reconciler, Waker};
use crate::world::World;
use async_trait::async_trait;
use glint_model::{Environment, ProviderKind};
use glint_provider::process::net::{in_subnet, link_name};
use std::net::IpAddr;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

/// How often the table is re-read when nothing reports a change.
const RESYNC: Duration = Duration::from_secs(1);

/// What is applied and what the kernel listed after it.
struct Applied {
    /// The full ruleset last applied.
    ruleset: String,
    /// The members it was applied with (sets updated since included).
    members: Members,
    /// `nft list table` right after the last change.
    listing: String,
}

/// See the module documentation.
pub struct Network {
    /// Whether this machine can enforce (probed on the first run).
    enabled: Option<bool>,
    table: Option<String>,
    applied: Option<Applied>,
    /// `nft monitor`, while it runs.
    monitor: Option<tokio::task::JoinHandle<()>>,
    changes: Inbox<()>,
    notes: Vec<String>,
    /// Whether a table left by an earlier conductor has been looked for.
    leftovers_checked: bool,
}

impl Network {
    /// A network reconciler whose change notices wake `waker`.
    pub fn new(waker: &Waker) -> Network {
        Network {
            enabled: None,
            table: None,
            applied: None,
            monitor: None,
            changes: Inbox::new(waker),
            notes: Vec::new(),
            leftovers_checked: false,
        }
    }
}

/// Whether `env` needs the table: it declares rules and has a process
/// service (which then has its own network).
fn filters(env: &Environment) -> bool {
    !env.rules.is_empty()
        && env
            .services
            .values()
            .any(|s| crate::firewall::own_network(env, s))
}

/// Whether rules can be enforced here: root and a working `nft`.
pub fn can_enforce() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    root && std::process::Command::new("nft")
        .args(["list", "tables"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs `nft` with `args`, `input` on its stdin; its stdout, or what it said.
async fn nft(args: &[&str], input: Option<&str>) -> Result<String, String> {
    let mut cmd = tokio::process::Command::new("nft");
    cmd.args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run `nft {}`: {e}", args.join(" ")))?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin
            .write_all(text.as_bytes())
            .await
            .map_err(|e| format!("cannot write to `nft {}`: {e}", args.join(" ")))?;
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| format!("`nft {}` failed: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`nft {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The table as the kernel lists it; `None` if it does not exist.
async fn listing(table: &str) -> Result<Option<String>, String> {
    match nft(&["list", "table", "inet", table], None).await {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.contains("No such file or directory") => Ok(None),
        Err(e) => Err(e),
    }
}

/// What differs between the listing that should be and the one found.
fn describe(expected: &str, found: Option<&str>, table: &str) -> String {
    let Some(found) = found else {
        return format!("table inet {table} was deleted");
    };
    let want: Vec<&str> = expected.lines().map(str::trim).collect();
    let have: Vec<&str> = found.lines().map(str::trim).collect();
    let added: Vec<&str> = have
        .iter()
        .filter(|l| !l.is_empty() && !want.contains(l))
        .copied()
        .collect();
    let removed: Vec<&str> = want
        .iter()
        .filter(|l| !l.is_empty() && !have.contains(l))
        .copied()
        .collect();
    let mut parts = Vec::new();
    if !added.is_empty() {
        parts.push(format!("found `{}`", added.join("; ")));
    }
    if !removed.is_empty() {
        parts.push(format!("missing `{}`", removed.join("; ")));
    }
    if parts.is_empty() {
        parts.push("the table was changed (same lines, another order)".into());
    }
    parts.join(", ")
}

/// The members of the ruleset: every live process instance's link, and the
/// addresses (in Glint's subnet) of those of a service of `env`.
fn members(world: &World, env: &Environment) -> Members {
    let mut m = Members::default();
    for live in world.live.values() {
        if live.rec.provider != ProviderKind::Process {
            continue;
        }
        m.links.insert(link_name(live.rec.id.as_str()));
        if let Some(IpAddr::V4(a)) = live.rec.addr.map(|a| a.ip())
            && in_subnet(a)
            && env.services.contains_key(&live.rec.service)
        {
            m.addrs
                .entry(live.rec.service.clone())
                .or_default()
                .insert(a);
        }
    }
    m
}

/// Lets Glint's links through Docker's `FORWARD` chain (policy drop) when
/// Docker's `DOCKER-USER` chain exists. Best effort.
async fn allow_through_docker() {
    let run = |args: Vec<&'static str>| async move {
        tokio::process::Command::new("iptables")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await
            .is_ok_and(|s| s.success())
    };
    if !run(vec!["-S", "DOCKER-USER"]).await {
        return;
    }
    for dir in ["-i", "-o"] {
        if !run(vec!["-C", "DOCKER-USER", dir, "gl+", "-j", "ACCEPT"]).await
            && !run(vec!["-I", "DOCKER-USER", dir, "gl+", "-j", "ACCEPT"]).await
        {
            tracing::warn!(
                "cannot add `{dir} gl+ -j ACCEPT` to Docker's DOCKER-USER chain: traffic to instances may be dropped by Docker's FORWARD policy"
            );
        }
    }
}

impl Network {
    fn start_monitor(&mut self, table: &str) {
        let post = self.changes.post();
        let table = table.to_owned();
        self.monitor = Some(tokio::spawn(async move {
            let child = tokio::process::Command::new("nft")
                .arg("monitor")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .spawn();
            let mut child = match child {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(
                        "cannot run `nft monitor` (the table is re-read every second instead): {e}"
                    );
                    return;
                }
            };
            let Some(out) = child.stdout.take() else {
                return;
            };
            let mut lines = tokio::io::BufReader::new(out).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if line.contains(&table) || line.contains("ruleset") {
                    post.send(());
                }
            }
            let _ = child.kill().await;
        }));
    }

    /// Applies `text`, then records what the kernel lists.
    async fn apply(
        &mut self,
        table: &str,
        text: &str,
        ruleset: String,
        members: Members,
    ) -> Result<(), ReconcileError> {
        nft(&["-f", "-"], Some(text))
            .await
            .map_err(ReconcileError::Other)?;
        let listing = listing(table)
            .await
            .map_err(ReconcileError::Other)?
            .ok_or_else(|| {
                ReconcileError::Other(format!(
                    "table inet {table} is missing right after it was applied"
                ))
            })?;
        self.applied = Some(Applied {
            ruleset,
            members,
            listing,
        });
        Ok(())
    }

    async fn remove_table(&mut self, table: &str) -> Result<(), ReconcileError> {
        self.applied = None;
        if listing(table)
            .await
            .map_err(ReconcileError::Other)?
            .is_some()
        {
            nft(&["delete", "table", "inet", table], None)
                .await
                .map_err(ReconcileError::Other)?;
        }
        Ok(())
    }
}

#[async_trait]
impl Reconciler for Network {
    fn name(&self) -> &'static str {
        "network"
    }

    async fn reconcile(&mut self, world: &mut World, ctx: &Ctx) -> Result<Action, ReconcileError> {
        self.changes.drain();
        let filtered_target = world.target.as_ref().is_some_and(|t| filters(&t.env));
        let own_networks = world.live.values().any(|l| {
            l.rec.provider == ProviderKind::Process
                && matches!(l.rec.addr.map(|a| a.ip()), Some(IpAddr::V4(a)) if in_subnet(a))
        });
        if !filtered_target && self.applied.is_none() && (self.leftovers_checked || !own_networks) {
            // Nothing to enforce and nothing applied: no `nft` at all (a
            // table an earlier conductor left is looked for while
            // instances with their own network run: it filters nothing
            // else).
            self.notes.clear();
            return Ok(Action::await_change());
        }
        let enabled = match self.enabled {
            Some(e) => e,
            None => {
                let e = tokio::task::spawn_blocking(can_enforce)
                    .await
                    .unwrap_or(false);
                self.enabled = Some(e);
                e
            }
        };
        let declares = world
            .target
            .as_ref()
            .is_some_and(|t| !t.env.rules.is_empty());
        if !enabled {
            self.notes = if declares {
                vec!["firewall rules are not enforced: that needs root and the nft command".into()]
            } else {
                Vec::new()
            };
            return Ok(Action::await_change());
        }
        let table = self
            .table
            .get_or_insert_with(|| table_name(&ctx.store_id))
            .clone();
        if !world.adopted {
            // The live instances are not known yet: change nothing.
            return Ok(Action::requeue(RESYNC));
        }
        let Some(target) = world.target.clone() else {
            return Ok(Action::await_change());
        };
        let env = &target.env;
        if !filters(env) {
            // Also a table a previous conductor left behind, once.
            self.notes.clear();
            self.remove_table(&table).await?;
            self.leftovers_checked = true;
            return Ok(Action::await_change());
        }
        if self.monitor.as_ref().is_none_or(|m| m.is_finished()) {
            allow_through_docker().await;
            self.start_monitor(&table);
        }
        let members = members(world, env);
        let wanted = ruleset(&table, env, &members);
        let same_rules = self
            .applied
            .as_ref()
            .is_some_and(|a| ruleset(&table, env, &a.members) == a.ruleset);
        match &self.applied {
            None => self.apply(&table, &wanted, wanted.clone(), members).await?,
            Some(_) if !same_rules => {
                self.apply(&table, &wanted, wanted.clone(), members).await?;
            }
            Some(a) => {
                // The rules are those applied; has anyone changed the table?
                let found = listing(&table).await.map_err(ReconcileError::Other)?;
                if found.as_deref() != Some(a.listing.as_str()) {
                    let what = describe(&a.listing, found.as_deref(), &table);
                    tracing::warn!(
                        table,
                        what,
                        "firewall drift; applying the declared ruleset again"
                    );
                    ctx.events.emit(ConductorEvent::FirewallDrift {
                        table: table.clone(),
                        found: what,
                    });
                    self.apply(&table, &wanted, wanted.clone(), members).await?;
                } else if a.members != members {
                    let update = set_update(&table, env, &a.members, &members);
                    self.apply(&table, &update, wanted.clone(), members).await?;
                }
            }
        }
        let rules = env.rules.len();
        self.notes = vec![format!(
            "{rules} rule{} enforced in nftables table inet {table}",
            if rules == 1 { "" } else { "s" }
        )];
        Ok(Action::requeue(RESYNC))
    }

    fn notes(&self) -> Vec<String> {
        self.notes.clone()
    }

    async fn stop(&mut self, _world: &mut World, _ctx: &Ctx, stop_instances: bool) {
        if let Some(m) = self.monitor.take() {
            m.abort();
        }
        if stop_instances
            && self.applied.is_some()
            && let Some(table) = self.table.clone()
            && let Err(e) = self.remove_table(&table).await
        {
            tracing::warn!("cannot remove the firewall table: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::describe;

    #[test]
    fn drift_is_described_by_the_lines_the_kernel_listed() {
        let want = "table inet t {\n\tchain forward {\n\t\tdrop\n\t}\n}\n";
        let have = "table inet t {\n\tchain forward {\n\t\tip saddr 203.0.113.9 tcp dport 5432 accept\n\t\tdrop\n\t}\n}\n";
        assert_eq!(
            describe(want, Some(have), "t"),
            "found `ip saddr 203.0.113.9 tcp dport 5432 accept`"
        );
        assert_eq!(
            describe(have, Some(want), "t"),
            "missing `ip saddr 203.0.113.9 tcp dport 5432 accept`"
        );
        assert_eq!(describe(want, None, "t"), "table inet t was deleted");
    }
}
