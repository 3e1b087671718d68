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

/// The tag of a command line, if it starts with a valid one (for answering `BAD`).
pub fn tag_of(line: &[u8]) -> Option<&str> {
    let end = line.iter().position(|b| *b == b' ').unwrap_or(line.len());
    let tag = &line[..end];
    let valid =
        !tag.is_empty() && tag.len() <= 64 && tag.iter().all(|b| b.is_ascii_graphic() && !b"(){%*\"\\+]".contains(b));
    valid.then(|| std::str::from_utf8(tag).ok()).flatten()
}

/// ESEARCH (RFC 4731) return options of a `[UID] SEARCH RETURN (...)` command, which the
/// parser does not know: the command without them, and the options (upper case; an empty
/// list means `ALL`). `None` for any other command.
pub fn split_search_return(bytes: &[u8]) -> Option<(Vec<u8>, Vec<String>)> {
    let text = std::str::from_utf8(bytes).ok()?;
    let (tag, rest) = text.split_once(' ')?;
    let upper = rest.to_ascii_uppercase();
    let prefix = ["UID SEARCH RETURN (", "SEARCH RETURN ("].into_iter().find(|p| upper.starts_with(p))?;
    let after = &rest[prefix.len()..];
    let close = after.find(')')?;
    let options: Vec<String> = after[..close].split_whitespace().map(|o| o.to_ascii_uppercase()).collect();
    let verb = &rest[..prefix.len() - "RETURN (".len()];
    let remainder = after[close + 1..].trim_start();
    Some((format!("{tag} {verb}{remainder}").into_bytes(), options))
}

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
    fn search_return_options_are_split_off() {
        let (cmd, opts) = split_search_return(b"a1 UID SEARCH RETURN (MIN count) UNSEEN\r\n").unwrap();
        assert_eq!(
            (cmd.as_slice(), opts),
            (&b"a1 UID SEARCH UNSEEN\r\n"[..], vec!["MIN".to_string(), "COUNT".to_string()])
        );
        let (cmd, opts) = split_search_return(b"a2 search return () ALL\r\n").unwrap();
        assert_eq!((cmd.as_slice(), opts.len()), (&b"a2 search ALL\r\n"[..], 0));
        assert!(split_search_return(b"a3 SEARCH UNSEEN\r\n").is_none());
        assert!(split_search_return(b"a4 SEARCH RETURN (MIN UNSEEN\r\n").is_none());
    }

    #[test]
    fn tags() {
        assert_eq!(tag_of(b"a001 NOOP"), Some("a001"));
        assert_eq!(tag_of(b"* NOOP"), None);
        assert_eq!(tag_of(b""), None);
        assert_eq!(tag_of(b"+x NOOP"), None);
    }
}
