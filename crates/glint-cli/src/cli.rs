//! Argument definitions (clap derive). Help text here is what users read in
//! `glint --help` and `glint COMMAND --help`.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// Glint: declare your services in one typed language, and a conductor runs,
/// heals and replaces them.
#[derive(Debug, Parser)]
#[command(name = "glint", version, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command accepts.
#[derive(Debug, Args)]
pub struct Global {
    /// Where Glint keeps its state (store, logs, images).
    #[arg(long, global = true, env = "GLINT_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// When to use colour. `auto` means only on a terminal and never with NO_COLOR.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
    /// Talk to the conductor at this address (`http://HOST:PORT`) through
    /// its API instead of the local data directory.
    #[arg(long, global = true, env = "GLINT_ADDR", value_name = "URL")]
    pub addr: Option<String>,
    /// The API token for `--addr` (prefer the environment variable: a
    /// command line is visible to other users).
    #[arg(
        long,
        global = true,
        env = "GLINT_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,
    /// For an `https://` address: the PEM file of the certificate(s) to
    /// trust (only those are trusted).
    #[arg(long, global = true, env = "GLINT_CA", value_name = "FILE")]
    pub ca: Option<PathBuf>,
}

/// When to use colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    /// On a terminal, unless NO_COLOR is set.
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

/// Output format of read commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum OutputFormat {
    /// Tables and sentences for people.
    #[default]
    Text,
    /// One JSON document for programs.
    Json,
}

/// `--output` for read commands.
#[derive(Debug, Args)]
pub struct OutputArgs {
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check files for errors and policy violations without changing anything.
    Check(CheckArgs),
    /// Format .glint files canonically.
    Fmt(FmtArgs),
    /// Explain an error code, e.g. `glint explain E0101`.
    Explain(ExplainArgs),
    /// Run the language server for editors (LSP on stdin and stdout):
    /// diagnostics as you type, completion, hover, go to definition,
    /// references, rename, formatting. See docs/editor.md.
    Lsp(LspArgs),
    /// Show what an apply would create, replace and retire, and why.
    Plan(PlanArgs),
    /// Record a new version from FILE and have the conductor converge to it.
    Apply(ApplyArgs),
    /// Roll the whole environment back to an earlier version (a new version
    /// with that version's content), with the same health-gated replacement.
    Rollback(RollbackArgs),
    /// Show services and instances: id, age, health, version.
    Status(StatusArgs),
    /// List the versions of the environment.
    History(HistoryArgs),
    /// Show the event log (detections, launches, replacements, incidents).
    Events(EventsArgs),
    /// List incidents (drift found and what was done about it, one record
    /// per incident with its repeats); `resolve ID` closes an open one.
    Incidents(IncidentsArgs),
    /// List notifications for `notify` sinks (pending, delivered, failed),
    /// newest first.
    Notifications(NotificationsArgs),
    /// Show an instance's or a service's output.
    Logs(LogsArgs),
    /// Apply FILE and run the conductor in the foreground with live status;
    /// Ctrl-C stops everything it started.
    Up(UpArgs),
    /// Run the conductor as a daemon (API on a unix socket; with --listen
    /// also on TCP with tokens, and the dashboard).
    Conductor(ConductorArgs),
    /// Run the data plane process (the endpoints); started by the conductor.
    #[command(hide = true)]
    Dataplane(DataplaneArgs),
    /// Bring the environment down: drain and stop every instance and close
    /// every endpoint (a new version without services), keeping volumes and
    /// history. `glint apply`, `glint up` or `glint rollback` bring it back.
    Down(DownArgs),
    /// Create, list and revoke API tokens.
    Token(TokenArgs),
    /// Print a shell completion script (`glint completions bash > …`).
    Completions(CompletionsArgs),
    /// Build the images FILE declares and print each image's digest.
    Build(BuildArgs),
    /// List the images in the store: digest, tags, size, created, used by.
    Images(ImagesArgs),
    /// Inspect, export, import and garbage-collect images.
    Image(ImageArgs),
    /// List, inspect and remove volumes (never removed otherwise).
    Volume(VolumeArgs),
    /// Set, list and remove secrets (sealed in the store, delivered to
    /// their readers as /run/secrets/NAME); rotate the master key.
    Secret(SecretArgs),
}

/// `glint check`
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The main .glint file.
    pub file: PathBuf,
    /// Extra policy files (an organisation's policy set).
    #[arg(long = "policy", value_name = "FILE")]
    pub policies: Vec<PathBuf>,
    /// Diagnostics format.
    #[arg(long, value_enum, default_value_t = DiagnosticFormat::Human)]
    pub format: DiagnosticFormat,
    /// Also print the compiled environment (`ir`: canonical JSON).
    #[arg(long, value_enum)]
    pub emit: Option<Emit>,
    /// Output format (`-o json` is `--format json`).
    #[arg(long, short = 'o', value_enum)]
    pub output: Option<OutputFormat>,
}

/// Diagnostics format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DiagnosticFormat {
    /// Rendered for people, with source and carets.
    Human,
    /// JSON for CI and editors.
    Json,
}

/// What `check --emit` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Emit {
    /// The compiled environment as canonical JSON.
    Ir,
}

/// `glint fmt`
#[derive(Debug, Args)]
pub struct FmtArgs {
    /// Files to format in place.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Do not write; exit 1 if any file is not formatted.
    #[arg(long)]
    pub check: bool,
}

/// `glint explain`
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The error code, e.g. E0101.
    pub code: String,
}

/// `glint lsp`
#[derive(Debug, Args)]
pub struct LspArgs {
    /// Extra policy files checked with every environment (as `check
    /// --policy`), besides those the editor names in its settings.
    #[arg(long = "policy", value_name = "FILE")]
    pub policies: Vec<PathBuf>,
    /// Talk over stdin and stdout (the default and only transport;
    /// accepted because some editors pass it).
    #[arg(long)]
    pub stdio: bool,
}

/// `glint plan`
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The main .glint file.
    pub file: PathBuf,
    /// Extra policy files.
    #[arg(long = "policy", value_name = "FILE")]
    pub policies: Vec<PathBuf>,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `glint apply`
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The main .glint file.
    pub file: PathBuf,
    /// Extra policy files.
    #[arg(long = "policy", value_name = "FILE")]
    pub policies: Vec<PathBuf>,
    /// Wait until the conductor has converged (or rolled back) and show progress.
    #[arg(long)]
    pub wait: bool,
    #[command(flatten)]
    pub guards: GuardArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// Flags that allow applies which would make running services vanish.
#[derive(Debug, Args)]
pub struct GuardArgs {
    /// Allow a file that declares no services, retiring every running one.
    #[arg(long)]
    pub allow_retire_all: bool,
    /// Allow a file of another environment than the one this data directory
    /// runs, retiring everything the current one runs.
    #[arg(long)]
    pub replace_environment: bool,
    /// Apply firewall rules this machine cannot enforce (no root, or no
    /// `nft`): they are recorded, and nothing restricts the network.
    #[arg(long)]
    pub allow_unenforced: bool,
}

impl GuardArgs {
    /// As operation options.
    pub fn options(&self) -> glint_conductor::ops::ApplyOptions {
        glint_conductor::ops::ApplyOptions {
            allow_retire_all: self.allow_retire_all,
            allow_other_environment: self.replace_environment,
        }
    }
}

/// `glint rollback`
#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The version to return to (default: the newest earlier version whose
    /// rollout converged and whose content differs from the current one).
    #[arg(value_name = "VERSION")]
    pub to: Option<String>,
    /// Wait until the conductor has converged (or rolled back) and show progress.
    #[arg(long)]
    pub wait: bool,
    /// Do not ask for confirmation (asked only on a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `glint down`
#[derive(Debug, Args)]
pub struct DownArgs {
    /// Return once the version is recorded, without waiting for every
    /// instance to stop.
    #[arg(long)]
    pub no_wait: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `glint token`
#[derive(Debug, Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    pub command: TokenCommand,
}

/// A token's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    /// Read status, history, events, logs, metrics, the dashboard.
    Viewer,
    /// Also plan, apply, roll back, bring down.
    Deployer,
    /// Also manage tokens.
    Admin,
}

impl RoleArg {
    /// As the store's role.
    pub fn role(self) -> glint_store::Role {
        match self {
            RoleArg::Viewer => glint_store::Role::Viewer,
            RoleArg::Deployer => glint_store::Role::Deployer,
            RoleArg::Admin => glint_store::Role::Admin,
        }
    }
}

/// `glint token` subcommands.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token; its secret is printed once.
    Create {
        /// A name for people (`ci`, `alice-laptop`).
        name: String,
        /// What it may do.
        #[arg(long, value_enum)]
        role: RoleArg,
        /// Only valid for this environment.
        #[arg(long, value_name = "E")]
        environment: Option<String>,
        /// Valid for this long (`30d`, `12h`); default: until revoked.
        #[arg(long, value_name = "D")]
        ttl: Option<String>,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// List tokens (never their secrets).
    List {
        /// Also revoked and expired ones.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Revoke a token, by accessor or name.
    Revoke {
        /// Its accessor or name.
        token: String,
        #[command(flatten)]
        output: OutputArgs,
    },
}

/// `glint completions`
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// `glint status`
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `glint history`
#[derive(Debug, Args)]
pub struct HistoryArgs {
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `glint events`
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Only events of this service.
    #[arg(long)]
    pub service: Option<String>,
    /// Only the last N events.
    #[arg(long, short = 'n', default_value_t = 50)]
    pub limit: usize,
    /// Keep printing new events as they happen.
    #[arg(long, short = 'f')]
    pub follow: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `glint incidents`
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct IncidentsArgs {
    #[command(subcommand)]
    pub command: Option<IncidentsCommand>,
    /// Only open incidents.
    #[arg(long)]
    pub open: bool,
    /// At most N incidents, newest first (0: all).
    #[arg(long, short = 'n', default_value_t = 50)]
    pub limit: usize,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `glint notifications`
#[derive(Debug, Args)]
pub struct NotificationsArgs {
    /// Only this sink's.
    #[arg(long)]
    pub sink: Option<String>,
    /// Only those in this state.
    #[arg(long, value_parser = ["pending", "delivered", "failed"])]
    pub state: Option<String>,
    /// At most N notifications, newest first (0: all).
    #[arg(long, short = 'n', default_value_t = 50)]
    pub limit: usize,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `glint incidents` subcommands.
#[derive(Debug, Subcommand)]
pub enum IncidentsCommand {
    /// Mark an open incident resolved (recording who resolved it).
    Resolve {
        /// The incident's number, as `glint incidents` shows it.
        id: i64,
    },
}

/// `glint logs`
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The service.
    pub service: String,
    /// Only this instance.
    #[arg(long)]
    pub instance: Option<String>,
    /// Only the last N lines of each instance.
    #[arg(long, short = 'n')]
    pub tail: Option<usize>,
    /// Keep printing output as it is written, including that of instances
    /// launched later (containers too).
    #[arg(long, short = 'f')]
    pub follow: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `glint up`
#[derive(Debug, Args)]
pub struct UpArgs {
    /// The main .glint file.
    pub file: PathBuf,
    /// Extra policy files.
    #[arg(long = "policy", value_name = "FILE")]
    pub policies: Vec<PathBuf>,
    #[command(flatten)]
    pub guards: GuardArgs,
    #[command(flatten)]
    pub listen: ListenArgs,
}

/// Where the API listens besides the unix socket.
#[derive(Debug, Args)]
pub struct ListenArgs {
    /// Also serve the API and the dashboard on this TCP address (tokens
    /// required). An address that is not loopback needs --tls-cert and
    /// --tls-key.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<std::net::SocketAddr>,
    /// Serve --listen over TLS with this certificate chain (PEM).
    #[arg(long, value_name = "FILE", requires_all = ["listen", "tls_key"])]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires_all = ["listen", "tls_cert"])]
    pub tls_key: Option<PathBuf>,
}

/// `glint conductor`
#[derive(Debug, Args)]
pub struct ConductorArgs {
    #[command(flatten)]
    pub listen: ListenArgs,
}

/// `glint dataplane`
#[derive(Debug, Args)]
pub struct DataplaneArgs {
    /// The id of the store it serves (its label).
    #[arg(long, value_name = "ID")]
    pub store: String,
    /// After handing its endpoints to a successor, how long client
    /// connections get to make one more request (default 5s).
    #[arg(long, value_name = "DURATION")]
    pub linger: Option<humantime::Duration>,
}

/// `glint build`
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The main .glint file.
    pub file: PathBuf,
    /// Extra policy files.
    #[arg(long = "policy", value_name = "FILE")]
    pub policies: Vec<PathBuf>,
    /// Also start each built image in a sandbox without network and require
    /// its health check to pass (the immutability test).
    #[arg(long)]
    pub verify: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `glint images`
#[derive(Debug, Args)]
pub struct ImagesArgs {
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `glint image`
#[derive(Debug, Args)]
pub struct ImageArgs {
    #[command(subcommand)]
    pub command: ImageCommand,
}

/// `glint image` subcommands.
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Show an image's config and provenance (inputs, steps, tool version, time).
    Inspect {
        /// Digest, unambiguous digest prefix, or tag.
        image: String,
    },
    /// Remove images no version needs, keeping those of the last N versions.
    Gc {
        /// Keep the images of the last N versions (rollback targets).
        #[arg(long, default_value_t = 10)]
        keep_versions: usize,
    },
    /// Write an image as an archive that `docker load` accepts.
    Export {
        /// Digest, unambiguous digest prefix, or tag.
        image: String,
        /// The archive to write, or `-` for stdout. It is written beside the
        /// target and renamed into place; an existing target must be a
        /// regular file (a FIFO, device, symlink or directory is refused).
        #[arg(long, short = 'o', value_name = "FILE")]
        output: PathBuf,
    },
    /// Bring an image archive (OCI layout or `docker save`, or a root
    /// filesystem tarball) into the store, verified. Archives with device
    /// nodes or paths that leave the root are refused.
    Import {
        /// The archive.
        file: PathBuf,
    },
}

/// `glint secret`
#[derive(Debug, Args)]
pub struct SecretArgs {
    #[command(subcommand)]
    pub command: SecretCommand,
}

/// `glint secret` subcommands.
#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Set a secret's value (a new version) from standard input (one
    /// trailing newline dropped) or --from-file (exact bytes); never from
    /// an argument. At most 64 KiB, not empty. Prints the new version; the
    /// next `glint apply` replaces its readers.
    Set {
        /// The secret (`shop/db/password`): parts of letters, digits, `.`,
        /// `_` and `-` separated by `/`.
        name: String,
        /// Read the value from this file instead of standard input.
        #[arg(long, value_name = "PATH")]
        from_file: Option<PathBuf>,
    },
    /// List secrets: name, version, when and by whom set, which services
    /// of the newest version read them (never values).
    List {
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Remove a secret's value. Refused while a service of the newest
    /// version reads it, unless --force.
    Rm {
        /// The secret.
        name: String,
        /// Remove it even though a service reads it (its next launch fails
        /// until the secret is set again).
        #[arg(long)]
        force: bool,
    },
    /// Re-wrap every secret's data key under a new master key, in one
    /// transaction (a new secrets.key, or GLINT_NEW_MASTER_KEY when the key
    /// comes from GLINT_MASTER_KEY).
    RotateKey,
}

/// `glint volume`
#[derive(Debug, Args)]
pub struct VolumeArgs {
    #[command(subcommand)]
    pub command: VolumeCommand,
}

/// `glint volume` subcommands.
#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    /// List volumes: name, provider, size, usage, mounted by.
    Ls {
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Show one volume: where its data is, who mounts it, which versions
    /// declare it.
    Inspect {
        /// The volume (`pgdata`, or `pgdata-0` for a per-instance one).
        name: String,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Delete a volume and its data. Refused while the newest version, or a
    /// version an instance runs, declares it, or an instance mounts it.
    Rm {
        /// The volume.
        name: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Clap's own consistency checks for every subcommand (unique names,
    /// valid defaults), which otherwise only fire when a command is used.
    #[test]
    fn the_command_line_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
