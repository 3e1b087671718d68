//! The real `mailctl` command line, built into this package so the whole-system tests can
//! run it by path (Cargo names only a package's own binaries to its tests).

fn main() -> anyhow::Result<()> {
    tools::mailctl::cli::run_from(std::env::args())
}
