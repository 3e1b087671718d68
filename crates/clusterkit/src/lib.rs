//! How a cluster on one machine is made, one way for `mailctl up`, the tests, the chaos
//! harness and the benchmarks: storage node and front configurations built as the daemons'
//! own `Config` values (so a new setting is one edit, in its daemon), written as TOML owner-only,
//! and certificates made with rcgen (no `openssl` command). What this must never do: write
//! a configuration by hand-typed TOML text.

pub mod certs;
pub mod front;
pub mod scanners;
pub mod storage;

/// Write `text` to `path`, readable by its owner only: configurations name secrets' files
/// and hold password hashes, and keys are secrets.
pub fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    // Created 0600, never readable by others even for a moment; an existing file is
    // narrowed before it is rewritten.
    if path.exists() {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    f.write_all(text.as_bytes())
}
