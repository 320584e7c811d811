//! `glint history` (to be written).

use crate::cli::{Global, HistoryArgs};
use crate::output::EXIT_USAGE;

/// Runs `glint history`.
pub fn run(_global: &Global, _args: HistoryArgs) -> i32 {
    eprintln!("glint history: not implemented yet");
    EXIT_USAGE
}
