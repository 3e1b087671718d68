//! The IMAP server: one task per connection; command framing with literals (bounded:
//! a literal over the limit is refused before it is read; only an authenticated APPEND may
//! be large), logins through the node's
//! authenticator, IDLE woken by the group's change notifications, and `BYE` when this
//! node stops leading the user's mailhost.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::backend::GroupBackend;
use super::framing::{literal_suffix, tag_of};
use super::session::{Offer, Outcome, Session};
use crate::auth::{LoginError, PlainCredentials};
use crate::group::Group;
use crate::line::{read_line_within, Line};
use crate::node::Node;
use crate::tls::{serve_with_starttls, Conn, End, SESSION_READ_BUFFER_BYTES};
use common::deflate::{is_bomb, Deflate, Expansion, Inflate};

/// Longest command line between literals.
const COMMAND_LINE_MAX: usize = 64 * 1024;
/// RFC 3501 §5.4: the autologout timer is at least 30 minutes.
const IDLE_TIMEOUT: Duration = Duration::from_secs(31 * 60);

/// Serve IMAP on `listener` until it fails; with `implicit_tls` (port 993 style) every
/// connection starts with a TLS handshake.
pub async fn serve(listener: TcpListener, node: Arc<Node>, implicit_tls: bool) -> std::io::Result<()> {
    let max = node.limits.imap_connections_max;
    crate::accept::serve(listener, max, "IMAP", b"* BYE [UNAVAILABLE] too many connections\r\n", move |stream, peer| {
        handle(stream, peer, node.clone(), implicit_tls)
    })
    .await
}

/// How large a command may grow with its literals: only APPEND carries a message, and
/// nothing large is buffered for a client that has not logged in.
struct CommandLimits {
    authenticated: bool,
    append: usize,
    other: usize,
}

/// Commands other than APPEND (and every command before login): names, search strings,
/// SASL data fit easily.
const SMALL_COMMAND_MAX: usize = 64 * 1024;

impl CommandLimits {
    fn for_command(&self, first_line: &[u8]) -> usize {
        let verb = first_line.split(|b| *b == b' ').nth(1).unwrap_or_default();
        if self.authenticated && verb.eq_ignore_ascii_case(b"APPEND") {
            self.append
        } else {
            self.other
        }
    }
}

/// One complete command, or why there is none.
enum Input {
    Command(Vec<u8>),
    /// Answer this and read on.
    Refused(Vec<u8>),
    Closed,
}

/// Read one command with its literals, sending continuation requests for synchronizing
/// literals. `limits` bounds the whole command by what its first line says it is.
async fn read_command<R: AsyncBufRead + Unpin, W: AsyncWrite + Unpin>(
    rd: &mut R,
    wr: &mut W,
    limits: &CommandLimits,
) -> std::io::Result<Input> {
    let mut limit = limits.other;
    let mut buf = Vec::new();
    loop {
        let line = match read_line_within(rd, COMMAND_LINE_MAX, IDLE_TIMEOUT).await? {
            Line::Eof => return Ok(Input::Closed),
            Line::Idle => {
                send(wr, b"* BYE autologout: idle too long\r\n").await?;
                return Ok(Input::Closed);
            }
            Line::TooLong { head } => {
                let first = if buf.is_empty() { head.as_slice() } else { buf.as_slice() };
                return Ok(Input::Refused(common::imap_tag::bad(first, "command line too long")));
            }
            Line::Complete(l) => l,
        };
        let first_line = buf.is_empty();
        if first_line {
            limit = limits.for_command(&line);
        }
        buf.extend_from_slice(&line);
        buf.extend_from_slice(b"\r\n");
        let tag = tag_of(if first_line { &line } else { &buf }).unwrap_or("*").to_string();
        let Some((n, non_sync)) = literal_suffix(&line) else { return Ok(Input::Command(buf)) };
        if buf.len() as u64 + n > limit as u64 {
            if non_sync {
                // The client sends it anyway: read and drop it, bounded by its announced size
                // (through `copy`'s own buffer: one on this future's stack would be part of
                // every idle session's memory).
                let dropped = tokio::io::copy(&mut (&mut *rd).take(n), &mut tokio::io::sink()).await?;
                if dropped < n {
                    return Ok(Input::Closed);
                }
                // What follows the literal belongs to the refused command.
                let _ = read_line_within(rd, COMMAND_LINE_MAX, IDLE_TIMEOUT).await?;
            }
            return Ok(Input::Refused(format!("{tag} NO [TOOBIG] literal exceeds {limit} bytes\r\n").into_bytes()));
        }
        if !non_sync {
            wr.write_all(b"+ go ahead\r\n").await?;
            wr.flush().await?;
        }
        let start = buf.len();
        buf.resize(start + n as usize, 0);
        rd.read_exact(&mut buf[start..]).await?;
    }
}

/// Per-connection state that survives a STARTTLS upgrade.
struct State {
    session: Session<GroupBackend>,
    group: Option<Arc<Group>>,
    peer: SocketAddr,
    node: Arc<Node>,
}

async fn handle(stream: TcpStream, peer: SocketAddr, node: Arc<Node>, implicit_tls: bool) -> std::io::Result<()> {
    node.metrics.sessions.opened("imap");
    let mut conn = Conn::open_buffered(stream, node.tls.as_ref(), implicit_tls, SESSION_READ_BUFFER_BYTES).await?;
    let append_limit = u32::try_from(node.limits.message_max_bytes).unwrap_or(u32::MAX);
    let offer = Offer {
        starttls: node.tls.is_some() && !conn.tls,
        plaintext_auth: node.auth.plaintext_allowed(peer.ip(), conn.tls),
        append_limit,
    };
    let mut state = State { session: Session::new(offer), group: None, peer, node: Arc::clone(&node) };
    conn.wr.write_all(format!("{}\r\n", state.session.greeting()).as_bytes()).await?;
    serve_with_starttls(conn, node.tls.as_ref(), &mut state, commands, |state| state.session.tls_started()).await
}

/// How a command loop ended.
enum LoopEnd {
    Closed,
    StartTls,
    /// COMPRESS was answered OK: go on with both directions compressed.
    Compress(CompressPermit),
}

/// Compressed sessions on this process at most: each holds about 300 KiB of codec state.
const COMPRESSED_SESSIONS_MAX: usize = 1024;
static COMPRESSED_SESSIONS: AtomicUsize = AtomicUsize::new(0);

/// One of the [`COMPRESSED_SESSIONS_MAX`] compressed sessions, given back on drop.
struct CompressPermit;

impl CompressPermit {
    fn take() -> Option<Self> {
        let taken = COMPRESSED_SESSIONS
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < COMPRESSED_SESSIONS_MAX).then_some(n + 1));
        taken.is_ok().then_some(CompressPermit)
    }
}

impl Drop for CompressPermit {
    fn drop(&mut self) {
        COMPRESSED_SESSIONS.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Read and answer commands until the connection ends or asks for TLS; after COMPRESS, on
/// the compressed streams (RFC 4978) until it ends.
async fn commands(conn: &mut Conn, state: &mut State) -> std::io::Result<End> {
    let tls = conn.tls;
    let permit = match command_loop(&mut conn.rd, &mut conn.wr, tls, state).await? {
        LoopEnd::Closed => return Ok(End::Closed),
        LoopEnd::StartTls => return Ok(End::StartTls),
        LoopEnd::Compress(permit) => permit,
    };
    let mut rd = tokio::io::BufReader::new(Inflate::new(&mut conn.rd, Expansion::default()));
    let mut wr = Deflate::new(&mut conn.wr);
    let ended = command_loop(&mut rd, &mut wr, tls, state).await;
    drop(permit);
    match ended {
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
            // A deflate bomb or a corrupt stream: say why before closing (RFC 4978 §4).
            let why =
                if is_bomb(&e) { "[LIMIT] compressed input expands too much" } else { "corrupt compressed input" };
            tracing::info!(peer = %state.peer, error = %e, "IMAP compressed input refused");
            send(&mut wr, format!("* BYE {why}\r\n").as_bytes()).await?;
            wr.shutdown().await?;
            drop(rd);
            linger(&mut conn.rd).await;
            Ok(End::Closed)
        }
        Err(e) => Err(e),
        // STARTTLS is refused once logged in, and COMPRESS once compressed.
        Ok(_) => Ok(End::Closed),
    }
}

/// Input discarded after a final `BYE`, so that closing with unread input (which makes the
/// kernel reset the connection) does not destroy the `BYE` before the client reads it.
const LINGER_BYTES_MAX: u64 = 1 << 20;
const LINGER_TIME: Duration = Duration::from_secs(2);

async fn linger<R: tokio::io::AsyncRead + Unpin>(rd: &mut R) {
    let mut sink = tokio::io::sink();
    let _ = tokio::time::timeout(LINGER_TIME, tokio::io::copy(&mut rd.take(LINGER_BYTES_MAX), &mut sink)).await;
}

/// Read and answer commands on one pair of streams until the connection ends, asks for
/// TLS, or turns on compression.
async fn command_loop<R: AsyncBufRead + Unpin, W: AsyncWrite + Unpin>(
    rd: &mut R,
    wr: &mut W,
    tls: bool,
    state: &mut State,
) -> std::io::Result<LoopEnd> {
    let (peer, node) = (state.peer, Arc::clone(&state.node));
    let node = &*node;
    loop {
        let limits = CommandLimits {
            authenticated: state.group.is_some(),
            append: node.limits.message_max_bytes + COMMAND_LINE_MAX,
            other: SMALL_COMMAND_MAX,
        };
        let user = state.session.logged_in_user().cloned();
        let read = read_command(rd, wr, &limits);
        let input = match (&state.group, user) {
            (Some(g), Some(user)) => g.unless_locked(&user, read).await.transpose()?,
            _ => Some(read.await?),
        };
        let Some(input) = input else {
            send(wr, LOCKED_BYE).await?;
            return Ok(LoopEnd::Closed);
        };
        let bytes = match input {
            Input::Closed => return Ok(LoopEnd::Closed),
            Input::Refused(reply) => {
                send(wr, &reply).await?;
                continue;
            }
            Input::Command(b) => b,
        };
        if let Some(g) = &state.group {
            if let Some(bye) = gone_away(g, node, state.session.logged_in_user()) {
                send(wr, bye).await?;
                return Ok(LoopEnd::Closed);
            }
        }
        let started = std::time::Instant::now();
        // Boxed, like the login below: a command's future (every command's state, about
        // 5 KiB) would otherwise be part of this loop's, which a session holds all its life.
        let (out, outcome) = Box::pin(state.session.input(&bytes)).await;
        node.metrics.imap_command(&bytes, &out, started.elapsed());
        send(wr, &out).await?;
        let mut outcome = outcome;
        // Follow-ups (login checks, SASL continuation) may chain.
        loop {
            match outcome {
                Outcome::Continue => break,
                Outcome::Logout => return Ok(LoopEnd::Closed),
                Outcome::Unauthenticated => {
                    state.group = None;
                    break;
                }
                Outcome::StartTls => return Ok(LoopEnd::StartTls),
                Outcome::Compress { tag } => {
                    let Some(permit) = CompressPermit::take() else {
                        send(
                            wr,
                            format!("{tag} NO [LIMIT] too many compressed sessions; go on uncompressed\r\n").as_bytes(),
                        )
                        .await?;
                        break;
                    };
                    send(wr, format!("{tag} OK DEFLATE active\r\n").as_bytes()).await?;
                    state.session.compression_started();
                    return Ok(LoopEnd::Compress(permit));
                }
                Outcome::SaslContinue { tag } => {
                    send(wr, b"+ \r\n").await?;
                    let reply = match read_line_within(rd, 4096, IDLE_TIMEOUT).await? {
                        Line::Complete(l) => state.session.sasl_response(&tag, &l),
                        Line::TooLong { .. } => state.session.sasl_response(&tag, b"!"),
                        Line::Eof | Line::Idle => return Ok(LoopEnd::Closed),
                    };
                    send(wr, &reply.0).await?;
                    outcome = reply.1;
                }
                Outcome::Login { tag, creds } => {
                    let (bytes, next) = Box::pin(login(node, peer, tls, state, &tag, &creds)).await;
                    send(wr, &bytes).await?;
                    outcome = next;
                }
                Outcome::Idle { tag } => {
                    let g = state.group.clone().expect("IDLE only after login");
                    if !idle(rd, wr, &mut state.session, &g, node, &tag).await? {
                        return Ok(LoopEnd::Closed);
                    }
                    break;
                }
            }
        }
    }
}

/// Write a response and flush it: a compressing or TLS writer holds bytes until flushed.
async fn send<W: AsyncWrite + Unpin>(wr: &mut W, bytes: &[u8]) -> std::io::Result<()> {
    wr.write_all(bytes).await?;
    wr.flush().await
}

async fn login(
    node: &Node,
    peer: SocketAddr,
    tls: bool,
    state: &mut State,
    tag: &str,
    creds: &PlainCredentials,
) -> (Vec<u8>, Outcome) {
    let hints = state.session.proxy_hints().clone();
    let session = &mut state.session;
    let login = match node.authenticate("imap", peer.ip(), tls, &hints, creds).await {
        Ok(l) => l,
        Err(e) => {
            let code = match e {
                LoginError::Failed => "AUTHENTICATIONFAILED",
                LoginError::Throttled => "UNAVAILABLE",
                LoginError::NeedsTls => "PRIVACYREQUIRED",
                LoginError::Unservable => "CONTACTADMIN",
            };
            return session.login_failed(tag, code, &e.to_string());
        }
    };
    let Some(g) = node.group(&login.group) else {
        return session.login_failed(tag, "UNAVAILABLE", &format!("mailhost {} is not served here", login.group));
    };
    if let Some(why) = g.unreadable_reason(crate::group::READ_WAIT_MAX).await {
        return session.login_failed(tag, "UNAVAILABLE", &why);
    }
    if let Some(target) = g.moved_to(&login.user) {
        return session.login_failed(tag, "UNAVAILABLE", &common::admin::moved_reply(&target));
    }
    if g.lock_of(&login.user).is_some() {
        return session.login_failed(tag, "CONTACTADMIN", common::admin::LOCKED_TEXT);
    }
    state.group = Some(g.clone());
    // Only a front may name a quota (the directory's); a user's own ID cannot.
    if login.via_proxy {
        let bytes = hints.quota_bytes.unwrap_or(0);
        session.set_user_quota(crate::mailstore::quota::Limit { bytes, messages: hints.quota_messages.unwrap_or(0) });
    }
    session.logged_in(tag, login.user, GroupBackend(g)).await
}

/// The `BYE` for a session whose mail is no longer served here: this node stopped leading
/// the group, or the user's mailbox moved to another mailhost.
fn gone_away(group: &Group, node: &Node, user: Option<&crate::mailstore::UserName>) -> Option<&'static [u8]> {
    if !group.is_leader(node.id) {
        return Some(b"* BYE [UNAVAILABLE] the mailhost moved to another node; reconnect\r\n");
    }
    if group.lock_of(user?).is_some() {
        return Some(LOCKED_BYE);
    }
    group
        .moved_to(user?)
        .is_some()
        .then_some(b"* BYE [UNAVAILABLE] your mailbox moved to another mailhost; reconnect\r\n")
}

/// The last words to a session whose account was locked as compromised.
const LOCKED_BYE: &[u8] = b"* BYE [ALERT] your account is locked; contact your administrator\r\n";

/// Run IDLE until `DONE`; `Ok(false)` if the connection must close.
async fn idle<R: AsyncBufRead + Unpin, W: AsyncWrite + Unpin>(
    rd: &mut R,
    wr: &mut W,
    session: &mut Session<GroupBackend>,
    group: &Group,
    node: &Node,
    tag: &str,
) -> std::io::Result<bool> {
    let mut changes = group.sm.subscribe();
    changes.mark_unchanged();
    let mut leader = group.leader_changes();
    leader.mark_unchanged();
    let mut stopping = node.stopping.subscribe();
    if *stopping.borrow_and_update() {
        send(wr, b"* BYE [UNAVAILABLE] server shutting down\r\n").await?;
        return Ok(false);
    }
    wr.write_all(b"+ idling\r\n").await?;
    wr.flush().await?;
    let user = session.logged_in_user().cloned();
    let events = super::idle::Events {
        changes: &mut changes,
        leader: &mut leader,
        stopping: &mut stopping,
        poll: || session.poll(),
        gone: || gone_away(group, node, user.as_ref()),
        timeout: IDLE_TIMEOUT,
    };
    match super::idle::wait(rd, wr, events).await? {
        super::idle::IdleEnd::Done => {
            send(wr, &session.idle_done(tag)).await?;
            Ok(true)
        }
        super::idle::IdleEnd::NotDone => {
            send(wr, format!("{tag} BAD expected DONE\r\n").as_bytes()).await?;
            Ok(true)
        }
        super::idle::IdleEnd::Closed => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read(input: &[u8], limits: &CommandLimits) -> (Input, Vec<u8>) {
        let mut rd = tokio::io::BufReader::new(input);
        let mut wr = Vec::new();
        let got = read_command(&mut rd, &mut wr, limits).await.unwrap();
        (got, wr)
    }

    #[tokio::test]
    async fn literals_are_bounded_by_command_and_login_state() {
        let anon = CommandLimits { authenticated: false, append: 1 << 20, other: 100 };
        let user = CommandLimits { authenticated: true, ..anon };
        // Before login even APPEND is small; after login APPEND may be large, LOGIN may not.
        let (got, wr) = read(b"a APPEND INBOX {500}\r\n", &anon).await;
        assert!(matches!(got, Input::Refused(ref r) if r.starts_with(b"a NO [TOOBIG]")) && wr.is_empty());
        let msg = [b"a APPEND INBOX {500}\r\n".as_slice(), &[b'x'; 500], b"\r\n"].concat();
        let (got, wr) = read(&msg, &user).await;
        assert!(matches!(got, Input::Command(ref c) if c.len() == msg.len()) && wr == b"+ go ahead\r\n");
        let (got, _) = read(b"b LOGIN {500}\r\n", &user).await;
        assert!(matches!(got, Input::Refused(ref r) if r.starts_with(b"b NO [TOOBIG]")));
        // A non-synchronizing literal over the limit is read and dropped, then refused.
        let big = [b"c LOGIN {300+}\r\n".as_slice(), &[b'y'; 300], b" pw\r\nd NOOP\r\n"].concat();
        let mut rd = tokio::io::BufReader::new(big.as_slice());
        let mut wr = Vec::new();
        let got = read_command(&mut rd, &mut wr, &anon).await.unwrap();
        assert!(matches!(got, Input::Refused(ref r) if r.starts_with(b"c NO [TOOBIG]")));
        let next = read_command(&mut rd, &mut wr, &anon).await.unwrap();
        assert!(matches!(next, Input::Command(ref c) if c == b"d NOOP\r\n"), "the stream stays in sync");
    }
}
