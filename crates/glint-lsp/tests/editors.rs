//! The editor files in `editors/vscode` stay true to the language: the
//! extension's manifest names files that exist and parse, and the TextMate
//! grammar knows every declaration kind, keyword, enum word and unit the
//! compiler knows (so a new word added to the language fails here until
//! the grammar learns it).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
use std::path::{Path, PathBuf};

fn vscode() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../editors/vscode")
}

fn json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The alternatives of the first `(a|b|c)` group of a regex.
fn words_of(regex: &str) -> Vec<String> {
    let start = regex.find('(').unwrap() + 1;
    let end = start + regex[start..].find(')').unwrap();
    regex[start..end].split('|').map(str::to_owned).collect()
}

#[test]
fn the_manifest_names_files_that_exist() {
    let pkg = json(&vscode().join("package.json"));
    assert_eq!(
        pkg["contributes"]["languages"][0]["extensions"][0],
        ".glint"
    );
    let grammar = pkg["contributes"]["grammars"][0]["path"].as_str().unwrap();
    let g = json(&vscode().join(grammar));
    assert_eq!(
        g["scopeName"],
        pkg["contributes"]["grammars"][0]["scopeName"]
    );
    let conf = pkg["contributes"]["languages"][0]["configuration"]
        .as_str()
        .unwrap();
    let c = json(&vscode().join(conf));
    assert_eq!(c["comments"]["lineComment"], "//");
    assert!(vscode().join(pkg["main"].as_str().unwrap()).is_file());
}

#[test]
fn the_grammar_knows_the_language_words() {
    let g = json(&vscode().join("syntaxes/glint.tmLanguage.json"));
    let repo = &g["repository"];
    let kinds = words_of(repo["declaration"]["match"].as_str().unwrap());
    let refs = words_of(repo["references"]["match"].as_str().unwrap());
    for k in glint_lang::parser::DECL_KINDS {
        assert!(
            kinds.iter().any(|w| w == k),
            "declaration kind `{k}` missing"
        );
        assert!(refs.iter().any(|w| w == k), "reference kind `{k}` missing");
    }
    let enums = words_of(repo["words"]["match"].as_str().unwrap());
    let mut want: Vec<&str> = glint_lang::schema::enum_words();
    want.extend(glint_lang::eval::ENUM_WORDS);
    for w in want {
        assert!(enums.iter().any(|x| x == w), "enum word `{w}` missing");
    }
    let all = serde_json::to_string(&g).unwrap();
    for kw in glint_lang::ide::KEYWORDS {
        let alternatives = [
            format!("|{kw}|"),
            format!("({kw}|"),
            format!("|{kw})"),
            format!("({kw})"),
        ];
        assert!(
            alternatives.iter().any(|a| all.contains(a.as_str())),
            "keyword `{kw}` missing"
        );
    }
    let literals = serde_json::to_string(&repo["literals"]).unwrap();
    for unit in ["(ms|s|m|h|d)", "(B|KiB|MiB|GiB|TiB)"] {
        assert!(literals.contains(unit), "units {unit} missing");
    }
}
