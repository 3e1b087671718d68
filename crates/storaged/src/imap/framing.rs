//! Where an IMAP command ends: a command line may end in a literal announcement
//! (`{n}` synchronizing, `{n+}` non-synchronizing, RFC 7888), after which `n` bytes and
//! more of the command follow. Pure helpers for the server's reader.

/// The literal a line announces at its end: `(length, non-synchronizing)`.
pub fn literal_suffix(line: &[u8]) -> Option<(u64, bool)> {
    let body = line.strip_suffix(b"}")?;
    let open = body.iter().rposition(|b| *b == b'{')?;
    let inner = &body[open + 1..];
    // `~{n}` (literal8) is announced the same way.
    let (digits, non_sync) = match inner.strip_suffix(b"+") {
        Some(d) => (d, true),
        None => (inner, false),
    };
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok().map(|n| (n, non_sync))
}

pub use common::imap_tag::tag_of;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_announcements() {
        assert_eq!(literal_suffix(b"a APPEND INBOX {310}"), Some((310, false)));
        assert_eq!(literal_suffix(b"a LOGIN {5+}"), Some((5, true)));
        assert_eq!(literal_suffix(b"a APPEND INBOX ~{12}"), Some((12, false)));
        assert_eq!(literal_suffix(b"a NOOP"), None);
        assert_eq!(literal_suffix(b"a X {}"), None);
        assert_eq!(literal_suffix(b"a X {1a}"), None);
        assert_eq!(literal_suffix(b"a X {99999999999999999999999}"), None);
    }

    #[test]
    fn tags() {
        assert_eq!(tag_of(b"a001 NOOP"), Some("a001"));
        assert_eq!(tag_of(b"* NOOP"), None);
        assert_eq!(tag_of(b""), None);
        assert_eq!(tag_of(b"+x NOOP"), None);
    }
}
