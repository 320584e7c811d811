//! The `glint` command line.
//!
//! A thin shell over the library crates: it parses arguments, loads files at
//! the edge, opens the store, and prints. Every command lives in its own module
//! under `commands/`; shared output conventions (colour, `--output json`, exit
//! codes) live in `output.rs`.
//!
//! Exit codes: 0 success; 1 the input or the operation failed (errors in a
//! file, a policy violation, a rollout rolled back); 2 usage or IO errors
//! (bad arguments, a missing file, an unreadable data directory).

mod cli;
mod commands;
mod common;
mod compile;
mod daemon;
mod loader;
mod output;
mod remote;
mod resolve;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    if !matches!(
        cli.command,
        cli::Command::Conductor(_) | cli::Command::Up(_) | cli::Command::Dataplane(_)
    ) {
        // Short-lived commands end quietly when their reader goes away
        // (`glint events | head`), like other Unix tools. The long-running
        // ones keep Rust's default (ignore SIGPIPE) so a closed log pipe
        // never kills a conductor.
        // SAFETY: called before any thread is started; SIG_DFL is a valid
        // disposition for SIGPIPE.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let code = commands::run(cli);
    ExitCode::from(code as u8)
}
