//! The I/O edge of SMTP: greeting (with the MX greet delay: early talkers are dropped),
//! bounded command and DATA line reading, STARTTLS, and carrying out the session's steps
//! (password checks through the login gate, recipient lookups and deliveries through the
//! router). Adds the `Received:` trace header, with TLS details, to every message.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::clock::now_s;
use common::message_log::MessageLine;
use common::tls::Conn;
use common::tracking::FrontRefusal;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::finish::{finish, Client};
use super::pace::{self, Pace};
use super::refusals;
use super::session::{Mode, Session, Settings, Step};
use super::submission;
use crate::access::Listener;
use crate::server::Front;

/// Hand the recipients `session` refused at `RCPT` to message tracking, each under an id
/// of its own (there is no message yet to name it).
fn track_refused(front: &Front, peer: SocketAddr, session: &mut Session) {
    for r in session.take_refused() {
        let (ip, id) = (peer.ip().to_string(), format!("{}/{:016x}", front.host, rand::random::<u64>()));
        front.refusals.record(FrontRefusal::new(now_s(), &front.host, &ip, "", &id, &r.from, &r.to, &r.reply));
    }
}

/// RFC 5321 4.5.3.2: a server waits at least 5 minutes for a command.
const COMMAND_IDLE: Duration = Duration::from_secs(300);
/// RFC 5321 4.5.3.2.6: 10 minutes for the end of DATA... per line here.
const DATA_IDLE: Duration = Duration::from_secs(600);
/// Longest command line kept (RFC 5321: 512; AUTH responses may be longer).
const COMMAND_LINE_MAX: usize = 4096;
/// DATA is read in lines of at most this many bytes (longer ones arrive in pieces).
const DATA_PIECE_MAX: usize = 64 * 1024;
/// Commands per connection.
const COMMANDS_MAX: usize = 100_000;

/// One line with its terminator, at most `max` bytes (a longer line comes in pieces);
/// `None` at end of input.
async fn read_raw<R: AsyncBufRead + Unpin>(r: &mut R, max: usize) -> std::io::Result<Option<Vec<u8>>> {
    let mut out = Vec::new();
    loop {
        let buf = r.fill_buf().await?;
        if buf.is_empty() {
            return Ok((!out.is_empty()).then_some(out));
        }
        let room = max - out.len();
        let (take, done) = match buf.iter().take(room).position(|b| *b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len().min(room), out.len() + buf.len().min(room) >= max),
        };
        out.extend_from_slice(&buf[..take]);
        r.consume(take);
        if done {
            return Ok(Some(out));
        }
    }
}

/// What reading a piece of DATA gave.
enum Paced {
    Piece(Vec<u8>),
    Eof,
    /// The transfer's pace ran out first (or the idle limit).
    TooSlow,
}

/// A piece of DATA, read before the transfer's pace runs out.
async fn read_paced<R: AsyncBufRead + Unpin>(r: &mut R, max: usize, pace: &Pace) -> std::io::Result<Paced> {
    let deadline = pace.deadline().min(Instant::now() + DATA_IDLE);
    match tokio::time::timeout_at(deadline.into(), read_raw(r, max)).await {
        Ok(piece) => Ok(piece?.map_or(Paced::Eof, Paced::Piece)),
        Err(_) => Ok(Paced::TooSlow),
    }
}

/// Cut off a sender whose transfer took too long.
async fn too_slow(conn: &mut Conn, peer: SocketAddr) -> std::io::Result<()> {
    tracing::info!(%peer, "SMTP transfer too slow or too long: connection closed");
    conn.wr.write_all(b"421 4.4.2 message transfer too slow, closing connection\r\n").await
}

async fn read_within<R: AsyncBufRead + Unpin>(
    r: &mut R,
    max: usize,
    idle: Duration,
) -> std::io::Result<Option<Vec<u8>>> {
    tokio::time::timeout(idle, read_raw(r, max)).await.unwrap_or(Ok(None))
}

fn settings(front: &Front, mode: Mode, relay: bool, peer: std::net::IpAddr) -> Settings {
    let smtp = &front.smtp;
    Settings {
        host: front.host.clone(),
        mode,
        message_max_bytes: smtp.message_max_bytes,
        recipients_max: smtp.recipients_max,
        tls_configured: front.has_tls(),
        local_domains: smtp.local_domains.iter().map(|d| d.to_ascii_lowercase()).collect(),
        domain_aliases: smtp
            .domain_aliases
            .iter()
            .map(|(a, d)| (a.to_ascii_lowercase(), d.to_ascii_lowercase()))
            .collect(),
        helo_deny: smtp.helo_deny.clone(),
        mail_from_deny: smtp.mail_from_deny.clone(),
        queue: front.queue.is_some(),
        relay,
        postmaster: smtp.postmaster.clone(),
        memory: Some((front.body_memory.clone(), peer)),
        srs: front.srs.clone().map(|srs| {
            let now_s = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
            (srs, now_s)
        }),
    }
}

/// The phish rules' word on a submitted message, and whether its account may still send
/// (an account locked since its session began may not): `Err(reply)` refuses it.
async fn judge(
    front: &Front,
    account: Option<&std::sync::Arc<directory::Account>>,
    ip: std::net::IpAddr,
    from: &str,
    recipients: &[String],
    message: &[u8],
) -> Result<(), String> {
    let Some(account) = account else { return Ok(()) };
    let locked = "554 5.7.1 your account is locked; contact your administrator";
    if front.phish.as_ref().is_some_and(|w| w.is_locked(&account.mail)) {
        return Err(locked.into());
    }
    let now = front.gate.directory().lookup(&account.mail, directory::Purpose::Login).await;
    if let Ok(Some(now)) = now {
        if !now.may_log_in() {
            return Err(locked.into());
        }
    }
    let Some(watch) = &front.phish else { return Ok(()) };
    match watch.submission(account, ip, from, recipients, message).await {
        Some(alarm) => {
            tracing::warn!(user = account.mail, %ip, rule = alarm.rule(), "submission held; account snagged");
            Err(format!("554 5.7.1 message held for review ({}); your account is locked", alarm.rule()))
        }
        None => Ok(()),
    }
}

/// A submitted message as it goes on: its author checked against the user's addresses
/// (refused, or a `Sender:` added) and DKIM-signed for the From domain; the MX's as it came.
fn submitted<'m>(
    front: &Front,
    account: Option<&directory::Account>,
    message: &'m [u8],
) -> Result<std::borrow::Cow<'m, [u8]>, String> {
    let Some(account) = account else { return Ok(message.into()) };
    let own: Vec<String> = account.addresses().map(str::to_string).collect();
    let message: std::borrow::Cow<'m, [u8]> = match submission::check(message, &own, front.from_policy) {
        submission::Decision::AsIs => message.into(),
        submission::Decision::Rewritten(m) => m.into(),
        submission::Decision::Refuse(reply) => return Err(reply),
    };
    // An RSA signature is a millisecond of CPU: off the worker other sessions share.
    let signature =
        if front.dkim.is_empty() { None } else { tokio::task::block_in_place(|| front.dkim.sign(&message)) };
    Ok(match signature {
        Some(signature) => [signature.as_bytes(), &message].concat().into(),
        None => message,
    })
}

/// The `Received:` header for a message; it names the authenticated user, if any.
fn received(session: &Session, peer: SocketAddr, conn: &Conn, host: &str, id: &str, recipients: &[String]) -> String {
    let helo = session.helo().unwrap_or("unknown").replace(|c: char| c.is_control() || c == '(' || c == ')', "");
    let protocol = match (conn.tls, session.account().is_some()) {
        (true, true) => "ESMTPSA",
        (true, false) => "ESMTPS",
        (false, true) => "ESMTPA",
        (false, false) => "ESMTP",
    };
    let mut comments = Vec::new();
    comments.extend(conn.tls_info.as_ref().map(|t| format!("using {t}")));
    comments.extend(session.account().map(|a| format!("authenticated as {}", a.mail)));
    let hop = common::tracking::FrontHop {
        helo,
        ip: peer.ip().to_string(),
        host: host.to_string(),
        protocol: protocol.to_string(),
        id: id.to_string(),
    };
    let to = (recipients.len() == 1).then(|| recipients[0].as_str());
    hop.header(&comments, to, &chrono::Utc::now().to_rfc2822())
}

/// Serve one SMTP connection on a listener of `mode`.
pub async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    front: Arc<Front>,
    mode: Mode,
    implicit_tls: bool,
) -> std::io::Result<()> {
    let tls = front.tls();
    let mut conn = Conn::open(stream, tls.as_deref(), implicit_tls).await?;
    let listener = if mode == Mode::Mx { Listener::Mx } else { Listener::Submission };
    let admission = front.access.admission(peer.ip(), listener);
    if mode == Mode::Mx && admission.check_dnsbl {
        if let Some(reply) = front.smtp_policy.dnsbl(peer.ip()).await {
            tracing::info!(%peer, reply, "SMTP client refused");
            front.metrics.refused(listener.name(), "dnsbl");
            return conn.wr.write_all(format!("{reply}\r\n").as_bytes()).await;
        }
    }
    let greet_delay = admission.greet_delay;
    if mode == Mode::Mx && !greet_delay.is_zero() {
        // A client that talks before the greeting is not speaking SMTP as it should.
        if let Ok(Ok(early)) = tokio::time::timeout(greet_delay, conn.rd.fill_buf()).await {
            if !early.is_empty() {
                tracing::info!(%peer, "SMTP client talked before the greeting");
                front.metrics.refused(listener.name(), "early-talker");
                return conn.wr.write_all(b"554 5.5.0 you talked before the greeting\r\n").await;
            }
            return Ok(());
        }
    }
    let mut session = Session::new(settings(&front, mode, admission.relay, peer.ip()), conn.tls);
    let pace_limits = pace::Limits {
        total: Duration::from_secs(front.smtp.data_time_max_s),
        rate_min_bytes_per_s: front.smtp.data_rate_min_bytes_per_s,
        grace: Duration::from_secs(front.smtp.data_rate_grace_s),
    };
    // The transfer under way (DATA, or BDAT from its first chunk to the last).
    let mut transfer: Option<Pace> = None;
    conn.wr.write_all(format!("{}\r\n", session.greeting()).as_bytes()).await?;
    for _ in 0..COMMANDS_MAX {
        let Some(line) = read_within(&mut conn.rd, COMMAND_LINE_MAX, COMMAND_IDLE).await? else {
            return Ok(());
        };
        if line.len() >= COMMAND_LINE_MAX && !line.ends_with(b"\n") {
            // Skip the rest of the over-long line, then refuse it.
            while let Some(rest) = read_within(&mut conn.rd, COMMAND_LINE_MAX, COMMAND_IDLE).await? {
                if rest.ends_with(b"\n") {
                    break;
                }
            }
            conn.wr.write_all(b"500 5.5.2 line too long\r\n").await?;
            continue;
        }
        let receiving = session.receiving();
        let mut step = session.command(&line);
        if !receiving {
            // A new transaction's BDAT chunks get a clock of their own.
            transfer = None;
        }
        loop {
            step = match step {
                Step::Reply(text) => {
                    track_refused(&front, peer, &mut session);
                    conn.wr.write_all(format!("{text}\r\n").as_bytes()).await?;
                    break;
                }
                Step::Close(text) => return conn.wr.write_all(format!("{text}\r\n").as_bytes()).await,
                Step::StartTls(text) => {
                    conn.wr.write_all(format!("{text}\r\n").as_bytes()).await?;
                    let tls = tls.as_ref().expect("STARTTLS is offered only with TLS");
                    let Some(upgraded) = conn.start_tls(tls).await? else { return Ok(()) };
                    conn = upgraded;
                    session.tls_started();
                    break;
                }
                Step::AuthChallenge(text) => {
                    conn.wr.write_all(format!("{text}\r\n").as_bytes()).await?;
                    let Some(line) = read_within(&mut conn.rd, COMMAND_LINE_MAX, COMMAND_IDLE).await? else {
                        return Ok(());
                    };
                    session.auth_line(&line)
                }
                Step::Authenticate(creds) => {
                    let result = front.check_login(listener, peer.ip(), conn.tls, &creds).await;
                    if let (Ok(account), Some(watch)) = (&result, &front.phish) {
                        watch.logged_in(account.clone(), None, "SMTP", peer.ip());
                    }
                    session.authenticated(result)
                }
                Step::Resolve(address) => {
                    let resolution = front.router.resolve(&address).await;
                    session.resolved(&address, resolution)
                }
                Step::Data(text) => {
                    conn.wr.write_all(format!("{text}\r\n").as_bytes()).await?;
                    let mut pace = Pace::new(pace_limits, Instant::now());
                    loop {
                        let raw = match read_paced(&mut conn.rd, DATA_PIECE_MAX, &pace).await? {
                            Paced::Piece(raw) => raw,
                            Paced::Eof => return Ok(()),
                            Paced::TooSlow => return too_slow(&mut conn, peer).await,
                        };
                        pace.received(raw.len());
                        if let Some(next) = session.data_line(&raw) {
                            break next;
                        }
                    }
                }
                Step::Chunk { size, last } => {
                    let pace = transfer.get_or_insert_with(|| Pace::new(pace_limits, Instant::now()));
                    // Read the whole chunk (the stream must stay in step), in pieces the
                    // session keeps or drops as they come.
                    let mut left = size as u64;
                    let mut piece = Vec::with_capacity(DATA_PIECE_MAX);
                    while left > 0 {
                        piece.clear();
                        let take = left.min(DATA_PIECE_MAX as u64);
                        let mut limited = (&mut conn.rd).take(take);
                        let read = limited.read_to_end(&mut piece);
                        let n = match tokio::time::timeout_at(pace.deadline().into(), read).await {
                            Ok(n) => n?,
                            Err(_) => return too_slow(&mut conn, peer).await,
                        };
                        if n == 0 {
                            return Ok(());
                        }
                        pace.received(n);
                        session.chunk_piece(&piece);
                        left -= n as u64;
                    }
                    session.chunk_end(size, last)
                }
                Step::Deliver => {
                    let envelope = session.envelope();
                    // The copy with the trace header (what is scanned), and the LMTP client's
                    // dot-stuffed one (stamped as it is made).
                    let _copies = match session.room_for_copies(2 * envelope.message.len()) {
                        Ok(room) => room,
                        Err(refusal) => {
                            tracing::warn!(%peer, bytes = envelope.message.len(), "no memory to deliver a message");
                            step = session.delivered(&vec![refusal; envelope.all_recipients().len()]);
                            continue;
                        }
                    };
                    let (all, data_end) = (envelope.all_recipients(), Instant::now());
                    let queue_id = format!("{:016x}", rand::random::<u64>());
                    let header = received(&session, peer, &conn, &front.host, &queue_id, &all);
                    let aliases = &session.settings().domain_aliases;
                    let body = super::rewrite::collapse_aliases(&envelope.message, aliases);
                    let client = Client {
                        mode,
                        ip: peer.ip(),
                        helo: session.helo(),
                        user: session.account().map(|a| a.mail.as_str()),
                    };
                    let message = body.as_deref().unwrap_or(&envelope.message);
                    let judged = judge(&front, session.account_arc(), peer.ip(), &envelope.from, &all, message).await;
                    let replies = match judged.and_then(|()| submitted(&front, session.account(), message)) {
                        Ok(message) => finish(&front, client, &envelope, &header, &message).await,
                        Err(refusal) => {
                            tracing::info!(%peer, user = ?client.user, refusal, "submission refused");
                            vec![refusal; all.len()]
                        }
                    };
                    drop(body);
                    let (hop, size_bytes, latency) = (listener.name(), envelope.message.len(), data_end.elapsed());
                    let message_id = common::message_log::message_id(&envelope.message);
                    for (to, reply) in all.iter().zip(&replies) {
                        let (message_id, queue_id, from) = (message_id.as_deref(), &queue_id, &envelope.from);
                        if refusals::refuses(reply) {
                            let txn = format!("{}/{queue_id}", front.host);
                            let (mid, ip) = (message_id.unwrap_or_default(), peer.ip().to_string());
                            let r = FrontRefusal::new(now_s(), &front.host, &ip, mid, &txn, from, to, reply);
                            front.refusals.record(r);
                        }
                        let peer = Some(peer.ip());
                        MessageLine { hop, peer, message_id, queue_id, from, to, size_bytes, reply, latency }.log();
                    }
                    front.metrics.smtp_message(hop, size_bytes, &replies, latency);
                    session.delivered(&replies)
                }
            };
        }
    }
    conn.wr.write_all(b"421 4.7.0 too many commands\r\n").await
}
