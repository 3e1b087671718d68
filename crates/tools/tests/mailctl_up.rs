//! The README's first command, as a user runs it: `mailctl up` starts a local cluster with
//! the real daemons, prints how to connect, and the welcome message can be read over IMAPS
//! with Python's imaplib and with curl, trusting the printed CA; swaks sends through
//! submission (STARTTLS, AUTH) and the recipient reads it; Ctrl-C stops every daemon;
//! a second `up` on the same directory comes back with the same mail and no second welcome.

mod up;

use std::process::Command;
use std::time::{Duration, Instant};

use tools::mailctl::layout::Layout;
use up::{free_port_base, interrupt, password_of, up};

/// INBOX subjects of `user` over IMAPS, with Python's imaplib trusting `ca`.
fn imaplib_subjects(addr: &str, ca: &std::path::Path, user: &str, password: &str) -> String {
    let (host, port) = addr.rsplit_once(':').unwrap();
    let code = format!(
        "import imaplib, ssl, email\n\
         m = imaplib.IMAP4_SSL('{host}', {port}, ssl_context=ssl.create_default_context(cafile='{ca}'))\n\
         m.login('{user}', '{password}')\n\
         typ, data = m.select('INBOX')\n\
         typ, parts = m.fetch('1:*', '(BODY.PEEK[HEADER])') if int(data[0]) else ('OK', [])\n\
         print('|'.join(email.message_from_bytes(p[1]).get('Subject') for p in parts if isinstance(p, tuple)))\n\
         m.logout()\n",
        ca = ca.display()
    );
    let out = Command::new("python3").args(["-c", &code]).output().unwrap();
    assert!(out.status.success(), "imaplib: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Files and directories under `dir` that group or others may read, write or enter.
fn readable_by_others(dir: &std::path::Path) -> Vec<String> {
    let out = Command::new("find").arg(dir).args(["-perm", "/077", "-print"]).output().unwrap();
    assert!(out.status.success(), "find: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(str::to_string).collect()
}

/// The process whose command line has `argument`, if one runs.
fn pid_with_argument(argument: &str) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
        cmdline.split(|b| *b == 0).any(|a| a == argument.as_bytes()).then_some(pid)
    })
}

/// `GET /metrics`-style plain HTTP: the body.
fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    answer
}

#[test]
fn up_serves_the_welcome_message_and_stops_on_ctrl_c() {
    let tmp = tempfile::tempdir().unwrap();
    let base = free_port_base(tmp.path());
    let dir = tmp.path().join("data");
    let (child, lines) = up(&dir, base);
    let layout = Layout::open(&dir, base).unwrap();
    let alice = password_of(&lines, "alice@example.edu");
    // Clients are told `localhost`, the name the certificate carries (isync ignores IP SANs).
    let told = layout.front_imaps().replace("127.0.0.1", "localhost");
    assert!(lines.iter().any(|l| l.contains(&told)), "{lines:#?}");

    let ca = layout.ca_file();
    assert_eq!(imaplib_subjects(&layout.front_imaps(), &ca, "alice@example.edu", &alice), "Welcome to your mailstore");
    let url = format!("imaps://{}/INBOX;UID=1", layout.front_imaps());
    let out = Command::new("curl")
        .args(["-s", "--max-time", "20", "--cacert"])
        .arg(&ca)
        .args(["--user", &format!("alice@example.edu:{alice}"), &url])
        .output()
        .unwrap();
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && body.contains("Subject: Welcome to your mailstore"), "curl: {body}");

    // The printed swaks line: alice sends to bob through submission; bob reads it.
    let swaks = lines.iter().find_map(|l| l.trim().strip_prefix("swaks ")).expect("a swaks line").to_string();
    let mut args: Vec<String> = swaks.split_whitespace().map(|a| a.trim_matches('\'').to_string()).collect();
    args.extend(["--header".into(), "Subject: hello bob".into(), "--timeout".into(), "30".into()]);
    let out = Command::new("swaks").args(&args).output().expect("swaks (scripts/install-test-deps)");
    assert!(out.status.success(), "swaks: {}", String::from_utf8_lossy(&out.stdout));
    let bob = std::fs::read_to_string(dir.join("demo-passwords")).unwrap();
    let bob = bob
        .lines()
        .find_map(|l| l.strip_prefix("bob@example.edu "))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    assert_eq!(
        imaplib_subjects(&layout.front_imaps(), &ca, "bob@example.edu", &bob),
        "Welcome to your mailstore|hello bob"
    );

    // `up` runs the scanners (the test machine has them): EICAR over the MX is refused.
    assert!(lines.iter().any(|l| l.contains("scanning: clamd") && l.contains("and rspamd")), "{lines:#?}");
    let out = Command::new("swaks")
        .args(["--server", &layout.front_smtp(), "--from", "x@remote.example", "--to", "bob@example.edu"])
        .args(["--body", clusterkit::scanners::EICAR, "--timeout", "30"])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success() && log.contains("554 5.7.1 message rejected: virus Eicar"), "swaks: {log}");

    // `mailctl user add` edits the running cluster's directory; frontd picks it up.
    let out = Command::new(env!("CARGO_BIN_EXE_mailctl"))
        .args(["user", "add", "erin@example.edu", "--mailhost", "apollo", "--password", "erin-pw", "--ldif"])
        .arg(dir.join("users.ldif"))
        .output()
        .unwrap();
    assert!(out.status.success(), "mailctl user add: {}", String::from_utf8_lossy(&out.stderr));
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(imaplib_subjects(&layout.front_imaps(), &ca, "erin", "erin-pw"), "", "a new, empty mailbox");
    let out = Command::new(env!("CARGO_BIN_EXE_mailctl"))
        .args(["user", "passwd", "erin@example.edu", "--password", "erin-pw2", "--ldif"])
        .arg(dir.join("users.ldif"))
        .output()
        .unwrap();
    assert!(out.status.success(), "mailctl user passwd: {}", String::from_utf8_lossy(&out.stderr));

    // `mailctl status`: both groups with a leader and three members each.
    let front_config = dir.join("frontd.toml");
    let mailctl = |args: &[&str]| {
        let out =
            Command::new(env!("CARGO_BIN_EXE_mailctl")).args(args).arg("--config").arg(&front_config).output().unwrap();
        assert!(out.status.success(), "mailctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let status = mailctl(&["status"]);
    for group in ["hermes", "apollo"] {
        assert!(status.contains(&format!("group {group}: leader node ")), "{status}");
    }
    assert_eq!(status.matches("(leader)").count(), 2, "{status}");
    assert!(!status.contains("DOWN"), "{status}");

    // Mail to a domain nobody serves waits in the queue; `mailctl queue` shows and drops it.
    let to_remote: Vec<String> = args
        .iter()
        .map(|a| if a == "bob@example.edu" { "someone@nowhere.example".to_string() } else { a.clone() })
        .collect();
    let out = Command::new("swaks").args(&to_remote).output().unwrap();
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && log.contains("queued as "), "swaks: {log}");
    let list = mailctl(&["queue", "list"]);
    let id = list
        .lines()
        .find(|l| l.contains("someone@nowhere.example"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("not queued: {list}"))
        .to_string();
    let show = mailctl(&["queue", "show", &id]);
    assert!(
        show.contains("recipient: <someone@nowhere.example> pending") && show.contains("Subject: hello bob"),
        "{show}"
    );
    // Its MX was looked up on the loopback resolver the test gave `up`, not the system's.
    let deadline = Instant::now() + Duration::from_secs(60);
    while up::dns().queries() == 0 {
        assert!(Instant::now() < deadline, "no delivery attempt asked the test's DNS server");
        std::thread::sleep(Duration::from_millis(200));
    }
    mailctl(&["queue", "delete", &id]);
    assert_eq!(mailctl(&["queue", "list"]), "queue is empty\n");

    // Every daemon serves /metrics, and the banner says where.
    assert!(lines.iter().any(|l| l.contains(&format!("http://{}/metrics", layout.front_metrics()))), "{lines:#?}");
    let metrics = http_get(&layout.front_metrics(), "/metrics");
    assert!(metrics.contains("mail_smtp_messages_total{listener=\"submission\",fate=\"accepted\"}"), "{metrics}");

    // A storage node killed under `up` is restarted, and `status` counts it.
    let node2 = dir.join("node2.toml");
    let pid = pid_with_argument(node2.to_str().unwrap()).expect("storaged2 runs");
    // SAFETY: signalling a process of this test's own mailctl.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let node2_imap = layout.node(2, tools::mailctl::layout::NodePort::Imap);
    let deadline = Instant::now() + Duration::from_secs(30);
    while pid_with_argument(node2.to_str().unwrap()).is_none_or(|p| p == pid)
        || std::net::TcpStream::connect(&node2_imap).is_err()
    {
        assert!(Instant::now() < deadline, "storaged2 was not restarted");
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = mailctl(&["status"]);
    assert!(status.contains("restarts under mailctl up:") && status.contains("storaged2 1"), "{status}");
    let json: serde_json::Value = serde_json::from_str(&mailctl(&["status", "--json"])).unwrap();
    assert_eq!(json["restarts"]["storaged2"], 1, "{json}");
    assert_eq!(json["restarts"]["storaged1"], 0, "{json}");

    // A new mailhost on the running nodes; `group add` lists it in the front's configuration.
    use tools::mailctl::layout::NodePort;
    let member = |i: usize| format!("{i},{},{}", layout.node(i, NodePort::Raft), layout.node(i, NodePort::Lmtp));
    let added =
        mailctl(&["group", "add", "zeus", "--member", &member(1), "--member", &member(2), "--member", &member(3)]);
    assert!(added.contains("group zeus created") && added.contains("[[groups]]"), "{added}");

    interrupt(child);
    assert!(std::net::TcpStream::connect(layout.front_imap()).is_err(), "frontd still listens after Ctrl-C");
    for i in 1..=3 {
        let addr = layout.node(i, tools::mailctl::layout::NodePort::Imap);
        assert!(std::net::TcpStream::connect(&addr).is_err(), "storaged {i} still listens after Ctrl-C");
    }

    // Mail, Raft logs, state, keys and the directory with its password hashes are the
    // owner's alone (the issue found them 0644 in 0755 directories).
    assert_eq!(readable_by_others(&dir), Vec::<String>::new());

    // Again on the same directory: the same mail, no second welcome; and the new mailhost
    // serves a new user.
    let (child, _) = up(&dir, base);
    assert_eq!(imaplib_subjects(&layout.front_imaps(), &ca, "alice@example.edu", &alice), "Welcome to your mailstore");
    let out = Command::new(env!("CARGO_BIN_EXE_mailctl"))
        .args(["user", "add", "zed@example.edu", "--mailhost", "zeus", "--password", "zed-pw", "--ldif"])
        .arg(dir.join("users.ldif"))
        .arg("--config")
        .arg(&front_config)
        .output()
        .unwrap();
    assert!(out.status.success(), "user add on zeus: {}", String::from_utf8_lossy(&out.stderr));
    std::thread::sleep(Duration::from_millis(1200));
    let out = Command::new("swaks")
        .args(["--server", &layout.front_smtp(), "--from", "x@remote.example", "--to", "zed@example.edu"])
        .args(["--header", "Subject: hello zeus", "--timeout", "30"])
        .output()
        .unwrap();
    assert!(out.status.success(), "swaks to zed: {}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(imaplib_subjects(&layout.front_imaps(), &ca, "zed", "zed-pw"), "hello zeus");
    let status = mailctl(&["status"]);
    assert!(status.contains("group zeus: leader node "), "{status}");
    interrupt(child);
}
