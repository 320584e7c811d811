//! Positions: byte offsets (what the compiler's spans are) to and from
//! LSP positions (a line and a character counted in the negotiated
//! encoding: UTF-16 code units by default, or bytes when the client offers
//! UTF-8), and edits of a document's text.

use lsp_types::{Position, Range, TextDocumentContentChangeEvent};

/// How the client counts characters within a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// UTF-16 code units (the protocol's default).
    Utf16,
    /// Bytes (UTF-8 code units).
    Utf8,
}

impl Encoding {
    /// The protocol's name for it.
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Utf16 => "utf-16",
            Encoding::Utf8 => "utf-8",
        }
    }
}

/// Where each line of a text starts.
#[derive(Debug, Clone, Default)]
pub struct LineIndex {
    starts: Vec<usize>,
    len: usize,
}

impl LineIndex {
    /// The line table of `text`.
    pub fn new(text: &str) -> LineIndex {
        let mut starts = vec![0];
        starts.extend(
            text.bytes()
                .enumerate()
                .filter(|(_, b)| *b == b'\n')
                .map(|(i, _)| i + 1),
        );
        LineIndex {
            starts,
            len: text.len(),
        }
    }

    /// The position of byte `offset` (clamped to the text).
    pub fn position(&self, text: &str, offset: usize, enc: Encoding) -> Position {
        let offset = offset.min(self.len).min(text.len());
        let line = match self.starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i.saturating_sub(1),
        };
        let start = self.starts[line];
        let mut end = offset;
        while end > start && !text.is_char_boundary(end) {
            end -= 1;
        }
        let seg = text.get(start..end).unwrap_or("");
        let character = match enc {
            Encoding::Utf8 => seg.len(),
            Encoding::Utf16 => seg.encode_utf16().count(),
        };
        Position {
            line: u32::try_from(line).unwrap_or(u32::MAX),
            character: u32::try_from(character).unwrap_or(u32::MAX),
        }
    }

    /// The byte offset of a position; a character past the end of its line
    /// means the line's end, a line past the end means the text's end.
    pub fn offset(&self, text: &str, pos: Position, enc: Encoding) -> usize {
        let Some(&start) = self.starts.get(pos.line as usize) else {
            return text.len();
        };
        let end = self
            .starts
            .get(pos.line as usize + 1)
            .map(|e| e - 1)
            .unwrap_or(text.len());
        let line = text.get(start..end).unwrap_or("");
        let want = pos.character as usize;
        let mut units = 0;
        for (i, c) in line.char_indices() {
            if units >= want {
                return start + i;
            }
            units += match enc {
                Encoding::Utf8 => c.len_utf8(),
                Encoding::Utf16 => c.len_utf16(),
            };
        }
        // `\r\n`: the end of the line is before the `\r`.
        start + line.strip_suffix('\r').map_or(line.len(), str::len)
    }

    /// The range of bytes `start..end`.
    pub fn range(&self, text: &str, start: usize, end: usize, enc: Encoding) -> Range {
        Range {
            start: self.position(text, start, enc),
            end: self.position(text, end, enc),
        }
    }
}

/// Applies the changes of one `didChange`, in order, to `text`.
pub fn apply_changes(text: &mut String, changes: &[TextDocumentContentChangeEvent], enc: Encoding) {
    for ch in changes {
        match ch.range {
            None => text.clone_from(&ch.text),
            Some(r) => {
                let idx = LineIndex::new(text);
                let a = idx.offset(text, r.start, enc);
                let b = idx.offset(text, r.end, enc).max(a);
                text.replace_range(a..b, &ch.text);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(line: u32, character: u32) -> Position {
        Position { line, character }
    }

    #[test]
    fn positions_count_utf16_units_or_bytes() {
        let text = "ab\nçé𝄞x\n";
        let idx = LineIndex::new(text);
        let x = text.find('x').unwrap_or(0);
        assert_eq!(idx.position(text, x, Encoding::Utf16), p(1, 4));
        assert_eq!(idx.position(text, x, Encoding::Utf8), p(1, 8));
        assert_eq!(idx.offset(text, p(1, 4), Encoding::Utf16), x);
        assert_eq!(idx.offset(text, p(1, 8), Encoding::Utf8), x);
        // Past the end of a line: the line's end; past the last line: the end.
        assert_eq!(idx.offset(text, p(0, 99), Encoding::Utf16), 2);
        assert_eq!(idx.offset(text, p(9, 0), Encoding::Utf16), text.len());
        assert_eq!(idx.position(text, text.len(), Encoding::Utf16), p(2, 0));
    }

    #[test]
    fn a_crlf_line_ends_before_its_carriage_return() {
        let text = "ab\r\ncd";
        let idx = LineIndex::new(text);
        assert_eq!(idx.offset(text, p(0, 9), Encoding::Utf8), 2);
        assert_eq!(idx.offset(text, p(1, 1), Encoding::Utf8), 5);
    }

    #[test]
    fn changes_apply_in_order() {
        let mut text = String::from("service web {\n  instances = 2\n}\n");
        let change = |l1, c1, l2, c2, t: &str| TextDocumentContentChangeEvent {
            range: Some(Range {
                start: p(l1, c1),
                end: p(l2, c2),
            }),
            range_length: None,
            text: t.to_owned(),
        };
        apply_changes(
            &mut text,
            &[change(1, 14, 1, 15, "\"two\""), change(0, 8, 0, 11, "api")],
            Encoding::Utf16,
        );
        assert_eq!(text, "service api {\n  instances = \"two\"\n}\n");
        apply_changes(
            &mut text,
            &[TextDocumentContentChangeEvent {
                range: None,
                range_length: None,
                text: "x".into(),
            }],
            Encoding::Utf16,
        );
        assert_eq!(text, "x");
    }
}
