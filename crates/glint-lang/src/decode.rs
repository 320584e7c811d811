//! Typed decoders: an evaluated value to the type a field needs, with the
//! diagnostic that says what was expected and how to write it.
//!
//! Each decoder reports its own problem and returns `None`; callers only
//! note that the field failed. A value that failed to evaluate is never
//! passed here (see [`crate::eval::is_poisoned`]).

use crate::codes::Code;
use crate::diag::{Diagnostic, did_you_mean};
use crate::eval::{ENUM_WORDS, Eval, is_poisoned};
use crate::source::Span;
use crate::value::{Kind, Record, SV, Value};
use glint_model::{Bytes, Millis, Name};
use std::collections::BTreeMap;

pub(crate) fn missing(
    ev: &mut Eval<'_>,
    span: Span,
    what: &dyn std::fmt::Display,
    key: &str,
    hint: &str,
) {
    ev.diags.push(
        Diagnostic::error(Code::MissingField, span, format!("{what} has no `{key}`"))
            .with_primary(format!("missing `{key}`"))
            .with_help(format!("add `{key} = ...`: {hint}")),
    );
}

// Typed decoders

pub(crate) fn type_error(ev: &mut Eval<'_>, v: &SV, expected: &str, help: Option<String>) {
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

pub(crate) fn invalid(ev: &mut Eval<'_>, v: &SV, msg: String, label: &str, help: Option<String>) {
    ev.diags.push(
        Diagnostic::error(Code::InvalidValue, v.span, msg)
            .with_primary(label)
            .with_help_opt(help),
    );
}

/// A duration-looking string (`"1 hour"`) rewritten as a literal (`1h`).
pub(crate) fn duration_suggestion(s: &str) -> Option<String> {
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

pub(crate) fn size_suggestion(s: &str) -> Option<String> {
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

pub(crate) fn duration(ev: &mut Eval<'_>, v: &SV) -> Option<Millis> {
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

pub(crate) fn size(ev: &mut Eval<'_>, v: &SV) -> Option<Bytes> {
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

pub(crate) fn int_in(ev: &mut Eval<'_>, v: &SV, min: i64, max: i64, what: &str) -> Option<u32> {
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

pub(crate) fn port(ev: &mut Eval<'_>, v: &SV) -> Option<u16> {
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

pub(crate) fn string(ev: &mut Eval<'_>, v: &SV) -> Option<String> {
    match &v.v {
        Value::Str(s) if s.contains('\0') => {
            invalid(
                ev,
                v,
                "text with a NUL character".into(),
                "contains `\\u{0}`",
                Some("programs, paths and environment variables cannot hold NUL characters; remove it".into()),
            );
            None
        }
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

pub(crate) fn boolean(ev: &mut Eval<'_>, v: &SV) -> Option<bool> {
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

pub(crate) fn list<'a>(ev: &mut Eval<'_>, v: &'a SV, what: &str) -> Option<&'a [SV]> {
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

pub(crate) fn strings(ev: &mut Eval<'_>, v: &SV) -> Option<Vec<String>> {
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
pub(crate) fn command(ev: &mut Eval<'_>, v: &SV) -> Option<Vec<String>> {
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

pub(crate) fn string_map(ev: &mut Eval<'_>, v: &SV) -> Option<BTreeMap<String, String>> {
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
    for f in r.fields() {
        if is_poisoned(&f.value) {
            ok = false;
            continue;
        }
        match string(ev, &f.value) {
            Some(s) => {
                out.insert(f.key.to_string(), s);
            }
            None => ok = false,
        }
    }
    ok.then_some(out)
}

/// Environment variables: a map of strings whose names a program can be
/// given (not empty, no `=`, no NUL).
pub(crate) fn env_map(ev: &mut Eval<'_>, v: &SV) -> Option<BTreeMap<String, String>> {
    let map = string_map(ev, v)?;
    let Value::Record(r) = &v.v else {
        return Some(map);
    };
    let mut ok = true;
    for f in r.fields() {
        let why = if f.key.is_empty() {
            "an environment variable needs a name"
        } else if f.key.contains('=') {
            "`=` separates a variable's name from its value, so it cannot be part of the name"
        } else if f.key.contains('\0') {
            "names cannot hold NUL characters"
        } else {
            continue;
        };
        ok = false;
        ev.diags.push(
            Diagnostic::error(
                Code::InvalidValue,
                f.key_span,
                format!("invalid environment variable name `{}`", f.key),
            )
            .with_primary(why)
            .with_help("use letters, digits and `_`, e.g. `DATABASE_URL`"),
        );
    }
    ok.then_some(map)
}

/// A duration that must be longer than zero.
pub(crate) fn positive_duration(
    ev: &mut Eval<'_>,
    v: &SV,
    what: &str,
    why: &str,
) -> Option<Millis> {
    let d = duration(ev, v)?;
    if d.0 == 0 {
        invalid(
            ev,
            v,
            format!("{what} of `0s`"),
            "must be longer than zero",
            Some(why.to_owned()),
        );
        return None;
    }
    Some(d)
}

/// A string that must be an absolute path (inside an image or instance).
pub(crate) fn absolute_path(ev: &mut Eval<'_>, v: &SV, what: &str) -> Option<String> {
    let s = string(ev, v)?;
    if s.starts_with('/') {
        return Some(s);
    }
    invalid(
        ev,
        v,
        format!("{what} `{s}` is not absolute"),
        "must start with `/`",
        Some(format!("write \"/{s}\"")),
    );
    None
}

/// The span of a field's key in a record (for messages about a value that
/// was decoded earlier).
pub(crate) fn key_span(r: &Record, key: &str) -> Option<Span> {
    r.position(key).map(|i| r.fields()[i].key_span)
}

/// The span of a field's value in a record.
pub(crate) fn value_span(r: &Record, key: &str) -> Option<Span> {
    r.get(key).map(|v| v.span)
}

pub(crate) fn record<'a>(ev: &mut Eval<'_>, v: &'a SV, what: &str) -> Option<&'a Record> {
    match &v.v {
        Value::Record(r) => Some(r),
        _ => {
            type_error(ev, v, what, Some("write a block: `{ ... }`".into()));
            None
        }
    }
}

pub(crate) fn enum_word(
    ev: &mut Eval<'_>,
    v: &SV,
    variants: &[&'static str],
) -> Option<&'static str> {
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

pub(crate) fn reference(ev: &mut Eval<'_>, v: &SV, kind: Kind) -> Option<Name> {
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

pub(crate) fn refs(ev: &mut Eval<'_>, v: &SV, kind: Kind) -> Option<Vec<Name>> {
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
