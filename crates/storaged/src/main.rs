//! `storaged`: a storage node. Usage: `storaged --config storaged.toml`.

use clap::Parser;

#[derive(Parser, Debug)]
#[command(version, about = "storage node: Raft-replicated Maildir store with LMTP delivery")]
struct Args {
    /// Path of the TOML configuration.
    #[arg(long, short)]
    config: std::path::PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,openraft=warn".into()),
        )
        .init();
    let args = Args::parse();
    let cfg = storaged::config::Config::load(&args.config)?;
    storaged::node::run(cfg).await
}
