//! Compromised accounts, end to end with real processes and real clients: Python's imaplib
//! and poplib log in from network namespaces whose addresses a test geo database (written
//! with mmdb-writer) places in the US and in Africa. A login from each within hours snags
//! the account at once: locked at every front and in its group (an open IMAP session is
//! closed), password scrambled, the foreign address refused on every listener of every
//! front, a ticket `mailctl phish list` shows; `mailctl phish release` gives it back.
//! A submission with a spoofed From to too many recipients is held and snags its sender.

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::*;
use tools::netns::{in_namespace, Site};

/// Run `tests/py/SCRIPT ARGS` inside `site`'s namespace; its last line as JSON.
fn py_in(site: &Site, script: &str, args: &[&str]) -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("py").join(script);
    let out = Command::new("ip").args(["netns", "exec", &site.ns, "python3"]).arg(path).args(args).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text.lines().last().unwrap_or_default();
    serde_json::from_str(last)
        .unwrap_or_else(|_| panic!("{script} {args:?}: {text} {}", String::from_utf8_lossy(&out.stderr)))
}

/// The first line a client in `site` reads from `port` of the host.
fn first_line_in(site: &Site, port: u16) -> String {
    let addr = format!("{}:{port}", site.host_ip);
    in_namespace(&site.ns, move || {
        let Ok(s) = std::net::TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(5)) else {
            return "(connect failed)".to_string();
        };
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut line = String::new();
        let _ = BufReader::new(s).read_line(&mut line);
        line
    })
}

fn port(addr: &str) -> u16 {
    addr.rsplit(':').next().unwrap().parse().unwrap()
}

/// A geo database placing `us` in New York and `away` in Lagos.
fn geo_database(root: &Path, us: &Site, away: &Site) -> std::path::PathBuf {
    let path = root.join("geo.mmdb");
    let net = |s: &Site| format!("{}/32", s.client_ip);
    let out = Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("py/make_geo.py"))
        .arg(&path)
        .arg(format!("{}=US,NA,40.71,-74.01", net(us)))
        .arg(format!("{}=NG,AF,6.52,3.38", net(away)))
        .output()
        .unwrap();
    assert!(out.status.success(), "mmdb-writer (scripts/install-test-deps): {}", String::from_utf8_lossy(&out.stderr));
    path
}

/// A front in `dir` listening on every address (the sites reach it through their veth),
/// with the geo database, passwords allowed from the sites, and `more` applied last.
fn front_for_sites(
    dir: &Path,
    storage: &Storage,
    ldif: &Path,
    geo: &Path,
    more: impl Fn(&mut frontd::config::Config) + 'static,
) -> Front {
    std::fs::create_dir_all(dir).unwrap();
    let geo = geo.to_path_buf();
    let tune: Tune = Box::new(move |c| {
        let any = |l: &mut Option<String>| *l = l.as_ref().map(|a| format!("0.0.0.0:{}", port(a)));
        for l in [&mut c.listen.imap, &mut c.listen.pop3, &mut c.listen.smtp, &mut c.listen.submission] {
            any(l);
        }
        any(&mut c.listen.sieve);
        c.auth.plaintext_networks.push("10.77.0.0/16".into());
        c.phish.geo_database = Some(geo.clone());
        more(c);
    });
    let directory = frontd::config::DirectorySection::ldif(ldif);
    Front::start_opts(dir, storage, directory, FrontOptions { tune: Some(tune), ..Default::default() })
}

#[test]
fn a_login_from_abroad_hours_after_one_at_home_snags_the_account_everywhere() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let (us, away) = (Site::new("us", 61).unwrap(), Site::new("ng", 62).unwrap());
    let geo = geo_database(root, &us, &away);
    let place = frontd::phish::geo::Geo::open(&geo).unwrap().locate(away.client_ip.parse().unwrap());
    assert_eq!((place.country.as_deref(), place.continent.as_deref()), (Some("NG"), Some("AF")));
    let storage = Storage::start(root);
    let ldif = root.join("users.ldif");
    std::fs::copy(fixture("users.ldif"), &ldif).unwrap();
    let front1 = front_for_sites(&root.join("f1"), &storage, &ldif, &geo, |_| {});
    let front2 = front_for_sites(&root.join("f2"), &storage, &ldif, &geo, |_| {});
    storage.leader_for("alice@example.edu");
    let imap_us = format!("{}:{}", us.host_ip, port(&front1.imap));

    // alice reads her mail at home and keeps the session open.
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("py/front_client.py");
    let mut home = Command::new("ip")
        .args(["netns", "exec", &us.ns, "python3"])
        .arg(&script)
        .args(["wait", "--server", &imap_us, "--user", "alice@example.edu", "--password", "alice-pw"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut home_out = BufReader::new(home.stdout.take().unwrap());
    let mut line = String::new();
    home_out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    let (_, shown) =
        mailctl(&root.join("f1"), &["user", "show", "alice@example.edu", "--ldif", ldif.to_str().unwrap()]);
    wait_for("the home login in the history", Duration::from_secs(10), || {
        let (_, shown) =
            mailctl(&root.join("f1"), &["user", "show", "alice@example.edu", "--ldif", ldif.to_str().unwrap()]);
        shown.contains("IMAP") && shown.contains(&us.client_ip)
    });
    assert!(shown.contains("uid=alice"), "{shown}");

    // An hour later by the clock of the rules (at once, here) a login from Lagos, on POP3
    // through the other front.
    let pop_away = format!("{}:{}", away.host_ip, port(&front2.pop3));
    let started = Instant::now();
    let r =
        py_in(&away, "front_client.py", &["pop3", "--server", &pop_away, "--user", "alice", "--password", "alice-pw"]);
    assert_eq!(r["ok"], true, "the login itself succeeds: {r}");
    let locked = || std::fs::read_to_string(&ldif).unwrap().contains("mailPhishLock");
    wait_for("the account locked in the directory", Duration::from_secs(10), locked);
    line.clear();
    home_out.read_line(&mut line).unwrap();
    let ended: serde_json::Value = serde_json::from_str(&line).unwrap();
    let closed_after = started.elapsed();
    assert_eq!(ended["ended"], "closed", "{ended}");
    assert!(ended["said"].as_str().unwrap().contains("locked"), "{ended}");
    home.wait().unwrap();
    eprintln!("snag: session closed {closed_after:?} after the foreign login began");

    // The password no longer works, at either front, from home.
    for front in [&front1, &front2] {
        let r = py_in(
            &us,
            "front_client.py",
            &[
                "imap",
                "--server",
                &format!("{}:{}", us.host_ip, port(&front.imap)),
                "--user",
                "alice",
                "--password",
                "alice-pw",
            ],
        );
        assert_eq!(r["ok"], false, "{r}");
    }
    // The foreign address is refused on every listener of every front; home is not.
    wait_for("the block list at both fronts", Duration::from_secs(10), || {
        first_line_in(&away, port(&front1.imap)).contains("denied")
            && first_line_in(&away, port(&front2.imap)).contains("denied")
    });
    for front in [&front1, &front2] {
        for addr in [&front.smtp, &front.submission, &front.imap, &front.pop3, &front.sieve] {
            let said = first_line_in(&away, port(addr));
            assert!(said.contains("denied"), "{addr}: {said:?}");
        }
        assert!(first_line_in(&us, port(&front.imap)).starts_with("* OK"));
    }
    let (ok, tickets) = mailctl(&root.join("f1"), &["phish", "list"]);
    assert!(ok && tickets.contains("alice@example.edu") && tickets.contains("geo-velocity"), "{tickets}");
    assert!(tickets.contains(&away.client_ip) || tickets.contains(&us.client_ip), "{tickets}");
    let (_, blocks) = mailctl(&root.join("f1"), &["block", "list"]);
    assert!(blocks.contains(&away.client_ip), "{blocks}");
    let (_, shown) = mailctl(&root.join("f1"), &["user", "show", "alice", "--ldif", ldif.to_str().unwrap()]);
    assert!(shown.contains("accountStatus: disabled") && shown.contains("NG") && shown.contains("US"), "{shown}");

    // The postmaster releases alice: a new password works from home.
    let (ok, released) = mailctl(&root.join("f1"), &["phish", "release", "alice@example.edu"]);
    assert!(ok, "{released}");
    let password = released.trim().rsplit(' ').next().unwrap().to_string();
    wait_for("alice back in", Duration::from_secs(10), || {
        py_in(&us, "front_client.py", &["imap", "--server", &imap_us, "--user", "alice", "--password", &password])["ok"]
            == true
    });
    assert!(!locked(), "the marker is gone");
    let (_, tickets) = mailctl(&root.join("f1"), &["phish", "list"]);
    assert!(tickets.contains("closed"), "{tickets}");
}

/// A one-shot HTTP server: the body of the first POST it gets (answered `200`).
fn webhook_receiver() -> (String, std::sync::mpsc::Receiver<String>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        let Ok((mut s, _)) = listener.accept() else { return };
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&got).to_string();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length = head
                    .lines()
                    .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string()))
                    .and_then(|v| v.parse::<usize>().ok())
                    .unwrap_or(0);
                if body.len() >= length {
                    let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
                    let _ = tx.send(body.to_string());
                    return;
                }
            }
        }
    });
    (addr, rx)
}

/// The attributes of alice's LDAP entry, as ldapsearch prints them.
fn alice_in_ldap(slapd: &Slapd) -> String {
    let out = Command::new("ldapsearch")
        .args(["-x", "-LLL", "-H", &slapd.url, "-b", "dc=example,dc=edu", "-D", "cn=admin,dc=example,dc=edu"])
        .args(["-w", "admin-pw", "(uid=alice)", "accountStatus", "mailPhishLock"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A submission with envelope alice, `From: bank@…` and 101 recipients is held and snags
/// alice (locked in LDAP, ticket by webhook and by mail); 99 recipients are sent. Release
/// sends the held message on.
#[test]
fn a_spoofed_bulk_submission_is_held_and_snags_its_sender() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let slapd = Slapd::start(root);
    let storage = Storage::start(root);
    let remote = free_addr();
    let sink = Sink::start(root, "remote", &remote, None);
    let (hook, hooked) = webhook_receiver();
    std::fs::write(root.join("ldap.pw"), format!("{LDAP_BIND_PASSWORD}\n")).unwrap();
    std::fs::write(root.join("admin.pw"), "admin-pw\n").unwrap();
    let ldap = frontd::config::LdapSection {
        bind_dn: Some(LDAP_BIND_DN.into()),
        bind_password_file: Some("ldap.pw".into()),
        // The front may still hold alice's entry (old hash) from before the snag: the lock
        // in the records every front reads must refuse her anyway.
        cache_ttl_s: 5,
        ..frontd::config::LdapSection::new(slapd.url.clone(), "dc=example,dc=edu")
    };
    let directory = frontd::config::DirectorySection { ldif: None, ldap: Some(ldap) };
    let tune: Tune = Box::new(move |c| {
        c.smtp.recipients_max = 200;
        c.smtp.submission_from = "sender".into();
        c.phish.ldap_admin_dn = Some("cn=admin,dc=example,dc=edu".into());
        c.phish.ldap_admin_password_file = Some("admin.pw".into());
        c.phish.webhook = Some(format!("http://{hook}/phish"));
        c.phish.notify = Some("bob@example.edu".into());
    });
    let queue = QueueSection { routes: [("remote.test".to_string(), remote.clone())].into(), ..fast_queue(30) };
    let options = FrontOptions {
        tls: true,
        plaintext_loopback: true,
        tune: Some(tune),
        queue: Some(queue),
        ..Default::default()
    };
    let front = Front::start_opts(root, &storage, directory, options);
    wait_listening(&front.submission, "frontd submission");
    storage.leader_for("alice@example.edu");
    let ca = root.join("cert.pem");
    let send = |count: usize, subject: &str| {
        // From an address of its own: the snag blocks it (127.0.0.1 is a relay, never blocked).
        let mut args: Vec<String> =
            ["--server", &front.submission, "--source", "127.0.0.9", "--starttls", "--ca", ca.to_str().unwrap()]
                .iter()
                .map(|s| s.to_string())
                .collect();
        for a in ["--user", "alice@example.edu", "--password", "alice-pw", "--from", "alice@example.edu"] {
            args.push(a.into());
        }
        for a in ["--header-from", "Your Bank <bank@example.com>", "--subject", subject] {
            args.push(a.into());
        }
        for k in 0..count {
            args.push("--to".into());
            args.push(format!("customer{k}@remote.test"));
        }
        smtplib(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };

    let r = send(99, "account notice one");
    assert_eq!(r["ok"], true, "99 recipients are sent: {r}");
    wait_for("the 99-recipient message at the sink", Duration::from_secs(30), || sink.count("account notice one") == 1);
    assert!(!alice_in_ldap(&slapd).contains("mailPhishLock"));

    let r = send(101, "account notice two");
    assert_eq!(r["code"], 554, "{r}");
    assert!(r["error"].as_str().unwrap().contains("held"), "{r}");
    let entry = alice_in_ldap(&slapd);
    assert!(entry.contains("accountStatus: disabled") && entry.contains("mailPhishLock:"), "{entry}");
    assert!(entry.contains("bulk-spoofing"), "{entry}");
    let ticket: serde_json::Value =
        serde_json::from_str(&hooked.recv_timeout(Duration::from_secs(10)).unwrap()).unwrap();
    assert_eq!((ticket["user"].as_str(), ticket["rule"].as_str()), (Some("alice@example.edu"), Some("bulk-spoofing")));
    let (_, queue) = mailctl(root, &["queue", "list"]);
    assert!(queue.contains("held"), "{queue}");
    wait_for("the ticket mailed to bob", Duration::from_secs(30), || {
        inbox_subjects(&front, "bob", "bob-pw").iter().any(|s| s.contains("phish: alice@example.edu locked"))
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(sink.count("account notice two"), 0, "the held message is not sent");
    assert_eq!(imap_login(&front.imap, "alice", "alice-pw")["ok"], false, "locked, whatever the cache holds");
    wait_for("the sending address blocked", Duration::from_secs(10), || {
        send(1, "after the block")["error"].as_str().unwrap_or_default().contains("denied")
    });

    // Released: the held message goes out, alice logs in with her new password.
    let (ok, released) = mailctl(root, &["phish", "release", "alice@example.edu"]);
    assert!(ok, "{released}");
    let password = released.trim().rsplit(' ').next().unwrap().to_string();
    wait_for("the held message at the sink", Duration::from_secs(30), || sink.count("account notice two") == 1);
    wait_for("alice back in", Duration::from_secs(20), || imap_login(&front.imap, "alice", &password)["ok"] == true);
    assert!(!alice_in_ldap(&slapd).contains("mailPhishLock"));
}
