//! Deterministic layers: the same files always give the same bytes.
//!
//! A layer is a tar (GNU headers, entries in sorted depth-first order, mtime =
//! `SOURCE_DATE_EPOCH`, no atime/ctime, no user or group names, no xattrs)
//! compressed with gzip at a fixed level with no file name and a zero mtime in
//! the gzip header. The uncompressed digest (the config's `diff_id`) and the
//! compressed digest (the blob's name) are computed while writing, in one pass.
//!
//! Two sources of layers:
//! - a `copy` step: files from the source tree, owned by root, with modes
//!   normalised (`0755` for directories and for files with any execute bit,
//!   `0644` otherwise, symlinks kept as symlinks), so the result does not depend
//!   on the checkout's umask or owner;
//! - a `run` step: the overlayfs upper directory after the step, kept as the
//!   step left it (modes and owners are the step's doing and deterministic),
//!   with overlay whiteouts (a 0/0 character device, an opaque directory)
//!   turned into OCI whiteouts (`.wh.<name>`, `.wh..wh..opq`); any other
//!   device node fails the step (images carry no devices, see `unpack.rs`).

use crate::error::{ImageError, Result};
use crate::oci::{Descriptor, MEDIA_LAYER_GZIP};
use crate::store::{BlobWriter, ImageStore};
use flate2::Compression;
use flate2::write::GzEncoder;
use glint_model::Digest;
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

/// Fixed gzip level: changing it changes every digest.
const GZIP_LEVEL: u32 = 6;

/// A layer written to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Layer {
    /// The compressed blob.
    pub descriptor: Descriptor,
    /// Digest of the uncompressed tar.
    pub diff_id: Digest,
}

/// Counts and hashes what passes through.
struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The kind of a non-regular, non-directory entry a layer may hold.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Special {
    Fifo,
}

/// Writes one deterministic layer into the store.
pub(crate) struct LayerWriter<'s> {
    store: &'s ImageStore,
    tar: tar::Builder<HashingWriter<GzEncoder<BlobWriter>>>,
    epoch: u64,
}

fn tar_err(e: io::Error) -> ImageError {
    ImageError::Io {
        what: "cannot write layer",
        path: "<layer>".into(),
        source: e,
    }
}

impl<'s> LayerWriter<'s> {
    pub(crate) fn new(store: &'s ImageStore, epoch: u64) -> Result<LayerWriter<'s>> {
        let blob = store.blob_writer()?;
        let gz = flate2::GzBuilder::new()
            .mtime(0)
            .operating_system(255)
            .write(blob, Compression::new(GZIP_LEVEL));
        let mut tar = tar::Builder::new(HashingWriter {
            inner: gz,
            hasher: Sha256::new(),
        });
        tar.mode(tar::HeaderMode::Deterministic);
        Ok(LayerWriter { store, tar, epoch })
    }

    fn header(&self, kind: tar::EntryType, mode: u32, uid: u64, gid: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode & 0o7777);
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_mtime(self.epoch);
        h.set_size(0);
        h
    }

    pub(crate) fn dir(&mut self, path: &str, mode: u32, uid: u64, gid: u64) -> Result<()> {
        let mut h = self.header(tar::EntryType::Directory, mode, uid, gid);
        self.tar
            .append_data(&mut h, format!("{path}/"), io::empty())
            .map_err(tar_err)
    }

    pub(crate) fn file(
        &mut self,
        path: &str,
        mode: u32,
        uid: u64,
        gid: u64,
        size: u64,
        data: impl Read,
    ) -> Result<()> {
        let mut h = self.header(tar::EntryType::Regular, mode, uid, gid);
        h.set_size(size);
        // `take` guards against a file that grows while it is read.
        self.tar
            .append_data(&mut h, path, data.take(size))
            .map_err(tar_err)
    }

    pub(crate) fn symlink(&mut self, path: &str, target: &Path, uid: u64, gid: u64) -> Result<()> {
        let mut h = self.header(tar::EntryType::Symlink, 0o777, uid, gid);
        self.tar.append_link(&mut h, path, target).map_err(tar_err)
    }

    pub(crate) fn special(
        &mut self,
        path: &str,
        kind: Special,
        mode: u32,
        uid: u64,
        gid: u64,
    ) -> Result<()> {
        let t = match kind {
            Special::Fifo => tar::EntryType::Fifo,
        };
        let mut h = self.header(t, mode, uid, gid);
        self.tar
            .append_data(&mut h, path, io::empty())
            .map_err(tar_err)
    }

    /// An OCI whiteout: `path` is deleted from the layers below.
    pub(crate) fn whiteout(&mut self, parent: &str, name: &str) -> Result<()> {
        let path = join(parent, &format!(".wh.{name}"));
        let mut h = self.header(tar::EntryType::Regular, 0o644, 0, 0);
        self.tar
            .append_data(&mut h, path, io::empty())
            .map_err(tar_err)
    }

    /// An opaque whiteout: the directory's contents in the layers below are hidden.
    pub(crate) fn opaque(&mut self, dir: &str) -> Result<()> {
        let path = join(dir, ".wh..wh..opq");
        let mut h = self.header(tar::EntryType::Regular, 0o644, 0, 0);
        self.tar
            .append_data(&mut h, path, io::empty())
            .map_err(tar_err)
    }

    /// Finishes the tar and the gzip stream and stores the blob.
    pub(crate) fn finish(self) -> Result<Layer> {
        let hashing = self.tar.into_inner().map_err(tar_err)?;
        let diff_id = Digest::from_sha256(&hashing.hasher.finalize());
        let blob = hashing.inner.finish().map_err(tar_err)?;
        let (digest, size) = self.store.commit_blob(blob)?;
        Ok(Layer {
            descriptor: Descriptor {
                media_type: MEDIA_LAYER_GZIP.to_owned(),
                digest,
                size,
                annotations: BTreeMap::new(),
            },
            diff_id,
        })
    }
}

/// `parent/name`, where an empty parent is the root.
pub(crate) fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_owned()
    } else {
        format!("{parent}/{name}")
    }
}

/// Directory entries of `dir`, sorted by name bytes.
pub(crate) fn sorted_entries(dir: &Path) -> io::Result<Vec<std::ffi::OsString>> {
    let mut names: Vec<_> = fs::read_dir(dir)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<_>>()?;
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names)
}

/// Normalised mode of a copied file.
pub(crate) fn normal_file_mode(mode: u32) -> u32 {
    if mode & 0o111 != 0 { 0o755 } else { 0o644 }
}

/// Writes the entries of a `copy` step: `src` (file, directory or symlink on
/// the host) placed at `dst` (a path inside the image, without leading `/`;
/// empty for the root). Missing parents of `dst` are added as `0755` directories.
pub(crate) fn write_copy(w: &mut LayerWriter<'_>, src: &Path, dst: &str) -> Result<()> {
    let mut parent = String::new();
    let comps: Vec<&str> = dst.split('/').filter(|c| !c.is_empty()).collect();
    for c in comps.iter().take(comps.len().saturating_sub(1)) {
        parent = join(&parent, c);
        w.dir(&parent, 0o755, 0, 0)?;
    }
    copy_entry(w, src, dst)
}

fn copy_entry(w: &mut LayerWriter<'_>, src: &Path, dst: &str) -> Result<()> {
    let meta = src
        .symlink_metadata()
        .map_err(ImageError::io("cannot read", src))?;
    let ft = meta.file_type();
    if ft.is_dir() {
        if !dst.is_empty() {
            w.dir(dst, 0o755, 0, 0)?;
        }
        for name in sorted_entries(src).map_err(ImageError::io("cannot list", src))? {
            let child_dst = join(dst, &name.to_string_lossy());
            copy_entry(w, &src.join(&name), &child_dst)?;
        }
        Ok(())
    } else if ft.is_file() {
        let f = File::open(src).map_err(ImageError::io("cannot open", src))?;
        w.file(dst, normal_file_mode(meta.mode()), 0, 0, meta.len(), f)
    } else if ft.is_symlink() {
        let target = fs::read_link(src).map_err(ImageError::io("cannot read link", src))?;
        w.symlink(dst, &target, 0, 0)
    } else {
        Err(ImageError::invalid(
            format!("copy source {}", src.display()),
            "only files, directories and symlinks can be copied",
        ))
    }
}

/// Writes the diff an overlayfs upper directory holds after a `run` step,
/// leaving out the top-level directories in `skip` (the `/proc` and `/dev`
/// mount points the sandbox created).
pub(crate) fn write_upper(w: &mut LayerWriter<'_>, upper: &Path, skip: &[&str]) -> Result<()> {
    upper_dir(w, upper, "", skip)
}

fn upper_dir(w: &mut LayerWriter<'_>, dir: &Path, rel: &str, skip: &[&str]) -> Result<()> {
    for name in sorted_entries(dir).map_err(ImageError::io("cannot list", dir))? {
        let path = dir.join(&name);
        let name = name.to_string_lossy().into_owned();
        if rel.is_empty() && skip.contains(&name.as_str()) && path.is_dir() {
            continue;
        }
        let child = join(rel, &name);
        let meta = path
            .symlink_metadata()
            .map_err(ImageError::io("cannot read", &path))?;
        let ft = meta.file_type();
        let (mode, uid, gid) = (meta.mode(), u64::from(meta.uid()), u64::from(meta.gid()));
        if ft.is_char_device() && meta.rdev() == 0 {
            w.whiteout(rel, &name)?;
        } else if ft.is_dir() {
            w.dir(&child, mode, uid, gid)?;
            if is_opaque(&path) {
                w.opaque(&child)?;
            }
            upper_dir(w, &path, &child, &[])?;
        } else if ft.is_file() {
            let f = File::open(&path).map_err(ImageError::io("cannot open", &path))?;
            w.file(&child, mode, uid, gid, meta.len(), f)?;
        } else if ft.is_symlink() {
            let target = fs::read_link(&path).map_err(ImageError::io("cannot read link", &path))?;
            w.symlink(&child, &target, uid, gid)?;
        } else if ft.is_fifo() {
            w.special(&child, Special::Fifo, mode, uid, gid)?;
        } else if ft.is_char_device() || ft.is_block_device() {
            // Unpacking refuses device nodes; say so at the step that made one.
            return Err(ImageError::invalid(
                format!("`/{child}` left by a run step"),
                "it is a device node, and images may not carry device nodes (an instance gets its own /dev)",
            ));
        }
        // Sockets are run-time objects, not image content: skipped.
    }
    Ok(())
}

/// Whether overlayfs marked a directory opaque (its lower contents hidden).
fn is_opaque(dir: &Path) -> bool {
    let Ok(path) = CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    let mut buf = [0u8; 4];
    for attr in [c"trusted.overlay.opaque", c"user.overlay.opaque"] {
        // SAFETY: valid NUL-terminated strings and a buffer of the given size.
        let n = unsafe {
            libc::lgetxattr(
                path.as_ptr(),
                attr.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        if n == 1 && buf[0] == b'y' {
            return true;
        }
    }
    false
}
