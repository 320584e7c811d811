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
        ProviderKind::Aws => "aws",
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

/// One line an instance wrote.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LogLine {
    /// The instance.
    pub instance: String,
    /// `stdout` or `stderr`.
    pub stream: String,
    /// The line (not made inert: printers do that).
    pub line: String,
}

/// Follows instances' log files: each [`poll`](Follower::poll) returns the
/// whole lines written since the last one (an instance not seen before is
/// read from its start). A container whose output is still with the
/// engine is skipped; once its files appear (it was removed and its output
/// copied) they are read from their end, since whoever follows the engine
/// has seen that output already.
#[derive(Debug, Default)]
pub struct Follower {
    data_dir: PathBuf,
    offsets: std::collections::HashMap<(String, bool), u64>,
    in_engine: std::collections::HashSet<String>,
}

impl Follower {
    /// A follower of logs under `data_dir`.
    pub fn new(data_dir: &Path) -> Follower {
        Follower {
            data_dir: data_dir.to_owned(),
            ..Follower::default()
        }
    }

    /// Marks what `rec` has written so far as seen.
    pub fn seen(&mut self, rec: &InstanceRecord) {
        let files = log_files(&self.data_dir, rec);
        for (err, path) in [(false, &files.stdout), (true, &files.stderr)] {
            let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
            self.offsets.insert((rec.id.to_string(), err), len);
        }
    }

    /// Whether `rec`'s output is with the engine (last poll).
    pub fn in_engine(&self, rec: &InstanceRecord) -> bool {
        self.in_engine.contains(rec.id.as_str())
    }

    /// Instances whose output was with the engine at the last poll.
    pub fn engine_instances(&self) -> Vec<String> {
        let mut v: Vec<String> = self.in_engine.iter().cloned().collect();
        v.sort();
        v
    }

    /// New whole lines of `service`'s instances (or only of `instance`):
    /// the live ones, those launched since, and those followed before
    /// until their last lines are read after they are gone.
    pub fn poll_service(
        &mut self,
        store: &dyn glint_store::Store,
        service: &str,
        instance: Option<&InstanceId>,
    ) -> std::io::Result<Vec<LogLine>> {
        let mut recs = current(store, service, instance);
        let mut known: Vec<String> = self.offsets.keys().map(|(id, _)| id.clone()).collect();
        known.extend(self.in_engine.iter().cloned());
        known.sort();
        known.dedup();
        for id in known {
            if recs.iter().any(|r| r.id.as_str() == id) {
                continue;
            }
            if let Some(rec) = InstanceId::parse(id.as_str())
                .ok()
                .and_then(|i| store.instance(&i).ok().flatten())
            {
                recs.push(rec);
            }
        }
        let lines = self.poll(&recs)?;
        for rec in recs
            .iter()
            .filter(|r| r.state == glint_store::InstanceState::Gone)
        {
            let id = rec.id.to_string();
            self.offsets.retain(|(i, _), _| *i != id);
            self.in_engine.remove(&id);
        }
        Ok(lines)
    }

    /// New whole lines of `recs` since the last poll.
    pub fn poll(&mut self, recs: &[InstanceRecord]) -> std::io::Result<Vec<LogLine>> {
        let mut out = Vec::new();
        for rec in recs {
            let files = log_files(&self.data_dir, rec);
            let id = rec.id.to_string();
            if files.in_engine {
                // Followed through the engine once the container runs (a
                // launching one may not exist in the engine yet).
                if rec.state == glint_store::InstanceState::Running {
                    self.in_engine.insert(id);
                }
                continue;
            }
            if self.in_engine.remove(&id) {
                self.seen(rec);
                continue;
            }
            for (err, path) in [(false, &files.stdout), (true, &files.stderr)] {
                let key = (id.clone(), err);
                let at = self.offsets.get(&key).copied().unwrap_or(0);
                let (lines, next) = read_from(path, at)?;
                self.offsets.insert(key, next);
                out.extend(lines.into_iter().map(|line| LogLine {
                    instance: id.clone(),
                    stream: if err { "stderr" } else { "stdout" }.to_owned(),
                    line,
                }));
            }
        }
        Ok(out)
    }
}

/// The instances a log reader shows now: `instance`, else `service`'s live
/// ones.
pub fn current(
    store: &dyn glint_store::Store,
    service: &str,
    instance: Option<&InstanceId>,
) -> Vec<InstanceRecord> {
    match instance {
        Some(id) => store.instance(id).ok().flatten().into_iter().collect(),
        None => store
            .live_instances()
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.service.as_str() == service)
            .collect(),
    }
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
