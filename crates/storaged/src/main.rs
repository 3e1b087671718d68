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
    raise_open_file_limit();
    let cfg = storaged::config::Config::load(&args.config)?;
    storaged::node::run(cfg).await
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
