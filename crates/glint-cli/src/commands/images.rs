//! `glint images` and `glint image inspect|gc|export|import`.
//!
//! Images live under `<data-dir>/images/` (an OCI image layout, see
//! `glint_image::store`). Two answers come from the version store once it
//! exists, and are plugged in here as functions: which versions use an image
//! ([`versions_using`]) and which images the last N versions need
//! ([`images_of_last_versions`]).

use crate::cli::{Global, ImageArgs, ImageCommand, ImagesArgs, OutputFormat};
use crate::common::{Failed, fail};
use crate::output::{EXIT_FAILED, EXIT_OK, EXIT_USAGE, inert, inert_line};
use glint_image::{ImageError, ImageStore};
use glint_model::Digest;
use glint_store::prelude::*;
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The data directory (see [`crate::common::data_dir`]).
pub fn data_dir(global: &Global) -> PathBuf {
    crate::common::data_dir(global)
}

/// Opens `<data-dir>/images` for a command that writes (build, import, gc,
/// and the commands that build or launch): the data directory is prepared and
/// checked first ([`crate::common::prepare_data_dir`]).
pub fn open_store(global: &Global) -> Result<ImageStore, Failed> {
    let dir = crate::common::prepare_data_dir(global)?;
    ImageStore::open(dir.join("images")).map_err(|e| {
        report("cannot open the image store", &e);
        Failed(EXIT_USAGE)
    })
}

/// Opens `<data-dir>/images` for reading, creating nothing; `None` when no
/// image was ever stored there.
fn open_store_to_read(global: &Global) -> Result<Option<ImageStore>, Failed> {
    ImageStore::open_existing(data_dir(global).join("images")).map_err(|e| {
        report("cannot open the image store", &e);
        Failed(EXIT_USAGE)
    })
}

/// Every version's image digests, oldest first (empty without a store).
fn version_images(data_dir: &Path) -> Vec<(u64, BTreeSet<Digest>)> {
    let Ok(Some(store)) = glint_store::SqliteStore::open_read_only(data_dir) else {
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
    if let Ok(Some(store)) = glint_store::SqliteStore::open_read_only(data_dir)
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

/// Prints an error and its causes on stderr, made [`inert`] (archive entries,
/// tags and paths come from outside). The output a failed build step or test
/// printed keeps its lines, each made inert on its own.
pub fn report(context: &str, err: &(dyn std::error::Error + 'static)) {
    let mut first = true;
    let mut current = Some(err);
    while let Some(e) = current {
        let text = e.to_string();
        let output = match e.downcast_ref::<ImageError>() {
            Some(
                ImageError::StepFailed { output, .. }
                | ImageError::TestFailed { output, .. }
                | ImageError::NetworkAttempt { output, .. },
            ) if !output.trim_end().is_empty() => Some(output.trim_end()),
            _ => None,
        };
        let head = output
            .and_then(|o| text.strip_suffix(&format!("; output:\n{o}")))
            .unwrap_or(&text);
        if first {
            eprintln!("error: {}: {}", inert(context), inert(head));
        } else {
            eprintln!("  caused by: {}", inert(head));
        }
        if let Some(o) = output.filter(|_| head.len() < text.len()) {
            eprintln!("  output:");
            for line in o.lines() {
                eprintln!("    {}", inert_line(line));
            }
        }
        first = false;
        current = e.source();
    }
}

fn rows_of(
    images: &[glint_image::ImageSummary],
    versions: &[(u64, BTreeSet<Digest>)],
) -> Vec<serde_json::Value> {
    images
        .iter()
        .map(|i| {
            serde_json::json!({
                "digest": i.digest,
                "tags": i.tags,
                "size": i.size,
                "created": i.created,
                "versions": versions_using(versions, &i.digest),
            })
        })
        .collect()
}

/// The rows of `glint images -o json` (also `GET /v1/images`).
pub fn rows(data_dir: &Path, store: &ImageStore) -> Result<Vec<serde_json::Value>, ImageError> {
    let images = store.list()?;
    Ok(rows_of(&images, &version_images(data_dir)))
}

/// `glint images` against a remote conductor.
fn list_remote(global: &Global, args: &ImagesArgs) -> Result<i32, Failed> {
    let client = crate::remote::client(global).ok_or(Failed(EXIT_USAGE))??;
    let rows: serde_json::Value = crate::remote::get(&client, "/v1/images")?;
    let rows = rows.as_array().cloned().unwrap_or_default();
    match args.output.output {
        OutputFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&rows).unwrap_or_default()
        ),
        OutputFormat::Text => {
            println!(
                "{:<14} {:<28} {:>10}  {:<20}  USED BY",
                "DIGEST", "TAGS", "SIZE", "CREATED"
            );
            for r in &rows {
                let digest = r["digest"].as_str().unwrap_or_default();
                let short = digest.strip_prefix("sha256:").unwrap_or(digest);
                let tags: Vec<&str> = r["tags"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|t| t.as_str())
                    .collect();
                let versions: Vec<&str> = r["versions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|t| t.as_str())
                    .collect();
                println!(
                    "{:<14} {:<28} {:>10}  {:<20}  {}",
                    &short[..short.len().min(12)],
                    if tags.is_empty() {
                        "<none>".to_owned()
                    } else {
                        inert(&tags.join(",")).into_owned()
                    },
                    human_size(r["size"].as_u64().unwrap_or(0)),
                    inert(r["created"].as_str().unwrap_or("-")),
                    if versions.is_empty() {
                        "-".to_owned()
                    } else {
                        versions.join(",")
                    }
                );
            }
        }
    }
    Ok(EXIT_OK)
}

/// Runs `glint images`.
pub fn list(global: &Global, args: ImagesArgs) -> i32 {
    if global.addr.is_some() {
        return list_remote(global, &args).unwrap_or_else(|f| f.0);
    }
    let store = match open_store_to_read(global) {
        Ok(Some(s)) => s,
        Ok(None) => {
            match args.output.output {
                OutputFormat::Json => println!("[]"),
                OutputFormat::Text => println!("No images yet."),
            }
            return EXIT_OK;
        }
        Err(f) => return f.0,
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
            let rows = rows_of(&images, &versions);
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
                    inert(&i.tags.join(",")).into_owned()
                };
                let versions = versions_using(&versions, &i.digest);
                println!(
                    "{:<14} {:<28} {:>10}  {:<20}  {}",
                    i.digest.short(),
                    tags,
                    human_size(i.size),
                    inert(i.created.as_deref().unwrap_or("-")),
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
    let store = match &args.command {
        // Reading needs no writable data directory.
        ImageCommand::Inspect { .. } | ImageCommand::Export { .. } => {
            match open_store_to_read(global) {
                Ok(Some(s)) => s,
                Ok(None) => {
                    let image = match &args.command {
                        ImageCommand::Inspect { image } | ImageCommand::Export { image, .. } => {
                            image.as_str()
                        }
                        _ => "",
                    };
                    fail(
                        EXIT_FAILED,
                        format_args!("no image `{image}` in the store (it holds no images yet)"),
                    );
                    return EXIT_FAILED;
                }
                Err(f) => return f.0,
            }
        }
        _ => match open_store(global) {
            Ok(s) => s,
            Err(f) => return f.0,
        },
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
            export(&store, &digest, &output)
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

/// `glint image export IMAGE -o PATH|-`: a file (written beside the target
/// and renamed; anything but a regular file is refused) or stdout (refused
/// when it is a terminal: an archive is not for reading).
fn export(store: &ImageStore, digest: &Digest, output: &Path) -> i32 {
    if output == Path::new("-") {
        if crate::output::stdout_is_terminal() {
            fail(
                EXIT_USAGE,
                "refusing to write an image archive to a terminal; redirect stdout (`-o - > FILE`, `-o - | docker load`) or give a file with -o",
            );
            return EXIT_USAGE;
        }
        let stdout = std::io::stdout();
        let mut out = std::io::BufWriter::new(stdout.lock());
        let result = store.export_to(digest, &mut out).and_then(|()| {
            out.flush().map_err(|source| ImageError::Io {
                what: "cannot write",
                path: "<stdout>".into(),
                source,
            })
        });
        return match result {
            Ok(()) => {
                eprintln!("exported {digest} to stdout");
                EXIT_OK
            }
            Err(e) => {
                report(&format!("cannot export {digest}"), &e);
                EXIT_FAILED
            }
        };
    }
    match store.export(digest, output) {
        Ok(()) => {
            println!(
                "exported {digest} to {}",
                inert(&output.display().to_string())
            );
            EXIT_OK
        }
        Err(e) => {
            report(&format!("cannot export {digest}"), &e);
            if matches!(e, ImageError::ExportTarget { .. }) {
                eprintln!("  hint: give a new file name, or `-o -` to write to stdout");
            }
            EXIT_FAILED
        }
    }
}
