//! ManageSieve (RFC 5804) on a storage node, over the wire: a user logs in (or the front's
//! proxy credential for them), uploads scripts (one with an error is refused with its line),
//! lists, activates, reads, renames and deletes them; the active script is what delivery
//! runs, and it survives a restart of the node.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use base64::Engine;
use support::{tree, Cluster};

struct Client {
    rd: BufReader<TcpStream>,
    wr: TcpStream,
}

impl Client {
    fn connect(addr: &str) -> (Client, String) {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut c = Client { rd: BufReader::new(stream.try_clone().unwrap()), wr: stream };
        let greeting = c.response();
        (c, greeting)
    }

    /// Lines up to and including the OK/NO/BYE that ends a response; literals read whole.
    fn response(&mut self) -> String {
        let mut out = String::new();
        loop {
            let mut line = String::new();
            assert!(self.rd.read_line(&mut line).unwrap() > 0, "connection closed after {out:?}");
            out.push_str(&line);
            if let Some(n) = line.trim_end().strip_prefix('{').and_then(|l| l.strip_suffix('}')) {
                let mut bytes = vec![0u8; n.parse().unwrap()];
                self.rd.read_exact(&mut bytes).unwrap();
                out.push_str(&String::from_utf8(bytes).unwrap());
                continue;
            }
            if ["OK", "NO", "BYE"].iter().any(|s| line.starts_with(s)) {
                return out;
            }
        }
    }

    fn cmd(&mut self, line: &str) -> String {
        self.wr.write_all(format!("{line}\r\n").as_bytes()).unwrap();
        self.response()
    }

    fn put(&mut self, name: &str, script: &str) -> String {
        self.cmd(&format!("PUTSCRIPT \"{name}\" {{{}+}}\r\n{script}", script.len()))
    }

    fn login(&mut self, authz: &str, user: &str, password: &str) -> String {
        let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{authz}\0{user}\0{password}"));
        self.cmd(&format!("AUTHENTICATE \"PLAIN\" \"{b64}\""))
    }
}

#[test]
fn rfc5804_scripts_managed_and_run() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = Cluster::start(tmp.path(), 1, 2);
    c.wait_leader(Duration::from_secs(30));
    let (mut s, greeting) = Client::connect(&c.sieve[0]);
    assert!(greeting.contains("\"SIEVE\" \"fileinto") && greeting.contains("\"SASL\" \"PLAIN\""), "{greeting}");
    assert!(s.cmd("LISTSCRIPTS").starts_with("NO"), "log in first");
    assert!(s.login("", "user0@example.edu", "wrong").starts_with("NO"));
    assert!(s.login("", "user0@example.edu", &support::password(0)).starts_with("OK"));

    let refused = s.put("broken", "require \"fileinto\";\n\nfileinto \"x\"\nkeep;\n");
    assert!(refused.starts_with("NO \"line 4:"), "{refused}");
    let script = "require \"fileinto\";\r\nif header :contains \"subject\" \"report\" { fileinto \"Reports\"; }\r\n";
    assert!(s.put("filters", script).starts_with("OK"));
    assert!(s.put("spare", "keep;").starts_with("OK"));
    assert!(s.cmd("HAVESPACE \"big\" 999999999").starts_with("NO (QUOTA/MAXSIZE)"));
    assert!(s.cmd("HAVESPACE \"small\" 100").starts_with("OK"));
    assert!(s.cmd("SETACTIVE \"nosuch\"").starts_with("NO (NONEXISTENT)"));
    assert!(s.cmd("SETACTIVE \"filters\"").starts_with("OK"));
    assert_eq!(s.cmd("LISTSCRIPTS"), "\"filters\" ACTIVE\r\n\"spare\"\r\nOK \"listscripts completed\"\r\n");
    let got = s.cmd("GETSCRIPT \"filters\"");
    assert_eq!(got, format!("{{{}}}\r\n{script}\r\nOK \"getscript completed\"\r\n", script.len()));
    assert!(s.cmd("DELETESCRIPT \"filters\"").starts_with("NO (ACTIVE)"));
    assert!(s.cmd("RENAMESCRIPT \"spare\" \"filters\"").starts_with("NO (ALREADYEXISTS)"));
    assert!(s.cmd("CHECKSCRIPT {5+}\r\nkeep;").starts_with("OK"));
    assert!(s.cmd("CHECKSCRIPT {4+}\r\nkeep").starts_with("NO"));

    support::deliver(&c.lmtp[0], "user0@example.edu", b"Subject: weekly report\r\n\r\nnumbers\r\n");
    let t = tree(&c.mail_dir(0));
    assert!(t.keys().any(|k| k.starts_with("users/user0@example.edu/Maildir/.Reports/")), "filed by the active script");
    let home = c.mail_dir(0).join("users/user0@example.edu");
    assert_eq!(std::fs::read_link(home.join(".dovecot.sieve")).unwrap(), std::path::Path::new("sieve/filters.sieve"));
    assert!(s.cmd("LOGOUT").starts_with("OK"));
    pigeonhole_runs_the_active_script(&home);

    // The front's proxy credential acts for the user; the scripts survive a restart.
    c.stop(0);
    c.start_node(0);
    c.wait_leader(Duration::from_secs(30));
    let (mut p, _) = Client::connect(&c.sieve[0]);
    assert!(p.cmd("XCLIENT ADDR=192.0.2.7 MAILHOST=hermes").starts_with("OK"));
    assert!(p.login("user0@example.edu", support::PROXY_USER, support::PROXY_PASSWORD).starts_with("OK"));
    assert!(p.cmd("RENAMESCRIPT \"filters\" \"main\"").starts_with("OK"));
    assert!(p.cmd("LISTSCRIPTS").starts_with("\"main\" ACTIVE\r\n\"spare\"\r\n"));
    assert!(p.cmd("SETACTIVE \"\"").starts_with("OK"));
    assert!(p.cmd("DELETESCRIPT \"main\"").starts_with("OK"));
    assert!(p.cmd("DELETESCRIPT \"main\"").starts_with("NO (NONEXISTENT)"));
    // A 1 MiB script: refused before its bytes are read, and the connection closed (its
    // bytes could not be told from commands).
    let big = format!("# {}\r\nkeep;\r\n", "x".repeat(1 << 20));
    p.wr.write_all(format!("PUTSCRIPT \"big\" {{{}+}}\r\n", big.len()).as_bytes()).unwrap();
    let _ = p.wr.write_all(big.as_bytes());
    let bye = p.response();
    assert!(bye.starts_with("BYE (QUOTA/MAXSIZE)"), "{bye}");
    assert!(std::fs::symlink_metadata(home.join(".dovecot.sieve")).is_err(), "no active script");
}

/// Dovecot's Pigeonhole reading a copy of the replica's user directory (owned by the
/// unprivileged user it runs as) runs the active script through the link.
fn pigeonhole_runs_the_active_script(home: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let copy = tmp.path().join("home");
    assert!(std::process::Command::new("cp").arg("-a").arg(home).arg(&copy).status().unwrap().success());
    assert!(std::process::Command::new("chown").args(["-R", "nobody:nogroup"]).arg(&copy).status().unwrap().success());
    let conf = format!(
        "mail_uid = nobody\nmail_gid = nogroup\nlog_path = /dev/stderr\nhostname = localhost\nbase_dir = {0}/run\nmail_location = maildir:{0}/mail\n",
        tmp.path().display()
    );
    std::fs::write(tmp.path().join("dovecot.conf"), conf).unwrap();
    std::fs::write(tmp.path().join("m.eml"), "From: a@b.org\r\nSubject: monthly report\r\n\r\nx\r\n").unwrap();
    let out = std::process::Command::new("sieve-test")
        .arg("-c")
        .arg(tmp.path().join("dovecot.conf"))
        .arg(copy.join(".dovecot.sieve"))
        .arg(tmp.path().join("m.eml"))
        .env("HOME", tmp.path())
        .output()
        .expect("sieve-test runs (Debian package dovecot-sieve)");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("store message in folder: Reports"), "{text}");
}
