//! `glint status`: services, instances (id, age, health, version), endpoints,
//! and whether a conductor and the data plane are running.
//!
//! Everything comes from the store, so status works without a conductor; when
//! one is running, its live view adds what only it knows (crash-loop backoff,
//! rollout progress). Endpoints (listening, backends, counters) are read from
//! the data plane process itself, which serves them with or without a
//! conductor.

use crate::cli::{Global, OutputFormat, StatusArgs};
use crate::common::{CmdResult, Paint, Table, open_store_to_read, print_json};
use crate::output::EXIT_OK;
use glint_conductor::lock::ConductorLock;
use glint_conductor::plan::{Target, fingerprint};
use glint_store::{Health, InstanceRecord, InstanceState, Store, VersionRecord};
use serde::Serialize;

/// Runs `glint status`.
pub fn run(global: &Global, args: StatusArgs) -> i32 {
    body(global, args).unwrap_or_else(|f| f.0)
}

/// The JSON form.
#[derive(Debug, Serialize)]
struct Report {
    /// The store's id (the `dev.glint.store` label on everything it owns).
    store_id: Option<String>,
    environment: Option<String>,
    version: Option<u64>,
    conductor: ConductorReport,
    data_plane: DataPlaneReport,
    converged: Option<bool>,
    services: Vec<ServiceReport>,
    endpoints: Vec<EndpointReport>,
}

#[derive(Debug, Serialize)]
struct ConductorReport {
    running: bool,
    pid: Option<u32>,
    mode: Option<String>,
    /// Its leadership epoch.
    epoch: Option<u64>,
    /// What keeps it from converging, in words.
    problems: Vec<String>,
    /// Each reconciler's state.
    reconcilers: Vec<glint_conductor::reconciler::ReconcilerStatus>,
}

#[derive(Debug, Serialize, Default)]
struct DataPlaneReport {
    running: bool,
    pid: Option<u32>,
    protocol: Option<u32>,
    build: Option<String>,
    version: Option<String>,
    started_at_ms: Option<i64>,
    /// Whether this `glint` would adopt it as it is (same protocol and
    /// build); a conductor of this build replaces it otherwise.
    current: Option<bool>,
    /// Why it could not be read, when it runs but does not answer.
    error: Option<String>,
}

#[derive(Debug, Serialize)]
struct ServiceReport {
    name: String,
    desired: u32,
    healthy: u32,
    instances: Vec<InstanceReport>,
    backoff: Option<String>,
    rollout: Option<glint_conductor::status::RolloutStatus>,
    /// Current, desired, metric and target of an autoscaled service.
    autoscale: Option<AutoscaleReport>,
}

#[derive(Debug, Serialize)]
struct AutoscaleReport {
    min: u32,
    max: u32,
    /// Healthy instances now.
    current: u32,
    /// The count the autoscaler chose (persisted).
    desired: u32,
    metric: String,
    /// Its last value per instance (from a running conductor).
    value: Option<f64>,
    target: f64,
    unit: String,
    reason: Option<String>,
}

#[derive(Debug, Serialize)]
struct InstanceReport {
    id: String,
    version: u64,
    current: bool,
    state: InstanceState,
    health: Health,
    age_s: u64,
    address: Option<String>,
    handle: Option<String>,
}

#[derive(Debug, Serialize)]
struct EndpointReport {
    name: String,
    listen: String,
    service: String,
    listening: Option<bool>,
    backends: Option<usize>,
    requests: Option<u64>,
    failures: Option<u64>,
    error: Option<String>,
}

fn body(global: &Global, args: StatusArgs) -> CmdResult {
    let json = args.output.output == OutputFormat::Json;
    if let Some(client) = crate::remote::client(global) {
        let report = gather_remote(&client?)?;
        if json {
            print_json(&report);
        } else {
            print_text(&report, Paint::stdout(global));
        }
        return Ok(EXIT_OK);
    }
    let Some(store) = open_store_to_read(global)? else {
        if json {
            print_json(&Report {
                store_id: None,
                environment: None,
                version: None,
                conductor: ConductorReport {
                    running: false,
                    pid: None,
                    mode: None,
                    epoch: None,
                    problems: Vec::new(),
                    reconcilers: Vec::new(),
                },
                data_plane: DataPlaneReport::default(),
                converged: None,
                services: vec![],
                endpoints: vec![],
            });
        } else {
            println!(
                "Nothing applied yet in {}.",
                crate::common::data_dir(global).display()
            );
            println!(
                "Start with `glint up FILE`, or `glint apply FILE` with a `glint conductor` running."
            );
        }
        return Ok(EXIT_OK);
    };
    let report = gather(global, &store as &dyn Store)?;
    if json {
        print_json(&report);
    } else {
        print_text(&report, Paint::stdout(global));
    }
    Ok(EXIT_OK)
}

fn gather(global: &Global, store: &dyn Store) -> Result<Report, crate::common::Failed> {
    let io = |what: &str, e: glint_store::StoreError| crate::common::fail_io(what, &e);
    let version = store
        .latest_version()
        .map_err(|e| io("cannot read versions", e))?;
    let live = store
        .live_instances()
        .map_err(|e| io("cannot read instances", e))?;
    let dir = crate::common::data_dir(global);
    let running = ConductorLock::is_held(&dir);
    let info = store
        .conductor()
        .map_err(|e| io("cannot read conductor", e))?;
    // The live view, when a conductor answers.
    let live_status = if running {
        crate::common::runtime().ok().and_then(|rt| {
            rt.block_on(glint_conductor::api::status(
                &glint_conductor::api::socket_path(&dir),
            ))
            .ok()
        })
    } else {
        None
    };
    let (data_plane, plane_state) = read_data_plane(&dir);
    let mut services = Vec::new();
    let mut names: Vec<String> = version
        .as_ref()
        .map(|v| v.env.services.keys().map(|n| n.to_string()).collect())
        .unwrap_or_default();
    names.extend(live.iter().map(|i| i.service.to_string()));
    names.sort();
    names.dedup();
    let mut versions_cache: std::collections::BTreeMap<u64, Option<VersionRecord>> =
        Default::default();
    let scaled: std::collections::BTreeMap<String, glint_store::ScaleRecord> = store
        .scale_records()
        .map_err(|e| io("cannot read autoscaling decisions", e))?
        .into_iter()
        .map(|r| (r.service.to_string(), r))
        .collect();
    for name in names {
        let svc = version
            .as_ref()
            .and_then(|v| v.env.services.iter().find(|(n, _)| n.as_str() == name))
            .map(|(_, s)| s);
        let chosen = scaled.get(&name);
        let desired = svc
            .map(|s| glint_conductor::autoscale::count(s, chosen.map(|r| r.desired)))
            .unwrap_or(0);
        let mine: Vec<&InstanceRecord> =
            live.iter().filter(|i| i.service.as_str() == name).collect();
        let want = version.as_ref().and_then(|v| {
            glint_model::Name::new(&name)
                .ok()
                .and_then(|n| fingerprint(Target::of(v), &n))
        });
        let mut instances = Vec::new();
        for i in &mine {
            let iv = versions_cache
                .entry(i.version.0)
                .or_insert_with(|| store.version(i.version).ok());
            let fp = iv
                .as_ref()
                .and_then(|v| fingerprint(Target::of(v), &i.service));
            instances.push(InstanceReport {
                id: i.id.to_string(),
                version: i.version.0,
                current: want.is_some() && fp == want,
                state: i.state,
                health: i.health,
                age_s: std::time::SystemTime::now()
                    .duration_since(i.created())
                    .unwrap_or_default()
                    .as_secs(),
                address: i.addr.map(|a| a.to_string()),
                handle: i.handle.clone(),
            });
        }
        let healthy = mine
            .iter()
            .filter(|i| i.health == Health::Healthy && i.state == InstanceState::Running)
            .count() as u32;
        let backoff = live_status.as_ref().and_then(|s| {
            s.services
                .iter()
                .find(|x| x.name.as_str() == name)
                .and_then(|x| x.backoff.clone())
        });
        let rollout = live_status.as_ref().and_then(|s| {
            s.services
                .iter()
                .find(|x| x.name.as_str() == name)
                .and_then(|x| x.rollout.clone())
        });
        let live_scale = live_status.as_ref().and_then(|s| {
            s.services
                .iter()
                .find(|x| x.name.as_str() == name)
                .and_then(|x| x.autoscale.clone())
        });
        let autoscale = svc
            .and_then(|s| s.autoscale.as_ref())
            .map(|a| AutoscaleReport {
                min: a.min,
                max: a.max,
                current: healthy,
                desired,
                metric: a.metric.name().to_owned(),
                value: live_scale.as_ref().and_then(|l| l.value),
                target: a.metric.target(),
                unit: a.metric.unit().to_owned(),
                reason: live_scale
                    .map(|l| l.reason)
                    .or_else(|| chosen.map(|r| r.reason.clone())),
            });
        services.push(ServiceReport {
            name,
            desired,
            healthy,
            instances,
            backoff,
            rollout,
            autoscale,
        });
    }
    let endpoints = version
        .as_ref()
        .map(|v| {
            v.env
                .endpoints
                .iter()
                .map(|(name, e)| {
                    // The data plane's own view first; the conductor's
                    // (the same, a pass older) if it cannot be read.
                    let from_plane = plane_state.as_ref().map(|st| {
                        st.endpoint(name)
                            .map(glint_dataplane::view)
                            .map(|v| {
                                (
                                    v.listening,
                                    v.backends.len(),
                                    v.requests,
                                    v.failures,
                                    v.error,
                                )
                            })
                            .unwrap_or((false, 0, 0, 0, None))
                    });
                    let from_conductor = live_status
                        .as_ref()
                        .and_then(|s| s.endpoints.iter().find(|x| &x.name == name))
                        .map(|x| {
                            (
                                x.listening,
                                x.backends.len(),
                                x.requests,
                                x.failures,
                                x.error.clone(),
                            )
                        });
                    let l = from_plane.or(from_conductor);
                    EndpointReport {
                        name: name.to_string(),
                        listen: e.listen.to_string(),
                        service: e.service.to_string(),
                        listening: l.as_ref().map(|x| x.0),
                        backends: l.as_ref().map(|x| x.1),
                        requests: l.as_ref().map(|x| x.2),
                        failures: l.as_ref().map(|x| x.3),
                        error: l.and_then(|x| x.4),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(Report {
        store_id: store.store_id().ok(),
        environment: version.as_ref().map(|v| v.env.name.to_string()),
        version: version.as_ref().map(|v| v.number.0),
        conductor: ConductorReport {
            running,
            pid: info.as_ref().filter(|_| running).map(|i| i.pid),
            mode: info
                .as_ref()
                .filter(|_| running)
                .map(|i| i.mode.to_string()),
            epoch: info.as_ref().filter(|_| running).map(|i| i.epoch),
            problems: live_status
                .as_ref()
                .map(|s| s.problems.clone())
                .unwrap_or_default(),
            reconcilers: live_status
                .as_ref()
                .map(|s| s.reconcilers.clone())
                .unwrap_or_default(),
        },
        data_plane,
        converged: live_status.as_ref().map(|s| s.converged),
        services,
        endpoints,
    })
}

/// Who serves the endpoints, and (when it speaks this build's protocol)
/// its state.
fn read_data_plane(
    dir: &std::path::Path,
) -> (DataPlaneReport, Option<glint_dataplane::DataPlaneState>) {
    use glint_dataplane::{DataPlane, RemoteDataPlane};
    let Ok(rt) = crate::common::runtime() else {
        return (DataPlaneReport::default(), None);
    };
    rt.block_on(async {
        let identity = match RemoteDataPlane::hello(dir).await {
            Ok(i) => i,
            Err(e) if e.no_data_plane() => return (DataPlaneReport::default(), None),
            Err(e) => {
                let report = DataPlaneReport {
                    running: true,
                    error: Some(glint_dataplane::error_chain(&e)),
                    ..DataPlaneReport::default()
                };
                return (report, None);
            }
        };
        let mut report = DataPlaneReport {
            running: true,
            pid: Some(identity.pid),
            protocol: Some(identity.protocol),
            build: Some(identity.short_build()),
            version: Some(identity.version.clone()),
            started_at_ms: Some(identity.started_at_ms),
            current: Some(identity.adoptable()),
            error: None,
        };
        if identity.protocol != glint_dataplane::PROTOCOL {
            return (report, None);
        }
        match RemoteDataPlane::of(dir).state().await {
            Ok(state) => (report, Some(state)),
            Err(e) => {
                report.error = Some(glint_dataplane::error_chain(&e));
                (report, None)
            }
        }
    })
}

/// The report from a remote conductor's live status (`--addr`).
fn gather_remote(
    client: &glint_conductor::http::client::Client,
) -> Result<Report, crate::common::Failed> {
    use glint_conductor::decide::MemberPhase;
    let s: glint_conductor::Status = crate::remote::get(client, "/v1/status")?;
    let environment = match s.version {
        Some(v) => {
            let doc: serde_json::Value = crate::remote::get(client, &format!("/v1/versions/{v}"))?;
            doc["environment"]["name"].as_str().map(str::to_owned)
        }
        None => None,
    };
    let now = glint_store::now_ms();
    let services = s
        .services
        .iter()
        .map(|svc| ServiceReport {
            name: svc.name.to_string(),
            desired: svc.desired,
            healthy: svc.ready,
            instances: svc
                .instances
                .iter()
                .map(|i| {
                    let (state, health) = match i.phase {
                        MemberPhase::Launching => (InstanceState::Launching, Health::Starting),
                        MemberPhase::Starting => (InstanceState::Running, Health::Starting),
                        MemberPhase::Healthy => (InstanceState::Running, Health::Healthy),
                        MemberPhase::Failed => (InstanceState::Running, Health::Unhealthy),
                        MemberPhase::Retiring => (InstanceState::Retiring, Health::Healthy),
                    };
                    InstanceReport {
                        id: i.id.to_string(),
                        version: i.version.0,
                        current: i.current,
                        state,
                        health,
                        age_s: u64::try_from((now - i.created_at).max(0) / 1000).unwrap_or(0),
                        address: i.addr.map(|a| a.to_string()),
                        handle: None,
                    }
                })
                .collect(),
            backoff: svc.backoff.clone(),
            rollout: svc.rollout.clone(),
            autoscale: svc.autoscale.as_ref().map(|a| AutoscaleReport {
                min: a.min,
                max: a.max,
                current: a.current,
                desired: a.desired,
                metric: a.metric.clone(),
                value: a.value,
                target: a.target,
                unit: a.unit.clone(),
                reason: Some(a.reason.clone()),
            }),
        })
        .collect();
    let endpoints = s
        .endpoints
        .iter()
        .map(|e| EndpointReport {
            name: e.name.to_string(),
            listen: e.listen.to_string(),
            service: e.service.to_string(),
            listening: Some(e.listening),
            backends: Some(e.backends.len()),
            requests: Some(e.requests),
            failures: Some(e.failures),
            error: e.error.clone(),
        })
        .collect();
    Ok(Report {
        store_id: None,
        environment,
        version: s.version.map(|v| v.0),
        conductor: ConductorReport {
            running: true,
            pid: None,
            mode: None,
            epoch: Some(s.epoch),
            problems: s.problems.clone(),
            reconcilers: s.reconcilers.clone(),
        },
        converged: Some(s.converged),
        services,
        endpoints,
        // The remote conductor's machine runs the data plane; its status
        // is not part of the API's yet.
        data_plane: DataPlaneReport::default(),
    })
}

fn print_text(r: &Report, paint: Paint) {
    let env = r.environment.as_deref().unwrap_or("(none)");
    let version = r
        .version
        .map(|v| format!("version {v}"))
        .unwrap_or_else(|| "no version".into());
    let conductor = if r.conductor.running {
        let mut s = match r.conductor.pid {
            Some(pid) => format!(
                "conductor running (pid {pid}, {})",
                r.conductor.mode.as_deref().unwrap_or("?")
            ),
            None => "conductor running (remote)".to_owned(),
        };
        match r.converged {
            Some(true) => s.push_str(&format!(", {}", paint.green("converged"))),
            Some(false) => s.push_str(&format!(", {}", paint.yellow("converging"))),
            None => {}
        }
        paint.green(&s)
    } else {
        paint.yellow(
            "no conductor running: nothing is being healed (`glint conductor` or `glint up`)",
        )
    };
    println!(
        "{} {env} · {version} · {conductor}",
        paint.bold("Environment")
    );
    let d = &r.data_plane;
    let data_plane = match (d.running, d.pid) {
        (true, Some(pid)) => {
            let mut s = format!(
                "data plane running (pid {pid}, protocol {}, build {}",
                d.protocol.unwrap_or(0),
                d.build.as_deref().unwrap_or("?")
            );
            if d.current == Some(false) {
                s.push_str("; another build: the next conductor replaces it");
            }
            s.push(')');
            paint.green(&s)
        }
        (true, None) => paint.red(&format!(
            "data plane not answering: {}",
            d.error.as_deref().unwrap_or("?")
        )),
        (false, _) if !r.endpoints.is_empty() => {
            paint.yellow("no data plane running: endpoints are down")
        }
        (false, _) => paint.dim("no data plane running"),
    };
    // (A remote conductor's data plane is on its machine, not shown here.)
    if r.store_id.is_some() {
        println!("{} {data_plane}", paint.bold("Endpoints  "));
    }
    for p in &r.conductor.problems {
        println!("  {}", paint.red(p));
    }
    println!();
    let mut t = Table::new(&["SERVICE", "HEALTHY", "DESIRED", "NOTE"], paint);
    for s in &r.services {
        let h = format!("{}/{}", s.healthy, s.desired);
        let h = if s.healthy >= s.desired {
            paint.green(&h)
        } else {
            paint.yellow(&h)
        };
        let note = match (&s.backoff, &s.rollout) {
            (Some(b), _) => paint.red(&format!("launches held back: {b}")),
            (None, Some(r)) => {
                let mut n = if r.stale > r.aged {
                    format!("rolling out: {} to replace", r.stale)
                } else if r.aged > 0 {
                    format!("replacing {} past max_age", r.aged)
                } else {
                    String::new()
                };
                if let Some((step, of)) = r.step {
                    n.push_str(&format!(", canary step {step}/{of}"));
                }
                if let Some(w) = &r.waiting {
                    n.push_str(&format!(" — {w}"));
                }
                paint.yellow(n.trim_start_matches(", "))
            }
            (None, None) => String::new(),
        };
        t.row(vec![s.name.clone(), h, s.desired.to_string(), note]);
    }
    print!("{}", t.render());
    let scaled: Vec<&ServiceReport> = r
        .services
        .iter()
        .filter(|s| s.autoscale.is_some())
        .collect();
    if !scaled.is_empty() {
        println!();
        let mut t = Table::new(
            &[
                "AUTOSCALED",
                "CURRENT",
                "DESIRED",
                "BOUNDS",
                "METRIC",
                "TARGET",
                "WHY",
            ],
            paint,
        );
        for s in scaled {
            let Some(a) = &s.autoscale else { continue };
            let fmt = |v: f64| {
                if v.fract() == 0.0 || v >= 100.0 {
                    format!("{v:.0}{}", a.unit)
                } else {
                    format!("{v:.1}{}", a.unit)
                }
            };
            t.row(vec![
                s.name.clone(),
                a.current.to_string(),
                a.desired.to_string(),
                format!("{}–{}", a.min, a.max),
                format!(
                    "{} {}",
                    a.metric,
                    a.value.map(fmt).unwrap_or_else(|| "-".into())
                ),
                fmt(a.target),
                a.reason.clone().unwrap_or_default(),
            ]);
        }
        print!("{}", t.render());
    }
    println!();
    let mut t = Table::new(
        &[
            "INSTANCE", "SERVICE", "VERSION", "STATE", "HEALTH", "AGE", "ADDRESS", "HANDLE",
        ],
        paint,
    );
    for s in &r.services {
        for i in &s.instances {
            let health = match i.health {
                Health::Healthy => paint.green("healthy"),
                Health::Starting => paint.yellow("starting"),
                Health::Unhealthy => paint.red("unhealthy"),
            };
            let version = if i.current {
                i.version.to_string()
            } else {
                format!("{} (outdated)", i.version)
            };
            t.row(vec![
                i.id.clone(),
                s.name.clone(),
                version,
                i.state.to_string(),
                health,
                crate::common::age(std::time::Duration::from_secs(i.age_s)),
                i.address.clone().unwrap_or_default(),
                i.handle.clone().unwrap_or_default(),
            ]);
        }
    }
    if t.is_empty() {
        println!("No instances.");
    } else {
        print!("{}", t.render());
    }
    if !r.endpoints.is_empty() {
        println!();
        let mut t = Table::new(
            &[
                "ENDPOINT", "LISTEN", "SERVICE", "BACKENDS", "REQUESTS", "STATE",
            ],
            paint,
        );
        for e in &r.endpoints {
            let state = match (e.listening, &e.error) {
                (Some(true), _) => paint.green("listening"),
                (Some(false), Some(err)) => paint.red(err),
                (Some(false), None) => paint.yellow("starting"),
                (None, _) => paint.dim("down (no data plane)"),
            };
            t.row(vec![
                e.name.clone(),
                e.listen.clone(),
                e.service.clone(),
                e.backends
                    .map(|b| b.to_string())
                    .unwrap_or_else(|| "-".into()),
                e.requests
                    .map(|r| format!("{r} ({} failed)", e.failures.unwrap_or(0)))
                    .unwrap_or_else(|| "-".into()),
                state,
            ]);
        }
        print!("{}", t.render());
    }
}
