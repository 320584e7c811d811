//! Go to definition, find references and rename, across the files of the
//! environment (`glint_lang::ide::Project`). An import's path goes to the
//! imported file.

use super::{Place, indexed, location};
use crate::workspace::Workspace;
use glint_lang::ide::project::RenameError;
use lsp_types::{Location, Position, Range, TextEdit, Uri, WorkspaceEdit};
use std::collections::HashMap;

/// Where the name at a place is defined.
pub fn definition(ws: &mut Workspace<'_>, p: &Place) -> Vec<Location> {
    let enc = ws.encoding;
    let Some((index, file)) = indexed(ws, p) else {
        return Vec::new();
    };
    let off = u32::try_from(p.offset).unwrap_or(u32::MAX);
    // An import's path: the file it loads.
    if let Some(fi) = index.project.file(file) {
        for d in &fi.defs {
            if let Some(imp) = &d.import
                && imp.path_span.start <= off
                && off <= imp.path_span.end
            {
                let target = index
                    .files
                    .iter()
                    .find(|f| f.info.key == imp.key)
                    .and_then(|f| f.info.uri.clone());
                return target
                    .map(|uri| Location {
                        uri,
                        range: Range::new(Position::new(0, 0), Position::new(0, 0)),
                    })
                    .into_iter()
                    .collect();
            }
        }
    }
    let Some((sym, _)) = index.project.symbol_at(file, off) else {
        return Vec::new();
    };
    index
        .project
        .definition_spans(&sym)
        .into_iter()
        .filter_map(|s| location(index, s, enc))
        .collect()
}

/// Every use of the name at a place (and its definitions, if asked).
pub fn references(ws: &mut Workspace<'_>, p: &Place, with_definition: bool) -> Vec<Location> {
    let enc = ws.encoding;
    let Some((index, file)) = indexed(ws, p) else {
        return Vec::new();
    };
    let off = u32::try_from(p.offset).unwrap_or(u32::MAX);
    let Some((sym, _)) = index.project.symbol_at(file, off) else {
        return Vec::new();
    };
    let mut spans = index.project.references(&sym);
    if with_definition {
        spans.extend(index.project.definition_spans(&sym));
    }
    spans.sort();
    spans.dedup();
    spans
        .into_iter()
        .filter_map(|s| location(index, s, enc))
        .collect()
}

/// The range a rename at a place would change (the name under the
/// cursor), or why there is none.
pub fn prepare_rename(ws: &mut Workspace<'_>, p: &Place) -> Result<Range, String> {
    let enc = ws.encoding;
    let (index, file) = indexed(ws, p).ok_or("this file is not part of an environment")?;
    let off = u32::try_from(p.offset).unwrap_or(u32::MAX);
    let (_, span) = index
        .project
        .symbol_at(file, off)
        .ok_or_else(|| RenameError::NothingHere.to_string())?;
    // Refused renames are refused here already (a template, a bad target).
    index
        .project
        .rename(file, off, "x")
        .map_err(|e| e.to_string())?;
    location(index, span, enc)
        .map(|l| l.range)
        .ok_or_else(|| "the name is in the standard library".to_owned())
}

/// The edits renaming the name at a place to `new`, in every file.
pub fn rename(ws: &mut Workspace<'_>, p: &Place, new: &str) -> Result<WorkspaceEdit, String> {
    let enc = ws.encoding;
    let (index, file) = indexed(ws, p).ok_or("this file is not part of an environment")?;
    let off = u32::try_from(p.offset).unwrap_or(u32::MAX);
    let edits = index
        .project
        .rename(file, off, new)
        .map_err(|e| e.to_string())?;
    let mut changes: HashMap<Uri, Vec<TextEdit>> = HashMap::new();
    for e in edits {
        let loc = location(index, e.span, enc)
            .ok_or_else(|| "a use is in the standard library, which cannot be edited".to_owned())?;
        changes.entry(loc.uri).or_default().push(TextEdit {
            range: loc.range,
            new_text: e.text,
        });
    }
    Ok(WorkspaceEdit {
        changes: Some(changes),
        document_changes: None,
        change_annotations: None,
    })
}
