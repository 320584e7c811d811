//! One module per subcommand; `run` dispatches.

pub mod apply;
pub mod build;
pub mod check;
pub mod completions;
pub mod conductor;
pub mod dataplane;
pub mod down;
pub mod events;
pub mod explain;
pub mod fmt;
pub mod history;
pub mod images;
pub mod incidents;
pub mod logs;
pub mod lsp;
pub mod notifications;
pub mod plan;
pub mod rollback;
pub mod secret;
pub mod status;
pub mod token;
pub mod up;
pub mod volume;

use crate::cli::{Cli, Command};

/// Runs a parsed command line and returns the exit code.
pub fn run(cli: Cli) -> i32 {
    let g = &cli.global;
    match cli.command {
        Command::Check(a) => check::run(g, a),
        Command::Fmt(a) => fmt::run(g, a),
        Command::Explain(a) => explain::run(g, a),
        Command::Lsp(a) => lsp::run(g, a),
        Command::Plan(a) => plan::run(g, a),
        Command::Apply(a) => apply::run(g, a),
        Command::Rollback(a) => rollback::run(g, a),
        Command::Status(a) => status::run(g, a),
        Command::History(a) => history::run(g, a),
        Command::Events(a) => events::run(g, a),
        Command::Incidents(a) => incidents::run(g, a),
        Command::Notifications(a) => notifications::run(g, a),
        Command::Logs(a) => logs::run(g, a),
        Command::Up(a) => up::run(g, a),
        Command::Conductor(a) => conductor::run(g, a),
        Command::Dataplane(a) => dataplane::run(g, a),
        Command::Down(a) => down::run(g, a),
        Command::Token(a) => token::run(g, a),
        Command::Completions(a) => completions::run(g, a),
        Command::Build(a) => build::run(g, a),
        Command::Images(a) => images::list(g, a),
        Command::Image(a) => images::run(g, a),
        Command::Volume(a) => volume::run(g, a),
        Command::Secret(a) => secret::run(g, a),
    }
}
