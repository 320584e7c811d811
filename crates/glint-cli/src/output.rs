//! Output conventions shared by all commands: colour decisions and exit codes.

use crate::cli::ColorChoice;
use std::io::IsTerminal;

/// Exit code: success.
#[allow(dead_code)]
pub const EXIT_OK: i32 = 0;
/// Exit code: the input or the operation failed.
#[allow(dead_code)]
pub const EXIT_FAILED: i32 = 1;
/// Exit code: usage or IO error.
pub const EXIT_USAGE: i32 = 2;

/// Whether to colour output written to stdout (`stderr` for diagnostics).
#[allow(dead_code)]
pub fn use_color(choice: ColorChoice, stream_is_terminal: bool) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            stream_is_terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        }
    }
}

/// Whether stderr is a terminal.
#[allow(dead_code)]
pub fn stderr_is_terminal() -> bool {
    std::io::stderr().is_terminal()
}

/// Whether stdout is a terminal.
#[allow(dead_code)]
pub fn stdout_is_terminal() -> bool {
    std::io::stdout().is_terminal()
}
