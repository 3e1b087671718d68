//! Operations: a real Prometheus (Debian's `prometheus`) scrapes a whole system — three
//! storage nodes and a front whose `/metrics` needs a bearer token — while a workload runs,
//! and the counters its HTTP API returns equal what the workload did (SMTP messages and
//! LMTP recipients by fate, logins by result, IMAP commands by name, one leader per group).
//! `promtool check metrics` passes on every daemon's output and `promtool check rules` on
//! the alert rules in `deploy/`. The front logs JSON: every line parses, each message has
//! its line with its Message-ID, and no password appears in any log.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::*;

const TOKEN: &str = "scrape-secret-7f3a";

/// `GET path` from `addr` with an optional bearer token: the status line and the body.
fn http_get(addr: &str, path: &str, token: Option<&str>) -> (String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let body =
        if head.to_ascii_lowercase().contains("transfer-encoding: chunked") { dechunk(body) } else { body.into() };
    (head.lines().next().unwrap_or_default().to_string(), body)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        body = &rest[n + 2..];
    }
    out
}

/// A Prometheus server on loopback scraping `front` (with the token) and `storage` every
/// second; killed with the test.
struct Prometheus {
    addr: String,
    child: std::process::Child,
}

impl Prometheus {
    fn start(root: &Path, front: &str, storage: &[String]) -> Self {
        let dir = root.join("prometheus");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("token"), TOKEN).unwrap();
        let targets = |addrs: &[String]| addrs.iter().map(|a| format!("'{a}'")).collect::<Vec<_>>().join(", ");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\nscrape_configs:\n\
             - job_name: front\n  authorization:\n    credentials_file: {}\n  static_configs:\n  - targets: [{}]\n\
             - job_name: storage\n  static_configs:\n  - targets: [{}]\n",
            dir.join("token").display(),
            targets(&[front.to_string()]),
            targets(storage),
        );
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        let addr = free_addr();
        let mut cmd = Command::new("prometheus");
        cmd.arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address={addr}"));
        let child = spawn(cmd, &root.join("prometheus.log"));
        wait_for("Prometheus ready", Duration::from_secs(60), || {
            TcpStream::connect(&addr).is_ok() && http_get(&addr, "/-/ready", None).0.contains("200")
        });
        Self { addr, child }
    }

    /// The value of an instant `query` that yields one number (none: no series yet).
    fn value(&self, query: &str) -> Option<f64> {
        let path = format!("/api/v1/query?query={}", urlencode(query));
        let (status, body) = http_get(&self.addr, &path, None);
        assert!(status.contains("200"), "{query}: {status} {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let result = v["data"]["result"].as_array()?.first()?.clone();
        result["value"][1].as_str()?.parse().ok()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `promtool ARGS` with `stdin`; its exit status and output.
fn promtool(args: &[&str], stdin: &str) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

fn deploy_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("deploy")
}

#[test]
fn prometheus_counts_what_the_workload_did_and_promtool_accepts_metrics_and_rules() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let storage = Storage::start(root);
    std::fs::copy(fixture("users.ldif"), root.join("users.ldif")).unwrap();
    std::fs::write(root.join("metrics.token"), format!("{TOKEN}\n")).unwrap();
    let front_metrics = free_addr();
    let listen = front_metrics.clone();
    let tune: Tune = Box::new(move |cfg| {
        cfg.metrics.listen = Some(listen.clone());
        cfg.metrics.token_file = Some("metrics.token".into());
    });
    let options = FrontOptions { tune: Some(tune), json_logs: true, ..FrontOptions::default() };
    let front = Front::start_opts(root, &storage, ldif_directory(), options);
    wait_listening(&front_metrics, "the front's /metrics");

    // The token guards the front's metrics.
    assert!(http_get(&front_metrics, "/metrics", None).0.contains("401"), "no token, no metrics");
    assert!(http_get(&front_metrics, "/metrics", Some(TOKEN)).0.contains("200"));

    // The workload: 3 messages to alice and 2 to bob over SMTP; 3 good IMAP logins, 2 bad.
    for (to, n) in [("alice@example.edu", 3), ("bob@example.edu", 2)] {
        for k in 0..n {
            let (subject, id) = (format!("metrics {k}"), format!("<metrics.{k}.{to}>"));
            let sent = smtplib(&[
                "--server",
                &front.smtp,
                "--from",
                "ann@example.org",
                "--to",
                to,
                "--subject",
                &subject,
                "--message-id",
                &id,
            ]);
            assert_eq!(sent["ok"], true, "message {k} to {to}: {sent}");
        }
    }
    for (user, password) in [("alice", "alice-pw"), ("alice", "alice-pw"), ("bob", "bob-pw")] {
        let v = imap_login(&front.imap, user, password);
        assert_eq!(v["ok"], true, "{user}: {v}");
    }
    for _ in 0..2 {
        let v = imap_login(&front.imap, "alice", "not-alices-password");
        assert_eq!(v["ok"], false, "{v}");
    }

    let prometheus = Prometheus::start(root, &front_metrics, &storage.metrics);
    let expected = [
        ("sum(up)", 4.0),
        ("sum(mail_smtp_messages_total{job=\"front\",listener=\"smtp\",fate=\"accepted\"})", 5.0),
        ("sum(mail_smtp_recipients_total{job=\"front\",fate=\"accepted\"})", 5.0),
        ("sum(mail_smtp_accepted_bytes_total{job=\"front\"}) > bool 0", 1.0),
        ("sum(mail_lmtp_recipients_total{job=\"storage\",fate=\"accepted\"})", 5.0),
        ("sum(mail_logins_total{job=\"front\",protocol=\"imap\",result=\"success\"})", 3.0),
        ("sum(mail_logins_total{job=\"front\",protocol=\"imap\",result=\"failure\"})", 2.0),
        ("sum(mail_imap_commands_total{job=\"storage\",command=\"SELECT\",result=\"OK\"})", 3.0),
        ("sum(mail_imap_commands_total{job=\"storage\",command=\"FETCH\",result=\"OK\"})", 3.0),
        ("sum(mail_imap_command_seconds_count{job=\"storage\",command=\"SELECT\"})", 3.0),
        ("sum(mail_raft_is_leader{job=\"storage\"})", 2.0),
        ("count(mail_disk_free_bytes{job=\"storage\"} > 0)", 3.0),
        ("sum(mail_raftlog_durable_seconds_count{job=\"storage\"}) > bool 0", 1.0),
        // Leaders time their AppendEntries rounds, followers their part of them.
        ("sum(mail_raft_replicate_seconds_count{job=\"storage\"}) > bool 0", 1.0),
        ("sum(mail_raft_follower_append_seconds_count{job=\"storage\"}) > bool 0", 1.0),
        ("count(mail_raft_purged_index{job=\"storage\"}) == bool count(mail_raft_term{job=\"storage\"})", 1.0),
    ];
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let last: Vec<_> = expected.iter().map(|(q, want)| (*q, *want, prometheus.value(q))).collect();
        if last.iter().all(|(_, want, got)| *got == Some(*want)) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "Prometheus disagrees with the workload: {last:#?}");
        std::thread::sleep(Duration::from_millis(500));
    }

    // promtool's linter accepts every daemon's output.
    let mut outputs = vec![http_get(&front_metrics, "/metrics", Some(TOKEN)).1];
    outputs.extend(storage.metrics.iter().map(|a| http_get(a, "/metrics", None).1));
    for text in &outputs {
        let (ok, report) = promtool(&["check", "metrics"], text);
        assert!(ok, "promtool check metrics: {report}\n{text}");
    }
    let rules = deploy_dir().join("prometheus").join("alerts.yml");
    let (ok, report) = promtool(&["check", "rules", rules.to_str().unwrap()], "");
    assert!(ok, "promtool check rules: {report}");
    let rule_tests = deploy_dir().join("prometheus").join("alerts_test.yml");
    let (ok, report) = promtool(&["test", "rules", rule_tests.to_str().unwrap()], "");
    assert!(ok, "promtool test rules: {report}");

    // Every query of the Grafana dashboard is valid PromQL that Prometheus answers.
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(deploy_dir().join("grafana").join("mailstore.json")).unwrap())
            .unwrap();
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(panels.len() >= 10, "a dashboard worth the name");
    for panel in panels {
        let expr = panel["targets"][0]["expr"].as_str().unwrap();
        let (status, body) = http_get(&prometheus.addr, &format!("/api/v1/query?query={}", urlencode(expr)), None);
        assert!(status.contains("200"), "{}: {expr}: {status} {body}", panel["title"]);
    }
    let memory = r#"count(process_resident_memory_bytes{job=~"front|storage"})"#;
    assert_eq!(prometheus.value(memory), Some(4.0), "every daemon reports its memory");

    // The front's log is JSON, line by line; each message has its line; no password shows.
    let log = front.log_text();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let messages: Vec<&serde_json::Value> =
        lines.iter().filter(|l| l["target"] == "mail" && l["fields"]["message"] == "message").collect();
    assert_eq!(messages.len(), 5, "one line per message and recipient: {messages:#?}");
    for m in &messages {
        let f = &m["fields"];
        assert_eq!(f["hop"], "smtp", "{m}");
        assert_eq!(f["fate"], "accepted", "{m}");
        assert!(f["message_id"].as_str().is_some_and(|id| id.starts_with("<metrics.")), "its Message-ID: {m}");
        assert!(f["queue_id"].as_str().is_some_and(|id| id.len() == 16), "a queue id: {m}");
    }
    for entry in std::fs::read_dir(root).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "log") {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            for secret in ["alice-pw", "bob-pw", "not-alices-password", PROXY_PASSWORD, TOKEN] {
                assert!(!text.contains(secret), "{secret:?} in {}", path.display());
            }
        }
    }
}
