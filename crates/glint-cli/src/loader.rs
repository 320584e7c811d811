//! Loading `.glint` files from disk for the language crate (which does no IO).
//!
//! The environment root is the main file's directory. Loader keys are paths
//! relative to it with `/` separators (imports are resolved by the compiler);
//! policy files outside the root are passed by absolute path.

use glint_lang::{Compilation, CompileOptions, LoadError, LoadedFile, Loader};
use std::path::{Component, Path, PathBuf};

/// Reads files relative to an environment root.
#[derive(Debug, Clone)]
pub struct FsLoader {
    /// The root directory as the user gave it (may be empty for the cwd).
    root: PathBuf,
    /// Display names of keys given on the command line (policy files).
    shown: std::collections::HashMap<String, String>,
}

impl FsLoader {
    /// A loader rooted at `root`.
    pub fn new(root: impl Into<PathBuf>) -> FsLoader {
        FsLoader {
            root: root.into(),
            shown: std::collections::HashMap::new(),
        }
    }

    fn path_of(&self, key: &str) -> PathBuf {
        let p = Path::new(key);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.root.join(p)
        }
    }
}

impl Loader for FsLoader {
    fn load(&self, key: &str) -> Result<LoadedFile, LoadError> {
        let path = self.path_of(key);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(LoadedFile {
                display: self
                    .shown
                    .get(key)
                    .cloned()
                    .unwrap_or_else(|| display(&path)),
                bytes,
            }),
            Err(e) => Err(LoadError::new(format!(
                "{} ({})",
                io_reason(&e),
                display(&path)
            ))),
        }
    }
}

fn display(p: &Path) -> String {
    let s = p.to_string_lossy().replace('\\', "/");
    s.strip_prefix("./").map(str::to_owned).unwrap_or(s)
}

/// A short, lowercase description of an IO error.
pub fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        std::io::ErrorKind::IsADirectory => "is a directory".into(),
        _ => e.to_string().to_lowercase(),
    }
}

/// Why files could not be compiled at all (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum LoadFailure {
    /// The main file or a policy file cannot be read.
    #[error("cannot read `{path}`: {reason}")]
    Unreadable {
        /// The path as given.
        path: String,
        /// Why.
        reason: String,
    },
}

/// Compiles the environment whose main file is `main`, with extra policy
/// files (`std:policies` names the standard library).
pub fn compile_path(main: &Path, policies: &[PathBuf]) -> Result<Compilation, LoadFailure> {
    check_readable(main)?;
    for p in policies {
        if !p.to_string_lossy().starts_with("std:") {
            check_readable(p)?;
        }
    }
    let root = main.parent().map(Path::to_path_buf).unwrap_or_default();
    let key = main
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = main
        .file_stem()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "env".into());
    let mut loader = FsLoader::new(root.clone());
    let mut keys = Vec::new();
    for p in policies {
        let k = policy_key(&root, p);
        loader.shown.insert(k.clone(), display(p));
        keys.push(k);
    }
    let options = CompileOptions {
        policies: keys,
        default_name: Some(stem),
        enforced: crate::compile::enforced(),
        providers: crate::compile::providers(),
    };
    Ok(glint_lang::compile(&key, &loader, &options))
}

fn check_readable(p: &Path) -> Result<(), LoadFailure> {
    match std::fs::metadata(p) {
        Ok(m) if m.is_file() => Ok(()),
        Ok(_) => Err(LoadFailure::Unreadable {
            path: display(p),
            reason: "not a file".into(),
        }),
        Err(e) => Err(LoadFailure::Unreadable {
            path: display(p),
            reason: io_reason(&e),
        }),
    }
}

/// The loader key of a policy file: relative to the root when inside it,
/// else absolute.
fn policy_key(root: &Path, p: &Path) -> String {
    let s = p.to_string_lossy();
    if s.starts_with("std:") {
        return s.into_owned();
    }
    let abs = |x: &Path| std::path::absolute(x).unwrap_or_else(|_| x.to_path_buf());
    let (root_abs, p_abs) = (normalise(&abs(root)), normalise(&abs(p)));
    match p_abs.strip_prefix(&root_abs) {
        Ok(rel) => rel.to_string_lossy().replace('\\', "/"),
        Err(_) => p_abs.to_string_lossy().into_owned(),
    }
}

fn normalise(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}
