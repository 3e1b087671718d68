//! `frontd`: a front node. Usage: `frontd --config frontd.toml`.

fn main() -> anyhow::Result<()> {
    common::daemon::main::<frontd::cli::Frontd>()
}
