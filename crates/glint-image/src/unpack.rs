//! Flattening layers into a root filesystem, safely, and checking it later.
//!
//! **Path discipline.** Layers may come from an imported archive, so every
//! entry is treated as hostile: a path with a `..` component is refused; a path
//! whose parent inside the root is a symlink is refused (nothing is ever
//! written *through* a symlink, so an absolute or `../..` symlink planted by an
//! earlier entry cannot redirect a later write outside the root); a hard link
//! must name a target inside the root reached the same way. Symlinks themselves
//! are created as data and never followed. Existing entries are removed before
//! a file, link or node replaces them, never opened for writing.
//!
//! **No privilege survives unpacking.** The tree is shared with every instance
//! and lives on the host, so nothing in it may grant more than its owner has:
//! setuid and setgid bits are cleared on every entry (the sticky bit is kept
//! on directories, where it restricts rather than grants), character and
//! block devices are refused (an instance gets its own `/dev`), extended
//! attributes (file capabilities, ACLs) are never applied, and a hard link can
//! only name an entry already unpacked, whose mode was cleared when it was
//! written. [`check_layer`] applies the same refusals to a layer's headers
//! alone, so that `glint image import` refuses such an archive up front.
//! Unpacked trees written by an older Glint, which kept those bits, are
//! cleaned in place the first time they are used ([`ROOTFS_FORMAT`]).
//!
//! **Whiteouts.** Each layer is read twice: first its whiteouts are applied to
//! what the layers below left (`.wh.<name>` deletes, `.wh..wh..opq` empties the
//! directory), then its other entries are extracted, so an opaque directory
//! keeps the entries of its own layer whatever their order in the tar.
//!
//! **Shared and checked.** [`ImageStore::rootfs`] unpacks an image once into
//! `rootfs/<hex>/root` (built in a temp directory and renamed into place, so a
//! half-unpacked tree is never visible) and records a *stat fingerprint* of the
//! tree beside it: for every entry its path, inode, type and mode, owner, size,
//! mtime and ctime. Every later call re-verifies the blobs and re-stats the tree
//! (no file is read, so it is cheap); any write, chmod, chown, rename, new or
//! removed file changes a ctime or the entry list and is reported as
//! [`ImageError::RootfsTampered`] naming the path. (ctime cannot be set back by
//! a process, only by moving the system clock.)

use crate::error::{ImageError, Result};
use crate::layer::sorted_entries;
use crate::store::{ImageStore, remove_any};
use glint_model::Digest;
use std::ffi::CString;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// Opens a layer blob as an uncompressed tar stream (gzip is detected by its magic).
fn open_layer(blob: &Path) -> Result<Box<dyn Read>> {
    let mut f =
        BufReader::new(File::open(blob).map_err(ImageError::io("cannot open layer", blob))?);
    let magic = f
        .fill_buf()
        .map_err(ImageError::io("cannot read layer", blob))?;
    if magic.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(flate2::bufread::GzDecoder::new(f)))
    } else {
        Ok(Box::new(f))
    }
}

/// Splits an entry path into safe components (no `..`, no root, no `.`).
fn safe_components(raw: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for c in raw.components() {
        match c {
            Component::Normal(s) => out.push(s.to_string_lossy().into_owned()),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(ImageError::UnsafeEntry {
                    entry: raw.display().to_string(),
                    reason: "its path contains `..`",
                });
            }
        }
    }
    Ok(out)
}

/// Version of the unpacking rules an unpacked tree was made with, recorded in
/// `rootfs/<hex>/format`. Trees without it (or older) are cleaned in place
/// before use: version 2 clears setuid/setgid bits and removes device nodes.
pub(crate) const ROOTFS_FORMAT: &str = "2";

/// The permission bits an unpacked entry of `kind` keeps: setuid and setgid
/// never survive; the sticky bit survives on directories only.
pub(crate) fn unpacked_mode(kind: tar::EntryType, mode: u32) -> u32 {
    if kind == tar::EntryType::Directory {
        mode & 0o1777
    } else {
        mode & 0o777
    }
}

/// The name a whiteout `.wh.<hidden>` deletes, if it names a real entry.
fn whiteout_target<'a>(hidden: &'a str, raw: &Path) -> Result<&'a str> {
    if hidden.is_empty() || hidden == "." || hidden == ".." || hidden.contains('/') {
        return Err(ImageError::UnsafeEntry {
            entry: raw.display().to_string(),
            reason: "it is a whiteout that names no entry",
        });
    }
    Ok(hidden)
}

fn device_refused(raw: &Path) -> ImageError {
    ImageError::UnsafeEntry {
        entry: raw.display().to_string(),
        reason: "it is a device node, and images may not carry device nodes (an instance gets its own /dev)",
    }
}

/// Checks a layer's headers against the rules [`apply_layer`] enforces that
/// need no tree to judge (`..` in paths or link targets, device nodes,
/// whiteouts that name nothing), without unpacking anything.
pub(crate) fn check_layer(blob: &Path) -> Result<()> {
    let mut archive = tar::Archive::new(open_layer(blob)?);
    for entry in archive
        .entries()
        .map_err(ImageError::io("cannot read layer", blob))?
    {
        let entry = entry.map_err(ImageError::io("cannot read layer", blob))?;
        let raw = entry
            .path()
            .map_err(ImageError::io("cannot read layer", blob))?
            .into_owned();
        let comps = safe_components(&raw)?;
        if let Some(hidden) = comps
            .last()
            .filter(|n| n.as_str() != ".wh..wh..opq")
            .and_then(|n| n.strip_prefix(".wh."))
        {
            whiteout_target(hidden, &raw)?;
        }
        match entry.header().entry_type() {
            tar::EntryType::Char | tar::EntryType::Block => return Err(device_refused(&raw)),
            tar::EntryType::Link => {
                let target = entry
                    .link_name()
                    .map_err(ImageError::io("cannot read layer", blob))?
                    .ok_or_else(|| ImageError::invalid("layer", "hard link without a target"))?;
                safe_components(&target)?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// Makes sure every parent of `comps` inside `root` is a real directory
/// (creating missing ones), refusing symlinks. Returns the full path.
fn prepare_parents(root: &Path, comps: &[String], entry: &Path) -> Result<PathBuf> {
    let mut p = root.to_path_buf();
    for c in comps.iter().take(comps.len().saturating_sub(1)) {
        p.push(c);
        match p.symlink_metadata() {
            Ok(m) if m.is_dir() => {}
            Ok(m) if m.file_type().is_symlink() => {
                return Err(ImageError::UnsafeEntry {
                    entry: entry.display().to_string(),
                    reason: "a parent directory is a symlink",
                });
            }
            Ok(_) => {
                remove_any(&p)?;
                mkdir(&p, 0o755)?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => mkdir(&p, 0o755)?,
            Err(e) => return Err(ImageError::io("cannot read", &p)(e)),
        }
    }
    if let Some(last) = comps.last() {
        p.push(last);
    }
    Ok(p)
}

fn mkdir(p: &Path, mode: u32) -> Result<()> {
    fs::create_dir(p).map_err(ImageError::io("cannot create", p))?;
    fs::set_permissions(p, fs::Permissions::from_mode(mode))
        .map_err(ImageError::io("cannot set permissions of", p))
}

fn cstr(p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| ImageError::invalid("path", format!("{} contains NUL", p.display())))
}

/// lchown + chmod (chmod after chown, which clears setuid bits; `mode` never
/// carries them, see [`unpacked_mode`]) + mtime, without following symlinks.
fn set_meta(p: &Path, uid: u64, gid: u64, mode: Option<u32>, mtime: i64) -> Result<()> {
    let c = cstr(p)?;
    let uid = u32::try_from(uid).unwrap_or(0);
    let gid = u32::try_from(gid).unwrap_or(0);
    // SAFETY: valid NUL-terminated path.
    if unsafe { libc::lchown(c.as_ptr(), uid, gid) } != 0 {
        return Err(ImageError::io("cannot change owner of", p)(
            io::Error::last_os_error(),
        ));
    }
    if let Some(mode) = mode {
        fs::set_permissions(p, fs::Permissions::from_mode(mode & 0o1777))
            .map_err(ImageError::io("cannot set permissions of", p))?;
    }
    set_mtime(p, mtime)
}

fn set_mtime(p: &Path, mtime: i64) -> Result<()> {
    let c = cstr(p)?;
    let t = libc::timespec {
        tv_sec: mtime,
        tv_nsec: 0,
    };
    let times = [t, t];
    // SAFETY: valid path and a two-element timespec array.
    let r = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if r != 0 {
        return Err(ImageError::io("cannot set times of", p)(
            io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Applies one layer on top of `root`.
pub(crate) fn apply_layer(blob: &Path, root: &Path) -> Result<()> {
    // Pass 1: whiteouts.
    let mut archive = tar::Archive::new(open_layer(blob)?);
    for entry in archive
        .entries()
        .map_err(ImageError::io("cannot read layer", blob))?
    {
        let entry = entry.map_err(ImageError::io("cannot read layer", blob))?;
        let raw = entry
            .path()
            .map_err(ImageError::io("cannot read layer", blob))?
            .into_owned();
        let comps = safe_components(&raw)?;
        let Some(name) = comps.last() else { continue };
        if name == ".wh..wh..opq" {
            let dir = prepare_parents(root, &comps, &raw)?;
            let dir = dir.parent().unwrap_or(root).to_path_buf();
            for child in sorted_entries(&dir).map_err(ImageError::io("cannot list", &dir))? {
                remove_any(&dir.join(child))?;
            }
        } else if let Some(hidden) = name.strip_prefix(".wh.") {
            let hidden = whiteout_target(hidden, &raw)?;
            let mut target = prepare_parents(root, &comps, &raw)?;
            target.set_file_name(hidden);
            remove_any(&target)?;
        }
    }
    // Pass 2: content. Directory times are set last (adding children changes them).
    let mut dir_times = Vec::new();
    let mut archive = tar::Archive::new(open_layer(blob)?);
    for entry in archive
        .entries()
        .map_err(ImageError::io("cannot read layer", blob))?
    {
        let mut entry = entry.map_err(ImageError::io("cannot read layer", blob))?;
        let raw = entry
            .path()
            .map_err(ImageError::io("cannot read layer", blob))?
            .into_owned();
        let comps = safe_components(&raw)?;
        let Some(name) = comps.last() else { continue };
        if name.starts_with(".wh.") {
            continue;
        }
        let h = entry.header();
        let (uid, gid) = (h.uid().unwrap_or(0), h.gid().unwrap_or(0));
        let kind = h.entry_type();
        let mode = unpacked_mode(kind, h.mode().unwrap_or(0o644));
        let mtime = i64::try_from(h.mtime().unwrap_or(0)).unwrap_or(0);
        let path = prepare_parents(root, &comps, &raw)?;
        let existing = path.symlink_metadata().ok();
        match kind {
            tar::EntryType::Directory => {
                if !existing.as_ref().is_some_and(|m| m.is_dir()) {
                    remove_any(&path)?;
                    mkdir(&path, 0o755)?;
                }
                set_meta(&path, uid, gid, Some(mode), mtime)?;
                dir_times.push((path, mtime));
            }
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                remove_any(&path)?;
                let mut f = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .mode(0o600)
                    .open(&path)
                    .map_err(ImageError::io("cannot create", &path))?;
                io::copy(&mut entry, &mut f).map_err(ImageError::io("cannot write", &path))?;
                f.flush().map_err(ImageError::io("cannot write", &path))?;
                drop(f);
                set_meta(&path, uid, gid, Some(mode), mtime)?;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(ImageError::io("cannot read layer", blob))?
                    .ok_or_else(|| ImageError::invalid("layer", "symlink without a target"))?
                    .into_owned();
                remove_any(&path)?;
                std::os::unix::fs::symlink(&target, &path)
                    .map_err(ImageError::io("cannot create symlink", &path))?;
                set_meta(&path, uid, gid, None, mtime)?;
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name()
                    .map_err(ImageError::io("cannot read layer", blob))?
                    .ok_or_else(|| ImageError::invalid("layer", "hard link without a target"))?
                    .into_owned();
                let tcomps = safe_components(&target)?;
                let tpath = prepare_parents(root, &tcomps, &raw)?;
                match tpath.symlink_metadata() {
                    // Only what this unpacking wrote can be linked: regular
                    // files (modes already cleared), symlinks and FIFOs.
                    Ok(m) if !m.is_dir() && !is_device(&m) => {}
                    _ => {
                        return Err(ImageError::UnsafeEntry {
                            entry: raw.display().to_string(),
                            reason: "its hard link target is not a file inside the image",
                        });
                    }
                }
                if tpath != path {
                    remove_any(&path)?;
                    fs::hard_link(&tpath, &path)
                        .map_err(ImageError::io("cannot create hard link", &path))?;
                }
            }
            tar::EntryType::Char | tar::EntryType::Block => return Err(device_refused(&raw)),
            tar::EntryType::Fifo => {
                remove_any(&path)?;
                let c = cstr(&path)?;
                // SAFETY: valid path; the mode is a plain integer.
                if unsafe { libc::mknod(c.as_ptr(), libc::S_IFIFO | mode, 0) } != 0 {
                    return Err(ImageError::io("cannot create node", &path)(
                        io::Error::last_os_error(),
                    ));
                }
                set_meta(&path, uid, gid, Some(mode), mtime)?;
            }
            // PAX and GNU extension headers are consumed by the tar reader;
            // anything else carries no filesystem content.
            _ => {}
        }
    }
    for (path, mtime) in dir_times.into_iter().rev() {
        set_mtime(&path, mtime)?;
    }
    Ok(())
}

fn is_device(m: &fs::Metadata) -> bool {
    use std::os::unix::fs::FileTypeExt;
    m.file_type().is_block_device() || m.file_type().is_char_device()
}

/// Whether an unpacked tree was made under the current rules.
fn rootfs_is_current(dir: &Path) -> bool {
    fs::read_to_string(dir.join("format")).is_ok_and(|f| f.trim() == ROOTFS_FORMAT)
}

/// Clears setuid/setgid bits and removes device nodes under `path`, never
/// following symlinks.
fn clean_tree(path: &Path) -> Result<()> {
    let m = path
        .symlink_metadata()
        .map_err(ImageError::io("cannot read", path))?;
    let ft = m.file_type();
    if ft.is_symlink() {
        return Ok(());
    }
    if is_device(&m) {
        return remove_any(path);
    }
    let kind = if ft.is_dir() {
        tar::EntryType::Directory
    } else {
        tar::EntryType::Regular
    };
    let mode = m.mode() & 0o7777;
    if unpacked_mode(kind, mode) != mode {
        fs::set_permissions(path, fs::Permissions::from_mode(unpacked_mode(kind, mode)))
            .map_err(ImageError::io("cannot set permissions of", path))?;
    }
    if ft.is_dir() {
        for name in sorted_entries(path).map_err(ImageError::io("cannot list", path))? {
            clean_tree(&path.join(name))?;
        }
    }
    Ok(())
}

/// One line per entry: path, inode, mode, owner, size, mtime and ctime (ns).
pub(crate) fn fingerprint(root: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    fingerprint_into(root, "", &mut out)?;
    Ok(out)
}

fn fingerprint_into(path: &Path, rel: &str, out: &mut Vec<String>) -> Result<()> {
    let m = path
        .symlink_metadata()
        .map_err(ImageError::io("cannot read", path))?;
    let shown = if rel.is_empty() { "/" } else { rel };
    out.push(format!(
        "{}\t{} {:o} {}:{} {} {}.{} {}.{}",
        shown.escape_default(),
        m.ino(),
        m.mode(),
        m.uid(),
        m.gid(),
        m.size(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec()
    ));
    if m.is_dir() {
        for name in sorted_entries(path).map_err(ImageError::io("cannot list", path))? {
            let child = format!("{rel}/{}", name.to_string_lossy());
            fingerprint_into(&path.join(&name), &child, out)?;
        }
    }
    Ok(())
}

/// Compares two fingerprints; returns the most telling differing path and
/// what happened to it. A directory whose times changed only because an entry
/// in it was added, removed or replaced is reported only when nothing more
/// specific differs.
fn first_difference(recorded: &[String], now: &[String]) -> Option<(String, &'static str)> {
    let key = |l: &str| l.split('\t').next().unwrap_or("").to_owned();
    let is_dir = |l: &str| {
        l.split('\t')
            .nth(1)
            .and_then(|rest| rest.split(' ').nth(1))
            .and_then(|m| u32::from_str_radix(m, 8).ok())
            .is_some_and(|m| m & 0o170000 == 0o040000)
    };
    let before: std::collections::BTreeMap<String, &String> =
        recorded.iter().map(|l| (key(l), l)).collect();
    let after: std::collections::BTreeMap<String, &String> =
        now.iter().map(|l| (key(l), l)).collect();
    let mut diffs: Vec<(String, &'static str, bool)> = Vec::new();
    for (k, a) in &before {
        match after.get(k) {
            None => diffs.push((k.clone(), "was removed", false)),
            Some(b) if b != a => diffs.push((k.clone(), "was changed", is_dir(a) && is_dir(b))),
            Some(_) => {}
        }
    }
    for k in after.keys().filter(|k| !before.contains_key(*k)) {
        diffs.push((k.clone(), "was added", false));
    }
    let pick = diffs.iter().position(|d| !d.2).unwrap_or(0);
    diffs.into_iter().nth(pick).map(|(k, c, _)| (k, c))
}

impl ImageStore {
    fn rootfs_dir(&self, digest: &Digest) -> PathBuf {
        self.dir().join("rootfs").join(digest.hex())
    }

    /// The unpacked root filesystem of an image, shared read-only by every
    /// instance of that digest: verifies the image's blobs, unpacks it the
    /// first time (atomically), and checks the tree's fingerprint every time.
    pub fn rootfs(&self, digest: &Digest) -> Result<PathBuf> {
        self.verify(digest)?;
        let _shared = self.lock("gc.lock", false)?;
        let dir = self.rootfs_dir(digest);
        let root = dir.join("root");
        if !dir.exists() {
            self.unpack_into_place(digest, &dir)?;
        } else if !rootfs_is_current(&dir) {
            self.clean_old_rootfs(digest, &dir)?;
        }
        self.check_rootfs(digest)?;
        Ok(root)
    }

    /// Brings a tree unpacked by an older Glint up to [`ROOTFS_FORMAT`] in
    /// place (instances may be running from it, so it is not replaced):
    /// checks it was not modified, clears setuid/setgid bits, removes device
    /// nodes, and records the new fingerprint and format.
    fn clean_old_rootfs(&self, digest: &Digest, dir: &Path) -> Result<()> {
        let _exclusive = self.lock("rootfs.lock", true)?;
        if rootfs_is_current(dir) {
            return Ok(());
        }
        self.check_rootfs(digest)?;
        clean_tree(&dir.join("root"))?;
        let fp = fingerprint(&dir.join("root"))?.join("\n");
        crate::store::write_atomic(self.dir(), &dir.join("fingerprint"), fp.as_bytes())?;
        crate::store::write_atomic(self.dir(), &dir.join("format"), ROOTFS_FORMAT.as_bytes())
    }

    /// Re-stats an unpacked root filesystem and compares it with the
    /// fingerprint recorded when it was unpacked.
    pub fn check_rootfs(&self, digest: &Digest) -> Result<()> {
        let dir = self.rootfs_dir(digest);
        let fp_path = dir.join("fingerprint");
        let recorded =
            fs::read_to_string(&fp_path).map_err(ImageError::io("cannot read", &fp_path))?;
        let recorded: Vec<String> = recorded.lines().map(str::to_owned).collect();
        let now = fingerprint(&dir.join("root"))?;
        match first_difference(&recorded, &now) {
            None => Ok(()),
            Some((path, change)) => Err(ImageError::RootfsTampered {
                digest: digest.clone(),
                path,
                change,
            }),
        }
    }

    /// Removes an image's unpacked root filesystem (e.g. after it was found
    /// tampered); the next [`ImageStore::rootfs`] unpacks it afresh.
    pub fn remove_rootfs(&self, digest: &Digest) -> Result<()> {
        remove_any(&self.rootfs_dir(digest))
    }

    fn unpack_into_place(&self, digest: &Digest, dir: &Path) -> Result<()> {
        let manifest = self.manifest(digest)?;
        let tmp = self.temp_dir("rootfs-")?;
        let root = tmp.path().join("root");
        mkdir(&root, 0o755)?;
        for layer in &manifest.layers {
            apply_layer(&self.blob_path(&layer.digest), &root)?;
        }
        let fp = fingerprint(&root)?.join("\n");
        let fp_path = tmp.path().join("fingerprint");
        fs::write(&fp_path, fp).map_err(ImageError::io("cannot write", &fp_path))?;
        let format_path = tmp.path().join("format");
        fs::write(&format_path, ROOTFS_FORMAT)
            .map_err(ImageError::io("cannot write", &format_path))?;
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755))
            .map_err(ImageError::io("cannot set permissions of", tmp.path()))?;
        let tmp_path = tmp.keep();
        match fs::rename(&tmp_path, dir) {
            Ok(()) => Ok(()),
            // Someone else unpacked it first: theirs is as good as ours.
            Err(_) if dir.join("fingerprint").exists() => remove_any(&tmp_path),
            Err(e) => {
                let _ = remove_any(&tmp_path);
                Err(ImageError::io("cannot move into place", dir)(e))
            }
        }
    }
}

#[cfg(test)]
#[path = "unpack_tests.rs"]
mod tests;
