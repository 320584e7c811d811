//! What the cursor is in, from tokens.
//!
//! An editor asks while the user types, so the text is usually not valid:
//! `service web {` with no closing brace, `instances =` with no value. The
//! syntax tree of such text has holes where the cursor is, so this module
//! reads tokens instead and keeps a stack of what each open bracket
//! belongs to: the top level, a declaration's body (`service web {`), a
//! field's block (`health {`, `health = {`), a tagged value (`rollout =
//! canary {`), an element of a list field (`mounts = [{`), a template's
//! record (`fn backend(...) = {`), a list, a call. The stack is a
//! [`BlockPath`], which [`crate::schema`] turns into the block kind whose
//! fields apply ([`BlockPath::block`]).

use crate::lexer::{Lexer, TokKind};
use crate::parser::DECL_KINDS;
use crate::schema::{self, BlockKind};
use crate::source::{FileId, Span};
use crate::value::Kind;

/// What the outermost block of a path belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Root {
    /// A declaration's body.
    Decl(Kind),
    /// The record a top-level function returns (`fn backend(...) = {`).
    Fn(String),
    /// The record a top-level binding holds (`let base = {`).
    Let(String),
    /// Any other record.
    Other,
}

/// One step into a nested block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    /// `key { ... }` or `key = { ... }`.
    Key(String),
    /// `key = tag { ... }` (a strategy: `rollout = canary { ... }`).
    Tag {
        /// The field.
        key: String,
        /// The tag.
        tag: String,
    },
    /// `{ ... }` as an element of the list `key = [ ... ]`.
    Elem(String),
    /// A record in an expression (a call's argument, an operand).
    Record,
}

/// Where a block is: its root and the steps into it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockPath {
    /// What the outermost block belongs to.
    pub root: Root,
    /// The steps from it, outermost first.
    pub segs: Vec<Seg>,
}

impl BlockPath {
    /// The schema block this path leads to. `root` is the block of a
    /// [`Root::Fn`] or [`Root::Let`] record when the caller knows it (the
    /// kind it is spread into, [`crate::ide::Project::spread_kind`]).
    pub fn block(&self, root: Option<BlockKind>) -> Option<BlockKind> {
        let mut cur = match &self.root {
            Root::Decl(k) => BlockKind::of_decl(*k),
            Root::Fn(_) | Root::Let(_) => root?,
            Root::Other => return None,
        };
        for seg in &self.segs {
            cur = match seg {
                Seg::Key(k) | Seg::Elem(k) => schema::field(cur, k)?.block?,
                Seg::Tag { key, tag } => {
                    let f = schema::field(cur, key)?;
                    f.blocks
                        .iter()
                        .copied()
                        .chain(f.block)
                        .find(|b| b.path() == tag)?
                }
                Seg::Record => return None,
            };
        }
        Some(cur)
    }
}

/// What is at the cursor, for completion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Position {
    /// Inside a comment or a string, or typing a declaration's name:
    /// nothing to offer.
    None,
    /// Where an item starts (the top level, or a `for` body): a
    /// declaration kind or `import`, `let`, `fn`, `for`.
    Item {
        /// The word typed so far (what a completion replaces).
        prefix: Span,
    },
    /// Where an entry of a block starts: a field key.
    Key {
        /// The block.
        path: BlockPath,
        /// The keys the block already has (before and after the cursor).
        present: Vec<String>,
        /// The word typed so far.
        prefix: Span,
    },
    /// Right after `key =` (or at an element of `key = [`).
    Value {
        /// The block.
        path: BlockPath,
        /// The field.
        key: String,
        /// The word typed so far.
        prefix: Span,
    },
    /// Elsewhere in an expression.
    Expr {
        /// The block the expression is in, if any.
        path: Option<BlockPath>,
        /// The field whose value it is, if any.
        key: Option<String>,
        /// The word typed so far.
        prefix: Span,
    },
    /// After `base.`: a declaration of a kind (`service.`) or a module
    /// member (`tpl.`).
    Member {
        /// The name before the dot.
        base: String,
        /// The word typed so far after the dot.
        prefix: Span,
    },
    /// Right after a number: its unit.
    Unit {
        /// The block, if any.
        path: Option<BlockPath>,
        /// The field whose value it is, if any.
        key: Option<String>,
        /// The unit letters typed so far (after the digits).
        prefix: Span,
    },
}

/// A token, reduced to what the scanner needs.
#[derive(Debug, Clone)]
struct Tok {
    kind: TokKind,
    span: Span,
    newline_before: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Opened {
    /// The top level or a `for` body.
    Items,
    /// A block (a declaration's body, a field's block, a record).
    Block(Option<Root>, Option<Seg>),
    /// `[`, with the field it is the value of.
    Bracket(Option<String>),
    /// `(`.
    Paren,
}

#[derive(Debug, Clone)]
struct Frame {
    opened: Opened,
    /// Keys seen in this block.
    present: Vec<String>,
    /// Tokens of the current entry (or item).
    entry: Vec<Tok>,
    /// The current entry's key once `key =` or `key {` is seen.
    entry_key: Option<String>,
}

impl Frame {
    fn new(opened: Opened) -> Frame {
        Frame {
            opened,
            present: Vec::new(),
            entry: Vec::new(),
            entry_key: None,
        }
    }

    fn takes_entries(&self) -> bool {
        matches!(self.opened, Opened::Items | Opened::Block(..))
    }
}

struct Scanner<'a> {
    text: &'a str,
    stack: Vec<Frame>,
}

impl<'a> Scanner<'a> {
    fn new(text: &'a str) -> Scanner<'a> {
        Scanner {
            text,
            stack: vec![Frame::new(Opened::Items)],
        }
    }

    fn slice(&self, span: Span) -> &'a str {
        self.text
            .get(span.start as usize..span.end as usize)
            .unwrap_or("")
    }

    fn top(&mut self) -> &mut Frame {
        let last = self.stack.len() - 1;
        &mut self.stack[last]
    }

    fn word(&self, t: &Tok) -> Option<&'a str> {
        matches!(t.kind, TokKind::Ident).then(|| self.slice(t.span))
    }

    fn key_text(&self, t: &Tok) -> Option<String> {
        match &t.kind {
            TokKind::Ident => Some(self.slice(t.span).to_owned()),
            TokKind::Str(parts) => match &parts[..] {
                [crate::lexer::StrPart::Lit(l)] => Some(l.clone()),
                [] => Some(String::new()),
                _ => None,
            },
            _ => None,
        }
    }

    /// Feeds one significant token.
    fn feed(&mut self, t: Tok) {
        {
            let boundary = {
                let f = self.top();
                f.takes_entries()
                    && (t.newline_before
                        || f.entry.last().is_some_and(|p| p.kind == TokKind::Comma))
            };
            if boundary {
                let f = self.top();
                f.entry.clear();
                f.entry_key = None;
            }
        }
        match t.kind {
            TokKind::LBrace => {
                let opened = self.opened_by_brace();
                self.top().entry.push(t);
                self.stack.push(Frame::new(opened));
            }
            TokKind::LBracket => {
                let key = {
                    let f = &self.stack[self.stack.len() - 1];
                    match &f.opened {
                        Opened::Block(..)
                            if f.entry.len() == 2 && f.entry[1].kind == TokKind::Eq =>
                        {
                            f.entry_key.clone()
                        }
                        _ => None,
                    }
                };
                self.top().entry.push(t);
                self.stack.push(Frame::new(Opened::Bracket(key)));
            }
            TokKind::LParen => {
                self.top().entry.push(t);
                self.stack.push(Frame::new(Opened::Paren));
            }
            TokKind::RBrace | TokKind::RBracket | TokKind::RParen => {
                let matches = |o: &Opened| match t.kind {
                    TokKind::RBrace => matches!(o, Opened::Block(..) | Opened::Items),
                    TokKind::RBracket => matches!(o, Opened::Bracket(_)),
                    _ => matches!(o, Opened::Paren),
                };
                // Pop to the matching opener (a stray closer pops nothing).
                if let Some(pos) = self.stack[1..].iter().rposition(|f| matches(&f.opened)) {
                    self.stack.truncate(pos + 1);
                }
                self.top().entry.push(t);
            }
            TokKind::Eq => {
                let key = {
                    let f = &self.stack[self.stack.len() - 1];
                    (matches!(f.opened, Opened::Block(..)) && f.entry.len() == 1)
                        .then(|| self.key_text(&f.entry[0]))
                        .flatten()
                };
                let f = self.top();
                if let Some(k) = key {
                    f.present.push(k.clone());
                    f.entry_key = Some(k);
                }
                f.entry.push(t);
            }
            _ => self.top().entry.push(t),
        }
    }

    /// What the `{` about to be fed opens.
    fn opened_by_brace(&mut self) -> Opened {
        let f = &self.stack[self.stack.len() - 1];
        let e = &f.entry;
        match &f.opened {
            Opened::Items => {
                let first = e.first().and_then(|t| self.word(t));
                match first {
                    Some("for") => Opened::Items,
                    Some("fn") => {
                        let name = e.get(1).and_then(|t| self.word(t)).unwrap_or("");
                        Opened::Block(Some(Root::Fn(name.to_owned())), None)
                    }
                    Some("let") if e.len() == 3 => {
                        let name = e.get(1).and_then(|t| self.word(t)).unwrap_or("");
                        Opened::Block(Some(Root::Let(name.to_owned())), None)
                    }
                    Some(k) if e.len() == 2 && DECL_KINDS.contains(&k) => {
                        let kind = Kind::from_keyword(k);
                        Opened::Block(Some(kind.map(Root::Decl).unwrap_or(Root::Other)), None)
                    }
                    _ => Opened::Block(Some(Root::Other), None),
                }
            }
            Opened::Block(..) => {
                let key = e.first().and_then(|t| self.key_text(t));
                let seg = match (e.len(), key) {
                    (1, Some(k)) => Some(Seg::Key(k)),
                    (2, Some(k)) if e[1].kind == TokKind::Eq => Some(Seg::Key(k)),
                    (3, Some(k)) if e[1].kind == TokKind::Eq => match self.word(&e[2]) {
                        Some(tag) => Some(Seg::Tag {
                            key: k,
                            tag: tag.to_owned(),
                        }),
                        None => Some(Seg::Record),
                    },
                    _ => Some(Seg::Record),
                };
                if let (1, Some(Seg::Key(k))) = (e.len(), &seg) {
                    // `key {` is an entry of this block.
                    let k = k.clone();
                    let f = self.top();
                    f.present.push(k.clone());
                    f.entry_key = Some(k);
                }
                Opened::Block(None, seg)
            }
            Opened::Bracket(key) => {
                let at_element = e.last().is_none_or(|t| t.kind == TokKind::Comma);
                match key {
                    Some(k) if at_element => Opened::Block(None, Some(Seg::Elem(k.clone()))),
                    _ => Opened::Block(None, Some(Seg::Record)),
                }
            }
            Opened::Paren => Opened::Block(None, Some(Seg::Record)),
        }
    }

    /// The path of the innermost block, if the cursor is in one.
    fn path(&self) -> Option<BlockPath> {
        let mut root: Option<Root> = None;
        let mut segs = Vec::new();
        for f in &self.stack {
            match &f.opened {
                Opened::Items => {
                    root = None;
                    segs.clear();
                }
                Opened::Block(Some(r), _) => {
                    root = Some(r.clone());
                    segs.clear();
                }
                Opened::Block(None, Some(seg)) => {
                    if root.is_none() {
                        root = Some(Root::Other);
                    }
                    segs.push(seg.clone());
                }
                Opened::Block(None, None) | Opened::Bracket(_) | Opened::Paren => {}
            }
        }
        root.map(|root| BlockPath { root, segs })
    }

    /// The key of the entry the innermost block-or-bracket is part of.
    fn entry_key(&self) -> Option<String> {
        for f in self.stack.iter().rev() {
            match &f.opened {
                Opened::Block(..) | Opened::Items => return f.entry_key.clone(),
                Opened::Bracket(Some(k)) => return Some(k.clone()),
                _ => {}
            }
        }
        None
    }
}

/// Every token of the text (comments included).
fn tokens(text: &str, file: FileId) -> Vec<Tok> {
    let mut lx = Lexer::new(text, file, 0, text.len());
    let mut out = Vec::new();
    loop {
        let t = lx.next_token();
        if t.kind == TokKind::Eof {
            break;
        }
        out.push(Tok {
            kind: t.kind,
            span: t.span,
            newline_before: t.newline_before,
        });
    }
    out
}

/// What is at byte `offset` of `text`.
pub fn position_at(text: &str, file: FileId, offset: usize) -> Position {
    let offset = offset.min(text.len());
    let off = u32::try_from(offset).unwrap_or(u32::MAX);
    let toks = tokens(text, file);
    let empty = Span::new(file, offset, offset);
    // The word being typed: a name or a number touching the cursor.
    let cur = toks.iter().position(|t| {
        t.span.start < off
            && off <= t.span.end
            && (t.kind == TokKind::Ident
                || text
                    .as_bytes()
                    .get(t.span.start as usize)
                    .is_some_and(u8::is_ascii_digit))
    });
    // Inside a comment or a string.
    if toks.iter().any(|t| {
        matches!(t.kind, TokKind::Comment | TokKind::Str(_))
            && t.span.start < off
            && (off < t.span.end
                || (t.kind == TokKind::Comment
                    && off == t.span.end
                    && !text[t.span.start as usize..].starts_with("/*"))
                || (matches!(t.kind, TokKind::Str(_))
                    && !text[..t.span.end as usize].ends_with('"')))
    }) || toks.iter().any(|t| {
        // An unterminated string.
        t.kind == TokKind::Error
            && text[t.span.start as usize..].starts_with('"')
            && t.span.start < off
            && off <= t.span.end
    }) {
        return Position::None;
    }
    let stop = cur.map(|c| toks[c].span.start).unwrap_or(off);
    let mut sc = Scanner::new(text);
    let mut fed = 0;
    for t in &toks {
        if t.span.start >= stop {
            break;
        }
        fed += 1;
        if t.kind != TokKind::Comment {
            sc.feed(t.clone());
        }
    }
    let prefix = cur
        .map(|c| Span::new(file, toks[c].span.start as usize, offset))
        .unwrap_or(empty);
    // A number: its unit.
    if let Some(c) = cur
        && toks[c].kind != TokKind::Ident
    {
        let start = toks[c].span.start as usize;
        let digits = text[start..offset]
            .bytes()
            .take_while(|b| b.is_ascii_digit() || *b == b'_')
            .count();
        return Position::Unit {
            path: sc.path(),
            key: sc.entry_key(),
            prefix: Span::new(file, start + digits, offset),
        };
    }
    let top = sc.stack.len() - 1;
    let last = sc.stack[top].entry.last().cloned();
    // After `base.`
    if let Some(dot) = &last
        && dot.kind == TokKind::Dot
    {
        let e = &sc.stack[top].entry;
        let base = e
            .len()
            .checked_sub(2)
            .and_then(|i| e.get(i))
            .filter(|b| b.span.end == dot.span.start)
            .and_then(|b| sc.word(b));
        return match base {
            Some(b) => Position::Member {
                base: b.to_owned(),
                prefix,
            },
            None => Position::Expr {
                path: sc.path(),
                key: sc.entry_key(),
                prefix,
            },
        };
    }
    // A line break since the last token starts a new entry.
    let new_line = cur.map(|c| toks[c].newline_before).unwrap_or_else(|| {
        let from = toks[..fed]
            .iter()
            .rev()
            .find(|t| t.kind != TokKind::Comment)
            .map(|t| t.span.end as usize)
            .unwrap_or(0);
        text.get(from..offset).is_some_and(|s| s.contains('\n'))
    });
    let f = &sc.stack[top];
    let at_entry_start = f.takes_entries()
        && (new_line
            || f.entry.is_empty()
            || f.entry.last().is_some_and(|t| t.kind == TokKind::Comma));
    match &f.opened {
        Opened::Items => {
            if at_entry_start {
                Position::Item { prefix }
            } else if f.entry.len() == 1
                && sc.word(&f.entry[0]).is_some_and(|w| {
                    DECL_KINDS.contains(&w) || matches!(w, "let" | "fn" | "for" | "import")
                })
            {
                // Typing a new name.
                Position::None
            } else {
                Position::Expr {
                    path: None,
                    key: None,
                    prefix,
                }
            }
        }
        Opened::Block(..) => {
            let path = sc.path().unwrap_or(BlockPath {
                root: Root::Other,
                segs: Vec::new(),
            });
            if at_entry_start {
                let depth = top;
                let present = present_keys(&mut sc, &toks[fed..], depth, cur);
                return Position::Key {
                    path,
                    present,
                    prefix,
                };
            }
            match (&f.entry_key, f.entry.len()) {
                (Some(k), 2) => Position::Value {
                    path,
                    key: k.clone(),
                    prefix,
                },
                _ => Position::Expr {
                    key: f.entry_key.clone(),
                    path: Some(path),
                    prefix,
                },
            }
        }
        Opened::Bracket(key) => {
            let at_element = f.entry.is_empty() || last.is_some_and(|t| t.kind == TokKind::Comma);
            match (key, sc.path(), at_element) {
                (Some(k), Some(path), true) => Position::Value {
                    path,
                    key: k.clone(),
                    prefix,
                },
                (key, path, _) => Position::Expr {
                    path,
                    key: key.clone(),
                    prefix,
                },
            }
        }
        Opened::Paren => Position::Expr {
            path: sc.path(),
            key: None,
            prefix,
        },
    }
}

/// The keys of the block at `depth`: those seen so far, and those after
/// the cursor up to the block's end.
fn present_keys(
    sc: &mut Scanner<'_>,
    rest: &[Tok],
    depth: usize,
    cur: Option<usize>,
) -> Vec<String> {
    // The word being typed is not a key yet.
    let skip = usize::from(cur.is_some());
    // Later tokens start a new entry: the cursor's line is its own.
    sc.stack[depth].entry.clear();
    sc.stack[depth].entry_key = None;
    let mut keys = Vec::new();
    for t in rest.iter().skip(skip) {
        if t.kind == TokKind::Comment {
            continue;
        }
        if matches!(
            t.kind,
            TokKind::RBrace | TokKind::RBracket | TokKind::RParen
        ) {
            // The closer may pop our block: keep what it had.
            keys = sc.stack[depth].present.clone();
        }
        sc.feed(t.clone());
        if sc.stack.len() <= depth {
            break;
        }
    }
    if sc.stack.len() > depth {
        keys = sc.stack[depth].present.clone();
    }
    keys.sort();
    keys.dedup();
    keys
}

/// The field key at `offset` (a name followed by `=` or `{` at the start
/// of an entry), with its block and span.
pub fn key_at(text: &str, file: FileId, offset: usize) -> Option<(BlockPath, String, Span)> {
    let off = u32::try_from(offset).ok()?;
    let toks = tokens(text, file);
    let i = toks
        .iter()
        .position(|t| t.span.start <= off && off <= t.span.end && t.kind == TokKind::Ident)?;
    let t = &toks[i];
    let next = toks[i + 1..].iter().find(|t| t.kind != TokKind::Comment)?;
    if !matches!(next.kind, TokKind::Eq | TokKind::LBrace) {
        return None;
    }
    match position_at(text, file, t.span.start as usize) {
        Position::Key { path, .. } => {
            let name = text
                .get(t.span.start as usize..t.span.end as usize)?
                .to_owned();
            Some((path, name, t.span))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The position at `|` in `src` (the bar is removed).
    fn pos(src: &str) -> (Position, String) {
        let at = src.find('|').unwrap_or(src.len());
        let text = src.replacen('|', "", 1);
        (position_at(&text, FileId(0), at), text)
    }

    fn key_block(src: &str) -> (Option<BlockKind>, Vec<String>, String) {
        match pos(src) {
            (
                Position::Key {
                    path,
                    present,
                    prefix,
                },
                text,
            ) => (
                path.block(None),
                present,
                text[prefix.start as usize..prefix.end as usize].to_owned(),
            ),
            (other, _) => panic!("not a key position: {other:?}"),
        }
    }

    #[test]
    fn the_top_level_offers_items() {
        assert!(matches!(pos("|").0, Position::Item { .. }));
        assert!(matches!(pos("let a = 1\nser|").0, Position::Item { .. }));
        assert!(matches!(pos("service web {}\n|").0, Position::Item { .. }));
        assert_eq!(pos("service |").0, Position::None);
    }

    #[test]
    fn a_declaration_body_offers_its_fields_even_unclosed() {
        let (b, present, prefix) = key_block("service web {\n  image = image.app\n  inst|\n");
        assert_eq!(b, Some(BlockKind::Service));
        assert_eq!(present, vec!["image".to_owned()]);
        assert_eq!(prefix, "inst");
        let (b, present, _) = key_block(
            "service web {\n  |\n  instances = 2\n  health { http = \"/\" }\n}\nservice db { port = 1 }\n",
        );
        assert_eq!(b, Some(BlockKind::Service));
        assert_eq!(present, vec!["health".to_owned(), "instances".to_owned()]);
        let (b, _, _) = key_block("endpoint e { listen = 127.0.0.1:80, | }");
        assert_eq!(b, Some(BlockKind::Endpoint));
    }

    #[test]
    fn nested_blocks_strategies_and_list_elements_have_their_kinds() {
        assert_eq!(
            key_block("service a {\n  health {\n    |\n  }\n}").0,
            Some(BlockKind::Health)
        );
        assert_eq!(
            key_block("service a {\n  health = {\n    |").0,
            Some(BlockKind::Health)
        );
        assert_eq!(
            key_block("service a {\n  rollout = canary { | }\n}").0,
            Some(BlockKind::Canary)
        );
        assert_eq!(
            key_block("service a {\n  rollout {\n    strategy = blue_green {\n      |").0,
            Some(BlockKind::BlueGreen)
        );
        assert_eq!(
            key_block("service a {\n  mounts = [{ volume = volume.v }, { | }]\n}").0,
            Some(BlockKind::Mount)
        );
        assert_eq!(
            key_block("service a {\n  image {\n    |").0,
            Some(BlockKind::Image)
        );
        // A record passed to a function is not a block of the schema.
        assert_eq!(key_block("service a {\n  ...f({ | })\n}").0, None);
    }

    #[test]
    fn a_template_body_is_rooted_at_its_function() {
        match pos("fn backend(port: port = 8080) = {\n  health {\n    |").0 {
            Position::Key { path, .. } => {
                assert_eq!(path.root, Root::Fn("backend".into()));
                assert_eq!(path.block(None), None);
                assert_eq!(
                    path.block(Some(BlockKind::Service)),
                    Some(BlockKind::Health)
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn after_equals_is_a_value_and_after_a_dot_a_member() {
        match pos("service a {\n  on_exec = |\n}").0 {
            Position::Value { path, key, .. } => {
                assert_eq!(key, "on_exec");
                assert_eq!(path.block(None), Some(BlockKind::Service));
            }
            other => panic!("{other:?}"),
        }
        match pos("endpoint e {\n  service = service.w|\n}").0 {
            Position::Member { base, .. } => assert_eq!(base, "service"),
            other => panic!("{other:?}"),
        }
        match pos("service a {\n  ...tpl.|").0 {
            Position::Member { base, .. } => assert_eq!(base, "tpl"),
            other => panic!("{other:?}"),
        }
        match pos("variable v {\n  readers = [service.api, |]\n}").0 {
            Position::Value { key, .. } => assert_eq!(key, "readers"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_number_offers_units_for_its_field() {
        match pos("service a {\n  drain = 30|\n}").0 {
            Position::Unit { key, prefix, .. } => {
                assert_eq!(key.as_deref(), Some("drain"));
                assert!(prefix.is_empty());
            }
            other => panic!("{other:?}"),
        }
        let (p, text) = pos("service a {\n  resources { memory = 512Mi| }\n}");
        match p {
            Position::Unit { key, prefix, path } => {
                assert_eq!(key.as_deref(), Some("memory"));
                assert_eq!(&text[prefix.start as usize..prefix.end as usize], "Mi");
                assert_eq!(path.and_then(|p| p.block(None)), Some(BlockKind::Resources));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn comments_and_strings_offer_nothing() {
        assert_eq!(pos("// service |").0, Position::None);
        assert_eq!(pos("service a {\n  args = [\"--q|\"]\n}").0, Position::None);
        assert_eq!(pos("service a {\n  env = { A = \"x|").0, Position::None);
    }

    #[test]
    fn keys_are_found_for_hover() {
        let src = "service a {\n  health {\n    interval = 5s\n  }\n}";
        let at = src.find("interval").unwrap_or(0) + 2;
        let (path, name, span) = key_at(src, FileId(0), at).unwrap_or_else(|| panic!("no key"));
        assert_eq!(name, "interval");
        assert_eq!(path.block(None), Some(BlockKind::Health));
        assert_eq!(&src[span.start as usize..span.end as usize], "interval");
        // A value is not a key.
        let v = src.find("5s").unwrap_or(0);
        assert!(key_at(src, FileId(0), v).is_none());
    }
}
