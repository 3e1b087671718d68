//! frontd in front of a real storaged cluster with a real directory: logins are checked
//! against OpenLDAP (`slapd` with the qmail-ldap schema) or an LDIF file, each user lands
//! on their own mailhost group, disabled users and unknown mailhosts are refused the way
//! clients understand, injection in user names finds nobody, directory changes and
//! outages are followed, and a dead leader is replaced on reconnect. Clients are Python's
//! imaplib and poplib.

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use frontd::delivery::Folder;
use support::*;

const INJECTIONS: [&str; 7] = ["*", "*)(uid=*", "alice)(uid=*", "\\00", "al*", "*)(|(mail=*", "alice\\2a"];

fn ldap_directory(root: &Path, slapd: &Slapd) -> frontd::config::DirectorySection {
    std::fs::write(root.join("ldap.pw"), format!("{LDAP_BIND_PASSWORD}\n")).unwrap();
    let ldap = frontd::config::LdapSection {
        bind_dn: Some(LDAP_BIND_DN.into()),
        bind_password_file: Some("ldap.pw".into()),
        cache_ttl_s: 1,
        timeout_ms: 2000,
        ..frontd::config::LdapSection::new(slapd.url.clone(), "dc=example,dc=edu")
    };
    frontd::config::DirectorySection { ldif: None, ldap: Some(ldap) }
}

fn subjects(v: &serde_json::Value) -> Vec<String> {
    v["subjects"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect()
}

fn assert_refused(v: &serde_json::Value, code: &str, why: &str) {
    assert_eq!(v["ok"], false, "{why}: {v}");
    assert!(v["error"].as_str().unwrap().contains(code), "{why}: expected {code}: {v}");
}

/// The checks both directory backends must pass.
fn users_land_on_their_own_mailhost(front: &Front) {
    let alice = imap_login(&front.imap, "alice@example.edu", "alice-pw");
    assert_eq!(alice["ok"], true, "{alice}");
    assert_eq!(subjects(&alice), ["for alice"], "alice sees her own mail on hermes");
    let by_uid = client(&["imap", "--server", &front.imap, "--user", "alice", "--password", "alice-pw", "--sasl"]);
    assert_eq!(subjects(&by_uid), ["for alice"], "uid login with AUTHENTICATE PLAIN: {by_uid}");

    // Before login the front offers what the node offers after it (plus its own AUTH),
    // but COMPRESS, which only a logged-in session may use (RFC 4978 §3).
    let caps = |key: &str| -> Vec<String> {
        alice[key].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_ascii_uppercase()).collect()
    };
    let (pre, post) = (caps("caps_pre"), caps("caps_post"));
    assert!(post.iter().any(|c| c == "COMPRESS=DEFLATE") && !pre.iter().any(|c| c == "COMPRESS=DEFLATE"));
    assert!(!post.iter().any(|c| c == "UNAUTHENTICATE"), "a session the front routed cannot change user: {post:?}");
    for cap in post.iter().filter(|c| *c != "COMPRESS=DEFLATE") {
        assert!(pre.contains(cap), "{cap} missing before login: {pre:?}");
    }
    assert!(pre.iter().any(|c| c == "AUTH=PLAIN"), "{pre:?}");
    // COMPRESS=DEFLATE through the front: its splice carries the compressed stream as is.
    let script = "../../crates/storaged/tests/py/imap_compress.py";
    let z = python_json(script, &["session", "--server", &front.imap, "--user", "alice", "--password", "alice-pw"]);
    assert_eq!((z["exists"].as_u64(), z["fetched"].as_u64(), &z["body_ok"]), (Some(1), Some(1), &true.into()), "{z}");

    // bob (a {CRYPT} SHA-512 hash) lives on apollo; POP3 shows his mail, not alice's.
    let bob = client(&["pop3", "--server", &front.pop3, "--user", "bob@example.edu", "--password", "bob-pw"]);
    assert_eq!(bob["ok"], true, "{bob}");
    assert_eq!(subjects(&bob), ["for bob"]);
    let by_sasl = client(&["pop3", "--server", &front.pop3, "--user", "bob", "--password", "bob-pw", "--sasl"]);
    assert_eq!(subjects(&by_sasl), ["for bob"], "POP3 AUTH PLAIN with the response on its own line: {by_sasl}");
    let wrong = client(&["pop3", "--server", &front.pop3, "--user", "bob", "--password", "alice-pw", "--sasl"]);
    assert_refused(&wrong, "[AUTH]", "wrong password over POP3 SASL");

    assert_refused(&imap_login(&front.imap, "alice@example.edu", "bob-pw"), "AUTHENTICATIONFAILED", "wrong password");
    assert_refused(&imap_login(&front.imap, "carol@example.edu", "carol-pw"), "CONTACTADMIN", "disabled account");
    let carol = client(&["pop3", "--server", &front.pop3, "--user", "carol", "--password", "carol-pw"]);
    assert_refused(&carol, "[AUTH]", "disabled account over POP3");
    assert_refused(&imap_login(&front.imap, "dave@example.edu", "dave-pw"), "UNAVAILABLE", "mailHost no group serves");
    assert!(front.log_text().contains("mailHost names no group"), "the operator error is logged");
    // SASL PLAIN carries any bytes to the lookup (LOGIN would need quoting first).
    for name in INJECTIONS {
        let v = client(&["imap", "--server", &front.imap, "--user", name, "--password", "alice-pw", "--sasl"]);
        assert_refused(&v, "AUTHENTICATIONFAILED", name);
    }
}

#[test]
fn ldap_directory_routes_users_and_follows_changes_and_outages() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let mut slapd = Slapd::start(root);
    let storage = Storage::start(root);
    storage.deliver("alice@example.edu", "for alice");
    storage.deliver("bob@example.edu", "for bob");
    let front = Front::start(root, &storage, ldap_directory(root, &slapd));

    users_land_on_their_own_mailhost(&front);

    // An alternate address (any case) delivers to the same mailbox, found through LDAP.
    let ldap = directory::LdapConfig {
        bind_dn: Some(LDAP_BIND_DN.into()),
        bind_password: Some(LDAP_BIND_PASSWORD.into()),
        ..directory::LdapConfig::new(&slapd.url, "dc=example,dc=edu")
    };
    let directory = directory::Directory::Ldap(std::sync::Arc::new(directory::LdapDirectory::new(ldap).unwrap()));
    let cluster = std::sync::Arc::new(frontd::cluster::ClusterMap::new(&storage.group_sections()));
    let router =
        frontd::delivery::Router::new(directory, cluster, Some(storage.cluster_key()), Duration::from_secs(30));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let message = b"From: s@example.org\r\nSubject: via alias\r\n\r\nhi\r\n";
    let replies =
        runtime.block_on(router.deliver("s@example.org", &["A.Smith@example.EDU".into()], &[message], Folder::Inbox));
    assert!(replies[0].starts_with("250"), "{replies:?}");
    assert_eq!(subjects(&imap_login(&front.imap, "alice", "alice-pw")), ["for alice", "via alias"]);

    // alice moves to apollo in the directory: new sessions go there after the cache TTL.
    slapd
        .modify("dn: uid=alice,ou=people,dc=example,dc=edu\nchangetype: modify\nreplace: mailHost\nmailHost: apollo\n");
    std::thread::sleep(Duration::from_millis(1500));
    let moved = imap_login(&front.imap, "alice", "alice-pw");
    assert_eq!((moved["ok"].clone(), moved["exists"].clone()), (true.into(), 0.into()), "alice on apollo: {moved}");

    // The directory goes away: temporary failures, and frontd keeps running.
    slapd.stop();
    std::thread::sleep(Duration::from_millis(1500));
    assert_refused(&imap_login(&front.imap, "alice", "alice-pw"), "UNAVAILABLE", "LDAP down (IMAP)");
    let bob = client(&["pop3", "--server", &front.pop3, "--user", "bob", "--password", "bob-pw"]);
    assert_refused(&bob, "SYS/TEMP", "LDAP down (POP3)");
    slapd.restart();
    let back = imap_login(&front.imap, "alice", "alice-pw");
    assert_eq!(back["ok"], true, "after the directory returns: {back}");
}

#[test]
fn ldif_directory_routes_users_and_follows_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let storage = Storage::start(root);
    storage.deliver("alice@example.edu", "for alice");
    storage.deliver("bob@example.edu", "for bob");
    let ldif = std::fs::read_to_string(fixture("users.ldif")).unwrap();
    std::fs::write(root.join("users.ldif"), &ldif).unwrap();
    let front = Front::start(root, &storage, ldif_directory());

    users_land_on_their_own_mailhost(&front);

    // Straight at a storage node with the proxy identity and no front to name the mailhost
    // (an operator, a conformance run): the one group there that holds the user's mail.
    let direct = |node: usize, user: &str| {
        let server = &storage.imap[node];
        client(&[
            "imap",
            "--server",
            server,
            "--user",
            PROXY_USER,
            "--password",
            PROXY_PASSWORD,
            "--sasl",
            "--authzid",
            user,
        ])
    };
    let alice = direct(storage.leader_for("alice@example.edu"), "alice@example.edu");
    assert_eq!(subjects(&alice), ["for alice"], "the proxy identity reaches alice's mail on hermes: {alice}");
    let bob = direct(storage.leader_for("bob@example.edu"), "bob@example.edu");
    assert_eq!(subjects(&bob), ["for bob"], "and bob's on apollo: {bob}");
    let nobody = direct(storage.leader_for("alice@example.edu"), "nobody@example.edu");
    assert_refused(&nobody, "CONTACTADMIN", "no group holds mail for that user");

    std::fs::write(root.join("users.ldif"), ldif.replacen("mailHost: hermes", "mailHost: apollo", 1)).unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    let moved = imap_login(&front.imap, "alice", "alice-pw");
    assert_eq!((moved["ok"].clone(), moved["exists"].clone()), (true.into(), 0.into()), "alice on apollo: {moved}");
}

#[test]
fn a_dead_leader_drops_the_session_and_a_reconnect_lands_on_the_new_one() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let mut storage = Storage::start(root);
    storage.deliver("alice@example.edu", "before failover");
    let ldif = std::fs::read_to_string(fixture("users.ldif")).unwrap();
    std::fs::write(root.join("users.ldif"), &ldif).unwrap();
    let front = Front::start(root, &storage, ldif_directory());

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("py/front_client.py");
    let mut hold = Command::new("python3")
        .arg(script)
        .args(["hold", "--server", &front.imap, "--user", "alice", "--password", "alice-pw"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(hold.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");

    let leader = storage.leader_for("alice@example.edu");
    storage.kill(leader);
    line.clear();
    out.read_line(&mut line).unwrap();
    let ended: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert!(["bye", "closed"].contains(&ended["ended"].as_str().unwrap()), "session not ended: {ended}");
    hold.wait().unwrap();

    // A new session finds the new leader; mail committed before the failover is there.
    let again = imap_login(&front.imap, "alice@example.edu", "alice-pw");
    assert_eq!(again["ok"], true, "{again}");
    assert_eq!(subjects(&again), ["before failover"]);
    let new_leader = storage.leader_for("alice@example.edu");
    assert_ne!(new_leader, leader);
}

/// Message-IDs of the messages in a Maildir folder (`cur` and `new`).
fn maildir_ids(dir: &Path) -> Vec<String> {
    ["cur", "new"]
        .iter()
        .flat_map(|sub| std::fs::read_dir(dir.join(sub)).into_iter().flatten().flatten())
        .map(|e| {
            let text = std::fs::read_to_string(e.path()).unwrap();
            text.lines().find_map(|l| l.strip_prefix("Message-ID: ")).unwrap_or_default().trim().to_string()
        })
        .collect()
}

fn mbsync(rc: &Path) {
    let out = Command::new("mbsync").arg("-c").arg(rc).arg("-a").output().unwrap();
    let text = format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "mbsync failed:\n{text}");
}

#[test]
fn imaplib_scenario_and_mbsync_pass_through_the_proxy() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let storage = Storage::start(root);
    let users: String = (1..=2)
        .map(|u| {
            format!(
                "dn: uid=user{u},dc=example,dc=edu\nobjectClass: qmailUser\nuid: user{u}\nmail: user{u}@example.edu\n\
                 mailHost: hermes\nuserPassword: {{PLAIN}}pw-user{u}\n\n"
            )
        })
        .collect();
    std::fs::write(root.join("users.ldif"), users).unwrap();
    let front = Front::start(root, &storage, ldif_directory());

    // The storaged interop scenario, unchanged, against the front.
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/storaged/tests/py/imap_client.py");
    let out = Command::new("python3")
        .arg(scenario)
        .args(["scenario", "--server", &front.imap, "--user", "user1@example.edu", "--password", "pw-user1"])
        .args(["--other-user", "user2@example.edu", "--other-password", "pw-user2"])
        .output()
        .unwrap();
    let text = format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "imaplib scenario through frontd:\n{text}");

    // mbsync: 1,000 messages down, changes up, twice more, no duplicates.
    const MESSAGES: usize = 1000;
    let subjects: Vec<String> = (0..MESSAGES).map(|k| format!("message {k}")).collect();
    storage.deliver_many("user2@example.edu", &subjects);
    let (host, port) = front.imap.rsplit_once(':').unwrap();
    let local = root.join("local");
    std::fs::create_dir_all(&local).unwrap();
    let rc = root.join("mbsyncrc");
    std::fs::write(
        &rc,
        format!(
            "IMAPAccount test\nHost {host}\nPort {port}\nUser user2@example.edu\nPass pw-user2\nSSLType None\n\
             AuthMechs PLAIN LOGIN\n\nIMAPStore remote\nAccount test\n\n\
             MaildirStore local\nPath {l}/\nInbox {l}/INBOX\nSubFolders Verbatim\n\n\
             Channel sync\nFar :remote:\nNear :local:\nPatterns INBOX\nCreate Near\nSync All\nExpunge Both\nSyncState *\n",
            l = local.display()
        ),
    )
    .unwrap();
    mbsync(&rc);
    let inbox = local.join("INBOX");
    let ids = maildir_ids(&inbox);
    assert_eq!(ids.len(), MESSAGES);
    assert_eq!(ids.iter().collect::<std::collections::BTreeSet<_>>().len(), MESSAGES, "duplicates");
    let first = ["cur", "new"]
        .iter()
        .flat_map(|sub| std::fs::read_dir(inbox.join(sub)).unwrap().flatten())
        .next()
        .unwrap()
        .path();
    std::fs::remove_file(&first).unwrap();
    std::fs::write(
        inbox.join("new").join("1700000000.local.host"),
        "From: user2@example.edu\r\nSubject: written offline\r\nMessage-ID: <offline@example.edu>\r\n\r\nhi\r\n",
    )
    .unwrap();
    mbsync(&rc);
    mbsync(&rc);
    let ids = maildir_ids(&inbox);
    assert_eq!(ids.len(), MESSAGES, "one deleted, one added");
    assert!(ids.iter().any(|id| id == "<offline@example.edu>"));
    let server = imap_login(&front.imap, "user2@example.edu", "pw-user2");
    assert_eq!(server["exists"], MESSAGES, "the server holds the same count: {server}");
}

/// The PEM certificate `addr` presents.
fn server_certificate(addr: &str) -> String {
    let (host, port) = addr.rsplit_once(':').unwrap();
    let code = format!("import ssl; print(ssl.get_server_certificate(('{host}', {port})))");
    let out = Command::new("python3").args(["-c", &code]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn tls_is_required_for_passwords_and_certificates_reload_on_sighup() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let storage = Storage::start(root);
    let ldif = std::fs::read_to_string(fixture("users.ldif")).unwrap();
    std::fs::write(root.join("users.ldif"), &ldif).unwrap();
    let front = Front::start_tls(root, &storage, ldif_directory());

    // The storaged TLS checks, unchanged, against the front: no password before TLS,
    // STARTTLS/STLS and implicit TLS work, plaintext pipelined after STARTTLS is dropped.
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/storaged/tests/py/tls_client.py");
    let ca = root.join("cert.pem");
    let out = Command::new("python3")
        .arg(script)
        .args(["--imap", &front.imap, "--imaps", &front.imaps, "--pop3", &front.pop3, "--pop3s", &front.pop3s])
        .arg("--ca")
        .arg(&ca)
        .args(["--user", "alice@example.edu", "--password", "alice-pw"])
        .output()
        .unwrap();
    let text = format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "TLS checks through frontd:\n{text}");

    // A new certificate in place and SIGHUP: new connections get it.
    let before = server_certificate(&front.imaps);
    assert_eq!(before.trim(), std::fs::read_to_string(&ca).unwrap().trim());
    make_certificate(root);
    front.signal(libc::SIGHUP);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while server_certificate(&front.imaps) == before {
        assert!(std::time::Instant::now() < deadline, "certificate not reloaded");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(server_certificate(&front.imaps).trim(), std::fs::read_to_string(&ca).unwrap().trim());
}

#[tokio::test(flavor = "multi_thread")]
async fn deliveries_are_routed_by_mailhost_to_each_groups_leader() {
    use directory::{Directory, LdifDirectory};
    use frontd::delivery::Router;

    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let mut storage = Storage::start(root);
    std::fs::copy(fixture("users.ldif"), root.join("users.ldif")).unwrap();
    let directory = Directory::Ldif(std::sync::Arc::new(LdifDirectory::open(&root.join("users.ldif")).unwrap()));
    let cluster = std::sync::Arc::new(frontd::cluster::ClusterMap::new(&storage.group_sections()));
    let router = Router::new(directory, cluster, Some(storage.cluster_key()), Duration::from_secs(30));
    let front = Front::start(root, &storage, ldif_directory());
    let message = |subject: &str| format!("From: s@example.org\r\nSubject: {subject}\r\n\r\n.hello\r\n").into_bytes();
    let codes = |replies: &[String]| replies.iter().map(|r| r[..3].to_string()).collect::<Vec<_>>();

    let to: Vec<String> = [
        "alice@example.edu",
        "A.Smith@Example.EDU",
        "alice+lists@example.edu",
        "bob@example.edu",
        "nobody@example.edu",
        "carol@example.edu",
        "dave@example.edu",
        "*@example.edu",
    ]
    .map(str::to_string)
    .to_vec();
    let replies = router.deliver("s@example.org", &to, &[&message("routed")], Folder::Inbox).await;
    assert_eq!(codes(&replies), ["250", "250", "250", "250", "550", "450", "451", "550"], "{replies:#?}");
    // Three addresses of one mailbox: one copy; bob's on apollo.
    assert_eq!(subjects(&imap_login(&front.imap, "alice", "alice-pw")), ["routed"]);
    assert_eq!(subjects(&imap_login(&front.imap, "bob", "bob-pw")), ["routed"]);

    // bob's mailSizeMax refuses a big message for him only.
    let big = [message("big"), vec![b'x'; 150_000], b"\r\n".to_vec()].concat();
    let replies = router
        .deliver("s@example.org", &["bob@example.edu".into(), "alice@example.edu".into()], &[&big], Folder::Inbox)
        .await;
    assert_eq!(codes(&replies), ["552", "250"], "{replies:#?}");

    // hermes loses its leader: the router finds the new one.
    let leader = storage.leader_for("alice@example.edu");
    storage.kill(leader);
    let replies = router
        .deliver("s@example.org", &["a.smith@example.edu".into()], &[&message("after failover")], Folder::Inbox)
        .await;
    assert_eq!(codes(&replies), ["250"], "{replies:#?}");
    let alice = imap_login(&front.imap, "alice", "alice-pw");
    assert_eq!(subjects(&alice), ["after failover", "big", "routed"], "{alice}");
}

#[tokio::test(flavor = "multi_thread")]
async fn ldap_over_starttls_and_ldaps_with_bind_authentication() {
    use directory::{Directory, LdapConfig, LdapDirectory, Purpose};

    let tmp = tempfile::tempdir().unwrap();
    let slapd = Slapd::start_tls(tmp.path());
    let config = |url: &str, starttls: bool, bind_auth: bool| {
        let mut c = LdapConfig::new(url, "dc=example,dc=edu");
        c.starttls = starttls;
        c.ca_file = slapd.ca_file.clone();
        c.bind_auth = bind_auth;
        c.bind_dn = Some(LDAP_BIND_DN.into());
        c.bind_password = Some(LDAP_BIND_PASSWORD.into());
        c
    };
    let ldaps = slapd.ldaps_url.clone().unwrap();
    for (url, starttls) in [(slapd.url.as_str(), true), (ldaps.as_str(), false)] {
        for bind_auth in [false, true] {
            let d = Directory::Ldap(std::sync::Arc::new(LdapDirectory::new(config(url, starttls, bind_auth)).unwrap()));
            let bob = d.lookup("bob", Purpose::Login).await.unwrap().expect("bob over TLS");
            assert_eq!(bob.mail_host.as_deref(), Some("apollo"));
            assert!(d.verify_password(&bob, "bob-pw").await.unwrap(), "{url} bind_auth={bind_auth}");
            assert!(!d.verify_password(&bob, "alice-pw").await.unwrap(), "{url} bind_auth={bind_auth}");
            assert!(!d.verify_password(&bob, "").await.unwrap(), "an empty password is no password");
        }
    }
    // A server whose certificate we do not trust is unavailable, not "no such user".
    let mut untrusted = config(&ldaps, false, false);
    untrusted.ca_file = None;
    let d = LdapDirectory::new(untrusted).unwrap();
    assert!(matches!(d.lookup("bob", Purpose::Login).await, Err(directory::DirectoryError::Unavailable(_))));
}

/// An IMAP connection logged in as `user` through `server` (raw lines), or the refusal.
fn raw_login(server: &str, user: &str, password: &str) -> Result<std::net::TcpStream, String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(server).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let mut read_until = |s: &mut std::net::TcpStream, got: &mut Vec<u8>, what: &[&[u8]]| loop {
        if what.iter().any(|w| got.windows(w.len()).any(|x| x == *w)) {
            return;
        }
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    };
    read_until(&mut s, &mut got, &[b"\r\n"]);
    if got.starts_with(b"* BYE") {
        return Err(String::from_utf8_lossy(&got).into_owned());
    }
    s.write_all(format!("a LOGIN {user} {password}\r\n").as_bytes()).unwrap();
    read_until(&mut s, &mut got, &[b"a OK", b"a NO", b"a BAD"]);
    let text = String::from_utf8_lossy(&got).into_owned();
    if text.contains("a OK") {
        Ok(s)
    } else {
        Err(text)
    }
}

#[test]
fn sessions_are_capped_per_user_and_connections_per_address() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let storage = Storage::start(root);
    std::fs::copy(fixture("users.ldif"), root.join("users.ldif")).unwrap();
    let tune: Tune = Box::new(|c| {
        c.limits.sessions_per_user_max = 2;
        c.limits.connections_per_address_max = 4;
    });
    let front = Front::start_opts(
        root,
        &storage,
        ldif_directory(),
        FrontOptions { tune: Some(tune), ..FrontOptions::default() },
    );

    let first = raw_login(&front.imap, "alice", "alice-pw").expect("first session");
    let _second = raw_login(&front.imap, "alice@example.edu", "alice-pw").expect("second session");
    let third = raw_login(&front.imap, "alice", "alice-pw").expect_err("a third session is over the limit");
    assert!(third.contains("a NO [LIMIT]"), "{third}");
    let _bob = raw_login(&front.imap, "bob", "bob-pw").expect("other users are not affected");
    drop(first);
    // The freed slot is given back when frontd sees the session end.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let _again = loop {
        match raw_login(&front.imap, "alice", "alice-pw") {
            Ok(s) => break s,
            Err(e) => assert!(std::time::Instant::now() < deadline, "slot not freed: {e}"),
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // Alice twice and bob are connected from 127.0.0.1; a fourth connection fits, a fifth
    // is refused by the address limit before any login.
    let _bob2 = raw_login(&front.imap, "bob", "bob-pw").expect("fourth connection");
    let over = raw_login(&front.imap, "bob", "bob-pw").expect_err("over the address limit");
    assert!(over.starts_with("* BYE [UNAVAILABLE] too many connections from your address"), "{over}");
}

#[test]
fn a_front_started_before_its_storage_nodes_still_offers_their_capabilities() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let mut storage = Storage::start(root);
    for i in 0..3 {
        storage.kill(i);
    }
    std::fs::copy(fixture("users.ldif"), root.join("users.ldif")).unwrap();
    let front = Front::start(root, &storage, ldif_directory());
    // The nodes come back a moment after a client has connected.
    std::thread::sleep(Duration::from_millis(500));
    let mut raw = std::net::TcpStream::connect(&front.imap).unwrap();
    for i in 0..3 {
        storage.start_node(i);
    }
    use std::io::Read;
    raw.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut greeting = [0u8; 1024];
    let n = raw.read(&mut greeting).unwrap();
    let greeting = String::from_utf8_lossy(&greeting[..n]);
    assert!(greeting.contains(" IDLE ") && greeting.contains(" MOVE "), "the nodes' list, not a short one: {greeting}");
}

/// The first line a client at `source` reads from `server`.
fn first_line_from(source: &str, server: &str) -> String {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let stream = rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
        socket.connect(server.parse().unwrap()).await.unwrap().into_std().unwrap()
    });
    stream.set_nonblocking(false).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut line = String::new();
    let _ = BufReader::new(stream).read_line(&mut line);
    line
}

/// Hole: IP rules guarded port 25 only (a denied address was served on submission) and
/// were read only at start. Now every listener a rule names refuses the address, and a
/// changed file, or SIGHUP, applies new rules without a restart.
#[test]
fn ip_rules_guard_every_listener_and_reload_on_change_and_sighup() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let storage = Storage::start(root);
    std::fs::copy(fixture("users.ldif"), root.join("users.ldif")).unwrap();
    let tune: Tune = Box::new(|c| c.smtp.rules.push(rule("127.0.0.5", "deny", None, false)));
    let front =
        Front::start_opts(root, &storage, ldif_directory(), FrontOptions { tune: Some(tune), ..Default::default() });
    let listeners = [
        (&front.smtp, "554 "),
        (&front.submission, "554 "),
        (&front.imap, "* BYE"),
        (&front.pop3, "-ERR"),
        (&front.sieve, "BYE"),
    ];
    for (addr, refusal) in listeners {
        let line = first_line_from("127.0.0.5", addr);
        assert!(line.starts_with(refusal) && line.contains("denied"), "{addr}: {line:?}");
        let line = first_line_from("127.0.0.6", addr);
        assert!(!line.contains("denied") && !line.is_empty(), "{addr}: {line:?}");
    }

    // A rule added to the file for IMAP only applies within seconds, to IMAP only.
    let path = root.join("frontd.toml");
    let mut cfg = frontd::config::Config::load(&path).unwrap();
    let imap_only =
        frontd::config::RuleSection { listeners: Some(vec!["imap".into()]), ..rule("127.0.0.6", "deny", None, false) };
    cfg.smtp.rules.insert(0, imap_only);
    clusterkit::front::write(&path, &cfg).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !first_line_from("127.0.0.6", &front.imap).contains("denied") {
        assert!(std::time::Instant::now() < deadline, "the changed rules were not applied");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(first_line_from("127.0.0.6", &front.pop3).starts_with("+OK"));

    // The rule removed with the file's time kept: only SIGHUP makes it count.
    let stamp = std::fs::metadata(&path).unwrap().modified().unwrap();
    cfg.smtp.rules.remove(0);
    clusterkit::front::write(&path, &cfg).unwrap();
    std::fs::File::options().write(true).open(&path).unwrap().set_modified(stamp).unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    assert!(first_line_from("127.0.0.6", &front.imap).contains("denied"), "not reloaded without a change");
    front.signal(libc::SIGHUP);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while first_line_from("127.0.0.6", &front.imap).contains("denied") {
        assert!(std::time::Instant::now() < deadline, "SIGHUP did not reload the rules");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(first_line_from("127.0.0.5", &front.imap).contains("denied"), "the other rule stays");
}
