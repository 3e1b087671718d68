//! The POP3 protocol state machine (RFC 1939, CAPA and response codes from RFC 2449, SASL
//! PLAIN from RFC 5034, STLS from RFC 2595): command lines in, reply lines and actions
//! out. No I/O: the server feeds it lines and carries out its actions (check a login,
//! send a message, commit deletions). One command table, one dispatcher.

use crate::auth::sasl::{self, PlainCredentials, SaslError};
use crate::auth::ProxyHints;

/// One message of the maildrop as the session sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropEntry {
    pub uid: u32,
    pub size: u64,
    /// Unique-id listing: stable across sessions, restarts and replicas.
    pub uidl: String,
}

/// What the server must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send this reply line (CRLF is added by the server).
    Reply(String),
    /// Check these credentials, then call [`Session::logged_in`] or [`Session::login_failed`].
    Authenticate(PlainCredentials),
    /// Send `+OK`, then message `uid` (whole, or headers and `top` body lines), dot-stuffed
    /// and terminated; or a `-ERR` if it cannot be read.
    Send { uid: u32, top: Option<usize> },
    /// Expunge these messages, then reply `+OK` (or `-ERR` if that failed) and close.
    Commit(Vec<u32>),
    /// Reply `+OK` and start TLS.
    StartTls,
    /// Close the connection after the replies.
    Close,
}

/// What the server offers on this connection.
#[derive(Debug, Clone, Copy)]
pub struct Offer {
    /// STLS is configured and not yet in use.
    pub starttls: bool,
    /// Passwords may be sent on this connection now (TLS, or a trusted network).
    pub plaintext_auth: bool,
}

#[derive(Debug)]
enum Phase {
    /// AUTHORIZATION state, with the name from a preceding USER.
    Authorization {
        user: Option<String>,
    },
    /// After `AUTH PLAIN` without an initial response: the next line is the response.
    SaslPlain,
    /// Waiting for the server to check credentials.
    Authenticating,
    Transaction {
        entries: Vec<DropEntry>,
        deleted: Vec<bool>,
    },
    /// QUIT was given; nothing more is read.
    Done,
}

/// One POP3 session.
#[derive(Debug)]
pub struct Session {
    host: String,
    offer: Offer,
    phase: Phase,
    /// What a front node said with `XCLIENT` about the session it forwards.
    hints: ProxyHints,
}

type Handler = fn(&mut Session, &str) -> Vec<Action>;

/// The command table: verb → handler. Which state allows a command is checked inside.
const COMMANDS: &[(&str, Handler)] = &[
    ("CAPA", Session::capa),
    ("USER", Session::user),
    ("PASS", Session::pass),
    ("AUTH", Session::auth),
    ("STLS", Session::stls),
    ("APOP", Session::apop),
    ("XCLIENT", Session::xclient),
    ("STAT", Session::stat),
    ("LIST", Session::list),
    ("UIDL", Session::uidl),
    ("RETR", Session::retr),
    ("TOP", Session::top),
    ("DELE", Session::dele),
    ("RSET", Session::rset),
    ("NOOP", Session::noop),
    ("QUIT", Session::quit),
];

/// Longest command line (RFC 2449 allows 255 octets; SASL responses may be longer).
pub const COMMAND_LINE_MAX: usize = 1024;

fn ok(s: impl Into<String>) -> Vec<Action> {
    vec![Action::Reply(format!("+OK {}", s.into()))]
}

fn err(s: impl Into<String>) -> Vec<Action> {
    vec![Action::Reply(format!("-ERR {}", s.into()))]
}

impl Session {
    pub fn new(host: impl Into<String>, offer: Offer) -> Self {
        Self { host: host.into(), offer, phase: Phase::Authorization { user: None }, hints: ProxyHints::default() }
    }

    /// What a front node said about this session (see [`ProxyHints`]).
    pub fn proxy_hints(&self) -> &ProxyHints {
        &self.hints
    }

    /// The greeting line.
    pub fn greeting(&self) -> String {
        format!("+OK {} POP3 ready", self.host)
    }

    /// TLS is now active (after STLS).
    pub fn tls_started(&mut self) {
        self.offer = Offer { starttls: false, plaintext_auth: true };
    }

    /// Whether the session is in the TRANSACTION state.
    pub fn in_transaction(&self) -> bool {
        matches!(self.phase, Phase::Transaction { .. })
    }

    /// Handle one input line (without its line ending).
    pub fn line(&mut self, raw: &[u8]) -> Vec<Action> {
        let Ok(line) = std::str::from_utf8(raw) else {
            return err("command is not UTF-8");
        };
        match self.phase {
            Phase::SaslPlain => return self.sasl_response(line),
            Phase::Authenticating | Phase::Done => return err("not now"),
            _ => {}
        }
        let (verb, arg) = line.split_once(' ').unwrap_or((line, ""));
        match COMMANDS.iter().find(|(v, _)| v.eq_ignore_ascii_case(verb)) {
            Some((_, handler)) => handler(self, arg),
            None => err("unknown command"),
        }
    }

    /// Credentials were accepted; `entries` is the maildrop in message-number order.
    pub fn logged_in(&mut self, entries: Vec<DropEntry>) -> Vec<Action> {
        debug_assert!(matches!(self.phase, Phase::Authenticating));
        let octets: u64 = entries.iter().map(|e| e.size).sum();
        let n = entries.len();
        self.phase = Phase::Transaction { deleted: vec![false; n], entries };
        ok(format!("maildrop has {n} messages ({octets} octets)"))
    }

    /// Credentials were refused (`code` is an RFC 2449 response code such as `AUTH`).
    pub fn login_failed(&mut self, code: &str, why: &str) -> Vec<Action> {
        self.phase = Phase::Authorization { user: None };
        err(format!("[{code}] {why}"))
    }

    fn not_in_transaction(&self) -> Option<Vec<Action>> {
        (!self.in_transaction()).then(|| err("command only valid after login"))
    }

    fn not_in_authorization(&self) -> Option<Vec<Action>> {
        (!matches!(self.phase, Phase::Authorization { .. })).then(|| err("command only valid before login"))
    }

    /// Message number argument → index into the maildrop, refusing deleted messages.
    fn message(&self, arg: &str) -> Result<usize, Vec<Action>> {
        let Phase::Transaction { entries, deleted } = &self.phase else {
            return Err(err("command only valid after login"));
        };
        let n: usize = arg.trim().parse().map_err(|_| err("invalid message number"))?;
        if n == 0 || n > entries.len() {
            return Err(err("no such message"));
        }
        if deleted[n - 1] {
            return Err(err("message is deleted"));
        }
        Ok(n - 1)
    }

    fn capa(&mut self, _: &str) -> Vec<Action> {
        let mut lines = vec!["+OK capability list follows".to_string(), "TOP".into(), "UIDL".into()];
        lines.extend(["RESP-CODES".into(), "AUTH-RESP-CODE".into(), "PIPELINING".into()]);
        if matches!(self.phase, Phase::Authorization { .. }) {
            if self.offer.plaintext_auth {
                lines.extend(["USER".into(), "SASL PLAIN".into()]);
            }
            if self.offer.starttls {
                lines.push("STLS".into());
            }
        }
        lines.push("IMPLEMENTATION storaged".into());
        lines.push(".".into());
        lines.into_iter().map(Action::Reply).collect()
    }

    fn user(&mut self, arg: &str) -> Vec<Action> {
        if let Some(e) = self.not_in_authorization() {
            return e;
        }
        if !self.offer.plaintext_auth {
            return err("[AUTH] plaintext authentication needs TLS (use STLS)");
        }
        let name = arg.trim();
        if name.is_empty() || name.len() > 255 {
            return err("USER needs a name");
        }
        self.phase = Phase::Authorization { user: Some(name.to_string()) };
        ok("send PASS")
    }

    fn pass(&mut self, arg: &str) -> Vec<Action> {
        let Phase::Authorization { user } = &mut self.phase else {
            return err("command only valid before login");
        };
        let Some(user) = user.take() else {
            return err("send USER first");
        };
        if arg.is_empty() {
            return err("PASS needs a password");
        }
        self.phase = Phase::Authenticating;
        vec![Action::Authenticate(PlainCredentials { authzid: String::new(), authcid: user, password: arg.into() })]
    }

    fn auth(&mut self, arg: &str) -> Vec<Action> {
        if let Some(e) = self.not_in_authorization() {
            return e;
        }
        let mut parts = arg.split_whitespace();
        let Some(mech) = parts.next() else {
            // RFC 5034 leaves the bare form to list mechanisms, as many servers do.
            let mut out: Vec<Action> = vec![Action::Reply("+OK mechanisms follow".into())];
            if self.offer.plaintext_auth {
                out.push(Action::Reply("PLAIN".into()));
            }
            out.push(Action::Reply(".".into()));
            return out;
        };
        if !mech.eq_ignore_ascii_case("PLAIN") {
            return err("unsupported mechanism");
        }
        if !self.offer.plaintext_auth {
            return err("[AUTH] plaintext authentication needs TLS (use STLS)");
        }
        match (parts.next(), parts.next()) {
            (None, _) => {
                self.phase = Phase::SaslPlain;
                vec![Action::Reply("+ ".into())]
            }
            (Some(initial), None) => self.sasl_plain(if initial == "=" { "" } else { initial }),
            _ => err("too many arguments"),
        }
    }

    fn sasl_response(&mut self, line: &str) -> Vec<Action> {
        self.sasl_plain(line)
    }

    fn sasl_plain(&mut self, b64: &str) -> Vec<Action> {
        match sasl::decode_plain(b64) {
            Ok(creds) => {
                self.phase = Phase::Authenticating;
                vec![Action::Authenticate(creds)]
            }
            Err(e) => {
                self.phase = Phase::Authorization { user: None };
                match e {
                    SaslError::Cancelled => err("authentication cancelled"),
                    other => err(format!("[AUTH] {other}")),
                }
            }
        }
    }

    fn stls(&mut self, _: &str) -> Vec<Action> {
        if let Some(e) = self.not_in_authorization() {
            return e;
        }
        if !self.offer.starttls {
            return err("STLS not available");
        }
        self.offer.starttls = false;
        vec![Action::StartTls]
    }

    /// `XCLIENT NAME=value ...` (as Dovecot's POP3 proxy sends it): a front node passes the
    /// user's mailHost (`MAILHOST`) and address (`ADDR`) before it logs in for the user.
    fn xclient(&mut self, arg: &str) -> Vec<Action> {
        if let Some(e) = self.not_in_authorization() {
            return e;
        }
        const FIELDS_MAX: usize = 16;
        for field in arg.split_whitespace().take(FIELDS_MAX) {
            let Some((name, value)) = field.split_once('=') else { return err("XCLIENT expects NAME=value") };
            self.hints.set(name, value);
        }
        ok("XCLIENT accepted")
    }

    fn apop(&mut self, _: &str) -> Vec<Action> {
        err("APOP is not supported; use USER/PASS or AUTH PLAIN")
    }

    fn stat(&mut self, _: &str) -> Vec<Action> {
        let Phase::Transaction { entries, deleted } = &self.phase else {
            return err("command only valid after login");
        };
        let live = entries.iter().zip(deleted).filter(|(_, d)| !**d);
        let (n, octets) = live.fold((0usize, 0u64), |(n, o), (e, _)| (n + 1, o + e.size));
        ok(format!("{n} {octets}"))
    }

    /// LIST and UIDL share their shape: one message, or all live ones.
    fn listing(&mut self, arg: &str, field: fn(&DropEntry) -> String) -> Vec<Action> {
        if let Some(e) = self.not_in_transaction() {
            return e;
        }
        if !arg.trim().is_empty() {
            return match self.message(arg) {
                Ok(i) => {
                    let Phase::Transaction { entries, .. } = &self.phase else { unreachable!() };
                    ok(format!("{} {}", i + 1, field(&entries[i])))
                }
                Err(e) => e,
            };
        }
        let Phase::Transaction { entries, deleted } = &self.phase else { unreachable!() };
        let mut out = vec![Action::Reply("+OK listing follows".into())];
        for (i, e) in entries.iter().enumerate().filter(|(i, _)| !deleted[*i]) {
            out.push(Action::Reply(format!("{} {}", i + 1, field(e))));
        }
        out.push(Action::Reply(".".into()));
        out
    }

    fn list(&mut self, arg: &str) -> Vec<Action> {
        self.listing(arg, |e| e.size.to_string())
    }

    fn uidl(&mut self, arg: &str) -> Vec<Action> {
        self.listing(arg, |e| e.uidl.clone())
    }

    fn retr(&mut self, arg: &str) -> Vec<Action> {
        match self.message(arg) {
            Ok(i) => vec![Action::Send { uid: self.entry(i).uid, top: None }],
            Err(e) => e,
        }
    }

    fn top(&mut self, arg: &str) -> Vec<Action> {
        let mut parts = arg.split_whitespace();
        let (Some(msg), Some(lines), None) = (parts.next(), parts.next(), parts.next()) else {
            return err("usage: TOP msg lines");
        };
        let Ok(lines) = lines.parse::<usize>() else {
            return err("invalid line count");
        };
        match self.message(msg) {
            Ok(i) => vec![Action::Send { uid: self.entry(i).uid, top: Some(lines) }],
            Err(e) => e,
        }
    }

    fn entry(&self, i: usize) -> &DropEntry {
        let Phase::Transaction { entries, .. } = &self.phase else { unreachable!("checked by message()") };
        &entries[i]
    }

    fn dele(&mut self, arg: &str) -> Vec<Action> {
        match self.message(arg) {
            Ok(i) => {
                let Phase::Transaction { deleted, .. } = &mut self.phase else { unreachable!() };
                deleted[i] = true;
                ok(format!("message {} deleted", i + 1))
            }
            Err(e) => e,
        }
    }

    fn rset(&mut self, _: &str) -> Vec<Action> {
        let Phase::Transaction { deleted, .. } = &mut self.phase else {
            return err("command only valid after login");
        };
        deleted.iter_mut().for_each(|d| *d = false);
        self.stat("")
    }

    fn noop(&mut self, _: &str) -> Vec<Action> {
        if let Some(e) = self.not_in_transaction() {
            return e;
        }
        ok("")
    }

    fn quit(&mut self, _: &str) -> Vec<Action> {
        let phase = std::mem::replace(&mut self.phase, Phase::Done);
        match phase {
            Phase::Transaction { entries, deleted } => {
                let uids: Vec<u32> = entries.iter().zip(&deleted).filter(|(_, d)| **d).map(|(e, _)| e.uid).collect();
                if uids.is_empty() {
                    vec![Action::Reply(format!("+OK {} signing off", self.host)), Action::Close]
                } else {
                    vec![Action::Commit(uids)]
                }
            }
            _ => vec![Action::Reply(format!("+OK {} signing off", self.host)), Action::Close],
        }
    }
}

/// A message as RETR/TOP send it after the `+OK` line: CRLF line endings, lines starting
/// with `.` stuffed, cut after the header and `top` body lines if given, and the final
/// `.` line.
pub fn transmit(message: &[u8], top: Option<usize>) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 32 + 8);
    let mut in_body = false;
    let mut body_lines = 0usize;
    let mut rest = message;
    while !rest.is_empty() {
        let (line, next) = match rest.iter().position(|b| *b == b'\n') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &rest[rest.len()..]),
        };
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if in_body {
            if top.is_some_and(|t| body_lines >= t) {
                break;
            }
            body_lines += 1;
        } else if line.is_empty() {
            in_body = true;
        }
        if line.first() == Some(&b'.') {
            out.push(b'.');
        }
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
        rest = next;
    }
    out.extend_from_slice(b".\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn open() -> Offer {
        Offer { starttls: false, plaintext_auth: true }
    }

    fn replies(actions: &[Action]) -> Vec<String> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Reply(r) => Some(r.clone()),
                _ => None,
            })
            .collect()
    }

    fn first(actions: &[Action]) -> String {
        replies(actions).into_iter().next().unwrap_or_default()
    }

    fn entries() -> Vec<DropEntry> {
        (1..=3).map(|uid| DropEntry { uid: uid * 10, size: 100 * u64::from(uid), uidl: format!("u{uid}") }).collect()
    }

    fn logged_in() -> Session {
        let mut s = Session::new("test", open());
        assert!(s
            .line(b"USER alice@example.edu")
            .iter()
            .any(|a| matches!(a, Action::Reply(r) if r.starts_with("+OK"))));
        let acts = s.line(b"PASS secret pw");
        let [Action::Authenticate(c)] = acts.as_slice() else { panic!("{acts:?}") };
        assert_eq!((c.authcid.as_str(), c.password.as_str()), ("alice@example.edu", "secret pw"));
        assert!(first(&s.logged_in(entries())).starts_with("+OK maildrop has 3 messages (600 octets)"));
        s
    }

    #[test]
    fn xclient_records_the_front_nodes_hints_before_login_only() {
        let mut s = Session::new("h", Offer { starttls: false, plaintext_auth: true });
        assert!(first(&s.line(b"XCLIENT MAILHOST=apollo ADDR=192.0.2.7 LOGIN=x")).starts_with("+OK"));
        assert_eq!(s.proxy_hints().mailhost.as_deref(), Some("apollo"));
        assert_eq!(s.proxy_hints().client_ip, Some("192.0.2.7".parse().unwrap()));
        assert!(first(&s.line(b"XCLIENT nonsense")).starts_with("-ERR"));
        let mut s = logged_in();
        assert!(first(&s.line(b"XCLIENT MAILHOST=zeus")).starts_with("-ERR"));
        assert_eq!(s.proxy_hints().mailhost, None);
    }

    #[test]
    fn transaction_commands_follow_rfc1939() {
        let mut s = logged_in();
        assert_eq!(first(&s.line(b"STAT")), "+OK 3 600");
        assert_eq!(replies(&s.line(b"LIST")), ["+OK listing follows", "1 100", "2 200", "3 300", "."]);
        assert_eq!(first(&s.line(b"LIST 2")), "+OK 2 200");
        assert_eq!(first(&s.line(b"uidl 3")), "+OK 3 u3");
        assert_eq!(s.line(b"RETR 2"), vec![Action::Send { uid: 20, top: None }]);
        assert_eq!(s.line(b"TOP 1 5"), vec![Action::Send { uid: 10, top: Some(5) }]);
        assert_eq!(first(&s.line(b"DELE 2")), "+OK message 2 deleted");
        assert!(first(&s.line(b"DELE 2")).starts_with("-ERR"));
        assert!(first(&s.line(b"RETR 2")).starts_with("-ERR"));
        assert_eq!(first(&s.line(b"STAT")), "+OK 2 400");
        assert_eq!(replies(&s.line(b"UIDL")), ["+OK listing follows", "1 u1", "3 u3", "."]);
        assert_eq!(first(&s.line(b"RSET")), "+OK 3 600");
        s.line(b"DELE 1");
        s.line(b"DELE 3");
        assert_eq!(s.line(b"QUIT"), vec![Action::Commit(vec![10, 30])]);
        assert!(first(&s.line(b"STAT")).starts_with("-ERR"));
    }

    #[test]
    fn quit_without_deletions_just_closes() {
        let mut s = logged_in();
        let acts = s.line(b"QUIT");
        assert!(first(&acts).starts_with("+OK"));
        assert_eq!(acts.last(), Some(&Action::Close));
        let mut s = Session::new("test", open());
        assert_eq!(s.line(b"quit").last(), Some(&Action::Close));
    }

    #[test]
    fn bad_input_gets_err_and_never_panics() {
        let mut s = Session::new("test", open());
        for line in [&b"STAT"[..], b"RETR 1", b"PASS x", b"DELE 1", b"NOOP", b"XYZZY", b"", b"\xff\xfe", b"TOP"] {
            assert!(first(&s.line(line)).starts_with("-ERR"), "{:?}", String::from_utf8_lossy(line));
        }
        let mut s = logged_in();
        for line in [
            &b"RETR"[..],
            b"RETR 0",
            b"RETR 4",
            b"RETR -1",
            b"RETR 99999999999999999999999",
            b"TOP 1",
            b"TOP 1 x",
            b"TOP 1 2 3",
            b"LIST 9",
            b"USER bob",
            b"AUTH PLAIN",
            b"STLS",
        ] {
            assert!(first(&s.line(line)).starts_with("-ERR"), "{:?}", String::from_utf8_lossy(line));
        }
        assert_eq!(first(&s.line(b"NOOP")), "+OK ");
    }

    #[test]
    fn sasl_plain_with_and_without_initial_response() {
        let b64 = base64::engine::general_purpose::STANDARD.encode(b"bob@example.edu\0frontd\0proxy-pw");
        let mut s = Session::new("test", open());
        let acts = s.line(format!("AUTH PLAIN {b64}").as_bytes());
        let [Action::Authenticate(c)] = acts.as_slice() else { panic!("{acts:?}") };
        assert_eq!((c.authzid.as_str(), c.authcid.as_str()), ("bob@example.edu", "frontd"));
        assert!(first(&s.login_failed("AUTH", "authentication failed")).starts_with("-ERR [AUTH]"));
        assert_eq!(first(&s.line(b"AUTH PLAIN")), "+ ");
        assert!(matches!(s.line(b64.as_bytes()).as_slice(), [Action::Authenticate(_)]));
        let mut s = Session::new("test", open());
        s.line(b"AUTH PLAIN");
        assert!(first(&s.line(b"*")).starts_with("-ERR"));
        assert!(first(&s.line(b"AUTH PLAIN !!!")).starts_with("-ERR [AUTH]"));
        assert!(first(&s.line(b"AUTH CRAM-MD5")).starts_with("-ERR"));
        assert_eq!(replies(&s.line(b"AUTH")), ["+OK mechanisms follow", "PLAIN", "."]);
    }

    #[test]
    fn passwords_are_refused_without_tls_on_untrusted_connections() {
        let mut s = Session::new("test", Offer { starttls: true, plaintext_auth: false });
        let capa = replies(&s.line(b"CAPA"));
        assert!(capa.contains(&"STLS".to_string()) && !capa.contains(&"USER".to_string()), "{capa:?}");
        assert!(first(&s.line(b"USER alice")).starts_with("-ERR [AUTH]"));
        assert!(first(&s.line(b"AUTH PLAIN AGFAYg==")).starts_with("-ERR [AUTH]"));
        assert_eq!(s.line(b"STLS"), vec![Action::StartTls]);
        s.tls_started();
        assert!(first(&s.line(b"USER alice")).starts_with("+OK"));
        assert!(first(&s.line(b"STLS")).starts_with("-ERR"), "no second STLS");
    }

    #[test]
    fn transmit_stuffs_dots_normalizes_endings_and_cuts_top() {
        let msg = b"Subject: x\r\nFrom: a\n\r\n.line one\r\nline two\n..three\r\nfour";
        assert_eq!(
            transmit(msg, None),
            b"Subject: x\r\nFrom: a\r\n\r\n..line one\r\nline two\r\n...three\r\nfour\r\n.\r\n".to_vec()
        );
        assert_eq!(transmit(msg, Some(0)), b"Subject: x\r\nFrom: a\r\n\r\n.\r\n".to_vec());
        assert_eq!(transmit(msg, Some(2)), b"Subject: x\r\nFrom: a\r\n\r\n..line one\r\nline two\r\n.\r\n".to_vec());
        assert_eq!(transmit(b"", None), b".\r\n".to_vec());
        assert_eq!(transmit(b"only headers\r\n", Some(3)), b"only headers\r\n.\r\n".to_vec());
    }
}
