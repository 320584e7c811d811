//! Loading `.glint` files from disk for the language crate (which does no IO).
//!
//! The environment root is the main file's directory. Loader keys are paths
//! relative to it with `/` separators (imports are resolved by the compiler);
//! policy files outside the root are passed by absolute path.
//!
//! Untrusted sources stay in their box: the compiler refuses imports that
//! are absolute or climb out of their root before asking for them, and this
//! loader refuses, without opening it, a file whose real path (symlinks
//! followed) is outside its root — the environment root for relative keys,
//! the directory of the policy file for absolute ones. A file is opened
//! without blocking (a FIFO cannot hang `check`), must be a regular file, is
//! checked again through the descriptor that was opened (so swapping a
//! symlink between the check and the open does not help), and is read up to
//! the compiler's size limit only.

use glint_lang::{Compilation, CompileOptions, LoadError, LoadedFile, Loader};
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Component, Path, PathBuf};

/// Reads files relative to an environment root.
#[derive(Debug, Clone)]
pub struct FsLoader {
    /// The root directory as the user gave it (may be empty for the cwd).
    root: PathBuf,
    /// The root with symlinks resolved (what real paths must stay under).
    real_root: Option<PathBuf>,
    /// Policy files outside the root: the key of each one's directory and
    /// that directory's real path.
    policy_roots: Vec<(String, Option<PathBuf>)>,
    /// Display names of keys given on the command line (policy files).
    shown: std::collections::HashMap<String, String>,
}

impl FsLoader {
    /// A loader rooted at `root`.
    pub fn new(root: impl Into<PathBuf>) -> FsLoader {
        let root = root.into();
        let real_root = std::fs::canonicalize(if root.as_os_str().is_empty() {
            Path::new(".")
        } else {
            &root
        })
        .ok();
        FsLoader {
            root,
            real_root,
            policy_roots: Vec::new(),
            shown: std::collections::HashMap::new(),
        }
    }

    /// Accepts a policy file given by absolute `key` (outside the root): it
    /// and what it imports stay inside its own directory.
    fn add_policy_root(&mut self, key: &str) {
        if !key.starts_with('/') {
            return;
        }
        let dir = Path::new(key).parent().unwrap_or(Path::new("/"));
        let dir_key = dir.to_string_lossy().into_owned();
        self.policy_roots
            .push((dir_key, std::fs::canonicalize(dir).ok()));
    }

    fn path_of(&self, key: &str) -> PathBuf {
        let p = Path::new(key);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.root.join(p)
        }
    }

    /// The real directory a key must stay under, if any is known.
    fn real_root_of(&self, key: &str) -> Result<&Path, LoadError> {
        if !key.starts_with('/') {
            return self
                .real_root
                .as_deref()
                .ok_or_else(|| LoadError::new("the environment's directory cannot be read"));
        }
        self.policy_roots
            .iter()
            .filter(|(dir, _)| glint_lang::source::within(key, dir))
            .max_by_key(|(dir, _)| dir.len())
            .and_then(|(_, real)| real.as_deref())
            .ok_or_else(|| {
                LoadError::outside_root(format!(
                    "`{key}` is not inside the directory of a policy file given on the command line"
                ))
            })
    }

    /// Whether the file `key` may be loaded, reading nothing: its real
    /// path (of the deepest part that exists, symlinks followed) is inside
    /// its root. The language server asks before it compiles an open
    /// document's unsaved text in place of the file.
    pub fn admits(&self, key: &str) -> Result<(), LoadError> {
        let root = self.real_root_of(key)?;
        let path = self.path_of(key);
        let mut existing = path.as_path();
        loop {
            if let Ok(real) = std::fs::canonicalize(existing) {
                if real.starts_with(root) {
                    return Ok(());
                }
                return Err(LoadError::outside_root(format!(
                    "{} leads to {}, outside {}",
                    display(existing),
                    display(&real),
                    display(root)
                )));
            }
            match existing.parent() {
                Some(p) if !p.as_os_str().is_empty() => existing = p,
                _ => {
                    return Err(LoadError::new(format!("no such file ({})", display(&path))));
                }
            }
        }
    }

    /// Refuses `path` (on disk) unless its real path is under `root`.
    fn confine(&self, path: &Path, root: &Path) -> Result<(), LoadError> {
        match std::fs::canonicalize(path) {
            Ok(real) if real.starts_with(root) => Ok(()),
            Ok(real) => Err(LoadError::outside_root(format!(
                "{} leads to {}, outside {}",
                display(path),
                display(&real),
                display(root)
            ))),
            Err(e) => Err(LoadError::new(format!(
                "{} ({})",
                io_reason(&e),
                display(path)
            ))),
        }
    }
}

impl Loader for FsLoader {
    fn load(&self, key: &str) -> Result<LoadedFile, LoadError> {
        let path = self.path_of(key);
        let root = self.real_root_of(key)?;
        // Refused before anything is opened.
        self.confine(&path, root)?;
        let io =
            |e: std::io::Error| LoadError::new(format!("{} ({})", io_reason(&e), display(&path)));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
            .open(&path)
            .map_err(io)?;
        let meta = file.metadata().map_err(io)?;
        if !meta.is_file() {
            return Err(LoadError::new(format!(
                "not a regular file ({})",
                display(&path)
            )));
        }
        // What was opened, whatever happened to the path since the check.
        let opened = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()));
        if let Ok(real) = opened
            && !real.starts_with(root)
        {
            return Err(LoadError::outside_root(format!(
                "{} leads outside {}",
                display(&path),
                display(root)
            )));
        }
        let mut bytes = Vec::new();
        let limit = u64::try_from(glint_lang::MAX_FILE).unwrap_or(u64::MAX) + 1;
        file.take(limit).read_to_end(&mut bytes).map_err(io)?;
        Ok(LoadedFile {
            display: self
                .shown
                .get(key)
                .cloned()
                .unwrap_or_else(|| display(&path)),
            bytes,
        })
    }

    fn check_within(&self, path: &str, within: &str) -> Result<(), LoadError> {
        let Ok(context) = std::fs::canonicalize(self.path_of(within)) else {
            // A context that does not exist holds nothing to escape to.
            return Ok(());
        };
        // The deepest part of the path that exists, symlinks resolved (a
        // source that does not exist yet is reported by the build).
        let full = self.path_of(path);
        let mut existing = full.as_path();
        loop {
            if let Ok(real) = std::fs::canonicalize(existing) {
                if real.starts_with(&context) {
                    return Ok(());
                }
                return Err(LoadError::outside_root(format!(
                    "{} leads to {}",
                    display(existing),
                    display(&real)
                )));
            }
            match existing.parent() {
                Some(p) if !p.as_os_str().is_empty() => existing = p,
                _ => return Ok(()),
            }
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
    let p = prepare(main, policies)?;
    Ok(glint_lang::compile(&p.key, &p.loader, &p.options))
}

/// What compiling an environment takes: its loader, the main file's key
/// and the options (the same for `glint check` and `glint lsp`).
#[derive(Debug)]
pub struct Prepared {
    /// Reads the environment's files, confined to their roots.
    pub loader: FsLoader,
    /// The main file's key.
    pub key: String,
    /// Policies, the default name, enforced capabilities, providers.
    pub options: CompileOptions,
}

/// Prepares compilations of the environment whose main file is `main`
/// (which need not exist yet: an editor's unsaved file), with extra
/// policy files, which must be readable.
pub fn prepare(main: &Path, policies: &[PathBuf]) -> Result<Prepared, LoadFailure> {
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
        loader.add_policy_root(&k);
        loader.shown.insert(k.clone(), display(p));
        keys.push(k);
    }
    let options = CompileOptions {
        policies: keys,
        default_name: Some(stem),
        enforced: crate::compile::enforced(),
        providers: crate::compile::providers(),
    };
    Ok(Prepared {
        loader,
        key,
        options,
    })
}

fn check_readable(p: &Path) -> Result<(), LoadFailure> {
    let shown = glint_lang::diag::escape_control(&display(p)).into_owned();
    match std::fs::metadata(p) {
        Ok(m) if m.is_file() => Ok(()),
        Ok(_) => Err(LoadFailure::Unreadable {
            path: shown,
            reason: "not a file".into(),
        }),
        Err(e) => Err(LoadFailure::Unreadable {
            path: shown,
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
