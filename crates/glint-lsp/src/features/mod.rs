//! The editor features, one file each. Every feature works from the
//! current text of the documents: requests are answered after every edit
//! sent before them has been applied (the main loop is sequential), and
//! the index they read is rebuilt when a document changed.

pub mod actions;
pub mod completion;
pub mod format;
pub mod hover;
pub mod navigation;
pub mod outline;
pub mod semantic;

use crate::text::Encoding;
use crate::workspace::{File, Index, Workspace};
use glint_lang::{FileId, Span};
use lsp_types::{Location, Position, Range, Uri};
use std::path::PathBuf;

/// A request's place: the document's environment, its path and the byte
/// offset of the position.
pub struct Place {
    /// The environment's main file.
    pub main: PathBuf,
    /// The document's path.
    pub path: PathBuf,
    /// The byte offset.
    pub offset: usize,
}

/// Where a request points.
pub fn place(ws: &Workspace<'_>, uri: &Uri, pos: Position) -> Option<Place> {
    let doc = ws.docs.get(uri)?;
    let main = ws.env_of(uri)?.clone();
    Some(Place {
        main,
        path: doc.path.clone(),
        offset: doc.lines.offset(&doc.text, pos, ws.encoding),
    })
}

/// The range of a span of an indexed file.
pub fn range(file: &File, span: Span, enc: Encoding) -> Range {
    file.lines
        .range(&file.text, span.start as usize, span.end as usize, enc)
}

/// The location of a span of the index (`None` for the standard library).
pub fn location(index: &Index, span: Span, enc: Encoding) -> Option<Location> {
    let f = index.file(span.file)?;
    Some(Location {
        uri: f.info.uri.clone()?,
        range: range(f, span, enc),
    })
}

/// The index of a place's environment and the file's id in it.
pub fn indexed<'w>(ws: &'w mut Workspace<'_>, p: &Place) -> Option<(&'w Index, FileId)> {
    let index = ws.index(&p.main)?;
    let id = index.file_id(&p.path)?;
    Some((index, id))
}
