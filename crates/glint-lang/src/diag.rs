//! Diagnostics: plain data, rendered in one place.
//!
//! The compiler never prints. Every problem it finds becomes a [`Diagnostic`]
//! (a stable [`Code`], a severity, a message, a primary span, secondary
//! labels, a help line and notes); the caller renders the list with
//! [`render_human`] (terminal, colour optional) or [`render_json`] (CI and
//! editors). All wording that depends on a code lives in `codes.rs`.

use crate::codes::Code;
use crate::source::{SourceMap, Span};
pub use glint_model::Severity;
use serde::Serialize;
use std::fmt::Write as _;

/// A span with a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    /// Where.
    pub span: Span,
    /// What to say about it (may be empty).
    pub message: String,
}

/// One problem found in the sources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The stable code (`E0103`); `glint explain CODE` describes it.
    pub code: Code,
    /// Error (blocks the change) or warning (shown only).
    pub severity: Severity,
    /// One line saying what is wrong.
    pub message: String,
    /// Where it is wrong.
    pub primary: Label,
    /// Other places that explain it.
    pub labels: Vec<Label>,
    /// How to fix it.
    pub help: Option<String>,
    /// Extra context.
    pub notes: Vec<String>,
}

impl Diagnostic {
    /// An error with a primary span and label.
    pub fn error(code: Code, span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            code,
            severity: Severity::Error,
            message: message.into(),
            primary: Label {
                span,
                message: String::new(),
            },
            labels: Vec::new(),
            help: None,
            notes: Vec::new(),
        }
    }

    /// A warning with a primary span.
    pub fn warning(code: Code, span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(code, span, message)
        }
    }

    /// Sets the primary label's message.
    pub fn with_primary(mut self, message: impl Into<String>) -> Diagnostic {
        self.primary.message = message.into();
        self
    }

    /// Adds a secondary label.
    pub fn with_label(mut self, span: Span, message: impl Into<String>) -> Diagnostic {
        self.labels.push(Label {
            span,
            message: message.into(),
        });
        self
    }

    /// Sets the help line.
    pub fn with_help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

    /// Sets the help line if there is one.
    pub fn with_help_opt(mut self, help: Option<String>) -> Diagnostic {
        if help.is_some() {
            self.help = help;
        }
        self
    }

    /// Adds a note.
    pub fn with_note(mut self, note: impl Into<String>) -> Diagnostic {
        self.notes.push(note.into());
        self
    }

    /// Whether this is an error.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// A list of diagnostics together with the files their spans point into.
#[derive(Debug, Clone, Default)]
pub struct Diagnostics {
    /// The diagnostics, in the order found (sorted by file and position by
    /// [`crate::compile`]).
    pub list: Vec<Diagnostic>,
    /// The files they refer to.
    pub sources: SourceMap,
}

impl Diagnostics {
    /// Number of errors.
    pub fn error_count(&self) -> usize {
        self.list.iter().filter(|d| d.is_error()).count()
    }

    /// Number of warnings.
    pub fn warning_count(&self) -> usize {
        self.list.len() - self.error_count()
    }

    /// Whether any diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.list.iter().any(Diagnostic::is_error)
    }

    /// Rendered for people (see [`render_human`]), followed by a summary line.
    pub fn render_human(&self, color: bool) -> String {
        let mut out = String::new();
        for d in &self.list {
            out.push_str(&render_human(d, &self.sources, color));
            out.push('\n');
        }
        let (e, w) = (self.error_count(), self.warning_count());
        if e + w > 0 {
            out.push_str(&summary(e, w, color));
            out.push('\n');
        }
        out
    }

    /// Rendered as one JSON document (see [`render_json`]).
    pub fn render_json(&self) -> serde_json::Value {
        render_json(&self.list, &self.sources)
    }
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("{n} {word}")
    } else {
        format!("{n} {word}s")
    }
}

fn summary(errors: usize, warnings: usize, color: bool) -> String {
    let st = Style::new(color);
    match (errors, warnings) {
        (0, w) => format!("{}: {} emitted", st.warn("warning"), plural(w, "warning")),
        (e, 0) => format!(
            "{}: could not compile: {} found",
            st.err("error"),
            plural(e, "error")
        ),
        (e, w) => format!(
            "{}: could not compile: {} and {} found",
            st.err("error"),
            plural(e, "error"),
            plural(w, "warning")
        ),
    }
}

struct Style {
    on: bool,
}

impl Style {
    fn new(on: bool) -> Style {
        Style { on }
    }
    fn paint(&self, code: &str, s: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_owned()
        }
    }
    fn err(&self, s: &str) -> String {
        self.paint("1;31", s)
    }
    fn warn(&self, s: &str) -> String {
        self.paint("1;33", s)
    }
    fn bold(&self, s: &str) -> String {
        self.paint("1", s)
    }
    fn gutter(&self, s: &str) -> String {
        self.paint("1;34", s)
    }
    fn help(&self, s: &str) -> String {
        self.paint("1;36", s)
    }
    fn sev(&self, sev: Severity, s: &str) -> String {
        match sev {
            Severity::Error => self.err(s),
            Severity::Warning => self.warn(s),
        }
    }
}

/// Whether a character must not reach a terminal as it is: control
/// characters (escape sequences, carriage returns, new lines inside a
/// message) and the invisible bidirectional controls that reorder text.
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{200e}' | '\u{200f}' | '\u{061c}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

/// Text from a source file made safe to print as human text: every control
/// character (and bidirectional control) is written as an escape such as
/// `\u{1b}`, so that a hostile `.glint` file cannot move the cursor, colour
/// the terminal or print a line of its own (a fake `ok:`), even with colour
/// off. JSON output needs no such care: its encoder escapes them.
pub fn escape_control(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(is_unsafe) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if is_unsafe(c) {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// A source line as shown in a snippet: tab stops expanded to 4 spaces so
/// that carets line up, other control characters escaped.
fn display_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c == '\t' {
            out.push_str("    ");
        } else if is_unsafe(c) {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    out
}

/// Display width of a piece of a line, as [`display_line`] shows it.
fn width(s: &str) -> usize {
    s.chars()
        .map(|c| {
            if c == '\t' {
                4
            } else if is_unsafe(c) {
                // `\u{` + hex digits + `}`
                4 + format!("{:x}", u32::from(c)).len()
            } else {
                1
            }
        })
        .sum()
}

/// Renders one diagnostic the way rustc does: header, `-->` location, the
/// source lines with a caret under the primary span and dashes under the
/// secondary ones, then `= help:` and `= note:` lines.
pub fn render_human(d: &Diagnostic, sources: &SourceMap, color: bool) -> String {
    let st = Style::new(color);
    let mut out = String::new();
    let sev = match d.severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    };
    let _ = writeln!(
        out,
        "{}{}",
        st.sev(d.severity, &format!("{sev}[{}]", d.code.as_str())),
        st.bold(&format!(": {}", escape_control(&d.message)))
    );

    // Group labels by file, primary file first.
    let mut labels: Vec<(bool, &Label)> = vec![(true, &d.primary)];
    labels.extend(d.labels.iter().map(|l| (false, l)));
    let mut files: Vec<_> = Vec::new();
    for (_, l) in &labels {
        if !files.contains(&l.span.file) {
            files.push(l.span.file);
        }
    }
    // Width of the line-number gutter.
    let max_line = labels
        .iter()
        .filter_map(|(_, l)| sources.get(l.span.file).map(|f| f.line_col(l.span.start).0))
        .max()
        .unwrap_or(1);
    let gw = max_line.to_string().len();
    let pad = " ".repeat(gw);

    for (fi, file_id) in files.iter().enumerate() {
        let Some(file) = sources.get(*file_id) else {
            continue;
        };
        let first = labels
            .iter()
            .find(|(_, l)| l.span.file == *file_id)
            .map(|(_, l)| l.span)
            .unwrap_or(d.primary.span);
        let (line, col) = file.line_col(first.start);
        let arrow = if fi == 0 { "-->" } else { ":::" };
        let _ = writeln!(
            out,
            "{pad}{} {}:{line}:{col}",
            st.gutter(arrow),
            escape_control(&file.display)
        );
        let _ = writeln!(out, "{pad} {}", st.gutter("|"));
        let mut in_file: Vec<(bool, &Label)> = labels
            .iter()
            .filter(|(_, l)| l.span.file == *file_id)
            .copied()
            .collect();
        in_file.sort_by_key(|(p, l)| (l.span.start, !*p));
        let mut last_line: Option<usize> = None;
        for (is_primary, label) in in_file {
            let li = file.line_index(label.span.start);
            if let Some(prev) = last_line
                && li > prev + 1
            {
                let _ = writeln!(out, "{}", st.gutter("..."));
            }
            let full = file.line_text(li);
            let line_start = file.line_start(li);
            // Very long lines (minified or generated input) are cut around the span.
            let mut cut = 0usize;
            let text: String = if full.len() > 200 {
                let at = (label.span.start as usize).saturating_sub(line_start);
                let mut from = at.saturating_sub(60);
                while from > 0 && !full.is_char_boundary(from) {
                    from -= 1;
                }
                let mut to = (at + 100).min(full.len());
                while to < full.len() && !full.is_char_boundary(to) {
                    to += 1;
                }
                cut = from;
                let mut t = String::new();
                if from > 0 {
                    t.push_str("...");
                }
                t.push_str(&full[from..to]);
                if to < full.len() {
                    t.push_str("...");
                }
                t
            } else {
                full.to_owned()
            };
            let text = text.as_str();
            if last_line != Some(li) {
                let _ = writeln!(
                    out,
                    "{} {} {}",
                    st.gutter(&format!("{:>gw$}", li + 1)),
                    st.gutter("|"),
                    display_line(text)
                );
            }
            last_line = Some(li);
            let shift = if cut > 0 { 3 } else { 0 };
            let start = (label.span.start as usize).saturating_sub(line_start + cut) + shift;
            let end_in_line = ((label.span.end as usize).saturating_sub(line_start + cut) + shift)
                .min(text.len());
            let before = text.get(..start.min(text.len())).unwrap_or("");
            let inside = text
                .get(start.min(text.len())..end_in_line.max(start.min(text.len())))
                .unwrap_or("");
            let n = width(inside).max(1);
            let mark = if is_primary { "^" } else { "-" };
            let marks = mark.repeat(n);
            let painted = if is_primary {
                st.sev(d.severity, &marks)
            } else {
                st.gutter(&marks)
            };
            let label_text = escape_control(&label.message);
            let msg = if label.message.is_empty() {
                String::new()
            } else if is_primary {
                format!(" {}", st.sev(d.severity, &label_text))
            } else {
                format!(" {}", st.gutter(&label_text))
            };
            let _ = writeln!(
                out,
                "{pad} {} {}{painted}{msg}",
                st.gutter("|"),
                " ".repeat(width(before))
            );
        }
    }
    if d.help.is_some() || !d.notes.is_empty() {
        let _ = writeln!(out, "{pad} {}", st.gutter("|"));
    }
    if let Some(help) = &d.help {
        let help = escape_control(help);
        let _ = writeln!(out, "{pad} {} {}: {help}", st.gutter("="), st.help("help"));
    }
    for note in &d.notes {
        let note = escape_control(note);
        let _ = writeln!(out, "{pad} {} {}: {note}", st.gutter("="), st.bold("note"));
    }
    out
}

#[derive(Serialize)]
struct JsonLabel<'a> {
    file: &'a str,
    line: usize,
    column: usize,
    end_line: usize,
    end_column: usize,
    start: u32,
    end: u32,
    message: &'a str,
    primary: bool,
}

#[derive(Serialize)]
struct JsonDiagnostic<'a> {
    code: &'a str,
    severity: Severity,
    message: &'a str,
    file: &'a str,
    line: usize,
    column: usize,
    labels: Vec<JsonLabel<'a>>,
    help: Option<&'a str>,
    notes: &'a [String],
    rendered: String,
}

fn json_label<'a>(l: &'a Label, primary: bool, sources: &'a SourceMap) -> JsonLabel<'a> {
    let (file, (line, column), (end_line, end_column)) = match sources.get(l.span.file) {
        Some(f) => (
            f.display.as_str(),
            f.line_col(l.span.start),
            f.line_col(l.span.end),
        ),
        None => ("", (0, 0), (0, 0)),
    };
    JsonLabel {
        file,
        line,
        column,
        end_line,
        end_column,
        start: l.span.start,
        end: l.span.end,
        message: &l.message,
        primary,
    }
}

/// Renders diagnostics as one JSON document:
/// `{"diagnostics": [...], "errors": N, "warnings": N}`. Each diagnostic has
/// `code`, `severity`, `message`, `file`, `line`, `column` (1-based, of the
/// primary span), `labels` (each with file, line/column ranges, byte offsets,
/// message and `primary`), `help`, `notes` and the human `rendered` text.
pub fn render_json(list: &[Diagnostic], sources: &SourceMap) -> serde_json::Value {
    let diags: Vec<JsonDiagnostic<'_>> = list
        .iter()
        .map(|d| {
            let primary = json_label(&d.primary, true, sources);
            let mut labels = vec![];
            let (file, line, column) = (primary.file, primary.line, primary.column);
            labels.push(primary);
            labels.extend(d.labels.iter().map(|l| json_label(l, false, sources)));
            JsonDiagnostic {
                code: d.code.as_str(),
                severity: d.severity,
                message: &d.message,
                file,
                line,
                column,
                labels,
                help: d.help.as_deref(),
                notes: &d.notes,
                rendered: render_human(d, sources, false),
            }
        })
        .collect();
    let errors = list.iter().filter(|d| d.is_error()).count();
    serde_json::json!({
        "diagnostics": diags,
        "errors": errors,
        "warnings": list.len() - errors,
    })
}

/// The closest candidate to `name` by edit distance, if close enough to be a
/// plausible typo.
pub fn did_you_mean<'a, I>(name: &str, candidates: I) -> Option<String>
where
    I: IntoIterator<Item = &'a str>,
{
    let limit = (name.chars().count() / 3).max(1);
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        if c == name {
            continue;
        }
        // Cheap length filter keeps this fast over large tables.
        if c.len().abs_diff(name.len()) > limit {
            continue;
        }
        let d = edit_distance(name, c);
        let lowered = name.eq_ignore_ascii_case(c);
        if (d <= limit || lowered) && best.is_none_or(|(bd, bc)| d < bd || (d == bd && c < bc)) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c.to_owned())
}

/// Levenshtein distance over chars (with adjacent transpositions counted once).
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev2: Vec<usize> = vec![0; b.len() + 1];
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        cur[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(prev2[j - 2] + 1);
            }
            cur[j] = v;
        }
        std::mem::swap(&mut prev2, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_carets_still_line_up() {
        assert_eq!(escape_control("plain"), "plain");
        assert_eq!(escape_control("a\u{1b}[32mok\n"), "a\\u{1b}[32mok\\u{a}");
        assert_eq!(escape_control("\u{202e}x"), "\\u{202e}x");
        let mut sources = SourceMap::new();
        let text = "let x = \"\u{1b}[2J\" + 1\n".to_owned();
        let at = text.find('+').unwrap_or(0);
        let file = sources.add("m".into(), "m\u{7}.glint".into(), text);
        let d = Diagnostic::error(
            Code::OperatorType,
            Span::new(file, at, at + 1),
            "bad \u{1b}[0m",
        )
        .with_primary("here\r")
        .with_help("help\u{1b}")
        .with_note("note\n");
        let out = render_human(&d, &sources, false);
        assert!(!out.chars().any(|c| c.is_control() && c != '\n'), "{out:?}");
        assert_eq!(out.lines().count(), 8, "{out}");
        // The caret sits under `+` in the escaped line.
        let line = out.lines().find(|l| l.contains("let x")).unwrap_or("");
        let caret = out.lines().find(|l| l.contains('^')).unwrap_or("");
        assert_eq!(line.find('+'), caret.find('^'), "{out}");
    }

    #[test]
    fn suggestions_find_close_names_only() {
        assert_eq!(
            did_you_mean("instnaces", ["instances", "image", "env"]),
            Some("instances".into())
        );
        assert_eq!(did_you_mean("zzz", ["instances", "image"]), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("ab", "ba"), 1);
    }
}
