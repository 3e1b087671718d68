//! The `storaged` daemon: what it tells `--help`, how it logs by default, and its run. The
//! binary's `main`, the whole-system tests' binary of the same name and `mailctl`'s
//! subcommand all start it through [`common::daemon`].

use std::path::Path;

/// The storage node daemon.
pub struct Storaged;

impl common::daemon::Daemon for Storaged {
    const ABOUT: &'static str = "storage node: Raft-replicated Maildir store with LMTP delivery";
    const LOG_FILTER: &'static str = "info,openraft=warn";

    fn run(config: &Path) -> anyhow::Result<()> {
        // Storage-fault tests name fail points in FAILPOINTS; a build without the `failpoints`
        // feature of `fail` (every release build) has none, and this does nothing.
        let _failpoints = fail::FailScenario::setup();
        if let Ok(points) = std::env::var("FAILPOINTS") {
            if fail::has_failpoints() {
                tracing::warn!(%points, "fail points configured: storage faults will be injected");
            } else {
                tracing::warn!("FAILPOINTS is set, but this build has no fail points: ignored");
            }
        }
        let cfg = crate::config::Config::load(config)?;
        let tightened = common::daemon::tighten_tree(&cfg.data_dir)?;
        if tightened > 0 {
            tracing::warn!(entries = tightened, dir = %cfg.data_dir.display(), "data was readable by others; now owner-only");
        }
        Ok(common::daemon::runtime()?.block_on(crate::node::run(cfg))?)
    }
}
