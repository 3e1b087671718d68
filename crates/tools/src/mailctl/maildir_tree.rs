//! Reading a foreign Maildir++ tree for `mailctl import`: which folders it has (the root is
//! INBOX, each `.a.b` directory is `a/b`), each folder's files with their sizes and mtimes,
//! its UID list and keywords, and the subscriptions. Reads with a bound on every control
//! file; what cannot be read becomes a [`Problem`] naming it. Never writes to the source.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use storaged::interchange::{keywords, plan::SourceFile, plan::SourceFolder, subscriptions, uidlist, Problem};
use storaged::mailstore::MailboxName;

/// Folders read from one tree at most.
pub const FOLDERS_MAX: usize = 10_000;
/// Files listed in one folder at most.
pub const FILES_MAX: usize = 2_000_000;

/// One folder of the tree.
#[derive(Debug)]
pub struct TreeFolder {
    /// The mailbox name in the store's form (`a/b`, modified UTF-7 as on disk).
    pub name: String,
    pub dir: PathBuf,
    pub source: SourceFolder,
    /// The path of each of `source.files` (whose names are for people).
    pub paths: Vec<PathBuf>,
}

/// The folders of the tree at `root`, INBOX first, and what could not be read.
pub fn folders(root: &Path) -> anyhow::Result<(Vec<TreeFolder>, Vec<Problem>)> {
    let mut problems = Vec::new();
    let mut found = Vec::new();
    if !is_maildir(root) {
        anyhow::bail!("{} is not a Maildir (no cur/ or new/ in it)", root.display());
    }
    found.push(("INBOX".to_string(), root.to_path_buf()));
    let mut subdirs: Vec<(String, PathBuf)> = fs::read_dir(root)?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let folder = name.strip_prefix('.').filter(|n| !n.is_empty() && *n != ".")?.to_string();
            (e.path().is_dir() && is_maildir(&e.path())).then(|| (folder, e.path()))
        })
        .collect();
    subdirs.sort();
    for (folder, dir) in subdirs {
        let name = folder.replace('.', "/");
        match MailboxName::parse(&name) {
            Ok(n) if !n.is_inbox() => found.push((name, dir)),
            _ => problems.push(Problem::new(dir.display().to_string(), "not a mailbox name the store takes: skipped")),
        }
    }
    if found.len() > FOLDERS_MAX {
        anyhow::bail!("{} holds {} folders, more than {FOLDERS_MAX}", root.display(), found.len());
    }
    let folders = found.into_iter().map(|(name, dir)| read_folder(name, dir, &mut problems)).collect();
    Ok((folders, problems))
}

fn is_maildir(dir: &Path) -> bool {
    dir.join("cur").is_dir() || dir.join("new").is_dir()
}

fn read_folder(name: String, dir: PathBuf, problems: &mut Vec<Problem>) -> TreeFolder {
    let mut source = SourceFolder::default();
    let mut paths = Vec::new();
    for sub in ["cur", "new"] {
        let Ok(entries) = fs::read_dir(dir.join(sub)) else { continue };
        for e in entries {
            let Ok(e) = e else { continue };
            let file = e.file_name().to_string_lossy().into_owned();
            let path = e.path();
            let shown = format!("{}/{sub}/{file}", dir.display());
            if source.files.len() >= FILES_MAX {
                problems.push(Problem::new(&shown, format!("more than {FILES_MAX} files in the folder: not imported")));
                continue;
            }
            // Follows symbolic links: a dangling one is a file that cannot be read.
            match fs::metadata(&path) {
                Ok(m) if m.is_file() => {
                    let mtime = m.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
                    let mtime_s = mtime.map_or(0, |d| d.as_secs() as i64);
                    source.files.push(SourceFile { path: shown, name: file, mtime_s, len_bytes: m.len() });
                    paths.push(path);
                }
                Ok(_) => problems.push(Problem::new(&shown, "not a regular file: skipped")),
                Err(e) => problems.push(Problem::new(&shown, format!("cannot be read ({e}): skipped"))),
            }
        }
    }
    for list in ["dovecot-uidlist", "courierimapuiddb"] {
        let path = dir.join(list);
        if path.exists() {
            let shown = path.display().to_string();
            source.uidlist =
                Some(read_bounded(&path, uidlist::FILE_MAX_BYTES).and_then(|t| uidlist::parse(&t, &shown)));
            break;
        }
    }
    let kw = dir.join("dovecot-keywords");
    if kw.exists() {
        match read_bounded(&kw, keywords::FILE_MAX_BYTES) {
            Ok(text) => source.keywords = keywords::parse(&text, &kw.display().to_string()),
            Err(p) => problems.push(p),
        }
    }
    TreeFolder { name, dir, source, paths }
}

/// The subscribed mailboxes of the tree at `root` (Dovecot's or Courier's file).
pub fn subscribed(root: &Path) -> Result<Vec<String>, Problem> {
    for (file, parse) in [
        ("subscriptions", subscriptions::parse_dovecot as fn(&str) -> Vec<String>),
        ("courierimapsubscribed", subscriptions::parse_courier),
    ] {
        let path = root.join(file);
        if path.exists() {
            let text = read_bounded(&path, subscriptions::FILE_MAX_BYTES)?;
            return Ok(parse(&String::from_utf8_lossy(&text)));
        }
    }
    Ok(Vec::new())
}

/// A control file, at most `max` bytes.
fn read_bounded(path: &Path, max: u64) -> Result<Vec<u8>, Problem> {
    let shown = || path.display().to_string();
    let file = fs::File::open(path).map_err(|e| Problem::new(shown(), format!("cannot be read: {e}")))?;
    let mut text = Vec::new();
    file.take(max + 1).read_to_end(&mut text).map_err(|e| Problem::new(shown(), format!("cannot be read: {e}")))?;
    if text.len() as u64 > max {
        return Err(Problem::new(shown(), format!("larger than {max} bytes: not read")));
    }
    Ok(text)
}
