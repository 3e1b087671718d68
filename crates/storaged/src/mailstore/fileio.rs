//! Message file writes through io_uring, and removals of expunged message files.
//!
//! Writes are queued during an apply batch and flushed together: every file of the batch
//! is written (into a spare file, see [`super::spare`], or a new file in `tmp/`) with one
//! ring submission and then renamed into place (the Maildir delivery protocol), so a reader
//! never sees a partial message. No fsync here: the Raft log is the durability point until
//! a checkpoint syncs the filesystem.

use std::fs::OpenOptions;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use io_uring::{opcode, types, IoUring};

use super::spare::Spares;

/// Replace the small file `dir/name` with `bytes` (a user's scripts, memories, history):
/// written to a temporary name, owner-only from the moment it exists, then renamed over the
/// old one, so a reader (or a snapshot's hard link) never sees half a file.
pub fn replace_private(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut file = OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    io::Write::write_all(&mut file, bytes)?;
    // A temporary left by a crash may predate the mode above.
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
    std::fs::rename(&tmp, dir.join(name))
}

/// Files written per ring submission, at most.
const BATCH_MAX: usize = 128;

/// One queued file: written to `tmp`, then renamed to `dest`.
struct Pending {
    tmp: PathBuf,
    dest: PathBuf,
    data: Vec<u8>,
}

/// Queued message files, the ring that writes them, and the spare files they reuse.
pub struct FileWriter {
    ring: IoUring,
    pending: Vec<Pending>,
    spares: Spares,
}

impl FileWriter {
    pub fn new(spares: Spares) -> io::Result<Self> {
        Ok(Self { ring: IoUring::new(BATCH_MAX as u32)?, pending: Vec::new(), spares })
    }

    /// Remove the message file at `path` (keeping its inode as a spare when it may be);
    /// `Ok(false)` if it was already gone.
    pub fn retire(&mut self, path: &Path) -> io::Result<bool> {
        self.spares.retire(path)
    }

    /// Queue `data` to appear at `dest` after being written at `tmp`.
    pub fn queue(&mut self, tmp: PathBuf, dest: PathBuf, data: Vec<u8>) {
        self.pending.push(Pending { tmp, dest, data });
    }

    /// Whether anything is queued.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Write and rename every queued file.
    pub fn flush(&mut self) -> io::Result<()> {
        let pending = std::mem::take(&mut self.pending);
        for chunk in pending.chunks(BATCH_MAX) {
            self.write_chunk(chunk)?;
        }
        Ok(())
    }

    fn write_chunk(&mut self, chunk: &[Pending]) -> io::Result<()> {
        let mut written = Vec::with_capacity(chunk.len());
        let mut files = Vec::with_capacity(chunk.len());
        for p in chunk {
            let (path, file) = match self.spares.take() {
                Some(spare) => spare,
                None => (p.tmp.clone(), OpenOptions::new().write(true).create(true).truncate(true).open(&p.tmp)?),
            };
            written.push(path);
            files.push(file);
        }
        let mut entries = Vec::with_capacity(chunk.len());
        for (k, (p, f)) in chunk.iter().zip(&files).enumerate() {
            let len = u32::try_from(p.data.len()).map_err(|_| io::Error::other("message too large"))?;
            entries.push(
                opcode::Write::new(types::Fd(f.as_raw_fd()), p.data.as_ptr(), len)
                    .offset(0)
                    .build()
                    .user_data(k as u64),
            );
        }
        let mut others = Vec::new();
        // SAFETY: `chunk` (and so every buffer) and `files` outlive the call, which reaps every
        // completion (retrying interrupted waits) before it returns.
        let results = unsafe { uring::run(&mut self.ring, 0, &entries, &mut others)? };
        assert!(others.is_empty(), "the file ring runs nothing else");
        for (p, res) in chunk.iter().zip(results) {
            // Storage-fault tests: the disk refused this message file (checked only once
            // every completion is reaped: the kernel may still read the other buffers).
            fail::fail_point!("mailstore::write-eio", |_| Err(io::Error::from_raw_os_error(libc::EIO)));
            if res < 0 {
                return Err(io::Error::from_raw_os_error(-res));
            }
            if res as usize != p.data.len() {
                return Err(io::Error::new(io::ErrorKind::WriteZero, "short message write"));
            }
        }
        drop(files);
        for (p, from) in chunk.iter().zip(&written) {
            std::fs::rename(from, &p.dest)?;
        }
        Ok(())
    }
}
