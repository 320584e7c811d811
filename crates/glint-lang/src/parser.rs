//! The parser: recursive descent for items and blocks, Pratt parsing for
//! expressions.
//!
//! It recovers from errors at entry and item boundaries, so that one run
//! reports every syntax error. Nesting is limited to [`MAX_DEPTH`] levels:
//! deeper input gets a diagnostic, never a stack overflow.

use crate::ast::*;
use crate::codes::Code;
use crate::diag::{Diagnostic, did_you_mean};
use crate::lexer::{Lexer, StrPart, TokKind, Token};
use crate::source::{FileId, Span};
use std::rc::Rc;

/// Deepest nesting of expressions and blocks.
pub const MAX_DEPTH: usize = 128;

/// The declaration kinds.
pub const DECL_KINDS: &[&str] = &[
    "environment",
    "image",
    "service",
    "endpoint",
    "rule",
    "variable",
    "volume",
    "notify",
    "policy",
];

const ITEM_KEYWORDS: &[&str] = &["import", "let", "fn", "for"];

/// Whether a word is reserved (a `match`, so that the check on every name
/// costs a length switch rather than a scan).
fn is_keyword(w: &str) -> bool {
    matches!(
        w,
        "import"
            | "let"
            | "fn"
            | "for"
            | "in"
            | "as"
            | "all"
            | "any"
            | "if"
            | "then"
            | "else"
            | "and"
            | "or"
            | "not"
            | "true"
            | "false"
            | "none"
    )
}

/// Parses a whole file. Diagnostics are appended to `diags`.
pub fn parse_file(text: &str, file: FileId, diags: &mut Vec<Diagnostic>) -> File {
    let lexer = Lexer::new(text, file, 0, text.len());
    let mut p = Parser::new(text, file, lexer, diags, 0);
    p.file()
}

/// Parses a file for the compiler: the bodies of top-level declarations
/// (policies excepted, whose checks are kept as expressions) are only
/// located, as [`Block::deferred`] blocks, and parsed later, one at a time,
/// with [`parse_body`]. Syntax errors inside them are reported then.
pub fn parse_file_lazy(text: &str, file: FileId, diags: &mut Vec<Diagnostic>) -> File {
    let lexer = Lexer::new(text, file, 0, text.len());
    let mut p = Parser::new(text, file, lexer, diags, 0);
    p.lazy = true;
    p.file()
}

/// Parses the block of a [`Block::deferred`] body (its span, from `{` to
/// `}`). Diagnostics are appended to `diags`.
pub fn parse_body(text: &str, span: Span, diags: &mut Vec<Diagnostic>) -> Block {
    parse_body_with(text, span, diags, &mut Default::default())
}

/// [`parse_body`] sharing `names` (the names and keys seen so far, each
/// allocated once) across the bodies of a compilation.
pub fn parse_body_with(
    text: &str,
    span: Span,
    diags: &mut Vec<Diagnostic>,
    names: &mut crate::fxhash::FxSet<Rc<str>>,
) -> Block {
    let lexer = Lexer::new(text, span.file, span.start as usize, span.end as usize);
    let mut p = Parser::new(text, span.file, lexer, diags, 0);
    p.interned = std::mem::take(names);
    let block = p.block();
    *names = std::mem::take(&mut p.interned);
    match block {
        Ok(b) => b,
        Err(()) => Block {
            entries: Vec::new(),
            dangling: Vec::new(),
            span,
            multiline: true,
            recovered: true,
            deferred: false,
        },
    }
}

/// Parses a single expression from a range of a file (used for string
/// interpolations).
fn parse_sub_expr(text: &str, span: Span, diags: &mut Vec<Diagnostic>, depth: usize) -> Expr {
    let lexer = Lexer::new(text, span.file, span.start as usize, span.end as usize);
    let mut p = Parser::new(text, span.file, lexer, diags, depth);
    if p.at(&TokKind::Eof) {
        p.error_here("expected an expression inside `${}`", "empty interpolation");
        return Expr {
            kind: ExprKind::Error,
            span,
        };
    }
    let e = p.expr();
    if !p.at(&TokKind::Eof) && !p.aborted {
        let t = p.peek().clone();
        p.error_at(
            t.span,
            format!(
                "expected `}}` to close the interpolation, found {}",
                t.kind.describe()
            ),
            "unexpected here",
        );
    }
    e
}

struct Parser<'a, 'd> {
    text: &'a str,
    lexer: Lexer<'a>,
    /// Tokens read ahead of the cursor (comments included).
    buf: std::collections::VecDeque<Token>,
    /// Tokens consumed so far (to detect progress during recovery).
    pos: usize,
    /// The span of the last non-comment token consumed.
    last: Span,
    diags: &'d mut Vec<Diagnostic>,
    pending: Vec<(Comment, bool)>,
    depth: usize,
    aborted: bool,
    /// Whether `name {` may start a tagged value (off in `for ... in EXPR {`).
    no_brace: bool,
    /// Names and keys seen so far: each distinct text is allocated once.
    interned: crate::fxhash::FxSet<Rc<str>>,
    /// Top-level declaration bodies are located, not parsed.
    lazy: bool,
    /// Inside a `for` (its declarations are parsed in full).
    in_for: bool,
    /// The token at the cursor is known not to be a comment (comments
    /// there have been moved to `pending`).
    clean: bool,
}

/// Whether any diagnostic was added since `mark`.
fn errors_since(diags: &[Diagnostic], mark: usize) -> bool {
    diags.len() > mark
}

type PResult<T> = Result<T, ()>;

impl<'a, 'd> Parser<'a, 'd> {
    fn new(
        text: &'a str,
        file: FileId,
        lexer: Lexer<'a>,
        diags: &'d mut Vec<Diagnostic>,
        depth: usize,
    ) -> Self {
        Parser {
            text,
            lexer,
            buf: std::collections::VecDeque::new(),
            pos: 0,
            last: Span::new(file, 0, 0),
            diags,
            pending: Vec::new(),
            depth,
            aborted: false,
            no_brace: false,
            interned: crate::fxhash::FxSet::default(),
            lazy: false,
            in_for: false,
            clean: false,
        }
    }

    // ----- token access -------------------------------------------------

    /// The shared copy of a name's text.
    fn intern(&mut self, s: &str) -> Rc<str> {
        if let Some(r) = self.interned.get(s) {
            return r.clone();
        }
        let r: Rc<str> = Rc::from(s);
        self.interned.insert(r.clone());
        r
    }

    /// Makes sure `n` raw tokens are read ahead.
    fn fill(&mut self, n: usize) {
        while self.buf.len() < n {
            let t = self.lexer.next_token();
            if !self.lexer.diags.is_empty() {
                self.diags.append(&mut self.lexer.diags);
            }
            self.buf.push_back(t);
        }
    }

    /// The raw token at the cursor (a comment, possibly).
    fn raw(&mut self) -> &Token {
        self.fill(1);
        &self.buf[0]
    }

    /// Moves comments at the cursor into `pending`. A comment that starts
    /// a line (or spans lines) leaves the token after it on a new line, so
    /// that `/* note */ key = value` at the start of a line is an entry of
    /// its own.
    fn skip_comments(&mut self) {
        if self.clean {
            return;
        }
        let mut line_break = false;
        loop {
            self.fill(1);
            let t = &self.buf[0];
            if !matches!(t.kind, TokKind::Comment) {
                if line_break {
                    self.buf[0].newline_before = true;
                }
                self.clean = true;
                break;
            }
            line_break |= t.newline_before || self.text_of(t.span).contains('\n');
            let c = Comment {
                text: self.text[t.span.start as usize..t.span.end as usize]
                    .trim_end()
                    .to_owned(),
                span: t.span,
                blank_before: t.blank_before,
            };
            let nl = t.newline_before;
            self.pending.push((c, nl));
            self.buf.pop_front();
            self.clean = false;
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> &Token {
        self.skip_comments();
        &self.buf[0]
    }

    fn peek_nth(&mut self, n: usize) -> &Token {
        self.skip_comments();
        let mut i = 0;
        let mut seen = 0;
        loop {
            self.fill(i + 1);
            let kind = &self.buf[i].kind;
            if matches!(*kind, TokKind::Eof) {
                return &self.buf[i];
            }
            if !matches!(*kind, TokKind::Comment) {
                if seen == n {
                    return &self.buf[i];
                }
                seen += 1;
            }
            i += 1;
        }
    }

    fn bump(&mut self) -> Token {
        self.skip_comments();
        if matches!(self.buf[0].kind, TokKind::Eof) {
            return self.buf[0].clone();
        }
        self.clean = false;
        self.pos += 1;
        match self.buf.pop_front() {
            Some(t) => {
                self.last = t.span;
                t
            }
            None => self.buf[0].clone(),
        }
    }

    fn at(&mut self, k: &TokKind) -> bool {
        std::mem::discriminant(&self.peek().kind) == std::mem::discriminant(k)
    }

    fn text_of(&self, span: Span) -> &'a str {
        self.text
            .get(span.start as usize..span.end as usize)
            .unwrap_or("")
    }

    fn at_ident(&mut self, word: &str) -> bool {
        let t = self.peek();
        let span = t.span;
        matches!(t.kind, TokKind::Ident) && self.text_of(span) == word
    }

    fn prev_end(&self) -> Span {
        self.last
    }

    // ----- errors -------------------------------------------------------

    fn error_at(&mut self, span: Span, msg: impl Into<String>, label: impl Into<String>) {
        if self.aborted {
            return;
        }
        self.diags
            .push(Diagnostic::error(Code::Syntax, span, msg).with_primary(label));
    }

    fn error_here(&mut self, msg: impl Into<String>, label: impl Into<String>) {
        let span = self.peek().span;
        self.error_at(span, msg, label);
    }

    fn expected(&mut self, what: &str) {
        let t = self.peek().clone();
        if matches!(t.kind, TokKind::Error) {
            return; // already reported by the lexer
        }
        let found = if matches!(t.kind, TokKind::Ident) {
            format!("`{}`", self.text_of(t.span))
        } else {
            t.kind.describe().to_owned()
        };
        self.error_at(
            t.span,
            format!("expected {what}, found {found}"),
            format!("expected {what}"),
        );
    }

    fn expect(&mut self, k: TokKind, what: &str) -> PResult<Token> {
        if self.at(&k) {
            Ok(self.bump())
        } else {
            self.expected(what);
            Err(())
        }
    }

    fn enter(&mut self) -> PResult<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            if !self.aborted {
                let span = self.peek().span;
                self.diags.push(
                    Diagnostic::error(Code::TooDeep, span, "nesting too deep")
                        .with_primary(format!("more than {MAX_DEPTH} levels of nesting"))
                        .with_help("flatten the value with `let` bindings"),
                );
            }
            self.aborted = true;
            return Err(());
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    // ----- trivia -------------------------------------------------------

    fn take_leading(&mut self) -> (Vec<Comment>, bool) {
        let t_blank = self.peek().blank_before;
        let leading: Vec<Comment> = self.pending.drain(..).map(|(c, _)| c).collect();
        (leading, t_blank)
    }

    /// A comment on the same line right after the construct that just ended.
    fn take_trailing(&mut self) -> Option<Box<Comment>> {
        // Look at the raw next token (do not skip comments first).
        if let Some((c, nl)) = self.pending.first() {
            if !nl {
                let c = Box::new(c.clone());
                self.pending.remove(0);
                return Some(c);
            }
            return None;
        }
        let t = self.raw().clone();
        if matches!(t.kind, TokKind::Comment) && !t.newline_before {
            let c = Comment {
                text: self.text_of(t.span).trim_end().to_owned(),
                span: t.span,
                blank_before: false,
            };
            self.buf.pop_front();
            self.clean = false;
            self.pos += 1;
            return Some(Box::new(c));
        }
        None
    }

    fn take_dangling(&mut self) -> Vec<Comment> {
        self.skip_comments();
        self.pending.drain(..).map(|(c, _)| c).collect()
    }

    // ----- recovery -----------------------------------------------------

    /// Skips to the start of the next line at the current nesting level (or a
    /// closing brace of the enclosing block).
    fn recover_line(&mut self) {
        let mut depth = 0usize;
        let start = self.pos;
        loop {
            let t = self.peek().clone();
            match t.kind {
                TokKind::Eof => return,
                TokKind::RBrace if depth == 0 => return,
                _ if depth == 0 && t.newline_before && self.pos > start => return,
                TokKind::LBrace | TokKind::LBracket | TokKind::LParen => depth += 1,
                TokKind::RBrace | TokKind::RBracket | TokKind::RParen => {
                    depth = depth.saturating_sub(1)
                }
                _ => {}
            }
            self.bump();
        }
    }

    // ----- items --------------------------------------------------------

    fn file(&mut self) -> File {
        let mut items = Vec::new();
        let mut lazy = Vec::new();
        loop {
            if self.aborted {
                break;
            }
            if self.at(&TokKind::Eof) {
                break;
            }
            if self.at(&TokKind::RBrace) {
                self.error_here("unexpected `}`", "no block to close here");
                self.bump();
                continue;
            }
            let before = self.pos;
            match self.item() {
                Ok(item) => match item.kind {
                    // A located body with a plain name: kept compact.
                    ItemKind::Decl(d)
                        if d.body.deferred && matches!(d.name, DeclName::Ident(_)) =>
                    {
                        let Decl { kind, name, body } = *d;
                        if let DeclName::Ident(name) = name {
                            lazy.push(LazyDecl {
                                kind,
                                name,
                                body: body.span,
                            });
                        }
                    }
                    kind => items.push(Item { kind, ..item }),
                },
                Err(()) => {
                    self.recover_item();
                    if self.pos == before {
                        self.bump();
                    }
                }
            }
        }
        let dangling = self.take_dangling();
        items.shrink_to_fit();
        lazy.shrink_to_fit();
        File {
            items,
            dangling,
            lazy,
        }
    }

    fn recover_item(&mut self) {
        let mut depth = 0usize;
        let start = self.pos;
        loop {
            let t = self.peek().clone();
            match t.kind {
                TokKind::Eof => return,
                TokKind::Ident if depth == 0 && t.newline_before && self.pos > start => {
                    let w = self.text_of(t.span);
                    if DECL_KINDS.contains(&w) || ITEM_KEYWORDS.contains(&w) {
                        return;
                    }
                }
                TokKind::LBrace | TokKind::LBracket | TokKind::LParen => depth += 1,
                TokKind::RBrace | TokKind::RBracket | TokKind::RParen => {
                    if depth == 0 && matches!(t.kind, TokKind::RBrace) {
                        self.bump();
                        return;
                    }
                    depth = depth.saturating_sub(1);
                    if depth == 0 && matches!(t.kind, TokKind::RBrace) {
                        self.bump();
                        // A closed top-level block ends the broken item.
                        if self.peek().newline_before {
                            return;
                        }
                        continue;
                    }
                }
                _ => {}
            }
            self.bump();
        }
    }

    fn item(&mut self) -> PResult<Item> {
        let (leading, blank_before) = self.take_leading();
        let first = self.peek().clone();
        let start = first.span;
        if !matches!(first.kind, TokKind::Ident) {
            self.expected(
                "a declaration (`service`, `image`, ...), `let`, `fn`, `import` or `for`",
            );
            return Err(());
        }
        let word = self.text_of(first.span);
        let kind = match word {
            "import" => self.import()?,
            "let" => self.let_item()?,
            "fn" => self.fn_item()?,
            "for" => self.for_item()?,
            _ => ItemKind::Decl(Box::new(self.decl()?)),
        };
        let span = start.to(self.prev_end());
        let trailing = self.take_trailing();
        Ok(Item {
            trivia: Trivia {
                leading,
                blank_before,
                trailing,
            },
            kind,
            span,
        })
    }

    fn ident(&mut self, what: &str) -> PResult<Ident> {
        let t = self.peek().clone();
        if matches!(t.kind, TokKind::Ident) {
            self.bump();
            Ok(Ident {
                name: self.intern(self.text_of(t.span)),
                span: t.span,
            })
        } else {
            self.expected(what);
            Err(())
        }
    }

    fn import(&mut self) -> PResult<ItemKind> {
        self.bump();
        let t = self.peek().clone();
        let path = match &t.kind {
            TokKind::Str(parts) => match &parts[..] {
                [StrPart::Lit(s)] => s.clone(),
                _ => {
                    self.error_at(
                        t.span,
                        "import paths cannot be interpolated",
                        "interpolated path",
                    );
                    return Err(());
                }
            },
            _ => {
                self.expected("a file path string after `import`");
                return Err(());
            }
        };
        self.bump();
        let alias = if self.at_ident("as") {
            self.bump();
            Some(self.ident("a module name after `as`")?)
        } else {
            None
        };
        Ok(ItemKind::Import(Box::new(Import {
            path,
            path_span: t.span,
            alias,
        })))
    }

    fn let_item(&mut self) -> PResult<ItemKind> {
        self.bump();
        let name = self.ident("a name after `let`")?;
        let ty = if self.at(&TokKind::Colon) {
            self.bump();
            Some(self.type_expr()?)
        } else {
            None
        };
        self.expect(TokKind::Eq, "`=`")?;
        let value = self.expr();
        self.end_of_line("the end of the `let`")?;
        Ok(ItemKind::Let(Box::new(LetItem { name, ty, value })))
    }

    fn fn_item(&mut self) -> PResult<ItemKind> {
        self.bump();
        let name = self.ident("a function name after `fn`")?;
        self.expect(TokKind::LParen, "`(` and the parameters")?;
        let mut params = Vec::new();
        while !self.at(&TokKind::RParen) {
            let pname = self.ident("a parameter name")?;
            let ty = if self.at(&TokKind::Colon) {
                self.bump();
                Some(self.type_expr()?)
            } else {
                None
            };
            let default = if self.at(&TokKind::Eq) {
                self.bump();
                Some(self.expr())
            } else {
                None
            };
            params.push(Param {
                name: pname,
                ty,
                default,
            });
            if self.at(&TokKind::Comma) {
                self.bump();
            } else if !self.at(&TokKind::RParen) {
                self.expected("`,` or `)`");
                return Err(());
            }
        }
        self.bump();
        let ret = if self.at(&TokKind::Colon) {
            self.bump();
            Some(self.type_expr()?)
        } else {
            None
        };
        self.expect(TokKind::Eq, "`=` and the function body")?;
        let body = self.expr();
        self.end_of_line("the end of the function")?;
        Ok(ItemKind::Fn(std::rc::Rc::new(FnDef {
            name,
            params,
            ret,
            body,
        })))
    }

    fn type_expr(&mut self) -> PResult<TypeExpr> {
        self.enter()?;
        let r = self.type_expr_inner();
        self.leave();
        r
    }

    fn type_expr_inner(&mut self) -> PResult<TypeExpr> {
        let name = self.ident("a type (`int`, `string`, `duration`, `list(T)`, ...)")?;
        let mut args = Vec::new();
        if self.at(&TokKind::LParen) && !self.peek().newline_before {
            self.bump();
            while !self.at(&TokKind::RParen) {
                args.push(self.type_expr()?);
                if self.at(&TokKind::Comma) {
                    self.bump();
                } else if !self.at(&TokKind::RParen) {
                    self.expected("`,` or `)`");
                    return Err(());
                }
            }
            self.bump();
        }
        let optional = if self.at(&TokKind::Question) {
            self.bump();
            true
        } else {
            false
        };
        let span = name.span.to(self.prev_end());
        Ok(TypeExpr {
            name,
            args,
            optional,
            span,
        })
    }

    fn for_item(&mut self) -> PResult<ItemKind> {
        self.bump();
        let var = self.ident("a loop variable after `for`")?;
        if !self.at_ident("in") {
            self.expected("`in`");
            return Err(());
        }
        self.bump();
        let saved = self.no_brace;
        self.no_brace = true;
        let iter = self.expr();
        self.no_brace = saved;
        self.expect(TokKind::LBrace, "`{` and the repeated declarations")?;
        self.enter()?;
        let saved_for = std::mem::replace(&mut self.in_for, true);
        let mut items = Vec::new();
        loop {
            if self.aborted {
                return Err(());
            }
            if self.at(&TokKind::RBrace) || self.at(&TokKind::Eof) {
                break;
            }
            let before = self.pos;
            match self.item() {
                Ok(i) => items.push(i),
                Err(()) => {
                    self.recover_item();
                    if self.pos == before {
                        self.bump();
                    }
                }
            }
        }
        self.in_for = saved_for;
        self.leave();
        let dangling = self.take_dangling();
        self.expect(TokKind::RBrace, "`}`")?;
        Ok(ItemKind::For(Box::new(ForItem {
            var,
            iter,
            items,
            dangling,
        })))
    }

    fn decl(&mut self) -> PResult<Decl> {
        let kind = self.ident("a declaration kind")?;
        if !DECL_KINDS.contains(&&*kind.name) {
            let guess = did_you_mean(
                &kind.name,
                DECL_KINDS
                    .iter()
                    .copied()
                    .chain(ITEM_KEYWORDS.iter().copied()),
            );
            let mut d = Diagnostic::error(
                Code::UnknownKind,
                kind.span,
                format!("unknown declaration kind `{}`", kind.name),
            )
            .with_primary("not a declaration kind");
            d.help = Some(match guess {
                Some(g) => format!("did you mean `{g}`?"),
                None => "declarations are `environment`, `image`, `service`, `endpoint`, `rule`, `variable`, `volume` and `policy`".into(),
            });
            self.diags.push(d);
            return Err(());
        }
        let t = self.peek().clone();
        let name = match &t.kind {
            // Declaration names are unique: not worth interning.
            TokKind::Ident => {
                self.bump();
                DeclName::Ident(Ident {
                    name: Rc::from(self.text_of(t.span)),
                    span: t.span,
                })
            }
            TokKind::Str(_) => DeclName::Str(Box::new(self.primary()?)),
            _ => {
                self.expected(&format!("a name for the {}", kind.name));
                return Err(());
            }
        };
        if !self.at(&TokKind::LBrace) {
            self.expected(&format!("`{{` to start the {} body", kind.name));
            return Err(());
        }
        let body = match self.skip_body(&kind.name) {
            Some(b) => b,
            None => self.block()?,
        };
        Ok(Decl { kind, name, body })
    }

    /// After a `let` or `fn`: the line must end here.
    fn end_of_line(&mut self, what: &str) -> PResult<()> {
        let t = self.peek().clone();
        if t.newline_before || matches!(t.kind, TokKind::Eof | TokKind::RBrace) || self.aborted {
            Ok(())
        } else {
            self.expected(what);
            Err(())
        }
    }

    // ----- blocks -------------------------------------------------------

    /// In lazy mode, at the `{` of a top-level declaration body other than a
    /// policy: finds the matching `}` without building anything and moves
    /// past it. `None` (parse it now) when the braces do not balance, so
    /// that the usual error is reported where it belongs.
    fn skip_body(&mut self, kind: &str) -> Option<Block> {
        if !self.lazy || self.in_for || kind == "policy" || self.buf.len() != 1 {
            return None;
        }
        let open = self.buf[0].clone();
        if !matches!(open.kind, TokKind::LBrace) {
            return None;
        }
        let end = matching_brace(self.text.as_bytes(), open.span.start as usize)?;
        let close = Span::new(open.span.file, end - 1, end);
        self.buf.clear();
        self.clean = false;
        self.lexer.seek(close.end as usize);
        self.pos += 1;
        self.last = close;
        Some(Block {
            entries: Vec::new(),
            dangling: Vec::new(),
            span: open.span.to(close),
            multiline: true,
            recovered: false,
            deferred: true,
        })
    }

    fn block(&mut self) -> PResult<Block> {
        let open = self.expect(TokKind::LBrace, "`{`")?;
        let mark = self.diags.len();
        self.enter()?;
        let mut entries = Vec::new();
        let mut multiline = false;
        loop {
            if self.aborted {
                self.leave();
                return Err(());
            }
            let t = self.peek().clone();
            if t.newline_before {
                multiline = true;
            }
            if matches!(t.kind, TokKind::RBrace | TokKind::Eof) {
                break;
            }
            let before = self.pos;
            let diags_before = self.diags.len();
            match self.entry() {
                Ok(e) if self.diags.len() > diags_before => {
                    // The entry had an error inside: skip the rest of its line
                    // without a second complaint.
                    entries.push(e);
                    let t = self.peek().clone();
                    if !t.newline_before
                        && !matches!(t.kind, TokKind::RBrace | TokKind::Eof | TokKind::Comma)
                    {
                        self.recover_line();
                    } else if matches!(t.kind, TokKind::Comma) {
                        self.bump();
                    }
                }
                Ok(e) => {
                    entries.push(e);
                    // Separator: a comma, a new line, or the closing brace.
                    if self.at(&TokKind::Comma) {
                        self.bump();
                        if let Some(c) = self.take_trailing()
                            && let Some(last) = entries.last_mut()
                        {
                            let e: &mut Entry = last;
                            if e.trivia.trailing.is_none() {
                                e.trivia.trailing = Some(c);
                            } else {
                                self.pending.push((*c, true));
                            }
                        }
                    } else {
                        let t = self.peek().clone();
                        if !t.newline_before && !matches!(t.kind, TokKind::RBrace | TokKind::Eof) {
                            self.expected("a new line, `,` or `}` after the entry");
                            self.recover_line();
                        }
                    }
                }
                Err(()) => {
                    self.recover_line();
                    if self.pos == before {
                        self.bump();
                    }
                }
            }
        }
        self.leave();
        let dangling = self.take_dangling();
        let close = self.peek().clone();
        if !matches!(close.kind, TokKind::RBrace) {
            self.diags.push(
                Diagnostic::error(
                    Code::Syntax,
                    close.span,
                    "expected `}`, found the end of the file",
                )
                .with_primary("the file ends here")
                .with_label(open.span, "this `{` is never closed"),
            );
            return Err(());
        }
        if close.newline_before {
            multiline = true;
        }
        self.bump();
        Ok(Block {
            entries,
            dangling,
            span: open.span.to(close.span),
            multiline,
            recovered: errors_since(self.diags, mark),
            deferred: false,
        })
    }

    fn key(&mut self) -> PResult<Key> {
        let t = self.peek().clone();
        match &t.kind {
            TokKind::Ident => {
                self.bump();
                Ok(Key {
                    name: self.intern(self.text_of(t.span)),
                    span: t.span,
                    quoted: false,
                })
            }
            TokKind::Str(parts) => match &parts[..] {
                [StrPart::Lit(s)] => {
                    let name = s.clone();
                    self.bump();
                    Ok(Key {
                        name: self.intern(&name),
                        span: t.span,
                        quoted: true,
                    })
                }
                _ => {
                    self.error_at(
                        t.span,
                        "field keys cannot be interpolated",
                        "interpolated key",
                    );
                    Err(())
                }
            },
            _ => {
                self.expected("a field name");
                Err(())
            }
        }
    }

    fn entry(&mut self) -> PResult<Entry> {
        let (leading, blank_before) = self.take_leading();
        let first = self.peek().clone();
        let kind = if matches!(first.kind, TokKind::Ellipsis) {
            self.bump();
            EntryKind::Spread(self.expr())
        } else {
            let word = if matches!(first.kind, TokKind::Ident) {
                self.text_of(first.span)
            } else {
                ""
            };
            let next = self.peek_nth(1).kind.clone();
            let statement = !matches!(next, TokKind::Eq | TokKind::LBrace);
            match word {
                "copy" if statement => {
                    self.bump();
                    let src = self.expr();
                    if !self.at_ident("to") {
                        self.expected("`to` and the destination path (`copy \"src\" to \"/dst\"`)");
                        return Err(());
                    }
                    self.bump();
                    let dst = self.expr();
                    EntryKind::Copy(Box::new((src, dst)))
                }
                "run" if statement => {
                    self.bump();
                    EntryKind::Run(self.expr())
                }
                "test" if statement => {
                    self.bump();
                    EntryKind::Test(self.expr())
                }
                _ => {
                    let key = self.key()?;
                    if self.at(&TokKind::LBrace) {
                        EntryKind::Block {
                            key,
                            body: self.block()?,
                        }
                    } else if self.at(&TokKind::Eq) {
                        self.bump();
                        if self.peek().newline_before
                            && !self.at(&TokKind::LBrace)
                            && !self.at(&TokKind::LBracket)
                        {
                            // `key =` followed by nothing on this line.
                            let span = self.prev_end();
                            self.error_at(span, "expected a value after `=`", "missing value");
                            return Err(());
                        }
                        EntryKind::Attr {
                            key,
                            value: self.expr(),
                        }
                    } else {
                        let t = self.peek().clone();
                        if matches!(t.kind, TokKind::Colon) {
                            self.error_at(
                                t.span,
                                "expected `=`, found `:`",
                                "fields are set with `=`",
                            );
                            if let Some(d) = self.diags.last_mut() {
                                d.help = Some(format!("write `{} = ...`", key.name));
                            }
                        } else {
                            self.expected(&format!("`=` or `{{` after `{}`", key.name));
                        }
                        return Err(());
                    }
                }
            }
        };
        let span = first.span.to(self.prev_end());
        let trailing = self.take_trailing();
        Ok(Entry {
            trivia: Trivia {
                leading,
                blank_before,
                trailing,
            },
            kind,
            span,
        })
    }

    // ----- expressions --------------------------------------------------

    fn err_expr(&self, span: Span) -> Expr {
        Expr {
            kind: ExprKind::Error,
            span,
        }
    }

    /// Parses an expression; on error returns an `Error` node (already reported).
    fn expr(&mut self) -> Expr {
        let start = self.peek().span;
        match self.expr_bp(0) {
            Ok(e) => e,
            Err(()) => self.err_expr(start),
        }
    }

    fn binop(&mut self) -> Option<BinOp> {
        let t = self.peek();
        let span = t.span;
        Some(match &t.kind {
            TokKind::EqEq => BinOp::Eq,
            TokKind::Ne => BinOp::Ne,
            TokKind::Lt => BinOp::Lt,
            TokKind::Le => BinOp::Le,
            TokKind::Gt => BinOp::Gt,
            TokKind::Ge => BinOp::Ge,
            TokKind::Plus => BinOp::Add,
            TokKind::Minus => BinOp::Sub,
            TokKind::Star => BinOp::Mul,
            TokKind::Slash => BinOp::Div,
            TokKind::Percent => BinOp::Rem,
            TokKind::Ident => match self.text_of(span) {
                "and" => BinOp::And,
                "or" => BinOp::Or,
                "in" => BinOp::In,
                _ => return None,
            },
            _ => return None,
        })
    }

    fn expr_bp(&mut self, min: u8) -> PResult<Expr> {
        self.enter()?;
        let r = self.expr_bp_inner(min);
        self.leave();
        r
    }

    fn expr_bp_inner(&mut self, min: u8) -> PResult<Expr> {
        let mut lhs = self.unary()?;
        while let Some(op) = self.binop() {
            let prec = op.precedence();
            if prec <= min {
                break;
            }
            self.bump();
            // Comparisons do not chain: `a < b < c` is an error.
            let rhs = self.expr_bp(prec)?;
            if prec == 4
                && let ExprKind::Binary(inner, ..) = &lhs.kind
                && inner.precedence() == 4
            {
                self.error_at(
                    lhs.span.to(rhs.span),
                    "comparisons cannot be chained",
                    "two comparisons in a row",
                );
                if let Some(d) = self.diags.last_mut() {
                    d.help = Some("combine them with `and`: `a < b and b < c`".into());
                }
            }
            let span = lhs.span.to(rhs.span);
            lhs = Expr {
                kind: ExprKind::Binary(op, Box::new(lhs), Box::new(rhs)),
                span,
            };
        }
        Ok(lhs)
    }

    fn unary(&mut self) -> PResult<Expr> {
        let t = self.peek().clone();
        let op = match t.kind {
            TokKind::Minus => Some((UnOp::Neg, 7)),
            TokKind::Ident if self.text_of(t.span) == "not" => Some((UnOp::Not, 3)),
            _ => None,
        };
        if let Some((op, prec)) = op {
            self.bump();
            let inner = self.expr_bp(prec)?;
            let span = t.span.to(inner.span);
            return Ok(Expr {
                kind: ExprKind::Unary(op, Box::new(inner)),
                span,
            });
        }
        let word = if matches!(t.kind, TokKind::Ident) {
            self.text_of(t.span)
        } else {
            ""
        };
        match word {
            "all" | "any" if matches!(self.peek_nth(1).kind, TokKind::Ident) => {
                return self.quantifier();
            }
            "if" => return self.if_expr(),
            _ => {}
        }
        self.postfix()
    }

    fn quantifier(&mut self) -> PResult<Expr> {
        let kw = self.bump();
        let all = self.text_of(kw.span) == "all";
        let var = self.ident("a variable name")?;
        if !self.at_ident("in") {
            self.expected("`in`");
            return Err(());
        }
        self.bump();
        let coll = self.expr_bp(4)?;
        self.expect(TokKind::Colon, "`:` and the condition")?;
        let body = self.expr_bp(0)?;
        let span = kw.span.to(body.span);
        Ok(Expr {
            kind: ExprKind::Quant {
                all,
                var,
                coll: Box::new(coll),
                body: Box::new(body),
            },
            span,
        })
    }

    fn if_expr(&mut self) -> PResult<Expr> {
        let kw = self.bump();
        let c = self.expr_bp(0)?;
        if !self.at_ident("then") {
            self.expected("`then`");
            return Err(());
        }
        self.bump();
        let a = self.expr_bp(0)?;
        if !self.at_ident("else") {
            self.expected("`else` (an `if` always has both branches)");
            return Err(());
        }
        self.bump();
        let b = self.expr_bp(0)?;
        let span = kw.span.to(b.span);
        Ok(Expr {
            kind: ExprKind::If(Box::new(c), Box::new(a), Box::new(b)),
            span,
        })
    }

    fn postfix(&mut self) -> PResult<Expr> {
        let mut e = self.primary()?;
        loop {
            let t = self.peek().clone();
            match t.kind {
                TokKind::Dot => {
                    self.bump();
                    let name = self.ident("a field name after `.`")?;
                    let span = e.span.to(name.span);
                    e = Expr {
                        kind: ExprKind::Field(Box::new(e), name),
                        span,
                    };
                }
                TokKind::LParen if !t.newline_before => {
                    self.bump();
                    let mut args = Vec::new();
                    while !self.at(&TokKind::RParen) {
                        if self.at(&TokKind::Eof) || self.aborted {
                            self.expected("`)`");
                            return Err(());
                        }
                        let named = matches!(self.peek().kind, TokKind::Ident)
                            && matches!(self.peek_nth(1).kind, TokKind::Eq);
                        let name = if named {
                            let n = self.ident("an argument name")?;
                            self.bump();
                            Some(n)
                        } else {
                            None
                        };
                        let value = self.expr_bp(0)?;
                        args.push(Arg { name, value });
                        if self.at(&TokKind::Comma) {
                            self.bump();
                        } else if !self.at(&TokKind::RParen) {
                            self.expected("`,` or `)`");
                            return Err(());
                        }
                    }
                    let close = self.bump();
                    let span = e.span.to(close.span);
                    e = Expr {
                        kind: ExprKind::Call(Box::new(e), args),
                        span,
                    };
                }
                TokKind::LBracket if !t.newline_before => {
                    self.bump();
                    let idx = self.expr_bp(0)?;
                    let close = self.expect(TokKind::RBracket, "`]`")?;
                    let span = e.span.to(close.span);
                    e = Expr {
                        kind: ExprKind::Index(Box::new(e), Box::new(idx)),
                        span,
                    };
                }
                _ => break,
            }
        }
        Ok(e)
    }

    fn primary(&mut self) -> PResult<Expr> {
        let t = self.peek().clone();
        let lit = |k: ExprKind| Expr {
            kind: k,
            span: t.span,
        };
        let e = match &t.kind {
            TokKind::Int(v) => {
                self.bump();
                // `30 s`: a number, a space and a unit.
                let n = Some(self.raw().clone());
                if let Some(n) = n
                    && matches!(n.kind, TokKind::Ident)
                    && !n.newline_before
                {
                    let unit = self.text_of(n.span);
                    if let Some(mult) = unit_multiplier(unit) {
                        let span = t.span.to(n.span);
                        let number = self.text_of(t.span);
                        self.diags.push(
                            Diagnostic::error(
                                Code::SpaceBeforeUnit,
                                span,
                                format!("space between `{number}` and its unit `{unit}`"),
                            )
                            .with_primary("a number and a unit are one token")
                            .with_help(format!("write `{number}{unit}` without the space")),
                        );
                        self.buf.pop_front();
                        self.clean = false;
                        self.pos += 1;
                        self.last = n.span;
                        let total = u64::try_from(*v)
                            .ok()
                            .and_then(|v| v.checked_mul(mult.1))
                            .unwrap_or(0);
                        return Ok(Expr {
                            kind: if mult.0 {
                                ExprKind::Duration(total)
                            } else {
                                ExprKind::Size(total)
                            },
                            span,
                        });
                    }
                }
                return Ok(lit(ExprKind::Int(*v)));
            }
            TokKind::Duration(v) => lit(ExprKind::Duration(*v)),
            TokKind::Size(v) => lit(ExprKind::Size(*v)),
            TokKind::Ip(v) => lit(ExprKind::Ip(**v)),
            TokKind::Cidr(v) => lit(ExprKind::Cidr(**v)),
            TokKind::Addr(v) => lit(ExprKind::Addr(**v)),
            TokKind::Digest(v) => lit(ExprKind::Digest((**v).clone())),
            TokKind::Str(parts) => {
                let parts = parts.clone();
                self.bump();
                let mut segs = Vec::new();
                for p in parts.iter() {
                    match p {
                        StrPart::Lit(s) => segs.push(StrSeg::Lit(Rc::from(s.as_str()))),
                        StrPart::Interp(span) => {
                            let span = *span;
                            let e = parse_sub_expr(self.text, span, self.diags, self.depth + 1);
                            segs.push(StrSeg::Interp(e));
                        }
                    }
                }
                return Ok(Expr {
                    kind: ExprKind::Str(segs),
                    span: t.span,
                });
            }
            TokKind::LBracket => return self.list(),
            TokKind::LBrace => {
                let b = self.block()?;
                let span = b.span;
                return Ok(Expr {
                    kind: ExprKind::Record(Box::new(b)),
                    span,
                });
            }
            TokKind::LParen => {
                self.bump();
                let inner = self.expr_bp(0)?;
                let close = self.expect(TokKind::RParen, "`)`")?;
                return Ok(Expr {
                    span: t.span.to(close.span),
                    kind: ExprKind::Paren(Box::new(inner)),
                });
            }
            TokKind::Ident => {
                let word = self.text_of(t.span);
                match word {
                    "true" => lit(ExprKind::Bool(true)),
                    "false" => lit(ExprKind::Bool(false)),
                    "none" => lit(ExprKind::None),
                    w if is_keyword(w) && !matches!(w, "all" | "any") => {
                        self.expected("an expression");
                        return Err(());
                    }
                    _ => {
                        self.bump();
                        let word: Rc<str> = self.intern(word);
                        if !self.no_brace
                            && self.at(&TokKind::LBrace)
                            && !self.peek().newline_before
                        {
                            let b = self.block()?;
                            let span = t.span.to(b.span);
                            return Ok(Expr {
                                kind: ExprKind::Tagged(Box::new((
                                    Ident {
                                        name: word,
                                        span: t.span,
                                    },
                                    b,
                                ))),
                                span,
                            });
                        }
                        return Ok(lit(ExprKind::Name(word)));
                    }
                }
            }
            TokKind::Error => lit(ExprKind::Error),
            _ => {
                self.expected("an expression");
                return Err(());
            }
        };
        self.bump();
        Ok(e)
    }

    fn list(&mut self) -> PResult<Expr> {
        let open = self.bump();
        self.enter()?;
        let saved = self.no_brace;
        self.no_brace = false;
        let mut items = Vec::new();
        let mut multiline = false;
        loop {
            if self.aborted {
                self.no_brace = saved;
                self.leave();
                return Err(());
            }
            let t = self.peek().clone();
            if t.newline_before {
                multiline = true;
            }
            if matches!(t.kind, TokKind::RBracket) {
                break;
            }
            if matches!(t.kind, TokKind::Eof) {
                self.diags.push(
                    Diagnostic::error(
                        Code::Syntax,
                        t.span,
                        "expected `]`, found the end of the file",
                    )
                    .with_primary("the file ends here")
                    .with_label(open.span, "this `[` is never closed"),
                );
                self.no_brace = saved;
                self.leave();
                return Err(());
            }
            let (leading, blank_before) = self.take_leading();
            let expr = self.expr_bp(0)?;
            let mut trailing = None;
            if self.at(&TokKind::Comma) {
                self.bump();
                trailing = self.take_trailing();
            } else if !self.at(&TokKind::RBracket) {
                self.expected("`,` or `]`");
                self.no_brace = saved;
                self.leave();
                return Err(());
            } else {
                trailing = trailing.or_else(|| self.take_trailing());
            }
            items.push(ListItem {
                trivia: Trivia {
                    leading,
                    blank_before,
                    trailing,
                },
                expr,
            });
        }
        self.no_brace = saved;
        self.leave();
        let dangling = self.take_dangling();
        let close = self.bump();
        if close.newline_before {
            multiline = true;
        }
        Ok(Expr {
            kind: ExprKind::List(Box::new(ListExpr {
                items,
                dangling,
                multiline,
            })),
            span: open.span.to(close.span),
        })
    }
}

/// The end (one past the `}`) of the block whose `{` is at `open`, found
/// from the bytes alone: braces inside strings (and their `${ }`
/// interpolations, which may hold strings) and comments do not count.
/// `None` when the text does not close it plainly (an unterminated string or
/// comment, unbalanced braces): the caller then parses the block at once and
/// reports the problem where it is.
fn matching_brace(b: &[u8], open: usize) -> Option<usize> {
    enum Mode {
        /// Code, with the depth of braces opened in it.
        Code(u32),
        /// Inside a string literal.
        Str,
    }
    let mut stack = vec![Mode::Code(0)];
    let mut i = open;
    while i < b.len() {
        let c = b[i];
        match stack.last_mut()? {
            Mode::Code(depth) => match c {
                b'{' => *depth += 1,
                b'}' => {
                    if *depth == 0 {
                        // Closes an interpolation: back inside its string.
                        stack.pop();
                        if stack.is_empty() {
                            return None;
                        }
                    } else {
                        *depth -= 1;
                        if *depth == 0 && stack.len() == 1 {
                            return Some(i + 1);
                        }
                    }
                }
                b'"' => stack.push(Mode::Str),
                b'/' if b.get(i + 1) == Some(&b'/') => {
                    while i < b.len() && b[i] != b'\n' {
                        i += 1;
                    }
                    continue;
                }
                b'/' if b.get(i + 1) == Some(&b'*') => {
                    let rest = b.get(i + 2..)?;
                    let at = rest.windows(2).position(|w| w == b"*/")?;
                    i += 2 + at + 2;
                    continue;
                }
                _ => {}
            },
            Mode::Str => match c {
                b'\\' => i += 1,
                b'"' => {
                    stack.pop();
                }
                b'$' if b.get(i + 1) == Some(&b'{') => {
                    stack.push(Mode::Code(0));
                    i += 1;
                }
                b'\n' => return None,
                _ => {}
            },
        }
        i += 1;
    }
    None
}

/// `(is_duration, multiplier)` of a unit suffix.
pub(crate) fn unit_multiplier(unit: &str) -> Option<(bool, u64)> {
    Some(match unit {
        "ms" => (true, 1),
        "s" => (true, 1000),
        "m" => (true, 60_000),
        "h" => (true, 3_600_000),
        "d" => (true, 86_400_000),
        "B" => (false, 1),
        "KiB" => (false, 1 << 10),
        "MiB" => (false, 1 << 20),
        "GiB" => (false, 1 << 30),
        "TiB" => (false, 1 << 40),
        _ => return None,
    })
}
