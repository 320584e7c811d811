//! Keeping instances' output bounded: logs rotated by size, and the log
//! directories of instances that are gone pruned to the newest few per
//! service.
//!
//! # Rotation
//!
//! An instance writes its standard output and error straight into
//! `logs/<instance>/{stdout,stderr}.log` (append-only descriptors it holds
//! itself, so that it outlives any conductor). The provider never comes
//! between the program and its file, so it rotates from outside, every
//! [`LogLimits::check_every`]: a file larger than
//! [`LogLimits::max_file_bytes`] has its head moved into
//! `stdout.log.1` (newest) … `stdout.log.N` ([`LogLimits::rotated_files`]),
//! each at most `max_file_bytes`; older output beyond that is dropped.
//!
//! The head is removed from the live file in place with
//! `fallocate(FALLOC_FL_COLLAPSE_RANGE)` at a block boundary (ext4, xfs):
//! the program's appends carry on at the new end and no byte is lost. Where
//! the filesystem cannot do that (tmpfs, btrfs), the whole file is copied and
//! truncated instead, and what the program writes in the instant between the
//! copy and the truncation is lost ("copytruncate").
//!
//! # Pruning
//!
//! A log directory is kept while its instance is known to the provider
//! (running, or ended but not removed); once the instance is gone, only the
//! newest [`LogLimits::gone_per_service`] of each service are kept, newest by
//! launch time (recorded in `logs/<instance>/instance.json`), so `glint logs`
//! can still show the output of a service's latest instances after they were
//! replaced. Directories whose record names another store are never touched;
//! ones without a record (written before records existed) count as this
//! store's, ranked by their modification time.

use glint_model::InstanceId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// What the process provider keeps of instances' output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogLimits {
    /// A log file larger than this is rotated. Default 8 MiB.
    pub max_file_bytes: u64,
    /// Rotated files kept per stream (`stdout.log.1` … `.N`, each at most
    /// `max_file_bytes`). Default 2, so one instance keeps at most about
    /// 2 × 3 × 8 MiB, plus what it writes between two checks.
    pub rotated_files: usize,
    /// Log directories kept per service for instances that are gone. Default
    /// 5 (at least 1 keeps the latest instance's output for `glint logs`).
    pub gone_per_service: usize,
    /// How often sizes are checked and gone instances pruned. Default 10 s.
    pub check_every: Duration,
}

impl Default for LogLimits {
    fn default() -> LogLimits {
        LogLimits {
            max_file_bytes: 8 * 1024 * 1024,
            rotated_files: 2,
            gone_per_service: 5,
            check_every: Duration::from_secs(10),
        }
    }
}

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogReport {
    /// Log files rotated.
    pub rotated: usize,
    /// Log directories of gone instances removed.
    pub pruned: usize,
}

/// `logs/<instance>/instance.json`: whose log directory this is, and when
/// its instance was launched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LogRecord {
    pub store: String,
    pub service: String,
    /// Nanoseconds since the Unix epoch.
    pub launched_at_ns: u64,
}

/// The record's path in a log directory.
pub(crate) fn record_path(log_dir: &Path) -> PathBuf {
    log_dir.join("instance.json")
}

/// Writes the record of a new log directory.
pub(crate) fn write_record(log_dir: &Path, record: &LogRecord) -> io::Result<()> {
    let bytes = serde_json::to_vec(record).map_err(io::Error::other)?;
    std::fs::write(record_path(log_dir), bytes)
}

/// `stdout.log` → `stdout.log.<n>`.
pub fn rotated_path(path: &Path, n: usize) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(format!(".{n}"));
    path.with_file_name(name)
}

pub(crate) fn nanos_since_epoch(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Rotates `path` if it is larger than the limit. `Ok(true)`: it was.
pub(crate) fn rotate(path: &Path, limits: &LogLimits) -> io::Result<bool> {
    let max = limits.max_file_bytes.max(1);
    let mut file = match File::options().read(true).write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    let size = meta.len();
    if size <= max {
        return Ok(false);
    }
    // Collapsing needs a block-aligned range that ends before the file does.
    let block = meta.blksize().max(1);
    let cut = (size - 1) / block * block;
    let keep = limits.rotated_files;
    // How many rotated files this rotation makes (one for a head smaller
    // than a block, which is copied whole below).
    let new = usize::try_from(cut.div_ceil(max))
        .unwrap_or(usize::MAX)
        .max(1)
        .min(keep);
    // Make room: .i becomes .(i + new); what would go past .keep is dropped.
    for i in (1..=keep).rev().filter(|_| new > 0) {
        let from = rotated_path(path, i);
        let result = if i + new > keep {
            std::fs::remove_file(&from)
        } else {
            std::fs::rename(&from, rotated_path(path, i + new))
        };
        match result {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    // .1 is the newest max bytes before the cut, .2 the max before those, …
    for j in (1..=new).filter(|_| cut > 0) {
        let j64 = u64::try_from(j).unwrap_or(u64::MAX);
        let end = cut.saturating_sub((j64 - 1).saturating_mul(max));
        let start = cut.saturating_sub(j64.saturating_mul(max));
        copy_range(&mut file, start, end, &rotated_path(path, j), false)?;
    }
    if cut > 0 && collapse_head(&file, cut)? {
        return Ok(true);
    }
    // Copytruncate: what came after the cut goes to the newest rotated file.
    let now = file.metadata()?.len();
    if keep > 0 {
        copy_range(&mut file, cut, now, &rotated_path(path, 1), cut > 0)?;
    }
    file.set_len(0)?;
    Ok(true)
}

/// Removes `[0, len)` from the file in place; `Ok(false)` where the
/// filesystem cannot.
fn collapse_head(file: &File, len: u64) -> io::Result<bool> {
    let len = libc::off_t::try_from(len).map_err(io::Error::other)?;
    // SAFETY: fallocate on a descriptor we own.
    let r = unsafe { libc::fallocate(file.as_raw_fd(), libc::FALLOC_FL_COLLAPSE_RANGE, 0, len) };
    if r == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EOPNOTSUPP) | Some(libc::EINVAL) | Some(libc::ENOSYS) => Ok(false),
        _ => Err(e),
    }
}

/// Copies `[start, end)` of `file` to `to` (through a temporary file and a
/// rename), or appends it to `to` with `append`.
fn copy_range(file: &mut File, start: u64, end: u64, to: &Path, append: bool) -> io::Result<()> {
    file.seek(SeekFrom::Start(start))?;
    let mut part = Read::by_ref(file).take(end.saturating_sub(start));
    if append {
        let mut out = File::options().append(true).create(true).open(to)?;
        io::copy(&mut part, &mut out)?;
        return out.flush();
    }
    let tmp = to.with_extension("tmp");
    let mut out = File::create(&tmp)?;
    io::copy(&mut part, &mut out)?;
    out.flush()?;
    std::fs::rename(&tmp, to)
}

/// A log directory that may be pruned.
struct Candidate {
    dir: PathBuf,
    service: String,
    launched_at_ns: u64,
}

/// The log directories under `logs_dir` of this store's instances that are
/// not in `known`, grouped by service, newest first.
fn gone(
    store: &str,
    entries: Vec<(InstanceId, PathBuf)>,
    known: impl Fn(&InstanceId) -> bool,
) -> BTreeMap<String, Vec<Candidate>> {
    let mut by_service: BTreeMap<String, Vec<Candidate>> = BTreeMap::new();
    for (id, dir) in entries {
        if known(&id) {
            continue;
        }
        let record = std::fs::read(record_path(&dir))
            .ok()
            .and_then(|b| serde_json::from_slice::<LogRecord>(&b).ok());
        let (service, launched_at_ns) = match record {
            Some(r) if r.store != store => continue,
            Some(r) => (r.service, r.launched_at_ns),
            None => {
                let mtime = std::fs::metadata(&dir)
                    .and_then(|m| m.modified())
                    .map(nanos_since_epoch)
                    .unwrap_or(0);
                (id.service().to_owned(), mtime)
            }
        };
        by_service
            .entry(service.clone())
            .or_default()
            .push(Candidate {
                dir,
                service,
                launched_at_ns,
            });
    }
    for list in by_service.values_mut() {
        list.sort_by_key(|c| std::cmp::Reverse(c.launched_at_ns));
    }
    by_service
}

/// Every instance log directory under `logs_dir`, read *before* the caller
/// looks at which instances it knows (a directory made after that look
/// belongs to a launch the look would have seen).
pub(crate) fn list(logs_dir: &Path) -> Vec<(InstanceId, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(logs_dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| {
            let id = e
                .file_name()
                .to_str()
                .and_then(|s| InstanceId::parse(s).ok())?;
            Some((id, e.path()))
        })
        .collect()
}

/// Removes the log directories of gone instances beyond the newest
/// `limits.gone_per_service` of each service. Returns how many it removed.
pub(crate) fn prune(
    store: &str,
    entries: Vec<(InstanceId, PathBuf)>,
    known: impl Fn(&InstanceId) -> bool,
    limits: &LogLimits,
) -> usize {
    let mut pruned = 0;
    for (_, list) in gone(store, entries, known) {
        for c in list.into_iter().skip(limits.gone_per_service) {
            match std::fs::remove_dir_all(&c.dir) {
                Ok(()) => pruned += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(path = %c.dir.display(), service = %c.service, error = %e, "cannot prune an old log directory")
                }
            }
        }
    }
    pruned
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max: u64, keep: usize) -> LogLimits {
        LogLimits {
            max_file_bytes: max,
            rotated_files: keep,
            ..LogLimits::default()
        }
    }

    fn numbered(from: usize, to: usize) -> String {
        (from..to).map(|i| format!("line {i:07}\n")).collect()
    }

    fn read(p: &Path) -> String {
        std::fs::read_to_string(p).unwrap_or_default()
    }

    /// Everything kept, oldest first.
    fn kept(path: &Path, keep: usize) -> String {
        let mut all = String::new();
        for i in (1..=keep).rev() {
            all.push_str(&read(&rotated_path(path, i)));
        }
        all + &read(path)
    }

    /// `collapse`: whether the filesystem removes the head in place (the
    /// live file keeps what lies past the last block boundary) or the file
    /// is copied and truncated (it is left empty).
    fn check_rotation_in(dir: &Path, collapse: bool) {
        let path = dir.join("stdout.log");
        std::fs::write(&path, numbered(0, 10_000)).unwrap();
        let l = limits(32 * 1024, 2);
        assert!(rotate(&path, &l).unwrap());
        let live = std::fs::metadata(&path).unwrap().len();
        if collapse {
            assert!(live > 0 && live < 4096, "live file has {live} bytes");
        } else {
            assert_eq!(live, 0);
        }
        let all = numbered(0, 10_000);
        let now = kept(&path, 2);
        // The newest output is all there, in order, ending where it ended.
        assert!(all.ends_with(&now), "kept output is not the stream's tail");
        assert!(now.len() >= 64 * 1024, "{}", now.len());
        for i in 1..=2 {
            let len = std::fs::metadata(rotated_path(&path, i)).unwrap().len();
            assert!(len <= 32 * 1024 + 4096, "rotated file {i} has {len} bytes");
        }
        assert!(!rotated_path(&path, 3).exists());
        assert!(!rotate(&path, &l).unwrap(), "the live file is small now");
        // Appends continue at the end of the live file.
        let mut f = File::options().append(true).open(&path).unwrap();
        f.write_all(numbered(10_000, 20_000).as_bytes()).unwrap();
        assert!(rotate(&path, &l).unwrap());
        let all = numbered(0, 20_000);
        assert!(all.ends_with(&kept(&path, 2)));
        assert!(!rotated_path(&path, 3).exists());
    }

    #[test]
    fn rotation_keeps_the_newest_output_in_bounded_files() {
        // Where temporary directories are (ext4 here and in CI: collapse).
        let dir = tempfile::tempdir().unwrap();
        let collapse = fs_type(dir.path()) == "ext4";
        if !collapse {
            eprintln!(
                "note: {} is not ext4; testing copytruncate",
                dir.path().display()
            );
        }
        check_rotation_in(dir.path(), collapse);
    }

    #[test]
    fn rotation_falls_back_to_copy_and_truncate_on_tmpfs() {
        let shm = Path::new("/dev/shm");
        if !shm.is_dir() {
            eprintln!("SKIPPED: no /dev/shm");
            return;
        }
        check_rotation_in(tempfile::tempdir_in(shm).unwrap().path(), false);
    }

    /// The filesystem type `path` is on (`/proc/self/mounts`, longest prefix).
    fn fs_type(path: &Path) -> String {
        let path = path.canonicalize().unwrap();
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
        mounts
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                Some((PathBuf::from(f.get(1)?), f.get(2)?.to_string()))
            })
            .filter(|(m, _)| path.starts_with(m))
            .max_by_key(|(m, _)| m.as_os_str().len())
            .map(|(_, t)| t)
            .unwrap_or_default()
    }

    #[test]
    fn without_rotated_files_the_head_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stderr.log");
        std::fs::write(&path, numbered(0, 10_000)).unwrap();
        assert!(rotate(&path, &limits(16 * 1024, 0)).unwrap());
        assert!(!rotated_path(&path, 1).exists());
        assert!(std::fs::metadata(&path).unwrap().len() <= 16 * 1024);
        assert!(numbered(0, 10_000).ends_with(&read(&path)));
    }

    #[test]
    fn rotated_names_append_a_number() {
        assert_eq!(
            rotated_path(Path::new("/x/logs/web-a/stdout.log"), 2),
            Path::new("/x/logs/web-a/stdout.log.2")
        );
    }
}
