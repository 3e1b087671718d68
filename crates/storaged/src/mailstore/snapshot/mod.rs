//! Snapshot archives of a store tree: a stream of checksummed records, one per directory
//! or file, in sorted order (so equal trees give equal archives), verified record by record
//! on install (`install`).
//!
//! A snapshot is kept as a hard-link mirror of the store (`link_tree`), which costs no copy
//! of the mail because the store never writes a file in place; the archive is produced from
//! that mirror only while it is being sent (`archive`), and is written to a file only on the
//! receiving side.
//!
//! ```text
//! "MSSNAP01"
//! record: kind (1 dir, 2 file, 3 symbolic link, 255 end) | u16 path length | path
//!         | u64 data length | data (a file's bytes, a link's target)
//!         | u32 crc32c of everything in the record before it
//! end record: path empty, data length = number of records before it
//! ```
//!
//! Install refuses any path that is absolute, has a `..`/`.` component, a NUL, or is too
//! long, so an archive can never write outside the directory it is unpacked into; a link's
//! target must be such a relative path too (the active Sieve script's `sieve/NAME.sieve`).

mod archive;
mod install;
mod link;

use std::fs::{self, File};
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};

pub use archive::{Manifest, TreeArchive};
pub use install::install;
pub use link::{link_live, refresh, settle, LivePass, Settled};

const MAGIC: &[u8; 8] = b"MSSNAP01";
const KIND_DIR: u8 = 1;
const KIND_FILE: u8 = 2;
const KIND_LINK: u8 = 3;
const KIND_END: u8 = 255;
const PATH_MAX: usize = 4096;
/// Largest single file in an archive.
const FILE_MAX: u64 = 1 << 32;
/// The name (and, with a suffix, the temporaries) of a node's own cache file in a mailbox
/// directory (the sort fields `group::fields_file` keeps): never in a snapshot, because it
/// is no part of the replicated state and is appended to in place.
pub const NODE_LOCAL_FILE: &str = "mailstore.fields";

/// Snapshot archive errors.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot I/O: {0}")]
    Io(#[from] io::Error),
    #[error("snapshot archive is invalid: {0}")]
    Invalid(String),
}

fn invalid(msg: impl Into<String>) -> SnapshotError {
    SnapshotError::Invalid(msg.into())
}

/// Everything under `root` (relative paths), directories before their contents, sorted;
/// never the spare files (see `spare`): they belong to no user, and a snapshot's hard link
/// to one would be overwritten when the spare is reused; never a node's own cache files
/// ([`NODE_LOCAL_FILE`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dir,
    File,
    Link,
}

fn walk(root: &Path) -> io::Result<Vec<(PathBuf, Kind)>> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let mut entries: Vec<_> = fs::read_dir(root.join(&rel))?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        let mut dirs = Vec::new();
        for e in entries {
            if excluded(&rel, &e.file_name()) {
                continue;
            }
            let p = rel.join(e.file_name());
            let file_type = e.file_type()?;
            if file_type.is_dir() {
                out.push((p.clone(), Kind::Dir));
                dirs.push(p);
            } else if file_type.is_file() {
                out.push((p, Kind::File));
            } else if file_type.is_symlink() {
                out.push((p, Kind::Link));
            }
        }
        stack.extend(dirs.into_iter().rev());
    }
    Ok(out)
}

/// Whether the entry `name` of the directory `rel` (relative to the store root) stays out
/// of snapshots: the spare files' directory and a node's own cache files.
fn excluded(rel: &Path, name: &std::ffi::OsStr) -> bool {
    let node_local = name.to_str().is_some_and(|n| n.starts_with(NODE_LOCAL_FILE));
    node_local || (rel.as_os_str().is_empty() && name == super::spare::SPARE_DIR)
}

fn record_header(kind: u8, path: &[u8], len: u64) -> Vec<u8> {
    let mut h = vec![kind];
    h.extend_from_slice(&(path.len() as u16).to_le_bytes());
    h.extend_from_slice(path);
    h.extend_from_slice(&len.to_le_bytes());
    h
}

/// Mirror the tree under `root` into `dest` (which must not exist) with hard links, `root`
/// held still: cheap (no data is copied) and a stable view, because the store never
/// modifies a file in place (message files, indexes and state are replaced by rename).
/// A store that keeps running links with [`link_live`] and holds still only for [`settle`].
#[cfg(test)]
pub fn link_tree(root: &Path, dest: &Path) -> Result<(), SnapshotError> {
    let pass = link_live(root, dest)?;
    let settled = settle(root, dest, &dest.with_extension("discard"), &pass)?;
    debug_assert_eq!(settled.added + settled.removed, 0, "nothing moved while {} was linked", root.display());
    Ok(())
}

/// Write an archive of everything under `root` to `out` (what a receiving replica holds
/// once a snapshot has been sent; for tests and tools: a node sends its snapshot from its
/// link tree, see [`TreeArchive`]).
pub fn build(root: &Path, out: &Path) -> Result<(), SnapshotError> {
    let mut archive = TreeArchive::new(root.to_path_buf());
    let mut w = BufWriter::new(File::create(out)?);
    io::copy(&mut archive, &mut w)?;
    let f = w.into_inner().map_err(|e| e.into_error())?;
    f.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_tamper_and_escape() {
        let src = tempfile::tempdir().unwrap();
        fs::create_dir_all(src.path().join("users/a/Maildir/cur")).unwrap();
        fs::write(src.path().join("users/a/Maildir/cur/1:2,S"), b"hello").unwrap();
        fs::write(src.path().join("sm.state"), vec![7u8; 100_000]).unwrap();
        fs::write(src.path().join("users/a/Maildir").join(NODE_LOCAL_FILE), b"cache").unwrap();
        let work = tempfile::tempdir().unwrap();
        let arc = work.path().join("snap");
        build(src.path(), &arc).unwrap();
        install(&arc, &work.path().join("out")).unwrap();
        assert_eq!(fs::read(work.path().join("out/users/a/Maildir/cur/1:2,S")).unwrap(), b"hello");
        assert_eq!(fs::read(work.path().join("out/sm.state")).unwrap().len(), 100_000);
        assert!(!work.path().join("out/users/a/Maildir").join(NODE_LOCAL_FILE).exists(), "a node's own cache");
        link_tree(src.path(), &work.path().join("linked")).unwrap();
        assert!(!work.path().join("linked/users/a/Maildir").join(NODE_LOCAL_FILE).exists());

        let mut bytes = fs::read(&arc).unwrap();
        let at = bytes.len() / 2;
        bytes[at] ^= 1;
        fs::write(&arc, &bytes).unwrap();
        assert!(install(&arc, &work.path().join("out2")).is_err());

        // A hand-made archive with an escaping path is refused before anything is written.
        let mut evil = MAGIC.to_vec();
        let h = record_header(KIND_FILE, b"../escaped", 1);
        evil.extend_from_slice(&h);
        evil.push(b'x');
        evil.extend_from_slice(&crc32c::crc32c_append(crc32c::crc32c(&h), b"x").to_le_bytes());
        fs::write(&arc, &evil).unwrap();
        assert!(matches!(install(&arc, &work.path().join("out3")), Err(SnapshotError::Invalid(_))));
        assert!(!work.path().join("escaped").exists());
    }

    #[test]
    fn links_travel_and_may_not_escape() {
        let src = tempfile::tempdir().unwrap();
        fs::create_dir_all(src.path().join("users/a/sieve")).unwrap();
        fs::write(src.path().join("users/a/sieve/main.sieve"), b"keep;").unwrap();
        std::os::unix::fs::symlink("sieve/main.sieve", src.path().join("users/a/.dovecot.sieve")).unwrap();
        let work = tempfile::tempdir().unwrap();
        let arc = work.path().join("snap");
        build(src.path(), &arc).unwrap();
        install(&arc, &work.path().join("out")).unwrap();
        let link = work.path().join("out/users/a/.dovecot.sieve");
        assert_eq!(fs::read_link(&link).unwrap(), Path::new("sieve/main.sieve"));
        assert_eq!(fs::read(&link).unwrap(), b"keep;");
        link_tree(src.path(), &work.path().join("linked")).unwrap();
        assert_eq!(
            fs::read_link(work.path().join("linked/users/a/.dovecot.sieve")).unwrap(),
            Path::new("sieve/main.sieve")
        );

        let mut evil = MAGIC.to_vec();
        let mut h = record_header(KIND_LINK, b"l", 11);
        h.extend_from_slice(b"/etc/passwd");
        evil.extend_from_slice(&h);
        evil.extend_from_slice(&crc32c::crc32c(&h).to_le_bytes());
        fs::write(&arc, &evil).unwrap();
        assert!(matches!(install(&arc, &work.path().join("out4")), Err(SnapshotError::Invalid(_))));
        assert!(fs::symlink_metadata(work.path().join("out4/l")).is_err());
    }
}
