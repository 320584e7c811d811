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

use glint_model::Digest;
use glint_provider::LaunchImage;

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
    /// Verifies the image and returns what a provider needs to run it. May
    /// block (hashing, unpacking): call it from a blocking task.
    fn prepare(&self, digest: &Digest) -> Result<LaunchImage, PrepareError>;
}

impl ImageSource for glint_image::ImageStore {
    fn prepare(&self, digest: &Digest) -> Result<LaunchImage, PrepareError> {
        match self.rootfs(digest) {
            Ok(rootfs) => Ok(LaunchImage {
                digest: digest.clone(),
                rootfs,
            }),
            Err(e) => {
                let tampered = matches!(
                    e,
                    glint_image::ImageError::Tampered { .. }
                        | glint_image::ImageError::RootfsTampered { .. }
                        | glint_image::ImageError::MissingBlob { .. }
                );
                Err(PrepareError {
                    message: crate::error_chain(&e),
                    tampered,
                })
            }
        }
    }
}
