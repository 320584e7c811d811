//! The process provider's files: where things live under the state directory,
//! and the per-instance record.
//!
//! ```text
//! <state_dir>/run/<instance>/record.json   labels, pid, start time, port, exit
//! <state_dir>/run/<instance>/work/         the instance's working directory
//! <state_dir>/run/<instance>/root/         mount point of its root (namespaces)
//! <state_dir>/run/<instance>/mounts/       mount points the image lacks (namespaces)
//! <state_dir>/run/<instance>/exit-status   the program's wait status (namespaces)
//! <state_dir>/logs/<instance>/stdout.log   kept after the instance is removed
//! <state_dir>/logs/<instance>/stderr.log
//! ```
//!
//! The record is a convenience, not the source of truth: the labels live on the
//! process itself (its environment), so a crash between spawning and writing
//! the record leaks nothing. What only the record knows is the exit state of an
//! instance that ended while the conductor was down or before it restarted.

use crate::{ProviderError, RunState};
use glint_model::{InstanceId, Labels};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Where an instance's output goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogPaths {
    /// The program's standard output.
    pub stdout: PathBuf,
    /// The program's standard error.
    pub stderr: PathBuf,
}

/// The log files of `instance` under a process provider's `state_dir`.
///
/// Needs no running provider or conductor (`glint logs` reads them directly).
/// The files exist once the instance has been launched and are kept after it
/// is removed.
pub fn log_paths(state_dir: &Path, instance: &InstanceId) -> LogPaths {
    let dir = logs_dir(state_dir).join(instance.as_str());
    LogPaths {
        stdout: dir.join("stdout.log"),
        stderr: dir.join("stderr.log"),
    }
}

pub(crate) fn run_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("run")
}

pub(crate) fn logs_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("logs")
}

pub(crate) fn instance_dir(state_dir: &Path, instance: &InstanceId) -> PathBuf {
    run_dir(state_dir).join(instance.as_str())
}

pub(crate) fn record_path(instance_dir: &Path) -> PathBuf {
    instance_dir.join("record.json")
}

/// Where a namespaced instance's init leaves its program's wait status.
pub(crate) fn exit_status_path(instance_dir: &Path) -> PathBuf {
    instance_dir.join("exit-status")
}

/// How an instance was started, which decides how it is signalled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Mode {
    /// A plain process: the pid is the program, leader of its own session and
    /// process group; signals go to the group.
    Plain,
    /// The pid is a small init running as pid 1 of the instance's own pid
    /// namespace; signals go to it and it forwards them to everything inside.
    Namespaced,
}

/// The on-disk record of one instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Record {
    /// Its labels.
    pub labels: Labels,
    /// How it was started.
    pub mode: Mode,
    /// The leader's pid (host namespace).
    pub pid: i32,
    /// The leader's start time in clock ticks since boot (pid reuse guard).
    pub start_ticks: u64,
    /// The port given to it in `PORT`.
    pub port: u16,
    /// Its own address (in `HOST`), when it has its own network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addr: Option<std::net::Ipv4Addr>,
    /// Launch time, milliseconds since the Unix epoch.
    pub started_at_ms: u64,
    /// How it ended, once it has.
    pub exit: Option<RunState>,
}

impl Record {
    pub fn started_at(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(self.started_at_ms)
    }
}

pub(crate) fn millis_since_epoch(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Writes `record` to `path` atomically: a temporary file in the same
/// directory, flushed, then renamed over the old one.
pub(crate) fn write_record(path: &Path, record: &Record) -> Result<(), ProviderError> {
    let io = |what: &str, source| ProviderError::Io {
        what: what.to_owned(),
        path: path.to_owned(),
        source,
    };
    let bytes = serde_json::to_vec_pretty(record)
        .map_err(|e| io("cannot encode instance record", std::io::Error::other(e)))?;
    let tmp = path.with_extension("json.tmp");
    let mut file =
        std::fs::File::create(&tmp).map_err(|e| io("cannot create instance record", e))?;
    file.write_all(&bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| io("cannot write instance record", e))?;
    std::fs::rename(&tmp, path).map_err(|e| io("cannot replace instance record", e))
}

/// Reads a record back.
pub(crate) fn read_record(path: &Path) -> Result<Record, ProviderError> {
    let bytes = std::fs::read(path).map_err(|source| ProviderError::Io {
        what: "cannot read instance record".into(),
        path: path.to_owned(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|e| ProviderError::Io {
        what: "cannot parse instance record".into(),
        path: path.to_owned(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use glint_model::{Digest, Name, VersionNumber};

    #[test]
    fn record_round_trips_through_an_atomic_write() {
        let dir = tempfile::tempdir().unwrap();
        let service = Name::new("web").unwrap();
        let record = Record {
            labels: Labels {
                store: "s".into(),
                environment: Name::new("e").unwrap(),
                instance: InstanceId::from_entropy(&service, 1),
                service,
                version: VersionNumber(2),
                image: Digest::of(b"i"),
            },
            mode: Mode::Plain,
            pid: 10,
            start_ticks: 20,
            port: 3000,
            addr: Some(std::net::Ipv4Addr::new(10, 88, 0, 7)),
            started_at_ms: 1234,
            exit: Some(RunState::Exited {
                code: Some(1),
                signal: None,
                oom: false,
            }),
        };
        let path = dir.path().join("record.json");
        write_record(&path, &record).unwrap();
        assert_eq!(read_record(&path).unwrap(), record);
        assert!(!path.with_extension("json.tmp").exists());
    }

    #[test]
    fn log_paths_depend_only_on_state_dir_and_instance() {
        let id = InstanceId::parse("web-abcdefgh").unwrap();
        let p = log_paths(Path::new("/x"), &id);
        assert_eq!(p.stdout, Path::new("/x/logs/web-abcdefgh/stdout.log"));
        assert_eq!(p.stderr, Path::new("/x/logs/web-abcdefgh/stderr.log"));
    }
}
