//! The content-addressed image store: an OCI image layout on disk.
//!
//! ```text
//! <dir>/oci-layout                 {"imageLayoutVersion":"1.0.0"}
//! <dir>/index.json                 every stored image; tags are ref.name annotations
//! <dir>/blobs/sha256/<hex>         manifests, configs, layers (read-only, written once)
//! <dir>/meta/<hex>.json            provenance side record of an image (wall-clock time lives here)
//! <dir>/rootfs/<hex>/root/         unpacked root filesystem, shared by all instances
//! <dir>/rootfs/<hex>/fingerprint   stat fingerprint of that tree, checked at every launch
//! <dir>/cache/                     build cache (input file digests, step and image records)
//! <dir>/tmp/                       temp files, renamed into place when complete
//! <dir>/index.lock, gc.lock        advisory locks (flock)
//! ```
//!
//! **Invariants.** A blob file is only ever created by renaming a complete,
//! fsynced temp file whose content hashed to the blob's name, and never replaced
//! (`renameat2(RENAME_NOREPLACE)`). Every read of a manifest or config
//! re-hashes it; [`ImageStore::verify`] re-hashes every blob of an image.
//! `index.json` is replaced atomically under `index.lock`. Builders and
//! unpackers hold `gc.lock` shared, the collector holds it exclusively, so the
//! collector never removes a blob a build has written but not yet indexed.

use crate::error::{ImageError, Result};
use crate::oci::{
    ANNOTATION_REF_NAME, Descriptor, ImageConfig, Index, IndexEntry, MEDIA_MANIFEST, Manifest,
};
use glint_model::Digest;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// An OCI image layout on disk, with tags, provenance and unpacked root filesystems.
#[derive(Debug, Clone)]
pub struct ImageStore {
    dir: PathBuf,
}

/// One image as `glint images` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageSummary {
    /// The image's manifest digest (its name).
    pub digest: Digest,
    /// Tags that point to it.
    pub tags: Vec<String>,
    /// Stored size of manifest, config and (compressed) layers.
    pub size: u64,
    /// When it was built or imported (wall clock, from the side record), else
    /// the config's fixed `created`.
    pub created: Option<String>,
}

/// Where an image came from and how it was made. Kept beside the image, not in
/// it, because the wall-clock time and tool version must not change its digest
/// (the deterministic part of the provenance, the steps with their input
/// digests, is also in the config's `history`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Provenance {
    /// The declared image name.
    pub name: Option<String>,
    /// The Glint version that built or imported it.
    pub tool_version: String,
    /// Wall-clock time of the build or import (RFC 3339).
    pub built_at: String,
    /// How long the build took, in milliseconds (0 for a cache hit or an import).
    pub build_millis: u64,
    /// The fixed clock the build used.
    pub source_date_epoch: u64,
    /// The base image digest, if any.
    pub base: Option<Digest>,
    /// Digests of the inputs: `copy` sources (tree digests) and base archives.
    pub inputs: BTreeMap<String, Digest>,
    /// The steps, as recorded in the config history.
    pub steps: Vec<String>,
    /// The test commands that passed.
    pub tests: Vec<Vec<String>>,
    /// The archive it was imported from, for imported images.
    pub imported_from: Option<String>,
}

/// What `glint image inspect` shows.
#[derive(Debug, Clone, Serialize)]
pub struct ImageDetails {
    /// The image's manifest digest.
    pub digest: Digest,
    /// Tags that point to it.
    pub tags: Vec<String>,
    /// The manifest.
    pub manifest: Manifest,
    /// The config.
    pub config: ImageConfig,
    /// The side record, if one exists.
    pub provenance: Option<Provenance>,
}

/// What [`ImageStore::gc`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GcReport {
    /// Images removed from the index.
    pub removed_images: Vec<Digest>,
    /// Number of blob files removed.
    pub removed_blobs: usize,
    /// Bytes freed (blobs and unpacked root filesystems).
    pub freed_bytes: u64,
}

/// A blob being written: a temp file in the store plus a running hash.
pub(crate) struct BlobWriter {
    file: tempfile::NamedTempFile,
    hasher: Sha256,
    size: u64,
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Held while a shared (build, unpack) or exclusive (gc) operation runs.
pub(crate) struct Lock {
    _file: File,
}

impl ImageStore {
    /// Opens (creating if needed) the image store in `dir`. Directories it
    /// creates are owner-only (`0700`), and `dir` itself is made so if it is
    /// not: it holds unpacked root filesystems, which nobody else may enter.
    pub fn open(dir: impl Into<PathBuf>) -> Result<ImageStore> {
        let dir = dir.into();
        for sub in [
            "blobs/sha256",
            "meta",
            "rootfs",
            "archives",
            "cache/steps",
            "cache/images",
            "tmp",
        ] {
            let p = dir.join(sub);
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&p)
                .map_err(ImageError::io("cannot create", &p))?;
        }
        let mode = dir
            .metadata()
            .map_err(ImageError::io("cannot read", &dir))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
                .map_err(ImageError::io("cannot set permissions of", &dir))?;
        }
        let layout = dir.join("oci-layout");
        if !layout.exists() {
            write_atomic(&dir, &layout, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        let index = dir.join("index.json");
        if !index.exists() {
            let bytes = serde_json::to_vec(&Index::empty()).unwrap_or_default();
            write_atomic(&dir, &index, &bytes)?;
        }
        Ok(ImageStore { dir })
    }

    /// Opens an existing image store for reading, creating and changing
    /// nothing (a read-only or full filesystem is fine); `None` if there is
    /// no store in `dir`. Only reads ([`ImageStore::list`],
    /// [`ImageStore::inspect`], [`ImageStore::resolve`], verification) may be
    /// used on it.
    pub fn open_existing(dir: impl Into<PathBuf>) -> Result<Option<ImageStore>> {
        let dir = dir.into();
        match dir.join("index.json").metadata() {
            Ok(_) => Ok(Some(ImageStore { dir })),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ImageError::io("cannot read", &dir)(e)),
        }
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path of a blob file (which may not exist).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.dir.join("blobs/sha256").join(digest.hex())
    }

    /// Whether a blob file exists (not verified).
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    pub(crate) fn tmp_dir(&self) -> PathBuf {
        self.dir.join("tmp")
    }

    /// A fresh temp directory inside the store (same filesystem, so it can be
    /// renamed into place).
    pub(crate) fn temp_dir(&self, prefix: &str) -> Result<tempfile::TempDir> {
        tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(self.tmp_dir())
            .map_err(ImageError::io(
                "cannot create a temp directory in",
                self.tmp_dir(),
            ))
    }

    pub(crate) fn blob_writer(&self) -> Result<BlobWriter> {
        let file = tempfile::Builder::new()
            .prefix("blob-")
            .tempfile_in(self.tmp_dir())
            .map_err(ImageError::io(
                "cannot create a temp file in",
                self.tmp_dir(),
            ))?;
        Ok(BlobWriter {
            file,
            hasher: Sha256::new(),
            size: 0,
        })
    }

    /// Completes a blob: fsync, then rename into place unless a blob with that
    /// digest already exists (blobs are never overwritten).
    pub(crate) fn commit_blob(&self, mut w: BlobWriter) -> Result<(Digest, u64)> {
        let digest = Digest::from_sha256(&w.hasher.finalize());
        let target = self.blob_path(&digest);
        let tmp_path = w.file.path().to_owned();
        w.file
            .flush()
            .and_then(|()| w.file.as_file().sync_all())
            .map_err(ImageError::io("cannot write", &tmp_path))?;
        if target.exists() {
            return Ok((digest, w.size));
        }
        fs::set_permissions(&tmp_path, fs::Permissions::from_mode(0o444))
            .map_err(ImageError::io("cannot set permissions of", &tmp_path))?;
        match w.file.persist_noclobber(&target) {
            Ok(_) => {}
            Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(ImageError::Io {
                    what: "cannot store blob",
                    path: target,
                    source: e.error,
                });
            }
        }
        sync_dir(&self.dir.join("blobs/sha256"));
        Ok((digest, w.size))
    }

    /// Stores `bytes` as a blob and returns its digest.
    pub fn put_blob(&self, bytes: &[u8]) -> Result<Digest> {
        let mut w = self.blob_writer()?;
        w.write_all(bytes)
            .map_err(ImageError::io("cannot write", self.tmp_dir()))?;
        Ok(self.commit_blob(w)?.0)
    }

    /// Stores a file's content as a blob, streaming, and returns digest and size.
    pub(crate) fn put_file(&self, path: &Path) -> Result<(Digest, u64)> {
        let mut src = File::open(path).map_err(ImageError::io("cannot open", path))?;
        let mut w = self.blob_writer()?;
        io::copy(&mut src, &mut w).map_err(ImageError::io("cannot read", path))?;
        self.commit_blob(w)
    }

    /// Reads a whole blob and checks that it hashes to its name. `image` names
    /// the image being read, for the error.
    pub fn read_blob(&self, image: &Digest, blob: &Digest) -> Result<Vec<u8>> {
        let path = self.blob_path(blob);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(ImageError::MissingBlob {
                    digest: image.clone(),
                    blob: blob.clone(),
                });
            }
            Err(e) => return Err(ImageError::io("cannot read blob", path)(e)),
        };
        if &Digest::of(&bytes) != blob {
            return Err(ImageError::Tampered {
                digest: image.clone(),
                blob: blob.clone(),
            });
        }
        Ok(bytes)
    }

    /// Re-hashes a blob file, streaming; returns its size.
    pub(crate) fn verify_blob(&self, image: &Digest, blob: &Digest) -> Result<u64> {
        let path = self.blob_path(blob);
        let mut f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(ImageError::MissingBlob {
                    digest: image.clone(),
                    blob: blob.clone(),
                });
            }
            Err(e) => return Err(ImageError::io("cannot read blob", path)(e)),
        };
        let (actual, size) =
            hash_reader(&mut f).map_err(ImageError::io("cannot read blob", &path))?;
        if &actual != blob {
            return Err(ImageError::Tampered {
                digest: image.clone(),
                blob: blob.clone(),
            });
        }
        Ok(size)
    }

    /// The verified manifest of an image.
    pub fn manifest(&self, digest: &Digest) -> Result<Manifest> {
        let bytes = self.read_blob(digest, digest)?;
        serde_json::from_slice(&bytes)
            .map_err(|e| ImageError::invalid(format!("manifest {digest}"), e))
    }

    /// The verified config of an image.
    pub fn config(&self, digest: &Digest) -> Result<ImageConfig> {
        let manifest = self.manifest(digest)?;
        self.config_of(digest, &manifest)
    }

    pub(crate) fn config_of(&self, digest: &Digest, manifest: &Manifest) -> Result<ImageConfig> {
        let bytes = self.read_blob(digest, &manifest.config.digest)?;
        serde_json::from_slice(&bytes)
            .map_err(|e| ImageError::invalid(format!("config of image {digest}"), e))
    }

    /// Re-hashes every blob of an image (manifest, config, layers). A single
    /// changed byte anywhere gives [`ImageError::Tampered`] naming the image
    /// and the blob. Call before every launch.
    pub fn verify(&self, digest: &Digest) -> Result<()> {
        let manifest = self.manifest(digest)?;
        let config = self.config_of(digest, &manifest)?;
        if config.rootfs.diff_ids.len() != manifest.layers.len() {
            return Err(ImageError::invalid(
                format!("image {digest}"),
                "config and manifest list different numbers of layers",
            ));
        }
        for layer in &manifest.layers {
            self.verify_blob(digest, &layer.digest)?;
        }
        Ok(())
    }

    // ---------------------------------------------------------------
    // Index and tags

    fn index_path(&self) -> PathBuf {
        self.dir.join("index.json")
    }

    /// Reads `index.json`.
    pub(crate) fn read_index(&self) -> Result<Index> {
        let path = self.index_path();
        let bytes = fs::read(&path).map_err(ImageError::io("cannot read", &path))?;
        serde_json::from_slice(&bytes).map_err(|e| ImageError::invalid("index.json", e))
    }

    /// Runs `f` on the index under the index lock and writes it back atomically.
    pub(crate) fn update_index<T>(&self, f: impl FnOnce(&mut Index) -> T) -> Result<T> {
        let _lock = self.lock("index.lock", true)?;
        let mut index = self.read_index()?;
        let out = f(&mut index);
        let bytes =
            serde_json::to_vec_pretty(&index).map_err(|e| ImageError::invalid("index.json", e))?;
        write_atomic(&self.dir, &self.index_path(), &bytes)?;
        Ok(out)
    }

    /// Takes an advisory lock on `<dir>/<name>`.
    pub(crate) fn lock(&self, name: &str, exclusive: bool) -> Result<Lock> {
        let path = self.dir.join(name);
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(ImageError::io("cannot open lock", &path))?;
        let op = if exclusive {
            libc::LOCK_EX
        } else {
            libc::LOCK_SH
        };
        loop {
            // SAFETY: flock on a file descriptor we own.
            let r = unsafe { libc::flock(file.as_raw_fd(), op) };
            if r == 0 {
                break;
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(ImageError::io("cannot lock", path)(e));
            }
        }
        Ok(Lock { _file: file })
    }

    /// Records an image (a stored manifest) in the index, untagged if it has no tag yet.
    pub(crate) fn add_image(&self, manifest: &Digest, size: u64) -> Result<()> {
        let desc = manifest_descriptor(manifest, size);
        self.update_index(|index| {
            if !index
                .manifests
                .iter()
                .any(|e| &e.descriptor.digest == manifest)
            {
                index.manifests.push(IndexEntry {
                    descriptor: desc,
                    platform: None,
                });
            }
        })
    }

    /// Points tag `name` at image `digest` (moving it from any other image).
    pub fn tag(&self, name: &str, digest: &Digest) -> Result<()> {
        let size = self
            .blob_path(digest)
            .metadata()
            .map(|m| m.len())
            .map_err(|e| {
                if e.kind() == io::ErrorKind::NotFound {
                    ImageError::UnknownImage(digest.to_string())
                } else {
                    ImageError::io("cannot read blob", self.blob_path(digest))(e)
                }
            })?;
        let name = name.to_owned();
        self.update_index(|index| {
            let mut previous = None;
            index.manifests.retain(|e| {
                if e.descriptor.annotations.get(ANNOTATION_REF_NAME) == Some(&name) {
                    previous = Some(e.descriptor.digest.clone());
                    false
                } else {
                    true
                }
            });
            // An image whose last tag moved away stays listed, untagged, until gc.
            if let Some(prev) = previous
                && !index.manifests.iter().any(|e| e.descriptor.digest == prev)
            {
                index.manifests.push(IndexEntry {
                    descriptor: manifest_descriptor(&prev, size_of(&self.blob_path(&prev))),
                    platform: None,
                });
            }
            index.manifests.retain(|e| {
                !(&e.descriptor.digest == digest && e.descriptor.annotations.is_empty())
            });
            let mut desc = manifest_descriptor(digest, size);
            desc.annotations
                .insert(ANNOTATION_REF_NAME.to_owned(), name);
            index.manifests.push(IndexEntry {
                descriptor: desc,
                platform: None,
            });
        })
    }

    /// Every tag and the image it points to.
    pub fn tags(&self) -> Result<BTreeMap<String, Digest>> {
        Ok(self
            .read_index()?
            .manifests
            .into_iter()
            .filter_map(|e| {
                let tag = e.descriptor.annotations.get(ANNOTATION_REF_NAME)?.clone();
                Some((tag, e.descriptor.digest))
            })
            .collect())
    }

    /// Every image in the index.
    pub fn images(&self) -> Result<BTreeSet<Digest>> {
        Ok(self
            .read_index()?
            .manifests
            .into_iter()
            .map(|e| e.descriptor.digest)
            .collect())
    }

    /// Resolves a reference: a full digest, a tag, or an unambiguous prefix of
    /// the hex digits (at least 4).
    pub fn resolve(&self, reference: &str) -> Result<Digest> {
        if let Ok(d) = Digest::parse(reference) {
            return if self.has_blob(&d) {
                Ok(d)
            } else {
                Err(ImageError::UnknownImage(reference.to_owned()))
            };
        }
        if let Some(d) = self.tags()?.get(reference) {
            return Ok(d.clone());
        }
        let hex = reference.strip_prefix("sha256:").unwrap_or(reference);
        if hex.len() >= 4 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            let matches: Vec<Digest> = self
                .images()?
                .into_iter()
                .filter(|d| d.hex().starts_with(hex))
                .collect();
            return match matches.as_slice() {
                [one] => Ok(one.clone()),
                [] => Err(ImageError::UnknownImage(reference.to_owned())),
                _ => Err(ImageError::AmbiguousImage(reference.to_owned())),
            };
        }
        Err(ImageError::UnknownImage(reference.to_owned()))
    }

    // ---------------------------------------------------------------
    // Provenance, listing, inspection

    fn meta_path(&self, digest: &Digest) -> PathBuf {
        self.dir.join("meta").join(format!("{}.json", digest.hex()))
    }

    /// Writes the side record of an image.
    pub(crate) fn write_provenance(&self, digest: &Digest, p: &Provenance) -> Result<()> {
        let bytes =
            serde_json::to_vec_pretty(p).map_err(|e| ImageError::invalid("provenance", e))?;
        write_atomic(&self.dir, &self.meta_path(digest), &bytes)
    }

    /// The side record of an image, if one exists.
    pub fn provenance(&self, digest: &Digest) -> Result<Option<Provenance>> {
        let path = self.meta_path(digest);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| ImageError::invalid(format!("provenance of {digest}"), e)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ImageError::io("cannot read", path)(e)),
        }
    }

    /// Every image in the index, with tags, size and creation time.
    pub fn list(&self) -> Result<Vec<ImageSummary>> {
        let index = self.read_index()?;
        let mut by_digest: BTreeMap<Digest, Vec<String>> = BTreeMap::new();
        for e in index.manifests {
            let tags = by_digest.entry(e.descriptor.digest).or_default();
            if let Some(t) = e.descriptor.annotations.get(ANNOTATION_REF_NAME) {
                tags.push(t.clone());
            }
        }
        let mut out = Vec::new();
        for (digest, mut tags) in by_digest {
            tags.sort();
            // Listing does not verify (that is `verify`'s job): a broken image
            // is still listed, with what can be read of it.
            let manifest: Option<Manifest> = fs::read(self.blob_path(&digest))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            let size = manifest.as_ref().map_or(0, |m| {
                size_of(&self.blob_path(&digest))
                    + m.config.size
                    + m.layers.iter().map(|l| l.size).sum::<u64>()
            });
            let created = match self.provenance(&digest).ok().flatten() {
                Some(p) => Some(p.built_at),
                None => manifest.and_then(|m| {
                    fs::read(self.blob_path(&m.config.digest))
                        .ok()
                        .and_then(|b| serde_json::from_slice::<ImageConfig>(&b).ok())
                        .and_then(|c| c.created)
                }),
            };
            out.push(ImageSummary {
                digest,
                tags,
                size,
                created,
            });
        }
        Ok(out)
    }

    /// Config, manifest, tags and provenance of one image (verified reads).
    pub fn inspect(&self, digest: &Digest) -> Result<ImageDetails> {
        let manifest = self.manifest(digest)?;
        let config = self.config_of(digest, &manifest)?;
        let tags = self
            .tags()?
            .into_iter()
            .filter(|(_, d)| d == digest)
            .map(|(t, _)| t)
            .collect();
        Ok(ImageDetails {
            digest: digest.clone(),
            tags,
            manifest,
            config,
            provenance: self.provenance(digest)?,
        })
    }

    // ---------------------------------------------------------------
    // Garbage collection

    /// Removes every image that is neither in `keep` nor tagged, every blob no
    /// remaining image references, their unpacked root filesystems, side
    /// records and build-cache records, and leftover temp files. The caller
    /// (the store owner) computes `keep` from the versions it must be able to
    /// roll back to.
    pub fn gc(&self, keep: &BTreeSet<Digest>) -> Result<GcReport> {
        let _gc = self.lock("gc.lock", true)?;
        let mut report = GcReport::default();
        let removed = self.update_index(|index| {
            let roots: BTreeSet<Digest> = index
                .manifests
                .iter()
                .filter(|e| {
                    keep.contains(&e.descriptor.digest)
                        || e.descriptor.annotations.contains_key(ANNOTATION_REF_NAME)
                })
                .map(|e| e.descriptor.digest.clone())
                .collect();
            let mut removed = BTreeSet::new();
            index.manifests.retain(|e| {
                let kept = roots.contains(&e.descriptor.digest);
                if !kept {
                    removed.insert(e.descriptor.digest.clone());
                }
                kept
            });
            removed
        })?;
        report.removed_images = removed.into_iter().collect();
        let live: BTreeSet<Digest> = self
            .images()?
            .into_iter()
            .chain(keep.iter().cloned())
            .collect();
        let mut reachable = BTreeSet::new();
        for m in &live {
            reachable.insert(m.clone());
            // Unverified parse: a tampered manifest keeps what it names rather
            // than making gc delete an image's layers.
            if let Some(manifest) = fs::read(self.blob_path(m))
                .ok()
                .and_then(|b| serde_json::from_slice::<Manifest>(&b).ok())
            {
                reachable.insert(manifest.config.digest);
                reachable.extend(manifest.layers.into_iter().map(|l| l.digest));
            }
        }
        let blobs = self.dir.join("blobs/sha256");
        for entry in fs::read_dir(&blobs).map_err(ImageError::io("cannot list", &blobs))? {
            let entry = entry.map_err(ImageError::io("cannot list", &blobs))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let keep_it =
                Digest::parse(format!("sha256:{name}")).is_ok_and(|d| reachable.contains(&d));
            if !keep_it {
                let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
                fs::remove_file(entry.path())
                    .map_err(ImageError::io("cannot remove", entry.path()))?;
                report.removed_blobs += 1;
                report.freed_bytes += size;
            }
        }
        // Unpacked trees and side records of images that are gone.
        for (sub, suffix) in [("rootfs", ""), ("meta", ".json"), ("archives", ".tar")] {
            let d = self.dir.join(sub);
            for entry in fs::read_dir(&d).map_err(ImageError::io("cannot list", &d))? {
                let entry = entry.map_err(ImageError::io("cannot list", &d))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                let hex = name.strip_suffix(suffix).unwrap_or(&name);
                let alive = Digest::parse(format!("sha256:{hex}")).is_ok_and(|d| live.contains(&d));
                if !alive {
                    report.freed_bytes += tree_size(&entry.path());
                    remove_any(&entry.path())?;
                }
            }
        }
        // Cache records whose blobs are gone would only be misses; drop them.
        for sub in ["cache/steps", "cache/images"] {
            let d = self.dir.join(sub);
            for entry in fs::read_dir(&d).map_err(ImageError::io("cannot list", &d))? {
                let entry = entry.map_err(ImageError::io("cannot list", &d))?;
                let dangling = fs::read(entry.path())
                    .ok()
                    .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                    .and_then(|v| v.get("digest").and_then(|d| d.as_str()).map(str::to_owned))
                    .and_then(|d| Digest::parse(d).ok())
                    .is_none_or(|d| !self.has_blob(&d));
                if dangling {
                    remove_any(&entry.path())?;
                }
            }
        }
        // No builder holds the shared lock, so every temp file is a leftover.
        let tmp = self.tmp_dir();
        for entry in fs::read_dir(&tmp).map_err(ImageError::io("cannot list", &tmp))? {
            let entry = entry.map_err(ImageError::io("cannot list", &tmp))?;
            remove_any(&entry.path())?;
        }
        Ok(report)
    }
}

/// The index descriptor of a manifest.
pub(crate) fn manifest_descriptor(digest: &Digest, size: u64) -> Descriptor {
    Descriptor {
        media_type: MEDIA_MANIFEST.to_owned(),
        digest: digest.clone(),
        size,
        annotations: BTreeMap::new(),
    }
}

/// Hashes everything `r` yields.
pub(crate) fn hash_reader(r: &mut impl Read) -> io::Result<(Digest, u64)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((Digest::from_sha256(&hasher.finalize()), size))
}

/// Writes a small file atomically: temp file in `dir`'s `tmp/` (or `dir`),
/// fsync, rename over the target.
pub(crate) fn write_atomic(dir: &Path, target: &Path, bytes: &[u8]) -> Result<()> {
    let tmp_dir = if dir.join("tmp").is_dir() {
        dir.join("tmp")
    } else {
        dir.to_owned()
    };
    let mut f = tempfile::Builder::new()
        .prefix(".write-")
        .tempfile_in(&tmp_dir)
        .map_err(ImageError::io("cannot create a temp file in", &tmp_dir))?;
    f.write_all(bytes)
        .and_then(|()| f.as_file().sync_all())
        .map_err(ImageError::io("cannot write", target))?;
    f.persist(target).map_err(|e| ImageError::Io {
        what: "cannot replace",
        path: target.to_owned(),
        source: e.error,
    })?;
    if let Some(parent) = target.parent() {
        sync_dir(parent);
    }
    Ok(())
}

/// fsyncs a directory (best effort: durability, not correctness, depends on it).
pub(crate) fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

fn size_of(path: &Path) -> u64 {
    path.metadata().map(|m| m.len()).unwrap_or(0)
}

/// Total size of the files under `path` (not following symlinks).
pub(crate) fn tree_size(path: &Path) -> u64 {
    let Ok(meta) = path.symlink_metadata() else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    fs::read_dir(path)
        .map(|rd| rd.flatten().map(|e| tree_size(&e.path())).sum())
        .unwrap_or(0)
}

/// Removes a file, symlink or whole directory tree.
pub(crate) fn remove_any(path: &Path) -> Result<()> {
    let r = match path.symlink_metadata() {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    };
    r.map_err(ImageError::io("cannot remove", path))
}
