//! Code actions: "Explain E0201" for every Glint diagnostic in the
//! request's context; the command shows `glint explain`'s text.

use crate::diagnostics::{EXPLAIN_COMMAND, code_of};
use lsp_types::{CodeAction, CodeActionKind, CodeActionOrCommand, Command, Diagnostic};

/// The actions for the diagnostics the client sent.
pub fn actions(diagnostics: &[Diagnostic]) -> Vec<CodeActionOrCommand> {
    let mut seen = Vec::new();
    let mut out = Vec::new();
    for d in diagnostics {
        let Some(code) = code_of(d) else { continue };
        if seen.contains(&code) {
            continue;
        }
        seen.push(code);
        out.push(CodeActionOrCommand::CodeAction(CodeAction {
            title: format!("Explain {} ({})", code.as_str(), code.title()),
            kind: Some(CodeActionKind::EMPTY),
            diagnostics: Some(vec![d.clone()]),
            command: Some(Command {
                title: format!("glint explain {}", code.as_str()),
                command: EXPLAIN_COMMAND.into(),
                arguments: Some(vec![serde_json::Value::String(code.as_str().into())]),
            }),
            ..CodeAction::default()
        }));
    }
    out
}
