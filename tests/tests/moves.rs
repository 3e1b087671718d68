//! `mailctl move`: a user moves between mailhosts while mail arrives over SMTP and an IMAP
//! client (Python's imaplib, through frontd) keeps changing flags. Afterwards every
//! acknowledged message and flag change is on the target exactly once, UIDVALIDITY and
//! UIDs are unchanged, a QRESYNC client that synced before the move is told only of real
//! changes, and with `--wait` the source copy is gone after the grace period. Also: `mailctl group
//! remove-node` / `add-node` replace a dead node while the group keeps serving.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

fn move_client(args: &[String]) -> Value {
    python_json("move_client.py", args)
}

/// An IMAP or POP3 session kept open across a move, one line at a time.
struct LineSession {
    r: std::io::BufReader<std::net::TcpStream>,
    w: std::net::TcpStream,
}

impl LineSession {
    fn connect(addr: &str) -> Self {
        let s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut c = Self { r: std::io::BufReader::new(s.try_clone().unwrap()), w: s };
        c.lines_until(&["* OK", "+OK"]);
        c
    }

    /// Lines up to and including the first that starts with one of `ends` (or the end of
    /// the connection).
    fn lines_until(&mut self, ends: &[&str]) -> String {
        use std::io::BufRead;
        let mut all = String::new();
        for _ in 0..10_000 {
            let mut line = String::new();
            if self.r.read_line(&mut line).unwrap_or(0) == 0 {
                break;
            }
            all.push_str(&line);
            if ends.iter().any(|e| line.starts_with(e)) {
                break;
            }
        }
        all
    }

    fn exchange(&mut self, command: &str, ends: &[&str]) -> String {
        use std::io::Write;
        // The server may already have closed the connection; the reply says why.
        let _ = self.w.write_all(format!("{command}\r\n").as_bytes());
        self.lines_until(ends)
    }
}

fn queue_is_empty(root: &Path) -> bool {
    let (ok, out) = mailctl(root, &["queue", "list"]);
    ok && out.contains("queue is empty")
}

#[test]
fn a_user_moves_online_keeping_uids_flags_and_modseqs_and_losing_nothing() {
    // The acceptance size; MOVE_MESSAGES and MOVE_BODY_BYTES change it for measurements.
    let env = |name: &str, default: usize| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let (seeded, body_bytes) = (env("MOVE_MESSAGES", 5000), env("MOVE_BODY_BYTES", 0));
    let tmp = tempfile::tempdir().unwrap();
    // MOVE_KEEP=1 keeps the logs of a measurement run.
    let root = if std::env::var_os("MOVE_KEEP").is_some() { tmp.keep() } else { tmp.path().to_path_buf() };
    let root = root.as_path();
    let storage = Storage::start(root);
    std::fs::copy(fixture("users.ldif"), root.join("users.ldif")).unwrap();
    let options = FrontOptions { queue: Some(fast_queue(30)), ..FrontOptions::default() };
    let front = Front::start_opts(root, &storage, ldif_directory(), options);
    wait_listening(&front.smtp, "frontd SMTP");
    let subjects: Vec<String> = (0..seeded).map(|k| format!("seed {k}")).collect();
    storage.deliver_sized("alice@example.edu", &subjects, body_bytes);
    let login = ["--server", front.imap.as_str(), "--user", "alice", "--password", "alice-pw"];
    let with_login = |cmd: &str, extra: &[&str]| -> Vec<String> {
        std::iter::once(cmd).chain(login).chain(extra.iter().copied()).map(str::to_string).collect()
    };
    move_client(&with_login("prepare", &[]));
    // Sieve scripts move too: one active, one not.
    let sieve_script = "require \"fileinto\";\r\nif header :contains \"subject\" \"moved\" { fileinto \"Moved\"; }\r\n";
    let put = |name: &str, text: &str| storaged::mailstore::MailOp::PutScript {
        user: "alice@example.edu".into(),
        name: name.into(),
        script: text.into(),
    };
    storage.commit("hermes", put("main", sieve_script));
    storage.commit("hermes", put("spare", "keep;"));
    let activate =
        storaged::mailstore::MailOp::SetActiveScript { user: "alice@example.edu".into(), name: Some("main".into()) };
    storage.commit("hermes", activate);
    let before = move_client(&with_login("state", &[]));
    let inbox_uv = before["INBOX"]["uidvalidity"].as_u64().unwrap();
    let inbox_modseq = before["INBOX"]["highestmodseq"].as_u64().unwrap();
    assert!(inbox_modseq > 0, "CONDSTORE is on: {}", before["INBOX"]);

    // The user keeps working: flag changes over IMAP, deliveries over SMTP.
    let stop = root.join("stop");
    let out = root.join("workload.json");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("py/move_client.py");
    let mut workload = Command::new("python3")
        .arg(&script)
        .args(with_login("workload", &["--stop", stop.to_str().unwrap(), "--out", out.to_str().unwrap()]))
        .spawn()
        .unwrap();
    let smtp = front.smtp.clone();
    let deliveries = std::thread::spawn(move || {
        let mut acked = Vec::new();
        for k in 0..25 {
            let subject = format!("during {k}");
            if mx_send(&smtp, "alice@example.edu", &subject) {
                acked.push(subject);
            }
            std::thread::sleep(Duration::from_millis(150));
        }
        acked
    });
    std::thread::sleep(Duration::from_millis(500));

    // The history the source holds when the move starts (recording follows a login by a
    // moment): every record of it must reach each target replica.
    let source_history = || {
        let mut all = Vec::new();
        for i in 1..=3 {
            let home = root.join(format!("data{i}/hermes/mail/users/alice@example.edu"));
            all.extend(storaged::mailstore::logins::load(&home).unwrap_or_default());
        }
        all
    };
    wait_for("the logins so far recorded on hermes", Duration::from_secs(10), || !source_history().is_empty());
    let before_move = source_history();
    let (ok, report) = mailctl(root, &["move", "alice@example.edu", "apollo", "--grace-s", "2", "--wait"]);
    assert!(ok, "mailctl move: {report}");
    eprintln!("{report}");
    assert!(report.contains("freeze window") && report.contains("source copy deleted"), "{report}");

    let acked_mail = deliveries.join().unwrap();
    std::fs::write(&stop, b"").unwrap();
    assert!(workload.wait().unwrap().success());
    let flags: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    wait_for("the queue to drain", Duration::from_secs(60), || queue_is_empty(root));

    // The directory names apollo; the source copy is gone from every hermes replica.
    assert!(std::fs::read_to_string(root.join("users.ldif")).unwrap().contains("mailHost: apollo"));
    for i in 1..=3 {
        let src = root.join(format!("data{i}/hermes/mail/users/alice@example.edu"));
        assert!(!src.exists(), "{} still exists after the grace period", src.display());
    }
    let after = move_client(&with_login("state", &[]));
    for i in 1..=3 {
        let home = root.join(format!("data{i}/apollo/mail/users/alice@example.edu"));
        assert_eq!(std::fs::read_to_string(home.join("sieve/main.sieve")).unwrap(), sieve_script, "replica {i}");
        assert_eq!(std::fs::read_to_string(home.join("sieve/spare.sieve")).unwrap(), "keep;");
        assert_eq!(std::fs::read_link(home.join(".dovecot.sieve")).unwrap(), Path::new("sieve/main.sieve"));
        let history = storaged::mailstore::logins::load(&home).unwrap();
        let missing: Vec<_> = before_move.iter().filter(|r| !history.contains(r)).collect();
        assert!(missing.is_empty(), "replica {i}: the logins before the move moved too; missing {missing:?}");
    }

    // METADATA entries moved, the server's and a folder's.
    assert_eq!(after["server metadata"], before["server metadata"]);
    assert!(before["server metadata"].to_string().contains("/shared/vendor/test/theme"), "{before}");
    assert!(after["Saved"]["metadata"].to_string().contains("kept for later"), "{after}");
    // Every mailbox kept its UIDVALIDITY and every message its UID.
    for (name, b) in before.as_object().unwrap().iter().filter(|(n, _)| *n != "server metadata") {
        let a = &after[name];
        assert_eq!(a["metadata"], b["metadata"], "{name}");
        assert_eq!(a["uidvalidity"], b["uidvalidity"], "{name}");
        let uids = |v: &Value| {
            v["messages"].as_array().unwrap().iter().map(|m| m[0].as_u64().unwrap()).collect::<BTreeSet<_>>()
        };
        assert_eq!(uids(a).intersection(&uids(b)).count(), uids(b).len(), "{name}: UIDs lost or renumbered");
        if name != "INBOX" {
            assert_eq!(a["messages"], b["messages"], "{name}: untouched folder, same flags and MODSEQs");
        }
        // EMAILID (RFC 8474 §5.1: it never changes) and the save date (RFC 8514) move too.
        let ids = |v: &Value| -> BTreeMap<u64, (Value, Value)> {
            let messages = v["messages"].as_array().unwrap().iter();
            messages.map(|m| (m[0].as_u64().unwrap(), (m[3].clone(), m[4].clone()))).collect()
        };
        let (ids_before, ids_after) = (ids(b), ids(a));
        for (uid, id) in &ids_before {
            assert!(id.0.is_string() && id.1.is_string(), "{name} {uid}: an EMAILID and a SAVEDATE: {id:?}");
            assert_eq!(ids_after.get(uid), Some(id), "{name} {uid}: the EMAILID and SAVEDATE it had");
        }
    }
    // Every acknowledged message exactly once.
    let inbox_subjects: Vec<String> =
        after["INBOX"]["subjects"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect();
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for s in &inbox_subjects {
        *count.entry(s.as_str()).or_default() += 1;
    }
    assert!(
        count.values().all(|n| *n == 1),
        "duplicates: {:?}",
        count.iter().filter(|(_, n)| **n > 1).collect::<Vec<_>>()
    );
    for s in &acked_mail {
        assert_eq!(count.get(s.as_str()), Some(&1), "acknowledged {s} lost");
    }
    eprintln!("{} of 25 deliveries acknowledged during the move", acked_mail.len());
    // Every acknowledged flag change is there.
    let kw_of: BTreeMap<u64, Vec<String>> = after["INBOX"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (m[0].as_u64().unwrap(), m[1].as_array().unwrap().iter().map(|f| f.as_str().unwrap().to_string()).collect())
        })
        .collect();
    let acked_flags = flags["acked"].as_array().unwrap();
    assert!(!acked_flags.is_empty(), "the IMAP client changed flags during the move");
    for change in acked_flags {
        let (uid, kw) = (change[0].as_u64().unwrap(), change[1].as_str().unwrap());
        assert!(kw_of.get(&uid).is_some_and(|k| k.iter().any(|f| f == kw)), "acknowledged {kw} on {uid} lost");
    }
    eprintln!("{} flag changes acknowledged during the move", acked_flags.len());

    // QRESYNC from before the workload: only messages that really changed are reported.
    let q = move_client(&with_login(
        "qresync",
        &["--uidvalidity", &inbox_uv.to_string(), "--modseq", &inbox_modseq.to_string()],
    ));
    let touched: BTreeSet<u64> = flags["tried"].as_array().unwrap().iter().map(|u| u.as_u64().unwrap()).collect();
    let old_uids: BTreeSet<u64> =
        before["INBOX"]["messages"].as_array().unwrap().iter().map(|m| m[0].as_u64().unwrap()).collect();
    let spurious: Vec<u64> = q["changed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u.as_u64().unwrap())
        .filter(|u| old_uids.contains(u) && !touched.contains(u))
        .collect();
    assert!(spurious.is_empty(), "QRESYNC reports unchanged messages as changed: {spurious:?}");
    assert!(q["vanished"].as_array().unwrap().is_empty(), "nothing was expunged: {q}");
}

#[test]
fn a_dead_node_is_replaced_by_remove_node_and_add_node_while_the_group_serves() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    // Frequent snapshots and a short log: the new node must catch up from a snapshot.
    let mut storage = Storage::start_tuned(root, |c| {
        c.raft.snapshot_every = 40;
        c.raft.keep_logs = 5;
    });
    std::fs::copy(fixture("users.ldif"), root.join("users.ldif")).unwrap();
    let _front = Front::start_opts(
        root,
        &storage,
        ldif_directory(),
        FrontOptions { queue: Some(QueueSection::default()), ..FrontOptions::default() },
    );
    let batch = |storage: &Storage, from: usize, n: usize| {
        let subjects: Vec<String> = (from..from + n).map(|k| format!("m{k}")).collect();
        storage.deliver_many("alice@example.edu", &subjects);
    };
    // More entries than one purge batch (256): the log's head is gone by the time node 4 asks.
    batch(&storage, 0, 300);

    // With every node up, removing any one would leave no spare voter, and the leader
    // answers: both refused unless forced.
    let leader = storage.leader_for("alice@example.edu") + 1;
    let follower = (1..=3).find(|n| *n != leader).unwrap();
    let (ok, out) = mailctl(root, &["group", "remove-node", "hermes", &leader.to_string()]);
    assert!(!ok && out.contains("leads hermes and answers"), "removing the leader: {out}");
    let (ok, out) = mailctl(root, &["group", "remove-node", "hermes", &follower.to_string()]);
    assert!(!ok && out.contains("one more failure"), "removing a healthy follower: {out}");
    let (ok, status) = mailctl(root, &["status"]);
    assert!(ok && status.contains("voters [1, 2, 3]"), "nothing was removed: {status}");

    // Node 3 dies for good; the group goes on with two of three, then drops it.
    // Each membership change runs while mail arrives (every message is counted below).
    storage.kill(2);
    batch(&storage, 300, 50);
    let (ok, out) = std::thread::scope(|s| {
        let deliveries = s.spawn(|| batch(&storage, 350, 50));
        let removed = mailctl(root, &["group", "remove-node", "hermes", "3"]);
        deliveries.join().unwrap();
        removed
    });
    assert!(ok, "remove-node: {out}");

    // A fresh node 4 joins: learner, snapshot, voter.
    let fresh = storage.add_node(&GROUPS);
    storage.start_node(fresh);
    let raft = storage.raft[fresh].clone();
    let (ok, out) = std::thread::scope(|s| {
        let deliveries = s.spawn(|| batch(&storage, 400, 50));
        let added = mailctl(root, &["group", "add-node", "hermes", "4", "--raft", &raft]);
        deliveries.join().unwrap();
        added
    });
    assert!(ok, "add-node: {out}");
    let (ok, status) = mailctl(root, &["status"]);
    assert!(ok && status.contains("voters [1, 2, 4]"), "{status}");
    let log = std::fs::read_to_string(root.join("node4.log")).unwrap();
    assert!(log.contains("snapshot installed"), "node 4 caught up from a snapshot: {status}\n{log}");

    // Node 4 holds every message and votes: with node 2 gone too, 1 and 4 are a quorum.
    let alice = |i: usize| root.join(format!("data{i}/hermes/mail/users/alice@example.edu/Maildir"));
    let files = |i: usize| {
        ["new", "cur"].iter().flat_map(|d| std::fs::read_dir(alice(i).join(d)).into_iter().flatten().flatten()).count()
    };
    wait_for("node 4 to hold all 450 messages", Duration::from_secs(60), || files(4) == 450);
    storage.kill(1);
    batch(&storage, 450, 50);
    wait_for("node 4 to hold all 500 messages", Duration::from_secs(60), || files(4) == 500);
    assert_eq!(files(1), 500);
}

/// Message files of `user` on mailhost `group`, on the replica with the most.
fn files_on(root: &Path, group: &str, user: &str) -> usize {
    (1..=3)
        .map(|i| {
            let maildir = root.join(format!("data{i}/{group}/mail/users/{user}/Maildir"));
            ["new", "cur"]
                .iter()
                .flat_map(|d| std::fs::read_dir(maildir.join(d)).into_iter().flatten().flatten())
                .count()
        })
        .max()
        .unwrap_or(0)
}

/// Start `mailctl move` and kill the target group's leader, then the mover, mid-copy.
fn interrupted_move(root: &Path, storage: &mut Storage, user: &str, target: &str, target_user: &str) {
    // The mover's report, for a failure message (the copy stalling here has been seen).
    let mover_log = root.join(format!("mover-{target}.log"));
    let mut mover = Command::new(env!("CARGO_BIN_EXE_sys-mailctl"))
        .args(["move", user, target, "--grace-s", "0", "--config"])
        .arg(root.join("frontd.toml"))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&mover_log).unwrap())
        .spawn()
        .unwrap();
    wait_for("the copy to start", Duration::from_secs(60), || files_on(root, target, user) >= 200);
    let leader = storage.leader_for(target_user);
    storage.kill(leader);
    // The copy going on under a new leader: one batch more than the dead leader had is
    // enough (waiting for more lets a fast machine finish the whole move meanwhile).
    let copied = files_on(root, target, user);
    let deadline = Instant::now() + Duration::from_secs(180);
    while files_on(root, target, user) < copied + 100 {
        let exited = mover.try_wait().unwrap();
        if exited.is_some() || Instant::now() > deadline {
            let log = std::fs::read_to_string(&mover_log).unwrap_or_default();
            panic!(
                "the copy did not go on under a new leader ({} of {} files; mover {exited:?}):\n{log}",
                files_on(root, target, user),
                copied + 100
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(mover.try_wait().unwrap().is_none(), "the mover finished before it could be interrupted");
    mover.kill().unwrap();
    mover.wait().unwrap();
    storage.start_node(leader);
}

#[test]
fn an_interrupted_move_resumes_or_rolls_back_and_the_user_is_never_split() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let mut storage = Storage::start(root);
    std::fs::copy(fixture("users.ldif"), root.join("users.ldif")).unwrap();
    let front = Front::start_opts(
        root,
        &storage,
        ldif_directory(),
        FrontOptions { queue: Some(QueueSection::default()), ..FrontOptions::default() },
    );
    // Enough that the copy is still running when the test has seen it start and killed a
    // leader, however the machine schedules it (batches of 256 go at several per second).
    let seeded = 3000;
    let subjects: Vec<String> = (0..seeded).map(|k| format!("seed {k}")).collect();
    storage.deliver_many("alice@example.edu", &subjects);
    let login = ["--server", front.imap.as_str(), "--user", "alice", "--password", "alice-pw"];
    let state = || {
        let args: Vec<String> = std::iter::once("state").chain(login).map(str::to_string).collect();
        move_client(&args)
    };
    let before = state();

    // Interrupted hermes → apollo, then resumed: the move completes, nothing lost or doubled.
    interrupted_move(root, &mut storage, "alice@example.edu", "apollo", "bob@example.edu");
    let ldif = || std::fs::read_to_string(root.join("users.ldif")).unwrap();
    assert!(ldif().contains("mailHost: hermes"), "not flipped before the final step");
    let (ok, out) = mailctl(root, &["move", "alice@example.edu", "apollo", "--grace-s", "0"]);
    assert!(ok, "resume: {out}");
    assert!(
        ldif().contains("uid: alice") && ldif().matches("mailHost: apollo").count() == 2,
        "alice (and bob) on apollo"
    );
    let after = state();
    assert_eq!(after["INBOX"]["uidvalidity"], before["INBOX"]["uidvalidity"]);
    assert_eq!(
        after["INBOX"]["messages"], before["INBOX"]["messages"],
        "every message once, same UIDs, flags, MODSEQs"
    );
    wait_for("the source copy to go", Duration::from_secs(30), || files_on(root, "hermes", "alice@example.edu") == 0);

    // Interrupted apollo → hermes, then rolled back: alice is whole on apollo, hermes empty.
    interrupted_move(root, &mut storage, "alice@example.edu", "hermes", "alice@example.edu");
    let (ok, out) = mailctl(root, &["move", "--rollback", "alice@example.edu", "hermes"]);
    assert!(ok, "rollback: {out}");
    wait_for("the partial copy to go", Duration::from_secs(30), || files_on(root, "hermes", "alice@example.edu") == 0);
    let rolled = state();
    assert_eq!(rolled["INBOX"]["messages"], before["INBOX"]["messages"], "whole on the source after a rollback");
    // And it takes mail again (the freeze, if the mover got that far, is lifted).
    assert!(mx_send(&front.smtp, "alice@example.edu", "after rollback"));
    wait_for("the new message", Duration::from_secs(30), || {
        inbox_subjects(&front, "alice", "alice-pw").iter().any(|s| s == "after rollback")
    });
}

#[test]
fn a_new_mailhost_is_created_at_runtime_and_survives_restarts() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let mut storage = Storage::start(root);
    std::fs::copy(fixture("users.ldif"), root.join("users.ldif")).unwrap();
    // The front already routes zeus (dave's mailHost) to the three nodes, which lack it.
    let zeus = storage.group_section("zeus");
    let tune: Tune = Box::new(move |c| c.groups.insert(0, zeus.clone()));
    let options = FrontOptions { queue: Some(QueueSection::default()), tune: Some(tune), ..FrontOptions::default() };
    let front = Front::start_opts(root, &storage, ldif_directory(), options);
    wait_listening(&front.smtp, "frontd SMTP");
    let members: Vec<String> = (0..3).map(|i| format!("{},{},{}", i + 1, storage.raft[i], storage.lmtp[i])).collect();
    let mut args = vec!["group", "add", "zeus"];
    for m in &members {
        args.extend(["--member", m.as_str()]);
    }
    let (ok, out) = mailctl(root, &args);
    assert!(ok && out.contains("group zeus created"), "{out}");
    let (ok, out) = mailctl(root, &args);
    assert!(ok, "adding it again changes nothing: {out}");

    assert!(mx_send(&front.smtp, "dave@example.edu", "hello zeus"));
    wait_for("dave's mail", Duration::from_secs(30), || {
        inbox_subjects(&front, "dave", "dave-pw").contains(&"hello zeus".to_string())
    });
    // Every node restarts: zeus comes back with them, and its mail.
    for i in 0..3 {
        storage.kill(i);
    }
    for i in 0..3 {
        storage.start_node(i);
    }
    wait_for("zeus to take mail again", Duration::from_secs(60), || {
        mx_send(&front.smtp, "dave@example.edu", "after restart")
    });
    wait_for("both messages", Duration::from_secs(60), || {
        let s = inbox_subjects(&front, "dave", "dave-pw");
        s.contains(&"hello zeus".to_string()) && s.contains(&"after restart".to_string())
    });
    let (ok, status) = mailctl(root, &["status"]);
    assert!(ok && status.contains("group zeus: leader node "), "{status}");
}

#[test]
fn with_an_ldap_directory_the_move_flips_mail_host_on_the_ldap_server() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let slapd = Slapd::start(root);
    let storage = Storage::start(root);
    std::fs::write(root.join("ldap.pw"), format!("{LDAP_BIND_PASSWORD}\n")).unwrap();
    std::fs::write(root.join("admin.pw"), "admin-pw\n").unwrap();
    let ldap = LdapSection {
        bind_dn: Some(LDAP_BIND_DN.into()),
        bind_password_file: Some("ldap.pw".into()),
        cache_ttl_s: 120,
        timeout_ms: 2000,
        ..LdapSection::new(slapd.url.clone(), "dc=example,dc=edu")
    };
    let directory = DirectorySection { ldif: None, ldap: Some(ldap) };
    let front = Front::start_opts(root, &storage, directory, FrontOptions::default());
    let subjects: Vec<String> = (0..30).map(|k| format!("ldap {k}")).collect();
    storage.deliver_many("alice@example.edu", &subjects);
    let mail_host = || {
        let out = Command::new("ldapsearch")
            .args(["-x", "-LLL", "-H", &slapd.url, "-b", "dc=example,dc=edu", "(uid=alice)", "mailHost"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).lines().find_map(|l| l.strip_prefix("mailHost: ").map(str::to_string))
    };
    assert_eq!(mail_host().as_deref(), Some("hermes"));
    // Sessions open through the front before the move.
    let mut imap = LineSession::connect(&front.imap);
    assert!(imap.exchange("a LOGIN alice alice-pw", &["a "]).contains("a OK"));
    let mut pop3 = LineSession::connect(&front.pop3);
    pop3.exchange("USER alice", &["+OK", "-ERR"]);
    assert!(pop3.exchange("PASS alice-pw", &["+OK", "-ERR"]).starts_with("+OK"));

    let (ok, plan) = mailctl(root, &["move", "--plan"]);
    assert!(ok && plan.contains("hermes:") && plan.contains("apollo:"), "{plan}");

    // The front's search identity may not write: the move stops frozen, with a clear error
    // naming the way out, and nothing is lost or flipped.
    let (ok, out) = mailctl(root, &["move", "alice", "apollo", "--grace-s", "1"]);
    assert!(!ok && out.contains("frozen") && out.contains("mailHost"), "{out}");
    assert_eq!(mail_host().as_deref(), Some("hermes"));

    // Run again with an identity that may write: the move finishes and the flip is in LDAP.
    let admin_pw = root.join("admin.pw");
    let args = ["move", "alice", "apollo", "--grace-s", "1", "--wait", "--ldap-admin-dn", "cn=admin,dc=example,dc=edu"];
    let (ok, report) =
        mailctl(root, &[&args[..], &["--ldap-admin-password-file", admin_pw.to_str().unwrap()]].concat());
    assert!(ok && report.contains("source copy deleted"), "{report}");
    assert_eq!(mail_host().as_deref(), Some("apollo"));
    // The sessions opened before the flip are told to reconnect.
    let bye = imap.exchange("b NOOP", &["b "]);
    assert!(bye.contains("* BYE [UNAVAILABLE] your mailbox moved"), "{bye}");
    let err = pop3.exchange("STAT", &["+OK", "-ERR"]);
    assert!(err.starts_with("-ERR [SYS/TEMP] your mailbox moved"), "{err}");
    // The front's directory cache (120 s) still says hermes: hermes refuses naming apollo,
    // and the front follows at once, for logins and for deliveries.
    assert!(mx_send(&front.smtp, "alice@example.edu", "right after the move"));
    let got = inbox_subjects(&front, "alice", "alice-pw");
    assert!(subjects.iter().all(|s| got.contains(s)), "{got:?}");
    assert!(got.contains(&"right after the move".to_string()), "{got:?}");
    assert!(front.log_text().contains("following it"), "the login followed the move");
    assert!(!root.join("data1/hermes/mail/users/alice@example.edu").exists());
}
