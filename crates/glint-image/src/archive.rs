//! Moving images in and out of the store as single files.
//!
//! **Export** writes what `docker save` (Docker ≥ 25) writes, so that `docker
//! load` accepts it on old and new engines alike: an OCI layout (`oci-layout`,
//! `index.json`, `blobs/sha256/…`) *and* the legacy `manifest.json` (`Config`,
//! `RepoTags`, `Layers`) pointing at the same blob files. Docker Engine 20.10
//! reads only `manifest.json`; it decompresses gzip layers itself and checks
//! them against the config's `diff_ids`, so the layers are exported as they are
//! stored. The archive itself is deterministic (sorted entries, fixed times and
//! modes): the same image always exports to the same bytes.
//!
//! **Import** accepts such an archive, a plain OCI layout tar, a legacy
//! `docker save` archive (per-layer directories, possibly symlinked), any of
//! them gzip-compressed, or a plain root filesystem tarball (which becomes a
//! one-layer image). Nothing is trusted: members are extracted with path
//! discipline into a temp directory, every blob is re-hashed as it is stored,
//! every layer is decompressed and checked against the config's `diff_ids`,
//! and every layer's headers are checked against the unpacking rules (no `..`,
//! no device nodes, see `unpack.rs`), so a refused image never enters the store.

use crate::error::{ImageError, Result};
use crate::oci::{
    ANNOTATION_REF_NAME, Descriptor, DockerManifestEntry, ImageConfig, Index, IndexEntry,
    MEDIA_CONFIG, MEDIA_DOCKER_LIST, MEDIA_INDEX, MEDIA_LAYER_GZIP, MEDIA_LAYER_TAR,
    MEDIA_MANIFEST, Manifest, RootFs, RunConfig, rfc3339,
};
use crate::store::{ImageStore, Provenance, hash_reader, manifest_descriptor};
use crate::unpack::check_layer;
use glint_model::Digest;
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::time::SystemTime;

/// Annotation carrying Glint's own tag through an export/import round trip.
const ANNOTATION_GLINT_TAG: &str = "dev.glint.tag";
/// Annotation containerd and Docker ≥ 25 use for the full image name.
const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";

/// A tag as a Docker reference (`name:tag`), if it can be one.
fn docker_ref(tag: &str) -> Option<String> {
    let ok = !tag.is_empty()
        && tag
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-/:".contains(&b))
        && !tag.starts_with(['/', '.', '-', '_', ':']);
    if !ok {
        return None;
    }
    let last = tag.rsplit('/').next().unwrap_or(tag);
    Some(if last.contains(':') {
        tag.to_owned()
    } else {
        format!("{tag}:latest")
    })
}

fn open_maybe_gzip(path: &Path) -> Result<Box<dyn Read>> {
    let mut f = BufReader::new(File::open(path).map_err(ImageError::io("cannot open", path))?);
    let magic = f.fill_buf().map_err(ImageError::io("cannot read", path))?;
    if magic.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(flate2::bufread::GzDecoder::new(f)))
    } else {
        Ok(Box::new(f))
    }
}

/// Digest of a layer's uncompressed content.
fn diff_id_of(path: &Path) -> Result<Digest> {
    let mut r = open_maybe_gzip(path)?;
    hash_reader(&mut r)
        .map(|(d, _)| d)
        .map_err(ImageError::io("cannot read layer", path))
}

fn is_gzip(path: &Path) -> Result<bool> {
    let mut magic = [0u8; 2];
    let mut f = File::open(path).map_err(ImageError::io("cannot open", path))?;
    let n = f
        .read(&mut magic)
        .map_err(ImageError::io("cannot read", path))?;
    Ok(n == 2 && magic == [0x1f, 0x8b])
}

impl ImageStore {
    /// The image as an archive `docker load` accepts, exported once per
    /// digest under `<store>/archives/` and reused (the image is verified on
    /// every call; a consumer should still check the archive against the
    /// digest, as the Docker provider does).
    pub fn archive(&self, digest: &Digest) -> Result<std::path::PathBuf> {
        self.verify(digest)?;
        let dir = self.dir().join("archives");
        let path = dir.join(format!("{}.tar", digest.hex()));
        if path.exists() {
            return Ok(path);
        }
        std::fs::create_dir_all(&dir).map_err(ImageError::io("cannot create", dir.clone()))?;
        let tmp = dir.join(format!(".{}.{}.tmp", digest.hex(), std::process::id()));
        self.export(digest, &tmp)?;
        std::fs::rename(&tmp, &path)
            .map_err(ImageError::io("cannot move into place", path.clone()))?;
        Ok(path)
    }

    /// Writes image `digest` as a single archive that `docker load` accepts
    /// (and [`ImageStore::import`] reads back) to the file `path`. The image
    /// is verified first. The archive is written to a temp file beside `path`
    /// and renamed over it when complete, so `path` is never half-written; a
    /// `path` that exists and is not a regular file (a directory, a symlink, a
    /// FIFO, a device node) is refused with [`ImageError::ExportTarget`], not
    /// replaced.
    pub fn export(&self, digest: &Digest, path: &Path) -> Result<()> {
        check_export_target(path)?;
        let parent = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let tmp = tempfile::Builder::new()
            .prefix(".glint-export-")
            .tempfile_in(parent)
            .map_err(ImageError::io("cannot create a temp file in", parent))?;
        let w = |e| ImageError::Io {
            what: "cannot write",
            path: path.to_owned(),
            source: e,
        };
        let mut out = io::BufWriter::new(tmp);
        self.export_to(digest, &mut out)?;
        let tmp = out.into_inner().map_err(|e| w(e.into_error()))?;
        tmp.as_file().sync_all().map_err(w)?;
        // Checked again: the target may have been replaced while writing.
        check_export_target(path)?;
        tmp.persist(path).map_err(|e| w(e.error))?;
        Ok(())
    }

    /// Writes image `digest` as an archive (see [`ImageStore::export`]) to
    /// `out` (for example stdout). The image is verified first.
    pub fn export_to(&self, digest: &Digest, out: &mut dyn Write) -> Result<()> {
        self.verify(digest)?;
        let path = Path::new("<output>");
        let manifest = self.manifest(digest)?;
        let tags: Vec<String> = self
            .tags()?
            .into_iter()
            .filter(|(_, d)| d == digest)
            .map(|(t, _)| t)
            .collect();
        let manifest_size = self
            .blob_path(digest)
            .metadata()
            .map_err(ImageError::io("cannot read blob", self.blob_path(digest)))?
            .len();
        let mut index = Index::empty();
        let mut entries = Vec::new();
        for tag in &tags {
            let mut desc = manifest_descriptor(digest, manifest_size);
            desc.annotations
                .insert(ANNOTATION_GLINT_TAG.to_owned(), tag.clone());
            if let Some(r) = docker_ref(tag) {
                desc.annotations
                    .insert(ANNOTATION_CONTAINERD_NAME.to_owned(), r.clone());
                let short = r.rsplit(':').next().unwrap_or("latest").to_owned();
                desc.annotations
                    .insert(ANNOTATION_REF_NAME.to_owned(), short);
            }
            entries.push(IndexEntry {
                descriptor: desc,
                platform: None,
            });
        }
        if entries.is_empty() {
            entries.push(IndexEntry {
                descriptor: manifest_descriptor(digest, manifest_size),
                platform: None,
            });
        }
        index.manifests = entries;
        let legacy = vec![DockerManifestEntry {
            config: format!("blobs/sha256/{}", manifest.config.digest.hex()),
            repo_tags: Some(tags.iter().filter_map(|t| docker_ref(t)).collect()),
            layers: manifest
                .layers
                .iter()
                .map(|l| format!("blobs/sha256/{}", l.digest.hex()))
                .collect(),
        }];
        let index_bytes =
            serde_json::to_vec(&index).map_err(|e| ImageError::invalid("index.json", e))?;
        let legacy_bytes =
            serde_json::to_vec(&legacy).map_err(|e| ImageError::invalid("manifest.json", e))?;

        let mut tar = tar::Builder::new(out);
        let w = |e| ImageError::Io {
            what: "cannot write",
            path: path.to_owned(),
            source: e,
        };
        let add =
            |tar: &mut tar::Builder<_>, name: &str, data: &mut dyn Read, size: u64, dir: bool| {
                let mut h = tar::Header::new_gnu();
                h.set_entry_type(if dir {
                    tar::EntryType::Directory
                } else {
                    tar::EntryType::Regular
                });
                h.set_mode(if dir { 0o755 } else { 0o644 });
                h.set_mtime(0);
                h.set_uid(0);
                h.set_gid(0);
                h.set_size(size);
                tar.append_data(&mut h, name, data).map_err(w)
            };
        add(&mut tar, "blobs/", &mut io::empty(), 0, true)?;
        add(&mut tar, "blobs/sha256/", &mut io::empty(), 0, true)?;
        let mut blobs: Vec<Digest> = vec![digest.clone(), manifest.config.digest.clone()];
        blobs.extend(manifest.layers.iter().map(|l| l.digest.clone()));
        blobs.sort();
        blobs.dedup();
        for b in &blobs {
            let p = self.blob_path(b);
            let mut f = File::open(&p).map_err(ImageError::io("cannot open blob", &p))?;
            let size = f
                .metadata()
                .map_err(ImageError::io("cannot read blob", &p))?
                .len();
            add(
                &mut tar,
                &format!("blobs/sha256/{}", b.hex()),
                &mut f,
                size,
                false,
            )?;
        }
        add(
            &mut tar,
            "index.json",
            &mut index_bytes.as_slice(),
            index_bytes.len() as u64,
            false,
        )?;
        add(
            &mut tar,
            "manifest.json",
            &mut legacy_bytes.as_slice(),
            legacy_bytes.len() as u64,
            false,
        )?;
        let layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
        add(
            &mut tar,
            "oci-layout",
            &mut layout.as_slice(),
            layout.len() as u64,
            false,
        )?;
        tar.into_inner().and_then(|o| o.flush()).map_err(w)?;
        Ok(())
    }

    /// Reads an image archive (see the module documentation), verifies every
    /// digest, stores the image, tags it with the names it carries, and
    /// returns its manifest digest.
    pub fn import(&self, path: &Path) -> Result<Digest> {
        let _shared = self.lock("gc.lock", false)?;
        if !self.is_image_archive(path)? {
            return self.import_rootfs_tar(path);
        }
        let tmp = self.temp_dir("import-")?;
        let links = extract_archive(path, tmp.path())?;
        let tree = Tree {
            root: tmp.path().to_owned(),
            links,
        };
        let (digest, tags) = if tree.root.join("index.json").is_file() {
            self.import_oci(&tree)?
        } else if tree.root.join("manifest.json").is_file() {
            self.import_legacy(&tree)?
        } else {
            return Err(ImageError::invalid(
                format!("archive {}", path.display()),
                "it has neither index.json nor manifest.json",
            ));
        };
        let size = self
            .blob_path(&digest)
            .metadata()
            .map(|m| m.len())
            .unwrap_or(0);
        self.add_image(&digest, size)?;
        for t in &tags {
            self.tag(t, &digest)?;
        }
        self.write_import_record(&digest, path)?;
        Ok(digest)
    }

    fn write_import_record(&self, digest: &Digest, path: &Path) -> Result<()> {
        if self.provenance(digest)?.is_some() {
            return Ok(());
        }
        let config = self.config(digest)?;
        self.write_provenance(
            digest,
            &Provenance {
                name: None,
                tool_version: env!("CARGO_PKG_VERSION").to_owned(),
                built_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
                steps: config
                    .history
                    .iter()
                    .map(|h| h.created_by.clone())
                    .collect(),
                imported_from: Some(path.display().to_string()),
                ..Provenance::default()
            },
        )
    }

    /// Whether the tar has `index.json`, `manifest.json` or `oci-layout` at its top.
    fn is_image_archive(&self, path: &Path) -> Result<bool> {
        let mut ar = tar::Archive::new(open_maybe_gzip(path)?);
        for e in ar
            .entries()
            .map_err(ImageError::io("cannot read archive", path))?
        {
            let e = e.map_err(ImageError::io("cannot read archive", path))?;
            let p = e
                .path()
                .map_err(ImageError::io("cannot read archive", path))?;
            let p = p.to_string_lossy();
            let p = p.trim_start_matches("./");
            if matches!(p, "index.json" | "manifest.json" | "oci-layout") {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// A plain root filesystem tarball becomes a one-layer image.
    fn import_rootfs_tar(&self, path: &Path) -> Result<Digest> {
        let (blob, size) = self.put_file(path)?;
        let gz = is_gzip(&self.blob_path(&blob))?;
        let diff_id = if gz {
            diff_id_of(&self.blob_path(&blob))?
        } else {
            blob.clone()
        };
        // Prove the layer is a readable tar that unpacking will accept
        // before recording it as an image.
        check_layer(&self.blob_path(&blob))?;
        let config = ImageConfig {
            created: Some(rfc3339(0)),
            architecture: "amd64".into(),
            os: "linux".into(),
            config: RunConfig::default(),
            rootfs: RootFs {
                kind: "layers".into(),
                diff_ids: vec![diff_id],
            },
            history: Vec::new(),
        };
        let config_bytes =
            serde_json::to_vec(&config).map_err(|e| ImageError::invalid("image config", e))?;
        let config_digest = self.put_blob(&config_bytes)?;
        let manifest = Manifest {
            schema_version: 2,
            media_type: MEDIA_MANIFEST.into(),
            config: Descriptor {
                media_type: MEDIA_CONFIG.into(),
                digest: config_digest,
                size: config_bytes.len() as u64,
                annotations: BTreeMap::new(),
            },
            layers: vec![Descriptor {
                media_type: if gz {
                    MEDIA_LAYER_GZIP
                } else {
                    MEDIA_LAYER_TAR
                }
                .into(),
                digest: blob,
                size,
                annotations: BTreeMap::new(),
            }],
        };
        let bytes =
            serde_json::to_vec(&manifest).map_err(|e| ImageError::invalid("manifest", e))?;
        let digest = self.put_blob(&bytes)?;
        self.add_image(&digest, bytes.len() as u64)?;
        self.write_import_record(&digest, path)?;
        Ok(digest)
    }

    /// Stores a blob from the extracted archive, checking it hashes to `expected`.
    fn put_checked(
        &self,
        tree: &Tree,
        rel: &str,
        image: &Digest,
        expected: &Digest,
    ) -> Result<u64> {
        let p = tree.resolve(rel)?;
        let (actual, size) = self.put_file(&p)?;
        if &actual != expected {
            return Err(ImageError::Tampered {
                digest: image.clone(),
                blob: expected.clone(),
            });
        }
        Ok(size)
    }

    fn import_oci(&self, tree: &Tree) -> Result<(Digest, Vec<String>)> {
        let bytes = fs::read(tree.resolve("index.json")?)
            .map_err(ImageError::io("cannot read", tree.root.join("index.json")))?;
        let index: Index =
            serde_json::from_slice(&bytes).map_err(|e| ImageError::invalid("index.json", e))?;
        let Some(first) = index.manifests.first() else {
            return Err(ImageError::invalid("index.json", "it lists no image"));
        };
        let mut desc = first.descriptor.clone();
        let tags: Vec<String> = index
            .manifests
            .iter()
            .filter(|e| e.descriptor.digest == desc.digest)
            .filter_map(|e| {
                let a = &e.descriptor.annotations;
                a.get(ANNOTATION_GLINT_TAG)
                    .or_else(|| a.get(ANNOTATION_CONTAINERD_NAME))
                    .cloned()
            })
            .collect();
        // A multi-platform index: take linux/amd64 (or the only entry).
        if desc.media_type == MEDIA_INDEX || desc.media_type == MEDIA_DOCKER_LIST {
            let blob = format!("blobs/sha256/{}", desc.digest.hex());
            self.put_checked(tree, &blob, &desc.digest, &desc.digest)?;
            let inner: Index = serde_json::from_slice(&self.read_blob(&desc.digest, &desc.digest)?)
                .map_err(|e| ImageError::invalid(format!("image index {}", desc.digest), e))?;
            let pick = inner
                .manifests
                .iter()
                .find(|e| {
                    e.platform
                        .as_ref()
                        .is_some_and(|p| p.os == "linux" && p.architecture == "amd64")
                })
                .or(inner.manifests.first())
                .ok_or_else(|| ImageError::invalid("image index", "it lists no manifest"))?;
            desc = pick.descriptor.clone();
        }
        let digest = desc.digest.clone();
        self.put_checked(
            tree,
            &format!("blobs/sha256/{}", digest.hex()),
            &digest,
            &digest,
        )?;
        let manifest = self.manifest(&digest)?;
        self.put_checked(
            tree,
            &format!("blobs/sha256/{}", manifest.config.digest.hex()),
            &digest,
            &manifest.config.digest,
        )?;
        let config = self.config_of(&digest, &manifest)?;
        if config.rootfs.diff_ids.len() != manifest.layers.len() {
            return Err(ImageError::invalid(
                format!("image {digest}"),
                "config and manifest list different numbers of layers",
            ));
        }
        for (layer, diff_id) in manifest.layers.iter().zip(&config.rootfs.diff_ids) {
            self.put_checked(
                tree,
                &format!("blobs/sha256/{}", layer.digest.hex()),
                &digest,
                &layer.digest,
            )?;
            check_diff_id(&self.blob_path(&layer.digest), diff_id, &digest)?;
            check_layer(&self.blob_path(&layer.digest))?;
        }
        Ok((digest, tags))
    }

    fn import_legacy(&self, tree: &Tree) -> Result<(Digest, Vec<String>)> {
        let bytes = fs::read(tree.resolve("manifest.json")?).map_err(ImageError::io(
            "cannot read",
            tree.root.join("manifest.json"),
        ))?;
        let entries: Vec<DockerManifestEntry> =
            serde_json::from_slice(&bytes).map_err(|e| ImageError::invalid("manifest.json", e))?;
        let Some(entry) = entries.first() else {
            return Err(ImageError::invalid("manifest.json", "it lists no image"));
        };
        let (config_digest, config_size) = self.put_file(&tree.resolve(&entry.config)?)?;
        let config_bytes = self.read_blob(&config_digest, &config_digest)?;
        let config: ImageConfig = serde_json::from_slice(&config_bytes)
            .map_err(|e| ImageError::invalid(format!("config {}", entry.config), e))?;
        if config.rootfs.diff_ids.len() != entry.layers.len() {
            return Err(ImageError::invalid(
                "manifest.json",
                "config and manifest list different numbers of layers",
            ));
        }
        let mut layers = Vec::new();
        for (rel, diff_id) in entry.layers.iter().zip(&config.rootfs.diff_ids) {
            let (digest, size) = self.put_file(&tree.resolve(rel)?)?;
            let blob = self.blob_path(&digest);
            check_diff_id(&blob, diff_id, &config_digest)?;
            check_layer(&blob)?;
            layers.push(Descriptor {
                media_type: if is_gzip(&blob)? {
                    MEDIA_LAYER_GZIP
                } else {
                    MEDIA_LAYER_TAR
                }
                .into(),
                digest,
                size,
                annotations: BTreeMap::new(),
            });
        }
        let manifest = Manifest {
            schema_version: 2,
            media_type: MEDIA_MANIFEST.into(),
            config: Descriptor {
                media_type: MEDIA_CONFIG.into(),
                digest: config_digest,
                size: config_size,
                annotations: BTreeMap::new(),
            },
            layers,
        };
        let bytes =
            serde_json::to_vec(&manifest).map_err(|e| ImageError::invalid("manifest", e))?;
        let digest = self.put_blob(&bytes)?;
        Ok((digest, entry.repo_tags.clone().unwrap_or_default()))
    }
}

/// Refuses an export target that exists and is not a regular file.
fn check_export_target(path: &Path) -> Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let kind = match path.symlink_metadata() {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(ImageError::io("cannot read", path)(e)),
        Ok(m) => {
            let t = m.file_type();
            if t.is_file() {
                return Ok(());
            } else if t.is_dir() {
                "a directory"
            } else if t.is_symlink() {
                "a symlink"
            } else if t.is_fifo() {
                "a FIFO"
            } else if t.is_char_device() {
                "a character device"
            } else if t.is_block_device() {
                "a block device"
            } else if t.is_socket() {
                "a socket"
            } else {
                "not a regular file"
            }
        }
    };
    Err(ImageError::ExportTarget {
        path: path.to_owned(),
        kind,
    })
}

fn check_diff_id(blob: &Path, expected: &Digest, image: &Digest) -> Result<()> {
    let actual = diff_id_of(blob)?;
    if &actual != expected {
        return Err(ImageError::invalid(
            format!("image {image}"),
            format!("a layer decompresses to {actual}, but the config says {expected}"),
        ));
    }
    Ok(())
}

/// An extracted archive: regular files and directories on disk, symlinks kept
/// aside and resolved lexically (never followed on disk).
struct Tree {
    root: PathBuf,
    links: BTreeMap<String, String>,
}

/// Normalises `rel` lexically; `None` if it would leave the tree.
fn normalise(rel: &str) -> Option<String> {
    let mut out: Vec<String> = Vec::new();
    for c in Path::new(rel).components() {
        match c {
            Component::Normal(s) => out.push(s.to_string_lossy().into_owned()),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir => {
                out.pop()?;
            }
            Component::Prefix(_) => return None,
        }
    }
    Some(out.join("/"))
}

impl Tree {
    fn resolve(&self, rel: &str) -> Result<PathBuf> {
        let mut cur = normalise(rel).ok_or_else(|| ImageError::UnsafeEntry {
            entry: rel.to_owned(),
            reason: "it points outside the archive",
        })?;
        for _ in 0..8 {
            let Some(target) = self.links.get(&cur) else {
                let p = self.root.join(&cur);
                return if p.is_file() {
                    Ok(p)
                } else {
                    Err(ImageError::invalid(
                        "archive",
                        format!("member `{rel}` is missing"),
                    ))
                };
            };
            let parent = Path::new(&cur)
                .parent()
                .map(|p| p.to_string_lossy().into_owned());
            let joined = if target.starts_with('/') {
                target.clone()
            } else {
                format!("{}/{target}", parent.unwrap_or_default())
            };
            cur = normalise(&joined).ok_or_else(|| ImageError::UnsafeEntry {
                entry: rel.to_owned(),
                reason: "its symlink points outside the archive",
            })?;
        }
        Err(ImageError::UnsafeEntry {
            entry: rel.to_owned(),
            reason: "too many levels of symlinks",
        })
    }
}

/// Extracts regular files and directories of an archive under `dest`; returns
/// its symlinks. Anything else, or any path leaving `dest`, is refused.
fn extract_archive(path: &Path, dest: &Path) -> Result<BTreeMap<String, String>> {
    let mut links = BTreeMap::new();
    let mut ar = tar::Archive::new(open_maybe_gzip(path)?);
    for e in ar
        .entries()
        .map_err(ImageError::io("cannot read archive", path))?
    {
        let mut e = e.map_err(ImageError::io("cannot read archive", path))?;
        let raw = e
            .path()
            .map_err(ImageError::io("cannot read archive", path))?
            .to_string_lossy()
            .into_owned();
        let rel = match Path::new(&raw)
            .components()
            .any(|c| matches!(c, Component::ParentDir))
        {
            true => None,
            false => normalise(&raw),
        }
        .ok_or_else(|| ImageError::UnsafeEntry {
            entry: raw.clone(),
            reason: "its path contains `..`",
        })?;
        if rel.is_empty() {
            continue;
        }
        let target = dest.join(&rel);
        match e.header().entry_type() {
            tar::EntryType::Directory => {
                fs::create_dir_all(&target).map_err(ImageError::io("cannot create", &target))?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                if let Some(parent) = target.parent() {
                    fs::create_dir_all(parent).map_err(ImageError::io("cannot create", parent))?;
                }
                let mut f = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&target)
                    .map_err(ImageError::io("cannot create", &target))?;
                io::copy(&mut e, &mut f).map_err(ImageError::io("cannot write", &target))?;
                f.flush().map_err(ImageError::io("cannot write", &target))?;
            }
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let t = e
                    .link_name()
                    .map_err(ImageError::io("cannot read archive", path))?
                    .map(|t| t.to_string_lossy().into_owned())
                    .unwrap_or_default();
                // Hard links name a path from the archive root; symlinks are relative.
                let t = if e.header().entry_type() == tar::EntryType::Link {
                    format!("/{t}")
                } else {
                    t
                };
                links.insert(rel, t);
            }
            _ => {}
        }
    }
    Ok(links)
}
