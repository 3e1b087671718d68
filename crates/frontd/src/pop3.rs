//! The POP3 side of the login proxy before authentication (RFC 1939 AUTHORIZATION state,
//! RFC 2449 CAPA, RFC 5034 AUTH PLAIN, RFC 2595 STLS), as a pure state machine: lines in,
//! replies and actions out. Everything after a successful login is the storage node's.

use common::sasl::{self, PlainCredentials};

pub use crate::login::{Offer, Step};
use crate::login::{PreLogin, Refusal};

/// Longest command line (RFC 2449 allows 255 octets; SASL responses may be longer).
pub const LINE_MAX: usize = 1024;

/// One client connection before login.
#[derive(Debug)]
pub struct PreAuth {
    offer: Offer,
    /// The name a `USER` gave, for the `PASS` that follows.
    user: Option<String>,
}

type Handler = fn(&mut PreAuth, &str) -> Step;

/// The command table: verb → handler.
const COMMANDS: &[(&str, Handler)] = &[
    ("CAPA", PreAuth::capa),
    ("USER", PreAuth::user),
    ("PASS", PreAuth::pass),
    ("AUTH", PreAuth::auth),
    ("STLS", PreAuth::stls),
    ("NOOP", PreAuth::noop),
    ("QUIT", PreAuth::quit),
];

fn ok(s: &str) -> Step {
    Step::Reply(format!("+OK {s}\r\n").into_bytes())
}

fn err(s: &str) -> Step {
    Step::Reply(format!("-ERR {s}\r\n").into_bytes())
}

impl PreAuth {
    pub fn new(offer: Offer) -> Self {
        Self { offer, user: None }
    }

    fn capa(&mut self, _: &str) -> Step {
        let mut lines =
            vec!["+OK capability list follows", "TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"];
        if self.offer.plaintext_auth {
            lines.extend(["USER", "SASL PLAIN"]);
        }
        if self.offer.starttls {
            lines.push("STLS");
        }
        lines.extend(["IMPLEMENTATION frontd", "."]);
        Step::Reply(lines.iter().flat_map(|l| [l.as_bytes(), b"\r\n"].concat()).collect())
    }

    fn user(&mut self, arg: &str) -> Step {
        if !self.offer.plaintext_auth {
            return err("[AUTH] plaintext authentication is not allowed without TLS; use STLS");
        }
        if arg.is_empty() {
            return err("USER needs a name");
        }
        self.user = Some(arg.to_string());
        ok("send PASS")
    }

    fn pass(&mut self, arg: &str) -> Step {
        let Some(user) = self.user.take() else { return err("USER first") };
        Step::Login(PlainCredentials { authzid: String::new(), authcid: user, password: arg.to_string() })
    }

    fn auth(&mut self, arg: &str) -> Step {
        let mut parts = arg.split_whitespace();
        match parts.next() {
            None => Step::Reply(b"+OK\r\nPLAIN\r\n.\r\n".to_vec()),
            Some(m) if !m.eq_ignore_ascii_case("PLAIN") => err("unsupported mechanism; use PLAIN"),
            Some(_) if !self.offer.plaintext_auth => err("[AUTH] use STLS before authenticating"),
            Some(_) => match parts.next() {
                None => Step::SaslContinue,
                Some(initial) => match sasl::decode_plain(initial) {
                    Ok(creds) => Step::Login(creds),
                    Err(e) => err(&format!("[AUTH] {e}")),
                },
            },
        }
    }

    fn stls(&mut self, _: &str) -> Step {
        if !self.offer.starttls {
            return err("STLS not available");
        }
        self.offer.starttls = false;
        Step::StartTls(b"+OK begin TLS negotiation\r\n".to_vec())
    }

    fn noop(&mut self, _: &str) -> Step {
        ok("")
    }

    fn quit(&mut self, _: &str) -> Step {
        Step::Close(b"+OK bye\r\n".to_vec())
    }
}

impl PreLogin for PreAuth {
    const SASL_LINE_MAX: usize = LINE_MAX;
    const TOO_MANY_COMMANDS: &'static [u8] = b"-ERR too many commands without logging in\r\n";

    fn greeting(&self, host: &str) -> Vec<u8> {
        format!("+OK {host} POP3 ready\r\n").into_bytes()
    }

    fn tls_started(&mut self, plaintext_auth: bool) -> Vec<u8> {
        self.offer = Offer { starttls: false, plaintext_auth };
        Vec::new()
    }

    /// Handle one line (without its line ending).
    fn input(&mut self, raw: &[u8]) -> Step {
        let Ok(line) = std::str::from_utf8(raw) else { return err("command is not UTF-8") };
        let (verb, arg) = line.split_once(' ').unwrap_or((line, ""));
        match COMMANDS.iter().find(|(v, _)| v.eq_ignore_ascii_case(verb)) {
            Some((_, handler)) => handler(self, arg),
            None => err("unknown command, or log in first"),
        }
    }

    fn sasl_response(&mut self, line: Option<&[u8]>) -> Step {
        let Some(line) = line else { return err("[AUTH] SASL response too long") };
        match sasl::decode_plain(&String::from_utf8_lossy(line)) {
            Ok(creds) => Step::Login(creds),
            Err(sasl::SaslError::Cancelled) => err("authentication cancelled"),
            Err(e) => err(&format!("[AUTH] {e}")),
        }
    }

    /// The node's `+OK` line as it is.
    fn login_succeeded(&mut self, node_reply: &str) -> Vec<u8> {
        format!("{node_reply}\r\n").into_bytes()
    }

    /// The answer to a refused login (RFC 2449/3206 response codes).
    fn login_failed(&mut self, refusal: &Refusal) -> Vec<u8> {
        let code = match refusal {
            Refusal::Failed | Refusal::NeedsTls | Refusal::Disabled => "AUTH",
            Refusal::Throttled => "LOGIN-DELAY",
            Refusal::TooManySessions => "IN-USE",
            Refusal::Unavailable(_) => "SYS/TEMP",
        };
        format!("-ERR [{code}] {refusal}\r\n").into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(step: Step) -> String {
        match step {
            Step::Reply(b) | Step::Close(b) | Step::StartTls(b) => String::from_utf8(b).unwrap(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn user_pass_and_auth_plain_become_credentials() {
        let mut s = PreAuth::new(Offer { starttls: false, plaintext_auth: true });
        assert!(text(s.input(b"PASS x")).starts_with("-ERR"));
        assert!(text(s.input(b"USER alice")).starts_with("+OK"));
        let Step::Login(c) = s.input(b"PASS pw with spaces") else { panic!() };
        assert_eq!((c.authcid.as_str(), c.password.as_str()), ("alice", "pw with spaces"));
        let Step::Login(c) = s.input(b"AUTH PLAIN AGJvYgBwdw==") else { panic!() };
        assert_eq!(c.authcid, "bob");
        assert_eq!(s.input(b"AUTH PLAIN"), Step::SaslContinue);
        let Step::Login(c) = s.sasl_response(Some(b"AGJvYgBwdw==")) else { panic!() };
        assert_eq!(c.password, "pw");
        assert!(text(s.input(b"STAT")).starts_with("-ERR"));
        assert!(matches!(s.input(b"QUIT"), Step::Close(_)));
    }

    #[test]
    fn without_tls_only_stls_and_capa_help() {
        let mut s = PreAuth::new(Offer { starttls: true, plaintext_auth: false });
        let capa = text(s.input(b"CAPA"));
        assert!(capa.contains("STLS\r\n") && !capa.contains("USER\r\n") && capa.ends_with(".\r\n"));
        assert!(text(s.input(b"USER alice")).starts_with("-ERR [AUTH]"));
        assert!(text(s.input(b"AUTH PLAIN AGJvYgBwdw==")).starts_with("-ERR [AUTH]"));
        assert!(matches!(s.input(b"STLS"), Step::StartTls(_)));
        s.tls_started(true);
        assert!(text(s.input(b"STLS")).starts_with("-ERR"));
        assert!(text(s.input(b"USER alice")).starts_with("+OK"));
        assert!(text(s.input(b"\xff\xfe")).starts_with("-ERR"));
        assert_eq!(s.login_failed(&Refusal::Unavailable("x".into())), b"-ERR [SYS/TEMP] x\r\n");
    }
}
