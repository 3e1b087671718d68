//! ManageSieve command lines (RFC 5804 §4), as the front (before login) and the storage
//! node (after) both read them: an atom, then strings (quoted, or literals `{n+}` / `{n}`
//! whose bytes follow the line), numbers and atoms. A literal may be as large as the
//! reader's limit, no larger; a line as long as `LINE_MAX`. Pure: the server hands it lines
//! and literal bytes and gets commands back. This module must never interpret a verb.

/// Longest command line, literals excluded.
pub const LINE_MAX: usize = 8 * 1024;
/// Arguments one command may have.
const ARGS_MAX: usize = 8;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arg {
    Str(Vec<u8>),
    Number(u64),
    Atom(String),
}

impl Arg {
    /// The argument as text, when it is a string of UTF-8.
    pub fn text(arg: Option<&Arg>) -> Option<String> {
        match arg {
            Some(Arg::Str(bytes)) => String::from_utf8(bytes.clone()).ok(),
            _ => None,
        }
    }
}

/// `text` as a quoted string (RFC 5804 §4); a server's texts never hold CR or LF, so
/// those become spaces.
pub fn quote(text: &str) -> String {
    let clean: String = text.chars().map(|c| if c == '\r' || c == '\n' { ' ' } else { c }).collect();
    format!("\"{}\"", clean.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A whole command: its verb (upper-case; empty for a bare SASL response string) and args.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub verb: String,
    pub args: Vec<Arg>,
}

/// What the reader needs next.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// `n` literal bytes, then the rest of the command's line.
    Literal(usize),
    Command(Command),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrammarError {
    #[error("{0}")]
    Syntax(&'static str),
    #[error("a literal may hold at most {0} bytes")]
    LiteralTooLarge(usize),
    #[error("too many arguments")]
    TooManyArgs,
}

/// A command being read, across the lines its literals split it into.
#[derive(Debug)]
pub struct Reader {
    verb: Option<String>,
    args: Vec<Arg>,
    literal_max: usize,
}

impl Reader {
    /// A reader taking literals of at most `literal_max` bytes.
    pub fn new(literal_max: usize) -> Self {
        Self { verb: None, args: Vec::new(), literal_max }
    }

    /// One line without its CRLF: the command, or what must be read before it is whole.
    pub fn line(&mut self, line: &[u8]) -> Result<Next, GrammarError> {
        let result = self.tokens(line);
        if result.is_err() {
            *self = Reader::new(self.literal_max);
        }
        result
    }

    /// The bytes of the literal the last line announced.
    pub fn literal(&mut self, bytes: Vec<u8>) {
        self.args.push(Arg::Str(bytes));
    }

    fn tokens(&mut self, line: &[u8]) -> Result<Next, GrammarError> {
        let mut at = 0;
        loop {
            while line.get(at) == Some(&b' ') {
                at += 1;
            }
            let Some(&b) = line.get(at) else { break };
            if self.args.len() >= ARGS_MAX {
                return Err(GrammarError::TooManyArgs);
            }
            match b {
                b'"' => {
                    let (s, end) = quoted(line, at)?;
                    self.push(Arg::Str(s))?;
                    at = end;
                }
                b'{' => {
                    let n = literal_spec(&line[at..], self.literal_max)?;
                    if self.verb.is_none() && self.args.is_empty() {
                        self.verb = Some(String::new());
                    }
                    return Ok(Next::Literal(n));
                }
                _ => {
                    let end = line[at..].iter().position(|&c| c == b' ').map_or(line.len(), |p| at + p);
                    let word = std::str::from_utf8(&line[at..end]).map_err(|_| GrammarError::Syntax("not UTF-8"))?;
                    let arg = match word.parse::<u64>() {
                        Ok(n) if self.verb.is_some() => Arg::Number(n),
                        _ => Arg::Atom(word.to_ascii_uppercase()),
                    };
                    self.push(arg)?;
                    at = end;
                }
            }
        }
        let reader = std::mem::replace(self, Reader::new(self.literal_max));
        match reader.verb {
            Some(verb) => Ok(Next::Command(Command { verb, args: reader.args })),
            None => Err(GrammarError::Syntax("empty command")),
        }
    }

    fn push(&mut self, arg: Arg) -> Result<(), GrammarError> {
        match (&self.verb, arg) {
            (None, Arg::Atom(verb)) => self.verb = Some(verb),
            (None, Arg::Str(s)) => {
                self.verb = Some(String::new());
                self.args.push(Arg::Str(s));
            }
            (None, _) => return Err(GrammarError::Syntax("a command starts with its name")),
            (Some(_), arg) => self.args.push(arg),
        }
        Ok(())
    }
}

/// A quoted string from `line[at] == '"'`: its bytes and where it ends.
fn quoted(line: &[u8], at: usize) -> Result<(Vec<u8>, usize), GrammarError> {
    let mut out = Vec::new();
    let mut i = at + 1;
    while let Some(&c) = line.get(i) {
        match c {
            b'"' => return Ok((out, i + 1)),
            b'\\' => {
                let &next = line.get(i + 1).ok_or(GrammarError::Syntax("unterminated string"))?;
                if next != b'"' && next != b'\\' {
                    return Err(GrammarError::Syntax("only \\\" and \\\\ may be escaped"));
                }
                out.push(next);
                i += 2;
            }
            b'\r' | b'\n' | 0 => return Err(GrammarError::Syntax("a quoted string may not hold CR, LF or NUL")),
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    Err(GrammarError::Syntax("unterminated string"))
}

/// `{n+}` or `{n}` ending the line.
fn literal_spec(rest: &[u8], max: usize) -> Result<usize, GrammarError> {
    let inner = rest
        .strip_prefix(b"{")
        .and_then(|r| r.strip_suffix(b"}"))
        .ok_or(GrammarError::Syntax("a literal ends its line"))?;
    let digits = inner.strip_suffix(b"+").unwrap_or(inner);
    if digits.is_empty() || digits.len() > 10 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(GrammarError::Syntax("bad literal length"));
    }
    let n: usize =
        std::str::from_utf8(digits).expect("digits").parse().map_err(|_| GrammarError::LiteralTooLarge(max))?;
    if n > max {
        return Err(GrammarError::LiteralTooLarge(max));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc5804_4_strings_literals_and_numbers() {
        let mut r = Reader::new(1 << 20);
        let Ok(Next::Command(c)) = r.line(br#"havespace "my \"script\"" 1024"#) else { panic!() };
        assert_eq!(
            c,
            Command { verb: "HAVESPACE".into(), args: vec![Arg::Str(b"my \"script\"".to_vec()), Arg::Number(1024)] }
        );
        assert_eq!(r.line(br#"PUTSCRIPT "a" {5+}"#), Ok(Next::Literal(5)));
        r.literal(b"keep;".to_vec());
        let Ok(Next::Command(c)) = r.line(b"") else { panic!() };
        assert_eq!(c.args, vec![Arg::Str(b"a".to_vec()), Arg::Str(b"keep;".to_vec())]);
        let Ok(Next::Command(c)) = r.line(b"\"AGEAYg==\"") else { panic!() };
        assert_eq!((c.verb.as_str(), c.args.len()), ("", 1), "a bare SASL response");
    }

    #[test]
    fn bad_lines_are_errors_and_reset() {
        let mut r = Reader::new(1 << 20);
        assert!(r.line(b"PUTSCRIPT \"a\" {99999999999+}").is_err());
        assert_eq!(r.line(b"PUTSCRIPT \"a\" {9999999+}"), Err(GrammarError::LiteralTooLarge(1 << 20)));
        assert!(r.line(b"X \"unterminated").is_err());
        assert!(r.line(b"X \"bad \\n escape\"").is_err());
        assert!(r.line(b"").is_err());
        assert!(r.line(b"A B C D E F G H I J K").is_err());
        assert!(matches!(r.line(b"NOOP"), Ok(Next::Command(_))), "usable after errors");
    }
}
