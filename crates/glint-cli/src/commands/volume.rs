//! `glint volume ls | inspect NAME | rm NAME`: the volumes of this data
//! directory.
//!
//! `ls` and `inspect` read the store read-only and measure usage by walking
//! the volume's directory (for Docker volumes, the engine's directory of
//! it, readable as root); they write nothing. `rm` is the only way a volume
//! is deleted: the store refuses it while the newest version, or a version
//! an instance runs, declares the volume or an instance holds it, and marks
//! it as being removed (so no instance can claim it meanwhile); then the
//! provider deletes the data (refusing while an instance still has it
//! mounted) and the record goes.

use crate::cli::{Global, OutputFormat, VolumeArgs, VolumeCommand};
use crate::common::{
    CmdResult, Failed, Paint, Table, fail, fail_io, open_existing_store, open_store_to_read,
    print_json,
};
use crate::output::{EXIT_FAILED, EXIT_OK};
use glint_model::ProviderKind;
use glint_store::prelude::*;
use glint_store::{RemovalRefused, VolumeClaim, VolumeRecord};
use serde::Serialize;
use std::collections::BTreeSet;

/// Runs `glint volume`.
pub fn run(global: &Global, args: VolumeArgs) -> i32 {
    let r = match args.command {
        VolumeCommand::Ls { output } => ls(global, output.output),
        VolumeCommand::Inspect { name, output } => inspect(global, &name, output.output),
        VolumeCommand::Rm { name } => rm(global, &name),
    };
    r.unwrap_or_else(|f| f.0)
}

/// One volume, as `ls -o json` and `inspect -o json` print it.
#[derive(Debug, Serialize)]
struct VolumeReport {
    name: String,
    declared: String,
    slot: Option<u32>,
    provider: String,
    /// `created`, `not created yet` (declared, never mounted), `removing`.
    state: &'static str,
    /// Declared in the newest version.
    declared_now: bool,
    size_bytes: Option<u64>,
    used_bytes: Option<u64>,
    location: Option<String>,
    host_path: Option<String>,
    created_at: Option<i64>,
    /// Instances that mount it now.
    mounted_by: Vec<MountReport>,
}

#[derive(Debug, Serialize)]
struct MountReport {
    instance: String,
    service: String,
    read_write: bool,
}

fn gather(store: &dyn Store) -> Result<Vec<VolumeReport>, Failed> {
    let io = |what: &str, e: glint_store::StoreError| fail_io(what, &e);
    let records = store.volumes().map_err(|e| io("cannot read volumes", e))?;
    let claims = store
        .volume_claims()
        .map_err(|e| io("cannot read volume claims", e))?;
    let live: BTreeSet<String> = store
        .live_instances()
        .map_err(|e| io("cannot read instances", e))?
        .into_iter()
        .map(|i| i.id.to_string())
        .collect();
    let latest = store
        .latest_version()
        .map_err(|e| io("cannot read versions", e))?;
    let declared_now = |declared: &str| {
        latest
            .as_ref()
            .is_some_and(|v| v.env.volumes.keys().any(|n| n.as_str() == declared))
    };
    let mounts_of = |name: &str| -> Vec<MountReport> {
        claims
            .iter()
            .filter(|c: &&VolumeClaim| c.volume == name && live.contains(c.instance.as_str()))
            .map(|c| MountReport {
                instance: c.instance.to_string(),
                service: c.service.to_string(),
                read_write: c.exclusive,
            })
            .collect()
    };
    let mut out: Vec<VolumeReport> = records
        .iter()
        .map(|r: &VolumeRecord| VolumeReport {
            name: r.name.clone(),
            declared: r.declared.to_string(),
            slot: r.slot,
            provider: r.provider.to_string(),
            state: if r.removing { "removing" } else { "created" },
            declared_now: declared_now(r.declared.as_str()),
            size_bytes: r.size,
            used_bytes: r
                .host_path
                .as_ref()
                .and_then(|p| glint_provider::disk_usage(std::path::Path::new(p)).ok()),
            location: r.location.clone(),
            host_path: r.host_path.clone(),
            created_at: Some(r.created_at),
            mounted_by: mounts_of(&r.name),
        })
        .collect();
    // Declared shared volumes nothing has mounted yet.
    if let Some(v) = &latest {
        for (name, vol) in &v.env.volumes {
            if vol.per_instance || records.iter().any(|r| r.declared == *name) {
                continue;
            }
            let provider = v
                .env
                .services
                .values()
                .find(|s| s.mounts.iter().any(|m| &m.volume == name))
                .map(|s| s.provider.to_string())
                .unwrap_or_else(|| "-".into());
            out.push(VolumeReport {
                name: name.to_string(),
                declared: name.to_string(),
                slot: None,
                provider,
                state: "not created yet",
                declared_now: true,
                size_bytes: vol.size.map(|b| b.0),
                used_bytes: None,
                location: None,
                host_path: None,
                created_at: None,
                mounted_by: Vec::new(),
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

fn bytes(b: Option<u64>) -> String {
    b.map(|b| glint_model::Bytes(b).to_string())
        .unwrap_or_else(|| "-".into())
}

fn ls(global: &Global, format: OutputFormat) -> CmdResult {
    let reports = match open_store_to_read(global)? {
        Some(store) => gather(&store)?,
        None => Vec::new(),
    };
    if format == OutputFormat::Json {
        print_json(&reports);
        return Ok(EXIT_OK);
    }
    if reports.is_empty() {
        println!("No volumes.");
        return Ok(EXIT_OK);
    }
    let paint = Paint::stdout(global);
    let mut t = Table::new(
        &["VOLUME", "PROVIDER", "SIZE", "USED", "MOUNTED BY", "STATE"],
        paint,
    );
    for r in &reports {
        let mounted: Vec<String> = r
            .mounted_by
            .iter()
            .map(|m| format!("{}{}", m.instance, if m.read_write { "" } else { " (ro)" }))
            .collect();
        let state = match (r.state, r.declared_now) {
            ("created", true) => paint.green("created"),
            ("created", false) => paint.yellow("no longer declared (kept)"),
            (s, _) => paint.yellow(s),
        };
        t.row(vec![
            r.name.clone(),
            r.provider.clone(),
            bytes(r.size_bytes),
            bytes(r.used_bytes),
            if mounted.is_empty() {
                "-".into()
            } else {
                mounted.join(", ")
            },
            state,
        ]);
    }
    print!("{}", t.render());
    Ok(EXIT_OK)
}

fn find(global: &Global, name: &str) -> Result<VolumeReport, Failed> {
    let Some(store) = open_store_to_read(global)? else {
        return Err(fail(
            EXIT_FAILED,
            format_args!("no volume `{name}`: nothing has been applied in this data directory"),
        ));
    };
    let reports = gather(&store)?;
    let known: Vec<String> = reports.iter().map(|r| r.name.clone()).collect();
    reports.into_iter().find(|r| r.name == name).ok_or_else(|| {
        fail(
            EXIT_FAILED,
            format_args!(
                "no volume `{name}`{}",
                if known.is_empty() {
                    String::new()
                } else {
                    format!("; the volumes are {}", known.join(", "))
                }
            ),
        )
    })
}

fn inspect(global: &Global, name: &str, format: OutputFormat) -> CmdResult {
    let r = find(global, name)?;
    if format == OutputFormat::Json {
        print_json(&r);
        return Ok(EXIT_OK);
    }
    let paint = Paint::stdout(global);
    println!("{} {}", paint.bold("Volume"), crate::output::inert(&r.name));
    let line = |k: &str, v: String| println!("  {k:<12} {}", crate::output::inert(&v));
    if r.declared != r.name {
        line(
            "declared",
            format!(
                "{} (per instance, slot {})",
                r.declared,
                r.slot.map(|s| s.to_string()).unwrap_or_default()
            ),
        );
    }
    line("provider", r.provider.clone());
    line(
        "state",
        format!(
            "{}{}",
            r.state,
            if r.declared_now {
                ""
            } else {
                ", no longer declared (kept until `glint volume rm`)"
            }
        ),
    );
    line("size", bytes(r.size_bytes));
    line("used", bytes(r.used_bytes));
    if let Some(l) = &r.location {
        line("location", l.clone());
    }
    if let Some(p) = &r.host_path {
        line("host path", p.clone());
    }
    if let Some(at) = r.created_at {
        line("created", crate::common::time_of(at));
    }
    if r.mounted_by.is_empty() {
        line("mounted by", "-".into());
    }
    for m in &r.mounted_by {
        line(
            "mounted by",
            format!(
                "{} ({}, {})",
                m.instance,
                m.service,
                if m.read_write {
                    "read-write"
                } else {
                    "read-only"
                }
            ),
        );
    }
    Ok(EXIT_OK)
}

fn rm(global: &Global, name: &str) -> CmdResult {
    let Some(store) = open_existing_store(global)? else {
        return Err(fail(
            EXIT_FAILED,
            format_args!("no volume `{name}`: nothing has been applied in this data directory"),
        ));
    };
    let io = |what: &str, e: glint_store::StoreError| fail_io(what, &e);
    let rec = match store
        .begin_volume_removal(name)
        .map_err(|e| io("cannot begin removing the volume", e))?
    {
        Ok(rec) => rec,
        Err(RemovalRefused::NoSuchVolume) => {
            let known: Vec<String> = store
                .volumes()
                .map_err(|e| io("cannot read volumes", e))?
                .into_iter()
                .map(|v| v.name)
                .collect();
            return Err(fail(
                EXIT_FAILED,
                format_args!(
                    "no volume `{name}`{}; nothing was removed",
                    if known.is_empty() {
                        String::new()
                    } else {
                        format!(" (the volumes are {})", known.join(", "))
                    }
                ),
            ));
        }
        Err(RemovalRefused::Declared { versions }) => {
            let list: Vec<String> = versions.iter().map(u64::to_string).collect();
            return Err(fail(
                EXIT_FAILED,
                format_args!(
                    "volume `{name}` is declared by version {} in use; nothing was removed. Apply a version that no longer declares it (and let its instances be replaced) first",
                    list.join(", ")
                ),
            ));
        }
        Err(RemovalRefused::Held { instances }) => {
            let list: Vec<String> = instances.iter().map(ToString::to_string).collect();
            return Err(fail(
                EXIT_FAILED,
                format_args!(
                    "volume `{name}` is mounted by {}; nothing was removed",
                    list.join(", ")
                ),
            ));
        }
    };
    let dir = crate::common::data_dir(global);
    let store_id = store
        .store_id()
        .map_err(|e| io("cannot read the store id", e))?;
    let deleted = match rec.provider {
        ProviderKind::Process => {
            glint_provider::process::remove_volume(&dir.join("process"), &rec.name)
        }
        ProviderKind::Docker => crate::common::runtime()?.block_on(
            glint_docker::volumes::remove_with_defaults(&store_id, &rec.name),
        ),
        ProviderKind::Simulated | ProviderKind::Aws => Ok(()),
    };
    if let Err(e) = deleted {
        let _ = store.abort_volume_removal(&rec.name);
        return Err(fail_io(
            format_args!("cannot remove volume `{name}`; nothing was removed"),
            &e,
        ));
    }
    store.finish_volume_removal(&rec.name).map_err(|e| {
        io(
            "the data is gone but the store could not forget the volume",
            e,
        )
    })?;
    let event = glint_conductor::events::ConductorEvent::VolumeRemoved {
        volume: rec.name.clone(),
        provider: rec.provider,
    };
    let _ = store.append_event(event.to_event());
    println!(
        "Removed volume {} and its data ({} provider).",
        crate::output::inert(&rec.name),
        rec.provider
    );
    Ok(EXIT_OK)
}
