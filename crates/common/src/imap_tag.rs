//! The tag of an IMAP command line (RFC 3501 §9 `tag`), found before any parsing: both
//! daemons answer a line they cannot take (too long, unparsable) under the client's tag,
//! so that the client is not left waiting for a tagged reply. Pure.

/// Longest tag taken; a longer one is not echoed.
pub const TAG_MAX_BYTES: usize = 64;

/// The tag `line` starts with, if it is a valid one.
pub fn tag_of(line: &[u8]) -> Option<&str> {
    let end = line.iter().position(|b| *b == b' ').unwrap_or(line.len());
    let tag = &line[..end];
    let valid = !tag.is_empty()
        && tag.len() <= TAG_MAX_BYTES
        && tag.iter().all(|b| b.is_ascii_graphic() && !b"(){%*\"\\+]".contains(b));
    valid.then(|| std::str::from_utf8(tag).ok()).flatten()
}

/// `{tag} BAD {text}` under the line's tag, or `* BAD {text}` without one.
pub fn bad(line: &[u8], text: &str) -> Vec<u8> {
    format!("{} BAD {text}\r\n", tag_of(line).unwrap_or("*")).into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_atoms_without_plus() {
        assert_eq!(tag_of(b"a1 NOOP"), Some("a1"));
        assert_eq!(tag_of(b"a1"), Some("a1"));
        for bad_tag in [&b"+ x"[..], b"* OK", b" a", b"a{1} x", b"\xff x", b""] {
            assert_eq!(tag_of(bad_tag), None, "{bad_tag:?}");
        }
        assert_eq!(tag_of(&[b'a'; TAG_MAX_BYTES + 1]), None);
        assert_eq!(bad(b"t7 ID (\"x\"", "command line too long"), b"t7 BAD command line too long\r\n");
        assert_eq!(bad(b"", "x"), b"* BAD x\r\n");
    }
}
