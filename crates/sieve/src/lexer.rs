//! Script text to tokens (RFC 5228 §8.1): identifiers, tags, numbers with quantifiers,
//! quoted and multi-line strings, comments. Positions are kept for every token so errors
//! name a line and column. This module must never interpret a token's meaning.

use crate::error::{CompileError, Pos};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tok {
    Ident(String),
    Tag(String),
    Number(u64),
    Str(String),
    LBracket,
    RBracket,
    LParen,
    RParen,
    LBrace,
    RBrace,
    Comma,
    Semicolon,
    Eof,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub tok: Tok,
    pub pos: Pos,
}

/// Splits a script into tokens, or names where it cannot.
pub fn tokenize(text: &str) -> Result<Vec<Token>, CompileError> {
    let mut lexer = Lexer { bytes: text.as_bytes(), at: 0, line: 1, line_start: 0 };
    let mut tokens = Vec::new();
    loop {
        lexer.skip_blank()?;
        let pos = lexer.pos();
        let Some(&b) = lexer.bytes.get(lexer.at) else {
            tokens.push(Token { tok: Tok::Eof, pos });
            return Ok(tokens);
        };
        let tok = lexer.token(b, pos)?;
        tokens.push(Token { tok, pos });
    }
}

struct Lexer<'a> {
    bytes: &'a [u8],
    at: usize,
    line: u32,
    line_start: usize,
}

impl Lexer<'_> {
    fn pos(&self) -> Pos {
        Pos { line: self.line, column: (self.at - self.line_start + 1) as u32 }
    }

    fn newline(&mut self) {
        self.line += 1;
        self.line_start = self.at;
    }

    fn bump(&mut self) -> Option<u8> {
        let b = *self.bytes.get(self.at)?;
        self.at += 1;
        if b == b'\n' {
            self.newline();
        }
        Some(b)
    }

    fn skip_blank(&mut self) -> Result<(), CompileError> {
        while let Some(&b) = self.bytes.get(self.at) {
            match b {
                b' ' | b'\t' | b'\r' | b'\n' => {
                    self.bump();
                }
                b'#' => self.skip_line(),
                b'/' if self.bytes.get(self.at + 1) == Some(&b'*') => self.skip_bracket_comment()?,
                _ => break,
            }
        }
        Ok(())
    }

    fn skip_line(&mut self) {
        while let Some(b) = self.bump() {
            if b == b'\n' {
                break;
            }
        }
    }

    fn skip_bracket_comment(&mut self) -> Result<(), CompileError> {
        let pos = self.pos();
        self.at += 2;
        loop {
            match self.bump() {
                Some(b'*') if self.bytes.get(self.at) == Some(&b'/') => {
                    self.at += 1;
                    return Ok(());
                }
                Some(_) => {}
                None => return Err(CompileError::at(pos, "unterminated comment")),
            }
        }
    }

    fn token(&mut self, b: u8, pos: Pos) -> Result<Tok, CompileError> {
        let punct = match b {
            b'[' => Some(Tok::LBracket),
            b']' => Some(Tok::RBracket),
            b'(' => Some(Tok::LParen),
            b')' => Some(Tok::RParen),
            b'{' => Some(Tok::LBrace),
            b'}' => Some(Tok::RBrace),
            b',' => Some(Tok::Comma),
            b';' => Some(Tok::Semicolon),
            _ => None,
        };
        if let Some(tok) = punct {
            self.at += 1;
            return Ok(tok);
        }
        match b {
            b'"' => self.quoted(pos),
            b':' => {
                self.at += 1;
                match self.identifier() {
                    Some(name) => Ok(Tok::Tag(name)),
                    None => Err(CompileError::at(pos, "':' must start a tag such as :is")),
                }
            }
            b'0'..=b'9' => self.number(pos),
            _ => self.word(pos),
        }
    }

    fn identifier(&mut self) -> Option<String> {
        let start = self.at;
        while let Some(&b) = self.bytes.get(self.at) {
            let ok = b == b'_' || b.is_ascii_alphabetic() || (self.at > start && b.is_ascii_digit());
            if !ok {
                break;
            }
            self.at += 1;
        }
        (self.at > start).then(|| String::from_utf8_lossy(&self.bytes[start..self.at]).to_ascii_lowercase())
    }

    fn word(&mut self, pos: Pos) -> Result<Tok, CompileError> {
        let Some(name) = self.identifier() else {
            let c = String::from_utf8_lossy(&self.bytes[self.at..]).chars().next().unwrap_or('?');
            return Err(CompileError::at(pos, format!("unexpected character {c:?}")));
        };
        if name == "text" && self.bytes.get(self.at) == Some(&b':') {
            self.at += 1;
            return self.multiline(pos);
        }
        Ok(Tok::Ident(name))
    }

    fn number(&mut self, pos: Pos) -> Result<Tok, CompileError> {
        let mut value: u64 = 0;
        while let Some(&b @ b'0'..=b'9') = self.bytes.get(self.at) {
            value = value
                .checked_mul(10)
                .and_then(|v| v.checked_add(u64::from(b - b'0')))
                .ok_or_else(|| CompileError::at(pos, "number too large"))?;
            self.at += 1;
        }
        let shift = match self.bytes.get(self.at).map(u8::to_ascii_uppercase) {
            Some(b'K') => 10,
            Some(b'M') => 20,
            Some(b'G') => 30,
            _ => 0,
        };
        if shift > 0 {
            self.at += 1;
            value = value.checked_mul(1 << shift).ok_or_else(|| CompileError::at(pos, "number too large"))?;
        }
        Ok(Tok::Number(value))
    }

    /// A quoted string (RFC 5228 §2.4.2): `\"` and `\\` escape; any other backslash is
    /// dropped and the character after it kept.
    fn quoted(&mut self, pos: Pos) -> Result<Tok, CompileError> {
        self.at += 1;
        let mut out = Vec::new();
        loop {
            match self.bump() {
                None => return Err(CompileError::at(pos, "unterminated string")),
                Some(b'"') => break,
                Some(b'\\') => match self.bump() {
                    Some(c) => out.push(c),
                    None => return Err(CompileError::at(pos, "unterminated string")),
                },
                Some(c) => out.push(c),
            }
        }
        to_text(out, pos)
    }

    /// `text:` to a line holding only "." (RFC 5228 §2.4.2): lines kept with CRLF, a
    /// leading ".." unstuffed to ".".
    fn multiline(&mut self, pos: Pos) -> Result<Tok, CompileError> {
        while let Some(b' ' | b'\t') = self.bytes.get(self.at) {
            self.at += 1;
        }
        match self.bytes.get(self.at) {
            Some(b'#') => self.skip_line(),
            Some(b'\r') if self.bytes.get(self.at + 1) == Some(&b'\n') => {
                self.at += 1;
                self.bump();
            }
            Some(b'\n') => {
                self.bump();
            }
            _ => return Err(CompileError::at(pos, "text: must be followed by the end of the line")),
        }
        let mut out = Vec::new();
        loop {
            let line = self.line_bytes().ok_or_else(|| CompileError::at(pos, "text: block without a final \".\""))?;
            if line == b"." {
                break;
            }
            out.extend_from_slice(line.strip_prefix(b".").filter(|l| l.starts_with(b".")).unwrap_or(line));
            out.extend_from_slice(b"\r\n");
        }
        to_text(out, pos)
    }

    /// The next line without its line ending, or None at the end of the text.
    fn line_bytes(&mut self) -> Option<&[u8]> {
        if self.at >= self.bytes.len() {
            return None;
        }
        let start = self.at;
        let bytes = self.bytes;
        while let Some(b) = self.bump() {
            if b == b'\n' {
                let end = self.at - 1;
                let end = if end > start && bytes[end - 1] == b'\r' { end - 1 } else { end };
                return Some(&bytes[start..end]);
            }
        }
        Some(&bytes[start..])
    }
}

fn to_text(bytes: Vec<u8>, pos: Pos) -> Result<Tok, CompileError> {
    String::from_utf8(bytes).map(Tok::Str).map_err(|_| CompileError::at(pos, "string is not valid UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(text: &str) -> Vec<Tok> {
        tokenize(text).unwrap().into_iter().map(|t| t.tok).collect()
    }

    #[test]
    fn rfc5228_2_4_2_quoted_string_escapes() {
        assert_eq!(toks(r#""a\"b\\c\d""#), vec![Tok::Str("a\"b\\cd".into()), Tok::Eof]);
    }

    #[test]
    fn rfc5228_2_4_1_numbers_take_quantifiers() {
        assert_eq!(
            toks("1K 2M 3g 7"),
            vec![Tok::Number(1024), Tok::Number(2 << 20), Tok::Number(3 << 30), Tok::Number(7), Tok::Eof]
        );
        assert!(tokenize("99999999999999999999").is_err());
        assert!(tokenize("99999999999G").is_err());
    }

    #[test]
    fn rfc5228_2_4_2_multiline_unstuffs_dots() {
        let t = toks("text: # comment\r\nline 1\r\n..dot\r\n.\r\n;");
        assert_eq!(t, vec![Tok::Str("line 1\r\n.dot\r\n".into()), Tok::Semicolon, Tok::Eof]);
    }

    #[test]
    fn rfc5228_2_3_comments_are_skipped() {
        assert_eq!(toks("/* a\n*/ keep # x\n;"), vec![Tok::Ident("keep".into()), Tok::Semicolon, Tok::Eof]);
    }

    #[test]
    fn errors_name_line_and_column() {
        let err = tokenize("keep;\n  \"open").unwrap_err();
        assert_eq!(err.pos, Pos { line: 2, column: 3 });
        assert!(tokenize("/* never closed").is_err());
        assert!(tokenize("text:\nno end").is_err());
    }
}
