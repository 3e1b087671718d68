//! IMAP against real storaged processes, driven by Python's imaplib: the interop
//! scenario (folders, APPEND with flags, SEARCH, FETCH of parts, STORE, COPY, MOVE,
//! EXPUNGE, bad input, isolation between users), IDLE woken by an LMTP delivery, and
//! leader failover: the idling client gets BYE (when its node stops leading and when it
//! stops), and the next leader shows the same UIDVALIDITY, UIDs and flags.

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{deliver, login_args, password, py_json, Cluster};

fn script() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/imap_client.py")
}

fn imap_client(args: &[&str]) -> serde_json::Value {
    py_json("imap_client.py", args)
}

/// Start an idling client; returns once it is idling.
fn start_idle(kind: &str, server: &str, user: &str, pw: &str) -> (Child, BufReader<std::process::ChildStdout>) {
    start_idle_for(kind, "exists", server, user, pw)
}

fn start_idle_for(
    kind: &str,
    want: &str,
    server: &str,
    user: &str,
    pw: &str,
) -> (Child, BufReader<std::process::ChildStdout>) {
    let mut child = Command::new("python3")
        .arg(script())
        .args([kind, "--want", want, "--server", server, "--user", user, "--password", pw, "--wait", "30"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "idling", "client did not reach IDLE");
    (child, out)
}

fn finish(mut child: Child, mut out: BufReader<std::process::ChildStdout>) -> serde_json::Value {
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert!(child.wait().unwrap().success());
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
}

#[test]
fn imaplib_scenario_idle_and_failover() {
    let tmp = tempfile::tempdir().unwrap();
    // KEEP_TEST_DIR=1 keeps the cluster's files for inspection.
    let root = if std::env::var_os("KEEP_TEST_DIR").is_some() { tmp.keep() } else { tmp.path().to_path_buf() };
    eprintln!("cluster files under {}", root.display());
    let mut c = Cluster::start(&root, 3, 4);
    let leader = c.wait_leader(Duration::from_secs(30));
    let (user, pw) = ("user1@example.edu", password(1));
    let other_pw = password(2);
    let mut args = vec!["scenario".to_string()];
    args.extend(login_args(&c.imap[leader], 1));
    args.extend(["--other-user", "user2@example.edu", "--other-password", &other_pw].map(str::to_string));
    let r = imap_client(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(r["ok"], true);

    // IDLE is woken by a delivery made by someone else.
    let (child, out) = start_idle("idle", &c.imap[leader], user, &pw);
    deliver(&c.lmtp[leader], user, b"From: a@example.org\r\nSubject: wake up\r\n\r\nhello\r\n");
    let woke = finish(child, out);
    assert!(woke["exists"].as_u64().is_some(), "IDLE was not woken: {woke}");
    eprintln!("IDLE woke after {} ms", woke["waited_ms"]);
    // ... and by a flag change made in another session.
    let (child, out) = start_idle_for("idle", "fetch", &c.imap[leader], user, &pw);
    assert_eq!(imap_client(&["flag", "--server", &c.imap[leader], "--user", user, "--password", &pw])["ok"], true);
    let woke = finish(child, out);
    assert!(woke["exists"].as_u64().is_some(), "IDLE was not woken by a flag change: {woke}");
    eprintln!("IDLE woke after {} ms for a flag change", woke["waited_ms"]);
    deliver(&c.lmtp[leader], user, b"From: a@example.org\r\nSubject: second\r\n\r\nhello\r\n");
    let before = imap_client(&["state", "--server", &c.imap[leader], "--user", user, "--password", &pw]);
    assert_eq!(before["uids"].as_array().unwrap().len(), 2);

    // The leader is paused past an election and resumed: it finds a newer term and stops
    // leading, and its idling client hears at once that the mailhost moved (no session
    // polls for that: the leader change, or the new leader's first entry applied here,
    // wakes it).
    let (child, out) = start_idle("bye", &c.imap[leader], user, &pw);
    c.signal(leader, libc::SIGSTOP);
    std::thread::sleep(Duration::from_secs(5));
    c.signal(leader, libc::SIGCONT);
    let bye = finish(child, out);
    assert!(bye["line"].as_str().is_some_and(|l| l.contains("moved to another node")), "{bye}");
    let leader = c.wait_leader(Duration::from_secs(30));

    // The leader stops: its idling client hears BYE; the next leader shows the same state.
    let (child, out) = start_idle("bye", &c.imap[leader], user, &pw);
    c.stop(leader);
    let bye = finish(child, out);
    assert_eq!(bye["bye"], true, "{bye}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let after = loop {
        let next = (0..3).filter(|i| *i != leader).find_map(|i| {
            let out = Command::new("python3")
                .arg(script())
                .args(["state", "--server", &c.imap[i], "--user", user, "--password", &pw])
                .output()
                .unwrap();
            out.status.success().then(|| serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap())
        });
        if let Some(s) = next {
            break s;
        }
        assert!(Instant::now() < deadline, "no new leader served IMAP");
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(after, before, "UIDVALIDITY, UIDs or flags changed across failover");
}
