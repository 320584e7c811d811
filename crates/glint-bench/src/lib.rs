//! Benchmark tools for Glint. Glint's speed and availability goals are
//! measured by scripts under `bench/` that run the real `glint` binary; this
//! crate holds what those scripts need that is not `glint` itself.
//!
//! # Layout
//!
//! - [`load`]: the load generator behind the `glint-load` binary — workers
//!   on hyper 1's HTTP/1.1 client connections, every request counted as ok or
//!   failed (with the reason), phases steered from outside;
//! - [`report`]: per-worker recording, the merged [`Report`](report::Report)
//!   (totals, per-phase figures, per-second series, per-instance counts,
//!   failure log) and its human summary;
//! - [`histogram`]: the log-bucketed latency histogram;
//! - [`control`]: phase and stop files, polled, as the scripts drive a run.
//!
//! The binary (`src/bin/glint-load.rs`) only parses arguments and wires
//! files, the duration and signals to a [`load::Control`].

pub mod control;
pub mod histogram;
pub mod load;
pub mod report;
