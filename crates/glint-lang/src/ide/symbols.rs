//! One file's definitions and references, from its syntax tree.
//!
//! Names resolve as the evaluator resolves them (`eval.rs::lookup`): the
//! innermost local (a function parameter, a `for` variable, a quantifier
//! variable) first, then the file's top-level `let`, `fn` and import
//! aliases (the first of a duplicated name wins, as in the compiler), and
//! otherwise a built-in, a declaration kind (`service` in `service.db`) or
//! a bare word — which are not references. `kind.NAME` and
//! `kind["NAME"]` (a literal string) are references to declarations,
//! which the whole environment shares; `alias.NAME` is a reference to a
//! member of an imported module.
//!
//! A declaration named by an interpolated string (`service "worker-${q}"`
//! inside a `for`) has a [`NameTemplate`]: `service.worker-emails` matches
//! it without evaluating the loop.

use crate::ast::{self, Block, DeclName, EntryKind, Expr, ExprKind, Item, ItemKind, StrSeg};
use crate::source::{FileId, Span};
use crate::value::Kind;
use std::collections::HashMap;

/// What a definition is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefKind {
    /// `service web { ... }` and the other declaration kinds.
    Decl(Kind),
    /// `let name = ...` at the top level.
    Let,
    /// `fn name(...) = ...`
    Fn,
    /// A function parameter.
    Param,
    /// The variable of `for x in xs { ... }`.
    ForVar,
    /// The variable of `all x in xs: ...` / `any x in xs: ...`.
    QuantVar,
    /// `import "path" [as alias]`: the module's name in this file.
    Import,
}

impl DefKind {
    /// How the kind is called in hovers and outlines.
    pub fn describe(self) -> &'static str {
        match self {
            DefKind::Decl(k) => k.keyword(),
            DefKind::Let => "let binding",
            DefKind::Fn => "function",
            DefKind::Param => "parameter",
            DefKind::ForVar => "`for` variable",
            DefKind::QuantVar => "quantifier variable",
            DefKind::Import => "imported module",
        }
    }
}

/// A part of a declaration name written as an interpolated string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplatePart {
    /// Literal text.
    Lit(String),
    /// `${ ... }`: any non-empty text.
    Hole,
}

/// A declaration name with interpolations (`"worker-${queue}"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameTemplate {
    /// Its parts, in order.
    pub parts: Vec<TemplatePart>,
}

impl NameTemplate {
    /// Whether the name could be produced by the template (each hole
    /// stands for one or more characters).
    pub fn matches(&self, name: &str) -> bool {
        fn go(parts: &[TemplatePart], s: &str) -> bool {
            match parts.split_first() {
                None => s.is_empty(),
                Some((TemplatePart::Lit(l), rest)) => {
                    s.strip_prefix(l.as_str()).is_some_and(|t| go(rest, t))
                }
                Some((TemplatePart::Hole, rest)) => {
                    // Bounded by the name's length: names are short.
                    (1..=s.len())
                        .filter(|i| s.is_char_boundary(*i))
                        .any(|i| go(rest, &s[i..]))
                }
            }
        }
        go(&self.parts, name)
    }
}

/// An import: which file it loads and how it is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportInfo {
    /// The loader key of the imported file (`lib/templates.glint`), or the
    /// `std:` name.
    pub key: String,
    /// The path string (with its quotes).
    pub path_span: Span,
    /// Whether it has `as alias` (else the name is the file's stem).
    pub aliased: bool,
}

/// A definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Def {
    /// What it is.
    pub kind: DefKind,
    /// The name as written (the template text for a templated name,
    /// `worker-${queue}`).
    pub name: String,
    /// Where the name is (inside the quotes for a string name).
    pub name_span: Span,
    /// The whole item (declaration, binding, function, parameter).
    pub span: Span,
    /// For a declaration named by an interpolated string.
    pub template: Option<NameTemplate>,
    /// For locals, where they are visible; `None` for top-level names and
    /// declarations.
    pub scope: Option<Span>,
    /// For imports.
    pub import: Option<ImportInfo>,
    /// One line to show: `service db`, `fn backend(image: image, ...)`,
    /// `let region = "eu-west-1"`.
    pub detail: String,
    /// The comments written just before it (without the comment markers).
    pub docs: String,
}

/// What a reference points to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefTarget {
    /// A definition of the same file (index into [`FileIndex::defs`]).
    Def(usize),
    /// A declaration of the environment, by kind and name.
    Decl(Kind, String),
    /// A member of an imported module: `import` is the index of the
    /// import's definition in this file.
    Member {
        /// The import's definition.
        import: usize,
        /// The member's name.
        name: String,
    },
}

/// A use of a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// The name itself (what a rename replaces): `db` in `service.db`.
    pub span: Span,
    /// The whole reference (`service.db`), for finding it under the cursor.
    pub full: Span,
    /// What it points to.
    pub target: RefTarget,
}

/// `...f(...)` written directly in a declaration's body: the function's
/// record is (part of) a declaration of `kind`, so its fields are that
/// kind's fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spread {
    /// The declaration kind it is spread into.
    pub kind: Kind,
    /// The function (or binding) spread.
    pub target: RefTarget,
}

/// One entry of an outline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutlineItem {
    /// Its name (`web`, `health`, `region`).
    pub name: String,
    /// What it is (a definition, or a field of a block).
    pub kind: OutlineKind,
    /// A short detail (`service`, the field's value if short).
    pub detail: String,
    /// The whole item.
    pub span: Span,
    /// Its name.
    pub name_span: Span,
    /// Its fields and nested items.
    pub children: Vec<OutlineItem>,
}

/// What an outline entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutlineKind {
    /// A definition.
    Def(DefKind),
    /// A `for` loop.
    For,
    /// A field of a block.
    Field,
}

/// The definitions, references and spreads of one file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileIndex {
    /// The file.
    pub file: FileId,
    /// Its key (as the compiler names it).
    pub key: String,
    /// Every definition, in source order of discovery.
    pub defs: Vec<Def>,
    /// Every resolved reference.
    pub refs: Vec<Reference>,
    /// Functions and bindings spread into declarations.
    pub spreads: Vec<Spread>,
    /// Top-level names (let, fn, import aliases) by name: index in `defs`.
    pub globals: HashMap<String, usize>,
}

impl FileIndex {
    /// Parses `text` (the file `key`, with id `file`) and indexes it.
    /// Syntax errors are ignored: what parsed is indexed.
    pub fn build(key: &str, text: &str, file: FileId) -> FileIndex {
        crate::with_stack(|| {
            let mut diags = Vec::new();
            let ast = crate::parser::parse_file(text, file, &mut diags);
            FileIndex::of(key, text, file, &ast)
        })
    }

    /// Indexes an already parsed file.
    pub fn of(key: &str, text: &str, file: FileId, ast: &ast::File) -> FileIndex {
        let mut w = Walker {
            text,
            out: FileIndex {
                file,
                key: key.to_owned(),
                ..FileIndex::default()
            },
            locals: Vec::new(),
            decl_kind: None,
        };
        w.globals(&ast.items);
        for item in &ast.items {
            w.item(item);
        }
        w.out
    }

    /// The outline of `text`: its top-level items, declarations with their
    /// fields (parsed again: editors ask for it less often than for the
    /// index).
    pub fn outline(text: &str, file: FileId) -> Vec<OutlineItem> {
        crate::with_stack(|| {
            let mut diags = Vec::new();
            let ast = crate::parser::parse_file(text, file, &mut diags);
            let ix = FileIndex::of("", text, file, &ast);
            let by_span: HashMap<Span, usize> = ix
                .defs
                .iter()
                .enumerate()
                .filter(|(_, d)| d.scope.is_none())
                .map(|(i, d)| (d.span, i))
                .collect();
            ast.items
                .iter()
                .filter_map(|i| outline_item(&ix, &by_span, text, i))
                .collect()
        })
    }

    /// The definition whose name is at `offset`.
    pub fn def_at(&self, offset: u32) -> Option<usize> {
        self.defs
            .iter()
            .position(|d| d.name_span.start <= offset && offset <= d.name_span.end)
    }

    /// The reference at `offset` (the innermost one).
    pub fn ref_at(&self, offset: u32) -> Option<&Reference> {
        self.refs
            .iter()
            .filter(|r| r.full.start <= offset && offset <= r.full.end)
            .min_by_key(|r| r.full.len())
    }

    /// The definitions visible at `offset`: the locals whose scope holds
    /// it (innermost first), then the top-level names.
    pub fn visible_at(&self, offset: u32) -> Vec<&Def> {
        let mut locals: Vec<&Def> = self
            .defs
            .iter()
            .filter(|d| {
                d.scope
                    .is_some_and(|s| s.start <= offset && offset <= s.end)
            })
            .collect();
        locals.sort_by_key(|d| std::cmp::Reverse(d.scope.map(|s| s.start)));
        let mut globals: Vec<(&String, &usize)> = self.globals.iter().collect();
        globals.sort();
        locals.extend(globals.into_iter().map(|(_, i)| &self.defs[*i]));
        locals
    }
}

struct Walker<'a> {
    text: &'a str,
    out: FileIndex,
    /// Locals in scope, innermost last: name and definition index.
    locals: Vec<(String, usize)>,
    /// The kind of the declaration whose body is being walked (directly).
    decl_kind: Option<Kind>,
}

/// The comments before an item, without their markers.
fn docs_of(trivia: &ast::Trivia) -> String {
    trivia
        .leading
        .iter()
        .map(|c| {
            let t = c.text.trim();
            let t = t.strip_prefix("//").unwrap_or(t);
            let t = t
                .strip_prefix("/*")
                .and_then(|t| t.strip_suffix("*/"))
                .unwrap_or(t);
            t.trim().to_owned()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The span inside the quotes of a string literal written without escapes
/// or interpolations, whose text is `lit`.
fn inner_span(text: &str, span: Span, lit: &str) -> Option<Span> {
    let inner = Span {
        file: span.file,
        start: span.start + 1,
        end: span.end.saturating_sub(1),
    };
    let raw = text.get(inner.start as usize..inner.end as usize)?;
    (raw == lit).then_some(inner)
}

/// The text of a literal string (no interpolation).
fn literal(segs: &[StrSeg]) -> Option<String> {
    let mut s = String::new();
    for seg in segs {
        match seg {
            StrSeg::Lit(l) => s.push_str(l),
            StrSeg::Interp(_) => return None,
        }
    }
    Some(s)
}

impl<'a> Walker<'a> {
    fn slice(&self, span: Span) -> &'a str {
        self.text
            .get(span.start as usize..span.end as usize)
            .unwrap_or("")
    }

    fn push(&mut self, d: Def) -> usize {
        self.out.defs.push(d);
        self.out.defs.len() - 1
    }

    /// The top-level names, defined first so that any item may use them.
    fn globals(&mut self, items: &[Item]) {
        for item in items {
            let docs = docs_of(&item.trivia);
            let (def, name) = match &item.kind {
                ItemKind::Let(l) => {
                    let (name, value) = (&l.name, &l.value);
                    let value_text = one_line(self.slice(value.span));
                    let detail = if value_text.len() <= 60 {
                        format!("let {} = {value_text}", name.name)
                    } else {
                        format!("let {}", name.name)
                    };
                    (
                        Def {
                            kind: DefKind::Let,
                            name: name.name.to_string(),
                            name_span: name.span,
                            span: item.span,
                            template: None,
                            scope: None,
                            import: None,
                            detail,
                            docs,
                        },
                        name.name.to_string(),
                    )
                }
                ItemKind::Fn(def) => {
                    let head = Span {
                        file: item.span.file,
                        start: item.span.start,
                        end: def.body.span.start.max(item.span.start),
                    };
                    let sig = one_line(self.slice(head));
                    let sig = sig.trim_end_matches('=').trim_end().to_owned();
                    (
                        Def {
                            kind: DefKind::Fn,
                            name: def.name.name.to_string(),
                            name_span: def.name.span,
                            span: item.span,
                            template: None,
                            scope: None,
                            import: None,
                            detail: sig,
                            docs,
                        },
                        def.name.name.to_string(),
                    )
                }
                ItemKind::Import(imp) => {
                    let (path, path_span, alias) = (&imp.path, &imp.path_span, &imp.alias);
                    let key = if path.starts_with("std:") {
                        path.clone()
                    } else {
                        crate::source::join_path(&self.out.key, path)
                    };
                    let (name, name_span) = match alias {
                        Some(a) => (a.name.to_string(), a.span),
                        None => (crate::module_alias(path), *path_span),
                    };
                    (
                        Def {
                            kind: DefKind::Import,
                            name: name.clone(),
                            name_span,
                            span: item.span,
                            template: None,
                            scope: None,
                            import: Some(ImportInfo {
                                key,
                                path_span: *path_span,
                                aliased: alias.is_some(),
                            }),
                            detail: one_line(self.slice(item.span)),
                            docs,
                        },
                        name,
                    )
                }
                _ => continue,
            };
            let i = self.push(def);
            self.out.globals.entry(name).or_insert(i);
        }
    }

    fn resolve(&self, name: &str) -> Option<usize> {
        self.locals
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, i)| *i)
            .or_else(|| self.out.globals.get(name).copied())
    }

    fn reference(&mut self, span: Span, full: Span, target: RefTarget) {
        self.out.refs.push(Reference { span, full, target });
    }

    fn item(&mut self, item: &Item) {
        match &item.kind {
            ItemKind::Import { .. } => {}
            ItemKind::Let(l) => self.expr(&l.value),
            ItemKind::Fn(def) => {
                let mark = self.locals.len();
                for p in &def.params {
                    let mut detail = p.name.name.to_string();
                    if let Some(t) = &p.ty {
                        detail.push_str(&format!(": {}", crate::eval::type_text(t)));
                    }
                    if let Some(d) = &p.default {
                        self.expr(d);
                        detail.push_str(&format!(" = {}", one_line(self.slice(d.span))));
                    }
                    let span = p
                        .default
                        .as_ref()
                        .map(|d| p.name.span.to(d.span))
                        .or_else(|| p.ty.as_ref().map(|t| p.name.span.to(t.span)))
                        .unwrap_or(p.name.span);
                    let i = self.push(Def {
                        kind: DefKind::Param,
                        name: p.name.name.to_string(),
                        name_span: p.name.span,
                        span,
                        template: None,
                        scope: Some(item.span),
                        import: None,
                        detail,
                        docs: String::new(),
                    });
                    self.locals.push((p.name.name.to_string(), i));
                }
                self.expr(&def.body);
                self.locals.truncate(mark);
            }
            ItemKind::Decl(d) => {
                let Some(kind) = Kind::from_keyword(&d.kind.name) else {
                    self.block(&d.body);
                    return;
                };
                let (name, name_span, template) = match &d.name {
                    DeclName::Ident(i) => (i.name.to_string(), i.span, None),
                    DeclName::Str(e) => {
                        self.expr(e);
                        match &e.kind {
                            ExprKind::Str(segs) => match literal(segs) {
                                Some(lit) => {
                                    let span =
                                        inner_span(self.text, e.span, &lit).unwrap_or(e.span);
                                    (lit, span, None)
                                }
                                None => {
                                    let parts = segs
                                        .iter()
                                        .map(|s| match s {
                                            StrSeg::Lit(l) => TemplatePart::Lit(l.to_string()),
                                            StrSeg::Interp(_) => TemplatePart::Hole,
                                        })
                                        .collect();
                                    let raw = self.slice(e.span);
                                    let shown = raw
                                        .strip_prefix('"')
                                        .and_then(|r| r.strip_suffix('"'))
                                        .unwrap_or(raw)
                                        .to_owned();
                                    (shown, e.span, Some(NameTemplate { parts }))
                                }
                            },
                            _ => (one_line(self.slice(e.span)), e.span, None),
                        }
                    }
                };
                self.push(Def {
                    kind: DefKind::Decl(kind),
                    detail: format!("{} {}", kind.keyword(), name),
                    name,
                    name_span,
                    span: item.span,
                    template,
                    scope: None,
                    import: None,
                    docs: docs_of(&item.trivia),
                });
                let outer = self.decl_kind.replace(kind);
                self.block(&d.body);
                self.decl_kind = outer;
            }
            ItemKind::For(f) => {
                let (var, iter, items) = (&f.var, &f.iter, &f.items);
                self.expr(iter);
                let i = self.push(Def {
                    kind: DefKind::ForVar,
                    name: var.name.to_string(),
                    name_span: var.span,
                    span: var.span.to(iter.span),
                    template: None,
                    scope: Some(item.span),
                    import: None,
                    detail: format!("for {} in {}", var.name, one_line(self.slice(iter.span))),
                    docs: String::new(),
                });
                self.locals.push((var.name.to_string(), i));
                for it in items {
                    self.item(it);
                }
                self.locals.pop();
            }
        }
    }

    /// A block; spreads directly in a declaration's body are recorded.
    fn block(&mut self, b: &Block) {
        let kind = self.decl_kind.take();
        for e in &b.entries {
            match &e.kind {
                EntryKind::Attr { value, .. } => self.expr(value),
                EntryKind::Block { body, .. } => self.block(body),
                EntryKind::Copy(pair) => {
                    self.expr(&pair.0);
                    self.expr(&pair.1);
                }
                EntryKind::Run(x) | EntryKind::Test(x) => self.expr(x),
                EntryKind::Spread(x) => {
                    let before = self.out.refs.len();
                    self.expr(x);
                    if let (Some(kind), ExprKind::Call(callee, _)) = (kind, &x.kind) {
                        // The callee's reference is the first one its walk
                        // recorded whose span ends where the callee does.
                        let target = self.out.refs[before..]
                            .iter()
                            .find(|r| r.full.end == callee.span.end)
                            .map(|r| r.target.clone());
                        if let Some(target) = target {
                            self.out.spreads.push(Spread { kind, target });
                        }
                    }
                }
            }
        }
        self.decl_kind = kind;
    }

    fn expr(&mut self, e: &Expr) {
        match &e.kind {
            ExprKind::Int(_)
            | ExprKind::Duration(_)
            | ExprKind::Size(_)
            | ExprKind::Ip(_)
            | ExprKind::Cidr(_)
            | ExprKind::Addr(_)
            | ExprKind::Digest(_)
            | ExprKind::Bool(_)
            | ExprKind::None
            | ExprKind::Error => {}
            ExprKind::Str(segs) => {
                for s in segs {
                    if let StrSeg::Interp(x) = s {
                        self.expr(x);
                    }
                }
            }
            ExprKind::Name(n) => {
                if let Some(i) = self.resolve(n) {
                    self.reference(e.span, e.span, RefTarget::Def(i));
                }
            }
            ExprKind::List(l) => {
                for it in &l.items {
                    self.expr(&it.expr);
                }
            }
            ExprKind::Record(b) => self.block(b),
            ExprKind::Tagged(tb) => self.block(&tb.1),
            ExprKind::Field(base, name) => {
                if let ExprKind::Name(n) = &base.kind {
                    match self.resolve(n) {
                        Some(i) => {
                            self.reference(base.span, base.span, RefTarget::Def(i));
                            if self.out.defs[i].kind == DefKind::Import {
                                self.reference(
                                    name.span,
                                    name.span,
                                    RefTarget::Member {
                                        import: i,
                                        name: name.name.to_string(),
                                    },
                                );
                            }
                        }
                        None => {
                            if let Some(kind) = Kind::from_keyword(n)
                                && !matches!(kind, Kind::Environment | Kind::Policy)
                            {
                                self.reference(
                                    name.span,
                                    base.span.to(name.span),
                                    RefTarget::Decl(kind, name.name.to_string()),
                                );
                            }
                        }
                    }
                } else {
                    self.expr(base);
                }
            }
            ExprKind::Index(base, idx) => {
                if let (ExprKind::Name(n), ExprKind::Str(segs)) = (&base.kind, &idx.kind)
                    && self.resolve(n).is_none()
                    && let Some(kind) = Kind::from_keyword(n)
                    && !matches!(kind, Kind::Environment | Kind::Policy)
                    && let Some(lit) = literal(segs)
                    && let Some(inner) = inner_span(self.text, idx.span, &lit)
                {
                    self.reference(inner, e.span, RefTarget::Decl(kind, lit));
                    return;
                }
                self.expr(base);
                self.expr(idx);
            }
            ExprKind::Call(callee, args) => {
                self.expr(callee);
                for a in args {
                    self.expr(&a.value);
                }
            }
            ExprKind::Unary(_, x) | ExprKind::Paren(x) => self.expr(x),
            ExprKind::Binary(_, l, r) => {
                self.expr(l);
                self.expr(r);
            }
            ExprKind::If(c, a, b) => {
                self.expr(c);
                self.expr(a);
                self.expr(b);
            }
            ExprKind::Quant {
                var, coll, body, ..
            } => {
                self.expr(coll);
                let i = self.push(Def {
                    kind: DefKind::QuantVar,
                    name: var.name.to_string(),
                    name_span: var.span,
                    span: var.span.to(coll.span),
                    template: None,
                    scope: Some(var.span.to(body.span)),
                    import: None,
                    detail: format!("{} in {}", var.name, one_line(self.slice(coll.span))),
                    docs: String::new(),
                });
                self.locals.push((var.name.to_string(), i));
                self.expr(body);
                self.locals.pop();
            }
        }
    }
}

/// The outline entry of a top-level (or `for`) item. `by_span` finds the
/// definition an item makes (by the item's span).
fn outline_item(
    ix: &FileIndex,
    by_span: &HashMap<Span, usize>,
    text: &str,
    item: &Item,
) -> Option<OutlineItem> {
    let def = by_span.get(&item.span).map(|i| &ix.defs[*i]);
    match &item.kind {
        ItemKind::Let { .. } | ItemKind::Fn(_) | ItemKind::Import { .. } => {
            def.map(|d| leaf(d, item.span))
        }
        ItemKind::Decl(decl) => {
            let d = def.filter(|d| matches!(d.kind, DefKind::Decl(_)))?;
            Some(OutlineItem {
                name: d.name.clone(),
                kind: OutlineKind::Def(d.kind),
                detail: decl.kind.name.to_string(),
                span: item.span,
                name_span: d.name_span,
                children: fields_outline(text, &decl.body, 0),
            })
        }
        ItemKind::For(f) => Some(OutlineItem {
            name: format!(
                "for {} in {}",
                f.var.name,
                one_line(
                    text.get(f.iter.span.start as usize..f.iter.span.end as usize)
                        .unwrap_or("")
                )
            ),
            kind: OutlineKind::For,
            detail: String::new(),
            span: item.span,
            name_span: f.var.span,
            children: f
                .items
                .iter()
                .filter_map(|i| outline_item(ix, by_span, text, i))
                .collect(),
        }),
    }
}

fn leaf(d: &Def, span: Span) -> OutlineItem {
    OutlineItem {
        name: d.name.clone(),
        kind: OutlineKind::Def(d.kind),
        detail: d.detail.clone(),
        span,
        name_span: d.name_span,
        children: Vec::new(),
    }
}

/// The fields of a block, nested blocks with their own fields.
fn fields_outline(text: &str, b: &Block, depth: usize) -> Vec<OutlineItem> {
    if depth > 8 {
        return Vec::new();
    }
    let mut out = Vec::new();
    for e in &b.entries {
        let (key, children, value) = match &e.kind {
            EntryKind::Attr { key, value } => {
                let children = match &value.kind {
                    ExprKind::Record(r) => fields_outline(text, r, depth + 1),
                    ExprKind::Tagged(tb) => fields_outline(text, &tb.1, depth + 1),
                    _ => Vec::new(),
                };
                (key, children, Some(value.span))
            }
            EntryKind::Block { key, body } => (key, fields_outline(text, body, depth + 1), None),
            _ => continue,
        };
        let detail = value
            .and_then(|s| text.get(s.start as usize..s.end as usize))
            .map(one_line)
            .filter(|v| v.len() <= 40)
            .unwrap_or_default();
        out.push(OutlineItem {
            name: key.name.to_string(),
            kind: OutlineKind::Field,
            detail,
            span: e.span,
            name_span: key.span,
            children,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(text: &str) -> FileIndex {
        FileIndex::build("main.glint", text, FileId(0))
    }

    fn at(text: &str, needle: &str, nth: usize) -> u32 {
        let mut from = 0;
        for _ in 0..nth {
            from = text[from..].find(needle).map(|i| from + i + 1).unwrap_or(0);
        }
        (from + text[from..].find(needle).unwrap_or(0)) as u32
    }

    #[test]
    fn declarations_lets_functions_and_imports_are_defined() {
        let src = "import \"lib/t.glint\" as tpl\nimport \"std:policies\"\n// The region.\nlet region = \"eu\"\nfn f(x: int = 1) = x\nservice web { instances = 1 }\n";
        let ix = index(src);
        let names: Vec<(&str, DefKind)> =
            ix.defs.iter().map(|d| (d.name.as_str(), d.kind)).collect();
        assert_eq!(
            names,
            vec![
                ("tpl", DefKind::Import),
                ("policies", DefKind::Import),
                ("region", DefKind::Let),
                ("f", DefKind::Fn),
                ("x", DefKind::Param),
                ("web", DefKind::Decl(Kind::Service)),
            ]
        );
        assert_eq!(
            ix.defs[0].import.as_ref().map(|i| i.key.as_str()),
            Some("lib/t.glint")
        );
        assert_eq!(ix.defs[2].docs, "The region.");
        assert_eq!(ix.defs[2].detail, "let region = \"eu\"");
        assert_eq!(ix.defs[3].detail, "fn f(x: int = 1)");
        assert_eq!(ix.defs[4].detail, "x: int = 1");
    }

    #[test]
    fn references_resolve_locals_before_globals() {
        let src = "let x = 1\nfn f(x: int) = x + 1\nlet y = x\n";
        let ix = index(src);
        let param = ix
            .defs
            .iter()
            .position(|d| d.kind == DefKind::Param)
            .unwrap_or(99);
        let global = ix.globals["x"];
        let in_fn = ix.ref_at(at(src, "x + 1", 0)).map(|r| r.target.clone());
        assert_eq!(in_fn, Some(RefTarget::Def(param)));
        let outside = ix.ref_at(at(src, "= x\n", 0) + 2).map(|r| r.target.clone());
        assert_eq!(outside, Some(RefTarget::Def(global)));
    }

    #[test]
    fn declaration_references_by_field_and_by_literal_index() {
        let src = "rule r {\n  from = service.api\n  to = service[\"db\"]\n}\nlet service_x = service[\"w-${1}\"]\n";
        let ix = index(src);
        let targets: Vec<RefTarget> = ix.refs.iter().map(|r| r.target.clone()).collect();
        assert_eq!(
            targets,
            vec![
                RefTarget::Decl(Kind::Service, "api".into()),
                RefTarget::Decl(Kind::Service, "db".into()),
            ]
        );
        // The rename span is the name only; the hit span the whole reference.
        let db = &ix.refs[1];
        assert_eq!(&src[db.span.start as usize..db.span.end as usize], "db");
        assert_eq!(
            &src[db.full.start as usize..db.full.end as usize],
            "service[\"db\"]"
        );
    }

    #[test]
    fn a_let_named_like_a_kind_shadows_the_namespace() {
        let src = "let service = { api = 1 }\nlet a = service.api\n";
        let ix = index(src);
        assert!(
            ix.refs.iter().all(|r| r.target == RefTarget::Def(0)),
            "{:?}",
            ix.refs
        );
    }

    #[test]
    fn module_members_and_spreads_are_recorded() {
        let src = "import \"lib/t.glint\" as tpl\nservice web {\n  ...tpl.backend(image.app)\n}\n";
        let ix = index(src);
        assert!(ix.refs.contains(&Reference {
            span: Span::new(
                FileId(0),
                at(src, "backend", 0) as usize,
                at(src, "backend", 0) as usize + 7
            ),
            full: Span::new(
                FileId(0),
                at(src, "backend", 0) as usize,
                at(src, "backend", 0) as usize + 7
            ),
            target: RefTarget::Member {
                import: 0,
                name: "backend".into()
            },
        }));
        assert_eq!(
            ix.spreads,
            vec![Spread {
                kind: Kind::Service,
                target: RefTarget::Member {
                    import: 0,
                    name: "backend".into()
                }
            }]
        );
    }

    #[test]
    fn templated_names_match_their_expansions() {
        let src = "for q in [\"a\", \"b\"] {\n  service \"worker-${q}\" { image = image.x }\n}\n";
        let ix = index(src);
        let d = ix
            .defs
            .iter()
            .find(|d| d.kind == DefKind::Decl(Kind::Service))
            .cloned()
            .unwrap_or_else(|| panic!("no service in {:?}", ix.defs));
        assert_eq!(d.name, "worker-${q}");
        let t = d.template.unwrap_or(NameTemplate { parts: vec![] });
        assert!(t.matches("worker-a"));
        assert!(t.matches("worker-emails"));
        assert!(!t.matches("worker-"));
        assert!(!t.matches("web"));
        // The for variable is referenced inside the name.
        assert!(ix.refs.iter().any(|r| r.target == RefTarget::Def(0)));
    }

    #[test]
    fn quantifier_variables_are_scoped_to_their_body() {
        let src = "policy p {\n  check = all s in services: s.instances > 1\n}\n";
        let ix = index(src);
        let s = ix.defs.iter().position(|d| d.kind == DefKind::QuantVar);
        assert!(s.is_some());
        let r = ix
            .ref_at(at(src, "s.instances", 0))
            .map(|r| r.target.clone());
        assert_eq!(r.zip(s).map(|(t, s)| t == RefTarget::Def(s)), Some(true));
        let visible: Vec<&str> = ix
            .visible_at(at(src, "s.instances", 0))
            .iter()
            .map(|d| d.name.as_str())
            .collect();
        assert_eq!(visible, vec!["s"]);
        assert!(ix.visible_at(0).is_empty());
    }

    #[test]
    fn the_outline_holds_declarations_and_their_fields() {
        let src = "let a = 1\nservice web {\n  instances = 2\n  health { http = \"/\" }\n}\nfor q in [\"x\"] {\n  service \"w-${q}\" { instances = 1 }\n}\n";
        let outline = FileIndex::outline(src, FileId(0));
        let names: Vec<&str> = outline.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names, vec!["a", "web", "for q in [\"x\"]"]);
        let web = &outline[1];
        let fields: Vec<&str> = web.children.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(fields, vec!["instances", "health"]);
        assert_eq!(web.children[1].children[0].name, "http");
        assert_eq!(outline[2].children[0].name, "w-${q}");
    }

    #[test]
    fn a_file_with_syntax_errors_is_still_indexed() {
        let src = "let a = 1\nservice web {\n  instances = \n}\nlet b = a\n";
        let ix = index(src);
        assert!(ix.globals.contains_key("a"));
        assert!(ix.globals.contains_key("b"));
        assert!(
            ix.refs
                .iter()
                .any(|r| r.target == RefTarget::Def(ix.globals["a"]))
        );
    }
}
