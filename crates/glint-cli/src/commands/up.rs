//! `glint up` (to be written).

use crate::cli::{Global, UpArgs};
use crate::output::EXIT_USAGE;

/// Runs `glint up`.
pub fn run(_global: &Global, _args: UpArgs) -> i32 {
    eprintln!("glint up: not implemented yet");
    EXIT_USAGE
}
