//! Lowering: evaluated declarations to the typed [`Environment`].
//!
//! Declarations are collected from every module (expanding `for`), checked
//! for duplicates, then each body is evaluated to a record and decoded
//! through its kind's table in [`crate::schema`] (unknown, missing, mistyped
//! and invalid fields are reported there, and every default applied). Then
//! the whole-environment checks run ([`crate::checks`]), and finally the
//! policies, over views of the compiled declarations ([`crate::views`],
//! [`crate::policy`]).

use crate::ast::{self, Block, DeclName, ExprKind, ItemKind};
use crate::capability::{Capabilities, ProviderSet};
use crate::codes::Code;
use crate::diag::Diagnostic;
use crate::eval::{DeclTable, Eval, Reported, Scope};
use crate::policy::{PolicyDef, run_policy};
use crate::schema::{
    Cx, ENDPOINT, ENVIRONMENT, EndpointDraft, EnvDraft, IMAGE, ImageDraft, NOTIFY, NotifyDraft,
    POLICY, PolicyDraft, RULE, RuleDraft, SERVICE, ServiceDraft, Uses, VARIABLE, VOLUME,
    VariableDraft, What,
};
use crate::source::Span;
use crate::value::{Kind, Record, SV, Step, Value};
use glint_model::*;
use std::rc::Rc;

/// One declaration instance (a `for` may produce many from one item).
struct DeclInst<'p> {
    kind: Kind,
    name: Rc<str>,
    name_span: Span,
    body: DeclBody<'p>,
    scope: Scope,
}

/// A declaration's body: parsed, or only located (parsed when decoded).
#[derive(Clone, Copy)]
enum DeclBody<'p> {
    Parsed(&'p Block),
    Located(Span),
}

/// What lowering needs besides the program.
pub(crate) struct Inputs<'a> {
    /// The environment's name when there is no `environment` block.
    pub default_name: &'a str,
    /// The providers the build has.
    pub providers: &'a ProviderSet,
    /// The capabilities the build enforces.
    pub enforced: &'a Capabilities,
    /// The loader (to check paths on disk without reading them).
    pub loader: &'a dyn crate::Loader,
    /// Per module: whether only policies may be declared in it (modules
    /// reached only from `--policy` files).
    pub policy_only: &'a [bool],
}

/// Lowers every module of the program into one environment.
pub(crate) fn lower(ev: &mut Eval<'_>, inputs: &Inputs<'_>) -> Environment {
    let prog = ev.prog;
    // 1. Collect declarations.
    let mut insts: Vec<DeclInst<'_>> = Vec::new();
    for (m, module) in prog.modules.iter().enumerate() {
        let mut scope = Scope::new(m);
        let policy_only = inputs.policy_only.get(m).copied().unwrap_or(false);
        let first = insts.len();
        collect(
            ev,
            &module.ast.items,
            &mut scope,
            &mut insts,
            0,
            policy_only,
        );
        // Declarations whose bodies were only located, in file order with
        // the others (so that "declared twice" names the first one).
        for d in &module.ast.lazy {
            let Some(kind) = Kind::from_keyword(&d.kind.name) else {
                continue;
            };
            if policy_only && kind != Kind::Policy {
                not_a_policy(ev, kind, d.kind.span);
                continue;
            }
            if !Name::is_valid(&d.name.name) {
                invalid_name(ev, kind, &d.name.name, d.name.span);
                continue;
            }
            insts.push(DeclInst {
                kind,
                name: d.name.name.clone(),
                name_span: d.name.span,
                body: DeclBody::Located(d.body),
                scope: Scope::new(m),
            });
        }
        insts[first..].sort_by_key(|d| d.name_span.start);
    }

    // 2. Duplicates and the declaration table.
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
        if let Err(first) = table.declare(d.kind, d.name.clone(), d.name_span) {
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
        }
    }
    let table = Rc::new(table);
    ev.decls = Some(table.clone());

    let mut uses = Uses::default();
    // Keys and names of the bodies parsed below, each allocated once.
    let mut names = crate::fxhash::FxSet::default();
    let mut cx = Cx {
        ev,
        default_provider: ProviderKind::Process,
        providers: inputs.providers,
        uses: &mut uses,
        loader: inputs.loader,
    };

    // 3. Environment block.
    let mut env_name = sanitize_name(inputs.default_name);
    if let Some(i) = env_decl {
        let d = &insts[i];
        if let Ok(n) = Name::new(d.name.to_string()) {
            env_name = n;
        }
        let mut scope = d.scope.clone();
        let parsed = parse_deferred(cx.ev, d.body, &mut names);
        let body = parsed.as_ref().or(parsed_body(d.body));
        if let Some(body) = body
            && let Ok((rec, _)) = cx.ev.eval_block(body, &mut scope, &[])
        {
            let mut draft = EnvDraft::default();
            let what = What::Decl(Kind::Environment, &d.name);
            ENVIRONMENT.decode(&mut cx, &rec, d.name_span, &what, &mut draft, &[]);
            if let Some(p) = draft.provider {
                cx.default_provider = p;
            }
            steps_not_allowed(cx.ev, &rec, "an environment");
        }
    }

    // 4. Evaluate and decode every declaration.
    let mut env = Environment::empty(env_name);
    let mut policy_defs: Vec<PolicyDef<'_>> = Vec::new();
    let mut inline_images: Vec<(Name, Span, Image)> = Vec::new();
    let lazy = crate::schema::policy_lazy_fields();
    // Images first, so that services can default their port from them.
    let order = [
        Kind::Image,
        Kind::Volume,
        Kind::Service,
        Kind::Endpoint,
        Kind::Rule,
        Kind::Variable,
        Kind::Notify,
        Kind::Policy,
    ];
    let mut buckets: [Vec<u32>; 9] = Default::default();
    for (i, d) in insts.iter().enumerate() {
        if keep[i] && d.kind != Kind::Environment {
            buckets[d.kind as usize].push(u32::try_from(i).unwrap_or(u32::MAX));
        }
    }
    let queue = order
        .iter()
        .flat_map(|k| std::mem::take(&mut buckets[*k as usize]));
    {
        for d in queue.filter_map(|i| insts.get(i as usize)) {
            let kind = d.kind;
            let mut scope = d.scope.clone();
            // Bodies are parsed here, one at a time, and dropped once
            // decoded (policies keep theirs: their checks run later).
            let parsed;
            let body = match parse_deferred(cx.ev, d.body, &mut names) {
                Some(b) => {
                    parsed = b;
                    &parsed
                }
                None => match parsed_body(d.body) {
                    Some(b) => b,
                    None => continue,
                },
            };
            let evaluated = if let (Kind::Policy, DeclBody::Parsed(b)) = (kind, d.body) {
                cx.ev.eval_block(b, &mut scope, &lazy)
            } else {
                cx.ev
                    .eval_block(body, &mut scope, &[])
                    .map(|(r, _)| (r, Vec::new()))
            };
            let Ok((rec, deferred)) = evaluated else {
                continue;
            };
            let Ok(name) = Name::new(d.name.to_string()) else {
                continue;
            };
            let what = What::Decl(d.kind, &d.name);
            let at = d.name_span;
            // Secret variables are delivered (to `/run/secrets/NAME`) and so
            // are not counted as variables not enforced; see `Kind::Variable`.
            if let Some(c) = crate::schema::BlockKind::of_decl(kind).info().capability
                && kind != Kind::Variable
            {
                cx.uses.add(c, at, || format!("{kind} `{}`", d.name));
            }
            match kind {
                Kind::Image => {
                    let mut draft = ImageDraft::default();
                    if IMAGE.decode(&mut cx, &rec, at, &what, &mut draft, &[]) {
                        env.images.insert(name, draft.img);
                    }
                }
                Kind::Service => {
                    let mut draft = ServiceDraft::new(name.clone(), cx.default_provider);
                    let ok = SERVICE.decode(&mut cx, &rec, at, &what, &mut draft, &[]);
                    let inline_port = draft.inline.as_ref().map(|(_, img)| img.port);
                    if let Some((span, img)) = draft.inline.take() {
                        inline_images.push((name.clone(), span, img));
                    }
                    if let (true, Some(image)) = (ok, draft.image.take()) {
                        let image_port = match inline_port {
                            Some(p) => p,
                            None => env.images.get(&image).and_then(|i| i.port),
                        };
                        let mut s = draft.s;
                        s.port = draft
                            .port
                            .or(image_port)
                            .unwrap_or(glint_model::defaults::PORT);
                        s.image = image;
                        env.services.insert(name, s);
                    }
                }
                Kind::Endpoint => {
                    let mut draft = EndpointDraft::default();
                    if ENDPOINT.decode(&mut cx, &rec, at, &what, &mut draft, &[])
                        && let (Some(listen), Some(service)) = (draft.listen, draft.service)
                    {
                        env.endpoints.insert(
                            name,
                            Endpoint {
                                listen,
                                service,
                                protocol: draft.protocol,
                            },
                        );
                    }
                }
                Kind::Rule => {
                    let mut draft = RuleDraft::default();
                    if RULE.decode(&mut cx, &rec, at, &what, &mut draft, &[])
                        && let (Some(from), Some(to)) = (draft.from, draft.to)
                    {
                        env.rules.insert(
                            name,
                            Rule {
                                from,
                                to,
                                ports: draft.ports,
                                protocol: draft.protocol,
                            },
                        );
                    }
                }
                Kind::Variable => {
                    let mut draft = VariableDraft::default();
                    let ok = VARIABLE.decode(&mut cx, &rec, at, &what, &mut draft, &[]);
                    if draft.secret.is_none() {
                        cx.uses
                            .add(crate::capability::Capability::Variables, at, || {
                                format!("{kind} `{}`", d.name)
                            });
                    }
                    if ok && let Some(v) = draft.build() {
                        env.variables.insert(name, v);
                    }
                }
                Kind::Notify => {
                    let mut draft = NotifyDraft::default();
                    if NOTIFY.decode(&mut cx, &rec, at, &what, &mut draft, &[])
                        && let Some(n) = draft.build()
                    {
                        env.notify.insert(name, n);
                    }
                }
                Kind::Volume => {
                    let mut volume = Volume::default();
                    if VOLUME.decode(&mut cx, &rec, at, &what, &mut volume, &[]) {
                        env.volumes.insert(name, volume);
                    }
                }
                Kind::Policy => {
                    let present: Vec<&str> = deferred.iter().map(|(k, _)| &*k.name).collect();
                    let mut draft = PolicyDraft::default();
                    let ok = POLICY.decode(&mut cx, &rec, at, &what, &mut draft, &present);
                    let get = |k: &str| {
                        deferred
                            .iter()
                            .find(|(key, _)| &*key.name == k)
                            .map(|(_, e)| *e)
                    };
                    if let (true, Some(check), Some(message)) = (ok, get("check"), get("message")) {
                        policy_defs.push(PolicyDef {
                            name: name.clone(),
                            name_span: d.name_span,
                            severity: draft.severity,
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
                                        format!("${{{}}}", cx.ev.prog_text(e.span))
                                    }
                                })
                                .collect(),
                            _ => cx.ev.prog_text(message.span),
                        };
                        env.policies.insert(
                            name,
                            Policy {
                                severity: draft.severity,
                                message: text,
                            },
                        );
                    }
                }
                Kind::Environment => {}
            }
            if kind != Kind::Image && !rec.steps.is_empty() {
                steps_not_allowed(cx.ev, &rec, &format!("a {kind}"));
            }
        }
    }

    // Every binding is checked, even one nothing uses yet.
    for (m, module) in prog.modules.iter().enumerate() {
        for (i, item) in module.ast.items.iter().enumerate() {
            if let ItemKind::Let(l) = &item.kind {
                let _ = ev.let_value(m, i, l.name.span);
            }
        }
    }

    // Inline images declared inside services.
    for (name, span, img) in inline_images {
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
    crate::checks::image_cycles(ev, &env, &table);
    crate::checks::listen_conflicts(ev, &env, &table);
    crate::checks::shared_writable_volumes(ev, &env, &table);
    crate::checks::not_enforced(ev, &uses, inputs.enforced);
    crate::checks::docker_rules(ev, &env, &table, inputs.enforced);

    // 6. Policies.
    if !policy_defs.is_empty() {
        let env_rc = Rc::new(env);
        let views = crate::views::PolicyViews::new(env_rc.clone(), table.clone());
        ev.views = Some(Box::new(views));
        for def in &policy_defs {
            run_policy(ev, def);
        }
        ev.views = None;
        env = match Rc::try_unwrap(env_rc) {
            Ok(env) => env,
            Err(shared) => (*shared).clone(),
        };
    }
    env
}

/// Collects the declarations of `items` (expanding `for`), refusing any but
/// policies in a policy-only module.
fn collect<'p>(
    ev: &mut Eval<'p>,
    items: &'p [ast::Item],
    scope: &mut Scope,
    out: &mut Vec<DeclInst<'p>>,
    depth: usize,
    policy_only: bool,
) {
    for item in items {
        match &item.kind {
            ItemKind::Decl(d) => {
                let Some(kind) = Kind::from_keyword(&d.kind.name) else {
                    continue;
                };
                if policy_only && kind != Kind::Policy {
                    not_a_policy(ev, kind, d.kind.span);
                    continue;
                }
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
                    invalid_name(ev, kind, &name, span);
                    continue;
                }
                out.push(DeclInst {
                    kind,
                    name: Rc::from(name),
                    name_span: span,
                    body: DeclBody::Parsed(&d.body),
                    scope: scope.clone(),
                });
            }
            ItemKind::For(f) => {
                let ast::ForItem {
                    var, iter, items, ..
                } = &**f;
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
                    collect(ev, items, scope, out, depth + 1, policy_only);
                    scope.locals.pop();
                }
                if depth == 0 {
                    for it in items {
                        if matches!(
                            it.kind,
                            ItemKind::Let(_) | ItemKind::Fn(_) | ItemKind::Import(_)
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

/// A declaration other than a policy in a policy-only module (E0402).
fn not_a_policy(ev: &mut Eval<'_>, kind: Kind, at: Span) {
    ev.diags.push(
        Diagnostic::error(
            Code::NotAPolicy,
            at,
            format!(
                "a policy file cannot declare {}",
                crate::value::article(kind.keyword())
            ),
        )
        .with_primary("only policies, `let` and `fn` are allowed here")
        .with_help(
            "a policy file given with `--policy` checks an environment; it must not add to it. Move this declaration into the environment's own files",
        ),
    );
}

/// A declaration name that is not a valid [`Name`] (E0107).
fn invalid_name(ev: &mut Eval<'_>, kind: Kind, name: &str, at: Span) {
    let fixed = sanitize_name(name);
    ev.diags.push(
        Diagnostic::error(
            Code::InvalidName,
            at,
            format!("invalid {kind} name `{name}`"),
        )
        .with_primary(
            "names are 1 to 63 lowercase letters, digits, `_` or `-`, starting with a letter",
        )
        .with_help(format!("try `{fixed}`")),
    );
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

/// The entries of a body the parser only located ([`Block::deferred`]).
fn parse_deferred(
    ev: &mut Eval<'_>,
    body: DeclBody<'_>,
    names: &mut crate::fxhash::FxSet<Rc<str>>,
) -> Option<Block> {
    let span = match body {
        DeclBody::Parsed(b) if b.deferred => b.span,
        DeclBody::Parsed(_) => return None,
        DeclBody::Located(span) => span,
    };
    let text = ev.prog.file_texts.get(span.file.0 as usize)?.clone();
    Some(crate::parser::parse_body_with(
        &text,
        span,
        &mut ev.diags,
        names,
    ))
}

/// The body parsed with the file (a policy's, or one the parser did not
/// locate); `None` for a located one, which callers parse first.
fn parsed_body(body: DeclBody<'_>) -> Option<&Block> {
    match body {
        DeclBody::Parsed(b) => Some(b),
        DeclBody::Located(_) => None,
    }
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
