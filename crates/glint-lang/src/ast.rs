//! The syntax tree, with the comments and blank lines the formatter keeps.

use crate::source::Span;
use glint_model::{Cidr, Digest};
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;

/// A name as written, with its span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ident {
    /// The text.
    pub name: Rc<str>,
    /// Where.
    pub span: Span,
}

/// A comment, verbatim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comment {
    /// The text including `//` or `/* */`.
    pub text: String,
    /// Where.
    pub span: Span,
    /// Whether an empty line precedes it.
    pub blank_before: bool,
}

/// Comments and spacing around an item, entry or list element.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trivia {
    /// Comments on their own lines before it.
    pub leading: Vec<Comment>,
    /// Whether an empty line precedes the item itself.
    pub blank_before: bool,
    /// A comment at the end of its last line.
    pub trailing: Option<Box<Comment>>,
}

/// A parsed file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct File {
    /// Top-level items, in order.
    pub items: Vec<Item>,
    /// Comments after the last item.
    pub dangling: Vec<Comment>,
    /// Top-level declarations read by [`crate::parser::parse_file_lazy`]:
    /// only located (not in `items`), in order. Empty for a full parse.
    pub lazy: Vec<LazyDecl>,
}

/// A top-level declaration whose body has only been located: what the
/// compiler needs until it parses the body (a few dozen bytes, where the
/// syntax tree of the body would be several hundred).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LazyDecl {
    /// The kind keyword (`service`), shared.
    pub kind: Ident,
    /// The name.
    pub name: Ident,
    /// The body, from `{` to `}`.
    pub body: Span,
}

/// A top-level item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// Comments and spacing.
    pub trivia: Trivia,
    /// What it is.
    pub kind: ItemKind,
    /// Where.
    pub span: Span,
}

/// The kinds of top-level items. Each is boxed, so that an item is small
/// (a file of 100,000 declarations holds 100,000 of them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemKind {
    /// `import "path" [as name]`
    Import(Box<Import>),
    /// `let name [: type] = value`
    Let(Box<LetItem>),
    /// `fn name(params) [: type] = body`
    Fn(std::rc::Rc<FnDef>),
    /// `kind name { body }`
    Decl(Box<Decl>),
    /// `for var in iter { items }`
    For(Box<ForItem>),
}

/// `import "path" [as name]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Import {
    /// The path as written (decoded).
    pub path: String,
    /// Its span.
    pub path_span: Span,
    /// `as name`.
    pub alias: Option<Ident>,
}

/// `let name [: type] = value`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LetItem {
    /// The name.
    pub name: Ident,
    /// The declared type.
    pub ty: Option<TypeExpr>,
    /// The value.
    pub value: Expr,
}

/// `for var in iter { items }`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForItem {
    /// The loop variable.
    pub var: Ident,
    /// What it ranges over (a list).
    pub iter: Expr,
    /// The items repeated for each element.
    pub items: Vec<Item>,
    /// Comments before the closing brace.
    pub dangling: Vec<Comment>,
}

/// A function definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FnDef {
    /// Its name.
    pub name: Ident,
    /// Parameters.
    pub params: Vec<Param>,
    /// Declared result type.
    pub ret: Option<TypeExpr>,
    /// The body expression.
    pub body: Expr,
}

/// A function parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    /// Its name.
    pub name: Ident,
    /// Its type.
    pub ty: Option<TypeExpr>,
    /// Default value.
    pub default: Option<Expr>,
}

/// A type annotation: `int`, `list(port)`, `duration?`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeExpr {
    /// The type's name.
    pub name: Ident,
    /// Type arguments.
    pub args: Vec<TypeExpr>,
    /// `?`: the value may be `none`.
    pub optional: bool,
    /// Where.
    pub span: Span,
}

/// A declaration: `service web { ... }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decl {
    /// The kind keyword.
    pub kind: Ident,
    /// The name.
    pub name: DeclName,
    /// The body.
    pub body: Block,
}

/// A declaration's name: a plain name or a string (possibly interpolated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeclName {
    /// `web`
    Ident(Ident),
    /// `"${name}-api"`
    Str(Box<Expr>),
}

impl DeclName {
    /// Where the name is.
    pub fn span(&self) -> Span {
        match self {
            DeclName::Ident(i) => i.span,
            DeclName::Str(e) => e.span,
        }
    }
}

/// `{ entries }`: a declaration body, nested block or record literal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// Entries, in order.
    pub entries: Vec<Entry>,
    /// Comments before the closing brace.
    pub dangling: Vec<Comment>,
    /// From `{` to `}`.
    pub span: Span,
    /// Whether the source spread it over several lines.
    pub multiline: bool,
    /// Whether a syntax error was found inside (entries may be missing).
    pub recovered: bool,
    /// Not parsed yet: only the span is known, and the entries are parsed
    /// from the source when needed ([`crate::parser::parse_body`]). The
    /// compiler reads top-level declaration bodies this way, one at a time,
    /// so that a file of 100,000 declarations never holds all of their
    /// syntax trees at once.
    pub deferred: bool,
}

/// One entry of a block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Comments and spacing.
    pub trivia: Trivia,
    /// What it is.
    pub kind: EntryKind,
    /// Where.
    pub span: Span,
}

/// A field key: a name or a quoted string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    /// The key.
    pub name: Rc<str>,
    /// Where.
    pub span: Span,
    /// Written as a string.
    pub quoted: bool,
}

/// The kinds of block entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// `key = value`
    Attr {
        /// The key.
        key: Key,
        /// The value.
        value: Expr,
    },
    /// `key { ... }` (same as `key = { ... }`)
    Block {
        /// The key.
        key: Key,
        /// The nested block.
        body: Block,
    },
    /// `copy SRC to DST` (image build step): source path (relative to the
    /// file) and destination inside the image.
    Copy(Box<(Expr, Expr)>),
    /// `run CMD` (image build step)
    Run(Expr),
    /// `test CMD` (image test)
    Test(Expr),
    /// `...expr`: the fields (and steps) of a record
    Spread(Expr),
}

/// An expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expr {
    /// What it is.
    pub kind: ExprKind,
    /// Where.
    pub span: Span,
}

/// A part of a string literal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StrSeg {
    /// Text.
    Lit(Rc<str>),
    /// `${ expr }`
    Interp(Expr),
}

/// A list literal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListExpr {
    /// Elements.
    pub items: Vec<ListItem>,
    /// Comments before `]`.
    pub dangling: Vec<Comment>,
    /// Spread over several lines in the source.
    pub multiline: bool,
}

/// An element of a list literal, with its comments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListItem {
    /// Comments and spacing.
    pub trivia: Trivia,
    /// The element.
    pub expr: Expr,
}

/// A call argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arg {
    /// `name =` for a named argument.
    pub name: Option<Ident>,
    /// The value.
    pub value: Expr,
}

/// Unary operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnOp {
    /// `-`
    Neg,
    /// `not`
    Not,
}

/// Binary operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    /// `or`
    Or,
    /// `and`
    And,
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `in`
    In,
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
    /// `%`
    Rem,
}

impl BinOp {
    /// The operator as written.
    pub fn as_str(self) -> &'static str {
        match self {
            BinOp::Or => "or",
            BinOp::And => "and",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::In => "in",
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Rem => "%",
        }
    }

    /// Binding power (higher binds tighter).
    pub fn precedence(self) -> u8 {
        match self {
            BinOp::Or => 1,
            BinOp::And => 2,
            BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge | BinOp::In => 4,
            BinOp::Add | BinOp::Sub => 5,
            BinOp::Mul | BinOp::Div | BinOp::Rem => 6,
        }
    }
}

/// The kinds of expressions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExprKind {
    /// `42`
    Int(i64),
    /// `30s` (milliseconds)
    Duration(u64),
    /// `2GiB` (bytes)
    Size(u64),
    /// `10.0.0.1`
    Ip(IpAddr),
    /// `10.0.0.0/8`
    Cidr(Cidr),
    /// `127.0.0.1:8080`
    Addr(SocketAddr),
    /// `sha256:…`
    Digest(Digest),
    /// `"text ${expr}"`
    Str(Vec<StrSeg>),
    /// `true`, `false`
    Bool(bool),
    /// `none`
    None,
    /// A name.
    Name(Rc<str>),
    /// `[a, b]`
    List(Box<ListExpr>),
    /// `{ k = v }`
    Record(Box<Block>),
    /// `rolling { surge = 2 }`: an enum value with a payload.
    Tagged(Box<(Ident, Block)>),
    /// `e.name`
    Field(Box<Expr>, Ident),
    /// `e[i]`
    Index(Box<Expr>, Box<Expr>),
    /// `f(args)`
    Call(Box<Expr>, Vec<Arg>),
    /// `-e`, `not e`
    Unary(UnOp, Box<Expr>),
    /// `a op b`
    Binary(BinOp, Box<Expr>, Box<Expr>),
    /// `if c then a else b`
    If(Box<Expr>, Box<Expr>, Box<Expr>),
    /// `all x in xs: body` / `any x in xs: body`
    Quant {
        /// `all` (true) or `any` (false).
        all: bool,
        /// The bound variable.
        var: Ident,
        /// The collection.
        coll: Box<Expr>,
        /// The condition.
        body: Box<Expr>,
    },
    /// `(e)`
    Paren(Box<Expr>),
    /// A syntax error (already reported).
    Error,
}
