//! The one error type of this crate, with the context each failure needs to be
//! understood without a backtrace: which image, which step, which blob, which path.

use glint_model::{Digest, Name};
use std::path::PathBuf;

/// Everything that can go wrong with images.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A file or directory could not be read or written.
    #[error("{what} {}", path.display())]
    Io {
        /// What was being done ("cannot read blob").
        what: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A blob does not hash to its name: the image was tampered with or is corrupt.
    #[error("image {digest} is tampered: blob {blob} does not match its digest")]
    Tampered {
        /// The image (manifest digest) being verified.
        digest: Digest,
        /// The blob whose content changed.
        blob: Digest,
    },
    /// A blob an image needs is not in the store.
    #[error("image {digest} is incomplete: blob {blob} is missing from the store")]
    MissingBlob {
        /// The image (manifest digest).
        digest: Digest,
        /// The missing blob.
        blob: Digest,
    },
    /// The unpacked root filesystem of an image changed after it was unpacked.
    #[error("unpacked root filesystem of image {digest} was modified: {path} {change}")]
    RootfsTampered {
        /// The image.
        digest: Digest,
        /// The first path found changed, relative to the root.
        path: String,
        /// What changed ("was changed", "was added", "was removed").
        change: &'static str,
    },
    /// No image matches a digest, tag or abbreviation.
    #[error("no image `{0}` in the store")]
    UnknownImage(String),
    /// An abbreviation matches more than one image.
    #[error("`{0}` matches more than one image; give more digits")]
    AmbiguousImage(String),
    /// A document (manifest, config, index, archive member) is malformed.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// What was being read.
        what: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An export target exists and is not a regular file; it is left alone.
    #[error(
        "refusing to export to {}: it is {kind}, and export only writes a new file or replaces a regular one",
        path.display()
    )]
    ExportTarget {
        /// The target.
        path: PathBuf,
        /// What it is ("a FIFO", "a symlink", ...).
        kind: &'static str,
    },
    /// A layer entry would escape the root or go through a symlink.
    #[error("refusing layer entry `{entry}`: {reason}")]
    UnsafeEntry {
        /// The entry's path as written in the layer.
        entry: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A source file or directory of a `copy` step is unusable.
    #[error("image {image}: cannot copy `{src}`: {reason}")]
    Source {
        /// The image.
        image: Name,
        /// The source path as declared.
        src: String,
        /// Why.
        reason: String,
    },
    /// An image's `from` names an image that is not declared, or the images
    /// depend on each other in a cycle.
    #[error("image {image}: {reason}")]
    Declaration {
        /// The image.
        image: Name,
        /// What is wrong.
        reason: String,
    },
    /// A base archive does not have the digest it is pinned to.
    #[error("image {image}: archive {} has digest {actual}, but {expected} is pinned", path.display())]
    ArchiveDigest {
        /// The image.
        image: Name,
        /// The archive.
        path: PathBuf,
        /// The pinned digest.
        expected: Digest,
        /// The archive's actual digest.
        actual: Digest,
    },
    /// The built image does not have the digest its declaration pins.
    #[error("image {image} was built as {actual}, but {expected} is pinned")]
    PinnedDigest {
        /// The image.
        image: Name,
        /// The pinned digest.
        expected: Digest,
        /// The digest that was built.
        actual: Digest,
    },
    /// The sandbox for `run` and `test` steps could not be set up.
    #[error("cannot set up the build sandbox: {stage}")]
    Sandbox {
        /// What failed (e.g. "mount the overlay").
        stage: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A `run` step exited unsuccessfully.
    #[error(
        "image {image}: step {step} `{command}` failed ({status}){}",
        tail(output)
    )]
    StepFailed {
        /// The image.
        image: Name,
        /// 1-based step number.
        step: usize,
        /// The command line.
        command: String,
        /// How it ended.
        status: String,
        /// The end of its output.
        output: String,
    },
    /// A `run` or `test` step tried to open a network connection.
    #[error(
        "image {image}: {kind} `{command}` tried to reach the network ({attempts} attempt(s) blocked: the build sandbox has no network); builds are hermetic: put what the step downloads into the source tree or a pinned base image{}",
        tail(output)
    )]
    NetworkAttempt {
        /// The image.
        image: Name,
        /// "step 2" or "test 1".
        kind: String,
        /// The command line.
        command: String,
        /// How many connection attempts the sandbox counted.
        attempts: u64,
        /// The end of its output.
        output: String,
    },
    /// A `test` step failed: the image is not tagged.
    #[error(
        "image {image}: test {test} `{command}` failed ({status}); the image was not tagged{}",
        tail(output)
    )]
    TestFailed {
        /// The image.
        image: Name,
        /// 1-based test number.
        test: usize,
        /// The command line.
        command: String,
        /// How it ended.
        status: String,
        /// The end of its output.
        output: String,
    },
}

/// Formats captured output for the end of an error message.
fn tail(output: &str) -> String {
    let trimmed = output.trim_end();
    if trimmed.is_empty() {
        String::new()
    } else {
        format!("; output:\n{trimmed}")
    }
}

impl ImageError {
    /// An [`ImageError::Io`] for `path`.
    pub(crate) fn io(
        what: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> ImageError {
        let path = path.into();
        move |source| ImageError::Io { what, path, source }
    }

    /// An [`ImageError::Invalid`].
    pub(crate) fn invalid(what: impl Into<String>, reason: impl ToString) -> ImageError {
        ImageError::Invalid {
            what: what.into(),
            reason: reason.to_string(),
        }
    }
}

/// Result alias for this crate.
pub type Result<T, E = ImageError> = std::result::Result<T, E>;
