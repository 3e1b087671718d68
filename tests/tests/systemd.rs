//! Running under systemd: the units in `deploy/systemd/` pass `systemd-analyze verify`
//! without a warning (with ExecStart pointed at this build's daemons), and a daemon speaks
//! the notify protocol their `Type=notify` and `WatchdogSec=` expect: `READY=1` once it
//! serves, `WATCHDOG=1` at half the interval systemd gives, `STOPPING=1` on SIGTERM.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn deploy() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("deploy").join("systemd")
}

#[test]
fn the_units_verify_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let mut units = Vec::new();
    for (unit, binary) in
        [("storaged.service", env!("CARGO_BIN_EXE_sys-storaged")), ("frontd.service", env!("CARGO_BIN_EXE_sys-frontd"))]
    {
        let text = std::fs::read_to_string(deploy().join(unit)).unwrap();
        let daemon = unit.trim_end_matches(".service");
        assert!(text.contains(&format!("ExecStart=/usr/local/bin/{daemon} ")), "{unit}");
        for must in ["Type=notify", "WatchdogSec=", "User=mailstore", "ProtectSystem=strict", "NoNewPrivileges=yes"] {
            assert!(text.contains(must), "{unit} lacks {must}");
        }
        let path = tmp.path().join(unit);
        std::fs::write(&path, text.replace(&format!("/usr/local/bin/{daemon}"), binary)).unwrap();
        units.push(path);
    }
    let out = Command::new("systemd-analyze").arg("verify").args(&units).output().expect("systemd-analyze");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "systemd-analyze verify: {said}");
    let sysusers = std::fs::read_to_string(deploy().join("mailstore.conf")).unwrap();
    assert!(sysusers.lines().any(|l| l.starts_with("u mailstore ")), "{sysusers}");
}

/// The next notification on `socket`, within `wait`.
fn next(socket: &UnixDatagram, wait: Duration) -> String {
    socket.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 1024];
    let n = socket.recv(&mut buf).unwrap_or_else(|e| panic!("no notification within {wait:?}: {e}"));
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn storaged_says_ready_pings_the_watchdog_and_says_stopping() {
    use clusterkit::storage::{self, Listeners, NodeAddrs};
    let tmp = tempfile::tempdir().unwrap();
    let node = NodeAddrs::on_free_ports(1, Listeners::default());
    let mut cfg = storage::node_config(&node, &[storage::group("hermes", std::slice::from_ref(&node))]);
    cfg.cluster_key = Some("systemd test".into());
    let config = tmp.path().join("node1.toml");
    storage::write(&config, &cfg).unwrap();
    let socket_path = tmp.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    let log = std::fs::File::create(tmp.path().join("node1.log")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sys-storaged"))
        .arg("--config")
        .arg(&config)
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "400000")
        .stderr(log)
        .spawn()
        .unwrap();
    let started = Instant::now();
    assert_eq!(next(&socket, Duration::from_secs(30)), "READY=1\n");
    assert!(std::net::TcpStream::connect(&node.lmtp).is_ok(), "ready means serving");
    for _ in 0..3 {
        assert_eq!(next(&socket, Duration::from_secs(2)), "WATCHDOG=1\n");
    }
    assert!(started.elapsed() < Duration::from_secs(30));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let mut said = next(&socket, Duration::from_secs(10));
    while said == "WATCHDOG=1\n" {
        said = next(&socket, Duration::from_secs(10));
    }
    assert_eq!(said, "STOPPING=1\n");
    assert!(child.wait().unwrap().success());
}
