//! Formatting through `glint fmt`'s formatter (`glint_lang::format`): one
//! edit replacing the whole document, none when it is already formatted
//! or does not parse (the diagnostics say why).

use crate::text::{Encoding, LineIndex};
use lsp_types::TextEdit;

/// The edits that format a document.
pub fn format(key: &str, text: &str, lines: &LineIndex, enc: Encoding) -> Vec<TextEdit> {
    match glint_lang::format(key, text.as_bytes()) {
        Ok(formatted) if formatted != text => vec![TextEdit {
            range: lines.range(text, 0, text.len(), enc),
            new_text: formatted,
        }],
        _ => Vec::new(),
    }
}
