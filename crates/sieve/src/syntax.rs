//! Tokens to the generic Sieve grammar (RFC 5228 §8.2): commands with arguments, tests and
//! blocks. Nothing here knows what a command means; `compile` checks that. The parser counts
//! nodes and nesting so a hostile script ends in an error, never a deep recursion.

use crate::error::{CompileError, Pos};
use crate::lexer::{Tok, Token};
use crate::limits::Limits;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arg {
    Tag(String),
    Number(u64),
    Strings(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    pub pos: Pos,
    pub args: Vec<(Arg, Pos)>,
    pub tests: Vec<Node>,
    /// A command's block (`None` for a test or a command ended by ";").
    pub block: Option<Vec<Node>>,
}

/// Parses a whole script into its top-level commands.
pub fn parse(tokens: &[Token], limits: &Limits) -> Result<Vec<Node>, CompileError> {
    let mut parser = Parser { tokens, at: 0, nodes: 0, limits };
    let commands = parser.commands(0)?;
    match parser.peek() {
        Tok::Eof => Ok(commands),
        _ => Err(parser.unexpected("a command")),
    }
}

struct Parser<'a> {
    tokens: &'a [Token],
    at: usize,
    nodes: usize,
    limits: &'a Limits,
}

impl Parser<'_> {
    fn peek(&self) -> &Tok {
        &self.tokens[self.at.min(self.tokens.len() - 1)].tok
    }

    fn pos(&self) -> Pos {
        self.tokens[self.at.min(self.tokens.len() - 1)].pos
    }

    fn next(&mut self) -> Tok {
        let tok = self.peek().clone();
        self.at += 1;
        tok
    }

    fn unexpected(&self, wanted: &str) -> CompileError {
        let found = match self.peek() {
            Tok::Ident(name) => format!("identifier '{name}'"),
            Tok::Tag(name) => format!("tag ':{name}'"),
            Tok::Number(n) => format!("number {n}"),
            Tok::Str(_) => "a string".to_string(),
            Tok::Eof => "the end of the script".to_string(),
            other => format!("'{}'", punct(other)),
        };
        CompileError::at(self.pos(), format!("expected {wanted}, found {found}"))
    }

    fn count(&mut self) -> Result<(), CompileError> {
        self.nodes += 1;
        if self.nodes > self.limits.nodes {
            return Err(CompileError::at(self.pos(), format!("script has more than {} elements", self.limits.nodes)));
        }
        Ok(())
    }

    fn deeper(&self, depth: usize) -> Result<usize, CompileError> {
        if depth >= self.limits.nesting_depth {
            return Err(CompileError::at(
                self.pos(),
                format!("nested deeper than {} levels", self.limits.nesting_depth),
            ));
        }
        Ok(depth + 1)
    }

    fn commands(&mut self, depth: usize) -> Result<Vec<Node>, CompileError> {
        let mut commands = Vec::new();
        while let Tok::Ident(_) = self.peek() {
            commands.push(self.command(depth)?);
        }
        Ok(commands)
    }

    fn command(&mut self, depth: usize) -> Result<Node, CompileError> {
        let mut node = self.call()?;
        match self.next() {
            Tok::Semicolon => {}
            Tok::LBrace => {
                let inner = self.deeper(depth)?;
                node.block = Some(self.commands(inner)?);
                if self.next() != Tok::RBrace {
                    self.at -= 1;
                    return Err(self.unexpected("'}' or a command"));
                }
            }
            _ => {
                self.at -= 1;
                return Err(self.unexpected("';' or a block"));
            }
        }
        Ok(node)
    }

    /// An identifier with its arguments and tests: the shape commands and tests share.
    fn call(&mut self) -> Result<Node, CompileError> {
        self.call_at(0)
    }

    fn call_at(&mut self, depth: usize) -> Result<Node, CompileError> {
        self.count()?;
        let pos = self.pos();
        let Tok::Ident(name) = self.next() else {
            self.at -= 1;
            return Err(self.unexpected("an identifier"));
        };
        let mut node = Node { name, pos, args: Vec::new(), tests: Vec::new(), block: None };
        while let Some(arg) = self.argument()? {
            node.args.push(arg);
        }
        match self.peek() {
            Tok::Ident(_) => node.tests.push(self.call_at(self.deeper(depth)?)?),
            Tok::LParen => node.tests = self.test_list(depth)?,
            _ => {}
        }
        Ok(node)
    }

    fn test_list(&mut self, depth: usize) -> Result<Vec<Node>, CompileError> {
        let inner = self.deeper(depth)?;
        self.at += 1;
        let mut tests = vec![self.call_at(inner)?];
        loop {
            match self.next() {
                Tok::Comma => tests.push(self.call_at(inner)?),
                Tok::RParen => return Ok(tests),
                _ => {
                    self.at -= 1;
                    return Err(self.unexpected("',' or ')'"));
                }
            }
        }
    }

    fn argument(&mut self) -> Result<Option<(Arg, Pos)>, CompileError> {
        let pos = self.pos();
        let arg = match self.peek().clone() {
            Tok::Tag(name) => Arg::Tag(name),
            Tok::Number(n) => Arg::Number(n),
            Tok::Str(s) => Arg::Strings(vec![s]),
            Tok::LBracket => {
                self.at += 1;
                return Ok(Some((Arg::Strings(self.string_list()?), pos)));
            }
            _ => return Ok(None),
        };
        self.count()?;
        self.at += 1;
        Ok(Some((arg, pos)))
    }

    fn string_list(&mut self) -> Result<Vec<String>, CompileError> {
        let mut list = Vec::new();
        loop {
            self.count()?;
            match self.next() {
                Tok::Str(s) => list.push(s),
                _ => {
                    self.at -= 1;
                    return Err(self.unexpected("a string"));
                }
            }
            match self.next() {
                Tok::Comma => {}
                Tok::RBracket => return Ok(list),
                _ => {
                    self.at -= 1;
                    return Err(self.unexpected("',' or ']'"));
                }
            }
        }
    }
}

fn punct(tok: &Tok) -> &'static str {
    match tok {
        Tok::LBracket => "[",
        Tok::RBracket => "]",
        Tok::LParen => "(",
        Tok::RParen => ")",
        Tok::LBrace => "{",
        Tok::RBrace => "}",
        Tok::Comma => ",",
        Tok::Semicolon => ";",
        _ => "?",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lexer::tokenize;

    fn parse_text(text: &str) -> Result<Vec<Node>, CompileError> {
        parse(&tokenize(text).unwrap(), &Limits::default())
    }

    #[test]
    fn rfc5228_8_2_commands_tests_and_blocks() {
        let nodes = parse_text("if anyof (true, header :is \"a\" [\"b\",\"c\"]) { keep; } else { discard; }").unwrap();
        assert_eq!(nodes.len(), 2);
        assert_eq!(nodes[0].tests[0].name, "anyof");
        assert_eq!(nodes[0].tests[0].tests[1].args.len(), 3);
        assert_eq!(nodes[1].block.as_ref().unwrap()[0].name, "discard");
    }

    #[test]
    fn missing_semicolon_is_an_error_with_its_place() {
        let err = parse_text("keep;\nif true { keep; \"x\" }").unwrap_err();
        assert_eq!(err.pos, Pos { line: 2, column: 17 });
        assert!(err.message.contains("expected '}' or a command, found a string"), "{err}");
        let err = parse_text("keep \"a\"\n\"b\" discard").unwrap_err();
        assert!(err.message.contains("expected ';'"), "{err}");
    }

    #[test]
    fn deep_nesting_is_refused_not_recursed() {
        let deep = "not ".repeat(1_000_000);
        let err = parse_text(&format!("if {deep} true {{ keep; }}")).unwrap_err();
        assert!(err.message.contains("nested deeper"), "{err}");
        let blocks = "if true {".repeat(100_000);
        assert!(parse_text(&blocks).unwrap_err().message.contains("nested deeper"));
        let lists = "if anyof(".repeat(100_000);
        assert!(parse_text(&lists).is_err());
    }
}
