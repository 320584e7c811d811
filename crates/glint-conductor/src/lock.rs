//! One conductor per data directory.
//!
//! A conductor holds an exclusive `flock` on `<data>/conductor.lock` for its
//! whole life; the kernel releases it when the process dies, however it dies,
//! so a `kill -9` never leaves a stale lock. The file holds the holder's pid
//! for error messages.

use rustix::fs::{FlockOperation, flock};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// File name of the lock inside the data directory.
pub const LOCK_FILE: &str = "conductor.lock";

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another conductor holds it.
    #[error("another conductor (pid {pid}) is already running for {dir}")]
    Held {
        /// The data directory.
        dir: PathBuf,
        /// The holder's pid, as it wrote it ("unknown" if unreadable).
        pid: String,
    },
    /// The lock file could not be used.
    #[error("cannot use lock file {path}")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// The held lock; released on drop (or process death).
#[derive(Debug)]
pub struct ConductorLock {
    _file: File,
}

impl ConductorLock {
    /// Takes the lock of `data_dir` without waiting.
    pub fn acquire(data_dir: &Path) -> Result<ConductorLock, LockError> {
        let path = data_dir.join(LOCK_FILE);
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        if flock(&file, FlockOperation::NonBlockingLockExclusive).is_err() {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            let pid = pid.trim();
            return Err(LockError::Held {
                dir: data_dir.to_owned(),
                pid: if pid.is_empty() {
                    "unknown".into()
                } else {
                    pid.into()
                },
            });
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        write!(file, "{}", std::process::id()).map_err(io)?;
        Ok(ConductorLock { _file: file })
    }

    /// Whether some process holds the lock of `data_dir` right now.
    pub fn is_held(data_dir: &Path) -> bool {
        let Ok(file) = OpenOptions::new().read(true).open(data_dir.join(LOCK_FILE)) else {
            return false;
        };
        match flock(&file, FlockOperation::NonBlockingLockShared) {
            Ok(()) => {
                let _ = flock(&file, FlockOperation::Unlock);
                false
            }
            Err(_) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_one_holder_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!ConductorLock::is_held(dir.path()));
        let lock = ConductorLock::acquire(dir.path()).unwrap();
        assert!(ConductorLock::is_held(dir.path()));
        let err = ConductorLock::acquire(dir.path()).unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        drop(lock);
        assert!(!ConductorLock::is_held(dir.path()));
        ConductorLock::acquire(dir.path()).unwrap();
    }
}
