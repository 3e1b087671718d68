//! Interop: a real Dovecot (Debian's dovecot-imapd), pointed read-only at a replica's
//! Maildir tree, shows the same messages with the same flags in the same mailboxes, read
//! through Python's imaplib. Dovecot keeps its own indexes elsewhere; the test checks it
//! wrote nothing into the tree.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use storaged::mailstore::ops::flag;
use storaged::mailstore::{FlagMode, MailOp, MailRequest, OpId, Store};
use support::tree;

fn req(n: u64, op: MailOp) -> MailRequest {
    MailRequest { op_id: OpId::digest(&[&n.to_le_bytes()]), op }
}

struct Dovecot(std::process::Child);

impl Drop for Dovecot {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn dovecot_reads_a_replica_maildir_with_the_same_messages_and_flags() {
    let dovecot_bin = std::path::Path::new("/usr/sbin/dovecot");
    assert!(dovecot_bin.exists(), "dovecot is not installed: run scripts/install-test-deps");
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
    let store_root = root.join("store");
    let mut s = Store::open(&store_root, "hermes").unwrap();
    let u = |x: &str| x.to_string();
    let mut n = 0;
    let mut next = || {
        n += 1;
        n
    };
    for i in 0..5 {
        let message = format!("Message-ID: <m{i}@interop>\r\nSubject: {i}\r\n\r\nbody {i}\r\n").into_bytes();
        let k = next();
        s.apply(k, &req(k, MailOp::Deliver { recipients: vec![u("bob")], internal_date: 1_700_000_000 + i, message }))
            .unwrap();
    }
    let ops = [
        MailOp::Store {
            user: u("bob"),
            mailbox: u("INBOX"),
            uids: vec![1],
            mode: FlagMode::Add,
            flags: flag::SEEN | flag::FLAGGED,
            keywords: vec![],
            unchanged_since: None,
        },
        MailOp::Store {
            user: u("bob"),
            mailbox: u("INBOX"),
            uids: vec![2],
            mode: FlagMode::Add,
            flags: flag::ANSWERED | flag::SEEN,
            keywords: vec![],
            unchanged_since: None,
        },
        MailOp::CreateMailbox { user: u("bob"), mailbox: u("Archive") },
        MailOp::Move { user: u("bob"), from: u("INBOX"), to: u("Archive"), uids: vec![2, 3], now_s: 1_790_000_000 },
        MailOp::Store {
            user: u("bob"),
            mailbox: u("INBOX"),
            uids: vec![4],
            mode: FlagMode::Add,
            flags: flag::DELETED | flag::DRAFT,
            keywords: vec![],
            unchanged_since: None,
        },
    ];
    for op in ops {
        let k = next();
        s.apply(k, &req(k, op)).unwrap();
    }
    s.checkpoint().unwrap();
    let before = tree(&store_root);

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dv = root.join("dovecot");
    std::fs::create_dir_all(dv.join("run")).unwrap();
    std::fs::create_dir_all(dv.join("idx")).unwrap();
    Command::new("chown").arg("-R").arg("mail:mail").arg(dv.join("idx")).status().unwrap();
    let conf = format!(
        "protocols = imap\nlisten = 127.0.0.1\nbase_dir = {d}/run\nstate_dir = {d}/state\nlog_path = {d}/dovecot.log\n\
         ssl = no\ndisable_plaintext_auth = no\nauth_mechanisms = plain\nfirst_valid_uid = 8\n\
         mail_location = maildir:{store}/users/%u/Maildir:INDEX={d}/idx/%u/index:CONTROL={d}/idx/%u/control\n\
         userdb {{\n  driver = static\n  args = uid=mail gid=mail home={d}/idx/%u\n}}\n\
         passdb {{\n  driver = static\n  args = password=secret\n}}\n\
         service imap-login {{\n  chroot =\n  inet_listener imap {{\n    address = 127.0.0.1\n    port = {port}\n  }}\n  inet_listener imaps {{\n    port = 0\n  }}\n}}\n\
         service anvil {{\n  chroot =\n}}\n",
        d = dv.display(),
        store = store_root.display(),
    );
    std::fs::write(dv.join("dovecot.conf"), conf).unwrap();
    let _dovecot = Dovecot(
        Command::new(dovecot_bin)
            .arg("-F")
            .arg("-c")
            .arg(dv.join("dovecot.conf"))
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "dovecot did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/imap_list.py");
    let out = Command::new("python3")
        .arg(script)
        .args(["127.0.0.1", &port.to_string(), "bob", "secret", "INBOX", "Archive"])
        .output()
        .unwrap();
    let log = std::fs::read_to_string(dv.join("dovecot.log")).unwrap_or_default();
    assert!(out.status.success(), "imap client failed: {}\n{log}", String::from_utf8_lossy(&out.stderr));
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let expect = serde_json::json!({
        "INBOX": [
            {"flags": ["\\Flagged", "\\Seen"], "message_id": "<m0@interop>"},
            {"flags": ["\\Deleted", "\\Draft"], "message_id": "<m3@interop>"},
            {"flags": [], "message_id": "<m4@interop>"},
        ],
        "Archive": [
            {"flags": ["\\Answered", "\\Seen"], "message_id": "<m1@interop>"},
            {"flags": [], "message_id": "<m2@interop>"},
        ],
    });
    assert_eq!(seen, expect, "dovecot log:\n{log}");
    assert!(!log.contains("Error"), "dovecot reported errors:\n{log}");
    assert_eq!(tree(&store_root), before, "dovecot must not change the replica");
}
