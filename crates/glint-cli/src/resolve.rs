//! From a file on disk to a version the store can record: compile, build the
//! images, and assemble a [`NewVersion`]. Shared by `plan`, `apply` and `up`,
//! so that all three refuse bad input the same way before anything changes.

use crate::cli::Global;
use crate::common::{Failed, fail};
use crate::output::EXIT_FAILED;
use glint_model::{Digest, Name};
use glint_store::{NewVersion, VersionKind};
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

/// Builds (or finds in the cache) every image of `env`, printing progress on
/// stderr; a failure (a missing copy source, a failing `run` or `test` step,
/// a network attempt) is printed and nothing is recorded.
pub fn build_images(
    global: &Global,
    env: &glint_model::Environment,
    root: &Path,
) -> Result<BTreeMap<Name, Digest>, Failed> {
    let store = crate::commands::images::open_store(global)?;
    let opts = glint_image::BuildOptions {
        tag_prefix: format!("{}/", env.name),
        ..glint_image::BuildOptions::default()
    };
    let mut progress = |p: &glint_image::Progress| match p {
        glint_image::Progress::Image { name } => eprintln!("building image {name}"),
        glint_image::Progress::Step {
            step,
            of,
            what,
            cached,
            ..
        } => {
            if !cached {
                eprintln!("  [{step}/{of}] {what}");
            }
        }
        glint_image::Progress::Test { test, command, .. } => {
            eprintln!("  test {test} passed: {command}")
        }
        glint_image::Progress::Done { name, built } => {
            if !built.cached {
                eprintln!("  image {name}: {}", built.digest);
            }
        }
    };
    let built = glint_image::build(&env.images, root, &store, &opts, &mut progress)
        .map_err(|e| fail(EXIT_FAILED, glint_conductor::error_chain(&e)))?;
    Ok(built.into_iter().map(|(n, b)| (n, b.digest)).collect())
}
