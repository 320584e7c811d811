//! The builder: declared images in, digests out.
//!
//! Images are built in dependency order (`from = <image>` first). For each
//! image the builder hashes its inputs (the base digest, every `copy`
//! source as a *tree digest*: paths, normalised modes, file contents, link
//! targets), then:
//!
//! 1. **Image cache.** key = hash(builder format version, base digest, the
//!    declaration, input digests, `SOURCE_DATE_EPOCH`). A hit is the whole
//!    no-change rebuild: it needs only `stat` calls (file digests are cached by
//!    device, inode, size, mtime and ctime in `cache/files.json`), one small
//!    file read and an existence check of the manifest blob.
//! 2. **Step cache.** key_k = hash(key_{k-1}, step, its input digest), key_0 =
//!    hash(base digest): an unchanged prefix of steps reuses its layers.
//! 3. `copy` steps write a deterministic layer directly from the source tree;
//!    `run` steps execute in the [sandbox](crate::sandbox) on an overlay over the
//!    image so far (a work tree flattened lazily, only when a `run` step misses
//!    the cache) and their layer is the overlay's upper directory.
//! 4. The config (fixed `created`, history with each step's provenance) and
//!    manifest are stored; `test` steps run against the finished image; the
//!    pinned digest, if any, is checked. Only then is the image indexed and
//!    tagged, and its side record written. A failing test or a pin mismatch
//!    leaves the image untagged (its blobs are garbage for `gc`).

use crate::error::{ImageError, Result};
use crate::layer::{Layer, LayerWriter, normal_file_mode, sorted_entries, write_copy, write_upper};
use crate::oci::{
    Descriptor, History, ImageConfig, MEDIA_CONFIG, MEDIA_MANIFEST, Manifest, RootFs, RunConfig,
    rfc3339,
};
use crate::sandbox::{self, Root, Spec};
use crate::store::{ImageStore, Provenance, write_atomic};
use crate::unpack::apply_layer;
use glint_model::{ContentHash, Digest, Image, ImageBase, ImageStep, Name};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::time::{Instant, SystemTime};

/// Bumped whenever the builder's output for the same inputs changes, so old
/// cache records are not reused.
const FORMAT: &str = "glint-image-builder/1";

/// The fixed `PATH` of `run` and `test` steps.
pub const STEP_PATH: &str = "/bin:/usr/bin";

/// How to build.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// The fixed clock: layer mtimes, config `created`, and `SOURCE_DATE_EPOCH`
    /// in steps. Default: the caller's `SOURCE_DATE_EPOCH`, else 0.
    pub source_date_epoch: u64,
    /// Tags are `<tag_prefix><image name>` (e.g. `hello/` gives `hello/app`).
    pub tag_prefix: String,
    /// Recorded in the side record (not in the image, so upgrades keep digests).
    pub tool_version: String,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            source_date_epoch: std::env::var("SOURCE_DATE_EPOCH")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            tag_prefix: String::new(),
            tool_version: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }
}

/// One built image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Built {
    /// The manifest digest: the image's name everywhere in Glint.
    pub digest: Digest,
    /// The config digest (what `docker images` shows as the image id).
    pub config_digest: Digest,
    /// The tag it was given.
    pub tag: String,
    /// True when nothing had to be built (image cache hit).
    pub cached: bool,
    /// Stored size (manifest, config, compressed layers).
    pub size: u64,
}

/// What the builder reports while it works (for progress lines).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// An image is about to be built.
    Image {
        /// The image.
        name: Name,
    },
    /// A step finished.
    Step {
        /// The image.
        name: Name,
        /// 1-based step number.
        step: usize,
        /// Number of steps.
        of: usize,
        /// What the step did.
        what: String,
        /// Whether its layer came from the cache.
        cached: bool,
    },
    /// A test passed.
    Test {
        /// The image.
        name: Name,
        /// 1-based test number.
        test: usize,
        /// The command.
        command: String,
    },
    /// An image is done.
    Done {
        /// The image.
        name: Name,
        /// The result.
        built: Built,
    },
}

/// Builds every image of `images` (dependencies first) from sources under
/// `root`, into `store`. Stops at the first failure; images built before it
/// stay built and tagged.
pub fn build(
    images: &BTreeMap<Name, Image>,
    root: &Path,
    store: &ImageStore,
    opts: &BuildOptions,
    progress: &mut dyn FnMut(&Progress),
) -> Result<BTreeMap<Name, Built>> {
    let order = build_order(images)?;
    let _shared = store.lock("gc.lock", false)?;
    let mut files = FileCache::load(store);
    let mut built = BTreeMap::new();
    let mut result = Ok(());
    for name in order {
        let Some(image) = images.get(&name) else {
            continue;
        };
        let mut b = Builder {
            store,
            root,
            opts,
            files: &mut files,
            name: &name,
            image,
        };
        match b.build(&built, progress) {
            Ok(done) => {
                progress(&Progress::Done {
                    name: name.clone(),
                    built: done.clone(),
                });
                built.insert(name, done);
            }
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    files.save(store);
    result.map(|()| built)
}

/// The digest each image will have, as far as it is known without building:
/// `Some` when the same inputs were built before (the image cache), `None`
/// when the image must be built (for `glint plan`, which shows digests but
/// builds nothing). Hashes the inputs like [`build`], with `stat` calls only
/// for unchanged files.
pub fn cached_digests(
    images: &BTreeMap<Name, Image>,
    root: &Path,
    store: &ImageStore,
    opts: &BuildOptions,
) -> Result<BTreeMap<Name, Option<Digest>>> {
    let order = build_order(images)?;
    let mut files = FileCache::load(store);
    let mut known = BTreeMap::new();
    for name in order {
        let Some(image) = images.get(&name) else {
            continue;
        };
        let mut b = Builder {
            store,
            root,
            opts,
            files: &mut files,
            name: &name,
            image,
        };
        let digest = b.cached_digest(&known)?;
        known.insert(name, digest);
    }
    files.save(store);
    Ok(known)
}

/// Names in an order where every image comes after its base.
fn build_order(images: &BTreeMap<Name, Image>) -> Result<Vec<Name>> {
    fn visit(
        name: &Name,
        images: &BTreeMap<Name, Image>,
        done: &mut BTreeSet<Name>,
        path: &mut Vec<Name>,
        out: &mut Vec<Name>,
    ) -> Result<()> {
        if done.contains(name) {
            return Ok(());
        }
        if path.contains(name) {
            let cycle: Vec<String> = path.iter().map(ToString::to_string).collect();
            return Err(ImageError::Declaration {
                image: name.clone(),
                reason: format!(
                    "images depend on each other in a cycle: {} -> {name}",
                    cycle.join(" -> ")
                ),
            });
        }
        let Some(image) = images.get(name) else {
            return Ok(());
        };
        if let ImageBase::Image { name: base } = &image.from {
            if !images.contains_key(base) {
                return Err(ImageError::Declaration {
                    image: name.clone(),
                    reason: format!("`from` names image `{base}`, which is not declared"),
                });
            }
            path.push(name.clone());
            visit(base, images, done, path, out)?;
            path.pop();
        }
        done.insert(name.clone());
        out.push(name.clone());
        Ok(())
    }
    let mut done = BTreeSet::new();
    let mut out = Vec::new();
    for name in images.keys() {
        visit(name, images, &mut done, &mut Vec::new(), &mut out)?;
    }
    Ok(out)
}

/// What a base contributes.
struct Base {
    manifest: Option<Digest>,
    layers: Vec<Descriptor>,
    config: Option<ImageConfig>,
}

/// A cached layer (`cache/steps/<key>.json`).
#[derive(Debug, Serialize, Deserialize)]
struct StepRecord {
    digest: Digest,
    size: u64,
    media_type: String,
    diff_id: Digest,
}

/// A cached image (`cache/images/<key>.json`).
#[derive(Debug, Serialize, Deserialize)]
struct ImageRecord {
    digest: Digest,
}

struct Builder<'a> {
    store: &'a ImageStore,
    root: &'a Path,
    opts: &'a BuildOptions,
    files: &'a mut FileCache,
    name: &'a Name,
    image: &'a Image,
}

impl Builder<'_> {
    fn build(
        &mut self,
        built: &BTreeMap<Name, Built>,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<Built> {
        let started = Instant::now();
        let name = self.name.clone();
        let mut inputs = BTreeMap::new();
        let base = self.base(built, &mut inputs)?;
        let step_inputs = self.step_inputs(&mut inputs)?;
        let image_key = self.image_key(&base.manifest, &step_inputs);
        let tag = format!("{}{}", self.opts.tag_prefix, name);
        if let Some(rec) = read_record::<ImageRecord>(&self.record_path("images", &image_key))
            && self.store.has_blob(&rec.digest)
            && let Ok(manifest) = self.store.manifest(&rec.digest)
            && manifest
                .layers
                .iter()
                .all(|l| self.store.has_blob(&l.digest))
        {
            if self.store.tags()?.get(&tag) != Some(&rec.digest) {
                self.store.tag(&tag, &rec.digest)?;
            }
            return Ok(Built {
                size: image_size(self.store, &rec.digest, &manifest),
                config_digest: manifest.config.digest,
                digest: rec.digest,
                tag,
                cached: true,
            });
        }
        progress(&Progress::Image { name: name.clone() });

        let epoch = self.opts.source_date_epoch;
        let mut config = base.config.clone().unwrap_or_else(|| ImageConfig {
            created: None,
            architecture: "amd64".into(),
            os: "linux".into(),
            config: RunConfig::default(),
            rootfs: RootFs {
                kind: "layers".into(),
                diff_ids: Vec::new(),
            },
            history: Vec::new(),
        });
        let mut layers = base.layers.clone();
        let mut chain = ContentHash::of(&(FORMAT, "base", &base.manifest, epoch));
        let mut work: Option<WorkTree> = None;
        let total = self.image.steps.len();
        for (i, (step, input)) in self.image.steps.iter().zip(&step_inputs).enumerate() {
            let key = ContentHash::of(&(chain.as_str(), step, input));
            let what = describe(step, input.as_ref());
            let record_path = self.record_path("steps", &key);
            let cached =
                read_record::<StepRecord>(&record_path).filter(|r| self.store.has_blob(&r.digest));
            let (layer, hit) = match cached {
                Some(r) => (
                    Layer {
                        descriptor: Descriptor {
                            media_type: r.media_type,
                            digest: r.digest,
                            size: r.size,
                            annotations: BTreeMap::new(),
                        },
                        diff_id: r.diff_id,
                    },
                    true,
                ),
                None => {
                    let layer = match step {
                        ImageStep::Copy { src, dst } => self.copy_layer(src, dst)?,
                        ImageStep::Run { argv } => {
                            let w = match &mut work {
                                Some(w) => w,
                                None => work.insert(WorkTree::new(self.store)?),
                            };
                            w.catch_up(self.store, &layers)?;
                            self.run_layer(i + 1, argv, &config, &w.root)?
                        }
                    };
                    let rec = StepRecord {
                        digest: layer.descriptor.digest.clone(),
                        size: layer.descriptor.size,
                        media_type: layer.descriptor.media_type.clone(),
                        diff_id: layer.diff_id.clone(),
                    };
                    write_record(self.store, &record_path, &rec)?;
                    (layer, false)
                }
            };
            layers.push(layer.descriptor);
            config.rootfs.diff_ids.push(layer.diff_id);
            config.history.push(History {
                created: Some(rfc3339(epoch)),
                created_by: what.clone(),
                empty_layer: false,
            });
            progress(&Progress::Step {
                name: name.clone(),
                step: i + 1,
                of: total,
                what,
                cached: hit,
            });
            chain = key;
        }
        drop(work);

        // Run-time configuration: the base's, overridden by this declaration.
        config.created = Some(rfc3339(epoch));
        config.architecture = "amd64".into();
        config.os = "linux".into();
        let mut env = config.config.env_map();
        env.extend(self.image.env.clone());
        config.config.env = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        if !self.image.entrypoint.is_empty() {
            config.config.entrypoint = Some(self.image.entrypoint.clone());
            config.config.cmd = None;
        }
        config.config.working_dir = if self.image.workdir.is_empty() {
            "/".into()
        } else {
            self.image.workdir.clone()
        };
        if let Some(port) = self.image.port {
            config.config.exposed_ports = BTreeMap::from([(
                format!("{port}/tcp"),
                serde_json::Value::Object(Default::default()),
            )]);
        }
        let config_bytes =
            serde_json::to_vec(&config).map_err(|e| ImageError::invalid("image config", e))?;
        let config_digest = self.store.put_blob(&config_bytes)?;
        let manifest = Manifest {
            schema_version: 2,
            media_type: MEDIA_MANIFEST.into(),
            config: Descriptor {
                media_type: MEDIA_CONFIG.into(),
                digest: config_digest.clone(),
                size: config_bytes.len() as u64,
                annotations: BTreeMap::new(),
            },
            layers,
        };
        let manifest_bytes =
            serde_json::to_vec(&manifest).map_err(|e| ImageError::invalid("manifest", e))?;
        let digest = self.store.put_blob(&manifest_bytes)?;

        self.run_tests(&digest, &config, progress)?;
        if let Some(pin) = &self.image.digest
            && pin != &digest
        {
            return Err(ImageError::PinnedDigest {
                image: name,
                expected: pin.clone(),
                actual: digest,
            });
        }
        self.store.add_image(&digest, manifest_bytes.len() as u64)?;
        self.store.tag(&tag, &digest)?;
        let provenance = Provenance {
            name: Some(name.to_string()),
            tool_version: self.opts.tool_version.clone(),
            built_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            build_millis: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            source_date_epoch: epoch,
            base: base.manifest.clone(),
            inputs,
            steps: config
                .history
                .iter()
                .map(|h| h.created_by.clone())
                .collect(),
            tests: self.image.tests.clone(),
            imported_from: None,
        };
        self.store.write_provenance(&digest, &provenance)?;
        write_record(
            self.store,
            &self.record_path("images", &image_key),
            &ImageRecord {
                digest: digest.clone(),
            },
        )?;
        Ok(Built {
            size: image_size(self.store, &digest, &manifest),
            config_digest,
            digest,
            tag,
            cached: false,
        })
    }

    /// The input digest of each step (`copy` sources; `None` for `run`).
    fn step_inputs(
        &mut self,
        inputs: &mut BTreeMap<String, Digest>,
    ) -> Result<Vec<Option<Digest>>> {
        let mut step_inputs = Vec::new();
        for step in &self.image.steps {
            let input = match step {
                ImageStep::Copy { src, .. } => {
                    let d = self.tree_digest(src)?;
                    inputs.insert(src.clone(), d.clone());
                    Some(d)
                }
                ImageStep::Run { .. } => None,
            };
            step_inputs.push(input);
        }
        Ok(step_inputs)
    }

    fn image_key(&self, base: &Option<Digest>, step_inputs: &[Option<Digest>]) -> ContentHash {
        ContentHash::of(&(
            FORMAT,
            base,
            self.image,
            step_inputs,
            self.opts.source_date_epoch,
        ))
    }

    /// The digest this image has if it was built before from the same inputs
    /// (no building, no tagging); `None` if it must be built.
    fn cached_digest(&mut self, known: &BTreeMap<Name, Option<Digest>>) -> Result<Option<Digest>> {
        let base = match &self.image.from {
            ImageBase::Scratch => None,
            ImageBase::Image { name } => match known.get(name) {
                Some(Some(d)) => Some(d.clone()),
                _ => return Ok(None),
            },
            ImageBase::Archive { path, digest } => {
                let full = self.source_path(path)?;
                let actual = self.files.file_digest(&full)?;
                if &actual != digest {
                    return Err(ImageError::ArchiveDigest {
                        image: self.name.clone(),
                        path: full,
                        expected: digest.clone(),
                        actual,
                    });
                }
                let key = ContentHash::of(&(FORMAT, "archive", &actual));
                match read_record::<ImageRecord>(&self.record_path("images", &key)) {
                    Some(r) if self.store.has_blob(&r.digest) => Some(r.digest),
                    _ => return Ok(None),
                }
            }
        };
        let step_inputs = self.step_inputs(&mut BTreeMap::new())?;
        let key = self.image_key(&base, &step_inputs);
        Ok(
            read_record::<ImageRecord>(&self.record_path("images", &key))
                .map(|r| r.digest)
                .filter(|d| self.store.has_blob(d)),
        )
    }

    fn record_path(&self, kind: &str, key: &ContentHash) -> PathBuf {
        self.store
            .dir()
            .join("cache")
            .join(kind)
            .join(format!("{}.json", key.as_str()))
    }

    fn base(
        &mut self,
        built: &BTreeMap<Name, Built>,
        inputs: &mut BTreeMap<String, Digest>,
    ) -> Result<Base> {
        let manifest = match &self.image.from {
            ImageBase::Scratch => None,
            ImageBase::Image { name } => Some(
                built
                    .get(name)
                    .ok_or_else(|| ImageError::Declaration {
                        image: self.name.clone(),
                        reason: format!("base image `{name}` was not built"),
                    })?
                    .digest
                    .clone(),
            ),
            ImageBase::Archive { path, digest } => {
                let full = self.source_path(path)?;
                let actual = self.files.file_digest(&full)?;
                if &actual != digest {
                    return Err(ImageError::ArchiveDigest {
                        image: self.name.clone(),
                        path: full,
                        expected: digest.clone(),
                        actual,
                    });
                }
                inputs.insert(path.clone(), actual.clone());
                let key = ContentHash::of(&(FORMAT, "archive", &actual));
                let rec_path = self.record_path("images", &key);
                match read_record::<ImageRecord>(&rec_path)
                    .filter(|r| self.store.has_blob(&r.digest))
                {
                    Some(r) => Some(r.digest),
                    None => {
                        let m = self.store.import(&full)?;
                        write_record(self.store, &rec_path, &ImageRecord { digest: m.clone() })?;
                        Some(m)
                    }
                }
            }
        };
        match manifest {
            None => Ok(Base {
                manifest: None,
                layers: Vec::new(),
                config: None,
            }),
            Some(m) => {
                let manifest = self.store.manifest(&m)?;
                let config = self.store.config_of(&m, &manifest)?;
                Ok(Base {
                    manifest: Some(m),
                    layers: manifest.layers,
                    config: Some(config),
                })
            }
        }
    }

    /// The host path of a declared source. Sources are relative to the
    /// environment root and may reach outside it with `..` (the source tree
    /// is the repository, e.g. a build product under `target/`); absolute
    /// paths are refused, because they would make the same sources mean
    /// different files on different machines.
    fn source_path(&self, src: &str) -> Result<PathBuf> {
        let p = Path::new(src);
        let absolute = p.is_absolute() || p.components().any(|c| matches!(c, Component::Prefix(_)));
        if absolute {
            return Err(ImageError::Source {
                image: self.name.clone(),
                src: src.to_owned(),
                reason: "sources must be paths relative to the environment's directory (the directory of the main .glint file)".into(),
            });
        }
        Ok(self.root.join(p))
    }

    /// Digest of a copy source: every path, kind, normalised mode, content and link target.
    fn tree_digest(&mut self, src: &str) -> Result<Digest> {
        let path = self.source_path(src)?;
        if path.symlink_metadata().is_err() {
            return Err(ImageError::Source {
                image: self.name.clone(),
                src: src.to_owned(),
                reason: format!("{} does not exist", path.display()),
            });
        }
        let mut lines = String::new();
        self.tree_lines(&path, "", &mut lines)?;
        Ok(Digest::of(lines.as_bytes()))
    }

    fn tree_lines(&mut self, path: &Path, rel: &str, out: &mut String) -> Result<()> {
        let meta = path
            .symlink_metadata()
            .map_err(ImageError::io("cannot read", path))?;
        let ft = meta.file_type();
        if ft.is_dir() {
            out.push_str(&format!("d {rel:?}\n"));
            for name in sorted_entries(path).map_err(ImageError::io("cannot list", path))? {
                let child = format!("{rel}/{}", name.to_string_lossy());
                self.tree_lines(&path.join(&name), &child, out)?;
            }
        } else if ft.is_file() {
            let d = self.files.digest_with(path, &meta)?;
            out.push_str(&format!(
                "f {rel:?} {:o} {d}\n",
                normal_file_mode(meta.mode())
            ));
        } else if ft.is_symlink() {
            let t = fs::read_link(path).map_err(ImageError::io("cannot read link", path))?;
            out.push_str(&format!("l {rel:?} {:?}\n", t.to_string_lossy()));
        } else {
            return Err(ImageError::Source {
                image: self.name.clone(),
                src: path.display().to_string(),
                reason: "only files, directories and symlinks can be copied".into(),
            });
        }
        Ok(())
    }

    fn copy_layer(&self, src: &str, dst: &str) -> Result<Layer> {
        let path = self.source_path(src)?;
        let dst_comps = image_path(dst).ok_or_else(|| ImageError::Source {
            image: self.name.clone(),
            src: src.to_owned(),
            reason: format!("destination `{dst}` must be an absolute path without `..`"),
        })?;
        let mut dst_rel = dst_comps.join("/");
        // `copy "file" "/dir/"` puts the file into the directory.
        if dst.ends_with('/') && path.is_file() {
            let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            if let Some(n) = file_name {
                dst_rel = crate::layer::join(&dst_rel, &n);
            }
        }
        let mut w = LayerWriter::new(self.store, self.opts.source_date_epoch)?;
        write_copy(&mut w, &path, &dst_rel)?;
        w.finish()
    }

    fn step_env(&self, config: &ImageConfig) -> BTreeMap<String, String> {
        let mut env = BTreeMap::from([
            ("PATH".to_owned(), STEP_PATH.to_owned()),
            ("HOME".to_owned(), "/".to_owned()),
            ("TZ".to_owned(), "UTC".to_owned()),
        ]);
        env.extend(config.config.env_map());
        env.extend(self.image.env.clone());
        env.insert(
            "SOURCE_DATE_EPOCH".to_owned(),
            self.opts.source_date_epoch.to_string(),
        );
        env
    }

    fn workdir_in(&self, root: &Path) -> String {
        let wd = self.image.workdir.trim_start_matches('/');
        if !wd.is_empty() && root.join(wd).is_dir() {
            format!("/{wd}")
        } else {
            "/".to_owned()
        }
    }

    fn run_layer(
        &self,
        step: usize,
        argv: &[String],
        config: &ImageConfig,
        lower: &Path,
    ) -> Result<Layer> {
        let tmp = self.store.temp_dir("step-")?;
        let (upper, work, merged) = overlay_dirs(tmp.path())?;
        let spec = Spec {
            argv: argv.to_vec(),
            env: self.step_env(config),
            workdir: self.workdir_in(lower),
            root: Root::Overlay {
                lower: lower.to_owned(),
                upper: upper.clone(),
                work,
                merged,
            },
        };
        let (finished, attempts) = sandbox::run(&spec)?;
        let command = argv.join(" ");
        if attempts > 0 {
            return Err(ImageError::NetworkAttempt {
                image: self.name.clone(),
                kind: format!("step {step}"),
                command,
                attempts,
                output: finished.output,
            });
        }
        if !finished.status.success() {
            return Err(ImageError::StepFailed {
                image: self.name.clone(),
                step,
                command,
                status: finished.describe(),
                output: finished.output,
            });
        }
        let created: Vec<&str> = ["proc", "dev"]
            .into_iter()
            .filter(|d| !lower.join(d).is_dir())
            .collect();
        let mut w = LayerWriter::new(self.store, self.opts.source_date_epoch)?;
        write_upper(&mut w, &upper, &created)?;
        w.finish()
    }

    fn run_tests(
        &self,
        digest: &Digest,
        config: &ImageConfig,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<()> {
        if self.image.tests.is_empty() {
            return Ok(());
        }
        let rootfs = self.store.rootfs(digest)?;
        for (i, argv) in self.image.tests.iter().enumerate() {
            let tmp = self.store.temp_dir("test-")?;
            let (upper, work, merged) = overlay_dirs(tmp.path())?;
            let spec = Spec {
                argv: argv.clone(),
                env: self.step_env(config),
                workdir: self.workdir_in(&rootfs),
                root: Root::Overlay {
                    lower: rootfs.clone(),
                    upper,
                    work,
                    merged,
                },
            };
            let (finished, attempts) = sandbox::run(&spec)?;
            let command = argv.join(" ");
            if attempts > 0 {
                return Err(ImageError::NetworkAttempt {
                    image: self.name.clone(),
                    kind: format!("test {}", i + 1),
                    command,
                    attempts,
                    output: finished.output,
                });
            }
            if !finished.status.success() {
                return Err(ImageError::TestFailed {
                    image: self.name.clone(),
                    test: i + 1,
                    command,
                    status: finished.describe(),
                    output: finished.output,
                });
            }
            progress(&Progress::Test {
                name: self.name.clone(),
                test: i + 1,
                command,
            });
        }
        Ok(())
    }
}

/// The components of an absolute image path, or `None` if it has `..` or is relative.
fn image_path(dst: &str) -> Option<Vec<String>> {
    if !dst.starts_with('/') {
        return None;
    }
    let mut out = Vec::new();
    for c in Path::new(dst).components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(s) => out.push(s.to_string_lossy().into_owned()),
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

fn overlay_dirs(base: &Path) -> Result<(PathBuf, PathBuf, PathBuf)> {
    let dirs = ["upper", "work", "merged"].map(|d| base.join(d));
    for d in &dirs {
        fs::create_dir(d).map_err(ImageError::io("cannot create", d))?;
    }
    let [u, w, m] = dirs;
    Ok((u, w, m))
}

/// How a step appears in the history and provenance.
fn describe(step: &ImageStep, input: Option<&Digest>) -> String {
    match step {
        ImageStep::Copy { src, dst } => {
            format!(
                "copy {src} {dst} ({})",
                input.map(Digest::as_str).unwrap_or("?")
            )
        }
        ImageStep::Run { argv } => {
            format!("run {}", serde_json::to_string(argv).unwrap_or_default())
        }
    }
}

fn image_size(store: &ImageStore, digest: &Digest, m: &Manifest) -> u64 {
    store
        .blob_path(digest)
        .metadata()
        .map(|m| m.len())
        .unwrap_or(0)
        + m.config.size
        + m.layers.iter().map(|l| l.size).sum::<u64>()
}

fn read_record<T: serde::de::DeserializeOwned>(path: &Path) -> Option<T> {
    fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
}

fn write_record<T: Serialize>(store: &ImageStore, path: &Path, rec: &T) -> Result<()> {
    let bytes = serde_json::to_vec(rec).map_err(|e| ImageError::invalid("cache record", e))?;
    write_atomic(store.dir(), path, &bytes)
}

/// The flattened image-so-far that `run` steps see as their lower layer.
struct WorkTree {
    _dir: tempfile::TempDir,
    root: PathBuf,
    applied: usize,
}

impl WorkTree {
    fn new(store: &ImageStore) -> Result<WorkTree> {
        let dir = store.temp_dir("work-")?;
        let root = dir.path().join("root");
        fs::create_dir(&root).map_err(ImageError::io("cannot create", &root))?;
        Ok(WorkTree {
            _dir: dir,
            root,
            applied: 0,
        })
    }

    /// Applies the layers not applied yet.
    fn catch_up(&mut self, store: &ImageStore, layers: &[Descriptor]) -> Result<()> {
        for l in &layers[self.applied.min(layers.len())..] {
            apply_layer(&store.blob_path(&l.digest), &self.root)?;
        }
        self.applied = layers.len();
        Ok(())
    }
}

/// Digests of input files, cached by their stat data (`cache/files.json`), so
/// an unchanged tree is hashed with `stat` calls only.
#[derive(Debug, Default, Serialize, Deserialize)]
struct FileCache {
    entries: BTreeMap<PathBuf, (StatKey, Digest)>,
    #[serde(skip)]
    dirty: bool,
}

/// What must not change for a cached file digest to stay valid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct StatKey {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl StatKey {
    fn of(m: &fs::Metadata) -> StatKey {
        StatKey {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
            ctime_ns: i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec()),
        }
    }
}

impl FileCache {
    fn path(store: &ImageStore) -> PathBuf {
        store.dir().join("cache/files.json")
    }

    fn load(store: &ImageStore) -> FileCache {
        read_record(&FileCache::path(store)).unwrap_or_default()
    }

    /// Best effort: a lost cache only costs re-hashing.
    fn save(&self, store: &ImageStore) {
        if self.dirty
            && let Ok(bytes) = serde_json::to_vec(self)
        {
            let _ = write_atomic(store.dir(), &FileCache::path(store), &bytes);
        }
    }

    fn file_digest(&mut self, path: &Path) -> Result<Digest> {
        let meta = path
            .metadata()
            .map_err(ImageError::io("cannot read", path))?;
        self.digest_with(path, &meta)
    }

    fn digest_with(&mut self, path: &Path, meta: &fs::Metadata) -> Result<Digest> {
        let key = StatKey::of(meta);
        if let Some((k, d)) = self.entries.get(path)
            && k == &key
        {
            return Ok(d.clone());
        }
        let mut f = File::open(path).map_err(ImageError::io("cannot open", path))?;
        let (d, _) =
            crate::store::hash_reader(&mut f).map_err(ImageError::io("cannot read", path))?;
        self.entries.insert(path.to_owned(), (key, d.clone()));
        self.dirty = true;
        Ok(d)
    }
}
