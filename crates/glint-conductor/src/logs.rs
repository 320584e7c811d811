//! Where instances' output is kept, and reading it (for `glint logs` and
//! `GET /v1/services/{service}/logs`).
//!
//! Both providers keep an instance's stdout and stderr as files under their
//! state directory in the data directory, with one layout:
//! `<data>/<provider>/logs/<instance>/{stdout,stderr}.log` (`process` while
//! and after the process runs; `docker` once the container is removed —
//! while it runs, the engine has its output). The files outlive their
//! instance, so logs of a replaced instance can still be read.

use glint_model::{InstanceId, ProviderKind};
use glint_store::InstanceRecord;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// An instance's log files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFiles {
    /// Its standard output.
    pub stdout: PathBuf,
    /// Its standard error.
    pub stderr: PathBuf,
    /// Whether it is a container whose output is still with the engine
    /// (files appear once the container is removed).
    pub in_engine: bool,
}

/// The provider state directory name for a provider kind.
fn state_dir(kind: ProviderKind) -> &'static str {
    match kind {
        ProviderKind::Docker => "docker",
        ProviderKind::Process | ProviderKind::Simulated => "process",
    }
}

/// Where the output of `rec` is kept under `data_dir`.
pub fn log_files(data_dir: &Path, rec: &InstanceRecord) -> LogFiles {
    let paths =
        glint_provider::process::log_paths(&data_dir.join(state_dir(rec.provider)), &rec.id);
    let in_engine = rec.provider == ProviderKind::Docker
        && rec.state != glint_store::InstanceState::Gone
        && !paths.stdout.exists();
    LogFiles {
        stdout: paths.stdout,
        stderr: paths.stderr,
        in_engine,
    }
}

/// The container name Glint gives an instance of `environment`.
pub fn container_name(environment: &str, id: &InstanceId) -> String {
    format!("glint-{environment}-{id}")
}

/// The lines of a log: split on `\n`, a `\r` before it dropped (CRLF), no
/// empty last line for a final newline.
pub fn split_lines(bytes: &[u8]) -> Vec<&[u8]> {
    let mut lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
    if bytes.ends_with(b"\n") || bytes.is_empty() {
        lines.pop();
    }
    lines
        .into_iter()
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .collect()
}

/// The last `tail` lines (all without `tail`) of a log file as text (bytes
/// that are not UTF-8 become U+FFFD), and the file's length; `None` when
/// the file does not exist.
pub fn read_lines(path: &Path, tail: Option<usize>) -> std::io::Result<Option<(Vec<String>, u64)>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let lines = split_lines(&bytes);
    let skip = tail.map(|t| lines.len().saturating_sub(t)).unwrap_or(0);
    Ok(Some((
        lines[skip..]
            .iter()
            .map(|l| String::from_utf8_lossy(l).into_owned())
            .collect(),
        bytes.len() as u64,
    )))
}

/// What a followed log file gained since `offset`: whole new lines, and
/// the offset after the last whole line. A file that shrank (rotated by
/// copy-and-truncate) is read again from its start.
pub fn read_from(path: &Path, offset: u64) -> std::io::Result<(Vec<String>, u64)> {
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), offset)),
        Err(e) => return Err(e),
    };
    let len = f.metadata()?.len();
    let start = if len < offset { 0 } else { offset };
    f.seek(SeekFrom::Start(start))?;
    let mut buf = Vec::new();
    // Bounded: a follower reads at most 4 MiB per look.
    f.take(4 << 20).read_to_end(&mut buf)?;
    let whole = buf
        .iter()
        .rposition(|b| *b == b'\n')
        .map(|i| i + 1)
        .unwrap_or(0);
    let lines = split_lines(&buf[..whole])
        .into_iter()
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect();
    Ok((lines, start + whole as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_like_a_terminal_would_show_them() {
        assert_eq!(split_lines(b""), Vec::<&[u8]>::new());
        assert_eq!(split_lines(b"a\nb\n"), vec![&b"a"[..], b"b"]);
        assert_eq!(split_lines(b"a\r\nb"), vec![&b"a"[..], b"b"]);
        assert_eq!(split_lines(b"a\rb\n"), vec![&b"a\rb"[..]]);
    }

    #[test]
    fn following_reads_whole_new_lines_and_restarts_after_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.log");
        std::fs::write(&p, b"one\ntw").unwrap();
        let (lines, at) = read_from(&p, 0).unwrap();
        assert_eq!(lines, vec!["one"]);
        assert_eq!(at, 4, "the partial line waits");
        std::fs::write(&p, b"one\ntwo\nthree\n").unwrap();
        let (lines, at) = read_from(&p, at).unwrap();
        assert_eq!(lines, vec!["two", "three"]);
        std::fs::write(&p, b"new\n").unwrap();
        let (lines, _) = read_from(&p, at).unwrap();
        assert_eq!(
            lines,
            vec!["new"],
            "a truncated file is read from its start"
        );
    }
}
