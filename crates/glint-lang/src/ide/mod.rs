//! What an editor needs to know about Glint sources besides diagnostics:
//! names and where they are defined and used, what is written at an offset,
//! an outline, highlighting classes, and literals in plain words.
//!
//! Everything here is pure and works from syntax alone (the compiler's
//! diagnostics say what is wrong; this says where things are), so it keeps
//! working on a file that does not compile:
//! - [`symbols`]: one file's definitions (declarations, `let`, `fn`,
//!   parameters, `for` and quantifier variables, imports), its references
//!   resolved with the evaluator's scoping rules, the templates spread into
//!   declarations, and an outline;
//! - [`project`]: the files of one environment together — a reference's
//!   definition in another file (`service.db`, `tpl.backend`), every use of
//!   a definition, which edits rename it;
//! - [`context`]: what the cursor is in (the start of an item, a field key
//!   or value of a block whose kind the schema knows, a member after `.`,
//!   the unit after a number), from tokens, so half-typed input works;
//! - [`highlight`]: a class for every token (semantic highlighting);
//! - [`literals`]: durations and sizes in words (`90s` is "1 minute 30
//!   seconds").
//!
//! Field names, types, defaults and docs come from [`crate::schema`]: this
//! module lists no field of its own.

pub mod context;
pub mod highlight;
pub mod literals;
pub mod project;
pub mod symbols;

pub use context::{BlockPath, Position, Root, Seg, position_at};
pub use project::{Project, Symbol};
pub use symbols::{Def, DefKind, FileIndex, OutlineItem, RefTarget, Reference};

/// The reserved words: they cannot be names, and editors highlight them.
/// (The parser keeps its own; a test below checks that each of these is
/// reserved there.)
pub const KEYWORDS: &[&str] = &[
    "import", "let", "fn", "for", "in", "as", "all", "any", "if", "then", "else", "and", "or",
    "not", "true", "false", "none",
];

/// Whether `name` can be written as a plain name (a `let`, `fn`,
/// parameter or import alias): letters, digits, `_` and `-`, starting with
/// a letter or `_`, not ending with `-`, and not a keyword.
pub fn is_plain_name(name: &str) -> bool {
    let b = name.as_bytes();
    let Some(first) = b.first() else {
        return false;
    };
    (first.is_ascii_alphabetic() || *first == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'-')
        && !name.ends_with('-')
        && !is_reserved(name)
}

/// Whether `name` means something already: a keyword, a declaration kind
/// (`service`), a collection of policies (`services`) or a built-in function.
pub fn is_reserved(name: &str) -> bool {
    KEYWORDS.contains(&name)
        || crate::parser::DECL_KINDS.contains(&name)
        || crate::eval::BUILTINS.contains(&name)
        || crate::value::Kind::from_plural(name).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_follow_the_lexer() {
        assert!(is_plain_name("region"));
        assert!(is_plain_name("_x"));
        assert!(is_plain_name("worker-emails"));
        assert!(!is_plain_name("worker-"));
        assert!(!is_plain_name("1x"));
        assert!(!is_plain_name(""));
        assert!(!is_plain_name("a b"));
        assert!(!is_plain_name("let"));
        assert!(!is_plain_name("service"));
    }

    /// A binding named by a keyword cannot be read (the word means
    /// itself, or is refused; `all` and `any` start quantifiers); any
    /// other word can.
    #[test]
    fn every_keyword_is_reserved_and_other_words_are_not() {
        let readable = |w: &str| {
            let src = format!(
                "let {w} = \"v\"\nimage app {{\n  entrypoint = [\"/a\"]\n  env = {{ A = \"${{{w}}}\" }}\n}}\n"
            );
            let c = crate::compile_str("m.glint", &src);
            c.environment
                .and_then(|e| {
                    e.images
                        .values()
                        .next()
                        .and_then(|i| i.env.get("A").cloned())
                })
                .is_some_and(|a| a == "v")
        };
        for kw in KEYWORDS {
            if matches!(*kw, "all" | "any") {
                // Quantifier words, reserved before `x in`.
                let c = crate::compile_str("m.glint", &format!("let t = {kw} x in [1]: x == 1\n"));
                assert!(!c.has_errors(), "`{kw}` is not a quantifier");
                continue;
            }
            assert!(!readable(kw), "`{kw}` can be a name: it is not a keyword");
        }
        for w in ["region", "services_x", "lets", "format", "nothing"] {
            assert!(readable(w), "`{w}` cannot be a name");
        }
    }
}
