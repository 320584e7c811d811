//! The `service` table and the tables of its nested blocks: `health`,
//! `rollout` and its strategies, `resources`, `autoscale` and a mount.

use super::view::{dur, int, lst, opt, reference, s, string_map, strs, sym};
use super::{
    BlockDef, BlockInfo, BlockKind, Cx, FieldDef, FieldDefault as D, FieldInfo, What, provider,
};
use crate::capability::Capability;
use crate::codes::Code;
use crate::decode::{
    boolean, duration, enum_word, env_map, int_in, invalid, key_span, list, missing, port,
    positive_duration, record, reference as decode_ref, size, strings, type_error, value_span,
};
use crate::diag::Diagnostic;
use crate::schema::image::{IMAGE, ImageDraft};
use crate::source::Span;
use crate::value::{Kind, Record, SV, Value};
use glint_model::*;
use std::rc::Rc;

pub(crate) const SERVICE_INFO: BlockInfo = BlockInfo {
    kind: BlockKind::Service,
    path: "service",
    doc: "a set of identical instances of one image and one configuration",
    statements: &[],
    capability: None,
};

/// A service being decoded: the model's service (every default applied)
/// and what is only known once every declaration is decoded.
pub(crate) struct ServiceDraft {
    /// Its name (an inline image is named after it).
    pub name: Name,
    /// The service; `image` is a placeholder until [`ServiceDraft::image`] is known.
    pub s: Service,
    /// The image it runs.
    pub image: Option<Name>,
    /// An inline image and where it was written.
    pub inline: Option<(Span, Image)>,
    /// The declared port (else the image's, else the default).
    pub port: Option<u16>,
}

impl ServiceDraft {
    pub fn new(name: Name, provider: ProviderKind) -> ServiceDraft {
        // The image is set once decoded (the name is a placeholder).
        let mut s = Service::new(name.clone());
        s.provider = provider;
        ServiceDraft {
            name,
            s,
            image: None,
            inline: None,
            port: None,
        }
    }
}

pub(crate) static SERVICE: BlockDef<ServiceDraft, Service> = BlockDef {
    finish: Some(finish_service),
    fields: &[
        FieldDef {
            info: FieldInfo::new(
                "image",
                "`image.NAME`, or an inline `image { ... }` block",
                D::Required,
                "the image its instances run; an inline block becomes an image named after the service",
                "image.app",
            )
            .block(BlockKind::Image),
            decode: Some(|cx, v, d| match &v.v {
                Value::Record(r) => {
                    let mut img = ImageDraft::default();
                    let what = What::Owned(format!("the inline image of service `{}`", d.name));
                    if !IMAGE.decode(cx, r, v.span, &what, &mut img, &[]) {
                        return None;
                    }
                    d.image = Some(d.name.clone());
                    d.inline = Some((v.span, img.img));
                    Some(())
                }
                _ => {
                    d.image = Some(decode_ref(cx.ev, v, Kind::Image)?);
                    Some(())
                }
            }),
            view: Some(|m, _| reference(Kind::Image, &m.image)),
        },
        FieldDef {
            info: FieldInfo::new(
                "provider",
                "`process`, `docker`, `simulated` or `aws`",
                D::Derived("the environment's, else `process`"),
                "what runs its instances: local processes, Docker containers, EC2 instances (`aws`), or the simulated provider of tests",
                "docker",
            )
            .words(&["process", "docker", "simulated", "aws"]),
            decode: Some(|cx, v, d| {
                d.s.provider = provider(cx, v)?;
                Some(())
            }),
            view: Some(|m, _| sym(&m.provider.to_string())),
        },
        FieldDef {
            info: FieldInfo::new(
                "instances",
                "int, 0–10000",
                D::Value("1"),
                "how many healthy instances to keep",
                "3",
            )
            .aliases(&["replicas", "count", "scale"]),
            decode: Some(|cx, v, d| {
                d.s.instances = int_in(cx.ev, v, 0, 10_000, "instances")?;
                Some(())
            }),
            view: Some(|m, _| int(m.instances)),
        },
        FieldDef {
            info: FieldInfo::new(
                "args",
                "list of strings",
                D::Value("[]"),
                "arguments appended to the image's entrypoint",
                "[\"--verbose\"]",
            ),
            decode: Some(|cx, v, d| {
                d.s.args = strings(cx.ev, v)?;
                Some(())
            }),
            view: Some(|m, _| strs(&m.args)),
        },
        FieldDef {
            info: FieldInfo::new(
                "env",
                "map of strings",
                D::Value("{}"),
                "environment variables, on top of the image's",
                "{ GREETING = \"hello\" }",
            )
            .aliases(&["environment"]),
            decode: Some(|cx, v, d| {
                d.s.env = env_map(cx.ev, v)?;
                Some(())
            }),
            view: Some(|m, _| string_map(&m.env)),
        },
        FieldDef {
            info: FieldInfo::new(
                "port",
                "`port`",
                D::Derived("the image's port, else `8080`"),
                "the port the program listens on inside its instance",
                "9090",
            )
            .aliases(&["ports"]),
            decode: Some(|cx, v, d| {
                d.port = Some(port(cx.ev, v)?);
                Some(())
            }),
            view: Some(|m, _| int(m.port)),
        },
        FieldDef {
            info: FieldInfo::new(
                "health",
                "block, see below",
                D::Absent,
                "how to tell a healthy instance; without it an instance is healthy as soon as it runs",
                "{ http = \"/healthz\" }",
            )
            .block(BlockKind::Health)
            .aliases(&["healthcheck", "health_check"]),
            decode: Some(|cx, v, d| {
                let r = record(cx.ev, v, "a health check block")?;
                let mut h = HealthDraft::default();
                if !HEALTH.decode(cx, r, v.span, &What::Static("the health check"), &mut h, &[]) {
                    return None;
                }
                d.s.health = Some(h.h);
                Some(())
            }),
            view: Some(|m, env| opt(m.health.as_ref().map(|h| HEALTH.view_record(h, env)))),
        },
        FieldDef {
            info: FieldInfo::new(
                "rollout",
                "a strategy, or a block with `strategy`, `min_healthy`, `deadline`, `auto_rollback`, `fail_after`",
                D::Derived("`rolling`, `0s`, `5m`, `true`, `1`"),
                "how instances are replaced when the service changes",
                "canary { steps = [1, 2], pause = 1m }",
            )
            .blocks(&[
                BlockKind::Rollout,
                BlockKind::Rolling,
                BlockKind::BlueGreen,
                BlockKind::Canary,
            ])
            .words(STRATEGIES)
            .aliases(&["strategy"]),
            decode: Some(|cx, v, d| {
                d.s.rollout = match &v.v {
                    Value::Record(r) => {
                        let mut out = Rollout::default();
                        let what = What::Static("the rollout settings");
                        if !ROLLOUT.decode(cx, r, v.span, &what, &mut out, &[]) {
                            return None;
                        }
                        out
                    }
                    _ => Rollout {
                        strategy: strategy(cx, v)?,
                        ..Rollout::default()
                    },
                };
                Some(())
            }),
            view: Some(|m, env| ROLLOUT.view_record(&m.rollout, env)),
        },
        FieldDef {
            info: FieldInfo::new(
                "max_age",
                "duration",
                D::Absent,
                "replace every instance older than this, even when nothing changed",
                "24h",
            )
            .aliases(&["ttl", "max_lifetime"]),
            decode: Some(|cx, v, d| {
                d.s.max_age = Some(positive_duration(
                    cx.ev,
                    v,
                    "a `max_age`",
                    "every instance would be replaced as soon as it starts; leave `max_age` out to keep instances until something changes",
                )?);
                Some(())
            }),
            view: Some(|m, _| opt(m.max_age.map(dur))),
        },
        FieldDef {
            info: FieldInfo::new(
                "drain",
                "duration",
                D::Value("30s"),
                "how long a retiring instance may finish its in-flight requests",
                "15s",
            ),
            decode: Some(|cx, v, d| {
                d.s.drain = duration(cx.ev, v)?;
                Some(())
            }),
            view: Some(|m, _| dur(m.drain)),
        },
        FieldDef {
            info: FieldInfo::new(
                "stop_grace",
                "duration",
                D::Value("10s"),
                "time between SIGTERM and SIGKILL when an instance stops",
                "5s",
            ),
            decode: Some(|cx, v, d| {
                d.s.stop_grace = duration(cx.ev, v)?;
                Some(())
            }),
            view: Some(|m, _| dur(m.stop_grace)),
        },
        FieldDef {
            info: FieldInfo::new(
                "resources",
                "block: `memory`, `cpu_millis`, `pids`",
                D::Derived("no limits"),
                "resource limits of each instance (cgroups for process instances, Docker's limits for containers)",
                "{ memory = 512MiB }",
            )
            .block(BlockKind::Resources),
            decode: Some(|cx, v, d| {
                let r = record(cx.ev, v, "a resources block")?;
                let mut res = Resources::default();
                if !RESOURCES.decode(cx, r, v.span, &What::Static("the resources"), &mut res, &[])
                {
                    return None;
                }
                d.s.resources = res;
                Some(())
            }),
            view: Some(|m, env| RESOURCES.view_record(&m.resources, env)),
        },
        FieldDef {
            info: FieldInfo::new(
                "on_exec",
                "`replace` or `report`",
                D::Value("replace"),
                "what to do when someone runs a command inside an instance",
                "report",
            )
            .words(&["replace", "report"]),
            decode: Some(|cx, v, d| {
                d.s.on_exec = match enum_word(cx.ev, v, &["replace", "report"])? {
                    "report" => OnExec::Report,
                    _ => OnExec::Replace,
                };
                Some(())
            }),
            view: Some(|m, _| {
                sym(match m.on_exec {
                    OnExec::Replace => "replace",
                    OnExec::Report => "report",
                })
            }),
        },
        FieldDef {
            info: FieldInfo::new(
                "autoscale",
                "block: `min`, `max`, `metric`, `target`, `window`, `max_step`",
                D::Absent,
                "bounds within which the instance count follows the load",
                "{ min = 2, max = 10 }",
            )
            .block(BlockKind::Autoscale)
            .capability(Capability::Autoscale),
            decode: Some(|cx, v, d| {
                let r = record(cx.ev, v, "an autoscale block")?;
                let mut a = AutoscaleDraft::default();
                let what = What::Static("the autoscale block");
                if !AUTOSCALE.decode(cx, r, v.span, &what, &mut a, &[]) {
                    return None;
                }
                d.s.autoscale = Some(a.built?);
                Some(())
            }),
            view: Some(|m, env| opt(m.autoscale.as_ref().map(|a| AUTOSCALE.view_record(a, env)))),
        },
        FieldDef {
            info: FieldInfo::new(
                "mounts",
                "list of `{ volume = volume.NAME, path = \"/abs\", read_only = false }`",
                D::Value("[]"),
                "volumes mounted into every instance",
                "[{ volume = volume.data, path = \"/var/lib/data\" }]",
            )
            .block(BlockKind::Mount)
            .capability(Capability::Volumes)
            .aliases(&["volumes"]),
            decode: Some(|cx, v, d| {
                d.s.mounts = mounts(cx, v)?;
                Some(())
            }),
            view: Some(|m, env| lst(m.mounts.iter().map(|x| MOUNT.view_record(x, env)).collect())),
        },
    ],
};

fn finish_service(
    cx: &mut Cx<'_, '_>,
    rec: &Record,
    _at: Span,
    _what: &What<'_>,
    d: &mut ServiceDraft,
) -> Option<()> {
    if let Some(a) = &d.s.autoscale {
        // `instances` is the count an autoscaled service starts with: within
        // the bounds when written, `min` when not.
        match value_span(rec, "instances") {
            None => d.s.instances = a.min,
            Some(span) if d.s.instances < a.min || d.s.instances > a.max => {
                let mut diag = Diagnostic::error(
                    Code::InstancesOutsideAutoscale,
                    span,
                    format!(
                        "`instances = {}` is outside the autoscale bounds {}–{}",
                        d.s.instances, a.min, a.max
                    ),
                )
                .with_primary("the count an autoscaled service starts with")
                .with_help(format!(
                    "write an `instances` from {} to {}, or leave it out to start at `min`",
                    a.min, a.max
                ));
                if let Some(asp) = value_span(rec, "autoscale") {
                    diag = diag.with_label(asp, "the bounds");
                }
                cx.ev.diags.push(diag);
                return None;
            }
            Some(_) => {}
        }
    }
    let s = &d.s;
    if s.provider == ProviderKind::Process
        && s.resources.is_limited()
        && let Some(span) = key_span(rec, "resources")
    {
        let name = d.name.clone();
        cx.uses.add(Capability::ProcessResourceLimits, span, || {
            format!("`resources` of service `{name}` (process provider)")
        });
    }
    if let (Some(max_age), Some(h)) = (s.max_age, &s.health)
        && max_age <= h.interval
        && let Some(span) = value_span(rec, "max_age")
    {
        let mut diag = Diagnostic::error(
            Code::InvalidValue,
            span,
            format!(
                "`max_age = {max_age}` is not longer than the health check interval {}",
                h.interval
            ),
        )
        .with_primary("instances would be replaced before their health could be checked")
        .with_help("raise `max_age` well above `health.interval` (hours or days are usual)");
        if let Some(i) = rec.get("health").and_then(|hv| match &hv.v {
            Value::Record(hr) => value_span(hr, "interval"),
            _ => None,
        }) {
            diag = diag.with_label(i, "the interval");
        }
        cx.ev.diags.push(diag);
        return None;
    }
    Some(())
}

// ---------------------------------------------------------------------------
// health

pub(crate) const HEALTH_INFO: BlockInfo = BlockInfo {
    kind: BlockKind::Health,
    path: "service.health",
    doc: "a health check: an HTTP request or a TCP connection, probed on an interval",
    statements: &[],
    capability: None,
};

/// A health check being decoded: the probe is known once both `http` and
/// `tcp` are read.
pub(crate) struct HealthDraft {
    h: HealthCheck,
    http: Option<String>,
    tcp: Option<bool>,
}

impl Default for HealthDraft {
    fn default() -> Self {
        HealthDraft {
            h: HealthCheck::new(Probe::Tcp),
            http: None,
            tcp: None,
        }
    }
}

pub(crate) static HEALTH: BlockDef<HealthDraft, HealthCheck> = BlockDef {
    finish: Some(finish_health),
    fields: &[
        FieldDef {
            info: FieldInfo::new(
                "http",
                "string, a path starting with `/`",
                D::Absent,
                "probe with an HTTP GET of this path, which must answer 2xx or 3xx (give `http` or `tcp = true`)",
                "\"/healthz\"",
            ),
            decode: Some(|cx, v, d| {
                let s = crate::decode::string(cx.ev, v)?;
                if !s.starts_with('/') {
                    invalid(
                        cx.ev,
                        v,
                        format!("health check path `{s}` does not start with `/`"),
                        "an HTTP path starts with `/`",
                        Some(format!("write \"/{s}\"")),
                    );
                    return None;
                }
                d.http = Some(s);
                Some(())
            }),
            view: Some(|m, _| match &m.probe {
                Probe::Http { path } => s(path),
                Probe::Tcp => Value::None,
            }),
        },
        FieldDef {
            info: FieldInfo::new(
                "tcp",
                "bool",
                D::Value("false"),
                "probe by opening a TCP connection to the service's port",
                "true",
            ),
            decode: Some(|cx, v, d| {
                d.tcp = Some(boolean(cx.ev, v)?);
                Some(())
            }),
            view: Some(|m, _| Value::Bool(matches!(m.probe, Probe::Tcp))),
        },
        FieldDef {
            info: FieldInfo::new(
                "interval",
                "duration",
                D::Value("2s"),
                "time between two probes of an instance",
                "5s",
            ),
            decode: Some(|cx, v, d| {
                d.h.interval = positive_duration(
                    cx.ev,
                    v,
                    "a health check interval",
                    "instances would be probed without a pause; the usual interval is a few seconds",
                )?;
                Some(())
            }),
            view: Some(|m, _| dur(m.interval)),
        },
        FieldDef {
            info: FieldInfo::new(
                "timeout",
                "duration, at most the interval",
                D::Value("1s"),
                "how long one probe may take",
                "500ms",
            ),
            decode: Some(|cx, v, d| {
                d.h.timeout = positive_duration(
                    cx.ev,
                    v,
                    "a health check timeout",
                    "every probe would fail at once; give it time to answer, e.g. `1s`",
                )?;
                Some(())
            }),
            view: Some(|m, _| dur(m.timeout)),
        },
        FieldDef {
            info: FieldInfo::new(
                "healthy_threshold",
                "int, 1–100",
                D::Value("1"),
                "consecutive passing probes that make an instance healthy",
                "2",
            ),
            decode: Some(|cx, v, d| {
                d.h.healthy_threshold = int_in(cx.ev, v, 1, 100, "healthy_threshold")?;
                Some(())
            }),
            view: Some(|m, _| int(m.healthy_threshold)),
        },
        FieldDef {
            info: FieldInfo::new(
                "unhealthy_threshold",
                "int, 1–100",
                D::Value("3"),
                "consecutive failing probes that make an instance unhealthy",
                "5",
            ),
            decode: Some(|cx, v, d| {
                d.h.unhealthy_threshold = int_in(cx.ev, v, 1, 100, "unhealthy_threshold")?;
                Some(())
            }),
            view: Some(|m, _| int(m.unhealthy_threshold)),
        },
        FieldDef {
            info: FieldInfo::new(
                "start_timeout",
                "duration",
                D::Value("30s"),
                "how long a new instance may take to become healthy before it is replaced",
                "2m",
            ),
            decode: Some(|cx, v, d| {
                d.h.start_timeout = positive_duration(
                    cx.ev,
                    v,
                    "a `start_timeout`",
                    "no instance could become healthy in time; allow it to start, e.g. `30s`",
                )?;
                Some(())
            }),
            view: Some(|m, _| dur(m.start_timeout)),
        },
    ],
};

fn finish_health(
    cx: &mut Cx<'_, '_>,
    rec: &Record,
    at: Span,
    _what: &What<'_>,
    d: &mut HealthDraft,
) -> Option<()> {
    d.h.probe = match (d.http.take(), d.tcp) {
        (Some(path), None | Some(false)) => Probe::Http { path },
        (None, Some(true)) => Probe::Tcp,
        (Some(_), Some(true)) => {
            cx.ev.diags.push(
                Diagnostic::error(
                    Code::InvalidValue,
                    at,
                    "a health check probes either `http` or `tcp`, not both",
                )
                .with_primary("both given"),
            );
            return None;
        }
        (None, _) => {
            missing(
                cx.ev,
                at,
                &"the health check",
                "http",
                "the HTTP path to probe, e.g. `http = \"/healthz\"` (or `tcp = true`)",
            );
            return None;
        }
    };
    let (interval, timeout) = (d.h.interval, d.h.timeout);
    if timeout > interval
        && let Some(t) = value_span(rec, "timeout")
    {
        cx.ev.diags.push(
            Diagnostic::error(
                Code::InvalidValue,
                t,
                format!("health check timeout {timeout} is longer than its interval {interval}"),
            )
            .with_primary("longer than the interval")
            .with_help(
                "a probe must finish before the next one starts: lower `timeout` or raise `interval`",
            ),
        );
        return None;
    }
    Some(())
}

// ---------------------------------------------------------------------------
// rollout and strategies

const STRATEGIES: &[&str] = &["rolling", "blue_green", "canary"];

pub(crate) const ROLLOUT_INFO: BlockInfo = BlockInfo {
    kind: BlockKind::Rollout,
    path: "service.rollout",
    doc: "how a service's instances are replaced: a strategy and its safety limits",
    statements: &[],
    capability: None,
};

pub(crate) static ROLLOUT: BlockDef<Rollout, Rollout> = BlockDef {
    finish: Some(finish_rollout),
    fields: &[
        FieldDef {
            info: FieldInfo::new(
                "strategy",
                "`rolling { ... }`, `blue_green { ... }` or `canary { ... }`",
                D::Value("rolling"),
                "how old instances give way to new ones",
                "blue_green { keep = 10m }",
            )
            .blocks(&[BlockKind::Rolling, BlockKind::BlueGreen, BlockKind::Canary])
            .words(STRATEGIES),
            decode: Some(|cx, v, d| {
                d.strategy = strategy(cx, v)?;
                Some(())
            }),
            view: Some(|m, env| {
                let (tag, payload) = match &m.strategy {
                    Strategy::Rolling { .. } => ("rolling", ROLLING.view_record(&m.strategy, env)),
                    Strategy::BlueGreen { .. } => {
                        ("blue_green", BLUE_GREEN.view_record(&m.strategy, env))
                    }
                    Strategy::Canary { .. } => ("canary", CANARY.view_record(&m.strategy, env)),
                };
                match payload {
                    Value::Record(r) => Value::Tagged(Rc::from(tag), r),
                    _ => sym(tag),
                }
            }),
        },
        FieldDef {
            info: FieldInfo::new(
                "min_healthy",
                "duration, shorter than the deadline",
                D::Value("0s"),
                "a new instance counts only after it has been healthy this long",
                "10s",
            ),
            decode: Some(|cx, v, d| {
                d.min_healthy = duration(cx.ev, v)?;
                Some(())
            }),
            view: Some(|m, _| dur(m.min_healthy)),
        },
        FieldDef {
            info: FieldInfo::new(
                "deadline",
                "duration",
                D::Value("5m"),
                "a rollout that makes no progress for this long fails",
                "10m",
            ),
            decode: Some(|cx, v, d| {
                d.deadline = positive_duration(
                    cx.ev,
                    v,
                    "a rollout deadline",
                    "every rollout would fail at once; allow it time, e.g. `5m`",
                )?;
                Some(())
            }),
            view: Some(|m, _| dur(m.deadline)),
        },
        FieldDef {
            info: FieldInfo::new(
                "auto_rollback",
                "bool",
                D::Value("true"),
                "roll back to the last good version when a rollout fails",
                "false",
            ),
            decode: Some(|cx, v, d| {
                d.auto_rollback = boolean(cx.ev, v)?;
                Some(())
            }),
            view: Some(|m, _| Value::Bool(m.auto_rollback)),
        },
        FieldDef {
            info: FieldInfo::new(
                "fail_after",
                "int, 1–100",
                D::Value("1"),
                "new instances that fail (launch, crash, health check) before the rollout fails",
                "3",
            ),
            decode: Some(|cx, v, d| {
                d.fail_after = int_in(cx.ev, v, 1, 100, "fail_after")?;
                Some(())
            }),
            view: Some(|m, _| int(m.fail_after)),
        },
    ],
};

fn finish_rollout(
    cx: &mut Cx<'_, '_>,
    rec: &Record,
    at: Span,
    _what: &What<'_>,
    d: &mut Rollout,
) -> Option<()> {
    if d.min_healthy >= d.deadline {
        let span = value_span(rec, "min_healthy").unwrap_or(at);
        let mut diag = Diagnostic::error(
            Code::InvalidValue,
            span,
            format!(
                "`min_healthy = {}` is not shorter than the rollout deadline {}",
                d.min_healthy, d.deadline
            ),
        )
        .with_primary("no new instance could count before the deadline")
        .with_help("lower `min_healthy` or raise `deadline`");
        if let Some(dl) = value_span(rec, "deadline") {
            diag = diag.with_label(dl, "the deadline");
        }
        cx.ev.diags.push(diag);
        return None;
    }
    Some(())
}

/// Decodes `rolling`, `blue_green { keep = 10m }`, ...
fn strategy(cx: &mut Cx<'_, '_>, v: &SV) -> Option<Strategy> {
    let (tag, payload): (&str, Option<&Record>) = match &v.v {
        Value::Sym(s) => (s, None),
        Value::Tagged(t, r) => (t, Some(r)),
        _ => {
            type_error(
                cx.ev,
                v,
                "a rollout strategy (`rolling`, `blue_green` or `canary`)",
                None,
            );
            return None;
        }
    };
    let word = enum_word(
        cx.ev,
        &SV {
            v: Value::Sym(Rc::from(tag)),
            span: v.span,
        },
        STRATEGIES,
    )?;
    let empty = Record::default();
    let r = payload.unwrap_or(&empty);
    let what = What::Owned(format!("the `{word}` strategy"));
    match word {
        "rolling" => {
            let mut d = RollingDraft {
                surge: defaults::SURGE,
                unavailable: defaults::UNAVAILABLE,
            };
            ROLLING
                .decode(cx, r, v.span, &what, &mut d, &[])
                .then_some(Strategy::Rolling {
                    surge: d.surge,
                    unavailable: d.unavailable,
                })
        }
        "blue_green" => {
            let mut keep = Millis::from_secs(600);
            BLUE_GREEN
                .decode(cx, r, v.span, &what, &mut keep, &[])
                .then_some(Strategy::BlueGreen { keep })
        }
        _ => {
            let mut d = CanaryDraft {
                steps: vec![1],
                pause: Millis::from_secs(60),
            };
            CANARY
                .decode(cx, r, v.span, &what, &mut d, &[])
                .then_some(Strategy::Canary {
                    steps: d.steps,
                    pause: d.pause,
                })
        }
    }
}

pub(crate) const ROLLING_INFO: BlockInfo = BlockInfo {
    kind: BlockKind::Rolling,
    path: "rolling",
    doc: "replace a few instances at a time",
    statements: &[],
    capability: None,
};

pub(crate) struct RollingDraft {
    surge: u32,
    unavailable: u32,
}

pub(crate) static ROLLING: BlockDef<RollingDraft, Strategy> = BlockDef {
    finish: Some(|cx, _, at, _, d| {
        if d.surge == 0 && d.unavailable == 0 {
            cx.ev.diags.push(
                Diagnostic::error(
                    Code::InvalidValue,
                    at,
                    "a rolling update with `surge = 0` and `unavailable = 0` can never make progress",
                )
                .with_primary("no room to replace anything")
                .with_help("allow `surge = 1` (an extra instance during the update)"),
            );
            return None;
        }
        Some(())
    }),
    fields: &[
        FieldDef {
            info: FieldInfo::new(
                "surge",
                "int, 0–10000",
                D::Value("1"),
                "extra instances allowed above the declared count during a rollout",
                "2",
            ),
            decode: Some(|cx, v, d| {
                d.surge = int_in(cx.ev, v, 0, 10_000, "surge")?;
                Some(())
            }),
            view: Some(|m, _| match m {
                Strategy::Rolling { surge, .. } => int(*surge),
                _ => Value::None,
            }),
        },
        FieldDef {
            info: FieldInfo::new(
                "unavailable",
                "int, 0–10000",
                D::Value("0"),
                "instances allowed below the declared healthy count during a rollout",
                "1",
            ),
            decode: Some(|cx, v, d| {
                d.unavailable = int_in(cx.ev, v, 0, 10_000, "unavailable")?;
                Some(())
            }),
            view: Some(|m, _| match m {
                Strategy::Rolling { unavailable, .. } => int(*unavailable),
                _ => Value::None,
            }),
        },
    ],
};

pub(crate) const BLUE_GREEN_INFO: BlockInfo = BlockInfo {
    kind: BlockKind::BlueGreen,
    path: "blue_green",
    doc: "start a complete new set, switch in one step, keep the old set for a while",
    statements: &[],
    capability: None,
};

pub(crate) static BLUE_GREEN: BlockDef<Millis, Strategy> = BlockDef {
    finish: None,
    fields: &[FieldDef {
        info: FieldInfo::new(
            "keep",
            "duration",
            D::Value("10m"),
            "how long the old set stays ready for an instant switch back",
            "30m",
        ),
        decode: Some(|cx, v, d| {
            *d = duration(cx.ev, v)?;
            Some(())
        }),
        view: Some(|m, _| match m {
            Strategy::BlueGreen { keep } => dur(*keep),
            _ => Value::None,
        }),
    }],
};

pub(crate) const CANARY_INFO: BlockInfo = BlockInfo {
    kind: BlockKind::Canary,
    path: "canary",
    doc: "grow the new version in steps, pausing to watch between them",
    statements: &[],
    capability: None,
};

pub(crate) struct CanaryDraft {
    steps: Vec<u32>,
    pause: Millis,
}

pub(crate) static CANARY: BlockDef<CanaryDraft, Strategy> = BlockDef {
    finish: None,
    fields: &[
        FieldDef {
            info: FieldInfo::new(
                "steps",
                "list of increasing ints",
                D::Value("[1]"),
                "instance counts of the new version at each step (the last step, all instances, is implied)",
                "[1, 2]",
            ),
            decode: Some(|cx, v, d| {
                let items = list(cx.ev, v, "instance counts")?;
                let mut out = Vec::new();
                let mut ok = true;
                for i in items {
                    match int_in(cx.ev, i, 1, 10_000, "a canary step") {
                        Some(n) => out.push(n),
                        None => ok = false,
                    }
                }
                if ok && out.windows(2).any(|w| w[0] >= w[1]) {
                    invalid(
                        cx.ev,
                        v,
                        "canary steps must increase".into(),
                        "not increasing",
                        None,
                    );
                    return None;
                }
                d.steps = out;
                ok.then_some(())
            }),
            view: Some(|m, _| match m {
                Strategy::Canary { steps, .. } => lst(steps.iter().map(|x| int(*x)).collect()),
                _ => Value::None,
            }),
        },
        FieldDef {
            info: FieldInfo::new(
                "pause",
                "duration",
                D::Value("1m"),
                "how long to watch after each step",
                "5m",
            ),
            decode: Some(|cx, v, d| {
                d.pause = duration(cx.ev, v)?;
                Some(())
            }),
            view: Some(|m, _| match m {
                Strategy::Canary { pause, .. } => dur(*pause),
                _ => Value::None,
            }),
        },
    ],
};

// ---------------------------------------------------------------------------
// resources, autoscale, mounts

pub(crate) const RESOURCES_INFO: BlockInfo = BlockInfo {
    kind: BlockKind::Resources,
    path: "service.resources",
    doc: "resource limits of one instance",
    statements: &[],
    capability: None,
};

pub(crate) static RESOURCES: BlockDef<Resources, Resources> = BlockDef {
    finish: None,
    fields: &[
        FieldDef {
            info: FieldInfo::new(
                "memory",
                "size",
                D::Absent,
                "memory limit of one instance",
                "512MiB",
            ),
            decode: Some(|cx, v, d| {
                d.memory = Some(size(cx.ev, v)?);
                Some(())
            }),
            view: Some(|m, _| opt(m.memory.map(|b| Value::Size(b.0)))),
        },
        FieldDef {
            info: FieldInfo::new(
                "cpu_millis",
                "int, 1–1000000",
                D::Absent,
                "CPU limit in thousandths of a CPU (`500` is half a CPU)",
                "500",
            ),
            decode: Some(|cx, v, d| {
                d.cpu_millis = Some(int_in(cx.ev, v, 1, 1_000_000, "cpu_millis")?);
                Some(())
            }),
            view: Some(|m, _| opt(m.cpu_millis.map(int))),
        },
        FieldDef {
            info: FieldInfo::new(
                "pids",
                "int, 1–4194304",
                D::Absent,
                "most processes and threads one instance may have at once",
                "256",
            ),
            decode: Some(|cx, v, d| {
                d.pids = Some(int_in(cx.ev, v, 1, 4_194_304, "pids")?);
                Some(())
            }),
            view: Some(|m, _| opt(m.pids.map(int))),
        },
    ],
};

pub(crate) const AUTOSCALE_INFO: BlockInfo = BlockInfo {
    kind: BlockKind::Autoscale,
    path: "service.autoscale",
    doc: "autoscaling bounds (the upper bound is mandatory)",
    statements: &[],
    capability: Some(Capability::Autoscale),
};

pub(crate) struct AutoscaleDraft {
    min: u32,
    max: Option<u32>,
    metric: Option<&'static str>,
    target: Option<Target>,
    target_cpu: Option<u32>,
    window: Millis,
    max_step: Option<u32>,
    /// The block, once [`AUTOSCALE`]'s finish has checked it.
    pub built: Option<Autoscale>,
}

/// An autoscale `target` as written: a number (percent, requests, requests
/// per second) or a duration (latency).
#[derive(Clone, Copy)]
enum Target {
    Number(u32),
    Duration(Millis),
}

impl Default for AutoscaleDraft {
    fn default() -> Self {
        AutoscaleDraft {
            min: 1,
            max: None,
            metric: None,
            target: None,
            target_cpu: None,
            window: glint_model::defaults::SCALE_DOWN_WINDOW,
            max_step: None,
            built: None,
        }
    }
}

const METRICS: &[&str] = &["cpu", "in_flight", "requests_per_second", "latency"];

/// The metric and its target, from `metric`, `target` and `target_cpu`.
fn scale_metric(
    cx: &mut Cx<'_, '_>,
    rec: &Record,
    at: Span,
    d: &AutoscaleDraft,
) -> Option<ScaleMetric> {
    let span_of = |k: &str| value_span(rec, k).unwrap_or(at);
    if d.target_cpu.is_some() && (d.metric.is_some_and(|m| m != "cpu") || d.target.is_some()) {
        cx.ev.diags.push(
            Diagnostic::error(
                Code::InvalidValue,
                span_of("target_cpu"),
                "`target_cpu` is a shorthand for `metric = cpu` with `target`; it cannot be combined with them",
            )
            .with_primary("written together with `metric` or `target`")
            .with_help("keep `target_cpu = N`, or write `metric = cpu` and `target = N`"),
        );
        return None;
    }
    let metric = d.metric.unwrap_or("cpu");
    let wrong = |cx: &mut Cx<'_, '_>, expected: &str| -> Option<u32> {
        cx.ev.diags.push(
            Diagnostic::error(
                Code::TypeMismatch,
                span_of("target"),
                format!("the target of `metric = {metric}` must be {expected}"),
            )
            .with_primary("not a valid target for this metric"),
        );
        None
    };
    let number = |cx: &mut Cx<'_, '_>, max: u32, unit: &str| match d.target {
        Some(Target::Number(n)) if (1..=max).contains(&n) => Some(n),
        Some(Target::Number(n)) => {
            cx.ev.diags.push(
                Diagnostic::error(
                    Code::InvalidValue,
                    span_of("target"),
                    format!(
                        "the target of `metric = {metric}` must be from 1 to {max} {unit}, not {n}"
                    ),
                )
                .with_primary("out of range"),
            );
            None
        }
        Some(Target::Duration(_)) => wrong(cx, &format!("a number of {unit}")),
        None => {
            missing(
                cx.ev,
                at,
                &What::Static("the autoscale block"),
                "target",
                &format!("the {unit} per instance to aim at, e.g. `target = 20`"),
            );
            None
        }
    };
    Some(match metric {
        "cpu" => ScaleMetric::Cpu {
            percent: match (d.target_cpu, d.target) {
                (Some(p), _) => p,
                (None, None) => glint_model::defaults::TARGET_CPU_PERCENT,
                (None, Some(_)) => number(cx, 100, "percent")?,
            },
        },
        "in_flight" => ScaleMetric::InFlight {
            per_instance: number(cx, 100_000, "requests in flight")?,
        },
        "requests_per_second" => ScaleMetric::RequestsPerSecond {
            per_instance: number(cx, 10_000_000, "requests per second")?,
        },
        _ => match d.target {
            Some(Target::Duration(t)) if t.0 > 0 => ScaleMetric::Latency { target: t },
            Some(_) => {
                wrong(cx, "a duration above 0 such as `200ms`");
                return None;
            }
            None => {
                missing(
                    cx.ev,
                    at,
                    &What::Static("the autoscale block"),
                    "target",
                    "the mean latency to aim at, e.g. `target = 200ms`",
                );
                return None;
            }
        },
    })
}

pub(crate) static AUTOSCALE: BlockDef<AutoscaleDraft, Autoscale> = BlockDef {
    finish: Some(|cx, rec, at, _, d| {
        let max = d.max?;
        if d.min > max {
            let span = value_span(rec, "min").unwrap_or(at);
            let mut diag = Diagnostic::error(
                Code::InvalidValue,
                span,
                format!("autoscale minimum {} is above its maximum {max}", d.min),
            )
            .with_primary("min is greater than max");
            if let Some(m) = value_span(rec, "max") {
                diag = diag.with_label(m, "max set here");
            }
            cx.ev.diags.push(diag);
            return None;
        }
        let metric = scale_metric(cx, rec, at, d)?;
        d.built = Some(Autoscale {
            min: d.min,
            max,
            metric,
            window: d.window,
            max_step: d.max_step,
        });
        Some(())
    }),
    fields: &[
        FieldDef {
            info: FieldInfo::new(
                "min",
                "int, 1–10000",
                D::Value("1"),
                "never fewer instances than this",
                "2",
            ),
            decode: Some(|cx, v, d| {
                d.min = int_in(cx.ev, v, 1, 10_000, "min")?;
                Some(())
            }),
            view: Some(|m, _| int(m.min)),
        },
        FieldDef {
            info: FieldInfo::new(
                "max",
                "int, 1–10000",
                D::Required,
                "never more instances than this: autoscaling needs an upper bound",
                "10",
            ),
            decode: Some(|cx, v, d| {
                d.max = Some(int_in(cx.ev, v, 1, 10_000, "max")?);
                Some(())
            }),
            view: Some(|m, _| int(m.max)),
        },
        FieldDef {
            info: FieldInfo::new(
                "metric",
                "`cpu`, `in_flight`, `requests_per_second` or `latency`",
                D::Value("cpu"),
                "what the count follows: cgroup CPU use, or the service's endpoints' requests in flight, requests per second or mean latency, per instance",
                "in_flight",
            )
            .words(METRICS),
            decode: Some(|cx, v, d| {
                let w = enum_word(cx.ev, v, METRICS)?;
                d.metric = METRICS.iter().copied().find(|m| *m == w);
                Some(())
            }),
            view: Some(|m, _| sym(m.metric.name())),
        },
        FieldDef {
            info: FieldInfo::new(
                "target",
                "int (percent, requests, requests per second) or duration (latency)",
                D::Derived("`70` for `cpu`; required for the other metrics"),
                "the value of the metric to keep each instance at; a CPU target is a percent of the instance's `cpu_millis` (of one CPU without)",
                "20",
            ),
            decode: Some(|cx, v, d| {
                d.target = Some(match &v.v {
                    Value::Duration(ms) => Target::Duration(Millis(*ms)),
                    _ => Target::Number(int_in(cx.ev, v, 0, i64::from(u32::MAX), "target")?),
                });
                Some(())
            }),
            view: Some(|m, _| match m.metric {
                ScaleMetric::Latency { target } => dur(target),
                other => Value::Int(other.target() as i64),
            }),
        },
        FieldDef {
            info: FieldInfo::new(
                "target_cpu",
                "int, 1–100",
                D::Derived("`70`"),
                "shorthand for `metric = cpu` with this `target`, in percent",
                "60",
            ),
            decode: Some(|cx, v, d| {
                d.target_cpu = Some(int_in(cx.ev, v, 1, 100, "target_cpu")?);
                Some(())
            }),
            view: Some(|m, _| match m.metric {
                ScaleMetric::Cpu { percent } => int(percent),
                _ => Value::None,
            }),
        },
        FieldDef {
            info: FieldInfo::new(
                "window",
                "duration",
                D::Value("5m"),
                "scale-down stabilisation: the count falls only to the highest recommendation of this long",
                "10m",
            )
            .aliases(&["stabilization_window", "cooldown"]),
            decode: Some(|cx, v, d| {
                d.window = duration(cx.ev, v)?;
                Some(())
            }),
            view: Some(|m, _| dur(m.window)),
        },
        FieldDef {
            info: FieldInfo::new(
                "max_step",
                "int, 1–10000",
                D::Derived("as many as run, at least 4"),
                "the most instances one scale-up step adds",
                "2",
            ),
            decode: Some(|cx, v, d| {
                d.max_step = Some(int_in(cx.ev, v, 1, 10_000, "max_step")?);
                Some(())
            }),
            view: Some(|m, _| opt(m.max_step.map(int))),
        },
    ],
};

pub(crate) const MOUNT_INFO: BlockInfo = BlockInfo {
    kind: BlockKind::Mount,
    path: "service.mounts",
    doc: "a volume mounted into a service's instances",
    statements: &[],
    capability: Some(Capability::Volumes),
};

#[derive(Default)]
pub(crate) struct MountDraft {
    volume: Option<Name>,
    path: Option<String>,
    read_only: bool,
}

pub(crate) static MOUNT: BlockDef<MountDraft, Mount> = BlockDef {
    finish: None,
    fields: &[
        FieldDef {
            info: FieldInfo::new(
                "volume",
                "`volume.NAME`",
                D::Required,
                "the volume to mount",
                "volume.data",
            ),
            decode: Some(|cx, v, d| {
                d.volume = Some(decode_ref(cx.ev, v, Kind::Volume)?);
                Some(())
            }),
            view: Some(|m, _| reference(Kind::Volume, &m.volume)),
        },
        FieldDef {
            info: FieldInfo::new(
                "path",
                "absolute path",
                D::Required,
                "where the volume appears inside the instance",
                "\"/var/lib/data\"",
            ),
            decode: Some(|cx, v, d| {
                d.path = Some(crate::decode::absolute_path(cx.ev, v, "mount path")?);
                Some(())
            }),
            view: Some(|m, _| s(&m.path)),
        },
        FieldDef {
            info: FieldInfo::new(
                "read_only",
                "bool",
                D::Value("false"),
                "mount the volume read-only",
                "true",
            ),
            decode: Some(|cx, v, d| {
                d.read_only = boolean(cx.ev, v)?;
                Some(())
            }),
            view: Some(|m, _| Value::Bool(m.read_only)),
        },
    ],
};

fn mounts(cx: &mut Cx<'_, '_>, v: &SV) -> Option<Vec<Mount>> {
    let items = list(
        cx.ev,
        v,
        "mounts (`{ volume = volume.NAME, path = \"/data\" }`)",
    )?;
    let mut out = Vec::new();
    let mut ok = true;
    for i in items {
        let Some(r) = record(
            cx.ev,
            i,
            "a mount (`{ volume = volume.NAME, path = \"/data\" }`)",
        ) else {
            ok = false;
            continue;
        };
        let mut d = MountDraft::default();
        if MOUNT.decode(cx, r, i.span, &What::Static("the mount"), &mut d, &[])
            && let (Some(volume), Some(path)) = (d.volume, d.path)
        {
            out.push(Mount {
                volume,
                path,
                read_only: d.read_only,
            });
        } else {
            ok = false;
        }
    }
    ok.then_some(out)
}
