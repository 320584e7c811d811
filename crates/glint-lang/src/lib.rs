//! The Glint language: source text in, a compiled [`Environment`] and
//! diagnostics out.
//!
//! The crate is pure: it never touches the filesystem, the clock or the
//! network. The caller supplies files through a [`Loader`] (the CLI reads them
//! from disk; tests use [`MemoryLoader`]) and renders the [`Diagnostics`] it
//! gets back.
//!
//! Layout:
//! - [`source`]: files, spans, line tables, path joining;
//! - [`lexer`], [`parser`], [`ast`]: text to syntax tree (keeping comments);
//! - [`eval`], [`value`]: the total, deterministic evaluator;
//! - [`schema`]: one field table per block kind (names, types, defaults,
//!   docs, decoding, policy views), public for tools such as an editor;
//! - [`lower`] (with `decode`, `checks`): declarations to the IR, defaults,
//!   whole-environment checks; `views` and `policy`: running policies;
//! - [`capability`]: what the build enforces and which providers it has
//!   (inputs of a compilation);
//! - [`format`](mod@format): the canonical formatter;
//! - [`ide`]: what editors need from syntax alone (definitions and
//!   references across files, the block at the cursor, an outline,
//!   highlighting, literals in words);
//! - [`diag`], [`codes`]: diagnostics as data, their rendering and the
//!   long explanations behind `glint explain`.
//!
//! Testing and measuring (see also `docs/language.md`):
//! - `tests/diagnostics.rs`: one insta snapshot per diagnostic code (the
//!   rendered message with source, caret, labels and help);
//! - `tests/language.rs`: language features, determinism of the IR and its
//!   hash, every example compiles and is formatted (idempotent, comments kept);
//! - `tests/robustness.rs`: proptest over random bytes, token soup, mutated
//!   examples, deep nesting, long chains and huge literals
//!   (`PROPTEST_CASES=N` to run longer);
//! - `fuzz/`: a `cargo fuzz` target over compile and format
//!   (`cargo fuzz run -s none compile` on stable);
//! - `benches/compile.rs`: N services + N endpoints + N rules with the
//!   standard policies, each size in its own process with its peak memory,
//!   and a record of 100,000 keys (`cargo bench -p glint-lang --bench
//!   compile`); `bench/compile.sh` times `glint check` itself.
//!
//! At scale: the compiler parses each top-level declaration's body only
//! when it decodes it (`parser::parse_file_lazy` locates bodies,
//! `ast::LazyDecl`), so the syntax trees of 100,000 declarations are never
//! in memory at once; there is one copy of each source text (shared by the
//! diagnostics); references share the declaration's name.
//!
//! Architecture invariant: nothing in this crate does IO. Imports are
//! resolved to keys (paths relative to the main file's directory, joined with
//! `/`) and loaded through the [`Loader`]; the standard library (`std:…`)
//! is compiled into the crate.

pub mod ast;
pub mod capability;
mod checks;
pub mod codes;
mod decode;
pub mod diag;
pub mod eval;
pub mod format;
pub mod fxhash;
pub mod ide;
pub mod lexer;
pub mod lower;
pub mod parser;
mod policy;
pub mod schema;
pub mod source;
pub mod value;
mod views;

pub use capability::{Capabilities, Capability, ProviderSet};
pub use codes::{Code, explain};
pub use diag::{Diagnostic, Diagnostics, Label, Severity};
pub use format::format;
pub use glint_model::Environment;
pub use source::{FileId, SourceMap, Span};

use crate::fxhash::FxMap;
use ast::ItemKind;
use eval::{Binding, Eval, Module, Program};
use std::collections::BTreeMap;
use std::rc::Rc;

/// Largest source file accepted (bytes).
pub const MAX_FILE: usize = 64 << 20;

/// The standard library modules compiled into the crate, by key.
pub const STD_MODULES: &[(&str, &str)] = &[("std:policies", include_str!("../std/policies.glint"))];

/// A file as the loader returns it.
#[derive(Debug, Clone)]
pub struct LoadedFile {
    /// The name shown in diagnostics (e.g. the path as the user typed it).
    pub display: String,
    /// The raw bytes (checked for UTF-8 by the compiler).
    pub bytes: Vec<u8>,
}

/// Why a file could not be loaded.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{reason}")]
pub struct LoadError {
    /// A short reason (`no such file`, `permission denied`).
    pub reason: String,
    /// The file is outside the root it must stay in (through a symlink,
    /// say): refused without being read.
    pub outside_root: bool,
}

impl LoadError {
    /// A file that cannot be read.
    pub fn new(reason: impl Into<String>) -> LoadError {
        LoadError {
            reason: reason.into(),
            outside_root: false,
        }
    }

    /// A file refused because it resolves outside its root.
    pub fn outside_root(reason: impl Into<String>) -> LoadError {
        LoadError {
            reason: reason.into(),
            outside_root: true,
        }
    }
}

/// Supplies source files. Keys are paths relative to the environment root
/// (the main file's directory) with `/` separators, possibly starting with
/// `..`, or absolute paths (policy files given on the command line).
pub trait Loader: Sync {
    /// Loads the file with this key.
    fn load(&self, key: &str) -> Result<LoadedFile, LoadError>;

    /// Checks, without reading anything, that `path` (a root-relative key,
    /// e.g. an image's copy source) resolves inside the directory `within`
    /// (a root-relative key) once symlinks are followed. A path that does
    /// not exist is not refused here (the build reports it). The default
    /// checks nothing: files held in memory have no links.
    fn check_within(&self, path: &str, within: &str) -> Result<(), LoadError> {
        let _ = (path, within);
        Ok(())
    }
}

/// A loader over files held in memory (tests, benchmarks, editors).
#[derive(Debug, Clone, Default)]
pub struct MemoryLoader {
    files: BTreeMap<String, Vec<u8>>,
}

impl MemoryLoader {
    /// An empty loader.
    pub fn new() -> MemoryLoader {
        MemoryLoader::default()
    }

    /// Adds (or replaces) a file.
    pub fn add(&mut self, key: impl Into<String>, text: impl Into<Vec<u8>>) -> &mut Self {
        self.files.insert(key.into(), text.into());
        self
    }
}

impl Loader for MemoryLoader {
    fn load(&self, key: &str) -> Result<LoadedFile, LoadError> {
        self.files
            .get(key)
            .map(|b| LoadedFile {
                display: key.to_owned(),
                bytes: b.clone(),
            })
            .ok_or_else(|| LoadError::new("no such file"))
    }
}

/// Options of one compilation.
#[derive(Debug, Clone, Default)]
pub struct CompileOptions {
    /// Extra policy files (loader keys, or `std:policies`), checked against
    /// the environment as if imported.
    pub policies: Vec<String>,
    /// The environment's name when there is no `environment` block
    /// (sanitised); default: the main file's stem.
    pub default_name: Option<String>,
    /// The capabilities the build enforces; declarations that ask for one
    /// outside this set compile with a "declared but not enforced yet"
    /// warning. Default: none.
    pub enforced: Capabilities,
    /// The providers the build has; a service on another one is an error.
    /// Default: all of them.
    pub providers: ProviderSet,
}

/// The result of a compilation.
#[derive(Debug, Clone)]
pub struct Compilation {
    /// The compiled environment, if there were no errors (warnings allowed).
    pub environment: Option<Environment>,
    /// Every diagnostic found, with the files they refer to.
    pub diagnostics: Diagnostics,
}

impl Compilation {
    /// Whether there were errors.
    pub fn has_errors(&self) -> bool {
        self.diagnostics.has_errors()
    }
}

/// Stack size of the thread that compiles or formats. The parser and the
/// evaluator are recursive with explicit depth limits; this stack holds the
/// deepest input those limits allow, whatever the caller's stack is.
const STACK_SIZE: usize = 64 << 20;

/// Runs `f` on a thread with a [`STACK_SIZE`] stack (inline if no thread can
/// be started).
fn with_stack<T: Send, F: FnOnce() -> T + Send>(f: F) -> T {
    let slot = std::sync::Mutex::new(Some(f));
    let take = || slot.lock().ok().and_then(|mut g| g.take());
    let joined = std::thread::scope(|s| {
        let handle = std::thread::Builder::new()
            .name("glint-lang".into())
            .stack_size(STACK_SIZE)
            .spawn_scoped(s, || take().map(|f| f()));
        match handle {
            Ok(h) => match h.join() {
                Ok(r) => r,
                Err(panic) => std::panic::resume_unwind(panic),
            },
            Err(_) => None,
        }
    });
    match joined {
        Some(r) => r,
        // The thread could not be started: run here.
        None => match take() {
            Some(f) => f(),
            None => unreachable_compile(),
        },
    }
}

#[cold]
fn unreachable_compile() -> ! {
    // `take` hands the closure out once; the thread ran it or did not start.
    panic!("glint-lang: the compile closure ran neither on its thread nor inline")
}

/// Compiles the environment whose main file has key `main` (e.g.
/// `hello.glint`), loading imports and `options.policies` through `loader`.
pub fn compile(main: &str, loader: &dyn Loader, options: &CompileOptions) -> Compilation {
    with_stack(|| compile_here(main, loader, options))
}

fn compile_here(main: &str, loader: &dyn Loader, options: &CompileOptions) -> Compilation {
    let mut sources = SourceMap::new();
    let mut diags: Vec<Diagnostic> = Vec::new();
    let mut prog = Program::default();
    let mut key_to_mod: FxMap<String, usize> = FxMap::default();
    // Import edges per module: (target module, span of the import path).
    let mut edges: Vec<Vec<(usize, Span)>> = Vec::new();

    // Each module's root: imports from it must stay inside. The main file's
    // is the environment root (`.`); a policy file given by absolute path
    // (outside the environment) is confined to its own directory.
    let mut roots: Vec<String> = Vec::new();
    let mut main_mod: Option<usize> = None;
    // Worklist of modules whose imports still need resolving.
    let mut pending_imports: std::collections::VecDeque<usize> = Default::default();
    // Load root files first (main, then policies), in order.
    let root_keys = std::iter::once(main.to_owned()).chain(options.policies.iter().cloned());
    for (i, key) in root_keys.enumerate() {
        if key_to_mod.contains_key(&key) {
            continue;
        }
        if let Some(m) = load_module(&key, None, loader, &mut sources, &mut prog, &mut diags) {
            key_to_mod.insert(key.clone(), m);
            edges.push(Vec::new());
            roots.push(root_of(&key));
            pending_imports.push_back(m);
            if i == 0 {
                main_mod = Some(m);
            }
        }
    }
    while let Some(m) = pending_imports.pop_front() {
        let from_key = prog.modules[m].key.clone();
        let root = roots[m].clone();
        let ast = prog.modules[m].ast.clone();
        for item in &ast.items {
            let ItemKind::Import(import) = &item.kind else {
                continue;
            };
            let ast::Import {
                path, path_span, ..
            } = &**import;
            let key = if path.starts_with("std:") {
                path.clone()
            } else {
                let key = source::join_path(&from_key, path);
                if let Some(d) = refuse_import(path, &key, &root, *path_span) {
                    diags.push(d);
                    continue;
                }
                key
            };
            let target = match key_to_mod.get(&key) {
                Some(t) => *t,
                None => match load_module(
                    &key,
                    Some(*path_span),
                    loader,
                    &mut sources,
                    &mut prog,
                    &mut diags,
                ) {
                    Some(t) => {
                        key_to_mod.insert(key.clone(), t);
                        edges.push(Vec::new());
                        roots.push(root.clone());
                        pending_imports.push_back(t);
                        t
                    }
                    None => continue,
                },
            };
            edges[m].push((target, *path_span));
        }
    }

    // Import cycles.
    import_cycles(&prog, &edges, &mut diags);

    // Top-level bindings of each module.
    for (m, module_edges) in edges.iter().enumerate() {
        let ast = prog.modules[m].ast.clone();
        let mut bindings: FxMap<String, Binding> = FxMap::default();
        let mut spans: FxMap<String, Span> = FxMap::default();
        let mut import_idx = 0;
        for (i, item) in ast.items.iter().enumerate() {
            let (name, span, b) = match &item.kind {
                ItemKind::Let(l) => (l.name.name.to_string(), l.name.span, Binding::Let(i)),
                ItemKind::Fn(def) => (
                    def.name.name.to_string(),
                    def.name.span,
                    Binding::Fn(def.clone()),
                ),
                ItemKind::Import(import) => {
                    let ast::Import {
                        path,
                        path_span,
                        alias,
                    } = &**import;
                    let target = module_edges.get(import_idx).map(|(t, _)| *t);
                    if target.is_some_and(|_| module_edges[import_idx].1 == *path_span) {
                        import_idx += 1;
                    } else {
                        continue;
                    }
                    let Some(target) = target else { continue };
                    let (name, span) = match alias {
                        Some(a) => (a.name.to_string(), a.span),
                        None => (module_alias(path), *path_span),
                    };
                    (name, span, Binding::Module(target))
                }
                _ => continue,
            };
            if let Some(first) = spans.get(&name) {
                diags.push(
                    Diagnostic::error(
                        Code::DuplicateDeclaration,
                        span,
                        format!("`{name}` is defined twice in this file"),
                    )
                    .with_primary("defined again here")
                    .with_label(*first, "first defined here")
                    .with_help(
                        "rename one of them (for imports, use `import \"...\" as other_name`)",
                    ),
                );
                continue;
            }
            spans.insert(name.clone(), span);
            bindings.insert(name, b);
        }
        prog.modules[m].bindings = bindings;
    }

    let default_name = options
        .default_name
        .clone()
        .unwrap_or_else(|| file_stem(main));
    let mut ev = Eval::new(&prog);
    // Modules the main file does not reach come only from `--policy` files:
    // they may declare policies only.
    let mut policy_only = vec![true; prog.modules.len()];
    let mut stack: Vec<usize> = main_mod.into_iter().collect();
    while let Some(m) = stack.pop() {
        if std::mem::replace(&mut policy_only[m], false) {
            stack.extend(edges[m].iter().map(|(t, _)| *t));
        }
    }
    let inputs = lower::Inputs {
        default_name: &default_name,
        providers: &options.providers,
        enforced: &options.enforced,
        loader,
        policy_only: &policy_only,
    };
    let env = lower::lower(&mut ev, &inputs);
    diags.append(&mut ev.diags);

    diags.sort_by_key(|d| (d.primary.span.file, d.primary.span.start, d.code));
    diags.dedup();
    let diagnostics = Diagnostics {
        list: diags,
        sources,
    };
    let environment = (!diagnostics.has_errors()).then_some(env);
    Compilation {
        environment,
        diagnostics,
    }
}

/// Compiles a single source text (no imports other than `std:`). Handy for
/// tests and editors.
pub fn compile_str(key: &str, text: &str) -> Compilation {
    let mut loader = MemoryLoader::new();
    loader.add(key, text);
    compile(key, &loader, &CompileOptions::default())
}

fn module_alias(path: &str) -> String {
    let stem = file_stem(path.trim_start_matches("std:"));
    stem.replace(['.', ' '], "_")
}

fn file_stem(path: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or(path);
    base.strip_suffix(".glint").unwrap_or(base).to_owned()
}

/// The directory imports of a root file must stay inside: the environment
/// root for keys relative to it, the file's own directory for an absolute
/// key (a policy file outside the environment).
fn root_of(key: &str) -> String {
    if key.starts_with('/') {
        match key.rfind('/') {
            Some(0) | None => "/".to_owned(),
            Some(i) => key[..i].to_owned(),
        }
    } else {
        ".".to_owned()
    }
}

/// Why an import may not be loaded, if it may not: it is absolute, climbs
/// out of its root, or does not name a `.glint` file. Nothing is read.
fn refuse_import(path: &str, key: &str, root: &str, span: Span) -> Option<Diagnostic> {
    let shown_root = if root == "." {
        "the environment root (the main file's directory)".to_owned()
    } else {
        format!("`{root}`, the directory of the policy file that imports it")
    };
    if path.starts_with('/') || !source::within(key, root) {
        let why = if path.starts_with('/') {
            "an absolute path"
        } else {
            "it climbs out of the root with `..`"
        };
        return Some(
            Diagnostic::error(
                Code::ImportOutsideRoot,
                span,
                format!("cannot import `{path}`: it is outside {shown_root}"),
            )
            .with_primary(format!("refused: {why}; the file was not read"))
            .with_help(
                "imports are relative paths to `.glint` files inside the environment's directory; move the file there",
            ),
        );
    }
    // As written, too: `a.glint/.` names a directory entry of a file, not
    // the file, even though it normalizes to `a.glint`.
    if !key.ends_with(".glint") || !path.ends_with(".glint") {
        return Some(
            Diagnostic::error(
                Code::ImportNotGlint,
                span,
                format!("cannot import `{path}`: only `.glint` files can be imported"),
            )
            .with_primary("not a `.glint` file; it was not read")
            .with_help("import Glint sources (`lib/templates.glint`) or the standard library (`std:policies`)"),
        );
    }
    None
}

fn load_module(
    key: &str,
    from: Option<Span>,
    loader: &dyn Loader,
    sources: &mut SourceMap,
    prog: &mut Program,
    diags: &mut Vec<Diagnostic>,
) -> Option<usize> {
    let loaded = if let Some(name) = key.strip_prefix("std:") {
        match STD_MODULES.iter().find(|(k, _)| *k == key) {
            Some((_, text)) => Ok(LoadedFile {
                display: format!("<std>/{name}.glint"),
                bytes: text.as_bytes().to_vec(),
            }),
            None => Err(LoadError::new(format!(
                "no standard module `{key}` (available: {})",
                STD_MODULES
                    .iter()
                    .map(|(k, _)| *k)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    } else {
        loader.load(key)
    };
    let loaded = match loaded {
        Ok(l) => l,
        Err(e) => {
            let span = from.unwrap_or_default();
            let mut d = if e.outside_root {
                Diagnostic::error(
                    Code::ImportOutsideRoot,
                    span,
                    format!("cannot load `{key}`: {}", e.reason),
                )
                .with_primary("refused: it resolves outside the root; the file was not read")
                .with_help("a symlink may not lead out of the environment's directory; import the file from inside it")
            } else {
                Diagnostic::error(
                    Code::ImportNotFound,
                    span,
                    format!("cannot load `{key}`: {}", e.reason),
                )
                .with_primary("imported here")
                .with_help("import paths are relative to the importing file's directory")
            };
            if from.is_none() {
                // A root file: no span to show.
                d.primary.span = Span::new(FileId(u32::MAX), 0, 0);
            }
            diags.push(d);
            return None;
        }
    };
    let too_large = loaded.bytes.len() > MAX_FILE;
    let (text, bad_utf8) = if too_large {
        (String::new(), None)
    } else {
        match String::from_utf8(loaded.bytes) {
            Ok(t) => (t, None),
            Err(e) => {
                let at = e.utf8_error().valid_up_to();
                let bytes = e.into_bytes();
                (String::from_utf8_lossy(&bytes[..at]).into_owned(), Some(at))
            }
        }
    };
    // One copy of the text, shared by the diagnostics and the compiler.
    let text: std::sync::Arc<str> = std::sync::Arc::from(text);
    let file = sources.add(key.to_owned(), loaded.display, text.clone());
    prog.file_keys.push(key.to_owned());
    prog.file_texts.push(text.clone());
    let mut file_diags = Vec::new();
    let ast = if too_large {
        let d = Diagnostic::error(
            Code::TooLarge,
            Span::new(file, 0, 0),
            "source file too large",
        )
        .with_primary(format!("larger than {} MiB", MAX_FILE >> 20))
        .with_help("split the environment into several files with `import`");
        file_diags.push(d);
        ast::File::default()
    } else if let Some(at) = bad_utf8 {
        file_diags.push(
            Diagnostic::error(
                Code::InvalidUtf8,
                Span::new(file, at, at),
                "source file is not valid UTF-8",
            )
            .with_primary("invalid byte sequence starts here")
            .with_help("save the file as UTF-8"),
        );
        ast::File::default()
    } else {
        parser::parse_file_lazy(&text, file, &mut file_diags)
    };
    diags.append(&mut file_diags);
    prog.modules.push(Module {
        file,
        key: key.to_owned(),
        ast: Rc::new(ast),
        bindings: FxMap::default(),
    });
    Some(prog.modules.len() - 1)
}

fn import_cycles(prog: &Program, edges: &[Vec<(usize, Span)>], diags: &mut Vec<Diagnostic>) {
    // Iterative DFS with colours; report each back edge once.
    let n = prog.modules.len();
    let mut color = vec![0u8; n];
    for root in 0..n {
        if color[root] != 0 {
            continue;
        }
        let mut stack: Vec<(usize, usize)> = vec![(root, 0)];
        let mut path: Vec<usize> = vec![root];
        color[root] = 1;
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            if let Some(&(target, span)) = edges.get(node).and_then(|e| e.get(*next)) {
                *next += 1;
                match color[target] {
                    0 => {
                        color[target] = 1;
                        stack.push((target, 0));
                        path.push(target);
                    }
                    1 => {
                        let pos = path.iter().position(|p| *p == target).unwrap_or(0);
                        let cycle: Vec<&str> = path[pos..]
                            .iter()
                            .chain(std::iter::once(&target))
                            .map(|m| prog.modules[*m].key.as_str())
                            .collect();
                        let mut d = Diagnostic::error(
                            Code::ImportCycle,
                            span,
                            format!("import cycle: {}", cycle.join(" -> ")),
                        )
                        .with_primary(format!(
                            "`{}` imports `{}`, which leads back here",
                            prog.modules[node].key, prog.modules[target].key
                        ));
                        // Label the other imports of the cycle.
                        for w in path[pos..].windows(2) {
                            if let Some((_, s)) = edges[w[0]].iter().find(|(t, _)| *t == w[1]) {
                                d = d.with_label(*s, "part of the cycle");
                            }
                        }
                        diags.push(d.with_help(
                            "move what both files need into a third file that both import",
                        ));
                    }
                    _ => {}
                }
            } else {
                color[node] = 2;
                stack.pop();
                path.pop();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Building and reading a record is linear: a record of 20,000 keys
    /// (spread, merged, read by key, compared) costs a few linear lookups
    /// in small records, not one scan per key (200 million comparisons
    /// before records were indexed).
    #[test]
    fn large_records_are_built_and_read_without_scanning() {
        let n = 20_000;
        let mut src = String::from("let big = {\n");
        for i in 0..n {
            src.push_str(&format!("  k{i} = \"v{i}\"\n"));
        }
        src.push_str("}\nlet copy = { ...big, k7 = \"x\" }\nlet merged = big + copy\n");
        src.push_str(&format!(
            "let same = copy == merged\nlet last = merged[\"k{}\"]\n",
            n - 1
        ));
        src.push_str("image app {\n  entrypoint = [\"/app\"]\n  env = merged\n}\n");
        let mut loader = MemoryLoader::new();
        loader.add("main.glint", src);
        value::PROBES.with(|p| p.set(0));
        // On this thread, so that the thread-local counter sees the work.
        let c = compile_here("main.glint", &loader, &CompileOptions::default());
        let probes = value::PROBES.with(|p| p.get());
        assert!(!c.has_errors(), "{}", c.diagnostics.render_human(false));
        let env = c
            .environment
            .unwrap_or_else(|| Environment::empty(lower::sanitize_name("x")));
        assert_eq!(env.images.values().next().map(|i| i.env.len()), Some(n));
        assert!(
            probes < 10 * n as u64,
            "{probes} field comparisons for {n} keys"
        );
    }
}
