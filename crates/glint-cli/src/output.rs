//! Output conventions shared by all commands: colour decisions, exit codes,
//! and making outside text inert before it reaches a terminal ([`inert`]).

use crate::cli::ColorChoice;
use std::io::IsTerminal;

/// Exit code: success.
#[allow(dead_code)]
pub const EXIT_OK: i32 = 0;
/// Exit code: the input or the operation failed.
#[allow(dead_code)]
pub const EXIT_FAILED: i32 = 1;
/// Exit code: usage or IO error.
pub const EXIT_USAGE: i32 = 2;

/// Whether to colour output written to stdout (`stderr` for diagnostics).
#[allow(dead_code)]
pub fn use_color(choice: ColorChoice, stream_is_terminal: bool) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            stream_is_terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        }
    }
}

/// Whether stderr is a terminal.
#[allow(dead_code)]
pub fn stderr_is_terminal() -> bool {
    std::io::stderr().is_terminal()
}

/// Whether stdout is a terminal.
#[allow(dead_code)]
pub fn stdout_is_terminal() -> bool {
    std::io::stdout().is_terminal()
}

/// Text from outside Glint (a tar header, an instance's log, an event
/// message, an error about a file) made inert for a terminal: every control
/// character (C0, DEL, C1) and every Unicode bidirectional override is
/// replaced by a visible escape (`\n`, `\r`, `\t`, `\x1b`, `\u{9b}`,
/// `\u{202e}`), so that nothing printed can move the cursor, change colours,
/// retitle the window or reorder what the reader sees. Printable text,
/// including backslashes, is left as it is; without anything to escape the
/// text is returned borrowed. JSON output needs none of this (serde escapes
/// control characters).
pub fn inert(s: &str) -> std::borrow::Cow<'_, str> {
    escape(s, false)
}

/// [`inert`] for one line of a program's output: the same, except that tabs
/// are kept (they move the cursor only forward, to the next tab stop, and
/// logs are full of them).
pub fn inert_line(s: &str) -> std::borrow::Cow<'_, str> {
    escape(s, true)
}

/// Whether `c` must not reach a terminal as it is.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}' | '\u{061c}' | '\u{2028}' | '\u{2029}')
}

fn escape(s: &str, keep_tabs: bool) -> std::borrow::Cow<'_, str> {
    use std::fmt::Write as _;
    let bad = |c: char| needs_escape(c) && !(keep_tabs && c == '\t');
    if !s.chars().any(bad) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if !bad(c) {
            out.push(c);
            continue;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x80 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_become_visible_escapes() {
        assert!(matches!(
            inert("plain text, C:\\path ünïcode"),
            std::borrow::Cow::Borrowed(_)
        ));
        assert_eq!(inert("\x1b[32mok\x1b[0m"), "\\x1b[32mok\\x1b[0m");
        assert_eq!(
            inert("a\rb\nc\td\x07\x00\x7f"),
            "a\\rb\\nc\\td\\x07\\x00\\x7f"
        );
        // C1 controls (a lone CSI) and bidirectional overrides.
        assert_eq!(inert("x\u{9b}2Jy"), "x\\u{9b}2Jy");
        assert_eq!(inert("abc\u{202e}fed"), "abc\\u{202e}fed");
        // Window-title (OSC) sequences.
        assert_eq!(inert("\x1b]0;owned\x07"), "\\x1b]0;owned\\x07");
        assert_eq!(inert_line("a\tb\x1b[2K"), "a\tb\\x1b[2K");
        // Nothing escapable survives, for every char below U+3000.
        for c in (0u32..0x3000).filter_map(char::from_u32) {
            let s = c.to_string();
            let out = inert(&s);
            assert!(!out.chars().any(needs_escape), "{c:?} became {out:?}");
        }
    }
}
