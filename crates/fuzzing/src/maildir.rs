//! A foreign Maildir's control files and file names (`storaged::interchange`), as
//! `mailctl import` reads them from a disk it does not trust. The input is cut at NUL bytes
//! into a UID list, a keywords file, file names (one a line) and a subscriptions file.
//! Parsing never panics; a UID list's entries ascend; the plan gives every listed file at
//! most one UID, UIDs ascend below the next UID, and every file is either planned or named
//! in a problem (nothing is dropped silently); writers' output parses back to what they
//! were given; CRLF conversion leaves no bare LF and only adds CRs.

use storaged::interchange::plan::{plan, SourceFile, SourceFolder};
use storaged::interchange::{crlf, filename, keywords, subscriptions, uidlist};

/// File names one input lists at most.
const FILES_MAX: usize = 256;

pub fn run(data: &[u8]) {
    let mut parts = data.splitn(4, |b| *b == 0);
    let (list, kw, names, subs) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let parsed = uidlist::parse(list, "u");
    if let Ok(l) = &parsed {
        assert!(l.entries.windows(2).all(|w| w[0].uid < w[1].uid), "entries ascend");
        assert!(l.entries.iter().all(|e| e.uid > 0 && !e.base.is_empty()));
        let written =
            uidlist::write(l.uid_validity, l.next_uid, [0; 16], l.entries.iter().map(|e| (e.uid, e.base.as_str())));
        let back = uidlist::parse(written.as_bytes(), "w").expect("a written list parses");
        assert_eq!((back.uid_validity, back.next_uid), (l.uid_validity, l.next_uid));
        assert_eq!(back.entries, l.entries, "a written list round-trips");
    }
    let kws = keywords::parse(kw, "k");
    let named: Vec<String> = kws.names.iter().flatten().cloned().collect();
    let back = keywords::parse(keywords::write(&named).as_bytes(), "k2");
    assert_eq!(back.names.iter().flatten().cloned().collect::<Vec<_>>(), named);
    let text = String::from_utf8_lossy(names);
    let files: Vec<SourceFile> = text
        .lines()
        .take(FILES_MAX)
        .enumerate()
        .map(|(k, name)| SourceFile {
            path: format!("cur/{k}"),
            name: name.to_string(),
            mtime_s: k as i64 % 7,
            len_bytes: 1 + k as u64,
        })
        .collect();
    for f in &files {
        if let Ok(n) = filename::parse(&f.name) {
            let again = filename::format(n.base, n.flags, &n.keywords);
            if again.len() > filename::NAME_MAX_BYTES {
                // `:2,` made a name at the limit too long: no file system holds it.
                continue;
            }
            let re = filename::parse(&again).expect("a formatted name parses");
            assert_eq!((re.base, re.flags, &re.keywords), (n.base, n.flags, &n.keywords));
        }
    }
    let folder = SourceFolder { files, uidlist: Some(parsed), keywords: kws };
    check_plan(&folder);
    let _ = subscriptions::parse_dovecot(&String::from_utf8_lossy(subs));
    let _ = subscriptions::parse_courier(&String::from_utf8_lossy(subs));
    let converted = crlf(subs.to_vec());
    let bare_lf = converted.iter().enumerate().any(|(i, b)| *b == b'\n' && (i == 0 || converted[i - 1] != b'\r'));
    assert!(!bare_lf, "no bare LF after conversion");
    let without_cr = |d: &[u8]| d.iter().copied().filter(|b| *b != b'\r').collect::<Vec<u8>>();
    assert_eq!(without_cr(&converted), without_cr(subs), "only CRs are added");
}

fn check_plan(folder: &SourceFolder) {
    let p = plan(folder, 1);
    assert!(p.messages.windows(2).all(|w| w[0].uid < w[1].uid), "UIDs ascend, each once");
    assert!(p.messages.iter().all(|m| m.uid > 0 && m.uid < p.next_uid), "below the next UID");
    let mut used = vec![false; folder.files.len()];
    for m in &p.messages {
        assert!(!used[m.file], "a file planned twice");
        used[m.file] = true;
    }
    for (k, f) in folder.files.iter().enumerate() {
        let named = p.problems.iter().any(|x| x.what == f.path);
        assert!(used[k] || named, "{:?} neither planned nor named", f.name);
    }
}
