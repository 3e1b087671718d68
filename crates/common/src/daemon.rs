//! What every daemon's `main` does before its own work: logging to stderr filtered by
//! `RUST_LOG` (or a default), and the multi-threaded tokio runtime it runs on.

/// Log to stderr, filtered by `RUST_LOG`, else by `default_filter`.
pub fn init_logging(default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default_filter.into());
    tracing_subscriber::fmt().with_writer(std::io::stderr).with_env_filter(filter).init();
}

/// The runtime a daemon runs on.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build()
}
