//! The field tables are the one list of every block's fields: these tests
//! hold the documentation, the defaults and the compiler to them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use glint_lang::schema::{self, BlockKind, FieldDefault};
use glint_lang::{Capabilities, CompileOptions, MemoryLoader, compile};

/// The markdown table `docs/language.md` must hold for a block.
fn markdown_table(kind: BlockKind) -> String {
    let mut out = String::from("| field | type | default | meaning |\n| --- | --- | --- | --- |\n");
    for f in schema::fields(kind) {
        if !f.settable {
            continue;
        }
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            f.name,
            f.ty,
            f.default.text(),
            f.doc
        ));
    }
    out
}

#[test]
fn docs_list_every_field_with_its_type_default_and_doc() {
    let doc = include_str!("../../../docs/language.md");
    let mut missing = Vec::new();
    for kind in BlockKind::ALL {
        let table = markdown_table(*kind);
        if !doc.contains(&table) {
            missing.push(format!("### {} ({kind:?})\n\n{table}", kind.path()));
        }
    }
    assert!(
        missing.is_empty(),
        "docs/language.md lacks these tables (copy them in):\n\n{}",
        missing.join("\n")
    );
}

/// A minimal environment in which a block of `kind` appears, as
/// (sources with `@` where the block's own entries go, the list policies
/// range over, the path from a list element to the block).
fn setting(kind: BlockKind) -> (&'static str, &'static str, &'static str) {
    match kind {
        BlockKind::Image => ("image x {\n@\n}\n", "images", "x"),
        BlockKind::Service => ("service x {\n  image = image.app\n@\n}\n", "services", "x"),
        BlockKind::Health => (
            "service x {\n  image = image.app\n  health {\n    tcp = true\n@\n  }\n}\n",
            "services",
            "x.health",
        ),
        BlockKind::Rollout => (
            "service x {\n  image = image.app\n  rollout {\n@\n  }\n}\n",
            "services",
            "x.rollout",
        ),
        BlockKind::Rolling => (
            "service x {\n  image = image.app\n  rollout = rolling {\n@\n  }\n}\n",
            "services",
            "x.rollout.strategy",
        ),
        BlockKind::BlueGreen => (
            "service x {\n  image = image.app\n  rollout = blue_green {\n@\n  }\n}\n",
            "services",
            "x.rollout.strategy",
        ),
        BlockKind::Canary => (
            "service x {\n  image = image.app\n  rollout = canary {\n@\n  }\n}\n",
            "services",
            "x.rollout.strategy",
        ),
        BlockKind::Resources => (
            "service x {\n  image = image.app\n  resources {\n@\n  }\n}\n",
            "services",
            "x.resources",
        ),
        BlockKind::Autoscale => (
            "service x {\n  image = image.app\n  autoscale {\n    max = 9\n@\n  }\n}\n",
            "services",
            "x.autoscale",
        ),
        BlockKind::Mount => (
            "service x {\n  image = image.app\n  mounts = [{\n    volume = volume.data\n    path = \"/d\"\n@\n  }]\n}\n",
            "services",
            "x.mounts[0]",
        ),
        BlockKind::Endpoint => (
            "endpoint x {\n  listen = 127.0.0.1:9999\n  service = service.worker\n@\n}\n",
            "endpoints",
            "x",
        ),
        BlockKind::Rule => (
            "rule x {\n  from = 10.0.0.0/8\n  to = service.worker\n@\n}\n",
            "rules",
            "x",
        ),
        BlockKind::Variable => ("variable x {\n  runtime = true\n@\n}\n", "variables", "x"),
        BlockKind::Volume => ("volume x {\n@\n}\n", "volumes", "x"),
        BlockKind::Notify => (
            "notify x {\n  url = \"http://127.0.0.1:9/hook\"\n  secret = \"ops/hook\"\n@\n}\n",
            "notifies",
            "x",
        ),
        BlockKind::Policy => (
            "policy x {\n  message = \"m\"\n  check = true\n@\n}\n",
            "policies",
            "x",
        ),
        BlockKind::Environment => ("environment x {\n@\n}\n", "", ""),
    }
}

const BASE: &str = "image app {\n  entrypoint = [\"/app\"]\n  port = 8080\n}\nservice worker {\n  image = image.app\n}\nvolume data {}\n";

fn compile_all(src: &str) -> glint_lang::Compilation {
    let mut loader = MemoryLoader::new();
    loader.add("main.glint", format!("{BASE}{src}"));
    let options = CompileOptions {
        enforced: Capabilities::all(),
        ..CompileOptions::default()
    };
    compile("main.glint", &loader, &options)
}

/// A field left out has the documented default, as policies see it (and a
/// check against any other value fails, so the test cannot pass vacuously).
#[test]
fn left_out_fields_have_their_documented_defaults() {
    let mut checked = 0;
    for kind in BlockKind::ALL {
        let (src, list, path) = setting(*kind);
        if list.is_empty() {
            continue;
        }
        let body = src.replace("@\n", "");
        for f in schema::fields(*kind) {
            // A variable's `secret` is written as a reference but seen by
            // policies as whether the variable is a secret.
            if !f.viewable || body.contains(&format!(" {} ", f.name)) || f.name == "secret" {
                continue;
            }
            let want = match f.default {
                FieldDefault::Value(v) => v.to_owned(),
                FieldDefault::Absent => "none".to_owned(),
                _ => continue,
            };
            for (op, holds) in [("==", true), ("!=", false)] {
                let policy = format!(
                    "policy dflt {{\n  message = \"no\"\n  check = all x in {list}: x.name != \"x\" or {path}.{} {op} {want}\n}}\n",
                    f.name
                );
                let c = compile_all(&format!("{body}{policy}"));
                let rendered = c.diagnostics.render_human(false);
                assert_eq!(
                    !c.has_errors(),
                    holds,
                    "{}.{} {op} {want}:\n{rendered}",
                    kind.path(),
                    f.name
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 40, "only {checked} defaults checked");
}

/// Fields that the IR does not hold (checked at compile time only).
const NOT_IN_IR: &[&str] = &["context", "check", "help"];

/// Every settable field decodes its example, and setting it changes the
/// compiled environment: no entry of a table is left without a decoder.
#[test]
fn every_field_decodes_its_example_into_the_ir() {
    let mut checked = 0;
    for kind in BlockKind::ALL {
        let (src, _, _) = setting(*kind);
        let plain = compile_all(&src.replace("@\n", ""));
        assert!(
            !plain.has_errors(),
            "{kind:?}: {}",
            plain.diagnostics.render_human(false)
        );
        let plain_ir = plain.environment.unwrap().to_json_pretty();
        for f in schema::fields(*kind) {
            if !f.settable || src.contains(&format!(" {} ", f.name)) {
                continue;
            }
            let mut entry = format!("    {} = {}\n", f.name, f.example);
            // Settings that need another one.
            if f.name == "writers" {
                entry.push_str("    value = \"0\"\n");
            }
            if kind == &BlockKind::Autoscale && f.name == "metric" {
                entry.push_str("    target = 8\n");
            }
            let src = match f.name {
                "secret" => src.replace("runtime = true", "readers = []"),
                "http" => src.replace("tcp = true", "timeout = 1s"),
                _ => src.to_owned(),
            };
            let c = compile_all(&src.replace("@\n", &entry));
            assert!(
                !c.has_errors(),
                "{}.{} = {}:\n{}",
                kind.path(),
                f.name,
                f.example,
                c.diagnostics.render_human(false)
            );
            let ir = c.environment.unwrap().to_json_pretty();
            if !NOT_IN_IR.contains(&f.name) {
                assert!(ir != plain_ir, "{}.{} changes nothing", kind.path(), f.name);
            }
            checked += 1;
        }
    }
    assert!(checked >= 50, "only {checked} fields checked");
}

#[test]
fn enum_words_of_the_tables_are_never_unknown_names() {
    for w in schema::enum_words() {
        assert!(
            glint_lang::eval::ENUM_WORDS.contains(&w),
            "`{w}` is an enum word of a table but not in eval::ENUM_WORDS"
        );
    }
}

#[test]
fn every_block_documents_each_field() {
    for kind in BlockKind::ALL {
        let info = kind.info();
        assert_eq!(info.kind, *kind);
        assert!(!info.doc.is_empty());
        for f in schema::fields(*kind) {
            assert!(!f.doc.is_empty() && !f.ty.is_empty(), "{kind:?}.{}", f.name);
            assert!(!f.example.is_empty(), "{kind:?}.{}", f.name);
            let hover = f.describe();
            assert!(hover.contains(f.name) && hover.contains(f.doc), "{hover}");
        }
    }
    let autoscale = schema::field(BlockKind::Service, "autoscale").unwrap();
    assert_eq!(autoscale.block, Some(BlockKind::Autoscale));
    assert!(autoscale.describe().contains("E0603"));
    assert_eq!(
        schema::field(BlockKind::Service, "instances")
            .unwrap()
            .default,
        FieldDefault::Value("1")
    );
    assert!(schema::field(BlockKind::Service, "nope").is_none());
}
