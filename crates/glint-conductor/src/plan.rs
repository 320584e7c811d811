//! Plans: what an apply would create, replace and retire, and why.
//!
//! The key idea is the *launch shape* of a service ([`shape`]): everything
//! that is fixed into an instance when it is launched (image digest and its
//! run-time configuration, args, env, port, provider, resources, mounts). Two
//! versions of a service with the same shape can share instances; a different
//! shape means the instances are *replaced* — there is no in-place update.
//! Settings the conductor applies from outside (instance count, health check,
//! rollout strategy, `max_age`, drain and grace times) never replace anything.
//!
//! [`plan`] is pure: it compares the current version, the live instances and
//! a candidate environment, and the CLI prints the result.

use glint_model::{
    ContentHash, Digest, Environment, Image, InstanceId, Name, Service, VersionNumber,
};
use glint_store::InstanceRecord;
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// A compiled environment together with the digests of its images: what a
/// version holds and what the conductor converges to.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// The environment.
    pub env: &'a Environment,
    /// Image digests by image name.
    pub images: &'a BTreeMap<Name, Digest>,
}

impl<'a> Target<'a> {
    /// The target of a stored version.
    pub fn of(v: &'a glint_store::VersionRecord) -> Target<'a> {
        Target {
            env: &v.env,
            images: &v.images,
        }
    }
}

/// Everything fixed into an instance at launch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Shape<'a> {
    pub(crate) provider: glint_model::ProviderKind,
    pub(crate) image: &'a Name,
    pub(crate) digest: Option<&'a Digest>,
    pub(crate) entrypoint: Option<&'a [String]>,
    pub(crate) image_env: Option<&'a BTreeMap<String, String>>,
    pub(crate) workdir: Option<&'a str>,
    pub(crate) args: &'a [String],
    pub(crate) env: &'a BTreeMap<String, String>,
    pub(crate) port: u16,
    pub(crate) resources: &'a glint_model::Resources,
    pub(crate) mounts: &'a [glint_model::Mount],
    /// The mounted volumes declared per instance (which volume an instance
    /// mounts depends on it). Left out of the hash when empty, so shapes
    /// without such volumes hash as before.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) per_instance: Vec<&'a Name>,
    /// The secrets the service reads, with the version each had when the
    /// target was applied (0: not set). A new version of a secret replaces
    /// its readers; its value is never part of a shape. Left out of the
    /// hash when empty.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) secrets: Vec<(&'a str, u64)>,
    /// Whether the instance gets its own network (a process service of an
    /// environment that declares rules; see `firewall.rs`). Declaring the
    /// first rule (or removing the last) replaces process instances. Left
    /// out of the hash when false.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub(crate) own_network: bool,
    /// The literal and runtime variables the service reads or writes, with
    /// a hash of each literal value (runtime ones: `None`; their values
    /// change at run time, through the API, and replace nobody). A changed
    /// literal replaces its readers, as any configuration change. Left out
    /// of the hash when empty.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) variables: Vec<(&'a str, Option<String>)>,
}

/// A short hash of a variable's literal value (shown by `plan`, in launch
/// shapes), never the value.
pub fn value_hash(value: &str) -> String {
    use sha2::Digest as _;
    let d = sha2::Sha256::digest(value.as_bytes());
    d.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

/// The launch shape of `service` in `target`, if the service exists.
pub fn shape<'a>(target: Target<'a>, service: &Name) -> Option<Shape<'a>> {
    let s = target.env.services.get(service)?;
    let image: Option<&Image> = target.env.images.get(&s.image);
    Some(Shape {
        provider: s.provider,
        image: &s.image,
        digest: target.images.get(&s.image),
        entrypoint: image.map(|i| i.entrypoint.as_slice()),
        image_env: image.map(|i| &i.env),
        workdir: image.map(|i| i.workdir.as_str()),
        args: &s.args,
        env: &s.env,
        port: s.port,
        resources: &s.resources,
        mounts: &s.mounts,
        per_instance: s
            .mounts
            .iter()
            .filter(|m| {
                target
                    .env
                    .volumes
                    .get(&m.volume)
                    .is_some_and(|v| v.per_instance)
            })
            .map(|m| &m.volume)
            .collect(),
        secrets: target
            .env
            .secrets_of(service)
            .into_iter()
            .map(|n| (n, target.env.secret_versions.get(n).copied().unwrap_or(0)))
            .collect(),
        own_network: crate::firewall::own_network(target.env, s),
        variables: target
            .env
            .variables_of(service)
            .into_iter()
            .map(|(n, v)| {
                (
                    n.as_str(),
                    match &v.value {
                        glint_model::VariableValue::Literal(value) => Some(value_hash(value)),
                        _ => None,
                    },
                )
            })
            .collect(),
    })
}

/// The hash of a service's launch shape.
pub fn fingerprint(target: Target<'_>, service: &Name) -> Option<ContentHash> {
    shape(target, service).map(|s| ContentHash::of(&s))
}

/// Why instances of `service` shaped by `old` must be replaced to match `new`,
/// one reason per changed field (empty: same shape).
pub fn replace_reasons(old: Target<'_>, new: Target<'_>, service: &Name) -> Vec<String> {
    let (Some(o), Some(n)) = (shape(old, service), shape(new, service)) else {
        return Vec::new();
    };
    let mut why = Vec::new();
    if o.provider != n.provider {
        why.push(format!("provider {} → {}", o.provider, n.provider));
    }
    if o.image != n.image {
        why.push(format!("image {} → {}", o.image, n.image));
    } else if o.digest != n.digest {
        why.push(format!(
            "image {} changed ({} → {})",
            n.image,
            o.digest.map(Digest::short).unwrap_or("none"),
            n.digest.map(Digest::short).unwrap_or("none")
        ));
    }
    if o.entrypoint != n.entrypoint {
        why.push("entrypoint changed".into());
    }
    if o.workdir != n.workdir {
        why.push("workdir changed".into());
    }
    diff_maps("image env", o.image_env, n.image_env, &mut why);
    if o.args != n.args {
        why.push("args changed".into());
    }
    diff_maps("env", Some(o.env), Some(n.env), &mut why);
    if o.port != n.port {
        why.push(format!("port {} → {}", o.port, n.port));
    }
    if o.resources != n.resources {
        why.push("resources changed".into());
    }
    if o.mounts != n.mounts {
        why.push("mounts changed".into());
    }
    if o.per_instance != n.per_instance {
        why.push("volumes declared per instance changed".into());
    }
    for (name, version) in &n.secrets {
        match o.secrets.iter().find(|(o, _)| o == name) {
            None => why.push(format!("reads secret {name}")),
            Some((_, old)) if old != version => {
                why.push(format!("secret {name} changed (v{old} → v{version})"));
            }
            Some(_) => {}
        }
    }
    for (name, _) in &o.secrets {
        if !n.secrets.iter().any(|(n, _)| n == name) {
            why.push(format!("no longer reads secret {name}"));
        }
    }
    for (name, hash) in &n.variables {
        match o.variables.iter().find(|(o, _)| o == name) {
            None => why.push(format!("reads variable {name}")),
            Some((_, old)) if old != hash => why.push(match (old, hash) {
                (Some(a), Some(b)) => format!("variable {name} changed ({a} → {b})"),
                _ => format!("variable {name} changed source"),
            }),
            Some(_) => {}
        }
    }
    for (name, _) in &o.variables {
        if !n.variables.iter().any(|(n, _)| n == name) {
            why.push(format!("no longer reads variable {name}"));
        }
    }
    why
}

fn diff_maps(
    what: &str,
    old: Option<&BTreeMap<String, String>>,
    new: Option<&BTreeMap<String, String>>,
    why: &mut Vec<String>,
) {
    let empty = BTreeMap::new();
    let (old, new) = (old.unwrap_or(&empty), new.unwrap_or(&empty));
    for (k, v) in new {
        match old.get(k) {
            None => why.push(format!("{what} {k} added")),
            Some(o) if o != v => why.push(format!("{what} {k} changed")),
            Some(_) => {}
        }
    }
    for k in old.keys() {
        if !new.contains_key(k) {
            why.push(format!("{what} {k} removed"));
        }
    }
}

/// Settings that changed without replacing anything (shown for completeness).
fn setting_changes(old: &Service, new: &Service) -> Vec<String> {
    let mut c = Vec::new();
    if old.health != new.health {
        c.push("health check".to_owned());
    }
    if old.rollout != new.rollout {
        c.push("rollout".to_owned());
    }
    if old.max_age != new.max_age {
        c.push("max_age".to_owned());
    }
    if old.drain != new.drain {
        c.push("drain".to_owned());
    }
    if old.stop_grace != new.stop_grace {
        c.push("stop_grace".to_owned());
    }
    if old.autoscale != new.autoscale {
        c.push("autoscale".to_owned());
    }
    if old.on_exec != new.on_exec {
        c.push("on_exec".to_owned());
    }
    c
}

/// What happens to a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceAction {
    /// New service: instances are created.
    Create,
    /// Shape changed: every instance is replaced.
    Replace,
    /// The service is gone from the file: its instances are retired.
    Retire,
    /// Same shape, different count: instances are created or retired.
    Scale,
    /// Nothing happens to instances (settings may still change).
    Unchanged,
}

/// What happens to one live instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct InstancePlan {
    /// The instance.
    pub id: InstanceId,
    /// The version it was launched for.
    pub version: VersionNumber,
    /// `replace`, `retire` or `keep`.
    pub action: std::borrow::Cow<'static, str>,
}

/// The plan for one service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ServicePlan {
    /// The service.
    pub name: Name,
    /// What happens.
    pub action: ServiceAction,
    /// Why instances are replaced (one per changed field).
    pub reasons: Vec<String>,
    /// Settings that change without replacing anything.
    pub settings: Vec<String>,
    /// Instances to create (beyond replacements).
    pub create: u32,
    /// Instances to replace.
    pub replace: u32,
    /// Instances to retire (without replacement).
    pub retire: u32,
    /// Declared count before and after.
    pub instances: (u32, u32),
    /// Live instances and what happens to each.
    pub live: Vec<InstancePlan>,
    /// The image digest the service will run.
    pub digest: Option<Digest>,
    /// Its autoscaling, when it autoscales.
    pub autoscale: Option<ScalePlan>,
}

/// How an autoscaled service will be scaled.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct ScalePlan {
    /// Bounds.
    pub min: u32,
    /// Bounds.
    pub max: u32,
    /// The metric.
    pub metric: std::borrow::Cow<'static, str>,
    /// Its target per instance.
    pub target: f64,
    /// Its unit.
    pub unit: std::borrow::Cow<'static, str>,
    /// The count it will run at first: the autoscaler's current choice
    /// within the new bounds, else the declared `instances`.
    pub count: u32,
    /// Whether that count is the autoscaler's (not the declared one).
    pub from_autoscaler: bool,
}

impl Eq for ScalePlan {}

/// What happens to a volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct VolumePlan {
    /// The declared volume.
    pub name: Name,
    /// `create` (newly declared), `keep`, or `undeclared` (no longer
    /// declared: its data is kept until `glint volume rm`).
    pub action: std::borrow::Cow<'static, str>,
    /// Declared per instance.
    pub per_instance: bool,
    /// Declared size.
    pub size: Option<glint_model::Bytes>,
    /// Who mounts it: (service, path, read-only).
    pub mounted_by: Vec<(Name, String, bool)>,
}

/// A secret the candidate's services read: its name and version, never its
/// value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct SecretPlan {
    /// The secret.
    pub name: String,
    /// Its version now (`None`: not set — `apply` refuses).
    pub version: Option<u64>,
    /// The version the current version was applied with, if it read it.
    pub previous: Option<u64>,
    /// The services that read it.
    pub readers: Vec<Name>,
}

/// A literal or runtime variable of the candidate: its name, where its
/// value comes from and a hash of a literal value, never the value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct VariablePlan {
    /// The variable.
    pub name: Name,
    /// `literal` or `runtime`.
    pub source: String,
    /// A hash of the literal value (or of a runtime variable's initial one).
    pub hash: Option<String>,
    /// The hash in the current version, if it declares the variable.
    pub previous: Option<String>,
    /// Who may read it.
    pub readers: Vec<Name>,
    /// Who may write it (runtime variables).
    pub writers: Vec<Name>,
}

/// What happens to an endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct EndpointPlan {
    /// The endpoint.
    pub name: Name,
    /// `create`, `replace` (new listen address), `retire`, `reroute` or `unchanged`.
    pub action: std::borrow::Cow<'static, str>,
    /// Listen address after the change (before, for `retire`).
    pub listen: SocketAddr,
    /// The service it routes to.
    pub service: Name,
}

/// A whole plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Plan {
    /// The current version, if any.
    pub from: Option<VersionNumber>,
    /// Whether the candidate's content equals the current version's.
    pub no_changes: bool,
    /// Per service, sorted by name.
    pub services: Vec<ServicePlan>,
    /// Per endpoint, sorted by name.
    pub endpoints: Vec<EndpointPlan>,
    /// Per volume, sorted by name.
    pub volumes: Vec<VolumePlan>,
    /// Per secret the candidate reads, sorted by name.
    #[serde(default)]
    pub secrets: Vec<SecretPlan>,
    /// Per rule of the candidate or the current version, sorted by name.
    #[serde(default)]
    pub rules: Vec<crate::firewall::RulePlan>,
    /// Per literal or runtime variable, sorted by name.
    #[serde(default)]
    pub variables: Vec<VariablePlan>,
    /// Per notification sink of the candidate or the current version,
    /// sorted by name.
    #[serde(default)]
    pub notify: Vec<NotifyPlan>,
}

/// A `notify` sink: where it sends, in what shape, what, and the name of
/// its secret (never a value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct NotifyPlan {
    /// The sink.
    pub name: Name,
    /// `add`, `change`, `remove` or `keep`.
    pub action: String,
    /// Its URL.
    pub url: String,
    /// `webhook`, `slack` or `pagerduty`.
    pub format: String,
    /// What it is sent.
    pub on: Vec<String>,
    /// The name of the secret holding its key, if any.
    pub secret: Option<String>,
}

impl Plan {
    /// Totals: (create, replace, retire).
    pub fn totals(&self) -> (u32, u32, u32) {
        self.services.iter().fold((0, 0, 0), |(c, r, t), s| {
            (c + s.create, r + s.replace, t + s.retire)
        })
    }
}

/// Computes the plan that takes the world from `current` (and the live
/// instances, launched for the versions in `versions`) to `next`, with
/// every service at its declared count.
pub fn plan(
    current: Option<(VersionNumber, Target<'_>)>,
    versions: &BTreeMap<VersionNumber, Target<'_>>,
    live: &[InstanceRecord],
    next: Target<'_>,
) -> Plan {
    plan_scaled(current, versions, live, next, &BTreeMap::new())
}

/// [`plan`], with autoscaled services at the counts the autoscaler chose
/// (`scaled`), kept within the new bounds.
pub fn plan_scaled(
    current: Option<(VersionNumber, Target<'_>)>,
    versions: &BTreeMap<VersionNumber, Target<'_>>,
    live: &[InstanceRecord],
    next: Target<'_>,
    scaled: &BTreeMap<Name, u32>,
) -> Plan {
    let mut services = Vec::new();
    let mut names: Vec<&Name> = next.env.services.keys().collect();
    if let Some((_, cur)) = current {
        names.extend(cur.env.services.keys());
    }
    names.extend(live.iter().map(|i| &i.service));
    names.sort();
    names.dedup();

    for name in names {
        let new_svc = next.env.services.get(name);
        let cur_svc = current.and_then(|(_, c)| c.env.services.get(name));
        let mine: Vec<&InstanceRecord> = live.iter().filter(|i| &i.service == name).collect();
        let new_fp = fingerprint(next, name);
        let chosen = scaled.get(name).copied();
        let before = cur_svc
            .map(|s| crate::autoscale::count(s, chosen))
            .unwrap_or(0);
        let after = new_svc
            .map(|s| crate::autoscale::count(s, chosen))
            .unwrap_or(0);

        let mut live_plans = Vec::new();
        let mut keep = 0u32;
        let mut stale = 0u32;
        for inst in &mine {
            let fp = versions
                .get(&inst.version)
                .and_then(|t| fingerprint(*t, name));
            let action = if new_svc.is_none() {
                "retire"
            } else if fp.is_some() && fp == new_fp {
                keep += 1;
                "keep"
            } else {
                stale += 1;
                "replace"
            };
            live_plans.push(InstancePlan {
                id: inst.id.clone(),
                version: inst.version,
                action: action.into(),
            });
        }
        // Of the kept ones, any beyond the new count are retired.
        let mut retire = 0;
        if keep > after {
            retire = keep - after;
            let mut extra = retire;
            for p in live_plans.iter_mut().rev() {
                if extra > 0 && p.action == "keep" {
                    p.action = "retire".into();
                    extra -= 1;
                }
            }
            keep = after;
        }
        let replace = stale.min(after.saturating_sub(keep));
        for p in live_plans
            .iter_mut()
            .rev()
            .filter(|p| p.action == "replace")
            .skip(replace as usize)
        {
            p.action = "retire".into();
        }
        retire += stale - replace;
        if new_svc.is_none() {
            retire = mine.len() as u32;
        }
        let create = after.saturating_sub(keep + replace);

        // The reference for reasons: the current version, else any version a
        // stale instance was launched for.
        let reasons = match (current, cur_svc) {
            (Some((_, cur)), Some(_)) if new_svc.is_some() => replace_reasons(cur, next, name),
            _ => Vec::new(),
        };
        let reasons = if reasons.is_empty() && replace > 0 {
            mine.iter()
                .filter_map(|i| versions.get(&i.version))
                .map(|t| replace_reasons(*t, next, name))
                .find(|r| !r.is_empty())
                .unwrap_or_else(|| vec!["launched for an older version".into()])
        } else {
            reasons
        };
        let settings = match (cur_svc, new_svc) {
            (Some(o), Some(n)) => setting_changes(o, n),
            _ => Vec::new(),
        };
        let action = if new_svc.is_none() {
            ServiceAction::Retire
        } else if cur_svc.is_none() && mine.is_empty() {
            ServiceAction::Create
        } else if replace > 0 {
            ServiceAction::Replace
        } else if create > 0 || retire > 0 {
            ServiceAction::Scale
        } else {
            ServiceAction::Unchanged
        };
        let digest = new_svc.and_then(|s| next.images.get(&s.image)).cloned();
        let autoscale = new_svc.and_then(|s| {
            let a = s.autoscale.as_ref()?;
            Some(ScalePlan {
                min: a.min,
                max: a.max,
                metric: a.metric.name().into(),
                target: a.metric.target(),
                unit: a.metric.unit().into(),
                count: after,
                from_autoscaler: chosen.is_some() && cur_svc.is_some_and(|c| c.autoscale.is_some()),
            })
        });
        services.push(ServicePlan {
            name: name.clone(),
            action,
            reasons,
            settings,
            create,
            replace,
            retire,
            instances: (before, after),
            live: live_plans,
            digest,
            autoscale,
        });
    }

    let mut endpoints = Vec::new();
    let mut enames: Vec<&Name> = next.env.endpoints.keys().collect();
    if let Some((_, cur)) = current {
        enames.extend(cur.env.endpoints.keys());
    }
    enames.sort();
    enames.dedup();
    for name in enames {
        let new_ep = next.env.endpoints.get(name);
        let cur_ep = current.and_then(|(_, c)| c.env.endpoints.get(name));
        let (action, ep) = match (cur_ep, new_ep) {
            (None, Some(n)) => ("create", n),
            (Some(o), None) => ("retire", o),
            (Some(o), Some(n)) if o.listen != n.listen || o.protocol != n.protocol => {
                ("replace", n)
            }
            (Some(o), Some(n)) if o.service != n.service => ("reroute", n),
            (Some(_), Some(n)) => ("unchanged", n),
            (None, None) => continue,
        };
        endpoints.push(EndpointPlan {
            name: name.clone(),
            action: action.into(),
            listen: ep.listen,
            service: ep.service.clone(),
        });
    }
    let mut volumes = Vec::new();
    let mut vnames: Vec<&Name> = next.env.volumes.keys().collect();
    if let Some((_, cur)) = current {
        vnames.extend(cur.env.volumes.keys());
    }
    vnames.sort();
    vnames.dedup();
    for name in vnames {
        let declared = next.env.volumes.get(name);
        let before = current.and_then(|(_, c)| c.env.volumes.get(name));
        let (action, v) = match (before, declared) {
            (_, Some(v)) if before.is_none() => ("create", v),
            (_, Some(v)) => ("keep", v),
            (Some(v), None) => ("undeclared", v),
            (None, None) => continue,
        };
        let mounted_by = next
            .env
            .services
            .iter()
            .flat_map(|(s, svc)| {
                svc.mounts
                    .iter()
                    .filter(|m| &m.volume == name)
                    .map(|m| (s.clone(), m.path.clone(), m.read_only))
            })
            .collect();
        volumes.push(VolumePlan {
            name: name.clone(),
            action: action.into(),
            per_instance: v.per_instance,
            size: v.size,
            mounted_by,
        });
    }
    let secrets = next
        .env
        .secret_readers()
        .into_iter()
        .map(|(name, readers)| SecretPlan {
            name: name.to_owned(),
            version: next
                .env
                .secret_versions
                .get(name)
                .copied()
                .filter(|v| *v > 0),
            previous: current
                .and_then(|(_, c)| c.env.secret_versions.get(name).copied())
                .filter(|v| *v > 0),
            readers: readers.into_iter().cloned().collect(),
        })
        .collect();
    let rules = crate::firewall::rule_changes(current.map(|(_, c)| c.env), next.env);
    let declared_hash = |v: &glint_model::Variable| match &v.value {
        glint_model::VariableValue::Literal(x) => Some(value_hash(x)),
        glint_model::VariableValue::Runtime(x) => x.as_deref().map(value_hash),
        glint_model::VariableValue::Secret(_) => None,
    };
    let variables = next
        .env
        .variables
        .iter()
        .filter(|(_, v)| !matches!(v.value, glint_model::VariableValue::Secret(_)))
        .map(|(name, v)| VariablePlan {
            name: name.clone(),
            source: match v.value {
                glint_model::VariableValue::Runtime(_) => "runtime".into(),
                _ => "literal".into(),
            },
            hash: declared_hash(v),
            previous: current
                .and_then(|(_, c)| c.env.variables.get(name))
                .and_then(declared_hash),
            readers: v.readers.clone(),
            writers: v.writers.clone(),
        })
        .collect();
    let mut notify = Vec::new();
    let mut sinks: Vec<&Name> = next.env.notify.keys().collect();
    if let Some((_, c)) = current {
        sinks.extend(c.env.notify.keys());
    }
    sinks.sort();
    sinks.dedup();
    for name in sinks {
        let old = current.and_then(|(_, c)| c.env.notify.get(name));
        let (action, n) = match (old, next.env.notify.get(name)) {
            (None, Some(n)) => ("add", n),
            (Some(o), Some(n)) if o != n => ("change", n),
            (Some(_), Some(n)) => ("keep", n),
            (Some(o), None) => ("remove", o),
            (None, None) => continue,
        };
        notify.push(NotifyPlan {
            name: name.clone(),
            action: action.into(),
            url: n.url.clone(),
            format: n.format.as_str().into(),
            on: n.on.iter().map(|t| t.as_str().to_owned()).collect(),
            secret: n.secret.clone(),
        });
    }
    let no_changes = current.is_some_and(|(_, c)| {
        glint_store::versions::content_hash(c.env, c.images)
            == glint_store::versions::content_hash(next.env, next.images)
    });
    Plan {
        from: current.map(|(n, _)| n),
        no_changes,
        services,
        endpoints,
        volumes,
        secrets,
        rules,
        variables,
        notify,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use glint_model::*;
    use glint_store::InstanceRecord;

    fn name(s: &str) -> Name {
        Name::new(s).unwrap()
    }

    fn env(services: &[(&str, u32, &str)]) -> (Environment, BTreeMap<Name, Digest>) {
        let mut e = Environment::empty(name("t"));
        e.images.insert(
            name("app"),
            Image {
                port: Some(8080),
                ..Image::scratch(vec!["/app".into()])
            },
        );
        for (s, n, greeting) in services {
            e.services.insert(
                name(s),
                Service {
                    instances: *n,
                    env: [("GREETING".to_owned(), (*greeting).to_owned())].into(),
                    ..Service::new(name("app"))
                },
            );
        }
        (e, [(name("app"), Digest::of(b"app"))].into())
    }

    fn t(e: &(Environment, BTreeMap<Name, Digest>)) -> Target<'_> {
        Target {
            env: &e.0,
            images: &e.1,
        }
    }

    // Mutation caught: the secret version left out of the shape (a new
    // value would never reach running readers), or put into every
    // service's shape (non-readers replaced for nothing).
    #[test]
    fn a_new_secret_version_replaces_its_readers_only() {
        let mut old = env(&[("api", 1, "hi"), ("web", 1, "hi")]);
        old.0.variables.insert(
            name("pw"),
            Variable {
                value: VariableValue::Secret("db/password".into()),
                readers: vec![name("api")],
                writers: vec![],
            },
        );
        old.0.secret_versions.insert("db/password".into(), 1);
        let mut new = old.clone();
        new.0.secret_versions.insert("db/password".into(), 2);
        assert_ne!(
            fingerprint(t(&old), &name("api")),
            fingerprint(t(&new), &name("api"))
        );
        assert_eq!(
            fingerprint(t(&old), &name("web")),
            fingerprint(t(&new), &name("web"))
        );
        assert_eq!(
            replace_reasons(t(&old), t(&new), &name("api")),
            ["secret db/password changed (v1 → v2)"]
        );
        // A shape without secrets hashes as before secrets existed.
        let plain = env(&[("web", 1, "hi")]);
        assert_eq!(
            fingerprint(t(&plain), &name("web")),
            fingerprint(t(&old), &name("web"))
        );
        let p = plan(None, &BTreeMap::new(), &[], t(&new));
        assert_eq!(p.secrets.len(), 1);
        assert_eq!(p.secrets[0].version, Some(2));
        assert_eq!(p.secrets[0].readers, [name("api")]);
    }

    fn live(service: &str, n: u64, version: u64) -> Vec<InstanceRecord> {
        (0..n)
            .map(|i| {
                InstanceRecord::launching(
                    InstanceId::from_entropy(&name(service), i),
                    name(service),
                    VersionNumber(version),
                    Digest::of(b"app"),
                    ProviderKind::Process,
                    0,
                )
            })
            .collect()
    }

    #[test]
    fn first_apply_creates_everything() {
        let next = env(&[("web", 3, "hi")]);
        let p = plan(None, &BTreeMap::new(), &[], t(&next));
        assert_eq!(p.services[0].action, ServiceAction::Create);
        assert_eq!(p.totals(), (3, 0, 0));
        assert!(!p.no_changes);
    }

    #[test]
    fn an_env_change_replaces_every_instance_and_says_why() {
        let cur = env(&[("web", 3, "hi")]);
        let next = env(&[("web", 3, "bonjour")]);
        let versions = BTreeMap::from([(VersionNumber(1), t(&cur))]);
        let p = plan(
            Some((VersionNumber(1), t(&cur))),
            &versions,
            &live("web", 3, 1),
            t(&next),
        );
        let web = &p.services[0];
        assert_eq!(web.action, ServiceAction::Replace);
        assert_eq!(web.reasons, vec!["env GREETING changed".to_owned()]);
        assert_eq!((web.create, web.replace, web.retire), (0, 3, 0));
        assert!(web.live.iter().all(|i| i.action == "replace"));
    }

    #[test]
    fn a_count_change_scales_without_replacing() {
        let cur = env(&[("web", 3, "hi")]);
        let next = env(&[("web", 1, "hi")]);
        let versions = BTreeMap::from([(VersionNumber(1), t(&cur))]);
        let p = plan(
            Some((VersionNumber(1), t(&cur))),
            &versions,
            &live("web", 3, 1),
            t(&next),
        );
        let web = &p.services[0];
        assert_eq!(web.action, ServiceAction::Scale);
        assert_eq!((web.create, web.replace, web.retire), (0, 0, 2));
    }

    #[test]
    fn removed_services_are_retired_and_identical_content_is_no_change() {
        let cur = env(&[("web", 2, "hi"), ("old", 1, "x")]);
        let next = env(&[("web", 2, "hi")]);
        let versions = BTreeMap::from([(VersionNumber(1), t(&cur))]);
        let mut l = live("web", 2, 1);
        l.extend(live("old", 1, 1));
        let p = plan(Some((VersionNumber(1), t(&cur))), &versions, &l, t(&next));
        let old = p
            .services
            .iter()
            .find(|s| s.name.as_str() == "old")
            .unwrap();
        assert_eq!(old.action, ServiceAction::Retire);
        assert_eq!(old.retire, 1);
        assert!(!p.no_changes);
        let same = plan(Some((VersionNumber(1), t(&cur))), &versions, &l, t(&cur));
        assert!(same.no_changes);
        assert_eq!(same.totals(), (0, 0, 0));
    }

    #[test]
    fn settings_change_without_replacement() {
        let cur = env(&[("web", 2, "hi")]);
        let mut next = env(&[("web", 2, "hi")]);
        next.0.services.get_mut(&name("web")).unwrap().stop_grace = Millis::from_secs(1);
        let versions = BTreeMap::from([(VersionNumber(1), t(&cur))]);
        let p = plan(
            Some((VersionNumber(1), t(&cur))),
            &versions,
            &live("web", 2, 1),
            t(&next),
        );
        assert_eq!(p.services[0].action, ServiceAction::Unchanged);
        assert_eq!(p.services[0].settings, vec!["stop_grace".to_owned()]);
    }

    // Mutation caught: the plan counting an autoscaled service at its
    // declared `instances` (it would retire what the autoscaler added), or
    // listing no volumes.
    #[test]
    fn autoscaled_counts_and_volumes_are_planned() {
        let mut cur = env(&[("web", 1, "hi")]);
        let web = name("web");
        let s = cur.0.services.get_mut(&web).unwrap();
        s.autoscale = Some(Autoscale {
            min: 1,
            max: 8,
            metric: ScaleMetric::InFlight { per_instance: 4 },
            window: Millis::from_secs(300),
            max_step: None,
        });
        s.mounts = vec![Mount {
            volume: name("data"),
            path: "/data".into(),
            read_only: true,
        }];
        cur.0.volumes.insert(name("data"), Volume::default());
        let mut next = cur.clone();
        next.0.volumes.insert(name("logs"), Volume::default());
        let versions = BTreeMap::from([(VersionNumber(1), t(&cur))]);
        let scaled = BTreeMap::from([(web.clone(), 5)]);
        let p = plan_scaled(
            Some((VersionNumber(1), t(&cur))),
            &versions,
            &live("web", 5, 1),
            t(&next),
            &scaled,
        );
        let w = &p.services[0];
        assert_eq!(w.action, ServiceAction::Unchanged, "{w:?}");
        assert_eq!(w.instances, (5, 5));
        let a = w.autoscale.as_ref().unwrap();
        assert_eq!(
            (a.min, a.max, a.count, a.metric.as_ref()),
            (1, 8, 5, "in_flight")
        );
        assert!(a.from_autoscaler);
        let vols: Vec<(&str, &str)> = p
            .volumes
            .iter()
            .map(|v| (v.name.as_str(), v.action.as_ref()))
            .collect();
        assert_eq!(vols, vec![("data", "keep"), ("logs", "create")]);
        assert_eq!(
            p.volumes[0].mounted_by,
            vec![(web, "/data".to_owned(), true)]
        );
    }
}
