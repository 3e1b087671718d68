//! SEARCH evaluation and sequence-set resolution over a selected mailbox. Keys that need
//! the message load at most its header (header keys) or its text (BODY, TEXT), each at most
//! once per message. Pure.

use std::sync::Arc;

use imap_codec::imap_types::search::SearchKey;
use imap_codec::imap_types::sequence::{SeqOrUid, Sequence, SequenceSet};

use crate::mailstore::index::MessageMeta;
use crate::mailstore::ops::flag;

/// Whether `n` is in `set`, where `*` stands for `max`.
pub fn in_set(set: &SequenceSet, n: u32, max: u32) -> bool {
    let value = |v: &SeqOrUid| match v {
        SeqOrUid::Value(x) => x.get(),
        SeqOrUid::Asterisk => max,
    };
    set.0.as_ref().iter().any(|s| match s {
        Sequence::Single(v) => value(v) == n,
        Sequence::Range(a, b) => {
            let (a, b) = (value(a), value(b));
            (a.min(b)..=a.max(b)).contains(&n)
        }
    })
}

/// Whether a set of message sequence numbers names a number beyond `exists` (or any
/// number at all in an empty mailbox): RFC 9051 §6.4 answers that with BAD.
pub fn names_missing_seq(set: &SequenceSet, exists: u32) -> bool {
    let beyond = |v: &SeqOrUid| match v {
        SeqOrUid::Value(x) => x.get() > exists,
        SeqOrUid::Asterisk => exists == 0,
    };
    set.0.as_ref().iter().any(|s| match s {
        Sequence::Single(v) => beyond(v),
        Sequence::Range(a, b) => beyond(a) || beyond(b),
    })
}

/// The `(seq, uid)` pairs a set names: by sequence number or, with `uid`, by UID.
/// An empty mailbox makes `*` name nothing.
pub fn resolve(set: &SequenceSet, uid: bool, uids: &[u32]) -> Vec<(u32, u32)> {
    let Some(&last_uid) = uids.last() else { return Vec::new() };
    let max = if uid { last_uid } else { uids.len() as u32 };
    uids.iter()
        .enumerate()
        .map(|(i, u)| (i as u32 + 1, *u))
        .filter(|(seq, u)| in_set(set, if uid { *u } else { *seq }, max))
        .collect()
}

/// One message as SEARCH sees it.
pub struct Candidate<'m> {
    pub seq: u32,
    pub meta: &'m MessageMeta,
    pub max_seq: u32,
    pub max_uid: u32,
    /// `\Recent` in the searching session.
    pub recent: bool,
}

/// Loads a message's header (through its ending blank line) or its whole text.
pub type Load<'f, T> = &'f mut dyn FnMut() -> Option<T>;

/// The message, loaded on first use: only the header while header keys suffice (it may come
/// from a cache), the whole text once a BODY or TEXT key needs it.
pub struct Text<'f> {
    load_header: Load<'f, Arc<[u8]>>,
    load_full: Load<'f, Vec<u8>>,
    header: Option<Option<Arc<[u8]>>>,
    full: Option<Option<Vec<u8>>>,
}

impl<'f> Text<'f> {
    pub fn new(load_header: Load<'f, Arc<[u8]>>, load_full: Load<'f, Vec<u8>>) -> Self {
        Self { load_header, load_full, header: None, full: None }
    }

    fn full(&mut self) -> Option<&[u8]> {
        if self.full.is_none() {
            self.full = Some((self.load_full)());
        }
        self.full.as_ref().and_then(|b| b.as_deref())
    }

    fn header(&mut self) -> Option<&[u8]> {
        if let Some(Some(full)) = &self.full {
            return Some(super::header::split(full).0);
        }
        if self.header.is_none() {
            self.header = Some((self.load_header)());
        }
        self.header.as_ref().and_then(|b| b.as_deref())
    }
}

/// Whether `hay` contains `needle`, ASCII case-insensitively. Linear in the haystack
/// (one lowered copy and a memmem search), whatever the needle.
fn contains_ci(hay: &[u8], needle: &[u8]) -> bool {
    if needle.is_empty() {
        return true;
    }
    let needle = needle.to_ascii_lowercase();
    memchr::memmem::find(&hay.to_ascii_lowercase(), &needle).is_some()
}

/// Whether some field `name` of `header` contains `value` (case-insensitive; unfolded).
fn header_has(header: &[u8], name: &[u8], value: &[u8]) -> bool {
    super::header::values(header, name).iter().any(|v| contains_ci(v, value))
}

/// Whether some address field `name` of `header` contains `value` (case-insensitive), as
/// its addresses read without comments (`name <local@domain>`, group names) or as written.
fn address_has(header: &[u8], name: &[u8], value: &[u8]) -> bool {
    super::header::values(header, name)
        .iter()
        .any(|v| contains_ci(v, value) || contains_ci(&super::address::search_text(&super::address::parse(v)), value))
}

fn date_of(secs: i64) -> chrono::NaiveDate {
    chrono::DateTime::from_timestamp(secs, 0).unwrap_or_default().date_naive()
}

/// The day a message was saved into its mailbox (RFC 8514 §4.3 compares days, as
/// INTERNALDATE's keys do); its internal date where the save date is not known.
pub fn saved_date(m: &MessageMeta) -> chrono::NaiveDate {
    date_of(if m.saved_s != 0 { m.saved_s } else { m.internal_date })
}

/// The day the `Date:` header names, as written there: RFC 3501 §6.4.4 compares SENTBEFORE,
/// SENTON and SENTSINCE "disregarding time and timezone", so 23:00 +0200 on the 24th is the
/// 24th, though it is the 24th at 21:00 in UTC.
fn sent_date(msg: &[u8]) -> Option<chrono::NaiveDate> {
    let parsed = super::fetch::parse_guarded(msg, true)?;
    let d = parsed.date()?;
    chrono::NaiveDate::from_ymd_opt(d.year.into(), d.month.into(), d.day.into())
}

/// Whether `key` has a MODSEQ criterion anywhere (RFC 7162).
pub fn uses_modseq(key: &SearchKey<'_>) -> bool {
    match key {
        SearchKey::ModSequence { .. } => true,
        SearchKey::And(keys) => keys.as_ref().iter().any(uses_modseq),
        SearchKey::Or(a, b) => uses_modseq(a) || uses_modseq(b),
        SearchKey::Not(k) => uses_modseq(k),
        _ => false,
    }
}

/// What of the message header a search reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum HeaderNeed {
    /// Nothing: flags, dates, sizes and the rest of the index suffice.
    None,
    /// Only fields SORT keeps ([`super::header::SORT_FIELDS`]): FROM, TO, CC, SUBJECT, the
    /// SENT* keys and HEADER of one of those fields, read from the kept sort fields.
    SortFields,
    /// The whole header (BCC, HEADER of another field) or the text (BODY, TEXT).
    Whole,
}

/// What of the header `key` reads.
pub fn header_need(key: &SearchKey<'_>) -> HeaderNeed {
    let kept = |name: &[u8]| super::header::SORT_FIELDS.iter().any(|f| f.eq_ignore_ascii_case(name));
    match key {
        SearchKey::From(_)
        | SearchKey::To(_)
        | SearchKey::Cc(_)
        | SearchKey::Subject(_)
        | SearchKey::SentBefore(_)
        | SearchKey::SentOn(_)
        | SearchKey::SentSince(_) => HeaderNeed::SortFields,
        SearchKey::Header(name, _) if kept(name.as_ref()) => HeaderNeed::SortFields,
        SearchKey::Header(..) | SearchKey::Bcc(_) | SearchKey::Body(_) | SearchKey::Text(_) => HeaderNeed::Whole,
        SearchKey::And(keys) => keys.as_ref().iter().map(header_need).max().unwrap_or(HeaderNeed::None),
        SearchKey::Or(a, b) => header_need(a).max(header_need(b)),
        SearchKey::Not(k) => header_need(k),
        _ => HeaderNeed::None,
    }
}

/// Whether message `c` matches `key`.
pub fn matches(key: &SearchKey<'_>, c: &Candidate<'_>, text: &mut Text<'_>) -> bool {
    let m = c.meta;
    let has = |bit: u8| m.flags & bit != 0;
    let body_has = |text: &mut Text<'_>, needle: &[u8], whole: bool| {
        text.full().is_some_and(|msg| {
            let hay = if whole { msg } else { super::header::split(msg).1 };
            contains_ci(hay, needle)
        })
    };
    match key {
        SearchKey::All => true,
        SearchKey::And(keys) => keys.as_ref().iter().all(|k| matches(k, c, text)),
        SearchKey::Or(a, b) => matches(a, c, text) || matches(b, c, text),
        SearchKey::Not(k) => !matches(k, c, text),
        SearchKey::SequenceSet(set) => in_set(set, c.seq, c.max_seq),
        SearchKey::Uid(set) => in_set(set, m.uid, c.max_uid),
        SearchKey::Answered => has(flag::ANSWERED),
        SearchKey::Unanswered => !has(flag::ANSWERED),
        SearchKey::Deleted => has(flag::DELETED),
        SearchKey::Undeleted => !has(flag::DELETED),
        SearchKey::Draft => has(flag::DRAFT),
        SearchKey::Undraft => !has(flag::DRAFT),
        SearchKey::Flagged => has(flag::FLAGGED),
        SearchKey::Unflagged => !has(flag::FLAGGED),
        SearchKey::Seen => has(flag::SEEN),
        SearchKey::Unseen => !has(flag::SEEN),
        SearchKey::Recent => c.recent,
        SearchKey::New => c.recent && !has(flag::SEEN),
        SearchKey::Old => !c.recent,
        SearchKey::Keyword(k) => m.keywords.iter().any(|x| x.eq_ignore_ascii_case(k.as_ref())),
        SearchKey::Unkeyword(k) => !m.keywords.iter().any(|x| x.eq_ignore_ascii_case(k.as_ref())),
        SearchKey::Larger(n) => m.size > u64::from(*n),
        SearchKey::Smaller(n) => m.size < u64::from(*n),
        SearchKey::Before(d) => date_of(m.internal_date) < *d.as_ref(),
        SearchKey::On(d) => date_of(m.internal_date) == *d.as_ref(),
        SearchKey::Since(d) => date_of(m.internal_date) >= *d.as_ref(),
        SearchKey::SentBefore(d) => text.header().and_then(sent_date).is_some_and(|s| s < *d.as_ref()),
        SearchKey::SentOn(d) => text.header().and_then(sent_date).is_some_and(|s| s == *d.as_ref()),
        SearchKey::SentSince(d) => text.header().and_then(sent_date).is_some_and(|s| s >= *d.as_ref()),
        SearchKey::Bcc(v) => text.header().is_some_and(|t| address_has(t, b"Bcc", v.as_ref())),
        SearchKey::Cc(v) => text.header().is_some_and(|t| address_has(t, b"Cc", v.as_ref())),
        SearchKey::From(v) => text.header().is_some_and(|t| address_has(t, b"From", v.as_ref())),
        SearchKey::To(v) => text.header().is_some_and(|t| address_has(t, b"To", v.as_ref())),
        SearchKey::Subject(v) => text.header().is_some_and(|t| header_has(t, b"Subject", v.as_ref())),
        SearchKey::Header(name, v) => text.header().is_some_and(|t| header_has(t, name.as_ref(), v.as_ref())),
        SearchKey::Body(v) => body_has(text, v.as_ref(), false),
        SearchKey::Text(v) => body_has(text, v.as_ref(), true),
        SearchKey::ModSequence { modseq, .. } => m.modseq >= *modseq,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use imap_codec::imap_types::core::Vec1;
    use std::num::NonZeroU32;

    fn set(parts: Vec<Sequence>) -> SequenceSet {
        SequenceSet(Vec1::try_from(parts).unwrap())
    }

    fn v(n: u32) -> SeqOrUid {
        SeqOrUid::Value(NonZeroU32::new(n).unwrap())
    }

    #[test]
    fn header_keys_of_kept_fields_read_only_those() {
        let a = |s: &str| imap_codec::imap_types::core::AString::try_from(s.to_string()).unwrap();
        let need = |k: &SearchKey<'_>| header_need(k);
        assert_eq!(need(&SearchKey::Seen), HeaderNeed::None);
        assert_eq!(need(&SearchKey::From(a("x"))), HeaderNeed::SortFields);
        assert_eq!(need(&SearchKey::Header(a("message-id"), a("x"))), HeaderNeed::SortFields);
        assert_eq!(need(&SearchKey::Header(a("X-Spam"), a("x"))), HeaderNeed::Whole);
        assert_eq!(need(&SearchKey::Bcc(a("x"))), HeaderNeed::Whole);
        let either = SearchKey::Or(Box::new(SearchKey::Subject(a("x"))), Box::new(SearchKey::Body(a("y"))));
        assert_eq!(need(&either), HeaderNeed::Whole, "the strongest need wins");
        assert_eq!(need(&SearchKey::Not(Box::new(SearchKey::Cc(a("x"))))), HeaderNeed::SortFields);
        // What the kept fields answer is what the whole header answers.
        let header = b"Received: x\r\nFrom: Ann <ann@example.org>\r\nX-Other: q\r\nSubject: Quarterly\r\n\r\n";
        let kept = super::super::header::only_fields(header, &super::super::header::SORT_FIELDS);
        for value in ["ann@example", "Ann", "nobody"] {
            assert_eq!(address_has(&kept, b"From", value.as_bytes()), address_has(header, b"From", value.as_bytes()));
        }
    }

    #[test]
    fn sets_resolve_by_number_and_uid() {
        let uids = [3, 7, 9, 20];
        let s = set(vec![Sequence::Single(v(2)), Sequence::Range(v(4), SeqOrUid::Asterisk)]);
        assert_eq!(resolve(&s, false, &uids), vec![(2, 7), (4, 20)]);
        let s = set(vec![Sequence::Range(v(8), SeqOrUid::Asterisk)]);
        assert_eq!(resolve(&s, true, &uids), vec![(3, 9), (4, 20)]);
        // `*:5` equals `5:*`; a UID range past the last UID still names the last message.
        assert_eq!(resolve(&set(vec![Sequence::Range(SeqOrUid::Asterisk, v(30))]), true, &uids), vec![(4, 20)]);
        assert!(resolve(&s, true, &[]).is_empty());
    }

    fn meta(uid: u32, flags: u8) -> MessageMeta {
        MessageMeta {
            uid,
            base: String::new(),
            in_cur: false,
            flags,
            keywords: vec!["$Work".into()],
            size: 100,
            internal_date: 86_400 * 365,
            modseq: 1,
            crc32c: 0,
            email_id: 0,
            saved_s: 0,
        }
    }

    #[test]
    fn keys_match_flags_text_and_combinations() {
        let m = meta(5, flag::SEEN);
        let c = Candidate { seq: 1, meta: &m, max_seq: 1, max_uid: 5, recent: false };
        let msg =
            b"From: Ann <ann@example.org>\r\nSubject: Quarterly\r\n report\r\n\r\nThe Budget is attached\r\n".to_vec();
        let (mut header_loads, mut loads) = (0, 0);
        let mut load_header = || {
            header_loads += 1;
            Some(Arc::from(crate::imap::header::split(&msg).0))
        };
        let mut load = || {
            loads += 1;
            Some(msg.clone())
        };
        let mut t = Text::new(&mut load_header, &mut load);
        let a = |s: &str| imap_codec::imap_types::core::AString::try_from(s.to_string()).unwrap();
        assert!(matches(&SearchKey::Seen, &c, &mut t));
        assert!(!matches(&SearchKey::Unseen, &c, &mut t));
        assert!(matches(&SearchKey::Subject(a("quarterly REPORT")), &c, &mut t));
        assert!(matches(&SearchKey::From(a("ann@example")), &c, &mut t));
        assert!(!matches(&SearchKey::Subject(a("budget")), &c, &mut t), "header keys do not search the body");
        assert!(matches(&SearchKey::Body(a("budget")), &c, &mut t));
        assert!(!matches(&SearchKey::Body(a("quarterly")), &c, &mut t), "BODY does not search the header");
        assert!(matches(&SearchKey::Text(a("quarterly")), &c, &mut t));
        let not_seen = SearchKey::Not(Box::new(SearchKey::Seen));
        assert!(matches(&SearchKey::Or(Box::new(not_seen), Box::new(SearchKey::Larger(50))), &c, &mut t));
        assert!(!matches(&SearchKey::Smaller(50), &c, &mut t));
        assert!(matches(&SearchKey::Subject(a("quarterly")), &c, &mut t), "the header comes from the loaded text");
        drop(t);
        assert_eq!((header_loads, loads), (1, 1), "the header and the text are each loaded once");
    }

    #[test]
    fn rfc3501_6_4_4_sent_dates_are_the_days_written_in_the_date_header() {
        let m = meta(1, 0);
        let c = Candidate { seq: 1, meta: &m, max_seq: 1, max_uid: 1, recent: false };
        // 23:00 +0200 on the 24th is 21:00 UTC on the 24th; 00:30 +0300 on the 25th is the
        // 24th in UTC: the day written is what counts, not the day in UTC.
        for (date, day) in [("Sat, 24 Mar 2007 23:00:00 +0200", 24), ("Sun, 25 Mar 2007 00:30:00 +0300", 25)] {
            let msg = format!("Date: {date}\r\nSubject: x\r\n\r\nbody\r\n").into_bytes();
            let mut load_header = || Some(Arc::from(crate::imap::header::split(&msg).0));
            let mut load = || Some(msg.clone());
            let mut t = Text::new(&mut load_header, &mut load);
            let on = |d: u32| {
                imap_codec::imap_types::datetime::NaiveDate::try_from(
                    chrono::NaiveDate::from_ymd_opt(2007, 3, d).unwrap(),
                )
                .unwrap()
            };
            assert!(matches(&SearchKey::SentOn(on(day)), &c, &mut t), "{date} is sent on the {day}th");
            assert!(!matches(&SearchKey::SentOn(on(day - 1)), &c, &mut t), "{date}");
            assert!(matches(&SearchKey::SentBefore(on(day + 1)), &c, &mut t), "{date}");
            assert!(!matches(&SearchKey::SentBefore(on(day)), &c, &mut t), "{date}");
            assert!(matches(&SearchKey::SentSince(on(day)), &c, &mut t), "{date}");
            assert!(!matches(&SearchKey::SentSince(on(day + 1)), &c, &mut t), "{date}");
        }
    }

    #[test]
    fn rfc3501_6_4_4_address_keys_match_addresses_without_comments_and_group_names() {
        let m = meta(1, 0);
        let c = Candidate { seq: 1, meta: &m, max_seq: 1, max_uid: 1, recent: false };
        let msg = b"From: <user-from (comment)@ (comment) domain.org>\r\n\
To: groupname: groupuser1@domain.org;, groupname2: groupuser3@domain.org;\r\n\
Cc: user-cc@domain.org (RealCc)\r\n\r\nbody\r\n"
            .to_vec();
        let mut load_header = || Some(Arc::from(crate::imap::header::split(&msg).0));
        let mut load = || Some(msg.clone());
        let mut t = Text::new(&mut load_header, &mut load);
        let a = |s: &str| imap_codec::imap_types::core::AString::try_from(s.to_string()).unwrap();
        assert!(matches(&SearchKey::From(a("user-from@domain.org")), &c, &mut t), "comments inside the address");
        assert!(matches(&SearchKey::To(a("groupname2")), &c, &mut t), "a group's name");
        assert!(matches(&SearchKey::To(a("groupuser3")), &c, &mut t));
        assert!(!matches(&SearchKey::To(a("groupuser4")), &c, &mut t));
        assert!(matches(&SearchKey::Cc(a("realcc <user-cc@")), &c, &mut t), "a comment names the mailbox");
        assert!(!matches(&SearchKey::Bcc(a("user")), &c, &mut t), "no Bcc field");
    }
}
