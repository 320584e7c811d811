//! Compiler diagnostics as LSP diagnostics.
//!
//! Every diagnostic keeps its code (`E0201`, also in `data`), its primary
//! span as the range, its primary label, help and notes in the message,
//! and its other labels as related information (those in the standard
//! library, which has no file, are written into the message instead). A
//! diagnostic without a place (a main file that cannot be read) goes at
//! the start of the main file. The long text of `glint explain` is reached
//! from a diagnostic by hovering it, or by its code action
//! ([`EXPLAIN_COMMAND`]).

use crate::text::Encoding;
use crate::workspace::Analysis;
use glint_lang::{Code, Severity};
use lsp_types::{
    Diagnostic, DiagnosticRelatedInformation, DiagnosticSeverity, Location, NumberOrString, Range,
    Uri,
};
use std::collections::BTreeMap;

/// The command a code action runs to show a code's explanation.
pub const EXPLAIN_COMMAND: &str = "glint.explain";

/// The diagnostics of an analysis, per file URI (every compiled file has
/// an entry, empty when clean). `main` receives those without a place.
pub fn to_lsp(a: &Analysis, main: Option<&Uri>, enc: Encoding) -> BTreeMap<Uri, Vec<Diagnostic>> {
    let mut out: BTreeMap<Uri, Vec<Diagnostic>> = BTreeMap::new();
    for f in &a.files {
        if let Some(uri) = &f.info.uri {
            out.entry(uri.clone()).or_default();
        }
    }
    let range_of = |span: glint_lang::Span| -> Option<(Uri, Range)> {
        let f = a.files.get(span.file.0 as usize)?;
        let uri = f.info.uri.clone()?;
        Some((
            uri,
            f.lines
                .range(&f.text, span.start as usize, span.end as usize, enc),
        ))
    };
    let where_of = |span: glint_lang::Span| -> String {
        a.diagnostics
            .sources
            .get(span.file)
            .map(|f| {
                let (l, c) = f.line_col(span.start);
                format!("{}:{l}:{c}", f.display)
            })
            .unwrap_or_default()
    };
    for d in &a.diagnostics.list {
        let mut message = d.message.clone();
        if !d.primary.message.is_empty() {
            message.push_str(&format!("\n{}", d.primary.message));
        }
        let (uri, range, elsewhere) = match range_of(d.primary.span) {
            Some((u, r)) => (u, r, None),
            None => match main {
                Some(m) => (m.clone(), Range::default(), Some(where_of(d.primary.span))),
                None => continue,
            },
        };
        if let Some(w) = elsewhere.filter(|w| !w.is_empty()) {
            message.push_str(&format!("\n(at {w})"));
        }
        let mut related = Vec::new();
        for l in &d.labels {
            match range_of(l.span) {
                Some((u, r)) => related.push(DiagnosticRelatedInformation {
                    location: Location { uri: u, range: r },
                    message: if l.message.is_empty() {
                        "here".into()
                    } else {
                        l.message.clone()
                    },
                }),
                None => message.push_str(&format!("\n{}: {}", where_of(l.span), l.message)),
            }
        }
        if let Some(h) = &d.help {
            message.push_str(&format!("\nhelp: {h}"));
        }
        for n in &d.notes {
            message.push_str(&format!("\nnote: {n}"));
        }
        out.entry(uri).or_default().push(Diagnostic {
            range,
            severity: Some(match d.severity {
                Severity::Error => DiagnosticSeverity::ERROR,
                _ => DiagnosticSeverity::WARNING,
            }),
            code: Some(NumberOrString::String(d.code.as_str().to_owned())),
            code_description: None,
            source: Some("glint".into()),
            message,
            related_information: (!related.is_empty()).then_some(related),
            tags: None,
            data: Some(serde_json::json!({
                "code": d.code.as_str(),
                "title": d.code.title(),
                "explain": format!("glint explain {}", d.code.as_str()),
            })),
        });
    }
    out
}

/// The code of an LSP diagnostic, if it is one of Glint's.
pub fn code_of(d: &Diagnostic) -> Option<Code> {
    match &d.code {
        Some(NumberOrString::String(s)) => Code::ALL.iter().copied().find(|c| c.as_str() == s),
        _ => None,
    }
}

/// The explanation of a code, as Markdown for a hover.
pub fn explain_markdown(code: Code) -> String {
    format!(
        "**{}**: {}\n\n{}\n\n(`glint explain {}`)",
        code.as_str(),
        code.title(),
        code.explanation(),
        code.as_str()
    )
}
