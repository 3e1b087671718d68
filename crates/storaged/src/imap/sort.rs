//! SORT (RFC 5256 §2–3, and RFC 5957's DISPLAYFROM and DISPLAYTO): each message's sort keys,
//! taken from its header (the header cache serves it; no message file is read) and its index
//! entry, the base subject, and the order. Pure.
//!
//! Bounded: a subject or display name is cut to [`KEY_MAX_BYTES`] before it is worked on, so
//! a 1 MiB subject costs what a short one does; every step of the base-subject extraction
//! removes text, so it is linear in what is kept.

use std::cmp::Ordering;

use imap_codec::imap_types::extensions::sort::{SortCriterion, SortKey};
use mail_parser::MessageParser;

use super::address::{self, Entry};
use super::header;

/// Bytes of a subject or name that take part in sorting.
pub const KEY_MAX_BYTES: usize = 2048;

/// One message's value for one criterion.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Key {
    Number(i64),
    Text(Vec<u8>),
}

/// `raw` (an unstructured header value, or a phrase) with its encoded words decoded.
pub fn decode_words(raw: &[u8]) -> String {
    let raw = &raw[..raw.len().min(KEY_MAX_BYTES * 4)];
    let fake = [b"Subject: ", raw, b"\r\n\r\n"].concat();
    let decoded = MessageParser::new().parse_headers(&fake).and_then(|m| m.subject().map(str::to_string));
    let mut text = decoded.unwrap_or_else(|| String::from_utf8_lossy(raw).into_owned());
    if text.len() > KEY_MAX_BYTES {
        let mut end = KEY_MAX_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// `s` without a leading `[blob]` and the white space after it, if it starts with one.
fn strip_blob(s: &str) -> Option<&str> {
    let rest = s.strip_prefix('[')?;
    let end = rest.find([']', '['])?;
    rest[end..].strip_prefix(']').map(str::trim_start)
}

/// `s` without a leading subj-refwd (`re`, `fw` or `fwd`, optional blob, `:`).
fn strip_refwd(s: &str) -> Option<&str> {
    let lower = s.get(..3).map(str::to_ascii_lowercase).unwrap_or_default();
    let word = if lower == "fwd" {
        3
    } else if lower.starts_with("re") || lower.starts_with("fw") {
        2
    } else {
        return None;
    };
    let rest = s[word..].trim_start();
    let rest = strip_blob(rest).unwrap_or(rest);
    rest.strip_prefix(':')
}

/// `s` without one subj-leader: blobs followed by a subj-refwd, or leading white space.
fn strip_leader(s: &str) -> Option<&str> {
    if s.starts_with([' ', '\t']) {
        return Some(s.trim_start());
    }
    let mut rest = s;
    loop {
        if let Some(after) = strip_refwd(rest) {
            return Some(after);
        }
        rest = strip_blob(rest)?;
    }
}

/// The base subject of RFC 5256 §2.1, upper-cased for `i;ascii-casemap` comparison.
pub fn base_subject(decoded: &str) -> String {
    base_subject_of(decoded).0
}

/// The base subject, and whether the subject was a reply or forward (a `re:`/`fwd:`
/// leader, a `(fwd)` trailer or a `[fwd: ...]` wrapper was removed), which THREAD asks.
pub fn base_subject_of(decoded: &str) -> (String, bool) {
    // (1) White space runs become one space.
    let mut s: String = decoded.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut reply = false;
    loop {
        // (2) Trailing "(fwd)" and white space.
        let mut t = s.as_str();
        loop {
            let trimmed = t.trim_end();
            let without = trimmed.len().checked_sub(5).filter(|at| trimmed.is_char_boundary(*at));
            match without {
                Some(at) if trimmed[at..].eq_ignore_ascii_case("(fwd)") => {
                    t = &trimmed[..at];
                    reply = true;
                }
                _ => {
                    t = trimmed;
                    break;
                }
            }
        }
        // (3)-(5) Leaders, and a leading blob when something follows it.
        loop {
            if let Some(after) = strip_leader(t) {
                reply |= !t.starts_with([' ', '\t']);
                t = after;
                continue;
            }
            match strip_blob(t) {
                Some(after) if !after.is_empty() => t = after,
                _ => break,
            }
        }
        // (6) A "[fwd: ...]" wrapper: unwrap and start over.
        let wrapped = t.len() >= 6 && t.get(..5).is_some_and(|p| p.eq_ignore_ascii_case("[fwd:")) && t.ends_with(']');
        if wrapped {
            s = t[5..t.len() - 1].to_string();
            reply = true;
            continue;
        }
        return (t.to_ascii_uppercase(), reply);
    }
}

/// The first address of field `name`: a mailbox, or a group's start, whose name stands in
/// for the mailbox (IMAP's address structure for a group has the name as its mailbox).
fn first_address(header: &[u8], name: &[u8]) -> Option<Entry> {
    let value = header::values(header, name).into_iter().next()?;
    address::parse(&value).into_iter().next()
}

/// The sent date of RFC 5256 §2.2 (the Date header in UTC), else the internal date.
pub fn sent_or_arrival(hdr: &[u8], internal_date: i64) -> i64 {
    let fake = [hdr, b"\r\n"].concat();
    MessageParser::new().parse_headers(&fake).and_then(|m| m.date().map(|d| d.to_timestamp())).unwrap_or(internal_date)
}

/// DISPLAYFROM/DISPLAYTO (RFC 5957 §3): the decoded display name of the first address, or
/// its address when it has none, lower-cased for comparison.
fn display(hdr: &[u8], field: &[u8]) -> Vec<u8> {
    let m = match first_address(hdr, field) {
        Some(Entry::Mailbox(m)) => m,
        Some(Entry::GroupStart(name)) => return decode_words(&name).to_lowercase().into_bytes(),
        Some(Entry::GroupEnd) | None => return Vec::new(),
    };
    let name = m.name.as_deref().map(decode_words).filter(|n| !n.trim().is_empty());
    let text = name.unwrap_or_else(|| {
        let mut a = String::from_utf8_lossy(&m.local).into_owned();
        if let Some(d) = &m.domain {
            a.push('@');
            a.push_str(&String::from_utf8_lossy(d));
        }
        a
    });
    text.to_lowercase().into_bytes()
}

/// One message's key for `key`: from its header `hdr`, size and internal date.
pub fn key_of(key: &SortKey, hdr: &[u8], size: u64, internal_date: i64) -> Key {
    let mailbox = |field: &[u8]| {
        Key::Text(match first_address(hdr, field) {
            Some(Entry::Mailbox(m)) => m.local.to_ascii_uppercase(),
            Some(Entry::GroupStart(name)) => name.to_ascii_uppercase(),
            Some(Entry::GroupEnd) | None => Vec::new(),
        })
    };
    match key {
        SortKey::Arrival => Key::Number(internal_date),
        SortKey::Date => Key::Number(sent_or_arrival(hdr, internal_date)),
        SortKey::Size => Key::Number(size as i64),
        SortKey::Cc => mailbox(b"Cc"),
        SortKey::From => mailbox(b"From"),
        SortKey::To => mailbox(b"To"),
        SortKey::Subject => {
            let raw = header::values(hdr, b"Subject").into_iter().next().unwrap_or_default();
            Key::Text(base_subject(&decode_words(&raw)).into_bytes())
        }
        SortKey::DisplayFrom => Key::Text(display(hdr, b"From")),
        SortKey::DisplayTo => Key::Text(display(hdr, b"To")),
    }
}

/// Whether the criteria need the header (only ARRIVAL and SIZE do not).
pub fn needs_header(criteria: &[SortCriterion]) -> bool {
    criteria.iter().any(|c| !matches!(c.key, SortKey::Arrival | SortKey::Size))
}

/// Order `messages` (in mailbox order, each with one key per criterion) by `criteria`; ties
/// keep mailbox order (RFC 5256 §3). Returns indexes into `messages`.
pub fn order(criteria: &[SortCriterion], messages: &[Vec<Key>]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..messages.len()).collect();
    idx.sort_by(|&a, &b| {
        for (k, c) in criteria.iter().enumerate() {
            let o = messages[a][k].cmp(&messages[b][k]);
            let o = if c.reverse { o.reverse() } else { o };
            if o != Ordering::Equal {
                return o;
            }
        }
        Ordering::Equal
    });
    idx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc5256_2_1_base_subjects() {
        let base = |s: &str| base_subject(&decode_words(s.as_bytes()));
        assert_eq!(base("Re: [FWD: c]"), "C");
        assert_eq!(base("[foo] Fwd: [bar] Re: fw: b (fWd)  (fwd)"), "B");
        assert_eq!(base("re: [fwd: [fwd: re: [fwd: babylon]]]"), "BABYLON");
        assert_eq!(base("[xyz]"), "[XYZ]", "a blob alone stays");
        assert_eq!(base("=?iso-8859-1?q?RE:_C?="), "C", "encoded words first");
        assert_eq!(base("=?us-ascii?b?UmU6IGM=?="), "C");
        assert_eq!(base("Ad: Re: Ad: Re: Ad: x"), "AD: RE: AD: RE: AD: X", "only re, fw and fwd are leaders");
        assert_eq!(base("b (a)"), "B (A)");
        assert_eq!(base("  spaced \t  out  "), "SPACED OUT");
        assert_eq!(base(""), "");
    }

    #[test]
    fn hostile_subjects_cost_little() {
        let nested = "Re: [x] ".repeat(10_000) + "end";
        let started = std::time::Instant::now();
        let base = base_subject(&decode_words(nested.as_bytes()));
        assert!(base.len() < 8, "cut to the key bound, leaders stripped: {base:?}");
        let huge = "x".repeat(1 << 20);
        assert_eq!(base_subject(&decode_words(huge.as_bytes())).len(), KEY_MAX_BYTES);
        assert!(started.elapsed() < std::time::Duration::from_secs(5), "{:?}", started.elapsed());
    }

    #[test]
    fn rfc5256_3_keys_reverse_and_ties_in_mailbox_order() {
        let hdr = b"From: Ann Smith <ann@example.org>\r\nTo: =?utf-8?q?Zo=C3=AB?= <z@x>\r\nCc: bob@x\r\nDate: Sat, 24 Mar 2007 23:00:00 +0200\r\n\r\n";
        assert_eq!(key_of(&SortKey::From, hdr, 0, 0), Key::Text(b"ANN".to_vec()));
        assert_eq!(key_of(&SortKey::Cc, hdr, 0, 0), Key::Text(b"BOB".to_vec()));
        let group = b"To: z: aa@aa.org;\r\nCc: user2: blah@domain1.org;\r\n\r\n";
        assert_eq!(key_of(&SortKey::Cc, group, 0, 0), Key::Text(b"USER2".to_vec()), "a group's name is its mailbox");
        assert_eq!(key_of(&SortKey::DisplayTo, group, 0, 0), Key::Text(b"z".to_vec()));
        assert_eq!(key_of(&SortKey::DisplayTo, b"To: d\r\n\r\n", 0, 0), Key::Text(b"d".to_vec()));
        assert_eq!(key_of(&SortKey::DisplayFrom, hdr, 0, 0), Key::Text(b"ann smith".to_vec()));
        assert_eq!(key_of(&SortKey::DisplayTo, hdr, 0, 0), Key::Text("zoë".as_bytes().to_vec()));
        assert_eq!(key_of(&SortKey::Date, hdr, 0, 7), Key::Number(1_174_770_000));
        assert_eq!(key_of(&SortKey::Date, b"Subject: x\r\n\r\n", 0, 7), Key::Number(7), "no Date: the arrival");
        let size = |reverse| SortCriterion { reverse, key: SortKey::Size };
        let msgs = vec![vec![Key::Number(3)], vec![Key::Number(1)], vec![Key::Number(3)]];
        assert_eq!(order(&[size(false)], &msgs), [1, 0, 2]);
        assert_eq!(order(&[size(true)], &msgs), [0, 2, 1], "ties stay in mailbox order when reversed too");
    }
}
