//! The scanning stage with a real ClamAV clamd and a real rspamd between frontd's SMTP
//! listeners and a 3-replica storaged cluster, the users' spam policies read from a real
//! slapd: viruses are refused on every listener and never stored; spam meets each
//! recipient's own policy (tag, Junk, quarantine, reject); our header fields cannot be
//! forged from outside; a scanner that does not answer defers mail, or marks it unscanned
//! where the listener says so, and scanning resumes when it returns.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use clusterkit::scanners::{EICAR, GTUBE, TEST_MALWARE};
use frontd::config::{GroupSection, MemberSection, QueueSection};
use support::*;
use tests::scanners::{Clamd, Rspamd};

fn scan_users() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/scan/users.ldif")
}

fn ldap_directory(slapd: &Slapd) -> frontd::config::DirectorySection {
    let ldap = frontd::config::LdapSection {
        bind_dn: Some(LDAP_BIND_DN.into()),
        bind_password_file: Some("ldap.pw".into()),
        ..frontd::config::LdapSection::new(slapd.url.clone(), "dc=example,dc=edu")
    };
    frontd::config::DirectorySection { ldif: None, ldap: Some(ldap) }
}

/// A front scanning with `clamd` (and `rspamd`, if given); `unavailable` for both listeners.
fn scanning_front(
    root: &Path,
    storage: &Storage,
    slapd: &Slapd,
    clamd: &Clamd,
    rspamd: Option<&Rspamd>,
    unavailable: &'static str,
    queued: bool,
) -> Front {
    scanning_front_with(root, storage, slapd, clamd, rspamd, (unavailable, queued), false)
}

/// As [`scanning_front`]; `spam_snags`: the phish rule on submitted spam is on (the other
/// tests look at the scanning stage alone, whose submission score is only logged).
fn scanning_front_with(
    root: &Path,
    storage: &Storage,
    slapd: &Slapd,
    clamd: &Clamd,
    rspamd: Option<&Rspamd>,
    (unavailable, queued): (&'static str, bool),
    spam_snags: bool,
) -> Front {
    std::fs::create_dir_all(root).unwrap();
    std::fs::write(root.join("ldap.pw"), LDAP_BIND_PASSWORD).unwrap();
    let (socket, normal) = (clamd.socket(), rspamd.map(|r| r.files.normal.clone()));
    let tune: Tune = Box::new(move |cfg| {
        cfg.scan.clamd = Some(socket.clone());
        cfg.scan.rspamd = normal.clone();
        // Generous: the scanners share two cores with everything else in a test run.
        cfg.scan.timeout_ms = 30_000;
        cfg.scan.report_every_s = 1;
        cfg.scan.mx.unavailable = unavailable.into();
        cfg.scan.submission.unavailable = unavailable.into();
        cfg.smtp.greet_delay_ms = 0;
        cfg.smtp.message_max_bytes = 40 << 20;
        cfg.smtp.body_memory_per_address_max_bytes = 128 << 20;
        cfg.smtp.body_memory_max_bytes = 256 << 20;
        cfg.phish.outbound_spam = spam_snags;
    });
    let mut options = FrontOptions { tls: true, plaintext_loopback: true, tune: Some(tune), ..FrontOptions::default() };
    if queued {
        // A replicated queue on the running groups, and zed's mailhost zeus, which never runs.
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
        let scan_tune = options.tune.take().expect("set above");
        options.tune = Some(Box::new(move |c| {
            scan_tune(c);
            c.groups.insert(0, zeus.clone());
        }));
        options.queue = Some(QueueSection { groups: vec!["hermes".into(), "apollo".into()], ..fast_queue(30) });
        options.route_timeout_ms = Some(3000);
    }
    let front = Front::start_opts(root, storage, ldap_directory(slapd), options);
    wait_listening(&front.smtp, "frontd SMTP");
    front
}

/// One SMTP transaction, raw: the reply to each RCPT and the final reply (first line with
/// its code), `None` for the final one when no RCPT was accepted.
fn send(server: &str, auth: Option<(&str, &str)>, to: &[&str], message: &str) -> (Vec<String>, Option<String>) {
    let stream = TcpStream::connect(server).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut rd = BufReader::new(stream.try_clone().unwrap());
    let mut wr = stream;
    let reply = |rd: &mut BufReader<TcpStream>| -> String {
        let mut line = String::new();
        loop {
            line.clear();
            rd.read_line(&mut line).unwrap();
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                return line.trim_end().to_string();
            }
        }
    };
    let cmd = |wr: &mut TcpStream, rd: &mut BufReader<TcpStream>, line: &str| {
        wr.write_all(format!("{line}\r\n").as_bytes()).unwrap();
        reply(rd)
    };
    assert!(reply(&mut rd).starts_with("220"));
    assert!(cmd(&mut wr, &mut rd, "EHLO client.remote.example").starts_with("250"));
    if let Some((user, password)) = auth {
        use base64::Engine;
        let token = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
        let r = cmd(&mut wr, &mut rd, &format!("AUTH PLAIN {token}"));
        assert!(r.starts_with("235"), "{r}");
    }
    let from = auth.map_or("sender@remote.example".to_string(), |(u, _)| u.to_string());
    assert!(cmd(&mut wr, &mut rd, &format!("MAIL FROM:<{from}>")).starts_with("250"));
    let rcpts: Vec<String> = to.iter().map(|t| cmd(&mut wr, &mut rd, &format!("RCPT TO:<{t}>"))).collect();
    if !rcpts.iter().any(|r| r.starts_with("250")) {
        return (rcpts, None);
    }
    assert!(cmd(&mut wr, &mut rd, "DATA").starts_with("354"));
    let body: String = message
        .split_inclusive('\n')
        .map(|l| if l.starts_with('.') { format!(".{l}") } else { l.to_string() })
        .collect();
    wr.write_all(body.as_bytes()).unwrap();
    let end = if body.ends_with("\r\n") { ".\r\n" } else { "\r\n.\r\n" };
    let last = cmd(&mut wr, &mut rd, end.trim_end());
    let _ = wr.write_all(b"QUIT\r\n");
    (rcpts, Some(last))
}

/// One message over submission (STARTTLS, AUTH) with Python's smtplib: `250 ...` when
/// accepted, else the code and text of the refusal.
fn submit(front: &Front, root: &Path, user: &str, to: &str, text: &str) -> String {
    std::fs::create_dir_all(root.join("outbox")).unwrap();
    let file = root.join("outbox").join(format!("{}.eml", rand::random::<u32>()));
    // A user submits as themselves (a From of someone else is refused: `smtp::submission`).
    std::fs::write(&file, text.replacen("From: Sender <sender@remote.example>", &format!("From: <{user}>"), 1))
        .unwrap();
    let password = format!("{}-pw", user.split('@').next().unwrap());
    let ca = root.join("cert.pem");
    let args = ["--server", &front.submission, "--from", user, "--to", to, "--subject", "-", "--starttls"];
    let more = ["--ca", ca.to_str().unwrap(), "--user", user, "--password", &password];
    let r = smtplib(&[&args[..], &more[..], &["--message-file", file.to_str().unwrap()]].concat());
    if r["ok"] == true && r["refused"].as_object().is_some_and(|o| o.is_empty()) {
        return "250 accepted".into();
    }
    format!("{} {}", r["code"], r["error"].as_str().unwrap_or(""))
}

fn message(subject: &str, body: &str) -> String {
    format!(
        "From: Sender <sender@remote.example>\r\nTo: someone@example.edu\r\nSubject: {subject}\r\n\
         Date: Sun, 6 Dec 2026 09:00:00 +0000\r\nMessage-ID: <{}@remote.example>\r\n\r\n{body}\r\n",
        subject.replace(' ', ".")
    )
}

fn with_attachment(subject: &str, content_type: &str, base64_body: &str) -> String {
    let mut wrapped = String::new();
    for chunk in base64_body.as_bytes().chunks(76) {
        wrapped.push_str(std::str::from_utf8(chunk).unwrap());
        wrapped.push_str("\r\n");
    }
    message(
        subject,
        &format!(
            "This is a MIME message.\r\n--b1\r\nContent-Type: text/plain\r\n\r\nSee the attachment.\r\n\
             --b1\r\nContent-Type: {content_type}; name=\"file\"\r\nContent-Transfer-Encoding: base64\r\n\
             Content-Disposition: attachment; filename=\"file\"\r\n\r\n{wrapped}--b1--"
        ),
    )
    .replacen("\r\n\r\n", "\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n", 1)
}

/// EICAR in a zip archive, base64, made by Python's zipfile (another implementation).
fn zipped_eicar_base64() -> String {
    let script = "import io,zipfile,base64,sys\nb=io.BytesIO()\nz=zipfile.ZipFile(b,'w',zipfile.ZIP_DEFLATED)\n\
                  z.writestr('readme.com',sys.argv[1])\nz.close()\nprint(base64.b64encode(b.getvalue()).decode())";
    let out = Command::new("python3").args(["-c", script, EICAR]).output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Every message of `user`'s `mailbox`, read through the front (`None`: no such mailbox).
fn read(front: &Front, user: &str, mailbox: &str) -> Option<Vec<String>> {
    let v = client(&[
        "read",
        "--server",
        &front.imap,
        "--user",
        user,
        "--password",
        &format!("{}-pw", user.split('@').next().unwrap()),
        "--mailbox",
        mailbox,
    ]);
    assert_eq!(v["ok"], true, "{v}");
    (v["exists"] != -1)
        .then(|| v["messages"].as_array().unwrap().iter().map(|m| m.as_str().unwrap().to_string()).collect())
}

fn count_with(messages: &Option<Vec<String>>, needle: &str) -> usize {
    messages.as_ref().map_or(0, |m| m.iter().filter(|t| t.contains(needle)).count())
}

/// Files under the storage nodes' directories that hold `needle` (logs, Maildirs, indexes).
fn stored_anywhere(root: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if ["clamd", "rspamd", "slapd", "outbox"].contains(&name.as_str()) || name.ends_with(".log") {
                continue;
            }
            if path.is_dir() {
                dirs.push(path);
            } else if std::fs::read(&path).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle)) {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

#[test]
fn viruses_are_refused_everywhere_and_spam_meets_each_recipients_policy() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let storage = Storage::start(root);
    let slapd = Slapd::start_with(root, &scan_users());
    let clamd = Clamd::start(root);
    let rspamd = Rspamd::start(root);
    let front = scanning_front(root, &storage, &slapd, &clamd, Some(&rspamd), "tempfail", false);

    // Viruses: a plain body, a base64 attachment, inside a zip; ours too; MX and submission.
    let zip = zipped_eicar_base64();
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(EICAR);
    let viruses = [
        ("plain eicar", message("plain eicar", EICAR), "Eicar-Test-Signature"),
        ("b64 eicar", with_attachment("b64 eicar", "application/octet-stream", &b64), "Eicar-Test-Signature"),
        ("zip eicar", with_attachment("zip eicar", "application/zip", &zip), "Eicar-Test-Signature"),
        ("our signature", message("our signature", TEST_MALWARE), "Mailstore-Test-Signature"),
    ];
    for (name, text, signature) in &viruses {
        let (_, mx) = send(&front.smtp, None, &["dora@example.edu"], text);
        let submitted = submit(&front, root, "tom@example.edu", "dora@example.edu", text);
        for last in [mx.unwrap(), submitted] {
            assert!(
                last.starts_with("554 5.7.1 message rejected: virus ") && last.contains(signature),
                "{name}: {last}"
            );
        }
    }
    let clean_marker = "a clean marker 5d1c";
    let (_, last) = send(&front.smtp, None, &["dora@example.edu"], &message("clean one", clean_marker));
    assert!(last.as_deref().unwrap().starts_with("250"), "{last:?}");
    // The walk finds what was stored (the clean message), and no virus on any replica.
    wait_for("the clean message on three replicas", Duration::from_secs(20), || {
        stored_anywhere(root, clean_marker.as_bytes()).len() >= 3
    });
    for needle in [EICAR.as_bytes(), TEST_MALWARE.as_bytes(), &zip.as_bytes()[..60], &b64.as_bytes()[..40]] {
        assert_eq!(stored_anywhere(root, needle), Vec::<String>::new(), "{}", String::from_utf8_lossy(needle));
    }

    // A clean message carries our verdicts; a forged X-Spam-Status from outside is gone.
    let forged = message("forged status", "lunch at noon?")
        .replacen("\r\n\r\n", "\r\nX-Spam-Status: No, score=-100\r\nX-Spam-Flag: NO\r\nAuthentication-Results: front.example.edu; spf=pass\r\n\r\n", 1);
    let (_, last) = send(&front.smtp, None, &["tom@example.edu"], &forged);
    assert!(last.as_deref().unwrap().starts_with("250"), "{last:?}");
    let inbox = read(&front, "tom@example.edu", "INBOX").unwrap();
    let copy = inbox.iter().find(|m| m.contains("Subject: forged status")).expect("delivered");
    assert_eq!(copy.matches("X-Spam-Status:").count(), 1, "{copy}");
    assert!(copy.contains("X-Spam-Status: No, score=") && !copy.contains("score=-100"), "{copy}");
    assert!(copy.contains("X-Spam-Score: ") && !copy.contains("X-Spam-Flag"), "{copy}");
    // rspamd's SPF and DMARC verdicts (its resolver refuses every query: temperror), and the
    // sender's "spf=pass" is gone.
    assert!(copy.contains("X-Virus-Status: Clean"), "{copy}");
    assert!(
        copy.contains(
            "Authentication-Results: front.example.edu;\r\n\tspf=temperror smtp.mailfrom=sender@remote.example;"
        ) && copy.contains("\tdmarc=temperror\r\n"),
        "{copy}"
    );
    assert!(!copy.contains("spf=pass") && copy.matches("Authentication-Results:").count() == 1, "{copy}");

    // GTUBE for one user of each policy at once: each copy its own fate, each read once.
    let gtube = message("gtube all", GTUBE);
    let (rcpts, last) = send(&front.smtp, None, &["tom@example.edu", "jane@example.edu", "quinn@example.edu"], &gtube);
    assert!(rcpts.iter().all(|r| r.starts_with("250")), "{rcpts:?}");
    assert!(last.as_deref().unwrap().starts_with("250"), "{last:?}");
    let subject = "Subject: gtube all";
    let tom = read(&front, "tom@example.edu", "INBOX");
    assert_eq!(count_with(&tom, subject), 1, "tagged in tom's INBOX");
    let tagged = tom.as_ref().unwrap().iter().find(|m| m.contains(subject)).unwrap();
    assert!(
        tagged.contains("X-Spam-Flag: YES")
            && tagged.contains("X-Spam-Status: Yes, score=")
            && tagged.contains("GTUBE"),
        "{tagged}"
    );
    assert_eq!(count_with(&read(&front, "tom@example.edu", "Junk"), subject), 0);
    assert_eq!(count_with(&read(&front, "jane@example.edu", "Junk"), subject), 1, "in jane's Junk");
    assert_eq!(count_with(&read(&front, "jane@example.edu", "INBOX"), subject), 0);
    assert_eq!(count_with(&read(&front, "quinn@example.edu", "Quarantine"), subject), 1, "held for quinn");
    assert_eq!(count_with(&read(&front, "quinn@example.edu", "INBOX"), subject), 0);
    let v = client(&[
        "read",
        "--server",
        &front.imap,
        "--user",
        "jane@example.edu",
        "--password",
        "jane-pw",
        "--mailbox",
        "Junk",
    ]);
    assert!(v["subscribed"].as_array().unwrap().iter().any(|m| m == "Junk"), "Junk made subscribed: {v}");
    // Rita refuses spam; dora has no policy of her own and gets the site's (Junk).
    let (_, last) = send(&front.smtp, None, &["rita@example.edu"], &message("gtube rita", GTUBE));
    assert!(last.as_deref().unwrap().starts_with("550 5.7.1"), "{last:?}");
    assert_eq!(count_with(&read(&front, "rita@example.edu", "INBOX"), "gtube rita"), 0);
    let (_, last) = send(&front.smtp, None, &["dora@example.edu"], &message("gtube dora", GTUBE));
    assert!(last.as_deref().unwrap().starts_with("250"), "{last:?}");
    assert_eq!(count_with(&read(&front, "dora@example.edu", "Junk"), "gtube dora"), 1);
    // Submission scores spam but does not act on it: a user's own mail is theirs.
    let last = submit(&front, root, "tom@example.edu", "dora@example.edu", &message("gtube sent", GTUBE));
    assert!(last.starts_with("250"), "{last}");
    let dora = read(&front, "dora@example.edu", "INBOX");
    assert_eq!(count_with(&dora, "gtube sent"), 1);
    let sent = dora.unwrap().into_iter().find(|m| m.contains("gtube sent")).unwrap();
    assert!(!sent.contains("X-Spam-Status") && sent.contains("X-Virus-Status: Clean"), "{sent}");
    assert!(front.log_text().contains("spam score"), "submission's score recorded");

    // Every fate was counted in the cluster's tally: 8 viruses (4 on each listener), 3 clean
    // copies, the spam's tagged, junk (2), quarantined and rejected copies.
    let mut fates = String::new();
    wait_for("the fates reported", Duration::from_secs(30), || {
        let (ok, out) = mailctl(root, &["report", "fates", "--days", "7"]);
        fates = out;
        ok && fates.contains("(16 messages)")
    });
    for (fate, n) in
        [("rejected-virus", 8), ("clean", 3), ("junk", 2), ("tagged", 1), ("quarantined", 1), ("rejected-spam", 1)]
    {
        let line =
            fates.lines().find(|l| l.starts_with(&format!("{fate} "))).unwrap_or_else(|| panic!("{fate}: {fates}"));
        assert_eq!(line.split_whitespace().nth(1), Some(n.to_string().as_str()), "{fates}");
    }
    let (ok, viruses) = mailctl(root, &["report", "viruses", "--days", "30"]);
    assert!(ok && viruses.contains("(8 messages)"), "{viruses}");
    let line = |name: &str| {
        viruses.lines().find(|l| l.starts_with(name)).map(|l| l.split_whitespace().nth(1).unwrap().to_string())
    };
    assert_eq!(line("Eicar-Test-Signature").as_deref(), Some("6"), "{viruses}");
    assert_eq!(line("Mailstore-Test-Signature").as_deref(), Some("2"), "{viruses}");
}

#[test]
fn a_silent_scanner_defers_mail_or_marks_it_unscanned_and_scanning_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let storage = Storage::start(root);
    let slapd = Slapd::start_with(root, &scan_users());
    let mut clamd = Clamd::start(root);
    let deferring = scanning_front(root, &storage, &slapd, &clamd, None, "tempfail", false);
    let accepting = scanning_front(&root.join("accepting"), &storage, &slapd, &clamd, None, "accept", false);

    let (_, last) = send(&deferring.smtp, None, &["dora@example.edu"], &message("before", "hello"));
    assert!(last.as_deref().unwrap().starts_with("250"), "{last:?}");
    clamd.kill();
    let (_, last) = send(&deferring.smtp, None, &["dora@example.edu"], &message("while down", "hello"));
    assert!(last.as_deref().unwrap().starts_with("451 4.7.1"), "{last:?}");
    let last = submit(&deferring, root, "tom@example.edu", "dora@example.edu", &message("sent while down", "hello"));
    assert!(last.starts_with("451 4.7.1"), "{last}");
    let (_, last) = send(&accepting.smtp, None, &["dora@example.edu"], &message("accepted unscanned", "hello"));
    assert!(last.as_deref().unwrap().starts_with("250"), "{last:?}");
    // Accepted unscanned is never silent: the copy says so.
    let inbox = read(&deferring, "dora@example.edu", "INBOX").unwrap();
    assert_eq!(inbox.iter().filter(|m| m.contains("while down")).count(), 0);
    let unscanned = inbox.iter().find(|m| m.contains("accepted unscanned")).expect("delivered");
    assert!(unscanned.contains("X-Virus-Status: Unscanned (cannot connect to clamd"), "{unscanned}");
    clamd.restart();
    // The same front scans again, without a restart.
    let (_, last) = send(&deferring.smtp, None, &["dora@example.edu"], &message("after", EICAR));
    assert!(last.as_deref().unwrap().starts_with("554 5.7.1"), "{last:?}");
    let (_, last) = send(&deferring.smtp, None, &["dora@example.edu"], &message("after clean", "hello"));
    assert!(last.as_deref().unwrap().starts_with("250"), "{last:?}");
    let inbox = read(&deferring, "dora@example.edu", "INBOX").unwrap();
    let after = inbox.iter().find(|m| m.contains("after clean")).unwrap();
    assert!(after.contains("X-Virus-Status: Clean"), "{after}");
}

/// A nested zip bomb (Python's zipfile): 16 archives a level, 6 levels, 10 MiB of zeros at
/// the bottom: ~160 TiB unpacked in a few KiB. Base64.
fn zip_bomb_base64() -> String {
    let script = "import io,zipfile,base64\n\
                  def z(entries):\n    b=io.BytesIO()\n    f=zipfile.ZipFile(b,'w',zipfile.ZIP_DEFLATED)\n\
                  \x20   [f.writestr(n,d) for n,d in entries]\n    f.close()\n    return b.getvalue()\n\
                  inner=z([('zeros.bin',bytes(10<<20))])\n\
                  for level in range(6):\n    inner=z([('l%d-%d.zip'%(level,k),inner) for k in range(16)])\n\
                  print(base64.b64encode(inner).decode())";
    let out = Command::new("python3").args(["-c", script]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// 30 MiB in 10,000 MIME parts.
fn ten_thousand_parts() -> String {
    let line = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/abcdefghijkl\r\n";
    let part_body = line.repeat(40);
    let mut body = String::from("MIME prologue.\r\n");
    for k in 0..10_000 {
        body.push_str(&format!("--b1\r\nContent-Type: text/plain; name=\"p{k}\"\r\n\r\n{part_body}"));
    }
    body.push_str("--b1--");
    message("ten thousand parts", &body).replacen(
        "\r\n\r\n",
        "\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n",
        1,
    )
}

#[test]
fn hostile_messages_get_a_clear_reply_and_the_stage_stays_up() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let storage = Storage::start(root);
    let slapd = Slapd::start_with(root, &scan_users());
    let clamd = Clamd::start(root);
    let rspamd = Rspamd::start(root);
    let front = scanning_front(root, &storage, &slapd, &clamd, Some(&rspamd), "tempfail", false);

    let broken = message(
        "broken mime",
        "--b1\r\nContent-Type: multipart/alternative\r\n\r\n--nested\r\nContent-Transfer-Encoding: base64\r\n\r\n\
         !!!not base64***\r\n--b1\r\nContent-Type: text/html; charset=\"\r\n\r\n<p unterminated",
    )
    .replacen("\r\n\r\n", "\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n", 1);
    let long_header =
        message("long header", "body").replacen("\r\n\r\n", &format!("\r\nX-Long: {}\r\n\r\n", "a".repeat(2 << 20)), 1);
    let bomb = with_attachment("zip bomb", "application/zip", &zip_bomb_base64());
    let parts = ten_thousand_parts();
    assert!(parts.len() > 30_000_000 && bomb.len() < 1 << 20, "{} {}", parts.len(), bomb.len());
    for (name, text) in [("broken", &broken), ("long header", &long_header), ("bomb", &bomb), ("parts", &parts)] {
        let (rcpts, last) = send(&front.smtp, None, &["dora@example.edu"], text);
        let last = last.unwrap_or_else(|| panic!("{name}: {rcpts:?}"));
        let code: u16 = last[..3].parse().unwrap_or_else(|_| panic!("{name}: {last}"));
        assert!(matches!(code, 250 | 554) && last.len() > 10, "{name}: {last}");
        eprintln!("{name}: {last}");
        assert!(clamd.answers(), "clamd survived {name}");
        if name == "parts" {
            // Past clamd's file limit: refused as unsafe, said plainly (not "virus").
            assert!(last.starts_with("554 5.7.1 message rejected: too complex to scan (Heuristics.Limits"), "{last}");
        }
    }
    // A big message is not scored (spam_max_bytes, 8 MiB), and its copy says so.
    let big = message("big clean", &"a clean line of a big message\r\n".repeat(300_000));
    let (_, last) = send(&front.smtp, None, &["tom@example.edu"], &big);
    assert!(last.as_deref().unwrap().starts_with("250"), "{last:?}");
    let inbox = read(&front, "tom@example.edu", "INBOX").unwrap();
    let copy = inbox.iter().find(|m| m.contains("Subject: big clean")).unwrap();
    assert!(copy.contains("X-Spam-Status: No (not scored: over 8388608 bytes)"), "{}", &copy[..2000]);
    // Still serving, and within the front's bound (tests/limits.rs holds it to 256 MiB).
    let (_, last) = send(&front.smtp, None, &["dora@example.edu"], &message("after the storm", "fine"));
    assert!(last.as_deref().unwrap().starts_with("250"), "{last:?}");
    let peak = peak_rss_bytes(front.pid());
    assert!(peak < 256 << 20, "frontd peaked at {} MiB", peak >> 20);
    eprintln!("frontd peak RSS {} MiB", peak >> 20);
}

/// Files of `user`'s quarantine in every replica's Maildir under `root`.
fn held_files(root: &Path, user: &str) -> usize {
    let mut count = 0;
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let text = path.display().to_string();
            let folder = path.parent().and_then(|p| p.file_name()).and_then(|n| n.to_str());
            if text.contains(&format!("/{user}/Maildir/.Quarantine/")) && matches!(folder, Some("cur" | "new")) {
                count += 1;
            }
        }
    }
    count
}

#[test]
fn quarantined_mail_expires_on_every_replica_after_its_retention() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let storage = Storage::start_tuned(root, |c| {
        c.quarantine.retention_s = 8;
        c.quarantine.expire_every_s = 1;
        c.quarantine.digest_every_s = 2;
    });
    let slapd = Slapd::start_with(root, &scan_users());
    let clamd = Clamd::start(root);
    let rspamd = Rspamd::start(root);
    let front = scanning_front(root, &storage, &slapd, &clamd, Some(&rspamd), "tempfail", false);

    let (_, last) = send(&front.smtp, None, &["quinn@example.edu"], &message("ham stays", "hello"));
    assert!(last.as_deref().unwrap().starts_with("250"), "{last:?}");
    let (_, last) = send(&front.smtp, None, &["quinn@example.edu"], &message("held then gone", GTUBE));
    assert!(last.as_deref().unwrap().starts_with("250"), "{last:?}");
    wait_for("the held copy on three replicas", Duration::from_secs(20), || held_files(root, "quinn@example.edu") == 3);
    assert_eq!(count_with(&read(&front, "quinn@example.edu", "Quarantine"), "held then gone"), 1);
    // The digest lists it, once, in quinn's INBOX.
    let digest = "Subject: Quarantine: 1 new message held for you";
    wait_for("the digest", Duration::from_secs(20), || {
        count_with(&read(&front, "quinn@example.edu", "INBOX"), digest) == 1
    });
    let inbox = read(&front, "quinn@example.edu", "INBOX").unwrap();
    let text = inbox.iter().find(|m| m.contains(digest)).unwrap();
    assert!(text.contains("  15.00  Sender <sender@remote.example>\r\n         held then gone\r\n"), "{text}");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        count_with(&read(&front, "quinn@example.edu", "INBOX"), "Subject: Quarantine:"),
        1,
        "nothing new, no digest"
    );
    // The leaders' expiry, by the time written in the log, removes it everywhere.
    wait_for("expiry on every replica", Duration::from_secs(60), || held_files(root, "quinn@example.edu") == 0);
    assert_eq!(read(&front, "quinn@example.edu", "Quarantine").map(|m| m.len()), Some(0));
    assert_eq!(count_with(&read(&front, "quinn@example.edu", "INBOX"), "ham stays"), 1, "INBOX is not expired");
}

/// The ids `mailctl quarantine list USER` prints.
fn held_ids(root: &Path, user: &str) -> Vec<u32> {
    let (ok, out) = mailctl(root, &["quarantine", "list", user]);
    assert!(ok, "{out}");
    out.lines().skip(2).filter_map(|l| l.split_whitespace().next()?.parse().ok()).collect()
}

#[test]
fn the_postmaster_lists_shows_releases_once_and_deletes_held_mail_which_survives_restarts_and_moves() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let mut storage = Storage::start(root);
    let slapd = Slapd::start_with(root, &scan_users());
    let clamd = Clamd::start(root);
    let rspamd = Rspamd::start(root);
    let front = scanning_front(root, &storage, &slapd, &clamd, Some(&rspamd), "tempfail", false);
    for k in 0..3 {
        let (_, last) = send(&front.smtp, None, &["quinn@example.edu"], &message(&format!("held {k}"), GTUBE));
        assert!(last.as_deref().unwrap().starts_with("250"), "{last:?}");
    }
    let (ok, list) = mailctl(root, &["quarantine", "list", "quinn"]);
    assert!(ok && list.starts_with("quinn@example.edu: 3 held on hermes"), "{list}");
    assert!(list.contains("15.00") && list.contains("held 2") && list.contains("sender@remote.example"), "{list}");
    let ids = held_ids(root, "quinn@example.edu");
    assert_eq!(ids.len(), 3, "{list}");
    let (ok, shown) = mailctl(root, &["quarantine", "show", "quinn@example.edu", &ids[0].to_string()]);
    assert!(ok && shown.contains("X-Spam-Flag: YES") && shown.contains(GTUBE), "{shown}");

    // A release while the mailhost's leader is killed: once, however often it is retried.
    let leader = storage.leader_for("alice@example.edu");
    let id = ids[0].to_string();
    let releasing = {
        let (root, id) = (root.to_path_buf(), id.clone());
        std::thread::spawn(move || mailctl(&root, &["quarantine", "release", "quinn@example.edu", &id]))
    };
    std::thread::sleep(Duration::from_millis(30));
    storage.kill(leader);
    let (first_ok, first) = releasing.join().unwrap();
    let (again_ok, again) = mailctl(root, &["quarantine", "release", "quinn@example.edu", &id]);
    assert!(first_ok || again_ok, "{first}\n{again}");
    storage.start_node(leader);
    let inbox = read(&front, "quinn@example.edu", "INBOX");
    let released: usize = (0..3).map(|k| count_with(&inbox, &format!("Subject: held {k}\r\n"))).sum();
    assert_eq!(released, 1, "released exactly once: {first} / {again}");
    assert_eq!(held_ids(root, "quinn@example.edu").len(), 2);
    // Delete one; the other survives a restart of every node and a move to apollo.
    let (ok, out) = mailctl(root, &["quarantine", "delete", "quinn@example.edu", &ids[1].to_string()]);
    assert!(ok, "{out}");
    let (ok, out) = mailctl(root, &["quarantine", "delete", "quinn@example.edu", &ids[1].to_string()]);
    assert!(!ok && out.contains("no held message"), "{out}");
    for i in 0..3 {
        storage.kill(i);
    }
    for i in 0..3 {
        storage.start_node(i);
    }
    wait_for("the held message after a restart", Duration::from_secs(60), || {
        let (ok, out) = mailctl(root, &["quarantine", "list", "quinn@example.edu"]);
        ok && out.contains("1 held on hermes") && out.contains(&format!("{} ", ids[2]))
    });
    let admin_pw = root.join("admin.pw");
    std::fs::write(&admin_pw, "admin-pw").unwrap();
    let args = ["move", "quinn", "apollo", "--grace-s", "1", "--ldap-admin-dn", "cn=admin,dc=example,dc=edu"];
    let (ok, out) = mailctl(root, &[&args[..], &["--ldap-admin-password-file", admin_pw.to_str().unwrap()]].concat());
    assert!(ok, "move: {out}");
    wait_for("the held message on apollo", Duration::from_secs(60), || {
        let (ok, out) = mailctl(root, &["quarantine", "list", "quinn@example.edu"]);
        // Listed newest first: the release took "held 2", the delete "held 1".
        ok && out.contains("1 held on apollo") && out.contains("held 0")
    });
}

/// `cmds` in one IMAP session as `user` through `front`; each tagged answer must be OK.
fn imap(front: &Front, user: &str, cmds: &[&str]) {
    let mut c = tools::imap_client::Client::connect(&front.imap).unwrap();
    let login = c.command(&format!("LOGIN {user} {}-pw", user.split('@').next().unwrap())).unwrap();
    assert!(login.ok(), "{}", login.text);
    for cmd in cmds {
        let a = c.command(cmd).unwrap();
        assert!(a.ok(), "{cmd}: {} {}", a.status, a.text);
    }
    let _ = c.command("LOGOUT");
}

#[test]
fn moves_into_and_out_of_junk_train_rspamd_once_even_across_a_leader_kill() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let rspamd = Rspamd::start_learning(root);
    let (controller, password_file) = (rspamd.files.controller.clone(), root.join("rspamd.pw"));
    std::fs::write(&password_file, &rspamd.files.password).unwrap();
    let mut storage = Storage::start_tuned(root, move |c| {
        c.training.rspamd_controller = Some(controller.clone());
        c.training.password_file = Some(password_file.clone());
    });
    let slapd = Slapd::start_with(root, &scan_users());
    let clamd = Clamd::start(root);
    let front = scanning_front(root, &storage, &slapd, &clamd, Some(&rspamd), "tempfail", false);
    // Enough words for rspamd's Bayes (it needs 11 tokens).
    let words = "Exclusive offer for valued customers: order discounted watches and medication today, \
                 limited stock, free worldwide shipping, satisfaction guaranteed or your money back.";
    for k in 0..2 {
        let (_, last) = send(&front.smtp, None, &["tom@example.edu"], &message(&format!("offer {k}"), words));
        assert!(last.as_deref().unwrap().starts_with("250"), "{last:?}");
    }
    assert_eq!(rspamd.learned(), 0);
    let learned =
        |n: u64| wait_for(&format!("rspamd to have learned {n}"), Duration::from_secs(30), || rspamd.learned() == n);

    // Into Junk: spam. Back out: ham. Into Junk again: nothing new (once per direction).
    imap(&front, "tom@example.edu", &["SELECT INBOX", "UID MOVE 1 Junk"]);
    learned(1);
    imap(&front, "tom@example.edu", &["SELECT Junk", "MOVE 1 INBOX"]);
    learned(2);
    imap(
        &front,
        "tom@example.edu",
        &["SELECT INBOX", "UID SEARCH ALL", "MOVE 1:* Junk", "SELECT Junk", "MOVE 1:* INBOX"],
    );
    // The second message's spam and ham are news (2 more); the first's are not.
    learned(4);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(rspamd.learned(), 4, "no message is learned twice in one direction");

    // The intent is committed with the MOVE: the leader killed right after it, the next
    // one carries it out, once.
    let (_, last) = send(&front.smtp, None, &["tom@example.edu"], &message("offer 2", words));
    assert!(last.as_deref().unwrap().starts_with("250"), "{last:?}");
    let leader = storage.leader_for("alice@example.edu");
    imap(&front, "tom@example.edu", &["SELECT INBOX", "UID SEARCH SUBJECT \"offer 2\"", "MOVE 3 Junk"]);
    storage.kill(leader);
    learned(5);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(rspamd.learned(), 5);
    storage.start_node(leader);
}

#[test]
fn with_scanning_a_mailhost_that_is_down_queues_the_stamped_inbox_copy() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let storage = Storage::start(root);
    let slapd = Slapd::start_with(root, &scan_users());
    let clamd = Clamd::start(root);
    let front = scanning_front(root, &storage, &slapd, &clamd, None, "tempfail", true);
    let (_, last) = send(&front.smtp, None, &["zed@example.edu"], &message("for zeus", "hello"));
    let last = last.unwrap();
    assert!(last.starts_with("250 2.0.0 queued as "), "{last}");
    let id = last.rsplit(' ').next().unwrap().to_string();
    let (ok, shown) = mailctl(root, &["queue", "show", &id]);
    assert!(ok && shown.contains("zed@example.edu") && shown.contains("X-Virus-Status: Clean"), "{shown}");
    // A virus is still refused, never queued.
    let (_, last) = send(&front.smtp, None, &["zed@example.edu"], &message("virus for zeus", EICAR));
    assert!(last.as_deref().unwrap().starts_with("554 5.7.1"), "{last:?}");
    let (ok, list) = mailctl(root, &["queue", "list"]);
    assert!(ok && list.matches("zed@example.edu").count() == 1, "{list}");
}

/// Spam a user submits (at or above `[phish] outbound_spam_score`) is held, not sent, and
/// snags the account: its next login is refused and a ticket names the rule.
#[test]
fn spam_a_user_submits_is_held_and_snags_the_account() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let storage = Storage::start(root);
    let slapd = Slapd::start_with(root, &scan_users());
    let clamd = Clamd::start(root);
    let rspamd = Rspamd::start(root);
    let front = scanning_front_with(root, &storage, &slapd, &clamd, Some(&rspamd), ("tempfail", false), true);
    let last = submit(&front, root, "tom@example.edu", "dora@example.edu", &message("gtube out", GTUBE));
    assert!(last.starts_with("554 5.7.1 message held") && last.contains("outbound-spam"), "{last}");
    let again = submit(&front, root, "tom@example.edu", "dora@example.edu", &message("after the snag", "hello"));
    assert!(!again.starts_with("250"), "tom is locked: {again}");
    let dora = read(&front, "dora@example.edu", "INBOX");
    assert_eq!(count_with(&dora, "gtube out") + count_with(&dora, "after the snag"), 0);
    let (ok, tickets) = mailctl(root, &["phish", "list"]);
    assert!(ok && tickets.contains("tom@example.edu") && tickets.contains("outbound-spam"), "{tickets}");
}
