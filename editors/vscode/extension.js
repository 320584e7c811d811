// Starts `glint lsp` for .glint files. Everything else (diagnostics,
// completion, hover, navigation, rename, formatting, the "Explain" code
// action and its `glint.explain` command) comes from the server.
"use strict";

const vscode = require("vscode");
const { LanguageClient } = require("vscode-languageclient/node");

let client;

function activate(context) {
  const config = vscode.workspace.getConfiguration("glint");
  const command = config.get("path", "glint");
  const server = { command, args: ["lsp"] };
  client = new LanguageClient(
    "glint",
    "Glint",
    { run: server, debug: server },
    {
      documentSelector: [{ scheme: "file", language: "glint" }],
      initializationOptions: {
        policies: config.get("policies", []),
        debounceMs: config.get("debounceMs", 150),
      },
    }
  );
  context.subscriptions.push(client);
  return client.start();
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
