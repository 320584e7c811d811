//! Pieces every command shares: the data directory (prepared and checked
//! before anything writes), opening the store to write or only to read,
//! checking a service name, time and table formatting, colour.

use crate::cli::Global;
use crate::output::{EXIT_USAGE, inert, use_color};
use glint_conductor::ops::{ErrorKind, OpError};
use glint_store::{SqliteStore, Store};
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
    let text = format!("{msg}: {}", glint_conductor::error_chain(e));
    eprintln!("glint: error: {}", inert(&text));
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
    eprintln!("glint: error: {}", inert(&glint_conductor::error_chain(e)));
    Failed(exit_code(e.kind))
}

/// Prints `glint: error: …` and returns a failure with `code`. The message is
/// made [`inert`]: errors quote names, paths and archive entries from outside.
pub fn fail(code: i32, msg: impl std::fmt::Display) -> Failed {
    eprintln!("glint: error: {}", inert(&msg.to_string()));
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

/// Subdirectories of the data directory that Glint creates (the image
/// store, the providers' logs and state); made owner-only when an older Glint
/// left them open.
const OWN_SUBDIRS: [&str; 3] = ["images", "process", "docker"];

/// Prepares the data directory for a command that writes: creates it
/// owner-only, refuses one that others could change
/// ([`glint_store::prepare_data_dir`]), and tightens Glint's own
/// subdirectories. Prints the reason and fails otherwise.
pub fn prepare_data_dir(global: &Global) -> Result<PathBuf, Failed> {
    let dir = data_dir(global);
    glint_store::prepare_data_dir(&dir).map_err(|e| match e {
        glint_store::StoreError::DataDirUnsafe { .. } => fail(EXIT_USAGE, e),
        e => fail_io(
            format_args!(
                "cannot use the data directory {} (set --data-dir or GLINT_DATA_DIR to a writable directory)",
                dir.display()
            ),
            &e,
        ),
    })?;
    for sub in OWN_SUBDIRS {
        glint_store::datadir::tighten(&dir.join(sub), 0o700);
    }
    Ok(dir)
}

/// Opens (creating) the store for commands that write.
pub fn open_store(global: &Global) -> Result<SqliteStore, Failed> {
    let dir = prepare_data_dir(global)?;
    SqliteStore::open(&dir).map_err(|e| store_error(&dir, "cannot open the store in", e))
}

/// Reports a store that could not be opened: a refusal (not a Glint store,
/// an unsafe directory) speaks for itself; anything else gets context.
fn store_error(dir: &Path, what: &str, e: glint_store::StoreError) -> Failed {
    use glint_store::StoreError as E;
    match e {
        E::NotAStore { .. }
        | E::DataDirUnsafe { .. }
        | E::TooNew { .. }
        | E::NeedsUpgrade { .. } => fail(EXIT_USAGE, e),
        e => fail_io(format_args!("{what} {}", dir.display()), &e),
    }
}

/// Opens the store for commands that may write, without creating one: `None`
/// when nothing has been applied yet in this data directory.
pub fn open_existing_store(global: &Global) -> Result<Option<SqliteStore>, Failed> {
    let dir = data_dir(global);
    if !dir.join(glint_store::DB_FILE).exists() {
        return Ok(None);
    }
    let dir = prepare_data_dir(global)?;
    SqliteStore::open_existing(&dir).map_err(|e| store_error(&dir, "cannot read the store in", e))
}

/// Opens the store for read commands (`status`, `history`, `events`, `logs`,
/// `images`): read-only, creating and migrating nothing, so they work on a
/// read-only or full data directory. `None` when nothing has been applied.
pub fn open_store_to_read(global: &Global) -> Result<Option<SqliteStore>, Failed> {
    let dir = data_dir(global);
    SqliteStore::open_read_only(&dir).map_err(|e| store_error(&dir, "cannot read the store in", e))
}

/// Checks that `service` names a service this data directory knows: one the
/// newest version declares, or one that had instances or events before it
/// was retired. Otherwise fails saying there is no such service, with the
/// ones that exist (and the closest, if one is close).
pub fn known_service(store: &dyn Store, service: &str) -> Result<(), Failed> {
    let io = |e: glint_store::StoreError| fail_io("cannot read the store", &e);
    let latest = store.latest_version().map_err(io)?;
    let declared: Vec<String> = latest
        .as_ref()
        .map(|v| v.env.services.keys().map(|n| n.to_string()).collect())
        .unwrap_or_default();
    if declared.iter().any(|s| s == service)
        || !store.instances_of(service, 1).map_err(io)?.is_empty()
        || !store
            .events(&glint_store::EventFilter {
                service: Some(service.to_owned()),
                limit: Some(1),
                ..Default::default()
            })
            .map_err(io)?
            .is_empty()
    {
        return Ok(());
    }
    let exists = match (&latest, declared.as_slice()) {
        (None, _) => "nothing has been applied in this data directory yet".to_owned(),
        (Some(v), []) => format!("version {} declares no services", v.number),
        (Some(v), names) => {
            let list = names
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ");
            let close = names
                .iter()
                .map(|n| (edit_distance(n, service), n))
                .filter(|(d, _)| *d <= 2)
                .min();
            match close {
                Some((_, n)) => format!("did you mean `{n}`? version {} has {list}", v.number),
                None => format!("version {} has {list}", v.number),
            }
        }
    };
    Err(fail(
        crate::output::EXIT_FAILED,
        format_args!("there is no service `{service}`: {exists}"),
    ))
}

/// Levenshtein distance, for suggestions.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
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

/// Who runs this command (`alice (uid 1000)`), for records that say who
/// did something (a secret's `set_by`, an incident's `resolved_by`).
pub fn caller() -> String {
    let uid = rustix::process::geteuid().as_raw();
    match std::env::var("USER") {
        Ok(u) if !u.is_empty() && glint_model::Name::new(u.clone()).is_ok() => {
            format!("{u} (uid {uid})")
        }
        _ => format!("uid {uid}"),
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

    /// Paints `s`, made [`inert`] first: the only control sequences in
    /// painted text are the paint's own.
    fn wrap(&self, code: &str, s: &str) -> String {
        let s = inert(s);
        if self.on {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.into_owned()
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

/// The escape sequences [`Paint`] writes, the only ones a table keeps.
const PAINT_CODES: [&str; 6] = [
    "\x1b[0m", "\x1b[1m", "\x1b[2m", "\x1b[31m", "\x1b[32m", "\x1b[33m",
];

/// A cell made inert except for the paint's own colour codes (when painting
/// is on): outside text in a cell that was not painted cannot reach the
/// terminal raw either.
fn inert_cell(cell: String, paint: Paint) -> String {
    if matches!(inert(&cell), std::borrow::Cow::Borrowed(_)) {
        return cell;
    }
    let mut out = String::with_capacity(cell.len() + 8);
    let mut rest = cell.as_str();
    while let Some(c) = rest.chars().next() {
        let keep = PAINT_CODES
            .iter()
            .find(|code| paint.on && rest.starts_with(**code));
        let (piece, len) = match keep {
            Some(code) => (std::borrow::Cow::Borrowed(*code), code.len()),
            None => (inert(&rest[..c.len_utf8()]), c.len_utf8()),
        };
        out.push_str(&piece);
        rest = &rest[len..];
    }
    out
}

/// A plain-text table with left-aligned columns, two spaces apart. Cells may
/// contain the colour codes of its [`Paint`]; everything else is made
/// [`inert`]; widths count only visible characters.
#[derive(Debug)]
pub struct Table {
    rows: Vec<Vec<String>>,
    paint: Paint,
}

impl Table {
    /// A table with a header row.
    pub fn new(header: &[&str], paint: Paint) -> Table {
        Table {
            rows: vec![header.iter().map(|h| paint.bold(h)).collect()],
            paint,
        }
    }

    /// Adds a row.
    pub fn row(&mut self, cells: Vec<String>) {
        let paint = self.paint;
        self.rows
            .push(cells.into_iter().map(|c| inert_cell(c, paint)).collect());
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
