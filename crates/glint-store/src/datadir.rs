//! The data directory: created owner-only, refused when others could change it.
//!
//! Everything Glint keeps — the store, instance logs, images and their
//! unpacked root filesystems, the conductor's socket — lives under one data
//! directory. Whoever can write to it, or replace it, decides what the
//! conductor launches; whoever can enter it can reach every unpacked image. So
//! before a command that writes uses it, [`prepare_data_dir`]:
//!
//! - creates it, and every missing parent, with mode `0700`;
//! - refuses it unless it is a directory owned by the user Glint runs as, that
//!   neither its group nor others can write;
//! - refuses it when a directory above it lets others replace it: one anyone
//!   can write without the sticky bit (`/tmp` itself is fine), or one owned
//!   by another user who is not root.
//!
//! Read commands never call it: they create nothing and work on a read-only
//! or full data directory.

use crate::StoreError;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::Path;

/// Creates `dir` (and missing parents) owner-only and checks that nobody else
/// can write to it or replace it; see the module documentation.
pub fn prepare_data_dir(dir: &Path) -> Result<(), StoreError> {
    let abs = std::path::absolute(dir).unwrap_or_else(|_| dir.to_owned());
    create_owner_only(&abs)?;
    check_data_dir(&abs)
}

/// Creates every missing directory down to `dir` with mode `0700`.
fn create_owner_only(dir: &Path) -> Result<(), StoreError> {
    let mut missing: Vec<&Path> = Vec::new();
    let mut cur = Some(dir);
    while let Some(p) = cur {
        match p.symlink_metadata() {
            Ok(_) => break,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => missing.push(p),
            Err(source) => {
                return Err(StoreError::DataDir {
                    path: p.to_owned(),
                    source,
                });
            }
        }
        cur = p.parent();
    }
    for p in missing.into_iter().rev() {
        match std::fs::DirBuilder::new().mode(0o700).create(p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && p.is_dir() => continue,
            Err(source) => {
                return Err(StoreError::DataDir {
                    path: p.to_owned(),
                    source,
                });
            }
        }
        // The umask may have taken more than group and other bits away.
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o700)).map_err(|source| {
            StoreError::DataDir {
                path: p.to_owned(),
                source,
            }
        })?;
    }
    Ok(())
}

fn unsafe_dir(path: &Path, problem: String, fix: String) -> StoreError {
    StoreError::DataDirUnsafe {
        path: path.to_owned(),
        problem,
        fix,
    }
}

/// Checks an existing data directory and the directories above it.
pub(crate) fn check_data_dir(dir: &Path) -> Result<(), StoreError> {
    let meta = dir.metadata().map_err(|source| StoreError::DataDir {
        path: dir.to_owned(),
        source,
    })?;
    if !meta.is_dir() {
        return Err(unsafe_dir(
            dir,
            "it is not a directory".into(),
            "choose another --data-dir".into(),
        ));
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    let shown = dir.display();
    if meta.uid() != me {
        return Err(unsafe_dir(
            dir,
            format!(
                "it belongs to uid {}, but glint runs as uid {me}, so its owner decides what glint launches",
                meta.uid()
            ),
            format!("run glint as its owner, `chown {me} {shown}`, or choose another --data-dir"),
        ));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        let who = if mode & 0o002 != 0 {
            "everyone"
        } else {
            "its group"
        };
        return Err(unsafe_dir(
            dir,
            format!("{who} can write to it (mode {mode:04o})"),
            format!("run `chmod go-w {shown}` (or `chmod 700 {shown}`)"),
        ));
    }
    let real = dir.canonicalize().unwrap_or_else(|_| dir.to_owned());
    for parent in real.ancestors().skip(1) {
        check_ancestor(dir, parent, me)?;
    }
    Ok(())
}

fn check_ancestor(dir: &Path, parent: &Path, me: u32) -> Result<(), StoreError> {
    let Ok(m) = parent.metadata() else {
        // An ancestor we cannot stat cannot be judged; the directory itself was.
        return Ok(());
    };
    let mode = m.mode() & 0o7777;
    let p = parent.display();
    if mode & 0o002 != 0 && mode & 0o1000 == 0 {
        return Err(unsafe_dir(
            dir,
            format!(
                "{p} above it can be written by everyone (mode {mode:04o}, no sticky bit), so anyone can replace the data directory"
            ),
            format!("run `chmod o-w {p}` (or `chmod +t {p}`), or choose another --data-dir"),
        ));
    }
    if m.uid() != me && m.uid() != 0 && mode & 0o200 != 0 {
        return Err(unsafe_dir(
            dir,
            format!(
                "{p} above it belongs to uid {}, who can replace the data directory",
                m.uid()
            ),
            "choose a --data-dir inside directories that only you or root own".into(),
        ));
    }
    Ok(())
}

/// Paths Glint creates inside the data directory are owner-only; this tightens
/// one that an older Glint (or a umask) left open to others. Best effort: a
/// path that is not ours, or gone, is left alone.
pub fn tighten(path: &Path, mode: u32) {
    if let Ok(m) = path.symlink_metadata()
        && !m.file_type().is_symlink()
        // SAFETY: geteuid has no preconditions and cannot fail.
        && m.uid() == unsafe { libc::geteuid() }
        && m.mode() & 0o777 & !mode != 0
    {
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn chmod(p: &Path, mode: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    fn refusal(dir: &Path) -> String {
        let err = prepare_data_dir(dir).unwrap_err();
        assert!(matches!(err, StoreError::DataDirUnsafe { .. }), "{err:?}");
        err.to_string()
    }

    #[test]
    fn missing_directories_are_created_owner_only_whatever_the_umask() {
        let t = tempfile::tempdir().unwrap();
        chmod(t.path(), 0o755);
        // SAFETY: umask only changes this process's file creation mask.
        let old = unsafe { libc::umask(0) };
        let r = prepare_data_dir(&t.path().join("var/lib/glint"));
        // SAFETY: as above.
        unsafe { libc::umask(old) };
        r.unwrap();
        for p in ["var", "var/lib", "var/lib/glint"] {
            let m = std::fs::metadata(t.path().join(p)).unwrap();
            assert_eq!(m.permissions().mode() & 0o7777, 0o700, "{p}");
        }
    }

    #[test]
    fn a_directory_others_can_write_is_refused_with_the_fix() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("data");
        std::fs::create_dir(&d).unwrap();
        chmod(&d, 0o777);
        let msg = refusal(&d);
        assert!(
            msg.contains("everyone can write to it (mode 0777)"),
            "{msg}"
        );
        assert!(
            msg.contains(&format!("chmod go-w {}", d.display())),
            "{msg}"
        );
        chmod(&d, 0o770);
        assert!(refusal(&d).contains("its group can write to it"));
        chmod(&d, 0o755);
        prepare_data_dir(&d).unwrap();
    }

    #[test]
    fn a_parent_anyone_can_replace_it_in_is_refused_unless_sticky() {
        let t = tempfile::tempdir().unwrap();
        let shared = t.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        chmod(&shared, 0o777);
        let msg = refusal(&shared.join("data"));
        assert!(msg.contains("can be written by everyone"), "{msg}");
        assert!(!shared.join("data").exists() || shared.join("data").is_dir());
        chmod(&shared, 0o1777);
        prepare_data_dir(&shared.join("data")).unwrap();
    }

    #[test]
    fn a_directory_owned_by_someone_else_is_refused() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("SKIPPED: needs root to give a directory away");
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("data");
        std::fs::create_dir(&d).unwrap();
        std::os::unix::fs::chown(&d, Some(65534), Some(65534)).unwrap();
        let msg = refusal(&d);
        assert!(msg.contains("it belongs to uid 65534"), "{msg}");
        // A parent owned by another (non-root) user who can write it.
        let p = t.path().join("theirs");
        std::fs::create_dir(&p).unwrap();
        std::os::unix::fs::chown(&p, Some(65534), Some(65534)).unwrap();
        let msg = refusal(&p.join("data"));
        assert!(
            msg.contains("belongs to uid 65534, who can replace"),
            "{msg}"
        );
    }
}
