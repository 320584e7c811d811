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
mod resolve;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let code = commands::run(cli);
    ExitCode::from(code as u8)
}
