//! A small LSP client over the real `glint lsp` process's stdin and
//! stdout: Content-Length framing, requests matched to responses by id,
//! notifications kept in order, bounded waits. Shared by the end-to-end
//! tests and the latency benchmark (`benches/lsp.rs`).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

/// How long any single wait may take before the test fails (generous: the
/// machine is shared and debug builds are slow).
pub const WAIT: Duration = Duration::from_secs(60);

/// A running `glint lsp` and its conversation.
pub struct Client {
    child: Child,
    stdin: ChildStdin,
    rx: Receiver<Value>,
    next_id: i64,
    /// Notifications received and not yet consumed, in order.
    pub notes: VecDeque<Value>,
}

/// The `file://` URI of a path (plain ASCII paths in the tests).
pub fn uri(path: &Path) -> String {
    format!("file://{}", path.display())
}

/// The `(line, character)` of the `nth` occurrence of `needle` in `text`
/// (plus `delta` bytes), for ASCII text.
pub fn pos(text: &str, needle: &str, nth: usize, delta: usize) -> Value {
    let mut at = 0;
    let mut found = None;
    for _ in 0..=nth {
        let i = text[at..]
            .find(needle)
            .unwrap_or_else(|| panic!("`{needle}` not found {nth} times"));
        found = Some(at + i);
        at += i + 1;
    }
    let off = found.unwrap() + delta;
    let line = text[..off].matches('\n').count();
    let col = off - text[..off].rfind('\n').map(|i| i + 1).unwrap_or(0);
    json!({ "line": line, "character": col })
}

/// The byte offset of an LSP position in ASCII text.
pub fn offset(text: &str, p: &Value) -> usize {
    let line = p["line"].as_u64().unwrap() as usize;
    let ch = p["character"].as_u64().unwrap() as usize;
    let start: usize = text.split_inclusive('\n').take(line).map(str::len).sum();
    start + ch
}

/// Applies LSP text edits to a text (ASCII), last first.
pub fn apply(text: &str, edits: &[Value]) -> String {
    let mut spans: Vec<(usize, usize, String)> = edits
        .iter()
        .map(|e| {
            (
                offset(text, &e["range"]["start"]),
                offset(text, &e["range"]["end"]),
                e["newText"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    spans.sort_by_key(|s| std::cmp::Reverse(s.0));
    let mut out = text.to_owned();
    for (a, b, t) in spans {
        out.replace_range(a..b, &t);
    }
    out
}

impl Client {
    /// Starts `glint lsp` (with `args`) in `root` and initializes it with
    /// `options` as initialization options.
    pub fn start(bin: &str, root: &Path, args: &[&str], options: Value) -> Client {
        let mut child = Command::new(bin)
            .arg("lsp")
            .args(args)
            .current_dir(root)
            .env("NO_COLOR", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start glint lsp");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            loop {
                let mut len = None;
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let line = line.trim_end();
                    if line.is_empty() {
                        break;
                    }
                    if let Some(v) = line.strip_prefix("Content-Length: ") {
                        len = v.parse::<usize>().ok();
                    }
                }
                let mut body = vec![0; len.expect("a Content-Length header")];
                if r.read_exact(&mut body).is_err() {
                    return;
                }
                let v: Value = serde_json::from_slice(&body).expect("JSON from the server");
                if tx.send(v).is_err() {
                    return;
                }
            }
        });
        let mut c = Client {
            child,
            stdin,
            rx,
            next_id: 0,
            notes: VecDeque::new(),
        };
        let init = c.request(
            "initialize",
            json!({
                "processId": null,
                "rootUri": uri(root),
                "workspaceFolders": [{ "uri": uri(root), "name": "test" }],
                "capabilities": {},
                "initializationOptions": options,
            }),
        );
        assert!(
            init["capabilities"]["completionProvider"].is_object(),
            "{init}"
        );
        c.notify("initialized", json!({}));
        c
    }

    fn send(&mut self, v: &Value) {
        let body = serde_json::to_vec(v).unwrap();
        write!(self.stdin, "Content-Length: {}\r\n\r\n", body.len()).unwrap();
        self.stdin.write_all(&body).unwrap();
        self.stdin.flush().unwrap();
    }

    fn recv(&mut self, deadline: Instant) -> Value {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.rx.recv_timeout(left) {
            Ok(v) => v,
            Err(RecvTimeoutError::Timeout) => panic!("no message from the server within {WAIT:?}"),
            Err(RecvTimeoutError::Disconnected) => panic!("the server closed its output"),
        }
    }

    /// Sends a notification.
    pub fn notify(&mut self, method: &str, params: Value) {
        self.send(&json!({ "jsonrpc": "2.0", "method": method, "params": params }));
    }

    /// Sends a request and returns the whole response (`result` or `error`).
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        self.send(&json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }));
        let deadline = Instant::now() + WAIT;
        loop {
            let v = self.recv(deadline);
            if v.get("id") == Some(&json!(id)) && v.get("method").is_none() {
                return v;
            }
            self.notes.push_back(v);
        }
    }

    /// Sends a request and returns its result (failing on an error).
    pub fn request(&mut self, method: &str, params: Value) -> Value {
        let v = self.call(method, params);
        assert!(v.get("error").is_none(), "{method} failed: {v}");
        v["result"].clone()
    }

    /// The first notification `method` whose params satisfy `pred`
    /// (received already or to come; others are kept for later waits).
    pub fn wait_for(&mut self, method: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let hit = |v: &Value| v["method"] == method && pred(&v["params"]);
        if let Some(i) = self.notes.iter().position(hit) {
            return self.notes.remove(i).unwrap()["params"].clone();
        }
        let deadline = Instant::now() + WAIT;
        loop {
            let v = self.recv(deadline);
            if hit(&v) {
                return v["params"].clone();
            }
            self.notes.push_back(v);
        }
    }

    /// The next diagnostics published for `uri` (with the document
    /// `version`, if given).
    pub fn diagnostics(&mut self, uri: &str, version: Option<i64>) -> Vec<Value> {
        let p = self.wait_for("textDocument/publishDiagnostics", |p| {
            p["uri"] == uri && version.is_none_or(|v| p["version"] == v)
        });
        p["diagnostics"].as_array().cloned().unwrap_or_default()
    }

    /// Opens a document.
    pub fn open(&mut self, path: &Path, text: &str) {
        self.notify(
            "textDocument/didOpen",
            json!({ "textDocument": {
                "uri": uri(path), "languageId": "glint", "version": 1, "text": text,
            }}),
        );
    }

    /// Replaces a document's whole text.
    pub fn replace(&mut self, path: &Path, version: i64, text: &str) {
        self.notify(
            "textDocument/didChange",
            json!({
                "textDocument": { "uri": uri(path), "version": version },
                "contentChanges": [{ "text": text }],
            }),
        );
    }

    /// Replaces a range of a document.
    pub fn edit(&mut self, path: &Path, version: i64, start: Value, end: Value, text: &str) {
        self.notify(
            "textDocument/didChange",
            json!({
                "textDocument": { "uri": uri(path), "version": version },
                "contentChanges": [{ "range": { "start": start, "end": end }, "text": text }],
            }),
        );
    }

    /// `{ textDocument, position }`.
    pub fn at(path: &Path, position: Value) -> Value {
        json!({ "textDocument": { "uri": uri(path) }, "position": position })
    }

    /// Shuts the server down and checks that it exits with 0.
    pub fn shutdown(mut self) {
        let v = self.call("shutdown", Value::Null);
        assert!(v.get("error").is_none(), "{v}");
        self.notify("exit", Value::Null);
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert_eq!(status.code(), Some(0), "glint lsp exit status");
                return;
            }
            assert!(Instant::now() < deadline, "glint lsp did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
