//! The canonical formatter (`glint fmt`).
//!
//! It prints the syntax tree back with two-space indentation, one entry per
//! line, `=` aligned within runs of single-line fields, one blank line at most
//! between entries (and always one between top-level declarations), and
//! every comment kept where it was (own-line comments before the thing they
//! precede, end-of-line comments after it). Literals are printed exactly as
//! written (`60s` stays `60s`). Formatting is idempotent; a file with syntax
//! errors is not formatted.
//!
//! Safety net: if the output would not contain exactly the input's comments,
//! the input is returned unchanged.

use crate::ast::*;
use crate::diag::Diagnostics;
use crate::lexer::{TokKind, lex};
use crate::parser::parse_file;
use crate::source::{FileId, SourceMap, Span};

const WIDTH: usize = 100;

/// Formats one source file. Returns the diagnostics if it does not parse.
pub fn format(key: &str, source: &[u8]) -> Result<String, Diagnostics> {
    crate::with_stack(|| format_here(key, source))
}

fn format_here(key: &str, source: &[u8]) -> Result<String, Diagnostics> {
    let mut sources = SourceMap::new();
    let text = match std::str::from_utf8(source) {
        Ok(t) => t.to_owned(),
        Err(e) => {
            let at = e.valid_up_to();
            let text = String::from_utf8_lossy(&source[..at]).into_owned();
            let file = sources.add(key.to_owned(), key.to_owned(), text);
            let d = crate::Diagnostic::error(
                crate::Code::InvalidUtf8,
                Span::new(file, at, at),
                "source file is not valid UTF-8",
            )
            .with_primary("invalid byte sequence starts here")
            .with_help("save the file as UTF-8");
            return Err(Diagnostics {
                list: vec![d],
                sources,
            });
        }
    };
    let file = sources.add(key.to_owned(), key.to_owned(), text.clone());
    let mut diags = Vec::new();
    let ast = parse_file(&text, file, &mut diags);
    if !diags.is_empty() {
        return Err(Diagnostics {
            list: diags,
            sources,
        });
    }
    let mut p = Printer {
        src: &text,
        out: String::new(),
    };
    p.file(&ast);
    let mut out = p.out;
    while out.ends_with("\n\n") {
        out.pop();
    }
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    if comments(&out) != comments(&text) {
        return Ok(text);
    }
    Ok(out)
}

fn comments(text: &str) -> Vec<String> {
    let mut d = Vec::new();
    lex(text, FileId(0), 0, text.len(), &mut d)
        .into_iter()
        .filter(|t| t.kind == TokKind::Comment)
        .map(|t| {
            text[t.span.start as usize..t.span.end as usize]
                .trim_end()
                .to_owned()
        })
        .collect()
}

struct Printer<'a> {
    src: &'a str,
    out: String,
}

fn pad(indent: usize) -> String {
    "  ".repeat(indent)
}

impl Printer<'_> {
    fn slice(&self, span: Span) -> &str {
        self.src
            .get(span.start as usize..span.end as usize)
            .unwrap_or("")
    }

    fn line(&mut self, indent: usize, text: &str) {
        if text.is_empty() {
            self.out.push('\n');
            return;
        }
        self.out.push_str(&pad(indent));
        self.out.push_str(text);
        self.out.push('\n');
    }

    fn blank(&mut self) {
        if !self.out.is_empty() && !self.out.ends_with("\n\n") {
            self.out.push('\n');
        }
    }

    fn comment_lines(&mut self, indent: usize, comments: &[Comment], first: bool) {
        for (i, c) in comments.iter().enumerate() {
            if c.blank_before && !(first && i == 0) {
                self.blank();
            }
            for (j, l) in c.text.lines().enumerate() {
                if j == 0 {
                    self.line(indent, l);
                } else {
                    // Continuation lines of a block comment are kept verbatim.
                    self.out.push_str(l);
                    self.out.push('\n');
                }
            }
        }
    }

    /// Appends ` // comment` to the last line written.
    fn trailing(&mut self, c: &Option<Box<Comment>>) {
        if let Some(c) = c {
            if self.out.ends_with('\n') {
                self.out.pop();
            }
            self.out.push(' ');
            self.out.push_str(&c.text);
            self.out.push('\n');
        }
    }

    // ----- items --------------------------------------------------------

    fn file(&mut self, f: &File) {
        self.items(&f.items, 0);
        if !f.dangling.is_empty() {
            if !f.items.is_empty() {
                self.blank();
            }
            self.comment_lines(0, &f.dangling, true);
        }
    }

    fn items(&mut self, items: &[Item], indent: usize) {
        let mut prev_big = false;
        for (i, item) in items.iter().enumerate() {
            let big = matches!(item.kind, ItemKind::Decl(_) | ItemKind::For(_));
            let first = i == 0;
            if !first
                && (item.trivia.blank_before
                    || big
                    || prev_big
                    || item.trivia.leading.first().is_some_and(|c| c.blank_before))
            {
                self.blank();
            }
            self.comment_lines(indent, &item.trivia.leading, true);
            if !item.trivia.leading.is_empty() && item.trivia.blank_before {
                self.blank();
            }
            self.item(item, indent);
            self.trailing(&item.trivia.trailing);
            prev_big = big;
        }
    }

    fn item(&mut self, item: &Item, indent: usize) {
        match &item.kind {
            ItemKind::Import(i) => {
                let Import {
                    path_span, alias, ..
                } = &**i;
                let mut s = format!("import {}", self.slice(*path_span));
                if let Some(a) = alias {
                    s.push_str(" as ");
                    s.push_str(&a.name);
                }
                self.line(indent, &s);
            }
            ItemKind::Let(l) => {
                let LetItem { name, ty, value } = &**l;
                let mut head = format!("let {}", name.name);
                if let Some(t) = ty {
                    head.push_str(": ");
                    head.push_str(&type_str(t));
                }
                head.push_str(" = ");
                let v = self.expr(value, indent);
                self.line(indent, &format!("{head}{v}"));
            }
            ItemKind::Fn(def) => {
                let params: Vec<String> = def
                    .params
                    .iter()
                    .map(|p| {
                        let mut s = p.name.name.to_string();
                        if let Some(t) = &p.ty {
                            s.push_str(": ");
                            s.push_str(&type_str(t));
                        }
                        if let Some(d) = &p.default {
                            s.push_str(" = ");
                            s.push_str(&self.expr(d, indent + 1));
                        }
                        s
                    })
                    .collect();
                let mut head = format!("fn {}({})", def.name.name, params.join(", "));
                if let Some(t) = &def.ret {
                    head.push_str(": ");
                    head.push_str(&type_str(t));
                }
                let body = self.expr(&def.body, indent);
                self.line(indent, &format!("{head} = {body}"));
            }
            ItemKind::Decl(d) => {
                let name = match &d.name {
                    DeclName::Ident(i) => i.name.to_string(),
                    DeclName::Str(e) => self.expr(e, indent),
                };
                let head = format!("{} {name}", d.kind.name);
                self.block_stmt(&head, &d.body, indent);
            }
            ItemKind::For(f) => {
                let ForItem {
                    var,
                    iter,
                    items,
                    dangling,
                } = &**f;
                let it = self.expr(iter, indent);
                self.line(indent, &format!("for {} in {it} {{", var.name));
                self.items(items, indent + 1);
                if !dangling.is_empty() {
                    if !items.is_empty() {
                        self.blank();
                    }
                    self.comment_lines(indent + 1, dangling, true);
                }
                self.line(indent, "}");
            }
        }
    }

    /// `head {` entries `}` on their own lines.
    fn block_stmt(&mut self, head: &str, b: &Block, indent: usize) {
        if b.entries.is_empty() && b.dangling.is_empty() {
            self.line(indent, &format!("{head} {{}}"));
            return;
        }
        self.line(indent, &format!("{head} {{"));
        self.entries(b, indent + 1);
        self.line(indent, "}");
    }

    fn key_str(&self, k: &Key) -> String {
        if k.quoted {
            self.slice(k.span).to_owned()
        } else {
            k.name.to_string()
        }
    }

    fn entries(&mut self, b: &Block, indent: usize) {
        // Render values first to know which attributes are single-line.
        let rendered: Vec<Option<String>> = b
            .entries
            .iter()
            .map(|e| match &e.kind {
                EntryKind::Attr { value, .. } => Some(self.expr(value, indent)),
                _ => None,
            })
            .collect();
        let single = |i: usize| -> bool { rendered[i].as_ref().is_some_and(|r| !r.contains('\n')) };
        // Alignment runs.
        let n = b.entries.len();
        let mut width = vec![0usize; n];
        let mut i = 0;
        while i < n {
            if !single(i) {
                i += 1;
                continue;
            }
            let mut j = i;
            let mut w = 0;
            while j < n
                && single(j)
                && (j == i
                    || (!b.entries[j].trivia.blank_before
                        && b.entries[j].trivia.leading.is_empty()))
            {
                if let EntryKind::Attr { key, .. } = &b.entries[j].kind {
                    w = w.max(self.key_str(key).chars().count());
                }
                j += 1;
            }
            for w_slot in width.iter_mut().take(j).skip(i) {
                *w_slot = w;
            }
            i = j;
        }
        for (i, e) in b.entries.iter().enumerate() {
            let first = i == 0;
            if !first
                && (e.trivia.blank_before
                    || e.trivia.leading.first().is_some_and(|c| c.blank_before))
            {
                self.blank();
            }
            self.comment_lines(indent, &e.trivia.leading, true);
            if !e.trivia.leading.is_empty() && e.trivia.blank_before && !first {
                self.blank();
            }
            match &e.kind {
                EntryKind::Attr { key, .. } => {
                    let k = self.key_str(key);
                    let v = rendered[i].clone().unwrap_or_default();
                    let gap = " ".repeat(width[i].saturating_sub(k.chars().count()));
                    self.line(indent, &format!("{k}{gap} = {v}"));
                }
                EntryKind::Block { key, body } => {
                    let k = self.key_str(key);
                    self.block_stmt(&k, body, indent);
                }
                EntryKind::Copy(pair) => {
                    let (src, dst) = &**pair;
                    let s = format!(
                        "copy {} to {}",
                        self.expr(src, indent),
                        self.expr(dst, indent)
                    );
                    self.line(indent, &s);
                }
                EntryKind::Run(x) => {
                    let s = format!("run {}", self.expr(x, indent));
                    self.line(indent, &s);
                }
                EntryKind::Test(x) => {
                    let s = format!("test {}", self.expr(x, indent));
                    self.line(indent, &s);
                }
                EntryKind::Spread(x) => {
                    let s = format!("...{}", self.expr(x, indent));
                    self.line(indent, &s);
                }
            }
            self.trailing(&e.trivia.trailing);
        }
        if !b.dangling.is_empty() {
            self.comment_lines(indent, &b.dangling, b.entries.is_empty());
        }
    }

    // ----- expressions ---------------------------------------------------

    /// Renders an expression whose first line continues the current line at
    /// `indent`; further lines are indented absolutely.
    fn expr(&self, e: &Expr, indent: usize) -> String {
        match &e.kind {
            ExprKind::Int(_)
            | ExprKind::Duration(_)
            | ExprKind::Size(_)
            | ExprKind::Ip(_)
            | ExprKind::Cidr(_)
            | ExprKind::Addr(_)
            | ExprKind::Digest(_)
            | ExprKind::Str(_)
            | ExprKind::Bool(_)
            | ExprKind::None
            | ExprKind::Name(_)
            | ExprKind::Error => self.slice(e.span).to_owned(),
            ExprKind::List(l) => self.list(&l.items, &l.dangling, l.multiline, indent),
            ExprKind::Record(b) => self.record(None, b, indent),
            ExprKind::Tagged(tb) => self.record(Some(&tb.0.name), &tb.1, indent),
            ExprKind::Field(base, name) => format!("{}.{}", self.expr(base, indent), name.name),
            ExprKind::Index(base, idx) => {
                format!("{}[{}]", self.expr(base, indent), self.expr(idx, indent))
            }
            ExprKind::Call(callee, args) => {
                let args: Vec<String> = args
                    .iter()
                    .map(|a| match &a.name {
                        Some(n) => format!("{} = {}", n.name, self.expr(&a.value, indent)),
                        None => self.expr(&a.value, indent),
                    })
                    .collect();
                format!("{}({})", self.expr(callee, indent), args.join(", "))
            }
            ExprKind::Unary(op, x) => match op {
                UnOp::Neg => format!("-{}", self.expr(x, indent)),
                UnOp::Not => format!("not {}", self.expr(x, indent)),
            },
            ExprKind::Binary(op, l, r) => format!(
                "{} {} {}",
                self.expr(l, indent),
                op.as_str(),
                self.expr(r, indent)
            ),
            ExprKind::If(c, a, b) => format!(
                "if {} then {} else {}",
                self.expr(c, indent),
                self.expr(a, indent),
                self.expr(b, indent)
            ),
            ExprKind::Quant {
                all,
                var,
                coll,
                body,
            } => format!(
                "{} {} in {}: {}",
                if *all { "all" } else { "any" },
                var.name,
                self.expr(coll, indent),
                self.expr(body, indent)
            ),
            ExprKind::Paren(x) => format!("({})", self.expr(x, indent)),
        }
    }

    fn list(
        &self,
        items: &[ListItem],
        dangling: &[Comment],
        multiline: bool,
        indent: usize,
    ) -> String {
        let has_comments = !dangling.is_empty()
            || items
                .iter()
                .any(|i| !i.trivia.leading.is_empty() || i.trivia.trailing.is_some());
        if items.is_empty() && dangling.is_empty() {
            return "[]".into();
        }
        if !multiline && !has_comments {
            let parts: Vec<String> = items.iter().map(|i| self.expr(&i.expr, indent)).collect();
            let inline = format!("[{}]", parts.join(", "));
            if !inline.contains('\n') && inline.len() + indent * 2 <= WIDTH {
                return inline;
            }
        }
        let mut s = String::from("[\n");
        let bodies: Vec<String> = items
            .iter()
            .map(|i| format!("{},", self.expr(&i.expr, indent + 1)))
            .collect();
        // Trailing comments line up within runs of single-line elements.
        let mut widths = vec![0usize; items.len()];
        let mut start = 0;
        while start < items.len() {
            let mut end = start + 1;
            while end < items.len()
                && !items[end].trivia.blank_before
                && items[end].trivia.leading.is_empty()
                && !bodies[end].contains('\n')
            {
                end += 1;
            }
            let w = (start..end)
                .filter(|k| items[*k].trivia.trailing.is_some() && !bodies[*k].contains('\n'))
                .map(|k| bodies[k].chars().count())
                .max()
                .unwrap_or(0);
            for slot in widths.iter_mut().take(end).skip(start) {
                *slot = w;
            }
            start = end;
        }
        for (i, item) in items.iter().enumerate() {
            if i > 0
                && (item.trivia.blank_before
                    || item.trivia.leading.first().is_some_and(|c| c.blank_before))
            {
                s.push('\n');
            }
            for c in &item.trivia.leading {
                s.push_str(&pad(indent + 1));
                s.push_str(&c.text);
                s.push('\n');
            }
            s.push_str(&pad(indent + 1));
            s.push_str(&bodies[i]);
            if let Some(c) = &item.trivia.trailing {
                let gap = widths[i].saturating_sub(bodies[i].chars().count());
                s.push_str(&" ".repeat(gap + 1));
                s.push_str(&c.text);
            }
            s.push('\n');
        }
        for c in dangling {
            s.push_str(&pad(indent + 1));
            s.push_str(&c.text);
            s.push('\n');
        }
        s.push_str(&pad(indent));
        s.push(']');
        s
    }

    fn record(&self, tag: Option<&str>, b: &Block, indent: usize) -> String {
        let prefix = tag.map(|t| format!("{t} ")).unwrap_or_default();
        if b.entries.is_empty() && b.dangling.is_empty() {
            return format!("{prefix}{{}}");
        }
        let simple = !b.multiline
            && b.dangling.is_empty()
            && b.entries.iter().all(|e| {
                e.trivia.leading.is_empty()
                    && e.trivia.trailing.is_none()
                    && matches!(e.kind, EntryKind::Attr { .. } | EntryKind::Spread(_))
            });
        if simple {
            let parts: Vec<String> = b
                .entries
                .iter()
                .map(|e| match &e.kind {
                    EntryKind::Attr { key, value } => {
                        format!("{} = {}", self.key_str(key), self.expr(value, indent))
                    }
                    EntryKind::Spread(x) => format!("...{}", self.expr(x, indent)),
                    _ => String::new(),
                })
                .collect();
            let inline = format!("{prefix}{{ {} }}", parts.join(", "));
            if !inline.contains('\n') && inline.len() + indent * 2 <= WIDTH {
                return inline;
            }
        }
        let mut sub = Printer {
            src: self.src,
            out: String::new(),
        };
        sub.entries(b, indent + 1);
        format!("{prefix}{{\n{}{}}}", sub.out, pad(indent))
    }
}

fn type_str(t: &TypeExpr) -> String {
    crate::eval::type_text(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(s: &str) -> String {
        match format("t.glint", s.as_bytes()) {
            Ok(s) => s,
            Err(d) => panic!("{}", d.render_human(false)),
        }
    }

    #[test]
    fn aligns_runs_and_keeps_comments() {
        let src = "// head\nservice web {\n  image = image.a // the image\n  instances=3\n\n  // why\n  env = { A = \"b\" }\n}\nlet x=[1,2]\n";
        let out = fmt(src);
        assert_eq!(
            out,
            "// head\nservice web {\n  image     = image.a // the image\n  instances = 3\n\n  // why\n  env = { A = \"b\" }\n}\n\nlet x = [1, 2]\n"
        );
        assert_eq!(fmt(&out), out);
    }

    #[test]
    fn multiline_lists_keep_their_comments() {
        let src = "let ports = [\n  22, // ssh\n  // web\n  80,\n]\n";
        let out = fmt(src);
        assert_eq!(out, src);
    }

    #[test]
    fn syntax_errors_are_not_formatted() {
        assert!(format("t.glint", b"service web {").is_err());
    }
}
