//! FETCH data of one message: body sections (`HEADER`, `TEXT`, `HEADER.FIELDS[.NOT]`, MIME
//! part numbers and their `MIME` headers, partial ranges) cut from the raw bytes, and the
//! ENVELOPE built from the parsed header (mail-parser). Pure: bytes in, response bytes out.

use mail_parser::{ContentType, Message, MessageParser, MimeHeaders};

use super::encode;
use super::header::split as split_header;
use super::mime;

/// Which part of a message a `BODY[...]` item names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Section {
    /// `BODY[]`: the whole message.
    Full,
    /// `BODY[p.HEADER]` (`part` empty: the message's own header).
    Header(Vec<u32>),
    /// `BODY[p.HEADER.FIELDS (...)]` or `.NOT`.
    HeaderFields { part: Vec<u32>, names: Vec<String>, not: bool },
    /// `BODY[p.TEXT]`.
    Text(Vec<u32>),
    /// `BODY[1.2]`: a MIME part's body.
    Part(Vec<u32>),
    /// `BODY[1.2.MIME]`: a MIME part's header.
    Mime(Vec<u32>),
}

/// Parse with mail-parser, treating a panic inside it as unparseable input: a hostile
/// message must never take a session down (its 0.11 line has a debug assertion that
/// crafted MIME trips, found by our fuzz test).
pub fn parse_guarded(msg: &[u8], headers_only: bool) -> Option<Message<'_>> {
    std::panic::catch_unwind(|| {
        let parser = MessageParser::default();
        if headers_only {
            parser.parse_headers(msg)
        } else {
            parser.parse(msg)
        }
    })
    .ok()
    .flatten()
}

/// Header lines (with their continuation lines) whose field name is (not) in `names`,
/// followed by the blank line.
fn header_fields(header: &[u8], names: &[String], not: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut keep = false;
    for line in header.split_inclusive(|b| *b == b'\n') {
        if line == b"\r\n" || line == b"\n" {
            break;
        }
        if !matches!(line.first(), Some(b' ' | b'\t')) {
            let name = line.split(|b| *b == b':').next().unwrap_or_default();
            let name = String::from_utf8_lossy(name);
            let listed = names.iter().any(|n| n.eq_ignore_ascii_case(name.trim()));
            keep = listed != not;
        }
        if keep {
            out.extend_from_slice(line);
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// One message as FETCH reads it: its bytes, and its MIME tree parsed on first use and
/// then shared by every item of the command.
pub struct Source<'m> {
    raw: &'m [u8],
    tree: std::cell::OnceCell<mime::Tree>,
}

impl<'m> Source<'m> {
    pub fn new(raw: &'m [u8]) -> Self {
        Self { raw, tree: std::cell::OnceCell::new() }
    }

    pub fn raw(&self) -> &'m [u8] {
        self.raw
    }

    pub fn tree(&self) -> &mime::Tree {
        self.tree.get_or_init(|| mime::parse(self.raw))
    }

    /// `(header, body)` of MIME part `path` (1-based numbers), if it exists.
    fn part(&self, path: &[u32]) -> Option<(&'m [u8], &'m [u8])> {
        let tree = self.tree();
        let part = &tree.parts[tree.resolve(path)?];
        Some((&self.raw[part.header.clone()], &self.raw[part.body.clone()]))
    }
}

/// HEADER, TEXT or HEADER.FIELDS of the message `msg` itself.
fn own_section(msg: &[u8], section: &Section) -> Vec<u8> {
    let (header, body) = split_header(msg);
    match section {
        Section::Header(_) => header.to_vec(),
        Section::Text(_) => body.to_vec(),
        Section::HeaderFields { names, not, .. } => header_fields(header, names, *not),
        Section::Full | Section::Part(_) | Section::Mime(_) => msg.to_vec(),
    }
}

/// The bytes `section` names, or `None` if that part does not exist.
pub fn section(msg: &Source<'_>, section: &Section) -> Option<Vec<u8>> {
    Some(match section {
        Section::Full => msg.raw.to_vec(),
        Section::Part(p) => msg.part(p)?.1.to_vec(),
        Section::Mime(p) => msg.part(p)?.0.to_vec(),
        Section::Header(p) | Section::Text(p) | Section::HeaderFields { part: p, .. } if p.is_empty() => {
            own_section(msg.raw, section)
        }
        // HEADER/TEXT of an encapsulated message part: of the message that is its body.
        Section::Header(p) | Section::Text(p) | Section::HeaderFields { part: p, .. } => {
            own_section(msg.part(p)?.1, section)
        }
    })
}

/// A part whose Content-Transfer-Encoding BINARY cannot decode (RFC 3516 `UNKNOWN-CTE`).
#[derive(Debug, PartialEq, Eq)]
pub struct UnknownCte(pub String);

/// Decode quoted-printable (RFC 2045 §6.7) line by line: whitespace at the end of a line
/// was added in transport and goes (rule 3); a line ending in `=`, even with whitespace
/// after it, is a soft line break (rule 5); `=XX` is an octet; a lone `=` stays as it is
/// (the "robust" decoding §6.7 suggests). Hard line breaks come out as CRLF.
fn decode_quoted_printable(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut lines = data.split(|&b| b == b'\n').peekable();
    while let Some(raw) = lines.next() {
        let last = lines.peek().is_none();
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        let line = match line.iter().rposition(|&b| b != b' ' && b != b'\t') {
            Some(end) => &line[..=end],
            None => &[][..],
        };
        let (text, soft) = match line.strip_suffix(b"=") {
            Some(text) => (text, true),
            None => (line, false),
        };
        decode_qp_escapes(text, &mut out);
        if !soft && !last {
            out.extend_from_slice(b"\r\n");
        }
    }
    out
}

/// The octets of one quoted-printable line without its break: `=XX` decoded.
fn decode_qp_escapes(text: &[u8], out: &mut Vec<u8>) {
    let hex = |b: u8| (b as char).to_digit(16);
    let mut i = 0;
    while i < text.len() {
        let escaped = match text.get(i..i + 3) {
            Some([b'=', hi, lo]) => hex(*hi).zip(hex(*lo)).map(|(hi, lo)| (hi * 16 + lo) as u8),
            _ => None,
        };
        match escaped {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(text[i]);
                i += 1;
            }
        }
    }
}

/// The decoded content of MIME part `path` for `BINARY[path]`: its body with the
/// Content-Transfer-Encoding removed (not charset-converted). `Ok(None)` if there is no
/// such part. An empty path names the whole message, unchanged.
pub fn binary(msg: &Source<'_>, path: &[u32]) -> Result<Option<Vec<u8>>, UnknownCte> {
    use base64::Engine;
    if path.is_empty() {
        return Ok(Some(msg.raw.to_vec()));
    }
    let Some((header, body)) = msg.part(path) else { return Ok(None) };
    let cte = raw_header(header, "Content-Transfer-Encoding")
        .map(|v| String::from_utf8_lossy(&v).trim().to_ascii_lowercase())
        .unwrap_or_else(|| "7bit".into());
    match cte.as_str() {
        "7bit" | "8bit" | "binary" => Ok(Some(body.to_vec())),
        "quoted-printable" => Ok(Some(decode_quoted_printable(body))),
        "base64" => {
            let clean: Vec<u8> = body.iter().copied().filter(|c| !c.is_ascii_whitespace()).collect();
            base64::engine::general_purpose::STANDARD
                .decode(&clean)
                .map(Some)
                .map_err(|_| UnknownCte("malformed base64".into()))
        }
        other => Err(UnknownCte(other.to_string())),
    }
}

/// Apply a `<offset.length>` partial range.
pub fn partial(bytes: Vec<u8>, range: Option<(u32, u32)>) -> Vec<u8> {
    match range {
        None => bytes,
        Some((offset, len)) => {
            let start = (offset as usize).min(bytes.len());
            let end = start.saturating_add(len as usize).min(bytes.len());
            bytes[start..end].to_vec()
        }
    }
}

/// The unfolded raw value of the first header field `name`.
fn raw_header(header: &[u8], name: &str) -> Option<Vec<u8>> {
    super::header::values(header, name.as_bytes()).into_iter().next()
}

/// An ENVELOPE address list: `NIL` for no entries, else each mailbox as
/// `(name route local domain)` and each group between its start and end markers.
fn addresses(out: &mut Vec<u8>, entries: &[super::address::Entry]) {
    use super::address::Entry;
    if entries.is_empty() {
        out.extend_from_slice(b"NIL");
        return;
    }
    out.push(b'(');
    for e in entries {
        match e {
            Entry::Mailbox(m) => {
                out.push(b'(');
                encode::nstring(out, m.name.as_deref());
                out.push(b' ');
                encode::nstring(out, m.route.as_deref());
                out.push(b' ');
                encode::nstring(out, Some(&m.local));
                out.push(b' ');
                encode::nstring(out, m.domain.as_deref());
                out.push(b')');
            }
            Entry::GroupStart(name) => {
                out.extend_from_slice(b"(NIL NIL ");
                encode::nstring(out, Some(name));
                out.extend_from_slice(b" NIL)");
            }
            Entry::GroupEnd => out.extend_from_slice(b"(NIL NIL NIL NIL)"),
        }
    }
    out.push(b')');
}

/// The ENVELOPE structure of a message (RFC 3501 §7.4.2).
pub fn envelope(msg: &[u8]) -> Vec<u8> {
    let (header, _) = split_header(msg);
    let field = |name: &str| raw_header(header, name).map(|v| super::address::parse(&v)).unwrap_or_default();
    let mut out = b"(".to_vec();
    encode::nstring(&mut out, raw_header(header, "Date").as_deref());
    out.push(b' ');
    encode::nstring(&mut out, raw_header(header, "Subject").as_deref());
    let from = field("From");
    // Sender and Reply-To absent or empty are the From (RFC 3501 §7.4.2).
    let or_from = |v: Vec<super::address::Entry>| if v.is_empty() { from.clone() } else { v };
    for list in
        [from.clone(), or_from(field("Sender")), or_from(field("Reply-To")), field("To"), field("Cc"), field("Bcc")]
    {
        out.push(b' ');
        addresses(&mut out, &list);
    }
    out.push(b' ');
    encode::nstring(&mut out, raw_header(header, "In-Reply-To").as_deref());
    out.push(b' ');
    encode::nstring(&mut out, raw_header(header, "Message-ID").as_deref());
    out.push(b')');
    out
}

fn params(out: &mut Vec<u8>, ct: Option<&ContentType<'_>>) {
    let attrs = ct.and_then(|c| c.attributes()).unwrap_or_default();
    if attrs.is_empty() {
        out.extend_from_slice(b"NIL");
        return;
    }
    out.push(b'(');
    for (k, a) in attrs.iter().enumerate() {
        if k > 0 {
            out.push(b' ');
        }
        encode::string(out, a.name.as_bytes());
        out.push(b' ');
        encode::string(out, a.value.as_bytes());
    }
    out.push(b')');
}

/// Extension data shared by single and multi parts: disposition, language, location.
fn extension_tail(out: &mut Vec<u8>, part: &mail_parser::MessagePart<'_>) {
    out.push(b' ');
    match part.content_disposition() {
        Some(d) => {
            out.push(b'(');
            encode::string(out, d.ctype().as_bytes());
            out.push(b' ');
            params(out, Some(d));
            out.push(b')');
        }
        None => out.extend_from_slice(b"NIL"),
    }
    out.push(b' ');
    match part.content_language().as_text() {
        Some(l) => encode::string(out, l.as_bytes()),
        None => out.extend_from_slice(b"NIL"),
    }
    out.push(b' ');
    encode::nstring(out, part.content_location().map(str::as_bytes));
}

/// The header fields of one part, as mail-parser reads them (headers only: never recursive).
fn part_headers(header: &[u8]) -> Option<mail_parser::MessagePart<'_>> {
    parse_guarded(header, true)?.parts.into_iter().next()
}

/// An empty text part: what a multipart without parts is given as its one child, since the
/// grammar needs at least one (as Dovecot does).
const EMPTY_TEXT: &[u8] = b"(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0)";

/// The structure of part `id`. Recursion follows the tree, whose depth is bounded by
/// [`mime::DEPTH_MAX`], so the stack use is bounded whatever the input.
fn structure(tree: &mime::Tree, raw: &[u8], id: usize, ext: bool, out: &mut Vec<u8>) {
    let part = &tree.parts[id];
    assert!(part.depth <= mime::DEPTH_MAX, "the MIME tree bounds its depth");
    let headers = part_headers(&raw[part.header.clone()]);
    let headers = headers.as_ref();
    let ct = headers.and_then(|h| h.content_type());
    let body = &raw[part.body.clone()];
    if part.kind == mime::Kind::Multipart {
        out.push(b'(');
        if part.children.is_empty() {
            out.extend_from_slice(EMPTY_TEXT);
        }
        for c in &part.children {
            structure(tree, raw, *c as usize, ext, out);
        }
        out.push(b' ');
        let subtype = ct.and_then(|c| c.subtype()).unwrap_or("mixed");
        encode::string(out, subtype.as_bytes());
        if ext {
            out.push(b' ');
            params(out, ct);
            if let Some(h) = headers {
                extension_tail(out, h);
            } else {
                out.extend_from_slice(b" NIL NIL NIL");
            }
        }
        out.push(b')');
        return;
    }
    let message = part.kind == mime::Kind::Message;
    let (ctype, subtype) = match ct {
        // A multipart or message kept opaque (too deep, or no boundary) is sent as a leaf
        // of a type whose grammar needs no structure.
        Some(c) if part.children.is_empty() && is_container_type(c) => ("application", "octet-stream"),
        Some(c) => (c.ctype(), c.subtype().unwrap_or(if message { "rfc822" } else { "plain" })),
        None => ("text", "plain"),
    };
    out.push(b'(');
    encode::string(out, ctype.as_bytes());
    out.push(b' ');
    encode::string(out, subtype.as_bytes());
    out.push(b' ');
    if ct.is_none() {
        out.extend_from_slice(b"(\"charset\" \"us-ascii\")");
    } else {
        params(out, ct);
    }
    out.push(b' ');
    encode::nstring(out, headers.and_then(|h| h.content_id()).map(str::as_bytes));
    out.push(b' ');
    encode::nstring(out, headers.and_then(|h| h.content_description()).map(str::as_bytes));
    out.push(b' ');
    encode::string(out, headers.and_then(|h| h.content_transfer_encoding()).unwrap_or("7bit").as_bytes());
    out.extend_from_slice(format!(" {}", body.len()).as_bytes());
    let lines = part.lines;
    if let (true, Some(&child)) = (message, part.children.first()) {
        out.push(b' ');
        out.extend_from_slice(&envelope(body));
        out.push(b' ');
        structure(tree, raw, child as usize, ext, out);
        out.extend_from_slice(format!(" {lines}").as_bytes());
    } else if ctype.eq_ignore_ascii_case("text") {
        out.extend_from_slice(format!(" {lines}").as_bytes());
    }
    if ext {
        out.extend_from_slice(b" NIL");
        match headers {
            Some(h) => extension_tail(out, h),
            None => out.extend_from_slice(b" NIL NIL NIL"),
        }
    }
    out.push(b')');
}

/// A type the BODYSTRUCTURE grammar gives structure to (`multipart/*`, `message/rfc822`).
fn is_container_type(ct: &ContentType<'_>) -> bool {
    ct.ctype().eq_ignore_ascii_case("multipart")
        || (ct.ctype().eq_ignore_ascii_case("message")
            && ct.subtype().is_some_and(|s| s.eq_ignore_ascii_case("rfc822") || s.eq_ignore_ascii_case("global")))
}

/// BODYSTRUCTURE (`extensible`) or BODY of a message (RFC 3501 §7.4.2).
pub fn bodystructure(msg: &Source<'_>, extensible: bool) -> Vec<u8> {
    let mut out = Vec::new();
    structure(msg.tree(), msg.raw, 0, extensible, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIMPLE: &[u8] = b"From: Ann <ann@example.org>\r\nTo: bob@example.edu\r\nSubject: hi\r\n there\r\n\
Message-ID: <1@x>\r\n\r\nbody line\r\n";

    const MULTI: &[u8] = b"From: ann@example.org\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\npreamble\r\n--b\r\nContent-Type: text/plain\r\n\r\n\
first part\r\n--b\r\nContent-Type: application/octet-stream\r\n\r\nsecond\r\n--b--\r\n";

    fn text(v: Option<Vec<u8>>) -> String {
        String::from_utf8(v.expect("section exists")).unwrap()
    }

    #[test]
    fn header_text_and_fields() {
        assert!(text(section(&Source::new(SIMPLE), &Section::Header(vec![]))).ends_with("<1@x>\r\n\r\n"));
        assert_eq!(text(section(&Source::new(SIMPLE), &Section::Text(vec![]))), "body line\r\n");
        let f = Section::HeaderFields { part: vec![], names: vec!["subject".into(), "TO".into()], not: false };
        assert_eq!(text(section(&Source::new(SIMPLE), &f)), "To: bob@example.edu\r\nSubject: hi\r\n there\r\n\r\n");
        let f = Section::HeaderFields { part: vec![], names: vec!["subject".into()], not: true };
        assert!(!text(section(&Source::new(SIMPLE), &f)).contains("Subject"));
        assert_eq!(text(section(&Source::new(SIMPLE), &Section::Part(vec![1]))), "body line\r\n");
        assert_eq!(section(&Source::new(SIMPLE), &Section::Part(vec![2])), None);
    }

    #[test]
    fn mime_parts_by_number() {
        assert!(text(section(&Source::new(MULTI), &Section::Part(vec![1]))).starts_with("first part"));
        assert!(text(section(&Source::new(MULTI), &Section::Part(vec![2]))).starts_with("second"));
        assert!(text(section(&Source::new(MULTI), &Section::Mime(vec![2]))).contains("application/octet-stream"));
        assert_eq!(section(&Source::new(MULTI), &Section::Part(vec![3])), None);
        assert_eq!(section(&Source::new(MULTI), &Section::Part(vec![1, 1, 1])), None);
    }

    #[test]
    fn body_structures() {
        let s = String::from_utf8(bodystructure(&Source::new(SIMPLE), true)).unwrap();
        assert_eq!(s, "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 11 1 NIL NIL NIL NIL)");
        let s = String::from_utf8(bodystructure(&Source::new(MULTI), false)).unwrap();
        assert!(s.starts_with("((\"text\" \"plain\" NIL NIL NIL \"7bit\" "), "{s}");
        assert!(s.contains("(\"application\" \"octet-stream\" NIL NIL NIL \"7bit\" "), "{s}");
        assert!(s.ends_with(" \"mixed\")"), "{s}");
        let s = String::from_utf8(bodystructure(&Source::new(MULTI), true)).unwrap();
        assert!(s.ends_with(" \"mixed\" (\"boundary\" \"b\") NIL NIL NIL)"), "{s}");
        let nested = [b"Content-Type: message/rfc822\r\n\r\n".as_slice(), SIMPLE].concat();
        let s = String::from_utf8(bodystructure(&Source::new(&nested), false)).unwrap();
        assert!(s.starts_with("(\"message\" \"rfc822\" NIL NIL NIL \"7bit\" "), "{s}");
        assert!(s.contains("\"<1@x>\") (\"text\" \"plain\""), "{s}");
        // Deep nesting and garbage stay bounded and never panic.
        let mut deep = b"x".to_vec();
        for _ in 0..200 {
            deep = [b"Content-Type: message/rfc822\r\n\r\n".as_slice(), &deep].concat();
        }
        let _ = bodystructure(&Source::new(&deep), true);
        let _ = bodystructure(&Source::new(b""), true);
        let _ = bodystructure(&Source::new(b"\xff\r\n\r\n"), false);
    }

    /// `levels` message/rfc822 parts, each inside the last, around a short text.
    pub(crate) fn nested_messages(levels: usize) -> Vec<u8> {
        let mut msg = b"Content-Type: message/rfc822\r\n\r\n".repeat(levels);
        msg.extend_from_slice(b"Subject: core\r\n\r\ncore text\r\n");
        msg
    }

    /// `levels` multiparts, each the only part of the last.
    pub(crate) fn nested_multiparts(levels: usize) -> Vec<u8> {
        let mut msg = Vec::new();
        for k in 0..levels {
            msg.extend_from_slice(
                format!("Content-Type: multipart/mixed; boundary=\"b{k}\"\r\n\r\n--b{k}\r\n").as_bytes(),
            );
        }
        msg.extend_from_slice(b"\r\ncore text\r\n");
        for k in (0..levels).rev() {
            msg.extend_from_slice(format!("--b{k}--\r\n").as_bytes());
        }
        msg
    }

    /// Every FETCH item over hostile nesting at 10x (and more) the depth bound, on a thread
    /// with a quarter of the stack the daemons give theirs: nothing may depend on the input
    /// for its stack use.
    #[test]
    fn deep_nesting_is_flattened_on_a_small_stack() {
        let run = || {
            for msg in [nested_messages(mime::DEPTH_MAX * 10), nested_messages(500_000), nested_multiparts(50_000)] {
                let s = String::from_utf8(bodystructure(&Source::new(&msg), true)).unwrap();
                assert!(s.contains("\"application\" \"octet-stream\""), "the deepest level is opaque");
                let opens = s.bytes().filter(|b| *b == b'(').count();
                assert!(
                    opens < 20 * (mime::DEPTH_MAX + 2),
                    "bounded output: {opens} parentheses: {}",
                    &s[..3000.min(s.len())]
                );
                let _ = envelope(&msg);
                assert!(binary(&Source::new(&msg), &[1]).unwrap().is_some());
                assert!(section(&Source::new(&msg), &Section::Part(vec![1, 1, 1, 1, 1])).is_some());
                assert!(section(&Source::new(&msg), &Section::Mime(vec![1, 1, 1])).is_some());
                let deepest = vec![1; mime::DEPTH_MAX + 5];
                let _ = section(&Source::new(&msg), &Section::Part(deepest));
            }
        };
        let worker = std::thread::Builder::new().stack_size(common::daemon::THREAD_STACK_BYTES / 4).spawn(run).unwrap();
        worker.join().expect("no overflow, no panic");
    }

    #[test]
    fn binary_decodes_transfer_encodings() {
        // The CRLF before a boundary belongs to the boundary (RFC 2046 §5.1.1).
        assert_eq!(binary(&Source::new(MULTI), &[2]).unwrap().unwrap(), b"second");
        let b64 = b"Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\n\
Content-Transfer-Encoding: base64\r\n\r\nAAEC\r\nAwQF\r\n--b\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\r\ncaf=C3=A9 soft=\r\nbreak\r\n--b\r\n\
Content-Transfer-Encoding: x-uuencode\r\n\r\nbegin\r\n--b--\r\n";
        assert_eq!(binary(&Source::new(b64), &[1]).unwrap().unwrap(), vec![0, 1, 2, 3, 4, 5]);
        assert_eq!(binary(&Source::new(b64), &[2]).unwrap().unwrap(), "caf\u{e9} softbreak".as_bytes());
        assert_eq!(binary(&Source::new(b64), &[3]), Err(UnknownCte("x-uuencode".into())));
        assert_eq!(binary(&Source::new(b64), &[4]), Ok(None));
    }

    #[test]
    fn rfc2045_6_7_quoted_printable_drops_transport_whitespace_and_soft_breaks() {
        // imaptest's fetch-binary-mime-qp part: trailing whitespace goes (rule 3), `=` ends a
        // soft break even with whitespace after it (rule 5), escapes decode across breaks.
        let encoded = b"hello  \r\nbar=\r\n\r\nfoo\t=\r\nbar\r\nfoo\t \t= \r\n=62\r\nfoo = \t\r\nbar\r\n\
foo =\r\n=62\r\nfoo  \r\nbar=\r\n\r\nfoo_bar\r\n";
        let want = "hello\r\nbar\r\nfoo\tbar\r\nfoo\t \tb\r\nfoo bar\r\nfoo b\r\nfoo\r\nbar\r\nfoo_bar\r\n";
        assert_eq!(String::from_utf8(decode_quoted_printable(encoded)).unwrap(), want);
        assert_eq!(decode_quoted_printable(want.as_bytes()).len(), 65, "BINARY.SIZE counts the decoded octets");
        // Malformed escapes stay as written; a final `=` is a soft break with nothing after.
        assert_eq!(decode_quoted_printable(b"a=ZZb=4"), b"a=ZZb=4");
        assert_eq!(decode_quoted_printable(b"a=3Db="), b"a=b");
        assert_eq!(decode_quoted_printable(b"no newline"), b"no newline");
        assert_eq!(decode_quoted_printable(b"lf only\nline"), b"lf only\r\nline");
    }

    #[test]
    fn partial_ranges_clamp() {
        assert_eq!(partial(b"0123456789".to_vec(), Some((2, 3))), b"234");
        assert_eq!(partial(b"0123".to_vec(), Some((2, 100))), b"23");
        assert_eq!(partial(b"0123".to_vec(), Some((9, 1))), b"");
    }

    #[test]
    fn envelope_fields() {
        let e = String::from_utf8(envelope(SIMPLE)).unwrap();
        assert!(e.starts_with("(NIL \"hi there\" ((\"Ann\" NIL \"ann\" \"example.org\"))"), "{e}");
        assert!(e.contains("((NIL NIL \"bob\" \"example.edu\"))"), "{e}");
        assert!(e.ends_with(" NIL \"<1@x>\")"), "{e}");
        // Garbage never panics.
        let _ = envelope(b"\xff\xfe:::\r\n\r\n");
        let groups =
            b"From: user@domain (Real Name)\r\nSender: \r\nTo: group: g1@d1.org;\r\nCc: group:;\r\n\r\nbody\r\n";
        let e = String::from_utf8(envelope(groups)).unwrap();
        assert_eq!(
            e,
            "(NIL NIL ((\"Real Name\" NIL \"user\" \"domain\")) ((\"Real Name\" NIL \"user\" \"domain\")) \
             ((\"Real Name\" NIL \"user\" \"domain\")) ((NIL NIL \"group\" NIL)(NIL NIL \"g1\" \"d1.org\")(NIL NIL NIL NIL)) \
             ((NIL NIL \"group\" NIL)(NIL NIL NIL NIL)) NIL NIL NIL)",
            "RFC 3501 §7.4.2: groups, a comment as the name, an empty Sender is the From"
        );
        let _ = envelope(b"");
    }
}
