//! The difference between two versions: what applying one over the other
//! would create, replace and retire (the same plan `glint plan` prints,
//! without live instances), and a line diff of each source file that
//! changed.

use crate::plan::{Plan, Target};
use glint_store::VersionRecord;
use serde::Serialize;
use std::collections::BTreeMap;

/// Files longer than this (lines) are reported changed without a line diff.
const MAX_DIFF_LINES: usize = 4000;

/// Two versions compared.
#[derive(Debug, Clone, Serialize)]
pub struct VersionDiff {
    /// The older side.
    pub from: u64,
    /// The newer side.
    pub to: u64,
    /// Whether their content (environment and image digests) is equal.
    pub same_content: bool,
    /// What going from `from` to `to` replaces, per service and endpoint.
    pub plan: Plan,
    /// Source files that differ.
    pub sources: Vec<FileDiff>,
}

/// One source file that differs.
#[derive(Debug, Clone, Serialize)]
pub struct FileDiff {
    /// Its path.
    pub path: String,
    /// `added`, `removed` or `changed`.
    pub status: &'static str,
    /// The lines, each prefixed `+`, `-` or ` ` (empty when too long).
    pub lines: Vec<String>,
}

/// Compares two versions.
pub fn diff(from: &VersionRecord, to: &VersionRecord) -> VersionDiff {
    let plan = crate::plan::plan(
        Some((from.number, Target::of(from))),
        &BTreeMap::new(),
        &[],
        Target::of(to),
    );
    let old: BTreeMap<&str, &str> = from
        .sources
        .iter()
        .map(|s| (s.path.as_str(), s.text.as_str()))
        .collect();
    let new: BTreeMap<&str, &str> = to
        .sources
        .iter()
        .map(|s| (s.path.as_str(), s.text.as_str()))
        .collect();
    let mut paths: Vec<&str> = old.keys().chain(new.keys()).copied().collect();
    paths.sort_unstable();
    paths.dedup();
    let mut sources = Vec::new();
    for path in paths {
        let (status, a, b) = match (old.get(path), new.get(path)) {
            (Some(a), Some(b)) if a == b => continue,
            (Some(a), Some(b)) => ("changed", *a, *b),
            (Some(a), None) => ("removed", *a, ""),
            (None, Some(b)) => ("added", "", *b),
            (None, None) => continue,
        };
        sources.push(FileDiff {
            path: path.to_owned(),
            status,
            lines: line_diff(a, b),
        });
    }
    VersionDiff {
        from: from.number.0,
        to: to.number.0,
        same_content: from.hash == to.hash,
        plan,
        sources,
    }
}

/// A line diff (longest common subsequence), each line prefixed `+`, `-`
/// or ` `.
pub fn line_diff(a: &str, b: &str) -> Vec<String> {
    let a: Vec<&str> = a.lines().collect();
    let b: Vec<&str> = b.lines().collect();
    if a.len() > MAX_DIFF_LINES || b.len() > MAX_DIFF_LINES {
        return Vec::new();
    }
    // lcs[i][j]: the LCS length of a[i..] and b[j..].
    let w = b.len() + 1;
    let mut lcs = vec![0u32; (a.len() + 1) * w];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i * w + j] = if a[i] == b[j] {
                lcs[(i + 1) * w + j + 1] + 1
            } else {
                lcs[(i + 1) * w + j].max(lcs[i * w + j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            out.push(format!(" {}", a[i]));
            i += 1;
            j += 1;
        } else if j < b.len() && (i == a.len() || lcs[i * w + j + 1] >= lcs[(i + 1) * w + j]) {
            out.push(format!("+{}", b[j]));
            j += 1;
        } else {
            out.push(format!("-{}", a[i]));
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_diffs_keep_common_lines_and_mark_changes() {
        assert_eq!(
            line_diff("a\nb\nc\n", "a\nx\nc\nd\n"),
            vec![" a", "+x", "-b", " c", "+d"]
        );
        assert_eq!(line_diff("", "n\n"), vec!["+n"]);
        assert_eq!(line_diff("same\n", "same\n"), vec![" same"]);
    }
}
