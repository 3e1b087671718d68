//! The `storaged` command line: arguments, logging, and the daemon's run. The binary's
//! `main` calls [`main`]; the whole-system tests build the same entry point into their own
//! binary of the same name, and `mailctl` runs it as a subcommand ([`run_from`]).

const ABOUT: &str = "storage node: Raft-replicated Maildir store with LMTP delivery";

/// Parse the command line and run the daemon until it is stopped.
pub fn main() -> anyhow::Result<()> {
    run_from(std::env::args_os())
}

/// Run the daemon with these arguments (the first is the program name): for a multi-call
/// binary such as `mailctl`, which starts the daemons as its own subcommands.
pub fn run_from<I, T>(args: I) -> anyhow::Result<()>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let config = common::daemon::start(args, ABOUT, "info,openraft=warn");
    // Storage-fault tests name fail points in FAILPOINTS; a build without the `failpoints`
    // feature of `fail` (every release build) has none, and this does nothing.
    let _failpoints = fail::FailScenario::setup();
    raise_open_file_limit();
    let cfg = crate::config::Config::load(&config)?;
    let tightened = common::daemon::tighten_tree(&cfg.data_dir)?;
    if tightened > 0 {
        tracing::warn!(entries = tightened, dir = %cfg.data_dir.display(), "data was readable by others; now owner-only");
    }
    common::daemon::runtime()?.block_on(crate::node::run(cfg))
}

/// Every connection is a file descriptor: use the hard limit, not the (often 1024) soft one.
fn raise_open_file_limit() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                tracing::warn!("cannot raise the open file limit");
            }
        }
    }
}
