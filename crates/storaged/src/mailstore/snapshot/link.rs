//! Hard-link mirrors of a store tree, made in two passes so the tree is held still only
//! briefly.
//!
//! [`link_live`] mirrors the tree while the store keeps applying: it links what it finds and
//! shrugs at what vanishes under it, so its result is no one state; it notes each
//! directory's modification time as it lists it. [`settle`], run while the tree is held
//! still, then makes the mirror exactly the store: it lists again (names, types and inode
//! numbers, no `stat` of a file) only the directories whose modification time moved since,
//! or that the live pass could not vouch for, and relinks only what differs. Listing every
//! directory took seconds at ten thousand users (262,017 directories, store and mirror), and
//! applies wait while it runs; a `stat` of each takes a fraction of that.
//!
//! That is sound because the store never writes a file in place: a changed file is a new
//! inode under its name (a rename, which moves its directory's time), and an inode the
//! mirror links cannot be freed and reused under another file while the mirror holds it, so
//! an equal inode number is the same bytes. A directory's time comes from a clock that may
//! tick coarsely (a few ms), so a change in the same tick as the live pass's look could
//! leave it equal: a directory whose time was within [`RECENT`] of the look is listed again
//! whatever its time says, as is one the live pass could not `stat`.
//!
//! Symbolic links are hard-linked too (Linux `linkat` without `AT_SYMLINK_FOLLOW` links the
//! link itself), so an unchanged one compares equal by inode like a file.
//!
//! What this must never do: leave the mirror differing from the store after [`settle`], or
//! write anything outside `dest`.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::fs::{DirEntryExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::{excluded, Kind};

/// A directory modified this close to the live pass's look is listed again at [`settle`]
/// (far above a filesystem clock's tick).
const RECENT: Duration = Duration::from_secs(1);

/// What [`link_live`] saw of each directory it mirrored, for [`settle`].
#[derive(Debug, Default)]
pub struct LivePass {
    dirs: Vec<Seen>,
}

impl LivePass {
    /// How many directories the live pass mirrored.
    pub fn dirs(&self) -> usize {
        self.dirs.len()
    }
}

/// A directory as the live pass listed it: its path under the root and its modification
/// time just before, if that can vouch that nothing changed when it is the same later.
#[derive(Debug)]
struct Seen {
    rel: PathBuf,
    mtime: Option<(i64, i64)>,
}

/// `dir`'s modification time, if it is a directory not modified within [`RECENT`] of now
/// (nor in the future: a clock set back).
fn settled_mtime(dir: &Path) -> Option<(i64, i64)> {
    let meta = fs::symlink_metadata(dir).ok().filter(|m| m.is_dir())?;
    let modified = meta.modified().ok()?;
    let age = SystemTime::now().duration_since(modified).ok()?;
    (age >= RECENT).then(|| (meta.mtime(), meta.mtime_nsec()))
}

/// What [`settle`] changed in a mirror.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Settled {
    /// Entries linked or made (files, links, directories).
    pub added: u64,
    /// Entries taken out (a directory counts once).
    pub removed: u64,
    /// Directories listed again on each side.
    pub dirs: u64,
    /// Directories whose time was looked at.
    pub checked: u64,
}

/// Mirror `root` into `dest` (which must not exist) with hard links while the store may be
/// changing: an entry that vanishes before it is linked is skipped, and the result is made
/// exact by [`settle`] with the pass returned.
pub fn link_live(root: &Path, dest: &Path) -> io::Result<LivePass> {
    fs::create_dir(dest)?;
    let mut pass = LivePass::default();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        let mtime = settled_mtime(&dir);
        let entries = listing_if_there(&dir, &rel)?;
        pass.dirs.push(Seen { rel: rel.clone(), mtime });
        for (name, _, kind) in entries {
            let p = rel.join(&name);
            let made = match kind {
                Kind::Dir => fs::create_dir(dest.join(&p)),
                Kind::File | Kind::Link => fs::hard_link(root.join(&p), dest.join(&p)),
            };
            match made {
                Ok(()) if kind == Kind::Dir => stack.push(p),
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(pass)
}

/// Make the mirror `dest` exactly the tree under `root` (run while the tree is held still),
/// listing again only what changed since `pass`. Directories that no longer belong are
/// moved into `discard` (a directory on the same filesystem outside `dest`, made if needed)
/// for the caller to remove without the tree held.
pub fn settle(root: &Path, dest: &Path, discard: &Path, pass: &LivePass) -> io::Result<Settled> {
    let mut settled = Settled::default();
    // Directories this settle made: listed whole.
    let mut made = Vec::new();
    for seen in &pass.dirs {
        settled.checked += 1;
        let now = fs::symlink_metadata(root.join(&seen.rel));
        let Ok(now) = now.as_ref().map(|m| (m.is_dir(), (m.mtime(), m.mtime_nsec()))) else {
            // Gone: its parent changed, and takes it out.
            continue;
        };
        if !now.0 || seen.mtime == Some(now.1) {
            // A file now (its parent changed and replaces it), or untouched.
            continue;
        }
        settle_dir(root, dest, &seen.rel, discard, &mut made, &mut settled)?;
        while let Some(rel) = made.pop() {
            settle_dir(root, dest, &rel, discard, &mut made, &mut settled)?;
        }
    }
    Ok(settled)
}

/// Make directory `rel` of the mirror hold what it holds under `root`: entries linked, made
/// (a directory, pushed on `made`) or taken out. A subdirectory in both is left alone (the
/// live pass saw it; [`settle`] looks at it on its own).
fn settle_dir(
    root: &Path,
    dest: &Path,
    rel: &Path,
    discard: &Path,
    made: &mut Vec<PathBuf>,
    settled: &mut Settled,
) -> io::Result<()> {
    let want = listing(&root.join(rel), rel)?;
    let have = listing(&dest.join(rel), rel)?;
    settled.dirs += 1;
    let (mut w, mut h) = (want.into_iter().peekable(), have.into_iter().peekable());
    loop {
        let order = match (w.peek(), h.peek()) {
            (None, None) => return Ok(()),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some(a), Some(b)) => a.0.cmp(&b.0),
        };
        let same = |a: &Entry, b: &Entry| a.2 == b.2 && (a.2 == Kind::Dir || a.1 == b.1);
        match order {
            std::cmp::Ordering::Equal => {
                let (a, b) = (w.next().expect("peeked"), h.next().expect("peeked"));
                if same(&a, &b) {
                    continue;
                }
                take_out(&dest.join(rel).join(&b.0), b.2, discard, settled)?;
                add(root, dest, rel, a, made, settled)?;
            }
            std::cmp::Ordering::Less => add(root, dest, rel, w.next().expect("peeked"), made, settled)?,
            std::cmp::Ordering::Greater => {
                let b = h.next().expect("peeked");
                take_out(&dest.join(rel).join(&b.0), b.2, discard, settled)?;
            }
        }
    }
}

/// Make each of `rels` (paths relative to both roots) in the mirror `dest` what it is under
/// `root` now: linked anew if it is there, removed if not. For the few files a store
/// replaces after its mirror was settled as part of the same state (a checkpoint's state
/// file, written once the filesystem is synced).
pub fn refresh(root: &Path, dest: &Path, rels: &[PathBuf]) -> io::Result<()> {
    for rel in rels {
        assert!(rel.is_relative() && rel.file_name().is_some(), "a path inside the tree: {}", rel.display());
        let (from, to) = (root.join(rel), dest.join(rel));
        match fs::symlink_metadata(&from) {
            Ok(meta) if meta.is_dir() => return Err(io::Error::other(format!("{} is a directory", rel.display()))),
            Ok(_) => {
                let tmp = to.with_file_name(".refresh.tmp");
                let _ = fs::remove_file(&tmp);
                fs::hard_link(&from, &tmp)?;
                fs::rename(&tmp, &to)?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => match fs::symlink_metadata(&to) {
                Ok(meta) if meta.is_dir() => fs::remove_dir_all(&to)?,
                Ok(_) => fs::remove_file(&to)?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            },
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A directory entry: name, inode number, kind.
type Entry = (OsString, u64, Kind);

/// The entries of `dir` (at `rel` under its tree's root) a mirror holds, sorted by name.
fn listing(dir: &Path, rel: &Path) -> io::Result<Vec<Entry>> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name();
        if excluded(rel, &name) {
            continue;
        }
        let file_type = e.file_type()?;
        let kind = if file_type.is_dir() {
            Kind::Dir
        } else if file_type.is_file() {
            Kind::File
        } else if file_type.is_symlink() {
            Kind::Link
        } else {
            continue;
        };
        out.push((name, e.ino(), kind));
    }
    out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// [`listing`], or nothing if the directory is gone (removed while a live pass ran).
fn listing_if_there(dir: &Path, rel: &Path) -> io::Result<Vec<Entry>> {
    match listing(dir, rel) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        other => other,
    }
}

/// Link (or make, for a directory, whose contents the walk then adds) `entry` of `rel`.
fn add(
    root: &Path,
    dest: &Path,
    rel: &Path,
    entry: Entry,
    stack: &mut Vec<PathBuf>,
    settled: &mut Settled,
) -> io::Result<()> {
    let p = rel.join(&entry.0);
    match entry.2 {
        Kind::Dir => {
            fs::create_dir(dest.join(&p))?;
            stack.push(p);
        }
        Kind::File | Kind::Link => fs::hard_link(root.join(&p), dest.join(&p))?,
    }
    settled.added += 1;
    Ok(())
}

/// Remove a mirror entry; a directory (possibly large) is moved into `discard` instead.
fn take_out(path: &Path, kind: Kind, discard: &Path, settled: &mut Settled) -> io::Result<()> {
    settled.removed += 1;
    if kind != Kind::Dir {
        return fs::remove_file(path);
    }
    fs::create_dir_all(discard)?;
    fs::rename(path, discard.join(settled.removed.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ino(p: &Path) -> u64 {
        fs::symlink_metadata(p).unwrap().ino()
    }

    /// Every entry of `a` is in `b` with the same kind and (files, links) the same inode,
    /// and the other way round.
    fn assert_mirror(a: &Path, b: &Path, rel: &Path) {
        let (la, lb) = (listing(&a.join(rel), rel).unwrap(), listing(&b.join(rel), rel).unwrap());
        let names = |l: &[Entry]| l.iter().map(|e| (e.0.clone(), e.2)).collect::<Vec<_>>();
        assert_eq!(names(&la), names(&lb), "at {}", rel.display());
        for (ea, eb) in la.iter().zip(&lb) {
            match ea.2 {
                Kind::Dir => assert_mirror(a, b, &rel.join(&ea.0)),
                _ => assert_eq!(ea.1, eb.1, "{:?}", ea.0),
            }
        }
    }

    #[test]
    fn settle_makes_a_stale_mirror_exact_and_touches_only_what_changed() {
        let work = tempfile::tempdir().unwrap();
        let (root, dest, discard) = (work.path().join("mail"), work.path().join("tree"), work.path().join("discard"));
        let cur = root.join("users/a/Maildir/cur");
        fs::create_dir_all(&cur).unwrap();
        for i in 0..50 {
            fs::write(cur.join(format!("{i}:2,")), format!("message {i}")).unwrap();
        }
        fs::create_dir_all(root.join("users/b/Maildir/.Old/cur")).unwrap();
        fs::write(root.join("users/b/Maildir/.Old/cur/1:2,S"), b"old").unwrap();
        fs::create_dir_all(root.join("users/a/sieve")).unwrap();
        fs::write(root.join("users/a/sieve/main.sieve"), b"keep;").unwrap();
        std::os::unix::fs::symlink("sieve/main.sieve", root.join("users/a/.dovecot.sieve")).unwrap();
        fs::write(root.join("sm.state"), b"state 1").unwrap();
        let pass = link_live(&root, &dest).unwrap();
        assert_mirror(&root, &dest, Path::new(""));
        assert_eq!(ino(&root.join("users/a/.dovecot.sieve")), ino(&dest.join("users/a/.dovecot.sieve")));
        assert!(fs::symlink_metadata(dest.join("users/a/.dovecot.sieve")).unwrap().file_type().is_symlink());

        // What the store does while the live pass runs: deliver, expunge, change flags
        // (rename), replace a file (rename over it), delete a mailbox, make a new user.
        fs::write(cur.join("50:2,"), b"new").unwrap();
        fs::remove_file(cur.join("3:2,")).unwrap();
        fs::rename(cur.join("4:2,"), cur.join("4:2,S")).unwrap();
        fs::write(root.join("sm.tmp"), b"state 2").unwrap();
        fs::rename(root.join("sm.tmp"), root.join("sm.state")).unwrap();
        fs::remove_dir_all(root.join("users/b/Maildir/.Old")).unwrap();
        fs::create_dir_all(root.join("users/c/Maildir/new")).unwrap();
        fs::write(root.join("users/c/Maildir/new/9"), b"hello c").unwrap();
        std::os::unix::fs::symlink("sieve/other.sieve", root.join("users/a/.tmp-link")).unwrap();
        fs::rename(root.join("users/a/.tmp-link"), root.join("users/a/.dovecot.sieve")).unwrap();

        let settled = settle(&root, &dest, &discard, &pass).unwrap();
        assert_mirror(&root, &dest, Path::new(""));
        assert_eq!(fs::read(dest.join("sm.state")).unwrap(), b"state 2");
        assert_eq!(fs::read_link(dest.join("users/a/.dovecot.sieve")).unwrap(), Path::new("sieve/other.sieve"));
        // Added: 50, 4:2,S, sm.state, users/c, its Maildir, new, 9, the link. Removed: 3, 4,
        // the old sm.state, .Old (once, moved aside), the old link.
        assert_eq!((settled.added, settled.removed), (8, 5), "{settled:?}");
        let aside: Vec<_> = fs::read_dir(&discard).unwrap().map(|e| e.unwrap().path()).collect();
        assert_eq!(aside.len(), 1);
        assert_eq!(fs::read(aside[0].join("cur/1:2,S")).unwrap(), b"old", "the dropped mailbox waits in discard");
        let again = settle(&root, &dest, &discard, &pass).unwrap();
        assert_eq!((again.added, again.removed), (0, 0), "a settled mirror needs nothing");
    }

    /// Set every directory's modification time under `root` an hour back.
    fn age_dirs(root: &Path) {
        let hour_ago = SystemTime::now() - Duration::from_secs(3600);
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for e in fs::read_dir(&dir).unwrap() {
                let e = e.unwrap();
                if e.file_type().unwrap().is_dir() {
                    stack.push(e.path());
                }
            }
            fs::File::open(&dir).unwrap().set_modified(hour_ago).unwrap();
        }
    }

    #[test]
    fn settle_lists_again_only_the_directories_changed_since_the_live_pass() {
        let work = tempfile::tempdir().unwrap();
        let (root, dest, discard) = (work.path().join("mail"), work.path().join("tree"), work.path().join("discard"));
        for user in ["a", "b", "c", "d"] {
            for sub in ["cur", "new", ".Sent/cur", ".Old/cur"] {
                let dir = root.join(format!("users/{user}/Maildir/{sub}"));
                fs::create_dir_all(&dir).unwrap();
                fs::write(dir.join("1:2,S"), format!("{user} {sub}")).unwrap();
            }
        }
        age_dirs(&root);
        let pass = link_live(&root, &dest).unwrap();
        assert_eq!(pass.dirs(), 1 + 1 + 4 * (2 + 4 + 2));

        // After the pass: a delivery to a, a flag change of b's, c's .Old removed and made
        // again with other mail, d's .Sent/cur replaced by a file.
        fs::write(root.join("users/a/Maildir/new/2"), b"new").unwrap();
        fs::rename(root.join("users/b/Maildir/cur/1:2,S"), root.join("users/b/Maildir/cur/1:2,RS")).unwrap();
        fs::remove_dir_all(root.join("users/c/Maildir/.Old")).unwrap();
        fs::create_dir_all(root.join("users/c/Maildir/.Old/cur")).unwrap();
        fs::write(root.join("users/c/Maildir/.Old/cur/7:2,"), b"other").unwrap();
        fs::remove_dir_all(root.join("users/d/Maildir/.Sent/cur")).unwrap();
        fs::write(root.join("users/d/Maildir/.Sent/cur"), b"a file now").unwrap();

        let settled = settle(&root, &dest, &discard, &pass).unwrap();
        assert_mirror(&root, &dest, Path::new(""));
        assert_eq!(settled.checked, pass.dirs() as u64);
        // Listed again: a's new, b's cur, c's Maildir, .Old and .Old/cur (made anew), d's .Sent.
        assert_eq!(settled.dirs, 6, "{settled:?}");
        assert_eq!(fs::read(dest.join("users/c/Maildir/.Old/cur/7:2,")).unwrap(), b"other");
        assert!(!dest.join("users/c/Maildir/.Old/cur/1:2,S").exists());
        assert_eq!(fs::read(dest.join("users/d/Maildir/.Sent/cur")).unwrap(), b"a file now");
    }

    #[test]
    fn a_directory_changed_just_before_the_live_pass_is_listed_again() {
        let work = tempfile::tempdir().unwrap();
        let (root, dest) = (work.path().join("mail"), work.path().join("tree"));
        fs::create_dir_all(root.join("users/a/Maildir/new")).unwrap();
        fs::create_dir_all(root.join("users/b/Maildir/new")).unwrap();
        age_dirs(&root);
        // Changed a moment ago: a change in the same clock tick after the pass could leave
        // its time as it was, so its time cannot vouch for it.
        fs::write(root.join("users/a/Maildir/new/1"), b"one").unwrap();
        let pass = link_live(&root, &dest).unwrap();
        let settled = settle(&root, &dest, &work.path().join("d"), &pass).unwrap();
        assert_eq!((settled.dirs, settled.added), (1, 0), "{settled:?}");
    }

    #[test]
    fn refresh_relinks_a_replaced_file_and_drops_a_removed_one() {
        let work = tempfile::tempdir().unwrap();
        let (root, dest) = (work.path().join("mail"), work.path().join("tree"));
        fs::create_dir_all(root.join("staging/7")).unwrap();
        fs::write(root.join("staging/7/0"), b"part").unwrap();
        fs::write(root.join("sm.state"), b"state 1").unwrap();
        let _ = link_live(&root, &dest).unwrap();
        fs::write(root.join("sm.tmp"), b"state 2").unwrap();
        fs::rename(root.join("sm.tmp"), root.join("sm.state")).unwrap();
        fs::remove_dir_all(root.join("staging/7")).unwrap();
        refresh(&root, &dest, &["sm.state".into(), "staging/7".into(), "never/was".into()]).unwrap();
        assert_mirror(&root, &dest, Path::new(""));
        assert_eq!(fs::read(dest.join("sm.state")).unwrap(), b"state 2");
    }

    #[test]
    fn the_mirror_leaves_out_spares_and_node_local_files() {
        let work = tempfile::tempdir().unwrap();
        let root = work.path().join("mail");
        fs::create_dir_all(root.join(crate::mailstore::spare::SPARE_DIR)).unwrap();
        fs::write(root.join(crate::mailstore::spare::SPARE_DIR).join("s1"), b"").unwrap();
        fs::create_dir_all(root.join("users/a/Maildir")).unwrap();
        fs::write(root.join("users/a/Maildir").join(super::super::NODE_LOCAL_FILE), b"cache").unwrap();
        let dest = work.path().join("tree");
        let pass = link_live(&root, &dest).unwrap();
        assert!(!dest.join(crate::mailstore::spare::SPARE_DIR).exists());
        assert!(!dest.join("users/a/Maildir").join(super::super::NODE_LOCAL_FILE).exists());
        assert_eq!(settle(&root, &dest, &work.path().join("d"), &pass).unwrap().added, 0);
    }
}
