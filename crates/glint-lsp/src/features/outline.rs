//! Document symbols: the file's outline (declarations with their fields,
//! bindings, functions, imports, `for` loops), from its text alone.

use crate::text::{Encoding, LineIndex};
use glint_lang::FileId;
use glint_lang::ide::symbols::{OutlineItem, OutlineKind};
use glint_lang::ide::{DefKind, FileIndex};
use glint_lang::value::Kind;
use lsp_types::{DocumentSymbol, SymbolKind};

/// The outline of a document.
pub fn outline(text: &str, lines: &LineIndex, enc: Encoding) -> Vec<DocumentSymbol> {
    FileIndex::outline(text, FileId(0))
        .iter()
        .map(|o| symbol(o, text, lines, enc))
        .collect()
}

fn kind_of(k: OutlineKind) -> SymbolKind {
    match k {
        OutlineKind::Field => SymbolKind::FIELD,
        OutlineKind::For => SymbolKind::NAMESPACE,
        OutlineKind::Def(d) => match d {
            DefKind::Decl(Kind::Environment) => SymbolKind::MODULE,
            DefKind::Decl(Kind::Image) => SymbolKind::PACKAGE,
            DefKind::Decl(Kind::Service) => SymbolKind::CLASS,
            DefKind::Decl(Kind::Endpoint) => SymbolKind::INTERFACE,
            DefKind::Decl(Kind::Rule) => SymbolKind::EVENT,
            DefKind::Decl(Kind::Variable) => SymbolKind::VARIABLE,
            DefKind::Decl(Kind::Volume) => SymbolKind::STRUCT,
            DefKind::Decl(Kind::Notify) => SymbolKind::EVENT,
            DefKind::Decl(Kind::Policy) => SymbolKind::KEY,
            DefKind::Let => SymbolKind::CONSTANT,
            DefKind::Fn => SymbolKind::FUNCTION,
            DefKind::Import => SymbolKind::MODULE,
            DefKind::Param | DefKind::ForVar | DefKind::QuantVar => SymbolKind::VARIABLE,
        },
    }
}

#[allow(deprecated)] // `deprecated` is a required field of the type
fn symbol(o: &OutlineItem, text: &str, lines: &LineIndex, enc: Encoding) -> DocumentSymbol {
    let range = lines.range(text, o.span.start as usize, o.span.end as usize, enc);
    let mut selection = lines.range(
        text,
        o.name_span.start as usize,
        o.name_span.end as usize,
        enc,
    );
    // The selection must lie inside the range.
    if selection.start < range.start || selection.end > range.end {
        selection = range;
    }
    DocumentSymbol {
        name: if o.name.is_empty() {
            "_".into()
        } else {
            o.name.clone()
        },
        detail: (!o.detail.is_empty()).then(|| o.detail.clone()),
        kind: kind_of(o.kind),
        tags: None,
        deprecated: None,
        range,
        selection_range: selection,
        children: (!o.children.is_empty()).then(|| {
            o.children
                .iter()
                .map(|c| symbol(c, text, lines, enc))
                .collect()
        }),
    }
}
