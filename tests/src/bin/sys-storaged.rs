//! The real `storaged` entry point, built into this package so the whole-system tests can
//! start it by path (Cargo names only a package's own binaries to its tests).

fn main() -> anyhow::Result<()> {
    common::daemon::main::<storaged::cli::Storaged>()
}
