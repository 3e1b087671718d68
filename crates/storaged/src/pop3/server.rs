//! The POP3 server: one task per connection, bounded line reading, logins through the
//! node's authenticator, and maildrop reads and deletions on the user's group leader.
//! Deletions are expunged through the group's Raft log before QUIT is answered `+OK`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use super::session::{transmit, Action, DropEntry, Offer, Session, COMMAND_LINE_MAX};
use crate::auth::{LoginError, PlainCredentials, ProxyHints};
use crate::group::access::AccessError;
use crate::group::Group;
use crate::line::{read_line_within, Line};
use crate::mailstore::{MailOp, MailResponse, MailboxName, OpId, UserName};
use crate::node::Node;
use crate::tls::{serve_with_starttls, Conn, End, SESSION_READ_BUFFER_BYTES};

/// RFC 1939 §3: the autologout timer is at least 10 minutes.
const IDLE_TIMEOUT: Duration = Duration::from_secs(600);

/// Serve POP3 on `listener` until it fails; with `implicit_tls` (port 995 style) every
/// connection starts with a TLS handshake.
pub async fn serve(listener: TcpListener, node: Arc<Node>, implicit_tls: bool) -> std::io::Result<()> {
    let max = node.limits.connections_max;
    crate::accept::serve(listener, max, "POP3", b"-ERR [SYS/TEMP] too many connections\r\n", move |stream, peer| {
        handle(stream, peer, node.clone(), implicit_tls)
    })
    .await
}

/// The logged-in user and the group holding their mail.
struct Mailbox {
    group: Arc<Group>,
    user: UserName,
}

/// Unique-id listing of a message: UIDVALIDITY and UID, the same on every replica.
fn uidl(uid_validity: u32, uid: u32) -> String {
    format!("{uid_validity:08x}{uid:08x}")
}

/// Per-connection state that survives an STLS upgrade.
struct State {
    session: Session,
    mailbox: Option<Mailbox>,
    peer: SocketAddr,
    node: Arc<Node>,
}

async fn handle(stream: TcpStream, peer: SocketAddr, node: Arc<Node>, implicit_tls: bool) -> std::io::Result<()> {
    node.metrics.sessions.opened("pop3");
    let mut conn = Conn::open_buffered(stream, node.tls.as_ref(), implicit_tls, SESSION_READ_BUFFER_BYTES).await?;
    let offer = Offer {
        starttls: node.tls.is_some() && !conn.tls,
        plaintext_auth: node.auth.plaintext_allowed(peer.ip(), conn.tls),
    };
    let mut state =
        State { session: Session::new(node.host.clone(), offer), mailbox: None, peer, node: Arc::clone(&node) };
    conn.wr.write_all(format!("{}\r\n", state.session.greeting()).as_bytes()).await?;
    serve_with_starttls(conn, node.tls.as_ref(), &mut state, commands, |state| state.session.tls_started()).await
}

/// The last words to a session whose account was locked as compromised.
const LOCKED_ERR: &[u8] = b"-ERR [AUTH] your account is locked; contact your administrator\r\n";

/// Read and answer commands until the connection ends or asks for TLS.
async fn commands(conn: &mut Conn, state: &mut State) -> std::io::Result<End> {
    let (peer, node) = (state.peer, Arc::clone(&state.node));
    let node = &*node;
    let (rd, wr) = (&mut conn.rd, &mut conn.wr);
    loop {
        let read = read_line_within(rd, COMMAND_LINE_MAX, IDLE_TIMEOUT);
        let read = match &state.mailbox {
            Some(m) => m.group.unless_locked(&m.user, read).await.transpose()?,
            None => Some(read.await?),
        };
        let Some(read) = read else {
            wr.write_all(LOCKED_ERR).await?;
            return Ok(End::Closed);
        };
        let line = match read {
            Line::Idle => {
                wr.write_all(b"-ERR autologout: idle too long\r\n").await?;
                return Ok(End::Closed);
            }
            Line::Eof => return Ok(End::Closed),
            Line::TooLong { .. } => {
                wr.write_all(b"-ERR line too long\r\n").await?;
                continue;
            }
            Line::Complete(l) => l,
        };
        if let Some(m) = &state.mailbox {
            // Reads are served by the leader only; a deposed leader's view may be stale.
            if !m.group.is_leader(node.id) {
                wr.write_all(b"-ERR [SYS/TEMP] the mailhost moved to another node; reconnect\r\n").await?;
                return Ok(End::Closed);
            }
            // A move flipped the user away: this maildrop is a stale copy (deletions would be
            // refused anyway); the client reconnects through the front to the new mailhost.
            if m.group.lock_of(&m.user).is_some() {
                wr.write_all(LOCKED_ERR).await?;
                return Ok(End::Closed);
            }
            if m.group.moved_to(&m.user).is_some() {
                wr.write_all(b"-ERR [SYS/TEMP] your mailbox moved to another mailhost; reconnect\r\n").await?;
                return Ok(End::Closed);
            }
        }
        let mut out = Vec::new();
        let mut queue: std::collections::VecDeque<Action> = state.session.line(&line).into();
        while let Some(action) = queue.pop_front() {
            match action {
                Action::Reply(r) => {
                    out.extend_from_slice(r.as_bytes());
                    out.extend_from_slice(b"\r\n");
                }
                Action::Authenticate(creds) => {
                    let hints = state.session.proxy_hints().clone();
                    let actions = match login(node, peer, conn.tls, &hints, &creds).await {
                        Ok((m, entries)) => {
                            state.mailbox = Some(m);
                            state.session.logged_in(entries)
                        }
                        Err((code, why)) => state.session.login_failed(code, &why),
                    };
                    queue.extend(actions);
                }
                Action::Send { uid, top } => {
                    let m = state.mailbox.as_ref().expect("Send only after login");
                    let read = m.group.read_message(&m.user, &MailboxName::inbox(), uid);
                    match read {
                        Ok(Some(bytes)) => {
                            out.extend_from_slice(format!("+OK {} octets\r\n", bytes.len()).as_bytes());
                            out.extend_from_slice(&transmit(&bytes, top));
                        }
                        Ok(None) => out.extend_from_slice(b"-ERR message was expunged by another session\r\n"),
                        Err(e) => {
                            tracing::error!(user = %m.user.as_str(), uid, error = %e, "POP3 read failed");
                            out.extend_from_slice(b"-ERR [SYS/TEMP] cannot read the message now\r\n");
                        }
                    }
                    // Messages can be large: send each as it is read.
                    wr.write_all(&out).await?;
                    out.clear();
                }
                Action::Commit(uids) => {
                    let m = state.mailbox.as_ref().expect("Commit only after login");
                    out.extend_from_slice(commit(node, m, uids).await.as_bytes());
                    out.extend_from_slice(b"\r\n");
                    wr.write_all(&out).await?;
                    return Ok(End::Closed);
                }
                Action::StartTls => {
                    out.extend_from_slice(b"+OK begin TLS negotiation\r\n");
                    wr.write_all(&out).await?;
                    wr.flush().await?;
                    return Ok(End::StartTls);
                }
                Action::Close => {
                    wr.write_all(&out).await?;
                    return Ok(End::Closed);
                }
            }
        }
        if !out.is_empty() {
            wr.write_all(&out).await?;
        }
    }
}

/// Check a login and open the user's maildrop; `Err((response code, text))` if refused.
async fn login(
    node: &Node,
    peer: SocketAddr,
    tls: bool,
    hints: &ProxyHints,
    creds: &PlainCredentials,
) -> Result<(Mailbox, Vec<DropEntry>), (&'static str, String)> {
    let login = node.authenticate("pop3", peer.ip(), tls, hints, creds).await.map_err(|e| match e {
        LoginError::Failed | LoginError::NeedsTls => ("AUTH", e.to_string()),
        LoginError::Throttled => ("LOGIN-DELAY", e.to_string()),
        LoginError::Unservable => ("SYS/PERM", e.to_string()),
    })?;
    let Some(group) = node.group(&login.group) else {
        return Err(("SYS/PERM", format!("mailhost {} is not served here", login.group)));
    };
    if let Some(why) = group.unreadable_reason(crate::group::READ_WAIT_MAX).await {
        return Err(("SYS/TEMP", why));
    }
    if let Some(target) = group.moved_to(&login.user) {
        return Err(("SYS/TEMP", common::admin::moved_reply(&target)));
    }
    if group.lock_of(&login.user).is_some() {
        return Err(("AUTH", common::admin::LOCKED_TEXT.into()));
    }
    let index = group.mailbox_index(&login.user, &MailboxName::inbox());
    let entries = match index {
        Ok(Some(idx)) => idx
            .messages
            .iter()
            .map(|m| DropEntry { uid: m.uid, size: m.size, uidl: uidl(idx.uid_validity, m.uid) })
            .collect(),
        Ok(None) => Vec::new(),
        Err(e) => {
            tracing::error!(user = %login.user.as_str(), error = %e, "POP3 cannot open maildrop");
            return Err(("SYS/TEMP", "cannot open the maildrop now".into()));
        }
    };
    Ok((Mailbox { group, user: login.user }, entries))
}

/// Expunge the messages marked for deletion; the reply line for QUIT.
async fn commit(node: &Node, m: &Mailbox, uids: Vec<u32>) -> String {
    let n = uids.len();
    let nonce: [u8; 16] = rand::random();
    let op_id = OpId::digest(&[b"pop3-quit", m.user.as_str().as_bytes(), &nonce]);
    let op = MailOp::Expunge { user: m.user.as_str().to_string(), mailbox: "INBOX".into(), uids };
    match m.group.propose(op_id, op).await {
        Ok(MailResponse::Rejected(why)) => format!("-ERR deletions not made: {why}"),
        Ok(_) => format!("+OK {} signing off ({n} messages deleted)", node.host),
        Err(AccessError::NotLeader { .. }) => "-ERR [SYS/TEMP] the mailhost moved; deletions not made".into(),
        Err(e) => {
            tracing::error!(user = %m.user.as_str(), error = %e, "POP3 deletions not committed");
            "-ERR [SYS/TEMP] deletions not committed; messages kept".into()
        }
    }
}
