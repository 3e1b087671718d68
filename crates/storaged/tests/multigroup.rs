//! One storaged process hosts replicas of several groups: three processes serve two
//! mailhost groups ("hermes" and "zeus") over one Raft listener and one LMTP listener each.
//! Deliveries go to the right group, the groups elect and fail over independently, and each
//! group's replicas end up identical while never holding the other group's users.

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clusterkit::storage::{self, Listeners, NodeAddrs};
use support::{tree, Lmtp};

const GROUPS: [&str; 2] = ["hermes", "zeus"];

fn user(group: usize, k: usize) -> String {
    format!("{}{k}@example.edu", GROUPS[group])
}

/// The node processes; killed when the test ends, also on failure.
struct Nodes(Vec<Option<Child>>);

impl Drop for Nodes {
    fn drop(&mut self) {
        for c in self.0.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn spawn(root: &Path, i: usize) -> Child {
    let log = std::fs::File::create(root.join(format!("node{}.log", i + 1))).unwrap();
    Command::new(env!("CARGO_BIN_EXE_storaged"))
        .arg("--config")
        .arg(root.join(format!("node{}.toml", i + 1)))
        .env("RUST_LOG", "info,openraft=error")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

/// The reply to `RCPT TO:<to>` at `lmtp`.
fn rcpt_reply(lmtp: &str, to: &str) -> String {
    let Ok(s) = std::net::TcpStream::connect(lmtp) else { return String::new() };
    drop(s);
    let mut c = Lmtp::connect(lmtp);
    c.cmd("LHLO probe");
    c.cmd("MAIL FROM:<probe@example.org>");
    c.cmd(&format!("RCPT TO:<{to}>"))
}

fn deliver(lmtp: &str, to: &str, id: &str) {
    let mut c = Lmtp::connect(lmtp);
    assert!(c.cmd("LHLO test").starts_with("250"));
    assert!(c.cmd("MAIL FROM:<s@example.org>").starts_with("250"));
    let r = c.cmd(&format!("RCPT TO:<{to}>"));
    assert!(r.starts_with("250"), "{to}: {r}");
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(format!("Message-ID: <{id}>\r\nSubject: {id}\r\n\r\nhello\r\n.\r\n").as_bytes());
    assert!(c.reply().starts_with("250"));
}

/// Node index leading `group` (its LMTP accepts the group's users), waiting if needed.
fn leader_of(lmtp: &[String], up: &[usize], group: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(i) = up.iter().find(|i| rcpt_reply(&lmtp[**i], &user(group, 0)).starts_with("250")) {
            return *i;
        }
        assert!(Instant::now() < deadline, "no leader for {}", GROUPS[group]);
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn converged(root: &Path, nodes: &[usize], group: &str) -> std::collections::BTreeMap<String, Vec<u8>> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let trees: Vec<_> =
            nodes.iter().map(|i| tree(&root.join(format!("data{}", i + 1)).join(group).join("mail"))).collect();
        if trees.windows(2).all(|w| w[0] == w[1]) {
            return trees.into_iter().next().unwrap();
        }
        assert!(Instant::now() < deadline, "{group} replicas did not converge");
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn one_process_hosts_replicas_of_two_groups() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let nodes = NodeAddrs::cluster_on_free_ports(3, Listeners::default());
    let lmtp: Vec<String> = nodes.iter().map(|n| n.lmtp.clone()).collect();
    let users: String = (0..4).flat_map(|k| (0..2).map(move |g| format!("{} {}\n", user(g, k), GROUPS[g]))).collect();
    std::fs::write(root.join("users.txt"), users).unwrap();
    let groups: Vec<_> = GROUPS.iter().map(|g| storage::group(g, &nodes)).collect();
    for node in &nodes {
        let mut cfg = storage::node_config(node, &groups);
        cfg.cluster_key = Some(support::CLUSTER_SECRET.into());
        cfg.users_file = Some("users.txt".into());
        storage::write(&root.join(storage::file_name(node.id)), &cfg).unwrap();
    }
    let mut nodes = Nodes((0..3).map(|i| Some(spawn(root, i))).collect());
    let children = &mut nodes.0;
    let all = [0, 1, 2];

    for (g, name) in GROUPS.iter().enumerate() {
        let l = leader_of(&lmtp, &all, g);
        for k in 0..20 {
            deliver(&lmtp[l], &user(g, k % 4), &format!("{name}-{k}@test"));
        }
        // A node that does not lead this group names the leader instead of accepting.
        if let Some(f) = all.iter().find(|i| **i != l && !rcpt_reply(&lmtp[**i], &user(g, 0)).starts_with("250")) {
            let r = rcpt_reply(&lmtp[*f], &user(g, 0));
            assert!(r.starts_with("451") && r.contains(&lmtp[l]), "{r}");
        }
    }

    // The leader of zeus dies; both groups go on (a process may have led both).
    let zeus_leader = leader_of(&lmtp, &all, 1);
    if let Some(mut c) = children[zeus_leader].take() {
        let _ = c.kill();
        let _ = c.wait();
    }
    let up: Vec<usize> = all.iter().copied().filter(|i| *i != zeus_leader).collect();
    for (g, name) in GROUPS.iter().enumerate() {
        let l = leader_of(&lmtp, &up, g);
        for k in 20..30 {
            deliver(&lmtp[l], &user(g, k % 4), &format!("{name}-{k}@test"));
        }
    }
    children[zeus_leader] = Some(spawn(root, zeus_leader));

    for (g, name) in GROUPS.iter().enumerate() {
        let t = converged(root, &all, name);
        let other = GROUPS[1 - g];
        for k in 0..4 {
            let ids = support::message_ids(&t, &user(g, k));
            assert!(!ids.is_empty() && ids.values().all(|n| *n == 1), "{name}/{}: {ids:?}", user(g, k));
            assert!(support::message_ids(&t, &user(1 - g, k)).is_empty(), "{other} user in {name}");
        }
        let total: usize = (0..4).map(|k| support::message_ids(&t, &user(g, k)).len()).sum();
        assert_eq!(total, 30, "{name} holds every message acknowledged for it");
    }
}
