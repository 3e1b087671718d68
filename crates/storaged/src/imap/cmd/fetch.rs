//! FETCH, STORE and COPY/MOVE (RFC 3501 §6.4.5–6.4.8, RFC 3516 BINARY, RFC 6851 MOVE,
//! RFC 7162 CONDSTORE): the data items asked for, read once per message, the flag changes
//! committed through the group's log, and the copies with their COPYUID.

use super::super::*;
use crate::imap::backend::{Backend, BackendError};
use crate::imap::encode;
use crate::imap::fetch::{self, Section};
use crate::imap::preparse::FetchExtra;
use crate::imap::search::{self};
use crate::imap::view::Sync;
use crate::mailstore::index::{MailboxIndex, MessageMeta};
use crate::mailstore::ops::flag;
use crate::mailstore::{FlagMode, MailOp, MailResponse};
use common::clock::now_s;
use imap_codec::imap_types::command::{FetchModifier, StoreModifier};
use imap_codec::imap_types::fetch::{Macro, MacroOrMessageDataItemNames, MessageDataItemName};
use imap_codec::imap_types::flag::{Flag, StoreResponse, StoreType};
use imap_codec::imap_types::mailbox::Mailbox;
use imap_codec::imap_types::sequence::SequenceSet;
use std::collections::HashMap;
use std::sync::Arc;

/// One FETCH data item, resolved from imap-codec's names.
enum Item {
    Uid,
    Flags,
    InternalDate,
    Size,
    Envelope,
    ModSeq,
    /// `BINARY[part]<partial>` (RFC 3516): the part with its transfer encoding removed.
    Binary {
        part: Vec<u32>,
        partial: Option<(u32, u32)>,
        peek: bool,
    },
    BinarySize {
        part: Vec<u32>,
    },
    /// BODYSTRUCTURE (`true`) or BODY.
    Structure(bool),
    /// PREVIEW (RFC 8970); computed from the text even when LAZY.
    Preview,
    /// EMAILID and THREADID (RFC 8474); a thread is named by its root (`thread::thread_id`).
    EmailId,
    ThreadId,
    /// SAVEDATE (RFC 8514): when the message was saved into this mailbox, NIL if not known.
    SaveDate,
    /// `BODY[...]`/`BINARY`-less sections; `label` is what the response repeats.
    Section {
        section: Section,
        partial: Option<(u32, u32)>,
        peek: bool,
        label: String,
    },
}

/// How much of a message a FETCH item reads, least first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Need {
    Nothing,
    /// The header alone (possibly cached): ENVELOPE and the top-level header sections.
    Header,
    Full,
}

impl Item {
    fn needs(&self) -> Need {
        match self {
            Item::Uid
            | Item::Flags
            | Item::InternalDate
            | Item::Size
            | Item::ModSeq
            | Item::EmailId
            | Item::ThreadId
            | Item::SaveDate => Need::Nothing,
            Item::Envelope => Need::Header,
            Item::Section { section: Section::Header(p) | Section::HeaderFields { part: p, .. }, .. }
                if p.is_empty() =>
            {
                Need::Header
            }
            Item::Section { .. }
            | Item::Structure(_)
            | Item::Binary { .. }
            | Item::BinarySize { .. }
            | Item::Preview => Need::Full,
        }
    }
}

/// What a FETCH read of one message: the header suffices when every item is satisfied by
/// it (header sections give the same bytes whether cut from it or from the whole text).
enum Loaded {
    Nothing,
    Header(Arc<[u8]>),
    Full(Vec<u8>),
}

impl Loaded {
    fn bytes(&self) -> &[u8] {
        match self {
            Loaded::Nothing => &[],
            Loaded::Header(h) => h,
            Loaded::Full(t) => t,
        }
    }
}

fn items_of(names: MacroOrMessageDataItemNames<'_>) -> Result<Vec<Item>, Refusal> {
    let names = match names {
        MacroOrMessageDataItemNames::Macro(m) => {
            let mut v =
                vec![MessageDataItemName::Flags, MessageDataItemName::InternalDate, MessageDataItemName::Rfc822Size];
            if matches!(m, Macro::All | Macro::Full) {
                v.push(MessageDataItemName::Envelope);
            }
            if matches!(m, Macro::Full) {
                v.push(MessageDataItemName::Body);
            }
            v
        }
        MacroOrMessageDataItemNames::MessageDataItemNames(v) => v,
    };
    let mut items = Vec::new();
    for n in names {
        items.push(match n {
            MessageDataItemName::Uid => Item::Uid,
            MessageDataItemName::Flags => Item::Flags,
            MessageDataItemName::InternalDate => Item::InternalDate,
            MessageDataItemName::Rfc822Size => Item::Size,
            MessageDataItemName::Envelope => Item::Envelope,
            MessageDataItemName::ModSeq => Item::ModSeq,
            MessageDataItemName::Binary { section, partial, peek } => Item::Binary {
                part: section.iter().map(|n| n.get()).collect(),
                partial: partial.map(|(o, l)| (o, l.get())),
                peek,
            },
            MessageDataItemName::BinarySize { section } => {
                Item::BinarySize { part: section.iter().map(|n| n.get()).collect() }
            }
            MessageDataItemName::BodyStructure => Item::Structure(true),
            MessageDataItemName::Body => Item::Structure(false),
            MessageDataItemName::Rfc822 => {
                Item::Section { section: Section::Full, partial: None, peek: false, label: "RFC822".into() }
            }
            MessageDataItemName::Rfc822Header => Item::Section {
                section: Section::Header(vec![]),
                partial: None,
                peek: true,
                label: "RFC822.HEADER".into(),
            },
            MessageDataItemName::Rfc822Text => Item::Section {
                section: Section::Text(vec![]),
                partial: None,
                peek: false,
                label: "RFC822.TEXT".into(),
            },
            MessageDataItemName::BodyExt { section, partial, peek } => {
                let section = fetch_section(&section);
                let label = match partial {
                    Some((o, _)) => format!("BODY[{}]<{o}>", section_label(&section)),
                    None => format!("BODY[{}]", section_label(&section)),
                };
                Item::Section { section, partial: partial.map(|(o, l)| (o, l.get())), peek, label }
            }
        });
    }
    Ok(items)
}

impl<B: Backend> Session<B> {
    /// FETCH with its CONDSTORE/QRESYNC modifiers (RFC 7162 §3.1.4, §3.2.6).
    pub(in crate::imap::session) async fn fetch_command(
        &mut self,
        set: &SequenceSet,
        names: MacroOrMessageDataItemNames<'_>,
        extras: &[FetchExtra],
        uid: bool,
        modifiers: &[FetchModifier],
        out: &mut Vec<u8>,
    ) -> Answer {
        let mut changed_since = None;
        let mut vanished = false;
        for m in modifiers {
            match m {
                FetchModifier::ChangedSince(n) => changed_since = Some(n.get()),
                FetchModifier::Vanished => vanished = true,
            }
        }
        if vanished {
            // RFC 7162 §3.2.6: UID FETCH only, with CHANGEDSINCE, after ENABLE QRESYNC.
            let (true, true, Some(since)) = (self.qresync, uid, changed_since) else {
                return Err(Refusal::Bad("VANISHED needs QRESYNC, UID FETCH and CHANGEDSINCE".into()));
            };
            let view = self.selected()?;
            let idx = self.index_of(&view.mailbox)?;
            let gone = super::select::vanished_since(&idx, since, Some(set));
            if !gone.is_empty() {
                line(out, &format!("* VANISHED (EARLIER) {}", encode::uid_set(&gone)));
            }
        }
        let mut items = items_of(names)?;
        items.extend(extras.iter().map(|x| match x {
            FetchExtra::Preview { .. } => Item::Preview,
            FetchExtra::EmailId => Item::EmailId,
            FetchExtra::ThreadId => Item::ThreadId,
            FetchExtra::SaveDate => Item::SaveDate,
        }));
        self.fetch(set, items, uid, changed_since, out).await
    }

    async fn fetch(
        &mut self,
        set: &SequenceSet,
        mut items: Vec<Item>,
        uid: bool,
        changed_since: Option<u64>,
        out: &mut Vec<u8>,
    ) -> Answer {
        if uid && !items.iter().any(|i| matches!(i, Item::Uid)) {
            items.insert(0, Item::Uid);
        }
        // RFC 7162 §3.1: CHANGEDSINCE and MODSEQ turn CONDSTORE on; MODSEQ is then reported.
        if changed_since.is_some() || items.iter().any(|i| matches!(i, Item::ModSeq)) {
            self.enable_condstore(out);
        }
        if changed_since.is_some() && !items.iter().any(|i| matches!(i, Item::ModSeq)) {
            items.push(Item::ModSeq);
        }
        self.sync(out, if uid { Sync::Full } else { Sync::NoExpunge });
        self.check_seq_set(set, uid)?;
        let view = self.selected()?;
        let mut targets = search::resolve(set, uid, view.uids());
        // One snapshot of the index serves the whole FETCH unless \Seen has to be set first.
        let mut idx = self.index_of(&view.mailbox)?;
        if let Some(since) = changed_since {
            targets.retain(|(_, u)| idx.position(*u).is_some_and(|p| idx.messages[p].modseq > since));
        }
        // Reading a body without PEEK sets \Seen, committed before the data is sent.
        let sets_seen = !view.read_only
            && items.iter().any(|i| matches!(i, Item::Section { peek: false, .. } | Item::Binary { peek: false, .. }));
        let unseen: Vec<u32> = if sets_seen {
            targets
                .iter()
                .filter(|(_, u)| idx.position(*u).is_some_and(|p| idx.messages[p].flags & flag::SEEN == 0))
                .map(|(_, u)| *u)
                .collect()
        } else {
            Vec::new()
        };
        if !unseen.is_empty() {
            let op = MailOp::Store {
                user: self.user().as_str().into(),
                mailbox: view.mailbox.as_str().into(),
                uids: unseen,
                mode: FlagMode::Add,
                flags: flag::SEEN,
                keywords: vec![],
                unchanged_since: None,
            };
            self.propose(op).await?;
            if !items.iter().any(|i| matches!(i, Item::Flags)) {
                items.push(Item::Flags);
            }
            idx = self.index_of(&self.selected()?.mailbox)?;
        }
        if items.iter().any(|i| matches!(i, Item::Flags)) {
            let shown = targets.iter().filter_map(|(_, u)| idx.position(*u)).flat_map(|p| &idx.messages[p].keywords);
            for l in self.selected_mut()?.announce(shown) {
                line(out, &l);
            }
        }
        let threads = if items.iter().any(|i| matches!(i, Item::ThreadId)) {
            self.thread_ids(&idx, targets.iter().map(|(_, u)| *u))?
        } else {
            HashMap::new()
        };
        let view = self.selected()?;
        let mut missing = false;
        let mut unreadable: Option<Refusal> = None;
        let mut reported = Vec::new();
        let need = items.iter().map(Item::needs).max().unwrap_or(Need::Nothing);
        for (seq, u) in targets {
            let Some(meta) = idx.position(u).map(|p| &idx.messages[p]) else {
                missing = true;
                continue;
            };
            let loaded = match need {
                Need::Nothing => Ok(Some(Loaded::Nothing)),
                Need::Header => self.backend().header(self.user(), &view.mailbox, meta).map(|h| h.map(Loaded::Header)),
                Need::Full => self.backend().message(self.user(), &view.mailbox, u).map(|t| t.map(Loaded::Full)),
            };
            let text = match loaded {
                Ok(Some(t)) => t,
                Ok(None) => {
                    missing = true;
                    continue;
                }
                // Corrupt (fails its checksum): nothing of it is sent, and the client is
                // told, not led to believe it was expunged; the other messages still are.
                Err(e @ BackendError::Corrupt { .. }) => {
                    tracing::error!(uid = u, error = %e, "FETCH: message unreadable");
                    unreadable.get_or_insert(Refusal::from(e));
                    continue;
                }
                // Leadership lost or a transient failure: stop here and say so.
                Err(e) => return Err(e.into()),
            };
            let text = text.bytes();
            let source = fetch::Source::new(text);
            let mut resp = format!("* {seq} FETCH (").into_bytes();
            for (k, item) in items.iter().enumerate() {
                if k > 0 {
                    resp.push(b' ');
                }
                match item {
                    Item::Uid => resp.extend_from_slice(format!("UID {u}").as_bytes()),
                    Item::Flags => {
                        resp.extend_from_slice(
                            format!("FLAGS {}", encode::flags_recent(meta.flags, &meta.keywords, view.shows_recent(u)))
                                .as_bytes(),
                        );
                        reported.push(meta.clone());
                    }
                    Item::InternalDate => resp.extend_from_slice(
                        format!("INTERNALDATE {}", encode::internal_date(meta.internal_date)).as_bytes(),
                    ),
                    Item::Size => resp.extend_from_slice(format!("RFC822.SIZE {}", meta.size).as_bytes()),
                    Item::ModSeq => resp.extend_from_slice(format!("MODSEQ ({})", meta.modseq).as_bytes()),
                    Item::Envelope => {
                        resp.extend_from_slice(b"ENVELOPE ");
                        resp.extend_from_slice(&fetch::envelope(text));
                    }
                    Item::Binary { part, partial, .. } => {
                        let label = part.iter().map(u32::to_string).collect::<Vec<_>>().join(".");
                        let origin = partial.map(|(o, _)| format!("<{o}>")).unwrap_or_default();
                        resp.extend_from_slice(format!("BINARY[{label}]{origin} ").as_bytes());
                        match fetch::binary(&source, part) {
                            Ok(Some(bytes)) => {
                                let bytes = fetch::partial(bytes, *partial);
                                if bytes.contains(&0) {
                                    resp.push(b'~');
                                }
                                encode::literal(&mut resp, &bytes);
                            }
                            Ok(None) => resp.extend_from_slice(b"NIL"),
                            Err(fetch::UnknownCte(cte)) => {
                                return Err(Refusal::No(format!("[UNKNOWN-CTE] cannot decode {cte}")));
                            }
                        }
                    }
                    Item::BinarySize { part } => {
                        let label = part.iter().map(u32::to_string).collect::<Vec<_>>().join(".");
                        match fetch::binary(&source, part) {
                            Ok(Some(bytes)) => {
                                resp.extend_from_slice(format!("BINARY.SIZE[{label}] {}", bytes.len()).as_bytes())
                            }
                            Ok(None) => resp.extend_from_slice(format!("BINARY.SIZE[{label}] 0").as_bytes()),
                            Err(fetch::UnknownCte(cte)) => {
                                return Err(Refusal::No(format!("[UNKNOWN-CTE] cannot decode {cte}")));
                            }
                        }
                    }
                    Item::EmailId => resp.extend_from_slice(
                        format!("EMAILID ({})", email_id(meta.email_id(idx.uid_validity))).as_bytes(),
                    ),
                    Item::ThreadId => match threads.get(&u) {
                        Some(id) => resp.extend_from_slice(format!("THREADID ({id})").as_bytes()),
                        None => resp.extend_from_slice(b"THREADID NIL"),
                    },
                    Item::SaveDate if meta.saved_s == 0 => resp.extend_from_slice(b"SAVEDATE NIL"),
                    Item::SaveDate => {
                        resp.extend_from_slice(format!("SAVEDATE {}", encode::internal_date(meta.saved_s)).as_bytes())
                    }
                    Item::Preview => {
                        resp.extend_from_slice(b"PREVIEW ");
                        encode::string(&mut resp, crate::imap::preview::preview(text).as_bytes());
                    }
                    Item::Structure(ext) => {
                        resp.extend_from_slice(if *ext { b"BODYSTRUCTURE " } else { b"BODY " });
                        resp.extend_from_slice(&fetch::bodystructure(&source, *ext));
                    }
                    Item::Section { section, partial, label, .. } => {
                        resp.extend_from_slice(label.as_bytes());
                        resp.push(b' ');
                        match fetch::section(&source, section) {
                            Some(bytes) => encode::literal(&mut resp, &fetch::partial(bytes, *partial)),
                            None => resp.extend_from_slice(b"NIL"),
                        }
                    }
                }
            }
            resp.extend_from_slice(b")\r\n");
            out.extend_from_slice(&resp);
        }
        let view = self.selected_mut()?;
        for m in &reported {
            view.reported(m);
        }
        if let Some(refusal) = unreadable {
            return Err(refusal);
        }
        if missing {
            return Ok(("[EXPUNGEISSUED] some messages were expunged meanwhile".into(), Outcome::Continue));
        }
        Ok(("FETCH completed".into(), Outcome::Continue))
    }

    /// STORE, with UNCHANGEDSINCE (RFC 7162 §3.1.3).
    #[allow(clippy::too_many_arguments)]
    pub(in crate::imap::session) async fn store(
        &mut self,
        set: &SequenceSet,
        kind: StoreType,
        response: StoreResponse,
        flags: &[Flag<'_>],
        uid: bool,
        modifiers: &[StoreModifier],
        out: &mut Vec<u8>,
    ) -> Answer {
        let unchanged_since = modifiers.iter().map(|StoreModifier::UnchangedSince(n)| *n).next();
        if unchanged_since.is_some() {
            self.enable_condstore(out);
        }
        self.check_seq_set(set, uid)?;
        let view = self.selected()?;
        if view.read_only {
            return Err(Refusal::No("[READ-ONLY] mailbox is read-only".into()));
        }
        let targets = search::resolve(set, uid, view.uids());
        let (bits, keywords) = flags_of(flags);
        let mode = match kind {
            StoreType::Replace => FlagMode::Set,
            StoreType::Add => FlagMode::Add,
            StoreType::Remove => FlagMode::Remove,
        };
        let mut skipped = Vec::new();
        if !targets.is_empty() {
            let op = MailOp::Store {
                user: self.user().as_str().into(),
                mailbox: view.mailbox.as_str().into(),
                uids: targets.iter().map(|(_, u)| *u).collect(),
                mode,
                flags: bits,
                keywords,
                unchanged_since,
            };
            if let MailResponse::Stored { skipped: s, .. } = self.propose(op).await? {
                skipped = s;
            }
        }
        let idx = self.index_of(&self.selected()?.mailbox)?;
        let shown = targets.iter().filter_map(|(_, u)| idx.position(*u)).flat_map(|p| &idx.messages[p].keywords);
        for l in self.selected_mut()?.announce(shown) {
            line(out, &l);
        }
        let view = self.selected()?;
        let mut reported = Vec::new();
        let mut modified = Vec::new();
        for (seq, u) in &targets {
            if skipped.contains(u) {
                modified.push(if uid { *u } else { *seq });
                continue;
            }
            let Some(m) = idx.position(*u).map(|p| &idx.messages[p]) else { continue };
            reported.push(m.clone());
            // With CONDSTORE the new MODSEQ is reported even for .SILENT (RFC 7162 §3.2).
            if response == StoreResponse::Answer || self.condstore {
                let uid_part = if uid { format!("UID {u} ") } else { String::new() };
                let flags_part = if response == StoreResponse::Answer {
                    format!(" FLAGS {}", encode::flags_recent(m.flags, &m.keywords, view.shows_recent(*u)))
                } else {
                    String::new()
                };
                let modseq = if self.condstore { format!(" MODSEQ ({})", m.modseq) } else { String::new() };
                let body = format!("{uid_part}{}{modseq}", flags_part.trim_start());
                line(out, &format!("* {seq} FETCH ({})", body.trim()));
            }
        }
        // .SILENT still tells about changes made by others; ours are known now.
        let view = self.selected_mut()?;
        for m in &reported {
            view.reported(m);
        }
        self.sync(out, if uid { Sync::Full } else { Sync::NoExpunge });
        if !modified.is_empty() {
            let list: Vec<String> = modified.iter().map(u32::to_string).collect();
            return Ok((format!("[MODIFIED {}] conditional STORE failed for some", list.join(",")), Outcome::Continue));
        }
        Ok(("STORE completed".into(), Outcome::Continue))
    }

    pub(in crate::imap::session) async fn copy(
        &mut self,
        set: &SequenceSet,
        mailbox: &Mailbox<'_>,
        uid: bool,
        moving: bool,
        out: &mut Vec<u8>,
    ) -> Result<(String, Outcome), Refusal> {
        let to = mailbox_name(mailbox, self.rev2).map_err(Refusal::No)?;
        self.check_seq_set(set, uid)?;
        let view = self.selected()?;
        if moving && view.read_only {
            return Err(Refusal::No("[READ-ONLY] mailbox is read-only".into()));
        }
        self.check_target(&to)?;
        let uids: Vec<u32> = search::resolve(set, uid, view.uids()).into_iter().map(|(_, u)| u).collect();
        let verb = if moving { "MOVE" } else { "COPY" };
        if uids.is_empty() {
            return Ok((format!("{verb} completed (no messages)"), Outcome::Continue));
        }
        if !moving {
            let source = view.mailbox.clone();
            let idx = self.index_of(&source)?;
            let sizes: u64 = idx.messages.iter().filter(|m| uids.binary_search(&m.uid).is_ok()).map(|m| m.size).sum();
            self.check_quota(sizes, uids.len() as u64)?;
        }
        let view = self.selected()?;
        let (user, from) = (self.user().as_str().to_string(), view.mailbox.as_str().to_string());
        let op = if moving {
            MailOp::Move { user, from, to: to.as_str().into(), uids, now_s: now_s() }
        } else {
            MailOp::Copy { user, from, to: to.as_str().into(), uids, now_s: now_s() }
        };
        let resp = self.propose(op).await?;
        let code = match resp {
            MailResponse::Copied { uid_validity, pairs } if !pairs.is_empty() => {
                let src: Vec<String> = pairs.iter().map(|p| p.0.to_string()).collect();
                let dst: Vec<String> = pairs.iter().map(|p| p.1.to_string()).collect();
                format!("[COPYUID {uid_validity} {} {}] ", src.join(","), dst.join(","))
            }
            _ => String::new(),
        };
        if moving {
            // RFC 6851: COPYUID goes in an untagged OK before the EXPUNGEs.
            if !code.is_empty() {
                line(out, &format!("* OK {}moved", code));
            }
            self.sync(out, Sync::Full);
            return Ok(("MOVE completed".into(), Outcome::Continue));
        }
        self.sync(out, if uid { Sync::Full } else { Sync::NoExpunge });
        Ok((format!("{code}COPY completed"), Outcome::Continue))
    }
}

impl<B: Backend> Session<B> {
    /// The THREADIDs (RFC 8474 §5.2) of messages `uids` of the selected mailbox, from their
    /// sort fields (`imap::thread::thread_id`); none for a message expunged meanwhile.
    pub(in crate::imap::session) fn thread_ids(
        &self,
        idx: &MailboxIndex,
        uids: impl Iterator<Item = u32>,
    ) -> Result<HashMap<u32, String>, Refusal> {
        let view = self.selected()?;
        let metas: Vec<&MessageMeta> = uids.filter_map(|u| idx.position(u).map(|p| &idx.messages[p])).collect();
        let backend = self.backend();
        let fields = match backend.sort_fields(self.user(), &view.mailbox, idx, &metas) {
            Ok(fields) => fields,
            // One unreadable message fails the batch: read them one by one, and that one
            // has no THREADID (NIL), as FETCH leaves out only what it cannot read.
            Err(e) => {
                tracing::warn!(error = %e, "THREADID: a message's fields are unreadable");
                let one = |m: &MessageMeta| backend.sort_fields(self.user(), &view.mailbox, idx, &[m]).ok();
                metas.iter().map(|m| one(m).and_then(|f| f.into_iter().next().flatten())).collect()
            }
        };
        let id =
            |m: &MessageMeta, f: Arc<[u8]>| (m.uid, crate::imap::thread::thread_id(&f, m.email_id(idx.uid_validity)));
        Ok(metas.iter().zip(fields).filter_map(|(m, f)| f.map(|f| id(m, f))).collect())
    }
}

/// An EMAILID as the wire shows it (RFC 8474 §5.1: an objectid, letters and digits).
pub(in crate::imap::session) fn email_id(id: u64) -> String {
    format!("M{id:016x}")
}
