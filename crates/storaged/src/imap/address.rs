//! RFC 5322 address lists as IMAP reads them: the address structures of ENVELOPE (RFC 3501
//! §7.4.2: groups as a start and an end marker, source routes, a comment standing in for a
//! missing display name) and the text SEARCH FROM/TO/CC/BCC match (`name <local@domain>`,
//! comments gone). Raw bytes in, raw bytes out: encoded words stay encoded, as ENVELOPE
//! requires.
//!
//! Lenient like the readers of real mail (a missing `;`, `>` or domain is forgiven) and
//! bounded: at most [`ENTRIES_MAX`] entries, comments nested at most [`COMMENT_DEPTH_MAX`]
//! deep, linear in the input. Never panics on any input.

/// Entries kept from one header field; the rest are dropped.
pub const ENTRIES_MAX: usize = 1000;
/// Comment nesting followed; deeper parentheses are taken as comment text.
pub const COMMENT_DEPTH_MAX: usize = 64;

/// One element of an address list, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Mailbox(Mailbox),
    /// `name:` opening a group (RFC 3501: `(NIL NIL name NIL)`).
    GroupStart(Vec<u8>),
    /// The `;` closing it (`(NIL NIL NIL NIL)`).
    GroupEnd,
}

/// One mailbox: display name (or the comment that names it), source route, local part,
/// domain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mailbox {
    pub name: Option<Vec<u8>>,
    pub route: Option<Vec<u8>>,
    pub local: Vec<u8>,
    pub domain: Option<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// An atom, or a quoted string with its quotes (as a local part keeps it).
    Word {
        text: Vec<u8>,
        quoted: bool,
    },
    Comment(Vec<u8>),
    /// A domain literal with its brackets.
    Literal(Vec<u8>),
    Special(u8),
}

const SPECIALS: &[u8] = b"()<>[]:;@\\,.\"";

fn tokens(value: &[u8]) -> Vec<Token> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < value.len() {
        let b = value[i];
        match b {
            // Every byte the atom arm below stops at is taken here, so each turn moves on.
            _ if b.is_ascii_whitespace() => i += 1,
            b'"' => {
                let (text, next) = quoted(value, i + 1);
                out.push(Token::Word { text, quoted: true });
                i = next;
            }
            b'(' => {
                let (text, next) = comment(value, i + 1);
                out.push(Token::Comment(text));
                i = next;
            }
            b'[' => {
                let end = value[i..].iter().position(|&c| c == b']').map_or(value.len(), |p| i + p + 1);
                out.push(Token::Literal(value[i..end].to_vec()));
                i = end;
            }
            _ if SPECIALS.contains(&b) => {
                out.push(Token::Special(b));
                i += 1;
            }
            _ => {
                let end = value[i..]
                    .iter()
                    .position(|c| SPECIALS.contains(c) || c.is_ascii_whitespace())
                    .map_or(value.len(), |p| i + p);
                out.push(Token::Word { text: value[i..end].to_vec(), quoted: false });
                i = end;
            }
        }
    }
    out
}

/// The content of a quoted string starting after its `"` (escapes removed), and where the
/// input goes on.
fn quoted(value: &[u8], mut i: usize) -> (Vec<u8>, usize) {
    let mut text = Vec::new();
    while i < value.len() {
        match value[i] {
            b'"' => return (text, i + 1),
            b'\\' if i + 1 < value.len() => {
                text.push(value[i + 1]);
                i += 2;
            }
            b => {
                text.push(b);
                i += 1;
            }
        }
    }
    (text, i)
}

/// The text of a comment starting after its `(` (nested comments kept as written), and
/// where the input goes on.
fn comment(value: &[u8], mut i: usize) -> (Vec<u8>, usize) {
    let mut text = Vec::new();
    let mut depth = 1usize;
    while i < value.len() {
        let b = value[i];
        match b {
            b'\\' if i + 1 < value.len() => {
                text.push(value[i + 1]);
                i += 2;
                continue;
            }
            b'(' if depth < COMMENT_DEPTH_MAX => depth += 1,
            b')' => {
                depth -= 1;
                if depth == 0 {
                    return (text, i + 1);
                }
            }
            _ => {}
        }
        text.push(b);
        i += 1;
    }
    (text, i)
}

/// A display name or group name: words joined by single spaces, a `.` (obsolete phrase
/// syntax, `John Q. Public`) kept after its word.
fn phrase(words: &[Token]) -> Option<Vec<u8>> {
    let mut out: Vec<u8> = Vec::new();
    for t in words {
        match t {
            Token::Word { text, .. } => {
                if !out.is_empty() {
                    out.push(b' ');
                }
                out.extend_from_slice(text);
            }
            Token::Special(b'.') => out.push(b'.'),
            _ => {}
        }
    }
    (!out.is_empty()).then_some(out)
}

/// A local part or domain: its words and dots run together, quoted words with their quotes.
fn dotted(parts: &[Token]) -> Vec<u8> {
    let mut out = Vec::new();
    for t in parts {
        match t {
            Token::Word { text, quoted: false } => out.extend_from_slice(text),
            Token::Word { text, quoted: true } => {
                out.push(b'"');
                out.extend_from_slice(text);
                out.push(b'"');
            }
            Token::Literal(text) => out.extend_from_slice(text),
            Token::Special(b'.') => out.push(b'.'),
            _ => {}
        }
    }
    out
}

/// The parser over one field's tokens.
struct Parser {
    tokens: Vec<Token>,
    at: usize,
    out: Vec<Entry>,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next_special_is(&self, b: u8) -> bool {
        self.peek() == Some(&Token::Special(b))
    }

    /// Tokens up to (not including) the first special in `stops`, comments set aside.
    fn take_until(&mut self, stops: &[u8]) -> (Vec<Token>, Option<Vec<u8>>) {
        let mut taken = Vec::new();
        let mut last_comment = None;
        while let Some(t) = self.peek() {
            match t {
                Token::Special(b) if stops.contains(b) => break,
                Token::Comment(c) => last_comment = Some(c.clone()),
                t => taken.push(t.clone()),
            }
            self.at += 1;
        }
        (taken, last_comment)
    }

    fn push(&mut self, entry: Entry) {
        if self.out.len() < ENTRIES_MAX {
            self.out.push(entry);
        }
    }

    /// The address list: mailboxes and groups separated by commas.
    fn list(&mut self) {
        while self.at < self.tokens.len() {
            if self.next_special_is(b',') || self.next_special_is(b';') || self.next_special_is(b'>') {
                self.at += 1;
                continue;
            }
            let (words, comment) = self.take_until(b"<:@,;");
            if self.next_special_is(b':') {
                self.at += 1;
                self.push(Entry::GroupStart(phrase(&words).unwrap_or_default()));
                self.group_members();
                self.push(Entry::GroupEnd);
            } else {
                self.mailbox(words, comment);
            }
        }
    }

    /// A group's mailboxes, through its `;` (or the end).
    fn group_members(&mut self) {
        while let Some(t) = self.peek() {
            match t {
                Token::Special(b';') => {
                    self.at += 1;
                    return;
                }
                Token::Special(b',') => self.at += 1,
                _ => {
                    let (words, comment) = self.take_until(b"<@,;");
                    self.mailbox(words, comment);
                }
            }
        }
    }

    /// One mailbox whose leading words (display name, or local part) are already taken.
    fn mailbox(&mut self, words: Vec<Token>, comment: Option<Vec<u8>>) {
        match self.peek() {
            Some(Token::Special(b'<')) => {
                self.at += 1;
                let mut m = self.angle_addr();
                m.name = phrase(&words).or(comment);
                self.push(Entry::Mailbox(m));
            }
            Some(Token::Special(b'@')) => {
                self.at += 1;
                let (domain, trailing) = self.take_until(b",;<>");
                let name = trailing.or(comment);
                let domain = Some(dotted(&domain)).filter(|d| !d.is_empty());
                self.push(Entry::Mailbox(Mailbox { name, route: None, local: dotted(&words), domain }));
            }
            _ if words.is_empty() => {}
            // A bare word list: a local part without a domain (`undisclosed-recipients`).
            _ => self.push(Entry::Mailbox(Mailbox { name: comment, route: None, local: dotted(&words), domain: None })),
        }
    }

    /// `[route ":"] local "@" domain ">"` after the `<`.
    fn angle_addr(&mut self) -> Mailbox {
        let mut route = None;
        if self.next_special_is(b'@') {
            let start = self.at;
            let (_, _) = self.take_until(b":>");
            if self.next_special_is(b':') {
                route = Some(self.route_text(start));
                self.at += 1;
            } else {
                self.at = start;
            }
        }
        let (local, _) = self.take_until(b"@>");
        let mut domain = None;
        if self.next_special_is(b'@') {
            self.at += 1;
            let (d, _) = self.take_until(b">,;");
            domain = Some(dotted(&d)).filter(|d| !d.is_empty());
        }
        if self.next_special_is(b'>') {
            self.at += 1;
        }
        Mailbox { name: None, route, local: dotted(&local), domain }
    }

    /// The source route from `start` to the current `:`, as written without spaces.
    fn route_text(&self, start: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for t in &self.tokens[start..self.at] {
            match t {
                Token::Special(b) => out.push(*b),
                Token::Word { text, .. } | Token::Literal(text) => out.extend_from_slice(text),
                Token::Comment(_) => {}
            }
        }
        out
    }
}

/// The entries of one address field's value (unfolded).
pub fn parse(value: &[u8]) -> Vec<Entry> {
    let mut p = Parser { tokens: tokens(value), at: 0, out: Vec::new() };
    p.list();
    p.out
}

/// The text SEARCH FROM/TO/CC/BCC look in: each mailbox as `name <local@domain>` (or
/// `local@domain`), each group's name, comma-separated.
pub fn search_text(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        let start = out.len();
        match e {
            Entry::Mailbox(m) => {
                if let Some(name) = &m.name {
                    out.extend_from_slice(name);
                    out.extend_from_slice(b" <");
                }
                out.extend_from_slice(&m.local);
                if let Some(d) = &m.domain {
                    out.push(b'@');
                    out.extend_from_slice(d);
                }
                if m.name.is_some() {
                    out.push(b'>');
                }
            }
            Entry::GroupStart(name) => out.extend_from_slice(name),
            Entry::GroupEnd => continue,
        }
        if start > 0 {
            out.splice(start..start, b", ".iter().copied());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mailbox(name: Option<&str>, local: &str, domain: Option<&str>) -> Entry {
        Entry::Mailbox(Mailbox {
            name: name.map(|n| n.as_bytes().to_vec()),
            route: None,
            local: local.as_bytes().to_vec(),
            domain: domain.map(|d| d.as_bytes().to_vec()),
        })
    }

    #[test]
    fn rfc5322_3_4_names_angle_addresses_and_comments() {
        assert_eq!(
            parse(b"From Real <fromuser@fromdomain.org>"),
            [mailbox(Some("From Real"), "fromuser", Some("fromdomain.org"))]
        );
        assert_eq!(parse(b"user@domain (Real Name)"), [mailbox(Some("Real Name"), "user", Some("domain"))]);
        assert_eq!(
            parse(b"<user-from (comment)@ (comment) domain.org>"),
            [mailbox(None, "user-from", Some("domain.org"))],
            "comments inside an address are not part of it"
        );
        assert_eq!(
            parse(b"\"Doe, John\" <j@x>, a@b"),
            [mailbox(Some("Doe, John"), "j", Some("x")), mailbox(None, "a", Some("b"))]
        );
        assert_eq!(parse(b"John Q. Public <jqp@x>"), [mailbox(Some("John Q. Public"), "jqp", Some("x"))]);
        assert_eq!(parse(b"undisclosed-recipients"), [mailbox(None, "undisclosed-recipients", None)]);
        assert_eq!(parse(b"=?utf-8?q?J=C3=B6rg?= <j@x>"), [mailbox(Some("=?utf-8?q?J=C3=B6rg?="), "j", Some("x"))]);
        assert!(parse(b"").is_empty() && parse(b" , ,").is_empty());
    }

    #[test]
    fn rfc3501_7_4_2_groups_are_start_and_end_markers() {
        let to = parse(b"group: g1@d1.org, g2@d2.org;, group2: g3@d3.org;");
        assert_eq!(
            to,
            [
                Entry::GroupStart(b"group".to_vec()),
                mailbox(None, "g1", Some("d1.org")),
                mailbox(None, "g2", Some("d2.org")),
                Entry::GroupEnd,
                Entry::GroupStart(b"group2".to_vec()),
                mailbox(None, "g3", Some("d3.org")),
                Entry::GroupEnd,
            ]
        );
        let cc = parse(b"group:;, group2: (foo) ;");
        assert_eq!(
            cc,
            [
                Entry::GroupStart(b"group".to_vec()),
                Entry::GroupEnd,
                Entry::GroupStart(b"group2".to_vec()),
                Entry::GroupEnd
            ]
        );
        assert_eq!(search_text(&to), b"group, g1@d1.org, g2@d2.org, group2, g3@d3.org");
    }

    #[test]
    fn rfc5322_4_4_source_routes_are_kept() {
        let m = parse(b"<@route:user@domain>");
        assert_eq!(
            m,
            [Entry::Mailbox(Mailbox {
                name: None,
                route: Some(b"@route".to_vec()),
                local: b"user".to_vec(),
                domain: Some(b"domain".to_vec())
            })]
        );
        let Entry::Mailbox(two) = &parse(b"<@a,@b:u@d>")[0] else { panic!() };
        assert_eq!(two.route.as_deref(), Some(&b"@a,@b"[..]));
    }

    #[test]
    fn hostile_input_is_bounded() {
        let many = b"a@b,".repeat(10 * ENTRIES_MAX);
        assert_eq!(parse(&many).len(), ENTRIES_MAX);
        // One comment opened 100,000 times and never closed: one pass, one mailbox.
        let deep = [b"x (".repeat(100_000), b"y".to_vec()].concat();
        assert!(matches!(&parse(&deep)[..], [Entry::Mailbox(m)] if m.local == b"x"));
        // A form feed or vertical tab between words (fuzzing found the form feed: the tokenizer
        // stopped an atom at it without taking it, and never moved on).
        assert_eq!(parse(b"a\x0cb@c").len(), 1);
        assert_eq!(parse(b"x\x0b@y").len(), 1);
        for junk in [&b"<<<>>>@@@:::;;;"[..], b"\"unterminated", b"(unterminated", b"[literal", b"a@", b"@", b"<@x"] {
            let _ = search_text(&parse(junk));
        }
    }
}
