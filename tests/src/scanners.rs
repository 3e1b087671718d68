//! Real ClamAV `clamd` and rspamd for tests and benchmarks, configured by
//! `clusterkit::scanners` on their own socket and ports, resolving only through a
//! refusing DNS server on loopback, killed with their owner. Needs Debian's
//! `clamav-daemon` and `rspamd` (`scripts/install-test-deps` installs them).

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clusterkit::scanners::{self, RspamdPorts};
use common::refusing_dns::RefusingDns;

/// Where compiled rspamd expressions are kept between test runs (a cold start takes ~30 s).
pub fn hs_cache() -> PathBuf {
    std::env::temp_dir().join("mailstore-rspamd-hs-cache")
}

fn spawn(mut cmd: Command, log: &Path) -> Child {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
    cmd.stdout(log.try_clone().unwrap()).stderr(log).stdin(Stdio::null());
    // SAFETY: prctl is async-signal-safe; the scanner dies with its owner.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn().expect("scanner daemon (install clamav-daemon and rspamd: scripts/install-test-deps)")
}

/// Stop a daemon: SIGTERM (rspamd's main process then stops its workers), then SIGKILL.
fn stop(child: &mut Option<Child>) {
    let Some(mut c) = child.take() else { return };
    // SAFETY: signalling our own child.
    unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(5);
    while c.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = c.kill();
    let _ = c.wait();
}

fn wait(what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ready() {
        assert!(Instant::now() < deadline, "{what} did not become ready");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A running clamd.
pub struct Clamd {
    pub files: scanners::Clamd,
    child: Option<Child>,
}

impl Clamd {
    pub fn start(root: &Path) -> Self {
        let files = scanners::Clamd::prepare(&root.join("clamd"), 40 << 20).unwrap();
        let mut c = Self { files, child: None };
        c.restart();
        c
    }

    pub fn socket(&self) -> String {
        self.files.socket.display().to_string()
    }

    /// Whether it answers `PING`.
    pub fn answers(&self) -> bool {
        scanners::clamd_answers(&self.files.socket)
    }

    pub fn restart(&mut self) {
        let _ = std::fs::remove_file(&self.files.socket);
        self.child = Some(spawn(self.files.command(), &self.files.dir.join("clamd.out")));
        wait("clamd", Duration::from_secs(60), || self.answers());
    }

    pub fn kill(&mut self) {
        stop(&mut self.child);
    }
}

impl Drop for Clamd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A running rspamd, the resolver it is pointed at, and the Redis it learns into.
pub struct Rspamd {
    pub files: scanners::Rspamd,
    pub dns: RefusingDns,
    child: Option<Child>,
    redis: Option<Child>,
}

impl Rspamd {
    pub fn start(root: &Path) -> Self {
        Self::start_opts(root, false)
    }

    /// With a Redis of its own, so it can learn (`/learnspam`, `/learnham`).
    pub fn start_learning(root: &Path) -> Self {
        Self::start_opts(root, true)
    }

    fn start_opts(root: &Path, learning: bool) -> Self {
        let dns = RefusingDns::start().unwrap();
        let dir = root.join("rspamd");
        let redis_addr = learning.then(common::testing::free_addr);
        let redis = redis_addr.as_ref().map(|addr| {
            std::fs::create_dir_all(dir.join("redis")).unwrap();
            spawn(scanners::redis_command(&dir.join("redis"), addr), &dir.join("redis.out"))
        });
        let ports = RspamdPorts {
            normal: common::testing::free_addr(),
            controller: common::testing::free_addr(),
            milter: None,
            redis: redis_addr.clone(),
        };
        let files = scanners::Rspamd::prepare(&dir, &ports, dns.addr, &hs_cache(), "controller-pw").unwrap();
        if let Some(addr) = &redis_addr {
            wait("redis", Duration::from_secs(30), || std::net::TcpStream::connect(addr).is_ok());
        }
        let mut r = Self { files, dns, child: None, redis };
        r.restart();
        r
    }

    /// What rspamd's controller says it learned so far (`/stat`'s `learned`).
    pub fn learned(&self) -> u64 {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(&self.files.controller) else { return 0 };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let request = format!("GET /stat HTTP/1.0\r\nPassword: {}\r\n\r\n", self.files.password);
        let mut reply = Vec::new();
        if s.write_all(request.as_bytes()).is_err() || s.read_to_end(&mut reply).is_err() {
            return 0;
        }
        let text = String::from_utf8_lossy(&reply);
        let Some(at) = text.find("\"learned\":") else { return 0 };
        text[at + 10..].chars().take_while(char::is_ascii_digit).collect::<String>().parse().unwrap_or(0)
    }

    /// Whether the normal worker answers `/ping`.
    pub fn answers(&self) -> bool {
        scanners::rspamd_answers(&self.files.normal)
    }

    pub fn restart(&mut self) {
        self.child = Some(spawn(self.files.command(), &self.files.dir.join("rspamd.out")));
        // A cold start compiles its expressions first.
        wait("rspamd", Duration::from_secs(180), || self.answers());
    }

    pub fn kill(&mut self) {
        stop(&mut self.child);
    }
}

impl Drop for Rspamd {
    fn drop(&mut self) {
        self.kill();
        stop(&mut self.redis);
    }
}
