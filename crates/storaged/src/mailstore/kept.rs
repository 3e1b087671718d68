//! Where expunged messages and deleted folders wait before they are purged: one set per
//! log entry that removed mail, `USER/kept/INDEX[.STAMP]/`, holding the message files
//! (renamed there, byte for byte) and `meta`, a checksummed list of what each was (its
//! folder, flags, keywords, internal date). A set is stamped with the time of the first
//! purge after it was made (the directory renamed `INDEX.STAMP`, the proposer's clock
//! written in the log) and removed once that stamp is older than the retention, so every
//! replica keeps and purges the same mail whatever its own clock says; retention is at
//! least the configured time and at most one purge interval more.
//!
//! Kept mail is invisible to IMAP and POP3 (it is outside the Maildir) and does not count
//! against quota. This module owns the layout and the meta format; what goes in and comes
//! back out is the store's (`store::kept`).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The directory of a user's kept sets, under the user's directory.
pub const DIR: &str = "kept";
/// The file of a user's own retention (seconds, decimal), under the user's directory.
const RETENTION: &str = "retention";
/// Whether a user directory's entry `name` stays when the user is deleted: the kept
/// sets and the retention that governs them.
pub fn survives_retirement(name: &str) -> bool {
    name == DIR || name == RETENTION
}

/// Longest retention a user may be given: ten years.
pub const RETENTION_MAX_S: u64 = 10 * 366 * 86_400;

/// The user's own retention, if one was set (a damaged file counts as none).
pub fn user_retention(user_dir: &Path) -> Option<u64> {
    let text = read_small(&user_dir.join(RETENTION), SMALL_FILE_MAX_BYTES)?;
    text.trim().parse().ok().filter(|s| *s <= RETENTION_MAX_S)
}

/// Longest retention or origin file read back.
const SMALL_FILE_MAX_BYTES: u64 = 256;

/// The text of one of the small files beside the sets, at most `max` bytes of it; `None`
/// when it is missing or unreadable.
fn read_small(path: &Path, max: u64) -> Option<String> {
    use std::io::Read;
    let mut text = String::new();
    fs::File::open(path).ok()?.take(max).read_to_string(&mut text).ok()?;
    Some(text)
}

/// Set (or with `None` remove) the user's own retention; replaced by rename, never
/// rewritten in place (snapshots hard-link the tree).
pub fn set_user_retention(user_dir: &Path, keep_s: Option<u64>) -> io::Result<()> {
    let path = user_dir.join(RETENTION);
    match keep_s {
        None => match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        },
        Some(s) => super::fileio::replace_private(user_dir, RETENTION, format!("{s}\n").as_bytes()),
    }
}
const META: &str = "meta";
/// In a set a move brought from another mailhost: `GROUP/INDEX` of the set it came from,
/// so the move's next round adds to it rather than making another.
const ORIGIN: &str = "origin";
/// In a deleted user's set: the folders they had that held no message, one per line, made
/// again by a restore from the set (a folder with messages comes back with them).
const EMPTY_FOLDERS: &str = "empty-folders";
/// Most bytes of that list read back.
const EMPTY_FOLDERS_MAX_BYTES: u64 = 1 << 20;
const MAGIC: &[u8; 8] = b"MSKEPT02";
/// The format before a message could name its own folder; still read.
const MAGIC_V1: &[u8; 8] = b"MSKEPT01";
/// Largest meta file read back (a set holds one mailbox's messages: far below this).
const META_MAX_BYTES: u64 = 64 << 20;

/// Why a set was kept.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
pub enum KeptReason {
    Expunged,
    FolderDeleted,
    /// The whole user was deleted: every folder, INBOX too.
    UserDeleted,
}

/// One kept message: its file in the set and what it was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptMessage {
    /// The file's name in the set (the Maildir base name it had).
    pub file: String,
    pub flags: u8,
    pub keywords: Vec<String>,
    pub internal_date: i64,
    pub size: u64,
    /// The log index of the restore that filed it again (it stays until the set is purged).
    pub restored_by: Option<u64>,
    /// The folder it was in, when not the set's (a deleted user's set holds every folder).
    pub mailbox: Option<String>,
}

/// The mail one entry removed: from one folder, or (a deleted user) from several.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptSet {
    pub mailbox: String,
    pub reason: KeptReason,
    pub messages: Vec<KeptMessage>,
}

impl KeptSet {
    /// The folder message `m` of this set was in.
    pub fn folder_of<'a>(&'a self, m: &'a KeptMessage) -> &'a str {
        m.mailbox.as_deref().unwrap_or(&self.mailbox)
    }
}

/// [`KeptSet`] as `MSKEPT01` wrote it (no per-message folder).
#[derive(Deserialize)]
struct KeptSetV1 {
    mailbox: String,
    reason: KeptReason,
    messages: Vec<KeptMessageV1>,
}

#[derive(Deserialize)]
struct KeptMessageV1 {
    file: String,
    flags: u8,
    keywords: Vec<String>,
    internal_date: i64,
    size: u64,
    restored_by: Option<u64>,
}

impl From<KeptSetV1> for KeptSet {
    fn from(v: KeptSetV1) -> Self {
        let messages = v
            .messages
            .into_iter()
            .map(|m| KeptMessage {
                file: m.file,
                flags: m.flags,
                keywords: m.keywords,
                internal_date: m.internal_date,
                size: m.size,
                restored_by: m.restored_by,
                mailbox: None,
            })
            .collect();
        Self { mailbox: v.mailbox, reason: v.reason, messages }
    }
}

/// A set's directory name: its log index, and the stamp once a purge gave it one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct SetName {
    pub index: u64,
    pub stamp_s: Option<i64>,
}

impl SetName {
    pub fn parse(name: &str) -> Option<Self> {
        match name.split_once('.') {
            None => Some(Self { index: name.parse().ok()?, stamp_s: None }),
            Some((index, stamp)) => Some(Self { index: index.parse().ok()?, stamp_s: Some(stamp.parse().ok()?) }),
        }
    }
}

impl std::fmt::Display for SetName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.stamp_s {
            None => write!(f, "{}", self.index),
            Some(s) => write!(f, "{}.{s}", self.index),
        }
    }
}

/// `USER/kept`.
pub fn dir(user_dir: &Path) -> PathBuf {
    user_dir.join(DIR)
}

/// The directory of each set of a user by its index, and the index a caller's set name
/// (from an earlier listing) names. By index, not name: a purge round stamps (renames) a
/// set between a listing and the request that uses it.
pub fn sets_by_index(user_dir: &Path) -> io::Result<std::collections::BTreeMap<u64, PathBuf>> {
    Ok(sets(user_dir)?.into_iter().map(|(n, p)| (n.index, p)).collect())
}

/// The sets of a user, oldest first, with their directories.
pub fn sets(user_dir: &Path) -> io::Result<Vec<(SetName, PathBuf)>> {
    let mut out: Vec<(SetName, PathBuf)> = match fs::read_dir(dir(user_dir)) {
        Ok(entries) => {
            entries.flatten().filter_map(|e| Some((SetName::parse(e.file_name().to_str()?)?, e.path()))).collect()
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    out.sort();
    Ok(out)
}

/// The set in `set_dir`.
pub fn load(set_dir: &Path) -> io::Result<KeptSet> {
    let path = set_dir.join(META);
    if fs::metadata(&path)?.len() > META_MAX_BYTES {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "kept set meta too large"));
    }
    let bytes = fs::read(&path)?;
    let bad = |why: &str| io::Error::new(io::ErrorKind::InvalidData, format!("kept set {}: {why}", set_dir.display()));
    let (v1, body) = match (bytes.strip_prefix(MAGIC.as_slice()), bytes.strip_prefix(MAGIC_V1.as_slice())) {
        (Some(body), _) => (false, body),
        (None, Some(body)) => (true, body),
        (None, None) => return Err(bad("bad magic")),
    };
    let (crc, body) = body.split_at_checked(4).ok_or_else(|| bad("truncated"))?;
    if crc32c::crc32c(body).to_le_bytes() != crc {
        return Err(bad("checksum mismatch"));
    }
    if v1 {
        return bincode::deserialize::<KeptSetV1>(body).map(KeptSet::from).map_err(|e| bad(&e.to_string()));
    }
    bincode::deserialize(body).map_err(|e| bad(&e.to_string()))
}

/// The set a move brought `set_dir` from, if one did.
pub fn origin(set_dir: &Path) -> Option<String> {
    let text = read_small(&set_dir.join(ORIGIN), SMALL_FILE_MAX_BYTES)?;
    Some(text.trim_end().to_string()).filter(|t| !t.is_empty())
}

/// Record the set `set_dir` was brought from.
pub fn set_origin(set_dir: &Path, origin: &str) -> io::Result<()> {
    super::fileio::replace_private(set_dir, ORIGIN, format!("{origin}\n").as_bytes())
}

/// Record the empty folders of a deleted user's set.
pub fn set_empty_folders(set_dir: &Path, folders: &[String]) -> io::Result<()> {
    let text: String = folders.iter().map(|f| format!("{f}\n")).collect();
    super::fileio::replace_private(set_dir, EMPTY_FOLDERS, text.as_bytes())
}

/// The empty folders a deleted user's set recorded (none for other sets).
pub fn empty_folders(set_dir: &Path) -> Vec<String> {
    let text = read_small(&set_dir.join(EMPTY_FOLDERS), EMPTY_FOLDERS_MAX_BYTES).unwrap_or_default();
    text.lines().filter(|l| !l.is_empty()).map(str::to_string).collect()
}

/// Whether `name` may be the file of a kept message: one plain path component that is not
/// hidden and not one of the set's own files (a move's import names its files).
pub fn valid_file_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && !name.contains(['/', '\0'])
        && name != META
        && name != ORIGIN
        && name != EMPTY_FOLDERS
}

/// Write `set`'s meta into `set_dir` (replaced by rename: snapshots hard-link the tree).
pub fn save(set_dir: &Path, set: &KeptSet) -> io::Result<()> {
    let body = bincode::serialize(set).map_err(io::Error::other)?;
    let mut bytes = MAGIC.to_vec();
    bytes.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
    bytes.extend_from_slice(&body);
    super::fileio::replace_private(set_dir, META, &bytes)
}

/// Move the kept sets of the store tree at `old_root` that the tree at `new_root` lacks
/// into it (a backup installing a snapshot from the voters, whose shorter retention
/// already purged sets the backup keeps longer). How many sets were carried over.
pub fn carry_sets(old_root: &Path, new_root: &Path) -> io::Result<usize> {
    let mut carried = 0;
    let users = match fs::read_dir(old_root.join("users")) {
        Ok(users) => users,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    for user in users.flatten() {
        let new_user = new_root.join("users").join(user.file_name());
        let have: std::collections::BTreeSet<u64> = sets(&new_user)?.into_iter().map(|(n, _)| n.index).collect();
        for (name, path) in sets(&user.path())? {
            if have.contains(&name.index) {
                continue;
            }
            fs::create_dir_all(dir(&new_user))?;
            fs::rename(&path, dir(&new_user).join(name.to_string()))?;
            carried += 1;
        }
    }
    Ok(carried)
}

/// Kept messages `items` (`(set, file)`) of the user at `user_dir` with their bytes, in
/// order, stopping once `bytes_max` were read (the rest is asked for again); a message
/// whose set or file is gone comes back without bytes.
pub fn read_files(
    user_dir: &Path,
    items: &[(String, String)],
    bytes_max: u64,
) -> io::Result<Vec<common::admin::KeptFile>> {
    let dirs = sets_by_index(user_dir)?;
    let mut loaded: std::collections::BTreeMap<u64, Option<KeptSet>> = std::collections::BTreeMap::new();
    let (mut out, mut bytes) = (Vec::new(), 0u64);
    for (set_name, file) in items {
        if bytes >= bytes_max {
            break;
        }
        let index = SetName::parse(set_name).map_or(u64::MAX, |n| n.index);
        let set = loaded.entry(index).or_insert_with(|| dirs.get(&index).and_then(|d| load(d).ok()));
        let found = set.as_ref().and_then(|s| Some((s, s.messages.iter().find(|m| m.file == *file)?)));
        let Some((set, m)) = found else {
            let gone = common::admin::KeptFile {
                set: set_name.clone(),
                file: file.clone(),
                mailbox: String::new(),
                flags: 0,
                keywords: Vec::new(),
                internal_date: 0,
                bytes: None,
            };
            out.push(gone);
            continue;
        };
        let data = fs::read(dirs[&index].join(&m.file)).ok();
        bytes += data.as_ref().map_or(0, |d| d.len() as u64);
        out.push(common::admin::KeptFile {
            set: set_name.clone(),
            file: file.clone(),
            mailbox: set.folder_of(m).to_string(),
            flags: m.flags,
            keywords: m.keywords.clone(),
            internal_date: m.internal_date,
            bytes: data.map(serde_bytes::ByteBuf::from),
        });
    }
    Ok(out)
}

/// Header bytes read of a kept message for its Message-ID and Subject.
const LIST_HEADER_MAX_BYTES: u64 = 16 * 1024;

/// A user's kept messages for a listing, oldest set first: at most `max`, and whether
/// more were left out. A set whose meta cannot be read is skipped (and logged).
pub fn list(user_dir: &Path, max: usize) -> io::Result<(Vec<common::admin::KeptItem>, bool)> {
    use std::io::Read;
    let mut out = Vec::new();
    for (name, set_dir) in sets(user_dir)? {
        let set = match load(&set_dir) {
            Ok(set) => set,
            Err(e) => {
                tracing::warn!(set = %set_dir.display(), error = %e, "unreadable kept set left out of a listing");
                continue;
            }
        };
        let origin = origin(&set_dir);
        for m in &set.messages {
            if out.len() == max {
                return Ok((out, true));
            }
            let mut head = Vec::new();
            if let Ok(file) = fs::File::open(set_dir.join(&m.file)) {
                let _ = file.take(LIST_HEADER_MAX_BYTES).read_to_end(&mut head);
            }
            let field = |name| common::message_log::header_field(&head, name).unwrap_or_default();
            out.push(common::admin::KeptItem {
                set: name.to_string(),
                origin: origin.clone(),
                file: m.file.clone(),
                mailbox: set.folder_of(m).to_string(),
                folder_deleted: set.reason != KeptReason::Expunged,
                user_deleted: set.reason == KeptReason::UserDeleted,
                kept_since_s: name.stamp_s,
                flags: m.flags,
                keywords: m.keywords.clone(),
                internal_date: m.internal_date,
                size: m.size,
                message_id: field("message-id"),
                subject: field("subject"),
                restored: m.restored_by.is_some(),
            });
        }
    }
    Ok((out, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_names_carry_the_index_and_the_stamp() {
        assert_eq!(SetName::parse("42"), Some(SetName { index: 42, stamp_s: None }));
        assert_eq!(SetName::parse("42.1796515200"), Some(SetName { index: 42, stamp_s: Some(1_796_515_200) }));
        for bad in ["", "x", "4.x", "meta", ".5"] {
            assert_eq!(SetName::parse(bad), None, "{bad}");
        }
        assert_eq!(SetName { index: 7, stamp_s: Some(9) }.to_string(), "7.9");
    }

    #[test]
    fn a_set_reads_back_and_damage_is_noticed() {
        let dir = tempfile::tempdir().unwrap();
        let set = KeptSet {
            mailbox: "Projects".into(),
            reason: KeptReason::FolderDeleted,
            messages: vec![KeptMessage {
                file: "1.R5_0.hermes,S=3".into(),
                flags: 1,
                keywords: vec!["$Label1".into()],
                internal_date: 5,
                size: 3,
                restored_by: None,
                mailbox: Some("Projects/Old".into()),
            }],
        };
        save(dir.path(), &set).unwrap();
        assert_eq!(load(dir.path()).unwrap(), set);
        let mut bytes = fs::read(dir.path().join(META)).unwrap();
        *bytes.last_mut().unwrap() ^= 1;
        fs::write(dir.path().join(META), bytes).unwrap();
        assert!(load(dir.path()).is_err());
    }

    #[test]
    fn a_backup_carries_its_longer_kept_sets_into_an_installed_snapshot() {
        let (old, new) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        for (root, sets) in [(old.path(), &["5.100", "9.200", "12"][..]), (new.path(), &["9.200", "30"][..])] {
            for set in sets {
                fs::create_dir_all(root.join("users/alice").join(DIR).join(set)).unwrap();
                fs::write(root.join("users/alice").join(DIR).join(set).join("f"), set.as_bytes()).unwrap();
            }
        }
        fs::create_dir_all(old.path().join("users/bob/kept/7")).unwrap();
        assert_eq!(carry_sets(old.path(), new.path()).unwrap(), 3, "5, 12 and bob's 7; 9 is there already");
        let names = |user: &str| -> Vec<String> {
            sets(&new.path().join("users").join(user)).unwrap().into_iter().map(|(n, _)| n.to_string()).collect()
        };
        assert_eq!(names("alice"), ["5.100", "9.200", "12", "30"]);
        assert_eq!(names("bob"), ["7"]);
        assert_eq!(
            fs::read(new.path().join("users/alice/kept/9.200/f")).unwrap(),
            b"9.200",
            "the new tree's own set stays"
        );
        assert_eq!(carry_sets(old.path(), new.path()).unwrap(), 0);
    }

    #[test]
    fn a_set_of_the_first_format_still_reads() {
        /// A message as `MSKEPT01` laid it out: file, flags, keywords, date, size, restored by.
        type MessageV1 = (String, u8, Vec<String>, i64, u64, Option<u64>);
        #[derive(Serialize)]
        struct V1 {
            mailbox: String,
            reason: KeptReason,
            messages: Vec<MessageV1>,
        }
        let v1 = V1 {
            mailbox: "INBOX".into(),
            reason: KeptReason::Expunged,
            messages: vec![("f".into(), 2, vec![], 7, 9, Some(3))],
        };
        let body = bincode::serialize(&v1).unwrap();
        let mut bytes = MAGIC_V1.to_vec();
        bytes.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
        bytes.extend_from_slice(&body);
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(META), bytes).unwrap();
        let set = load(dir.path()).unwrap();
        assert_eq!((set.mailbox.as_str(), set.messages.len()), ("INBOX", 1));
        let m = &set.messages[0];
        assert_eq!((m.file.as_str(), m.flags, m.restored_by, m.mailbox.as_deref()), ("f", 2, Some(3), None));
        assert_eq!(set.folder_of(m), "INBOX");
    }
}
