//! The ManageSieve side of the login proxy before authentication (RFC 5804: CAPABILITY,
//! STARTTLS, AUTHENTICATE PLAIN, NOOP, LOGOUT), as a pure state machine: commands in,
//! replies and actions out. Commands arrive framed by [`frame`] (literals read, strings
//! quoted again); everything after a successful login is the storage node's.

use common::managesieve::{quote, Arg, Command, Next, Reader};
use common::sasl;

pub use crate::login::{Offer, Step};
use crate::login::{PreLogin, Refusal};

/// Longest literal before login (a SASL response is small).
pub const LITERAL_MAX: usize = 4096;

/// One client connection before login.
#[derive(Debug)]
pub struct PreAuth {
    offer: Offer,
}

type Handler = fn(&mut PreAuth, &[Arg]) -> Step;

const COMMANDS: &[(&str, Handler)] = &[
    ("CAPABILITY", PreAuth::capability),
    ("STARTTLS", PreAuth::starttls),
    ("AUTHENTICATE", PreAuth::authenticate),
    ("NOOP", PreAuth::noop),
    ("LOGOUT", PreAuth::logout),
];

fn status(word: &str, code: Option<&str>, text: &str) -> Vec<u8> {
    let code = code.map(|c| format!(" ({c})")).unwrap_or_default();
    format!("{word}{code} {}\r\n", quote(text)).into_bytes()
}

fn no(code: Option<&str>, text: &str) -> Step {
    Step::Reply(status("NO", code, text))
}

/// One command from the lines and literals read so far: `line` is fed to `reader`; the
/// command is written again as one line of quoted strings (what [`PreLogin::input`] reads).
pub fn frame(reader: &mut Reader, line: &[u8]) -> Result<Next, Vec<u8>> {
    match reader.line(line) {
        Ok(Next::Command(command)) => {
            let mut out = command.verb.clone();
            for arg in &command.args {
                let word = match arg {
                    Arg::Str(bytes) => quote(&String::from_utf8_lossy(bytes)),
                    Arg::Number(n) => n.to_string(),
                    Arg::Atom(a) => a.clone(),
                };
                out = if out.is_empty() { word } else { format!("{out} {word}") };
            }
            Ok(Next::Command(Command { verb: out, args: Vec::new() }))
        }
        Ok(next) => Ok(next),
        Err(e) => Err(status("NO", None, &e.to_string())),
    }
}

impl PreAuth {
    pub fn new(offer: Offer) -> Self {
        Self { offer }
    }

    fn capabilities(&self) -> Vec<u8> {
        let mut lines = vec![
            "\"IMPLEMENTATION\" \"mailstore frontd\"".to_string(),
            format!("\"SIEVE\" {}", quote(&sieve::EXTENSIONS.join(" "))),
            format!("\"MAXREDIRECTS\" \"{}\"", sieve::Limits::default().redirects),
            "\"VERSION\" \"1.0\"".to_string(),
            format!("\"SASL\" \"{}\"", if self.offer.plaintext_auth { "PLAIN" } else { "" }),
        ];
        if self.offer.starttls {
            lines.push("\"STARTTLS\"".into());
        }
        lines.iter().flat_map(|l| [l.as_bytes(), b"\r\n"].concat()).collect()
    }

    fn capability(&mut self, _: &[Arg]) -> Step {
        Step::Reply([self.capabilities(), b"OK \"capability completed\"\r\n".to_vec()].concat())
    }

    fn starttls(&mut self, _: &[Arg]) -> Step {
        if !self.offer.starttls {
            return no(None, "STARTTLS is not available");
        }
        self.offer.starttls = false;
        Step::StartTls(b"OK \"begin TLS negotiation\"\r\n".to_vec())
    }

    fn authenticate(&mut self, args: &[Arg]) -> Step {
        if !Arg::text(args.first()).is_some_and(|m| m.eq_ignore_ascii_case("PLAIN")) {
            return no(None, "unsupported mechanism; use PLAIN");
        }
        if !self.offer.plaintext_auth {
            return no(Some("ENCRYPT-NEEDED"), "use STARTTLS before authenticating");
        }
        match Arg::text(args.get(1)) {
            None => Step::SaslContinue,
            Some(initial) => match sasl::decode_plain(&initial) {
                Ok(creds) => Step::Login(creds),
                Err(e) => no(None, &e.to_string()),
            },
        }
    }

    fn noop(&mut self, args: &[Arg]) -> Step {
        match Arg::text(args.first()) {
            Some(tag) => Step::Reply(status("OK", Some(&format!("TAG {}", quote(&tag))), "done")),
            None => Step::Reply(status("OK", None, "done")),
        }
    }

    fn logout(&mut self, _: &[Arg]) -> Step {
        Step::Close(status("OK", None, "logout completed"))
    }
}

impl PreLogin for PreAuth {
    const SASL_LINE_MAX: usize = LITERAL_MAX;
    const TOO_MANY_COMMANDS: &'static [u8] = b"BYE \"too many commands without logging in\"\r\n";
    /// RFC 5804 §2.1: the server's challenge is a string; PLAIN's is empty.
    const SASL_CONTINUE: &'static [u8] = b"\"\"\r\n";

    fn greeting(&self, _host: &str) -> Vec<u8> {
        [self.capabilities(), b"OK \"ManageSieve ready\"\r\n".to_vec()].concat()
    }

    fn tls_started(&mut self, plaintext_auth: bool) -> Vec<u8> {
        self.offer = Offer { starttls: false, plaintext_auth };
        [self.capabilities(), b"OK \"TLS active\"\r\n".to_vec()].concat()
    }

    /// A command as [`frame`] wrote it.
    fn input(&mut self, raw: &[u8]) -> Step {
        let Ok(Next::Command(command)) = Reader::new(0).line(raw) else { return no(None, "syntax error") };
        match COMMANDS.iter().find(|(verb, _)| *verb == command.verb) {
            Some((_, handler)) => handler(self, &command.args),
            None => no(None, "unknown command, or log in first"),
        }
    }

    fn sasl_response(&mut self, line: Option<&[u8]>) -> Step {
        let Some(line) = line else { return no(None, "SASL response too long") };
        let parsed = Reader::new(0).line(line);
        let response = match &parsed {
            Ok(Next::Command(Command { verb, args })) if verb.is_empty() => Arg::text(args.first()),
            _ => None,
        };
        match response.map(|r| sasl::decode_plain(&r)) {
            Some(Ok(creds)) => Step::Login(creds),
            Some(Err(e)) => no(None, &e.to_string()),
            None => no(None, "authentication cancelled"),
        }
    }

    /// The node's `OK` line as it is.
    fn login_succeeded(&mut self, node_reply: &str) -> Vec<u8> {
        format!("{node_reply}\r\n").into_bytes()
    }

    fn login_failed(&mut self, refusal: &Refusal) -> Vec<u8> {
        let code = match refusal {
            Refusal::Throttled | Refusal::TooManySessions | Refusal::Unavailable(_) => Some("TRYLATER"),
            Refusal::NeedsTls => Some("ENCRYPT-NEEDED"),
            Refusal::Failed | Refusal::Disabled => None,
        };
        status("NO", code, &refusal.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(step: Step) -> String {
        match step {
            Step::Reply(b) | Step::Close(b) | Step::StartTls(b) => String::from_utf8(b).unwrap(),
            other => panic!("{other:?}"),
        }
    }

    fn framed(line: &str) -> Vec<u8> {
        let Ok(Next::Command(c)) = frame(&mut Reader::new(LITERAL_MAX), line.as_bytes()) else { panic!() };
        c.verb.into_bytes()
    }

    #[test]
    fn rfc5804_before_login() {
        let mut s = PreAuth::new(Offer { starttls: true, plaintext_auth: false });
        let greeting = String::from_utf8(s.greeting("h")).unwrap();
        assert!(
            greeting.contains("\"STARTTLS\"\r\n")
                && greeting.contains("\"SASL\" \"\"")
                && greeting.ends_with("OK \"ManageSieve ready\"\r\n")
        );
        assert!(reply(s.input(&framed("AUTHENTICATE \"PLAIN\" \"AGEAYg==\""))).starts_with("NO (ENCRYPT-NEEDED)"));
        assert!(matches!(s.input(&framed("STARTTLS")), Step::StartTls(_)));
        let caps = String::from_utf8(s.tls_started(true)).unwrap();
        assert!(caps.contains("\"SASL\" \"PLAIN\"") && !caps.contains("STARTTLS"));
        let Step::Login(c) = s.input(&framed("AUTHENTICATE \"PLAIN\" \"AGFsaWNlAHB3\"")) else { panic!() };
        assert_eq!((c.authcid.as_str(), c.password.as_str()), ("alice", "pw"));
        assert_eq!(s.input(&framed("Authenticate \"plain\"")), Step::SaslContinue);
        let Step::Login(c) = s.sasl_response(Some(b"\"AGFsaWNlAHB3\"")) else { panic!() };
        assert_eq!(c.authcid, "alice");
        assert!(reply(s.input(&framed("LISTSCRIPTS"))).starts_with("NO"));
        assert!(reply(s.input(&framed("NOOP \"x\""))).starts_with("OK (TAG \"x\")"));
        assert!(matches!(s.input(&framed("LOGOUT")), Step::Close(_)));
        assert_eq!(
            s.login_failed(&Refusal::Throttled),
            b"NO (TRYLATER) \"too many failed logins, try again later\"\r\n"
        );
    }

    #[test]
    fn literals_are_framed_as_quoted_strings() {
        let mut reader = Reader::new(LITERAL_MAX);
        assert_eq!(frame(&mut reader, b"AUTHENTICATE \"PLAIN\" {12+}"), Ok(Next::Literal(12)));
        reader.literal(b"AGFsaWNlAHB3".to_vec());
        let Ok(Next::Command(c)) = frame(&mut reader, b"") else { panic!() };
        assert_eq!(c.verb, "AUTHENTICATE \"PLAIN\" \"AGFsaWNlAHB3\"");
        assert!(frame(&mut reader, b"AUTHENTICATE {99999+}").is_err());
    }
}
