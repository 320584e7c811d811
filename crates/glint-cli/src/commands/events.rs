//! `glint events` (to be written).

use crate::cli::{EventsArgs, Global};
use crate::output::EXIT_USAGE;

/// Runs `glint events`.
pub fn run(_global: &Global, _args: EventsArgs) -> i32 {
    eprintln!("glint events: not implemented yet");
    EXIT_USAGE
}
