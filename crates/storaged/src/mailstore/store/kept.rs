//! Applying retention (`mailstore::kept`): an expunge or a folder's deletion moves the
//! messages into a kept set instead of removing them; a purge stamps new sets and removes
//! those past the retention; a restore files kept messages again as new messages (new
//! UIDs, the same bytes, flags and internal date). Deterministic like the rest of apply:
//! times come from the entries, and re-applying any of these after a crash changes
//! nothing twice. This module never decides which mail to restore (mailctl does).

use std::collections::BTreeMap;
use std::fs;

use super::{io_ctx, Incoming, Store, StoreError};
use crate::mailstore::index::MessageMeta;
use crate::mailstore::kept::{self, KeptMessage, KeptReason, KeptSet, SetName};
use crate::mailstore::ops::{ImportedKept, ImportedKeptSet, MailResponse};
use crate::mailstore::{MailboxName, Rejection, UserName};

impl Store {
    /// Move `gone` (just taken out of `mailbox`'s index by entry `index`) into the user's
    /// kept set of that entry.
    pub(super) fn keep_files(
        &mut self,
        user: &UserName,
        mailbox: &MailboxName,
        index: u64,
        gone: Vec<MessageMeta>,
        reason: KeptReason,
    ) -> Result<(), StoreError> {
        if gone.is_empty() {
            return Ok(());
        }
        let user_dir = self.layout.user_dir(user);
        let existing = kept::sets(&user_dir).map_err(io_ctx("kept sets"))?.into_iter().find(|(n, _)| n.index == index);
        let (set_dir, mut set) = match existing {
            // Re-applied after a crash: go on with what the set holds.
            Some((_, dir)) => {
                let set = kept::load(&dir).unwrap_or_else(|_| KeptSet::new(mailbox, reason));
                (dir, set)
            }
            None => (kept::dir(&user_dir).join(index.to_string()), KeptSet::new(mailbox, reason)),
        };
        fs::create_dir_all(&set_dir).map_err(io_ctx("kept set"))?;
        let mailbox_dir = self.layout.mailbox_dir(user, mailbox);
        // A deleted user's set holds every folder: names stay apart by a folder tag (the
        // same on every replica and replay).
        let tag =
            (set.mailbox != mailbox.as_str()).then(|| format!("{:08x}-", crc32c::crc32c(mailbox.as_str().as_bytes())));
        for m in gone {
            let file = format!("{}{}", tag.as_deref().unwrap_or(""), m.base);
            let kept_path = set_dir.join(&file);
            let path = self.message_path(user, mailbox, &m);
            let src = Some(path).filter(|p| p.exists()).or_else(|| Self::find_by_base(&mailbox_dir, &m.base));
            match src {
                // Re-applied after a crash: the kept copy is there, and the replayed
                // delivery wrote the same message into the mailbox again.
                Some(src) if kept_path.exists() => fs::remove_file(&src).map_err(io_ctx("expunge a replayed copy"))?,
                Some(src) => fs::rename(&src, &kept_path).map_err(io_ctx("keep an expunged message"))?,
                None if kept_path.exists() => {}
                // Already gone (a replica that lost it): nothing to keep.
                None => continue,
            }
            if set.messages.iter().any(|k| k.file == file) {
                continue;
            }
            set.messages.push(KeptMessage {
                file,
                flags: m.flags,
                keywords: m.keywords,
                internal_date: m.internal_date,
                size: m.size,
                restored_by: None,
                mailbox: tag.is_some().then(|| mailbox.to_string()),
            });
        }
        kept::save(&set_dir, &set).map_err(io_ctx("kept set meta"))
    }

    /// Stamp the sets made since the last purge with `now_s`; remove those stamped more
    /// than `retention_s` before it.
    pub(super) fn purge_kept(&mut self, now_s: i64, retention_s: u64) -> Result<MailResponse, StoreError> {
        let mut purged = 0usize;
        for user in self.users() {
            let user_dir = self.layout.user_dir(&user);
            // The user's own retention if set; a backup keeps at least its own (longer).
            let keep_s = kept::user_retention(&user_dir).unwrap_or(retention_s).max(self.keep_floor_s);
            let cutoff = now_s.saturating_sub(i64::try_from(keep_s).unwrap_or(i64::MAX));
            for (name, path) in kept::sets(&user_dir).map_err(io_ctx("kept sets"))? {
                match name.stamp_s {
                    None => {
                        let stamped = SetName { index: name.index, stamp_s: Some(now_s) };
                        fs::rename(&path, kept::dir(&user_dir).join(stamped.to_string()))
                            .map_err(io_ctx("stamp a kept set"))?;
                    }
                    Some(stamp) if stamp < cutoff => {
                        fs::remove_dir_all(&path).map_err(io_ctx("purge a kept set"))?;
                        purged += 1;
                    }
                    Some(_) => {}
                }
            }
            // A deleted user whose kept mail is all purged leaves nothing behind (a user
            // with anything else, a retention set ahead of their first mail say, stays).
            let only_kept =
                fs::read_dir(&user_dir).is_ok_and(|mut d| d.all(|e| e.is_ok_and(|e| e.file_name() == kept::DIR)));
            if only_kept && kept::sets(&user_dir).is_ok_and(|s| s.is_empty()) {
                fs::remove_dir_all(&user_dir).map_err(io_ctx("remove a deleted user"))?;
            }
        }
        if purged > 0 {
            self.erased = true;
            tracing::info!(group = %self.group, purged, "kept mail past its retention purged");
        }
        Ok(MailResponse::Done)
    }

    /// Delete `user`: every folder's messages into the kept set of this entry (INBOX's
    /// first: the set is named for it), then everything else of the user but the kept
    /// sets and their own retention (see [`MailOp::RetireUser`]).
    pub(super) fn retire_user(&mut self, index: u64, user: &UserName) -> Result<MailResponse, StoreError> {
        self.flush_files()?;
        let mut folders = self.mailboxes(user);
        folders.sort_by_key(|m| !m.is_inbox());
        let mut empty = Vec::new();
        for mailbox in folders {
            let Some(idx) = self.mailbox(user, &mailbox)? else { continue };
            let messages = idx.messages.clone();
            if messages.is_empty() && !mailbox.is_inbox() {
                empty.push(mailbox.to_string());
            }
            self.keep_files(user, &mailbox, index, messages, KeptReason::UserDeleted)?;
        }
        // The empty folders go with the set (a user with no message at all has none).
        let set = kept::sets(&self.layout.user_dir(user))
            .map_err(io_ctx("kept sets"))?
            .into_iter()
            .find(|(n, _)| n.index == index);
        if let (Some((_, set_dir)), false) = (set, empty.is_empty()) {
            kept::set_empty_folders(&set_dir, &empty).map_err(io_ctx("kept empty folders"))?;
        }
        self.boxes.retain(|(u, _), _| u != user);
        self.dirty.retain(|(u, _)| u != user);
        let user_dir = self.layout.user_dir(user);
        let entries = match fs::read_dir(&user_dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(MailResponse::Done),
            Err(e) => return Err(io_ctx("retire a user")(e)),
        };
        for e in entries.flatten() {
            if kept::survives_retirement(&e.file_name().to_string_lossy()) {
                continue;
            }
            let path = e.path();
            let gone = if path.is_dir() { fs::remove_dir_all(&path) } else { fs::remove_file(&path) };
            gone.map_err(io_ctx("retire a user"))?;
        }
        Ok(MailResponse::Done)
    }

    /// Give `user` their own retention of kept mail (see [`MailOp::SetRetention`]).
    pub(super) fn set_retention(&mut self, user: &UserName, keep_s: Option<u64>) -> Result<MailResponse, StoreError> {
        if keep_s.is_some_and(|s| s > kept::RETENTION_MAX_S) {
            return Ok(MailResponse::Rejected(Rejection::Malformed(format!(
                "a retention above {} days",
                kept::RETENTION_MAX_S / 86_400
            ))));
        }
        kept::set_user_retention(&self.layout.user_dir(user), keep_s).map_err(io_ctx("set a retention"))?;
        Ok(MailResponse::Done)
    }

    /// File the kept messages `items` (`(set, file)`) of `user` again, each into its own
    /// folder (made if it was deleted) or into `into`. A restored message stays in its set,
    /// marked with this entry's index, until the set is purged: a second restore skips it,
    /// and a replay of this entry after a crash files it again the same way.
    pub(super) fn restore_kept(
        &mut self,
        index: u64,
        user: &str,
        items: &[(String, String)],
        into: Option<&str>,
        now_s: i64,
    ) -> Result<MailResponse, StoreError> {
        let (user, into) = match (UserName::parse(user), into.map(MailboxName::parse).transpose()) {
            (Ok(u), Ok(into)) => (u, into),
            (Err(e), _) | (_, Err(e)) => return Ok(MailResponse::Rejected(Rejection::Cannot(e.to_string()))),
        };
        let user_dir = self.layout.user_dir(&user);
        // By the set's index: a purge round may have stamped (renamed) a set since the
        // caller listed it.
        let dirs = kept::sets_by_index(&user_dir).map_err(io_ctx("kept sets"))?;
        let mut sets: BTreeMap<u64, KeptSet> = BTreeMap::new();
        let mut restored = 0u32;
        for (n, (set_name, file)) in items.iter().enumerate() {
            let Some(set_index) = SetName::parse(set_name).map(|s| s.index) else { continue };
            let Some(set_dir) = dirs.get(&set_index) else { continue };
            if let std::collections::btree_map::Entry::Vacant(slot) = sets.entry(set_index) {
                let Ok(set) = kept::load(set_dir) else { continue };
                slot.insert(set);
                // A deleted user's empty folders come back with any restore from the set.
                for folder in kept::empty_folders(set_dir) {
                    if let Ok(name) = MailboxName::parse(&folder) {
                        self.ensure_mailbox(&user, &name, index)?;
                    }
                }
            }
            let set = &sets[&set_index];
            let Some(msg) = set.messages.iter().find(|m| m.file == *file).cloned() else { continue };
            if msg.restored_by.is_some_and(|by| by != index) {
                continue;
            }
            let Ok(bytes) = fs::read(set_dir.join(&msg.file)) else { continue };
            let target = match (&into, MailboxName::parse(set.folder_of(&msg))) {
                (Some(into), _) => into.clone(),
                (None, Ok(original)) => original,
                (None, Err(_)) => MailboxName::inbox(),
            };
            self.ensure_mailbox(&user, &target, index)?;
            let incoming = Incoming {
                flags: msg.flags,
                keywords: &msg.keywords,
                internal_date: msg.internal_date,
                saved_s: now_s,
                message: &bytes,
            };
            if self.add_message(&user, &target, index, n, incoming).is_ok() {
                restored += 1;
                let set = sets.get_mut(&set_index).expect("loaded above");
                set.messages.iter_mut().filter(|m| m.file == *file).for_each(|m| m.restored_by = Some(index));
            }
        }
        for (name, set) in &sets {
            kept::save(&dirs[name], set).map_err(io_ctx("kept set meta"))?;
        }
        Ok(MailResponse::Restored { count: restored })
    }
}

impl Store {
    /// File kept messages a move brought (see [`MailOp::ImportKept`]) into the set that
    /// came from `set.origin`, made (named for this entry, with the old stamp) if missing.
    /// A file the set lists already is skipped; one whose name could leave the set is
    /// refused. Written file first, meta last, so a replay after a crash completes it.
    pub(super) fn import_kept(
        &mut self,
        index: u64,
        user: &str,
        set: &ImportedKeptSet,
        messages: &[ImportedKept],
    ) -> Result<MailResponse, StoreError> {
        let user = match UserName::parse(user) {
            Ok(u) => u,
            Err(e) => return Ok(MailResponse::Rejected(Rejection::Cannot(e.to_string()))),
        };
        if let Some(bad) = messages.iter().find(|m| !kept::valid_file_name(&m.file)) {
            return Ok(MailResponse::Rejected(Rejection::Cannot(format!("not a kept file name: {:?}", bad.file))));
        }
        let user_dir = self.layout.user_dir(&user);
        let sets = kept::sets(&user_dir).map_err(io_ctx("kept sets"))?;
        let found = sets.into_iter().map(|(_, p)| p).find(|p| kept::origin(p).as_deref() == Some(set.origin.as_str()));
        let (set_dir, mut kept_set) = match found {
            Some(dir) => {
                let loaded = kept::load(&dir).map_err(io_ctx("kept set meta"))?;
                (dir, loaded)
            }
            None => {
                let name = SetName { index, stamp_s: set.stamp_s };
                let dir = kept::dir(&user_dir).join(name.to_string());
                fs::create_dir_all(&dir).map_err(io_ctx("kept set"))?;
                kept::set_origin(&dir, &set.origin).map_err(io_ctx("kept set origin"))?;
                (dir, KeptSet { mailbox: set.mailbox.clone(), reason: set.reason, messages: Vec::new() })
            }
        };
        let mut count = 0u32;
        for m in messages {
            if kept_set.messages.iter().any(|k| k.file == m.file) {
                continue;
            }
            crate::mailstore::fileio::replace_private(&set_dir, &m.file, &m.data).map_err(io_ctx("kept file"))?;
            kept_set.messages.push(KeptMessage {
                file: m.file.clone(),
                flags: m.flags,
                keywords: m.keywords.clone(),
                internal_date: m.internal_date,
                size: m.data.len() as u64,
                restored_by: None,
                mailbox: (m.mailbox != kept_set.mailbox).then(|| m.mailbox.clone()),
            });
            count += 1;
        }
        kept::save(&set_dir, &kept_set).map_err(io_ctx("kept set meta"))?;
        Ok(MailResponse::KeptImported { count })
    }
}

impl KeptSet {
    fn new(mailbox: &MailboxName, reason: KeptReason) -> Self {
        Self { mailbox: mailbox.to_string(), reason, messages: Vec::new() }
    }
}
