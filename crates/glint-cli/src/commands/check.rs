//! `glint check` (to be written).

use crate::cli::{CheckArgs, Global};
use crate::output::EXIT_USAGE;

/// Runs `glint check`.
pub fn run(_global: &Global, _args: CheckArgs) -> i32 {
    eprintln!("glint check: not implemented yet");
    EXIT_USAGE
}
