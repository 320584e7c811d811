//! Glint's immutable images: hermetic, reproducible builds into a
//! content-addressed OCI store, verified before every launch.
//!
//! An image is named by the sha256 digest of its OCI manifest. The same
//! declaration and the same input files always give the same digest, byte for
//! byte (fixed mtimes, owners and modes, sorted tar entries, fixed gzip
//! settings, fixed `created`); anything time- or machine-dependent (the real
//! build time, the tool version) lives in a side record outside the digest.
//!
//! Layout:
//! - [`store`]: [`ImageStore`], the OCI image layout on disk: blobs written
//!   once and verified when read, tags, provenance, listing, [`ImageStore::gc`];
//! - [`build`]: [`build()`], declared images in, digests out, with an image
//!   cache and a step cache;
//! - [`layer`]: deterministic layer tars, from the source tree or from a `run`
//!   step's overlay diff;
//! - [`sandbox`]: namespaces, overlay root and no network for `run`/`test`
//!   steps and verify runs, and how a network attempt is detected;
//! - [`unpack`]: flattening layers into a shared root filesystem with path
//!   discipline and whiteouts ([`ImageStore::rootfs`]), and its fingerprint;
//! - [`archive`]: [`ImageStore::export`] (for `docker load`) and [`ImageStore::import`];
//! - [`verify_run`]: [`ImageStore::verify_run`], the immutability test;
//! - [`oci`]: the OCI documents, as own serde types.
//!
//! A launch calls [`ImageStore::rootfs`] (which calls [`ImageStore::verify`]
//! first): a tampered blob or a modified unpacked tree is refused with an
//! error naming the image digest and the blob or path.

pub mod archive;
pub mod build;
mod error;
pub mod layer;
pub mod oci;
pub mod sandbox;
pub mod store;
pub mod unpack;
pub mod verify_run;

pub use build::{BuildOptions, Built, Progress, build, cached_digests};
pub use error::{ImageError, Result};
pub use sandbox::HealthProbe;
pub use store::{GcReport, ImageDetails, ImageStore, ImageSummary, Provenance};
pub use verify_run::{VerifyReport, VerifyRun};
