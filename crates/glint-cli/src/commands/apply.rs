//! `glint apply` (to be written).

use crate::cli::{ApplyArgs, Global};
use crate::output::EXIT_USAGE;

/// Runs `glint apply`.
pub fn run(_global: &Global, _args: ApplyArgs) -> i32 {
    eprintln!("glint apply: not implemented yet");
    EXIT_USAGE
}
