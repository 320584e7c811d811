//! The lexer: text to tokens, keeping comments for the formatter.
//!
//! Domain literals are single tokens with exact spans: `250ms`, `512MiB`,
//! `10.0.0.0/8`, `127.0.0.1:8080`, `sha256:<hex>`. Strings are lexed with
//! their interpolations (`${ expr }`) located but not parsed; the parser
//! lexes and parses each interpolation's range itself.

use crate::codes::Code;
use crate::diag::Diagnostic;
use crate::source::{FileId, Span};
use glint_model::{Cidr, Digest};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;

/// Longest string literal accepted, in bytes.
pub const MAX_STRING: usize = 1 << 20;
/// Deepest nesting of interpolations inside strings.
const MAX_STRING_NESTING: usize = 32;

/// A piece of a string literal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StrPart {
    /// Literal text (escapes already decoded).
    Lit(String),
    /// An interpolation: the byte range of the expression between `${` and `}`.
    Interp(Span),
}

/// What a token is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokKind {
    /// A name or keyword.
    Ident,
    /// An integer.
    Int(i64),
    /// A duration in milliseconds.
    Duration(u64),
    /// A size in bytes.
    Size(u64),
    /// An IPv4 address.
    Ip(Rc<IpAddr>),
    /// A CIDR block.
    Cidr(Rc<Cidr>),
    /// An address and port.
    Addr(Rc<SocketAddr>),
    /// A `sha256:` digest.
    Digest(Rc<Digest>),
    /// A string literal.
    Str(Rc<[StrPart]>),
    /// `{`
    LBrace,
    /// `}`
    RBrace,
    /// `[`
    LBracket,
    /// `]`
    RBracket,
    /// `(`
    LParen,
    /// `)`
    RParen,
    /// `,`
    Comma,
    /// `.`
    Dot,
    /// `...`
    Ellipsis,
    /// `:`
    Colon,
    /// `=`
    Eq,
    /// `==`
    EqEq,
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
    /// `+`
    Plus,
    /// `-`
    Minus,
    /// `*`
    Star,
    /// `/`
    Slash,
    /// `%`
    Percent,
    /// `?`
    Question,
    /// A `//` or `/* */` comment (text kept verbatim).
    Comment,
    /// A token the lexer could not make sense of (already reported).
    Error,
    /// End of input.
    Eof,
}

/// One token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// What it is.
    pub kind: TokKind,
    /// Where it is.
    pub span: Span,
    /// Whether a line break precedes it.
    pub newline_before: bool,
    /// Whether an empty line precedes it.
    pub blank_before: bool,
}

impl TokKind {
    /// How the token is named in "expected X, found Y" messages.
    pub fn describe(&self) -> &'static str {
        match self {
            TokKind::Ident => "a name",
            TokKind::Int(_) => "a number",
            TokKind::Duration(_) => "a duration",
            TokKind::Size(_) => "a size",
            TokKind::Ip(_) => "an IP address",
            TokKind::Cidr(_) => "a CIDR block",
            TokKind::Addr(_) => "an address",
            TokKind::Digest(_) => "a digest",
            TokKind::Str(_) => "a string",
            TokKind::LBrace => "`{`",
            TokKind::RBrace => "`}`",
            TokKind::LBracket => "`[`",
            TokKind::RBracket => "`]`",
            TokKind::LParen => "`(`",
            TokKind::RParen => "`)`",
            TokKind::Comma => "`,`",
            TokKind::Dot => "`.`",
            TokKind::Ellipsis => "`...`",
            TokKind::Colon => "`:`",
            TokKind::Eq => "`=`",
            TokKind::EqEq => "`==`",
            TokKind::Ne => "`!=`",
            TokKind::Lt => "`<`",
            TokKind::Le => "`<=`",
            TokKind::Gt => "`>`",
            TokKind::Ge => "`>=`",
            TokKind::Plus => "`+`",
            TokKind::Minus => "`-`",
            TokKind::Star => "`*`",
            TokKind::Slash => "`/`",
            TokKind::Percent => "`%`",
            TokKind::Question => "`?`",
            TokKind::Comment => "a comment",
            TokKind::Error => "an invalid token",
            TokKind::Eof => "the end of the file",
        }
    }
}

/// Lexes `text[start..end]` of `file`. Problems are pushed to `diags`; the
/// token list always ends with [`TokKind::Eof`].
pub fn lex(
    text: &str,
    file: FileId,
    start: usize,
    end: usize,
    diags: &mut Vec<Diagnostic>,
) -> Vec<Token> {
    let mut lx = Lexer::new(text, file, start, end);
    let mut tokens = Vec::with_capacity(end.saturating_sub(start) / 6 + 1);
    loop {
        let t = lx.next_token();
        let eof = t.kind == TokKind::Eof;
        tokens.push(t);
        if eof {
            break;
        }
    }
    diags.append(&mut lx.diags);
    tokens
}

/// A lexer producing one token at a time (the parser pulls tokens as it
/// needs them, so a large file never has all its tokens in memory at once).
pub struct Lexer<'a> {
    src: &'a [u8],
    text: &'a str,
    file: FileId,
    pos: usize,
    end: usize,
    /// Problems found so far (the caller drains them).
    pub diags: Vec<Diagnostic>,
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

fn is_ident_continue(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

impl<'a> Lexer<'a> {
    /// A lexer over `text[start..end]` of `file`.
    pub fn new(text: &'a str, file: FileId, start: usize, end: usize) -> Lexer<'a> {
        Lexer {
            src: text.as_bytes(),
            text,
            file,
            pos: start.min(text.len()),
            end: end.min(text.len()),
            diags: Vec::new(),
        }
    }

    fn peek(&self, off: usize) -> u8 {
        let i = self.pos + off;
        if i < self.end { self.src[i] } else { 0 }
    }

    fn span(&self, start: usize, end: usize) -> Span {
        Span::new(self.file, start, end)
    }

    fn error(
        &mut self,
        code: Code,
        start: usize,
        end: usize,
        msg: impl Into<String>,
    ) -> &mut Diagnostic {
        let d = Diagnostic::error(code, self.span(start, end), msg);
        self.diags.push(d);
        let last = self.diags.len() - 1;
        &mut self.diags[last]
    }

    /// Continues lexing at byte `pos` (the parser skips a block it will
    /// parse later).
    pub fn seek(&mut self, pos: usize) {
        self.pos = pos.min(self.end);
    }

    /// The next token ([`TokKind::Eof`] at the end, repeatedly).
    pub fn next_token(&mut self) -> Token {
        let mut newlines = 0usize;
        while self.pos < self.end {
            let b = self.src[self.pos];
            match b {
                b'\n' => {
                    newlines += 1;
                    self.pos += 1;
                    continue;
                }
                b' ' | b'\t' | b'\r' => {
                    self.pos += 1;
                    continue;
                }
                _ => {}
            }
            let start = self.pos;
            let kind = self.token(b);
            return Token {
                kind,
                span: self.span(start, self.pos),
                newline_before: newlines > 0,
                blank_before: newlines > 1,
            };
        }
        Token {
            kind: TokKind::Eof,
            span: self.span(self.end, self.end),
            newline_before: newlines > 0,
            blank_before: newlines > 1,
        }
    }

    fn token(&mut self, b: u8) -> TokKind {
        let start = self.pos;
        let two = |k: TokKind, lx: &mut Self| {
            lx.pos += 2;
            k
        };
        let one = |k: TokKind, lx: &mut Self| {
            lx.pos += 1;
            k
        };
        match b {
            b'/' if self.peek(1) == b'/' => {
                while self.pos < self.end && self.src[self.pos] != b'\n' {
                    self.pos += 1;
                }
                TokKind::Comment
            }
            b'/' if self.peek(1) == b'*' => {
                self.pos += 2;
                loop {
                    if self.pos + 1 >= self.end {
                        self.pos = self.end;
                        self.error(
                            Code::UnterminatedString,
                            start,
                            start + 2,
                            "unterminated block comment",
                        )
                        .primary
                        .message = "this comment is never closed".into();
                        return TokKind::Comment;
                    }
                    if self.src[self.pos] == b'*' && self.src[self.pos + 1] == b'/' {
                        self.pos += 2;
                        return TokKind::Comment;
                    }
                    self.pos += 1;
                }
            }
            b'{' => one(TokKind::LBrace, self),
            b'}' => one(TokKind::RBrace, self),
            b'[' => one(TokKind::LBracket, self),
            b']' => one(TokKind::RBracket, self),
            b'(' => one(TokKind::LParen, self),
            b')' => one(TokKind::RParen, self),
            b',' => one(TokKind::Comma, self),
            b'.' if self.peek(1) == b'.' && self.peek(2) == b'.' => {
                self.pos += 3;
                TokKind::Ellipsis
            }
            b'.' => one(TokKind::Dot, self),
            b':' => one(TokKind::Colon, self),
            b'=' if self.peek(1) == b'=' => two(TokKind::EqEq, self),
            b'=' => one(TokKind::Eq, self),
            b'!' if self.peek(1) == b'=' => two(TokKind::Ne, self),
            b'<' if self.peek(1) == b'=' => two(TokKind::Le, self),
            b'<' => one(TokKind::Lt, self),
            b'>' if self.peek(1) == b'=' => two(TokKind::Ge, self),
            b'>' => one(TokKind::Gt, self),
            b'+' => one(TokKind::Plus, self),
            b'-' => one(TokKind::Minus, self),
            b'*' => one(TokKind::Star, self),
            b'/' => one(TokKind::Slash, self),
            b'%' => one(TokKind::Percent, self),
            b'?' => one(TokKind::Question, self),
            b'"' => self.string(),
            b'0'..=b'9' => self.number(),
            b if is_ident_start(b) => self.ident(),
            _ => {
                // Skip one whole UTF-8 character.
                let ch = self.text[start..].chars().next().unwrap_or('\u{fffd}');
                self.pos += ch.len_utf8().max(1);
                let help = match ch {
                    ';' => Some("entries are separated by new lines or commas; remove the `;`"),
                    '#' => Some("comments start with `//`"),
                    '\'' => Some("strings are written with double quotes: \"...\""),
                    '&' => Some("write `and` for logical and"),
                    '|' => Some("write `or` for logical or"),
                    '!' => Some("write `not` for logical negation"),
                    _ => None,
                };
                let d = self.error(
                    Code::UnexpectedChar,
                    start,
                    self.pos,
                    format!("unexpected character `{}`", ch.escape_debug()),
                );
                d.primary.message = "not valid here".into();
                if let Some(h) = help {
                    d.help = Some(h.into());
                }
                TokKind::Error
            }
        }
    }

    fn ident(&mut self) -> TokKind {
        let start = self.pos;
        while self.pos < self.end && is_ident_continue(self.src[self.pos]) {
            self.pos += 1;
        }
        // A trailing `-` belongs to an operator, not the name (`a- b`).
        while self.pos > start + 1 && self.src[self.pos - 1] == b'-' {
            self.pos -= 1;
        }
        if &self.src[start..self.pos] == b"sha256"
            && self.peek(0) == b':'
            && self.peek(1).is_ascii_alphanumeric()
        {
            self.pos += 1;
            while self.pos < self.end && self.src[self.pos].is_ascii_alphanumeric() {
                self.pos += 1;
            }
            let text = &self.text[start..self.pos];
            return match Digest::parse(text) {
                Ok(d) => TokKind::Digest(Rc::new(d)),
                Err(_) => {
                    let hex = &text["sha256:".len()..];
                    let why = if hex.len() != 64 {
                        format!("it has {} hex digits, not 64", hex.len())
                    } else {
                        "it contains characters other than lowercase hex digits".into()
                    };
                    let d = self.error(
                        Code::InvalidDigest,
                        start,
                        self.pos,
                        "invalid sha256 digest",
                    );
                    d.primary.message = why;
                    d.help = Some("a digest is `sha256:` followed by 64 lowercase hex digits, as printed by `sha256sum`".into());
                    TokKind::Error
                }
            };
        }
        TokKind::Ident
    }

    fn digits(&mut self) -> (usize, usize) {
        let s = self.pos;
        while self.pos < self.end
            && (self.src[self.pos].is_ascii_digit() || self.src[self.pos] == b'_')
        {
            self.pos += 1;
        }
        (s, self.pos)
    }

    fn number(&mut self) -> TokKind {
        let start = self.pos;
        let (ds, de) = self.digits();
        // IPv4 / CIDR / socket address, or a fraction.
        if self.peek(0) == b'.' && self.peek(1).is_ascii_digit() {
            return self.address(start);
        }
        let digits: String = self.text[ds..de].chars().filter(|c| *c != '_').collect();
        let value: Option<u64> = digits.parse().ok();
        if self.pos < self.end && self.src[self.pos].is_ascii_alphabetic() {
            let us = self.pos;
            while self.pos < self.end && self.src[self.pos].is_ascii_alphanumeric() {
                self.pos += 1;
            }
            let unit = &self.text[us..self.pos];
            let dur = match unit {
                "ms" => Some(1u64),
                "s" => Some(1000),
                "m" => Some(60_000),
                "h" => Some(3_600_000),
                "d" => Some(86_400_000),
                _ => None,
            };
            let size = match unit {
                "B" => Some(1u64),
                "KiB" => Some(1 << 10),
                "MiB" => Some(1 << 20),
                "GiB" => Some(1 << 30),
                "TiB" => Some(1 << 40),
                _ => None,
            };
            let Some(mult) = dur.or(size) else {
                let help = match unit {
                    "KB" | "kB" | "K" | "k" | "kb" | "Ki" => "sizes use binary units: write `KiB`",
                    "MB" | "M" | "mb" | "Mi" => "sizes use binary units: write `MiB`",
                    "GB" | "G" | "gb" | "Gi" => "sizes use binary units: write `GiB`",
                    "TB" | "T" | "tb" | "Ti" => "sizes use binary units: write `TiB`",
                    "sec" | "secs" | "second" | "seconds" | "S" => {
                        "write seconds as `s`, e.g. `30s`"
                    }
                    "min" | "mins" | "minute" | "minutes" | "M_" => {
                        "write minutes as `m`, e.g. `5m`"
                    }
                    "hr" | "hrs" | "hour" | "hours" | "H" => "write hours as `h`, e.g. `1h`",
                    "day" | "days" | "D" => "write days as `d`, e.g. `7d`",
                    "us" | "ns" | "µs" => "the smallest duration unit is `ms`",
                    "kib" | "mib" | "gib" | "tib" | "b" => {
                        "size units are case-sensitive: `B`, `KiB`, `MiB`, `GiB`, `TiB`"
                    }
                    _ => {
                        "durations use `ms`, `s`, `m`, `h`, `d`; sizes use `B`, `KiB`, `MiB`, `GiB`, `TiB`"
                    }
                };
                let d = self.error(
                    Code::UnknownUnit,
                    us,
                    self.pos,
                    format!("unknown unit `{unit}`"),
                );
                d.primary.message = "not a duration or size unit".into();
                d.help = Some(help.into());
                return TokKind::Error;
            };
            let Some(total) = value.and_then(|v| v.checked_mul(mult)) else {
                let d = self.error(Code::InvalidNumber, start, self.pos, "number too large");
                d.primary.message = "does not fit in 64 bits".into();
                d.help = Some("use a larger unit, or a smaller value".into());
                return TokKind::Error;
            };
            return if dur.is_some() {
                TokKind::Duration(total)
            } else {
                TokKind::Size(total)
            };
        }
        match value.and_then(|v| i64::try_from(v).ok()) {
            Some(v) => TokKind::Int(v),
            None => {
                let d = self.error(Code::InvalidNumber, start, self.pos, "integer too large");
                d.primary.message = "integers must fit in a signed 64-bit integer".into();
                d.help = Some("the largest integer is 9223372036854775807".into());
                TokKind::Error
            }
        }
    }

    fn address(&mut self, start: usize) -> TokKind {
        // Consume the dotted part.
        let mut parts = 1;
        while self.peek(0) == b'.' && self.peek(1).is_ascii_digit() {
            self.pos += 1;
            self.digits();
            parts += 1;
        }
        let ip_end = self.pos;
        let ip_text = &self.text[start..ip_end];
        if parts == 2 {
            // `1.5h`: a fraction.
            while self.pos < self.end && self.src[self.pos].is_ascii_alphanumeric() {
                self.pos += 1;
            }
            let d = self.error(
                Code::InvalidNumber,
                start,
                self.pos,
                "fractional numbers are not supported",
            );
            d.primary.message = "a fraction".into();
            d.help = Some("use a smaller unit: `1500ms` instead of `1.5s`, `90m` instead of `1.5h`, `1536MiB` instead of `1.5GiB`".into());
            return TokKind::Error;
        }
        let mut suffix = None;
        if self.peek(0) == b'/' && self.peek(1).is_ascii_digit() {
            self.pos += 1;
            let (s, e) = self.digits();
            suffix = Some(('/', s, e));
        } else if self.peek(0) == b':' && self.peek(1).is_ascii_digit() {
            self.pos += 1;
            let (s, e) = self.digits();
            suffix = Some((':', s, e));
        }
        let whole = &self.text[start..self.pos];
        let ip: Option<Ipv4Addr> = if parts == 4 {
            ip_text.parse().ok()
        } else {
            None
        };
        let Some(ip) = ip else {
            let bad = ip_text
                .split('.')
                .find(|p| p.parse::<u8>().is_err())
                .unwrap_or(ip_text)
                .to_owned();
            let d = self.error(
                Code::InvalidAddress,
                start,
                ip_end,
                format!("`{ip_text}` is not a valid IPv4 address"),
            );
            d.primary.message = if parts != 4 {
                format!("has {parts} parts; an IPv4 address has 4")
            } else {
                format!("`{bad}` is not a number from 0 to 255")
            };
            d.help = Some(match suffix {
                Some(('/', _, _)) => {
                    "a CIDR block is four numbers from 0 to 255 and a prefix, e.g. `10.0.0.0/8`"
                        .into()
                }
                _ => "an IPv4 address is four numbers from 0 to 255, e.g. `10.0.0.1`".into(),
            });
            return TokKind::Error;
        };
        match suffix {
            None => TokKind::Ip(Rc::new(IpAddr::V4(ip))),
            Some(('/', s, e)) => {
                let prefix: Option<u8> = self.text[s..e].parse().ok().filter(|p| *p <= 32);
                let Some(prefix) = prefix else {
                    let d = self.error(
                        Code::InvalidAddress,
                        s,
                        e,
                        format!("invalid prefix length in `{whole}`"),
                    );
                    d.primary.message = "must be from 0 to 32".into();
                    d.help =
                        Some("an IPv4 prefix length is 0 (everything) to 32 (one address)".into());
                    return TokKind::Error;
                };
                match Cidr::new(IpAddr::V4(ip), prefix) {
                    Ok(c) => TokKind::Cidr(Rc::new(c)),
                    Err(err) => {
                        let network =
                            Cidr::new(IpAddr::V4(ip), prefix)
                                .err()
                                .and_then(|e| match e {
                                    glint_model::CidrError::HostBits { network, .. } => {
                                        Some(network)
                                    }
                                    _ => None,
                                });
                        let d = self.error(
                            Code::InvalidAddress,
                            start,
                            self.pos,
                            format!("invalid CIDR block `{whole}`"),
                        );
                        d.primary.message = err.to_string();
                        if let Some(n) = network {
                            d.help = Some(format!("write the network address: `{n}`"));
                        }
                        TokKind::Error
                    }
                }
            }
            Some((_, s, e)) => {
                let port: Option<u16> = self.text[s..e].parse().ok().filter(|p| *p >= 1);
                match port {
                    Some(p) => TokKind::Addr(Rc::new(SocketAddr::new(IpAddr::V4(ip), p))),
                    None => {
                        let d = self.error(
                            Code::InvalidAddress,
                            s,
                            e,
                            format!("invalid port in `{whole}`"),
                        );
                        d.primary.message = "a port is a number from 1 to 65535".into();
                        d.help =
                            Some("write the address as `IP:PORT`, e.g. `127.0.0.1:8080`".into());
                        TokKind::Error
                    }
                }
            }
        }
    }

    fn string(&mut self) -> TokKind {
        let start = self.pos;
        self.pos += 1;
        match self.string_body(start, 0) {
            Some(parts) => TokKind::Str(Rc::from(parts)),
            None => TokKind::Error,
        }
    }

    /// Lexes a string body after its opening quote; `self.pos` ends after the
    /// closing quote.
    fn string_body(&mut self, start: usize, depth: usize) -> Option<Vec<StrPart>> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut ok = true;
        loop {
            if self.pos >= self.end || self.src[self.pos] == b'\n' {
                let d = self.error(
                    Code::UnterminatedString,
                    start,
                    self.pos,
                    "unterminated string",
                );
                d.primary.message = "this string is never closed".into();
                d.help = Some("add a closing `\"`; strings cannot span lines (use `\\n`)".into());
                return None;
            }
            if self.pos - start > MAX_STRING {
                let d = self.error(Code::TooLarge, start, start + 1, "string literal too large");
                d.primary.message = format!("longer than {MAX_STRING} bytes");
                d.help = Some(
                    "keep large data out of the declaration: copy a file into an image instead"
                        .into(),
                );
                // Skip to the end of the line.
                while self.pos < self.end && self.src[self.pos] != b'\n' {
                    self.pos += 1;
                }
                return None;
            }
            let b = self.src[self.pos];
            match b {
                b'"' => {
                    self.pos += 1;
                    break;
                }
                b'\\' => {
                    let es = self.pos;
                    self.pos += 1;
                    let c = self.peek(0);
                    self.pos += 1;
                    match c {
                        b'n' => lit.push('\n'),
                        b't' => lit.push('\t'),
                        b'r' => lit.push('\r'),
                        b'\\' => lit.push('\\'),
                        b'"' => lit.push('"'),
                        b'$' => lit.push('$'),
                        b'u' if self.peek(0) == b'{' => {
                            let hs = self.pos + 1;
                            let mut he = hs;
                            while he < self.end && he - hs < 8 && self.src[he].is_ascii_hexdigit() {
                                he += 1;
                            }
                            let ch = if he < self.end && self.src[he] == b'}' {
                                u32::from_str_radix(&self.text[hs..he], 16)
                                    .ok()
                                    .and_then(char::from_u32)
                            } else {
                                None
                            };
                            match ch {
                                Some(ch) => {
                                    lit.push(ch);
                                    self.pos = he + 1;
                                }
                                None => {
                                    let d = self.error(
                                        Code::InvalidEscape,
                                        es,
                                        self.pos,
                                        "invalid unicode escape",
                                    );
                                    d.help = Some("write `\\u{` hex digits `}` naming a Unicode scalar value, e.g. `\\u{e9}`".into());
                                    ok = false;
                                }
                            }
                        }
                        _ => {
                            // Step back over a multi-byte char or newline.
                            if c == b'\n' || c == 0 {
                                self.pos -= 1;
                            } else if c >= 0x80 {
                                self.pos -= 1;
                                let ch = self.text[self.pos..].chars().next().unwrap_or('?');
                                self.pos += ch.len_utf8();
                            }
                            let shown = self.text.get(es..self.pos).unwrap_or("\\").to_owned();
                            let d = self.error(
                                Code::InvalidEscape,
                                es,
                                self.pos,
                                format!("invalid escape `{shown}`"),
                            );
                            d.primary.message = "not an escape".into();
                            d.help = Some("valid escapes: `\\n`, `\\t`, `\\r`, `\\\\`, `\\\"`, `\\$`, `\\u{...}`; to write a backslash, double it".into());
                            ok = false;
                        }
                    }
                }
                b'$' if self.peek(1) == b'{' => {
                    if !lit.is_empty() {
                        parts.push(StrPart::Lit(std::mem::take(&mut lit)));
                    }
                    let is = self.pos;
                    self.pos += 2;
                    let inner_start = self.pos;
                    match self.skip_interpolation(is, depth) {
                        Some(inner_end) => {
                            parts.push(StrPart::Interp(self.span(inner_start, inner_end)));
                        }
                        None => return None,
                    }
                }
                _ => {
                    let ch_start = self.pos;
                    let ch = self.text[ch_start..].chars().next().unwrap_or('\u{fffd}');
                    self.pos += ch.len_utf8().max(1);
                    lit.push(ch);
                }
            }
        }
        if !lit.is_empty() || parts.is_empty() {
            parts.push(StrPart::Lit(lit));
        }
        ok.then_some(parts)
    }

    /// Skips an interpolation body (after `${`), returning the offset of its
    /// closing `}`; `self.pos` ends after it.
    fn skip_interpolation(&mut self, open: usize, depth: usize) -> Option<usize> {
        if depth >= MAX_STRING_NESTING {
            let d = self.error(
                Code::TooDeep,
                open,
                open + 2,
                "strings nested too deeply in interpolations",
            );
            d.primary.message = format!("more than {MAX_STRING_NESTING} levels");
            return None;
        }
        let mut braces = 0usize;
        loop {
            if self.pos >= self.end || self.src[self.pos] == b'\n' {
                let d = self.error(
                    Code::UnterminatedString,
                    open,
                    open + 2,
                    "unterminated interpolation",
                );
                d.primary.message = "this `${` is never closed with `}`".into();
                return None;
            }
            match self.src[self.pos] {
                b'{' => braces += 1,
                b'}' if braces == 0 => {
                    let end = self.pos;
                    self.pos += 1;
                    return Some(end);
                }
                b'}' => braces -= 1,
                b'"' => {
                    let s = self.pos;
                    self.pos += 1;
                    self.string_body(s, depth + 1)?;
                    continue;
                }
                _ => {}
            }
            self.pos += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(src: &str) -> (Vec<TokKind>, Vec<Diagnostic>) {
        let mut d = Vec::new();
        let t = lex(src, FileId(0), 0, src.len(), &mut d);
        (t.into_iter().map(|t| t.kind).collect(), d)
    }

    #[test]
    fn domain_literals_are_single_tokens() {
        let (k, d) = kinds("250ms 30s 2GiB 10.0.0.0/8 127.0.0.1:8080 10.1.2.3 api-v2");
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(k[0], TokKind::Duration(250));
        assert_eq!(k[1], TokKind::Duration(30_000));
        assert_eq!(k[2], TokKind::Size(2 << 30));
        assert!(matches!(k[3], TokKind::Cidr(_)));
        assert!(matches!(&k[4], TokKind::Addr(a) if a.port() == 8080));
        assert!(matches!(k[5], TokKind::Ip(_)));
        assert_eq!(k[6], TokKind::Ident);
    }

    #[test]
    fn bad_literals_are_reported_with_their_code() {
        for (src, code) in [
            ("10.0.0.300/8", Code::InvalidAddress),
            ("10.0.0.1/8", Code::InvalidAddress),
            ("5MB", Code::UnknownUnit),
            ("1.5h", Code::InvalidNumber),
            ("99999999999999999999", Code::InvalidNumber),
            ("\"abc", Code::UnterminatedString),
            ("\"a\\qb\"", Code::InvalidEscape),
            ("sha256:abc", Code::InvalidDigest),
            ("@", Code::UnexpectedChar),
        ] {
            let (_, d) = kinds(src);
            assert_eq!(d.first().map(|d| d.code), Some(code), "{src}");
        }
    }

    #[test]
    fn interpolations_are_located() {
        let src = r#""a${x + "}"}b""#;
        let (k, d) = kinds(src);
        assert!(d.is_empty(), "{d:?}");
        let TokKind::Str(parts) = &k[0] else { panic!() };
        assert_eq!(parts.len(), 3);
        let StrPart::Interp(span) = parts[1] else {
            panic!()
        };
        assert_eq!(&src[span.start as usize..span.end as usize], r#"x + "}""#);
    }
}
