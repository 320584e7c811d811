//! `glint lsp`: the language server (`glint-lsp`) on stdin and stdout,
//! compiling exactly as `glint check` does on this machine: the same
//! loader (imports kept inside the environment's root), the same enforced
//! capabilities and providers (`crate::compile`), so the editor shows the
//! same "declared but not enforced yet" warnings.
//!
//! Exit codes: 0 the client said `exit` (or closed stdin), 1 the client
//! broke the protocol, 2 stdin or stdout failed.

use crate::cli::{Global, LspArgs};
use crate::loader::FsLoader;
use crate::output::{EXIT_FAILED, EXIT_OK, EXIT_USAGE};
use glint_lang::LoadError;
use glint_lsp::{Host, Prepared, RootedLoader, ServerError};
use std::path::{Path, PathBuf};

/// Compiles for the server as the CLI compiles.
struct CliHost {
    /// `--policy` files, absolute.
    policies: Vec<PathBuf>,
}

impl Host for CliHost {
    fn prepare(&self, main: &Path, policies: &[PathBuf]) -> Result<Prepared, String> {
        let mut all = self.policies.clone();
        all.extend(policies.iter().cloned());
        let p = crate::loader::prepare(main, &all).map_err(|e| e.to_string())?;
        Ok(Prepared {
            loader: Box::new(p.loader),
            main_key: p.key,
            options: p.options,
        })
    }
}

impl RootedLoader for FsLoader {
    fn admits(&self, key: &str) -> Result<(), LoadError> {
        FsLoader::admits(self, key)
    }
}

/// Runs `glint lsp`.
pub fn run(_global: &Global, args: LspArgs) -> i32 {
    let policies = args
        .policies
        .iter()
        .map(|p| {
            if p.to_string_lossy().starts_with("std:") {
                p.clone()
            } else {
                crate::common::absolute(p)
            }
        })
        .collect();
    match glint_lsp::serve_stdio(Box::new(CliHost { policies })) {
        Ok(()) => EXIT_OK,
        Err(e) => {
            eprintln!("glint lsp: {}", glint_conductor::error_chain(&e));
            match e {
                ServerError::Io(_) => EXIT_USAGE,
                _ => EXIT_FAILED,
            }
        }
    }
}
