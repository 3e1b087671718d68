//! `mailctl`: run and administer a mailstore cluster. `mailctl up` starts a local one.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use tools::mailctl::admin::{Admin, QueueId};

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
    /// Groups, members, leaders, log indexes, lag, disk use, users and queue per group.
    Status {
        /// A front's configuration (lists the nodes and the cluster key).
        #[arg(long, default_value = "mailctl-data/frontd.toml")]
        config: PathBuf,
    },
    /// The outbound queue.
    Queue {
        /// A front's configuration (lists the nodes and the cluster key).
        #[arg(long, default_value = "mailctl-data/frontd.toml", global = true)]
        config: PathBuf,
        #[command(subcommand)]
        action: QueueAction,
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

#[derive(Subcommand, Debug)]
enum QueueAction {
    /// Every queued message: id, size, age, attempts, sender, pending recipients.
    List,
    /// One message: envelope, each recipient's state, the message header.
    Show { id: QueueId },
    /// Try messages now (all of them without ids).
    Flush { ids: Vec<QueueId> },
    /// Drop messages without delivering them (no bounce).
    Delete {
        #[arg(required = true)]
        ids: Vec<QueueId>,
    },
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}

fn status(config: &std::path::Path) -> anyhow::Result<()> {
    let admin = Admin::open(config)?;
    let nodes = runtime()?.block_on(admin.status());
    print!("{}", tools::mailctl::admin::render_status(&nodes));
    if nodes.iter().all(|(_, _, s)| s.is_err()) {
        anyhow::bail!("no storage node answered");
    }
    Ok(())
}

fn queue(config: &std::path::Path, action: QueueAction) -> anyhow::Result<()> {
    use tools::mailctl::admin::{render_item, render_queue};
    let admin = Admin::open(config)?;
    let rt = runtime()?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs() as i64;
    match action {
        QueueAction::List => print!("{}", render_queue(&rt.block_on(admin.queue_list())?, now)),
        QueueAction::Show { id } => {
            let (item, body) = rt.block_on(admin.queue_show(&id))?;
            print!("{}", render_item(&id.group, &item, body.as_deref()));
        }
        QueueAction::Flush { ids } => {
            rt.block_on(admin.queue_flush(&ids))?;
            println!("flushed");
        }
        QueueAction::Delete { ids } => {
            rt.block_on(admin.queue_delete(&ids))?;
            println!("deleted {} message(s)", ids.len());
        }
    }
    Ok(())
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
        Cmd::Status { config } => status(&config),
        Cmd::Queue { config, action } => queue(&config, action),
        Cmd::Storaged { args } => storaged::cli::run_from(std::iter::once("storaged".to_string()).chain(args)),
        Cmd::Frontd { args } => frontd::cli::run_from(std::iter::once("frontd".to_string()).chain(args)),
    }
}
