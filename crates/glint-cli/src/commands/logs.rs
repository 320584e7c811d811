//! `glint logs SERVICE [--instance ID]`: an instance's or a service's output.
//!
//! Logs are files the provider writes (`<data>/process/logs/<id>/`), so this
//! works with or without a conductor, and for instances that are gone.

use crate::cli::{Global, LogsArgs};
use crate::common::{CmdResult, fail, fail_io, open_existing_store};
use crate::output::{EXIT_FAILED, EXIT_OK};
use glint_model::InstanceId;
use glint_store::prelude::*;
use std::io::{BufRead, BufReader};

/// Runs `glint logs`.
pub fn run(global: &Global, args: LogsArgs) -> i32 {
    body(global, args).unwrap_or_else(|f| f.0)
}

fn body(global: &Global, args: LogsArgs) -> CmdResult {
    let Some(store) = open_existing_store(global)? else {
        return Err(fail(
            EXIT_FAILED,
            "nothing has been applied in this data directory yet",
        ));
    };
    let ids: Vec<InstanceId> = match &args.instance {
        Some(i) => {
            let id = InstanceId::parse(i.as_str()).map_err(|e| fail(EXIT_FAILED, e))?;
            if id.service() != args.service {
                return Err(fail(
                    EXIT_FAILED,
                    format_args!("instance {id} does not belong to service {}", args.service),
                ));
            }
            vec![id]
        }
        None => {
            let mut live: Vec<_> = store
                .live_instances()
                .map_err(|e| fail_io("cannot read instances", &e))?
                .into_iter()
                .filter(|i| i.service.as_str() == args.service)
                .map(|i| i.id)
                .collect();
            if live.is_empty() {
                // Nothing live: show the most recent instance's output.
                live = store
                    .instances_of(&args.service, 1)
                    .map_err(|e| fail_io("cannot read instances", &e))?
                    .into_iter()
                    .map(|i| i.id)
                    .collect();
            }
            live
        }
    };
    if ids.is_empty() {
        return Err(fail(
            EXIT_FAILED,
            format_args!(
                "service {} has no instances (see `glint status`)",
                args.service
            ),
        ));
    }
    let data = crate::common::data_dir(global);
    let prefix = ids.len() > 1;
    for id in &ids {
        let record = store
            .instance(id)
            .map_err(|e| fail_io("cannot read instances", &e))?;
        let docker = record
            .as_ref()
            .is_some_and(|r| r.provider == glint_model::ProviderKind::Docker);
        let (stdout, stderr) = if docker {
            let p = glint_docker::log_paths(&data.join("docker"), id);
            (p.stdout, p.stderr)
        } else {
            let p = glint_provider::process::log_paths(&data.join("process"), id);
            (p.stdout, p.stderr)
        };
        if docker && !stdout.exists() {
            // A running container's output stays with the engine until the
            // container is removed.
            let env = store
                .latest_version()
                .ok()
                .flatten()
                .map(|v| v.env.name.to_string())
                .unwrap_or_default();
            println!(
                "{id} is a running container: its output is at `docker logs glint-{env}-{id}`"
            );
            continue;
        }
        for path in [stdout, stderr] {
            let Ok(f) = std::fs::File::open(&path) else {
                continue;
            };
            let lines: Vec<String> = BufReader::new(f).lines().map_while(Result::ok).collect();
            let skip = args
                .tail
                .map(|t| lines.len().saturating_sub(t))
                .unwrap_or(0);
            for l in &lines[skip..] {
                if prefix {
                    println!("[{id}] {l}");
                } else {
                    println!("{l}");
                }
            }
        }
    }
    Ok(EXIT_OK)
}
