//! `glint status` (to be written).

use crate::cli::{Global, StatusArgs};
use crate::output::EXIT_USAGE;

/// Runs `glint status`.
pub fn run(_global: &Global, _args: StatusArgs) -> i32 {
    eprintln!("glint status: not implemented yet");
    EXIT_USAGE
}
