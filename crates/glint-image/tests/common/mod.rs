//! Shared helpers: source trees, declarations, busybox.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use glint_image::{BuildOptions, Built, ImageStore, build};
use glint_model::{Image, ImageBase, ImageStep, Name};
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// `/bin/busybox` from Debian's `busybox-static`, or `None` with a message
/// (tests that need a program inside an image skip without it).
pub fn busybox() -> Option<PathBuf> {
    let p = PathBuf::from("/bin/busybox");
    let static_ok = fs::read(&p)
        .map(|b| !b.windows(b".interp".len()).any(|w| w == b".interp"))
        .unwrap_or(false);
    if p.is_file() && static_ok {
        Some(p)
    } else {
        eprintln!(
            "SKIPPED: needs a static /bin/busybox inside test images (apt-get install -y busybox-static)"
        );
        None
    }
}

/// Whether this process may create namespaces and mounts.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("SKIPPED: needs root (namespaces and overlay mounts)");
    }
    root
}

pub fn name(s: &str) -> Name {
    Name::new(s).unwrap()
}

pub fn image(from: ImageBase, steps: Vec<ImageStep>) -> Image {
    Image {
        from,
        steps,
        tests: Vec::new(),
        entrypoint: Vec::new(),
        env: BTreeMap::new(),
        workdir: "/".into(),
        port: None,
        digest: None,
    }
}

pub fn copy(src: &str, dst: &str) -> ImageStep {
    ImageStep::Copy {
        src: src.into(),
        dst: dst.into(),
    }
}

pub fn run(script: &str) -> ImageStep {
    ImageStep::Run {
        argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
    }
}

pub fn sh(script: &str) -> Vec<String> {
    vec!["/bin/sh".into(), "-c".into(), script.into()]
}

pub fn write(root: &Path, rel: &str, content: &str, mode: u32) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(&p, content).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
}

/// A source tree with `bb/bin/busybox` (and the usual empty top directories),
/// to be copied to `/`.
pub fn busybox_tree(root: &Path, busybox: &Path) {
    let bb = root.join("bb");
    for d in ["bin", "proc", "dev", "tmp", "etc"] {
        fs::create_dir_all(bb.join(d)).unwrap();
    }
    fs::copy(busybox, bb.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", bb.join("bin/sh")).unwrap();
}

/// An image with busybox and all its applets linked in `/bin`.
pub fn busybox_image() -> Image {
    image(
        ImageBase::Scratch,
        vec![
            copy("bb", "/"),
            ImageStep::Run {
                argv: vec![
                    "/bin/busybox".into(),
                    "--install".into(),
                    "-s".into(),
                    "/bin".into(),
                ],
            },
        ],
    )
}

pub fn opts() -> BuildOptions {
    BuildOptions {
        source_date_epoch: 1_700_000_000,
        tag_prefix: "test/".into(),
        tool_version: "test".into(),
    }
}

pub fn build_all(
    images: &BTreeMap<Name, Image>,
    root: &Path,
    store: &ImageStore,
) -> glint_image::Result<BTreeMap<Name, Built>> {
    build(images, root, store, &opts(), &mut |_| {})
}

pub fn one(n: &str, img: Image) -> BTreeMap<Name, Image> {
    BTreeMap::from([(name(n), img)])
}

/// Every blob file of a store: name -> bytes.
pub fn blobs(store: &ImageStore) -> BTreeMap<String, Vec<u8>> {
    let dir = store.dir().join("blobs/sha256");
    fs::read_dir(&dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

/// Entry names of a (gzip) layer blob, in order.
pub fn layer_entries(
    store: &ImageStore,
    digest: &glint_model::Digest,
) -> Vec<(String, tar::Header)> {
    let f = fs::File::open(store.blob_path(digest)).unwrap();
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(f));
    ar.entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.path().unwrap().to_string_lossy().into_owned(),
                e.header().clone(),
            )
        })
        .collect()
}
