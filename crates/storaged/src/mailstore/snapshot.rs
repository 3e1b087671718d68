//! Snapshot archives of a store tree: a stream of checksummed records, one per directory
//! or file, written in sorted order (so equal trees give equal archives) and verified
//! record by record on install.
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

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Component, Path, PathBuf};

const MAGIC: &[u8; 8] = b"MSSNAP01";
const KIND_DIR: u8 = 1;
const KIND_FILE: u8 = 2;
const KIND_LINK: u8 = 3;
const KIND_END: u8 = 255;
const PATH_MAX: usize = 4096;
/// Largest single file in an archive.
const FILE_MAX: u64 = 1 << 32;
const COPY_CHUNK: usize = 1 << 16;
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
            let p = rel.join(e.file_name());
            let node_local = e.file_name().to_str().is_some_and(|n| n.starts_with(NODE_LOCAL_FILE));
            if p == Path::new(super::spare::SPARE_DIR) || node_local {
                continue;
            }
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

fn record_header(kind: u8, path: &[u8], len: u64) -> Vec<u8> {
    let mut h = vec![kind];
    h.extend_from_slice(&(path.len() as u16).to_le_bytes());
    h.extend_from_slice(path);
    h.extend_from_slice(&len.to_le_bytes());
    h
}

/// Mirror the tree under `root` into `dest` (which must not exist) with hard links: cheap
/// (no data is copied) and a stable view, because the store never modifies a file in place
/// (message files, indexes and state are replaced by rename).
pub fn link_tree(root: &Path, dest: &Path) -> Result<(), SnapshotError> {
    fs::create_dir(dest)?;
    for (rel, kind) in walk(root)? {
        match kind {
            Kind::Dir => fs::create_dir_all(dest.join(&rel))?,
            Kind::File => fs::hard_link(root.join(&rel), dest.join(&rel))?,
            Kind::Link => std::os::unix::fs::symlink(fs::read_link(root.join(&rel))?, dest.join(&rel))?,
        }
    }
    Ok(())
}

/// Write an archive of everything under `root` to `out`.
pub fn build(root: &Path, out: &Path) -> Result<(), SnapshotError> {
    let mut w = BufWriter::new(File::create(out)?);
    w.write_all(MAGIC)?;
    let entries = walk(root)?;
    for (rel, kind) in &entries {
        let path = rel.to_str().ok_or_else(|| invalid("non-UTF-8 path in store"))?.as_bytes();
        if path.len() > PATH_MAX {
            return Err(invalid("path too long"));
        }
        if *kind == Kind::Dir {
            let h = record_header(KIND_DIR, path, 0);
            w.write_all(&h)?;
            w.write_all(&crc32c::crc32c(&h).to_le_bytes())?;
            continue;
        }
        if *kind == Kind::Link {
            let target = fs::read_link(root.join(rel))?;
            let target = target.to_str().ok_or_else(|| invalid("non-UTF-8 link target in store"))?.as_bytes();
            let mut h = record_header(KIND_LINK, path, target.len() as u64);
            h.extend_from_slice(target);
            w.write_all(&h)?;
            w.write_all(&crc32c::crc32c(&h).to_le_bytes())?;
            continue;
        }
        let mut f = File::open(root.join(rel))?;
        let len = f.metadata()?.len();
        let h = record_header(KIND_FILE, path, len);
        w.write_all(&h)?;
        let mut crc = crc32c::crc32c(&h);
        let mut buf = vec![0u8; COPY_CHUNK];
        let mut left = len;
        while left > 0 {
            let n = f.read(&mut buf[..(left.min(COPY_CHUNK as u64) as usize)])?;
            if n == 0 {
                return Err(invalid("file shrank while archiving"));
            }
            crc = crc32c::crc32c_append(crc, &buf[..n]);
            w.write_all(&buf[..n])?;
            left -= n as u64;
        }
        w.write_all(&crc.to_le_bytes())?;
    }
    let h = record_header(KIND_END, b"", entries.len() as u64);
    w.write_all(&h)?;
    w.write_all(&crc32c::crc32c(&h).to_le_bytes())?;
    let f = w.into_inner().map_err(|e| e.into_error())?;
    f.sync_all()?;
    Ok(())
}

fn safe_relative(path: &str) -> Result<PathBuf, SnapshotError> {
    if path.is_empty() || path.len() > PATH_MAX || path.contains('\0') {
        return Err(invalid(format!("bad path {path:?}")));
    }
    let p = PathBuf::from(path);
    if !p.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(invalid(format!("path {path:?} escapes the store")));
    }
    Ok(p)
}

/// Verify `archive` and unpack it into `dest` (which must not exist yet).
pub fn install(archive: &Path, dest: &Path) -> Result<(), SnapshotError> {
    let mut r = BufReader::new(File::open(archive)?);
    let mut magic = [0u8; 8];
    r.read_exact(&mut magic)?;
    if &magic != MAGIC {
        return Err(invalid("bad magic"));
    }
    fs::create_dir(dest)?;
    let mut count = 0u64;
    loop {
        let mut kind = [0u8; 1];
        r.read_exact(&mut kind)?;
        let mut plen = [0u8; 2];
        r.read_exact(&mut plen)?;
        let plen = u16::from_le_bytes(plen) as usize;
        if plen > PATH_MAX {
            return Err(invalid("path too long"));
        }
        let mut path = vec![0u8; plen];
        r.read_exact(&mut path)?;
        let mut len = [0u8; 8];
        r.read_exact(&mut len)?;
        let len = u64::from_le_bytes(len);
        let mut crc = crc32c::crc32c(&record_header(kind[0], &path, len));
        let path = String::from_utf8(path).map_err(|_| invalid("non-UTF-8 path"))?;
        match kind[0] {
            KIND_END => {
                let mut want = [0u8; 4];
                r.read_exact(&mut want)?;
                if u32::from_le_bytes(want) != crc || len != count {
                    return Err(invalid("bad end record"));
                }
                return Ok(());
            }
            KIND_DIR => {
                let mut want = [0u8; 4];
                r.read_exact(&mut want)?;
                if u32::from_le_bytes(want) != crc {
                    return Err(invalid(format!("checksum of {path}")));
                }
                fs::create_dir_all(dest.join(safe_relative(&path)?))?;
            }
            KIND_FILE => {
                if len > FILE_MAX {
                    return Err(invalid("file too large"));
                }
                let target = dest.join(safe_relative(&path)?);
                let mut f = BufWriter::new(File::create(&target)?);
                let mut buf = vec![0u8; COPY_CHUNK];
                let mut left = len;
                while left > 0 {
                    let n = left.min(COPY_CHUNK as u64) as usize;
                    r.read_exact(&mut buf[..n])?;
                    crc = crc32c::crc32c_append(crc, &buf[..n]);
                    f.write_all(&buf[..n])?;
                    left -= n as u64;
                }
                f.flush()?;
                let mut want = [0u8; 4];
                r.read_exact(&mut want)?;
                if u32::from_le_bytes(want) != crc {
                    return Err(invalid(format!("checksum of {path}")));
                }
            }
            KIND_LINK => {
                if len > PATH_MAX as u64 {
                    return Err(invalid("link target too long"));
                }
                let mut target = vec![0u8; len as usize];
                r.read_exact(&mut target)?;
                crc = crc32c::crc32c_append(crc, &target);
                let mut want = [0u8; 4];
                r.read_exact(&mut want)?;
                if u32::from_le_bytes(want) != crc {
                    return Err(invalid(format!("checksum of {path}")));
                }
                let target = String::from_utf8(target).map_err(|_| invalid("non-UTF-8 link target"))?;
                std::os::unix::fs::symlink(safe_relative(&target)?, dest.join(safe_relative(&path)?))?;
            }
            other => return Err(invalid(format!("unknown record kind {other}"))),
        }
        count += 1;
    }
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
