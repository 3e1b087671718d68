//! Maildir file names: `BASE[:2,INFO]`, where `BASE` is unique in the folder (Dovecot adds
//! `,S=size` and `,W=vsize` to it) and `INFO` holds the flags as letters in ASCII order —
//! `D F P R S T` for Draft, Flagged, Passed, Replied, Seen, Trashed — and Dovecot's
//! keywords as `a`–`z`, each the index of a line of `dovecot-keywords`. Pure.

use crate::mailstore::ops::flag;

/// Longest file name accepted (Linux's NAME_MAX).
pub const NAME_MAX_BYTES: usize = 255;

/// A parsed file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileName<'a> {
    /// The unique part, before `:`.
    pub base: &'a str,
    /// IMAP system flags.
    pub flags: u8,
    /// Dovecot keyword indexes (`a` = 0).
    pub keywords: Vec<u8>,
    /// The size the name states (`,S=`), if any.
    pub size: Option<u64>,
}

/// Why a file name was not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileNameError {
    #[error("not a Maildir file name (empty, hidden, too long or with control characters)")]
    NotMaildir,
    #[error("unknown info {0:?} (only :2, flags are read)")]
    UnknownInfo(String),
}

/// Parse a file name of `cur/` or `new/`.
pub fn parse(name: &str) -> Result<FileName<'_>, FileNameError> {
    if name.is_empty() || name.len() > NAME_MAX_BYTES || name.starts_with('.') || name.chars().any(char::is_control) {
        return Err(FileNameError::NotMaildir);
    }
    let (base, info) = match name.split_once(':') {
        Some((base, info)) => (base, Some(info)),
        None => (name, None),
    };
    if base.is_empty() {
        return Err(FileNameError::NotMaildir);
    }
    let mut parsed = FileName { base, flags: 0, keywords: Vec::new(), size: size_of(base) };
    let Some(info) = info else { return Ok(parsed) };
    let Some(letters) = info.strip_prefix("2,") else {
        return Err(FileNameError::UnknownInfo(info.to_string()));
    };
    for c in letters.chars() {
        match c {
            'a'..='z' => parsed.keywords.push(c as u8 - b'a'),
            _ => {
                if let Some((bit, _)) = flag::LETTERS.iter().find(|(_, l)| *l == c) {
                    parsed.flags |= bit;
                }
                // Other letters (`P`assed, unknown ones) have no IMAP flag: ignored.
            }
        }
    }
    parsed.keywords.sort_unstable();
    parsed.keywords.dedup();
    Ok(parsed)
}

/// The `,S=size` a base states.
fn size_of(base: &str) -> Option<u64> {
    base.split(',').skip(1).find_map(|part| part.strip_prefix("S=")?.parse().ok())
}

/// The file name for a message: `BASE:2,` with its flag letters and keyword letters, in
/// the ASCII order Maildir asks for.
pub fn format(base: &str, flags: u8, keywords: &[u8]) -> String {
    let mut letters: Vec<char> = flag::LETTERS.iter().filter(|(bit, _)| flags & bit != 0).map(|(_, l)| *l).collect();
    letters.extend(keywords.iter().filter(|k| **k < 26).map(|k| char::from(b'a' + k)));
    letters.sort_unstable();
    letters.dedup();
    let info: String = letters.into_iter().collect();
    format!("{base}:2,{info}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dovecot_names_give_base_flags_keywords_and_size() {
        let f = parse("1796601234.M165448P19208.vm,S=17,W=20:2,FSab").unwrap();
        assert_eq!(f.base, "1796601234.M165448P19208.vm,S=17,W=20");
        assert_eq!(f.flags, flag::FLAGGED | flag::SEEN);
        assert_eq!(f.keywords, vec![0, 1]);
        assert_eq!(f.size, Some(17));
        let plain = parse("1700000000.R5_0.hermes,S=99").unwrap();
        assert_eq!((plain.flags, plain.size), (0, Some(99)));
        assert_eq!(parse("123.abc:2,").unwrap().flags, 0);
        assert_eq!(parse("123.abc:2,PRDT").unwrap().flags, flag::ANSWERED | flag::DRAFT | flag::DELETED);
    }

    #[test]
    fn bad_names_are_refused_with_a_reason() {
        for bad in ["", ".hidden", "a\nb", ":2,S", &"x".repeat(300)] {
            assert_eq!(parse(bad), Err(FileNameError::NotMaildir), "{bad:?}");
        }
        assert!(matches!(parse("123.abc:1,foo"), Err(FileNameError::UnknownInfo(_))));
        assert_eq!(parse("123,S=notanumber").unwrap().size, None);
    }

    #[test]
    fn format_round_trips() {
        let name = format("1.M1P1.x,S=5", flag::SEEN | flag::DRAFT | flag::DELETED, &[2, 0]);
        assert_eq!(name, "1.M1P1.x,S=5:2,DSTac");
        let back = parse(&name).unwrap();
        assert_eq!((back.flags, back.keywords), (flag::SEEN | flag::DRAFT | flag::DELETED, vec![0, 2]));
    }
}
