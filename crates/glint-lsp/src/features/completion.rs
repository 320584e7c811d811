//! Completion: block kinds and item keywords at the start of an item;
//! field names (from the schema's table of the block at the cursor, those
//! already written left out); enum words, references and an example after
//! `key =`; declared names after `service.` (and the other kinds) and
//! module members after an import's name; units after a number; names in
//! scope elsewhere.

use super::{Place, indexed};
use crate::text::Encoding;
use crate::workspace::Workspace;
use glint_lang::ide::{BlockPath, DefKind, Position, Root};
use glint_lang::parser::DECL_KINDS;
use glint_lang::schema::{self, BlockKind, FieldDefault, FieldInfo};
use glint_lang::value::Kind;
use glint_lang::{FileId, Span};
use lsp_types::{
    CompletionItem, CompletionItemKind, CompletionTextEdit, Documentation, InsertTextFormat,
    MarkupContent, MarkupKind, TextEdit,
};

const DURATION_UNITS: &[(&str, &str)] = &[
    ("ms", "milliseconds"),
    ("s", "seconds"),
    ("m", "minutes"),
    ("h", "hours"),
    ("d", "days"),
];
const SIZE_UNITS: &[(&str, &str)] = &[
    ("B", "bytes"),
    ("KiB", "kibibytes (1024 bytes)"),
    ("MiB", "mebibytes (1024 KiB)"),
    ("GiB", "gibibytes (1024 MiB)"),
    ("TiB", "tebibytes (1024 GiB)"),
];

/// Completion items at a place.
pub fn complete(ws: &mut Workspace<'_>, p: &Place, snippets: bool) -> Vec<CompletionItem> {
    let Some(doc) = ws.docs.values().find(|d| d.path == p.path) else {
        return Vec::new();
    };
    let text = doc.text.clone();
    let lines = doc.lines.clone();
    let enc = ws.encoding;
    let pos = glint_lang::ide::position_at(&text, FileId(0), p.offset);
    let mut out = Out {
        text: &text,
        lines: &lines,
        enc,
        snippets,
        items: Vec::new(),
    };
    // What needs only the schema is answered without the index.
    match &pos {
        Position::None => return Vec::new(),
        Position::Item { prefix } => {
            out.items_start(*prefix);
            return out.items;
        }
        Position::Key {
            path,
            present,
            prefix,
        } if matches!(path.root, Root::Decl(_)) => {
            if let Some(block) = path.block(None) {
                out.keys(block, present, *prefix);
            }
            return out.items;
        }
        _ => {}
    }
    let names = ws
        .envs
        .get(&p.main)
        .and_then(|e| e.analysis.as_ref())
        .map(|a| a.names.clone())
        .unwrap_or_default();
    let Some((index, file)) = indexed(ws, p) else {
        return Vec::new();
    };
    let root_block = |path: &BlockPath| -> Option<BlockKind> {
        match &path.root {
            Root::Fn(n) | Root::Let(n) => {
                index.project.spread_kind(file, n).map(BlockKind::of_decl)
            }
            _ => None,
        }
    };
    match pos {
        Position::None => {}
        Position::Item { prefix } => out.items_start(prefix),
        Position::Key {
            path,
            present,
            prefix,
        } => {
            if let Some(block) = path.block(root_block(&path)) {
                out.keys(block, &present, prefix);
            }
        }
        Position::Value { path, key, prefix } => {
            let field = path
                .block(root_block(&path))
                .and_then(|b| schema::field(b, &key));
            if let Some(f) = field {
                out.values(f, index, &names, prefix);
            }
            out.scope(index, file, p.offset, prefix);
        }
        Position::Expr { prefix, .. } => out.scope(index, file, p.offset, prefix),
        Position::Member { base, prefix } => {
            let fi = index.project.file(file);
            let local = fi.and_then(|f| {
                f.visible_at(u32::try_from(p.offset).unwrap_or(u32::MAX))
                    .into_iter()
                    .find(|d| d.name == base)
                    .cloned()
            });
            match (local, Kind::from_keyword(&base)) {
                (Some(d), _) if d.kind == DefKind::Import => {
                    let i = fi.and_then(|f| f.defs.iter().position(|x| *x == d));
                    if let Some(i) = i {
                        for m in index.project.members(file, i) {
                            out.push(
                                &m.name,
                                if m.kind == DefKind::Fn {
                                    CompletionItemKind::FUNCTION
                                } else {
                                    CompletionItemKind::VARIABLE
                                },
                                &m.detail,
                                Some(m.docs.clone()).filter(|d| !d.is_empty()),
                                prefix,
                                &m.name,
                                None,
                            );
                        }
                    }
                }
                (None, Some(kind)) => {
                    for n in declared(index, &names, kind) {
                        out.push(
                            &n,
                            CompletionItemKind::REFERENCE,
                            &format!("{} {n}", kind.keyword()),
                            None,
                            prefix,
                            &n,
                            None,
                        );
                    }
                }
                _ => {}
            }
        }
        Position::Unit { path, key, prefix } => {
            let ty = path
                .as_ref()
                .zip(key.as_ref())
                .and_then(|(p, k)| p.block(root_block(p)).and_then(|b| schema::field(b, k)))
                .map(|f| f.ty)
                .unwrap_or("");
            let (durations, sizes) = (ty.contains("duration"), ty.contains("size"));
            let both = !durations && !sizes;
            for (unit, doc) in DURATION_UNITS
                .iter()
                .filter(|_| durations || both)
                .chain(SIZE_UNITS.iter().filter(|_| sizes || both))
            {
                out.push(
                    unit,
                    CompletionItemKind::UNIT,
                    doc,
                    None,
                    prefix,
                    unit,
                    None,
                );
            }
        }
    }
    out.items
}

/// Declared names of a kind: from the compiled environment (templates
/// expanded) and from the index (declarations that did not compile).
fn declared(
    index: &crate::workspace::Index,
    names: &std::collections::BTreeMap<Kind, Vec<String>>,
    kind: Kind,
) -> Vec<String> {
    let mut all: Vec<String> = names.get(&kind).cloned().unwrap_or_default();
    all.extend(
        index
            .project
            .decl_names(kind)
            .into_iter()
            .map(|(n, _)| n.to_owned()),
    );
    all.sort();
    all.dedup();
    all
}

struct Out<'a> {
    text: &'a str,
    lines: &'a crate::text::LineIndex,
    enc: Encoding,
    snippets: bool,
    items: Vec<CompletionItem>,
}

impl Out<'_> {
    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        label: &str,
        kind: CompletionItemKind,
        detail: &str,
        doc: Option<String>,
        prefix: Span,
        insert: &str,
        snippet: Option<String>,
    ) {
        let (new_text, format) = match snippet.filter(|_| self.snippets) {
            Some(s) => (s, InsertTextFormat::SNIPPET),
            None => (insert.to_owned(), InsertTextFormat::PLAIN_TEXT),
        };
        let range = self.lines.range(
            self.text,
            prefix.start as usize,
            prefix.end as usize,
            self.enc,
        );
        let sort = format!("{:04}", self.items.len());
        self.items.push(CompletionItem {
            label: label.to_owned(),
            kind: Some(kind),
            detail: (!detail.is_empty()).then(|| detail.to_owned()),
            documentation: doc.map(|d| {
                Documentation::MarkupContent(MarkupContent {
                    kind: MarkupKind::Markdown,
                    value: d,
                })
            }),
            sort_text: Some(sort),
            insert_text_format: Some(format),
            text_edit: Some(CompletionTextEdit::Edit(TextEdit { range, new_text })),
            ..CompletionItem::default()
        });
    }

    fn items_start(&mut self, prefix: Span) {
        for k in DECL_KINDS {
            let info = Kind::from_keyword(k).map(|kind| BlockKind::of_decl(kind).info());
            let doc = info.map(|i| i.doc.to_owned());
            self.push(
                k,
                CompletionItemKind::KEYWORD,
                doc.as_deref().unwrap_or(""),
                doc.clone(),
                prefix,
                k,
                Some(format!("{k} ${{1:name}} {{\n\t$0\n}}")),
            );
        }
        for (k, snippet, doc) in [
            (
                "import",
                "import \"${1:lib/file.glint}\" as ${2:name}",
                "use another file's bindings and functions",
            ),
            ("let", "let ${1:name} = $0", "a named value"),
            (
                "fn",
                "fn ${1:name}(${2}) = $0",
                "a function (a template returning a record)",
            ),
            (
                "for",
                "for ${1:x} in ${2:list} {\n\t$0\n}",
                "repeat declarations for each element",
            ),
        ] {
            self.push(
                k,
                CompletionItemKind::KEYWORD,
                doc,
                None,
                prefix,
                k,
                Some(snippet.to_owned()),
            );
        }
    }

    fn keys(&mut self, block: BlockKind, present: &[String], prefix: Span) {
        for f in schema::fields(block) {
            if !f.settable || present.iter().any(|p| p == f.name) {
                continue;
            }
            let snippet = if f.ty.starts_with("block") {
                format!("{} {{\n\t$0\n}}", f.name)
            } else if f.ty.starts_with("list of `{") {
                format!("{} = [{{ $0 }}]", f.name)
            } else {
                format!("{} = $0", f.name)
            };
            let detail = match f.default {
                FieldDefault::Required => format!("{} (required)", f.ty),
                _ => f.ty.to_owned(),
            };
            self.push(
                f.name,
                CompletionItemKind::FIELD,
                &detail,
                Some(f.describe()),
                prefix,
                &format!("{} = ", f.name),
                Some(snippet),
            );
        }
        for s in block.info().statements {
            self.push(
                s.keyword,
                CompletionItemKind::KEYWORD,
                s.syntax,
                Some(s.doc.to_owned()),
                prefix,
                s.keyword,
                None,
            );
        }
    }

    fn values(
        &mut self,
        f: &FieldInfo,
        index: &crate::workspace::Index,
        names: &std::collections::BTreeMap<Kind, Vec<String>>,
        prefix: Span,
    ) {
        for w in f.words {
            self.push(
                w,
                CompletionItemKind::ENUM_MEMBER,
                f.ty,
                None,
                prefix,
                w,
                None,
            );
        }
        if !f.ty.starts_with("list of `{") {
            for k in DECL_KINDS {
                let Some(kind) = Kind::from_keyword(k) else {
                    continue;
                };
                if !f.ty.contains(&format!("`{k}.NAME`")) {
                    continue;
                }
                for n in declared(index, names, kind) {
                    let r = format!("{k}.{n}");
                    self.push(
                        &r,
                        CompletionItemKind::REFERENCE,
                        "",
                        None,
                        prefix,
                        &r,
                        None,
                    );
                }
            }
        }
        if !f.example.is_empty() {
            self.push(
                f.example,
                CompletionItemKind::VALUE,
                "example",
                None,
                prefix,
                f.example,
                None,
            );
        }
    }

    /// Names visible at the offset, declaration kinds and built-ins.
    fn scope(
        &mut self,
        index: &crate::workspace::Index,
        file: FileId,
        offset: usize,
        prefix: Span,
    ) {
        if let Some(fi) = index.project.file(file) {
            let off = u32::try_from(offset).unwrap_or(u32::MAX);
            let mut seen = std::collections::HashSet::new();
            for d in fi.visible_at(off) {
                if !seen.insert(d.name.clone()) {
                    continue;
                }
                let kind = match d.kind {
                    DefKind::Fn => CompletionItemKind::FUNCTION,
                    DefKind::Import => CompletionItemKind::MODULE,
                    _ => CompletionItemKind::VARIABLE,
                };
                self.push(
                    &d.name,
                    kind,
                    &d.detail,
                    Some(d.docs.clone()).filter(|x| !x.is_empty()),
                    prefix,
                    &d.name,
                    None,
                );
            }
        }
        for k in DECL_KINDS {
            if matches!(*k, "environment" | "policy") {
                continue;
            }
            self.push(
                k,
                CompletionItemKind::MODULE,
                &format!("`{k}.NAME` refers to a declared {k}"),
                None,
                prefix,
                k,
                None,
            );
        }
    }
}
