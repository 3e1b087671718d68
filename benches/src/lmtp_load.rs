//! A closed-loop LMTP or SMTP load generator: `senders` threads, each with one persistent
//! connection, deliver messages of a fixed size to random users and time each delivery from
//! `MAIL` to the final reply. Any reply other than 250 counts as an error. (With one
//! recipient per message the two protocols differ only in `LHLO`/`EHLO`.)

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

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

struct Conn {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

/// Which protocol to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Lmtp,
    Smtp,
}

impl Conn {
    fn open(addr: &str) -> std::io::Result<Self> {
        Self::open_as(addr, Dialect::Lmtp)
    }

    fn open_as(addr: &str, dialect: Dialect) -> std::io::Result<Self> {
        let s = TcpStream::connect(addr)?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(60)))?;
        let w = s.try_clone()?;
        let mut c = Conn { r: BufReader::new(s), w };
        c.reply()?;
        c.w.write_all(if dialect == Dialect::Lmtp { b"LHLO bench\r\n" } else { b"EHLO bench\r\n" })?;
        let greeting = c.reply_all()?;
        // Our storage nodes take mail from cluster members only; a peer (Dovecot) offers no
        // such AUTH and is used as it is.
        if greeting.contains(common::lmtp_auth::MECHANISM) {
            c.w.write_all(format!("AUTH {}\r\n", common::lmtp_auth::MECHANISM).as_bytes())?;
            let challenge = c.reply()?;
            let key = common::rpc_channel::ClusterKey::from_secret(crate::peers::CLUSTER_SECRET);
            let answer = common::lmtp_auth::response(&key, challenge.trim().trim_start_matches("334 "))
                .ok_or_else(|| std::io::Error::other(format!("AUTH: {challenge}")))?;
            c.w.write_all(format!("{answer}\r\n").as_bytes())?;
            let done = c.reply()?;
            if !done.starts_with("235") {
                return Err(std::io::Error::other(format!("AUTH refused: {done}")));
            }
        }
        Ok(c)
    }

    /// The last line of the next reply.
    fn reply(&mut self) -> std::io::Result<String> {
        Ok(self.reply_all()?.lines().last().unwrap_or_default().to_string())
    }

    /// Every line of the next reply.
    fn reply_all(&mut self) -> std::io::Result<String> {
        let mut all = String::new();
        loop {
            let start = all.len();
            if self.r.read_line(&mut all)? == 0 {
                return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed"));
            }
            let line = &all[start..];
            if line.len() < 4 || line.as_bytes()[3] == b' ' {
                return Ok(all);
            }
        }
    }

    fn deliver(&mut self, rcpt: &str, body: &[u8]) -> std::io::Result<bool> {
        let mut out = format!("MAIL FROM:<bench@example.org>\r\nRCPT TO:<{rcpt}>\r\nDATA\r\n").into_bytes();
        self.w.write_all(&out)?;
        let ok = self.reply()?.starts_with("250") & self.reply()?.starts_with("250") & self.reply()?.starts_with("354");
        out.clear();
        out.extend_from_slice(body);
        out.extend_from_slice(b".\r\n");
        self.w.write_all(&out)?;
        Ok(self.reply()?.starts_with("250") && ok)
    }
}

/// Deliver `per_user` messages of about `size` bytes to each of `users` users, one
/// connection; the subjects are `message {k}`. Fails on the first refused delivery.
pub fn fill(addr: &str, users: usize, per_user: usize, size: usize) -> std::io::Result<()> {
    let mut c = Conn::open(addr)?;
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
            if !c.deliver(&format!("user{u}@example.edu"), &body)? {
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
                    match c.deliver(&rcpt, &body) {
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
