//! The replicated outbound queue, end to end with real processes and real peers: Postfix's
//! `smtp-sink` stands for remote mail systems, Python's smtplib for clients. Mail for a
//! remote domain waits in the queue while its server is down and arrives once when it
//! returns; a transaction spanning two mailhosts is queued and read once by each user; a
//! permanent refusal comes back to the sender as a DSN; killing the queue group's leader
//! during a burst loses and duplicates nothing.

mod support;

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::admin::{AdminReply, AdminRequest, QueueItem};
use frontd::cluster::ClusterMap;
use frontd::queue::QueueClient;
use support::*;

/// Every queued message of both groups, asked of the leaders over the admin protocol.
fn queued(storage: &Storage) -> Vec<QueueItem> {
    let key = common::rpc_channel::ClusterKey::from_secret(CLUSTER_KEY);
    let cluster = Arc::new(ClusterMap::new(&storage.group_sections()));
    let groups: Vec<String> = GROUPS.iter().map(|g| g.to_string()).collect();
    let client = QueueClient::new(cluster, key, groups.clone(), Duration::from_secs(30));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut all = Vec::new();
    for g in groups {
        match rt.block_on(client.call(&g, AdminRequest::List { group: g.clone() })).unwrap() {
            AdminReply::Items(items) => all.extend(items),
            other => panic!("{other:?}"),
        }
    }
    all
}

fn queue_settings(routes: &BTreeMap<&str, String>) -> QueueSection {
    QueueSection { routes: routes.iter().map(|(d, a)| (d.to_string(), a.clone())).collect(), ..fast_queue(30) }
}

#[test]
fn remote_mail_waits_for_its_server_and_arrives_once_and_refusals_bounce() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let storage = Storage::start(root);
    std::fs::copy(fixture("users.ldif"), root.join("users.ldif")).unwrap();
    let (remote, refusing) = (free_addr(), free_addr());
    let _refusing = Sink::start(root, "refusing", &refusing, Some("550 5.1.1 no such user here"));
    let routes = BTreeMap::from([("remote.test", remote.clone()), ("bounce.test", refusing.clone())]);
    // dave's mailHost, zeus, has no running node: his mail must wait in the queue.
    let zeus = GroupSection {
        name: "zeus".into(),
        members: vec![MemberSection {
            id: 9,
            imap: None,
            pop3: None,
            lmtp: Some(free_addr()),
            admin: None,
            sieve: None,
        }],
    };
    let options = FrontOptions {
        tls: true,
        plaintext_loopback: true,
        queue: Some(QueueSection { groups: vec!["hermes".into(), "apollo".into()], ..queue_settings(&routes) }),
        route_timeout_ms: Some(3000),
        tune: Some(Box::new(move |c| c.groups.insert(0, zeus.clone()))),
        json_logs: false,
    };
    let front = Front::start_opts(root, &storage, ldif_directory(), options);
    wait_listening(&front.submission, "frontd submission");
    let ca = root.join("cert.pem");
    let auth = ["--starttls", "--ca", ca.to_str().unwrap(), "--user", "alice@example.edu", "--password", "alice-pw"];
    let submit = |to: &[&str], subject: &str| {
        let mut args = vec!["--server", front.submission.as_str(), "--from", "alice@example.edu", "--subject", subject];
        for t in to {
            args.extend(["--to", t]);
        }
        args.extend(auth);
        let r = smtplib(&args);
        assert_eq!((r["ok"].as_bool(), r["refused"].as_object().map(|o| o.len())), (Some(true), Some(0)), "{r}");
    };

    // The remote server is down: the message is queued (250) and stays, with the reason.
    submit(&["friend@remote.test"], "outbound one");
    wait_for("a failed attempt", Duration::from_secs(30), || {
        queued(&storage)
            .iter()
            .any(|i| i.attempts >= 2 && i.last_error.as_deref().is_some_and(|e| e.contains("<friend@remote.test>")))
    });

    // Two mailhosts in one transaction (MX, no AUTH): queued, then each user reads it once.
    let r = smtplib(&[
        "--server",
        &front.smtp,
        "--from",
        "ann@example.org",
        "--to",
        "alice@example.edu",
        "--to",
        "bob@example.edu",
        "--subject",
        "two mailhosts",
    ]);
    assert_eq!(r["refused"].as_object().map(|o| o.len()), Some(0), "{r}");
    wait_for("both copies", Duration::from_secs(30), || {
        inbox_subjects(&front, "alice", "alice-pw").contains(&"two mailhosts".to_string())
            && inbox_subjects(&front, "bob", "bob-pw").contains(&"two mailhosts".to_string())
    });

    // A mailhost that is down: the message is queued (250), not refused, and waits.
    let r = smtplib(&[
        "--server",
        &front.smtp,
        "--from",
        "ann@example.org",
        "--to",
        "dave@example.edu",
        "--subject",
        "to zeus",
    ]);
    assert_eq!((r["ok"].as_bool(), r["refused"].as_object().map(|o| o.len())), (Some(true), Some(0)), "{r}");
    wait_for("dave's message retried", Duration::from_secs(30), || {
        queued(&storage).iter().any(|i| i.pending().any(|p| p == "dave@example.edu") && i.attempts >= 2)
    });

    // A permanent refusal comes back to the sender as a delivery status notification.
    submit(&["ghost@bounce.test"], "to a ghost");
    wait_for("the bounce", Duration::from_secs(30), || {
        inbox_subjects(&front, "alice", "alice-pw").contains(&"Undelivered Mail Returned to Sender".to_string())
    });
    let out = Command::new("curl")
        .args(["-s", "--max-time", "20", "--user", "alice:alice-pw"])
        .arg(format!("imap://{}/INBOX;UID=2", front.imap))
        .output()
        .unwrap();
    let bounce = String::from_utf8_lossy(&out.stdout);
    assert!(
        bounce.contains("Final-Recipient: rfc822; ghost@bounce.test") && bounce.contains("Status: 5.1.1"),
        "{bounce}"
    );
    assert!(bounce.contains("Subject: to a ghost"), "the original's header comes back: {bounce}");

    // The remote server returns: the waiting message arrives, once, and leaves the queue.
    let sink = Sink::start(root, "remote", &remote, None);
    wait_for("the queued message at the sink", Duration::from_secs(30), || sink.count("outbound one") == 1);
    let only_dave = || {
        let q = queued(&storage);
        q.len() == 1 && q[0].pending().collect::<Vec<_>>() == ["dave@example.edu"]
    };
    wait_for("a queue holding only dave's message", Duration::from_secs(30), only_dave);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(sink.count("outbound one"), 1, "delivered exactly once");
    let text = sink.messages().concat();
    assert!(text.contains("X-Rcpt-Args: <friend@remote.test>") && text.contains("X-Mail-Args: <alice@example.edu>"));
    assert_eq!(inbox_subjects(&front, "alice", "alice-pw").iter().filter(|s| *s == "two mailhosts").count(), 1);
    assert_eq!(inbox_subjects(&front, "bob", "bob-pw").iter().filter(|s| *s == "two mailhosts").count(), 1);
}

#[test]
fn killing_the_queue_leader_during_a_burst_loses_and_duplicates_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let mut storage = Storage::start(root);
    std::fs::copy(fixture("users.ldif"), root.join("users.ldif")).unwrap();
    let remote = free_addr();
    let sink = Sink::start(root, "remote", &remote, None);
    let options = FrontOptions {
        // Loopback clients may relay through the MX (an IP rule), so the burst needs no AUTH.
        tune: Some(Box::new(|c| c.smtp.rules.push(rule("127.0.0.0/8", "allow", Some(0), true)))),
        queue: Some(queue_settings(&BTreeMap::from([("remote.test", remote.clone())]))),
        ..FrontOptions::default()
    };
    let front = Front::start_opts(root, &storage, ldif_directory(), options);
    wait_listening(&front.smtp, "frontd SMTP");
    // The queue group is the first in preference: hermes. Find its leader by LMTP.
    let leader = storage.leader_for("alice@example.edu");

    let total = 40;
    let mut acked = Vec::new();
    for k in 0..total {
        if k == 12 {
            storage.kill(leader);
        }
        let subject = format!("burst {k}");
        if mx_send(&front.smtp, "r@remote.test", &subject) {
            acked.push(subject);
        }
    }
    eprintln!("burst: {} of {total} acknowledged across the failover", acked.len());
    assert!(acked.len() >= total / 2, "most of the burst is accepted across the failover: {}", acked.len());
    storage.start_node(leader);
    wait_for("every acknowledged message at the sink", Duration::from_secs(120), || {
        acked.iter().all(|s| sink.count(s) >= 1)
    });
    wait_for("an empty queue", Duration::from_secs(60), || queued(&storage).is_empty());
    std::thread::sleep(Duration::from_secs(3));
    for k in 0..total {
        let subject = format!("burst {k}");
        let n = sink.count(&subject);
        assert!(n <= 1, "{subject} delivered {n} times");
        if acked.contains(&subject) {
            assert_eq!(n, 1, "{subject} was acknowledged and lost");
        }
    }
}

/// A front queues a message its own attempt failed to deliver, but the failure may be only
/// the answer's: a leader that dies right after committing the message answers nothing, and
/// the group commits it under the next leader. The queued copy keeps the client's retry key
/// and the runner delivers with it, so the group recognises what it already holds: one
/// copy, not two (chaos seed 111 found the second: a leader's disk filled during delivery).
#[test]
fn a_message_queued_after_an_attempt_that_was_committed_after_all_arrives_once() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let storage = Storage::start(root);
    std::fs::copy(fixture("users.ldif"), root.join("users.ldif")).unwrap();
    let key = [0x5a_u8; 16];
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    let message = "From: sender@example.org\r\nTo: alice@example.edu\r\nSubject: committed once\r\n\
                   Message-ID: <once@example.org>\r\n\r\nhello\r\n";
    // The front's own attempt, keyed as a front sends it; committed.
    let mut c = Lmtp::connect(&storage.lmtp[storage.leader_for("alice@example.edu")]);
    assert!(c.cmd(&format!("MAIL FROM:<sender@example.org> XMSGKEY={hex}")).starts_with("250"));
    assert!(c.cmd("RCPT TO:<alice@example.edu>").starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(format!("{message}.\r\n").as_bytes());
    let r = c.reply();
    assert!(r.starts_with("250"), "{r}");
    // The front saw no answer and queued the message with the same key.
    let queued_reply = storage.admin_call(
        "hermes",
        AdminRequest::Enqueue {
            group: "hermes".into(),
            op_id: rand::random(),
            sender: "sender@example.org".into(),
            recipients: vec!["alice@example.edu".into()],
            message: message.as_bytes().to_vec(),
            key: Some(key),
        },
    );
    assert!(matches!(queued_reply, AdminReply::Queued { .. }), "{queued_reply:?}");
    let options = FrontOptions { queue: Some(fast_queue(30)), ..FrontOptions::default() };
    let front = Front::start_opts(root, &storage, ldif_directory(), options);
    wait_for("the runner to take the queued message", Duration::from_secs(60), || queued(&storage).is_empty());
    let ids = inbox_message_ids(&front, "alice", "alice-pw");
    assert_eq!(ids.get("once@example.org"), Some(&1), "alice's INBOX by Message-ID: {ids:?}");
}

/// `mailctl trace` (issue 24): one message to three local users on two mailhosts, a remote
/// recipient a sink takes, one a sink refuses and one a sink defers. Every hop is in the
/// trace: the front and the client address it came from, each local delivery with the
/// group and log index that committed it, the queue, the sink's host and reply, the refusal
/// and the bounce that came back to the sender, the deferred copy the postmaster deletes;
/// found by Message-ID, by one recipient, and still after a user moved. Mail the front
/// refuses itself (an unknown user and relaying at RCPT, a forged From at the end of DATA)
/// is found too.
#[test]
fn trace_tells_where_every_recipient_of_a_message_went() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let storage = Storage::start(root);
    // A third local user, on apollo beside bob.
    let erin = "\ndn: uid=erin,ou=people,dc=example,dc=edu\nobjectClass: inetOrgPerson\nobjectClass: qmailUser\n\
                uid: erin\ncn: Erin\nsn: Erin\nmail: erin@example.edu\nmailHost: apollo\n";
    let ldif = std::fs::read_to_string(fixture("users.ldif")).unwrap();
    std::fs::write(root.join("users.ldif"), format!("{}\n{erin}", ldif.trim_end())).unwrap();
    let (remote, refusing) = (free_addr(), free_addr());
    let sink = Sink::start(root, "remote", &remote, None);
    let _refusing = Sink::start(root, "refusing", &refusing, Some("550 5.1.1 no such user here"));
    let deferring = free_addr();
    let _deferring = Sink::start(root, "deferring", &deferring, Some("451 4.2.0 come back later"));
    let routes = BTreeMap::from([
        ("remote.test", remote.clone()),
        ("bounce.test", refusing.clone()),
        ("later.test", deferring.clone()),
    ]);
    let options = FrontOptions {
        tls: true,
        plaintext_loopback: true,
        queue: Some(QueueSection { groups: vec!["hermes".into(), "apollo".into()], ..queue_settings(&routes) }),
        ..FrontOptions::default()
    };
    let front = Front::start_opts(root, &storage, ldif_directory(), options);
    wait_listening(&front.submission, "frontd submission");
    let ca = root.join("cert.pem");
    let to = [
        "alice@example.edu",
        "bob@example.edu",
        "erin@example.edu",
        "friend@remote.test",
        "ghost@bounce.test",
        "slow@later.test",
    ];
    let mut args = vec!["--server", front.submission.as_str(), "--source", "127.0.0.2", "--from", "alice@example.edu"];
    for t in to {
        args.extend(["--to", t]);
    }
    args.extend(["--subject", "traced", "--message-id", "<trace-1@example.edu>", "--starttls"]);
    args.extend(["--ca", ca.to_str().unwrap(), "--user", "alice@example.edu", "--password", "alice-pw"]);
    let r = smtplib(&args);
    assert_eq!((r["ok"].as_bool(), r["refused"].as_object().map(|o| o.len())), (Some(true), Some(0)), "{r}");

    let trace = |args: &[&str]| -> Vec<serde_json::Value> {
        let mut all = vec!["trace", "--json"];
        all.extend(args);
        let (ok, out) = mailctl(root, &all);
        assert!(ok, "mailctl trace: {out}");
        let json = out.find('[').map_or("[]", |k| &out[k..]);
        serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {out}"))
    };
    let has = |records: &[serde_json::Value], event: &str, to: &str, detail: &str| {
        records.iter().any(|r| r["event"] == event && r["to"] == to && r["detail"].as_str().unwrap().contains(detail))
    };
    let by_id = || trace(&["--message-id", "trace-1@example.edu"]);
    let everything = |r: &[serde_json::Value]| {
        has(r, "sent", "friend@remote.test", "250")
            && has(r, "bounced", "ghost@bounce.test", "550 5.1.1")
            && has(r, "deferred", "slow@later.test", "451 4.2.0")
            && ["alice", "bob", "erin"].iter().all(|u| has(r, "delivered", &format!("{u}@example.edu"), "INBOX"))
            && r.iter().any(|x| x["answers"] == "<trace-1@example.edu>" && x["event"] == "delivered")
    };
    wait_for("every hop in the trace", Duration::from_secs(60), || everything(&by_id()));
    let records = by_id();
    eprintln!("{}", serde_json::to_string_pretty(&records).unwrap());
    assert_eq!(sink.count("traced"), 1);

    // The front, and the client address it took the message from.
    assert!(
        records.iter().any(|r| r["event"] == "received"
            && r["detail"].as_str().unwrap().contains("from 127.0.0.2")
            && r["detail"].as_str().unwrap().contains("with ESMTPSA")),
        "no received hop from the client"
    );
    // Each local user's copy was committed by their own mailhost, at a log index.
    for (user, group) in [("alice", "hermes"), ("bob", "apollo"), ("erin", "apollo")] {
        let rcpt = format!("{user}@example.edu");
        let delivered = records.iter().find(|r| r["event"] == "delivered" && r["to"] == rcpt.as_str()).unwrap();
        assert_eq!((delivered["group"].as_str(), delivered["from"].as_str()), (Some(group), Some("alice@example.edu")));
        assert!(delivered["index"].as_u64().unwrap() > 0);
    }
    // The queue, the sink's address, and the bounce back to the sender.
    for rcpt in ["friend@remote.test", "ghost@bounce.test"] {
        assert!(has(&records, "queued", rcpt, ""), "{rcpt} was not queued");
    }
    assert!(has(&records, "sent", "friend@remote.test", &format!("via {remote}")), "the sink's address");
    let bounce = records.iter().find(|r| r["answers"] == "<trace-1@example.edu>").unwrap();
    assert!(bounce["message_id"].as_str().unwrap().starts_with("<bounce."), "{bounce}");

    // One recipient finds the whole message; the printout names every hop.
    let by_recipient = trace(&["--to", "ghost@bounce.test"]);
    assert!(everything(&by_recipient), "{by_recipient:?}");
    let (ok, text) = mailctl(root, &["trace", "--message-id", "<trace-1@example.edu>"]);
    assert!(ok, "{text}");
    eprintln!("{text}");
    for word in
        ["Message <trace-1@example.edu>", "received", "delivered", "queued", "sent", "bounced", "<bob@example.edu>"]
    {
        assert!(text.contains(word), "{word:?} missing from:\n{text}");
    }

    // Bob moves to hermes: his copy on apollo goes, its record stays.
    let (ok, report) = mailctl(root, &["move", "bob@example.edu", "hermes", "--grace-s", "0", "--wait"]);
    assert!(ok, "mailctl move: {report}");
    let after = by_id();
    assert!(everything(&after), "{after:?}");
    assert!(after.iter().any(|r| r["event"] == "delivered" && r["to"] == "bob@example.edu" && r["group"] == "apollo"));
    let (ok, out) = mailctl(root, &["trace", "--to", "nobody-at-all@example.edu"]);
    assert!(ok && out.contains("no tracking records match"), "{out}");

    // The postmaster deletes the deferred copy: who never got it is in the trace.
    let queued = after.iter().find(|r| r["event"] == "queued" && r["to"] == "slow@later.test").unwrap();
    let (ok, out) = mailctl(root, &["queue", "delete", queued["queue_id"].as_str().unwrap()]);
    assert!(ok, "mailctl queue delete: {out}");
    wait_for("the deletion in the trace", Duration::from_secs(30), || {
        has(&by_id(), "deleted", "slow@later.test", "by the postmaster")
    });

    // What the front refused itself, before any mailhost saw it.
    let r = smtplib(&[
        "--server",
        &front.smtp,
        "--source",
        "127.0.0.3",
        "--from",
        "ann@example.org",
        "--to",
        "nobody@example.edu",
        "--to",
        "someone@remote.test",
        "--to",
        "alice@example.edu",
        "--subject",
        "partly refused",
    ]);
    assert_eq!(r["refused"].as_object().map(|o| o.len()), Some(2), "{r}");
    let forged = smtplib(&[
        "--server",
        front.submission.as_str(),
        "--starttls",
        "--ca",
        ca.to_str().unwrap(),
        "--user",
        "alice@example.edu",
        "--password",
        "alice-pw",
        "--from",
        "alice@example.edu",
        "--header-from",
        "The Bank <bank@example.com>",
        "--message-id",
        "<forged-1@example.edu>",
        "--to",
        "bob@example.edu",
        "--subject",
        "forged",
    ]);
    assert_ne!(forged["ok"], true, "{forged}");
    let refused = |args: &[&str], to: &str, reply: &str| {
        let records = trace(args);
        records.iter().any(|r| {
            let detail = r["detail"].as_str().unwrap_or_default();
            r["event"] == "refused" && r["to"] == to && detail.contains(reply) && detail.starts_with("by ")
        })
    };
    wait_for("the front's refusals in the trace", Duration::from_secs(30), || {
        refused(&["--to", "nobody@example.edu"], "nobody@example.edu", "5.1.1")
    });
    let unknown = trace(&["--to", "nobody@example.edu"]);
    let detail = unknown[0]["detail"].as_str().unwrap();
    assert!(detail.contains("to client 127.0.0.3") && unknown[0]["from"] == "ann@example.org", "{unknown:?}");
    assert!(refused(&["--to", "someone@remote.test"], "someone@remote.test", "relay access denied"));
    assert!(refused(&["--message-id", "<forged-1@example.edu>"], "bob@example.edu", "5"));
    let (ok, text) = mailctl(root, &["trace", "--from", "ann@example.org"]);
    eprintln!("{text}");
    assert!(ok && text.contains("refused") && text.contains("<nobody@example.edu>"), "{text}");
}
