//! The IMAP side of the login proxy before authentication (RFC 3501/9051 not-authenticated
//! state), as a pure state machine: complete commands in, responses and actions out. It
//! answers CAPABILITY (the storage nodes' list with the front's own TLS and AUTH items),
//! NOOP, ID, LOGOUT, STARTTLS, LOGIN and AUTHENTICATE PLAIN (with SASL-IR); everything
//! after a successful login is the storage node's business. No I/O here.

use imap_codec::decode::{CommandDecodeError, Decoder};
use imap_codec::imap_types::auth::AuthMechanism;
use imap_codec::imap_types::command::CommandBody;
use imap_codec::CommandCodec;

use common::sasl::{self, PlainCredentials};

pub use crate::login::{Offer, Step};
use crate::login::{PreLogin, Refusal};

/// Capabilities the front itself implements before login, whatever the nodes say.
const FRONT_CAPABILITIES: &[&str] = &["IMAP4rev1", "LITERAL+", "SASL-IR", "ID"];
/// Longest command line before login (literals aside) and longest SASL response line: as
/// long as the storage nodes take, so that a legal `ID` with long values (imaptest sends
/// 31 KB) gets through.
pub const LINE_MAX: usize = 64 * 1024;
/// Longest literal accepted before login (a user name or password).
pub const LITERAL_BYTES_MAX: u32 = 8 * 1024;

/// How much of a command the buffer holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Framing {
    /// A whole command.
    Complete,
    /// More lines are needed.
    Incomplete,
    /// A literal of `length` bytes follows; `sync` ones need a `+` first.
    Literal { length: u32, sync: bool },
    /// Not IMAP; answer with this tag (or `*`).
    Bad { tag: Option<String> },
}

/// Where the command in `buf` (lines with CRLF, and literal data) stands.
pub fn framing(buf: &[u8]) -> Framing {
    match CommandCodec::default().decode(buf) {
        Ok(_) => Framing::Complete,
        Err(CommandDecodeError::Incomplete) => Framing::Incomplete,
        Err(CommandDecodeError::LiteralFound { length, mode, .. }) => {
            Framing::Literal { length, sync: mode == imap_codec::imap_types::core::LiteralMode::Sync }
        }
        Err(CommandDecodeError::Failed) => Framing::Bad { tag: tag_of(buf).map(str::to_string) },
    }
}

pub use common::imap_tag::tag_of;

/// `caps` without what only the connection decides (TLS and authentication items).
pub fn session_capabilities(caps: &str) -> String {
    let own = |c: &str| {
        let u = c.to_ascii_uppercase();
        u == "STARTTLS"
            || u == "LOGINDISABLED"
            || u.starts_with("AUTH=")
            || FRONT_CAPABILITIES.iter().any(|f| f.eq_ignore_ascii_case(c))
    };
    caps.split_whitespace().filter(|c| !own(c)).collect::<Vec<_>>().join(" ")
}

/// The capability list in a node's greeting (`* OK [CAPABILITY ...] ...`).
pub fn greeting_capabilities(greeting: &str) -> Option<String> {
    let rest = &greeting[greeting.find("[CAPABILITY ")? + "[CAPABILITY ".len()..];
    Some(session_capabilities(&rest[..rest.find(']')?]))
}

/// One client connection before login.
#[derive(Debug)]
pub struct PreAuth {
    offer: Offer,
    /// The storage nodes' capabilities other than TLS/AUTH items.
    node_capabilities: String,
    /// The tag of the login or SASL exchange in progress.
    login_tag: String,
}

fn tagged(tag: &str, status: &str, text: &str) -> Vec<u8> {
    format!("{tag} {status} {text}\r\n").into_bytes()
}

impl PreAuth {
    pub fn new(offer: Offer, node_capabilities: &str) -> Self {
        Self { offer, node_capabilities: session_capabilities(node_capabilities), login_tag: String::new() }
    }

    pub fn capabilities(&self) -> String {
        let mut caps: Vec<&str> = FRONT_CAPABILITIES.to_vec();
        caps.extend(self.node_capabilities.split_whitespace());
        if self.offer.starttls {
            caps.push("STARTTLS");
        }
        caps.push(if self.offer.plaintext_auth { "AUTH=PLAIN" } else { "LOGINDISABLED" });
        caps.join(" ")
    }
}

impl PreLogin for PreAuth {
    const SASL_LINE_MAX: usize = LINE_MAX;
    const TOO_MANY_COMMANDS: &'static [u8] = b"* BYE too many commands without logging in\r\n";

    fn greeting(&self, host: &str) -> Vec<u8> {
        format!("* OK [CAPABILITY {}] {host} IMAP ready\r\n", self.capabilities()).into_bytes()
    }

    /// TLS is now active (after STARTTLS).
    fn tls_started(&mut self, plaintext_auth: bool) -> Vec<u8> {
        self.offer = Offer { starttls: false, plaintext_auth };
        Vec::new()
    }

    /// Handle one complete command (see [`framing`]).
    fn input(&mut self, bytes: &[u8]) -> Step {
        let cmd = match CommandCodec::default().decode(bytes) {
            Ok((b"", cmd)) => cmd,
            _ => return Step::Reply(tagged(tag_of(bytes).unwrap_or("*"), "BAD", "syntax error in command")),
        };
        let tag = cmd.tag.as_ref().to_string();
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        match cmd.body {
            CommandBody::Capability => {
                let mut out = format!("* CAPABILITY {}\r\n", self.capabilities()).into_bytes();
                out.extend(tagged(&tag, "OK", "CAPABILITY completed"));
                Step::Reply(out)
            }
            CommandBody::Noop => Step::Reply(tagged(&tag, "OK", "NOOP completed")),
            CommandBody::Logout => {
                let mut out = b"* BYE logging out\r\n".to_vec();
                out.extend(tagged(&tag, "OK", "LOGOUT completed"));
                Step::Close(out)
            }
            CommandBody::Id { .. } => {
                let mut out = b"* ID (\"name\" \"frontd\")\r\n".to_vec();
                out.extend(tagged(&tag, "OK", "ID completed"));
                Step::Reply(out)
            }
            CommandBody::StartTLS if self.offer.starttls => {
                self.offer.starttls = false;
                Step::StartTls(tagged(&tag, "OK", "begin TLS negotiation now"))
            }
            CommandBody::StartTLS => Step::Reply(tagged(&tag, "BAD", "STARTTLS not available")),
            CommandBody::Login { .. } | CommandBody::Authenticate { .. } if !self.offer.plaintext_auth => {
                Step::Reply(tagged(&tag, "NO", "[PRIVACYREQUIRED] use TLS (STARTTLS) before logging in"))
            }
            CommandBody::Login { username, password } => {
                let creds = PlainCredentials {
                    authzid: String::new(),
                    authcid: text(username.as_ref()),
                    password: text(password.declassify().as_ref()),
                };
                {
                    self.login_tag = tag;
                    Step::Login(creds)
                }
            }
            CommandBody::Authenticate { mechanism, initial_response } => {
                if !matches!(mechanism, AuthMechanism::Plain) {
                    return Step::Reply(tagged(&tag, "NO", "unsupported mechanism; use PLAIN"));
                }
                match initial_response {
                    None => {
                        self.login_tag = tag;
                        Step::SaslContinue
                    }
                    Some(raw) => match sasl::parse_plain(raw.declassify()) {
                        Ok(creds) => {
                            self.login_tag = tag;
                            Step::Login(creds)
                        }
                        Err(e) => Step::Reply(tagged(&tag, "NO", &format!("[AUTHENTICATIONFAILED] {e}"))),
                    },
                }
            }
            _ => Step::Reply(tagged(&tag, "BAD", "log in first")),
        }
    }

    /// The client's line after `+ ` of AUTHENTICATE PLAIN.
    fn sasl_response(&mut self, line: Option<&[u8]>) -> Step {
        let tag = &self.login_tag;
        let Some(line) = line else { return Step::Reply(tagged(tag, "BAD", "SASL response too long")) };
        match sasl::decode_plain(&String::from_utf8_lossy(line)) {
            Ok(creds) => Step::Login(creds),
            Err(sasl::SaslError::Cancelled) => Step::Reply(tagged(tag, "BAD", "authentication cancelled")),
            Err(e) => Step::Reply(tagged(tag, "NO", &format!("[AUTHENTICATIONFAILED] {e}"))),
        }
    }

    /// The answer to a refused login.
    fn login_failed(&mut self, refusal: &Refusal) -> Vec<u8> {
        let code = match refusal {
            Refusal::Failed => "AUTHENTICATIONFAILED",
            Refusal::Throttled | Refusal::Unavailable(_) => "UNAVAILABLE",
            Refusal::NeedsTls => "PRIVACYREQUIRED",
            Refusal::Disabled => "CONTACTADMIN",
            Refusal::TooManySessions => "LIMIT",
        };
        tagged(&self.login_tag, "NO", &format!("[{code}] {refusal}"))
    }

    /// The node's success line (`OK [CAPABILITY ...] ...`) under the client's tag.
    fn login_succeeded(&mut self, node_reply: &str) -> Vec<u8> {
        format!("{} {node_reply}\r\n", self.login_tag).into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODE_CAPS: &str = "IMAP4rev1 LITERAL+ SASL-IR ID ENABLE IDLE MOVE STARTTLS AUTH=PLAIN APPENDLIMIT=100";

    fn session(plaintext_auth: bool) -> PreAuth {
        PreAuth::new(Offer { starttls: true, plaintext_auth }, NODE_CAPS)
    }

    fn reply(step: Step) -> String {
        match step {
            Step::Reply(b) | Step::Close(b) | Step::StartTls(b) => String::from_utf8(b).unwrap(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn capabilities_are_the_nodes_with_the_fronts_auth_items() {
        let s = session(false);
        assert_eq!(
            s.capabilities(),
            "IMAP4rev1 LITERAL+ SASL-IR ID ENABLE IDLE MOVE APPENDLIMIT=100 STARTTLS LOGINDISABLED"
        );
        assert_eq!(
            greeting_capabilities("* OK [CAPABILITY IMAP4rev1 IDLE AUTH=PLAIN] storaged IMAP ready").as_deref(),
            Some("IDLE")
        );
        let mut s = session(true);
        let text = reply(s.input(b"c1 CAPABILITY\r\n"));
        assert!(
            text.starts_with("* CAPABILITY IMAP4rev1 ")
                && text.contains("AUTH=PLAIN")
                && text.ends_with("c1 OK CAPABILITY completed\r\n")
        );
    }

    #[test]
    fn logins_become_credentials() {
        let mut s = session(true);
        let Step::Login(creds) = s.input(b"a1 LOGIN alice \"pw with space\"\r\n") else { panic!() };
        assert_eq!((creds.authcid.as_str(), creds.password.as_str()), ("alice", "pw with space"));
        assert_eq!(s.login_succeeded("OK [CAPABILITY IMAP4rev1] in"), b"a1 OK [CAPABILITY IMAP4rev1] in\r\n");
        // SASL-IR: base64("\0bob\0pw").
        let Step::Login(creds) = s.input(b"a2 AUTHENTICATE PLAIN AGJvYgBwdw==\r\n") else { panic!() };
        assert_eq!((creds.authcid.as_str(), creds.password.as_str()), ("bob", "pw"));
        assert!(s.login_failed(&Refusal::Failed).starts_with(b"a2 NO [AUTHENTICATIONFAILED]"));
        assert_eq!(s.input(b"a3 AUTHENTICATE PLAIN\r\n"), Step::SaslContinue);
        let Step::Login(creds) = s.sasl_response(Some(b"AGJvYgBwdw==")) else { panic!() };
        assert_eq!(creds.authcid, "bob");
        assert_eq!(s.input(b"a4 AUTHENTICATE PLAIN\r\n"), Step::SaslContinue);
        assert!(reply(s.sasl_response(Some(b"*"))).starts_with("a4 BAD"));
        assert_eq!(s.input(b"a6 AUTHENTICATE PLAIN\r\n"), Step::SaslContinue);
        assert!(reply(s.sasl_response(None)).starts_with("a6 BAD"));
        assert!(reply(s.input(b"a5 AUTHENTICATE CRAM-MD5\r\n")).starts_with("a5 NO"));
    }

    #[test]
    fn without_tls_passwords_are_refused_and_starttls_is_offered_once() {
        let mut s = session(false);
        assert!(reply(s.input(b"a1 LOGIN alice pw\r\n")).starts_with("a1 NO [PRIVACYREQUIRED]"));
        assert!(reply(s.input(b"a2 AUTHENTICATE PLAIN AGJvYgBwdw==\r\n")).starts_with("a2 NO [PRIVACYREQUIRED]"));
        assert!(matches!(s.input(b"t1 STARTTLS\r\n"), Step::StartTls(_)));
        s.tls_started(true);
        assert!(reply(s.input(b"t2 STARTTLS\r\n")).starts_with("t2 BAD"));
        assert!(matches!(s.input(b"a3 LOGIN alice pw\r\n"), Step::Login(_)));
    }

    #[test]
    fn other_commands_wait_for_login_and_garbage_is_bad() {
        let mut s = session(true);
        assert_eq!(reply(s.input(b"s1 SELECT INBOX\r\n")), "s1 BAD log in first\r\n");
        assert_eq!(reply(s.input(b"n1 NOOP\r\n")), "n1 OK NOOP completed\r\n");
        assert!(reply(s.input(b"i1 ID NIL\r\n")).contains("i1 OK"));
        assert!(reply(s.input(b"x1 FROB\r\n")).starts_with("x1 BAD"));
        assert!(reply(s.input(b"\x00\xff\r\n")).starts_with("* BAD"));
        assert!(matches!(s.input(b"l1 LOGOUT\r\n"), Step::Close(_)));
        assert!(matches!(s.input(b"a LOGIN alice pw\r\n"), Step::Login(_)));
        assert_eq!(
            s.login_failed(&Refusal::Disabled),
            b"a NO [CONTACTADMIN] account disabled; contact your administrator\r\n"
        );
    }

    #[test]
    fn framing_finds_literals() {
        assert_eq!(framing(b"a1 LOGIN alice pw\r\n"), Framing::Complete);
        assert_eq!(framing(b"a1 LOGIN {5}\r\n"), Framing::Literal { length: 5, sync: true });
        assert_eq!(framing(b"a1 LOGIN {5+}\r\n"), Framing::Literal { length: 5, sync: false });
        assert_eq!(framing(b"a1 LOGIN {5}\r\nalice {2}\r\n"), Framing::Literal { length: 2, sync: true });
        assert_eq!(framing(b"a1 LOGIN {5}\r\nalice {2}\r\npw\r\n"), Framing::Complete);
        assert_eq!(framing(b"a1 LOGIN"), Framing::Incomplete);
        assert_eq!(framing(b"a1 (\r\n"), Framing::Bad { tag: Some("a1".into()) });
    }
}
