//! Hover: a duration or size literal in words; a field key's type,
//! default and doc (from the schema); a reference's declaration (its
//! signature, comments and file); a declaration kind's description; and
//! the explanation of every diagnostic at the position.

use super::{Place, indexed, range};
use crate::diagnostics::{code_of, explain_markdown};
use crate::workspace::Workspace;
use glint_lang::ide::context::key_at;
use glint_lang::ide::literals::literal_at;
use glint_lang::ide::{DefKind, Position as Pos, Root, position_at};
use glint_lang::parser::DECL_KINDS;
use glint_lang::schema::BlockKind;
use glint_lang::value::Kind;
use glint_lang::{FileId, Span};
use lsp_types::{Hover, HoverContents, MarkupContent, MarkupKind, Uri};

/// The hover at a place.
pub fn hover(ws: &mut Workspace<'_>, uri: &Uri, p: &Place) -> Option<Hover> {
    let doc = ws.docs.get(uri)?;
    let text = doc.text.clone();
    let enc = ws.encoding;
    let pos = doc.lines.position(&text, p.offset, enc);
    let explanations: Vec<String> = ws
        .envs
        .get(&p.main)
        .and_then(|e| e.published.get(uri))
        .map(|ds| {
            ds.iter()
                .filter(|d| d.range.start <= pos && pos <= d.range.end)
                .filter_map(code_of)
                .map(explain_markdown)
                .collect()
        })
        .unwrap_or_default();
    let (index, file) = indexed(ws, p)?;
    let f = index.file(file)?;
    let mut parts: Vec<String> = Vec::new();
    let mut at: Option<Span> = None;
    let off = u32::try_from(p.offset).ok()?;
    if let Some((span, words)) = literal_at(&text, file, p.offset) {
        parts.push(format!(
            "`{}`: {words}",
            &text[span.start as usize..span.end as usize]
        ));
        at = Some(span);
    } else if let Some((path, key, span)) = key_at(&text, file, p.offset) {
        let root = match &path.root {
            Root::Fn(n) | Root::Let(n) => {
                index.project.spread_kind(file, n).map(BlockKind::of_decl)
            }
            _ => None,
        };
        if let Some(info) = path
            .block(root)
            .and_then(|b| glint_lang::schema::field(b, &key))
        {
            parts.push(info.describe());
            at = Some(span);
        }
    } else if let Some((sym, span)) = index.project.symbol_at(file, off) {
        for (df, di) in index.project.definitions(&sym) {
            let Some(d) = index.project.def(df, di) else {
                continue;
            };
            let mut s = format!("```glint\n{}\n```", d.detail);
            if let DefKind::Decl(k) = d.kind {
                s.push_str(&format!("\n\n{}", BlockKind::of_decl(k).info().doc));
                if d.template.is_some() {
                    s.push_str(&format!(
                        "\n\nDeclared by a `for` loop: `{}` is one of its names.",
                        sym_name(&sym)
                    ));
                }
            } else {
                s.push_str(&format!("\n\n*{}*", d.kind.describe()));
            }
            if !d.docs.is_empty() {
                s.push_str(&format!("\n\n{}", d.docs));
            }
            if let Some(def_file) = index.file(df) {
                let line = def_file
                    .lines
                    .position(&def_file.text, d.name_span.start as usize, enc)
                    .line;
                s.push_str(&format!(
                    "\n\nDefined in `{}`, line {}.",
                    def_file.info.key,
                    line + 1
                ));
            }
            parts.push(s);
        }
        if parts.is_empty() {
            parts.push(format!("`{}` is not declared", sym_name(&sym)));
        }
        at = Some(span);
    } else if let Some((word, span)) = word_at(&text, p.offset)
        && DECL_KINDS.contains(&word)
        && matches!(position_at(&text, FileId(0), span.0), Pos::Item { .. })
        && let Some(kind) = Kind::from_keyword(word)
    {
        let info = BlockKind::of_decl(kind).info();
        parts.push(format!("`{word} NAME {{ ... }}`: {}", info.doc));
        at = Some(Span::new(file, span.0, span.1));
    }
    parts.extend(explanations);
    if parts.is_empty() {
        return None;
    }
    Some(Hover {
        contents: HoverContents::Markup(MarkupContent {
            kind: MarkupKind::Markdown,
            value: parts.join("\n\n---\n\n"),
        }),
        range: at.map(|s| range(f, s, enc)),
    })
}

fn sym_name(sym: &glint_lang::ide::Symbol) -> String {
    match sym {
        glint_lang::ide::Symbol::Decl(k, n) => format!("{}.{n}", k.keyword()),
        glint_lang::ide::Symbol::Binding(..) => "this name".into(),
    }
}

/// The name at `offset` and its byte range.
fn word_at(text: &str, offset: usize) -> Option<(&str, (usize, usize))> {
    let b = text.as_bytes();
    let is = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut s = offset.min(b.len());
    while s > 0 && is(b[s - 1]) {
        s -= 1;
    }
    let mut e = offset.min(b.len());
    while e < b.len() && is(b[e]) {
        e += 1;
    }
    (e > s).then(|| (&text[s..e], (s, e)))
}
