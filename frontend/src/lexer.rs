//! The lexer: source text to tokens with spans. It never fails outright: a
//! character it does not know becomes a diagnostic and is skipped, so the
//! parser still sees the rest of the file.

use crate::diag::{Code, Diagnostic};
use crate::source::{FileId, Span};

/// A token's kind and, for names and literals, its value.
#[derive(Clone, Debug, PartialEq)]
pub enum TokenKind {
    Ident(String),
    Int(i64),
    Float(f64),
    Str(String),
    // Keywords.
    Fn,
    Model,
    Train,
    Param,
    Let,
    For,
    In,
    If,
    Else,
    Use,
    Optimizer,
    True,
    False,
    // Punctuation and operators.
    LParen,
    RParen,
    LBracket,
    RBracket,
    LBrace,
    RBrace,
    Comma,
    Colon,
    Dot,
    DotDot,
    Ellipsis,
    Arrow,
    Assign,
    Plus,
    Minus,
    Star,
    StarStar,
    Slash,
    Percent,
    At,
    EqEq,
    NotEq,
    Lt,
    Le,
    Gt,
    Ge,
    AndAnd,
    OrOr,
    Bang,
    Eof,
}

impl TokenKind {
    /// How the token reads in a message: `` `fn` ``, `a name`, `end of file`.
    pub fn describe(&self) -> String {
        match self {
            TokenKind::Ident(name) => format!("`{name}`"),
            TokenKind::Int(i) => format!("`{i}`"),
            TokenKind::Float(x) => format!("`{x:?}`"),
            TokenKind::Str(s) => format!("\"{s}\""),
            TokenKind::Eof => "end of file".into(),
            other => format!("`{}`", other.spelling()),
        }
    }

    fn spelling(&self) -> &'static str {
        match self {
            TokenKind::Fn => "fn",
            TokenKind::Model => "model",
            TokenKind::Train => "train",
            TokenKind::Param => "param",
            TokenKind::Let => "let",
            TokenKind::For => "for",
            TokenKind::In => "in",
            TokenKind::If => "if",
            TokenKind::Else => "else",
            TokenKind::Use => "use",
            TokenKind::Optimizer => "optimizer",
            TokenKind::True => "true",
            TokenKind::False => "false",
            TokenKind::LParen => "(",
            TokenKind::RParen => ")",
            TokenKind::LBracket => "[",
            TokenKind::RBracket => "]",
            TokenKind::LBrace => "{",
            TokenKind::RBrace => "}",
            TokenKind::Comma => ",",
            TokenKind::Colon => ":",
            TokenKind::Dot => ".",
            TokenKind::DotDot => "..",
            TokenKind::Ellipsis => "...",
            TokenKind::Arrow => "->",
            TokenKind::Assign => "=",
            TokenKind::Plus => "+",
            TokenKind::Minus => "-",
            TokenKind::Star => "*",
            TokenKind::StarStar => "**",
            TokenKind::Slash => "/",
            TokenKind::Percent => "%",
            TokenKind::At => "@",
            TokenKind::EqEq => "==",
            TokenKind::NotEq => "!=",
            TokenKind::Lt => "<",
            TokenKind::Le => "<=",
            TokenKind::Gt => ">",
            TokenKind::Ge => ">=",
            TokenKind::AndAnd => "&&",
            TokenKind::OrOr => "||",
            TokenKind::Bang => "!",
            TokenKind::Ident(_) | TokenKind::Int(_) | TokenKind::Float(_) | TokenKind::Str(_) | TokenKind::Eof => "",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Token {
    pub kind: TokenKind,
    pub span: Span,
}

fn keyword(word: &str) -> Option<TokenKind> {
    Some(match word {
        "fn" => TokenKind::Fn,
        "model" => TokenKind::Model,
        "train" => TokenKind::Train,
        "param" => TokenKind::Param,
        "let" => TokenKind::Let,
        "for" => TokenKind::For,
        "in" => TokenKind::In,
        "if" => TokenKind::If,
        "else" => TokenKind::Else,
        "use" => TokenKind::Use,
        "optimizer" => TokenKind::Optimizer,
        "true" => TokenKind::True,
        "false" => TokenKind::False,
        _ => return None,
    })
}

/// Splits `text` into tokens, ending with [`TokenKind::Eof`].
pub fn lex(file: FileId, text: &str, diagnostics: &mut Vec<Diagnostic>) -> Vec<Token> {
    let bytes = text.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if c == b'/' && bytes.get(i + 1) == Some(&b'/') {
            while i < bytes.len() && bytes[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        let kind = if c.is_ascii_alphabetic() || c == b'_' {
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            let word = &text[start..i];
            keyword(word).unwrap_or_else(|| TokenKind::Ident(word.to_string()))
        } else if c.is_ascii_digit() {
            match number(text, &mut i) {
                Ok(kind) => kind,
                Err(message) => {
                    diagnostics.push(
                        Diagnostic::new(Code("E0003"), Span::new(file, start, i), message).label("not a valid number"),
                    );
                    TokenKind::Int(0)
                }
            }
        } else if c == b'"' {
            i += 1;
            while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\n' {
                i += 1;
            }
            if i >= bytes.len() || bytes[i] != b'"' {
                diagnostics.push(
                    Diagnostic::new(Code("E0002"), Span::new(file, start, i), "unterminated string")
                        .label("this string has no closing `\"`"),
                );
                TokenKind::Str(text[start + 1..i].to_string())
            } else {
                i += 1;
                TokenKind::Str(text[start + 1..i - 1].to_string())
            }
        } else {
            let two = bytes.get(i + 1).copied();
            let three = bytes.get(i + 2).copied();
            let (kind, len) = match (c, two, three) {
                (b'.', Some(b'.'), Some(b'.')) => (TokenKind::Ellipsis, 3),
                (b'.', Some(b'.'), _) => (TokenKind::DotDot, 2),
                (b'-', Some(b'>'), _) => (TokenKind::Arrow, 2),
                (b'*', Some(b'*'), _) => (TokenKind::StarStar, 2),
                (b'=', Some(b'='), _) => (TokenKind::EqEq, 2),
                (b'!', Some(b'='), _) => (TokenKind::NotEq, 2),
                (b'<', Some(b'='), _) => (TokenKind::Le, 2),
                (b'>', Some(b'='), _) => (TokenKind::Ge, 2),
                (b'&', Some(b'&'), _) => (TokenKind::AndAnd, 2),
                (b'|', Some(b'|'), _) => (TokenKind::OrOr, 2),
                (b'(', ..) => (TokenKind::LParen, 1),
                (b')', ..) => (TokenKind::RParen, 1),
                (b'[', ..) => (TokenKind::LBracket, 1),
                (b']', ..) => (TokenKind::RBracket, 1),
                (b'{', ..) => (TokenKind::LBrace, 1),
                (b'}', ..) => (TokenKind::RBrace, 1),
                (b',', ..) => (TokenKind::Comma, 1),
                (b':', ..) => (TokenKind::Colon, 1),
                (b'.', ..) => (TokenKind::Dot, 1),
                (b'=', ..) => (TokenKind::Assign, 1),
                (b'+', ..) => (TokenKind::Plus, 1),
                (b'-', ..) => (TokenKind::Minus, 1),
                (b'*', ..) => (TokenKind::Star, 1),
                (b'/', ..) => (TokenKind::Slash, 1),
                (b'%', ..) => (TokenKind::Percent, 1),
                (b'@', ..) => (TokenKind::At, 1),
                (b'<', ..) => (TokenKind::Lt, 1),
                (b'>', ..) => (TokenKind::Gt, 1),
                (b'!', ..) => (TokenKind::Bang, 1),
                _ => {
                    let ch = text[i..].chars().next().unwrap_or('?');
                    i += ch.len_utf8();
                    diagnostics.push(
                        Diagnostic::new(Code("E0001"), Span::new(file, start, i), unexpected(ch))
                            .label("kiln does not use this character"),
                    );
                    continue;
                }
            };
            i += len;
            kind
        };
        tokens.push(Token { kind, span: Span::new(file, start, i) });
    }
    tokens.push(Token { kind: TokenKind::Eof, span: Span::new(file, text.len(), text.len()) });
    tokens
}

/// Reads an integer or float literal starting at `*i`: `42`, `0.5`, `1e-4`,
/// `3.0e8`. A `..` after an integer is a range, not a fraction.
fn number(text: &str, i: &mut usize) -> Result<TokenKind, String> {
    let bytes = text.as_bytes();
    let start = *i;
    let digits = |i: &mut usize| {
        while *i < bytes.len() && (bytes[*i].is_ascii_digit() || bytes[*i] == b'_') {
            *i += 1;
        }
    };
    digits(i);
    let mut is_float = false;
    if *i + 1 < bytes.len() && bytes[*i] == b'.' && bytes[*i + 1].is_ascii_digit() {
        is_float = true;
        *i += 1;
        digits(i);
    }
    if *i < bytes.len() && (bytes[*i] == b'e' || bytes[*i] == b'E') {
        let mut j = *i + 1;
        if j < bytes.len() && (bytes[j] == b'+' || bytes[j] == b'-') {
            j += 1;
        }
        if j < bytes.len() && bytes[j].is_ascii_digit() {
            is_float = true;
            *i = j;
            digits(i);
        }
    }
    if *i < bytes.len() && (bytes[*i].is_ascii_alphabetic() || bytes[*i] == b'_') {
        while *i < bytes.len() && bytes[*i].is_ascii_alphanumeric() {
            *i += 1;
        }
        return Err(format!("`{}` is not a number", &text[start..*i]));
    }
    let literal: String = text[start..*i].chars().filter(|&c| c != '_').collect();
    if is_float {
        literal.parse().map(TokenKind::Float).map_err(|_| format!("`{literal}` is not a valid float"))
    } else {
        literal.parse().map(TokenKind::Int).map_err(|_| format!("integer `{literal}` is too large"))
    }
}

/// What an unexpected character is called: itself when it is visible, its
/// code point and name when it is not (a byte-order mark, a NUL byte, a
/// control character or invisible space).
fn unexpected(ch: char) -> String {
    let name = match ch {
        '\u{feff}' => Some("a byte-order mark"),
        '\0' => Some("a NUL byte"),
        '\u{a0}' => Some("a no-break space"),
        '\u{200b}' => Some("a zero-width space"),
        c if c.is_control() => Some("a control character"),
        c if c.is_whitespace() => Some("an invisible space"),
        _ => None,
    };
    match name {
        Some(name) => format!("unexpected character U+{:04X} ({name})", ch as u32),
        None => format!("unexpected character `{ch}`"),
    }
}
