//! The process provider's volumes: directories Glint owns under the state
//! directory, bound into instances by the namespace runner.
//!
//! ```text
//! <state_dir>/volumes/<name>/volume.json   labels: store, environment, name, created
//! <state_dir>/volumes/<name>/data/         what an instance sees at its mount path
//! <state_dir>/volumes/<name>/lock          flock'ed by the instance holding it read-write
//! ```
//!
//! # A directory, not a loop-mounted image
//!
//! A volume is a plain directory. A loop-mounted filesystem image would
//! enforce the declared `size`, but it is a mount that must be recreated
//! after every reboot and re-attached after a crash (a conductor killed
//! between `losetup` and `mount` leaves a loop device behind), it needs
//! `mkfs` and `losetup` on the machine, and a filesystem image that was
//! being written when the host died needs `fsck` before it can be mounted
//! again — all new ways to lose the data a volume exists to keep. A
//! directory survives every restart of the conductor and the host as it is,
//! is backed up with ordinary tools, and is what Docker's local volume
//! driver does too. The declared `size` is the capacity usage is measured
//! against (`glint volume ls`), not a quota.
//!
//! # One writer at a time
//!
//! Starting an instance that mounts a volume read-write and exclusively
//! takes an `flock` on its `lock` file first (never blocking: a held lock
//! fails the launch) and hands the locked descriptor to the instance's init
//! ([`glint_sandbox::Plan::held`]), which keeps it for as long as it lives.
//! The init is PID 1 of the instance's PID namespace: when it ends, the
//! kernel has killed every process inside, and only then is the lock
//! released. So the lock is held exactly while some process of the instance
//! may still write, whatever happens to the conductor — a conductor killed
//! at any moment cannot leave two writers behind, because the lock lives in
//! the instance, not in the conductor. (PostgreSQL's own `postmaster.pid`
//! cannot do this across PID namespaces: in each namespace the other
//! postmaster's pid means nothing.)
//!
//! Volumes are never removed by a launch, a retirement, a stop or a sweep;
//! only [`remove`] (called for `glint volume rm`) deletes one, and it
//! refuses while the lock is held.

use crate::{ProviderError, VolumeInfo};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

/// The labels written next to a volume's data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct VolumeLabels {
    /// The owning store's id.
    pub store: String,
    /// The environment that first mounted it.
    pub environment: String,
    /// The concrete volume name.
    pub name: String,
    /// When it was created (ms since the epoch).
    pub created_at_ms: i64,
}

/// Where the process provider keeps volumes.
pub(crate) fn volumes_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("volumes")
}

/// The directory of volume `name`.
pub fn volume_dir(state_dir: &Path, name: &str) -> PathBuf {
    volumes_dir(state_dir).join(name)
}

/// The directory an instance sees: `<volume>/data`.
pub fn data_dir(state_dir: &Path, name: &str) -> PathBuf {
    volume_dir(state_dir, name).join("data")
}

fn io_err(what: &str, path: &Path, source: std::io::Error) -> ProviderError {
    ProviderError::Io {
        what: what.to_owned(),
        path: path.to_owned(),
        source,
    }
}

/// Whether `name` can be a directory name of its own (the conductor passes
/// declared names and `NAME-SLOT`, but a provider checks what it creates).
fn valid(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Creates volume `name` if it does not exist (labelled for `store`) and
/// returns its data directory. A volume directory labelled for another
/// store is refused, never reused.
pub(crate) fn ensure(
    state_dir: &Path,
    store: &str,
    environment: &str,
    name: &str,
    now_ms: i64,
) -> Result<PathBuf, ProviderError> {
    if !valid(name) {
        return Err(ProviderError::Backend(format!(
            "`{name}` is not a valid volume name"
        )));
    }
    let dir = volume_dir(state_dir, name);
    let data = dir.join("data");
    let labels_path = dir.join("volume.json");
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true).mode(0o700);
    builder
        .create(&data)
        .map_err(|e| io_err("cannot create volume directory", &data, e))?;
    match std::fs::read(&labels_path) {
        Ok(bytes) => {
            let labels: VolumeLabels = serde_json::from_slice(&bytes).map_err(|e| {
                io_err(
                    "cannot parse volume labels",
                    &labels_path,
                    std::io::Error::other(e),
                )
            })?;
            if labels.store != store || labels.name != name {
                return Err(ProviderError::Backend(format!(
                    "{} belongs to store {} (volume `{}`), not to this one; move it away to let Glint create a new volume",
                    dir.display(),
                    labels.store,
                    labels.name
                )));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let labels = VolumeLabels {
                store: store.to_owned(),
                environment: environment.to_owned(),
                name: name.to_owned(),
                created_at_ms: now_ms,
            };
            let bytes = serde_json::to_vec_pretty(&labels).map_err(|e| {
                io_err(
                    "cannot encode volume labels",
                    &labels_path,
                    std::io::Error::other(e),
                )
            })?;
            let tmp = dir.join("volume.json.tmp");
            let mut f = std::fs::File::create(&tmp)
                .map_err(|e| io_err("cannot write volume labels", &tmp, e))?;
            f.write_all(&bytes)
                .and_then(|()| f.sync_all())
                .and_then(|()| std::fs::rename(&tmp, &labels_path))
                .map_err(|e| io_err("cannot write volume labels", &labels_path, e))?;
            tracing::info!(volume = name, path = %data.display(), "created volume");
        }
        Err(e) => return Err(io_err("cannot read volume labels", &labels_path, e)),
    }
    Ok(data)
}

/// Why a volume's lock could not be taken.
#[derive(Debug)]
pub(crate) enum LockError {
    /// Another instance holds it.
    Held,
    /// The lock file could not be opened or locked.
    Io(ProviderError),
}

/// Takes volume `name`'s lock without waiting; the descriptor holds it.
pub(crate) fn lock(state_dir: &Path, name: &str) -> Result<OwnedFd, LockError> {
    let path = volume_dir(state_dir, name).join("lock");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| LockError::Io(io_err("cannot open volume lock", &path, e)))?;
    let fd: OwnedFd = file.into();
    match rustix::fs::flock(&fd, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(fd),
        Err(rustix::io::Errno::WOULDBLOCK) => Err(LockError::Held),
        Err(e) => Err(LockError::Io(io_err(
            "cannot lock volume",
            &path,
            std::io::Error::from(e),
        ))),
    }
}

/// Whether some instance holds volume `name`'s lock now.
pub(crate) fn is_locked(state_dir: &Path, name: &str) -> bool {
    if !volume_dir(state_dir, name).join("lock").exists() {
        return false;
    }
    matches!(lock(state_dir, name), Err(LockError::Held))
}

/// What the provider knows of volume `name`.
pub(crate) fn info(state_dir: &Path, name: &str) -> Option<VolumeInfo> {
    if !valid(name) {
        return None;
    }
    let data = data_dir(state_dir, name);
    if !data.is_dir() {
        return None;
    }
    Some(VolumeInfo {
        name: name.to_owned(),
        location: data.display().to_string(),
        host_path: Some(data.clone()),
        used_bytes: crate::disk_usage(&data).ok(),
    })
}

/// Deletes volume `name` and its data; refused while an instance holds it.
pub(crate) fn remove(state_dir: &Path, name: &str) -> Result<(), ProviderError> {
    if !valid(name) {
        return Ok(());
    }
    let dir = volume_dir(state_dir, name);
    if !dir.exists() {
        return Ok(());
    }
    // Held for the whole removal: no instance can start on it meanwhile.
    let _lock = match lock(state_dir, name) {
        Ok(fd) => fd,
        Err(LockError::Held) => {
            return Err(ProviderError::Backend(format!(
                "volume `{name}` is mounted by a running instance"
            )));
        }
        Err(LockError::Io(e)) => return Err(e),
    };
    match std::fs::remove_dir_all(&dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(io_err("cannot remove volume", &dir, e))
        }
        _ => Ok(()),
    }
}
