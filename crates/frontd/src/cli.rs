//! The `frontd` command line: arguments, logging, and the daemon's run. The binary's
//! `main` calls [`main`]; the whole-system tests build the same entry point into their own
//! binary of the same name.

use clap::Parser;

#[derive(Parser, Debug)]
#[command(version, about = "front node: directory, mailHost routing and the IMAP/POP3 login proxy")]
struct Args {
    /// Path of the TOML configuration.
    #[arg(long, short)]
    config: std::path::PathBuf,
}

/// Parse the command line and run the daemon until it is stopped.
#[tokio::main]
pub async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let args = Args::parse();
    let cfg = crate::config::Config::load(&args.config)?;
    crate::server::run(cfg).await?;
    Ok(())
}
