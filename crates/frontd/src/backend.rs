//! Logging in on a storage node for a user: find the group's leader (the last one seen,
//! then the member a refusal names, then the others, for a bounded time), connect, pass
//! the user's mailHost and address (IMAP `ID`, POP3 and ManageSieve `XCLIENT`), and authenticate with the
//! proxy credential acting for the user (SASL PLAIN authorization identity). Returns the
//! connected stream for splicing; never falls back to another group.

use std::time::{Duration, Instant};

use base64::Engine;
use common::line::Line;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::cluster::{ClusterMap, Member, Protocol};

/// Longest line read from a storage node during the login dialogue.
const LINE_MAX: usize = 16 * 1024;
/// Lines read while waiting for one tagged reply (untagged data before it is skipped).
const LINES_MAX: usize = 64;
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a storage node has for its greeting and for each reply before the commit: a
/// live node answers in milliseconds; a paused one (whose kernel still completes the TCP
/// handshake) never does, and is then skipped for [`crate::cluster::SUSPECT_FOR`].
pub const GREETING_TIMEOUT: Duration = Duration::from_secs(2);
const DIALOGUE_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause between rounds over all members while a group elects a leader.
const ROUND_PAUSE: Duration = Duration::from_millis(250);

/// The proxy identity and how long to look for a leader.
#[derive(Clone)]
pub struct ProxyCredential {
    pub user: String,
    pub password: String,
    pub route_timeout: Duration,
}

impl std::fmt::Debug for ProxyCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyCredential").field("user", &self.user).finish_non_exhaustive()
    }
}

/// A logged-in backend connection.
#[derive(Debug)]
pub struct Backend {
    pub stream: TcpStream,
    /// Bytes the node sent after its success line (normally none).
    pub pending: Vec<u8>,
    /// The success line without its tag: `OK [CAPABILITY ...] ...` or `+OK ...`.
    pub reply: String,
    pub member: u64,
    /// The group whose leader this is (after following a move, the new one).
    pub group: String,
}

/// Why no backend session could be made.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum RouteError {
    /// The user's mailHost is not in the cluster map: an operator error.
    #[error("mailhost {0} is not served by this cluster")]
    UnknownGroup(String),
    /// No member would take the login in time (no leader, nodes down).
    #[error("mailhost {0} is temporarily unavailable")]
    Unavailable(String),
    /// A storage node refused the proxy login itself (misconfigured proxy credential).
    #[error("storage node refused the proxy login: {0}")]
    Refused(String),
    /// The user's mail moved to this mailhost (the directory answer was stale).
    #[error("the mailbox moved to mailhost {0}")]
    Moved(String),
}

/// What one attempt at one member gave.
pub enum Attempt<T> {
    Ok(T),
    /// Not the leader; maybe the refusal named the member that is.
    NotLeader(Option<u64>),
    /// Silent: no connection or no answer in time (a paused or unreachable node). Skipped
    /// for [`crate::cluster::SUSPECT_FOR`].
    Down(String),
    /// It answered, but with a failure (a refused connection, a closed one, a refusal of a
    /// step): the next member is tried, and this one is not suspected, since it may be
    /// the leader a moment later (a node just elected refuses until it is ready).
    Failed(String),
    Refused(String),
    /// The user's mail moved to this mailhost.
    Moved(String),
}

/// The leader a refusal names (`... its leader is node 3`).
fn leader_hint(text: &str) -> Option<u64> {
    let rest = &text[text.find("leader is node ")? + "leader is node ".len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// SASL PLAIN initial response for the proxy acting for `user`.
fn sasl_plain(proxy: &ProxyCredential, user: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{user}\0{}\0{}", proxy.user, proxy.password))
}

/// Run `try_member` on members of `group` that serve `protocol` until one is the leader
/// and succeeds (each try within `attempt_timeout`), for at most `timeout`: the member a refusal names first, then the last
/// leader seen, then the rest, in rounds with a pause while an election runs.
pub async fn with_leader<T, F, Fut>(
    cluster: &ClusterMap,
    group: &str,
    protocol: Protocol,
    timeout: Duration,
    attempt_timeout: Duration,
    mut try_member: F,
) -> Result<T, RouteError>
where
    F: FnMut(Member) -> Fut,
    Fut: std::future::Future<Output = Attempt<T>>,
{
    let deadline = Instant::now() + timeout;
    let mut hint = None;
    let mut last_problem = String::new();
    loop {
        let candidates = cluster.candidates(group, protocol, hint);
        if candidates.is_empty() {
            return Err(RouteError::UnknownGroup(group.to_string()));
        }
        let mut redirected = false;
        for member in candidates {
            let id = member.id;
            let attempt = tokio::time::timeout(attempt_timeout, try_member(member))
                .await
                .unwrap_or_else(|_| Attempt::Down("no answer in time".into()));
            match attempt {
                Attempt::Ok(value) => {
                    cluster.set_leader(group, id);
                    return Ok(value);
                }
                Attempt::Refused(why) => return Err(RouteError::Refused(why)),
                Attempt::Moved(target) => return Err(RouteError::Moved(target)),
                // A member that just failed to answer is not followed (it may be paused,
                // named by followers that have not noticed yet).
                Attempt::NotLeader(Some(leader))
                    if leader != id && hint != Some(leader) && !cluster.is_suspect(group, leader) =>
                {
                    hint = Some(leader);
                    redirected = true;
                    break;
                }
                Attempt::NotLeader(_) => last_problem = format!("node {id} is not the leader"),
                Attempt::Down(why) => {
                    tracing::info!(group, member = id, %why, "member did not answer; tried last for a while");
                    cluster.mark_down(group, id);
                    last_problem = format!("node {id}: {why}");
                }
                Attempt::Failed(why) => {
                    tracing::debug!(group, member = id, %why, "member answered with a failure");
                    last_problem = format!("node {id}: {why}");
                }
            }
            if Instant::now() >= deadline {
                break;
            }
        }
        if Instant::now() >= deadline {
            tracing::warn!(group, last_problem, "no leader found in time");
            return Err(RouteError::Unavailable(group.to_string()));
        }
        if !redirected {
            tokio::time::sleep(ROUND_PAUSE).await;
        }
    }
}

/// What the storage node is told about a session it serves for a front: the client's
/// address and the directory's rules for the user (IMAP: its quota).
#[derive(Debug, Clone)]
pub struct SessionFacts {
    pub client_ip: std::net::IpAddr,
    pub rules: common::recipient_rules::RecipientRules,
}

/// Log `user` (the account's primary address) in on a leader of `group`.
pub async fn open(
    cluster: &ClusterMap,
    proxy: &ProxyCredential,
    protocol: Protocol,
    group: &str,
    user: &str,
    facts: &SessionFacts,
) -> Result<Backend, RouteError> {
    with_leader(cluster, group, protocol, proxy.route_timeout, DIALOGUE_TIMEOUT, |member| async move {
        let addr = member.address(protocol).expect("candidates serve the protocol");
        match attempt(addr, protocol, proxy, group, user, facts).await {
            Attempt::Ok(mut backend) => {
                backend.member = member.id;
                backend.group = group.to_string();
                Attempt::Ok(backend)
            }
            Attempt::NotLeader(h) => Attempt::NotLeader(h),
            Attempt::Down(why) => Attempt::Down(format!("{addr}: {why}")),
            Attempt::Failed(why) => Attempt::Failed(format!("{addr}: {why}")),
            Attempt::Refused(why) => Attempt::Refused(why),
            Attempt::Moved(target) => Attempt::Moved(target),
        }
    })
    .await
}

async fn attempt(
    addr: &str,
    protocol: Protocol,
    proxy: &ProxyCredential,
    group: &str,
    user: &str,
    facts: &SessionFacts,
) -> Attempt<Backend> {
    let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Attempt::Failed(e.to_string()),
        Err(_) => return Attempt::Down("connect timed out".into()),
    };
    let _ = stream.set_nodelay(true);
    let mut conn = BufReader::new(stream);
    let result = dialogue(&mut conn, protocol, proxy, group, user, facts).await;
    match result {
        Ok(Ok(reply)) => {
            let pending = conn.buffer().to_vec();
            Attempt::Ok(Backend { stream: conn.into_inner(), pending, reply, member: 0, group: String::new() })
        }
        Ok(Err(refusal)) => refusal,
        Err(e) => Attempt::Failed(e.to_string()),
    }
}

async fn read_line(conn: &mut BufReader<TcpStream>) -> std::io::Result<String> {
    match common::line::read_line(conn, LINE_MAX).await? {
        Line::Complete(line) => Ok(String::from_utf8_lossy(&line).into_owned()),
        _ => Err(std::io::Error::other("connection closed or line too long")),
    }
}

/// Read lines until one starts with `tag `; returns the rest after the tag.
async fn tagged(conn: &mut BufReader<TcpStream>, tag: &str) -> std::io::Result<String> {
    for _ in 0..LINES_MAX {
        let line = read_line(conn).await?;
        if let Some(rest) = line.strip_prefix(tag).and_then(|r| r.strip_prefix(' ')) {
            return Ok(rest.to_string());
        }
    }
    Err(std::io::Error::other("no tagged reply"))
}

/// The line that ends a ManageSieve response (`OK`, `NO` or `BYE`), after any capability
/// or data lines before it.
async fn sieve_response(conn: &mut BufReader<TcpStream>) -> std::io::Result<String> {
    for _ in 0..LINES_MAX {
        let line = read_line(conn).await?;
        if ["OK", "NO", "BYE"].iter().any(|w| line.starts_with(w)) {
            return Ok(line);
        }
    }
    Err(std::io::Error::other("no ManageSieve status line"))
}

/// Quote an IMAP string (the values are addresses and group names: no CR/LF).
fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// What a refusal means: `UNAVAILABLE`/`SYS/TEMP` not-leader answers redirect; anything
/// else is the node refusing the proxy credential.
fn refusal<T>(text: &str) -> Attempt<T> {
    if let Some(target) = common::admin::moved_target(text) {
        return Attempt::Moved(target.to_string());
    }
    let temporary = ["[UNAVAILABLE]", "[SYS/TEMP]"].iter().any(|c| text.contains(c));
    if temporary {
        Attempt::NotLeader(leader_hint(text))
    } else {
        Attempt::Refused(text.to_string())
    }
}

/// The proxy login on a storage node: the greeting, one command naming the client and the
/// group (IMAP `ID`, POP3 `XCLIENT`), then the login as the proxy for `user`. The node's
/// login reply, or what the attempt means.
async fn dialogue(
    conn: &mut BufReader<TcpStream>,
    protocol: Protocol,
    proxy: &ProxyCredential,
    group: &str,
    user: &str,
    facts: &SessionFacts,
) -> std::io::Result<Result<String, Attempt<Backend>>> {
    let sasl = sasl_plain(proxy, user);
    let client_ip = facts.client_ip;
    let (greeting_ok, ok, steps) = match protocol {
        Protocol::Imap => {
            let (bytes, messages) = (facts.rules.quota_bytes, facts.rules.quota_messages);
            let id = format!(
                "P1 ID ({} {} {} {} {} \"{bytes}\" {} \"{messages}\")",
                quoted("x-originating-ip"),
                quoted(&client_ip.to_string()),
                quoted("x-mailhost"),
                quoted(group),
                quoted("x-quota-bytes"),
                quoted("x-quota-messages"),
            );
            ("* OK", "OK", [(id, Some("P1"), "ID"), (format!("P2 AUTHENTICATE PLAIN {sasl}"), Some("P2"), "login")])
        }
        Protocol::Pop3 => (
            "+OK",
            "+OK",
            [
                (format!("XCLIENT ADDR={client_ip} MAILHOST={group}"), None, "XCLIENT"),
                (format!("AUTH PLAIN {sasl}"), None, "login"),
            ],
        ),
        Protocol::Sieve => (
            "OK",
            "OK",
            [
                (format!("XCLIENT ADDR={client_ip} MAILHOST={group}"), None, "XCLIENT"),
                (format!("AUTHENTICATE \"PLAIN\" \"{sasl}\""), None, "login"),
            ],
        ),
        Protocol::Lmtp | Protocol::Admin => unreachable!("only IMAP, POP3 and ManageSieve sessions are proxied"),
    };
    let greeting = async {
        match protocol {
            Protocol::Sieve => sieve_response(conn).await,
            _ => read_line(conn).await,
        }
    };
    let Ok(greeting) = tokio::time::timeout(GREETING_TIMEOUT, greeting).await else {
        return Ok(Err(Attempt::Down(format!("no greeting within {GREETING_TIMEOUT:?}"))));
    };
    let greeting = greeting?;
    if !greeting.starts_with(greeting_ok) {
        return Ok(Err(Attempt::Failed(format!("greeting {greeting:?}"))));
    }
    let last = steps.len() - 1;
    for (k, (command, tag, what)) in steps.into_iter().enumerate() {
        conn.get_mut().write_all(format!("{command}\r\n").as_bytes()).await?;
        let reply = match (tag, protocol) {
            (Some(tag), _) => tagged(conn, tag).await?,
            (None, Protocol::Sieve) => sieve_response(conn).await?,
            (None, _) => read_line(conn).await?,
        };
        match (reply.starts_with(ok), k == last) {
            (true, true) => return Ok(Ok(reply)),
            (true, false) => continue,
            // A refused login says why (moved, not the leader, bad proxy credential).
            (false, true) => return Ok(Err(refusal(&reply))),
            (false, false) => return Ok(Err(Attempt::Failed(format!("{what} refused: {reply}")))),
        }
    }
    unreachable!("the last step returns")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_a_silent_member_is_suspected_and_a_refusing_one_is_followed_once_it_leads() {
        use crate::config::{GroupSection, MemberSection};
        let member = |id| MemberSection {
            id,
            imap: Some(format!("127.0.0.1:{}", 1000 + id)),
            pop3: None,
            lmtp: None,
            sieve: None,
            admin: None,
        };
        let cluster =
            ClusterMap::new(&[GroupSection { name: "hermes".into(), members: vec![member(1), member(2), member(3)] }]);
        // Node 1 is silent; node 2 refuses (just elected, not ready); node 3 names node 2.
        let round = std::sync::atomic::AtomicUsize::new(0);
        let found =
            with_leader(&cluster, "hermes", Protocol::Imap, Duration::from_secs(5), Duration::from_secs(1), |m| {
                let round = &round;
                async move {
                    let n = round.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    match (m.id, n) {
                        (1, _) => Attempt::Down("no greeting".into()),
                        (2, n) if n < 4 => Attempt::Failed("greeting \"* BYE not ready\"".into()),
                        (2, _) => Attempt::Ok(2),
                        _ => Attempt::NotLeader(Some(2)),
                    }
                }
            })
            .await;
        assert_eq!(found, Ok(2), "the refusing node is tried again, and leads");
        assert!(cluster.is_suspect("hermes", 1), "silence is suspected");
        assert!(!cluster.is_suspect("hermes", 2), "an answer with a failure is not");
    }

    #[test]
    fn refusals_name_the_leader() {
        assert_eq!(
            leader_hint("NO [UNAVAILABLE] this node does not lead mailhost hermes; its leader is node 3"),
            Some(3)
        );
        assert_eq!(leader_hint("-ERR [SYS/TEMP] no leader elected yet"), None);
        assert!(matches!(refusal::<()>("NO [UNAVAILABLE] x; its leader is node 12"), Attempt::NotLeader(Some(12))));
        assert!(matches!(refusal::<()>("NO [AUTHENTICATIONFAILED] authentication failed"), Attempt::Refused(_)));
        let moved = refusal::<()>("NO [UNAVAILABLE] mailbox moved to mailhost apollo");
        assert!(matches!(moved, Attempt::Moved(t) if t == "apollo"));
        assert!(
            matches!(refusal::<()>("-ERR [SYS/TEMP] mailbox moved to mailhost zeus-2"), Attempt::Moved(t) if t == "zeus-2")
        );
        assert!(!format!(
            "{:?}",
            ProxyCredential { user: "f".into(), password: "s3cret".into(), route_timeout: Duration::ZERO }
        )
        .contains("s3cret"));
    }
}
