//! The import plan of one folder: which file becomes which UID with which flags, keywords
//! and internal date, from the folder's listing, its UID list and its keywords. Pure, so
//! every rule is tested without a disk.
//!
//! Listed files keep their UIDs and the folder its UIDVALIDITY; files the list does not
//! name (mail that arrived after the list was last written, or a folder without one) get
//! new UIDs above every listed one, in internal-date order; without a usable list the
//! folder gets `fresh_uid_validity`. A file is internal-dated by its mtime, as Dovecot does.

use std::collections::HashMap;

use super::filename::{self, FileNameError};
use super::keywords::Keywords;
use super::uidlist::UidList;
use super::Problem;
use crate::mailstore::store::MESSAGE_MAX;

/// A message file as listed in `cur/` or `new/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// `cur/NAME` or `new/NAME`.
    pub path: String,
    /// The file name.
    pub name: String,
    pub mtime_s: i64,
    pub len_bytes: u64,
}

/// What a folder holds.
#[derive(Debug, Clone, Default)]
pub struct SourceFolder {
    pub files: Vec<SourceFile>,
    /// The folder's UID list, or why it could not be read; `None` if there is none.
    pub uidlist: Option<Result<UidList, Problem>>,
    pub keywords: Keywords,
}

/// One message to import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub uid: u32,
    /// Index into [`SourceFolder::files`].
    pub file: usize,
    pub flags: u8,
    pub keywords: Vec<String>,
    pub internal_date: i64,
    pub len_bytes: u64,
}

/// The plan of a folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderPlan {
    pub uid_validity: u32,
    pub next_uid: u32,
    /// Ascending UIDs.
    pub messages: Vec<Planned>,
    /// Files given a UID the list did not name.
    pub new_uids: usize,
    pub problems: Vec<Problem>,
}

/// Plan the import of `folder`.
pub fn plan(folder: &SourceFolder, fresh_uid_validity: u32) -> FolderPlan {
    let mut problems = Vec::new();
    let list = match &folder.uidlist {
        Some(Ok(list)) => Some(list),
        Some(Err(p)) => {
            problems.push(p.clone());
            None
        }
        None => None,
    };
    if let Some(list) = list {
        problems.extend(list.problems.iter().cloned());
    }
    problems.extend(folder.keywords.problems.iter().cloned());
    let listed: HashMap<&str, u32> =
        list.map(|l| l.entries.iter().map(|e| (e.base.as_str(), e.uid)).collect()).unwrap_or_default();
    let mut taken: HashMap<u32, usize> = HashMap::new();
    let mut messages = Vec::new();
    let mut unlisted = Vec::new();
    for (k, f) in folder.files.iter().enumerate() {
        let Some(mut m) = message_of(k, f, &folder.keywords, &mut problems) else { continue };
        let base = filename::parse(&f.name).map_or(f.name.as_str(), |n| n.base);
        match listed.get(base) {
            Some(uid) if !taken.contains_key(uid) => {
                taken.insert(*uid, k);
                m.uid = *uid;
                messages.push(m);
            }
            Some(uid) => {
                let first = &folder.files[taken[uid]].path;
                problems
                    .push(Problem::new(&f.path, format!("has the base name of {first} (UID {uid}): given a new UID")));
                unlisted.push(m);
            }
            None => unlisted.push(m),
        }
    }
    // Listed UIDs whose files are gone were expunged: they stay used (Dovecot appends to
    // its list without rewriting the header, so the header's next UID may be behind).
    let listed_max = list.and_then(|l| l.entries.last()).map_or(0, |e| e.uid);
    let mut next_uid = list.map_or(1, |l| l.next_uid).max(listed_max.saturating_add(1)).max(1);
    unlisted.sort_by(|a, b| {
        (a.internal_date, &folder.files[a.file].name).cmp(&(b.internal_date, &folder.files[b.file].name))
    });
    let new_uids = unlisted.len();
    for mut m in unlisted {
        if next_uid == u32::MAX {
            problems.push(Problem::new(&folder.files[m.file].path, "no UID left in the folder: not imported"));
            continue;
        }
        m.uid = next_uid;
        next_uid += 1;
        messages.push(m);
    }
    messages.sort_by_key(|m| m.uid);
    let uid_validity = list.map_or(fresh_uid_validity, |l| l.uid_validity);
    FolderPlan { uid_validity, next_uid, messages, new_uids, problems }
}

/// The message a file holds (UID still 0), or `None` with a problem if it is not imported.
fn message_of(k: usize, f: &SourceFile, keywords: &Keywords, problems: &mut Vec<Problem>) -> Option<Planned> {
    if f.name.starts_with('.') {
        problems.push(Problem::new(&f.path, "hidden file, not a message: skipped"));
        return None;
    }
    if f.len_bytes == 0 {
        problems.push(Problem::new(&f.path, "empty file: skipped"));
        return None;
    }
    if f.len_bytes > MESSAGE_MAX as u64 {
        problems.push(Problem::new(
            &f.path,
            format!("{} bytes, above the {MESSAGE_MAX}-byte message limit: skipped", f.len_bytes),
        ));
        return None;
    }
    let mut m =
        Planned { uid: 0, file: k, flags: 0, keywords: Vec::new(), internal_date: f.mtime_s, len_bytes: f.len_bytes };
    match filename::parse(&f.name) {
        Ok(name) => {
            m.flags = name.flags;
            for letter in name.keywords {
                match keywords.name(letter) {
                    Some(kw) => m.keywords.push(kw.to_string()),
                    None => problems.push(Problem::new(
                        &f.path,
                        format!("keyword letter '{}' is not in dovecot-keywords: dropped", char::from(b'a' + letter)),
                    )),
                }
            }
        }
        Err(e @ (FileNameError::NotMaildir | FileNameError::UnknownInfo(_))) => {
            problems.push(Problem::new(&f.path, format!("{e}: imported without flags")));
        }
    }
    Some(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interchange::{keywords, uidlist};
    use crate::mailstore::ops::flag;

    fn file(path: &str, mtime_s: i64) -> SourceFile {
        let name = path.rsplit('/').next().unwrap().to_string();
        SourceFile { path: path.into(), name, mtime_s, len_bytes: 10 }
    }

    #[test]
    fn listed_files_keep_their_uids_and_new_ones_follow() {
        let list = uidlist::parse(b"3 V77 N10\n2 :a,S=10\n5 :b,S=10\n", "dovecot-uidlist").unwrap();
        let folder = SourceFolder {
            files: vec![
                file("new/late", 300),
                file("cur/b,S=10:2,Sa", 200),
                file("cur/a,S=10:2,F", 100),
                file("new/early", 50),
            ],
            uidlist: Some(Ok(list)),
            keywords: keywords::parse(b"0 Work\n", "dovecot-keywords"),
        };
        let p = plan(&folder, 999);
        assert_eq!((p.uid_validity, p.next_uid, p.new_uids), (77, 12, 2));
        let got: Vec<(u32, &str, u8, Vec<String>, i64)> = p
            .messages
            .iter()
            .map(|m| (m.uid, folder.files[m.file].path.as_str(), m.flags, m.keywords.clone(), m.internal_date))
            .collect();
        assert_eq!(
            got,
            vec![
                (2, "cur/a,S=10:2,F", flag::FLAGGED, vec![], 100),
                (5, "cur/b,S=10:2,Sa", flag::SEEN, vec!["Work".to_string()], 200),
                (10, "new/early", 0, vec![], 50),
                (11, "new/late", 0, vec![], 300),
            ]
        );
        assert!(p.problems.is_empty(), "{:?}", p.problems);
    }

    #[test]
    fn without_a_list_the_folder_gets_a_fresh_uidvalidity() {
        let folder = SourceFolder { files: vec![file("cur/x:2,S", 5), file("cur/y", 1)], ..Default::default() };
        let p = plan(&folder, 4242);
        assert_eq!((p.uid_validity, p.next_uid), (4242, 3));
        assert_eq!(p.messages.iter().map(|m| folder.files[m.file].name.as_str()).collect::<Vec<_>>(), ["y", "x:2,S"]);
    }

    #[test]
    fn every_oddity_is_named_and_the_rest_imported() {
        let list = uidlist::parse(b"3 V7 N3\n1 :a\n2 :a2\n2 :dup\n", "u").unwrap();
        let mut big = file("cur/big", 1);
        big.len_bytes = MESSAGE_MAX as u64 + 1;
        let mut empty = file("cur/empty", 1);
        empty.len_bytes = 0;
        let folder = SourceFolder {
            files: vec![
                file("cur/a:2,S", 1),
                file("new/a", 2),
                file("cur/.nfs0001", 1),
                file("cur/odd:1,xyz", 3),
                file("cur/kw:2,z", 4),
                big,
                empty,
            ],
            uidlist: Some(Ok(list)),
            keywords: Keywords::default(),
        };
        let p = plan(&folder, 1);
        let whats: Vec<&str> = p.problems.iter().map(|x| x.what.as_str()).collect();
        assert_eq!(whats, ["u:4", "new/a", "cur/.nfs0001", "cur/odd:1,xyz", "cur/kw:2,z", "cur/big", "cur/empty"]);
        // a (UID 1), then the duplicate base, the odd name and the keyword file with new UIDs.
        assert_eq!(p.messages.iter().map(|m| m.uid).collect::<Vec<_>>(), [1, 3, 4, 5]);
        let unusable = SourceFolder { uidlist: Some(Err(Problem::new("u", "bad header"))), ..folder };
        let p = plan(&unusable, 31);
        assert_eq!((p.uid_validity, p.problems[0].why.as_str()), (31, "bad header"));
    }
}
