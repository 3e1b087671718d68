//! ManageSieve through the front (RFC 5804), with Debian's sieve-connect as the client:
//! STARTTLS and a verified certificate, upload, list, activate, download, delete, a script
//! with a syntax error refused with its line number, and RENAMESCRIPT (which sieve-connect
//! lacks) from a minimal client. The script a user activates is the one delivery runs, on
//! the user's own mailhost.

mod support;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::*;

/// sieve-connect against the front with `args`; (success, stdout and stderr).
fn sieve_connect(front: &Front, root: &Path, user: &str, password: &str, args: &[&str]) -> (bool, String) {
    let (host, port) = front.sieve.rsplit_once(':').unwrap();
    let mut child = Command::new("sieve-connect")
        .args(["--server", host, "--port", port, "--user", user, "--passwordfd", "0", "--noclearchan"])
        .arg("--tlscafile")
        .arg(root.join("cert.pem"))
        .args(args)
        .current_dir(root)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sieve-connect runs (Debian package sieve-connect)");
    child.stdin.take().unwrap().write_all(format!("{password}\n").as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[test]
fn sieve_connect_manages_scripts_through_the_front() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let storage = Storage::start(root);
    std::fs::write(root.join("users.ldif"), std::fs::read_to_string(fixture("users.ldif")).unwrap()).unwrap();
    // A certificate (STARTTLS), and passwords from loopback for the IMAP check below.
    let front = Front::start_with_certificate(root, &storage, ldif_directory());
    let run = |args: &[&str]| sieve_connect(&front, root, "alice@example.edu", "alice-pw", args);

    std::fs::write(root.join("broken.sieve"), "require \"fileinto\";\nif header :is \"subject\" {\n  keep;\n}\n")
        .unwrap();
    let (ok, text) = run(&["--upload", "--localsieve", "broken.sieve", "--remotesieve", "broken"]);
    assert!(!ok && text.contains("line 2"), "a syntax error is refused with its line: {text}");

    let script = "require \"fileinto\";\r\nif header :contains \"subject\" \"invoice\" { fileinto \"Bills\"; }\r\n";
    std::fs::write(root.join("bills.sieve"), script).unwrap();
    let (ok, text) = run(&["--upload", "--localsieve", "bills.sieve", "--remotesieve", "bills"]);
    assert!(ok, "upload: {text}");
    let (ok, text) = run(&["--activate", "--remotesieve", "bills"]);
    assert!(ok, "activate: {text}");
    let (ok, text) = run(&["--list"]);
    assert!(ok && text.contains("\"bills\" ACTIVE"), "list: {text}");
    let (ok, text) = run(&["--download", "--remotesieve", "bills", "--localsieve", "back.sieve"]);
    assert!(ok, "download: {text}");
    assert_eq!(std::fs::read_to_string(root.join("back.sieve")).unwrap(), script, "downloaded as uploaded");

    // The active script is what delivery runs, on alice's mailhost.
    storage.deliver("alice@example.edu", "Your invoice 42");
    let bills = client(&[
        "read",
        "--server",
        &front.imap,
        "--user",
        "alice@example.edu",
        "--password",
        "alice-pw",
        "--mailbox",
        "Bills",
    ]);
    assert_eq!(bills["exists"], 1, "{bills}");
    assert!(bills["messages"][0].as_str().unwrap().contains("Your invoice 42"), "{bills}");

    let args = [
        "--server",
        &front.sieve,
        "--ca",
        &root.join("cert.pem").display().to_string(),
        "--user",
        "alice@example.edu",
        "--password",
        "alice-pw",
    ]
    .map(String::from);
    let mut all: Vec<String> = args.to_vec();
    all.extend(
        ["RENAMESCRIPT \"bills\" \"filters\"", "LISTSCRIPTS", "DELETESCRIPT \"filters\"", "SETACTIVE \"\""]
            .map(String::from),
    );
    let out = python_json("managesieve.py", &all);
    assert!(out["capabilities"].as_str().unwrap().contains("\"SASL\" \"PLAIN\""), "{out}");
    let responses: Vec<&str> = out["responses"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
    assert!(responses[0].starts_with("OK"), "{out}");
    assert_eq!(responses[1], "\"filters\" ACTIVE\r\nOK \"listscripts completed\"\r\n", "the active script renamed");
    assert!(responses[2].starts_with("NO (ACTIVE)"), "{out}");
    assert!(responses[3].starts_with("OK"), "{out}");
    let (ok, text) = run(&["--delete", "--remotesieve", "filters"]);
    assert!(ok, "delete: {text}");
    let (ok, text) = run(&["--list"]);
    assert!(ok && !text.contains("filters"), "{text}");
    // A wrong password is refused and nothing leaks of whether the user exists.
    let (ok, _) = sieve_connect(&front, root, "alice@example.edu", "wrong", &["--list"]);
    assert!(!ok);
}

/// A script uploaded through the front acting on mail that arrives over SMTP: reject
/// answered to the sending client, redirect delivered once through the queue (and kept
/// when the message already passed this user: a loop), vacation once per sender and never
/// to the null sender or to a list.
#[test]
fn sieve_actions_over_smtp() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let storage = Storage::start(root);
    std::fs::write(root.join("users.ldif"), std::fs::read_to_string(fixture("users.ldif")).unwrap()).unwrap();
    let remote = free_addr();
    let sink = Sink::start(root, "remote", &remote, None);
    let routes = std::collections::BTreeMap::from([("remote.test".to_string(), remote.clone())]);
    let options = FrontOptions {
        tls: true,
        plaintext_loopback: true,
        queue: Some(QueueSection { routes, ..fast_queue(30) }),
        ..FrontOptions::default()
    };
    let front = Front::start_opts(root, &storage, ldif_directory(), options);
    let script = "require [\"reject\", \"vacation\"];\r\n\
        if header :contains \"subject\" \"reject me\" { reject \"No thanks.\"; stop; }\r\n\
        if header :contains \"subject\" \"pass on\" { redirect \"archive@remote.test\"; stop; }\r\n\
        vacation :days 1 :subject \"Away\" \"Back next week.\";\r\n";
    let put = format!("PUTSCRIPT \"main\" {{{}+}}\\r\\n{script}", script.len());
    let args = [
        "--server",
        &front.sieve,
        "--ca",
        &root.join("cert.pem").display().to_string(),
        "--user",
        "alice@example.edu",
        "--password",
        "alice-pw",
        &put,
        "SETACTIVE \"main\"",
    ]
    .map(String::from);
    let out = python_json("managesieve.py", &args);
    assert!(out["responses"].as_array().unwrap().iter().all(|r| r.as_str().unwrap().starts_with("OK")), "{out}");

    let send = |from: &str, subject: &str| {
        smtplib(&["--server", &front.smtp, "--from", from, "--to", "alice@example.edu", "--subject", subject])
    };
    let raw = |from: &str, name: &str, text: &str| {
        let file = root.join(name);
        std::fs::write(&file, text.replace('\n', "\r\n")).unwrap();
        smtplib(&[
            "--server",
            &front.smtp,
            "--from",
            from,
            "--to",
            "alice@example.edu",
            "--subject",
            "-",
            "--message-file",
            file.to_str().unwrap(),
        ])
    };
    let r = send("pest@remote.test", "please reject me");
    assert_eq!(r["code"], 550, "{r}");
    assert!(r["error"].as_str().unwrap().contains("No thanks."), "{r}");

    assert_eq!(send("bob@remote.test", "pass on this")["ok"], true);
    wait_for("the redirect", Duration::from_secs(30), || sink.count("pass on this") == 1);
    let looped = "From: bob@remote.test\nTo: alice@example.edu\nDelivered-To: alice@example.edu\nSubject: pass on again\n\nround and round\n";
    assert_eq!(raw("bob@remote.test", "loop.eml", looped)["ok"], true);

    assert_eq!(send("carol@remote.test", "hello 1")["ok"], true);
    assert_eq!(send("carol@remote.test", "hello 2")["ok"], true);
    assert_eq!(send("", "from the null sender")["ok"], true);
    let list =
        "From: list@remote.test\nTo: alice@example.edu\nList-Id: <l.remote.test>\nSubject: list post\n\nposted\n";
    assert_eq!(raw("list-bounces@remote.test", "list.eml", list)["ok"], true);
    wait_for("the vacation reply", Duration::from_secs(30), || sink.count("Away") == 1);
    std::thread::sleep(Duration::from_secs(3));
    let messages = sink.messages();
    let replies: Vec<&String> = messages.iter().filter(|m| m.contains("Back next week.")).collect();
    assert_eq!(replies.len(), 1, "once per sender, never to <> or a list: {replies:?}");
    assert!(replies[0].contains("carol@remote.test"), "{}", replies[0]);
    assert_eq!(sink.count("pass on this"), 1, "redirected once");
    assert_eq!(sink.count("pass on again"), 0, "a loop stops");
    let inbox = client(&["read", "--server", &front.imap, "--user", "alice@example.edu", "--password", "alice-pw"]);
    let subjects: Vec<String> =
        inbox["messages"].as_array().unwrap().iter().map(|m| m.as_str().unwrap().to_string()).collect();
    for kept in ["pass on again", "hello 1", "hello 2", "from the null sender", "list post"] {
        assert_eq!(
            subjects.iter().filter(|m| m.contains(&format!("Subject: {kept}"))).count(),
            1,
            "{kept}: {subjects:?}"
        );
    }
    assert!(!subjects.iter().any(|m| m.contains("reject me") || m.contains("Subject: pass on this")));
}
