//! IMAP METADATA entries (RFC 5464) of one mailbox, or of the user's "server", as the store
//! keeps them: a file in the mailbox's directory ([`MAILBOX_FILE`]), so RENAME carries them
//! and DELETE removes them with the mailbox; the user's server entries are in
//! [`SERVER_FILE`] at the Maildir root. The file is versioned and checksummed like the index
//! and replaced by rename, never rewritten in place (snapshots hard-link the tree).
//!
//! Every bound is here: entry name length, value size, entries and bytes per file. The IMAP
//! session checks them before proposing (to answer with RFC 5464's codes) and the store
//! checks them again when applying (two sessions may race); this module never decides how a
//! refusal is worded on the wire.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::Path;

/// File of a mailbox's entries, in the mailbox's directory.
pub const MAILBOX_FILE: &str = "mailstore.metadata";
/// File of the user's server entries, at the Maildir root.
pub const SERVER_FILE: &str = "mailstore.server-metadata";
const MAGIC: &[u8; 8] = b"MSMETA01";
/// Bytes before the payload: magic and crc32c.
const PREFIX_LEN: usize = 12;

/// Longest entry name, in bytes (`/private/vendor/...`).
pub const NAME_MAX_BYTES: usize = 256;
/// Largest value: what `GETMETADATA` reports as `[METADATA MAXSIZE n]` when exceeded.
pub const VALUE_MAX_BYTES: usize = 64 * 1024;
/// Entries per mailbox (or per user's server); more is `[METADATA TOOMANY]`.
pub const ENTRIES_MAX: usize = 128;
/// Names and values of one file together.
pub const FILE_MAX_BYTES: usize = 1 << 20;

/// Why entries cannot be stored or read.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("invalid entry name {0:?}")]
    BadName(String),
    #[error("value of {size} bytes is over the {max}-byte limit")]
    TooLarge { size: usize, max: usize },
    #[error("more than {max} entries, or more than {bytes_max} bytes of them")]
    TooMany { max: usize, bytes_max: usize },
    #[error("metadata file {0}: {1}")]
    Corrupt(String, &'static str),
    #[error("metadata file: {0}")]
    Io(#[from] io::Error),
}

/// An entry name as stored: lower case (names are case-insensitive, RFC 5464 §3.2), under
/// `/private` or `/shared`, with no wildcard, no empty component, and no trailing `/`.
pub fn entry_name(raw: &str) -> Result<String, MetadataError> {
    let bad = || MetadataError::BadName(raw.chars().take(NAME_MAX_BYTES).collect());
    let name = raw.to_ascii_lowercase();
    let valid_chars = name.bytes().all(|b| b.is_ascii_graphic() && !matches!(b, b'*' | b'%'));
    let under = ["/private/", "/shared/"].iter().any(|p| name.starts_with(p));
    let top = name == "/private" || name == "/shared";
    if name.len() > NAME_MAX_BYTES || !valid_chars || !(under || top) || name.ends_with('/') || name.contains("//") {
        return Err(bad());
    }
    Ok(name)
}

/// How far below a requested name GETMETADATA looks (RFC 5464 §4.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    Exact,
    Children,
    All,
}

/// The entries of one mailbox or server.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Entries(BTreeMap<String, Vec<u8>>);

impl Entries {
    /// The entries in `file`; none if it does not exist.
    pub fn load(file: &Path) -> Result<Self, MetadataError> {
        let bytes = match fs::read(file) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(e.into()),
        };
        Self::decode(&bytes, &file.display().to_string())
    }

    fn decode(bytes: &[u8], name: &str) -> Result<Self, MetadataError> {
        let corrupt = |why| MetadataError::Corrupt(name.to_string(), why);
        if bytes.len() < PREFIX_LEN || &bytes[..8] != MAGIC {
            return Err(corrupt("not a metadata file"));
        }
        if bytes.len() > PREFIX_LEN + 2 * FILE_MAX_BYTES {
            return Err(corrupt("larger than any metadata file written"));
        }
        let crc = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
        let payload = &bytes[PREFIX_LEN..];
        if crc32c::crc32c(payload) != crc {
            return Err(corrupt("checksum mismatch"));
        }
        let map: BTreeMap<String, Vec<u8>> = bincode::deserialize(payload).map_err(|_| corrupt("undecodable"))?;
        Ok(Self(map))
    }

    /// Write the entries into `dir` as `file_name` (temporary file and rename); an empty
    /// set removes the file.
    pub fn save(&self, dir: &Path, file_name: &str) -> Result<(), MetadataError> {
        let path = dir.join(file_name);
        if self.0.is_empty() {
            return match fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e.into()),
                _ => Ok(()),
            };
        }
        let payload = bincode::serialize(&self.0).expect("a map of strings and bytes serializes");
        let mut bytes = Vec::with_capacity(PREFIX_LEN + payload.len());
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
        bytes.extend_from_slice(&payload);
        let tmp = dir.join(format!(".{file_name}.tmp"));
        fs::write(&tmp, &bytes)?;
        fs::rename(&tmp, &path)?;
        Ok(())
    }

    /// Set (`Some`) or remove (`None`) each entry, all or none: a bad name or a bound
    /// exceeded leaves the entries as they were.
    pub fn apply(&mut self, changes: &[(String, Option<Vec<u8>>)]) -> Result<(), MetadataError> {
        let mut next = self.0.clone();
        for (name, value) in changes {
            let name = entry_name(name)?;
            match value {
                Some(v) if v.len() > VALUE_MAX_BYTES => {
                    return Err(MetadataError::TooLarge { size: v.len(), max: VALUE_MAX_BYTES })
                }
                Some(v) => next.insert(name, v.clone()),
                None => next.remove(&name),
            };
        }
        let bytes: usize = next.iter().map(|(k, v)| k.len() + v.len()).sum();
        if next.len() > ENTRIES_MAX || bytes > FILE_MAX_BYTES {
            return Err(MetadataError::TooMany { max: ENTRIES_MAX, bytes_max: FILE_MAX_BYTES });
        }
        self.0 = next;
        Ok(())
    }

    /// Every entry, in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
    }

    /// The value of one entry (`name` as stored, see [`entry_name`]).
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.0.get(name).map(Vec::as_slice)
    }

    /// Entries at or below `name` within `depth`, in name order.
    pub fn under<'a>(&'a self, name: &'a str, depth: Depth) -> impl Iterator<Item = (&'a str, &'a [u8])> + 'a {
        let prefix = format!("{name}/");
        let below = prefix.clone();
        self.0
            .range(name.to_string()..)
            .take_while(move |(k, _)| k.as_str() == name || k.starts_with(&below))
            .filter(move |(k, _)| match (depth, k.strip_prefix(prefix.as_str())) {
                (_, None) => true,
                (Depth::Exact, Some(_)) => false,
                (Depth::Children, Some(rest)) => !rest.contains('/'),
                (Depth::All, Some(_)) => true,
            })
            .map(|(k, v)| (k.as_str(), v.as_slice()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(pairs: &[(&str, Option<&str>)]) -> Vec<(String, Option<Vec<u8>>)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.map(|v| v.as_bytes().to_vec()))).collect()
    }

    #[test]
    fn rfc5464_3_2_names_are_case_insensitive_under_private_or_shared() {
        assert_eq!(entry_name("/Private/Comment").unwrap(), "/private/comment");
        for bad in ["/other/x", "/private/", "/private//x", "/shared/a*", "/shared/%", "comment", "/private/a b"] {
            assert!(entry_name(bad).is_err(), "{bad}");
        }
        assert!(entry_name(&format!("/shared/{}", "x".repeat(NAME_MAX_BYTES))).is_err());
    }

    #[test]
    fn rfc5464_4_2_2_depth_selects_the_entry_its_children_or_all_below() {
        let mut e = Entries::default();
        e.apply(&set(&[
            ("/private/vendor", Some("v")),
            ("/private/vendor/a", Some("1")),
            ("/private/vendor/a/deep", Some("2")),
            ("/private/vendorx", Some("not below")),
        ]))
        .unwrap();
        let names = |d| e.under("/private/vendor", d).map(|(k, _)| k.to_string()).collect::<Vec<_>>();
        assert_eq!(names(Depth::Exact), ["/private/vendor"]);
        assert_eq!(names(Depth::Children), ["/private/vendor", "/private/vendor/a"]);
        assert_eq!(names(Depth::All), ["/private/vendor", "/private/vendor/a", "/private/vendor/a/deep"]);
    }

    #[test]
    fn changes_are_all_or_none_and_bounded() {
        let mut e = Entries::default();
        e.apply(&set(&[("/shared/comment", Some("kept"))])).unwrap();
        let big = "x".repeat(VALUE_MAX_BYTES + 1);
        let err = e.apply(&set(&[("/shared/a", Some("1")), ("/shared/b", Some(&big))])).unwrap_err();
        assert!(matches!(err, MetadataError::TooLarge { .. }), "{err}");
        assert!(e.get("/shared/a").is_none(), "nothing of a refused change is kept");
        let many: Vec<_> = (0..ENTRIES_MAX).map(|k| (format!("/private/k{k}"), Some(vec![b'v']))).collect();
        assert!(matches!(e.apply(&many), Err(MetadataError::TooMany { .. })));
        e.apply(&set(&[("/shared/comment", None)])).unwrap();
        assert_eq!(e, Entries::default());
    }

    #[test]
    fn saved_entries_load_back_and_damage_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let mut e = Entries::default();
        e.apply(&[("/private/comment".into(), Some(vec![0, 1, 2, 255]))]).unwrap();
        e.save(dir.path(), MAILBOX_FILE).unwrap();
        let path = dir.path().join(MAILBOX_FILE);
        assert_eq!(Entries::load(&path).unwrap(), e);
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(&path, bytes).unwrap();
        assert!(matches!(Entries::load(&path), Err(MetadataError::Corrupt(..))));
        Entries::default().save(dir.path(), MAILBOX_FILE).unwrap();
        assert!(!path.exists(), "no entries, no file");
        assert_eq!(Entries::load(&path).unwrap(), Entries::default());
    }
}
