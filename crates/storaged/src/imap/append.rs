//! APPEND as MULTIAPPEND (RFC 3502) and CATENATE (RFC 4469) extend it, which imap-codec does
//! not parse: several messages in one command, each with its own flags and date, each a
//! literal (or literal8) or a CATENATE list of TEXT literals and URLs of parts of messages
//! the user has (RFC 5092 relative IMAP URLs). Parsing and URL splitting are pure; the
//! session resolves the URLs and commits all messages as one operation (all or none).
//!
//! Bounded by the command, which the reader has already bounded: at most [`MESSAGES_MAX`]
//! messages and [`PARTS_MAX`] CATENATE parts each.

use crate::mailstore::ops::flag;

/// Messages one APPEND may carry.
pub const MESSAGES_MAX: usize = 1000;
/// Parts one CATENATE may join.
pub const PARTS_MAX: usize = 100;

/// One piece of a message being appended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece<'a> {
    /// Literal bytes.
    Text(&'a [u8]),
    /// An IMAP URL naming (part of) a message of the user's.
    Url(String),
}

/// One message of an APPEND: flags (system bits, keywords), date, and its pieces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message<'a> {
    pub flags: u8,
    pub keywords: Vec<String>,
    /// INTERNALDATE as written (`dd-Mon-yyyy hh:mm:ss +zzzz`), if given.
    pub date: Option<String>,
    pub pieces: Vec<Piece<'a>>,
    /// Given as CATENATE (even of one TEXT part).
    pub catenated: bool,
}

/// An APPEND with several messages or with CATENATE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Append<'a> {
    pub mailbox: Vec<u8>,
    pub messages: Vec<Message<'a>>,
}

/// The parser's position in the command.
struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn skip_spaces(&mut self) {
        while self.b.get(self.at) == Some(&b' ') {
            self.at += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.at).copied()
    }

    fn eat(&mut self, word: &str) -> bool {
        let end = self.at + word.len();
        let hit = self.b.get(self.at..end).is_some_and(|w| w.eq_ignore_ascii_case(word.as_bytes()));
        if hit {
            self.at = end;
        }
        hit
    }

    fn atom(&mut self) -> &'a [u8] {
        let start = self.at;
        while self.peek().is_some_and(|c| !b" ()\r\n\"{".contains(&c)) {
            self.at += 1;
        }
        &self.b[start..self.at]
    }

    fn quoted(&mut self) -> Option<Vec<u8>> {
        if self.peek() != Some(b'"') {
            return None;
        }
        self.at += 1;
        let mut out = Vec::new();
        loop {
            match self.peek()? {
                b'"' => {
                    self.at += 1;
                    return Some(out);
                }
                b'\\' => {
                    out.push(*self.b.get(self.at + 1)?);
                    self.at += 2;
                }
                b'\r' | b'\n' => return None,
                c => {
                    out.push(c);
                    self.at += 1;
                }
            }
        }
    }

    /// `{n}`, `{n+}`, `~{n}` or `~{n+}`, CRLF, and n bytes.
    fn literal(&mut self) -> Option<&'a [u8]> {
        let start = self.at;
        if self.peek() == Some(b'~') {
            self.at += 1;
        }
        if self.peek() != Some(b'{') {
            self.at = start;
            return None;
        }
        let close = self.at + self.b[self.at..].iter().position(|c| *c == b'}')?;
        let digits = std::str::from_utf8(&self.b[self.at + 1..close]).ok()?.trim_end_matches('+');
        let n: usize = digits.parse().ok()?;
        let data = close + 1 + 2;
        if self.b.get(close + 1..data) != Some(b"\r\n") {
            return None;
        }
        let bytes = self.b.get(data..data + n)?;
        self.at = data + n;
        Some(bytes)
    }

    fn astring(&mut self) -> Option<Vec<u8>> {
        match self.peek()? {
            b'"' => self.quoted(),
            b'{' | b'~' => self.literal().map(<[u8]>::to_vec),
            _ => Some(self.atom().to_vec()).filter(|a| !a.is_empty()),
        }
    }
}

/// System flag bits and keywords of a flag list's atoms.
fn flags_of(atoms: &[&[u8]]) -> Result<(u8, Vec<String>), String> {
    let mut bits = 0;
    let mut keywords = Vec::new();
    for a in atoms {
        let text = String::from_utf8_lossy(a).into_owned();
        match flag::system(&text) {
            Some(bit) => bits |= bit,
            None if text.starts_with('\\') => return Err(format!("flag {text} cannot be set")),
            None => keywords.push(text),
        }
    }
    Ok((bits, keywords))
}

fn message<'a>(c: &mut Cursor<'a>) -> Result<Message<'a>, String> {
    let mut m = Message { flags: 0, keywords: Vec::new(), date: None, pieces: Vec::new(), catenated: false };
    if c.peek() == Some(b'(') {
        c.at += 1;
        let mut atoms = Vec::new();
        loop {
            c.skip_spaces();
            if c.peek() == Some(b')') {
                c.at += 1;
                break;
            }
            let a = c.atom();
            if a.is_empty() {
                return Err("malformed flag list".into());
            }
            atoms.push(a);
        }
        (m.flags, m.keywords) = flags_of(&atoms)?;
        c.skip_spaces();
    }
    if c.peek() == Some(b'"') {
        let d = c.quoted().ok_or("malformed date")?;
        m.date = Some(String::from_utf8_lossy(&d).into_owned());
        c.skip_spaces();
    }
    if c.eat("CATENATE") {
        m.catenated = true;
        c.skip_spaces();
        if c.peek() != Some(b'(') {
            return Err("CATENATE needs a list".into());
        }
        c.at += 1;
        loop {
            c.skip_spaces();
            if c.peek() == Some(b')') {
                c.at += 1;
                break;
            }
            if m.pieces.len() >= PARTS_MAX {
                return Err(format!("more than {PARTS_MAX} CATENATE parts"));
            }
            if c.eat("TEXT") {
                c.skip_spaces();
                m.pieces.push(Piece::Text(c.literal().ok_or("TEXT needs a literal")?));
            } else if c.eat("URL") {
                c.skip_spaces();
                let url = c.astring().ok_or("URL needs a string")?;
                m.pieces.push(Piece::Url(String::from_utf8_lossy(&url).into_owned()));
            } else {
                return Err("CATENATE parts are TEXT or URL".into());
            }
        }
    } else {
        m.pieces.push(Piece::Text(c.literal().ok_or("a message literal is expected")?));
    }
    Ok(m)
}

/// `tag APPEND mailbox message...` when there is more than one message or a CATENATE; `None`
/// for any other command (a plain APPEND goes to the ordinary parser). `Err`: BAD, why.
pub fn parse(bytes: &[u8]) -> Option<Result<Append<'_>, String>> {
    let mut c = Cursor { b: bytes, at: 0 };
    c.atom();
    c.skip_spaces();
    if !c.eat("APPEND ") {
        return None;
    }
    c.skip_spaces();
    let Some(mailbox) = c.astring() else { return Some(Err("APPEND needs a mailbox".into())) };
    let mut messages = Vec::new();
    loop {
        c.skip_spaces();
        if matches!(c.peek(), None | Some(b'\r' | b'\n')) {
            break;
        }
        if messages.len() >= MESSAGES_MAX {
            return Some(Err(format!("more than {MESSAGES_MAX} messages")));
        }
        match message(&mut c) {
            Ok(m) => messages.push(m),
            Err(why) => return Some(Err(why)),
        }
    }
    if messages.len() < 2 && !messages.iter().any(|m| m.catenated) {
        return None;
    }
    if messages.is_empty() {
        return Some(Err("APPEND needs a message".into()));
    }
    Some(Ok(Append { mailbox, messages }))
}

/// An IMAP URL of RFC 4469 §5 / RFC 5092, relative to this server and user:
/// `/mailbox[;UIDVALIDITY=n]/;UID=n[/;SECTION=s]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub mailbox: String,
    pub uid_validity: Option<u32>,
    pub uid: u32,
    /// Upper-case section text (`HEADER`, `1.MIME`, ...), empty for the whole message.
    pub section: String,
    /// `;PARTIAL=offset[.length]` of the section's bytes.
    pub partial: Option<(u64, Option<u64>)>,
}

impl Url {
    /// The part of `bytes` the URL's PARTIAL names (all of them without one).
    pub fn cut<'b>(&self, bytes: &'b [u8]) -> &'b [u8] {
        let Some((offset, length)) = self.partial else { return bytes };
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(bytes.len());
        let end = length.map_or(bytes.len(), |l| start.saturating_add(usize::try_from(l).unwrap_or(usize::MAX)));
        &bytes[start..end.min(bytes.len())]
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Split `url` into its parts; `None` if it is not a URL this server can resolve.
pub fn parse_url(url: &str) -> Option<Url> {
    let path = url.strip_prefix('/')?;
    let mut segments = path.split("/;");
    let first = segments.next()?;
    let (mailbox, validity) = match first.split_once(';') {
        Some((m, v)) => (m, Some(v.to_ascii_uppercase().strip_prefix("UIDVALIDITY=")?.parse().ok()?)),
        None => (first, None),
    };
    let mut uid = None;
    let mut section = String::new();
    let mut partial = None;
    for s in segments {
        let upper = s.to_ascii_uppercase();
        if let Some(n) = upper.strip_prefix("UID=") {
            uid = Some(n.parse().ok()?);
        } else if let Some(sec) = upper.strip_prefix("SECTION=") {
            section = percent_decode(sec)?;
        } else if let Some(p) = upper.strip_prefix("PARTIAL=") {
            partial = Some(match p.split_once('.') {
                Some((o, l)) => (o.parse().ok()?, Some(l.parse().ok()?)),
                None => (p.parse().ok()?, None),
            });
        } else {
            return None;
        }
    }
    Some(Url { mailbox: percent_decode(mailbox)?, uid_validity: validity, uid: uid?, section, partial })
}

/// The FETCH section a URL's SECTION names; `None` for one this server does not serve.
pub fn url_section(section: &str) -> Option<super::fetch::Section> {
    use super::fetch::Section;
    if section.is_empty() {
        return Some(Section::Full);
    }
    let mut part = Vec::new();
    let mut rest = section;
    while let Some((n, after)) = rest.split_once('.').filter(|(n, _)| n.parse::<u32>().is_ok()) {
        part.push(n.parse().ok()?);
        rest = after;
    }
    if let Ok(n) = rest.parse::<u32>() {
        part.push(n);
        return Some(Section::Part(part));
    }
    match rest {
        "HEADER" => Some(Section::Header(part)),
        "TEXT" => Some(Section::Text(part)),
        "MIME" if !part.is_empty() => Some(Section::Mime(part)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3502_several_messages_with_their_own_flags_and_dates() {
        let cmd =
            b"a1 APPEND box (\\Seen $x) \"24-Mar-2007 23:00:00 +0200\" {5}\r\nhello {3+}\r\nbye ~{2}\r\n\x00\x01\r\n";
        let a = parse(cmd).unwrap().unwrap();
        assert_eq!(a.mailbox, b"box");
        assert_eq!(a.messages.len(), 3);
        assert_eq!((a.messages[0].flags, a.messages[0].keywords.clone()), (flag::SEEN, vec!["$x".to_string()]));
        assert_eq!(a.messages[0].date.as_deref(), Some("24-Mar-2007 23:00:00 +0200"));
        assert_eq!(a.messages[1].pieces, [Piece::Text(b"bye")]);
        assert_eq!(a.messages[2].pieces, [Piece::Text(b"\x00\x01")]);
        assert!(parse(b"a2 APPEND box {5}\r\nhello\r\n").is_none(), "one plain message: the ordinary parser");
        assert!(parse(b"a3 NOOP\r\n").is_none());
        assert!(parse(b"a4 APPEND box (\\Recent) {1}\r\nx {1}\r\ny\r\n").unwrap().is_err());
        assert!(parse(b"a5 APPEND box {1}\r\nx {20}\r\nshort\r\n").unwrap().is_err(), "a literal past the end");
    }

    #[test]
    fn rfc4469_catenate_parts_and_urls() {
        let cmd = b"a1 APPEND box (\\Seen) CATENATE (URL \"/INBOX;UIDVALIDITY=7/;UID=20/;SECTION=HEADER\" TEXT {4}\r\nbody)\r\n";
        let a = parse(cmd).unwrap().unwrap();
        assert_eq!(
            a.messages[0].pieces,
            [Piece::Url("/INBOX;UIDVALIDITY=7/;UID=20/;SECTION=HEADER".into()), Piece::Text(b"body")]
        );
        let u = parse_url("/INBOX;UIDVALIDITY=7/;UID=20/;SECTION=HEADER").unwrap();
        assert_eq!((u.mailbox.as_str(), u.uid_validity, u.uid, u.section.as_str()), ("INBOX", Some(7), 20, "HEADER"));
        assert_eq!(parse_url("/a%20b/;uid=3").unwrap().mailbox, "a b");
        let p = parse_url("/box/;uid=2/;partial=3.4").unwrap();
        assert_eq!((p.partial, p.cut(b"0123456789")), (Some((3, Some(4))), &b"3456"[..]));
        assert_eq!(parse_url("/box/;uid=2/;partial=100000.1").unwrap().cut(b"short"), b"", "past the end: nothing");
        assert!(parse_url("imap://host/INBOX/;UID=1").is_none(), "only relative URLs of this server");
        assert!(parse_url("/INBOX").is_none(), "a message is needed");
        assert_eq!(url_section("1.2.MIME"), Some(super::super::fetch::Section::Mime(vec![1, 2])));
        assert_eq!(url_section("2"), Some(super::super::fetch::Section::Part(vec![2])));
        assert_eq!(url_section("HEADER.FIELDS (X)"), None);
    }
}
