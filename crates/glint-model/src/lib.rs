//! Glint's shared vocabulary.
//!
//! This crate holds the types that cross a boundary between Glint's parts: the
//! compiled [`Environment`] that the language produces and everything else
//! consumes, typed ids ([`Name`], [`InstanceId`], [`VersionNumber`]), content
//! digests ([`Digest`], [`ContentHash`]), the ownership [`Labels`] every created
//! thing carries, and the plain units ([`Millis`], [`Bytes`]).
//!
//! It does no IO and has no behaviour beyond validation, hashing and small
//! conversions, so that the language crate stays pure and every other crate can
//! depend on it cheaply.
//!
//! Layout:
//! - [`ids`]: names, instance ids, version numbers, digests and hashes;
//! - [`units`]: durations and sizes as they appear in the IR;
//! - [`env`]: the environment and one type per declaration kind;
//! - [`labels`]: ownership labels and their key/value form;
//! - [`secret`]: what a secret name may be.

pub mod env;
pub mod ids;
pub mod labels;
pub mod secret;
pub mod units;

pub use env::*;
pub use ids::*;
pub use labels::*;
pub use units::*;
