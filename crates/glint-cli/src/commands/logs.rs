//! `glint logs` (to be written).

use crate::cli::{Global, LogsArgs};
use crate::output::EXIT_USAGE;

/// Runs `glint logs`.
pub fn run(_global: &Global, _args: LogsArgs) -> i32 {
    eprintln!("glint logs: not implemented yet");
    EXIT_USAGE
}
