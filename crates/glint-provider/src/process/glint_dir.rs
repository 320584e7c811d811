//! What Glint gives every instance under `/run/glint`: its workload
//! identity, the variables it reads, and the way to the instance API.
//!
//! ```text
//! /dev/shm/glint-run-<store>/<instance>/   0700, one per instance, on a tmpfs
//!     identity        0400, the signed identity token (renewed by the conductor)
//!     vars/NAME       0400, each variable the instance reads, at launch
//!     glint.sock      a symlink to /run/glint-api/<socket> (namespaced, Docker)
//! ```
//!
//! A namespaced process instance or a Docker container gets the directory
//! bound read-only at [`MOUNT_POINT`] and the conductor's instance API
//! directory bound read-only at [`API_MOUNT_POINT`]; `glint.sock` resolves
//! inside the instance to the socket there. The socket's *directory* is
//! bound, not the socket itself, so that a restarted conductor's new socket
//! is what the instance reaches. A plain instance (no root, no binds) is
//! told the host paths instead, in [`IDENTITY_ENV`], [`VARS_ENV`] and
//! [`API_ENV`]; every instance gets the three variables, with the paths it
//! sees.
//!
//! The conductor renews the identity by [`renew`]: the new token is written
//! beside the old one and renamed over it, so a reader never sees half a
//! token and the bind shows the new file. Like secrets, the directory is on
//! the tmpfs `/dev/shm` (checked), lives as long as the instance, and is
//! swept for instances the provider does not know.

use crate::{GlintFiles, ProviderError};
use glint_model::InstanceId;
use std::collections::BTreeSet;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Where the directory is inside a namespaced instance or a container.
pub const MOUNT_POINT: &str = "/run/glint";
/// Where the instance API's socket directory is bound inside an instance.
pub const API_MOUNT_POINT: &str = "/run/glint-api";
/// The identity file's name in the directory.
pub const IDENTITY_FILE: &str = "identity";
/// The variables' directory's name in the directory.
pub const VARS_DIR: &str = "vars";
/// The socket's name in the directory (a symlink into [`API_MOUNT_POINT`]).
pub const SOCKET_LINK: &str = "glint.sock";
/// The variable naming the identity file an instance reads.
pub const IDENTITY_ENV: &str = "GLINT_IDENTITY_FILE";
/// The variable naming the directory of the variables an instance reads.
pub const VARS_ENV: &str = "GLINT_VARS_DIR";
/// The variable naming the instance API's socket.
pub const API_ENV: &str = "GLINT_API_SOCKET";
const SHM: &str = "/dev/shm";

fn io_err(what: &str, path: &Path, source: std::io::Error) -> ProviderError {
    ProviderError::Io {
        what: what.to_owned(),
        path: path.to_owned(),
        source,
    }
}

/// The directory of every instance's files for store `store`.
pub fn root(store: &str) -> PathBuf {
    Path::new(SHM).join(format!("glint-run-{store}"))
}

/// The directory of instance `id`'s files.
pub fn instance_dir(store: &str, id: &InstanceId) -> PathBuf {
    root(store).join(id.as_str())
}

/// Whether a variable name may be a file name here (the language's names:
/// letters, digits, `_` and `-`, not starting with `.`).
fn check_var_name(name: &str) -> Result<(), ProviderError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
    if ok {
        Ok(())
    } else {
        Err(ProviderError::Backend(format!(
            "`{name}` is not a variable name: letters, digits, `_`, `-` and `.` only"
        )))
    }
}

fn write_new(path: &Path, value: &[u8]) -> Result<(), ProviderError> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o400)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| io_err("cannot write an instance file", path, e))?;
    file.write_all(value)
        .map_err(|e| io_err("cannot write an instance file", path, e))
}

/// Writes instance `id`'s directory from `files` and returns it. Refused
/// when `/dev/shm` is not a tmpfs or the store's directory is not the
/// provider's own and private.
pub fn write(store: &str, id: &InstanceId, files: &GlintFiles) -> Result<PathBuf, ProviderError> {
    let root = root(store);
    super::secrets::private_root(&root, "instance identities are delivered only from memory")?;
    let mut b = std::fs::DirBuilder::new();
    b.mode(0o700);
    let dir = root.join(id.as_str());
    b.create(&dir)
        .map_err(|e| io_err("cannot create the instance's directory", &dir, e))?;
    let written = (|| {
        write_new(&dir.join(IDENTITY_FILE), files.identity.expose())?;
        let vars = dir.join(VARS_DIR);
        b.create(&vars)
            .map_err(|e| io_err("cannot create the variables' directory", &vars, e))?;
        for (name, value) in &files.variables {
            check_var_name(name)?;
            write_new(&vars.join(name), value.as_bytes())?;
        }
        if let Some(socket) = &files.api_socket {
            let Some(file) = socket.file_name() else {
                return Err(ProviderError::Backend(format!(
                    "the instance API socket {} has no file name",
                    socket.display()
                )));
            };
            let link = dir.join(SOCKET_LINK);
            std::os::unix::fs::symlink(Path::new(API_MOUNT_POINT).join(file), &link)
                .map_err(|e| io_err("cannot link the instance API socket", &link, e))?;
        }
        Ok(())
    })();
    if let Err(e) = written {
        remove_dir(&dir);
        return Err(e);
    }
    Ok(dir)
}

/// The environment variables telling an instance where its files are:
/// inside paths for a namespaced instance or a container (`bound`), host
/// paths for a plain one.
pub fn env(dir: &Path, files: &GlintFiles, bound: bool) -> Vec<(String, String)> {
    let base = if bound {
        PathBuf::from(MOUNT_POINT)
    } else {
        dir.to_owned()
    };
    let mut out = vec![
        (
            IDENTITY_ENV.to_owned(),
            base.join(IDENTITY_FILE).display().to_string(),
        ),
        (
            VARS_ENV.to_owned(),
            base.join(VARS_DIR).display().to_string(),
        ),
    ];
    if let Some(socket) = &files.api_socket {
        let path = if bound {
            base.join(SOCKET_LINK)
        } else {
            socket.clone()
        };
        out.push((API_ENV.to_owned(), path.display().to_string()));
    }
    out
}

/// The directory holding the instance API socket (bound at
/// [`API_MOUNT_POINT`]).
pub fn api_dir(files: &GlintFiles) -> Option<&Path> {
    files.api_socket.as_deref().and_then(Path::parent)
}

/// Replaces instance `id`'s identity with `token` (written beside, renamed
/// over). `Ok(false)` when the instance has no directory (not launched by
/// a provider that uses one, or gone).
pub fn renew(store: &str, id: &InstanceId, token: &[u8]) -> Result<bool, ProviderError> {
    let dir = instance_dir(store, id);
    if !dir.is_dir() {
        return Ok(false);
    }
    let tmp = dir.join(format!(".{IDENTITY_FILE}.new"));
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("cannot renew an identity", &tmp, e)),
    }
    write_new(&tmp, token)?;
    let path = dir.join(IDENTITY_FILE);
    std::fs::rename(&tmp, &path).map_err(|e| io_err("cannot renew an identity", &path, e))?;
    Ok(true)
}

fn remove_dir(dir: &Path) {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(path = %dir.display(), error = %e, "cannot remove an instance's identity directory")
        }
    }
}

/// Removes instance `id`'s directory, if it has one.
pub fn remove(store: &str, id: &InstanceId) {
    remove_dir(&instance_dir(store, id));
}

/// Removes the directories of instances not in `known`.
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
