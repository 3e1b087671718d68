//! The archive of a tree, produced on demand from the tree's files instead of written out:
//! byte for byte what `build` writes, readable from any position (`Read` + `Seek`), so a
//! replica can send its snapshot straight from its link tree and keep no second copy of
//! the mail.
//!
//! The manifest (every record's path, kind, length and place in the archive) is taken
//! when the archive is first read or sought, by walking the tree; each record's checksum
//! is computed as its bytes stream by, and recomputed from the record's start after a seek
//! into its middle. What this must never do: serve bytes of a file other than the one the
//! manifest measured. The tree is a hard-link mirror of a store that never writes a file
//! in place, so a file whose length changed is an error, not a new version.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::{invalid, record_header, walk, Kind, SnapshotError, KIND_DIR, KIND_END, KIND_FILE, KIND_LINK, MAGIC};

/// Bytes read at a time when a record's checksum is recomputed.
const CRC_CHUNK: usize = 1 << 16;
/// Length of a record's checksum.
const CRC_LEN: u64 = 4;

/// What follows a record's header.
#[derive(Debug)]
enum Body {
    /// Nothing (a directory, the end record).
    Empty,
    /// A link's target.
    Inline(Box<[u8]>),
    /// A file's bytes: this many, read from the file at the record's path.
    File(u64),
}

#[derive(Debug)]
struct Record {
    kind: u8,
    path: Box<[u8]>,
    body: Body,
    /// Where the record starts in the archive.
    start: u64,
}

impl Record {
    /// The header's length field: the body's length, or for the end record the number of
    /// records before it.
    fn header(&self, records_before: u64) -> Vec<u8> {
        let len = match &self.body {
            Body::Empty if self.kind == KIND_END => records_before,
            Body::Empty => 0,
            Body::Inline(target) => target.len() as u64,
            Body::File(len) => *len,
        };
        record_header(self.kind, &self.path, len)
    }

    fn header_len(&self) -> u64 {
        (1 + 2 + self.path.len() + 8) as u64
    }

    fn body_len(&self) -> u64 {
        match &self.body {
            Body::Empty => 0,
            Body::Inline(target) => target.len() as u64,
            Body::File(len) => *len,
        }
    }

    /// Header, body and checksum.
    fn len(&self) -> u64 {
        self.header_len() + self.body_len() + CRC_LEN
    }
}

/// Every record of a tree's archive, in archive order.
#[derive(Debug)]
pub struct Manifest {
    records: Vec<Record>,
    len_bytes: u64,
}

impl Manifest {
    /// Walk `root` and measure every file.
    pub fn of(root: &Path) -> Result<Self, SnapshotError> {
        let entries = walk(root)?;
        let mut records = Vec::with_capacity(entries.len() + 1);
        let mut at = MAGIC.len() as u64;
        for (rel, kind) in &entries {
            let path = rel.to_str().ok_or_else(|| invalid("non-UTF-8 path in store"))?.as_bytes();
            if path.len() > super::PATH_MAX {
                return Err(invalid("path too long"));
            }
            let (kind, body) = match kind {
                Kind::Dir => (KIND_DIR, Body::Empty),
                Kind::File => (KIND_FILE, Body::File(fs::symlink_metadata(root.join(rel))?.len())),
                Kind::Link => {
                    let target = fs::read_link(root.join(rel))?;
                    let target = target.to_str().ok_or_else(|| invalid("non-UTF-8 link target in store"))?;
                    (KIND_LINK, Body::Inline(target.as_bytes().into()))
                }
            };
            let record = Record { kind, path: path.into(), body, start: at };
            at += record.len();
            records.push(record);
        }
        let end = Record { kind: KIND_END, path: Box::default(), body: Body::Empty, start: at };
        at += end.len();
        records.push(end);
        Ok(Self { records, len_bytes: at })
    }

    /// The archive's length.
    pub fn len_bytes(&self) -> u64 {
        self.len_bytes
    }
}

/// The checksum of record `index` over its first `covered` bytes (header and body).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Running {
    index: usize,
    covered: u64,
    crc: u32,
}

/// The archive of a tree, read from the tree.
#[derive(Debug)]
pub struct TreeArchive {
    root: PathBuf,
    manifest: Option<Manifest>,
    pos: u64,
    /// The file of the record being read, by record index.
    open: Option<(usize, File)>,
    running: Option<Running>,
}

impl TreeArchive {
    /// The archive of `root`; the tree is walked at the first read or seek.
    pub fn new(root: PathBuf) -> Self {
        Self { root, manifest: None, pos: 0, open: None, running: None }
    }

    fn manifest(&mut self) -> io::Result<&Manifest> {
        if self.manifest.is_none() {
            self.manifest = Some(Manifest::of(&self.root).map_err(to_io)?);
        }
        Ok(self.manifest.as_ref().expect("just set"))
    }

    /// The archive's length (walks the tree the first time).
    pub fn len_bytes(&mut self) -> io::Result<u64> {
        Ok(self.manifest()?.len_bytes)
    }

    /// Read body bytes of record `index` from `offset` into `out`.
    fn read_body(&mut self, index: usize, offset: u64, out: &mut [u8]) -> io::Result<usize> {
        let manifest = self.manifest.as_ref().expect("read after the manifest");
        let record = &manifest.records[index];
        let left = usize::try_from(record.body_len() - offset).unwrap_or(usize::MAX);
        let n = out.len().min(left);
        match &record.body {
            Body::Empty => unreachable!("an empty body has no bytes to read"),
            Body::Inline(target) => {
                out[..n].copy_from_slice(&target[offset as usize..offset as usize + n]);
                Ok(n)
            }
            Body::File(len) => {
                let len = *len;
                if self.open.as_ref().is_none_or(|(i, _)| *i != index) {
                    let path = self.root.join(std::str::from_utf8(&record.path).expect("paths are UTF-8"));
                    let file = File::open(&path)?;
                    if file.metadata()?.len() != len {
                        return Err(to_io(invalid(format!("{} changed since the snapshot was taken", path.display()))));
                    }
                    self.open = Some((index, file));
                }
                let (_, file) = self.open.as_ref().expect("just opened");
                let got = file.read_at(&mut out[..n], offset)?;
                if got == 0 {
                    return Err(to_io(invalid("a snapshot file shrank while it was read")));
                }
                Ok(got)
            }
        }
    }

    /// The checksum of record `index` (header and whole body), from the running one if it
    /// got that far, else read again from the record's start.
    fn crc_of(&mut self, index: usize) -> io::Result<u32> {
        let (header, body_len) = {
            let record = &self.manifest.as_ref().expect("read after the manifest").records[index];
            (record.header(index as u64), record.body_len())
        };
        let covered = header.len() as u64 + body_len;
        if let Some(r) = self.running.filter(|r| r.index == index && r.covered == covered) {
            return Ok(r.crc);
        }
        let mut crc = crc32c::crc32c(&header);
        let mut buf = vec![0u8; CRC_CHUNK];
        let mut offset = 0;
        while offset < body_len {
            let n = self.read_body(index, offset, &mut buf)?;
            crc = crc32c::crc32c_append(crc, &buf[..n]);
            offset += n as u64;
        }
        Ok(crc)
    }

    /// Carry the running checksum over `bytes`, read at `at` in record `index`.
    fn note(&mut self, index: usize, at: u64, bytes: &[u8]) {
        let len = bytes.len() as u64;
        self.running = match self.running {
            Some(r) if r.index == index && r.covered == at => {
                Some(Running { index, covered: at + len, crc: crc32c::crc32c_append(r.crc, bytes) })
            }
            _ if at == 0 => Some(Running { index, covered: len, crc: crc32c::crc32c(bytes) }),
            // A seek into the middle of a record: recomputed when its checksum is due.
            other => other,
        };
    }

    /// Read from record `index`, `at` bytes into it.
    fn read_record(&mut self, index: usize, at: u64, out: &mut [u8]) -> io::Result<usize> {
        let (header, body_len) = {
            let record = &self.manifest.as_ref().expect("read after the manifest").records[index];
            (record.header(index as u64), record.body_len())
        };
        let header_len = header.len() as u64;
        if at < header_len {
            let n = out.len().min((header_len - at) as usize);
            out[..n].copy_from_slice(&header[at as usize..at as usize + n]);
            self.note(index, at, &out[..n]);
            return Ok(n);
        }
        if at < header_len + body_len {
            let n = self.read_body(index, at - header_len, out)?;
            self.note(index, at, &out[..n]);
            return Ok(n);
        }
        let crc = self.crc_of(index)?.to_le_bytes();
        let from = (at - header_len - body_len) as usize;
        let n = out.len().min(crc.len() - from);
        out[..n].copy_from_slice(&crc[from..from + n]);
        Ok(n)
    }
}

fn to_io(e: SnapshotError) -> io::Error {
    match e {
        SnapshotError::Io(e) => e,
        SnapshotError::Invalid(msg) => io::Error::new(io::ErrorKind::InvalidData, msg),
    }
}

impl Read for TreeArchive {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let pos = self.pos;
        let manifest = self.manifest()?;
        if out.is_empty() || pos >= manifest.len_bytes {
            return Ok(0);
        }
        let n = if pos < MAGIC.len() as u64 {
            let n = out.len().min(MAGIC.len() - pos as usize);
            out[..n].copy_from_slice(&MAGIC[pos as usize..pos as usize + n]);
            n
        } else {
            let index = manifest.records.partition_point(|r| r.start <= pos) - 1;
            let at = pos - manifest.records[index].start;
            self.read_record(index, at, out)?
        };
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for TreeArchive {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.manifest()?.len_bytes.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = target.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        Ok(self.pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("users/a/Maildir/cur")).unwrap();
        fs::create_dir_all(dir.path().join("users/b/Maildir/new")).unwrap();
        for k in 0..20u32 {
            let body: Vec<u8> = (0..(k * 9_001) % 200_000).map(|i| (i * 7 + k) as u8).collect();
            fs::write(dir.path().join(format!("users/a/Maildir/cur/{k}:2,S")), body).unwrap();
        }
        fs::write(dir.path().join("users/b/Maildir/new/empty"), b"").unwrap();
        std::os::unix::fs::symlink("Maildir/new/empty", dir.path().join("users/b/link")).unwrap();
        dir
    }

    fn all(archive: &mut TreeArchive) -> Vec<u8> {
        let mut out = Vec::new();
        archive.read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn reads_anywhere_as_the_written_archive() {
        let src = tree();
        let work = tempfile::tempdir().unwrap();
        let mut archive = TreeArchive::new(src.path().to_path_buf());
        let whole = all(&mut archive);
        assert_eq!(archive.len_bytes().unwrap(), whole.len() as u64);
        // What a receiver unpacks is the tree.
        fs::write(work.path().join("a.snap"), &whole).unwrap();
        super::super::install(&work.path().join("a.snap"), &work.path().join("out")).unwrap();
        assert_eq!(Manifest::of(&work.path().join("out")).unwrap().len_bytes, whole.len() as u64);
        let mut again = TreeArchive::new(work.path().join("out"));
        assert_eq!(all(&mut again), whole, "the unpacked tree archives to the same bytes");

        // Chunks from scattered positions, as a sender retrying chunks seeks, read the same
        // bytes, checksums included (a seek into a record's middle recomputes its checksum).
        let mut archive = TreeArchive::new(src.path().to_path_buf());
        let mut state = 0x2545_f491_u64;
        for _ in 0..300 {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let at = (state >> 33) % whole.len() as u64;
            let want = 1 + (state >> 13) as usize % 70_000;
            archive.seek(SeekFrom::Start(at)).unwrap();
            let mut got = vec![0u8; want];
            let mut filled = 0;
            while filled < want {
                let n = archive.read(&mut got[filled..]).unwrap();
                if n == 0 {
                    break;
                }
                filled += n;
            }
            let end = (at as usize + want).min(whole.len());
            assert_eq!(&got[..filled], &whole[at as usize..end], "{want} bytes at {at}");
        }
        assert_eq!(archive.seek(SeekFrom::End(0)).unwrap(), whole.len() as u64);
        assert!(archive.seek(SeekFrom::Current(-(whole.len() as i64) - 1)).is_err());
    }

    #[test]
    fn a_file_changed_behind_the_manifest_is_an_error_not_new_bytes() {
        let src = tree();
        let mut archive = TreeArchive::new(src.path().to_path_buf());
        archive.len_bytes().unwrap();
        fs::write(src.path().join("users/a/Maildir/cur/3:2,S"), b"a different message").unwrap();
        let mut out = Vec::new();
        let err = archive.read_to_end(&mut out).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        assert!(err.to_string().contains("changed since the snapshot"), "{err}");
    }
}
