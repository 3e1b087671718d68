//! Maildir interchange: the files other IMAP servers keep beside a Maildir++ tree, so mail
//! moves in and out with its UIDs, flags and keywords — Dovecot's `dovecot-uidlist`,
//! `dovecot-keywords` and `subscriptions`, Courier's `courierimapuiddb` and
//! `courierimapsubscribed` — and Maildir file names. Parsing and writing only, and the plan
//! of one folder's import ([`plan`]); reading and writing the tree is the caller's
//! (`mailctl import` / `export`).
//!
//! Every parser takes bytes from a foreign disk: it is bounded, never panics and turns each
//! line it cannot read into a [`Problem`] naming it, never into a silent skip.

pub mod filename;
pub mod keywords;
pub mod plan;
pub mod subscriptions;
pub mod uidlist;

/// A message with every bare LF made CRLF, as IMAP carries it: Dovecot and Courier keep
/// Maildir files with LF line ends and add the CR when they serve them. Unchanged (and not
/// copied) when it has no bare LF.
pub fn crlf(data: Vec<u8>) -> Vec<u8> {
    let bare = data.iter().enumerate().filter(|(i, b)| **b == b'\n' && (*i == 0 || data[i - 1] != b'\r')).count();
    if bare == 0 {
        return data;
    }
    let mut out = Vec::with_capacity(data.len() + bare);
    for (i, b) in data.iter().enumerate() {
        if *b == b'\n' && (i == 0 || data[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(*b);
    }
    out
}

/// Something in the source that was not imported as it stood, said by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file (or `file:line`) it is about.
    pub what: String,
    pub why: String,
}

impl Problem {
    pub fn new(what: impl Into<String>, why: impl Into<String>) -> Self {
        Self { what: what.into(), why: why.into() }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", crate::interchange::printable(&self.what), self.why)
    }
}

/// A name from a foreign disk made safe to print: control characters escaped, at most
/// [`PRINT_MAX_CHARS`] characters.
pub fn printable(name: &str) -> String {
    let mut out: String = name.chars().take(PRINT_MAX_CHARS).flat_map(char::escape_default).collect();
    if name.chars().count() > PRINT_MAX_CHARS {
        out.push('…');
    }
    out
}

/// Longest name printed in a problem.
pub const PRINT_MAX_CHARS: usize = 200;

#[cfg(test)]
mod tests {
    #[test]
    fn bare_line_feeds_become_crlf() {
        assert_eq!(super::crlf(b"a\nb\r\nc\n".to_vec()), b"a\r\nb\r\nc\r\n");
        assert_eq!(super::crlf(b"\n".to_vec()), b"\r\n");
        assert_eq!(super::crlf(b"a\r\n\r\nb".to_vec()), b"a\r\n\r\nb");
        assert_eq!(super::crlf(b"lone\rcr".to_vec()), b"lone\rcr", "a lone CR is left alone");
    }
}
