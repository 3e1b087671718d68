//! The `frontd` daemon: what it tells `--help`, how it logs by default, and its run. The
//! binary's `main`, the whole-system tests' binary of the same name and `mailctl`'s
//! subcommand all start it through [`common::daemon`].

use std::path::Path;

/// The front node daemon.
pub struct Frontd;

impl common::daemon::Daemon for Frontd {
    const ABOUT: &'static str = "front node: directory, mailHost routing and the IMAP/POP3 login proxy";
    const LOG_FILTER: &'static str = "info";

    fn run(config: &Path) -> anyhow::Result<()> {
        let cfg = crate::config::Config::load(config)?;
        common::daemon::runtime()?.block_on(crate::server::run(cfg, Some(config.to_path_buf())))?;
        Ok(())
    }
}
