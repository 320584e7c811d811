//! `glint images` and `glint image inspect|gc|export|import`.
//!
//! Images live under `<data-dir>/images/` (an OCI image layout, see
//! `glint_image::store`). Two answers come from the version store once it
//! exists, and are plugged in here as functions: which versions use an image
//! ([`versions_using`]) and which images the last N versions need
//! ([`images_of_last_versions`]).

use crate::cli::{Global, ImageArgs, ImageCommand, ImagesArgs, OutputFormat};
use crate::output::{EXIT_FAILED, EXIT_OK, EXIT_USAGE};
use glint_image::ImageStore;
use glint_model::Digest;
use glint_store::prelude::*;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The data directory (see [`crate::common::data_dir`]).
pub fn data_dir(global: &Global) -> PathBuf {
    crate::common::data_dir(global)
}

/// Opens `<data-dir>/images`.
pub fn open_store(global: &Global) -> Result<ImageStore, glint_image::ImageError> {
    ImageStore::open(data_dir(global).join("images"))
}

/// Every version's image digests, oldest first (empty without a store).
fn version_images(data_dir: &Path) -> Vec<(u64, BTreeSet<Digest>)> {
    let Ok(Some(store)) = glint_store::SqliteStore::open_existing(data_dir) else {
        return Vec::new();
    };
    let Ok(list) = store.list_versions() else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|v| store.version(v.number).ok())
        .map(|v| (v.number.0, v.images.values().cloned().collect()))
        .collect()
}

/// Which of `versions` (from [`version_images`]) use an image.
fn versions_using(versions: &[(u64, BTreeSet<Digest>)], digest: &Digest) -> Vec<String> {
    versions
        .iter()
        .filter(|(_, images)| images.contains(digest))
        .map(|(n, _)| n.to_string())
        .collect()
}

/// The images the last `n` versions use, plus those live instances run, so
/// that a rollback to any of those versions never lacks its image.
fn images_of_last_versions(data_dir: &Path, n: usize) -> BTreeSet<Digest> {
    let all = version_images(data_dir);
    let mut keep: BTreeSet<Digest> = all
        .iter()
        .rev()
        .take(n)
        .flat_map(|(_, images)| images.iter().cloned())
        .collect();
    if let Ok(Some(store)) = glint_store::SqliteStore::open_existing(data_dir)
        && let Ok(live) = store.live_instances()
    {
        keep.extend(live.into_iter().map(|i| i.image));
    }
    keep
}

/// `1.5 MiB`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

/// Prints an error and its causes on stderr.
pub fn report(context: &str, err: &dyn std::error::Error) {
    eprintln!("error: {context}: {err}");
    let mut source = err.source();
    while let Some(s) = source {
        eprintln!("  caused by: {s}");
        source = s.source();
    }
}

/// Runs `glint images`.
pub fn list(global: &Global, args: ImagesArgs) -> i32 {
    let store = match open_store(global) {
        Ok(s) => s,
        Err(e) => {
            report("cannot open the image store", &e);
            return EXIT_USAGE;
        }
    };
    let images = match store.list() {
        Ok(i) => i,
        Err(e) => {
            report("cannot list images", &e);
            return EXIT_USAGE;
        }
    };
    // Every version's images, read once for the whole listing.
    let versions = version_images(&data_dir(global));
    match args.output.output {
        OutputFormat::Json => {
            let rows: Vec<serde_json::Value> = images
                .iter()
                .map(|i| {
                    serde_json::json!({
                        "digest": i.digest,
                        "tags": i.tags,
                        "size": i.size,
                        "created": i.created,
                        "versions": versions_using(&versions, &i.digest),
                    })
                })
                .collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&rows).unwrap_or_default()
            );
        }
        OutputFormat::Text => {
            println!(
                "{:<14} {:<28} {:>10}  {:<20}  USED BY",
                "DIGEST", "TAGS", "SIZE", "CREATED"
            );
            for i in &images {
                let tags = if i.tags.is_empty() {
                    "<none>".to_owned()
                } else {
                    i.tags.join(",")
                };
                let versions = versions_using(&versions, &i.digest);
                println!(
                    "{:<14} {:<28} {:>10}  {:<20}  {}",
                    i.digest.short(),
                    tags,
                    human_size(i.size),
                    i.created.as_deref().unwrap_or("-"),
                    if versions.is_empty() {
                        "-".to_owned()
                    } else {
                        versions.join(",")
                    }
                );
            }
        }
    }
    EXIT_OK
}

/// Runs `glint image …`.
pub fn run(global: &Global, args: ImageArgs) -> i32 {
    let store = match open_store(global) {
        Ok(s) => s,
        Err(e) => {
            report("cannot open the image store", &e);
            return EXIT_USAGE;
        }
    };
    let resolve = |r: &str| match store.resolve(r) {
        Ok(d) => Some(d),
        Err(e) => {
            report("cannot find the image", &e);
            None
        }
    };
    match args.command {
        ImageCommand::Inspect { image } => {
            let Some(digest) = resolve(&image) else {
                return EXIT_FAILED;
            };
            match store.inspect(&digest) {
                Ok(details) => {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&details).unwrap_or_default()
                    );
                    EXIT_OK
                }
                Err(e) => {
                    report(&format!("cannot inspect {digest}"), &e);
                    EXIT_FAILED
                }
            }
        }
        ImageCommand::Gc { keep_versions } => {
            let keep = images_of_last_versions(&data_dir(global), keep_versions);
            match store.gc(&keep) {
                Ok(r) => {
                    for d in &r.removed_images {
                        println!("removed {d}");
                    }
                    println!(
                        "removed {} image(s), {} blob(s), freed {}",
                        r.removed_images.len(),
                        r.removed_blobs,
                        human_size(r.freed_bytes)
                    );
                    EXIT_OK
                }
                Err(e) => {
                    report("garbage collection failed", &e);
                    EXIT_FAILED
                }
            }
        }
        ImageCommand::Export { image, output } => {
            let Some(digest) = resolve(&image) else {
                return EXIT_FAILED;
            };
            match store.export(&digest, &output) {
                Ok(()) => {
                    println!("exported {digest} to {}", output.display());
                    EXIT_OK
                }
                Err(e) => {
                    report(&format!("cannot export {digest}"), &e);
                    EXIT_FAILED
                }
            }
        }
        ImageCommand::Import { file } => match store.import(&file) {
            Ok(digest) => {
                println!("imported {digest}");
                EXIT_OK
            }
            Err(e) => {
                report(&format!("cannot import {}", file.display()), &e);
                EXIT_FAILED
            }
        },
    }
}
