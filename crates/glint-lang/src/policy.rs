//! Running policies: each `policy` check is evaluated over the views of the
//! compiled declarations ([`crate::views`]); a check of the form
//! `all x in LIST: cond` reports each declaration that fails it on its own,
//! with `message` and `help` evaluated for that declaration.

use crate::ast::{self, ExprKind};
use crate::codes::Code;
use crate::diag::Diagnostic;
use crate::eval::{Eval, R, Reported, Scope};
use crate::source::Span;
use crate::value::{SV, Value};
use glint_model::{Name, Severity};

/// A policy ready to run: its checked settings and its lazy expressions.
pub(crate) struct PolicyDef<'p> {
    pub name: Name,
    pub name_span: Span,
    pub severity: Severity,
    pub check: &'p ast::Expr,
    pub message: &'p ast::Expr,
    pub help: Option<&'p ast::Expr>,
    pub module: usize,
}

/// Runs one policy over the views set in `ev`; each violation becomes a
/// diagnostic of the policy's severity.
pub(crate) fn run_policy(ev: &mut Eval<'_>, def: &PolicyDef<'_>) {
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
