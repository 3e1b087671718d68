//! `mailctl`: run and administer a mailstore cluster. `mailctl up` starts a local one.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(version, about = "run and administer a mailstore cluster")]
struct Args {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Start a local cluster on loopback (3 storage nodes, 2 mailhosts, 1 front node) and
    /// run it until Ctrl-C.
    Up {
        /// Data, configs, secrets and logs.
        #[arg(long, default_value = "mailctl-data")]
        dir: PathBuf,
        /// Listeners are at this base + 143 (IMAP), 993, 110, 995 and internal ports above.
        #[arg(long, default_value_t = 10000)]
        port_base: u16,
    },
    /// Users of an LDIF directory (frontd re-reads it); --print-ldif for LDAP.
    User {
        /// The directory file.
        #[arg(long, default_value = "mailctl-data/users.ldif", global = true)]
        ldif: PathBuf,
        /// Print the change as LDIF (for ldapmodify) instead of editing the file.
        #[arg(long, global = true)]
        print_ldif: bool,
        #[command(subcommand)]
        action: UserAction,
    },
    /// Run a storage node (how `up` starts them): `mailctl storaged --config FILE`.
    #[command(hide = true, disable_help_flag = true)]
    Storaged {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run a front node (how `up` starts them): `mailctl frontd --config FILE`.
    #[command(hide = true, disable_help_flag = true)]
    Frontd {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

#[derive(Subcommand, Debug)]
enum UserAction {
    /// Every user: address, mailhost, status, aliases.
    List,
    /// One user's entry (the password hash hidden).
    Show { address: String },
    /// A new user; a password is generated and shown unless --password is given.
    Add {
        address: String,
        #[arg(long)]
        mailhost: String,
        #[arg(long = "alias")]
        aliases: Vec<String>,
        #[arg(long)]
        password: Option<String>,
        /// Where the entry goes.
        #[arg(long, default_value = "dc=example,dc=edu")]
        base: String,
    },
    /// A new password (generated and shown unless --password is given).
    Passwd {
        address: String,
        #[arg(long)]
        password: Option<String>,
    },
    /// Refuse logins and deliveries (temporarily) for a user.
    Disable { address: String },
    /// Undo `disable`.
    Enable { address: String },
}

fn user(ldif: &std::path::Path, print_ldif: bool, action: UserAction) -> anyhow::Result<()> {
    use tools::mailctl::users;
    let write = !print_ldif;
    let change = match action {
        UserAction::List => {
            users::list(ldif)?.iter().for_each(|l| println!("{l}"));
            return Ok(());
        }
        UserAction::Show { address } => {
            print!("{}", users::show(ldif, &address)?);
            return Ok(());
        }
        UserAction::Add { address, mailhost, aliases, password, base } => {
            users::add(ldif, &address, &mailhost, &aliases, password.as_deref(), &base, write)?
        }
        UserAction::Passwd { address, password } => users::passwd(ldif, &address, password.as_deref(), write)?,
        UserAction::Disable { address } => users::set_status(ldif, &address, "disabled", write)?,
        UserAction::Enable { address } => users::set_status(ldif, &address, "active", write)?,
    };
    if print_ldif {
        print!("{}", change.ldif);
    } else {
        println!("{} updated", ldif.display());
    }
    if let Some(p) = change.generated_password {
        println!("password: {p}");
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    match Args::parse().command {
        Cmd::User { ldif, print_ldif, action } => user(&ldif, print_ldif, action),
        Cmd::Up { dir, port_base } => tools::mailctl::up::run(&dir, port_base),
        Cmd::Storaged { args } => storaged::cli::run_from(std::iter::once("storaged".to_string()).chain(args)),
        Cmd::Frontd { args } => frontd::cli::run_from(std::iter::once("frontd".to_string()).chain(args)),
    }
}
