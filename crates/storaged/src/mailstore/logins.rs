//! Where a user's login history lives on a replica: `USER/logins`, a checksummed bincode
//! list replaced by rename (snapshots hard-link the tree), so it is replicated and moves
//! with the user's directory. What to keep is `common::logins`'s decision; the record's
//! time is the recording front's, written in the log, never this replica's clock.

use std::fs;
use std::io;
use std::path::Path;

use common::logins::LoginRecord;

pub const FILE: &str = "logins";
const MAGIC: &[u8; 8] = b"MSLOGIN1";
/// Largest file read back (bounded history, bounded names: far below this).
const FILE_MAX_BYTES: u64 = 1 << 20;

/// The user's history, oldest first (empty if none was recorded).
pub fn load(user_dir: &Path) -> io::Result<Vec<LoginRecord>> {
    let path = user_dir.join(FILE);
    match fs::metadata(&path) {
        Ok(m) if m.len() > FILE_MAX_BYTES => {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "login history too large"))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
        Ok(_) => {}
    }
    let bytes = fs::read(&path)?;
    let bad = |why: &str| io::Error::new(io::ErrorKind::InvalidData, format!("login history: {why}"));
    let body = bytes.strip_prefix(MAGIC.as_slice()).ok_or_else(|| bad("bad magic"))?;
    let (crc, body) = body.split_at_checked(4).ok_or_else(|| bad("truncated"))?;
    if crc32c::crc32c(body).to_le_bytes() != crc {
        return Err(bad("checksum mismatch"));
    }
    bincode::deserialize(body).map_err(|e| bad(&e.to_string()))
}

/// Add `record` to the user's history.
pub fn record(user_dir: &Path, record: LoginRecord) -> io::Result<()> {
    let mut history = load(user_dir).unwrap_or_else(|e| {
        tracing::warn!(dir = %user_dir.display(), error = %e, "unreadable login history; starting a new one");
        Vec::new()
    });
    common::logins::add(&mut history, record);
    let body = bincode::serialize(&history).map_err(io::Error::other)?;
    let mut bytes = MAGIC.to_vec();
    bytes.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
    bytes.extend_from_slice(&body);
    super::fileio::replace_private(user_dir, FILE, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_history_is_kept_and_a_damaged_file_is_noticed() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path()).unwrap().is_empty());
        let r = |at_s| LoginRecord {
            at_s,
            protocol: "POP3".into(),
            ip: "192.0.2.1".parse().unwrap(),
            country: Some("US".into()),
            continent: Some("NA".into()),
            location: Some((407_128, -740_060)),
            front: "f".into(),
        };
        record(dir.path(), r(2)).unwrap();
        record(dir.path(), r(1)).unwrap();
        assert_eq!(load(dir.path()).unwrap(), vec![r(1), r(2)]);
        let path = dir.path().join(FILE);
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(&path, bytes).unwrap();
        assert!(load(dir.path()).is_err());
        record(dir.path(), r(3)).unwrap();
        assert_eq!(load(dir.path()).unwrap(), vec![r(3)], "a damaged history starts over");
    }
}
