//! `glint explain` (to be written).

use crate::cli::{ExplainArgs, Global};
use crate::output::EXIT_USAGE;

/// Runs `glint explain`.
pub fn run(_global: &Global, _args: ExplainArgs) -> i32 {
    eprintln!("glint explain: not implemented yet");
    EXIT_USAGE
}
