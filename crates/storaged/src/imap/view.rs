//! A session's view of its selected mailbox: the message sequence numbers it has told the
//! client about, and the flags it last reported. Other sessions and deliveries change the
//! mailbox underneath; [`View::sync`] turns the difference into the untagged responses the
//! client must see, and expunges are reported only where RFC 3501 §7.4.1 allows, so sequence
//! numbers stay stable in between. Pure.

use std::collections::{BTreeSet, HashMap};

use super::encode;
use crate::mailstore::index::{MailboxIndex, MessageMeta};
use crate::mailstore::MailboxName;

/// The selected mailbox as the client knows it.
#[derive(Debug)]
pub struct View {
    pub mailbox: MailboxName,
    pub read_only: bool,
    pub uid_validity: u32,
    pub uid_next: u32,
    /// UIDs by sequence number (index + 1), as last told to the client.
    uids: Vec<u32>,
    /// Flags last reported, by UID.
    known: HashMap<u32, (u8, Vec<String>)>,
    /// The mailbox's `applied_index` when last synced: unchanged means nothing to report.
    seen_applied: u64,
    /// The mailbox's `highest_modseq` when last synced: every flag change since gave its
    /// message a higher MODSEQ, so only those messages are compared (see [`View::sync`]).
    seen_modseq: u64,
    /// Expunges seen but not yet reported.
    held_back: bool,
    /// Report MODSEQ with flag changes (CONDSTORE enabled).
    pub condstore: bool,
    /// Report expunges as VANISHED (QRESYNC enabled, RFC 7162 §3.2.10).
    pub qresync: bool,
    /// UIDs that are `\Recent` in this session (it claimed them first; see `recent.rs`).
    recent: BTreeSet<u32>,
    /// Show `\Recent` in flag lists and send RECENT with EXISTS (IMAP4rev1; RFC 9051 has
    /// neither).
    pub recent_flag: bool,
    /// Keywords named in the FLAGS the client last heard (RFC 3501 §7.2.6): a keyword must
    /// be there before any message's flags show it, or clients that trust FLAGS lose it.
    announced: BTreeSet<String>,
}

/// Keywords a session announces in FLAGS: past this many, new ones are shown on messages
/// without growing FLAGS further (a mailbox with a keyword per message must not make every
/// flag change resend an unbounded list).
pub const KEYWORDS_ANNOUNCED_MAX: usize = 1024;

/// Which updates a sync may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sync {
    /// After NOOP, IDLE, CHECK, EXPUNGE and UID commands: everything, expunges included.
    Full,
    /// After FETCH, STORE, SEARCH by sequence number: no expunges (numbers must not shift).
    NoExpunge,
}

impl View {
    /// A new view of `index`, in which messages from UID `recent_from` up are recent;
    /// returns it and the SELECT/EXAMINE untagged responses.
    pub fn open(mailbox: MailboxName, read_only: bool, index: &MailboxIndex, recent_from: u32) -> (Self, Vec<String>) {
        let uids: Vec<u32> = index.messages.iter().map(|m| m.uid).collect();
        let recent: BTreeSet<u32> = uids.iter().copied().filter(|u| *u >= recent_from).collect();
        let known = index.messages.iter().map(|m| (m.uid, (m.flags, m.keywords.clone()))).collect();
        let first_unseen = index.messages.iter().position(|m| m.flags & crate::mailstore::ops::flag::SEEN == 0);
        let mut announced = BTreeSet::new();
        for k in index.messages.iter().flat_map(|m| &m.keywords) {
            if announced.len() < KEYWORDS_ANNOUNCED_MAX && !announced.contains(k) {
                announced.insert(k.clone());
            }
        }
        let [flags, permanent] = flags_lines(&announced, read_only);
        let mut out = vec![
            format!("* {} EXISTS", uids.len()),
            format!("* {} RECENT", recent.len()),
            flags,
            permanent,
            format!("* OK [UIDVALIDITY {}] UIDs valid", index.uid_validity),
            format!("* OK [UIDNEXT {}] predicted next UID", index.uid_next),
            format!("* OK [HIGHESTMODSEQ {}] highest", index.highest_modseq.max(1)),
        ];
        if let Some(p) = first_unseen {
            out.push(format!("* OK [UNSEEN {}] first unseen", p + 1));
        }
        let view = Self {
            mailbox,
            read_only,
            uid_validity: index.uid_validity,
            uid_next: index.uid_next,
            uids,
            known,
            seen_applied: index.applied_index,
            seen_modseq: index.highest_modseq,
            held_back: false,
            condstore: false,
            qresync: false,
            recent,
            recent_flag: true,
            announced,
        };
        (view, out)
    }

    /// The FLAGS and PERMANENTFLAGS lines to send before flags that show `keywords`, when
    /// one of them is new to the client; nothing otherwise.
    pub fn announce<'k>(&mut self, keywords: impl IntoIterator<Item = &'k String>) -> Vec<String> {
        announce(&mut self.announced, self.read_only, keywords)
    }

    pub fn exists(&self) -> usize {
        self.uids.len()
    }

    pub fn uids(&self) -> &[u32] {
        &self.uids
    }

    /// Whether `uid` is shown as `\Recent` in this session.
    pub fn shows_recent(&self, uid: u32) -> bool {
        self.recent_flag && self.recent.contains(&uid)
    }

    /// Whether `uid` is recent in this session (SEARCH RECENT, NEW, OLD).
    pub fn is_recent(&self, uid: u32) -> bool {
        self.recent.contains(&uid)
    }

    /// Sequence number of `uid`, if the client knows it.
    pub fn seq_of(&self, uid: u32) -> Option<usize> {
        self.uids.binary_search(&uid).ok().map(|i| i + 1)
    }

    /// Bring the view up to date with `index`, returning the untagged responses. New
    /// messages from UID `recent_from` up are recent in this session.
    ///
    /// Work is proportional to what changed, not to the mailbox: flags are compared only
    /// for the messages the mailbox's change log names since the last sync, and expunges
    /// are looked for only when the index holds fewer messages up to the last known UID
    /// than the view. When the log does not reach back that far (an index just read from
    /// its file, or more than `CHANGES_MAX` changes since), the messages above the last
    /// sync's MODSEQ are compared (every store change gives its message a MODSEQ above the
    /// mailbox's highest); a change that did not raise the highest MODSEQ (a move's
    /// `SyncMailbox` writes the source's) makes it compare every message.
    pub fn sync(&mut self, index: &MailboxIndex, mode: Sync, recent_from: u32) -> Vec<String> {
        let mut out = Vec::new();
        // Every change to a mailbox moves its applied index (and our own changes are
        // reported as they are made), so an unmoved index needs no work.
        if index.applied_index == self.seen_applied && index.uid_validity == self.uid_validity && !self.held_back {
            return out;
        }
        let last = self.uids.last().copied().unwrap_or(0);
        let known_live = index.messages.partition_point(|m| m.uid <= last);
        if mode == Sync::Full && known_live != self.uids.len() {
            self.report_expunges(index, &mut out);
        }
        let known = &index.messages[..known_live];
        match index.changes.changed_since(self.seen_applied) {
            Some(uids) => {
                let named = uids.into_iter().filter(|u| *u <= last).filter_map(|u| index.position(u));
                self.report_flags(named.map(|p| &index.messages[p]), &mut out);
            }
            None if index.highest_modseq > self.seen_modseq => {
                let seen = self.seen_modseq;
                self.report_flags(known.iter().filter(|m| m.modseq > seen), &mut out);
            }
            None => self.report_flags(known, &mut out),
        }
        self.report_new(&index.messages[known_live..], recent_from, &mut out);
        self.uid_next = index.uid_next;
        self.seen_applied = index.applied_index;
        self.seen_modseq = index.highest_modseq;
        // Expunges held back now must be reported at the next full sync.
        let last = self.uids.last().copied().unwrap_or(0);
        self.held_back =
            mode == Sync::NoExpunge && index.messages.partition_point(|m| m.uid <= last) != self.uids.len();
        out
    }

    /// `EXPUNGE` (highest first, so each number is still valid when announced) or
    /// `VANISHED` for every known UID the index no longer holds.
    fn report_expunges(&mut self, index: &MailboxIndex, out: &mut Vec<String>) {
        let mut vanished = Vec::new();
        for seq in (1..=self.uids.len()).rev() {
            let uid = self.uids[seq - 1];
            if index.position(uid).is_none() {
                if self.qresync {
                    vanished.push(uid);
                } else {
                    out.push(format!("* {seq} EXPUNGE"));
                }
                self.uids.remove(seq - 1);
                self.known.remove(&uid);
                self.recent.remove(&uid);
            }
        }
        if !vanished.is_empty() {
            vanished.reverse();
            out.push(format!("* VANISHED {}", encode::uid_set(&vanished)));
        }
    }

    /// A `FETCH (FLAGS)` for each of `candidates` (in UID order) whose flags differ from
    /// what the client last heard.
    fn report_flags<'m>(&mut self, candidates: impl IntoIterator<Item = &'m MessageMeta>, out: &mut Vec<String>) {
        for m in candidates {
            let Some(seq) = self.seq_of(m.uid) else { continue };
            if self.known.get(&m.uid).is_some_and(|(f, k)| *f == m.flags && *k == m.keywords) {
                continue;
            }
            out.extend(announce(&mut self.announced, self.read_only, &m.keywords));
            let modseq = if self.condstore { format!(" MODSEQ ({})", m.modseq) } else { String::new() };
            let recent = self.recent_flag && self.recent.contains(&m.uid);
            out.push(format!(
                "* {seq} FETCH (UID {} FLAGS {}{modseq})",
                m.uid,
                encode::flags_recent(m.flags, &m.keywords, recent)
            ));
            self.known.insert(m.uid, (m.flags, m.keywords.clone()));
        }
    }

    /// `EXISTS` (and `RECENT`) for messages above the last known UID.
    fn report_new(&mut self, new: &[MessageMeta], recent_from: u32, out: &mut Vec<String>) {
        if new.is_empty() {
            return;
        }
        out.extend(announce(&mut self.announced, self.read_only, new.iter().flat_map(|m| &m.keywords)));
        for m in new {
            self.uids.push(m.uid);
            self.known.insert(m.uid, (m.flags, m.keywords.clone()));
            if m.uid >= recent_from {
                self.recent.insert(m.uid);
            }
        }
        out.push(format!("* {} EXISTS", self.uids.len()));
        if self.recent_flag {
            out.push(format!("* {} RECENT", self.recent.len()));
        }
    }

    /// Record that flags of `uid` were just reported to the client (by FETCH/STORE).
    pub fn reported(&mut self, m: &MessageMeta) {
        self.known.insert(m.uid, (m.flags, m.keywords.clone()));
    }
}

/// Add `keywords` to those `announced`; the FLAGS and PERMANENTFLAGS lines if that grew it.
fn announce<'k>(
    announced: &mut BTreeSet<String>,
    read_only: bool,
    keywords: impl IntoIterator<Item = &'k String>,
) -> Vec<String> {
    let mut grew = false;
    for k in keywords {
        if announced.len() < KEYWORDS_ANNOUNCED_MAX && !announced.contains(k) {
            announced.insert(k.clone());
            grew = true;
        }
    }
    if grew {
        flags_lines(announced, read_only).to_vec()
    } else {
        Vec::new()
    }
}

/// `* FLAGS (...)` and `* OK [PERMANENTFLAGS (...)]` naming the system flags and `keywords`.
fn flags_lines(keywords: &BTreeSet<String>, read_only: bool) -> [String; 2] {
    let mut list = String::from("\\Answered \\Flagged \\Deleted \\Seen \\Draft");
    for k in keywords {
        list.push(' ');
        list.push_str(k);
    }
    let permanent = if read_only {
        "* OK [PERMANENTFLAGS ()] read-only".to_string()
    } else {
        format!("* OK [PERMANENTFLAGS ({list} \\*)] flags permitted")
    };
    [format!("* FLAGS ({list})"), permanent]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(uids: &[(u32, u8)]) -> MailboxIndex {
        let mut idx = MailboxIndex::new(7, 1);
        for (uid, flags) in uids {
            idx.messages.push(MessageMeta {
                uid: *uid,
                base: format!("m{uid}"),
                in_cur: false,
                flags: *flags,
                keywords: vec![],
                size: 10,
                internal_date: 0,
                // As the store does: a message's flags change with its MODSEQ.
                modseq: 1 + u64::from(*uid) + 1000 * u64::from(*flags),
                crc32c: 0,
                email_id: 0,
                saved_s: 0,
            });
        }
        idx.highest_modseq = idx.messages.iter().map(|m| m.modseq).max().unwrap_or(0) + 1;
        idx.uid_next = uids.last().map_or(1, |u| u.0 + 1);
        // Built by hand, not by the store: no change log (the scans are what is tested).
        idx.changes = Default::default();
        // As the store does: every different content comes with a different applied index.
        idx.applied_index = uids.iter().map(|(u, f)| u64::from(*u) * 31 + u64::from(*f)).sum();
        idx
    }

    #[test]
    fn expunges_wait_for_a_full_sync_and_count_down() {
        let (mut v, open) = View::open(MailboxName::inbox(), false, &index(&[(1, 0), (2, 0), (3, 0), (4, 1)]), 4);
        assert!(open.contains(&"* 4 EXISTS".to_string()) && open.contains(&"* 1 RECENT".to_string()));
        assert!(open.contains(&"* OK [UNSEEN 1] first unseen".to_string()));
        let after = index(&[(1, 0), (3, 0), (5, 0)]);
        // During FETCH/STORE/SEARCH: only the new message, numbers unchanged; it is recent
        // here when this session claimed it.
        assert_eq!(v.sync(&after, Sync::NoExpunge, 5), vec!["* 5 EXISTS", "* 2 RECENT"]);
        assert_eq!(v.seq_of(4), Some(4));
        assert!(v.shows_recent(5) && v.shows_recent(4) && !v.shows_recent(3));
        // NOOP: the expunges, highest first, then nothing new.
        assert_eq!(v.sync(&after, Sync::Full, 6), vec!["* 4 EXPUNGE", "* 2 EXPUNGE"]);
        assert_eq!(v.uids(), &[1, 3, 5]);
        assert!(v.sync(&after, Sync::Full, 6).is_empty());
        assert!(!v.is_recent(4), "an expunged message is no longer recent");
    }

    #[test]
    fn flag_changes_by_others_are_reported_once() {
        let (mut v, _) = View::open(MailboxName::inbox(), false, &index(&[(1, 0), (2, 0)]), 2);
        let changed = index(&[(1, 0), (2, crate::mailstore::ops::flag::SEEN)]);
        assert_eq!(v.sync(&changed, Sync::NoExpunge, 3), vec!["* 2 FETCH (UID 2 FLAGS (\\Recent \\Seen))"]);
        assert!(v.sync(&changed, Sync::NoExpunge, 3).is_empty());
    }

    #[test]
    fn rfc3501_7_2_6_new_keywords_are_announced_in_flags_before_they_are_shown() {
        let mut idx = index(&[(1, 0)]);
        idx.messages[0].keywords = vec!["$Old".into()];
        let (mut v, open) = View::open(MailboxName::inbox(), false, &idx, 2);
        assert!(open.contains(&"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Old)".to_string()), "{open:?}");
        let mut changed = idx.clone();
        changed.messages[0].keywords = vec!["$Old".into(), "$New".into()];
        changed.applied_index += 1;
        changed.highest_modseq += 1;
        changed.messages[0].modseq = changed.highest_modseq;
        let out = v.sync(&changed, Sync::NoExpunge, 2);
        assert_eq!(out[0], "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $New $Old)");
        assert!(out[1].starts_with("* OK [PERMANENTFLAGS (") && out[1].contains("$New $Old \\*)"), "{out:?}");
        assert!(out[2].starts_with("* 1 FETCH (UID 1 FLAGS ("), "{out:?}");
        assert!(v.announce(&vec!["$New".to_string()]).is_empty(), "announced once");
    }

    /// The incremental path (MODSEQ above the last sync) and the full comparison (a change
    /// that wrote a lower MODSEQ, as a move's sync does) report the same, once.
    #[test]
    fn flag_changes_are_found_by_modseq_and_without_it() {
        let many: Vec<(u32, u8)> = (1..=1000).map(|u| (u, 0)).collect();
        let (mut v, _) = View::open(MailboxName::inbox(), false, &index(&many), 2000);
        let mut changed = index(&many);
        changed.messages[499].flags = crate::mailstore::ops::flag::SEEN;
        changed.highest_modseq += 1;
        changed.messages[499].modseq = changed.highest_modseq;
        changed.applied_index += 1;
        assert_eq!(v.sync(&changed, Sync::NoExpunge, 2000), vec!["* 500 FETCH (UID 500 FLAGS (\\Seen))"]);
        // A flag written with an older MODSEQ: the highest did not move, every message is compared.
        let mut lowered = changed.clone();
        lowered.messages[9].flags = crate::mailstore::ops::flag::FLAGGED;
        lowered.messages[9].modseq = 2;
        lowered.applied_index += 1;
        assert_eq!(v.sync(&lowered, Sync::Full, 2000), vec!["* 10 FETCH (UID 10 FLAGS (\\Flagged))"]);
        assert!(v.sync(&lowered, Sync::Full, 2000).is_empty());
        // An expunge among them and a new message, in one sync.
        let mut next = lowered.clone();
        next.messages.remove(0);
        next.messages.push(MessageMeta { uid: 1001, modseq: next.highest_modseq + 1, ..next.messages[0].clone() });
        next.highest_modseq += 2;
        next.applied_index += 1;
        assert_eq!(v.sync(&next, Sync::Full, 2000), vec!["* 1 EXPUNGE", "* 1000 EXISTS", "* 0 RECENT"]);
    }

    /// With the store's change log, only the messages it names are compared: a change the
    /// log does not name is not seen (which is why only the store writes it), one it names
    /// is reported once.
    #[test]
    fn the_change_log_names_what_to_compare() {
        let many: Vec<(u32, u8)> = (1..=100).map(|u| (u, 0)).collect();
        let mut idx = index(&many);
        idx.changes = crate::mailstore::index::ChangeLog::complete_after(idx.applied_index);
        let (mut v, _) = View::open(MailboxName::inbox(), false, &idx, 200);
        let before = idx.applied_index;
        idx.applied_index += 1;
        idx.highest_modseq += 1;
        idx.messages[41].flags = crate::mailstore::ops::flag::SEEN;
        idx.messages[41].modseq = idx.highest_modseq;
        idx.messages[7].flags = crate::mailstore::ops::flag::FLAGGED; // not in the log
        idx.changes.record(idx.applied_index, before, [42]);
        assert_eq!(v.sync(&idx, Sync::Full, 200), vec!["* 42 FETCH (UID 42 FLAGS (\\Seen))"]);
        assert!(v.sync(&idx, Sync::Full, 200).is_empty());
    }
}
