//! Open documents, the environments they belong to, and compiling them.
//!
//! An environment is named by its main file. A document belongs to the
//! first environment already known whose last compilation loaded it;
//! otherwise to a `.glint` file in one of its parent directories (up to
//! the workspace folder) whose compilation loads it (`main.glint` for
//! `lib/templates.glint`); otherwise it is the main file of its own.
//!
//! An environment is compiled through the [`crate::Host`]'s loader with
//! the open documents' unsaved text in place of the files on disk (an
//! [`Overlay`]); the loader is asked first whether it would load the file
//! at all (`RootedLoader::admits`), so unsaved text never lets an import
//! escape the root either. Its files are indexed ([`Index`]) from the same
//! texts, again when a document changes and a feature needs the index.

use crate::text::{Encoding, LineIndex};
use crate::{Host, Prepared, RootedLoader};
use glint_lang::ide::{FileIndex, Project};
use glint_lang::value::Kind;
use glint_lang::{Compilation, Diagnostics, FileId, LoadError, LoadedFile, Loader};
use lsp_types::Uri;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

/// How many `.glint` files of parent directories are compiled at most to
/// find the main file of a document.
const MAX_CANDIDATES: usize = 32;

/// An open document.
#[derive(Debug, Clone)]
pub struct Doc {
    /// Its path.
    pub path: PathBuf,
    /// Its current text.
    pub text: String,
    /// The client's version.
    pub version: i32,
    /// Its line table.
    pub lines: LineIndex,
}

/// Where a file of an environment is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    /// Its loader key (`lib/templates.glint`, `std:policies`).
    pub key: String,
    /// Its path (`None` for the standard library).
    pub path: Option<PathBuf>,
    /// Its URI (`None` for the standard library).
    pub uri: Option<Uri>,
}

/// One file as it was compiled or indexed.
#[derive(Debug, Clone)]
pub struct File {
    /// Where it is.
    pub info: FileInfo,
    /// The text.
    pub text: String,
    /// Its line table.
    pub lines: LineIndex,
}

/// The result of compiling an environment.
#[derive(Debug)]
pub struct Analysis {
    /// The files compiled, by `FileId` (index).
    pub files: Vec<File>,
    /// The diagnostics.
    pub diagnostics: Diagnostics,
    /// Declared names of the compiled environment (when it compiled),
    /// templates expanded.
    pub names: BTreeMap<Kind, Vec<String>>,
    /// How long the compilation took.
    pub took: Duration,
}

impl Analysis {
    /// The file with this path.
    pub fn file_of(&self, path: &Path) -> Option<&File> {
        self.files
            .iter()
            .find(|f| f.info.path.as_deref() == Some(path))
    }
}

/// The index of an environment's files, as they are now.
#[derive(Debug)]
pub struct Index {
    /// Definitions and references.
    pub project: Project,
    /// The files, by `FileId` (index).
    pub files: Vec<File>,
    stamp: u64,
}

impl Index {
    /// The file with this path.
    pub fn file_id(&self, path: &Path) -> Option<FileId> {
        self.files
            .iter()
            .position(|f| f.info.path.as_deref() == Some(path))
            .map(|i| FileId(u32::try_from(i).unwrap_or(u32::MAX)))
    }

    /// A file by id.
    pub fn file(&self, id: FileId) -> Option<&File> {
        self.files.get(id.0 as usize)
    }
}

/// One environment.
pub struct Env {
    /// Its main file.
    pub main: PathBuf,
    /// Its root (the main file's directory).
    pub root: PathBuf,
    prepared: Prepared,
    /// The last compilation.
    pub analysis: Option<Analysis>,
    index: Option<Index>,
    /// The edit stamp of the last change to one of its documents.
    changed: u64,
    /// The diagnostics last published by this environment, per URI.
    pub published: BTreeMap<Uri, Vec<lsp_types::Diagnostic>>,
}

impl std::fmt::Debug for Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Env")
            .field("main", &self.main)
            .finish_non_exhaustive()
    }
}

impl Env {
    /// The loader key of a path in this environment (`None` if it is not
    /// under the root).
    pub fn key_of(&self, path: &Path) -> Option<String> {
        key_of(&self.root, path)
    }

    /// Where the file with this key is.
    pub fn info(&self, key: &str) -> FileInfo {
        let path = path_of(&self.root, key);
        FileInfo {
            key: key.to_owned(),
            uri: path.as_deref().and_then(crate::uri::from_path),
            path,
        }
    }
}

/// The key of `path` relative to `root`, `/`-separated.
pub fn key_of(root: &Path, path: &Path) -> Option<String> {
    let rel = path.strip_prefix(root).ok()?;
    let mut parts = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(s) => parts.push(s.to_str()?.to_owned()),
            _ => return None,
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// The path of the file with loader key `key` under `root`.
pub fn path_of(root: &Path, key: &str) -> Option<PathBuf> {
    if key.starts_with("std:") {
        return None;
    }
    if key.starts_with('/') {
        return Some(PathBuf::from(key));
    }
    let mut p = root.to_path_buf();
    for part in key.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                p.pop();
            }
            other => p.push(other),
        }
    }
    Some(p)
}

/// The environment's loader with open documents' text in front.
pub struct Overlay<'a> {
    disk: &'a dyn RootedLoader,
    open: HashMap<String, &'a str>,
}

impl Loader for Overlay<'_> {
    fn load(&self, key: &str) -> Result<LoadedFile, LoadError> {
        match self.open.get(key) {
            Some(text) => {
                // Refused exactly when the file itself would be.
                self.disk.admits(key)?;
                Ok(LoadedFile {
                    display: key.to_owned(),
                    bytes: text.as_bytes().to_vec(),
                })
            }
            None => self.disk.load(key),
        }
    }

    fn check_within(&self, path: &str, within: &str) -> Result<(), LoadError> {
        self.disk.check_within(path, within)
    }
}

/// Every open document and every environment.
pub struct Workspace<'h> {
    host: &'h dyn Host,
    /// The workspace folder (where the search for a main file stops).
    pub folder: Option<PathBuf>,
    /// Policy files given in the initialization options (absolute).
    pub policies: Vec<PathBuf>,
    /// How the client counts characters.
    pub encoding: Encoding,
    /// Open documents.
    pub docs: HashMap<Uri, Doc>,
    /// Environments by main file.
    pub envs: BTreeMap<PathBuf, Env>,
    /// Which environment each open document belongs to.
    pub doc_env: HashMap<Uri, PathBuf>,
    stamp: u64,
}

impl<'h> Workspace<'h> {
    /// An empty workspace.
    pub fn new(
        host: &'h dyn Host,
        folder: Option<PathBuf>,
        policies: Vec<PathBuf>,
    ) -> Workspace<'h> {
        Workspace {
            host,
            folder,
            policies,
            encoding: Encoding::Utf16,
            docs: HashMap::new(),
            envs: BTreeMap::new(),
            doc_env: HashMap::new(),
            stamp: 0,
        }
    }

    /// Opens a document; returns its environment (compiled if it is new),
    /// or the reason it has none.
    pub fn open(&mut self, uri: Uri, text: String, version: i32) -> Result<PathBuf, String> {
        let path = crate::uri::to_path(&uri)
            .ok_or_else(|| format!("`{}` is not a local file", uri.as_str()))?;
        self.stamp += 1;
        self.docs.insert(
            uri.clone(),
            Doc {
                path: path.clone(),
                lines: LineIndex::new(&text),
                text,
                version,
            },
        );
        let main = self.find_main(&path)?;
        if let Some(env) = self.envs.get_mut(&main) {
            env.changed = self.stamp;
        }
        self.doc_env.insert(uri, main.clone());
        Ok(main)
    }

    /// Applies a change to a document; returns its environment.
    pub fn change(
        &mut self,
        uri: &Uri,
        changes: &[lsp_types::TextDocumentContentChangeEvent],
        version: i32,
    ) -> Option<PathBuf> {
        let enc = self.encoding;
        let doc = self.docs.get_mut(uri)?;
        crate::text::apply_changes(&mut doc.text, changes, enc);
        doc.lines = LineIndex::new(&doc.text);
        doc.version = version;
        self.stamp += 1;
        let main = self.doc_env.get(uri)?.clone();
        if let Some(env) = self.envs.get_mut(&main) {
            env.changed = self.stamp;
        }
        Some(main)
    }

    /// Closes a document. Returns its environment and whether the
    /// environment still has open documents (if not, it is forgotten and
    /// the URIs it published diagnostics for are returned to be cleared).
    pub fn close(&mut self, uri: &Uri) -> Option<(PathBuf, Option<BTreeSet<Uri>>)> {
        self.docs.remove(uri);
        self.stamp += 1;
        let main = self.doc_env.remove(uri)?;
        let still_open = self.doc_env.values().any(|m| *m == main);
        if still_open {
            if let Some(env) = self.envs.get_mut(&main) {
                env.changed = self.stamp;
            }
            return Some((main, None));
        }
        let env = self.envs.remove(&main);
        Some((main, env.map(|e| e.published.into_keys().collect())))
    }

    /// The environment of a document.
    pub fn env_of(&self, uri: &Uri) -> Option<&PathBuf> {
        self.doc_env.get(uri)
    }

    /// Prepares an environment (not compiled yet).
    fn prepare(&self, main: &Path) -> Result<Env, String> {
        let prepared = self.host.prepare(main, &self.policies)?;
        let root = main.parent().map(Path::to_path_buf).unwrap_or_default();
        Ok(Env {
            main: main.to_path_buf(),
            root,
            prepared,
            analysis: None,
            index: None,
            changed: self.stamp,
            published: BTreeMap::new(),
        })
    }

    /// The main file of the environment `path` belongs to; compiles the
    /// environments it tries.
    fn find_main(&mut self, path: &Path) -> Result<PathBuf, String> {
        for env in self.envs.values() {
            if env
                .analysis
                .as_ref()
                .is_some_and(|a| a.file_of(path).is_some())
            {
                return Ok(env.main.clone());
            }
        }
        let stop = match &self.folder {
            Some(f) if path.starts_with(f) => f.clone(),
            _ => path.parent().map(Path::to_path_buf).unwrap_or_default(),
        };
        let mut tried = 0;
        for dir in path.ancestors().skip(1) {
            if !dir.starts_with(&stop) || tried >= MAX_CANDIDATES {
                break;
            }
            let mut candidates: Vec<PathBuf> = std::fs::read_dir(dir)
                .map(|rd| {
                    rd.filter_map(Result::ok)
                        .map(|e| e.path())
                        .filter(|p| {
                            p.extension().is_some_and(|x| x == "glint") && p != path && p.is_file()
                        })
                        .collect()
                })
                .unwrap_or_default();
            candidates.sort();
            for c in candidates {
                if tried >= MAX_CANDIDATES {
                    break;
                }
                if self.envs.contains_key(&c) {
                    continue;
                }
                tried += 1;
                let Ok(mut env) = self.prepare(&c) else {
                    continue;
                };
                let analysis = self.compile(&env);
                if analysis.file_of(path).is_some() {
                    env.analysis = Some(analysis);
                    self.envs.insert(c.clone(), env);
                    return Ok(c);
                }
            }
            if dir == stop {
                break;
            }
        }
        if !self.envs.contains_key(path) {
            let env = self.prepare(path)?;
            self.envs.insert(path.to_path_buf(), env);
        }
        Ok(path.to_path_buf())
    }

    /// The URI the client uses for an open file (it may encode a path
    /// differently from [`crate::uri::from_path`]).
    fn with_client_uri(&self, mut info: FileInfo) -> FileInfo {
        if let Some(path) = &info.path
            && let Some((uri, _)) = self.docs.iter().find(|(_, d)| d.path == *path)
        {
            info.uri = Some(uri.clone());
        }
        info
    }

    /// Compiles `env` with the open documents over the disk.
    fn compile(&self, env: &Env) -> Analysis {
        let mut open = HashMap::new();
        for doc in self.docs.values() {
            if let Some(key) = env.key_of(&doc.path) {
                open.insert(key, doc.text.as_str());
            }
        }
        let overlay = Overlay {
            disk: env.prepared.loader.as_ref(),
            open,
        };
        let started = Instant::now();
        let c: Compilation =
            glint_lang::compile(&env.prepared.main_key, &overlay, &env.prepared.options);
        let took = started.elapsed();
        let files = c
            .diagnostics
            .sources
            .files()
            .map(|(_, f)| File {
                info: self.with_client_uri(env.info(&f.key)),
                lines: LineIndex::new(&f.text),
                text: f.text.to_string(),
            })
            .collect();
        let mut names = BTreeMap::new();
        if let Some(e) = &c.environment {
            fn strs<K: std::fmt::Display, V>(m: &BTreeMap<K, V>) -> Vec<String> {
                m.keys().map(ToString::to_string).collect()
            }
            names.insert(Kind::Image, strs(&e.images));
            names.insert(Kind::Service, strs(&e.services));
            names.insert(Kind::Endpoint, strs(&e.endpoints));
            names.insert(Kind::Rule, strs(&e.rules));
            names.insert(Kind::Variable, strs(&e.variables));
            names.insert(Kind::Volume, strs(&e.volumes));
            names.insert(Kind::Notify, strs(&e.notify));
        }
        Analysis {
            files,
            diagnostics: c.diagnostics,
            names,
            took,
        }
    }

    /// Compiles an environment now and keeps the result.
    pub fn analyse(&mut self, main: &Path) -> Option<&Analysis> {
        let env = self.envs.get(main)?;
        let analysis = self.compile(env);
        let env = self.envs.get_mut(main)?;
        env.analysis = Some(analysis);
        env.analysis.as_ref()
    }

    /// The index of an environment's files as they are now (rebuilt if a
    /// document changed since it was built). The files are those of the
    /// last compilation, with the open documents' current text.
    pub fn index(&mut self, main: &Path) -> Option<&Index> {
        let fresh = self
            .envs
            .get(main)
            .is_some_and(|e| e.index.as_ref().is_some_and(|i| i.stamp >= e.changed));
        if !fresh {
            if self.envs.get(main)?.analysis.is_none() {
                self.analyse(main);
            }
            let env = self.envs.get(main)?;
            let analysis = env.analysis.as_ref()?;
            let files: Vec<File> = analysis
                .files
                .iter()
                .map(|f| {
                    let doc = f.info.uri.as_ref().and_then(|u| self.docs.get(u));
                    match doc {
                        Some(d) => File {
                            info: f.info.clone(),
                            text: d.text.clone(),
                            lines: d.lines.clone(),
                        },
                        None => f.clone(),
                    }
                })
                .collect();
            // Files whose text did not change keep their index.
            let mut old: HashMap<(u32, String), (String, FileIndex)> = HashMap::new();
            if let Some(prev) = self.envs.get_mut(main).and_then(|e| e.index.take()) {
                for (f, ix) in prev.files.into_iter().zip(prev.project.files) {
                    old.insert((ix.file.0, f.info.key), (f.text, ix));
                }
            }
            let project = Project::new(
                files
                    .iter()
                    .enumerate()
                    .map(|(i, f)| {
                        let id = FileId(u32::try_from(i).unwrap_or(u32::MAX));
                        match old.remove(&(id.0, f.info.key.clone())) {
                            Some((text, ix)) if text == f.text => ix,
                            _ => FileIndex::build(&f.info.key, &f.text, id),
                        }
                    })
                    .collect(),
            );
            let stamp = self.stamp;
            let env = self.envs.get_mut(main)?;
            env.index = Some(Index {
                project,
                files,
                stamp,
            });
        }
        self.envs.get(main)?.index.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_paths_convert_under_the_root() {
        let root = Path::new("/w/shop");
        assert_eq!(
            key_of(root, Path::new("/w/shop/lib/t.glint")).as_deref(),
            Some("lib/t.glint")
        );
        assert_eq!(key_of(root, Path::new("/w/other.glint")), None);
        assert_eq!(key_of(root, Path::new("/w/shop")), None);
        assert_eq!(
            path_of(root, "lib/t.glint"),
            Some(PathBuf::from("/w/shop/lib/t.glint"))
        );
        assert_eq!(
            path_of(root, "/etc/org.glint"),
            Some(PathBuf::from("/etc/org.glint"))
        );
        assert_eq!(path_of(root, "std:policies"), None);
    }
}
