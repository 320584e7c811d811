//! Getting an instance's image into the engine, verified.
//!
//! Glint names an image by the digest of its OCI manifest. Docker Engine 20.10
//! names an image by the digest of its *config*. The chain between the two is
//! checked before a container is created:
//!
//! 1. the archive's `blobs/sha256/<digest>` hashes to the Glint digest (the
//!    manifest is what Glint says it is);
//! 2. that manifest names config `C`, and the archive's legacy
//!    `manifest.json` (what Docker 20.10 reads) points at the same config;
//! 3. after `docker load`, the engine's image id is `C` (Docker computes it by
//!    hashing the config, and checks every layer against the config's
//!    `diff_ids` itself).
//!
//! The loaded image is tagged `glint/image:<digest hex>`. The next launch of
//! the same digest finds the tag and checks that it still points at `C`; a
//! tag moved by hand to another image is noticed and the archive is loaded
//! again. When no archive is given, an existing tag is trusted (it can only
//! have been made by this code or by hand on purpose, e.g. in tests).

use crate::naming::IMAGE_REPO;
use bollard::Docker;
use bollard::query_parameters::{ImportImageOptions, TagImageOptions};
use bytes::Bytes;
use futures_util::StreamExt;
use glint_model::Digest;
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Why an image cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The archive cannot be read.
    #[error("cannot read image archive {path}")]
    Read {
        /// The archive.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The archive does not hold the image it should, or is malformed.
    #[error("image archive {path} does not hold image {digest}: {reason}")]
    Mismatch {
        /// The archive.
        path: PathBuf,
        /// The digest that was expected.
        digest: Digest,
        /// What is wrong.
        reason: String,
    },
    /// The engine is not in the state the check expects.
    #[error("image {digest}: {reason}")]
    Engine {
        /// The image.
        digest: Digest,
        /// What went wrong.
        reason: String,
    },
}

/// The biggest manifest or `manifest.json` read into memory.
const MAX_JSON: u64 = 4 << 20;

/// What an archive holds for one Glint digest, once checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveCheck {
    /// The config digest, which is the image id the engine will give it.
    pub config: Digest,
}

/// Checks steps 1 and 2 of the module documentation on an archive file.
pub fn check_archive(path: &Path, digest: &Digest) -> Result<ArchiveCheck, ImageError> {
    let mismatch = |reason: String| ImageError::Mismatch {
        path: path.to_owned(),
        digest: digest.clone(),
        reason,
    };
    let read = |source| ImageError::Read {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read)?;
    let mut archive = tar::Archive::new(std::io::BufReader::new(file));
    let manifest_name = format!("blobs/sha256/{}", digest.hex());
    let mut manifest: Option<Vec<u8>> = None;
    let mut legacy: Option<Vec<u8>> = None;
    for entry in archive.entries().map_err(read)? {
        let mut entry = entry.map_err(read)?;
        let name = entry.path().map_err(read)?.to_string_lossy().into_owned();
        let name = name.trim_start_matches("./");
        let slot = if name == manifest_name {
            &mut manifest
        } else if name == "manifest.json" {
            &mut legacy
        } else {
            continue;
        };
        if entry.size() > MAX_JSON {
            return Err(mismatch(format!("{name} is implausibly large")));
        }
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).map_err(read)?;
        *slot = Some(bytes);
    }
    let manifest = manifest.ok_or_else(|| mismatch(format!("it has no {manifest_name}")))?;
    let actual = Digest::from_sha256(&Sha256::digest(&manifest));
    if &actual != digest {
        return Err(mismatch(format!("its manifest blob hashes to {actual}")));
    }
    let parsed: serde_json::Value = serde_json::from_slice(&manifest)
        .map_err(|e| mismatch(format!("its manifest is not JSON: {e}")))?;
    let config = parsed
        .pointer("/config/digest")
        .and_then(serde_json::Value::as_str)
        .and_then(|s| Digest::parse(s).ok())
        .ok_or_else(|| mismatch("its manifest names no config digest".into()))?;
    let legacy = legacy.ok_or_else(|| {
        mismatch("it has no manifest.json (Docker Engine 20.10 needs one)".into())
    })?;
    let legacy: serde_json::Value = serde_json::from_slice(&legacy)
        .map_err(|e| mismatch(format!("its manifest.json is not JSON: {e}")))?;
    let entries = legacy.as_array().map(Vec::as_slice).unwrap_or_default();
    let [entry] = entries else {
        return Err(mismatch(format!(
            "its manifest.json lists {} images, expected 1",
            entries.len()
        )));
    };
    let legacy_config = entry.get("Config").and_then(serde_json::Value::as_str);
    let expected = format!("blobs/sha256/{}", config.hex());
    if legacy_config.map(|c| c.trim_start_matches("./")) != Some(expected.as_str()) {
        return Err(mismatch(format!(
            "its manifest.json loads config {} instead of {expected}",
            legacy_config.unwrap_or("(none)")
        )));
    }
    Ok(ArchiveCheck { config })
}

/// The tag under which image `digest` is kept in the engine.
pub fn image_tag(digest: &Digest) -> String {
    format!("{IMAGE_REPO}:{}", digest.hex())
}

/// Loaded images, remembered so that later launches cost one inspect.
#[derive(Debug, Default)]
pub(crate) struct ImageCache {
    /// Glint digest → engine image id (`sha256:<config>`).
    ids: Mutex<HashMap<Digest, String>>,
}

impl ImageCache {
    /// Makes sure image `digest` is in the engine and returns the reference
    /// to create containers from.
    pub(crate) async fn ensure(
        &self,
        docker: &Docker,
        digest: &Digest,
        archive: Option<&Path>,
    ) -> Result<String, ImageError> {
        let tag = image_tag(digest);
        let engine = |reason: String| ImageError::Engine {
            digest: digest.clone(),
            reason,
        };
        let tagged = docker.inspect_image(&tag).await.ok().and_then(|i| i.id);
        let known = self.ids.lock().ok().and_then(|m| m.get(digest).cloned());
        let expected = match (known, archive) {
            (Some(id), _) => Some(id),
            (None, Some(path)) => {
                let path = path.to_owned();
                let d = digest.clone();
                let check = tokio::task::spawn_blocking(move || check_archive(&path, &d))
                    .await
                    .map_err(|e| engine(format!("archive check panicked: {e}")))??;
                Some(format!("sha256:{}", check.config.hex()))
            }
            (None, None) => None,
        };
        match (&tagged, &expected) {
            (Some(t), Some(e)) if t == e => return Ok(self.remember(digest, e)),
            (Some(t), None) => return Ok(self.remember(digest, t)),
            (None, None) => {
                return Err(engine(format!(
                    "it is not loaded in the engine (no {tag}) and no archive was given"
                )));
            }
            _ => {}
        }
        let (Some(path), Some(expected)) = (archive, expected) else {
            return Err(engine(format!(
                "tag {tag} points at {} instead of the verified image, and no archive was given to reload it",
                tagged.unwrap_or_default()
            )));
        };
        load(docker, path).await.map_err(engine)?;
        let loaded = docker.inspect_image(&expected).await.map_err(|e| {
            engine(format!(
                "after docker load, {expected} is not in the engine: {e}"
            ))
        })?;
        if loaded.id.as_deref() != Some(expected.as_str()) {
            return Err(engine(format!(
                "docker load produced {} instead of {expected}",
                loaded.id.unwrap_or_default()
            )));
        }
        docker
            .tag_image(
                &expected,
                Some(TagImageOptions {
                    repo: Some(IMAGE_REPO.to_owned()),
                    tag: Some(digest.hex().to_owned()),
                }),
            )
            .await
            .map_err(|e| engine(format!("cannot tag {expected} as {tag}: {e}")))?;
        Ok(self.remember(digest, &expected))
    }

    fn remember(&self, digest: &Digest, id: &str) -> String {
        if let Ok(mut m) = self.ids.lock() {
            m.insert(digest.clone(), id.to_owned());
        }
        id.to_owned()
    }
}

/// `docker load` of an archive file, streamed.
async fn load(docker: &Docker, path: &Path) -> Result<(), String> {
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let chunks = futures_util::stream::unfold(file, |mut file| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 256 << 10];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<Bytes, std::io::Error>(Bytes::from(buf)), file))
            }
            Err(e) => Some((Err(e), file)),
        }
    });
    let mut progress = docker.import_image_stream(
        ImportImageOptions {
            quiet: true,
            ..Default::default()
        },
        chunks,
        None,
    );
    while let Some(item) = progress.next().await {
        item.map_err(|e| format!("docker load of {} failed: {e}", path.display()))?;
    }
    Ok(())
}
