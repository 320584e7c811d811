//! Durations and sizes in plain words, for hovers: `90s` is "1 minute 30
//! seconds", `512MiB` is "512 mebibytes (536,870,912 bytes, about 537
//! MB)".

use crate::lexer::{Lexer, TokKind};
use crate::source::{FileId, Span};

/// `n` with thousands separators (`536,870,912`).
fn grouped(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn plural(n: u64, one: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{} {one}s", grouped(n))
    }
}

/// A duration of `ms` milliseconds in words: its parts from days down to
/// milliseconds, then the total in seconds when that says more.
pub fn duration_words(ms: u64) -> String {
    if ms == 0 {
        return "no time at all (0 milliseconds)".into();
    }
    const UNITS: [(u64, &str); 5] = [
        (86_400_000, "day"),
        (3_600_000, "hour"),
        (60_000, "minute"),
        (1_000, "second"),
        (1, "millisecond"),
    ];
    let mut rest = ms;
    let mut parts = Vec::new();
    for (size, name) in UNITS {
        let n = rest / size;
        if n > 0 {
            parts.push(plural(n, name));
            rest %= size;
        }
    }
    let words = parts.join(" ");
    if ms < 1_000 {
        let secs = ms as f64 / 1000.0;
        return format!("{words} ({secs} seconds)");
    }
    if parts.len() == 1 && ms < 60_000 {
        return words;
    }
    if ms.is_multiple_of(1_000) {
        format!("{words} ({})", plural(ms / 1_000, "second"))
    } else {
        format!("{words} ({})", plural(ms, "millisecond"))
    }
}

/// A size of `bytes` in words: the largest binary unit it reaches (exact,
/// or to two decimals), the exact byte count, and the decimal size.
pub fn size_words(bytes: u64) -> String {
    const UNITS: [(u32, &str, &str); 4] = [
        (40, "tebibyte", "TB"),
        (30, "gibibyte", "GB"),
        (20, "mebibyte", "MB"),
        (10, "kibibyte", "kB"),
    ];
    for (shift, name, decimal) in UNITS {
        let unit = 1u64 << shift;
        if bytes >= unit {
            let amount = if bytes.is_multiple_of(unit) {
                plural(bytes / unit, name)
            } else {
                let v = bytes as f64 / unit as f64;
                format!("about {} {name}s", trim(v))
            };
            let dec = bytes as f64
                / 10f64.powi(match decimal {
                    "TB" => 12,
                    "GB" => 9,
                    "MB" => 6,
                    _ => 3,
                });
            return format!(
                "{amount} ({}, about {} {decimal})",
                plural(bytes, "byte"),
                trim(dec)
            );
        }
    }
    plural(bytes, "byte")
}

/// Up to two decimals, trailing zeros removed.
fn trim(v: f64) -> String {
    let s = format!("{v:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_owned()
}

/// The duration or size literal at `offset` of `text`, and its value in
/// words.
pub fn literal_at(text: &str, file: FileId, offset: usize) -> Option<(Span, String)> {
    let off = u32::try_from(offset).ok()?;
    let mut lx = Lexer::new(text, file, 0, text.len());
    loop {
        let t = lx.next_token();
        if t.kind == TokKind::Eof || t.span.start > off {
            return None;
        }
        if off <= t.span.end {
            return match t.kind {
                TokKind::Duration(ms) => Some((t.span, duration_words(ms))),
                TokKind::Size(b) => Some((t.span, size_words(b))),
                _ => None,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(duration_words(12 * 3_600_000), "12 hours (43,200 seconds)");
        assert_eq!(duration_words(90_000), "1 minute 30 seconds (90 seconds)");
        assert_eq!(duration_words(30_000), "30 seconds");
        assert_eq!(duration_words(1_000), "1 second");
        assert_eq!(duration_words(500), "500 milliseconds (0.5 seconds)");
        assert_eq!(
            duration_words(1_500),
            "1 second 500 milliseconds (1,500 milliseconds)"
        );
        assert_eq!(duration_words(7 * 86_400_000), "7 days (604,800 seconds)");
        assert_eq!(duration_words(0), "no time at all (0 milliseconds)");
    }

    #[test]
    fn sizes_give_binary_units_bytes_and_decimal_units() {
        assert_eq!(
            size_words(512 << 20),
            "512 mebibytes (536,870,912 bytes, about 536.87 MB)"
        );
        assert_eq!(
            size_words(20 << 30),
            "20 gibibytes (21,474,836,480 bytes, about 21.47 GB)"
        );
        assert_eq!(
            size_words(1536 << 20),
            "about 1.5 gibibytes (1,610,612,736 bytes, about 1.61 GB)"
        );
        assert_eq!(size_words(100), "100 bytes");
        assert_eq!(size_words(1), "1 byte");
    }

    #[test]
    fn the_literal_under_the_cursor_is_found() {
        let src = "service a {\n  max_age = 12h\n  resources { memory = 2GiB }\n}";
        let at = src.find("12h").unwrap_or(0) + 1;
        let (span, words) = literal_at(src, FileId(0), at).unwrap_or_default();
        assert_eq!(&src[span.start as usize..span.end as usize], "12h");
        assert!(words.starts_with("12 hours"));
        let at = src.find("2GiB").unwrap_or(0) + 4;
        assert!(literal_at(src, FileId(0), at).is_some_and(|(_, w)| w.starts_with("2 gibibytes")));
        assert!(literal_at(src, FileId(0), src.find("max").unwrap_or(0)).is_none());
    }
}
