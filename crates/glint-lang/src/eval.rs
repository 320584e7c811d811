//! The evaluator: expressions to values.
//!
//! Total and deterministic by construction: no IO, no clock, no randomness;
//! no recursion (a function calling itself is an error); `let` bindings are
//! evaluated lazily with cycle detection; lists and strings are bounded in
//! size, and evaluation in steps and depth. Every failure is reported once as
//! a diagnostic and then propagates silently as `Err(Reported)`.

use crate::ast::{self, BinOp, Block, EntryKind, Expr, ExprKind, FnDef, StrSeg, TypeExpr, UnOp};
use crate::codes::Code;
use crate::diag::{Diagnostic, did_you_mean};
use crate::fxhash::FxMap;
use crate::source::{FileId, Span, join_path};
use crate::value::{Field, FnValue, Kind, Record, SV, Step, Value};
use std::rc::Rc;

/// Largest list or string evaluation may build.
pub const MAX_ELEMS: usize = 1_000_000;
/// Evaluation steps always allowed in one compilation; larger sources get
/// [`STEPS_PER_BYTE`] more per byte of source.
pub const BASE_STEPS: u64 = 5_000_000;
/// Extra evaluation steps allowed per byte of source.
pub const STEPS_PER_BYTE: u64 = 20;
/// Deepest evaluation nesting (expressions, calls and lazy bindings together).
pub const MAX_EVAL_DEPTH: usize = 1500;

/// A name bound at the top level of a module.
#[derive(Debug, Clone)]
pub enum Binding {
    /// `let` (index of the item in the module's file).
    Let(usize),
    /// `fn`
    Fn(Rc<FnDef>),
    /// `import ... as name`
    Module(usize),
}

/// One loaded file and its top-level names.
#[derive(Debug)]
pub struct Module {
    /// Its file.
    pub file: FileId,
    /// Its key (root-relative path, or `std:name`).
    pub key: String,
    /// The parsed file.
    pub ast: Rc<ast::File>,
    /// Top-level names.
    pub bindings: FxMap<String, Binding>,
}

/// All modules of a compilation.
#[derive(Debug, Default)]
pub struct Program {
    /// Modules by id.
    pub modules: Vec<Module>,
    /// File keys by file id (for resolving relative paths).
    pub file_keys: Vec<String>,
    /// File texts by file id (shared with the diagnostics' source map).
    pub file_texts: Vec<std::sync::Arc<str>>,
}

impl Program {
    /// The key of the file a span is in.
    pub fn file_key(&self, file: FileId) -> &str {
        self.file_keys
            .get(file.0 as usize)
            .map(String::as_str)
            .unwrap_or("")
    }
}

/// Names declared in the environment, per kind, with where each name is
/// written (to check references and to point at declarations).
#[derive(Debug, Default)]
pub struct DeclTable {
    by_kind: [FxMap<Rc<str>, Span>; 9],
}

impl DeclTable {
    fn slot(kind: Kind) -> usize {
        kind as usize
    }

    /// Records a declaration; returns the span of an earlier one with the
    /// same kind and name instead, if there is one.
    pub fn declare(&mut self, kind: Kind, name: Rc<str>, span: Span) -> Result<(), Span> {
        match self.by_kind[Self::slot(kind)].entry(name) {
            std::collections::hash_map::Entry::Occupied(e) => Err(*e.get()),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(span);
                Ok(())
            }
        }
    }

    /// Whether `kind name` is declared.
    pub fn contains(&self, kind: Kind, name: &str) -> bool {
        self.by_kind[Self::slot(kind)].contains_key(name)
    }

    /// Where `kind name` is declared.
    pub fn span(&self, kind: Kind, name: &str) -> Option<Span> {
        self.by_kind[Self::slot(kind)].get(name).copied()
    }

    /// The shared name and where it is declared.
    pub fn shared(&self, kind: Kind, name: &str) -> Option<(Rc<str>, Span)> {
        self.by_kind[Self::slot(kind)]
            .get_key_value(name)
            .map(|(n, s)| (n.clone(), *s))
    }

    /// The declared names of a kind (in no particular order).
    pub fn names(&self, kind: Kind) -> impl Iterator<Item = &str> {
        self.by_kind[Self::slot(kind)].keys().map(|n| &**n)
    }
}

/// What policies see of the compiled declarations: the lists behind
/// `services`, `rules`, ... and the fields of each declaration, read through
/// references. The evaluator only knows this interface; the policy phase
/// supplies it (`crate::views`), so that evaluation does not depend on the
/// lowering that built the declarations.
pub trait DeclViews {
    /// The list behind `services`, `rules`, ... (references to every
    /// declaration of `kind`).
    fn list(&self, kind: Kind) -> Value;
    /// One field of a declaration (`None`: no such declaration or field).
    fn field(&self, kind: Kind, name: &str, field: &str) -> Option<Value>;
    /// The fields a policy can read from a declaration of `kind`.
    fn field_names(&self, kind: Kind) -> Vec<&'static str>;
}

enum LetState {
    InProgress,
    Done(SV),
    Failed,
}

/// Lexical scope: the module and the local variables (parameters, `for` and
/// quantifier variables).
#[derive(Debug, Clone)]
pub struct Scope {
    /// The module whose bindings are visible.
    pub module: usize,
    /// Locals, innermost last.
    pub locals: Vec<(Rc<str>, Value)>,
}

impl Scope {
    /// A scope with no locals.
    pub fn new(module: usize) -> Scope {
        Scope {
            module,
            locals: Vec::new(),
        }
    }
}

/// Evaluation state.
pub struct Eval<'p> {
    /// The program.
    pub prog: &'p Program,
    /// Diagnostics found so far.
    pub diags: Vec<Diagnostic>,
    /// Declared names (set once declarations are collected).
    pub decls: Option<Rc<DeclTable>>,
    /// Views of the compiled declarations (set for the policy phase).
    pub views: Option<Box<dyn DeclViews>>,
    /// Hints for unknown names that evaluated to bare words, by span.
    pub sym_hints: FxMap<Span, Option<String>>,
    lets: FxMap<(usize, usize), LetState>,
    active_fns: Vec<*const FnDef>,
    steps: u64,
    /// The most steps this compilation may take.
    pub max_steps: u64,
    depth: usize,
    steps_reported: bool,
}

/// A problem that has already been reported as a diagnostic: callers stop
/// evaluating the affected value and report nothing more about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reported;

/// The result of an evaluation step.
pub type R<T> = Result<T, Reported>;

pub(crate) const BUILTINS: &[&str] = &[
    "len", "ip", "cidr", "addr", "string", "keys", "range", "archive", "min", "max",
];

/// Words that are enum values somewhere in the schema; never "unknown names".
pub const ENUM_WORDS: &[&str] = &[
    "scratch",
    "process",
    "docker",
    "simulated",
    "aws",
    "http",
    "tcp",
    "udp",
    "replace",
    "report",
    "error",
    "warning",
    "rolling",
    "blue_green",
    "canary",
    "literal",
    "secret",
    "runtime",
    "cpu",
    "in_flight",
    "requests_per_second",
    "latency",
    "webhook",
    "slack",
    "pagerduty",
    "incident",
    "rollout_failed",
    "rollback",
];

impl<'p> Eval<'p> {
    /// A fresh evaluator over `prog`.
    pub fn new(prog: &'p Program) -> Eval<'p> {
        Eval {
            prog,
            diags: Vec::new(),
            decls: None,
            views: None,
            sym_hints: FxMap::default(),
            lets: FxMap::default(),
            active_fns: Vec::new(),
            steps: 0,
            max_steps: BASE_STEPS.saturating_add(
                prog.file_texts
                    .iter()
                    .map(|t| t.len() as u64)
                    .sum::<u64>()
                    .saturating_mul(STEPS_PER_BYTE),
            ),
            depth: 0,
            steps_reported: false,
        }
    }

    fn err(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    fn step(&mut self, span: Span) -> R<()> {
        self.steps += 1;
        if self.steps > self.max_steps {
            if !self.steps_reported {
                self.steps_reported = true;
                self.err(
                    Diagnostic::error(Code::ValueTooLarge, span, "evaluation takes too many steps")
                        .with_primary(format!("gave up after {} steps here", self.max_steps))
                        .with_help("this usually means nested quantifiers or `range` over very large lists"),
                );
            }
            return Err(Reported);
        }
        Ok(())
    }

    fn enter(&mut self, span: Span) -> R<()> {
        self.depth += 1;
        if self.depth > MAX_EVAL_DEPTH {
            self.depth -= 1;
            self.err(
                Diagnostic::error(Code::TooDeep, span, "evaluation nested too deeply")
                    .with_primary(format!("more than {MAX_EVAL_DEPTH} nested evaluations"))
                    .with_help("a very long chain of bindings or function calls; shorten it"),
            );
            return Err(Reported);
        }
        Ok(())
    }

    // ----- names -------------------------------------------------------

    /// The value of a top-level `let` of a module (evaluated on first use).
    pub fn let_value(&mut self, module: usize, item: usize, use_span: Span) -> R<SV> {
        match self.lets.get(&(module, item)) {
            Some(LetState::Done(v)) => return Ok(v.clone()),
            Some(LetState::Failed) => return Err(Reported),
            Some(LetState::InProgress) => {
                let (name, span) = self.let_name(module, item);
                self.err(
                    Diagnostic::error(
                        Code::BindingCycle,
                        use_span,
                        format!("`{name}` depends on itself"),
                    )
                    .with_primary(format!("`{name}` is used here while it is being computed"))
                    .with_label(span, format!("`{name}` is defined here"))
                    .with_help("break the cycle: one of the bindings must not refer back"),
                );
                self.lets.insert((module, item), LetState::Failed);
                return Err(Reported);
            }
            None => {}
        }
        let prog = self.prog;
        let ast::ItemKind::Let(l) = &prog.modules[module].ast.items[item].kind else {
            return Err(Reported);
        };
        let ast::LetItem { value, ty, .. } = &**l;
        self.lets.insert((module, item), LetState::InProgress);
        let r = self.enter(value.span).and_then(|()| {
            let r = self.eval(value, &mut Scope::new(module));
            self.depth -= 1;
            r
        });
        let r = r.and_then(|v| match ty {
            Some(t) => self.check_type(v, t, "binding"),
            None => Ok(v),
        });
        match &r {
            Ok(v) => {
                // A cycle detected deeper may have marked this binding failed.
                if matches!(self.lets.get(&(module, item)), Some(LetState::Failed)) {
                    return Err(Reported);
                }
                self.lets.insert((module, item), LetState::Done(v.clone()));
            }
            Err(Reported) => {
                self.lets.insert((module, item), LetState::Failed);
            }
        }
        r
    }

    fn let_name(&self, module: usize, item: usize) -> (String, Span) {
        match &self.prog.modules[module].ast.items[item].kind {
            ast::ItemKind::Let(l) => (l.name.name.to_string(), l.name.span),
            _ => (String::new(), Span::default()),
        }
    }

    fn lookup(&mut self, name: &str, span: Span, scope: &Scope) -> R<Value> {
        if let Some((_, v)) = scope.locals.iter().rev().find(|(n, _)| &**n == name) {
            return Ok(v.clone());
        }
        let prog = self.prog;
        match prog.modules[scope.module].bindings.get(name) {
            Some(Binding::Let(item)) => return Ok(self.let_value(scope.module, *item, span)?.v),
            Some(Binding::Fn(def)) => {
                return Ok(Value::Func(FnValue {
                    def: def.clone(),
                    module: scope.module,
                }));
            }
            Some(Binding::Module(m)) => return Ok(Value::Module(*m)),
            None => {}
        }
        if let Some(b) = BUILTINS.iter().find(|b| **b == name) {
            return Ok(Value::Builtin(b));
        }
        if let Some(k) = Kind::from_keyword(name) {
            return Ok(Value::Namespace(k));
        }
        if let Some(k) = Kind::from_plural(name) {
            if let Some(views) = &self.views {
                return Ok(views.list(k));
            }
            self.err(
                Diagnostic::error(
                    Code::UnknownName,
                    span,
                    format!("`{name}` is only available in policies"),
                )
                .with_primary("used outside a policy check")
                .with_help(format!(
                    "`{name}` lists the compiled declarations; use it in a `policy` block's `check`"
                )),
            );
            return Err(Reported);
        }
        // A bare word: an enum value, or a typo (decided where it is used).
        if !ENUM_WORDS.contains(&name) {
            let hint = {
                let locals = scope.locals.iter().map(|(n, _)| &**n);
                let globals = prog.modules[scope.module]
                    .bindings
                    .keys()
                    .map(String::as_str);
                did_you_mean(name, locals.chain(globals).chain(BUILTINS.iter().copied()))
            };
            self.sym_hints.insert(span, hint);
        }
        Ok(Value::Sym(Rc::from(name)))
    }

    /// Reports a bare word used where a value of another type was needed.
    pub fn unknown_name(&mut self, name: &str, span: Span, expected: &str) {
        let hint = self.sym_hints.get(&span).cloned().flatten();
        let d = Diagnostic::error(Code::UnknownName, span, format!("unknown name `{name}`"))
            .with_primary(if expected.is_empty() {
                "not defined".to_owned()
            } else {
                format!("expected {expected}; no binding has this name")
            });
        let d = match hint {
            Some(h) => d.with_help(format!("did you mean `{h}`?")),
            None => d.with_help(format!(
                "define it with `let {name} = ...`, or if you meant text, write \"{name}\""
            )),
        };
        self.err(d);
    }

    // ----- expressions --------------------------------------------------

    /// Evaluates an expression.
    pub fn eval(&mut self, e: &Expr, scope: &mut Scope) -> R<SV> {
        self.step(e.span)?;
        self.enter(e.span)?;
        let r = self.eval_inner(e, scope);
        self.depth -= 1;
        r.map(|v| SV { v, span: e.span })
    }

    fn eval_inner(&mut self, e: &Expr, scope: &mut Scope) -> R<Value> {
        Ok(match &e.kind {
            ExprKind::Int(i) => Value::Int(*i),
            ExprKind::Duration(d) => Value::Duration(*d),
            ExprKind::Size(s) => Value::Size(*s),
            ExprKind::Ip(a) => Value::Ip(*a),
            ExprKind::Cidr(c) => Value::Cidr(*c),
            ExprKind::Addr(a) => Value::Addr(*a),
            ExprKind::Digest(d) => Value::Digest(Rc::new(d.clone())),
            ExprKind::Bool(b) => Value::Bool(*b),
            ExprKind::None => Value::None,
            ExprKind::Error => return Err(Reported),
            ExprKind::Str(segs) => {
                if let [StrSeg::Lit(s)] = segs.as_slice() {
                    return Ok(Value::Str(s.clone()));
                }
                let mut out = String::new();
                for seg in segs {
                    match seg {
                        StrSeg::Lit(s) => out.push_str(s),
                        StrSeg::Interp(inner) => {
                            let v = self.eval(inner, scope)?;
                            // `"${regoin}"`: a bare word that names nothing
                            // is a typo, not text.
                            if let Value::Sym(s) = &v.v
                                && !ENUM_WORDS.contains(&&**s)
                            {
                                let s = s.clone();
                                self.unknown_name(&s, v.span, "a value to put into the string");
                                return Err(Reported);
                            }
                            match v.v.to_text() {
                                Some(t) => out.push_str(&t),
                                None => {
                                    if let Value::Sym(s) = &v.v {
                                        self.unknown_name(s, v.span, "a value");
                                        return Err(Reported);
                                    }
                                    self.err(
                                        Diagnostic::error(
                                            Code::TypeMismatch,
                                            inner.span,
                                            format!(
                                                "cannot put {} into a string",
                                                crate::value::article(&v.v.type_name())
                                            ),
                                        )
                                        .with_primary(format!(
                                            "this is {}",
                                            crate::value::article(&v.v.type_name())
                                        ))
                                        .with_help(
                                            "interpolate a field of it instead, e.g. `${x.name}`",
                                        ),
                                    );
                                    return Err(Reported);
                                }
                            }
                        }
                    }
                    if out.len() > MAX_ELEMS {
                        return self.too_large(e.span, "string");
                    }
                }
                Value::Str(Rc::from(out))
            }
            ExprKind::Name(n) => self.lookup(n, e.span, scope)?,
            ExprKind::List(l) => {
                let items = &l.items;
                let mut out = Vec::with_capacity(items.len());
                let mut failed = false;
                for item in items {
                    match self.eval(&item.expr, scope) {
                        Ok(v) => out.push(v),
                        Err(Reported) => failed = true,
                    }
                }
                if failed {
                    return Err(Reported);
                }
                Value::List(Rc::new(out))
            }
            ExprKind::Record(b) => Value::Record(Rc::new(self.eval_block(b, scope, &[])?.0)),
            ExprKind::Tagged(tb) => Value::Tagged(
                Rc::clone(&tb.0.name),
                Rc::new(self.eval_block(&tb.1, scope, &[])?.0),
            ),
            ExprKind::Paren(inner) => self.eval(inner, scope)?.v,
            ExprKind::Field(base, name) => {
                let b = self.eval(base, scope)?;
                self.field(b, &name.name, name.span)?
            }
            ExprKind::Index(base, idx) => {
                let b = self.eval(base, scope)?;
                let i = self.eval(idx, scope)?;
                self.index(b, i, e.span)?
            }
            ExprKind::Call(callee, args) => {
                let f = self.eval(callee, scope)?;
                let mut vals = Vec::with_capacity(args.len());
                let mut failed = false;
                for a in args {
                    match self.eval(&a.value, scope) {
                        Ok(v) => vals.push((a.name.clone(), v)),
                        Err(Reported) => failed = true,
                    }
                }
                if failed {
                    return Err(Reported);
                }
                self.call(f, vals, e.span, callee.span)?
            }
            ExprKind::Unary(op, inner) => {
                let v = self.eval(inner, scope)?;
                match (op, &v.v) {
                    (UnOp::Neg, Value::Int(i)) => match i.checked_neg() {
                        Some(n) => Value::Int(n),
                        None => return self.overflow(e.span),
                    },
                    (UnOp::Not, Value::Bool(b)) => Value::Bool(!b),
                    (_, Value::Sym(s)) if !ENUM_WORDS.contains(&&**s) => {
                        let s = s.clone();
                        self.unknown_name(&s, v.span, "");
                        return Err(Reported);
                    }
                    _ => {
                        let (opname, want) = match op {
                            UnOp::Neg => ("-", "an int"),
                            UnOp::Not => ("not", "a bool"),
                        };
                        self.err(
                            Diagnostic::error(
                                Code::OperatorType,
                                e.span,
                                format!(
                                    "cannot apply `{opname}` to {}",
                                    crate::value::article(&v.v.type_name())
                                ),
                            )
                            .with_primary(format!("`{opname}` needs {want}"))
                            .with_label(
                                v.span,
                                format!("this is {}", crate::value::article(&v.v.type_name())),
                            ),
                        );
                        return Err(Reported);
                    }
                }
            }
            ExprKind::Binary(op, l, r) => self.binary(*op, l, r, e.span, scope)?,
            ExprKind::If(c, a, b) => {
                let cv = self.eval(c, scope)?;
                match cv.v {
                    Value::Bool(true) => self.eval(a, scope)?.v,
                    Value::Bool(false) => self.eval(b, scope)?.v,
                    other => {
                        self.mismatch(
                            &other,
                            c.span,
                            "bool",
                            "an `if` condition must be true or false",
                        );
                        return Err(Reported);
                    }
                }
            }
            ExprKind::Quant {
                all,
                var,
                coll,
                body,
            } => {
                let c = self.eval(coll, scope)?;
                let Value::List(items) = &c.v else {
                    self.mismatch(
                        &c.v,
                        coll.span,
                        "list",
                        "quantifiers range over lists, such as `services`",
                    );
                    return Err(Reported);
                };
                let mut result = *all;
                for item in items.iter() {
                    scope.locals.push((var.name.clone(), item.v.clone()));
                    let r = self.eval(body, scope);
                    scope.locals.pop();
                    let r = r?;
                    match r.v {
                        Value::Bool(b) => {
                            if b != *all {
                                result = b;
                                break;
                            }
                        }
                        other => {
                            self.mismatch(
                                &other,
                                body.span,
                                "bool",
                                "the condition of a quantifier must be true or false",
                            );
                            return Err(Reported);
                        }
                    }
                }
                Value::Bool(result)
            }
        })
    }

    fn too_large<T>(&mut self, span: Span, what: &str) -> R<T> {
        self.err(
            Diagnostic::error(Code::ValueTooLarge, span, format!("{what} too large"))
                .with_primary(format!("builds a {what} of more than {MAX_ELEMS} elements"))
                .with_help("configurations never need values this large; check for a runaway `range` or repeated concatenation"),
        );
        Err(Reported)
    }

    fn overflow<T>(&mut self, span: Span) -> R<T> {
        self.err(
            Diagnostic::error(Code::Arithmetic, span, "arithmetic overflow")
                .with_primary(
                    "the result does not fit in 64 bits (or is negative where it cannot be)",
                )
                .with_help("durations and sizes cannot be negative; check the operands"),
        );
        Err(Reported)
    }

    /// Reports "expected X, found Y".
    pub fn mismatch(&mut self, found: &Value, span: Span, expected: &str, help: &str) {
        if let Value::Sym(s) = found
            && !ENUM_WORDS.contains(&&**s)
        {
            let s = s.clone();
            self.unknown_name(&s, span, expected);
            return;
        }
        let d = Diagnostic::error(
            Code::TypeMismatch,
            span,
            format!("expected {expected}, found {}", found.type_name()),
        )
        .with_primary(format!("expected {expected}"));
        let d = if help.is_empty() {
            d
        } else {
            d.with_help(help)
        };
        self.err(d);
    }

    fn binary(&mut self, op: BinOp, l: &Expr, r: &Expr, span: Span, scope: &mut Scope) -> R<Value> {
        use Value::*;
        let lv = self.eval(l, scope)?;
        // Short-circuit logic.
        if matches!(op, BinOp::And | BinOp::Or) {
            let Bool(a) = lv.v else {
                return self.op_error(op, &lv, Option::None, span);
            };
            if (op == BinOp::And && !a) || (op == BinOp::Or && a) {
                return Ok(Bool(a));
            }
            let rv = self.eval(r, scope)?;
            return match rv.v {
                Bool(b) => Ok(Bool(b)),
                _ => self.op_error(op, &lv, Some(&rv), span),
            };
        }
        let rv = self.eval(r, scope)?;
        let out: Option<Value> = match (op, &lv.v, &rv.v) {
            (BinOp::Add, Int(a), Int(b)) => a.checked_add(*b).map(Int),
            (BinOp::Sub, Int(a), Int(b)) => a.checked_sub(*b).map(Int),
            (BinOp::Mul, Int(a), Int(b)) => a.checked_mul(*b).map(Int),
            (BinOp::Div | BinOp::Rem, _, Int(0)) => {
                self.err(
                    Diagnostic::error(Code::Arithmetic, span, "division by zero")
                        .with_primary("the divisor is zero")
                        .with_help("guard the division: `if n > 0 then total / n else total`"),
                );
                return Err(Reported);
            }
            (BinOp::Div, Duration(_) | Size(_), Duration(0) | Size(0)) => {
                self.err(
                    Diagnostic::error(Code::Arithmetic, span, "division by zero")
                        .with_primary("the divisor is zero")
                        .with_help("guard the division: `if n > 0 then total / n else total`"),
                );
                return Err(Reported);
            }
            (BinOp::Div, Int(a), Int(b)) => a.checked_div(*b).map(Int),
            (BinOp::Rem, Int(a), Int(b)) => a.checked_rem(*b).map(Int),
            (BinOp::Add, Duration(a), Duration(b)) => a.checked_add(*b).map(Duration),
            (BinOp::Sub, Duration(a), Duration(b)) => a.checked_sub(*b).map(Duration),
            (BinOp::Mul, Duration(a), Int(b)) | (BinOp::Mul, Int(b), Duration(a)) => {
                u64::try_from(*b)
                    .ok()
                    .and_then(|b| a.checked_mul(b))
                    .map(Duration)
            }
            (BinOp::Div, Duration(a), Int(b)) => u64::try_from(*b)
                .ok()
                .and_then(|b| a.checked_div(b))
                .map(Duration),
            (BinOp::Div, Duration(a), Duration(b)) => i64::try_from(a / b).ok().map(Int),
            (BinOp::Add, Size(a), Size(b)) => a.checked_add(*b).map(Size),
            (BinOp::Sub, Size(a), Size(b)) => a.checked_sub(*b).map(Size),
            (BinOp::Mul, Size(a), Int(b)) | (BinOp::Mul, Int(b), Size(a)) => u64::try_from(*b)
                .ok()
                .and_then(|b| a.checked_mul(b))
                .map(Size),
            (BinOp::Div, Size(a), Int(b)) => u64::try_from(*b)
                .ok()
                .and_then(|b| a.checked_div(b))
                .map(Size),
            (BinOp::Div, Size(a), Size(b)) => i64::try_from(a / b).ok().map(Int),
            (BinOp::Add, Str(a), Str(b)) => {
                if a.len() + b.len() > MAX_ELEMS {
                    return self.too_large(span, "string");
                }
                Some(Str(Rc::from(format!("{a}{b}"))))
            }
            (BinOp::Add, List(a), List(b)) => {
                if a.len() + b.len() > MAX_ELEMS {
                    return self.too_large(span, "list");
                }
                let mut v = Vec::with_capacity(a.len() + b.len());
                v.extend(a.iter().cloned());
                v.extend(b.iter().cloned());
                Some(List(Rc::new(v)))
            }
            (BinOp::Add, Record(a), Record(b)) => {
                let mut merged = (**a).clone();
                for f in b.fields() {
                    merged.set_field(f.clone());
                }
                merged.steps.extend(b.steps.iter().cloned());
                Some(Record(Rc::new(merged)))
            }
            (BinOp::Eq | BinOp::Ne, a, b) => match a.equals(b) {
                Some(eq) => Some(Bool(eq == (op == BinOp::Eq))),
                Option::None => return self.op_error(op, &lv, Some(&rv), span),
            },
            (BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge, a, b) => {
                let ord = match (a, b) {
                    (Int(x), Int(y)) => x.cmp(y),
                    (Duration(x), Duration(y)) | (Size(x), Size(y)) => x.cmp(y),
                    (Str(x), Str(y)) => x.cmp(y),
                    _ => return self.op_error(op, &lv, Some(&rv), span),
                };
                Some(Bool(match op {
                    BinOp::Lt => ord.is_lt(),
                    BinOp::Le => ord.is_le(),
                    BinOp::Gt => ord.is_gt(),
                    _ => ord.is_ge(),
                }))
            }
            (BinOp::In, x, List(items)) => {
                let mut found = false;
                for i in items.iter() {
                    match x.equals(&i.v) {
                        Some(true) => {
                            found = true;
                            break;
                        }
                        Some(false) => {}
                        Option::None => return self.op_error(op, &lv, Some(&i.clone()), span),
                    }
                }
                Some(Bool(found))
            }
            (BinOp::In, Ip(a), Cidr(c)) => Some(Bool(c.contains(*a))),
            (BinOp::In, Cidr(a), Cidr(c)) => Some(Bool(c.contains_cidr(a))),
            (BinOp::In, Str(a), Str(b)) => Some(Bool(b.contains(&**a))),
            (BinOp::In, Str(a), Record(r)) => Some(Bool(r.get(a).is_some())),
            _ => return self.op_error(op, &lv, Some(&rv), span),
        };
        match out {
            Some(v) => Ok(v),
            Option::None => self.overflow(span),
        }
    }

    fn op_error<T>(&mut self, op: BinOp, l: &SV, r: Option<&SV>, span: Span) -> R<T> {
        for v in [Some(l), r].into_iter().flatten() {
            if let Value::Sym(s) = &v.v
                && !ENUM_WORDS.contains(&&**s)
            {
                let s = s.clone();
                self.unknown_name(&s, v.span, "");
                return Err(Reported);
            }
        }
        let (msg, help) = match (op, r) {
            (BinOp::And | BinOp::Or, _) => (
                format!("`{}` needs two bools", op.as_str()),
                "compare first, e.g. `a > 0 and b > 0`".to_owned(),
            ),
            (_, Some(r)) => {
                let verb = match op {
                    BinOp::Add => "add",
                    BinOp::Sub => "subtract",
                    BinOp::Mul => "multiply",
                    BinOp::Div => "divide",
                    BinOp::Rem => "take the remainder of",
                    BinOp::In => "test membership of",
                    _ => "compare",
                };
                let help = match (&l.v, &r.v) {
                    (Value::Duration(_), Value::Int(_)) | (Value::Int(_), Value::Duration(_)) if matches!(op, BinOp::Add | BinOp::Sub) => {
                        "give the number a unit, e.g. `30s + 5s`; durations scale by integers with `*`".to_owned()
                    }
                    (Value::Size(_), Value::Int(_)) | (Value::Int(_), Value::Size(_)) if matches!(op, BinOp::Add | BinOp::Sub) => {
                        "give the number a unit, e.g. `512MiB + 256MiB`".to_owned()
                    }
                    (Value::Duration(_), Value::Size(_)) | (Value::Size(_), Value::Duration(_)) => {
                        "a duration and a size measure different things".to_owned()
                    }
                    (_, Value::Str(_)) | (Value::Str(_), _) if matches!(op, BinOp::Add) => {
                        "to build text, use interpolation: \"${a}${b}\"".to_owned()
                    }
                    _ if matches!(op, BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge) => {
                        "both sides of a comparison must have the same type".to_owned()
                    }
                    _ => "see `glint explain E0207` for which operators each type supports".to_owned(),
                };
                (
                    format!(
                        "cannot {verb} `{}` and `{}`",
                        short_type(&l.v),
                        short_type(&r.v)
                    ),
                    help,
                )
            }
            (_, None) => (
                format!("invalid operand for `{}`", op.as_str()),
                String::new(),
            ),
        };
        let mut d = Diagnostic::error(Code::OperatorType, span, msg)
            .with_primary(format!("`{}` is not defined for these types", op.as_str()))
            .with_label(
                l.span,
                format!("this is {}", crate::value::article(&l.v.type_name())),
            );
        if let Some(r) = r {
            d = d.with_label(
                r.span,
                format!("this is {}", crate::value::article(&r.v.type_name())),
            );
        }
        if !help.is_empty() {
            d = d.with_help(help);
        }
        self.err(d);
        Err(Reported)
    }

    fn field(&mut self, base: SV, name: &str, span: Span) -> R<Value> {
        let full = base.span.to(span);
        match &base.v {
            Value::Namespace(kind) => {
                if *kind == Kind::Environment || *kind == Kind::Policy {
                    self.err(
                        Diagnostic::error(
                            Code::UnknownReference,
                            full,
                            format!("{kind} declarations cannot be referenced"),
                        )
                        .with_primary("not a reference target"),
                    );
                    return Err(Reported);
                }
                if let Some(table) = &self.decls
                    && let Some((shared, _)) = table.shared(*kind, name)
                {
                    // The declaration's own name: no allocation per reference.
                    return Ok(Value::Ref(*kind, shared));
                }
                if let Some(table) = &self.decls {
                    let hint = did_you_mean(name, table.names(*kind));
                    let d = Diagnostic::error(
                        Code::UnknownReference,
                        full,
                        format!("no {kind} named `{name}`"),
                    )
                    .with_primary(format!("`{name}` is not declared"));
                    let d = match hint {
                        Some(h) => d.with_help(format!("did you mean `{kind}.{h}`?")),
                        None => d.with_help(format!(
                            "declare it with `{kind} {name} {{ ... }}`, or check the name"
                        )),
                    };
                    self.err(d);
                    return Err(Reported);
                }
                Ok(Value::Ref(*kind, Rc::from(name)))
            }
            Value::Record(r) => match r.get(name) {
                // A field whose value failed to evaluate (already reported).
                Some(v) if is_poisoned(v) => Err(Reported),
                Some(v) => Ok(v.v.clone()),
                None => self.no_field(
                    &base,
                    name,
                    span,
                    r.fields().iter().map(|f| &*f.key).collect(),
                ),
            },
            Value::Tagged(tag, r) => {
                if name == "kind" {
                    return Ok(Value::Str(tag.clone()));
                }
                match r.get(name) {
                    Some(v) if is_poisoned(v) => Err(Reported),
                    Some(v) => Ok(v.v.clone()),
                    None => self.no_field(
                        &base,
                        name,
                        span,
                        r.fields().iter().map(|f| &*f.key).collect(),
                    ),
                }
            }
            Value::Ref(kind, n) => {
                let found = self.views.as_ref().map(|v| v.field(*kind, n, name));
                match found {
                    Some(Some(v)) => Ok(v),
                    Some(None) => {
                        let names = self
                            .views
                            .as_ref()
                            .map(|v| v.field_names(*kind))
                            .unwrap_or_default();
                        self.no_field(&base, name, span, names)
                    }
                    None => {
                        if name == "name" {
                            return Ok(Value::Str(n.clone()));
                        }
                        self.err(
                            Diagnostic::error(
                                Code::NoSuchMember,
                                span,
                                format!("cannot read `{name}` through a reference here"),
                            )
                            .with_primary("references are only followed inside policy checks")
                            .with_label(base.span, format!("a reference to {kind} `{n}`")),
                        );
                        Err(Reported)
                    }
                }
            }
            Value::Module(m) => {
                let prog = self.prog;
                let module = &prog.modules[*m];
                match module.bindings.get(name) {
                    Some(Binding::Let(item)) => Ok(self.let_value(*m, *item, span)?.v),
                    Some(Binding::Fn(def)) => Ok(Value::Func(FnValue {
                        def: def.clone(),
                        module: *m,
                    })),
                    Some(Binding::Module(_)) | None => {
                        let hint = did_you_mean(
                            name,
                            module
                                .bindings
                                .iter()
                                .filter(|(_, b)| !matches!(b, Binding::Module(_)))
                                .map(|(k, _)| k.as_str()),
                        );
                        let d = Diagnostic::error(
                            Code::UnknownModuleMember,
                            span,
                            format!("module `{}` has no `{name}`", module.key),
                        )
                        .with_primary("not defined in that module");
                        let d = match hint {
                            Some(h) => d.with_help(format!("did you mean `{h}`?")),
                            None => {
                                d.with_help("modules export their `let` bindings and functions")
                            }
                        };
                        self.err(d);
                        Err(Reported)
                    }
                }
            }
            Value::Cidr(c) => match name {
                "prefix" => Ok(Value::Int(i64::from(c.prefix()))),
                "is_any" => Ok(Value::Bool(c.is_any())),
                "network" => Ok(Value::Ip(c.addr())),
                "contains" => Ok(Value::Method(Box::new(base.v.clone()), "contains")),
                _ => self.no_field(
                    &base,
                    name,
                    span,
                    vec!["prefix", "is_any", "network", "contains"],
                ),
            },
            Value::Addr(a) => match name {
                "ip" => Ok(Value::Ip(a.ip())),
                "port" => Ok(Value::Int(i64::from(a.port()))),
                _ => self.no_field(&base, name, span, vec!["ip", "port"]),
            },
            Value::List(_) | Value::Str(_) => match name {
                "contains" => Ok(Value::Method(Box::new(base.v.clone()), "contains")),
                "starts_with" if matches!(base.v, Value::Str(_)) => {
                    Ok(Value::Method(Box::new(base.v.clone()), "starts_with"))
                }
                "ends_with" if matches!(base.v, Value::Str(_)) => {
                    Ok(Value::Method(Box::new(base.v.clone()), "ends_with"))
                }
                _ => self.no_field(
                    &base,
                    name,
                    span,
                    vec!["contains", "starts_with", "ends_with"],
                ),
            },
            Value::Sym(s) if !ENUM_WORDS.contains(&&**s) => {
                let s = s.clone();
                self.unknown_name(&s, base.span, "");
                Err(Reported)
            }
            Value::None => {
                self.err(
                    Diagnostic::error(
                        Code::NoSuchMember,
                        span,
                        format!("cannot read `{name}` of `none`"),
                    )
                    .with_primary("the value here is `none`")
                    .with_label(base.span, "this is `none`")
                    .with_help("check for `none` first: `x != none and x.field ...`"),
                );
                Err(Reported)
            }
            other => {
                let t = other.type_name();
                self.err(
                    Diagnostic::error(
                        Code::NoSuchMember,
                        span,
                        format!("a {t} has no field `{name}`"),
                    )
                    .with_primary("no such field")
                    .with_label(base.span, format!("this is a {t}")),
                );
                Err(Reported)
            }
        }
    }

    fn no_field<T>(&mut self, base: &SV, name: &str, span: Span, names: Vec<&str>) -> R<T> {
        let hint = did_you_mean(name, names.iter().copied());
        let d = Diagnostic::error(Code::NoSuchMember, span, format!("no field `{name}`"))
            .with_primary("not a field of this value")
            .with_label(
                base.span,
                format!("this is {}", crate::value::article(&base.v.type_name())),
            );
        let d = match hint {
            Some(h) => d.with_help(format!("did you mean `{h}`?")),
            None if !names.is_empty() && names.len() <= 12 => d.with_help(format!(
                "available: {}",
                names
                    .iter()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            None => d,
        };
        self.err(d);
        Err(Reported)
    }

    fn index(&mut self, base: SV, idx: SV, span: Span) -> R<Value> {
        match (&base.v, &idx.v) {
            (Value::Namespace(_), Value::Str(name)) => {
                let name = name.clone();
                self.field(base, &name, idx.span)
            }
            (Value::List(items), Value::Int(i)) => {
                match usize::try_from(*i).ok().and_then(|i| items.get(i)) {
                    Some(v) => Ok(v.v.clone()),
                    None => {
                        self.err(
                            Diagnostic::error(
                                Code::InvalidValue,
                                idx.span,
                                format!("index {i} is out of range"),
                            )
                            .with_primary(format!("the list has {} elements", items.len())),
                        );
                        Err(Reported)
                    }
                }
            }
            (Value::Record(r), Value::Str(k)) => match r.get(k) {
                Some(v) if is_poisoned(v) => Err(Reported),
                Some(v) => Ok(v.v.clone()),
                None => self.no_field(
                    &base,
                    k,
                    idx.span,
                    r.fields().iter().map(|f| &*f.key).collect(),
                ),
            },
            _ => {
                self.err(
                    Diagnostic::error(
                        Code::OperatorType,
                        span,
                        format!(
                            "cannot index {} with {}",
                            crate::value::article(&base.v.type_name()),
                            crate::value::article(&idx.v.type_name())
                        ),
                    )
                    .with_primary("lists take an int index, records a string key"),
                );
                Err(Reported)
            }
        }
    }

    // ----- calls -------------------------------------------------------

    fn call(
        &mut self,
        f: SV,
        args: Vec<(Option<ast::Ident>, SV)>,
        span: Span,
        callee_span: Span,
    ) -> R<Value> {
        match f.v {
            Value::Func(fv) => self.call_fn(fv, args, span),
            Value::Builtin(b) => self.builtin(b, args, span),
            Value::Method(recv, m) => self.method(*recv, m, args, span),
            Value::Sym(s) if !ENUM_WORDS.contains(&&*s) => {
                let hint = self.sym_hints.get(&callee_span).cloned().flatten();
                let d = Diagnostic::error(
                    Code::UnknownName,
                    callee_span,
                    format!("unknown function `{s}`"),
                )
                .with_primary("not defined");
                let d = match hint {
                    Some(h) => d.with_help(format!("did you mean `{h}`?")),
                    None => d.with_help(format!(
                        "define it with `fn {s}(...) = ...`; built-ins are {}",
                        BUILTINS.join(", ")
                    )),
                };
                self.err(d);
                Err(Reported)
            }
            other => {
                self.err(
                    Diagnostic::error(
                        Code::NoSuchMember,
                        callee_span,
                        format!(
                            "{} cannot be called",
                            crate::value::article(&other.type_name())
                        ),
                    )
                    .with_primary("not a function"),
                );
                Err(Reported)
            }
        }
    }

    fn call_fn(
        &mut self,
        fv: FnValue,
        args: Vec<(Option<ast::Ident>, SV)>,
        span: Span,
    ) -> R<Value> {
        let def = fv.def.clone();
        let ptr = Rc::as_ptr(&def);
        if self.active_fns.contains(&ptr) {
            self.err(
                Diagnostic::error(Code::RecursiveFunction, span, format!("`{}` calls itself", def.name.name))
                    .with_primary("recursive call")
                    .with_label(def.name.span, "function defined here")
                    .with_help("Glint functions cannot recurse (evaluation must always end); use lists, `for` and quantifiers"),
            );
            return Err(Reported);
        }
        // Bind arguments.
        let mut bound: Vec<Option<SV>> = vec![None; def.params.len()];
        let mut positional = 0usize;
        let mut failed = false;
        for (name, v) in args {
            let idx = match &name {
                Some(n) => match def.params.iter().position(|p| p.name.name == n.name) {
                    Some(i) => i,
                    None => {
                        let hint = did_you_mean(&n.name, def.params.iter().map(|p| &*p.name.name));
                        let d = Diagnostic::error(
                            Code::BadArguments,
                            n.span,
                            format!("`{}` has no parameter `{}`", def.name.name, n.name),
                        )
                        .with_primary("unknown parameter")
                        .with_label(def.name.span, "function defined here");
                        let d = match hint {
                            Some(h) => d.with_help(format!("did you mean `{h}`?")),
                            None => d.with_help(format!(
                                "parameters: {}",
                                def.params
                                    .iter()
                                    .map(|p| format!("`{}`", p.name.name))
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            )),
                        };
                        self.err(d);
                        failed = true;
                        continue;
                    }
                },
                None => {
                    let i = positional;
                    positional += 1;
                    if i >= def.params.len() {
                        self.err(
                            Diagnostic::error(
                                Code::BadArguments,
                                v.span,
                                format!(
                                    "`{}` takes {} arguments, but more were given",
                                    def.name.name,
                                    def.params.len()
                                ),
                            )
                            .with_primary("extra argument")
                            .with_label(def.name.span, "function defined here"),
                        );
                        failed = true;
                        continue;
                    }
                    i
                }
            };
            if bound[idx].is_some() {
                self.err(
                    Diagnostic::error(
                        Code::BadArguments,
                        v.span,
                        format!("argument `{}` given twice", def.params[idx].name.name),
                    )
                    .with_primary("already given"),
                );
                failed = true;
                continue;
            }
            bound[idx] = Some(v);
        }
        if failed {
            return Err(Reported);
        }
        let mut scope = Scope::new(fv.module);
        self.active_fns.push(ptr);
        let r = (|| {
            for (p, arg) in def.params.iter().zip(bound) {
                let v = match arg {
                    Some(v) => v,
                    None => match &p.default {
                        Some(d) => self.eval(d, &mut scope)?,
                        None => {
                            self.err(
                                Diagnostic::error(
                                    Code::BadArguments,
                                    span,
                                    format!("missing argument `{}`", p.name.name),
                                )
                                .with_primary(format!(
                                    "`{}` needs a value for `{}`",
                                    def.name.name, p.name.name
                                ))
                                .with_label(p.name.span, "parameter defined here"),
                            );
                            return Err(Reported);
                        }
                    },
                };
                let v = match &p.ty {
                    Some(t) => self.check_type(v, t, "argument")?,
                    None => v,
                };
                scope.locals.push((Rc::clone(&(p.name.name)), v.v));
            }
            let out = self.eval(&def.body, &mut scope)?;
            match &def.ret {
                Some(t) => self.check_type(out, t, "result"),
                None => Ok(out),
            }
        })();
        self.active_fns.pop();
        r.map(|v| v.v)
    }

    fn arity(
        &mut self,
        name: &str,
        args: &[(Option<ast::Ident>, SV)],
        n: usize,
        span: Span,
    ) -> R<()> {
        if args.len() != n || args.iter().any(|(k, _)| k.is_some()) {
            self.err(
                Diagnostic::error(
                    Code::BadArguments,
                    span,
                    format!(
                        "`{name}` takes {n} positional argument{}",
                        if n == 1 { "" } else { "s" }
                    ),
                )
                .with_primary(format!("{} given", args.len())),
            );
            return Err(Reported);
        }
        Ok(())
    }

    fn builtin(
        &mut self,
        b: &'static str,
        args: Vec<(Option<ast::Ident>, SV)>,
        span: Span,
    ) -> R<Value> {
        match b {
            "len" => {
                self.arity(b, &args, 1, span)?;
                let v = &args[0].1;
                let n = match &v.v {
                    Value::List(l) => l.len(),
                    Value::Str(s) => s.chars().count(),
                    Value::Record(r) => r.len(),
                    other => {
                        self.mismatch(other, v.span, "a list, string or record", "");
                        return Err(Reported);
                    }
                };
                Ok(Value::Int(i64::try_from(n).unwrap_or(i64::MAX)))
            }
            "string" => {
                self.arity(b, &args, 1, span)?;
                let v = &args[0].1;
                match v.v.to_text() {
                    Some(t) => Ok(Value::Str(Rc::from(t))),
                    None => {
                        self.mismatch(&v.v, v.span, "a value with a text form", "");
                        Err(Reported)
                    }
                }
            }
            "keys" => {
                self.arity(b, &args, 1, span)?;
                let v = &args[0].1;
                match &v.v {
                    Value::Record(r) => Ok(Value::List(Rc::new(
                        r.fields()
                            .iter()
                            .map(|f| SV {
                                v: Value::Str(f.key.clone()),
                                span: f.key_span,
                            })
                            .collect(),
                    ))),
                    other => {
                        self.mismatch(other, v.span, "record", "");
                        Err(Reported)
                    }
                }
            }
            "min" | "max" => {
                self.arity(b, &args, 2, span)?;
                let (x, y) = (&args[0].1, &args[1].1);
                let ord = match (&x.v, &y.v) {
                    (Value::Int(a), Value::Int(c)) => a.cmp(c),
                    (Value::Duration(a), Value::Duration(c)) | (Value::Size(a), Value::Size(c)) => {
                        a.cmp(c)
                    }
                    _ => {
                        self.err(
                            Diagnostic::error(
                                Code::OperatorType,
                                span,
                                format!("`{b}` needs two values of the same numeric type"),
                            )
                            .with_primary(format!(
                                "found {} and {}",
                                x.v.type_name(),
                                y.v.type_name()
                            )),
                        );
                        return Err(Reported);
                    }
                };
                let first = if b == "min" { ord.is_le() } else { ord.is_ge() };
                Ok(if first { x.v.clone() } else { y.v.clone() })
            }
            "range" => {
                if args.is_empty() || args.len() > 2 {
                    self.arity(b, &args, 1, span)?;
                }
                let mut ints = Vec::new();
                for (_, a) in &args {
                    match a.v {
                        Value::Int(i) => ints.push(i),
                        ref other => {
                            self.mismatch(other, a.span, "int", "");
                            return Err(Reported);
                        }
                    }
                }
                let (lo, hi) = if ints.len() == 2 {
                    (ints[0], ints[1])
                } else {
                    (0, ints[0])
                };
                let n = usize::try_from(hi.saturating_sub(lo).max(0)).unwrap_or(usize::MAX);
                if n > MAX_ELEMS {
                    return self.too_large(span, "list");
                }
                Ok(Value::List(Rc::new(
                    (lo..hi.max(lo))
                        .map(|i| SV {
                            v: Value::Int(i),
                            span,
                        })
                        .collect(),
                )))
            }
            "ip" | "cidr" | "addr" => {
                self.arity(b, &args, 1, span)?;
                let v = &args[0].1;
                let Value::Str(s) = &v.v else {
                    self.mismatch(&v.v, v.span, "string", "");
                    return Err(Reported);
                };
                let parsed = match b {
                    "ip" => s
                        .parse()
                        .map(Value::Ip)
                        .map_err(|e: std::net::AddrParseError| e.to_string()),
                    "cidr" => s
                        .parse()
                        .map(Value::Cidr)
                        .map_err(|e: glint_model::CidrError| e.to_string()),
                    _ => s
                        .parse()
                        .map(Value::Addr)
                        .map_err(|e: std::net::AddrParseError| e.to_string()),
                };
                parsed.map_err(|e| {
                    self.err(
                        Diagnostic::error(
                            Code::InvalidAddress,
                            v.span,
                            format!("`{s}` is not a valid {b}"),
                        )
                        .with_primary(e),
                    );
                    Reported
                })
            }
            "archive" => {
                self.arity(b, &args, 2, span)?;
                let (p, d) = (&args[0].1, &args[1].1);
                let Value::Str(path) = &p.v else {
                    self.mismatch(
                        &p.v,
                        p.span,
                        "string",
                        "the archive's path, relative to this file",
                    );
                    return Err(Reported);
                };
                let Value::Digest(_) = &d.v else {
                    self.mismatch(
                        &d.v,
                        d.span,
                        "digest",
                        "pin the archive with its `sha256:` digest",
                    );
                    return Err(Reported);
                };
                let resolved = join_path(self.prog.file_key(p.span.file), path);
                let mut rec = Record::default();
                rec.set("path", Value::Str(Rc::from(resolved)), p.span);
                rec.set("digest", d.v.clone(), d.span);
                Ok(Value::Tagged(Rc::from("archive"), Rc::new(rec)))
            }
            _ => Err(Reported),
        }
    }

    fn method(
        &mut self,
        recv: Value,
        m: &'static str,
        args: Vec<(Option<ast::Ident>, SV)>,
        span: Span,
    ) -> R<Value> {
        self.arity(m, &args, 1, span)?;
        let a = &args[0].1;
        let r = match (m, &recv, &a.v) {
            ("contains", Value::Cidr(c), Value::Ip(ip)) => Some(c.contains(*ip)),
            ("contains", Value::Cidr(c), Value::Cidr(o)) => Some(c.contains_cidr(o)),
            ("contains", Value::Str(s), Value::Str(x)) => Some(s.contains(&**x)),
            ("starts_with", Value::Str(s), Value::Str(x)) => Some(s.starts_with(&**x)),
            ("ends_with", Value::Str(s), Value::Str(x)) => Some(s.ends_with(&**x)),
            ("contains", Value::List(items), x) => {
                let mut found = false;
                for i in items.iter() {
                    if x.equals(&i.v) == Some(true) {
                        found = true;
                        break;
                    }
                }
                Some(found)
            }
            _ => None,
        };
        match r {
            Some(b) => Ok(Value::Bool(b)),
            None => {
                self.err(
                    Diagnostic::error(
                        Code::OperatorType,
                        a.span,
                        format!(
                            "`{m}` on {} does not take {}",
                            crate::value::article(&recv.type_name()),
                            crate::value::article(&a.v.type_name())
                        ),
                    )
                    .with_primary("wrong argument type"),
                );
                Err(Reported)
            }
        }
    }

    // ----- types ---------------------------------------------------------

    /// Checks a value against a type annotation.
    pub fn check_type(&mut self, v: SV, t: &TypeExpr, what: &str) -> R<SV> {
        if self.matches_type(&v.v, t)? {
            return Ok(v);
        }
        let want = type_text(t);
        if let Value::Sym(s) = &v.v
            && !ENUM_WORDS.contains(&&**s)
        {
            let s = s.clone();
            self.unknown_name(&s, v.span, &want);
            return Err(Reported);
        }
        let mut d = Diagnostic::error(
            Code::TypeMismatch,
            v.span,
            format!("expected {want}, found {}", v.v.type_name()),
        )
        .with_primary(format!("this {what} must be {want}"))
        .with_label(t.span, "type declared here");
        if want == "port"
            && let Value::Int(i) = v.v
        {
            d = Diagnostic::error(
                Code::InvalidValue,
                v.span,
                format!("port {i} is out of range"),
            )
            .with_primary("a port is from 1 to 65535")
            .with_label(t.span, "type declared here");
        }
        self.err(d);
        Err(Reported)
    }

    fn matches_type(&mut self, v: &Value, t: &TypeExpr) -> R<bool> {
        if t.optional && matches!(v, Value::None) {
            return Ok(true);
        }
        let arg = |i: usize| t.args.get(i);
        Ok(match &*t.name.name {
            "any" => true,
            "int" => matches!(v, Value::Int(_)),
            "bool" => matches!(v, Value::Bool(_)),
            "string" => matches!(v, Value::Str(_)),
            "duration" => matches!(v, Value::Duration(_)),
            "size" => matches!(v, Value::Size(_)),
            "port" => matches!(v, Value::Int(i) if (1..=65535).contains(i)),
            "ip" => matches!(v, Value::Ip(_)),
            "cidr" => matches!(v, Value::Cidr(_)),
            "addr" => matches!(v, Value::Addr(_)),
            "digest" => matches!(v, Value::Digest(_)),
            "record" | "map" => match v {
                Value::Record(r) => match arg(0) {
                    Some(et) => {
                        for f in r.fields() {
                            if is_poisoned(&f.value) {
                                return Err(Reported);
                            }
                            if !self.matches_type(&f.value.v, et)? {
                                return Ok(false);
                            }
                        }
                        true
                    }
                    None => true,
                },
                _ => false,
            },
            "list" => match v {
                Value::List(items) => match arg(0) {
                    Some(et) => {
                        for i in items.iter() {
                            if !self.matches_type(&i.v, et)? {
                                return Ok(false);
                            }
                        }
                        true
                    }
                    None => true,
                },
                _ => false,
            },
            other => {
                if let Some(k) = Kind::from_keyword(other) {
                    matches!(v, Value::Ref(rk, _) if *rk == k)
                } else {
                    let hint = did_you_mean(
                        other,
                        [
                            "any", "int", "bool", "string", "duration", "size", "port", "ip",
                            "cidr", "addr", "digest", "list", "map", "record", "service", "image",
                            "endpoint", "volume",
                        ],
                    );
                    let d = Diagnostic::error(
                        Code::UnknownName,
                        t.name.span,
                        format!("unknown type `{other}`"),
                    )
                    .with_primary("not a type");
                    let d = match hint {
                        Some(h) => d.with_help(format!("did you mean `{h}`?")),
                        None => d.with_help("types: int, bool, string, duration, size, port, ip, cidr, addr, digest, list(T), map(T), record, any, and declaration kinds for references"),
                    };
                    self.err(d);
                    return Err(Reported);
                }
            }
        })
    }

    // ----- blocks ---------------------------------------------------------

    /// Evaluates a block into a record. Fields named in `defer` are not
    /// evaluated; their expressions are returned instead (policy checks).
    pub fn eval_block<'b>(
        &mut self,
        b: &'b Block,
        scope: &mut Scope,
        defer: &[&str],
    ) -> R<(Record, Vec<(&'b ast::Key, &'b Expr)>)> {
        let mut rec = Record::default();
        rec.reserve(b.entries.len());
        rec.partial = b.recovered;
        let mut deferred = Vec::new();
        for entry in &b.entries {
            match &entry.kind {
                EntryKind::Attr { key, value } if defer.contains(&&*key.name) => {
                    if deferred
                        .iter()
                        .any(|(k, _): &(&ast::Key, &Expr)| k.name == key.name)
                    {
                        self.duplicate(key, None);
                    } else {
                        deferred.push((key, value));
                    }
                }
                EntryKind::Attr { key, value } => {
                    let v = self.eval(value, scope).unwrap_or(SV {
                        v: Value::None,
                        span: Span {
                            file: FileId(u32::MAX),
                            ..value.span
                        },
                    });
                    self.insert(&mut rec, key, v);
                }
                EntryKind::Block { key, body } => {
                    let v = match self.eval_block(body, scope, &[]) {
                        Ok((r, _)) => SV {
                            v: Value::Record(Rc::new(r)),
                            span: body.span,
                        },
                        Err(Reported) => SV {
                            v: Value::None,
                            span: Span {
                                file: FileId(u32::MAX),
                                ..body.span
                            },
                        },
                    };
                    self.insert(&mut rec, key, v);
                }
                EntryKind::Copy(pair) => {
                    let (src, dst) = &**pair;
                    let (Ok(s), Ok(d)) = (self.eval(src, scope), self.eval(dst, scope)) else {
                        continue;
                    };
                    let s = match &s.v {
                        Value::Str(p) => SV {
                            v: Value::Str(Rc::from(join_path(
                                self.prog.file_key(src.span.file),
                                p,
                            ))),
                            span: s.span,
                        },
                        other => {
                            self.mismatch(
                                &other.clone(),
                                s.span,
                                "string",
                                "`copy` takes a source path relative to this file",
                            );
                            continue;
                        }
                    };
                    rec.steps.push(Step::Copy { src: s, dst: d });
                }
                EntryKind::Run(e) => {
                    if let Ok(v) = self.eval(e, scope) {
                        rec.steps.push(Step::Run(v));
                    }
                }
                EntryKind::Test(e) => {
                    if let Ok(v) = self.eval(e, scope) {
                        rec.steps.push(Step::Test(v));
                    }
                }
                EntryKind::Spread(e) => {
                    let Ok(v) = self.eval(e, scope) else {
                        // The fields it would have set are unknown: do not
                        // report them as missing.
                        rec.partial = true;
                        continue;
                    };
                    match &v.v {
                        Value::Record(r) => {
                            rec.reserve(r.len());
                            for f in r.fields() {
                                if let Some(existing) =
                                    rec.position(&f.key).and_then(|i| rec.field_mut(i))
                                {
                                    if existing.from_spread {
                                        *existing = Field {
                                            from_spread: true,
                                            ..f.clone()
                                        };
                                    } else {
                                        self.err(
                                            Diagnostic::error(Code::DuplicateField, e.span, format!("`{}` is set before this spread", f.key))
                                                .with_primary(format!("this spread also sets `{}`", f.key))
                                                .with_label(existing.key_span, "set here first")
                                                .with_help("put the spread first and the overriding entries after it"),
                                        );
                                    }
                                } else {
                                    rec.push(Field {
                                        from_spread: true,
                                        ..f.clone()
                                    });
                                }
                            }
                            rec.steps.extend(r.steps.iter().cloned());
                        }
                        other => {
                            self.mismatch(&other.clone(), v.span, "record", "`...` spreads the fields of a record, e.g. the result of a template function");
                        }
                    }
                }
            }
        }
        Ok((rec, deferred))
    }

    fn duplicate(&mut self, key: &ast::Key, first: Option<Span>) {
        let mut d = Diagnostic::error(
            Code::DuplicateField,
            key.span,
            format!("`{}` is set twice", key.name),
        )
        .with_primary("set again here")
        .with_help("remove one of them");
        if let Some(f) = first {
            d = d.with_label(f, "first set here");
        }
        self.err(d);
    }

    fn insert(&mut self, rec: &mut Record, key: &ast::Key, v: SV) {
        if let Some(existing) = rec.position(&key.name).and_then(|i| rec.field_mut(i)) {
            if existing.from_spread {
                existing.value = v;
                existing.key_span = key.span;
                existing.from_spread = false;
            } else {
                let first = existing.key_span;
                self.duplicate(key, Some(first));
            }
            return;
        }
        rec.push(Field {
            key: Rc::clone(&(key.name)),
            key_span: key.span,
            value: v,
            from_spread: false,
        });
    }
}

fn short_type(v: &Value) -> String {
    match v {
        Value::Sym(_) | Value::Tagged(..) => "enum".into(),
        Value::Ref(k, _) => format!("{k} reference"),
        other => other.type_name(),
    }
}

/// A type annotation as text.
pub fn type_text(t: &TypeExpr) -> String {
    let mut s = t.name.name.to_string();
    if !t.args.is_empty() {
        s.push('(');
        s.push_str(&t.args.iter().map(type_text).collect::<Vec<_>>().join(", "));
        s.push(')');
    }
    if t.optional {
        s.push('?');
    }
    s
}

/// Whether a value stands for a field whose evaluation failed (already
/// reported): such fields are skipped silently by the decoders.
pub fn is_poisoned(v: &SV) -> bool {
    v.span.file == FileId(u32::MAX)
}
