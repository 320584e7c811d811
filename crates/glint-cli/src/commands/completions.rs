//! `glint completions SHELL`: a completion script for bash, zsh, fish,
//! elvish or PowerShell, generated from the command-line definition.

use crate::cli::{Cli, CompletionsArgs, Global};
use crate::output::EXIT_OK;

/// Runs `glint completions`.
pub fn run(_global: &Global, args: CompletionsArgs) -> i32 {
    use clap::CommandFactory;
    let mut cmd = Cli::command();
    clap_complete::generate(args.shell, &mut cmd, "glint", &mut std::io::stdout());
    EXIT_OK
}
