//! What a user's Sieve filtering remembers between messages: which senders a vacation
//! answered (RFC 5230 §4.2, "not again within :days") and which duplicate ids were seen
//! (RFC 7352). One file per user, `USER/sieve-memory`, replaced by rename (snapshots
//! hard-link the tree), so it is replicated and moves with the user like the rest of their
//! directory. Keys are stored as SHA-256 digests, so an entry has a fixed size whatever a
//! sender or script put in it; the file holds at most `ENTRIES_MAX`, the soonest to expire
//! dropped first. Time is always the caller's (the proposer's clock in the log), never this
//! replica's. This module must never decide what to remember.

use std::fs;
use std::io;
use std::path::Path;

use sha2::Digest;

pub const FILE: &str = "sieve-memory";
/// Entries one user's memory holds.
pub const ENTRIES_MAX: usize = 10_000;
const MAGIC: &[u8; 8] = b"MSSVMEM1";

type Entry = ([u8; 32], i64);

/// The digest a key is remembered by.
pub fn digest(key: &str) -> [u8; 32] {
    sha2::Sha256::digest(key.as_bytes()).into()
}

fn load(user_dir: &Path) -> io::Result<Vec<Entry>> {
    let bytes = match fs::read(user_dir.join(FILE)) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let Some(body) = bytes.strip_prefix(MAGIC.as_slice()) else {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "sieve memory: bad magic"));
    };
    let entries = body
        .chunks_exact(40)
        .map(|c| (c[..32].try_into().expect("32 bytes"), i64::from_le_bytes(c[32..].try_into().expect("8 bytes"))))
        .take(ENTRIES_MAX)
        .collect();
    Ok(entries)
}

/// Whether `key` is remembered and has not expired at `now_s`.
pub fn remembers(user_dir: &Path, key: &str, now_s: i64) -> io::Result<bool> {
    let digest = digest(key);
    Ok(load(user_dir)?.iter().any(|(d, expires_s)| *d == digest && *expires_s > now_s))
}

/// Adds `(key, expires_s)` entries (a later expiry replaces an earlier one), drops those
/// expired at `now_s`, and keeps the `ENTRIES_MAX` that expire last.
pub fn remember(user_dir: &Path, entries: &[(String, i64)], now_s: i64) -> io::Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    let mut all = load(user_dir)?;
    for (key, expires_s) in entries {
        let d = digest(key);
        match all.iter_mut().find(|(x, _)| *x == d) {
            Some(entry) => entry.1 = entry.1.max(*expires_s),
            None => all.push((d, *expires_s)),
        }
    }
    all.retain(|(_, expires_s)| *expires_s > now_s);
    all.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    all.truncate(ENTRIES_MAX);
    let mut bytes = MAGIC.to_vec();
    for (d, expires_s) in &all {
        bytes.extend_from_slice(d);
        bytes.extend_from_slice(&expires_s.to_le_bytes());
    }
    super::fileio::replace_private(user_dir, FILE, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_until_expiry_and_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!remembers(dir.path(), "a", 0).unwrap());
        remember(dir.path(), &[("a".into(), 100)], 0).unwrap();
        assert!(remembers(dir.path(), "a", 99).unwrap());
        assert!(!remembers(dir.path(), "a", 100).unwrap());
        remember(dir.path(), &[("a".into(), 50)], 0).unwrap();
        assert!(remembers(dir.path(), "a", 99).unwrap(), "a shorter expiry never shortens");
        let many: Vec<(String, i64)> = (0..ENTRIES_MAX + 10).map(|i| (format!("k{i}"), 1000 + i as i64)).collect();
        remember(dir.path(), &many, 0).unwrap();
        assert_eq!(fs::metadata(dir.path().join(FILE)).unwrap().len() as usize, 8 + 40 * ENTRIES_MAX);
        assert!(remembers(dir.path(), &format!("k{}", ENTRIES_MAX + 9), 0).unwrap());
        assert!(!remembers(dir.path(), "k0", 0).unwrap(), "the soonest to expire went first");
    }
}
