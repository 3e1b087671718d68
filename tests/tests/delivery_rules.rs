//! The directory's delivery attributes, end to end through the front with qmail-ldap's
//! meanings: `mailForwardingAddress` with `deliveryMode: forwardonly` (forwarded, no local
//! copy) and without (both), `deliveryMode: reply` with `mailReplyText` (answered once per
//! sender, never to lists), `mailQuotaSize`/`mailQuotaCount` (deliveries wait with `452
//! 4.2.2`, APPEND gets `NO [OVERQUOTA]`, GETQUOTAROOT reports what STATUS SIZE sums), and
//! `mailSizeMax: 0` (unlimited). Remote domains are a local smtp-sink.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use support::*;

fn send(front: &Front, from: &str, to: &str, subject: &str, body_bytes: usize) -> serde_json::Value {
    let bytes = body_bytes.to_string();
    smtplib(&["--server", &front.smtp, "--from", from, "--to", to, "--subject", subject, "--body-bytes", &bytes])
}

fn delivered(v: &serde_json::Value) -> bool {
    v["ok"] == true && v["refused"].as_object().is_some_and(|o| o.is_empty())
}

#[test]
fn forwarding_auto_reply_quota_and_size_from_the_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let storage = Storage::start(root);
    std::fs::copy(fixture("delivery_rules.ldif"), root.join("users.ldif")).unwrap();
    let remote = free_addr();
    let sink = Sink::start(root, "remote", &remote, None);
    let routes = BTreeMap::from([("remote.test".to_string(), remote.clone())]);
    let options = FrontOptions { queue: Some(QueueSection { routes, ..fast_queue(30) }), ..FrontOptions::default() };
    let front = Front::start_opts(root, &storage, ldif_directory(), options);
    let inbox = |user: &str| {
        client(&[
            "read",
            "--server",
            &front.imap,
            "--user",
            user,
            "--password",
            &format!("{}-pw", user.split('@').next().unwrap()),
        ])
    };

    // forwardonly: the message goes to the forwarding address, none stays here.
    assert!(delivered(&send(&front, "sender@remote.test", "fwd@example.edu", "forward me", 0)));
    wait_for("the forwarded copy", Duration::from_secs(30), || sink.count("forward me") == 1);
    assert_eq!(inbox("fwd@example.edu")["exists"], 0);
    // Sent from an SRS address of ours (SPF at the destination judges example.edu), and a
    // bounce to that address goes home to the original sender; a forged one finds nobody.
    let forwarded = sink.messages().into_iter().find(|m| m.contains("forward me")).unwrap();
    let srs =
        forwarded.lines().find_map(|l| l.strip_prefix("X-Mail-Args: <")).map(|a| a.trim_end_matches('>').to_string());
    let srs = srs.expect("the envelope sender");
    assert!(srs.starts_with("SRS0=") && srs.ends_with("=remote.test=sender@example.edu"), "{srs}");
    let bounce = smtplib(&["--server", &front.smtp, "--from", "", "--to", &srs, "--subject", "bounce of forward me"]);
    assert!(delivered(&bounce), "{bounce}");
    wait_for("the bounce at the original sender", Duration::from_secs(30), || sink.count("bounce of forward me") == 1);
    let home = sink.messages().into_iter().find(|m| m.contains("bounce of forward me")).unwrap();
    assert!(home.contains("X-Rcpt-Args: <sender@remote.test>"), "{home}");
    let forged = srs.replacen("remote.test", "victim.test", 1);
    let refused = smtplib(&["--server", &front.smtp, "--from", "", "--to", &forged, "--subject", "forged"]);
    assert!(refused["refused"].to_string().contains("550"), "{refused}");
    // Forwarding without a mode: forwarded and kept.
    assert!(delivered(&send(&front, "sender@remote.test", "both@example.edu", "copy me", 0)));
    wait_for("the second forward", Duration::from_secs(30), || sink.count("copy me") == 1);
    assert_eq!(inbox("both@example.edu")["exists"], 1);

    // reply: one auto-reply per sender; the message is kept.
    assert!(delivered(&send(&front, "sender@remote.test", "reply@example.edu", "question 1", 0)));
    assert!(delivered(&send(&front, "sender@remote.test", "reply@example.edu", "question 2", 0)));
    wait_for("the auto-reply", Duration::from_secs(30), || {
        sink.messages().iter().filter(|m| m.contains("I am on leave until June.")).count() == 1
    });
    std::thread::sleep(Duration::from_secs(3));
    let replies: Vec<String> =
        sink.messages().into_iter().filter(|m| m.contains("I am on leave until June.")).collect();
    assert_eq!(replies.len(), 1, "answered once: {replies:?}");
    assert!(replies[0].contains("Auto-Submitted: auto-replied"), "{}", replies[0]);
    assert_eq!(inbox("reply@example.edu")["exists"], 2);

    // A 1,000-byte, 1-message quota: a 3 KB message waits at the sender (452 4.2.2).
    for n in 0..3 {
        let r = send(&front, "sender@remote.test", "tiny@example.edu", &format!("big {n}"), 3000);
        assert_eq!(r["code"], 452, "{r}");
    }
    assert_eq!(inbox("tiny@example.edu")["exists"], 0);

    // 100,000 bytes / 3 messages: two deliveries, one APPEND, then full both ways.
    assert!(delivered(&send(&front, "sender@remote.test", "quota@example.edu", "q1", 2000)));
    assert!(delivered(&send(&front, "sender@remote.test", "quota@example.edu", "q2", 2000)));
    let q = python_json(
        "quota_client.py",
        &["--server", &front.imap, "--user", "quota@example.edu", "--password", "quota-pw", "--append", "2"],
    );
    let caps = q["capabilities"].as_str().unwrap();
    assert!(caps.contains("QUOTA=RES-STORAGE") && caps.contains("QUOTA=RES-MESSAGE"), "{caps}");
    let appends: Vec<&str> = q["appends"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert!(appends[0].starts_with("OK"), "{q}");
    assert!(appends[1].starts_with("NO") && appends[1].contains("OVERQUOTA"), "{q}");
    let r = send(&front, "sender@remote.test", "quota@example.edu", "q3", 100);
    assert_eq!(r["code"], 452, "{r}");
    assert_eq!(q["getquotaroot"], "OK", "{q}");
    assert_eq!(q["quotaroot"][0], "\"INBOX\" \"\"", "{q}");
    let total: u64 = q["status"].as_object().unwrap().values().map(|v| v[0].as_u64().unwrap()).sum();
    let messages: u64 = q["status"].as_object().unwrap().values().map(|v| v[1].as_u64().unwrap()).sum();
    let expected = format!("\"\" (STORAGE {} 98 MESSAGE {messages} 3)", total.div_ceil(1024));
    assert_eq!(q["quota"][0], expected, "GETQUOTAROOT usage is what STATUS SIZE sums: {q}");
    assert_eq!(messages, 3, "two deliveries and one APPEND: {q}");

    // mailSizeMax: 0 is unlimited, not "at most 0 bytes".
    assert!(delivered(&send(&front, "sender@remote.test", "big@example.edu", "large", 200_000)));
}

/// A delivery that triggers an auto-reply, then the leader of the user's mailhost killed at
/// once: the reply is committed with the delivery (one entry), so the new leader's queue
/// sends it exactly once, and the message is stored once.
#[test]
fn an_auto_reply_is_sent_exactly_once_across_a_leader_kill() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let mut storage = Storage::start(root);
    std::fs::copy(fixture("delivery_rules.ldif"), root.join("users.ldif")).unwrap();
    let remote = free_addr();
    let sink = Sink::start(root, "remote", &remote, None);
    let routes = BTreeMap::from([("remote.test".to_string(), remote.clone())]);
    let options = FrontOptions { queue: Some(QueueSection { routes, ..fast_queue(10) }), ..FrontOptions::default() };
    let front = Front::start_opts(root, &storage, ldif_directory(), options);
    // reply@ lives on hermes, as alice does: her RCPT finds the group's leader.
    let leader = storage.leader_for("alice@example.edu");
    assert!(delivered(&send(&front, "sender@remote.test", "reply@example.edu", "are you there", 0)));
    storage.kill(leader);
    let replies = || sink.messages().iter().filter(|m| m.contains("I am on leave until June.")).count();
    wait_for("the auto-reply from the new leader", Duration::from_secs(60), || replies() >= 1);
    storage.start_node(leader);
    // Past a queue lease (10 s): a reply claimed before the kill would have come again by now.
    std::thread::sleep(Duration::from_secs(15));
    assert_eq!(replies(), 1, "exactly one auto-reply");
    let inbox = client(&["read", "--server", &front.imap, "--user", "reply@example.edu", "--password", "reply-pw"]);
    assert_eq!(inbox["exists"], 1, "stored once: {inbox}");
}
