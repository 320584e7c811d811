//! The main loop.
//!
//! One thread takes the client's messages in the order they were sent and
//! handles each to the end before the next: an edit is applied before any
//! later request is answered, and no two edits race (the protocol's
//! ordering, kept by construction rather than by locks). Compilations are
//! the slow part; they run between messages when the [`Debouncer`] says an
//! environment is due: [`DEFAULT_DEBOUNCE`] after the last edit (at most
//! [`MAX_WAIT`] after the first), at once after an open or a save. Requests
//! do not wait for a compilation: they read the index, which is rebuilt
//! from the current texts when a document changed (parsing only).
//!
//! Initialization options (all optional):
//! `{ "policies": ["org.glint"], "debounceMs": 150 }` — policy files
//! checked with every environment, as `glint check --policy` does
//! (relative to the workspace folder), and the debounce delay.

use crate::debounce::Debouncer;
use crate::diagnostics::{EXPLAIN_COMMAND, to_lsp};
use crate::features::{self, place};
use crate::text::Encoding;
use crate::workspace::Workspace;
use crate::{Host, ServerError};
use crossbeam_channel::RecvTimeoutError;
use lsp_server::{Connection, ErrorCode, Message, Notification, Request, Response};
use lsp_types::notification::Notification as _;
use lsp_types::request::Request as _;
use lsp_types::{
    CodeActionProviderCapability, CompletionOptions, ExecuteCommandOptions,
    HoverProviderCapability, InitializeParams, MessageType, OneOf, PositionEncodingKind,
    PublishDiagnosticsParams, RenameOptions, SemanticTokensFullOptions, SemanticTokensOptions,
    SemanticTokensServerCapabilities, ServerCapabilities, ShowMessageParams,
    TextDocumentSyncCapability, TextDocumentSyncKind,
};
use lsp_types::{notification as n, request as r};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Wait after the last edit before compiling.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(150);
/// Longest wait after the first edit of a burst.
pub const MAX_WAIT: Duration = Duration::from_millis(1000);

/// What the client can do and asked for.
#[derive(Debug, Clone)]
struct Settings {
    snippets: bool,
}

struct Server<'c, 'h> {
    conn: &'c Connection,
    ws: Workspace<'h>,
    debounce: Debouncer<PathBuf>,
    settings: Settings,
}

/// A failed request: a code and a message.
type Failure = (i32, String);

/// Runs the server on a connection until `exit`.
pub fn run(conn: &Connection, host: &dyn Host) -> Result<(), ServerError> {
    let (id, params) = conn.initialize_start().map_err(ServerError::Protocol)?;
    let init: InitializeParams = serde_json::from_value(params).unwrap_or_default();
    let utf8 = init
        .capabilities
        .general
        .as_ref()
        .and_then(|g| g.position_encodings.as_ref())
        .is_some_and(|e| e.contains(&PositionEncodingKind::UTF8));
    let encoding = if utf8 {
        Encoding::Utf8
    } else {
        Encoding::Utf16
    };
    let snippets = init
        .capabilities
        .text_document
        .as_ref()
        .and_then(|t| t.completion.as_ref())
        .and_then(|c| c.completion_item.as_ref())
        .and_then(|i| i.snippet_support)
        .unwrap_or(false);
    #[allow(deprecated)] // `root_uri` is what older clients send
    let folder = init
        .workspace_folders
        .as_ref()
        .and_then(|f| f.first())
        .map(|f| f.uri.clone())
        .or(init.root_uri.clone())
        .and_then(|u| crate::uri::to_path(&u));
    let opts = init.initialization_options.unwrap_or(Value::Null);
    let policies = opts["policies"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(|p| match &folder {
                    Some(f) if !Path::new(p).is_absolute() => f.join(p),
                    _ => PathBuf::from(p),
                })
                .collect()
        })
        .unwrap_or_default();
    let delay = opts["debounceMs"]
        .as_u64()
        .map(Duration::from_millis)
        .unwrap_or(DEFAULT_DEBOUNCE);
    let result = serde_json::json!({
        "capabilities": capabilities(encoding),
        "serverInfo": { "name": "glint", "version": env!("CARGO_PKG_VERSION") },
    });
    conn.initialize_finish(id, result)
        .map_err(ServerError::Protocol)?;
    let mut ws = Workspace::new(host, folder, policies);
    ws.encoding = encoding;
    let mut server = Server {
        conn,
        ws,
        debounce: Debouncer::new(delay, MAX_WAIT),
        settings: Settings { snippets },
    };
    server.main_loop()
}

/// What the server offers.
fn capabilities(enc: Encoding) -> ServerCapabilities {
    ServerCapabilities {
        position_encoding: Some(match enc {
            Encoding::Utf8 => PositionEncodingKind::UTF8,
            Encoding::Utf16 => PositionEncodingKind::UTF16,
        }),
        text_document_sync: Some(TextDocumentSyncCapability::Kind(
            TextDocumentSyncKind::INCREMENTAL,
        )),
        completion_provider: Some(CompletionOptions {
            trigger_characters: Some(vec![".".into()]),
            ..CompletionOptions::default()
        }),
        hover_provider: Some(HoverProviderCapability::Simple(true)),
        definition_provider: Some(OneOf::Left(true)),
        references_provider: Some(OneOf::Left(true)),
        rename_provider: Some(OneOf::Right(RenameOptions {
            prepare_provider: Some(true),
            work_done_progress_options: Default::default(),
        })),
        document_formatting_provider: Some(OneOf::Left(true)),
        document_symbol_provider: Some(OneOf::Left(true)),
        semantic_tokens_provider: Some(SemanticTokensServerCapabilities::SemanticTokensOptions(
            SemanticTokensOptions {
                legend: features::semantic::legend(),
                full: Some(SemanticTokensFullOptions::Bool(true)),
                range: None,
                work_done_progress_options: Default::default(),
            },
        )),
        code_action_provider: Some(CodeActionProviderCapability::Simple(true)),
        execute_command_provider: Some(ExecuteCommandOptions {
            commands: vec![EXPLAIN_COMMAND.into()],
            work_done_progress_options: Default::default(),
        }),
        ..ServerCapabilities::default()
    }
}

fn parse<P: DeserializeOwned>(v: Value) -> Result<P, Failure> {
    serde_json::from_value(v).map_err(|e| (ErrorCode::InvalidParams as i32, e.to_string()))
}

fn json<T: serde::Serialize>(t: T) -> Result<Value, Failure> {
    serde_json::to_value(t).map_err(|e| (ErrorCode::InternalError as i32, e.to_string()))
}

impl Server<'_, '_> {
    fn main_loop(&mut self) -> Result<(), ServerError> {
        loop {
            let now = Instant::now();
            let msg = match self.debounce.next_deadline(now) {
                Some(due) => match self
                    .conn
                    .receiver
                    .recv_timeout(due.saturating_duration_since(now))
                {
                    Ok(m) => Some(m),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => return Ok(()),
                },
                None => match self.conn.receiver.recv() {
                    Ok(m) => Some(m),
                    Err(_) => return Ok(()),
                },
            };
            match msg {
                Some(Message::Request(req)) => {
                    if self
                        .conn
                        .handle_shutdown(&req)
                        .map_err(ServerError::Protocol)?
                    {
                        return Ok(());
                    }
                    self.request(req);
                }
                Some(Message::Notification(note)) => {
                    if note.method == n::Exit::METHOD {
                        return Ok(());
                    }
                    self.notification(note);
                }
                Some(Message::Response(_)) | None => {}
            }
            for main in self.debounce.take_due(Instant::now()) {
                self.publish(&main);
            }
        }
    }

    fn send(&self, m: Message) {
        // The writer thread ends only when the client is gone; then the
        // reader ends too and the loop stops.
        let _ = self.conn.sender.send(m);
    }

    fn notify<N: n::Notification>(&self, params: N::Params) {
        self.send(Message::Notification(Notification::new(
            N::METHOD.to_owned(),
            params,
        )));
    }

    fn log(&self, typ: MessageType, message: String) {
        self.notify::<n::LogMessage>(lsp_types::LogMessageParams { typ, message });
    }

    /// Compiles an environment and publishes its diagnostics (clearing
    /// those of files it no longer has).
    fn publish(&mut self, main: &Path) {
        let enc = self.ws.encoding;
        let main_uri = crate::uri::from_path(main);
        let Some(analysis) = self.ws.analyse(main) else {
            return;
        };
        let took = analysis.took;
        let now = to_lsp(analysis, main_uri.as_ref(), enc);
        let Some(env) = self.ws.envs.get_mut(main) else {
            return;
        };
        let old = std::mem::replace(&mut env.published, now.clone());
        for uri in old.keys().filter(|u| !now.contains_key(*u)) {
            self.notify::<n::PublishDiagnostics>(PublishDiagnosticsParams {
                uri: uri.clone(),
                diagnostics: Vec::new(),
                version: None,
            });
        }
        for (uri, diagnostics) in now {
            let version = self.ws.docs.get(&uri).map(|d| d.version);
            self.notify::<n::PublishDiagnostics>(PublishDiagnosticsParams {
                uri,
                diagnostics,
                version,
            });
        }
        self.log(
            MessageType::LOG,
            format!("compiled {} in {} ms", main.display(), took.as_millis()),
        );
    }

    fn notification(&mut self, note: Notification) {
        match note.method.as_str() {
            n::DidOpenTextDocument::METHOD => {
                let Ok(p) = parse::<lsp_types::DidOpenTextDocumentParams>(note.params) else {
                    return;
                };
                let d = p.text_document;
                match self.ws.open(d.uri, d.text, d.version) {
                    Ok(main) => self.debounce.now(main),
                    Err(e) => self.log(MessageType::WARNING, e),
                }
            }
            n::DidChangeTextDocument::METHOD => {
                let Ok(p) = parse::<lsp_types::DidChangeTextDocumentParams>(note.params) else {
                    return;
                };
                let d = p.text_document;
                if let Some(main) = self.ws.change(&d.uri, &p.content_changes, d.version) {
                    self.debounce.touch(main, Instant::now());
                }
            }
            n::DidSaveTextDocument::METHOD => {
                let Ok(p) = parse::<lsp_types::DidSaveTextDocumentParams>(note.params) else {
                    return;
                };
                if let Some(main) = self.ws.env_of(&p.text_document.uri).cloned() {
                    self.debounce.now(main);
                }
            }
            n::DidCloseTextDocument::METHOD => {
                let Ok(p) = parse::<lsp_types::DidCloseTextDocumentParams>(note.params) else {
                    return;
                };
                match self.ws.close(&p.text_document.uri) {
                    Some((main, None)) => self.debounce.now(main),
                    Some((main, Some(published))) => {
                        self.debounce.cancel(&main);
                        for uri in published {
                            self.notify::<n::PublishDiagnostics>(PublishDiagnosticsParams {
                                uri,
                                diagnostics: Vec::new(),
                                version: None,
                            });
                        }
                    }
                    None => {}
                }
            }
            _ => {}
        }
    }

    fn request(&mut self, req: Request) {
        let id = req.id.clone();
        let result = self.answer(req);
        let resp = match result {
            Ok(v) => Response::new_ok(id, v),
            Err((code, message)) => Response::new_err(id, code, message),
        };
        self.send(Message::Response(resp));
    }

    fn answer(&mut self, req: Request) -> Result<Value, Failure> {
        let enc = self.ws.encoding;
        let failed = |m: String| (ErrorCode::RequestFailed as i32, m);
        match req.method.as_str() {
            r::Completion::METHOD => {
                let p: lsp_types::CompletionParams = parse(req.params)?;
                let tp = p.text_document_position;
                let items = place(&self.ws, &tp.text_document.uri, tp.position)
                    .map(|at| {
                        features::completion::complete(&mut self.ws, &at, self.settings.snippets)
                    })
                    .unwrap_or_default();
                json(lsp_types::CompletionResponse::Array(items))
            }
            r::HoverRequest::METHOD => {
                let p: lsp_types::HoverParams = parse(req.params)?;
                let tp = p.text_document_position_params;
                let uri = tp.text_document.uri;
                let h = place(&self.ws, &uri, tp.position)
                    .and_then(|at| features::hover::hover(&mut self.ws, &uri, &at));
                json(h)
            }
            r::GotoDefinition::METHOD => {
                let p: lsp_types::GotoDefinitionParams = parse(req.params)?;
                let tp = p.text_document_position_params;
                let locs = place(&self.ws, &tp.text_document.uri, tp.position)
                    .map(|at| features::navigation::definition(&mut self.ws, &at))
                    .unwrap_or_default();
                json(lsp_types::GotoDefinitionResponse::Array(locs))
            }
            r::References::METHOD => {
                let p: lsp_types::ReferenceParams = parse(req.params)?;
                let tp = p.text_document_position;
                let with = p.context.include_declaration;
                let locs = place(&self.ws, &tp.text_document.uri, tp.position)
                    .map(|at| features::navigation::references(&mut self.ws, &at, with))
                    .unwrap_or_default();
                json(locs)
            }
            r::PrepareRenameRequest::METHOD => {
                let p: lsp_types::TextDocumentPositionParams = parse(req.params)?;
                let at = place(&self.ws, &p.text_document.uri, p.position)
                    .ok_or_else(|| failed("this document is not open".into()))?;
                let range =
                    features::navigation::prepare_rename(&mut self.ws, &at).map_err(failed)?;
                json(lsp_types::PrepareRenameResponse::Range(range))
            }
            r::Rename::METHOD => {
                let p: lsp_types::RenameParams = parse(req.params)?;
                let tp = p.text_document_position;
                let at = place(&self.ws, &tp.text_document.uri, tp.position)
                    .ok_or_else(|| failed("this document is not open".into()))?;
                let edit =
                    features::navigation::rename(&mut self.ws, &at, &p.new_name).map_err(failed)?;
                json(edit)
            }
            r::Formatting::METHOD => {
                let p: lsp_types::DocumentFormattingParams = parse(req.params)?;
                let edits = self
                    .ws
                    .docs
                    .get(&p.text_document.uri)
                    .map(|d| {
                        let key = d.path.display().to_string();
                        features::format::format(&key, &d.text, &d.lines, enc)
                    })
                    .unwrap_or_default();
                json(edits)
            }
            r::DocumentSymbolRequest::METHOD => {
                let p: lsp_types::DocumentSymbolParams = parse(req.params)?;
                let syms = self
                    .ws
                    .docs
                    .get(&p.text_document.uri)
                    .map(|d| features::outline::outline(&d.text, &d.lines, enc))
                    .unwrap_or_default();
                json(lsp_types::DocumentSymbolResponse::Nested(syms))
            }
            r::SemanticTokensFullRequest::METHOD => {
                let p: lsp_types::SemanticTokensParams = parse(req.params)?;
                let data = self
                    .ws
                    .docs
                    .get(&p.text_document.uri)
                    .map(|d| features::semantic::tokens(&d.text, &d.lines, enc))
                    .unwrap_or_default();
                json(lsp_types::SemanticTokensResult::Tokens(
                    lsp_types::SemanticTokens {
                        result_id: None,
                        data,
                    },
                ))
            }
            r::CodeActionRequest::METHOD => {
                let p: lsp_types::CodeActionParams = parse(req.params)?;
                json(features::actions::actions(&p.context.diagnostics))
            }
            r::ExecuteCommand::METHOD => {
                let p: lsp_types::ExecuteCommandParams = parse(req.params)?;
                if p.command != EXPLAIN_COMMAND {
                    return Err(failed(format!("unknown command `{}`", p.command)));
                }
                let code = p
                    .arguments
                    .first()
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                let text = glint_lang::explain(&code)
                    .ok_or_else(|| failed(format!("unknown code `{code}`")))?;
                self.notify::<n::ShowMessage>(ShowMessageParams {
                    typ: MessageType::INFO,
                    message: text.clone(),
                });
                json(text)
            }
            _ => Err((
                ErrorCode::MethodNotFound as i32,
                format!("`{}` is not supported", req.method),
            )),
        }
    }
}
