//! A `mailctl up` cluster for the tests that use the whole system as a user does: a free
//! port base, the process (killed if a test fails), the lines it printed, and Ctrl-C.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tools::mailctl::layout::Layout;

/// A port base whose every listener is free now.
pub fn free_port_base(scratch: &std::path::Path) -> u16 {
    for attempt in 0..50u16 {
        let base = 20_000 + (std::process::id() as u16 % 200) * 100 + attempt * 37;
        let dir = scratch.join(format!("probe{attempt}"));
        let layout = Layout::open(&dir, base).unwrap();
        if layout.all_addresses().iter().all(|a| std::net::TcpListener::bind(a).is_ok()) {
            return base;
        }
    }
    panic!("no free port base");
}

/// A running `mailctl up`, killed if the test fails before it is interrupted.
pub struct Mailctl(pub Child);

impl Drop for Mailctl {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Start `mailctl up`; returns it and the lines it printed up to the ready line.
pub fn up(dir: &std::path::Path, base: u16) -> (Mailctl, Vec<String>) {
    // The front's MX lookups go to a resolver on loopback, never to the system's.
    let dns = dns().addr;
    let child = Command::new(env!("CARGO_BIN_EXE_mailctl"))
        .args(["up", "--dir"])
        .arg(dir)
        .args(["--port-base", &base.to_string(), "--dns-server", &dns.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut child = Mailctl(child);
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        // Read to the end (a closed pipe would fail mailctl's later output).
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // Longer than mailctl up's own wait for the cluster and the scanners (180 s).
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut lines = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx.recv_timeout(left).unwrap_or_else(|_| panic!("mailctl up never became ready: {lines:#?}"));
        let done = line.starts_with("Ctrl-C stops everything");
        lines.push(line);
        if done {
            return (child, lines);
        }
    }
}

pub fn interrupt(mut child: Mailctl) {
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.0.id() as i32, libc::SIGINT) };
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            assert!(status.success(), "mailctl exited with {status}");
            return;
        }
        assert!(Instant::now() < deadline, "mailctl did not stop after Ctrl-C");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The demo password `mailctl up` printed for `user`.
pub fn password_of(lines: &[String], user: &str) -> String {
    lines
        .iter()
        .find_map(|l| l.trim().strip_prefix(user))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no password for {user} in {lines:#?}"))
        .to_string()
}

/// The loopback resolver every `mailctl up` of this test process is given: a query it
/// counts is one that did not leave the machine.
pub fn dns() -> &'static common::refusing_dns::RefusingDns {
    static DNS: std::sync::OnceLock<common::refusing_dns::RefusingDns> = std::sync::OnceLock::new();
    DNS.get_or_init(|| common::refusing_dns::RefusingDns::start().expect("a loopback DNS server"))
}
