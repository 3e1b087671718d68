//! frontd's cost: the IMAP load of `imap-bench` through frontd vs. straight to the
//! storaged leader, paired in one run (the proxy's throughput loss), then logins per
//! second through frontd with a real OpenLDAP directory, cache cold (every user new) and
//! warm (the same users again within the cache TTL).
//!
//! `cargo build --release -p storaged -p frontd -p benches && target/release/front-bench`

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use benches::lmtp_load::fill;
use benches::paired::{median_by, paired};
use benches::peers::{frontd_binary, spawn_frontd, start_storaged_with, PASSWORD};
use benches::procs::{free_port, Procs};
use clap::Parser;
use clusterkit::front;
use common::password::{Digest, PasswordHash};
use frontd::config::{BackendSection, DirectorySection, LdapSection};
use tests::slapd::{Slapd, LDAP_BIND_DN, LDAP_BIND_PASSWORD};
use tools::imap_client::Client;
use tools::imap_load::{run, Load, LoadStats};

#[derive(Parser, Debug)]
struct Args {
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    #[arg(long, default_value_t = 16)]
    sessions: usize,
    /// Messages per load user before the run.
    #[arg(long, default_value_t = 200)]
    messages: usize,
    #[arg(long, default_value_t = 4096)]
    message_bytes: usize,
    /// Directory users for the login-rate figures (each logs in once cold, once warm).
    #[arg(long, default_value_t = 2000)]
    login_users: usize,
    /// Concurrent clients logging in.
    #[arg(long, default_value_t = 16)]
    login_clients: usize,
    #[arg(long, default_value = "target/bench-front")]
    dir: PathBuf,
}

/// The directory: the base entries, frontd's service account and `n` users on "bench".
fn write_ldif(path: &Path, n: usize) -> anyhow::Result<()> {
    let mut out = String::from(
        "dn: dc=example,dc=edu\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example\n\n\
         dn: ou=people,dc=example,dc=edu\nobjectClass: organizationalUnit\nou: people\n\n",
    );
    let service = PasswordHash::salted(Digest::Sha1, LDAP_BIND_PASSWORD).to_stored();
    out.push_str(&format!(
        "dn: {LDAP_BIND_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\ncn: frontd\nuserPassword: {service}\n\n"
    ));
    for u in 0..n {
        let hash = PasswordHash::salted(Digest::Sha1, PASSWORD).to_stored();
        out.push_str(&format!(
            "dn: uid=user{u},ou=people,dc=example,dc=edu\nobjectClass: inetOrgPerson\nobjectClass: qmailUser\n\
             uid: user{u}\ncn: User {u}\nsn: {u}\nmail: user{u}@example.edu\nmailHost: bench\nuserPassword: {hash}\n\n"
        ));
    }
    std::fs::write(path, out)?;
    Ok(())
}

fn wait_ready(addr: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(mut c) = Client::connect(addr) {
            let ok = c.command(&format!("LOGIN user0@example.edu {PASSWORD}")).is_ok_and(|a| a.ok())
                && c.command("SELECT INBOX").is_ok_and(|a| a.ok());
            if ok {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("{addr} never accepted a login");
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Log users `first..first + n` in and out with `clients` threads; logins per second and
/// failures.
fn login_rate(addr: &str, first: usize, n: usize, clients: usize) -> (f64, usize) {
    let start = Instant::now();
    let failed: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                s.spawn(move || {
                    let mut failed = 0;
                    for u in (first + c..first + n).step_by(clients) {
                        let ok = Client::connect(addr).is_ok_and(|mut cl| {
                            let ok = cl.command(&format!("LOGIN user{u}@example.edu {PASSWORD}")).is_ok_and(|a| a.ok());
                            let _ = cl.command("LOGOUT");
                            ok
                        });
                        failed += usize::from(!ok);
                    }
                    failed
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    (n as f64 / start.elapsed().as_secs_f64(), failed)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _ = std::fs::remove_dir_all(&args.dir);
    std::fs::create_dir_all(&args.dir)?;
    let dir = std::fs::canonicalize(&args.dir)?;
    let frontd = frontd_binary()?;
    let mut procs = Procs::default();

    let ldif = dir.join("users.ldif");
    write_ldif(&ldif, args.sessions + args.login_users)?;
    let slapd = Slapd::start_with(&dir, &ldif);

    let proxy = |c: &mut storaged::config::Config| {
        c.proxy.user = Some("frontd".into());
        c.proxy.password = Some("{PLAIN}proxy-pw".into());
    };
    let nodes = start_storaged_with(&dir, args.sessions, proxy, &mut procs).context("starting storaged")?;
    std::fs::write(dir.join("ldap.pw"), LDAP_BIND_PASSWORD)?;
    let front_imap = format!("127.0.0.1:{}", free_port());
    let ldap = LdapSection {
        bind_dn: Some(LDAP_BIND_DN.into()),
        bind_password_file: Some("ldap.pw".into()),
        cache_ttl_s: 600,
        connections: 8,
        ..LdapSection::new(slapd.url.clone(), "dc=example,dc=edu")
    };
    let mut backend = BackendSection::new("frontd");
    backend.proxy_password = Some("proxy-pw".into());
    let addrs: Vec<_> = nodes.iter().map(|n| n.addrs.clone()).collect();
    let directory = DirectorySection { ldif: None, ldap: Some(ldap) };
    let mut cfg = frontd::config::Config::new(directory, backend, front::groups(&["bench"], &addrs));
    cfg.listen.imap = Some(front_imap.clone());
    cfg.limits.connections_max = 4096;
    front::write(&dir.join("frontd.toml"), &cfg)?;
    let start_front = || spawn_frontd(&frontd, &dir);
    let mut front = start_front()?;

    eprintln!("filling {} mailboxes with {} messages each", args.sessions, args.messages);
    let deadline = Instant::now() + Duration::from_secs(60);
    let leader = loop {
        if let Some(n) = nodes.iter().find(|n| fill(&n.lmtp, 1, 0, args.message_bytes).is_ok()) {
            break n;
        }
        if Instant::now() > deadline {
            bail!("no storaged leader");
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    fill(&leader.lmtp, args.sessions, args.messages, args.message_bytes)?;
    wait_ready(&leader.imap)?;
    wait_ready(&front_imap)?;

    let load = |server: &str| Load {
        server: server.to_string(),
        logins: (0..args.sessions).map(|u| (format!("user{u}@example.edu"), PASSWORD.to_string())).collect(),
        duration: Duration::from_secs_f64(args.seconds),
        profile: Default::default(),
        append_bytes: args.message_bytes,
    };
    let runs = paired(args.rounds, || run(&load(&front_imap)), || run(&load(&leader.imap)), |s| s.commands_per_sec);
    let rate = |s: &LoadStats| s.commands_per_sec;
    let ratio = runs.ratio;
    let errors = (runs.ours.iter().map(|s| s.errors).sum::<u64>(), runs.peer.iter().map(|s| s.errors).sum::<u64>());
    let (f, d) = (median_by(runs.ours, rate), median_by(runs.peer, rate));
    println!("| sessions | via frontd cmd/s | direct cmd/s | ratio | overhead | frontd p50/p99 ms | direct p50/p99 ms | errors |");
    println!("|---|---|---|---|---|---|---|---|");
    println!(
        "| {} | {:.0} | {:.0} | {:.3} | {:.1}% | {:.2}/{:.1} | {:.2}/{:.1} | {}/{} |",
        args.sessions,
        f.commands_per_sec,
        d.commands_per_sec,
        ratio,
        (1.0 - ratio) * 100.0,
        f.p50_us as f64 / 1000.0,
        f.p99_us as f64 / 1000.0,
        d.p50_us as f64 / 1000.0,
        d.p99_us as f64 / 1000.0,
        errors.0,
        errors.1
    );

    // A user's first login ever also creates their mailboxes on storaged (Raft commits):
    // one pass makes them all, then a fresh frontd (empty cache) gives the cold figure and
    // a second pass the warm one.
    let n = args.login_users;
    let (_, provision_failed) = login_rate(&front_imap, args.sessions, n, args.login_clients);
    if provision_failed > 0 {
        bail!("{provision_failed} first logins failed");
    }
    front.kill()?;
    front.wait()?;
    front = start_front()?;
    wait_ready(&front_imap)?;
    let (cold, cold_failed) = login_rate(&front_imap, args.sessions, n, args.login_clients);
    let (warm, warm_failed) = login_rate(&front_imap, args.sessions, n, args.login_clients);
    println!("\nlogins through frontd (LDAP, {} clients, {n} users, LOGIN+LOGOUT each):", args.login_clients);
    println!("| cache | logins/s | failed |");
    println!("|---|---|---|");
    println!("| cold | {cold:.0} | {cold_failed} |");
    println!("| warm | {warm:.0} | {warm_failed} |");
    front.kill()?;
    drop(slapd);
    Ok(())
}
