//! The `frontd` command line: arguments, logging, and the daemon's run. The binary's
//! `main` calls [`main`]; the whole-system tests build the same entry point into their own
//! binary of the same name, and `mailctl` runs it as a subcommand ([`run_from`]).

const ABOUT: &str = "front node: directory, mailHost routing and the IMAP/POP3 login proxy";

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
    let config = common::daemon::start(args, ABOUT, "info");
    let cfg = crate::config::Config::load(&config)?;
    common::daemon::runtime()?.block_on(crate::server::run(cfg))?;
    Ok(())
}
