//! A real Dovecot (Debian's `dovecot-imapd`) for interop tests and benchmarks: a throwaway
//! configuration serving `maildir:ROOT/%u/Maildir` (Maildir++ on disk, `/` as the IMAP
//! hierarchy separator, the special-use folders made at first login, as sites commonly
//! run it) with any password, on a free loopback
//! port, as the `mail` user, killed with its owner. `scripts/install-test-deps` installs it.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The password every user has.
pub const PASSWORD: &str = "secret";

/// The folders every user has, made and subscribed at first login (`auto = subscribe`),
/// as sites commonly run Dovecot and as our IMAP does.
pub const SPECIAL_USE: &[(&str, &str)] =
    &[("Sent", "\\Sent"), ("Drafts", "\\Drafts"), ("Trash", "\\Trash"), ("Junk", "\\Junk"), ("Archive", "\\Archive")];

/// A running Dovecot.
pub struct Dovecot {
    pub imap: String,
    /// Implicit TLS, when started with a certificate.
    pub imaps: Option<String>,
    /// `ROOT`: user `u`'s Maildir is `ROOT/u/Maildir`.
    pub mail_root: PathBuf,
    pub log: PathBuf,
    child: Child,
}

impl Dovecot {
    /// Serve the Maildirs under `mail_root` (made if missing and given to `mail`), with
    /// Dovecot's own run state under `state`.
    pub fn start(state: &Path, mail_root: &Path) -> Self {
        Self::start_with(state, mail_root, None)
    }

    /// As [`Dovecot::start`], also serving implicit TLS with `(cert, key)` (PEM files).
    pub fn start_with(state: &Path, mail_root: &Path, tls: Option<(&Path, &Path)>) -> Self {
        let bin = Path::new("/usr/sbin/dovecot");
        assert!(bin.exists(), "dovecot is not installed: run scripts/install-test-deps");
        std::fs::create_dir_all(state.join("run")).unwrap();
        std::fs::create_dir_all(mail_root).unwrap();
        chown_mail(mail_root);
        let addr = common::testing::free_addr();
        let port = addr.rsplit_once(':').unwrap().1;
        let imaps = tls.map(|_| common::testing::free_addr());
        let ssl = match (tls, &imaps) {
            (Some((cert, key)), Some(a)) => {
                let port = a.rsplit_once(':').unwrap().1;
                let listener = format!("  inet_listener imaps {{\n    address = 127.0.0.1\n    port = {port}\n  }}\n");
                let files = format!("ssl_cert = <{}\nssl_key = <{}\n", cert.display(), key.display());
                format!("ssl = yes\n{files}service imap-login {{\n{listener}}}\n")
            }
            _ => "ssl = no\n".to_string(),
        };
        let log = state.join("dovecot.log");
        let conf = format!(
            "protocols = imap\nlisten = 127.0.0.1\nbase_dir = {d}/run\nstate_dir = {d}/state\nlog_path = {log}\n\
             disable_plaintext_auth = no\nauth_mechanisms = plain\nfirst_valid_uid = 8\n\
             mail_location = maildir:{m}/%u/Maildir\n\
             namespace inbox {{\n  separator = /\n  inbox = yes\n{special}}}\n\
             userdb {{\n  driver = static\n  args = uid=mail gid=mail home={m}/%u\n}}\n\
             passdb {{\n  driver = static\n  args = password={PASSWORD}\n}}\n\
             service imap-login {{\n  chroot =\n  inet_listener imap {{\n    address = 127.0.0.1\n    port = {port}\n  }}\n  inet_listener imaps {{\n    port = 0\n  }}\n}}\n\
             service anvil {{\n  chroot =\n}}\n{ssl}",
            d = state.display(),
            m = mail_root.display(),
            log = log.display(),
            special = SPECIAL_USE
                .iter()
                .map(|(name, attr)| format!("  mailbox {name} {{\n    special_use = {attr}\n    auto = subscribe\n  }}\n"))
                .collect::<String>(),
        );
        std::fs::write(state.join("dovecot.conf"), conf).unwrap();
        let child = Command::new(bin)
            .arg("-F")
            .arg("-c")
            .arg(state.join("dovecot.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(&addr).is_err() {
            assert!(Instant::now() < deadline, "dovecot does not listen on {addr}");
            std::thread::sleep(Duration::from_millis(50));
        }
        for a in imaps.iter() {
            while TcpStream::connect(a).is_err() {
                assert!(Instant::now() < deadline, "dovecot does not listen on {a}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Self { imap: addr, imaps, mail_root: mail_root.to_path_buf(), log, child }
    }

    /// User `user`'s Maildir.
    pub fn maildir(&self, user: &str) -> PathBuf {
        self.mail_root.join(user).join("Maildir")
    }

    /// Dovecot's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Give `path` and everything under it to the `mail` user (Dovecot serves as `mail`).
pub fn chown_mail(path: &Path) {
    let ok = Command::new("chown").arg("-R").arg("mail:mail").arg(path).status().unwrap().success();
    assert!(ok, "chown mail {}", path.display());
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
