//! GETMETADATA and SETMETADATA (RFC 5464, METADATA and METADATA-SERVER): entries of one of
//! the user's mailboxes, or of the user's "server" (mailbox `""`), read from the store and
//! changed through the group's log as one operation. `/private/specialuse` is the mailbox's
//! SPECIAL-USE attribute (RFC 6154 §4), derived and read-only. The bounds are the store's
//! ([`metadata`]); this module words them as RFC 5464's response codes.

use super::super::*;
use crate::imap::backend::Backend;
use crate::mailstore::metadata::{self, Depth, Entries, MetadataError};
use crate::mailstore::ops::MetadataChange;
use imap_codec::imap_types::core::{NString, NString8};
use imap_codec::imap_types::extensions::metadata::{self as imap_meta, Entry, EntryValue, GetMetadataOption};
use imap_codec::imap_types::mailbox::Mailbox;
use std::collections::BTreeMap;

/// The derived, read-only entry of a special-use mailbox.
const SPECIAL_USE_ENTRY: &str = "/private/specialuse";

impl<B: Backend> Session<B> {
    pub(in crate::imap::session) fn get_metadata(
        &mut self,
        options: &[GetMetadataOption],
        mailbox: &Mailbox<'_>,
        entries: &[Entry<'_>],
        out: &mut Vec<u8>,
    ) -> Answer {
        let (key, shown) = self.metadata_target(mailbox)?;
        let (depth, max_size) = get_options(options);
        let stored = self.backend().metadata(self.user(), &key)?;
        let stored = stored.ok_or_else(|| Refusal::No(format!("[NONEXISTENT] no mailbox {shown}")))?;
        let derived = derived_entries(&key);
        let mut found: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        for e in entries {
            let name = entry_name(e)?;
            for (k, v) in stored.under(&name, depth).chain(derived.under(&name, depth)) {
                found.insert(k.to_string(), v.to_vec());
            }
        }
        let longest = found.values().map(Vec::len).filter(|n| max_size.is_some_and(|m| *n > m as usize)).max();
        found.retain(|_, v| max_size.is_none_or(|m| v.len() <= m as usize));
        if !found.is_empty() {
            out.extend_from_slice(b"* METADATA ");
            encode::mailbox(out, &shown);
            out.extend_from_slice(b" (");
            for (k, (name, value)) in found.iter().enumerate() {
                if k > 0 {
                    out.push(b' ');
                }
                encode::string(out, name.as_bytes());
                out.push(b' ');
                encode::string8(out, value);
            }
            out.extend_from_slice(b")\r\n");
        }
        match longest {
            Some(n) => Ok((format!("[METADATA LONGENTRIES {n}] GETMETADATA completed"), Outcome::Continue)),
            None => ok("GETMETADATA completed"),
        }
    }

    pub(in crate::imap::session) async fn set_metadata(
        &mut self,
        mailbox: &Mailbox<'_>,
        values: &[EntryValue<'_>],
    ) -> Answer {
        let (key, shown) = self.metadata_target(mailbox)?;
        let mut changes = Vec::with_capacity(values.len());
        for v in values {
            let name = entry_name(&v.entry)?;
            if name == SPECIAL_USE_ENTRY {
                return Err(Refusal::No(format!("[CANNOT] {SPECIAL_USE_ENTRY} is read-only here")));
            }
            changes.push(MetadataChange { name, value: value_bytes(&v.value) });
        }
        // Checked here to answer with RFC 5464's codes; the store checks again on apply.
        let mut next = self.backend().metadata(self.user(), &key)?;
        let next = next.as_mut().ok_or_else(|| Refusal::No(format!("[NONEXISTENT] no mailbox {shown}")))?;
        let pairs: Vec<(String, Option<Vec<u8>>)> = changes.iter().map(|c| (c.name.clone(), c.value.clone())).collect();
        match next.apply(&pairs) {
            Ok(()) => {}
            Err(MetadataError::TooLarge { max, .. }) => {
                return Err(Refusal::No(format!("[METADATA MAXSIZE {max}] value too large")))
            }
            Err(MetadataError::TooMany { .. }) => {
                return Err(Refusal::No("[METADATA TOOMANY] too many entries".into()))
            }
            Err(e) => return Err(Refusal::Bad(e.to_string())),
        }
        let op = MailOp::SetMetadata { user: self.user().as_str().into(), mailbox: key, entries: changes };
        self.propose(op).await?;
        ok("SETMETADATA completed")
    }

    /// The stored name of the mailbox a METADATA command names (`""` for the server), and
    /// the name as this session shows it.
    fn metadata_target(&self, mailbox: &Mailbox<'_>) -> Result<(String, String), Refusal> {
        if matches!(mailbox, Mailbox::Other(o) if o.as_ref().is_empty()) {
            return Ok((String::new(), String::new()));
        }
        let name = mailbox_name(mailbox, self.rev2).map_err(Refusal::No)?;
        let shown = wire_name(name.as_str(), self.rev2).into_owned();
        Ok((name.as_str().to_string(), shown))
    }
}

fn get_options(options: &[GetMetadataOption]) -> (Depth, Option<u32>) {
    let mut depth = Depth::Exact;
    let mut max_size = None;
    for o in options {
        match o {
            GetMetadataOption::MaxSize(n) => max_size = Some(*n),
            GetMetadataOption::Depth(imap_meta::Depth::Null) => depth = Depth::Exact,
            GetMetadataOption::Depth(imap_meta::Depth::One) => depth = Depth::Children,
            GetMetadataOption::Depth(imap_meta::Depth::Infinity) => depth = Depth::All,
        }
    }
    (depth, max_size)
}

fn entry_name(e: &Entry<'_>) -> Result<String, Refusal> {
    let raw: &[u8] = e.inner().as_ref();
    let raw = std::str::from_utf8(raw).map_err(|_| Refusal::Bad("entry names are ASCII".into()))?;
    metadata::entry_name(raw).map_err(|e| Refusal::Bad(e.to_string()))
}

fn value_bytes(v: &NString8<'_>) -> Option<Vec<u8>> {
    match v {
        NString8::NString(NString(None)) => None,
        NString8::NString(NString(Some(s))) => Some(s.as_ref().to_vec()),
        NString8::Literal8(l) => Some(l.data.to_vec()),
    }
}

/// Entries the server makes up for `mailbox` (stored name; `""` is the server).
fn derived_entries(mailbox: &str) -> Entries {
    let mut e = Entries::default();
    if let Some(attr) = special_use_of(mailbox) {
        let set = [(SPECIAL_USE_ENTRY.to_string(), Some(attr.as_bytes().to_vec()))];
        e.apply(&set).expect("a short, valid entry");
    }
    e
}
