//! `mailctl`: run and administer a mailstore cluster. `mailctl up` starts a local one.

fn main() -> anyhow::Result<()> {
    tools::mailctl::cli::run_from(std::env::args())
}
