//! The scanners `mailctl up` runs beside its front: Debian's clamd and rspamd when they
//! are installed, configured by `clusterkit::scanners` under the cluster's directory,
//! rspamd resolving through the resolver `up` was given or through a refusing one on
//! loopback (so it never sends a query off the machine). When they are missing, `up`
//! runs without scanning and says how to install them; it never pretends mail was scanned.

use std::time::{Duration, Instant};

use anyhow::bail;
use clusterkit::scanners::{self, RspamdPorts};
use common::refusing_dns::RefusingDns;

use super::layout::Layout;
use super::up::Daemons;

/// Lines of a scanner's log shown when it never answered.
const LOG_TAIL_LINES: usize = 20;

/// Which scanners this machine has.
#[derive(Debug, Clone, Copy)]
pub struct Scanning {
    pub clamd: bool,
    pub rspamd: bool,
}

impl Scanning {
    pub fn installed() -> Self {
        let (clamd, rspamd) = scanners::installed();
        Self { clamd, rspamd }
    }

    /// Start what is installed; the refusing resolver rspamd uses, if `up` was given none
    /// (keep it: it serves from this process).
    pub(super) fn start(
        &self,
        daemons: &mut Daemons,
        layout: &Layout,
        dns_servers: &[std::net::SocketAddr],
    ) -> anyhow::Result<Option<RefusingDns>> {
        if self.clamd {
            let clamd = scanners::Clamd::prepare(&layout.clamd_dir(), 32 << 20)?;
            let _ = std::fs::remove_file(&clamd.socket);
            daemons.spawn("clamd", clamd.command())?;
        }
        if !self.rspamd {
            return Ok(None);
        }
        let own = match dns_servers.first() {
            Some(_) => None,
            None => Some(RefusingDns::start()?),
        };
        let dns = dns_servers.first().copied().or(own.as_ref().map(|d| d.addr)).expect("one of the two");
        // What rspamd learns lives in a Redis of its own, when there is one.
        let redis = scanners::redis_installed().then(|| layout.redis());
        if let Some(addr) = &redis {
            let dir = layout.dir.join("redis");
            std::fs::create_dir_all(&dir)?;
            daemons.spawn("redis", scanners::redis_command(&dir, addr))?;
        }
        let ports =
            RspamdPorts { normal: layout.rspamd_normal(), controller: layout.rspamd_controller(), milter: None, redis };
        let password = layout.rspamd_password()?;
        let hs_cache = layout.dir.join("rspamd-hs-cache");
        let rspamd = scanners::Rspamd::prepare(&layout.rspamd_dir(), &ports, dns, &hs_cache, &password)?;
        daemons.spawn("rspamd", rspamd.command())?;
        Ok(own)
    }

    /// Wait until every started scanner answers (rspamd's first start compiles for a while).
    pub fn wait_ready(&self, layout: &Layout, deadline: Instant) -> anyhow::Result<()> {
        let socket = layout.clamd_dir().join("clamd.sock");
        while self.clamd && !scanners::clamd_answers(&socket) {
            if Instant::now() > deadline {
                bail!("clamd does not answer on {}; see logs/clamd.log", socket.display());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        while self.rspamd && !scanners::rspamd_answers(&layout.rspamd_normal()) {
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(layout.log_dir().join("rspamd.log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(LOG_TAIL_LINES).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                bail!(
                    "rspamd does not answer on {}; the end of logs/rspamd.log:\n{}",
                    layout.rspamd_normal(),
                    tail.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(())
    }

    /// What the banner says about scanning.
    pub fn banner(&self) -> String {
        match (self.clamd, self.rspamd) {
            (true, true) => "  scanning: clamd (test signatures: EICAR and Mailstore-Test-Signature) and rspamd".into(),
            (clamd, rspamd) => {
                let missing: Vec<&str> = [(!clamd).then_some("clamav-daemon"), (!rspamd).then_some("rspamd")]
                    .into_iter()
                    .flatten()
                    .collect();
                format!(
                    "  scanning: {} (install {} with scripts/install-test-deps, or apt-get install {})",
                    if clamd || rspamd { "partial" } else { "OFF, mail is delivered unscanned" },
                    missing.join(" and "),
                    missing.join(" ")
                )
            }
        }
    }
}
