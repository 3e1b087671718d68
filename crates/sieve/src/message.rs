//! The message as tests see it: header fields in order (names, unfolded and decoded values,
//! the addresses in them), the body by MIME part, and the envelope. `editheader` changes the
//! field list here, so later tests see the edit. This module must never allocate more than a
//! bounded multiple of the message, and never interpret a script.

use std::borrow::Cow;
use std::cell::OnceCell;

use mail_parser::parsers::MessageStream;
use mail_parser::{HeaderValue, MessageParser, MimeHeaders, PartType};

/// One header field: its name as written and its whole raw text ("Name: value\r\n").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    pub raw: Vec<u8>,
    value_at: usize,
}

impl Field {
    pub fn new(name: &str, value: &str) -> Field {
        let raw = format!("{name}: {value}\r\n").into_bytes();
        Field { name: name.to_string(), value_at: name.len() + 1, raw }
    }

    fn parse(raw: &[u8]) -> Option<Field> {
        let colon = raw.iter().position(|&b| b == b':')?;
        let name = std::str::from_utf8(&raw[..colon]).ok()?.trim_end();
        let valid = !name.is_empty() && name.bytes().all(|b| (33..=126).contains(&b));
        valid.then(|| Field { name: name.to_string(), raw: raw.to_vec(), value_at: colon + 1 })
    }

    pub fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
    }

    /// The value unfolded, with RFC 2047 encoded words decoded and outer whitespace trimmed.
    pub fn value(&self) -> String {
        let bytes = with_line_end(&self.raw[self.value_at..]);
        match MessageStream::new(&bytes).parse_unstructured() {
            HeaderValue::Text(text) => text.trim().to_string(),
            _ => String::new(),
        }
    }

    /// The value unfolded but not decoded (what `date` parses).
    pub fn raw_value(&self) -> Vec<u8> {
        with_line_end(&self.raw[self.value_at..])
    }

    /// The addresses the field holds, groups flattened; an unparsable field has none.
    pub fn addresses(&self) -> Vec<String> {
        let bytes = with_line_end(&self.raw[self.value_at..]);
        match MessageStream::new(&bytes).parse_address() {
            HeaderValue::Address(list) => {
                list.iter().filter_map(|a| a.address.as_deref()).map(str::to_string).collect()
            }
            _ => Vec::new(),
        }
    }
}

fn with_line_end(value: &[u8]) -> Vec<u8> {
    let mut bytes = value.to_vec();
    if !bytes.ends_with(b"\n") {
        bytes.extend_from_slice(b"\r\n");
    }
    bytes
}

/// The envelope of one delivery (RFC 5228 §5.4).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Envelope {
    /// The reverse path; empty for the null sender `<>`.
    pub from: String,
    /// The recipient this execution is for.
    pub to: String,
    /// The authenticated user who submitted the message, if any.
    pub auth: Option<String>,
}

/// A message under test.
pub struct Message<'a> {
    raw: &'a [u8],
    pub fields: Vec<Field>,
    body_at: usize,
    parts: OnceCell<Vec<BodyPart>>,
}

/// A leaf MIME part: its type and its content decoded to text.
pub struct BodyPart {
    pub content_type: String,
    pub text: String,
}

impl<'a> Message<'a> {
    pub fn parse(raw: &'a [u8]) -> Message<'a> {
        let (fields, body_at) = split_header(raw);
        Message { raw, fields, body_at, parts: OnceCell::new() }
    }

    pub fn size(&self) -> u64 {
        self.raw.len() as u64
    }

    /// The body as it is on the wire (body :raw).
    pub fn raw_body(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.raw[self.body_at..])
    }

    /// The header section as the fields now stand (after any edits).
    pub fn header_bytes(&self) -> Vec<u8> {
        self.fields.iter().flat_map(|f| f.raw.iter().copied()).collect()
    }

    /// The body after its blank separator line.
    pub fn body_bytes(&self) -> &'a [u8] {
        &self.raw[self.body_at..]
    }

    pub fn fields_named<'s>(&'s self, name: &str) -> impl DoubleEndedIterator<Item = &'s Field> + 's {
        let name = name.to_string();
        self.fields.iter().filter(move |f| f.is(&name))
    }

    /// Leaf parts with their decoded text, parsed on first use.
    pub fn parts(&self) -> &[BodyPart] {
        self.parts.get_or_init(|| body_parts(self.raw))
    }
}

/// Splits the header section into fields; returns them and where the body starts.
fn split_header(raw: &[u8]) -> (Vec<Field>, usize) {
    let mut fields: Vec<Field> = Vec::new();
    let mut at = 0;
    while at < raw.len() {
        let end = raw[at..].iter().position(|&b| b == b'\n').map_or(raw.len(), |i| at + i + 1);
        // A last line without its line end gets one, so an edited header stays whole lines.
        let line: std::borrow::Cow<[u8]> = match raw[at..end].ends_with(b"\n") {
            true => std::borrow::Cow::Borrowed(&raw[at..end]),
            false => std::borrow::Cow::Owned([&raw[at..end], b"\r\n"].concat()),
        };
        let line = &*line;
        if line == b"\r\n" || line == b"\n" {
            return (fields, end);
        }
        let continuation = matches!(line.first(), Some(b' ' | b'\t'));
        match fields.last_mut() {
            Some(last) if continuation => last.raw.extend_from_slice(line),
            // A line that is neither a field nor a continuation is skipped, as readers do.
            _ => fields.extend(Field::parse(line)),
        }
        at = end;
    }
    (fields, raw.len())
}

fn body_parts(raw: &[u8]) -> Vec<BodyPart> {
    let Some(message) = MessageParser::default().parse(raw) else { return Vec::new() };
    let mut out = Vec::new();
    for part in &message.parts {
        let content_type = part
            .content_type()
            .map(|c| match c.subtype() {
                Some(sub) => format!("{}/{}", c.ctype(), sub),
                None => c.ctype().to_string(),
            })
            .unwrap_or_else(|| "text/plain".to_string())
            .to_ascii_lowercase();
        let text = match &part.body {
            PartType::Text(text) | PartType::Html(text) => text.to_string(),
            PartType::Binary(bytes) | PartType::InlineBinary(bytes) => String::from_utf8_lossy(bytes).into_owned(),
            PartType::Message(_) | PartType::Multipart(_) => continue,
        };
        out.push(BodyPart { content_type, text });
    }
    out
}

/// The message with its header section replaced by `header` (an `Outcome::header`).
pub fn with_header(raw: &[u8], header: &[u8]) -> Vec<u8> {
    let body = Message::parse(raw).body_bytes();
    [header, b"\r\n", body].concat()
}

/// The address in `text` when it is one plain address (`local@domain`, optionally in `<>`).
pub fn plain_address(text: &str) -> Option<String> {
    let text = text.trim();
    let text = text.strip_prefix('<').and_then(|t| t.strip_suffix('>')).unwrap_or(text);
    let (local, domain) = text.rsplit_once('@')?;
    let ok = !local.is_empty()
        && !domain.is_empty()
        && text.len() <= 254
        && !text.chars().any(|c| c.is_whitespace() || c.is_control() || "<>,;\"()[]\\".contains(c))
        && !domain.starts_with('.')
        && !domain.ends_with('.');
    ok.then(|| text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_unfold_and_decode() {
        let raw =
            b"Subject: =?utf-8?q?caf=C3=A9?=\r\n  au lait\r\nTo: A <a@x.org>, g: b@y.org, c@z.org;\r\n\r\nbody\r\n";
        let m = Message::parse(raw);
        assert_eq!(m.fields.len(), 2);
        assert_eq!(m.fields[0].value(), "caf\u{e9} au lait");
        assert_eq!(m.fields[1].addresses(), vec!["a@x.org", "b@y.org", "c@z.org"]);
        assert_eq!(m.raw_body(), "body\r\n");
        assert_eq!(m.header_bytes(), raw[..raw.len() - 8].to_vec());
    }

    #[test]
    fn plain_addresses() {
        assert_eq!(plain_address("<a@b.org>").as_deref(), Some("a@b.org"));
        assert!(plain_address("a b@c").is_none());
        assert!(plain_address("nobody").is_none());
    }
}
