//! The ManageSieve session (RFC 5804) as a pure state machine: commands in, replies and
//! actions out. Before login: CAPABILITY, STARTTLS, AUTHENTICATE PLAIN (a user's own
//! password, or the front's proxy credential acting for a user), XCLIENT (what a front
//! says about the client), NOOP, LOGOUT. After: the script commands, which the server
//! carries out on the user's group and answers with [`answer`]. Scripts are compiled here
//! before they are stored, so an upload with an error is refused with its line number.
//! This module must never touch a socket or the store.

use crate::auth::sasl::{self, PlainCredentials, SaslError};
use crate::auth::ProxyHints;
use crate::mailstore::Rejection;

use common::managesieve::{quote, Arg, Command};

/// What the server must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Reply(Vec<u8>),
    /// Check these credentials, then call [`Session::logged_in`] or [`Session::login_failed`].
    Authenticate(PlainCredentials),
    /// Reply `OK`, run the TLS handshake, call [`Session::tls_started`] and send its reply.
    StartTls,
    /// Carry this out for the logged-in user and send [`answer`] of the result.
    Script(ScriptRequest),
    Close,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScriptRequest {
    List,
    Get(String),
    Put(String, String),
    SetActive(Option<String>),
    Delete(String),
    Rename(String, String),
    HaveSpace(String, u64),
}

/// What carrying out a request gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScriptResult {
    /// LISTSCRIPTS: names, and whether each is active.
    Listed(Vec<(String, bool)>),
    /// GETSCRIPT: the script's text.
    Script(String),
    Done,
    Refused(Rejection),
    /// The mailhost cannot do it now (no leader, a timeout): try later.
    Unavailable(String),
}

/// What the connection allows.
#[derive(Debug, Clone, Copy)]
pub struct Offer {
    pub starttls: bool,
    pub plaintext_auth: bool,
}

#[derive(Debug, PartialEq, Eq)]
enum Phase {
    NotAuthenticated,
    /// AUTHENTICATE PLAIN without an initial response: the next line is the response.
    SaslPlain,
    Authenticating,
    Authenticated,
    Done,
}

#[derive(Debug)]
pub struct Session {
    offer: Offer,
    phase: Phase,
    hints: ProxyHints,
}

type Handler = fn(&mut Session, &[Arg]) -> Vec<Action>;

/// The command table: verb, whether it needs a login, handler.
const COMMANDS: &[(&str, bool, Handler)] = &[
    ("CAPABILITY", false, Session::capability),
    ("STARTTLS", false, Session::starttls),
    ("AUTHENTICATE", false, Session::authenticate),
    ("XCLIENT", false, Session::xclient),
    ("NOOP", false, Session::noop),
    ("LOGOUT", false, Session::logout),
    ("UNAUTHENTICATE", true, Session::unauthenticate),
    ("LISTSCRIPTS", true, Session::listscripts),
    ("GETSCRIPT", true, Session::getscript),
    ("PUTSCRIPT", true, Session::putscript),
    ("CHECKSCRIPT", true, Session::checkscript),
    ("SETACTIVE", true, Session::setactive),
    ("DELETESCRIPT", true, Session::deletescript),
    ("RENAMESCRIPT", true, Session::renamescript),
    ("HAVESPACE", true, Session::havespace),
];

fn reply(status: &str, code: Option<&str>, text: &str) -> Vec<Action> {
    let code = code.map(|c| format!(" ({c})")).unwrap_or_default();
    vec![Action::Reply(format!("{status}{code} {}\r\n", quote(text)).into_bytes())]
}

fn ok(text: &str) -> Vec<Action> {
    reply("OK", None, text)
}

fn no(code: Option<&str>, text: &str) -> Vec<Action> {
    reply("NO", code, text)
}

impl Session {
    pub fn new(offer: Offer) -> Self {
        Self { offer, phase: Phase::NotAuthenticated, hints: ProxyHints::default() }
    }

    pub fn proxy_hints(&self) -> &ProxyHints {
        &self.hints
    }

    /// The greeting: the capabilities, then OK (RFC 5804 §1.7).
    pub fn greeting(&self) -> Vec<u8> {
        let mut out = self.capabilities();
        out.extend_from_slice(b"OK \"ManageSieve ready\"\r\n");
        out
    }

    fn capabilities(&self) -> Vec<u8> {
        let extensions = sieve::EXTENSIONS.join(" ");
        let redirects = sieve::Limits::default().redirects;
        let mut lines = vec![
            format!("\"IMPLEMENTATION\" \"mailstore {}\"", env!("CARGO_PKG_VERSION")),
            format!("\"SIEVE\" {}", quote(&extensions)),
            format!("\"MAXREDIRECTS\" \"{redirects}\""),
            "\"VERSION\" \"1.0\"".to_string(),
        ];
        if self.phase != Phase::Authenticated {
            let sasl = if self.offer.plaintext_auth { "PLAIN" } else { "" };
            lines.push(format!("\"SASL\" \"{sasl}\""));
            if self.offer.starttls {
                lines.push("\"STARTTLS\"".to_string());
            }
        } else {
            lines.push("\"UNAUTHENTICATE\"".to_string());
        }
        lines.iter().flat_map(|l| [l.as_bytes(), b"\r\n"].concat()).collect()
    }

    /// One whole command.
    pub fn command(&mut self, command: &Command) -> Vec<Action> {
        match self.phase {
            Phase::SaslPlain => return self.sasl_response(command),
            Phase::Authenticating | Phase::Done => return no(None, "not now"),
            _ => {}
        }
        let Some((_, needs_login, handler)) = COMMANDS.iter().find(|(verb, _, _)| *verb == command.verb) else {
            return no(None, "unknown command");
        };
        let logged_in = self.phase == Phase::Authenticated;
        match (*needs_login, logged_in) {
            (true, false) => no(None, "log in first"),
            (false, true) if matches!(command.verb.as_str(), "AUTHENTICATE" | "STARTTLS" | "XCLIENT") => {
                no(None, "already logged in")
            }
            _ => handler(self, &command.args),
        }
    }

    /// A command line the grammar refused.
    pub fn bad_line(&mut self, why: &str) -> Vec<Action> {
        if self.phase == Phase::SaslPlain {
            self.phase = Phase::NotAuthenticated;
        }
        no(None, why)
    }

    pub fn tls_started(&mut self, plaintext_auth: bool) -> Vec<Action> {
        self.offer = Offer { starttls: false, plaintext_auth };
        let mut out = self.capabilities();
        out.extend_from_slice(b"OK \"TLS active\"\r\n");
        vec![Action::Reply(out)]
    }

    pub fn logged_in(&mut self) -> Vec<Action> {
        self.phase = Phase::Authenticated;
        ok("logged in")
    }

    pub fn login_failed(&mut self, code: Option<&str>, why: &str) -> Vec<Action> {
        self.phase = Phase::NotAuthenticated;
        no(code, why)
    }

    fn capability(&mut self, _: &[Arg]) -> Vec<Action> {
        let mut out = self.capabilities();
        out.extend_from_slice(b"OK \"capability completed\"\r\n");
        vec![Action::Reply(out)]
    }

    fn starttls(&mut self, _: &[Arg]) -> Vec<Action> {
        match self.offer.starttls {
            true => vec![Action::StartTls],
            false => no(None, "STARTTLS is not available"),
        }
    }

    fn authenticate(&mut self, args: &[Arg]) -> Vec<Action> {
        let mechanism = Arg::text(args.first()).unwrap_or_default();
        if !mechanism.eq_ignore_ascii_case("PLAIN") {
            return no(None, "unsupported mechanism; use PLAIN");
        }
        if !self.offer.plaintext_auth {
            return no(Some("ENCRYPT-NEEDED"), "use STARTTLS before authenticating");
        }
        match Arg::text(args.get(1)) {
            None => {
                self.phase = Phase::SaslPlain;
                vec![Action::Reply(b"\"\"\r\n".to_vec())]
            }
            Some(initial) => self.decode(&initial),
        }
    }

    fn sasl_response(&mut self, command: &Command) -> Vec<Action> {
        self.phase = Phase::NotAuthenticated;
        match (command.verb.as_str(), Arg::text(command.args.first())) {
            ("", Some(response)) => self.decode(&response),
            _ => no(None, "authentication cancelled"),
        }
    }

    fn decode(&mut self, response: &str) -> Vec<Action> {
        match sasl::decode_plain(response) {
            Ok(creds) => {
                self.phase = Phase::Authenticating;
                vec![Action::Authenticate(creds)]
            }
            Err(SaslError::Cancelled) => no(None, "authentication cancelled"),
            Err(e) => no(None, &e.to_string()),
        }
    }

    /// `XCLIENT ADDR=... MAILHOST=...` from a front (see [`ProxyHints`]).
    fn xclient(&mut self, args: &[Arg]) -> Vec<Action> {
        for arg in args {
            let field = match arg {
                Arg::Atom(a) => a.clone(),
                Arg::Str(s) => String::from_utf8_lossy(s).into_owned(),
                Arg::Number(_) => continue,
            };
            let Some((name, value)) = field.split_once('=') else { return no(None, "XCLIENT expects NAME=value") };
            self.hints.set(name, &value.to_ascii_lowercase());
        }
        ok("XCLIENT accepted")
    }

    fn noop(&mut self, args: &[Arg]) -> Vec<Action> {
        match Arg::text(args.first()) {
            Some(tag) => reply("OK", Some(&format!("TAG {}", quote(&tag))), "done"),
            None => ok("done"),
        }
    }

    fn logout(&mut self, _: &[Arg]) -> Vec<Action> {
        self.phase = Phase::Done;
        let mut out = ok("logout completed");
        out.push(Action::Close);
        out
    }

    fn unauthenticate(&mut self, _: &[Arg]) -> Vec<Action> {
        self.phase = Phase::NotAuthenticated;
        ok("unauthenticated")
    }

    fn listscripts(&mut self, _: &[Arg]) -> Vec<Action> {
        vec![Action::Script(ScriptRequest::List)]
    }

    fn getscript(&mut self, args: &[Arg]) -> Vec<Action> {
        match Arg::text(args.first()) {
            Some(name) => vec![Action::Script(ScriptRequest::Get(name))],
            None => no(None, "GETSCRIPT needs a script name"),
        }
    }

    fn putscript(&mut self, args: &[Arg]) -> Vec<Action> {
        let (Some(name), Some(script)) = (Arg::text(args.first()), Arg::text(args.get(1))) else {
            return no(None, "PUTSCRIPT needs a name and a script (UTF-8)");
        };
        match check(&script) {
            Ok(()) => vec![Action::Script(ScriptRequest::Put(name, script))],
            Err(refusal) => refusal,
        }
    }

    fn checkscript(&mut self, args: &[Arg]) -> Vec<Action> {
        match Arg::text(args.first()) {
            Some(script) => check(&script).map_or_else(|refusal| refusal, |()| ok("script is valid")),
            None => no(None, "CHECKSCRIPT needs a script (UTF-8)"),
        }
    }

    fn setactive(&mut self, args: &[Arg]) -> Vec<Action> {
        match Arg::text(args.first()) {
            Some(name) if name.is_empty() => vec![Action::Script(ScriptRequest::SetActive(None))],
            Some(name) => vec![Action::Script(ScriptRequest::SetActive(Some(name)))],
            None => no(None, "SETACTIVE needs a script name"),
        }
    }

    fn deletescript(&mut self, args: &[Arg]) -> Vec<Action> {
        match Arg::text(args.first()) {
            Some(name) => vec![Action::Script(ScriptRequest::Delete(name))],
            None => no(None, "DELETESCRIPT needs a script name"),
        }
    }

    fn renamescript(&mut self, args: &[Arg]) -> Vec<Action> {
        match (Arg::text(args.first()), Arg::text(args.get(1))) {
            (Some(from), Some(to)) => vec![Action::Script(ScriptRequest::Rename(from, to))],
            _ => no(None, "RENAMESCRIPT needs two script names"),
        }
    }

    fn havespace(&mut self, args: &[Arg]) -> Vec<Action> {
        match (Arg::text(args.first()), args.get(1)) {
            (Some(name), Some(Arg::Number(size))) => vec![Action::Script(ScriptRequest::HaveSpace(name, *size))],
            _ => no(None, "HAVESPACE needs a script name and a size"),
        }
    }
}

/// Compiles `script` as delivery would (includes are checked when mail arrives, not here:
/// a script may be uploaded before the one it includes).
fn check(script: &str) -> Result<(), Vec<Action>> {
    struct AnyInclude;
    impl sieve::Includes for AnyInclude {
        fn script(&self, _: sieve::IncludeLocation, _: &str) -> Option<String> {
            Some(String::new())
        }
    }
    sieve::compile(script, "", &sieve::Limits::default(), &AnyInclude).map(|_| ()).map_err(|e| {
        let code = e.message.contains("larger than").then_some("QUOTA/MAXSIZE");
        no(code, &format!("line {}: {}", e.pos.line, e.message))
    })
}

/// The reply to a carried-out script request.
pub fn answer(result: ScriptResult) -> Vec<u8> {
    let actions = match result {
        ScriptResult::Listed(scripts) => {
            let mut out: Vec<u8> = Vec::new();
            for (name, active) in scripts {
                out.extend_from_slice(quote(&name).as_bytes());
                out.extend_from_slice(if active { b" ACTIVE\r\n" } else { b"\r\n" });
            }
            out.extend_from_slice(b"OK \"listscripts completed\"\r\n");
            return out;
        }
        ScriptResult::Script(text) => {
            let mut out = format!("{{{}}}\r\n", text.len()).into_bytes();
            out.extend_from_slice(text.as_bytes());
            out.extend_from_slice(b"\r\nOK \"getscript completed\"\r\n");
            return out;
        }
        ScriptResult::Done => ok("done"),
        ScriptResult::Unavailable(why) => no(Some("TRYLATER"), &why),
        ScriptResult::Refused(rejection) => {
            let code = match &rejection {
                Rejection::NoScript(_) => Some("NONEXISTENT"),
                Rejection::ScriptActive(_) => Some("ACTIVE"),
                Rejection::ScriptExists(_) => Some("ALREADYEXISTS"),
                Rejection::ScriptQuota(why) if why.contains("scripts per user") => Some("QUOTA/MAXSCRIPTS"),
                Rejection::ScriptQuota(_) => Some("QUOTA/MAXSIZE"),
                Rejection::Frozen | Rejection::MovedTo(_) => Some("TRYLATER"),
                _ => None,
            };
            no(code, &rejection.to_string())
        }
    };
    actions.into_iter().flat_map(|a| if let Action::Reply(b) = a { b } else { Vec::new() }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::managesieve::{Next, Reader};

    fn run(s: &mut Session, line: &str) -> Vec<Action> {
        let mut reader = Reader::new(1 << 20);
        match reader.line(line.as_bytes()).unwrap() {
            Next::Command(c) => s.command(&c),
            Next::Literal(_) => panic!("literal"),
        }
    }

    fn text_of(actions: &[Action]) -> String {
        actions
            .iter()
            .map(|a| if let Action::Reply(b) = a { String::from_utf8_lossy(b).into_owned() } else { format!("{a:?}") })
            .collect()
    }

    #[test]
    fn rfc5804_login_then_scripts() {
        let mut s = Session::new(Offer { starttls: true, plaintext_auth: false });
        let greeting = String::from_utf8(s.greeting()).unwrap();
        assert!(
            greeting.contains("\"STARTTLS\"")
                && greeting.contains("\"SIEVE\" \"fileinto")
                && greeting.ends_with("OK \"ManageSieve ready\"\r\n")
        );
        assert!(text_of(&run(&mut s, "AUTHENTICATE \"PLAIN\" \"AGEAYg==\"")).starts_with("NO (ENCRYPT-NEEDED)"));
        assert_eq!(run(&mut s, "STARTTLS"), vec![Action::StartTls]);
        let caps = text_of(&s.tls_started(true));
        assert!(caps.contains("\"SASL\" \"PLAIN\"") && !caps.contains("STARTTLS"));
        assert!(text_of(&run(&mut s, "LISTSCRIPTS")).starts_with("NO"), "log in first");
        assert_eq!(run(&mut s, "AUTHENTICATE \"PLAIN\""), vec![Action::Reply(b"\"\"\r\n".to_vec())]);
        let Action::Authenticate(creds) = &run(&mut s, "\"AGFsaWNlAHB3\"")[0] else { panic!() };
        assert_eq!((creds.authcid.as_str(), creds.password.as_str()), ("alice", "pw"));
        s.logged_in();
        assert_eq!(run(&mut s, "LISTSCRIPTS"), vec![Action::Script(ScriptRequest::List)]);
        assert_eq!(run(&mut s, "SETACTIVE \"\""), vec![Action::Script(ScriptRequest::SetActive(None))]);
        assert_eq!(run(&mut s, "HAVESPACE \"x\" 100"), vec![Action::Script(ScriptRequest::HaveSpace("x".into(), 100))]);
        assert!(text_of(&run(&mut s, "NOOP \"t1\"")).starts_with("OK (TAG \"t1\")"));
        assert!(text_of(&run(&mut s, "FROB")).starts_with("NO"));
    }

    #[test]
    fn rfc5804_2_6_putscript_refuses_errors_with_their_line() {
        let mut s = Session::new(Offer { starttls: false, plaintext_auth: true });
        s.logged_in();
        let command = Command {
            verb: "PUTSCRIPT".into(),
            args: vec![Arg::Str(b"a".to_vec()), Arg::Str(b"keep;\nif true {\n".to_vec())],
        };
        let refused = text_of(&s.command(&command));
        assert!(refused.starts_with("NO \"line 3:"), "{refused}");
        let command =
            Command { verb: "PUTSCRIPT".into(), args: vec![Arg::Str(b"a".to_vec()), Arg::Str(b"keep;".to_vec())] };
        assert_eq!(s.command(&command), vec![Action::Script(ScriptRequest::Put("a".into(), "keep;".into()))]);
    }

    #[test]
    fn answers() {
        let listed = answer(ScriptResult::Listed(vec![("a".into(), true), ("b".into(), false)]));
        assert_eq!(listed, b"\"a\" ACTIVE\r\n\"b\"\r\nOK \"listscripts completed\"\r\n");
        assert_eq!(answer(ScriptResult::Script("keep;".into())), b"{5}\r\nkeep;\r\nOK \"getscript completed\"\r\n");
        let no = String::from_utf8(answer(ScriptResult::Refused(Rejection::ScriptActive("a".into())))).unwrap();
        assert!(no.starts_with("NO (ACTIVE)"), "{no}");
    }
}
