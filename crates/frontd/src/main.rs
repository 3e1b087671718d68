//! `frontd`: a front node. Usage: `frontd --config frontd.toml`.

fn main() -> anyhow::Result<()> {
    frontd::cli::main()
}
