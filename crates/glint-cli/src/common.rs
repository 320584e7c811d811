//! Pieces every command shares: the data directory, opening the store, time
//! and table formatting, colour.

use crate::cli::Global;
use crate::output::{EXIT_USAGE, use_color};
use glint_conductor::ops::{ErrorKind, OpError};
use glint_store::SqliteStore;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// A command failure already explained to the user; carries the exit code.
#[derive(Debug)]
pub struct Failed(pub i32);

/// The result type of command bodies: `Err` means "message printed, exit
/// with this code".
pub type CmdResult = Result<i32, Failed>;

/// Prints `glint: error: …` (with the cause chain) and returns the usage/IO
/// failure.
pub fn fail_io(msg: impl std::fmt::Display, e: &dyn std::error::Error) -> Failed {
    eprintln!("glint: error: {msg}: {}", glint_conductor::error_chain(e));
    Failed(EXIT_USAGE)
}

/// The exit code of a failed operation: the one place it is decided.
pub fn exit_code(kind: ErrorKind) -> i32 {
    match kind {
        ErrorKind::Conflict | ErrorKind::Failed => crate::output::EXIT_FAILED,
        ErrorKind::Invalid | ErrorKind::NotFound | ErrorKind::Unavailable => EXIT_USAGE,
    }
}

/// Prints a failed operation (with its cause chain) and returns its exit code.
pub fn fail_op(e: &OpError) -> Failed {
    eprintln!("glint: error: {}", glint_conductor::error_chain(e));
    Failed(exit_code(e.kind))
}

/// Prints `glint: error: …` and returns a failure with `code`.
pub fn fail(code: i32, msg: impl std::fmt::Display) -> Failed {
    eprintln!("glint: error: {msg}");
    Failed(code)
}

/// The data directory: `--data-dir`, else `$GLINT_DATA_DIR` (clap reads both),
/// else `$XDG_STATE_HOME/glint`, else `~/.local/state/glint`.
pub fn data_dir(global: &Global) -> PathBuf {
    if let Some(d) = &global.data_dir {
        return d.clone();
    }
    if let Some(x) = std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("glint");
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(h) => PathBuf::from(h).join(".local/state/glint"),
        None => PathBuf::from(".glint"),
    }
}

/// The data directory a conductor socket lives in.
pub fn data_dir_of_socket(socket: &Path) -> PathBuf {
    socket
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Opens (creating) the store for commands that write.
pub fn open_store(global: &Global) -> Result<SqliteStore, Failed> {
    let dir = data_dir(global);
    SqliteStore::open(&dir).map_err(|e| {
        fail_io(
            format_args!(
                "cannot open the store in {} (set --data-dir or GLINT_DATA_DIR to a writable directory)",
                dir.display()
            ),
            &e,
        )
    })
}

/// Opens the store for read commands; `None` (and a note) when nothing has
/// been applied yet in this data directory.
pub fn open_existing_store(global: &Global) -> Result<Option<SqliteStore>, Failed> {
    let dir = data_dir(global);
    SqliteStore::open_existing(&dir).map_err(|e| {
        fail_io(
            format_args!("cannot read the store in {}", dir.display()),
            &e,
        )
    })
}

/// A short age: `850ms`, `42s`, `5m`, `3h`, `2d`.
pub fn age(d: Duration) -> String {
    let s = d.as_secs();
    if s == 0 {
        format!("{}ms", d.as_millis())
    } else if s < 120 {
        format!("{s}s")
    } else if s < 7200 {
        format!("{}m", s / 60)
    } else if s < 172_800 {
        format!("{}h", s / 3600)
    } else {
        format!("{}d", s / 86_400)
    }
}

/// Age of a store timestamp (ms since the epoch).
pub fn age_of(ms: i64) -> String {
    age(SystemTime::now()
        .duration_since(glint_store::from_ms(ms))
        .unwrap_or_default())
}

/// RFC 3339 UTC time of a store timestamp, to the second.
pub fn time_of(ms: i64) -> String {
    humantime::format_rfc3339_seconds(glint_store::from_ms(ms)).to_string()
}

/// ANSI styling that is a no-op when colour is off.
#[derive(Debug, Clone, Copy)]
pub struct Paint {
    on: bool,
}

impl Paint {
    /// Colour for stdout, per `--color`, the terminal and NO_COLOR.
    pub fn stdout(global: &Global) -> Paint {
        Paint {
            on: use_color(global.color, crate::output::stdout_is_terminal()),
        }
    }

    fn wrap(&self, code: &str, s: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_owned()
        }
    }

    /// Bold.
    pub fn bold(&self, s: &str) -> String {
        self.wrap("1", s)
    }
    /// Green.
    pub fn green(&self, s: &str) -> String {
        self.wrap("32", s)
    }
    /// Yellow.
    pub fn yellow(&self, s: &str) -> String {
        self.wrap("33", s)
    }
    /// Red.
    pub fn red(&self, s: &str) -> String {
        self.wrap("31", s)
    }
    /// Dim.
    pub fn dim(&self, s: &str) -> String {
        self.wrap("2", s)
    }
}

/// A plain-text table with left-aligned columns, two spaces apart. Cells may
/// contain ANSI colour codes; widths count only visible characters.
#[derive(Debug, Default)]
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with a header row.
    pub fn new(header: &[&str], paint: Paint) -> Table {
        Table {
            rows: vec![header.iter().map(|h| paint.bold(h)).collect()],
        }
    }

    /// Adds a row.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Whether only the header is there.
    pub fn is_empty(&self) -> bool {
        self.rows.len() <= 1
    }

    /// Renders the table.
    pub fn render(&self) -> String {
        let cols = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let mut widths = vec![0; cols];
        for r in &self.rows {
            for (i, c) in r.iter().enumerate() {
                widths[i] = widths[i].max(visible_len(c));
            }
        }
        let mut out = String::new();
        for r in &self.rows {
            let mut line = String::new();
            for (i, c) in r.iter().enumerate() {
                line.push_str(c);
                if i + 1 < r.len() {
                    line.push_str(&" ".repeat(widths[i] - visible_len(c) + 2));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

fn visible_len(s: &str) -> usize {
    let mut n = 0;
    let mut in_escape = false;
    for c in s.chars() {
        if in_escape {
            if c == 'm' {
                in_escape = false;
            }
        } else if c == '\x1b' {
            in_escape = true;
        } else {
            n += 1;
        }
    }
    n
}

/// Prints a value as pretty JSON on stdout.
pub fn print_json<T: serde::Serialize>(v: &T) {
    match serde_json::to_string_pretty(v) {
        Ok(s) => println!("{s}"),
        Err(e) => eprintln!("glint: error: cannot encode JSON: {e}"),
    }
}

/// Makes `path` absolute against the current directory (without resolving
/// symlinks), for messages and for recording a version's root.
pub fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

/// A current-thread tokio runtime for commands that need async IO.
pub fn runtime() -> Result<tokio::runtime::Runtime, Failed> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| fail_io("cannot start the async runtime", &e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_are_short() {
        assert_eq!(age(Duration::from_millis(850)), "850ms");
        assert_eq!(age(Duration::from_secs(42)), "42s");
        assert_eq!(age(Duration::from_secs(300)), "5m");
        assert_eq!(age(Duration::from_secs(3 * 3600)), "3h");
        assert_eq!(age(Duration::from_secs(3 * 86400)), "3d");
    }

    #[test]
    fn tables_align_visible_text() {
        let paint = Paint { on: true };
        let mut t = Table::new(&["A", "BB"], paint);
        t.row(vec![paint.green("xxx"), "y".into()]);
        let out = t.render();
        let lines: Vec<&str> = out.lines().collect();
        // Both second columns start at the same visible column.
        let strip = |s: &str| {
            let mut o = String::new();
            let mut esc = false;
            for c in s.chars() {
                if esc {
                    esc = c != 'm';
                } else if c == '\x1b' {
                    esc = true;
                } else {
                    o.push(c);
                }
            }
            o
        };
        assert_eq!(strip(lines[0]).find("BB"), strip(lines[1]).find('y'));
    }
}
