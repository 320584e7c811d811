//! The schema: one field table per block kind, read by everything that needs
//! to know a block's fields.
//!
//! Each declaration kind (`service`, `rule`, ...) and each nested block
//! (`health`, `rollout`, `canary { ... }`, a mount, ...) has exactly one
//! table. An entry holds what a person or a tool needs to know about the
//! field ([`FieldInfo`]: name, type, default, a doc line, an example, the
//! enum words it takes, names users bring from other tools, the capability it
//! asks for) together with what the compiler does with it: how its value is
//! decoded into the IR and how a policy sees it. So a new field is added in
//! one place, and
//! - lowering decodes it, reports it when required and missing, and refuses
//!   unknown fields with a suggestion from the same names;
//! - policies read it through references (`s.health.interval`);
//! - `docs/language.md` is checked against it (`tests/schema.rs`);
//! - a language server completes field names per block and shows a field's
//!   type, default and doc on hover ([`block`], [`fields`], [`field`]).
//!
//! The tables live next to the decoders of their kinds: `image.rs`,
//! `service.rs` (with its nested blocks) and `decls.rs` (environment,
//! endpoint, rule, variable, volume, policy).

mod decls;
mod image;
mod service;

use crate::capability::Capability;
use crate::decode::missing;
use crate::diag::{Diagnostic, did_you_mean};
use crate::eval::{Eval, is_poisoned};
use crate::value::{Field, Kind, Record, SV, Value};
use crate::{capability::ProviderSet, codes::Code};
use glint_model::{Environment, ProviderKind};
use std::fmt;

pub(crate) use decls::{
    ENDPOINT, ENVIRONMENT, NOTIFY, NotifyDraft, POLICY, RULE, VARIABLE, VOLUME, policy_lazy_fields,
};
pub(crate) use decls::{EndpointDraft, EnvDraft, PolicyDraft, RuleDraft, VariableDraft};
pub(crate) use image::{IMAGE, ImageDraft};
pub(crate) use service::{SERVICE, ServiceDraft};

/// Every kind of block that has fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BlockKind {
    /// `environment NAME { ... }`
    Environment,
    /// `image NAME { ... }` (and a service's inline `image { ... }`)
    Image,
    /// `service NAME { ... }`
    Service,
    /// A service's `health { ... }`
    Health,
    /// A service's `rollout { ... }`
    Rollout,
    /// The strategy `rolling { ... }`
    Rolling,
    /// The strategy `blue_green { ... }`
    BlueGreen,
    /// The strategy `canary { ... }`
    Canary,
    /// A service's `resources { ... }`
    Resources,
    /// A service's `autoscale { ... }`
    Autoscale,
    /// One element of a service's `mounts`
    Mount,
    /// `endpoint NAME { ... }`
    Endpoint,
    /// `rule NAME { ... }`
    Rule,
    /// `variable NAME { ... }`
    Variable,
    /// `volume NAME { ... }`
    Volume,
    /// `notify NAME { ... }`
    Notify,
    /// `policy NAME { ... }`
    Policy,
}

impl BlockKind {
    /// Every block kind, declarations first.
    pub const ALL: &'static [BlockKind] = &[
        BlockKind::Environment,
        BlockKind::Image,
        BlockKind::Service,
        BlockKind::Endpoint,
        BlockKind::Rule,
        BlockKind::Variable,
        BlockKind::Volume,
        BlockKind::Notify,
        BlockKind::Policy,
        BlockKind::Health,
        BlockKind::Rollout,
        BlockKind::Rolling,
        BlockKind::BlueGreen,
        BlockKind::Canary,
        BlockKind::Resources,
        BlockKind::Autoscale,
        BlockKind::Mount,
    ];

    /// The block of a declaration kind.
    pub fn of_decl(kind: Kind) -> BlockKind {
        match kind {
            Kind::Environment => BlockKind::Environment,
            Kind::Image => BlockKind::Image,
            Kind::Service => BlockKind::Service,
            Kind::Endpoint => BlockKind::Endpoint,
            Kind::Rule => BlockKind::Rule,
            Kind::Variable => BlockKind::Variable,
            Kind::Volume => BlockKind::Volume,
            Kind::Notify => BlockKind::Notify,
            Kind::Policy => BlockKind::Policy,
        }
    }

    /// The declaration kind, for the blocks that are declarations.
    pub fn decl_kind(self) -> Option<Kind> {
        Some(match self {
            BlockKind::Environment => Kind::Environment,
            BlockKind::Image => Kind::Image,
            BlockKind::Service => Kind::Service,
            BlockKind::Endpoint => Kind::Endpoint,
            BlockKind::Rule => Kind::Rule,
            BlockKind::Variable => Kind::Variable,
            BlockKind::Volume => Kind::Volume,
            BlockKind::Notify => Kind::Notify,
            BlockKind::Policy => Kind::Policy,
            _ => return None,
        })
    }

    /// Where the block is written, as `docs/language.md` names it
    /// (`service`, `service.health`, `rollout.strategy = canary`).
    pub fn path(self) -> &'static str {
        self.info().path
    }

    /// The public description of the block.
    pub fn info(self) -> &'static BlockInfo {
        match self {
            BlockKind::Environment => &decls::ENVIRONMENT_INFO,
            BlockKind::Image => &image::IMAGE_INFO,
            BlockKind::Service => &service::SERVICE_INFO,
            BlockKind::Health => &service::HEALTH_INFO,
            BlockKind::Rollout => &service::ROLLOUT_INFO,
            BlockKind::Rolling => &service::ROLLING_INFO,
            BlockKind::BlueGreen => &service::BLUE_GREEN_INFO,
            BlockKind::Canary => &service::CANARY_INFO,
            BlockKind::Resources => &service::RESOURCES_INFO,
            BlockKind::Autoscale => &service::AUTOSCALE_INFO,
            BlockKind::Mount => &service::MOUNT_INFO,
            BlockKind::Endpoint => &decls::ENDPOINT_INFO,
            BlockKind::Rule => &decls::RULE_INFO,
            BlockKind::Variable => &decls::VARIABLE_INFO,
            BlockKind::Volume => &decls::VOLUME_INFO,
            BlockKind::Notify => &decls::NOTIFY_INFO,
            BlockKind::Policy => &decls::POLICY_INFO,
        }
    }
}

/// What a block is, for people and tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockInfo {
    /// The block.
    pub kind: BlockKind,
    /// Where it is written (`service.health`).
    pub path: &'static str,
    /// One line saying what it is.
    pub doc: &'static str,
    /// Statements it takes besides fields (an image's `copy`, `run`, `test`).
    pub statements: &'static [StatementInfo],
    /// The capability every declaration of this kind asks for (a `rule`
    /// asks for [`Capability::FirewallRules`]).
    pub capability: Option<Capability>,
}

/// A statement of a block (`copy SRC to DST`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatementInfo {
    /// The keyword (`copy`).
    pub keyword: &'static str,
    /// The syntax (`copy SRC to DST`).
    pub syntax: &'static str,
    /// One line saying what it does.
    pub doc: &'static str,
}

/// A field's default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldDefault {
    /// The field must be given.
    Required,
    /// Left out, the field is absent (`none` to policies).
    Absent,
    /// Left out, the field has this value, written in Glint (`30s`,
    /// `rolling`, `[]`).
    Value(&'static str),
    /// Left out, the value is worked out from other settings (the words say
    /// how: "the image's port, else `8080`").
    Derived(&'static str),
}

impl FieldDefault {
    /// The default as `docs/language.md` writes it.
    pub fn text(self) -> String {
        match self {
            FieldDefault::Required => "required".into(),
            FieldDefault::Absent => "none".into(),
            FieldDefault::Value(v) => format!("`{v}`"),
            FieldDefault::Derived(d) => d.into(),
        }
    }
}

/// One field of a block, as people and tools see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldInfo {
    /// The key (`instances`).
    pub name: &'static str,
    /// Its type, in words (`int, 0–10000`).
    pub ty: &'static str,
    /// What it is when left out.
    pub default: FieldDefault,
    /// One line saying what it is.
    pub doc: &'static str,
    /// A valid value, written in Glint (`3`).
    pub example: &'static str,
    /// The block it holds (`health` holds a [`BlockKind::Health`]); for a
    /// strategy, the first of the strategies (see [`FieldInfo::blocks`]).
    pub block: Option<BlockKind>,
    /// Further blocks it may hold (the strategies).
    pub blocks: &'static [BlockKind],
    /// The enum words it takes (`process`, `docker`).
    pub words: &'static [&'static str],
    /// Names of the same setting in other tools (`replicas`), suggested when
    /// written by mistake.
    pub aliases: &'static [&'static str],
    /// Whether it may be written in a block (false: policies can only read
    /// it, such as an image's `tests`).
    pub settable: bool,
    /// Whether policies can read it through a reference.
    pub viewable: bool,
    /// Kept as an expression and evaluated later (a policy's `check`).
    pub lazy: bool,
    /// The capability its use asks for (`autoscale`).
    pub capability: Option<Capability>,
}

impl FieldInfo {
    /// A settable field that policies can read.
    pub const fn new(
        name: &'static str,
        ty: &'static str,
        default: FieldDefault,
        doc: &'static str,
        example: &'static str,
    ) -> FieldInfo {
        FieldInfo {
            name,
            ty,
            default,
            doc,
            example,
            block: None,
            blocks: &[],
            words: &[],
            aliases: &[],
            settable: true,
            viewable: true,
            lazy: false,
            capability: None,
        }
    }

    /// Holds a block of `kind`.
    pub const fn block(mut self, kind: BlockKind) -> FieldInfo {
        self.block = Some(kind);
        self
    }

    /// Holds one of several blocks (the first is also [`FieldInfo::block`]).
    pub const fn blocks(mut self, kinds: &'static [BlockKind]) -> FieldInfo {
        if let Some(first) = kinds.first() {
            self.block = Some(*first);
        }
        self.blocks = kinds;
        self
    }

    /// Takes these enum words.
    pub const fn words(mut self, words: &'static [&'static str]) -> FieldInfo {
        self.words = words;
        self
    }

    /// Is called this in other tools.
    pub const fn aliases(mut self, aliases: &'static [&'static str]) -> FieldInfo {
        self.aliases = aliases;
        self
    }

    /// Only policies see it; it cannot be written.
    pub const fn view_only(mut self) -> FieldInfo {
        self.settable = false;
        self
    }

    /// Policies do not see it.
    pub const fn hidden(mut self) -> FieldInfo {
        self.viewable = false;
        self
    }

    /// Kept as an expression.
    pub const fn lazy(mut self) -> FieldInfo {
        self.lazy = true;
        self
    }

    /// Its use asks for `c`.
    pub const fn capability(mut self, c: Capability) -> FieldInfo {
        self.capability = Some(c);
        self
    }

    /// A few lines for an editor's hover: the field, its type and default,
    /// then its doc.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "`{}`: {} (default: {})\n\n{}",
            self.name,
            self.ty,
            self.default.text(),
            self.doc
        );
        if !self.words.is_empty() {
            let words: Vec<String> = self.words.iter().map(|w| format!("`{w}`")).collect();
            s.push_str(&format!("\n\nValues: {}.", words.join(", ")));
        }
        if let Some(c) = self.capability {
            s.push_str(&format!(
                "\n\nUses the `{c}` capability: a build that does not enforce it warns ({}).",
                c.code()
            ));
        }
        s
    }
}

/// The fields of a block, in table order (settable and view-only).
pub fn fields(kind: BlockKind) -> Vec<&'static FieldInfo> {
    fn infos<D, M>(def: &'static BlockDef<D, M>) -> Vec<&'static FieldInfo> {
        debug_assert!(
            def.fields
                .iter()
                .all(|f| f.decode.is_some() == f.info.settable)
        );
        def.fields.iter().map(|f| &f.info).collect()
    }
    match kind {
        BlockKind::Environment => infos(&ENVIRONMENT),
        BlockKind::Image => infos(&IMAGE),
        BlockKind::Service => infos(&SERVICE),
        BlockKind::Health => infos(&service::HEALTH),
        BlockKind::Rollout => infos(&service::ROLLOUT),
        BlockKind::Rolling => infos(&service::ROLLING),
        BlockKind::BlueGreen => infos(&service::BLUE_GREEN),
        BlockKind::Canary => infos(&service::CANARY),
        BlockKind::Resources => infos(&service::RESOURCES),
        BlockKind::Autoscale => infos(&service::AUTOSCALE),
        BlockKind::Mount => infos(&service::MOUNT),
        BlockKind::Endpoint => infos(&ENDPOINT),
        BlockKind::Rule => infos(&RULE),
        BlockKind::Variable => infos(&VARIABLE),
        BlockKind::Volume => infos(&VOLUME),
        BlockKind::Notify => infos(&NOTIFY),
        BlockKind::Policy => infos(&POLICY),
    }
}

/// One field of a block.
pub fn field(kind: BlockKind, name: &str) -> Option<&'static FieldInfo> {
    fields(kind).into_iter().find(|f| f.name == name)
}

/// The public description of a block (same as [`BlockKind::info`]).
pub fn block(kind: BlockKind) -> &'static BlockInfo {
    kind.info()
}

/// Every enum word some field takes, plus the words policies see in views
/// (a variable's `source`). Bare words outside this list are unknown names.
pub fn enum_words() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for kind in BlockKind::ALL {
        for f in fields(*kind) {
            for w in f.words {
                if !out.contains(w) {
                    out.push(w);
                }
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------
// What the compiler does with a table

/// Decodes a field's value into the draft of its block (`None`: the
/// problem has been reported).
pub(crate) type DecodeFn<D> = fn(&mut Cx<'_, '_>, &SV, &mut D) -> Option<()>;
/// A field of a compiled declaration as a policy sees it.
pub(crate) type ViewFn<M> = fn(&M, &Environment) -> Value;
/// Checks a block as a whole once its fields are decoded (settings that
/// contradict each other, statements): `None` if it cannot be used.
pub(crate) type FinishFn<D> =
    fn(&mut Cx<'_, '_>, &Record, crate::Span, &What<'_>, &mut D) -> Option<()>;

/// One entry of a table: the public [`FieldInfo`] and what the compiler
/// does with the field. `D` is the draft the block is decoded into, `M` the
/// IR type policies read.
pub(crate) struct FieldDef<D: 'static, M: 'static> {
    pub info: FieldInfo,
    pub decode: Option<DecodeFn<D>>,
    pub view: Option<ViewFn<M>>,
}

/// The table of one block.
pub(crate) struct BlockDef<D: 'static, M: 'static> {
    pub fields: &'static [FieldDef<D, M>],
    pub finish: Option<FinishFn<D>>,
}

/// What decoding needs besides the value: the evaluator (diagnostics,
/// declared names), the environment's defaults, what the build has, and
/// where uses of capabilities are recorded.
pub(crate) struct Cx<'e, 'p> {
    pub ev: &'e mut Eval<'p>,
    pub default_provider: ProviderKind,
    pub providers: &'e ProviderSet,
    pub uses: &'e mut Uses,
    pub loader: &'e dyn crate::Loader,
}

/// Where capabilities are asked for, per capability: how many times, and
/// the first few places.
#[derive(Debug, Default)]
pub(crate) struct Uses {
    pub by: std::collections::BTreeMap<Capability, (usize, Vec<(crate::Span, String)>)>,
}

/// How many places a "not enforced" warning points at.
pub(crate) const USES_SHOWN: usize = 4;

impl Uses {
    pub fn add(&mut self, c: Capability, span: crate::Span, what: impl FnOnce() -> String) {
        let entry = self.by.entry(c).or_default();
        entry.0 += 1;
        if entry.1.len() < USES_SHOWN {
            entry.1.push((span, what()));
        }
    }
}

/// What a block describes, for messages (formatted only when one is needed).
pub(crate) enum What<'a> {
    Static(&'static str),
    Owned(String),
    Decl(Kind, &'a str),
}

impl fmt::Display for What<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            What::Static(s) => f.write_str(s),
            What::Owned(s) => f.write_str(s),
            What::Decl(k, n) => write!(f, "{k} `{n}`"),
        }
    }
}

impl<D, M> BlockDef<D, M> {
    /// The entry for a key.
    pub fn get(&self, name: &str) -> Option<&'static FieldDef<D, M>> {
        self.fields.iter().find(|f| f.info.name == name)
    }

    /// Decodes `rec` into `draft`: every field through its entry (unknown
    /// fields refused with a suggestion), required fields that are missing
    /// reported (unless the block had syntax errors), then the block's
    /// `finish` check. `present` names lazy fields the caller took out of
    /// the record (a policy's `check`). Returns whether the block can be
    /// used.
    pub fn decode(
        &'static self,
        cx: &mut Cx<'_, '_>,
        rec: &Record,
        at: crate::Span,
        what: &What<'_>,
        draft: &mut D,
        present: &[&str],
    ) -> bool {
        let mut ok = true;
        for f in rec.fields() {
            let Some((def, decode)) = self
                .get(&f.key)
                .and_then(|d| d.decode.map(|decode| (d, decode)))
            else {
                unknown_field(cx.ev, self, f, what);
                continue;
            };
            if is_poisoned(&f.value) {
                ok = false;
                continue;
            }
            // An empty list (`mounts = []`) asks for nothing.
            let empty = matches!(&f.value.v, Value::List(l) if l.is_empty());
            if let (Some(c), false) = (def.info.capability, empty) {
                cx.uses
                    .add(c, f.key_span, || format!("`{}` of {what}", f.key));
            }
            if decode(cx, &f.value, draft).is_none() {
                ok = false;
            }
        }
        if !rec.partial {
            for def in self.fields {
                if def.info.default == FieldDefault::Required
                    && def.info.settable
                    && rec.position(def.info.name).is_none()
                    && !present.contains(&def.info.name)
                {
                    ok = false;
                    missing(
                        cx.ev,
                        at,
                        what,
                        def.info.name,
                        &format!("{}, e.g. `{}`", def.info.doc, def.info.example),
                    );
                }
            }
        }
        if ok && let Some(finish) = self.finish {
            ok = finish(cx, rec, at, what, draft).is_some();
        }
        ok
    }

    /// What a policy reads for `field` of a compiled `m`.
    pub fn view(&self, m: &M, env: &Environment, field: &str) -> Option<Value> {
        let def = self.get(field)?;
        if !def.info.viewable {
            return None;
        }
        def.view.map(|view| view(m, env))
    }

    /// The fields policies can read (after `name`, which every declaration
    /// has).
    pub fn view_names(&self) -> Vec<&'static str> {
        let mut names = vec!["name"];
        names.extend(
            self.fields
                .iter()
                .filter(|f| f.info.viewable && f.view.is_some())
                .map(|f| f.info.name),
        );
        names
    }

    /// A record of every viewable field of `m` (nested blocks in views).
    pub fn view_record(&self, m: &M, env: &Environment) -> Value {
        let mut r = Record::default();
        r.reserve(self.fields.len());
        for f in self.fields {
            if let (true, Some(view)) = (f.info.viewable, f.view) {
                // Keys of a table are unique: no lookup before adding.
                r.push(Field {
                    key: std::rc::Rc::from(f.info.name),
                    key_span: crate::Span::default(),
                    value: SV {
                        v: view(m, env),
                        span: crate::Span::default(),
                    },
                    from_spread: false,
                });
            }
        }
        Value::Record(std::rc::Rc::new(r))
    }

    fn settable_names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.fields
            .iter()
            .filter(|f| f.decode.is_some())
            .map(|f| f.info.name)
    }
}

fn unknown_field<D, M>(ev: &mut Eval<'_>, def: &BlockDef<D, M>, f: &Field, what: &What<'_>) {
    let hint = did_you_mean(&f.key, def.settable_names()).or_else(|| {
        def.fields
            .iter()
            .find(|d| d.decode.is_some() && d.info.aliases.contains(&&*f.key))
            .map(|d| d.info.name.to_owned())
    });
    let d = Diagnostic::error(
        Code::UnknownField,
        f.key_span,
        format!("unknown field `{}` in {what}", f.key),
    )
    .with_primary("unknown field");
    let d = match hint {
        Some(h) => d.with_help(format!("did you mean `{h}`?")),
        None => d.with_help(format!(
            "the fields are: {}",
            def.settable_names()
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

// ---------------------------------------------------------------------------
// Helpers for view functions

pub(crate) mod view {
    use crate::value::{Kind, Record, SV, Value};
    use glint_model::{Millis, Name};
    use std::collections::BTreeMap;
    use std::rc::Rc;

    pub fn s(x: &str) -> Value {
        Value::Str(Rc::from(x))
    }
    pub fn sym(x: &str) -> Value {
        Value::Sym(Rc::from(x))
    }
    pub fn int(x: impl Into<i64>) -> Value {
        Value::Int(x.into())
    }
    pub fn dur(m: Millis) -> Value {
        Value::Duration(m.0)
    }
    pub fn opt(v: Option<Value>) -> Value {
        v.unwrap_or(Value::None)
    }
    pub fn lst(items: Vec<Value>) -> Value {
        Value::List(Rc::new(
            items
                .into_iter()
                .map(|v| SV {
                    v,
                    span: crate::Span::default(),
                })
                .collect(),
        ))
    }
    pub fn strs(items: &[String]) -> Value {
        lst(items.iter().map(|x| s(x)).collect())
    }
    pub fn reference(kind: Kind, n: &Name) -> Value {
        Value::Ref(kind, Rc::from(n.as_str()))
    }
    pub fn refs(kind: Kind, names: &[Name]) -> Value {
        lst(names.iter().map(|n| reference(kind, n)).collect())
    }
    pub fn string_map(m: &BTreeMap<String, String>) -> Value {
        let mut r = Record::default();
        for (k, v) in m {
            r.set(k, s(v), crate::Span::default());
        }
        Value::Record(Rc::new(r))
    }
}

/// Decodes a provider word and checks that this build has it.
pub(crate) fn provider(cx: &mut Cx<'_, '_>, v: &SV) -> Option<ProviderKind> {
    let kind = match crate::decode::enum_word(cx.ev, v, &["process", "docker", "simulated", "aws"])?
    {
        "docker" => ProviderKind::Docker,
        "aws" => ProviderKind::Aws,
        "simulated" => ProviderKind::Simulated,
        _ => ProviderKind::Process,
    };
    if !cx.providers.contains(kind) {
        let have: Vec<String> = cx.providers.iter().map(|p| format!("`{p}`")).collect();
        let help = if have.is_empty() {
            "this build runs no instances at all".to_owned()
        } else {
            format!(
                "its instances could never be launched; use {}",
                have.join(" or ")
            )
        };
        cx.ev.diags.push(
            Diagnostic::error(
                Code::ProviderUnavailable,
                v.span,
                format!("this build of glint has no `{kind}` provider"),
            )
            .with_primary("not available in this build")
            .with_help(help),
        );
        return None;
    }
    Some(kind)
}
