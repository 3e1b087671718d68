//! Messages made sendable before they are stored. IMAP may carry a NUL octet only in a
//! literal8, which only BINARY responses use (RFC 3501 §4.3, RFC 3516 §4.2), so a message
//! APPENDed with binary content (or delivered with a stray NUL) could never be sent as
//! `BODY[]`. Before such a message is stored, every leaf part whose body holds a NUL is
//! re-encoded as base64 and its Content-Transfer-Encoding says so, as RFC 3516 §4.4 allows;
//! `BINARY[part]` still gives back the original octets. A NUL outside any such body (in a
//! header, a preamble) becomes 0x80, as Dovecot does.
//!
//! A message without NUL is returned as it is, untouched (the common case costs one scan).
//! Pure; linear in the message size.

use std::borrow::Cow;

use super::mime::{self, Kind};

/// Base64 line length (RFC 2045 §6.8: at most 76 characters).
const BASE64_LINE_CHARS: usize = 76;

/// `msg`, or a copy whose NUL octets are gone as described above.
pub fn sendable(msg: &[u8]) -> Cow<'_, [u8]> {
    if !msg.contains(&0) {
        return Cow::Borrowed(msg);
    }
    let tree = mime::parse(msg);
    let mut out = Vec::with_capacity(msg.len() * 4 / 3 + 256);
    let mut copied = 0;
    for part in tree.parts.iter().filter(|p| p.kind == Kind::Leaf && msg[p.body.clone()].contains(&0)) {
        // Parts come in order and leaves do not overlap.
        if part.header.start < copied {
            continue;
        }
        out.extend_from_slice(&msg[copied..part.header.start]);
        rewrite_header(&msg[part.header.clone()], &mut out);
        base64_lines(&msg[part.body.clone()], &mut out);
        copied = part.body.end;
    }
    out.extend_from_slice(&msg[copied..]);
    for b in out.iter_mut().filter(|b| **b == 0) {
        *b = 0x80;
    }
    Cow::Owned(out)
}

/// The part header without its Content-Transfer-Encoding fields, with
/// `Content-Transfer-Encoding: base64` before the blank line that ends it.
fn rewrite_header(header: &[u8], out: &mut Vec<u8>) {
    let mut skipping = false;
    let mut lines = header.split_inclusive(|b| *b == b'\n').peekable();
    while let Some(line) = lines.next() {
        let blank = line == b"\r\n" || line == b"\n";
        if blank && lines.peek().is_none() {
            out.extend_from_slice(b"Content-Transfer-Encoding: base64\r\n");
            out.extend_from_slice(line);
            return;
        }
        let continuation = matches!(line.first(), Some(b' ' | b'\t'));
        if !continuation {
            let name = line.split(|b| *b == b':').next().unwrap_or_default();
            skipping = name.trim_ascii().eq_ignore_ascii_case(b"Content-Transfer-Encoding");
        }
        if !skipping {
            out.extend_from_slice(line);
        }
    }
    // A header without its blank line (the part has no body separator): add both.
    out.extend_from_slice(b"Content-Transfer-Encoding: base64\r\n\r\n");
}

/// `data` as base64 in lines of [`BASE64_LINE_CHARS`] joined by CRLF, and a last CRLF if
/// `data` ended a line (the CRLF before a boundary is the boundary's, not the body's).
fn base64_lines(data: &[u8], out: &mut Vec<u8>) {
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(data);
    for (k, chunk) in encoded.as_bytes().chunks(BASE64_LINE_CHARS).enumerate() {
        if k > 0 {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(chunk);
    }
    if data.ends_with(b"\n") {
        out.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3516_4_4_a_binary_part_is_stored_as_base64_and_binary_gives_it_back() {
        let msg = b"From: user@domain.org\r\nContent-Type: application/octet-stream\r\n\
Content-Transfer-Encoding: binary\r\n\r\n\x00-\xe4\r\n\r\n";
        let stored = sendable(msg);
        assert!(!stored.contains(&0), "no NUL left");
        let text = String::from_utf8_lossy(&stored);
        assert!(text.contains("Content-Transfer-Encoding: base64\r\n\r\nAC3kDQoNCg==\r\n"), "{text}");
        assert!(!text.contains("binary"), "the old encoding is gone: {text}");
        let decoded = crate::imap::fetch::binary(&crate::imap::fetch::Source::new(&stored), &[1]).unwrap().unwrap();
        assert_eq!(decoded, b"\x00-\xe4\r\n\r\n", "BINARY[1] is the original octets");
    }

    #[test]
    fn only_parts_with_nul_change_and_clean_messages_are_untouched() {
        let clean = b"Subject: x\r\n\r\nplain\r\n";
        assert!(matches!(sendable(clean), Cow::Borrowed(_)));
        let multi = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n\
keep me\r\n--b\r\nContent-Type: application/x\r\nContent-Transfer-Encoding: 8bit\r\n\r\nA\x00B\r\n--b--\r\n";
        let stored = sendable(multi);
        let text = String::from_utf8_lossy(&stored);
        assert!(text.contains("Content-Type: text/plain\r\n\r\nkeep me\r\n--b\r\n"), "{text}");
        assert!(
            text.contains("Content-Type: application/x\r\nContent-Transfer-Encoding: base64\r\n\r\nQQBC\r\n--b--"),
            "{text}"
        );
        let header_nul = b"Subject: a\x00b\r\n\r\nbody\r\n";
        assert_eq!(&*sendable(header_nul), b"Subject: a\x80b\r\n\r\nbody\r\n");
    }
}
