//! A closed-loop LMTP or SMTP load generator: `senders` threads, each with one persistent
//! connection, deliver messages of a fixed size to random users and time each delivery from
//! `MAIL` to the final reply. Any reply other than 250 counts as an error. (With one
//! recipient per message the two protocols differ only in `LHLO`/`EHLO`.)

use std::time::{Duration, Instant};

use smtp_client::blocking::Client;
use smtp_client::{ClientError, Deadlines, Envelope};

/// The outcome of one run.
#[derive(Debug, Clone)]
pub struct LmtpStats {
    pub delivered: u64,
    pub errors: u64,
    pub elapsed: Duration,
    pub p50_us: u64,
    pub p99_us: u64,
}

impl LmtpStats {
    pub fn per_sec(&self) -> f64 {
        self.delivered as f64 / self.elapsed.as_secs_f64()
    }
}

/// Which protocol to speak.
pub use smtp_client::Dialect;

/// One persistent sender connection, through the workspace's SMTP/LMTP client (pipelined
/// when the server offers it; the body goes out only after `354`).
struct Conn(Client);

/// Every step of one delivery, at most.
const DEADLINES: Deadlines =
    Deadlines { connect: Duration::from_secs(10), reply: Duration::from_secs(60), data_end: Duration::from_secs(60) };

impl Conn {
    fn open(addr: &str) -> Result<Self, ClientError> {
        Self::open_as(addr, Dialect::Lmtp)
    }

    fn open_as(addr: &str, dialect: Dialect) -> Result<Self, ClientError> {
        let (mut c, _) = Client::open(addr, DEADLINES)?;
        let extensions = c.hello(dialect, "bench")?;
        // Our storage nodes take mail from cluster members only; a peer (Dovecot) offers no
        // such AUTH and is used as it is.
        if extensions.iter().any(|e| e.contains(common::lmtp_auth::MECHANISM)) {
            c.authenticate_cluster(&common::rpc_channel::ClusterKey::from_secret(crate::peers::CLUSTER_SECRET))?;
        }
        Ok(Self(c))
    }

    /// Whether the message was delivered (`250`).
    fn deliver(&mut self, dialect: Dialect, rcpt: &str, body: &[u8]) -> Result<bool, ClientError> {
        let recipients = [rcpt.to_string()];
        let envelope = Envelope {
            from: "bench@example.org",
            mail_params: "",
            recipients: &recipients,
            rcpt_params: "",
            rcpt_params_each: &[],
        };
        let t = self.0.transaction(dialect, &envelope, &smtp_client::dot_stuff(body))?;
        let delivered = t.per_recipient(dialect).iter().all(|r| r.code == 250);
        if !delivered {
            // Leave no half transaction for the next message.
            self.0.command("RSET")?;
        }
        Ok(delivered)
    }
}

/// [`fill`] through the first of `addrs` that accepts deliveries (our group's leader, or
/// a server still starting), trying for up to a minute; which address it was.
pub fn fill_any(addrs: &[String], users: usize, per_user: usize, size: usize) -> anyhow::Result<usize> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        for (k, a) in addrs.iter().enumerate() {
            if fill(a, 1, 0, size).is_ok() && fill(a, users, per_user, size).is_ok() {
                return Ok(k);
            }
        }
        if Instant::now() > deadline {
            anyhow::bail!("cannot fill mailboxes through {addrs:?}");
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Deliver `per_user` messages of about `size` bytes to each of `users` users, one
/// connection; the subjects are `message {k}`. Fails on the first refused delivery.
pub fn fill(addr: &str, users: usize, per_user: usize, size: usize) -> std::io::Result<()> {
    let mut c = Conn::open(addr).map_err(std::io::Error::other)?;
    for u in 0..users {
        for k in 0..per_user {
            let mut body = format!(
                "From: bench@example.org\r\nSubject: message {k}\r\nMessage-ID: <fill-{u}-{k}@example.org>\r\n\r\n"
            )
            .into_bytes();
            while body.len() + 78 <= size {
                body.extend_from_slice(&[b'y'; 76]);
                body.extend_from_slice(b"\r\n");
            }
            if !c.deliver(Dialect::Lmtp, &format!("user{u}@example.edu"), &body).map_err(std::io::Error::other)? {
                return Err(std::io::Error::other(format!("delivery to user{u} refused")));
            }
        }
    }
    Ok(())
}

/// A message of about `size` bytes; lines never start with a dot.
pub fn message(n: u64, size: usize) -> Vec<u8> {
    let mut m = format!("From: bench@example.org\r\nSubject: bench {n}\r\nMessage-ID: <bench-{n}@example.org>\r\n\r\n")
        .into_bytes();
    while m.len() + 78 <= size {
        m.extend_from_slice(&[b'x'; 76]);
        m.extend_from_slice(b"\r\n");
    }
    m
}

/// Run `senders` closed-loop senders against the LMTP server at `addr` for `duration`.
pub fn run(addr: &str, senders: usize, users: usize, size: usize, duration: Duration) -> LmtpStats {
    run_as(addr, Dialect::Lmtp, senders, users, size, duration)
}

/// As [`run`], speaking `dialect`.
pub fn run_as(
    addr: &str,
    dialect: Dialect,
    senders: usize,
    users: usize,
    size: usize,
    duration: Duration,
) -> LmtpStats {
    let start = Instant::now();
    let deadline = start + duration;
    let threads: Vec<_> = (0..senders)
        .map(|t| {
            let addr = addr.to_string();
            std::thread::spawn(move || {
                let mut lat = Vec::new();
                let mut errors = 0u64;
                let mut conn = Conn::open_as(&addr, dialect).ok();
                let mut n = t as u64;
                while Instant::now() < deadline {
                    let Some(c) = conn.as_mut() else {
                        errors += 1;
                        std::thread::sleep(Duration::from_millis(50));
                        conn = Conn::open_as(&addr, dialect).ok();
                        continue;
                    };
                    let rcpt = format!("user{}@example.edu", n % users as u64);
                    let body = message(n + (start.elapsed().as_nanos() as u64) * 1000, size);
                    let t0 = Instant::now();
                    match c.deliver(dialect, &rcpt, &body) {
                        Ok(true) => lat.push(t0.elapsed().as_micros() as u64),
                        Ok(false) => errors += 1,
                        Err(_) => {
                            errors += 1;
                            conn = None;
                        }
                    }
                    n += senders as u64;
                }
                (lat, errors)
            })
        })
        .collect();
    let mut lat = Vec::new();
    let mut errors = 0;
    for t in threads {
        let (l, e) = t.join().expect("sender thread");
        lat.extend(l);
        errors += e;
    }
    let elapsed = start.elapsed();
    let (p50_us, p99_us) = crate::stats::p50_p99(&mut lat);
    LmtpStats { delivered: lat.len() as u64, errors, elapsed, p50_us, p99_us }
}

/// Deliver `count` messages of about `size` bytes to `rcpt` over LMTP from `senders`
/// connections. A refused or failed delivery is tried again (an election answers `451`
/// for a moment), up to a minute per message; then this fails.
pub fn deliver_count(addr: &str, rcpt: &str, count: usize, size: usize, senders: usize) -> anyhow::Result<()> {
    let threads: Vec<_> = (0..senders)
        .map(|t| {
            let (addr, rcpt) = (addr.to_string(), rcpt.to_string());
            std::thread::spawn(move || -> anyhow::Result<()> {
                let mut conn = None;
                for n in (t..count).step_by(senders) {
                    let body = message(n as u64, size);
                    let deadline = Instant::now() + Duration::from_secs(60);
                    loop {
                        let delivered = match conn.as_mut() {
                            None => {
                                conn = Conn::open_as(&addr, Dialect::Lmtp).ok();
                                if conn.is_some() {
                                    continue;
                                }
                                false
                            }
                            Some(c) => match c.deliver(Dialect::Lmtp, &rcpt, &body) {
                                Ok(ok) => ok,
                                Err(_) => {
                                    conn = None;
                                    false
                                }
                            },
                        };
                        if delivered {
                            break;
                        }
                        anyhow::ensure!(Instant::now() < deadline, "message {n} to {rcpt} not delivered in a minute");
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
                Ok(())
            })
        })
        .collect();
    for t in threads {
        t.join().map_err(|_| anyhow::anyhow!("sender thread panicked"))??;
    }
    Ok(())
}

/// Wait for an LMTP server among `addrs` that accepts a delivery (for a group: its leader).
pub fn wait_ready(addrs: &[String]) -> anyhow::Result<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        for a in addrs {
            if run(a, 1, 1, 1024, Duration::from_millis(300)).delivered > 0 {
                return Ok(a.clone());
            }
        }
        anyhow::ensure!(Instant::now() < deadline, "no LMTP server ready among {addrs:?}");
        std::thread::sleep(Duration::from_millis(300));
    }
}
