//! `glint plan` (to be written).

use crate::cli::{Global, PlanArgs};
use crate::output::EXIT_USAGE;

/// Runs `glint plan`.
pub fn run(_global: &Global, _args: PlanArgs) -> i32 {
    eprintln!("glint plan: not implemented yet");
    EXIT_USAGE
}
