//! From a file on disk to a version the store can record: compile, build the
//! images, and assemble a [`NewVersion`]. Shared by `plan`, `apply` and `up`,
//! so that all three refuse bad input the same way before anything changes.

use crate::cli::Global;
use crate::common::{Failed, fail};
use crate::output::EXIT_FAILED;
use glint_conductor::images::CopyImages;
use glint_model::{Digest, Name};
use glint_store::{NewVersion, SourceFile, VersionKind};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A compiled environment with its images built.
#[derive(Debug)]
pub struct Resolved {
    /// What the store will record.
    pub version: NewVersion,
}

/// Compiles `file` (with extra policy files) and builds its images.
pub fn resolve(global: &Global, file: &Path, policies: &[PathBuf]) -> Result<Resolved, Failed> {
    let loaded = crate::compile::load(global, file, policies)?;
    let images = build_images(global, &loaded.env, &loaded.root)?;
    Ok(Resolved {
        version: NewVersion {
            env: loaded.env,
            images,
            root: loaded.root,
            sources: loaded.sources,
            kind: VersionKind::Apply,
        },
    })
}

/// Builds (or finds) every image of `env`.
pub fn build_images(
    global: &Global,
    env: &glint_model::Environment,
    root: &Path,
) -> Result<BTreeMap<Name, Digest>, Failed> {
    let data = crate::common::data_dir(global);
    CopyImages::new(&data)
        .build_all(env, root)
        .map_err(|e| fail(EXIT_FAILED, glint_conductor::error_chain(&e)))
}

/// The sources of a loaded environment, for recording in a version.
pub fn sources(files: impl IntoIterator<Item = (String, String)>) -> Vec<SourceFile> {
    files
        .into_iter()
        .map(|(path, text)| SourceFile { path, text })
        .collect()
}
