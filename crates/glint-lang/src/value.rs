//! Run-time values of the evaluator.
//!
//! Aggregates are reference-counted so that passing a record around (a
//! template's result, a declaration view in a policy) never copies it.

use crate::ast::FnDef;
use crate::fxhash::FxMap;
use crate::source::Span;
use glint_model::{Cidr, Digest};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;

/// The declaration kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// `environment`
    Environment,
    /// `image`
    Image,
    /// `service`
    Service,
    /// `endpoint`
    Endpoint,
    /// `rule`
    Rule,
    /// `variable`
    Variable,
    /// `volume`
    Volume,
    /// `notify`
    Notify,
    /// `policy`
    Policy,
}

impl Kind {
    /// Parses a kind keyword.
    pub fn from_keyword(s: &str) -> Option<Kind> {
        Some(match s {
            "environment" => Kind::Environment,
            "image" => Kind::Image,
            "service" => Kind::Service,
            "endpoint" => Kind::Endpoint,
            "rule" => Kind::Rule,
            "variable" => Kind::Variable,
            "volume" => Kind::Volume,
            "notify" => Kind::Notify,
            "policy" => Kind::Policy,
            _ => return None,
        })
    }

    /// Parses a plural collection name (`services`).
    pub fn from_plural(s: &str) -> Option<Kind> {
        Some(match s {
            "images" => Kind::Image,
            "services" => Kind::Service,
            "endpoints" => Kind::Endpoint,
            "rules" => Kind::Rule,
            "variables" => Kind::Variable,
            "volumes" => Kind::Volume,
            "notifies" => Kind::Notify,
            "policies" => Kind::Policy,
            _ => return None,
        })
    }

    /// The keyword.
    pub fn keyword(self) -> &'static str {
        match self {
            Kind::Environment => "environment",
            Kind::Image => "image",
            Kind::Service => "service",
            Kind::Endpoint => "endpoint",
            Kind::Rule => "rule",
            Kind::Variable => "variable",
            Kind::Volume => "volume",
            Kind::Notify => "notify",
            Kind::Policy => "policy",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.keyword())
    }
}

/// A value with the span of the expression that produced it.
#[derive(Debug, Clone)]
pub struct SV {
    /// The value.
    pub v: Value,
    /// Where it came from.
    pub span: Span,
}

/// One field of a record.
#[derive(Debug, Clone)]
pub struct Field {
    /// The key.
    pub key: Rc<str>,
    /// Where the key was written.
    pub key_span: Span,
    /// The value.
    pub value: SV,
    /// Whether it came from a `...spread` (may then be overridden).
    pub from_spread: bool,
}

/// An image build step recorded in a block.
#[derive(Debug, Clone)]
pub enum Step {
    /// `copy SRC to DST`; `src` is already relative to the environment root.
    Copy {
        /// Source (root-relative path).
        src: SV,
        /// Destination.
        dst: SV,
    },
    /// `run CMD`
    Run(SV),
    /// `test CMD`
    Test(SV),
}

/// Records with at least this many fields keep a hash index of their keys,
/// so that building and reading a large record is linear, not quadratic.
const INDEX_FROM: usize = 12;

/// A record: ordered fields plus image build steps.
///
/// Fields are kept in order of first definition; lookups by key go through
/// a hash index once the record is large ([`INDEX_FROM`] fields), so that a
/// record of 100,000 keys is built and read in linear time.
#[derive(Debug, Clone, Default)]
pub struct Record {
    fields: Vec<Field>,
    index: Option<FxMap<Rc<str>, usize>>,
    /// Build steps, in order.
    pub steps: Vec<Step>,
    /// The declaration this record describes (policy views), for reporting.
    pub origin: Option<Span>,
    /// Built from a block with syntax errors: missing fields are not reported.
    pub partial: bool,
}

impl Record {
    /// The fields, in order of first definition.
    pub fn fields(&self) -> &[Field] {
        &self.fields
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// Whether the record has no fields.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// The position of a field.
    pub fn position(&self, key: &str) -> Option<usize> {
        match &self.index {
            Some(index) => index.get(key).copied(),
            None => {
                count_probes(self.fields.len());
                self.fields.iter().position(|f| &*f.key == key)
            }
        }
    }

    /// A field's value.
    pub fn get(&self, key: &str) -> Option<&SV> {
        self.position(key).map(|i| &self.fields[i].value)
    }

    /// Makes room for `n` more fields.
    pub fn reserve(&mut self, n: usize) {
        self.fields.reserve(n);
    }

    /// A field by position, to change it in place (its key stays).
    pub fn field_mut(&mut self, i: usize) -> Option<&mut Field> {
        self.fields.get_mut(i)
    }

    /// Appends a field whose key is not in the record yet (callers check
    /// with [`Record::position`] first).
    pub fn push(&mut self, field: Field) {
        if let Some(index) = &mut self.index {
            index.insert(field.key.clone(), self.fields.len());
        }
        self.fields.push(field);
        if self.index.is_none() && self.fields.len() >= INDEX_FROM {
            let mut index = FxMap::default();
            index.reserve(self.fields.len());
            for (i, f) in self.fields.iter().enumerate() {
                index.insert(f.key.clone(), i);
            }
            self.index = Some(index);
        }
    }

    /// Sets a field, replacing its value if the key exists (used when
    /// building views and merging records).
    pub fn set_field(&mut self, field: Field) {
        match self.position(&field.key) {
            Some(i) => self.fields[i] = field,
            None => self.push(field),
        }
    }

    /// Sets a field from a value (used when building views).
    pub fn set(&mut self, key: &str, v: Value, span: Span) {
        self.set_field(Field {
            key: Rc::from(key),
            key_span: span,
            value: SV { v, span },
            from_spread: false,
        });
    }
}

#[cfg(test)]
thread_local! {
    /// Field comparisons made by linear lookups (tests check that large
    /// records never scan).
    pub(crate) static PROBES: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

#[inline]
fn count_probes(_n: usize) {
    #[cfg(test)]
    PROBES.with(|p| p.set(p.get() + _n as u64));
}

/// A user function together with the module it was defined in.
#[derive(Debug, Clone)]
pub struct FnValue {
    /// The definition.
    pub def: Rc<FnDef>,
    /// The defining module.
    pub module: usize,
}

/// A value.
#[derive(Debug, Clone)]
pub enum Value {
    /// `none`
    None,
    /// `true` / `false`
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A string.
    Str(Rc<str>),
    /// A duration (milliseconds).
    Duration(u64),
    /// A size (bytes).
    Size(u64),
    /// An IP address.
    Ip(IpAddr),
    /// A CIDR block.
    Cidr(Cidr),
    /// A socket address.
    Addr(SocketAddr),
    /// A digest.
    Digest(Rc<Digest>),
    /// A list.
    List(Rc<Vec<SV>>),
    /// A record.
    Record(Rc<Record>),
    /// A bare word: an enum value such as `scratch` or `tcp`.
    Sym(Rc<str>),
    /// An enum value with a payload: `rolling { surge = 2 }`.
    Tagged(Rc<str>, Rc<Record>),
    /// A reference to a declaration: `service.web`.
    Ref(Kind, Rc<str>),
    /// A declaration namespace (`service` in `service.web`).
    Namespace(Kind),
    /// A user function.
    Func(FnValue),
    /// A built-in function.
    Builtin(&'static str),
    /// An imported module.
    Module(usize),
    /// A method bound to its receiver (`cidr.contains`).
    Method(Box<Value>, &'static str),
}

impl Value {
    /// The type's name, for messages.
    pub fn type_name(&self) -> String {
        match self {
            Value::None => "none".into(),
            Value::Bool(_) => "bool".into(),
            Value::Int(_) => "int".into(),
            Value::Str(_) => "string".into(),
            Value::Duration(_) => "duration".into(),
            Value::Size(_) => "size".into(),
            Value::Ip(_) => "ip".into(),
            Value::Cidr(_) => "cidr".into(),
            Value::Addr(_) => "addr".into(),
            Value::Digest(_) => "digest".into(),
            Value::List(_) => "list".into(),
            Value::Record(_) => "record".into(),
            Value::Sym(s) => format!("enum value `{s}`"),
            Value::Tagged(s, _) => format!("enum value `{s} {{ ... }}`"),
            Value::Ref(k, _) => format!("reference to a {k}"),
            Value::Namespace(k) => format!("the `{k}` namespace"),
            Value::Func(_) | Value::Builtin(_) | Value::Method(..) => "function".into(),
            Value::Module(_) => "module".into(),
        }
    }

    /// Structural equality (`None` when the types cannot be compared).
    pub fn equals(&self, other: &Value) -> Option<bool> {
        use Value::*;
        Some(match (self, other) {
            (None, None) => true,
            (None, _) | (_, None) => false,
            (Bool(a), Bool(b)) => a == b,
            (Int(a), Int(b)) => a == b,
            (Str(a), Str(b)) => a == b,
            (Duration(a), Duration(b)) => a == b,
            (Size(a), Size(b)) => a == b,
            (Ip(a), Ip(b)) => a == b,
            (Cidr(a), Cidr(b)) => a == b,
            (Addr(a), Addr(b)) => a == b,
            (Digest(a), Digest(b)) => a == b,
            (Sym(a), Sym(b)) => a == b,
            (Sym(a), Str(b)) | (Str(b), Sym(a)) => a == b,
            (Ref(k1, a), Ref(k2, b)) => k1 == k2 && a == b,
            // A rule's `from` is a CIDR or a reference: comparing across is fine.
            (Ref(..), _) | (_, Ref(..)) => false,
            (Tagged(a, _), Sym(b)) | (Sym(b), Tagged(a, _)) => a == b,
            (List(a), List(b)) => {
                if a.len() != b.len() {
                    return Some(false);
                }
                for (x, y) in a.iter().zip(b.iter()) {
                    if !x.v.equals(&y.v)? {
                        return Some(false);
                    }
                }
                true
            }
            (Record(a), Record(b)) => {
                if a.len() != b.len() {
                    return Some(false);
                }
                for f in a.fields() {
                    match b.get(&f.key) {
                        Some(o) => {
                            if !f.value.v.equals(&o.v)? {
                                return Some(false);
                            }
                        }
                        Option::None => return Some(false),
                    }
                }
                true
            }
            _ => return Option::None,
        })
    }

    /// Renders a value for string interpolation (`None` if it has no text form).
    pub fn to_text(&self) -> Option<String> {
        Some(match self {
            Value::Str(s) => s.to_string(),
            Value::Int(i) => i.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Duration(d) => glint_model::Millis(*d).to_string(),
            Value::Size(s) => glint_model::Bytes(*s).to_string(),
            Value::Ip(a) => a.to_string(),
            Value::Cidr(c) => c.to_string(),
            Value::Addr(a) => a.to_string(),
            Value::Digest(d) => d.to_string(),
            Value::Sym(s) => s.to_string(),
            Value::Tagged(s, _) => s.to_string(),
            Value::Ref(_, n) => n.to_string(),
            Value::None => "none".into(),
            Value::List(items) => {
                let parts: Option<Vec<String>> = items.iter().map(|i| i.v.to_text()).collect();
                format!("[{}]", parts?.join(", "))
            }
            _ => return None,
        })
    }
}

/// A type name with its indefinite article (`an int`, `a string`, `none`).
pub fn article(t: &str) -> String {
    if t == "none" {
        return "`none`".into();
    }
    match t.chars().next() {
        Some('a' | 'e' | 'i' | 'o' | 'u') => format!("an {t}"),
        _ => format!("a {t}"),
    }
}
