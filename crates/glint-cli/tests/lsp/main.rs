//! `glint lsp` end to end: the real binary, spoken to over stdio by the
//! client in `client.rs`, on a copy of `examples/three-tier` (so the
//! repository is never written).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod client;

use client::{Client, apply, offset, pos, uri};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A copy of the three-tier example in a fresh directory.
struct Shop {
    dir: tempfile::TempDir,
    main: PathBuf,
    lib: PathBuf,
    main_text: String,
    lib_text: String,
}

fn shop() -> Shop {
    let dir = tempfile::tempdir().unwrap();
    let src = repo().join("examples/three-tier");
    std::fs::create_dir_all(dir.path().join("lib")).unwrap();
    for f in ["main.glint", "lib/templates.glint"] {
        std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
    }
    let main = dir.path().join("main.glint");
    let lib = dir.path().join("lib/templates.glint");
    Shop {
        main_text: std::fs::read_to_string(&main).unwrap(),
        lib_text: std::fs::read_to_string(&lib).unwrap(),
        dir,
        main,
        lib,
    }
}

/// The shop with a library diagnostic that exists only once the library is
/// used: the `worker` template's `max_age` made shorter than its health
/// interval, an error of the services that spread it (E0105, reported in
/// `lib/templates.glint`), not of the function itself.
fn shop_with_a_library_error() -> Shop {
    let s = shop();
    let text = s.lib_text.replace("max_age = 12h", "max_age = 1s");
    assert_ne!(text, s.lib_text, "the template changed");
    std::fs::write(&s.lib, &text).unwrap();
    Shop {
        lib_text: text,
        ..s
    }
}

fn start(root: &Path) -> Client {
    Client::start(env!("CARGO_BIN_EXE_glint"), root, &[], json!({}))
}

fn glint(args: &[&str], cwd: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_glint"))
        .args(args)
        .current_dir(cwd)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

/// `(code, line, character)` of every diagnostic, sorted.
fn codes(ds: &[Value]) -> Vec<(String, u64, u64)> {
    let mut v: Vec<(String, u64, u64)> = ds
        .iter()
        .map(|d| {
            (
                d["code"].as_str().unwrap_or("").to_owned(),
                d["range"]["start"]["line"].as_u64().unwrap(),
                d["range"]["start"]["character"].as_u64().unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

/// What `glint check --format json main.glint` reports for `file`, in
/// the same form.
fn check_codes(dir: &Path, file: &str) -> Vec<(String, u64, u64)> {
    let out = glint(&["check", "--format", "json", "main.glint"], dir);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut v: Vec<(String, u64, u64)> = doc["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["file"] == file)
        .map(|d| {
            (
                d["code"].as_str().unwrap().to_owned(),
                d["line"].as_u64().unwrap() - 1,
                d["column"].as_u64().unwrap() - 1,
            )
        })
        .collect();
    v.sort();
    v
}

/// Opening the example shows what `glint check` shows (policy warnings
/// and the "declared but not enforced yet" warnings of this build); a type
/// error typed into it appears at the value's range with its code, and its
/// explanation is reachable by hover and by a code action.
///
/// Mutations caught: publishing diagnostics only for the main file (the
/// E0105 of `lib/templates.glint` is missed), compiling without the CLI's
/// enforced capabilities (the E06xx differ from `check`), applying edits at
/// the wrong offset or ignoring the edit (no E0103, or at another range),
/// dropping the code.
#[test]
fn diagnostics_follow_edits_with_codes_ranges_and_explanations() {
    let s = shop_with_a_library_error();
    let mut c = start(s.dir.path());
    c.open(&s.main, &s.main_text);
    let main_uri = uri(&s.main);
    let lib_uri = uri(&s.lib);
    let first = c.diagnostics(&main_uri, Some(1));
    assert_eq!(codes(&first), check_codes(s.dir.path(), "main.glint"));
    assert!(
        codes(&first).iter().any(|(c, _, _)| c == "E0400"),
        "{first:?}"
    );
    assert!(
        first.iter().all(|d| d["severity"] == 2),
        "only warnings: {first:?}"
    );
    let lib = c.diagnostics(&lib_uri, None);
    assert_eq!(
        codes(&lib),
        check_codes(s.dir.path(), "lib/templates.glint")
    );
    assert_eq!(
        codes(&lib)[0].0,
        "E0105",
        "the spread template's max_age, in the library"
    );

    // `instances = 2` of `web` becomes a string.
    let start_at = pos(&s.main_text, "instances = 2", 0, "instances = ".len());
    let end_at = pos(&s.main_text, "instances = 2", 0, "instances = 2".len());
    c.edit(&s.main, 2, start_at.clone(), end_at, "\"two\"");
    let after = c.diagnostics(&main_uri, Some(2));
    let errors: Vec<&Value> = after.iter().filter(|d| d["severity"] == 1).collect();
    assert_eq!(errors.len(), 1, "{after:?}");
    let e = errors[0];
    assert_eq!(e["code"], "E0103");
    assert_eq!(e["source"], "glint");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .starts_with("expected int, found string"),
        "{e}"
    );
    assert_eq!(e["range"]["start"], start_at);
    let mut end = start_at.clone();
    end["character"] = json!(start_at["character"].as_u64().unwrap() + 5);
    assert_eq!(e["range"]["end"], end, "the range of `\"two\"`");

    // The explanation, by hover and by code action.
    let hover = c.request("textDocument/hover", Client::at(&s.main, start_at.clone()));
    let text = hover["contents"]["value"].as_str().unwrap();
    let explain = glint(&["explain", "E0103"], s.dir.path());
    let explain = String::from_utf8(explain.stdout).unwrap();
    assert!(text.contains("**E0103**: mismatched types"), "{text}");
    // Every line of `glint explain` after its title.
    for line in explain.lines().skip(1).filter(|l| !l.trim().is_empty()) {
        assert!(
            text.contains(line),
            "`{line}` missing from the hover:\n{text}"
        );
    }
    let actions = c.request(
        "textDocument/codeAction",
        json!({
            "textDocument": { "uri": main_uri },
            "range": e["range"],
            "context": { "diagnostics": [e] },
        }),
    );
    let action = &actions[0];
    assert!(
        action["title"]
            .as_str()
            .unwrap()
            .starts_with("Explain E0103"),
        "{actions}"
    );
    let shown = c.request(
        "workspace/executeCommand",
        json!({
            "command": action["command"]["command"],
            "arguments": action["command"]["arguments"],
        }),
    );
    assert_eq!(shown.as_str().unwrap(), explain);
    c.shutdown();
}

/// Completion inside `service db { … }` offers that block's fields from
/// the schema, except those already written; a template spread into
/// services gets service fields too; `service.` offers the services
/// (those a `for` makes included); a number offers the units of its field.
///
/// Mutations caught: offering every block's fields (`listen` would
/// appear), not filtering present fields (`image`), losing the block kind
/// of a `fn` record (no `drain` in the template), listing only declared
/// names that are not templates (no `worker-emails`), offering size units
/// for a duration.
#[test]
fn completion_offers_fields_references_and_units() {
    let s = shop();
    let mut c = start(s.dir.path());
    c.open(&s.main, &s.main_text);
    c.diagnostics(&uri(&s.main), Some(1));

    // A new line inside `service db {`.
    let at = pos(&s.main_text, "service db {", 0, "service db {".len());
    c.edit(&s.main, 2, at.clone(), at.clone(), "\n  ");
    let mut p = at.clone();
    p["line"] = json!(at["line"].as_u64().unwrap() + 1);
    p["character"] = json!(2);
    let items = c.request("textDocument/completion", Client::at(&s.main, p));
    let labels: Vec<&str> = items
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["label"].as_str().unwrap())
        .collect();
    assert_eq!(
        labels,
        vec!["provider", "args", "env", "port", "drain", "autoscale"]
    );
    for present in [
        "image",
        "instances",
        "max_age",
        "mounts",
        "health",
        "stop_grace",
    ] {
        assert!(
            !labels.contains(&present),
            "{present} is already written: {labels:?}"
        );
    }
    assert!(!labels.contains(&"listen"), "an endpoint field: {labels:?}");
    let drain = items
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["label"] == "drain")
        .unwrap();
    assert_eq!(drain["detail"], "duration");
    assert!(
        drain["documentation"]["value"]
            .as_str()
            .unwrap()
            .contains("`30s`")
    );

    // Inside the `backend` template (spread into services).
    c.open(&s.lib, &s.lib_text);
    let at = pos(&s.lib_text, "  image   = image\n", 0, 0);
    let items = c.request("textDocument/completion", Client::at(&s.lib, at));
    let labels: Vec<String> = items
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["label"].as_str().unwrap().to_owned())
        .collect();
    assert!(labels.contains(&"stop_grace".to_owned()), "{labels:?}");
    assert!(
        !labels.contains(&"drain".to_owned()),
        "`drain` is written below: {labels:?}"
    );

    // `to = service.` in a rule of main.glint (version 2 text).
    let text = {
        let mut t = s.main_text.clone();
        let o = t.find("service db {").unwrap() + "service db {".len();
        t.insert_str(o, "\n  ");
        t
    };
    let dot = pos(&text, "to   = service.api", 0, "to   = service.".len());
    let items = c.request("textDocument/completion", Client::at(&s.main, dot));
    let labels: Vec<&str> = items
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["label"].as_str().unwrap())
        .collect();
    for want in ["api", "db", "web", "worker-emails", "worker-thumbnails"] {
        assert!(labels.contains(&want), "{want} missing from {labels:?}");
    }

    // Units after `stop_grace = 30`.
    let grace = pos(&text, "stop_grace = 1m", 0, "stop_grace = 1".len());
    let mut end = grace.clone();
    end["character"] = json!(grace["character"].as_u64().unwrap() + 1);
    c.edit(&s.main, 3, grace.clone(), end, "");
    let items = c.request("textDocument/completion", Client::at(&s.main, grace));
    let labels: Vec<&str> = items
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["label"].as_str().unwrap())
        .collect();
    assert_eq!(labels, vec!["ms", "s", "m", "h", "d"]);
    c.shutdown();
}

/// Hovering a duration says it in words; hovering a field key shows its
/// type, default and doc from the schema; hovering a reference shows its
/// declaration.
///
/// Mutations caught: describing the literal's milliseconds as seconds,
/// looking the key up in the wrong block (`interval` of `health`, whose
/// default is `2s`, is not a service field), hovering the wrong token.
#[test]
fn hover_shows_durations_fields_and_declarations() {
    let s = shop();
    let mut c = start(s.dir.path());
    c.open(&s.main, &s.main_text);
    c.diagnostics(&uri(&s.main), Some(1));
    let h = c.request(
        "textDocument/hover",
        Client::at(&s.main, pos(&s.main_text, "12h", 0, 1)),
    );
    assert_eq!(h["contents"]["value"], "`12h`: 12 hours (43,200 seconds)");
    assert_eq!(h["range"]["start"], pos(&s.main_text, "12h", 0, 0));

    let h = c.request(
        "textDocument/hover",
        Client::at(&s.main, pos(&s.main_text, "interval", 0, 3)),
    );
    let v = h["contents"]["value"].as_str().unwrap();
    assert!(v.starts_with("`interval`: duration (default: `2s`)"), "{v}");

    let h = c.request(
        "textDocument/hover",
        Client::at(
            &s.main,
            pos(&s.main_text, "service.db", 0, "service.".len()),
        ),
    );
    let v = h["contents"]["value"].as_str().unwrap();
    assert!(v.contains("service db"), "{v}");
    assert!(v.contains("Defined in `main.glint`"), "{v}");
    c.shutdown();
}

/// `service.db` in another file jumps to `service db` in `main.glint`,
/// and `image.app` in the templates too; an import's path jumps to the
/// file; `tpl.backend` jumps into the library.
///
/// Mutations caught: resolving declarations within the file only, an
/// index not rebuilt after an edit (the reference to `service.db` exists
/// only in the editor's text, typed after the index was first built),
/// wrong ranges.
#[test]
fn definitions_are_found_across_files() {
    let s = shop();
    let mut c = start(s.dir.path());
    c.open(&s.main, &s.main_text);
    c.diagnostics(&uri(&s.main), Some(1));
    c.open(&s.lib, &s.lib_text);
    let defs = c.request(
        "textDocument/definition",
        Client::at(&s.lib, pos(&s.lib_text, "image.app", 0, "image.".len())),
    );
    assert_eq!(defs[0]["uri"], uri(&s.main));
    assert_eq!(
        defs[0]["range"]["start"],
        pos(&s.main_text, "image app {", 0, "image ".len())
    );

    // The worker learns the database's name (unsaved).
    let at = pos(&s.lib_text, "QUEUE = queue }", 0, "QUEUE = queue".len());
    c.edit(
        &s.lib,
        2,
        at.clone(),
        at.clone(),
        ", DB_HOST = service.db.name",
    );
    let lib = apply(
        &s.lib_text,
        &[json!({ "range": { "start": at, "end": at }, "newText": ", DB_HOST = service.db.name" })],
    );
    let errors = c.diagnostics(&uri(&s.lib), Some(2));
    assert!(
        errors.iter().all(|d| d["severity"] != 1),
        "the edit is valid: {errors:?}"
    );

    let defs = c.request(
        "textDocument/definition",
        Client::at(&s.lib, pos(&lib, "service.db", 0, "service.d".len())),
    );
    let want = json!([{
        "uri": uri(&s.main),
        "range": {
            "start": pos(&s.main_text, "service db {", 0, "service ".len()),
            "end": pos(&s.main_text, "service db {", 0, "service db".len()),
        }
    }]);
    assert_eq!(defs, want);

    let defs = c.request(
        "textDocument/definition",
        Client::at(&s.main, pos(&s.main_text, "\"lib/templates.glint\"", 0, 3)),
    );
    assert_eq!(defs[0]["uri"], uri(&s.lib));

    let defs = c.request(
        "textDocument/definition",
        Client::at(&s.main, pos(&s.main_text, "tpl.backend", 0, "tpl.b".len())),
    );
    assert_eq!(defs[0]["uri"], uri(&s.lib));
    assert_eq!(defs[0]["range"]["start"], pos(&lib, "backend(", 0, 0));

    let refs = c.request(
        "textDocument/references",
        json!({
            "textDocument": { "uri": uri(&s.main) },
            "position": pos(&s.main_text, "service db {", 0, "service d".len()),
            "context": { "includeDeclaration": false },
        }),
    );
    let uris: Vec<&str> = refs
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["uri"].as_str().unwrap())
        .collect();
    assert_eq!(uris.len(), 5, "{refs}");
    assert_eq!(uris.iter().filter(|u| **u == uri(&s.lib)).count(), 1);
    c.shutdown();
}

/// Renaming `db` changes its declaration and every reference in both
/// files (nothing else: the `db` hostname in a string stays), and the
/// result compiles; a rename to an invalid name is refused.
///
/// Mutations caught: renaming only in the file of the cursor, renaming
/// text matches (the URL would change), forgetting `service["db"]`-style
/// or list references, accepting `Data Base`.
#[test]
fn rename_changes_every_reference_across_files() {
    let s = shop();
    let mut c = start(s.dir.path());
    c.open(&s.main, &s.main_text);
    c.diagnostics(&uri(&s.main), Some(1));
    c.open(&s.lib, &s.lib_text);
    let at = pos(&s.lib_text, "QUEUE = queue }", 0, "QUEUE = queue".len());
    c.edit(
        &s.lib,
        2,
        at.clone(),
        at.clone(),
        ", DB_HOST = service.db.name",
    );
    let lib = apply(
        &s.lib_text,
        &[json!({ "range": { "start": at, "end": at }, "newText": ", DB_HOST = service.db.name" })],
    );
    c.diagnostics(&uri(&s.lib), Some(2));

    let bad = c.call(
        "textDocument/rename",
        json!({
            "textDocument": { "uri": uri(&s.main) },
            "position": pos(&s.main_text, "service db {", 0, "service d".len()),
            "newName": "Data Base",
        }),
    );
    assert!(
        bad["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not a valid service name"),
        "{bad}"
    );

    let prep = c.request(
        "textDocument/prepareRename",
        Client::at(
            &s.main,
            pos(&s.main_text, "service db {", 0, "service d".len()),
        ),
    );
    assert_eq!(
        prep["start"],
        pos(&s.main_text, "service db {", 0, "service ".len())
    );

    let edit = c.request(
        "textDocument/rename",
        json!({
            "textDocument": { "uri": uri(&s.main) },
            "position": pos(&s.main_text, "service db {", 0, "service d".len()),
            "newName": "database",
        }),
    );
    let changes = &edit["changes"];
    let main_edits = changes[uri(&s.main)].as_array().unwrap();
    let lib_edits = changes[uri(&s.lib)].as_array().unwrap();
    assert_eq!(
        main_edits.len(),
        5,
        "the declaration and 4 references: {main_edits:?}"
    );
    assert_eq!(lib_edits.len(), 1);
    let main2 = apply(&s.main_text, main_edits);
    let lib2 = apply(&lib, lib_edits);
    assert!(main2.contains("service database {"));
    assert_eq!(main2.matches("service.database").count(), 4);
    assert!(!main2.contains("service.db"));
    assert!(
        main2.contains("postgres://db:5432/shop"),
        "strings are not references"
    );
    assert!(lib2.contains("DB_HOST = service.database.name"));

    // The renamed sources compile (in the editor and on disk).
    c.replace(&s.main, 3, &main2);
    c.replace(&s.lib, 3, &lib2);
    let ds = c.diagnostics(&uri(&s.main), Some(3));
    assert!(ds.iter().all(|d| d["severity"] != 1), "{ds:?}");
    std::fs::write(&s.main, &main2).unwrap();
    std::fs::write(&s.lib, &lib2).unwrap();
    let out = glint(&["check", "main.glint"], s.dir.path());
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    c.shutdown();
}

/// Formatting returns what `glint fmt` writes.
///
/// Mutations caught: a formatter of its own, an edit that does not cover
/// the whole document (text would be duplicated), edits for a formatted
/// file.
#[test]
fn formatting_is_glint_fmt() {
    let s = shop();
    let messy = s
        .main_text
        .replace("  instances = 2\n", "      instances=2\n")
        .replace(
            "rule web_to_api {\n  from = service.web\n  to   = service.api\n}",
            "rule web_to_api { from = service.web, to = service.api }",
        );
    assert_ne!(messy, s.main_text);
    let mut c = start(s.dir.path());
    c.open(&s.main, &messy);
    let edits = c.request(
        "textDocument/formatting",
        json!({ "textDocument": { "uri": uri(&s.main) }, "options": { "tabSize": 2, "insertSpaces": true } }),
    );
    let formatted = apply(&messy, edits.as_array().unwrap());
    let file = s.dir.path().join("messy.glint");
    std::fs::write(&file, &messy).unwrap();
    let out = glint(&["fmt", "messy.glint"], s.dir.path());
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(formatted, std::fs::read_to_string(&file).unwrap());

    c.replace(&s.main, 2, &formatted);
    let again = c.request(
        "textDocument/formatting",
        json!({ "textDocument": { "uri": uri(&s.main) }, "options": { "tabSize": 2, "insertSpaces": true } }),
    );
    assert_eq!(again, json!([]), "already formatted");
    c.shutdown();
}

/// The outline lists the declarations with their fields; semantic tokens
/// cover the file.
///
/// Mutations caught: an outline without nested fields, tokens with
/// absolute instead of relative positions (a decoded token would fall
/// outside the text).
#[test]
fn outline_and_semantic_tokens() {
    let s = shop();
    let mut c = start(s.dir.path());
    c.open(&s.main, &s.main_text);
    let syms = c.request(
        "textDocument/documentSymbol",
        json!({ "textDocument": { "uri": uri(&s.main) } }),
    );
    let names: Vec<&str> = syms
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["name"].as_str().unwrap())
        .collect();
    for want in [
        "shop",
        "tpl",
        "region",
        "app",
        "web",
        "db",
        "pgdata",
        "public",
        "api_is_redundant",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    let db = syms
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == "db")
        .unwrap();
    let fields: Vec<&str> = db["children"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["name"].as_str().unwrap())
        .collect();
    assert!(
        fields.contains(&"health") && fields.contains(&"stop_grace"),
        "{fields:?}"
    );

    let toks = c.request(
        "textDocument/semanticTokens/full",
        json!({ "textDocument": { "uri": uri(&s.main) } }),
    );
    let data: Vec<u64> = toks["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(data.len() % 5, 0);
    let lines: Vec<&str> = s.main_text.lines().collect();
    let (mut line, mut col) = (0u64, 0u64);
    let mut words = Vec::new();
    for t in data.chunks(5) {
        if t[0] > 0 {
            line += t[0];
            col = t[1];
        } else {
            col += t[1];
        }
        let l = lines[line as usize];
        let w = &l[col as usize..(col + t[2]) as usize];
        words.push(w.to_owned());
    }
    assert!(words.iter().any(|w| w == "service"));
    assert!(words.iter().any(|w| w == "12h"));
    c.shutdown();
}

/// An import through a symlink out of the environment is refused as
/// `glint check` refuses it — even when the editor has the file open (its
/// unsaved text is not used either).
///
/// Mutations caught: serving open documents without asking the loader
/// (`admits`), so the outside file's content would be compiled.
#[test]
fn imports_stay_inside_the_root_even_for_open_files() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.glint"), "let x = 1\n").unwrap();
    let s = shop();
    std::os::unix::fs::symlink(outside.path(), s.dir.path().join("ext")).unwrap();
    let main = format!("import \"ext/secret.glint\" as ext\n{}", s.main_text);
    std::fs::write(&s.main, &main).unwrap();
    let want = check_codes(s.dir.path(), "main.glint");
    assert!(
        want.iter()
            .any(|(c, _, _)| c == "E0302" || c.starts_with("E03")),
        "{want:?}"
    );

    let mut c = start(s.dir.path());
    let linked = s.dir.path().join("ext/secret.glint");
    c.open(&linked, "let x = 2\nlet y = x\n");
    c.open(&s.main, &main);
    let ds = c.diagnostics(&uri(&s.main), Some(1));
    assert_eq!(codes(&ds), want);
    let refused = ds
        .iter()
        .find(|d| d["code"].as_str().unwrap().starts_with("E03"))
        .unwrap();
    assert!(
        refused["message"].as_str().unwrap().contains("outside"),
        "{refused}"
    );
    c.shutdown();
}

/// The offsets helper agrees with `pos` (the tests rely on both).
#[test]
fn positions_round_trip() {
    let t = "ab\ncd ef\n";
    let p = pos(t, "ef", 0, 0);
    assert_eq!(p, json!({ "line": 1, "character": 3 }));
    assert_eq!(offset(t, &p), 6);
}

/// A library opened on its own is compiled as part of the environment
/// that imports it (the `.glint` file in a parent directory), so it shows
/// the diagnostics it gets there: the `worker` template's `max_age` is only
/// checked against a health interval once it is spread into the services of
/// `main.glint`.
///
/// Mutations caught: compiling every document as a main file of its own
/// (no E0105: a function nobody calls is not a service), searching only
/// the document's own directory.
#[test]
fn a_library_opened_alone_is_compiled_with_its_main_file() {
    let s = shop_with_a_library_error();
    let mut c = start(s.dir.path());
    c.open(&s.lib, &s.lib_text);
    let ds = c.diagnostics(&uri(&s.lib), Some(1));
    assert_eq!(codes(&ds), check_codes(s.dir.path(), "lib/templates.glint"));
    assert_eq!(ds[0]["code"], "E0105");
    // The main file's diagnostics come with it, though it is not open.
    let main = c.diagnostics(&uri(&s.main), None);
    assert_eq!(codes(&main), check_codes(s.dir.path(), "main.glint"));
    c.shutdown();
}

/// Edits sent back to back, without waiting, are applied in order: the
/// last version's diagnostics are those of the text all of them make.
///
/// Mutations caught: applying incremental changes against a stale text,
/// handling notifications out of order (the characters would be
/// shuffled), publishing the last version's number with an older text.
#[test]
fn rapid_edits_are_applied_in_order() {
    let s = shop();
    let mut c = start(s.dir.path());
    c.open(&s.main, &s.main_text);
    c.diagnostics(&uri(&s.main), Some(1));
    // Replace `2` of `instances = 2` by `"two"`, one character at a time.
    let at = pos(&s.main_text, "instances = 2", 0, "instances = ".len());
    let mut end = at.clone();
    end["character"] = json!(at["character"].as_u64().unwrap() + 1);
    c.edit(&s.main, 2, at.clone(), end, "");
    for (i, ch) in "\"two\"".chars().enumerate() {
        let mut p = at.clone();
        p["character"] = json!(at["character"].as_u64().unwrap() + i as u64);
        c.edit(&s.main, 3 + i as i64, p.clone(), p, &ch.to_string());
    }
    let ds = c.diagnostics(&uri(&s.main), Some(7));
    let e: Vec<&Value> = ds.iter().filter(|d| d["severity"] == 1).collect();
    assert_eq!(e.len(), 1, "{ds:?}");
    assert_eq!(e[0]["code"], "E0103");
    assert_eq!(e[0]["range"]["start"], at);
    let h = c.request("textDocument/hover", Client::at(&s.main, at.clone()));
    assert!(h["contents"]["value"].as_str().unwrap().contains("E0103"));
    c.shutdown();
}
