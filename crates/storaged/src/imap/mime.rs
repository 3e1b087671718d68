//! The MIME tree of one message (RFC 2045/2046): where each part's header and body lie, found
//! in one pass over the lines of the message with an explicit stack, never by recursion.
//!
//! Owns the bounds that make hostile structure harmless: at most [`DEPTH_MAX`] levels of
//! nesting (a multipart or `message/rfc822` deeper than that is kept as one opaque leaf, as
//! Dovecot does) and at most [`PARTS_MAX`] parts (beyond that the rest of the message belongs
//! to the part being read). Time is linear in the message size times the number of open
//! multiparts (≤ [`DEPTH_MAX`]); memory is linear in the number of parts.
//!
//! It must never decode content or interpret header fields beyond what structure needs
//! (Content-Type's type, subtype and boundary); everything else is the caller's.

use std::ops::Range;

use mail_parser::{MessageParser, MimeHeaders};

/// Nesting levels below the message's own entity that are parsed as structure.
pub const DEPTH_MAX: usize = 32;
/// Parts recorded per message (Dovecot's default `mail_max_total_mime_parts` is 10,000 too).
pub const PARTS_MAX: usize = 10_000;
/// A boundary longer than RFC 2046's 70 characters is refused (the part stays a leaf).
const BOUNDARY_MAX_BYTES: usize = 200;

/// What a part holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A single part (also a multipart or message nested too deep, kept opaque).
    Leaf,
    /// `multipart/*` with a boundary: its children are the parts between delimiters.
    Multipart,
    /// `message/rfc822`: its one child is the encapsulated message's own entity.
    Message,
}

/// One entity: its header (including the blank line that ends it) and its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub header: Range<usize>,
    pub body: Range<usize>,
    pub kind: Kind,
    /// Line breaks (LF) in the body: what BODYSTRUCTURE reports as its lines.
    pub lines: usize,
    /// 0 for the message's own entity.
    pub depth: usize,
    /// Indexes into [`Tree::parts`], in order.
    pub children: Vec<u32>,
}

/// The parts of one message in pre-order; `parts[0]` is the message's own entity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tree {
    pub parts: Vec<Part>,
}

/// An open container while the scan is inside it.
struct Open {
    part: usize,
    /// `--boundary` for a multipart still taking children; `None` for a message, or for a
    /// multipart after its close delimiter (its epilogue runs to the parent's next delimiter).
    delimiter: Option<Vec<u8>>,
}

/// Where the scan is within the current part.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Reading the header of `parts[current]`, which began at `start`.
    Header { start: usize },
    /// Inside a body (a leaf's, a preamble or an epilogue).
    Body,
}

struct Scan<'m> {
    msg: &'m [u8],
    parts: Vec<Part>,
    stack: Vec<Open>,
    current: usize,
    mode: Mode,
    /// False once [`PARTS_MAX`] is reached: delimiters are no longer looked for.
    structured: bool,
    /// Line breaks before the line being read.
    newlines: usize,
    /// Per part: line breaks before its body began.
    body_newlines: Vec<usize>,
}

/// The MIME tree of `msg`. Never fails: anything unparseable is a leaf.
pub fn parse(msg: &[u8]) -> Tree {
    let mut scan = Scan {
        msg,
        parts: vec![Part { header: 0..0, body: 0..0, kind: Kind::Leaf, lines: 0, depth: 0, children: Vec::new() }],
        stack: Vec::new(),
        current: 0,
        mode: Mode::Header { start: 0 },
        structured: true,
        newlines: 0,
        body_newlines: vec![0],
    };
    let mut pos = 0;
    while pos < msg.len() {
        let end = memchr::memchr(b'\n', &msg[pos..]).map_or(msg.len(), |p| pos + p + 1);
        scan.line(pos, end);
        scan.newlines += usize::from(msg[end - 1] == b'\n');
        pos = end;
    }
    scan.finish();
    debug_assert!(scan.parts.len() <= PARTS_MAX);
    Tree { parts: scan.parts }
}

impl Scan<'_> {
    fn line(&mut self, start: usize, end: usize) {
        let line = &self.msg[start..end];
        if self.structured && line.starts_with(b"--") {
            if let Some((level, close)) = self.delimiter(line) {
                self.on_delimiter(level, close, start, end);
                return;
            }
        }
        if let Mode::Header { start: header_start } = self.mode {
            if line == b"\r\n" || line == b"\n" {
                self.end_header(header_start, end);
            }
        }
    }

    /// The innermost open multipart whose delimiter `line` is, and whether it closes it.
    fn delimiter(&self, line: &[u8]) -> Option<(usize, bool)> {
        self.stack.iter().enumerate().rev().find_map(|(level, open)| {
            let d = open.delimiter.as_deref()?;
            let rest = line.strip_prefix(d)?;
            // Only transport padding may follow a delimiter (RFC 2046 §5.1.1): `--b3`
            // must not end a part of a multipart whose boundary is `b`.
            let close = rest.starts_with(b"--");
            (close || rest.iter().all(u8::is_ascii_whitespace)).then_some((level, close))
        })
    }

    /// Where content before the delimiter line at `start` ends, and the line breaks before
    /// that: the line break before a delimiter belongs to the delimiter (RFC 2046 §5.1.1).
    fn content_end(&self, start: usize) -> (usize, usize) {
        let (mut end, mut newlines) = (start, self.newlines);
        if end > 0 && self.msg[end - 1] == b'\n' {
            end -= 1;
            newlines -= 1;
            if end > 0 && self.msg[end - 1] == b'\r' {
                end -= 1;
            }
        }
        (end, newlines)
    }

    fn on_delimiter(&mut self, level: usize, close: bool, start: usize, end: usize) {
        let content_end = self.content_end(start);
        self.end_current(content_end);
        while self.stack.len() > level + 1 {
            let open = self.stack.pop().expect("above level");
            self.end_body(open.part, content_end);
        }
        let newlines_after = self.newlines + 1;
        let container = self.stack[level].part;
        if close {
            // The epilogue belongs to the multipart's body; no more children.
            self.stack[level].delimiter = None;
            self.current = container;
            self.mode = Mode::Body;
            return;
        }
        self.start_part(container, end, newlines_after);
    }

    /// A new child of `parent` whose header begins at `at`, after `newlines` line breaks.
    fn start_part(&mut self, parent: usize, at: usize, newlines: usize) {
        if self.parts.len() >= PARTS_MAX {
            // No room for more: the rest of the message is the body of what is open.
            self.structured = false;
            self.current = parent;
            self.mode = Mode::Body;
            return;
        }
        let id = self.parts.len();
        let depth = self.parts[parent].depth + 1;
        debug_assert!(depth <= DEPTH_MAX);
        self.parts.push(Part { header: at..at, body: at..at, kind: Kind::Leaf, lines: 0, depth, children: Vec::new() });
        self.body_newlines.push(newlines);
        self.parts[parent].children.push(id as u32);
        self.current = id;
        self.mode = Mode::Header { start: at };
    }

    /// The header of the current part ended with the blank line ending at `body_start`.
    fn end_header(&mut self, header_start: usize, body_start: usize) {
        let id = self.current;
        self.parts[id].header = header_start..body_start;
        self.parts[id].body = body_start..body_start;
        self.body_newlines[id] = self.newlines + 1;
        self.mode = Mode::Body;
        if self.parts[id].depth >= DEPTH_MAX {
            return;
        }
        match container_kind(&self.msg[header_start..body_start]) {
            Some(Container::Multipart(boundary)) => {
                self.parts[id].kind = Kind::Multipart;
                let delimiter = [b"--".as_slice(), &boundary].concat();
                self.stack.push(Open { part: id, delimiter: Some(delimiter) });
            }
            Some(Container::Message) => {
                self.parts[id].kind = Kind::Message;
                self.stack.push(Open { part: id, delimiter: None });
                self.start_part(id, body_start, self.newlines + 1);
            }
            None => {}
        }
    }

    /// The part being read (a leaf or a header in progress) ends at `end`, unless it is an
    /// open container, whose end is set when it is popped.
    fn end_current(&mut self, (end, newlines): (usize, usize)) {
        let id = self.current;
        if let Mode::Header { start } = self.mode {
            // A header cut off by a delimiter or the end: no body. A part that had not
            // begun (the delimiter's line break was its parent's blank line) is empty there.
            let start = start.min(end);
            self.parts[id].header = start..end;
            self.parts[id].body = end..end;
            self.mode = Mode::Body;
            return;
        }
        if !self.stack.iter().any(|o| o.part == id) {
            self.end_body(id, (end, newlines));
        }
    }

    /// Part `id` ends at `end`. When the line break a delimiter claims was the blank line
    /// after the part's header, the part is a header without a body (RFC 2046 §5.1.1: the
    /// break belongs to the delimiter), so the header ends there too.
    fn end_body(&mut self, id: usize, (end, newlines): (usize, usize)) {
        let part = &mut self.parts[id];
        if end < part.body.start {
            part.header.end = end.max(part.header.start);
            part.body = part.header.end..part.header.end;
            part.lines = 0;
        } else {
            part.body.end = end;
            part.lines = newlines.saturating_sub(self.body_newlines[id]);
        }
    }

    fn finish(&mut self) {
        let end = (self.msg.len(), self.newlines);
        self.end_current(end);
        while let Some(open) = self.stack.pop() {
            self.end_body(open.part, end);
        }
    }
}

enum Container {
    Multipart(Vec<u8>),
    Message,
}

/// Whether a part with this header holds structure: a multipart with a usable boundary, or
/// an encapsulated message.
fn container_kind(header: &[u8]) -> Option<Container> {
    let parsed = MessageParser::default().parse_headers(header)?;
    let ct = parsed.parts.first()?.content_type()?;
    if ct.ctype().eq_ignore_ascii_case("multipart") {
        let boundary = ct.attribute("boundary")?.as_bytes();
        let usable = !boundary.is_empty() && boundary.len() <= BOUNDARY_MAX_BYTES;
        return usable.then(|| Container::Multipart(boundary.to_vec()));
    }
    let message = ct.ctype().eq_ignore_ascii_case("message")
        && ct.subtype().is_some_and(|s| s.eq_ignore_ascii_case("rfc822") || s.eq_ignore_ascii_case("global"));
    message.then_some(Container::Message)
}

impl Tree {
    /// The part an IMAP section number path names (RFC 3501 §6.4.5), if it exists. An empty
    /// path names the message's own entity. Part 1 of a non-multipart message is its body
    /// entity; the numbers after a `message/rfc822` part count inside the encapsulated
    /// message.
    pub fn resolve(&self, path: &[u32]) -> Option<usize> {
        let mut id = 0;
        let mut message_root = true;
        for (k, n) in path.iter().enumerate() {
            let part = &self.parts[id];
            id = match part.kind {
                Kind::Multipart => *part.children.get((*n as usize).checked_sub(1)?)? as usize,
                _ if message_root && *n == 1 => id,
                _ => return None,
            };
            message_root = false;
            if k + 1 < path.len() && self.parts[id].kind == Kind::Message {
                id = *self.parts[id].children.first()? as usize;
                message_root = true;
            }
        }
        Some(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MULTI: &[u8] = b"Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\npreamble\r\n--b\r\n\
Content-Type: text/plain\r\n\r\nfirst\r\n--b\r\nContent-Type: message/rfc822\r\n\r\n\
Subject: inner\r\nContent-Type: multipart/alternative; boundary=c\r\n\r\n--c\r\n\r\nalt one\r\n--c\r\n\r\nalt two\r\n--c--\r\n\
--b--\r\nepilogue\r\n";

    fn body<'m>(msg: &'m [u8], tree: &Tree, path: &[u32]) -> &'m [u8] {
        let id = tree.resolve(path).expect("part exists");
        &msg[tree.parts[id].body.clone()]
    }

    #[test]
    fn nested_parts_by_number() {
        let tree = parse(MULTI);
        assert_eq!(tree.parts[0].kind, Kind::Multipart);
        assert_eq!(body(MULTI, &tree, &[1]), b"first");
        assert!(body(MULTI, &tree, &[2]).starts_with(b"Subject: inner"));
        assert_eq!(body(MULTI, &tree, &[2, 1]), b"alt one");
        assert_eq!(body(MULTI, &tree, &[2, 2]), b"alt two");
        assert_eq!(tree.resolve(&[2, 3]), None);
        assert_eq!(tree.resolve(&[3]), None);
        assert_eq!(tree.resolve(&[1, 1]), None);
        assert!(MULTI[tree.parts[0].body.clone()].ends_with(b"epilogue\r\n"));
        for part in &tree.parts {
            assert_eq!(part.lines, MULTI[part.body.clone()].iter().filter(|b| **b == b'\n').count(), "{part:?}");
        }
    }

    #[test]
    fn single_part_is_its_own_part_one() {
        let msg = b"Subject: x\r\n\r\nhello\r\n";
        let tree = parse(msg);
        assert_eq!(tree.parts.len(), 1);
        assert_eq!(body(msg, &tree, &[1]), b"hello\r\n");
        assert_eq!(tree.resolve(&[2]), None);
        let inner = b"Content-Type: message/rfc822\r\n\r\nSubject: in\r\n\r\ntext\r\n";
        let tree = parse(inner);
        assert_eq!(body(inner, &tree, &[1, 1]), b"text\r\n");
    }

    #[test]
    fn depth_and_part_count_are_bounded() {
        let mut deep = b"x\r\n".to_vec();
        for _ in 0..50_000 {
            deep.splice(0..0, b"Content-Type: message/rfc822\r\n\r\n".iter().copied());
        }
        let tree = parse(&deep);
        assert_eq!(tree.parts.len(), DEPTH_MAX + 1);
        assert!(tree.parts.iter().all(|p| p.depth <= DEPTH_MAX));
        let mut many = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n".to_vec();
        for _ in 0..(PARTS_MAX + 50) {
            many.extend_from_slice(b"--b\r\n\r\nx\r\n");
        }
        many.extend_from_slice(b"--b--\r\n");
        let tree = parse(&many);
        assert_eq!(tree.parts.len(), PARTS_MAX);
        assert_eq!(tree.parts[0].body.end, many.len());
    }

    #[test]
    fn garbage_is_a_leaf() {
        for msg in [&b""[..], b"\r\n", b"--", b"Content-Type: multipart/x\r\n\r\n--", b"\xff\xfe\r\n\r\n--b--"] {
            let tree = parse(msg);
            assert!(tree.parts[0].body.end <= msg.len());
        }
        // A header whose blank line is the break before a delimiter has no body, and ends
        // inside its parent.
        let msg = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nSubject: x\r\n\r\n--b--\r\n";
        let tree = parse(msg);
        let child = &tree.parts[1];
        assert_eq!(&msg[child.header.clone()], b"Subject: x\r\n");
        assert!(child.body.is_empty() && child.body.end <= tree.parts[0].body.end);
        // The same for an encapsulated message with nothing in it.
        let msg =
            b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: message/rfc822\r\n\r\n--b--\r\n";
        let tree = parse(msg);
        let (message, inner) = (&tree.parts[1], &tree.parts[2]);
        assert!(message.body.start <= inner.header.start && inner.body.end <= message.body.end, "{tree:?}");
        // A line that only begins with the delimiter is content.
        let msg = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\n--b2\r\n--b--\r\n";
        let tree = parse(msg);
        assert_eq!(tree.parts.len(), 2);
        assert_eq!(body(msg, &tree, &[1]), b"--b2");
        // A multipart whose delimiter never comes has no children.
        let tree = parse(b"Content-Type: multipart/mixed; boundary=q\r\n\r\nno parts\r\n");
        assert!(tree.parts[0].children.is_empty());
    }
}
