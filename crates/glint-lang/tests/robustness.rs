//! No input makes the compiler or the formatter panic, overflow its stack or
//! hang: random bytes, invalid UTF-8, token soup, mutated examples, deep
//! nesting, long binding chains and huge literals.
//!
//! The number of random cases is `PROPTEST_CASES` (default 256 per property);
//! run longer with e.g. `PROPTEST_CASES=100000 cargo test --release -p
//! glint-lang --test robustness`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use glint_lang::{Code, CompileOptions, MemoryLoader, compile, format};
use proptest::prelude::*;

const HELLO: &str = include_str!("../../../examples/hello/hello.glint");
const SHOP: &str = include_str!("../../../examples/three-tier/main.glint");
const TEMPLATES: &str = include_str!("../../../examples/three-tier/lib/templates.glint");

/// Compiles `main.glint` (with the shop's templates importable) and formats
/// it; checks the invariants that hold for any input.
fn check(bytes: &[u8]) -> Vec<Code> {
    let mut loader = MemoryLoader::new();
    loader.add("main.glint", bytes.to_vec());
    loader.add("lib/templates.glint", TEMPLATES);
    let c = compile("main.glint", &loader, &CompileOptions::default());
    // Errors and an environment never come together.
    assert_eq!(c.has_errors(), c.environment.is_none());
    // Every diagnostic points into a loaded file (no unlocated cascade such
    // as `expected string, found none` at line 0).
    for d in &c.diagnostics.list {
        assert!(
            c.diagnostics.sources.get(d.primary.span.file).is_some(),
            "unlocated {}: {}",
            d.code,
            d.message
        );
    }
    lazy_parse_agrees(bytes);
    // Rendering never fails, in either form.
    let _ = c.diagnostics.render_human(true);
    let _ = c.diagnostics.render_json();
    // Formatting either refuses or is idempotent.
    if let Ok(once) = format("main.glint", bytes) {
        let twice = format("main.glint", once.as_bytes()).unwrap();
        assert_eq!(once, twice);
    }
    c.diagnostics.list.iter().map(|d| d.code).collect()
}

/// The compiler parses top-level bodies lazily: locating each body and
/// parsing it later must give the same entries and the same diagnostics as
/// parsing the file at once.
fn lazy_parse_agrees(bytes: &[u8]) {
    use glint_lang::ast::{Block, ItemKind};
    use glint_lang::parser::{parse_body, parse_file, parse_file_lazy};
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    let file = glint_lang::FileId(0);
    let mut full_diags = Vec::new();
    let full = parse_file(text, file, &mut full_diags);
    let mut lazy_diags = Vec::new();
    let lazy = parse_file_lazy(text, file, &mut lazy_diags);
    // Every located body, parsed on its own, in file order with the rest.
    let mut located: Vec<(glint_lang::Span, Block)> = Vec::new();
    for d in &lazy.lazy {
        located.push((d.name.span, parse_body(text, d.body, &mut lazy_diags)));
    }
    for item in &lazy.items {
        if let ItemKind::Decl(d) = &item.kind
            && d.body.deferred
        {
            located.push((
                d.name.span(),
                parse_body(text, d.body.span, &mut lazy_diags),
            ));
        }
    }
    if !full_diags.is_empty() {
        // With syntax errors, recovery may differ (a located body is parsed
        // on its own, so the items after it are read cleanly); errors are
        // still found.
        assert!(!lazy_diags.is_empty(), "{text}");
        return;
    }
    assert_eq!(full.items.len(), lazy.items.len() + lazy.lazy.len());
    let shape = |b: &Block| -> Vec<String> {
        b.entries
            .iter()
            .map(|e| format!("{:?} {:?}", e.kind, e.span))
            .collect()
    };
    for f in &full.items {
        let ItemKind::Decl(fd) = &f.kind else {
            continue;
        };
        let Some((_, body)) = located.iter().find(|(s, _)| *s == fd.name.span()) else {
            continue;
        };
        assert_eq!(fd.body.span, body.span);
        assert_eq!(shape(&fd.body), shape(body), "{text}");
        assert_eq!(fd.body.recovered, body.recovered);
    }
    let key = |d: &glint_lang::Diagnostic| (d.primary.span, d.code, d.message.clone());
    let mut a: Vec<_> = full_diags.iter().map(key).collect();
    let mut b: Vec<_> = lazy_diags.iter().map(key).collect();
    a.sort();
    a.dedup();
    b.sort();
    b.dedup();
    assert_eq!(a, b, "{text}");
}

const FRAGMENTS: &[&str] = &[
    "service",
    "image",
    "endpoint",
    "rule",
    "variable",
    "volume",
    "policy",
    "environment",
    "let",
    "fn",
    "for",
    "in",
    "import",
    "as",
    "all",
    "any",
    "if",
    "then",
    "else",
    "and",
    "or",
    "not",
    "none",
    "true",
    " web ",
    " x ",
    "{",
    "}",
    "[",
    "]",
    "(",
    ")",
    "=",
    "==",
    "!=",
    "<=",
    ",",
    ".",
    "...",
    ":",
    "+",
    "-",
    "*",
    "/",
    "%",
    "?",
    "\n",
    "\n\n",
    " ",
    "\"",
    "\"a${",
    "${",
    "\\",
    "30s",
    "30 s",
    "1.5h",
    "512MiB",
    "70000",
    "10.0.0.0/8",
    "10.0.0.300/8",
    "127.0.0.1:8080",
    "0.0.0.0/0",
    "sha256:abc",
    "copy",
    "to",
    "run",
    "test",
    "// c\n",
    "/* c */",
    "\"std:policies\"",
    "\"lib/templates.glint\"",
    "service.web",
    "image.app",
    "services",
    "s.max_age",
    "range(100)",
    "tpl.backend(image.app)",
    "99999999999999999999",
    "é",
    "\t",
    "\r\n",
];

fn soup() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop::sample::select(FRAGMENTS), 0..200)
        .prop_map(|v| v.concat().into_bytes())
}

fn mutated(base: &'static str) -> impl Strategy<Value = Vec<u8>> {
    let len = base.len();
    prop::collection::vec((0..len, any::<u8>(), 0..3u8), 1..12).prop_map(move |edits| {
        let mut b = base.as_bytes().to_vec();
        for (pos, byte, op) in edits {
            let pos = pos.min(b.len());
            match op {
                0 => b.insert(pos, byte),
                1 if pos < b.len() => {
                    b.remove(pos);
                }
                _ if pos < b.len() => b[pos] = byte,
                _ => {}
            }
        }
        b
    })
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2000)) {
        check(&bytes);
    }

    #[test]
    fn token_soup_never_panics(bytes in soup()) {
        check(&bytes);
    }

    #[test]
    fn mutated_examples_never_panic(bytes in prop_oneof![mutated(HELLO), mutated(SHOP)]) {
        check(&bytes);
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash(
        depth in 1usize..3000,
        open in prop::sample::select(vec!["[", "(", "{ a = ", "-", "not ", "\"${", "f(", "x.y("]),
    ) {
        let src = format!("let x = {}1\n", open.repeat(depth));
        let codes = check(src.as_bytes());
        if depth > 200 {
            prop_assert!(codes.contains(&Code::TooDeep) || codes.contains(&Code::Syntax), "{codes:?}");
        }
    }
}

#[test]
fn long_binding_and_call_chains_are_bounded() {
    for n in [10, 300, 20_000] {
        let mut src = String::from("let a0 = 1\n");
        for i in 1..n {
            src.push_str(&format!("let a{i} = a{} + 1\n", i - 1));
        }
        src.push_str(&format!("volume v {{ size = a{} * 1B }}\n", n - 1));
        let codes = check(src.as_bytes());
        if n > 1000 {
            assert!(codes.contains(&Code::TooDeep), "{codes:?}");
        } else {
            // Only the warning that volumes are not enforced by this build.
            assert_eq!(codes, vec![Code::VolumesNotEnforced]);
        }
        let mut src = String::from("fn f0(x: int) = x\n");
        for i in 1..n {
            src.push_str(&format!("fn f{i}(x: int) = f{}(x)\n", i - 1));
        }
        src.push_str(&format!("let r = f{}(1)\n", n - 1));
        check(src.as_bytes());
    }
}

#[test]
fn huge_literals_are_refused_cleanly() {
    let huge_number = format!("let n = {}\n", "9".repeat(100_000));
    assert!(check(huge_number.as_bytes()).contains(&Code::InvalidNumber));
    let huge_string = format!("let s = \"{}\"\n", "a".repeat(2 << 20));
    assert!(check(huge_string.as_bytes()).contains(&Code::TooLarge));
    let huge_name = format!("let {} = 1\n", "a".repeat(1 << 20));
    check(huge_name.as_bytes());
    let many_items = format!("let l = [{}]\n", "1,".repeat(200_000));
    assert!(check(many_items.as_bytes()).is_empty());
}

#[test]
fn runaway_evaluation_stops() {
    let src = "let r = range(1000000)\nlet x = all a in r: all b in r: a + b >= 0\n";
    assert!(check(src.as_bytes()).contains(&Code::ValueTooLarge));
    let src = "let a = [1, 2]\nlet b = a + a\nlet c = b + b\n".to_owned()
        + &(0..40)
            .map(|i| {
                format!(
                    "let d{i} = {} + {}\n",
                    if i == 0 {
                        "c".into()
                    } else {
                        format!("d{}", i - 1)
                    },
                    if i == 0 {
                        "c".into()
                    } else {
                        format!("d{}", i - 1)
                    }
                )
            })
            .collect::<String>();
    assert!(check(src.as_bytes()).contains(&Code::ValueTooLarge));
}

#[test]
fn invalid_utf8_anywhere_is_a_diagnostic() {
    for pos in [0, 10, HELLO.len() / 2, HELLO.len()] {
        let mut b = HELLO.as_bytes().to_vec();
        b.insert(pos, 0xff);
        assert!(check(&b).contains(&Code::InvalidUtf8));
    }
}
