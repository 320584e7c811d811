//! `glint logs SERVICE [--instance ID] [-f]`: an instance's or a service's
//! output.
//!
//! Logs are files the providers write under the data directory
//! ([`glint_conductor::logs`]), so this works with or without a conductor,
//! and for instances that are gone. It only reads: a read-only or full data
//! directory is fine. `-f` keeps following: new lines, instances launched
//! later, and — for a running container, whose output is still with the
//! engine — the engine's stream (`docker logs --follow`), until the
//! container is gone and its output has been copied to files. With
//! `--addr` the conductor's logs routes are read instead.
//!
//! An instance's output is whatever its program wrote, so every line is
//! made inert ([`crate::output::inert_line`]) before it reaches the
//! terminal; bytes that are not UTF-8 are shown as U+FFFD. `-o json` prints
//! `{"instances": [...]}`, or with `-f` one `{instance, stream, line}`
//! object per line.

use crate::cli::{Global, LogsArgs, OutputFormat};
use crate::common::{CmdResult, fail, fail_io, known_service, open_store_to_read, print_json};
use crate::output::{EXIT_FAILED, EXIT_OK, inert_line};
use glint_conductor::logs::{Follower, LogLine};
use glint_model::InstanceId;
use glint_store::prelude::*;
use std::collections::BTreeSet;
use std::io::Write;
use std::time::Duration;

/// Runs `glint logs`.
pub fn run(global: &Global, args: LogsArgs) -> i32 {
    body(global, args).unwrap_or_else(|f| f.0)
}

/// Prints lines: prefixed with their instance when several are shown.
struct Printer {
    json: bool,
    prefix: bool,
}

impl Printer {
    fn line(&self, out: &mut impl Write, l: &LogLine) -> std::io::Result<()> {
        if self.json {
            return writeln!(out, "{}", serde_json::to_string(l).unwrap_or_default());
        }
        let text = inert_line(&l.line);
        if self.prefix {
            writeln!(out, "[{}] {text}", l.instance)
        } else {
            writeln!(out, "{text}")
        }
    }
}

fn write_err(e: std::io::Error) -> crate::common::Failed {
    fail_io("cannot write to stdout", &e)
}

fn body(global: &Global, args: LogsArgs) -> CmdResult {
    if let Some(client) = crate::remote::client(global) {
        return remote(&client?, &args);
    }
    let json = args.output.output == OutputFormat::Json;
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
    let instance = match &args.instance {
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
            Some(id)
        }
        None => None,
    };
    let mut recs = glint_conductor::logs::current(&store, &args.service, instance.as_ref());
    if recs.is_empty() {
        // Nothing live: show the most recent instance's output.
        recs = store.instances_of(&args.service, 1).map_err(io)?;
    }
    if recs.is_empty() && !args.follow {
        return Err(fail(
            EXIT_FAILED,
            format_args!(
                "service {} has no instances yet (see `glint status`)",
                args.service
            ),
        ));
    }
    let data = crate::common::data_dir(global);
    let env = store
        .latest_version()
        .ok()
        .flatten()
        .map(|v| v.env.name.to_string())
        .unwrap_or_default();
    let printer = Printer {
        json: json && args.follow,
        prefix: recs.len() > 1 || args.follow && instance.is_none(),
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut document = Vec::new();
    let mut follower = Follower::new(&data);
    for rec in &recs {
        let files = glint_conductor::logs::log_files(&data, rec);
        if files.in_engine {
            if !args.follow && !json {
                writeln!(
                    out,
                    "{} is a running container: its output is at `docker logs {}` (or follow it with `glint logs -f`)",
                    rec.id,
                    glint_conductor::logs::container_name(&env, &rec.id)
                )
                .map_err(write_err)?;
            }
            continue;
        }
        let mut any = false;
        let mut streams = serde_json::Map::new();
        for (stream, path) in [("stdout", &files.stdout), ("stderr", &files.stderr)] {
            let lines = match glint_conductor::logs::read_lines(path, args.tail) {
                Ok(Some((lines, _))) => lines,
                Ok(None) => Vec::new(),
                Err(e) => {
                    return Err(fail_io(format_args!("cannot read {}", path.display()), &e));
                }
            };
            any |= path.exists();
            if json && !args.follow {
                streams.insert(stream.to_owned(), serde_json::json!(lines));
                continue;
            }
            for line in lines {
                printer
                    .line(
                        &mut out,
                        &LogLine {
                            instance: rec.id.to_string(),
                            stream: stream.to_owned(),
                            line,
                        },
                    )
                    .map_err(write_err)?;
            }
        }
        follower.seen(rec);
        if json && !args.follow {
            streams.insert("id".into(), serde_json::json!(rec.id));
            document.push(serde_json::Value::Object(streams));
        } else if !any && !args.follow {
            out.flush().map_err(write_err)?;
            eprintln!("glint: note: no output was recorded for {}", rec.id);
        }
    }
    if json && !args.follow {
        out.flush().map_err(write_err)?;
        drop(out);
        print_json(&serde_json::json!({ "instances": document }));
        return Ok(EXIT_OK);
    }
    out.flush().map_err(write_err)?;
    if !args.follow {
        return Ok(EXIT_OK);
    }
    drop(out);
    follow(&store, &args, instance.as_ref(), &env, follower, &printer)
}

/// Follows until interrupted (or stdout is closed).
fn follow(
    store: &dyn Store,
    args: &LogsArgs,
    instance: Option<&InstanceId>,
    env: &str,
    mut follower: Follower,
    printer: &Printer,
) -> CmdResult {
    let mut engines: BTreeSet<String> = BTreeSet::new();
    loop {
        let lines = follower
            .poll_service(store, &args.service, instance)
            .map_err(|e| fail_io("cannot read logs", &e))?;
        {
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            for l in &lines {
                printer.line(&mut out, l).map_err(write_err)?;
            }
            out.flush().map_err(write_err)?;
        }
        for id in follower.engine_instances() {
            if engines.insert(id.clone()) {
                follow_engine(
                    id.clone(),
                    glint_conductor::logs::container_name(
                        env,
                        &InstanceId::parse(id.as_str()).map_err(|e| fail(EXIT_FAILED, e))?,
                    ),
                    printer.json,
                    printer.prefix,
                );
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Follows a running container's output through the engine, in a thread,
/// until the container ends.
fn follow_engine(instance: String, container: String, json: bool, prefix: bool) {
    std::thread::spawn(move || {
        let child = std::process::Command::new("docker")
            .args(["logs", "--follow", &container])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => {
                eprintln!("glint: note: cannot follow {container} through `docker logs`: {e}");
                return;
            }
        };
        let pipes: Vec<(Box<dyn std::io::Read + Send>, &str)> = [
            child
                .stdout
                .take()
                .map(|p| (Box::new(p) as Box<dyn std::io::Read + Send>, "stdout")),
            child
                .stderr
                .take()
                .map(|p| (Box::new(p) as Box<dyn std::io::Read + Send>, "stderr")),
        ]
        .into_iter()
        .flatten()
        .collect();
        let readers: Vec<_> = pipes
            .into_iter()
            .map(|(pipe, stream)| {
                let instance = instance.clone();
                let printer = Printer { json, prefix };
                std::thread::spawn(move || {
                    use std::io::BufRead;
                    let reader = std::io::BufReader::new(pipe);
                    for line in reader.split(b'\n').map_while(Result::ok) {
                        let line =
                            String::from_utf8_lossy(line.strip_suffix(b"\r").unwrap_or(&line))
                                .into_owned();
                        let l = LogLine {
                            instance: instance.clone(),
                            stream: stream.to_owned(),
                            line,
                        };
                        let stdout = std::io::stdout();
                        let mut out = stdout.lock();
                        if printer
                            .line(&mut out, &l)
                            .and_then(|()| out.flush())
                            .is_err()
                        {
                            return;
                        }
                    }
                })
            })
            .collect();
        for r in readers {
            let _ = r.join();
        }
        let _ = child.wait();
    });
}

/// `glint logs` against a remote conductor.
fn remote(client: &glint_conductor::http::client::Client, args: &LogsArgs) -> CmdResult {
    use glint_conductor::http::client::encode;
    let json = args.output.output == OutputFormat::Json;
    let mut query = Vec::new();
    if let Some(i) = &args.instance {
        query.push(format!("instance={}", encode(i)));
    }
    if let Some(t) = args.tail {
        query.push(format!("tail={t}"));
    }
    let q = if query.is_empty() {
        String::new()
    } else {
        format!("?{}", query.join("&"))
    };
    let service = encode(&args.service);
    let v: serde_json::Value =
        crate::remote::get(client, &format!("/v1/services/{service}/logs{q}"))?;
    if json && !args.follow {
        print_json(&v);
        return Ok(EXIT_OK);
    }
    let instances = v["instances"].as_array().cloned().unwrap_or_default();
    let printer = Printer {
        json,
        prefix: instances.len() > 1 || args.follow && args.instance.is_none(),
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for i in &instances {
        let id = i["id"].as_str().unwrap_or_default();
        if i["in_engine"].as_bool() == Some(true) {
            eprintln!(
                "glint: note: {id} is a running container: its output is with the engine on the conductor's machine"
            );
        }
        for stream in ["stdout", "stderr"] {
            for line in i[stream].as_array().into_iter().flatten() {
                printer
                    .line(
                        &mut out,
                        &LogLine {
                            instance: id.to_owned(),
                            stream: stream.to_owned(),
                            line: line.as_str().unwrap_or_default().to_owned(),
                        },
                    )
                    .map_err(write_err)?;
            }
        }
    }
    out.flush().map_err(write_err)?;
    drop(out);
    if !args.follow {
        return Ok(EXIT_OK);
    }
    let path = format!("/v1/services/{service}/logs/stream{q}");
    crate::remote::run(client.sse(&path, |_, data| {
        if let Ok(l) = serde_json::from_str::<LogLine>(data) {
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            return printer
                .line(&mut out, &l)
                .and_then(|()| out.flush())
                .is_ok();
        }
        true
    }))?;
    Ok(EXIT_OK)
}
