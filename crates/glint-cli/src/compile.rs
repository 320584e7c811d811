//! Loading and compiling `.glint` files (the edge around the pure language
//! crate).

use crate::cli::Global;
use crate::common::{Failed, fail};
use crate::output::EXIT_USAGE;
use glint_model::Environment;
use glint_store::SourceFile;
use std::path::{Path, PathBuf};

/// A compiled environment and where it came from.
#[derive(Debug)]
pub struct Loaded {
    /// The environment.
    pub env: Environment,
    /// The root directory (the main file's directory, absolute).
    pub root: PathBuf,
    /// Every file read.
    pub sources: Vec<SourceFile>,
}

/// Compiles `file`; diagnostics are printed on stderr.
pub fn load(_global: &Global, file: &Path, _policies: &[PathBuf]) -> Result<Loaded, Failed> {
    Err(fail(
        EXIT_USAGE,
        format_args!("cannot compile {}: the language is not available yet", file.display()),
    ))
}
