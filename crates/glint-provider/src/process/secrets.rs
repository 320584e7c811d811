//! Secrets of process instances: files on a tmpfs, bound read-only at
//! `/run/secrets` in namespaced instances.
//!
//! ```text
//! /dev/shm/glint-secrets-<store>/            0700, owned by the provider's user
//! /dev/shm/glint-secrets-<store>/<instance>/ 0700, one per instance
//!     db/password                             0400, the value, nothing else
//! ```
//!
//! `/dev/shm` must be a tmpfs (checked with `statfs`; the launch is refused
//! otherwise), so a value never reaches a disk — not the data directory,
//! not swap-less machines' disks, not a backup of the data directory. The
//! directory lives as long as the instance: the provider removes it with
//! the instance ([`remove`]), after a failed launch, and sweeps the ones of
//! instances it does not know when it starts ([`sweep`]); a reboot empties
//! the tmpfs.
//!
//! A namespaced instance sees only its own directory, bound read-only at
//! `/run/secrets` (the mount point is made if the image lacks it). A plain
//! (non-namespaced) instance, run without root, cannot have a bind: it is
//! told the directory's host path in `GLINT_SECRETS_DIR` instead. Plain
//! instances run as the provider's own user, so they are not isolated from
//! each other (nor from anything else that user runs): use namespaces (run
//! as root) where that matters.

use crate::{ProviderError, SecretFile};
use glint_model::InstanceId;
use std::collections::BTreeSet;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Where the secrets go inside a namespaced instance.
pub const MOUNT_POINT: &str = "/run/secrets";
/// The variable that tells a plain instance where its secrets are.
pub const DIR_ENV: &str = "GLINT_SECRETS_DIR";
/// The tmpfs the secrets live on.
const SHM: &str = "/dev/shm";
const TMPFS_MAGIC: u64 = 0x0102_1994;

fn io_err(what: &str, path: &Path, source: std::io::Error) -> ProviderError {
    ProviderError::Io {
        what: what.to_owned(),
        path: path.to_owned(),
        source,
    }
}

/// The directory of every instance's secrets for store `store`.
pub fn root(store: &str) -> PathBuf {
    Path::new(SHM).join(format!("glint-secrets-{store}"))
}

/// The directory of instance `id`'s secrets.
pub fn instance_dir(store: &str, id: &InstanceId) -> PathBuf {
    root(store).join(id.as_str())
}

/// Makes `root` (a directory on the tmpfs `/dev/shm`) if it is missing and
/// checks that it is a private directory of this user; refused when
/// `/dev/shm` is not a tmpfs (`why` says what that protects). Shared by the
/// secrets and `/run/glint` directories.
pub(crate) fn private_root(root: &Path, why: &str) -> Result<(), ProviderError> {
    let shm = Path::new(SHM);
    let fs = rustix::fs::statfs(shm).map_err(|e| io_err("cannot inspect", shm, e.into()))?;
    #[allow(clippy::unnecessary_cast)]
    if fs.f_type as u64 != TMPFS_MAGIC {
        return Err(ProviderError::Backend(format!(
            "{SHM} is not a tmpfs: {why}; mount a tmpfs on {SHM}"
        )));
    }
    let mut b = std::fs::DirBuilder::new();
    b.mode(0o700);
    match b.create(root) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io_err("cannot create the directory", root, e)),
    }
    let meta = std::fs::symlink_metadata(root)
        .map_err(|e| io_err("cannot inspect the directory", root, e))?;
    if !meta.is_dir()
        || meta.uid() != rustix::process::geteuid().as_raw()
        || meta.permissions().mode() & 0o077 != 0
    {
        return Err(ProviderError::Backend(format!(
            "{} is not a private directory of this user (mode {:o}); remove it and launch again",
            root.display(),
            meta.permissions().mode() & 0o7777
        )));
    }
    Ok(())
}

/// Writes `files` into a new directory for instance `id` and returns it.
/// Refused when `/dev/shm` is not a tmpfs, when the store's directory is
/// not the provider's own and private, or when a name is not a secret name.
pub fn write(store: &str, id: &InstanceId, files: &[SecretFile]) -> Result<PathBuf, ProviderError> {
    let root = root(store);
    private_root(
        &root,
        "secrets are delivered only from memory, never from a disk",
    )?;
    let mut b = std::fs::DirBuilder::new();
    b.mode(0o700);
    let dir = root.join(id.as_str());
    b.create(&dir)
        .map_err(|e| io_err("cannot create the instance's secrets directory", &dir, e))?;
    let written = (|| {
        for f in files {
            glint_model::secret::check_secret_name(&f.name).map_err(|e| {
                ProviderError::Backend(format!("`{}` is not a secret name: {e}", f.name))
            })?;
            let path = dir.join(&f.name);
            if let Some(parent) = path.parent() {
                let mut b = std::fs::DirBuilder::new();
                b.recursive(true).mode(0o700);
                b.create(parent)
                    .map_err(|e| io_err("cannot create a secrets directory", parent, e))?;
            }
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o400)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&path)
                .map_err(|e| io_err("cannot write a secret file", &path, e))?;
            file.write_all(f.value.expose())
                .map_err(|e| io_err("cannot write a secret file", &path, e))?;
        }
        Ok(())
    })();
    if let Err(e) = written {
        remove_dir(&dir);
        return Err(e);
    }
    Ok(dir)
}

fn remove_dir(dir: &Path) {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(path = %dir.display(), error = %e, "cannot remove an instance's secrets")
        }
    }
}

/// Removes instance `id`'s secrets, if it has any.
pub fn remove(store: &str, id: &InstanceId) {
    remove_dir(&instance_dir(store, id));
}

/// Removes the secrets of instances not in `known`.
pub(crate) fn sweep(store: &str, known: &BTreeSet<InstanceId>) {
    let Ok(entries) = std::fs::read_dir(root(store)) else {
        return;
    };
    for entry in entries.flatten() {
        let keep = entry
            .file_name()
            .to_str()
            .and_then(|s| InstanceId::parse(s).ok())
            .is_some_and(|id| known.contains(&id));
        if !keep {
            remove_dir(&entry.path());
        }
    }
}
