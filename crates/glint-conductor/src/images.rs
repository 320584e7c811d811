//! Where the conductor gets runnable images from.
//!
//! Just before every launch the conductor asks an [`ImageSource`] for the
//! image by digest; the source verifies it (every blob re-hashed, the unpacked
//! tree checked against its fingerprint) and hands back the unpacked root
//! filesystem that all instances of that digest share read-only. A tampered
//! image is refused, and the conductor records an incident
//! (architecture invariant 4: images are verified before launch).
//!
//! The real source is Glint's OCI image store ([`glint_image::ImageStore`]);
//! the trait exists so that tests and other providers can supply their own.

use glint_model::{Digest, ProviderKind};
use glint_provider::LaunchImage;
use std::path::PathBuf;

/// Why an image cannot be launched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PrepareError {
    /// What went wrong, with the digest.
    pub message: String,
    /// Whether the image failed verification (an incident), rather than
    /// being missing or unreadable.
    pub tampered: bool,
}

/// Where the conductor gets runnable images.
pub trait ImageSource: Send + Sync + 'static {
    /// Verifies the image and returns what a provider of `kind` needs to run
    /// it: the unpacked root filesystem for local processes, an archive
    /// `docker load` accepts for Docker. May block (hashing, unpacking,
    /// exporting): call it from a blocking task.
    fn prepare(&self, digest: &Digest, kind: ProviderKind) -> Result<LaunchImage, PrepareError>;

    /// Verifies that the image is present and intact, without preparing it
    /// (before a rollback is recorded). May block.
    fn verify(&self, digest: &Digest) -> Result<(), PrepareError>;
}

fn prepare_error(e: glint_image::ImageError) -> PrepareError {
    let tampered = matches!(
        e,
        glint_image::ImageError::Tampered { .. }
            | glint_image::ImageError::RootfsTampered { .. }
            | glint_image::ImageError::MissingBlob { .. }
    );
    PrepareError {
        message: crate::error_chain(&e),
        tampered,
    }
}

impl ImageSource for glint_image::ImageStore {
    fn verify(&self, digest: &Digest) -> Result<(), PrepareError> {
        glint_image::ImageStore::verify(self, digest)
            .map(|_| ())
            .map_err(prepare_error)
    }

    fn prepare(&self, digest: &Digest, kind: ProviderKind) -> Result<LaunchImage, PrepareError> {
        let result = match kind {
            ProviderKind::Docker => self.archive(digest).map(|archive| LaunchImage {
                digest: digest.clone(),
                rootfs: PathBuf::new(),
                archive: Some(archive),
            }),
            // An EC2 instance boots the AMI mapped to the digest: nothing
            // to unpack or export here.
            ProviderKind::Aws => Ok(LaunchImage {
                digest: digest.clone(),
                rootfs: PathBuf::new(),
                archive: None,
            }),
            ProviderKind::Process | ProviderKind::Simulated => {
                self.rootfs(digest).map(|rootfs| LaunchImage {
                    digest: digest.clone(),
                    rootfs,
                    archive: None,
                })
            }
        };
        result.map_err(prepare_error)
    }
}
