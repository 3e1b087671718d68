//! IMAP response syntax: strings as atoms, quoted strings or literals as their bytes
//! require, flag lists, and dates. Pure functions over byte buffers.

use crate::mailstore::ops::flag;

/// Append `s` as an IMAP string: quoted when it is short, 7-bit text without CR/LF/NUL,
/// else a literal.
pub fn string(out: &mut Vec<u8>, s: &[u8]) {
    let quotable = s.len() <= 1024 && s.iter().all(|b| (0x01..0x80).contains(b) && *b != b'\r' && *b != b'\n');
    if quotable {
        out.push(b'"');
        for b in s {
            if *b == b'"' || *b == b'\\' {
                out.push(b'\\');
            }
            out.push(*b);
        }
        out.push(b'"');
    } else {
        literal(out, s);
    }
}

/// Append `s` as a literal.
pub fn literal(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(format!("{{{}}}\r\n", s.len()).as_bytes());
    out.extend_from_slice(s);
}

/// Append `s` as a string that may hold NUL (METADATA values, RFC 5464 §5): a literal8
/// (RFC 3516) when it does, else as [`string`].
pub fn string8(out: &mut Vec<u8>, s: &[u8]) {
    if s.contains(&0) {
        out.extend_from_slice(format!("~{{{}}}\r\n", s.len()).as_bytes());
        out.extend_from_slice(s);
    } else {
        string(out, s);
    }
}

/// Append `s` as an nstring: `NIL` when absent.
pub fn nstring(out: &mut Vec<u8>, s: Option<&[u8]>) {
    match s {
        Some(s) => string(out, s),
        None => out.extend_from_slice(b"NIL"),
    }
}

/// Append a mailbox name (an astring: quoted, or a literal when needed).
pub fn mailbox(out: &mut Vec<u8>, name: &str) {
    string(out, name.as_bytes());
}

/// The flag list of a message: system flags then keywords.
pub fn flags(flags: u8, keywords: &[String]) -> String {
    flags_recent(flags, keywords, false)
}

/// The flag list of a message, with `\Recent` if it is recent in this session.
pub fn flags_recent(flags: u8, keywords: &[String], recent: bool) -> String {
    let mut parts: Vec<&str> = Vec::new();
    if recent {
        parts.push("\\Recent");
    }
    for (bit, name) in [
        (flag::SEEN, "\\Seen"),
        (flag::ANSWERED, "\\Answered"),
        (flag::FLAGGED, "\\Flagged"),
        (flag::DELETED, "\\Deleted"),
        (flag::DRAFT, "\\Draft"),
    ] {
        if flags & bit != 0 {
            parts.push(name);
        }
    }
    parts.extend(keywords.iter().map(String::as_str));
    format!("({})", parts.join(" "))
}

/// An internal date (seconds since the epoch, UTC) as `"dd-Mon-yyyy hh:mm:ss +0000"`.
pub fn internal_date(secs: i64) -> String {
    let dt = chrono::DateTime::from_timestamp(secs, 0).unwrap_or_default();
    format!("\"{}\"", dt.format("%d-%b-%Y %H:%M:%S +0000"))
}

/// A sorted list of UIDs as a compact set: `1:3,7,9:10`.
pub fn uid_set(uids: &[u32]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < uids.len() {
        let start = uids[i];
        let mut end = start;
        while i + 1 < uids.len() && uids[i + 1] == end + 1 {
            i += 1;
            end = uids[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[u8]) -> String {
        let mut out = Vec::new();
        string(&mut out, v);
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn strings_are_quoted_or_literal_as_needed() {
        assert_eq!(s(b"Sent"), "\"Sent\"");
        assert_eq!(s(b"a \"b\" \\c"), "\"a \\\"b\\\" \\\\c\"");
        assert_eq!(s(b"two\r\nlines"), "{10}\r\ntwo\r\nlines");
        assert_eq!(s("K\u{e4}se".as_bytes()), "{5}\r\nK\u{e4}se");
        assert_eq!(s(b""), "\"\"");
    }

    #[test]
    fn uid_sets_compress_runs() {
        assert_eq!(uid_set(&[1, 2, 3, 7, 9, 10]), "1:3,7,9:10");
        assert_eq!(uid_set(&[4]), "4");
        assert_eq!(uid_set(&[]), "");
    }

    #[test]
    fn flags_and_dates_render() {
        assert_eq!(flags(flag::SEEN | flag::DELETED, &["$Junk".into()]), "(\\Seen \\Deleted $Junk)");
        assert_eq!(flags(0, &[]), "()");
        assert_eq!(internal_date(0), "\"01-Jan-1970 00:00:00 +0000\"");
    }
}
