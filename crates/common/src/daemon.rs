//! What every daemon's `main` does before its own work: logging to stderr filtered by
//! `RUST_LOG` (or a default), and the multi-threaded tokio runtime it runs on.

/// Log to stderr, filtered by `RUST_LOG`, else by `default_filter`.
pub fn init_logging(default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default_filter.into());
    tracing_subscriber::fmt().with_writer(std::io::stderr).with_env_filter(filter).init();
}

/// The stack each runtime worker thread gets. Every walk over untrusted structure (MIME,
/// IMAP commands, directory data) is iterative or bounded in depth by a constant of its
/// own, and its tests run it on a thread with a quarter of this.
pub const THREAD_STACK_BYTES: usize = 2 * 1024 * 1024;

/// The runtime a daemon runs on.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().thread_stack_size(THREAD_STACK_BYTES).enable_all().build()
}
