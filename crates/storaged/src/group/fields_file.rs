//! The sort fields of a mailbox's messages kept on this node's disk (`mailstore.fields` in
//! the mailbox's directory), so SORT, THREAD and the header keys of SEARCH on a large
//! mailbox read no message file after a restart, nor when the mailbox outgrows the
//! in-memory cache (`header_cache`).
//!
//! A cache, not content: node-local (never in a snapshot, never compared between
//! replicas), written without fsync, and any record that does not check out is ignored, so
//! a torn append or a stale record only costs a read of the message file. Each record is
//! keyed like the memory cache (the message file's unique name, size and checksum), so it
//! can only ever describe the bytes it was cut from. Records are appended by the sessions
//! that computed them, rewritten without the dead ones when they outnumber the live, and
//! every such file of the group is removed by a scrub round (`scrub`), so fields of purged
//! mail leave the disk with the rest of it. This module must never hold the store lock
//! while it reads or writes.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::mailstore::index::MessageMeta;

/// File name in a mailbox directory (snapshots skip it).
pub use crate::mailstore::snapshot::NODE_LOCAL_FILE as FIELDS_FILE;
/// A larger file is not read (and is replaced by the next append's rewrite): 64 MiB is
/// about 300,000 messages' fields (195 B each in `sort-thread-bench`).
pub const FILE_MAX_BYTES: u64 = 64 << 20;
/// Fields of one message larger than this are not kept (the memory cache's bound too).
const RECORD_MAX_BYTES: usize = super::header_cache::HEADER_CACHED_MAX_BYTES + 512;
/// A file is rewritten with only its live records once it holds more than twice as many as
/// the mailbox has messages, plus this slack (a small mailbox is not rewritten per expunge).
const DEAD_SLACK_RECORDS: usize = 256;

/// The identity of a message file: what a record must match to be used.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FileKey {
    pub base: String,
    pub size: u64,
    pub crc32c: u32,
}

impl FileKey {
    pub fn of(meta: &MessageMeta) -> Self {
        Self { base: meta.base.clone(), size: meta.size, crc32c: meta.crc32c }
    }
}

/// Every record of the file at `path` that checks out, the last one of a key winning, and
/// how many records it held. A missing, oversized or unreadable file reads as empty.
pub fn load(path: &Path) -> (HashMap<FileKey, Vec<u8>>, usize) {
    let mut bytes = Vec::new();
    let read = File::open(path).and_then(|f| f.take(FILE_MAX_BYTES + 1).read_to_end(&mut bytes));
    if read.is_err() || bytes.len() as u64 > FILE_MAX_BYTES {
        return (HashMap::new(), 0);
    }
    decode(&bytes)
}

/// The records of a fields file's bytes that check out (see [`load`]).
pub fn decode(bytes: &[u8]) -> (HashMap<FileKey, Vec<u8>>, usize) {
    let (mut out, mut records) = (HashMap::new(), 0);
    let mut rest = bytes;
    while let Some((key, fields, after)) = decode_record(rest) {
        out.insert(key, fields.to_vec());
        records += 1;
        rest = after;
    }
    (out, records)
}

/// Add `records` to the file at `path` (made 0600 if missing). Appends never rewrite: a
/// reader sees whole records or ignores a torn tail.
pub fn append(path: &Path, records: &[(FileKey, &[u8])]) -> io::Result<()> {
    let mut buf = Vec::new();
    for (key, fields) in records {
        encode_record(&mut buf, key, fields);
    }
    if buf.is_empty() {
        return Ok(());
    }
    let mut file = OpenOptions::new().create(true).append(true).mode(0o600).open(path)?;
    if file.metadata()?.len() + buf.len() as u64 > FILE_MAX_BYTES {
        // Full: start over with what this append brings (the rest is a cache).
        drop(file);
        return rewrite(path, records.iter().map(|(k, f)| (k, *f)));
    }
    file.write_all(&buf)
}

/// Whether a file of `records` records for a mailbox of `live` messages should be
/// rewritten without its dead records.
pub fn mostly_dead(records: usize, live: usize) -> bool {
    records > 2 * live + DEAD_SLACK_RECORDS
}

/// Replace the file at `path` with `records` alone (write to a temporary, then rename).
pub fn rewrite<'a>(path: &Path, records: impl Iterator<Item = (&'a FileKey, &'a [u8])>) -> io::Result<()> {
    let mut buf = Vec::new();
    for (key, fields) in records {
        encode_record(&mut buf, key, fields);
        if buf.len() as u64 > FILE_MAX_BYTES {
            break;
        }
    }
    let tmp = path.with_extension("fields.tmp");
    let mut file = OpenOptions::new().create(true).write(true).truncate(true).mode(0o600).open(&tmp)?;
    file.write_all(&buf)?;
    drop(file);
    fs::rename(&tmp, path)
}

/// Remove every fields file of the users under `users` (`ROOT/users`): in each Maildir and
/// its folders. Returns how many there were.
pub fn remove_all(users: &Path) -> io::Result<usize> {
    let mut removed = 0;
    let Ok(entries) = fs::read_dir(users) else { return Ok(0) };
    for user in entries.flatten() {
        let maildir = user.path().join("Maildir");
        let folders = fs::read_dir(&maildir).into_iter().flatten().flatten().map(|e| e.path()).filter(|p| p.is_dir());
        for dir in std::iter::once(maildir.clone()).chain(folders) {
            match fs::remove_file(dir.join(FIELDS_FILE)) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(removed)
}

/// `u32 length | u32 crc32c | u16 name length | name | u64 size | u32 file crc | fields`,
/// where length and crc32c cover everything after them. Keys or fields over the bounds
/// are not written.
fn encode_record(out: &mut Vec<u8>, key: &FileKey, fields: &[u8]) {
    let Ok(name_len) = u16::try_from(key.base.len()) else { return };
    let mut payload = Vec::with_capacity(2 + key.base.len() + 12 + fields.len());
    payload.extend_from_slice(&name_len.to_le_bytes());
    payload.extend_from_slice(key.base.as_bytes());
    payload.extend_from_slice(&key.size.to_le_bytes());
    payload.extend_from_slice(&key.crc32c.to_le_bytes());
    payload.extend_from_slice(fields);
    if payload.len() > RECORD_MAX_BYTES {
        return;
    }
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
}

/// The first record of `bytes` and what follows it; `None` at the end or at the first
/// record that does not check out (a torn or damaged tail ends the file).
fn decode_record(bytes: &[u8]) -> Option<(FileKey, &[u8], &[u8])> {
    let len = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(bytes.get(4..8)?.try_into().ok()?);
    if len > RECORD_MAX_BYTES {
        return None;
    }
    let payload = bytes.get(8..8 + len)?;
    if crc32c::crc32c(payload) != crc {
        return None;
    }
    let name_len = u16::from_le_bytes(payload.get(..2)?.try_into().ok()?) as usize;
    let base = std::str::from_utf8(payload.get(2..2 + name_len)?).ok()?.to_string();
    let at = 2 + name_len;
    let size = u64::from_le_bytes(payload.get(at..at + 8)?.try_into().ok()?);
    let crc32c = u32::from_le_bytes(payload.get(at + 8..at + 12)?.try_into().ok()?);
    let fields = payload.get(at + 12..)?;
    Some((FileKey { base, size, crc32c }, fields, &bytes[8 + len..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u32) -> FileKey {
        FileKey { base: format!("1700000000.R{n}_0.g,S=10"), size: 10, crc32c: n }
    }

    #[test]
    fn records_round_trip_and_a_torn_or_damaged_tail_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FIELDS_FILE);
        assert_eq!(load(&path).1, 0, "no file: nothing");
        append(&path, &[(key(1), b"Subject: a\r\n\r\n"), (key(2), b"Subject: b\r\n\r\n")]).unwrap();
        append(&path, &[(key(3), b"Subject: c\r\n\r\n")]).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let (found, records) = load(&path);
        assert_eq!((found.len(), records), (3, 3));
        assert_eq!(found[&key(2)], b"Subject: b\r\n\r\n");
        // A torn append: the records before it still read.
        let mut bytes = fs::read(&path).unwrap();
        let whole = bytes.len();
        bytes.truncate(whole - 3);
        fs::write(&path, &bytes).unwrap();
        let (found, _) = load(&path);
        assert!(found.contains_key(&key(2)) && !found.contains_key(&key(3)));
        // A flipped byte in the first record ends the file there.
        bytes[10] ^= 1;
        fs::write(&path, &bytes).unwrap();
        assert!(load(&path).0.is_empty());
    }

    #[test]
    fn a_record_matches_only_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FIELDS_FILE);
        append(&path, &[(key(1), b"Subject: a\r\n\r\n")]).unwrap();
        let (found, _) = load(&path);
        let other = FileKey { crc32c: 99, ..key(1) };
        assert!(!found.contains_key(&other), "another checksum is another file");
    }

    #[test]
    fn rewrites_keep_what_is_given_and_bounds_hold() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FIELDS_FILE);
        let keys: Vec<FileKey> = (0..10).map(key).collect();
        let fields = b"From: x\r\n\r\n".to_vec();
        append(&path, &keys.iter().map(|k| (k.clone(), &fields[..])).collect::<Vec<_>>()).unwrap();
        rewrite(&path, keys[..2].iter().map(|k| (k, &fields[..]))).unwrap();
        assert_eq!(load(&path).1, 2);
        assert!(mostly_dead(2 * 100 + DEAD_SLACK_RECORDS + 1, 100) && !mostly_dead(300, 100));
        let huge = vec![b'x'; RECORD_MAX_BYTES + 1];
        append(&path, &[(key(50), &huge[..])]).unwrap();
        assert_eq!(load(&path).1, 2, "fields over the bound are not kept");
    }
}
