//! `glint down`: brings the environment down — a new version without
//! services or endpoints ([`glint_conductor::down`]), so every instance is
//! drained and stopped and every endpoint closed, with volumes and history
//! kept. With a conductor running it does the work (this waits for it);
//! without one, a conductor is started in this process for as long as it
//! takes. `glint apply`, `glint up` or `glint rollback` bring the
//! environment back.

use crate::cli::{DownArgs, Global, OutputFormat};
use crate::common::{CmdResult, Paint, fail, fail_op, open_existing_store, print_json};
use crate::output::{EXIT_FAILED, EXIT_OK};
use glint_conductor::Status;
use glint_conductor::lock::ConductorLock;
use glint_store::prelude::*;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long stopping every instance may take.
const DEADLINE: Duration = Duration::from_secs(300);

/// Runs `glint down`.
pub fn run(global: &Global, args: DownArgs) -> i32 {
    body(global, args).unwrap_or_else(|f| f.0)
}

fn live_instances(s: &Status) -> usize {
    s.services.iter().map(|x| x.instances.len()).sum()
}

fn body(global: &Global, args: DownArgs) -> CmdResult {
    let json = args.output.output == OutputFormat::Json;
    let paint = Paint::stdout(global);
    if let Some(client) = crate::remote::client(global) {
        let client = client?;
        let r: glint_conductor::http::routes::AppliedReport =
            crate::remote::post(&client, "/v1/down", &serde_json::json!({}))?;
        if !json {
            println!(
                "Recorded version {}: the environment is going down.",
                r.version
            );
        }
        let mut stopped = false;
        if !args.no_wait {
            let start = Instant::now();
            loop {
                let s: Status = crate::remote::get(&client, "/v1/status")?;
                if s.version.map(|v| v.0) >= Some(r.version) && live_instances(&s) == 0 {
                    stopped = true;
                    break;
                }
                if start.elapsed() > DEADLINE {
                    break;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        return finish(json, r.version, r.new, stopped, !args.no_wait, paint);
    }
    let Some(store) = open_existing_store(global)? else {
        return Err(fail(
            EXIT_FAILED,
            "nothing has been applied in this data directory yet: there is nothing to bring down",
        ));
    };
    let applied = glint_conductor::down::down(&store).map_err(|e| fail_op(&e))?;
    let n = applied.version.number;
    if !json {
        if applied.new {
            println!("Recorded version {n}: the environment is going down.");
        } else {
            println!("Version {n} already has the environment down.");
        }
    }
    if args.no_wait {
        return finish(json, n.0, applied.new, false, false, paint);
    }
    let dir = crate::common::data_dir(global);
    let rt = crate::common::runtime()?;
    let stopped = if ConductorLock::is_held(&dir) {
        let socket = glint_conductor::api::socket_path(&dir);
        let _ = rt.block_on(glint_conductor::api::poke(&socket));
        let start = Instant::now();
        loop {
            if let Ok(s) = rt.block_on(glint_conductor::api::status(&socket))
                && s.version >= Some(n)
                && live_instances(&s) == 0
            {
                break true;
            }
            if start.elapsed() > DEADLINE || !ConductorLock::is_held(&dir) {
                break false;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    } else if store
        .live_instances()
        .map_err(|e| crate::common::fail_io("cannot read instances", &e))?
        .is_empty()
    {
        true
    } else {
        // Nobody is conducting: do the work here, then stop.
        let store: Arc<dyn Store> = Arc::new(store);
        rt.block_on(async {
            let running = crate::daemon::start(
                global,
                store,
                glint_store::ConductorMode::Up,
                &crate::cli::ListenArgs {
                    listen: None,
                    tls_cert: None,
                    tls_key: None,
                },
            )
            .await?;
            running.handle.poke();
            let mut status = running.handle.status();
            let done = tokio::time::timeout(DEADLINE, async {
                loop {
                    {
                        let s = status.borrow_and_update();
                        if s.version >= Some(n) && live_instances(&s) == 0 && s.converged {
                            break;
                        }
                    }
                    if status.changed().await.is_err() {
                        break;
                    }
                }
            })
            .await
            .is_ok();
            running.stop(false).await;
            Ok::<bool, crate::common::Failed>(done)
        })?
    };
    finish(json, n.0, applied.new, stopped, true, paint)
}

fn finish(
    json: bool,
    version: u64,
    new: bool,
    stopped: bool,
    waited: bool,
    paint: Paint,
) -> CmdResult {
    if json {
        print_json(&serde_json::json!({ "version": version, "new": new, "stopped": stopped }));
    } else if stopped {
        println!(
            "{} every instance is stopped and every endpoint closed (volumes and history are kept).",
            paint.green("Down:")
        );
    } else if waited {
        println!(
            "Instances are still being stopped after {}s (see `glint status`).",
            DEADLINE.as_secs()
        );
    }
    Ok(if stopped || !waited {
        EXIT_OK
    } else {
        EXIT_FAILED
    })
}
