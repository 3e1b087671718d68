//! The scanners a local cluster runs beside its fronts, configured in their own formats
//! (clamd.conf, rspamd's UCL): a ClamAV `clamd` on a Unix socket with a small signature
//! database made here (EICAR and a test signature of ours; real databases come from
//! freshclam, which needs the Internet), and an rspamd whose only resolver is a given
//! loopback DNS server and whose modules that would reach out (fuzzy hashes, blocklists,
//! remote maps) are off. It writes files and builds command lines; starting, waiting for
//! and stopping the processes is the caller's. It never points a scanner at a resolver or
//! a map off this machine.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The EICAR test file: every antivirus detects it; it is harmless.
pub const EICAR: &str = r"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
/// A string our own test signature matches, and its name as clamd reports it.
pub const TEST_MALWARE: &str = "MAILSTORE-TEST-MALWARE-7d3f0c21";
pub const TEST_SIGNATURE_NAME: &str = "Mailstore-Test-Signature.UNOFFICIAL";
/// GTUBE: rspamd scores a message holding it as spam (reject), whatever else it says.
pub const GTUBE: &str = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";

/// Which scanner programs are installed (Debian's `clamav-daemon` and `rspamd`).
pub fn installed() -> (bool, bool) {
    let found = |p: &str| Path::new(p).exists();
    (found("/usr/sbin/clamd"), found("/usr/bin/rspamd"))
}

/// Whether Debian's `redis-server` is installed (rspamd keeps what it learns there).
pub fn redis_installed() -> bool {
    Path::new("/usr/bin/redis-server").exists()
}

/// `redis-server` on `addr` (loopback), in the foreground, keeping its data in `dir` (it
/// saves on shutdown, so what rspamd learned survives a restart).
pub fn redis_command(dir: &Path, addr: &str) -> Command {
    let (host, port) = addr.rsplit_once(':').unwrap_or(("127.0.0.1", addr));
    let mut cmd = Command::new("redis-server");
    cmd.args(["--bind", host, "--port", port, "--protected-mode", "yes", "--save", "60 1", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .args(["--daemonize", "no", "--logfile", ""]);
    cmd
}

fn hex(text: &str) -> String {
    text.bytes().map(|b| format!("{b:02x}")).collect()
}

/// A clamd's files under one directory.
#[derive(Debug, Clone)]
pub struct Clamd {
    pub dir: PathBuf,
    pub socket: PathBuf,
    pub config: PathBuf,
}

impl Clamd {
    /// Write the configuration and the signature database; streams up to
    /// `stream_max_bytes` (the largest message the fronts take).
    pub fn prepare(dir: &Path, stream_max_bytes: usize) -> std::io::Result<Self> {
        let db = dir.join("db");
        std::fs::create_dir_all(&db)?;
        let signatures =
            format!("Eicar-Test-Signature:0:*:{}\nMailstore-Test-Signature:0:*:{}\n", hex(EICAR), hex(TEST_MALWARE));
        std::fs::write(db.join("mailstore-test.ndb"), signatures)?;
        let socket = dir.join("clamd.sock");
        let d = dir.display();
        // Limits: a message is scanned whole, archives to a depth and file count that stop
        // bombs; past a limit clamd reports a heuristic finding (AlertExceedsMax).
        let config = format!(
            "LocalSocket {socket}\nLocalSocketMode 600\nDatabaseDirectory {d}/db\nForeground yes\n\
             LogFile {d}/clamd.log\nTemporaryDirectory {d}\nScanMail yes\nScanArchive yes\n\
             StreamMaxLength {stream}\nMaxScanSize {scan}\nMaxFileSize {stream}\nMaxRecursion 16\n\
             MaxFiles 10000\nMaxEmbeddedPE 10M\nAlertExceedsMax yes\nMaxThreads 8\nSelfCheck 0\n",
            socket = socket.display(),
            stream = stream_max_bytes + (1 << 20),
            scan = 4 * stream_max_bytes,
        );
        let path = dir.join("clamd.conf");
        crate::write_private(&path, &config)?;
        Ok(Self { dir: dir.to_path_buf(), socket, config: path })
    }

    /// `clamd -c clamd.conf`, in the foreground.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new("clamd");
        cmd.arg("-c").arg(&self.config);
        cmd
    }
}

/// An rspamd's files and addresses.
#[derive(Debug, Clone)]
pub struct Rspamd {
    pub dir: PathBuf,
    /// The normal worker (`/checkv2`).
    pub normal: String,
    /// The controller (`/learnspam`, `/stat`), and its password.
    pub controller: String,
    pub password: String,
    /// The proxy worker in milter mode (for Postfix), if asked for.
    pub milter: Option<String>,
}

/// Modules off: each would ask a service on the Internet.
const REMOTE_MODULES: &[&str] =
    &["fuzzy_check", "rbl", "asn", "dcc", "url_reputation", "phishing", "maps_stats", "neural", "reputation"];

/// Where rspamd listens, and the Redis its Bayes statistics live in (none: no learning).
#[derive(Debug, Clone)]
pub struct RspamdPorts {
    pub normal: String,
    pub controller: String,
    pub milter: Option<String>,
    pub redis: Option<String>,
}

impl Rspamd {
    /// Write a local configuration over Debian's. `hs_cache` keeps compiled regular
    /// expressions between runs (a cold start compiles for ~30 s on two cores).
    pub fn prepare(
        dir: &Path,
        ports: &RspamdPorts,
        dns: SocketAddr,
        hs_cache: &Path,
        password: &str,
    ) -> std::io::Result<Self> {
        let local = dir.join("local.d");
        for sub in ["local.d", "override.d", "db", "run", "log"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        std::fs::create_dir_all(hs_cache)?;
        let d = dir.display();
        let files = [
            ("worker-normal.inc", format!("bind_socket = \"{}\";\ncount = 1;\n", ports.normal)),
            (
                "worker-controller.inc",
                format!(
                    "bind_socket = \"{}\";\ncount = 1;\npassword = \"{password}\";\nenable_password = \"{password}\";\n",
                    ports.controller
                ),
            ),
            (
                "worker-proxy.inc",
                match &ports.milter {
                    Some(a) => format!(
                        "bind_socket = \"{a}\";\ncount = 1;\nmilter = yes;\ntimeout = 120s;\n\
                         upstream \"local\" {{\n  default = yes;\n  self_scan = yes;\n}}\n"
                    ),
                    None => "enabled = false;\n".into(),
                },
            ),
            ("worker-fuzzy.inc", "enabled = false;\n".into()),
            (
                "options.inc",
                format!(
                    "dns {{\n  nameserver = [\"{dns}\"];\n  timeout = 1s;\n  retransmits = 1;\n}}\n\
                     disable_monitoring = true;\nhs_cache_dir = \"{}\";\n",
                    hs_cache.display()
                ),
            ),
            ("logging.inc", format!("type = \"file\";\nfilename = \"{d}/log/rspamd.log\";\nlevel = \"notice\";\n")),
        ];
        for (name, text) in files {
            crate::write_private(&local.join(name), &text)?;
        }
        if let Some(redis) = &ports.redis {
            crate::write_private(&local.join("redis.conf"), &format!("servers = \"{redis}\";\n"))?;
        }
        // A local cluster's clients are all on loopback: check SPF and DMARC for them too
        // (rspamd skips its local_addrs by default), so Authentication-Results says something.
        for module in ["spf", "dmarc"] {
            crate::write_private(&local.join(format!("{module}.conf")), "check_local = true;\n")?;
        }
        for module in REMOTE_MODULES {
            crate::write_private(&local.join(format!("{module}.conf")), "enabled = false;\n")?;
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            normal: ports.normal.clone(),
            controller: ports.controller.clone(),
            password: password.to_string(),
            milter: ports.milter.clone(),
        })
    }

    /// Debian's rspamd.conf with this directory as its local configuration, in the
    /// foreground (as root: with root's user and group, which rspamd otherwise refuses).
    pub fn command(&self) -> Command {
        let mut cmd = Command::new("rspamd");
        let d = self.dir.display();
        cmd.args(["-f", "-c", "/etc/rspamd/rspamd.conf"]);
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            cmd.args(["-u", "root", "-g", "root"]);
        }
        cmd.arg(format!("--var=LOCAL_CONFDIR={d}"))
            .arg(format!("--var=DBDIR={d}/db"))
            .arg(format!("--var=RUNDIR={d}/run"))
            .arg(format!("--var=LOGDIR={d}/log"));
        cmd
    }
}

/// Whether a clamd answers `PING` on `socket`.
pub fn clamd_answers(socket: &Path) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::os::unix::net::UnixStream::connect(socket) else { return false };
    let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(2)));
    let mut reply = [0u8; 8];
    s.write_all(b"zPING\0").is_ok() && s.read(&mut reply).is_ok_and(|n| reply[..n].starts_with(b"PONG"))
}

/// Whether an rspamd worker answers `/ping` at `addr`.
pub fn rspamd_answers(addr: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(addr) else { return false };
    let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(2)));
    let mut reply = Vec::new();
    s.write_all(b"GET /ping HTTP/1.0\r\n\r\n").is_ok()
        && s.read_to_end(&mut reply).is_ok()
        && String::from_utf8_lossy(&reply).contains("pong")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_database_matches_the_test_strings() {
        let tmp = tempfile::tempdir().unwrap();
        let clamd = Clamd::prepare(tmp.path(), 1 << 20).unwrap();
        let db = std::fs::read_to_string(tmp.path().join("db/mailstore-test.ndb")).unwrap();
        assert!(db.contains(&hex(EICAR)) && db.starts_with("Eicar-Test-Signature:0:*:58354f21"), "{db}");
        let conf = std::fs::read_to_string(&clamd.config).unwrap();
        assert!(conf.contains(&format!("LocalSocket {}", clamd.socket.display())), "{conf}");
    }

    #[test]
    fn rspamd_resolves_only_through_the_given_server() {
        let tmp = tempfile::tempdir().unwrap();
        let ports = RspamdPorts {
            normal: "127.0.0.1:1".into(),
            controller: "127.0.0.1:2".into(),
            milter: None,
            redis: Some("127.0.0.1:3".into()),
        };
        let dns: SocketAddr = "127.0.0.1:5353".parse().unwrap();
        let r = Rspamd::prepare(tmp.path(), &ports, dns, &tmp.path().join("hs"), "pw").unwrap();
        let options = std::fs::read_to_string(r.dir.join("local.d/options.inc")).unwrap();
        assert!(options.contains("nameserver = [\"127.0.0.1:5353\"]"), "{options}");
        let fuzzy = std::fs::read_to_string(r.dir.join("local.d/fuzzy_check.conf")).unwrap();
        assert_eq!(fuzzy, "enabled = false;\n");
        let redis = std::fs::read_to_string(r.dir.join("local.d/redis.conf")).unwrap();
        assert_eq!(redis, "servers = \"127.0.0.1:3\";\n");
    }
}
