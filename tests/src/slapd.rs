//! A real OpenLDAP `slapd` for tests and benchmarks: a throwaway configuration with the
//! qmail-ldap schema and ours (`mailstore.schema`) of `fixtures/ldap`, an mdb database
//! loaded with `slapadd`, served on a free loopback port, killed with its owner. Needs
//! Debian's `slapd` and `ldap-utils` (`scripts/install-test-deps` installs them).

use std::io::Write;
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The service account frontd searches the directory as.
pub const LDAP_BIND_DN: &str = "cn=frontd,dc=example,dc=edu";
pub const LDAP_BIND_PASSWORD: &str = "frontd-ldap-pw";

/// A file of `fixtures/ldap`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/ldap").join(name)
}

fn free_addr() -> String {
    common::testing::free_addr()
}

fn wait_listening(addr: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "slapd does not listen on {addr}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn stop(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// A real OpenLDAP server with the qmail-ldap schema and the fixture users.
pub struct Slapd {
    root: PathBuf,
    pub url: String,
    addr: String,
    /// `ldaps://` URL and the CA file clients trust (only with [`Slapd::start_tls`]).
    pub ldaps_url: Option<String>,
    pub ca_file: Option<PathBuf>,
    child: Option<Child>,
}

impl Slapd {
    /// slapd loaded with the test fixture's users.
    pub fn start(root: &Path) -> Self {
        Self::start_with(root, &fixture("users.ldif"))
    }

    /// slapd loaded with the entries of `ldif` (under `dc=example,dc=edu`).
    pub fn start_with(root: &Path, ldif: &Path) -> Self {
        Self::start_opts(root, ldif, false)
    }

    /// slapd with the fixture users, a self-signed certificate for 127.0.0.1, StartTLS on
    /// the `ldap://` port and an `ldaps://` port.
    pub fn start_tls(root: &Path) -> Self {
        Self::start_opts(root, &fixture("users.ldif"), true)
    }

    fn start_opts(root: &Path, ldif: &Path, tls: bool) -> Self {
        let root = root.join("slapd");
        std::fs::create_dir_all(root.join("db")).unwrap();
        let conf = format!(
            "include /etc/ldap/schema/core.schema\ninclude /etc/ldap/schema/cosine.schema\n\
             include /etc/ldap/schema/inetorgperson.schema\ninclude /etc/ldap/schema/nis.schema\n\
             include {schema}\ninclude {ours}\npidfile {root}/slapd.pid\nmodulepath /usr/lib/ldap\nmoduleload back_mdb\n\
             database mdb\nmaxsize 104857600\nsuffix \"dc=example,dc=edu\"\nrootdn \"cn=admin,dc=example,dc=edu\"\n\
             rootpw admin-pw\ndirectory {root}/db\nindex objectClass,mail,mailAlternateAddress,uid eq\n\
             access to attrs=userPassword by dn.exact=\"{LDAP_BIND_DN}\" read by anonymous auth by * none\n\
             access to * by * read\n",
            schema = fixture("qmail.schema").display(),
            ours = fixture("mailstore.schema").display(),
            root = root.display(),
        );
        let conf = if tls {
            // An end-entity certificate (rustls refuses a CA certificate as a server's).
            clusterkit::certs::self_signed(&root, &["127.0.0.1"]).unwrap();
            let r = root.display();
            format!("TLSCertificateFile {r}/cert.pem\nTLSCertificateKeyFile {r}/key.pem\n{conf}")
        } else {
            conf
        };
        std::fs::write(root.join("slapd.conf"), conf).unwrap();
        let out = Command::new("slapadd")
            .arg("-f")
            .arg(root.join("slapd.conf"))
            .arg("-l")
            .arg(ldif)
            .output()
            .expect("slapadd (install slapd: scripts/install-test-deps)");
        assert!(out.status.success(), "slapadd: {}", String::from_utf8_lossy(&out.stderr));
        let addr = free_addr();
        let ldaps_url = tls.then(|| format!("ldaps://{}", free_addr()));
        let ca_file = tls.then(|| root.join("cert.pem"));
        let mut s = Self { url: format!("ldap://{addr}"), addr, ldaps_url, ca_file, root, child: None };
        s.restart();
        s
    }

    /// Start (again) on the same port with the same data.
    pub fn restart(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.root.join("slapd.log")).unwrap();
        let mut cmd = Command::new("slapd");
        let urls = match &self.ldaps_url {
            Some(ldaps) => format!("{}/ {ldaps}/", self.url),
            None => format!("{}/", self.url),
        };
        cmd.arg("-h").arg(urls).arg("-f").arg(self.root.join("slapd.conf")).args(["-d", "0"]);
        cmd.stdout(Stdio::null()).stderr(log);
        // SAFETY: prctl is async-signal-safe; slapd dies with its owner.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        self.child = Some(cmd.spawn().expect("slapd (install it: scripts/install-test-deps)"));
        wait_listening(&self.addr);
    }

    pub fn stop(&mut self) {
        stop(&mut self.child);
    }

    /// Apply an LDIF change as the directory administrator.
    pub fn modify(&self, ldif: &str) {
        let mut child = Command::new("ldapmodify")
            .args(["-x", "-H", &self.url, "-D", "cn=admin,dc=example,dc=edu", "-w", "admin-pw"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(ldif.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "ldapmodify: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.stop();
    }
}
