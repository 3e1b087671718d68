//! `frontd`: a front node. Usage: `frontd --config frontd.toml`.

use clap::Parser;

#[derive(Parser, Debug)]
#[command(version, about = "front node: directory, mailHost routing and the IMAP/POP3 login proxy")]
struct Args {
    /// Path of the TOML configuration.
    #[arg(long, short)]
    config: std::path::PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let args = Args::parse();
    let cfg = frontd::config::Config::load(&args.config)?;
    frontd::server::run(cfg).await?;
    Ok(())
}
