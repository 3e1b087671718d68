//! The `mailctl` command line: argument parsing and dispatch to the `mailctl` modules.
//! The binary (and the test crate's copy of it) only calls [`run_from`].

use std::path::PathBuf;

use super::admin::{Admin, QueueId};
use super::directory::{LdapAdmin, UserDirectory};
use anyhow::Context;
use clap::{Parser, Subcommand};
use common::admin::{AdminReply, AdminRequest};

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
        /// DNS server (IP:port) the front asks for MX records of remote domains, instead of
        /// the system's resolver; repeatable.
        #[arg(long = "dns-server", value_name = "IP:PORT")]
        dns_servers: Vec<std::net::SocketAddr>,
    },
    /// Users of an LDIF directory (frontd re-reads it); --print-ldif for LDAP.
    User {
        /// The directory file.
        #[arg(long, default_value = "mailctl-data/users.ldif", global = true)]
        ldif: PathBuf,
        /// Print the change as LDIF (for ldapmodify) instead of editing the file.
        #[arg(long, global = true)]
        print_ldif: bool,
        /// A front's configuration: the mailhosts `add` may name, and where `show` asks for
        /// the login history.
        #[arg(long, default_value = "mailctl-data/frontd.toml", global = true)]
        config: PathBuf,
        #[command(subcommand)]
        action: UserAction,
    },
    /// Groups, members, leaders, log indexes, lag, disk use, users and queue per group.
    Status {
        /// A front's configuration (lists the nodes and the cluster key).
        #[arg(long, default_value = "mailctl-data/frontd.toml")]
        config: PathBuf,
        /// Print JSON for scripts instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Where messages went: the front that received each, every recipient's fate, the
    /// group and log index that committed it, the queue, the remote hosts' replies,
    /// bounces. Give at least one of --message-id, --from, --to.
    Trace {
        /// A front's configuration (lists the nodes and the cluster key).
        #[arg(long, default_value = "mailctl-data/frontd.toml")]
        config: PathBuf,
        /// The message's Message-ID (with or without angle brackets); repeatable.
        #[arg(long = "message-id", value_name = "ID")]
        message_ids: Vec<String>,
        /// The sender contains this.
        #[arg(long)]
        from: Option<String>,
        /// A recipient contains this.
        #[arg(long)]
        to: Option<String>,
        /// Only records since: a date (2026-12-06), a time (RFC 3339) or an age (90m, 6h, 2d).
        #[arg(long)]
        since: Option<String>,
        /// Print the records as JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Bring back messages a user expunged or a folder they deleted (kept `[retention]
    /// keep_s`, 30 days by default): the same bytes and flags, new UIDs.
    Restore {
        /// The user (address or uid).
        user: String,
        /// A front's configuration (lists the nodes, the cluster key and the directory).
        #[arg(long, default_value = "mailctl-data/frontd.toml")]
        config: PathBuf,
        /// Only messages that were in this folder.
        #[arg(long)]
        folder: Option<String>,
        /// Only messages removed since: a date (2026-12-06), a time (RFC 3339) or an age (90m, 6h, 2d).
        #[arg(long)]
        since: Option<String>,
        /// Only the message with this Message-ID.
        #[arg(long = "message-id", value_name = "ID")]
        message_id: Option<String>,
        /// File them into this folder (made if missing) instead of where each was.
        #[arg(long, value_name = "FOLDER")]
        into: Option<String>,
        /// List the kept messages; restore nothing.
        #[arg(long)]
        list: bool,
        /// Restore the user's whole mail (or with --list, list the kept mail; with --kept,
        /// restore kept mail) from this backup node's replica: for when the voters lost
        /// their data or purged it.
        #[arg(long, value_name = "NODE")]
        from_backup: Option<u64>,
        /// With --from-backup: restore the backup's kept (expunged, deleted) mail that
        /// --folder, --since and --message-id choose, instead of the whole mail.
        #[arg(long, requires = "from_backup")]
        kept: bool,
    },
    /// A user's own retention of expunged mail and deleted folders: show it, or set it
    /// (90d, 12h, ...; `default`: the site's `[retention] keep_s` again).
    Retention {
        /// The user (address or uid).
        user: String,
        /// The new retention; none: show the current one.
        keep: Option<String>,
        /// A front's configuration (lists the nodes, the cluster key and the directory).
        #[arg(long, default_value = "mailctl-data/frontd.toml")]
        config: PathBuf,
    },
    /// Backup nodes: learners that copy a group's log without voting and may keep expunged
    /// mail longer (`[retention] backup_keep_s` in their configuration).
    Backup {
        /// A front's configuration (lists the nodes and the cluster key).
        #[arg(long, default_value = "mailctl-data/frontd.toml", global = true)]
        config: PathBuf,
        #[command(subcommand)]
        action: BackupAction,
    },
    /// Write a user's mail as a Maildir++ tree with Dovecot's dovecot-uidlist, dovecot-keywords
    /// and subscriptions, so a Dovecot serves it with the same UIDs (the state at one log
    /// index; the user keeps working).
    Export {
        /// The user (address or uid).
        user: String,
        /// A new (or empty) directory to write the Maildir into.
        dir: PathBuf,
        /// A front's configuration (lists the nodes, the cluster key and the directory).
        #[arg(long, default_value = "mailctl-data/frontd.toml")]
        config: PathBuf,
    },
    /// Import an existing Maildir++ tree (Dovecot's or Courier's) into a user's mailhost,
    /// keeping UIDVALIDITY, UIDs, flags, keywords, internal dates and subscriptions.
    /// Resumable: run it again after an interruption. Exits non-zero if anything was not
    /// imported as it stood (each named).
    Import {
        /// The user (address or uid).
        user: String,
        /// The Maildir to read (the directory holding cur/, new/ and the .Folder directories).
        #[arg(required_unless_present = "from_imap", conflicts_with = "from_imap")]
        src: Option<PathBuf>,
        /// Read a live IMAP server instead: imap[s]://LOGIN@HOST[:PORT] (read-only; the
        /// password from --password-file; imaps:// is implicit TLS, imap:// STARTTLS, in the
        /// clear only to a loopback server that offers no STARTTLS).
        #[arg(long, value_name = "URL", requires = "password_file")]
        from_imap: Option<String>,
        /// A file holding the old server's password (never given on the command line).
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
        /// The CA certificates (PEM) the old server's certificate is checked against.
        #[arg(long, value_name = "FILE", default_value = "/etc/ssl/certs/ca-certificates.crt")]
        ca_file: PathBuf,
        /// A front's configuration (lists the nodes, the cluster key and the directory).
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
    /// What the scanning stages did with mail: the top fates, the top viruses.
    Report {
        /// A front's configuration (lists the nodes and the cluster key).
        #[arg(long, default_value = "mailctl-data/frontd.toml", global = true)]
        config: PathBuf,
        #[command(subcommand)]
        what: ReportWhat,
    },
    /// What the scanning stage held back for a user (their Quarantine mailbox).
    Quarantine {
        /// A front's configuration (lists the nodes, the cluster key and the directory).
        #[arg(long, default_value = "mailctl-data/frontd.toml", global = true)]
        config: PathBuf,
        #[command(subcommand)]
        action: QuarantineAction,
    },
    /// Move a user's mail to another mailhost, online (see `mailctl move --help`).
    Move {
        /// The user (address or uid).
        user: Option<String>,
        /// The mailhost (group) to move to.
        target: Option<String>,
        /// A front's configuration (lists the nodes, the cluster key and the LDIF directory).
        #[arg(long, default_value = "mailctl-data/frontd.toml")]
        config: PathBuf,
        /// How long the source copy is kept after the flip (0: deleted at once). The command
        /// returns at the flip; see --wait and --finish.
        #[arg(long, default_value_t = 3600)]
        grace_s: u64,
        /// Wait out the grace period after the flip, then delete the source copy.
        #[arg(long)]
        wait: bool,
        /// Undo an unfinished move: unfreeze the source, delete the partial copy on TARGET.
        #[arg(long)]
        rollback: bool,
        /// Finish a move after its grace period (or an interrupted one): delete the source
        /// copy on mailhost TARGET (the old one) of a user the directory already places
        /// elsewhere.
        #[arg(long, visible_alias = "cleanup")]
        finish: bool,
        /// Print bytes per mailhost and the moves that would even them out; move nothing.
        #[arg(long)]
        plan: bool,
        /// With an LDAP directory: the identity that may change `mailHost` (the front's
        /// search identity if not given).
        #[arg(long)]
        ldap_admin_dn: Option<String>,
        /// Its password, in a file.
        #[arg(long)]
        ldap_admin_password_file: Option<PathBuf>,
    },
    /// Raft membership of a group: replace a dead node without losing quorum.
    Group {
        /// A front's configuration (lists the nodes and the cluster key).
        #[arg(long, default_value = "mailctl-data/frontd.toml", global = true)]
        config: PathBuf,
        #[command(subcommand)]
        action: GroupAction,
    },
    /// Accounts the phish rules snagged: tickets, and release.
    Phish {
        /// A front's configuration (lists the nodes, the cluster key and the directory).
        #[arg(long, default_value = "mailctl-data/frontd.toml", global = true)]
        config: PathBuf,
        #[command(subcommand)]
        action: PhishAction,
    },
    /// The cluster's block list, refused on every listener of every front.
    Block {
        /// A front's configuration (lists the nodes and the cluster key).
        #[arg(long, default_value = "mailctl-data/frontd.toml", global = true)]
        config: PathBuf,
        #[command(subcommand)]
        action: BlockAction,
    },
    /// DKIM signing keys for submitted mail.
    Dkim {
        #[command(subcommand)]
        action: DkimAction,
    },
    /// The daemons `up` starts (`mailctl storaged|frontd --config FILE`).
    #[command(flatten)]
    Daemon(crate::daemons::Daemon),
}

#[derive(Subcommand, Debug)]
enum PhishAction {
    /// Every ticket: id, time, open or closed, user, rule, address.
    List,
    /// A user's tickets in full.
    Show { user: String },
    /// Unlock USER with a new password (printed), send their held mail on (or delete it
    /// with --delete-held) and close their tickets.
    Release {
        user: String,
        #[arg(long)]
        delete_held: bool,
    },
}

#[derive(Subcommand, Debug)]
enum BlockAction {
    /// Block a network (`192.0.2.7`, `198.51.100.0/24`) on every listener of every front.
    Add {
        network: String,
        #[arg(long, default_value_t = 30)]
        days: u64,
        #[arg(long, default_value = "blocked by the postmaster")]
        reason: String,
    },
    List,
    Remove {
        network: String,
    },
}

fn phish(config: &std::path::Path, action: PhishAction) -> anyhow::Result<()> {
    use super::phish as p;
    let admin = Admin::open_waiting(config, std::time::Duration::from_secs(20))?;
    let rt = runtime()?;
    match action {
        PhishAction::List => print!("{}", p::render_tickets(&rt.block_on(p::tickets(&admin))?)),
        PhishAction::Show { user } => print!("{}", p::render_user(&rt.block_on(p::tickets(&admin))?, &user)),
        PhishAction::Release { user, delete_held } => {
            let dir = UserDirectory::of_front(admin.front_config(), None)?;
            let password = rt.block_on(p::release(&admin, &dir, &user, delete_held))?;
            println!("{user} released; new password: {password}");
        }
    }
    Ok(())
}

fn block(config: &std::path::Path, action: BlockAction) -> anyhow::Result<()> {
    use super::phish as p;
    let admin = Admin::open_waiting(config, std::time::Duration::from_secs(20))?;
    let rt = runtime()?;
    match action {
        BlockAction::Add { network, days, reason } => {
            rt.block_on(p::block(&admin, &network, days, &reason))?;
            println!("{network} blocked for {days} days");
        }
        BlockAction::List => print!("{}", p::render_blocks(&rt.block_on(p::blocks(&admin))?)),
        BlockAction::Remove { network } => {
            rt.block_on(p::unblock(&admin, &network))?;
            println!("{network} unblocked");
        }
    }
    Ok(())
}

#[derive(Subcommand, Debug)]
enum DkimAction {
    /// Make an RSA key for DOMAIN, print the DNS TXT record to publish and the
    /// `[[dkim.keys]]` lines for frontd.toml.
    Keygen {
        domain: String,
        /// The selector: the record is published at SELECTOR._domainkey.DOMAIN.
        #[arg(long, default_value = "mail")]
        selector: String,
        /// Where the key file goes (0600).
        #[arg(long, default_value = "mailctl-data/dkim")]
        dir: PathBuf,
        #[arg(long, default_value_t = 2048)]
        bits: usize,
    },
}

fn dkim(action: DkimAction) -> anyhow::Result<()> {
    let DkimAction::Keygen { domain, selector, dir, bits } = action;
    let made = super::dkim::keygen(&domain, &selector, &dir, bits)?;
    println!("key written to {} (0600)", made.key_file.display());
    println!("\npublish this DNS record:\n{}", made.zone_line());
    println!(
        "\nand sign with it (frontd.toml):\n[[dkim.keys]]\ndomain = \"{}\"\nselector = \"{selector}\"\nkey_file = \"{}\"",
        domain.to_ascii_lowercase(),
        made.key_file.display()
    );
    Ok(())
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
    /// Delete a user: their entry leaves the directory and their mail (every folder) is
    /// kept on their mailhost for the retention, restorable with `mailctl restore` once
    /// the user is added again with the same mailhost.
    Delete { address: String },
    /// Refuse logins and deliveries (temporarily) for a user.
    Disable { address: String },
    /// Undo `disable`.
    Enable { address: String },
    /// Forward the user's mail (`mailForwardingAddress`); no --to: stop forwarding.
    Forward {
        address: String,
        #[arg(long = "to")]
        to: Vec<String>,
        /// Keep no copy in the user's own mailbox (`deliveryMode: nolocal`).
        #[arg(long)]
        only: bool,
    },
    /// Answer mail automatically (`mailReplyText`, `deliveryMode: reply`), once per sender
    /// per 14 days; --off stops it.
    Reply {
        address: String,
        #[arg(long, conflicts_with = "off", required_unless_present = "off")]
        text: Option<String>,
        #[arg(long)]
        off: bool,
    },
    /// Quota (`mailQuotaSize` bytes, `mailQuotaCount` messages) and largest message
    /// (`mailSizeMax`); 0 is unlimited.
    Quota {
        address: String,
        #[arg(long)]
        size: Option<u64>,
        #[arg(long)]
        count: Option<u64>,
        #[arg(long = "size-max")]
        size_max: Option<u64>,
    },
}

#[derive(Subcommand, Debug)]
enum GroupAction {
    /// Create a new mailhost group on running nodes (each must be in the front's map, for
    /// its admin address); the nodes remember it across restarts. Add it to the fronts'
    /// `[[groups]]` to route users to it.
    Add {
        name: String,
        /// `ID,RAFT_ADDR,LMTP_ADDR` of each member (the node's existing listeners).
        #[arg(long = "member", required = true)]
        members: Vec<String>,
    },
    /// Add node ID (its storaged already running with this group in its configuration):
    /// it joins as a learner, catches up (by snapshot if needed), then votes.
    AddNode {
        group: String,
        id: u64,
        /// The node's Raft address.
        #[arg(long)]
        raft: String,
    },
    /// Take node ID out of the group's voters (a dead node, or one being retired). Refused
    /// when the group would be left unable to survive one more failure, or when ID is its
    /// answering leader, unless --force.
    RemoveNode {
        group: String,
        id: u64,
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand, Debug)]
enum BackupAction {
    /// Make node ID (its storaged running with GROUP in its configuration) a backup of GROUP.
    AddNode {
        group: String,
        id: u64,
        /// The node's Raft address.
        #[arg(long)]
        raft: String,
    },
    /// Stop node ID backing up GROUP.
    RemoveNode { group: String, id: u64 },
    /// Each group's backups and how far each lags behind its leader.
    Status,
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

#[derive(Subcommand, Debug)]
enum ReportWhat {
    /// Top fates (clean, tagged, junk, quarantined, rejected, temp-failed, unscanned).
    Fates {
        #[arg(long, default_value_t = 7)]
        days: u32,
    },
    /// Top viruses by signature.
    Viruses {
        #[arg(long, default_value_t = 30)]
        days: u32,
    },
}

fn report(config: &std::path::Path, what: ReportWhat) -> anyhow::Result<()> {
    use super::report as r;
    let admin = Admin::open_waiting(config, std::time::Duration::from_secs(20))?;
    let rows = runtime()?.block_on(r::tally(&admin))?;
    let today = frontd::scan::fates::today();
    match what {
        ReportWhat::Fates { days } => print!("{}", r::render_fates(&rows, today, days)),
        ReportWhat::Viruses { days } => print!("{}", r::render_viruses(&rows, today, days)),
    }
    Ok(())
}

#[derive(Subcommand, Debug)]
enum QuarantineAction {
    /// Held messages: id, arrival, spam score, sender, subject.
    List { user: String },
    /// One held message, whole.
    Show { user: String, id: u32 },
    /// Deliver a held message to the user's INBOX (once, even when retried).
    Release { user: String, id: u32 },
    /// Drop a held message.
    Delete { user: String, id: u32 },
}

fn quarantine(config: &std::path::Path, action: QuarantineAction) -> anyhow::Result<()> {
    use super::quarantine as q;
    let admin = Admin::open_waiting(config, std::time::Duration::from_secs(20))?;
    let dir = UserDirectory::of_front(admin.front_config(), None)?;
    let rt = runtime()?;
    match action {
        QuarantineAction::List { user } => print!("{}", rt.block_on(q::list(&admin, &dir, &user))?),
        QuarantineAction::Show { user, id } => {
            use std::io::Write;
            std::io::stdout().write_all(&rt.block_on(q::show(&admin, &dir, &user, id))?)?;
        }
        QuarantineAction::Release { user, id } => println!("{}", rt.block_on(q::release(&admin, &dir, &user, id))?),
        QuarantineAction::Delete { user, id } => println!("{}", rt.block_on(q::delete(&admin, &dir, &user, id))?),
    }
    Ok(())
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}

fn status(config: &std::path::Path, json: bool) -> anyhow::Result<()> {
    let admin = Admin::open(config)?;
    let nodes = runtime()?.block_on(admin.status());
    let restarts = config.parent().map(|d| d.join("logs").join(super::up::RESTARTS_FILE));
    let restarts = restarts.and_then(|p| std::fs::read_to_string(p).ok()).unwrap_or_default();
    if json {
        let mut report = super::admin::status_json(&nodes);
        let counts: serde_json::Map<String, serde_json::Value> = restarts
            .lines()
            .filter_map(|l| l.split_once(' '))
            .filter_map(|(name, n)| Some((name.to_string(), n.trim().parse::<u64>().ok()?.into())))
            .collect();
        report["restarts"] = counts.into();
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", super::admin::render_status(&nodes));
        if !restarts.is_empty() {
            println!("restarts under mailctl up: {}", restarts.lines().collect::<Vec<_>>().join(", "));
        }
    }
    if nodes.iter().all(|(_, _, s)| s.is_err()) {
        anyhow::bail!("no storage node answered: are they running? (mailctl up, or systemctl status storaged)");
    }
    Ok(())
}

struct RestoreArgs {
    folder: Option<String>,
    since: Option<String>,
    message_id: Option<String>,
    into: Option<String>,
    list: bool,
    from_backup: Option<u64>,
    kept: bool,
}

fn restore(config: &std::path::Path, user: &str, args: RestoreArgs) -> anyhow::Result<()> {
    use super::restore as r;
    let admin = Admin::open_waiting(config, std::time::Duration::from_secs(20))?;
    let dir = UserDirectory::of_front(admin.front_config(), None)?;
    let rt = runtime()?;
    if let (Some(node), false) = (args.from_backup, args.kept) {
        return restore_from_backup(&admin, &dir, user, node, args.list);
    }
    if args.list {
        let (_, _, items) = rt.block_on(r::kept(&admin, &dir, user))?;
        print!("{}", r::render(&items));
        if items.is_empty() {
            println!("{user} has no kept mail");
        }
        return Ok(());
    }
    let now_s = chrono::Utc::now().timestamp();
    let since_s = args.since.as_deref().map(|s| super::trace::parse_since(s, now_s)).transpose()?;
    let choice = r::Choice { folder: args.folder, since_s, message_id: args.message_id };
    if let Some(node) = args.from_backup {
        let restored = rt.block_on(r::kept_from_backup(&admin, &dir, (user, node), &choice, args.into.as_deref()))?;
        println!("restored {restored} kept messages of {user} from backup node {node}");
        return Ok(());
    }
    let restored = rt.block_on(r::restore(&admin, &dir, user, &choice, args.into.as_deref()))?;
    println!("restored {restored} messages of {user}");
    Ok(())
}

fn export(config: &std::path::Path, user: &str, dest: &std::path::Path) -> anyhow::Result<()> {
    let admin = Admin::open_waiting(config, std::time::Duration::from_secs(20))?;
    let dir = UserDirectory::of_front(admin.front_config(), None)?;
    let report = runtime()?.block_on(super::export::export(&admin, &dir, user, dest))?;
    println!("{report}");
    Ok(())
}

fn import(config: &std::path::Path, user: &str, src: &std::path::Path) -> anyhow::Result<()> {
    let admin = Admin::open_waiting(config, std::time::Duration::from_secs(20))?;
    let dir = UserDirectory::of_front(admin.front_config(), None)?;
    let report = runtime()?.block_on(super::import::import(&admin, &dir, user, src))?;
    println!("{report}");
    super::import::verdict(&report)
}

fn restore_from_backup(admin: &Admin, dir: &UserDirectory, user: &str, node: u64, list: bool) -> anyhow::Result<()> {
    use super::restore as r;
    let rt = runtime()?;
    if list {
        let (user, items) = rt.block_on(r::kept_on_backup(admin, dir, user, node))?;
        print!("{}", r::render(&items));
        if items.is_empty() {
            println!("backup node {node} keeps no kept mail of {user}");
        }
        return Ok(());
    }
    let copied = rt.block_on(r::from_backup(admin, dir, user, node))?;
    for name in &copied.skipped {
        println!(
            "{name}: left alone, the group holds other mail under it now (restore it --into another folder by hand)"
        );
    }
    println!("restored {} messages ({} bytes) of {user} from backup node {node}", copied.messages, copied.bytes);
    Ok(())
}

fn retention(config: &std::path::Path, address: &str, keep: Option<&str>) -> anyhow::Result<()> {
    use storaged::mailstore::{MailOp, MailResponse};
    let admin = Admin::open(config)?;
    let dir = UserDirectory::of_front(admin.front_config(), None)?;
    let rt = runtime()?;
    let (user, group) = rt.block_on(dir.locate(address))?;
    let Some(keep) = keep else {
        let mail = rt.block_on(admin.user_mail(&group, &user))?;
        match mail.retention_s {
            Some(s) => println!("{user} keeps expunged and deleted mail {} days ({s} s)", s / 86_400),
            None => println!("{user} has the site's retention ([retention] keep_s of the storage nodes)"),
        }
        return Ok(());
    };
    let keep_s = match keep {
        "default" => None,
        other => Some(
            super::trace::parse_age_s(other)
                .ok_or_else(|| anyhow::anyhow!("retention {other:?}: give a duration (90d, 12h, 30m) or `default`"))?,
        ),
    };
    let op = MailOp::SetRetention { user: user.clone(), keep_s };
    match rt.block_on(admin.apply_once(&group, rand::random(), op))? {
        MailResponse::Done => {
            println!("{user}: retention {}", keep_s.map_or("the site's".to_string(), |s| format!("{s} s")));
            Ok(())
        }
        other => anyhow::bail!("{group} answered {other:?}"),
    }
}

fn backup(config: &std::path::Path, action: BackupAction) -> anyhow::Result<()> {
    let admin = Admin::open(config)?;
    let rt = runtime()?;
    let (group, request) = match action {
        BackupAction::Status => {
            print!("{}", rt.block_on(super::admin::backup_status(&admin))?);
            return Ok(());
        }
        BackupAction::AddNode { group, id, raft } => {
            (group.to_ascii_lowercase(), AdminRequest::AddBackup { group: group.to_ascii_lowercase(), id, raft })
        }
        BackupAction::RemoveNode { group, id } => (
            group.to_ascii_lowercase(),
            AdminRequest::RemoveNode { group: group.to_ascii_lowercase(), id, force: false },
        ),
    };
    match rt.block_on(admin.call(&group, request))? {
        AdminReply::Done => {
            println!("group {group}: backups changed (mailctl backup status shows them)");
            Ok(())
        }
        AdminReply::Refused(why) => anyhow::bail!("group {group}: refused: {why}"),
        AdminReply::Failed(why) => anyhow::bail!("group {group}: failed: {why}"),
        other => anyhow::bail!("group {group}: unexpected answer {other} (a different version?)"),
    }
}

fn import_imap(
    config: &std::path::Path,
    user: &str,
    url: &str,
    (password_file, ca_file): (&std::path::Path, &std::path::Path),
) -> anyhow::Result<()> {
    use anyhow::Context;
    let url = super::imap_source::ImapUrl::parse(url)?;
    let password = std::fs::read_to_string(password_file)
        .with_context(|| format!("reading the password file {}", password_file.display()))?;
    let admin = Admin::open_waiting(config, std::time::Duration::from_secs(20))?;
    let dir = UserDirectory::of_front(admin.front_config(), None)?;
    let source = (&url, password.trim_end(), ca_file);
    let report = runtime()?.block_on(super::import::import_imap(&admin, &dir, user, source))?;
    println!("{report}");
    super::import::verdict(&report)
}

struct TraceArgs {
    message_ids: Vec<String>,
    from: Option<String>,
    to: Option<String>,
    since: Option<String>,
    json: bool,
}

fn trace(config: &std::path::Path, args: TraceArgs) -> anyhow::Result<()> {
    use super::trace::{parse_since, render, trace};
    if args.message_ids.is_empty() && args.from.is_none() && args.to.is_none() {
        anyhow::bail!("say which messages: --message-id ID, --from ADDRESS or --to ADDRESS (and --since to narrow)");
    }
    let now_s = chrono::Utc::now().timestamp();
    let since_s = args.since.as_deref().map(|s| parse_since(s, now_s)).transpose()?.unwrap_or(0);
    let message_ids =
        args.message_ids.iter().map(|id| if id.starts_with('<') { id.clone() } else { format!("<{id}>") }).collect();
    let query = common::tracking::TraceQuery { message_ids, from: args.from, to: args.to, since_s }.bounded();
    let admin = Admin::open(config)?;
    let traced = runtime()?.block_on(trace(&admin, query));
    if args.json {
        println!("{}", serde_json::to_string_pretty(&traced.records)?);
    } else {
        print!("{}", render(&traced));
    }
    for (id, why) in &traced.silent {
        eprintln!("node {id} did not answer ({why}): records only it holds are missing");
    }
    if traced.truncated {
        eprintln!("more records matched than one trace shows: narrow it with --since or --message-id");
    }
    if !traced.silent.is_empty() && traced.silent.len() == admin.node_addrs().len() {
        anyhow::bail!("no storage node answered: are they running? (mailctl status)");
    }
    Ok(())
}

fn queue(config: &std::path::Path, action: QueueAction) -> anyhow::Result<()> {
    use super::admin::{render_item, render_queue};
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

fn group(config: &std::path::Path, action: GroupAction) -> anyhow::Result<()> {
    let admin = Admin::open(config)?;
    if let GroupAction::Add { name, members } = &action {
        let members = members
            .iter()
            .map(|m| {
                let parts: Vec<&str> = m.split(',').collect();
                let [id, raft, lmtp] = parts[..] else {
                    anyhow::bail!("--member {m:?}: expected ID,RAFT_ADDR,LMTP_ADDR")
                };
                let id = id.parse().with_context(|| format!("--member {m:?}: the id is a number"))?;
                Ok(common::admin::GroupMember { id, raft: raft.into(), lmtp: lmtp.into() })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let name = name.to_ascii_lowercase();
        let leader = runtime()?.block_on(admin.create_group(&name, &members))?;
        println!("group {name} created; node {leader} leads it");
        let ids: Vec<u64> = members.iter().map(|m| m.id).collect();
        match super::layout::add_front_group(config, &name, &ids) {
            Ok(true) => println!(
                "added to {}'s [[groups]]: restart that front (or mailctl up) to route users there",
                config.display()
            ),
            Ok(false) => println!("{} already lists {name}", config.display()),
            Err(e) => println!("list {name} in the fronts' [[groups]] by hand ({}: {e:#})", config.display()),
        }
        return Ok(());
    }
    let (group, request) = match action {
        GroupAction::Add { .. } => unreachable!("handled above"),
        GroupAction::AddNode { group, id, raft } => {
            let g = group.to_ascii_lowercase();
            (group, AdminRequest::AddNode { group: g, id, raft })
        }
        GroupAction::RemoveNode { group, id, force } => {
            let g = group.to_ascii_lowercase();
            (group, AdminRequest::RemoveNode { group: g, id, force })
        }
    };
    match runtime()?.block_on(admin.call(&group.to_ascii_lowercase(), request))? {
        AdminReply::Done => {
            println!("group {group}: membership changed");
            Ok(())
        }
        AdminReply::Refused(why) => anyhow::bail!("group {group}: refused: {why}"),
        AdminReply::Failed(why) => anyhow::bail!("group {group}: failed: {why}"),
        _ => anyhow::bail!("group {group}: the node gave an unexpected answer (a different version?)"),
    }
}

/// What `mailctl move` was asked.
struct MoveArgs {
    user: Option<String>,
    target: Option<String>,
    grace_s: u64,
    wait: bool,
    rollback: bool,
    finish: bool,
    plan: bool,
    ldap_admin: Option<(String, PathBuf)>,
}

fn move_user(config: &std::path::Path, a: MoveArgs) -> anyhow::Result<()> {
    use super::mover;
    let admin = Admin::open_waiting(config, mover::LEADER_WAIT)?;
    let ldap_admin = match a.ldap_admin {
        Some((dn, file)) => {
            let password = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            Some(LdapAdmin { dn, password: password.trim_end_matches(['\r', '\n']).to_string() })
        }
        None => None,
    };
    let dir = UserDirectory::of_front(admin.front_config(), ldap_admin)?;
    let rt = runtime()?;
    if a.plan {
        let (per_group, moves) = rt.block_on(mover::plan(&admin, &dir))?;
        for (g, bytes) in per_group {
            println!("{g}: {bytes} bytes");
        }
        for (user, from, to, bytes) in moves {
            println!("mailctl move {user} {to}    # from {from}, {bytes} bytes");
        }
        return Ok(());
    }
    let (Some(user), Some(target)) = (a.user, a.target) else {
        anyhow::bail!("usage: mailctl move USER TARGET_MAILHOST")
    };
    if a.rollback {
        rt.block_on(mover::rollback(&admin, &dir, &user, &target))?;
        println!("rolled back: {user} stays where the directory says; the copy on {target} is deleted");
    } else if a.finish {
        let report = rt.block_on(mover::cleanup_moved(&admin, &dir, &user, &target))?;
        println!("{report}");
    } else {
        let grace = std::time::Duration::from_secs(a.grace_s);
        let report = rt.block_on(mover::move_user(&admin, &dir, &user, &target, (grace, a.wait)))?;
        println!("{report}");
        if !report.source_deleted {
            let after = chrono::Local::now() + chrono::Duration::seconds(a.grace_s as i64);
            println!(
                "the copy on {} is kept for the grace period: after {} run `mailctl move --finish {} {}` to delete it",
                report.source,
                after.format("%Y-%m-%d %H:%M"),
                report.user,
                report.source
            );
        }
    }
    Ok(())
}

fn user(ldif: &std::path::Path, config: &std::path::Path, print_ldif: bool, action: UserAction) -> anyhow::Result<()> {
    use super::users;
    let write = !print_ldif;
    let change = match action {
        UserAction::List => {
            users::list(ldif)?.iter().for_each(|l| println!("{l}"));
            return Ok(());
        }
        UserAction::Show { address } => {
            print!("{}", users::show(ldif, &address)?);
            let history = users::mailhost_of(ldif, &address).and_then(|(mail, host)| {
                let admin = Admin::open(config)?;
                let reply =
                    runtime()?.block_on(admin.call(&host, AdminRequest::Logins { group: host.clone(), user: mail }))?;
                match reply {
                    AdminReply::Logins(h) => Ok(h),
                    other => anyhow::bail!("{other}"),
                }
            });
            match history {
                Ok(h) => print!("{}", users::render_logins(&h)),
                Err(e) => println!("login history: unavailable ({e:#})"),
            }
            return Ok(());
        }
        UserAction::Add { address, mailhost, aliases, password, base } => {
            users::check_mailhost(config, &mailhost)?;
            users::add(ldif, &address, &mailhost, &aliases, password.as_deref(), &base, write)?
        }
        UserAction::Passwd { address, password } => users::passwd(ldif, &address, password.as_deref(), write)?,
        UserAction::Delete { address } => {
            // The mail first: a user whose entry is gone cannot be found again.
            let (mail, host) = users::mailhost_of(ldif, &address)?;
            let admin = Admin::open(config)?;
            let op = storaged::mailstore::MailOp::RetireUser { user: mail.clone() };
            runtime()?.block_on(admin.apply_once(&host, rand::random(), op))?;
            println!("{mail}'s mail on {host} is kept for the retention (mailctl restore {mail} --list)");
            users::delete(ldif, &address, write)?
        }
        UserAction::Disable { address } => users::set_status(ldif, &address, "disabled", write)?,
        UserAction::Enable { address } => users::set_status(ldif, &address, "active", write)?,
        UserAction::Forward { address, to, only } => users::forward(ldif, &address, &to, only, write)?,
        UserAction::Reply { address, text, .. } => users::reply(ldif, &address, text.as_deref(), write)?,
        UserAction::Quota { address, size, count, size_max } => {
            users::quota(ldif, &address, (size, count, size_max), write)?
        }
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

/// Parse `args` (the program name first) and run the command.
pub fn run_from(args: impl IntoIterator<Item = String>) -> anyhow::Result<()> {
    match Args::parse_from(args).command {
        Cmd::User { ldif, print_ldif, config, action } => user(&ldif, &config, print_ldif, action),
        Cmd::Up { dir, port_base, dns_servers } => super::up::run(&dir, port_base, &dns_servers),
        Cmd::Status { config, json } => status(&config, json),
        Cmd::Restore { user, config, folder, since, message_id, into, list, from_backup, kept } => {
            restore(&config, &user, RestoreArgs { folder, since, message_id, into, list, from_backup, kept })
        }
        Cmd::Backup { config, action } => backup(&config, action),
        Cmd::Retention { user, keep, config } => retention(&config, &user, keep.as_deref()),
        Cmd::Export { user, dir, config } => export(&config, &user, &dir),
        Cmd::Import { user, src, from_imap, password_file, ca_file, config } => match (src, from_imap, password_file) {
            (Some(src), _, _) => import(&config, &user, &src),
            (None, Some(url), Some(file)) => import_imap(&config, &user, &url, (&file, &ca_file)),
            _ => anyhow::bail!("name a Maildir, or --from-imap URL with --password-file FILE"),
        },
        Cmd::Trace { config, message_ids, from, to, since, json } => {
            trace(&config, TraceArgs { message_ids, from, to, since, json })
        }
        Cmd::Queue { config, action } => queue(&config, action),
        Cmd::Move {
            user,
            target,
            config,
            grace_s,
            wait,
            rollback,
            finish,
            plan,
            ldap_admin_dn,
            ldap_admin_password_file,
        } => {
            let ldap_admin = match (ldap_admin_dn, ldap_admin_password_file) {
                (Some(dn), Some(file)) => Some((dn, file)),
                (None, None) => None,
                _ => anyhow::bail!("--ldap-admin-dn and --ldap-admin-password-file go together"),
            };
            move_user(&config, MoveArgs { user, target, grace_s, wait, rollback, finish, plan, ldap_admin })
        }
        Cmd::Group { config, action } => group(&config, action),
        Cmd::Quarantine { config, action } => quarantine(&config, action),
        Cmd::Report { config, what } => report(&config, what),
        Cmd::Dkim { action } => dkim(action),
        Cmd::Phish { config, action } => phish(&config, action),
        Cmd::Block { config, action } => block(&config, action),
        Cmd::Daemon(d) => d.run(),
    }
}
