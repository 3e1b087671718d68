//! A move's copy of the user's kept mail (expunged messages and deleted folders within
//! their retention), so `mailctl restore` works the same after the move: each set of the
//! source becomes one set on the target with the same stamp (`MailOp::ImportKept`),
//! recognised there by its origin, so every round of the move adds only what the target
//! lacks. Messages already restored on the source are not copied (their restored copies
//! are in the mailboxes, which the move copies).
//!
//! It reads the source, never changes it.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::bail;
use common::admin::{AdminReply, AdminRequest, KeptItem};
use storaged::mailstore::kept::KeptReason;
use storaged::mailstore::ops::{ImportedKept, ImportedKeptSet};
use storaged::mailstore::{MailOp, MailResponse};

use super::admin::Admin;

/// Bytes per `ImportKept` at most (the answer of one `KeptFiles` read is bounded too).
const BATCH_BYTES_MAX: u64 = 2 << 20;
/// Messages per `KeptFiles` read.
const READ_MAX: usize = 256;

/// The user's kept messages on `group`'s leader.
async fn listing(admin: &Admin, group: &str, user: &str) -> anyhow::Result<Vec<KeptItem>> {
    match admin.call(group, AdminRequest::Kept { group: group.into(), user: user.into() }).await? {
        AdminReply::Kept { items, truncated: false } => Ok(items),
        AdminReply::Kept { truncated: true, .. } => {
            bail!("{user} has more kept mail on {group} than one listing holds; the move cannot copy it whole")
        }
        other => bail!("kept mail on {group}: {other}"),
    }
}

/// The origin a source set has on the target: `GROUP/INDEX` (the index without the stamp,
/// which a purge round adds later).
fn origin_of(group: &str, set: &str) -> String {
    format!("{group}/{}", set.split('.').next().unwrap_or(set))
}

/// Copy what the target lacks of the user's kept mail on `source`; how many messages.
pub(super) async fn copy_kept(admin: &Admin, user: &str, (source, target): (&str, &str)) -> anyhow::Result<u64> {
    let have: BTreeSet<(String, String)> =
        listing(admin, target, user).await?.into_iter().filter_map(|i| Some((i.origin?, i.file))).collect();
    let mut sets: BTreeMap<String, Vec<KeptItem>> = BTreeMap::new();
    for item in listing(admin, source, user).await? {
        if !item.restored && !have.contains(&(origin_of(source, &item.set), item.file.clone())) {
            sets.entry(item.set.clone()).or_default().push(item);
        }
    }
    let mut copied = 0;
    for (set, items) in sets {
        copied += copy_set(admin, user, (source, target), &set, &items).await?;
    }
    Ok(copied)
}

/// Copy `items` of source set `set`.
async fn copy_set(
    admin: &Admin,
    user: &str,
    (source, target): (&str, &str),
    set: &str,
    items: &[KeptItem],
) -> anyhow::Result<u64> {
    let first = &items[0];
    let reason = match (first.user_deleted, first.folder_deleted) {
        (true, _) => KeptReason::UserDeleted,
        (false, true) => KeptReason::FolderDeleted,
        (false, false) => KeptReason::Expunged,
    };
    let kept_set = ImportedKeptSet {
        origin: origin_of(source, set),
        mailbox: first.mailbox.clone(),
        reason,
        stamp_s: first.kept_since_s,
    };
    let mut pending: Vec<(String, String)> = items.iter().map(|i| (i.set.clone(), i.file.clone())).collect();
    let mut copied = 0;
    while !pending.is_empty() {
        let ask: Vec<_> = pending.iter().take(READ_MAX).cloned().collect();
        let request = AdminRequest::KeptFiles { group: source.into(), user: user.into(), items: ask };
        let files = match admin.call(source, request).await? {
            AdminReply::KeptFiles(files) if !files.is_empty() => files,
            other => bail!("kept mail on {source}: {other}"),
        };
        pending.drain(..files.len());
        let mut batch: Vec<ImportedKept> = Vec::new();
        let mut bytes = 0u64;
        for f in files {
            // Purged since the listing: nothing to keep.
            let Some(data) = f.bytes else { continue };
            if bytes > 0 && bytes + data.len() as u64 > BATCH_BYTES_MAX {
                copied += import(admin, user, target, &kept_set, std::mem::take(&mut batch)).await?;
                bytes = 0;
            }
            bytes += data.len() as u64;
            let (flags, keywords, internal_date) = (f.flags, f.keywords, f.internal_date);
            batch.push(ImportedKept {
                file: f.file,
                mailbox: f.mailbox,
                flags,
                keywords,
                internal_date,
                data: data.into_vec(),
            });
        }
        copied += import(admin, user, target, &kept_set, batch).await?;
    }
    Ok(copied)
}

async fn import(
    admin: &Admin,
    user: &str,
    target: &str,
    set: &ImportedKeptSet,
    messages: Vec<ImportedKept>,
) -> anyhow::Result<u64> {
    if messages.is_empty() {
        return Ok(0);
    }
    let op = MailOp::ImportKept { user: user.into(), set: set.clone(), messages };
    match admin.apply_once(target, rand::random(), op).await? {
        MailResponse::KeptImported { count } => Ok(u64::from(count)),
        other => bail!("{target} answered a kept import with {other:?}: is every node and mailctl the same version?"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_is_known_by_its_group_and_index_whatever_its_stamp() {
        assert_eq!(origin_of("hermes", "1234"), "hermes/1234");
        assert_eq!(origin_of("hermes", "1234.1700000000"), "hermes/1234");
    }
}
