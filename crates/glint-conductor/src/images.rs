//! Where the conductor gets runnable images from.
//!
//! The conductor asks an [`ImageSource`] for an image by digest just before
//! every launch; the source verifies it and hands back its unpacked root
//! filesystem. The source is a trait so that the conductor does not care how
//! images are built and stored.
//!
//! [`CopyImages`] is the minimal source used until the full image builder
//! lands: it supports images made only of `copy` steps from `scratch`, names
//! them by the sha256 of a canonical listing of their files, and keeps each
//! unpacked tree under `<data>/images/trees/<hex>/`.

use glint_model::{Digest, Environment, Image, ImageBase, ImageStep, Name};
use glint_provider::LaunchImage;
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// An image could not be built, found or verified.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The image is not in the store.
    #[error("image {0} is not in the image store; run `glint apply` again to build it")]
    Missing(Digest),
    /// The image's content does not match its digest.
    #[error("image {digest} failed verification: {detail}")]
    Tampered {
        /// The image.
        digest: Digest,
        /// What did not match.
        detail: String,
    },
    /// A build step cannot be done by this source.
    #[error("image {image}: {detail}")]
    Unsupported {
        /// The image.
        image: Name,
        /// Why.
        detail: String,
    },
    /// A `copy` source is missing or unreadable.
    #[error("image {image}: cannot read copy source {path}")]
    Source {
        /// The image.
        image: Name,
        /// The path.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The store could not be written.
    #[error("image store {path}")]
    Store {
        /// The path.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// Where the conductor gets runnable images.
pub trait ImageSource: Send + Sync + 'static {
    /// Verifies the image and returns its unpacked root filesystem.
    fn prepare(&self, digest: &Digest) -> Result<LaunchImage, ImageError>;
}

/// Images made of `copy` steps only, stored as plain directory trees.
#[derive(Debug, Clone)]
pub struct CopyImages {
    trees: PathBuf,
}

impl CopyImages {
    /// The source rooted at `<data_dir>/images/trees`.
    pub fn new(data_dir: &Path) -> CopyImages {
        CopyImages {
            trees: data_dir.join("images").join("trees"),
        }
    }

    /// Builds every image of `env` whose sources live under `root`, returning
    /// the digest of each. Unchanged images are found again, not rebuilt.
    pub fn build_all(
        &self,
        env: &Environment,
        root: &Path,
    ) -> Result<BTreeMap<Name, Digest>, ImageError> {
        let mut out = BTreeMap::new();
        for (name, image) in &env.images {
            out.insert(name.clone(), self.build(name, image, root)?);
        }
        Ok(out)
    }

    fn build(&self, name: &Name, image: &Image, root: &Path) -> Result<Digest, ImageError> {
        if image.from != ImageBase::Scratch {
            return Err(ImageError::Unsupported {
                image: name.clone(),
                detail: "only `from = scratch` images can be built yet".into(),
            });
        }
        // Collect the files: image path → host path.
        let mut files: BTreeMap<String, PathBuf> = BTreeMap::new();
        for step in &image.steps {
            match step {
                ImageStep::Copy { src, dst } => {
                    let host = root.join(src);
                    collect(name, &host, dst, &mut files)?;
                }
                ImageStep::Run { .. } => {
                    return Err(ImageError::Unsupported {
                        image: name.clone(),
                        detail: "`run` steps need the image builder, which is not available yet"
                            .into(),
                    });
                }
            }
        }
        // Digest: a canonical listing of (path, mode, content hash), plus the
        // image's run-time configuration.
        let mut listing = Sha256::new();
        for (path, host) in &files {
            let (hash, exec) = hash_file(name, host)?;
            listing.update(format!("{path}\0{exec}\0{}\n", glint_model::hex(&hash)).as_bytes());
        }
        let config = serde_json::json!({
            "entrypoint": image.entrypoint, "env": image.env, "workdir": image.workdir, "port": image.port,
        });
        listing.update(config.to_string().as_bytes());
        let digest = Digest::from_sha256(&listing.finalize());
        let dir = self.trees.join(digest.hex());
        if dir.is_dir() {
            return Ok(digest);
        }
        let store_err = |path: &Path| {
            let path = path.to_owned();
            move |source| ImageError::Store { path, source }
        };
        std::fs::create_dir_all(&self.trees).map_err(store_err(&self.trees))?;
        let tmp = self
            .trees
            .join(format!(".tmp-{}-{}", digest.short(), std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        for (path, host) in &files {
            let to = tmp.join(path.trim_start_matches('/'));
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent).map_err(store_err(parent))?;
            }
            std::fs::copy(host, &to).map_err(store_err(&to))?;
        }
        std::fs::create_dir_all(&tmp).map_err(store_err(&tmp))?;
        match std::fs::rename(&tmp, &dir) {
            Ok(()) => Ok(digest),
            // Another process finished the same image first.
            Err(_) if dir.is_dir() => {
                let _ = std::fs::remove_dir_all(&tmp);
                Ok(digest)
            }
            Err(e) => Err(ImageError::Store {
                path: dir,
                source: e,
            }),
        }
    }
}

impl ImageSource for CopyImages {
    fn prepare(&self, digest: &Digest) -> Result<LaunchImage, ImageError> {
        let rootfs = self.trees.join(digest.hex());
        if rootfs.is_dir() {
            Ok(LaunchImage {
                digest: digest.clone(),
                rootfs,
                archive: None,
            })
        } else {
            Err(ImageError::Missing(digest.clone()))
        }
    }
}

fn collect(
    image: &Name,
    host: &Path,
    dst: &str,
    out: &mut BTreeMap<String, PathBuf>,
) -> Result<(), ImageError> {
    let meta = std::fs::metadata(host).map_err(|source| ImageError::Source {
        image: image.clone(),
        path: host.to_owned(),
        source,
    })?;
    if meta.is_dir() {
        let entries = std::fs::read_dir(host).map_err(|source| ImageError::Source {
            image: image.clone(),
            path: host.to_owned(),
            source,
        })?;
        for entry in entries {
            let entry = entry.map_err(|source| ImageError::Source {
                image: image.clone(),
                path: host.to_owned(),
                source,
            })?;
            let child = format!(
                "{}/{}",
                dst.trim_end_matches('/'),
                entry.file_name().to_string_lossy()
            );
            collect(image, &entry.path(), &child, out)?;
        }
    } else {
        let dst = if dst.ends_with('/') {
            let file = host
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default();
            format!("{dst}{file}")
        } else {
            dst.to_owned()
        };
        out.insert(dst, host.to_owned());
    }
    Ok(())
}

fn hash_file(image: &Name, path: &Path) -> Result<([u8; 32], bool), ImageError> {
    use std::os::unix::fs::PermissionsExt;
    let err = |source| ImageError::Source {
        image: image.clone(),
        path: path.to_owned(),
        source,
    };
    let mut f = std::fs::File::open(path).map_err(err)?;
    let exec = f.metadata().map_err(err)?.permissions().mode() & 0o111 != 0;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf).map_err(err)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok((h.finalize().into(), exec))
}
