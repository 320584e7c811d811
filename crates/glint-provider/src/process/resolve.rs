//! Finding an instance's program inside its image.
//!
//! The program (argv\[0\]) names a file *inside the image*: an absolute path is
//! taken from the image root, a relative one with a `/` from the working
//! directory, a bare name is looked up in the image's own `PATH` (never the
//! host's). Symbolic links are followed as if the image root were `/`, so an
//! absolute link inside the image cannot point at the host's files.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

/// The `PATH` used when the image declares none (Docker's default).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A program found in an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Resolved {
    /// Where the file is on the host (under the rootfs).
    pub host: PathBuf,
    /// Where it is inside the image, links resolved (absolute).
    pub inside: PathBuf,
}

/// Finds `program` in the image at `rootfs`. The error is a sentence for the
/// user naming the path that was tried.
pub(crate) fn resolve_program(
    rootfs: &Path,
    program: &str,
    workdir: &str,
    image_path: Option<&str>,
) -> Result<Resolved, (String, Option<io::Error>)> {
    if program.is_empty() {
        return Err(("the program (argv[0]) is empty".into(), None));
    }
    let candidates: Vec<PathBuf> = if program.contains('/') {
        let p = Path::new(program);
        if p.is_absolute() {
            vec![p.to_owned()]
        } else {
            vec![Path::new("/").join(workdir).join(p)]
        }
    } else {
        image_path
            .unwrap_or(DEFAULT_PATH)
            .split(':')
            .filter(|d| d.starts_with('/'))
            .map(|d| Path::new(d).join(program))
            .collect()
    };
    let mut last_err = None;
    for inside in &candidates {
        match resolve_in_root(rootfs, inside) {
            Ok(inside) => {
                let host = host_path(rootfs, &inside);
                return check_executable(&host, &inside).map(|()| Resolved { host, inside });
            }
            Err(e) => last_err = Some(e),
        }
    }
    let shown = match candidates.as_slice() {
        [one] => format!("`{}`", one.display()),
        _ => format!("`{program}` (searched the image's PATH)"),
    };
    Err((
        format!(
            "program {shown} not found in image root {}",
            rootfs.display()
        ),
        last_err,
    ))
}

fn check_executable(host: &Path, inside: &Path) -> Result<(), (String, Option<io::Error>)> {
    match std::fs::metadata(host) {
        Ok(m) if !m.is_file() => Err((
            format!("program `{}` is not a regular file", inside.display()),
            None,
        )),
        Ok(m) if m.permissions().mode() & 0o111 == 0 => Err((
            format!("program `{}` is not executable", inside.display()),
            None,
        )),
        Ok(_) => Ok(()),
        Err(e) => Err((
            format!("cannot read program `{}`", inside.display()),
            Some(e),
        )),
    }
}

/// The host path of an absolute path inside the root.
fn host_path(rootfs: &Path, inside: &Path) -> PathBuf {
    let mut p = rootfs.to_owned();
    for c in inside.components() {
        if let Component::Normal(n) = c {
            p.push(n);
        }
    }
    p
}

/// Resolves `path` (absolute, inside the image) component by component,
/// following symbolic links as if `root` were `/`. Returns the resolved
/// absolute path inside the image.
pub(crate) fn resolve_in_root(root: &Path, path: &Path) -> io::Result<PathBuf> {
    const MAX_LINKS: usize = 40;
    let mut resolved: Vec<OsString> = Vec::new();
    let mut pending: VecDeque<OsString> = VecDeque::new();
    push_front(&mut pending, path);
    let mut links = 0;
    while let Some(c) = pending.pop_front() {
        if c == "." {
            continue;
        }
        if c == ".." {
            resolved.pop();
            continue;
        }
        let mut host = root.to_owned();
        host.extend(&resolved);
        host.push(&c);
        let meta = std::fs::symlink_metadata(&host)?;
        if meta.file_type().is_symlink() {
            links += 1;
            if links > MAX_LINKS {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "too many levels of symbolic links",
                ));
            }
            let target = std::fs::read_link(&host)?;
            if target.is_absolute() {
                resolved.clear();
            }
            push_front(&mut pending, &target);
        } else {
            resolved.push(c);
        }
    }
    let mut inside = PathBuf::from("/");
    inside.extend(&resolved);
    Ok(inside)
}

/// Puts the components of `path` in front of `pending`, in order.
fn push_front(pending: &mut VecDeque<OsString>, path: &Path) {
    let parts: Vec<OsString> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_owned()),
            Component::ParentDir => Some("..".into()),
            Component::CurDir => Some(".".into()),
            Component::RootDir | Component::Prefix(_) => None,
        })
        .collect();
    for p in parts.into_iter().rev() {
        pending.push_front(p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn exe(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"#!/bin/true\n").unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn absolute_links_stay_inside_the_image() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        exe(&r.join("usr/bin/app"));
        std::fs::create_dir_all(r.join("bin")).unwrap();
        // An absolute link: on the host it would point at the host's /usr/bin.
        symlink("/usr/bin/app", r.join("bin/app")).unwrap();
        symlink("../usr/bin/../bin/app", r.join("bin/rel")).unwrap();
        let got = resolve_program(r, "/bin/app", "/", None).unwrap();
        assert_eq!(got.inside, Path::new("/usr/bin/app"));
        assert_eq!(got.host, r.join("usr/bin/app"));
        let got = resolve_program(r, "/bin/rel", "/", None).unwrap();
        assert_eq!(got.inside, Path::new("/usr/bin/app"));
        // `..` cannot climb above the image root.
        symlink("../../../../usr/bin/app", r.join("bin/up")).unwrap();
        let got = resolve_program(r, "/bin/up", "/", None).unwrap();
        assert_eq!(got.host, r.join("usr/bin/app"));
    }

    #[test]
    fn bare_names_use_the_image_path_and_relative_names_the_workdir() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        exe(&r.join("opt/tools/app"));
        exe(&r.join("srv/run.sh"));
        let got = resolve_program(r, "app", "/", Some("/nope:/opt/tools")).unwrap();
        assert_eq!(got.inside, Path::new("/opt/tools/app"));
        // The host PATH is never consulted: `sh` exists on the host, not here.
        let (msg, _) = resolve_program(r, "sh", "/", None).unwrap_err();
        assert!(msg.contains("`sh`"), "{msg}");
        let got = resolve_program(r, "./run.sh", "/srv", None).unwrap();
        assert_eq!(got.inside, Path::new("/srv/run.sh"));
    }

    #[test]
    fn missing_and_non_executable_programs_are_named() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::write(r.join("data"), b"x").unwrap();
        let (msg, _) = resolve_program(r, "/bin/hello", "/", None).unwrap_err();
        assert!(msg.contains("/bin/hello"), "{msg}");
        let (msg, _) = resolve_program(r, "/data", "/", None).unwrap_err();
        assert!(
            msg.contains("/data") && msg.contains("not executable"),
            "{msg}"
        );
        symlink("loop", r.join("loop")).unwrap();
        assert!(resolve_program(r, "/loop", "/", None).is_err());
    }
}
