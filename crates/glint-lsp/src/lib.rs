//! The Glint language server: `glint lsp` speaks the Language Server
//! Protocol on stdin and stdout.
//!
//! Layout:
//! - [`server`]: the main loop — one thread reads every message in
//!   order, so document edits are applied in the order they were sent
//!   (nothing runs concurrently with an edit), and requests see every edit
//!   sent before them; compilations are debounced ([`debounce`]);
//! - [`workspace`]: which environment a file belongs to (its main file is
//!   the file itself or a `.glint` file in a parent directory that imports
//!   it), compiling it with the open documents' unsaved text over the
//!   files on disk, and the [`glint_lang::ide::Project`] index of its files;
//! - [`diagnostics`]: compiler diagnostics as LSP diagnostics (codes,
//!   ranges, related places, help), and `glint explain` text;
//! - [`features`]: completion, hover, go to definition, references,
//!   rename, formatting, document symbols, semantic tokens, code actions;
//! - [`text`], [`uri`]: positions in the negotiated encoding, edits, URIs.
//!
//! The language itself stays in `glint-lang` (this crate only translates):
//! field names, types, defaults and docs come from its schema tables, the
//! formatter is `glint_lang::format`, names and references come from
//! `glint_lang::ide`. Files are read only through the loader the [`Host`]
//! gives (the CLI's, which keeps every import inside the environment's
//! root), so the server never reads a file the compiler would refuse.
//!
//! The server is a library so that its tests and benchmark build without
//! the rest of the CLI; the `glint` binary supplies the [`Host`].

// `lsp_types::Uri` caches parsed parts inside; its `Hash`, `Eq` and `Ord`
// use only its text, so it is a stable map key.
#![allow(clippy::mutable_key_type)]

pub mod debounce;
pub mod diagnostics;
pub mod features;
pub mod server;
pub mod text;
pub mod uri;
pub mod workspace;

use glint_lang::{CompileOptions, LoadError, Loader};
use std::path::{Path, PathBuf};

/// What the program embedding the server supplies: how to compile an
/// environment on this machine.
pub trait Host {
    /// Prepares compilations of the environment whose main file is `main`
    /// (an absolute path) with extra policy files: the loader (rooted at
    /// `main`'s directory), the main file's loader key, and the options
    /// (the capabilities this build enforces, the providers it has), the
    /// same as `glint check` uses.
    fn prepare(&self, main: &Path, policies: &[PathBuf]) -> Result<Prepared, String>;
}

/// A prepared environment (see [`Host::prepare`]).
pub struct Prepared {
    /// Reads files inside the environment's root.
    pub loader: Box<dyn RootedLoader>,
    /// The main file's key.
    pub main_key: String,
    /// Compile options.
    pub options: CompileOptions,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("main_key", &self.main_key)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// A loader that can say, reading nothing, whether it would load a file.
pub trait RootedLoader: Loader + Send {
    /// Whether the file with this key may be loaded: `Err` if it resolves
    /// outside its root (a symlink out of the environment, say). The
    /// server asks before it uses the unsaved text of an open document in
    /// place of the file.
    fn admits(&self, key: &str) -> Result<(), LoadError>;
}

/// Why the server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The client broke the protocol (or went away during the handshake).
    #[error("language server protocol error")]
    Protocol(#[source] lsp_server::ProtocolError),
    /// The stdio threads failed.
    #[error("cannot talk to the client over stdio")]
    Io(#[source] std::io::Error),
    /// The server thread could not be started or panicked.
    #[error("the server thread failed: {0}")]
    Thread(String),
}

/// Stack size of the server thread: the parser and the editor features
/// recurse (with depth limits); this is as much as the compiler's own.
const STACK_SIZE: usize = 64 << 20;

/// Runs the server on stdin and stdout until the client says `exit` (or
/// closes stdin).
pub fn serve_stdio(host: Box<dyn Host + Send>) -> Result<(), ServerError> {
    let (conn, io) = lsp_server::Connection::stdio();
    let handle = std::thread::Builder::new()
        .name("glint-lsp".into())
        .stack_size(STACK_SIZE)
        .spawn(move || server::run(&conn, host.as_ref()))
        .map_err(|e| ServerError::Thread(e.to_string()))?;
    let result = handle
        .join()
        .map_err(|_| ServerError::Thread("it panicked".into()))?;
    result?;
    io.join().map_err(ServerError::Io)
}
