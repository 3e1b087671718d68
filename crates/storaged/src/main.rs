//! `storaged`: a storage node. Usage: `storaged --config storaged.toml`.

fn main() -> anyhow::Result<()> {
    common::daemon::main::<storaged::cli::Storaged>()
}
