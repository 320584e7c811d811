//! Source files and spans.
//!
//! Every loaded file gets a [`FileId`] in a [`SourceMap`]; a [`Span`] is a
//! byte range in one file. Line and column numbers are computed only when a
//! diagnostic is rendered.

use serde::Serialize;

/// The index of a file in a [`SourceMap`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize)]
pub struct FileId(pub u32);

/// A byte range in one source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Span {
    /// The file.
    pub file: FileId,
    /// Byte offset of the first byte.
    pub start: u32,
    /// Byte offset one past the last byte.
    pub end: u32,
}

impl Span {
    /// A span in `file` from `start` to `end`.
    pub fn new(file: FileId, start: usize, end: usize) -> Span {
        Span {
            file,
            start: u32::try_from(start).unwrap_or(u32::MAX),
            end: u32::try_from(end).unwrap_or(u32::MAX),
        }
    }

    /// The smallest span covering both (same file assumed; `self`'s file wins).
    pub fn to(self, other: Span) -> Span {
        if self.file != other.file {
            return self;
        }
        Span {
            file: self.file,
            start: self.start.min(other.start),
            end: self.end.max(other.end),
        }
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        (self.end.saturating_sub(self.start)) as usize
    }

    /// Whether the span is empty.
    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }
}

/// One loaded source file.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// The file's key: its path relative to the environment root, with `/`
    /// (or a `std:` name for the standard library).
    pub key: String,
    /// The name shown in diagnostics (what the user typed, usually).
    pub display: String,
    /// The text (cut at the first invalid UTF-8 byte), shared with the
    /// compiler's own copy.
    pub text: std::sync::Arc<str>,
    line_starts: Vec<u32>,
}

impl SourceFile {
    /// Builds a file and its line table.
    pub fn new(key: String, display: String, text: impl Into<std::sync::Arc<str>>) -> SourceFile {
        let text: std::sync::Arc<str> = text.into();
        let mut line_starts = vec![0];
        for (i, b) in text.bytes().enumerate() {
            if b == b'\n' {
                line_starts.push(u32::try_from(i + 1).unwrap_or(u32::MAX));
            }
        }
        SourceFile {
            key,
            display,
            text,
            line_starts,
        }
    }

    /// Zero-based line index of a byte offset.
    pub fn line_index(&self, offset: u32) -> usize {
        match self.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i.saturating_sub(1),
        }
    }

    /// One-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: u32) -> (usize, usize) {
        let line = self.line_index(offset);
        let start = self.line_starts[line] as usize;
        let end = (offset as usize).min(self.text.len());
        let col = self
            .text
            .get(start..end)
            .map(|s| s.chars().count())
            .unwrap_or(end.saturating_sub(start));
        (line + 1, col + 1)
    }

    /// The text of a zero-based line, without its newline.
    pub fn line_text(&self, line: usize) -> &str {
        let start = self.line_starts.get(line).copied().unwrap_or(0) as usize;
        let end = self
            .line_starts
            .get(line + 1)
            .map(|e| *e as usize)
            .unwrap_or(self.text.len());
        self.text
            .get(start..end)
            .unwrap_or("")
            .trim_end_matches(['\n', '\r'])
    }

    /// Byte offset where a zero-based line starts.
    pub fn line_start(&self, line: usize) -> usize {
        self.line_starts.get(line).copied().unwrap_or(0) as usize
    }

    /// Number of lines.
    pub fn line_count(&self) -> usize {
        self.line_starts.len()
    }

    /// The source text of a span (empty if out of range).
    pub fn slice(&self, span: Span) -> &str {
        self.text
            .get(span.start as usize..span.end as usize)
            .unwrap_or("")
    }
}

/// All files loaded during one compilation.
#[derive(Debug, Clone, Default)]
pub struct SourceMap {
    files: Vec<SourceFile>,
}

impl SourceMap {
    /// An empty map.
    pub fn new() -> SourceMap {
        SourceMap::default()
    }

    /// Adds a file and returns its id.
    pub fn add(
        &mut self,
        key: String,
        display: String,
        text: impl Into<std::sync::Arc<str>>,
    ) -> FileId {
        let id = FileId(u32::try_from(self.files.len()).unwrap_or(u32::MAX));
        self.files.push(SourceFile::new(key, display, text));
        id
    }

    /// A file by id.
    pub fn get(&self, id: FileId) -> Option<&SourceFile> {
        self.files.get(id.0 as usize)
    }

    /// All files, in load order.
    pub fn files(&self) -> impl Iterator<Item = (FileId, &SourceFile)> {
        self.files
            .iter()
            .enumerate()
            .map(|(i, f)| (FileId(u32::try_from(i).unwrap_or(u32::MAX)), f))
    }

    /// The text of a span.
    pub fn slice(&self, span: Span) -> &str {
        self.get(span.file).map(|f| f.slice(span)).unwrap_or("")
    }
}

/// Joins a relative path onto the directory of `base` (both with `/`) and
/// normalises `.` and `..`. Leading `..` that climb above the root are kept.
pub fn join_path(base_file: &str, rel: &str) -> String {
    if rel.starts_with('/') {
        return normalize(rel);
    }
    let dir = match base_file.rfind('/') {
        Some(i) => &base_file[..i],
        None => "",
    };
    if dir.is_empty() {
        normalize(rel)
    } else {
        normalize(&format!("{dir}/{rel}"))
    }
}

/// Normalises `.` and `..` components of a `/` path.
pub fn normalize(path: &str) -> String {
    let absolute = path.starts_with('/');
    let trailing = path.ends_with('/') && path.len() > 1;
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if matches!(parts.last(), Some(p) if *p != "..") {
                    parts.pop();
                } else if !absolute {
                    parts.push("..");
                }
            }
            p => parts.push(p),
        }
    }
    let mut out = parts.join("/");
    if absolute {
        out.insert(0, '/');
    }
    if out.is_empty() {
        out.push('.');
    }
    if trailing && !out.ends_with('/') {
        out.push('/');
    }
    out
}

/// Whether the path `path` is the directory `dir` or inside it. Both are
/// keys as [`join_path`] makes them (normalised, `/`-separated, relative to
/// the environment root, which is `.`); an absolute path is only inside an
/// absolute directory. Purely lexical: the loader checks symlinks.
pub fn within(path: &str, dir: &str) -> bool {
    if path.starts_with('/') != dir.starts_with('/') {
        return false;
    }
    let comps = |p: &str| -> Vec<String> {
        normalize(p)
            .split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .map(str::to_owned)
            .collect()
    };
    let (p, d) = (comps(path), comps(dir));
    p.len() >= d.len() && p[..d.len()] == d[..] && !p[d.len()..].iter().any(|c| c == "..")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_join_and_normalise() {
        assert_eq!(join_path("hello.glint", "app/"), "app/");
        assert_eq!(join_path("lib/a.glint", "../b.glint"), "b.glint");
        assert_eq!(join_path("lib/a.glint", "x/./y"), "lib/x/y");
        assert_eq!(join_path("hello.glint", "../../target/x"), "../../target/x");
        assert_eq!(join_path("/abs/p.glint", "../q"), "/q");
        assert_eq!(normalize("a/.."), ".");
    }

    #[test]
    fn within_compares_components_after_normalising() {
        assert!(within("app/bin", "."));
        assert!(within("app/", "."));
        assert!(within(".", "."));
        assert!(!within("../x", "."));
        assert!(!within("..", "."));
        assert!(!within("/etc/passwd", "."));
        assert!(within("../../target/x", "../.."));
        assert!(!within("../../../etc", "../.."));
        assert!(!within("appx/y", "app"));
        assert!(within("app/y", "app/"));
        assert!(within("/abs/dir/a.glint", "/abs/dir"));
        assert!(!within("/abs/other.glint", "/abs/dir"));
    }

    #[test]
    fn line_and_column_count_characters() {
        let f = SourceFile::new("k".into(), "k".into(), "ab\nçd\n");
        assert_eq!(f.line_col(0), (1, 1));
        assert_eq!(f.line_col(3), (2, 1));
        assert_eq!(f.line_col(5), (2, 2));
        assert_eq!(f.line_text(1), "çd");
    }
}
