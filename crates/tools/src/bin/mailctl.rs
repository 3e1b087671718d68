//! `mailctl`: run and administer a mailstore cluster. `mailctl up` starts a local one.

fn main() -> anyhow::Result<()> {
    // Everything mailctl writes (configurations, keys, users.ldif with its password hashes)
    // and every daemon it starts keeps files to its owner.
    common::daemon::private_files();
    tools::mailctl::cli::run_from(std::env::args())
}
