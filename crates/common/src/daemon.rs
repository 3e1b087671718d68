//! What every daemon's `main` does before its own work: its command line (`--config`),
//! logging to stderr filtered by `RUST_LOG` (or a default), files private to the daemon's
//! user, and the multi-threaded tokio runtime it runs on. A daemon names itself and its
//! run with [`Daemon`]; [`main`] and [`run_from`] are every daemon's entry points.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use clap::{CommandFactory, FromArgMatches, Parser};

/// A daemon's command line: where its configuration is.
#[derive(Parser, Debug)]
#[command(version)]
struct DaemonArgs {
    /// Path of the TOML configuration.
    #[arg(long, short)]
    config: PathBuf,
    /// `text` (one line per event; colours only on a terminal) or `json` (one object per line).
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
}

/// What a daemon brings to the shared entry points: its `--help` line, its default log
/// filter, and its run once the process is prepared.
pub trait Daemon {
    /// The one line `--help` prints.
    const ABOUT: &'static str;
    /// The log filter when `RUST_LOG` is unset.
    const LOG_FILTER: &'static str;
    /// Load the configuration at `config` and serve until stopped.
    fn run(config: &Path) -> anyhow::Result<()>;
}

/// Parse the process's command line and run daemon `D` until it is stopped.
pub fn main<D: Daemon>() -> anyhow::Result<()> {
    run_from::<D, _, _>(std::env::args_os())
}

/// Run daemon `D` with these arguments (the first is the program name): for a multi-call
/// binary such as `mailctl`, which starts the daemons as its own subcommands.
pub fn run_from<D, I, T>(args: I) -> anyhow::Result<()>
where
    D: Daemon,
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let config = start(args, D::ABOUT, D::LOG_FILTER);
    D::run(&config)
}

/// Parse a daemon's command line (`args`, the program name first; `--help` and errors print
/// and exit as usual), then prepare the process: logging with `log_filter` unless `RUST_LOG`
/// says otherwise, private files, freed large buffers returned to the kernel. The
/// configuration file's path.
pub fn start<I, T>(args: I, about: &'static str, log_filter: &str) -> PathBuf
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let matches = DaemonArgs::command().about(about).get_matches_from(args);
    let args = DaemonArgs::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    init_logging_as(log_filter, args.log_format == "json");
    private_files();
    return_large_buffers();
    raise_open_file_limit();
    trim_freed_memory_periodically();
    args.config
}

/// Every connection is a file descriptor (two at a front: the client's and the node's):
/// take the hard limit, not the soft one (often 1,024), so the daemons' own connection
/// limits are what refuses a client.
pub fn raise_open_file_limit() {
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

/// Log to stderr, filtered by `RUST_LOG`, else by `default_filter`. Every field and message
/// is written through [`escape_controls`]: a login name, an envelope address or a remote
/// server's reply is the stranger's text, and must never start a forged line of its own.
pub fn init_logging(default_filter: &str) {
    init_logging_as(default_filter, false)
}

/// As [`init_logging`]; `json`: one JSON object per event (fields JSON-escaped). Text has
/// colour codes only when stderr is a terminal: a log file or journal gets plain lines.
pub fn init_logging_as(default_filter: &str, json: bool) {
    use std::io::IsTerminal;
    use tracing_subscriber::field::MakeExt;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default_filter.into());
    if json {
        tracing_subscriber::fmt().json().with_writer(std::io::stderr).with_env_filter(filter).init();
        return;
    }
    let fields = tracing_subscriber::fmt::format::debug_fn(|w, field, value| {
        let raw = format!("{value:?}");
        let text = escape_controls(&raw);
        if field.name() == "message" {
            write!(w, "{text}")
        } else {
            write!(w, "{field}={text}")
        }
    })
    .delimited(" ");
    let ansi = std::io::stderr().is_terminal();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_env_filter(filter)
        .fmt_fields(fields)
        .init();
}

/// `text` with every control character (line breaks, escape sequences, NUL) written as a
/// Rust escape, so a log record stays one line whatever its fields hold. Strings recorded as
/// field values arrive here already quoted and escaped by `Debug`; values logged with `%`
/// (Display) and messages arrive raw and are escaped here.
pub fn escape_controls(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return text.into();
    }
    text.chars()
        .map(|c| if c.is_control() { c.escape_default().collect::<String>() } else { c.to_string() })
        .collect::<String>()
        .into()
}

/// The stack each runtime worker thread gets. Every walk over untrusted structure (MIME,
/// IMAP commands, directory data) is iterative or bounded in depth by a constant of its
/// own, and its tests run it on a thread with a quarter of this.
pub const THREAD_STACK_BYTES: usize = 2 * 1024 * 1024;

/// The runtime a daemon runs on.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().thread_stack_size(THREAD_STACK_BYTES).enable_all().build()
}

/// Everything this process creates from now on is its owner's alone: files 0600 and
/// directories 0700 (mail, Raft segments, state, keys), as Dovecot keeps a mailbox. Child
/// processes inherit it.
pub fn private_files() {
    // SAFETY: umask only sets this process's file mode creation mask; it cannot fail.
    unsafe { libc::umask(0o077) };
}

/// Allocations of this size and above get pages of their own from the kernel, and give
/// them back when freed.
const MMAP_THRESHOLD_BYTES: i32 = 256 << 10;

/// Message bodies, literals and replication buffers are large and short-lived: give their
/// memory back to the kernel when they are freed. glibc otherwise raises its mmap threshold
/// after each large free (up to 32 MiB), and later bodies of that size come from heap
/// arenas that are seldom trimmed. Under 50 concurrent 32 MiB SMTP transactions frontd
/// peaked anywhere from 144 to 282 MiB against 112 MiB of live bodies; with a fixed
/// threshold, 131–135 MiB (`tests/tests/limits.rs`). A no-op on other C libraries.
pub fn return_large_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes glibc's allocation policy for later allocations; it is
    // called at start, before the runtime's threads exist, and a refusal (0) is harmless.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES);
    }
}

/// How often the heap is checked for freed memory to give back.
const TRIM_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);
/// Free bytes inside the heap's arenas below which a check does nothing: a trim walks every
/// arena under its lock, which is only worth it for a burst's worth of memory.
const TRIM_FREE_MIN_BYTES: usize = 4 << 20;

/// Give freed heap memory back to the kernel every [`TRIM_INTERVAL`] once at least
/// [`TRIM_FREE_MIN_BYTES`] of it accumulated. glibc returns only the top of each arena by
/// itself, and a burst of logins leaves its temporaries freed between long-lived session
/// state: after 1,000 first logins through a front, `malloc_trim` took the leader from 58 to
/// 19 MiB and the front from 29 to 14 MiB with every session still open (`idle-bench`).
/// A no-op on other C libraries.
fn trim_freed_memory_periodically() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let spawned = std::thread::Builder::new().name("heap-trim".into()).spawn(|| loop {
            std::thread::sleep(TRIM_INTERVAL);
            // SAFETY: mallinfo2 and malloc_trim take glibc's arena locks themselves and
            // touch no memory of ours; both are safe to call from any thread at any time.
            unsafe {
                if libc::mallinfo2().fordblks >= TRIM_FREE_MIN_BYTES {
                    libc::malloc_trim(0);
                }
            }
        });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the heap trimmer");
        }
    }
}

/// Take away group and other access from `dir` and everything below it, if `dir` itself
/// still has any (a tree an earlier version, or another umask, left readable): files keep
/// their owner bits, directories become 0700. Symbolic links are not followed. Iterative,
/// so any depth is fine. How many entries were changed.
pub fn tighten_tree(dir: &Path) -> std::io::Result<usize> {
    let meta = match std::fs::symlink_metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    if meta.permissions().mode() & 0o077 == 0 {
        return Ok(0);
    }
    let mut changed = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(path) = pending.pop() {
        let meta = std::fs::symlink_metadata(&path)?;
        if meta.file_type().is_symlink() {
            continue;
        }
        let mode = meta.permissions().mode() & 0o7777;
        let tight = if meta.is_dir() { 0o700 } else { mode & 0o700 };
        if mode != tight {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(tight))?;
            changed += 1;
        }
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path)? {
                pending.push(entry?.path());
            }
        }
    }
    Ok(changed)
}

/// Tell a service manager (systemd's `Type=notify`) that the daemon serves: every listener
/// is bound. With `WatchdogSec=` it also starts pinging the watchdog at half its interval
/// from the daemon's runtime, so a wedged runtime gets the daemon restarted. Without
/// `NOTIFY_SOCKET` (not under systemd) this does nothing. Call it inside the runtime.
pub fn ready() {
    if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
        tracing::warn!(error = %e, "cannot tell the service manager we are ready");
    }
    let Some(interval) = sd_notify::watchdog_enabled() else { return };
    tracing::info!(interval_ms = interval.as_millis() as u64, "pinging the service manager's watchdog");
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval / 2);
        loop {
            tick.tick().await;
            if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]) {
                tracing::warn!(error = %e, "watchdog ping failed");
            }
        }
    });
}

/// Tell a service manager the daemon is stopping (nothing without `NOTIFY_SOCKET`).
pub fn stopping() {
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_never_reach_a_log_line() {
        assert_eq!(escape_controls("alice"), "alice");
        assert_eq!(escape_controls("a\r\nb\x1b[31m\0"), "a\\r\\nb\\u{1b}[31m\\u{0}");
        assert!(!escape_controls("x\u{85}y").contains('\u{85}'));
    }

    #[test]
    fn a_readable_tree_is_tightened_once() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("data");
        let deep = root.join("g/mail/users/a/Maildir/cur");
        std::fs::create_dir_all(&deep).unwrap();
        let file = deep.join("1.msg");
        std::fs::write(&file, "x").unwrap();
        for p in [&root, &deep, &file] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        assert!(tighten_tree(&root).unwrap() >= 3);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&root), 0o700);
        assert_eq!(mode(&deep), 0o700);
        assert_eq!(mode(&file), 0o700 & 0o755);
        assert_eq!(tighten_tree(&root).unwrap(), 0, "a tight tree is not walked again");
        assert_eq!(tighten_tree(&tmp.path().join("missing")).unwrap(), 0);
    }
}
