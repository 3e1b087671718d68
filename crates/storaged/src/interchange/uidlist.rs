//! UID lists: Dovecot's `dovecot-uidlist` (versions 1 and 3) and Courier's
//! `courierimapuiddb` (Dovecot's version 1 is Courier's format), which map a folder's
//! Maildir base names to IMAP UIDs and hold its UIDVALIDITY and next UID.
//!
//! ```text
//! 3 V1275660208 N25022 G3085f01b7f11094c501100008c4a11c1
//! 25006 :1276528487.M364837P9451.kurkku,S=1355,W=1394
//! 25017 W2481 :1276533073.M242911P3632.kurkku
//! ```
//!
//! Pure. A header that cannot be read makes the list unusable (the folder then gets a new
//! UIDVALIDITY); an entry that cannot be read, a repeated or descending UID and a last line
//! without its newline (a truncated file) are each a [`Problem`] and the rest is used.

use super::Problem;

/// Largest UID list read (about a million entries).
pub const FILE_MAX_BYTES: u64 = 128 << 20;

/// One listed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub uid: u32,
    /// The Maildir base name (before `:`).
    pub base: String,
}

/// A parsed UID list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UidList {
    pub uid_validity: u32,
    /// The UID the next new message gets.
    pub next_uid: u32,
    /// In ascending UID order, each UID once.
    pub entries: Vec<Entry>,
    pub problems: Vec<Problem>,
}

/// Parse a UID list named `file` (for problems).
pub fn parse(text: &[u8], file: &str) -> Result<UidList, Problem> {
    let (complete, torn) = match text.iter().rposition(|b| *b == b'\n') {
        Some(end) => (&text[..=end], &text[end + 1..]),
        None => (&text[..0], text),
    };
    let mut lines = complete.split(|b| *b == b'\n').filter(|l| !l.is_empty());
    let header = match lines.next() {
        Some(h) => h,
        None if torn.is_empty() => return Err(Problem::new(file, "empty UID list")),
        None => return Err(Problem::new(file, "truncated UID list: no complete header")),
    };
    let (version, uid_validity, next_uid) = header_of(header).ok_or_else(|| {
        Problem::new(file, format!("unreadable header {:?}", String::from_utf8_lossy(&header[..header.len().min(80)])))
    })?;
    let mut list = UidList { uid_validity, next_uid, entries: Vec::new(), problems: Vec::new() };
    for (k, line) in lines.enumerate() {
        let at = || format!("{file}:{}", k + 2);
        let Some((uid, base)) = entry_of(line, version) else {
            let shown = String::from_utf8_lossy(&line[..line.len().min(80)]).into_owned();
            list.problems.push(Problem::new(at(), format!("unreadable entry {shown:?}")));
            continue;
        };
        if let Some(last) = list.entries.last() {
            if uid <= last.uid {
                let why = format!("UID {uid} of {base} repeats or descends after {}: ignored", last.uid);
                list.problems.push(Problem::new(at(), why));
                continue;
            }
        }
        list.entries.push(Entry { uid, base: base.to_string() });
    }
    if !torn.is_empty() {
        list.problems.push(Problem::new(file, "last line has no newline (a truncated file): ignored"));
    }
    Ok(list)
}

/// `(version, UIDVALIDITY, next UID)` of a header line.
fn header_of(line: &[u8]) -> Option<(u8, u32, u32)> {
    let line = std::str::from_utf8(line).ok()?;
    let mut fields = line.split(' ');
    match fields.next()? {
        "1" => {
            let validity = fields.next()?.parse().ok()?;
            let next = fields.next()?.parse().ok()?;
            (validity > 0).then_some((1, validity, next))
        }
        "3" => {
            let (mut validity, mut next) = (None, None);
            for f in fields {
                if let Some(v) = f.strip_prefix('V') {
                    validity = v.parse().ok();
                } else if let Some(n) = f.strip_prefix('N') {
                    next = n.parse().ok();
                }
            }
            let validity: u32 = validity?;
            (validity > 0).then_some((3, validity, next?))
        }
        _ => None,
    }
}

/// `(uid, base)` of an entry line of format `version`.
fn entry_of(line: &[u8], version: u8) -> Option<(u32, &str)> {
    let line = std::str::from_utf8(line).ok()?;
    let (uid, rest) = line.split_once(' ')?;
    let uid: u32 = uid.parse().ok().filter(|u| *u > 0)?;
    let name = if version == 3 {
        // Extension fields (`W2481`, `G…`) come first; the name follows ` :`.
        if let Some(name) = rest.strip_prefix(':') {
            name
        } else {
            rest.split_once(" :")?.1
        }
    } else {
        rest
    };
    let base = name.split(':').next().unwrap_or_default();
    (!base.is_empty() && !base.chars().any(char::is_control)).then_some((uid, base))
}

/// A version-3 `dovecot-uidlist` for `entries` (ascending UIDs), with the folder's
/// UIDVALIDITY, next UID and GUID.
pub fn write<'a>(
    uid_validity: u32,
    next_uid: u32,
    guid: [u8; 16],
    entries: impl IntoIterator<Item = (u32, &'a str)>,
) -> String {
    let hex: String = guid.iter().map(|b| format!("{b:02x}")).collect();
    let mut out = format!("3 V{uid_validity} N{next_uid} G{hex}\n");
    for (uid, base) in entries {
        out.push_str(&format!("{uid} :{base}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOVECOT: &str = "3 V1796601236 N5 G4136580992f5156b084b000083ecc375\n\
        1 :1796601234.M163094P19208.vm,S=17,W=20\n\
        2 W2481 :1796601234.M165448P19208.vm,S=17,W=20\n\
        4 :1796601234.M170082P19208.vm,S=17,W=20:2,S\n";

    #[test]
    fn dovecot_version_3_lists_uids_and_bases() {
        let l = parse(DOVECOT.as_bytes(), "dovecot-uidlist").unwrap();
        assert_eq!((l.uid_validity, l.next_uid), (1796601236, 5));
        let got: Vec<(u32, &str)> = l.entries.iter().map(|e| (e.uid, e.base.as_str())).collect();
        assert_eq!(
            got,
            vec![
                (1, "1796601234.M163094P19208.vm,S=17,W=20"),
                (2, "1796601234.M165448P19208.vm,S=17,W=20"),
                (4, "1796601234.M170082P19208.vm,S=17,W=20")
            ]
        );
        assert!(l.problems.is_empty());
    }

    #[test]
    fn courier_and_version_1_lists_are_read() {
        let l = parse(b"1 1100000000 12\n3 1100000000.12345.host\n11 1100000001.54321.host:2,S\n", "courierimapuiddb")
            .unwrap();
        assert_eq!((l.uid_validity, l.next_uid, l.entries.len()), (1100000000, 12, 2));
        assert_eq!(l.entries[1].base, "1100000001.54321.host");
    }

    #[test]
    fn damage_is_reported_line_by_line_and_the_rest_used() {
        let text = "3 V7 N9\n1 :a\nbogus\n1 :dup\n3 :c\n0 :zero\n4 :d\n5 :e-trunc";
        let l = parse(text.as_bytes(), "u").unwrap();
        let uids: Vec<u32> = l.entries.iter().map(|e| e.uid).collect();
        assert_eq!(uids, vec![1, 3, 4]);
        let whats: Vec<&str> = l.problems.iter().map(|p| p.what.as_str()).collect();
        assert_eq!(whats, vec!["u:3", "u:4", "u:6", "u"], "{:?}", l.problems);
        for bad in ["", "garbage\n", "3 N5\n", "3 V0 N1\n", "2 V1 N1\n", "3 V1 N1"] {
            assert!(parse(bad.as_bytes(), "u").is_err(), "{bad:?}");
        }
    }

    #[test]
    fn written_lists_parse_back() {
        let text = write(42, 10, [0xab; 16], [(1, "a,S=1"), (9, "b,S=2")]);
        assert!(text.starts_with("3 V42 N10 Gabab"));
        let l = parse(text.as_bytes(), "u").unwrap();
        assert_eq!((l.uid_validity, l.next_uid, l.entries.len(), l.problems.len()), (42, 10, 2, 0));
    }
}
