//! `imap-load`: run the IMAP command mix against any server and print JSON figures.
//!
//! `imap-load --server 127.0.0.1:143 --users 'user{}@example.edu' --password pw --sessions 16 --seconds 10`

use std::time::Duration;

use clap::Parser;
use tools::imap_load::{run, Load, Profile};

#[derive(Parser, Debug)]
struct Args {
    #[arg(long)]
    server: String,
    /// User name pattern; `{}` is replaced by the session number.
    #[arg(long, default_value = "user{}@example.edu")]
    users: String,
    #[arg(long)]
    password: String,
    #[arg(long, default_value_t = 16)]
    sessions: usize,
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    #[arg(long, default_value_t = 4096)]
    append_bytes: usize,
    /// The command mix.
    #[arg(long, value_enum, default_value_t = Profile::Mixed)]
    profile: Profile,
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let logins = (0..a.sessions).map(|k| (a.users.replace("{}", &k.to_string()), a.password.clone())).collect();
    let stats = run(&Load {
        server: a.server,
        logins,
        duration: Duration::from_secs_f64(a.seconds),
        append_bytes: a.append_bytes,
        profile: a.profile,
    });
    println!("{}", serde_json::to_string_pretty(&stats)?);
    Ok(())
}
