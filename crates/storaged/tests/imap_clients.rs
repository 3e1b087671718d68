//! Independent IMAP clients against a real storaged group: mbsync (isync) syncs a
//! 1,000-message mailbox down, pushes flag changes, a deletion and a new message up, and
//! syncs again, twice, without duplicates (compressed: isync uses COMPRESS=DEFLATE when
//! offered); curl fetches a message by UID; Python's zlib runs a compressed session and
//! sends a deflate bomb; SORT and THREAD of the 1,000 messages, asked again, read no file.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::{password, Cluster, Lmtp};

const MESSAGES: usize = 1000;

fn deliver_many(lmtp: &str, to: &str, n: usize) {
    let mut c = Lmtp::connect(lmtp);
    assert!(c.cmd("LHLO test").starts_with("250"));
    for k in 0..n {
        assert!(c.cmd("MAIL FROM:<sender@example.org>").starts_with("250"));
        assert!(c.cmd(&format!("RCPT TO:<{to}>")).starts_with("250"));
        assert!(c.cmd("DATA").starts_with("354"));
        c.send(
            format!("From: sender@example.org\r\nSubject: message {k}\r\nMessage-ID: <m{k}@example.org>\r\n\r\nbody {k}\r\n.\r\n")
                .as_bytes(),
        );
        let r = c.reply();
        assert!(r.starts_with("250"), "{r}");
    }
}

/// Message files of a Maildir folder (`cur` and `new`).
fn maildir_files(dir: &Path) -> Vec<std::path::PathBuf> {
    ["cur", "new"]
        .iter()
        .flat_map(|sub| std::fs::read_dir(dir.join(sub)).into_iter().flatten().flatten().map(|e| e.path()))
        .collect()
}

/// Flip a bit near the end of each file: a read of it fails its checksum.
fn damage(files: &[std::path::PathBuf]) {
    for p in files {
        let mut bytes = std::fs::read(p).unwrap();
        let last = bytes.len() - 3;
        bytes[last] ^= 0x20;
        std::fs::write(p, bytes).unwrap();
    }
}

fn message_id(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines().find_map(|l| l.strip_prefix("Message-ID: ")).unwrap_or_else(|| panic!("{path:?}")).trim().to_string()
}

/// A minimal IMAP client for one-line commands: the untagged lines and the tagged one.
struct RawImap {
    reader: std::io::BufReader<std::net::TcpStream>,
    writer: std::net::TcpStream,
    tag: u32,
}

impl RawImap {
    fn login(addr: &str, user: &str, password: &str) -> Self {
        let stream = std::net::TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut imap = Self { reader: std::io::BufReader::new(stream.try_clone().unwrap()), writer: stream, tag: 0 };
        let mut greeting = String::new();
        std::io::BufRead::read_line(&mut imap.reader, &mut greeting).unwrap();
        assert!(imap.command(&format!("LOGIN {user} {password}")).contains(" OK "));
        assert!(imap.command("SELECT INBOX").contains(" OK "));
        imap
    }

    fn command(&mut self, text: &str) -> String {
        use std::io::{BufRead, Write};
        self.tag += 1;
        let tag = format!("r{}", self.tag);
        write!(self.writer, "{tag} {text}\r\n").unwrap();
        let mut out = String::new();
        loop {
            let mut line = String::new();
            assert!(self.reader.read_line(&mut line).unwrap() > 0, "closed after {out}");
            out.push_str(&line);
            if line.starts_with(&format!("{tag} ")) {
                return out;
            }
        }
    }
}

fn mbsync(rc: &Path) {
    let out = Command::new("mbsync").arg("-c").arg(rc).arg("-a").output().unwrap();
    assert!(
        out.status.success(),
        "mbsync failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn mbsync_and_curl_interoperate() {
    let tmp = tempfile::tempdir().unwrap();
    // No whole headers kept: what SORT and THREAD do not read again comes from the sort cache.
    let mut c = Cluster::start_tuned(tmp.path(), 3, 4, |cfg| cfg.limits.header_cache_bytes = 0);
    let leader = c.wait_leader(Duration::from_secs(30));
    let user = "user1@example.edu";
    deliver_many(&c.lmtp[leader], user, MESSAGES);

    let (host, port) = c.imap[leader].rsplit_once(':').unwrap();
    let local = tmp.path().join("local");
    std::fs::create_dir_all(&local).unwrap();
    let rc = tmp.path().join("mbsyncrc");
    std::fs::write(
        &rc,
        format!(
            "IMAPAccount test\nHost {host}\nPort {port}\nUser {user}\nPass {pw}\nSSLType None\nAuthMechs PLAIN LOGIN\n\n\
             IMAPStore remote\nAccount test\n\n\
             MaildirStore local\nPath {l}/\nInbox {l}/INBOX\nSubFolders Verbatim\n\n\
             Channel sync\nFar :remote:\nNear :local:\nPatterns INBOX Archive\nCreate Near\nSync All\nExpunge Both\nSyncState *\n",
            pw = password(1),
            l = local.display()
        ),
    )
    .unwrap();

    // Down: every message exactly once.
    mbsync(&rc);
    let inbox = local.join("INBOX");
    let files = maildir_files(&inbox);
    assert_eq!(files.len(), MESSAGES);
    let ids: BTreeSet<String> = files.iter().map(|p| message_id(p)).collect();
    assert_eq!(ids.len(), MESSAGES, "duplicates after the first sync");

    // Up: flag two messages, delete one, add one.
    let mut sorted = files.clone();
    sorted.sort();
    for p in &sorted[..2] {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        let base = name.split(":2,").next().unwrap().to_string();
        std::fs::rename(p, inbox.join("cur").join(format!("{base}:2,FS"))).unwrap();
    }
    let deleted_id = message_id(&sorted[2]);
    std::fs::remove_file(&sorted[2]).unwrap();
    std::fs::write(
        inbox.join("new").join("1700000000.local.host"),
        "From: user1@example.edu\r\nSubject: written offline\r\nMessage-ID: <offline@example.edu>\r\n\r\nhi\r\n",
    )
    .unwrap();
    mbsync(&rc);
    mbsync(&rc);

    let files = maildir_files(&inbox);
    let ids: Vec<String> = files.iter().map(|p| message_id(p)).collect();
    let unique: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(ids.len(), MESSAGES, "local count after syncing up twice");
    assert_eq!(unique.len(), ids.len(), "local duplicates");
    assert!(unique.contains(&"<offline@example.edu>".to_string()));
    assert!(!unique.contains(&deleted_id));

    // The server holds the same set, with the flags that went up.
    let tree = support::tree(&c.mail_dir(leader));
    let server = support::message_ids(&tree, user);
    assert_eq!(server.len(), MESSAGES, "server message count");
    assert!(server.values().all(|n| *n == 1), "server duplicates");
    assert!(server.contains_key("<offline@example.edu>") && !server.contains_key(&deleted_id));
    let flagged =
        tree.keys().filter(|p| p.starts_with(&format!("users/{user}/Maildir/cur/")) && p.ends_with(":2,FS")).count();
    assert_eq!(flagged, 2, "flags did not go up");

    // curl: fetch one message by UID over IMAP.
    let url = format!("imap://{}/INBOX;UID=5", c.imap[leader]);
    let out = Command::new("curl")
        .args(["-s", "--max-time", "20", "--user", &format!("{user}:{}", password(1)), &url])
        .output()
        .unwrap();
    assert!(out.status.success(), "curl failed: {}", String::from_utf8_lossy(&out.stderr));
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(body.contains("Subject: message 4") && body.contains("body 4"), "{body}");

    // COMPRESS=DEFLATE (RFC 4978) with zlib on the other side: a session runs compressed,
    // and a deflate bomb ends in BYE [LIMIT] instead of inflating 256 MiB.
    let login = support::login_args(&c.imap[leader], 1);
    let mut args = vec!["session"];
    args.extend(login.iter().map(String::as_str));
    let r = support::py_json("imap_compress.py", &args);
    assert_eq!(r["exists"], MESSAGES, "{r}");
    assert_eq!(r["fetched"], MESSAGES, "{r}");
    assert_eq!(r["body_ok"], true, "{r}");
    assert!(r["second_compress"].as_str().unwrap().starts_with("y NO [COMPRESSIONACTIVE]"), "{r}");
    assert!(r["logout"].as_str().unwrap().starts_with("o OK"), "{r}");
    args[0] = "bomb";
    let r = support::py_json("imap_compress.py", &args);
    assert!(r["last_line"].as_str().unwrap().starts_with("* BYE [LIMIT]"), "{r}");
    assert_eq!(r["closed"], true, "{r}");

    // SORT and THREAD a second time read no message file: with every file on the leader
    // damaged (a read would fail its checksum), they still answer, and the same.
    let sort = |imap: &mut RawImap| {
        let first = |out: String| out.lines().next().unwrap_or_default().to_string();
        let sorted = first(imap.command("UID SORT (SUBJECT REVERSE DATE) UTF-8 ALL"));
        (sorted, first(imap.command("UID THREAD REFERENCES UTF-8 ALL")))
    };
    let mut imap = RawImap::login(&c.imap[leader], user, &password(1));
    let (sorted, threads) = sort(&mut imap);
    let numbers = sorted.lines().next().unwrap().split_whitespace().count() - 2;
    assert!(sorted.starts_with("* SORT ") && numbers == MESSAGES, "{numbers}: {sorted}");
    assert!(threads.starts_with("* THREAD ("), "{threads}");
    let damaged = maildir_files(&c.mail_dir(leader).join(format!("users/{user}/Maildir")));
    assert_eq!(damaged.len(), MESSAGES);
    damage(&damaged);
    assert_eq!(sort(&mut imap), (sorted, threads), "from the sort cache, not the files");
    assert!(imap.command("UID FETCH 5 (BODY[])").contains("NO [SERVERBUG]"), "the files are damaged indeed");
    c.kill(leader);
}

#[test]
fn sort_fields_kept_on_disk_answer_sort_thread_and_search_after_a_restart() {
    const N: usize = 300;
    let tmp = tempfile::tempdir().unwrap();
    // No whole headers and no sort fields kept in memory: all of it comes from the disk.
    let mut c = Cluster::start_tuned(tmp.path(), 1, 2, |cfg| {
        cfg.limits.header_cache_bytes = 0;
        cfg.limits.sort_cache_bytes = 0;
    });
    let node = c.wait_leader(Duration::from_secs(30));
    let user = "user1@example.edu";
    deliver_many(&c.lmtp[node], user, N);
    let ask = |imap: &mut RawImap| {
        let first = |out: String| out.lines().next().unwrap_or_default().to_string();
        [
            first(imap.command("UID SORT (SUBJECT REVERSE DATE) UTF-8 ALL")),
            first(imap.command("UID THREAD REFERENCES UTF-8 ALL")),
            first(imap.command("UID SEARCH FROM sender@example.org SUBJECT \"message 7\"")),
            first(imap.command("UID SEARCH HEADER Message-ID <m12@example.org>")),
        ]
    };
    let mut imap = RawImap::login(&c.imap[node], user, &password(1));
    let before = ask(&mut imap);
    assert_eq!(before[0].split_whitespace().count() - 2, N, "{}", before[0]);
    assert!(before[1].starts_with("* THREAD ("), "{}", before[1]);
    let sevens: Vec<&str> = before[2].split_whitespace().skip(2).collect();
    assert_eq!(sevens.len(), 11, "message 7 and 70 to 79: {}", before[2]);
    assert_eq!(before[3], "* SEARCH 13", "UIDs start at 1");
    drop(imap);

    let kept = c.mail_dir(node).join(format!("users/{user}/Maildir/mailstore.fields"));
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&kept).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "{}", kept.display());
    c.kill(node);
    c.start_node(node);
    let node = c.wait_leader(Duration::from_secs(30));
    // Logged in and selected, the node has replayed its log (which rewrites the message
    // files of entries after its last checkpoint). Then every message file is damaged (a
    // read fails its checksum): the answers must come from the kept fields.
    let mut imap = RawImap::login(&c.imap[node], user, &password(1));
    let files = maildir_files(&c.mail_dir(node).join(format!("users/{user}/Maildir")));
    assert_eq!(files.len(), N);
    damage(&files);
    assert_eq!(ask(&mut imap), before, "from the kept fields, not the files");
    let fetched = imap.command("UID FETCH 5 (BODY[])");
    assert!(fetched.contains("NO [SERVERBUG]"), "the files are damaged indeed: {fetched}");
    c.kill(node);
}
