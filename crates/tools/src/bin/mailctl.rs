//! `mailctl`: run and administer a mailstore cluster. `mailctl up` starts a local one.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(version, about = "run and administer a mailstore cluster")]
struct Args {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Start a local cluster on loopback (3 storage nodes, 2 mailhosts, 1 front node) and
    /// run it until Ctrl-C.
    Up {
        /// Data, configs, secrets and logs.
        #[arg(long, default_value = "mailctl-data")]
        dir: PathBuf,
        /// Listeners are at this base + 143 (IMAP), 993, 110, 995 and internal ports above.
        #[arg(long, default_value_t = 10000)]
        port_base: u16,
    },
    /// Run a storage node (how `up` starts them): `mailctl storaged --config FILE`.
    #[command(hide = true, disable_help_flag = true)]
    Storaged {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run a front node (how `up` starts them): `mailctl frontd --config FILE`.
    #[command(hide = true, disable_help_flag = true)]
    Frontd {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() -> anyhow::Result<()> {
    match Args::parse().command {
        Cmd::Up { dir, port_base } => tools::mailctl::up::run(&dir, port_base),
        Cmd::Storaged { args } => storaged::cli::run_from(std::iter::once("storaged".to_string()).chain(args)),
        Cmd::Frontd { args } => frontd::cli::run_from(std::iter::once("frontd".to_string()).chain(args)),
    }
}
