//! A group's snapshots on disk. A snapshot is a directory holding openraft's meta and a
//! hard-link mirror of the store at the snapshot's index, so it costs directory entries,
//! not a second copy of every message; it is turned into an archive only while it is sent
//! (`mailstore::snapshot::TreeArchive`).
//!
//! ```text
//! snapshots/current            symbolic link to the current snapshot's directory,
//!                              replaced by rename (so it always names a whole one)
//! snapshots/snap-INDEX-N/meta  openraft's meta of the snapshot (bincode)
//! snapshots/snap-INDEX-N/tree/ the store at INDEX, hard-linked
//! snapshots/snap-draft-N/      a snapshot being linked while the store runs
//! snapshots/incoming-N.snap    archives being received from the leader
//! snapshots/current.snap/.meta an archive written by an older release: served until the
//!                              first snapshot of this one replaces it
//! ```
//!
//! What this must never do: name a snapshot as current before its tree and meta are
//! durable (a crash would leave a meta claiming entries the tree lacks), or remove a
//! snapshot a replica is still being sent (a retired snapshot's directory goes when the
//! last reader drops it).

use std::fs;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use openraft::{BasicNode, SnapshotMeta};
use serde::{Deserialize, Serialize};

use crate::mailstore::snapshot::{self, Manifest, Settled, SnapshotError};

const CURRENT: &str = "current";
const META: &str = "meta";
const TREE: &str = "tree";
/// What settling a draft took out of its tree, removed before the snapshot is published.
const DISCARD: &str = "discard";
const LEGACY_ARCHIVE: &str = "current.snap";
const LEGACY_META: &str = "current.meta";

pub type Meta = SnapshotMeta<u64, BasicNode>;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredSnapshotMeta {
    meta: Meta,
}

fn read_meta(path: &Path) -> io::Result<Meta> {
    let bytes = fs::read(path)?;
    bincode::deserialize::<StoredSnapshotMeta>(&bytes).map(|s| s.meta).map_err(io::Error::other)
}

fn write_meta(path: &Path, meta: &Meta) -> io::Result<()> {
    let bytes = bincode::serialize(&StoredSnapshotMeta { meta: meta.clone() }).map_err(io::Error::other)?;
    fs::write(path, bytes)
}

/// One snapshot's directory.
#[derive(Debug)]
pub struct SnapDir {
    path: PathBuf,
    meta: Meta,
    /// Length of the snapshot's archive, measured once.
    archive_bytes: OnceLock<u64>,
    /// No longer current: removed when the last holder drops it.
    retired: AtomicBool,
}

impl SnapDir {
    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    /// The store tree at the snapshot's index.
    pub fn tree(&self) -> PathBuf {
        self.path.join(TREE)
    }

    /// The length of the archive a replica is sent (walks the tree the first time).
    pub fn archive_bytes(&self) -> io::Result<u64> {
        if let Some(n) = self.archive_bytes.get() {
            return Ok(*n);
        }
        let n = Manifest::of(&self.tree()).map_err(io::Error::other)?.len_bytes();
        Ok(*self.archive_bytes.get_or_init(|| n))
    }
}

impl Drop for SnapDir {
    fn drop(&mut self) {
        if !self.retired.load(Ordering::SeqCst) {
            return;
        }
        let path = std::mem::take(&mut self.path);
        let remove = move || {
            if let Err(e) = fs::remove_dir_all(&path) {
                tracing::warn!(path = %path.display(), error = %e, "retired snapshot not removed");
            }
        };
        // A large tree takes a while to unlink: not on a runtime thread.
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(rt.spawn_blocking(remove)),
            Err(_) => remove(),
        }
    }
}

/// The current snapshot.
#[derive(Debug, Clone)]
pub enum Current {
    Tree(Arc<SnapDir>),
    /// An archive file an older release wrote.
    Archive {
        meta: Meta,
        path: PathBuf,
    },
}

impl Current {
    pub fn meta(&self) -> &Meta {
        match self {
            Current::Tree(dir) => dir.meta(),
            Current::Archive { meta, .. } => meta,
        }
    }
}

/// A snapshot being linked while the store runs (removed if dropped).
pub struct Draft(SnapDir, snapshot::LivePass);

/// A snapshot linked but not yet current.
pub struct Staged(SnapDir);

impl Staged {
    /// Bring `rels` (paths relative to the store root) of the tree to what they are under
    /// `root` now (see `mailstore::snapshot::refresh`).
    pub fn refresh(&self, root: &Path, rels: &[PathBuf]) -> io::Result<()> {
        snapshot::refresh(root, &self.0.tree(), rels)
    }
}

/// A group's `snapshots/` directory.
#[derive(Debug)]
pub struct Snapshots {
    dir: PathBuf,
    current: Mutex<Option<Current>>,
    seq: AtomicU64,
}

impl Snapshots {
    /// Open `dir` (made if missing), find the current snapshot and remove what a crash
    /// left: snapshots never made current, retired ones, half-received archives.
    pub fn open(dir: &Path) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        let name = fs::read_link(dir.join(CURRENT)).ok().and_then(|p| p.to_str().map(str::to_owned));
        let mut seq = 0;
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let file_name = entry.file_name().to_string_lossy().into_owned();
            if Some(&file_name) == name.as_ref() {
                seq = seq.max(sequence_of(&file_name) + 1);
                continue;
            }
            let leftover = file_name.starts_with("snap-")
                || file_name.starts_with("incoming-")
                || matches!(file_name.as_str(), "staging" | "building.snap" | "current.tmp");
            if leftover {
                remove_any(&entry.path())?;
            }
        }
        let current = match &name {
            Some(name) => match read_meta(&dir.join(name).join(META)) {
                Ok(meta) => Some(Current::Tree(Arc::new(SnapDir {
                    path: dir.join(name),
                    meta,
                    archive_bytes: OnceLock::new(),
                    retired: AtomicBool::new(false),
                }))),
                Err(e) => {
                    tracing::error!(dir = %dir.display(), error = %e, "the current snapshot's meta is unreadable; none is used");
                    None
                }
            },
            None => read_meta(&dir.join(LEGACY_META))
                .ok()
                .filter(|_| dir.join(LEGACY_ARCHIVE).is_file())
                .map(|meta| Current::Archive { meta, path: dir.join(LEGACY_ARCHIVE) }),
        };
        Ok(Self { dir: dir.to_path_buf(), current: Mutex::new(current), seq: AtomicU64::new(seq) })
    }

    pub fn current(&self) -> Option<Current> {
        self.current.lock().expect("snapshots lock").clone()
    }

    pub fn meta(&self) -> Option<Meta> {
        self.current().map(|c| c.meta().clone())
    }

    /// Start a snapshot of the store tree at `root` while the store keeps applying: a link
    /// pass that is no one state until [`Snapshots::settle`] makes it the store's.
    pub fn draft(&self, root: &Path) -> Result<Draft, SnapshotError> {
        let path = self.dir.join(format!("snap-draft-{}", self.seq.fetch_add(1, Ordering::Relaxed)));
        fs::create_dir(&path)?;
        let dir =
            SnapDir { path, meta: Meta::default(), archive_bytes: OnceLock::new(), retired: AtomicBool::new(true) };
        let pass = snapshot::link_live(root, &dir.tree())?;
        Ok(Draft(dir, pass))
    }

    /// Make `draft` the store at `root` as of `meta`, not yet current. Run it while the
    /// tree is held still, so it is one state: it costs a `stat` of every directory, a
    /// listing of each that changed since the draft, and a link or removal per entry that
    /// changed.
    pub fn settle(&self, draft: Draft, meta: Meta, root: &Path) -> Result<(Staged, Settled), SnapshotError> {
        let Draft(mut dir, pass) = draft;
        let settled = snapshot::settle(root, &dir.tree(), &dir.path.join(DISCARD), &pass)?;
        let name = dir.path.file_name().and_then(|n| n.to_str()).expect("a draft's name");
        let index = meta.last_log_id.map_or(0, |l| l.index);
        let path = self.dir.join(format!("snap-{index}-{}", sequence_of(name)));
        fs::rename(&dir.path, &path)?;
        dir.path = path;
        dir.meta = meta;
        write_meta(&dir.path.join(META), &dir.meta)?;
        Ok((Staged(dir), settled))
    }

    /// [`Snapshots::draft`] and [`Snapshots::settle`] at once, the store held throughout.
    #[cfg(test)]
    pub fn stage(&self, meta: Meta, root: &Path) -> Result<Staged, SnapshotError> {
        let draft = self.draft(root)?;
        Ok(self.settle(draft, meta, root)?.0)
    }

    /// Make `staged` durable and current; the snapshot it replaces is removed once no
    /// replica is being sent it.
    pub fn publish(&self, staged: Staged) -> io::Result<()> {
        let Staged(dir) = staged;
        let name = dir.path.file_name().expect("a snapshot directory has a name").to_owned();
        match fs::remove_dir_all(dir.path.join(DISCARD)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        // The tree's directories, the links' inode counts and the meta, in one flush
        // (one fsync per directory costs seconds on a store of many users).
        sync_filesystem(&dir.path)?;
        let tmp = self.dir.join("current.tmp");
        let _ = fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&name, &tmp)?;
        fs::rename(&tmp, self.dir.join(CURRENT))?;
        fs::File::open(&self.dir)?.sync_all()?;
        dir.retired.store(false, Ordering::SeqCst);
        let _ = dir.archive_bytes();
        let previous = self.current.lock().expect("snapshots lock").replace(Current::Tree(Arc::new(dir)));
        match previous {
            Some(Current::Tree(old)) => old.retired.store(true, Ordering::SeqCst),
            Some(Current::Archive { .. }) => {
                let _ = fs::remove_file(self.dir.join(LEGACY_ARCHIVE));
                let _ = fs::remove_file(self.dir.join(LEGACY_META));
            }
            None => {}
        }
        Ok(())
    }

    /// The length of the current snapshot's archive.
    pub fn archive_bytes(&self) -> Option<u64> {
        match self.current()? {
            Current::Tree(dir) => dir.archive_bytes().ok(),
            Current::Archive { path, .. } => fs::metadata(path).ok().map(|m| m.len()),
        }
    }
}

/// The `N` of `snap-INDEX-N`.
fn sequence_of(name: &str) -> u64 {
    name.rsplit('-').next().and_then(|n| n.parse().ok()).unwrap_or(0)
}

fn remove_any(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path)?.is_dir() {
        true => fs::remove_dir_all(path),
        false => fs::remove_file(path),
    }
}

/// Flush everything of the filesystem holding `path` to disk.
fn sync_filesystem(path: &Path) -> io::Result<()> {
    let dir = fs::File::open(path)?;
    // SAFETY: `dir` is an open descriptor for the duration of the call; syncfs reads
    // nothing from user memory.
    if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, LogId, StoredMembership};

    fn meta(index: u64) -> Meta {
        SnapshotMeta {
            last_log_id: Some(LogId::new(CommittedLeaderId::new(1, 1), index)),
            last_membership: StoredMembership::default(),
            snapshot_id: format!("g-{index}"),
        }
    }

    fn store(root: &Path, body: &[u8]) {
        fs::create_dir_all(root.join("users/a/Maildir/cur")).unwrap();
        fs::write(root.join("users/a/Maildir/cur/1:2,S"), body).unwrap();
    }

    #[test]
    fn a_published_snapshot_survives_a_restart_and_a_retired_one_goes_with_its_last_reader() {
        let work = tempfile::tempdir().unwrap();
        let (root, dir) = (work.path().join("mail"), work.path().join("snapshots"));
        store(&root, b"first");
        let snaps = Snapshots::open(&dir).unwrap();
        assert!(snaps.current().is_none());
        snaps.publish(snaps.stage(meta(5), &root).unwrap()).unwrap();
        let Some(Current::Tree(first)) = snaps.current() else { panic!("a tree snapshot") };
        let first_tree = first.tree();
        assert_eq!(fs::read(first_tree.join("users/a/Maildir/cur/1:2,S")).unwrap(), b"first");
        // A hard link: the body is stored once.
        assert_eq!(
            std::os::unix::fs::MetadataExt::nlink(&fs::metadata(root.join("users/a/Maildir/cur/1:2,S")).unwrap()),
            2
        );

        // The store replaces the file (never writes in place); the snapshot keeps its bytes.
        fs::remove_file(root.join("users/a/Maildir/cur/1:2,S")).unwrap();
        store(&root, b"second");
        // A crash after staging leaves a directory that is never current.
        std::mem::forget(snaps.stage(meta(7), &root).unwrap());
        let snaps = Snapshots::open(&dir).unwrap();
        assert_eq!(snaps.meta().unwrap().snapshot_id, "g-5");
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 2, "current and its directory only");
        drop(first);
        let Some(Current::Tree(reader)) = snaps.current() else { panic!("a tree snapshot") };
        assert_eq!(reader.tree(), first_tree);

        snaps.publish(snaps.stage(meta(9), &root).unwrap()).unwrap();
        assert_eq!(snaps.meta().unwrap().snapshot_id, "g-9");
        assert!(first_tree.exists(), "a reader still holds the old snapshot");
        drop(reader);
        // Removed on a plain thread here (no runtime).
        assert!(!first_tree.exists(), "the retired snapshot went with its last reader");
        let reopened = Snapshots::open(&dir).unwrap();
        assert_eq!(reopened.meta().unwrap().snapshot_id, "g-9");
        let Some(Current::Tree(now)) = reopened.current() else { panic!("a tree snapshot") };
        assert_eq!(fs::read(now.tree().join("users/a/Maildir/cur/1:2,S")).unwrap(), b"second");
        assert!(reopened.archive_bytes().unwrap() > 6);
    }

    #[test]
    fn an_older_releases_archive_is_served_until_replaced() {
        let work = tempfile::tempdir().unwrap();
        let (root, dir) = (work.path().join("mail"), work.path().join("snapshots"));
        store(&root, b"old");
        fs::create_dir_all(&dir).unwrap();
        snapshot::build(&root, &dir.join(LEGACY_ARCHIVE)).unwrap();
        write_meta(&dir.join(LEGACY_META), &meta(3)).unwrap();
        let snaps = Snapshots::open(&dir).unwrap();
        assert!(matches!(snaps.current(), Some(Current::Archive { .. })));
        assert_eq!(snaps.meta().unwrap().snapshot_id, "g-3");
        snaps.publish(snaps.stage(meta(4), &root).unwrap()).unwrap();
        assert!(matches!(snaps.current(), Some(Current::Tree(_))));
        assert!(!dir.join(LEGACY_ARCHIVE).exists() && !dir.join(LEGACY_META).exists());
    }
}
