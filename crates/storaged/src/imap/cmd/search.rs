//! SEARCH, SORT and THREAD (RFC 3501 §6.4.4, RFC 4731, RFC 5182, RFC 5256, RFC 5267): the
//! matching over the selected mailbox, the answers in their several forms (SEARCH, ESEARCH,
//! SORT, THREAD, ESORT), and the searches kept up to date (CONTEXT=SEARCH).

use super::super::*;
use crate::imap::backend::Backend;
use crate::imap::encode;
use crate::imap::search::{self, Candidate, Text};
use crate::imap::view::Sync;
use crate::mailstore::index::{MailboxIndex, MessageMeta};
use imap_codec::imap_types::core::Charset;
use imap_codec::imap_types::extensions::sort::SortCriterion;
use imap_codec::imap_types::extensions::thread::ThreadingAlgorithm;
use imap_codec::imap_types::search::SearchKey;
use std::sync::Arc;

/// One message a search matched.
#[derive(Debug, Clone, Copy)]
struct Hit {
    seq: u32,
    uid: u32,
    modseq: u64,
}

/// SEARCH, SORT and THREAD take UTF-8 and US-ASCII (RFC 3501 §6.4.4 requires US-ASCII).
fn check_charset(charset: Option<&imap_codec::imap_types::core::Charset<'_>>) -> Result<(), Refusal> {
    use imap_codec::imap_types::core::Charset;
    let Some(c) = charset else { return Ok(()) };
    let name = match c {
        Charset::Atom(a) => a.as_ref().to_string(),
        Charset::Quoted(q) => q.as_ref().to_string(),
    };
    if name.eq_ignore_ascii_case("UTF-8") || name.eq_ignore_ascii_case("US-ASCII") {
        Ok(())
    } else {
        Err(Refusal::No("[BADCHARSET (UTF-8 US-ASCII)] unsupported charset".into()))
    }
}

/// An ESEARCH response (RFC 4731) for `hits` (ascending), with the requested options.
fn esearch(tag: &str, uid: bool, options: &[String], hits: &[u32], modseqs: Option<&[u64]>) -> String {
    let mut out = format!("* ESEARCH (TAG \"{tag}\"){}", if uid { " UID" } else { "" });
    let all = options.is_empty();
    let wants = |o: &str| options.iter().any(|x| x == o);
    if let (Some(min), true) = (hits.first(), wants("MIN")) {
        out.push_str(&format!(" MIN {min}"));
    }
    if let (Some(max), true) = (hits.last(), wants("MAX")) {
        out.push_str(&format!(" MAX {max}"));
    }
    if wants("COUNT") {
        out.push_str(&format!(" COUNT {}", hits.len()));
    }
    let partial = options.iter().position(|o| o == "PARTIAL").and_then(|at| options.get(at + 1));
    if let Some(range) = partial.and_then(|r| crate::imap::context::parse_partial(r)) {
        out.push(' ');
        out.push_str(&crate::imap::context::partial(hits, range));
    }
    if (all || wants("ALL")) && !hits.is_empty() {
        out.push_str(&format!(" ALL {}", encode::uid_set(hits)));
    }
    // RFC 7162 §3.1.5: the highest mod-sequence of the messages returned, so with MIN and/or
    // MAX alone only theirs count.
    let only_ends = !all && !wants("ALL") && !wants("COUNT");
    let returned = match modseqs {
        Some(ms) if only_ends => [wants("MIN").then(|| ms.first()), wants("MAX").then(|| ms.last())]
            .into_iter()
            .flatten()
            .flatten()
            .max()
            .copied(),
        Some(ms) => ms.iter().max().copied(),
        None => None,
    };
    if let Some(m) = returned {
        out.push_str(&format!(" MODSEQ {m}"));
    }
    out
}

/// What `SEARCH RETURN (SAVE ...)` keeps of `uids` (ascending): only the lowest and/or
/// highest when MIN/MAX are asked for without ALL or COUNT (RFC 5182 §2.1), else all.
fn saved_part(uids: &[u32], options: &[String]) -> Vec<u32> {
    let wants = |o: &str| options.iter().any(|x| x == o);
    if (wants("MIN") || wants("MAX")) && !wants("ALL") && !wants("COUNT") {
        let min = uids.first().copied().filter(|_| wants("MIN"));
        let max = uids.last().copied().filter(|u| wants("MAX") && min != Some(*u));
        return min.into_iter().chain(max).collect();
    }
    uids.to_vec()
}

impl<B: Backend> Session<B> {
    /// Bring every kept search up to date (CONTEXT=SEARCH): ADDTO and REMOVEFROM for what
    /// the mailbox's changes did to its result. A search that cannot run now (a message
    /// unreadable) is tried again at the next change.
    pub(in crate::imap::session) fn refresh_contexts(&mut self, out: &mut Vec<u8>) {
        let Some(view) = self.view.as_ref().filter(|_| !self.contexts.is_empty()) else { return };
        let Ok(idx) = self.index_of(&view.mailbox) else { return };
        let mut contexts = std::mem::take(&mut self.contexts);
        for c in &mut contexts {
            let hits = match &c.sort {
                Some(sort) => self.sorted_hits(sort, &c.criteria, &idx),
                None => self.matching(&c.criteria, &idx),
            };
            let Ok(hits) = hits else { continue };
            let Ok(view) = self.selected() else { break };
            for l in c.refresh(hits.iter().map(|h| h.uid).collect(), |u| view.seq_of(u).map(|s| s as u32)) {
                line(out, &l);
            }
        }
        self.contexts = contexts;
    }

    /// The messages of the selected mailbox (as the client knows them) that match every
    /// criterion, in mailbox order. A message that cannot be read fails the command (as
    /// FETCH would) rather than silently not matching.
    fn matching(&self, criteria: &[SearchKey<'_>], idx: &MailboxIndex) -> Result<Vec<Hit>, Refusal> {
        let view = self.selected()?;
        let max_seq = view.exists() as u32;
        let max_uid = view.uids().last().copied().unwrap_or(0);
        let (user, mbox, backend) = (self.user(), &view.mailbox, self.backend());
        // Header keys of fields SORT keeps read those (kept on disk too), not the headers.
        let need = criteria.iter().map(search::header_need).max().unwrap_or(search::HeaderNeed::None);
        let fields = if need == search::HeaderNeed::SortFields {
            let metas: Vec<&MessageMeta> =
                view.uids().iter().filter_map(|u| idx.position(*u).map(|p| &idx.messages[p])).collect();
            let found = backend.sort_fields(user, mbox, idx, &metas)?;
            metas.iter().map(|m| m.uid).zip(found).collect()
        } else {
            std::collections::HashMap::new()
        };
        let mut hits = Vec::new();
        for (i, u) in view.uids().iter().enumerate() {
            // Expunged meanwhile (not yet announced): it matches nothing.
            let Some(meta) = idx.position(*u).map(|p| &idx.messages[p]) else { continue };
            let c = Candidate { seq: i as u32 + 1, meta, max_seq, max_uid, recent: view.is_recent(*u) };
            let failed = std::cell::RefCell::new(None);
            let mut load_header = || match fields.get(u) {
                Some(kept) => kept.clone(),
                None => keep_read(&failed, backend.header(user, mbox, meta)),
            };
            let mut load_full = || keep_read(&failed, backend.message(user, mbox, *u));
            let mut text = Text::new(&mut load_header, &mut load_full);
            let matched = criteria.iter().all(|k| search::matches(k, &c, &mut text));
            if let Some(e) = failed.into_inner() {
                tracing::error!(uid = u, error = %e, "SEARCH: message unreadable");
                return Err(e.into());
            }
            if matched {
                hits.push(Hit { seq: c.seq, uid: *u, modseq: meta.modseq });
            }
        }
        Ok(hits)
    }

    /// SEARCH (RFC 3501 §6.4.4) with ESEARCH RETURN options (RFC 4731) and SAVE (RFC 5182).
    pub(in crate::imap::session) fn search_command(
        &mut self,
        tag: &str,
        charset: Option<Charset<'_>>,
        criteria: &[SearchKey<'_>],
        uid: bool,
        extras: Extras,
        out: &mut Vec<u8>,
    ) -> Answer {
        check_charset(charset.as_ref())?;
        let saves = extras.search_return.as_ref().is_some_and(|(_, o)| o.iter().any(|x| x == "SAVE"));
        let result = self.search(tag, criteria, uid, extras.search_return, out);
        if result.is_err() && saves {
            // A failed SEARCH that was to save leaves `$` empty (RFC 5182 §2.1).
            self.saved.clear();
        }
        result
    }

    /// SORT (RFC 5256 §3) and ESORT (RFC 5267).
    pub(in crate::imap::session) fn sort_command(
        &mut self,
        charset: &Charset<'_>,
        criteria: &[SortCriterion],
        search_criteria: &[SearchKey<'_>],
        uid: bool,
        extras: Extras,
        out: &mut Vec<u8>,
    ) -> Answer {
        check_charset(Some(charset))?;
        self.sort(criteria, search_criteria, uid, extras.search_return, out)
    }

    /// THREAD (RFC 5256 §4).
    pub(in crate::imap::session) fn thread_command(
        &mut self,
        algorithm: &ThreadingAlgorithm<'_>,
        charset: &Charset<'_>,
        search_criteria: &[SearchKey<'_>],
        uid: bool,
        out: &mut Vec<u8>,
    ) -> Answer {
        check_charset(Some(charset))?;
        self.thread(algorithm, search_criteria, uid, out)
    }

    fn sort(
        &mut self,
        criteria: &[SortCriterion],
        search_criteria: &[SearchKey<'_>],
        uid: bool,
        returned: Option<(String, Vec<String>)>,
        out: &mut Vec<u8>,
    ) -> Result<(String, Outcome), Refusal> {
        self.sync(out, if uid { Sync::Full } else { Sync::NoExpunge });
        let idx = self.index_of(&self.selected()?.mailbox)?;
        let ordered = self.sorted_hits(criteria, search_criteria, &idx)?;
        let sorted: Vec<u32> = ordered.iter().map(|h| if uid { h.uid } else { h.seq }).collect();
        // ESORT (RFC 5267 §3): the results as ESEARCH, MIN and MAX the first and last sorted.
        if let Some((tag, options)) = returned {
            line(out, &esearch(&tag, uid, &options, &sorted, None));
            if options.iter().any(|o| o == "UPDATE") {
                let order = ordered.iter().map(|h| h.uid).collect();
                if let Some(refused) = self.keep_context(&tag, uid, search_criteria, Some(criteria), order) {
                    return Ok((format!("{refused} SORT completed, not kept up to date"), Outcome::Continue));
                }
            }
            return Ok(("SORT completed".into(), Outcome::Continue));
        }
        let numbers: Vec<String> = sorted.iter().map(u32::to_string).collect();
        line(out, &format!("* SORT{}{}", if numbers.is_empty() { "" } else { " " }, numbers.join(" ")));
        Ok(("SORT completed".into(), Outcome::Continue))
    }

    /// The matches of `search_criteria` ordered by the sort criteria's keys (RFC 5256 §3),
    /// from the header cache.
    fn sorted_hits(
        &self,
        criteria: &[SortCriterion],
        search_criteria: &[SearchKey<'_>],
        idx: &MailboxIndex,
    ) -> Result<Vec<Hit>, Refusal> {
        let view = self.selected()?;
        let hits = self.matching(search_criteria, idx)?;
        let metas: Vec<&MessageMeta> =
            hits.iter().filter_map(|h| idx.position(h.uid).map(|p| &idx.messages[p])).collect();
        let empty: Arc<[u8]> = Arc::from(&b""[..]);
        let headers = if crate::imap::sort::needs_header(criteria) {
            self.backend().sort_fields(self.user(), &view.mailbox, idx, &metas)?
        } else {
            vec![None; metas.len()]
        };
        let keys: Vec<_> = metas
            .iter()
            .zip(headers)
            .map(|(meta, header)| {
                let header = header.unwrap_or_else(|| empty.clone());
                let key = |c: &SortCriterion| crate::imap::sort::key_of(&c.key, &header, meta.size, meta.internal_date);
                criteria.iter().map(key).collect()
            })
            .collect();
        // A message expunged meanwhile has no place in `metas` and none in the answer.
        let present: Vec<Hit> = hits.into_iter().filter(|h| idx.position(h.uid).is_some()).collect();
        Ok(crate::imap::sort::order(criteria, &keys).into_iter().map(|i| present[i]).collect())
    }

    /// Keep a search or sort up to date (RFC 5267 §4.1); the `[NOUPDATE]` code if it cannot be.
    fn keep_context(
        &mut self,
        tag: &str,
        uid: bool,
        criteria: &[SearchKey<'_>],
        sort: Option<&[SortCriterion]>,
        order: Vec<u32>,
    ) -> Option<String> {
        use crate::imap::context::{Context, CONTEXTS_MAX, SORT_CONTEXT_MESSAGES_MAX};
        use imap_codec::imap_types::ToStatic;
        let too_big = sort.is_some() && order.len() > SORT_CONTEXT_MESSAGES_MAX;
        if self.contexts.len() >= CONTEXTS_MAX || too_big {
            return Some(format!("[NOUPDATE \"{tag}\"]"));
        }
        let criteria = criteria.iter().map(|k| k.to_static()).collect();
        self.contexts.push(Context::new(tag.to_string(), uid, criteria, sort.map(<[_]>::to_vec), order));
        None
    }

    /// THREAD (RFC 5256 §4) over the matches, from the header cache.
    fn thread(
        &mut self,
        algorithm: &ThreadingAlgorithm<'_>,
        search_criteria: &[SearchKey<'_>],
        uid: bool,
        out: &mut Vec<u8>,
    ) -> Result<(String, Outcome), Refusal> {
        use crate::imap::thread::{message_ids, Message};
        let references = match algorithm {
            ThreadingAlgorithm::References => true,
            ThreadingAlgorithm::OrderedSubject => false,
            ThreadingAlgorithm::Other(a) => {
                return Err(Refusal::Bad(format!("unknown threading algorithm {}", a.as_ref())))
            }
        };
        self.sync(out, if uid { Sync::Full } else { Sync::NoExpunge });
        let view = self.selected()?;
        let idx = self.index_of(&view.mailbox)?;
        let hits = self.matching(search_criteria, &idx)?;
        let found: Vec<(&Hit, &MessageMeta)> =
            hits.iter().filter_map(|h| idx.position(h.uid).map(|p| (h, &idx.messages[p]))).collect();
        let metas: Vec<&MessageMeta> = found.iter().map(|(_, m)| *m).collect();
        let headers = self.backend().sort_fields(self.user(), &view.mailbox, &idx, &metas)?;
        let mut messages = Vec::with_capacity(hits.len());
        for ((h, meta), header) in found.into_iter().zip(headers) {
            let header = header.unwrap_or_else(|| Arc::from(&b""[..]));
            let field = |name: &[u8]| crate::imap::header::values(&header, name).into_iter().next().unwrap_or_default();
            let mut refs = message_ids(&field(b"References"));
            if refs.is_empty() {
                refs = message_ids(&field(b"In-Reply-To")).into_iter().take(1).collect();
            }
            messages.push(Message {
                number: if uid { h.uid } else { h.seq },
                message_id: message_ids(&field(b"Message-ID")).into_iter().next(),
                references: refs,
                subject: field(b"Subject"),
                sent: crate::imap::sort::sent_or_arrival(&header, meta.internal_date),
            });
        }
        let list = if references {
            crate::imap::thread::references(&messages)
        } else {
            crate::imap::thread::ordered_subject(&messages)
        };
        line(out, &format!("* THREAD{}{list}", if list.is_empty() { "" } else { " " }));
        Ok(("THREAD completed".into(), Outcome::Continue))
    }

    fn search(
        &mut self,
        tag: &str,
        criteria: &[SearchKey<'_>],
        uid: bool,
        returned: Option<(String, Vec<String>)>,
        out: &mut Vec<u8>,
    ) -> Result<(String, Outcome), Refusal> {
        if criteria.iter().any(search::uses_modseq) {
            self.enable_condstore(out);
        }
        self.sync(out, if uid { Sync::Full } else { Sync::NoExpunge });
        let idx = self.index_of(&self.selected()?.mailbox)?;
        let matched = self.matching(criteria, &idx)?;
        let hits: Vec<u32> = matched.iter().map(|h| if uid { h.uid } else { h.seq }).collect();
        let hit_uids: Vec<u32> = matched.iter().map(|h| h.uid).collect();
        let hit_modseqs: Vec<u64> = matched.iter().map(|h| h.modseq).collect();
        let list: Vec<String> = hits.iter().map(u32::to_string).collect();
        // RFC 7162 §3.1.5: a MODSEQ criterion adds the highest mod-sequence of the matches.
        let with_modseq = criteria.iter().any(search::uses_modseq);
        let modseq = match hit_modseqs.iter().max() {
            Some(max) if with_modseq => format!(" (MODSEQ {max})"),
            _ => String::new(),
        };
        // IMAP4rev2 answers every SEARCH with ESEARCH (RFC 9051 §6.4.4), `ALL` by default.
        let returned = returned.or_else(|| self.rev2.then(|| (tag.to_string(), Vec::new())));
        if let Some((tag, mut options)) = returned {
            if let Some(at) = options.iter().position(|o| o == "SAVE") {
                options.remove(at);
                self.saved = saved_part(&hit_uids, &options);
                if options.is_empty() {
                    // SAVE alone: the result is kept, not sent (RFC 5182 §2.1).
                    return Ok(("SEARCH completed (result saved)".into(), Outcome::Continue));
                }
            }
            line(out, &esearch(&tag, uid, &options, &hits, with_modseq.then_some(&hit_modseqs[..])));
            if options.iter().any(|o| o == "UPDATE") {
                if let Some(refused) = self.keep_context(&tag, uid, criteria, None, hit_uids) {
                    return Ok((format!("{refused} SEARCH completed, no more searches kept"), Outcome::Continue));
                }
            }
            return Ok(("SEARCH completed".into(), Outcome::Continue));
        }
        line(out, &format!("* SEARCH{}{}{modseq}", if list.is_empty() { "" } else { " " }, list.join(" ")));
        Ok(("SEARCH completed".into(), Outcome::Continue))
    }
}
