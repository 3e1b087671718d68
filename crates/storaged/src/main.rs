//! `storaged`: a storage node. Usage: `storaged --config storaged.toml`.

fn main() -> anyhow::Result<()> {
    storaged::cli::main()
}
