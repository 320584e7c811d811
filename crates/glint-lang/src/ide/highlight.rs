//! A class for every token, for semantic highlighting.
//!
//! Tokens come from the lexer (interpolations inside strings are lexed on
//! their own, so `${queue}` is highlighted as code); names take the class
//! of what they define or refer to ([`super::symbols`]); the rest is
//! decided by the word and its neighbours (a word before `=` or `{` in a
//! block is a field key, `service` before `.` is a declaration kind).

use super::symbols::{DefKind, FileIndex, RefTarget};
use crate::lexer::{Lexer, StrPart, TokKind, Token};
use crate::source::Span;
use std::collections::HashMap;

/// What a token is, for colouring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// `let`, `fn`, `import`, `if`, `all`, `true`, ...
    Keyword,
    /// A declaration kind (`service`, `image`), as a keyword or before `.`.
    Kind,
    /// A declaration's name (`web` in `service web`, `db` in `service.db`).
    DeclName,
    /// A field key.
    Property,
    /// A `let` binding or a variable.
    Variable,
    /// A function parameter.
    Parameter,
    /// A function.
    Function,
    /// A built-in function or collection (`len`, `services`).
    Builtin,
    /// An imported module's name.
    Namespace,
    /// An enum word (`process`, `canary`).
    EnumMember,
    /// A string.
    String,
    /// A number, duration, size, address or digest.
    Number,
    /// A comment.
    Comment,
    /// An operator.
    Operator,
}

/// One highlighted range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Highlight {
    /// Where (never across an interpolation; possibly across lines for a
    /// block comment).
    pub span: Span,
    /// What it is.
    pub class: Class,
    /// Whether this is where the name is defined.
    pub definition: bool,
}

fn def_class(k: DefKind) -> Class {
    match k {
        DefKind::Decl(_) => Class::DeclName,
        DefKind::Let | DefKind::ForVar | DefKind::QuantVar => Class::Variable,
        DefKind::Fn => Class::Function,
        DefKind::Param => Class::Parameter,
        DefKind::Import => Class::Namespace,
    }
}

/// Every highlighted token of `text`, in order. `index` is the file's
/// index (built from the same text).
pub fn highlight(text: &str, index: &FileIndex) -> Vec<Highlight> {
    let mut names: HashMap<(u32, u32), (Class, bool)> = HashMap::new();
    for r in &index.refs {
        let class = match &r.target {
            RefTarget::Def(i) => index
                .defs
                .get(*i)
                .map(|d| def_class(d.kind))
                .unwrap_or(Class::Variable),
            RefTarget::Decl(..) => Class::DeclName,
            RefTarget::Member { .. } => Class::Variable,
        };
        names.insert((r.span.start, r.span.end), (class, false));
    }
    for d in &index.defs {
        names.insert(
            (d.name_span.start, d.name_span.end),
            (def_class(d.kind), true),
        );
    }
    let enums = crate::schema::enum_words();
    let mut out = Vec::new();
    let cx = Cx {
        text,
        names: &names,
        enums: &enums,
    };
    cx.range(index.file, 0, text.len(), &mut out, 0);
    out
}

struct Cx<'a> {
    text: &'a str,
    names: &'a HashMap<(u32, u32), (Class, bool)>,
    enums: &'a [&'static str],
}

impl Cx<'_> {
    fn range(
        &self,
        file: crate::FileId,
        start: usize,
        end: usize,
        out: &mut Vec<Highlight>,
        depth: usize,
    ) {
        let mut lx = Lexer::new(self.text, file, start, end);
        let mut toks: Vec<Token> = Vec::new();
        loop {
            let t = lx.next_token();
            if t.kind == TokKind::Eof {
                break;
            }
            toks.push(t);
        }
        let significant: Vec<usize> = (0..toks.len())
            .filter(|i| toks[*i].kind != TokKind::Comment)
            .collect();
        let mut sig_pos = 0;
        for (i, t) in toks.iter().enumerate() {
            let (prev, next) = if t.kind == TokKind::Comment {
                (None, None)
            } else {
                while significant.get(sig_pos).is_some_and(|s| *s < i) {
                    sig_pos += 1;
                }
                let prev = sig_pos
                    .checked_sub(1)
                    .and_then(|p| significant.get(p))
                    .map(|p| &toks[*p]);
                let next = significant.get(sig_pos + 1).map(|p| &toks[*p]);
                (prev, next)
            };
            let push = |out: &mut Vec<Highlight>, class: Class, definition: bool| {
                out.push(Highlight {
                    span: t.span,
                    class,
                    definition,
                })
            };
            match &t.kind {
                TokKind::Comment => push(out, Class::Comment, false),
                TokKind::Str(parts) => self.string(t.span, parts, out, depth),
                TokKind::Int(_)
                | TokKind::Duration(_)
                | TokKind::Size(_)
                | TokKind::Ip(_)
                | TokKind::Cidr(_)
                | TokKind::Addr(_)
                | TokKind::Digest(_) => push(out, Class::Number, false),
                TokKind::EqEq
                | TokKind::Ne
                | TokKind::Lt
                | TokKind::Le
                | TokKind::Gt
                | TokKind::Ge
                | TokKind::Plus
                | TokKind::Minus
                | TokKind::Star
                | TokKind::Slash
                | TokKind::Percent
                | TokKind::Question
                | TokKind::Ellipsis => push(out, Class::Operator, false),
                TokKind::Ident => {
                    if let Some((class, def)) = self.names.get(&(t.span.start, t.span.end)) {
                        push(out, *class, *def);
                        continue;
                    }
                    let w = self
                        .text
                        .get(t.span.start as usize..t.span.end as usize)
                        .unwrap_or("");
                    let next_kind = next.map(|n| &n.kind);
                    let class = if super::KEYWORDS.contains(&w) {
                        Class::Keyword
                    } else if crate::parser::DECL_KINDS.contains(&w)
                        && matches!(
                            next_kind,
                            Some(
                                TokKind::Ident | TokKind::Str(_) | TokKind::Dot | TokKind::LBracket
                            )
                        )
                    {
                        Class::Kind
                    } else if matches!(next_kind, Some(TokKind::Eq | TokKind::LBrace))
                        && !matches!(prev.map(|p| &p.kind), Some(TokKind::Eq))
                    {
                        Class::Property
                    } else if matches!(w, "copy" | "run" | "test")
                        && !matches!(next_kind, Some(TokKind::Eq | TokKind::Dot))
                        || (w == "to" && matches!(prev.map(|p| &p.kind), Some(TokKind::Str(_))))
                    {
                        Class::Keyword
                    } else if self.enums.contains(&w) || crate::eval::ENUM_WORDS.contains(&w) {
                        Class::EnumMember
                    } else if crate::eval::BUILTINS.contains(&w)
                        || crate::value::Kind::from_plural(w).is_some()
                    {
                        Class::Builtin
                    } else {
                        Class::Variable
                    };
                    push(out, class, false);
                }
                _ => {}
            }
        }
    }

    /// A string: its literal text as strings, its interpolations as code.
    fn string(&self, span: Span, parts: &[StrPart], out: &mut Vec<Highlight>, depth: usize) {
        let mut at = span.start;
        for p in parts {
            if let StrPart::Interp(inner) = p {
                if depth > 32 {
                    break;
                }
                if inner.start > at {
                    out.push(Highlight {
                        span: Span {
                            file: span.file,
                            start: at,
                            end: inner.start,
                        },
                        class: Class::String,
                        definition: false,
                    });
                }
                self.range(
                    span.file,
                    inner.start as usize,
                    inner.end as usize,
                    out,
                    depth + 1,
                );
                at = inner.end;
            }
        }
        if span.end > at {
            out.push(Highlight {
                span: Span {
                    file: span.file,
                    start: at,
                    end: span.end,
                },
                class: Class::String,
                definition: false,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FileId;

    fn classes(src: &str) -> Vec<(String, Class)> {
        let ix = FileIndex::build("m.glint", src, FileId(0));
        highlight(src, &ix)
            .into_iter()
            .map(|h| {
                (
                    src[h.span.start as usize..h.span.end as usize].to_owned(),
                    h.class,
                )
            })
            .collect()
    }

    #[test]
    fn tokens_get_classes_from_their_role() {
        let src = "// c\nlet port = 80\nservice web {\n  instances = len([1])\n  provider = docker\n  port = port\n  env = { A = \"x${port}y\" }\n}\nrule r { to = service.web }\n";
        let got = classes(src);
        let find = |w: &str, n: usize| got.iter().filter(|(t, _)| t == w).nth(n).map(|(_, c)| *c);
        assert_eq!(find("// c", 0), Some(Class::Comment));
        assert_eq!(find("let", 0), Some(Class::Keyword));
        assert_eq!(find("port", 0), Some(Class::Variable), "the let");
        assert_eq!(find("80", 0), Some(Class::Number));
        assert_eq!(find("service", 0), Some(Class::Kind));
        assert_eq!(find("web", 0), Some(Class::DeclName));
        assert_eq!(find("instances", 0), Some(Class::Property));
        assert_eq!(find("len", 0), Some(Class::Builtin));
        assert_eq!(find("docker", 0), Some(Class::EnumMember));
        assert_eq!(find("port", 1), Some(Class::Property), "the field key");
        assert_eq!(find("port", 2), Some(Class::Variable), "the use of the let");
        assert_eq!(find("\"x${", 0), Some(Class::String));
        assert_eq!(
            find("port", 3),
            Some(Class::Variable),
            "inside the interpolation"
        );
        assert_eq!(find("}y\"", 0), Some(Class::String));
        assert_eq!(find("service", 1), Some(Class::Kind), "before a dot");
        assert_eq!(find("web", 1), Some(Class::DeclName), "a reference");
    }

    #[test]
    fn highlights_are_in_order_and_do_not_overlap() {
        let src = include_str!("../../../../examples/three-tier/main.glint");
        let ix = FileIndex::build("main.glint", src, FileId(0));
        let hs = highlight(src, &ix);
        assert!(hs.len() > 250, "{}", hs.len());
        for w in hs.windows(2) {
            assert!(
                w[0].span.end <= w[1].span.start,
                "{:?} then {:?}",
                w[0],
                w[1]
            );
        }
    }
}
