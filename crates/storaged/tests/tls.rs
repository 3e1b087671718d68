//! TLS on the mail access protocols, with Python's ssl/imaplib/poplib as the independent
//! clients: with no plaintext networks configured, passwords are refused until STARTTLS or
//! STLS, accepted after them and on the implicit-TLS ports; commands pipelined behind
//! STARTTLS in the clear are never executed.

mod support;

use std::time::Duration;

use support::{password, py_json, Cluster};

#[test]
fn passwords_only_over_tls() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Cluster::start_tls(tmp.path(), 1, 2);
    let leader = c.wait_leader(Duration::from_secs(30));
    let ca = tmp.path().join("cert.pem").display().to_string();
    let pw = password(1);
    let r = py_json(
        "tls_client.py",
        &[
            "--imap",
            &c.imap[leader],
            "--imaps",
            &c.imaps[leader],
            "--pop3",
            &c.pop3[leader],
            "--pop3s",
            &c.pop3s[leader],
            "--ca",
            &ca,
            "--user",
            "user1@example.edu",
            "--password",
            &pw,
        ],
    );
    assert_eq!(r["ok"], true);
}
