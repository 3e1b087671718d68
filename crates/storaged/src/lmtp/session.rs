//! The LMTP protocol state machine (RFC 2033): command lines and data lines in, reply
//! lines and actions out. No I/O: the server feeds it lines and carries out its actions.
//! One command table, one dispatcher. Nothing but `LHLO`, `NOOP`, `RSET`, `QUIT` and
//! `AUTH` is served before the client proved it holds the cluster key
//! (`common::lmtp_auth`): this port takes mail only from the cluster's own fronts.

use common::lmtp_auth;
use common::rpc_channel::ClusterKey;

use crate::mailstore::UserName;

/// Failed `AUTH` answers before the connection is closed.
const AUTH_FAILURES_MAX: u32 = 3;

/// Protocol limits of a session.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub message_max: usize,
    pub recipients_max: usize,
}

/// An accepted recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    pub address: String,
    pub user: UserName,
    pub group: String,
    /// The folder a front's scanning stage files this copy in (`RCPT ... XFOLDER=`):
    /// `Junk` or `Quarantine`; INBOX when none.
    pub folder: Option<&'static str>,
    /// What the directory says of this recipient's delivery (`RCPT ... XUSER=`, from a
    /// front): quota, forwarding, local copy, auto-reply.
    pub rules: common::recipient_rules::RecipientRules,
}

/// The folders `XFOLDER=` may name: where the scanning stage files spam. Anything else is
/// Sieve's business, on the storage node.
const FOLDERS: &[&str] = &["Junk", "Quarantine"];

/// A message ready for delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub from: String,
    pub recipients: Vec<Recipient>,
    pub data: Vec<u8>,
    /// What the front says makes this message the same as an earlier one (`MAIL ...
    /// XMSGKEY=`, 32 hex digits: the client's retry of a transaction whose answer it never
    /// got); the delivery's operation ids derive from it instead of from the bytes.
    pub message_key: Option<[u8; 16]>,
}

/// What the server must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send this reply line (CRLF is added by the server).
    Reply(String),
    /// Deliver and then send one reply per recipient, in order.
    Deliver(Envelope),
    /// Close the connection after the replies.
    Close,
}

/// What the session needs to know about the world when handling a command.
pub trait Context {
    /// The user and group an address delivers to, if it is local. `mailhost` is the group
    /// a front node's directory lookup named (`RCPT ... XMAILHOST=`): it decides when this
    /// node serves that group.
    fn resolve(&self, address: &str, mailhost: Option<&str>) -> Option<(UserName, String)>;
    /// `None` if this node can take deliveries for `group` now, else where to go instead.
    fn not_leader(&self, group: &str) -> Option<String>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Fresh,
    Greeted,
    /// `AUTH` sent its challenge; the next line is the answer.
    AuthAnswer,
    Data,
}

/// What proves a client is a cluster member: the key, and this connection's challenge.
#[derive(Debug, Clone)]
pub struct PeerAuth {
    pub key: ClusterKey,
    pub challenge: String,
}

impl PeerAuth {
    /// A fresh challenge for a new connection.
    pub fn new(key: ClusterKey) -> Self {
        Self { key, challenge: lmtp_auth::challenge() }
    }
}

/// One LMTP session.
#[derive(Debug)]
pub struct Session {
    host: String,
    limits: Limits,
    phase: Phase,
    auth: PeerAuth,
    authenticated: bool,
    auth_failures: u32,
    from: Option<String>,
    message_key: Option<[u8; 16]>,
    recipients: Vec<Recipient>,
    data: Vec<u8>,
    oversize: bool,
}

type Handler = fn(&mut Session, &str, &dyn Context) -> Vec<Action>;

/// `XMSGKEY`'s value: 32 hex digits.
fn message_key(hex: &str) -> Option<[u8; 16]> {
    if hex.len() != 32 {
        return None;
    }
    let mut key = [0u8; 16];
    for (k, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * k..2 * k + 2)?, 16).ok()?;
    }
    Some(key)
}

/// The command table: verb → handler.
const COMMANDS: &[(&str, Handler)] = &[
    ("LHLO", Session::lhlo),
    ("AUTH", Session::auth),
    ("MAIL", Session::mail),
    ("RCPT", Session::rcpt),
    ("DATA", Session::data),
    ("RSET", Session::rset),
    ("NOOP", Session::noop),
    ("QUIT", Session::quit),
    ("VRFY", Session::vrfy),
    ("HELO", Session::not_lmtp),
    ("EHLO", Session::not_lmtp),
];

fn reply(s: impl Into<String>) -> Vec<Action> {
    vec![Action::Reply(s.into())]
}

/// `<addr>` with optional parameters after it; the address may be empty (`<>`).
fn parse_path(arg: &str, keyword: &str) -> Option<(String, Vec<String>)> {
    let rest = arg.get(..keyword.len()).filter(|k| k.eq_ignore_ascii_case(keyword)).map(|_| &arg[keyword.len()..])?;
    let rest = rest.trim_start();
    let rest = rest.strip_prefix('<')?;
    let end = rest.find('>')?;
    let addr = rest[..end].trim().to_string();
    if addr.chars().any(|c| c.is_control() || c == ' ') || addr.len() > 320 {
        return None;
    }
    let params = rest[end + 1..].split_whitespace().map(str::to_string).collect();
    Some((addr, params))
}

impl Session {
    pub fn new(host: impl Into<String>, limits: Limits, auth: PeerAuth) -> Self {
        Self {
            host: host.into(),
            limits,
            phase: Phase::Fresh,
            auth,
            authenticated: false,
            auth_failures: 0,
            from: None,
            message_key: None,
            recipients: Vec::new(),
            data: Vec::new(),
            oversize: false,
        }
    }

    /// The greeting line.
    pub fn greeting(&self) -> String {
        format!("220 {} LMTP ready", self.host)
    }

    /// Whether the server should feed data lines (after `354`).
    pub fn in_data(&self) -> bool {
        self.phase == Phase::Data
    }

    /// Handle one command line (without its line ending).
    pub fn command(&mut self, line: &[u8], ctx: &dyn Context) -> Vec<Action> {
        debug_assert!(!self.in_data());
        let Ok(line) = std::str::from_utf8(line) else {
            return reply("500 5.5.2 command is not valid UTF-8");
        };
        if self.phase == Phase::AuthAnswer {
            return self.auth_answer(line);
        }
        let (verb, arg) = match line.find(' ') {
            Some(i) => (&line[..i], line[i + 1..].trim()),
            None => (line.trim(), ""),
        };
        match COMMANDS.iter().find(|(v, _)| v.eq_ignore_ascii_case(verb)) {
            Some((v, _)) if !self.authenticated && Self::needs_auth(v) => {
                reply(format!("530 5.7.0 authentication required: AUTH {}", lmtp_auth::MECHANISM))
            }
            Some((_, handler)) => handler(self, arg, ctx),
            None => reply("500 5.5.2 command not recognized"),
        }
    }

    /// Commands that act on mail, refused until the client proved it is a cluster member.
    fn needs_auth(verb: &str) -> bool {
        matches!(verb, "MAIL" | "RCPT" | "DATA" | "VRFY")
    }

    fn auth(&mut self, arg: &str, _: &dyn Context) -> Vec<Action> {
        if self.phase != Phase::Greeted {
            return reply("503 5.5.1 send LHLO first");
        }
        if self.authenticated {
            return reply("503 5.5.1 already authenticated");
        }
        if self.from.is_some() {
            return reply("503 5.5.1 AUTH not permitted during a mail transaction");
        }
        let mut words = arg.split_whitespace();
        if !words.next().is_some_and(|m| m.eq_ignore_ascii_case(lmtp_auth::MECHANISM)) {
            return reply(format!("504 5.5.4 only AUTH {} is offered", lmtp_auth::MECHANISM));
        }
        if words.next().is_some() {
            return reply("501 5.5.2 this mechanism has no initial response");
        }
        self.phase = Phase::AuthAnswer;
        reply(format!("334 {}", self.auth.challenge))
    }

    fn auth_answer(&mut self, answer: &str) -> Vec<Action> {
        self.phase = Phase::Greeted;
        if answer.trim() == "*" {
            return reply("501 5.0.0 authentication cancelled");
        }
        if lmtp_auth::verify(&self.auth.key, &self.auth.challenge, answer) {
            self.authenticated = true;
            return reply("235 2.7.0 cluster member authenticated");
        }
        self.auth_failures += 1;
        // A new challenge for the next try: one challenge, one answer.
        self.auth.challenge = lmtp_auth::challenge();
        if self.auth_failures >= AUTH_FAILURES_MAX {
            return vec![Action::Reply("421 4.7.0 too many failed authentications".into()), Action::Close];
        }
        reply("535 5.7.8 authentication failed")
    }

    /// The whole DATA body as the server read it (`common::line::read_data`: dot-unstuffed,
    /// CRLF line endings), or `None` if it exceeded the message limit; the actions of the
    /// final `.`.
    pub fn data_body(&mut self, body: Option<Vec<u8>>) -> Vec<Action> {
        debug_assert!(self.in_data());
        match body {
            Some(b) if b.len() <= self.limits.message_max => self.data = b,
            _ => self.oversize = true,
        }
        self.data_line(b".")
    }

    /// Handle one data line (without its line ending). Returns actions at the final `.`.
    pub fn data_line(&mut self, line: &[u8]) -> Vec<Action> {
        debug_assert!(self.in_data());
        if line == b"." {
            self.phase = Phase::Greeted;
            let recipients = std::mem::take(&mut self.recipients);
            let data = std::mem::take(&mut self.data);
            let from = self.from.take().unwrap_or_default();
            let message_key = self.message_key.take();
            if std::mem::take(&mut self.oversize) {
                return recipients
                    .iter()
                    .map(|r| {
                        Action::Reply(format!(
                            "552 5.3.4 <{}> message exceeds {} bytes",
                            r.address, self.limits.message_max
                        ))
                    })
                    .collect();
            }
            return vec![Action::Deliver(Envelope { from, recipients, data, message_key })];
        }
        let line = line.strip_prefix(b".").filter(|_| line.starts_with(b"..")).unwrap_or(line);
        if self.oversize || self.data.len() + line.len() + 2 > self.limits.message_max {
            self.oversize = true;
            self.data = Vec::new();
            return Vec::new();
        }
        self.data.extend_from_slice(line);
        self.data.extend_from_slice(b"\r\n");
        Vec::new()
    }

    fn lhlo(&mut self, arg: &str, _: &dyn Context) -> Vec<Action> {
        if arg.is_empty() {
            return reply("501 5.5.4 LHLO needs a host name");
        }
        self.reset();
        self.phase = Phase::Greeted;
        [
            format!("250-{}", self.host),
            "250-PIPELINING".into(),
            "250-ENHANCEDSTATUSCODES".into(),
            "250-8BITMIME".into(),
            "250-XMAILHOST".into(),
            "250-XFOLDER".into(),
            "250-XUSER".into(),
            "250-XMSGKEY".into(),
            format!("250-AUTH {}", lmtp_auth::MECHANISM),
            format!("250 SIZE {}", self.limits.message_max),
        ]
        .into_iter()
        .map(Action::Reply)
        .collect()
    }

    fn mail(&mut self, arg: &str, _: &dyn Context) -> Vec<Action> {
        if self.phase != Phase::Greeted {
            return reply("503 5.5.1 send LHLO first");
        }
        if self.from.is_some() {
            return reply("503 5.5.1 nested MAIL command");
        }
        let Some((from, params)) = parse_path(arg, "FROM:") else {
            return reply("501 5.5.4 syntax: MAIL FROM:<address>");
        };
        for p in &params {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            if k.eq_ignore_ascii_case("SIZE") {
                match v.parse::<usize>() {
                    Ok(n) if n > self.limits.message_max => {
                        return reply(format!("552 5.3.4 message exceeds {} bytes", self.limits.message_max))
                    }
                    Ok(_) => {}
                    Err(_) => return reply("501 5.5.4 bad SIZE"),
                }
            } else if k.eq_ignore_ascii_case("BODY") {
                if !(v.eq_ignore_ascii_case("8BITMIME") || v.eq_ignore_ascii_case("7BIT")) {
                    return reply("501 5.5.4 bad BODY");
                }
            } else if k.eq_ignore_ascii_case("XMSGKEY") {
                match message_key(v) {
                    Some(key) => self.message_key = Some(key),
                    None => return reply("501 5.5.4 XMSGKEY takes 32 hex digits"),
                }
            } else {
                return reply(format!("555 5.5.4 unsupported parameter {k}"));
            }
        }
        self.from = Some(from);
        reply("250 2.1.0 sender ok")
    }

    fn rcpt(&mut self, arg: &str, ctx: &dyn Context) -> Vec<Action> {
        if self.from.is_none() {
            return reply("503 5.5.1 need MAIL first");
        }
        let Some((addr, params)) = parse_path(arg, "TO:") else {
            return reply("501 5.5.4 syntax: RCPT TO:<address>");
        };
        let mut mailhost = None;
        let mut folder = None;
        let mut rules = common::recipient_rules::RecipientRules::default();
        for p in &params {
            match p.split_once('=') {
                Some((k, v)) if k.eq_ignore_ascii_case("XMAILHOST") && !v.is_empty() => mailhost = Some(v),
                Some((k, v)) if k.eq_ignore_ascii_case("XFOLDER") => {
                    match FOLDERS.iter().find(|f| f.eq_ignore_ascii_case(v)) {
                        Some(f) => folder = Some(*f),
                        None => return reply(format!("501 5.5.4 XFOLDER names {} only", FOLDERS.join(" or "))),
                    }
                }
                Some((k, v)) if k.eq_ignore_ascii_case("XUSER") => {
                    match common::recipient_rules::RecipientRules::from_param(v) {
                        Ok(r) => rules = r,
                        Err(e) => return reply(format!("501 5.5.4 {e}")),
                    }
                }
                _ => return reply(format!("555 5.5.4 unsupported RCPT parameter {p}")),
            }
        }
        if self.recipients.len() >= self.limits.recipients_max {
            return reply("452 4.5.3 too many recipients");
        }
        match ctx.resolve(&addr, mailhost) {
            Some((user, group)) => {
                if let Some(hint) = ctx.not_leader(&group) {
                    return reply(format!("451 4.3.0 <{addr}> not the leader for mailhost {group}; {hint}"));
                }
                self.recipients.push(Recipient { address: addr, user, group, folder, rules });
                reply("250 2.1.5 recipient ok")
            }
            None => reply(format!("550 5.1.1 <{addr}> no such user here")),
        }
    }

    fn data(&mut self, arg: &str, _: &dyn Context) -> Vec<Action> {
        if !arg.is_empty() {
            return reply("501 5.5.4 DATA takes no arguments");
        }
        if self.from.is_none() || self.recipients.is_empty() {
            return reply("503 5.5.1 need MAIL and RCPT first");
        }
        self.phase = Phase::Data;
        self.data.clear();
        reply("354 go ahead, end with <CRLF>.<CRLF>")
    }

    fn reset(&mut self) {
        self.from = None;
        self.message_key = None;
        self.recipients.clear();
        self.data.clear();
        self.oversize = false;
    }

    fn rset(&mut self, _: &str, _: &dyn Context) -> Vec<Action> {
        self.reset();
        reply("250 2.0.0 reset")
    }

    fn noop(&mut self, _: &str, _: &dyn Context) -> Vec<Action> {
        reply("250 2.0.0 ok")
    }

    fn quit(&mut self, _: &str, _: &dyn Context) -> Vec<Action> {
        vec![Action::Reply(format!("221 2.0.0 {} closing", self.host)), Action::Close]
    }

    fn vrfy(&mut self, _: &str, _: &dyn Context) -> Vec<Action> {
        reply("252 2.5.0 cannot verify, send mail")
    }

    fn not_lmtp(&mut self, _: &str, _: &dyn Context) -> Vec<Action> {
        reply("500 5.5.1 this is LMTP: use LHLO")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Ctx {
        leader: bool,
    }

    impl Context for Ctx {
        fn resolve(&self, address: &str, mailhost: Option<&str>) -> Option<(UserName, String)> {
            let group = mailhost.unwrap_or("g").to_string();
            address.starts_with("user").then(|| (UserName::parse(address).unwrap(), group))
        }
        fn not_leader(&self, _: &str) -> Option<String> {
            (!self.leader).then(|| "leader is 127.0.0.1:2402".into())
        }
    }

    fn replies(actions: &[Action]) -> Vec<String> {
        actions.iter().filter_map(|a| if let Action::Reply(r) = a { Some(r.clone()) } else { None }).collect()
    }

    /// A session that has greeted and proved it holds the cluster key.
    fn authenticated(limits: Limits, ctx: &Ctx) -> Session {
        let key = ClusterKey::from_secret("test cluster");
        let auth = PeerAuth::new(key.clone());
        let challenge = auth.challenge.clone();
        let mut s = Session::new("h", limits, auth);
        s.command(b"LHLO front", ctx);
        assert_eq!(replies(&s.command(b"AUTH X-MAILSTORE-CLUSTER", ctx)), [format!("334 {challenge}")]);
        let answer = lmtp_auth::response(&key, &challenge).unwrap();
        assert_eq!(first_code(&s.command(answer.as_bytes(), ctx)), "235");
        s
    }

    fn first_code(actions: &[Action]) -> &str {
        match &actions[0] {
            Action::Reply(r) => &r[..3],
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_front_files_a_recipients_copy_in_junk_or_quarantine_only() {
        let ctx = Ctx { leader: true };
        let mut s = authenticated(Limits { message_max: 1000, recipients_max: 5 }, &ctx);
        assert!(replies(&s.command(b"LHLO client", &ctx)).contains(&"250-XFOLDER".to_string()));
        assert_eq!(first_code(&s.command(b"MAIL FROM:<a@b>", &ctx)), "250");
        assert_eq!(first_code(&s.command(b"RCPT TO:<user1@x> XMAILHOST=g XFOLDER=junk", &ctx)), "250");
        assert_eq!(first_code(&s.command(b"RCPT TO:<user2@x> XFOLDER=Quarantine", &ctx)), "250");
        assert_eq!(first_code(&s.command(b"RCPT TO:<user3@x>", &ctx)), "250");
        for bad in ["XFOLDER=Sent", "XFOLDER=../INBOX", "XFOLDER="] {
            let line = format!("RCPT TO:<user3@x> {bad}");
            assert_eq!(first_code(&s.command(line.as_bytes(), &ctx)), "501", "{bad}");
        }
        assert_eq!(first_code(&s.command(b"DATA", &ctx)), "354");
        assert!(s.data_line(b"x").is_empty());
        let out = s.data_line(b".");
        let Action::Deliver(env) = &out[0] else { panic!("{out:?}") };
        let folders: Vec<_> = env.recipients.iter().map(|r| r.folder).collect();
        assert_eq!(folders, [Some("Junk"), Some("Quarantine"), None]);
    }

    #[test]
    fn a_front_names_a_message_key_for_one_transaction_only() {
        let ctx = Ctx { leader: true };
        let mut s = authenticated(Limits { message_max: 1000, recipients_max: 5 }, &ctx);
        assert!(replies(&s.command(b"LHLO client", &ctx)).contains(&"250-XMSGKEY".to_string()));
        for bad in ["XMSGKEY=00", "XMSGKEY=zz112233445566778899aabbccddeeff", "XMSGKEY="] {
            let line = format!("MAIL FROM:<a@b> {bad}");
            assert_eq!(first_code(&s.command(line.as_bytes(), &ctx)), "501", "{bad}");
        }
        let line = b"MAIL FROM:<a@b> XMSGKEY=00112233445566778899AABBCCDDEEFF";
        assert_eq!(first_code(&s.command(line, &ctx)), "250");
        let deliver = |s: &mut Session| {
            assert_eq!(first_code(&s.command(b"RCPT TO:<user1@x>", &ctx)), "250");
            assert_eq!(first_code(&s.command(b"DATA", &ctx)), "354");
            let out = s.data_line(b".");
            let Action::Deliver(env) = &out[0] else { panic!("{out:?}") };
            env.message_key
        };
        let key = [0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff];
        assert_eq!(deliver(&mut s), Some(key));
        assert_eq!(first_code(&s.command(b"MAIL FROM:<a@b>", &ctx)), "250");
        assert_eq!(deliver(&mut s), None, "the next transaction has no key of its own");
    }

    #[test]
    fn full_transaction_with_dot_stuffing() {
        let ctx = Ctx { leader: true };
        let mut s = authenticated(Limits { message_max: 1000, recipients_max: 2 }, &ctx);
        let lhlo = replies(&s.command(b"LHLO client", &ctx));
        assert_eq!(lhlo.last().unwrap(), "250 SIZE 1000");
        assert!(lhlo.contains(&"250-XMAILHOST".to_string()));
        assert!(lhlo.contains(&"250-AUTH X-MAILSTORE-CLUSTER".to_string()));
        assert_eq!(first_code(&s.command(b"mail from:<a@b> SIZE=10 BODY=8BITMIME", &ctx)), "250");
        assert_eq!(first_code(&s.command(b"RCPT TO:<user1@x>", &ctx)), "250");
        assert_eq!(first_code(&s.command(b"RCPT TO:<nobody@x>", &ctx)), "550");
        assert_eq!(first_code(&s.command(b"RCPT TO:<user2@x> NOTIFY=NEVER", &ctx)), "555");
        assert_eq!(first_code(&s.command(b"RCPT TO:<user2@x> XMAILHOST=apollo", &ctx)), "250");
        assert_eq!(first_code(&s.command(b"RCPT TO:<user3@x>", &ctx)), "452");
        assert_eq!(first_code(&s.command(b"DATA", &ctx)), "354");
        assert!(s.data_line(b"Subject: hi").is_empty());
        assert!(s.data_line(b"").is_empty());
        assert!(s.data_line(b"..leading dot").is_empty());
        let out = s.data_line(b".");
        let Action::Deliver(env) = &out[0] else { panic!("{out:?}") };
        assert_eq!(env.data, b"Subject: hi\r\n\r\n.leading dot\r\n");
        assert_eq!(env.recipients.len(), 2);
        assert_eq!(env.recipients[1].group, "apollo", "a front's XMAILHOST names the group");
        assert_eq!(env.from, "a@b");
        assert!(!s.in_data());
    }

    #[test]
    fn errors_limits_and_leadership() {
        let ctx = Ctx { leader: true };
        let mut s = authenticated(Limits { message_max: 10, recipients_max: 5 }, &ctx);
        assert_eq!(first_code(&s.command(b"EHLO x", &ctx)), "500");
        assert_eq!(first_code(&s.command(b"BOGUS", &ctx)), "500");
        assert_eq!(first_code(&s.command(b"\xff\xfe", &ctx)), "500");
        assert_eq!(first_code(&s.command(b"LHLO", &ctx)), "501");
        s.command(b"LHLO x", &ctx);
        assert_eq!(first_code(&s.command(b"MAIL FROM:<a@b> SIZE=11", &ctx)), "552");
        assert_eq!(first_code(&s.command(b"MAIL FROM:a@b", &ctx)), "501");
        assert_eq!(first_code(&s.command(b"DATA", &ctx)), "503");
        s.command(b"MAIL FROM:<>", &ctx);
        s.command(b"RCPT TO:<user1@x>", &ctx);
        s.command(b"DATA", &ctx);
        s.data_line(b"0123456789abcdef");
        let out = s.data_line(b".");
        assert_eq!(first_code(&out), "552");
        let follower = Ctx { leader: false };
        s.command(b"MAIL FROM:<a@b>", &follower);
        let r = s.command(b"RCPT TO:<user1@x>", &follower);
        assert!(replies(&r)[0].starts_with("451 4.3.0") && replies(&r)[0].contains("127.0.0.1:2402"));
        assert_eq!(s.command(b"QUIT", &ctx).last(), Some(&Action::Close));
    }

    #[test]
    fn nothing_is_delivered_without_the_cluster_key() {
        let ctx = Ctx { leader: true };
        let key = ClusterKey::from_secret("test cluster");
        let auth = PeerAuth::new(key);
        let challenge = auth.challenge.clone();
        let mut s = Session::new("h", Limits { message_max: 100, recipients_max: 5 }, auth);
        assert_eq!(first_code(&s.command(b"MAIL FROM:<a@b>", &ctx)), "530", "before LHLO");
        assert_eq!(first_code(&s.command(b"AUTH X-MAILSTORE-CLUSTER", &ctx)), "503", "AUTH needs LHLO");
        s.command(b"LHLO x", &ctx);
        for verb in ["MAIL FROM:<a@b>", "RCPT TO:<user1@x> XMAILHOST=g", "DATA", "VRFY user1@x"] {
            assert_eq!(first_code(&s.command(verb.as_bytes(), &ctx)), "530", "{verb}");
        }
        assert_eq!(first_code(&s.command(b"AUTH PLAIN AGEAYg==", &ctx)), "504");
        assert_eq!(first_code(&s.command(b"AUTH X-MAILSTORE-CLUSTER", &ctx)), "334");
        assert_eq!(first_code(&s.command(b"*", &ctx)), "501", "cancelled");
        let wrong = lmtp_auth::response(&ClusterKey::from_secret("guess"), &challenge).unwrap();
        for k in 1..=3 {
            assert_eq!(first_code(&s.command(b"AUTH X-MAILSTORE-CLUSTER", &ctx)), "334");
            let out = s.command(wrong.as_bytes(), &ctx);
            if k < 3 {
                assert_eq!(first_code(&out), "535");
            } else {
                assert_eq!(first_code(&out), "421");
                assert_eq!(out.last(), Some(&Action::Close), "the third failure closes");
            }
        }
        assert_eq!(first_code(&s.command(b"MAIL FROM:<a@b>", &ctx)), "530", "still not authenticated");
    }

    #[test]
    fn an_answer_is_good_for_its_own_challenge_only() {
        let ctx = Ctx { leader: true };
        let key = ClusterKey::from_secret("test cluster");
        let first = PeerAuth::new(key.clone());
        let recorded = lmtp_auth::response(&key, &first.challenge).unwrap();
        let mut s = Session::new("h", Limits { message_max: 100, recipients_max: 5 }, PeerAuth::new(key));
        s.command(b"LHLO x", &ctx);
        s.command(b"AUTH X-MAILSTORE-CLUSTER", &ctx);
        assert_eq!(first_code(&s.command(recorded.as_bytes(), &ctx)), "535", "a replayed answer fails");
    }
}
