//! The daemons the tools start as child processes of their own binary (`mailctl up`,
//! `chaos`): one hidden subcommand per daemon that runs its real entry point, so a tool
//! needs no second binary to be installed beside it.

use clap::Subcommand;

/// `storaged ...` or `frontd ...`, with the daemon's own arguments.
#[derive(Subcommand, Debug)]
pub enum Daemon {
    /// Run a storage node: `storaged --config FILE`.
    #[command(hide = true, disable_help_flag = true)]
    Storaged {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run a front node: `frontd --config FILE`.
    #[command(hide = true, disable_help_flag = true)]
    Frontd {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

impl Daemon {
    /// Run the daemon until it stops.
    pub fn run(self) -> anyhow::Result<()> {
        match self {
            Daemon::Storaged { args } => common::daemon::run_from::<storaged::cli::Storaged, _, _>(
                std::iter::once("storaged".to_string()).chain(args),
            ),
            Daemon::Frontd { args } => {
                common::daemon::run_from::<frontd::cli::Frontd, _, _>(std::iter::once("frontd".to_string()).chain(args))
            }
        }
    }
}
