//! The ManageSieve server of a storage node: one task per connection, bounded lines and
//! literals, logins through the node's authenticator (a front logs in with its proxy
//! credential for the user), and the user's scripts read on, and changed through, the
//! leader of the user's group. A follower refuses the login, naming the leader, so the
//! front tries there.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::session::{answer, Action, Offer, ScriptRequest, ScriptResult, Session};
use crate::auth::LoginError;
use crate::group::access::AccessError;
use crate::group::Group;
use crate::line::{read_line_within, Line};
use crate::mailstore::{scripts, MailOp, MailResponse, OpId, Rejection, UserName};
use crate::node::Node;
use crate::tls::{serve_with_starttls, Conn, End, SESSION_READ_BUFFER_BYTES};
use common::managesieve::{quote, Command, Next, Reader, LINE_MAX};

/// RFC 5804 §1.8 leaves it to servers; like IMAP's 30 minutes.
const IDLE_TIMEOUT: Duration = Duration::from_secs(1800);

/// Serve ManageSieve on `listener` until it fails.
pub async fn serve(listener: TcpListener, node: Arc<Node>) -> std::io::Result<()> {
    let max = node.limits.connections_max;
    crate::accept::serve(
        listener,
        max,
        "ManageSieve",
        b"BYE (TRYLATER) \"too many connections\"\r\n",
        move |s, peer| handle(s, peer, node.clone()),
    )
    .await
}

struct User {
    group: Arc<Group>,
    user: UserName,
}

struct State {
    session: Session,
    user: Option<User>,
    peer: SocketAddr,
    node: Arc<Node>,
    tls_started: bool,
}

async fn handle(stream: TcpStream, peer: SocketAddr, node: Arc<Node>) -> std::io::Result<()> {
    node.metrics.sessions.opened("sieve");
    let mut conn = Conn::open_buffered(stream, node.tls.as_ref(), false, SESSION_READ_BUFFER_BYTES).await?;
    let offer = Offer { starttls: node.tls.is_some(), plaintext_auth: node.auth.plaintext_allowed(peer.ip(), false) };
    let session = Session::new(offer);
    conn.wr.write_all(&session.greeting()).await?;
    let mut state = State { session, user: None, peer, node: Arc::clone(&node), tls_started: false };
    serve_with_starttls(conn, node.tls.as_ref(), &mut state, commands, |state| state.tls_started = true).await
}

/// The next whole command, reading literals as the line announces them.
/// Largest literal (a script, with room for a line ending).
const LITERAL_MAX: usize = scripts::SCRIPT_MAX_BYTES + 2;

async fn read_command(conn: &mut Conn) -> std::io::Result<Option<Result<Command, String>>> {
    let mut reader = Reader::new(LITERAL_MAX);
    loop {
        let line = match read_line_within(&mut conn.rd, LINE_MAX, IDLE_TIMEOUT).await? {
            Line::Complete(line) => line,
            Line::TooLong { .. } => return Ok(Some(Err("line too long".into()))),
            Line::Eof | Line::Idle => return Ok(None),
        };
        match reader.line(&line) {
            Ok(Next::Command(command)) => return Ok(Some(Ok(command))),
            Ok(Next::Literal(n)) => {
                let mut bytes = vec![0u8; n];
                conn.rd.read_exact(&mut bytes).await?;
                reader.literal(bytes);
            }
            // A refused literal's bytes follow anyway and cannot be told from commands.
            Err(e @ common::managesieve::GrammarError::LiteralTooLarge(_)) => {
                conn.wr.write_all(format!("BYE (QUOTA/MAXSIZE) {}\r\n", quote(&e.to_string())).as_bytes()).await?;
                return Ok(None);
            }
            Err(e) => return Ok(Some(Err(e.to_string()))),
        }
    }
}

async fn commands(conn: &mut Conn, state: &mut State) -> std::io::Result<End> {
    if std::mem::take(&mut state.tls_started) {
        let plaintext = state.node.auth.plaintext_allowed(state.peer.ip(), true);
        write_actions(conn, state.session.tls_started(plaintext)).await?;
    }
    loop {
        let user = state.user.as_ref().map(|u| (u.group.clone(), u.user.clone()));
        let read = match &user {
            Some((group, name)) => group.unless_locked(name, read_command(conn)).await.transpose()?,
            None => Some(read_command(conn).await?),
        };
        let Some(read) = read else {
            conn.wr.write_all(b"BYE \"your account is locked; contact your administrator\"\r\n").await?;
            return Ok(End::Closed);
        };
        let actions = match read {
            None => return Ok(End::Closed),
            Some(Err(why)) => state.session.bad_line(&why),
            Some(Ok(command)) => state.session.command(&command),
        };
        let mut queue: std::collections::VecDeque<Action> = actions.into();
        while let Some(action) = queue.pop_front() {
            match action {
                Action::Reply(bytes) => conn.wr.write_all(&bytes).await?,
                Action::Authenticate(creds) => queue.extend(login(conn.tls, state, &creds).await),
                Action::Script(request) => {
                    let result = match &state.user {
                        Some(user) => carry_out(&state.node, user, request).await,
                        None => ScriptResult::Unavailable("log in first".into()),
                    };
                    conn.wr.write_all(&answer(result)).await?;
                }
                Action::StartTls => {
                    conn.wr.write_all(b"OK \"begin TLS negotiation\"\r\n").await?;
                    conn.wr.flush().await?;
                    return Ok(End::StartTls);
                }
                Action::Close => return Ok(End::Closed),
            }
        }
    }
}

async fn write_actions(conn: &mut Conn, actions: Vec<Action>) -> std::io::Result<()> {
    for action in actions {
        if let Action::Reply(bytes) = action {
            conn.wr.write_all(&bytes).await?;
        }
    }
    Ok(())
}

/// Checks the login; on this node only if it leads the user's group.
async fn login(tls: bool, state: &mut State, creds: &crate::auth::PlainCredentials) -> Vec<Action> {
    let node = Arc::clone(&state.node);
    let hints = state.session.proxy_hints().clone();
    let login = match node.authenticate("sieve", state.peer.ip(), tls, &hints, creds).await {
        Ok(login) => login,
        Err(e @ (LoginError::Failed | LoginError::NeedsTls | LoginError::Unservable)) => {
            return state.session.login_failed(None, &e.to_string());
        }
        Err(e @ LoginError::Throttled) => return state.session.login_failed(Some("TRYLATER"), &e.to_string()),
    };
    let Some(group) = node.group(&login.group) else {
        return state.session.login_failed(None, &format!("mailhost {} is not served here", login.group));
    };
    // The words a front's router looks for: "[UNAVAILABLE]" and "its leader is node N".
    if let Some(why) = group.unreadable_reason(crate::group::READ_WAIT_MAX).await {
        return state.session.login_failed(Some("TRYLATER"), &format!("[UNAVAILABLE] {why}"));
    }
    if let Some(target) = group.moved_to(&login.user) {
        return state.session.login_failed(Some("TRYLATER"), &common::admin::moved_reply(&target));
    }
    if group.lock_of(&login.user).is_some() {
        return state.session.login_failed(None, common::admin::LOCKED_TEXT);
    }
    state.user = Some(User { group, user: login.user });
    state.session.logged_in()
}

/// Reads on this node (the leader), changes through the group's log.
async fn carry_out(node: &Node, user: &User, request: ScriptRequest) -> ScriptResult {
    if !user.group.is_leader(node.id) {
        return ScriptResult::Unavailable("this node no longer leads your mailhost; reconnect".into());
    }
    let dir = {
        let store = user.group.sm.store();
        let store = store.lock().expect("store lock");
        store.layout().user_dir(&user.user)
    };
    let name = user.user.as_str().to_string();
    let op = match request {
        ScriptRequest::List => {
            return read(|| {
                scripts::list(&dir).map(|l| ScriptResult::Listed(l.into_iter().map(|s| (s.name, s.active)).collect()))
            })
        }
        ScriptRequest::Get(script) => {
            return match scripts::read(&dir, &script) {
                Ok(Some(text)) => ScriptResult::Script(text),
                Ok(None) => ScriptResult::Refused(Rejection::NoScript(script)),
                Err(e) => refusal(e),
            }
        }
        ScriptRequest::HaveSpace(script, size) => {
            let size = usize::try_from(size).unwrap_or(usize::MAX);
            return scripts::have_space(&dir, &script, size).map_or_else(refusal, |()| ScriptResult::Done);
        }
        ScriptRequest::Put(script, text) => MailOp::PutScript { user: name, name: script, script: text },
        ScriptRequest::SetActive(script) => MailOp::SetActiveScript { user: name, name: script },
        ScriptRequest::Delete(script) => MailOp::DeleteScript { user: name, name: script },
        ScriptRequest::Rename(from, to) => MailOp::RenameScript { user: name, from, to },
    };
    let nonce: [u8; 16] = rand::random();
    let op_id = OpId::digest(&[b"managesieve", user.user.as_str().as_bytes(), &nonce]);
    match user.group.propose(op_id, op).await {
        Ok(MailResponse::Done) => ScriptResult::Done,
        Ok(MailResponse::Rejected(rejection)) => ScriptResult::Refused(rejection),
        Ok(other) => ScriptResult::Unavailable(format!("unexpected result {other:?}")),
        Err(AccessError::NotLeader { .. }) => {
            ScriptResult::Unavailable("this node no longer leads your mailhost; reconnect".into())
        }
        Err(e) => {
            tracing::warn!(user = %user.user.as_str(), error = %e, "ManageSieve change failed");
            ScriptResult::Unavailable("the change could not be made now; try again".into())
        }
    }
}

fn read(f: impl FnOnce() -> std::io::Result<ScriptResult>) -> ScriptResult {
    f().unwrap_or_else(|e| {
        tracing::error!(error = %e, "cannot read Sieve scripts");
        ScriptResult::Unavailable("cannot read your scripts now".into())
    })
}

fn refusal(e: scripts::ScriptError) -> ScriptResult {
    use scripts::ScriptError as E;
    match e {
        E::BadName(name) => ScriptResult::Refused(Rejection::Cannot(format!("{name:?} is not a valid script name"))),
        E::NoSuchScript(name) => ScriptResult::Refused(Rejection::NoScript(name)),
        E::Exists(name) => ScriptResult::Refused(Rejection::ScriptExists(name)),
        E::Active(name) => ScriptResult::Refused(Rejection::ScriptActive(name)),
        E::Quota(why) => ScriptResult::Refused(Rejection::ScriptQuota(why)),
        E::Io(e) => {
            tracing::error!(error = %e, "cannot read Sieve scripts");
            ScriptResult::Unavailable("cannot read your scripts now".into())
        }
    }
}
