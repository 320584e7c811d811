//! `glint plan FILE`: what an apply would create, replace and retire, and why.
//! Changes nothing but the content-addressed image cache.

use crate::cli::{Global, OutputFormat, PlanArgs};
use crate::common::{CmdResult, Failed, Paint, open_existing_store, print_json};
use crate::output::{EXIT_OK, inert};
use glint_conductor::plan::{Plan, ServiceAction, Target, plan};
use glint_model::Name;
use glint_store::{Meta, Store};
use std::collections::BTreeMap;

/// Runs `glint plan`.
pub fn run(global: &Global, args: PlanArgs) -> i32 {
    body(global, args).unwrap_or_else(|f| f.0)
}

fn body(global: &Global, args: PlanArgs) -> CmdResult {
    let resolved = crate::resolve::resolve(global, &args.file, &args.policies)?;
    let mut store_id = None;
    let p = if let Some(client) = crate::remote::client(global) {
        let v = resolved.version.clone();
        crate::remote::post(
            &client?,
            "/v1/plan",
            &glint_conductor::http::routes::Candidate {
                env: v.env,
                images: v.images,
                root: v.root.display().to_string(),
                sources: v.sources,
            },
        )?
    } else {
        let store = open_existing_store(global)?;
        store_id = store.as_ref().and_then(|s| s.store_id().ok());
        compute(store.as_ref().map(|s| s as &dyn Store), &resolved.version)?
    };
    if args.output.output == OutputFormat::Json {
        print_json(&p);
    } else {
        print!("{}", render(&p, Paint::stdout(global)));
        print!("{}", render_aws(&resolved.version, store_id.as_deref()));
    }
    Ok(EXIT_OK)
}

/// The AWS resources the version needs (`glint_aws::plan`), if any service
/// is on the aws provider.
fn render_aws(v: &glint_store::NewVersion, store_id: Option<&str>) -> String {
    let amis = std::env::var("GLINT_AWS_AMIS")
        .ok()
        .and_then(|a| glint_aws::config::parse_amis(&a).ok())
        .unwrap_or_default()
        .into_iter()
        .collect();
    let default_ami = std::env::var("GLINT_AWS_DEFAULT_AMI").ok();
    let lines = glint_aws::plan::lines(
        &v.env,
        store_id.unwrap_or("STORE"),
        &v.images,
        &amis,
        default_ami.as_deref(),
    );
    if lines.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "
AWS resources (made if missing, reconciled to exactly this):
",
    );
    for l in lines {
        out.push_str(&format!(
            "  {}
",
            crate::output::inert_line(&l)
        ));
    }
    out
}

/// The plan from the store's current state to `next`.
pub fn compute(store: Option<&dyn Store>, next: &glint_store::NewVersion) -> Result<Plan, Failed> {
    match store {
        Some(s) => glint_conductor::ops::plan(s, next).map_err(|e| crate::common::fail_op(&e)),
        None => Ok(plan(
            None,
            &BTreeMap::new(),
            &[],
            Target {
                env: &next.env,
                images: &next.images,
            },
        )),
    }
}

/// The plan for people.
pub fn render(p: &Plan, paint: Paint) -> String {
    let mut out = String::new();
    let next = p.from.map(|v| v.0 + 1).unwrap_or(1);
    if p.no_changes {
        out.push_str(&format!(
            "No changes: the file matches version {}.\n",
            p.from.map(|v| v.to_string()).unwrap_or_default()
        ));
        return out;
    }
    match p.from {
        Some(v) => out.push_str(&format!(
            "{} version {v} → version {next}\n\n",
            paint.bold("Plan:")
        )),
        None => out.push_str(&format!("{} first version (1)\n\n", paint.bold("Plan:"))),
    }
    for s in &p.services {
        let (sym, what) = match s.action {
            ServiceAction::Create => (paint.green("+"), format!("create {} instances", s.create)),
            ServiceAction::Replace => {
                let mut w = format!("replace {} instances", s.replace);
                if s.create > 0 {
                    w.push_str(&format!(", create {}", s.create));
                }
                if s.retire > 0 {
                    w.push_str(&format!(", retire {}", s.retire));
                }
                (paint.yellow("~"), w)
            }
            ServiceAction::Retire => (paint.red("-"), format!("retire {} instances", s.retire)),
            ServiceAction::Scale => (
                paint.yellow("±"),
                format!(
                    "scale {} → {} (create {}, retire {})",
                    s.instances.0, s.instances.1, s.create, s.retire
                ),
            ),
            ServiceAction::Unchanged => (" ".to_owned(), "unchanged".to_owned()),
        };
        out.push_str(&format!(
            "{sym} service {}: {what}\n",
            paint.bold(s.name.as_str())
        ));
        if let Some(d) = &s.digest {
            out.push_str(&format!("    image {d}\n"));
        }
        if let Some(a) = &s.autoscale {
            let target = if a.target.fract() == 0.0 {
                format!("{:.0}{}", a.target, a.unit)
            } else {
                format!("{:.1}{}", a.target, a.unit)
            };
            out.push_str(&format!(
                "    autoscale {}–{} on {} (target {target} per instance), {} {}\n",
                a.min,
                a.max,
                a.metric,
                if a.from_autoscaler {
                    "at the autoscaler's"
                } else {
                    "starting at"
                },
                a.count
            ));
        }
        for r in &s.reasons {
            out.push_str(&format!("    because {r}\n"));
        }
        if !s.settings.is_empty() {
            out.push_str(&format!(
                "    settings changed without replacement: {}\n",
                s.settings.join(", ")
            ));
        }
        for i in &s.live {
            if i.action != "keep" {
                out.push_str(&format!(
                    "    {} {} (version {})\n",
                    i.action, i.id, i.version
                ));
            }
        }
    }
    for e in &p.endpoints {
        let sym = match &*e.action {
            "create" => paint.green("+"),
            "retire" => paint.red("-"),
            "unchanged" => " ".to_owned(),
            _ => paint.yellow("~"),
        };
        out.push_str(&format!(
            "{sym} endpoint {}: {} ({} → service {})\n",
            paint.bold(e.name.as_str()),
            e.action,
            e.listen,
            e.service
        ));
    }
    for v in &p.volumes {
        let (sym, what) = match v.action.as_ref() {
            "create" => (paint.green("+"), "created when first mounted"),
            "undeclared" => (
                paint.yellow("~"),
                "no longer declared: its data is kept (`glint volume rm` deletes it)",
            ),
            _ => (" ".to_owned(), "kept"),
        };
        let mut details = Vec::new();
        if v.per_instance {
            details.push(format!("per instance ({}-0, {}-1, ...)", v.name, v.name));
        }
        if let Some(size) = v.size {
            details.push(format!("size {size}"));
        }
        for (svc, path, ro) in &v.mounted_by {
            details.push(format!(
                "{svc} at {path}{}",
                if *ro { " (read-only)" } else { "" }
            ));
        }
        out.push_str(&format!(
            "{sym} volume {}: {what}{}\n",
            paint.bold(v.name.as_str()),
            if details.is_empty() {
                String::new()
            } else {
                format!(" — {}", details.join(", "))
            }
        ));
    }
    for sp in &p.secrets {
        let readers: Vec<&str> = sp.readers.iter().map(Name::as_str).collect();
        let (sym, what) = match (sp.previous, sp.version) {
            (_, None) => (
                paint.red("!"),
                format!(
                    "not set: apply is refused until `glint secret set {}`",
                    sp.name
                ),
            ),
            (Some(a), Some(b)) if a != b => (paint.yellow("~"), format!("changed (v{a} → v{b})")),
            (None, Some(b)) => (paint.green("+"), format!("v{b}")),
            (_, Some(b)) => (" ".to_owned(), format!("v{b}, unchanged")),
        };
        out.push_str(&format!(
            "{sym} secret {}: {what} — read by {}\n",
            paint.bold(&sp.name),
            if readers.is_empty() {
                "nothing".to_owned()
            } else {
                readers.join(", ")
            }
        ));
    }
    for rule in &p.rules {
        let sym = match rule.action.as_str() {
            "create" => paint.green("+"),
            "remove" => paint.red("-"),
            "change" => paint.yellow("~"),
            _ => " ".to_owned(),
        };
        let ports: Vec<String> = rule.ports.iter().map(u16::to_string).collect();
        out.push_str(&format!(
            "{sym} rule {}: {} ({} → service {} on {} {}){}\n",
            paint.bold(&rule.name),
            rule.action,
            rule.from,
            rule.to,
            rule.protocol,
            ports.join(", "),
            if rule.enforced {
                ""
            } else {
                " — not enforced: rules on Docker services are not enforced yet (E0605)"
            }
        ));
    }
    for vp in &p.variables {
        let list = |names: &[Name]| {
            if names.is_empty() {
                "nothing".to_owned()
            } else {
                names
                    .iter()
                    .map(Name::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        let shown = |h: &Option<String>| h.clone().unwrap_or_else(|| "no value".into());
        let (sym, what) = match (&vp.previous, &vp.hash) {
            (Some(a), Some(b)) if a != b && vp.source == "literal" => {
                (paint.yellow("~"), format!("changed ({a} → {b})"))
            }
            (_, h) => (" ".to_owned(), shown(h)),
        };
        let writers = if vp.source == "runtime" {
            format!(", written by {}", list(&vp.writers))
        } else {
            String::new()
        };
        out.push_str(&format!(
            "{sym} variable {} ({}): {what} — read by {}{writers}\n",
            paint.bold(vp.name.as_str()),
            vp.source,
            list(&vp.readers),
        ));
    }
    for n in &p.notify {
        let sym = match n.action.as_str() {
            "add" => paint.green("+"),
            "change" => paint.yellow("~"),
            "remove" => paint.red("-"),
            _ => " ".to_owned(),
        };
        out.push_str(&format!(
            "{sym} notify {}: {} {} ({}){}\n",
            paint.bold(n.name.as_str()),
            n.format,
            inert(&n.url),
            n.on.join(", "),
            match &n.secret {
                Some(s) => format!(", key in secret {s}"),
                None => String::new(),
            }
        ));
    }
    let (c, r, t) = p.totals();
    out.push_str(&format!(
        "\n{} {c} to create, {r} to replace, {t} to retire. Instances are never modified in place.\n",
        paint.bold("Summary:")
    ));
    out
}
