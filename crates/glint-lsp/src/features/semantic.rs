//! Semantic tokens: `glint_lang::ide::highlight`'s classes in the
//! protocol's relative encoding (one token per line: a block comment over
//! several lines is split).

use crate::text::{Encoding, LineIndex};
use glint_lang::FileId;
use glint_lang::ide::FileIndex;
use glint_lang::ide::highlight::{Class, highlight};
use lsp_types::{SemanticToken, SemanticTokenModifier, SemanticTokenType, SemanticTokensLegend};

/// The token types, in legend order.
const TYPES: &[(Class, SemanticTokenType)] = &[
    (Class::Keyword, SemanticTokenType::KEYWORD),
    (Class::Kind, SemanticTokenType::TYPE),
    (Class::DeclName, SemanticTokenType::CLASS),
    (Class::Property, SemanticTokenType::PROPERTY),
    (Class::Variable, SemanticTokenType::VARIABLE),
    (Class::Parameter, SemanticTokenType::PARAMETER),
    (Class::Function, SemanticTokenType::FUNCTION),
    (Class::Builtin, SemanticTokenType::FUNCTION),
    (Class::Namespace, SemanticTokenType::NAMESPACE),
    (Class::EnumMember, SemanticTokenType::ENUM_MEMBER),
    (Class::String, SemanticTokenType::STRING),
    (Class::Number, SemanticTokenType::NUMBER),
    (Class::Comment, SemanticTokenType::COMMENT),
    (Class::Operator, SemanticTokenType::OPERATOR),
];

const DECLARATION: u32 = 1;
const DEFAULT_LIBRARY: u32 = 2;

/// The legend announced in the server's capabilities.
pub fn legend() -> SemanticTokensLegend {
    let mut types: Vec<SemanticTokenType> = Vec::new();
    for (_, t) in TYPES {
        if !types.contains(t) {
            types.push(t.clone());
        }
    }
    SemanticTokensLegend {
        token_types: types,
        token_modifiers: vec![
            SemanticTokenModifier::DECLARATION,
            SemanticTokenModifier::DEFAULT_LIBRARY,
        ],
    }
}

fn type_index(c: Class) -> u32 {
    let legend = legend();
    let t = TYPES
        .iter()
        .find(|(k, _)| *k == c)
        .map(|(_, t)| t.clone())
        .unwrap_or(SemanticTokenType::VARIABLE);
    legend
        .token_types
        .iter()
        .position(|x| *x == t)
        .and_then(|i| u32::try_from(i).ok())
        .unwrap_or(0)
}

/// The tokens of a document.
pub fn tokens(text: &str, lines: &LineIndex, enc: Encoding) -> Vec<SemanticToken> {
    let ix = FileIndex::build("", text, FileId(0));
    let index_of: Vec<(Class, u32)> = TYPES.iter().map(|(c, _)| (*c, type_index(*c))).collect();
    let mut out = Vec::new();
    let (mut prev_line, mut prev_start) = (0u32, 0u32);
    for h in highlight(text, &ix) {
        let ty = index_of
            .iter()
            .find(|(c, _)| *c == h.class)
            .map(|(_, i)| *i)
            .unwrap_or(0);
        let mut mods = 0;
        if h.definition {
            mods |= DECLARATION;
        }
        if h.class == Class::Builtin {
            mods |= DEFAULT_LIBRARY;
        }
        // One piece per line.
        let (mut a, b) = (h.span.start as usize, h.span.end as usize);
        while a < b {
            let line_end = text[a..b].find('\n').map(|i| a + i).unwrap_or(b);
            let start = lines.position(text, a, enc);
            let end = lines.position(text, line_end, enc);
            let len = end.character.saturating_sub(start.character);
            if len > 0 {
                let delta_line = start.line - prev_line;
                let delta_start = if delta_line == 0 {
                    start.character - prev_start
                } else {
                    start.character
                };
                out.push(SemanticToken {
                    delta_line,
                    delta_start,
                    length: len,
                    token_type: ty,
                    token_modifiers_bitset: mods,
                });
                prev_line = start.line;
                prev_start = start.character;
            }
            a = line_end + 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_relative_and_split_per_line() {
        let text = "/* a\nb */ let x = 1\n";
        let lines = LineIndex::new(text);
        let t = tokens(text, &lines, Encoding::Utf16);
        let flat: Vec<(u32, u32, u32)> = t
            .iter()
            .map(|t| (t.delta_line, t.delta_start, t.length))
            .collect();
        // `/* a`, `b */`, `let`, `x`, `1`.
        assert_eq!(
            flat,
            vec![(0, 0, 4), (1, 0, 4), (0, 5, 3), (0, 4, 1), (0, 4, 1)]
        );
        let x = &t[3];
        assert_eq!(x.token_modifiers_bitset, DECLARATION);
    }
}
