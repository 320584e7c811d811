//! Glint's control process: makes the world match the newest version and keeps
//! it matching.
//!
//! Layout:
//! - [`plan`]: launch shapes, fingerprints and the plan shown by `glint plan`;
//! - [`decide`]: the pure decision function (what to launch and retire now);
//! - [`health`]: probes and the per-instance health state machine;
//! - [`images`]: where runnable images come from.

pub mod decide;
pub mod health;
pub mod images;
pub mod plan;
