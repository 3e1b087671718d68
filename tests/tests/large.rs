//! Messages near the size limit, end to end with real processes and clients: submitted
//! with Python's smtplib to a local user and a remote one in one transaction, the message
//! is committed to the replicated queue, whose runner delivers one copy to the user's
//! mailhost and relays the other to Postfix's `smtp-sink`; then `mailctl move` carries the message to another
//! mailhost; every copy arrives whole (its last line included), once.

mod support;

use std::process::Command;
use std::time::Duration;

use support::*;

/// Bytes of the test message's body: most of frontd's default 32 MiB limit.
const BODY_BYTES: usize = 30 << 20;

/// Message `uid` of alice's INBOX fetched through frontd with curl's IMAP client.
fn fetch(front: &Front, uid: u32) -> String {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "120", "--user", "alice:alice-pw"])
        .arg(format!("imap://{}/INBOX;UID={uid}", front.imap))
        .output()
        .unwrap();
    assert!(out.status.success(), "curl: {:?} {}", out.status, String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The message as sent: every numbered body line, up to the last one, in order.
fn assert_whole(what: &str, text: &str, subject: &str) {
    let lines = BODY_BYTES / 77;
    let text = text.replace("\r\n", "\n");
    assert!(text.len() >= BODY_BYTES - 77, "{what}: only {} bytes", text.len());
    let first = format!("\n{subject} line {:09} ", 0);
    let last = format!("\n{subject} line {:09} ", lines - 1);
    let (a, b) = (text.find(&first), text.find(&last));
    assert!(a.is_some() && b.is_some() && a < b, "{what}: first or last body line missing");
    assert_eq!(text.matches(&format!("\n{subject} line ")).count(), lines, "{what}: lines lost or repeated");
}

#[test]
fn a_message_near_the_size_limit_is_delivered_relayed_through_the_queue_and_moved() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let storage = Storage::start(root);
    std::fs::copy(fixture("users.ldif"), root.join("users.ldif")).unwrap();
    let remote = free_addr();
    let sink = Sink::start(root, "remote", &remote, None);
    let options = FrontOptions {
        tls: true,
        plaintext_loopback: true,
        queue: Some(QueueSection {
            routes: [("remote.test".to_string(), remote.clone())].into_iter().collect(),
            ..fast_queue(120)
        }),
        tune: Some(Box::new(|c| c.smtp.message_max_bytes = 32 << 20)),
        ..FrontOptions::default()
    };
    let front = Front::start_opts(root, &storage, ldif_directory(), options);
    wait_listening(&front.submission, "frontd submission");

    let ca = root.join("cert.pem");
    let subject = "big one";
    let body = BODY_BYTES.to_string();
    let r = smtplib(&[
        "--server",
        &front.submission,
        "--starttls",
        "--ca",
        ca.to_str().unwrap(),
        "--user",
        "alice@example.edu",
        "--password",
        "alice-pw",
        "--from",
        "alice@example.edu",
        "--to",
        "alice@example.edu",
        "--to",
        "friend@remote.test",
        "--subject",
        subject,
        "--body-bytes",
        &body,
    ]);
    assert_eq!((r["ok"].as_bool(), r["refused"].as_object().map(|o| o.len())), (Some(true), Some(0)), "{r}");

    // A transaction with a remote recipient is committed to the queue before the 250; the
    // runner delivers both copies from there.
    wait_for("alice's copy", Duration::from_secs(120), || {
        inbox_subjects(&front, "alice", "alice-pw").contains(&subject.to_string())
    });
    assert_whole("alice's copy", &fetch(&front, 1), subject);
    wait_for("the queued copy at the sink", Duration::from_secs(120), || sink.count(subject) == 1);
    let relayed = sink.messages().into_iter().find(|m| m.contains(&format!("Subject: {subject}"))).unwrap();
    assert_whole("the relayed copy", &relayed, subject);

    // Moving alice carries the message to apollo whole, with its UID.
    // The command returns at the flip; the source copy waits for `--finish`.
    let (ok, report) = mailctl(root, &["move", "alice@example.edu", "apollo", "--grace-s", "600"]);
    assert!(ok, "mailctl move: {report}");
    assert!(report.contains("source copy kept") && report.contains("mailctl move --finish"), "{report}");
    assert!(std::fs::read_to_string(root.join("users.ldif")).unwrap().contains("mailHost: apollo"));
    assert_whole("alice's copy after the move", &fetch(&front, 1), subject);
    let source = |i: usize| root.join(format!("data{i}/hermes/mail/users/alice@example.edu"));
    assert!((1..=3).any(|i| source(i).exists()), "the source copy is kept");
    let (ok, out) = mailctl(root, &["move", "--finish", "alice@example.edu", "hermes"]);
    assert!(ok, "mailctl move --finish: {out}");
    wait_for("the source copy to go", Duration::from_secs(30), || (1..=3).all(|i| !source(i).exists()));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(sink.count(subject), 1, "relayed exactly once");
}
