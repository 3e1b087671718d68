//! Spare message files: the inodes of expunged messages, kept to be rewritten for new ones.
//!
//! Creating a file costs the filesystem an inode allocation and deleting one an inode free;
//! on ext4 without a journal the allocator also skips every inode freed in the last minutes,
//! reading each one's on-disk copy to find that out, so a mailbox with steady APPEND and
//! EXPUNGE traffic made every new message file scan thousands of inodes (a quarter of the CPU
//! of a loaded node). An expunged file is renamed here instead of unlinked, and a new
//! message is written into a spare (truncated first) and renamed into its Maildir.
//!
//! What this must never do: reuse an inode that is still reachable under another name, or
//! that a reader may still be reading. A file with more than one link (a COPY's hard link, or
//! a snapshot's link tree) is unlinked, never kept; the spare directory ([`SPARE_DIR`] at the
//! store root, outside every user's Maildir) is left out of snapshots, so no snapshot links a
//! spare. A retired file whose path a reader may have looked up (see [`super::readers`]) cools,
//! bytes intact, until every such reader has let go; only then is it truncated and handed out.
//! So a reader racing an expunge reads the whole expunged message or finds no file, never the
//! bytes of another message. A spare's stale bytes are truncated away as soon as no reader can
//! hold it, so expunged mail does not linger on disk under a name.

use std::collections::VecDeque;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::readers::{Quiet, Readers};

/// The spare files' directory under a store root.
pub const SPARE_DIR: &str = ".spare";
/// Spare files kept per store (free and cooling): enough to absorb a burst of expunges, few
/// enough that the directory stays small.
pub const SPARES_MAX: usize = 4096;

/// The spare files of one store, in a directory of their own on the same filesystem.
pub struct Spares {
    dir: PathBuf,
    /// Empty, and no reader can hold them.
    free: Vec<PathBuf>,
    /// Retired while readers that may hold them were live: (stamp, path), stamps rising.
    cooling: VecDeque<(u64, PathBuf)>,
    readers: Readers,
    next_name: u64,
}

impl Spares {
    /// Open (creating) `dir`, keeping the spares a previous run left, up to [`SPARES_MAX`].
    /// No reader of this run has seen them, so they are all free.
    pub fn open(dir: impl Into<PathBuf>, readers: Readers) -> io::Result<Self> {
        let dir = dir.into();
        fs::create_dir_all(&dir)?;
        let mut spares = Self { dir, free: Vec::new(), cooling: VecDeque::new(), readers, next_name: 0 };
        for entry in fs::read_dir(&spares.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let number = name.to_str().and_then(|n| n.strip_prefix('s')).and_then(|n| n.parse::<u64>().ok());
            let is_file = entry.file_type()?.is_file();
            match number {
                Some(n) if is_file && spares.free.len() < SPARES_MAX => {
                    // A spare left cooling by the previous run still has its old bytes.
                    truncate(&entry.path())?;
                    spares.next_name = spares.next_name.max(n + 1);
                    spares.free.push(entry.path());
                }
                _ if is_file => fs::remove_file(entry.path())?,
                _ => fs::remove_dir_all(entry.path())?,
            }
        }
        Ok(spares)
    }

    /// Retire the message file at `path` (under the store lock, like the lookups that lease
    /// reads): keep its inode as a spare if nothing else links to it and there is room, else
    /// unlink it. `Ok(false)` if there was no such file.
    pub fn retire(&mut self, path: &Path) -> io::Result<bool> {
        let meta = match fs::symlink_metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        if meta.is_file() && meta.nlink() == 1 && self.len() < SPARES_MAX {
            let spare = self.dir.join(format!("s{}", self.next_name));
            self.next_name += 1;
            fs::rename(path, &spare)?;
            let sealed = self.readers.seal();
            self.cooling.push_back((sealed.stamp, spare));
            // The expunged mail's blocks are freed as soon as no reader can hold them (at
            // once, as an unlink would free them, when none could).
            self.reclaim(sealed.quiet)?;
            return Ok(true);
        }
        match fs::remove_file(path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Move the cooled spares no reader could hold when `quiet` was seen to the free list,
    /// emptied.
    fn reclaim(&mut self, quiet: Quiet) -> io::Result<()> {
        while let Some((stamp, _)) = self.cooling.front() {
            if !quiet.since(*stamp) {
                break;
            }
            let (_, path) = self.cooling.pop_front().expect("front exists");
            match truncate(&path) {
                Ok(()) => self.free.push(path),
                // Removed behind our back (an operator cleaning up): forget it.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// An (empty) spare file no reader can hold, opened for writing, if one is left.
    pub fn take(&mut self) -> Option<(PathBuf, fs::File)> {
        if let Err(e) = self.reclaim(self.readers.quiet()) {
            tracing::warn!(error = %e, "cooled spare files could not be emptied; writing new files");
            return None;
        }
        while let Some(path) = self.free.pop() {
            match fs::OpenOptions::new().write(true).open(&path) {
                Ok(file) => return Some((path, file)),
                // Removed behind our back (an operator cleaning up): try the next one.
                Err(e) => tracing::debug!(path = %path.display(), error = %e, "spare file unusable"),
            }
        }
        None
    }

    /// Spare files on hand, free or cooling.
    pub fn len(&self) -> usize {
        self.free.len() + self.cooling.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Spare files that may be handed out now.
    pub fn free(&self) -> usize {
        self.free.len()
    }
}

/// Empty the file at `path` (keeping its inode).
fn truncate(path: &Path) -> io::Result<()> {
    fs::OpenOptions::new().write(true).truncate(true).open(path).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_retired_file_is_reused_empty_and_linked_files_are_never_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let mut spares = Spares::open(tmp.path().join("spare"), Readers::default()).unwrap();
        let a = tmp.path().join("a");
        fs::write(&a, b"someone's old message").unwrap();
        assert!(spares.retire(&a).unwrap());
        assert!(!a.exists());
        assert_eq!(spares.len(), 1);
        let kept: Vec<_> = fs::read_dir(tmp.path().join("spare")).unwrap().flatten().collect();
        assert_eq!(kept[0].metadata().unwrap().len(), 0, "no expunged bytes stay on disk");
        assert!(!spares.retire(&a).unwrap(), "a missing file is reported, not an error");

        let linked = tmp.path().join("b");
        fs::write(&linked, b"copied").unwrap();
        fs::hard_link(&linked, tmp.path().join("b-copy")).unwrap();
        assert!(spares.retire(&linked).unwrap());
        assert_eq!(spares.len(), 1, "a file with another link is unlinked, not kept");
        assert_eq!(fs::read(tmp.path().join("b-copy")).unwrap(), b"copied");

        let (path, mut file) = spares.take().unwrap();
        assert_eq!(file.metadata().unwrap().len(), 0, "a spare comes back truncated");
        file.write_all(b"new").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert!(spares.take().is_none());
    }

    #[test]
    fn a_file_a_reader_may_hold_cools_intact_until_the_reader_lets_go() {
        let tmp = tempfile::tempdir().unwrap();
        let readers = Readers::default();
        let mut spares = Spares::open(tmp.path().join("spare"), readers.clone()).unwrap();
        let a = tmp.path().join("a");
        fs::write(&a, b"alice's message").unwrap();
        let lease = readers.lease();
        let mut held = fs::File::open(&a).unwrap();
        assert!(spares.retire(&a).unwrap());
        assert_eq!((spares.len(), spares.free()), (1, 0), "retired, not yet reusable");
        assert!(spares.take().is_none(), "never handed out while the reader may hold it");
        let late = readers.lease();
        assert!(spares.take().is_none(), "a later reader does not release it early");
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut held, &mut bytes).unwrap();
        assert_eq!(bytes, b"alice's message", "the reader reads the whole expunged message");
        drop(lease);
        let (_, file) = spares.take().expect("reusable once the reader let go");
        assert_eq!(file.metadata().unwrap().len(), 0, "emptied before reuse");
        drop(late);
    }

    #[test]
    fn reopening_keeps_spares_and_clears_strangers() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("spare");
        let mut spares = Spares::open(&dir, Readers::default()).unwrap();
        for k in 0..3 {
            let p = tmp.path().join(format!("m{k}"));
            fs::write(&p, b"x").unwrap();
            spares.retire(&p).unwrap();
        }
        fs::write(dir.join("stray"), b"?").unwrap();
        fs::create_dir(dir.join("junk")).unwrap();
        let mut again = Spares::open(&dir, Readers::default()).unwrap();
        assert_eq!(again.len(), 3);
        assert!(!dir.join("stray").exists() && !dir.join("junk").exists());
        let p = tmp.path().join("m9");
        fs::write(&p, b"x").unwrap();
        again.retire(&p).unwrap();
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 4, "new names do not collide with kept ones");
    }
}
