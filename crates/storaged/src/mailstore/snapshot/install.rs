//! Unpacking an archive a peer sent: every record's checksum verified, every path kept
//! inside the destination. What this must never do: write outside `dest`, follow a link
//! out of it, or allocate by a length the archive claims (files are copied in chunks,
//! paths and link targets are bounded).

use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Component, Path, PathBuf};

use super::{
    invalid, record_header, SnapshotError, FILE_MAX, KIND_DIR, KIND_END, KIND_FILE, KIND_LINK, MAGIC, PATH_MAX,
};

/// Bytes copied at a time.
const COPY_CHUNK: usize = 1 << 16;

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
