//! Compiling `.glint` files for the commands that act on them (`plan`,
//! `apply`, `up`): every diagnostic is printed on stderr exactly as
//! `glint check` prints it, and any error stops the command before it
//! changes anything.
//!
//! It also says what this build of `glint` can do, for every compilation
//! (`check` included): the capabilities it enforces ([`enforced`]) and the
//! providers it has ([`providers`]). The compiler warns about declarations
//! that ask for a capability outside the set (a firewall `rule` while
//! nothing programs a firewall), and refuses services on a provider outside
//! it. When a capability is enforced, it is added to [`enforced`]: nothing
//! else changes.

use crate::cli::Global;
use crate::common::{Failed, fail};
use crate::loader::compile_path;
use crate::output::{EXIT_FAILED, EXIT_USAGE, stderr_is_terminal, use_color};
use glint_lang::{Capabilities, Capability, ProviderSet};
use glint_model::{Environment, ProviderKind};
use glint_store::SourceFile;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The capabilities this build enforces on this machine:
///
/// - autoscaling, always;
/// - literal and runtime variables, always: readers get them in
///   `/run/glint/vars` and through the instance API, which checks readers
///   and writers against each caller's identity (process instances, plain
///   or namespaced, and Docker containers alike);
/// - volumes, where process instances get their own namespaces (root; the
///   volume is bound into them) — Docker mounts its named volumes either
///   way;
/// - process resource limits, where instances get namespaces and this
///   machine offers the cgroup memory, cpu and pids controllers (v2, or
///   v1);
/// - firewall rules, where instances get namespaces, their own networks
///   (the `ip` command) and Glint's nftables table (the `nft` command) —
///   between process instances; rules on Docker services are warned
///   about (E0605).
///
/// Variables are always enforced (the conductor's instance API and
/// `/run/glint`). Rules to services on the `aws` provider are enforced by
/// their security groups (`glint_aws::rules`; `glint plan` lists them, and
/// any it cannot express) even where E0600 warns because this machine
/// cannot enforce rules between process instances: the warning is then
/// stricter than the truth, never looser.
pub fn enforced() -> Capabilities {
    let mut c = Capabilities::none()
        .with(Capability::Autoscale)
        .with(Capability::Variables);
    if glint_sandbox::available() {
        c.insert(Capability::Volumes);
        if glint_provider::process::cgroup::Cgroups::detect().is_some() {
            c.insert(Capability::ProcessResourceLimits);
        }
        if glint_provider::process::net::available()
            && glint_conductor::reconcilers::network::can_enforce()
        {
            c.insert(Capability::FirewallRules);
        }
    }
    c
}

/// Refuses (for `apply` and `up`) an environment that declares rules this
/// machine cannot enforce, unless `allow` (`--allow-unenforced`): a rule
/// that is not enforced must never look as if it were.
pub fn refuse_unenforced(env: &Environment, allow: bool) -> Result<(), Failed> {
    if env.rules.is_empty() || allow || enforced().contains(Capability::FirewallRules) {
        return Ok(());
    }
    let n = env.rules.len();
    Err(fail(
        EXIT_FAILED,
        format_args!(
            "refusing to apply: the environment declares {n} rule{} but this machine cannot enforce them (that needs root and the `nft` and `ip` commands; see warning E0600); run as root with nftables installed, or pass --allow-unenforced to apply with nothing restricting the network",
            if n == 1 { "" } else { "s" }
        ),
    ))
}

/// The providers this build has (`crate::daemon` starts them).
pub fn providers() -> ProviderSet {
    ProviderSet::of([
        ProviderKind::Process,
        ProviderKind::Docker,
        ProviderKind::Aws,
    ])
}

/// A compiled environment and where it came from.
#[derive(Debug)]
pub struct Loaded {
    /// The environment.
    pub env: Environment,
    /// The root directory (the main file's directory, absolute).
    pub root: PathBuf,
    /// Every file read (the standard library excluded).
    pub sources: Vec<SourceFile>,
}

/// Compiles `file` with extra policy files.
pub fn load(global: &Global, file: &Path, policies: &[PathBuf]) -> Result<Loaded, Failed> {
    let compilation = compile_path(file, policies).map_err(|e| fail(EXIT_USAGE, e.to_string()))?;
    let diags = &compilation.diagnostics;
    if !diags.list.is_empty() {
        let color = use_color(global.color, stderr_is_terminal());
        let _ = std::io::stderr().write_all(diags.render_human(color).as_bytes());
    }
    let Some(env) = compilation.environment else {
        return Err(fail(
            EXIT_FAILED,
            format_args!("{} has errors; nothing was changed", file.display()),
        ));
    };
    if diags.has_errors() {
        return Err(fail(EXIT_FAILED, "errors found; nothing was changed"));
    }
    let root = crate::common::absolute(
        &file
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from(".")),
    );
    let sources = diags
        .sources
        .files()
        .filter(|(_, f)| !f.key.starts_with("std:"))
        .map(|(_, f)| SourceFile {
            path: f.key.clone(),
            text: f.text.to_string(),
        })
        .collect();
    Ok(Loaded { env, root, sources })
}
