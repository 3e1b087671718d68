//! The scanning daemons a benchmark runs for both sides: one clamd and one rspamd (its
//! resolver a refusing DNS server on loopback), configured by `clusterkit::scanners`, plus
//! what the peer needs to use them the way Postfix sites do: rspamd's proxy worker in
//! milter mode and `clamav-milter` in front of the same clamd.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::bail;
use clusterkit::scanners::{self, RspamdPorts};
use common::refusing_dns::RefusingDns;

use crate::procs::{free_port, spawn, Procs};

/// Where the scanners listen.
pub struct Scanners {
    pub clamd_socket: String,
    pub rspamd: String,
    /// rspamd's proxy worker, milter protocol (`inet:` for Postfix).
    pub rspamd_milter: String,
    /// clamav-milter (`inet:` for Postfix).
    pub clamav_milter: String,
    /// Serves until the benchmark ends.
    _dns: RefusingDns,
}

fn wait(what: &str, ready: impl Fn() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(180);
    while !ready() {
        if Instant::now() > deadline {
            bail!("{what} did not become ready");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

/// Start clamd, rspamd (normal + milter proxy) and clamav-milter under `dir`.
pub fn start(dir: &Path, message_max_bytes: usize, procs: &mut Procs) -> anyhow::Result<Scanners> {
    let clamd = scanners::Clamd::prepare(&dir.join("clamd"), message_max_bytes)?;
    let log = |name: &str| std::fs::File::create(dir.join(name));
    let mut cmd = clamd.command();
    cmd.stdout(log("clamd.out")?).stderr(log("clamd.err")?);
    procs.0.push(spawn(&mut cmd)?);
    let dns = RefusingDns::start()?;
    let port = |()| format!("127.0.0.1:{}", free_port());
    let ports = RspamdPorts { normal: port(()), controller: port(()), milter: Some(port(())), redis: None };
    let hs_cache = std::env::temp_dir().join("mailstore-rspamd-hs-cache");
    let rspamd = scanners::Rspamd::prepare(&dir.join("rspamd"), &ports, dns.addr, &hs_cache, "bench")?;
    let mut cmd = rspamd.command();
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    cmd.stdout(log("rspamd.out")?).stderr(log("rspamd.err")?);
    procs.0.push(spawn(&mut cmd)?);
    let milter = port(());
    let conf = format!(
        "MilterSocket inet:{p}@127.0.0.1\nClamdSocket unix:{s}\nForeground yes\nOnInfected Reject\nOnFail Defer\n\
         AddHeader Replace\nLogFile {d}/clamav-milter.log\nMaxFileSize {m}\nReadTimeout 120\n",
        p = milter.rsplit(':').next().unwrap_or_default(),
        s = clamd.socket.display(),
        d = dir.display(),
        m = message_max_bytes + (1 << 20),
    );
    std::fs::write(dir.join("clamav-milter.conf"), conf)?;
    wait("clamd", || scanners::clamd_answers(&clamd.socket))?;
    let mut cmd = Command::new("clamav-milter");
    cmd.arg("-c")
        .arg(dir.join("clamav-milter.conf"))
        .stdout(log("clamav-milter.out")?)
        .stderr(log("clamav-milter.err")?);
    procs.0.push(spawn(&mut cmd)?);
    wait("rspamd", || scanners::rspamd_answers(&ports.normal))?;
    wait("clamav-milter", || std::net::TcpStream::connect(&milter).is_ok())?;
    Ok(Scanners {
        clamd_socket: clamd.socket.display().to_string(),
        rspamd: ports.normal,
        rspamd_milter: ports.milter.expect("asked for"),
        clamav_milter: milter,
        _dns: dns,
    })
}
