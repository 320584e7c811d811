//! Where every mount of a sandbox lands, and what must be created first so
//! that it can.
//!
//! A mount needs an existing directory (or, for a file bind, a file) to land
//! on. The root's layers are looked at from the top down, as overlayfs shows
//! them: the first layer holding a path decides what the path is. For each
//! mount target:
//!
//! - it exists as the right kind: nothing to do;
//! - it is missing (or, at its last component, of the wrong kind): it is made
//!   in the plan's mount-point directory, which becomes the topmost layer
//!   (hiding what the image had at that last component); failing that, in
//!   the writable root by the child (a build step's upper directory); failing
//!   that, a kernel filesystem is skipped and a bind is an error;
//! - a component *before* the last is not a directory (a file, or a symbolic
//!   link, which could point anywhere): an error, never followed.

use crate::error::SandboxError;
use std::path::{Component, Path, PathBuf};

/// What a mount needs at its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A directory.
    Dir,
    /// A regular file (binding a file).
    File,
}

/// Whether a target is usable as it is, or from which component on it is
/// missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// The target exists with the right kind.
    Present,
    /// Components from index `from` on (0-based, of the target's components)
    /// must be made; when `from` is the last component, that one may exist
    /// with the wrong kind and is hidden by what is made.
    Missing { from: usize },
}

/// The normal components of an absolute path, or an error naming it.
pub(crate) fn components(target: &Path, what: &str) -> Result<Vec<PathBuf>, SandboxError> {
    if !target.is_absolute() {
        return Err(SandboxError::Invalid {
            reason: format!("{what} `{}` is not an absolute path", target.display()),
        });
    }
    let mut out = Vec::new();
    for c in target.components() {
        match c {
            Component::RootDir => {}
            Component::Normal(n) => out.push(PathBuf::from(n)),
            _ => {
                return Err(SandboxError::Invalid {
                    reason: format!("{what} `{}` must not contain `.` or `..`", target.display()),
                });
            }
        }
    }
    Ok(out)
}

/// Looks `parts` up in `layers` (topmost first).
pub(crate) fn lookup(
    layers: &[PathBuf],
    parts: &[PathBuf],
    kind: Kind,
    shown: &Path,
) -> Result<Lookup, SandboxError> {
    let mut rel = PathBuf::new();
    for (i, part) in parts.iter().enumerate() {
        rel.push(part);
        let last = i + 1 == parts.len();
        let found = layers
            .iter()
            .find_map(|l| std::fs::symlink_metadata(l.join(&rel)).ok());
        let Some(meta) = found else {
            return Ok(Lookup::Missing { from: i });
        };
        let ft = meta.file_type();
        if last {
            let right = match kind {
                Kind::Dir => ft.is_dir(),
                Kind::File => ft.is_file(),
            };
            return Ok(if right {
                Lookup::Present
            } else {
                Lookup::Missing { from: i }
            });
        }
        if !ft.is_dir() {
            return Err(SandboxError::Invalid {
                reason: format!(
                    "mount target `{}`: `/{}` is {} in the root, not a directory",
                    shown.display(),
                    rel.display(),
                    if ft.is_symlink() {
                        "a symbolic link"
                    } else {
                        "a file"
                    }
                ),
            });
        }
    }
    Ok(Lookup::Present)
}

/// Makes `parts` (a target of `kind`) inside the mount-point directory `dir`.
pub(crate) fn make_in(dir: &Path, parts: &[PathBuf], kind: Kind) -> Result<(), SandboxError> {
    let path: PathBuf = parts.iter().fold(dir.to_owned(), |p, c| p.join(c));
    let io = |what: &str, path: &Path, source| SandboxError::Prepare {
        what: what.to_owned(),
        path: path.to_owned(),
        source,
    };
    match kind {
        Kind::Dir => {
            std::fs::create_dir_all(&path).map_err(|e| io("cannot create mount point", &path, e))
        }
        Kind::File => {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| io("cannot create mount point", parent, e))?;
            }
            std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map(drop)
                .map_err(|e| io("cannot create mount point", &path, e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(p: &str) -> Vec<PathBuf> {
        components(Path::new(p), "target").unwrap()
    }

    #[test]
    fn the_topmost_layer_decides_and_missing_parts_are_found() {
        let top = tempfile::tempdir().unwrap();
        let image = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(image.path().join("var/lib")).unwrap();
        std::fs::write(image.path().join("etc"), b"file").unwrap();
        std::os::unix::fs::symlink("/elsewhere", image.path().join("link")).unwrap();
        std::fs::create_dir_all(top.path().join("etc")).unwrap();
        let layers = vec![top.path().to_owned(), image.path().to_owned()];
        let shown = Path::new("/x");
        let look = |p: &str, k| lookup(&layers, &parts(p), k, shown);
        assert_eq!(look("/var/lib", Kind::Dir).unwrap(), Lookup::Present);
        assert_eq!(
            look("/var/lib/pg/data", Kind::Dir).unwrap(),
            Lookup::Missing { from: 2 }
        );
        // The top layer's directory hides the image's file.
        assert_eq!(
            look("/etc/x", Kind::Dir).unwrap(),
            Lookup::Missing { from: 1 }
        );
        // A link at the last component is hidden, one before it refused.
        assert_eq!(
            look("/link", Kind::Dir).unwrap(),
            Lookup::Missing { from: 0 }
        );
        let err = look("/link/data", Kind::Dir).unwrap_err().to_string();
        assert!(err.contains("symbolic link"), "{err}");
        assert_eq!(
            look("/var", Kind::File).unwrap(),
            Lookup::Missing { from: 0 }
        );
    }

    #[test]
    fn relative_and_dotted_targets_are_refused() {
        assert!(components(Path::new("data"), "target").is_err());
        assert!(components(Path::new("/a/../b"), "target").is_err());
        assert_eq!(parts("/a/b"), vec![PathBuf::from("a"), PathBuf::from("b")]);
    }
}
