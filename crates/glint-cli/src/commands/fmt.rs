//! `glint fmt` (to be written).

use crate::cli::{FmtArgs, Global};
use crate::output::EXIT_USAGE;

/// Runs `glint fmt`.
pub fn run(_global: &Global, _args: FmtArgs) -> i32 {
    eprintln!("glint fmt: not implemented yet");
    EXIT_USAGE
}
