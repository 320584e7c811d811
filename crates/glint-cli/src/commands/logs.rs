//! `glint logs SERVICE [--instance ID]`: an instance's or a service's output.
//!
//! Logs are files the provider writes (`<data>/process/logs/<id>/`), so this
//! works with or without a conductor, and for instances that are gone. It
//! only reads: a read-only or full data directory is fine. An instance's
//! output is whatever its program wrote, so every line is made inert
//! ([`crate::output::inert_line`]) before it reaches the terminal; bytes that
//! are not UTF-8 are shown as U+FFFD rather than ending the output.

use crate::cli::{Global, LogsArgs};
use crate::common::{CmdResult, fail, fail_io, known_service, open_store_to_read};
use crate::output::{EXIT_FAILED, EXIT_OK, inert_line};
use glint_model::InstanceId;
use glint_store::prelude::*;
use std::io::Write;

/// Runs `glint logs`.
pub fn run(global: &Global, args: LogsArgs) -> i32 {
    body(global, args).unwrap_or_else(|f| f.0)
}

fn body(global: &Global, args: LogsArgs) -> CmdResult {
    let Some(store) = open_store_to_read(global)? else {
        return Err(fail(
            EXIT_FAILED,
            format_args!(
                "there is no service `{}`: nothing has been applied in this data directory yet",
                args.service
            ),
        ));
    };
    known_service(&store, &args.service)?;
    let io = |e: glint_store::StoreError| fail_io("cannot read instances", &e);
    let ids: Vec<InstanceId> = match &args.instance {
        Some(i) => {
            let id = InstanceId::parse(i.as_str()).map_err(|e| fail(EXIT_FAILED, e))?;
            if id.service() != args.service {
                return Err(fail(
                    EXIT_FAILED,
                    format_args!("instance {id} does not belong to service {}", args.service),
                ));
            }
            if store.instance(&id).map_err(io)?.is_none() {
                return Err(fail(
                    EXIT_FAILED,
                    format_args!(
                        "service {} has no instance {id} (see `glint status` and `glint events --service {}`)",
                        args.service, args.service
                    ),
                ));
            }
            vec![id]
        }
        None => {
            let mut live: Vec<_> = store
                .live_instances()
                .map_err(io)?
                .into_iter()
                .filter(|i| i.service.as_str() == args.service)
                .map(|i| i.id)
                .collect();
            if live.is_empty() {
                // Nothing live: show the most recent instance's output.
                live = store
                    .instances_of(&args.service, 1)
                    .map_err(io)?
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
                "service {} has no instances yet (see `glint status`)",
                args.service
            ),
        ));
    }
    let data = crate::common::data_dir(global);
    let prefix = ids.len() > 1;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let write_err = |e: std::io::Error| fail_io("cannot write to stdout", &e);
    for id in &ids {
        let record = store.instance(id).map_err(io)?;
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
            writeln!(
                out,
                "{id} is a running container: its output is at `docker logs glint-{env}-{id}`"
            )
            .map_err(write_err)?;
            continue;
        }
        let mut any = false;
        for path in [stdout, stderr] {
            let bytes = match std::fs::read(&path) {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(fail_io(format_args!("cannot read {}", path.display()), &e));
                }
            };
            any = true;
            let lines = split_lines(&bytes);
            let skip = args
                .tail
                .map(|t| lines.len().saturating_sub(t))
                .unwrap_or(0);
            for l in &lines[skip..] {
                let text = String::from_utf8_lossy(l);
                let text = inert_line(&text);
                if prefix {
                    writeln!(out, "[{id}] {text}")
                } else {
                    writeln!(out, "{text}")
                }
                .map_err(write_err)?;
            }
        }
        if !any {
            out.flush().map_err(write_err)?;
            eprintln!("glint: note: no output was recorded for {id}");
        }
    }
    out.flush().map_err(write_err)?;
    Ok(EXIT_OK)
}

/// The lines of a log: split on `\n`, a `\r` before it dropped (CRLF), no
/// empty last line for a final newline.
fn split_lines(bytes: &[u8]) -> Vec<&[u8]> {
    let mut lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
    if bytes.ends_with(b"\n") || bytes.is_empty() {
        lines.pop();
    }
    lines
        .into_iter()
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_like_a_terminal_would_show_them() {
        assert_eq!(split_lines(b""), Vec::<&[u8]>::new());
        assert_eq!(split_lines(b"a\nb\n"), vec![&b"a"[..], b"b"]);
        assert_eq!(split_lines(b"a\r\nb"), vec![&b"a"[..], b"b"]);
        assert_eq!(split_lines(b"a\rb\n"), vec![&b"a\rb"[..]]);
    }
}
