//! `glint conductor` (to be written).

use crate::cli::{ConductorArgs, Global};
use crate::output::EXIT_USAGE;

/// Runs `glint conductor`.
pub fn run(_global: &Global, _args: ConductorArgs) -> i32 {
    eprintln!("glint conductor: not implemented yet");
    EXIT_USAGE
}
