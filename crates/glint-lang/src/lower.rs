//! Lowering: evaluated declarations to the typed [`Environment`].
//!
//! Each declaration body is evaluated to a record, then decoded against its
//! kind's schema: unknown fields, missing fields, wrong types and invalid
//! values are reported here, and every documented default is applied. Then
//! whole-environment checks run (image cycles, listen conflicts), and finally
//! the policies, over views of the compiled declarations.

use crate::ast::{self, Block, DeclName, ExprKind, ItemKind};
use crate::codes::Code;
use crate::diag::{Diagnostic, did_you_mean};
use crate::eval::{DeclTable, ENUM_WORDS, Eval, R, Reported, Scope, Views, is_poisoned};
use crate::fxhash::FxMap;
use crate::source::Span;
use crate::value::{Kind, Record, SV, Step, Value};
use glint_model::*;
use std::collections::BTreeMap;
use std::rc::Rc;

/// One declaration instance (a `for` may produce many from one item).
struct DeclInst<'p> {
    kind: Kind,
    name: Rc<str>,
    name_span: Span,
    body: &'p Block,
    scope: Scope,
}

/// What lowering needs to know about a declaration afterwards.
#[derive(Default)]
struct Spans {
    decl: FxMap<Kind, FxMap<Rc<str>, Span>>,
}

impl Spans {
    fn get(&self, kind: Kind, name: &str) -> Option<Span> {
        self.decl.get(&kind).and_then(|m| m.get(name)).copied()
    }
}

/// Lowers every module of the program into one environment.
pub fn lower(ev: &mut Eval<'_>, default_name: &str) -> Environment {
    let prog = ev.prog;
    // 1. Collect declarations.
    let mut insts: Vec<DeclInst<'_>> = Vec::new();
    for (m, module) in prog.modules.iter().enumerate() {
        let mut scope = Scope::new(m);
        collect(ev, &module.ast.items, &mut scope, &mut insts, 0);
    }

    // 2. Duplicates and the declaration table.
    let mut spans = Spans::default();
    let mut table = DeclTable::default();
    let mut keep = vec![true; insts.len()];
    let mut env_decl: Option<usize> = None;
    for (i, d) in insts.iter().enumerate() {
        if d.kind == Kind::Environment {
            if let Some(first) = env_decl {
                ev.diags.push(
                    Diagnostic::error(
                        Code::DuplicateEnvironment,
                        d.name_span,
                        "more than one `environment` block",
                    )
                    .with_primary("second environment block")
                    .with_label(insts[first].name_span, "first declared here")
                    .with_help("keep one `environment` block for the whole set of files"),
                );
                keep[i] = false;
            } else {
                env_decl = Some(i);
            }
            continue;
        }
        if let Some(first) = spans.get(d.kind, &d.name) {
            ev.diags.push(
                Diagnostic::error(
                    Code::DuplicateDeclaration,
                    d.name_span,
                    format!("{} `{}` is declared twice", d.kind, d.name),
                )
                .with_primary("declared again here")
                .with_label(first, "first declared here")
                .with_help("rename one of them; names are unique per kind across all files"),
            );
            keep[i] = false;
            continue;
        }
        spans
            .decl
            .entry(d.kind)
            .or_default()
            .insert(d.name.clone(), d.name_span);
        table
            .names
            .entry(d.kind)
            .or_default()
            .insert(d.name.clone());
    }
    ev.decls = Some(table);

    // 3. Environment block.
    let mut env_name = sanitize_name(default_name);
    let mut default_provider = ProviderKind::Process;
    if let Some(i) = env_decl {
        let d = &insts[i];
        if let Ok(n) = Name::new(d.name.to_string()) {
            env_name = n;
        }
        let mut scope = d.scope.clone();
        if let Ok((rec, _)) = ev.eval_block(d.body, &mut scope, &[]) {
            let mut f = Fields::new(&rec, d.name_span, format!("environment `{}`", d.name));
            if let Some(v) = f.take("provider")
                && let Some(p) = provider(ev, v)
            {
                default_provider = p;
            }
            f.finish(ev, &["provider"]);
            steps_not_allowed(ev, &rec, "an environment");
        }
    }

    // 4. Evaluate and decode every declaration.
    let mut env = Environment::empty(env_name);
    let mut lw = Lowerer {
        default_provider,
        image_refs: Vec::new(),
        policy_defs: Vec::new(),
        inline_images: Vec::new(),
    };
    // Images first, so that services can default their port from them.
    let order = [
        Kind::Image,
        Kind::Volume,
        Kind::Service,
        Kind::Endpoint,
        Kind::Rule,
        Kind::Variable,
        Kind::Policy,
    ];
    for kind in order {
        for (i, d) in insts.iter().enumerate() {
            if d.kind != kind || !keep[i] {
                continue;
            }
            let defer: &[&str] = if kind == Kind::Policy {
                &["check", "message", "help"]
            } else {
                &[]
            };
            let mut scope = d.scope.clone();
            let Ok((rec, deferred)) = ev.eval_block(d.body, &mut scope, defer) else {
                continue;
            };
            let Ok(name) = Name::new(d.name.to_string()) else {
                continue;
            };
            let mut f = Fields::new(&rec, d.name_span, What::Decl(d.kind, d.name.clone()));
            match kind {
                Kind::Image => {
                    if let Some(img) = lw.image(ev, &mut f, &rec) {
                        env.images.insert(name, img);
                    }
                }
                Kind::Service => {
                    if let Some(s) = lw.service(ev, &mut f, &name, &env) {
                        env.services.insert(name, s);
                    }
                }
                Kind::Endpoint => {
                    if let Some(e) = endpoint(ev, &mut f) {
                        env.endpoints.insert(name, e);
                    }
                }
                Kind::Rule => {
                    if let Some(r) = rule(ev, &mut f) {
                        env.rules.insert(name, r);
                    }
                }
                Kind::Variable => {
                    if let Some(v) = variable(ev, &mut f) {
                        env.variables.insert(name, v);
                    }
                }
                Kind::Volume => {
                    let size = f.take("size").and_then(|v| size(ev, v));
                    f.finish(ev, &["size"]);
                    env.volumes.insert(name, Volume { size });
                }
                Kind::Policy => {
                    let severity = match f.take("severity") {
                        Some(v) => match enum_word(ev, v, &["error", "warning"]) {
                            Some("warning") => Severity::Warning,
                            _ => Severity::Error,
                        },
                        None => Severity::Error,
                    };
                    f.finish(ev, &["severity"]);
                    let get = |k: &str| {
                        deferred
                            .iter()
                            .find(|(key, _)| &*key.name == k)
                            .map(|(_, e)| *e)
                    };
                    let (check, message) = (get("check"), get("message"));
                    if check.is_none() {
                        missing(
                            ev,
                            d.name_span,
                            &format!("policy `{}`", d.name),
                            "check",
                            "a condition such as `all s in services: s.health != none`",
                        );
                    }
                    if message.is_none() {
                        missing(
                            ev,
                            d.name_span,
                            &format!("policy `{}`", d.name),
                            "message",
                            "the text shown on a violation",
                        );
                    }
                    if let (Some(check), Some(message)) = (check, message) {
                        lw.policy_defs.push(PolicyDef {
                            name: name.clone(),
                            name_span: d.name_span,
                            severity,
                            check,
                            message,
                            help: get("help"),
                            module: d.scope.module,
                        });
                        // The IR keeps the message as written (without interpolation).
                        let text = match &message.kind {
                            ExprKind::Str(segs) => segs
                                .iter()
                                .map(|s| match s {
                                    ast::StrSeg::Lit(l) => l.to_string(),
                                    ast::StrSeg::Interp(e) => {
                                        format!("${{{}}}", ev.prog_text(e.span))
                                    }
                                })
                                .collect(),
                            _ => ev.prog_text(message.span),
                        };
                        env.policies.insert(
                            name,
                            Policy {
                                severity,
                                message: text,
                            },
                        );
                    }
                }
                Kind::Environment => {}
            }
            if kind != Kind::Image && !rec.steps.is_empty() {
                steps_not_allowed(ev, &rec, &format!("a {kind}"));
            }
        }
    }

    // Every binding is checked, even one nothing uses yet.
    for (m, module) in prog.modules.iter().enumerate() {
        for (i, item) in module.ast.items.iter().enumerate() {
            if let ItemKind::Let { name, .. } = &item.kind {
                let _ = ev.let_value(m, i, name.span);
            }
        }
    }

    // Inline images declared inside services.
    for (name, span, img) in std::mem::take(&mut lw.inline_images) {
        if let std::collections::btree_map::Entry::Vacant(slot) = env.images.entry(name.clone()) {
            slot.insert(img);
        } else {
            ev.diags.push(
                Diagnostic::error(
                    Code::DuplicateDeclaration,
                    span,
                    format!("the inline image of service `{name}` clashes with image `{name}`"),
                )
                .with_primary("an inline image is named after its service")
                .with_help(format!(
                    "refer to the declared image instead: `image = image.{name}`"
                )),
            );
        }
    }

    // 5. Whole-environment checks.
    image_cycles(ev, &env, &spans);
    listen_conflicts(ev, &env, &spans);

    // 6. Policies.
    let defs = std::mem::take(&mut lw.policy_defs);
    if !defs.is_empty() {
        let name = env.name.clone();
        let compiled = std::mem::replace(&mut env, Environment::empty(name));
        ev.views = Some(build_views(compiled, &spans));
        for def in &defs {
            run_policy(ev, def);
        }
        if let Some(v) = ev.views.take() {
            env = v.env;
        }
    }
    env
}

fn collect<'p>(
    ev: &mut Eval<'p>,
    items: &'p [ast::Item],
    scope: &mut Scope,
    out: &mut Vec<DeclInst<'p>>,
    depth: usize,
) {
    for item in items {
        match &item.kind {
            ItemKind::Decl(d) => {
                let Some(kind) = Kind::from_keyword(&d.kind.name) else {
                    continue;
                };
                let (name, span) = match &d.name {
                    DeclName::Ident(i) => (i.name.to_string(), i.span),
                    DeclName::Str(e) => match ev.eval(e, scope) {
                        Ok(SV {
                            v: Value::Str(s),
                            span,
                        }) => (s.to_string(), span),
                        Ok(other) => {
                            ev.mismatch(
                                &other.v,
                                other.span,
                                "string",
                                "a declaration name is a plain name or a string",
                            );
                            continue;
                        }
                        Err(Reported) => continue,
                    },
                };
                if !Name::is_valid(&name) {
                    let fixed = sanitize_name(&name);
                    ev.diags.push(
                        Diagnostic::error(Code::InvalidName, span, format!("invalid {kind} name `{name}`"))
                            .with_primary("names are 1 to 63 lowercase letters, digits, `_` or `-`, starting with a letter")
                            .with_help(format!("try `{fixed}`")),
                    );
                    continue;
                }
                out.push(DeclInst {
                    kind,
                    name: Rc::from(name),
                    name_span: span,
                    body: &d.body,
                    scope: scope.clone(),
                });
            }
            ItemKind::For {
                var, iter, items, ..
            } => {
                if depth > 16 {
                    continue;
                }
                let Ok(list) = ev.eval(iter, scope) else {
                    continue;
                };
                let Value::List(elems) = &list.v else {
                    ev.mismatch(
                        &list.v,
                        list.span,
                        "list",
                        "`for` repeats declarations for each element of a list",
                    );
                    continue;
                };
                for el in elems.iter() {
                    scope.locals.push((var.name.clone(), el.v.clone()));
                    collect(ev, items, scope, out, depth + 1);
                    scope.locals.pop();
                }
                if depth == 0 {
                    for it in items {
                        if matches!(
                            it.kind,
                            ItemKind::Let { .. } | ItemKind::Fn(_) | ItemKind::Import { .. }
                        ) {
                            ev.diags.push(
                                Diagnostic::error(
                                    Code::Syntax,
                                    it.span,
                                    "only declarations may appear inside `for`",
                                )
                                .with_primary("not allowed inside `for`")
                                .with_help(
                                    "move `let`, `fn` and `import` to the top level of the file",
                                ),
                            );
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

/// Makes a valid [`Name`] out of any text (a file stem, a rejected name).
pub fn sanitize_name(s: &str) -> Name {
    let mut out = String::new();
    for c in s.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-' {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let trimmed = out.trim_matches('-');
    let mut out = if trimmed.starts_with(|c: char| c.is_ascii_lowercase()) {
        trimmed.to_owned()
    } else {
        format!("env-{trimmed}")
    };
    out.truncate(63);
    let out = out.trim_end_matches('-').to_owned();
    Name::new(out).unwrap_or_else(|_| Name::new("env").unwrap_or_else(|_| unreachable_name()))
}

fn unreachable_name() -> Name {
    // `Name::new("env")` always succeeds; this keeps the function total.
    serde_json::from_str("\"env\"").unwrap_or_else(|_| unreachable_name())
}

impl Eval<'_> {
    /// The source text of a span.
    pub fn prog_text(&self, span: Span) -> String {
        self.prog
            .file_texts
            .get(span.file.0 as usize)
            .and_then(|t| t.get(span.start as usize..span.end as usize))
            .unwrap_or("")
            .to_owned()
    }
}

// ---------------------------------------------------------------------------
// Field access with unknown-field detection

/// What a block describes, for messages (formatted only when one is needed).
enum What {
    Static(&'static str),
    Owned(String),
    Decl(Kind, Rc<str>),
}

impl From<&'static str> for What {
    fn from(s: &'static str) -> What {
        What::Static(s)
    }
}

impl From<String> for What {
    fn from(s: String) -> What {
        What::Owned(s)
    }
}

impl std::fmt::Display for What {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            What::Static(s) => f.write_str(s),
            What::Owned(s) => f.write_str(s),
            What::Decl(k, n) => write!(f, "{k} `{n}`"),
        }
    }
}

struct Fields<'a> {
    rec: &'a Record,
    used: Vec<bool>,
    decl_span: Span,
    what: What,
}

impl<'a> Fields<'a> {
    fn new(rec: &'a Record, decl_span: Span, what: impl Into<What>) -> Fields<'a> {
        Fields {
            used: vec![false; rec.fields.len()],
            rec,
            decl_span,
            what: what.into(),
        }
    }

    /// The field's value (None if absent or already reported as broken).
    fn take(&mut self, key: &str) -> Option<&'a SV> {
        let i = self.rec.fields.iter().position(|f| &*f.key == key)?;
        self.used[i] = true;
        let v = &self.rec.fields[i].value;
        if is_poisoned(v) { None } else { Some(v) }
    }

    fn has(&self, key: &str) -> bool {
        self.rec.get(key).is_some()
    }

    fn required(&mut self, ev: &mut Eval<'_>, key: &str, hint: &str) -> Option<&'a SV> {
        if !self.has(key) {
            if !self.rec.partial {
                missing(ev, self.decl_span, &self.what, key, hint);
            }
            return None;
        }
        self.take(key)
    }

    fn finish(&self, ev: &mut Eval<'_>, allowed: &[&str]) {
        for (i, f) in self.rec.fields.iter().enumerate() {
            if self.used[i] || allowed.contains(&&*f.key) {
                continue;
            }
            let hint = did_you_mean(&f.key, allowed.iter().copied()).or_else(|| {
                // Names users bring from other tools.
                const ALIASES: &[(&str, &str)] = &[
                    ("replicas", "instances"),
                    ("count", "instances"),
                    ("scale", "instances"),
                    ("command", "entrypoint"),
                    ("cmd", "entrypoint"),
                    ("environment", "env"),
                    ("path", "http"),
                    ("healthcheck", "health"),
                    ("health_check", "health"),
                    ("ttl", "max_age"),
                    ("max_lifetime", "max_age"),
                    ("ingress", "from"),
                    ("source", "from"),
                    ("target", "to"),
                    ("destination", "to"),
                    ("port", "ports"),
                    ("address", "listen"),
                    ("bind", "listen"),
                    ("volumes", "mounts"),
                    ("strategy", "rollout"),
                    ("base", "from"),
                    ("capacity", "size"),
                ];
                ALIASES
                    .iter()
                    .find(|(from, to)| **from == *f.key && allowed.contains(to))
                    .map(|(_, to)| (*to).to_owned())
            });
            let d = Diagnostic::error(
                Code::UnknownField,
                f.key_span,
                format!("unknown field `{}` in {}", f.key, self.what),
            )
            .with_primary("unknown field");
            let d = match hint {
                Some(h) => d.with_help(format!("did you mean `{h}`?")),
                None => d.with_help(format!(
                    "the fields are: {}",
                    allowed
                        .iter()
                        .map(|a| format!("`{a}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            };
            let d = if f.from_spread {
                d.with_note("this field comes from a `...` spread")
            } else {
                d
            };
            ev.diags.push(d);
        }
    }
}

fn missing(ev: &mut Eval<'_>, span: Span, what: &dyn std::fmt::Display, key: &str, hint: &str) {
    ev.diags.push(
        Diagnostic::error(Code::MissingField, span, format!("{what} has no `{key}`"))
            .with_primary(format!("missing `{key}`"))
            .with_help(format!("add `{key} = ...`: {hint}")),
    );
}

fn steps_not_allowed(ev: &mut Eval<'_>, rec: &Record, what: &str) {
    for s in &rec.steps {
        let (span, word) = match s {
            Step::Copy { src, .. } => (src.span, "copy"),
            Step::Run(v) => (v.span, "run"),
            Step::Test(v) => (v.span, "test"),
        };
        ev.diags.push(
            Diagnostic::error(Code::UnknownField, span, format!("`{word}` is not allowed in {what}"))
                .with_primary("build steps belong in an `image` block")
                .with_help("move it into an `image { ... }` declaration (or an inline `image { ... }` block of a service)"),
        );
    }
}

// ---------------------------------------------------------------------------
// Typed decoders

fn type_error(ev: &mut Eval<'_>, v: &SV, expected: &str, help: Option<String>) {
    if let Value::Sym(s) = &v.v
        && !ENUM_WORDS.contains(&&**s)
    {
        let s = s.clone();
        ev.unknown_name(&s, v.span, expected);
        return;
    }
    let d = Diagnostic::error(
        Code::TypeMismatch,
        v.span,
        format!("expected {expected}, found {}", v.v.type_name()),
    )
    .with_primary(format!("expected {expected}"));
    ev.diags.push(d.with_help_opt(help));
}

fn invalid(ev: &mut Eval<'_>, v: &SV, msg: String, label: &str, help: Option<String>) {
    ev.diags.push(
        Diagnostic::error(Code::InvalidValue, v.span, msg)
            .with_primary(label)
            .with_help_opt(help),
    );
}

/// A duration-looking string (`"1 hour"`) rewritten as a literal (`1h`).
fn duration_suggestion(s: &str) -> Option<String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let unit = match unit.trim().to_ascii_lowercase().as_str() {
        "ms" | "millisecond" | "milliseconds" | "millis" => "ms",
        "s" | "sec" | "secs" | "second" | "seconds" => "s",
        "m" | "min" | "mins" | "minute" | "minutes" => "m",
        "h" | "hr" | "hrs" | "hour" | "hours" => "h",
        "d" | "day" | "days" => "d",
        _ => return None,
    };
    Some(format!("{n}{unit}"))
}

fn size_suggestion(s: &str) -> Option<String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let unit = match unit.trim().to_ascii_lowercase().as_str() {
        "b" | "bytes" => "B",
        "k" | "kb" | "kib" => "KiB",
        "m" | "mb" | "mib" => "MiB",
        "g" | "gb" | "gib" => "GiB",
        "t" | "tb" | "tib" => "TiB",
        _ => return None,
    };
    Some(format!("{n}{unit}"))
}

fn duration(ev: &mut Eval<'_>, v: &SV) -> Option<Millis> {
    match &v.v {
        Value::Duration(d) => Some(Millis(*d)),
        Value::Str(s) => {
            let help = match duration_suggestion(s) {
                Some(lit) => {
                    format!("durations are literals, not strings: write `{lit}` (no quotes)")
                }
                None => {
                    "durations are literals such as `250ms`, `30s`, `5m`, `1h`, `7d` (no quotes)"
                        .into()
                }
            };
            type_error(ev, v, "duration", Some(help));
            None
        }
        Value::Int(i) => {
            type_error(
                ev,
                v,
                "duration",
                Some(format!("add a unit: `{i}s`, `{i}m`, `{i}ms`, ...")),
            );
            None
        }
        _ => {
            type_error(
                ev,
                v,
                "duration",
                Some("durations are written `250ms`, `30s`, `5m`, `1h`, `7d`".into()),
            );
            None
        }
    }
}

fn size(ev: &mut Eval<'_>, v: &SV) -> Option<Bytes> {
    match &v.v {
        Value::Size(b) => Some(Bytes(*b)),
        Value::Str(s) => {
            let help = match size_suggestion(s) {
                Some(lit) => format!("sizes are literals, not strings: write `{lit}` (no quotes)"),
                None => "sizes are literals such as `512KiB`, `256MiB`, `2GiB` (no quotes)".into(),
            };
            type_error(ev, v, "size", Some(help));
            None
        }
        Value::Int(i) => {
            type_error(
                ev,
                v,
                "size",
                Some(format!("add a unit: `{i}MiB`, `{i}GiB`, ...")),
            );
            None
        }
        _ => {
            type_error(
                ev,
                v,
                "size",
                Some("sizes are written `512KiB`, `256MiB`, `2GiB`".into()),
            );
            None
        }
    }
}

fn int_in(ev: &mut Eval<'_>, v: &SV, min: i64, max: i64, what: &str) -> Option<u32> {
    match &v.v {
        Value::Int(i) => {
            if *i < min || *i > max {
                invalid(
                    ev,
                    v,
                    format!("{what} must be from {min} to {max}, not {i}"),
                    "out of range",
                    None,
                );
                None
            } else {
                u32::try_from(*i).ok()
            }
        }
        Value::Str(s) if s.trim().parse::<i64>().is_ok() => {
            type_error(
                ev,
                v,
                "int",
                Some(format!("remove the quotes: `{}`", s.trim())),
            );
            None
        }
        _ => {
            type_error(ev, v, "int", None);
            None
        }
    }
}

fn port(ev: &mut Eval<'_>, v: &SV) -> Option<u16> {
    match &v.v {
        Value::Int(i) if (1..=65535).contains(i) => u16::try_from(*i).ok(),
        Value::Int(i) => {
            invalid(
                ev,
                v,
                format!("port {i} is out of range"),
                "ports are from 1 to 65535",
                Some(if *i > 65535 {
                    "TCP and UDP ports are 16-bit numbers; pick a port from 1 to 65535".into()
                } else {
                    "port 0 means \"any\" and cannot be declared; pick a port from 1 to 65535"
                        .into()
                }),
            );
            None
        }
        Value::Str(s) if s.trim().parse::<u16>().is_ok() => {
            type_error(
                ev,
                v,
                "port",
                Some(format!("remove the quotes: `{}`", s.trim())),
            );
            None
        }
        _ => {
            type_error(
                ev,
                v,
                "port",
                Some("a port is a number from 1 to 65535".into()),
            );
            None
        }
    }
}

fn string(ev: &mut Eval<'_>, v: &SV) -> Option<String> {
    match &v.v {
        Value::Str(s) => Some(s.to_string()),
        Value::Int(_) | Value::Bool(_) => {
            let text = v.v.to_text().unwrap_or_default();
            type_error(ev, v, "string", Some(format!("quote it: \"{text}\"")));
            None
        }
        Value::Sym(s) if ENUM_WORDS.contains(&&**s) => {
            type_error(ev, v, "string", Some(format!("quote it: \"{s}\"")));
            None
        }
        _ => {
            type_error(ev, v, "string", None);
            None
        }
    }
}

fn boolean(ev: &mut Eval<'_>, v: &SV) -> Option<bool> {
    match &v.v {
        Value::Bool(b) => Some(*b),
        Value::Str(s) if matches!(&**s, "true" | "false") => {
            type_error(ev, v, "bool", Some(format!("remove the quotes: `{s}`")));
            None
        }
        _ => {
            type_error(ev, v, "bool", Some("write `true` or `false`".into()));
            None
        }
    }
}

fn list<'a>(ev: &mut Eval<'_>, v: &'a SV, what: &str) -> Option<&'a [SV]> {
    match &v.v {
        Value::List(items) => Some(items.as_slice()),
        _ => {
            type_error(
                ev,
                v,
                &format!("a list of {what}"),
                Some("write a list: `[...]`".to_string()),
            );
            None
        }
    }
}

fn strings(ev: &mut Eval<'_>, v: &SV) -> Option<Vec<String>> {
    let items = list(ev, v, "strings")?;
    let mut out = Vec::with_capacity(items.len());
    let mut ok = true;
    for i in items {
        match string(ev, i) {
            Some(s) => out.push(s),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

/// A command: a list of strings (argv) or one string (run by `/bin/sh -c`).
fn command(ev: &mut Eval<'_>, v: &SV) -> Option<Vec<String>> {
    match &v.v {
        Value::Str(s) => Some(vec!["/bin/sh".into(), "-c".into(), s.to_string()]),
        Value::List(_) => {
            let argv = strings(ev, v)?;
            if argv.is_empty() {
                invalid(
                    ev,
                    v,
                    "empty command".into(),
                    "needs at least the program",
                    None,
                );
                return None;
            }
            Some(argv)
        }
        _ => {
            type_error(
                ev,
                v,
                "a command (a list of strings, or a string for `/bin/sh -c`)",
                None,
            );
            None
        }
    }
}

fn string_map(ev: &mut Eval<'_>, v: &SV) -> Option<BTreeMap<String, String>> {
    let Value::Record(r) = &v.v else {
        type_error(
            ev,
            v,
            "a map of strings",
            Some("write `{ KEY = \"value\" }`".into()),
        );
        return None;
    };
    let mut out = BTreeMap::new();
    let mut ok = true;
    for f in &r.fields {
        match string(ev, &f.value) {
            Some(s) => {
                out.insert(f.key.to_string(), s);
            }
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn record<'a>(ev: &mut Eval<'_>, v: &'a SV, what: &str) -> Option<&'a Record> {
    match &v.v {
        Value::Record(r) => Some(r),
        _ => {
            type_error(ev, v, what, Some("write a block: `{ ... }`".into()));
            None
        }
    }
}

fn enum_word(ev: &mut Eval<'_>, v: &SV, variants: &[&'static str]) -> Option<&'static str> {
    let list = variants
        .iter()
        .map(|v| format!("`{v}`"))
        .collect::<Vec<_>>()
        .join(", ");
    match &v.v {
        Value::Sym(s) => {
            if let Some(found) = variants.iter().find(|x| **x == &**s) {
                return Some(found);
            }
            let hint = did_you_mean(s, variants.iter().copied());
            ev.diags.push(
                Diagnostic::error(Code::UnknownVariant, v.span, format!("unknown value `{s}`"))
                    .with_primary(format!("expected one of {list}"))
                    .with_help(match hint {
                        Some(h) => format!("did you mean `{h}`?"),
                        None => format!("use one of {list}"),
                    }),
            );
            None
        }
        Value::Str(s) if variants.contains(&&**s) => {
            type_error(
                ev,
                v,
                &format!("one of {list}"),
                Some(format!(
                    "enum values are bare words: write `{s}` without quotes"
                )),
            );
            None
        }
        _ => {
            type_error(ev, v, &format!("one of {list}"), None);
            None
        }
    }
}

fn provider(ev: &mut Eval<'_>, v: &SV) -> Option<ProviderKind> {
    Some(
        match enum_word(ev, v, &["process", "docker", "simulated"])? {
            "docker" => ProviderKind::Docker,
            "simulated" => ProviderKind::Simulated,
            _ => ProviderKind::Process,
        },
    )
}

fn reference(ev: &mut Eval<'_>, v: &SV, kind: Kind) -> Option<Name> {
    match &v.v {
        Value::Ref(k, n) if *k == kind => Name::new(n.to_string()).ok(),
        Value::Ref(k, n) => {
            type_error(
                ev,
                v,
                &format!("a reference to {}", crate::value::article(kind.keyword())),
                Some(format!("`{k}.{n}` is a {k}; write `{kind}.NAME`")),
            );
            None
        }
        Value::Str(s) => {
            type_error(
                ev,
                v,
                &format!("a reference to {}", crate::value::article(kind.keyword())),
                Some(format!("refer to it as `{kind}.{s}` (no quotes)")),
            );
            None
        }
        Value::Sym(s) if !ENUM_WORDS.contains(&&**s) => {
            let is_decl = ev.decls.as_ref().is_some_and(|t| t.contains(kind, s));
            if is_decl {
                ev.diags.push(
                    Diagnostic::error(
                        Code::TypeMismatch,
                        v.span,
                        format!(
                            "expected a reference to {}, found a bare name",
                            crate::value::article(kind.keyword())
                        ),
                    )
                    .with_primary(format!("write `{kind}.{s}`"))
                    .with_help(format!("references name their kind: `{kind}.{s}`")),
                );
            } else {
                let s = s.clone();
                ev.unknown_name(
                    &s,
                    v.span,
                    &format!("a reference to {}", crate::value::article(kind.keyword())),
                );
            }
            None
        }
        _ => {
            type_error(
                ev,
                v,
                &format!("a reference to {}", crate::value::article(kind.keyword())),
                Some(format!("write `{kind}.NAME`")),
            );
            None
        }
    }
}

fn refs(ev: &mut Eval<'_>, v: &SV, kind: Kind) -> Option<Vec<Name>> {
    let items = list(ev, v, &format!("{kind} references"))?;
    let mut out = Vec::new();
    let mut ok = true;
    for i in items {
        match reference(ev, i, kind) {
            Some(n) => out.push(n),
            None => ok = false,
        }
    }
    out.sort();
    out.dedup();
    ok.then_some(out)
}

// ---------------------------------------------------------------------------
// Declarations

struct PolicyDef<'p> {
    name: Name,
    name_span: Span,
    severity: Severity,
    check: &'p ast::Expr,
    message: &'p ast::Expr,
    help: Option<&'p ast::Expr>,
    module: usize,
}

struct Lowerer<'p> {
    default_provider: ProviderKind,
    #[allow(dead_code)]
    image_refs: Vec<(Name, Span)>,
    policy_defs: Vec<PolicyDef<'p>>,
    inline_images: Vec<(Name, Span, Image)>,
}

const IMAGE_FIELDS: &[&str] = &["from", "entrypoint", "env", "workdir", "port", "digest"];
const SERVICE_FIELDS: &[&str] = &[
    "image",
    "provider",
    "instances",
    "args",
    "env",
    "port",
    "health",
    "rollout",
    "max_age",
    "drain",
    "stop_grace",
    "resources",
    "on_exec",
    "autoscale",
    "mounts",
];

impl Lowerer<'_> {
    fn image(&mut self, ev: &mut Eval<'_>, f: &mut Fields<'_>, rec: &Record) -> Option<Image> {
        let mut ok = true;
        let from = match f.take("from") {
            None if !f.has("from") => ImageBase::Scratch,
            None => {
                ok = false;
                ImageBase::Scratch
            }
            Some(v) => match &v.v {
                Value::Sym(s) if &**s == "scratch" => ImageBase::Scratch,
                Value::Ref(Kind::Image, n) => ImageBase::Image {
                    name: Name::new(n.to_string()).ok()?,
                },
                Value::Tagged(t, r) if &**t == "archive" => {
                    let path = r.get("path").and_then(|p| match &p.v {
                        Value::Str(s) => Some(s.to_string()),
                        _ => None,
                    });
                    let digest = r.get("digest").and_then(|d| match &d.v {
                        Value::Digest(d) => Some((**d).clone()),
                        _ => None,
                    });
                    match (path, digest) {
                        (Some(path), Some(digest)) => ImageBase::Archive { path, digest },
                        _ => {
                            ok = false;
                            ImageBase::Scratch
                        }
                    }
                }
                _ => {
                    type_error(
                        ev,
                        v,
                        "`scratch`, `image.NAME` or `archive(\"path\", sha256:...)`",
                        None,
                    );
                    ok = false;
                    ImageBase::Scratch
                }
            },
        };
        let mut steps = Vec::new();
        let mut tests = Vec::new();
        for s in &rec.steps {
            match s {
                Step::Copy { src, dst } => {
                    let (Some(s), Some(d)) = (string(ev, src), string(ev, dst)) else {
                        ok = false;
                        continue;
                    };
                    if !d.starts_with('/') {
                        invalid(
                            ev,
                            dst,
                            format!("destination `{d}` is not absolute"),
                            "paths inside an image start with `/`",
                            Some(format!("write \"/{d}\"")),
                        );
                        ok = false;
                        continue;
                    }
                    steps.push(ImageStep::Copy { src: s, dst: d });
                }
                Step::Run(v) => match command(ev, v) {
                    Some(argv) => steps.push(ImageStep::Run { argv }),
                    None => ok = false,
                },
                Step::Test(v) => match command(ev, v) {
                    Some(argv) => tests.push(argv),
                    None => ok = false,
                },
            }
        }
        let entrypoint = match f.take("entrypoint") {
            Some(v) => match &v.v {
                Value::Str(s) => vec![s.to_string()],
                _ => strings(ev, v).unwrap_or_else(|| {
                    ok = false;
                    Vec::new()
                }),
            },
            None => Vec::new(),
        };
        let env = f.take("env").and_then(|v| {
            let r = string_map(ev, v);
            ok &= r.is_some();
            r
        });
        let workdir = match f.take("workdir") {
            Some(v) => match string(ev, v) {
                Some(w) if w.starts_with('/') => w,
                Some(w) => {
                    invalid(
                        ev,
                        v,
                        format!("workdir `{w}` is not absolute"),
                        "must start with `/`",
                        None,
                    );
                    ok = false;
                    "/".into()
                }
                None => {
                    ok = false;
                    "/".into()
                }
            },
            None => glint_model::defaults::WORKDIR.into(),
        };
        let port = f.take("port").and_then(|v| {
            let p = port(ev, v);
            ok &= p.is_some();
            p
        });
        let digest = f.take("digest").and_then(|v| match &v.v {
            Value::Digest(d) => Some((**d).clone()),
            _ => {
                type_error(
                    ev,
                    v,
                    "digest",
                    Some("write `sha256:` and 64 hex digits, without quotes".into()),
                );
                ok = false;
                None
            }
        });
        f.finish(ev, IMAGE_FIELDS);
        ok.then_some(Image {
            from,
            steps,
            tests,
            entrypoint,
            env: env.unwrap_or_default(),
            workdir,
            port,
            digest,
        })
    }

    fn service(
        &mut self,
        ev: &mut Eval<'_>,
        f: &mut Fields<'_>,
        name: &Name,
        env: &Environment,
    ) -> Option<Service> {
        let mut ok = true;
        let mut image_port = None;
        let image = match f.required(
            ev,
            "image",
            "`image.NAME` or an inline `image { ... }` block",
        ) {
            Some(v) => match &v.v {
                Value::Record(r) => {
                    let mut inner =
                        Fields::new(r, v.span, format!("the inline image of service `{name}`"));
                    match self.image(ev, &mut inner, r) {
                        Some(img) => {
                            image_port = img.port;
                            self.inline_images.push((name.clone(), v.span, img));
                            Some(name.clone())
                        }
                        None => None,
                    }
                }
                _ => {
                    let r = reference(ev, v, Kind::Image);
                    if let Some(n) = &r {
                        image_port = env.images.get(n).and_then(|i| i.port);
                    }
                    r
                }
            },
            None => None,
        };
        ok &= image.is_some();
        let provider = match f.take("provider") {
            Some(v) => provider(ev, v).unwrap_or_else(|| {
                ok = false;
                ProviderKind::Process
            }),
            None => self.default_provider,
        };
        let opt = |ok: &mut bool, r: Option<Option<u32>>| -> Option<u32> {
            match r {
                Some(Some(x)) => Some(x),
                Some(None) => {
                    *ok = false;
                    None
                }
                None => None,
            }
        };
        let instances = opt(
            &mut ok,
            f.take("instances")
                .map(|v| int_in(ev, v, 0, 10_000, "instances")),
        )
        .unwrap_or(glint_model::defaults::INSTANCES);
        let args = f.take("args").map(|v| strings(ev, v)).map(|r| {
            ok &= r.is_some();
            r.unwrap_or_default()
        });
        let envmap = f.take("env").map(|v| string_map(ev, v)).map(|r| {
            ok &= r.is_some();
            r.unwrap_or_default()
        });
        let port = match f.take("port") {
            Some(v) => port(ev, v).or_else(|| {
                ok = false;
                None
            }),
            None => None,
        }
        .or(image_port)
        .unwrap_or(glint_model::defaults::PORT);
        let health = match f.take("health") {
            Some(v) => match health(ev, v) {
                Some(h) => Some(h),
                None => {
                    ok = false;
                    None
                }
            },
            None => None,
        };
        let rollout = match f.take("rollout") {
            Some(v) => rollout(ev, v).or_else(|| {
                ok = false;
                None
            }),
            None => None,
        }
        .unwrap_or_default();
        let mut dur = |ok: &mut bool, key: &str| -> Option<Millis> {
            let v = f.take(key)?;
            let d = duration(ev, v);
            *ok &= d.is_some();
            d
        };
        let max_age = dur(&mut ok, "max_age");
        let drain = dur(&mut ok, "drain").unwrap_or(glint_model::defaults::DRAIN);
        let stop_grace = dur(&mut ok, "stop_grace").unwrap_or(glint_model::defaults::STOP_GRACE);
        let resources = match f.take("resources") {
            Some(v) => resources(ev, v).or_else(|| {
                ok = false;
                None
            }),
            None => None,
        }
        .unwrap_or_default();
        let on_exec = match f.take("on_exec") {
            Some(v) => match enum_word(ev, v, &["replace", "report"]) {
                Some("report") => OnExec::Report,
                Some(_) => OnExec::Replace,
                None => {
                    ok = false;
                    OnExec::Replace
                }
            },
            None => OnExec::Replace,
        };
        let autoscale = match f.take("autoscale") {
            Some(v) => match autoscale(ev, v) {
                Some(a) => Some(a),
                None => {
                    ok = false;
                    None
                }
            },
            None => None,
        };
        let mounts = match f.take("mounts") {
            Some(v) => mounts(ev, v).unwrap_or_else(|| {
                ok = false;
                Vec::new()
            }),
            None => Vec::new(),
        };
        f.finish(ev, SERVICE_FIELDS);
        Some(Service {
            image: image?,
            provider,
            instances,
            args: args.unwrap_or_default(),
            env: envmap.unwrap_or_default(),
            port,
            health,
            rollout,
            max_age,
            drain,
            stop_grace,
            resources,
            on_exec,
            autoscale,
            mounts,
        })
        .filter(|_| ok)
    }
}

fn health(ev: &mut Eval<'_>, v: &SV) -> Option<HealthCheck> {
    let r = record(ev, v, "a health check block")?;
    let mut f = Fields::new(r, v.span, "the health check");
    let mut ok = true;
    let http = f.take("http").and_then(|p| match string(ev, p) {
        Some(s) if s.starts_with('/') => Some(s),
        Some(s) => {
            invalid(
                ev,
                p,
                format!("health check path `{s}` does not start with `/`"),
                "an HTTP path starts with `/`",
                Some(format!("write \"/{s}\"")),
            );
            ok = false;
            None
        }
        None => {
            ok = false;
            None
        }
    });
    let tcp = f.take("tcp").and_then(|t| {
        let b = boolean(ev, t);
        ok &= b.is_some();
        b
    });
    let probe = match (http, tcp) {
        (Some(path), None | Some(false)) => Some(Probe::Http { path }),
        (None, Some(true)) => Some(Probe::Tcp),
        (Some(_), Some(true)) => {
            invalid(
                ev,
                v,
                "a health check probes either `http` or `tcp`, not both".into(),
                "both given",
                None,
            );
            None
        }
        _ => {
            if ok {
                missing(
                    ev,
                    v.span,
                    &"the health check",
                    "http",
                    "the HTTP path to probe, e.g. `http = \"/healthz\"` (or `tcp = true`)",
                );
            }
            None
        }
    };
    let mut dur = |ok: &mut bool, key: &str, default: u64| -> Millis {
        match f.take(key) {
            Some(v) => duration(ev, v).unwrap_or_else(|| {
                *ok = false;
                Millis(default)
            }),
            None => Millis(default),
        }
    };
    let interval = dur(
        &mut ok,
        "interval",
        glint_model::defaults::HEALTH_INTERVAL.0,
    );
    let timeout = dur(&mut ok, "timeout", glint_model::defaults::HEALTH_TIMEOUT.0);
    let start_timeout = dur(
        &mut ok,
        "start_timeout",
        glint_model::defaults::START_TIMEOUT.0,
    );
    let mut th = |ok: &mut bool, key: &str, default: u32| -> u32 {
        match f.take(key) {
            Some(v) => int_in(ev, v, 1, 100, key).unwrap_or_else(|| {
                *ok = false;
                default
            }),
            None => default,
        }
    };
    let healthy_threshold = th(
        &mut ok,
        "healthy_threshold",
        glint_model::defaults::HEALTHY_THRESHOLD,
    );
    let unhealthy_threshold = th(
        &mut ok,
        "unhealthy_threshold",
        glint_model::defaults::UNHEALTHY_THRESHOLD,
    );
    if ok
        && timeout > interval
        && let Some(t) = r.get("timeout")
    {
        ev.diags.push(
                Diagnostic::error(Code::InvalidValue, t.span, format!("health check timeout {timeout} is longer than its interval {interval}"))
                    .with_primary("longer than the interval")
                    .with_help("a probe must finish before the next one starts: lower `timeout` or raise `interval`"),
            );
        ok = false;
    }
    f.finish(
        ev,
        &[
            "http",
            "tcp",
            "interval",
            "timeout",
            "healthy_threshold",
            "unhealthy_threshold",
            "start_timeout",
        ],
    );
    let probe = probe?;
    ok.then_some(HealthCheck {
        probe,
        interval,
        timeout,
        healthy_threshold,
        unhealthy_threshold,
        start_timeout,
    })
}

fn strategy(ev: &mut Eval<'_>, v: &SV) -> Option<Strategy> {
    let (tag, payload): (&str, Option<&Record>) = match &v.v {
        Value::Sym(s) => (s, None),
        Value::Tagged(t, r) => (t, Some(r)),
        _ => {
            type_error(
                ev,
                v,
                "a rollout strategy (`rolling`, `blue_green` or `canary`)",
                None,
            );
            return None;
        }
    };
    let word = enum_word(
        ev,
        &SV {
            v: Value::Sym(Rc::from(tag)),
            span: v.span,
        },
        &["rolling", "blue_green", "canary"],
    )?;
    let empty = Record::default();
    let r = payload.unwrap_or(&empty);
    let mut f = Fields::new(r, v.span, format!("the `{word}` strategy"));
    let mut ok = true;
    let s = match word {
        "rolling" => {
            let mut n = |ok: &mut bool, k: &str, d: u32| match f.take(k) {
                Some(v) => int_in(ev, v, 0, 10_000, k).unwrap_or_else(|| {
                    *ok = false;
                    d
                }),
                None => d,
            };
            let surge = n(&mut ok, "surge", glint_model::defaults::SURGE);
            let unavailable = n(&mut ok, "unavailable", glint_model::defaults::UNAVAILABLE);
            if ok && surge == 0 && unavailable == 0 {
                invalid(ev, v, "a rolling update with `surge = 0` and `unavailable = 0` can never make progress".into(), "no room to replace anything", Some("allow `surge = 1` (an extra instance during the update)".into()));
                ok = false;
            }
            f.finish(ev, &["surge", "unavailable"]);
            Strategy::Rolling { surge, unavailable }
        }
        "blue_green" => {
            let keep = match f.take("keep") {
                Some(v) => duration(ev, v).unwrap_or_else(|| {
                    ok = false;
                    Millis(0)
                }),
                None => Millis::from_secs(600),
            };
            f.finish(ev, &["keep"]);
            Strategy::BlueGreen { keep }
        }
        _ => {
            let steps = match f.take("steps") {
                Some(v) => match list(ev, v, "instance counts") {
                    Some(items) => {
                        let mut out = Vec::new();
                        for i in items {
                            match int_in(ev, i, 1, 10_000, "a canary step") {
                                Some(n) => out.push(n),
                                None => ok = false,
                            }
                        }
                        if out.windows(2).any(|w| w[0] >= w[1]) {
                            invalid(
                                ev,
                                v,
                                "canary steps must increase".into(),
                                "not increasing",
                                None,
                            );
                            ok = false;
                        }
                        out
                    }
                    None => {
                        ok = false;
                        Vec::new()
                    }
                },
                None => vec![1],
            };
            let pause = match f.take("pause") {
                Some(v) => duration(ev, v).unwrap_or_else(|| {
                    ok = false;
                    Millis(0)
                }),
                None => Millis::from_secs(60),
            };
            f.finish(ev, &["steps", "pause"]);
            Strategy::Canary { steps, pause }
        }
    };
    ok.then_some(s)
}

fn rollout(ev: &mut Eval<'_>, v: &SV) -> Option<Rollout> {
    let mut out = Rollout::default();
    match &v.v {
        Value::Record(r) => {
            let mut f = Fields::new(r, v.span, "the rollout settings");
            let mut ok = true;
            if let Some(s) = f.take("strategy") {
                match strategy(ev, s) {
                    Some(s) => out.strategy = s,
                    None => ok = false,
                }
            }
            if let Some(d) = f.take("min_healthy") {
                match duration(ev, d) {
                    Some(d) => out.min_healthy = d,
                    None => ok = false,
                }
            }
            if let Some(d) = f.take("deadline") {
                match duration(ev, d) {
                    Some(d) => out.deadline = d,
                    None => ok = false,
                }
            }
            if let Some(b) = f.take("auto_rollback") {
                match boolean(ev, b) {
                    Some(b) => out.auto_rollback = b,
                    None => ok = false,
                }
            }
            f.finish(
                ev,
                &["strategy", "min_healthy", "deadline", "auto_rollback"],
            );
            ok.then_some(out)
        }
        _ => {
            out.strategy = strategy(ev, v)?;
            Some(out)
        }
    }
}

fn resources(ev: &mut Eval<'_>, v: &SV) -> Option<Resources> {
    let r = record(ev, v, "a resources block")?;
    let mut f = Fields::new(r, v.span, "the resources");
    let mut ok = true;
    let memory = f.take("memory").and_then(|m| {
        let s = size(ev, m);
        ok &= s.is_some();
        s
    });
    let cpu_millis = f.take("cpu_millis").and_then(|c| {
        let n = int_in(ev, c, 1, 1_000_000, "cpu_millis");
        ok &= n.is_some();
        n
    });
    f.finish(ev, &["memory", "cpu_millis"]);
    ok.then_some(Resources { memory, cpu_millis })
}

fn autoscale(ev: &mut Eval<'_>, v: &SV) -> Option<Autoscale> {
    let r = record(ev, v, "an autoscale block")?;
    let mut f = Fields::new(r, v.span, "the autoscale block");
    let min = match f.take("min") {
        Some(m) => int_in(ev, m, 0, 10_000, "min")?,
        None => 1,
    };
    let max = match f.required(
        ev,
        "max",
        "autoscaling needs an upper bound, e.g. `max = 10`",
    ) {
        Some(m) => Some(int_in(ev, m, 1, 10_000, "max")?),
        None => None,
    };
    let target = match f.take("target_cpu") {
        Some(t) => int_in(ev, t, 1, 100, "target_cpu")?,
        None => 70,
    };
    f.finish(ev, &["min", "max", "target_cpu"]);
    let max = max?;
    if min > max {
        let span = r.get("min").map(|m| m.span).unwrap_or(v.span);
        let mut d = Diagnostic::error(
            Code::InvalidValue,
            span,
            format!("autoscale minimum {min} is above its maximum {max}"),
        )
        .with_primary("min is greater than max");
        if let Some(m) = r.get("max") {
            d = d.with_label(m.span, "max set here");
        }
        ev.diags.push(d);
        return None;
    }
    Some(Autoscale {
        min,
        max,
        target_cpu_percent: target,
    })
}

fn mounts(ev: &mut Eval<'_>, v: &SV) -> Option<Vec<Mount>> {
    let items = list(
        ev,
        v,
        "mounts (`{ volume = volume.NAME, path = \"/data\" }`)",
    )?;
    let mut out = Vec::new();
    let mut ok = true;
    for i in items {
        let Some(r) = record(
            ev,
            i,
            "a mount (`{ volume = volume.NAME, path = \"/data\" }`)",
        ) else {
            ok = false;
            continue;
        };
        let mut f = Fields::new(r, i.span, "the mount");
        let volume = f
            .required(ev, "volume", "`volume.NAME`")
            .and_then(|v| reference(ev, v, Kind::Volume));
        let path = f
            .required(
                ev,
                "path",
                "where the volume appears, e.g. `\"/var/lib/data\"`",
            )
            .and_then(|p| {
                let s = string(ev, p)?;
                if s.starts_with('/') {
                    Some(s)
                } else {
                    invalid(
                        ev,
                        p,
                        format!("mount path `{s}` is not absolute"),
                        "must start with `/`",
                        None,
                    );
                    None
                }
            });
        let read_only = match f.take("read_only") {
            Some(b) => boolean(ev, b),
            None => Some(false),
        };
        f.finish(ev, &["volume", "path", "read_only"]);
        match (volume, path, read_only) {
            (Some(volume), Some(path), Some(read_only)) => out.push(Mount {
                volume,
                path,
                read_only,
            }),
            _ => ok = false,
        }
    }
    ok.then_some(out)
}

fn endpoint(ev: &mut Eval<'_>, f: &mut Fields<'_>) -> Option<Endpoint> {
    let listen = f.required(ev, "listen", "the address to listen on, e.g. `127.0.0.1:8080`").and_then(|v| match &v.v {
        Value::Addr(a) => Some(*a),
        Value::Int(p) => {
            type_error(ev, v, "an address", Some(format!("write the address and the port: `0.0.0.0:{p}` or `127.0.0.1:{p}`")));
            None
        }
        Value::Str(s) => {
            let help = if s.parse::<std::net::SocketAddr>().is_ok() {
                format!("remove the quotes: `{s}`")
            } else {
                "write an address and port such as `127.0.0.1:8080`; IPv6: `addr(\"[::1]:8080\")`".into()
            };
            type_error(ev, v, "an address", Some(help));
            None
        }
        _ => {
            type_error(ev, v, "an address", Some("write an address and port such as `127.0.0.1:8080`".into()));
            None
        }
    });
    let service = f
        .required(
            ev,
            "service",
            "the service it routes to, e.g. `service.web`",
        )
        .and_then(|v| reference(ev, v, Kind::Service));
    let protocol = match f.take("protocol") {
        Some(v) => match enum_word(ev, v, &["http", "tcp"])? {
            "tcp" => EndpointProtocol::Tcp,
            _ => EndpointProtocol::Http,
        },
        None => EndpointProtocol::Http,
    };
    f.finish(ev, &["listen", "service", "protocol"]);
    Some(Endpoint {
        listen: listen?,
        service: service?,
        protocol,
    })
}

fn rule(ev: &mut Eval<'_>, f: &mut Fields<'_>) -> Option<Rule> {
    let from = f
        .required(
            ev,
            "from",
            "a CIDR block such as `10.0.0.0/8`, or `service.NAME`",
        )
        .and_then(|v| match &v.v {
            Value::Cidr(c) => Some(RuleSource::Cidr(*c)),
            Value::Ip(ip) => {
                let bits = if ip.is_ipv4() { 32 } else { 128 };
                type_error(
                    ev,
                    v,
                    "a CIDR block or a service",
                    Some(format!("a single address is the block `{ip}/{bits}`")),
                );
                None
            }
            Value::Ref(Kind::Service, n) => Name::new(n.to_string()).ok().map(RuleSource::Service),
            Value::Ref(Kind::Endpoint, n) => {
                Name::new(n.to_string()).ok().map(RuleSource::Endpoint)
            }
            Value::Str(s) => {
                let help = if s.parse::<Cidr>().is_ok() {
                    format!("remove the quotes: `{s}`")
                } else {
                    "write a CIDR block such as `10.0.0.0/8`, or `service.NAME`".into()
                };
                type_error(ev, v, "a CIDR block or a service", Some(help));
                None
            }
            _ => {
                type_error(
                    ev,
                    v,
                    "a CIDR block or a service",
                    Some("write a CIDR block such as `10.0.0.0/8`, or `service.NAME`".into()),
                );
                None
            }
        });
    let to = f
        .required(
            ev,
            "to",
            "the service that may be reached, e.g. `service.db`",
        )
        .and_then(|v| reference(ev, v, Kind::Service));
    let ports = match f.take("ports") {
        Some(v) => match &v.v {
            Value::Int(_) => Some(vec![port(ev, v)?]),
            _ => {
                let items = list(ev, v, "ports")?;
                let mut out = Vec::new();
                let mut ok = true;
                for i in items {
                    match port(ev, i) {
                        Some(p) => out.push(p),
                        None => ok = false,
                    }
                }
                out.sort_unstable();
                out.dedup();
                ok.then_some(out)
            }
        },
        None => Some(Vec::new()),
    };
    let protocol = match f.take("protocol") {
        Some(v) => match enum_word(ev, v, &["tcp", "udp"])? {
            "udp" => Transport::Udp,
            _ => Transport::Tcp,
        },
        None => Transport::Tcp,
    };
    f.finish(ev, &["from", "to", "ports", "protocol"]);
    Some(Rule {
        from: from?,
        to: to?,
        ports: ports?,
        protocol,
    })
}

fn variable(ev: &mut Eval<'_>, f: &mut Fields<'_>) -> Option<Variable> {
    let mut ok = true;
    let value = f.take("value").and_then(|v| {
        let s = string(ev, v);
        ok &= s.is_some();
        s
    });
    let secret_sv = f.take("secret");
    let secret = secret_sv.and_then(|v| {
        let s = string(ev, v)?;
        match s.split_once(':') {
            Some((scheme, path)) if !scheme.is_empty() && !path.is_empty() && scheme.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()) => Some(s),
            _ => {
                invalid(ev, v, format!("`{s}` is not a secret reference"), "expected `SCHEME:PATH`", Some("a secret is a reference such as \"vault:db/password\" or \"env:DB_PASSWORD\", never the value itself".into()));
                None
            }
        }
    });
    ok &= secret_sv.is_none() || secret.is_some();
    let runtime = match f.take("runtime") {
        Some(v) => boolean(ev, v).unwrap_or_else(|| {
            ok = false;
            false
        }),
        None => false,
    };
    let readers = match f.take("readers") {
        Some(v) => refs(ev, v, Kind::Service).unwrap_or_else(|| {
            ok = false;
            Vec::new()
        }),
        None => Vec::new(),
    };
    let writers = match f.take("writers") {
        Some(v) => refs(ev, v, Kind::Service).unwrap_or_else(|| {
            ok = false;
            Vec::new()
        }),
        None => Vec::new(),
    };
    f.finish(ev, &["value", "secret", "runtime", "readers", "writers"]);
    if !ok {
        return None;
    }
    let value = match (value, secret, runtime) {
        (v, None, true) => VariableValue::Runtime(v),
        (Some(v), None, false) => VariableValue::Literal(v),
        (None, Some(s), false) => VariableValue::Secret(s),
        (None, None, false) => {
            missing(
                ev,
                f.decl_span,
                &f.what,
                "value",
                "`value = \"...\"`, `secret = \"vault:path\"` or `runtime = true`",
            );
            return None;
        }
        _ => {
            ev.diags.push(
                Diagnostic::error(Code::InvalidValue, f.decl_span, format!("{} mixes `value`, `secret` and `runtime`", f.what))
                    .with_primary("conflicting sources")
                    .with_help("a variable is either a `value`, a `secret` reference, or `runtime = true` (optionally with an initial `value`)"),
            );
            return None;
        }
    };
    if !writers.is_empty() && !matches!(value, VariableValue::Runtime(_)) {
        ev.diags.push(
            Diagnostic::error(
                Code::InvalidValue,
                f.decl_span,
                format!("{} has writers but is not written at run time", f.what),
            )
            .with_primary("`writers` needs `runtime = true`")
            .with_help("add `runtime = true`, or remove `writers`"),
        );
        return None;
    }
    Some(Variable {
        value,
        readers,
        writers,
    })
}

// ---------------------------------------------------------------------------
// Whole-environment checks

fn image_cycles(ev: &mut Eval<'_>, env: &Environment, spans: &Spans) {
    // Iterative colouring over `from = image.X` edges (each image has at most one).
    let mut state: FxMap<&str, u8> = FxMap::default(); // 1 visiting, 2 done
    for start in env.images.keys() {
        if state.contains_key(start.as_str()) {
            continue;
        }
        let mut path: Vec<&str> = Vec::new();
        let mut cur = start.as_str();
        loop {
            match state.get(cur) {
                Some(2) => break,
                Some(_) => {
                    // Cycle: from `cur` around to `cur`.
                    let pos = path.iter().position(|p| *p == cur).unwrap_or(0);
                    let cycle = &path[pos..];
                    let chain = cycle
                        .iter()
                        .chain(std::iter::once(&cur))
                        .copied()
                        .collect::<Vec<_>>()
                        .join(" -> ");
                    let span_of = |n: &str| spans.get(Kind::Image, n).unwrap_or_default();
                    let mut d = Diagnostic::error(
                        Code::ReferenceCycle,
                        span_of(cur),
                        format!("images are built from each other in a cycle: {chain}"),
                    )
                    .with_primary("this image is part of the cycle");
                    for other in cycle.iter().skip(1) {
                        d = d.with_label(span_of(other), "also in the cycle");
                    }
                    ev.diags.push(d.with_help(
                        "one image in the cycle must start `from = scratch` or an archive",
                    ));
                    break;
                }
                None => {}
            }
            state.insert(cur, 1);
            path.push(cur);
            match env.images.get(cur).map(|i| &i.from) {
                Some(ImageBase::Image { name }) if env.images.contains_key(name) => {
                    cur = name.as_str()
                }
                _ => break,
            }
        }
        for p in path {
            state.insert(p, 2);
        }
    }
}

fn listen_conflicts(ev: &mut Eval<'_>, env: &Environment, spans: &Spans) {
    let mut seen: FxMap<std::net::SocketAddr, &Name> = FxMap::default();
    for (name, e) in &env.endpoints {
        if let Some(first) = seen.get(&e.listen) {
            let span_of = |n: &str| spans.get(Kind::Endpoint, n).unwrap_or_default();
            ev.diags.push(
                Diagnostic::error(
                    Code::ListenConflict,
                    span_of(name.as_str()),
                    format!(
                        "endpoints `{first}` and `{name}` both listen on {}",
                        e.listen
                    ),
                )
                .with_primary(format!("listens on {}", e.listen))
                .with_label(span_of(first.as_str()), "also listens there")
                .with_help("give each endpoint its own port"),
            );
        } else {
            seen.insert(e.listen, name);
        }
    }
}

// ---------------------------------------------------------------------------
// Policies

fn s(x: &str) -> Value {
    Value::Str(Rc::from(x))
}
fn sym(x: &str) -> Value {
    Value::Sym(Rc::from(x))
}
fn int(x: impl Into<i64>) -> Value {
    Value::Int(x.into())
}
fn dur(m: Millis) -> Value {
    Value::Duration(m.0)
}
fn opt(v: Option<Value>) -> Value {
    v.unwrap_or(Value::None)
}
fn lst(items: Vec<Value>) -> Value {
    Value::List(Rc::new(
        items
            .into_iter()
            .map(|v| SV {
                v,
                span: Span::default(),
            })
            .collect(),
    ))
}
fn rec(fields: Vec<(&str, Value)>) -> Value {
    let mut r = Record::default();
    for (k, v) in fields {
        r.set(k, v, Span::default());
    }
    Value::Record(Rc::new(r))
}
fn ref_value(kind: Kind, n: &Name) -> Value {
    Value::Ref(kind, Rc::from(n.as_str()))
}

/// The lists behind `services`, `rules`, ...: references to every
/// declaration, each with the span of its name. Fields are read lazily from
/// the compiled environment ([`view_field`]), so policies over 100,000
/// declarations build nothing they do not read.
fn build_views(env: Environment, spans: &Spans) -> Views {
    let mut lists = FxMap::default();
    let mut add = |kind: Kind, names: Vec<&Name>| {
        let table = spans.decl.get(&kind);
        let items: Vec<SV> = names
            .into_iter()
            .map(|n| {
                // Share the declaration's name instead of allocating a copy.
                match table.and_then(|t| t.get_key_value(n.as_str())) {
                    Some((name, span)) => SV {
                        v: Value::Ref(kind, name.clone()),
                        span: *span,
                    },
                    None => SV {
                        v: ref_value(kind, n),
                        span: Span::default(),
                    },
                }
            })
            .collect();
        lists.insert(kind, Value::List(Rc::new(items)));
    };
    add(Kind::Image, env.images.keys().collect());
    add(Kind::Service, env.services.keys().collect());
    add(Kind::Endpoint, env.endpoints.keys().collect());
    add(Kind::Rule, env.rules.keys().collect());
    add(Kind::Variable, env.variables.keys().collect());
    add(Kind::Volume, env.volumes.keys().collect());
    add(Kind::Policy, env.policies.keys().collect());
    Views { lists, env }
}

/// The fields a policy can read from each kind of declaration.
pub fn view_fields(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Image => &[
            "name",
            "from",
            "digest",
            "port",
            "entrypoint",
            "workdir",
            "env",
            "tests",
        ],
        Kind::Service => &[
            "name",
            "image",
            "provider",
            "instances",
            "args",
            "env",
            "port",
            "health",
            "rollout",
            "max_age",
            "drain",
            "stop_grace",
            "resources",
            "on_exec",
            "autoscale",
            "mounts",
        ],
        Kind::Endpoint => &["name", "listen", "service", "protocol"],
        Kind::Rule => &["name", "from", "to", "ports", "protocol"],
        Kind::Variable => &["name", "source", "secret", "value", "readers", "writers"],
        Kind::Volume => &["name", "size"],
        Kind::Policy => &["name", "severity", "message"],
        Kind::Environment => &[],
    }
}

fn string_map_value(m: &BTreeMap<String, String>) -> Value {
    let mut r = Record::default();
    for (k, v) in m {
        r.set(k, s(v), Span::default());
    }
    Value::Record(Rc::new(r))
}

/// One field of a declaration as a policy sees it (documented defaults
/// applied; a rule's `ports` are its effective ports: the declared ones, else
/// the target service's port).
pub fn view_field(env: &Environment, kind: Kind, name: &str, field: &str) -> Option<Value> {
    if field == "name" {
        return Some(s(name));
    }
    Some(match kind {
        Kind::Image => {
            let i = env.images.get(name)?;
            match field {
                "from" => match &i.from {
                    ImageBase::Scratch => sym("scratch"),
                    ImageBase::Image { name } => ref_value(Kind::Image, name),
                    ImageBase::Archive { path, digest } => {
                        let Value::Record(r) = rec(vec![
                            ("path", s(path)),
                            ("digest", Value::Digest(Rc::new(digest.clone()))),
                        ]) else {
                            return None;
                        };
                        Value::Tagged(Rc::from("archive"), r)
                    }
                },
                "digest" => opt(i.digest.clone().map(|d| Value::Digest(Rc::new(d)))),
                "port" => opt(i.port.map(int)),
                "entrypoint" => lst(i.entrypoint.iter().map(|x| s(x)).collect()),
                "workdir" => s(&i.workdir),
                "env" => string_map_value(&i.env),
                "tests" => int(i64::try_from(i.tests.len()).unwrap_or(i64::MAX)),
                _ => return None,
            }
        }
        Kind::Service => {
            let sv = env.services.get(name)?;
            match field {
                "image" => ref_value(Kind::Image, &sv.image),
                "provider" => sym(&sv.provider.to_string()),
                "instances" => int(sv.instances),
                "args" => lst(sv.args.iter().map(|x| s(x)).collect()),
                "env" => string_map_value(&sv.env),
                "port" => int(sv.port),
                "health" => opt(sv.health.as_ref().map(|h| {
                    let (http, tcp) = match &h.probe {
                        Probe::Http { path } => (s(path), false),
                        Probe::Tcp => (Value::None, true),
                    };
                    rec(vec![
                        ("http", http),
                        ("tcp", Value::Bool(tcp)),
                        ("interval", dur(h.interval)),
                        ("timeout", dur(h.timeout)),
                        ("healthy_threshold", int(h.healthy_threshold)),
                        ("unhealthy_threshold", int(h.unhealthy_threshold)),
                        ("start_timeout", dur(h.start_timeout)),
                    ])
                })),
                "rollout" => {
                    let (tag, fields) = match &sv.rollout.strategy {
                        Strategy::Rolling { surge, unavailable } => (
                            "rolling",
                            vec![("surge", int(*surge)), ("unavailable", int(*unavailable))],
                        ),
                        Strategy::BlueGreen { keep } => ("blue_green", vec![("keep", dur(*keep))]),
                        Strategy::Canary { steps, pause } => (
                            "canary",
                            vec![
                                ("steps", lst(steps.iter().map(|x| int(*x)).collect())),
                                ("pause", dur(*pause)),
                            ],
                        ),
                    };
                    let Value::Record(payload) = rec(fields) else {
                        return None;
                    };
                    rec(vec![
                        ("strategy", Value::Tagged(Rc::from(tag), payload)),
                        ("min_healthy", dur(sv.rollout.min_healthy)),
                        ("deadline", dur(sv.rollout.deadline)),
                        ("auto_rollback", Value::Bool(sv.rollout.auto_rollback)),
                    ])
                }
                "max_age" => opt(sv.max_age.map(dur)),
                "drain" => dur(sv.drain),
                "stop_grace" => dur(sv.stop_grace),
                "resources" => rec(vec![
                    ("memory", opt(sv.resources.memory.map(|m| Value::Size(m.0)))),
                    ("cpu_millis", opt(sv.resources.cpu_millis.map(int))),
                ]),
                "on_exec" => sym(match sv.on_exec {
                    OnExec::Replace => "replace",
                    OnExec::Report => "report",
                }),
                "autoscale" => opt(sv.autoscale.as_ref().map(|a| {
                    rec(vec![
                        ("min", int(a.min)),
                        ("max", int(a.max)),
                        ("target_cpu", int(a.target_cpu_percent)),
                    ])
                })),
                "mounts" => lst(sv
                    .mounts
                    .iter()
                    .map(|m| {
                        rec(vec![
                            ("volume", ref_value(Kind::Volume, &m.volume)),
                            ("path", s(&m.path)),
                            ("read_only", Value::Bool(m.read_only)),
                        ])
                    })
                    .collect()),
                _ => return None,
            }
        }
        Kind::Endpoint => {
            let e = env.endpoints.get(name)?;
            match field {
                "listen" => Value::Addr(e.listen),
                "service" => ref_value(Kind::Service, &e.service),
                "protocol" => sym(match e.protocol {
                    EndpointProtocol::Http => "http",
                    EndpointProtocol::Tcp => "tcp",
                }),
                _ => return None,
            }
        }
        Kind::Rule => {
            let r = env.rules.get(name)?;
            match field {
                "from" => match &r.from {
                    RuleSource::Cidr(c) => Value::Cidr(*c),
                    RuleSource::Service(n) => ref_value(Kind::Service, n),
                    RuleSource::Endpoint(n) => ref_value(Kind::Endpoint, n),
                },
                "to" => ref_value(Kind::Service, &r.to),
                "ports" => {
                    let ports: Vec<u16> = if r.ports.is_empty() {
                        env.services
                            .get(&r.to)
                            .map(|s| vec![s.port])
                            .unwrap_or_default()
                    } else {
                        r.ports.clone()
                    };
                    lst(ports.into_iter().map(int).collect())
                }
                "protocol" => sym(match r.protocol {
                    Transport::Tcp => "tcp",
                    Transport::Udp => "udp",
                }),
                _ => return None,
            }
        }
        Kind::Variable => {
            let var = env.variables.get(name)?;
            let (source, value) = match &var.value {
                VariableValue::Literal(v) => ("literal", s(v)),
                VariableValue::Secret(_) => ("secret", Value::None),
                VariableValue::Runtime(v) => ("runtime", opt(v.as_deref().map(s))),
            };
            match field {
                "source" => sym(source),
                "secret" => Value::Bool(source == "secret"),
                "value" => value,
                "readers" => lst(var
                    .readers
                    .iter()
                    .map(|n| ref_value(Kind::Service, n))
                    .collect()),
                "writers" => lst(var
                    .writers
                    .iter()
                    .map(|n| ref_value(Kind::Service, n))
                    .collect()),
                _ => return None,
            }
        }
        Kind::Volume => {
            let v = env.volumes.get(name)?;
            match field {
                "size" => opt(v.size.map(|b| Value::Size(b.0))),
                _ => return None,
            }
        }
        Kind::Policy => {
            let p = env.policies.get(name)?;
            match field {
                "severity" => sym(match p.severity {
                    Severity::Error => "error",
                    Severity::Warning => "warning",
                }),
                "message" => s(&p.message),
                _ => return None,
            }
        }
        Kind::Environment => return None,
    })
}

fn run_policy(ev: &mut Eval<'_>, def: &PolicyDef<'_>) {
    let mut scope = Scope::new(def.module);
    let before = ev.diags.len();
    match &def.check.kind {
        ExprKind::Quant {
            all: true,
            var,
            coll,
            body,
        } => {
            let Ok(c) = ev.eval(coll, &mut scope) else {
                note_policy(ev, before, def);
                return;
            };
            let Value::List(items) = &c.v else {
                ev.mismatch(
                    &c.v,
                    c.span,
                    "list",
                    "quantifiers range over lists, such as `services`",
                );
                note_policy(ev, before, def);
                return;
            };
            for item in items.iter() {
                scope.locals.push((var.name.clone(), item.v.clone()));
                let r: R<SV> = ev.eval(body, &mut scope);
                match r {
                    Ok(SV {
                        v: Value::Bool(true),
                        ..
                    }) => {}
                    Ok(SV {
                        v: Value::Bool(false),
                        ..
                    }) => {
                        let origin = match &item.v {
                            Value::Record(r) => r.origin,
                            _ => None,
                        };
                        violation(
                            ev,
                            def,
                            &mut scope,
                            origin.unwrap_or(item.span),
                            Some(&item.v),
                        );
                    }
                    Ok(other) => {
                        not_bool(ev, def, &other);
                        scope.locals.pop();
                        break;
                    }
                    Err(Reported) => {
                        note_policy_for(ev, before, def, &item.v);
                        scope.locals.pop();
                        break;
                    }
                }
                scope.locals.pop();
            }
        }
        _ => match ev.eval(def.check, &mut scope) {
            Ok(SV {
                v: Value::Bool(true),
                ..
            }) => {}
            Ok(SV {
                v: Value::Bool(false),
                ..
            }) => violation(ev, def, &mut scope, def.name_span, None),
            Ok(other) => not_bool(ev, def, &other),
            Err(Reported) => note_policy(ev, before, def),
        },
    }
}

fn note_policy(ev: &mut Eval<'_>, before: usize, def: &PolicyDef<'_>) {
    for d in &mut ev.diags[before..] {
        d.notes
            .push(format!("while checking policy `{}`", def.name));
    }
}

fn note_policy_for(ev: &mut Eval<'_>, before: usize, def: &PolicyDef<'_>, item: &Value) {
    let what = match item {
        Value::Ref(_, n) => Some(n.to_string()),
        _ => None,
    };
    for d in &mut ev.diags[before..] {
        if d.code == Code::OperatorType && d.message.contains("`none`") {
            d.code = Code::PolicyEvaluation;
            d.help = Some(
                "an optional field is `none` here; guard it: `x.field != none and x.field ...`"
                    .into(),
            );
        }
        d.notes.push(match &what {
            Some(n) => format!("while checking policy `{}` against `{n}`", def.name),
            None => format!("while checking policy `{}`", def.name),
        });
    }
}

fn not_bool(ev: &mut Eval<'_>, def: &PolicyDef<'_>, v: &SV) {
    ev.diags.push(
        Diagnostic::error(
            Code::PolicyEvaluation,
            def.check.span,
            format!("the check of policy `{}` is not a condition", def.name),
        )
        .with_primary(format!(
            "evaluates to {}, not true or false",
            crate::value::article(&v.v.type_name())
        ))
        .with_help("write a comparison, e.g. `all s in services: s.instances >= 2`"),
    );
}

fn violation(
    ev: &mut Eval<'_>,
    def: &PolicyDef<'_>,
    scope: &mut Scope,
    at: Span,
    item: Option<&Value>,
) {
    let message = match ev.eval(def.message, scope) {
        Ok(SV {
            v: Value::Str(s), ..
        }) => s.to_string(),
        Ok(other) => other.v.to_text().unwrap_or_default(),
        Err(Reported) => format!("policy `{}` violated", def.name),
    };
    let help = def.help.and_then(|h| match ev.eval(h, scope) {
        Ok(SV {
            v: Value::Str(s), ..
        }) => Some(s.to_string()),
        _ => None,
    });
    let who = item.and_then(|v| match v {
        Value::Ref(_, n) => Some(n.to_string()),
        _ => None,
    });
    let label = match &who {
        Some(_) => format!("violates policy `{}`", def.name),
        None => "this policy's check is false".into(),
    };
    let mut d = match def.severity {
        Severity::Error => Diagnostic::error(Code::PolicyViolation, at, message),
        Severity::Warning => Diagnostic::warning(Code::PolicyViolation, at, message),
    }
    .with_primary(label)
    .with_label(def.check.span, format!("required by policy `{}`", def.name));
    d = d.with_help(help.unwrap_or_else(|| match def.severity {
        Severity::Error => {
            "change the declaration so that the check holds; error policies block the change".into()
        }
        Severity::Warning => "this is a warning: the change is not blocked".into(),
    }));
    ev.diags.push(d);
}

/// Used by tests: the names of all fields of a kind.
#[doc(hidden)]
pub fn fields_of(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Image => IMAGE_FIELDS,
        Kind::Service => SERVICE_FIELDS,
        _ => &[],
    }
}
