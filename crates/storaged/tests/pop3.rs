//! POP3 (RFC 1939, 2449, 5034) against real storaged processes, driven by Python's poplib:
//! the whole command set, deletions committed through Raft, logins (own password, proxy
//! credential, refused impersonation), followers refusing service, and UIDLs that stay
//! the same when the leader dies and another replica takes over.

mod support;

use std::time::{Duration, Instant};

use support::{deliver, login_args, password, py_json, Cluster, PROXY_PASSWORD, PROXY_USER};

fn pop3_client(args: &[&str]) -> serde_json::Value {
    py_json("pop3_client.py", args)
}

#[test]
fn pop3_sessions_read_and_delete_and_uidls_survive_failover() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = Cluster::start(tmp.path(), 3, 4);
    let leader = c.wait_leader(Duration::from_secs(30));
    let user = "user1@example.edu";
    let mut files = Vec::new();
    for n in 0..4 {
        let msg = format!(
            "From: sender@example.org\r\nTo: {user}\r\nSubject: message {n}\r\nMessage-ID: <m{n}@example.org>\r\n\r\n\
             first body line of {n}\r\n.a line that starts with a dot\r\n..and two dots\r\nlast line\r\n"
        );
        deliver(&c.lmtp[leader], user, msg.as_bytes());
        let f = tmp.path().join(format!("msg{n}.eml"));
        std::fs::write(&f, &msg).unwrap();
        files.push(f.display().to_string());
    }

    let pw = password(1);
    let other_pw = password(2);
    let mut args = vec!["scenario".to_string()];
    args.extend(login_args(&c.pop3[leader], 1));
    args.extend(
        ["--other-user", "user2@example.edu", "--other-password", &other_pw, "--proxy-user", PROXY_USER]
            .map(str::to_string),
    );
    args.extend(["--proxy-password".to_string(), PROXY_PASSWORD.to_string()]);
    for f in &files {
        args.extend(["--message".to_string(), f.clone()]);
    }
    let remaining = pop3_client(&args.iter().map(String::as_str).collect::<Vec<_>>())["uidl"].clone();
    assert_eq!(remaining.as_array().unwrap().len(), 3);

    // A follower does not serve mail: it says so with a temporary-failure code.
    let follower = (leader + 1) % 3;
    let refused = pop3_client(&["refused", "--server", &c.pop3[follower], "--user", user, "--password", &pw]);
    let text = refused["error"].as_str().expect("a follower refused the login");
    assert!(text.contains("[SYS/TEMP]"), "{text}");

    // The leader dies; whoever leads next lists the same unique ids.
    c.kill(leader);
    let deadline = Instant::now() + Duration::from_secs(60);
    let after = loop {
        let up: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
        let next = up.iter().find(|i| {
            let r = pop3_client(&["refused", "--server", &c.pop3[**i], "--user", user, "--password", &pw]);
            r["error"].is_null()
        });
        if let Some(i) = next {
            break pop3_client(&["uidl", "--server", &c.pop3[*i], "--user", user, "--password", &pw]);
        }
        assert!(Instant::now() < deadline, "no new leader served POP3");
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(after["uidl"], remaining, "UIDLs changed across failover");
}
